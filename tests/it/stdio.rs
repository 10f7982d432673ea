//! The fake device's stdio front, as sshd's ForceCommand runs it (examples/fake_ios_shell.rs,
//! the latency device of benches/run): on pipes here, so the session's own echo is all there is.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `target/<profile>/examples/fake_ios_shell` (cargo test builds the examples).
fn shell_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("examples").join("fake_ios_shell")
}

#[test]
fn stdio_front_drops_type_ahead_runs_commands_and_exits() {
    let mut child = Command::new(shell_binary())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("examples/fake_ios_shell (cargo test builds it)");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let mut until = |needle: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !seen.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(b) => seen.push_str(&String::from_utf8_lossy(&b)),
                Err(_) => panic!("waiting for {needle:?}, got {seen:?}"),
            }
        }
        let end = seen.find(needle).unwrap() + needle.len();
        seen.drain(..end).collect()
    };
    // Sent before the first prompt: dropped, like a device does.
    stdin.write_all(b"reload\r").unwrap();
    assert_eq!(until("R1#"), "\r\nR1#");
    stdin.write_all(b"show clock\r").unwrap();
    let out = until("R1#");
    assert!(
        out.starts_with("show clock\r\n*") && out.contains(" UTC "),
        "{out:?}"
    );
    stdin
        .write_all(b"terminal length 0\rshow long 30\r")
        .unwrap();
    until("R1#");
    let out = until("R1#");
    assert_eq!(out.lines().count(), 32, "{out:?}");
    stdin.write_all(b"show bogus\r").unwrap();
    assert!(until("R1#").contains("% Invalid input detected at '^' marker."));
    stdin.write_all(b"exit\r").unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the shell did not exit"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success());
}
