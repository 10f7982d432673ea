//! Command line: `netdev-broker [serve] [--config PATH] [--host H] [--port P] [--api-token T]
//! [--log-level L]`, the other subcommands (USAGE), `--help` and `--version`.

use crate::config::Overrides;
use crate::secret::Secret;
use lexopt::{Arg, Parser};
use std::ffi::OsString;

pub const USAGE: &str = "\
Usage: netdev-broker [serve] [OPTIONS]
       netdev-broker demo [--port PORT]
       netdev-broker telnet-debug <host> <username> <password> [enable_password] [port]
                     [--device-type TYPE] [--timeout SECS]
       netdev-broker hash-password [--cost N]
       netdev-broker check-config [--config PATH]
       netdev-broker token new --name NAME --role ROLE [--expires DATE] [--token-file PATH]
       netdev-broker token hash

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
  token new          Make a named API token: 'ndb_' and 32 random bytes (base64url). Prints
                     it once, then the api_tokens: entry to paste into the config, which
                     holds only the token's SHA-256. --name: 1-64 letters, digits, . _ -;
                     --role: viewer, reader, operator or admin; --expires: a date
                     YYYY-MM-DD (00:00 UTC that day) or an RFC 3339 time, in the future;
                     --token-file PATH: write the token to a new file (mode 0600, never
                     an existing one) instead of printing it. Exit 2 on a bad value.
  token hash         Read a token made by other means (the first line of standard input,
                     or asked without echo on a terminal) and print its token_sha256.

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
    TokenNew(crate::cmd::token::NewArgs),
    TokenHash,
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

/// What a refused argument looks like in a message (an option by its name).
fn shown(arg: Arg) -> String {
    match arg {
        Arg::Short(c) => format!("-{c}"),
        Arg::Long(l) => format!("--{l}"),
        Arg::Value(v) => v.to_string_lossy().into_owned(),
    }
}

/// An argument as text. Its value is not shown: it may be a password or the token.
fn text(v: OsString, what: &str) -> Result<String, String> {
    v.into_string()
        .map_err(|_| format!("{what} is not valid UTF-8"))
}

/// The value of the option just read, given as `--flag value` or `--flag=value`; `missing` is
/// the message when there is none.
fn value(p: &mut Parser, flag: &str, missing: &str) -> Result<String, String> {
    let v = p.value().map_err(|_| missing.to_string())?;
    text(v, &format!("the value of {flag}"))
}

fn next(p: &mut Parser) -> Result<Option<Arg<'_>>, String> {
    p.next().map_err(|e| match e {
        lexopt::Error::UnexpectedValue { option, .. } => format!("{option} takes no value"),
        e => e.to_string(),
    })
}

fn demo(mut p: Parser) -> Result<Command, String> {
    const PORT: &str = "--port needs a port number (0: any free one)";
    let mut port = 8765;
    while let Some(arg) = next(&mut p)? {
        match arg {
            Arg::Short('h') | Arg::Long("help") => return Ok(Command::Help),
            Arg::Long("port") => port = value(&mut p, "--port", PORT)?.parse().map_err(|_| PORT)?,
            a => return Err(format!("unknown demo option '{}'", shown(a))),
        }
    }
    Ok(Command::Demo { port })
}

fn hash_password(mut p: Parser) -> Result<Command, String> {
    const COST: &str = "--cost needs a number from 4 to 31";
    let mut cost = crate::cmd::hash::DEFAULT_COST;
    while let Some(arg) = next(&mut p)? {
        match arg {
            Arg::Short('h') | Arg::Long("help") => return Ok(Command::Help),
            Arg::Long("cost") => {
                cost = value(&mut p, "--cost", COST)?
                    .parse::<u32>()
                    .ok()
                    .filter(|c| (4..=31).contains(c))
                    .ok_or(COST)?
            }
            a => return Err(format!("unknown hash-password option '{}'", shown(a))),
        }
    }
    Ok(Command::HashPassword { cost })
}

fn check_config(mut p: Parser) -> Result<Command, String> {
    let mut ov = Overrides::default();
    while let Some(arg) = next(&mut p)? {
        match arg {
            Arg::Short('h') | Arg::Long("help") => return Ok(Command::Help),
            Arg::Long("config") => {
                ov.config = Some(value(&mut p, "--config", "--config needs a path")?.into())
            }
            a => return Err(format!("unknown check-config option '{}'", shown(a))),
        }
    }
    Ok(Command::CheckConfig(ov))
}

fn token(mut p: Parser) -> Result<Command, String> {
    use crate::cmd::token as t;
    const SUB: &str = "token needs a subcommand: new or hash";
    let sub = match next(&mut p)? {
        Some(Arg::Value(v)) => text(v, "the token subcommand")?,
        Some(Arg::Short('h') | Arg::Long("help")) => return Ok(Command::Help),
        Some(a) => return Err(format!("unknown token option '{}' ({SUB})", shown(a))),
        None => return Err(SUB.into()),
    };
    match sub.as_str() {
        "new" => {}
        "hash" => {
            return match next(&mut p)? {
                None => Ok(Command::TokenHash),
                Some(Arg::Short('h') | Arg::Long("help")) => Ok(Command::Help),
                Some(a) => Err(format!(
                    "unknown token hash argument '{}' (it reads the token from standard input)",
                    shown(a)
                )),
            }
        }
        other => return Err(format!("unknown token subcommand '{other}' ({SUB})")),
    }
    let (mut name, mut role, mut expires, mut token_file) = (None, None, None, None);
    while let Some(arg) = next(&mut p)? {
        match arg {
            Arg::Short('h') | Arg::Long("help") => return Ok(Command::Help),
            Arg::Long("name") => {
                let n = value(&mut p, "--name", "--name needs a value")?;
                t::check_name(&n)?;
                name = Some(n);
            }
            Arg::Long("role") => {
                role = Some(t::check_role(&value(
                    &mut p,
                    "--role",
                    "--role needs a value",
                )?)?)
            }
            Arg::Long("expires") => {
                let e = value(&mut p, "--expires", "--expires needs a date or time")?;
                expires = Some(t::parse_expires(&e, jiff::Timestamp::now())?);
            }
            Arg::Long("token-file") => {
                let f = value(&mut p, "--token-file", "--token-file needs a path")?;
                if f.is_empty() {
                    return Err("--token-file needs a path".into());
                }
                token_file = Some(f.into());
            }
            a => return Err(format!("unknown token new option '{}'", shown(a))),
        }
    }
    match (name, role) {
        (Some(name), Some(role)) => Ok(Command::TokenNew(t::NewArgs {
            name,
            role,
            expires,
            token_file,
        })),
        (None, _) => Err("token new needs --name NAME".into()),
        (_, None) => Err(format!(
            "token new needs --role ({})",
            crate::policy::Role::ALL.map(|r| r.name()).join(", ")
        )),
    }
}

/// A positional argument of telnet-debug that starts with a dash: `-` (password from standard
/// input) or a password like `-secret`. Only `-h` and the long options are options here.
fn dash_positional(a: &std::ffi::OsStr) -> bool {
    let b = a.as_encoded_bytes();
    b.starts_with(b"-") && !b.starts_with(b"--") && b != b"-h"
}

fn telnet_debug(mut p: Parser) -> Result<Command, String> {
    const TIMEOUT: &str = "--timeout needs a number of seconds (0-3600)";
    let mut pos = Vec::new();
    let mut device_type = crate::platform::DEFAULT_DEVICE_TYPE.to_string();
    let mut timeout = 30.0f64;
    loop {
        let raw = p
            .try_raw_args()
            .and_then(|mut r| r.next_if(dash_positional));
        if let Some(v) = raw {
            pos.push(text(v, "an argument")?);
            continue;
        }
        let Some(arg) = next(&mut p)? else {
            break;
        };
        match arg {
            Arg::Short('h') | Arg::Long("help") => return Ok(Command::Help),
            Arg::Long("device-type") => {
                device_type = value(&mut p, "--device-type", "--device-type needs a value")?
            }
            Arg::Long("timeout") => {
                timeout = value(&mut p, "--timeout", TIMEOUT)?
                    .parse::<f64>()
                    .ok()
                    .filter(|t| *t > 0.0 && *t <= 3600.0)
                    .ok_or(TIMEOUT)?
            }
            Arg::Value(v) => pos.push(text(v, "an argument")?),
            a => return Err(format!("unknown option '{}'", shown(a))),
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

/// Parse arguments (without the program name). Every option takes its value as `--flag value`
/// or `--flag=value`; an argument that is not UTF-8 is refused (exit 2, as any usage error).
pub fn parse<I>(args: I) -> Result<Command, String>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let mut p = Parser::from_args(args);
    let mut ov = Overrides::default();
    let mut first = true;
    while let Some(arg) = next(&mut p)? {
        match arg {
            Arg::Value(sub) if first => match text(sub, "the subcommand")?.as_str() {
                "serve" => {}
                "telnet-debug" => return telnet_debug(p),
                "demo" => return demo(p),
                "hash-password" => return hash_password(p),
                "check-config" => return check_config(p),
                "token" => return token(p),
                other => {
                    return Err(format!(
                        "unknown subcommand '{other}' (available: serve, demo, telnet-debug, hash-password, check-config, token)"
                    ))
                }
            },
            Arg::Short('h') | Arg::Long("help") => return Ok(Command::Help),
            Arg::Short('V') | Arg::Long("version") => return Ok(Command::Version),
            Arg::Long("config") => {
                ov.config = Some(value(&mut p, "--config", "--config needs a value")?.into())
            }
            Arg::Long("host") => ov.host = Some(value(&mut p, "--host", "--host needs a value")?),
            Arg::Long("port") => ov.port = Some(value(&mut p, "--port", "--port needs a value")?),
            Arg::Long("api-token") => {
                let t = value(&mut p, "--api-token", "--api-token needs a value")?;
                ov.api_token = Some(Secret::new(t))
            }
            Arg::Long("log-level") => {
                ov.log_level = Some(value(&mut p, "--log-level", "--log-level needs a value")?)
            }
            a => return Err(format!("unknown option '{}'", shown(a))),
        }
        first = false;
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

    /// Every subcommand takes `--flag=value` as well as `--flag value` (`demo --port=0` was
    /// refused while `serve --port=0` worked).
    #[test]
    fn every_subcommand_takes_flag_equals_value() {
        for a in ["demo --port=0", "demo --port 0"] {
            assert!(
                matches!(parse(args(a)), Ok(Command::Demo { port: 0 })),
                "{a}"
            );
        }
        assert!(parse(args("demo --port=x")).is_err());
        assert!(parse(args("demo --port")).is_err());
        assert!(parse(args("demo extra")).is_err());
        assert!(matches!(parse(args("demo --help")), Ok(Command::Help)));
        for a in ["hash-password --cost=5", "hash-password --cost 5"] {
            assert!(
                matches!(parse(args(a)), Ok(Command::HashPassword { cost: 5 })),
                "{a}"
            );
        }
        assert!(parse(args("hash-password --cost=3")).is_err());
        assert!(parse(args("hash-password --cost")).is_err());
        for a in [
            "check-config --config=/x.yml",
            "check-config --config /x.yml",
        ] {
            let Ok(Command::CheckConfig(ov)) = parse(args(a)) else {
                panic!("{a}")
            };
            assert_eq!(ov.config.unwrap().to_str(), Some("/x.yml"));
        }
        let Ok(Command::TelnetDebug(t)) = parse(args(
            "telnet-debug --device-type=hp_procurve sw1 u p --timeout=2.5",
        )) else {
            panic!()
        };
        assert_eq!(t.device_type, "hp_procurve");
        assert_eq!(t.timeout, std::time::Duration::from_millis(2500));
        assert!(parse(args("telnet-debug sw1 u p --bogus")).is_err());
        let Command::Serve(ov) = parse(args(
            "--api-token=-starts-with-dash --log-level=INFO --config=/c.yml --host=::1",
        ))
        .unwrap() else {
            panic!()
        };
        assert_eq!(ov.api_token.unwrap().expose(), "-starts-with-dash");
        assert_eq!(ov.log_level.as_deref(), Some("INFO"));
        assert_eq!(ov.host.as_deref(), Some("::1"));
        assert!(parse(args("serve --help=x")).is_ok());
        assert!(parse(args("serve extra")).is_err());
        assert!(parse(args("--port 1 serve")).is_err());
    }

    #[test]
    fn token_subcommands() {
        let Ok(Command::TokenNew(a)) = parse(args(
            "token new --name ansible-prod --role=operator --expires 2999-06-30 --token-file /t/x",
        )) else {
            panic!()
        };
        assert_eq!((a.name.as_str(), a.role), ("ansible-prod", "operator"));
        assert_eq!(a.expires.unwrap().value, "2999-06-30");
        assert_eq!(a.token_file.unwrap().to_str(), Some("/t/x"));
        let Ok(Command::TokenNew(a)) = parse(args("token new --role admin --name=a.b_c")) else {
            panic!()
        };
        assert!(a.expires.is_none() && a.token_file.is_none());
        assert!(matches!(parse(args("token hash")), Ok(Command::TokenHash)));
        for h in ["token --help", "token new -h", "token hash --help"] {
            assert!(matches!(parse(args(h)), Ok(Command::Help)), "{h}");
        }
        for (a, msg) in [
            ("token", "new or hash"),
            ("token list", "unknown token subcommand 'list'"),
            ("token --name x", "unknown token option '--name'"),
            ("token hash abc", "standard input"),
            ("token new --role admin", "needs --name"),
            (
                "token new --name x",
                "needs --role (viewer, reader, operator, admin)",
            ),
            (
                "token new --name x --role root",
                "--role 'root': expected one of",
            ),
            (
                "token new --name a/b --role admin",
                "--name 'a/b': expected 1 to 64",
            ),
            (
                "token new --name x --role admin --expires 2001-01-01",
                "in the past",
            ),
            (
                "token new --name x --role admin --expires soon",
                "expected a date YYYY-MM-DD",
            ),
            (
                "token new --name x --role admin --expires",
                "--expires needs",
            ),
            (
                "token new --name x --role admin --bogus",
                "unknown token new option '--bogus'",
            ),
            (
                "token new --name x --role admin --token-file=",
                "--token-file needs a path",
            ),
        ] {
            let e = parse(args(a)).unwrap_err();
            assert!(e.contains(msg), "{a}: {e}");
        }
    }

    /// `-` (password from standard input) and passwords that start with a dash stay positional.
    #[test]
    fn telnet_debug_takes_dash_passwords() {
        let Ok(Command::TelnetDebug(t)) = parse(args("telnet-debug sw1 u - -en")) else {
            panic!()
        };
        assert_eq!(t.password.expose(), "-");
        assert_eq!(t.enable_password.unwrap().expose(), "-en");
        assert!(matches!(parse(args("telnet-debug -h")), Ok(Command::Help)));
    }

    /// Arguments that are not UTF-8 are refused with a message (they panicked), without showing
    /// the value (it may be a password or the token).
    #[test]
    fn non_utf8_arguments_are_refused() {
        use std::os::unix::ffi::OsStringExt;
        let bad = || OsString::from_vec(b"se\xffcret".to_vec());
        let cases: [Vec<OsString>; 5] = [
            vec!["--api-token".into(), bad()],
            vec![OsString::from_vec(b"--api-token=se\xffcret".to_vec())],
            vec![bad()],
            vec!["telnet-debug".into(), "h".into(), "u".into(), bad()],
            vec!["check-config".into(), "--config".into(), bad()],
        ];
        for c in cases {
            let e = parse(c.clone()).unwrap_err();
            assert!(
                e.contains("not valid UTF-8") && !e.contains("cret"),
                "{c:?}: {e}"
            );
        }
    }
}
