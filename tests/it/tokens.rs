//! Named API tokens with roles (issue 19), end to end over HTTP against the fake devices: the
//! route × role table (driven by `ROUTE_ROLES`, on the real binary), session ownership, the
//! `reader` role held to the read-only commands, per-token narrowing (allowed_hosts, command
//! rules, max_sessions), expiry, SIGHUP, the wrong-token limiter, request ids, the audit trail
//! and the dashboard's roles. What the device did is read from its journal, not only from the
//! answers.

use crate::child::Broker as Proc;
use crate::support::telnet_device;
use crate::support::*;
use fake_device::{DeviceConfig, FakeDevice};
use netdev_broker::api::auth::ROUTE_ROLES;
use netdev_broker::secret::token_sha256;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Helpers

/// The secret a client sends for the token named `name` in these tests (a canary: no log, audit
/// line or command log may ever hold it).
fn secret(name: &str) -> String {
    format!("CANARY-tok-{name}-5be1")
}

/// `api_tokens:` with one entry per (name, role, extra fields as YAML flow-mapping items).
fn tokens_yaml(list: &[(&str, &str, &str)]) -> String {
    let mut y = String::from("api_tokens:\n");
    for (name, role, extra) in list {
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(", {extra}")
        };
        y.push_str(&format!(
            "  - {{name: {name}, token_sha256: {}, role: {role}{extra}}}\n",
            token_sha256(&secret(name))
        ));
    }
    y
}

/// A request with any headers; the server closes after it.
fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> Resp {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(t) = token {
        r.push_str(&format!("X-API-Token: {t}\r\n"));
    }
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.map(Value::to_string);
    if let Some(b) = &body {
        r.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    r.push_str("\r\n");
    r.push_str(body.as_deref().unwrap_or(""));
    raw(addr, r.as_bytes())
}

/// A client of one broker with one token (by name; `TOKEN` for "default").
struct As {
    addr: SocketAddr,
    token: String,
}

fn as_(addr: SocketAddr, name: &str) -> As {
    As {
        addr,
        token: if name == "default" {
            TOKEN.to_string()
        } else {
            secret(name)
        },
    }
}

impl As {
    fn req(&self, method: &str, path: &str, body: Option<&Value>) -> Resp {
        send(self.addr, method, path, Some(&self.token), body, &[])
    }
    fn get(&self, path: &str) -> Resp {
        self.req("GET", path, None)
    }
    fn post(&self, path: &str, body: &Value) -> Resp {
        self.req("POST", path, Some(body))
    }
    fn delete(&self, path: &str) -> Resp {
        self.req("DELETE", path, None)
    }
    fn exec(&self, id: &str, body: Value) -> Resp {
        self.post(&format!("/session/{id}/exec"), &body)
    }
    fn cmds(&self, id: &str, cmds: Value) -> Resp {
        self.exec(id, json!({"commands": cmds}))
    }
    /// Open a session (`prefix` /session or /telnet-session); panics unless 201.
    fn open_on(&self, prefix: &str, port: u16) -> String {
        let r = self.post(prefix, &login(port));
        assert_eq!(r.status, 201, "open as {}: {}", self.token, text(&r));
        r.json()["session_id"].as_str().unwrap().to_string()
    }
    fn open(&self, port: u16) -> String {
        self.open_on("/session", port)
    }
    /// The ids of GET /sessions, sorted.
    fn sessions(&self) -> Vec<String> {
        let r = self.get("/sessions");
        assert_eq!(r.status, 200, "{}", text(&r));
        let v = r.json();
        let mut ids: Vec<String> = v["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["session_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(v["count"], ids.len());
        ids.sort();
        ids
    }
}

/// An open body for the fake device at 127.0.0.1:`port`, with the enable secret.
fn login(port: u16) -> Value {
    login_at("127.0.0.1", port)
}

fn login_at(host: &str, port: u16) -> Value {
    json!({"host": host, "port": port, "username": "admin", "password": PASSWORD,
        "enable_password": ENABLE, "timeout": 10})
}

fn text(r: &Resp) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn detail(r: &Resp) -> String {
    match &r.json()["detail"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A fake IOS device over SSH that asks an enable secret.
fn ssh_device() -> FakeDevice {
    ssh_device_at("127.0.0.1")
}

fn ssh_device_at(ip: &str) -> FakeDevice {
    FakeDevice::start_at(
        DeviceConfig {
            password: PASSWORD.into(),
            enable_password: Some(ENABLE.into()),
            ..Default::default()
        },
        ip.parse().unwrap(),
        0,
    )
}

/// How many lines of the journal are exactly `line`.
fn typed(journal: &[String], line: &str) -> usize {
    journal.iter().filter(|l| l.trim() == line).count()
}

/// The value of a metric line `name{labels} N` in a /metrics text (0 when absent).
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// The role names `ROUTE_ROLES` gives `method` `template`.
fn roles_of(method: &str, template: &str) -> Vec<&'static str> {
    ROUTE_ROLES
        .iter()
        .find(|(m, t, _)| *m == method && *t == template)
        .map(|(_, _, r)| r.iter().map(|r| r.name()).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// 1. The route × role table, on the real binary

/// `ROUTE_ROLES` is what the design says, read independently of it: every GET for every role
/// but a job's output (its device output); guard changes and `send_config` for operator and
/// admin; the rest (opens, execs, closes, job output and cancel, probes, `send_command`) for
/// reader, operator and admin. Every route but the public ones is listed, once.
#[test]
fn route_roles_is_the_documented_table() {
    use netdev_broker::api::ROUTES;
    let all = vec!["viewer", "reader", "operator", "admin"];
    let change = vec!["operator", "admin"];
    let using = vec!["reader", "operator", "admin"];
    let mut seen = std::collections::BTreeSet::new();
    for (m, t, roles) in ROUTE_ROLES {
        let got: Vec<&str> = roles.iter().map(|r| r.name()).collect();
        let want = if *m == "GET" && !t.ends_with("/output") {
            &all
        } else if t.contains("/guard") || t.ends_with("send_config") {
            &change
        } else {
            &using
        };
        assert_eq!(&got, want, "{m} {t}");
        assert!(seen.insert((*m, *t)), "{m} {t} listed twice");
    }
    let public = ["/health", "/openapi.json", "/docs", "/docs/{asset}"];
    for t in ROUTES {
        let listed = ROUTE_ROLES.iter().any(|(_, r, _)| r == t);
        assert_eq!(listed, !public.contains(t), "{t}");
    }
}

/// One request of the route table: a route template filled in, and its body.
struct Call {
    m: &'static str,
    t: &'static str,
    path: String,
    body: Option<Value>,
}

/// Every route of `ROUTE_ROLES` (each guard action too), with every role's token and the seed's
/// `api_token` ("default", admin) and without a token: allowed answers neither 401 nor 403 (nor
/// 5xx), refused ones 403 naming the token, its role and the route; without a token 401. The
/// public routes answer without one. The devices ran exactly the allowed execs. Prints the
/// table.
#[test]
fn every_route_answers_every_role_as_route_roles_says() {
    let ssh = ssh_device();
    let tel = telnet_device();
    let yaml = tokens_yaml(&[
        ("viewer", "viewer", ""),
        ("reader", "reader", ""),
        ("operator", "operator", ""),
        ("admin", "admin", ""),
    ]);
    // The seed's api_token comes from the environment: the admin "default".
    let p = Proc::serve("tok-table").yaml(&yaml).start();
    let who: Vec<(&str, &str)> = vec![
        ("viewer", "viewer"),
        ("reader", "reader"),
        ("operator", "operator"),
        ("admin", "admin"),
        ("default", "admin"),
    ];
    // Each principal that may open owns an SSH and a Telnet session with one job each; the
    // viewer works on the operator's.
    #[derive(Clone)]
    struct Own {
        ssh: String,
        tel: String,
        ssh_job: String,
        tel_job: String,
    }
    let mut own: std::collections::BTreeMap<&str, Own> = Default::default();
    for (name, role) in &who {
        if *role == "viewer" {
            continue;
        }
        let c = as_(p.addr, name);
        let s = c.open_on("/session", ssh.port());
        let t = c.open_on("/telnet-session", tel.port());
        let job = |prefix: &str, id: &str| {
            let r = c.post(
                &format!("{prefix}/{id}/exec"),
                &json!({"commands": ["show version"]}),
            );
            assert_eq!(r.status, 200, "{}", text(&r));
            r.json()["job_id"].as_str().unwrap().to_string()
        };
        own.insert(
            name,
            Own {
                ssh_job: job("/session", &s),
                tel_job: job("/telnet-session", &t),
                ssh: s,
                tel: t,
            },
        );
    }
    let viewer_owns = own["operator"].clone();
    own.insert("viewer", viewer_owns);
    let shows_before = typed(&ssh.journal(), "show clock") + typed(&tel.journal(), "show clock");
    let netmiko = |cmd: Value, key: &str| {
        json!({"host": "127.0.0.1", key: cmd, "connection_options": {"device_type": "cisco_ios",
            "port": ssh.port(), "username": "admin", "password": PASSWORD, "secret": ENABLE, "timeout": 10}})
    };
    // Each template once per placeholder value, in the table's order, the session closes last.
    let instances = |name: &str| -> Vec<Call> {
        let o = &own[name];
        let mut v = Vec::new();
        let mut closes = Vec::new();
        for &(m, t, _) in ROUTE_ROLES {
            let telnet = t.starts_with("/telnet-");
            let (id, job) = if telnet {
                (&o.tel, &o.tel_job)
            } else {
                (&o.ssh, &o.ssh_job)
            };
            let port = if telnet { tel.port() } else { ssh.port() };
            let path = t.replace("{id}", id).replace("{job_id}", job);
            let body = match (m, t.rsplit('/').next().unwrap()) {
                ("POST", "session" | "telnet-session") => Some(login(port)),
                ("POST", "exec") => Some(json!({"commands": ["show clock"]})),
                ("POST", "cancel") => Some(json!({})),
                ("POST", "guard") => Some(arm_body()),
                ("POST", "probe" | "telnet-probe") => Some(login(port)),
                ("POST", "send_command") => Some(netmiko(json!(["show clock"]), "commands")),
                ("POST", "send_config") => Some(netmiko(
                    json!(["interface Loopback7", "description via-table"]),
                    "config",
                )),
                _ => None,
            };
            if t.ends_with("{action}") {
                for action in ["extend", "confirm", "rollback", "probe"] {
                    let body = (action == "extend").then(|| json!({"timeout": 60}));
                    v.push(Call {
                        m,
                        t,
                        path: path.replace("{action}", action),
                        body,
                    });
                }
            } else if m == "DELETE" && t.ends_with("{id}") {
                closes.push(Call { m, t, path, body });
            } else {
                v.push(Call { m, t, path, body });
            }
        }
        v.extend(closes);
        v
    };
    let mut table: Vec<(String, Vec<String>)> = Vec::new();
    let mut failures = Vec::new();
    let mut allowed_execs = 0;
    let mut allowed_configs = 0;
    // Rows in the table's order; the instances of all principals have the same shape.
    let rows: Vec<Vec<Call>> = who.iter().map(|(n, _)| instances(n)).collect();
    for (i, first) in rows[0].iter().enumerate() {
        let (m, t) = (first.m, first.t);
        let allowed = roles_of(m, t);
        let shown = if t.ends_with("{action}") {
            t.replace("{action}", first.path.rsplit('/').next().unwrap())
        } else {
            t.to_string()
        };
        let mut cells = Vec::new();
        // Without a token: 401, whatever the route.
        let r = send(p.addr, m, &first.path, None, first.body.as_ref(), &[]);
        if r.status != 401 {
            failures.push(format!(
                "{m} {shown} without a token: {} {}",
                r.status,
                text(&r)
            ));
        }
        cells.push(r.status.to_string());
        for (k, (name, role)) in who.iter().enumerate() {
            let Call { path, body, .. } = &rows[k][i];
            let r = as_(p.addr, name).req(m, path, body.as_ref());
            let ok = allowed.contains(role);
            if ok {
                if matches!(r.status, 401 | 403) || r.status >= 500 {
                    failures.push(format!(
                        "{m} {shown} as {name} ({role}) is allowed but answered {} {}",
                        r.status,
                        text(&r)
                    ));
                }
                if t.ends_with("/exec") || t.ends_with("send_command") {
                    allowed_execs += 1;
                }
                if t.ends_with("send_config") {
                    allowed_configs += 1;
                }
                // A viewer's job status never carries the device's output.
                if *role == "viewer" && t.ends_with("{job_id}") && m == "GET" {
                    let v = r.json();
                    for k in ["results", "outputs", "output_so_far"] {
                        if v.get(k).is_some() {
                            failures.push(format!("{m} {shown} as viewer shows {k}: {v}"));
                        }
                    }
                }
            } else {
                let d = if r.status == 403 {
                    detail(&r)
                } else {
                    String::new()
                };
                let named = d.contains(&format!("API token \"{name}\""))
                    && d.contains(&format!("role {role}"))
                    && d.contains(&format!("{m} {t}"));
                if r.status != 403 || !named {
                    failures.push(format!(
                        "{m} {shown} as {name} ({role}) is refused but answered {} {}",
                        r.status,
                        text(&r)
                    ));
                }
                // A refused close closed nothing.
                if m == "DELETE" && t.ends_with("{id}") {
                    let st = as_(p.addr, "admin").get(&format!("{path}/status"));
                    if st.status != 200 || st.json()["alive"] != true {
                        failures.push(format!("{m} {path} as {name}: the session is gone"));
                    }
                }
            }
            cells.push(format!("{}{}", r.status, if ok { "" } else { "*" }));
        }
        table.push((format!("{m} {shown}"), cells));
    }
    // The public routes, without a token.
    for path in ["/health", "/openapi.json", "/docs", "/docs/docs.js"] {
        let r = send(p.addr, "GET", path, None, None, &[]);
        if r.status != 200 {
            failures.push(format!("GET {path} without a token: {}", r.status));
        }
        let mut cells = vec![r.status.to_string()];
        for (name, _) in &who {
            let r = as_(p.addr, name).get(path);
            if r.status != 200 {
                failures.push(format!("GET {path} as {name}: {}", r.status));
            }
            cells.push(r.status.to_string());
        }
        table.push((format!("GET {path}"), cells));
    }
    // Print the table (for the closing note): `*` marks a refusal the table expects.
    let width = table.iter().map(|(r, _)| r.len()).max().unwrap_or(0);
    let mut out = format!("{:width$}  {:>5}", "route", "none");
    for (name, role) in &who {
        let col = if name == role {
            name.to_string()
        } else {
            format!("{name}({role})")
        };
        out.push_str(&format!("  {col:>14}"));
    }
    out.push('\n');
    for (route, cells) in &table {
        out.push_str(&format!("{route:width$}  {:>5}", cells[0]));
        for c in &cells[1..] {
            out.push_str(&format!("  {c:>14}"));
        }
        out.push('\n');
    }
    println!("{out}");
    assert!(failures.is_empty(), "{}\n{out}", failures.join("\n"));
    // The devices ran the allowed execs, and nothing of the refused ones.
    let shows = typed(&ssh.journal(), "show clock") + typed(&tel.journal(), "show clock");
    assert_eq!(shows - shows_before, allowed_execs, "{out}");
    assert_eq!(
        typed(&ssh.journal(), "description via-table"),
        allowed_configs
    );
    // A reader's one-shot execs are held to the read-only commands too: the probe logs in,
    // and types nothing of the refused command.
    let rd = as_(p.addr, "reader");
    let (ssh_before, tel_before) = (ssh.journal().len(), tel.journal().len());
    for (path, body) in [
        ("/probe", json!({"command": "reload"})),
        ("/telnet-probe", json!({"command": "configure terminal"})),
        (
            "/api/v2.0/netmiko/send_command",
            json!(["show version", "reload"]),
        ),
    ] {
        let body = match path {
            "/api/v2.0/netmiko/send_command" => netmiko(body, "commands"),
            "/probe" => {
                let mut b = login(ssh.port());
                b["command"] = body["command"].clone();
                b
            }
            _ => {
                let mut b = login(tel.port());
                b["command"] = body["command"].clone();
                b
            }
        };
        let r = rd.post(path, &body);
        assert_eq!(r.status, 403, "{path}: {}", text(&r));
        assert!(
            detail(&r).contains("matches no read_only_commands rule"),
            "{path}: {}",
            detail(&r)
        );
    }
    // Only the logins' own lines (enable, terminal settings, exit) were typed.
    for (j, before) in [(ssh.journal(), ssh_before), (tel.journal(), tel_before)] {
        let new = &j[before..];
        assert!(
            !new.iter()
                .any(|l| ["reload", "configure terminal", "show version"].contains(&l.trim())),
            "{new:?}"
        );
    }
    assert!(p.panics().is_empty(), "{:?}", p.panics());
}

// ---------------------------------------------------------------------------------------------
// 2. Ownership

/// An answer's JSON without its `request_id` (two answers compared).
fn sans_id(r: &Resp) -> Value {
    let mut v = r.json();
    if let Some(o) = v.as_object_mut() {
        o.remove("request_id");
    }
    v
}

/// A guard body that types nothing when armed.
fn arm_body() -> Value {
    json!({"timeout": 600, "rollback": {"config": ["no interface Loopback9"]}})
}

/// A session belongs to the token that opened it: another operator gets exactly the 404 of a
/// session that does not exist on every per-session route, its DELETE answers 204 and closes
/// nothing (the device never sees a logout); lists and guards are filtered by owner for
/// operator and reader, whole for admin and viewer; /health counts all; an admin runs commands
/// on and closes anyone's session.
#[test]
fn a_session_belongs_to_the_token_that_opened_it() {
    let dev = ssh_device();
    let b = broker(&tokens_yaml(&[
        ("opa", "operator", ""),
        ("opb", "operator", ""),
        ("rd", "reader", ""),
        ("adm", "admin", ""),
        ("view", "viewer", ""),
    ]));
    let (a, bb, rd, adm, view) = (
        as_(b.addr, "opa"),
        as_(b.addr, "opb"),
        as_(b.addr, "rd"),
        as_(b.addr, "adm"),
        as_(b.addr, "view"),
    );
    let sa = a.open(dev.port());
    let r = a.cmds(&sa, json!(["show version"]));
    assert_eq!(r.status, 200, "{}", text(&r));
    let ja = r.json()["job_id"].as_str().unwrap().to_string();
    let r = a.post(&format!("/session/{sa}/guard"), &arm_body());
    assert_eq!(r.status, 201, "{}", text(&r));
    let sb = bb.open(dev.port());
    let journal = dev.journal();
    let conns = dev.active_connections();
    assert_eq!(conns, 2);

    // Another owner's session does not exist for B (nor for a reader): the very answer of an
    // id nobody has, on every per-session route and under both prefixes.
    let ghost = "0".repeat(32);
    let routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/status".into(), None),
        (
            "POST",
            "/exec".into(),
            Some(json!({"commands": ["show clock"]})),
        ),
        ("GET", "/jobs".into(), None),
        ("GET", format!("/jobs/{ja}"), None),
        ("GET", format!("/jobs/{ja}/output"), None),
        ("DELETE", format!("/jobs/{ja}"), None),
        ("POST", format!("/jobs/{ja}/cancel"), Some(json!({}))),
        ("GET", "/guard".into(), None),
        ("POST", "/guard".into(), Some(arm_body())),
        ("DELETE", "/guard".into(), None),
        ("POST", "/guard/extend".into(), Some(json!({"timeout": 60}))),
        ("POST", "/guard/confirm".into(), Some(json!({}))),
        ("POST", "/guard/rollback".into(), Some(json!({}))),
        ("POST", "/guard/probe".into(), Some(json!({}))),
    ];
    for prefix in ["/session", "/telnet-session"] {
        for (m, tail, body) in &routes {
            for (who, c) in [("opb", &bb), ("rd", &rd)] {
                if who == "rd" && (tail.contains("guard") && *m != "GET") {
                    continue; // the reader's role refuses these first (403, the table's)
                }
                let r = c.req(m, &format!("{prefix}/{sa}{tail}"), body.as_ref());
                let g = c.req(m, &format!("{prefix}/{ghost}{tail}"), body.as_ref());
                assert_eq!(r.status, 404, "{who} {m} {prefix}/A{tail}: {}", text(&r));
                assert_eq!(sans_id(&r), sans_id(&g), "{who} {m} {prefix}/A{tail}");
            }
        }
    }
    // B's DELETE of A's session answers as for a closed one, and closes nothing.
    for prefix in ["/session", "/telnet-session"] {
        let r = bb.delete(&format!("{prefix}/{sa}"));
        assert_eq!(r.status, 204, "{}", text(&r));
    }
    let st = a.get(&format!("/session/{sa}/status"));
    assert_eq!(st.status, 200);
    let st = st.json();
    assert_eq!(st["alive"], true, "{st}");
    assert_eq!(st["owner"], "opa", "{st}");
    assert_eq!(
        a.get(&format!("/session/{sa}/guard")).json()["state"],
        "armed"
    );
    assert_eq!(dev.journal(), journal, "B's requests typed something");
    assert_eq!(dev.active_connections(), conns);

    // Lists: own for operators and readers, all for admin and viewer; /health counts all.
    let mut both = vec![sa.clone(), sb.clone()];
    both.sort();
    assert_eq!(a.sessions(), vec![sa.clone()]);
    assert_eq!(bb.sessions(), vec![sb.clone()]);
    assert_eq!(rd.sessions(), Vec::<String>::new());
    assert_eq!(adm.sessions(), both);
    assert_eq!(view.sessions(), both);
    let h = send(b.addr, "GET", "/health", None, None, &[]);
    assert_eq!(h.json()["sessions"], 2);
    assert_eq!(
        view.get(&format!("/session/{sb}/status")).json()["owner"],
        "opb"
    );
    // Guards: A's own for A, none for B and the reader, all for admin and viewer.
    let guards = |c: &As| {
        let v = c.get("/guards").json();
        v["guards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["session_id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(guards(&a), vec![sa.clone()]);
    assert!(guards(&bb).is_empty() && guards(&rd).is_empty());
    assert_eq!(guards(&adm), vec![sa.clone()]);
    assert_eq!(guards(&view), vec![sa.clone()]);
    assert_eq!(
        view.get(&format!("/session/{sa}/guard")).json()["state"],
        "armed"
    );

    // The admin runs a command on A's session (typed once), then must end the guard before
    // closing it like anyone; then the device sees the logout.
    let r = adm.cmds(&sa, json!(["show clock"]));
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(typed(&dev.journal(), "show clock"), 1);
    assert_eq!(adm.delete(&format!("/session/{sa}")).status, 409);
    assert_eq!(adm.delete(&format!("/session/{sa}/guard")).status, 200);
    assert_eq!(adm.delete(&format!("/session/{sa}")).status, 204);
    assert_eq!(a.get(&format!("/session/{sa}/status")).status, 404);
    assert!(wait_until(Duration::from_secs(5), || dev
        .active_connections()
        == 1));
    assert_eq!(typed(&dev.journal(), "exit"), typed(&journal, "exit") + 1);
    // B's own session is B's to close.
    assert_eq!(bb.delete(&format!("/session/{sb}")).status, 204);
    assert!(wait_until(Duration::from_secs(5), || dev
        .active_connections()
        == 0));
}

/// What a previous run left armed (`on_broker_exit: keep`) belongs to no session now: GET
/// /guards shows it under `previous_run` to admin and viewer only, not to the operator that
/// armed it (real binary, restarted on the same state_dir).
#[test]
fn previous_run_guards_are_shown_to_viewer_and_admin_only() {
    let dev = ssh_device();
    let dir = tmpdir("tok-prev");
    let cfg = dir.join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir: {}\n{}",
            dir.display(),
            tokens_yaml(&[("ops", "operator", ""), ("view", "viewer", "")])
        ),
    )
    .unwrap();
    let mut p = Proc::serve("tok-prev").config(&cfg).start();
    let ops = as_(p.addr, "ops");
    let s = ops.open(dev.port());
    let mut guard = arm_body();
    guard["on_broker_exit"] = json!("keep");
    let r = ops.post(&format!("/session/{s}/guard"), &guard);
    assert_eq!(r.status, 201, "{}", text(&r));
    p.term();
    assert_eq!(
        p.wait_exit(Duration::from_secs(20)).and_then(|s| s.code()),
        Some(0)
    );
    let p = Proc::serve("tok-prev").config(&cfg).start();
    let previous = |name: &str| {
        let v = as_(p.addr, name).get("/guards").json();
        assert_eq!(v["count"], 0, "{v}");
        v["previous_run"].as_array().unwrap().len()
    };
    assert_eq!(previous("ops"), 0);
    assert_eq!(previous("view"), 1);
    assert_eq!(previous("default"), 1);
    drop(p);
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------------------------------------
// 3. The reader

/// A `reader` opens sessions and runs read-only commands only: config lines, save and typed
/// answers are refused by its role, guard changes and send_config too, and commands outside
/// its platform's `read_only_commands` by the command policy; none of them types anything on
/// the device (not even the allowed command before a refused one). `show version` and a show
/// with an include filter run. Over SSH and Telnet.
#[test]
fn a_reader_runs_read_only_commands_and_types_nothing_else() {
    let ssh = ssh_device();
    let tel = telnet_device();
    let b = broker(&tokens_yaml(&[("rd", "reader", "")]));
    let rd = as_(b.addr, "rd");
    let s = rd.open(ssh.port());
    let t = rd.open_on("/telnet-session", tel.port());
    let (ssh_before, tel_before) = (ssh.journal(), tel.journal());
    let role = "API token \"rd\" has role reader";
    for (body, what) in [
        (json!({"config": ["interface Loopback9"]}), "config lines"),
        (json!({"commands": ["show version"], "save": true}), "save"),
        (
            json!({"commands": [{"cmd": "show version", "answer": "\\[confirm\\]", "send_newlines": 1}]}),
            "interactions that type answers",
        ),
        (
            json!({"commands": [{"cmd": "show clock", "interactions": [{"expect": "Password:", "send": "x"}]}]}),
            "interactions that type answers",
        ),
    ] {
        for prefix in ["/session", "/telnet-session"] {
            let id = if prefix == "/session" { &s } else { &t };
            let r = rd.post(&format!("{prefix}/{id}/exec"), &body);
            assert_eq!(r.status, 403, "{body}: {}", text(&r));
            let d = detail(&r);
            assert!(
                d.contains(role) && d.contains(what) && d.contains("nothing was sent"),
                "{d}"
            );
        }
    }
    let r = rd.post(&format!("/session/{s}/guard"), &arm_body());
    assert_eq!(r.status, 403, "{}", text(&r));
    assert!(detail(&r).contains(role), "{}", detail(&r));
    let r = rd.post(
        "/api/v2.0/netmiko/send_config",
        &json!({"host": "127.0.0.1", "config": ["interface Loopback9"],
            "connection_options": {"port": ssh.port(), "username": "admin", "password": PASSWORD}}),
    );
    assert_eq!(r.status, 403, "{}", text(&r));
    // Commands that change, reload or write files: the read-only list refuses them.
    for cmds in [
        json!(["configure terminal"]),
        json!(["reload"]),
        json!(["show run | redirect flash:x"]),
        json!(["show running-config > flash:x"]),
        json!(["copy running-config startup-config"]),
        json!(["show version", "reload"]),
    ] {
        for (prefix, id) in [("/session", &s), ("/telnet-session", &t)] {
            let r = rd.post(&format!("{prefix}/{id}/exec"), &json!({"commands": cmds}));
            assert_eq!(r.status, 403, "{cmds}: {}", text(&r));
            let d = detail(&r);
            assert!(
                d.contains("matches no read_only_commands rule")
                    && d.contains("nothing of this exec was sent"),
                "{cmds}: {d}"
            );
        }
    }
    assert_eq!(ssh.journal(), ssh_before, "a refused exec typed something");
    assert_eq!(tel.journal(), tel_before, "a refused exec typed something");
    // What is read-only runs, and is typed.
    for (prefix, id) in [("/session", &s), ("/telnet-session", &t)] {
        let r = rd.post(
            &format!("{prefix}/{id}/exec"),
            &json!({"commands": ["show version", "sh ip int br | i up"]}),
        );
        assert_eq!(r.status, 200, "{}", text(&r));
        assert!(r.json()["outputs"]["show version"]
            .as_str()
            .unwrap()
            .contains("Cisco IOS"));
    }
    for j in [ssh.journal(), tel.journal()] {
        assert_eq!(typed(&j, "show version"), 1, "{j:?}");
        assert_eq!(typed(&j, "sh ip int br | i up"), 1, "{j:?}");
    }
    // Its own session is its own to close (the device sees the logout).
    assert_eq!(rd.delete(&format!("/session/{s}")).status, 204);
    assert!(wait_until(Duration::from_secs(5), || typed(
        &ssh.journal(),
        "exit"
    ) == 1));
}

/// `read_only_commands` in the config replaces every platform's own list for readers (and
/// only for them): `show clock` runs, `show version` (which the IOS list allows) is refused.
#[test]
fn read_only_commands_in_the_config_replace_the_platform_list() {
    let dev = ssh_device();
    let b = broker(&format!(
        "read_only_commands: ['^show clock$']\n{}",
        tokens_yaml(&[("rd", "reader", ""), ("ops", "operator", "")])
    ));
    let rd = as_(b.addr, "rd");
    let s = rd.open(dev.port());
    let before = dev.journal();
    let r = rd.cmds(&s, json!(["show version"]));
    assert_eq!(r.status, 403, "{}", text(&r));
    assert!(
        detail(&r).contains("matches no read_only_commands rule"),
        "{}",
        detail(&r)
    );
    assert_eq!(dev.journal(), before);
    assert_eq!(rd.cmds(&s, json!(["show clock"])).status, 200);
    assert_eq!(typed(&dev.journal(), "show clock"), 1);
    // An operator is not held to it.
    let ops = as_(b.addr, "ops");
    let o = ops.open(dev.port());
    assert_eq!(ops.cmds(&o, json!(["show version"])).status, 200);
    assert_eq!(typed(&dev.journal(), "show version"), 1);
}

// ---------------------------------------------------------------------------------------------
// 4. Per-token narrowing

/// A token's `allowed_hosts` narrows the config's (both must allow): a device outside the
/// token's list is refused 403 before anything connects to it (SSH, Telnet), one inside opens;
/// a token list wider than the config's widens nothing. The token's command rules narrow the
/// config's (refusals name the token), the config's deny rules still bind the token, and
/// nothing of a refused exec is typed; other tokens are not narrowed.
#[test]
fn a_token_narrows_allowed_hosts_and_command_rules() {
    let inside = ssh_device_at("127.0.0.2");
    let outside = ssh_device_at("127.0.0.1");
    let beyond = ssh_device_at("127.0.0.3");
    let tel = telnet_device(); // 127.0.0.1
    let b = broker(&format!(
        "allowed_hosts: ['127.0.0.1', '127.0.0.2']\ndenied_commands: ['^reload']\n{}",
        tokens_yaml(&[
            ("nar", "operator", "allowed_hosts: ['127.0.0.2/32']"),
            ("wide", "operator", "allowed_hosts: ['127.0.0.0/8']"),
            (
                "cmd",
                "operator",
                "denied_commands: ['^show privilege'], allowed_commands: ['^show ', '^reload']",
            ),
        ])
    ));
    let (nar, wide, cmd, adm) = (
        as_(b.addr, "nar"),
        as_(b.addr, "wide"),
        as_(b.addr, "cmd"),
        as_(b.addr, "default"),
    );
    // Outside the token's list: 403, and the device never saw a connection.
    let r = nar.post("/session", &login_at("127.0.0.1", outside.port()));
    assert_eq!(r.status, 403, "{}", text(&r));
    assert!(
        detail(&r).contains("127.0.0.1") && detail(&r).contains("is not in allowed_hosts"),
        "{}",
        detail(&r)
    );
    let r = nar.post("/telnet-session", &login_at("127.0.0.1", tel.port()));
    assert_eq!(r.status, 403, "{}", text(&r));
    assert!(detail(&r).contains("is not in allowed_hosts"));
    assert_eq!(outside.total_connections(), 0);
    assert_eq!(tel.total_connections(), 0);
    // Inside it: opens.
    let r = nar.post("/session", &login_at("127.0.0.2", inside.port()));
    assert_eq!(r.status, 201, "{}", text(&r));
    assert_eq!(inside.total_connections(), 1);
    // A token list wider than the config's: the config still refuses what it does not allow.
    let r = wide.post("/session", &login_at("127.0.0.3", beyond.port()));
    assert_eq!(r.status, 403, "{}", text(&r));
    assert!(detail(&r).contains("is not in allowed_hosts"));
    assert_eq!(beyond.total_connections(), 0);
    assert_eq!(
        wide.post("/session", &login_at("127.0.0.1", outside.port()))
            .status,
        201
    );
    // Admin without a list of its own: what the config allows.
    assert_eq!(
        adm.post("/session", &login_at("127.0.0.1", outside.port()))
            .status,
        201
    );

    // Command rules: the token's deny and allow lists narrow the config's.
    let s = cmd.open(outside.port());
    let before = outside.journal();
    for (cmds, rule, of_token) in [
        (json!(["show privilege"]), "^show privilege", true),
        (
            json!(["show version", "show privilege"]),
            "^show privilege",
            true,
        ),
        (
            json!(["clear counters"]),
            "matches no allowed_commands rule",
            true,
        ),
        // The token allows it; the config's deny rule still applies.
        (json!(["reload"]), "^reload", false),
    ] {
        let r = cmd.cmds(&s, cmds.clone());
        assert_eq!(r.status, 403, "{cmds}: {}", text(&r));
        let d = detail(&r);
        assert!(d.contains(rule), "{cmds}: {d}");
        assert_eq!(d.contains("of token 'cmd'"), of_token, "{cmds}: {d}");
        assert!(d.contains("nothing of this exec was sent"), "{d}");
    }
    assert_eq!(outside.journal(), before, "a refused exec typed something");
    let r = cmd.cmds(&s, json!(["show version"]));
    assert_eq!(r.status, 200, "{}", text(&r));
    // A guard's rollback is held to the arming token's rules too: refused when armed.
    let r = cmd.post(
        &format!("/session/{s}/guard"),
        &json!({"timeout": 600, "rollback": ["show privilege"]}),
    );
    assert_eq!(r.status, 403, "{}", text(&r));
    assert!(detail(&r).contains("of token 'cmd'"), "{}", detail(&r));
    assert_eq!(cmd.get(&format!("/session/{s}/guard")).status, 404);
    // Another token is not narrowed by them.
    let a = adm.open(outside.port());
    let r = adm.cmds(&a, json!(["show privilege"]));
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(typed(&outside.journal(), "show privilege"), 1);
    assert_eq!(typed(&outside.journal(), "reload"), 0);
    assert_eq!(typed(&outside.journal(), "clear counters"), 0);
}

// ---------------------------------------------------------------------------------------------
// 5. max_sessions per token

/// A token's `max_sessions`: an open beyond it is 429 naming the token and its cap (no
/// Retry-After) and connects to nothing; concurrent opens never exceed it; once one of its
/// sessions is closed (by itself or an admin) it opens again; other tokens are not counted.
#[test]
fn a_token_holds_at_most_its_max_sessions() {
    let dev = ssh_device();
    let b = broker(&tokens_yaml(&[
        ("cap", "operator", "max_sessions: 2"),
        ("other", "operator", ""),
    ]));
    let (cap, other, adm) = (
        as_(b.addr, "cap"),
        as_(b.addr, "other"),
        as_(b.addr, "default"),
    );
    let s1 = cap.open(dev.port());
    let s2 = cap.open(dev.port());
    let conns = dev.total_connections();
    let r = cap.post("/session", &login(dev.port()));
    assert_eq!(r.status, 429, "{}", text(&r));
    assert_eq!(
        detail(&r),
        "API token \"cap\" holds its max_sessions (2) already; close one of its sessions first"
    );
    assert!(r.header("Retry-After").is_none());
    assert_eq!(dev.total_connections(), conns, "a refused open connected");
    // Other tokens are not counted against it, nor it against them.
    for _ in 0..3 {
        other.open(dev.port());
    }
    assert_eq!(cap.post("/session", &login(dev.port())).status, 429);
    // Closing one frees a slot: then several opens at once get exactly one of it.
    assert_eq!(cap.delete(&format!("/session/{s1}")).status, 204);
    let addr = b.addr;
    let port = dev.port();
    let racing: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                send(
                    addr,
                    "POST",
                    "/session",
                    Some(&secret("cap")),
                    Some(&login(port)),
                    &[],
                )
                .status
            })
        })
        .collect();
    let mut got: Vec<u16> = racing.into_iter().map(|h| h.join().unwrap()).collect();
    got.sort();
    assert_eq!(got, vec![201, 429, 429, 429]);
    assert_eq!(cap.sessions().len(), 2);
    // An admin closing one of its sessions frees a slot too.
    assert_eq!(adm.delete(&format!("/session/{s2}")).status, 204);
    cap.open(dev.port());
    assert_eq!(cap.sessions().len(), 2);
    assert_eq!(other.sessions().len(), 3);
}

// ---------------------------------------------------------------------------------------------
// 6. Expiry

/// A token past its `expires` (a date, or an RFC 3339 time with its offset) is refused 401
/// saying so, with a WARN line in the broker's log and `auth_failures_total{reason="expired"}`;
/// one that expires later works; an unknown token and a missing one are counted apart.
#[test]
fn an_expired_token_is_refused_saying_so() {
    let p = Proc::serve("tok-expired")
        .yaml(&tokens_yaml(&[
            ("old", "operator", "expires: 2020-01-01"),
            ("old2", "viewer", "expires: '2021-06-30T18:00:00+02:00'"),
            ("fresh", "viewer", "expires: 2999-12-31"),
        ]))
        .start();
    let r = as_(p.addr, "old").get("/sessions");
    assert_eq!(r.status, 401, "{}", text(&r));
    assert_eq!(
        detail(&r),
        "API token \"old\" expired at 2020-01-01; ask for a new one"
    );
    let r = as_(p.addr, "old2").post("/session", &login(9));
    assert_eq!(r.status, 401, "{}", text(&r));
    assert_eq!(
        detail(&r),
        "API token \"old2\" expired at 2021-06-30T18:00:00+02:00; ask for a new one"
    );
    assert_eq!(as_(p.addr, "fresh").get("/sessions").status, 200);
    let r = send(
        p.addr,
        "GET",
        "/sessions",
        Some("CANARY-tok-nobody"),
        None,
        &[],
    );
    assert_eq!(r.status, 401);
    assert_eq!(detail(&r), "Invalid or missing API token");
    assert_eq!(
        send(p.addr, "GET", "/sessions", None, None, &[]).status,
        401
    );
    // The count by token is taken once the answer is out: wait for it.
    let by_fresh = "netdev_broker_api_requests_by_token_total{token=\"fresh\"}";
    let mut m = String::new();
    wait_until(Duration::from_secs(5), || {
        m = text(&as_(p.addr, "default").get("/metrics"));
        metric(&m, by_fresh) == 1
    });
    let f = |reason: &str| {
        metric(
            &m,
            &format!("netdev_broker_api_auth_failures_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(
        (f("expired"), f("unknown"), f("missing"), f("limited")),
        (2, 1, 1, 0),
        "{m}"
    );
    assert_eq!(metric(&m, by_fresh), 1, "{m}");
    let log = p.log_text();
    for name in ["old", "old2"] {
        assert!(
            log.lines().any(|l| l.contains(" WARN ")
                && l.contains(&format!("refused: API token \"{name}\" expired at"))),
            "no WARN line for {name}:\n{log}"
        );
    }
    assert!(
        log.lines()
            .any(|l| l.contains(" INFO ") && l.contains("refused: unknown API token")),
        "{log}"
    );
    for t in ["old", "old2", "fresh"] {
        assert!(!log.contains(&secret(t)), "{t}'s token in the log");
    }
    assert!(!log.contains("CANARY-tok-nobody") && !log.contains(TOKEN));
}

// ---------------------------------------------------------------------------------------------
// 8. The wrong-token limiter

/// After `auth_failures_per_minute` wrong tokens from one address, every request from it that
/// needs a token is answered 429 with Retry-After (1..60 s, the same in the detail) until the
/// window ends, even with a right token; public routes still answer; `reason="limited"` is
/// counted. With 0 nothing is ever limited.
/// `n` requests with wrong tokens, each answered 401.
fn send_wrong_tokens(addr: std::net::SocketAddr, n: usize) {
    for i in 0..n {
        let r = send(
            addr,
            "GET",
            "/sessions",
            Some(&format!("wrong-{i}")),
            None,
            &[],
        );
        assert_eq!(r.status, 401, "attempt {i}");
    }
}

#[test]
fn wrong_tokens_from_one_address_are_limited() {
    let b = broker(&format!(
        "auth_failures_per_minute: 3\nmetrics_public: true\n{}",
        tokens_yaml(&[("ops", "operator", "")])
    ));
    let ops = as_(b.addr, "ops");
    assert_eq!(ops.get("/sessions").status, 200);
    send_wrong_tokens(b.addr, 3);
    for (token, path) in [
        (Some(secret("ops")), "/sessions"),
        (Some(TOKEN.to_string()), "/device-types"),
        (Some("wrong-4".to_string()), "/sessions"),
        (None, "/guards"),
    ] {
        let r = send(b.addr, "GET", path, token.as_deref(), None, &[]);
        assert_eq!(r.status, 429, "{token:?} {path}: {}", text(&r));
        let wait: u64 = r.header("Retry-After").unwrap().parse().unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
        assert_eq!(
            detail(&r),
            format!(
                "Too many requests with a wrong API token from 127.0.0.1; try again in {wait} s"
            )
        );
    }
    // Not a token route: answered.
    assert_eq!(send(b.addr, "GET", "/health", None, None, &[]).status, 200);
    let m = text(&send(b.addr, "GET", "/metrics", None, None, &[]));
    assert_eq!(
        metric(
            &m,
            "netdev_broker_api_auth_failures_total{reason=\"limited\"}"
        ),
        4,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "netdev_broker_api_auth_failures_total{reason=\"unknown\"}"
        ),
        3,
        "{m}"
    );

    // 0: off.
    let b = broker(&format!(
        "auth_failures_per_minute: 0\n{}",
        tokens_yaml(&[("ops", "operator", "")])
    ));
    send_wrong_tokens(b.addr, 25);
    assert_eq!(as_(b.addr, "ops").get("/sessions").status, 200);
}

// ---------------------------------------------------------------------------------------------
// 7. SIGHUP

/// SIGHUP applies `api_tokens` to the running binary: an added token works, a changed role
/// applies to the token's next request while its sessions stay its own, a removed token is 401
/// while its sessions stay open (owned by the old name: admin and viewer see them) and a token
/// added again under that name owns them again. The device saw no logout and no new login.
#[test]
fn sighup_adds_changes_and_removes_tokens_and_keeps_their_sessions() {
    let dev = ssh_device();
    // The polls below send tokens the broker does not know yet (or any more): not limited.
    let base = "auth_failures_per_minute: 0\n";
    let p = Proc::serve("tok-hup")
        .yaml(&format!(
            "{base}{}",
            tokens_yaml(&[("ops", "operator", ""), ("rd", "reader", "")])
        ))
        .start();
    let cfg = p.dir.join("config.yml");
    let reload = |tokens: &[(&str, &str, &str)], until: &dyn Fn() -> bool| {
        std::fs::write(
            &cfg,
            format!(
                "log_level: INFO\nstate_dir: {}\n{base}{}",
                p.dir.display(),
                tokens_yaml(tokens)
            ),
        )
        .unwrap();
        p.hup();
        assert!(
            wait_until(Duration::from_secs(10), until),
            "reload not applied: {}",
            p.log_text()
        );
    };
    let (ops, rd, new, adm) = (
        as_(p.addr, "ops"),
        as_(p.addr, "rd"),
        as_(p.addr, "new"),
        as_(p.addr, "default"),
    );
    let s1 = ops.open(dev.port());
    let s2 = rd.open(dev.port());
    assert_eq!(new.get("/sessions").status, 401);
    let logins = dev.total_connections();
    let journal = dev.journal();

    // Add "new" (viewer), make "ops" a reader, remove "rd".
    reload(&[("ops", "reader", ""), ("new", "viewer", "")], &|| {
        new.get("/sessions").status == 200
    });
    let mut both = vec![s1.clone(), s2.clone()];
    both.sort();
    assert_eq!(new.sessions(), both);
    // ops: a reader now, on its own session still.
    assert_eq!(ops.sessions(), vec![s1.clone()]);
    let r = ops.cmds(&s1, json!(["configure terminal"]));
    assert_eq!(r.status, 403, "{}", text(&r));
    assert!(detail(&r).contains("read_only_commands"), "{}", detail(&r));
    let r = ops.post(&format!("/session/{s1}/guard"), &arm_body());
    assert_eq!(r.status, 403);
    assert!(detail(&r).contains("has role reader"), "{}", detail(&r));
    assert_eq!(ops.cmds(&s1, json!(["show clock"])).status, 200);
    // rd: gone; its session stays, owned by the old name.
    let r = rd.get("/sessions");
    assert_eq!(r.status, 401);
    assert_eq!(rd.cmds(&s2, json!(["show clock"])).status, 401);
    let st = adm.get(&format!("/session/{s2}/status")).json();
    assert_eq!(
        (st["alive"].clone(), st["owner"].clone()),
        (json!(true), json!("rd"))
    );
    assert_eq!(
        new.get(&format!("/session/{s2}/status")).json()["owner"],
        "rd"
    );
    assert_eq!(ops.get(&format!("/session/{s2}/status")).status, 404);

    // "rd" again (same name, new role): its session is its own again.
    reload(
        &[
            ("ops", "reader", ""),
            ("new", "viewer", ""),
            ("rd", "operator", ""),
        ],
        &|| rd.get("/sessions").status == 200,
    );
    assert_eq!(rd.sessions(), vec![s2.clone()]);
    assert_eq!(rd.cmds(&s2, json!(["show clock"])).status, 200);

    // Both sessions lived through it all on their first connection.
    assert_eq!(dev.total_connections(), logins, "a session logged in again");
    assert_eq!(dev.active_connections(), 2);
    let after = dev.journal();
    assert_eq!(&after[..journal.len()], &journal[..]);
    assert_eq!(
        &after[journal.len()..],
        &["show clock".to_string(), "show clock".to_string()],
        "only the two execs were typed"
    );
    let log = p.log_text();
    assert_eq!(
        log.matches("reload: configuration from").count(),
        2,
        "{log}"
    );
    assert!(p.panics().is_empty());
}

// ---------------------------------------------------------------------------------------------
// 9. Request ids

/// The command log's lines of one session (`cmd_log_dir/<id>.jsonl`).
fn cmd_log(dir: &std::path::Path, id: &str) -> Vec<Value> {
    std::fs::read_to_string(dir.join(format!("{id}.jsonl")))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn is_new_id(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A client's sane `X-Request-ID` is kept and echoed, an insane one replaced by a new id; every
/// error body starts with it; the broker's log lines of the request (the open's "opened", an
/// exec refused by the command policy) carry `req=<id>`, and the command log's lines the token
/// name (`by`) and the id. A change guard that fires by itself logs `by: guard` with no id, and
/// no request's id in the broker's log.
#[test]
fn request_ids_follow_a_request_into_logs_and_command_logs() {
    let dev = DeviceConfig {
        password: PASSWORD.into(),
        enable_password: Some(ENABLE.into()),
        // The guard below: a device minute of one second.
        minute: Duration::from_secs(1),
        ..Default::default()
    };
    let dev = FakeDevice::start(dev);
    let spawn = Proc::serve("tok-reqid");
    let cmdlog = spawn.dir().join("cmdlog");
    let p = spawn
        .yaml(&format!(
            "cmd_log_dir: {}\ndenied_commands: ['^reload']\n{}",
            cmdlog.display(),
            tokens_yaml(&[("ops", "operator", "")])
        ))
        .start();
    let ops = secret("ops");
    let with_id = |m: &str, path: &str, token: &str, body: Option<&Value>, id: &str| {
        send(p.addr, m, path, Some(token), body, &[("X-Request-ID", id)])
    };
    let r = with_id(
        "POST",
        "/session",
        &ops,
        Some(&login(dev.port())),
        "open-42",
    );
    assert_eq!(r.status, 201, "{}", text(&r));
    assert_eq!(r.header("X-Request-ID"), Some("open-42"));
    let sid = r.json()["session_id"].as_str().unwrap().to_string();

    // Insane ids are replaced; the longest sane one is kept.
    let long = "a".repeat(128);
    assert_eq!(
        with_id("GET", "/sessions", &ops, None, &long).header("X-Request-ID"),
        Some(long.as_str())
    );
    for bad in ["two words", &"a".repeat(129), "a\"b", "x/y", "ä"] {
        let r = with_id("GET", "/sessions", &ops, None, bad);
        assert_eq!(r.status, 200);
        let got = r.header("X-Request-ID").unwrap();
        assert!(is_new_id(got), "{bad:?} -> {got:?}");
    }
    // Every answer carries one, error bodies as their first key.
    let r = send(p.addr, "GET", "/health", None, None, &[]);
    assert!(is_new_id(r.header("X-Request-ID").unwrap()));
    for (m, path, token, body, id, status) in [
        ("GET", "/nope", None, None, "e-404", 404),
        (
            "GET",
            "/sessions",
            Some("CANARY-tok-wrong"),
            None,
            "e-401",
            401,
        ),
        (
            "POST",
            "/session",
            Some(ops.as_str()),
            Some(json!({"port": "x"})),
            "e-422",
            422,
        ),
        (
            "POST",
            &format!("/session/{sid}/exec"),
            Some(ops.as_str()),
            Some(json!({"commands": ["reload"]})),
            "exec-refused-1",
            403,
        ),
    ] {
        let r = send(
            p.addr,
            m,
            path,
            token,
            body.as_ref(),
            &[("X-Request-ID", id)],
        );
        assert_eq!(r.status, status, "{}", text(&r));
        assert_eq!(r.header("X-Request-ID"), Some(id));
        assert!(
            text(&r).starts_with(&format!("{{\"request_id\":\"{id}\",")),
            "{}",
            text(&r)
        );
    }
    // A probe's thread logs with the request's id too.
    let r = with_id("POST", "/probe", &ops, Some(&login(dev.port())), "probe-1");
    assert_eq!(r.status, 200, "{}", text(&r));
    // The command log: the token's name and the request's id on each line of its exec.
    let r = with_id(
        "POST",
        &format!("/session/{sid}/exec"),
        &ops,
        Some(&json!({"commands": ["show version"]})),
        "exec-ok-1",
    );
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(r.header("X-Request-ID"), Some("exec-ok-1"));
    let r = with_id(
        "POST",
        &format!("/session/{sid}/exec"),
        TOKEN,
        Some(&json!({"commands": ["show clock"]})),
        "adm-1",
    );
    assert_eq!(r.status, 200, "{}", text(&r));
    let lines = cmd_log(&cmdlog, &sid);
    let line = |cmd: &str| {
        lines
            .iter()
            .find(|l| l["command"] == cmd)
            .unwrap_or_else(|| panic!("no {cmd} in {lines:?}"))
            .clone()
    };
    assert_eq!(
        (
            line("show version")["by"].clone(),
            line("show version")["request_id"].clone()
        ),
        (json!("ops"), json!("exec-ok-1"))
    );
    assert_eq!(
        (
            line("show clock")["by"].clone(),
            line("show clock")["request_id"].clone()
        ),
        (json!("default"), json!("adm-1"))
    );
    // A change guard armed by ops, fired by its deadline: the rollback is the guard's.
    let r = with_id(
        "POST",
        &format!("/session/{sid}/guard"),
        &ops,
        Some(&json!({"timeout": 1, "rollback": {"config": ["no interface Loopback9"]}})),
        "arm-1",
    );
    assert_eq!(r.status, 201, "{}", text(&r));
    let r = with_id(
        "POST",
        &format!("/session/{sid}/exec"),
        &ops,
        Some(&json!({"config": ["interface Loopback9"]})),
        "cfg-1",
    );
    assert_eq!(r.status, 200, "{}", text(&r));
    assert!(
        wait_until(Duration::from_secs(10), || {
            as_(p.addr, "ops")
                .get(&format!("/session/{sid}/guard"))
                .json()["state"]
                == "rolled_back"
        }),
        "the guard did not roll back"
    );
    assert!(typed(&dev.journal(), "no interface Loopback9") == 1);
    let lines = cmd_log(&cmdlog, &sid);
    let cfg = lines
        .iter()
        .find(|l| l["command"] == "interface Loopback9")
        .unwrap();
    assert_eq!(
        (cfg["by"].clone(), cfg["request_id"].clone()),
        (json!("ops"), json!("cfg-1"))
    );
    let fired = lines
        .iter()
        .position(|l| l["command"].as_str().unwrap().starts_with("[guard] fired"))
        .unwrap_or_else(|| panic!("no fired event in {lines:?}"));
    let rollback: Vec<&Value> = lines[fired..].iter().collect();
    assert!(
        rollback
            .iter()
            .any(|l| l["command"] == "no interface Loopback9"),
        "{rollback:?}"
    );
    for l in &rollback {
        assert_eq!(l["by"], "guard", "{l}");
        assert_eq!(
            l["request_id"],
            Value::Null,
            "a guard firing by itself: {l}"
        );
    }

    // The broker's log: the lines of those requests carry their id; the guard's own do not.
    let log = p.log_text();
    let has = |id: &str, what: &str| {
        log.lines()
            .any(|l| l.contains(&format!("req={id} ")) && l.contains(what))
    };
    assert!(
        has("open-42", &format!("session {sid} host 127.0.0.1: opened")),
        "{log}"
    );
    assert!(
        has("exec-refused-1", "exec refused by the command policy"),
        "{log}"
    );
    assert!(has("arm-1", "change guard: armed"), "{log}");
    assert!(has("probe-1", "host 127.0.0.1: logged in in"), "{log}");
    let fired_line = log
        .lines()
        .find(|l| l.contains("change guard: fired (deadline)"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(!fired_line.contains("req="), "{fired_line}");
    assert!(p.panics().is_empty());
}

// ---------------------------------------------------------------------------------------------
// 10. Audit

const WEB_PW: &str = "CANARY-web-2c4d";
const WEB_KEY: &str = "CANARY-key-9f0e-0123456789abcdef";

/// `web_users` (one per (name, role)) with `WEB_PW`, and the key that signs their logins.
fn web_yaml(users: &[(&str, &str)]) -> String {
    let hash = bcrypt::hash(WEB_PW, 4).unwrap();
    let mut y = format!("web_secret_key: {WEB_KEY}\nweb_users:\n");
    for (u, role) in users {
        y.push_str(&format!(
            "  - {{username: {u}, password_hash: '{hash}', role: {role}}}\n"
        ));
    }
    y
}

/// A form POST of the dashboard.
fn form(addr: SocketAddr, path: &str, cookie: Option<&str>, body: &str, id: &str) -> Resp {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Request-ID: {id}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(c) = cookie {
        r.push_str(&format!("Cookie: {c}\r\n"));
    }
    r.push_str("\r\n");
    r.push_str(body);
    raw(addr, r.as_bytes())
}

/// Log in to the dashboard: the `Cookie` value.
fn web_login(addr: SocketAddr, user: &str, id: &str) -> String {
    let r = form(
        addr,
        "/login",
        None,
        &format!("username={user}&password={WEB_PW}"),
        id,
    );
    assert_eq!(r.status, 303, "{}", text(&r));
    let c = r.header("Set-Cookie").unwrap();
    c.split(';').next().unwrap().to_string()
}

/// The dashboard page of a login (status 200).
fn web_page(addr: SocketAddr, cookie: &str) -> String {
    let r = send(addr, "GET", "/", None, None, &[("Cookie", cookie)]);
    assert_eq!(r.status, 200);
    assert!(r.header("X-Request-ID").is_some_and(is_new_id));
    text(&r)
}

fn csrf_of(html: &str) -> String {
    let i = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[i..i + 64].to_string()
}

/// What one audited request must have left in the audit file.
struct Audited {
    id: &'static str,
    /// The token's name and role (None: no token, or an unknown one).
    who: Option<(&'static str, &'static str)>,
    method: &'static str,
    route: &'static str,
    session: Option<String>,
    status: u16,
}

/// `r` answered `a.status`; `a` is expected in the audit file.
fn audited(want: &mut Vec<Audited>, r: &Resp, a: Audited) {
    assert_eq!(r.status, a.status, "{}: {}", a.id, text(r));
    want.push(a);
}

/// With `audit_log`: every state-changing request (opens, execs, closes, guard arm and
/// confirm, probes, refused 401/403/422 POSTs and DELETEs, dashboard logins and closes) is one
/// line of the file with exactly the documented fields and the right values, and one `audit:`
/// line in the broker's log; GETs are not audited; the file is 0640. No API token, device
/// password, enable secret or web password of the test is in the audit file, the broker's log
/// or the command log.
#[test]
fn state_changing_requests_are_audited_once_and_no_secret_is_written() {
    use std::os::unix::fs::PermissionsExt;
    let dev = ssh_device();
    let spawn = Proc::serve("tok-audit");
    let audit = spawn.dir().join("audit.jsonl");
    let cmdlog = spawn.dir().join("cmdlog");
    let p = spawn
        .yaml(&format!(
            "audit_log: {}\ncmd_log_dir: {}\ndenied_commands: ['^reload']\n{}{}",
            audit.display(),
            cmdlog.display(),
            tokens_yaml(&[
                ("ops", "operator", ""),
                ("view", "viewer", ""),
                ("rd", "reader", "")
            ]),
            web_yaml(&[("boss", "admin")])
        ))
        .start();
    let (ops, view, rd) = (secret("ops"), secret("view"), secret("rd"));
    let go = |m: &str, path: &str, token: Option<&str>, body: Option<Value>, id: &str| {
        send(
            p.addr,
            m,
            path,
            token,
            body.as_ref(),
            &[("X-Request-ID", id)],
        )
    };
    let op = Some(("ops", "operator"));
    let mut want = Vec::new();
    let r = go(
        "POST",
        "/session",
        Some(&ops),
        Some(login(dev.port())),
        "a-open",
    );
    let sid = r.json()["session_id"].as_str().unwrap_or("").to_string();
    let s = || Some(sid.clone());
    let a = |id, who, method, route, session, status| Audited {
        id,
        who,
        method,
        route,
        session,
        status,
    };
    audited(&mut want, &r, a("a-open", op, "POST", "/session", s(), 201));
    let exec = format!("/session/{sid}/exec");
    let x = "/session/{id}/exec";
    let show = json!({"commands": ["show version"]});
    let r = go("POST", &exec, Some(&ops), Some(show.clone()), "a-exec");
    audited(&mut want, &r, a("a-exec", op, "POST", x, s(), 200));
    let reload = json!({"commands": ["reload"]});
    let r = go("POST", &exec, Some(&ops), Some(reload), "a-policy");
    audited(&mut want, &r, a("a-policy", op, "POST", x, s(), 403));
    let guard = format!("/session/{sid}/guard");
    let r = go("POST", &guard, Some(&ops), Some(arm_body()), "a-arm");
    let g = "/session/{id}/guard";
    audited(&mut want, &r, a("a-arm", op, "POST", g, s(), 201));
    let r = go(
        "POST",
        &format!("{guard}/confirm"),
        Some(&ops),
        None,
        "a-confirm",
    );
    let ga = "/session/{id}/guard/{action}";
    audited(&mut want, &r, a("a-confirm", op, "POST", ga, s(), 200));
    let wrong = Some("CANARY-tok-wrong");
    let r = go("POST", "/session", wrong, Some(login(dev.port())), "a-401");
    audited(
        &mut want,
        &r,
        a("a-401", None, "POST", "/session", None, 401),
    );
    let r = go(
        "DELETE",
        &format!("/session/{sid}"),
        None,
        None,
        "a-401-none",
    );
    let d = "/session/{id}";
    audited(&mut want, &r, a("a-401-none", None, "DELETE", d, s(), 401));
    let r = go("POST", &exec, Some(&view), Some(show), "a-403");
    let viewer = Some(("view", "viewer"));
    audited(&mut want, &r, a("a-403", viewer, "POST", x, s(), 403));
    let r = go(
        "POST",
        &exec,
        Some(&rd),
        Some(json!({"config": ["x"]})),
        "a-403-rd",
    );
    let reader = Some(("rd", "reader"));
    audited(&mut want, &r, a("a-403-rd", reader, "POST", x, s(), 403));
    let r = go(
        "POST",
        "/session",
        Some(&ops),
        Some(json!({"host": 7})),
        "a-422",
    );
    audited(&mut want, &r, a("a-422", op, "POST", "/session", None, 422));
    let r = go(
        "POST",
        "/probe",
        Some(&ops),
        Some(login(dev.port())),
        "a-probe",
    );
    audited(&mut want, &r, a("a-probe", op, "POST", "/probe", None, 200));
    // Not audited: reads, whatever their answer.
    for (path, token) in [
        ("/sessions".to_string(), Some(ops.as_str())),
        (format!("/session/{sid}/status"), Some(ops.as_str())),
        ("/health".to_string(), None),
        ("/metrics".to_string(), Some(TOKEN)),
        ("/sessions".to_string(), wrong),
    ] {
        go("GET", &path, token, None, "a-get");
    }
    // The dashboard: a login, and the close of another session.
    let r = go(
        "POST",
        "/session",
        Some(&ops),
        Some(login(dev.port())),
        "a-open2",
    );
    let sid2 = r.json()["session_id"].as_str().unwrap_or("").to_string();
    let s2 = || Some(sid2.clone());
    audited(
        &mut want,
        &r,
        a("a-open2", op, "POST", "/session", s2(), 201),
    );
    let body = format!("username=boss&password={WEB_PW}");
    let r = form(p.addr, "/login", None, &body, "w-login");
    audited(
        &mut want,
        &r,
        a("w-login", None, "POST", "/login", None, 303),
    );
    let cookie = r.header("Set-Cookie").unwrap().split(';').next().unwrap();
    let csrf = format!("csrf={}", csrf_of(&web_page(p.addr, cookie)));
    let r = form(
        p.addr,
        &format!("/ui/close/{sid2}"),
        Some(cookie),
        &csrf,
        "w-close",
    );
    let c = "/ui/close/{id}";
    audited(&mut want, &r, a("w-close", None, "POST", c, s2(), 303));
    let r = go(
        "DELETE",
        &format!("/session/{sid}"),
        Some(&ops),
        None,
        "a-close",
    );
    audited(&mut want, &r, a("a-close", op, "DELETE", d, s(), 204));
    assert!(wait_until(Duration::from_secs(5), || dev
        .active_connections()
        == 0));

    // The file: one line per audited request, the documented fields only.
    let mode = std::fs::metadata(&audit).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "{mode:o}");
    // A request's line is written once its answer is out: wait for the last one.
    let read = || std::fs::read_to_string(&audit).unwrap();
    wait_until(Duration::from_secs(5), || {
        read().lines().count() >= want.len()
    });
    let file = read();
    let lines: Vec<Value> = file
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), want.len(), "{file}");
    const FIELDS: [&str; 11] = [
        "ts",
        "request_id",
        "token",
        "role",
        "web_user",
        "expired",
        "client",
        "method",
        "route",
        "session_id",
        "status",
    ];
    for w in &want {
        let mine: Vec<&Value> = lines.iter().filter(|l| l["request_id"] == w.id).collect();
        assert_eq!(mine.len(), 1, "{}: {file}", w.id);
        let l = mine[0];
        let keys: Vec<&str> = l.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, FIELDS, "{l}");
        let (token, mut role) = w.who.unzip();
        // A dashboard request names its logged-in user (and role), not a token.
        let web_user = (w.id == "w-close").then_some("boss");
        if web_user.is_some() {
            role = Some("admin");
        }
        assert_eq!(l["web_user"], json!(web_user), "{l}");
        assert_eq!(l["expired"], json!(false), "{l}");
        assert_eq!(
            [
                &l["token"],
                &l["role"],
                &l["client"],
                &l["method"],
                &l["route"],
                &l["session_id"],
                &l["status"]
            ],
            [
                &json!(token),
                &json!(role),
                &json!("127.0.0.1"),
                &json!(w.method),
                &json!(w.route),
                &json!(w.session),
                &json!(w.status)
            ],
            "{}",
            w.id
        );
        assert!(l["ts"].as_str().is_some_and(|t| t.len() >= 20), "{l}");
    }
    assert!(!file.contains("a-get"));
    let log = p.log_text();
    assert_eq!(
        log.lines().filter(|l| l.contains(" audit: {")).count(),
        want.len(),
        "{log}"
    );
    // Canaries: no secret of this test anywhere the broker wrote.
    let mut written = vec![("audit file", file), ("broker log", log)];
    for e in std::fs::read_dir(&cmdlog).unwrap() {
        let path = e.unwrap().path();
        written.push(("command log", std::fs::read_to_string(path).unwrap()));
    }
    assert!(written.len() >= 3, "no command log");
    let canaries = [
        ops,
        view,
        rd,
        TOKEN.to_string(),
        "CANARY-tok-wrong".to_string(),
        PASSWORD.to_string(),
        ENABLE.to_string(),
        WEB_PW.to_string(),
        WEB_KEY.to_string(),
    ];
    for (what, text) in &written {
        for canary in &canaries {
            assert!(!text.contains(canary.as_str()), "{canary} in the {what}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 11. The dashboard

/// The dashboard shows each session's owner; a `viewer` web user has no close buttons and its
/// close is refused 403 (the session stays, the device sees no logout); an `admin` web user
/// closes it (the device sees the logout).
#[test]
fn the_dashboard_shows_owners_and_only_an_admin_closes() {
    let dev = ssh_device();
    let b = broker(&format!(
        "{}{}",
        tokens_yaml(&[("opa", "operator", "")]),
        web_yaml(&[("noc", "viewer"), ("boss", "admin")])
    ));
    let sa = as_(b.addr, "opa").open(dev.port());
    let journal = dev.journal();

    let noc = web_login(b.addr, "noc", "w-1");
    let html = web_page(b.addr, &noc);
    assert!(html.contains("<th>Owner</th>"), "{html}");
    assert!(html.contains("<td class=\"owner\">opa</td>"), "{html}");
    assert!(html.contains(&sa));
    assert!(
        !html.contains("/ui/close"),
        "a viewer sees a close button: {html}"
    );
    // Nor on the confirmation page of "close all", typed in by hand.
    let r = send(
        b.addr,
        "GET",
        "/ui/close-all",
        None,
        None,
        &[("Cookie", &noc)],
    );
    assert_eq!(r.status, 403, "{}", text(&r));
    assert!(
        !text(&r).contains("action=\"/ui/close-all\""),
        "{}",
        text(&r)
    );
    let csrf = csrf_of(&html);
    let r = form(
        b.addr,
        &format!("/ui/close/{sa}"),
        Some(&noc),
        &format!("csrf={csrf}"),
        "w-2",
    );
    assert_eq!(r.status, 403, "{}", text(&r));
    assert!(text(&r).contains("viewer"), "{}", text(&r));
    let r = form(
        b.addr,
        "/ui/close-all",
        Some(&noc),
        &format!("csrf={csrf}&confirm=yes&ids={sa}"),
        "w-3",
    );
    assert_eq!(r.status, 403, "{}", text(&r));
    let st = as_(b.addr, "opa").get(&format!("/session/{sa}/status"));
    assert_eq!(st.status, 200);
    assert_eq!(st.json()["alive"], true);
    assert_eq!(dev.journal(), journal, "the viewer's close typed something");

    let boss = web_login(b.addr, "boss", "w-4");
    let html = web_page(b.addr, &boss);
    assert!(
        html.contains(&format!("action=\"/ui/close/{sa}\"")),
        "{html}"
    );
    let csrf = csrf_of(&html);
    let r = form(
        b.addr,
        &format!("/ui/close/{sa}"),
        Some(&boss),
        &format!("csrf={csrf}"),
        "w-5",
    );
    assert_eq!(r.status, 303, "{}", text(&r));
    assert_eq!(
        as_(b.addr, "opa")
            .get(&format!("/session/{sa}/status"))
            .status,
        404
    );
    assert!(wait_until(Duration::from_secs(5), || typed(
        &dev.journal(),
        "exit"
    ) == 1));
}
