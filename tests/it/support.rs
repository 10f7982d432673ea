//! Test support: an in-process broker on 127.0.0.1:0 and a minimal HTTP client that shows
//! exactly what the server sent.

use netdev_broker::config::{self, Config};
use netdev_broker::secret::Secret;
use netdev_broker::server::Broker;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "CANARY-tok-51c2";
pub const PASSWORD: &str = "CANARY-pw-7f3a9";
pub const ENABLE: &str = "CANARY-en-93b1";

pub struct TestBroker {
    pub broker: Option<Broker>,
    pub addr: SocketAddr,
    pub dir: std::path::PathBuf,
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(b) = self.broker.take() {
            b.shutdown();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "ndb-{tag}-{}-{}",
        std::process::id(),
        netdev_broker::util::random_id().unwrap()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Start a broker with the given extra YAML config.
pub fn broker(extra_yaml: &str) -> TestBroker {
    let mut c: Config = config::from_yaml(extra_yaml).unwrap().config;
    c.live.api_token = Secret::new(TOKEN);
    start(c)
}

pub fn start(mut c: Config) -> TestBroker {
    let dir = tmpdir("broker");
    // Each broker keeps its own state (known_hosts): fake devices get new host keys on every
    // start, and ports are reused across tests.
    if c.restart.state_dir == Config::default().restart.state_dir {
        c.restart.state_dir = dir.clone();
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let broker = Broker::start_on(&c, listener).unwrap();
    let addr = broker.addr();
    TestBroker {
        broker: Some(broker),
        addr,
        dir,
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Send raw bytes, read the whole response (the server closes: we send Connection: close).
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s.write_all(bytes).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse(&buf)
}

pub fn parse(buf: &[u8]) -> Resp {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    Resp {
        status,
        headers,
        body: buf[end + 4..].to_vec(),
    }
}

pub fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Resp {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("X-API-Token: {t}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    raw(addr, req.as_bytes())
}

impl TestBroker {
    pub fn get(&self, path: &str) -> Resp {
        call(self.addr, "GET", path, Some(TOKEN), None)
    }
    pub fn post(&self, path: &str, body: &Value) -> Resp {
        call(
            self.addr,
            "POST",
            path,
            Some(TOKEN),
            Some(&body.to_string()),
        )
    }
    pub fn delete(&self, path: &str) -> Resp {
        call(self.addr, "DELETE", path, Some(TOKEN), None)
    }
    /// Open a session on the fake device; panics unless 201.
    pub fn open(&self, port: u16, extra: Value) -> String {
        let mut body = serde_json::json!({"host": "127.0.0.1", "port": port, "username": "admin", "password": PASSWORD, "timeout": 10});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let r = self.post("/session", &body);
        assert_eq!(
            r.status,
            201,
            "open failed: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()["session_id"].as_str().unwrap().to_string()
    }
    pub fn exec(&self, id: &str, cmds: Value) -> Resp {
        self.post(
            &format!("/session/{id}/exec"),
            &serde_json::json!({"commands": cmds}),
        )
    }
    /// Exec with the body's `timeout` (seconds) set.
    pub fn exec_timeout(&self, id: &str, cmds: Value, timeout: f64) -> Resp {
        self.post(
            &format!("/session/{id}/exec"),
            &serde_json::json!({"commands": cmds, "timeout": timeout}),
        )
    }
    pub fn status(&self, id: &str) -> Value {
        let r = self.get(&format!("/session/{id}/status"));
        assert_eq!(r.status, 200);
        r.json()
    }
}

/// Poll `f` until it returns true or the deadline passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Run an exec on another thread (to do something else while it runs); join for the response.
pub fn exec_in_background(addr: SocketAddr, id: &str, body: &str) -> std::thread::JoinHandle<Resp> {
    let (path, body) = (format!("/session/{id}/exec"), body.to_string());
    std::thread::spawn(move || call(addr, "POST", &path, Some(TOKEN), Some(&body)))
}

/// A test that cannot run here says so and returns: one line `SKIPPED: <test>: <reason>` on
/// the real stderr (past libtest's capture, so it shows in `cargo test`'s output whether the
/// test passes or not). `.ci/run` fails on any such line when it runs as root with CI=true,
/// where every test can run. `test` is the path libtest prints (`faults::name`).
pub fn skip(test: &str, reason: &str) {
    let line = format!("SKIPPED: {test}: {reason}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// A fake IOS device over Telnet that asks the enable secret [`ENABLE`] (password [`PASSWORD`]).
pub fn telnet_device() -> fake_device::TelnetDevice {
    fake_device::TelnetDevice::start(fake_device::DeviceOptions {
        password: PASSWORD.into(),
        enable_secret: Some(ENABLE.into()),
        ..Default::default()
    })
    .unwrap()
}
