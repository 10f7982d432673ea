//! The whole prompt and pager dialogue of `session::driver` over a fuzzed device: open (login
//! questions, first prompt and its confirmation, enable, on-open commands), one command (pagers
//! answered and cut, questions answered, `expect`), a CLI keepalive and the close, with real
//! platform profiles. What the driver writes is not checked; nothing may panic, and every call
//! must return (reads never block here: a device with nothing more to say has closed).
//!
//! Input: platform selector, options, read-size seed, then the device's output as segments
//! separated by 0xFF: the first is the greeting, each later one is what the device prints after
//! the next write it receives.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netdev_broker::channel::Channel;
use netdev_broker::platform;
use netdev_broker::secret::Secret;
use netdev_broker::session::driver::{Driver, ExecItem, Interaction, Login, OpenOptions};
use netdev_broker::transport::{Transport, TransportError};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

const PLATFORMS: &[&str] = &[
    "cisco_ios",
    "juniper_junos",
    "arista_eos",
    "cisco_xr",
    "huawei_vrp",
    "hp_procurve",
    "nokia_sros",
    "linux",
    "cisco_asa",
];

/// A device that replays its segments: one released per write, read in pieces of 1..=64 bytes.
struct Replay {
    released: VecDeque<u8>,
    segments: VecDeque<Vec<u8>>,
    x: u32,
}

impl Replay {
    fn piece(&mut self, buf: &mut [u8]) -> usize {
        self.x ^= self.x << 13;
        self.x ^= self.x >> 17;
        self.x ^= self.x << 5;
        let n = (self.x as usize % 64 + 1)
            .min(buf.len())
            .min(self.released.len());
        for (i, b) in self.released.drain(..n).enumerate() {
            buf[i] = b;
        }
        n
    }
}

impl Transport for Replay {
    fn read(&mut self, buf: &mut [u8], _deadline: Instant) -> Result<usize, TransportError> {
        match self.piece(buf) {
            0 => Err(TransportError::Closed("the device said everything".into())),
            n => Ok(n),
        }
    }
    fn try_read(&mut self, buf: &mut [u8]) -> Result<usize, TransportError> {
        Ok(self.piece(buf))
    }
    fn write_all(&mut self, _data: &[u8], _deadline: Instant) -> Result<(), TransportError> {
        match self.segments.pop_front() {
            Some(s) => {
                self.released.extend(s);
                Ok(())
            }
            None => Err(TransportError::Closed("the device stopped reading".into())),
        }
    }
    fn keepalive(&mut self) -> Result<(), TransportError> {
        Ok(())
    }
    fn close(&mut self, _deadline: Instant) {}
    fn protocol(&self) -> &'static str {
        "replay"
    }
    fn negotiated(&self) -> String {
        String::new()
    }
}

fuzz_target!(|data: &[u8]| {
    let [sel, opts, seed, rest @ ..] = data else {
        return;
    };
    let Some(platform) = platform::lookup(PLATFORMS[usize::from(*sel) % PLATFORMS.len()]) else {
        panic!("an embedded platform is missing");
    };
    let mut segments: VecDeque<Vec<u8>> = rest.split(|b| *b == 0xFF).map(<[u8]>::to_vec).collect();
    let greeting = segments.pop_front().unwrap_or_default();
    let t = Replay {
        released: greeting.into(),
        segments,
        x: u32::from(*seed) | 0x100,
    };

    let password = Secret::new("pw");
    let secret = Secret::new("en-secret");
    let deadline = Instant::now() + Duration::from_secs(30);
    let o = OpenOptions {
        host: "fuzz",
        login: (opts & 1 != 0).then_some(Login {
            username: "admin",
            password: &password,
        }),
        enable_secret: (opts & 2 != 0).then_some(&secret),
        enable_level: (opts & 4 != 0).then_some(15),
        max_output: if opts & 8 != 0 { 64 } else { 1 << 20 },
        deadline,
    };
    let Ok(mut d) = Driver::open(
        Channel::new(Box::new(t), platform.line.clone()),
        platform,
        &o,
    ) else {
        return;
    };

    let regex = |p: &str| platform::compile(p).expect("a valid pattern");
    let mut item = ExecItem::plain("show running-config");
    match (opts >> 4) & 3 {
        0 => {}
        1 => {
            // The seed's interactive form.
            item.cmd = "copy running-config startup-config".into();
            item.interactions.push(Interaction {
                expect: regex(r"\[confirm\]"),
                send: Secret::new("\n"),
                hidden: false,
                from_platform: false,
            });
            item.seed_answer = true;
        }
        2 => {
            item.cmd = "reload".into();
            item.interactions.push(Interaction {
                expect: regex("(?i)password:"),
                send: Secret::new("hunter2\n"),
                hidden: true,
                from_platform: false,
            });
            item.interactions.push(Interaction {
                expect: regex(r"\[confirm\]"),
                send: Secret::new("y\n"),
                hidden: false,
                from_platform: false,
            });
            item.any_order = opts & 0x40 != 0;
        }
        _ => item.expect = Some(regex("(?m)^Success rate")),
    }
    let never = || false;
    if let Ok(r) = d.run(&item, deadline, &never, usize::MAX) {
        assert_eq!(r.command, item.cmd);
        assert!(r.answered <= item.interactions.len());
        if item.interactions.iter().any(|i| i.hidden) {
            assert!(
                !r.output.contains("hunter2"),
                "a hidden answer in the output"
            );
        }
    }
    let _ = d.keepalive(opts & 0x80 != 0, Duration::from_secs(1));
    let _ = d.run(&ExecItem::plain("show clock"), deadline, &never, usize::MAX);
    d.close(deadline);
});
