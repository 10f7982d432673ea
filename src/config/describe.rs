//! What the broker runs with, key by key: the listing `check-config` prints (secrets masked)
//! and what a reload changed. Keys come in the order of config.example.yml, their documentation.

use super::keys::REVEAL;
use super::Config;
use serde_json::Value as Json;

/// The shipped example config: every key's documentation.
pub const EXAMPLE: &str = include_str!("../../config.example.yml");

/// Whether a reload applies a key (it is a field of [`super::Live`]) or it needs a restart
/// ([`super::Restart`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Live,
    Restart,
}

/// The keys config.example.yml documents, in order: its `key:` lines, and its `# key:` lines
/// (keys documented without a value) when `commented` is set.
pub fn documented_keys(commented: bool) -> Vec<&'static str> {
    EXAMPLE
        .lines()
        .filter_map(|l| {
            let l = match l.strip_prefix("# ") {
                Some(rest) if commented => rest,
                Some(_) => return None,
                None => l,
            };
            let (k, _) = l.split_once(':')?;
            (!k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')).then_some(k)
        })
        .collect()
}

/// Every key with its class and its value as shown. With `reveal` (comparing two configs),
/// secrets are shown as digests instead of masks, so that a changed secret differs.
pub fn entries(c: &Config, reveal: bool) -> Vec<(String, Class, String)> {
    REVEAL.set(reveal);
    let parts = [
        (Class::Live, serde_json::to_value(&c.live)),
        (Class::Restart, serde_json::to_value(&c.restart)),
    ];
    REVEAL.set(false);
    let mut out = Vec::new();
    for (class, part) in parts {
        // Only a map with a non-string key fails to serialize; the config has none.
        let Ok(Json::Object(m)) = part else { continue };
        for (k, v) in m {
            let shown = match (k.as_str(), v) {
                ("known_hosts", Json::Null) => c
                    .restart
                    .state_dir
                    .join("known_hosts")
                    .display()
                    .to_string(),
                ("max_connections_per_client", v) => {
                    let n = c.restart.connections_per_client(c.restart.max_connections);
                    match v {
                        Json::Null => format!("{n} (half of max_connections)"),
                        _ => n.to_string(),
                    }
                }
                (_, v) => text(v),
            };
            out.push((k, class, shown));
        }
    }
    let doc = documented_keys(true);
    out.sort_by_cached_key(|(k, _, _)| doc.iter().position(|d| d == k).unwrap_or(usize::MAX));
    out
}

fn text(v: Json) -> String {
    match v {
        Json::String(s) => s,
        Json::Array(a) => format!(
            "{:?}",
            a.into_iter()
                .map(|x| match x {
                    Json::String(s) => s,
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
        ),
        Json::Null => "(not set)".into(),
        other => other.to_string(),
    }
}

impl Config {
    /// What the broker runs with, one `(key, value)` per known key, secrets masked.
    pub fn describe(&self) -> Vec<(String, String)> {
        entries(self, false)
            .into_iter()
            .map(|(k, _, v)| (k, v))
            .collect()
    }
}

/// Keys that differ between two configs, split into (applied live, needing a restart).
pub fn changes(old: &Config, new: &Config) -> (Vec<String>, Vec<String>) {
    let (mut live, mut restart) = (Vec::new(), Vec::new());
    for ((k, class, a), (_, _, b)) in entries(old, true).into_iter().zip(entries(new, true)) {
        if a != b {
            match class {
                Class::Live => live.push(k),
                Class::Restart => restart.push(k),
            }
        }
    }
    (live, restart)
}

/// Every key, in documentation order.
pub fn keys() -> Vec<String> {
    entries(&Config::default(), false)
        .into_iter()
        .map(|(k, _, _)| k)
        .collect()
}
