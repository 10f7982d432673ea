//! Jump hosts: a device reached through up to [`super::MAX_HOPS`] SSH bastions. For each hop the
//! broker runs a libssh2 session (handshake, host key through known_hosts and the policy, then
//! authentication: a refused host key sends no credentials) over the previous hop's forwarded
//! stream (hop 1: TCP), opens a `direct-tcpip` channel to the next hop or the device, and hands
//! the session and the channel to a pump thread (`jump-<id8>-<n>`). The pump copies bytes
//! between that channel and one end of a `UnixStream::pair()`; the next session (or the device's
//! SSH or Telnet transport) runs on the other end as on a socket.
//!
//! A pump ends when either side closes: the inner side's end closed (the session closes, the
//! next pump ended) or the hop's channel or connection ended. In the second case it records why
//! in the chain (naming the hop) before it closes its end, so the inner transport reads EOF and
//! [`Jumped`] reports the hop's reason. Closing the device transport thus tears the chain down
//! from the device outwards, each pump closing its channel and session in turn.
//!
//! Cost per hop: one thread, two socketpair descriptors (plus the TCP socket for hop 1), two
//! 32 KiB copy buffers and one libssh2 session.

use super::ssh::{is_timeout, login, negotiated, new_session, ssh_err, step, SshParams};
use super::{connect_tcp, remaining, timed_out, ConnectError, Reach, Transport, TransportError};
use super::{host_port, Hop, HopSeen};
use crate::policy::{HostList, KnownHosts};
use parking_lot::Mutex;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const PUMP_STACK: usize = 256 << 10;
const PUMP_BUF: usize = 32 << 10;
/// SSH keepalive on each hop's session (as on a device session).
const HOP_KEEPALIVE: Duration = Duration::from_secs(30);
/// How long a pump may take to close its channel and session.
const HOP_CLOSE: Duration = Duration::from_secs(1);

/// The pumps of an open chain, hop 1 first, and why the chain died, if it did.
pub struct Chain {
    pumps: Vec<JoinHandle<()>>,
    pub via: Vec<HopSeen>,
    dead: Arc<Mutex<Option<String>>>,
}

impl Chain {
    /// Why a hop ended (its connection or its channel), naming the hop; None while all live.
    pub fn dead(&self) -> Option<String> {
        self.dead.lock().clone()
    }

    /// Wait for the pumps, innermost first, until the deadline (the caller has closed or dropped
    /// what ran on the chain, so each pump is closing). A pump still running at the deadline is
    /// left to finish on its own (its close is bounded by [`HOP_CLOSE`]).
    fn join(&mut self, deadline: Instant) {
        while let Some(h) = self.pumps.pop() {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::park_timeout(Duration::from_millis(5));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                log::warn!("a jump host pump thread is still closing at its deadline");
            }
        }
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        self.join(Instant::now() + Duration::from_secs(3));
    }
}

/// Where a hop asks its next hop (or the device) to be connected, after allowed_hosts: a name
/// the allow-list's globs match, or an address in its CIDRs, is forwarded as given; any other
/// name is resolved here and the first allowed address is forwarded, so the hop connects to
/// what was checked. Empty allow-list: as given.
fn checked_target(
    host: &str,
    port: u16,
    allowed: &HostList,
    deadline: Instant,
) -> Result<String, ConnectError> {
    if allowed.allows_name(host) {
        return Ok(host.to_string());
    }
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return if allowed.allows(host, ip) {
            Ok(host.to_string())
        } else {
            Err(ConnectError::NotAllowed {
                host: host.into(),
                addresses: vec![ip],
            })
        };
    }
    let resolved = super::resolve(host, port, deadline)?;
    match resolved.iter().find(|a| allowed.allows(host, a.ip())) {
        Some(a) => Ok(a.ip().to_string()),
        None => Err(ConnectError::NotAllowed {
            host: host.into(),
            addresses: resolved.iter().map(|a| a.ip()).collect(),
        }),
    }
}

/// Connect through `hops` to `target:target_port` by the deadline. Returns the broker's end of
/// the forwarded stream and the chain that serves it. `id8` names the pump threads.
pub fn connect(
    hops: &[Hop],
    target: &str,
    target_port: u16,
    reach: Reach,
    known_hosts: &KnownHosts,
    deadline: Instant,
    id8: &str,
) -> Result<(UnixStream, Chain), ConnectError> {
    let mut chain = Chain {
        pumps: Vec::new(),
        via: Vec::new(),
        dead: Arc::new(Mutex::new(None)),
    };
    let r = build(
        hops,
        target,
        target_port,
        reach,
        known_hosts,
        deadline,
        id8,
        &mut chain,
    );
    // On failure everything built so far is dropped inside `build` first (the failing session
    // and the forwarded stream it ran on), so each pump sees its end closed and exits.
    r.map(|end| (end, chain))
}

#[allow(clippy::too_many_arguments)]
fn build(
    hops: &[Hop],
    target: &str,
    target_port: u16,
    reach: Reach,
    known_hosts: &KnownHosts,
    deadline: Instant,
    id8: &str,
    chain: &mut Chain,
) -> Result<UnixStream, ConnectError> {
    // Every hop after the first and the device go through allowed_hosts before anything is
    // sent anywhere (hop 1's addresses are checked when its TCP connection is made).
    let mut next: Vec<(String, u16)> = Vec::new();
    for (i, h) in hops.iter().enumerate().skip(1) {
        let t = checked_target(&h.host, h.port, reach.allowed, deadline)
            .map_err(|e| in_hop(i + 1, h, e))?;
        next.push((t, h.port));
    }
    next.push((
        checked_target(target, target_port, reach.allowed, deadline)?,
        target_port,
    ));
    let mut prev: Option<UnixStream> = None;
    for (i, hop) in hops.iter().enumerate() {
        let n = i + 1;
        let wrap = |e| in_hop(n, hop, e);
        let params = SshParams {
            host: &hop.host,
            port: hop.port,
            username: &hop.username,
            password: &hop.password,
            key_file: hop.key_file.as_deref(),
            passphrase: hop.passphrase.as_ref(),
            algorithms: &hop.algorithms,
            known_hosts,
            policy: hop.host_key_policy,
            reach,
        };
        let (mut session, offered) = new_session(&params).map_err(wrap)?;
        let (sock, host_key) = match prev.take() {
            None => {
                let tcp = connect_tcp(&hop.host, hop.port, reach, deadline).map_err(wrap)?;
                let fd = tcp.as_raw_fd();
                (
                    fd,
                    login(&mut session, &offered, &params, tcp, deadline).map_err(wrap)?,
                )
            }
            Some(s) => {
                let fd = s.as_raw_fd();
                (
                    fd,
                    login(&mut session, &offered, &params, s, deadline).map_err(wrap)?,
                )
            }
        };
        let (to_host, to_port) = &next[i];
        let to = host_port(to_host, *to_port);
        let what = if n == hops.len() {
            format!("the device {}", host_port(target, target_port))
        } else {
            format!("jump host {} ({})", n + 1, hops[n].addr())
        };
        step(&session, "opening the forward", &hop.host, deadline).map_err(wrap)?;
        let channel = session
            .channel_direct_tcpip(to_host, *to_port, None)
            .map_err(|e| forward_error(n, hop, &to, &what, e))?;
        let (inner, outer) = UnixStream::pair().map_err(|source| ConnectError::Local {
            context: "cannot create a socketpair for a jump host".into(),
            source,
        })?;
        let seen = HopSeen {
            addr: hop.addr(),
            host_key,
            negotiated: negotiated(&session),
        };
        log::info!(
            "jump host {n} ({}): host key {} {} {}, forwarding to {to}",
            seen.addr,
            seen.host_key.key_type,
            seen.host_key.fingerprint,
            seen.host_key.verdict
        );
        session.set_keepalive(false, HOP_KEEPALIVE.as_secs() as u32);
        session.set_blocking(false);
        let label = format!("jump host {n} ({})", seen.addr);
        let dead = chain.dead.clone();
        let pump = Pump {
            session,
            channel,
            sock,
            end: outer,
            label,
            dead,
        };
        let h = std::thread::Builder::new()
            .name(format!("jump-{id8}-{n}"))
            .stack_size(PUMP_STACK)
            .spawn(move || pump.run())
            .map_err(|source| ConnectError::Local {
                context: "cannot start a jump host pump thread".into(),
                source,
            })?;
        chain.pumps.push(h);
        chain.via.push(seen);
        prev = Some(inner);
    }
    prev.ok_or_else(|| ConnectError::Local {
        context: "a jump chain with no hop".into(),
        source: std::io::Error::other("no hop"),
    })
}

fn in_hop(n: usize, hop: &Hop, e: ConnectError) -> ConnectError {
    ConnectError::Hop {
        hop: n,
        addr: hop.addr(),
        source: Box::new(e),
    }
}

/// A `direct-tcpip` open that failed: refused by the hop's policy, or the hop could not reach
/// the next address, or the deadline passed.
fn forward_error(n: usize, hop: &Hop, to: &str, what: &str, e: ssh2::Error) -> ConnectError {
    if is_timeout(&e) {
        // "opening the forward to the device 10.1.1.1:22 did not complete in time"
        return in_hop(n, hop, timed_out("opening the forward", what));
    }
    let msg = e.message();
    // libssh2: "Channel open failure (administratively prohibited)", "(connect failed)", ...
    let reason = msg
        .split_once('(')
        .and_then(|(_, r)| r.strip_suffix(')'))
        .unwrap_or(msg)
        .to_string();
    if matches!(e.code(), ssh2::ErrorCode::Session(-21)) {
        ConnectError::Forward {
            hop: n,
            addr: hop.addr(),
            target: to.to_string(),
            refused: reason.contains("prohibited"),
            reason,
        }
    } else {
        in_hop(n, hop, ssh_err("opening the forward", &hop.host, e))
    }
}

/// One hop's copier: the hop's channel on one side, a socketpair end on the other.
struct Pump {
    session: ssh2::Session,
    channel: ssh2::Channel,
    /// The hop session's socket (TCP, or the previous hop's socketpair end), for poll().
    sock: RawFd,
    end: UnixStream,
    label: String,
    dead: Arc<Mutex<Option<String>>>,
}

impl Pump {
    fn run(mut self) {
        let why = self.copy();
        if let Some(why) = &why {
            let reason = format!("{}: {why}", self.label);
            log::warn!("{reason}");
            let mut d = self.dead.lock();
            if d.is_none() {
                *d = Some(reason);
            }
        }
        // The inner side reads EOF now (or already closed its end).
        let _ = self.end.shutdown(std::net::Shutdown::Both);
        drop(self.end);
        self.session.set_blocking(true);
        self.session.set_timeout(HOP_CLOSE.as_millis() as u32);
        if why.is_none() {
            let _ = self.channel.send_eof();
            let _ = self.channel.close();
            let _ = self.session.disconnect(
                Some(ssh2::DisconnectCode::ByApplication),
                "session closed",
                None,
            );
        }
        // Dropping the session closes its stream: the previous pump sees its end closed.
    }

    /// Copy until one side ends. Some(why) when the hop's side ended; None when the inner side
    /// closed (the session closed, or the next hop's pump ended and recorded why).
    fn copy(&mut self) -> Option<String> {
        if let Err(e) = self.end.set_nonblocking(true) {
            return Some(format!("socketpair: {e}"));
        }
        let mut down = vec![0u8; PUMP_BUF];
        let (mut dlen, mut doff) = (0usize, 0usize);
        let mut up = vec![0u8; PUMP_BUF];
        let (mut ulen, mut uoff) = (0usize, 0usize);
        let mut keepalive_at = Instant::now() + HOP_KEEPALIVE;
        let would_block = |e: &std::io::Error| e.kind() == std::io::ErrorKind::WouldBlock;
        loop {
            let mut progress = false;
            // hop -> inner
            if doff == dlen {
                match self.channel.read(&mut down) {
                    Ok(0) if self.channel.eof() => {
                        return Some("closed the forwarded connection".into())
                    }
                    Ok(0) => {}
                    Ok(n) => {
                        (dlen, doff) = (n, 0);
                        progress = true;
                    }
                    Err(e) if would_block(&e) => {}
                    Err(e) => return Some(format!("connection lost: {e}")),
                }
            }
            if doff < dlen {
                match self.end.write(&down[doff..dlen]) {
                    Ok(n) => {
                        doff += n;
                        progress = true;
                    }
                    Err(e) if would_block(&e) => {}
                    Err(_) => return None,
                }
            }
            // inner -> hop
            if uoff == ulen {
                match self.end.read(&mut up) {
                    Ok(0) => return None,
                    Ok(n) => {
                        (ulen, uoff) = (n, 0);
                        progress = true;
                    }
                    Err(e) if would_block(&e) => {}
                    Err(_) => return None,
                }
            }
            if uoff < ulen {
                match self.channel.write(&up[uoff..ulen]) {
                    Ok(n) => {
                        uoff += n;
                        progress |= n > 0;
                    }
                    Err(e) if would_block(&e) => {}
                    Err(e) => return Some(format!("connection lost: {e}")),
                }
            }
            let now = Instant::now();
            if now >= keepalive_at {
                match self.session.keepalive_send() {
                    Ok(secs) => keepalive_at = now + Duration::from_secs(secs.max(1) as u64),
                    Err(e) if is_timeout(&e) => keepalive_at = now + Duration::from_secs(1),
                    Err(e) => return Some(format!("SSH keepalive failed: {}", e.message())),
                }
            }
            if progress {
                continue;
            }
            let dirs = self.session.block_directions();
            let inbound = matches!(
                dirs,
                ssh2::BlockDirections::Inbound | ssh2::BlockDirections::Both
            );
            let outbound = matches!(
                dirs,
                ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both
            );
            let mut sock_ev: libc::c_short = 0;
            if doff == dlen || inbound {
                sock_ev |= libc::POLLIN;
            }
            if outbound {
                sock_ev |= libc::POLLOUT;
            }
            let mut end_ev: libc::c_short = 0;
            if uoff == ulen {
                end_ev |= libc::POLLIN;
            }
            if doff < dlen {
                end_ev |= libc::POLLOUT;
            }
            let mut fds = [
                libc::pollfd {
                    fd: self.sock,
                    events: sock_ev,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.end.as_raw_fd(),
                    events: end_ev,
                    revents: 0,
                },
            ];
            let wait = remaining(keepalive_at)
                .unwrap_or(Duration::from_millis(1))
                .min(HOP_KEEPALIVE);
            let ms = wait.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
            // SAFETY: fds is a valid array of two pollfds on the stack.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Some(format!("poll failed: {e}"));
                }
            }
            // A hang-up or error on either side shows in the next read or write.
            if fds[0].revents & libc::POLLNVAL != 0 {
                return Some("socket error".into());
            }
        }
    }
}

/// A device transport that runs over a jump chain: closing it closes the device session, then
/// the chain from the last hop to the first. A lost connection names the hop that died.
pub struct Jumped {
    inner: Option<Box<dyn Transport>>,
    chain: Chain,
}

impl Jumped {
    pub fn new(inner: Box<dyn Transport>, chain: Chain) -> Jumped {
        Jumped {
            inner: Some(inner),
            chain,
        }
    }

    fn why(&self, e: TransportError) -> TransportError {
        match e {
            TransportError::Closed(m) => TransportError::Closed(self.chain.dead().unwrap_or(m)),
            t => t,
        }
    }

    fn inner(&mut self) -> Result<&mut Box<dyn Transport>, TransportError> {
        self.inner
            .as_mut()
            .ok_or_else(|| TransportError::Closed("the session was closed".into()))
    }
}

impl Transport for Jumped {
    fn wait_fd(&self) -> Option<std::os::unix::io::RawFd> {
        // The device transport's end of the chain's socketpair: a dead hop closes it.
        self.inner.as_ref().and_then(|t| t.wait_fd())
    }
    fn read(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize, TransportError> {
        let r = self.inner()?.read(buf, deadline);
        r.map_err(|e| self.why(e))
    }
    fn try_read(&mut self, buf: &mut [u8]) -> Result<usize, TransportError> {
        let r = self.inner()?.try_read(buf);
        r.map_err(|e| self.why(e))
    }
    fn write_all(&mut self, data: &[u8], deadline: Instant) -> Result<(), TransportError> {
        let r = self.inner()?.write_all(data, deadline);
        r.map_err(|e| self.why(e))
    }
    fn keepalive(&mut self) -> Result<(), TransportError> {
        if let Some(why) = self.chain.dead() {
            return Err(TransportError::Closed(why));
        }
        let r = self.inner()?.keepalive();
        r.map_err(|e| self.why(e))
    }
    fn close(&mut self, deadline: Instant) {
        if let Some(mut t) = self.inner.take() {
            t.close(deadline);
        }
        self.chain
            .join(deadline.max(Instant::now() + HOP_CLOSE * 2));
    }
    fn protocol(&self) -> &'static str {
        self.inner.as_ref().map_or("ssh", |t| t.protocol())
    }
    fn negotiated(&self) -> String {
        self.inner
            .as_ref()
            .map_or_else(String::new, |t| t.negotiated())
    }
}

impl Drop for Jumped {
    fn drop(&mut self) {
        // The device transport first (its own Drop closes it), then the chain joins.
        drop(self.inner.take());
    }
}
