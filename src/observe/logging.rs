//! Application logging: env_logger writing to stdout, a file, or both (`log_mode`). The level
//! and the file can change while running (SIGHUP): [`set_level`], [`reopen`].

use crate::config::{Config, LogMode};
use parking_lot::Mutex;
use std::borrow::Cow;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

thread_local! {
    /// The id of the request this thread works for now (an HTTP thread while it handles one,
    /// a session thread while it runs a request's open or exec): every line it logs names it.
    static REQUEST: std::cell::RefCell<Option<std::sync::Arc<str>>> = const { std::cell::RefCell::new(None) };
}

/// While alive, this thread's log lines carry `req=<id>`; the previous id comes back on drop.
pub struct RequestScope {
    previous: Option<std::sync::Arc<str>>,
}

impl RequestScope {
    pub fn enter(id: Option<std::sync::Arc<str>>) -> RequestScope {
        RequestScope {
            previous: REQUEST.with(|r| std::mem::replace(&mut *r.borrow_mut(), id)),
        }
    }
}

impl Drop for RequestScope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        REQUEST.with(|r| *r.borrow_mut() = previous);
    }
}

/// The request id this thread works for now, if any.
pub fn current_request() -> Option<std::sync::Arc<str>> {
    REQUEST.with(|r| r.borrow().clone())
}

/// The log file and its path; [`reopen`] swaps the handle.
static FILE: Mutex<Option<(PathBuf, File)>> = parking_lot::const_mutex(None);

struct Tee {
    stdout: bool,
}

fn open(path: &Path) -> Result<File, String> {
    super::open_append(path)
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
    let file = match c.restart.log_mode {
        LogMode::Stdout => None,
        LogMode::File | LogMode::Both => {
            Some((c.restart.log_file.clone(), open(&c.restart.log_file)?))
        }
    };
    *FILE.lock() = file;
    let tee = Tee {
        stdout: c.restart.log_mode != LogMode::File,
    };
    let mut b = env_logger::Builder::new();
    // Our own lines down to DEBUG, libraries only when they warn; the global maximum
    // (log_level, changeable by a reload) cuts both.
    b.filter_level(log::LevelFilter::Warn)
        .filter_module("netdev_broker", log::LevelFilter::Debug)
        .format(|buf, rec| {
            let ts = crate::util::iso8601(std::time::SystemTime::now());
            let msg = rec.args().to_string();
            let req = current_request()
                .map(|r| format!("req={r} "))
                .unwrap_or_default();
            writeln!(
                buf,
                "{ts} {:<5} [{}] {req}{}",
                rec.level(),
                std::thread::current().name().unwrap_or("-"),
                escape_controls(&msg)
            )
        })
        .target(env_logger::Target::Pipe(Box::new(tee)));
    // A second init (tests start several brokers in one process) keeps the first logger.
    let _ = b.try_init();
    set_level(c.live.log_level);
    Ok(())
}

/// A log message as one line: control characters (C0, DEL, C1) and the Unicode line and
/// paragraph separators are written as escapes (`\n`, `\r`, `\t`, `\x1b`, `\u{85}`), so a
/// value from a request or a device (a username, a hostname, a prompt) can never start a
/// record of its own or move the terminal's cursor. Other text, backslashes included, is kept.
pub fn escape_controls(msg: &str) -> Cow<'_, str> {
    let special = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    if !msg.chars().any(special) {
        return Cow::Borrowed(msg);
    }
    let mut out = String::with_capacity(msg.len() + 16);
    for c in msg.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && special(c) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if special(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn control_characters_are_escaped_and_nothing_else() {
        let cases = [
            (
                "plain text, quotes \" ' and \\ stay",
                "plain text, quotes \" ' and \\ stay",
            ),
            (
                "ops\n2026-01-01T00:00:00Z INFO  [x] forged",
                "ops\\n2026-01-01T00:00:00Z INFO  [x] forged",
            ),
            ("a\r\nb\tc", "a\\r\\nb\\tc"),
            ("nul\0 esc\x1b[2J del\x7f", "nul\\x00 esc\\x1b[2J del\\x7f"),
            ("c1\u{85}next\u{9b}", "c1\\u{85}next\\u{9b}"),
            ("ls\u{2028}ps\u{2029}", "ls\\u{2028}ps\\u{2029}"),
            (
                "umlaut \u{e4} and \u{20ac} kept",
                "umlaut \u{e4} and \u{20ac} kept",
            ),
        ];
        for (input, want) in cases {
            let got = escape_controls(input);
            assert_eq!(got, want, "{input:?}");
            assert!(!got.contains('\n') && !got.contains('\r'));
        }
    }
}
