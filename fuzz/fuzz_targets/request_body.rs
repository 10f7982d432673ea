//! The request body parser of `src/api/wire.rs` over arbitrary bytes: JSON to a validated open
//! request (POST /session) and exec request (POST /session/{id}/exec). Every input must give
//! either a typed request that satisfies the documented bounds or a clean 422 whose FastAPI-shaped
//! body serialises; nothing may panic.
//!
//! Input: the body bytes (the dictionary fuzz/dict/request_body.dict holds the field names).

#![no_main]

use libfuzzer_sys::fuzz_target;
use netdev_broker::api::error::Error;
use netdev_broker::api::wire::{exec_body, open_body};
use netdev_broker::channel::typed::is_control;
use netdev_broker::platform;
use netdev_broker::transport::validate_host;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    match open_body(data) {
        Ok(b) => {
            // What the route does next with a valid body (lookup answers None or a platform).
            let _ = platform::lookup(&b.device_type);
            assert!(validate_host(&b.host).is_ok(), "{:?}", b.host);
            // Login fields are typed at the device's prompts: no control character at all.
            let typed = [
                Some(b.host.as_str()),
                Some(b.username.as_str()),
                Some(b.password.expose()),
                b.enable_password.as_ref().map(|s| s.expose()),
                b.passphrase.as_ref().map(|s| s.expose()),
                b.key_file.as_deref(),
            ];
            for t in typed.into_iter().flatten() {
                assert!(!t.chars().any(is_control), "{t:?}");
            }
            assert!(b.port.is_none_or(|p| p >= 1));
            assert!(
                b.timeout >= Duration::from_millis(100) && b.timeout <= Duration::from_secs(3600)
            );
            assert!(b.enable_level.is_none_or(|l| l <= 15));
            assert!(b
                .keepalive_interval
                .is_none_or(|k| k <= Duration::from_secs(86_400)));
            for list in [&b.kex, &b.host_key_algorithms, &b.ciphers, &b.macs]
                .into_iter()
                .flatten()
            {
                assert!(!list.is_empty() && list.iter().all(|n| !n.is_empty() && n.len() <= 64));
            }
        }
        Err(e) => clean_422(e),
    }
    match exec_body(data) {
        Ok(b) => {
            // `{"commands": []}` is a valid (empty) exec, as it was for the seed's pydantic model.
            // No accepted exec carries a control character in a typed field (the line ends are
            // the broker's own: `newline`, `send_newlines`).
            assert!(b.items.len() <= 1000);
            for it in &b.items {
                assert!(!it.cmd.chars().any(is_control), "{:?}", it.cmd);
                for t in [it.timeout, b.timeout].into_iter().flatten() {
                    assert!(t >= Duration::from_millis(100) && t <= Duration::from_secs(86_400));
                }
                // The seed's `answer` form sends 0..=16 newlines; interactions send their text.
                assert!(it.interactions.len() <= 16 + 1);
                for ia in &it.interactions {
                    let send = ia.send.expose();
                    let text = send.strip_suffix('\n').unwrap_or(send);
                    let only_newlines = send.chars().all(|c| c == '\n');
                    assert!(only_newlines || !text.chars().any(is_control), "{send:?}");
                }
            }
            for line in b.config.iter().flatten() {
                assert!(!line.chars().any(is_control), "{line:?}");
            }
        }
        Err(e) => clean_422(e),
    }
});

/// A refused body is a 422 with `detail` as a list of {type, loc, msg}, and it serialises.
fn clean_422(e: Error) {
    assert_eq!(e.status(), 422, "{e:?}");
    let body = e.body();
    let detail = body["detail"].as_array().expect("detail is a list");
    assert!(!detail.is_empty());
    for d in detail {
        assert!(d["type"].is_string() && d["msg"].is_string() && d["loc"].is_array());
    }
    serde_json::to_vec(&body).expect("the error body serialises");
    let _ = e.to_string();
}
