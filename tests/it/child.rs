//! The real broker binary as a child process, for the abuse and soak tests: its own fd table,
//! threads and memory (`/proc/PID/{fd,task,status}`) and its own log (stdout and stderr go to a
//! file, so a panic message would be there).
//!
//! The binary is `$NETDEV_BROKER_BIN` when set (the soak script points it at the release build),
//! else the one cargo built for this test run.

use crate::support::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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

/// A broker child process; killed on drop (its directory is removed).
pub struct Broker {
    child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub log: PathBuf,
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
    /// Start `serve` with `log_level: INFO`, a private state_dir and `extra_yaml`, the test token
    /// from the environment, and a soft=hard RLIMIT_NOFILE of `nofile` (so that limits derived
    /// from it do not depend on the shell that runs the tests).
    pub fn spawn(tag: &str, extra_yaml: &str, nofile: u64) -> Broker {
        let dir = tmpdir(tag);
        let cfg = dir.join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "log_level: INFO\nstate_dir: {}\n{extra_yaml}",
                dir.display()
            ),
        )
        .unwrap();
        let log = dir.join("broker.log");
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let port = free_port();
        let mut c = Command::new(bin());
        c.args([
            "serve",
            "--config",
            cfg.to_str().unwrap(),
            "--port",
            &port.to_string(),
        ])
        .env("NETDEV_BROKER_API_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            c.pre_exec(move || {
                let mut l = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
                let lim = nofile.min(l.rlim_max);
                let l = libc::rlimit {
                    rlim_cur: lim,
                    rlim_max: lim,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = c.spawn().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut b = Broker {
            child,
            addr,
            dir,
            log,
        };
        // A complete request (not a bare connect, which would hold an idle connection and its
        // thread in the broker for the head timeout).
        assert!(
            wait_until(Duration::from_secs(15), || b.alive() && health(addr)),
            "broker did not start: {}",
            b.log_text()
        );
        b
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
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

    pub fn log_text(&self) -> String {
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
