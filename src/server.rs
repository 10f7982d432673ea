//! Wiring: listener, registry, API, HTTP server and reaper, started together and stopped in order.

use crate::api::Api;
use crate::cmdlog::CmdLog;
use crate::config::Config;
use crate::error::Error;
use crate::http::{HttpServer, Limits};
use crate::session::{Registry, Settings};
use crossbeam_channel::{bounded, Sender};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct Broker {
    http: Option<HttpServer>,
    pub registry: Arc<Registry>,
    reaper: Option<(Sender<()>, JoinHandle<()>)>,
    addr: SocketAddr,
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
            allowed_hosts: c.allowed_hosts.clone(),
            max_sessions: c.max_sessions,
            max_output_bytes: c.max_output_bytes,
            keepalive_interval: c.keepalive_interval,
            command_timeout: c.command_timeout,
            cmdlog,
            masker: c.masker.clone(),
            metrics: Arc::new(crate::metrics::Metrics::new()),
        });
        let web = crate::web::Web::from_config(c, registry.clone());
        let api = Arc::new(Api {
            web,
            registry: registry.clone(),
            token: c.api_token.clone(),
            metrics_public: c.metrics_public,
            command_timeout: c.command_timeout,
            default_session_timeout: c.session_timeout,
            trust: crate::api::ApiTrust {
                key_dir: c.key_dir.clone(),
                host_key_policy: c.host_key_policy,
                host_key_policy_override_any: c.host_key_policy_override_any,
                legacy_hosts: c.legacy_hosts.clone(),
                commands: c.commands.clone(),
            },
        });
        let limits = Limits {
            max_connections: c.max_connections,
            max_body_bytes: c.max_body_bytes,
            ..Limits::default()
        };
        let http = HttpServer::start(listener, limits, c.workers, api)
            .map_err(|e| Error::Config(format!("cannot start HTTP server: {e}")))?;
        let reaper = if c.stale_reaper {
            let (tx, rx) = bounded::<()>(1);
            let reg = registry.clone();
            let every = c.reaper_interval;
            let h = std::thread::Builder::new()
                .name("reaper".into())
                .spawn(move || {
                    // Wakes every interval; a message or a dropped sender stops it.
                    while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                        rx.recv_timeout(every)
                    {
                        reg.reap();
                    }
                })
                .map_err(|e| Error::Config(format!("cannot start reaper: {e}")))?;
            Some((tx, h))
        } else {
            None
        };
        log::info!(
            "netdev-broker {} listening on http://{addr} (workers {}, max_sessions {}, reaper {})",
            env!("CARGO_PKG_VERSION"),
            c.workers,
            c.max_sessions,
            if c.stale_reaper {
                format!("every {} s", c.reaper_interval.as_secs())
            } else {
                "off".into()
            }
        );
        Ok(Broker {
            http: Some(http),
            registry,
            reaper,
            addr,
        })
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
