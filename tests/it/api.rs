//! The HTTP API against the fake SSH device: the seed's walkthrough, status codes, exec
//! semantics, timeouts, reaper, command log.

use crate::support::*;
use fake_device::{DeviceConfig, FakeDevice};
use serde_json::json;
use std::time::{Duration, Instant};

fn device() -> FakeDevice {
    FakeDevice::start(DeviceConfig {
        password: PASSWORD.into(),
        ..Default::default()
    })
}

fn out(r: &Resp, cmd: &str) -> String {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["outputs"][cmd]
        .as_str()
        .unwrap_or_else(|| panic!("no output for {cmd}: {:?}", r.json()))
        .to_string()
}

#[test]
fn seed_walkthrough() {
    let dev = device();
    let b = broker("");
    let h = call(b.addr, "GET", "/health", None, None);
    assert_eq!(h.status, 200);
    assert_eq!(h.json()["status"], "ok");
    assert_eq!(h.json()["sessions"], 0);
    assert!(h.json()["version"].is_string());

    let r = b.post("/session", &json!({"host": "127.0.0.1", "port": dev.port(), "username": "admin", "password": PASSWORD}));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let j = r.json();
    assert_eq!(j["host"], "127.0.0.1");
    let id = j["session_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));

    let s = b.status(&id);
    for k in [
        "session_id",
        "alive",
        "host",
        "device_type",
        "created_at",
        "last_used",
        "age_seconds",
        "idle_seconds",
    ] {
        assert!(s.get(k).is_some(), "status lacks {k}: {s}");
    }
    assert_eq!(s["alive"], true);
    assert_eq!(s["device_type"], "cisco_ios");
    assert_eq!(s["protocol"], "ssh");
    assert_eq!(
        s["mode"], "enable",
        "a device that needs no enable password is entered in privileged mode"
    );
    let ts = s["created_at"].as_str().unwrap();
    assert!(
        ts.len() == 25 && ts.ends_with("+00:00") && ts.as_bytes()[10] == b'T',
        "{ts}"
    );

    let r = b.exec(&id, json!(["show version", "show ip interface brief"]));
    let ver = out(&r, "show version");
    assert!(
        ver.starts_with("Cisco IOS Software"),
        "echo must be stripped: {ver:?}"
    );
    assert!(ver.contains("R1 uptime is"));
    assert!(!ver.contains("R1#"), "prompt must be stripped: {ver:?}");
    assert!(!ver.contains('\r'));
    assert!(out(&r, "show ip interface brief").contains("Interface"));
    let results = r.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["command"], "show version");
    assert!(results[0]["elapsed_ms"].is_u64());
    assert_eq!(results[0]["truncated"], false);

    assert_eq!(
        call(b.addr, "POST", "/session", Some("wrong"), Some("{}")).status,
        401
    );
    assert_eq!(b.get("/session/nonexistent/status").status, 404);
    assert_eq!(
        b.get("/session/nonexistent/status").json()["detail"],
        "Session not found"
    );
    assert_eq!(b.delete(&format!("/session/{id}")).status, 204);
    assert_eq!(b.delete(&format!("/session/{id}")).status, 204);
    assert_eq!(b.get(&format!("/session/{id}/status")).status, 404);
    assert!(
        wait_until(Duration::from_secs(5), || dev.active_connections() == 0),
        "logout must close the SSH connection"
    );
    assert!(
        dev.lines_received().iter().any(|l| l == "exit"),
        "close sends the platform's logout"
    );
}

#[test]
fn token_is_required_everywhere_but_health() {
    let b = broker("");
    for (m, p) in [
        ("GET", "/sessions"),
        ("POST", "/session"),
        ("GET", "/session/x/status"),
        ("POST", "/session/x/exec"),
        ("DELETE", "/session/x"),
    ] {
        for t in [None, Some("wrong"), Some("")] {
            let r = call(b.addr, m, p, t, Some("{}"));
            assert_eq!(r.status, 401, "{m} {p} token {t:?}");
            assert_eq!(r.json()["detail"], "Invalid or missing API token");
        }
    }
    assert_eq!(call(b.addr, "GET", "/health", None, None).status, 200);
}

#[test]
fn http_errors_are_json() {
    let b = broker("max_body_bytes: 2048");
    let r = call(b.addr, "GET", "/nope", Some(TOKEN), None);
    assert_eq!(
        (r.status, r.json()["detail"].clone()),
        (404, json!("Not Found"))
    );
    let r = call(b.addr, "PUT", "/session", Some(TOKEN), None);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("POST"));
    let big = format!("{{\"host\":\"{}\"}}", "a".repeat(4000));
    let r = call(b.addr, "POST", "/session", Some(TOKEN), Some(&big));
    assert_eq!(r.status, 413);
    assert!(r.json()["detail"].as_str().unwrap().contains("2048"));
    let r = call(b.addr, "POST", "/session", Some(TOKEN), Some("{bad json"));
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["detail"][0]["type"], "json_invalid");
    let r = call(
        b.addr,
        "POST",
        "/session",
        Some(TOKEN),
        Some(r#"{"host":"h","username":"u","password":"p","port":"x"}"#),
    );
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["detail"][0]["loc"], json!(["body", "port"]));
    let r = call(
        b.addr,
        "POST",
        "/session",
        Some(TOKEN),
        Some(r#"{"host":"h","username":"u","password":"p","device_type":"toaster"}"#),
    );
    assert_eq!(r.status, 422);
    assert!(r.json()["detail"][0]["msg"]
        .as_str()
        .unwrap()
        .contains("cisco_ios"));
    let r = raw(b.addr, b"GARBAGE\r\n\r\n");
    assert_eq!(r.status, 400);
    // Chunked bodies are reassembled: a valid body split over two chunks reaches the route
    // (404: no such session), a truncated one is a JSON error.
    let chunked = |chunks: &[&str]| {
        let mut req = format!("POST /session/x/exec HTTP/1.1\r\nX-API-Token: {TOKEN}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
        for c in chunks {
            req.push_str(&format!("{:x}\r\n{c}\r\n", c.len()));
        }
        req.push_str("0\r\n\r\n");
        raw(b.addr, req.as_bytes())
    };
    assert_eq!(chunked(&["{\"comma", "nds\":[]}"]).status, 404);
    assert_eq!(chunked(&["{\"comma"]).status, 422);
    let r = chunked(&[&"x".repeat(1500), &"x".repeat(1500)]);
    assert_eq!(r.status, 413);
    // The server is still fine.
    assert_eq!(call(b.addr, "GET", "/health", None, None).status, 200);
}

#[test]
fn open_failures_map_to_401_502_504() {
    let dev = device();
    let b = broker("");
    let r = b.post(
        "/session",
        &json!({"host": "127.0.0.1", "port": dev.port(), "username": "admin", "password": "nope"}),
    );
    assert_eq!(r.status, 401, "{:?}", r.json());
    // A closed port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = b.post(
        "/session",
        &json!({"host": "127.0.0.1", "port": closed, "username": "u", "password": "p"}),
    );
    assert_eq!(r.status, 502);
    // A port that accepts and never speaks SSH: the open deadline bounds the handshake.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let t = Instant::now();
    let r = b.post("/session", &json!({"host": "127.0.0.1", "port": silent.local_addr().unwrap().port(), "username": "u", "password": "p", "timeout": 1}));
    assert_eq!(r.status, 504, "{:?}", r.json());
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // Not a DNS name at all.
    let r = b.post(
        "/session",
        &json!({"host": "no-such-host.invalid", "username": "u", "password": "p", "timeout": 5}),
    );
    assert!(r.status == 502 || r.status == 504, "{}", r.status);
    assert_eq!(b.get("/sessions").json()["count"], 0);
}

#[test]
fn numeric_strings_from_ansible_are_accepted() {
    let dev = device();
    let b = broker("");
    let id = b.open(
        0,
        json!({"port": dev.port().to_string(), "session_timeout": "0", "timeout": "10"}),
    );
    let s = b.status(&id);
    assert_eq!(s["session_timeout"], 0);
}

#[test]
fn enable_with_password_and_failures() {
    let dev = FakeDevice::start(DeviceConfig {
        password: PASSWORD.into(),
        enable_password: Some(ENABLE.into()),
        ..Default::default()
    });
    let b = broker("");
    let id = b.open(dev.port(), json!({"enable_password": ENABLE}));
    assert_eq!(b.status(&id)["mode"], "enable");
    assert!(out(
        &b.exec(&id, json!(["show running-config"])),
        "show running-config"
    )
    .contains("hostname R1"));
    // Netmiko's name for it.
    let id2 = b.open(dev.port(), json!({"secret": ENABLE}));
    assert_eq!(b.status(&id2)["mode"], "enable");
    // Wrong enable password: 401.
    let r = b.post("/session", &json!({"host": "127.0.0.1", "port": dev.port(), "username": "admin", "password": PASSWORD, "enable_password": "wrong"}));
    assert_eq!(r.status, 401, "{:?}", r.json());
    // No enable password for a device that needs one: stays in user mode.
    let id3 = b.open(dev.port(), json!({}));
    assert_eq!(b.status(&id3)["mode"], "user");
    assert!(
        !dev.lines_received().iter().any(|l| l.contains("CANARY")),
        "the fake records <hidden> for passwords"
    );
}

#[test]
fn config_mode_then_write_memory_and_repeats() {
    let dev = device();
    let b = broker("");
    let id = b.open(dev.port(), json!({}));
    let cmds = json!([
        "configure terminal",
        "aaa authentication login default local",
        "aaa authorization exec default local",
        "end",
        "end",
        "write memory"
    ]);
    let r = b.exec(&id, cmds);
    assert_eq!(r.status, 200, "{:?}", r.json());
    let j = r.json();
    assert_eq!(
        j["results"].as_array().unwrap().len(),
        6,
        "repeated commands keep their own results"
    );
    assert!(j["outputs"]["write memory"]
        .as_str()
        .unwrap()
        .contains("[OK]"));
    assert_eq!(b.status(&id)["mode"], "enable");
    let lines = dev.lines_received();
    assert!(lines
        .iter()
        .any(|l| l == "aaa authentication login default local"));
    // Status reports config mode while in it.
    b.exec(&id, json!(["configure terminal"]));
    assert_eq!(b.status(&id)["mode"], "config");
    b.exec(&id, json!(["end"]));
}

#[test]
fn device_errors_are_200_with_the_text() {
    let dev = device();
    let b = broker("");
    let id = b.open(dev.port(), json!({}));
    let r = b.exec(&id, json!(["show bogus thing", "show clock"]));
    assert_eq!(r.status, 200);
    let j = r.json();
    assert!(j["outputs"]["show bogus thing"]
        .as_str()
        .unwrap()
        .contains("% Invalid input"));
    assert_eq!(j["results"][0]["failed"], true);
    assert_eq!(j["results"][1]["failed"], false);
}

#[test]
fn timeout_gives_500_with_partial_output_and_no_blind_newline() {
    let dev = device();
    let b = broker("");
    let id = b.open(dev.port(), json!({}));
    let t = Instant::now();
    let r = b.exec_timeout(&id, json!(["show clock", "show hang"]), 1.0);
    let took = t.elapsed();
    assert_eq!(r.status, 500, "{:?}", r.json());
    let j = r.json();
    assert!(j["detail"].as_str().unwrap().contains("show hang"));
    assert!(j["partial_output"].as_str().unwrap().contains("working"));
    assert_eq!(
        j["results"].as_array().unwrap().len(),
        1,
        "completed commands are kept"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // The device never returns: the next exec waits for the prompt, sends nothing, and says so.
    let r = b.exec_timeout(&id, json!(["show clock"]), 1.0);
    assert_eq!(r.status, 500);
    assert!(r.json()["detail"]
        .as_str()
        .unwrap()
        .contains("has not returned to its prompt"));
    assert_eq!(b.status(&id)["alive"], true);
}

#[test]
fn a_device_waiting_at_confirm_never_gets_a_blind_newline() {
    let dev = device();
    let b = broker("");
    let id = b.open(dev.port(), json!({}));
    // `reload` asks "Proceed with reload? [confirm]": the prompt does not come back.
    let r = b.exec_timeout(&id, json!(["reload"]), 1.0);
    assert_eq!(r.status, 500, "{:?}", r.json());
    assert!(r.json()["partial_output"]
        .as_str()
        .unwrap()
        .contains("[confirm]"));
    // Later execs read for the prompt and send nothing: a newline here would reload the switch.
    for _ in 0..2 {
        let r = b.exec_timeout(&id, json!(["show clock"]), 1.0);
        assert_eq!(r.status, 500);
        assert!(r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("has not returned to its prompt"));
    }
    let lines = dev.lines_received();
    assert_eq!(
        lines.last().map(String::as_str),
        Some("reload"),
        "nothing was sent after reload: {lines:?}"
    );
    assert_eq!(dev.active_connections(), 1, "the device did not reload");
    assert_eq!(b.status(&id)["alive"], true);
}

#[test]
fn concurrent_exec_is_409_and_health_stays_fast() {
    let dev = device();
    let b = broker("");
    let id = b.open(dev.port(), json!({}));
    let slow = exec_in_background(b.addr, &id, r#"{"commands":["show slow 2"]}"#);
    assert!(wait_until(Duration::from_secs(5), || b.status(&id)["busy"] == true));
    let t = Instant::now();
    let r = b.exec(&id, json!(["show clock"]));
    assert_eq!(r.status, 409);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "409 must be immediate: {:?}",
        t.elapsed()
    );
    for _ in 0..20 {
        let t = Instant::now();
        assert_eq!(call(b.addr, "GET", "/health", None, None).status, 200);
        assert!(
            t.elapsed() < Duration::from_millis(200),
            "/health blocked: {:?}",
            t.elapsed()
        );
    }
    let r = slow.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(b.exec(&id, json!(["show clock"])).status, 200);
}

#[test]
fn dropped_connection_is_410() {
    let dev = device();
    let b = broker("");
    let id = b.open(dev.port(), json!({}));
    let r = b.exec(&id, json!(["show drop"]));
    assert_eq!(r.status, 410, "{:?}", r.json());
    assert_eq!(b.status(&id)["alive"], false);
    let t = Instant::now();
    assert_eq!(b.exec(&id, json!(["show clock"])).status, 410);
    assert!(t.elapsed() < Duration::from_millis(500));
    // Killed while idle: found at the next exec without waiting for a command timeout.
    let id2 = b.open(dev.port(), json!({}));
    dev.kill_all();
    let t = Instant::now();
    let r = b.post(
        &format!("/session/{id2}/exec"),
        &json!({"commands": ["show clock"], "timeout": 10}),
    );
    assert_eq!(r.status, 410, "{:?}", r.json());
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(b.delete(&format!("/session/{id2}")).status, 204);
    assert_eq!(b.get(&format!("/session/{id2}/status")).status, 404);
}

#[test]
fn unsolicited_output_is_not_part_of_the_next_command() {
    let dev = device();
    let b = broker("");
    let id = b.open(dev.port(), json!({}));
    dev.inject("\r\n*Mar  1 00:01:02: %LINK-3-UPDOWN: Interface Gi0/1, changed state to down\r\n");
    std::thread::sleep(Duration::from_millis(300));
    let o = out(&b.exec(&id, json!(["show clock"])), "show clock");
    assert!(!o.contains("UPDOWN"), "{o:?}");
    assert!(!o.is_empty());
}

#[test]
fn delete_while_running_returns_at_once() {
    let dev = device();
    let b = broker("");
    let id = b.open(dev.port(), json!({}));
    let running = exec_in_background(b.addr, &id, r#"{"commands":["show slow 30"]}"#);
    assert!(wait_until(Duration::from_secs(5), || b.status(&id)["busy"] == true));
    let t = Instant::now();
    assert_eq!(b.delete(&format!("/session/{id}")).status, 204);
    assert!(t.elapsed() < Duration::from_millis(300));
    let r = running.join().unwrap();
    assert_eq!(r.status, 410, "{:?}", r.json());
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "torn down within a short deadline: {:?}",
        t.elapsed()
    );
    assert!(wait_until(Duration::from_secs(5), || dev
        .active_connections()
        == 0));
}

#[test]
fn paging_is_off_and_output_is_capped() {
    let dev = device();
    let b = broker("max_output_bytes: 65536");
    let id = b.open(dev.port(), json!({}));
    let o = out(&b.exec(&id, json!(["show long 300"])), "show long 300");
    assert_eq!(o.lines().count(), 300, "{:?}", &o[..200.min(o.len())]);
    assert!(!o.contains("More"));
    let r = b.exec_timeout(&id, json!(["show flood 2"]), 30.0);
    assert_eq!(r.status, 200, "{:?}", r.json());
    let j = r.json();
    assert_eq!(j["results"][0]["truncated"], true);
    assert!(j["outputs"]["show flood 2"].as_str().unwrap().len() <= 65536);
    // The session is still usable.
    assert!(out(&b.exec(&id, json!(["show clock"])), "show clock").len() > 3);
}

/// The session's thread writes an exec's answer to the client's socket itself, but only what the
/// socket takes at once: a client that does not read its 24 MiB answer holds neither the session
/// (the next exec runs on the device at once) nor the answer (it arrives whole once read).
#[test]
fn a_client_that_does_not_read_its_answer_does_not_hold_the_session() {
    use std::io::{Read, Write};
    let dev = device();
    let b = broker("max_output_bytes: 33554432");
    let id = b.open(dev.port(), json!({}));
    let body = json!({"commands": ["show flood 24"], "timeout": 60}).to_string();
    let mut slow = std::net::TcpStream::connect(b.addr).unwrap();
    write!(
        slow,
        "POST /session/{id}/exec HTTP/1.1\r\nHost: x\r\nX-API-Token: {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // The flood has run (the device's journal) and the session is free again. The journal
    // first: busy is set before the exec is handed over and cleared after it ran, so busy false
    // once the journal has the flood means the flood has ended.
    assert!(wait_until(Duration::from_secs(30), || {
        dev.journal().iter().any(|c| c == "show flood 24") && b.status(&id)["busy"] == false
    }));
    let t = Instant::now();
    let r = b.exec(&id, json!(["show clock"]));
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the next exec waited {:?} on a client that does not read",
        t.elapsed()
    );
    assert_eq!(dev.journal().last().map(String::as_str), Some("show clock"));
    // The unread answer is still whole.
    slow.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut buf = Vec::new();
    slow.read_to_end(&mut buf).unwrap();
    let r = parse(&buf);
    assert_eq!(r.status, 200);
    let j = r.json();
    let o = j["outputs"]["show flood 24"].as_str().unwrap();
    assert!(o.len() > 24_000_000, "{} bytes", o.len());
    assert_eq!(j["results"][0]["truncated"], false);
}

#[test]
fn reaper_closes_idle_sessions_but_not_timeout_zero() {
    let dev = device();
    let b = broker("reaper_interval: 1\nsession_timeout: 1");
    let idle = b.open(dev.port(), json!({}));
    let safety = b.open(dev.port(), json!({"session_timeout": 0}));
    assert!(wait_until(Duration::from_secs(6), || b
        .get(&format!("/session/{idle}/status"))
        .status
        == 404));
    assert_eq!(b.status(&safety)["alive"], true);
    assert_eq!(b.get("/sessions").json()["count"], 1);
}

#[test]
fn max_sessions_gives_503() {
    let dev = device();
    let b = broker("max_sessions: 1");
    b.open(dev.port(), json!({}));
    let r = b.post("/session", &json!({"host": "127.0.0.1", "port": dev.port(), "username": "admin", "password": PASSWORD}));
    assert_eq!(r.status, 503, "{:?}", r.json());
}

#[test]
fn command_log_masks_secrets() {
    let dev = device();
    let dir = tmpdir("cmdlog");
    let b = broker(&format!("cmd_log_dir: {}", dir.display()));
    let id = b.open(dev.port(), json!({}));
    let r = b.exec(
        &id,
        json!([
            "configure terminal",
            "username bob privilege 15 secret 0 Sup3rS3cret",
            "end",
            "show clock"
        ]),
    );
    assert_eq!(r.status, 200);
    let path = dir.join(format!("{id}.jsonl"));
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    for l in &lines {
        for k in ["ts", "command", "output"] {
            assert!(l.get(k).is_some(), "{l}");
        }
    }
    assert_eq!(
        lines[1]["command"],
        "username bob privilege 15 secret 0 ********"
    );
    assert!(!text.contains("Sup3rS3cret"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o027, 0, "mode {mode:o}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn interactive_answer_form_works_on_ssh() {
    let dev = device();
    let b = broker("");
    let id = b.open(dev.port(), json!({}));
    let r = b.exec(&id, json!([{"cmd": "copy running-config startup-config", "answer": "Destination filename", "send_newlines": 1}]));
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert!(out(&r, "copy running-config startup-config").contains("[OK]"));
    // A question that never comes: the prompt ends the command.
    let r = b.exec(
        &id,
        json!([{"cmd": "show clock", "answer": "\\[confirm\\]", "send_newlines": 1}]),
    );
    assert_eq!(r.status, 200);
}

#[test]
fn many_sessions_in_parallel_without_cross_talk() {
    let dev = device();
    let b = broker("");
    let ids: Vec<String> = (0..10).map(|_| b.open(dev.port(), json!({}))).collect();
    let addr = b.addr;
    let handles: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let id = id.clone();
            std::thread::spawn(move || {
                let body = format!(r#"{{"commands":["show long {}"]}}"#, 10 + i);
                let r = call(
                    addr,
                    "POST",
                    &format!("/session/{id}/exec"),
                    Some(TOKEN),
                    Some(&body),
                );
                (i, r)
            })
        })
        .collect();
    for h in handles {
        let (i, r) = h.join().unwrap();
        assert_eq!(r.status, 200);
        let o = r.json()["outputs"][format!("show long {}", 10 + i)]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(o.lines().count(), 10 + i);
    }
}

// --- Regressions found in review -------------------------------------------------------------

#[test]
fn a_line_ending_in_a_non_ascii_blank_does_not_kill_the_session() {
    let dev = device();
    let b = broker("");
    let id = b.open(dev.port(), json!({}));
    let running = exec_in_background(b.addr, &id, r#"{"commands":["show slow 2"]}"#);
    std::thread::sleep(Duration::from_millis(500));
    dev.inject("note\u{a0}");
    assert_eq!(running.join().unwrap().status, 200);
    assert_eq!(b.exec(&id, json!(["show clock"])).status, 200);
    assert_eq!(b.status(&id)["busy"], false);
}

#[test]
fn the_prompt_is_found_after_a_timeout_even_behind_megabytes_of_output() {
    let dev = device();
    let b = broker("");
    let id = b.open(dev.port(), json!({}));
    // A frozen device sends nothing: the command times out deterministically.
    dev.set_freeze(true);
    let r = b.exec_timeout(&id, json!(["show flood 3"]), 0.5);
    assert_eq!(r.status, 500, "{:?}", r.json());
    // Thawed, it sends 3 MiB and then the prompt while the session is idle; the next exec finds
    // the prompt at the end of that backlog and runs.
    dev.set_freeze(false);
    std::thread::sleep(Duration::from_secs(1));
    let r = b.exec_timeout(&id, json!(["show clock"]), 10.0);
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert!(!r.json()["outputs"]["show clock"]
        .as_str()
        .unwrap()
        .contains("flood"));
}

#[test]
fn the_prompt_is_found_after_a_timeout_across_idle_checks() {
    let dev = device();
    let b = broker("");
    let id = b.open(dev.port(), json!({}));
    let r = b.exec_timeout(&id, json!(["show slow 3"]), 1.0);
    assert_eq!(r.status, 500);
    // Wait past an idle check (every 15 s), which reads what is waiting, prompt included.
    std::thread::sleep(Duration::from_secs(17));
    let r = b.exec_timeout(&id, json!(["show clock"]), 5.0);
    assert_eq!(r.status, 200, "{:?}", r.json());
}

#[test]
fn shutdown_does_not_wait_for_an_open_in_flight() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut b = broker("");
    let addr = b.addr;
    let opening = std::thread::spawn(move || {
        let body = json!({"host": "127.0.0.1", "port": port, "username": "u", "password": "p", "timeout": 60});
        call(
            addr,
            "POST",
            "/session",
            Some(TOKEN),
            Some(&body.to_string()),
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    b.broker.take().unwrap().shutdown();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        t.elapsed()
    );
    let r = opening.join().unwrap();
    assert_eq!(r.status, 503, "the client is answered, not dropped");
}
