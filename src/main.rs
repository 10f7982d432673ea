use netdev_broker::cmd::cli::{self, Command};
use netdev_broker::config::{ConfigError, TOKEN_ENV};
use netdev_broker::observe::logging;
use netdev_broker::server::StartError;
use signal_hook::consts::{SIGINT, SIGTERM};

fn main() {
    netdev_broker::memory::limit_arenas();
    let code = match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("netdev-broker: {e}");
            log::logger().flush();
            // Exit 2: the configuration, the command line or a start-up resource; 1: a bug.
            match e {
                StartError::Internal(_) => 1,
                StartError::Config(_) | StartError::Io { .. } | StartError::Platform(_) => 2,
            }
        }
    };
    std::process::exit(code);
}

fn run() -> Result<(), StartError> {
    // Before any thread exists: keep the token from the environment for start and reloads, and
    // wipe it from /proc/PID/environ.
    let env_token = netdev_broker::secret::take_env_secret(TOKEN_ENV);
    let env_token = || env_token.as_ref().map(|t| t.expose().to_string());
    let cmd = cli::parse(std::env::args_os().skip(1))
        .map_err(|m| ConfigError::new(format!("{m}\n\n{}", cli::USAGE)))?;
    let ov = match cmd {
        Command::Help => {
            print!("{}", cli::USAGE);
            return Ok(());
        }
        Command::Version => {
            print!("{}", netdev_broker::version::long());
            return Ok(());
        }
        Command::Demo { port } => {
            let c = netdev_broker::config::Config::default();
            logging::init(&c).map_err(ConfigError::new)?;
            let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
                .map_err(|e| StartError::io("cannot install signal handlers", e))?;
            return netdev_broker::cmd::demo::run(
                &netdev_broker::cmd::demo::DemoArgs { port },
                || {
                    signals.forever().next();
                },
            );
        }
        Command::TelnetDebug(a) => {
            let code = netdev_broker::cmd::telnet_debug::run(a);
            std::process::exit(code);
        }
        Command::HashPassword { cost } => {
            let hash = netdev_broker::cmd::hash::run(cost).map_err(ConfigError::new)?;
            println!("{hash}");
            return Ok(());
        }
        Command::TokenNew(a) => {
            let out = netdev_broker::cmd::token::new(&a)?;
            return print_out(&out);
        }
        Command::TokenHash => {
            let sha = netdev_broker::cmd::token::hash().map_err(ConfigError::new)?;
            println!("{sha}");
            return Ok(());
        }
        Command::CheckConfig(ov) => {
            let report = netdev_broker::cmd::check::run(&ov, env_token())?;
            print!("{report}");
            return Ok(());
        }
        Command::Serve(ov) => ov,
    };
    netdev_broker::cmd::serve::run(&ov, env_token)
}

/// Write `s` to standard output, an error (not a panic) if it cannot be written: what `token new`
/// prints is shown only once.
fn print_out(s: &str) -> Result<(), StartError> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    o.write_all(s.as_bytes())
        .and_then(|()| o.flush())
        .map_err(|e| StartError::io("cannot write to standard output", e))
}
