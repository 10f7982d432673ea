//! Wiring: listener, registry, API, HTTP server and reaper, started together and stopped in order;
//! a reload (SIGHUP) applies a new config's live settings to them.

use crate::api::{Api, ApiLive, ApiTrust};
use crate::config::{Config, ConfigError, Overrides};
use crate::http::{HttpServer, Limits};
use crate::observe::cmdlog::CmdLog;
use crate::session::{Registry, Settings};
use crossbeam_channel::{bounded, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct Broker {
    http: Option<HttpServer>,
    pub registry: Arc<Registry>,
    api: Arc<Api>,
    audit: Arc<crate::observe::audit::AuditLog>,
    /// The reaper's (on, interval); a message on the sender makes it read them again.
    reaper_settings: Arc<Mutex<(bool, Duration)>>,
    reaper: Option<(Sender<()>, JoinHandle<()>)>,
    addr: SocketAddr,
    /// The config in effect (what a reload compares the new one with).
    current: Config,
}

/// The API's part of a config that a reload can change. Tokens already past their `expires`
/// are warned about here (at start and at each reload), not only when one is used.
fn api_live(c: &Config) -> ApiLive {
    let l = &c.live;
    for t in l.api_tokens.iter().filter(|t| t.expired()) {
        log::warn!(
            "API token {:?} expired at {}; requests with it are refused (401)",
            t.name,
            t.expires.as_ref().map(|(_, e)| e.as_str()).unwrap_or("?")
        );
    }
    ApiLive {
        tokens: crate::policy::Tokens::new(&l.api_tokens, Some(l.api_token.expose())),
        auth_failures_per_minute: l.auth_failures_per_minute,
        command_timeout: l.command_timeout,
        default_session_timeout: l.session_timeout,
        metrics_public: l.metrics_public,
        hosts: crate::api::HostGuard::new(&c.restart.host, &l.server_names.parsed),
        trust: ApiTrust {
            key_dir: l.key_dir.clone(),
            host_key_policy: l.host_key_policy,
            host_key_policy_override_any: l.host_key_policy_override_any,
            legacy_hosts: l.legacy_hosts.parsed.clone(),
            jumps: l.jump_hosts.clone(),
        },
    }
}

/// The config's `read_only_commands` for every platform (None: each platform's own).
fn read_only(c: &Config) -> Option<Arc<crate::policy::CommandRules>> {
    let l = &c.live.read_only_commands;
    if l.is_empty() {
        return None;
    }
    // Checked when the config was read.
    crate::policy::CommandRules::read_only(l).ok().map(Arc::new)
}

/// Why the broker (or a command that runs it) could not start. Not a client's error: it is
/// printed on stderr and `main` exits 2 (1 for `Internal`), as before this type existed. A type
/// of its own, not a `ConfigError`, because binding a port or starting a thread can fail with a
/// config that is perfectly valid.
#[derive(Debug)]
pub enum StartError {
    /// The configuration (or the command line) is wrong, or names a directory that cannot be used.
    Config(ConfigError),
    /// A resource the broker needs at start (its port, a thread, signal handlers) is not
    /// available: `<context>: <I/O error>`.
    Io {
        context: String,
        source: std::io::Error,
    },
    /// The embedded platform tables do not load (a build problem).
    Platform(String),
    /// Something that should not fail did (exit 1).
    Internal(String),
}

impl StartError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> StartError {
        StartError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<ConfigError> for StartError {
    fn from(e: ConfigError) -> StartError {
        StartError::Config(e)
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(e) => e.fmt(f),
            StartError::Io { context, source } => write!(f, "{context}: {source}"),
            StartError::Platform(m) => f.write_str(m),
            StartError::Internal(m) => write!(f, "Internal error: {m}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Config(e) => Some(e),
            StartError::Io { source, .. } => Some(source),
            StartError::Platform(_) | StartError::Internal(_) => None,
        }
    }
}

fn reaper_text(c: &Config) -> String {
    if c.live.stale_reaper {
        format!("every {} s", c.live.reaper_interval.as_secs())
    } else {
        "off".into()
    }
}

impl Broker {
    /// Bind and start serving. Port 0 picks a free port (tests).
    pub fn start(c: &Config) -> Result<Broker, StartError> {
        let r = &c.restart;
        let listener = TcpListener::bind((r.host.as_str(), r.port))
            .map_err(|e| StartError::io(format!("cannot listen on {}:{}", r.host, r.port), e))?;
        Broker::start_on(c, listener)
    }

    pub fn start_on(c: &Config, listener: TcpListener) -> Result<Broker, StartError> {
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::io("listener", e))?;
        let r = &c.restart;
        // Found now, not as an error at the first session's open.
        crate::config::ensure_state(r)?;
        let cmdlog = match &r.cmd_log_dir {
            Some(d) => Some(
                CmdLog::new(d.clone(), r.mask_patterns.parsed.clone()).map_err(|e| {
                    let context =
                        format!("config key 'cmd_log_dir': cannot create {}", d.display());
                    ConfigError::io(context, e).with_key("cmd_log_dir")
                })?,
            ),
            None => None,
        };
        crate::platform::all().map_err(StartError::Platform)?;
        let known_hosts = r
            .known_hosts
            .clone()
            .unwrap_or_else(|| r.state_dir.join("known_hosts"));
        let registry = Registry::new(Settings {
            known_hosts: crate::policy::KnownHosts::new(known_hosts),
            allowed_hosts: parking_lot::RwLock::new(c.live.allowed_hosts.parsed.clone()),
            commands: parking_lot::RwLock::new(Arc::new(c.live.commands.clone())),
            read_only: parking_lot::RwLock::new(read_only(c)),
            max_sessions: r.max_sessions,
            max_output_bytes: r.max_output_bytes,
            max_exec_output_bytes: r.max_exec_output_bytes,
            keepalive_interval: r.keepalive_interval,
            dead_peer_timeout: r.dead_peer_timeout,
            command_timeout: c.live.command_timeout,
            cmdlog,
            masker: r.mask_patterns.parsed.clone(),
            metrics: Arc::new(crate::observe::metrics::Metrics::new()),
            guards: crate::session::guard::GuardBook::open(Some(r.state_dir.join("guards.json"))),
            job_retention: parking_lot::RwLock::new(c.live.job_retention),
        });
        let web = crate::web::Web::from_config(c, registry.clone());
        let audit = Arc::new(
            crate::observe::audit::AuditLog::new(r.audit_log.as_deref())
                .map_err(|m| StartError::Config(ConfigError::new(m).with_key("audit_log")))?,
        );
        let api = Arc::new(Api::new(registry.clone(), api_live(c), web, audit.clone()));
        let nofile = crate::util::raise_nofile_limit();
        let max_connections = crate::util::connection_cap(r.max_connections, nofile);
        if max_connections < r.max_connections {
            log::warn!(
                "max_connections lowered from {} to {max_connections}: the open-file limit is \
                 {nofile} (raise LimitNOFILE or ulimit -n)",
                r.max_connections
            );
        }
        let max_connections_per_client = r.connections_per_client(max_connections);
        let limits = Limits {
            max_connections,
            max_connections_per_client,
            max_body_bytes: r.max_body_bytes,
            ..Limits::default()
        };
        let http = HttpServer::start(listener, limits, api.clone())
            .map_err(|e| StartError::io("cannot start HTTP server", e))?;
        // The reaper thread runs even when `stale_reaper` is off, so that a reload can turn it on.
        let reaper_settings = Arc::new(Mutex::new((c.live.stale_reaper, c.live.reaper_interval)));
        let (tx, rx) = bounded::<()>(1);
        let reg = registry.clone();
        let settings = reaper_settings.clone();
        let h = std::thread::Builder::new()
            .name("reaper".into())
            .spawn(move || loop {
                // Wakes every interval; a message (reload) re-reads the settings, a dropped
                // sender stops it. Each wake also hands freed memory back to the OS.
                let (on, every) = *settings.lock();
                match rx.recv_timeout(every) {
                    Err(RecvTimeoutError::Timeout) => {
                        if on {
                            reg.reap();
                        }
                        crate::memory::trim();
                    }
                    Ok(()) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            })
            .map_err(|e| StartError::io("cannot start reaper", e))?;
        let reaper = Some((tx, h));
        log::info!(
            "netdev-broker {} listening on http://{addr} (max_connections {max_connections}, \
             {max_connections_per_client} per client, max_sessions {}, reaper {})",
            env!("CARGO_PKG_VERSION"),
            r.max_sessions,
            reaper_text(c)
        );
        Ok(Broker {
            http: Some(http),
            registry,
            api,
            audit,
            reaper_settings,
            reaper,
            addr,
            current: c.clone(),
        })
    }

    /// SIGHUP: reopen the log file (logrotate moved it away), load the config file again with
    /// the same command-line overrides and environment token, and apply what can change without
    /// dropping sessions. A config that does not load changes nothing: the running one stays.
    pub fn reload(&mut self, ov: &Overrides, env_token: Option<String>) {
        if let Err(e) = crate::observe::logging::reopen() {
            log::error!("reload: {e}; still writing to the old log file");
        }
        if let Err(e) = self.audit.reopen() {
            log::error!("reload: {e}; still writing to the old audit log file");
        }
        let loaded = match crate::config::load(ov, env_token) {
            Ok(l) => l,
            Err(e) => {
                log::error!("reload refused, the running configuration stays in effect: {e}");
                return;
            }
        };
        for w in &loaded.warnings {
            log::warn!("{w}");
        }
        for n in &loaded.notes {
            log::info!("{n}");
        }
        let (live, restart) = crate::config::changes(&self.current, &loaded.config);
        // The live part is swapped whole; what needs a restart keeps its running values, and
        // is compared against them next time (so a later reload still reports it).
        self.current.live = loaded.config.live;
        self.current.source = loaded.config.source;
        let c = &self.current;
        crate::observe::logging::set_level(c.live.log_level);
        self.api.set_live(api_live(c));
        self.api.web.set_auth(crate::web::WebAuth::from_config(c));
        self.registry
            .set_allowed_hosts(c.live.allowed_hosts.parsed.clone());
        self.registry.set_command_rules(c.live.commands.clone());
        self.registry
            .set_read_only(read_only(c).map(|r| (*r).clone()));
        self.registry.set_job_retention(c.live.job_retention);
        *self.reaper_settings.lock() = (c.live.stale_reaper, c.live.reaper_interval);
        if let Some((tx, _)) = &self.reaper {
            // Full: a wake-up is already pending, which is as good.
            let _ = tx.try_send(());
        }
        for k in &restart {
            log::warn!("reload: config key '{k}' changed but needs a restart to take effect");
        }
        log::info!(
            "reload: configuration from {} applied ({}; reaper {})",
            c.source
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "defaults and flags".into()),
            if live.is_empty() {
                "nothing changed".to_string()
            } else {
                format!("changed: {}", live.join(", "))
            },
            reaper_text(c)
        );
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Orderly stop: no new connections, every session closed politely (running commands are
    /// cancelled and answered), in-flight responses written, threads joined.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let started = Instant::now();
        if let Some((tx, h)) = self.reaper.take() {
            drop(tx);
            let _ = h.join();
        }
        let n = self.registry.len();
        let rollbacks = self.registry.rollbacks_at_exit();
        // 1. Sessions start closing (running execs are cancelled and answered 410).
        self.registry.close_all();
        // 2. HTTP stops accepting and gives requests in flight 2 s to be answered; an open still
        //    inside its SSH handshake is answered 503.
        if let Some(http) = self.http.take() {
            http.shutdown();
        }
        // 3. Session threads finish logging out.
        //    Armed change guards that roll back at exit get longer (systemd's TimeoutStopSec is 60 s).
        let grace = if rollbacks > 0 {
            Duration::from_secs(45)
        } else {
            Duration::from_secs(3)
        };
        self.registry.shutdown(Instant::now() + grace);
        if n > 0 || started.elapsed() > Duration::from_millis(100) {
            log::info!(
                "stopped: {n} session(s) closed in {} ms",
                started.elapsed().as_millis()
            );
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}
