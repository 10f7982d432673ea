//! Confirmed changes, device-wide state, AAA lock-out and break keys, driven through the
//! engine ([`Session`]) with a scripted client: IOS revert timer (archive), Junos and IOS XR
//! `commit confirmed`, Arista configuration sessions with `commit timer`.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use fake_device::engine::Session;
use fake_device::{DeviceConfig, DeviceState, Log, BREAK_MARK, REVERT_MARK};

/// A device of `persona` (started privileged) whose minute lasts `minute`.
fn device(persona: &str, minute: Duration) -> (DeviceConfig, Arc<DeviceState>) {
    let cfg = DeviceConfig {
        start_privileged: true,
        minute,
        ..DeviceConfig::persona(persona)
    };
    let dev = Arc::new(DeviceState::new(
        &cfg.hostname,
        cfg.minute,
        Arc::new(Log::default()),
    ));
    (cfg, dev)
}

/// A scripted client on one session.
struct Cli(Session);

impl Cli {
    fn open(cfg: &DeviceConfig, dev: &Arc<DeviceState>) -> Cli {
        let mut s = Session::on_device(cfg.clone(), Arc::clone(dev));
        s.start();
        s.take_output();
        Cli(s)
    }

    /// Feeds `input` and returns everything the session wrote until it waits for input.
    fn send(&mut self, input: &[u8]) -> String {
        self.0.feed(input);
        let mut out = Vec::new();
        loop {
            self.0.process_input();
            out.extend(self.0.take_output());
            if self.0.is_writing() {
                self.0.job_step();
                continue;
            }
            break;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Types `line` + Enter; returns what follows the echoed line (output and prompt).
    fn cmd(&mut self, line: &str) -> String {
        let out = self.send(format!("{line}\r").as_bytes());
        let echo = format!("{line}\r\n");
        out.strip_prefix(&echo).unwrap_or(&out).to_string()
    }

    /// Sleeps until the session's next deadline (at most `max`) and lets it act.
    fn wait_timer(&mut self, max: Duration) {
        let at = self.0.deadline().expect("a deadline");
        assert!(at <= Instant::now() + max, "deadline too far");
        thread::sleep(at.saturating_duration_since(Instant::now()) + Duration::from_millis(5));
        self.0.on_timer(Instant::now());
    }
}

const MIN: Duration = Duration::from_secs(60);

fn has(dev: &DeviceState, line: &str) -> bool {
    dev.running_config().iter().any(|l| l == line)
}

/// `archive` / ` path flash:rollback` on an IOS device.
fn ios_with_archive(c: &mut Cli) {
    c.cmd("configure terminal");
    assert_eq!(c.cmd("archive"), "R1(config-archive)#");
    assert_eq!(c.cmd("path flash:rollback"), "R1(config-archive)#");
    assert_eq!(c.cmd("end"), "R1#");
}

#[test]
fn a_second_session_sees_the_first_ones_configuration() {
    let (cfg, dev) = device("cisco_ios", MIN);
    let mut a = Cli::open(&cfg, &dev);
    a.cmd("configure terminal");
    a.cmd("ntp server 192.0.2.1");
    a.cmd("hostname CORE1");
    a.cmd("end");
    drop(a);
    let mut b = Cli::open(&cfg, &dev);
    assert_eq!(
        b.cmd("show running-config | include ntp"),
        "ntp server 192.0.2.1\r\nCORE1#"
    );
    assert_eq!(dev.running_config(), ["ntp server 192.0.2.1"]);
    assert_eq!(dev.hostname(), "CORE1");
}

#[test]
fn ios_revert_timer_needs_an_archive_path() {
    let (cfg, dev) = device("cisco_ios", MIN);
    let mut c = Cli::open(&cfg, &dev);
    assert_eq!(
        c.cmd("configure terminal revert timer 5"),
        "%Turn config archive on before using Rollback Confirmed Change\r\nR1#"
    );
    assert_eq!(
        c.cmd("show archive config rollback timer"),
        "%No Rollback Confirmed Change pending\r\nR1#"
    );
    for l in [
        "configure confirm",
        "configure revert now",
        "configure revert timer 3",
    ] {
        assert_eq!(
            c.cmd(l),
            "%No Rollback Confirmed Change pending\r\nR1#",
            "{l}"
        );
    }
    assert!(dev.revert_timer().is_none());
}

#[test]
fn ios_revert_timer_confirm_keeps_the_changes() {
    let (cfg, dev) = device("cisco_ios", MIN);
    let mut c = Cli::open(&cfg, &dev);
    ios_with_archive(&mut c);
    assert_eq!(
        c.cmd("configure terminal revert timer 5"),
        "Enter configuration commands, one per line.  End with CNTL/Z.\r\nR1(config)#"
    );
    c.cmd("logging host 192.0.2.9");
    c.cmd("end");
    assert_eq!(
        c.cmd("show archive config rollback timer"),
        "Timer type: Rollback timer\r\nTimer value: 5 min\r\nR1#"
    );
    let left = dev.revert_timer().expect("timer");
    assert!(left > Duration::from_secs(290) && left <= Duration::from_secs(300));
    // Another session may confirm it (the device's timer, not the session's).
    let mut other = Cli::open(&cfg, &dev);
    assert_eq!(other.cmd("configure confirm"), "R1#");
    assert!(dev.revert_timer().is_none());
    assert!(has(&dev, "logging host 192.0.2.9"));
    assert_eq!(
        c.cmd("show archive config rollback timer"),
        "%No Rollback Confirmed Change pending\r\nR1#"
    );
}

#[test]
fn ios_revert_now_and_timer_reset() {
    let (cfg, dev) = device("cisco_ios", MIN);
    let mut c = Cli::open(&cfg, &dev);
    ios_with_archive(&mut c);
    let before = dev.running_config();
    c.cmd("configure terminal revert timer 1");
    c.cmd("hostname EDGE9");
    c.cmd("logging host 192.0.2.9");
    c.cmd("end");
    assert_eq!(c.cmd("configure revert timer 7"), "EDGE9#");
    assert!(c
        .cmd("show archive config rollback timer")
        .contains("Timer value: 7 min\r\n"));
    assert!(dev.revert_timer().unwrap() > Duration::from_secs(400));
    assert_eq!(c.cmd("configure revert now"), "R1#");
    assert_eq!(dev.running_config(), before);
    assert_eq!(dev.hostname(), "R1");
    let j = dev.log().journal();
    assert_eq!(j[j.len() - 2..], ["configure revert now", REVERT_MARK]);
}

#[test]
fn ios_revert_timer_expires_in_the_session_clock() {
    let (cfg, dev) = device("cisco_ios", Duration::from_millis(200));
    let mut c = Cli::open(&cfg, &dev);
    ios_with_archive(&mut c);
    c.cmd("configure terminal revert timer 1");
    c.cmd("logging host 192.0.2.9");
    c.cmd("end");
    assert!(has(&dev, "logging host 192.0.2.9"));
    c.wait_timer(Duration::from_millis(250));
    assert!(!has(&dev, "logging host 192.0.2.9"));
    assert!(has(&dev, " path flash:rollback"));
    assert_eq!(dev.log().journal().last().unwrap(), REVERT_MARK);
    assert_eq!(
        c.cmd("show archive config rollback timer"),
        "%No Rollback Confirmed Change pending\r\nR1#"
    );
}

#[test]
fn ios_aaa_authorization_with_no_server_locks_configuration_until_the_revert() {
    let (cfg, dev) = device("cisco_ios", Duration::from_millis(300));
    let mut c = Cli::open(&cfg, &dev);
    ios_with_archive(&mut c);
    c.cmd("configure terminal revert timer 1");
    c.cmd("aaa new-model");
    assert_eq!(
        c.cmd("aaa authorization commands 15 default group tacacs+"),
        "R1(config)#"
    );
    // Every config line is refused now, the undo included.
    for l in [
        "no aaa authorization commands 15 default group tacacs+",
        "logging host 192.0.2.9",
        "interface Loopback9",
    ] {
        assert_eq!(c.cmd(l), "% Authorization failed.\r\nR1(config)#", "{l}");
    }
    assert_eq!(c.cmd("end"), "R1#");
    for l in [
        "configure terminal",
        "conf t",
        "configure confirm",
        "configure revert now",
        "write memory",
    ] {
        assert_eq!(c.cmd(l), "% Authorization failed.\r\nR1#", "{l}");
    }
    // Show commands still run.
    assert!(c
        .cmd("show ip interface brief")
        .contains("GigabitEthernet0/0"));
    assert!(dev.revert_timer().is_some(), "confirm was refused");
    // Only the device's own timer restores it.
    c.wait_timer(Duration::from_millis(350));
    assert!(!dev.running_config().iter().any(|l| l.starts_with("aaa")));
    assert_eq!(
        c.cmd("configure terminal"),
        "Enter configuration commands, one per line.  End with CNTL/Z.\r\nR1(config)#"
    );
    let j = dev.log().journal();
    assert!(j.contains(&REVERT_MARK.to_string()), "{j:?}");
}

#[test]
fn junos_commit_confirmed_then_commit_confirms() {
    let (cfg, dev) = device("juniper_junos", MIN);
    let mut c = Cli::open(&cfg, &dev);
    c.cmd("configure");
    c.cmd("set system ntp server 192.0.2.1");
    let out = c.cmd("commit confirmed 5");
    assert!(
        out.starts_with(
            "commit confirmed will be automatically rolled back in 5 minutes unless confirmed\r\n\
             commit complete\r\n"
        ),
        "{out:?}"
    );
    assert!(has(&dev, "set system ntp server 192.0.2.1"));
    assert!(dev.revert_timer().unwrap() > Duration::from_secs(290));
    c.cmd("commit");
    assert!(dev.revert_timer().is_none());
    // commit check confirms too.
    c.cmd("commit confirmed");
    assert!(dev.revert_timer().unwrap() > Duration::from_secs(590));
    assert!(c
        .cmd("commit check")
        .contains("configuration check succeeds"));
    assert!(dev.revert_timer().is_none());
    assert!(has(&dev, "set system ntp server 192.0.2.1"));
}

#[test]
fn junos_commit_confirmed_rolls_back_by_itself() {
    let (cfg, dev) = device("juniper_junos", Duration::from_millis(200));
    let mut c = Cli::open(&cfg, &dev);
    c.cmd("configure");
    c.cmd("set system ntp server 192.0.2.1");
    c.cmd("commit");
    c.cmd("set system syslog host 192.0.2.2 any any");
    c.cmd("commit confirmed 1");
    assert!(has(&dev, "set system syslog host 192.0.2.2 any any"));
    c.wait_timer(Duration::from_millis(250));
    assert_eq!(dev.running_config(), ["set system ntp server 192.0.2.1"]);
    assert_eq!(dev.log().journal().last().unwrap(), REVERT_MARK);
}

#[test]
fn junos_rollback_1_loads_the_previous_configuration() {
    let (cfg, dev) = device("juniper_junos", MIN);
    let mut c = Cli::open(&cfg, &dev);
    c.cmd("configure");
    c.cmd("set system ntp server 192.0.2.1");
    c.cmd("commit");
    c.cmd("set system syslog host 192.0.2.2 any any");
    c.cmd("commit");
    assert!(c.cmd("rollback 1").starts_with("load complete\r\n"));
    // Loaded into the candidate only.
    assert!(has(&dev, "set system syslog host 192.0.2.2 any any"));
    c.cmd("commit");
    assert_eq!(dev.running_config(), ["set system ntp server 192.0.2.1"]);
    // rollback 0 throws the candidate away.
    c.cmd("set system host-name other");
    c.cmd("rollback 0");
    c.cmd("commit");
    assert_eq!(dev.running_config(), ["set system ntp server 192.0.2.1"]);
}

#[test]
fn xr_commit_confirmed_seconds_and_minutes() {
    let (cfg, dev) = device("cisco_xr", Duration::from_millis(600));
    let mut c = Cli::open(&cfg, &dev);
    c.cmd("configure terminal");
    c.cmd("ntp server 192.0.2.1");
    c.cmd("commit confirmed minutes 2");
    assert!(dev.revert_timer().unwrap() > Duration::from_millis(1100));
    c.cmd("commit");
    assert!(dev.revert_timer().is_none());
    assert!(has(&dev, "ntp server 192.0.2.1"));
    c.cmd("logging 192.0.2.2 vrf default");
    // 30 s = half a device minute.
    assert_eq!(
        c.cmd("commit confirmed 30"),
        "Mon Mar  1 09:15:02.123 UTC\r\nRP/0/RP0/CPU0:xr1(config)#"
    );
    assert!(dev.revert_timer().unwrap() <= Duration::from_millis(300));
    assert!(has(&dev, "logging 192.0.2.2 vrf default"));
    c.wait_timer(Duration::from_millis(350));
    assert_eq!(dev.running_config(), ["ntp server 192.0.2.1"]);
}

#[test]
fn eos_session_commit_timer_then_confirm_or_abort_or_expiry() {
    let (cfg, dev) = device("arista_eos", Duration::from_millis(300));
    let mut c = Cli::open(&cfg, &dev);
    assert_eq!(c.cmd("configure session s1"), "eos1(config-s-s1)#");
    assert_eq!(c.cmd("interface Ethernet1"), "eos1(config-s-s1-if-Et1)#");
    c.cmd("description guarded");
    assert!(dev.running_config().is_empty(), "still in the session");
    assert_eq!(c.cmd("commit timer 00:10:00"), "eos1#");
    assert_eq!(
        dev.running_config(),
        ["!", "interface Ethernet1", "   description guarded"]
    );
    assert!(dev.revert_timer().is_some());
    assert_eq!(c.cmd("configure session s1 commit"), "eos1#");
    assert!(dev.revert_timer().is_none());
    // Abort while the timer runs: back at once.
    c.cmd("configure session s2");
    c.cmd("ntp server 192.0.2.1");
    c.cmd("commit timer 00:10:00");
    assert!(has(&dev, "ntp server 192.0.2.1"));
    c.cmd("configure session s2 abort");
    assert!(!has(&dev, "ntp server 192.0.2.1"));
    assert!(dev.revert_timer().is_none());
    // Expiry: 00:01:00 is one device minute.
    c.cmd("configure session s3");
    c.cmd("ntp server 192.0.2.3");
    c.cmd("commit timer 00:01:00");
    assert!(has(&dev, "ntp server 192.0.2.3"));
    c.wait_timer(Duration::from_millis(350));
    assert!(!has(&dev, "ntp server 192.0.2.3"));
    assert!(has(&dev, "   description guarded"));
    // A session aborted before its commit changes nothing.
    c.cmd("configure session s4");
    c.cmd("ntp server 192.0.2.4");
    assert_eq!(c.cmd("abort"), "eos1#");
    assert!(!has(&dev, "ntp server 192.0.2.4"));
}

#[test]
fn break_key_interrupts_hang_slow_and_long() {
    let (cfg, dev) = device("cisco_ios", MIN);
    let mut c = Cli::open(&cfg, &dev);
    assert_eq!(c.cmd("show hang"), "working...\r\n");
    // Ctrl-C is not IOS's break: still hanging.
    assert_eq!(c.send(b"\x03"), "");
    assert_eq!(c.send(b"\x1e"), "\r\nR1#");
    assert_eq!(c.cmd("show slow 100"), "");
    assert_eq!(c.send(b"\x1e"), "\r\nR1#");
    c.cmd("terminal length 0");
    // Long output: interrupted between chunks.
    c.0.feed(b"show long 1000000\r");
    c.0.process_input();
    assert!(c.0.is_writing());
    c.0.job_step();
    c.0.feed(b"\x1e");
    c.0.job_step();
    assert!(!c.0.is_writing());
    let out = String::from_utf8_lossy(&c.0.take_output()).into_owned();
    assert!(out.ends_with("\r\nR1#"), "{:?}", &out[out.len() - 40..]);
    let j = dev.log().journal();
    assert_eq!(j.iter().filter(|l| *l == BREAK_MARK).count(), 3, "{j:?}");
    assert_eq!(
        c.cmd("show privilege"),
        "Current privilege level is 15\r\nR1#"
    );

    let (cfg, dev) = device("juniper_junos", MIN);
    let mut c = Cli::open(&cfg, &dev);
    c.cmd("show hang");
    assert!(c.send(b"\x03").ends_with("admin@vmx1> "));
    assert_eq!(dev.log().journal(), ["show hang", BREAK_MARK]);
}
