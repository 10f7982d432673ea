//! The fake device on stdin/stdout, for sshd's `ForceCommand` (the latency device of
//! benches/run): the `cisco_ios` persona (or `--persona NAME`) at `R1#`, its own echo in raw
//! mode on a pty, type-ahead before the first prompt dropped (the `fake-device` crate's stdio
//! front).
//!
//! ```text
//! fake_ios_shell [--persona NAME] [--hostname H] [--user-exec]
//! ```

use fake_device::{stdio, DeviceConfig};

const USAGE: &str = "usage: fake_ios_shell [--persona NAME] [--hostname H] [--user-exec]";

fn main() {
    let usage = || -> ! {
        eprintln!("{USAGE}");
        std::process::exit(2)
    };
    let (mut persona, mut hostname, mut privileged) = (None, None, true);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--persona" => persona = Some(args.next().unwrap_or_else(|| usage())),
            "--hostname" => hostname = Some(args.next().unwrap_or_else(|| usage())),
            "--user-exec" => privileged = false,
            _ => usage(),
        }
    }
    let mut cfg = match persona {
        Some(p) if fake_device::persona_names().contains(&p.as_str()) => DeviceConfig::persona(&p),
        Some(_) => usage(),
        None => DeviceConfig::default(),
    };
    cfg.start_privileged = privileged;
    if let Some(h) = hostname {
        cfg.hostname = h;
    }
    if stdio::run(cfg).is_err() {
        std::process::exit(1);
    }
}
