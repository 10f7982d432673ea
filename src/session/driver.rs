//! The driver knows platforms: how to find the first prompt, reach enable, turn paging off, run a
//! command and tell where its output ends, and how to leave. Everything platform-specific comes
//! from the [`Platform`] table.

use crate::channel::{matcher, Acc, Channel, ReadFail};
use crate::error::Error;
use crate::platform::{Pager, Platform};
use crate::secret::Secret;
use regex::Regex;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// One item of an exec request.
#[derive(Debug, Clone)]
pub struct ExecItem {
    pub cmd: String,
    /// Regex of a question to answer with `send_newlines` newlines (the seed's interactive form).
    pub answer: Option<Regex>,
    pub send_newlines: usize,
    /// Read deadline for this command (overrides the exec's).
    pub timeout: Option<Duration>,
}

impl ExecItem {
    pub fn plain(cmd: &str) -> ExecItem {
        ExecItem {
            cmd: cmd.to_string(),
            answer: None,
            send_newlines: 0,
            timeout: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CmdResult {
    pub command: String,
    pub output: String,
    pub elapsed_ms: u64,
    pub truncated: bool,
    /// The platform's failure indicator found in the output, if any.
    pub failure: Option<String>,
}

#[derive(Debug)]
pub enum CmdFail {
    /// The prompt did not return by the deadline; the session waits for it before the next command.
    Timeout { partial: String, truncated: bool },
    /// The connection died.
    Closed { partial: String, reason: String },
    /// The session is being closed.
    Cancelled { partial: String },
    /// An earlier command timed out and the prompt still has not come back.
    Desynced { since: String },
}

pub struct Driver {
    chan: Channel,
    platform: &'static Platform,
    prompt: Regex,
    base: String,
    pub mode: String,
    /// Set when a command timed out: the command after which the prompt has not come back.
    awaiting_prompt: Option<String>,
    /// What arrived since that timeout (rolling tail only): where the prompt will show up.
    resync: Acc,
    max_output: usize,
}

const OPEN_OUTPUT_CAP: usize = 256 * 1024;
/// Longest time spent reading unsolicited output before a command or on an idle check.
const DRAIN_TIME: Duration = Duration::from_secs(2);

fn open_fail(what: &str, host: &str, f: ReadFail, acc: &Acc) -> Error {
    match f {
        ReadFail::Timeout => Error::OpenTimeout(format!(
            "{what} on {host}: no prompt before the deadline (last line received: {:?})",
            acc.waiting_line()
        )),
        ReadFail::Closed(m) => Error::Connect(format!("{what} on {host}: {m}")),
        ReadFail::Cancelled => Error::Connect(format!("{what} on {host}: cancelled")),
    }
}

impl Driver {
    /// Find the first prompt, enter privileged mode if asked (or if the device needs no password),
    /// and run the platform's on-open commands. Everything must finish by `deadline`.
    pub fn open(
        chan: Channel,
        platform: &'static Platform,
        host: &str,
        enable_secret: Option<&Secret>,
        max_output: usize,
        deadline: Instant,
    ) -> Result<Driver, Error> {
        let mut d = Driver {
            chan,
            platform,
            prompt: platform.generic_prompt.clone(),
            base: String::new(),
            mode: String::new(),
            awaiting_prompt: None,
            resync: Acc::new(0),
            max_output,
        };
        let mut acc = Acc::new(OPEN_OUTPUT_CAP);
        d.chan
            .read_until(&mut acc, &[&platform.generic_prompt], deadline, None)
            .map_err(|f| open_fail("waiting for the first prompt", host, f, &acc))?;
        d.learn(&acc.waiting_line())?;
        if let Some(en) = &platform.enable {
            if d.mode == en.from_mode {
                d.enable(host, enable_secret, deadline)?;
            }
        }
        for cmd in &platform.on_open {
            // Matched against the platform's generic prompt and learned again afterwards, so a
            // banner that looked like a prompt cannot leave us with a wrong one.
            match d.run_inner(&ExecItem::plain(cmd), deadline, None, true) {
                Ok(r) => {
                    if let Some(f) = r.failure {
                        log::warn!("{host}: on-open command {cmd:?} was refused ({f})");
                    }
                }
                Err(CmdFail::Timeout { .. }) | Err(CmdFail::Desynced { .. }) => {
                    return Err(Error::OpenTimeout(format!(
                        "{host}: no prompt after {cmd:?} before the deadline"
                    )));
                }
                Err(CmdFail::Closed { reason, .. }) => {
                    return Err(Error::Connect(format!("{host}: {reason}")))
                }
                Err(CmdFail::Cancelled { .. }) => {
                    return Err(Error::Connect(format!("{host}: cancelled")))
                }
            }
        }
        Ok(d)
    }

    /// Learn the hostname part of the prompt and the mode from a prompt line.
    fn learn(&mut self, line: &str) -> Result<(), Error> {
        let base = self
            .platform
            .generic_prompt
            .captures(line)
            .and_then(|c| c.name("base"))
            .map(|m| m.as_str().to_string())
            .ok_or_else(|| Error::Connect(format!("cannot make out the prompt in {line:?}")))?;
        self.prompt = self
            .platform
            .learned_prompt(&base)
            .map_err(Error::Internal)?;
        self.base = base;
        self.mode = self.platform.mode_of(line).unwrap_or("unknown").to_string();
        Ok(())
    }

    pub fn prompt_base(&self) -> &str {
        &self.base
    }

    fn enable(
        &mut self,
        host: &str,
        secret: Option<&Secret>,
        deadline: Instant,
    ) -> Result<(), Error> {
        let Some(en) = &self.platform.enable else {
            return Ok(());
        };
        let mut acc = Acc::new(OPEN_OUTPUT_CAP);
        let fail = |f, acc: &Acc| open_fail("entering privileged mode", host, f, acc);
        self.chan
            .send(&format!("{}\n", en.command), deadline)
            .map_err(|f| fail(f, &acc))?;
        let pats = [&self.prompt, &en.password_prompt];
        let mut asked = self
            .chan
            .read_until(&mut acc, &pats, deadline, None)
            .map_err(|f| fail(f, &acc))?
            == 1;
        let mut rejected = false;
        if asked {
            match secret.filter(|s| !s.is_empty()) {
                Some(s) => {
                    // The secret is written to the device only; it never reaches a log.
                    let mut line = String::with_capacity(s.expose().len() + 1);
                    line.push_str(s.expose());
                    line.push('\n');
                    acc.reset_tail();
                    let sent = self.chan.send(&line, deadline);
                    zeroize::Zeroize::zeroize(&mut line);
                    sent.map_err(|f| fail(f, &acc))?;
                    asked = self
                        .chan
                        .read_until(&mut acc, &pats, deadline, None)
                        .map_err(|f| fail(f, &acc))?
                        == 1;
                    rejected = asked;
                }
                None => log::info!(
                    "{host}: enable asks for a password and none was given; staying in user mode"
                ),
            }
            // Leave the password question with empty answers (never a [confirm]: safe).
            let mut tries = 0;
            while asked && tries < 3 {
                tries += 1;
                acc.reset_tail();
                self.chan.send("\n", deadline).map_err(|f| fail(f, &acc))?;
                asked = self
                    .chan
                    .read_until(&mut acc, &pats, deadline, None)
                    .map_err(|f| fail(f, &acc))?
                    == 1;
            }
        }
        let line = acc.waiting_line();
        self.mode = self
            .platform
            .mode_of(&line)
            .unwrap_or("unknown")
            .to_string();
        let text = matcher::clean(&acc.kept);
        let failure = en.failures.iter().find(|f| text.contains(f.as_str()));
        if rejected || (secret.is_some_and(|s| !s.is_empty()) && self.mode != en.mode) {
            return Err(Error::DeviceAuth(format!(
                "{host} refused the enable password{}",
                failure.map(|f| format!(" ({f})")).unwrap_or_default()
            )));
        }
        Ok(())
    }

    /// Run one command; see [`CmdFail`] for what can go wrong.
    pub fn run(
        &mut self,
        item: &ExecItem,
        deadline: Instant,
        cancel: &AtomicBool,
    ) -> Result<CmdResult, CmdFail> {
        self.run_inner(item, deadline, Some(cancel), false)
    }

    fn run_inner(
        &mut self,
        item: &ExecItem,
        deadline: Instant,
        cancel: Option<&AtomicBool>,
        relearn: bool,
    ) -> Result<CmdResult, CmdFail> {
        let started = Instant::now();
        // Unsolicited console output (syslog lines) is not part of this command's output.
        let drained = self
            .absorb_waiting(deadline.min(Instant::now() + DRAIN_TIME))
            .map_err(|f| fail_of(f, String::new()))?;
        if drained > 0 {
            log::debug!(
                "drained {drained} bytes of unsolicited output before {:?}",
                self.base
            );
        }
        if let Some(since) = self.awaiting_prompt.clone() {
            match self
                .chan
                .read_until(&mut self.resync, &[&self.prompt], deadline, cancel)
            {
                Ok(_) => self.awaiting_prompt = None,
                Err(ReadFail::Timeout) => return Err(CmdFail::Desynced { since }),
                Err(f) => return Err(fail_of(f, String::new())),
            }
        }
        if cancel.is_some_and(|c| c.load(std::sync::atomic::Ordering::SeqCst)) {
            // Closed (DELETE, shutdown) before this command was sent: do not send it.
            return Err(CmdFail::Cancelled {
                partial: String::new(),
            });
        }
        let relearn = relearn
            || self
                .platform
                .prompt_changes
                .iter()
                .any(|r| r.is_match(&item.cmd));
        let prompt = if relearn {
            self.platform.generic_prompt.clone()
        } else {
            self.prompt.clone()
        };
        let mut pats: Vec<&Regex> = vec![&prompt];
        pats.extend(self.platform.pagers.iter().map(|p| &p.pattern));
        let answer_idx = item.answer.as_ref().map(|a| {
            pats.push(a);
            pats.len() - 1
        });
        let mut answered = false;
        let mut acc = Acc::new(self.max_output);
        self.chan
            .send(&format!("{}\n", item.cmd), deadline)
            .map_err(|f| fail_of(f, String::new()))?;
        loop {
            let active: Vec<&Regex> = pats
                .iter()
                .enumerate()
                .filter(|(i, _)| !(answered && Some(*i) == answer_idx))
                .map(|(_, r)| *r)
                .collect();
            let hit = match self.chan.read_until(&mut acc, &active, deadline, cancel) {
                Ok(i) => i,
                Err(f) => {
                    let partial = self.finish_output(&acc, &item.cmd, &prompt);
                    if matches!(f, ReadFail::Timeout) {
                        self.awaiting_prompt = Some(item.cmd.clone());
                        self.resync = Acc::new(0);
                        self.resync.push(&acc.tail_bytes());
                        return Err(CmdFail::Timeout {
                            partial,
                            truncated: acc.truncated,
                        });
                    }
                    return Err(fail_of(f, partial));
                }
            };
            if hit == 0 {
                break;
            }
            let hit_re = active[hit];
            if Some(hit_re.as_str()) == item.answer.as_ref().map(|a| a.as_str()) && !answered {
                answered = true;
                acc.reset_tail();
                let nl = "\n".repeat(item.send_newlines);
                self.chan
                    .send(&nl, deadline)
                    .map_err(|f| fail_of(f, String::new()))?;
                continue;
            }
            if let Some(Pager { send, .. }) = self
                .platform
                .pagers
                .iter()
                .find(|p| p.pattern.as_str() == hit_re.as_str())
            {
                acc.reset_tail();
                self.chan
                    .send(send, deadline)
                    .map_err(|f| fail_of(f, String::new()))?;
            }
        }
        let line = acc.waiting_line();
        if relearn {
            if let Err(e) = self.learn(&line) {
                log::warn!("could not learn the prompt again after {:?}: {e}", item.cmd);
            }
        } else {
            self.mode = self
                .platform
                .mode_of(&line)
                .unwrap_or("unknown")
                .to_string();
        }
        let output = self.finish_output(&acc, &item.cmd, &prompt);
        let failure = self.platform.failure_in(&output).map(|s| s.to_string());
        Ok(CmdResult {
            command: item.cmd.clone(),
            output,
            elapsed_ms: started.elapsed().as_millis() as u64,
            truncated: acc.truncated,
            failure,
        })
    }

    /// Output as Netmiko's send_command returns it: cleaned, without the echoed command, the
    /// trailing prompt, or pager prompts.
    fn finish_output(&self, acc: &Acc, cmd: &str, prompt: &Regex) -> String {
        let text = matcher::clean(&acc.kept);
        let text = matcher::strip_echo(&text, cmd);
        let text = if acc.truncated {
            text
        } else {
            matcher::strip_prompt(text, |l| prompt.is_match(l))
        };
        if self.platform.pagers.is_empty() {
            return text.to_string();
        }
        text.split('\n')
            .filter(|l| !self.platform.pagers.iter().any(|p| p.pattern.is_match(l)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Read what is waiting. While a timed-out command's prompt is awaited it goes into the
    /// resync tail, and the wait ends as soon as the prompt is there; otherwise it is unsolicited
    /// output and is dropped.
    fn absorb_waiting(&mut self, deadline: Instant) -> Result<usize, ReadFail> {
        if self.awaiting_prompt.is_none() {
            return self.chan.drain(&mut Acc::new(0), deadline);
        }
        let n = self.chan.drain(&mut self.resync, deadline)?;
        if self.prompt.is_match(&self.resync.waiting_line()) {
            log::info!(
                "the prompt is back after {:?} timed out",
                self.awaiting_prompt.take().unwrap_or_default()
            );
        }
        Ok(n)
    }

    /// Check the connection while idle: read what is waiting (device gone = error) and send an
    /// SSH-level keepalive. Never writes to the device's CLI.
    pub fn poll_alive(&mut self) -> Result<(), String> {
        match self.absorb_waiting(Instant::now() + DRAIN_TIME) {
            Ok(_) => {}
            Err(ReadFail::Closed(m)) => return Err(m),
            Err(_) => {}
        }
        self.chan
            .transport
            .keepalive()
            .map_err(|e| format!("{e:?}"))
    }

    /// Leave config mode, log out, close the transport; all by the deadline.
    pub fn close(mut self, deadline: Instant) {
        let step_deadline = deadline.min(Instant::now() + Duration::from_millis(1500));
        if self.awaiting_prompt.is_none() {
            if let Some(cmd) = self.platform.close.from_mode.get(&self.mode).cloned() {
                let _ = self.run_inner(&ExecItem::plain(&cmd), step_deadline, None, false);
            }
            if let Some(logout) = self.platform.close.logout.clone() {
                if self
                    .chan
                    .send(&format!("{logout}\n"), step_deadline)
                    .is_ok()
                {
                    // Wait briefly for the device to hang up.
                    let mut acc = Acc::new(4096);
                    let never = [&self.platform.generic_prompt];
                    let _ = self.chan.read_until(&mut acc, &never, step_deadline, None);
                }
            }
        }
        self.chan.transport.close(deadline);
    }
}

fn fail_of(f: ReadFail, partial: String) -> CmdFail {
    match f {
        ReadFail::Timeout => CmdFail::Timeout {
            partial,
            truncated: false,
        },
        ReadFail::Closed(reason) => CmdFail::Closed { partial, reason },
        ReadFail::Cancelled => CmdFail::Cancelled { partial },
    }
}
