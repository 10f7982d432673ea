//! Transports move bytes and nothing else: read with a deadline, write, keepalive, close.
//! They know nothing of prompts or platforms.

#[cfg(test)]
pub mod scripted;
pub mod ssh;

use std::time::Instant;

#[derive(Debug, Clone, PartialEq)]
pub enum TransportError {
    /// Nothing arrived before the deadline.
    Timeout,
    /// The connection is gone (EOF, reset, protocol error).
    Closed(String),
}

pub trait Transport: Send {
    /// Wait until at least one byte arrives (Ok(n > 0)) or the deadline passes (Err(Timeout)).
    fn read(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize, TransportError>;
    /// Whatever is available right now without waiting (Ok(0) = nothing).
    fn try_read(&mut self, buf: &mut [u8]) -> Result<usize, TransportError>;
    fn write_all(&mut self, data: &[u8], deadline: Instant) -> Result<(), TransportError>;
    /// Protocol-level keepalive (SSH keepalive@openssh.com); detects a dead peer eventually.
    fn keepalive(&mut self) -> Result<(), TransportError>;
    /// Close politely, giving up at the deadline.
    fn close(&mut self, deadline: Instant);
    fn protocol(&self) -> &'static str;
}

/// Host strings go to getaddrinfo and libssh2 (a NUL byte panics the ssh2 crate): accept only
/// hostnames and IP literals.
pub fn validate_host(host: &str) -> Result<&str, String> {
    let h = host.trim();
    let h = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    if h.is_empty() {
        return Err("host must not be empty".into());
    }
    if h.len() > 253 {
        return Err("host is longer than 253 characters".into());
    }
    if h.parse::<std::net::IpAddr>().is_ok() {
        return Ok(h);
    }
    let ok = h.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if ok {
        Ok(h)
    } else {
        Err(format!(
            "host {:?} is not a valid hostname or IP address",
            host.escape_debug().to_string()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::validate_host;

    #[test]
    fn hosts_are_validated() {
        for ok in [
            "10.0.0.1",
            "::1",
            "[::1]",
            "sw1.lab.example",
            "core_sw-01",
            "fe80::1",
        ] {
            assert!(validate_host(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            " ",
            "a\0b",
            "a b",
            "sw1..lab",
            "a/b",
            "x;rm",
            "é.example",
            &"a".repeat(300),
        ] {
            assert!(validate_host(bad).is_err(), "{bad:?}");
        }
    }
}
