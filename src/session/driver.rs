//! The driver knows platforms: how to find the first prompt, reach enable, turn paging off, run a
//! command and tell where its output ends, and how to leave. Everything platform-specific comes
//! from the [`Platform`] table.

use super::error::OpenError;
use crate::channel::typed::Step;
use crate::channel::Pat;
use crate::channel::{matcher, Acc, Channel, ReadFail};
use crate::platform::{Answer, Platform};
use crate::secret::Secret;
use regex::Regex;
use std::time::{Duration, Instant};

/// One step of a dialogue: wait for `expect` (anywhere in the output since the last answer),
/// then send `send`. A hidden send never reaches a log, and is masked in the output.
#[derive(Debug, Clone)]
pub struct Interaction {
    pub expect: Regex,
    /// Exactly what is written (the API adds the newline unless told not to).
    pub send: Secret,
    pub hidden: bool,
    /// The answer comes from platform data (exempt from the command rules), not from a client.
    pub from_platform: bool,
}

impl Interaction {
    /// What the command policy takes this answer for.
    pub fn step(&self) -> Step {
        match (self.from_platform, self.hidden) {
            (true, _) => Step::PlatformAnswer,
            (false, true) => Step::HiddenAnswer,
            (false, false) => Step::Answer,
        }
    }
}

/// One item of an exec request.
#[derive(Debug, Clone)]
pub struct ExecItem {
    pub cmd: String,
    /// Ends the read instead of the prompt (searched in the output after the echoed command).
    pub expect: Option<Regex>,
    /// Questions answered in order; the command ends when the prompt comes back, whether or not
    /// every question was asked.
    pub interactions: Vec<Interaction>,
    /// Read deadline for this command (overrides the exec's).
    pub timeout: Option<Duration>,
    /// Any unanswered question may come next (platform answers are alternatives); otherwise
    /// they are answered in order (a dialogue).
    pub any_order: bool,
    /// The seed's `answer` + `send_newlines` form: its newlines also answer the platform's
    /// default-value questions.
    pub seed_answer: bool,
    /// What the command is to the command policy (a client's command, or a platform step).
    pub step: Step,
}

impl ExecItem {
    pub fn plain(cmd: &str) -> ExecItem {
        ExecItem {
            cmd: cmd.to_string(),
            expect: None,
            interactions: Vec::new(),
            timeout: None,
            any_order: false,
            seed_answer: false,
            step: Step::Command,
        }
    }
    /// A command whose questions are answered from platform data.
    pub fn answering(cmd: &str, answers: &[Answer]) -> ExecItem {
        ExecItem {
            interactions: answers
                .iter()
                .map(|a| Interaction {
                    expect: a.expect.clone(),
                    send: Secret::new(a.send.clone()),
                    hidden: false,
                    from_platform: true,
                })
                .collect(),
            any_order: true,
            ..ExecItem::plain(cmd)
        }
    }
}

#[derive(Debug)]
pub struct CmdResult {
    pub command: String,
    pub output: String,
    pub elapsed_ms: u64,
    pub truncated: bool,
    /// The output line that shows the platform's failure indicator, if any.
    pub failure: Option<String>,
    /// How many of the item's questions were asked and answered.
    pub answered: usize,
    /// The read ended at the item's `expect` pattern, not at the prompt.
    pub ended_by_expect: bool,
}

impl CmdResult {
    /// Everything but the output (which may be megabytes).
    pub fn clone_without_output(&self) -> CmdResult {
        CmdResult {
            command: self.command.clone(),
            output: String::new(),
            elapsed_ms: self.elapsed_ms,
            truncated: self.truncated,
            failure: self.failure.clone(),
            answered: self.answered,
            ended_by_expect: self.ended_by_expect,
        }
    }
}

#[derive(Debug)]
pub enum CmdFail {
    /// The prompt did not return by the deadline; the session waits for it before the next command.
    Timeout { partial: String, truncated: bool },
    /// The connection died.
    Closed { partial: String, reason: String },
    /// The session is being closed.
    /// Cancelled; `sent`: the command had been typed (it may still run on the device).
    Cancelled { partial: String, sent: bool },
    /// An earlier command timed out and the prompt still has not come back.
    Desynced { since: String },
    /// The command policy refused a text of this item; nothing of that text was typed.
    Refused { partial: String, why: String },
}

pub struct Driver {
    chan: Channel,
    platform: &'static Platform,
    prompt: Regex,
    base: String,
    pub mode: String,
    /// The last read ended at a known prompt (not at a question or an `expect` match): only then
    /// may a keepalive newline be sent.
    at_prompt: bool,
    /// Set when a command timed out: the command after which the prompt has not come back.
    awaiting_prompt: Option<String>,
    /// What arrived since that timeout (rolling tail only): where the prompt will show up.
    resync: Acc,
    max_output: usize,
    /// Watches the bytes of each command's read (a job's live output); off by default.
    pub tap: crate::channel::Tap,
}

const OPEN_OUTPUT_CAP: usize = 256 * 1024;
/// Longest time spent reading unsolicited output before a command or on an idle check.
const DRAIN_TIME: Duration = Duration::from_secs(2);
/// Questions answered before the first prompt (a device asking forever cannot hold us).
const MAX_LOGIN_ANSWERS: usize = 5;
/// After a newline, how long a prompt without a line break before it may be followed by the
/// real answer (the earlier prompt arriving late) before it is taken as the answer.
const NO_BREAK_WAIT: Duration = Duration::from_millis(500);
/// Newlines sent at open to make sure the prompt found is the device's, not a banner line.
const PROMPT_CONFIRMATIONS: usize = 3;

fn open_fail(what: &str, host: &str, f: ReadFail, acc: &Acc) -> OpenError {
    match f {
        ReadFail::Timeout => OpenError::NoPrompt(format!(
            "{what} on {host}: no prompt before the deadline (last line received: {:?})",
            acc.waiting_line()
        )),
        ReadFail::Closed(m) => OpenError::Lost(format!("{what} on {host}: {m}")),
        ReadFail::Cancelled => OpenError::Lost(format!("{what} on {host}: cancelled")),
        ReadFail::Refused(m) => OpenError::Refused(format!("{what} on {host}: {m}")),
    }
}

/// What a keepalive found.
#[derive(Debug, PartialEq, Eq)]
pub enum Keepalive {
    /// A newline was sent and the prompt came back.
    Answered,
    /// Nothing was sent to the CLI (not at a known prompt, or off); the connection is up.
    Checked,
    /// A newline was sent and the prompt did not come back in time; the session waits for it
    /// before the next command, as after a command timeout.
    NoPrompt,
}

/// Credentials typed at the device's own login prompts (Telnet).
pub struct Login<'a> {
    pub username: &'a str,
    pub password: &'a Secret,
}

/// Login prompts and refusals, the forms devices use (matched on the last line / searched).
struct LoginPatterns {
    username: Regex,
    password: Regex,
    refused: Regex,
}

fn login_patterns() -> &'static LoginPatterns {
    static P: std::sync::OnceLock<LoginPatterns> = std::sync::OnceLock::new();
    P.get_or_init(|| LoginPatterns {
        username: Regex::new(r"(?i)(?:user ?name|login|user)\s*: ?$").unwrap_or_else(|_| unreachable!()),
        password: Regex::new(r"(?i)pass(?:word|code)\s*: ?$").unwrap_or_else(|_| unreachable!()),
        refused: Regex::new(
            r"(?im)^\s*(?:% ?Login invalid|% ?Authentication failed|Login incorrect|% ?Bad passwords|% ?Access denied|Authentication failed|Access denied|Login failed|Permission denied)",
        )
        .unwrap_or_else(|_| unreachable!()),
    })
}

/// How a session is opened.
pub struct OpenOptions<'a> {
    pub host: &'a str,
    /// Log in on the CLI (Telnet): answer username and password prompts.
    pub login: Option<Login<'a>>,
    pub enable_secret: Option<&'a Secret>,
    pub enable_level: Option<u8>,
    pub max_output: usize,
    pub deadline: Instant,
}

impl Driver {
    /// Find the first prompt (answering login questions, leaving a shell, making sure a banner
    /// line was not taken for the prompt), enter privileged mode if asked (or if the device needs
    /// no password), and run the platform's on-open commands. Everything finishes by the deadline.
    pub fn open(
        chan: Channel,
        platform: &'static Platform,
        o: &OpenOptions,
    ) -> Result<Driver, OpenError> {
        let (host, deadline) = (o.host, o.deadline);
        let mut d = Driver {
            chan,
            platform,
            prompt: platform.generic_prompt.clone(),
            base: String::new(),
            mode: String::new(),
            at_prompt: false,
            awaiting_prompt: None,
            resync: Acc::new(0),
            max_output: o.max_output,
            tap: Default::default(),
        };
        let mut acc = Acc::new(OPEN_OUTPUT_CAP);
        let fail = |what, f, acc: &Acc| open_fail(what, host, f, acc);
        let lp = login_patterns();
        // [prompt, refused, username, password] (the last three only when logging in here),
        // then the platform's login questions.
        let mut pats = vec![Pat::Line(&platform.generic_prompt)];
        let first_answer = if o.login.is_some() {
            pats.extend([
                Pat::Search(&lp.refused),
                Pat::Line(&lp.username),
                Pat::Line(&lp.password),
            ]);
            4
        } else {
            1
        };
        pats.extend(platform.login.iter().map(|a| Pat::Search(&a.expect)));
        let (mut answered, mut users, mut passwords) = (0, 0, 0);
        let refused =
            |why: String| OpenError::LoginRefused(format!("{host} rejected the login: {why}"));
        loop {
            let hit = d
                .chan
                .read_until(&mut acc, &pats, deadline, None)
                .map_err(|f| fail("waiting for the first prompt", f, &acc))?;
            let line = acc.waiting_line();
            match (hit, &o.login) {
                (0, _) => break,
                (1, Some(_)) => {
                    let text = acc.search_text();
                    let why = lp
                        .refused
                        .find(&text)
                        .map(|m| {
                            let from = text[m.start()..].trim_start();
                            from.lines().next().unwrap_or("").trim().to_string()
                        })
                        .unwrap_or_default();
                    d.chan.note(&format!("[match] login refused: {why:?}"));
                    return Err(refused(why));
                }
                (2, Some(l)) => {
                    d.chan.note(&format!("[match] username prompt {line:?}"));
                    users += 1;
                    if users > 1 {
                        return Err(refused(format!("asked for the username again ({line:?})")));
                    }
                    acc.reset_tail();
                    d.chan
                        .send(&format!("{}\n", l.username), Step::Login, deadline)
                        .map_err(|f| fail("sending the username", f, &acc))?;
                }
                (3, Some(l)) => {
                    d.chan.note(&format!("[match] password prompt {line:?}"));
                    passwords += 1;
                    if passwords > 1 {
                        return Err(refused(format!("asked for the password again ({line:?})")));
                    }
                    let mut pw = String::with_capacity(l.password.expose().len() + 1);
                    pw.push_str(l.password.expose());
                    pw.push('\n');
                    acc.reset_tail();
                    let sent = d.chan.send(&pw, Step::Secret, deadline);
                    zeroize::Zeroize::zeroize(&mut pw);
                    sent.map_err(|f| fail("sending the password", f, &acc))?;
                }
                (i, _) => {
                    let a = &platform.login[i - first_answer];
                    d.chan
                        .note(&format!("[match] login question {:?}", a.expect.as_str()));
                    answered += 1;
                    if answered > MAX_LOGIN_ANSWERS {
                        return Err(OpenError::Lost(format!(
                            "{host}: still asking questions after {MAX_LOGIN_ANSWERS} answers (last line {line:?})"
                        )));
                    }
                    acc.reset_tail();
                    d.chan
                        .send(&a.send, Step::Login, deadline)
                        .map_err(|f| fail("answering a login question", f, &acc))?;
                }
            }
        }
        let mut line = acc.waiting_line();
        if let Some(esc) = &platform.shell_escape {
            if esc.pattern.is_match(&line) {
                line = d.prompt_after(
                    &format!("{}\n", esc.command),
                    Step::ShellExit,
                    "leaving the shell",
                    host,
                    deadline,
                )?;
            }
        }
        // A banner line that looks like a prompt can end a read; the device's real prompt comes
        // back the same after a newline.
        for _ in 0..PROMPT_CONFIRMATIONS {
            let again =
                d.prompt_after("\n", Step::Newline, "confirming the prompt", host, deadline)?;
            if again == line {
                break;
            }
            log::debug!("{host}: {line:?} was not the prompt; now {again:?}");
            line = again;
        }
        d.learn(&line)?;
        d.chan.note(&format!(
            "[match] prompt {line:?} (hostname {:?}, mode {})",
            d.base, d.mode
        ));
        d.at_prompt = true;
        d.chan.settle();
        if let Some(en) = &platform.enable {
            let asked = o.enable_secret.is_some_and(|s| !s.is_empty()) || o.enable_level.is_some();
            if d.mode == en.from_mode && (asked || !en.requires_secret) {
                d.enable(host, o.enable_secret, o.enable_level, deadline)?;
            }
        }
        for cmd in &platform.on_open {
            // Matched against the platform's generic prompt and learned again afterwards, so a
            // banner that looked like a prompt cannot leave us with a wrong one.
            let item = ExecItem {
                step: Step::OnOpen,
                ..ExecItem::plain(cmd)
            };
            match d.run_inner(&item, deadline, None, true, o.max_output) {
                Ok(r) => {
                    if let Some(f) = r.failure {
                        log::warn!("{host}: on-open command {cmd:?} was refused ({f})");
                    }
                }
                Err(CmdFail::Timeout { .. }) | Err(CmdFail::Desynced { .. }) => {
                    return Err(OpenError::NoPrompt(format!(
                        "{host}: no prompt after {cmd:?} before the deadline"
                    )));
                }
                Err(CmdFail::Closed { reason, .. }) => {
                    return Err(OpenError::Lost(format!("{host}: {reason}")))
                }
                Err(CmdFail::Cancelled { .. }) => {
                    return Err(OpenError::Lost(format!("{host}: cancelled")))
                }
                Err(CmdFail::Refused { why, .. }) => {
                    return Err(OpenError::Refused(format!("{host}: {why}")))
                }
            }
        }
        Ok(d)
    }

    /// Send `data` and read until a prompt line follows a line break; returns that line.
    fn prompt_after(
        &mut self,
        data: &str,
        step: Step,
        what: &str,
        host: &str,
        deadline: Instant,
    ) -> Result<String, OpenError> {
        let mut acc = Acc::new(OPEN_OUTPUT_CAP);
        let pats = [Pat::Line(&self.platform.generic_prompt)];
        let r = self.chan.send(data, step, deadline).and_then(|_| {
            self.chan.read_until(&mut acc, &pats, deadline, None)?;
            if !matcher::clean(&acc.kept).contains('\n') {
                // Perhaps the prompt from before our line break, with the one after it still to
                // come; a device that prints no line break before its prompt sends nothing more.
                let line = acc.waiting_line();
                acc.reset_tail();
                let soon = deadline.min(Instant::now() + NO_BREAK_WAIT);
                match self.chan.read_until(&mut acc, &pats, soon, None) {
                    Err(ReadFail::Timeout) => return Ok(line),
                    r => {
                        r?;
                    }
                }
            }
            Ok(acc.waiting_line())
        });
        r.map_err(|f| open_fail(what, host, f, &acc))
    }

    /// Learn the hostname part of the prompt and the mode from a prompt line.
    fn learn(&mut self, line: &str) -> Result<(), OpenError> {
        let base = self
            .platform
            .prompt_base(line)
            .map(str::to_string)
            .ok_or_else(|| OpenError::Lost(format!("cannot make out the prompt in {line:?}")))?;
        self.prompt = self
            .platform
            .learned_prompt(&base)
            .map_err(OpenError::Platform)?;
        self.base = base;
        self.mode = self.platform.mode_of(line).unwrap_or("unknown").to_string();
        Ok(())
    }

    pub fn prompt_base(&self) -> &str {
        &self.base
    }

    /// What the transport negotiated ("kex / hostkey / cipher / mac", or the Telnet options).
    pub fn negotiated(&self) -> String {
        self.chan.negotiated()
    }

    pub fn platform(&self) -> &'static Platform {
        self.platform
    }

    fn enable(
        &mut self,
        host: &str,
        secret: Option<&Secret>,
        level: Option<u8>,
        deadline: Instant,
    ) -> Result<(), OpenError> {
        let Some(en) = &self.platform.enable else {
            return Ok(());
        };
        let mut acc = Acc::new(OPEN_OUTPUT_CAP);
        let fail = |f, acc: &Acc| open_fail("entering privileged mode", host, f, acc);
        self.chan
            .send(
                &format!("{}\n", en.command_for(level)),
                Step::Enable,
                deadline,
            )
            .map_err(|f| fail(f, &acc))?;
        let pats = [Pat::Line(&self.prompt), Pat::Line(&en.password_prompt)];
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
                    let sent = self.chan.send(&line, Step::Secret, deadline);
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
                self.chan
                    .send("\n", Step::Newline, deadline)
                    .map_err(|f| fail(f, &acc))?;
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
            return Err(OpenError::EnableRefused(format!(
                "{host} refused the enable password{}",
                failure.map(|f| format!(" ({f})")).unwrap_or_default()
            )));
        }
        Ok(())
    }

    /// Run one command, keeping at most `cap` bytes of its output (and never more than
    /// max_output_bytes); see [`CmdFail`] for what can go wrong.
    pub fn run(
        &mut self,
        item: &ExecItem,
        deadline: Instant,
        cancel: &dyn Fn() -> bool,
        cap: usize,
    ) -> Result<CmdResult, CmdFail> {
        self.run_inner(
            item,
            deadline,
            Some(cancel),
            false,
            cap.min(self.max_output),
        )
    }

    /// Stop the command that is running (its read was cancelled): type the platform's interrupt
    /// key and wait for the prompt until `deadline`. Without the prompt the session is left
    /// awaiting it, as after a timeout (the next exec waits for it or answers "desynced").
    pub fn interrupt(&mut self, what: &str, deadline: Instant) -> Result<(), String> {
        self.at_prompt = false;
        let mut acc = Acc::new(0);
        let prompt = self.prompt.clone();
        let generic = self.platform.generic_prompt.clone();
        let r = self.chan.interrupt(deadline).and_then(|()| {
            self.chan.read_until(
                &mut acc,
                &[Pat::Line(&prompt), Pat::Line(&generic)],
                deadline,
                None,
            )
        });
        match r {
            Ok(_) => {
                self.awaiting_prompt = None;
                self.at_prompt = true;
                self.chan.settle();
                let line = acc.waiting_line();
                self.mode = self
                    .platform
                    .mode_of(&line)
                    .unwrap_or("unknown")
                    .to_string();
                Ok(())
            }
            Err(ReadFail::Timeout) => {
                self.awaiting_prompt = Some(what.to_string());
                self.resync = Acc::new(0);
                self.resync.push(&acc.tail_bytes());
                Err(format!(
                    "the prompt did not come back after interrupting {what:?}"
                ))
            }
            Err(f) => Err(format!("interrupting {what:?}: {f:?}")),
        }
    }

    /// Back to the exec prompt if the device is in config mode (the platform's exit step, an
    /// exempt step of the command policy): after an interrupt inside a config block.
    pub fn leave_config_mode(&mut self, deadline: Instant) {
        let exit = self
            .platform
            .config
            .as_ref()
            .filter(|c| self.mode == c.mode)
            .map(|c| ExecItem {
                step: Step::ConfigExit,
                ..ExecItem::answering(&c.exit, &c.exit_answers)
            });
        if let Some(exit) = exit {
            let cap = self.max_output;
            let _ = self.run(&exit, deadline, &|| false, cap);
        }
    }

    /// The command policy for what is typed from now on.
    pub fn set_rules(&mut self, rules: std::sync::Arc<crate::policy::CommandRules>) {
        self.chan.set_rules(rules);
    }

    /// Try every text `items` could type, in order, against the command policy, typing
    /// nothing: each command, then each of its answers, which may or may not be asked for.
    /// `Err` says which line of which step the policy refuses.
    pub fn preflight<'a>(&self, items: impl Iterator<Item = &'a ExecItem>) -> Result<(), String> {
        let mut g = self.chan.guard().clone();
        for item in items {
            let a = g.admit(&format!("{}\n", item.cmd), item.step)?;
            g.commit(a);
            for ia in &item.interactions {
                let mut sent = g.clone();
                let a = sent.admit(ia.send.expose(), ia.step())?;
                sent.commit(a);
                g.merge(sent)?;
            }
            if item.expect.is_none() {
                // The item ends at the prompt (or the exec ends there).
                g.settle();
            }
        }
        Ok(())
    }

    fn run_inner(
        &mut self,
        item: &ExecItem,
        deadline: Instant,
        cancel: Option<&dyn Fn() -> bool>,
        relearn: bool,
        cap: usize,
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
            let pats = [Pat::Line(&self.prompt)];
            match self
                .chan
                .read_until(&mut self.resync, &pats, deadline, cancel)
            {
                Ok(_) => self.awaiting_prompt = None,
                Err(ReadFail::Timeout) => return Err(CmdFail::Desynced { since }),
                Err(f) => return Err(fail_of(f, String::new())),
            }
        }
        if cancel.is_some_and(|stop| stop()) {
            // Closed (DELETE, shutdown) before this command was sent: do not send it.
            return Err(CmdFail::Cancelled {
                partial: String::new(),
                sent: false,
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
        let end = match &item.expect {
            Some(e) => Pat::Search(e),
            None => Pat::Line(&prompt),
        };
        let pagers = self.platform.pagers.len();
        let mut acc = Acc::new(cap);
        acc.tap = self.tap.clone();
        acc.expect_echo(&item.cmd);
        let mut cut_pagers = Vec::new();
        let mut answered = 0;
        let mut done = vec![false; item.interactions.len()];
        self.at_prompt = false;
        self.chan
            .send(&format!("{}\n", item.cmd), item.step, deadline)
            .map_err(|f| fail_of(f, String::new()))?;
        loop {
            let mut pats = vec![end];
            pats.extend(self.platform.pagers.iter().map(|p| Pat::Line(&p.pattern)));
            // The questions that may come next, by index into item.interactions.
            let open: Vec<usize> = if item.any_order {
                (0..done.len()).filter(|i| !done[*i]).collect()
            } else {
                (answered < done.len())
                    .then_some(answered)
                    .into_iter()
                    .collect()
            };
            let mut open_pats: Vec<(usize, &Regex)> = open
                .iter()
                .map(|i| (*i, &item.interactions[*i].expect))
                .collect();
            // The seed's form also answers the platform's default-value questions
            // (`Destination filename [startup-config]?`) with the newlines it was given.
            if item.seed_answer && !done.is_empty() && !done[0] {
                open_pats.extend(self.platform.default_questions.iter().map(|r| (0, r)));
            }
            pats.extend(open_pats.iter().map(|(_, r)| Pat::Search(r)));
            let hit = match self.chan.read_until(&mut acc, &pats, deadline, cancel) {
                Ok(i) => i,
                Err(f) => {
                    let partial = self.finish_output(&acc, &cut_pagers, item, &prompt);
                    if matches!(f, ReadFail::Timeout | ReadFail::Cancelled) {
                        // The command may still run: nothing is typed until its prompt is back
                        // (an interrupt, or the next exec's wait for it).
                        self.awaiting_prompt = Some(item.cmd.clone());
                        self.resync = Acc::new(0);
                        self.resync.push(&acc.tail_bytes());
                    }
                    if matches!(f, ReadFail::Timeout) {
                        return Err(CmdFail::Timeout {
                            partial,
                            truncated: acc.truncated,
                        });
                    }
                    return Err(fail_of(f, partial));
                }
            };
            let (send, step) = if hit == 0 {
                break;
            } else if hit <= pagers {
                acc.cut_pager_line();
                cut_pagers.push(hit - 1);
                (self.platform.pagers[hit - 1].send.as_str(), Step::Pager)
            } else {
                let i = open_pats[hit - 1 - pagers].0;
                let ia = &item.interactions[i];
                done[i] = true;
                answered += 1;
                if ia.hidden {
                    log::debug!("answering {:?} (hidden)", ia.expect.as_str());
                }
                (ia.send.expose(), ia.step())
            };
            acc.reset_tail();
            if let Err(f) = self.chan.send(send, step, deadline) {
                let partial = self.finish_output(&acc, &cut_pagers, item, &prompt);
                return Err(fail_of(f, partial));
            }
        }
        let ended_by_expect = item.expect.is_some();
        if !ended_by_expect {
            self.at_prompt = true;
            self.chan.settle();
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
        }
        let output = self.finish_output(&acc, &cut_pagers, item, &prompt);
        let failure = self.platform.failure_in(&output);
        Ok(CmdResult {
            command: item.cmd.clone(),
            output,
            elapsed_ms: started.elapsed().as_millis() as u64,
            truncated: acc.truncated,
            failure,
            answered,
            ended_by_expect,
        })
    }

    /// Output as Netmiko's send_command returns it: cleaned, without the echoed command, the
    /// trailing prompt (and a context line above it), or pager prompts and their erase bytes.
    /// Hidden answers are masked.
    fn finish_output(
        &self,
        acc: &Acc,
        cut_pagers: &[usize],
        item: &ExecItem,
        prompt: &Regex,
    ) -> String {
        let raw = cut_pager_lines(&acc.kept, &acc.pager_cuts, |i, rest| {
            cut_pagers
                .get(i)
                .and_then(|p| self.platform.pagers.get(*p))
                .and_then(|p| p.erase.find(rest))
                .map_or(0, |m| {
                    // A lone CR before a line feed is part of the line break, not the erase.
                    let n = m.end();
                    if n > 0 && rest[n - 1] == b'\r' && rest.get(n) == Some(&b'\n') {
                        n - 1
                    } else {
                        n
                    }
                })
        });
        let mut out = matcher::clean(&raw);
        drop(raw);
        // Trimmed in place (outputs can be max_output_bytes large: no copy).
        let (start, end) = {
            let text = matcher::strip_echo(&out, &item.cmd);
            let mut text = if acc.truncated {
                text
            } else {
                matcher::strip_prompt(text, |l| prompt.is_match(l))
            };
            if !acc.truncated && item.expect.is_none() {
                text = matcher::strip_prompt(text, |l| self.platform.is_context(l));
            }
            // The strips return sub-slices of `out` (or an empty literal).
            let base = out.as_ptr() as usize;
            match (text.as_ptr() as usize).checked_sub(base) {
                Some(start) if !text.is_empty() && start + text.len() <= out.len() => {
                    (start, start + text.len())
                }
                _ => (0, 0),
            }
        };
        out.truncate(end);
        out.drain(..start);
        for ia in item.interactions.iter().filter(|i| i.hidden) {
            let secret = ia.send.expose().trim_end_matches(['\r', '\n']);
            if !secret.is_empty() {
                out = out.replace(secret, "********");
            }
        }
        out
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
            self.at_prompt = true;
            self.chan.settle();
        }
        Ok(n)
    }

    /// See [`crate::transport::Transport::wait_fd`].
    pub fn wait_fd(&self) -> Option<std::os::unix::io::RawFd> {
        self.chan.wait_fd()
    }

    /// The device's connection became readable while idle: read what is waiting (unsolicited
    /// output, a prompt coming back) without writing anything. `Err` when it closed or failed.
    /// Returns the bytes read.
    pub fn idle_read(&mut self) -> Result<usize, String> {
        match self.absorb_waiting(Instant::now() + DRAIN_TIME) {
            Ok(n) => Ok(n),
            Err(ReadFail::Closed(m)) => Err(m),
            Err(_) => Ok(0),
        }
    }

    /// Check the connection while idle: read what is waiting (device gone = error), send an
    /// SSH-level keepalive, and when `cli` is set and the device sits at a known prompt, send a
    /// newline and read the prompt back (the only thing that resets a device's exec-timeout).
    /// Never writes to the CLI while a question may be open.
    pub fn keepalive(&mut self, cli: bool, wait: Duration) -> Result<Keepalive, String> {
        match self.absorb_waiting(Instant::now() + DRAIN_TIME) {
            Ok(_) => {}
            Err(ReadFail::Closed(m)) => return Err(m),
            Err(_) => {}
        }
        self.chan
            .transport_keepalive()
            .map_err(|e| format!("{e:?}"))?;
        if !cli || !self.at_prompt || self.awaiting_prompt.is_some() {
            return Ok(Keepalive::Checked);
        }
        let deadline = Instant::now() + wait;
        let mut acc = Acc::new(0);
        let pats = [Pat::Line(&self.prompt)];
        let sent = self.chan.send("\n", Step::Newline, deadline);
        let read = sent.and_then(|_| {
            // The prompt after our line break, not one already on screen (a device that prints
            // no line break before its prompt gets one more read).
            self.chan.read_until(&mut acc, &pats, deadline, None)?;
            let t = acc.tail_bytes();
            if !t.contains(&b'\n') && !t.contains(&b'\r') {
                acc.reset_tail();
                let soon = deadline.min(Instant::now() + NO_BREAK_WAIT);
                match self.chan.read_until(&mut acc, &pats, soon, None) {
                    Err(ReadFail::Timeout) => return Ok(()),
                    r => {
                        r?;
                    }
                }
            }
            Ok(())
        });
        match read {
            Ok(()) => {
                self.chan.settle();
                Ok(Keepalive::Answered)
            }
            // The policy kept the newline from finishing text a client left unfinished; the
            // device is not touched.
            Err(ReadFail::Refused(_)) => Ok(Keepalive::Checked),
            Err(ReadFail::Closed(m)) => Err(m),
            Err(_) => {
                self.at_prompt = false;
                self.awaiting_prompt = Some("(keepalive newline)".into());
                self.resync = Acc::new(0);
                self.resync.push(&acc.tail_bytes());
                Ok(Keepalive::NoPrompt)
            }
        }
    }

    /// Leave config mode, log out, close the transport; all by the deadline.
    pub fn close(mut self, deadline: Instant) {
        let step_deadline = deadline.min(Instant::now() + Duration::from_millis(1500));
        if self.awaiting_prompt.is_none() && self.at_prompt {
            if let Some(cmd) = self.platform.close.from_mode.get(&self.mode).cloned() {
                let answers = self
                    .platform
                    .config
                    .as_ref()
                    .filter(|c| c.exit == cmd)
                    .map(|c| c.exit_answers.as_slice())
                    .unwrap_or(&[]);
                let item = ExecItem {
                    step: Step::ConfigExit,
                    ..ExecItem::answering(&cmd, answers)
                };
                let _ = self.run_inner(&item, step_deadline, None, false, 4096);
            }
            if let Some(logout) = self.platform.close.logout.clone() {
                if self
                    .chan
                    .send(&format!("{logout}\n"), Step::Logout, step_deadline)
                    .is_ok()
                {
                    // Wait briefly for the device to hang up.
                    let mut acc = Acc::new(4096);
                    let never = [Pat::Line(&self.platform.generic_prompt)];
                    let _ = self.chan.read_until(&mut acc, &never, step_deadline, None);
                }
            }
        }
        self.chan.close(deadline);
    }
}

/// `raw` without each pager line `(start, end)` and the erase bytes after it (`erase(i, rest)`
/// says how many bytes of `rest` the i-th pager's erase sequence takes).
fn cut_pager_lines<'a>(
    raw: &'a [u8],
    cuts: &[(usize, usize)],
    erase: impl Fn(usize, &[u8]) -> usize,
) -> std::borrow::Cow<'a, [u8]> {
    if cuts.is_empty() {
        return std::borrow::Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut pos = 0;
    for (i, &(start, end)) in cuts.iter().enumerate() {
        if start < pos || end > raw.len() {
            continue;
        }
        out.extend_from_slice(&raw[pos..start]);
        pos = end + erase(i, &raw[end..]);
    }
    out.extend_from_slice(&raw[pos.min(raw.len())..]);
    std::borrow::Cow::Owned(out)
}

fn fail_of(f: ReadFail, partial: String) -> CmdFail {
    match f {
        ReadFail::Timeout => CmdFail::Timeout {
            partial,
            truncated: false,
        },
        ReadFail::Closed(reason) => CmdFail::Closed { partial, reason },
        ReadFail::Cancelled => CmdFail::Cancelled {
            partial,
            sent: true,
        },
        ReadFail::Refused(why) => CmdFail::Refused { partial, why },
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
