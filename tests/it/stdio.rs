//! The fake device's stdio front, as sshd's ForceCommand runs it (examples/fake_ios_shell.rs,
//! the latency device of benches/run): in a child process (this test binary again, running
//! `stdio_child`), on pipes, so the session's own echo is all there is.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CHILD: &str = "FAKE_DEVICE_STDIO_CHILD";

/// The child: what examples/fake_ios_shell.rs does (cisco_ios at `R1#`), then exit.
#[test]
#[ignore = "run by stdio_front_drops_type_ahead_runs_commands_and_exits in a child process"]
fn stdio_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let cfg = fake_device::DeviceConfig {
        start_privileged: true,
        ..Default::default()
    };
    let log = fake_device::stdio::run(cfg).expect("stdio front");
    assert_eq!(log.journal().last().map(String::as_str), Some("exit"));
    std::process::exit(0);
}

#[test]
fn stdio_front_drops_type_ahead_runs_commands_and_exits() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "stdio::stdio_child",
            "--exact",
            "--include-ignored",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
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
    // (After the test harness's own "running 1 test" line.)
    let first = until("R1#");
    assert!(first.ends_with("test\n\r\nR1#"), "{first:?}");
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
