//! The command policy holds against what the device executes: every way a client can make the
//! broker type text (commands, config lines, interaction answers split or hidden, control
//! characters a line editor acts on, login fields, the platform's own steps) is tried against
//! fake IOS devices that apply IOS line editing and journal every line they executed, over SSH
//! and Telnet, under a deny-list and under an allow-list. The journal must never hold a line
//! the rules refuse.

use crate::support::*;
use fake_device::{DeviceConfig, FakeDevice};
use fake_device::{DeviceOptions, TelnetDevice};
use regex::Regex;
use serde_json::{json, Value};
use std::time::Duration;

const DENIED: &[&str] = &["^reload", "^conf", "^write", "^hostname"];
const ALLOWED: &[&str] = &["^show ", "^ping "];

/// A device that journals what it executed.
trait Device {
    fn journal(&self) -> Vec<String>;
    fn open(&self, b: &TestBroker, extra: Value) -> Resp;
    fn prefix(&self) -> &'static str;
}

struct Ssh(FakeDevice);
struct Telnet(TelnetDevice);

fn merged(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

impl Device for Ssh {
    fn journal(&self) -> Vec<String> {
        self.0.journal()
    }
    fn open(&self, b: &TestBroker, extra: Value) -> Resp {
        let body = json!({"host": "127.0.0.1", "port": self.0.port(), "username": "admin",
            "password": PASSWORD, "timeout": 10});
        b.post("/session", &merged(body, extra))
    }
    fn prefix(&self) -> &'static str {
        "/session"
    }
}

impl Device for Telnet {
    fn journal(&self) -> Vec<String> {
        self.0.journal()
    }
    fn open(&self, b: &TestBroker, extra: Value) -> Resp {
        let body = json!({"host": "127.0.0.1", "port": self.0.port(), "username": "admin",
            "password": PASSWORD, "enable_password": ENABLE, "timeout": 10});
        b.post("/telnet-session", &merged(body, extra))
    }
    fn prefix(&self) -> &'static str {
        "/telnet-session"
    }
}

fn devices() -> Vec<Box<dyn Device>> {
    vec![
        Box::new(Ssh(FakeDevice::start(DeviceConfig {
            password: PASSWORD.into(),
            ..Default::default()
        }))),
        Box::new(Telnet(
            TelnetDevice::start(DeviceOptions {
                password: PASSWORD.into(),
                enable_secret: Some(ENABLE.into()),
                ..Default::default()
            })
            .unwrap(),
        )),
    ]
}

/// The command a journaled line runs (blanks folded, `do` taken off), as the rules read it.
fn runs(line: &str) -> String {
    let mut s = line.split_whitespace().collect::<Vec<_>>().join(" ");
    while s.len() > 3 && s[..3].eq_ignore_ascii_case("do ") {
        s = s[3..].to_string();
    }
    s
}

fn rules(list: &[&str]) -> Vec<Regex> {
    list.iter()
        .map(|p| Regex::new(&format!("(?i){p}")).unwrap())
        .collect()
}

/// Every way of typing text the tests try: (name, exec body). Each is sent on a fresh session.
fn attacks() -> Vec<(&'static str, Value)> {
    // An empty `expect` matches at once: the answer is typed right behind the command, so the
    // device reads it at its next prompt (type-ahead), as a command.
    let ia = |send: &str, extra: Value| {
        json!({"commands": [{"cmd": "show clock",
            "interactions": [merged(json!({"expect": "", "send": send}), extra)]}]})
    };
    vec![
        // 1. interaction answers
        ("answer typed as a command", ia("reload", json!({}))),
        (
            "hidden answer",
            ia("configure terminal", json!({"hidden": true})),
        ),
        (
            "answer without newline",
            ia("write memory", json!({"newline": false})),
        ),
        (
            "answer with a line feed inside",
            ia("show clock\nreload", json!({})),
        ),
        (
            "answer with a CR inside",
            ia("x\rreload", json!({"newline": false})),
        ),
        (
            "command split over an answer and the next command",
            json!({"commands": [{"cmd": "show clock", "interactions": [
                {"expect": "", "send": "rel", "newline": false}]}, "oad"]}),
        ),
        (
            "command split over two answers",
            json!({"commands": [{"cmd": "show clock", "interactions": [
                {"expect": "", "send": "con", "newline": false},
                {"expect": "", "send": "f t"}]}]}),
        ),
        ("leading key taken by a question", ia("yreload", json!({}))),
        (
            "answer ending at the prompt",
            json!({"commands": [{"cmd": "show clock",
            "interactions": [{"expect": "#", "send": "hostname PWNED"}]}]}),
        ),
        // 2. control characters
        ("backspace", json!({"commands": ["x\u{8}reload"]})),
        ("delete", json!({"commands": ["relx\u{7f}oad"]})),
        ("Ctrl-U", json!({"commands": ["hostn\u{15}reload"]})),
        ("Ctrl-W", json!({"commands": ["show xyz\u{17}reload"]})),
        ("cursor key", json!({"commands": ["\u{1b}[Creload"]})),
        (
            "cursor left then insert",
            json!({"commands": ["eload\u{1b}[D\u{1b}[D\u{1b}[D\u{1b}[D\u{1b}[Dr"]}),
        ),
        ("Ctrl-A then insert", json!({"commands": ["eload\u{1}r"]})),
        (
            "Ctrl-Z ends the line",
            json!({"commands": ["show clock\u{1a}reload"]}),
        ),
        (
            "Ctrl-C aborts the line",
            json!({"commands": ["show\u{3}reload"]}),
        ),
        (
            "backspaces over an allowed prefix",
            json!({"commands": ["show \u{8}\u{8}\u{8}\u{8}\u{8}configure terminal"]}),
        ),
        ("tab completion", json!({"commands": ["conf\tt"]})),
        ("history recall", json!({"commands": ["\u{10}"]})),
        ("C1 control (CSI)", json!({"commands": ["\u{9b}Creload"]})),
        (
            "control character in a config line",
            json!({"config": ["interface Loopback0\u{1a}reload"]}),
        ),
        (
            "control character in an answer",
            ia("x\u{8}reload", json!({})),
        ),
        // 4. steps the broker adds itself, and config-mode escapes
        (
            "config block enters config mode",
            json!({"config": ["interface Loopback0"]}),
        ),
        (
            "save writes memory",
            json!({"commands": ["show clock"], "save": true}),
        ),
        ("do inside a config block", json!({"config": ["do reload"]})),
        (
            "do do, odd case and blanks",
            json!({"config": ["  DO   do  Write   memory"]}),
        ),
        (
            "help key inside a command",
            json!({"commands": ["rel?oad"]}),
        ),
        (
            "help key before a command",
            json!({"commands": ["?reload"]}),
        ),
        ("case and blanks", json!({"commands": ["   ReLoAd   "]})),
        (
            "config line hostname",
            json!({"config": ["hostname PWNED"]}),
        ),
    ]
}

/// 3. login fields that would type commands at open.
fn login_attacks() -> Vec<(&'static str, Value)> {
    vec![
        (
            "enable password with line ends",
            json!({"enable_password": format!("{ENABLE}\nconfigure terminal\nhostname PWNED")}),
        ),
        ("secret with a line end", json!({"secret": "x\nreload"})),
        (
            "password with a line end",
            json!({"password": format!("{PASSWORD}\nreload")}),
        ),
        (
            "username with a line end",
            json!({"username": "admin\nreload"}),
        ),
        (
            "username with a backspace",
            json!({"username": "admin\u{8}"}),
        ),
        (
            "passphrase with a line end",
            json!({"passphrase": "x\nreload", "key_file": "k"}),
        ),
        ("key_file with a line end", json!({"key_file": "k\nreload"})),
        ("host with a line end", json!({"host": "127.0.0.1\nreload"})),
    ]
}

/// Lines of `journal` from `from` on that the rules refuse (exempt platform steps left out).
fn refused_lines(journal: &[String], from: usize, deny: &[Regex], allow: &[Regex]) -> Vec<String> {
    // The platform's own exempt steps: paging off, enable, leaving config mode, logout.
    let exempt = Regex::new(r"(?i)^(terminal (length|width) [0-9]+|enable|end|exit|)$").unwrap();
    journal[from.min(journal.len())..]
        .iter()
        .filter(|l| {
            let c = runs(l);
            if exempt.is_match(&c) {
                return false;
            }
            deny.iter().any(|r| r.is_match(&c))
                || (!allow.is_empty() && !allow.iter().any(|r| r.is_match(&c)))
        })
        .cloned()
        .collect()
}

fn run_table(denied: &[&str], allowed: &[&str]) {
    let yaml = format!(
        "denied_commands: {}\nallowed_commands: {}\n",
        serde_json::to_string(denied).unwrap(),
        serde_json::to_string(allowed).unwrap()
    );
    let b = broker(&yaml);
    let (deny, allow) = (rules(denied), rules(allowed));
    let mut executed = Vec::new();
    let mut not_refused = Vec::new();
    for dev in devices() {
        let p = dev.prefix();
        let mut statuses = Vec::new();
        for (name, body) in attacks() {
            let r = dev.open(&b, json!({}));
            assert_eq!(r.status, 201, "{p} {name}: open {:?}", r.json());
            let id = r.json()["session_id"].as_str().unwrap().to_string();
            let before = dev.journal().len();
            let mut body = body;
            body["timeout"] = json!(3);
            let r = b.post(&format!("{p}/{id}/exec"), &body);
            // Anything typed ahead has had its chance to run once the session is closed.
            assert_eq!(b.delete(&format!("{p}/{id}")).status, 204);
            std::thread::sleep(Duration::from_millis(50));
            let journal = dev.journal();
            let bad = refused_lines(&journal, before, &deny, &allow);
            if !bad.is_empty() {
                executed.push(format!(
                    "{p} {name}: the device executed {bad:?} (answer {} {})",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ));
            }
            // Text typed without a line end runs nothing by itself: it may be typed when what
            // would finish it is checked joined to it, or the line-kill key empties the buffer
            // first (then the journal above is what counts).
            let partial = [
                "answer without newline",
                "command split over an answer and the next command",
            ]
            .contains(&name);
            if !([403, 422].contains(&r.status) || (partial && [200, 500].contains(&r.status))) {
                not_refused.push(format!(
                    "{p} {name}: {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ));
            }
            statuses.push((name, r.status));
        }
        for (name, extra) in login_attacks() {
            let before = dev.journal().len();
            let r = dev.open(&b, extra);
            if let Some(id) = r.json()["session_id"].as_str() {
                b.delete(&format!("{p}/{id}"));
            }
            std::thread::sleep(Duration::from_millis(50));
            let journal = dev.journal();
            let bad = refused_lines(&journal, before, &deny, &allow);
            if !bad.is_empty() {
                executed.push(format!("{p} {name}: the device executed {bad:?} at open"));
            }
            let d = r.json()["detail"].to_string();
            if r.status != 422 || !d.contains("control characters") {
                not_refused.push(format!("{p} {name}: {} {d}", r.status));
            }
        }
        eprintln!("{p} denied={denied:?} allowed={allowed:?}: {statuses:?}");
    }
    assert!(
        executed.is_empty(),
        "{} attack(s) got a refused line executed:\n{}",
        executed.len(),
        executed.join("\n")
    );
    assert!(not_refused.is_empty(), "{}", not_refused.join("\n"));
}

#[test]
fn a_deny_list_holds_against_every_way_of_typing() {
    run_table(DENIED, &[]);
}

#[test]
fn an_allow_list_holds_against_every_way_of_typing() {
    run_table(&[], ALLOWED);
}

#[test]
fn refusals_name_the_step_and_the_rule_and_send_nothing() {
    let b = broker("denied_commands: ['^write', '^conf']\n");
    for dev in devices() {
        let p = dev.prefix();
        let r = dev.open(&b, json!({}));
        let id = r.json()["session_id"].as_str().unwrap().to_string();
        let before = dev.journal().len();
        let exec = |v: Value| b.post(&format!("{p}/{id}/exec"), &v);
        let r = exec(json!({"commands": ["show clock"], "save": true}));
        assert_eq!(r.status, 403);
        let d = r.json()["detail"].as_str().unwrap().to_string();
        assert!(
            d.contains("save step") && d.contains("\"write memory\"") && d.contains("^write"),
            "{d}"
        );
        let r = exec(json!({"config": ["interface Loopback0", "description x"]}));
        let d = r.json()["detail"].as_str().unwrap().to_string();
        assert!(d.contains("config-mode step") && d.contains("^conf"), "{d}");
        let r = exec(
            json!({"commands": ["show clock", {"cmd": "show clock", "interactions": [
            {"expect": "[0-9]", "send": "wr", "newline": false}, {"expect": "[0-9]", "send": "ite mem"}]}]}),
        );
        let d = r.json()["detail"].as_str().unwrap().to_string();
        assert_eq!(r.status, 403, "{d}");
        assert!(d.contains("\"write mem\""), "{d}");
        // Nothing of a refused exec reached the device.
        assert_eq!(dev.journal().len(), before, "{:?}", dev.journal());
        // A hidden answer is refused without being shown.
        let r = exec(json!({"commands": [{"cmd": "show clock", "interactions": [
            {"expect": "[0-9]", "send": "configure terminal", "hidden": true}]}]}));
        let d = r.json()["detail"].as_str().unwrap().to_string();
        assert_eq!(r.status, 403, "{d}");
        assert!(
            d.contains("hidden") && !d.contains("configure terminal"),
            "{d}"
        );
        // What is allowed still runs, interactions included.
        let r = exec(json!({"commands": ["show clock",
            {"cmd": "copy running-config startup-config", "answer": "\\[confirm\\]|Destination", "send_newlines": 1}]}));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        // A control character names the field and the character.
        let r = exec(json!({"commands": ["show clock", "x\u{8}reload"]}));
        assert_eq!(r.status, 422);
        let e = &r.json()["detail"][0];
        assert_eq!(e["loc"], json!(["body", "commands", 1]), "{e}");
        assert!(
            e["msg"].as_str().unwrap().contains("U+0008 (backspace)"),
            "{e}"
        );
    }
}

/// The two requests that once cost hundreds of MiB stay small on the real binary: 400 regexes
/// in a 14 KB body (now refused before any is compiled) and 40 long outputs in an 814-byte body
/// (now capped for the whole exec by `max_exec_output_bytes`).
#[test]
fn one_small_request_cannot_make_the_broker_hold_much_memory() {
    use crate::child::{mib, Broker};
    let dev = TelnetDevice::start(DeviceOptions {
        password: PASSWORD.into(),
        ..Default::default()
    })
    .unwrap();
    let b = Broker::spawn("policy-mem", "max_exec_output_bytes: 4194304\n", 1024);
    let post =
        |path: &str, v: &Value| call(b.addr, "POST", path, Some(TOKEN), Some(&v.to_string()));
    let r = post(
        "/telnet-session",
        &json!({"host": "127.0.0.1", "port": dev.port(), "username": "admin", "password": PASSWORD}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["session_id"].as_str().unwrap().to_string();
    let exec = |v: &Value| post(&format!("/telnet-session/{id}/exec"), v);
    assert_eq!(exec(&json!({"commands": ["show long 10"]})).status, 200);
    let base = b.rss_kb();

    // 400 heavy patterns, for a session that does not exist: 422 before the lookup.
    let items: Vec<Value> = (0..400)
        .map(|i| json!({"cmd": "x", "expect": format!("\\w{{99}}\\s{i}")}))
        .collect();
    let body = json!({"commands": items});
    assert!(
        body.to_string().len() < 16_000,
        "{}",
        body.to_string().len()
    );
    b.reset_hwm();
    let r = post("/session/0123456789abcdef0123456789abcdef/exec", &body);
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["detail"][0]["msg"]
        .as_str()
        .unwrap()
        .contains("At most 64 patterns"));
    let patterns_peak = b.hwm_kb().saturating_sub(base);
    // At the cap: 64 of them compile within their size limits (or are refused as too big).
    b.reset_hwm();
    let body = json!({"commands": (0..64)
        .map(|i| json!({"cmd": "x", "expect": format!("\\w{{99}}\\s{i}")}))
        .collect::<Vec<_>>()});
    let r = post("/session/0123456789abcdef0123456789abcdef/exec", &body);
    assert!([404, 422].contains(&r.status), "{}", r.status);
    let at_cap_peak = b.hwm_kb().saturating_sub(base);

    // 40 long outputs (40,000 numbered lines: about 2.2 MB each, 90 MB in all) from a short body.
    let body = json!({"commands": vec!["show long 40000"; 40], "timeout": 120});
    assert!(body.to_string().len() < 1000);
    b.reset_hwm();
    let r = exec(&body);
    let output_peak = b.hwm_kb().saturating_sub(base);
    assert_eq!(r.status, 200, "{}", r.status);
    let j = r.json();
    let results = j["results"].as_array().unwrap();
    let kept: usize = results
        .iter()
        .map(|x| x["output"].as_str().unwrap().len())
        .sum();
    assert!(kept <= 4 << 20, "{kept}");
    assert!(kept > 3 << 20, "{kept}");
    assert_eq!(results[0]["truncated"], false);
    assert_eq!(results[39]["truncated"], true);
    eprintln!(
        "memory: base {:.1} MiB; 400 patterns +{:.1} MiB; 64 patterns +{:.1} MiB; 40 x 2.2 MB \
         output (kept {kept} bytes) +{:.1} MiB",
        mib(base),
        mib(patterns_peak),
        mib(at_cap_peak),
        mib(output_peak)
    );
    assert!(patterns_peak < 20 * 1024, "{patterns_peak} kB");
    assert!(at_cap_peak < 20 * 1024, "{at_cap_peak} kB");
    assert!(output_peak < 20 * 1024, "{output_peak} kB");
    // The session goes on.
    assert_eq!(exec(&json!({"commands": ["show clock"]})).status, 200);
}
