//! The channel knows prompts and patterns, not platforms: send a line, read until one of several
//! patterns matches the line the device is waiting on, keep what was read (capped).

pub mod matcher;

use crate::transport::{Transport, TransportError};
use regex::Regex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How much of the most recent output is searched for the waiting line.
const TAIL: usize = 4096;
/// While a command runs, cancellation (DELETE, shutdown) is checked at least this often.
const CANCEL_SLICE: Duration = Duration::from_millis(200);

/// Output accumulated for one command: the first `cap` bytes, plus a rolling tail for matching.
#[derive(Debug, Default)]
pub struct Acc {
    pub kept: Vec<u8>,
    tail: Vec<u8>,
    pub truncated: bool,
    cap: usize,
}

impl Acc {
    pub fn new(cap: usize) -> Acc {
        Acc {
            cap,
            ..Default::default()
        }
    }
    pub fn push(&mut self, data: &[u8]) {
        let room = self.cap.saturating_sub(self.kept.len());
        if data.len() > room {
            self.truncated = true;
        }
        self.kept.extend_from_slice(&data[..data.len().min(room)]);
        self.tail.extend_from_slice(data);
        if self.tail.len() > 2 * TAIL {
            self.tail.drain(..self.tail.len() - TAIL);
        }
    }
    /// The most recent bytes (for carrying the tail over to another accumulator).
    pub fn tail_bytes(&self) -> Vec<u8> {
        self.tail.clone()
    }
    /// Forget the tail (after answering a question, so the same question is not matched twice).
    pub fn reset_tail(&mut self) {
        self.tail.clear();
    }
    /// The cleaned line the device is currently waiting on.
    pub fn waiting_line(&self) -> String {
        let start = self.tail.len().saturating_sub(TAIL);
        matcher::last_line(&matcher::clean(&self.tail[start..])).to_string()
    }
}

#[derive(Debug)]
pub enum ReadFail {
    /// The deadline passed.
    Timeout,
    /// The connection is gone.
    Closed(String),
    /// The session is being closed.
    Cancelled,
}

pub struct Channel {
    pub transport: Box<dyn Transport>,
    buf: Vec<u8>,
}

impl Channel {
    pub fn new(transport: Box<dyn Transport>) -> Channel {
        Channel {
            transport,
            buf: vec![0u8; 32 * 1024],
        }
    }

    pub fn send(&mut self, data: &str, deadline: Instant) -> Result<(), ReadFail> {
        self.transport
            .write_all(data.as_bytes(), deadline)
            .map_err(map_err)
    }

    /// Read what is already waiting, without blocking, into `acc` (which keeps a rolling tail,
    /// so a prompt at the end of a long backlog is still seen). Stops when nothing is waiting
    /// or at the deadline (a device that never stops talking cannot hold us here). Returns the
    /// number of bytes read.
    pub fn drain(&mut self, acc: &mut Acc, deadline: Instant) -> Result<usize, ReadFail> {
        let mut total = 0;
        loop {
            let n = self.transport.try_read(&mut self.buf).map_err(map_err)?;
            if n == 0 {
                return Ok(total);
            }
            acc.push(&self.buf[..n]);
            total += n;
            if Instant::now() >= deadline {
                return Ok(total);
            }
        }
    }

    /// Read into `acc` until the waiting line matches one of `patterns`; returns the index of the
    /// first pattern that matched. Patterns are tried against the last line only.
    pub fn read_until(
        &mut self,
        acc: &mut Acc,
        patterns: &[&Regex],
        deadline: Instant,
        cancel: Option<&AtomicBool>,
    ) -> Result<usize, ReadFail> {
        loop {
            let line = acc.waiting_line();
            if let Some(i) = patterns.iter().position(|p| p.is_match(&line)) {
                return Ok(i);
            }
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(ReadFail::Cancelled);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ReadFail::Timeout);
            }
            let slice_end = if cancel.is_some() {
                deadline.min(now + CANCEL_SLICE)
            } else {
                deadline
            };
            match self.transport.read(&mut self.buf, slice_end) {
                Ok(n) => acc.push(&self.buf[..n]),
                Err(TransportError::Timeout) => continue,
                Err(e) => return Err(map_err(e)),
            }
        }
    }
}

fn map_err(e: TransportError) -> ReadFail {
    match e {
        TransportError::Timeout => ReadFail::Timeout,
        TransportError::Closed(m) => ReadFail::Closed(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acc_caps_kept_output_but_keeps_matching_the_tail() {
        let mut a = Acc::new(10);
        a.push(b"0123456789abcdef\r\n");
        for _ in 0..1000 {
            a.push(b"more output line\r\n");
        }
        a.push(b"R1#");
        assert_eq!(a.kept, b"0123456789");
        assert!(a.truncated);
        assert_eq!(a.waiting_line(), "R1#");
        assert!(a.tail.len() <= 2 * TAIL);
    }
}
