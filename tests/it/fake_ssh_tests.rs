//! Self-tests of the fake SSH device (the `fake-device` crate's SSH front), using libssh2 (the
//! `ssh2` crate) as the client, like the broker does.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use fake_device::{
    gen_client_key_openssh, gen_host_key_openssh, persona_test, AuthMode, DeviceConfig, FakeDevice,
    Input, PersonaTest,
};

const TIMEOUT: Duration = Duration::from_secs(5);

fn connect(port: u16) -> ssh2::Session {
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut sess = ssh2::Session::new().expect("session");
    sess.set_tcp_stream(tcp);
    sess.set_timeout(10_000);
    sess.handshake().expect("handshake");
    sess
}

struct Shell {
    sess: ssh2::Session,
    ch: ssh2::Channel,
    buf: Vec<u8>,
}

fn open_shell(sess: ssh2::Session) -> Shell {
    let mut ch = sess.channel_session().expect("channel_session");
    ch.request_pty("vt100", None, Some((511, 24, 0, 0)))
        .expect("pty");
    ch.shell().expect("shell");
    sess.set_blocking(false);
    Shell {
        sess,
        ch,
        buf: Vec::new(),
    }
}

fn shell(dev: &FakeDevice) -> Shell {
    let sess = connect(dev.port());
    sess.userauth_password("admin", "cisco").expect("auth");
    open_shell(sess)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Shell {
    fn send(&mut self, s: &str) {
        let mut data = s.as_bytes();
        let deadline = Instant::now() + TIMEOUT;
        while !data.is_empty() {
            match self.ch.write(data) {
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "write timed out");
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("write failed: {e}"),
            }
        }
    }

    /// Read what is available. Ok(0) = nothing right now, Err = EOF / connection gone.
    fn pump(&mut self) -> Result<usize, ()> {
        let mut b = [0u8; 32768];
        match self.ch.read(&mut b) {
            Ok(0) => Err(()),
            Ok(n) => {
                self.buf.extend_from_slice(&b[..n]);
                Ok(n)
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
            Err(_) => Err(()),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// Wait for `pat`; return (and consume) all output up to and including it.
    fn expect(&mut self, pat: &str) -> String {
        self.expect_within(pat, TIMEOUT)
    }

    fn expect_within(&mut self, pat: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut searched = 0;
        loop {
            if let Some(i) = find(&self.buf[searched..], pat.as_bytes()) {
                let out: Vec<u8> = self.buf.drain(..searched + i + pat.len()).collect();
                return String::from_utf8_lossy(&out).into_owned();
            }
            searched = self.buf.len().saturating_sub(pat.len());
            match self.pump() {
                Ok(0) => {
                    assert!(
                        Instant::now() < deadline,
                        "timeout waiting for {pat:?}; got {:?}",
                        self.text()
                    );
                    std::thread::sleep(Duration::from_millis(2));
                }
                Ok(_) => {}
                Err(()) => panic!("closed while waiting for {pat:?}; got {:?}", self.text()),
            }
        }
    }

    /// Send a command line (CR-terminated) and wait for `prompt`.
    fn cmd(&mut self, cmd: &str, prompt: &str) -> String {
        self.send(&format!("{cmd}\r"));
        self.expect(prompt)
    }

    /// Collect output for `d`, expecting the connection to stay open.
    fn quiet_for(&mut self, d: Duration) -> String {
        let start = self.buf.len();
        let deadline = Instant::now() + d;
        while Instant::now() < deadline {
            match self.pump() {
                Ok(0) => std::thread::sleep(Duration::from_millis(5)),
                Ok(_) => {}
                Err(()) => panic!("unexpectedly closed; got {:?}", self.text()),
            }
        }
        String::from_utf8_lossy(&self.buf[start..]).into_owned()
    }

    /// True if the channel/connection closes within `timeout`.
    fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.pump() {
                Err(()) => return true,
                Ok(0) if Instant::now() >= deadline => return false,
                Ok(0) => std::thread::sleep(Duration::from_millis(5)),
                Ok(_) => {}
            }
        }
    }
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

#[test]
fn fake_password_auth_prompt_and_show_version() {
    let dev = FakeDevice::start(DeviceConfig::default());
    let mut sh = shell(&dev);
    assert_eq!(sh.expect("R1>"), "R1>");
    assert_eq!(
        sh.cmd("terminal length 0", "R1>"),
        "terminal length 0\r\nR1>"
    );
    let out = sh.cmd("show version", "R1>");
    assert!(
        out.starts_with("show version\r\nCisco IOS Software, "),
        "{out:?}"
    );
    assert!(out.contains("R1 uptime is"), "{out:?}");
    assert!(out.ends_with("\r\nR1>"), "{out:?}");
    assert!(!out.contains("--More--"));
    let out = sh.cmd("sh ip int br", "R1>");
    assert!(out.contains("GigabitEthernet0/0"), "{out:?}");
    assert_eq!(
        dev.lines_received(),
        vec!["terminal length 0", "show version", "sh ip int br"]
    );
    assert_eq!(dev.active_connections(), 1);
    assert_eq!(dev.total_connections(), 1);
    drop(sh);
    assert!(wait_until(TIMEOUT, || dev.active_connections() == 0));
}

struct Kbd(&'static str);

impl ssh2::KeyboardInteractivePrompt for Kbd {
    fn prompt(
        &mut self,
        _username: &str,
        _instructions: &str,
        prompts: &[ssh2::Prompt<'_>],
    ) -> Vec<String> {
        assert_eq!(prompts.len(), 1);
        assert_eq!(prompts[0].text, "Password: ");
        assert!(!prompts[0].echo);
        vec![self.0.to_string()]
    }
}

#[test]
fn fake_keyboard_interactive_auth() {
    let dev = FakeDevice::start(DeviceConfig::default());
    let sess = connect(dev.port());
    let methods = sess.auth_methods("admin").expect("auth_methods");
    assert!(methods.contains("password"), "{methods}");
    assert!(methods.contains("keyboard-interactive"), "{methods}");
    assert!(sess
        .userauth_keyboard_interactive("admin", &mut Kbd("wrong"))
        .is_err());
    assert!(!sess.authenticated());
    sess.userauth_keyboard_interactive("admin", &mut Kbd("cisco"))
        .expect("kbd-int auth");
    assert!(sess.authenticated());
    let mut sh = open_shell(sess);
    sh.expect("R1>");
}

#[test]
fn fake_wrong_password_rejected() {
    let dev = FakeDevice::start(DeviceConfig::default());
    let sess = connect(dev.port());
    assert!(sess.userauth_password("admin", "nope").is_err());
    assert!(sess.userauth_password("bob", "cisco").is_err());
    assert!(!sess.authenticated());
    // The same connection can retry, like on IOS.
    sess.userauth_password("admin", "cisco").expect("retry");
    assert!(sess.authenticated());
}

#[test]
fn fake_paging_without_terminal_length_0() {
    let dev = FakeDevice::start(DeviceConfig::default());
    let mut sh = shell(&dev);
    sh.expect("R1>");
    sh.send("show long 60\r");
    let page1 = sh.expect(" --More-- ");
    assert!(page1.contains("line 0024 "), "{page1:?}");
    assert!(!page1.contains("line 0025 "), "{page1:?}");
    assert_eq!(sh.quiet_for(Duration::from_millis(200)), "");
    sh.send("\r"); // one more line
    let one = sh.expect(" --More-- ");
    assert!(
        one.contains("line 0025 ") && !one.contains("line 0026 "),
        "{one:?}"
    );
    sh.send(" "); // next page
    let page2 = sh.expect(" --More-- ");
    assert!(page2.contains("line 0049 ") && !page2.contains("line 0050 "));
    sh.send(" ");
    let rest = sh.expect("R1>");
    assert!(rest.contains("line 0060 "), "{rest:?}");

    // q stops the output.
    sh.send("show long 100\r");
    sh.expect(" --More-- ");
    sh.send("q");
    let rest = sh.expect("R1>");
    assert!(!rest.contains("line 0025"), "{rest:?}");

    // Output of at most 24 lines is not paged; after `terminal length 0` nothing is.
    let out = sh.cmd("show long 24", "R1>");
    assert!(!out.contains("--More--"));
    sh.cmd("terminal length 0", "R1>");
    let out = sh.cmd("show long", "R1>");
    assert!(out.contains("line 0100 ") && !out.contains("--More--"));
}

#[test]
fn fake_enable_without_password() {
    let dev = FakeDevice::start(DeviceConfig::default());
    let mut sh = shell(&dev);
    sh.expect("R1>");
    sh.cmd("enable", "R1#");
    assert!(sh.cmd("show privilege", "R1#").contains("level is 15"));
    sh.cmd("enable", "R1#");
    sh.cmd("disable", "R1>");
}

#[test]
fn fake_enable_with_password() {
    let dev = FakeDevice::start(DeviceConfig {
        enable_password: Some("en".into()),
        ..Default::default()
    });
    let mut sh = shell(&dev);
    sh.expect("R1>");
    sh.cmd("enable", "Password: ");
    sh.send("wrong\r");
    let out = sh.expect("R1>");
    assert!(out.contains("% Access denied"), "{out:?}");
    assert!(
        !out.contains("wrong"),
        "password must not be echoed: {out:?}"
    );
    sh.cmd("enable", "Password: ");
    let out = sh.cmd("en", "R1#");
    assert_eq!(out, "\r\nR1#");
    assert_eq!(
        dev.lines_received(),
        vec!["enable", "<hidden>", "enable", "<hidden>"]
    );
}

#[test]
fn fake_config_mode_and_prompts() {
    let dev = FakeDevice::start(DeviceConfig {
        start_privileged: true,
        ..Default::default()
    });
    let mut sh = shell(&dev);
    sh.expect("R1#");
    let out = sh.cmd("conf t", "R1(config)#");
    assert!(out.contains("Enter configuration commands, one per line.  End with CNTL/Z.\r\n"));
    sh.cmd("interface GigabitEthernet0/1", "R1(config-if)#");
    sh.cmd("description uplink", "R1(config-if)#");
    sh.cmd("no shutdown", "R1(config-if)#");
    sh.cmd("exit", "R1(config)#");
    sh.cmd("line vty 0 4", "R1(config-line)#");
    sh.cmd("end", "R1#");
    sh.cmd("configure terminal", "R1(config)#");
    sh.cmd("aaa authentication login default local", "R1(config)#");
    sh.cmd("hostname NEW", "NEW(config)#");
    let out = sh.cmd("bogus command", "NEW(config)#");
    assert_eq!(
        out,
        "bogus command\r\n            ^\r\n% Invalid input detected at '^' marker.\r\n\r\nNEW(config)#"
    );
    sh.cmd("exit", "NEW#");
    sh.cmd("terminal length 0", "NEW#");
    let out = sh.cmd("show running-config", "NEW#");
    assert!(out.contains("\r\nhostname NEW\r\n"), "{out:?}");
    assert!(out.contains("\r\ninterface GigabitEthernet0/1\r\n description uplink\r\n"));
    assert!(out.contains("\r\naaa authentication login default local\r\n"));
    assert!(out.ends_with("end\r\nNEW#"));
}

#[test]
fn fake_invalid_and_incomplete_commands() {
    let dev = FakeDevice::start(DeviceConfig::default());
    let mut sh = shell(&dev);
    sh.expect("R1>");
    let out = sh.cmd("foo bar", "R1>");
    assert_eq!(
        out,
        "foo bar\r\n   ^\r\n% Invalid input detected at '^' marker.\r\n\r\nR1>"
    );
    let out = sh.cmd("show", "R1>");
    assert_eq!(out, "show\r\n% Incomplete command.\r\n\r\nR1>");
    // Privileged-only in user mode.
    let out = sh.cmd("show running-config", "R1>");
    assert_eq!(
        out,
        "show running-config\r\n        ^\r\n% Invalid input detected at '^' marker.\r\n\r\nR1>"
    );
    let out = sh.cmd("configure terminal", "R1>");
    assert!(out.contains("% Invalid input"), "{out:?}");
    // Empty line: just a new prompt.
    assert_eq!(sh.cmd("", "R1>"), "\r\nR1>");
}

#[test]
fn fake_input_chunking_and_line_endings() {
    let dev = FakeDevice::start(DeviceConfig::default());
    let mut sh = shell(&dev);
    sh.expect("R1>");
    sh.send("terminal length 0\r\nshow clock\nshow privilege\r");
    sh.expect("R1>");
    sh.expect("R1>");
    let out = sh.expect("R1>");
    assert!(out.contains("level is 1"), "{out:?}");
    for part in ["sh", "ow ver", "sion", "\r", "\n"] {
        sh.send(part);
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = sh.expect("R1>");
    assert!(out.contains("uptime is"), "{out:?}");
    assert_eq!(sh.quiet_for(Duration::from_millis(150)), "");
    assert_eq!(
        dev.lines_received(),
        vec![
            "terminal length 0",
            "show clock",
            "show privilege",
            "show version"
        ]
    );
}

#[test]
fn fake_write_copy_reload() {
    let dev = FakeDevice::start(DeviceConfig {
        start_privileged: true,
        ..Default::default()
    });
    let mut sh = shell(&dev);
    sh.expect("R1#");
    let out = sh.cmd("write memory", "R1#");
    assert!(
        out.contains("Building configuration...\r\n[OK]\r\n"),
        "{out:?}"
    );
    assert!(sh.cmd("wr", "R1#").contains("[OK]"));
    sh.cmd(
        "copy running-config startup-config",
        "Destination filename [startup-config]? ",
    );
    assert!(sh.cmd("", "R1#").contains("[OK]"));
    sh.cmd("reload", "Proceed with reload? [confirm]");
    sh.cmd("n", "R1#");
    sh.cmd("reload", "Proceed with reload? [confirm]");
    sh.send("\r");
    sh.expect("Reloading...");
    assert!(sh.closed_within(TIMEOUT));
}

#[test]
fn fake_line_editing_decides_what_is_executed() {
    let dev = FakeDevice::start(DeviceConfig {
        start_privileged: true,
        ..Default::default()
    });
    let mut sh = shell(&dev);
    sh.expect("R1#");
    // (bytes, prompts before the reload question)
    let edits = [
        ("x\x08reload\r", 0),
        ("relx\x7foad\r", 0),
        ("hostn\x15reload\r", 0),
        ("\x1b[Creload\r", 0),
        ("reoad\x1b[D\x1b[D\x1b[Dl\r", 0),
        ("show clock\x1areload\r", 1),
    ];
    for (bytes, prompts) in edits {
        sh.send(bytes);
        for _ in 0..prompts {
            sh.expect("R1#");
        }
        sh.expect("Proceed with reload? [confirm]");
        sh.cmd("n", "R1#");
    }
    // Ctrl-C drops the line.
    sh.send("reload\x03");
    assert_eq!(sh.expect("R1#"), "reload^C\r\nR1#");
    assert_eq!(
        dev.journal(),
        [
            "reload",
            "reload",
            "reload",
            "reload",
            "reload",
            "show clock",
            "reload"
        ]
    );
    assert!(dev.journal_entries().iter().all(|e| e.mode == "priv"));
    // The answers are inputs, not journal lines.
    assert_eq!(
        dev.lines_received()
            .iter()
            .filter(|l| l.as_str() == "n")
            .count(),
        6
    );
    // The echo is what a terminal needs: the erase, then the word.
    sh.send("relx\x7foad\r");
    assert_eq!(
        sh.expect("[confirm]"),
        "relx\x08 \x08oad\r\nProceed with reload? [confirm]"
    );
}

#[test]
fn fake_ctrl_z_runs_the_line_then_ends_and_history_recalls() {
    let dev = FakeDevice::start(DeviceConfig {
        start_privileged: true,
        ..Default::default()
    });
    let mut sh = shell(&dev);
    sh.expect("R1#");
    sh.cmd("configure terminal", "R1(config)#");
    sh.send("hostname CORE1\x1a");
    assert_eq!(sh.expect("CORE1#"), "hostname CORE1^Z\r\nCORE1#");
    sh.cmd("conf t", "CORE1(config)#");
    sh.send("\x1a");
    assert_eq!(sh.expect("CORE1#"), "^Z\r\nCORE1#");
    sh.cmd("conf t", "CORE1(config)#");
    sh.send("interface Gi0/1\x03");
    assert_eq!(sh.expect("CORE1#"), "interface Gi0/1^C\r\nCORE1#");
    // Up arrow walks the EXEC history at an EXEC prompt, newest first; Ctrl-P in config mode
    // the config history (the line dropped with Ctrl-C is in neither).
    sh.send("\x1b[A\x1b[A\x1b[A\r");
    sh.expect("CORE1(config)#");
    sh.send("\x10\r");
    assert!(sh
        .expect("CORE1(config)#")
        .ends_with("hostname CORE1\r\nCORE1(config)#"));
    // (The persona takes any unknown line in config mode as configuration.)
    sh.send("write memory\x1a");
    assert_eq!(sh.expect("CORE1#"), "write memory^Z\r\nCORE1#");
    let got: Vec<(String, String)> = dev
        .journal_entries()
        .into_iter()
        .map(|e| (e.mode, e.line))
        .collect();
    let want = [
        ("priv", "configure terminal"),
        ("config", "hostname CORE1"),
        ("priv", "conf t"),
        ("priv", "conf t"),
        ("priv", "configure terminal"),
        ("config", "hostname CORE1"),
        ("config", "write memory"),
    ];
    assert_eq!(
        got,
        want.map(|(m, l)| (m.to_string(), l.to_string())).to_vec()
    );
}

#[test]
fn fake_question_mark_shows_help_and_keeps_the_line() {
    let dev = FakeDevice::start(DeviceConfig::default());
    let mut sh = shell(&dev);
    sh.expect("R1>");
    sh.send("sh?");
    assert_eq!(sh.expect("R1>sh"), "sh?\r\nshow\r\n\r\nR1>sh");
    sh.send("ow ?");
    let help = sh.expect("R1>show ");
    assert!(help.contains("\r\n  clock\r\n"), "{help:?}");
    assert!(!help.contains("running-config"), "{help:?}");
    sh.send("terminal ?");
    sh.expect("R1>show terminal ");
    sh.send("\x15terminal length ?");
    let help = sh.expect("R1>terminal length ");
    assert!(help.contains("\r\n  <0-512>\r\n"), "{help:?}");
    sh.send("0 ?");
    assert!(sh
        .expect("R1>terminal length 0 ")
        .contains("\r\n  <cr>\r\n"));
    sh.send("\r");
    sh.expect("R1>");
    assert_eq!(dev.journal(), ["terminal length 0 "]);
}

#[test]
fn fake_exit_closes_with_status_0() {
    let dev = FakeDevice::start(DeviceConfig::default());
    let mut sh = shell(&dev);
    sh.expect("R1>");
    sh.send("exit\r");
    assert!(sh.closed_within(TIMEOUT));
    assert!(sh.ch.eof());
    sh.sess.set_blocking(true);
    assert_eq!(sh.ch.exit_status().unwrap(), 0);
    assert!(wait_until(TIMEOUT, || dev.active_connections() == 0));
}

#[test]
fn fake_show_drop_and_kill_all_close_connections() {
    let dev = FakeDevice::start(DeviceConfig::default());
    let mut a = shell(&dev);
    a.expect("R1>");
    a.send("show drop\r");
    assert!(a.closed_within(TIMEOUT));
    assert!(wait_until(TIMEOUT, || dev.active_connections() == 0));

    let mut b = shell(&dev);
    let mut c = shell(&dev);
    b.expect("R1>");
    c.expect("R1>");
    assert_eq!(dev.active_connections(), 2);
    dev.kill_all();
    assert_eq!(dev.active_connections(), 0);
    assert!(b.closed_within(TIMEOUT));
    assert!(c.closed_within(TIMEOUT));
    assert_eq!(dev.total_connections(), 3);

    // The device still accepts new connections.
    let mut d = shell(&dev);
    d.expect("R1>");
}

#[test]
fn fake_inject_reaches_client() {
    let dev = FakeDevice::start(DeviceConfig::default());
    let mut a = shell(&dev);
    let mut b = shell(&dev);
    a.expect("R1>");
    b.expect("R1>");
    let msg = "\r\n*Mar  1 00:01:02: %LINK-3-UPDOWN: Interface Gi0/1, changed state to down\r\n";
    dev.inject(msg);
    assert_eq!(a.expect("to down\r\n"), msg);
    assert_eq!(b.expect("to down\r\n"), msg);
}

#[test]
fn fake_freeze_hang_and_slow() {
    let dev = FakeDevice::start(DeviceConfig::default());
    let mut sh = shell(&dev);
    sh.expect("R1>");
    dev.set_freeze(true);
    sh.send("show clock\r");
    assert_eq!(sh.quiet_for(Duration::from_millis(300)), "");
    dev.set_freeze(false);
    let out = sh.expect("R1>");
    assert!(out.starts_with("show clock\r\n*"), "{out:?}");

    let t0 = Instant::now();
    let out = sh.cmd("show slow 2", "R1>");
    assert!(
        t0.elapsed() >= Duration::from_millis(1800),
        "{:?}",
        t0.elapsed()
    );
    assert!(out.contains("slow line 2 of 2\r\n"), "{out:?}");

    sh.send("show hang\r");
    sh.expect("working...\r\n");
    sh.send("show version\r");
    assert_eq!(sh.quiet_for(Duration::from_millis(300)), "");
    dev.inject("still alive\r\n");
    sh.expect("still alive\r\n");
    assert_eq!(
        dev.lines_received(),
        vec!["show clock", "show slow 2", "show hang"]
    );
}

#[test]
fn fake_flood_respects_flow_control() {
    let dev = FakeDevice::start(DeviceConfig::default());
    let mut sh = shell(&dev);
    sh.expect("R1>");
    sh.cmd("terminal length 0", "R1>");
    sh.send("show flood 3\r");
    // Don't read for a while: the device must block on the SSH window, not buffer 3 MiB.
    std::thread::sleep(Duration::from_millis(300));
    let out = sh.expect_within("R1>", Duration::from_secs(20));
    let body = out.strip_prefix("show flood 3\r\n").unwrap();
    assert_eq!(body.len(), 3 * 1024 * 1024 + "R1>".len());
    assert!(body.starts_with("flood 000000001 "));
}

#[test]
fn fake_banner_and_start_privileged() {
    let dev = FakeDevice::start(DeviceConfig {
        banner: Some("Authorized access only! #>\nSecond line".into()),
        start_privileged: true,
        hostname: "SW9".into(),
        ..Default::default()
    });
    let mut sh = shell(&dev);
    assert_eq!(
        sh.expect("SW9#"),
        "Authorized access only! #>\r\nSecond line\r\nSW9#"
    );
}

#[test]
fn fake_exec_timeout_disconnects() {
    let dev = FakeDevice::start(DeviceConfig {
        exec_timeout_secs: Some(1),
        ..Default::default()
    });
    let mut sh = shell(&dev);
    sh.expect("R1>");
    // Input resets the idle timer.
    std::thread::sleep(Duration::from_millis(700));
    sh.cmd("show clock", "R1>");
    std::thread::sleep(Duration::from_millis(700));
    sh.cmd("show clock", "R1>");
    assert!(sh.closed_within(Duration::from_secs(3)));
}

#[test]
fn fake_exec_request_is_refused() {
    let dev = FakeDevice::start(DeviceConfig::default());
    let sess = connect(dev.port());
    sess.userauth_password("admin", "cisco").unwrap();
    let mut ch = sess.channel_session().unwrap();
    assert!(ch.exec("show version").is_err());
}

#[test]
fn fake_50_concurrent_connections() {
    let dev = FakeDevice::start(DeviceConfig::default());
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                s.spawn(|| {
                    let mut sh = shell(&dev);
                    sh.expect("R1>");
                    sh.cmd("terminal length 0", "R1>");
                    let out = sh.cmd("show version", "R1>");
                    assert!(out.contains("R1 uptime is"));
                    sh
                })
            })
            .collect();
        let shells: Vec<Shell> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(dev.active_connections(), 50);
        drop(shells);
    });
    assert_eq!(dev.total_connections(), 50);
    assert!(wait_until(TIMEOUT, || dev.active_connections() == 0));
}

#[test]
fn fake_drop_is_prompt_and_closes_clients() {
    let dev = FakeDevice::start(DeviceConfig::default());
    let port = dev.port();
    let mut sh = shell(&dev);
    sh.expect("R1>");
    sh.send("show hang\r");
    sh.expect("working...");
    let t0 = Instant::now();
    drop(dev);
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert!(sh.closed_within(TIMEOUT));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn fake_client_close_is_answered() {
    let dev = FakeDevice::start(DeviceConfig::default());
    let mut sh = shell(&dev);
    sh.expect("R1>");
    sh.sess.set_blocking(true);
    let t0 = Instant::now();
    sh.ch.close().expect("close");
    sh.ch.wait_close().expect("wait_close");
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());

    // The SSH connection survives; a new shell channel on it works.
    let mut sh2 = open_shell(sh.sess.clone());
    sh2.expect("R1>");
    assert_eq!(dev.active_connections(), 1);

    // Closing while the device is blocked on flow control (client not reading): libssh2's
    // close() returns after reading one packet, and wait_eof() refuses to run while the
    // receive window is full (LIBSSH2_ERROR_CHANNEL_WINDOW_FULL); the client has to keep
    // reading (which re-opens the window) until EOF. The device stops producing output as
    // soon as it sees the close, so only in-flight data has to be drained.
    sh2.cmd("terminal length 0", "R1>");
    sh2.send("show flood 64\r");
    std::thread::sleep(Duration::from_millis(300));
    sh2.sess.set_blocking(true);
    let t0 = Instant::now();
    sh2.ch.close().expect("close");
    sh2.sess.set_blocking(false);
    assert!(sh2.closed_within(Duration::from_secs(3)));
    assert!(sh2.buf.len() < 8 * 1024 * 1024, "{}", sh2.buf.len());
    sh2.sess.set_blocking(true);
    sh2.ch.wait_close().expect("wait_close");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

#[test]
fn fake_abrupt_client_disconnects_do_not_leak() {
    let dev = FakeDevice::start(DeviceConfig::default());
    // The accept loop runs in `block_on`, it is not a task.
    assert_eq!(dev.alive_tasks(), 0);
    for i in 0..3 {
        // TCP connect and close before the SSH banner exchange.
        drop(TcpStream::connect(("127.0.0.1", dev.port())).unwrap());
        // Handshake only / authenticated but no channel.
        drop(connect(dev.port()));
        let s = connect(dev.port());
        s.userauth_password("admin", "cisco").unwrap();
        drop(s);
        // Mid-line, mid-flood (device blocked on flow control), hanging, paged, frozen.
        let mut a = shell(&dev);
        a.expect("R1>");
        a.send("show ver");
        let mut b = shell(&dev);
        b.expect("R1>");
        b.cmd("terminal length 0", "R1>");
        b.send("show flood 16\r");
        let mut c = shell(&dev);
        c.expect("R1>");
        c.send("show hang\r");
        c.expect("working...");
        let mut d = shell(&dev);
        d.expect("R1>");
        d.send("show long 100\r");
        d.expect("--More--");
        let mut e = shell(&dev);
        e.expect("R1>");
        if i == 1 {
            dev.set_freeze(true);
            e.send("show version\r");
        }
        std::thread::sleep(Duration::from_millis(100));
        drop((a, b, c, d, e));
        assert!(
            wait_until(TIMEOUT, || dev.active_connections() == 0),
            "{}",
            dev.active_connections()
        );
        dev.set_freeze(false);
    }
    assert!(
        wait_until(TIMEOUT, || dev.alive_tasks() == 0),
        "leaked tasks: {}",
        dev.alive_tasks()
    );
    assert_eq!(dev.total_connections(), 3 * 8);
    // Device-side endings: exit, show drop, reload, kill_all.
    let mut a = shell(&dev);
    let mut b = shell(&dev);
    let mut c = shell(&dev);
    let mut d = shell(&dev);
    a.expect("R1>");
    b.expect("R1>");
    c.expect("R1>");
    d.expect("R1>");
    a.send("exit\r");
    b.send("show drop\r");
    c.cmd("enable", "R1#");
    c.send("reload\r\r");
    assert!(a.closed_within(TIMEOUT) && b.closed_within(TIMEOUT) && c.closed_within(TIMEOUT));
    dev.kill_all();
    assert!(d.closed_within(TIMEOUT));
    assert!(
        wait_until(TIMEOUT, || dev.alive_tasks() == 0),
        "leaked tasks: {}",
        dev.alive_tasks()
    );
    // Still healthy.
    let mut sh = shell(&dev);
    sh.expect("R1>");
}

// ---------------------------------------------------------------------------------------------
// Personas: every fixture driven through its own `test:` section
// ---------------------------------------------------------------------------------------------

/// Log in and reach the first prompt (pressing a key where the platform asks for one).
fn persona_login(dev: &FakeDevice, t: &PersonaTest) -> Shell {
    let mut sh = shell(dev);
    if let Some(key) = &t.press_any_key {
        let before = sh.expect(key);
        assert!(
            !before.contains(&t.prompt),
            "prompt before the key: {before:?}"
        );
        assert_eq!(sh.quiet_for(Duration::from_millis(150)), "");
        sh.send("\r");
    }
    sh.expect(&t.prompt);
    sh
}

/// Log in and reach the privileged prompt.
fn persona_privileged(dev: &FakeDevice, t: &PersonaTest) -> Shell {
    let mut sh = persona_login(dev, t);
    if let Some(en) = &t.enable {
        sh.send(&format!("{en}\r"));
        for x in &t.enable_dialogue {
            sh.expect(&x.question);
            sh.send(&format!("{}\r", x.answer));
        }
        sh.expect(&t.privileged_prompt);
    }
    sh
}

/// The output of `cmd` between its echo line and the prompt, without trailing line ends.
fn body<'a>(out: &'a str, cmd: &str, prompt: &str) -> &'a str {
    let rest = out
        .strip_prefix(&format!("{cmd}\r\n"))
        .unwrap_or_else(|| panic!("no echo of {cmd:?}: {out:?}"));
    rest.strip_suffix(prompt)
        .unwrap_or_else(|| panic!("no prompt {prompt:?}: {out:?}"))
        .trim_end_matches(['\r', '\n'])
}

fn persona_walkthrough(name: &str) {
    let t = persona_test(name);
    assert_eq!(t.persona, name);
    assert!(!t.device_type.is_empty());
    let dev = FakeDevice::start(DeviceConfig::persona(name));
    let mut sh = persona_privileged(&dev, &t);
    let pp = t.privileged_prompt.clone();

    // Paging is on at login: the long command stops at the pager, whose answer is erased.
    if let (Some(more), Some(erase)) = (&t.pager_prompt, &t.pager_erase) {
        sh.send(&format!("{}\r", t.long_command));
        let page = sh.expect(more);
        assert!(!page.contains(&pp), "{page:?}");
        assert!(page.matches("\r\n").count() >= 20, "{page:?}");
        assert_eq!(sh.quiet_for(Duration::from_millis(100)), "");
        sh.send(" ");
        let next = sh.expect(&pp);
        assert!(
            next.starts_with(erase.as_str()),
            "no erase {erase:?}: {next:?}"
        );
    }
    for cmd in t.paging_off.iter().chain(t.width.iter()) {
        let out = sh.cmd(cmd, &pp);
        assert!(out.starts_with(&format!("{cmd}\r\n")), "{out:?}");
        assert!(!out.contains(&t.error_line), "{cmd}: {out:?}");
    }
    let out = sh.cmd(&t.long_command, &pp);
    if let Some(more) = &t.pager_prompt {
        assert!(!out.contains(more.as_str()), "paging still on: {out:?}");
    }

    // The show command's exact output; the invalid command's error.
    let out = sh.cmd(&t.show_command, &pp);
    assert_eq!(
        body(&out, &t.show_command, &pp),
        t.show_output.replace('\n', "\r\n")
    );
    let out = sh.cmd(&t.invalid_command, &pp);
    assert!(
        out.contains(&format!("{}\r\n", t.error_line)),
        "{:?} should print {:?}: {out:?}",
        t.invalid_command,
        t.error_line
    );

    // Config lines, a rejected one, save (in or out of config mode), running config.
    let save = |sh: &mut Shell, prompt: &str| {
        let Some(cmd) = &t.save_command else { return };
        sh.send(&format!("{cmd}\r"));
        for x in &t.save_dialogue {
            sh.expect(&x.question);
            sh.send(&format!("{}\r", x.answer));
        }
        let out = sh.expect(prompt);
        if let Some(done) = &t.save_done {
            assert!(out.contains(done.as_str()), "{out:?}");
        }
    };
    if let (Some(enter), Some(cp)) = (&t.config_enter, &t.config_prompt) {
        sh.cmd(enter, cp);
        for l in &t.config_lines {
            let out = sh.cmd(l, cp);
            assert!(!out.contains(&t.error_line), "{l}: {out:?}");
        }
        if let (Some(bad), Some(err)) = (&t.config_rejected, &t.config_rejected_error) {
            let out = sh.cmd(bad, cp);
            assert!(out.contains(&format!("{err}\r\n")), "{out:?}");
        }
        if t.save_in_config {
            save(&mut sh, cp);
        }
        if let Some(exit) = &t.config_exit {
            sh.cmd(exit, &pp);
        }
    }
    if !t.save_in_config {
        save(&mut sh, &pp);
    }
    if let Some(cmd) = &t.running_config_command {
        let out = sh.cmd(cmd, &pp);
        for l in &t.running_config_contains {
            assert!(out.contains(&format!("\r\n{l}\r\n")), "no {l:?} in {out:?}");
        }
    }
    let answers = dev.answers();
    for x in &t.save_dialogue {
        assert!(
            answers.contains(&(x.question.clone(), x.answer.clone())),
            "{x:?} not in {answers:?}"
        );
    }
    for l in &t.config_lines {
        assert!(dev.inputs().contains(&Input::Command(l.clone())));
    }

    // Logout closes the session.
    sh.send(&format!("{}\r", t.logout_command));
    for _ in 0..2 {
        // Some platforms ask before logging out; answer yes / no-save.
        let mut probe = String::new();
        let deadline = Instant::now() + Duration::from_millis(300);
        while Instant::now() < deadline {
            match sh.pump() {
                Ok(0) => std::thread::sleep(Duration::from_millis(5)),
                Ok(_) => probe = sh.text(),
                Err(()) => break,
            }
        }
        if probe.ends_with(&t.prompt) {
            // Left a nested shell (`sudo -s`): log out of the login shell too.
            sh.buf.clear();
            sh.send(&format!("{}\r", t.logout_command));
        } else if probe.contains("[y/n]") {
            sh.buf.clear();
            sh.send(if probe.contains("save") { "n\r" } else { "y\r" });
        }
    }
    assert!(sh.closed_within(TIMEOUT), "{:?}", sh.text());
}

fn persona_interactive(name: &str) {
    let t = persona_test(name);
    let dev = FakeDevice::start(DeviceConfig::persona(name));
    let mut sh = persona_privileged(&dev, &t);
    let pp = t.privileged_prompt.clone();
    for cmd in &t.paging_off {
        sh.cmd(cmd, &pp);
    }
    assert!(
        !t.interactive.is_empty(),
        "{name} has no interactive commands"
    );
    for d in &t.interactive {
        sh.send(&format!("{}\r", d.command));
        for x in &d.dialogue {
            let out = sh.expect(&x.question);
            assert!(!out.contains(&pp), "{d:?}: prompt before {x:?}: {out:?}");
            sh.send(&format!("{}\r", x.answer));
            if x.hidden && !x.answer.is_empty() {
                let echo = sh.expect("\r\n");
                assert_eq!(echo, "\r\n", "hidden answer echoed");
            }
        }
        let out = sh.expect(&pp);
        if let Some(done) = &d.done {
            assert!(out.contains(done.as_str()), "{d:?}: {out:?}");
        }
        let inputs = dev.inputs();
        for x in &d.dialogue {
            let want = if x.hidden {
                Input::Hidden {
                    question: x.question.clone(),
                    text: x.answer.clone(),
                }
            } else {
                Input::Answer {
                    question: x.question.clone(),
                    text: x.answer.clone(),
                }
            };
            assert!(inputs.contains(&want), "{want:?} not in {inputs:?}");
        }
    }
    let lines = dev.lines_received();
    for d in &t.interactive {
        for x in d
            .dialogue
            .iter()
            .filter(|x| x.hidden && !x.answer.is_empty())
        {
            assert!(!lines.contains(&x.answer), "hidden answer in {lines:?}");
        }
    }
}

/// motd, split and coloured prompt, locked paging, idle timeout.
fn persona_options(name: &str) {
    let t = persona_test(name);
    let motd = "R1# fake prompt > here #\n\x1b[1mbold\x1b[0m admin@srv1:~$ [edit]";
    let dev = FakeDevice::start(DeviceConfig {
        motd: Some(motd.into()),
        ansi_prompt: true,
        prompt_split: true,
        paging_locked: true,
        exec_timeout_secs: Some(2),
        ..DeviceConfig::persona(name)
    });
    let mut sh = shell(&dev);
    let crlf_motd = motd.replace('\n', "\r\n");
    let got = sh.expect(&crlf_motd);
    assert!(!got.contains("\x1b[1;32m"), "prompt before motd: {got:?}");
    if let Some(key) = &t.press_any_key {
        sh.expect(key);
        sh.send("\r");
    }
    // The prompt's last line arrives coloured and in two writes.
    let last = t.prompt.rsplit('\n').next().unwrap().to_string();
    let cut = last.trim_end().char_indices().last().unwrap().0;
    let (a, b) = last.split_at(cut);
    sh.expect(&format!("\x1b[1;32m{a}"));
    let t0 = Instant::now();
    let rest = sh.expect(&format!("{b}\x1b[0m"));
    assert_eq!(rest, format!("{b}\x1b[0m"));
    assert!(
        t0.elapsed() >= Duration::from_millis(30),
        "prompt not split: {:?}",
        t0.elapsed()
    );
    let coloured = |p: &str| {
        let (head, last) = p.rsplit_once('\n').map_or(("", p), |(h, l)| (h, l));
        let head = if head.is_empty() {
            String::new()
        } else {
            format!("{head}\n")
        };
        format!("{head}\x1b[1;32m{last}\x1b[0m")
    };
    let pp = coloured(&t.privileged_prompt);
    if let Some(en) = &t.enable {
        sh.send(&format!("{en}\r"));
        for x in &t.enable_dialogue {
            sh.expect(&x.question);
            sh.send(&format!("{}\r", x.answer));
        }
        sh.expect(&pp);
    }
    // Paging locked: the paging-off command is refused, the pager stays on.
    if let Some(more) = &t.pager_prompt {
        let cmd = &t.paging_off[0];
        let out = sh.cmd(cmd, &pp);
        assert!(
            out.contains(&t.paging_locked_error[0]),
            "{cmd} not refused: {out:?}"
        );
        sh.send(&format!("{}\r", t.long_command));
        sh.expect(more);
        sh.send("q");
        sh.expect(&pp);
    }
    // Idle: the device closes the session.
    let t0 = Instant::now();
    assert!(sh.closed_within(Duration::from_secs(5)));
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Host keys and authentication modes
// ---------------------------------------------------------------------------------------------

/// Standard base64; `pad` = with `=` padding (known_hosts / public-key lines) or without
/// (fingerprints).
fn base64(data: &[u8], pad: bool) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..=c.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        if pad {
            out.push_str(&"=="[..3 - c.len()]);
        }
    }
    out
}

#[test]
fn fake_base64_helper() {
    assert_eq!(base64(b"", true), "");
    assert_eq!(base64(b"f", true), "Zg==");
    assert_eq!(base64(b"fo", true), "Zm8=");
    assert_eq!(base64(b"foo", true), "Zm9v");
    assert_eq!(base64(b"foob", false), "Zm9vYg");
    assert_eq!(base64(b"fooba", false), "Zm9vYmE");
}

/// What a client (libssh2) sees of the device's host key: (`SHA256:...` fingerprint computed
/// from the raw hash, `<type> <base64>` public key line).
fn seen_host_key(port: u16) -> (String, String) {
    let sess = connect(port);
    let hash = sess
        .host_key_hash(ssh2::HashType::Sha256)
        .expect("host key hash");
    let fp = format!("SHA256:{}", base64(hash, false));
    let (blob, _) = sess.host_key().expect("host key");
    // The blob starts with its algorithm name (SSH string).
    let n = u32::from_be_bytes(blob[..4].try_into().unwrap()) as usize;
    let alg = std::str::from_utf8(&blob[4..4 + n]).unwrap();
    (fp, format!("{alg} {}", base64(blob, true)))
}

fn login_works(port: u16) {
    let sess = connect(port);
    sess.userauth_password("admin", "cisco").expect("auth");
    let mut sh = open_shell(sess);
    sh.expect("R1>");
}

fn with_host_key(pem: &str) -> DeviceConfig {
    DeviceConfig {
        host_key: Some(pem.to_string()),
        ..Default::default()
    }
}

#[test]
fn fake_host_key_rotation_changes_fingerprint() {
    let k1 = gen_host_key_openssh("ed25519");
    let k2 = gen_host_key_openssh("ecdsa");
    assert!(
        k1.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"),
        "{k1}"
    );
    assert_ne!(k1, gen_host_key_openssh("ed25519"));

    let dev = FakeDevice::start(with_host_key(&k1));
    let port = dev.port();
    let (fp1, pub1) = seen_host_key(port);
    assert_eq!(fp1, dev.host_key_sha256());
    assert_eq!(pub1, dev.host_key_openssh());
    assert!(pub1.starts_with("ssh-ed25519 AAAA"), "{pub1}");
    assert_eq!(fp1.len(), "SHA256:".len() + 43, "{fp1}");
    login_works(port);
    drop(dev);

    // Same port, another key: a rotation.
    let dev = FakeDevice::start_on(with_host_key(&k2), port);
    assert_eq!(dev.port(), port);
    let (fp2, pub2) = seen_host_key(port);
    assert_eq!(fp2, dev.host_key_sha256());
    assert_eq!(pub2, dev.host_key_openssh());
    assert!(pub2.starts_with("ecdsa-sha2-nistp256 AAAA"), "{pub2}");
    assert_ne!(fp1, fp2);
    login_works(port);
    drop(dev);

    // Back to the first key: the first fingerprint again (the configured key is the one used).
    let dev = FakeDevice::start_on(with_host_key(&k1), port);
    assert_eq!(seen_host_key(port), (fp1.clone(), pub1.clone()));
    assert_eq!(dev.host_key_sha256(), fp1);
    drop(dev);

    // No key configured: a fresh one per device, as before.
    let a = FakeDevice::start(DeviceConfig::default());
    let b = FakeDevice::start(DeviceConfig::default());
    assert_ne!(a.host_key_sha256(), b.host_key_sha256());
    assert_ne!(a.host_key_sha256(), fp1);
    assert_eq!(seen_host_key(a.port()).0, a.host_key_sha256());
}

/// Throwaway test keys written by OpenSSH's ssh-keygen; the fingerprints are what
/// `ssh-keygen -l -f` prints for them. The ECDSA one is of the kind ssh-key's own PEM decoder
/// refuses (private section without padding).
const SSH_KEYGEN_ECDSA: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAaAAAABNlY2RzYS
1zaGEyLW5pc3RwMjU2AAAACG5pc3RwMjU2AAAAQQTMQ3EGfsgHsa6uAdApTT+gh4cYiHAH
fPr7uf9BK6nXnaDNJLE3aWmoiq4bdJk6CJFa69Hqv+tbnnP6kHuT60vcAAAAmL05Wnm9OV
p5AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMxDcQZ+yAexrq4B
0ClNP6CHhxiIcAd8+vu5/0ErqdedoM0ksTdpaaiKrht0mToIkVrr0eq/61uec/qQe5PrS9
wAAAAgWmW1kF3Km1a5BpkqX67V/UNQ5h7rOOMHc1Tke4+wbHAAAAAA
-----END OPENSSH PRIVATE KEY-----
";
const SSH_KEYGEN_ECDSA_SHA256: &str = "SHA256:gGCssEtHa24dBM3CQRPdL08bs0H1j1nX8owlDscyac0";
const SSH_KEYGEN_ECDSA_PUB: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMxDcQZ+yAexrq4B0ClNP6CHhxiIcAd8+vu5/0ErqdedoM0ksTdpaaiKrht0mToIkVrr0eq/61uec/qQe5PrS9w=";
/// With the comment `fake-host@test`.
const SSH_KEYGEN_ED25519: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACBK9WXgo6avL3ijhbOnX9GtS1wVqoACrzPR0xc5h4e4PwAAAJgK/9XECv/V
xAAAAAtzc2gtZWQyNTUxOQAAACBK9WXgo6avL3ijhbOnX9GtS1wVqoACrzPR0xc5h4e4Pw
AAAEDj5dOZvaO5oDSfHAEa1nlUzo/7CZyGXhnDLhJ2xBdcaEr1ZeCjpq8veKOFs6df0a1L
XBWqgAKvM9HTFzmHh7g/AAAADmZha2UtaG9zdEB0ZXN0AQIDBAUGBw==
-----END OPENSSH PRIVATE KEY-----
";
const SSH_KEYGEN_ED25519_SHA256: &str = "SHA256:JcOcD6D1BhYdncZ3AeEB48FdJrgeDryN/sGPOERQlrM";
const SSH_KEYGEN_ED25519_PUB: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEr1ZeCjpq8veKOFs6df0a1LXBWqgAKvM9HTFzmHh7g/";

#[test]
fn fake_host_key_from_ssh_keygen() {
    for (pem, fp, public) in [
        (
            SSH_KEYGEN_ECDSA,
            SSH_KEYGEN_ECDSA_SHA256,
            SSH_KEYGEN_ECDSA_PUB,
        ),
        (
            SSH_KEYGEN_ED25519,
            SSH_KEYGEN_ED25519_SHA256,
            SSH_KEYGEN_ED25519_PUB,
        ),
    ] {
        let dev = FakeDevice::start(with_host_key(pem));
        assert_eq!(dev.host_key_sha256(), fp);
        // Without the key's comment.
        assert_eq!(dev.host_key_openssh(), public);
        assert_eq!(
            seen_host_key(dev.port()),
            (fp.to_string(), public.to_string())
        );
        login_works(dev.port());
    }
}

#[test]
fn fake_rsa_host_key() {
    let dev = FakeDevice::start(with_host_key(&gen_host_key_openssh("rsa")));
    let (fp, public) = seen_host_key(dev.port());
    assert_eq!(fp, dev.host_key_sha256());
    assert_eq!(public, dev.host_key_openssh());
    assert!(public.starts_with("ssh-rsa AAAA"), "{public}");
    login_works(dev.port());
}

/// Keyboard-interactive client that records the prompts it was shown.
struct KbdRec {
    answer: &'static str,
    prompts: Vec<(String, bool)>,
}

impl KbdRec {
    fn new(answer: &'static str) -> KbdRec {
        KbdRec {
            answer,
            prompts: Vec::new(),
        }
    }
}

impl ssh2::KeyboardInteractivePrompt for KbdRec {
    fn prompt(
        &mut self,
        _username: &str,
        _instructions: &str,
        prompts: &[ssh2::Prompt<'_>],
    ) -> Vec<String> {
        self.prompts
            .extend(prompts.iter().map(|p| (p.text.to_string(), p.echo)));
        prompts.iter().map(|_| self.answer.to_string()).collect()
    }
}

fn tried(dev: &FakeDevice) -> Vec<String> {
    dev.auth_methods_tried()
}

fn shell_after_auth(sess: ssh2::Session) {
    assert!(sess.authenticated());
    let mut sh = open_shell(sess);
    sh.expect("R1>");
}

#[test]
fn fake_auth_mode_password_default() {
    let dev = FakeDevice::start(DeviceConfig::default());
    assert_eq!(DeviceConfig::default().auth, AuthMode::Password);
    let (key, public) = gen_client_key_openssh("ed25519", None);
    let sess = connect(dev.port());
    assert_eq!(
        sess.auth_methods("admin").unwrap(),
        "password,keyboard-interactive"
    );
    assert!(sess
        .userauth_pubkey_memory("admin", Some(&public), &key, None)
        .is_err());
    assert!(!sess.authenticated());
    let mut kbd = KbdRec::new("cisco");
    sess.userauth_keyboard_interactive("admin", &mut kbd)
        .expect("kbd-int");
    assert_eq!(kbd.prompts, vec![("Password: ".to_string(), false)]);
    shell_after_auth(sess);
    let sess = connect(dev.port());
    sess.userauth_password("admin", "cisco").expect("password");
    shell_after_auth(sess);
    assert_eq!(
        tried(&dev),
        ["publickey", "keyboard-interactive", "password"]
    );
}

#[test]
fn fake_auth_mode_keyboard_interactive_only() {
    let dev = FakeDevice::start(DeviceConfig {
        auth: AuthMode::KeyboardInteractiveOnly,
        ..Default::default()
    });
    let sess = connect(dev.port());
    assert_eq!(sess.auth_methods("admin").unwrap(), "keyboard-interactive");
    // The right password over the "password" method is refused.
    assert!(sess.userauth_password("admin", "cisco").is_err());
    let mut wrong = KbdRec::new("nope");
    assert!(sess
        .userauth_keyboard_interactive("admin", &mut wrong)
        .is_err());
    assert!(!sess.authenticated());
    let mut kbd = KbdRec::new("cisco");
    sess.userauth_keyboard_interactive("admin", &mut kbd)
        .expect("kbd-int");
    assert_eq!(kbd.prompts, vec![("Password: ".to_string(), false)]);
    shell_after_auth(sess);
    assert_eq!(
        tried(&dev),
        ["password", "keyboard-interactive", "keyboard-interactive"]
    );
}

#[test]
fn fake_auth_mode_public_key_only() {
    let (key, public) = gen_client_key_openssh("ed25519", None);
    let (other_key, other_public) = gen_client_key_openssh("ed25519", None);
    assert!(public.starts_with("ssh-ed25519 AAAA"), "{public}");
    assert!(public.ends_with(" fake-ssh-client"), "{public}");
    assert!(
        key.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"),
        "{key}"
    );
    let dev = FakeDevice::start(DeviceConfig {
        auth: AuthMode::PublicKeyOnly(vec![public.clone()]),
        ..Default::default()
    });
    let sess = connect(dev.port());
    assert_eq!(sess.auth_methods("admin").unwrap(), "publickey");
    assert!(sess.userauth_password("admin", "cisco").is_err());
    let mut kbd = KbdRec::new("cisco");
    assert!(sess
        .userauth_keyboard_interactive("admin", &mut kbd)
        .is_err());
    assert!(kbd.prompts.is_empty(), "{:?}", kbd.prompts);
    // A key that is not authorized.
    assert!(sess
        .userauth_pubkey_memory("admin", Some(&other_public), &other_key, None)
        .is_err());
    // The authorized public key, signed with another private key: the signature is checked.
    assert!(sess
        .userauth_pubkey_memory("admin", Some(&public), &other_key, None)
        .is_err());
    // The right key for another user.
    assert!(sess
        .userauth_pubkey_memory("bob", Some(&public), &key, None)
        .is_err());
    assert!(!sess.authenticated());
    sess.userauth_pubkey_memory("admin", Some(&public), &key, None)
        .expect("publickey");
    shell_after_auth(sess);
    assert_eq!(
        tried(&dev),
        [
            "password",
            "keyboard-interactive",
            "publickey",
            "publickey",
            "publickey",
            "publickey"
        ]
    );
}

#[test]
fn fake_auth_mode_password_or_public_key() {
    let (ecdsa_key, ecdsa_public) = gen_client_key_openssh("ecdsa", None);
    let (rsa_key, rsa_public) = gen_client_key_openssh("rsa", None);
    let (other_key, _) = gen_client_key_openssh("ed25519", None);
    assert!(ecdsa_public.starts_with("ecdsa-sha2-nistp256 AAAA"));
    assert!(rsa_public.starts_with("ssh-rsa AAAA"));
    let dev = FakeDevice::start(DeviceConfig {
        auth: AuthMode::PasswordOrPublicKey(vec![ecdsa_public, rsa_public]),
        ..Default::default()
    });

    let sess = connect(dev.port());
    assert_eq!(sess.auth_methods("admin").unwrap(), "publickey,password");
    let mut kbd = KbdRec::new("cisco");
    assert!(sess
        .userauth_keyboard_interactive("admin", &mut kbd)
        .is_err());
    assert!(kbd.prompts.is_empty(), "{:?}", kbd.prompts);
    assert!(sess.userauth_password("admin", "wrong").is_err());
    assert!(sess
        .userauth_pubkey_memory("admin", None, &other_key, None)
        .is_err());
    assert!(!sess.authenticated());
    sess.userauth_password("admin", "cisco").expect("password");
    shell_after_auth(sess);

    // Both listed keys work (the public half derived by the client from the private key).
    for key in [&ecdsa_key, &rsa_key] {
        let sess = connect(dev.port());
        sess.userauth_pubkey_memory("admin", None, key, None)
            .expect("publickey");
        shell_after_auth(sess);
    }
    assert_eq!(
        tried(&dev),
        [
            "keyboard-interactive",
            "password",
            "publickey",
            "password",
            "publickey",
            "publickey"
        ]
    );
}

#[test]
fn fake_auth_encrypted_client_key() {
    let (key, public) = gen_client_key_openssh("ed25519", Some("s3cret phrase"));
    let (plain, _) = gen_client_key_openssh("ed25519", None);
    // "openssh-key-v1\0", cipher "aes256-ctr", KDF "bcrypt" (as ssh-keygen); unencrypted:
    // cipher "none", KDF "none".
    let body = |pem: &str| pem.lines().nth(1).unwrap_or_default().to_string();
    assert!(
        body(&key).starts_with("b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0"),
        "{key}"
    );
    assert!(
        body(&plain).starts_with("b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"),
        "{plain}"
    );
    let dev = FakeDevice::start(DeviceConfig {
        auth: AuthMode::PublicKeyOnly(vec![public.clone()]),
        ..Default::default()
    });
    let sess = connect(dev.port());
    assert!(sess
        .userauth_pubkey_memory("admin", None, &key, None)
        .is_err());
    assert!(sess
        .userauth_pubkey_memory("admin", None, &key, Some("wrong"))
        .is_err());
    assert!(!sess.authenticated());
    sess.userauth_pubkey_memory("admin", None, &key, Some("s3cret phrase"))
        .expect("publickey with an encrypted key");
    shell_after_auth(sess);
    // The failed passphrases never reached the server (libssh2 decrypts first).
    assert_eq!(tried(&dev), ["publickey"]);
}

macro_rules! persona_tests {
    ($($name:ident),* $(,)?) => {
        mod personas {
            $(
                mod $name {
                    #[test]
                    fn fake_persona_walkthrough() {
                        super::super::persona_walkthrough(stringify!($name));
                    }
                    #[test]
                    fn fake_persona_interactive() {
                        super::super::persona_interactive(stringify!($name));
                    }
                    #[test]
                    fn fake_persona_options() {
                        super::super::persona_options(stringify!($name));
                    }
                }
            )*
            #[test]
            fn fake_every_persona_has_tests() {
                let mut tested = vec![$(stringify!($name)),*];
                tested.sort();
                let mut all = fake_device::FakeDevice::persona_names();
                all.sort();
                assert_eq!(tested, all);
            }
        }
    };
}

persona_tests!(
    cisco_ios,
    cisco_nxos,
    cisco_asa,
    cisco_xr,
    juniper_junos,
    arista_eos,
    nokia_sros,
    hp_procurve,
    hp_comware,
    huawei_vrp,
    linux,
);
