//! Soak tests (issue 8, items 6, 7 and item 8's 100,000 requests). Ignored by default; run by
//! `scripts/soak.sh`, which points `NETDEV_BROKER_BIN` at the release binary:
//!
//! * `soak_cycles`: open/close cycles, a share of them failing in the handshake (wrong password,
//!   a device that closes the TCP connection during the SSH handshake, a port with nothing
//!   listening); fds and threads must come back to the post-warm-up baseline and RSS must grow
//!   less than 10 MiB.
//! * `soak_hold`: sessions held for minutes with a periodic, checked exec on each; RSS, fds and
//!   threads are sampled and must stay flat.
//! * `soak_malformed`: the malformed-request generator of `malformed.rs`, counted by status.
//!
//! Settings come from the environment (see each test); figures are printed as tables.

use crate::abuse::run_malformed;
use crate::child::*;
use crate::malformed::{self, Reply};
use crate::support::*;
use fake_device::{DeviceConfig, FakeDevice};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// One API request with the token, on a new connection; Err if nothing usable came back.
fn api(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Result<Reply, String> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: soak\r\nX-API-Token: {TOKEN}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let x = malformed::exchange(addr, req.as_bytes(), Duration::from_secs(120))?;
    x.replies
        .into_iter()
        .next()
        .ok_or_else(|| format!("no answer ({:?})", x.read_error))
}

fn json_of(r: &Reply) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

#[derive(Clone)]
struct Sample {
    label: String,
    at: Duration,
    rss_kb: u64,
    hwm_kb: u64,
    fds: usize,
    threads: usize,
    note: String,
}

fn sample(b: &Broker, start: Instant, label: &str, note: String) -> Sample {
    let s = Sample {
        label: label.to_string(),
        at: start.elapsed(),
        rss_kb: b.rss_kb(),
        hwm_kb: b.hwm_kb(),
        fds: b.fds(),
        threads: b.threads(),
        note,
    };
    eprintln!(
        "  [{:>7.1} s] {}: RSS {:.2} MiB, fds {}, threads {} {}",
        s.at.as_secs_f64(),
        s.label,
        mib(s.rss_kb),
        s.fds,
        s.threads,
        s.note
    );
    s
}

fn print_samples(title: &str, s: &[Sample]) {
    let mut out = format!(
        "\n{title}\n{:<28} {:>9} {:>10} {:>10} {:>6} {:>8}  {}\n",
        "sample", "t (s)", "RSS MiB", "peak MiB", "fds", "threads", ""
    );
    for x in s {
        out.push_str(&format!(
            "{:<28} {:>9.1} {:>10.2} {:>10.2} {:>6} {:>8}  {}\n",
            x.label,
            x.at.as_secs_f64(),
            mib(x.rss_kb),
            mib(x.hwm_kb),
            x.fds,
            x.threads,
            x.note
        ));
    }
    eprintln!("{out}");
}

fn latency_line(name: &str, v: &mut [Duration]) -> String {
    v.sort();
    format!(
        "{name:<24} n={:<6} p50={:>8.1} ms  p99={:>8.1} ms  max={:>8.1} ms",
        v.len(),
        percentile(v, 50.0).as_secs_f64() * 1e3,
        percentile(v, 99.0).as_secs_f64() * 1e3,
        v.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    )
}

// ---------------------------------------------------------------------------------------------
// A "device" that closes the TCP connection in the middle of the SSH handshake.

struct Hangup {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub accepted: Arc<AtomicUsize>,
}

impl Hangup {
    fn start() -> Hangup {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (st, acc) = (stop.clone(), accepted.clone());
        let thread = std::thread::spawn(move || {
            for s in l.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut s) = s else { continue };
                let n = acc.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6 hangup\r\n");
                    // Wait for the client's first bytes (its banner, maybe its KEXINIT too);
                    // every other time also send the start of a binary packet (a length and
                    // nothing after it). Then close without a word.
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf);
                    if n % 2 == 1 {
                        let _ = s.write_all(&[0, 0, 1, 0, 8]);
                        let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
                        let _ = s.read(&mut buf);
                    }
                });
            }
        });
        Hangup {
            port,
            stop,
            thread: Some(thread),
            accepted,
        }
    }
}

impl Drop for Hangup {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Item 6: open/close cycles.

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Ok,
    WrongPassword,
    Hangup,
    NothingListening,
}

impl Kind {
    fn expected(self) -> u16 {
        match self {
            Kind::Ok => 201,
            Kind::WrongPassword => 401,
            Kind::Hangup | Kind::NothingListening => 502,
        }
    }
}

#[derive(Default)]
struct CycleStats {
    latency: BTreeMap<Kind, Vec<Duration>>,
    statuses: BTreeMap<(Kind, u16), usize>,
    errors: Vec<String>,
}

struct Targets {
    dev: u16,
    hangup: u16,
    closed: u16,
}

/// Cycle `i`: its kind (`fail_pct` % fail, rotating over the three failures).
fn kind_of(i: u64, fail_pct: u64) -> Kind {
    if (i * fail_pct) % 100 < fail_pct {
        match (i * fail_pct / 100) % 3 {
            0 => Kind::WrongPassword,
            1 => Kind::Hangup,
            _ => Kind::NothingListening,
        }
    } else {
        Kind::Ok
    }
}

fn one_cycle(addr: SocketAddr, t: &Targets, kind: Kind, st: &Mutex<CycleStats>) {
    let (port, password) = match kind {
        Kind::Ok => (t.dev, PASSWORD),
        Kind::WrongPassword => (t.dev, "not-the-password"),
        Kind::Hangup => (t.hangup, PASSWORD),
        Kind::NothingListening => (t.closed, PASSWORD),
    };
    let body = json!({"host": "127.0.0.1", "port": port, "username": "admin", "password": password, "timeout": 20});
    let t0 = Instant::now();
    let r = api(addr, "POST", "/session", Some(&body));
    let took = t0.elapsed();
    let mut s = st.lock().unwrap();
    s.latency.entry(kind).or_default().push(took);
    match r {
        Err(e) => s.errors.push(format!("{kind:?}: open: {e}")),
        Ok(r) => {
            *s.statuses.entry((kind, r.status)).or_default() += 1;
            if r.status != kind.expected() {
                s.errors.push(format!(
                    "{kind:?}: open answered {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ));
            }
            if r.status == 201 {
                drop(s);
                let id = json_of(&r)["session_id"].as_str().unwrap_or("").to_string();
                let d = api(addr, "DELETE", &format!("/session/{id}"), None);
                if !matches!(&d, Ok(d) if d.status == 204) {
                    st.lock()
                        .unwrap()
                        .errors
                        .push(format!("DELETE {id}: {:?}", d.map(|d| d.status)));
                }
            }
        }
    }
}

fn run_cycles(
    addr: SocketAddr,
    t: &Arc<Targets>,
    range: std::ops::Range<u64>,
    fail_pct: u64,
    par: usize,
    st: &Arc<Mutex<CycleStats>>,
) {
    let next = Arc::new(AtomicU64::new(range.start));
    let hs: Vec<_> = (0..par)
        .map(|_| {
            let (next, t, st) = (next.clone(), t.clone(), st.clone());
            let end = range.end;
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= end {
                    break;
                }
                one_cycle(addr, &t, kind_of(i, fail_pct), &st);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}

#[test]
#[ignore = "soak: scripts/soak.sh cycles"]
fn soak_cycles() {
    let n = env_u64("SOAK_CYCLES", 10_000);
    let fail_pct = env_u64("SOAK_FAIL_PCT", 20);
    let warmup = env_u64("SOAK_WARMUP", 200);
    let par = env_u64("SOAK_PARALLEL", 4) as usize;
    raise_nofile();
    let dev = FakeDevice::start(DeviceConfig {
        password: PASSWORD.into(),
        ..Default::default()
    });
    let hang = Hangup::start();
    let closed = free_port();
    let b = Broker::spawn("soak-cycles", "", 65536);
    let addr = b.addr;
    let targets = Arc::new(Targets {
        dev: dev.port(),
        hangup: hang.port,
        closed,
    });
    eprintln!(
        "soak cycles: broker {} (pid {}), {n} cycles after {warmup} warm-up, {fail_pct}% failing, {par} clients",
        bin().display(),
        b.pid()
    );
    let start = Instant::now();
    let mut samples = vec![sample(&b, start, "start", String::new())];
    let warm = Arc::new(Mutex::new(CycleStats::default()));
    run_cycles(addr, &targets, 0..warmup, fail_pct, par, &warm);
    // Let the closed sessions' threads finish and the broker hand freed memory back (every
    // reaper_interval, 60 s by default), then take the baseline.
    std::thread::sleep(IDLE_FOR_TRIM);
    let base = sample(
        &b,
        start,
        &format!("baseline ({warmup} + idle 65 s)"),
        String::new(),
    );
    samples.push(base.clone());
    let st = Arc::new(Mutex::new(CycleStats::default()));
    let step = (n / 10).max(1);
    let mut done = 0;
    while done < n {
        let k = step.min(n - done);
        let from = warmup + done;
        run_cycles(addr, &targets, from..from + k, fail_pct, par, &st);
        done += k;
        let errs = st.lock().unwrap().errors.len();
        samples.push(sample(
            &b,
            start,
            &format!("after {done} cycles"),
            format!("errors {errs}"),
        ));
    }
    let settled = b.settle(base.threads, base.fds, Duration::from_secs(30));
    std::thread::sleep(IDLE_FOR_TRIM);
    let end = sample(
        &b,
        start,
        "end (settled, idle 65 s)",
        format!("device conns {}", dev.active_connections()),
    );
    samples.push(end.clone());
    print_samples("soak cycles: broker process", &samples);
    let s = st.lock().unwrap();
    let mut lines = Vec::new();
    for (k, v) in s.latency.clone().iter_mut() {
        lines.push(latency_line(&format!("open {k:?}"), v));
    }
    eprintln!("{}", lines.join("\n"));
    eprintln!("statuses (kind, status) -> count: {:?}", s.statuses);
    eprintln!(
        "hang-up device accepted {} connections; fake device: {} connections in all, {} open now",
        hang.accepted.load(Ordering::SeqCst),
        dev.total_connections(),
        dev.active_connections()
    );
    let growth = end.rss_kb as i64 - base.rss_kb as i64;
    eprintln!(
        "RESULT cycles={n} failing={}% fds {} -> {} threads {} -> {} RSS {:.2} -> {:.2} MiB (growth {:+.2} MiB since the warm-up; {:+.2} MiB since start) errors {}",
        fail_pct,
        base.fds,
        end.fds,
        base.threads,
        end.threads,
        mib(base.rss_kb),
        mib(end.rss_kb),
        growth as f64 / 1024.0,
        (end.rss_kb as i64 - samples[0].rss_kb as i64) as f64 / 1024.0,
        s.errors.len()
    );
    assert!(
        s.errors.is_empty(),
        "{} errors: {:#?}",
        s.errors.len(),
        &s.errors[..s.errors.len().min(20)]
    );
    assert!(
        settled,
        "fds {} -> {}, threads {} -> {}",
        base.fds, end.fds, base.threads, end.threads
    );
    assert!(growth < 10 * 1024, "RSS grew {growth} KiB");
    assert!(
        wait_until(Duration::from_secs(10), || dev.active_connections() == 0),
        "the device still has {} connections",
        dev.active_connections()
    );
    let p = b.panics();
    assert!(p.is_empty(), "{p:#?}");
}

// ---------------------------------------------------------------------------------------------
// Item 7: sessions held with periodic exec.

const FOX: &str = "the quick brown fox jumps over the lazy dog";

/// Check one exec answer for session `idx`: `show long K` then `show clock`.
fn check_exec(r: &Reply, k: usize) -> Result<(), String> {
    if r.status != 200 {
        return Err(format!(
            "status {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ));
    }
    let j = json_of(r);
    let res = j["results"].as_array().ok_or("no results")?;
    if res.len() != 2 || res.iter().any(|x| x["failed"] != false) {
        return Err(format!("results {j}"));
    }
    let out = res[0]["output"].as_str().unwrap_or("");
    let lines: Vec<&str> = out.lines().collect();
    let want: Vec<String> = (1..=k).map(|n| format!("line {n:04} {FOX}")).collect();
    if lines != want {
        return Err(format!("show long {k}: got {out:?}"));
    }
    let clock = res[1]["output"].as_str().unwrap_or("");
    let re = regex::Regex::new(r"^\*\d\d:\d\d:\d\d\.\d{3} UTC Mon Mar 1 2024$").unwrap();
    if !re.is_match(clock) {
        return Err(format!("show clock: got {clock:?}"));
    }
    Ok(())
}

#[test]
#[ignore = "soak: scripts/soak.sh hold"]
fn soak_hold() {
    let n = env_u64("SOAK_SESSIONS", 200) as usize;
    let minutes = env_u64("SOAK_MINUTES", 30);
    let every = Duration::from_secs(env_u64("SOAK_EXEC_EVERY", 30));
    let sample_every = Duration::from_secs(env_u64("SOAK_SAMPLE_EVERY", 60));
    let par = env_u64("SOAK_PARALLEL", 4) as usize;
    raise_nofile();
    let dev = FakeDevice::start(DeviceConfig {
        password: PASSWORD.into(),
        ..Default::default()
    });
    let b = Broker::spawn("soak-hold", "", 65536);
    let addr = b.addr;
    eprintln!(
        "soak hold: broker {} (pid {}), {n} sessions for {minutes} min, exec on each every {every:?}, {par} clients",
        bin().display(),
        b.pid()
    );
    let start = Instant::now();
    let mut samples = vec![sample(&b, start, "start", String::new())];
    // Open them all.
    let ids: Arc<Mutex<Vec<Option<String>>>> = Arc::new(Mutex::new(vec![None; n]));
    let next = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..par)
        .map(|_| {
            let (ids, next) = (ids.clone(), next.clone());
            let port = dev.port();
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    break;
                }
                let body = json!({"host": "127.0.0.1", "port": port, "username": "admin", "password": PASSWORD, "timeout": 30, "session_timeout": 0});
                let r = api(addr, "POST", "/session", Some(&body)).unwrap();
                assert_eq!(r.status, 201, "open {i}: {}", String::from_utf8_lossy(&r.body));
                ids.lock().unwrap()[i] = json_of(&r)["session_id"].as_str().map(|s| s.to_string());
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let ids: Vec<String> = ids
        .lock()
        .unwrap()
        .iter()
        .map(|x| x.clone().unwrap())
        .collect();
    let opened_in = start.elapsed();
    let first = sample(
        &b,
        start,
        &format!("{n} sessions open"),
        format!("in {opened_in:.1?}"),
    );
    samples.push(first.clone());

    let execs = Arc::new(AtomicU64::new(0));
    let errors: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let lat: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + Duration::from_secs(minutes * 60);
    let workers: Vec<_> = (0..par)
        .map(|w| {
            let mine: Vec<(usize, String)> = ids.iter().cloned().enumerate().filter(|(i, _)| i % par == w).collect();
            let (execs, errors, lat) = (execs.clone(), errors.clone(), lat.clone());
            std::thread::spawn(move || {
                // Spread the first execs over one period.
                let t0 = Instant::now();
                let mut due: Vec<Instant> = (0..mine.len())
                    .map(|j| t0 + every.mul_f64((j * par + w) as f64 / (mine.len() * par).max(1) as f64))
                    .collect();
                loop {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    let Some((j, at)) = due.iter().copied().enumerate().min_by_key(|(_, t)| *t) else {
                        break;
                    };
                    if at > now {
                        std::thread::sleep((at - now).min(deadline - now));
                        continue;
                    }
                    let (idx, id) = &mine[j];
                    let k = 1 + idx % 40;
                    let t = Instant::now();
                    let r = api(
                        addr,
                        "POST",
                        &format!("/session/{id}/exec"),
                        Some(&json!({"commands": [format!("show long {k}"), "show clock"], "timeout": 30})),
                    );
                    lat.lock().unwrap().push(t.elapsed());
                    execs.fetch_add(1, Ordering::SeqCst);
                    if let Err(e) = r.and_then(|r| check_exec(&r, k)) {
                        errors.lock().unwrap().push(format!("session {idx} ({id}): {e}"));
                    }
                    due[j] += every;
                }
            })
        })
        .collect();
    let mut next_sample = Instant::now() + sample_every;
    let mut minute = 0;
    while Instant::now() < deadline {
        let now = Instant::now();
        if now >= next_sample {
            minute += 1;
            samples.push(sample(
                &b,
                start,
                &if sample_every == Duration::from_secs(60) {
                    format!("minute {minute}")
                } else {
                    format!("sample {minute}")
                },
                format!(
                    "execs {} errors {} device conns {}",
                    execs.load(Ordering::SeqCst),
                    errors.lock().unwrap().len(),
                    dev.active_connections()
                ),
            ));
            next_sample += sample_every;
        }
        std::thread::sleep(
            Duration::from_millis(200).min(deadline.saturating_duration_since(Instant::now())),
        );
    }
    for w in workers {
        w.join().unwrap();
    }
    // Sample before listing: the list of 200 statuses is itself a burst of allocations.
    let mut last = sample(&b, start, "end of hold", String::new());
    let list = api(addr, "GET", "/sessions", None).unwrap();
    let list = json_of(&list);
    let alive = list["sessions"]
        .as_array()
        .map(|a| a.iter().filter(|s| s["alive"] == true).count())
        .unwrap_or(0);
    last.note = format!("alive {alive}/{n}");
    samples.push(last.clone());
    for id in &ids {
        let _ = api(addr, "DELETE", &format!("/session/{id}"), None);
    }
    let closed_ok = b.settle(samples[0].threads, samples[0].fds, Duration::from_secs(30));
    samples.push(sample(
        &b,
        start,
        "all closed",
        format!("device conns {}", dev.active_connections()),
    ));
    print_samples("soak hold: broker process", &samples);

    // Drift over the hold: from the first sample with every session open to the end of the hold.
    let held: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.label.starts_with("minute")
                || s.label.starts_with("sample")
                || s.label == first.label
                || s.label == "end of hold"
        })
        .collect();
    let rss: Vec<u64> = held.iter().map(|s| s.rss_kb).collect();
    let fds: Vec<usize> = held.iter().map(|s| s.fds).collect();
    let thr: Vec<usize> = held.iter().map(|s| s.threads).collect();
    let (rmin, rmax) = (*rss.iter().min().unwrap(), *rss.iter().max().unwrap());
    let (fmin, fmax) = (*fds.iter().min().unwrap(), *fds.iter().max().unwrap());
    let (tmin, tmax) = (*thr.iter().min().unwrap(), *thr.iter().max().unwrap());
    let errors = errors.lock().unwrap();
    let mut lat = lat.lock().unwrap().clone();
    eprintln!("{}", latency_line("exec", &mut lat));
    eprintln!(
        "RESULT hold sessions={n} minutes={minutes} execs={} errors={} alive={alive}/{n} \
         RSS {:.2} -> {:.2} MiB (min {:.2}, max {:.2}, drift max-min {:.2} MiB) \
         fds {} -> {} (min {fmin}, max {fmax}) threads {} -> {} (min {tmin}, max {tmax}); after closing all: fds {}, threads {}",
        execs.load(Ordering::SeqCst),
        errors.len(),
        mib(first.rss_kb),
        mib(last.rss_kb),
        mib(rmin),
        mib(rmax),
        mib(rmax - rmin),
        first.fds,
        last.fds,
        first.threads,
        last.threads,
        b.fds(),
        b.threads()
    );
    assert!(
        errors.is_empty(),
        "{} exec errors: {:#?}",
        errors.len(),
        &errors[..errors.len().min(20)]
    );
    assert!(execs.load(Ordering::SeqCst) > 0);
    assert_eq!(alive, n, "sessions died during the hold");
    // In-flight execs hold one HTTP connection (fd and thread) each: at most `par`.
    assert!(fmax - fmin <= par + 2, "fds moved {fmin}..{fmax}");
    assert!(tmax - tmin <= par + 2, "threads moved {tmin}..{tmax}");
    assert!(
        rmax - rmin < 10 * 1024,
        "RSS moved {:.2} MiB",
        mib(rmax - rmin)
    );
    assert!(
        closed_ok,
        "after closing all: fds {}, threads {}",
        b.fds(),
        b.threads()
    );
    let p = b.panics();
    assert!(p.is_empty(), "{p:#?}");
}

// ---------------------------------------------------------------------------------------------
// Item 8: 100,000 malformed requests.

/// Longer than the default reaper_interval (60 s), after which the broker has handed freed
/// memory back to the OS.
const IDLE_FOR_TRIM: Duration = Duration::from_secs(65);
/// RSS allowed once the malformed requests are over and memory was handed back.
const MALFORMED_RSS_BOUND_KB: u64 = 96 << 10;

#[test]
#[ignore = "soak: scripts/soak.sh malformed"]
fn soak_malformed() {
    let n = env_u64("SOAK_REQUESTS", 100_000);
    let par = env_u64("SOAK_PARALLEL", 4) as usize;
    let seed = env_u64("SOAK_SEED", 0x5eed_0008);
    raise_nofile();
    let b = Broker::spawn("soak-malformed", malformed::BROKER_YAML, 65536);
    let addr = b.addr;
    assert!(b.health_ok());
    std::thread::sleep(Duration::from_millis(300));
    eprintln!(
        "soak malformed: broker {} (pid {}), {n} requests, seed {seed:#x}, {par} clients",
        bin().display(),
        b.pid()
    );
    let start = Instant::now();
    let mut samples = vec![sample(&b, start, "start", String::new())];
    let tally = run_malformed(addr, seed, n, par);
    let took = start.elapsed();
    samples.push(sample(&b, start, "after the requests", String::new()));
    let settled = b.settle(
        samples[0].threads + 1,
        samples[0].fds + 1,
        Duration::from_secs(15),
    );
    // The broker hands freed memory back every reaper_interval (60 s by default).
    std::thread::sleep(IDLE_FOR_TRIM);
    let idle = sample(&b, start, "idle one reaper_interval", String::new());
    samples.push(idle.clone());
    print_samples("soak malformed: broker process", &samples);
    tally.print();
    let totals = tally.totals();
    let non4xx: usize = totals
        .iter()
        .filter(|(s, _)| **s != 0 && !(400..500).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let panics = b.panics();
    eprintln!(
        "RESULT malformed requests={} in {took:.1?} ({:.0}/s) slowest {:?} failures={} non-4xx={non4xx} closed-unfinished={} panics={} statuses {:?}",
        tally.cases,
        tally.cases as f64 / took.as_secs_f64(),
        tally.slowest,
        tally.failures.len(),
        totals.get(&0).copied().unwrap_or(0),
        panics.len(),
        totals
    );
    assert!(
        tally.failures.is_empty(),
        "{} failures:\n{}",
        tally.failures.len(),
        tally.failures[..tally.failures.len().min(20)].join("\n")
    );
    assert!(b.health_ok());
    assert!(
        settled,
        "threads/fds did not come back: {:?}",
        (b.threads(), b.fds())
    );
    assert!(panics.is_empty(), "{panics:#?}");
    assert!(
        idle.rss_kb < MALFORMED_RSS_BOUND_KB,
        "RSS {:.1} MiB after the requests and an idle reaper_interval",
        mib(idle.rss_kb)
    );
}
