//! A small IOS-like CLI for sshd's `ForceCommand` (the latency device of benches/run): prompt
//! `R1#`, its own echo in raw mode on a pty, `terminal length/width`, `show clock`, `show
//! version`, `% Invalid input` for the rest, `exit`. Like a real device it drops type-ahead:
//! whatever arrived before the first prompt is discarded.

use std::io::{Read, Write};

const PROMPT: &[u8] = b"R1#";

fn answer(line: &str) -> Option<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let out = match words.as_slice() {
        [] => String::new(),
        ["exit"] | ["logout"] | ["quit"] => return None,
        ["terminal", "length" | "width", _] | ["terminal", "no", "monitor"] | ["enable"] => {
            String::new()
        }
        ["show", "clock"] => "*18:24:24.123 UTC Mon Nov 23 2026\r\n".into(),
        ["show", "version"] => concat!(
            "Cisco IOS Software, IOSv Software (VIOS-ADVENTERPRISEK9-M), Version 15.9(3)M4\r\n",
            "ROM: Bootstrap program is IOSv\r\n",
            "R1 uptime is 1 week, 2 days, 3 hours, 4 minutes\r\n",
            "System image file is \"flash0:/vios-adventerprisek9-m\"\r\n",
            "Configuration register is 0x0\r\n"
        )
        .into(),
        _ => "                ^\r\n% Invalid input detected at '^' marker.\r\n\r\n".into(),
    };
    Some(out)
}

fn main() {
    let stdin_fd = 0;
    // SAFETY: isatty/tcgetattr/tcsetattr/tcflush on fd 0 with termios structs on our stack.
    let tty = unsafe { libc::isatty(stdin_fd) == 1 };
    if tty {
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(stdin_fd, &mut t) == 0 {
                libc::cfmakeraw(&mut t);
                libc::tcsetattr(stdin_fd, libc::TCSANOW, &t);
            }
        }
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(b"\r\n");
    let _ = out.flush();
    // Type-ahead is dropped: input that came before the prompt never reaches the CLI.
    std::thread::sleep(std::time::Duration::from_millis(20));
    if tty {
        unsafe { libc::tcflush(stdin_fd, libc::TCIFLUSH) };
    } else {
        unsafe {
            let fl = libc::fcntl(stdin_fd, libc::F_GETFL);
            libc::fcntl(stdin_fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
            let mut sink = [0u8; 4096];
            while libc::read(stdin_fd, sink.as_mut_ptr().cast(), sink.len()) > 0 {}
            libc::fcntl(stdin_fd, libc::F_SETFL, fl);
        }
    }
    let _ = out.write_all(PROMPT);
    let _ = out.flush();
    let mut stdin = std::io::stdin().lock();
    let mut line: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    let mut last_cr = false;
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut reply: Vec<u8> = Vec::new();
        for &b in &buf[..n] {
            match b {
                b'\n' if last_cr => {}
                b'\r' | b'\n' => {
                    let text = String::from_utf8_lossy(&line).to_string();
                    line.clear();
                    reply.extend_from_slice(b"\r\n");
                    match answer(&text) {
                        Some(a) => reply.extend_from_slice(a.as_bytes()),
                        None => {
                            let _ = out.write_all(&reply);
                            let _ = out.flush();
                            return;
                        }
                    }
                    reply.extend_from_slice(PROMPT);
                }
                0x08 | 0x7f if line.pop().is_some() => {
                    reply.extend_from_slice(b"\x08 \x08");
                }
                0x08 | 0x7f => {}
                _ if b >= 0x20 => {
                    line.push(b);
                    reply.push(b);
                }
                _ => {}
            }
            last_cr = b == b'\r';
        }
        if out.write_all(&reply).and_then(|_| out.flush()).is_err() {
            return;
        }
    }
}
