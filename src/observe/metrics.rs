//! `GET /metrics`: counters kept in memory and rendered in the Prometheus text exposition format
//! 0.0.4. Every label value is one of a small fixed set (route templates, result names, status
//! codes): never a path, a session id, a host or any other free-form string.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the exec latency histogram; +Inf is added when rendering.
pub const EXEC_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Why a session left the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CloseReason {
    /// `DELETE /session/{id}`.
    Delete,
    /// Idle longer than its session_timeout (or dead and kept long enough).
    Reaped,
    /// Closed from the web dashboard.
    Dashboard,
    /// The broker is stopping.
    Shutdown,
}

impl CloseReason {
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::Delete => "delete",
            CloseReason::Reaped => "reaped",
            CloseReason::Dashboard => "dashboard",
            CloseReason::Shutdown => "shutdown",
        }
    }
    /// As the log line says it.
    pub fn describe(self) -> &'static str {
        match self {
            CloseReason::Delete => "DELETE",
            CloseReason::Reaped => "reaped",
            CloseReason::Dashboard => "closed from the dashboard",
            CloseReason::Shutdown => "broker shutting down",
        }
    }
}

struct Histogram {
    /// Per bucket (not cumulative), plus one for +Inf.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Http {
    /// (route, method, status) -> count.
    requests: BTreeMap<(&'static str, &'static str, u16), u64>,
}

pub struct Metrics {
    opens: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    closes: Mutex<BTreeMap<&'static str, u64>>,
    guards: Mutex<BTreeMap<&'static str, u64>>,
    execs: Mutex<BTreeMap<&'static str, u64>>,
    exec_duration: Mutex<Histogram>,
    http: Mutex<Http>,
    /// Answered requests by API token name (names come from the config: bounded).
    by_token: Mutex<BTreeMap<String, u64>>,
    /// Requests refused before any token matched, by why (missing, unknown, expired, limited).
    auth_failures: Mutex<BTreeMap<&'static str, u64>>,
    keepalive_failures: AtomicU64,
    connections_lost: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            opens: Mutex::new(BTreeMap::new()),
            closes: Mutex::new(BTreeMap::new()),
            guards: Mutex::new(BTreeMap::new()),
            execs: Mutex::new(BTreeMap::new()),
            exec_duration: Mutex::new(Histogram {
                counts: vec![0; EXEC_BUCKETS.len() + 1],
                sum: 0.0,
                count: 0,
            }),
            http: Mutex::new(Http::default()),
            by_token: Mutex::new(BTreeMap::new()),
            auth_failures: Mutex::new(BTreeMap::new()),
            keepalive_failures: AtomicU64::new(0),
            connections_lost: AtomicU64::new(0),
        }
    }

    /// Count an open's answer; `result` is "ok" or the error's label (`api::error`).
    pub fn session_opened(&self, protocol: &'static str, result: &'static str) {
        *self.opens.lock().entry((protocol, result)).or_default() += 1;
    }

    pub fn session_closed(&self, reason: CloseReason) {
        *self.closes.lock().entry(reason.label()).or_default() += 1;
    }

    /// A change guard event: `armed`, `extended`, and its outcomes (`confirmed`, `disarmed`,
    /// `rolled_back`, `rollback_failed`, `rollback_impossible`).
    pub fn guard_event(&self, event: &'static str) {
        *self.guards.lock().entry(event).or_default() += 1;
    }

    /// Count an exec's answer; `result` is "ok" or the error's label (`api::error`).
    pub fn exec_done(&self, result: &'static str, took: Duration) {
        *self.execs.lock().entry(result).or_default() += 1;
        let s = took.as_secs_f64();
        let mut h = self.exec_duration.lock();
        let i = EXEC_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(EXEC_BUCKETS.len());
        h.counts[i] += 1;
        h.sum += s;
        h.count += 1;
    }

    pub fn http_request(&self, route: &'static str, method: &'static str, status: u16) {
        *self
            .http
            .lock()
            .requests
            .entry((route, method, status))
            .or_default() += 1;
    }

    /// A request made with the token `name` was answered.
    pub fn token_request(&self, name: &str) {
        let mut m = self.by_token.lock();
        match m.get_mut(name) {
            Some(n) => *n += 1,
            None => {
                m.insert(name.to_string(), 1);
            }
        }
    }

    /// A request was refused for its token (`missing`, `unknown`, `expired`, `limited`).
    pub fn auth_failed(&self, reason: &'static str) {
        *self.auth_failures.lock().entry(reason).or_default() += 1;
    }

    pub fn keepalive_failed(&self) {
        self.keepalive_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_lost(&self) {
        self.connections_lost.fetch_add(1, Ordering::Relaxed);
    }

    /// The whole exposition. `sessions` gives each held session's protocol and state (`alive`,
    /// `busy`, `dead`), read by the caller from the registry now.
    pub fn render<'a>(&self, sessions: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
        let mut o = String::with_capacity(4096);
        let p = "netdev_broker_";

        family(
            &mut o,
            p,
            "build_info",
            "gauge",
            "Build information; always 1.",
        );
        let _ = writeln!(
            o,
            "{p}build_info{{version=\"{}\",libssh2=\"{}\"}} 1",
            escape(env!("CARGO_PKG_VERSION")),
            escape(&crate::version::libssh2())
        );

        family(
            &mut o,
            p,
            "sessions",
            "gauge",
            "Sessions held by the broker, by protocol and state (alive, busy = running an exec, dead = connection lost, not yet deleted or reaped).",
        );
        let mut counts: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for proto in ["ssh", "telnet"] {
            for state in ["alive", "busy", "dead"] {
                counts.insert((proto, state), 0);
            }
        }
        for (proto, state) in sessions {
            *counts.entry((proto, state)).or_default() += 1;
        }
        for ((proto, state), n) in &counts {
            let _ = writeln!(
                o,
                "{p}sessions{{protocol=\"{proto}\",state=\"{state}\"}} {n}"
            );
        }

        family(
            &mut o,
            p,
            "session_opens_total",
            "counter",
            "Session opens answered, by protocol and result (ok, auth_failed, timeout, connect_error, forbidden, refused_full, invalid, error).",
        );
        for ((proto, result), n) in self.opens.lock().iter() {
            let _ = writeln!(
                o,
                "{p}session_opens_total{{protocol=\"{proto}\",result=\"{result}\"}} {n}"
            );
        }

        family(
            &mut o,
            p,
            "session_closes_total",
            "counter",
            "Sessions removed from the broker, by reason (delete, reaped, dashboard, shutdown).",
        );
        for (reason, n) in self.closes.lock().iter() {
            let _ = writeln!(o, "{p}session_closes_total{{reason=\"{reason}\"}} {n}");
        }

        family(
            &mut o,
            p,
            "guard_events_total",
            "counter",
            "Change guard events: armed, extended, and how guards ended (confirmed, disarmed, rolled_back, rollback_failed, rollback_impossible).",
        );
        for (event, n) in self.guards.lock().iter() {
            let _ = writeln!(o, "{p}guard_events_total{{event=\"{event}\"}} {n}");
        }

        family(
            &mut o,
            p,
            "api_requests_by_token_total",
            "counter",
            "Requests answered, by the name of the API token they were made with.",
        );
        for (token, n) in self.by_token.lock().iter() {
            let _ = writeln!(
                o,
                "{p}api_requests_by_token_total{{token=\"{}\"}} {n}",
                escape(token)
            );
        }

        family(
            &mut o,
            p,
            "api_auth_failures_total",
            "counter",
            "Requests refused for their API token: missing, unknown, expired, or limited (429 after too many wrong ones from one address).",
        );
        for (reason, n) in self.auth_failures.lock().iter() {
            let _ = writeln!(o, "{p}api_auth_failures_total{{reason=\"{reason}\"}} {n}");
        }

        family(
            &mut o,
            p,
            "session_connections_lost_total",
            "counter",
            "Sessions whose connection to the device died (idle or during an exec).",
        );
        let _ = writeln!(
            o,
            "{p}session_connections_lost_total {}",
            self.connections_lost.load(Ordering::Relaxed)
        );

        family(
            &mut o,
            p,
            "keepalive_failures_total",
            "counter",
            "CLI keepalives whose newline got no prompt back in time.",
        );
        let _ = writeln!(
            o,
            "{p}keepalive_failures_total {}",
            self.keepalive_failures.load(Ordering::Relaxed)
        );

        family(
            &mut o,
            p,
            "exec_requests_total",
            "counter",
            "Exec requests answered, by result (ok, or the error: invalid, forbidden, not_found, busy, session_dead, error, ...).",
        );
        for (result, n) in self.execs.lock().iter() {
            let _ = writeln!(o, "{p}exec_requests_total{{result=\"{result}\"}} {n}");
        }

        family(
            &mut o,
            p,
            "exec_duration_seconds",
            "histogram",
            "Time from an exec request's arrival to its answer.",
        );
        {
            let h = self.exec_duration.lock();
            let mut cum = 0u64;
            for (i, n) in h.counts.iter().enumerate() {
                cum += n;
                let le = EXEC_BUCKETS
                    .get(i)
                    .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
                let _ = writeln!(o, "{p}exec_duration_seconds_bucket{{le=\"{le}\"}} {cum}");
            }
            let _ = writeln!(o, "{p}exec_duration_seconds_sum {}", float(h.sum));
            let _ = writeln!(o, "{p}exec_duration_seconds_count {}", h.count);
        }

        family(
            &mut o,
            p,
            "http_requests_total",
            "counter",
            "HTTP requests answered, by route template (other = no such route), method and status.",
        );
        for ((route, method, status), n) in self.http.lock().requests.iter() {
            let _ = writeln!(
                o,
                "{p}http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        o
    }
}

fn family(o: &mut String, p: &str, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {p}{name} {help}");
    let _ = writeln!(o, "# TYPE {p}{name} {kind}");
}

/// A float as Prometheus reads it (always with a decimal point or exponent).
fn float(v: f64) -> String {
    let s = v.to_string();
    if s.contains(['.', 'e', 'E']) || !v.is_finite() {
        s
    } else {
        format!("{s}.0")
    }
}

/// Label value escaping of the text format: backslash, double quote, newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The label value of a method: the ones the API knows, else `other` (a client picks the method).
pub fn method_label(m: &str) -> &'static str {
    match m {
        "GET" => "GET",
        "POST" => "POST",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_upper_bounds() {
        let m = Metrics::new();
        m.exec_done("ok", Duration::from_millis(5));
        m.exec_done("ok", Duration::from_secs(100));
        let h = m.exec_duration.lock();
        assert_eq!(h.counts[0], 1);
        assert_eq!(h.counts[EXEC_BUCKETS.len()], 1);
        assert_eq!(h.count, 2);
    }

    #[test]
    fn floats_and_escapes() {
        assert_eq!(float(0.0), "0.0");
        assert_eq!(float(1.5), "1.5");
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
