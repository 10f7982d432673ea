//! The real binary as a process: CLI, config errors, SIGTERM, and secrets never logged.

use crate::child::{free_port, run as run_to_end, Broker, Output};
use crate::support::*;
use fake_device::{DeviceConfig, FakeDevice};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn cli_help_version_and_config_errors() {
    let (code, out, _) = run_to_end(&["--version"], None);
    assert_eq!(code, 0);
    assert!(out.starts_with("netdev-broker "));
    // The native libraries inside, as they report themselves.
    assert!(
        out.contains("\nlibssh2 1.11.") && out.contains("(crypto: OpenSSL)"),
        "{out}"
    );
    assert!(out.contains("\nOpenSSL 3."), "{out}");
    let (code, out, _) = run_to_end(&["--help"], None);
    assert_eq!(code, 0);
    assert!(out.contains("--api-token") && out.contains("ps"));
    let dir = tmpdir("cli");
    let cfg = dir.join("c.yml");
    std::fs::write(&cfg, "port: 1\n").unwrap();
    let (code, _, err) = run_to_end(&["--config", cfg.to_str().unwrap()], None);
    assert_eq!(code, 2);
    assert!(err.contains("api_token"), "{err}");
    std::fs::write(&cfg, "api_token: x\nsession_timeout: soon\n").unwrap();
    let (code, _, err) = run_to_end(&["--config", cfg.to_str().unwrap()], None);
    assert_eq!(code, 2);
    assert!(err.contains("'session_timeout'"), "{err}");
    let (code, _, err) = run_to_end(&["--config", "/nonexistent/c.yml"], None);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/c.yml"), "{err}");
    let (code, _, err) = run_to_end(&["--bogus"], None);
    assert_eq!(code, 2);
    assert!(err.contains("--bogus"), "{err}");
    // An argument that is not UTF-8: a usage error (exit 2) naming the option, not a panic.
    {
        use std::os::unix::ffi::OsStrExt;
        let (code, _, err) = run_to_end(
            &[
                std::ffi::OsStr::new("--api-token"),
                std::ffi::OsStr::from_bytes(b"CANARY\xffSECRET"),
            ],
            None,
        );
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("--api-token is not valid UTF-8"), "{err}");
        assert!(
            !err.contains("panicked") && !err.contains("SECRET"),
            "{err}"
        );
    }
    // `--flag=value` everywhere: demo took only `--port 0`.
    let (code, out, err) = run_to_end(&["demo", "--port=x"], None);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("--port needs a port number"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn sigterm_closes_sessions_and_no_secret_is_ever_logged() {
    let dev = FakeDevice::start(DeviceConfig {
        password: PASSWORD.into(),
        enable_password: Some(ENABLE.into()),
        ..Default::default()
    });
    let dir = tmpdir("proc");
    let log = dir.join("broker.log");
    let cmdlog = dir.join("cmds");
    let cfg = dir.join("config.yml");
    std::fs::write(
        &cfg,
        format!("log_level: DEBUG\nlog_mode: both\nlog_file: {}\ncmd_log_dir: {}\nstate_dir: {}\nfavourite_colour: blue\n", log.display(), cmdlog.display(), dir.display()),
    )
    .unwrap();
    let mut p = Broker::serve("proc")
        .config(&cfg)
        .output(Output::Piped)
        .start();
    let body = json!({"host": "127.0.0.1", "port": dev.port(), "username": "admin", "password": PASSWORD, "enable_password": ENABLE});
    let r = call(
        p.addr,
        "POST",
        "/session",
        Some(TOKEN),
        Some(&body.to_string()),
    );
    assert_eq!(r.status, 201, "{:?}", r.json());
    let id = r.json()["session_id"].as_str().unwrap().to_string();
    let cmds = json!({"commands": ["show version", "configure terminal", format!("username ops secret 0 {PASSWORD}"), "end"]});
    let r = call(
        p.addr,
        "POST",
        &format!("/session/{id}/exec"),
        Some(TOKEN),
        Some(&cmds.to_string()),
    );
    assert_eq!(r.status, 200);
    // A hidden interactive answer (the enable secret typed at a password question) is not
    // logged either, at DEBUG.
    let user =
        json!({"host": "127.0.0.1", "port": dev.port(), "username": "admin", "password": PASSWORD});
    let r = call(
        p.addr,
        "POST",
        "/session",
        Some(TOKEN),
        Some(&user.to_string()),
    );
    assert_eq!(r.status, 201);
    let id2 = r.json()["session_id"].as_str().unwrap().to_string();
    let cmds = json!({"commands": [{"cmd": "enable", "interactions": [
        {"expect": "[Pp]assword:", "send": ENABLE, "hidden": true}]}, "show privilege"]});
    let r = call(
        p.addr,
        "POST",
        &format!("/session/{id2}/exec"),
        Some(TOKEN),
        Some(&cmds.to_string()),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["results"][0]["answered"], 1, "{:?}", r.json());
    assert!(r.json()["outputs"]["show privilege"]
        .as_str()
        .unwrap()
        .contains("15"));
    // A failed open with the canary password must not log it either.
    let bad = json!({"host": "127.0.0.1", "port": dev.port(), "username": "admin", "password": format!("{PASSWORD}-wrong")});
    assert_eq!(
        call(
            p.addr,
            "POST",
            "/session",
            Some(TOKEN),
            Some(&bad.to_string())
        )
        .status,
        401
    );
    assert_eq!(
        call(p.addr, "GET", "/health", Some("wrong-token"), None).status,
        200
    );
    // A change guard holding reopen and probe logins with the canary secrets, tried once (a
    // new login at DEBUG) and kept at exit: guards.json records it without them.
    let login = json!({"host": "127.0.0.1", "port": dev.port(), "username": "admin",
        "password": PASSWORD, "enable_password": ENABLE});
    let mut probe = login.clone();
    probe["command"] = json!("show privilege");
    let guard = json!({"timeout": 600, "rollback": {"config": ["no username ops"]},
        "reopen": login, "probe": probe, "on_broker_exit": "keep"});
    let r = call(
        p.addr,
        "POST",
        &format!("/session/{id}/guard"),
        Some(TOKEN),
        Some(&guard.to_string()),
    );
    assert_eq!(r.status, 201, "{:?}", r.json());
    let r = call(
        p.addr,
        "POST",
        &format!("/session/{id}/guard/probe"),
        Some(TOKEN),
        None,
    );
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()["command_ok"], true, "{:?}", r.json());

    p.term();
    let status = p
        .wait_exit(Duration::from_secs(10))
        .expect("broker did not exit after SIGTERM");
    assert_eq!(status.code(), Some(0), "exit code after SIGTERM");
    assert!(
        wait_until(Duration::from_secs(3), || dev.active_connections() == 0),
        "sessions are closed on SIGTERM"
    );
    assert!(dev.lines_received().iter().any(|l| l == "exit"));

    let (stdout, stderr) = p.read_output();
    let logfile = std::fs::read_to_string(&log).unwrap();
    assert!(logfile.contains("opened"), "log file is written: {logfile}");
    assert!(
        logfile.contains("favourite_colour"),
        "unknown keys are warned about"
    );
    let mut cmdlogs = String::new();
    for e in std::fs::read_dir(&cmdlog).unwrap() {
        cmdlogs.push_str(&std::fs::read_to_string(e.unwrap().path()).unwrap());
    }
    assert!(cmdlogs.contains("show version"));
    let guards = std::fs::read_to_string(dir.join("guards.json")).unwrap();
    assert!(guards.contains(&id), "the kept guard is recorded: {guards}");
    for (name, text) in [
        ("stdout", &stdout),
        ("stderr", &stderr),
        ("log file", &logfile),
        ("command log", &cmdlogs),
        ("guards.json", &guards),
    ] {
        for canary in [TOKEN, PASSWORD, ENABLE, "wrong-token"] {
            assert!(
                !text.contains(canary),
                "{canary} leaked into {name}:\n{text}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The README's quick start: `netdev-broker demo` prints curl commands that work as printed.
#[test]
fn demo_prints_commands_that_work() {
    use std::io::BufRead;
    // Killed on drop if the test fails half-way.
    let mut p = Broker::serve("demo")
        // `--port=0` (refused until lexopt; `--port 0` is in src/cmd/cli.rs's tests).
        .argv(["demo", "--port=0"])
        .token(None)
        .output(Output::StdoutPiped)
        .start();
    let stdout = p.take_stdout();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut printed = Vec::new();
    let end = Instant::now() + Duration::from_secs(20);
    while !printed
        .iter()
        .any(|l: &String| l.contains("Ctrl-C stops both"))
    {
        let left = end.saturating_duration_since(Instant::now());
        printed.push(rx.recv_timeout(left).expect("demo printed its commands"));
    }
    let start = printed
        .iter()
        .position(|l| l.trim_start().starts_with("HOST="))
        .unwrap();
    let stop = printed
        .iter()
        .position(|l| l.contains("http_code"))
        .unwrap();
    let script: String = printed[start..=stop]
        .iter()
        .map(|l| format!("{}\n", l.trim_start()))
        .collect();
    let have = |tool: &str| Command::new(tool).arg("--version").output().is_ok();
    if have("curl") && have("jq") {
        let out = Command::new("bash")
            .args(["-c", &format!("set -e\n{script}")])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("\"mode\": \"enable\""), "{text}");
        assert!(text.contains("Cisco IOS Software"), "{text}");
        assert!(text.contains("[OK]"), "{text}");
        assert!(text.trim_end().ends_with("204"), "{text}");
    } else {
        panic!("curl and jq are needed (.ci/run installs them)");
    }
    p.term();
    let status = p
        .wait_exit(Duration::from_secs(10))
        .expect("demo did not exit");
    assert_eq!(status.code(), Some(0));
}

/// `check-config`: the same loader as `serve`, the file's permissions, secrets never printed.
#[test]
fn check_config_validates_masks_and_checks_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tmpdir("check");
    let cfg = dir.join("config.yml");
    let path = cfg.to_str().unwrap();
    std::fs::write(
        &cfg,
        format!("api_token: {TOKEN}\nport: 9123\nweb_secret_key: {PASSWORD}{PASSWORD}{PASSWORD}\ndenied_commands: ['^reload']\nfavourite_colour: blue\n"),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (code, out, err) = run_to_end(&["check-config", "--config", path], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("port: 9123\n"), "{out}");
    assert!(out.contains("api_token: ********\n"), "{out}");
    assert!(out.contains("web_secret_key: ********\n"), "{out}");
    assert!(out.contains("denied_commands: [\"^reload\"]\n"), "{out}");
    assert!(
        out.contains("favourite_colour"),
        "unknown keys are warned about: {out}"
    );
    for canary in [TOKEN, PASSWORD] {
        assert!(!out.contains(canary) && !err.contains(canary), "{out}{err}");
    }
    // Group-writable: a warning, still fine.
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o660)).unwrap();
    let (code, out, _) = run_to_end(&["check-config", "--config", path], None);
    assert_eq!(code, 0);
    assert!(out.contains("group-writable"), "{out}");
    // Readable by others while it holds the token: refused, naming the mode.
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out, err) = run_to_end(&["check-config", "--config", path], None);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("0644") && err.contains("api_token"), "{err}");
    assert!(!err.contains(TOKEN), "{err}");
    // Without secrets in the file (the token from the environment, as serve takes it) the
    // same mode is fine.
    std::fs::write(&cfg, "port: 9124\n").unwrap();
    let (code, out, _) = run_to_end(&["check-config", "--config", path], None);
    assert_eq!(code, 2, "no token anywhere: {out}");
    let (code, out, err) = run_to_end(&["check-config", "--config", path], Some(TOKEN));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("port: 9124\n") && !out.contains(TOKEN),
        "{out}"
    );
    // A bad value: exit 2 naming the key.
    std::fs::write(&cfg, "api_token: x\nreaper_interval: often\n").unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _, err) = run_to_end(&["check-config", "--config", path], None);
    assert_eq!(code, 2);
    assert!(err.contains("'reaper_interval'"), "{err}");
    // A cookie key shorter than 32 bytes: refused by check-config and by serve, naming the key
    // and never showing it.
    std::fs::write(&cfg, "api_token: x\nweb_secret_key: CANARY-short-key\n").unwrap();
    for args in [
        &["check-config", "--config", path][..],
        &["serve", "--config", path],
    ] {
        let (code, out, err) = run_to_end(args, None);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(
            err.contains("'web_secret_key'") && err.contains("at least 32 bytes"),
            "{err}"
        );
        assert!(!err.contains("CANARY-short-key") && !out.contains("CANARY-short-key"));
    }
    let (code, _, err) = run_to_end(&["check-config", "--config", "/nonexistent/c.yml"], None);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/c.yml"), "{err}");
    let (_, out, _) = run_to_end(&["--help"], None);
    assert!(out.contains("check-config"));
    std::fs::remove_dir_all(&dir).ok();
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(s.as_bytes()))
}

/// The `api_tokens:` entry `token new` prints: (name, token_sha256, role, expires) from its
/// `  - name:` line on, every line of the shape the broker's config expects.
fn token_entry(out: &str) -> (String, String, String, Option<String>) {
    let start = out
        .find("  - name: ")
        .unwrap_or_else(|| panic!("no entry: {out}"));
    let lines: Vec<&str> = out[start..].lines().collect();
    let field = |key: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("    {key}: ")))
            .map(|v| v.trim_matches('"').to_string())
    };
    let name = lines[0]["  - name: ".len()..].trim_matches('"').to_string();
    assert!(
        lines[1..].iter().all(|l| l.starts_with("    ")),
        "only the entry follows: {out}"
    );
    (
        name,
        field("token_sha256").unwrap(),
        field("role").unwrap(),
        field("expires"),
    )
}

/// `token new`: a fresh `ndb_` token printed once, then the entry to paste holding its SHA-256;
/// bad values exit 2 naming the option; `--token-file` writes a new 0600 file instead.
#[test]
fn cli_token_new_prints_the_token_once_and_the_entry_to_paste() {
    use base64::Engine;
    use std::os::unix::fs::PermissionsExt;
    let (code, out, err) = run_to_end(
        &[
            "token",
            "new",
            "--name",
            "ansible-prod",
            "--role",
            "operator",
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.is_empty(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    assert!(
        lines[0].starts_with("# Token for 'ansible-prod' (operator). It is shown only now"),
        "{out}"
    );
    let token = lines[1];
    let raw = token
        .strip_prefix("ndb_")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(raw.len(), 43, "{token}");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .unwrap();
    assert_eq!(bytes.len(), 32);
    assert!(lines[2].starts_with("# Paste under api_tokens:"), "{out}");
    assert!(lines[2].contains("systemctl reload netdev-broker"), "{out}");
    let (name, sha, role, expires) = token_entry(&out);
    assert_eq!(
        (name.as_str(), role.as_str(), expires),
        ("ansible-prod", "operator", None)
    );
    assert_eq!(
        sha,
        sha256_hex(token),
        "the entry holds the SHA-256 of the printed token"
    );
    assert!(!out[out.find("  - name:").unwrap()..].contains(token));
    // The printed entry is YAML a list item of api_tokens: parses as (with its comments).
    let doc: serde_json::Value = serde_norway::from_str(&format!(
        "api_tokens:\n{}",
        &out[out.find("  - name:").unwrap()..]
    ))
    .unwrap();
    assert_eq!(doc["api_tokens"][0]["token_sha256"], sha.as_str());
    assert_eq!(doc["api_tokens"][0]["name"], "ansible-prod");

    // Every run makes another token.
    let (_, out2, _) = run_to_end(&["token", "new", "--name=b", "--role=viewer"], None);
    let token2 = out2.lines().nth(1).unwrap();
    assert!(token2.starts_with("ndb_") && token2 != token, "{out2}");
    assert_ne!(token_entry(&out2).1, sha);

    // --expires: a date stays as given, a time is written in UTC; the header says when.
    let (code, out, err) = run_to_end(
        &[
            "token",
            "new",
            "--name",
            "t1",
            "--role",
            "admin",
            "--expires",
            "2999-06-30",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("# Token for 't1' (admin, expires 2999-06-30 00:00 UTC)."),
        "{out}"
    );
    assert_eq!(token_entry(&out).3.as_deref(), Some("2999-06-30"));
    let (code, out, err) = run_to_end(
        &[
            "token",
            "new",
            "--name",
            "t2",
            "--role",
            "reader",
            "--expires",
            "2999-06-30T20:15:00+02:00",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(token_entry(&out).3.as_deref(), Some("2999-06-30T18:15:00Z"));

    // Bad values: exit 2, a message naming the option, nothing on stdout.
    let any_token = regex::Regex::new("ndb_[A-Za-z0-9_-]{43}").unwrap();
    for (args, msg) in [
        (
            &["token", "new", "--name", "x", "--role", "root"][..],
            "--role 'root': expected one of viewer, reader, operator, admin",
        ),
        (
            &["token", "new", "--name", "has space", "--role", "admin"],
            "--name 'has space': expected 1 to 64",
        ),
        (
            &["token", "new", "--name", &"n".repeat(65), "--role", "admin"],
            "expected 1 to 64",
        ),
        (
            &[
                "token",
                "new",
                "--name",
                "x",
                "--role",
                "admin",
                "--expires",
                "2001-02-03",
            ],
            "--expires '2001-02-03' is in the past",
        ),
        (
            &[
                "token",
                "new",
                "--name",
                "x",
                "--role",
                "admin",
                "--expires",
                "next week",
            ],
            "expected a date YYYY-MM-DD",
        ),
        (
            &[
                "token",
                "new",
                "--name",
                "x",
                "--role",
                "admin",
                "--expires",
                "2999-02-30",
            ],
            "expected a date YYYY-MM-DD",
        ),
        (
            &["token", "new", "--role", "admin"],
            "token new needs --name",
        ),
        (&["token", "new", "--name", "x"], "token new needs --role"),
        (
            &["token", "new", "--name", "x", "--role", "admin", "--bogus"],
            "'--bogus'",
        ),
        (
            &["token", "frobnicate"],
            "unknown token subcommand 'frobnicate'",
        ),
        (&["token"], "new or hash"),
    ] {
        let (code, out, err) = run_to_end(args, None);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(msg), "{args:?}: {err}");
        assert!(
            out.is_empty() && !any_token.is_match(&err),
            "{args:?}: {out}{err}"
        );
    }

    // --token-file: the token goes to a new file (0600), stdout has only comments and the entry.
    let dir = tmpdir("token");
    let file = dir.join("ansible.token");
    let f = file.to_str().unwrap();
    let (code, out, err) = run_to_end(
        &[
            "token",
            "new",
            "--name",
            "ansible",
            "--role",
            "operator",
            "--token-file",
            f,
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.lines()
            .all(|l| l.starts_with('#') || l.starts_with("  ")),
        "{out}"
    );
    assert!(!out.contains("ndb_"), "{out}");
    assert!(
        out.starts_with(&format!(
            "# Token for 'ansible' (operator) written to {f} (mode 0600)"
        )),
        "{out}"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let token = text.strip_suffix('\n').unwrap();
    assert!(token.starts_with("ndb_") && token.len() == 47, "{text:?}");
    assert_eq!(token_entry(&out).1, sha256_hex(token));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    // An existing file (or a symlink) is never overwritten: exit 2, the file unchanged.
    let link = dir.join("link.token");
    std::os::unix::fs::symlink(dir.join("elsewhere"), &link).unwrap();
    for p in [&file, &link] {
        let (code, out, err) = run_to_end(
            &[
                "token",
                "new",
                "--name",
                "again",
                "--role",
                "viewer",
                "--token-file",
                p.to_str().unwrap(),
            ],
            None,
        );
        assert_eq!(code, 2, "{out}{err}");
        assert!(err.contains("it exists (not overwritten"), "{err}");
        assert!(out.is_empty(), "{out}");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    assert!(!dir.join("elsewhere").exists());
    let (code, _, err) = run_to_end(
        &[
            "token",
            "new",
            "--name",
            "x",
            "--role",
            "viewer",
            "--token-file",
            "/nonexistent/dir/t",
        ],
        None,
    );
    assert_eq!(code, 2);
    assert!(err.contains("cannot create it"), "{err}");
    let (_, out, _) = run_to_end(&["--help"], None);
    assert!(out.contains("token new --name NAME --role ROLE") && out.contains("token hash"));
    std::fs::remove_dir_all(&dir).ok();
}

/// `token hash`: the token_sha256 of the first line of standard input (nothing trimmed but the
/// line end); a short token is warned about, an empty one or one with spaces refused.
#[test]
fn cli_token_hash_reads_standard_input() {
    use std::io::Write;
    use std::process::Stdio;
    let hash = |input: &str| {
        let mut c = Command::new(crate::child::bin())
            .args(["token", "hash"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let o = c.wait_with_output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    // A token that `token new` made: the same hash as its entry.
    let (_, out, _) = run_to_end(&["token", "new", "--name", "h", "--role", "viewer"], None);
    let token = out.lines().nth(1).unwrap();
    let (code, sha, err) = hash(&format!("{token}\nsecond line ignored\n"));
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "{err}");
    assert_eq!(sha, format!("{}\n", token_entry(&out).1));
    // From other tools: openssl rand -hex 32; CRLF and a missing line end alike.
    let hex = "0123456789abcdef".repeat(4);
    for input in [format!("{hex}\n"), format!("{hex}\r\n"), hex.clone()] {
        let (code, sha, err) = hash(&input);
        assert_eq!(
            (code, sha.trim_end()),
            (0, sha256_hex(&hex).as_str()),
            "{err}"
        );
    }
    let (code, sha, err) = hash("test\n");
    assert_eq!(code, 0);
    assert_eq!(
        sha.trim_end(),
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    );
    assert!(
        err.contains("warning: a short token (4 characters)"),
        "{err}"
    );
    for (input, msg) in [
        ("", "empty token"),
        ("\n", "empty token"),
        ("two words\n", "spaces"),
    ] {
        let (code, out, err) = hash(input);
        assert_eq!(code, 2, "{input:?}: {out}{err}");
        assert!(err.contains(msg) && out.is_empty(), "{input:?}: {err}");
    }
    let (code, _, err) = run_to_end(&["token", "hash", "extra"], None);
    assert_eq!(code, 2);
    assert!(err.contains("standard input"), "{err}");
}

fn spawn_without_env_token(tag: &str, cfg: &std::path::Path) -> Broker {
    Broker::serve(tag)
        .config(cfg)
        .token(None)
        .output(Output::Null)
        .start()
}

/// SIGHUP with a session open: new token, level and denied commands apply, the session stays;
/// the log file is reopened at its path (logrotate); a broken config changes nothing.
#[test]
fn sighup_reloads_live_settings_keeps_sessions_and_reopens_the_log() {
    let dev = FakeDevice::start(DeviceConfig {
        password: PASSWORD.into(),
        ..Default::default()
    });
    let dir = tmpdir("hup");
    let log = dir.join("broker.log");
    let cfg = dir.join("config.yml");
    let base = format!(
        "log_mode: file\nlog_file: {}\nstate_dir: {}\n",
        log.display(),
        dir.display()
    );
    std::fs::write(&cfg, format!("{base}api_token: {TOKEN}\nlog_level: INFO\n")).unwrap();
    let mut p = spawn_without_env_token("hup", &cfg);
    let exec = |token: &str, id: &str, cmd: &str| {
        call(
            p.addr,
            "POST",
            &format!("/session/{id}/exec"),
            Some(token),
            Some(&json!({"commands": [cmd]}).to_string()),
        )
    };
    let body = json!({"host": "127.0.0.1", "port": dev.port(), "username": "admin", "password": PASSWORD, "timeout": 10});
    let r = call(
        p.addr,
        "POST",
        "/session",
        Some(TOKEN),
        Some(&body.to_string()),
    );
    assert_eq!(r.status, 201, "{:?}", r.json());
    let id = r.json()["session_id"].as_str().unwrap().to_string();
    assert_eq!(exec(TOKEN, &id, "show version").status, 200);
    assert_eq!(exec(TOKEN, &id, "show running-config").status, 200);

    // logrotate: move the file away, then HUP.
    let rotated = dir.join("broker.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let new_token = "CANARY-tok-new-77ab";
    std::fs::write(
        &cfg,
        format!("{base}api_token: {new_token}\nlog_level: DEBUG\ndenied_commands: ['^show run']\nmax_sessions: 7\n"),
    )
    .unwrap();
    p.hup();
    assert!(
        wait_until(Duration::from_secs(5), || call(
            p.addr,
            "GET",
            "/sessions",
            Some(TOKEN),
            None
        )
        .status
            == 401),
        "the old token still works after SIGHUP"
    );
    let r = call(p.addr, "GET", "/sessions", Some(new_token), None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["count"], 1, "the session survived: {:?}", r.json());
    let r = exec(new_token, &id, "show version");
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert!(r.json()["outputs"]["show version"].as_str().is_some());
    let r = exec(new_token, &id, "show running-config");
    assert_eq!(r.status, 403, "newly denied: {:?}", r.json());
    assert!(
        wait_until(Duration::from_secs(5), || log.exists()),
        "a new log file at the configured path"
    );
    let new_log = std::fs::read_to_string(&log).unwrap();
    assert!(new_log.contains("reload: configuration from"), "{new_log}");
    assert!(
        new_log.contains("api_token") && new_log.contains("denied_commands"),
        "{new_log}"
    );
    assert!(
        new_log.contains("'max_sessions' changed but needs a restart"),
        "{new_log}"
    );
    assert!(
        new_log.contains(" DEBUG "),
        "log_level DEBUG applies: {new_log}"
    );
    let old_log = std::fs::read_to_string(&rotated).unwrap();
    assert!(old_log.contains("listening on") && !old_log.contains("reload: configuration"));

    // A broken config: refused with an ERROR, everything stays as it was.
    std::fs::write(
        &cfg,
        format!("{base}api_token: third\nreaper_interval: often\n"),
    )
    .unwrap();
    p.hup();
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("reload refused")),
        "a refused reload is logged"
    );
    let new_log = std::fs::read_to_string(&log).unwrap();
    assert!(
        new_log
            .lines()
            .any(|l| l.contains(" ERROR ") && l.contains("'reaper_interval'")),
        "{new_log}"
    );
    assert_eq!(
        call(p.addr, "GET", "/sessions", Some("third"), None).status,
        401
    );
    assert_eq!(
        call(p.addr, "GET", "/sessions", Some(new_token), None).status,
        200
    );
    assert_eq!(exec(new_token, &id, "show version").status, 200);
    assert_eq!(exec(new_token, &id, "show running-config").status, 403);

    // SIGTERM still ends it cleanly.
    p.term();
    let status = p
        .wait_exit(Duration::from_secs(10))
        .expect("no exit after SIGTERM");
    assert_eq!(status.code(), Some(0));
    for text in [std::fs::read_to_string(&log).unwrap(), old_log] {
        for canary in [TOKEN, new_token, PASSWORD] {
            assert!(!text.contains(canary), "{canary} leaked into the log");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// SIGHUP turns the reaper on (an idle session is then reaped) and the dashboard on (first web
/// user), and a changed restart-only key is reported, not applied.
#[test]
fn sighup_turns_the_reaper_and_the_dashboard_on() {
    let dev = FakeDevice::start(DeviceConfig {
        password: PASSWORD.into(),
        ..Default::default()
    });
    let dir = tmpdir("hup2");
    let log = dir.join("broker.log");
    let cfg = dir.join("config.yml");
    let base = format!(
        "log_mode: file\nlog_file: {}\nstate_dir: {}\napi_token: {TOKEN}\n",
        log.display(),
        dir.display()
    );
    std::fs::write(
        &cfg,
        format!("{base}stale_reaper: false\nreaper_interval: 1\n"),
    )
    .unwrap();
    let p = spawn_without_env_token("hup2", &cfg);
    let body = json!({"host": "127.0.0.1", "port": dev.port(), "username": "admin", "password": PASSWORD, "timeout": 10, "session_timeout": 1});
    let r = call(
        p.addr,
        "POST",
        "/session",
        Some(TOKEN),
        Some(&body.to_string()),
    );
    assert_eq!(r.status, 201, "{:?}", r.json());
    let id = r.json()["session_id"].as_str().unwrap().to_string();
    assert_eq!(
        call(p.addr, "GET", "/", None, None).status,
        404,
        "dashboard off"
    );
    std::thread::sleep(Duration::from_millis(2500));
    let status = |id: &str| {
        call(
            p.addr,
            "GET",
            &format!("/session/{id}/status"),
            Some(TOKEN),
            None,
        )
        .status
    };
    assert_eq!(status(&id), 200, "reaper off: the idle session stays");

    let hash = bcrypt::hash("CANARY-web-pw-1", 4).unwrap();
    std::fs::write(
        &cfg,
        format!("{base}stale_reaper: true\nreaper_interval: 1\nmax_connections: 300\nmetrics_public: true\nweb_secret_key: CANARY-key-31-0123456789abcdef0123\nweb_users:\n  - username: ops\n    password_hash: '{hash}'\n"),
    )
    .unwrap();
    p.hup();
    assert!(
        wait_until(Duration::from_secs(8), || status(&id) == 404),
        "the reaper, turned on by the reload, reaps the idle session"
    );
    let r = call(p.addr, "GET", "/", None, None);
    assert_eq!(r.status, 200, "the dashboard is on");
    assert!(String::from_utf8_lossy(&r.body).contains("password"));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("'max_connections' changed but needs a restart"),
        "{text}"
    );
    assert!(text.contains("reaper every 1 s"), "{text}");
    assert!(
        text.contains("metrics_public") && !text.contains("'metrics_public' changed but needs"),
        "metrics_public is applied live, and said so once: {text}"
    );
    assert_eq!(
        call(p.addr, "GET", "/metrics", None, None).status,
        200,
        "metrics_public applies"
    );
    // The restart-only key kept its running value: the same file again still reports it,
    // and the live keys, already in effect, are not changed again.
    p.hup();
    let reported = |t: &str| {
        t.matches("'max_connections' changed but needs a restart")
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(5), || reported(
            &std::fs::read_to_string(&log).unwrap()
        ) == 2),
        "a second reload reports the restart-only key again"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("applied (nothing changed;"), "{text}");
    assert!(!text.contains("CANARY-key-31") && !text.contains(TOKEN));
    std::fs::remove_dir_all(&dir).ok();
}

/// A state_dir the broker cannot use stops it at start (exit 2), naming the key and the path,
/// instead of a 500 at the first session's open.
#[test]
fn an_unusable_state_dir_stops_the_start() {
    let dir = tmpdir("state");
    let file = dir.join("a-file");
    std::fs::write(&file, "").unwrap();
    let cfg = dir.join("config.yml");
    let state = file.join("state");
    std::fs::write(
        &cfg,
        format!("api_token: {TOKEN}\nstate_dir: {}\n", state.display()),
    )
    .unwrap();
    let port = free_port().to_string();
    let args = ["serve", "--config", cfg.to_str().unwrap(), "--port", &port];
    let (code, out, err) = run_to_end(&args, None);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("config key 'state_dir'") && err.contains(&state.display().to_string()),
        "{err}"
    );
    // An explicit known_hosts is where the state goes: its directory is the one checked.
    let kh = file.join("known_hosts");
    std::fs::write(
        &cfg,
        format!("api_token: {TOKEN}\nknown_hosts: {}\n", kh.display()),
    )
    .unwrap();
    let (code, out, err) = run_to_end(&args, None);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("config key 'known_hosts'") && err.contains(&file.display().to_string()),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// No config file at all, a user other than root (as root, the test runs the broker as
/// nobody): the default state_dir (/var/lib/netdev-broker) is not theirs, so the broker uses
/// $XDG_STATE_HOME/netdev-broker and says so at INFO.
#[test]
fn without_a_config_file_a_user_gets_a_state_dir_of_their_own() {
    use std::os::unix::fs::PermissionsExt;
    const NAME: &str = "process::without_a_config_file_a_user_gets_a_state_dir_of_their_own";
    if std::path::Path::new("/etc/netdev-broker/config.yml").exists() {
        skip(
            NAME,
            "/etc/netdev-broker/config.yml exists (the default config)",
        );
        return;
    }
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let default_usable =
        !root && netdev_broker::config::dir_usable("/var/lib/netdev-broker".as_ref()).is_ok();
    if default_usable {
        skip(NAME, "this user can use /var/lib/netdev-broker");
        return;
    }
    let dir = tmpdir("peruser");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut spawn = Broker::serve("peruser")
        .no_config()
        .env("XDG_STATE_HOME", &dir)
        .env("HOME", &dir)
        .output(Output::Piped)
        .no_wait();
    if root {
        spawn = spawn.uid_gid(65534, 65534);
    }
    let mut p = spawn.start();
    let up = p.wait_health(Duration::from_secs(10));
    p.kill();
    let (mut out, err) = p.read_output();
    out.push_str(&err);
    assert!(up, "broker did not start: {out}");
    let mine = dir.join("netdev-broker");
    let note = out
        .lines()
        .find(|l| l.contains("state_dir is"))
        .unwrap_or_else(|| panic!("no note about state_dir: {out}"));
    assert!(
        note.contains(" INFO ")
            && note.contains("/var/lib/netdev-broker")
            && note.contains(&mine.display().to_string()),
        "{note}"
    );
    assert!(mine.is_dir(), "made at start");
    std::fs::remove_dir_all(&dir).ok();
}

/// SIGTERM to the real binary with armed change guards: `on_broker_exit: rollback` (the
/// default) restores the device before the process exits; `keep` leaves it, and the next start
/// reports the guard (ERROR log line, `GET /guards` `previous_run`), with no secret in the file.
#[test]
fn sigterm_rolls_back_armed_guards_or_keeps_them_as_asked() {
    let dev = FakeDevice::start(DeviceConfig {
        password: PASSWORD.into(),
        start_privileged: true,
        ..Default::default()
    });
    let dir = tmpdir("proc-guard");
    let cfg = dir.join("config.yml");
    std::fs::write(&cfg, format!("state_dir: {}\n", dir.display())).unwrap();
    let open =
        json!({"host": "127.0.0.1", "port": dev.port(), "username": "admin", "password": PASSWORD});
    let has = |l: &str| dev.running_config().iter().any(|x| x.trim() == l);
    for (keep, change) in [
        (false, "interface Loopback71"),
        (true, "interface Loopback72"),
    ] {
        let mut p = Broker::serve("proc-guard").config(&cfg).start();
        let r = call(
            p.addr,
            "POST",
            "/session",
            Some(TOKEN),
            Some(&open.to_string()),
        );
        assert_eq!(r.status, 201);
        let id = r.json()["session_id"].as_str().unwrap().to_string();
        let mut guard = json!({"timeout": 600, "rollback": {"config": [format!("no {change}")]}, "reopen": open});
        if keep {
            guard["on_broker_exit"] = json!("keep");
        }
        let r = call(
            p.addr,
            "POST",
            &format!("/session/{id}/guard"),
            Some(TOKEN),
            Some(&guard.to_string()),
        );
        assert_eq!(r.status, 201, "{:?}", r.json());
        let r = call(
            p.addr,
            "POST",
            &format!("/session/{id}/exec"),
            Some(TOKEN),
            Some(&json!({"config": [change]}).to_string()),
        );
        assert_eq!(r.status, 200);
        assert!(has(change));
        p.term();
        let status = p
            .wait_exit(Duration::from_secs(20))
            .expect("no exit after SIGTERM");
        assert_eq!(status.code(), Some(0));
        assert_eq!(has(change), keep, "keep={keep}: {:?}", dev.running_config());
    }
    let text = std::fs::read_to_string(dir.join("guards.json")).unwrap();
    assert!(
        text.contains("Loopback") || text.contains("session_id"),
        "{text}"
    );
    assert!(!text.contains(PASSWORD), "{text}");
    let mut p = Broker::serve("proc-guard")
        .config(&cfg)
        .output(Output::Piped)
        .start();
    let prev = call(p.addr, "GET", "/guards", Some(TOKEN), None).json()["previous_run"].clone();
    assert_eq!(prev.as_array().map(Vec::len), Some(1), "{prev}");
    assert_eq!(prev[0]["on_broker_exit"], "keep");
    p.term();
    p.wait_exit(Duration::from_secs(10));
    let (stdout, stderr) = p.read_output();
    let all = format!("{stdout}{stderr}");
    assert!(
        all.contains("a change guard was armed when the broker stopped"),
        "{all}"
    );
    assert!(!all.contains(PASSWORD));
    std::fs::remove_dir_all(&dir).ok();
}
