//! Every platform profile against the fake device's persona for that platform (a transcript
//! fixture written independently of the profile, from vendor documentation and real
//! transcripts): open, mode, a show command's exact output, failure flags, a config block with
//! save, stop_on_error, interactive dialogues, pagers when paging cannot be turned off, and a
//! hostile login (MOTD full of prompt-like lines, ANSI-coloured prompt split across packets).

use crate::support::*;
use fake_device::{persona_test, DeviceConfig, FakeDevice, PersonaTest};
use serde_json::{json, Value};

fn ok(r: &Resp) -> Value {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

fn output(v: &Value, cmd: &str) -> String {
    v["outputs"][cmd]
        .as_str()
        .unwrap_or_else(|| panic!("no output for {cmd:?}: {v}"))
        .to_string()
}

/// The mode name the broker's profile gives the persona's privileged prompt.
fn privileged_mode(t: &PersonaTest) -> String {
    let p = netdev_broker::platform::lookup(&t.device_type).unwrap();
    p.mode_of(t.privileged_prompt.trim_end())
        .or_else(|| p.mode_of(&t.privileged_prompt))
        .unwrap_or_else(|| panic!("{}: no mode for {:?}", t.persona, t.privileged_prompt))
        .to_string()
}

fn check_persona(name: &str) {
    let t = persona_test(name);
    let dev = FakeDevice::start(DeviceConfig {
        password: PASSWORD.into(),
        ..DeviceConfig::persona(name)
    });
    let b = broker("");
    let p = netdev_broker::platform::lookup(&t.device_type).unwrap();
    assert_eq!(
        p.name, name,
        "device_type {} runs on its own profile",
        t.device_type
    );
    // Linux enters root (sudo -s) only with a secret; everything else reaches privileged mode.
    let id = b.open(dev.port(), json!({"device_type": t.device_type}));
    let s = b.status(&id);
    assert_eq!(s["platform"], name);
    let want_mode = if p.enable.as_ref().is_some_and(|e| e.requires_secret) {
        p.mode_of(t.prompt.trim_end()).unwrap().to_string()
    } else {
        privileged_mode(&t)
    };
    assert_eq!(s["mode"], want_mode.as_str(), "{name}: {s}");

    // A show command: exactly the device's output; an invalid one: flagged, with its line.
    let v = ok(&b.exec(&id, json!([t.show_command, t.invalid_command])));
    // Netmiko parity allows trailing whitespace to differ (Junos prints a blank line before
    // its prompt, which Netmiko keeps as a trailing newline).
    assert_eq!(
        output(&v, &t.show_command).trim_end(),
        t.show_output.trim_end(),
        "{name}"
    );
    assert_eq!(v["results"][0]["failed"], false, "{name}: {v}");
    assert_eq!(v["results"][1]["failed"], true, "{name}: {v}");
    let err = v["results"][1]["error"].as_str().unwrap_or_default();
    assert!(
        err.contains(t.error_line.trim()) || t.error_line.trim().contains(err),
        "{name}: error {err:?} vs {:?}",
        t.error_line
    );
    let long = output(&ok(&b.exec(&id, json!([t.long_command]))), &t.long_command);
    assert!(long.lines().count() > 24, "{name}: {long}");

    // Config block with save, then the running config shows the lines.
    if t.config_enter.is_some() {
        let body = json!({"config": t.config_lines, "save": t.save_command.is_some()});
        let v = ok(&b.post(&format!("/session/{id}/exec"), &body));
        let cmds: Vec<&str> = v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["command"].as_str().unwrap())
            .collect();
        for l in &t.config_lines {
            assert!(cmds.contains(&l.as_str()), "{name}: {l:?} not sent: {v}");
        }
        assert!(
            v["results"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["failed"] == false),
            "{name}: {v}"
        );
        // The profile's save command may differ from the persona's (both valid on the
        // platform); what it prints when done is the same.
        if let Some(done) = &t.save_done {
            let saved = v["results"].as_array().unwrap().iter().any(|r| {
                r["output"]
                    .as_str()
                    .is_some_and(|o| o.contains(done.as_str()))
            });
            assert!(saved, "{name}: no {done:?} in {v}");
        }
        assert_eq!(b.status(&id)["mode"], want_mode.as_str(), "{name}");
        if let Some(show_run) = &t.running_config_command {
            let run = output(&ok(&b.exec(&id, json!([show_run]))), show_run);
            for l in &t.running_config_contains {
                assert!(run.contains(l.as_str()), "{name}: {l:?} not in\n{run}");
            }
        }
        // A rejected line with stop_on_error: 500, and the session is out of config mode.
        if let Some(bad) = &t.config_rejected {
            let body = json!({"config": [bad, "never sent"], "stop_on_error": true});
            let r = b.post(&format!("/session/{id}/exec"), &body);
            assert_eq!(r.status, 500, "{name}: {:?}", r.json());
            assert!(
                !dev.lines_received().iter().any(|l| l == "never sent"),
                "{name}"
            );
            assert_eq!(b.status(&id)["mode"], want_mode.as_str(), "{name}");
        }
    }

    // Interactive dialogues, answered with `interactions` (hidden ones stay hidden).
    for d in &t.interactive {
        let interactions: Vec<Value> = d
            .dialogue
            .iter()
            .map(|x| {
                // The question's last line, as the broker sees it (line endings cleaned).
                let q = x.question.trim().lines().last().unwrap_or_default().trim();
                json!({"expect": regex::escape(q), "send": x.answer, "hidden": x.hidden})
            })
            .collect();
        let v = ok(&b.exec(
            &id,
            json!([{"cmd": d.command, "interactions": interactions}]),
        ));
        assert_eq!(
            v["results"][0]["answered"],
            d.dialogue.len(),
            "{name}: {}: {v}",
            d.command
        );
        if let Some(done) = &d.done {
            assert!(
                output(&v, &d.command).contains(done.as_str()),
                "{name}: {v}"
            );
        }
        for x in d
            .dialogue
            .iter()
            .filter(|x| x.hidden && !x.answer.is_empty())
        {
            assert!(
                !output(&v, &d.command).contains(x.answer.as_str()),
                "{name}"
            );
        }
    }
    assert_eq!(b.status(&id)["alive"], true);
    assert_eq!(b.delete(&format!("/session/{id}")).status, 204);
    assert!(
        wait_until(std::time::Duration::from_secs(5), || dev
            .lines_received()
            .iter()
            .any(|l| l == &t.logout_command)),
        "{name}: no {:?} on close: {:?}",
        t.logout_command,
        dev.lines_received()
    );

    // A hostile device: paging cannot be turned off, a MOTD full of prompt-like lines, the prompt
    // coloured and split across packets. The output is the same.
    let hostile = FakeDevice::start(DeviceConfig {
        password: PASSWORD.into(),
        paging_locked: true,
        motd: Some(format!(
            "#####################\nR1#\nrouter>\n\x1b[1;31m{}\x1b[0m\n<HUAWEI>\nadmin@box:~$\n####",
            t.privileged_prompt.trim_end()
        )),
        prompt_split: true,
        ansi_prompt: true,
        ..DeviceConfig::persona(name)
    });
    let id = b.open(hostile.port(), json!({"device_type": t.device_type}));
    assert_eq!(
        b.status(&id)["mode"],
        want_mode.as_str(),
        "{name} (hostile)"
    );
    let v = ok(&b.exec(&id, json!([t.show_command, t.long_command])));
    assert_eq!(
        output(&v, &t.show_command).trim_end(),
        t.show_output.trim_end(),
        "{name} (hostile)"
    );
    let paged = output(&v, &t.long_command);
    if let Some(pager) = &t.pager_prompt {
        assert!(
            !paged.contains(pager.trim()),
            "{name}: pager left in\n{paged}"
        );
    }
    assert_eq!(paged, long, "{name}: paged output differs from unpaged");
}

macro_rules! personas {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { check_persona(stringify!($name)); })*

        #[test]
        fn every_persona_has_a_test() {
            let mut covered = vec![$(stringify!($name)),*];
            covered.sort();
            let mut all = FakeDevice::persona_names();
            all.sort();
            assert_eq!(covered, all);
        }
    };
}

personas!(
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
