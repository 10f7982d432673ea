//! Idle sessions: the session thread sleeps until its inbox, its device or its own keepalive
//! wakes it, and a connection the device drops is seen at once.

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

/// Context switches of this process's thread named `name` (voluntary + involuntary): each
/// wake-up of a blocked thread is one.
fn switches(name: &str) -> u64 {
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let status = std::fs::read_to_string(t.path().join("status")).unwrap();
        return status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
    }
    panic!("no thread named {name}");
}

#[test]
fn an_idle_session_thread_sleeps_until_something_happens() {
    let dev = device();
    // No CLI keepalive: nothing is due, so nothing may wake the thread.
    let b = broker("keepalive_interval: 0");
    let id = b.open(dev.port(), json!({}));
    let thread = format!("sess-{}", &id[..8]);
    // Let the open's last wake-ups settle.
    std::thread::sleep(Duration::from_millis(300));
    let before = switches(&thread);
    // Longer than any timer an idle session ever had (a connection check every 15 s).
    std::thread::sleep(Duration::from_secs(16));
    let idle = switches(&thread) - before;
    assert!(
        idle <= 1,
        "the idle session thread woke {idle} times in 16 s"
    );
    // The inbox still wakes it at once.
    let t = Instant::now();
    let r = b.exec(&id, json!(["show clock"]));
    assert_eq!(r.status, 200);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    // With a CLI keepalive every second, it wakes for those (and answers them).
    let b = broker("keepalive_interval: 1");
    let id = b.open(dev.port(), json!({}));
    let before = b.status(&id)["keepalives"].as_u64().unwrap();
    assert!(wait_until(Duration::from_secs(5), || b.status(&id)
        ["keepalives"]
        .as_u64()
        .unwrap()
        >= before + 2));
}

#[test]
fn a_connection_the_device_drops_is_seen_dead_at_once() {
    // No keepalive at all: only the connection itself can tell.
    let b = broker("keepalive_interval: 0");
    let dev = device();
    let id = b.open(dev.port(), json!({}));
    let tel = telnet_device();
    let tid = b.post(
        "/telnet-session",
        &json!({"host": "127.0.0.1", "port": tel.port(), "username": "admin", "password": PASSWORD,
                "enable_password": ENABLE}),
    );
    assert_eq!(tid.status, 201, "{}", String::from_utf8_lossy(&tid.body));
    let tid = tid.json()["session_id"].as_str().unwrap().to_string();
    let t = Instant::now();
    dev.kill_all();
    tel.kill_all();
    assert!(wait_until(Duration::from_secs(5), || {
        b.status(&id)["alive"] == false && b.status(&tid)["alive"] == false
    }));
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "seen dead after {:?} (the idle timer was 15 s)",
        t.elapsed()
    );
    assert_eq!(b.exec(&id, json!(["show clock"])).status, 410);
    assert_eq!(b.exec(&tid, json!(["show clock"])).status, 410);
}
