//! `netdev-broker telnet-debug`: log in to a device over Telnet the way a session does, printing
//! every stage (raw bytes received, the option negotiation, prompts matched, what was sent with
//! passwords masked) and where it stopped and why. It replaces the original's telnet_debug.py.

use crate::channel::Channel;
use crate::cmd::cli::TelnetDebug;
use crate::platform;
use crate::secret::Secret;
use crate::session::driver::{Driver, Login, OpenOptions};
use crate::transport::telnet::TelnetTransport;
use crate::transport::Trace;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Run it; the exit code is 0 when the device was reached and logged in to.
pub fn run(mut a: TelnetDebug) -> i32 {
    if a.password.expose() == "-" {
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line).is_err() {
            say("[stop] cannot read the password from standard input");
            return 1;
        }
        a.password = Secret::new(line.trim_end_matches(['\r', '\n']));
    }
    let Some(platform) = platform::lookup(&a.device_type) else {
        say(&format!("[stop] unknown device type {:?}", a.device_type));
        return 1;
    };
    if let Err(m) = crate::transport::validate_host(&a.host) {
        say(&format!("[stop] {m}"));
        return 1;
    }
    let trace: Trace = Arc::new(say);
    let started = Instant::now();
    let deadline = started + a.timeout;
    say(&format!(
        "[connect] {}:{} (device type {}, profile {}, deadline {} s)",
        a.host,
        a.port,
        a.device_type,
        platform.name,
        a.timeout.as_secs_f64()
    ));
    let t = match TelnetTransport::connect(
        &a.host,
        a.port,
        crate::transport::Reach {
            allowed: &crate::policy::HostList::default(),
            dead_peer_timeout: Duration::from_secs(120),
        },
        deadline,
        Some(trace.clone()),
    ) {
        Ok(t) => t,
        Err(e) => {
            // As a client would see it: the status and detail of the API's table.
            let e = crate::api::error::Error::from(e);
            say(&format!("[stop] connecting failed ({}): {e}", e.status()));
            return 1;
        }
    };
    say(&format!(
        "[connect] connected in {} ms",
        started.elapsed().as_millis()
    ));
    let mut chan = Channel::new(Box::new(t), platform.line.clone());
    chan.trace = Some(trace);
    let opened = Driver::open(
        chan,
        platform,
        &OpenOptions {
            host: &a.host,
            login: Some(Login {
                username: &a.username,
                password: &a.password,
            }),
            enable_secret: a.enable_password.as_ref(),
            enable_level: None,
            max_output: 1 << 20,
            deadline,
        },
    );
    match opened {
        Ok(d) => {
            say(&format!(
                "[done] logged in after {} ms: prompt {:?}, mode {}; Telnet options {}",
                started.elapsed().as_millis(),
                d.prompt_base(),
                d.mode,
                d.negotiated()
            ));
            d.close(Instant::now() + Duration::from_secs(3));
            say("[done] logged out");
            0
        }
        Err(e) => {
            let e = crate::api::error::Error::from(e);
            say(&format!("[stop] {} ({})", e, e.status()));
            1
        }
    }
}
