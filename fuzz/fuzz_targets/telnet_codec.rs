//! The Telnet negotiation and data decoder of `src/transport/telnet.rs` (`Codec`) over an arbitrary
//! byte stream from a device.
//!
//! - Differential: the stream split at arbitrary read boundaries (and byte by byte) decodes to
//!   exactly the data, replies and events of the stream decoded whole.
//! - Bounded: data never grows (IAC IAC and CR NUL shrink), replies are at most 4 bytes per byte
//!   received, and no option is answered more than 8 times (a peer looping on requests cannot make
//!   us loop with it).
//! - The encoder: whatever we send decodes back to itself (LF as CR LF), with nothing to answer.
//!
//! Input: two bytes seeding the read sizes, then the stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netdev_broker::transport::telnet::{encode, Codec};

const IAC: u8 = 255;
const SB: u8 = 250;
const SE: u8 = 240;

struct Decoded {
    data: Vec<u8>,
    reply: Vec<u8>,
    events: Vec<String>,
    agreed: String,
}

fn decode(pieces: impl Iterator<Item = impl AsRef<[u8]>>) -> Decoded {
    let mut c = Codec::default();
    let (mut data, mut reply) = (Vec::new(), Vec::new());
    for p in pieces {
        c.decode(p.as_ref(), &mut data, &mut reply);
    }
    Decoded {
        data,
        reply,
        events: std::mem::take(&mut c.events),
        agreed: c.agreed(),
    }
}

fuzz_target!(|input: &[u8]| {
    let [a, b, stream @ ..] = input else {
        return;
    };
    let whole = decode(std::iter::once(stream));

    // Reads of 1..=32 bytes from a small xorshift seeded by the first two bytes.
    let mut x = u32::from(*a) << 8 | u32::from(*b) | 1;
    let mut cuts = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let n = (x as usize % 32 + 1).min(rest.len());
        cuts.push(&rest[..n]);
        rest = &rest[n..];
    }
    for (how, split) in [
        ("reads", decode(cuts.into_iter())),
        ("bytes", decode(stream.chunks(1))),
    ] {
        assert_eq!(split.data, whole.data, "data, {how}");
        assert_eq!(split.reply, whole.reply, "replies, {how}");
        assert_eq!(split.events, whole.events, "events, {how}");
        assert_eq!(split.agreed, whole.agreed, "agreed, {how}");
    }

    assert!(whole.data.len() <= stream.len());
    assert!(whole.reply.len() <= 4 * stream.len());
    assert!(whole.events.len() <= stream.len());
    // Count our answers per option: IAC verb opt, skipping subnegotiations (IAC SB .. IAC SE).
    let mut answers = [0u32; 256];
    let mut i = 0;
    let r = &whole.reply;
    while i < r.len() {
        assert_eq!(r[i], IAC, "reply out of step at {i}: {r:?}");
        if r.get(i + 1) == Some(&SB) {
            let end = (i + 2..r.len().saturating_sub(1))
                .find(|&j| r[j] == IAC && r[j + 1] == SE)
                .expect("subnegotiation reply ends with IAC SE");
            i = end + 2;
        } else {
            assert!(matches!(r.get(i + 1), Some(251..=254)), "{r:?}");
            answers[usize::from(r[i + 2])] += 1;
            i += 3;
        }
    }
    assert!(
        answers.iter().all(|&n| n <= 8),
        "an option answered more than 8 times"
    );

    // What we send: IAC doubled, LF as CR LF, lone CR as CR NUL; it decodes back, LF as CR LF.
    let sent = decode(std::iter::once(encode(stream)));
    let mut want = Vec::with_capacity(stream.len());
    for (j, &c) in stream.iter().enumerate() {
        if c == b'\n' && (j == 0 || stream[j - 1] != b'\r') {
            want.push(b'\r');
        }
        want.push(c);
    }
    assert_eq!(sent.data, want, "encode then decode");
    assert!(sent.reply.is_empty() && sent.events.is_empty());
});
