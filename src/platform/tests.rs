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
