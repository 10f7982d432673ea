// netdev-broker's interactive API documentation. Reads openapi.json from the broker that serves
// this page, lists every operation, and sends requests to that same broker ("Try it").
// Builds the page with DOM calls only (text never becomes markup) and loads nothing else.
"use strict";

(() => {
  // The broker's base: the page is <base>/docs, so "." is <base>/ (also behind a path prefix).
  const base = new URL(".", document.baseURI);
  let spec = null;

  // ---- DOM helpers --------------------------------------------------------------------------
  function el(tag, props, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of kids.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  // Links in descriptions may only stay on this site (an anchor or a relative path).
  const safeHref = (h) => /^(#|\/(?!\/)|[\w.-]+(\/|$|#))/.test(h) && !/^[a-z][\w+.-]*:/i.test(h);

  // A small, safe subset of Markdown: paragraphs, "- " lists, `code`, **bold**, [text](link).
  function inline(s) {
    const out = [];
    const re = /`([^`]+)`|\*\*(.+?)\*\*|\[([^\]]+)\]\(([^)\s]+)\)/g;
    let last = 0;
    let m;
    while ((m = re.exec(s))) {
      if (m.index > last) out.push(s.slice(last, m.index));
      if (m[1] !== undefined) out.push(el("code", { text: m[1] }));
      else if (m[2] !== undefined) out.push(el("strong", null, inline(m[2])));
      else if (safeHref(m[4])) out.push(el("a", { href: m[4] }, m[3]));
      else out.push(m[0]);
      last = re.lastIndex;
    }
    if (last < s.length) out.push(s.slice(last));
    return out;
  }

  function md(text) {
    const frag = document.createDocumentFragment();
    for (const block of String(text || "").split(/\n{2,}/)) {
      if (!block.trim()) continue;
      const lines = block.split("\n");
      if (lines.every((l) => /^\s*[-*] /.test(l))) {
        frag.append(el("ul", null, lines.map((l) => el("li", null, inline(l.replace(/^\s*[-*] /, ""))))));
      } else {
        frag.append(el("p", null, inline(block)));
      }
    }
    return el("div", { class: "md" }, frag);
  }

  // ---- OpenAPI helpers ----------------------------------------------------------------------
  function lookup(ref) {
    return ref
      .replace(/^#\//, "")
      .split("/")
      .map((k) => k.replace(/~1/g, "/").replace(/~0/g, "~"))
      .reduce((o, k) => (o === undefined || o === null ? undefined : o[k]), spec);
  }

  function resolve(x) {
    let n = 0;
    while (x && x.$ref && n++ < 20) x = lookup(x.$ref);
    return x || {};
  }

  const refName = (ref) => ref.split("/").pop();
  const schemaLink = (name) => el("a", { href: "#schema-" + name, class: "schema-link" }, name);
  const fmtNum = (n) => (Math.abs(n) >= 10000 ? n.toLocaleString("en-US") : String(n));

  // A one-line summary of a schema's type, with links to named schemas.
  function typeOf(s) {
    if (!s || typeof s !== "object") return ["any"];
    if (s.$ref) return [schemaLink(refName(s.$ref))];
    const alts = s.anyOf || s.oneOf;
    if (alts && !s.type && !s.properties) return join(alts.map(typeOf), " | ");
    if ("const" in s) return [JSON.stringify(s.const)];
    if (s.enum) return [s.enum.map((v) => JSON.stringify(v)).join(" | ")];
    const types = Array.isArray(s.type) ? s.type : s.type ? [s.type] : [];
    if (!types.length) return [s.title || "any"];
    return join(
      types.map((t) => {
        if (t === "array") {
          const inner = typeOf(s.items);
          const alt = s.items && (s.items.anyOf || s.items.oneOf);
          return ["array of ", alt ? ["(", inner, ")"] : inner];
        }
        if (t === "object" && s.additionalProperties && typeof s.additionalProperties === "object") {
          return ["object of ", typeOf(s.additionalProperties)];
        }
        let txt = t;
        if (s.minimum !== undefined && s.maximum !== undefined) {
          txt += " " + fmtNum(s.minimum) + "\u2013" + fmtNum(s.maximum);
        } else if (s.minimum !== undefined) txt += " \u2265 " + fmtNum(s.minimum);
        if (t === "string" && s.format) txt += " (" + s.format + ")";
        return [txt];
      }),
      " | ",
    );
  }

  function join(parts, sep) {
    const out = [];
    parts.forEach((p, i) => {
      if (i) out.push(sep);
      out.push(p);
    });
    return out;
  }

  function fieldsTable(schema) {
    const s = resolve(schema);
    if (!s.properties) return null;
    const required = new Set(s.required || []);
    return el(
      "table",
      { class: "fields" },
      el("thead", null, el("tr", null, el("th", { text: "field" }), el("th", { text: "type" }), el("th", { text: "default" }), el("th", { text: "description" }))),
      el(
        "tbody",
        null,
        Object.entries(s.properties).map(([name, p]) =>
          el(
            "tr",
            null,
            el("td", null, el("code", { text: name }), required.has(name) ? el("span", { class: "req", text: "required" }) : null),
            el("td", { class: "type" }, typeOf(p)),
            el("td", null, p.default !== undefined ? el("code", { text: JSON.stringify(p.default) }) : null),
            el("td", null, md(p.description), p.examples ? el("div", { class: "eg" }, "e.g. ", el("code", { text: JSON.stringify(p.examples[0]) })) : null),
          ),
        ),
      ),
    );
  }

  const pretty = (v) => JSON.stringify(v, null, 2);

  function mediaExamples(media) {
    const out = [];
    if (!media) return out;
    for (const [name, ex] of Object.entries(media.examples || {})) {
      const e = resolve(ex);
      out.push({ name, summary: e.summary || name, value: e.value });
    }
    if (!out.length && media.example !== undefined) out.push({ name: "example", summary: "example", value: media.example });
    return out;
  }

  const needsToken = (op) => (op.security || spec.security || []).length > 0;

  // ---- operations ---------------------------------------------------------------------------
  function operations() {
    const ops = [];
    for (const [path, item] of Object.entries(spec.paths || {})) {
      for (const method of ["get", "post", "put", "patch", "delete"]) {
        if (item[method]) ops.push({ path, method: method.toUpperCase(), op: item[method], params: [...(item.parameters || []), ...(item[method].parameters || [])].map(resolve) });
      }
    }
    return ops;
  }

  function renderOperation(o) {
    const { op, path, method } = o;
    const id = "op-" + (op.operationId || method + path).replace(/[^\w-]/g, "_");
    const secured = needsToken(op);
    const details = el(
      "details",
      { class: "op m-" + method.toLowerCase(), id },
      el(
        "summary",
        null,
        el("span", { class: "method", text: method }),
        el("code", { class: "path", text: path }),
        el("span", { class: "sum", text: op.summary || "" }),
        el("span", { class: secured ? "lock" : "lock public", text: secured ? "token" : "public", title: secured ? "needs X-API-Token" : "no token needed" }),
      ),
    );
    let built = false;
    details.addEventListener("toggle", () => {
      if (details.open) {
        if (!built) {
          details.append(renderBody(o, secured));
          built = true;
        }
        history.replaceState(null, "", "#" + id);
      }
    });
    return details;
  }

  function renderBody(o, secured) {
    const { op, path, method, params } = o;
    const body = el("div", { class: "op-body" }, md(op.description));

    if (params.length) {
      body.append(
        el("h4", { text: "Parameters" }),
        el(
          "table",
          { class: "fields" },
          el("tbody", null, params.map((p) => el("tr", null, el("td", null, el("code", { text: p.name }), p.required ? el("span", { class: "req", text: "required" }) : null), el("td", { class: "type" }, p.in + ", ", typeOf(p.schema)), el("td", null, md(p.description))))),
        ),
      );
    }

    const rb = op.requestBody ? resolve(op.requestBody) : null;
    const media = rb && rb.content ? rb.content["application/json"] : null;
    if (media) {
      const bodySchema = media.schema;
      body.append(
        el("h4", null, "Request body ", bodySchema && bodySchema.$ref ? ["(", schemaLink(refName(bodySchema.$ref)), ")"] : null, rb.required ? el("span", { class: "req", text: "required" }) : null),
        el("details", { class: "fields-box" }, el("summary", { text: "fields" }), md(resolve(bodySchema).description), fieldsTable(bodySchema)),
      );
    }

    body.append(el("h4", { text: "Responses" }), responsesTable(op));
    body.append(tryIt(o, secured, media));
    return body;
  }

  function responsesTable(op) {
    const rows = Object.entries(op.responses || {}).map(([code, r0]) => {
      const r = resolve(r0);
      const content = r.content || {};
      const types = Object.keys(content);
      const m = content["application/json"];
      const examples = mediaExamples(m);
      return el(
        "tr",
        null,
        el("td", null, el("span", { class: "code c" + code[0], text: code })),
        el(
          "td",
          null,
          md(r.description),
          r.headers ? el("div", { class: "eg" }, "headers: ", join(Object.keys(r.headers).map((h) => el("code", { text: h })), ", ")) : null,
          examples.length ? el("details", { class: "example" }, el("summary", { text: "example" }), el("pre", { text: pretty(examples[0].value) })) : null,
        ),
        el("td", { class: "type" }, m && m.schema ? typeOf(m.schema) : types.join(", ")),
      );
    });
    return el("table", { class: "responses" }, el("tbody", null, rows));
  }

  // ---- Try it -------------------------------------------------------------------------------
  const shq = (s) => "'" + String(s).replace(/'/g, "'\\''") + "'";

  function tryIt(o, secured, media) {
    const { path, method, params } = o;
    const box = el("div", { class: "try" }, el("h4", { text: "Try it" }));
    const inputs = {};
    for (const p of params.filter((x) => x.in === "path")) {
      inputs[p.name] = el("input", { type: "text", spellcheck: "false", placeholder: p.name, value: "" });
      box.append(el("label", { class: "param" }, el("code", { text: p.name }), inputs[p.name]));
    }
    let textarea = null;
    if (media) {
      const examples = mediaExamples(media);
      textarea = el("textarea", { rows: "10", spellcheck: "false" });
      textarea.value = examples.length ? pretty(examples[0].value) : "{}";
      if (examples.length > 1) {
        const select = el(
          "select",
          { "aria-label": "example" },
          examples.map((e, i) => el("option", { value: String(i), text: e.summary })),
        );
        select.addEventListener("change", () => {
          textarea.value = pretty(examples[Number(select.value)].value);
        });
        box.append(el("label", { class: "param" }, "example ", select));
      }
      box.append(textarea);
    }
    const button = el("button", { type: "button", class: "run", text: "Send " + method });
    const curlPre = el("pre", { class: "curl" });
    const status = el("div", { class: "status" });
    const headersPre = el("pre", { class: "headers" });
    const out = el("pre", { class: "out" });
    const result = el("div", { class: "result hidden" }, status, headersPre, out);
    box.append(el("div", { class: "buttons" }, button), el("div", { class: "label", text: "curl" }), curlPre, result);

    function target() {
      const filled = path.replace(/\{([^}]+)\}/g, (_, n) => encodeURIComponent(inputs[n] ? inputs[n].value.trim() : ""));
      return new URL(filled.replace(/^\//, ""), base);
    }
    function updateCurl() {
      const parts = ["curl -s", method === "GET" ? null : "-X " + method, shq(target().href)];
      if (secured) parts.push('-H "X-API-Token: $TOKEN"');
      if (textarea) {
        let b = textarea.value;
        try {
          b = JSON.stringify(JSON.parse(b));
        } catch (_) {
          // sent as typed
        }
        parts.push("-H 'Content-Type: application/json'", "-d " + shq(b));
      }
      curlPre.textContent = parts.filter(Boolean).join(" ");
    }
    Object.values(inputs).forEach((i) => i.addEventListener("input", updateCurl));
    if (textarea) textarea.addEventListener("input", updateCurl);
    box.addEventListener("change", updateCurl);
    updateCurl();

    button.addEventListener("click", async () => {
      const headers = {};
      const token = document.getElementById("token").value;
      if (secured && token) headers["X-API-Token"] = token;
      const init = { method, headers, cache: "no-store", credentials: "same-origin" };
      if (textarea) {
        headers["Content-Type"] = "application/json";
        init.body = textarea.value;
      }
      result.classList.remove("hidden");
      status.className = "status wait";
      status.textContent = secured && !token ? "Sending without a token (expect 401)\u2026" : "Waiting for the broker\u2026";
      headersPre.textContent = "";
      out.textContent = "";
      button.disabled = true;
      const t0 = performance.now();
      try {
        const r = await fetch(target(), init);
        const text = await r.text();
        const ms = Math.round(performance.now() - t0);
        status.className = "status c" + String(r.status)[0];
        status.textContent = r.status + " " + r.statusText + " \u00b7 " + ms + " ms";
        const shown = [];
        r.headers.forEach((v, k) => shown.push(k + ": " + v));
        headersPre.textContent = shown.join("\n");
        let shownBody = text;
        try {
          if (text) shownBody = pretty(JSON.parse(text));
        } catch (_) {
          // not JSON: shown as it came
        }
        out.textContent = shownBody || "(no body)";
      } catch (e) {
        status.className = "status c5";
        status.textContent = "Request failed: " + e;
      } finally {
        button.disabled = false;
      }
    });
    return box;
  }

  // ---- schemas ------------------------------------------------------------------------------
  function renderSchemas() {
    const schemas = (spec.components && spec.components.schemas) || {};
    const section = el("section", { class: "schemas", id: "schemas" }, el("h2", { text: "Schemas" }));
    for (const [name, s] of Object.entries(schemas)) {
      const table = fieldsTable(s);
      section.append(
        el(
          "details",
          { class: "schema", id: "schema-" + name },
          el("summary", null, el("code", { text: name }), " ", el("span", { class: "type" }, table ? "object" : typeOf(s))),
          md(s.description),
          table,
        ),
      );
    }
    return section;
  }

  // ---- page ---------------------------------------------------------------------------------
  function render() {
    const main = document.getElementById("main");
    main.replaceChildren();
    const info = spec.info || {};
    document.getElementById("title").textContent = (info.title || "API") + " API";
    document.title = (info.title || "API") + " API";
    document.getElementById("version").textContent = info.version ? "v" + info.version : "";

    const filter = el("input", { type: "search", class: "filter", placeholder: "Filter operations", "aria-label": "filter operations" });
    main.append(el("section", { class: "intro" }, info.summary ? el("p", { class: "lead", text: info.summary }) : null, md(info.description), filter));

    const ops = operations();
    const tags = (spec.tags || []).map((t) => t.name);
    for (const o of ops) for (const t of o.op.tags || ["default"]) if (!tags.includes(t)) tags.push(t);
    const all = [];
    for (const t of tags) {
      const mine = ops.filter((o) => (o.op.tags || ["default"]).includes(t));
      if (!mine.length) continue;
      const tagInfo = (spec.tags || []).find((x) => x.name === t) || {};
      const section = el("section", { class: "tag" }, el("h2", { text: t }), tagInfo.description ? md(tagInfo.description) : null);
      for (const o of mine) {
        const node = renderOperation(o);
        all.push({ node, text: (o.method + " " + o.path + " " + (o.op.summary || "")).toLowerCase(), section });
        section.append(node);
      }
      main.append(section);
    }
    main.append(renderSchemas());

    filter.addEventListener("input", () => {
      const q = filter.value.trim().toLowerCase();
      for (const a of all) a.node.classList.toggle("hidden", q !== "" && !a.text.includes(q));
      for (const s of main.querySelectorAll("section.tag")) {
        s.classList.toggle("hidden", !s.querySelector("details.op:not(.hidden)"));
      }
    });

    const target = location.hash && document.getElementById(decodeURIComponent(location.hash.slice(1)));
    if (target) {
      if (target.tagName === "DETAILS") target.open = true;
      target.scrollIntoView();
    }
  }

  function init() {
    const token = document.getElementById("token");
    const toggle = document.getElementById("token-toggle");
    toggle.addEventListener("click", () => {
      const hidden = token.type === "password";
      token.type = hidden ? "text" : "password";
      toggle.textContent = hidden ? "hide" : "show";
    });
    document.addEventListener("click", (e) => {
      const a = e.target.closest && e.target.closest("a.schema-link");
      if (!a) return;
      const d = document.getElementById(a.getAttribute("href").slice(1));
      if (d && d.tagName === "DETAILS") d.open = true;
    });
    fetch(new URL("openapi.json", base), { cache: "no-store" })
      .then((r) => {
        if (!r.ok) throw new Error("GET openapi.json answered " + r.status);
        return r.json();
      })
      .then((doc) => {
        spec = doc;
        render();
      })
      .catch((e) => {
        document.getElementById("loading").textContent = "Cannot load openapi.json: " + e.message;
      });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
