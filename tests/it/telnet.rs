//! Telnet sessions over the HTTP API against the built-in fake IOS Telnet device (real sockets,
//! real option negotiation): the seed's Telnet examples, login forms and refusals, interactive
//! commands, config blocks, shared ids, slow and dropping devices, keepalive.

use crate::support::*;
use fake_device::{DeviceOptions, TelnetDevice};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn device(opts: DeviceOptions) -> TelnetDevice {
    TelnetDevice::start(DeviceOptions {
        password: PASSWORD.into(),
        ..opts
    })
    .unwrap()
}

fn open_body(dev: &TelnetDevice, extra: Value) -> Value {
    let mut b = json!({"host": "127.0.0.1", "port": dev.port(), "username": "admin", "password": PASSWORD, "timeout": 10});
    if let (Some(o), Some(e)) = (b.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    b
}

fn open(b: &TestBroker, dev: &TelnetDevice, extra: Value) -> String {
    let r = b.post("/telnet-session", &open_body(dev, extra));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["session_id"].as_str().unwrap().to_string()
}

fn out(v: &Value, cmd: &str) -> String {
    v["outputs"][cmd]
        .as_str()
        .unwrap_or_else(|| panic!("no output for {cmd}: {v}"))
        .to_string()
}

#[test]
fn seed_telnet_walkthrough() {
    let dev = device(DeviceOptions {
        enable_secret: Some(ENABLE.into()),
        banner: Some("*** R1# authorised access only ***\n##########".into()),
        ..Default::default()
    });
    let b = broker("");
    let r = b.post(
        "/telnet-session",
        &open_body(&dev, json!({"enable_password": ENABLE})),
    );
    assert_eq!(r.status, 201, "{:?}", r.json());
    let v = r.json();
    assert_eq!(v["host"], "127.0.0.1");
    let id = v["session_id"].as_str().unwrap().to_string();
    let s = b.get(&format!("/telnet-session/{id}/status")).json();
    assert_eq!(s["protocol"], "telnet");
    assert_eq!(s["alive"], true);
    assert_eq!(s["mode"], "enable");
    assert_eq!(s["port"], dev.port());
    // The device saw real negotiation: our terminal type and window size.
    let neg = dev.negotiation();
    assert!(neg.iter().any(|n| n == "TTYPE VT100"), "{neg:?}");
    assert!(neg.iter().any(|n| n.starts_with("NAWS 510x")), "{neg:?}");

    let r = b.post(
        &format!("/telnet-session/{id}/exec"),
        &json!({"commands": ["show version", {"cmd": "copy running-config startup-config", "answer": "\\[confirm\\]", "send_newlines": 1}]}),
    );
    assert_eq!(r.status, 200, "{:?}", r.json());
    let v = r.json();
    let ver = out(&v, "show version");
    assert!(ver.starts_with("Cisco IOS Software"), "{ver:?}");
    assert!(!ver.contains('\r') && !ver.contains('\u{fffd}') && !ver.contains("R1#"));
    assert!(out(&v, "copy running-config startup-config").contains("[OK]"));
    // Paging is off: a long output arrives whole and without pager prompts.
    let v = b
        .post(
            &format!("/telnet-session/{id}/exec"),
            &json!({"commands": ["show long 60", "show nonsense"]}),
        )
        .json();
    assert_eq!(out(&v, "show long 60").lines().count(), 60);
    assert_eq!(v["results"][1]["failed"], true);
    // Either prefix finds the session.
    assert_eq!(b.get(&format!("/session/{id}/status")).status, 200);
    assert_eq!(b.delete(&format!("/telnet-session/{id}")).status, 204);
    assert_eq!(b.delete(&format!("/telnet-session/{id}")).status, 204);
    assert_eq!(b.get(&format!("/telnet-session/{id}/status")).status, 404);
    assert!(wait_until(Duration::from_secs(5), || dev
        .active_connections()
        == 0));
    assert!(dev.lines_received().iter().any(|l| l == "exit"));
}

#[test]
fn login_forms_and_refusals() {
    let b = broker("");
    // Line password only.
    let dev = device(DeviceOptions {
        username: None,
        ..Default::default()
    });
    let id = open(&b, &dev, json!({}));
    let v = b
        .post(
            &format!("/telnet-session/{id}/exec"),
            &json!({"commands": ["show clock"]}),
        )
        .json();
    assert!(!out(&v, "show clock").is_empty());
    // Wrong password: 401 with the device's words; the canary never comes back.
    let dev = device(DeviceOptions::default());
    let r = b.post(
        "/telnet-session",
        &open_body(&dev, json!({"password": "CANARY-wrong-pw"})),
    );
    assert_eq!(r.status, 401, "{:?}", r.json());
    let d = r.json()["detail"].as_str().unwrap().to_string();
    assert!(d.contains("Login invalid"), "{d}");
    assert!(!d.contains("CANARY-wrong-pw"));
    // Wrong enable secret: 401.
    let dev = device(DeviceOptions {
        enable_secret: Some(ENABLE.into()),
        ..Default::default()
    });
    let r = b.post(
        "/telnet-session",
        &open_body(&dev, json!({"enable_password": "nope"})),
    );
    assert_eq!(r.status, 401);
    // Already privileged: no enable is sent.
    let dev = device(DeviceOptions {
        start_privileged: true,
        ..Default::default()
    });
    let id = open(&b, &dev, json!({"enable_password": ENABLE}));
    assert_eq!(b.status(&id)["mode"], "enable");
    assert!(!dev.lines_received().iter().any(|l| l == "enable"));
    // Refused port: 502. A listener that never says anything: 504 at the deadline.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = b.post(
        "/telnet-session",
        &json!({"host": "127.0.0.1", "port": port, "username": "a", "password": "b"}),
    );
    assert_eq!(r.status, 502);
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let t = Instant::now();
    let r = b.post(
        "/telnet-session",
        &json!({"host": "127.0.0.1", "port": mute.local_addr().unwrap().port(), "username": "a", "password": "b", "timeout": 1}),
    );
    assert_eq!(r.status, 504);
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn telnet_device_types_config_blocks_and_interactions() {
    let dev = device(DeviceOptions::default());
    let b = broker("");
    // POST /session with a *_telnet device type opens over Telnet.
    let r = b.post(
        "/session",
        &open_body(&dev, json!({"device_type": "cisco_ios_telnet"})),
    );
    assert_eq!(r.status, 201, "{:?}", r.json());
    let id = r.json()["session_id"].as_str().unwrap().to_string();
    assert_eq!(b.status(&id)["protocol"], "telnet");
    let r = b.post(
        &format!("/session/{id}/exec"),
        &json!({"config": ["interface GigabitEthernet1/0/2", "description to-core"], "save": true,
                "commands": ["show running-config",
                             {"cmd": "reload", "interactions": [{"expect": "\\[confirm\\]", "send": "n"}]}]}),
    );
    assert_eq!(r.status, 200, "{:?}", r.json());
    let v = r.json();
    assert!(
        out(&v, "show running-config").contains("description to-core"),
        "{v}"
    );
    assert!(out(&v, "write memory").contains("[OK]"));
    assert_eq!(
        v["results"].as_array().unwrap().last().unwrap()["answered"],
        1
    );
    assert_eq!(b.status(&id)["mode"], "enable");
}

#[test]
fn slow_and_dropping_devices() {
    let b = broker("");
    // A slow device: output arrives line by line with pauses; nothing is lost.
    let dev = device(DeviceOptions {
        slow: Duration::from_millis(20),
        ..Default::default()
    });
    let id = open(&b, &dev, json!({"timeout": 20}));
    let v = b
        .post(
            &format!("/telnet-session/{id}/exec"),
            &json!({"commands": ["show long 30"]}),
        )
        .json();
    assert_eq!(out(&v, "show long 30").lines().count(), 30);
    // A command that outlives its deadline: 500 with the partial output, then the session
    // waits for the prompt before the next command.
    let r = b.post(
        &format!("/telnet-session/{id}/exec"),
        &json!({"commands": ["show slow 2"], "timeout": 0.5}),
    );
    assert_eq!(r.status, 500);
    let r = b.post(
        &format!("/telnet-session/{id}/exec"),
        &json!({"commands": ["show clock"], "timeout": 5}),
    );
    assert_eq!(r.status, 200, "{:?}", r.json());
    // The device drops the connection: 410, then alive false.
    let r = b.post(
        &format!("/telnet-session/{id}/exec"),
        &json!({"commands": ["drop"]}),
    );
    assert_eq!(r.status, 410, "{:?}", r.json());
    assert_eq!(b.status(&id)["alive"], false);
    // Killed while idle: found dead within one keepalive interval.
    let id = open(&b, &dev, json!({"keepalive_interval": 1}));
    dev.kill_all();
    assert!(wait_until(Duration::from_secs(5), || b.status(&id)
        ["alive"]
        == false));
}

#[test]
fn keepalive_keeps_a_telnet_session_at_its_prompt() {
    let dev = device(DeviceOptions::default());
    let b = broker("");
    let id = open(&b, &dev, json!({"keepalive_interval": 1}));
    assert!(wait_until(Duration::from_secs(6), || b.status(&id)
        ["keepalives"]
        .as_u64()
        .unwrap_or(0)
        >= 2));
    let s = b.status(&id);
    assert!(s.get("keepalive_problem").is_none(), "{s}");
    let r = b.post(
        &format!("/telnet-session/{id}/exec"),
        &json!({"commands": ["show clock"]}),
    );
    assert_eq!(r.status, 200);
}

/// A plain TCP client that ignores the Telnet negotiation (a device may not get answers).
struct RawTelnet {
    s: std::net::TcpStream,
    seen: Vec<u8>,
}

impl RawTelnet {
    fn connect(dev: &TelnetDevice) -> RawTelnet {
        let s = std::net::TcpStream::connect(("127.0.0.1", dev.port())).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        RawTelnet {
            s,
            seen: Vec::new(),
        }
    }

    fn send(&mut self, b: &[u8]) {
        use std::io::Write;
        self.s.write_all(b).unwrap();
    }

    /// Reads until `needle`; returns (and consumes) everything up to its end.
    fn until(&mut self, needle: &str) -> String {
        use std::io::Read;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(p) = self
                .seen
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
            {
                let got: Vec<u8> = self.seen.drain(..p + needle.len()).collect();
                return String::from_utf8_lossy(&got).into_owned();
            }
            assert!(
                Instant::now() < deadline,
                "waiting for {needle:?}, got {:?}",
                String::from_utf8_lossy(&self.seen)
            );
            let mut buf = [0u8; 4096];
            match self.s.read(&mut buf) {
                Ok(0) => panic!("closed waiting for {needle:?}"),
                Ok(n) => self.seen.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
    }
}

/// The demo device edits lines like IOS: its journal holds what it executed, not the bytes sent.
#[test]
fn telnet_device_journal_holds_the_edited_lines() {
    let dev = device(DeviceOptions {
        start_privileged: true,
        ..Default::default()
    });
    let mut c = RawTelnet::connect(&dev);
    c.until("Username: ");
    c.send(b"admin\r\n");
    c.until("Password: ");
    c.send(format!("{PASSWORD}\r\n").as_bytes());
    c.until("R1#");
    for bytes in [
        &b"x\x08reload\r"[..],
        b"relx\x7foad\r",
        b"hostn\x15reload\r",
        b"show clock\x1areload\r",
        b"\x1b[Creload\r",
    ] {
        c.send(bytes);
        c.until("Proceed with reload? [confirm]");
        c.send(b"n\r");
        c.until("R1#");
    }
    c.send(b"conf t\rhostname CORE1\x1awr\r");
    c.until("[OK]\r\nCORE1#");
    assert_eq!(
        dev.journal(),
        [
            "reload",
            "reload",
            "reload",
            "show clock",
            "reload",
            "reload",
            "conf t",
            "hostname CORE1",
            "wr"
        ]
    );
    let config: Vec<String> = dev
        .journal_entries()
        .into_iter()
        .filter(|e| e.mode == "config")
        .map(|e| e.line)
        .collect();
    assert_eq!(config, ["hostname CORE1"]);
    // lines_received still tells the answers and the Ctrl-Z apart.
    let lines = dev.lines_received();
    assert_eq!(lines.iter().filter(|l| *l == "n").count(), 5);
    assert!(lines.contains(&"^Z".to_string()), "{lines:?}");
}
