//! Wiring: listener, registry, API, HTTP server and reaper, started together and stopped in order;
//! a reload (SIGHUP) applies a new config's live settings to them.

use crate::api::{Api, ApiLive, ApiTrust};
use crate::cmdlog::CmdLog;
use crate::config::{Config, Overrides};
use crate::error::Error;
use crate::http::{HttpServer, Limits};
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
    /// The reaper's (on, interval); a message on the sender makes it read them again.
    reaper_settings: Arc<Mutex<(bool, Duration)>>,
    reaper: Option<(Sender<()>, JoinHandle<()>)>,
    addr: SocketAddr,
    /// The config in effect (what a reload compares the new one with).
    current: Config,
}

/// The API's part of a config that a reload can change.
fn api_live(c: &Config) -> ApiLive {
    ApiLive {
        token: c.api_token.clone(),
        command_timeout: c.command_timeout,
        default_session_timeout: c.session_timeout,
        metrics_public: c.metrics_public,
        hosts: crate::api::HostGuard::new(&c.host, &c.server_names),
        trust: ApiTrust {
            key_dir: c.key_dir.clone(),
            host_key_policy: c.host_key_policy,
            host_key_policy_override_any: c.host_key_policy_override_any,
            legacy_hosts: c.legacy_hosts.clone(),
        },
    }
}

fn reaper_text(c: &Config) -> String {
    if c.stale_reaper {
        format!("every {} s", c.reaper_interval.as_secs())
    } else {
        "off".into()
    }
}

impl Broker {
    /// Bind and start serving. Port 0 picks a free port (tests).
    pub fn start(c: &Config) -> Result<Broker, Error> {
        let listener = TcpListener::bind((c.host.as_str(), c.port))
            .map_err(|e| Error::Config(format!("cannot listen on {}:{}: {e}", c.host, c.port)))?;
        Broker::start_on(c, listener)
    }

    pub fn start_on(c: &Config, listener: TcpListener) -> Result<Broker, Error> {
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Config(format!("listener: {e}")))?;
        let cmdlog = match &c.cmd_log_dir {
            Some(d) => Some(CmdLog::new(d.clone(), c.masker.clone()).map_err(|e| {
                Error::Config(format!(
                    "config key 'cmd_log_dir': cannot create {}: {e}",
                    d.display()
                ))
            })?),
            None => None,
        };
        crate::platform::all().map_err(Error::Config)?;
        let known_hosts = c
            .known_hosts
            .clone()
            .unwrap_or_else(|| c.state_dir.join("known_hosts"));
        let registry = Registry::new(Settings {
            known_hosts: crate::trust::KnownHosts::new(known_hosts),
            allowed_hosts: parking_lot::RwLock::new(c.allowed_hosts.clone()),
            commands: parking_lot::RwLock::new(Arc::new(c.commands.clone())),
            max_sessions: c.max_sessions,
            max_output_bytes: c.max_output_bytes,
            max_exec_output_bytes: c.max_exec_output_bytes,
            keepalive_interval: c.keepalive_interval,
            dead_peer_timeout: c.dead_peer_timeout,
            command_timeout: c.command_timeout,
            cmdlog,
            masker: c.masker.clone(),
            metrics: Arc::new(crate::metrics::Metrics::new()),
        });
        let web = crate::web::Web::from_config(c, registry.clone());
        let api = Arc::new(Api::new(registry.clone(), api_live(c), web));
        let nofile = crate::util::raise_nofile_limit();
        let max_connections = crate::util::connection_cap(c.max_connections, nofile);
        if max_connections < c.max_connections {
            log::warn!(
                "max_connections lowered from {} to {max_connections}: the open-file limit is \
                 {nofile} (raise LimitNOFILE or ulimit -n)",
                c.max_connections
            );
        }
        let max_connections_per_client = c.connections_per_client(max_connections);
        let limits = Limits {
            max_connections,
            max_connections_per_client,
            max_body_bytes: c.max_body_bytes,
            ..Limits::default()
        };
        let http = HttpServer::start(listener, limits, api.clone())
            .map_err(|e| Error::Config(format!("cannot start HTTP server: {e}")))?;
        // The reaper thread runs even when `stale_reaper` is off, so that a reload can turn it on.
        let reaper_settings = Arc::new(Mutex::new((c.stale_reaper, c.reaper_interval)));
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
            .map_err(|e| Error::Config(format!("cannot start reaper: {e}")))?;
        let reaper = Some((tx, h));
        log::info!(
            "netdev-broker {} listening on http://{addr} (max_connections {max_connections}, \
             {max_connections_per_client} per client, max_sessions {}, reaper {})",
            env!("CARGO_PKG_VERSION"),
            c.max_sessions,
            reaper_text(c)
        );
        Ok(Broker {
            http: Some(http),
            registry,
            api,
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
        if let Err(e) = crate::logging::reopen() {
            log::error!("reload: {e}; still writing to the old log file");
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
        let c = loaded.config;
        let (live, restart) = crate::config::changes(&self.current, &c);
        crate::logging::set_level(c.log_level);
        self.api.set_live(api_live(&c));
        self.api.web.set_auth(crate::web::WebAuth::from_config(&c));
        self.registry.set_allowed_hosts(c.allowed_hosts.clone());
        self.registry.set_command_rules(c.commands.clone());
        *self.reaper_settings.lock() = (c.stale_reaper, c.reaper_interval);
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
            reaper_text(&c)
        );
        // What needs a restart stays as it runs, and is compared against that next time.
        let mut next = c;
        for k in restart {
            keep_running_value(&mut next, &self.current, k);
        }
        self.current = next;
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
        // 1. Sessions start closing (running execs are cancelled and answered 410).
        self.registry.close_all();
        // 2. HTTP stops accepting and gives requests in flight 2 s to be answered; an open still
        //    inside its SSH handshake is answered 503.
        if let Some(http) = self.http.take() {
            http.shutdown();
        }
        // 3. Session threads finish logging out.
        self.registry
            .shutdown(Instant::now() + Duration::from_secs(3));
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

/// Put back a restart-only key's running value (so a later reload still reports it).
fn keep_running_value(next: &mut Config, running: &Config, key: &str) {
    let r = running;
    match key {
        "host" => next.host = r.host.clone(),
        "port" => next.port = r.port,
        "log_mode" => next.log_mode = r.log_mode,
        "log_file" => next.log_file = r.log_file.clone(),
        "cmd_log_dir" => next.cmd_log_dir = r.cmd_log_dir.clone(),
        "keepalive_interval" => next.keepalive_interval = r.keepalive_interval,
        "dead_peer_timeout" => next.dead_peer_timeout = r.dead_peer_timeout,
        "workers" => next.workers = r.workers,
        "max_sessions" => next.max_sessions = r.max_sessions,
        "max_connections" => next.max_connections = r.max_connections,
        "max_connections_per_client" => {
            next.max_connections_per_client = r.max_connections_per_client
        }
        "max_body_bytes" => next.max_body_bytes = r.max_body_bytes,
        "max_output_bytes" => next.max_output_bytes = r.max_output_bytes,
        "max_exec_output_bytes" => next.max_exec_output_bytes = r.max_exec_output_bytes,
        "state_dir" => next.state_dir = r.state_dir.clone(),
        "known_hosts" => next.known_hosts = r.known_hosts.clone(),
        "mask_patterns" => {
            next.masker = r.masker.clone();
            match r.lists.get(key) {
                Some(l) => next.lists.insert(key.to_string(), l.clone()),
                None => next.lists.remove(key),
            };
        }
        _ => {}
    }
}
