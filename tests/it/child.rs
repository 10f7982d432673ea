//! The real broker binary as a child process: the one helper of every test that runs it
//! (abuse, faults, hardening, policy, process, soak). The child has its own fd table, threads
//! and memory (`/proc/PID/{fd,task,status}`), its own log, signals and exit code.
//!
//! ```ignore
//! // `serve` with a private state_dir, `log_level: INFO` and these keys; the test token in the
//! // environment; stdout and stderr in `b.log`; started once GET /health answers 200.
//! let b = Broker::serve("tag").yaml("max_sessions: 3\n").nofile(1024).start();
//! // A config file of the test's own, no token in the environment, output piped.
//! let p = Broker::serve("tag").config(&cfg).token(None).output(Output::Piped).start();
//! p.hup();
//! let status = p.wait_exit(Duration::from_secs(10));
//! // Any other command line, run to the end: (exit code, stdout, stderr).
//! let (code, out, err) = run(&["--version"], None);
//! ```
//!
//! The binary is `$NETDEV_BROKER_BIN` when set (the soak script points it at the release build),
//! else the one cargo built for this test run.

use crate::support::*;
use serde_json::{json, Value};
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> PathBuf {
    match std::env::var_os("NETDEV_BROKER_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_netdev-broker")),
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Run the binary with `args` to its end, stdin empty, `NETDEV_BROKER_API_TOKEN` set to
/// `env_token` or removed: (exit code or -1, stdout, stderr).
pub fn run<S: AsRef<OsStr>>(args: &[S], env_token: Option<&str>) -> (i32, String, String) {
    let mut c = Command::new(bin());
    c.args(args)
        .env_remove("NETDEV_BROKER_API_TOKEN")
        .stdin(Stdio::null());
    if let Some(t) = env_token {
        c.env("NETDEV_BROKER_API_TOKEN", t);
    }
    let o = c.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

/// Raise this process's soft fd limit to its hard limit (the tests hold hundreds of sockets).
pub fn raise_nofile() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
    l.rlim_cur
}

/// Where the child's stdout and stderr go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Both into one file, `Broker::log` (a panic message would be there): the default.
    Log,
    /// Both piped, read with `Broker::read_output` once the child has exited.
    Piped,
    /// Stdout piped (`Broker::take_stdout`), stderr discarded.
    StdoutPiped,
    /// Both discarded.
    Null,
}

enum Config {
    /// `config.yml` in the broker's directory: `log_level: INFO`, `state_dir` and these keys.
    Yaml(String),
    /// A file of the test's own, as it is.
    Path(PathBuf),
    /// No `--config` at all.
    None,
}

/// Makes the command that starts the broker from its command line (`Spawn::wrap`).
type Wrap = Box<dyn FnOnce(&str) -> Command>;

/// How to start a broker; `Broker::serve` makes one, `start` runs it.
#[must_use]
pub struct Spawn {
    dir: PathBuf,
    config: Config,
    argv: Option<Vec<OsString>>,
    args: Vec<OsString>,
    token: Option<String>,
    env: Vec<(OsString, OsString)>,
    output: Output,
    nofile: Option<u64>,
    fsize: Option<u64>,
    uid_gid: Option<(u32, u32)>,
    wrap: Option<Wrap>,
    wait: bool,
}

impl Spawn {
    /// The broker's private directory (made by `Broker::serve`, removed with the `Broker`):
    /// its state_dir, config.yml and log, and a place for paths its config names.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `serve --config DIR/config.yml` with `log_level: INFO`, `state_dir: DIR` and `extra`.
    pub fn yaml(mut self, extra: &str) -> Self {
        self.config = Config::Yaml(extra.to_string());
        self
    }

    /// `serve --config PATH`, the file as the test wrote it.
    pub fn config(mut self, path: &Path) -> Self {
        self.config = Config::Path(path.to_path_buf());
        self
    }

    /// `serve` without `--config`.
    pub fn no_config(mut self) -> Self {
        self.config = Config::None;
        self
    }

    /// More arguments after `serve --config … --port …`.
    #[allow(dead_code)] // no test passes `serve` more flags today
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// The whole command line instead of `serve …` (`demo --port=0`); nothing is waited for.
    pub fn argv<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, argv: I) -> Self {
        self.argv = Some(
            argv.into_iter()
                .map(|a| a.as_ref().to_os_string())
                .collect(),
        );
        self.wait = false;
        self
    }

    /// `NETDEV_BROKER_API_TOKEN` (default: the test token); `None` removes it.
    pub fn token(mut self, token: Option<&str>) -> Self {
        self.token = token.map(str::to_string);
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    pub fn output(mut self, output: Output) -> Self {
        self.output = output;
        self
    }

    /// RLIMIT_NOFILE soft = hard = `n` (at most the current hard limit) in the child, so that
    /// limits derived from it do not depend on the shell that runs the tests.
    pub fn nofile(mut self, n: u64) -> Self {
        self.nofile = Some(n);
        self
    }

    /// RLIMIT_FSIZE soft = hard = `bytes` in the child, with SIGXFSZ ignored (a write past the
    /// limit then fails with EFBIG instead of killing it).
    pub fn fsize(mut self, bytes: u64) -> Self {
        self.fsize = Some(bytes);
        self
    }

    /// Run the child as this user and group (needs root).
    pub fn uid_gid(mut self, uid: u32, gid: u32) -> Self {
        self.uid_gid = Some((uid, gid));
        self
    }

    /// Start the broker through another program: `f` gets the broker's command line (joined
    /// with spaces, for `sh -c`) and returns the command to spawn instead. Output, environment
    /// and limits are applied to that command.
    pub fn wrap(mut self, f: impl FnOnce(&str) -> Command + 'static) -> Self {
        self.wrap = Some(Box::new(f));
        self
    }

    /// Return as soon as the process is spawned (`Broker::wait_health` waits later).
    pub fn no_wait(mut self) -> Self {
        self.wait = false;
        self
    }

    pub fn start(self) -> Broker {
        let dir = self.dir;
        let port = free_port();
        let argv = match self.argv {
            Some(argv) => argv,
            None => {
                let mut v: Vec<OsString> = vec!["serve".into()];
                let cfg = match self.config {
                    Config::Yaml(extra) => {
                        let cfg = dir.join("config.yml");
                        std::fs::write(
                            &cfg,
                            format!("log_level: INFO\nstate_dir: {}\n{extra}", dir.display()),
                        )
                        .unwrap();
                        Some(cfg)
                    }
                    Config::Path(p) => Some(p),
                    Config::None => None,
                };
                if let Some(cfg) = cfg {
                    v.push("--config".into());
                    v.push(cfg.into());
                }
                v.push("--port".into());
                v.push(port.to_string().into());
                v.extend(self.args);
                v
            }
        };
        let mut c = match self.wrap {
            Some(f) => {
                let mut line = bin().display().to_string();
                for a in &argv {
                    line.push(' ');
                    line.push_str(&a.to_string_lossy());
                }
                f(&line)
            }
            None => {
                let mut c = Command::new(bin());
                c.args(&argv);
                c
            }
        };
        match &self.token {
            Some(t) => c.env("NETDEV_BROKER_API_TOKEN", t),
            None => c.env_remove("NETDEV_BROKER_API_TOKEN"),
        };
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.stdin(Stdio::null());
        let log = dir.join("broker.log");
        match self.output {
            Output::Log => {
                let out = std::fs::File::create(&log).unwrap();
                let err = out.try_clone().unwrap();
                c.stdout(out).stderr(err);
            }
            Output::Piped => {
                c.stdout(Stdio::piped()).stderr(Stdio::piped());
            }
            Output::StdoutPiped => {
                c.stdout(Stdio::piped()).stderr(Stdio::null());
            }
            Output::Null => {
                c.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        if let Some((uid, gid)) = self.uid_gid {
            c.uid(uid).gid(gid);
        }
        let (nofile, fsize) = (self.nofile, self.fsize);
        if nofile.is_some() || fsize.is_some() {
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                c.pre_exec(move || {
                    if let Some(n) = nofile {
                        let mut l = libc::rlimit {
                            rlim_cur: 0,
                            rlim_max: 0,
                        };
                        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
                        let lim = n.min(l.rlim_max);
                        let l = libc::rlimit {
                            rlim_cur: lim,
                            rlim_max: lim,
                        };
                        if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    if let Some(n) = fsize {
                        let l = libc::rlimit {
                            rlim_cur: n,
                            rlim_max: n,
                        };
                        if libc::setrlimit(libc::RLIMIT_FSIZE, &l) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    }
                    Ok(())
                });
            }
        }
        let child = c.spawn().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut b = Broker {
            child,
            addr,
            dir,
            log,
            output: self.output,
        };
        if self.wait {
            assert!(
                b.wait_health(Duration::from_secs(15)),
                "broker did not start: {}",
                b.log_text()
            );
        }
        b
    }
}

/// A broker child process; killed on drop (its directory is removed).
pub struct Broker {
    child: Child,
    /// 127.0.0.1 and the `--port` it was given.
    pub addr: SocketAddr,
    /// Its private directory (state_dir and config.yml of `Spawn::yaml`, the log).
    pub dir: PathBuf,
    /// Its stdout and stderr under `Output::Log`.
    pub log: PathBuf,
    output: Output,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("ABUSE_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Broker {
    /// `serve` with `log_level: INFO` and a private state_dir (made now: `Spawn::dir`), the
    /// test token from the environment, output into `log`; `start` returns once GET /health
    /// answers 200.
    pub fn serve(tag: &str) -> Spawn {
        Spawn {
            dir: tmpdir(tag),
            config: Config::Yaml(String::new()),
            argv: None,
            args: Vec::new(),
            token: Some(TOKEN.to_string()),
            env: Vec::new(),
            output: Output::Log,
            nofile: None,
            fsize: None,
            uid_gid: None,
            wrap: None,
            wait: true,
        }
    }

    /// `Broker::serve(tag).yaml(extra_yaml).nofile(nofile).start()`.
    pub fn spawn(tag: &str, extra_yaml: &str, nofile: u64) -> Broker {
        Broker::serve(tag).yaml(extra_yaml).nofile(nofile).start()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Alive and GET /health answered 200 within `timeout` (a complete request, not a bare
    /// connect, which would hold an idle connection and its thread for the head timeout).
    pub fn wait_health(&mut self, timeout: Duration) -> bool {
        let addr = self.addr;
        wait_until(timeout, || self.alive() && health(addr))
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child process.
        unsafe { libc::kill(self.pid() as i32, sig) };
    }

    pub fn term(&self) {
        self.signal(libc::SIGTERM);
    }

    pub fn hup(&self) {
        self.signal(libc::SIGHUP);
    }

    /// SIGKILL, then reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its exit status, waiting at most `deadline`; None if it is still running then.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let t = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            if t.elapsed() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its stdout under `Output::Piped` or `Output::StdoutPiped` (once).
    pub fn take_stdout(&mut self) -> ChildStdout {
        self.child.stdout.take().expect("stdout is piped")
    }

    /// Everything it wrote under `Output::Piped`: (stdout, stderr), read to the end (so after
    /// it exited or was killed).
    pub fn read_output(&mut self) -> (String, String) {
        let mut out = String::new();
        let mut err = String::new();
        self.child
            .stdout
            .take()
            .expect("stdout is piped")
            .read_to_string(&mut out)
            .unwrap();
        self.child
            .stderr
            .take()
            .expect("stderr is piped")
            .read_to_string(&mut err)
            .unwrap();
        (out, err)
    }

    pub fn threads(&self) -> usize {
        count_dir(&format!("/proc/{}/task", self.pid()))
    }

    pub fn fds(&self) -> usize {
        count_dir(&format!("/proc/{}/fd", self.pid()))
    }

    /// A `kB` field of /proc/PID/status (VmRSS, VmHWM, ...), in KiB.
    pub fn status_kb(&self, field: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        s.lines()
            .find_map(|l| {
                l.strip_prefix(field)
                    .and_then(|r| r.strip_prefix(':'))
                    .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    }

    pub fn rss_kb(&self) -> u64 {
        self.status_kb("VmRSS")
    }

    pub fn hwm_kb(&self) -> u64 {
        self.status_kb("VmHWM")
    }

    /// Reset the peak RSS (VmHWM) to the current RSS (`clear_refs` 5, Linux 4.0+). False if the
    /// kernel refused, in which case VmHWM is the peak since start.
    pub fn reset_hwm(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").is_ok()
    }

    /// What it wrote under `Output::Log` (empty otherwise).
    pub fn log_text(&self) -> String {
        if self.output != Output::Log {
            return String::new();
        }
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Log lines that report a panic (the panic hook's `panicked at`, the worker's `handler
    /// panicked`).
    pub fn panics(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains("panicked"))
            .map(|l| l.to_string())
            .collect()
    }

    pub fn health_ok(&self) -> bool {
        health(self.addr)
    }

    /// Wait until threads and fds are back to at most `threads` and `fds`.
    pub fn settle(&self, threads: usize, fds: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.threads() <= threads && self.fds() <= fds)
    }

    /// A request with the test token.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Resp {
        let b = body.map(|b| b.to_string());
        call(self.addr, method, path, Some(TOKEN), b.as_deref())
    }

    /// Open a session on a fake device at 127.0.0.1:`port`; panics unless 201.
    pub fn open(&self, port: u16) -> String {
        let body = json!({"host": "127.0.0.1", "port": port, "username": "admin", "password": PASSWORD, "timeout": 10});
        let r = self.call("POST", "/session", Some(&body));
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        r.json()["session_id"].as_str().unwrap().to_string()
    }

    /// Exec with the body's `timeout` (seconds) set.
    pub fn exec(&self, id: &str, cmds: Value, timeout: f64) -> Resp {
        self.call(
            "POST",
            &format!("/session/{id}/exec"),
            Some(&json!({"commands": cmds, "timeout": timeout})),
        )
    }
}

/// `GET /health` answered 200 (on a new connection, closed after).
pub fn health(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    buf.starts_with(b"HTTP/1.1 200 ")
}

pub fn count_dir(p: &str) -> usize {
    std::fs::read_dir(p).map(|d| d.count()).unwrap_or(0)
}

/// Percentile (0..=100) of a sorted slice.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}
