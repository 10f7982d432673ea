//! The config's jump-host rules: named chains of jump hosts (with the broker's credentials for
//! each) and rules that send devices, matched by CIDR or hostname glob, through a chain. Pure:
//! the config reads them, the API picks a chain for a device that asked for none.

use super::{HostKeyPolicy, HostList};
use crate::secret::Secret;

/// The fields a jump host is given by (in a request's `jump` and in the config's chains);
/// another field is refused, since a typo must not send credentials elsewhere.
pub const HOP_FIELDS: &[&str] = &[
    "host",
    "port",
    "username",
    "password",
    "key_file",
    "passphrase",
    "legacy_algorithms",
    "host_key_policy",
];

/// One jump host of a configured chain. Its key file is a path inside key_dir, checked when a
/// session uses it (as a request's `key_file` is).
#[derive(Debug, Clone)]
pub struct JumpHost {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: Secret,
    pub key_file: Option<String>,
    pub passphrase: Option<Secret>,
    /// None: the broker's legacy_hosts decide.
    pub legacy_algorithms: Option<bool>,
    /// None: the broker's host_key_policy.
    pub host_key_policy: Option<HostKeyPolicy>,
}

/// One rule: devices matching `devices` go through the chain named `chain`.
#[derive(Debug, Clone)]
pub struct JumpRule {
    pub devices: HostList,
    pub written: Vec<String>,
    pub chain: String,
}

/// Named chains, and the rules in order (the first that matches a device wins).
#[derive(Debug, Clone, Default)]
pub struct JumpRules {
    pub chains: Vec<(String, Vec<JumpHost>)>,
    pub rules: Vec<JumpRule>,
}

impl JumpRules {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The chain for a device, by its name as given (globs) or, for an address, its CIDRs.
    /// A name is not resolved here: a rule for a name's addresses needs the name's glob too.
    pub fn chain_for(&self, device: &str) -> Option<(&str, &[JumpHost])> {
        let d = device.trim().trim_start_matches('[').trim_end_matches(']');
        let ip = d.parse::<std::net::IpAddr>().ok();
        let rule = self.rules.iter().find(|r| {
            r.devices.matches_name(d) || ip.is_some_and(|ip| r.devices.matches_addr(ip))
        })?;
        self.chains
            .iter()
            .find(|(n, _)| *n == rule.chain)
            .map(|(n, c)| (n.as_str(), c.as_slice()))
    }

    /// What `check-config` shows: chains without secrets, then the rules. With `digest`,
    /// secrets are shown through it (comparing two configs).
    pub fn describe(&self, digest: Option<&dyn Fn(&str) -> String>) -> Vec<String> {
        let mut out = Vec::new();
        for (name, hops) in &self.chains {
            let hops: Vec<String> = hops
                .iter()
                .map(|h| {
                    let mut s = format!(
                        "{}@{}",
                        h.username,
                        crate::transport::host_port(&h.host, h.port)
                    );
                    if let Some(k) = &h.key_file {
                        s.push_str(&format!(" key {k}"));
                    }
                    let secret = |x: &Secret| match digest {
                        Some(d) => d(x.expose()),
                        None => "********".into(),
                    };
                    if !h.password.is_empty() {
                        s.push_str(&format!(" password {}", secret(&h.password)));
                    }
                    if let Some(p) = &h.passphrase {
                        s.push_str(&format!(" passphrase {}", secret(p)));
                    }
                    if let Some(l) = h.legacy_algorithms {
                        s.push_str(&format!(" legacy_algorithms {l}"));
                    }
                    if let Some(p) = h.host_key_policy {
                        s.push_str(&format!(" host_key_policy {}", p.name()));
                    }
                    s
                })
                .collect();
            out.push(format!("chain {name}: {}", hops.join(" -> ")));
        }
        for r in &self.rules {
            out.push(format!("{} via {}", r.written.join(", "), r.chain));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(h: &str) -> JumpHost {
        JumpHost {
            host: h.into(),
            port: 22,
            username: "u".into(),
            password: Secret::new("CANARY-jump-pw"),
            key_file: None,
            passphrase: None,
            legacy_algorithms: None,
            host_key_policy: None,
        }
    }

    #[test]
    fn rules_pick_chains_by_cidr_and_glob_first_match_wins() {
        let rules = JumpRules {
            chains: vec![("a".into(), vec![hop("b1")]), ("b".into(), vec![hop("b2")])],
            rules: vec![
                JumpRule {
                    devices: HostList::parse(&["10.1.0.0/16", "*.dc1.example"]).unwrap(),
                    written: vec![],
                    chain: "a".into(),
                },
                JumpRule {
                    devices: HostList::parse(&["10.0.0.0/8"]).unwrap(),
                    written: vec![],
                    chain: "b".into(),
                },
            ],
        };
        assert_eq!(rules.chain_for("10.1.2.3").unwrap().0, "a");
        assert_eq!(rules.chain_for("sw1.dc1.example").unwrap().0, "a");
        assert_eq!(rules.chain_for("10.9.2.3").unwrap().0, "b");
        assert!(rules.chain_for("192.168.1.1").is_none());
        assert!(rules.chain_for("sw1.dc2.example").is_none());
        let shown = rules.describe(None).join("\n");
        assert!(!shown.contains("CANARY"), "{shown}");
        assert!(shown.contains("password ********"), "{shown}");
    }
}
