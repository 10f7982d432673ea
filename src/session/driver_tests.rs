//! The driver over a scripted in-memory transport: raw device bytes, split across reads as a
//! test chooses, in; the output Netmiko would return, out.

use super::*;
use crate::platform::lookup;
use crate::transport::scripted::{step, Scripted, Step};

fn driver(platform: &str, greeting: &[&[u8]], steps: Vec<Step>) -> Result<Driver, OpenError> {
    let t = Scripted::new(greeting, steps);
    let p = lookup(platform).unwrap();
    Driver::open(
        Channel::new(Box::new(t), p.line.clone()),
        p,
        &OpenOptions {
            host: "test",
            login: None,
            enable_secret: None,
            enable_level: None,
            max_output: 1 << 20,
            deadline: Instant::now() + Duration::from_secs(5),
        },
    )
}

/// The steps of opening a Cisco IOS session that starts at `prompt` (privileged).
fn ios_open(prompt: &str) -> Vec<Step> {
    let p = prompt.as_bytes();
    vec![
        step("\n", &[b"\r\n", p]),
        step("terminal length 0\n", &[b"terminal length 0\r\n", p]),
        step("terminal width 511\n", &[b"terminal width 511\r\n", p]),
    ]
}

fn run(d: &mut Driver, cmd: &str) -> CmdResult {
    let never = || false;
    d.run(
        &ExecItem::plain(cmd),
        Instant::now() + Duration::from_secs(5),
        &never,
        usize::MAX,
    )
    .unwrap_or_else(|e| panic!("{cmd}: {e:?}"))
}

/// Open an IOS session at R1#, run `cmd` whose reply arrives as `chunks`, check the output.
fn check_ios(cmd: &str, chunks: &[&[u8]], pager_sends: usize, want: &str) {
    let mut steps = ios_open("R1#");
    steps.push(step(&format!("{cmd}\n"), chunks));
    for _ in 0..pager_sends {
        // Continuation pages are queued with the command's reply; the pager answer gets none.
        steps.push(step(" ", &[]));
    }
    let mut d = driver("cisco_ios", &[b"R1#"], steps).unwrap();
    let r = run(&mut d, cmd);
    assert_eq!(r.output, want, "{cmd}: chunks {chunks:?}");
    assert_eq!(d.mode, "enable");
}

#[test]
fn outputs_from_raw_bytes() {
    // Echo split across reads, \r\r\n endings, prompt in its own read.
    check_ios(
        "show clock",
        &[
            b"sh",
            b"ow clock\r\r\n",
            b"*10:00:00.000 UTC Mon Mar 1 2026\r\r\n",
            b"R1#",
        ],
        0,
        "*10:00:00.000 UTC Mon Mar 1 2026",
    );
    // The prompt split in two reads; ANSI colour around it.
    check_ios(
        "show clock",
        &[b"show clock\r\nline\r\n\x1b[1;32mR", b"1#\x1b[0m"],
        0,
        "line",
    );
    // No output at all.
    check_ios("terminal monitor", &[b"terminal monitor\r\nR1#"], 0, "");
    // A pager: IOS erases " --More-- " with backspaces, blanks, backspaces; the next line is
    // indented and keeps its indentation.
    let erase = b"\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08          \x08\x08\x08\x08\x08\x08\x08\x08\x08\x08";
    let mut page2 = erase.to_vec();
    page2.extend_from_slice(b"  indented line\r\nlast\r\nR1#");
    check_ios(
        "show x",
        &[b"show x\r\nfirst\r\n --More-- ", &page2],
        1,
        "first\n  indented line\nlast",
    );
}

#[test]
fn banner_lines_that_look_like_prompts_are_not_taken_for_the_prompt() {
    // The MOTD's "router#" arrives at the end of a read; the real prompt follows.
    let greeting: &[&[u8]] = &[
        b"*** authorised use only ***\r\nrouter#",
        b"\r\n####\r\nsw1#",
    ];
    let mut steps = vec![step("\n", &[b"\r\nsw1#"]), step("\n", &[b"\r\nsw1#"])];
    steps.extend(ios_open("sw1#").into_iter().skip(1));
    let mut d = driver("cisco_ios", greeting, steps).unwrap();
    assert_eq!(d.prompt_base(), "sw1");
    steps_done(&mut d);
}

fn steps_done(d: &mut Driver) {
    // A further write is past the script: the scripted transport reports the connection closed.
    let never = || false;
    let r = d.run(
        &ExecItem::plain("x"),
        Instant::now() + Duration::from_secs(1),
        &never,
        usize::MAX,
    );
    assert!(matches!(r, Err(CmdFail::Closed { .. })), "{r:?}");
}

#[test]
fn the_prompt_is_learned_again_after_a_hostname_change() {
    let mut steps = ios_open("R1#");
    steps.extend([
        step("configure terminal\n", &[b"configure terminal\r\nEnter configuration commands, one per line.  End with CNTL/Z.\r\nR1(config)#"]),
        step("hostname edge.1+x\n", &[b"hostname edge.1+x\r\nedge.1+x(config)#"]),
        step("end\n", &[b"end\r\nedge.1+x#"]),
        step("show clock\n", &[b"show clock\r\nR1# is not the prompt now\r\nedge.1+x#"]),
    ]);
    let mut d = driver("cisco_ios", &[b"R1#"], steps).unwrap();
    assert_eq!(
        run(&mut d, "configure terminal").output,
        "Enter configuration commands, one per line.  End with CNTL/Z."
    );
    assert_eq!(d.mode, "config");
    run(&mut d, "hostname edge.1+x");
    assert_eq!(d.prompt_base(), "edge.1+x");
    run(&mut d, "end");
    assert_eq!(d.mode, "enable");
    assert_eq!(
        run(&mut d, "show clock").output,
        "R1# is not the prompt now"
    );
}

#[test]
fn failures_are_reported_with_their_line() {
    let mut steps = ios_open("R1#");
    steps.push(step(
        "show nonsense\n",
        &[b"show nonsense\r\n          ^\r\n% Invalid input detected at '^' marker.\r\n\r\nR1#"],
    ));
    let mut d = driver("cisco_ios", &[b"R1#"], steps).unwrap();
    let r = run(&mut d, "show nonsense");
    assert_eq!(
        r.failure.as_deref(),
        Some("% Invalid input detected at '^' marker.")
    );
}

#[test]
fn interactions_and_hidden_answers() {
    let mut steps = ios_open("R1#");
    steps.extend([
        step(
            "copy scp: flash:\n",
            &[b"copy scp: flash:\r\nAddress or name of remote host []? "],
        ),
        step("10.0.0.9\n", &[b"10.0.0.9\r\nPassword: "]),
        // A device that (wrongly) echoes the password: masked in the output.
        step(
            "s3cret\n",
            &[
                b"s3cret\r\n",
                b"Accessing scp://10.0.0.9/...\r\n[OK - 1234 bytes]\r\nR1#",
            ],
        ),
    ]);
    let mut d = driver("cisco_ios", &[b"R1#"], steps).unwrap();
    let item = ExecItem {
        interactions: vec![
            Interaction {
                expect: Regex::new("remote host").unwrap(),
                send: Secret::new("10.0.0.9\n"),
                hidden: false,
                from_platform: false,
            },
            Interaction {
                expect: Regex::new("[Pp]assword:").unwrap(),
                send: Secret::new("s3cret\n"),
                hidden: true,
                from_platform: false,
            },
            Interaction {
                expect: Regex::new("never").unwrap(),
                send: Secret::new("x\n"),
                hidden: false,
                from_platform: false,
            },
        ],
        ..ExecItem::plain("copy scp: flash:")
    };
    let never = || false;
    let r = d
        .run(
            &item,
            Instant::now() + Duration::from_secs(5),
            &never,
            usize::MAX,
        )
        .unwrap();
    assert_eq!(r.answered, 2);
    assert!(!r.output.contains("s3cret"), "{}", r.output);
    assert!(r.output.contains("********"));
    assert!(r.output.ends_with("[OK - 1234 bytes]"), "{}", r.output);
    assert!(d.at_prompt);
}

#[test]
fn expect_ends_the_read_and_leaves_the_session_off_prompt() {
    let mut steps = ios_open("R1#");
    steps.push(step(
        "reload\n",
        &[b"reload\r\n", b"Proceed with reload? [confirm]"],
    ));
    let mut d = driver("cisco_ios", &[b"R1#"], steps).unwrap();
    let item = ExecItem {
        // Would match the echo if the echo were searched.
        expect: Some(Regex::new("reload|confirm").unwrap()),
        ..ExecItem::plain("reload")
    };
    let never = || false;
    let r = d
        .run(
            &item,
            Instant::now() + Duration::from_secs(5),
            &never,
            usize::MAX,
        )
        .unwrap();
    assert!(r.ended_by_expect);
    assert_eq!(r.output, "Proceed with reload? [confirm]");
    assert!(!d.at_prompt);
    // No keepalive newline into the open question.
    assert_eq!(
        d.keepalive(true, Duration::from_secs(1)),
        Ok(Keepalive::Checked)
    );
}

#[test]
fn keepalive_reads_the_prompt_back() {
    let mut steps = ios_open("R1#");
    steps.push(step("\n", &[b"\r\n", b"R1#"]));
    // The device stops answering: the prompt does not come back.
    steps.push(step("\n", &[]));
    let mut d = driver("cisco_ios", &[b"R1#"], steps).unwrap();
    assert_eq!(
        d.keepalive(true, Duration::from_secs(1)),
        Ok(Keepalive::Answered)
    );
    assert_eq!(
        d.keepalive(true, Duration::from_millis(10)),
        Ok(Keepalive::NoPrompt)
    );
    // Waiting for the prompt now: no further newline.
    assert_eq!(
        d.keepalive(true, Duration::from_secs(1)),
        Ok(Keepalive::Checked)
    );
}

#[test]
fn platform_answers_are_alternatives() {
    // IOS-XR commit: either question may come; only the second one does here.
    let mut steps = ios_open("R1#");
    steps.extend([
        step(
            "commit\n",
            &[b"commit\r\nDo you wish to proceed with this commit anyway? [no]: "],
        ),
        step("no\n", &[b"no\r\nR1#"]),
    ]);
    let mut d = driver("cisco_ios", &[b"R1#"], steps).unwrap();
    let answers = [
        crate::platform::Answer {
            expect: Regex::new(r"confirm\? \[y/n\]").unwrap(),
            send: "y\n".into(),
        },
        crate::platform::Answer {
            expect: Regex::new(r"Do you wish to proceed").unwrap(),
            send: "no\n".into(),
        },
    ];
    let never = || false;
    let r = d
        .run(
            &ExecItem::answering("commit", &answers),
            Instant::now() + Duration::from_secs(5),
            &never,
            usize::MAX,
        )
        .unwrap();
    assert_eq!(r.answered, 1);
}

#[test]
fn long_hostnames_may_be_shortened_in_the_prompt() {
    let mut steps = ios_open("access-switch-building-7#");
    steps.extend([
        step(
            "configure terminal\n",
            &[b"configure terminal\r\naccess-switch-buil(config)#"],
        ),
        step("end\n", &[b"end\r\naccess-switch-building-7#"]),
    ]);
    let mut d = driver("cisco_ios", &[b"access-switch-building-7#"], steps).unwrap();
    run(&mut d, "configure terminal");
    assert_eq!(d.mode, "config");
    run(&mut d, "end");
    assert_eq!(d.mode, "enable");
}

/// Open `platform` at `prompt` (login answers and shell escapes not needed), answering each of
/// its on-open commands with an echo and the prompt.
fn open_at(platform: &str, prompt: &str, mut more: Vec<Step>) -> Driver {
    let p = prompt.as_bytes();
    let mut steps = vec![step("\n", &[b"\r\n", p])];
    for cmd in &lookup(platform).unwrap().on_open {
        let echo = format!("{cmd}\r\n");
        steps.push(Step {
            expect_write: format!("{cmd}\n"),
            reply: vec![echo.into_bytes(), p.to_vec()],
        });
    }
    steps.append(&mut more);
    driver(platform, &[b"banner\r\n", p], steps).unwrap()
}

#[test]
fn pagers_and_context_lines_per_platform() {
    // Junos: "---(more)---", erased with CR, blanks, CR; context line above the config prompt.
    let mut d = open_at(
        "juniper_junos",
        "admin@vmx1> ",
        vec![
            step(
                "show interfaces terse\n",
                &[
                    b"show interfaces terse \r\nInterface  Admin Link\r\nge-0/0/0   up    up\r\n---(more)---",
                    b"\r                                        \r",
                    b"ge-0/0/1   up    down\r\n\r\nadmin@vmx1> ",
                ],
            ),
            step(" ", &[]),
            step("configure\n", &[b"configure \r\nEntering configuration mode\r\n\r\n[edit]\r\nadmin@vmx1# "]),
        ],
    );
    assert_eq!(d.mode, "operational");
    let r = run(&mut d, "show interfaces terse");
    assert_eq!(
        r.output,
        "Interface  Admin Link\nge-0/0/0   up    up\nge-0/0/1   up    down\n"
    );
    let r = run(&mut d, "configure");
    assert_eq!(r.output, "Entering configuration mode\n");
    assert_eq!(d.mode, "config");

    // Huawei VRP: "  ---- More ----", erased with cursor-left, blanks, cursor-left.
    let mut d = open_at(
        "huawei_vrp",
        "<HUAWEI>",
        vec![
            step(
                "display interface brief\n",
                &[
                    b"display interface brief\r\nInterface   PHY   Protocol\r\n  ---- More ----",
                    b"\x1b[42D                                          \x1b[42D",
                    b"GE0/0/1     up    up\r\n<HUAWEI>",
                ],
            ),
            step(" ", &[]),
        ],
    );
    assert_eq!(d.mode, "user");
    let r = run(&mut d, "display interface brief");
    assert_eq!(r.output, "Interface   PHY   Protocol\nGE0/0/1     up    up");
}

#[test]
fn a_device_that_prints_no_line_break_before_its_prompt_still_opens() {
    let steps = vec![
        step("\n", &[b"R1#"]),
        step("terminal length 0\n", &[b"terminal length 0\r\nR1#"]),
        step("terminal width 511\n", &[b"terminal width 511\r\nR1#"]),
        step("\n", &[b"R1#"]),
    ];
    let mut d = driver("cisco_ios", &[b"R1#"], steps).unwrap();
    assert_eq!(d.prompt_base(), "R1");
    assert_eq!(
        d.keepalive(true, Duration::from_secs(2)),
        Ok(Keepalive::Answered)
    );
}

fn telnet_open(greeting: &[&[u8]], steps: Vec<Step>) -> Result<Driver, OpenError> {
    let t = Scripted::new(greeting, steps);
    let pw = Secret::new("s3cret");
    Driver::open(
        Channel::new(Box::new(t), lookup("cisco_ios").unwrap().line.clone()),
        lookup("cisco_ios").unwrap(),
        &OpenOptions {
            host: "test",
            login: Some(Login {
                username: "admin",
                password: &pw,
            }),
            enable_secret: None,
            enable_level: None,
            max_output: 1 << 20,
            deadline: Instant::now() + Duration::from_secs(2),
        },
    )
}

#[test]
fn telnet_login_forms() {
    // Username + password, a banner with a prompt-like line before it.
    let mut steps = vec![
        step("admin\n", &[b"admin\r\nPassword: "]),
        step("s3cret\n", &[b"\r\n\r\nR1#"]),
    ];
    steps.extend(ios_open("R1#"));
    let d = telnet_open(
        &[b"\r\n*** R1# lab ***\r\n\r\nUser Access Verification\r\n\r\nUsername: "],
        steps,
    )
    .unwrap();
    assert_eq!(d.mode, "enable");
    // A line password only; `login:` and `User Name:` forms.
    for greeting in [&b"\r\nPassword: "[..], b"sw1 login: ", b"User Name:"] {
        let mut steps = Vec::new();
        if !greeting.ends_with(b"Password: ") {
            steps.push(step("admin\n", &[b"\r\nPassword:"]));
        }
        steps.push(step("s3cret\n", &[b"\r\nR1#"]));
        steps.extend(ios_open("R1#"));
        assert!(telnet_open(&[greeting], steps).is_ok(), "{greeting:?}");
    }
}

#[test]
fn telnet_login_refusals_are_401() {
    let cases: Vec<(&[u8], &str)> = vec![
        (b"\r\n% Login invalid\r\n\r\nUsername: ", "% Login invalid"),
        (
            b"\r\n% Authentication failed\r\n\r\nUsername: ",
            "% Authentication failed",
        ),
        (b"\r\nLogin incorrect\r\nlogin: ", "Login incorrect"),
        (b"\r\nUsername: ", "asked for the username again"),
        (b"\r\nPassword: ", "asked for the password again"),
    ];
    for (reply, want) in cases {
        let steps = vec![
            step("admin\n", &[b"\r\nPassword: "]),
            step("s3cret\n", &[reply]),
        ];
        match telnet_open(&[b"Username: "], steps) {
            Err(e @ OpenError::LoginRefused(_)) => assert!(e.to_string().contains(want), "{e}"),
            Err(e) => panic!("{want}: {e}"),
            Ok(_) => panic!("{want}: logged in"),
        }
    }
    // Nothing at all: 504.
    assert!(matches!(
        telnet_open(&[], vec![]),
        Err(OpenError::NoPrompt(_))
    ));
}

/// Every way the driver types into a device goes through the channel's policy check: a Telnet
/// login with an enable secret, a config block with a save that asks a question, a dialogue with
/// a hidden answer and a pager, and a keepalive. (The transport is private to the channel, so
/// nothing else can write; the logout and shell-exit steps use the same `Channel::send`.)
#[test]
fn every_send_path_is_seen_by_the_command_policy() {
    let t = Scripted::new(
        &[b"\r\nUser Access Verification\r\n\r\nUsername: "],
        vec![
            step("admin\n", &[b"admin\r\nPassword: "]),
            step("s3cret\n", &[b"\r\nR1>"]),
            step("\n", &[b"\r\nR1>"]),
            step("enable\n", &[b"enable\r\nPassword: "]),
            step("en-s3cret\n", &[b"\r\nR1#"]),
            step("terminal length 0\n", &[b"terminal length 0\r\nR1#"]),
            step("terminal width 511\n", &[b"terminal width 511\r\nR1#"]),
            step(
                "configure terminal\n",
                &[b"configure terminal\r\nEnter configuration commands.\r\nR1(config)#"],
            ),
            step("hostname R1\n", &[b"hostname R1\r\nR1(config)#"]),
            step("end\n", &[b"end\r\nR1#"]),
            step(
                "write memory\n",
                &[b"write memory\r\nDestination filename [startup-config]? "],
            ),
            step("\n", &[b"\r\n[OK]\r\nR1#"]),
            step(
                "copy scp: flash:\n",
                &[b"copy scp: flash:\r\nAddress or name of remote host []? "],
            ),
            step("10.0.0.9\n", &[b"10.0.0.9\r\nPassword: "]),
            step("pw\n", &[b"\r\nline 1\r\n --More-- "]),
            step(
                " ",
                &[b"\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08line 2\r\nR1#"],
            ),
            step("\n", &[b"\r\nR1#"]),
        ],
    );
    let pw = Secret::new("s3cret");
    let en = Secret::new("en-s3cret");
    let p = lookup("cisco_ios").unwrap();
    let mut d = Driver::open(
        Channel::new(Box::new(t), p.line.clone()),
        p,
        &OpenOptions {
            host: "test",
            login: Some(Login {
                username: "admin",
                password: &pw,
            }),
            enable_secret: Some(&en),
            enable_level: None,
            max_output: 1 << 20,
            deadline: Instant::now() + Duration::from_secs(5),
        },
    )
    .unwrap();
    // Rules that every checked step passes: the walk is about being seen.
    d.set_rules(std::sync::Arc::new(
        crate::policy::CommandRules::new(&["^reload"], &[]).unwrap(),
    ));
    let never = || false;
    let cfg = p.config.as_ref().unwrap();
    let save = cfg.save.as_ref().unwrap();
    let dest = crate::platform::Answer {
        expect: Regex::new(r"Destination filename").unwrap(),
        send: "\n".into(),
    };
    let items = vec![
        ExecItem {
            step: crate::channel::typed::Step::ConfigEnter,
            ..ExecItem::plain(&cfg.enter)
        },
        ExecItem {
            step: crate::channel::typed::Step::ConfigLine,
            ..ExecItem::plain("hostname R1")
        },
        ExecItem {
            step: crate::channel::typed::Step::ConfigExit,
            ..ExecItem::answering(&cfg.exit, &[])
        },
        ExecItem {
            step: crate::channel::typed::Step::Save,
            ..ExecItem::answering(&save.command, std::slice::from_ref(&dest))
        },
        ExecItem {
            interactions: vec![
                Interaction {
                    expect: Regex::new("remote host").unwrap(),
                    send: Secret::new("10.0.0.9\n"),
                    hidden: false,
                    from_platform: false,
                },
                Interaction {
                    expect: Regex::new("Password:").unwrap(),
                    send: Secret::new("pw\n"),
                    hidden: true,
                    from_platform: false,
                },
            ],
            ..ExecItem::plain("copy scp: flash:")
        },
    ];
    d.preflight(items.iter()).unwrap();
    for item in &items {
        d.run(
            item,
            Instant::now() + Duration::from_secs(5),
            &never,
            usize::MAX,
        )
        .unwrap();
    }
    assert_eq!(
        d.keepalive(true, Duration::from_secs(2)),
        Ok(Keepalive::Answered)
    );
    use crate::channel::typed::Step as S;
    let typed = &d.chan.guard().typed;
    for s in S::ALL {
        if [S::ShellExit, S::Logout].contains(&s) {
            continue;
        }
        assert!(typed.contains(&s), "{s:?} never typed: {typed:?}");
    }
    // And a policy that refuses everything refuses each checked step before it is typed.
    let deny_all = crate::policy::CommandRules::new(&["."], &[]).unwrap();
    let mut g = d.chan.guard().clone();
    g.set_rules(std::sync::Arc::new(deny_all));
    for s in S::ALL {
        assert_eq!(g.admit("x\n", s).is_err(), s.checked(), "{s:?}");
    }
}
