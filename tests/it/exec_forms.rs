//! Issue 3 features over the HTTP API against the fake SSH device: exec item forms (expect,
//! interactions, hidden answers), config blocks with save, stop_on_error, failure flags,
//! pagers answered when paging stays on, CLI keepalive against the device's idle timeout,
//! device types and the generic profile.

use crate::support::*;
use fake_device::{DeviceConfig, FakeDevice};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn device() -> FakeDevice {
    FakeDevice::start(DeviceConfig {
        password: PASSWORD.into(),
        ..Default::default()
    })
}

fn results(r: &Resp) -> Vec<Value> {
    r.json()["results"].as_array().cloned().unwrap_or_default()
}

fn commands(r: &Resp) -> Vec<String> {
    results(r)
        .iter()
        .map(|x| x["command"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The lines the device received after the first occurrence of `marker`.
fn lines_after(dev: &FakeDevice, marker: &str) -> Vec<String> {
    let all = dev.lines_received();
    match all.iter().position(|l| l == marker) {
        Some(i) => all[i + 1..].to_vec(),
        None => panic!("{marker:?} never received: {all:?}"),
    }
}

#[test]
fn config_block_enters_sends_leaves_and_saves() {
    let dev = device();
    let b = broker("");
    let id = b.open(dev.port(), json!({}));
    let r = b.post(
        &format!("/session/{id}/exec"),
        &json!({"config": ["interface GigabitEthernet1", "description uplink to core"], "save": true,
                "commands": ["show running-config"]}),
    );
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(
        commands(&r),
        [
            "configure terminal",
            "interface GigabitEthernet1",
            "description uplink to core",
            "end",
            "write memory",
            "show running-config"
        ]
    );
    assert!(
        results(&r).iter().all(|x| x["failed"] == false),
        "{:?}",
        r.json()
    );
    assert!(r.json()["outputs"]["write memory"]
        .as_str()
        .unwrap()
        .contains("[OK]"));
    assert!(r.json()["outputs"]["show running-config"]
        .as_str()
        .unwrap()
        .contains(" description uplink to core"));
    assert_eq!(b.status(&id)["mode"], "enable");
    // Already in config mode: no second `configure terminal`, and the session is left there.
    b.exec(&id, json!(["configure terminal"]));
    let r = b.post(
        &format!("/session/{id}/exec"),
        &json!({"config": ["hostname edge-1"]}),
    );
    assert_eq!(commands(&r), ["hostname edge-1"]);
    assert_eq!(b.status(&id)["mode"], "config");
    // The prompt was learned again after the hostname changed.
    let r = b.exec(&id, json!(["end", "show clock"]));
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(b.status(&id)["mode"], "enable");
}

#[test]
fn stop_on_error_stops_leaves_config_mode_and_answers_500() {
    let dev = device();
    let b = broker("");
    let id = b.open(dev.port(), json!({}));
    let body = json!({"config": ["interface GigabitEthernet2", "bogus-command 1", "description never sent"],
                      "save": true, "stop_on_error": true, "commands": ["show clock"]});
    let r = b.post(&format!("/session/{id}/exec"), &body);
    assert_eq!(r.status, 500, "{:?}", r.json());
    let v = r.json();
    assert!(
        v["detail"].as_str().unwrap().contains("bogus-command 1"),
        "{v}"
    );
    assert_eq!(v["command"], "bogus-command 1");
    assert_eq!(
        commands(&r),
        [
            "configure terminal",
            "interface GigabitEthernet2",
            "bogus-command 1",
            "end"
        ]
    );
    let res = results(&r);
    assert_eq!(res[2]["failed"], true);
    assert!(res[2]["error"]
        .as_str()
        .unwrap()
        .starts_with("% Invalid input detected"));
    let sent = lines_after(&dev, "bogus-command 1");
    assert_eq!(
        sent,
        ["end"],
        "nothing after the failed line but leaving config mode"
    );
    assert_eq!(b.status(&id)["mode"], "enable");

    // Without stop_on_error a failure is reported and everything runs (the seed's behaviour).
    let r = b.post(
        &format!("/session/{id}/exec"),
        &json!({"commands": ["show nonsense", "show clock"]}),
    );
    assert_eq!(r.status, 200);
    let res = results(&r);
    assert_eq!(res[0]["failed"], true);
    assert_eq!(res[1]["failed"], false);
    assert!(r.json()["outputs"]["show nonsense"]
        .as_str()
        .unwrap()
        .contains("% Invalid input"));
    // With it, plain commands stop too.
    let r = b.post(
        &format!("/session/{id}/exec"),
        &json!({"commands": ["show nonsense", "show clock"], "stop_on_error": true}),
    );
    assert_eq!(r.status, 500);
    assert_eq!(commands(&r), ["show nonsense"]);
}

#[test]
fn expect_ends_the_read_and_keepalive_never_answers_the_open_question() {
    let dev = device();
    let b = broker("");
    let id = b.open(dev.port(), json!({"keepalive_interval": 1}));
    let r = b.exec(&id, json!([{"cmd": "reload", "expect": "\\[confirm\\]"}]));
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(results(&r)[0]["ended_by"], "expect");
    assert!(r.json()["outputs"]["reload"]
        .as_str()
        .unwrap()
        .contains("Proceed with reload? [confirm]"));
    // Idle for several keepalive intervals: nothing may be sent into the open question.
    std::thread::sleep(Duration::from_millis(3500));
    assert!(
        lines_after(&dev, "reload").is_empty(),
        "{:?}",
        dev.lines_received()
    );
    assert_eq!(b.status(&id)["alive"], true);
    // The next item answers it ("n" cancels), and the prompt is back.
    let r = b.exec(&id, json!(["n", "show clock"]));
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(lines_after(&dev, "reload"), ["n", "show clock"]);
    // Back at the prompt, keepalives resume.
    assert!(wait_until(Duration::from_secs(5), || {
        lines_after(&dev, "show clock").iter().any(|l| l.is_empty())
    }));
}

#[test]
fn interactions_answer_in_order_and_hidden_answers_stay_out_of_logs() {
    let dev = FakeDevice::start(DeviceConfig {
        password: PASSWORD.into(),
        enable_password: Some(ENABLE.into()),
        start_privileged: false,
        ..Default::default()
    });
    let dir = tmpdir("hidden");
    let b = broker(&format!("cmd_log_dir: {}", dir.display()));
    // No enable password at open: the session stays in user mode.
    let id = b.open(dev.port(), json!({}));
    assert_eq!(b.status(&id)["mode"], "user");
    let r = b.exec(
        &id,
        json!([{"cmd": "enable", "interactions": [
            {"expect": "[Pp]assword:", "send": ENABLE, "hidden": true},
            {"expect": "never asked", "send": "x"}]}]),
    );
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(results(&r)[0]["answered"], 1);
    assert_eq!(b.status(&id)["mode"], "enable");
    assert!(!String::from_utf8_lossy(&r.body).contains(ENABLE));
    // Multi-step dialogue: the copy question answered, then the prompt ends it.
    let r = b.exec(
        &id,
        json!([{"cmd": "copy running-config startup-config",
                "interactions": [{"expect": "Destination filename \\[startup-config\\]\\?", "send": ""}]}]),
    );
    assert_eq!(r.status, 200);
    assert!(r.json()["outputs"]["copy running-config startup-config"]
        .as_str()
        .unwrap()
        .contains("[OK]"));
    b.delete(&id);
    let log = std::fs::read_to_string(dir.join(format!("{id}.jsonl"))).unwrap();
    assert!(log.contains("\"enable\""));
    assert!(!log.contains(ENABLE));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn pagers_are_answered_and_removed_when_paging_stays_on() {
    let dev = device();
    let b = broker("");
    let reference = b.open(dev.port(), json!({}));
    let want = b.exec(&reference, json!(["show long 100"])).json()["outputs"]["show long 100"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(want.lines().count(), 100);
    // The generic profile sends no `terminal length 0`: the device pages every 24 lines.
    let id = b.open(dev.port(), json!({"device_type": "dell_os10"}));
    let r = b.exec(&id, json!(["show long 100"]));
    assert_eq!(r.status, 200);
    let got = r.json()["outputs"]["show long 100"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!got.contains("More"), "{got}");
    assert_eq!(got, want);
}

#[test]
fn device_types_list_every_netmiko_name_with_its_profile() {
    let dev = device();
    let b = broker("");
    let r = b.get("/device-types");
    assert_eq!(r.status, 200);
    let v = r.json();
    let names = v["device_types"].as_array().unwrap();
    assert!(names.len() >= 416, "{}", names.len());
    assert_eq!(v["profiles"]["cisco_xe"], "cisco_ios");
    assert_eq!(v["profiles"]["juniper"], "juniper_junos");
    assert_eq!(v["profiles"]["arista_eos_telnet"], "arista_eos");
    assert_eq!(v["profiles"]["dell_os10"], "generic");
    let platforms = v["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 12);
    // A name nobody knows: 422 listing the known ones.
    let r = b.post(
        "/session",
        &json!({"host": "127.0.0.1", "port": dev.port(), "username": "admin", "password": PASSWORD, "device_type": "cisco_iox"}),
    );
    assert_eq!(r.status, 422);
    let d = r.json()["detail"][0].clone();
    assert_eq!(d["loc"], json!(["body", "device_type"]));
    assert!(d["msg"]
        .as_str()
        .unwrap()
        .contains("cisco_ios, cisco_ios_serial"));
    // A Netmiko name without a profile runs on generic, and status says so.
    let id = b.open(dev.port(), json!({"device_type": "DELL_OS10"}));
    let s = b.status(&id);
    assert_eq!(s["platform"], "generic");
    assert_eq!(s["device_type"], "DELL_OS10");
    assert_eq!(s["mode"], "user", "generic never sends enable");
    let r = b.exec(&id, json!(["show clock"]));
    assert_eq!(r.status, 200);
    // The generic profile knows no config mode: a config block is refused before anything is
    // sent to the device.
    let before = dev.lines_received().len();
    let r = b.post(
        &format!("/session/{id}/exec"),
        &json!({"config": ["hostname x"]}),
    );
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["detail"][0]["loc"], json!(["body", "config"]));
    let r = b.post(&format!("/session/{id}/exec"), &json!({"save": true}));
    assert_eq!(r.json()["detail"][0]["loc"], json!(["body", "save"]));
    assert_eq!(dev.lines_received().len(), before);
}

#[test]
fn keepalive_outlives_the_device_idle_timeout_only_when_on() {
    let dev = FakeDevice::start(DeviceConfig {
        password: PASSWORD.into(),
        exec_timeout_secs: Some(3),
        ..Default::default()
    });
    let b = broker("keepalive_interval: 0\nreaper_interval: 1");
    let kept = b.open(
        dev.port(),
        json!({"keepalive_interval": 1, "session_timeout": 0}),
    );
    let idle = b.open(dev.port(), json!({}));
    assert_eq!(b.status(&kept)["keepalive_interval"], 1);
    assert_eq!(b.status(&idle)["keepalive_interval"], 0);
    // The device hangs up on the idle one after 3 s; the broker notices within a tick.
    assert!(wait_until(Duration::from_secs(20), || b.status(&idle)
        ["alive"]
        == false));
    let t = Instant::now();
    let r = b.exec(&idle, json!(["show clock"]));
    assert_eq!(r.status, 410);
    assert!(t.elapsed() < Duration::from_secs(1));
    // Well past the device's idle timeout, the kept one is alive and works.
    std::thread::sleep(Duration::from_secs(2));
    let s = b.status(&kept);
    assert_eq!(s["alive"], true, "{s}");
    assert!(s["keepalives"].as_u64().unwrap() >= 3, "{s}");
    assert!(s["last_keepalive"].is_string());
    // Keepalives do not count as use.
    assert!(s["idle_seconds"].as_f64().unwrap() >= 4.0, "{s}");
    let r = b.exec(&kept, json!(["show clock"]));
    assert_eq!(r.status, 200, "{:?}", r.json());
}

#[test]
fn a_device_killed_while_idle_is_dead_within_one_interval() {
    let dev = device();
    let b = broker("keepalive_interval: 2");
    let id = b.open(dev.port(), json!({}));
    assert_eq!(b.status(&id)["keepalive_interval"], 2);
    dev.kill_all();
    let t = Instant::now();
    assert!(wait_until(Duration::from_secs(10), || b.status(&id)
        ["alive"]
        == false));
    assert!(
        t.elapsed() <= Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
    let r = b.exec(&id, json!(["show clock"]));
    assert_eq!(r.status, 410);
}

#[test]
fn keepalives_do_not_keep_a_session_from_the_reaper() {
    let dev = device();
    let b = broker("keepalive_interval: 1\nreaper_interval: 1");
    let id = b.open(dev.port(), json!({"session_timeout": 2}));
    assert!(wait_until(Duration::from_secs(10), || {
        b.get(&format!("/session/{id}/status")).status == 404
    }));
}

#[test]
fn enable_level_sends_the_platforms_level_command() {
    let dev = FakeDevice::start(DeviceConfig {
        password: PASSWORD.into(),
        enable_password: Some(ENABLE.into()),
        start_privileged: false,
        ..Default::default()
    });
    let b = broker("");
    let id = b.open(
        dev.port(),
        json!({"enable_password": ENABLE, "enable_level": "15"}),
    );
    assert_eq!(b.status(&id)["mode"], "enable");
    assert!(
        dev.lines_received().iter().any(|l| l == "enable 15"),
        "{:?}",
        dev.lines_received()
    );
    let r = b.post(
        "/session",
        &json!({"host": "127.0.0.1", "port": dev.port(), "username": "admin", "password": PASSWORD, "enable_level": 16}),
    );
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["detail"][0]["loc"],
        json!(["body", "enable_level"])
    );
}

#[test]
fn the_seeds_copy_run_start_example_works_as_written() {
    // The seed waits for "[confirm]"; IOS asks "Destination filename [startup-config]?" instead.
    // The seed's form answers the platform's default-value questions with its newlines.
    let dev = device();
    let b = broker("");
    let id = b.open(dev.port(), json!({}));
    let r = b.exec(
        &id,
        json!([{"cmd": "copy running-config startup-config", "answer": "\\[confirm\\]", "send_newlines": 1}]),
    );
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert!(r.json()["outputs"]["copy running-config startup-config"]
        .as_str()
        .unwrap()
        .contains("[OK]"));
    // The explicit `interactions` form does not: only what was asked is answered.
    let r = b.post(
        &format!("/session/{id}/exec"),
        &json!({"commands": [{"cmd": "copy running-config startup-config",
                              "interactions": [{"expect": "\\[confirm\\]", "send": ""}]}], "timeout": 1}),
    );
    assert_eq!(r.status, 500, "{:?}", r.json());
    assert!(r.json()["partial_output"]
        .as_str()
        .unwrap()
        .contains("Destination filename"));
}
