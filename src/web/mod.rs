//! The operators' dashboard: server-rendered HTML (maud escapes every value), a signed login
//! cookie, CSRF tokens bound to the login, a per-client login rate limit. It exists only when
//! `web_users` is configured. It knows HTTP and the registry, nothing about devices.

mod pages;

use crate::api::error::Error;
use crate::config::{Config, WebUser};
use crate::http::{Request, Response};
use crate::policy::HostList;
use crate::secret::Secret;
use crate::session::Registry;
use hmac::{Hmac, Mac};
use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type HmacSha256 = Hmac<sha2::Sha256>;

const COOKIE: &str = "ndb_web";
/// Failed logins per client address within [`FAIL_WINDOW`] before 429.
pub const MAX_FAILURES: usize = 5;
pub const FAIL_WINDOW: Duration = Duration::from_secs(60);
/// Clients tracked at most by the rate limiter (memory bound under a flood of addresses).
const MAX_TRACKED: usize = 10_000;

pub struct Web {
    /// Swapped whole by a reload (SIGHUP).
    auth: RwLock<Arc<WebAuth>>,
    registry: Arc<Registry>,
    /// Failed login times per client address.
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
    /// Logged-out logins (nonce → expiry, unix seconds) until they would have expired anyway.
    revoked: Mutex<HashMap<String, u64>>,
}

/// The dashboard's settings that a reload may change. No users: the dashboard is off.
#[derive(Debug, Clone, Default)]
pub struct WebAuth {
    pub users: Vec<WebUser>,
    pub key: Secret,
    pub ttl: Duration,
    pub trusted_proxies: HostList,
}

impl WebAuth {
    pub fn from_config(c: &Config) -> WebAuth {
        WebAuth {
            users: c.live.web_users.clone(),
            key: c.live.web_secret_key.clone(),
            ttl: c.live.web_session_ttl,
            trusted_proxies: c.live.trusted_proxies.parsed.clone(),
        }
    }
}

/// A valid login, from its cookie.
pub struct Login {
    pub user: String,
    /// `viewer` looks only; `admin` may close sessions too (read from the config at each
    /// request, so a reload changes it at once).
    pub role: crate::policy::Role,
    nonce: String,
    pub csrf: String,
}

impl Web {
    /// The dashboard answers only while `web_users` is configured.
    pub fn from_config(c: &Config, registry: Arc<Registry>) -> Web {
        Web {
            auth: RwLock::new(Arc::new(WebAuth::from_config(c))),
            registry,
            failures: Mutex::new(HashMap::new()),
            revoked: Mutex::new(HashMap::new()),
        }
    }

    fn auth(&self) -> Arc<WebAuth> {
        self.auth.read().clone()
    }

    /// New users, key, login lifetime and proxies. Logins of users still listed stay valid
    /// while the key is unchanged; a new key logs everyone out.
    pub fn set_auth(&self, auth: WebAuth) {
        *self.auth.write() = Arc::new(auth);
    }

    /// Is this one of the dashboard's paths (whatever the method), while it is on?
    pub fn is_route(&self, segs: &[&str]) -> bool {
        !self.auth().users.is_empty()
            && matches!(
                segs,
                [""] | ["ui", "style.css"]
                    | ["login"]
                    | ["ui", "close-all"]
                    | ["logout"]
                    | ["ui", "close", _]
            )
    }

    /// The dashboard's routes; `None` for any other path, and for every path while it is off.
    /// `seen` is told who a logged-in request is (for its audit line).
    pub fn route(
        &self,
        req: &Request,
        segs: &[&str],
        seen: &dyn Fn(&str, crate::policy::Role),
    ) -> Option<Result<Response, Error>> {
        if self.auth().users.is_empty() {
            return None;
        }
        const GET: &[&str] = &["GET"];
        const POST: &[&str] = &["POST"];
        const BOTH: &[&str] = &["GET", "POST"];
        let m = req.method.as_str();
        let allowed: &[&str] = match segs {
            [""] | ["ui", "style.css"] => GET,
            ["login"] | ["ui", "close-all"] => BOTH,
            ["logout"] | ["ui", "close", _] => POST,
            _ => return None,
        };
        if !allowed.contains(&m) {
            return Some(Err(Error::MethodNotAllowed(allowed)));
        }
        Some(Ok(match segs {
            ["ui", "style.css"] => Response {
                status: 200,
                headers: vec![
                    ("Content-Type".into(), "text/css; charset=utf-8".into()),
                    ("Cache-Control".into(), "max-age=3600".into()),
                    ("X-Content-Type-Options".into(), "nosniff".into()),
                ],
                body: pages::STYLE.as_bytes().to_vec().into(),
            },
            ["login"] if m == "GET" => redirect("/"),
            ["login"] => self.login(req),
            _ => match self.logged_in(req) {
                None if m == "GET" => html(200, pages::login(None, "")),
                None => redirect("/"),
                Some(login) => {
                    seen(&login.user, login.role);
                    self.with_login(req, segs, &login)
                }
            },
        }))
    }

    fn with_login(&self, req: &Request, segs: &[&str], login: &Login) -> Response {
        let post = req.method == "POST";
        let form = if post {
            parse_form(&req.body)
        } else {
            Default::default()
        };
        if post {
            let sent = form.get("csrf").map(String::as_str).unwrap_or("");
            if !self.csrf_ok(login, sent) {
                log::warn!(
                    "dashboard: {} {} from {} refused: bad or missing CSRF token",
                    req.method,
                    req.path(),
                    self.client(req)
                );
                let e = Error::StaleForm;
                return html_error(
                    &e,
                    pages::message("Refused", &e.to_string(), login, self.registry.len()),
                );
            }
        }
        // A viewer looks only: every POST but its logout closes sessions, and the "close all"
        // confirmation page offers the button that would.
        let closes = if post {
            segs != ["logout"]
        } else {
            segs == ["ui", "close-all"]
        };
        if login.role == crate::policy::Role::Viewer && closes {
            log::warn!(
                "dashboard: {} (viewer) {} {} refused: a viewer cannot close sessions",
                login.user,
                req.method,
                req.path(),
            );
            let e = Error::Forbidden(format!(
                "{} has the dashboard role viewer, which cannot close sessions",
                login.user
            ));
            return html_error(
                &e,
                pages::message("Refused", &e.to_string(), login, self.registry.len()),
            );
        }
        if post {
            return match segs {
                ["logout"] => {
                    self.revoke(login);
                    log::info!("dashboard: {} logged out", login.user);
                    redirect("/").with_header("Set-Cookie", &clear_cookie(self.secure_attr(req)))
                }
                ["ui", "close", id] => {
                    // As DELETE /session/{id}: an armed change guard must end first.
                    if self.registry.get(id).is_some_and(|h| h.guard_armed()) {
                        log::warn!(
                            "dashboard: {} asked to close session {id}: not closed, its change guard is armed",
                            login.user
                        );
                    } else if self
                        .registry
                        .remove(id, crate::observe::metrics::CloseReason::Dashboard)
                    {
                        log::info!("dashboard: {} closed session {id}", login.user);
                    }
                    redirect("/")
                }
                ["ui", "close-all"] if form.get("confirm").map(String::as_str) == Some("yes") => {
                    // Only the sessions the confirmation page listed.
                    let listed = form.get("ids").map(String::as_str).unwrap_or("");
                    let mut closed = 0;
                    for id in listed.split(',').filter(|s| !s.is_empty()) {
                        if self.registry.get(id).is_some_and(|h| h.guard_armed()) {
                            continue;
                        }
                        if self
                            .registry
                            .remove(id, crate::observe::metrics::CloseReason::Dashboard)
                        {
                            closed += 1;
                        }
                    }
                    log::info!("dashboard: {} closed all sessions ({closed})", login.user);
                    redirect("/")
                }
                _ => redirect("/"),
            };
        }
        match segs {
            ["ui", "close-all"] => html(200, pages::confirm_close_all(&self.registry, login)),
            _ => html(200, pages::dashboard(&self.registry, login)),
        }
    }

    fn login(&self, req: &Request) -> Response {
        let client = self.client(req);
        // The attempt is counted before the password is checked, under one lock: concurrent
        // attempts cannot all pass the limit and each get a bcrypt check.
        if let Err(wait) = self.reserve_attempt(client) {
            log::warn!("dashboard: login from {client} refused: too many failed logins");
            let e = Error::TooManyLogins(wait.as_secs().max(1));
            return html_error(&e, pages::login(Some(&e.to_string()), ""))
                .with_header("Retry-After", &wait.as_secs().max(1).to_string());
        }
        let form = parse_form(&req.body);
        let name = form.get("username").map(String::as_str).unwrap_or("");
        let password = Secret::new(form.get("password").cloned().unwrap_or_default());
        let auth = self.auth();
        let user = auth.users.iter().find(|u| u.username == name);
        // An unknown user costs one bcrypt check too (against a configured hash), so the answer
        // time does not tell which usernames exist.
        let ok = user.or(auth.users.first()).is_some_and(|u| {
            bcrypt::verify(password.expose(), u.password_hash.expose()).unwrap_or(false)
        }) && user.is_some();
        drop(password);
        let Some(user) = user.filter(|_| ok) else {
            // The attempt was counted by reserve_attempt: it stays a failure.
            log::warn!(
                "dashboard: failed login from {client} ({})",
                if user.is_some() {
                    format!("user {name:?}")
                } else {
                    "unknown user".to_string()
                }
            );
            let e = Error::LoginFailed;
            return html_error(&e, pages::login(Some(&e.to_string()), name));
        };
        self.failures.lock().remove(&client);
        let cookie = match self.issue(&user.username) {
            Some(c) => c,
            None => {
                return html_error(
                    &Error::Internal("cannot create a login session".into()),
                    pages::login(Some("Could not create a login session."), ""),
                )
            }
        };
        log::info!("dashboard: {} logged in from {client}", user.username);
        redirect("/").with_header(
            "Set-Cookie",
            &format!(
                "{COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                auth.ttl.as_secs(),
                self.secure_attr(req)
            ),
        )
    }

    // --- login cookie ----------------------------------------------------------------------

    fn mac(&self, parts: &[&str]) -> Option<HmacSha256> {
        let mut m = HmacSha256::new_from_slice(self.auth().key.expose().as_bytes()).ok()?;
        for p in parts {
            m.update(p.as_bytes());
            m.update(b"\n");
        }
        Some(m)
    }

    fn sign(&self, parts: &[&str]) -> Option<String> {
        Some(hex(&self.mac(parts)?.finalize().into_bytes()))
    }

    /// `v1.<hex username>.<expiry unix s>.<nonce>.<hex HMAC-SHA256>`
    fn issue(&self, user: &str) -> Option<String> {
        let exp = (unix_now() + self.auth().ttl.as_secs()).to_string();
        let nonce = crate::util::random_id().ok()?;
        let u = hex(user.as_bytes());
        let sig = self.sign(&["login", &u, &exp, &nonce])?;
        Some(format!("v1.{u}.{exp}.{nonce}.{sig}"))
    }

    /// The login of a request: signature valid (checked in constant time), not expired, not
    /// logged out, and the user still configured.
    pub fn logged_in(&self, req: &Request) -> Option<Login> {
        let value = cookie(req, COOKIE)?;
        let mut it = value.split('.');
        let (v, u, exp, nonce, sig) = (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
        if v != "v1" || it.next().is_some() {
            return None;
        }
        let sig = unhex(sig)?;
        self.mac(&["login", u, exp, nonce])?
            .verify_slice(&sig)
            .ok()?;
        let exp_n: u64 = exp.parse().ok()?;
        if exp_n <= unix_now() || self.revoked.lock().contains_key(nonce) {
            return None;
        }
        let user = String::from_utf8(unhex(u)?).ok()?;
        let role = self.auth().users.iter().find(|x| x.username == user)?.role;
        let csrf = self.sign(&["csrf", nonce])?;
        Some(Login {
            user,
            role,
            nonce: format!("{nonce}.{exp_n}"),
            csrf,
        })
    }

    fn csrf_ok(&self, login: &Login, sent: &str) -> bool {
        let Some(nonce) = login.nonce.split('.').next() else {
            return false;
        };
        match (unhex(sent), self.mac(&["csrf", nonce])) {
            (Some(s), Some(m)) => m.verify_slice(&s).is_ok(),
            _ => false,
        }
    }

    fn revoke(&self, login: &Login) {
        let (nonce, exp) = login.nonce.split_once('.').unwrap_or((&login.nonce, "0"));
        let now = unix_now();
        let mut r = self.revoked.lock();
        r.retain(|_, e| *e > now);
        r.insert(
            nonce.to_string(),
            exp.parse().unwrap_or(now + self.auth().ttl.as_secs()),
        );
    }

    // --- rate limit ------------------------------------------------------------------------

    /// The client's address: the peer, or, when the peer is a trusted proxy, the last address
    /// in `X-Forwarded-For` that is not itself a trusted proxy.
    pub fn client(&self, req: &Request) -> IpAddr {
        let peer = canonical(req.remote.ip());
        let auth = self.auth();
        let proxies = &auth.trusted_proxies;
        if proxies.is_empty() || !proxies.matches_addr(peer) {
            return peer;
        }
        let Some(xff) = req.header("X-Forwarded-For") else {
            return peer;
        };
        for part in xff.rsplit(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) if proxies.matches_addr(canonical(ip)) => continue,
                Ok(ip) => return canonical(ip),
                Err(_) => return peer,
            }
        }
        peer
    }

    /// Count one login attempt of `client` as a failure in advance, atomically with the check
    /// of the limit: `Err(wait)` when [`MAX_FAILURES`] attempts already failed (or are being
    /// checked) within [`FAIL_WINDOW`]. A successful login forgives the client's failures.
    /// `; Secure` when the browser reached a trusted proxy over HTTPS (its last
    /// `X-Forwarded-Proto` value is `https`), so the cookie is never sent back over plain HTTP.
    /// Empty for a direct connection, and for a header from a client that is not a trusted
    /// proxy.
    fn secure_attr(&self, req: &Request) -> &'static str {
        let peer = canonical(req.remote.ip());
        let auth = self.auth();
        let proxied = !auth.trusted_proxies.is_empty() && auth.trusted_proxies.matches_addr(peer);
        let https = req
            .header("X-Forwarded-Proto")
            .and_then(|v| v.rsplit(',').next())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
        if proxied && https {
            "; Secure"
        } else {
            ""
        }
    }

    fn reserve_attempt(&self, client: IpAddr) -> Result<(), Duration> {
        let mut f = self.failures.lock();
        let now = Instant::now();
        if let Some(q) = f.get_mut(&client) {
            while q
                .front()
                .is_some_and(|t| now.duration_since(*t) >= FAIL_WINDOW)
            {
                q.pop_front();
            }
            if q.len() >= MAX_FAILURES {
                return Err(q
                    .front()
                    .map(|t| FAIL_WINDOW.saturating_sub(now.duration_since(*t)))
                    .unwrap_or(FAIL_WINDOW));
            }
        }
        if f.len() >= MAX_TRACKED {
            f.retain(|_, q| {
                q.back()
                    .is_some_and(|t| now.duration_since(*t) < FAIL_WINDOW)
            });
        }
        if f.len() < MAX_TRACKED || f.contains_key(&client) {
            let q = f.entry(client).or_default();
            q.push_back(now);
            while q.len() > MAX_FAILURES {
                q.pop_front();
            }
        }
        Ok(())
    }
}

/// `::ffff:a.b.c.d` is `a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn clear_cookie(secure: &str) -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

fn cookie<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Cookie"))
        .flat_map(|(_, v)| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A page answering an error: its status from the table (`api/error.rs`), its text rendered here.
fn html_error(e: &Error, markup: maud::Markup) -> Response {
    html(e.status(), markup)
}

fn html(status: u16, markup: maud::Markup) -> Response {
    Response {
        status,
        headers: vec![("Content-Type".into(), "text/html; charset=utf-8".into())],
        body: markup.into_string().into_bytes().into(),
    }
    .with_header(
        "Content-Security-Policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    )
    .with_header("X-Frame-Options", "DENY")
    .with_header("X-Content-Type-Options", "nosniff")
    .with_header("Referrer-Policy", "no-referrer")
    .with_header("Cache-Control", "no-store")
}

fn redirect(to: &str) -> Response {
    Response::empty(303)
        .with_header("Location", to)
        .with_header("Cache-Control", "no-store")
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.len() > 512 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `application/x-www-form-urlencoded`, decoded as browsers encode it (WHATWG URL standard):
/// `+` is a blank, a `%` not followed by two hex digits stays as it is, bytes that are not
/// UTF-8 become U+FFFD. A repeated name keeps its last value.
fn parse_form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_hex() {
        let f = parse_form(b"username=ad%3Cmin&password=a+b%26c&csrf=");
        assert_eq!(f["username"], "ad<min");
        assert_eq!(f["password"], "a b&c");
        assert_eq!(f["csrf"], "");
        let f = parse_form(b"a=%zz&b=%4&c=%FF&&d&a=%41%42");
        assert_eq!((f["a"].as_str(), f["b"].as_str()), ("AB", "%4"));
        assert_eq!((f["c"].as_str(), f["d"].as_str()), ("\u{fffd}", ""));
        assert_eq!(f.len(), 4);
        assert_eq!(unhex(&hex(b"\x00\xffab")).unwrap(), b"\x00\xffab");
        assert!(unhex("abc").is_none());
        assert!(unhex("zz").is_none());
    }
}
