//! Run the fake SSH network device (the one the integration tests use) in the foreground, as
//! any of its platform personas (`fake-device/personas/*.yml`).
//!
//! ```text
//! cargo run --example fake_ssh_device -- --port 2222 \
//!     [--username admin] [--password cisco] [--enable-password en] [--hostname R1] \
//!     [--privileged] [--banner TEXT] [--exec-timeout SECS] [--persona NAME] [--paging-locked] \
//!     [--motd TEXT] [--host-key-file PATH | --fresh-host-key]
//! ssh -p 2222 admin@127.0.0.1
//! ```
//!
//! Listens on 127.0.0.1 only. Its ed25519 host key is kept in a file (default
//! `$TMPDIR/netdev-broker-fake-ssh-host-key`, made on first start, mode 0600), so a broker that
//! recorded it in its known_hosts accepts the device again after a restart; `--fresh-host-key`
//! makes a new one for this run only. Runs until Ctrl-C / SIGTERM.

use fake_device::{DeviceConfig, FakeDevice};

const USAGE: &str = "usage: fake_ssh_device [--port N] [--username U] [--password P] \
[--enable-password E] [--hostname H] [--privileged] [--banner TEXT] [--exec-timeout SECS] \
[--persona NAME] [--paging-locked] [--motd TEXT] [--host-key-file PATH | --fresh-host-key]";

/// The host key kept in `path` (made there, 0600, when missing).
fn stable_host_key(path: &std::path::Path) -> Result<String, String> {
    if let Ok(pem) = std::fs::read_to_string(path) {
        return Ok(pem);
    }
    let pem = fake_device::gen_host_key_openssh("ed25519");
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write the host key to {}: {e}", path.display()))?;
    f.write_all(pem.as_bytes())
        .map_err(|e| format!("cannot write the host key to {}: {e}", path.display()))?;
    Ok(pem)
}

fn parse_args() -> Result<(DeviceConfig, u16), String> {
    let mut cfg = DeviceConfig::default();
    let mut port = 2222u16;
    let mut key_file = Some(std::env::temp_dir().join("netdev-broker-fake-ssh-host-key"));
    // The persona goes first: it sets the default hostname, which --hostname may override.
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = argv.iter().position(|a| a == "--persona") {
        let name = argv
            .get(i + 1)
            .ok_or_else(|| format!("--persona needs a value\n{USAGE}"))?;
        if !FakeDevice::persona_names().contains(&name.as_str()) {
            return Err(format!(
                "unknown persona {name:?}; known: {}",
                FakeDevice::persona_names().join(", ")
            ));
        }
        cfg = DeviceConfig::persona(name);
    }
    let mut args = argv.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--port" => {
                let v = value("--port")?;
                port = v.parse().map_err(|_| format!("bad --port {v:?}"))?;
            }
            "--username" => cfg.username = value("--username")?,
            "--password" => cfg.password = value("--password")?,
            "--enable-password" => cfg.enable_password = Some(value("--enable-password")?),
            "--hostname" => cfg.hostname = value("--hostname")?,
            "--banner" => cfg.banner = Some(value("--banner")?),
            "--exec-timeout" => {
                let v = value("--exec-timeout")?;
                let secs = v.parse().map_err(|_| format!("bad --exec-timeout {v:?}"))?;
                cfg.exec_timeout_secs = Some(secs);
            }
            "--privileged" => cfg.start_privileged = true,
            "--persona" => {
                value("--persona")?;
            }
            "--paging-locked" => cfg.paging_locked = true,
            "--motd" => cfg.motd = Some(value("--motd")?),
            "--host-key-file" => key_file = Some(value("--host-key-file")?.into()),
            "--fresh-host-key" => key_file = None,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if let Some(path) = key_file {
        cfg.host_key = Some(stable_host_key(&path)?);
    }
    Ok((cfg, port))
}

fn main() {
    let (cfg, port) = match parse_args() {
        Ok(x) => x,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .expect("install signal handlers");

    let summary = format!(
        "persona {}, user {:?} / password {:?}, enable password {}, hostname {:?}",
        cfg.persona,
        cfg.username,
        cfg.password,
        cfg.enable_password
            .as_deref()
            .map_or("none".to_string(), |p| format!("{p:?}")),
        cfg.hostname
    );
    let dev = FakeDevice::start_on(cfg, port);
    println!("fake_ssh_device listening on 127.0.0.1:{}", dev.port());
    println!("{summary}");
    println!(
        "host key {} ({})",
        dev.host_key_openssh(),
        dev.host_key_sha256()
    );
    println!("Ctrl-C to stop");

    let _ = signals.forever().next();
    println!(
        "stopping: {} connection(s) served, {} command line(s) received",
        dev.total_connections(),
        dev.lines_received().len()
    );
    drop(dev);
}
