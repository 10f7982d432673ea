//! A generator of malformed HTTP requests for the broker (issue 8, item 8), and a raw client that
//! reports every response on the connection.
//!
//! Case `i` of seed `s` is always the same bytes. Kinds rotate with `i`, so any run of
//! `KINDS.len()` consecutive cases covers every kind; the details inside a kind are random.
//!
//! Every case is built to be wrong at some layer, so every complete one must be answered with a
//! 4xx whose body is JSON `{"detail": ...}`:
//! * HTTP framing (request line, method, version, header syntax, lengths, chunking): 400, 405,
//!   413, 417, 431;
//! * the token (absent or wrong): 401;
//! * the body of `POST /session`, `POST /telnet-session` or `POST /session/{unknown id}/exec`:
//!   422. As a safety net for mutations that happen to yield a valid body, the broker under test
//!   is configured with `allowed_hosts` that exclude every host the generator writes (a valid open
//!   is then a 403 before any packet is sent), and execs go to session ids that do not exist
//!   (404).
//!
//! A request the client does not finish (the bytes end inside the head or the body, then the
//! client closes its side) may instead be closed without an answer: the broker cannot answer a
//! request it never received. `Case::may_close` marks those.

#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// SplitMix64: small, fast, deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, s: &'a [T]) -> &'a T {
        &s[self.below(s.len())]
    }
    pub fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
}

/// Hosts the generator writes into open bodies; the broker under test must not allow them.
pub const DENIED_NET: &str = "192.0.2.0/24";
/// Config for the broker under test: only a network the generator never names is allowed.
pub const BROKER_YAML: &str = "allowed_hosts: [\"203.0.113.77/32\"]\n";

pub const KINDS: &[&str] = &[
    "bad_json",
    "wrong_types",
    "nul_bytes",
    "non_utf8",
    "deep_nesting",
    "huge_numbers",
    "duplicate_keys",
    "missing_fields",
    "huge_strings",
    "bad_methods",
    "bad_versions",
    "header_injection",
    "bad_framing",
    "bad_paths",
    "wrong_token",
    "truncated",
    "pipelined",
];

pub struct Case {
    pub kind: &'static str,
    pub bytes: Vec<u8>,
    /// The request is unfinished: closing without an answer is acceptable.
    pub may_close: bool,
}

/// Endpoints whose body is validated.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    Open,
    OpenTelnet,
    Exec,
}

fn target_path(t: Target, r: &mut Rng) -> String {
    match t {
        Target::Open => "/session".into(),
        Target::OpenTelnet => "/telnet-session".into(),
        Target::Exec => format!(
            "/{}/{:016x}{:016x}/exec",
            if r.chance(80) {
                "session"
            } else {
                "telnet-session"
            },
            r.next(),
            r.next()
        ),
    }
}

fn base_body(t: Target, r: &mut Rng) -> Value {
    match t {
        Target::Open | Target::OpenTelnet => json!({
            "host": format!("192.0.2.{}", 1 + r.below(250)),
            "username": "admin",
            "password": "pw",
            "port": 22,
            "timeout": 2,
            "device_type": *r.pick(&["cisco_ios", "juniper_junos", "linux", "cisco_ios_telnet"]),
        }),
        Target::Exec => json!({
            "commands": [
                "show version",
                {"cmd": "copy run start", "answer": "filename", "send_newlines": 1, "read_timeout": 5,
                 "interactions": [{"expect": "\\[confirm\\]", "send": "y", "hidden": false, "newline": true}]}
            ],
            "timeout": 5,
            "stop_on_error": false,
        }),
    }
}

const OPEN_FIELDS: &[&str] = &[
    "/host",
    "/username",
    "/password",
    "/port",
    "/timeout",
    "/session_timeout",
    "/device_type",
    "/enable_password",
    "/secret",
    "/enable_level",
    "/keepalive_interval",
    "/legacy_algorithms",
    "/kex",
    "/host_key_algorithms",
    "/ciphers",
    "/macs",
    "/key_file",
    "/passphrase",
    "/host_key_policy",
];
const EXEC_FIELDS: &[&str] = &[
    "/commands",
    "/timeout",
    "/stop_on_error",
    "/config",
    "/save",
    "/commands/0",
    "/commands/1/cmd",
    "/commands/1/expect",
    "/commands/1/answer",
    "/commands/1/send_newlines",
    "/commands/1/read_timeout",
    "/commands/1/timeout",
    "/commands/1/interactions",
    "/commands/1/interactions/0",
    "/commands/1/interactions/0/expect",
    "/commands/1/interactions/0/send",
    "/commands/1/interactions/0/hidden",
    "/commands/1/interactions/0/newline",
];
const OPEN_NUMERIC: &[&str] = &[
    "/port",
    "/timeout",
    "/session_timeout",
    "/enable_level",
    "/keepalive_interval",
];
const EXEC_NUMERIC: &[&str] = &[
    "/timeout",
    "/commands/1/send_newlines",
    "/commands/1/read_timeout",
    "/commands/1/timeout",
];

fn fields(t: Target) -> &'static [&'static str] {
    if t == Target::Exec {
        EXEC_FIELDS
    } else {
        OPEN_FIELDS
    }
}

/// Set the value at a JSON pointer (creating the last key of an object, or replacing an item).
fn set(v: &mut Value, ptr: &str, new: Value) {
    let (parent, key) = ptr.rsplit_once('/').unwrap_or(("", ptr));
    let Some(p) = v.pointer_mut(parent) else {
        return;
    };
    match p {
        Value::Object(m) => {
            m.insert(key.to_string(), new);
        }
        Value::Array(a) => {
            if let Some(slot) = key.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                *slot = new;
            }
        }
        _ => {}
    }
}

fn remove(v: &mut Value, ptr: &str) {
    let (parent, key) = ptr.rsplit_once('/').unwrap_or(("", ptr));
    if let Some(Value::Object(m)) = v.pointer_mut(parent) {
        m.shift_remove(key);
    }
}

/// Serialize with the value at `ptr` replaced by raw text (a number JSON can't hold, a nested
/// structure too deep to build as a `Value`).
fn with_raw(mut v: Value, ptr: &str, raw: &[u8]) -> Vec<u8> {
    const MARK: &str = "__RAW_PLACEHOLDER__";
    set(&mut v, ptr, json!(MARK));
    let text = v.to_string();
    let quoted = format!("\"{MARK}\"");
    match text.find(&quoted) {
        Some(i) => {
            let mut out = text.as_bytes()[..i].to_vec();
            out.extend_from_slice(raw);
            out.extend_from_slice(&text.as_bytes()[i + quoted.len()..]);
            out
        }
        None => {
            // The pointer does not exist in this body: put the value under a new key.
            let mut out = b"{\"x\":".to_vec();
            out.extend_from_slice(raw);
            out.push(b',');
            out.extend_from_slice(&text.as_bytes()[1..]);
            out
        }
    }
}

fn wrong_value(r: &mut Rng) -> Value {
    let palette = [
        json!(1),
        json!(-1),
        json!(0),
        json!(1.5),
        json!(-0.0),
        json!(true),
        json!(false),
        json!([]),
        json!({}),
        json!([1, "a", null]),
        json!({"a": [], "b": {"c": 1}}),
        json!(""),
        json!(" "),
        json!("x"),
        json!("0x16"),
        json!("22abc"),
        json!("1e3"),
        json!("\u{202e}evil"),
        json!("🙂"),
        json!(["show version", 5]),
        json!([{"cmd": 5}]),
        json!([{"expect": "x"}]),
        json!("((("),
        json!("[z-a]"),
        json!("a{1000}{1000}{1000}"),
        json!(["bad line\nsecond"]),
    ];
    r.pick(&palette).clone()
}

/// An HTTP/1.1 request with the usual headers; `token` None sends none.
fn request(
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
    r: &mut Rng,
) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: broker\r\n").into_bytes();
    if let Some(t) = token {
        out.extend_from_slice(format!("X-API-Token: {t}\r\n").as_bytes());
    }
    if r.chance(85) {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    if let Some(b) = body {
        out.extend_from_slice(b"Content-Type: application/json\r\n");
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", b.len()).as_bytes());
        out.extend_from_slice(b);
    } else {
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn body_request(t: Target, body: &[u8], token: &str, r: &mut Rng) -> Vec<u8> {
    let path = target_path(t, r);
    request("POST", &path, Some(token), Some(body), r)
}

fn pick_target(r: &mut Rng) -> Target {
    *r.pick(&[
        Target::Open,
        Target::Open,
        Target::OpenTelnet,
        Target::Exec,
        Target::Exec,
    ])
}

fn deep(n: usize, r: &mut Rng) -> Vec<u8> {
    match r.below(4) {
        0 => "[".repeat(n).into_bytes(),
        1 => format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes(),
        2 => format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n)).into_bytes(),
        _ => format!("{}\"x\"{}", "[{\"cmd\":".repeat(n), "}]".repeat(n)).into_bytes(),
    }
}

const HUGE_NUMBERS: &[&str] = &[
    "1e400",
    "-1e400",
    "1180591620717411303424",
    "-1180591620717411303424",
    "9223372036854775808",
    "18446744073709551616",
    "-9223372036854775809",
    "1e308",
    "1.7976931348623157e309",
    "123456789012345678901234567890.5",
    "1e-400",
    "-0",
    "4.9e-324",
    "65536",
    "-22",
    "\"99999999999999999999\"",
    "\"1e400\"",
    "\"NaN\"",
    "\"inf\"",
    "\"-Infinity\"",
    "NaN",
    "Infinity",
    "0x16",
    "1_000",
    "01",
    ".5",
    "1.",
    "+1",
];

/// Case `i` of the run with `seed`. `token` is the broker's API token.
pub fn case(seed: u64, i: u64, token: &str) -> Case {
    let kind = KINDS[(i % KINDS.len() as u64) as usize];
    // A mutation can turn the host into a name ("x", "1e3"): the broker would look it up in the
    // DNS and answer 502 when it does not resolve, which is right for a well-formed request.
    // Such a case is not malformed: draw again.
    let mut attempt = 0u64;
    let bytes = loop {
        let mut r = Rng::new(
            seed ^ i.wrapping_mul(0xA24B_AED4_963E_E407)
                ^ attempt.wrapping_mul(0x9FB2_1C65_1E98_DF25),
        );
        let b = build(kind, token, &mut r);
        if !names_a_host(&b) {
            break b;
        }
        attempt += 1;
    };
    let may_close = kind == "truncated"
        || find(&bytes, b"\r\n\r\n").is_none() && find(&bytes, b"\n\n").is_none();
    Case {
        kind,
        bytes,
        may_close,
    }
}

/// The request's JSON body has a `host` that the broker would resolve as a name (the rules of
/// `transport::validate_host`, IP literals excepted).
pub fn names_a_host(req: &[u8]) -> bool {
    let Some(end) = find(req, b"\r\n\r\n") else {
        return false;
    };
    let Ok(v) = serde_json::from_slice::<Value>(&req[end + 4..]) else {
        return false;
    };
    let Some(h) = v.get("host").and_then(|h| h.as_str()) else {
        return false;
    };
    let h = h.trim();
    let h = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    if h.is_empty() || h.len() > 253 || h.parse::<std::net::IpAddr>().is_ok() {
        return false;
    }
    h.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn build(kind: &str, token: &str, r: &mut Rng) -> Vec<u8> {
    match kind {
        "bad_json" => {
            let t = pick_target(r);
            let text = base_body(t, r).to_string().into_bytes();
            let body: Vec<u8> = match r.below(16) {
                0 => text[..r.below(text.len() - 1) + 1].to_vec(),
                1 => {
                    let mut b = text.clone();
                    b.insert(1 + r.below(b.len() - 1), *r.pick(b"{}[]:,\"\\'x0 "));
                    b
                }
                2 => String::from_utf8_lossy(&text).replace('"', "'").into_bytes(),
                3 => {
                    let s = String::from_utf8_lossy(&text).into_owned();
                    format!("{},}}", &s[..s.len() - 1]).into_bytes()
                }
                4 => [&text[..], b"garbage"].concat(),
                5 => [&b"\xef\xbb\xbf"[..], &text[..]].concat(),
                6 => [&b"/* comment */"[..], &text[..]].concat(),
                7 => r.pick(&[&b""[..], b" ", b"\r\n\t ", b"null", b"[]", b"1", b"\"str\"", b"true", b"{", b"}", b"{]", b"{\"a\"}", b"{\"a\":}", b"{,}", b"{\"a\":1,,}"]).to_vec(),
                8 => (0..1 + r.below(4096)).map(|_| r.next() as u8).collect(),
                9 => br#"{"host": "\ud800", "username": "a", "password": "b"}"#.to_vec(),
                10 => br#"{"host": "\x41", "username": "a", "password": "b"}"#.to_vec(),
                11 => b"{\"host\": \"a\tb\x01c\", \"username\": \"a\", \"password\": \"b\"}".to_vec(),
                12 => br#"{host: "192.0.2.1", username: "a", password: "b"}"#.to_vec(),
                13 => br#"{"commands": ["show version"] "timeout": 5}"#.to_vec(),
                14 => [&text[..], &text[..]].concat(),
                _ => {
                    let mut b = text.clone();
                    let n = b.len();
                    b.remove(r.below(n));
                    b
                }
            };
            body_request(t, &body, token, r)
        }
        "wrong_types" => {
            let t = pick_target(r);
            let mut v = base_body(t, r);
            for _ in 0..1 + r.below(3) {
                let f = *r.pick(fields(t));
                let w = wrong_value(r);
                set(&mut v, f, w);
            }
            if r.chance(20) {
                v = wrong_value(r);
            }
            body_request(t, v.to_string().as_bytes(), token, r)
        }
        "nul_bytes" => match r.below(8) {
            0 => {
                let t = pick_target(r);
                let mut v = base_body(t, r);
                let f = *r.pick(fields(t));
                set(&mut v, f, json!("a\u{0}b"));
                body_request(t, v.to_string().as_bytes(), token, r)
            }
            1 => {
                let t = pick_target(r);
                let mut b = base_body(t, r).to_string().into_bytes();
                let at = r.below(b.len());
                b.insert(at, 0);
                body_request(t, &b, token, r)
            }
            2 => request("GET", "/session/a\0b/status", Some(token), None, r),
            3 => b"GET /health HTTP/1.1\r\nX-Foo: a\0b\r\n\r\n".to_vec(),
            4 => b"GET /health HTTP/1.1\r\nX-F\0oo: a\r\n\r\n".to_vec(),
            5 => b"G\0T /health HTTP/1.1\r\n\r\n".to_vec(),
            6 => b"GET /health HTTP/1.1\0\r\n\r\n".to_vec(),
            _ => {
                let mut v = base_body(Target::Exec, r);
                set(&mut v, "/commands/0", json!("show\u{0}version"));
                body_request(Target::Exec, v.to_string().as_bytes(), token, r)
            }
        },
        "non_utf8" => {
            let bad: &[u8] = r.pick::<&[u8]>(&[&b"\xff"[..], b"\xfe\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xe2\x82", b"\x80"]);
            match r.below(6) {
                0 | 1 => {
                    let t = pick_target(r);
                    let text = base_body(t, r).to_string();
                    // Inside a string value.
                    let i = text.find("admin").or_else(|| text.find("show")).unwrap_or(2);
                    let mut b = text.as_bytes()[..i + 1].to_vec();
                    b.extend_from_slice(bad);
                    b.extend_from_slice(&text.as_bytes()[i + 1..]);
                    body_request(t, &b, token, r)
                }
                2 => [&b"GET /session/"[..], bad, b"/status HTTP/1.1\r\nX-API-Token: ", token.as_bytes(), b"\r\nConnection: close\r\n\r\n"].concat(),
                3 => [&b"GET /health HTTP/1.1\r\nX-Foo: "[..], bad, b"\r\nConnection: close\r\n\r\n"].concat(),
                4 => [&b"GET /health HTTP/1.1\r\nX-"[..], bad, b": a\r\nConnection: close\r\n\r\n"].concat(),
                _ => [&b"GET /sessions HTTP/1.1\r\nX-API-Token: "[..], token.as_bytes(), bad, b"\r\nConnection: close\r\n\r\n"].concat(),
            }
        }
        "deep_nesting" => {
            let n = *r.pick(&[129usize, 200, 1000, 10_000, 100_000, 300_000]);
            let t = pick_target(r);
            let inner = deep(n, r);
            let body = if r.chance(40) {
                inner
            } else {
                let f = *r.pick(fields(t));
                with_raw(base_body(t, r), f, &inner)
            };
            body_request(t, &body, token, r)
        }
        "huge_numbers" => {
            let t = pick_target(r);
            let f = if t == Target::Exec { *r.pick(EXEC_NUMERIC) } else { *r.pick(OPEN_NUMERIC) };
            let num = if r.chance(5) {
                format!("1{}", "0".repeat(1 + r.below(5000)))
            } else {
                r.pick(HUGE_NUMBERS).to_string()
            };
            body_request(t, &with_raw(base_body(t, r), f, num.as_bytes()), token, r)
        }
        "duplicate_keys" => match r.below(6) {
            0..=2 => {
                let t = pick_target(r);
                let text = base_body(t, r).to_string();
                let f = r.pick(fields(t)).trim_start_matches('/').split('/').next().unwrap_or("host").to_string();
                let dup = format!("\"{f}\":{}", wrong_value(r));
                let n = if r.chance(10) { 1000 } else { 1 };
                let dups = vec![dup; n].join(",");
                let body = if r.chance(50) {
                    format!("{{{dups},{}", &text[1..])
                } else {
                    format!("{},{dups}}}", &text[..text.len() - 1])
                };
                body_request(t, body.as_bytes(), token, r)
            }
            3 => format!("GET /sessions HTTP/1.1\r\nX-API-Token: wrong\r\nX-API-Token: {token}\r\nConnection: close\r\n\r\n").into_bytes(),
            4 => format!("POST /session HTTP/1.1\r\nX-API-Token: {token}\r\nContent-Length: 2\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{{}}").into_bytes(),
            _ => format!("POST /session HTTP/1.1\r\nX-API-Token: {token}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n").into_bytes(),
        },
        "missing_fields" => {
            let t = pick_target(r);
            let mut v = base_body(t, r);
            if t == Target::Exec {
                match r.below(4) {
                    0 => remove(&mut v, "/commands"),
                    1 => remove(&mut v, "/commands/1/cmd"),
                    2 => remove(&mut v, "/commands/1/interactions/0/expect"),
                    _ => v = json!({}),
                }
            } else {
                let req = ["/host", "/username", "/password"];
                let mask = 1 + r.below(7);
                for (k, f) in req.iter().enumerate() {
                    if mask & (1 << k) != 0 {
                        remove(&mut v, f);
                    }
                }
            }
            body_request(t, v.to_string().as_bytes(), token, r)
        }
        "huge_strings" => {
            let t = pick_target(r);
            let n = *r.pick(&[300usize, 10_000, 100_000, 900_000, 1_100_000]);
            let mut v = base_body(t, r);
            if r.chance(15) {
                // Many small things instead of one big one.
                if t == Target::Exec {
                    set(&mut v, "/commands", json!(vec!["x"; n / 8]));
                } else {
                    let m: serde_json::Map<String, Value> = (0..n / 16).map(|k| (format!("k{k}"), json!(k))).collect();
                    v = Value::Object(m);
                }
            } else {
                let f = *r.pick(fields(t));
                let fill = *r.pick(&["a", "é", "\u{1F600}", "\\", "\"", "\u{7}", "%n"]);
                set(&mut v, f, json!(fill.repeat(n / fill.len())));
            }
            body_request(t, v.to_string().as_bytes(), token, r)
        }
        "bad_methods" => {
            let long = "A".repeat(1000);
            let very_long = "B".repeat(70_000);
            let m: &str = r.pick::<&str>(&[
                "FOO", "get", "Get", "G", "GETT", "PATCH", "PUT", "TRACE", "CONNECT", "OPTIONS", "HEAD", "BREW",
                "M-SEARCH", "PROPFIND", long.as_str(), very_long.as_str(), "GET\u{1}", "", "PO ST", "\u{16}\u{3}\u{1}", "PRI", "GET:",
            ]);
            let path = *r.pick(&["/health", "/session", "/sessions", "/session/abc/exec", "/session/abc", "/nope", "/metrics", "/openapi.json", "/docs"]);
            let tok = if r.chance(50) { Some(token) } else { None };
            request(m, path, tok, if r.chance(30) { Some(b"{}") } else { None }, r)
        }
        "bad_versions" => {
            let v = *r.pick(&[
                "HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/1", "HTTP/1.1 x", "http/1.1", "HTTP/11", "HTTP/1.10", "HTTP/1.1\u{0}",
                "HTTPS/1.1", "HTTP/1.1/", "", "HTTP/ 1.1", "HTTP/3", "HTTP/1.0.1", "\u{b}HTTP/1.1",
            ]);
            let path = *r.pick(&["/health", "/sessions", "/openapi.json"]);
            let sep = *r.pick(&[" ", " ", "\t", "  "]);
            let line = if v.is_empty() { format!("GET{sep}{path}") } else { format!("GET{sep}{path}{sep}{v}") };
            format!("{line}\r\nHost: b\r\nX-API-Token: {token}\r\nConnection: close\r\n\r\n").into_bytes()
        }
        "header_injection" => {
            let tok_line = format!("X-API-Token: {token}");
            let inj: String = match r.below(14) {
                0 => format!("{tok_line}\rX-Injected: 1"),
                1 => format!("X-Foo: a\r\n bar\r\n{tok_line}"),
                2 => format!("X-API-Token : {token}"),
                3 => format!(" {tok_line}"),
                4 => format!("{tok_line}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked"),
                5 => format!("{tok_line}\r\nHé: x"),
                6 => format!("{tok_line}\r\nX-Forwarded-For: 127.0.0.1\r\n\tcontinued"),
                7 => format!("{tok_line}\r\n{}", (0..101).map(|k| format!("X-H{k}: v")).collect::<Vec<_>>().join("\r\n")),
                8 => format!("{tok_line}\r\nX-Long: {}", "v".repeat(70_000)),
                9 => format!("{tok_line}\r\n{}", (0..90).map(|k| format!("X-H{k}: {}", "v".repeat(800))).collect::<Vec<_>>().join("\r\n")),
                10 => format!("{tok_line}\r\n: empty-name"),
                11 => format!("{tok_line}\r\nno-colon-here"),
                12 => format!("{tok_line}\r\nX-Foo: a\u{b}b\r\nTransfer-Encoding: chunked\r\nContent-Length: 0"),
                _ => format!("{tok_line}\r\nContent-Length: 0\r\nContent-Length: 1"),
            };
            let path = *r.pick(&["/sessions", "/session", "/health"]);
            let method = if path == "/session" { "POST" } else { "GET" };
            format!("{method} {path} HTTP/1.1\r\nHost: b\r\n{inj}\r\nConnection: close\r\n\r\n{{}}").into_bytes()
        }
        "bad_framing" => {
            let t = pick_target(r);
            let path = target_path(t, r);
            let head = format!("POST {path} HTTP/1.1\r\nHost: b\r\nX-API-Token: {token}\r\nConnection: close\r\n");
            let body = base_body(t, r).to_string();
            let framing: String = match r.below(16) {
                0 => "Content-Length: -1\r\n\r\n".into(),
                1 => format!("Content-Length: +{}\r\n\r\n{body}", body.len()),
                2 => "Content-Length: 0x10\r\n\r\n0123456789abcdef".into(),
                3 => format!("Content-Length: {0}, {0}\r\n\r\n{body}", body.len()),
                4 => "Content-Length: 99999999999999999999999\r\n\r\n{}".into(),
                5 => format!("Content-Length: {}\r\n\r\n{{}}", 1_048_577 + r.below(1 << 30)),
                6 => "Content-Length: \r\n\r\n".into(),
                7 => "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n".into(),
                8 => "Transfer-Encoding: chunked\r\n\r\n123456789\r\n{}\r\n0\r\n\r\n".into(),
                9 => "Transfer-Encoding: chunked\r\n\r\nffffffff\r\n{}\r\n0\r\n\r\n".into(),
                10 => format!("Transfer-Encoding: chunked\r\n\r\n2;{}\r\n{{}}\r\n0\r\n\r\n", "e".repeat(1100)),
                11 => "Transfer-Encoding: chunked\r\n\r\n2\r\n{}XX\r\n0\r\n\r\n".into(),
                12 => "Transfer-Encoding: chunked\r\n\r\n-2\r\n{}\r\n0\r\n\r\n".into(),
                13 => "Expect: 200-ok\r\nContent-Length: 2\r\n\r\n{}".into(),
                14 => format!("Expect: 100-continue\r\nContent-Length: {}\r\n\r\n", 2_000_000 + r.below(1 << 30)),
                // A valid chunked body whose JSON is not valid: 422 after reassembly.
                _ => "Transfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n2\r\n\":\r\n0\r\n\r\n".into(),
            };
            [head.as_bytes(), framing.as_bytes()].concat()
        }
        "bad_paths" => {
            let long_id = "a".repeat(30_000);
            let over = "b".repeat(70_000);
            let (m, p, tok): (&str, String, bool) = match r.below(14) {
                0 => ("GET", "*".into(), true),
                1 => ("GET", "http://127.0.0.1/health".into(), false),
                2 => ("GET", "health".into(), false),
                3 => ("GET", "/health#frag".into(), true),
                4 => ("GET", "/%2e%2e/health".into(), true),
                5 => ("PUT", "//health".into(), true),
                6 => ("GET", "/health/".into(), true),
                7 => ("POST", "/session//exec".into(), true),
                8 => ("GET", format!("/session/{long_id}/status"), true),
                9 => ("GET", format!("/session/{over}/status"), true),
                10 => ("GET", "/docs/../../etc/passwd".into(), true),
                11 => ("GET", "/?a=%00%ff".into(), true),
                12 => ("GET", "/session/%0d%0aSet-Cookie:x/status".into(), true),
                _ => ("DELETE", "/sessions".into(), true),
            };
            let body = if m == "POST" { Some(&b"{\"commands\": 5}"[..]) } else { None };
            request(m, &p, tok.then_some(token), body, r)
        }
        "wrong_token" => {
            let t: String = match r.below(10) {
                0 => String::new(),
                1 => "wrong".into(),
                2 => token[..token.len() - 1].into(),
                3 => format!("{token}x"),
                4 => token.to_lowercase(),
                5 => "a".repeat(30_000),
                6 => format!("Bearer {token}"),
                7 => format!("\"{token}\""),
                8 => format!("{token},{token}"),
                _ => token.chars().rev().collect(),
            };
            let (m, p, body): (&str, String, Option<Vec<u8>>) = match r.below(7) {
                0 => ("GET", "/sessions".into(), None),
                1 => ("POST", "/session".into(), Some(base_body(Target::Open, r).to_string().into_bytes())),
                2 => ("GET", "/session/abc/status".into(), None),
                3 => ("DELETE", "/session/abc".into(), None),
                4 => ("POST", "/session/abc/exec".into(), Some(base_body(Target::Exec, r).to_string().into_bytes())),
                5 => ("GET", "/device-types".into(), None),
                _ => ("GET", "/metrics".into(), None),
            };
            let mut out = format!("{m} {p} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n").into_bytes();
            match r.below(4) {
                0 => out.extend_from_slice(format!("Authorization: Bearer {token}\r\n").as_bytes()),
                1 => out.extend_from_slice(format!("X-API-Token2: {token}\r\n").as_bytes()),
                _ => out.extend_from_slice(format!("X-API-Token: {t}\r\n").as_bytes()),
            }
            match body {
                Some(b) => {
                    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", b.len()).as_bytes());
                    out.extend_from_slice(&b);
                }
                None => out.extend_from_slice(b"\r\n"),
            }
            out
        }
        "truncated" => {
            let t = pick_target(r);
            let full = if r.chance(50) {
                body_request(t, base_body(t, r).to_string().as_bytes(), token, r)
            } else {
                let path = target_path(t, r);
                format!("POST {path} HTTP/1.1\r\nX-API-Token: {token}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{{\"a\":\r\n3\r\n1}}\n\r\n0\r\n\r\n").into_bytes()
            };
            full[..r.below(full.len() - 1)].to_vec()
        }
        "pipelined" => {
            // Two or three requests on one keep-alive connection; each is wrong at the token or
            // body layer (a framing error would close the connection, which is also fine).
            let mut out = Vec::new();
            let n = 2 + r.below(2);
            for k in 0..n {
                let last = k == n - 1;
                let t = pick_target(r);
                let path = target_path(t, r);
                let (tok, body) = if r.chance(50) {
                    ("wrong".to_string(), base_body(t, r).to_string())
                } else {
                    (token.to_string(), "{\"commands\": 7, \"host\": []}".to_string())
                };
                out.extend_from_slice(
                    format!(
                        "POST {path} HTTP/1.1\r\nHost: b\r\nX-API-Token: {tok}\r\n{}Content-Length: {}\r\n\r\n{body}",
                        if last { "Connection: close\r\n" } else { "" },
                        body.len()
                    )
                    .as_bytes(),
                );
            }
            out
        }
        _ => unreachable!("unknown kind {kind}"),
    }
}

/// One HTTP response as read off the wire.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What happened on one connection.
#[derive(Debug)]
pub struct Exchange {
    /// Final responses, in order (100 Continue skipped).
    pub replies: Vec<Reply>,
    /// Bytes after the last complete response (a broken response).
    pub leftover: Vec<u8>,
    /// The read ended by an error (reset) rather than EOF.
    pub read_error: Option<String>,
    pub elapsed: Duration,
}

/// Parse every complete response in `buf`.
pub fn parse_replies(mut buf: &[u8]) -> (Vec<Reply>, Vec<u8>) {
    let mut out = Vec::new();
    while let Some(end) = find(buf, b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status: Option<u16> = lines
            .next()
            .and_then(|l| l.strip_prefix("HTTP/1.1 "))
            .and_then(|l| l.get(..3))
            .and_then(|s| s.parse().ok());
        let Some(status) = status else {
            break;
        };
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let rest = &buf[end + 4..];
        if status < 200 {
            buf = rest;
            continue;
        }
        let len = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        if rest.len() < len {
            break;
        }
        out.push(Reply {
            status,
            headers,
            body: rest[..len].to_vec(),
        });
        buf = &rest[len..];
    }
    (out, buf.to_vec())
}

/// Send `bytes` on a new connection, close our sending side, read until the broker closes.
/// Write errors (the broker answered early and closed) are ignored; the read is bounded by
/// `timeout`.
pub fn exchange(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> Result<Exchange, String> {
    let t = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    for chunk in bytes.chunks(64 << 10) {
        if s.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = s.shutdown(Shutdown::Write);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    let mut read_error = None;
    loop {
        let left = timeout.saturating_sub(t.elapsed());
        if left.is_zero() {
            return Err(format!(
                "no end of response within {timeout:?} (got {} bytes)",
                buf.len()
            ));
        }
        s.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "no end of response within {timeout:?} (got {} bytes)",
                    buf.len()
                ));
            }
            Err(e) => {
                read_error = Some(e.to_string());
                break;
            }
        }
    }
    let (replies, leftover) = parse_replies(&buf);
    Ok(Exchange {
        replies,
        leftover,
        read_error,
        elapsed: t.elapsed(),
    })
}

/// Each reply must be a 4xx with a JSON object body holding `detail`.
pub fn check_reply(r: &Reply) -> Result<(), String> {
    if !(400..500).contains(&r.status) {
        return Err(format!(
            "status {} ({})",
            r.status,
            String::from_utf8_lossy(&r.body[..r.body.len().min(300)])
        ));
    }
    if r.header("Content-Type") != Some("application/json") {
        return Err(format!(
            "{}: Content-Type {:?}",
            r.status,
            r.header("Content-Type")
        ));
    }
    match serde_json::from_slice::<Value>(&r.body) {
        Ok(Value::Object(m)) if m.contains_key("detail") => Ok(()),
        _ => Err(format!(
            "{}: body is not JSON {{\"detail\"}}: {:?}",
            r.status,
            String::from_utf8_lossy(&r.body[..r.body.len().min(300)])
        )),
    }
}

/// Judge one case's exchange: Ok(statuses seen) or Err(why).
pub fn judge(c: &Case, x: &Exchange) -> Result<Vec<u16>, String> {
    for r in &x.replies {
        check_reply(r)?;
    }
    if !x.leftover.is_empty() {
        return Err(format!(
            "unparseable bytes after the responses: {:?}",
            String::from_utf8_lossy(&x.leftover[..x.leftover.len().min(200)])
        ));
    }
    if x.replies.is_empty() && !c.may_close {
        return Err(format!("closed without an answer ({:?})", x.read_error));
    }
    Ok(x.replies.iter().map(|r| r.status).collect())
}

/// Show a case's bytes for a failure message (shortened).
pub fn show(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
    if bytes.len() > 300 {
        format!("{s:?}... ({} bytes)", bytes.len())
    } else {
        format!("{s:?}")
    }
}
