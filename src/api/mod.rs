//! The API knows HTTP and JSON: routing on (method, path segments), token check, and turning
//! domain results and errors into responses. Handlers never wait on a device: opens and execs
//! are handed to the session thread together with the way back to the client.

pub mod auth;
mod docs;
pub mod error;
mod guard;
mod host;
mod jobs;
mod probe;
pub mod wire;

pub use host::HostGuard;

use crate::api::error::Error;
use crate::http::{Handler, Request, Responder, Response};
use crate::platform;
use crate::policy::{Algorithms, HostKeyPolicy, HostList, JumpRules};
use crate::session::driver::CmdResult;
use crate::session::{Caller, ExecError, ExecReport, OpenRequest, Protocol, Registry};
use crate::transport::Hop;
use auth::{AuthLimiter, Principal};
use parking_lot::RwLock;
use probe::ProbeRoute;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Api {
    pub registry: Arc<Registry>,
    /// Swapped whole by a reload (SIGHUP); a request reads it once, when it starts.
    live: RwLock<Arc<ApiLive>>,
    /// The dashboard (it answers only while `web_users` is configured).
    pub web: crate::web::Web,
    /// Wrong tokens per client address (kept across reloads).
    limiter: AuthLimiter,
    /// The audit trail of state-changing requests.
    audit: Arc<crate::observe::audit::AuditLog>,
}

/// The API's settings that a reload may change.
#[derive(Debug, Clone, Default)]
pub struct ApiLive {
    /// The API tokens (`api_tokens`, and `api_token` as `default`).
    pub tokens: crate::policy::Tokens,
    /// Wrong tokens one address may send per minute before 429 (0: no limit).
    pub auth_failures_per_minute: u32,
    pub command_timeout: Duration,
    pub default_session_timeout: Duration,
    pub trust: ApiTrust,
    /// `GET /metrics` without a token (config `metrics_public`).
    pub metrics_public: bool,
    /// The names token-less routes answer to (config `server_names`, the bind address).
    pub hosts: HostGuard,
}

/// What the API checks before anything reaches a device.
#[derive(Debug, Clone, Default)]
pub struct ApiTrust {
    pub key_dir: Option<std::path::PathBuf>,
    pub host_key_policy: HostKeyPolicy,
    pub host_key_policy_override_any: bool,
    pub legacy_hosts: HostList,
    /// The config's jump-host chains and rules.
    pub jumps: JumpRules,
}

impl ApiTrust {
    /// A key file must be a regular file inside key_dir (after resolving links and `..`). A
    /// missing path and a path outside key_dir get the same answer, so a client cannot probe
    /// which files exist elsewhere on the host.
    fn key_file(&self, k: &str) -> Result<std::path::PathBuf, Error> {
        self.key_file_at(k, vec![json!("body"), json!("key_file")])
    }

    fn key_file_at(&self, k: &str, loc: Vec<Value>) -> Result<std::path::PathBuf, Error> {
        let bad = |m: String| Error::validation(loc.clone(), m, "value_error");
        let dir = self
            .key_dir
            .as_ref()
            .ok_or_else(|| bad("key authentication needs key_dir in the broker's config".into()))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| bad(format!("key_dir {}: {e}", dir.display())))?;
        let p = std::path::Path::new(k);
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            dir.join(p)
        };
        let refused = || {
            bad(format!(
                "key_file must name a readable file inside key_dir ({})",
                dir.display()
            ))
        };
        let real = p.canonicalize().map_err(|_| refused())?;
        if !real.starts_with(&dir) || !real.is_file() {
            return Err(refused());
        }
        Ok(real)
    }

    fn policy(&self, asked: Option<HostKeyPolicy>) -> Result<HostKeyPolicy, Error> {
        self.policy_at(asked, vec![json!("body"), json!("host_key_policy")])
    }

    fn policy_at(
        &self,
        asked: Option<HostKeyPolicy>,
        loc: Vec<Value>,
    ) -> Result<HostKeyPolicy, Error> {
        match asked {
            None => Ok(self.host_key_policy),
            Some(p) if p >= self.host_key_policy || self.host_key_policy_override_any => Ok(p),
            Some(p) => Err(Error::validation(
                loc,
                format!(
                    "{} is weaker than the broker's host_key_policy {} (allowed only with host_key_policy_override: any)",
                    p.name(),
                    self.host_key_policy.name()
                ),
                "value_error",
            )),
        }
    }

    /// The jump hosts of an open: the request's `jump` (each hop's key file, host-key policy
    /// and algorithms checked as a device's are), else the chain of the config's first
    /// `jump_hosts` rule that matches the device, else none.
    fn jump(&self, asked: Option<Vec<wire::JumpBody>>, device: &str) -> Result<Vec<Hop>, Error> {
        let Some(list) = asked else {
            let Some((name, hops)) = self.jumps.chain_for(device) else {
                return Ok(Vec::new());
            };
            return hops
                .iter()
                .map(|h| {
                    let key_file = match &h.key_file {
                        Some(k) => Some(self.key_file(k).map_err(|e| {
                            Error::Internal(format!(
                                "jump_hosts chain {name:?}: key_file {k:?}: {}",
                                match &e {
                                    Error::Validation(v) => v
                                        .iter()
                                        .map(|f| f.msg.clone())
                                        .collect::<Vec<_>>()
                                        .join("; "),
                                    other => other.to_string(),
                                }
                            ))
                        })?),
                        None => None,
                    };
                    Ok(Hop {
                        algorithms: Algorithms {
                            legacy: h
                                .legacy_algorithms
                                .unwrap_or_else(|| self.legacy_default(&h.host)),
                            ..Default::default()
                        },
                        // The config's author chose it: no stricter-than check.
                        host_key_policy: h.host_key_policy.unwrap_or(self.host_key_policy),
                        host: h.host.clone(),
                        port: h.port,
                        username: h.username.clone(),
                        password: h.password.clone(),
                        key_file,
                        passphrase: h.passphrase.clone(),
                    })
                })
                .collect();
        };
        let mut out = Vec::new();
        for (i, j) in list.into_iter().enumerate() {
            let loc = |f: &str| vec![json!("body"), json!("jump"), json!(i), json!(f)];
            let key_file = match &j.key_file {
                Some(k) => Some(self.key_file_at(k, loc("key_file"))?),
                None => None,
            };
            out.push(Hop {
                algorithms: Algorithms {
                    legacy: j
                        .legacy_algorithms
                        .unwrap_or_else(|| self.legacy_default(&j.host)),
                    ..Default::default()
                },
                host_key_policy: self.policy_at(j.host_key_policy, loc("host_key_policy"))?,
                port: j.port.unwrap_or(22),
                host: j.host,
                username: j.username,
                password: j.password,
                key_file,
                passphrase: j.passphrase,
            });
        }
        Ok(out)
    }

    fn legacy_default(&self, host: &str) -> bool {
        self.legacy_hosts.matches_name(host)
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| self.legacy_hosts.matches_addr(ip))
    }
}

/// What a route does with the request.
enum Outcome {
    Now(Response),
    /// The responder was handed to a session thread.
    Later,
}

fn ok_json(status: u16, v: Value) -> Result<Outcome, Error> {
    Ok(Outcome::Now(Response::json(status, &v)))
}

pub fn error_response(e: &Error) -> Response {
    let r = Response::json(e.status(), &e.body());
    match e {
        Error::MethodNotAllowed(allowed) => r.with_header("Allow", &allowed.join(", ")),
        Error::TooMany {
            retry_after: Some(s),
            ..
        } => r.with_header("Retry-After", &s.to_string()),
        _ => r,
    }
}

/// What one request carries through the API: its id, and the token it turned out to be made
/// with (filled in by the token check; read when the answer goes out).
pub(crate) struct Ctx {
    pub rid: Arc<str>,
    pub who: Arc<std::sync::OnceLock<Principal>>,
    /// Whom the audit line names (a token, also an expired one, or a dashboard user).
    pub actor: Arc<std::sync::OnceLock<auth::Actor>>,
}

/// Every answer of a request: `X-Request-ID`, the id in an error body, the count by token, and
/// (for a state-changing request) the audit line.
struct Finishing {
    rid: Arc<str>,
    who: Arc<std::sync::OnceLock<Principal>>,
    actor: Arc<std::sync::OnceLock<auth::Actor>>,
    method: String,
    path: String,
    client: std::net::IpAddr,
    audit: Arc<crate::observe::audit::AuditLog>,
    metrics: Arc<crate::observe::metrics::Metrics>,
    /// The session an open created (from its 201 body).
    opened: Option<String>,
}

impl crate::http::Finish for Finishing {
    fn before(&mut self, r: &mut Response) {
        r.headers
            .push(("X-Request-ID".into(), self.rid.to_string()));
        let json = r
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("Content-Type") && v == "application/json");
        if r.status >= 400 && json && r.body.first() == Some(&b'{') {
            // `{"request_id": "...", ` + the rest: no parse of a body that may be large.
            let mut b = Vec::with_capacity(r.body.len() + self.rid.len() + 20);
            b.extend_from_slice(b"{\"request_id\":");
            b.extend_from_slice(&serde_json::to_vec(&*self.rid).unwrap_or_default());
            if r.body.len() > 2 {
                b.push(b',');
            }
            b.extend_from_slice(&r.body[1..]);
            r.body = b.into();
        }
        if r.status == 201 && route_template(&self.path).ends_with("session") {
            self.opened = serde_json::from_slice::<Value>(&r.body)
                .ok()
                .and_then(|v| v["session_id"].as_str().map(str::to_string));
        }
    }

    fn after(self: Box<Self>, status: u16) {
        let who = self.who.get();
        if let Some(p) = who {
            self.metrics.token_request(p.name());
        }
        if matches!(self.method.as_str(), "GET" | "HEAD" | "OPTIONS") || !self.audit.wanted() {
            return;
        }
        let template = route_template(&self.path);
        let session = self.opened.clone().or_else(|| {
            let segs: Vec<&str> = self.path.trim_start_matches('/').split('/').collect();
            match segs.as_slice() {
                ["session" | "telnet-session", id, ..] => Some(id.to_string()),
                ["ui", "close", id] => Some(id.to_string()),
                _ => None,
            }
        });
        let actor = self.actor.get();
        let named = |kinds: &[auth::ActorKind]| {
            actor
                .filter(|a| kinds.contains(&a.kind))
                .map(|a| a.name.to_string())
        };
        self.audit.record(&json!({
            "ts": crate::util::iso8601(std::time::SystemTime::now()),
            "request_id": &*self.rid,
            "token": named(&[auth::ActorKind::Token, auth::ActorKind::ExpiredToken]),
            "role": actor.map(|a| a.role.name()),
            "web_user": named(&[auth::ActorKind::WebUser]),
            "expired": actor.is_some_and(|a| a.kind == auth::ActorKind::ExpiredToken),
            "client": self.client.to_string(),
            "method": self.method,
            "route": template,
            "session_id": session,
            "status": status,
        }));
    }
}

impl Handler for Api {
    fn handle(&self, req: Request, responder: Responder) {
        let ctx = Ctx {
            rid: auth::request_id(&req),
            who: Arc::new(std::sync::OnceLock::new()),
            actor: Arc::new(std::sync::OnceLock::new()),
        };
        let _scope = crate::observe::logging::RequestScope::enter(Some(ctx.rid.clone()));
        let responder = responder.with_finish(Box::new(Finishing {
            rid: ctx.rid.clone(),
            who: ctx.who.clone(),
            actor: ctx.actor.clone(),
            method: req.method.clone(),
            path: req.path().to_string(),
            client: req.remote.ip(),
            audit: self.audit.clone(),
            metrics: self.registry.metrics().clone(),
            opened: None,
        }));
        let mut slot = Some(responder);
        let result = self.route(&req, &mut slot, &ctx);
        let resp = match result {
            Ok(Outcome::Later) => return,
            Ok(Outcome::Now(r)) => r,
            Err(e) => error_response(&e),
        };
        match slot.take() {
            Some(r) => r.send(resp),
            // A route handed its responder on and then failed: the client gets a 500 from the
            // dropped responder, and the cause must at least be in the log.
            None => log::error!(
                "{} {}: answer {} lost: {}",
                req.method,
                req.path(),
                resp.status,
                String::from_utf8_lossy(&resp.body)
            ),
        }
    }

    fn observe(&self, method: &str, path: &str, status: u16) {
        self.registry.metrics().http_request(
            route_template(path),
            crate::observe::metrics::method_label(method),
            status,
        );
    }
}

/// Every route of the JSON API and its documentation, as [`route_template`] names it: each is a
/// path of `openapi.json` (`{id}` is its `{session_id}`; `{asset}` and `{action}` are each of
/// the documented files and guard actions). `tests/it/docs.rs` checks that both ways.
pub const ROUTES: &[&str] = &[
    "/health",
    "/sessions",
    "/device-types",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/{asset}",
    "/session",
    "/session/{id}",
    "/session/{id}/status",
    "/session/{id}/exec",
    "/telnet-session",
    "/telnet-session/{id}",
    "/telnet-session/{id}/status",
    "/telnet-session/{id}/exec",
    "/session/{id}/jobs",
    "/session/{id}/jobs/{job_id}",
    "/session/{id}/jobs/{job_id}/output",
    "/session/{id}/jobs/{job_id}/cancel",
    "/telnet-session/{id}/jobs",
    "/telnet-session/{id}/jobs/{job_id}",
    "/telnet-session/{id}/jobs/{job_id}/output",
    "/telnet-session/{id}/jobs/{job_id}/cancel",
    "/session/{id}/guard",
    "/session/{id}/guard/{action}",
    "/telnet-session/{id}/guard",
    "/telnet-session/{id}/guard/{action}",
    "/guards",
    "/probe",
    "/telnet-probe",
    "/api/v2.0/netmiko/send_command",
    "/api/v2.0/netmiko/send_config",
];

/// The dashboard's routes (HTML, not in `openapi.json`), as [`route_template`] names them.
pub const DASHBOARD_ROUTES: &[&str] = &[
    "/",
    "/login",
    "/logout",
    "/ui/style.css",
    "/ui/close/{id}",
    "/ui/close-all",
];

/// The route a path belongs to, as a fixed template (ids never reach a metric label): one of
/// [`ROUTES`], [`DASHBOARD_ROUTES`], or `other`.
pub fn route_template(path: &str) -> &'static str {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segs.as_slice() {
        ["health"] => "/health",
        ["sessions"] => "/sessions",
        ["device-types"] => "/device-types",
        ["metrics"] => "/metrics",
        ["openapi.json"] => "/openapi.json",
        ["docs"] => "/docs",
        ["docs", "docs.js" | "docs.css"] => "/docs/{asset}",
        ["session"] => "/session",
        ["session", _] => "/session/{id}",
        ["session", _, "status"] => "/session/{id}/status",
        ["session", _, "exec"] => "/session/{id}/exec",
        ["telnet-session"] => "/telnet-session",
        ["telnet-session", _] => "/telnet-session/{id}",
        ["telnet-session", _, "status"] => "/telnet-session/{id}/status",
        ["telnet-session", _, "exec"] => "/telnet-session/{id}/exec",
        ["session", _, "jobs"] => "/session/{id}/jobs",
        ["session", _, "jobs", _] => "/session/{id}/jobs/{job_id}",
        ["session", _, "jobs", _, "output"] => "/session/{id}/jobs/{job_id}/output",
        ["session", _, "jobs", _, "cancel"] => "/session/{id}/jobs/{job_id}/cancel",
        ["telnet-session", _, "jobs"] => "/telnet-session/{id}/jobs",
        ["telnet-session", _, "jobs", _] => "/telnet-session/{id}/jobs/{job_id}",
        ["telnet-session", _, "jobs", _, "output"] => "/telnet-session/{id}/jobs/{job_id}/output",
        ["telnet-session", _, "jobs", _, "cancel"] => "/telnet-session/{id}/jobs/{job_id}/cancel",
        ["session", _, "guard"] => "/session/{id}/guard",
        ["session", _, "guard", _] => "/session/{id}/guard/{action}",
        ["telnet-session", _, "guard"] => "/telnet-session/{id}/guard",
        ["telnet-session", _, "guard", _] => "/telnet-session/{id}/guard/{action}",
        ["guards"] => "/guards",
        ["probe"] => "/probe",
        ["telnet-probe"] => "/telnet-probe",
        ["api", "v2.0", "netmiko", "send_command"] => "/api/v2.0/netmiko/send_command",
        ["api", "v2.0", "netmiko", "send_config"] => "/api/v2.0/netmiko/send_config",
        [""] => "/",
        ["login"] => "/login",
        ["logout"] => "/logout",
        ["ui", "style.css"] => "/ui/style.css",
        ["ui", "close", _] => "/ui/close/{id}",
        ["ui", "close-all"] => "/ui/close-all",
        _ => "other",
    }
}

impl Api {
    pub fn new(
        registry: Arc<Registry>,
        live: ApiLive,
        web: crate::web::Web,
        audit: Arc<crate::observe::audit::AuditLog>,
    ) -> Api {
        Api {
            registry,
            live: RwLock::new(Arc::new(live)),
            web,
            limiter: AuthLimiter::default(),
            audit,
        }
    }

    /// The settings in effect now.
    pub fn live(&self) -> Arc<ApiLive> {
        self.live.read().clone()
    }

    /// Requests that start from now on use `live`; those under way finish with the old.
    pub fn set_live(&self, live: ApiLive) {
        *self.live.write() = Arc::new(live);
    }

    /// The request's token, checked (429, 401) and recorded in `ctx`.
    fn authorized(&self, req: &Request, live: &ApiLive, ctx: &Ctx) -> Result<Principal, Error> {
        match auth::authenticate(
            req,
            self.web.client(req),
            &live.tokens,
            &self.limiter,
            live.auth_failures_per_minute,
            &ctx.rid,
        ) {
            Ok(p) => {
                let _ = ctx.actor.set(auth::Actor {
                    name: p.token.name.clone(),
                    role: p.role(),
                    kind: auth::ActorKind::Token,
                });
                let _ = ctx.who.set(p.clone());
                Ok(p)
            }
            Err((e, why)) => {
                self.registry.metrics().auth_failed(why.label());
                if let auth::Refusal::Expired(t) = &why {
                    let _ = ctx.actor.set(auth::Actor {
                        name: t.name.clone(),
                        role: t.role,
                        kind: auth::ActorKind::ExpiredToken,
                    });
                }
                match why {
                    auth::Refusal::Expired(_) => log::warn!(
                        "{} {} from {}: refused: {e}",
                        req.method,
                        req.path(),
                        req.remote.ip()
                    ),
                    // Warned about once when the limit was reached; the metric counts the rest.
                    auth::Refusal::Limited => log::debug!(
                        "{} {} from {}: refused: {e}",
                        req.method,
                        req.path(),
                        req.remote.ip()
                    ),
                    auth::Refusal::Unknown => log::info!(
                        "{} {} from {}: refused: unknown API token",
                        req.method,
                        req.path(),
                        req.remote.ip()
                    ),
                    auth::Refusal::Missing => {}
                }
                Err(e)
            }
        }
    }

    fn route(
        &self,
        req: &Request,
        slot: &mut Option<Responder>,
        ctx: &Ctx,
    ) -> Result<Outcome, Error> {
        let path = req.path();
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let live = self.live();
        // Token-less routes answer only under one of the broker's names (DNS rebinding).
        self.check_host(req, &segs, &live)?;
        // /openapi.json and /docs[/...]: public, like FastAPI's.
        if let Some(r) = docs::route(req) {
            return r.map(Outcome::Now);
        }
        let m = req.method.as_str();
        const GET: &[&str] = &["GET"];
        const POST: &[&str] = &["POST"];
        const DELETE: &[&str] = &["DELETE"];
        // Route first (unknown path 404, wrong method 405), then the token, then the body:
        // the order FastAPI answered in.
        // `/session/...` and `/telnet-session/...` share ids: either prefix finds a session of
        // either protocol; the prefix only picks the protocol of a new one.
        let telnet = segs.first() == Some(&"telnet-session");
        let mut segs = segs;
        if telnet {
            segs[0] = "session";
        }
        let web_user = |user: &str, role: crate::policy::Role| {
            let _ = ctx.actor.set(auth::Actor {
                name: user.into(),
                role,
                kind: auth::ActorKind::WebUser,
            });
        };
        if let Some(r) = self.web.route(req, &segs, &web_user) {
            return r.map(Outcome::Now);
        }
        let allowed: &[&str] = match segs.as_slice() {
            ["health"] | ["sessions"] | ["device-types"] | ["metrics"] | ["guards"] => GET,
            ["session"] => POST,
            ["session", _, "guard"] => &["POST", "GET", "DELETE"],
            ["session", _, "guard", "extend" | "confirm" | "rollback" | "probe"] => POST,
            ["session", _, "jobs"] | ["session", _, "jobs", _, "output"] => GET,
            ["session", _, "jobs", _] => &["GET", "DELETE"],
            ["session", _, "jobs", _, "cancel"] => POST,
            ["session", _, "status"] => GET,
            ["session", _, "exec"] => POST,
            ["session", _] => DELETE,
            ["probe"] | ["telnet-probe"] => POST,
            ["api", "v2.0", "netmiko", "send_command" | "send_config"] => POST,
            _ => return Err(Error::RouteNotFound),
        };
        if !allowed.contains(&m) {
            return Err(Error::MethodNotAllowed(allowed));
        }
        if segs.as_slice() == ["health"] {
            return ok_json(
                200,
                json!({"status": "ok", "version": env!("CARGO_PKG_VERSION"), "sessions": self.registry.len()}),
            );
        }
        if segs.as_slice() == ["metrics"] {
            if !live.metrics_public {
                self.authorized(req, &live, ctx)?;
            }
            return Ok(Outcome::Now(Response {
                status: 200,
                headers: vec![(
                    "Content-Type".into(),
                    crate::observe::metrics::CONTENT_TYPE.into(),
                )],
                body: self
                    .registry
                    .metrics()
                    .render(self.registry.gauge_states())
                    .into_bytes()
                    .into(),
            }));
        }
        let p = self.authorized(req, &live, ctx)?;
        // The role decides before anything else is read: a refusal says nothing about whether
        // a session exists.
        p.may(m, route_template(path))?;
        match segs.as_slice() {
            ["sessions"] => {
                let list: Vec<Value> = self
                    .registry
                    .list()
                    .iter()
                    .filter(|h| p.sees(h))
                    .map(|h| status_for(&p, h))
                    .collect();
                ok_json(200, json!({"count": list.len(), "sessions": list}))
            }
            ["device-types"] => ok_json(200, device_types()),
            ["session"] => self.open(req, slot, telnet, &live, &p),
            ["session", id, "status"] => {
                let h = p.session(self.registry.get(id))?;
                ok_json(200, status_for(&p, &h))
            }
            ["session", id, "exec"] => self.exec(id, req, slot, &live, &p),
            ["session", id, "guard"] => self.guard_route(id, None, req, slot, &live, &p),
            ["session", id, "guard", action] => {
                self.guard_route(id, Some(action), req, slot, &live, &p)
            }
            ["guards"] => ok_json(200, self.guards(&p)),
            ["session", id, "jobs", rest @ ..] => self.jobs_route(id, rest, req, &p),
            ["probe"] => self.probe(req, slot, ProbeRoute::Probe { telnet: false }, &live, &p),
            ["telnet-probe"] => {
                self.probe(req, slot, ProbeRoute::Probe { telnet: true }, &live, &p)
            }
            ["api", "v2.0", "netmiko", which] => {
                let config = *which == "send_config";
                self.probe(req, slot, ProbeRoute::Netmiko { config }, &live, &p)
            }
            ["session", id] => {
                // Closing what does not exist (or what this token does not see) is done
                // already: 204, as the original service answered.
                let Some(h) = self.registry.get(id).filter(|h| p.sees(h)) else {
                    return Ok(Outcome::Now(Response::empty(204)));
                };
                // An armed change guard must end first (confirm, roll back or disarm it).
                if h.guard_armed() {
                    return Err(crate::session::GuardError::Armed.into());
                }
                self.registry
                    .remove(id, crate::observe::metrics::CloseReason::Delete);
                log::info!(
                    "session {id} host {}: closed by API token {:?}",
                    h.info.host,
                    p.name()
                );
                Ok(Outcome::Now(Response::empty(204)))
            }
            _ => Err(Error::RouteNotFound),
        }
    }

    /// Every answer of an open is counted here: one refused here now, the others when the
    /// registry or the session thread calls the reply.
    fn open(
        &self,
        req: &Request,
        slot: &mut Option<Responder>,
        telnet_path: bool,
        live: &ApiLive,
        p: &Principal,
    ) -> Result<Outcome, Error> {
        let r = self.open_checked(req, slot, telnet_path, live, p);
        if let Err(e) = &r {
            let protocol = if telnet_path {
                Protocol::Telnet
            } else {
                Protocol::Ssh
            };
            self.registry
                .metrics()
                .session_opened(protocol.name(), e.label());
        }
        r
    }

    fn open_checked(
        &self,
        req: &Request,
        slot: &mut Option<Responder>,
        telnet_path: bool,
        live: &ApiLive,
        p: &Principal,
    ) -> Result<Outcome, Error> {
        let open = self.open_request(
            wire::open_body(&req.body)?,
            telnet_path,
            live,
            Some(p.caller.clone()),
        )?;
        // Taken only after every check above: an error there is answered by the caller.
        let responder = slot
            .take()
            .ok_or_else(|| Error::Internal("responder already used".into()))?;
        let metrics = self.registry.metrics().clone();
        let protocol = open.protocol.name();
        self.registry.open(
            open,
            Box::new(move |r| {
                let r = r.map_err(Error::from);
                let label = r.as_ref().map_or_else(Error::label, |_| "ok");
                metrics.session_opened(protocol, label);
                responder.send(match r {
                    Ok(info) => Response::json(201, &wire::opened_json(&info)),
                    Err(e) => error_response(&e),
                })
            }),
        );
        Ok(Outcome::Later)
    }

    /// An open body, checked against the live settings (device type, key file, host-key
    /// policy, algorithms), as the request a session thread or a probe opens with.
    pub(crate) fn open_request(
        &self,
        b: wire::OpenBody,
        telnet_path: bool,
        live: &ApiLive,
        caller: Option<Arc<Caller>>,
    ) -> Result<OpenRequest, Error> {
        // Netmiko opens `*_telnet` device types over Telnet; so does POST /session.
        let protocol = if telnet_path
            || b.device_type
                .trim()
                .to_ascii_lowercase()
                .ends_with("_telnet")
        {
            Protocol::Telnet
        } else {
            Protocol::Ssh
        };
        let platform = platform::lookup(&b.device_type).ok_or_else(|| {
            Error::validation(
                vec![json!("body"), json!("device_type")],
                format!(
                    "Unsupported device_type {:?}; known: {}",
                    b.device_type,
                    platform::known_names().join(", ")
                ),
                "value_error",
            )
        })?;
        let key_file = match &b.key_file {
            Some(k) => Some(live.trust.key_file(k)?),
            None => None,
        };
        let host_key_policy = live.trust.policy(b.host_key_policy)?;
        let jump = live.trust.jump(b.jump, &b.host)?;
        let algorithms = Algorithms {
            legacy: b
                .legacy_algorithms
                .unwrap_or_else(|| live.trust.legacy_default(&b.host)),
            kex: b.kex,
            host_key: b.host_key_algorithms,
            ciphers: b.ciphers,
            macs: b.macs,
        };
        Ok(OpenRequest {
            key_file,
            passphrase: b.passphrase,
            algorithms,
            host_key_policy,
            protocol,
            host: b.host,
            port: b.port.unwrap_or(match protocol {
                Protocol::Ssh => 22,
                Protocol::Telnet => 23,
            }),
            username: b.username,
            password: b.password,
            enable_secret: b.enable_password,
            device_type: b.device_type,
            platform,
            connect_timeout: b.timeout,
            session_timeout: b.session_timeout.unwrap_or(live.default_session_timeout),
            enable_level: b.enable_level,
            keepalive_interval: b.keepalive_interval,
            jump,
            caller,
        })
    }

    /// Every exec request that reached the route is counted and timed: one refused here now,
    /// the others when the session answers.
    fn exec(
        &self,
        id: &str,
        req: &Request,
        slot: &mut Option<Responder>,
        live: &ApiLive,
        p: &Principal,
    ) -> Result<Outcome, Error> {
        let started = Instant::now();
        let r = self.exec_checked(id, req, slot, started, live, p);
        if let Err(e) = &r {
            self.registry
                .metrics()
                .exec_done(e.label(), started.elapsed());
        }
        r
    }
}

/// A session's status as `p` may see it: a viewer's without the device's output.
fn status_for(p: &Principal, h: &crate::session::SessionHandle) -> Value {
    let mut v = wire::status_json(h);
    if !p.sees_output() {
        if let Some(g) = v.get_mut("guard") {
            guard::strip_output(g);
        }
    }
    v
}

/// `GET /device-types`: every accepted name, the profile each runs on, and the profiles.
fn device_types() -> Value {
    let known = platform::known();
    let profiles: serde_json::Map<String, Value> =
        known.iter().map(|(n, p)| (n.clone(), json!(p))).collect();
    let platforms: Vec<Value> = platform::all()
        .unwrap_or(&[])
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "description": p.description,
                "aliases": p.aliases,
                "modes": p.modes.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
                "enable": p.enable.is_some(),
                "enable_levels": p.enable.as_ref().is_some_and(|e| e.level_command.is_some()),
                "config": p.config.is_some(),
                "save": p.config.as_ref().and_then(|c| c.save.as_ref()).map(|s| s.command.as_str()),
                "read_only_commands": p.read_only_commands,
                "device_revert": p.device_revert.as_ref().map(|d| json!({
                    "description": d.description,
                    "minutes": d.minutes,
                })),
            })
        })
        .collect();
    json!({
        "device_types": known.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        "profiles": profiles,
        "platforms": platforms,
    })
}

/// A config block or save on a platform that has none is refused before anything is sent.
pub(super) fn check_config_support(profile: &str, config: bool, save: bool) -> Result<(), Error> {
    let Some(p) = platform::lookup(profile) else {
        return Ok(());
    };
    let (field, what) = match &p.config {
        None if config => ("config", "a configuration mode"),
        None if save => ("save", "a save command"),
        Some(c) if save && c.save.is_none() => ("save", "a save command"),
        _ => return Ok(()),
    };
    Err(Error::validation(
        vec![json!("body"), json!(field)],
        format!("The session's platform {:?} has no {what}", p.name),
        "value_error",
    ))
}

/// An exec's results, or the error it is answered with (a failure part way carries the
/// results so far, the failed command and its partial output next to `detail`).
pub(super) fn exec_result(r: Result<ExecReport, ExecError>) -> Result<Vec<CmdResult>, Error> {
    match r {
        Err(e) => Err(Error::from(e)),
        Ok(ExecReport {
            results,
            failure: None,
        }) => Ok(results),
        Ok(ExecReport {
            results,
            failure: Some(f),
        }) => {
            let mut extra = wire::exec_json(&results);
            extra.insert("command".into(), json!(f.command));
            extra.insert("partial_output".into(), json!(f.partial));
            Err(Error::WithFields(Box::new(f.error.into()), extra))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{route_template, DASHBOARD_ROUTES, ROUTES};
    use std::collections::BTreeSet;

    /// A path of `template`, its placeholders filled in.
    fn instance(template: &str) -> String {
        template
            .replace("{id}", "0123456789abcdef")
            .replace("{job_id}", "fedcba9876543210")
            .replace("{asset}", "docs.js")
            .replace("{action}", "extend")
    }

    /// `ROUTES` and `DASHBOARD_ROUTES` are exactly what `route_template` can answer (its arms,
    /// read from this file), and each is the template of its own paths.
    #[test]
    fn routes_are_the_templates_route_template_answers() {
        let src = include_str!("mod.rs");
        let start = src.find("pub fn route_template(").unwrap();
        let body = &src[start..];
        let body = &body[..body.find("\n}\n").unwrap()];
        let arms: BTreeSet<&str> = body
            .split("=> ")
            .skip(1)
            .filter_map(|rest| {
                let rest = rest.trim_start_matches(['{', ' ', '\n']);
                rest.strip_prefix('"')?.split('"').next()
            })
            .collect();
        let listed: BTreeSet<&str> = ROUTES
            .iter()
            .chain(DASHBOARD_ROUTES)
            .copied()
            .chain(["other"])
            .collect();
        assert_eq!(arms, listed);
        assert_eq!(listed.len(), ROUTES.len() + DASHBOARD_ROUTES.len() + 1);
        for t in ROUTES.iter().chain(DASHBOARD_ROUTES) {
            assert_eq!(route_template(&instance(t)), *t, "{t}");
        }
        for p in ["/nope", "/session/x/jobs/y/z/w", "/docs/other.js"] {
            assert_eq!(route_template(p), "other", "{p}");
        }
    }
}
