//! The one table from every error a client can be answered with (the API's own, and the
//! layers' `OpenError`, `ExecError`, `ConnectError`) to its HTTP status, its FastAPI-shaped JSON
//! body and its metrics `result` label. Nothing else decides a status for an error. This module
//! depends on no other part of `api/` (so `http.rs` may use it without knowing routes).

use crate::session::{ExecError, GuardError, OpenError};
use serde_json::{json, Map, Value};
use std::fmt;

/// One field-level validation problem, in FastAPI/pydantic's shape.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub loc: Vec<Value>,
    pub msg: String,
    pub kind: &'static str,
}

impl FieldError {
    pub fn new(loc: Vec<Value>, msg: impl Into<String>, kind: &'static str) -> Self {
        FieldError {
            loc,
            msg: msg.into(),
            kind,
        }
    }
}

#[derive(Debug, PartialEq)]
pub enum Error {
    /// Missing or wrong X-API-Token.
    Unauthorized,
    /// A known API token past its `expires`: the detail says so.
    TokenExpired(String),
    /// Too many requests: wrong tokens from one client (`Retry-After` seconds), or a token's
    /// `max_sessions`.
    TooMany {
        detail: String,
        retry_after: Option<u64>,
    },
    /// The device rejected our credentials (login or enable).
    DeviceAuth(String),
    /// The target or a command is outside what the configuration allows (403).
    Forbidden(String),
    /// Connect, handshake, login or first prompt did not finish in time.
    OpenTimeout(String),
    /// Any other failure to reach or talk to the device while opening.
    Connect(String),
    /// The session has no change guard.
    GuardNotFound,
    /// No such job on the session.
    JobNotFound,
    /// The job's result was dropped (retention, caps): why.
    JobGone(String),
    /// The request conflicts with the state of the session's change guard (409).
    Conflict(String),
    /// No such session.
    SessionNotFound,
    /// No such route.
    RouteNotFound,
    /// Route exists, method does not; carries the allowed methods.
    MethodNotAllowed(&'static [&'static str]),
    /// The session exists but its connection is dead.
    SessionDead(String),
    /// Another exec is running on the session.
    Busy,
    /// The broker could not run a command (deadline passed, transport failed).
    Exec(String),
    /// Another error plus fields (partial output, results so far) merged into its JSON body
    /// next to `detail`; the status is the inner error's.
    WithFields(Box<Error>, Map<String, Value>),
    /// Request body or field validation failed (FastAPI's 422 shape).
    Validation(Vec<FieldError>),
    /// Malformed HTTP.
    BadRequest(String),
    /// A token-less route asked for under a `Host` that is not one of the broker's names (a
    /// DNS-rebinding guard); carries the host as sent.
    UnknownHost(String),
    /// Body larger than max_body_bytes.
    PayloadTooLarge(usize),
    /// Header block too large.
    HeadersTooLarge,
    /// A limit was reached (max_sessions, connections, queue).
    Capacity(String),
    /// `http.rs`: the request's framing is malformed (head, Content-Length, chunks); the detail
    /// is the problem as found, without the `Bad request:` prefix of [`Error::BadRequest`].
    Framing(String),
    /// `http.rs`: the head or the body did not arrive in time (a slow client).
    RequestTimeout(&'static str),
    /// `http.rs`: an `Expect` other than `100-continue`.
    ExpectationFailed,
    /// `http.rs`: a Transfer-Encoding other than chunked.
    NotImplemented(String),
    /// `http.rs`: the handler dropped its responder without answering (it panicked).
    NoAnswer,
    /// `web/`: wrong dashboard username or password.
    LoginFailed,
    /// `web/`: a dashboard form without a valid CSRF token.
    StaleForm,
    /// `web/`: too many failed dashboard logins from one address; seconds to wait.
    TooManyLogins(u64),
    /// A bug or an unexpected failure inside the broker.
    Internal(String),
}

impl Error {
    /// The single mapping from error to HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Error::Unauthorized
            | Error::TokenExpired(_)
            | Error::DeviceAuth(_)
            | Error::LoginFailed => 401,
            Error::TooMany { .. } => 429,
            Error::Forbidden(_) | Error::StaleForm => 403,
            Error::OpenTimeout(_) => 504,
            Error::Connect(_) => 502,
            Error::SessionNotFound
            | Error::GuardNotFound
            | Error::JobNotFound
            | Error::RouteNotFound => 404,
            Error::JobGone(_) => 410,
            Error::Conflict(_) => 409,
            Error::MethodNotAllowed(_) => 405,
            Error::SessionDead(_) => 410,
            Error::Busy => 409,
            Error::Exec(_) | Error::Internal(_) | Error::NoAnswer => 500,
            Error::WithFields(inner, _) => inner.status(),
            Error::Validation(_) => 422,
            Error::BadRequest(_) | Error::Framing(_) => 400,
            Error::RequestTimeout(_) => 408,
            Error::ExpectationFailed => 417,
            Error::NotImplemented(_) => 501,
            Error::TooManyLogins(_) => 429,
            Error::UnknownHost(_) => 421,
            Error::PayloadTooLarge(_) => 413,
            Error::HeadersTooLarge => 431,
            Error::Capacity(_) => 503,
        }
    }

    /// The `result` label of the opens and execs counters.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Unauthorized
            | Error::TokenExpired(_)
            | Error::DeviceAuth(_)
            | Error::LoginFailed => "auth_failed",
            Error::TooMany { .. } => "limited",
            Error::Forbidden(_) | Error::StaleForm => "forbidden",
            Error::SessionNotFound
            | Error::GuardNotFound
            | Error::JobNotFound
            | Error::RouteNotFound => "not_found",
            Error::JobGone(_) => "gone",
            Error::Busy => "busy",
            Error::Conflict(_) => "conflict",
            Error::SessionDead(_) => "session_dead",
            Error::PayloadTooLarge(_) => "too_large",
            Error::Validation(_) => "invalid",
            Error::Connect(_) => "connect_error",
            Error::Capacity(_) => "refused_full",
            Error::OpenTimeout(_) => "timeout",
            Error::WithFields(inner, _) => inner.label(),
            Error::MethodNotAllowed(_)
            | Error::Exec(_)
            | Error::Internal(_)
            | Error::NoAnswer
            | Error::Framing(_)
            | Error::RequestTimeout(_)
            | Error::ExpectationFailed
            | Error::NotImplemented(_)
            | Error::TooManyLogins(_)
            | Error::BadRequest(_)
            | Error::UnknownHost(_)
            | Error::HeadersTooLarge => "error",
        }
    }

    /// JSON body: `{"detail": ...}` as FastAPI sends it.
    pub fn body(&self) -> Value {
        match self {
            Error::Validation(errs) => {
                let detail: Vec<Value> = errs
                    .iter()
                    .map(|e| json!({"type": e.kind, "loc": e.loc, "msg": e.msg}))
                    .collect();
                json!({ "detail": detail })
            }
            Error::WithFields(inner, extra) => {
                let mut m = extra.clone();
                m.insert("detail".into(), inner.body()["detail"].clone());
                Value::Object(m)
            }
            other => json!({ "detail": other.to_string() }),
        }
    }

    /// A local I/O failure while serving a request: out of descriptors or memory is a capacity
    /// problem (503, try again), anything else is internal (500).
    pub fn local_io(context: &str, e: &std::io::Error) -> Error {
        if is_resource_exhaustion(e) {
            Error::Capacity(format!(
                "{context}: {e}; the broker is out of resources, try again shortly"
            ))
        } else {
            Error::Internal(format!("{context}: {e}"))
        }
    }

    pub fn validation(loc: Vec<Value>, msg: impl Into<String>, kind: &'static str) -> Error {
        Error::Validation(vec![FieldError::new(loc, msg, kind)])
    }
}

pub use crate::util::is_resource_exhaustion;

impl From<OpenError> for Error {
    fn from(e: OpenError) -> Error {
        match e {
            OpenError::Connect(c) => c.into(),
            OpenError::NoPrompt(m) => Error::OpenTimeout(m),
            OpenError::Lost(m) => Error::Connect(m),
            OpenError::LoginRefused(m) | OpenError::EnableRefused(m) => Error::DeviceAuth(m),
            OpenError::Refused(m) => Error::Forbidden(m),
            OpenError::Platform(m) => Error::Internal(m),
            OpenError::OpenThread(ref source) => {
                Error::local_io("cannot start a thread for the open", source)
            }
            OpenError::TokenSessionLimit { .. } => Error::TooMany {
                detail: e.to_string(),
                retry_after: None,
            },
            OpenError::ShuttingDown
            | OpenError::SessionLimit { .. }
            | OpenError::ProbeLimit { .. }
            | OpenError::SessionThread(_) => Error::Capacity(e.to_string()),
            OpenError::NoRandomness(_) | OpenError::Panicked => Error::Internal(e.to_string()),
        }
    }
}

impl From<ExecError> for Error {
    fn from(e: ExecError) -> Error {
        match e {
            ExecError::NotFound => Error::SessionNotFound,
            ExecError::Busy => Error::Busy,
            ExecError::Dead(m) | ExecError::Closed(m) => Error::SessionDead(m),
            ExecError::TimedOut(m) | ExecError::Desynced(m) | ExecError::DeviceFailed(m) => {
                Error::Exec(m)
            }
            ExecError::Refused(m) => Error::Forbidden(m),
            ExecError::NoConfigMode { .. } | ExecError::NoSave { .. } => {
                Error::BadRequest(e.to_string())
            }
            ExecError::GuardFired(m) | ExecError::Cancelled(m) => Error::Conflict(m),
        }
    }
}

impl From<GuardError> for Error {
    fn from(e: GuardError) -> Error {
        match e {
            GuardError::NotFound => Error::SessionNotFound,
            GuardError::NoGuard => Error::GuardNotFound,
            GuardError::Busy => Error::Busy,
            GuardError::Dead(m) => Error::SessionDead(m),
            GuardError::Refused(m) => Error::Forbidden(m),
            GuardError::AlreadyArmed
            | GuardError::Ended(_)
            | GuardError::DeviceRevert(_)
            | GuardError::NoProbe
            | GuardError::Armed => Error::Conflict(e.to_string()),
        }
    }
}

impl From<crate::transport::ConnectError> for Error {
    /// A jump host's failure (`Hop`) answers as the same failure would on a direct open, with
    /// the hop named in the detail.
    fn from(e: crate::transport::ConnectError) -> Error {
        use crate::transport::ConnectError as C;
        let detail = e.to_string();
        let mut kind = &e;
        let mut hop = None;
        while let C::Hop { source, hop: n, .. } = kind {
            hop.get_or_insert(*n);
            kind = source;
        }
        match kind {
            C::NotAllowed { .. } => Error::Forbidden(detail),
            C::TimedOut { .. } => Error::OpenTimeout(detail),
            C::Local { context, source } => Error::local_io(context, source),
            C::Auth { .. } | C::KeyFile { .. } => Error::DeviceAuth(detail),
            C::Algorithm { field, message } => {
                let mut loc = vec![json!("body")];
                if let Some(n) = hop {
                    loc.extend([json!("jump"), json!(n - 1)]);
                }
                loc.push(json!(field));
                Error::validation(loc, message.clone(), "value_error")
            }
            C::Library { .. } => Error::Internal(detail),
            C::Resolve { .. }
            | C::NoAddress { .. }
            | C::Tcp { .. }
            | C::Socket { .. }
            | C::Ssh { .. }
            | C::HostKey { .. }
            | C::Forward { .. }
            | C::Hop { .. }
            | C::NoSsh => Error::Connect(detail),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unauthorized => f.write_str("Invalid or missing API token"),
            Error::TokenExpired(m) => f.write_str(m),
            Error::TooMany { detail, .. } => f.write_str(detail),
            Error::DeviceAuth(m) => write!(f, "Authentication failed: {m}"),
            Error::Forbidden(m) => write!(f, "Forbidden: {m}"),
            Error::OpenTimeout(m) => write!(f, "Connection timed out: {m}"),
            Error::Connect(m) => write!(f, "Connection error: {m}"),
            Error::SessionNotFound => f.write_str("Session not found"),
            Error::GuardNotFound => f.write_str("No change guard on this session"),
            Error::JobNotFound => f.write_str("Job not found"),
            Error::JobGone(why) => write!(f, "Job result gone: {why}"),
            Error::Conflict(m) => f.write_str(m),
            Error::RouteNotFound => f.write_str("Not Found"),
            Error::MethodNotAllowed(_) => f.write_str("Method Not Allowed"),
            Error::SessionDead(m) => write!(f, "Session connection is dead: {m}"),
            Error::Busy => f.write_str("Session is busy (concurrent exec in progress)"),
            Error::Exec(detail) => f.write_str(detail),
            Error::WithFields(inner, _) => inner.fmt(f),
            Error::Validation(errs) => {
                let parts: Vec<String> = errs.iter().map(|e| e.msg.clone()).collect();
                write!(f, "Validation error: {}", parts.join("; "))
            }
            Error::BadRequest(m) => write!(f, "Bad request: {m}"),
            Error::UnknownHost(h) => write!(
                f,
                "Misdirected request: Host {h:?} is not a name of this broker (use its address, \
                 localhost, or a name listed in the config's server_names)"
            ),
            Error::PayloadTooLarge(limit) => {
                write!(f, "Request body too large (limit {limit} bytes)")
            }
            Error::HeadersTooLarge => f.write_str("Request header fields too large"),
            Error::Capacity(m) => f.write_str(m),
            Error::Internal(m) => write!(f, "Internal error: {m}"),
            Error::Framing(m) | Error::NotImplemented(m) => f.write_str(m),
            Error::RequestTimeout(m) => f.write_str(m),
            Error::ExpectationFailed => f.write_str("Expectation Failed"),
            Error::NoAnswer => f.write_str("Internal Server Error"),
            Error::LoginFailed => f.write_str("Invalid username or password."),
            Error::StaleForm => f.write_str(
                "The form was stale or not sent by this dashboard. Reload the page and try again.",
            ),
            Error::TooManyLogins(secs) => write!(
                f,
                "Too many failed logins from your address. Try again in {secs} s."
            ),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source_scan::{code_of, rs_files};

    #[test]
    fn statuses_follow_the_seed() {
        let cases: Vec<(Error, u16)> = vec![
            (Error::Unauthorized, 401),
            (Error::DeviceAuth("x".into()), 401),
            (Error::OpenTimeout("x".into()), 504),
            (Error::Connect("x".into()), 502),
            (Error::SessionNotFound, 404),
            (Error::SessionDead("x".into()), 410),
            (Error::Busy, 409),
            (Error::PayloadTooLarge(1), 413),
            (Error::UnknownHost("x".into()), 421),
            (Error::Capacity("x".into()), 503),
            (Error::validation(vec![], "m", "t"), 422),
        ];
        for (e, s) in cases {
            assert_eq!(e.status(), s, "{e:?}");
        }
    }

    /// The labels the metrics had when they were derived from statuses: the label is a
    /// function of the status, as before.
    #[test]
    fn labels_follow_the_statuses() {
        let cases: Vec<Error> = vec![
            Error::Unauthorized,
            Error::DeviceAuth("x".into()),
            Error::Forbidden("x".into()),
            Error::OpenTimeout("x".into()),
            Error::Connect("x".into()),
            Error::SessionNotFound,
            Error::RouteNotFound,
            Error::MethodNotAllowed(&["GET"]),
            Error::SessionDead("x".into()),
            Error::Busy,
            Error::Exec("x".into()),
            Error::WithFields(Box::new(Error::Busy), Map::new()),
            Error::validation(vec![], "m", "t"),
            Error::BadRequest("x".into()),
            Error::UnknownHost("x".into()),
            Error::PayloadTooLarge(1),
            Error::HeadersTooLarge,
            Error::Capacity("x".into()),
            Error::Internal("x".into()),
            Error::Framing("x".into()),
            Error::RequestTimeout("x"),
            Error::ExpectationFailed,
            Error::NotImplemented("x".into()),
            Error::NoAnswer,
            Error::LoginFailed,
            Error::StaleForm,
            Error::TooManyLogins(1),
        ];
        for e in cases {
            let by_status = match e.status() {
                401 => "auth_failed",
                403 => "forbidden",
                404 => "not_found",
                409 => "busy",
                410 => "session_dead",
                413 => "too_large",
                422 => "invalid",
                502 => "connect_error",
                503 => "refused_full",
                504 => "timeout",
                _ => "error",
            };
            assert_eq!(e.label(), by_status, "{e:?}");
        }
    }

    /// Layer errors reach the client with the status and detail they had before the layers
    /// had their own types.
    #[test]
    fn layer_errors_keep_their_status_and_detail() {
        use crate::transport::ConnectError as C;
        let io = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let cases: Vec<(Error, u16, &str)> = vec![
            (
                C::NotAllowed {
                    host: "h".into(),
                    addresses: vec!["10.0.0.1".parse().unwrap()],
                }
                .into(),
                403,
                "Forbidden: h (10.0.0.1) is not in allowed_hosts",
            ),
            (
                C::timed_out("TCP connect", "h").into(),
                504,
                "Connection timed out: TCP connect to h did not complete in time",
            ),
            (
                C::NoAddress { host: "h".into() }.into(),
                502,
                "Connection error: h: name resolved to no address",
            ),
            (
                C::Algorithm {
                    field: "kex",
                    message: "no usable algorithm in the list".into(),
                }
                .into(),
                422,
                "",
            ),
            (
                OpenError::Connect(C::Auth {
                    message: "h rejected the credentials".into(),
                    source: None,
                })
                .into(),
                401,
                "Authentication failed: h rejected the credentials",
            ),
            (
                C::Hop {
                    hop: 1,
                    addr: "bastion:22".into(),
                    source: Box::new(C::Auth {
                        message: "bastion rejected the credentials".into(),
                        source: None,
                    }),
                }
                .into(),
                401,
                "Authentication failed: jump host 1 (bastion:22): bastion rejected the credentials",
            ),
            (
                C::Hop {
                    hop: 2,
                    addr: "b2:22".into(),
                    source: Box::new(C::timed_out("SSH handshake", "b2")),
                }
                .into(),
                504,
                "Connection timed out: jump host 2 (b2:22): SSH handshake to b2 did not complete in time",
            ),
            (
                C::Forward {
                    hop: 1,
                    addr: "bastion.example:22".into(),
                    target: "10.1.1.1:22".into(),
                    refused: true,
                    reason: "administratively prohibited".into(),
                }
                .into(),
                502,
                "Connection error: jump host 1 (bastion.example:22) refused the forward to 10.1.1.1:22: administratively prohibited",
            ),
            (
                OpenError::SessionLimit { max: 3 }.into(),
                503,
                "Session limit reached (max_sessions = 3)",
            ),
            (
                OpenError::OpenThread(io()).into(),
                500,
                "Internal error: cannot start a thread for the open: connection refused",
            ),
            (ExecError::NotFound.into(), 404, "Session not found"),
            (
                ExecError::Busy.into(),
                409,
                "Session is busy (concurrent exec in progress)",
            ),
            (
                ExecError::Closed("gone".into()).into(),
                410,
                "Session connection is dead: gone",
            ),
            (ExecError::TimedOut("slow".into()).into(), 500, "slow"),
            (ExecError::Refused("no".into()).into(), 403, "Forbidden: no"),
            (
                ExecError::NoSave {
                    platform: "p".into(),
                }
                .into(),
                400,
                "Bad request: platform p has no save command",
            ),
        ];
        for (e, status, detail) in cases {
            assert_eq!(e.status(), status, "{e:?}");
            if status == 422 {
                assert_eq!(
                    e.body(),
                    json!({"detail": [{"type": "value_error", "loc": ["body", "kex"], "msg": "no usable algorithm in the list"}]})
                );
            } else {
                assert_eq!(e.body()["detail"], detail, "{e:?}");
            }
        }
    }

    /// The layers below `api/` know no HTTP: they name neither this table nor `http/`, build
    /// no FastAPI body locations and ask no error for a status.
    #[test]
    fn no_layer_below_api_knows_http() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let layers = [
            "transport",
            "session",
            "channel",
            "platform",
            "policy",
            "observe",
            "config",
        ];
        let forbidden = [
            "crate::error",
            "crate::api",
            "crate::http",
            "FieldError",
            "json!(\"body\")",
            ".status()",
        ];
        let files = rs_files(layers.iter().map(|l| src.join(l)).collect());
        assert!(files.len() > 10, "{files:?}");
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for (n, line) in text.lines().enumerate() {
                for bad in forbidden {
                    assert!(
                        !line.contains(bad),
                        "{}:{}: {bad:?} below api/: {line}",
                        f.display(),
                        n + 1
                    );
                }
            }
        }
    }

    /// Nothing outside this table decides the status or the body of an error: `http/` (its
    /// framing and capacity refusals), `web/` (its error pages), `config/`, `server.rs`, `main.rs`
    /// and the `cmd/` subcommands write no error status as a number and build no
    /// `{"detail": ...}` body. Successes (2xx, 3xx) are written where they are produced, and
    /// `http::reason` names the reason phrases of every status.
    #[test]
    fn nothing_outside_the_table_decides_a_status() {
        const ERROR_STATUSES: &[u32] = &[
            400, 401, 403, 404, 405, 408, 409, 410, 413, 417, 421, 422, 429, 431, 500, 501, 502,
            503, 504,
        ];
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let files = rs_files(
            ["http", "web", "config", "server.rs", "main.rs", "cmd"]
                .iter()
                .map(|l| src.join(l))
                .collect(),
        );
        assert!(files.len() >= 12, "{files:?}");
        let mut found = Vec::new();
        for f in &files {
            let raw = std::fs::read_to_string(f).unwrap();
            let raw = raw.split("#[cfg(test)]").next().unwrap();
            for (n, line) in raw.lines().enumerate() {
                let squeezed: String = line.chars().filter(|c| !c.is_whitespace()).collect();
                if squeezed.contains("json!({\"detail\"") {
                    found.push(format!("{}:{}: {line}", f.display(), n + 1));
                }
            }
            let mut code = code_of(f);
            // The reason phrases: a name for every status, not a decision.
            if let Some(start) = code.find("pub fn reason(") {
                let end = code[start..]
                    .find("\n}\n")
                    .map_or(code.len(), |e| start + e);
                let lines = code[start..end].matches('\n').count();
                code.replace_range(start..end, &"\n".repeat(lines));
            }
            for (n, line) in code.lines().enumerate() {
                let b = line.as_bytes();
                let mut i = 0;
                while i < b.len() {
                    if !b[i].is_ascii_digit() {
                        i += 1;
                        continue;
                    }
                    let start = i;
                    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                        i += 1;
                    }
                    let glued = start > 0
                        && (b[start - 1].is_ascii_alphanumeric()
                            || b[start - 1] == b'_'
                            || b[start - 1] == b'.');
                    let number: Option<u32> = line[start..i].parse().ok();
                    // Timeouts in milliseconds are numbers too.
                    let duration = line[..start].ends_with("from_millis(");
                    if !glued && !duration && number.is_some_and(|n| ERROR_STATUSES.contains(&n)) {
                        found.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
                    }
                }
            }
        }
        assert!(
            found.is_empty(),
            "statuses or bodies decided outside api/error.rs:\n{}",
            found.join("\n")
        );
    }

    #[test]
    fn validation_body_has_fastapi_shape() {
        let e = Error::validation(
            vec![json!("body"), json!("host")],
            "Field required",
            "missing",
        );
        assert_eq!(
            e.body(),
            json!({"detail": [{"type": "missing", "loc": ["body", "host"], "msg": "Field required"}]})
        );
        assert_eq!(
            Error::SessionNotFound.body(),
            json!({"detail": "Session not found"})
        );
    }

    #[test]
    fn exec_error_keeps_extra_fields_next_to_detail() {
        let mut extra = Map::new();
        extra.insert("partial_output".into(), json!("abc"));
        let e = Error::WithFields(Box::new(Error::Exec("timed out".into())), extra.clone());
        assert_eq!(e.status(), 500);
        assert_eq!(
            e.body(),
            json!({"detail": "timed out", "partial_output": "abc"})
        );
        let e = Error::WithFields(Box::new(Error::SessionDead("gone".into())), extra);
        assert_eq!(e.status(), 410);
        assert_eq!(e.body()["partial_output"], "abc");
    }
}
