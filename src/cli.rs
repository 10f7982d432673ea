//! Command line: `netdev-broker [serve] [--config PATH] [--host H] [--port P] [--api-token T]
//! [--log-level L]`, plus `--help` and `--version`.

use crate::config::Overrides;
use crate::secret::Secret;

pub const USAGE: &str = "\
Usage: netdev-broker [serve] [OPTIONS]

Holds long-lived SSH sessions to network devices behind a local HTTP API.

Subcommands:
  serve              Run the broker (the default)

Options:
  --config PATH      Config file (default: /etc/netdev-broker/config.yml if it exists)
  --host HOST        Bind address (overrides the file)
  --port PORT        Listen port (overrides the file)
  --api-token TOKEN  API token (overrides the file and $NETDEV_BROKER_API_TOKEN;
                     visible to local users in `ps`: prefer the file or the variable)
  --log-level LEVEL  DEBUG, INFO, WARNING or ERROR
  -h, --help         Print this help
  -V, --version      Print the version
";

#[derive(Debug)]
pub enum Command {
    Serve(Overrides),
    Help,
    Version,
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
                other => return Err(format!("unknown subcommand '{other}' (available: serve)")),
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
}
