//! Devices behind jump hosts, on a network the test builds: namespaces `c` (the broker, run as
//! the real binary, and its client; one link, to the bastion, and no default route), `b`
//! (bastion 1: a real OpenSSH sshd), `b2` (bastion 2, reachable only from `b`) and `d` (the
//! fake devices, reachable from `b` on 10.214.2.0/24 and from `b2` on 10.214.4.0/24, not from
//! `c`). Namespaces need root and iproute2; sshd needs openssh-server. Skipped without them,
//! except in CI. A legacy-only device is a real sshd in `d` whose ForceCommand is the fake
//! device's stdio front (this binary again, `legacy_device_shell`); the Ansible test runs
//! `ansible-playbook` (from `.venv`, which `.ci/run` makes before `cargo test`) inside `c`.
//!
//! ```text
//!  c 10.214.1.1 ── 10.214.1.2 b 10.214.2.1 ── 10.214.2.2 d
//!                             b 10.214.3.1 ── 10.214.3.2 b2 10.214.4.1 ── 10.214.4.2 d
//! ```

use crate::child::{Broker, Output};
use crate::support::*;
use fake_device::{DeviceConfig, DeviceOptions, FakeDevice, TelnetDevice};
use serde_json::{json, Value};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HOP_USER: &str = "nbjump";
const HOP_PASSWORD: &str = "CANARY-hop-pw-4d1e";
const B: &str = "10.214.1.2";
const B2: &str = "10.214.3.2";
const D1: &str = "10.214.2.2";
const D2: &str = "10.214.4.2";

fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn sh(cmd: &str, args: &[&str], input: Option<&str>) -> Result<(), String> {
    let mut c = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if let Some(i) = input {
        use std::io::Write;
        c.stdin.take().unwrap().write_all(i.as_bytes()).unwrap();
    }
    let out = c.wait_with_output().map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Run `f` on a thread that has entered namespace `ns` (threads and processes it starts
/// inherit it).
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter(&ns);
        f()
    })
    .join()
    .unwrap()
}

fn enter(ns: &str) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).unwrap();
    // SAFETY: setns on a valid namespace fd; affects only the calling thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

/// The four namespaces and their links; everything in them is killed and they are deleted on
/// drop.
struct Lab {
    c: String,
    b: String,
    b2: String,
    d: String,
    dir: PathBuf,
    sshds: Vec<Child>,
    started: usize,
}

impl Lab {
    fn create(tag: &str) -> Result<Lab, String> {
        if unsafe { libc::geteuid() } != 0 {
            return Err("needs root".into());
        }
        if !Path::new("/usr/sbin/sshd").exists() {
            return Err("/usr/sbin/sshd not found (install openssh-server)".into());
        }
        let t = format!("{}{tag}", std::process::id() % 100_000);
        let lab = Lab {
            c: format!("nbj{t}c"),
            b: format!("nbj{t}b"),
            b2: format!("nbj{t}e"),
            d: format!("nbj{t}d"),
            dir: tmpdir(&format!("jump{tag}")),
            sshds: Vec::new(),
            started: 0,
        };
        for ns in [&lab.c, &lab.b, &lab.b2, &lab.d] {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        let link = |a: &str, aip: &str, b: &str, bip: &str, n: &str| -> Result<(), String> {
            let (va, vb) = (format!("nj{t}{n}a"), format!("nj{t}{n}b"));
            ip(&[
                "-n", a, "link", "add", &va, "type", "veth", "peer", "name", &vb, "netns", b,
            ])?;
            ip(&["-n", a, "addr", "add", aip, "dev", &va])?;
            ip(&["-n", b, "addr", "add", bip, "dev", &vb])?;
            ip(&["-n", a, "link", "set", &va, "up"])?;
            ip(&["-n", b, "link", "set", &vb, "up"]).map(|_| ())
        };
        link(&lab.c, "10.214.1.1/24", &lab.b, "10.214.1.2/24", "1")?;
        link(&lab.b, "10.214.2.1/24", &lab.d, "10.214.2.2/24", "2")?;
        link(&lab.b, "10.214.3.1/24", &lab.b2, "10.214.3.2/24", "3")?;
        link(&lab.b2, "10.214.4.1/24", &lab.d, "10.214.4.2/24", "4")?;
        std::fs::create_dir_all("/run/sshd").map_err(|e| format!("/run/sshd: {e}"))?;
        ensure_hop_user()?;
        Ok(lab)
    }

    /// A private sshd in namespace `ns` on `addr:port`; returns its log file. Waits until it
    /// listens.
    fn sshd(&mut self, ns: &str, addr: &str, port: u16, name: &str, forwarding: bool) -> PathBuf {
        self.sshd_with(ns, addr, port, name, forwarding, "")
    }

    /// [`Lab::sshd`] with `extra` lines first in its config: sshd takes the first value of a
    /// keyword, so they override the defaults below them (`HostKey` lines add keys).
    fn sshd_with(
        &mut self,
        ns: &str,
        addr: &str,
        port: u16,
        name: &str,
        forwarding: bool,
        extra: &str,
    ) -> PathBuf {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        set_mode(&self.dir, 0o755);
        set_mode(&dir, 0o755);
        let key = dir.join("host_ed25519");
        if !key.exists() {
            keygen(&key);
        }
        let ak = self.dir.join("authorized_keys");
        if !ak.exists() {
            std::fs::write(&ak, "").unwrap();
        }
        set_mode(&ak, 0o644);
        let cfg = dir.join("sshd_config");
        std::fs::write(
            &cfg,
            format!(
                "{extra}ListenAddress {addr}:{port}\nHostKey {}\nPidFile none\nUsePAM no\nStrictModes no\n\
                 AuthorizedKeysFile {}\nPubkeyAuthentication yes\nPasswordAuthentication yes\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin no\nAllowUsers {HOP_USER}\n\
                 AllowTcpForwarding {}\nPermitTTY no\nX11Forwarding no\nUseDNS no\n\
                 ForceCommand /bin/false\nLogLevel DEBUG1\nMaxStartups 100\nLoginGraceTime 30\n",
                key.display(),
                ak.display(),
                if forwarding { "yes" } else { "no" }
            ),
        )
        .unwrap();
        self.started += 1;
        let n = self.started;
        let log = dir.join(format!("sshd-{n}.log"));
        let logf = std::fs::File::create(&log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "/usr/sbin/sshd", "-D", "-e", "-f"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .unwrap();
        self.sshds.push(child);
        let up = wait_until(Duration::from_secs(20), || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("Server listening on")
        });
        assert!(
            up,
            "sshd {name} did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        log
    }

    /// Kill every process in namespace `ns` (an sshd and its per-connection children).
    fn kill_all(ns: &str) {
        let me = std::process::id().to_string();
        for pid in ip(&["netns", "pids", ns])
            .unwrap_or_default()
            .split_whitespace()
        {
            if pid != me {
                if let Ok(p) = pid.parse::<i32>() {
                    // SAFETY: kill(2) with a pid read from `ip netns pids`.
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.sshds {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.c, &self.b, &self.b2, &self.d] {
            Lab::kill_all(ns);
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn keygen(path: &Path) {
    keygen_of("ed25519", path)
}

fn keygen_of(kind: &str, path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-C", "nbj", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", out);
}

/// The hop's login account (shared by every sshd of every namespace: one /etc/passwd).
fn ensure_hop_user() -> Result<(), String> {
    static ONCE: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut done = ONCE.lock().unwrap();
    if *done {
        return Ok(());
    }
    if sh("id", &[HOP_USER], None).is_err() {
        sh(
            "useradd",
            &["--system", "-M", "-d", "/", "-s", "/bin/sh", HOP_USER],
            None,
        )?;
    }
    sh(
        "chpasswd",
        &[],
        Some(&format!("{HOP_USER}:{HOP_PASSWORD}\n")),
    )?;
    let _ = sh("usermod", &["-U", HOP_USER], None);
    *done = true;
    Ok(())
}

fn lab_or_skip(test: &str, tag: &str) -> Option<Lab> {
    match Lab::create(tag) {
        Ok(l) => Some(l),
        Err(e) if std::env::var("CI").is_err() => {
            skip(
                test,
                &format!("cannot build the jump-host lab (root, iproute2, openssh-server): {e}"),
            );
            None
        }
        Err(e) => panic!("CI must run the jump-host tests: {e}"),
    }
}

fn ssh_device(lab: &Lab) -> FakeDevice {
    in_ns(&lab.d, || {
        FakeDevice::start_at(
            DeviceConfig {
                password: PASSWORD.into(),
                ..Default::default()
            },
            "0.0.0.0".parse().unwrap(),
            0,
        )
    })
}

fn hop(host: &str, port: u16) -> Value {
    json!({"host": host, "port": port, "username": HOP_USER, "password": HOP_PASSWORD})
}

fn post(addr: SocketAddr, path: &str, body: &Value) -> Resp {
    call(addr, "POST", path, Some(TOKEN), Some(&body.to_string()))
}

fn get(addr: SocketAddr, path: &str) -> Value {
    call(addr, "GET", path, Some(TOKEN), None).json()
}

fn open(addr: SocketAddr, body: &Value) -> String {
    let r = post(addr, "/session", body);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["session_id"].as_str().unwrap().to_string()
}

fn exec(addr: SocketAddr, id: &str, cmd: &str) -> Resp {
    post(
        addr,
        &format!("/session/{id}/exec"),
        &json!({"commands": [cmd]}),
    )
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Open and close `n` sessions one after the other; the open times.
fn open_times(addr: SocketAddr, body: &Value, n: usize) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            let id = open(addr, body);
            let took = t.elapsed();
            call(addr, "DELETE", &format!("/session/{id}"), Some(TOKEN), None);
            took
        })
        .collect()
}

#[test]
fn jump_hosts_carry_ssh_and_telnet_sessions_through_one_and_two_bastions() {
    let test = "jump::jump_hosts_carry_ssh_and_telnet_sessions_through_one_and_two_bastions";
    let Some(mut lab) = lab_or_skip(test, "a") else {
        return;
    };
    lab.sshd(&lab.b.clone(), B, 22, "b", true);
    lab.sshd(&lab.b2.clone(), B2, 22, "b2", true);
    let dev = ssh_device(&lab);
    let port = dev.port();
    let tdev = in_ns(&lab.d, || {
        TelnetDevice::start_on(
            DeviceOptions {
                password: PASSWORD.into(),
                ..Default::default()
            },
            "0.0.0.0:0".parse().unwrap(),
        )
        .unwrap()
    });
    let tport = tdev.port();
    // The broker's key for the hop: inside its key_dir, authorized on the bastions.
    let key_dir = lab.dir.join("keys");
    std::fs::create_dir_all(&key_dir).unwrap();
    keygen(&key_dir.join("hop_ed25519"));
    let pubkey = std::fs::read_to_string(key_dir.join("hop_ed25519.pub")).unwrap();
    std::fs::write(lab.dir.join("authorized_keys"), pubkey).unwrap();
    let yaml = format!(
        "key_dir: {}\njump_hosts:\n  chains:\n    b1:\n      - host: {B}\n        \
         username: {HOP_USER}\n        password: {HOP_PASSWORD}\n  rules:\n    - match: [10.214.2.0/24]\n      chain: b1\n",
        key_dir.display()
    );
    let c = lab.c.clone();
    // A direct broker for the comparison: in the bastion's namespace, next to the device.
    let direct_ns = lab.b.clone();
    let report = in_ns(&c.clone(), move || {
        // The broker's namespace has no default route and reaches the device by no path.
        let routes = ip(&["-n", &c, "route", "show", "default"]).unwrap();
        assert!(routes.trim().is_empty(), "default route in {c}: {routes}");
        for dst in [D1, D2] {
            let r = TcpStream::connect_timeout(
                &format!("{dst}:{port}").parse().unwrap(),
                Duration::from_secs(2),
            );
            assert!(r.is_err(), "{dst} is reachable directly from {c}");
        }
        let broker = Broker::serve("jumpa")
            .yaml(&yaml)
            .output(Output::Log)
            .start();
        let a = broker.addr;
        let dev_body = |host: &str, jump: Value| {
            json!({"host": host, "port": port, "username": "admin", "password": PASSWORD,
                   "timeout": 20, "jump": jump})
        };
        // 1. Password auth on the hop, SSH to the device.
        let id = open(a, &dev_body(D1, json!([hop(B, 22)])));
        let r = exec(a, &id, "show version");
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let st = get(a, &format!("/session/{id}/status"));
        assert_eq!(st["via"], json!([format!("{B}:22")]), "{st}");
        assert!(
            st["via_host_keys"][0]["host_key_fingerprint"]
                .as_str()
                .is_some_and(|f| f.starts_with("SHA256:")),
            "{st}"
        );
        // Closing tears the chain down: the pump thread goes.
        let threads_open = broker.threads();
        assert_eq!(
            call(a, "DELETE", &format!("/session/{id}"), Some(TOKEN), None).status,
            204
        );
        assert!(
            wait_until(Duration::from_secs(10), || broker.threads()
                < threads_open - 1),
            "session and pump threads still there after close: {} of {threads_open}",
            broker.threads()
        );
        // 2. Key auth on the hop.
        let key_hop = json!([{"host": B, "username": HOP_USER, "key_file": "hop_ed25519"}]);
        let id = open(a, &dev_body(D1, key_hop.clone()));
        assert_eq!(exec(a, &id, "show clock").status, 200);
        // 3. Telnet through the same jump host.
        let r = post(
            a,
            "/telnet-session",
            &json!({"host": D1, "port": tport, "username": "admin", "password": PASSWORD,
                    "timeout": 20, "jump": key_hop}),
        );
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let tid = r.json()["session_id"].as_str().unwrap().to_string();
        let r = exec(a, &tid, "show version");
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            get(a, &format!("/session/{tid}/status"))["via"],
            json!([format!("{B}:22")])
        );
        // 4. Two hops: D2 is reachable only from b2, which is reachable only from b.
        let two = json!([hop(B, 22), hop(B2, 22)]);
        let id2 = open(a, &dev_body(D2, two.clone()));
        assert_eq!(exec(a, &id2, "show version").status, 200);
        assert_eq!(
            get(a, &format!("/session/{id2}/status"))["via"],
            json!([format!("{B}:22"), format!("{B2}:22")])
        );
        // 5. The config's rule: no jump in the request, the chain and its credentials come from
        //    jump_hosts; "jump": [] means direct (and the device is unreachable directly).
        let mut by_rule = dev_body(D1, Value::Null);
        by_rule.as_object_mut().unwrap().remove("jump");
        let id3 = open(a, &by_rule);
        assert_eq!(exec(a, &id3, "show version").status, 200);
        assert_eq!(
            get(a, &format!("/session/{id3}/status"))["via"],
            json!([format!("{B}:22")])
        );
        let mut direct = dev_body(D1, json!([]));
        direct["timeout"] = json!(3);
        let r = post(a, "/session", &direct);
        assert!(r.status == 502 || r.status == 504, "{}", r.status);
        // 6. Open time: direct (from the bastion's namespace) vs 1 hop vs 2 hops, 10 each.
        let one_hop = dev_body(D1, json!([hop(B, 22)]));
        let two_hops = dev_body(D2, two);
        let t1 = open_times(a, &one_hop, 10);
        let t2 = open_times(a, &two_hops, 10);
        let direct_body = dev_body(D1, json!([]));
        let t0 = in_ns(&direct_ns, move || {
            let db = Broker::serve("jumpd").output(Output::Null).start();
            open_times(db.addr, &direct_body, 10)
        });
        // 7. Cost of 20 jumped sessions (one hop) against 20 direct ones.
        for id in [&id, &tid, &id2, &id3] {
            call(a, "DELETE", &format!("/session/{id}"), Some(TOKEN), None);
        }
        std::thread::sleep(Duration::from_millis(500));
        let base = (broker.threads(), broker.fds(), broker.rss_kb());
        let ids: Vec<String> = (0..20).map(|_| open(a, &one_hop)).collect();
        for id in &ids {
            assert_eq!(exec(a, id, "show clock").status, 200);
        }
        let after = (broker.threads(), broker.fds(), broker.rss_kb());
        for id in &ids {
            call(a, "DELETE", &format!("/session/{id}"), Some(TOKEN), None);
        }
        let direct_body = dev_body(D1, json!([]));
        let direct_cost = in_ns(&direct_ns, move || {
            let db = Broker::serve("jumpc").output(Output::Null).start();
            std::thread::sleep(Duration::from_millis(300));
            let base = (db.threads(), db.fds(), db.rss_kb());
            let ids: Vec<String> = (0..20).map(|_| open(db.addr, &direct_body)).collect();
            for id in &ids {
                assert_eq!(exec(db.addr, id, "show clock").status, 200);
            }
            let after = (db.threads(), db.fds(), db.rss_kb());
            (base, after)
        });
        assert!(wait_until(Duration::from_secs(15), || broker.threads() <= base.0));
        let log = std::fs::read_to_string(&broker.log).unwrap_or_default();
        broker.term();
        (t0, t1, t2, base, after, direct_cost, log)
    });
    let (t0, t1, t2, base, after, (dbase, dafter), log) = report;
    eprintln!(
        "jump open time, median of 10: direct {:?}, 1 hop {:?}, 2 hops {:?}",
        median(t0),
        median(t1),
        median(t2)
    );
    let per = |a: usize, b: usize| (b as f64 - a as f64) / 20.0;
    eprintln!(
        "20 sessions through 1 jump host: threads {} -> {} ({:.1}/session), fds {} -> {} ({:.1}/session), RSS {} -> {} KiB ({:.0} KiB/session)",
        base.0, after.0, per(base.0, after.0), base.1, after.1, per(base.1, after.1), base.2, after.2,
        per(base.2 as usize, after.2 as usize)
    );
    eprintln!(
        "20 direct sessions: threads {} -> {} ({:.1}/session), fds {} -> {} ({:.1}/session), RSS {} -> {} KiB ({:.0} KiB/session)",
        dbase.0, dafter.0, per(dbase.0, dafter.0), dbase.1, dafter.1, per(dbase.1, dafter.1),
        dbase.2, dafter.2, per(dbase.2 as usize, dafter.2 as usize)
    );
    // One session thread and one pump thread per jumped session; 3 descriptors (TCP to the
    // bastion, the socketpair) where a direct one has 1.
    assert!((40..=42).contains(&(after.0 - base.0)), "threads");
    assert!((60..=62).contains(&(after.1 - base.1)), "fds");
    assert!(
        log.contains("via 10.214.1.2:22 (host key"),
        "open log lines name the path"
    );
    for canary in [HOP_PASSWORD, PASSWORD] {
        assert!(!log.contains(canary), "{canary} in the broker log");
    }
    drop(dev);
    drop(tdev);
}

#[test]
fn jump_host_failures_name_the_hop_and_a_dead_bastion_kills_the_session() {
    let test = "jump::jump_host_failures_name_the_hop_and_a_dead_bastion_kills_the_session";
    let Some(mut lab) = lab_or_skip(test, "f") else {
        return;
    };
    let b = lab.b.clone();
    lab.sshd(&b, B, 22, "b", true);
    lab.sshd(&b, B, 2222, "nofwd", false);
    let rot_log = lab.sshd(&b, B, 2200, "rot", true);
    let dev = ssh_device(&lab);
    let port = dev.port();
    let c = lab.c.clone();
    let body = move |jump: Value| {
        json!({"host": D1, "port": port, "username": "admin", "password": PASSWORD,
               "timeout": 15, "jump": jump})
    };
    let broker = in_ns(&c, || {
        Broker::serve("jumpf").yaml("").output(Output::Log).start()
    });
    let a = broker.addr;
    let on_c = |f: Box<dyn FnOnce() -> Resp + Send>| in_ns(&c, f);
    let detail = |r: &Resp| r.json()["detail"].as_str().unwrap_or_default().to_string();

    // Wrong hop password: 401 naming the hop.
    let mut bad = hop(B, 22);
    bad["password"] = json!("wrong-password");
    let bb = body(json!([bad]));
    let r = on_c(Box::new(move || post(a, "/session", &bb)));
    assert_eq!(r.status, 401, "{}", detail(&r));
    assert!(
        detail(&r).contains(&format!("jump host 1 ({B}:22)")),
        "{}",
        detail(&r)
    );

    // Forwarding prohibited on the hop: 502 naming the hop and the target.
    let bb = body(json!([hop(B, 2222)]));
    let r = on_c(Box::new(move || post(a, "/session", &bb)));
    assert_eq!(r.status, 502, "{}", detail(&r));
    assert_eq!(
        detail(&r),
        format!(
            "Connection error: jump host 1 ({B}:2222) refused the forward to {D1}:{port}: administratively prohibited"
        )
    );

    // The device down behind a live bastion: 502 naming the device.
    let mut down = body(json!([hop(B, 22)]));
    down["port"] = json!(9);
    let r = on_c(Box::new(move || post(a, "/session", &down)));
    assert!(r.status == 502 || r.status == 504, "{}", detail(&r));
    assert!(
        detail(&r).contains(&format!("jump host 1 ({B}:22)"))
            && detail(&r).contains(&format!("{D1}:9")),
        "{}",
        detail(&r)
    );

    // Host key mismatch at hop 1: the first open records the key; after the bastion's key
    // changes, the open is refused before any credentials are sent to it.
    let bb = body(json!([hop(B, 2200)]));
    let id = on_c(Box::new(move || {
        let id = open(a, &bb);
        call(a, "DELETE", &format!("/session/{id}"), Some(TOKEN), None)
    }));
    assert_eq!(id.status, 204);
    // Restart the `rot` sshd with a new host key (its listener is the last sshd started).
    let mut rot = lab.sshds.pop().unwrap();
    let _ = rot.kill();
    let _ = rot.wait();
    keygen(&lab.dir.join("rot").join("host_ed25519"));
    let rot_log2 = lab.sshd(&b, B, 2200, "rot", true);
    assert_ne!(rot_log, rot_log2);
    let journal_before = dev.journal().len();
    let bb = body(json!([hop(B, 2200)]));
    let r = on_c(Box::new(move || post(a, "/session", &bb)));
    assert_eq!(r.status, 502, "{}", detail(&r));
    assert!(
        detail(&r).starts_with(&format!("Connection error: jump host 1 ({B}:2200): ")),
        "{}",
        detail(&r)
    );
    assert!(
        detail(&r).to_lowercase().contains("host key"),
        "{}",
        detail(&r)
    );
    std::thread::sleep(Duration::from_millis(300));
    let sshd_log = std::fs::read_to_string(&rot_log2).unwrap();
    assert!(sshd_log.contains("Connection from"), "{sshd_log}");
    assert!(
        !sshd_log.contains("userauth-request")
            && !sshd_log.contains("Accepted")
            && !sshd_log.contains("Failed"),
        "credentials reached a hop whose host key was refused:\n{sshd_log}"
    );
    assert_eq!(dev.journal().len(), journal_before);

    // The bastion dies mid-session: the session is found dead, naming the hop; exec is 410.
    let bb = body(json!([hop(B, 22)]));
    let (id, r) = in_ns(&c, move || {
        let id = open(a, &bb);
        let r = exec(a, &id, "show version");
        (id, r)
    });
    assert_eq!(r.status, 200);
    Lab::kill_all(&b);
    let st = in_ns(&c, move || {
        let mut st = Value::Null;
        wait_until(Duration::from_secs(40), || {
            st = get(a, &format!("/session/{id}/status"));
            st["alive"] == json!(false)
        });
        let r = exec(a, &id, "show version");
        (st, r.status, r.json())
    });
    let (status, code, body) = st;
    assert_eq!(status["alive"], json!(false), "{status}");
    assert!(
        status["dead_reason"]
            .as_str()
            .is_some_and(|r| r.contains(&format!("jump host 1 ({B}:22)"))),
        "{status}"
    );
    assert_eq!(code, 410, "{body}");
    let log = broker.log_text();
    broker.term();
    for canary in [HOP_PASSWORD, PASSWORD] {
        assert!(!log.contains(canary), "{canary} in the broker log");
    }
}

/// `ansible-playbook` from the venv `.ci/run` makes (`.venv`, tests/external/requirements.txt),
/// else from PATH; and the Python next to it, for the modules.
fn ansible_playbook() -> Option<(PathBuf, PathBuf)> {
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin")];
    if let Some(p) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&p));
    }
    dirs.into_iter().find_map(|d| {
        let bin = d.join("ansible-playbook");
        bin.is_file().then(|| {
            let python = ["python3", "python"]
                .iter()
                .map(|n| d.join(n))
                .find(|p| p.is_file())
                .unwrap_or_else(|| PathBuf::from("/usr/bin/python3"));
            (bin, python)
        })
    })
}

/// Run `cmd` to its end within `limit` (killed past it): (exit status, stdout and stderr).
fn run_bounded(
    mut cmd: Command,
    out: &Path,
    limit: Duration,
) -> (std::process::ExitStatus, String) {
    let f = std::fs::File::create(out).unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap();
    let end = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} still running after {limit:?}:\n{}",
                std::fs::read_to_string(out).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, std::fs::read_to_string(out).unwrap_or_default())
}

/// ansible-core runs the safety-session tasks (tests/external/ansible/jump_safety_session.yml:
/// open, status, show version, a config change, close) inside the broker's namespace against
/// the device behind the bastion. The play names no jump host and holds no bastion
/// credentials: the broker's only config is its `jump_hosts` rule.
#[test]
fn ansible_safety_session_reaches_a_device_through_the_configured_jump_host() {
    let test = "jump::ansible_safety_session_reaches_a_device_through_the_configured_jump_host";
    let Some((playbook_bin, python)) = ansible_playbook() else {
        let why = "ansible-playbook is in neither .venv/bin nor PATH (.ci/run installs \
                   tests/external/requirements.txt into .venv)";
        assert!(std::env::var("CI").is_err(), "CI must run {test}: {why}");
        skip(test, why);
        return;
    };
    let Some(mut lab) = lab_or_skip(test, "g") else {
        return;
    };
    lab.sshd(&lab.b.clone(), B, 22, "b", true);
    let dev = ssh_device(&lab);
    let port = dev.port();
    let yaml = format!(
        "jump_hosts:\n  chains:\n    bastion:\n      - host: {B}\n        username: {HOP_USER}\n        \
         password: {HOP_PASSWORD}\n  rules:\n    - match: [10.214.2.0/24]\n      chain: bastion\n"
    );
    let work = lab.dir.join("ansible");
    std::fs::create_dir_all(work.join("home")).unwrap();
    std::fs::write(work.join("ansible.cfg"), "[defaults]\n").unwrap();
    std::fs::write(
        work.join("inventory.yml"),
        format!("all:\n  children:\n    devices:\n      hosts:\n        sw01:\n          ansible_host: {D1}\n"),
    )
    .unwrap();
    let playbook = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/external/ansible/jump_safety_session.yml");
    let play = std::fs::read_to_string(&playbook).unwrap();
    assert!(
        !play.lines().any(|l| l.trim_start().starts_with("jump:")),
        "the play must not name a jump host"
    );
    let description = "set-through-the-bastion";
    let c = lab.c.clone();
    let dir = work.clone();
    let (status, output, took, log) = in_ns(&c, move || {
        let broker = Broker::serve("jumpg")
            .yaml(&yaml)
            .output(Output::Log)
            .start();
        // Credentials in an extra-vars file, as a vault would hold them; never on argv.
        let vars = json!({
            "broker_url": format!("http://{}", broker.addr),
            "broker_token": TOKEN,
            "local_user": "admin",
            "local_pass": PASSWORD,
            "device_port": port.to_string(),
            "expected_via": format!("{B}:22"),
            "description": description,
        });
        std::fs::write(dir.join("vars.json"), vars.to_string()).unwrap();
        set_mode(&dir.join("vars.json"), 0o600);
        let path = format!(
            "{}:/usr/local/bin:/usr/bin:/bin",
            playbook_bin.parent().unwrap().display()
        );
        let mut cmd = Command::new(&playbook_bin);
        cmd.args(["-i", "inventory.yml", "-e", "@vars.json"])
            .arg(&playbook)
            .current_dir(&dir)
            .env_clear()
            .env("PATH", path)
            .env("HOME", dir.join("home"))
            .env("LC_ALL", "C.UTF-8")
            .env("LANG", "C.UTF-8")
            .env("ANSIBLE_CONFIG", dir.join("ansible.cfg"))
            .env("ANSIBLE_HOME", dir.join("ansible-home"))
            .env("ANSIBLE_LOCAL_TEMP", dir.join("local-tmp"))
            .env("ANSIBLE_REMOTE_TEMP", dir.join("remote-tmp"))
            .env("ANSIBLE_COLLECTIONS_PATH", dir.join("collections"))
            .env("ANSIBLE_ROLES_PATH", dir.join("roles"))
            .env("ANSIBLE_PYTHON_INTERPRETER", &python)
            .env("ANSIBLE_HOST_KEY_CHECKING", "False")
            .env("ANSIBLE_RETRY_FILES_ENABLED", "False")
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_GATHERING", "explicit")
            .env("ANSIBLE_LOCALHOST_WARNING", "False")
            .env("ANSIBLE_STDOUT_CALLBACK", "default")
            .env("PYTHONDONTWRITEBYTECODE", "1");
        let t = Instant::now();
        let (status, output) = run_bounded(cmd, &dir.join("ansible.out"), Duration::from_secs(120));
        let took = t.elapsed();
        let log = broker.log_text();
        broker.term();
        (status, output, took, log)
    });
    let recap = output
        .lines()
        .rev()
        .find(|l| l.contains("ok="))
        .unwrap_or("");
    eprintln!(
        "ansible-playbook through the jump host: {took:?}: {}",
        recap.trim()
    );
    assert!(
        status.success(),
        "ansible-playbook failed ({status}):\n{output}\nbroker log:\n{log}"
    );
    assert!(
        output.contains("failed=0") && output.contains("unreachable=0"),
        "{output}"
    );
    // What the device executed: the play's lines, the description in interface config mode.
    let journal: Vec<(String, String)> = dev
        .journal_entries()
        .into_iter()
        .map(|e| (e.mode, e.line))
        .collect();
    let line = |l: &str| journal.iter().any(|(_, j)| j == l);
    assert!(line("show version"), "{journal:?}");
    assert!(
        journal
            .iter()
            .any(|(m, l)| m == "config-if" && *l == format!("description {description}")),
        "{journal:?}"
    );
    assert!(
        line("interface GigabitEthernet0/1") && line("end"),
        "{journal:?}"
    );
    assert!(
        log.contains(&format!("via {B}:22 (host key")),
        "the open's log line names the bastion:\n{log}"
    );
    for canary in [HOP_PASSWORD, PASSWORD] {
        assert!(!log.contains(canary), "{canary} in the broker log");
        assert!(!output.contains(canary), "{canary} in Ansible's output");
    }
}

const DEVICE_JOURNAL: &str = "NB_JUMP_DEVICE_JOURNAL";

/// The legacy device's shell: sshd's ForceCommand in `legacy_algorithms_on_the_device_only`
/// runs this test binary with this test and `NB_JUMP_DEVICE_JOURNAL`; the fake device on the
/// session's pty, its journal appended to that file when the session ends.
#[test]
#[ignore = "run by legacy_algorithms_on_the_device_only as an sshd ForceCommand"]
fn legacy_device_shell() {
    let Some(journal) = std::env::var_os(DEVICE_JOURNAL) else {
        return;
    };
    let cfg = DeviceConfig {
        start_privileged: true,
        ..Default::default()
    };
    let lines = fake_device::stdio::run(cfg)
        .map(|log| log.journal())
        .unwrap_or_default();
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(journal) {
        use std::io::Write;
        let _ = writeln!(f, "{}", lines.join("\n"));
    }
    std::process::exit(0);
}

/// This test binary at a path that other users (the sshd's login user) can run: where it is,
/// when every directory above it lets them through, else linked or copied into `dir`.
fn exe_for_others(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let exe = std::env::current_exe().unwrap();
    let others_x =
        |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0);
    if exe.ancestors().all(others_x) {
        return exe;
    }
    let there = dir.join("it-device-shell");
    if std::fs::hard_link(&exe, &there).is_err() {
        std::fs::copy(&exe, &there).unwrap();
    }
    set_mode(&there, 0o755);
    there
}

/// What the broker's SSH client offered an sshd (its DEBUG2 log of the peer's KEXINIT):
/// (kex, host key algorithms, ciphers client to server).
fn client_offers(sshd_log: &str) -> Vec<[Vec<String>; 3]> {
    let mut out = Vec::new();
    let mut lines = sshd_log.lines();
    while lines.any(|l| l.contains("peer client KEXINIT proposal")) {
        let mut get = |key: &str| -> Vec<String> {
            lines
                .by_ref()
                .find_map(|l| l.split_once(key).map(|(_, v)| v.trim().to_string()))
                .unwrap_or_default()
                .split(',')
                .map(str::to_string)
                .collect()
        };
        let kex = get("KEX algorithms:");
        let host_key = get("host key algorithms:");
        let ciphers = get("ciphers ctos:");
        out.push([kex, host_key, ciphers]);
    }
    out
}

/// A device behind a modern bastion that speaks only SHA-1 key exchange, `ssh-rsa` and CBC (a
/// real OpenSSH sshd, its ForceCommand the fake device): `legacy_algorithms` on the device
/// applies to the device, not the hop. Without it the open fails naming the device.
#[test]
fn legacy_algorithms_on_the_device_only() {
    let test = "jump::legacy_algorithms_on_the_device_only";
    let Some(mut lab) = lab_or_skip(test, "l") else {
        return;
    };
    let (b, d) = (lab.b.clone(), lab.d.clone());
    let hop_log = lab.sshd_with(&b, B, 22, "b", true, "LogLevel DEBUG2\n");
    let keys = lab.dir.join("legacy-keys");
    std::fs::create_dir_all(&keys).unwrap();
    let rsa = keys.join("host_rsa");
    keygen_of("rsa", &rsa);
    let journal = lab.dir.join("legacy-journal");
    std::fs::write(&journal, "").unwrap();
    set_mode(&journal, 0o666);
    let exe = exe_for_others(&lab.dir);
    let extra = format!(
        "LogLevel DEBUG2\nHostKey {}\nKexAlgorithms diffie-hellman-group14-sha1\n\
         HostKeyAlgorithms ssh-rsa\nCiphers aes128-cbc\nMACs hmac-sha1\nPermitTTY yes\n\
         ForceCommand {DEVICE_JOURNAL}={} exec {} jump::legacy_device_shell --exact \
         --include-ignored --nocapture --test-threads 1\n",
        rsa.display(),
        journal.display(),
        exe.display()
    );
    let dev_log = lab.sshd_with(&d, D1, 2022, "legacy", false, &extra);
    let yaml = format!(
        "jump_hosts:\n  chains:\n    bastion:\n      - host: {B}\n        username: {HOP_USER}\n        \
         password: {HOP_PASSWORD}\n  rules:\n    - match: [{D1}/32]\n      chain: bastion\n"
    );
    let c = lab.c.clone();
    let j = journal.clone();
    // What the device executed: its shell appends its journal when the session ends.
    let executed = move |line: &str| {
        wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&j)
                .unwrap_or_default()
                .lines()
                .any(|l| l == line)
        })
    };
    let (refused, opened, status, by_rule, log) = in_ns(&c, move || {
        let broker = Broker::serve("jumpl")
            .yaml(&yaml)
            .output(Output::Log)
            .start();
        let a = broker.addr;
        let body = |legacy: Option<bool>, jump: Option<Value>| {
            let mut v = json!({"host": D1, "port": 2022, "username": HOP_USER,
                               "password": HOP_PASSWORD, "timeout": 15});
            if let Some(l) = legacy {
                v["legacy_algorithms"] = json!(l);
            }
            if let Some(j) = jump {
                v["jump"] = j;
            }
            v
        };
        let refused = post(a, "/session", &body(None, Some(json!([hop(B, 22)]))));
        let id = open(a, &body(Some(true), Some(json!([hop(B, 22)]))));
        let r = exec(a, &id, "show version");
        let status = get(a, &format!("/session/{id}/status"));
        call(a, "DELETE", &format!("/session/{id}"), Some(TOKEN), None);
        assert!(
            executed("show version"),
            "the device's journal has no show version"
        );
        // The config's rule: the same, with no jump in the request.
        let id = open(a, &body(Some(true), None));
        let via = get(a, &format!("/session/{id}/status"))["via"].clone();
        let clock = exec(a, &id, "show clock").status;
        call(a, "DELETE", &format!("/session/{id}"), Some(TOKEN), None);
        assert!(
            executed("show clock"),
            "the device's journal has no show clock"
        );
        let log = broker.log_text();
        broker.term();
        (refused, r, status, (via, clock), log)
    });
    let detail = refused.json()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(refused.status, 502, "{detail}");
    assert!(
        detail.starts_with(&format!(
            "Connection error: SSH handshake with {D1} failed in key exchange"
        )) && detail.contains("legacy_algorithms")
            && !detail.contains("jump host"),
        "the device is named, not the hop: {detail}"
    );
    assert_eq!(
        opened.status,
        200,
        "{}",
        String::from_utf8_lossy(&opened.body)
    );
    assert!(
        opened.json()["outputs"]["show version"]
            .as_str()
            .is_some_and(|o| o.contains("Cisco IOS Software")),
        "{}",
        opened.json()
    );
    assert_eq!(status["via"], json!([format!("{B}:22")]), "{status}");
    assert_eq!(by_rule, (json!([format!("{B}:22")]), 200));
    // The device's sshd saw the legacy algorithms offered and negotiated them.
    std::thread::sleep(Duration::from_millis(300));
    let dev_sshd = std::fs::read_to_string(&dev_log).unwrap();
    for want in [
        "kex: algorithm: diffie-hellman-group14-sha1",
        "kex: host key algorithm: ssh-rsa",
        "cipher: aes128-cbc",
    ] {
        assert!(
            dev_sshd.contains(want),
            "{want} not in the device's sshd log:\n{dev_sshd}"
        );
    }
    let dev_offers = client_offers(&dev_sshd);
    assert_eq!(
        dev_offers.len(),
        3,
        "three connections to the device:\n{dev_sshd}"
    );
    assert!(
        !dev_offers[0][0].iter().any(|k| k.ends_with("-sha1"))
            && dev_offers[1..]
                .iter()
                .all(|o| o[0].iter().any(|k| k == "diffie-hellman-group14-sha1")),
        "{dev_offers:?}"
    );
    // The hop was offered modern algorithms only, every time.
    let hop_offers = client_offers(&std::fs::read_to_string(&hop_log).unwrap());
    assert_eq!(hop_offers.len(), 3, "three connections to the hop");
    for [kex, host_key, ciphers] in &hop_offers {
        assert!(
            !kex.iter().any(|k| k.ends_with("-sha1"))
                && !host_key.iter().any(|h| h == "ssh-rsa" || h == "ssh-dss")
                && !ciphers.iter().any(|c| c.ends_with("-cbc")),
            "a legacy algorithm offered to the hop: {kex:?} {host_key:?} {ciphers:?}"
        );
    }
    for canary in [HOP_PASSWORD, PASSWORD] {
        assert!(!log.contains(canary), "{canary} in the broker log");
    }
}

/// `allowed_hosts` refuses a hop: 403 naming it, and nothing is connected anywhere (every
/// bastion's sshd logs no connection; the device saw nothing), whether the hop is the first or
/// a later one, comes from the request or the config's rule; a refused device behind an
/// allowed hop likewise. Then an allowed chain connects (the witness works).
#[test]
fn allowed_hosts_refuses_a_hop_before_anything_connects() {
    let test = "jump::allowed_hosts_refuses_a_hop_before_anything_connects";
    let Some(mut lab) = lab_or_skip(test, "r") else {
        return;
    };
    let (b, b2) = (lab.b.clone(), lab.b2.clone());
    // A second address of bastion 1, outside the allow-list.
    const B3: &str = "10.214.1.3";
    ip(&["-n", &b, "addr", "add", &format!("{B3}/32"), "dev", "lo"]).unwrap();
    let b_log = lab.sshd(&b, B, 22, "b", true);
    let b3_log = lab.sshd(&b, B3, 22, "b3", true);
    let b2_log = lab.sshd(&b2, B2, 22, "b2", true);
    let dev = ssh_device(&lab);
    let port = dev.port();
    let yaml = format!(
        "allowed_hosts: [{B}/32, 10.214.2.0/24, 10.214.4.0/24]\njump_hosts:\n  chains:\n    \
         refused:\n      - host: {B3}\n        username: {HOP_USER}\n        password: {HOP_PASSWORD}\n  \
         rules:\n    - match: [10.214.2.0/24]\n      chain: refused\n"
    );
    let c = lab.c.clone();
    let broker = in_ns(&c, move || {
        Broker::serve("jumpr")
            .yaml(&yaml)
            .output(Output::Log)
            .start()
    });
    let a = broker.addr;
    let body = move |host: &str, jump: Option<Value>| {
        let mut v = json!({"host": host, "port": port, "username": "admin",
                           "password": PASSWORD, "timeout": 10});
        if let Some(j) = jump {
            v["jump"] = j;
        }
        v
    };
    let cases = [
        ("hop 1 in the request", body(D1, Some(json!([hop(B3, 22)])))),
        ("hop 1 of the config's rule", body(D1, None)),
        ("hop 2", body(D2, Some(json!([hop(B, 22), hop(B2, 22)])))),
        ("the device", body(B2, Some(json!([hop(B, 22)])))),
    ];
    let answers: Vec<(&str, u16, String)> = in_ns(&c, move || {
        cases
            .iter()
            .map(|(what, body)| {
                let r = post(a, "/session", body);
                let d = r.json()["detail"].as_str().unwrap_or_default().to_string();
                (*what, r.status, d)
            })
            .collect()
    });
    let expect = [
        format!("jump host 1 ({B3}:22): {B3} ({B3}) is not in allowed_hosts"),
        format!("jump host 1 ({B3}:22): {B3} ({B3}) is not in allowed_hosts"),
        format!("jump host 2 ({B2}:22): {B2} ({B2}) is not in allowed_hosts"),
        format!("{B2} ({B2}) is not in allowed_hosts"),
    ];
    for ((what, status, detail), want) in answers.iter().zip(&expect) {
        assert_eq!(*status, 403, "{what}: {detail}");
        assert_eq!(detail, &format!("Forbidden: {want}"), "{what}");
    }
    std::thread::sleep(Duration::from_millis(300));
    for (log, name) in [(&b_log, "b"), (&b3_log, "b3"), (&b2_log, "b2")] {
        let log = std::fs::read_to_string(log).unwrap();
        assert!(
            !log.contains("Connection from"),
            "a refused chain connected to {name}:\n{log}"
        );
    }
    assert!(dev.journal().is_empty() && dev.auth_methods_tried().is_empty());
    // The witness: an allowed chain does connect, and its sshd logs it.
    let allowed = body(D1, Some(json!([hop(B, 22)])));
    in_ns(&c, move || {
        let id = open(a, &allowed);
        assert_eq!(exec(a, &id, "show clock").status, 200);
    });
    let log = std::fs::read_to_string(&b_log).unwrap();
    assert!(log.contains("Connection from"), "{log}");
    assert!(
        dev.journal().iter().any(|l| l == "show clock"),
        "{:?}",
        dev.journal()
    );
    broker.term();
}

/// A TCP port in namespace `ns` that completes the TCP handshake and then says nothing: a
/// listener nobody accepts from.
fn silent_port(ns: &str, addr: &str, port: u16) -> std::net::TcpListener {
    let at = format!("{addr}:{port}");
    in_ns(ns, move || std::net::TcpListener::bind(at).unwrap())
}

/// A TCP port in namespace `ns` whose SYNs go unanswered, as behind a firewall's DROP: a
/// listener with a backlog of 0 whose one place is taken by a connection nobody accepts, so the
/// kernel drops every later SYN. Keep both until the test ends.
fn dropping_port(ns: &str, addr: &str, port: u16) -> (std::net::TcpListener, Vec<TcpStream>) {
    use std::os::fd::AsRawFd;
    let at: SocketAddr = format!("{addr}:{port}").parse().unwrap();
    in_ns(ns, move || {
        let l = std::net::TcpListener::bind(at).unwrap();
        // SAFETY: listen(2) again on a listening socket only changes its backlog.
        assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
        let mut queued = Vec::new();
        for _ in 0..4 {
            match TcpStream::connect_timeout(&at, Duration::from_millis(500)) {
                Ok(s) => queued.push(s),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return (l, queued),
                Err(e) => panic!("{at}: {e}"),
            }
        }
        panic!(
            "{at} still answers SYNs with {} connections queued",
            queued.len()
        );
    })
}

/// A hop that does not answer in time: its port drops SYNs, or it accepts and never speaks SSH
/// (hop 1, or hop 2 behind a live hop 1), or it cannot reach the device (SYNs dropped there):
/// each open answers 504 naming the hop within its `timeout`, and leaves no thread behind.
#[test]
fn a_hop_that_does_not_answer_times_out_naming_the_hop() {
    let test = "jump::a_hop_that_does_not_answer_times_out_naming_the_hop";
    let Some(mut lab) = lab_or_skip(test, "t") else {
        return;
    };
    let (b, b2, d) = (lab.b.clone(), lab.b2.clone(), lab.d.clone());
    lab.sshd(&b, B, 22, "b", true);
    let _drop1 = dropping_port(&b, B, 2201);
    let _silent1 = silent_port(&b, B, 2202);
    let _silent2 = silent_port(&b2, B2, 2202);
    let _drop_dev = dropping_port(&d, D1, 2301);
    const TIMEOUT: f64 = 3.0;
    let cases: Vec<(Value, String)> = vec![
        (
            json!([hop(B, 2201)]),
            format!("jump host 1 ({B}:2201): TCP connect to {B} did not complete in time"),
        ),
        (
            json!([hop(B, 2202)]),
            format!("jump host 1 ({B}:2202): SSH handshake to {B} did not complete in time"),
        ),
        (
            json!([hop(B, 22), hop(B2, 2202)]),
            format!("jump host 2 ({B2}:2202): SSH handshake to {B2} did not complete in time"),
        ),
        (
            json!([hop(B, 22)]),
            format!(
                "jump host 1 ({B}:22): opening the forward to the device {D1}:2301 did not \
                 complete in time"
            ),
        ),
    ];
    let c = lab.c.clone();
    let (answers, threads) = in_ns(&c.clone(), move || {
        let broker = Broker::serve("jumpt").output(Output::Log).start();
        let a = broker.addr;
        std::thread::sleep(Duration::from_millis(300));
        let base = broker.threads();
        // All four at once: each is bounded by its own deadline.
        let waits: Vec<_> = cases
            .into_iter()
            .map(|(jump, want)| {
                let port = if want.contains(":2301") { 2301 } else { 22 };
                let body = json!({"host": D1, "port": port, "username": "admin",
                                  "password": PASSWORD, "timeout": TIMEOUT, "jump": jump});
                let c = c.clone();
                std::thread::spawn(move || {
                    enter(&c);
                    let t = Instant::now();
                    let r = post(a, "/session", &body);
                    let took = t.elapsed();
                    let detail = r.json()["detail"].as_str().unwrap_or_default().to_string();
                    (r.status, detail, took, want)
                })
            })
            .collect();
        let answers: Vec<_> = waits.into_iter().map(|h| h.join().unwrap()).collect();
        let settled = wait_until(Duration::from_secs(5), || broker.threads() <= base);
        let threads = (base, broker.threads(), settled);
        broker.term();
        (answers, threads)
    });
    for (status, detail, took, _) in &answers {
        eprintln!("{status} in {took:?}: {detail}");
    }
    for (status, detail, took, want) in answers {
        assert_eq!(status, 504, "{detail}");
        assert_eq!(detail, format!("Connection timed out: {want}"));
        let t = Duration::from_secs_f64(TIMEOUT);
        assert!(
            took >= t - Duration::from_millis(200) && took < t + Duration::from_secs(2),
            "answered in {took:?} for a {TIMEOUT} s timeout: {detail}"
        );
    }
    let (base, now, settled) = threads;
    assert!(settled, "threads left behind: {now}, {base} before");
}
