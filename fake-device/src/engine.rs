//! The CLI engine: one [`Session`] plays a persona over a byte stream. Synchronous and free of
//! I/O: the front feeds it the bytes the client sent ([`Session::feed`]), lets it work
//! ([`Session::process_input`], [`Session::job_step`] while [`Session::is_writing`]), writes
//! what it produced ([`Session::take_output`], then [`Session::take_prompt_tail`] after
//! [`PROMPT_SPLIT_GAP`]), wakes it at [`Session::deadline`] ([`Session::on_timer`]) and carries
//! out [`Session::take_end`].
//!
//! Command lines are read through the IOS line editor ([`LineEditor`]: erase and cursor keys,
//! history, Ctrl-Z, Ctrl-C, `?`), for every persona; answers to questions (hidden or not) are
//! read raw. Every line the CLI then acts on goes to the device's [`Log`] journal.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regex::Regex;

use crate::line_edit::{Event as LineEvent, History, LineEditor};
use crate::persona::{self, Action, Ask, ModeDef, Param, Parse, Persona, Trie};
use crate::state::DeviceState;
use crate::{DeviceConfig, Input, JournalEntry, Log};

/// The journal line of a running command interrupted by a break key.
pub const BREAK_MARK: &str = "<break>";

/// One CLI session (one SSH shell channel, one Telnet connection, one stdio run).
pub struct Session {
    log: Arc<Log>,
    /// What the device keeps across sessions: running config, hostname, revert timer.
    dev: Arc<DeviceState>,
    p: &'static Persona,
    cfg: DeviceConfig,
    started: bool,
    /// The session echoes what is typed (a Telnet client may refuse WILL ECHO).
    echo: bool,
    mode: String,
    /// Context shown in the prompt of some modes (`Et1`, ` interfaces ge-0/0/1`).
    ctx: String,
    /// Lines per page; 0 = paging off.
    page_len: usize,
    /// `terminal width` (shown by `{term_width}`).
    width: usize,
    /// The client's terminal type, when the transport tells (Telnet TERMINAL-TYPE).
    term_type: String,
    /// False while a `| no-more` job runs.
    job_paging: bool,
    /// Received but not yet processed input bytes.
    input: VecDeque<u8>,
    last_cr: bool,
    /// An answer being typed (command lines are in `editor`).
    line: Vec<u8>,
    editor: LineEditor,
    /// Ctrl-Z ended the last command line: leave configuration mode before the next prompt.
    end_pending: bool,
    /// Visible length of the prompt line shown when the current line was typed (for '^').
    line_prompt_len: usize,
    state: State,
    /// The open question and the arguments of the command that asked it.
    ask: Option<(&'static Ask, Vec<String>, String)>,
    job: Option<Job>,
    page_count: usize,
    page_budget: usize,
    /// Output produced but not written yet.
    pending: Vec<u8>,
    /// Second half of a split prompt, written after a gap.
    prompt_tail: Option<Vec<u8>>,
    action: Option<End>,
    last_input: Instant,
    /// Uncommitted config lines (commit-model personas, candidate modes).
    candidate: Vec<String>,
    /// What the candidate starts from when not the running config (`rollback N`).
    candidate_base: Option<Vec<String>>,
    pending_hostname: Option<String>,
    /// Session variables (`set`, `{$name}`).
    vars: BTreeMap<String, String>,
}

impl Session {
    /// A session of `cfg.persona` that records into `log`, on a device of its own (a new
    /// [`DeviceState`]). Panics if there is no such persona.
    pub fn new(cfg: DeviceConfig, log: Arc<Log>) -> Session {
        let dev = Arc::new(DeviceState::new(&cfg.hostname, cfg.minute, log));
        Session::on_device(cfg, dev)
    }

    /// A session of `cfg.persona` on the device `dev` (shared with the device's other
    /// sessions: running config, hostname, revert timer, journal). Panics if there is no such
    /// persona.
    pub fn on_device(cfg: DeviceConfig, dev: Arc<DeviceState>) -> Session {
        let p = persona::get(&cfg.persona);
        Session {
            log: Arc::clone(dev.log()),
            dev,
            p,
            started: false,
            echo: true,
            mode: if cfg.start_privileged {
                p.start_mode_privileged.clone()
            } else {
                p.start_mode.clone()
            },
            ctx: String::new(),
            page_len: p.pager.as_ref().map_or(0, |x| x.length),
            width: 80,
            term_type: String::new(),
            job_paging: true,
            input: VecDeque::new(),
            last_cr: false,
            line: Vec::new(),
            editor: LineEditor::new(),
            end_pending: false,
            line_prompt_len: 0,
            state: State::Idle(LineKind::Command),
            ask: None,
            job: None,
            page_count: 0,
            page_budget: 0,
            pending: Vec::new(),
            prompt_tail: None,
            action: None,
            last_input: Instant::now(),
            candidate: Vec::new(),
            candidate_base: None,
            pending_hostname: None,
            vars: BTreeMap::new(),
            cfg,
        }
    }

    /// The device this session runs on.
    pub fn device(&self) -> &Arc<DeviceState> {
        &self.dev
    }

    /// The configuration the session was made with.
    pub fn config(&self) -> &DeviceConfig {
        &self.cfg
    }

    /// The persona's SSH server identification (`SSH-2.0-Cisco-1.25`).
    pub fn ssh_server_id(&self) -> &'static str {
        &self.p.ssh_server_id
    }

    /// Echo what is typed (default), or not (a Telnet client that refused WILL ECHO echoes
    /// locally).
    pub fn set_echo(&mut self, on: bool) {
        self.echo = on;
        self.editor.set_echo(on);
    }

    /// The pause before each output line ([`DeviceConfig::line_delay`]): the front waits this
    /// long before each [`Session::job_step`], which then makes one line.
    pub fn line_delay(&self) -> Duration {
        self.cfg.line_delay
    }

    /// The client's terminal type (Telnet TERMINAL-TYPE), shown by `{term_type}`.
    pub fn set_terminal_type(&mut self, t: &str) {
        self.term_type = t.to_string();
    }

    /// Whether [`Session::start`] was called.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// The client is logged in (the SSH shell request, the end of a Telnet login): banner,
    /// login lines, motd, then the first prompt (or the press-any-key screen). False if the
    /// session had started already.
    pub fn start(&mut self) -> bool {
        if self.started {
            return false;
        }
        self.started = true;
        self.last_input = Instant::now();
        if let Some(banner) = self.cfg.banner.clone() {
            let b = banner.replace("\r\n", "\n").replace('\r', "\n");
            let b = b.strip_suffix('\n').unwrap_or(&b);
            for l in b.split('\n') {
                self.emit_line(l);
            }
        }
        for l in &self.p.login_lines {
            let l = self.fill(l, &[], "");
            self.emit_line(&l);
        }
        if let Some(motd) = self.cfg.motd.clone() {
            let m = crlf(&motd);
            self.emit(&m);
            if !m.ends_with("\r\n") {
                self.emit("\r\n");
            }
        }
        match &self.p.press_any_key {
            Some(text) => {
                self.emit(&crlf(text));
                self.state = State::PressKey;
            }
            None => self.show_prompt(),
        }
        true
    }

    /// Bytes the client sent (queued; [`Session::process_input`] acts on them).
    pub fn feed(&mut self, data: &[u8]) {
        self.last_input = Instant::now();
        self.input.extend(data);
    }

    /// Output produced so far (the front writes it before [`Session::take_prompt_tail`]).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }

    /// The second half of a split prompt ([`DeviceConfig::prompt_split`]): to be written
    /// [`PROMPT_SPLIT_GAP`] after [`Session::take_output`]'s bytes.
    pub fn take_prompt_tail(&mut self) -> Option<Vec<u8>> {
        self.prompt_tail.take()
    }

    /// A (possibly long, possibly paged) output is being written: call [`Session::job_step`]
    /// (input stays queued as type-ahead meanwhile).
    pub fn is_writing(&self) -> bool {
        matches!(self.state, State::Output)
    }

    /// The session is over: how the front must end it.
    pub fn take_end(&mut self) -> Option<End> {
        self.action.take()
    }

    /// When [`Session::on_timer`] has something to do (a `slow` line, the exec timeout).
    pub fn deadline(&self) -> Option<Instant> {
        let slow_at = match self.state {
            State::Slow { next, .. } => Some(next),
            _ => None,
        };
        let idle_at = match self.cfg.exec_timeout_secs {
            Some(n) if self.started => Some(self.last_input + Duration::from_secs(n)),
            _ => None,
        };
        [slow_at, idle_at, self.dev.deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Time passed: the next `slow` line, the exec timeout, the device's revert timer.
    pub fn on_timer(&mut self, now: Instant) {
        self.dev.tick(now);
        if matches!(self.state, State::Slow { next, .. } if now >= next) {
            self.slow_tick();
        }
        if let Some(n) = self.cfg.exec_timeout_secs {
            if self.started && now >= self.last_input + Duration::from_secs(n) {
                if let Some(m) = &self.p.idle_message {
                    self.emit(&crlf(m));
                }
                self.action = Some(End::Timeout);
            }
        }
    }

    /// Produce the next chunk of the current output (up to a page boundary, at most
    /// [`CHUNK`] bytes) into [`Session::take_output`].
    pub fn job_step(&mut self) {
        if let Some(tail) = self.prompt_tail.take() {
            self.pending.extend_from_slice(&tail);
        }
        if self.take_break() {
            return;
        }
        let mut buf = std::mem::take(&mut self.pending);
        let paging = self.page_len > 0 && self.job_paging && self.p.pager.is_some();
        let start_count = self.page_count;
        let done = match self.job.as_mut() {
            Some(job) => {
                let delay = !self.cfg.line_delay.is_zero();
                while buf.len() < CHUNK && !(delay && self.page_count > start_count) {
                    if paging && self.page_count >= self.page_budget {
                        break;
                    }
                    if !job.next_line(&mut buf) {
                        break;
                    }
                    self.page_count += 1;
                }
                !job.has_more()
            }
            None => true,
        };
        self.pending = buf;
        if done {
            self.job = None;
            self.job_paging = true;
            self.show_prompt();
        } else if paging && self.page_count >= self.page_budget {
            if let Some(pager) = &self.p.pager {
                self.pending.extend_from_slice(pager.prompt.as_bytes());
            }
            self.state = State::More;
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum LineKind {
    Command,
    /// Answering a question (`Session::ask`).
    Answer,
}

enum State {
    /// Reading a line of input.
    Idle(LineKind),
    /// `Press any key to continue`: the next byte shows the first prompt.
    PressKey,
    /// A (possibly paged) output job is being written; input is buffered (type-ahead).
    Output,
    /// Paused at the pager prompt.
    More,
    /// `slow`: `done` of `total` lines written; next tick at `next`.
    Slow {
        done: u64,
        total: u64,
        next: Instant,
    },
    /// `hang`: input is ignored forever.
    Hang,
}

/// How a session ends (the front carries it out: see [`Session::take_end`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// `exit`/`logout`: a clean close (SSH: exit status 0, EOF, close, disconnect).
    Exit,
    /// The exec timeout ([`DeviceConfig::exec_timeout_secs`]): a clean close, no exit status.
    Timeout,
    /// The `drop` test hook: the connection is cut (TCP close, nothing else).
    Drop,
    /// `reload` confirmed: the output is written, then the connection is cut.
    Reload,
}

/// Line producers for (possibly large, possibly paged) command output.
enum Job {
    Lines(VecDeque<String>),
    Numbered { next: u64, last: u64 },
    Flood { next: u64, last: u64 },
}

const FLOOD_LINE_LEN: usize = 64; // bytes including "\r\n"
const FLOOD_LINES_PER_MIB: u64 = 1024 * 1024 / FLOOD_LINE_LEN as u64;
pub const CHUNK: usize = 32 * 1024;
/// Gap between the two writes of a split prompt.
pub const PROMPT_SPLIT_GAP: Duration = Duration::from_millis(80);
const ANSI_PROMPT_ON: &str = "\x1b[1;32m";
const ANSI_PROMPT_OFF: &str = "\x1b[0m";

impl Job {
    fn has_more(&self) -> bool {
        match self {
            Job::Lines(q) => !q.is_empty(),
            Job::Numbered { next, last } | Job::Flood { next, last } => next <= last,
        }
    }

    /// Append the next line (with `\r\n`) to `buf`; false when exhausted.
    fn next_line(&mut self, buf: &mut Vec<u8>) -> bool {
        match self {
            Job::Lines(q) => match q.pop_front() {
                Some(l) => {
                    buf.extend_from_slice(l.as_bytes());
                    buf.extend_from_slice(b"\r\n");
                    true
                }
                None => false,
            },
            Job::Numbered { next, last } => {
                if *next > *last {
                    return false;
                }
                let _ = write!(
                    buf,
                    "line {:04} the quick brown fox jumps over the lazy dog\r\n",
                    *next
                );
                *next += 1;
                true
            }
            Job::Flood { next, last } => {
                if *next > *last {
                    return false;
                }
                let start = buf.len();
                let _ = write!(buf, "flood {:09} ", *next);
                const FILL: &[u8] =
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
                let need = FLOOD_LINE_LEN - 2 - (buf.len() - start);
                buf.extend_from_slice(&FILL[..need]);
                buf.extend_from_slice(b"\r\n");
                *next += 1;
                true
            }
        }
    }
}

/// Whitespace-separated tokens with their byte offsets.
fn tokenize(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, ch) in line.char_indices() {
        if ch.is_whitespace() {
            if let Some(s) = start.take() {
                out.push((s, &line[s..i]));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push((s, &line[s..]));
    }
    out
}

/// Tokens of a line with their byte offsets.
type Toks<'t> = &'t [(usize, &'t str)];

enum Filter {
    Include(String),
    Exclude(String),
    Begin(String),
    Count,
    NoMore,
}

/// One command (or answer) being carried out.
struct Run<'a> {
    line: &'a str,
    toks: &'a [(usize, &'a str)],
    args: Vec<String>,
    answer: String,
    filter: Option<Filter>,
    /// Output collected so far (written as a pageable job at the end).
    out: Vec<String>,
    /// Something else (a question, a job, a close) shows the next prompt.
    waiting: bool,
}

/// `\n` / `\r\n` / `\r` line ends become `\r\n`.
fn crlf(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .replace('\n', "\r\n")
}

impl Session {
    // ----- output ------------------------------------------------------------------------

    /// Queue output. A split prompt still waiting for its second half is completed first.
    fn push(&mut self, b: &[u8]) {
        if let Some(tail) = self.prompt_tail.take() {
            self.pending.extend_from_slice(&tail);
        }
        self.pending.extend_from_slice(b);
    }

    fn emit(&mut self, s: &str) {
        self.push(s.as_bytes());
    }

    fn emit_line(&mut self, s: &str) {
        self.push(s.as_bytes());
        self.push(b"\r\n");
    }

    fn mode_def(&self, name: &str) -> &'static ModeDef {
        let p = self.p;
        p.modes
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("fake device: unknown mode {name:?}"))
    }

    fn prompt(&self) -> String {
        let t = &self.mode_def(&self.mode).prompt;
        let t = t
            .replace("{hostname}", &self.dev.hostname())
            .replace("{user}", &self.cfg.username)
            .replace("{ctx}", &self.ctx)
            .replace("{dirty}", if self.dev.dirty() { "*" } else { "" });
        self.fill_vars(t)
    }

    /// Print the prompt and go back to reading commands (a new, empty line).
    fn show_prompt(&mut self) {
        if std::mem::take(&mut self.end_pending) && self.mode_def(&self.mode).config {
            if let Some(m) = self.p.ctrl_z.clone() {
                self.mode = m;
                self.ctx.clear();
            }
        }
        self.print_prompt();
        self.editor.start_line();
        self.editor
            .set_history(if self.mode_def(&self.mode).config {
                History::Config
            } else {
                History::Exec
            });
        self.state = State::Idle(LineKind::Command);
    }

    fn print_prompt(&mut self) {
        let p = self.prompt();
        let (head, last) = match p.rfind('\n') {
            Some(i) => (&p[..=i], &p[i + 1..]),
            None => ("", p.as_str()),
        };
        self.line_prompt_len = last.chars().count();
        // Split before the last visible character ("R1" + "#", "admin@vmx1" + "> ").
        let cut = last.trim_end().char_indices().last().map_or(0, |(i, _)| i);
        let (a, b) = last.split_at(if self.cfg.prompt_split {
            cut
        } else {
            last.len()
        });
        let (on, off) = if self.cfg.ansi_prompt {
            (ANSI_PROMPT_ON, ANSI_PROMPT_OFF)
        } else {
            ("", "")
        };
        let first = format!("{head}{on}{a}{}", if b.is_empty() { off } else { "" });
        self.emit(&first);
        if !b.is_empty() {
            self.prompt_tail = Some(format!("{b}{off}").into_bytes());
        }
    }

    fn start_job(&mut self, job: Job) {
        self.job = Some(job);
        self.page_count = 0;
        self.page_budget = self.page_len;
        self.state = State::Output;
    }

    fn start_lines(&mut self, lines: Vec<String>) {
        self.start_job(Job::Lines(lines.into()));
    }

    fn slow_tick(&mut self) {
        if let State::Slow { done, total, next } = self.state {
            if done >= total {
                self.show_prompt();
            } else {
                self.emit_line(&format!("slow line {} of {}", done + 1, total));
                self.state = State::Slow {
                    done: done + 1,
                    total,
                    next: next + Duration::from_secs(1),
                };
            }
        }
    }

    // ----- input -------------------------------------------------------------------------

    /// Act on the queued input (stops while output is being written, or at the end).
    pub fn process_input(&mut self) {
        if !self.started {
            return;
        }
        while self.action.is_none() {
            if self.take_break() {
                continue;
            }
            if !matches!(
                self.state,
                State::Idle(_) | State::More | State::Hang | State::PressKey
            ) {
                break;
            }
            let Some(b) = self.input.pop_front() else {
                break;
            };
            // CR LF / LF / CR are all one line end.
            if b == b'\n' && self.last_cr {
                self.last_cr = false;
                continue;
            }
            self.last_cr = b == b'\r';
            let eol = b == b'\r' || b == b'\n';
            match self.state {
                State::Hang => self.input.clear(),
                State::More => self.more_key(b, eol),
                State::PressKey => {
                    let text = if eol {
                        String::new()
                    } else {
                        String::from_utf8_lossy(&[b]).into_owned()
                    };
                    let question = self.p.press_any_key.clone().unwrap_or_default();
                    self.log.record(Input::Key { question, text });
                    self.emit("\r\n");
                    self.show_prompt();
                }
                State::Idle(kind) => self.line_byte(kind, b, eol),
                _ => {}
            }
        }
    }

    fn more_key(&mut self, b: u8, eol: bool) {
        if let Some(pager) = &self.p.pager {
            self.push(pager.erase.as_bytes());
        }
        if b == b' ' {
            self.page_count = 0;
            self.page_budget = self.page_len;
            self.state = State::Output;
        } else if eol {
            self.page_budget = self.page_count + 1;
            self.state = State::Output;
        } else {
            self.job = None;
            self.job_paging = true;
            self.show_prompt();
        }
    }

    /// A byte typed at the command prompt: through the line editor.
    fn command_byte(&mut self, b: u8) {
        let ev = self.editor.feed(b);
        let echo = self.editor.take_echo();
        if !echo.is_empty() {
            self.push(&echo);
        }
        match ev {
            None => {}
            Some(LineEvent::Line(line)) => {
                self.on_line(
                    LineKind::Command,
                    String::from_utf8_lossy(&line).into_owned(),
                );
            }
            Some(LineEvent::End(line)) => {
                // Ctrl-Z: the line runs, then (at the next prompt) configuration mode ends.
                self.end_pending = true;
                if line.is_empty() {
                    self.show_prompt();
                } else {
                    self.on_line(
                        LineKind::Command,
                        String::from_utf8_lossy(&line).into_owned(),
                    );
                }
                self.log.record(Input::Control("^Z".into()));
            }
            Some(LineEvent::Abort) => {
                // Ctrl-C: nothing runs; in configuration mode it is like `end`.
                self.log.record(Input::Control("^C".into()));
                self.end_pending = true;
                self.show_prompt();
            }
            Some(LineEvent::Help(line)) => {
                for l in self.help(&String::from_utf8_lossy(&line)) {
                    self.emit_line(&l);
                }
                self.print_prompt();
                self.editor.redraw();
                let echo = self.editor.take_echo();
                self.push(&echo);
            }
        }
    }

    /// What `?` prints after `line`: the words of the mode's grammar that may come next (or
    /// that complete the word being typed), `<cr>` when the line is a command already.
    fn help(&self, line: &str) -> Vec<String> {
        let trie = &self.p.tries[&self.mode];
        let toks = tokenize(line);
        let partial = !line.ends_with(char::is_whitespace) && !toks.is_empty();
        let done = &toks[..toks.len() - usize::from(partial)];
        let mut node = 0;
        for &(_, t) in done {
            let n = &trie.nodes[node];
            let w = t.to_ascii_lowercase();
            let exact = n.kws.iter().find(|(k, _)| *k == w);
            let mut pre = n.kws.iter().filter(|(k, _)| k.starts_with(&w));
            let kw = exact.or(match (pre.next(), pre.next()) {
                (Some(x), None) => Some(x),
                _ => None,
            });
            if let Some(&(_, next)) = kw {
                node = next;
                continue;
            }
            match n.params.iter().find(|(p, _)| p.accepts(t)) {
                Some((Param::Rest, _)) => return vec!["  LINE".into(), "  <cr>".into(), "".into()],
                Some(&(_, next)) => node = next,
                None => return vec!["% Unrecognized command".to_string()],
            }
        }
        let n = &trie.nodes[node];
        if partial {
            let w = toks[toks.len() - 1].1.to_ascii_lowercase();
            let hits: Vec<&str> = n
                .kws
                .iter()
                .filter(|(k, _)| k.starts_with(&w))
                .map(|(k, _)| k.as_str())
                .collect();
            let mut hits = hits;
            hits.sort();
            if !hits.is_empty() {
                return vec![hits.join("  "), String::new()];
            }
            if n.params.is_empty() {
                return vec!["% Unrecognized command".to_string()];
            }
        }
        let mut out: Vec<String> = if partial {
            Vec::new()
        } else {
            let mut kws: Vec<String> = n.kws.iter().map(|(k, _)| format!("  {k}")).collect();
            kws.sort();
            kws
        };
        for (p, _) in &n.params {
            out.push(match p {
                Param::Word => "  WORD".to_string(),
                Param::Rest => "  LINE".to_string(),
                Param::Num(Some((a, b))) => format!("  <{a}-{b}>"),
                Param::Num(None) => "  <n>".to_string(),
            });
        }
        if n.cmd.is_some() {
            out.push("  <cr>".to_string());
        }
        out.push(String::new());
        out
    }

    /// A byte typed as the answer to a question: raw (BS/DEL erase, other control bytes are
    /// dropped), not echoed when the question is hidden.
    fn line_byte(&mut self, kind: LineKind, b: u8, eol: bool) {
        if kind == LineKind::Command {
            self.command_byte(b);
            return;
        }
        let echo = self.echo && !self.ask.as_ref().is_some_and(|(a, _, _)| a.hidden);
        if eol {
            let line = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
            self.emit("\r\n");
            self.on_line(kind, line);
        } else if b == 0x08 || b == 0x7f {
            if self.line.pop().is_some() && echo {
                self.emit("\x08 \x08");
            }
        } else if b >= 0x20 {
            self.line.push(b);
            if echo {
                self.push(&[b]);
            }
        }
    }

    fn on_line(&mut self, kind: LineKind, line: String) {
        match kind {
            LineKind::Command => {
                self.log.record(Input::Command(line.clone()));
                if !line.trim().is_empty() {
                    self.log.journal_push(JournalEntry {
                        mode: self.mode.clone(),
                        line: line.clone(),
                    });
                }
                self.command(&line);
            }
            LineKind::Answer => {
                let Some((ask, args, question)) = self.ask.take() else {
                    self.show_prompt();
                    return;
                };
                self.log.record(if ask.hidden {
                    Input::Hidden {
                        question,
                        text: line.clone(),
                    }
                } else {
                    Input::Answer {
                        question,
                        text: line.clone(),
                    }
                });
                let answer = line.trim();
                let rule = ask.answers.iter().find(|r| {
                    let pat_ok = r.pattern.as_ref().is_none_or(|p| {
                        Regex::new(&format!("(?i){p}")).is_ok_and(|re| re.is_match(answer))
                    });
                    let check_ok = r.check.as_deref().is_none_or(|c| match c {
                        "enable_password" => {
                            line == self.cfg.enable_password.clone().unwrap_or_default()
                        }
                        "password" => line == self.cfg.password,
                        _ => false,
                    });
                    pat_ok && check_ok
                });
                let answer = if answer.is_empty() {
                    self.fill(&ask.default, &args, "")
                } else {
                    answer.to_string()
                };
                let mut run = Run {
                    line: &line,
                    toks: &[],
                    args,
                    answer,
                    filter: None,
                    out: Vec::new(),
                    waiting: false,
                };
                if let Some(rule) = rule {
                    self.exec(&rule.act, &mut run);
                }
                self.finish(run);
            }
        }
    }

    // ----- commands ----------------------------------------------------------------------

    fn command(&mut self, line: &str) {
        self.dev.tick(Instant::now());
        let toks = tokenize(line);
        if toks.is_empty() {
            self.show_prompt();
            return;
        }
        let mode = self.mode.clone();
        self.dispatch(line, &toks, &mode);
    }

    /// Parse `toks` (offsets into `line`) as a command of `mode` and carry it out.
    fn dispatch(&mut self, line: &str, toks: &[(usize, &str)], mode: &str) {
        let p = self.p;
        let trie = &p.tries[mode];
        let accept_any = self.mode_def(mode).accept_any;
        let (toks, filter) = match self.split_filter(line, toks, trie, accept_any) {
            Ok(x) => x,
            Err(()) => {
                self.show_prompt();
                return;
            }
        };
        if toks.is_empty() {
            self.error(&p.errors.invalid, line, Some((0, 0, "")));
            self.show_prompt();
            return;
        }
        match trie.parse(toks) {
            Parse::Match { cmd, args } => {
                if self.refused(line, mode, Some(&p.commands[cmd].cmd)) {
                    self.show_prompt();
                    return;
                }
                let mut run = Run {
                    line,
                    toks,
                    args,
                    answer: String::new(),
                    filter,
                    out: Vec::new(),
                    waiting: false,
                };
                self.exec(&p.commands[cmd].act, &mut run);
                self.finish(run);
            }
            Parse::Invalid(_) if self.mode_def(mode).accept_any => {
                if self.refused(line, mode, None) {
                    self.show_prompt();
                    return;
                }
                let mut run = Run {
                    line,
                    toks,
                    args: Vec::new(),
                    answer: String::new(),
                    filter: None,
                    out: Vec::new(),
                    waiting: false,
                };
                self.exec(&p.accept_any, &mut run);
                self.finish(run);
            }
            Parse::Invalid(i) => {
                let tmpl = match (&p.errors.unknown, i) {
                    (Some(u), 0) => u,
                    _ => &p.errors.invalid,
                };
                self.error(tmpl, line, Some((i, toks[i].0, toks[i].1)));
                self.show_prompt();
            }
            Parse::Incomplete => {
                let end = line.trim_end().len() + 1;
                self.error(&p.errors.incomplete, line, Some((toks.len(), end, "")));
                self.show_prompt();
            }
            Parse::Ambiguous(i) => {
                self.error(&p.errors.ambiguous, line, Some((i, toks[i].0, toks[i].1)));
                self.show_prompt();
            }
        }
    }

    /// Split `... | include X` off; Err(()) when an error was printed.
    fn split_filter<'t>(
        &mut self,
        line: &str,
        toks: &'t [(usize, &'t str)],
        trie: &Trie,
        accept_any: bool,
    ) -> Result<(Toks<'t>, Option<Filter>), ()> {
        let p = self.p;
        if p.filters.is_empty() {
            return Ok((toks, None));
        }
        let Some(i) = toks.iter().position(|(_, t)| *t == "|") else {
            return Ok((toks, None));
        };
        // A configuration line (`description a | b`) is taken whole: only a command of the
        // mode (`do show run | include x`) has an output to filter.
        if accept_any && !matches!(trie.parse(&toks[..i]), Parse::Match { .. }) {
            return Ok((toks, None));
        }
        let Some(&(off, w)) = toks.get(i + 1) else {
            self.error(&p.errors.incomplete, line, None);
            return Err(());
        };
        let wl = w.to_ascii_lowercase();
        let kind = p.filters.get(&wl).or_else(|| {
            let m: Vec<&String> = p
                .filters
                .iter()
                .filter(|(k, _)| k.starts_with(&wl))
                .map(|(_, v)| v)
                .collect();
            if m.len() == 1 {
                Some(m[0])
            } else {
                None
            }
        });
        let pat = toks[i + 2..]
            .iter()
            .map(|(_, t)| *t)
            .collect::<Vec<_>>()
            .join(" ");
        let f = match kind.map(String::as_str) {
            Some("include") => Filter::Include(pat),
            Some("exclude") => Filter::Exclude(pat),
            Some("begin") => Filter::Begin(pat),
            Some("count") => Filter::Count,
            Some("no-more") => Filter::NoMore,
            _ => {
                // Not a filter: maybe the grammar knows the whole line (`| display set`).
                if matches!(trie.parse(toks), Parse::Match { .. }) {
                    return Ok((toks, None));
                }
                self.error(&p.errors.invalid, line, Some((i + 1, off, w)));
                return Err(());
            }
        };
        Ok((&toks[..i], Some(f)))
    }

    /// Print an error template. `tok` = (token index, byte offset, text).
    fn error(&mut self, tmpl: &[String], line: &str, tok: Option<(usize, usize, &str)>) {
        for t in tmpl {
            if t.contains("{marker}") {
                let Some((_, off, _)) = tok else { continue };
                let col = self.line_prompt_len
                    + match line.get(..off) {
                        Some(l) => l.chars().count(),
                        None => line.chars().count() + off.saturating_sub(line.len()),
                    };
                let m = t.replace("{marker}", &format!("{}^", " ".repeat(col)));
                self.emit_line(&m);
                continue;
            }
            let (idx, word) = tok.map_or((0, ""), |(i, _, w)| (i, w));
            let l = t
                .replace("{token}", word)
                .replace("{index}", &idx.to_string())
                .replace("{line}", line.trim())
                .replace("{hostname}", &self.dev.hostname());
            self.emit_line(&l);
        }
    }

    /// After a command or an answer: write its output and the prompt, unless something else
    /// (a question, a job, a close) takes over.
    fn finish(&mut self, mut run: Run) {
        if run.waiting || self.action.is_some() {
            for l in std::mem::take(&mut run.out) {
                self.emit_line(&l);
            }
            return;
        }
        if run.out.is_empty() && run.filter.is_none() {
            self.show_prompt();
            return;
        }
        let lines = std::mem::take(&mut run.out);
        let lines = match &run.filter {
            None => lines,
            Some(Filter::Include(p)) => lines.into_iter().filter(|l| l.contains(p)).collect(),
            Some(Filter::Exclude(p)) => lines.into_iter().filter(|l| !l.contains(p)).collect(),
            Some(Filter::Begin(p)) => lines.into_iter().skip_while(|l| !l.contains(p)).collect(),
            Some(Filter::Count) => vec![format!("Count: {} lines", lines.len())],
            Some(Filter::NoMore) => {
                self.job_paging = false;
                lines
            }
        };
        self.start_lines(lines);
    }

    fn cond(&self, c: &str) -> bool {
        let (neg, c) = match c.strip_prefix('!') {
            Some(x) => (true, x),
            None => (false, c),
        };
        let v = match c {
            "enable_password" => self.cfg.enable_password.is_some(),
            "unsaved" => self.dev.dirty(),
            "uncommitted" => !self.candidate.is_empty() || self.candidate_base.is_some(),
            "timer" => self.dev.timer_running(),
            c if c.starts_with("has:") => {
                Regex::new(&c[4..]).is_ok_and(|re| self.dev.has_line(&re))
            }
            "paging_locked" => self.cfg.paging_locked,
            _ => false,
        };
        v != neg
    }

    /// Fill a template.
    fn fill(&self, t: &str, args: &[String], answer: &str) -> String {
        let mut s = t
            .replace("{hostname}", &self.dev.hostname())
            .replace("{user}", &self.cfg.username)
            .replace("{ctx}", &self.ctx)
            .replace("{password}", &self.cfg.password)
            .replace("{answer}", answer)
            .replace("{term_type}", &self.term_type)
            .replace("{term_length}", &self.page_len.to_string())
            .replace("{term_width}", &self.width.to_string())
            .replace("{clock}", &clock_line());
        if s.contains("{timer_") {
            let (given, minutes, left) = self.dev.timer_info().unwrap_or_default();
            s = s
                .replace("{timer_given}", &given)
                .replace("{timer_minutes}", &minutes.to_string())
                .replace("{timer_left}", &left.to_string());
        }
        for (i, a) in args.iter().enumerate() {
            s = s.replace(&format!("{{{}}}", i + 1), a);
        }
        self.fill_vars(s)
    }

    /// `{$name}`: the session variables.
    fn fill_vars(&self, mut s: String) -> String {
        for (k, v) in &self.vars {
            s = s.replace(&format!("{{${k}}}"), v);
        }
        s
    }

    /// Whether lines recorded in the current mode wait in the candidate.
    fn in_candidate(&self) -> bool {
        self.p.commit_model || self.mode_def(&self.mode).candidate
    }

    /// Expand `say` lines: blocks, conditional lines, config.
    fn expand(&self, l: &str, run: &Run, out: &mut Vec<String>, depth: usize) {
        if depth > 8 {
            return;
        }
        if let Some(b) = l.strip_prefix('@') {
            if let Some(lines) = self.p.blocks.get(b) {
                for x in lines {
                    self.expand(x, run, out, depth + 1);
                }
            }
            return;
        }
        if let Some(rest) = l.strip_prefix('?') {
            if let Some((c, text)) = rest.split_once(':') {
                if self.cond(c) {
                    self.expand(text, run, out, depth + 1);
                }
                return;
            }
        }
        match l {
            "{config}" => out.extend(self.dev.running_config()),
            "{candidate}" => out.extend(self.candidate.iter().cloned()),
            _ => {
                let s = self
                    .fill(l, &run.args, &run.answer)
                    .replace("{line}", run.line.trim());
                out.push(s);
            }
        }
    }

    /// Carry out an action (see [`Action`]).
    fn exec(&mut self, a: &'static Action, run: &mut Run) {
        if let Some(c) = &a.cond {
            let branch = if self.cond(c) { &a.then } else { &a.otherwise };
            if let Some(b) = branch {
                self.exec(b, run);
            }
            return;
        }
        if !a.record.is_empty() && self.rejected(run) {
            return;
        }
        if let Some(pg) = &a.paging {
            let v = self.fill(pg, &run.args, &run.answer);
            let default = self.p.pager.as_ref().map_or(0, |x| x.length);
            let n = match v.as_str() {
                "off" => 0,
                "on" => default,
                x => x.parse().unwrap_or(default),
            };
            if n == 0 && self.cfg.paging_locked {
                for l in &self.p.paging_locked_error {
                    let l = self
                        .fill(l, &run.args, "")
                        .replace("{line}", run.line.trim());
                    run.out.push(l);
                }
                return;
            }
            self.page_len = n;
        }
        if let Some(w) = &a.width {
            if let Ok(n) = self.fill(w, &run.args, &run.answer).parse() {
                self.width = n;
            }
        }
        for l in &a.say {
            let mut v = Vec::new();
            self.expand(l, run, &mut v, 0);
            run.out.extend(v);
        }
        if let Some(h) = &a.hostname {
            let h = self.fill(h, &run.args, &run.answer);
            if self.in_candidate() {
                self.pending_hostname = Some(h);
            } else {
                self.dev.set_hostname(h);
            }
        }
        if !a.record.is_empty() {
            let indent = self.mode_def(&self.mode).indent.clone();
            let lines: Vec<String> = a
                .record
                .iter()
                .map(|r| {
                    self.fill(r, &run.args, &run.answer)
                        .replace("{line}", run.line.trim())
                        .replace("{indent}", &indent)
                })
                .collect();
            if self.in_candidate() {
                self.candidate.extend(lines);
            } else {
                self.dev.push_config(lines);
            }
        }
        for (k, v) in &a.set {
            let v = self.fill(v, &run.args, &run.answer);
            self.vars.insert(k.clone(), v);
        }
        if let Some(m) = &a.mode {
            let target = if m == "^" {
                self.mode_def(&self.mode)
                    .parent
                    .clone()
                    .unwrap_or_else(|| self.mode.clone())
            } else {
                m.clone()
            };
            self.mode = target;
            self.ctx.clear();
        }
        if let Some(c) = &a.ctx {
            let mut c = self.fill(c, &run.args, &run.answer);
            for (re, rep) in &self.p.ctx_rewrite {
                if let Ok(re) = Regex::new(re) {
                    c = re.replace(&c, rep.as_str()).into_owned();
                }
            }
            self.ctx = c;
        }
        if let Some(m) = &a.run_in {
            for l in std::mem::take(&mut run.out) {
                self.emit_line(&l);
            }
            run.waiting = true;
            let line = run.line;
            let toks = &run.toks[1.min(run.toks.len())..];
            if toks.is_empty() {
                self.error(&self.p.errors.incomplete, line, None);
                self.show_prompt();
            } else {
                self.dispatch(line, toks, m);
            }
            return;
        }
        if let Some(r) = &a.revert {
            self.revert(r, run);
        }
        if let Some(b) = &a.builtin {
            self.builtin(b, run);
        }
        if let Some(ask) = &a.ask {
            for l in std::mem::take(&mut run.out) {
                self.emit_line(&l);
            }
            let prompt = self.fill(&ask.prompt, &run.args, &run.answer);
            self.emit(&prompt);
            self.ask = Some((ask, run.args.clone(), prompt));
            self.state = State::Idle(LineKind::Answer);
            run.waiting = true;
        }
    }

    /// Check a config line against the persona's reject rules; prints the error if rejected.
    fn rejected(&mut self, run: &mut Run) -> bool {
        let p = self.p;
        let line = run.line.trim();
        for r in &p.reject {
            if Regex::new(&r.pattern).is_ok_and(|re| re.is_match(line)) {
                let tok = run
                    .toks
                    .get(r.at)
                    .or(run.toks.last())
                    .map(|&(o, w)| (r.at, o, w));
                let tmpl = p.errors.config_reject.as_ref().unwrap_or(&p.errors.invalid);
                self.error(tmpl, run.line, tok);
                return true;
            }
        }
        false
    }

    fn builtin(&mut self, b: &str, run: &mut Run) {
        let num = |run: &Run| run.args.first().and_then(|a| a.parse::<u64>().ok());
        match b {
            "exit" => self.action = Some(End::Exit),
            "reload" => self.action = Some(End::Reload),
            "drop" => self.action = Some(End::Drop),
            "commit" => {
                let lines = std::mem::take(&mut self.candidate);
                self.dev.commit(self.candidate_base.take(), lines);
                if let Some(h) = self.pending_hostname.take() {
                    self.dev.set_hostname(h);
                }
                // A commit saves on a commit-model platform; elsewhere (an Arista session)
                // the running config still differs from the startup one.
                self.dev.set_dirty(!self.p.commit_model);
            }
            "discard" => {
                self.candidate.clear();
                self.candidate_base = None;
                self.pending_hostname = None;
            }
            "rollback" => {
                let n = num(run).unwrap_or(0) as usize;
                if let Some(c) = self.dev.history(n) {
                    self.candidate.clear();
                    self.pending_hostname = None;
                    self.candidate_base = (n > 0).then_some(c);
                }
            }
            "save" => self.dev.set_dirty(false),
            "clock" => run.out.push(clock_line()),
            "long" | "flood" | "slow" | "hang" => {
                for l in std::mem::take(&mut run.out) {
                    self.emit_line(&l);
                }
                run.waiting = true;
                match b {
                    "long" => self.start_job(Job::Numbered {
                        next: 1,
                        last: num(run).unwrap_or(100),
                    }),
                    "flood" => self.start_job(Job::Flood {
                        next: 1,
                        last: num(run).unwrap_or(1).saturating_mul(FLOOD_LINES_PER_MIB),
                    }),
                    "slow" => {
                        self.state = State::Slow {
                            done: 0,
                            total: num(run).unwrap_or(1),
                            next: Instant::now(),
                        }
                    }
                    _ => {
                        self.emit_line("working...");
                        self.state = State::Hang;
                    }
                }
            }
            _ => {}
        }
    }
}

impl Session {
    /// An operation on the device's revert timer.
    fn revert(&mut self, r: &persona::RevertOp, run: &Run) {
        let unit = r.unit();
        if let Some(t) = &r.arm {
            let given = self.fill(t, &run.args, &run.answer);
            if let Some(d) = self.dev.duration(&given, unit) {
                self.dev.arm(&given, d);
            }
        }
        if let Some(t) = &r.reset {
            let given = self.fill(t, &run.args, &run.answer);
            if let Some(d) = self.dev.duration(&given, unit) {
                self.dev.reset(&given, d);
            }
        }
        if r.confirm {
            self.dev.confirm();
        }
        if r.now {
            self.dev.revert_now();
        }
    }

    /// A break key waiting in the input while a test-hook command runs: the command stops,
    /// `<break>` is journaled and the prompt comes back. True if it did.
    fn take_break(&mut self) -> bool {
        if !matches!(self.state, State::Output | State::Slow { .. } | State::Hang)
            || self
                .job
                .as_ref()
                .is_some_and(|j| matches!(j, Job::Lines(_)))
        {
            return false;
        }
        let keys = &self.p.break_keys;
        let Some(i) = self
            .input
            .iter()
            .position(|b| keys.iter().any(|k| k.as_bytes() == [*b]))
        else {
            return false;
        };
        self.input.drain(..=i);
        self.last_cr = false;
        self.job = None;
        self.job_paging = true;
        self.log.journal_push(JournalEntry {
            mode: self.mode.clone(),
            line: BREAK_MARK.to_string(),
        });
        self.emit("\r\n");
        self.show_prompt();
        true
    }

    /// A line the persona's `refuse` rules refuse now (`grammar`: the command's, `None` for
    /// a config line of an `accept_any` mode). Prints the refusal.
    fn refused(&mut self, line: &str, mode: &str, grammar: Option<&str>) -> bool {
        let p = self.p;
        for r in &p.refuse {
            let Some((when, commands, except)) = &r.compiled else {
                continue;
            };
            let by_mode = r.modes.iter().any(|m| m == mode);
            let by_cmd = grammar.is_some_and(|g| commands.as_ref().is_some_and(|c| c.is_match(g)));
            let excepted = grammar.is_some_and(|g| except.as_ref().is_some_and(|c| c.is_match(g)));
            if (by_mode || by_cmd) && !excepted && self.dev.has_line(when) {
                for l in &r.say {
                    let l = self.fill(l, &[], "").replace("{line}", line.trim());
                    self.emit_line(&l);
                }
                return true;
            }
        }
        false
    }
}

/// Days since 1970-01-01 to (year, month 1-12, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `*10:42:17.311 UTC Mon Nov 23 2026`, as IOS prints `show clock` with no NTP.
pub fn clock_at(t: std::time::SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let now = t
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let secs = now.as_secs();
    let days = (secs / 86_400) as i64;
    let sod = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let month = MONTHS[(m as usize).clamp(1, 12) - 1];
    format!(
        "*{:02}:{:02}:{:02}.{:03} UTC {wd} {month} {d} {y}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        now.subsec_millis()
    )
}

fn clock_line() -> String {
    clock_at(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_format_and_date_math() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let t = std::time::UNIX_EPOCH + Duration::from_millis(1_773_325_800_123);
        assert_eq!(clock_at(t), "*14:30:00.123 UTC Thu Mar 12 2026");
    }
}
