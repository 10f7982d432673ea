//! Transports move bytes and nothing else: read with a deadline, write, keepalive, close.
//! They know nothing of prompts or platforms.

mod error;
#[cfg(feature = "ssh")]
pub mod jump;
#[cfg(test)]
pub mod scripted;
#[cfg(feature = "ssh")]
pub mod ssh;
pub mod telnet;

pub use error::{Cause, ConnectError};

use crate::policy::{Algorithms, HostKeyPolicy, HostKeySeen, HostList};
use crate::secret::Secret;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most jump hosts in one chain.
pub const MAX_HOPS: usize = 3;

/// One jump host and the login the broker uses on it.
#[derive(Clone)]
pub struct Hop {
    pub host: String,
    pub port: u16,
    pub username: String,
    /// May be empty with key auth.
    pub password: Secret,
    /// Already checked to lie inside key_dir.
    pub key_file: Option<std::path::PathBuf>,
    pub passphrase: Option<Secret>,
    pub algorithms: Algorithms,
    pub host_key_policy: HostKeyPolicy,
}

impl Hop {
    /// `host:port`, as the status and the errors name it.
    pub fn addr(&self) -> String {
        host_port(&self.host, self.port)
    }
}

pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// What the broker saw of one hop: its address, host key and algorithms.
#[derive(Debug, Clone)]
pub struct HopSeen {
    pub addr: String,
    pub host_key: HostKeySeen,
    pub negotiated: String,
}

/// A connected byte stream to a device: its TCP socket, or the broker's end of a jump chain's
/// socketpair (a pump thread copies the other end to and from the last hop's channel).
pub enum Stream {
    Tcp(TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Stream {
    pub fn set_nonblocking(&self, on: bool) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(on),
            Stream::Unix(s) => s.set_nonblocking(on),
        }
    }
    pub fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }
}

impl std::io::Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl std::io::Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}

/// Where `telnet-debug` (and nothing in normal operation) receives a line per event.
pub type Trace = Arc<dyn Fn(&str) + Send + Sync>;

/// Bytes as printable text: printable ASCII as is, everything else escaped (`\r`, `\xff`).
pub fn escape_bytes(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b {
        match c {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\\""),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s
}

pub(crate) fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

pub(crate) fn timed_out(what: &str, host: &str) -> ConnectError {
    ConnectError::timed_out(what, host)
}

/// Resolve with a deadline: getaddrinfo has none, so it runs on a short-lived helper thread.
fn resolve(host: &str, port: u16, deadline: Instant) -> Result<Vec<SocketAddr>, ConnectError> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let h = host.to_string();
    std::thread::Builder::new()
        .name("dns".into())
        .spawn(move || {
            let _ = tx.send(
                (h.as_str(), port)
                    .to_socket_addrs()
                    .map(|a| a.collect::<Vec<_>>()),
            );
        })
        .map_err(|source| ConnectError::Local {
            context: "cannot start a resolver thread".into(),
            source,
        })?;
    let wait = remaining(deadline).ok_or_else(|| timed_out("name resolution", host))?;
    match rx.recv_timeout(wait) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err(ConnectError::NoAddress { host: host.into() }),
        Ok(Err(source)) => Err(ConnectError::Resolve {
            host: host.into(),
            source,
        }),
        Err(_) => Err(timed_out("name resolution", host)),
    }
}

/// Where a device connection may go, and how soon a silent peer counts as gone.
#[derive(Clone, Copy)]
pub struct Reach<'a> {
    pub allowed: &'a HostList,
    /// TCP_USER_TIMEOUT: the longest sent data (a command, an SSH or TCP keepalive) may stay
    /// unacknowledged before the kernel declares the connection dead. Zero: the kernel's own
    /// retransmission limit (tcp_retries2, about 15 minutes).
    pub dead_peer_timeout: Duration,
}

fn set_tcp_keepalive(fd: RawFd, dead_peer_timeout: Duration) {
    // Finds a half-open peer: first probe after 60 s idle, then every 10 s, dead after 3 misses.
    // With data in flight (SSH keepalives every 30 s, CLI keepalives, a command), probes are not
    // sent; TCP_USER_TIMEOUT bounds that case (and caps the probes' verdict too).
    let set = |level: libc::c_int, name: libc::c_int, val: libc::c_int| unsafe {
        // SAFETY: fd is a valid socket owned by the TcpStream we hold; the option value is a
        // c_int on the stack whose size we pass.
        libc::setsockopt(
            fd,
            level,
            name,
            &val as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    };
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 60);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 10);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 3);
    if !dead_peer_timeout.is_zero() {
        let ms = dead_peer_timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        set(libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, ms);
    }
}

/// Resolve once, keep only the addresses the allow-list permits (403 if none: nothing is sent to
/// the device), and connect to those same addresses by the deadline, with TCP keepalive and no
/// Nagle.
pub(crate) fn connect_tcp(
    host: &str,
    port: u16,
    reach: Reach,
    deadline: Instant,
) -> Result<TcpStream, ConnectError> {
    let allowed = reach.allowed;
    let resolved = resolve(host, port, deadline)?;
    let addrs: Vec<SocketAddr> = resolved
        .iter()
        .copied()
        .filter(|a| allowed.allows(host, a.ip()))
        .collect();
    if addrs.is_empty() {
        return Err(ConnectError::NotAllowed {
            host: host.into(),
            addresses: resolved.iter().map(|a| a.ip()).collect(),
        });
    }
    let mut last_err = None;
    for a in &addrs {
        let Some(wait) = remaining(deadline) else {
            break;
        };
        match TcpStream::connect_timeout(a, wait) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                set_tcp_keepalive(s.as_raw_fd(), reach.dead_peer_timeout);
                return Ok(s);
            }
            Err(e) => last_err = Some(e),
        }
    }
    match last_err {
        Some(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(timed_out("TCP connect", host)),
        // socket() itself failed here, not the device.
        Some(source) if crate::util::is_resource_exhaustion(&source) => Err(ConnectError::Local {
            context: format!("cannot connect to {host}:{port}"),
            source,
        }),
        Some(source) => Err(ConnectError::Tcp {
            host: host.into(),
            port,
            source,
        }),
        None => Err(timed_out("TCP connect", host)),
    }
}

/// Wait until `fd` is readable (or writable) or the deadline passes.
/// Why a socket reported an error (SO_ERROR), in words a network engineer can act on.
#[cfg_attr(not(feature = "ssh"), allow(dead_code))]
pub(crate) fn socket_error(fd: RawFd) -> String {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the c_int on our stack.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            &mut err as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    if rc != 0 || err == 0 {
        return "socket error".into();
    }
    let e = std::io::Error::from_raw_os_error(err);
    if err == libc::ETIMEDOUT {
        format!("{e}: the device acknowledged nothing within dead_peer_timeout (half-open or unreachable)")
    } else {
        format!("socket error: {e}")
    }
}

pub(crate) fn poll_fd(fd: RawFd, write: bool, deadline: Instant) -> Result<(), TransportError> {
    let left = remaining(deadline).ok_or(TransportError::Timeout)?;
    let mut pfd = libc::pollfd {
        fd,
        events: if write { libc::POLLOUT } else { libc::POLLIN },
        revents: 0,
    };
    let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
    // SAFETY: pfd is a valid pollfd on the stack and we pass a count of 1.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok(());
        }
        return Err(TransportError::Closed(format!("poll failed: {e}")));
    }
    if rc == 0 {
        return Err(TransportError::Timeout);
    }
    if pfd.revents & libc::POLLNVAL != 0 {
        return Err(TransportError::Closed("socket error".into()));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq)]
pub enum TransportError {
    /// Nothing arrived before the deadline.
    Timeout,
    /// The connection is gone (EOF, reset, protocol error).
    Closed(String),
}

pub trait Transport: Send {
    /// Wait until at least one byte arrives (Ok(n > 0)) or the deadline passes (Err(Timeout)).
    fn read(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize, TransportError>;
    /// Whatever is available right now without waiting (Ok(0) = nothing).
    fn try_read(&mut self, buf: &mut [u8]) -> Result<usize, TransportError>;
    fn write_all(&mut self, data: &[u8], deadline: Instant) -> Result<(), TransportError>;
    /// Protocol-level keepalive (SSH keepalive@openssh.com); detects a dead peer eventually.
    fn keepalive(&mut self) -> Result<(), TransportError>;
    /// The descriptor that becomes readable when the device sends something, closes or fails:
    /// an idle session blocks on it (with its inbox's wake-up descriptor) instead of waking on a
    /// timer. None: the session falls back to waking on a timer.
    fn wait_fd(&self) -> Option<RawFd> {
        None
    }
    /// Close politely, giving up at the deadline.
    fn close(&mut self, deadline: Instant);
    fn protocol(&self) -> &'static str;
    /// What was negotiated, for status and the log.
    fn negotiated(&self) -> String;
}

/// Host strings go to getaddrinfo and libssh2 (a NUL byte panics the ssh2 crate): accept only
/// hostnames and IP literals.
pub fn validate_host(host: &str) -> Result<&str, String> {
    let h = host.trim();
    let h = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    if h.is_empty() {
        return Err("host must not be empty".into());
    }
    if h.len() > 253 {
        return Err("host is longer than 253 characters".into());
    }
    if h.parse::<std::net::IpAddr>().is_ok() {
        return Ok(h);
    }
    let ok = h.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if ok {
        Ok(h)
    } else {
        Err(format!(
            "host {:?} is not a valid hostname or IP address",
            host.escape_debug().to_string()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::validate_host;

    #[test]
    fn hosts_are_validated() {
        for ok in [
            "10.0.0.1",
            "::1",
            "[::1]",
            "sw1.lab.example",
            "core_sw-01",
            "fe80::1",
        ] {
            assert!(validate_host(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            " ",
            "a\0b",
            "a b",
            "sw1..lab",
            "a/b",
            "x;rm",
            "é.example",
            &"a".repeat(300),
        ] {
            assert!(validate_host(bad).is_err(), "{bad:?}");
        }
    }
}
