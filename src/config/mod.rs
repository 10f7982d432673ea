//! Configuration in two stages: what the user wrote (a YAML mapping, read key by key so every
//! message names its key), then a validated [`Config`] with defaults and durations resolved.

use crate::error::Error;
use crate::mask::Masker;
use crate::secret::Secret;
use crate::trust::{CommandRules, HostKeyPolicy, HostList};
use serde_norway::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/netdev-broker/config.yml";
pub const TOKEN_ENV: &str = "NETDEV_BROKER_API_TOKEN";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogMode {
    Stdout,
    File,
    Both,
}

#[derive(Debug, Clone)]
pub struct WebUser {
    pub username: String,
    pub password_hash: Secret,
}

/// The validated configuration the broker runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub api_token: Secret,
    pub log_level: log::LevelFilter,
    pub log_mode: LogMode,
    pub log_file: PathBuf,
    /// Default idle limit for sessions; zero means never reaped.
    pub session_timeout: Duration,
    pub stale_reaper: bool,
    /// `GET /metrics` answers without the API token.
    pub metrics_public: bool,
    pub reaper_interval: Duration,
    pub cmd_log_dir: Option<PathBuf>,
    pub web_secret_key: Secret,
    pub web_session_ttl: Duration,
    pub web_users: Vec<WebUser>,
    pub command_timeout: Duration,
    /// Idle time between CLI keepalives (a newline read back to the prompt); zero: off.
    pub keepalive_interval: Duration,
    /// TCP_USER_TIMEOUT of device connections: how long sent data may stay unacknowledged
    /// before the connection counts as dead (zero: the kernel's default, about 15 minutes).
    pub dead_peer_timeout: Duration,
    pub workers: usize,
    pub max_sessions: usize,
    pub max_connections: usize,
    /// Open HTTP connections per client address at most; None: half of max_connections.
    pub max_connections_per_client: Option<usize>,
    pub max_body_bytes: usize,
    pub max_output_bytes: usize,
    /// Output kept for all the commands of one exec together (`truncated` past it).
    pub max_exec_output_bytes: usize,
    pub state_dir: PathBuf,
    pub masker: Masker,
    /// The broker's known_hosts file (None: `state_dir/known_hosts`).
    pub known_hosts: Option<PathBuf>,
    pub host_key_policy: HostKeyPolicy,
    /// May a session ask for a weaker host-key policy than the config's?
    pub host_key_policy_override_any: bool,
    /// Key files for key auth must lie inside this directory (None: key auth off).
    pub key_dir: Option<PathBuf>,
    pub allowed_hosts: HostList,
    /// Hosts whose sessions offer the legacy SHA-1 algorithms by default.
    pub legacy_hosts: HostList,
    /// Reverse proxies whose `X-Forwarded-For` names the dashboard's client (rate limit).
    pub trusted_proxies: HostList,
    /// Host names the broker answers to on token-less routes besides its bind address,
    /// `localhost` and IP addresses (the DNS-rebinding guard); lower case, no trailing dot.
    pub server_names: Vec<String>,
    pub commands: CommandRules,
    /// Where the config came from (None: defaults and flags only).
    pub source: Option<PathBuf>,
    /// The list-valued keys as written (allowed_hosts, denied_commands, mask_patterns...), for
    /// `check-config` and for what a reload changed.
    pub lists: std::collections::BTreeMap<String, Vec<String>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".into(),
            port: 8765,
            api_token: Secret::default(),
            log_level: log::LevelFilter::Info,
            log_mode: LogMode::Stdout,
            log_file: "/var/log/netdev-broker/netdev-broker.log".into(),
            session_timeout: Duration::from_secs(300),
            stale_reaper: true,
            metrics_public: false,
            reaper_interval: Duration::from_secs(60),
            cmd_log_dir: None,
            web_secret_key: Secret::default(),
            web_session_ttl: Duration::from_secs(3600),
            web_users: Vec::new(),
            command_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(60),
            dead_peer_timeout: Duration::from_secs(120),
            workers: default_workers(),
            max_sessions: 1000,
            max_connections: 512,
            max_connections_per_client: None,
            max_body_bytes: 1 << 20,
            max_output_bytes: 16 << 20,
            max_exec_output_bytes: 64 << 20,
            state_dir: "/var/lib/netdev-broker".into(),
            masker: Masker::default(),
            known_hosts: None,
            host_key_policy: HostKeyPolicy::AcceptNew,
            host_key_policy_override_any: false,
            key_dir: None,
            allowed_hosts: HostList::default(),
            legacy_hosts: HostList::default(),
            trusted_proxies: HostList::default(),
            server_names: Vec::new(),
            commands: CommandRules::default(),
            source: None,
            lists: Default::default(),
        }
    }
}

/// Workers only parse JSON and route; they never wait on a device. Two per core, at least 4.
fn default_workers() -> usize {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    (cores * 2).clamp(4, 64)
}

/// Values given on the command line; they override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub host: Option<String>,
    pub port: Option<String>,
    pub api_token: Option<Secret>,
    pub log_level: Option<String>,
}

const KNOWN_KEYS: &[&str] = &[
    "host",
    "port",
    "api_token",
    "log_level",
    "log_mode",
    "log_file",
    "session_timeout",
    "stale_reaper",
    "metrics_public",
    "reaper_interval",
    "cmd_log_dir",
    "web_secret_key",
    "web_session_ttl",
    "web_users",
    "command_timeout",
    "keepalive_interval",
    "dead_peer_timeout",
    "workers",
    "max_sessions",
    "max_connections",
    "max_connections_per_client",
    "max_body_bytes",
    "max_output_bytes",
    "max_exec_output_bytes",
    "state_dir",
    "mask_patterns",
    "known_hosts",
    "host_key_policy",
    "host_key_policy_override",
    "key_dir",
    "allowed_hosts",
    "legacy_hosts",
    "trusted_proxies",
    "server_names",
    "denied_commands",
    "allowed_commands",
    "metrics_public",
];

/// The result of loading: the config plus warnings to log once logging is up.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
    /// Keys of the file that hold secrets (api_token, web_secret_key, web_users).
    pub secret_keys: Vec<String>,
}

/// Load the file (explicit path, else the default path if it exists, else none), apply the
/// environment token and the command-line overrides, validate.
pub fn load(ov: &Overrides, env_token: Option<String>) -> Result<Loaded, Error> {
    let path: Option<PathBuf> = match &ov.config {
        Some(p) => Some(p.clone()),
        None if Path::new(DEFAULT_CONFIG_PATH).exists() => Some(DEFAULT_CONFIG_PATH.into()),
        None => None,
    };
    let text = match &path {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| Error::Config(format!("cannot read config file {}: {e}", p.display())))?,
        None => String::new(),
    };
    let mut loaded = from_yaml(&text)?;
    loaded.config.source = path;
    let c = &mut loaded.config;
    if let Some(t) = env_token.filter(|t| !t.is_empty()) {
        c.api_token = Secret::new(t);
    }
    if let Some(h) = &ov.host {
        c.host = h.clone();
    }
    if let Some(p) = &ov.port {
        c.port = parse_port(&Value::String(p.clone()))
            .map_err(|m| Error::Config(format!("--port: {m}")))?;
    }
    if let Some(t) = &ov.api_token {
        if !t.is_empty() {
            c.api_token = t.clone();
        }
    }
    if let Some(l) = &ov.log_level {
        c.log_level = parse_level(l).map_err(|m| Error::Config(format!("--log-level: {m}")))?;
    }
    validate(c)?;
    Ok(loaded)
}

/// Shortest `web_secret_key` accepted, in bytes: the HMAC-SHA256 key of the login cookies.
pub const MIN_WEB_SECRET_KEY: usize = 32;

/// Keys whose values are secrets: masked by `check-config`, and a file holding any of them must
/// not be readable by other users.
pub const SECRET_KEYS: &[&str] = &["api_token", "web_secret_key", "web_users"];

/// Keys a reload (SIGHUP) applies to the running broker; every other key needs a restart.
pub const LIVE_KEYS: &[&str] = &[
    "api_token",
    "log_level",
    "session_timeout",
    "stale_reaper",
    "reaper_interval",
    "web_secret_key",
    "web_session_ttl",
    "web_users",
    "command_timeout",
    "host_key_policy",
    "host_key_policy_override",
    "key_dir",
    "allowed_hosts",
    "legacy_hosts",
    "trusted_proxies",
    "server_names",
    "denied_commands",
    "allowed_commands",
];

impl Config {
    /// What the broker runs with, one `(key, value)` per known key, secrets masked.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let path = |p: &Option<PathBuf>, none: &str| match p {
            Some(p) => p.display().to_string(),
            None => none.to_string(),
        };
        let secret = |s: &Secret| {
            if s.is_empty() {
                "(not set)"
            } else {
                "********"
            }
            .to_string()
        };
        let level = match self.log_level {
            log::LevelFilter::Debug | log::LevelFilter::Trace => "DEBUG",
            log::LevelFilter::Info => "INFO",
            log::LevelFilter::Warn => "WARNING",
            _ => "ERROR",
        };
        KNOWN_KEYS
            .iter()
            .map(|&k| {
                let v = match k {
                    "host" => self.host.clone(),
                    "port" => self.port.to_string(),
                    "api_token" => secret(&self.api_token),
                    "log_level" => level.to_string(),
                    "log_mode" => format!("{:?}", self.log_mode).to_ascii_lowercase(),
                    "log_file" => self.log_file.display().to_string(),
                    "session_timeout" => self.session_timeout.as_secs().to_string(),
                    "stale_reaper" => self.stale_reaper.to_string(),
                    "metrics_public" => self.metrics_public.to_string(),
                    "reaper_interval" => self.reaper_interval.as_secs().to_string(),
                    "cmd_log_dir" => path(&self.cmd_log_dir, "(off)"),
                    "web_secret_key" => secret(&self.web_secret_key),
                    "web_session_ttl" => self.web_session_ttl.as_secs().to_string(),
                    "web_users" => match self.web_users.len() {
                        0 => "(none: dashboard off)".to_string(),
                        _ => format!(
                            "{} (password hashes ********)",
                            self.web_users
                                .iter()
                                .map(|u| u.username.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    },
                    "command_timeout" => self.command_timeout.as_secs().to_string(),
                    "keepalive_interval" => self.keepalive_interval.as_secs().to_string(),
                    "dead_peer_timeout" => self.dead_peer_timeout.as_secs().to_string(),
                    "workers" => self.workers.to_string(),
                    "max_sessions" => self.max_sessions.to_string(),
                    "max_connections" => self.max_connections.to_string(),
                    "max_connections_per_client" => match self.max_connections_per_client {
                        Some(_) => self
                            .connections_per_client(self.max_connections)
                            .to_string(),
                        None => format!(
                            "{} (half of max_connections)",
                            self.connections_per_client(self.max_connections)
                        ),
                    },
                    "max_body_bytes" => self.max_body_bytes.to_string(),
                    "max_output_bytes" => self.max_output_bytes.to_string(),
                    "max_exec_output_bytes" => self.max_exec_output_bytes.to_string(),
                    "state_dir" => self.state_dir.display().to_string(),
                    "known_hosts" => path(
                        &self.known_hosts,
                        &self.state_dir.join("known_hosts").display().to_string(),
                    ),
                    "host_key_policy" => self.host_key_policy.name().to_string(),
                    "host_key_policy_override" => if self.host_key_policy_override_any {
                        "any"
                    } else {
                        "stricter"
                    }
                    .to_string(),
                    "key_dir" => path(&self.key_dir, "(off: no key authentication)"),
                    _ => match self.lists.get(k) {
                        Some(l) if !l.is_empty() => format!("{l:?}"),
                        _ if k == "mask_patterns" => "(built-in)".to_string(),
                        _ => "[]".to_string(),
                    },
                };
                (k, v)
            })
            .collect()
    }
}

impl Config {
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

/// Keys that differ between two configs, split into (applied live, needing a restart).
pub fn changes(old: &Config, new: &Config) -> (Vec<&'static str>, Vec<&'static str>) {
    let (a, b) = (old.describe(), new.describe());
    let mut live = Vec::new();
    let mut restart = Vec::new();
    for ((k, v1), (_, v2)) in a.iter().zip(b.iter()) {
        // Secrets show masked: compare them themselves.
        let differs = match *k {
            "api_token" => old.api_token.expose() != new.api_token.expose(),
            "web_secret_key" => old.web_secret_key.expose() != new.web_secret_key.expose(),
            "web_users" => {
                old.web_users.len() != new.web_users.len()
                    || old.web_users.iter().zip(&new.web_users).any(|(x, y)| {
                        x.username != y.username
                            || x.password_hash.expose() != y.password_hash.expose()
                    })
            }
            _ => v1 != v2,
        };
        if differs {
            if LIVE_KEYS.contains(k) {
                live.push(*k);
            } else {
                restart.push(*k);
            }
        }
    }
    (live, restart)
}

/// The permission check of `check-config`: a file holding secrets must not be readable or
/// writable by other users (an error); group-writable is a warning.
pub fn check_permissions(path: &Path, secret_keys: &[String]) -> Result<Vec<String>, Error> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::Config(format!("cannot stat {}: {e}", path.display())))?;
    let mode = meta.permissions().mode() & 0o7777;
    let mut warnings = Vec::new();
    if mode & 0o007 != 0 && !secret_keys.is_empty() {
        return Err(Error::Config(format!(
            "{} has mode {mode:04o}: it holds {} and must not be readable or writable by other users (chmod 0640, owner root, group netdev-broker)",
            path.display(),
            secret_keys.join(", ")
        )));
    }
    if mode & 0o020 != 0 {
        warnings.push(format!(
            "{} has mode {mode:04o}: group-writable (0640 is enough: the broker only reads it)",
            path.display()
        ));
    }
    if mode & 0o002 != 0 {
        warnings.push(format!(
            "{} has mode {mode:04o}: anyone can change the broker's configuration",
            path.display()
        ));
    }
    Ok(warnings)
}

/// Parse a YAML document into a Config (no file, env or flags involved). Empty text = defaults.
pub fn from_yaml(text: &str) -> Result<Loaded, Error> {
    let mut c = Config::default();
    let mut warnings = Vec::new();
    let mut secret_keys = Vec::new();
    let (mut denied, mut allowed): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    let doc: Value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_norway::from_str(text)
            .map_err(|e| Error::Config(format!("config file is not valid YAML: {e}")))?
    };
    let map = match doc {
        Value::Null => serde_norway::Mapping::new(),
        Value::Mapping(m) => m,
        _ => {
            return Err(Error::Config(
                "config file must be a YAML mapping of keys to values".into(),
            ))
        }
    };
    for (k, v) in map {
        let key = match k.as_str() {
            Some(s) => s.to_string(),
            None => {
                warnings.push(format!("config: ignoring non-string key {k:?}"));
                continue;
            }
        };
        let bad = |m: String| Error::Config(format!("config key '{key}': {m}"));
        if v.is_null() && key != "web_users" && key != "cmd_log_dir" {
            continue; // `key:` with no value keeps the default
        }
        let empty = matches!(&v, Value::String(s) if s.is_empty())
            || matches!(&v, Value::Sequence(s) if s.is_empty());
        if SECRET_KEYS.contains(&key.as_str()) && !v.is_null() && !empty {
            secret_keys.push(key.clone());
        }
        match key.as_str() {
            "host" => c.host = string(&v).map_err(bad)?,
            "port" => c.port = parse_port(&v).map_err(bad)?,
            "api_token" => c.api_token = Secret::new(string(&v).map_err(bad)?),
            "log_level" => c.log_level = parse_level(&string(&v).map_err(bad)?).map_err(bad)?,
            "log_mode" => {
                c.log_mode = match string(&v).map_err(bad)?.to_ascii_lowercase().as_str() {
                    "stdout" => LogMode::Stdout,
                    "file" => LogMode::File,
                    "both" => LogMode::Both,
                    other => {
                        return Err(bad(format!("expected stdout, file or both, got '{other}'")))
                    }
                }
            }
            "log_file" => c.log_file = PathBuf::from(string(&v).map_err(bad)?),
            "session_timeout" => c.session_timeout = secs(&v, 0).map_err(bad)?,
            "stale_reaper" => c.stale_reaper = boolean(&v).map_err(bad)?,
            "metrics_public" => c.metrics_public = boolean(&v).map_err(bad)?,
            "reaper_interval" => c.reaper_interval = secs(&v, 1).map_err(bad)?,
            "cmd_log_dir" => {
                let s = if v.is_null() {
                    String::new()
                } else {
                    string(&v).map_err(bad)?
                };
                c.cmd_log_dir = if s.trim().is_empty() {
                    None
                } else {
                    Some(PathBuf::from(s))
                };
            }
            "web_secret_key" => {
                let k = string(&v).map_err(bad)?;
                if !k.is_empty() && k.len() < MIN_WEB_SECRET_KEY {
                    return Err(bad(format!(
                        "must be at least {MIN_WEB_SECRET_KEY} bytes, got {} (generate one: openssl rand -hex 32)",
                        k.len()
                    )));
                }
                c.web_secret_key = Secret::new(k);
            }
            "web_session_ttl" => c.web_session_ttl = secs(&v, 1).map_err(bad)?,
            "web_users" => c.web_users = web_users(&v).map_err(bad)?,
            "command_timeout" => c.command_timeout = secs(&v, 1).map_err(bad)?,
            "keepalive_interval" => c.keepalive_interval = secs(&v, 0).map_err(bad)?,
            "dead_peer_timeout" => {
                c.dead_peer_timeout = int_in(&v, 0, 86_400)
                    .map(Duration::from_secs)
                    .map_err(bad)?
            }
            "workers" => {
                c.workers = int_in(&v, 1, 1024).map_err(bad)? as usize;
                warnings.push(
                    "config: 'workers' is no longer used (each HTTP connection's own thread \
                     handles its requests; max_connections bounds them); it can be removed"
                        .into(),
                );
            }
            "max_sessions" => c.max_sessions = int_in(&v, 1, 100_000).map_err(bad)? as usize,
            "max_connections" => c.max_connections = int_in(&v, 8, 100_000).map_err(bad)? as usize,
            "max_connections_per_client" => {
                c.max_connections_per_client = Some(int_in(&v, 1, 100_000).map_err(bad)? as usize)
            }
            "max_body_bytes" => c.max_body_bytes = int_in(&v, 1024, 1 << 30).map_err(bad)? as usize,
            "max_output_bytes" => {
                c.max_output_bytes = int_in(&v, 1024, 1 << 32).map_err(bad)? as usize
            }
            "max_exec_output_bytes" => {
                c.max_exec_output_bytes = int_in(&v, 1024, 1 << 34).map_err(bad)? as usize
            }
            "state_dir" => c.state_dir = PathBuf::from(string(&v).map_err(bad)?),
            "known_hosts" => {
                let s = string(&v).map_err(bad)?;
                c.known_hosts = (!s.trim().is_empty()).then(|| PathBuf::from(s));
            }
            "host_key_policy" => {
                c.host_key_policy = HostKeyPolicy::parse(&string(&v).map_err(bad)?).map_err(bad)?
            }
            "host_key_policy_override" => {
                c.host_key_policy_override_any = match string(&v).map_err(bad)?.as_str() {
                    "stricter" => false,
                    "any" => true,
                    o => return Err(bad(format!("expected 'stricter' or 'any', got '{o}'"))),
                }
            }
            "key_dir" => {
                let s = string(&v).map_err(bad)?;
                c.key_dir = (!s.trim().is_empty()).then(|| PathBuf::from(s));
            }
            "allowed_hosts" => {
                let l = list(&v).map_err(bad)?;
                c.allowed_hosts = HostList::parse(&l).map_err(bad)?;
                c.lists.insert(key.clone(), l);
            }
            "legacy_hosts" => {
                let l = list(&v).map_err(bad)?;
                c.legacy_hosts = HostList::parse(&l).map_err(bad)?;
                c.lists.insert(key.clone(), l);
            }
            "trusted_proxies" => {
                let raw = list(&v).map_err(bad)?;
                let l = HostList::parse(&raw).map_err(bad)?;
                if l.has_globs() {
                    return Err(bad("expected addresses or CIDRs, not names".into()));
                }
                c.trusted_proxies = l;
                c.lists.insert(key.clone(), raw);
            }
            "server_names" => {
                let raw = list(&v).map_err(bad)?;
                let mut names = Vec::new();
                for n in &raw {
                    let name = n.trim().trim_end_matches('.').to_ascii_lowercase();
                    if name.is_empty()
                        || !name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
                    {
                        return Err(bad(format!(
                            "expected host names such as broker.example.net (no port), got {n:?}"
                        )));
                    }
                    names.push(name);
                }
                c.server_names = names;
                c.lists.insert(key.clone(), raw);
            }
            "denied_commands" | "allowed_commands" => {
                let l = list(&v).map_err(bad)?;
                for p in &l {
                    crate::platform::compile(p).map_err(bad)?;
                }
                if key.as_str() == "denied_commands" {
                    denied = l;
                } else {
                    allowed = l;
                }
                c.commands = CommandRules::new(&denied, &allowed).map_err(bad)?;
                c.lists.insert("denied_commands".into(), denied.clone());
                c.lists.insert("allowed_commands".into(), allowed.clone());
            }
            "mask_patterns" => {
                let list = match &v {
                    Value::Sequence(s) => s
                        .iter()
                        .map(string)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(bad)?,
                    _ => return Err(bad("expected a list of regular expressions".into())),
                };
                c.masker = Masker::new(&list).map_err(bad)?;
                c.lists.insert(key.clone(), list);
            }
            _ => {
                warnings.push(format!(
                    "config: unknown key '{key}' ignored (known keys: {})",
                    KNOWN_KEYS.join(", ")
                ));
            }
        }
    }
    Ok(Loaded {
        config: c,
        warnings,
        secret_keys,
    })
}

fn validate(c: &Config) -> Result<(), Error> {
    if c.api_token.is_empty() {
        return Err(Error::Config(format!(
            "config key 'api_token' is required: set it in the config file, in ${TOKEN_ENV}, or with --api-token"
        )));
    }
    if c.host.trim().is_empty() {
        return Err(Error::Config("config key 'host': must not be empty".into()));
    }
    if !c.web_users.is_empty() && c.web_secret_key.is_empty() {
        return Err(Error::Config(
            "config key 'web_secret_key' is required when web_users is set".into(),
        ));
    }
    Ok(())
}

fn list(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Sequence(s) => s.iter().map(string).collect(),
        other => Err(format!("expected a list, got {}", kind(other))),
    }
}

fn string(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("expected a string, got {}", kind(other))),
    }
}

fn kind(v: &Value) -> &'static str {
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
fn int_in(v: &Value, min: u64, max: u64) -> Result<u64, String> {
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

fn secs(v: &Value, min: u64) -> Result<Duration, String> {
    int_in(v, min, 10 * 365 * 86_400).map(Duration::from_secs)
}

fn parse_port(v: &Value) -> Result<u16, String> {
    int_in(v, 0, 65_535).map(|n| n as u16)
}

fn boolean(v: &Value) -> Result<bool, String> {
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

fn web_users(v: &Value) -> Result<Vec<WebUser>, String> {
    let seq = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Sequence(s) => s,
        other => {
            return Err(format!(
                "expected a list of {{username, password_hash}}, got {}",
                kind(other)
            ))
        }
    };
    let mut out = Vec::new();
    for (i, item) in seq.iter().enumerate() {
        let get = |k: &str| item.get(k).map(string).transpose();
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
        out.push(WebUser {
            username,
            password_hash: Secret::new(hash),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(yaml: &str) -> String {
        match from_yaml(yaml) {
            Ok(_) => panic!("expected an error for {yaml:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_match_the_seed() {
        let c = from_yaml("").unwrap().config;
        assert_eq!(c.host, "127.0.0.1");
        assert_eq!(c.port, 8765);
        assert_eq!(c.log_level, log::LevelFilter::Info);
        assert_eq!(c.log_mode, LogMode::Stdout);
        assert_eq!(c.session_timeout, Duration::from_secs(300));
        assert!(c.stale_reaper);
        assert_eq!(c.reaper_interval, Duration::from_secs(60));
        assert!(c.cmd_log_dir.is_none());
        assert_eq!(c.web_session_ttl, Duration::from_secs(3600));
        assert_eq!(c.command_timeout, Duration::from_secs(30));
        assert_eq!(c.max_sessions, 1000);
        assert_eq!(c.max_body_bytes, 1 << 20);
        assert_eq!(c.max_output_bytes, 16 << 20);
        assert_eq!(c.max_exec_output_bytes, 64 << 20);
        assert_eq!(c.max_connections_per_client, None);
        assert_eq!(c.connections_per_client(512), 256);
        assert_eq!(c.connections_per_client(48), 24);
    }

    #[test]
    fn connections_per_client_is_bounded_by_the_cap() {
        let c = from_yaml("max_connections: 100\nmax_connections_per_client: 10")
            .unwrap()
            .config;
        assert_eq!(c.connections_per_client(100), 10);
        assert_eq!(c.connections_per_client(8), 8);
        assert!(c
            .describe()
            .contains(&("max_connections_per_client", "10".to_string())));
        let c = from_yaml("max_connections: 100").unwrap().config;
        assert!(c.describe().contains(&(
            "max_connections_per_client",
            "50 (half of max_connections)".to_string()
        )));
        assert!(err("max_connections_per_client: 0").contains("'max_connections_per_client'"));
    }

    #[test]
    fn server_names_are_names() {
        let c = from_yaml("server_names: [Jump.Example.NET., broker]")
            .unwrap()
            .config;
        assert_eq!(c.server_names, ["jump.example.net", "broker"]);
        assert!(err("server_names: ['jump:8765']").contains("'server_names'"));
        assert!(err("server_names: ['']").contains("'server_names'"));
        assert!(err("server_names: jump").contains("'server_names'"));
        assert!(LIVE_KEYS.contains(&"server_names"));
    }

    #[test]
    fn seed_example_parses() {
        let y = r#"
host: 127.0.0.1 # bind address
port: 8765
api_token: "abc"
log_level: WARNING
log_mode: both
log_file: /tmp/x.log
session_timeout: 300
stale_reaper: true
reaper_interval: 60
cmd_log_dir: ""
web_secret_key: ""
web_session_ttl: 3600
"#;
        let l = from_yaml(y).unwrap();
        assert_eq!(l.config.log_level, log::LevelFilter::Warn);
        assert_eq!(l.config.log_mode, LogMode::Both);
        assert!(l.warnings.is_empty());
    }

    #[test]
    fn errors_name_the_key() {
        assert!(err("port: abc").contains("'port'"));
        assert!(err("port: 70000").contains("'port'"));
        assert!(err("log_level: LOUD").contains("'log_level'"));
        assert!(err("log_mode: syslog").contains("'log_mode'"));
        assert!(err("stale_reaper: maybe").contains("'stale_reaper'"));
        assert!(err("session_timeout: -5").contains("'session_timeout'"));
        assert!(err("web_users: [{username: a, password_hash: plain}]").contains("bcrypt"));
        assert!(err("- a\n- b").contains("mapping"));
        // A short cookie key is refused, naming the key and the minimum; empty means unset.
        let short = err("web_secret_key: 0123456789abcdef0123456789abcde");
        assert!(
            short.contains("'web_secret_key'") && short.contains("at least 32 bytes"),
            "{short}"
        );
        let key = "web_secret_key: 0123456789abcdef0123456789abcdef";
        assert!(from_yaml(key).is_ok());
        assert!(from_yaml("web_secret_key: ''").is_ok());
    }

    #[test]
    fn numeric_strings_and_case_are_accepted() {
        let c = from_yaml("port: '9000'\nlog_level: debug\nsession_timeout: '0'")
            .unwrap()
            .config;
        assert_eq!(c.port, 9000);
        assert_eq!(c.log_level, log::LevelFilter::Debug);
        assert_eq!(c.session_timeout, Duration::ZERO);
    }

    #[test]
    fn shipped_example_parses_without_warnings() {
        let l = from_yaml(include_str!("../../config.example.yml")).unwrap();
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        assert_eq!(l.config.port, 8765);
    }

    #[test]
    fn changes_split_live_and_restart_keys() {
        let a = from_yaml("api_token: a\nport: 1\ndenied_commands: [x]")
            .unwrap()
            .config;
        let b = from_yaml("api_token: b\nport: 2\ndenied_commands: [y]\nlog_level: debug")
            .unwrap()
            .config;
        let (live, restart) = changes(&a, &b);
        assert_eq!(live, ["api_token", "log_level", "denied_commands"]);
        assert_eq!(restart, ["port"]);
        assert_eq!(changes(&a, &a.clone()), (vec![], vec![]));
        assert!(a
            .describe()
            .contains(&("api_token", "********".to_string())));
    }

    #[test]
    fn unknown_keys_warn() {
        let l = from_yaml("colour: blue").unwrap();
        assert_eq!(l.warnings.len(), 1);
        assert!(l.warnings[0].contains("'colour'"));
    }

    #[test]
    fn token_is_required_and_overrides_apply() {
        let ov = Overrides {
            config: Some("/nonexistent/x.yml".into()),
            ..Default::default()
        };
        assert!(load(&ov, None)
            .unwrap_err()
            .to_string()
            .contains("cannot read"));
        let dir = std::env::temp_dir().join(format!("ndb-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.yml");
        std::fs::write(&p, "port: 1000\n").unwrap();
        let mut ov = Overrides {
            config: Some(p.clone()),
            ..Default::default()
        };
        assert!(load(&ov, None)
            .unwrap_err()
            .to_string()
            .contains("api_token"));
        let c = load(&ov, Some("envtok".into())).unwrap().config;
        assert_eq!(c.api_token.expose(), "envtok");
        ov.api_token = Some(Secret::new("clitok"));
        ov.port = Some("2000".into());
        let c = load(&ov, Some("envtok".into())).unwrap().config;
        assert_eq!(c.api_token.expose(), "clitok");
        assert_eq!(c.port, 2000);
        std::fs::remove_dir_all(&dir).ok();
    }
}
