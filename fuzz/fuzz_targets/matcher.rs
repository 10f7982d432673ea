//! The prompt and pager matcher over arbitrary device output, with real platform profiles:
//! `channel::Acc` (output kept up to a cap, a rolling tail searched for the waiting line, pager
//! lines recorded for cutting), `channel::matcher` (cleaning, last line, echo and prompt
//! stripping) and the platform's compiled prompt, mode, pager, context and failure patterns.
//!
//! Properties: nothing panics; the kept output respects its cap and `truncated` says whether
//! anything was dropped; the searched tail stays bounded; the waiting line is one line; cleaned
//! text has no CR, NUL, BEL, BS or ESC left; a line the generic prompt takes (and learns the
//! hostname from) is matched by the prompt learned from it and has a mode; stripping only removes.
//!
//! Input: platform selector, read-size seed, output cap, then the device's bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netdev_broker::channel::{matcher, Acc};
use netdev_broker::platform;
use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

const PLATFORMS: &[&str] = &[
    "cisco_ios",
    "juniper_junos",
    "arista_eos",
    "cisco_xr",
    "huawei_vrp",
    "hp_procurve",
    "nokia_sros",
    "linux",
    "generic",
];

/// `channel::TAIL`: how much history is searched besides the newest read.
const TAIL: usize = 4096;
const CMD: &str = "show running-config";

fuzz_target!(|data: &[u8]| {
    let [sel, seed, cap, raw @ ..] = data else {
        return;
    };
    let (p, prompt) = &profiles()[usize::from(*sel) % PLATFORMS.len()];
    let cap = if cap & 0x80 != 0 {
        1 << 20
    } else {
        usize::from(*cap) * 8
    };

    // The command's reply read by read (1..=64 bytes each), as Driver::run consumes it: after each
    // read the waiting line is tried against the prompt, then the pagers; a pager line is cut.
    let mut acc = Acc::new(cap);
    acc.expect_echo(CMD);
    let mut x = u32::from(*seed) | 0x100;
    let (mut fed, mut pos) = (0usize, 0usize);
    while pos < raw.len() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let n = (x as usize % 64 + 1).min(raw.len() - pos);
        let chunk = &raw[pos..pos + n];
        pos += n;
        acc.push(chunk);
        fed += n;
        assert!(acc.kept.len() <= cap);
        assert_eq!(acc.truncated, fed > cap);
        assert!(acc.tail_bytes().len() <= TAIL + n);

        let line = acc.waiting_line();
        assert!(!line.contains('\n'), "{line:?}");
        let _ = acc.search_text();
        check_prompt_line(p, &line);
        if prompt.is_match(&line) {
            break;
        }
        if p.pagers.iter().any(|pg| pg.pattern.is_match(&line)) {
            acc.cut_pager_line();
            acc.reset_tail();
            assert!(acc
                .pager_cuts
                .iter()
                .all(|&(s, e)| s <= e && e <= acc.kept.len()));
        }
        for q in &p.default_questions {
            let _ = q.is_match(&acc.search_text());
        }
    }

    // Output finishing: clean, strip the echo, the prompt and a context line above it.
    let text = matcher::clean(&acc.kept);
    assert!(
        !text.contains(['\r', '\0', '\x07', '\x08', '\x1b']),
        "{text:?}"
    );
    let out = matcher::strip_echo(&text, CMD);
    assert!(text.ends_with(out));
    let out2 = matcher::strip_prompt(out, |l| prompt.is_match(l));
    assert!(out.starts_with(out2));
    let out3 = matcher::strip_prompt(out2, |l| p.is_context(l));
    assert!(out2.starts_with(out3));
    let _ = p.failure_in(out3);

    // The whole input at once, and every line of it as a candidate prompt.
    let all = matcher::clean(raw);
    assert!(!all.contains(['\r', '\0', '\x07', '\x08', '\x1b']));
    for l in all.split('\n').take(64) {
        check_prompt_line(p, matcher::last_line(l));
    }
});

/// The profiles, each with its prompt learned for hostname R1 (compiled once).
fn profiles() -> &'static [(&'static platform::Platform, regex::Regex)] {
    static P: OnceLock<Vec<(&'static platform::Platform, regex::Regex)>> = OnceLock::new();
    P.get_or_init(|| {
        PLATFORMS
            .iter()
            .map(|name| {
                let p = platform::lookup(name).expect("an embedded platform");
                (
                    p,
                    p.learned_prompt("R1").expect("the learned prompt compiles"),
                )
            })
            .collect()
    })
}

/// A line the generic prompt takes yields a hostname; the prompt learned from that hostname must
/// match the line again (else the session would lose its own prompt) and the line has a mode.
fn check_prompt_line(p: &platform::Platform, line: &str) {
    let Some(base) = p.prompt_base(line) else {
        return;
    };
    // Compiled once per (platform, hostname): compiling dominates otherwise.
    static LEARNED: Mutex<BTreeMap<(String, String), regex::Regex>> = Mutex::new(BTreeMap::new());
    let mut cache = LEARNED.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() > 4096 {
        cache.clear();
    }
    let learned = cache
        .entry((p.name.clone(), base.to_string()))
        .or_insert_with(|| {
            p.learned_prompt(base)
                .unwrap_or_else(|e| panic!("{}: learned prompt for {base:?}: {e}", p.name))
        });
    assert!(
        learned.is_match(line),
        "{}: prompt {line:?} (hostname {base:?}) not matched by its learned prompt",
        p.name
    );
    assert!(
        p.mode_of(line).is_some(),
        "{}: prompt {line:?} has no mode",
        p.name
    );
}
