//! `GET /openapi.json` and `GET /docs`: public, self-contained, and the document describes exactly
//! the routes the router has (walked over the real HTTP API), each with the error statuses it can
//! answer.

use crate::support::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

fn document(b: &TestBroker) -> Value {
    let r = call(b.addr, "GET", "/openapi.json", None, None);
    assert_eq!(r.status, 200);
    r.json()
}

/// Documented operations: (METHOD, path template) -> operation.
fn operations(doc: &Value) -> BTreeMap<(String, String), Value> {
    let mut ops = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (m, op) in item.as_object().unwrap() {
            if ["get", "post", "put", "patch", "delete", "options", "head"].contains(&m.as_str()) {
                ops.insert((m.to_ascii_uppercase(), path.clone()), op.clone());
            }
        }
    }
    ops
}

/// Does `path` (concrete) match `template`? `{name}` matches one segment, also an empty one as
/// the router's does (`DELETE /session/` is a 204 for the session id ""; the document's
/// `session_id` is any string).
fn matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| t.starts_with('{') || t == p)
}

fn concrete(template: &str) -> String {
    template.replace("{session_id}", "0123456789abcdef0123456789abcdef")
}

/// A path of the document with every placeholder filled in.
fn concrete_all(template: &str) -> String {
    concrete(template).replace("{job_id}", "fedcba9876543210fedcba9876543210")
}

/// Is `doc_path` (a path of the document) one of the paths of the router's `template` (from
/// `api::ROUTES`)? A placeholder of the template stands for any segment (`/docs/{asset}` is
/// `/docs/docs.js`); a placeholder of the document only for a placeholder.
fn instantiates(doc_path: &str, template: &str) -> bool {
    let d: Vec<&str> = doc_path.split('/').collect();
    let t: Vec<&str> = template.split('/').collect();
    d.len() == t.len()
        && d.iter()
            .zip(&t)
            .all(|(d, t)| t.starts_with('{') || (d == t && !d.starts_with('{')))
}

/// The body of the function `name` in a source file (from its `fn` line to its closing brace).
fn source_fn(file: &str, name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let src = std::fs::read_to_string(&path).unwrap();
    let start = src
        .find(&format!("fn {name}("))
        .unwrap_or_else(|| panic!("no fn {name} in {file}"));
    let body = &src[start..];
    body[..body.find("\n}\n").unwrap()].to_string()
}

/// The names a function's source reads as `<receiver>.<kind>("name"` (`f.boolean("save"`,
/// `map.get("commands"`), for any of `receivers`.
fn names_read(src: &str, receivers: &[&str]) -> BTreeSet<String> {
    let re = regex::Regex::new(&format!(
        r#"\b(?:{})\.[a-z_]+\(\s*"([a-z_]+)""#,
        receivers.join("|")
    ))
    .unwrap();
    re.captures_iter(src).map(|c| c[1].to_string()).collect()
}

fn detail(r: &Resp) -> Value {
    serde_json::from_slice::<Value>(&r.body)
        .map(|v| v["detail"].clone())
        .unwrap_or(Value::Null)
}

/// The router's own "no such route" (as opposed to an operation's 404 such as an unknown session).
fn router_refused(r: &Resp) -> bool {
    r.status == 405 || (r.status == 404 && detail(r) == "Not Found")
}

fn send(b: &TestBroker, method: &str, path: &str, token: Option<&str>) -> Resp {
    let body = (method == "POST").then_some("{}");
    call(b.addr, method, path, token, body)
}

fn documented_codes(op: &Value) -> BTreeSet<String> {
    op["responses"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[test]
fn docs_and_document_are_public_self_contained_and_typed() {
    let b = broker("");
    for token in [None, Some("wrong-token")] {
        let r = call(b.addr, "GET", "/openapi.json", token, None);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        let doc = r.json();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        let scheme = &doc["components"]["securitySchemes"]["APIKeyHeader"];
        assert_eq!(scheme["type"], "apiKey");
        assert_eq!(scheme["in"], "header");
        assert_eq!(scheme["name"], "X-API-Token");
        assert_eq!(doc["security"][0]["APIKeyHeader"], serde_json::json!([]));

        let page = call(b.addr, "GET", "/docs", token, None);
        assert_eq!(page.status, 200);
        assert_eq!(
            page.header("Content-Type"),
            Some("text/html; charset=utf-8")
        );
        let csp = page.header("Content-Security-Policy").unwrap();
        assert!(csp.starts_with("default-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(page.header("X-Content-Type-Options"), Some("nosniff"));
        let html = String::from_utf8(page.body.clone()).unwrap();
        // Everything the page refers to is served by the broker itself.
        let refs: Vec<&str> = html
            .split(['"', '\''])
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0].ends_with("src=") || w[0].ends_with("href="))
            .map(|w| w[1])
            .collect();
        assert!(refs.len() >= 3, "{refs:?}");
        assert!(!html.contains("http://") && !html.contains("https://"));
        for href in &refs {
            assert!(!href.contains(':') && !href.starts_with('/'), "{href}");
            let r = call(b.addr, "GET", &format!("/{href}"), token, None);
            assert_eq!(r.status, 200, "{href}");
            let body = String::from_utf8_lossy(&r.body);
            assert!(
                !body.contains("http://") && !body.contains("https://"),
                "{href} names an outside URL"
            );
            let want = match href.rsplit('.').next() {
                Some("js") => "text/javascript; charset=utf-8",
                Some("css") => "text/css; charset=utf-8",
                _ => "application/json",
            };
            assert_eq!(r.header("Content-Type"), Some(want), "{href}");
        }
    }
    // The rest of the API still wants the token.
    assert_eq!(call(b.addr, "GET", "/sessions", None, None).status, 401);
    assert_eq!(b.get("/sessions").status, 200);
    // Wrong method: 405 with Allow, as elsewhere; unknown file under /docs: 404.
    for p in ["/docs", "/openapi.json", "/docs/docs.js"] {
        let r = call(b.addr, "POST", p, None, Some("{}"));
        assert_eq!(r.status, 405, "{p}");
        assert_eq!(r.header("Allow"), Some("GET"));
        assert_eq!(r.json()["detail"], "Method Not Allowed");
    }
    for p in [
        "/docs/",
        "/docs/nope.js",
        "/docs/docs.js/x",
        "/openapi.json/x",
    ] {
        let r = call(b.addr, "GET", p, None, None);
        assert_eq!(r.status, 404, "{p}");
        assert_eq!(r.json()["detail"], "Not Found");
    }
}

/// For every documented operation a request reaches a real route; for every other (method, path)
/// built from the document's own words (and a few more) the router says 404 or 405, and a 405's
/// `Allow` lists exactly the documented methods of that path.
#[test]
fn document_and_router_agree() {
    let b = broker("");
    let doc = document(&b);
    let ops = operations(&doc);
    assert_eq!(ops.len(), 45, "{:?}", ops.keys());

    for ((method, template), op) in &ops {
        let path = concrete(template);
        let secured = op
            .get("security")
            .unwrap_or(&doc["security"])
            .as_array()
            .is_some_and(|s| !s.is_empty());
        let r = send(&b, method, &path, Some(TOKEN));
        assert!(
            !router_refused(&r),
            "{method} {path}: {} {:?}",
            r.status,
            detail(&r)
        );
        assert!(
            documented_codes(op).contains(&r.status.to_string()),
            "{method} {path} answered {} which is not documented",
            r.status
        );
        let anon = send(&b, method, &path, None);
        if secured {
            assert_eq!(anon.status, 401, "{method} {path} without a token");
        } else {
            assert_eq!(anon.status, r.status, "{method} {path} is public");
        }
    }

    // Candidate paths from the document's segments, a stranger, and deeper paths under the
    // prefixes that have them.
    let mut words: BTreeSet<String> = ops
        .keys()
        .flat_map(|(_, t)| t.split('/').map(str::to_string).collect::<Vec<_>>())
        .filter(|s| !s.is_empty() && !s.starts_with('{'))
        .collect();
    words.insert("x".into());
    let mut paths: Vec<String> = Vec::new();
    for a in &words {
        paths.push(format!("/{a}"));
        for c in &words {
            paths.push(format!("/{a}/{c}"));
            if ["session", "telnet-session", "docs"].contains(&a.as_str()) {
                for d in &words {
                    paths.push(format!("/{a}/{c}/{d}"));
                }
            }
            // The guard's actions and the jobs' routes, deeper (any id will do).
            if ["session", "telnet-session"].contains(&a.as_str()) && c == "x" {
                for d in &words {
                    paths.push(format!("/{a}/{c}/guard/{d}"));
                    paths.push(format!("/{a}/{c}/jobs/{d}"));
                    paths.push(format!("/{a}/{c}/jobs/x/{d}"));
                }
            }
        }
    }
    for extra in [
        "/nope",
        "/openapi.yaml",
        "/redoc",
        "/docs/",
        "/session/",
        "/sessions/",
        "/health/",
        "/session/x/status/extra",
        "/telnet-session/x/exec/x",
        "/session/x/guard/x/y",
        "/session/x/guard/",
        "/guards/x",
        "/session/x/jobs/",
        "/session/x/jobs/x/output/x",
        "/telnet-session/x/jobs/x/cancel/x",
        "/session/x/jobs/x/y/z",
    ] {
        paths.push(extra.into());
    }
    let mut checked = 0;
    for path in &paths {
        let templates: Vec<&String> = ops
            .keys()
            .filter(|(_, t)| matches(t, path))
            .map(|(_, t)| t)
            .collect();
        let allowed: BTreeSet<&str> = ops
            .keys()
            .filter(|(_, t)| templates.contains(&t))
            .map(|(m, _)| m.as_str())
            .collect();
        for method in METHODS.iter().chain(&["HEAD"]) {
            let r = send(&b, method, path, Some(TOKEN));
            if allowed.contains(method) {
                assert!(
                    !router_refused(&r),
                    "{method} {path} is documented but the router refused it: {}",
                    r.status
                );
            } else if !allowed.is_empty() {
                assert_eq!(r.status, 405, "{method} {path} is not documented");
                let allow: BTreeSet<&str> = r.header("Allow").unwrap().split(", ").collect();
                assert_eq!(allow, allowed, "Allow of {path}");
            } else {
                assert!(
                    r.status == 404 && detail(&r) == "Not Found",
                    "{method} {path} is not documented but answered {} {:?}",
                    r.status,
                    detail(&r)
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 3000, "{checked}");
}

/// Two ways: every route the router names (`api::ROUTES`, which a unit test in src/api/mod.rs
/// holds to `route_template`'s arms) is a documented path, and every documented path is one of
/// them. The dashboard's routes (`api::DASHBOARD_ROUTES`) are HTML and not in the document.
#[test]
fn every_route_is_documented_and_every_documented_path_is_a_route() {
    let b = broker("");
    let doc = document(&b);
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    let mut problems = Vec::new();
    for t in netdev_broker::api::ROUTES {
        if !paths.iter().any(|p| instantiates(p, t)) {
            problems.push(format!("route {t} is not documented"));
        }
    }
    for p in &paths {
        let t = netdev_broker::api::route_template(&concrete_all(p));
        if !netdev_broker::api::ROUTES.contains(&t) || !instantiates(p, t) {
            problems.push(format!("documented path {p} is route {t}"));
        }
    }
    for t in netdev_broker::api::DASHBOARD_ROUTES {
        if paths.iter().any(|p| instantiates(p, t)) {
            problems.push(format!("dashboard route {t} is in the document"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every operation lists the statuses it can answer (the single mapping in src/api/error.rs, the
/// error model in docs/api.md), each with a JSON body schema, and its examples are accepted by the
/// broker's own request parser.
#[test]
fn every_operation_documents_its_statuses() {
    let b = broker("");
    let doc = document(&b);
    let ops = operations(&doc);
    let mut ids = BTreeSet::new();
    for ((method, path), op) in &ops {
        let id = op["operationId"].as_str().unwrap();
        assert!(ids.insert(id.to_string()), "duplicate operationId {id}");
        assert!(
            op["summary"].is_string() && op["description"].is_string(),
            "{id}"
        );
        let secured = op.get("security").is_none();
        let codes = documented_codes(op);
        // Every operation that needs a token may answer 429 (too many wrong tokens from the
        // client's address; on an open also the token's max_sessions), and one that some role
        // may not use answers 403 for it.
        let want: &[&str] = match (method.as_str(), path.as_str()) {
            ("POST", "/session" | "/telnet-session") => &[
                "201", "401", "403", "413", "422", "429", "500", "502", "503", "504",
            ],
            ("POST", "/probe" | "/telnet-probe")
            | ("POST", "/api/v2.0/netmiko/send_command" | "/api/v2.0/netmiko/send_config") => &[
                "200", "401", "403", "410", "413", "422", "429", "500", "502", "503", "504",
            ],
            ("POST", p) if p.ends_with("/exec") => &[
                "200", "202", "401", "403", "404", "409", "410", "413", "422", "429", "500", "503",
            ],
            ("GET", p) if p.ends_with("/jobs") => &["200", "401", "404", "429", "503"],
            ("GET", p) if p.ends_with("/jobs/{job_id}") => {
                &["200", "401", "404", "410", "422", "429", "503"]
            }
            ("GET", p) if p.ends_with("/output") => {
                &["200", "401", "403", "404", "410", "422", "429", "503"]
            }
            ("DELETE", p) if p.ends_with("/jobs/{job_id}") => {
                &["200", "401", "403", "404", "409", "410", "429", "503"]
            }
            ("POST", p) if p.ends_with("/cancel") => {
                &["200", "401", "403", "404", "409", "410", "429", "503"]
            }
            ("GET", p) if p.ends_with("/status") => &["200", "401", "404", "429", "503"],
            ("POST", p) if p.ends_with("/guard") => &[
                "201", "401", "403", "404", "409", "410", "413", "422", "429", "503",
            ],
            ("GET", p) if p.ends_with("/guard") => &["200", "401", "404", "429", "503"],
            ("DELETE", p) if p.ends_with("/guard") => {
                &["200", "401", "403", "404", "409", "429", "503"]
            }
            ("POST", p) if p.ends_with("/guard/extend") || p.ends_with("/guard/probe") => &[
                "200", "401", "403", "404", "409", "413", "422", "429", "503",
            ],
            ("POST", p) if p.ends_with("/guard/confirm") || p.ends_with("/guard/rollback") => {
                &["200", "401", "403", "404", "409", "429", "503"]
            }
            ("DELETE", _) => &["204", "401", "403", "409", "429", "503"],
            ("GET", "/sessions" | "/device-types" | "/guards") => &["200", "401", "429", "503"],
            // Public when metrics_public: then a foreign Host is a 421 (DNS rebinding).
            ("GET", "/metrics") => &["200", "401", "421", "429", "503"],
            ("GET", _) => &["200", "421", "503"],
            other => panic!("no expectation for {other:?}"),
        };
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(codes, want, "{method} {path}");
        assert_eq!(codes.contains("401"), secured, "{method} {path}");
        assert_eq!(
            op.get("requestBody").is_some(),
            codes.contains("413"),
            "{method} {path}"
        );
        for (code, resp) in op["responses"].as_object().unwrap() {
            let resp = resolve(&doc, resp);
            assert!(resp["description"].is_string(), "{id} {code}");
            if code == "204" {
                assert!(resp.get("content").is_none());
                continue;
            }
            let content = resp["content"].as_object().unwrap();
            assert_eq!(content.len(), 1, "{id} {code}");
            let (media, body) = content.iter().next().unwrap();
            if code.starts_with('2') && path.starts_with("/docs") {
                assert!(media.starts_with("text/"), "{id}");
            } else if code.starts_with('2') && path == "/metrics" {
                assert_eq!(media, "text/plain; version=0.0.4; charset=utf-8", "{id}");
            } else {
                assert_eq!(media, "application/json", "{id} {code}");
            }
            assert!(body["schema"].is_object(), "{id} {code}");
            if !code.starts_with('2') {
                let schema = resolve(&doc, &body["schema"]);
                assert_eq!(
                    schema["required"],
                    serde_json::json!(["detail"]),
                    "{id} {code}: errors carry detail"
                );
            }
        }
        // Request examples parse as the broker parses bodies.
        if let Some(rb) = op.get("requestBody") {
            let examples = rb["content"]["application/json"]["examples"]
                .as_object()
                .unwrap();
            assert!(!examples.is_empty(), "{id}");
            for (name, ex) in examples {
                let value = resolve(&doc, ex)["value"].to_string();
                if path.contains("/guard") {
                    // Guard bodies are checked before the session is looked up: a valid one
                    // reaches the lookup (404 for this id).
                    let r = call(b.addr, "POST", &concrete(path), Some(TOKEN), Some(&value));
                    assert_eq!(r.status, 404, "{id} example {name}: {:?}", detail(&r));
                    continue;
                }
                let parsed = if path.ends_with("/exec") {
                    netdev_broker::api::wire::exec_body(value.as_bytes()).map(|_| ())
                } else if path.ends_with("probe") {
                    netdev_broker::api::wire::probe_body(value.as_bytes()).map(|_| ())
                } else if let Some(which) = path.strip_prefix("/api/v2.0/netmiko/") {
                    netdev_broker::api::wire::netmiko_body(value.as_bytes(), which == "send_config")
                        .map(|_| ())
                } else {
                    netdev_broker::api::wire::open_body(value.as_bytes()).map(|b| {
                        assert!(
                            netdev_broker::platform::lookup(&b.device_type).is_some(),
                            "{id} {name}"
                        )
                    })
                };
                assert!(parsed.is_ok(), "{id} example {name}: {:?}", parsed.err());
            }
        }
    }
}

/// The roles each operation lists (`x-roles`, and its description's "Roles: ..." sentence) are
/// exactly the roles `api::auth::ROUTE_ROLES` gives its route, a public operation lists none, and
/// every route of that table is documented. An operation that some role may not use documents
/// that 403, every operation that needs a token the 429, and every operation takes and answers
/// `X-Request-ID`.
#[test]
fn every_operation_lists_the_roles_route_roles_gives_it() {
    use netdev_broker::api::auth::{roles_for, ROUTE_ROLES};
    let b = broker("");
    let doc = document(&b);
    let mut problems = Vec::new();
    let mut documented = BTreeSet::new();
    for ((method, path), op) in &operations(&doc) {
        let template = netdev_broker::api::route_template(&concrete_all(path));
        let want: Option<Vec<&str>> =
            roles_for(method, template).map(|r| r.iter().map(|r| r.name()).collect());
        let listed: Option<Vec<&str>> = op.get("x-roles").map(|v| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap())
                .collect()
        });
        if listed != want {
            problems.push(format!(
                "{method} {path}: x-roles {listed:?}, ROUTE_ROLES {want:?}"
            ));
        }
        let secured = op
            .get("security")
            .unwrap_or(&doc["security"])
            .as_array()
            .is_some_and(|s| !s.is_empty());
        if secured != want.is_some() {
            problems.push(format!(
                "{method} {path}: secured {secured}, roles {want:?}"
            ));
        }
        let codes = documented_codes(op);
        if let Some(roles) = &want {
            documented.insert((method.clone(), template));
            let sentence = format!("Roles: {}.", roles.join(", "));
            if !op["description"].as_str().unwrap().contains(&sentence) {
                problems.push(format!(
                    "{method} {path}: no {sentence:?} in its description"
                ));
            }
            if codes.contains("403") != (roles.len() < 4) {
                problems.push(format!(
                    "{method} {path}: roles {roles:?}, 403 documented: {}",
                    codes.contains("403")
                ));
            }
            if !codes.contains("429") {
                problems.push(format!("{method} {path}: needs a token, no 429"));
            }
        }
        let takes_id = op["parameters"].as_array().is_some_and(|ps| {
            ps.iter()
                .map(|p| resolve(&doc, p))
                .any(|p| p["in"] == "header" && p["name"] == "X-Request-ID")
        });
        if !takes_id {
            problems.push(format!("{method} {path}: no X-Request-ID parameter"));
        }
        for (code, resp) in op["responses"].as_object().unwrap() {
            if resolve(&doc, resp)["headers"].get("X-Request-ID").is_none() {
                problems.push(format!("{method} {path} {code}: no X-Request-ID header"));
            }
        }
    }
    for (method, template, _) in ROUTE_ROLES {
        if !documented.contains(&(method.to_string(), *template)) {
            problems.push(format!(
                "ROUTE_ROLES's {method} {template} is not documented"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => resolve(doc, doc.pointer(r.trim_start_matches('#')).unwrap()),
        None => v,
    }
}

/// The documented request fields are the ones the parser reads (src/api/wire.rs): a field the
/// parser validates is rejected with its name in `loc` when given a value of the wrong type.
#[test]
fn documented_body_fields_are_the_parsed_ones() {
    let b = broker("");
    let doc = document(&b);
    let schemas = &doc["components"]["schemas"];
    let fields = |name: &str| -> Vec<String> {
        schemas[name]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let open = fields("SessionRequest");
    assert_eq!(
        open,
        [
            "host",
            "username",
            "password",
            "device_type",
            "port",
            "timeout",
            "session_timeout",
            "enable_password",
            "secret",
            "enable_level",
            "keepalive_interval",
            "key_file",
            "passphrase",
            "host_key_policy",
            "legacy_algorithms",
            "kex",
            "host_key_algorithms",
            "ciphers",
            "macs",
            "jump"
        ]
    );
    for f in &open {
        let mut body = serde_json::json!({"host": "127.0.0.1", "username": "u", "password": "p"});
        body[f.as_str()] = serde_json::json!({"wrong": "type"});
        let r = b.post("/session", &body);
        assert_eq!(r.status, 422, "{f}");
        assert_eq!(r.json()["detail"][0]["loc"], serde_json::json!(["body", f]));
    }
    // Each jump host's fields, located under body.jump[0].
    let hop = fields("JumpHost");
    assert_eq!(
        hop,
        [
            "host",
            "port",
            "username",
            "password",
            "key_file",
            "passphrase",
            "legacy_algorithms",
            "host_key_policy"
        ]
    );
    for f in &hop {
        let mut j = serde_json::json!({"host": "bastion", "username": "u", "password": "p"});
        j[f.as_str()] = serde_json::json!({"wrong": "type"});
        let body =
            serde_json::json!({"host": "127.0.0.1", "username": "u", "password": "p", "jump": [j]});
        let r = b.post("/session", &body);
        assert_eq!(r.status, 422, "{f}");
        assert_eq!(
            r.json()["detail"][0]["loc"],
            serde_json::json!(["body", "jump", 0, f])
        );
    }
    let probe = fields("ProbeRequest");
    assert_eq!(
        probe,
        ["command", "commands", "config", "save", "stop_on_error"]
    );
    for f in &probe {
        let mut body = serde_json::json!({"host": "127.0.0.1", "username": "u", "password": "p"});
        body[f.as_str()] = serde_json::json!({"wrong": "type"});
        let r = b.post("/probe", &body);
        assert_eq!(r.status, 422, "{f}");
        assert_eq!(r.json()["detail"][0]["loc"], serde_json::json!(["body", f]));
    }
    let netmiko = fields("NetmikoRequest");
    assert_eq!(
        netmiko,
        [
            "host",
            "connection_options",
            "commands",
            "config",
            "save",
            "stop_on_error"
        ]
    );
    for f in &netmiko {
        let mut body = serde_json::json!({"host": "127.0.0.1",
            "connection_options": {"username": "u"}, "config": ["x"]});
        body[f.as_str()] = serde_json::json!(42);
        // send_config takes `commands` only without `config`.
        let route = if f == "commands" {
            "send_command"
        } else {
            "send_config"
        };
        let r = b.post(&format!("/api/v2.0/netmiko/{route}"), &body);
        assert_eq!(r.status, 422, "{f}");
        let locs: Vec<Value> = r.json()["detail"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["loc"].clone())
            .collect();
        assert!(
            locs.contains(&serde_json::json!(["body", f])),
            "{f}: {locs:?}"
        );
    }
    let exec = fields("ExecRequest");
    assert_eq!(
        exec,
        [
            "commands",
            "config",
            "save",
            "stop_on_error",
            "timeout",
            "wait",
            "idempotency_key",
            "job_timeout"
        ]
    );
    for f in &exec {
        let mut body = serde_json::json!({"commands": ["show version"]});
        body[f.as_str()] = serde_json::json!({"wrong": "type"});
        let r = b.post("/session/0123/exec", &body);
        assert_eq!(r.status, 422, "{f}");
        assert_eq!(r.json()["detail"][0]["loc"], serde_json::json!(["body", f]));
    }
    let item = fields("ExecItem");
    assert_eq!(
        item,
        [
            "cmd",
            "expect",
            "answer",
            "send_newlines",
            "interactions",
            "read_timeout",
            "timeout"
        ]
    );
    for f in &item {
        let mut cmd = serde_json::json!({"cmd": "show version"});
        cmd[f.as_str()] = serde_json::json!({"wrong": "type"});
        let r = b.post(
            "/session/0123/exec",
            &serde_json::json!({ "commands": [cmd] }),
        );
        assert_eq!(r.status, 422, "{f}");
        assert_eq!(
            r.json()["detail"][0]["loc"],
            serde_json::json!(["body", "commands", 0, f])
        );
    }
    let inter = fields("Interaction");
    assert_eq!(inter, ["expect", "send", "hidden", "newline"]);
    for f in &inter {
        let mut i = serde_json::json!({"expect": "x"});
        i[f.as_str()] = serde_json::json!({"wrong": "type"});
        let r = b.post(
            "/session/0123/exec",
            &serde_json::json!({"commands": [{"cmd": "x", "interactions": [i]}]}),
        );
        assert_eq!(r.status, 422, "{f}");
        assert_eq!(
            r.json()["detail"][0]["loc"],
            serde_json::json!(["body", "commands", 0, "interactions", 0, f])
        );
    }
}

/// The other way round: every field the parsers read (`f.<kind>("name"` and `map.get("name")`
/// in src/api/wire.rs's `open_body`, `exec_body` and `exec_item`) is documented in its schema,
/// every header the exec reads (src/api/jobs.rs) is a documented header parameter of the exec,
/// and every query parameter a job route reads is documented on a job route.
#[test]
fn every_parsed_field_header_and_query_parameter_is_documented() {
    let b = broker("");
    let doc = document(&b);
    let schemas = &doc["components"]["schemas"];
    let documented = |schema: &str| -> BTreeSet<String> {
        schemas[schema]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let mut problems = Vec::new();
    // `exec_item` reads the item (`o`) through `g` and each interaction through `h`.
    for (function, receivers, schema) in [
        ("open_body", &["f", "map"][..], "SessionRequest"),
        ("exec_body", &["f", "map"], "ExecRequest"),
        ("exec_item", &["g", "o"], "ExecItem"),
        ("exec_item", &["h"], "Interaction"),
    ] {
        let read = names_read(&source_fn("src/api/wire.rs", function), receivers);
        assert!(read.len() >= 4, "{function}: {read:?}");
        for name in read.difference(&documented(schema)) {
            problems.push(format!("{function} reads {name:?}, not in {schema}"));
        }
    }
    let params = |method: &str, path: &str, within: &str| -> BTreeSet<String> {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| resolve(&doc, p))
            .filter(|p| p["in"] == within)
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    let jobs = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api/jobs.rs"),
    )
    .unwrap();
    let headers: BTreeSet<String> = regex::Regex::new(r#"\.header\(\s*"([A-Za-z-]+)"\)"#)
        .unwrap()
        .captures_iter(&jobs)
        .map(|c| c[1].to_string())
        .collect();
    assert!(headers.contains("Idempotency-Key"), "{headers:?}");
    for prefix in ["/session", "/telnet-session"] {
        let exec = format!("{prefix}/{{session_id}}/exec");
        let documented = params("post", &exec, "header");
        for h in headers.difference(&documented) {
            problems.push(format!("POST {exec}: header {h} is read, not documented"));
        }
    }
    let queries: BTreeSet<String> = regex::Regex::new(r#"query_[a-z0-9]+\(req,\s*"([a-z_]+)""#)
        .unwrap()
        .captures_iter(&jobs)
        .map(|c| c[1].to_string())
        .collect();
    assert!(queries.contains("wait"), "{queries:?}");
    let job_paths: Vec<&String> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|p| p.contains("/jobs"))
        .collect();
    for q in &queries {
        if !job_paths
            .iter()
            .any(|p| params("get", p, "query").contains(q))
        {
            problems.push(format!("query parameter {q} is read, not documented"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The change guard's body and the bodies nested in it (`rollback`: an exec body or a list of
/// exec items; `probe` and `reopen`: the body of `POST /session`) are the parsed ones, located
/// under their key. `device_revert` depends on the session's platform: checked in
/// `guard::device_revert_is_confirmed_with_the_guard_and_refused_where_the_platform_has_none`.
#[test]
fn documented_guard_fields_are_the_parsed_ones() {
    use serde_json::json;
    let b = broker("");
    let doc = document(&b);
    let schemas = &doc["components"]["schemas"];
    let fields = |name: &str| -> Vec<String> {
        schemas[name]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let arm = "/session/0123/guard";
    let loc = |path: &str, body: &Value| -> Vec<Value> {
        let r = b.post(path, body);
        assert_eq!(
            r.status,
            422,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()["detail"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["loc"].clone())
            .collect()
    };
    let valid = json!({"timeout": 60, "rollback": ["show clock"]});
    // A valid body reaches the session lookup.
    assert_eq!(b.post(arm, &valid).status, 404);
    let guard = fields("GuardRequest");
    assert_eq!(
        guard,
        [
            "timeout",
            "rollback",
            "device_revert",
            "probe",
            "reopen",
            "on_broker_exit"
        ]
    );
    for f in guard.iter().filter(|f| *f != "device_revert") {
        let mut body = valid.clone();
        body[f.as_str()] = json!("wrong");
        assert_eq!(loc(arm, &body), [json!(["body", f])], "{f}");
    }
    for f in ["timeout", "rollback"] {
        for missing in [Value::Null, json!("absent")] {
            let mut body = valid.clone();
            if missing.is_null() {
                body[f] = Value::Null;
            } else {
                body.as_object_mut().unwrap().remove(f);
            }
            assert_eq!(loc(arm, &body), [json!(["body", f])], "{f} {missing}");
        }
    }
    // rollback as an exec body, and as a list of exec items.
    for f in fields("ExecRequest") {
        let mut rb = json!({"commands": ["show version"]});
        rb[f.as_str()] = json!({"wrong": "type"});
        let body = json!({"timeout": 60, "rollback": rb});
        assert_eq!(loc(arm, &body)[0], json!(["body", "rollback", f]), "{f}");
    }
    for f in fields("ExecItem") {
        let mut item = json!({"cmd": "show version"});
        item[f.as_str()] = json!({"wrong": "type"});
        let body = json!({"timeout": 60, "rollback": [item]});
        assert_eq!(loc(arm, &body)[0], json!(["body", "rollback", 0, f]), "{f}");
    }
    // probe and reopen: the body of POST /session (and a probe's command).
    let login = fields("SessionRequest");
    assert_eq!(fields("GuardLogin"), ["command"]);
    for key in ["probe", "reopen"] {
        let extra: &[&str] = if key == "probe" { &["command"] } else { &[] };
        for f in login
            .iter()
            .map(String::as_str)
            .chain(extra.iter().copied())
        {
            let mut l = json!({"host": "127.0.0.1", "username": "u", "password": "p"});
            l[f] = json!({"wrong": "type"});
            let mut body = valid.clone();
            body[key] = l;
            assert_eq!(loc(arm, &body)[0], json!(["body", key, f]), "{key} {f}");
        }
    }
    let mut body = valid.clone();
    body["probe"] =
        json!({"host": "127.0.0.1", "username": "u", "password": "p", "command": "a\u{7}b"});
    assert_eq!(loc(arm, &body), [json!(["body", "probe", "command"])]);
    // extend and probe.
    assert_eq!(fields("GuardExtendRequest"), ["timeout"]);
    for v in [
        json!({}),
        json!({"timeout": null}),
        json!({"timeout": "x"}),
        json!({"timeout": 0}),
    ] {
        assert_eq!(
            loc("/session/0123/guard/extend", &v),
            [json!(["body", "timeout"])],
            "{v}"
        );
    }
    assert_eq!(fields("GuardProbeRequest"), ["rollback_on_failure"]);
    let v = json!({"rollback_on_failure": {"wrong": "type"}});
    assert_eq!(
        loc("/session/0123/guard/probe", &v),
        [json!(["body", "rollback_on_failure"])]
    );
    let r = call(
        b.addr,
        "POST",
        "/session/0123/guard/probe",
        Some(TOKEN),
        None,
    );
    assert_eq!(r.status, 404, "no body is fine");
}

/// The user documentation (README.md and docs/*.md) stays navigable: a README of at most 200
/// lines, no line over 100 characters, none of the project's internal jargon ("the seed" for the
/// original service, "issue N" / "item N" for its work items), and every config key the broker
/// knows described in docs/configuration.md.
#[test]
fn user_docs_are_short_plain_and_describe_every_config_key() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let mut pages: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    pages.sort();
    for page in [
        "api",
        "configuration",
        "install",
        "security",
        "platforms",
        "reliability",
    ] {
        assert!(
            pages.contains(&root.join("docs").join(format!("{page}.md"))),
            "docs/{page}.md is missing"
        );
    }
    let jargon = regex::Regex::new(r"(?i)\bseed|\b(?:issue|item)\s+#?\d").unwrap();
    let mut problems = Vec::new();
    for path in std::iter::once(root.join("README.md")).chain(pages) {
        let name = path.strip_prefix(root).unwrap().display().to_string();
        for (i, line) in read(&path).lines().enumerate() {
            for m in jargon.find_iter(line) {
                problems.push(format!("{name}:{}: {:?}", i + 1, m.as_str()));
            }
            let width = line.chars().count();
            if width > 100 {
                problems.push(format!("{name}:{}: {width} characters", i + 1));
            }
        }
    }
    // The served reference (/openapi.json, /docs) speaks to users too.
    let openapi = read(&root.join("src/api/openapi.json"));
    for (i, line) in openapi.lines().enumerate() {
        for m in jargon.find_iter(line) {
            problems.push(format!("src/api/openapi.json:{}: {:?}", i + 1, m.as_str()));
        }
    }
    let readme = read(&root.join("README.md")).lines().count();
    if readme > 200 {
        problems.push(format!("README.md: {readme} lines (at most 200)"));
    }
    let configuration = read(&root.join("docs/configuration.md"));
    for key in netdev_broker::config::keys() {
        if !configuration.contains(&format!("`{key}`")) {
            problems.push(format!(
                "docs/configuration.md: config key `{key}` not described"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
