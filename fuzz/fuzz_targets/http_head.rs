//! The HTTP/1.1 framing of `src/http/framing.rs` over arbitrary client bytes: where the head ends (found
//! at once, or across reads as the connection scans), the head parser, and the chunked body
//! decoder fed whole or in pieces. Nothing may panic; the pieces must decide exactly as the
//! whole does; every accepted head and body must respect the limits.
//!
//! Input: one byte choosing the read size (1..=64), then the bytes a client sends.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netdev_broker::http::{find_head_end, parse_head, ChunkedBody, Refusal};

/// The body limit used here (the broker's default is 1 MiB; small finds the limit paths).
const MAX_BODY: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 64) + 1;

    // The connection scans for the end of the head from 3 bytes before what it had already
    // searched; that must find the same end as one search over everything.
    let whole = find_head_end(data, 0);
    let (mut have, mut scanned, mut found) = (0, 0, None);
    while have < data.len() {
        have = (have + step).min(data.len());
        if let Some(e) = find_head_end(&data[..have], scanned) {
            found = Some(e);
            break;
        }
        scanned = have.saturating_sub(3);
    }
    assert_eq!(found, whole, "incremental head end");

    // The head is parsed with its blank line (httparse wants a complete head); one without
    // an end is never accepted.
    let (head, rest) = match whole {
        Some((end, skip)) => data.split_at(end + skip),
        None => (data, &[][..]),
    };
    let parsed = parse_head(head);
    assert!(
        whole.is_some() || parsed.is_err(),
        "accepted a head without an end"
    );
    if let Ok(h) = parsed {
        assert!(!h.method.is_empty() && h.method.bytes().all(|b| b > b' ' && b < 0x7f));
        assert!(h.target.starts_with('/'));
        assert!(!h.target.bytes().any(|b| b <= b' ' || b == 0x7f));
        assert!(h.minor <= 1);
        assert!(h.headers.len() <= 100);
        for (k, v) in &h.headers {
            assert!(!k.is_empty() && !k.contains([':', ' ', '\t', '\r', '\n']));
            assert!(!v.contains(['\r', '\0']));
            assert_eq!(v.trim(), v);
        }
    }

    // The chunked body decoder: all at once, and read by read.
    let one = decode(rest, rest.len().max(1));
    let split = decode(rest, step);
    assert_eq!(one, split, "chunked body whole vs in pieces of {step}");
    if let (Ok(Some(body)), _) = &one {
        assert!(body.len() <= MAX_BODY);
    }
});

/// Feed `wire` to a fresh decoder `step` bytes at a time, as reads deliver them. Returns the
/// decision and how many bytes of `wire` it used (what remains is the next request's).
fn decode(wire: &[u8], step: usize) -> (Result<Option<Vec<u8>>, Refusal>, usize) {
    let mut d = ChunkedBody::new(MAX_BODY);
    let mut buf = Vec::new();
    let mut given = 0;
    for piece in wire.chunks(step) {
        buf.extend_from_slice(piece);
        given += piece.len();
        match d.feed(&mut buf) {
            Ok(None) => {}
            Ok(Some(body)) => return (Ok(Some(body)), given - buf.len()),
            // After an error the connection is closed: what was used does not matter.
            Err(e) => return (Err(e), 0),
        }
        // Data is taken as it comes; only an unfinished line (at most the trailer line limit
        // and its CR) waits in the buffer.
        assert!(buf.len() <= 8192 + 1, "{} bytes buffered", buf.len());
    }
    (Ok(None), 0)
}
