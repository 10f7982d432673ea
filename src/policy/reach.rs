//! The device allow-list: CIDRs and hostname globs a session may reach.

use ipnet::IpNet;
use std::net::IpAddr;

// ---------------------------------------------------------------------------------------------
// Allow-list of devices
// ---------------------------------------------------------------------------------------------

/// CIDRs and hostname globs. Empty: anything.
#[derive(Debug, Clone, Default)]
pub struct HostList {
    cidrs: Vec<IpNet>,
    globs: Vec<String>,
    /// Another list that must allow a target too (a token's `allowed_hosts`).
    also: Option<Box<HostList>>,
}

impl HostList {
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<HostList, String> {
        let mut l = HostList::default();
        for it in items {
            let s = it.as_ref().trim();
            if s.is_empty() {
                continue;
            }
            // An address alone is a host route (/32, /128); host bits under the prefix are
            // allowed (10.1.2.3/8 is 10.0.0.0/8).
            let net = match s.split_once('/') {
                None => s.parse::<IpAddr>().ok().map(IpNet::from),
                Some((addr, _)) => match s.parse::<IpNet>() {
                    Ok(n) => Some(n),
                    Err(_) if addr.parse::<IpAddr>().is_ok() => {
                        return Err(format!("bad prefix length in '{s}'"))
                    }
                    Err(_) => return Err(format!("'{s}' is not a valid CIDR")),
                },
            };
            if let Some(n) = net {
                l.cidrs.push(n);
                continue;
            }
            let g = s.to_ascii_lowercase();
            if !g
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._*?".contains(&b))
            {
                return Err(format!("'{s}' is neither a CIDR nor a hostname glob"));
            }
            l.globs.push(g);
        }
        Ok(l)
    }

    pub fn has_globs(&self) -> bool {
        !self.globs.is_empty()
    }
    /// Allows anything.
    pub fn is_empty(&self) -> bool {
        self.own_empty() && self.also.as_ref().is_none_or(|a| a.is_empty())
    }
    fn own_empty(&self) -> bool {
        self.cidrs.is_empty() && self.globs.is_empty()
    }

    /// This list narrowed by `other`: a target must be allowed by both.
    pub fn narrowed(&self, other: &HostList) -> HostList {
        HostList {
            cidrs: self.cidrs.clone(),
            globs: self.globs.clone(),
            also: Some(Box::new(match &self.also {
                Some(a) => a.narrowed(other),
                None => other.clone(),
            })),
        }
    }

    /// Allowed by its name alone (every list is empty or has a glob that matches it): it may
    /// be passed on unresolved.
    pub fn allows_name(&self, name: &str) -> bool {
        (self.own_empty() || self.matches_name(name))
            && self.also.as_ref().is_none_or(|a| a.allows_name(name))
    }

    pub fn matches_name(&self, name: &str) -> bool {
        let n = name.trim().to_ascii_lowercase();
        self.globs.iter().any(|g| glob(g.as_bytes(), n.as_bytes()))
    }

    /// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is matched as the IPv4 address it is.
    pub fn matches_addr(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.cidrs.iter().any(|net| net.contains(&ip))
    }

    /// Is a target allowed: by its name (glob), or by its address (CIDR)? (By every list it
    /// was narrowed with, too.)
    pub fn allows(&self, name: &str, ip: IpAddr) -> bool {
        (self.own_empty() || self.matches_name(name) || self.matches_addr(ip))
            && self.also.as_ref().is_none_or(|a| a.allows(name, ip))
    }
}

/// `*` any run, `?` one character.
pub(super) fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_narrowed_list_needs_both() {
        let global = HostList::parse(&["10.0.0.0/8", "*.lab"]).unwrap();
        let token = HostList::parse(&["10.1.0.0/16", "sw1.lab"]).unwrap();
        let both = global.narrowed(&token);
        assert!(both.allows("x", ip("10.1.2.3")));
        assert!(!both.allows("x", ip("10.2.0.1")));
        assert!(both.allows_name("sw1.lab") && !both.allows_name("sw2.lab"));
        assert!(!both.allows("sw2.lab", ip("192.0.2.1")));
        assert!(!both.is_empty());
        // An empty global list lets the token's decide.
        let only = HostList::default().narrowed(&token);
        assert!(only.allows("x", ip("10.1.0.1")) && !only.allows("x", ip("10.2.0.1")));
        assert!(HostList::default()
            .narrowed(&HostList::default())
            .is_empty());
    }

    #[test]
    fn host_lists_match_cidrs_and_globs() {
        let l = HostList::parse(&[
            "10.0.0.0/8",
            "192.168.1.5",
            "*.lab.example.net",
            "sw?-core",
            "2001:db8::/32",
        ])
        .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(l.allows("x", ip("10.20.30.40")));
        assert!(!l.allows("x", ip("11.0.0.1")));
        assert!(l.allows("x", ip("192.168.1.5")));
        assert!(!l.allows("x", ip("192.168.1.6")));
        assert!(l.allows("SW1.LAB.example.net", ip("8.8.8.8")));
        assert!(l.allows("sw1-core", ip("8.8.8.8")));
        assert!(!l.allows("sw12-core", ip("8.8.8.8")));
        assert!(l.allows("x", ip("2001:db8::1")));
        assert!(l.allows("x", ip("::ffff:10.1.1.1")));
        assert!(HostList::parse(&["10.0.0.0/33"]).is_err());
        assert!(HostList::parse(&["2001:db8::/129"]).is_err());
        assert!(HostList::parse(&["10.0.0.0/"]).is_err());
        assert!(HostList::parse(&["sw1/24"]).is_err());
        // Host bits under the prefix are ignored; ::/0 holds every IPv6 address only.
        let l = HostList::parse(&["172.16.5.9/12", "::/0"]).unwrap();
        assert!(l.allows("x", ip("172.31.255.1")) && !l.allows("x", ip("172.32.0.1")));
        assert!(l.allows("x", ip("fe80::1")) && !l.allows("x", ip("8.8.8.8")));
        assert!(!l.allows("x", ip("::ffff:8.8.8.8")));
        assert!(HostList::parse(&["a b"]).is_err());
        assert!(HostList::parse::<&str>(&[])
            .unwrap()
            .allows("anything", ip("1.1.1.1")));
    }
}
