//! An in-memory transport that plays a device script, for unit tests of the channel and driver
//! without sockets. Every queued chunk is delivered by its own read, so a test decides exactly
//! how the device's output is split across reads.

use super::{Transport, TransportError};
use std::collections::VecDeque;
use std::time::Instant;

/// What the device does when it receives one write.
pub struct Step {
    pub expect_write: String,
    pub reply: Vec<Vec<u8>>,
}

pub fn step(expect_write: &str, reply: &[&[u8]]) -> Step {
    Step {
        expect_write: expect_write.to_string(),
        reply: reply.iter().map(|c| c.to_vec()).collect(),
    }
}

pub struct Scripted {
    pending: VecDeque<Vec<u8>>,
    steps: VecDeque<Step>,
    pub written: Vec<String>,
    /// After the script, writes are accepted and answered with this (None: connection closed).
    pub then: Option<Vec<u8>>,
}

impl Scripted {
    pub fn new(greeting: &[&[u8]], steps: Vec<Step>) -> Scripted {
        Scripted {
            pending: greeting.iter().map(|c| c.to_vec()).collect(),
            steps: steps.into(),
            written: Vec::new(),
            then: None,
        }
    }
}

impl Transport for Scripted {
    fn read(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize, TransportError> {
        match self.try_read(buf)? {
            0 => {
                // Nothing more will come: block until the deadline, as a socket would.
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                Err(TransportError::Timeout)
            }
            n => Ok(n),
        }
    }
    fn try_read(&mut self, buf: &mut [u8]) -> Result<usize, TransportError> {
        let Some(mut chunk) = self.pending.pop_front() else {
            return Ok(0);
        };
        let n = chunk.len().min(buf.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        if n < chunk.len() {
            self.pending.push_front(chunk.split_off(n));
        }
        Ok(n)
    }
    fn write_all(&mut self, data: &[u8], _deadline: Instant) -> Result<(), TransportError> {
        let text = String::from_utf8_lossy(data).into_owned();
        self.written.push(text.clone());
        match self.steps.pop_front() {
            Some(s) => {
                assert_eq!(
                    text, s.expect_write,
                    "unexpected write (written so far: {:?})",
                    self.written
                );
                self.pending.extend(s.reply);
                Ok(())
            }
            None => match &self.then {
                Some(r) => {
                    self.pending.push_back(r.clone());
                    Ok(())
                }
                None => Err(TransportError::Closed(format!("script over; got {text:?}"))),
            },
        }
    }
    fn keepalive(&mut self) -> Result<(), TransportError> {
        Ok(())
    }
    fn close(&mut self, _deadline: Instant) {}
    fn protocol(&self) -> &'static str {
        "scripted"
    }
    fn negotiated(&self) -> String {
        "scripted".into()
    }
}
