//! Change guards over the HTTP API against fake devices that keep their running configuration
//! per device and play IOS's revert timer and AAA lock-out, over SSH and Telnet: the rollback at
//! the deadline (restoring the device), extend and confirm, a running exec interrupted, a dead
//! session with and without `reopen`, the device's own timer when the broker's rollback is
//! locked out, the broker's exit, and the policy at arm time.

use crate::support::*;
use fake_device::{DeviceConfig, DeviceOptions, FakeDevice, TelnetDevice};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// One fake IOS device, over SSH or Telnet, whose revert-timer minute lasts one second.
enum Dev {
    Ssh(FakeDevice),
    Telnet(TelnetDevice),
}

impl Dev {
    fn start(telnet: bool) -> Dev {
        Dev::with_minute(telnet, Duration::from_secs(1))
    }
    fn with_minute(telnet: bool, minute: Duration) -> Dev {
        if telnet {
            Dev::Telnet(
                TelnetDevice::start(DeviceOptions {
                    password: PASSWORD.into(),
                    start_privileged: true,
                    minute,
                    ..Default::default()
                })
                .unwrap(),
            )
        } else {
            Dev::Ssh(FakeDevice::start(DeviceConfig {
                password: PASSWORD.into(),
                start_privileged: true,
                minute,
                ..Default::default()
            }))
        }
    }
    fn port(&self) -> u16 {
        match self {
            Dev::Ssh(d) => d.port(),
            Dev::Telnet(d) => d.port(),
        }
    }
    fn running(&self) -> Vec<String> {
        match self {
            Dev::Ssh(d) => d.running_config(),
            Dev::Telnet(d) => d.running_config(),
        }
    }
    fn journal(&self) -> Vec<String> {
        match self {
            Dev::Ssh(d) => d.journal(),
            Dev::Telnet(d) => d.journal(),
        }
    }
    fn prefix(&self) -> &'static str {
        match self {
            Dev::Ssh(_) => "/session",
            Dev::Telnet(_) => "/telnet-session",
        }
    }
    fn login(&self) -> Value {
        json!({"host": "127.0.0.1", "port": self.port(), "username": "admin", "password": PASSWORD, "timeout": 10})
    }
    fn open(&self, b: &TestBroker) -> String {
        let r = b.post(self.prefix(), &self.login());
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        r.json()["session_id"].as_str().unwrap().to_string()
    }
}

fn has_line(lines: &[String], l: &str) -> bool {
    lines.iter().any(|x| x.trim() == l)
}

fn config(b: &TestBroker, id: &str, lines: Value) -> Resp {
    b.post(&format!("/session/{id}/exec"), &json!({"config": lines}))
}

fn arm(b: &TestBroker, id: &str, body: Value) -> Resp {
    b.post(&format!("/session/{id}/guard"), &body)
}

fn guard_state(b: &TestBroker, id: &str) -> Value {
    let r = b.get(&format!("/session/{id}/guard"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

fn wait_state(b: &TestBroker, id: &str, state: &str, within: Duration) -> Value {
    let mut last = Value::Null;
    wait_until(within, || {
        last = guard_state(b, id);
        last["state"] == state
    });
    assert_eq!(last["state"], state, "{last}");
    last
}

const CHANGE: &str = "interface Loopback9";
const ROLLBACK: &str = "no interface Loopback9";

fn fires_at_the_deadline_and_restores(telnet: bool) {
    let dev = Dev::start(telnet);
    let b = broker("");
    let id = dev.open(&b);
    let r = arm(
        &b,
        &id,
        json!({"timeout": 2, "rollback": {"config": [ROLLBACK]}}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["state"], "armed");
    let armed = Instant::now();
    assert_eq!(
        config(&b, &id, json!([CHANGE, " description risky"])).status,
        200
    );
    assert!(has_line(&dev.running(), CHANGE));
    // Status shows the guard counting down; GET /guards lists it.
    let st = b.status(&id);
    assert_eq!(st["guard"]["state"], "armed", "{st}");
    assert!(st["guard"]["seconds_left"].as_f64().unwrap() <= 2.0);
    assert_eq!(b.get("/guards").json()["count"], 1);
    // DELETE of the session is refused while armed.
    assert_eq!(b.delete(&format!("/session/{id}")).status, 409);
    let g = wait_state(&b, &id, "rolled_back", Duration::from_secs(6));
    let took = armed.elapsed();
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    assert!(!has_line(&dev.running(), CHANGE), "{:?}", dev.running());
    assert!(has_line(&dev.journal(), ROLLBACK));
    assert_eq!(g["fired_by"], "deadline");
    assert!(
        g["result"]["outputs"]
            .as_object()
            .unwrap()
            .contains_key(ROLLBACK),
        "{g}"
    );
    // Ended: confirm and rollback answer 409, the session is usable and deletable again.
    assert_eq!(
        b.post(&format!("/session/{id}/guard/confirm"), &json!({}))
            .status,
        409
    );
    assert_eq!(b.exec(&id, json!(["show clock"])).status, 200);
    assert_eq!(b.delete(&format!("/session/{id}")).status, 204);
    let m = String::from_utf8_lossy(&b.get("/metrics").body).to_string();
    assert!(
        m.contains("netdev_broker_guard_events_total{event=\"rolled_back\"} 1"),
        "{m}"
    );
}

#[test]
fn guard_fires_at_the_deadline_and_restores_the_device_ssh() {
    fires_at_the_deadline_and_restores(false);
}

#[test]
fn guard_fires_at_the_deadline_and_restores_the_device_telnet() {
    fires_at_the_deadline_and_restores(true);
}

#[test]
fn extend_and_confirm_keep_the_change() {
    let dev = Dev::start(false);
    let b = broker("");
    let id = dev.open(&b);
    let no_guard = b.post(&format!("/session/{id}/guard/confirm"), &json!({}));
    assert_eq!(
        no_guard.status,
        404,
        "{}",
        String::from_utf8_lossy(&no_guard.body)
    );
    assert_eq!(
        arm(
            &b,
            &id,
            json!({"timeout": 1, "rollback": {"config": [ROLLBACK]}})
        )
        .status,
        201
    );
    // One guard per session.
    assert_eq!(
        arm(
            &b,
            &id,
            json!({"timeout": 1, "rollback": {"config": [ROLLBACK]}})
        )
        .status,
        409
    );
    assert_eq!(config(&b, &id, json!([CHANGE])).status, 200);
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(600));
        let r = b.post(
            &format!("/session/{id}/guard/extend"),
            &json!({"timeout": 1}),
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    let r = b.post(&format!("/session/{id}/guard/confirm"), &json!({}));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["state"], "confirmed");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(guard_state(&b, &id)["state"], "confirmed");
    assert!(has_line(&dev.running(), CHANGE));
    assert!(!has_line(&dev.journal(), ROLLBACK));
    // Idempotent answers once ended.
    assert_eq!(
        b.post(&format!("/session/{id}/guard/confirm"), &json!({}))
            .status,
        409
    );
    assert_eq!(b.delete(&format!("/session/{id}/guard")).status, 409);
    // Disarm: no rollback either.
    assert_eq!(
        arm(&b, &id, json!({"timeout": 1, "rollback": [ROLLBACK]})).status,
        201
    );
    let r = b.delete(&format!("/session/{id}/guard"));
    assert_eq!(r.json()["state"], "disarmed");
    std::thread::sleep(Duration::from_millis(1300));
    assert!(!has_line(&dev.journal(), ROLLBACK));
}

#[test]
fn rollback_now_interrupts_a_running_exec_ssh_and_telnet() {
    for telnet in [false, true] {
        let dev = Dev::start(telnet);
        let b = broker("");
        let id = dev.open(&b);
        assert_eq!(config(&b, &id, json!([CHANGE])).status, 200);
        assert_eq!(
            arm(
                &b,
                &id,
                json!({"timeout": 60, "rollback": {"config": [ROLLBACK]}})
            )
            .status,
            201
        );
        let running = exec_in_background(
            b.addr,
            &id,
            &json!({"commands": ["show hang"], "timeout": 30}).to_string(),
        );
        std::thread::sleep(Duration::from_millis(500));
        let t = Instant::now();
        let r = b.post(&format!("/session/{id}/guard/rollback"), &json!({}));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["state"], "rolled_back", "{}", r.json());
        assert_eq!(r.json()["fired_by"], "request");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        let ex = running.join().unwrap();
        assert_eq!(ex.status, 409, "{}", String::from_utf8_lossy(&ex.body));
        assert!(
            ex.json()["detail"]
                .as_str()
                .unwrap()
                .contains("guard fired"),
            "{}",
            ex.json()
        );
        let j = dev.journal();
        assert!(j.iter().any(|l| l == "<break>"), "{j:?}");
        assert!(has_line(&j, ROLLBACK), "{j:?}");
        assert!(!has_line(&dev.running(), CHANGE));
        assert_eq!(b.exec(&id, json!(["show clock"])).status, 200);
    }
}

#[test]
fn a_dead_session_rolls_back_on_a_new_connection_only_with_reopen() {
    for (telnet, reopen) in [(false, false), (false, true), (true, false), (true, true)] {
        let dev = Dev::start(telnet);
        let b = broker("");
        let id = dev.open(&b);
        assert_eq!(config(&b, &id, json!([CHANGE])).status, 200);
        let mut body = json!({"timeout": 2, "rollback": {"config": [ROLLBACK]}});
        if reopen {
            body["reopen"] = dev.login();
        }
        assert_eq!(arm(&b, &id, body).status, 201);
        // The device drops the connection.
        let _ = b.exec(&id, json!(["show drop"]));
        wait_until(Duration::from_secs(5), || {
            !b.status(&id)["alive"].as_bool().unwrap()
        });
        let want = if reopen {
            "rolled_back"
        } else {
            "rollback_impossible"
        };
        let g = wait_state(&b, &id, want, Duration::from_secs(8));
        assert_eq!(g["result"]["reopened"], reopen, "{g}");
        assert_eq!(
            has_line(&dev.running(), CHANGE),
            !reopen,
            "{:?}",
            dev.running()
        );
        // The dead session is deletable once its guard ended.
        assert_eq!(b.delete(&format!("/session/{id}")).status, 204);
    }
}

#[test]
fn device_revert_restores_when_authorization_locks_the_broker_out() {
    // A device minute of 3 s: the guard (2 s) fires before the device's timer (2 min = 6 s).
    let dev = Dev::with_minute(true, Duration::from_secs(3));
    let b = broker("");
    let id = dev.open(&b);
    // Without an archive path, IOS cannot arm its timer: 409, and no guard.
    let r = arm(
        &b,
        &id,
        json!({"timeout": 2, "rollback": {"config": [ROLLBACK]}, "device_revert": true}),
    );
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["detail"].as_str().unwrap().contains("archive"));
    assert_eq!(b.get(&format!("/session/{id}/guard")).status, 404);
    assert_eq!(b.status(&id)["mode"], "enable");
    assert_eq!(
        config(&b, &id, json!(["archive", " path flash:rollback"])).status,
        200
    );
    let r = arm(
        &b,
        &id,
        json!({"timeout": 2, "rollback": {"config": ["no aaa authorization commands 15 default group tacacs+"]}, "device_revert": true}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["device_revert"]["armed"], true);
    let minutes = r.json()["device_revert"]["minutes"].as_u64().unwrap();
    assert_eq!(minutes, 2);
    // The change locks configuration out (no TACACS server answers).
    let aaa = "aaa authorization commands 15 default group tacacs+";
    assert_eq!(config(&b, &id, json!([aaa])).status, 200);
    assert!(has_line(&dev.running(), aaa));
    // The broker's rollback is refused by the device...
    let g = wait_state(&b, &id, "rollback_failed", Duration::from_secs(6));
    assert_eq!(g["device_revert"]["confirmed"], false, "{g}");
    // ...and the device's own timer restores the configuration.
    assert!(has_line(&dev.running(), aaa));
    assert!(wait_until(Duration::from_secs(8), || !has_line(
        &dev.running(),
        aaa
    )));
    assert!(dev.journal().iter().any(|l| l == "<revert>"));
}

#[test]
fn device_revert_is_confirmed_with_the_guard_and_refused_where_the_platform_has_none() {
    let dev = Dev::start(true);
    let b = broker("");
    let id = dev.open(&b);
    assert_eq!(
        config(&b, &id, json!(["archive", " path flash:rollback"])).status,
        200
    );
    let r = arm(
        &b,
        &id,
        json!({"timeout": 30, "rollback": [ROLLBACK], "device_revert": {"minutes": 3}}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(config(&b, &id, json!([CHANGE])).status, 200);
    assert_eq!(
        b.post(&format!("/session/{id}/guard/confirm"), &json!({}))
            .status,
        200
    );
    let mut g = Value::Null;
    wait_until(Duration::from_secs(5), || {
        g = guard_state(&b, &id);
        g["device_revert"]["confirmed"] == true
    });
    assert_eq!(g["device_revert"]["confirmed"], true, "{g}");
    assert!(has_line(&dev.journal(), "configure confirm"));
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        has_line(&dev.running(), CHANGE),
        "the device reverted after confirm"
    );
    // A platform without a revert timer: 422 naming the field.
    let lin = TelnetDevice::start(DeviceOptions {
        persona: "linux".into(),
        password: PASSWORD.into(),
        ..Default::default()
    })
    .unwrap();
    let r = b.post(
        "/telnet-session",
        &json!({"host": "127.0.0.1", "port": lin.port(), "username": "admin", "password": PASSWORD, "device_type": "linux", "timeout": 10}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let lid = r.json()["session_id"].as_str().unwrap().to_string();
    let r = arm(
        &b,
        &lid,
        json!({"timeout": 30, "rollback": ["true"], "device_revert": true}),
    );
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["detail"][0]["loc"],
        json!(["body", "device_revert"])
    );
    let types = b.get("/device-types").json();
    let ios = types["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "cisco_ios")
        .unwrap()
        .clone();
    assert!(ios["device_revert"]["description"]
        .as_str()
        .unwrap()
        .contains("revert timer"));
}

#[test]
fn the_policy_refuses_a_rollback_at_arm_time() {
    let dev = Dev::start(false);
    let b = broker("denied_commands: ['^reload']\n");
    let id = dev.open(&b);
    let r = arm(&b, &id, json!({"timeout": 5, "rollback": ["reload in 1"]}));
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(b.get(&format!("/session/{id}/guard")).status, 404);
    assert!(!dev.journal().iter().any(|l| l.contains("reload")));
    // Bad bodies: 422 naming the field.
    for (body, field) in [
        (json!({"rollback": [ROLLBACK]}), "timeout"),
        (json!({"timeout": 5}), "rollback"),
        (json!({"timeout": 5, "rollback": 7}), "rollback"),
        (
            json!({"timeout": 5, "rollback": [ROLLBACK], "on_broker_exit": "maybe"}),
            "on_broker_exit",
        ),
        (
            json!({"timeout": 5, "rollback": [ROLLBACK], "reopen": {"host": "x"}}),
            "reopen",
        ),
    ] {
        let r = arm(&b, &id, body.clone());
        assert_eq!(
            r.status,
            422,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let d = r.json()["detail"].to_string();
        assert!(d.contains(&format!("\"{field}\"")), "{body}: {d}");
    }
}

#[test]
fn broker_exit_rolls_back_or_keeps_and_the_next_start_reports_it() {
    let dev = Dev::start(false);
    let dir = tmpdir("guard-exit");
    let yaml = format!("state_dir: {}\n", dir.display());
    // on_broker_exit: rollback (the default).
    {
        let b = broker(&yaml);
        let id = dev.open(&b);
        assert_eq!(config(&b, &id, json!([CHANGE])).status, 200);
        assert_eq!(
            arm(
                &b,
                &id,
                json!({"timeout": 300, "rollback": {"config": [ROLLBACK]}})
            )
            .status,
            201
        );
        drop(b);
        assert!(!has_line(&dev.running(), CHANGE), "{:?}", dev.running());
    }
    // keep: the change stays, and the next start reports the guard.
    {
        let b = broker(&yaml);
        assert_eq!(b.get("/guards").json()["previous_run"], json!([]));
        let id = dev.open(&b);
        assert_eq!(config(&b, &id, json!([CHANGE])).status, 200);
        let body =
            json!({"timeout": 300, "rollback": {"config": [ROLLBACK]}, "on_broker_exit": "keep"});
        assert_eq!(arm(&b, &id, body).status, 201);
        drop(b);
        assert!(has_line(&dev.running(), CHANGE));
        let text = std::fs::read_to_string(dir.join("guards.json")).unwrap();
        assert!(text.contains(&id) && !text.contains(PASSWORD), "{text}");
        let b = broker(&yaml);
        let prev = b.get("/guards").json()["previous_run"].clone();
        assert_eq!(prev[0]["session_id"], id, "{prev}");
        assert_eq!(prev[0]["device_revert"]["armed"], false);
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Deadline to the first rollback line on the device, over 20 guards (printed, not asserted
/// beyond the 1 s promise).
#[test]
fn fire_time_error_over_20_runs() {
    let dev = Dev::start(false);
    let b = broker("");
    let id = dev.open(&b);
    let mut errs = Vec::new();
    for i in 0..20 {
        let line = format!("no interface Loopback{}", 100 + i);
        let sent = Instant::now();
        let r = arm(
            &b,
            &id,
            json!({"timeout": 0.5_f64.max(1.0), "rollback": {"config": [line.clone()]}}),
        );
        assert_eq!(r.status, 201);
        let deadline = sent + Duration::from_secs(1);
        assert!(wait_until(Duration::from_secs(5), || has_line(
            &dev.journal(),
            &line
        )));
        let seen = Instant::now();
        errs.push(seen.saturating_duration_since(deadline).as_secs_f64() * 1000.0);
        wait_state(&b, &id, "rolled_back", Duration::from_secs(5));
    }
    errs.sort_by(f64::total_cmp);
    let (median, max) = (errs[errs.len() / 2], errs[errs.len() - 1]);
    println!("guard fire time error (deadline -> rollback line journaled): median {median:.1} ms, max {max:.1} ms over 20 runs");
    assert!(max < 1000.0, "{errs:?}");
}

fn persona_device(persona: &str, minute: Duration) -> TelnetDevice {
    TelnetDevice::start(DeviceOptions {
        persona: persona.into(),
        password: PASSWORD.into(),
        start_privileged: true,
        minute,
        ..Default::default()
    })
    .unwrap()
}

fn open_typed(b: &TestBroker, dev: &TelnetDevice, device_type: &str) -> String {
    let r = b.post(
        "/telnet-session",
        &json!({"host": "127.0.0.1", "port": dev.port(), "username": "admin", "password": PASSWORD, "device_type": device_type, "timeout": 10}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["session_id"].as_str().unwrap().to_string()
}

/// Junos: while the guard keeps the device's timer armed, the broker's commits are
/// `commit confirmed`, so the device rolls the change back by itself unless confirmed.
#[test]
fn junos_commits_are_confirmed_commits_while_the_device_timer_is_armed() {
    let change = "set snmp location guard-lab";
    for confirm in [false, true] {
        let dev = persona_device("juniper_junos", Duration::from_secs(1));
        let b = broker("");
        let id = open_typed(&b, &dev, "juniper_junos");
        let r = arm(
            &b,
            &id,
            json!({"timeout": 60, "rollback": {"config": ["rollback 1"], "save": true}, "device_revert": {"minutes": 3}}),
        );
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let r = b.post(
            &format!("/session/{id}/exec"),
            &json!({"config": [change], "save": true}),
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let j = dev.journal();
        assert!(has_line(&j, "commit confirmed 3"), "{j:?}");
        assert!(
            !has_line(&j, "commit"),
            "a plain commit would confirm the timer: {j:?}"
        );
        assert!(has_line(&dev.running_config(), change));
        if confirm {
            let r = b.post(&format!("/session/{id}/guard/confirm"), &json!({}));
            assert_eq!(r.status, 200);
            assert!(wait_until(Duration::from_secs(5), || {
                guard_state(&b, &id)["device_revert"]["confirmed"] == true
            }));
            assert!(has_line(&dev.journal(), "commit"));
        }
        // The device's own timer (3 device minutes = 3 s) restores unless confirmed.
        std::thread::sleep(Duration::from_secs(4));
        assert_eq!(
            has_line(&dev.running_config(), change),
            confirm,
            "{:?}",
            dev.journal()
        );
        assert_eq!(dev.journal().iter().any(|l| l == "<revert>"), !confirm);
    }
}

#[test]
fn eos_and_xr_arm_their_device_timers() {
    for (persona, arm_line, confirm_line) in [
        (
            "arista_eos",
            "commit timer 00:05:00",
            "configure session netdev-broker-guard commit",
        ),
        ("cisco_xr", "commit confirmed minutes 5", "commit"),
    ] {
        let dev = persona_device(persona, Duration::from_secs(60));
        let b = broker("");
        let id = open_typed(&b, &dev, persona);
        let r = arm(
            &b,
            &id,
            json!({"timeout": 60, "rollback": ["show clock"], "device_revert": {"minutes": 5}}),
        );
        assert_eq!(
            r.status,
            201,
            "{persona}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            has_line(&dev.journal(), arm_line),
            "{persona}: {:?}",
            dev.journal()
        );
        let timer = dev.revert_timer();
        assert!(timer.is_some(), "{persona}: no timer running");
        assert_eq!(
            b.post(&format!("/session/{id}/guard/confirm"), &json!({}))
                .status,
            200
        );
        assert!(
            wait_until(Duration::from_secs(5), || dev.revert_timer().is_none()),
            "{persona}: {:?}",
            dev.journal()
        );
        assert!(
            has_line(&dev.journal(), confirm_line),
            "{persona}: {:?}",
            dev.journal()
        );
    }
}

#[test]
fn probe_ok_then_a_failed_probe_rolls_back() {
    let dev = Dev::start(false);
    let b = broker("");
    let id = dev.open(&b);
    assert_eq!(config(&b, &id, json!([CHANGE])).status, 200);
    let mut probe = dev.login();
    probe["command"] = json!("show clock");
    let r = arm(
        &b,
        &id,
        json!({"timeout": 60, "rollback": {"config": [ROLLBACK]}, "probe": probe}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["probe"], true);
    let sessions = || b.get("/sessions").json()["count"].as_u64().unwrap();
    let p = b.post(
        &format!("/session/{id}/guard/probe"),
        &json!({"rollback_on_failure": true}),
    );
    assert_eq!(p.status, 200, "{}", String::from_utf8_lossy(&p.body));
    assert_eq!(p.json()["login"], "ok", "{}", p.json());
    assert_eq!(p.json()["guard"]["state"], "armed");
    assert_eq!(p.json()["guard"]["last_probe"]["login"], "ok");
    assert_eq!(sessions(), 1);
    // The new AAA config refuses the login: the probe fails and the guard rolls back at once.
    let bad = json!({"timeout": 60, "rollback": {"config": [ROLLBACK]}, "probe": {"host": "127.0.0.1", "port": dev.port(), "username": "admin", "password": "wrong-password", "timeout": 5}});
    assert_eq!(b.delete(&format!("/session/{id}/guard")).status, 200);
    assert_eq!(arm(&b, &id, bad).status, 201);
    let p = b.post(
        &format!("/session/{id}/guard/probe"),
        &json!({"rollback_on_failure": true}),
    );
    assert_eq!(p.status, 200, "{}", String::from_utf8_lossy(&p.body));
    let v = p.json();
    assert_eq!(v["login"], "failed", "{v}");
    assert_eq!(v["status"], 401, "{v}");
    assert_eq!(v["guard"]["state"], "rolled_back", "{v}");
    assert_eq!(v["guard"]["fired_by"], "probe failed");
    assert!(!has_line(&dev.running(), CHANGE));
    assert_eq!(sessions(), 1);
    // No probe stored: 409.
    assert_eq!(
        arm(&b, &id, json!({"timeout": 60, "rollback": [ROLLBACK]})).status,
        201
    );
    assert_eq!(
        b.post(&format!("/session/{id}/guard/probe"), &json!({}))
            .status,
        409
    );
}

#[test]
fn an_exec_sent_during_the_rollback_waits_for_it() {
    let dev = Dev::start(true);
    let b = broker("");
    let id = dev.open(&b);
    assert_eq!(config(&b, &id, json!([CHANGE])).status, 200);
    // A slow rollback: the device takes its time with `show slow`.
    let r = arm(
        &b,
        &id,
        json!({"timeout": 1, "rollback": {"commands": ["show slow 3"], "config": [ROLLBACK]}}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert!(wait_until(Duration::from_secs(5), || guard_state(&b, &id)
        ["state"]
        == "rolling_back"));
    let r = b.exec(&id, json!(["show clock"]));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(guard_state(&b, &id)["state"], "rolled_back");
    let j = dev.journal();
    let rb = j.iter().position(|l| l.trim() == ROLLBACK).unwrap();
    let clock = j.iter().rposition(|l| l == "show clock").unwrap();
    assert!(rb < clock, "{j:?}");
}

/// No config line is typed outside config mode: when the device refuses `configure terminal`
/// (AAA command authorization without a server), the exec fails and its lines are not sent.
#[test]
fn config_lines_are_not_sent_when_the_device_refuses_config_mode() {
    let dev = Dev::start(true);
    let b = broker("");
    let id = dev.open(&b);
    let aaa = "aaa authorization commands 15 default group tacacs+";
    assert_eq!(config(&b, &id, json!([aaa])).status, 200);
    let r = config(&b, &id, json!(["logging host 192.0.2.77"]));
    assert_eq!(r.status, 500, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("configure terminal"),
        "{}",
        r.json()
    );
    let j = dev.journal();
    assert!(!j.iter().any(|l| l.contains("192.0.2.77")), "{j:?}");
}

/// Confirmed while the safety session is dead: the device's timer is confirmed on a new
/// connection with the guard's reopen login, so the device keeps the change.
#[test]
fn confirm_with_a_dead_session_confirms_the_device_timer_on_a_new_connection() {
    let dev = Dev::with_minute(false, Duration::from_secs(2));
    let b = broker("");
    let id = dev.open(&b);
    assert_eq!(
        config(&b, &id, json!(["archive", " path flash:rollback"])).status,
        200
    );
    let r = arm(
        &b,
        &id,
        json!({"timeout": 60, "rollback": {"config": [ROLLBACK]}, "device_revert": {"minutes": 2}, "reopen": dev.login()}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(config(&b, &id, json!([CHANGE])).status, 200);
    let _ = b.exec(&id, json!(["show drop"]));
    assert!(wait_until(Duration::from_secs(5), || !b.status(&id)
        ["alive"]
        .as_bool()
        .unwrap()));
    assert_eq!(
        b.post(&format!("/session/{id}/guard/confirm"), &json!({}))
            .status,
        200
    );
    assert!(
        wait_until(Duration::from_secs(5), || {
            guard_state(&b, &id)["device_revert"]["confirmed"] == true
        }),
        "{}",
        guard_state(&b, &id)
    );
    std::thread::sleep(Duration::from_secs(5));
    assert!(has_line(&dev.running(), CHANGE), "{:?}", dev.journal());
    assert!(!dev.journal().iter().any(|l| l == "<revert>"));
}

/// A session that is up but stuck (its prompt lost after a command that never ends) rolls back
/// on a new connection when the guard has one.
#[test]
fn a_stuck_session_rolls_back_on_a_new_connection() {
    let dev = Dev::start(false);
    let b = broker("");
    let id = dev.open(&b);
    assert_eq!(config(&b, &id, json!([CHANGE])).status, 200);
    let body = json!({"timeout": 3, "rollback": {"config": [ROLLBACK], "timeout": 2}, "reopen": dev.login()});
    assert_eq!(arm(&b, &id, body).status, 201);
    // The command never ends; its timeout leaves the session waiting for a prompt.
    let r = b.exec_timeout(&id, json!(["show hang"]), 0.5);
    assert_eq!(r.status, 500, "{}", String::from_utf8_lossy(&r.body));
    let g = wait_state(&b, &id, "rolled_back", Duration::from_secs(15));
    assert_eq!(g["result"]["reopened"], true, "{g}");
    assert!(!has_line(&dev.running(), CHANGE), "{:?}", dev.journal());
    assert!(b.status(&id)["dead_reason"]
        .as_str()
        .unwrap()
        .contains("stuck"));
}

/// Shutdown while an exec runs on a session with an armed guard: the command is interrupted
/// first, and the rollback is typed at the prompt.
#[test]
fn broker_exit_interrupts_a_running_exec_before_the_rollback() {
    let dev = Dev::start(true);
    let b = broker("");
    let id = dev.open(&b);
    assert_eq!(config(&b, &id, json!([CHANGE])).status, 200);
    assert_eq!(
        arm(
            &b,
            &id,
            json!({"timeout": 300, "rollback": {"config": [ROLLBACK]}})
        )
        .status,
        201
    );
    let running = exec_in_background(
        b.addr,
        &id,
        &json!({"commands": ["show hang"], "timeout": 60}).to_string(),
    );
    std::thread::sleep(Duration::from_millis(500));
    drop(b);
    let _ = running.join();
    let j = dev.journal();
    let brk = j
        .iter()
        .position(|l| l == "<break>")
        .unwrap_or_else(|| panic!("{j:?}"));
    assert!(j[brk..].iter().any(|l| l.trim() == ROLLBACK), "{j:?}");
    assert!(!has_line(&dev.running(), CHANGE), "{:?}", dev.running());
}

/// On a commit-model platform a rollback's config lines need `"save": true` (a commit), or
/// they would never take effect: 422 at arm time.
#[test]
fn a_commit_model_rollback_without_save_is_refused() {
    let dev = persona_device("juniper_junos", Duration::from_secs(60));
    let b = broker("");
    let id = open_typed(&b, &dev, "juniper_junos");
    let r = arm(
        &b,
        &id,
        json!({"timeout": 60, "rollback": {"config": ["rollback 1"]}}),
    );
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["detail"][0]["loc"],
        json!(["body", "rollback", "save"])
    );
    let lin = TelnetDevice::start(DeviceOptions {
        persona: "linux".into(),
        password: PASSWORD.into(),
        ..Default::default()
    })
    .unwrap();
    let lid = open_typed(&b, &lin, "linux");
    let r = arm(
        &b,
        &lid,
        json!({"timeout": 60, "rollback": {"config": ["x"]}}),
    );
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
}
