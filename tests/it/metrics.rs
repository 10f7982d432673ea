//! `GET /metrics`: token rules, exact numbers after a known sequence of requests, and a strict
//! check of the text exposition format 0.0.4.

use crate::support::*;
use fake_device::{DeviceConfig, FakeDevice};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One sample: name, labels (sorted), value.
type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

/// A strict parser of what the broker writes: every line is `# HELP name text`,
/// `# TYPE name kind` or `name{k="v",...} value`; every family has HELP then TYPE before its
/// samples; sample names belong to the family just declared; no sample twice; histogram
/// buckets are cumulative, end with `+Inf`, and `+Inf` equals `_count`.
fn parse_strict(text: &str) -> Samples {
    assert!(text.ends_with('\n'), "exposition ends with a newline");
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut samples = Samples::new();
    let mut helped: BTreeSet<String> = BTreeSet::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    // Histogram name -> (bucket le, cumulative count) in order.
    let mut buckets: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has text");
            assert!(name_ok(name), "{line}");
            assert!(!help.trim().is_empty(), "{line}");
            assert!(helped.insert(name.to_string()), "HELP twice: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a kind");
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(
                types.insert(name.into(), kind.into()).is_none(),
                "TYPE twice: {line}"
            );
            current = Some((name.into(), kind.into()));
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                let mut labels = BTreeMap::new();
                for pair in body.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").expect("label is k=\"v\"");
                    let v = v.strip_suffix('"').unwrap_or(v);
                    assert!(name_ok(k) && !k.starts_with("__"), "{line}");
                    assert!(!v.contains('"') || v.contains("\\\""), "{line}");
                    assert!(
                        labels.insert(k.to_string(), v.to_string()).is_none(),
                        "{line}"
                    );
                }
                (name, labels)
            }
        };
        assert!(name_ok(name), "{line}");
        let (family, kind) = current.clone().expect("sample before any TYPE");
        let belongs = match kind.as_str() {
            "histogram" => [
                format!("{family}_bucket"),
                format!("{family}_sum"),
                format!("{family}_count"),
            ]
            .contains(&name.to_string()),
            _ => name == family,
        };
        assert!(belongs, "{name} is not in family {family} ({line})");
        if kind == "counter" || name.ends_with("_count") || name.ends_with("_bucket") {
            assert!(value >= 0.0 && value.fract() == 0.0, "{line}");
        }
        if name.ends_with("_bucket") && kind == "histogram" {
            let le = labels.get("le").expect("bucket has le").clone();
            buckets.entry(family.clone()).or_default().push((le, value));
        }
        assert!(
            samples.insert((name.to_string(), labels), value).is_none(),
            "sample twice: {line}"
        );
    }
    assert_eq!(
        helped,
        types.keys().cloned().collect(),
        "every HELP has a TYPE"
    );
    for (family, kind) in &types {
        assert!(family.starts_with("netdev_broker_"), "{family}");
        if kind != "histogram" {
            continue;
        }
        let b = &buckets[family];
        let mut last_le = f64::NEG_INFINITY;
        let mut last_n = 0.0;
        for (le, n) in b {
            let le: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            assert!(le > last_le, "{family}: buckets in increasing le");
            assert!(*n >= last_n, "{family}: buckets are cumulative");
            last_le = le;
            last_n = *n;
        }
        assert_eq!(b.last().map(|(le, _)| le.as_str()), Some("+Inf"));
        let count = samples[&(format!("{family}_count"), BTreeMap::new())];
        assert_eq!(last_n, count, "{family}: +Inf bucket == _count");
        assert!(samples.contains_key(&(format!("{family}_sum"), BTreeMap::new())));
    }
    samples
}

fn scrape(b: &TestBroker) -> Samples {
    let r = b.get("/metrics");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("Content-Type"), Some(CONTENT_TYPE));
    parse_strict(std::str::from_utf8(&r.body).unwrap())
}

fn value(s: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    *s.get(&(name.to_string(), labels.clone()))
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
}

/// The samples of one metric: labels -> value.
fn series(s: &Samples, name: &str) -> BTreeMap<BTreeMap<String, String>, f64> {
    s.iter()
        .filter(|((n, _), _)| n == name)
        .map(|((_, l), v)| (l.clone(), *v))
        .collect()
}

#[test]
fn metrics_need_the_token_unless_public() {
    let b = broker("");
    for t in [None, Some("wrong")] {
        let r = call(b.addr, "GET", "/metrics", t, None);
        assert_eq!(r.status, 401, "token {t:?}");
    }
    assert_eq!(
        call(b.addr, "POST", "/metrics", Some(TOKEN), None).status,
        405
    );
    let s = scrape(&b);
    assert_eq!(
        value(
            &s,
            "netdev_broker_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("libssh2", &netdev_broker::version::libssh2())
            ]
        ),
        1.0
    );

    let p = broker("metrics_public: true");
    let r = call(p.addr, "GET", "/metrics", None, None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some(CONTENT_TYPE));
    parse_strict(std::str::from_utf8(&r.body).unwrap());
    // Only /metrics is public: the rest of the API still needs the token.
    assert_eq!(call(p.addr, "GET", "/sessions", None, None).status, 401);
}

#[test]
fn metrics_count_exactly_what_happened() {
    let dev = FakeDevice::start(DeviceConfig {
        password: PASSWORD.into(),
        ..Default::default()
    });
    let b = broker("");
    let fresh = scrape(&b);
    // Every protocol/state pair is there from the start, at 0; nothing counted yet.
    assert_eq!(series(&fresh, "netdev_broker_sessions").len(), 6);
    assert!(series(&fresh, "netdev_broker_sessions")
        .values()
        .all(|v| *v == 0.0));
    assert!(series(&fresh, "netdev_broker_session_opens_total").is_empty());
    assert_eq!(
        value(&fresh, "netdev_broker_exec_duration_seconds_count", &[]),
        0.0
    );

    let id = b.open(dev.port(), json!({}));
    let r = b.exec(&id, json!(["show version"]));
    assert_eq!(r.status, 200);
    let mid = scrape(&b);
    assert_eq!(
        value(
            &mid,
            "netdev_broker_sessions",
            &[("protocol", "ssh"), ("state", "alive")]
        ),
        1.0
    );
    // A wrong password and a closed port.
    let r = b.post(
        "/session",
        &json!({"host": "127.0.0.1", "port": dev.port(), "username": "admin", "password": "nope", "timeout": 10}),
    );
    assert_eq!(r.status, 401);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = b.post(
        "/session",
        &json!({"host": "127.0.0.1", "port": closed, "username": "u", "password": "p"}),
    );
    assert_eq!(r.status, 502);
    // An invalid body is an open too (refused before it reached the registry).
    assert_eq!(b.post("/session", &json!({})).status, 422);
    assert_eq!(b.delete(&format!("/session/{id}")).status, 204);
    // An exec on the deleted session: 404.
    assert_eq!(b.exec(&id, json!(["show clock"])).status, 404);

    let s = scrape(&b);
    let opens = series(&s, "netdev_broker_session_opens_total");
    let want: BTreeMap<BTreeMap<String, String>, f64> = [
        ("ok", 1.0),
        ("auth_failed", 1.0),
        ("connect_error", 1.0),
        ("invalid", 1.0),
    ]
    .iter()
    .map(|(r, n)| {
        (
            [("protocol", "ssh"), ("result", *r)]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            *n,
        )
    })
    .collect();
    assert_eq!(opens, want);
    assert_eq!(
        series(&s, "netdev_broker_session_closes_total"),
        [([("reason".to_string(), "delete".to_string())].into(), 1.0)].into()
    );
    assert_eq!(
        value(&s, "netdev_broker_exec_requests_total", &[("result", "ok")]),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "netdev_broker_exec_requests_total",
            &[("result", "not_found")]
        ),
        1.0
    );
    assert_eq!(
        series(&s, "netdev_broker_exec_requests_total").len(),
        2,
        "{s:?}"
    );
    assert_eq!(
        value(&s, "netdev_broker_exec_duration_seconds_count", &[]),
        2.0
    );
    assert!(value(&s, "netdev_broker_exec_duration_seconds_sum", &[]) > 0.0);
    assert!(series(&s, "netdev_broker_sessions")
        .values()
        .all(|v| *v == 0.0));
    assert_eq!(
        value(&s, "netdev_broker_keepalive_failures_total", &[]),
        0.0
    );
    assert_eq!(
        value(&s, "netdev_broker_session_connections_lost_total", &[]),
        0.0
    );

    // HTTP requests by route template: the id never appears, and 3 scrapes before this one
    // were answered 200 (this one is counted after it is written).
    let http = series(&s, "netdev_broker_http_requests_total");
    let get = |route: &str, method: &str, status: &str| {
        http.get(
            &[("route", route), ("method", method), ("status", status)]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        )
        .copied()
    };
    assert_eq!(get("/metrics", "GET", "200"), Some(2.0));
    assert_eq!(get("/session", "POST", "201"), Some(1.0));
    assert_eq!(get("/session", "POST", "401"), Some(1.0));
    assert_eq!(get("/session", "POST", "502"), Some(1.0));
    assert_eq!(get("/session", "POST", "422"), Some(1.0));
    assert_eq!(get("/session/{id}/exec", "POST", "200"), Some(1.0));
    assert_eq!(get("/session/{id}/exec", "POST", "404"), Some(1.0));
    assert_eq!(get("/session/{id}", "DELETE", "204"), Some(1.0));
    assert_eq!(http.values().sum::<f64>(), 9.0, "{http:?}");
    let text = String::from_utf8(b.get("/metrics").body).unwrap();
    assert!(!text.contains(&id), "a session id in a label");

    // Unknown paths and odd methods collapse into fixed label values.
    call(b.addr, "GET", "/no/such/thing", Some(TOKEN), None);
    call(b.addr, "BREW", "/health", Some(TOKEN), None);
    let s = scrape(&b);
    let http = series(&s, "netdev_broker_http_requests_total");
    assert!(http
        .keys()
        .any(|l| l["route"] == "other" && l["status"] == "404"));
    assert!(http
        .keys()
        .any(|l| l["method"] == "other" && l["route"] == "/health"));
    assert!(http.keys().all(|l| !l["route"].contains("no/such")));
}
