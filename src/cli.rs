//! Command line: `netdev-broker [serve] [--config PATH] [--host H] [--port P] [--api-token T]
//! [--log-level L]`, plus `--help` and `--version`.

use crate::config::Overrides;
use crate::secret::Secret;

pub const USAGE: &str = "\
Usage: netdev-broker [serve] [OPTIONS]
       netdev-broker demo [--port PORT]
       netdev-broker telnet-debug <host> <username> <password> [enable_password] [port]
                     [--device-type TYPE] [--timeout SECS]
       netdev-broker hash-password [--cost N]
       netdev-broker check-config [--config PATH]

Holds long-lived SSH and Telnet sessions to network devices behind a local HTTP API.

Subcommands:
  serve              Run the broker (the default)
  demo               Run the broker on 127.0.0.1 (port 8765 unless --port) with a built-in
                     fake Cisco IOS device that speaks Telnet and a random token, and print
                     the curl commands to try. Nothing to configure, no device needed.
  telnet-debug       Log in to a device over Telnet and print every stage: raw bytes
                     received, the option negotiation, which prompt matched, what was
                     sent (passwords masked), and where it stopped and why. A password
                     of '-' is read from standard input (keeps it out of `ps`).
  hash-password      Read a password (asked twice without echo on a terminal, else the
                     first line of standard input) and print its bcrypt hash (cost 12
                     unless --cost, 4-31) for web_users' password_hash.
  check-config       Validate the config file exactly as serve would (default
                     /etc/netdev-broker/config.yml; $NETDEV_BROKER_API_TOKEN counts too),
                     refuse a file holding secrets that other users can read or write,
                     and print what the broker would run with (secrets masked).
                     Exit 0 when fine, 2 when not.

Options:
  --config PATH      Config file (default: /etc/netdev-broker/config.yml if it exists)
  --host HOST        Bind address (overrides the file)
  --port PORT        Listen port (overrides the file)
  --api-token TOKEN  API token (overrides the file and $NETDEV_BROKER_API_TOKEN;
                     visible to local users in `ps`: prefer the file or the variable)
  --log-level LEVEL  DEBUG, INFO, WARNING or ERROR
  -h, --help         Print this help
  -V, --version      Print the version and the libssh2 and OpenSSL versions linked in
";

#[derive(Debug)]
pub enum Command {
    Serve(Overrides),
    Demo { port: u16 },
    TelnetDebug(TelnetDebug),
    HashPassword { cost: u32 },
    CheckConfig(Overrides),
    Help,
    Version,
}

#[derive(Debug)]
pub struct TelnetDebug {
    pub host: String,
    pub username: String,
    /// "-" means: read it from standard input.
    pub password: Secret,
    pub enable_password: Option<Secret>,
    pub port: u16,
    pub device_type: String,
    pub timeout: std::time::Duration,
}

fn demo(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut port = 8765;
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--port" => {
                port = args
                    .next()
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or("--port needs a port number (0: any free one)")?
            }
            _ => return Err(format!("unknown demo option '{a}'")),
        }
    }
    Ok(Command::Demo { port })
}

fn hash_password(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut cost = crate::cmd_hash::DEFAULT_COST;
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--cost" => {
                cost = args
                    .next()
                    .and_then(|c| c.parse::<u32>().ok())
                    .filter(|c| (4..=31).contains(c))
                    .ok_or("--cost needs a number from 4 to 31")?
            }
            _ => return Err(format!("unknown hash-password option '{a}'")),
        }
    }
    Ok(Command::HashPassword { cost })
}

fn check_config(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut ov = Overrides::default();
    while let Some(a) = args.next() {
        match a.split_once('=') {
            Some(("--config", p)) => ov.config = Some(p.into()),
            _ => match a.as_str() {
                "-h" | "--help" => return Ok(Command::Help),
                "--config" => ov.config = Some(args.next().ok_or("--config needs a path")?.into()),
                _ => return Err(format!("unknown check-config option '{a}'")),
            },
        }
    }
    Ok(Command::CheckConfig(ov))
}

fn telnet_debug(args: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut pos = Vec::new();
    let mut device_type = "cisco_ios".to_string();
    let mut timeout = 30.0f64;
    let mut it = args.peekable();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--device-type" => device_type = it.next().ok_or("--device-type needs a value")?,
            "--timeout" => {
                timeout = it
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .filter(|t| *t > 0.0 && *t <= 3600.0)
                    .ok_or("--timeout needs a number of seconds (0-3600)")?
            }
            _ if a.starts_with("--") => return Err(format!("unknown option '{a}'")),
            _ => pos.push(a),
        }
    }
    if !(3..=5).contains(&pos.len()) {
        return Err(
            "telnet-debug needs <host> <username> <password> [enable_password] [port]".into(),
        );
    }
    let port = match pos.get(4) {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("bad port '{p}'"))?,
        None => 23,
    };
    let mut pos = pos.into_iter();
    let host = pos.next().unwrap_or_default();
    let username = pos.next().unwrap_or_default();
    let password = Secret::new(pos.next().unwrap_or_default());
    let enable_password = pos.next().filter(|e| !e.is_empty()).map(Secret::new);
    Ok(Command::TelnetDebug(TelnetDebug {
        host,
        username,
        password,
        enable_password,
        port,
        device_type,
        timeout: std::time::Duration::from_secs_f64(timeout),
    }))
}

/// Parse arguments (without the program name).
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut ov = Overrides::default();
    let mut it = args.into_iter().peekable();
    let mut first = true;
    while let Some(arg) = it.next() {
        if first && !arg.starts_with('-') {
            first = false;
            match arg.as_str() {
                "serve" => continue,
                "telnet-debug" => return telnet_debug(it),
                "demo" => return demo(it),
                "hash-password" => return hash_password(it),
                "check-config" => return check_config(it),
                other => {
                    return Err(format!(
                        "unknown subcommand '{other}' (available: serve, demo, telnet-debug, hash-password, check-config)"
                    ))
                }
            }
        }
        first = false;
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            match inline.clone().or_else(|| it.next()) {
                Some(v) => Ok(v),
                None => Err(format!("{name} needs a value")),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--config" => ov.config = Some(value("--config")?.into()),
            "--host" => ov.host = Some(value("--host")?),
            "--port" => ov.port = Some(value("--port")?),
            "--api-token" => ov.api_token = Some(Secret::new(value("--api-token")?)),
            "--log-level" => ov.log_level = Some(value("--log-level")?),
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    Ok(Command::Serve(ov))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn serve_is_the_default() {
        let Command::Serve(ov) = parse(args("--api-token mytoken --log-level DEBUG")).unwrap()
        else {
            panic!()
        };
        assert_eq!(ov.api_token.unwrap().expose(), "mytoken");
        assert_eq!(ov.log_level.as_deref(), Some("DEBUG"));
        let Command::Serve(ov) =
            parse(args("serve --config /x.yml --port=9000 --host 0.0.0.0")).unwrap()
        else {
            panic!()
        };
        assert_eq!(ov.config.unwrap().to_str(), Some("/x.yml"));
        assert_eq!(ov.port.as_deref(), Some("9000"));
        assert_eq!(ov.host.as_deref(), Some("0.0.0.0"));
    }

    #[test]
    fn errors_and_help() {
        assert!(parse(args("--port")).is_err());
        assert!(parse(args("--bogus")).is_err());
        assert!(parse(args("frobnicate")).is_err());
        assert!(matches!(parse(args("--help")), Ok(Command::Help)));
        assert!(matches!(parse(args("serve -V")), Ok(Command::Version)));
    }

    #[test]
    fn telnet_debug_arguments() {
        let Ok(Command::TelnetDebug(t)) = parse(args("telnet-debug 10.0.0.1 admin pw")) else {
            panic!()
        };
        assert_eq!(
            (t.host.as_str(), t.username.as_str(), t.port),
            ("10.0.0.1", "admin", 23)
        );
        assert_eq!(t.password.expose(), "pw");
        assert!(t.enable_password.is_none());
        assert!(!format!("{t:?}").contains("pw\""));
        let Ok(Command::TelnetDebug(t)) = parse(args(
            "telnet-debug sw1 u p en 2323 --device-type hp_procurve --timeout 5",
        )) else {
            panic!()
        };
        assert_eq!(t.port, 2323);
        assert_eq!(t.enable_password.unwrap().expose(), "en");
        assert_eq!(t.device_type, "hp_procurve");
        assert!(parse(args("telnet-debug sw1 u")).is_err());
        assert!(parse(args("telnet-debug sw1 u p en 0")).is_err());
        assert!(parse(args("telnet-debug sw1 u p en 23 extra")).is_err());
        assert!(parse(args("telnet-debug sw1 u p --timeout x")).is_err());
        assert!(matches!(
            parse(args("demo")),
            Ok(Command::Demo { port: 8765 })
        ));
        assert!(matches!(
            parse(args("demo --port 0")),
            Ok(Command::Demo { port: 0 })
        ));
        assert!(parse(args("demo --port x")).is_err());
        let Ok(Command::CheckConfig(ov)) = parse(args("check-config --config /x.yml")) else {
            panic!()
        };
        assert_eq!(ov.config.unwrap().to_str(), Some("/x.yml"));
        assert!(matches!(
            parse(args("check-config")),
            Ok(Command::CheckConfig(Overrides { config: None, .. }))
        ));
        assert!(parse(args("check-config --port 1")).is_err());
    }
}
