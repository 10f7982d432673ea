//! The channel knows prompts and patterns, not platforms: send a line, read until one of several
//! patterns matches the line the device is waiting on, keep what was read (capped).

pub mod matcher;
pub mod typed;

use crate::transport::{escape_bytes, Trace, Transport, TransportError};
use regex::Regex;
use std::time::{Duration, Instant};
use typed::{LineGuard, LineSyntax, Step};

/// How much of the most recent output is searched for the waiting line.
const TAIL: usize = 4096;
/// Bytes taken from the transport per read (8 KiB: a 100 MiB flood costs 12,800 reads, about
/// 10 ms of CPU); libssh2 holds whole packets in its own buffers anyway. The buffer lives for one
/// [`Channel::read_until`] or [`Channel::drain`] only: kept by every session for its whole life
/// it was 7 KiB of resident memory per held session (calloc'd, so every page touched), where a
/// fresh one costs well under a microsecond per call, and the freed buffers are reused by the
/// next session that reads.
const READ_CHUNK: usize = 8 * 1024;
/// While a command runs, cancellation (DELETE, shutdown) is checked at least this often.
const CANCEL_SLICE: Duration = Duration::from_millis(200);

/// Output accumulated for one command: the first `cap` bytes, plus a rolling tail for matching.
#[derive(Debug, Default)]
pub struct Acc {
    pub kept: Vec<u8>,
    tail: Vec<u8>,
    /// Matching looks only at the tail from here on (moved past an answered question, so the
    /// same question is not answered twice).
    mark: usize,
    /// The echoed command, skipped when searching (so `expect` cannot match the echo).
    echo: Option<String>,
    pub truncated: bool,
    cap: usize,
    /// Pager prompts found in `kept`: (start of the pager line, end of the pager prompt).
    pub pager_cuts: Vec<(usize, usize)>,
    /// Sees every byte as it arrives (a running job's output, read while it runs).
    pub tap: Tap,
}

/// What a [`Tap`] calls with each chunk.
pub type TapFn = std::sync::Arc<dyn Fn(&[u8]) + Send + Sync>;

/// A watcher of the bytes a command's read receives.
#[derive(Clone, Default)]
pub struct Tap(pub Option<TapFn>);

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Tap(on)"
        } else {
            "Tap(off)"
        })
    }
}

impl Acc {
    pub fn new(cap: usize) -> Acc {
        Acc {
            cap,
            ..Default::default()
        }
    }
    pub fn push(&mut self, data: &[u8]) {
        if let Some(t) = &self.tap.0 {
            t(data);
        }
        let room = self.cap.saturating_sub(self.kept.len());
        if data.len() > room {
            self.truncated = true;
        }
        self.kept.extend_from_slice(&data[..data.len().min(room)]);
        // Keep TAIL bytes of history plus all of the newest chunk, so a search pattern is seen
        // even when a large read carries it past the history window.
        if self.tail.len() > TAIL {
            let cut = self.tail.len() - TAIL;
            self.tail.drain(..cut);
            self.mark = self.mark.saturating_sub(cut);
            if self.mark == 0 {
                // The echo (if it was ever there) has scrolled out of the window.
                self.echo = None;
            }
        }
        self.tail.extend_from_slice(data);
    }
    /// The most recent bytes (for carrying the tail over to another accumulator).
    pub fn tail_bytes(&self) -> Vec<u8> {
        self.tail[self.mark..].to_vec()
    }
    /// Match only what arrives from now on (after answering a question or a pager).
    pub fn reset_tail(&mut self) {
        self.mark = self.tail.len();
        self.echo = None;
    }
    /// Searches skip a first line that is this echoed command.
    pub fn expect_echo(&mut self, cmd: &str) {
        self.echo = Some(cmd.trim().to_string()).filter(|c| !c.is_empty());
    }
    fn window(&self) -> String {
        matcher::clean(&self.tail[self.mark..])
    }
    /// The cleaned line the device is currently waiting on.
    pub fn waiting_line(&self) -> String {
        matcher::last_line(&self.window()).to_string()
    }
    /// The cleaned text since the mark, without the echoed command line (empty while the echo
    /// line is still incomplete).
    pub fn search_text(&self) -> String {
        let w = self.window();
        match &self.echo {
            Some(cmd) if w.starts_with(cmd.as_str()) => match w.find('\n') {
                Some(i) => w[i + 1..].to_string(),
                None => String::new(),
            },
            // The echo has only partly arrived.
            Some(cmd) if !w.contains('\n') && cmd.starts_with(w.as_str()) => String::new(),
            _ => w,
        }
    }
    /// Remember that the line the device is waiting on is a pager prompt (removed from output).
    pub fn cut_pager_line(&mut self) {
        if self.truncated {
            return;
        }
        let end = self.kept.len();
        let start = self.kept[..end]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        self.pager_cuts.push((start, end));
    }
}

/// What ends a read.
#[derive(Debug, Clone, Copy)]
pub enum Pat<'a> {
    /// Matches the line the device is waiting on (prompts, pagers, questions).
    Line(&'a Regex),
    /// Matches anywhere in the output since the mark, after the echoed command.
    Search(&'a Regex),
}

impl Pat<'_> {
    fn hit(&self, line: &str, acc: &Acc) -> bool {
        match self {
            Pat::Line(r) => r.is_match(line),
            Pat::Search(r) => r.is_match(&acc.search_text()),
        }
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
    /// The command policy refused a text before any of it was typed (why, naming the step).
    Refused(String),
}

pub struct Channel {
    /// Private: the only writes to the device are [`Channel::send`]'s.
    transport: Box<dyn Transport>,
    /// `telnet-debug`'s line sink: what was sent (secrets masked) and what matched.
    pub trace: Option<Trace>,
    /// Every text typed goes through it: the only way to write to the device.
    guard: LineGuard,
}

impl Channel {
    pub fn new(transport: Box<dyn Transport>, syntax: LineSyntax) -> Channel {
        Channel {
            transport,
            trace: None,
            guard: LineGuard::new(syntax),
        }
    }

    /// The command policy texts are checked against from now on.
    pub fn set_rules(&mut self, rules: std::sync::Arc<crate::policy::CommandRules>) {
        self.guard.set_rules(rules);
    }

    /// The device showed its prompt after the last text typed (see [`LineGuard::settle`]).
    pub fn settle(&mut self) {
        self.guard.settle();
    }

    /// What the transport negotiated.
    pub fn negotiated(&self) -> String {
        self.transport.negotiated()
    }

    /// A transport-level keepalive (SSH); types nothing into the CLI.
    pub fn transport_keepalive(&mut self) -> Result<(), TransportError> {
        self.transport.keepalive()
    }

    /// See [`Transport::wait_fd`].
    pub fn wait_fd(&self) -> Option<std::os::unix::io::RawFd> {
        self.transport.wait_fd()
    }

    /// Close the connection by the deadline.
    pub fn close(&mut self, deadline: Instant) {
        self.transport.close(deadline);
    }

    /// The policy's model of this session's line buffer, to try a plan against before running it.
    pub fn guard(&self) -> &LineGuard {
        &self.guard
    }

    /// Type `data` as `step`: the command policy checks it first ([`LineGuard::admit`]) and
    /// nothing is written when it refuses. Secrets and hidden answers are traced as `********`.
    pub fn send(&mut self, data: &str, step: Step, deadline: Instant) -> Result<(), ReadFail> {
        let admitted = self.guard.admit(data, step).map_err(ReadFail::Refused)?;
        if let Some(t) = &self.trace {
            if let Some(k) = &admitted.kill {
                t(&format!(
                    "[send] \"{}\" (line kill)",
                    escape_bytes(k.as_bytes())
                ));
            }
            if step.hidden() {
                t(&format!("[send] ******** ({})", step.name()));
            } else {
                t(&format!("[send] \"{}\"", escape_bytes(data.as_bytes())));
            }
        }
        let kill = admitted.kill.clone();
        // Recorded before writing: a write cut short may still have reached the device.
        self.guard.commit(admitted);
        if let Some(k) = kill {
            self.transport
                .write_all(k.as_bytes(), deadline)
                .map_err(map_err)?;
        }
        self.transport
            .write_all(data.as_bytes(), deadline)
            .map_err(map_err)
    }

    /// Type the platform's interrupt key (Ctrl-^ on IOS, Ctrl-C elsewhere; platform data, never
    /// a client's text) to stop the running command. No line is typed, so the command policy
    /// has nothing to check; its model of the line buffer is emptied.
    pub fn interrupt(&mut self, deadline: Instant) -> Result<(), ReadFail> {
        let Some(key) = self.guard.syntax().interrupt.clone() else {
            return Err(ReadFail::Refused(
                "the platform has no interrupt key (line.interrupt)".into(),
            ));
        };
        if let Some(t) = &self.trace {
            t(&format!(
                "[send] \"{}\" (interrupt)",
                escape_bytes(key.as_bytes())
            ));
        }
        self.guard.interrupted();
        self.transport
            .write_all(key.as_bytes(), deadline)
            .map_err(map_err)
    }

    /// A line for the trace, if tracing.
    pub fn note(&self, msg: &str) {
        if let Some(t) = &self.trace {
            t(msg);
        }
    }

    /// Read what is already waiting, without blocking, into `acc` (which keeps a rolling tail,
    /// so a prompt at the end of a long backlog is still seen). Stops when nothing is waiting
    /// or at the deadline (a device that never stops talking cannot hold us here). Returns the
    /// number of bytes read.
    pub fn drain(&mut self, acc: &mut Acc, deadline: Instant) -> Result<usize, ReadFail> {
        let mut total = 0;
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = self.transport.try_read(&mut buf).map_err(map_err)?;
            if n == 0 {
                return Ok(total);
            }
            acc.push(&buf[..n]);
            total += n;
            if Instant::now() >= deadline {
                return Ok(total);
            }
        }
    }

    /// Read into `acc` until the waiting line matches one of `patterns`; returns the index of the
    /// first pattern that matched. Line patterns are tried against the last line only.
    pub fn read_until(
        &mut self,
        acc: &mut Acc,
        patterns: &[Pat],
        deadline: Instant,
        cancel: Option<&dyn Fn() -> bool>,
    ) -> Result<usize, ReadFail> {
        let mut buf = Vec::new();
        loop {
            let line = acc.waiting_line();
            if let Some(i) = patterns.iter().position(|p| p.hit(&line, acc)) {
                return Ok(i);
            }
            if cancel.is_some_and(|stop| stop()) {
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
            if buf.is_empty() {
                buf = vec![0u8; READ_CHUNK];
            }
            match self.transport.read(&mut buf, slice_end) {
                Ok(n) => acc.push(&buf[..n]),
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
        assert!(a.tail.len() <= TAIL + 3);
    }

    #[test]
    fn search_skips_the_echo_and_answered_questions() {
        let mut a = Acc::new(1 << 20);
        a.expect_echo("copy run start");
        a.push(b"copy run st");
        assert_eq!(a.search_text(), "");
        a.push(b"art\r\nDestination filename [startup-config]? ");
        assert_eq!(a.search_text(), "Destination filename [startup-config]? ");
        assert_eq!(a.waiting_line(), "Destination filename [startup-config]? ");
        a.reset_tail();
        assert_eq!(a.search_text(), "");
        assert_eq!(a.waiting_line(), "");
        a.push(b"\r\nBuilding configuration...\r\n[OK]\r\nR1#");
        assert_eq!(a.waiting_line(), "R1#");
        assert!(a.search_text().contains("[OK]"));
        // Without an echo everything counts.
        let mut b = Acc::new(10);
        b.push(b"show x\r\nx");
        assert_eq!(b.search_text(), "show x\nx");
    }

    #[test]
    fn a_search_pattern_survives_a_large_chunk() {
        let mut a = Acc::new(16);
        a.push(b"start\n");
        let mut big = b"Success rate is 100 percent\n".to_vec();
        big.extend(std::iter::repeat_n(b'x', 3 * TAIL));
        a.push(&big);
        assert!(a.search_text().contains("Success rate"));
        a.push(b"\nmore");
        assert!(!a.search_text().contains("Success rate"));
    }

    #[test]
    fn pager_lines_are_recorded_for_cutting() {
        let mut a = Acc::new(1 << 20);
        a.push(b"line1\r\nline2\r\n --More-- ");
        a.cut_pager_line();
        assert_eq!(a.pager_cuts, vec![(14, 24)]);
        assert_eq!(&a.kept[14..24], b" --More-- ");
    }
}
