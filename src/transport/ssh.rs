//! SSH transport: one libssh2 session with ONE interactive PTY shell channel for its whole life
//! (never an exec channel per command: IOS drops the TCP connection when one closes).
//! Set-up runs in blocking mode with libssh2's timeout set to what is left of the open deadline;
//! afterwards the session is non-blocking and every wait is a poll() on the socket with a deadline.

use super::{connect_tcp, remaining, timed_out, Transport, TransportError};
use crate::error::Error;
use crate::secret::Secret;
use std::io::{Read, Write as _};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

pub struct SshParams<'a> {
    pub host: &'a str,
    pub port: u16,
    pub username: &'a str,
    pub password: &'a Secret,
}

pub struct SshTransport {
    session: ssh2::Session,
    channel: ssh2::Channel,
    fd: RawFd,
    /// "kex / hostkey / cipher / mac" as negotiated, for the log and status.
    pub negotiated: String,
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
        ssh2::ErrorCode::Session(-18) // LIBSSH2_ERROR_AUTHENTICATION_FAILED
            | ssh2::ErrorCode::Session(-19) // LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED
            | ssh2::ErrorCode::Session(-16) // LIBSSH2_ERROR_PUBLICKEY_UNRECOGNIZED
    )
}

fn is_timeout(e: &ssh2::Error) -> bool {
    matches!(
        e.code(),
        ssh2::ErrorCode::Session(-9) | ssh2::ErrorCode::Session(-37)
    ) // TIMEOUT, EAGAIN
}

fn ssh_err(stage: &str, host: &str, e: ssh2::Error) -> Error {
    if is_timeout(&e) {
        return timed_out(stage, host);
    }
    if is_auth_error(&e) {
        return Error::DeviceAuth(format!("{host} rejected the credentials"));
    }
    if let ssh2::ErrorCode::Session(-5) = e.code() {
        return Error::Connect(format!(
            "{stage} with {host} failed: no common key-exchange/host-key algorithm ({})",
            e.message()
        ));
    }
    Error::Connect(format!("{stage} with {host} failed: {}", e.message()))
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

impl SshTransport {
    pub fn connect(p: &SshParams, deadline: Instant) -> Result<SshTransport, Error> {
        let host = p.host;
        let stream = connect_tcp(host, p.port, deadline)?;
        let fd = stream.as_raw_fd();

        let mut session =
            ssh2::Session::new().map_err(|e| Error::Internal(format!("libssh2 init: {e}")))?;
        session.set_tcp_stream(stream);
        session.set_blocking(true);
        let step = |s: &ssh2::Session, what: &str| -> Result<(), Error> {
            let left = remaining(deadline).ok_or_else(|| timed_out(what, host))?;
            s.set_timeout(left.as_millis().clamp(1, u32::MAX as u128) as u32);
            Ok(())
        };

        step(&session, "SSH handshake")?;
        session
            .handshake()
            .map_err(|e| ssh_err("SSH handshake", host, e))?;

        step(&session, "authentication")?;
        let methods = session
            .auth_methods(p.username)
            .map_err(|e| ssh_err("authentication", host, e))?
            .to_string();
        let mut auth_err = None;
        if methods.split(',').any(|m| m == "password") {
            step(&session, "authentication")?;
            if let Err(e) = session.userauth_password(p.username, p.password.expose()) {
                if !is_auth_error(&e) {
                    return Err(ssh_err("authentication", host, e));
                }
                auth_err = Some(e);
            }
        }
        if !session.authenticated() && methods.split(',').any(|m| m == "keyboard-interactive") {
            step(&session, "authentication")?;
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
                Some(_) => Error::DeviceAuth(format!(
                    "{host} rejected the credentials for user {:?}",
                    p.username
                )),
                None => Error::DeviceAuth(format!(
                    "{host} offers no password authentication (methods: {methods})"
                )),
            });
        }

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

        let negotiated = [
            ssh2::MethodType::Kex,
            ssh2::MethodType::HostKey,
            ssh2::MethodType::CryptCs,
            ssh2::MethodType::MacCs,
        ]
        .iter()
        .map(|m| session.methods(*m).unwrap_or("?").to_string())
        .collect::<Vec<_>>()
        .join(" / ");
        session.set_keepalive(true, 30);
        session.set_blocking(false);
        Ok(SshTransport {
            session,
            channel,
            fd,
            negotiated,
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
            return Err(TransportError::Closed("socket error".into()));
        }
        Ok(())
    }

    fn closed(&self, e: &std::io::Error) -> TransportError {
        TransportError::Closed(format!("SSH connection lost: {e}"))
    }
}

impl Transport for SshTransport {
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
