//! Application logging: env_logger writing to stdout, a file, or both (`log_mode`). The level
//! and the file can change while running (SIGHUP): [`set_level`], [`reopen`].

use crate::config::{Config, LogMode};
use parking_lot::Mutex;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The log file and its path; [`reopen`] swaps the handle.
static FILE: Mutex<Option<(PathBuf, File)>> = parking_lot::const_mutex(None);

struct Tee {
    stdout: bool,
}

fn open(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| format!("config key 'log_file': cannot open {}: {e}", path.display()))
}

/// Open the log file again at its path (logrotate moved the old one away), keeping the old
/// handle when that fails. Nothing to do when logging only to stdout.
pub fn reopen() -> Result<(), String> {
    let mut f = FILE.lock();
    if let Some((path, file)) = f.as_mut() {
        let _ = file.flush();
        *file = open(path)?;
    }
    Ok(())
}

/// Change the level of the broker's own lines (libraries log only warnings and errors, and
/// nothing below the broker's level).
pub fn set_level(level: log::LevelFilter) {
    log::set_max_level(level);
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.stdout {
            let _ = std::io::stdout().lock().write_all(buf);
        }
        if let Some((_, f)) = FILE.lock().as_mut() {
            let _ = f.write_all(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.stdout {
            let _ = std::io::stdout().flush();
        }
        if let Some((_, f)) = FILE.lock().as_mut() {
            let _ = f.flush();
        }
        Ok(())
    }
}

/// Install the logger. Returns an error naming the log file if it cannot be opened.
pub fn init(c: &Config) -> Result<(), String> {
    let file = match c.log_mode {
        LogMode::Stdout => None,
        LogMode::File | LogMode::Both => Some((c.log_file.clone(), open(&c.log_file)?)),
    };
    *FILE.lock() = file;
    let tee = Tee {
        stdout: c.log_mode != LogMode::File,
    };
    let mut b = env_logger::Builder::new();
    // Our own lines down to DEBUG, libraries only when they warn; the global maximum
    // (log_level, changeable by a reload) cuts both.
    b.filter_level(log::LevelFilter::Warn)
        .filter_module("netdev_broker", log::LevelFilter::Debug)
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
    set_level(c.log_level);
    Ok(())
}
