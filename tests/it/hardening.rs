//! Hardening: answers that must not tell an attacker anything (key_file), the DNS-rebinding
//! guard on token-less routes, the per-client connection cap, the Secure cookie behind a TLS
//! proxy, one log record per line, and the start-up warning about a readable config file.

use crate::support::*;
use serde_json::json;

/// `key_file` outside key_dir: an existing file and a missing one get the same 422 body, so the
/// API cannot be used to probe which paths exist on the host.
#[test]
fn key_file_outside_key_dir_answers_the_same_whether_it_exists_or_not() {
    let keys = tmpdir("hkeys");
    std::fs::write(keys.join("inside"), "x").unwrap();
    let outside = tmpdir("hkeys-outside");
    std::fs::write(outside.join("exists"), "x").unwrap();
    let b = broker(&format!("key_dir: {}\n", keys.display()));
    let open = |key_file: String| {
        let r = b.post(
            "/session",
            &json!({"host": "127.0.0.1", "port": 9, "username": "u", "key_file": key_file}),
        );
        assert_eq!(r.status, 422, "{key_file}");
        // Each answer has its own request id; the rest must be the same.
        let mut v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v.as_object_mut().unwrap().remove("request_id");
        v.to_string()
    };
    let existing = open(outside.join("exists").display().to_string());
    let missing = open(outside.join("missing").display().to_string());
    let relative_missing = open("../nope/nothing".to_string());
    let missing_inside = open("not-there".to_string());
    assert_eq!(existing, missing);
    assert_eq!(existing, relative_missing);
    assert_eq!(existing, missing_inside);
    assert!(
        existing.contains("key_file must name a readable file inside key_dir"),
        "{existing}"
    );
    std::fs::remove_dir_all(&keys).ok();
    std::fs::remove_dir_all(&outside).ok();
}

/// A username with a line break cannot forge a log record: the API refuses control characters
/// in login fields (422, before anything is logged about a session), and the formatter escapes
/// any that reach a message another way (`logging` unit tests).
#[test]
fn a_username_with_a_newline_cannot_forge_a_log_line() {
    use fake_device::{DeviceConfig, FakeDevice};
    const FORGED: &str = "2026-01-01T00:00:00.000Z INFO  [http-conn] dashboard: admin logged in";
    let user = format!("ops\n{FORGED}\r\x1b[2K");
    let dev = FakeDevice::start(DeviceConfig {
        password: PASSWORD.into(),
        ..Default::default()
    });
    let b = crate::child::Broker::spawn("logesc", "", 1024);
    let r = call(
        b.addr,
        "POST",
        "/session",
        Some(TOKEN),
        Some(
            &json!({"host": "127.0.0.1", "port": dev.port(), "username": user,
                    "password": PASSWORD, "timeout": 10})
            .to_string(),
        ),
    );
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("U+000A (line feed)"));
    assert_eq!(dev.total_connections(), 0);
    // A session opened after it logs as usual; no line of the log is forged or raw.
    let r = call(
        b.addr,
        "POST",
        "/session",
        Some(TOKEN),
        Some(
            &json!({"host": "127.0.0.1", "port": dev.port(), "username": "admin",
                    "password": PASSWORD, "timeout": 10})
            .to_string(),
        ),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let mut text = String::new();
    assert!(
        wait_until(std::time::Duration::from_secs(5), || {
            text = b.log_text();
            text.contains("opened admin")
        }),
        "{text}"
    );
    for line in text.lines() {
        assert!(
            !line.starts_with(FORGED) && !line.contains('\x1b') && !line.contains('\r'),
            "a forged or raw line in the log: {line:?}"
        );
    }
}

/// `serve` starts with a config file that holds a secret and is readable by other users, but
/// says so: a WARN line naming the file and its mode (the rule check-config refuses by). A file
/// without secrets (the token from the environment) is no concern.
#[test]
fn serve_warns_about_a_readable_config_file_holding_secrets() {
    use std::os::unix::fs::PermissionsExt;
    let b = crate::child::Broker::spawn(
        "permwarn",
        "web_secret_key: CANARY-key-perm-0123456789abcdef0123\n",
        1024,
    );
    let cfg = b.dir.join("config.yml");
    let mode = std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777;
    assert!(
        mode & 0o007 != 0,
        "the test's umask made {} mode {mode:04o}: it needs a file readable by others",
        cfg.display()
    );
    let text = b.log_text();
    let line = text
        .lines()
        .find(|l| l.contains(" WARN ") && l.contains("must not be readable"))
        .unwrap_or_else(|| panic!("no warning about the mode in:\n{text}"));
    assert!(
        line.contains(&cfg.display().to_string())
            && line.contains(&format!("mode {mode:04o}"))
            && line.contains("web_secret_key"),
        "{line}"
    );
    assert!(
        !text.contains("CANARY-key-perm"),
        "the key itself was logged"
    );

    let b = crate::child::Broker::spawn("permwarn-none", "", 1024);
    let text = b.log_text();
    assert!(text.contains("configuration from"), "{text}");
    assert!(!text.contains("has mode"), "{text}");
}

const WEB_PW: &str = "CANARY-web-hard-1";
const WEB_KEY: &str = "CANARY-key-hard-0123456789abcdef0123";

fn web_broker(extra: &str) -> TestBroker {
    broker(&format!(
        "web_secret_key: {WEB_KEY}\nweb_users: [{{username: ops, password_hash: '{}'}}]\n{extra}",
        bcrypt::hash(WEB_PW, 4).unwrap()
    ))
}

/// One request with the given Host (None: no Host header) and extra headers.
fn request(
    b: &TestBroker,
    method: &str,
    path: &str,
    host: Option<&str>,
    headers: &[(&str, &str)],
    form: Option<&str>,
) -> Resp {
    let mut r = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if let Some(h) = host {
        r.push_str(&format!("Host: {h}\r\n"));
    }
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(f) = form {
        r.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            f.len()
        ));
    }
    r.push_str("\r\n");
    r.push_str(form.unwrap_or(""));
    raw(b.addr, r.as_bytes())
}

/// The login cookie is `Secure` when a trusted proxy says the browser came over HTTPS, and only
/// then (not for a direct client, nor for a client that merely sends the header).
#[test]
fn login_cookie_is_secure_behind_a_trusted_tls_proxy_only() {
    let form = format!("username=ops&password={WEB_PW}");
    let login = |b: &TestBroker, headers: &[(&str, &str)]| {
        let r = request(b, "POST", "/login", Some("127.0.0.1"), headers, Some(&form));
        assert_eq!(r.status, 303, "{}", String::from_utf8_lossy(&r.body));
        r.header("Set-Cookie").unwrap().to_string()
    };
    let secure = |c: &str| c.split(';').any(|a| a.trim() == "Secure");
    let proxied = web_broker("trusted_proxies: ['127.0.0.1']\n");
    let https = [
        ("X-Forwarded-For", "198.51.100.7"),
        ("X-Forwarded-Proto", "https"),
    ];
    let c = login(&proxied, &https);
    assert!(secure(&c) && c.contains("HttpOnly"), "{c}");
    // Logging out clears it with the same attributes.
    let cookie = c.split(';').next().unwrap().to_string();
    let page = request(
        &proxied,
        "GET",
        "/",
        Some("127.0.0.1"),
        &[("Cookie", &cookie)],
        None,
    );
    let html = String::from_utf8_lossy(&page.body).to_string();
    let i = html.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = &html[i..i + 64];
    let mut out_headers = vec![("Cookie", cookie.as_str())];
    out_headers.extend_from_slice(&https);
    let r = request(
        &proxied,
        "POST",
        "/logout",
        Some("127.0.0.1"),
        &out_headers,
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(r.status, 303);
    let cleared = r.header("Set-Cookie").unwrap();
    assert!(
        cleared.contains("Max-Age=0") && secure(cleared),
        "{cleared}"
    );
    // Plain HTTP through the proxy, or no header at all: no Secure.
    let c = login(&proxied, &[("X-Forwarded-Proto", "http")]);
    assert!(!secure(&c), "{c}");
    let c = login(&proxied, &[]);
    assert!(!secure(&c), "{c}");
    // The same header from a client that is not a trusted proxy is not believed.
    let direct = web_broker("");
    let c = login(&direct, &[("X-Forwarded-Proto", "https")]);
    assert!(!secure(&c), "{c}");
}

/// A TCP connection to `dst` from the loopback address `src` (127.0.0.2...: another client).
fn connect_from(src: std::net::Ipv4Addr, dst: std::net::SocketAddr) -> std::net::TcpStream {
    use std::os::fd::FromRawFd;
    let std::net::SocketAddr::V4(dst) = dst else {
        panic!("IPv4 only")
    };
    let sin = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor this function owns until from_raw_fd.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let stream = std::net::TcpStream::from_raw_fd(fd);
        let src = sin(src, 0);
        let rc = libc::bind(fd, &src as *const _ as *const libc::sockaddr, len);
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        let to = sin(*dst.ip(), dst.port());
        let rc = libc::connect(fd, &to as *const _ as *const libc::sockaddr, len);
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        stream
    }
}

/// Send `req` on `s` and read the whole answer (the request says Connection: close).
fn exchange(mut s: std::net::TcpStream, req: &[u8]) -> Resp {
    use std::io::{Read, Write};
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(req).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse(&buf)
}

/// One client address holds at most `max_connections_per_client` connections: the next one is
/// answered 503 at once and closed, while another address is still served; the slots come back
/// when the connections close.
#[test]
fn one_client_cannot_hold_every_connection_slot() {
    use std::io::Write;
    use std::net::Ipv4Addr;
    use std::time::{Duration, Instant};
    const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let b = broker("max_connections: 16\nmax_connections_per_client: 4\n");
    let me = Ipv4Addr::new(127, 0, 0, 1);
    let other = Ipv4Addr::new(127, 0, 0, 2);
    // Four idle connections with an unfinished request each: the client's share.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = connect_from(me, b.addr);
        s.write_all(b"G").unwrap();
        held.push(s);
    }
    let t = Instant::now();
    let r = exchange(connect_from(me, b.addr), HEALTH);
    let took = t.elapsed();
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["detail"], "Too many connections from your address");
    assert!(took < Duration::from_secs(1), "{took:?}");
    // Another client is served meanwhile.
    let r = exchange(connect_from(other, b.addr), HEALTH);
    assert_eq!(r.status, 200);
    eprintln!(
        "per-client cap 4 of 16: the 5th connection of 127.0.0.1 answered 503 in {took:?}; \
         127.0.0.2 answered 200"
    );
    // Closing them gives the slots back.
    drop(held);
    assert!(wait_until(Duration::from_secs(5), || exchange(
        connect_from(me, b.addr),
        HEALTH
    )
    .status
        == 200));
}

/// DNS rebinding: token-less routes (health, docs, public metrics, the dashboard) answer only
/// under a Host that names the broker; a foreign Host is a 421 naming it. The API token lifts
/// the check; `server_names` adds names, and a reload applies a new list.
#[test]
fn token_less_routes_refuse_a_foreign_host() {
    let dir = tmpdir("rebind");
    let cfg_path = dir.join("config.yml");
    let yaml = |names: &str| {
        format!(
            "api_token: {TOKEN}\nweb_secret_key: {WEB_KEY}\nweb_users: [{{username: ops, password_hash: '{}'}}]\nmetrics_public: true\nserver_names: [{names}]\n",
            bcrypt::hash(WEB_PW, 4).unwrap()
        )
    };
    std::fs::write(&cfg_path, yaml("broker.example.net")).unwrap();
    let mut b = broker(&std::fs::read_to_string(&cfg_path).unwrap());
    let port = b.addr.port();
    let evil = format!("attacker.example:{port}");
    let login_form = format!("username=ops&password={WEB_PW}");
    let public: &[(&str, &str, Option<&str>)] = &[
        ("GET", "/health", None),
        ("GET", "/openapi.json", None),
        ("GET", "/docs", None),
        ("GET", "/docs/docs.css", None),
        ("GET", "/metrics", None),
        ("GET", "/", None),
        ("GET", "/ui/style.css", None),
        ("POST", "/login", Some(login_form.as_str())),
    ];
    let ours = [
        format!("127.0.0.1:{port}"),
        "127.0.0.1".to_string(),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "broker.example.net".to_string(),
        format!("Broker.Example.NET:{port}"),
    ];
    for (m, path, form) in public {
        for host in [
            evil.as_str(),
            "attacker.example",
            "localhost.attacker.example",
        ] {
            let r = request(&b, m, path, Some(host), &[], *form);
            assert_eq!(r.status, 421, "{m} {path} Host {host}");
            assert_eq!(r.header("Content-Type"), Some("application/json"));
            let detail = r.json()["detail"].as_str().unwrap().to_string();
            assert!(detail.contains(&format!("{host:?}")), "{detail}");
        }
        for host in &ours {
            let r = request(&b, m, path, Some(host), &[], *form);
            assert!(
                [200, 303].contains(&r.status),
                "{m} {path} Host {host}: {}",
                r.status
            );
        }
        // The token lifts the check.
        let r = request(&b, m, path, Some(&evil), &[("X-API-Token", TOKEN)], *form);
        assert!([200, 303].contains(&r.status), "{m} {path} with the token");
        // No Host at all (HTTP/1.0 style): not a browser, not checked.
        let r = request(&b, m, path, None, &[], *form);
        assert!([200, 303].contains(&r.status), "{m} {path} without Host");
    }
    // A login cookie is no token: the dashboard still wants one of the broker's names.
    let r = request(
        &b,
        "POST",
        "/login",
        Some("127.0.0.1"),
        &[],
        Some(&login_form),
    );
    let cookie = r
        .header("Set-Cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let r = request(&b, "GET", "/", Some(&evil), &[("Cookie", &cookie)], None);
    assert_eq!(r.status, 421);
    let r = request(
        &b,
        "GET",
        "/",
        Some("localhost"),
        &[("Cookie", &cookie)],
        None,
    );
    assert!(String::from_utf8_lossy(&r.body).contains("<h2>Sessions</h2>"));
    // Routes that need the token answer as before: 401 without it, whatever the Host.
    let r = request(&b, "GET", "/sessions", Some(&evil), &[], None);
    assert_eq!(r.status, 401);
    let r = request(
        &b,
        "GET",
        "/sessions",
        Some(&evil),
        &[("X-API-Token", TOKEN)],
        None,
    );
    assert_eq!(r.status, 200);

    // A reload applies a new server_names list.
    let health =
        |b: &TestBroker, host: &str| request(b, "GET", "/health", Some(host), &[], None).status;
    assert_eq!(health(&b, "new.example.org"), 421);
    std::fs::write(&cfg_path, yaml("new.example.org")).unwrap();
    let ov = netdev_broker::config::Overrides {
        config: Some(cfg_path.clone()),
        ..Default::default()
    };
    b.broker.as_mut().unwrap().reload(&ov, None);
    assert_eq!(health(&b, "new.example.org"), 200);
    assert_eq!(health(&b, "broker.example.net"), 421);

    // /metrics that needs the token is not a token-less route: 401, not 421.
    let b = broker("");
    let r = request(&b, "GET", "/metrics", Some(&evil), &[], None);
    assert_eq!(r.status, 401);
    std::fs::remove_dir_all(&dir).ok();
}
