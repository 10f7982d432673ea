//! Why an open or an exec failed, in the session layer's terms. No HTTP here: `api/error.rs`
//! decides what a client sees. `Display` is the explanation alone, without a category prefix.

use crate::transport::ConnectError;
use std::fmt;

/// Why a session could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// Reaching the device failed (allowed_hosts, DNS, TCP, SSH, host key, authentication).
    Connect(ConnectError),
    /// No prompt (or no prompt after an on-open command) before the open's deadline.
    NoPrompt(String),
    /// The connection ended or was cancelled during the login dialogue, the device kept asking
    /// questions, or its prompt could not be made out.
    Lost(String),
    /// The device refused the login.
    LoginRefused(String),
    /// The device refused the enable password.
    EnableRefused(String),
    /// The command policy refused a line the open would have typed.
    Refused(String),
    /// The platform's data could not be used with this device (a learned prompt pattern).
    Platform(String),
    /// The broker is shutting down.
    ShuttingDown,
    /// max_sessions sessions are open or being opened.
    SessionLimit { max: usize },
    /// The API token holds its `max_sessions` already.
    TokenSessionLimit { token: String, max: usize },
    /// The most probes that may run at once are running.
    ProbeLimit { max: usize },
    /// No thread could be started for the session.
    SessionThread(std::io::Error),
    /// No thread could be started for the open itself.
    OpenThread(std::io::Error),
    /// No randomness for a session id.
    NoRandomness(std::io::Error),
    /// The open thread panicked.
    Panicked,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Connect(e) => e.fmt(f),
            OpenError::NoPrompt(m)
            | OpenError::Lost(m)
            | OpenError::LoginRefused(m)
            | OpenError::EnableRefused(m)
            | OpenError::Refused(m)
            | OpenError::Platform(m) => f.write_str(m),
            OpenError::ShuttingDown => f.write_str("The broker is shutting down"),
            OpenError::SessionLimit { max } => {
                write!(f, "Session limit reached (max_sessions = {max})")
            }
            OpenError::TokenSessionLimit { token, max } => write!(
                f,
                "API token {token:?} holds its max_sessions ({max}) already; close one of its sessions first"
            ),
            OpenError::ProbeLimit { max } => {
                write!(
                    f,
                    "Probe limit reached ({max} probes running); try again shortly"
                )
            }
            OpenError::SessionThread(e) => write!(f, "cannot start a session thread: {e}"),
            OpenError::OpenThread(e) => write!(f, "cannot start a thread for the open: {e}"),
            OpenError::NoRandomness(e) => write!(f, "no randomness for a session id: {e}"),
            OpenError::Panicked => f.write_str("the open thread panicked (see the broker log)"),
        }
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // The connect error is the cause; its own source follows.
            OpenError::Connect(e) => Some(e),
            OpenError::SessionThread(e) | OpenError::OpenThread(e) | OpenError::NoRandomness(e) => {
                Some(e)
            }
            _ => None,
        }
    }
}

impl From<ConnectError> for OpenError {
    fn from(e: ConnectError) -> OpenError {
        OpenError::Connect(e)
    }
}

/// Why an exec failed. The partial output and the results so far travel next to it
/// (`ExecFailure`), not in it.
#[derive(Debug)]
pub enum ExecError {
    /// No such session.
    NotFound,
    /// Another exec is running (or queued) on the session.
    Busy,
    /// The session's connection is dead (carries why, and what to do).
    Dead(String),
    /// The session was closed before or while the exec ran.
    Closed(String),
    /// A command did not return to the prompt before its deadline.
    TimedOut(String),
    /// The device has not returned to its prompt since an earlier timeout; nothing was sent.
    Desynced(String),
    /// The command policy refused a line; nothing of the exec was sent (or, mid-exec, nothing
    /// more).
    Refused(String),
    /// The device's output showed a failure (stop_on_error), or it did not enter config mode.
    DeviceFailed(String),
    /// A config block on a platform without a configuration mode.
    NoConfigMode { platform: String },
    /// A save on a platform without a save command.
    NoSave { platform: String },
    /// The session's change guard fired while the exec ran: it was interrupted (the results so
    /// far travel with it) and the rollback runs next.
    GuardFired(String),
    /// The exec's job was cancelled (DELETE .../jobs/{id}): interrupted, results so far kept.
    Cancelled(String),
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::NotFound => f.write_str("Session not found"),
            ExecError::Busy => f.write_str("Session is busy (concurrent exec in progress)"),
            ExecError::Dead(m)
            | ExecError::Closed(m)
            | ExecError::TimedOut(m)
            | ExecError::Desynced(m)
            | ExecError::Refused(m)
            | ExecError::DeviceFailed(m)
            | ExecError::GuardFired(m)
            | ExecError::Cancelled(m) => f.write_str(m),
            ExecError::NoConfigMode { platform } => {
                write!(f, "platform {platform} has no configuration mode")
            }
            ExecError::NoSave { platform } => write!(f, "platform {platform} has no save command"),
        }
    }
}

impl std::error::Error for ExecError {}

/// Why a change guard could not be armed, changed or ended.
#[derive(Debug)]
pub enum GuardError {
    /// No such session.
    NotFound,
    /// The session has no guard.
    NoGuard,
    /// A guard is already armed on the session (one per session).
    AlreadyArmed,
    /// The guard already ended (its state is given).
    Ended(&'static str),
    /// An exec is running on the session (arming types into the device).
    Busy,
    /// The session's connection is dead.
    Dead(String),
    /// The command policy refuses a rollback line (nothing was armed).
    Refused(String),
    /// The device could not arm its own revert timer (nothing was armed).
    DeviceRevert(String),
    /// An armed guard must end before the session is deleted.
    Armed,
    /// `guard/probe` on a guard armed without `probe` credentials.
    NoProbe,
}

impl fmt::Display for GuardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuardError::NotFound => f.write_str("Session not found"),
            GuardError::NoGuard => f.write_str("No change guard on this session"),
            GuardError::AlreadyArmed => f.write_str(
                "A change guard is already armed on this session (one per session): extend, confirm, roll back or disarm it first",
            ),
            GuardError::Ended(state) => write!(f, "The change guard already ended ({state})"),
            GuardError::Busy => f.write_str("Session is busy (concurrent exec in progress)"),
            GuardError::Dead(m) | GuardError::Refused(m) | GuardError::DeviceRevert(m) => {
                f.write_str(m)
            }
            GuardError::NoProbe => f.write_str(
                "The change guard has no probe: arm it with `probe` (the login to try)",
            ),
            GuardError::Armed => f.write_str(
                "A change guard is armed on this session: confirm, roll back or disarm it (DELETE .../guard) before closing the session",
            ),
        }
    }
}

impl std::error::Error for GuardError {}
