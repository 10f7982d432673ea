//! Why a transport could not be set up. No HTTP here: `api/error.rs` decides what a client sees.

use std::fmt;
use std::net::IpAddr;

/// An underlying library error (libssh2's, when the `ssh` feature is on).
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why connecting to a device (TCP, SSH handshake, host key, authentication) failed.
/// `Display` is the explanation alone, without any category prefix.
#[derive(Debug)]
pub enum ConnectError {
    /// No resolved address of the host is in allowed_hosts; nothing was sent to the device.
    NotAllowed {
        host: String,
        addresses: Vec<IpAddr>,
    },
    /// getaddrinfo failed.
    Resolve {
        host: String,
        source: std::io::Error,
    },
    /// The name resolved, to nothing.
    NoAddress { host: String },
    /// A stage (name resolution, TCP connect, SSH handshake, authentication...) did not finish
    /// by the deadline.
    TimedOut { stage: String, host: String },
    /// TCP connect failed.
    Tcp {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    /// Setting up the connected socket failed.
    Socket {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    /// A resource of the broker itself (a thread, a socket, the known_hosts file) failed.
    Local {
        context: String,
        source: std::io::Error,
    },
    /// An SSH protocol step failed (handshake, key exchange, channel, PTY, shell).
    Ssh {
        message: String,
        source: Option<Cause>,
    },
    /// The device's host key was refused: revoked, mismatched, unknown under `strict`, absent.
    HostKey { message: String },
    /// The device rejected the credentials, or offers no method we can use.
    Auth {
        message: String,
        source: Option<Cause>,
    },
    /// The key file or its passphrase is unusable (our side's problem).
    KeyFile {
        message: String,
        source: Option<Cause>,
    },
    /// An explicitly requested algorithm list cannot be used by this build; `field` names the
    /// request field it came from.
    Algorithm {
        field: &'static str,
        message: String,
    },
    /// libssh2 itself failed (init, method preferences).
    Library {
        message: String,
        source: Option<Cause>,
    },
    /// This build has no SSH transport (the fuzz build).
    NoSsh,
    /// Reaching or logging in to jump host `hop` (1-based) failed; `source` says how. The
    /// status a client gets is the one `source` would get on a direct open.
    Hop {
        hop: usize,
        addr: String,
        source: Box<ConnectError>,
    },
    /// Jump host `hop` did not open its `direct-tcpip` forward to `target` (the next hop or the
    /// device): `refused` when its policy prohibits it, else it could not connect.
    Forward {
        hop: usize,
        addr: String,
        target: String,
        refused: bool,
        reason: String,
    },
}

impl ConnectError {
    pub(crate) fn timed_out(stage: &str, host: &str) -> ConnectError {
        ConnectError::TimedOut {
            stage: stage.into(),
            host: host.into(),
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::NotAllowed { host, addresses } => {
                let list: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
                write!(f, "{host} ({}) is not in allowed_hosts", list.join(", "))
            }
            ConnectError::Resolve { host, source } => write!(f, "cannot resolve {host}: {source}"),
            ConnectError::NoAddress { host } => write!(f, "{host}: name resolved to no address"),
            ConnectError::TimedOut { stage, host } => {
                write!(f, "{stage} to {host} did not complete in time")
            }
            ConnectError::Tcp { host, port, source } => {
                write!(f, "cannot connect to {host}:{port}: {source}")
            }
            ConnectError::Socket { host, port, source } => write!(f, "{host}:{port}: {source}"),
            ConnectError::Local { context, source } => write!(f, "{context}: {source}"),
            ConnectError::Ssh { message, .. }
            | ConnectError::HostKey { message }
            | ConnectError::Auth { message, .. }
            | ConnectError::KeyFile { message, .. }
            | ConnectError::Algorithm { message, .. }
            | ConnectError::Library { message, .. } => f.write_str(message),
            ConnectError::NoSsh => f.write_str("this build has no SSH transport"),
            ConnectError::Hop { hop, addr, source } => {
                write!(f, "jump host {hop} ({addr}): {source}")
            }
            ConnectError::Forward {
                hop,
                addr,
                target,
                refused: true,
                reason,
            } => write!(
                f,
                "jump host {hop} ({addr}) refused the forward to {target}: {reason}"
            ),
            ConnectError::Forward {
                hop,
                addr,
                target,
                reason,
                ..
            } => write!(
                f,
                "jump host {hop} ({addr}) could not connect to {target}: {reason}"
            ),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Resolve { source, .. }
            | ConnectError::Tcp { source, .. }
            | ConnectError::Socket { source, .. }
            | ConnectError::Local { source, .. } => Some(source),
            ConnectError::Ssh { source, .. }
            | ConnectError::Auth { source, .. }
            | ConnectError::KeyFile { source, .. }
            | ConnectError::Library { source, .. } => source
                .as_deref()
                .map(|e| e as &(dyn std::error::Error + 'static)),
            _ => None,
        }
    }
}
