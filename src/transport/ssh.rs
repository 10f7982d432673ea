//! SSH transport: one libssh2 session with ONE interactive PTY shell channel for its whole life
//! (never an exec channel per command: IOS drops the TCP connection when one closes).
//! Set-up runs in blocking mode with libssh2's timeout set to what is left of the open deadline;
//! afterwards the session is non-blocking and every wait is a poll() on the socket with a deadline.

use super::{connect_tcp, remaining, timed_out, ConnectError, Reach, Transport, TransportError};
use crate::policy::{algorithms_for_key_type, Algorithms, HostKeyPolicy, HostKeySeen, KnownHosts};
use crate::secret::Secret;
use std::io::{Read, Write as _};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

pub struct SshParams<'a> {
    pub host: &'a str,
    pub port: u16,
    pub username: &'a str,
    /// May be empty with key auth.
    pub password: &'a Secret,
    /// A private key file (already checked to lie inside key_dir) and its passphrase.
    pub key_file: Option<&'a std::path::Path>,
    pub passphrase: Option<&'a Secret>,
    pub algorithms: &'a Algorithms,
    pub known_hosts: &'a KnownHosts,
    pub policy: HostKeyPolicy,
    pub reach: Reach<'a>,
}

pub struct SshTransport {
    session: ssh2::Session,
    channel: ssh2::Channel,
    fd: RawFd,
    /// "kex / hostkey / cipher / mac" as negotiated, for the log and status.
    pub negotiated: String,
    /// The device's host key and what the policy made of it.
    pub host_key: Option<HostKeySeen>,
    closed: bool,
}

/// libssh2 frees a channel only after the peer's CLOSE; in non-blocking mode the free gives up
/// with EAGAIN and the memory (~45 KiB) leaks. Every path that drops a transport without
/// `close()` (failed open, dead connection) therefore closes here, bounded to one second.
impl Drop for SshTransport {
    fn drop(&mut self) {
        if !self.closed {
            self.close(Instant::now() + Duration::from_secs(1));
        }
    }
}

fn is_auth_error(e: &ssh2::Error) -> bool {
    matches!(
        e.code(),
        // LIBSSH2_ERROR_AUTHENTICATION_FAILED (= PUBLICKEY_UNRECOGNIZED), PUBLICKEY_UNVERIFIED
        ssh2::ErrorCode::Session(-18) | ssh2::ErrorCode::Session(-19)
    )
}

pub(crate) fn is_timeout(e: &ssh2::Error) -> bool {
    matches!(
        e.code(),
        ssh2::ErrorCode::Session(-9) | ssh2::ErrorCode::Session(-37)
    ) // TIMEOUT, EAGAIN
}

pub(crate) fn ssh_err(stage: &str, host: &str, e: ssh2::Error) -> ConnectError {
    if is_timeout(&e) {
        return timed_out(stage, host);
    }
    if is_auth_error(&e) {
        return ConnectError::Auth {
            message: format!("{host} rejected the credentials"),
            source: Some(Box::new(e)),
        };
    }
    let message = if let ssh2::ErrorCode::Session(-5) = e.code() {
        format!(
            "{stage} with {host} failed: no common key-exchange/host-key algorithm ({})",
            e.message()
        )
    } else {
        format!("{stage} with {host} failed: {}", e.message())
    };
    ConnectError::Ssh {
        message,
        source: Some(Box::new(e)),
    }
}

/// Set the algorithm preferences: the session's lists, limited to what this libssh2 build
/// supports; host key types already known for the host go first (as OpenSSH orders them).
/// Returns a one-line summary of what is offered, for error messages.
fn set_algorithms(session: &ssh2::Session, p: &SshParams) -> Result<String, ConnectError> {
    use ssh2::MethodType as M;
    let [kex, mut hostkey, ciphers, macs] = p.algorithms.lists();
    let known = p.known_hosts.known_types(p.host, p.port);
    if !known.is_empty() {
        let mut first: Vec<String> = known
            .iter()
            .flat_map(|t| algorithms_for_key_type(t).iter().map(|a| a.to_string()))
            .filter(|a| hostkey.contains(a))
            .collect();
        hostkey.retain(|a| !first.contains(a));
        first.append(&mut hostkey);
        hostkey = first;
    }
    let explicit = |field: &str| match field {
        "kex" => p.algorithms.kex.is_some(),
        "host_key_algorithms" => p.algorithms.host_key.is_some(),
        "ciphers" => p.algorithms.ciphers.is_some(),
        _ => p.algorithms.macs.is_some(),
    };
    let mut summary = Vec::new();
    for (field, list, types) in [
        ("kex", &kex, &[M::Kex][..]),
        ("host_key_algorithms", &hostkey, &[M::HostKey][..]),
        ("ciphers", &ciphers, &[M::CryptCs, M::CryptSc][..]),
        ("macs", &macs, &[M::MacCs, M::MacSc][..]),
    ] {
        // libssh2 lists its extension markers (ext-info-c, kex-strict-c-v00@openssh.com) as kex
        // methods; they are not algorithms, and libssh2 adds them to every kex list itself.
        let supported: Vec<String> = session
            .supported_algs(types[0])
            .map(|v| {
                v.iter()
                    .filter(|s| !s.starts_with("ext-info-") && !s.starts_with("kex-strict-"))
                    .map(|s| s.to_string())
                    .collect()
            })
            .unwrap_or_default();
        let unknown: Vec<&String> = list.iter().filter(|a| !supported.contains(a)).collect();
        if explicit(field) && !unknown.is_empty() {
            return Err(ConnectError::Algorithm {
                field,
                message: format!(
                    "not supported by this build: {}; supported: {}",
                    unknown
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    supported.join(", ")
                ),
            });
        }
        let usable: Vec<&str> = list
            .iter()
            .filter(|a| supported.contains(a))
            .map(|s| s.as_str())
            .collect();
        if usable.is_empty() {
            return Err(ConnectError::Algorithm {
                field,
                message: "no usable algorithm in the list".into(),
            });
        }
        let joined = usable.join(",");
        for t in types {
            session
                .method_pref(*t, &joined)
                .map_err(|e| ConnectError::Library {
                    message: format!("libssh2 rejected {field} {joined}: {e}"),
                    source: Some(Box::new(e)),
                })?;
        }
        summary.push(format!("{field} [{joined}]"));
    }
    Ok(summary.join("; "))
}

struct Answer<'a> {
    username: &'a str,
    password: &'a str,
}

impl ssh2::KeyboardInteractivePrompt for Answer<'_> {
    fn prompt(&mut self, _u: &str, _i: &str, prompts: &[ssh2::Prompt]) -> Vec<String> {
        // Hidden prompts ("Password:") get the password; a visible one (echoed, so possibly
        // logged by the device or its AAA server) never does: it gets the username.
        prompts
            .iter()
            .map(|p| {
                if p.echo {
                    self.username.to_string()
                } else {
                    self.password.to_string()
                }
            })
            .collect()
    }
}

/// A libssh2 session with this connection's algorithm preferences set, before anything
/// connects (a bad explicit list is a 422 with nothing sent). Returns it and a summary of what
/// it offers, for the handshake's error message.
pub(crate) fn new_session(p: &SshParams) -> Result<(ssh2::Session, String), ConnectError> {
    let session = ssh2::Session::new().map_err(|e| ConnectError::Library {
        message: format!("libssh2 init: {e}"),
        source: Some(Box::new(e)),
    })?;
    release_session_pages(&session);
    let offered = set_algorithms(&session, p)?;
    Ok((session, offered))
}

/// A new libssh2 session is one `malloc` of about 83 KB, zeroed whole by
/// `libssh2_session_init_ex`: two 35,000-byte packet buffers (in and out), an 8 KiB banner
/// buffer and the session's state. A held session writes only the start of each buffer (the
/// input buffer is compacted to its start before each read; packets are built from the start of
/// the output one), so most of those pages would stay resident holding zeros. They are handed
/// back here, before the session is used; a page comes back when libssh2 first writes to it
/// (`memory::release_zero_pages`). About 60 KiB less resident memory per session.
fn release_session_pages(session: &ssh2::Session) {
    let mut raw = session.raw();
    let block: *mut libssh2_sys::LIBSSH2_SESSION = &mut *raw;
    // SAFETY: ssh2::Session::new creates the session with libssh2's default allocator
    // (libssh2_session_init_ex with no allocator: malloc), so this is the live malloc block of
    // the LIBSSH2_SESSION; the session's lock is held and nothing has used it yet, so no other
    // thread reads or writes it.
    let released = unsafe { crate::memory::release_zero_pages(block.cast()) };
    log::trace!("libssh2 session: {released} bytes of zero pages released");
}

/// Set libssh2's timeout (blocking mode) to what is left of the deadline before a stage.
pub(crate) fn step(
    s: &ssh2::Session,
    what: &str,
    host: &str,
    deadline: Instant,
) -> Result<(), ConnectError> {
    let left = remaining(deadline).ok_or_else(|| timed_out(what, host))?;
    s.set_timeout(left.as_millis().clamp(1, u32::MAX as u128) as u32);
    Ok(())
}

/// On a connected stream (a TCP socket, or a jump host's forwarded stream): the SSH handshake,
/// the host key through known_hosts and the policy (refused: nothing more is sent, no
/// credentials), then authentication. The session is left blocking, with libssh2's timeout set.
pub(crate) fn login<S: AsRawFd + 'static>(
    session: &mut ssh2::Session,
    offered: &str,
    p: &SshParams,
    stream: S,
    deadline: Instant,
) -> Result<HostKeySeen, ConnectError> {
    let host = p.host;
    session.set_tcp_stream(stream);
    session.set_blocking(true);
    let step = |s: &ssh2::Session, what: &str| step(s, what, host, deadline);

    step(session, "SSH handshake")?;
    session.handshake().map_err(|e| match e.code() {
        ssh2::ErrorCode::Session(-5) | ssh2::ErrorCode::Session(-8) => ConnectError::Ssh {
            message: format!(
                "SSH handshake with {host} failed in key exchange ({}), most often because no algorithm is common. Offered {offered}. \
                 Old devices often speak only SHA-1 algorithms: open the session with \
                 \"legacy_algorithms\": true (or list them in kex / host_key_algorithms / ciphers / macs)",
                e.message()
            ),
            source: Some(Box::new(e)),
        },
        _ => ssh_err("SSH handshake", host, e),
    })?;
    let host_key = match session.host_key() {
        Some((blob, _)) => p.known_hosts.verify(host, p.port, blob, p.policy)?,
        None => {
            return Err(ConnectError::HostKey {
                message: format!("{host} presented no host key"),
            })
        }
    };

    step(session, "authentication")?;
    let methods = session
        .auth_methods(p.username)
        .map_err(|e| ssh_err("authentication", host, e))?
        .to_string();
    let offers = |m: &str| methods.split(',').any(|x| x == m);
    let mut auth_err = None;
    if let Some(key) = p.key_file {
        if offers("publickey") {
            step(session, "authentication")?;
            if let Err(e) = session.userauth_pubkey_file(
                p.username,
                None,
                key,
                p.passphrase.map(|s| s.expose()),
            ) {
                // A wrong passphrase or an unreadable key is our side's problem: say so.
                if !is_auth_error(&e) {
                    return Err(ConnectError::KeyFile {
                        message: format!(
                            "key authentication to {host} failed: {} (libssh2 error {}; wrong passphrase or unusable key file?)",
                            e.message(),
                            e.code()
                        ),
                        source: Some(Box::new(e)),
                    });
                }
                auth_err = Some(e);
            }
        }
    }
    let password = !p.password.is_empty();
    if !session.authenticated() && password && offers("password") {
        step(session, "authentication")?;
        if let Err(e) = session.userauth_password(p.username, p.password.expose()) {
            if !is_auth_error(&e) {
                return Err(ssh_err("authentication", host, e));
            }
            auth_err = Some(e);
        }
    }
    if !session.authenticated() && password && offers("keyboard-interactive") {
        step(session, "authentication")?;
        if let Err(e) = session.userauth_keyboard_interactive(
            p.username,
            &mut Answer {
                username: p.username,
                password: p.password.expose(),
            },
        ) {
            if !is_auth_error(&e) {
                return Err(ssh_err("authentication", host, e));
            }
            auth_err = Some(e);
        }
    }
    if !session.authenticated() {
        return Err(match auth_err {
            Some(e) => ConnectError::Auth {
                message: format!("{host} rejected the credentials for user {:?}", p.username),
                source: Some(Box::new(e)),
            },
            None => ConnectError::Auth {
                message: format!(
                    "{host} offers no authentication method we can use with the credentials given (methods: {methods})"
                ),
                source: None,
            },
        });
    }
    Ok(host_key)
}

/// "kex / hostkey / cipher / mac" as negotiated.
pub(crate) fn negotiated(session: &ssh2::Session) -> String {
    [
        ssh2::MethodType::Kex,
        ssh2::MethodType::HostKey,
        ssh2::MethodType::CryptCs,
        ssh2::MethodType::MacCs,
    ]
    .iter()
    .map(|m| session.methods(*m).unwrap_or("?").to_string())
    .collect::<Vec<_>>()
    .join(" / ")
}

impl SshTransport {
    pub fn connect(p: &SshParams, deadline: Instant) -> Result<SshTransport, ConnectError> {
        // Algorithm lists are checked before anything connects: a bad name is a 422.
        let (session, offered) = new_session(p)?;
        let stream = connect_tcp(p.host, p.port, p.reach, deadline)?;
        Self::over(session, &offered, p, stream, deadline)
    }

    /// The device session on a stream already connected to it: TCP, or the forwarded stream
    /// of a jump chain (one end of a socketpair whose other end a pump thread serves).
    pub(crate) fn over<S: AsRawFd + 'static>(
        mut session: ssh2::Session,
        offered: &str,
        p: &SshParams,
        stream: S,
        deadline: Instant,
    ) -> Result<SshTransport, ConnectError> {
        let host = p.host;
        let fd = stream.as_raw_fd();
        let host_key = Some(login(&mut session, offered, p, stream, deadline)?);
        let step = |s: &ssh2::Session, what: &str| step(s, what, host, deadline);

        step(&session, "opening the shell channel")?;
        let mut channel = session
            .channel_session()
            .map_err(|e| ssh_err("opening the shell channel", host, e))?;
        channel
            .handle_extended_data(ssh2::ExtendedData::Merge)
            .map_err(|e| ssh_err("opening the shell channel", host, e))?;
        step(&session, "PTY request")?;
        channel
            .request_pty("vt100", None, Some((511, 24, 0, 0)))
            .map_err(|e| ssh_err("PTY request", host, e))?;
        step(&session, "shell request")?;
        channel
            .shell()
            .map_err(|e| ssh_err("shell request", host, e))?;

        let negotiated = negotiated(&session);
        // want_reply false: libssh2 1.11 queues the server's answer to each keepalive
        // (SSH_MSG_REQUEST_FAILURE) on the session and never frees it; every channel read then
        // walks the growing list (libssh2 issue #623). About 110 bytes per keepalive, one per
        // 30 s of idleness, for the session's whole life. The request still goes out, which is
        // what finds a dead connection.
        session.set_keepalive(false, 30);
        session.set_blocking(false);
        Ok(SshTransport {
            session,
            channel,
            fd,
            negotiated,
            host_key,
            closed: false,
        })
    }

    /// Block in poll() until the socket is ready in the direction libssh2 wants, or the deadline.
    fn wait(&self, deadline: Instant) -> Result<(), TransportError> {
        let left = remaining(deadline).ok_or(TransportError::Timeout)?;
        let dirs = self.session.block_directions();
        let mut events: libc::c_short = 0;
        if matches!(
            dirs,
            ssh2::BlockDirections::Inbound
                | ssh2::BlockDirections::Both
                | ssh2::BlockDirections::None
        ) {
            events |= libc::POLLIN;
        }
        if matches!(
            dirs,
            ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both
        ) {
            events |= libc::POLLOUT;
        }
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events,
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
        if pfd.revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
            return Err(TransportError::Closed(super::socket_error(self.fd)));
        }
        Ok(())
    }

    fn closed(&self, e: &std::io::Error) -> TransportError {
        TransportError::Closed(format!("SSH connection lost: {e}"))
    }
}

impl Transport for SshTransport {
    fn wait_fd(&self) -> Option<RawFd> {
        Some(self.fd)
    }
    fn read(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize, TransportError> {
        loop {
            match self.channel.read(buf) {
                Ok(n) if n > 0 => return Ok(n),
                Ok(_) if self.channel.eof() => {
                    return Err(TransportError::Closed(
                        "the device closed the session".into(),
                    ));
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(self.closed(&e)),
            }
            self.wait(deadline)?;
        }
    }

    fn try_read(&mut self, buf: &mut [u8]) -> Result<usize, TransportError> {
        match self.channel.read(buf) {
            Ok(0) if self.channel.eof() => Err(TransportError::Closed(
                "the device closed the session".into(),
            )),
            Ok(n) => Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(self.closed(&e)),
        }
    }

    fn write_all(&mut self, mut data: &[u8], deadline: Instant) -> Result<(), TransportError> {
        // Never call `flush()` on an ssh2 channel: it maps to libssh2_channel_flush_ex, which
        // DISCARDS unread incoming data (it flushes the read side). A write is sent as soon as
        // libssh2_channel_write returns.
        while !data.is_empty() {
            match self.channel.write(data) {
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.wait(deadline)?,
                Err(e) => return Err(self.closed(&e)),
            }
        }
        Ok(())
    }

    fn keepalive(&mut self) -> Result<(), TransportError> {
        match self.session.keepalive_send() {
            Ok(_) => Ok(()),
            Err(e) if is_timeout(&e) => Ok(()),
            Err(e) => Err(TransportError::Closed(format!(
                "SSH keepalive failed: {}",
                e.message()
            ))),
        }
    }

    fn close(&mut self, deadline: Instant) {
        self.closed = true;
        let Some(left) = remaining(deadline) else {
            // No time left: still make the frees that follow blocking-with-timeout, not EAGAIN.
            self.session.set_blocking(true);
            self.session.set_timeout(1);
            return;
        };
        self.session.set_blocking(true);
        self.session
            .set_timeout(left.as_millis().clamp(1, u32::MAX as u128) as u32);
        let _ = self.channel.send_eof();
        let _ = self.channel.close();
        if remaining(deadline).is_some() {
            let _ = self.session.disconnect(
                Some(ssh2::DisconnectCode::ByApplication),
                "session closed",
                None,
            );
        }
    }

    fn protocol(&self) -> &'static str {
        "ssh"
    }

    fn negotiated(&self) -> String {
        self.negotiated.clone()
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;
    use crate::policy::HostList;
    use fake_device::{DeviceConfig, FakeDevice};

    fn resident_of(t: &SshTransport) -> (usize, usize) {
        let mut raw = t.session.raw();
        let block: *mut libssh2_sys::LIBSSH2_SESSION = &mut *raw;
        // SAFETY: the session's malloc block (see release_session_pages), alive while t is.
        unsafe { crate::memory::resident_bytes(block.cast()) }
    }

    fn read_until(t: &mut SshTransport, what: &[u8]) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(what.len()).any(|w| w == what) {
            let n = t.read(&mut buf, deadline).expect("read");
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    /// A held session keeps only the pages of its libssh2 session that libssh2 wrote since
    /// the init: about a quarter of the 83 KB (all of it was resident before), and after a big
    /// output the input packet buffer's pages on top.
    #[test]
    fn a_held_session_keeps_only_the_written_pages_of_its_libssh2_session() {
        let dev = FakeDevice::start(DeviceConfig::default());
        let dir = std::env::temp_dir().join(format!("ndb-ssh-pages-{}", std::process::id()));
        let known = KnownHosts::new(dir.join("known_hosts"));
        let allowed = HostList::default();
        let password = Secret::new("cisco");
        let algorithms = Algorithms::default();
        let p = SshParams {
            host: "127.0.0.1",
            port: dev.port(),
            username: "admin",
            password: &password,
            key_file: None,
            passphrase: None,
            algorithms: &algorithms,
            known_hosts: &known,
            policy: HostKeyPolicy::Off,
            reach: Reach {
                allowed: &allowed,
                dead_peer_timeout: Duration::ZERO,
            },
        };
        let mut t = SshTransport::connect(&p, Instant::now() + Duration::from_secs(10))
            .expect("connect to the fake device");
        read_until(&mut t, b"R1>");
        let (opened, all) = resident_of(&t);
        let deadline = Instant::now() + Duration::from_secs(10);
        for _ in 0..20 {
            t.write_all(b"show clock\n", deadline).expect("write");
            read_until(&mut t, b"R1>");
        }
        let (after, _) = resident_of(&t);
        // 1 MiB of output, read in small pieces while it arrives: libssh2's input buffer may
        // fill whole (35,000 bytes), never more.
        t.write_all(b"terminal length 0\n", deadline)
            .expect("write");
        read_until(&mut t, b"R1>");
        t.write_all(b"show flood 1\n", deadline).expect("write");
        let mut got = 0usize;
        let mut buf = [0u8; 512];
        let mut tail = Vec::new();
        while !tail.ends_with(b"R1>") {
            let n = t.read(&mut buf, deadline).expect("read");
            got += n;
            tail.extend_from_slice(&buf[..n]);
            let cut = tail.len().saturating_sub(8);
            tail.drain(..cut);
        }
        let (flooded, _) = resident_of(&t);
        eprintln!(
            "libssh2 session block: {} KiB; resident {} KiB after the open, {} KiB after 20 \
             commands, {} KiB after {} KiB of output",
            all / 1024,
            opened / 1024,
            after / 1024,
            flooded / 1024,
            got / 1024
        );
        assert!(all > 80 * 1024, "the session block is {all} bytes");
        assert!(
            opened <= 28 * 1024,
            "{opened} bytes resident after the open"
        );
        assert!(
            after <= 28 * 1024,
            "{after} bytes resident after 20 commands"
        );
        assert!(got > 1 << 20, "{got} bytes of output");
        assert!(
            flooded <= (28 + 36) * 1024,
            "{flooded} bytes resident after the flood"
        );
        t.close(Instant::now() + Duration::from_secs(2));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
