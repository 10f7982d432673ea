//! SSH trust and reach (issue 5) against the fake SSH device: host keys (accept-new, strict,
//! rotation, off), key and keyboard-interactive authentication, algorithm lists, the device
//! allow-list and command rules. Real OpenSSH sshd: tests/external/test_26_openssh.py.

use crate::support::*;
use fake_device::{
    gen_client_key_openssh, gen_host_key_openssh, AuthMode, DeviceConfig, FakeDevice,
};
use serde_json::{json, Value};

fn device(cfg: DeviceConfig) -> FakeDevice {
    FakeDevice::start(DeviceConfig {
        password: PASSWORD.into(),
        ..cfg
    })
}

fn body(port: u16, extra: Value) -> Value {
    let mut b = json!({"host": "127.0.0.1", "port": port, "username": "admin", "password": PASSWORD, "timeout": 10});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

fn detail(r: &Resp) -> String {
    let d = &r.json()["detail"];
    match d.as_str() {
        Some(s) => s.to_string(),
        None => d.to_string(),
    }
}

fn status(b: &TestBroker, id: &str) -> Value {
    let r = b.get(&format!("/session/{id}/status"));
    assert_eq!(r.status, 200);
    r.json()
}

#[test]
fn host_key_is_learned_then_a_rotated_key_is_refused_before_login() {
    let b = broker("");
    let dev = device(DeviceConfig {
        host_key: Some(gen_host_key_openssh("ed25519")),
        ..Default::default()
    });
    let port = dev.port();

    let id = b.open(port, json!({}));
    let st = status(&b, &id);
    assert_eq!(st["host_key_type"], "ssh-ed25519");
    assert_eq!(st["host_key_fingerprint"], dev.host_key_sha256());
    assert_eq!(st["host_key_check"], "recorded");
    let kh = std::fs::read_to_string(b.dir.join("known_hosts")).unwrap();
    assert_eq!(
        kh,
        format!("[127.0.0.1]:{port} {}\n", dev.host_key_openssh()),
        "one line in OpenSSH format"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(b.dir.join("known_hosts"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    b.delete(&format!("/session/{id}"));

    // Same key again: known, nothing appended.
    let id = b.open(port, json!({}));
    assert_eq!(status(&b, &id)["host_key_check"], "known");
    b.delete(&format!("/session/{id}"));
    assert_eq!(
        std::fs::read_to_string(b.dir.join("known_hosts")).unwrap(),
        kh
    );

    // The device is "re-keyed" (or something else now answers on its address).
    let old_fp = dev.host_key_sha256();
    drop(dev);
    let dev = FakeDevice::start_on(
        DeviceConfig {
            password: PASSWORD.into(),
            host_key: Some(gen_host_key_openssh("ed25519")),
            ..Default::default()
        },
        port,
    );
    let r = b.post("/session", &body(port, json!({})));
    assert_eq!(r.status, 502, "{}", detail(&r));
    let d = detail(&r);
    assert!(d.contains("host key mismatch"), "{d}");
    assert!(
        d.contains(&old_fp) && d.contains(&dev.host_key_sha256()),
        "{d}"
    );
    assert!(d.contains("ssh-keygen -R"), "{d}");
    assert!(
        dev.auth_methods_tried().is_empty(),
        "credentials were offered to a device with a changed key: {:?}",
        dev.auth_methods_tried()
    );
    assert_eq!(
        std::fs::read_to_string(b.dir.join("known_hosts")).unwrap(),
        kh,
        "the old key stays"
    );

    // A key of another type only, where an ed25519 key is known: refused the same way.
    drop(dev);
    let dev = FakeDevice::start_on(
        DeviceConfig {
            password: PASSWORD.into(),
            host_key: Some(gen_host_key_openssh("ecdsa")),
            ..Default::default()
        },
        port,
    );
    let r = b.post("/session", &body(port, json!({})));
    assert_eq!(r.status, 502);
    assert!(
        detail(&r).contains("presented only ecdsa-sha2-nistp256"),
        "{}",
        detail(&r)
    );
    assert!(dev.auth_methods_tried().is_empty());

    // Stricter per session is always allowed; weaker is not (422, nothing connects).
    let before = dev.total_connections();
    let r = b.post("/session", &body(port, json!({"host_key_policy": "off"})));
    assert_eq!(r.status, 422, "{}", detail(&r));
    assert!(detail(&r).contains("host_key_policy"), "{}", detail(&r));
    assert_eq!(dev.total_connections(), before);
    let r = b.post(
        "/session",
        &body(port, json!({"host_key_policy": "sometimes"})),
    );
    assert_eq!(r.status, 422);
}

#[test]
fn strict_refuses_unknown_keys_and_accepts_listed_ones() {
    let b = broker("host_key_policy: strict\n");
    let dev = device(DeviceConfig::default());
    let r = b.post("/session", &body(dev.port(), json!({})));
    assert_eq!(r.status, 502);
    let d = detail(&r);
    assert!(
        d.contains("not known") && d.contains(&dev.host_key_sha256()),
        "{d}"
    );
    assert!(dev.auth_methods_tried().is_empty());
    assert!(!b.dir.join("known_hosts").exists(), "strict never writes");
    // accept-new per session is weaker than strict: 422.
    let r = b.post(
        "/session",
        &body(dev.port(), json!({"host_key_policy": "accept-new"})),
    );
    assert_eq!(r.status, 422);

    // The operator lists the key (OpenSSH format, with comments and other hosts around it).
    std::fs::write(
        b.dir.join("known_hosts"),
        format!(
            "# devices\n10.1.1.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n\
             [127.0.0.1]:{} {} lab-r1\n",
            dev.port(),
            dev.host_key_openssh()
        ),
    )
    .unwrap();
    let id = b.open(dev.port(), json!({}));
    assert_eq!(status(&b, &id)["host_key_check"], "known");
}

/// A host key marked `@revoked` in known_hosts is refused before login, under accept-new as
/// under strict, and is not learnt again (the line was skipped until then).
#[test]
fn a_revoked_host_key_is_refused_and_never_recorded() {
    let dev = device(DeviceConfig::default());
    for policy in ["accept-new", "strict"] {
        let b = broker(&format!("host_key_policy: {policy}\n"));
        let revoked = format!("@revoked * {}\n", dev.host_key_openssh());
        std::fs::write(b.dir.join("known_hosts"), &revoked).unwrap();
        let r = b.post("/session", &body(dev.port(), json!({})));
        assert_eq!(r.status, 502, "{policy}");
        let d = detail(&r);
        assert!(
            d.contains("revoked") && d.contains(&dev.host_key_sha256()),
            "{policy}: {d}"
        );
        assert!(dev.auth_methods_tried().is_empty(), "{policy}");
        assert_eq!(
            std::fs::read_to_string(b.dir.join("known_hosts")).unwrap(),
            revoked,
            "{policy}"
        );
    }
}

#[test]
fn off_needs_the_override_and_then_skips_the_check() {
    let b = broker("host_key_policy_override: any\n");
    let dev = device(DeviceConfig::default());
    std::fs::write(
        b.dir.join("known_hosts"),
        format!("[127.0.0.1]:{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n", dev.port()),
    )
    .unwrap();
    let r = b.post("/session", &body(dev.port(), json!({})));
    assert_eq!(r.status, 502);
    assert!(detail(&r).contains("host key mismatch"));
    let id = b.open(dev.port(), json!({"host_key_policy": "off"}));
    let st = status(&b, &id);
    assert_eq!(st["host_key_check"], "unchecked");
    assert_eq!(st["host_key_fingerprint"], dev.host_key_sha256());
}

#[test]
fn key_authentication_with_a_passphrase_from_key_dir() {
    let keys = tmpdir("keys");
    let (private, public) = gen_client_key_openssh("ed25519", Some("CANARY-pp-11"));
    std::fs::write(keys.join("r1_ed25519"), private).unwrap();
    let (plain, plain_pub) = gen_client_key_openssh("ecdsa", Some(""));
    std::fs::write(keys.join("plain"), plain).unwrap();
    std::fs::write(
        keys.parent().unwrap().join(format!(
            "{}-outside",
            keys.file_name().unwrap().to_string_lossy()
        )),
        "x",
    )
    .unwrap();
    let b = broker(&format!("key_dir: {}\n", keys.display()));
    let dev = device(DeviceConfig {
        auth: AuthMode::PublicKeyOnly(vec![public, plain_pub]),
        ..Default::default()
    });
    let nopw = |extra: Value| {
        let mut v = body(dev.port(), extra);
        v.as_object_mut().unwrap().remove("password");
        v
    };

    let r = b.post(
        "/session",
        &nopw(json!({"key_file": "r1_ed25519", "passphrase": "CANARY-pp-11"})),
    );
    assert_eq!(r.status, 201, "{}", detail(&r));
    assert_eq!(dev.auth_methods_tried(), ["publickey"]);
    let id = r.json()["session_id"].as_str().unwrap().to_string();
    let out = b.post(
        &format!("/session/{id}/exec"),
        &json!({"commands": ["show clock"]}),
    );
    assert_eq!(out.status, 200);

    // An absolute path inside key_dir and an unencrypted key work too.
    let abs = keys.join("plain").display().to_string();
    let r = b.post("/session", &nopw(json!({"key_file": abs})));
    assert_eq!(r.status, 201, "{}", detail(&r));

    // Wrong passphrase: 401 that says so.
    let r = b.post(
        "/session",
        &nopw(json!({"key_file": "r1_ed25519", "passphrase": "nope"})),
    );
    assert_eq!(r.status, 401, "{}", detail(&r));
    assert!(detail(&r).contains("passphrase"), "{}", detail(&r));

    // Nothing outside key_dir, however it is spelled; a missing file is a 422 too.
    let before = dev.total_connections();
    for bad in [
        format!("../{}-outside", keys.file_name().unwrap().to_string_lossy()),
        "/etc/passwd".to_string(),
        "missing".to_string(),
        "r1_ed25519\u{0}x".to_string(),
    ] {
        let r = b.post("/session", &nopw(json!({"key_file": bad})));
        assert_eq!(r.status, 422, "{bad}: {}", detail(&r));
    }
    assert_eq!(
        dev.total_connections(),
        before,
        "a refused key_file never connects"
    );

    // Password-only credentials against a publickey-only device: 401 naming the methods.
    let r = b.post("/session", &body(dev.port(), json!({})));
    assert_eq!(r.status, 401);
    assert!(detail(&r).contains("publickey"), "{}", detail(&r));

    // Without key_dir in the config, key_file is refused.
    let b2 = broker("");
    let r = b2.post("/session", &nopw(json!({"key_file": "r1_ed25519"})));
    assert_eq!(r.status, 422);
    assert!(detail(&r).contains("key_dir"), "{}", detail(&r));
    let _ = std::fs::remove_dir_all(&keys);
}

#[test]
fn keyboard_interactive_only_devices_get_the_password() {
    let b = broker("");
    let dev = device(DeviceConfig {
        auth: AuthMode::KeyboardInteractiveOnly,
        ..Default::default()
    });
    let id = b.open(dev.port(), json!({}));
    assert_eq!(dev.auth_methods_tried(), ["keyboard-interactive"]);
    let r = b.post(
        &format!("/session/{id}/exec"),
        &json!({"commands": ["show clock"]}),
    );
    assert_eq!(r.status, 200);
    let r = b.post("/session", &body(dev.port(), json!({"password": "wrong"})));
    assert_eq!(r.status, 401);
}

#[test]
fn algorithm_lists_are_offered_as_given() {
    let b = broker("");
    let dev = device(DeviceConfig::default());
    let id = b.open(
        dev.port(),
        json!({"kex": "diffie-hellman-group14-sha256", "ciphers": ["aes128-ctr"], "macs": "hmac-sha2-256"}),
    );
    let st = status(&b, &id);
    let text = st.to_string();
    for want in [
        "diffie-hellman-group14-sha256",
        "aes128-ctr",
        "hmac-sha2-256",
    ] {
        assert!(text.contains(want), "{want} not in {text}");
    }
    // legacy_algorithms adds the SHA-1 set after the modern one: a modern device still
    // negotiates a modern algorithm.
    let id = b.open(dev.port(), json!({"legacy_algorithms": true}));
    let text = status(&b, &id).to_string();
    assert!(text.contains("curve25519-sha256"), "{text}");

    // A name this build does not have: 422 listing what it has; nothing connects.
    let before = dev.total_connections();
    let r = b.post("/session", &body(dev.port(), json!({"kex": "ext-info-c"})));
    assert_eq!(r.status, 422, "a marker is no kex: {}", detail(&r));
    let r = b.post(
        "/session",
        &body(dev.port(), json!({"ciphers": ["rot13-cbc"]})),
    );
    assert_eq!(r.status, 422, "{}", detail(&r));
    assert!(
        detail(&r).contains("rot13-cbc") && detail(&r).contains("aes128-ctr"),
        "{}",
        detail(&r)
    );
    assert_eq!(dev.total_connections(), before);

    // Nothing in common (the fake device has no CBC ciphers): 502 with the offer and the hint.
    let r = b.post(
        "/session",
        &body(dev.port(), json!({"ciphers": "3des-cbc"})),
    );
    assert_eq!(r.status, 502, "{}", detail(&r));
    let d = detail(&r);
    assert!(
        d.contains("3des-cbc") && d.contains("legacy_algorithms"),
        "{d}"
    );
}

#[test]
fn allowed_hosts_refuse_other_devices_before_connecting() {
    let dev = device(DeviceConfig::default());
    let b = broker("allowed_hosts: [\"10.0.0.0/8\", \"*.lab.example\"]\n");
    for host in ["127.0.0.1", "localhost"] {
        let r = b.post("/session", &body(dev.port(), json!({"host": host})));
        assert_eq!(r.status, 403, "{host}: {}", detail(&r));
        assert!(detail(&r).contains("allowed_hosts"), "{}", detail(&r));
        let r = b.post("/telnet-session", &body(dev.port(), json!({"host": host})));
        assert_eq!(r.status, 403, "telnet {host}: {}", detail(&r));
    }
    assert_eq!(dev.total_connections(), 0);

    // A name is checked by what it resolves to, too.
    let b = broker("allowed_hosts: [\"127.0.0.1/32\"]\n");
    let id = b.open(dev.port(), json!({"host": "localhost"}));
    assert_eq!(status(&b, &id)["host"], "localhost");
}

#[test]
fn command_rules_refuse_a_request_before_anything_is_sent() {
    let dev = device(DeviceConfig::default());
    let b = broker("denied_commands: ['^reload\\b', '^write\\s+erase', 'no aaa']\n");
    let id = b.open(dev.port(), json!({}));
    let sent_before = dev.lines_received().len();
    let exec = |v: Value| b.post(&format!("/session/{id}/exec"), &v);
    let r = exec(json!({"commands": ["show clock", "reload"]}));
    assert_eq!(r.status, 403, "{}", detail(&r));
    assert!(detail(&r).contains("reload"), "{}", detail(&r));
    let r = exec(json!({"commands": [{"cmd": "  WRITE   erase", "answer": "confirm"}]}));
    assert_eq!(
        r.status,
        403,
        "case and spaces do not get around a rule: {}",
        detail(&r)
    );
    let r = exec(json!({"config": ["hostname R2", "no aaa new-model"]}));
    assert_eq!(r.status, 403, "{}", detail(&r));
    assert_eq!(
        dev.lines_received().len(),
        sent_before,
        "{:?}",
        dev.lines_received()
    );
    // Allowed ones still run.
    let r = exec(json!({"commands": ["show clock"]}));
    assert_eq!(r.status, 200);

    // allowed_commands: everything else is refused.
    let b = broker("allowed_commands: ['^show ', '^ping ']\n");
    let id = b.open(dev.port(), json!({}));
    let r = b.post(
        &format!("/session/{id}/exec"),
        &json!({"commands": ["show version", "ping 10.0.0.1"]}),
    );
    assert_eq!(r.status, 200);
    let r = b.post(
        &format!("/session/{id}/exec"),
        &json!({"commands": ["clear counters"]}),
    );
    assert_eq!(r.status, 403);
    assert!(detail(&r).contains("allowed_commands"), "{}", detail(&r));
}
