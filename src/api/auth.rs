//! Who a request is: its id (a client's `X-Request-ID` if sane, else a new one), its API token
//! (named, with a role, or the single `api_token` as the admin `default`), and what that role may
//! do on which route. Repeated wrong tokens from one address are answered 429 for a while, before
//! any token is compared.

use super::error::Error;
use crate::http::Request;
use crate::policy::{ApiToken, Role, Tokens};
use crate::session::{Caller, SessionHandle};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The roles that may use each route of the JSON API (method, route template), as
/// `openapi.json`'s `x-roles` lists them. Routes not listed need no token.
pub const ROUTE_ROLES: &[(&str, &str, &[Role])] = &[
    ("GET", "/sessions", ALL),
    ("GET", "/device-types", ALL),
    ("GET", "/metrics", ALL),
    ("GET", "/guards", ALL),
    ("POST", "/session", USE),
    ("POST", "/telnet-session", USE),
    ("GET", "/session/{id}/status", ALL),
    ("GET", "/telnet-session/{id}/status", ALL),
    ("DELETE", "/session/{id}", USE),
    ("DELETE", "/telnet-session/{id}", USE),
    ("POST", "/session/{id}/exec", USE),
    ("POST", "/telnet-session/{id}/exec", USE),
    ("GET", "/session/{id}/jobs", ALL),
    ("GET", "/telnet-session/{id}/jobs", ALL),
    ("GET", "/session/{id}/jobs/{job_id}", ALL),
    ("GET", "/telnet-session/{id}/jobs/{job_id}", ALL),
    ("GET", "/session/{id}/jobs/{job_id}/output", USE),
    ("GET", "/telnet-session/{id}/jobs/{job_id}/output", USE),
    ("DELETE", "/session/{id}/jobs/{job_id}", USE),
    ("DELETE", "/telnet-session/{id}/jobs/{job_id}", USE),
    ("POST", "/session/{id}/jobs/{job_id}/cancel", USE),
    ("POST", "/telnet-session/{id}/jobs/{job_id}/cancel", USE),
    ("GET", "/session/{id}/guard", ALL),
    ("GET", "/telnet-session/{id}/guard", ALL),
    ("POST", "/session/{id}/guard", CHANGE),
    ("POST", "/telnet-session/{id}/guard", CHANGE),
    ("DELETE", "/session/{id}/guard", CHANGE),
    ("DELETE", "/telnet-session/{id}/guard", CHANGE),
    ("POST", "/session/{id}/guard/{action}", CHANGE),
    ("POST", "/telnet-session/{id}/guard/{action}", CHANGE),
    ("POST", "/probe", USE),
    ("POST", "/telnet-probe", USE),
    ("POST", "/api/v2.0/netmiko/send_command", USE),
    ("POST", "/api/v2.0/netmiko/send_config", CHANGE),
];

const ALL: &[Role] = &[Role::Viewer, Role::Reader, Role::Operator, Role::Admin];
const USE: &[Role] = &[Role::Reader, Role::Operator, Role::Admin];
const CHANGE: &[Role] = &[Role::Operator, Role::Admin];

/// The roles that may use `method` on `template` (None: no token needed).
pub fn roles_for(method: &str, template: &str) -> Option<&'static [Role]> {
    ROUTE_ROLES
        .iter()
        .find(|(m, t, _)| *m == method && *t == template)
        .map(|(_, _, r)| *r)
}

/// The token a request was made with, and what it runs as.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token: Arc<ApiToken>,
    /// What the session layer knows of it (name, request id, its narrowing rules).
    pub caller: Arc<Caller>,
}

impl Principal {
    pub fn role(&self) -> Role {
        self.token.role
    }

    pub fn name(&self) -> &str {
        &self.token.name
    }

    /// May this token's role use `method` on the route `template`? 403 naming the token, its
    /// role and the roles that may.
    pub fn may(&self, method: &str, template: &str) -> Result<(), Error> {
        match roles_for(method, template) {
            Some(roles) if !roles.contains(&self.role()) => Err(Error::Forbidden(format!(
                "API token {:?} has role {}; {method} {template} needs {}",
                self.name(),
                self.role().name(),
                roles
                    .iter()
                    .map(|r| r.name())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ))),
            _ => Ok(()),
        }
    }

    /// Sees the device's output (job results, live output, a guard's rollback and probe
    /// output): every role but viewer.
    pub fn sees_output(&self) -> bool {
        self.role() != Role::Viewer
    }

    /// Sees the session: an admin or viewer sees every one, the others only their own.
    pub fn sees(&self, h: &SessionHandle) -> bool {
        self.role().sees_all() || h.info.owner.as_deref() == Some(self.name())
    }

    /// The session if this token sees it; 404 otherwise, as if it did not exist.
    pub fn session(&self, found: Option<Arc<SessionHandle>>) -> Result<Arc<SessionHandle>, Error> {
        found.filter(|h| self.sees(h)).ok_or(Error::SessionNotFound)
    }
}

/// A `reader`'s exec runs commands only: no config lines, no save, no answers typed into a
/// question (the commands themselves are held to the read-only list by the session).
pub fn reader_exec(p: &Principal, b: &super::wire::ExecBody) -> Result<(), Error> {
    if p.role() != Role::Reader {
        return Ok(());
    }
    let what = if b.config.is_some() {
        "config lines"
    } else if b.save {
        "save"
    } else if b
        .items
        .iter()
        .any(|i| i.interactions.iter().any(|x| !x.from_platform))
    {
        "interactions that type answers"
    } else {
        return Ok(());
    };
    Err(Error::Forbidden(format!(
        "API token {:?} has role reader: {what} need an operator or admin token; nothing was sent",
        p.name()
    )))
}

/// Wrong tokens per client address, in fixed one-minute windows. Bounded: at most
/// [`MAX_TRACKED`] addresses; past that, windows that ended are dropped, then the oldest.
#[derive(Default)]
pub struct AuthLimiter {
    seen: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

const WINDOW: Duration = Duration::from_secs(60);
const MAX_TRACKED: usize = 4096;

impl AuthLimiter {
    /// Seconds to wait when `ip` has used up its wrong tokens for this window.
    pub fn limited(&self, ip: IpAddr, per_minute: u32) -> Option<u64> {
        if per_minute == 0 {
            return None;
        }
        let seen = self.seen.lock();
        let w = seen.get(&ip)?;
        let left = WINDOW.checked_sub(w.start.elapsed())?;
        (w.failures >= per_minute).then(|| left.as_secs().max(1))
    }

    /// One more wrong token from `ip`. True when this one used up the window's allowance (the
    /// moment worth one warning).
    pub fn failed(&self, ip: IpAddr, per_minute: u32) -> bool {
        let mut seen = self.seen.lock();
        if seen.len() >= MAX_TRACKED && !seen.contains_key(&ip) {
            seen.retain(|_, w| w.start.elapsed() < WINDOW);
            if seen.len() >= MAX_TRACKED {
                if let Some(oldest) = seen.iter().min_by_key(|(_, w)| w.start).map(|(k, _)| *k) {
                    seen.remove(&oldest);
                }
            }
        }
        let w = seen.entry(ip).or_insert(Window {
            start: Instant::now(),
            failures: 0,
        });
        if w.start.elapsed() >= WINDOW {
            *w = Window {
                start: Instant::now(),
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
        per_minute > 0 && w.failures == per_minute
    }
}

/// Why a request carries no usable token: for the log and `auth_failures_total`.
pub enum Refusal {
    Missing,
    Unknown,
    /// A known token past its `expires` (the audit line names it).
    Expired(Arc<ApiToken>),
    Limited,
}

impl Refusal {
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Unknown => "unknown",
            Refusal::Expired(_) => "expired",
            Refusal::Limited => "limited",
        }
    }
}

/// Who a request's audit line names: a token (`expired` when refused for that), or a dashboard
/// user.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: Arc<str>,
    pub role: Role,
    pub kind: ActorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    Token,
    ExpiredToken,
    WebUser,
}

/// Check the request's `X-API-Token` against `tokens`: 429 first if its address is limited,
/// then 401 (missing, unknown, or expired, each said so).
pub fn authenticate(
    req: &Request,
    ip: IpAddr,
    tokens: &Tokens,
    limiter: &AuthLimiter,
    per_minute: u32,
    request_id: &Arc<str>,
) -> Result<Principal, (Error, Refusal)> {
    if let Some(wait) = limiter.limited(ip, per_minute) {
        return Err((
            Error::TooMany {
                detail: format!(
                    "Too many requests with a wrong API token from {ip}; try again in {wait} s"
                ),
                retry_after: Some(wait),
            },
            Refusal::Limited,
        ));
    }
    let Some(presented) = req.header("X-API-Token") else {
        return Err((Error::Unauthorized, Refusal::Missing));
    };
    let Some(token) = tokens.find(presented.as_bytes()) else {
        if limiter.failed(ip, per_minute) {
            log::warn!(
                "{ip}: {per_minute} wrong API tokens within a minute; its requests are answered 429 until the minute is over"
            );
        }
        return Err((Error::Unauthorized, Refusal::Unknown));
    };
    if let Some((_, written)) = token.expires.as_ref().filter(|_| token.expired()) {
        {
            return Err((
                Error::TokenExpired(format!(
                    "API token {:?} expired at {written}; ask for a new one",
                    token.name
                )),
                Refusal::Expired(token.clone()),
            ));
        }
    }
    let caller = Arc::new(Caller {
        name: token.name.clone(),
        request_id: request_id.clone(),
        rules: token.commands.clone(),
        read_only: token.role == Role::Reader,
        allowed_hosts: token.allowed_hosts.clone(),
        max_sessions: token.max_sessions,
    });
    Ok(Principal {
        token: token.clone(),
        caller,
    })
}

/// Longest request id kept from a client.
const MAX_REQUEST_ID: usize = 128;

/// The request's id: the client's `X-Request-ID` when it is 1 to 128 of `A-Z a-z 0-9 . _ : -`
/// (a UUID, a playbook's task id), else a new one (16 hex digits, unique in this process).
pub fn request_id(req: &Request) -> Arc<str> {
    if let Some(id) = req.header("X-Request-ID").map(str::trim) {
        if !id.is_empty()
            && id.len() <= MAX_REQUEST_ID
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        {
            return id.into();
        }
    }
    new_request_id().into()
}

/// A process-random start and a counter: no syscall per request, never the same twice.
fn new_request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        let mut b = [0u8; 8];
        match getrandom::fill(&mut b) {
            Ok(()) => u64::from_le_bytes(b),
            Err(_) => crate::util::unix_now() as u64,
        }
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:016x}",
        start.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            target: "/sessions".into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
            remote: "192.0.2.7:40000".parse().unwrap(),
        }
    }

    #[test]
    fn request_ids_are_kept_when_sane_and_made_otherwise() {
        assert_eq!(
            &*request_id(&req(&[("X-Request-ID", "task-42:a.b_c")])),
            "task-42:a.b_c"
        );
        for bad in ["", "two words", "x\u{1b}[2J", &"a".repeat(129), "a\"b"] {
            let id = request_id(&req(&[("X-Request-ID", bad)]));
            assert_eq!(id.len(), 16, "{bad:?}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        let a = request_id(&req(&[]));
        let b = request_id(&req(&[]));
        assert_ne!(a, b);
    }

    #[test]
    fn wrong_tokens_are_limited_per_address_and_window() {
        let l = AuthLimiter::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        for i in 0..3 {
            assert!(l.limited(ip, 3).is_none());
            assert_eq!(l.failed(ip, 3), i == 2, "the third one reaches the limit");
        }
        let wait = l.limited(ip, 3).unwrap();
        assert!((1..=60).contains(&wait));
        assert!(l.limited(other, 3).is_none());
        assert!(l.limited(ip, 0).is_none(), "0 turns the limit off");
        // Bounded: many addresses never grow the table past its cap.
        for i in 0..(MAX_TRACKED as u32 + 100) {
            l.failed(IpAddr::from(i.to_be_bytes()), 3);
        }
        assert!(l.seen.lock().len() <= MAX_TRACKED);
    }

    #[test]
    fn every_guarded_route_has_roles_and_admin_may_use_all() {
        for (m, t, roles) in ROUTE_ROLES {
            assert!(super::super::ROUTES.contains(t), "{t}");
            assert!(roles.contains(&Role::Admin), "{m} {t}");
        }
    }
}
