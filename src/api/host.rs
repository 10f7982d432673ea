//! The DNS-rebinding guard. A web page on an attacker's name that later resolves to the broker's
//! address is same-origin with that name: the browser sends its requests, and lets the page read
//! the answers, with `Host: attacker.example`. Routes that need no token (`/health`, `/docs`,
//! `/openapi.json`, `/metrics` when public, the dashboard with its cookie) therefore answer only
//! under a `Host` that names the broker: an IP address (a page can only be same-origin with an
//! address it was itself loaded from), `localhost`, the bind address, or an entry of
//! `server_names`. Anything else is a 421 (Misdirected Request). A request with the API token
//! is not checked: a page cannot know the token. A request without `Host` (HTTP/1.0) is not
//! checked either: every browser sends one.

use super::{Api, ApiLive};
use crate::api::error::Error;
use crate::http::Request;
use std::net::IpAddr;

/// The names the broker answers to (lower case, without a trailing dot).
#[derive(Debug, Clone, Default)]
pub struct HostGuard {
    names: Vec<String>,
}

impl HostGuard {
    /// `bind`: the configured bind address (an address or a name); `server_names`: the
    /// config's list.
    pub fn new(bind: &str, server_names: &[String]) -> HostGuard {
        let mut names = vec!["localhost".to_string()];
        names.push(normalize(bind));
        names.extend(server_names.iter().map(|n| normalize(n)));
        names.retain(|n| !n.is_empty());
        names.dedup();
        HostGuard { names }
    }

    /// Is a `Host` header value (`name`, `name:port`, `1.2.3.4:port`, `[::1]:port`) one of the
    /// broker's names? An empty value carries no name and is accepted like a missing header.
    pub fn accepts(&self, host: &str) -> bool {
        let host = host.trim();
        if host.is_empty() {
            return true;
        }
        let name = if let Some(rest) = host.strip_prefix('[') {
            // An IPv6 literal, with an optional port after the bracket.
            return match rest.split_once(']') {
                Some((addr, port)) => {
                    addr.parse::<std::net::Ipv6Addr>().is_ok()
                        && (port.is_empty() || is_port(port.strip_prefix(':').unwrap_or("x")))
                }
                None => false,
            };
        } else {
            match host.rsplit_once(':') {
                Some((name, port)) if is_port(port) => name,
                _ => host,
            }
        };
        if name.parse::<IpAddr>().is_ok() {
            return true;
        }
        let name = normalize(name);
        self.names.contains(&name)
    }
}

fn normalize(name: &str) -> String {
    let n = name.trim();
    let n = n
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(n);
    n.trim_end_matches('.').to_ascii_lowercase()
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

impl Api {
    /// Refuse a token-less route asked for under a foreign `Host` (421). `segs` are the path's
    /// segments as the router sees them.
    pub(super) fn check_host(
        &self,
        req: &Request,
        segs: &[&str],
        live: &ApiLive,
    ) -> Result<(), Error> {
        let path = req.path();
        let public = path == "/openapi.json"
            || path == "/docs"
            || path.starts_with("/docs/")
            || segs == ["health"]
            || (segs == ["metrics"] && live.metrics_public)
            || self.web.is_route(segs);
        if !public
            || req
                .header("X-API-Token")
                .and_then(|t| live.tokens.find(t.as_bytes()))
                .is_some_and(|t| !t.expired())
        {
            return Ok(());
        }
        match req.header("Host") {
            Some(h) if !live.hosts.accepts(h) => {
                log::debug!(
                    "{} {} from {} refused: Host {h:?} is not a name of this broker",
                    req.method,
                    path,
                    req.remote
                );
                Err(Error::UnknownHost(h.to_string()))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HostGuard;

    #[test]
    fn names_addresses_and_ports() {
        let g = HostGuard::new("127.0.0.1", &["jump.example.net".to_string()]);
        for ok in [
            "127.0.0.1",
            "127.0.0.1:8765",
            "[::1]",
            "[::1]:8765",
            "10.1.2.3:8765",
            "localhost",
            "LOCALHOST:8765",
            "localhost.",
            "jump.example.net",
            "Jump.Example.Net:443",
            "",
        ] {
            assert!(g.accepts(ok), "{ok:?}");
        }
        for bad in [
            "attacker.example",
            "attacker.example:8765",
            "localhost.attacker.example",
            "jump.example.net.attacker.example",
            "[::1",
            "[::1]x",
            "[attacker.example]",
            "127.0.0.1.nip.io",
        ] {
            assert!(!g.accepts(bad), "{bad:?}");
        }
        // A bind address that is a name is one of the broker's names.
        let g = HostGuard::new("broker.lan", &[]);
        assert!(g.accepts("broker.lan:8765") && !g.accepts("other.lan"));
    }
}
