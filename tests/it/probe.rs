//! Login probes and one-shot execs (`POST /probe`, `POST /telnet-probe`, the Netmiko gateway
//! routes) over the real HTTP API against the fake SSH and Telnet devices: what the device
//! executed (its journal), that nothing is left behind (no session, no `probe-` thread), that a
//! one-shot exec answers as a session's exec does, and the command policy.

use crate::support::telnet_device;
use crate::support::*;
use fake_device::{DeviceConfig, FakeDevice};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The probe tests look for `probe-` threads of this process: one at a time.
static SERIAL: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

fn ssh_device() -> FakeDevice {
    FakeDevice::start(DeviceConfig {
        password: PASSWORD.into(),
        ..Default::default()
    })
}

fn body(port: u16, extra: Value) -> Value {
    let mut b = json!({"host": "127.0.0.1", "port": port, "username": "admin",
        "password": PASSWORD, "timeout": 10});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

/// Names of this process's threads that start with `probe-`.
fn probe_threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
                .map(|n| n.trim().to_string())
                .filter(|n| n.starts_with("probe-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Nothing left behind: no session listed, no probe thread, no probe slot taken.
fn assert_nothing_left(b: &TestBroker) {
    let s = b.get("/sessions");
    assert_eq!(s.status, 200);
    assert_eq!(s.json()["count"], 0, "{:?}", s.json());
    assert!(
        wait_until(Duration::from_secs(3), || probe_threads().is_empty()),
        "probe threads left: {:?}",
        probe_threads()
    );
    let reg = &b.broker.as_ref().unwrap().registry;
    assert!(wait_until(Duration::from_secs(3), || reg.probes() == 0));
}

fn text(r: &Resp) -> String {
    String::from_utf8_lossy(&r.body).to_string()
}

#[test]
fn probe_logs_in_runs_the_command_and_leaves_nothing_over_ssh() {
    let _g = SERIAL.lock();
    let dev = ssh_device();
    let b = broker("");
    let r = b.post(
        "/probe",
        &body(dev.port(), json!({"command": "show clock"})),
    );
    assert_eq!(r.status, 200, "{}", text(&r));
    let v = r.json();
    assert_eq!(v["login"], "ok", "{v}");
    assert_eq!(v["status"], 201);
    assert_eq!(v["detail"], Value::Null);
    assert_eq!(v["prompt"], "R1");
    assert_eq!(v["mode"], "enable");
    assert!(v["elapsed_ms"].is_u64());
    let out = v["output"].as_str().unwrap();
    assert!(!out.is_empty() && !out.contains("R1#"), "{out:?}");
    assert!(
        dev.journal().iter().any(|l| l == "show clock"),
        "{:?}",
        dev.journal()
    );
    assert!(
        wait_until(Duration::from_secs(5), || dev.active_connections() == 0),
        "the probe's connection is closed"
    );
    assert!(
        dev.lines_received().iter().any(|l| l == "exit"),
        "logged out politely"
    );
    assert_nothing_left(&b);

    // Without a command: a login check only.
    let r = b.post("/probe", &body(dev.port(), json!({})));
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(r.json()["login"], "ok");
    assert_eq!(r.json()["output"], Value::Null);
    assert_nothing_left(&b);
}

#[test]
fn probe_over_telnet_by_path_and_by_device_type() {
    let _g = SERIAL.lock();
    let dev = telnet_device();
    let b = broker("");
    let extra = json!({"enable_password": ENABLE, "command": "show version"});
    let r = b.post("/telnet-probe", &body(dev.port(), extra.clone()));
    assert_eq!(r.status, 200, "{}", text(&r));
    let v = r.json();
    assert_eq!(v["login"], "ok", "{v}");
    assert_eq!(v["status"], 201);
    assert_eq!(v["mode"], "enable");
    assert!(
        v["output"]
            .as_str()
            .unwrap()
            .starts_with("Cisco IOS Software"),
        "{v}"
    );
    assert!(
        dev.journal().iter().any(|l| l == "show version"),
        "{:?}",
        dev.journal()
    );
    assert_nothing_left(&b);

    let mut extra = extra;
    extra["device_type"] = json!("cisco_ios_telnet");
    let r = b.post("/probe", &body(dev.port(), extra));
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(r.json()["login"], "ok", "{}", text(&r));
    assert_eq!(dev.total_connections(), 2);
    assert!(wait_until(Duration::from_secs(5), || dev
        .active_connections()
        == 0));
    assert_nothing_left(&b);
}

#[test]
fn failed_logins_answer_200_with_the_status_session_would_answer() {
    let _g = SERIAL.lock();
    let dev = ssh_device();
    let tdev = telnet_device();
    let b = broker("");
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cases = [
        (
            "/session",
            "/probe",
            body(dev.port(), json!({"password": "wrong"})),
        ),
        (
            "/telnet-session",
            "/telnet-probe",
            body(tdev.port(), json!({"password": "wrong"})),
        ),
        ("/session", "/probe", body(closed, json!({}))),
        ("/telnet-session", "/telnet-probe", body(closed, json!({}))),
    ];
    for (open, probe, req) in cases {
        let s = b.post(open, &req);
        assert!(s.status >= 400, "{open}: {}", text(&s));
        let r = b.post(probe, &req);
        assert_eq!(r.status, 200, "{probe}: {}", text(&r));
        let v = r.json();
        assert_eq!(v["login"], "failed", "{v}");
        assert_eq!(v["status"], s.status, "{probe} {v} vs {}", text(&s));
        assert!(v["detail"].is_string(), "{v}");
        assert_eq!(v["output"], Value::Null);
        assert_eq!(v["prompt"], Value::Null);
        println!(
            "{probe} port {}: {} {}",
            req["port"], v["status"], v["detail"]
        );
    }
    assert!(b.get("/sessions").json()["count"] == 0);
    assert_nothing_left(&b);
}

/// Results without their timings, to compare two execs of the same commands.
fn untimed(mut v: Value) -> Value {
    if let Some(list) = v["results"].as_array_mut() {
        for r in list {
            r.as_object_mut().unwrap().remove("elapsed_ms");
        }
    }
    v
}

#[test]
fn one_shot_exec_answers_as_a_session_exec() {
    let _g = SERIAL.lock();
    let dev = ssh_device();
    let b = broker("");
    let cmds = json!([
        "show version",
        "show ip interface brief",
        "show clock bogus"
    ]);
    let id = b.open(dev.port(), json!({}));
    let session = b.exec(&id, cmds.clone());
    assert_eq!(session.status, 200, "{}", text(&session));
    assert_eq!(b.delete(&format!("/session/{id}")).status, 204);

    let r = b.post("/probe", &body(dev.port(), json!({"commands": cmds})));
    assert_eq!(r.status, 200, "{}", text(&r));
    let mut v = r.json();
    assert_eq!(v["login"], "ok");
    assert!(v["elapsed_ms"].is_u64());
    let o = v.as_object_mut().unwrap();
    o.remove("login");
    o.remove("elapsed_ms");
    // A session's exec is a job (its id comes first); a one-shot exec is not.
    let mut s = session.json();
    assert!(s.as_object_mut().unwrap().remove("job_id").is_some());
    assert_eq!(untimed(v), untimed(s));

    // A failure part way is answered as the exec answers it, with the login fields.
    let req = json!({"commands": ["show version", "show clock bogus"], "stop_on_error": true});
    let id = b.open(dev.port(), json!({}));
    let session = b.post(&format!("/session/{id}/exec"), &req);
    assert_eq!(b.delete(&format!("/session/{id}")).status, 204);
    let r = b.post("/probe", &body(dev.port(), req));
    assert_eq!(r.status, session.status, "{}", text(&r));
    let mut v = r.json();
    assert_eq!(v["login"], "ok");
    let o = v.as_object_mut().unwrap();
    o.remove("login");
    o.remove("elapsed_ms");
    // A session's exec is a job (its id comes first); a one-shot exec is not.
    let mut s = session.json();
    assert!(s.as_object_mut().unwrap().remove("job_id").is_some());
    // Each answer has its own request id.
    assert!(v.as_object_mut().unwrap().remove("request_id").is_some());
    assert!(s.as_object_mut().unwrap().remove("request_id").is_some());
    assert_eq!(untimed(v), untimed(s));

    // A login failure of a one-shot exec is the open's error, with `login: failed`.
    let r = b.post(
        "/probe",
        &body(
            dev.port(),
            json!({"password": "wrong", "commands": ["show version"]}),
        ),
    );
    assert_eq!(r.status, 401, "{}", text(&r));
    assert_eq!(r.json()["login"], "failed");
    assert!(r.json()["detail"].is_string());
    assert!(wait_until(Duration::from_secs(5), || dev
        .active_connections()
        == 0));
    assert_nothing_left(&b);
}

#[test]
fn a_refused_command_is_403_and_nothing_is_typed() {
    let _g = SERIAL.lock();
    let b = broker("denied_commands: ['^reload', '^conf']\n");
    let dev = ssh_device();
    let tdev = telnet_device();
    let bodies = [
        json!({"command": "reload"}),
        json!({"commands": ["show clock", "reload"]}),
        json!({"config": ["hostname PWNED"]}),
    ];
    for extra in &bodies {
        let r = b.post("/probe", &body(dev.port(), extra.clone()));
        assert_eq!(r.status, 403, "{extra}: {}", text(&r));
        let v = r.json();
        assert!(
            v["detail"].as_str().unwrap().starts_with("Forbidden"),
            "{v}"
        );
        assert_eq!(v["login"], "ok");
        let mut extra = extra.clone();
        extra["enable_password"] = json!(ENABLE);
        let r = b.post("/telnet-probe", &body(tdev.port(), extra.clone()));
        assert_eq!(r.status, 403, "{extra}: {}", text(&r));
    }
    for j in [dev.journal(), tdev.journal()] {
        assert!(
            !j.iter()
                .any(|l| l.contains("reload") || l.contains("show clock") || l.contains("PWNED")),
            "{j:?}"
        );
    }
    assert_nothing_left(&b);
}

#[test]
fn netmiko_gateway_routes() {
    let _g = SERIAL.lock();
    let dev = ssh_device();
    let b = broker("");
    let opts = json!({"device_type": "cisco_ios", "port": dev.port(), "username": "admin",
        "password": PASSWORD, "timeout": 10, "host": "ignored.example",
        "fast_cli": true, "global_delay_factor": 2, "session_log": "x.log"});
    let r = b.post(
        "/api/v2.0/netmiko/send_command",
        &json!({"host": "127.0.0.1", "connection_options": opts,
            "commands": ["show version", "show clock"]}),
    );
    assert_eq!(r.status, 200, "{}", text(&r));
    let v = r.json();
    assert_eq!(v["login"], "ok");
    assert!(v["outputs"]["show version"]
        .as_str()
        .unwrap()
        .starts_with("Cisco IOS Software"));
    assert_eq!(v["results"].as_array().unwrap().len(), 2);

    for key in ["config", "commands"] {
        let r = b.post(
            "/api/v2.0/netmiko/send_config",
            &json!({"host": "127.0.0.1", "connection_options": opts,
                key: ["interface Loopback7", format!("description via {key}")]}),
        );
        assert_eq!(r.status, 200, "{}", text(&r));
        assert_eq!(r.json()["login"], "ok");
        let j = dev.journal_entries();
        assert!(
            j.iter().any(|e| e.line == format!("description via {key}")),
            "{j:?}"
        );
    }
    // Errors name the client's own fields.
    let r = b.post(
        "/api/v2.0/netmiko/send_command",
        &json!({"host": "127.0.0.1", "connection_options": {"username": "a", "port": "x"},
            "commands": ["show version"]}),
    );
    assert_eq!(r.status, 422, "{}", text(&r));
    assert_eq!(
        r.json()["detail"][0]["loc"],
        json!(["body", "connection_options", "port"])
    );
    let r = b.post(
        "/api/v2.0/netmiko/send_config",
        &json!({"host": "127.0.0.1", "connection_options": {"username": "a"}}),
    );
    assert_eq!(r.status, 422, "{}", text(&r));
    assert_eq!(r.json()["detail"][0]["loc"], json!(["body", "config"]));
    let r = call(
        b.addr,
        "POST",
        "/api/v2.0/netmiko/send_command",
        None,
        Some("{}"),
    );
    assert_eq!(r.status, 401);
    assert_nothing_left(&b);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Not a benchmark with a threshold: prints how long a probe takes against opening a session
/// (median of 20 each, fake SSH device).
#[test]
fn probe_time_against_session_open_time() {
    let _g = SERIAL.lock();
    let dev = ssh_device();
    let b = broker("");
    let mut probes = Vec::new();
    let mut opens = Vec::new();
    let mut probe_cmd = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let id = b.open(dev.port(), json!({}));
        opens.push(t.elapsed());
        assert_eq!(b.delete(&format!("/session/{id}")).status, 204);
        let t = Instant::now();
        let r = b.post("/probe", &body(dev.port(), json!({})));
        probes.push(t.elapsed());
        assert_eq!(r.json()["login"], "ok", "{}", text(&r));
        let t = Instant::now();
        let r = b.post(
            "/probe",
            &body(dev.port(), json!({"command": "show clock"})),
        );
        probe_cmd.push(t.elapsed());
        assert_eq!(r.json()["login"], "ok", "{}", text(&r));
    }
    println!(
        "median of 20, fake SSH device: POST /session {:?}, POST /probe {:?}, POST /probe with a command {:?}",
        median(opens),
        median(probes),
        median(probe_cmd)
    );
    assert!(wait_until(Duration::from_secs(10), || b
        .get("/sessions")
        .json()["count"]
        == 0));
    assert_nothing_left(&b);
}

/// At most `MAX_PROBES` probes at once: one more is a 503 at once; each probe still ends at its
/// own deadline and gives its slot back.
#[test]
fn probes_are_capped_and_give_their_slot_back() {
    let _g = SERIAL.lock();
    let b = broker("");
    // Accepts TCP (the kernel's backlog) and never says a word: every login waits for `timeout`.
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = mute.local_addr().unwrap().port();
    let max = netdev_broker::session::MAX_PROBES;
    let req = body(port, json!({"timeout": 3})).to_string();
    let waiting: Vec<_> = (0..max)
        .map(|_| {
            let (addr, req) = (b.addr, req.clone());
            std::thread::spawn(move || call(addr, "POST", "/probe", Some(TOKEN), Some(&req)))
        })
        .collect();
    let reg = b.broker.as_ref().unwrap().registry.clone();
    assert!(wait_until(Duration::from_secs(5), || reg.probes() == max));
    let r = b.post("/probe", &body(port, json!({"timeout": 3})));
    assert_eq!(r.status, 503, "{}", text(&r));
    assert!(r.json()["detail"].as_str().unwrap().contains("Probe limit"));
    for w in waiting {
        let r = w.join().unwrap();
        assert_eq!(r.status, 200, "{}", text(&r));
        assert_eq!(r.json()["login"], "failed");
        assert_eq!(r.json()["status"], 504, "{}", text(&r));
    }
    drop(mute);
    assert_nothing_left(&b);
}
