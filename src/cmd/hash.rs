//! `netdev-broker hash-password [--cost N]`: read a password (without echo on a terminal, or
//! the first line of standard input) and print its bcrypt hash for `web_users`.

use crate::secret::Secret;
use std::io::{BufRead, Write};

pub const DEFAULT_COST: u32 = 12;

/// Terminal echo off until dropped (restored even on an early return).
struct NoEcho {
    saved: libc::termios,
}

impl NoEcho {
    fn new() -> Option<NoEcho> {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a zero-initialised termios that tcgetattr
        // fills in; no pointer outlives the calls.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return None;
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            t.c_lflag |= libc::ECHONL;
            if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                return None;
            }
            Some(NoEcho { saved })
        }
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in new().
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &self.saved);
        }
    }
}

fn read_line(prompt: Option<&str>, what: &str) -> Result<Secret, String> {
    if let Some(p) = prompt {
        eprint!("{p}");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the {what}: {e}"))?;
    let s = Secret::new(line.trim_end_matches(['\n', '\r']).to_string());
    line.clear();
    Ok(s)
}

fn stdin_is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(0) == 1 }
}

/// One secret line (`what`: "token", for messages): asked once without echo on a terminal,
/// else the first line of standard input; the line end is not part of it.
pub fn read_secret_line(prompt: &str, what: &str) -> Result<Secret, String> {
    if stdin_is_tty() {
        let _guard = NoEcho::new().ok_or("cannot turn off terminal echo")?;
        read_line(Some(prompt), what)
    } else {
        read_line(None, what)
    }
}

/// The password from the terminal (asked twice) or from standard input.
pub fn read_password() -> Result<Secret, String> {
    let pw = if stdin_is_tty() {
        let _guard = NoEcho::new().ok_or("cannot turn off terminal echo")?;
        let a = read_line(Some("Password: "), "password")?;
        let b = read_line(Some("Again: "), "password")?;
        if a.expose() != b.expose() {
            return Err("the passwords differ".into());
        }
        a
    } else {
        read_line(None, "password")?
    };
    if pw.is_empty() {
        return Err("empty password".into());
    }
    Ok(pw)
}

pub fn run(cost: u32) -> Result<String, String> {
    let pw = read_password()?;
    bcrypt::hash(pw.expose(), cost).map_err(|e| format!("bcrypt: {e}"))
}
