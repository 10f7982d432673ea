//! The configuration keys, each declared once: a field of [`Live`] (a reload applies it) or of
//! [`Restart`] (read at start only), whose serde attributes say its default (`default`), how
//! it is read from YAML (`deserialize_with`, lenient as Ansible templates write: "600" for 600,
//! "yes" for true) and how `check-config` shows it (`serialize_with`, secrets masked). The key's
//! documentation is its line in config.example.yml; `tests::every_key_is_declared_once` checks
//! that each key has a default, a doc line and exactly one class.

use super::{LogMode, WebUser};
use crate::observe::mask::Masker;
use crate::policy::{ApiToken, CommandRules, HostKeyPolicy, HostList, JumpRules};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// The keys a reload (SIGHUP) applies to the running broker: swapped whole.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Live {
    #[serde(
        default,
        deserialize_with = "de::secret",
        serialize_with = "show::secret"
    )]
    pub api_token: Secret,
    /// Named tokens with roles (their SHA-256 only); `api_token` joins them as `default`.
    #[serde(
        default,
        deserialize_with = "de::api_tokens",
        serialize_with = "show::api_tokens"
    )]
    pub api_tokens: Vec<ApiToken>,
    /// What a `reader` token may run on every platform (empty: each platform's own list).
    #[serde(default, deserialize_with = "de::read_only_commands")]
    pub read_only_commands: Vec<String>,
    /// Wrong tokens one client address may send per minute before it is answered 429 (0: no
    /// limit).
    #[serde(
        default = "d::num::<10, _>",
        deserialize_with = "de::int::<0, 1_000_000, _, _>"
    )]
    pub auth_failures_per_minute: u32,
    #[serde(
        default = "d::info",
        deserialize_with = "de::level",
        serialize_with = "show::level"
    )]
    pub log_level: log::LevelFilter,
    /// Default idle limit for sessions; zero means never reaped.
    #[serde(
        default = "d::secs::<300>",
        deserialize_with = "de::secs::<0, _>",
        serialize_with = "show::secs"
    )]
    pub session_timeout: Duration,
    #[serde(default = "d::yes", deserialize_with = "de::boolean")]
    pub stale_reaper: bool,
    /// `GET /metrics` answers without the API token.
    #[serde(default, deserialize_with = "de::boolean")]
    pub metrics_public: bool,
    #[serde(
        default = "d::secs::<60>",
        deserialize_with = "de::secs::<1, _>",
        serialize_with = "show::secs"
    )]
    pub reaper_interval: Duration,
    #[serde(
        default,
        deserialize_with = "de::web_secret_key",
        serialize_with = "show::secret"
    )]
    pub web_secret_key: Secret,
    #[serde(
        default = "d::secs::<3600>",
        deserialize_with = "de::secs::<1, _>",
        serialize_with = "show::secs"
    )]
    pub web_session_ttl: Duration,
    #[serde(
        default,
        deserialize_with = "de::web_users",
        serialize_with = "show::web_users"
    )]
    pub web_users: Vec<WebUser>,
    #[serde(
        default = "d::secs::<30>",
        deserialize_with = "de::secs::<1, _>",
        serialize_with = "show::secs"
    )]
    pub command_timeout: Duration,
    /// How long a finished job's result (an exec's answer) is kept for GET .../jobs/{id}.
    #[serde(
        default = "d::secs::<900>",
        deserialize_with = "de::secs::<1, _>",
        serialize_with = "show::secs"
    )]
    pub job_retention: Duration,
    #[serde(
        default,
        deserialize_with = "de::host_key_policy",
        serialize_with = "show::host_key_policy"
    )]
    pub host_key_policy: HostKeyPolicy,
    /// May a session ask for a weaker host-key policy than the config's?
    #[serde(
        rename = "host_key_policy_override",
        default,
        deserialize_with = "de::policy_override",
        serialize_with = "show::policy_override"
    )]
    pub host_key_policy_override_any: bool,
    /// Key files for key auth must lie inside this directory (None: key auth off).
    #[serde(
        default,
        deserialize_with = "de::opt_path",
        serialize_with = "show::key_dir"
    )]
    pub key_dir: Option<PathBuf>,
    #[serde(default, deserialize_with = "de::hosts")]
    pub allowed_hosts: Listed<HostList>,
    /// Hosts whose sessions offer the legacy SHA-1 algorithms by default.
    #[serde(default, deserialize_with = "de::hosts")]
    pub legacy_hosts: Listed<HostList>,
    /// Reverse proxies whose `X-Forwarded-For` names the dashboard's client (rate limit).
    #[serde(default, deserialize_with = "de::proxies")]
    pub trusted_proxies: Listed<HostList>,
    /// Host names the broker answers to on token-less routes besides its bind address,
    /// `localhost` and IP addresses (the DNS-rebinding guard); lower case, no trailing dot.
    #[serde(default, deserialize_with = "de::server_names")]
    pub server_names: Listed<Vec<String>>,
    /// Named chains of jump hosts (with the broker's credentials for them) and the rules that
    /// send devices through them.
    #[serde(
        default,
        deserialize_with = "de::jump_hosts",
        serialize_with = "show::jump_hosts"
    )]
    pub jump_hosts: JumpRules,
    #[serde(default, deserialize_with = "de::commands")]
    pub denied_commands: Vec<String>,
    #[serde(default, deserialize_with = "de::commands")]
    pub allowed_commands: Vec<String>,
    /// Not a key: `denied_commands` and `allowed_commands` compiled together.
    #[serde(skip)]
    pub commands: CommandRules,
}

/// The keys read at start only: a reload that changes one says it needs a restart and keeps
/// the running value.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Restart {
    #[serde(default = "d::host", deserialize_with = "de::string")]
    pub host: String,
    #[serde(
        default = "d::num::<8765, _>",
        deserialize_with = "de::int::<0, 65_535, _, _>"
    )]
    pub port: u16,
    #[serde(
        default,
        deserialize_with = "de::log_mode",
        serialize_with = "show::log_mode"
    )]
    pub log_mode: LogMode,
    #[serde(
        default = "d::log_file",
        deserialize_with = "de::path",
        serialize_with = "show::path"
    )]
    pub log_file: PathBuf,
    #[serde(
        default,
        deserialize_with = "de::opt_path",
        serialize_with = "show::cmd_log_dir"
    )]
    pub cmd_log_dir: Option<PathBuf>,
    /// Idle time between CLI keepalives (a newline read back to the prompt); zero: off.
    #[serde(
        default = "d::secs::<60>",
        deserialize_with = "de::secs::<0, _>",
        serialize_with = "show::secs"
    )]
    pub keepalive_interval: Duration,
    /// TCP_USER_TIMEOUT of device connections: how long sent data may stay unacknowledged
    /// before the connection counts as dead (zero: the kernel's default, about 15 minutes).
    #[serde(
        default = "d::secs::<120>",
        deserialize_with = "de::secs_in::<0, 86_400, _>",
        serialize_with = "show::secs"
    )]
    pub dead_peer_timeout: Duration,
    /// No longer used (a warning says so); still checked, for old configs.
    #[serde(default = "d::workers", deserialize_with = "de::int::<1, 1024, _, _>")]
    pub workers: usize,
    #[serde(
        default = "d::num::<1000, _>",
        deserialize_with = "de::int::<1, 100_000, _, _>"
    )]
    pub max_sessions: usize,
    #[serde(
        default = "d::num::<512, _>",
        deserialize_with = "de::int::<8, 100_000, _, _>"
    )]
    pub max_connections: usize,
    /// Open HTTP connections per client address at most; None: half of max_connections.
    #[serde(default, deserialize_with = "de::opt_int::<1, 100_000, _, _>")]
    pub max_connections_per_client: Option<usize>,
    #[serde(
        default = "d::num::<{ 1 << 20 }, _>",
        deserialize_with = "de::int::<1024, { 1 << 30 }, _, _>"
    )]
    pub max_body_bytes: usize,
    #[serde(
        default = "d::num::<{ 16 << 20 }, _>",
        deserialize_with = "de::int::<1024, { 1 << 32 }, _, _>"
    )]
    pub max_output_bytes: usize,
    /// Output kept for all the commands of one exec together (`truncated` past it).
    #[serde(
        default = "d::num::<{ 64 << 20 }, _>",
        deserialize_with = "de::int::<1024, { 1 << 34 }, _, _>"
    )]
    pub max_exec_output_bytes: usize,
    #[serde(
        default = "d::state_dir",
        deserialize_with = "de::path",
        serialize_with = "show::path"
    )]
    pub state_dir: PathBuf,
    #[serde(
        default,
        deserialize_with = "de::mask_patterns",
        serialize_with = "show::mask_patterns"
    )]
    pub mask_patterns: Listed<Masker>,
    /// A JSON-lines audit trail of every state-changing request (None: the log only).
    #[serde(
        default,
        deserialize_with = "de::opt_path",
        serialize_with = "show::audit_log"
    )]
    pub audit_log: Option<PathBuf>,
    /// The broker's known_hosts file (None: `state_dir/known_hosts`).
    #[serde(
        default,
        deserialize_with = "de::opt_path",
        serialize_with = "show::path_or_null"
    )]
    pub known_hosts: Option<PathBuf>,
}

/// A list-valued key: the items as written (what `check-config` shows and a reload compares)
/// and what they mean.
#[derive(Debug, Clone, Default)]
pub struct Listed<T> {
    pub written: Vec<String>,
    pub parsed: T,
}

impl<T> Serialize for Listed<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.written.serialize(s)
    }
}

impl Default for Live {
    fn default() -> Live {
        super::from_map::<Live>(&Default::default()).expect("every key has a default")
    }
}

impl Default for Restart {
    fn default() -> Restart {
        super::from_map::<Restart>(&Default::default()).expect("every key has a default")
    }
}

impl Restart {
    /// Connections one client address may hold, given the connection cap in effect (which
    /// start-up may lower below `max_connections` for want of descriptors): the configured
    /// value, else half the cap, so a single client never holds every slot. Half, not less: on
    /// a jump host nearly every client is 127.0.0.1 (Ansible's forks, a local nginx), and
    /// they share one address.
    pub fn connections_per_client(&self, max_connections: usize) -> usize {
        self.max_connections_per_client
            .unwrap_or(max_connections / 2)
            .clamp(1, max_connections.max(1))
    }
}

/// Defaults that are not the type's own.
mod d {
    use std::path::PathBuf;
    use std::time::Duration;

    pub fn num<const N: u64, T: TryFrom<u64>>() -> T {
        T::try_from(N).unwrap_or_else(|_| unreachable!("default {N} out of its type's range"))
    }
    pub fn secs<const N: u64>() -> Duration {
        Duration::from_secs(N)
    }
    pub fn yes() -> bool {
        true
    }
    pub fn info() -> log::LevelFilter {
        log::LevelFilter::Info
    }
    pub fn host() -> String {
        "127.0.0.1".into()
    }
    pub fn log_file() -> PathBuf {
        "/var/log/netdev-broker/netdev-broker.log".into()
    }
    pub fn state_dir() -> PathBuf {
        super::super::DEFAULT_STATE_DIR.into()
    }
    /// Workers only parse JSON and route; they never wait on a device. Two per core, at least 4.
    pub fn workers() -> usize {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        (cores * 2).clamp(4, 64)
    }
}

/// Readers: each takes whatever YAML value was written and returns the key's value or a
/// message (the caller adds "config key 'x': ").
mod de {
    use super::super::parse::*;
    use super::*;
    use serde::de::{Deserializer, Error};
    use serde_norway::Value;

    type R<T, E> = Result<T, E>;

    fn with<'de, D: Deserializer<'de>, T>(
        d: D,
        f: impl FnOnce(&Value) -> Result<T, String>,
    ) -> R<T, D::Error> {
        f(&Value::deserialize(d)?).map_err(D::Error::custom)
    }

    pub fn string<'de, D: Deserializer<'de>>(d: D) -> R<String, D::Error> {
        with(d, string_of)
    }
    pub fn secret<'de, D: Deserializer<'de>>(d: D) -> R<Secret, D::Error> {
        with(d, |v| string_of(v).map(Secret::new))
    }
    pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> R<bool, D::Error> {
        with(d, boolean_of)
    }
    pub fn int<'de, const MIN: u64, const MAX: u64, T: TryFrom<u64>, D: Deserializer<'de>>(
        d: D,
    ) -> R<T, D::Error> {
        with(d, |v| {
            let n = int_in(v, MIN, MAX)?;
            T::try_from(n).map_err(|_| format!("{n} is too large"))
        })
    }
    pub fn opt_int<'de, const MIN: u64, const MAX: u64, T: TryFrom<u64>, D: Deserializer<'de>>(
        d: D,
    ) -> R<Option<T>, D::Error> {
        int::<MIN, MAX, T, D>(d).map(Some)
    }
    /// Seconds, up to ten years.
    pub fn secs<'de, const MIN: u64, D: Deserializer<'de>>(d: D) -> R<Duration, D::Error> {
        secs_in::<MIN, { 10 * 365 * 86_400 }, D>(d)
    }
    pub fn secs_in<'de, const MIN: u64, const MAX: u64, D: Deserializer<'de>>(
        d: D,
    ) -> R<Duration, D::Error> {
        with(d, |v| int_in(v, MIN, MAX).map(Duration::from_secs))
    }
    pub fn level<'de, D: Deserializer<'de>>(d: D) -> R<log::LevelFilter, D::Error> {
        with(d, |v| parse_level(&string_of(v)?))
    }
    pub fn log_mode<'de, D: Deserializer<'de>>(d: D) -> R<LogMode, D::Error> {
        with(d, |v| {
            Ok(match string_of(v)?.to_ascii_lowercase().as_str() {
                "stdout" => LogMode::Stdout,
                "file" => LogMode::File,
                "both" => LogMode::Both,
                other => return Err(format!("expected stdout, file or both, got '{other}'")),
            })
        })
    }
    pub fn path<'de, D: Deserializer<'de>>(d: D) -> R<PathBuf, D::Error> {
        with(d, |v| string_of(v).map(PathBuf::from))
    }
    /// A path; empty or blank: none.
    pub fn opt_path<'de, D: Deserializer<'de>>(d: D) -> R<Option<PathBuf>, D::Error> {
        with(d, |v| {
            let s = string_of(v)?;
            Ok((!s.trim().is_empty()).then(|| PathBuf::from(s)))
        })
    }
    pub fn web_secret_key<'de, D: Deserializer<'de>>(d: D) -> R<Secret, D::Error> {
        with(d, |v| {
            let k = string_of(v)?;
            if !k.is_empty() && k.len() < super::super::MIN_WEB_SECRET_KEY {
                return Err(format!(
                    "must be at least {} bytes, got {} (generate one: openssl rand -hex 32)",
                    super::super::MIN_WEB_SECRET_KEY,
                    k.len()
                ));
            }
            Ok(Secret::new(k))
        })
    }
    pub fn web_users<'de, D: Deserializer<'de>>(d: D) -> R<Vec<WebUser>, D::Error> {
        with(d, web_users_of)
    }
    pub fn api_tokens<'de, D: Deserializer<'de>>(d: D) -> R<Vec<ApiToken>, D::Error> {
        with(d, crate::policy::parse_api_tokens)
    }
    /// A list of patterns, each compiled as a command rule.
    pub fn read_only_commands<'de, D: Deserializer<'de>>(d: D) -> R<Vec<String>, D::Error> {
        with(d, |v| {
            let l = list(v)?;
            CommandRules::read_only(&l)?;
            Ok(l)
        })
    }
    pub fn jump_hosts<'de, D: Deserializer<'de>>(d: D) -> R<JumpRules, D::Error> {
        with(d, jump_hosts_of)
    }
    pub fn host_key_policy<'de, D: Deserializer<'de>>(d: D) -> R<HostKeyPolicy, D::Error> {
        with(d, |v| HostKeyPolicy::parse(&string_of(v)?))
    }
    pub fn policy_override<'de, D: Deserializer<'de>>(d: D) -> R<bool, D::Error> {
        with(d, |v| match string_of(v)?.as_str() {
            "stricter" => Ok(false),
            "any" => Ok(true),
            o => Err(format!("expected 'stricter' or 'any', got '{o}'")),
        })
    }
    pub fn hosts<'de, D: Deserializer<'de>>(d: D) -> R<Listed<HostList>, D::Error> {
        with(d, |v| {
            let written = list(v)?;
            let parsed = HostList::parse(&written)?;
            Ok(Listed { written, parsed })
        })
    }
    pub fn proxies<'de, D: Deserializer<'de>>(d: D) -> R<Listed<HostList>, D::Error> {
        let l = hosts(d)?;
        if l.parsed.has_globs() {
            return Err(D::Error::custom("expected addresses or CIDRs, not names"));
        }
        Ok(l)
    }
    pub fn server_names<'de, D: Deserializer<'de>>(d: D) -> R<Listed<Vec<String>>, D::Error> {
        with(d, |v| {
            let written = list(v)?;
            let mut parsed = Vec::new();
            for n in &written {
                let name = n.trim().trim_end_matches('.').to_ascii_lowercase();
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
                {
                    return Err(format!(
                        "expected host names such as broker.example.net (no port), got {n:?}"
                    ));
                }
                parsed.push(name);
            }
            Ok(Listed { written, parsed })
        })
    }
    /// denied_commands, allowed_commands: each pattern compiles as a platform pattern and as
    /// a command rule (the rules of both lists are built together once both are read).
    pub fn commands<'de, D: Deserializer<'de>>(d: D) -> R<Vec<String>, D::Error> {
        with(d, |v| {
            let l = list(v)?;
            for p in &l {
                crate::platform::compile(p)?;
            }
            CommandRules::new(&l, &[] as &[String])?;
            Ok(l)
        })
    }
    pub fn mask_patterns<'de, D: Deserializer<'de>>(d: D) -> R<Listed<Masker>, D::Error> {
        with(d, |v| {
            let written = match v {
                Value::Sequence(s) => s.iter().map(string_of).collect::<Result<Vec<_>, _>>()?,
                _ => return Err("expected a list of regular expressions".into()),
            };
            let parsed = Masker::new(&written)?;
            Ok(Listed { written, parsed })
        })
    }
}

/// How `check-config` shows a value where its plain serde form is not what a reader wants.
/// While [`REVEAL`] is set (comparing two configs), secrets are shown as they are.
mod show {
    use super::*;
    use serde::Serializer;
    use std::path::Path;

    thread_local! {
        pub static REVEAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    type R<S> = Result<<S as Serializer>::Ok, <S as Serializer>::Error>;

    /// A digest, not the secret: comparing needs no copy of it.
    fn digest(s: &str) -> String {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(s.as_bytes()))
    }

    pub fn secret<S: Serializer>(v: &Secret, s: S) -> R<S> {
        if REVEAL.get() {
            s.serialize_str(&digest(v.expose()))
        } else if v.is_empty() {
            s.serialize_str("(not set)")
        } else {
            s.serialize_str("********")
        }
    }
    pub fn web_users<S: Serializer>(v: &[WebUser], s: S) -> R<S> {
        let names = v
            .iter()
            .map(|u| u.username.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if REVEAL.get() {
            let all = v
                .iter()
                .map(|u| (&u.username, digest(u.password_hash.expose())));
            s.collect_seq(all)
        } else if v.is_empty() {
            s.serialize_str("(none: dashboard off)")
        } else {
            s.serialize_str(&format!("{names} (password hashes ********)"))
        }
    }
    /// The entries as written (hashes are not secrets: the tokens are random).
    pub fn api_tokens<S: Serializer>(v: &[ApiToken], s: S) -> R<S> {
        if v.is_empty() {
            return s.serialize_str("(none)");
        }
        if REVEAL.get() {
            return s.collect_seq(v.iter().map(|t| {
                let mut w = t.written.clone();
                w["token_sha256"] = t
                    .sha256
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
                    .into();
                w
            }));
        }
        // One line per token: `name: role, expires ..., max_sessions N, ...`.
        s.collect_seq(v.iter().map(|t| {
            let mut parts = vec![t.role.name().to_string()];
            if let Some((_, e)) = &t.expires {
                parts.push(format!("expires {e}"));
            }
            for k in ["allowed_hosts", "allowed_commands", "denied_commands"] {
                if let Some(l) = t.written.get(k).and_then(|l| l.as_array()) {
                    let items: Vec<&str> = l.iter().filter_map(|x| x.as_str()).collect();
                    parts.push(format!("{k} [{}]", items.join(", ")));
                }
            }
            if let Some(n) = t.max_sessions {
                parts.push(format!("max_sessions {n}"));
            }
            format!("{}: {}", t.name, parts.join(", "))
        }))
    }
    pub fn audit_log<S: Serializer>(v: &Option<PathBuf>, s: S) -> R<S> {
        path_or(v, "(off)", s)
    }
    pub fn jump_hosts<S: Serializer>(v: &JumpRules, s: S) -> R<S> {
        if v.chains.is_empty() && v.rules.is_empty() {
            return s.serialize_str("(none: devices are reached directly)");
        }
        if REVEAL.get() {
            s.collect_seq(v.describe(Some(&digest)))
        } else {
            s.collect_seq(v.describe(None))
        }
    }
    pub fn secs<S: Serializer>(v: &Duration, s: S) -> R<S> {
        s.serialize_u64(v.as_secs())
    }
    pub fn level<S: Serializer>(v: &log::LevelFilter, s: S) -> R<S> {
        s.serialize_str(match v {
            log::LevelFilter::Debug | log::LevelFilter::Trace => "DEBUG",
            log::LevelFilter::Info => "INFO",
            log::LevelFilter::Warn => "WARNING",
            _ => "ERROR",
        })
    }
    pub fn log_mode<S: Serializer>(v: &LogMode, s: S) -> R<S> {
        s.serialize_str(&format!("{v:?}").to_ascii_lowercase())
    }
    pub fn path<S: Serializer>(v: &Path, s: S) -> R<S> {
        s.serialize_str(&v.display().to_string())
    }
    fn path_or<S: Serializer>(v: &Option<PathBuf>, none: &str, s: S) -> R<S> {
        match v {
            Some(p) => path(p, s),
            None => s.serialize_str(none),
        }
    }
    pub fn cmd_log_dir<S: Serializer>(v: &Option<PathBuf>, s: S) -> R<S> {
        path_or(v, "(off)", s)
    }
    pub fn key_dir<S: Serializer>(v: &Option<PathBuf>, s: S) -> R<S> {
        path_or(v, "(off: no key authentication)", s)
    }
    /// None shows as null: the describer puts in the derived value.
    pub fn path_or_null<S: Serializer>(v: &Option<PathBuf>, s: S) -> R<S> {
        match v {
            Some(p) => path(p, s),
            None => s.serialize_none(),
        }
    }
    pub fn host_key_policy<S: Serializer>(v: &HostKeyPolicy, s: S) -> R<S> {
        s.serialize_str(v.name())
    }
    pub fn policy_override<S: Serializer>(any: &bool, s: S) -> R<S> {
        s.serialize_str(if *any { "any" } else { "stricter" })
    }
    pub fn mask_patterns<S: Serializer>(v: &Listed<Masker>, s: S) -> R<S> {
        if v.written.is_empty() {
            s.serialize_str("(built-in)")
        } else {
            v.serialize(s)
        }
    }
}

pub(super) use show::REVEAL;
