//! The stdio front: one session on stdin/stdout, for an sshd `ForceCommand` (the latency device
//! of benches/run) or `busybox telnetd -l`. On a terminal the line is put in raw mode (the
//! session does its own echo, like a device on a vty) and restored at the end. Like a real
//! device it drops type-ahead: whatever arrived before the first prompt is discarded. The
//! session starts at once (the transport has authenticated the user) and ends the program
//! when it ends (`exit`, the exec timeout, `drop`, `reload`) or when stdin closes.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::{self, Session};
use crate::{DeviceConfig, Log};

const STDIN: libc::c_int = 0;

/// Restores the terminal's settings when dropped.
struct RawMode(Option<libc::termios>);

impl RawMode {
    fn enter() -> RawMode {
        // SAFETY: isatty/tcgetattr/tcsetattr on fd 0 with a termios struct on our stack.
        unsafe {
            if libc::isatty(STDIN) != 1 {
                return RawMode(None);
            }
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(STDIN, &mut t) != 0 {
                return RawMode(None);
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(STDIN, libc::TCSANOW, &t);
            RawMode(Some(saved))
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            // SAFETY: restoring the settings read from fd 0 above.
            unsafe { libc::tcsetattr(STDIN, libc::TCSANOW, t) };
        }
    }
}

/// Discards the input that is already there (type-ahead before the first prompt).
fn drop_type_ahead(tty: bool) {
    // SAFETY: tcflush/fcntl/read on fd 0 into a buffer on our stack.
    unsafe {
        if tty {
            libc::tcflush(STDIN, libc::TCIFLUSH);
            return;
        }
        let fl = libc::fcntl(STDIN, libc::F_GETFL);
        libc::fcntl(STDIN, libc::F_SETFL, fl | libc::O_NONBLOCK);
        let mut sink = [0u8; 4096];
        while libc::read(STDIN, sink.as_mut_ptr().cast(), sink.len()) > 0 {}
        libc::fcntl(STDIN, libc::F_SETFL, fl);
    }
}

/// Waits until stdin is readable or `timeout` passes (None: no limit); true when readable.
fn wait_readable(timeout: Option<Duration>) -> bool {
    let ms = timeout.map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as i32);
    let mut pfd = libc::pollfd {
        fd: STDIN,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd on our stack.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    n > 0
}

/// Runs one session of `cfg` on stdin/stdout until it ends; returns what it received.
pub fn run(cfg: DeviceConfig) -> io::Result<Arc<Log>> {
    let raw = RawMode::enter();
    let log = Arc::new(Log::default());
    let mut out = io::stdout().lock();
    out.write_all(b"\r\n")?;
    out.flush()?;
    std::thread::sleep(Duration::from_millis(20));
    drop_type_ahead(raw.0.is_some());
    let mut s = Session::new(cfg, Arc::clone(&log));
    s.start();
    let mut buf = [0u8; 4096];
    loop {
        s.process_input();
        out.write_all(&s.take_output())?;
        if let Some(tail) = s.take_prompt_tail() {
            out.flush()?;
            std::thread::sleep(engine::PROMPT_SPLIT_GAP);
            out.write_all(&tail)?;
        }
        out.flush()?;
        if s.take_end().is_some() {
            return Ok(log);
        }
        if s.is_writing() {
            std::thread::sleep(s.line_delay());
            s.job_step();
            continue;
        }
        let wait = s
            .deadline()
            .map(|at| at.saturating_duration_since(Instant::now()));
        if wait_readable(wait) {
            // SAFETY: read into a buffer on our stack.
            let n = unsafe { libc::read(STDIN, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return Ok(log);
            }
            s.feed(&buf[..n as usize]);
        }
        let now = Instant::now();
        if s.deadline().is_some_and(|at| now >= at) {
            s.on_timer(now);
        }
    }
}
