//! `netdev-broker serve`: load the configuration, start the broker, then wait for signals
//! (SIGHUP reloads and reopens the log file; SIGTERM and SIGINT shut down in order).

use crate::config::{self, ConfigError, Overrides};
use crate::observe::logging;
use crate::server::{Broker, StartError};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// Serve until SIGTERM or SIGINT. `env_token` gives the token taken from the environment at
/// start (the same one at every reload).
pub fn run(ov: &Overrides, env_token: impl Fn() -> Option<String>) -> Result<(), StartError> {
    let loaded = config::load(ov, env_token())?;
    let c = loaded.config;
    logging::init(&c).map_err(ConfigError::new)?;
    for w in &loaded.warnings {
        log::warn!("{w}");
    }
    for n in &loaded.notes {
        log::info!("{n}");
    }
    if let Some(src) = &c.source {
        log::info!("configuration from {}", src.display());
        // The rule check-config enforces; serve starts anyway, but says so.
        match config::check_permissions(src, &loaded.secret_keys) {
            Ok(warnings) => warnings.iter().for_each(|w| log::warn!("{w}")),
            Err(e) => log::warn!("{e}; check-config refuses this file"),
        }
    }
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| StartError::io("cannot install signal handlers", e))?;
    let mut broker = Broker::start(&c)?;
    drop(c);
    for sig in signals.forever() {
        if sig == SIGHUP {
            // logrotate's move-then-HUP, or `systemctl reload`: same overrides and variable
            // as at start.
            log::info!("SIGHUP received: reopening the log file and reloading the configuration");
            broker.reload(ov, env_token());
            continue;
        }
        log::info!("signal {sig} received, shutting down");
        break;
    }
    broker.shutdown();
    log::info!("bye");
    log::logger().flush();
    Ok(())
}
