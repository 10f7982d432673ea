//! HTTP/1.1 framing without a socket: request heads (parsed by httparse), chunked request
//! bodies (RFC 9112 section 7.1), header lookups and reason phrases. Pure, fuzzed by
//! fuzz/fuzz_targets/http_head.rs.

use crate::api::error::Error;

/// Longest chunk-size line (with extensions) and longest trailer line of a chunked body.
const CHUNK_LINE_MAX: usize = 1024;
const TRAILER_LINE_MAX: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// This many bytes of chunk data still to come.
    Data(usize),
    /// Expecting the line break after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty one.
    Trailer,
    Done,
}

/// What a request is refused with (its status and detail come from `api/error.rs`).
pub type Refusal = Error;

/// A chunked request body (RFC 9112 §7.1) decoded as its bytes arrive, independent of the socket
/// (fuzzed by fuzz/fuzz_targets/http_head.rs). The body is capped at `max` bytes.
#[derive(Debug)]
pub struct ChunkedBody {
    max: usize,
    body: Vec<u8>,
    state: ChunkState,
}

impl ChunkedBody {
    pub fn new(max: usize) -> ChunkedBody {
        ChunkedBody {
            max,
            body: Vec::new(),
            state: ChunkState::Size,
        }
    }

    /// Decode what `buf` holds, removing the bytes used (what follows the body stays, for the
    /// next request). Ok(Some(body)): complete; Ok(None): more bytes are needed; Err: the status
    /// and detail to answer with. `buf` is shifted once per call, so the cost stays linear
    /// however small the chunks.
    pub fn feed(&mut self, buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>, Refusal> {
        let mut pos = 0;
        let r = self.decode(buf, &mut pos);
        buf.drain(..pos);
        r
    }

    fn decode(&mut self, buf: &[u8], pos: &mut usize) -> Result<Option<Vec<u8>>, Refusal> {
        loop {
            let rest = &buf[*pos..];
            match self.state {
                ChunkState::Size => {
                    let start = *pos;
                    if take_line(rest, CHUNK_LINE_MAX, pos)?.is_none() {
                        return Ok(None);
                    }
                    let size = chunk_size(&buf[start..*pos])?;
                    if size == 0 {
                        self.state = ChunkState::Trailer;
                    } else if self.body.len().saturating_add(size) > self.max {
                        return Err(Error::PayloadTooLarge(self.max));
                    } else {
                        self.state = ChunkState::Data(size);
                    }
                }
                ChunkState::Data(left) => {
                    if rest.is_empty() {
                        return Ok(None);
                    }
                    let n = left.min(rest.len());
                    self.body.extend_from_slice(&rest[..n]);
                    *pos += n;
                    self.state = if n == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - n)
                    };
                }
                ChunkState::DataEnd => match rest {
                    [b'\n', ..] => {
                        *pos += 1;
                        self.state = ChunkState::Size;
                    }
                    [b'\r', b'\n', ..] => {
                        *pos += 2;
                        self.state = ChunkState::Size;
                    }
                    [] | [b'\r'] => return Ok(None),
                    _ => return Err(Error::Framing("chunk not followed by CRLF".into())),
                },
                ChunkState::Trailer => {
                    let Some(line) = take_line(rest, TRAILER_LINE_MAX, pos)? else {
                        return Ok(None);
                    };
                    if line.is_empty() {
                        self.state = ChunkState::Done;
                        return Ok(Some(std::mem::take(&mut self.body)));
                    }
                }
                ChunkState::Done => return Ok(Some(Vec::new())),
            }
        }
    }
}

/// The line at the start of `rest` without its LF or CRLF, advancing `pos` past it; None while
/// its end has not arrived; an error once it is longer than `max` bytes.
fn take_line<'a>(rest: &'a [u8], max: usize, pos: &mut usize) -> Result<Option<&'a [u8]>, Refusal> {
    let too_long = || Error::Framing("chunk header line too long".into());
    // A line of `max` bytes ends within max + 2 (CR LF).
    let Some(i) = rest.iter().take(max + 2).position(|b| *b == b'\n') else {
        return if rest.len() >= max + 2 {
            Err(too_long())
        } else {
            Ok(None)
        };
    };
    let line = &rest[..i];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > max {
        return Err(too_long());
    }
    *pos += i + 1;
    Ok(Some(line))
}

/// A chunk-size line with its line end: hex digits (at most 8), optionally followed by
/// `;extensions`, as `httparse::parse_chunk_size` reads it. That wants CRLF; a bare LF is
/// accepted here, as in the head.
fn chunk_size(line: &[u8]) -> Result<usize, Refusal> {
    let bad = || Error::Framing("invalid chunk size".into());
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if !(1..=8).contains(&digits) {
        return Err(bad());
    }
    let crlf;
    let line = if line.ends_with(b"\r\n") {
        line
    } else {
        crlf = [line.strip_suffix(b"\n").unwrap_or(line), b"\r\n"].concat();
        &crlf
    };
    match httparse::parse_chunk_size(line) {
        Ok(httparse::Status::Complete((n, size))) if n == line.len() => {
            usize::try_from(size).map_err(|_| bad())
        }
        _ => Err(bad()),
    }
}

/// Position of the end of the head and the length of the terminator, searching from `from`.
pub fn find_head_end(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some((i, 2));
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some((i, 3));
            }
        }
        i += 1;
    }
    None
}

/// A parsed head: method, target, version minor (0 or 1), headers.
pub struct Head {
    pub method: String,
    pub target: String,
    pub minor: u8,
    pub headers: Vec<(String, String)>,
}

/// Header fields a request may carry.
const MAX_HEADERS: usize = 100;

/// Parse a complete request head, blank line included (no socket involved; fuzzable). The
/// syntax is httparse's (strict: no obsolete folding, no blanks around names, no control
/// characters); every field is kept as text, so a head that is not UTF-8 is refused whole.
pub fn parse_head(raw: &[u8]) -> Result<Head, String> {
    std::str::from_utf8(raw).map_err(|_| "request head is not valid UTF-8".to_string())?;
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(raw) {
        Ok(httparse::Status::Complete(n)) if n == raw.len() => {}
        Ok(_) => return Err("incomplete request head".into()),
        Err(e) => {
            return Err(match e {
                httparse::Error::Token => "malformed method",
                httparse::Error::Version => "unsupported HTTP version",
                httparse::Error::HeaderName => "malformed header line",
                httparse::Error::HeaderValue => "invalid character in header value",
                httparse::Error::TooManyHeaders => "too many header fields",
                _ => "malformed request line",
            }
            .into())
        }
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err("malformed request line".into());
    };
    // Origin form only: no `*`, no absolute URI.
    if !target.starts_with('/') {
        return Err("malformed request target".into());
    }
    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).map_err(|_| "invalid header value")?;
        headers.push((h.name.to_string(), value.trim().to_string()));
    }
    Ok(Head {
        method: method.to_string(),
        target: target.to_string(),
        minor,
        headers,
    })
}

pub(super) fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub(super) fn has_token(h: &[(String, String)], name: &str, token: &str) -> bool {
    h.iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        202 => "Accepted",
        201 => "Created",
        204 => "No Content",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn parses_heads() {
        let h =
            parse_head(b"POST /session HTTP/1.1\r\nHost: x\r\nX-API-Token:  abc \r\n\r\n").unwrap();
        assert_eq!(h.method, "POST");
        assert_eq!(h.target, "/session");
        assert_eq!(h.minor, 1);
        assert_eq!(header(&h.headers, "x-api-token"), Some("abc"));
        let h = parse_head(b"GET /a?b=c HTTP/1.0\nX: 1\n\n").unwrap();
        assert_eq!((h.target.as_str(), h.minor), ("/a?b=c", 0));
        let bad: &[&[u8]] = &[
            b"GET / HTTP/2.0",
            b"GET  / HTTP/1.1",
            b"GET /a b HTTP/1.1",
            b"GET noslash HTTP/1.1",
            b"GET * HTTP/1.1",
            b"G\x00T / HTTP/1.1",
            b"GET / HTTP/1.1\r\n folded",
            b"GET / HTTP/1.1\r\nno colon",
            b"GET / HTTP/1.1\r\nBad Name: x",
            b"GET / HTTP/1.1\r\nName : x",
            b"GET / HTTP/1.1\r\nX: a\x00b",
            b"GET / HTTP/1.1\r\nX: a\rb",
            b"GET / HTTP/1.1\r\nX: \xff",
            b"\xff\xfe / HTTP/1.1",
        ];
        for b in bad {
            let whole = [b, &b"\r\n\r\n"[..]].concat();
            assert!(
                parse_head(&whole).is_err(),
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
        // Only a complete head is parsed.
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n").is_err());
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X{i}: v\r\n")).collect();
        assert!(parse_head(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()).is_err());
    }

    #[test]
    fn finds_head_end_with_either_line_ending() {
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\r\n\r\nbody", 0),
            Some((15, 3))
        );
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\nbody", 0), Some((14, 2)));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n", 0), None);
    }

    /// Decode `wire` fed in pieces of `step` bytes (0: all at once); the leftover bytes too.
    fn chunked(
        wire: &[u8],
        max: usize,
        step: usize,
    ) -> (Result<Option<Vec<u8>>, Refusal>, Vec<u8>) {
        let mut d = ChunkedBody::new(max);
        let mut buf = Vec::new();
        let step = if step == 0 { wire.len().max(1) } else { step };
        for piece in wire.chunks(step) {
            buf.extend_from_slice(piece);
            match d.feed(&mut buf) {
                Ok(None) => continue,
                r => return (r, buf),
            }
        }
        (Ok(None), buf)
    }

    #[test]
    fn chunked_bodies_decode_however_they_are_split() {
        let wire =
            b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nGET";
        for step in [0, 1, 2, 3, 7] {
            let (r, rest) = chunked(wire, 1024, step);
            assert_eq!(
                r,
                Ok(Some(b"Wikipedia in \r\n\r\nchunks.".to_vec())),
                "step {step}"
            );
            // The next request's bytes stay in the buffer.
            assert!(b"GET".starts_with(&rest), "step {step}: {rest:?}");
            if step == 0 {
                assert_eq!(rest, b"GET");
            }
        }
        // Bare LF line ends are accepted, as in the head.
        assert_eq!(chunked(b"1\nx\n0\n\n", 10, 1).0, Ok(Some(b"x".to_vec())));
        // Incomplete: more bytes needed, nothing decided.
        assert_eq!(chunked(b"5\r\nabc", 10, 0).0, Ok(None));
        assert_eq!(chunked(b"3\r\nabc\r", 10, 0).0, Ok(None));
    }

    #[test]
    fn chunked_bodies_are_bounded() {
        let status = |wire: &[u8], max: usize| match chunked(wire, max, 1).0 {
            Err(e) => e.status(),
            other => panic!("{other:?}"),
        };
        assert_eq!(status(b"5\r\nabcde\r\n0\r\n\r\n", 4), 413);
        assert_eq!(status(b"3\r\nabc\r\n3\r\nabc\r\n0\r\n\r\n", 5), 413);
        assert_eq!(status(b"zz\r\n", 10), 400);
        assert_eq!(status(b"123456789\r\n", 10), 400);
        assert_eq!(status(b"\r\n", 10), 400);
        assert_eq!(status(b" 5\r\nabcde\r\n0\r\n\r\n", 10), 400);
        assert_eq!(status(b"5x\r\nabcde\r\n0\r\n\r\n", 10), 400);
        assert_eq!(status(b"3\r\nabcX\r\n", 10), 400);
        // A size line, or a trailer line, that never ends is refused once over its limit.
        let mut long = b"1".to_vec();
        long.extend(std::iter::repeat_n(b' ', CHUNK_LINE_MAX + 1));
        assert_eq!(status(&long, 10), 400);
        let mut trailer = b"0\r\nX: ".to_vec();
        trailer.extend(std::iter::repeat_n(b'y', TRAILER_LINE_MAX));
        assert_eq!(status(&trailer, 10), 400);
        // Exactly at the limits is fine.
        let mut ok = b"1".to_vec();
        ok.extend(std::iter::repeat_n(b' ', CHUNK_LINE_MAX - 1));
        ok.extend(b"\r\nz\r\n0\r\n\r\n");
        assert_eq!(chunked(&ok, 10, 5).0, Ok(Some(b"z".to_vec())));
    }

    #[test]
    fn tiny_chunks_cost_linear_time() {
        // 256 KiB of one-byte chunks (1.5 MiB on the wire) arriving 8 KiB at a time, as the
        // socket reads them. The buffer is shifted once per read, not once per line: the old
        // per-line shifting moved ~12 GB for a 1 MiB body of such chunks.
        let n = 256 * 1024;
        let mut wire = Vec::with_capacity(6 * n + 5);
        for _ in 0..n {
            wire.extend_from_slice(b"1\r\nx\r\n");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        let t = Instant::now();
        let (r, _) = chunked(&wire, 1 << 20, 8192);
        assert_eq!(r.map(|b| b.map(|b| b.len())), Ok(Some(n)));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
}
