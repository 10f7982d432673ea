//! Lenient readers of YAML values: numbers also from numeric strings ("600"), booleans also
//! from yes/no/on/off/1/0, strings also from numbers and booleans. Each returns a message
//! without the key's name (the caller adds it).

use super::WebUser;
use crate::secret::Secret;
use serde_norway::Value;

pub fn list(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Sequence(s) => s.iter().map(string_of).collect(),
        other => Err(format!("expected a list, got {}", kind(other))),
    }
}

pub fn string_of(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("expected a string, got {}", kind(other))),
    }
}

pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// An integer, also from a numeric string ("600"), within bounds.
pub fn int_in(v: &Value, min: u64, max: u64) -> Result<u64, String> {
    let n = match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("expected a whole number >= {min}, got {n}"))?,
        Value::String(s) => s
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("expected a whole number, got '{s}'"))?,
        other => return Err(format!("expected a whole number, got {}", kind(other))),
    };
    if n < min || n > max {
        return Err(format!("{n} is out of range ({min}..={max})"));
    }
    Ok(n)
}

pub fn boolean_of(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err(format!("expected true or false, got '{s}'")),
        },
        other => Err(format!("expected true or false, got {}", kind(other))),
    }
}

pub fn parse_level(s: &str) -> Result<log::LevelFilter, String> {
    Ok(match s.trim().to_ascii_uppercase().as_str() {
        "DEBUG" => log::LevelFilter::Debug,
        "INFO" => log::LevelFilter::Info,
        "WARNING" | "WARN" => log::LevelFilter::Warn,
        "ERROR" | "CRITICAL" => log::LevelFilter::Error,
        other => {
            return Err(format!(
                "expected DEBUG, INFO, WARNING or ERROR, got '{other}'"
            ))
        }
    })
}

pub fn web_users_of(v: &Value) -> Result<Vec<WebUser>, String> {
    let seq = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Sequence(s) => s,
        other => {
            return Err(format!(
                "expected a list of {{username, password_hash, role}}, got {}",
                kind(other)
            ))
        }
    };
    let mut out = Vec::new();
    for (i, item) in seq.iter().enumerate() {
        let get = |k: &str| item.get(k).map(string_of).transpose();
        let username = get("username")?
            .filter(|s| !s.is_empty())
            .ok_or(format!("entry {i}: username is required"))?;
        let hash = get("password_hash")?
            .filter(|s| !s.is_empty())
            .ok_or(format!("entry {i} ({username}): password_hash is required"))?;
        if !(hash.starts_with("$2b$") || hash.starts_with("$2a$") || hash.starts_with("$2y$"))
            || hash.parse::<bcrypt::HashParts>().is_err()
        {
            return Err(format!(
                "entry {i} ({username}): password_hash must be a bcrypt hash ($2b$12$ + 53 characters; make one with `netdev-broker hash-password`)"
            ));
        }
        if out.iter().any(|u: &WebUser| u.username == username) {
            return Err(format!("entry {i}: username {username:?} is listed twice"));
        }
        let role = match get("role")? {
            None => crate::policy::Role::Admin,
            Some(r) => match crate::policy::Role::parse(&r) {
                Ok(r @ (crate::policy::Role::Viewer | crate::policy::Role::Admin)) => r,
                _ => {
                    return Err(format!(
                        "entry {i} ({username}): role must be viewer or admin, got {r:?}"
                    ))
                }
            },
        };
        out.push(WebUser {
            username,
            password_hash: Secret::new(hash),
            role,
        });
    }
    Ok(out)
}

/// `jump_hosts`: `chains` (name -> list of 1 to 3 hops) and `rules` (list of `{match, chain}`).
pub fn jump_hosts_of(v: &Value) -> Result<crate::policy::JumpRules, String> {
    use crate::policy::{HostKeyPolicy, HostList, JumpHost, JumpRule, JumpRules};
    let m = match v {
        Value::Null => return Ok(JumpRules::default()),
        Value::Mapping(m) => m,
        other => {
            return Err(format!(
                "expected a mapping with `chains` and `rules`, got {}",
                kind(other)
            ))
        }
    };
    for k in m.keys() {
        let k = string_of(k)?;
        if k != "chains" && k != "rules" {
            return Err(format!("unknown key {k:?} (expected chains, rules)"));
        }
    }
    let mut out = JumpRules::default();
    match m.get("chains") {
        None | Some(Value::Null) => {}
        Some(Value::Mapping(chains)) => {
            for (name, hops) in chains {
                let name = string_of(name)?;
                let Value::Sequence(hops) = hops else {
                    return Err(format!("chain {name:?}: expected a list of jump hosts"));
                };
                if hops.is_empty() || hops.len() > crate::transport::MAX_HOPS {
                    return Err(format!(
                        "chain {name:?}: 1 to {} jump hosts, got {}",
                        crate::transport::MAX_HOPS,
                        hops.len()
                    ));
                }
                let mut chain = Vec::new();
                for (i, h) in hops.iter().enumerate() {
                    let at = |m: String| format!("chain {name:?} hop {}: {m}", i + 1);
                    let Value::Mapping(hm) = h else {
                        return Err(at(
                            "expected a mapping (host, port, username, password or key_file)"
                                .into(),
                        ));
                    };
                    for k in hm.keys() {
                        let k = string_of(k)?;
                        if !crate::policy::HOP_FIELDS.contains(&k.as_str()) {
                            return Err(at(format!("unknown key {k:?}")));
                        }
                    }
                    let get = |k: &str| -> Result<Option<String>, String> {
                        hm.get(k)
                            .filter(|v| !v.is_null())
                            .map(string_of)
                            .transpose()
                            .map_err(|m| at(format!("{k}: {m}")))
                    };
                    let host = get("host")?
                        .filter(|s| !s.trim().is_empty())
                        .ok_or_else(|| at("host is required".into()))?;
                    let host = crate::transport::validate_host(&host)
                        .map_err(at)?
                        .to_string();
                    let port = match hm.get("port").filter(|v| !v.is_null()) {
                        Some(p) => {
                            int_in(p, 1, 65_535).map_err(|m| at(format!("port: {m}")))? as u16
                        }
                        None => 22,
                    };
                    let username = get("username")?
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| at("username is required".into()))?;
                    let password = get("password")?.unwrap_or_default();
                    let key_file = get("key_file")?.filter(|s| !s.trim().is_empty());
                    if password.is_empty() && key_file.is_none() {
                        return Err(at("password or key_file is required".into()));
                    }
                    let legacy_algorithms =
                        match hm.get("legacy_algorithms").filter(|v| !v.is_null()) {
                            Some(b) => Some(
                                boolean_of(b).map_err(|m| at(format!("legacy_algorithms: {m}")))?,
                            ),
                            None => None,
                        };
                    let host_key_policy = get("host_key_policy")?
                        .map(|p| HostKeyPolicy::parse(&p))
                        .transpose()
                        .map_err(at)?;
                    let no_control = |s: &str, k: &str| {
                        if s.chars().any(|c| c.is_control()) {
                            Err(at(format!("{k} must not contain control characters")))
                        } else {
                            Ok(())
                        }
                    };
                    no_control(&username, "username")?;
                    no_control(&password, "password")?;
                    chain.push(JumpHost {
                        host,
                        port,
                        username,
                        password: Secret::new(password),
                        key_file,
                        passphrase: get("passphrase")?.map(Secret::new),
                        legacy_algorithms,
                        host_key_policy,
                    });
                }
                out.chains.push((name, chain));
            }
        }
        Some(other) => {
            return Err(format!(
                "chains: expected a mapping of names to lists of jump hosts, got {}",
                kind(other)
            ))
        }
    }
    match m.get("rules") {
        None | Some(Value::Null) => {}
        Some(Value::Sequence(rules)) => {
            for (i, r) in rules.iter().enumerate() {
                let at = |m: String| format!("rule {}: {m}", i + 1);
                let Value::Mapping(rm) = r else {
                    return Err(at("expected a mapping {match: [...], chain: name}".into()));
                };
                let written = match rm.get("match") {
                    Some(Value::String(s)) => vec![s.clone()],
                    Some(v) => list(v).map_err(|m| at(format!("match: {m}")))?,
                    None => Vec::new(),
                };
                if written.is_empty() {
                    return Err(at("match (CIDRs or hostname globs) is required".into()));
                }
                let devices = HostList::parse(&written).map_err(|m| at(format!("match: {m}")))?;
                let chain = rm
                    .get("chain")
                    .map(string_of)
                    .transpose()
                    .map_err(|m| at(format!("chain: {m}")))?
                    .ok_or_else(|| at("chain is required".into()))?;
                if !out.chains.iter().any(|(n, _)| *n == chain) {
                    return Err(at(format!("no chain named {chain:?} under chains")));
                }
                out.rules.push(JumpRule {
                    devices,
                    written,
                    chain,
                });
            }
        }
        Some(other) => {
            return Err(format!(
                "rules: expected a list of {{match, chain}}, got {}",
                kind(other)
            ))
        }
    }
    Ok(out)
}
