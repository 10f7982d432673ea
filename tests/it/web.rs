//! The dashboard over HTTP (issue 6): login, signed cookie (tampered, expired, logged out),
//! CSRF, the login rate limit (and X-Forwarded-For only from trusted proxies), escaping, close
//! one and close all. The browser test is tests/browser.

use crate::support::*;
use fake_device::{DeviceConfig, FakeDevice};
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const WEB_PW: &str = "CANARY-web-5d1e";
/// A web_secret_key of the minimum length (32 bytes).
const KEY: &str = "CANARY-key-77aa-0123456789abcdef";

/// A bcrypt hash of WEB_PW at `cost`, made by the broker's own hash-password code path
/// (`bcrypt` crate), so the test does not depend on another implementation.
fn hash(cost: u32) -> String {
    bcrypt::hash(WEB_PW, cost).unwrap()
}

fn web_broker(extra: &str) -> TestBroker {
    broker(&format!(
        "web_secret_key: {KEY}\nweb_users:\n  - username: ops\n    password_hash: '{}'\n  - username: noc\n    password_hash: '{}'\n{extra}",
        hash(4),
        hash(4)
    ))
}

fn req(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        r.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    r.push_str("\r\n");
    r.push_str(body.unwrap_or(""));
    raw(addr, r.as_bytes())
}

fn text(r: &Resp) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn login(b: &TestBroker, user: &str, pw: &str) -> Resp {
    req(
        b.addr,
        "POST",
        "/login",
        &[],
        Some(&format!("username={user}&password={pw}")),
    )
}

/// Log in; the `Cookie` header value.
fn cookie(b: &TestBroker) -> String {
    let r = login(b, "ops", WEB_PW);
    assert_eq!(r.status, 303, "{}", text(&r));
    let sc = r.header("Set-Cookie").expect("Set-Cookie").to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(sc.contains(attr), "{sc}");
    }
    sc.split(';').next().unwrap().to_string()
}

fn page(b: &TestBroker, c: &str) -> String {
    let r = req(b.addr, "GET", "/", &[("Cookie", c)], None);
    assert_eq!(r.status, 200);
    text(&r)
}

fn csrf(html: &str) -> String {
    let i = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[i..i + 64].to_string()
}

fn is_dashboard(html: &str) -> bool {
    html.contains("<h2>Sessions</h2>")
}

#[test]
fn dashboard_is_off_without_web_users() {
    let b = broker("");
    let r = req(b.addr, "GET", "/", &[], None);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["detail"], "Not Found");
    assert_eq!(login(&b, "ops", "x").status, 404);
}

#[test]
fn login_cookie_and_logout() {
    let b = web_broker("");
    // Not logged in: the login page, and nothing else.
    let r = req(b.addr, "GET", "/", &[], None);
    assert_eq!(r.status, 200);
    assert!(text(&r).contains("action=\"/login\"") && !is_dashboard(&text(&r)));
    assert!(r
        .header("Content-Security-Policy")
        .unwrap()
        .contains("default-src 'none'"));
    assert_eq!(r.header("X-Frame-Options"), Some("DENY"));
    // The API token is no login, and the API still wants it.
    let r = req(b.addr, "GET", "/", &[("X-API-Token", TOKEN)], None);
    assert!(!is_dashboard(&text(&r)));
    let r = req(b.addr, "GET", "/sessions", &[("Cookie", "ndb_web=x")], None);
    assert_eq!(r.status, 401);

    let r = login(&b, "ops", "wrong");
    assert_eq!(r.status, 401);
    assert!(text(&r).contains("Invalid username or password"));
    assert!(r.header("Set-Cookie").is_none());
    assert!(text(&r).contains("value=\"ops\""), "the username is kept");
    let r = login(&b, "%3Cb%3Ex", "wrong");
    assert!(text(&r).contains("value=\"&lt;b&gt;x\""), "{}", text(&r));

    let c = cookie(&b);
    let html = page(&b, &c);
    assert!(is_dashboard(&html) && html.contains(">ops<"), "{html}");
    assert!(html.contains("http-equiv=\"refresh\" content=\"5\""));
    assert!(
        !html.contains(TOKEN) && !html.contains("CANARY-key"),
        "a secret in the page"
    );
    // The stylesheet is the only other resource, served by the broker.
    let css = req(b.addr, "GET", "/ui/style.css", &[], None);
    assert_eq!(css.status, 200);
    assert!(css.header("Content-Type").unwrap().starts_with("text/css"));
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"));

    // Tampering: any change to user, expiry, nonce or signature is no login.
    let v = c.trim_start_matches("ndb_web=");
    let parts: Vec<&str> = v.split('.').collect();
    assert_eq!(parts.len(), 5);
    let forged_user = format!(
        "ndb_web=v1.{}.{}.{}.{}",
        "6e6f63", parts[2], parts[3], parts[4]
    );
    let later = format!(
        "ndb_web=v1.{}.{}.{}.{}",
        parts[1], "9999999999", parts[3], parts[4]
    );
    let mut sig = parts[4].to_string();
    sig.replace_range(0..1, if sig.starts_with('0') { "1" } else { "0" });
    let bad_sig = format!("ndb_web=v1.{}.{}.{}.{sig}", parts[1], parts[2], parts[3]);
    for bad in [
        forged_user,
        later,
        bad_sig,
        "ndb_web=v1....".into(),
        format!("{c}.x"),
    ] {
        assert!(!is_dashboard(&page(&b, &bad)), "{bad} was accepted");
    }

    // Logout needs the CSRF token, then the same cookie is dead even if replayed.
    let token = csrf(&html);
    let r = req(
        b.addr,
        "POST",
        "/logout",
        &[("Cookie", &c)],
        Some("csrf=00"),
    );
    assert_eq!(r.status, 403);
    assert!(is_dashboard(&page(&b, &c)));
    let r = req(
        b.addr,
        "POST",
        "/logout",
        &[("Cookie", &c)],
        Some(&format!("csrf={token}")),
    );
    assert_eq!(r.status, 303);
    assert!(r.header("Set-Cookie").unwrap().contains("Max-Age=0"));
    assert!(
        !is_dashboard(&page(&b, &c)),
        "a logged-out cookie still works"
    );
    // Another login of the same user is unaffected by that logout.
    let c2 = cookie(&b);
    assert!(is_dashboard(&page(&b, &c2)));
}

#[test]
fn logins_expire_after_the_ttl() {
    let b = web_broker("web_session_ttl: 1\n");
    let c = cookie(&b);
    assert!(is_dashboard(&page(&b, &c)));
    std::thread::sleep(Duration::from_millis(2100));
    assert!(!is_dashboard(&page(&b, &c)));
}

#[test]
fn failed_logins_are_rate_limited_per_client() {
    let b = web_broker("trusted_proxies: ['127.0.0.1']\n");
    let xff = |ip: &str, pw: &str| {
        req(
            b.addr,
            "POST",
            "/login",
            &[("X-Forwarded-For", ip)],
            Some(&format!("username=ops&password={pw}")),
        )
    };
    for i in 0..5 {
        assert_eq!(xff("198.51.100.7", "wrong").status, 401, "attempt {i}");
    }
    // The sixth, even with the right password: 429 with Retry-After.
    let r = xff("198.51.100.7", WEB_PW);
    assert_eq!(r.status, 429, "{}", text(&r));
    let wait: u64 = r.header("Retry-After").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait));
    // Another client behind the same proxy is not affected; a spoofed chain is read from the
    // right, so the address the proxy saw counts.
    assert_eq!(xff("198.51.100.8", WEB_PW).status, 303);
    assert_eq!(xff("203.0.113.9, 198.51.100.7", WEB_PW).status, 429);

    // Without trusted_proxies, X-Forwarded-For is ignored: the peer is the client.
    let b = web_broker("");
    for i in 0..5 {
        let r = req(
            b.addr,
            "POST",
            "/login",
            &[("X-Forwarded-For", &format!("192.0.2.{i}"))],
            Some("username=nobody&password=x"),
        );
        assert_eq!(r.status, 401);
    }
    assert_eq!(login(&b, "ops", WEB_PW).status, 429);
}

/// Concurrent wrong logins from one client: the limit holds (each attempt is counted before its
/// bcrypt check), so exactly MAX_FAILURES of them get a password check (401), the rest 429.
#[test]
fn concurrent_failed_logins_get_exactly_five_password_checks() {
    // Cost 8: each bcrypt check takes long enough that all attempts are in flight at once.
    let b = broker(&format!(
        "web_secret_key: {KEY}\nweb_users: [{{username: ops, password_hash: '{}'}}]\n",
        hash(8)
    ));
    const N: usize = 20;
    let gate = std::sync::Arc::new(std::sync::Barrier::new(N));
    let addr = b.addr;
    let threads: Vec<_> = (0..N)
        .map(|_| {
            let gate = gate.clone();
            std::thread::spawn(move || {
                gate.wait();
                req(
                    addr,
                    "POST",
                    "/login",
                    &[],
                    Some("username=ops&password=wrong"),
                )
                .status
            })
        })
        .collect();
    let mut statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    statuses.sort();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    eprintln!(
        "{N} concurrent wrong logins: {checked} password checks (401), {limited} refused (429)"
    );
    assert_eq!(
        (checked, limited),
        (
            netdev_broker::web::MAX_FAILURES,
            N - netdev_broker::web::MAX_FAILURES
        ),
        "{statuses:?}"
    );
    // The right password is refused too while the limit holds.
    assert_eq!(login(&b, "ops", WEB_PW).status, 429);
}

#[test]
fn unknown_users_cost_a_bcrypt_check_too() {
    // Cost 10: a bcrypt check is clearly longer than the rest of a login.
    let b = broker(&format!(
        "web_secret_key: {KEY}\nweb_users: [{{username: ops, password_hash: '{}'}}]\n",
        hash(10)
    ));
    let time = |user: &str| {
        let t = Instant::now();
        assert_eq!(login(&b, user, "wrong").status, 401);
        t.elapsed()
    };
    let known: Vec<Duration> = (0..2).map(|_| time("ops")).collect();
    let unknown: Vec<Duration> = (0..2).map(|_| time("nosuchuser")).collect();
    let (k, u) = (known.iter().min().unwrap(), unknown.iter().min().unwrap());
    assert!(
        u.as_secs_f64() > k.as_secs_f64() * 0.5,
        "unknown user answered in {u:?}, known user with a wrong password in {k:?}"
    );
}

#[test]
fn sessions_are_shown_escaped_and_closed_with_csrf() {
    let dev = FakeDevice::start(DeviceConfig {
        password: PASSWORD.into(),
        username: "<script>alert(1)</script>".into(),
        ..Default::default()
    });
    let b = web_broker("");
    let open = |extra: serde_json::Value| {
        let mut body = json!({"host": "127.0.0.1", "port": dev.port(), "username": "<script>alert(1)</script>", "password": PASSWORD, "timeout": 10});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = b.post("/session", &body);
        assert_eq!(r.status, 201, "{}", text(&r));
        r.json()["session_id"].as_str().unwrap().to_string()
    };
    let s1 = open(json!({}));
    let s2 = open(json!({"session_timeout": 0}));
    let r = b.post(
        &format!("/session/{s1}/exec"),
        &json!({"commands": ["show clock", "show <b>bold</b>", "username x secret CANARY-sec-1"]}),
    );
    assert_eq!(r.status, 200);

    let c = cookie(&b);
    let html = page(&b, &c);
    assert!(
        html.contains(&s1) && html.contains(&s2),
        "both sessions listed"
    );
    assert!(
        !html.contains("<script>alert"),
        "unescaped value in the page"
    );
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("show &lt;b&gt;bold&lt;/b&gt;"));
    assert!(html.contains("show clock") && html.contains("never reaped"));
    assert!(
        !html.contains("CANARY-sec-1"),
        "a secret from a command shown unmasked"
    );
    let token = csrf(&html);

    // Close one: without or with a wrong token nothing happens.
    for body in [
        String::new(),
        "csrf=".into(),
        format!("csrf={}", "ab".repeat(32)),
    ] {
        let r = req(
            b.addr,
            "POST",
            &format!("/ui/close/{s1}"),
            &[("Cookie", &c)],
            Some(&body),
        );
        assert_eq!(r.status, 403, "{body}");
    }
    // Not logged in: back to the login page, nothing closed.
    let r = req(
        b.addr,
        "POST",
        &format!("/ui/close/{s1}"),
        &[],
        Some(&format!("csrf={token}")),
    );
    assert_eq!(r.status, 303);
    assert_eq!(b.get(&format!("/session/{s1}/status")).status, 200);
    let r = req(
        b.addr,
        "POST",
        &format!("/ui/close/{s1}"),
        &[("Cookie", &c)],
        Some(&format!("csrf={token}")),
    );
    assert_eq!(r.status, 303);
    assert_eq!(r.header("Location"), Some("/"));
    assert_eq!(b.get(&format!("/session/{s1}/status")).status, 404);
    let html = page(&b, &c);
    assert!(!html.contains(&s1) && html.contains(&s2));

    // Close all: a confirmation page first (GET changes nothing), then the POST.
    let s3 = open(json!({}));
    let r = req(b.addr, "GET", "/ui/close-all", &[("Cookie", &c)], None);
    assert_eq!(r.status, 200);
    let confirm = text(&r);
    assert!(confirm.contains("Close all 2 sessions?"), "{confirm}");
    assert!(
        confirm.contains("safety session (never reaped)"),
        "{confirm}"
    );
    let i = confirm.find("name=\"ids\" value=\"").unwrap() + 18;
    let ids = &confirm[i..i + confirm[i..].find('"').unwrap()];
    assert_eq!(ids, format!("{s2},{s3}"), "oldest first");
    assert_eq!(b.get("/sessions").json()["count"], 2);
    let r = req(
        b.addr,
        "POST",
        "/ui/close-all",
        &[("Cookie", &c)],
        Some(&format!("csrf={token}")),
    );
    assert_eq!(r.status, 303, "no confirm field: nothing closed");
    assert_eq!(b.get("/sessions").json()["count"], 2);
    // A session opened after the operator looked is not closed by that confirmation.
    let late = open(json!({}));
    let r = req(
        b.addr,
        "POST",
        "/ui/close-all",
        &[("Cookie", &c)],
        Some(&format!(
            "csrf={token}&confirm=yes&ids={}",
            ids.replace(',', "%2C")
        )),
    );
    assert_eq!(r.status, 303);
    assert_eq!(
        b.get("/sessions").json()["count"],
        1,
        "only the listed ones"
    );
    assert_eq!(b.get(&format!("/session/{s3}/status")).status, 404);
    assert_eq!(b.get(&format!("/session/{late}/status")).status, 200);
    b.delete(&format!("/session/{late}"));
    assert!(page(&b, &c).contains("No open sessions."));
    let one = open(json!({}));
    let r = req(b.addr, "GET", "/ui/close-all", &[("Cookie", &c)], None);
    assert!(text(&r).contains("Close this session?"), "{}", text(&r));
    b.delete(&format!("/session/{one}"));

    // The CSRF token of another login does not work for this one.
    let c2 = cookie(&b);
    let other = csrf(&page(&b, &c2));
    assert_ne!(other, token);
    let s4 = open(json!({}));
    let r = req(
        b.addr,
        "POST",
        &format!("/ui/close/{s4}"),
        &[("Cookie", &c)],
        Some(&format!("csrf={other}")),
    );
    assert_eq!(r.status, 403);
    assert_eq!(b.get(&format!("/session/{s4}/status")).status, 200);
}

#[test]
fn hash_password_prints_a_hash_that_logs_in() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let bin = env!("CARGO_BIN_EXE_netdev-broker");
    let mut child = Command::new(bin)
        .args(["hash-password", "--cost", "5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{WEB_PW}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let h = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(h.starts_with("$2b$05$") && h.len() == 60, "{h}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains(WEB_PW));
    let b = broker(&format!(
        "web_secret_key: {KEY}\nweb_users: [{{username: ops, password_hash: '{h}'}}]\n"
    ));
    assert_eq!(login(&b, "ops", WEB_PW).status, 303);
    // Hashes from other tools' prefixes ($2a$, $2y$) log in as well.
    let y = h.replacen("$2b$", "$2y$", 1);
    let b = broker(&format!(
        "web_secret_key: {KEY}\nweb_users: [{{username: ops, password_hash: '{y}'}}]\n"
    ));
    assert_eq!(login(&b, "ops", WEB_PW).status, 303);
    // Empty input: an error, no hash.
    let out = Command::new(bin)
        .args(["hash-password"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success() && out.stdout.is_empty());
}

/// Change guards on the dashboard: armed ones first, above the sessions, with the seconds left,
/// the deadline and the device's own timer; the guard's state in the session's row; no Close
/// for a session whose guard is armed (and the form's POST does not close it either).
#[test]
fn change_guards_are_shown_first_and_keep_their_session_open() {
    let dev = FakeDevice::start(DeviceConfig {
        password: PASSWORD.into(),
        start_privileged: true,
        ..Default::default()
    });
    let b = web_broker("");
    let open = || {
        let body = json!({"host": "127.0.0.1", "port": dev.port(), "username": "admin", "password": PASSWORD, "timeout": 10});
        let r = b.post("/session", &body);
        assert_eq!(r.status, 201, "{}", text(&r));
        r.json()["session_id"].as_str().unwrap().to_string()
    };
    let plain = open();
    let guarded = open();
    let r = b.post(
        &format!("/session/{guarded}/exec"),
        &json!({"config": ["archive", " path flash:rollback"]}),
    );
    assert_eq!(r.status, 200, "{}", text(&r));
    let r = b.post(
        &format!("/session/{guarded}/guard"),
        &json!({"timeout": 300, "rollback": {"config": ["no interface Loopback9"]},
                "device_revert": {"minutes": 10}}),
    );
    assert_eq!(r.status, 201, "{}", text(&r));

    let c = cookie(&b);
    let html = page(&b, &c);
    let guards = html.find("Change guards").expect("a guards section");
    let sessions = html.find("<h2>Sessions</h2>").expect("the sessions");
    assert!(guards < sessions, "guards come first");
    let section = &html[guards..sessions];
    assert!(section.contains(&guarded[..8]) && !section.contains(&plain[..8]));
    assert!(section.contains("guard armed"), "{section}");
    let left: u64 = section
        .split("<strong>")
        .nth(1)
        .and_then(|s| s.split("</strong>").next())
        .and_then(|s| s.parse().ok())
        .expect("seconds left");
    assert!((290..=300).contains(&left), "{left}");
    assert!(section.contains("10 min from"), "device timer: {section}");
    // The session's row shows its guard and has no Close button; the other one has.
    let row = |html: &str, id: &str| -> String {
        let i = html.find(&format!("data-session-id=\"{id}\"")).unwrap();
        let rest = &html[i..];
        rest[..rest.find("</tr>").unwrap()].to_string()
    };
    let rows = &html[sessions..];
    assert!(row(rows, &guarded).contains("guard armed"));
    assert!(!row(rows, &guarded).contains(&format!("/ui/close/{guarded}")));
    assert!(row(rows, &plain).contains(&format!("/ui/close/{plain}")));
    // Closing it anyway (a stale form) leaves it open, as DELETE does; close-all leaves it too.
    let token = csrf(&html);
    let r = req(
        b.addr,
        "POST",
        &format!("/ui/close/{guarded}"),
        &[("Cookie", &c)],
        Some(&format!("csrf={token}")),
    );
    assert_eq!(r.status, 303);
    assert_eq!(b.get(&format!("/session/{guarded}/status")).status, 200);
    let r = req(b.addr, "GET", "/ui/close-all", &[("Cookie", &c)], None);
    let confirm = text(&r);
    assert!(confirm.contains("Left open: 1 session"), "{confirm}");
    let r = req(
        b.addr,
        "POST",
        "/ui/close-all",
        &[("Cookie", &c)],
        Some(&format!("csrf={token}&confirm=yes&ids={plain}%2C{guarded}")),
    );
    assert_eq!(r.status, 303);
    assert_eq!(b.get(&format!("/session/{guarded}/status")).status, 200);
    assert_eq!(b.get(&format!("/session/{plain}/status")).status, 404);

    // Confirmed: the guard stays listed with how it ended, and the session can be closed.
    let r = b.post(&format!("/session/{guarded}/guard/confirm"), &json!({}));
    assert_eq!(r.status, 200, "{}", text(&r));
    let html = page(&b, &c);
    assert!(html.contains("guard confirmed"), "{html}");
    let rows = &html[html.find("<h2>Sessions</h2>").unwrap()..];
    assert!(row(rows, &guarded).contains(&format!("/ui/close/{guarded}")));
    assert_eq!(b.delete(&format!("/session/{guarded}")).status, 204);
}

/// A session that runs a job shows it in its row: the command running now, how long it has run
/// and the bytes received so far; the row drops it once the job ended.
#[test]
fn a_running_job_shows_its_command_elapsed_time_and_bytes() {
    let dev = FakeDevice::start(DeviceConfig {
        password: PASSWORD.into(),
        start_privileged: true,
        ..Default::default()
    });
    let b = web_broker("");
    let r = b.post(
        "/session",
        &json!({"host": "127.0.0.1", "port": dev.port(), "username": "admin", "password": PASSWORD, "timeout": 10}),
    );
    assert_eq!(r.status, 201, "{}", text(&r));
    let id = r.json()["session_id"].as_str().unwrap().to_string();
    let r = b.post(
        &format!("/session/{id}/exec"),
        &json!({"commands": ["show slow 5"], "wait": false}),
    );
    assert_eq!(r.status, 202, "{}", text(&r));
    let job = r.json()["job_id"].as_str().unwrap().to_string();

    let c = cookie(&b);
    let row = |html: &str| -> String {
        let i = html.find(&format!("data-session-id=\"{id}\"")).unwrap();
        let rest = &html[i..];
        rest[..rest.find("</tr>").unwrap()].to_string()
    };
    let bytes = |row: &str| -> Option<u64> {
        let i = row.find("<span class=\"bytes\">")? + 20;
        row[i..].split(' ').next()?.parse().ok()
    };
    let mut seen = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            seen = row(&page(&b, &c));
            bytes(&seen).is_some_and(|n| n > 0)
        }),
        "no byte count in the row: {seen}"
    );
    assert!(seen.contains("busy"), "{seen}");
    assert!(seen.contains("running <code>show slow 5</code>"), "{seen}");
    assert!(seen.contains(&format!("title=\"job {job}\"")), "{seen}");
    let i = seen.find("<span class=\"elapsed\">").expect("elapsed time") + 22;
    assert!(
        seen[i..].starts_with(|c: char| c.is_ascii_digit()),
        "{seen}"
    );

    let r = b.get(&format!("/session/{id}/jobs/{job}?wait=20"));
    assert_eq!(r.json()["state"], "done", "{}", text(&r));
    let after = row(&page(&b, &c));
    assert!(!after.contains("class=\"job\""), "{after}");
    assert!(
        after.contains("show slow 5"),
        "in the recent commands: {after}"
    );
}
