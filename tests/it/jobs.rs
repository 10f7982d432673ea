//! Execs as jobs against the fake devices: the synchronous form with its job id, 202 and
//! polling, long-poll, idempotent retries (the device runs a change once), cancel (the device
//! sees the break; later commands are not sent), a client that hung up, retention, the caps,
//! and output read while a command runs.

use crate::support::*;
use fake_device::{DeviceConfig, DeviceOptions, FakeDevice, TelnetDevice};
use serde_json::{json, Value};
use std::io::Write;
use std::time::{Duration, Instant};

fn ssh_device() -> FakeDevice {
    FakeDevice::start(DeviceConfig {
        password: PASSWORD.into(),
        start_privileged: true,
        ..Default::default()
    })
}

fn telnet_device() -> TelnetDevice {
    TelnetDevice::start(DeviceOptions {
        password: PASSWORD.into(),
        start_privileged: true,
        ..Default::default()
    })
    .unwrap()
}

fn open_telnet(b: &TestBroker, port: u16) -> String {
    let r = b.post(
        "/telnet-session",
        &json!({"host": "127.0.0.1", "port": port, "username": "admin", "password": PASSWORD, "timeout": 10}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["session_id"].as_str().unwrap().to_string()
}

fn post_exec(b: &TestBroker, id: &str, body: &Value, headers: &[(&str, &str)]) -> Resp {
    let mut req = format!(
        "POST /session/{id}/exec HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Token: {TOKEN}\r\nContent-Type: application/json\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.to_string();
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    raw(b.addr, req.as_bytes())
}

fn job(b: &TestBroker, id: &str, job: &str, wait: Option<f64>) -> Value {
    let q = wait.map(|w| format!("?wait={w}")).unwrap_or_default();
    let r = b.get(&format!("/session/{id}/jobs/{job}{q}"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// Results without their timings, to compare two runs.
fn shape(v: &Value) -> Value {
    let mut results = v["results"].clone();
    for r in results.as_array_mut().unwrap() {
        r.as_object_mut().unwrap().remove("elapsed_ms");
    }
    json!({"outputs": v["outputs"], "results": results})
}

#[test]
fn sync_exec_is_a_job_and_async_gives_the_same_answer() {
    for telnet in [false, true] {
        let (ssh, tel) = if telnet {
            (None, Some(telnet_device()))
        } else {
            (Some(ssh_device()), None)
        };
        let b = broker("");
        let id = match (&ssh, &tel) {
            (Some(d), _) => b.open(d.port(), json!({})),
            (_, Some(d)) => open_telnet(&b, d.port()),
            _ => unreachable!(),
        };
        let cmds = json!({"commands": ["show version", "show clock"]});
        let sync = post_exec(&b, &id, &cmds, &[]);
        assert_eq!(sync.status, 200);
        let job_id = sync.json()["job_id"].as_str().unwrap().to_string();
        assert_eq!(job_id.len(), 32);
        assert_eq!(sync.header("X-Job-Id"), Some(job_id.as_str()));
        // The job of the synchronous exec holds the same answer.
        let j = job(&b, &id, &job_id, None);
        assert_eq!(j["state"], "done");
        assert_eq!(j["status"], 200);
        assert_eq!(shape(&j)["results"].as_array().unwrap().len(), 2);
        // wait: false and Prefer: respond-async answer 202 at once.
        for (body, headers) in [
            (
                json!({"commands": ["show version", "show clock"], "wait": false}),
                vec![],
            ),
            (cmds.clone(), vec![("Prefer", "respond-async")]),
        ] {
            let r = post_exec(&b, &id, &body, &headers);
            assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
            let jid = r.json()["job_id"].as_str().unwrap().to_string();
            let loc = r.header("Location").unwrap().to_string();
            assert_eq!(loc, format!("/session/{id}/jobs/{jid}"));
            assert_eq!(r.json()["status_url"], loc);
            let done = job(&b, &id, &jid, Some(10.0));
            assert_eq!(done["state"], "done", "{done}");
            // show clock differs between runs; show version does not.
            assert_eq!(
                done["outputs"]["show version"],
                sync.json()["outputs"]["show version"]
            );
            assert_eq!(
                shape(&done)["results"].as_array().unwrap().len(),
                2,
                "{done}"
            );
        }
        let list = b.get(&format!("/session/{id}/jobs")).json();
        assert_eq!(list["count"], 3, "{list}");
        assert_eq!(b.get(&format!("/session/{id}/jobs/ffff")).status, 404);
    }
}

#[test]
fn long_poll_wakes_at_the_end_and_output_is_readable_while_it_runs() {
    let dev = telnet_device();
    let b = broker("");
    let id = open_telnet(&b, dev.port());
    let r = post_exec(
        &b,
        &id,
        &json!({"commands": ["show slow 3"], "wait": false}),
        &[],
    );
    assert_eq!(r.status, 202);
    let jid = r.json()["job_id"].as_str().unwrap().to_string();
    // Output while it runs, from an offset.
    let mut from = 0u64;
    let mut seen = String::new();
    let mut reads = 0;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        let o = b
            .get(&format!("/session/{id}/jobs/{jid}/output?from={from}"))
            .json();
        seen.push_str(o["output"].as_str().unwrap());
        from = o["next"].as_u64().unwrap();
        reads += 1;
        if o["state"] != "running" && o["state"] != "queued" {
            break;
        }
        let st = job(&b, &id, &jid, None);
        if st["state"] == "running" && st["current"].is_object() {
            assert_eq!(st["current"]["command"], "show slow 3");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(reads >= 3, "{reads}");
    assert!(seen.matches('\n').count() >= 3, "{seen:?}");
    // Long-poll: answered at the end, not after the whole wait.
    let r = post_exec(
        &b,
        &id,
        &json!({"commands": ["show slow 1"], "wait": false}),
        &[],
    );
    let jid = r.json()["job_id"].as_str().unwrap().to_string();
    let t = Instant::now();
    let j = job(&b, &id, &jid, Some(30.0));
    let waited = t.elapsed();
    assert_eq!(j["state"], "done");
    let ran = Duration::from_millis(j["elapsed_ms"].as_u64().unwrap());
    let late = waited.saturating_sub(ran);
    println!(
        "long-poll answered {} ms after the job's own run time",
        late.as_millis()
    );
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert!(late < Duration::from_millis(500), "{late:?}");
}

#[test]
fn an_idempotent_retry_runs_the_change_once() {
    let dev = ssh_device();
    let b = broker("");
    let id = b.open(dev.port(), json!({}));
    let body = json!({"config": ["interface Loopback55", " description once"], "commands": ["show slow 1"]});
    let key = [("Idempotency-Key", "push-42")];
    let first = post_exec(
        &b,
        &id,
        &json!({"config": body["config"], "commands": body["commands"], "wait": false}),
        &key,
    );
    assert_eq!(first.status, 202);
    let jid = first.json()["job_id"].as_str().unwrap().to_string();
    // Retried while running: the same job, 202.
    let again = post_exec(
        &b,
        &id,
        &json!({"config": body["config"], "commands": body["commands"], "wait": false}),
        &key,
    );
    assert_eq!(
        again.status,
        202,
        "{}",
        String::from_utf8_lossy(&again.body)
    );
    assert_eq!(again.json()["job_id"], jid.as_str());
    assert_eq!(again.header("Idempotent-Replayed"), Some("true"));
    job(&b, &id, &jid, Some(10.0));
    // Retried after: its answer.
    let after = post_exec(
        &b,
        &id,
        &json!({"config": body["config"], "commands": body["commands"], "wait": false}),
        &key,
    );
    assert_eq!(after.status, 200);
    assert_eq!(after.json()["job_id"], jid.as_str());
    // The same key with another body: 422.
    let other = post_exec(&b, &id, &json!({"commands": ["show clock"]}), &key);
    assert_eq!(
        other.status,
        422,
        "{}",
        String::from_utf8_lossy(&other.body)
    );
    let j = dev.journal();
    let n = j
        .iter()
        .filter(|l| l.trim() == "interface Loopback55")
        .count();
    assert_eq!(n, 1, "{j:?}");
    // The key in the body works the same way.
    let body = json!({"commands": ["show clock"], "idempotency_key": "k-2"});
    let a = post_exec(&b, &id, &body, &[]);
    let c = post_exec(&b, &id, &body, &[]);
    assert_eq!(a.json()["job_id"], c.json()["job_id"]);
    assert_eq!(
        post_exec(
            &b,
            &id,
            &json!({"commands": ["show clock"], "idempotency_key": "bad key"}),
            &[]
        )
        .status,
        422
    );
}

#[test]
fn cancel_interrupts_the_device_and_skips_what_was_not_sent() {
    for telnet in [false, true] {
        let (ssh, tel) = if telnet {
            (None, Some(telnet_device()))
        } else {
            (Some(ssh_device()), None)
        };
        let b = broker("");
        let (id, journal): (String, Box<dyn Fn() -> Vec<String>>) = match (&ssh, &tel) {
            (Some(d), _) => (
                b.open(d.port(), json!({})),
                Box::new(|| ssh.as_ref().unwrap().journal()),
            ),
            (_, Some(d)) => (
                open_telnet(&b, d.port()),
                Box::new(|| tel.as_ref().unwrap().journal()),
            ),
            _ => unreachable!(),
        };
        let r = post_exec(
            &b,
            &id,
            &json!({"commands": ["show slow 30", "show version"], "wait": false, "timeout": 60}),
            &[],
        );
        let jid = r.json()["job_id"].as_str().unwrap().to_string();
        std::thread::sleep(Duration::from_millis(1500));
        let t = Instant::now();
        let c = b.delete(&format!("/session/{id}/jobs/{jid}"));
        assert_eq!(c.status, 200, "{}", String::from_utf8_lossy(&c.body));
        assert!(t.elapsed() < Duration::from_secs(5));
        let v = c.json();
        assert_eq!(v["state"], "cancelled", "{v}");
        assert_eq!(v["status"], 409);
        assert!(v["partial_output"].as_str().unwrap().contains('\n'), "{v}");
        let j = journal();
        assert!(j.iter().any(|l| l == "<break>"), "{j:?}");
        assert!(!j.iter().any(|l| l == "show version"), "{j:?}");
        // The session goes on; a second cancel is 409.
        assert_eq!(b.exec(&id, json!(["show clock"])).status, 200);
        assert_eq!(b.delete(&format!("/session/{id}/jobs/{jid}")).status, 409);
        assert_eq!(
            b.post(&format!("/session/{id}/jobs/{jid}/cancel"), &json!({}))
                .status,
            409
        );
    }
}

#[test]
fn a_client_that_hung_up_finds_its_result_in_the_jobs() {
    let dev = ssh_device();
    let b = broker("");
    let id = b.open(dev.port(), json!({}));
    let body = json!({"commands": ["show slow 1", "show version"]}).to_string();
    let mut s = std::net::TcpStream::connect(b.addr).unwrap();
    write!(
        s,
        "POST /session/{id}/exec HTTP/1.1\r\nHost: x\r\nX-API-Token: {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(s);
    let mut found = Value::Null;
    assert!(
        wait_until(Duration::from_secs(10), || {
            found = b.get(&format!("/session/{id}/jobs")).json();
            found["jobs"][0]["state"] == "done"
        }),
        "{found}"
    );
    let jid = found["jobs"][0]["job_id"].as_str().unwrap();
    let j = job(&b, &id, jid, None);
    assert!(
        j["outputs"]["show version"]
            .as_str()
            .unwrap()
            .contains("Cisco"),
        "{j}"
    );
}

#[test]
fn results_expire_after_job_retention_and_the_caps_hold() {
    let dev = telnet_device();
    let b = broker("job_retention: 1\n");
    let id = open_telnet(&b, dev.port());
    let first = b.exec(&id, json!(["show clock"])).json()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_millis(1500));
    // A new job sweeps the old one out.
    assert_eq!(b.exec(&id, json!(["show clock"])).status, 200);
    let r = b.get(&format!("/session/{id}/jobs/{first}"));
    assert_eq!(r.status, 410, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["detail"]
        .as_str()
        .unwrap()
        .contains("job_retention"));
}

/// 1,000 finished jobs of about 1 MiB each on one session: the per-session caps (100 jobs,
/// 64 MiB) hold and the broker's memory stays bounded.
#[test]
fn a_thousand_one_mib_jobs_stay_within_the_caps() {
    let dev = telnet_device();
    let b = broker("");
    let id = open_telnet(&b, dev.port());
    let rss = || {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap()
    };
    let (mut first, mut recent) = (String::new(), String::new());
    let mut size = 0;
    let mut peak = 0;
    let t = Instant::now();
    for i in 0..1000 {
        let r = b.exec_timeout(&id, json!(["show flood 1"]), 60.0);
        assert_eq!(r.status, 200);
        if i == 0 {
            first = r.json()["job_id"].as_str().unwrap().to_string();
        }
        if i == 800 {
            recent = r.json()["job_id"].as_str().unwrap().to_string();
            size = r.body.len();
        }
        if i % 100 == 99 {
            peak = peak.max(rss());
        }
    }
    let list = b.get(&format!("/session/{id}/jobs")).json();
    let kept = list["count"].as_u64().unwrap();
    // Each kept job holds its answer (about 1.5 MiB here, JSON-escaped) and the last 64 KiB of
    // its raw output: the byte cap binds before the count cap.
    assert!((10..=100).contains(&kept), "{kept}");
    // Dropped: 410 with why. The ids of the last 256 dropped jobs are remembered (job 800 is one,
    // with at most 100 kept); older ones are forgotten too, and unknown again (404).
    let r = b.get(&format!("/session/{id}/jobs/{recent}"));
    assert_eq!(r.status, 410, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["detail"].as_str().unwrap().contains("100 jobs"));
    assert_eq!(b.get(&format!("/session/{id}/jobs/{first}")).status, 404);
    println!(
        "1000 x 1 MiB jobs in {:.1} s: {kept} kept, peak RSS of the test process {} MiB",
        t.elapsed().as_secs_f64(),
        peak / 1024
    );
    // 64 MiB of kept results, plus the test's own fake device and buffers: about 170 MiB when
    // this test runs alone. The peak is the whole test process's, and the other tests' brokers
    // and devices run in it at the same time (up to about 410 MiB seen); without the caps the
    // jobs alone would hold over 1,000 MiB.
    assert!(size > 1 << 20, "{size}");
    assert!(peak < 600 * 1024, "{peak} KiB");
}

#[test]
fn job_timeout_interrupts_and_a_cancelled_queued_job_sends_nothing() {
    let dev = telnet_device();
    let b = broker("");
    let id = open_telnet(&b, dev.port());
    // The whole job's deadline, shorter than its command's own.
    let t = Instant::now();
    let r = post_exec(
        &b,
        &id,
        &json!({"commands": ["show slow 20", "show version"], "timeout": 60, "job_timeout": 1.5}),
        &[],
    );
    assert_eq!(r.status, 500, "{}", String::from_utf8_lossy(&r.body));
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("job's timeout"),
        "{}",
        r.json()
    );
    let j = dev.journal();
    assert!(j.iter().any(|l| l == "<break>"), "{j:?}");
    assert!(!j.iter().any(|l| l == "show version"), "{j:?}");
    let jid = r.json()["job_id"].as_str().unwrap().to_string();
    assert_eq!(job(&b, &id, &jid, None)["state"], "failed");
    // A queued job cancelled before its turn never reaches the device.
    let running = post_exec(
        &b,
        &id,
        &json!({"commands": ["show slow 2"], "wait": false}),
        &[],
    );
    assert_eq!(running.status, 202);
    let queued = post_exec(
        &b,
        &id,
        &json!({"commands": ["show inventory"], "wait": false}),
        &[],
    );
    assert_eq!(
        queued.status,
        409,
        "{}",
        String::from_utf8_lossy(&queued.body)
    );
    // (The session runs one exec at a time: a second one is refused as before, not queued.)
    let rid = running.json()["job_id"].as_str().unwrap().to_string();
    let c = b.delete(&format!("/session/{id}/jobs/{rid}"));
    assert_eq!(c.status, 200);
    assert_eq!(c.json()["cancel_requested"], true, "{}", c.json());
    // Still queued when asked: it ends as cancelled when its turn comes.
    let end = job(&b, &id, &rid, Some(10.0));
    assert_eq!(end["state"], "cancelled", "{end}");
    assert!(!dev.journal().iter().any(|l| l == "show inventory"));
}

#[test]
fn a_job_cancelled_inside_a_config_block_leaves_config_mode() {
    let dev = telnet_device();
    let b = broker("");
    let id = open_telnet(&b, dev.port());
    let r = post_exec(
        &b,
        &id,
        &json!({"config": ["interface Loopback66", "do show slow 10", " description never"], "wait": false}),
        &[],
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let jid = r.json()["job_id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(1500));
    let c = b.delete(&format!("/session/{id}/jobs/{jid}"));
    assert_eq!(c.json()["state"], "cancelled", "{}", c.json());
    let j = dev.journal();
    let brk = j.iter().position(|l| l == "<break>").expect("no break");
    assert!(j[brk..].iter().any(|l| l == "end"), "{j:?}");
    assert!(!j.iter().any(|l| l.contains("never")), "{j:?}");
    assert_eq!(b.status(&id)["mode"], "enable");
    assert_eq!(b.exec(&id, json!(["show clock"])).status, 200);
}
