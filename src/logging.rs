//! Application logging: env_logger writing to stdout, a file, or both (`log_mode`).

use crate::config::{Config, LogMode};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

struct Tee {
    stdout: bool,
    file: Option<File>,
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.stdout {
            let _ = std::io::stdout().lock().write_all(buf);
        }
        if let Some(f) = &mut self.file {
            let _ = f.write_all(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.stdout {
            let _ = std::io::stdout().flush();
        }
        if let Some(f) = &mut self.file {
            let _ = f.flush();
        }
        Ok(())
    }
}

/// Install the logger. Returns an error naming the log file if it cannot be opened.
pub fn init(c: &Config) -> Result<(), String> {
    let file = match c.log_mode {
        LogMode::Stdout => None,
        LogMode::File | LogMode::Both => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o640)
                .open(&c.log_file)
                .map_err(|e| {
                    format!(
                        "config key 'log_file': cannot open {}: {e}",
                        c.log_file.display()
                    )
                })?,
        ),
    };
    let tee = Tee {
        stdout: c.log_mode != LogMode::File,
        file,
    };
    let mut b = env_logger::Builder::new();
    // Our own lines at log_level; libraries only when they warn.
    b.filter_level(log::LevelFilter::Warn.min(c.log_level))
        .filter_module("netdev_broker", c.log_level)
        .format(|buf, rec| {
            let ts = crate::util::iso8601(std::time::SystemTime::now());
            writeln!(
                buf,
                "{ts} {:<5} [{}] {}",
                rec.level(),
                std::thread::current().name().unwrap_or("-"),
                rec.args()
            )
        })
        .target(env_logger::Target::Pipe(Box::new(tee)));
    // A second init (tests start several brokers in one process) keeps the first logger.
    let _ = b.try_init();
    Ok(())
}
