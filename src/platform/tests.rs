//! Platform tables checked against prompt lines taken from each platform's documentation and
//! from Netmiko's and scrapli's platform definitions (never from our own fake devices).

use super::*;

/// (prompt line, expected hostname part, expected mode). A `None` base means "not a prompt".
type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>);

fn check_prompts(name: &str, cases: &[Case]) {
    let p = lookup(name).unwrap_or_else(|| panic!("no platform {name}"));
    assert_eq!(p.name, name, "{name} resolves to another profile");
    for (line, base, mode) in cases {
        assert_eq!(p.prompt_base(line), *base, "{name}: base of {line:?}");
        if base.is_some() {
            assert_eq!(p.mode_of(line), *mode, "{name}: mode of {line:?}");
            let learned = p.learned_prompt(base.unwrap_or_default()).unwrap();
            assert!(learned.is_match(line), "{name}: learned prompt vs {line:?}");
        }
    }
}

#[test]
fn embedded_platforms_compile() {
    let ps = all().unwrap();
    for want in [
        "generic",
        "cisco_ios",
        "cisco_nxos",
        "cisco_asa",
        "cisco_xr",
        "juniper_junos",
        "arista_eos",
        "nokia_sros",
        "hp_procurve",
        "hp_comware",
        "huawei_vrp",
        "linux",
    ] {
        assert!(ps.iter().any(|p| p.name == want), "missing {want}");
    }
    assert_eq!(lookup("CISCO_XE").unwrap().name, "cisco_ios");
    assert!(lookup("nope").is_none());
}

#[test]
fn every_netmiko_name_is_accepted_and_aliases_are_unique() {
    let mut seen = std::collections::HashMap::new();
    for p in all().unwrap() {
        for n in std::iter::once(&p.name).chain(p.aliases.iter()) {
            assert_eq!(n, &n.to_ascii_lowercase());
            if let Some(other) = seen.insert(n.clone(), p.name.clone()) {
                panic!("{n} is claimed by {other} and {}", p.name);
            }
        }
    }
    for n in netmiko_names() {
        assert!(lookup(n).is_some(), "{n}");
    }
    // A Netmiko name without a profile runs on generic.
    assert_eq!(lookup("dell_os10").unwrap().name, GENERIC);
    assert_eq!(lookup("cisco_ios_telnet").unwrap().name, "cisco_ios");
    let k = known();
    assert!(k.len() >= 416);
    assert!(k.windows(2).all(|w| w[0].0 < w[1].0));
}

#[test]
fn cisco_ios_prompts_and_modes() {
    check_prompts(
        "cisco_ios",
        &[
            ("R1>", Some("R1"), Some("user")),
            ("R1#", Some("R1"), Some("enable")),
            ("R1(config)#", Some("R1"), Some("config")),
            (
                "core-sw.lab(config-if)#",
                Some("core-sw.lab"),
                Some("config"),
            ),
            ("R1(config-router-af)# ", Some("R1"), Some("config")),
            ("#####", None, None),
            ("Welcome to R1#", None, None),
            ("show version", None, None),
        ],
    );
    let p = lookup("cisco_ios").unwrap();
    let learned = p.learned_prompt("sw1.a+b").unwrap();
    assert!(learned.is_match("sw1.a+b(config)#"));
    assert!(!learned.is_match("sw1xa+b#"));
    assert!(!learned.is_match("sw1.a+bb#"));
    assert_eq!(
        p.enable.as_ref().unwrap().command_for(Some(15)),
        "enable 15"
    );
    assert_eq!(p.enable.as_ref().unwrap().command_for(None), "enable");
}

#[test]
fn generic_accepts_common_prompts() {
    check_prompts(
        "generic",
        &[
            ("SW-01>", Some("SW-01"), Some("user")),
            ("SW-01#", Some("SW-01"), Some("privileged")),
            ("SW-01(config)#", Some("SW-01"), Some("config")),
            ("admin@fw01:~$ ", Some("admin@fw01:~"), Some("user")),
            ("root@box:/etc#", Some("root@box:/etc"), Some("privileged")),
            ("user@host%", Some("user@host"), Some("user")),
            ("Last login: today from 10.0.0.1", None, None),
            ("####", None, None),
        ],
    );
}

#[test]
fn failure_reports_the_line() {
    let p = lookup("cisco_ios").unwrap();
    let out = "show foo\n           ^\n% Invalid input detected at '^' marker.\n";
    assert_eq!(
        p.failure_in(out).as_deref(),
        Some("% Invalid input detected at '^' marker.")
    );
    assert_eq!(p.failure_in("all good"), None);
    // Anchored indicators only match at a line start.
    assert_eq!(p.failure_in("log: x % Error y"), None);
    assert!(p.failure_in("ok\n% Error opening tftp://x").is_some());
}

// ---- helpers for the vendor tables below -------------------------------------------------

fn platform(name: &str) -> &'static Platform {
    let p = lookup(name).unwrap_or_else(|| panic!("no platform {name}"));
    assert_eq!(p.name, name, "{name} resolves to another profile");
    p
}

/// Which pager (by index) takes this last line, if any.
fn pager_for(p: &Platform, line: &str) -> Option<usize> {
    p.pagers.iter().position(|g| g.pattern.is_match(line))
}

/// The answer a question (searched in the text, as the driver does) gets.
fn answer_for<'a>(answers: &'a [Answer], text: &str) -> Option<&'a str> {
    answers
        .iter()
        .find(|a| a.expect.is_match(text))
        .map(|a| a.send.as_str())
}

/// Every (output, expected failure line) pair; `None` = normal output, nothing flagged.
fn check_failures(name: &str, cases: &[(&str, Option<&str>)]) {
    let p = platform(name);
    for (out, want) in cases {
        assert_eq!(
            p.failure_in(out).as_deref(),
            *want,
            "{name}: failure in {out:?}"
        );
    }
}

fn check_aliases(name: &str, aliases: &[&str]) {
    for a in aliases {
        assert_eq!(lookup(a).map(|p| p.name.as_str()), Some(name), "alias {a}");
    }
}

// ---- Cisco NX-OS -------------------------------------------------------------------------

#[test]
fn cisco_nxos_table() {
    check_prompts(
        "cisco_nxos",
        &[
            ("switch#", Some("switch"), Some("enable")),
            ("N9K-C93180YC-01# ", Some("N9K-C93180YC-01"), Some("enable")),
            ("switch(config)#", Some("switch"), Some("config")),
            ("nx1.lab(config-if)#", Some("nx1.lab"), Some("config")),
            (
                "switch(config-router-neighbor-af)#",
                Some("switch"),
                Some("config"),
            ),
            ("switch(config-s)#", Some("switch"), Some("config")),
            ("switch(maint-mode)#", Some("switch"), Some("enable")),
            (
                "switch(maint-mode)(config)#",
                Some("switch"),
                Some("config"),
            ),
            ("switch>", Some("switch"), Some("user")),
            ("User Access Verification", None, None),
            ("#####", None, None),
            ("Welcome to switch#", None, None),
        ],
    );
    let p = platform("cisco_nxos");
    assert_eq!(p.on_open, ["terminal width 511", "terminal length 0"]);
    let en = p.enable.as_ref().unwrap();
    assert_eq!(en.command_for(Some(15)), "enable 15");
    assert!(en.password_prompt.is_match("Password: "));
    let c = p.config.as_ref().unwrap();
    assert_eq!(
        (c.enter.as_str(), c.exit.as_str()),
        ("configure terminal", "end")
    );
    assert_eq!(
        c.save.as_ref().unwrap().command,
        "copy running-config startup-config"
    );
    assert!(!c.save.as_ref().unwrap().in_config);
    assert_eq!(pager_for(p, " --More-- "), Some(0));
    assert!(p
        .prompt_changes
        .iter()
        .any(|r| r.is_match("switchname nx2")));
    check_failures(
        "cisco_nxos",
        &[
            (
                "show foo\n         ^\n% Invalid command at '^' marker.\n",
                Some("% Invalid command at '^' marker."),
            ),
            (
                "         ^\n% Invalid parameter detected at '^' marker.",
                Some("% Invalid parameter detected at '^' marker."),
            ),
            ("% Incomplete command at '^' marker.", Some("% Incomplete command at '^' marker.")),
            (
                "% Permission denied for the role",
                Some("% Permission denied for the role"),
            ),
            (
                "ERROR: Ethernet1/49: Config not allowed, as first port in the port-grp is in Active mode",
                Some("ERROR: Ethernet1/49: Config not allowed, as first port in the port-grp is in Active mode"),
            ),
            (
                "Eth1/1  --  eth  routed  down  XCVR not inserted  auto(D) --\nInput errors: 0",
                None,
            ),
            ("[########################################] 100%\nCopy complete.", None),
        ],
    );
    check_aliases("cisco_nxos", &["cisco_nxos_ssh", "cisco_nxos_telnet"]);
}

// ---- Cisco ASA ---------------------------------------------------------------------------

#[test]
fn cisco_asa_table() {
    check_prompts(
        "cisco_asa",
        &[
            ("ciscoasa>", Some("ciscoasa"), Some("user")),
            ("ciscoasa#", Some("ciscoasa"), Some("enable")),
            ("ciscoasa(config)# ", Some("ciscoasa"), Some("config")),
            ("fw-edge01(config-if)#", Some("fw-edge01"), Some("config")),
            ("fw1/admin#", Some("fw1"), Some("enable")),
            ("fw1/ctx-dmz(config)#", Some("fw1"), Some("config")),
            ("fw1/pri/act#", Some("fw1"), Some("enable")),
            ("fw1/admin/sec/stby>", Some("fw1"), Some("user")),
            (
                "Type help or '?' for a list of available commands.",
                None,
                None,
            ),
            ("Welcome to ciscoasa#", None, None),
        ],
    );
    let p = platform("cisco_asa");
    // The context changes with `changeto`, the failover state with a failover: same device.
    let learned = p.learned_prompt("fw1").unwrap();
    assert!(learned.is_match("fw1/ctx2(config)#"));
    assert!(!learned.is_match("fw10/admin#"));
    assert_eq!(p.on_open, ["terminal pager 0"]);
    let en = p.enable.as_ref().unwrap();
    assert_eq!(en.command_for(Some(5)), "enable 5");
    assert!(en.password_prompt.is_match("Password: "));
    assert_eq!(
        p.config.as_ref().unwrap().save.as_ref().unwrap().command,
        "write memory"
    );
    assert_eq!(pager_for(p, "<--- More --->"), Some(0));
    assert!(p
        .prompt_changes
        .iter()
        .any(|r| r.is_match("changeto context dmz")));
    check_failures(
        "cisco_asa",
        &[
            (
                "show foo\n        ^\nERROR: % Invalid input detected at '^' marker.\n",
                Some("ERROR: % Invalid input detected at '^' marker."),
            ),
            (
                "ERROR: % Incomplete command",
                Some("ERROR: % Incomplete command"),
            ),
            (
                "ERROR: Interface name must be configured first",
                Some("ERROR: Interface name must be configured first"),
            ),
            (
                "Building configuration...\nCryptochecksum: 1a2b 3c4d\n[OK]",
                None,
            ),
            ("WARNING: interface is shut down", None),
        ],
    );
    check_aliases("cisco_asa", &["cisco_asa_ssh"]);
    // FTD is another CLI (Netmiko's CiscoFtdSSH): not claimed.
    assert_ne!(lookup("cisco_ftd").unwrap().name, "cisco_asa");
}

// ---- Cisco IOS XR ------------------------------------------------------------------------

#[test]
fn cisco_xr_table() {
    check_prompts(
        "cisco_xr",
        &[
            ("RP/0/RSP0/CPU0:pe1#", Some("pe1"), Some("enable")),
            ("RP/0/RP0/CPU0:xrv9k-01# ", Some("xrv9k-01"), Some("enable")),
            ("RP/0/0/CPU0:ios(config)#", Some("ios"), Some("config")),
            (
                "RP/0/RSP0/CPU0:pe1(config-if)#",
                Some("pe1"),
                Some("config"),
            ),
            ("RP/0/RSP0/CPU0:BNG(admin)#", Some("BNG"), Some("enable")),
            (
                "RP/0/RSP0/CPU0:BNG(admin-config)#",
                Some("BNG"),
                Some("config"),
            ),
            ("Thu Oct 29 22:59:36.150 UTC", None, None),
            ("Welcome to pe1#", None, None),
        ],
    );
    let p = platform("cisco_xr");
    assert!(p.enable.is_none(), "IOS XR has no enable");
    let learned = p.learned_prompt("ncs5501.site01").unwrap();
    assert!(learned.is_match("RP/0/RP0/CPU0:ncs5501.site01#"));
    // A route processor switchover changes the node prefix only.
    assert!(learned.is_match("RP/0/RP1/CPU0:ncs5501.site01(config)#"));
    // Long config prompts shorten or drop the hostname.
    assert!(learned.is_match("RP/0/RSP0/CPU0:ncs5501(config-redundancy-group-iccp-backbone)#"));
    assert!(learned.is_match("RP/0/RSP0/CPU0(config-redundancy-group-iccp-backbone)#"));
    // `admin` on 64-bit XR.
    assert!(learned.is_match("sysadmin-vm:0_RP0#"));
    assert!(learned.is_match("sysadmin-vm:0_RP0(config)#"));
    assert!(!learned.is_match("RP/0/RP0/CPU0:other#"));
    assert_eq!(p.on_open, ["terminal width 511", "terminal length 0"]);
    let c = p.config.as_ref().unwrap();
    assert_eq!(
        (c.enter.as_str(), c.exit.as_str()),
        ("configure terminal", "end")
    );
    assert_eq!(
        answer_for(
            &c.exit_answers,
            "end\nUncommitted changes found, commit them before exiting(yes/no/cancel)? [cancel]:"
        ),
        Some("no\n")
    );
    let save = c.save.as_ref().unwrap();
    assert_eq!(save.command, "commit");
    assert!(save.in_config);
    assert_eq!(
        answer_for(
            &save.answers,
            "This could be a few minutes if your config is large. Confirm? [y/n][confirm]"
        ),
        Some("y\n")
    );
    assert_eq!(
        answer_for(
            &save.answers,
            "Do you wish to proceed with this commit anyway? [no]"
        ),
        Some("no\n")
    );
    assert!(p.prompt_changes.iter().any(|r| r.is_match("commit")));
    assert_eq!(pager_for(p, " --More-- "), Some(0));
    check_failures(
        "cisco_xr",
        &[
            (
                "Thu Oct 29 22:59:36.150 UTC\n             ^\n% Invalid input detected at '^' marker.",
                Some("% Invalid input detected at '^' marker."),
            ),
            (
                "% Failed to commit one or more configuration items during a pseudo-atomic operation. All changes made have been reverted.",
                Some("% Failed to commit one or more configuration items during a pseudo-atomic operation. All changes made have been reverted."),
            ),
            (
                "One or more commits have occurred from other configuration sessions since this session started or since the last commit was made from this session.",
                Some("One or more commits have occurred from other configuration sessions since this session started or since the last commit was made from this session."),
            ),
            (
                "Thu Oct 29 22:59:36.150 UTC\nCisco IOS XR Software, Version 7.3.2\n",
                None,
            ),
        ],
    );
    check_aliases("cisco_xr", &["cisco_xr_ssh", "cisco_xr_telnet"]);
}

// ---- Juniper Junos -----------------------------------------------------------------------

#[test]
fn juniper_junos_table() {
    check_prompts(
        "juniper_junos",
        &[
            ("admin@mx1>", Some("admin@mx1"), Some("operational")),
            ("admin@mx1> ", Some("admin@mx1"), Some("operational")),
            ("admin@mx1# ", Some("admin@mx1"), Some("config")),
            (
                "netops@ex4300-re0.lab>",
                Some("netops@ex4300-re0.lab"),
                Some("operational"),
            ),
            ("root>", Some("root"), Some("operational")),
            ("root#", Some("root"), Some("config")),
            ("root@srx1%", Some("root@srx1"), Some("shell")),
            ("root@mx1:RE:0% ", Some("root@mx1:RE:0"), Some("shell")),
            ("root@:RE:0%", Some("root@:RE:0"), Some("shell")),
            ("root@mx1:~ # ", Some("root@mx1"), Some("shell")),
            ("[edit]", None, None),
            ("{master:0}", None, None),
            (
                "--- JUNOS 21.4R3.15 Kernel 64-bit  JNPR-12.1-20220128.4a7c4f0_buil",
                None,
                None,
            ),
            ("Welcome to mx1>", None, None),
            ("#", None, None),
        ],
    );
    let p = platform("juniper_junos");
    assert!(p.enable.is_none(), "Junos has no enable");
    let learned = p.learned_prompt("admin@mx1").unwrap();
    assert!(!learned.is_match("admin@mx10>"));
    // Root in the shell: `cli`.
    let esc = p.shell_escape.as_ref().unwrap();
    assert_eq!(esc.command, "cli");
    for l in ["root@srx1%", "root@mx1:RE:0% ", "root@mx1:~ # ", "%"] {
        assert!(esc.pattern.is_match(l), "{l}");
    }
    for l in ["root>", "admin@mx1>", "admin@mx1#"] {
        assert!(!esc.pattern.is_match(l), "{l}");
    }
    // Context lines above the prompt (Netmiko's strip_context_items).
    for l in [
        "[edit]",
        "[edit interfaces ge-0/0/0 unit 0]",
        "{master:0}",
        "{backup:1}",
        "{master}",
        "{primary:node0}",
        "{secondary:node1}",
        "{linecard:2}",
        "{master:0}[edit]",
    ] {
        assert!(p.is_context(l), "{l}");
    }
    for l in ["ge-0/0/0 up up", "[edit", "commit complete", "{ \"a\": 1 }"] {
        assert!(!p.is_context(l), "{l}");
    }
    assert_eq!(
        p.on_open,
        [
            "set cli complete-on-space off",
            "set cli screen-length 0",
            "set cli screen-width 511"
        ]
    );
    let c = p.config.as_ref().unwrap();
    assert_eq!(
        (c.enter.as_str(), c.exit.as_str()),
        ("configure", "exit configuration-mode")
    );
    assert_eq!(
        answer_for(
            &c.exit_answers,
            "The configuration has been changed but not committed\nExit with uncommitted changes? [yes,no] (yes) "
        ),
        Some("yes\n")
    );
    let save = c.save.as_ref().unwrap();
    assert_eq!((save.command.as_str(), save.in_config), ("commit", true));
    assert_eq!(
        p.close.from_mode.get("config").map(String::as_str),
        Some("exit configuration-mode")
    );
    assert_eq!(pager_for(p, "---(more)---"), Some(0));
    assert_eq!(pager_for(p, "---(more 45%)---"), Some(0));
    assert!(p
        .prompt_changes
        .iter()
        .any(|r| r.is_match("set system host-name mx2")));
    assert!(p
        .prompt_changes
        .iter()
        .any(|r| r.is_match("commit and-quit")));
    check_failures(
        "juniper_junos",
        &[
            (
                "show foo\n     ^\nsyntax error, expecting <command>.",
                Some("syntax error, expecting <command>."),
            ),
            ("           ^\nunknown command.", Some("unknown command.")),
            (
                "set interfaces ge-0/0/0 foo\n                          ^\nsyntax error.",
                Some("syntax error."),
            ),
            (
                "[edit interfaces]\n  'ge-0/0/0'\n    Missing mandatory statement: 'unit'\nerror: configuration check-out failed",
                Some("error: configuration check-out failed"),
            ),
            ("error: commit failed: (statements constraint check failed)", Some("error: commit failed: (statements constraint check failed)")),
            ("                ^\n's' is ambiguous.", Some("'s' is ambiguous.")),
            (
                "Physical interface: ge-0/0/0, Enabled, Physical link is Up\n  Input errors: 0, Output errors: 0",
                None,
            ),
            ("commit complete", None),
            ("warning: statement has no contents; ignored", None),
        ],
    );
    check_aliases(
        "juniper_junos",
        &[
            "juniper",
            "juniper_ssh",
            "juniper_junos_ssh",
            "juniper_junos_telnet",
        ],
    );
}

// ---- Arista EOS --------------------------------------------------------------------------

#[test]
fn arista_eos_table() {
    check_prompts(
        "arista_eos",
        &[
            ("leaf1>", Some("leaf1"), Some("user")),
            ("leaf1#", Some("leaf1"), Some("enable")),
            ("leaf1(config)#", Some("leaf1"), Some("config")),
            (
                "leaf1.dc1(config-if-Et1)# ",
                Some("leaf1.dc1"),
                Some("config"),
            ),
            ("spine1(config-router-bgp)#", Some("spine1"), Some("config")),
            ("loc1-core01(s1)#", Some("loc1-core01"), Some("enable")),
            (
                "loc1-core01(s2)(config)#",
                Some("loc1-core01"),
                Some("config"),
            ),
            ("leaf1(config-s-sess1)#", Some("leaf1"), Some("config")),
            ("localhost>", Some("localhost"), Some("user")),
            (
                "Last login: Mon Jan  1 00:00:00 2024 from 10.0.0.1",
                None,
                None,
            ),
            ("Welcome to leaf1#", None, None),
        ],
    );
    let p = platform("arista_eos");
    assert_eq!(p.on_open, ["terminal width 511", "terminal length 0"]);
    let en = p.enable.as_ref().unwrap();
    assert_eq!(en.command_for(None), "enable");
    assert_eq!(en.command_for(Some(15)), "enable 15");
    assert!(en.password_prompt.is_match("Password: "));
    let c = p.config.as_ref().unwrap();
    assert_eq!(
        c.save.as_ref().unwrap().command,
        "copy running-config startup-config"
    );
    assert_eq!(pager_for(p, " --More-- "), Some(0));
    check_failures(
        "arista_eos",
        &[
            (
                "SW1(config-if-Et5)#Duplex full\n% Invalid input",
                Some("% Invalid input"),
            ),
            (
                "% Invalid input (privileged mode required)",
                Some("% Invalid input (privileged mode required)"),
            ),
            ("% Incomplete command", Some("% Incomplete command")),
            ("% Ambiguous command", Some("% Ambiguous command")),
            (
                "% Unavailable command (not supported on this hardware platform)",
                Some("% Unavailable command (not supported on this hardware platform)"),
            ),
            ("Copy completed successfully.", None),
            (
                "Et1  connected  1  full  10G  10GBASE-SR\nInput errors 0",
                None,
            ),
        ],
    );
    check_aliases("arista_eos", &["arista_eos_ssh", "arista_eos_telnet"]);
}

// ---- Nokia SR OS -------------------------------------------------------------------------

#[test]
fn nokia_sros_table() {
    check_prompts(
        "nokia_sros",
        &[
            // Classic CLI.
            ("A:R1#", Some("R1"), Some("operational")),
            ("*A:R1# ", Some("R1"), Some("operational")),
            ("B:pe-2.lab#", Some("pe-2.lab"), Some("operational")),
            ("A:R1>config#", Some("R1"), Some("config")),
            ("*A:R1>config>router>bgp#", Some("R1"), Some("config")),
            ("*A:R1>config>service>vpls$ ", Some("R1"), Some("config")),
            // MD-CLI (the context line is above, see is_context).
            ("A:admin@node-2#", Some("node-2"), Some("operational")),
            ("*A:admin@node-2# ", Some("node-2"), Some("operational")),
            ("[/]", None, None),
            ("(ex)[/configure router \"Base\" bgp]", None, None),
            ("Welcome to R1#", None, None),
            ("=================================", None, None),
        ],
    );
    let p = platform("nokia_sros");
    assert!(p
        .learned_prompt("node-2")
        .unwrap()
        .is_match("*A:admin@node-2#"));
    assert!(p
        .learned_prompt("R1")
        .unwrap()
        .is_match("A:R1>config>router#"));
    assert!(!p.learned_prompt("R1").unwrap().is_match("A:R10#"));
    for l in [
        "[]",
        "[/]",
        "(ro)[/]",
        "(ex)[/configure router \"Base\" bgp]",
        "(ex)[configure router \"Base\" bgp]",
        "*(ex)[/configure]",
        "!*(pr)[/configure]",
        "(ex:bof)[/]",
        "[ro:/configure]",
        "*[ex:/configure]",
    ] {
        assert!(p.is_context(l), "{l}");
    }
    for l in ["A:R1#", "===============", "[ 1/1/1 up ]", "Port 1/1/1"] {
        assert!(!p.is_context(l), "{l}");
    }
    assert!(p.enable.is_none());
    assert_eq!(p.on_open[0], "environment command-completion space false");
    assert!(p.on_open.iter().any(|c| c == "environment no more"));
    assert!(p.on_open.iter().any(|c| c == "environment more false"));
    let c = p.config.as_ref().unwrap();
    assert_eq!(
        (c.enter.as_str(), c.exit.as_str()),
        ("configure", "exit all")
    );
    assert_eq!(c.save.as_ref().unwrap().command, "/admin save");
    assert_eq!(
        pager_for(p, "Press any key to continue (Q to quit)"),
        Some(0)
    );
    assert_eq!(
        pager_for(
            p,
            "Press Q to quit, Enter to print next line or any other key to print next page."
        ),
        Some(1)
    );
    assert!(p
        .prompt_changes
        .iter()
        .any(|r| r.is_match("configure system name \"R2\"")));
    check_failures(
        "nokia_sros",
        &[
            ("Error: Bad command.", Some("Error: Bad command.")),
            (
                "MINOR: CLI Command not allowed for this user.",
                Some("MINOR: CLI Command not allowed for this user."),
            ),
            (
                "MINOR: MGMT_CORE #2201: Unknown element - 'foo'",
                Some("MINOR: MGMT_CORE #2201: Unknown element - 'foo'"),
            ),
            (
                "===============================================================================\nPort        Admin Link Port    Cfg  Oper LAG/ Port Port Port   C/QS/S/XFP/\n1/1/1       Up    Yes  Up      9212 9212    - netw null xcme   GIGE-LX  10KM",
                None,
            ),
            ("INFO: CLI #2052: Switching to the MD-CLI engine", None),
        ],
    );
    check_aliases(
        "nokia_sros",
        &[
            "nokia_sros_ssh",
            "nokia_sros_telnet",
            "alcatel_sros",
            "alcatel_sros_ssh",
        ],
    );
}

// ---- HP ProCurve / ArubaOS-Switch ----------------------------------------------------------

#[test]
fn hp_procurve_table() {
    check_prompts(
        "hp_procurve",
        &[
            ("HP-2920-24G>", Some("HP-2920-24G"), Some("user")),
            ("HP-2920-24G#", Some("HP-2920-24G"), Some("enable")),
            (
                "Aruba-2930F-48G(config)# ",
                Some("Aruba-2930F-48G"),
                Some("config"),
            ),
            ("sw1(vlan-10)#", Some("sw1"), Some("config")),
            ("sw1(eth-1/1)#", Some("sw1"), Some("config")),
            (
                "ProCurve Switch 2810-24G#",
                Some("ProCurve Switch 2810-24G"),
                Some("enable"),
            ),
            (
                "HP ProCurve Switch 2510-24(config)#",
                Some("HP ProCurve Switch 2510-24"),
                Some("config"),
            ),
            ("Welcome to sw1#", None, None),
            ("HP J9729A 2920-48G-POE+ Switch", None, None),
            ("Press any key to continue", None, None),
        ],
    );
    let p = platform("hp_procurve");
    assert_eq!(
        answer_for(&p.login, "\n(C) Copyright 2016 Hewlett Packard Enterprise Development LP\n\nPress any key to continue"),
        Some("\n")
    );
    assert_eq!(p.on_open, ["terminal width 511", "no page"]);
    let en = p.enable.as_ref().unwrap();
    assert!(en.level_command.is_none());
    assert!(en.password_prompt.is_match("Password: "));
    let c = p.config.as_ref().unwrap();
    assert_eq!(c.save.as_ref().unwrap().command, "write memory");
    assert_eq!(
        pager_for(
            p,
            "-- MORE --, next page: Space, next line: Enter, quit: Control-C"
        ),
        Some(0)
    );
    assert_eq!(p.close.logout.as_deref(), Some("logout"));
    check_failures(
        "hp_procurve",
        &[
            ("show foo\nInvalid input: foo", Some("Invalid input: foo")),
            ("Ambiguous input: s", Some("Ambiguous input: s")),
            ("  Status and Counters - General System Information\n  System Name        : HP-2920-24G", None),
        ],
    );
    check_aliases(
        "hp_procurve",
        &[
            "hp_procurve_ssh",
            "hp_procurve_telnet",
            "aruba_procurve",
            "aruba_procurve_ssh",
            "aruba_procurve_telnet",
            "aruba_osswitch",
            "aruba_osswitch_ssh",
        ],
    );
}

// ---- HPE / H3C Comware -------------------------------------------------------------------

#[test]
fn hp_comware_table() {
    check_prompts(
        "hp_comware",
        &[
            ("<HPE>", Some("HPE"), Some("user")),
            ("<core-sw1>", Some("core-sw1"), Some("user")),
            ("[HPE]", Some("HPE"), Some("system")),
            ("[H3C] ", Some("H3C"), Some("system")),
            ("RBM_P<FW1>", Some("FW1"), Some("user")),
            ("RBM_S[FW1]", Some("FW1"), Some("system")),
            ("#", None, None),
            (" sysname HPE", None, None),
            ("Welcome to <HPE>", None, None),
        ],
    );
    let p = platform("hp_comware");
    let learned = p.learned_prompt("core-sw1").unwrap();
    for l in [
        "<core-sw1>",
        "[core-sw1]",
        "[core-sw1-GigabitEthernet1/0/1]",
        "[core-sw1-vlan10]",
        "[core-sw1-ospf-1-area-0.0.0.0]",
        "[core-sw1-line-vty0-63]",
    ] {
        assert!(learned.is_match(l), "{l}");
        assert_eq!(
            p.mode_of(l),
            Some(if l.starts_with('<') { "user" } else { "system" })
        );
    }
    assert!(!learned.is_match("<core-sw10>"));
    assert_eq!(
        answer_for(&p.login, "******\nPress Y or ENTER to continue, N to exit."),
        Some("\n")
    );
    assert_eq!(p.on_open, ["screen-length disable"]);
    assert!(p.enable.is_none());
    let c = p.config.as_ref().unwrap();
    assert_eq!(
        (c.enter.as_str(), c.exit.as_str(), c.mode.as_str()),
        ("system-view", "return", "system")
    );
    assert_eq!(c.save.as_ref().unwrap().command, "save force");
    assert_eq!(pager_for(p, "  ---- More ----"), Some(0));
    assert!(p
        .prompt_changes
        .iter()
        .any(|r| r.is_match("sysname core-sw2")));
    check_failures(
        "hp_comware",
        &[
            (
                "display foo\n              ^\n % Unrecognized command found at '^' position.",
                Some("% Unrecognized command found at '^' position."),
            ),
            (
                "% Incomplete command found at '^' position.",
                Some("% Incomplete command found at '^' position."),
            ),
            (
                "% Too many parameters found at '^' position.",
                Some("% Too many parameters found at '^' position."),
            ),
            ("#\n version 7.1.064\n#\n sysname HPE\n#\nreturn", None),
        ],
    );
    check_aliases(
        "hp_comware",
        &[
            "hp_comware_ssh",
            "hp_comware_telnet",
            "h3c_comware",
            "h3c_comware_ssh",
        ],
    );
}

// ---- Huawei VRP --------------------------------------------------------------------------

#[test]
fn huawei_vrp_table() {
    check_prompts(
        "huawei_vrp",
        &[
            ("<HUAWEI>", Some("HUAWEI"), Some("user")),
            ("<AR1.site-2>", Some("AR1.site-2"), Some("user")),
            ("[HUAWEI]", Some("HUAWEI"), Some("system")),
            ("[~HUAWEI]", Some("HUAWEI"), Some("system")),
            ("[*HUAWEI]", Some("HUAWEI"), Some("system")),
            ("HRP_M<USG6000>", Some("USG6000"), Some("user")),
            ("HRP_S[USG6000]", Some("USG6000"), Some("system")),
            ("#", None, None),
            ("Info: The max number of VTY users is 5.", None, None),
        ],
    );
    let p = platform("huawei_vrp");
    let learned = p.learned_prompt("HUAWEI").unwrap();
    for l in [
        "[HUAWEI-GigabitEthernet0/0/1]",
        "[~HUAWEI-GigabitEthernet0/0/1]",
        "[*HUAWEI-vlan10]",
        "[HUAWEI-bgp]",
        "HRP_M[HUAWEI-policy-security]",
    ] {
        assert!(learned.is_match(l), "{l}");
        assert_eq!(p.mode_of(l), Some("system"));
    }
    assert_eq!(
        answer_for(
            &p.login,
            "Info: The password needs to be changed. Change now? [Y/N]:"
        ),
        Some("N\n")
    );
    assert_eq!(
        answer_for(
            &p.login,
            " Warning: There are security risks in the configuration file. You are advised to save the configuration immediately. If you choose to save, the current configuration file will be unavailable after version downgrade. Are you sure to save now?[Y/N]:"
        ),
        Some("N\n")
    );
    assert_eq!(p.on_open, ["screen-length 0 temporary"]);
    assert!(p.enable.is_none());
    let c = p.config.as_ref().unwrap();
    assert_eq!(
        (c.enter.as_str(), c.exit.as_str(), c.mode.as_str()),
        ("system-view", "return", "system")
    );
    let save = c.save.as_ref().unwrap();
    assert_eq!(save.command, "save");
    for q in [
        "Warning: The current configuration will be written to the device. Continue? [Y/N]:",
        " Are you sure to continue?[Y/N]:",
        "Are you sure to continue? (y/n)[n]:",
    ] {
        assert_eq!(answer_for(&save.answers, q), Some("y\n"), "{q}");
    }
    assert_eq!(pager_for(p, "  ---- More ----"), Some(0));
    check_failures(
        "huawei_vrp",
        &[
            (
                "display foo\n              ^\nError: Unrecognized command found at '^' position.",
                Some("Error: Unrecognized command found at '^' position."),
            ),
            ("Error: Wrong parameter found at '^' position.", Some("Error: Wrong parameter found at '^' position.")),
            (
                "Error:Too many parameters found at '^' position.",
                Some("Error:Too many parameters found at '^' position."),
            ),
            (
                "GigabitEthernet0/0/1 current state : UP\n  Input:  0 packets, 0 bytes\n  Input error: 0",
                None,
            ),
            ("Info: Save the configuration successfully.", None),
        ],
    );
    check_aliases(
        "huawei_vrp",
        &["huawei", "huawei_ssh", "huawei_telnet", "huawei_vrp_ssh"],
    );
    // VRP8 with commit (HuaweiVrpv8SSH) is another class in Netmiko: not claimed.
    assert_ne!(lookup("huawei_vrpv8").unwrap().name, "huawei_vrp");
}

// ---- Linux -------------------------------------------------------------------------------

#[test]
fn linux_table() {
    check_prompts(
        "linux",
        &[
            ("admin@web01:~$ ", Some("web01"), Some("user")),
            ("root@web01:/etc/ssh# ", Some("web01"), Some("root")),
            ("[admin@rhel9 ~]$ ", Some("rhel9"), Some("user")),
            (
                "[root@rhel9 network-scripts]# ",
                Some("rhel9"),
                Some("root"),
            ),
            ("sles15:~ # ", Some("sles15"), Some("root")),
            ("alpine:~# ", Some("alpine"), Some("root")),
            ("bash-5.1$ ", Some("bash-5.1"), Some("user")),
            (
                "[root@bigip1:Active:Standalone] config # ",
                Some("bigip1"),
                Some("root"),
            ),
            (
                "Welcome to Ubuntu 22.04.3 LTS (GNU/Linux 5.15.0-86-generic x86_64)",
                None,
                None,
            ),
            (
                "Last login: Tue Jan  2 10:00:00 2024 from 10.0.0.1",
                None,
                None,
            ),
            ("Welcome to web01$", None, None),
            ("$ ", None, None),
            ("####", None, None),
        ],
    );
    let p = platform("linux");
    // `sudo -s` and `cd` change the user and the directory, not the host.
    let learned = p.learned_prompt("web01").unwrap();
    assert!(learned.is_match("root@web01:/home/admin# "));
    assert!(learned.is_match("admin@web01:/var/log$ "));
    assert!(!learned.is_match("admin@web02:~$ "));
    let en = p.enable.as_ref().unwrap();
    assert_eq!(
        (en.command.as_str(), en.from_mode.as_str(), en.mode.as_str()),
        ("sudo -s", "user", "root")
    );
    assert!(en.password_prompt.is_match("[sudo] password for admin: "));
    assert!(en.password_prompt.is_match("Password:"));
    assert!(p.config.is_none());
    assert!(p.on_open.is_empty());
    check_failures(
        "linux",
        &[
            (
                "-bash: foo: command not found",
                Some("-bash: foo: command not found"),
            ),
            (
                "bash: line 1: foo: command not found",
                Some("bash: line 1: foo: command not found"),
            ),
            (
                "zsh: command not found: foo",
                Some("zsh: command not found: foo"),
            ),
            ("sh: 1: foo: not found", Some("sh: 1: foo: not found")),
            (
                "ls: cannot access '/nope': No such file or directory",
                Some("ls: cannot access '/nope': No such file or directory"),
            ),
            (
                "cat: /etc/nope: No such file or directory",
                Some("cat: /etc/nope: No such file or directory"),
            ),
            (
                "total 8\n-rw-r--r-- 1 root root 220 Jan  1 00:00 .bashrc",
                None,
            ),
            (
                "Linux web01 5.15.0-86-generic #96-Ubuntu SMP x86_64 GNU/Linux",
                None,
            ),
        ],
    );
    check_aliases(
        "linux",
        &[
            "linux_ssh",
            "ovs_linux",
            "f5_linux_ssh",
            "opengear_linux",
            "corelight_linux_ssh",
        ],
    );
    // Cumulus has its own Netmiko class (nv config apply): not claimed.
    assert_ne!(lookup("cumulus_linux").unwrap().name, "linux");
}

// ---- FakeNOS -----------------------------------------------------------------------------

/// The prompts FakeNOS 1.2.1 prints for these platforms (`{base_prompt}>` initially,
/// `{base_prompt}#` after `enable`; `$`/`#` for linux), accepted as widenings of the real
/// patterns above.
#[test]
fn fakenos_prompts_are_accepted() {
    for (name, user, enabled) in [
        ("cisco_nxos", Some("user"), Some("enable")),
        ("cisco_asa", Some("user"), Some("enable")),
        ("cisco_xr", Some("user"), Some("enable")),
        ("juniper_junos", Some("operational"), Some("config")),
        ("arista_eos", Some("user"), Some("enable")),
        ("nokia_sros", Some("operational"), Some("operational")),
        ("hp_procurve", Some("user"), Some("enable")),
        ("hp_comware", Some("user"), None),
        ("huawei_vrp", Some("user"), None),
    ] {
        check_prompts(name, &[("R1>", Some("R1"), user)]);
        if enabled.is_some() {
            check_prompts(name, &[("R1#", Some("R1"), enabled)]);
        }
    }
    check_prompts(
        "linux",
        &[
            ("R1$", Some("R1"), Some("user")),
            ("R1#", Some("R1"), Some("root")),
        ],
    );
}

/// No device-type branches outside `platform/`: no code there names a platform (a string literal
/// equal to a profile's name) or compares a `device_type`. Platforms differ by their data only.
#[test]
fn no_code_outside_platform_names_a_platform() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let names: Vec<String> = all().unwrap().iter().map(|p| p.name.clone()).collect();
    assert!(names.len() >= 10, "{names:?}");
    let files = crate::source_scan::rs_files(vec![src.clone()]);
    let mut found = Vec::new();
    for f in files.iter().filter(|f| {
        !f.starts_with(src.join("platform")) && !f.to_string_lossy().ends_with("_tests.rs")
    }) {
        let text = std::fs::read_to_string(f).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        for (n, line) in code.lines().enumerate() {
            // Comments, and attributes (`target_os = "linux"` is no device type).
            if line.trim_start().starts_with("//") || line.trim_start().starts_with("#[") {
                continue;
            }
            let squeezed: String = line.chars().filter(|c| !c.is_whitespace()).collect();
            let named = names.iter().find(|p| line.contains(&format!("\"{p}\"")));
            if named.is_some()
                || squeezed.contains("device_type==")
                || squeezed.contains("device_type.as_str()")
            {
                found.push(format!("{}:{}: {line}", f.display(), n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "device-type branches outside platform/:\n{}",
        found.join("\n")
    );
}

/// Each platform's read-only list (a reader token's commands) lets the showing commands through
/// and nothing that writes, redirects or chains: checked as the command policy checks them
/// (`allows` on the blank-folded line).
#[test]
fn read_only_lists_show_and_never_change() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "cisco_ios",
            &[
                "show version",
                "sh ip int br | i up",
                "show run | section bgp",
                "ping 10.0.0.1",
                "traceroute 10.0.0.1",
            ],
            &[
                "configure terminal",
                "reload",
                "show run | redirect flash:x",
                "show run | tee flash:x",
                "show run | append flash:x",
                "show run > flash:x",
                "copy run start",
                "write memory",
                "debug all",
            ],
        ),
        (
            "cisco_nxos",
            &["show version", "show int | json", "show run | i hostname"],
            &[
                "show run > bootflash:x",
                "show clock ; conf t",
                "show run | vsh",
                "show run | python x",
            ],
        ),
        (
            "juniper_junos",
            &[
                "show version",
                "show configuration | display set",
                "show route | match 10.0 | count",
            ],
            &[
                "show configuration | save /var/tmp/x",
                "show log | tee x",
                "show log | append x",
                "request system reboot",
                "configure",
            ],
        ),
        (
            "huawei_vrp",
            &[
                "display version",
                "dis cur | i sysname",
                "ping 10.0.0.1",
                "tracert 10.0.0.1",
            ],
            &["system-view", "save", "reboot"],
        ),
        (
            "linux",
            &[
                "uname -a",
                "uptime",
                "hostname",
                "date",
                "ip addr",
                "ip -br link show",
                "ip route show table main",
                "ping -c 3 10.0.0.1",
            ],
            &[
                "ip link set eth0 down",
                "ip route add 10.0.0.0/8 via 1.1.1.1",
                "ip addr flush dev eth0",
                "ip neigh flush all",
                "date -s 2020-01-01",
                "hostname evil",
                "ip -batch /tmp/x",
                "uname; reboot",
                "cat /etc/shadow",
                "ping 1.1.1.1 && reboot",
            ],
        ),
        (
            "generic",
            &["show version", "ping 10.0.0.1"],
            &["show run | redirect x", "configure terminal"],
        ),
    ];
    for (name, ok, refused) in cases {
        let p = platform(name);
        for c in *ok {
            assert!(
                p.read_only.allows(c).is_ok(),
                "{name}: {c:?} should be allowed"
            );
        }
        for c in *refused {
            assert!(
                p.read_only.allows(c).is_err(),
                "{name}: {c:?} should be refused"
            );
        }
    }
}
