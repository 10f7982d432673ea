//! Configuration in two stages: what the user wrote, read by serde into the key declarations
//! of [`keys`] (every message names its key), then a validated [`Config`] whose keys are split
//! by class: [`Live`] (a reload swaps it whole) and [`Restart`] (read at start only).
//!
//! To add a key: a field in [`Live`] or [`Restart`] with its default and reader, and its line
//! in config.example.yml (`tests::every_key_is_declared_once` checks both).

mod describe;
mod error;
mod keys;
mod parse;
mod perm;

pub use describe::{changes, documented_keys, keys, Class};
pub use error::ConfigError;
pub use keys::{Listed, Live, Restart};
pub use parse::parse_level;
pub use perm::{check_permissions, dir_usable, ensure_state};

use crate::policy::CommandRules;
use crate::secret::Secret;
use serde_norway::{Mapping, Value};
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/netdev-broker/config.yml";
pub const TOKEN_ENV: &str = "NETDEV_BROKER_API_TOKEN";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/netdev-broker";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogMode {
    #[default]
    Stdout,
    File,
    Both,
}

#[derive(Debug, Clone)]
pub struct WebUser {
    pub username: String,
    pub password_hash: Secret,
    /// `viewer` (looks) or `admin` (may close sessions too; the default).
    pub role: crate::policy::Role,
}

/// The validated configuration the broker runs with.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// What a reload applies.
    pub live: Live,
    /// What needs a restart: a reload keeps the running values.
    pub restart: Restart,
    /// Where the config came from (None: defaults and flags only).
    pub source: Option<PathBuf>,
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

/// Keys no longer used: accepted (and still checked) with a warning.
const RETIRED: &[(&str, &str)] = &[(
    "workers",
    "config: 'workers' is no longer used (each HTTP connection's own thread \
     handles its requests; max_connections bounds them); it can be removed",
)];

/// The result of loading: the config plus warnings to log once logging is up.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
    /// What loading decided by itself, to log at INFO (a per-user state_dir).
    pub notes: Vec<String>,
    /// Keys of the file that hold secrets (api_token, web_secret_key, web_users).
    pub secret_keys: Vec<String>,
}

/// Load the file (explicit path, else the default path if it exists, else none), apply the
/// environment token and the command-line overrides, validate.
pub fn load(ov: &Overrides, env_token: Option<String>) -> Result<Loaded, ConfigError> {
    let path: Option<PathBuf> = match &ov.config {
        Some(p) => Some(p.clone()),
        None if Path::new(DEFAULT_CONFIG_PATH).exists() => Some(DEFAULT_CONFIG_PATH.into()),
        None => None,
    };
    let text = match &path {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| ConfigError::io(format!("cannot read config file {}", p.display()), e))?,
        None => String::new(),
    };
    let mut loaded = from_yaml(&text)?;
    if path.is_none() {
        if let Some(note) = per_user_state_dir(&mut loaded.config.restart) {
            loaded.notes.push(note);
        }
    }
    loaded.config.source = path;
    let c = &mut loaded.config;
    if let Some(t) = env_token.filter(|t| !t.is_empty()) {
        c.live.api_token = Secret::new(t);
    }
    if let Some(h) = &ov.host {
        c.restart.host = h.clone();
    }
    if let Some(p) = &ov.port {
        c.restart.port = parse::int_in(&Value::String(p.clone()), 0, 65_535)
            .map(|n| n as u16)
            .map_err(|m| ConfigError::new(format!("--port: {m}")).with_key("port"))?;
    }
    if let Some(t) = &ov.api_token {
        if !t.is_empty() {
            c.live.api_token = t.clone();
        }
    }
    if let Some(l) = &ov.log_level {
        c.live.log_level = parse_level(l)
            .map_err(|m| ConfigError::new(format!("--log-level: {m}")).with_key("log_level"))?;
    }
    validate(c)?;
    Ok(loaded)
}

/// With no config file at all, a user other than root who cannot use the default state_dir
/// (/var/lib is root's) gets one of their own: $XDG_STATE_HOME/netdev-broker, else
/// ~/.local/state/netdev-broker. Returns the note saying so.
fn per_user_state_dir(c: &mut Restart) -> Option<String> {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if root || c.state_dir != Path::new(DEFAULT_STATE_DIR) || dir_usable(&c.state_dir).is_ok() {
        return None;
    }
    let abs = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    let base = std::env::var_os("XDG_STATE_HOME")
        .and_then(abs)
        .or_else(|| Some(abs(std::env::var_os("HOME")?)?.join(".local/state")))?;
    c.state_dir = base.join("netdev-broker");
    Some(format!(
        "no config file and {DEFAULT_STATE_DIR} is not usable by this user: state_dir is {}",
        c.state_dir.display()
    ))
}

/// Shortest `web_secret_key` accepted, in bytes: the HMAC-SHA256 key of the login cookies.
pub const MIN_WEB_SECRET_KEY: usize = 32;

/// Keys whose values are secrets: masked by `check-config`, and a file holding any of them must
/// not be readable by other users.
pub const SECRET_KEYS: &[&str] = &["api_token", "web_secret_key", "web_users", "jump_hosts"];

/// Read one class's keys from the file's mapping (the other class's keys are ignored there).
/// The error is (key, message); the key is "." for an error outside any key.
fn read<T: serde::de::DeserializeOwned>(
    map: &Mapping,
    ignored: &mut Vec<String>,
) -> Result<T, (String, String)> {
    let mut note = |p: serde_ignored::Path| ignored.push(p.to_string());
    let de = serde_ignored::Deserializer::new(Value::Mapping(map.clone()), &mut note);
    serde_path_to_error::deserialize(de)
        .map_err(|e| (e.path().to_string(), e.into_inner().to_string()))
}

/// One class's keys from a mapping of key names to values (an empty one: the defaults).
fn from_map<T: serde::de::DeserializeOwned>(map: &Mapping) -> Result<T, (String, String)> {
    read(map, &mut Vec::new())
}

/// Parse a YAML document into a Config (no file, env or flags involved). Empty text = defaults.
pub fn from_yaml(text: &str) -> Result<Loaded, ConfigError> {
    let mut warnings = Vec::new();
    let mut secret_keys = Vec::new();
    let doc: Value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_norway::from_str(text)
            .map_err(|e| ConfigError::new(format!("config file is not valid YAML: {e}")))?
    };
    let written = match doc {
        Value::Null => Mapping::new(),
        Value::Mapping(m) => m,
        _ => {
            return Err(ConfigError::new(
                "config file must be a YAML mapping of keys to values",
            ))
        }
    };
    // The keys in file order; `key:` with no value keeps the default.
    let mut map = Mapping::new();
    let mut order = Vec::new();
    for (k, v) in written {
        let Some(key) = k.as_str().map(str::to_string) else {
            warnings.push(format!("config: ignoring non-string key {k:?}"));
            continue;
        };
        if v.is_null() {
            continue;
        }
        let empty = matches!(&v, Value::String(s) if s.is_empty())
            || matches!(&v, Value::Sequence(s) if s.is_empty());
        if SECRET_KEYS.contains(&key.as_str()) && !empty {
            secret_keys.push(key.clone());
        }
        order.push(key.clone());
        map.insert(Value::String(key), v);
    }
    let (mut not_live, mut not_restart) = (Vec::new(), Vec::new());
    let live = read::<Live>(&map, &mut not_live);
    let restart = read::<Restart>(&map, &mut not_restart);
    let (mut live, restart) = match (live, restart) {
        (Ok(l), Ok(r)) => (l, r),
        // Of two bad keys, the first in the file is named.
        (l, r) => {
            let pos = |k: &str| order.iter().position(|o| o == k).unwrap_or(usize::MAX);
            let (key, m) = [l.err(), r.err()]
                .into_iter()
                .flatten()
                .min_by_key(|(k, _)| pos(k))
                .unwrap_or_default();
            return Err(match key.as_str() {
                "." => ConfigError::new(format!("config file: {m}")),
                _ => ConfigError::key(&key, m),
            });
        }
    };
    live.commands = CommandRules::new(&live.denied_commands, &live.allowed_commands)
        .map_err(|m| ConfigError::key("denied_commands", m))?;
    for key in &order {
        if let Some((_, w)) = RETIRED.iter().find(|(r, _)| r == key) {
            warnings.push(w.to_string());
        } else if not_live.contains(key) && not_restart.contains(key) {
            warnings.push(format!(
                "config: unknown key '{key}' ignored (known keys: {})",
                describe::keys().join(", ")
            ));
        }
    }
    Ok(Loaded {
        config: Config {
            live,
            restart,
            source: None,
        },
        warnings,
        notes: Vec::new(),
        secret_keys,
    })
}

fn validate(c: &Config) -> Result<(), ConfigError> {
    if c.live.api_token.is_empty() && c.live.api_tokens.is_empty() {
        return Err(ConfigError::about(
            "api_token",
            format!(
                "config key 'api_token' or 'api_tokens' is required: set api_token in the config file, in ${TOKEN_ENV}, or with --api-token, or list named tokens under api_tokens (netdev-broker token new)"
            ),
        ));
    }
    let default = crate::policy::DEFAULT_TOKEN_NAME;
    if !c.live.api_token.is_empty() && c.live.api_tokens.iter().any(|t| &*t.name == default) {
        return Err(ConfigError::key(
            "api_tokens",
            format!("the name {default:?} belongs to api_token; give this entry another name, or remove api_token"),
        ));
    }
    if c.restart.host.trim().is_empty() {
        return Err(ConfigError::key("host", "must not be empty"));
    }
    if !c.live.web_users.is_empty() && c.live.web_secret_key.is_empty() {
        return Err(ConfigError::about(
            "web_secret_key",
            "config key 'web_secret_key' is required when web_users is set",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn err(yaml: &str) -> String {
        match from_yaml(yaml) {
            Ok(_) => panic!("expected an error for {yaml:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_match_the_seed() {
        let c = from_yaml("").unwrap().config;
        assert_eq!(c.restart.host, "127.0.0.1");
        assert_eq!(c.restart.port, 8765);
        assert_eq!(c.live.log_level, log::LevelFilter::Info);
        assert_eq!(c.restart.log_mode, LogMode::Stdout);
        assert_eq!(c.live.session_timeout, Duration::from_secs(300));
        assert!(c.live.stale_reaper);
        assert_eq!(c.live.reaper_interval, Duration::from_secs(60));
        assert!(c.restart.cmd_log_dir.is_none());
        assert_eq!(c.live.web_session_ttl, Duration::from_secs(3600));
        assert_eq!(c.live.command_timeout, Duration::from_secs(30));
        assert_eq!(c.restart.max_sessions, 1000);
        assert_eq!(c.restart.max_body_bytes, 1 << 20);
        assert_eq!(c.restart.max_output_bytes, 16 << 20);
        assert_eq!(c.restart.max_exec_output_bytes, 64 << 20);
        assert_eq!(c.restart.max_connections_per_client, None);
        assert_eq!(c.restart.connections_per_client(512), 256);
        assert_eq!(c.restart.connections_per_client(48), 24);
    }

    #[test]
    fn connections_per_client_is_bounded_by_the_cap() {
        let c = from_yaml("max_connections: 100\nmax_connections_per_client: 10")
            .unwrap()
            .config;
        assert_eq!(c.restart.connections_per_client(100), 10);
        assert_eq!(c.restart.connections_per_client(8), 8);
        assert!(c
            .describe()
            .contains(&("max_connections_per_client".into(), "10".to_string())));
        let c = from_yaml("max_connections: 100").unwrap().config;
        assert!(c.describe().contains(&(
            "max_connections_per_client".into(),
            "50 (half of max_connections)".to_string()
        )));
        assert!(err("max_connections_per_client: 0").contains("'max_connections_per_client'"));
    }

    #[test]
    fn server_names_are_names() {
        let c = from_yaml("server_names: [Jump.Example.NET., broker]")
            .unwrap()
            .config;
        assert_eq!(c.live.server_names.parsed, ["jump.example.net", "broker"]);
        assert_eq!(c.live.server_names.written, ["Jump.Example.NET.", "broker"]);
        assert!(err("server_names: ['jump:8765']").contains("'server_names'"));
        assert!(err("server_names: ['']").contains("'server_names'"));
        assert!(err("server_names: jump").contains("'server_names'"));
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
        assert_eq!(l.config.live.log_level, log::LevelFilter::Warn);
        assert_eq!(l.config.restart.log_mode, LogMode::Both);
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
        assert_eq!(c.restart.port, 9000);
        assert_eq!(c.live.log_level, log::LevelFilter::Debug);
        assert_eq!(c.live.session_timeout, Duration::ZERO);
    }

    #[test]
    fn shipped_example_parses_without_warnings() {
        let l = from_yaml(describe::EXAMPLE).unwrap();
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        assert_eq!(l.config.restart.port, 8765);
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
            .contains(&("api_token".into(), "********".to_string())));
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
        assert_eq!(c.live.api_token.expose(), "envtok");
        ov.api_token = Some(Secret::new("clitok"));
        ov.port = Some("2000".into());
        let c = load(&ov, Some("envtok".into())).unwrap().config;
        assert_eq!(c.live.api_token.expose(), "clitok");
        assert_eq!(c.restart.port, 2000);
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Adding a key takes a field in `Live` or `Restart` (which states its class) and a line in
    /// config.example.yml. This fails if a key has no default, no doc line, or two classes.
    #[test]
    fn every_key_is_declared_once() {
        // A default: each class reads from an empty mapping.
        let live = from_map::<Live>(&Mapping::new());
        let restart = from_map::<Restart>(&Mapping::new());
        assert!(
            live.is_ok(),
            "a Live key has no #[serde(default)]: {live:?}"
        );
        assert!(
            restart.is_ok(),
            "a Restart key has no #[serde(default)]: {restart:?}"
        );
        let entries = describe::entries(&Config::default(), false);
        let mut seen = std::collections::BTreeSet::new();
        let documented = documented_keys(true);
        for (k, _, _) in &entries {
            // One class: a name in both would be read into both.
            assert!(seen.insert(k.clone()), "key '{k}' is declared twice");
            assert!(
                documented.contains(&k.as_str()),
                "key '{k}' has no line in config.example.yml (`{k}: ...` or `# {k}: ...`)"
            );
        }
        // And the other way: every key the example sets is a key.
        for k in documented_keys(false) {
            assert!(seen.contains(k), "config.example.yml sets '{k}', not a key");
        }
    }

    #[test]
    fn classes_are_as_before_and_metrics_public_is_live() {
        let class = |key: &str| {
            describe::entries(&Config::default(), false)
                .into_iter()
                .find(|(k, _, _)| k == key)
                .map(|(_, c, _)| c)
        };
        for k in [
            "api_token",
            "log_level",
            "session_timeout",
            "stale_reaper",
            "metrics_public",
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
        ] {
            assert_eq!(class(k), Some(Class::Live), "{k}");
        }
        for k in [
            "host",
            "port",
            "log_mode",
            "log_file",
            "cmd_log_dir",
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
        ] {
            assert_eq!(class(k), Some(Class::Restart), "{k}");
        }
        // Once, and live: a reload applies it and says so once.
        let a = from_yaml("").unwrap().config;
        let b = from_yaml("metrics_public: true").unwrap().config;
        assert!(b.live.metrics_public);
        assert_eq!(
            changes(&a, &b),
            (vec!["metrics_public".to_string()], vec![])
        );
        let listed = a.describe();
        assert_eq!(
            listed.iter().filter(|(k, _)| k == "metrics_public").count(),
            1
        );
    }

    #[test]
    fn every_accepted_form_is_still_accepted() {
        let c = from_yaml(
            "port: '9000'\nsession_timeout: '600'\nstale_reaper: 'no'\nmetrics_public: yes\n\
             max_sessions: ' 12 '\nhost_key_policy: STRICT\nlog_mode: FILE\nhost: 10\n\
             web_users:\ncmd_log_dir:\nkey_dir: '  '\nallowed_hosts:\nworkers: '8'\n",
        )
        .unwrap();
        let (l, r) = (&c.config.live, &c.config.restart);
        assert_eq!(r.port, 9000);
        assert_eq!(l.session_timeout, Duration::from_secs(600));
        assert!(!l.stale_reaper && l.metrics_public);
        assert_eq!(r.max_sessions, 12);
        assert_eq!(l.host_key_policy, crate::policy::HostKeyPolicy::Strict);
        assert_eq!(r.log_mode, LogMode::File);
        assert_eq!(r.host, "10");
        assert!(l.web_users.is_empty() && r.cmd_log_dir.is_none() && l.key_dir.is_none());
        assert_eq!(r.workers, 8);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("'workers' is no longer used"));
        for (bool_form, want) in [("on", true), ("off", false), ("1", true), ("0", false)] {
            let y = format!("stale_reaper: '{bool_form}'");
            assert_eq!(from_yaml(&y).unwrap().config.live.stale_reaper, want);
        }
        // The messages as before.
        assert!(
            err("port: 70000").ends_with("config key 'port': 70000 is out of range (0..=65535)")
        );
        assert!(err("session_timeout: -5")
            .ends_with("config key 'session_timeout': expected a whole number >= 0, got -5"));
        assert!(err("stale_reaper: maybe")
            .ends_with("config key 'stale_reaper': expected true or false, got 'maybe'"));
        assert!(err("max_sessions: [1]")
            .ends_with("config key 'max_sessions': expected a whole number, got a list"));
        assert!(err("trusted_proxies: ['*.example.net']")
            .ends_with("config key 'trusted_proxies': expected addresses or CIDRs, not names"));
        assert!(err("denied_commands: ['(']").contains("config key 'denied_commands': "));
        assert!(err("mask_patterns: x")
            .ends_with("config key 'mask_patterns': expected a list of regular expressions"));
        assert!(err("workers: 0").contains("config key 'workers': "));
        // Of two bad keys, the first in the file.
        assert!(err("reaper_interval: 0\nport: x").contains("'reaper_interval'"));
        assert!(err("port: x\nreaper_interval: 0").contains("'port'"));
    }

    #[test]
    fn a_config_without_file_keeps_the_default_state_dir_for_root() {
        let c = from_yaml("").unwrap().config;
        assert_eq!(c.restart.state_dir, Path::new(DEFAULT_STATE_DIR));
        let mut r = c.restart.clone();
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(per_user_state_dir(&mut r), None);
        }
        // A directory under a regular file is not usable, and says which.
        let dir = std::env::temp_dir().join(format!("ndb-perm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("file");
        std::fs::write(&file, "").unwrap();
        let m = dir_usable(&file.join("state")).unwrap_err();
        assert!(m.contains(&file.display().to_string()), "{m}");
        assert!(dir_usable(&dir.join("new/state")).is_ok());
        r.state_dir = file.join("state");
        let e = ensure_state(&r).unwrap_err().to_string();
        assert!(
            e.contains("config key 'state_dir'") && e.contains("/file/state"),
            "{e}"
        );
        r.state_dir = dir.join("made");
        ensure_state(&r).unwrap();
        assert!(r.state_dir.is_dir());
        std::fs::remove_dir_all(&dir).ok();
    }
}
