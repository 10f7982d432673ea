//! A fake Cisco IOS device that speaks real Telnet (RFC 854/855/1091/1073), std only.
//!
//! Shipped in the product for `netdev-broker demo` (a newcomer with no switch sees the whole API
//! work) and used as the fake Telnet device of the integration tests.
//!
//! Threads: one `demo-accept` thread polls a non-blocking listener; every client gets one
//! `demo-conn` thread. Every read is a 200 ms slice that checks the stop flag and the
//! connection's kill flag, so `kill_all()` and `stop()` act within a slice; `stop()` (and Drop)
//! joins every thread. At most 64 clients are served (more are closed at once) and a client
//! that sends nothing for 30 minutes is closed. Nothing on an I/O path unwraps: a client that
//! sends garbage gets its connection closed, never a panic.
//!
//! Telnet: the device offers WILL ECHO, WILL SUPPRESS-GO-AHEAD and asks DO TERMINAL-TYPE,
//! DO NAWS; a byte-at-a-time state machine (so sequences split across reads are fine) answers
//! per RFC 854 without loops, asks for the terminal type when the client agrees, and records
//! everything the client says in [`TelnetDevice::negotiation`]. Window size (NAWS) is recorded
//! but does not change the terminal length: paging is controlled by `terminal length` only.
//!
//! CLI: an IOS look-alike (user/privileged exec, global and interface configuration, keyword
//! abbreviation, `| include/exclude/begin/section` filters, `--More--` pager, IOS error
//! messages with the caret under the bad word). Configuration typed in a connection lives in that
//! connection only. Command lines are read through the IOS line editor ([`LineEditor`]: erase
//! keys, cursor keys, history, Ctrl-Z, Ctrl-C, `?`), and every line the CLI then acts on is kept
//! in [`TelnetDevice::journal`]. Usernames, passwords and answers to questions are read raw.

use std::collections::{HashMap, VecDeque};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use regex::bytes::Regex;

pub use fake_device::line_edit;
pub use fake_device::{History, JournalEntry, LineEditor, LineEvent};

// Telnet commands and options.
const IAC: u8 = 255;
const DONT: u8 = 254;
const DO: u8 = 253;
const WONT: u8 = 252;
const WILL: u8 = 251;
const SB: u8 = 250;
const SE: u8 = 240;
const OPT_ECHO: u8 = 1;
const OPT_SGA: u8 = 3;
const OPT_TTYPE: u8 = 24;
const OPT_NAWS: u8 = 31;
const TTYPE_IS: u8 = 0;
const TTYPE_SEND: u8 = 1;

/// What the device sends first on every connection.
const GREETING: [u8; 12] = [
    IAC, WILL, OPT_ECHO, IAC, WILL, OPT_SGA, IAC, DO, OPT_TTYPE, IAC, DO, OPT_NAWS,
];
/// How IOS erases ` --More-- ` once it is answered.
const MORE_ERASE: &[u8] =
    b"\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08          \x08\x08\x08\x08\x08\x08\x08\x08\x08\x08";
const MORE: &[u8] = b" --More-- ";
const CTRL_Z: u8 = 0x1a;

const MAX_CONNECTIONS: usize = 64;
const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const READ_SLICE: Duration = Duration::from_millis(200);
const PAUSE_SLICE: Duration = Duration::from_millis(50);
const ACCEPT_POLL: Duration = Duration::from_millis(25);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_LINE: usize = 4096;
const MAX_SB: usize = 512;
const MAX_RECORDS: usize = 10_000;
const LOGIN_ATTEMPTS: u32 = 3;

/// How the fake device behaves.
#[derive(Debug, Clone)]
pub struct DeviceOptions {
    /// Hostname shown in the prompt (default "R1").
    pub hostname: String,
    /// Login username (default Some("admin")); None = line password only (just "Password: ").
    pub username: Option<String>,
    /// Login password (default "cisco").
    pub password: String,
    /// Enable secret; None (default) = `enable` asks no password.
    pub enable_secret: Option<String>,
    /// Start at `R1#` instead of `R1>` (default false).
    pub start_privileged: bool,
    /// Printed (CRLF lines) before the first login prompt.
    pub banner: Option<String>,
    /// Pause before each output line (a slow device); default zero.
    pub slow: Duration,
}

impl Default for DeviceOptions {
    fn default() -> Self {
        DeviceOptions {
            hostname: "R1".to_string(),
            username: Some("admin".to_string()),
            password: "cisco".to_string(),
            enable_secret: None,
            start_privileged: false,
            banner: None,
            slow: Duration::ZERO,
        }
    }
}

/// A running fake IOS device listening for Telnet clients. Stops on [`TelnetDevice::stop`] or drop.
pub struct TelnetDevice {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    opts: DeviceOptions,
    started: Instant,
    stop: AtomicBool,
    lines: Mutex<VecDeque<String>>,
    journal: Mutex<VecDeque<JournalEntry>>,
    negotiation: Mutex<VecDeque<String>>,
    conns: Mutex<HashMap<u64, Registered>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    active: AtomicUsize,
    total: AtomicUsize,
    next_id: AtomicU64,
}

struct Registered {
    stream: TcpStream,
    killed: Arc<AtomicBool>,
}

impl TelnetDevice {
    /// Starts the device on 127.0.0.1 with a free port.
    pub fn start(opts: DeviceOptions) -> io::Result<TelnetDevice> {
        Self::start_on(opts, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Starts the device on `addr`.
    pub fn start_on(opts: DeviceOptions, addr: SocketAddr) -> io::Result<TelnetDevice> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            opts,
            started: Instant::now(),
            stop: AtomicBool::new(false),
            lines: Mutex::new(VecDeque::new()),
            journal: Mutex::new(VecDeque::new()),
            negotiation: Mutex::new(VecDeque::new()),
            conns: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
            active: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        });
        let sh = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name("demo-accept".to_string())
            .spawn(move || accept_loop(&sh, &listener))?;
        log::info!("demo device listening on port {port}");
        Ok(TelnetDevice {
            port,
            shared,
            accept: Some(accept),
        })
    }

    /// The TCP port the device listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every line typed after login, in order, over all connections: command lines (as edited)
    /// and answers to questions; passwords as "<hidden>", Ctrl-Z as "^Z" (after the line it
    /// ended, if any), Ctrl-C as "^C". Only the newest 10,000 are kept.
    pub fn lines_received(&self) -> Vec<String> {
        self.shared.lines.lock().iter().cloned().collect()
    }

    /// The command lines the CLI acted on, in order, over all connections: each line as the
    /// line editor finished it (Enter, or Ctrl-Z after text), whatever the CLI then made of it
    /// (invalid input included). Blank lines, aborted lines (Ctrl-C), `?` help, usernames,
    /// passwords and answers to questions are not in it. Only the newest 10,000 are kept.
    pub fn journal(&self) -> Vec<String> {
        self.shared
            .journal
            .lock()
            .iter()
            .map(|e| e.line.clone())
            .collect()
    }

    /// [`TelnetDevice::journal`] with the mode each line was executed in.
    pub fn journal_entries(&self) -> Vec<JournalEntry> {
        self.shared.journal.lock().iter().cloned().collect()
    }

    /// What clients negotiated, in order: "client DO ECHO", "client WILL NAWS", "NAWS 511x0",
    /// "TTYPE VT100", ... Only the newest 10,000 are kept.
    pub fn negotiation(&self) -> Vec<String> {
        self.shared.negotiation.lock().iter().cloned().collect()
    }

    /// Clients connected now.
    pub fn active_connections(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// Clients served since start (connections refused over the limit are not counted).
    pub fn total_connections(&self) -> usize {
        self.shared.total.load(Ordering::SeqCst)
    }

    /// Closes every client connection abruptly; the device keeps accepting new ones.
    pub fn kill_all(&self) {
        kill_all(&self.shared);
    }

    /// Stops accepting, closes every connection and joins every thread (Drop does the same).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        kill_all(&self.shared);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        // The accept thread has ended, so no thread can be added any more.
        let handles = std::mem::take(&mut *self.shared.threads.lock());
        for h in handles {
            let _ = h.join();
        }
    }
}

impl Drop for TelnetDevice {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for TelnetDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelnetDevice")
            .field("port", &self.port)
            .field("active", &self.active_connections())
            .finish()
    }
}

fn kill_all(shared: &Shared) {
    for r in shared.conns.lock().values() {
        r.killed.store(true, Ordering::SeqCst);
        let _ = r.stream.shutdown(Shutdown::Both);
    }
}

fn push_capped(q: &Mutex<VecDeque<String>>, s: String) {
    let mut q = q.lock();
    if q.len() >= MAX_RECORDS {
        q.pop_front();
    }
    q.push_back(s);
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => admit(shared, stream, peer),
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(ACCEPT_POLL),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                // e.g. out of file descriptors: do not spin.
                log::warn!("demo device: accept failed: {e}");
                thread::sleep(ACCEPT_POLL);
            }
        }
        reap(shared);
    }
}

/// Joins the connection threads that have ended.
fn reap(shared: &Shared) {
    let done: Vec<JoinHandle<()>> = {
        let mut threads = shared.threads.lock();
        let (done, live) = threads.drain(..).partition(|h| h.is_finished());
        *threads = live;
        done
    };
    for h in done {
        let _ = h.join();
    }
}

/// Removes a connection from the registry and the active count when its thread ends (or when
/// the thread could not be started).
struct ConnGuard {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Some(r) = self.shared.conns.lock().remove(&self.id) {
            let _ = r.stream.shutdown(Shutdown::Both);
        }
        self.shared.active.fetch_sub(1, Ordering::SeqCst);
    }
}

fn admit(shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    if shared.active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
        log::warn!("demo device: refusing {peer}: {MAX_CONNECTIONS} connections already");
        let _ = stream.shutdown(Shutdown::Both);
        return;
    }
    let setup = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(Some(READ_SLICE)))
        .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)))
        .and_then(|()| stream.try_clone());
    let registered = match setup {
        Ok(s) => s,
        Err(e) => {
            log::warn!("demo device: cannot set up connection from {peer}: {e}");
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let killed = Arc::new(AtomicBool::new(false));
    shared.conns.lock().insert(
        id,
        Registered {
            stream: registered,
            killed: Arc::clone(&killed),
        },
    );
    shared.active.fetch_add(1, Ordering::SeqCst);
    shared.total.fetch_add(1, Ordering::SeqCst);
    let guard = ConnGuard {
        shared: Arc::clone(shared),
        id,
    };
    let sh = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name("demo-conn".to_string())
        .spawn(move || {
            let _guard = guard;
            serve(&sh, stream, killed, peer);
        });
    match spawned {
        Ok(h) => shared.threads.lock().push(h),
        // The closure, and with it the guard, has been dropped: the connection is closed.
        Err(e) => log::warn!("demo device: cannot start a thread for {peer}: {e}"),
    }
}

fn serve(shared: &Shared, stream: TcpStream, killed: Arc<AtomicBool>, peer: SocketAddr) {
    log::info!("demo device: connection from {peer}");
    let mut conn = Conn::new(shared, stream, killed);
    if conn.run().is_ok() {
        let _ = conn.flush();
    }
    let _ = conn.stream.shutdown(Shutdown::Both);
    log::info!("demo device: connection from {peer} closed");
}

// ---------------------------------------------------------------------------------------------
// Telnet

/// Q-method-lite option state (RFC 1143 without the queue bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    No,
    /// We sent WILL/DO and wait for the answer.
    Asked,
    Yes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TState {
    Data,
    Iac,
    Verb(u8),
    Sb,
    SbIac,
}

/// What some input produced: data bytes, raw replies to send, records for `negotiation()`.
#[derive(Debug, Default)]
struct Fed {
    data: Vec<u8>,
    reply: Vec<u8>,
    records: Vec<String>,
}

/// The Telnet input state machine of one connection.
struct Telnet {
    state: TState,
    sb: Vec<u8>,
    /// Options the device performs (ECHO, SGA).
    us: [Opt; 256],
    /// Options the client performs (TTYPE, NAWS).
    him: [Opt; 256],
    ttype: Option<String>,
    naws: Option<(u16, u16)>,
}

fn opt_name(o: u8) -> String {
    let name = match o {
        0 => "BINARY",
        1 => "ECHO",
        3 => "SUPPRESS-GO-AHEAD",
        5 => "STATUS",
        6 => "TIMING-MARK",
        24 => "TERMINAL-TYPE",
        31 => "NAWS",
        32 => "TERMINAL-SPEED",
        33 => "REMOTE-FLOW-CONTROL",
        34 => "LINEMODE",
        35 => "X-DISPLAY-LOCATION",
        36 => "ENVIRON",
        39 => "NEW-ENVIRON",
        _ => return o.to_string(),
    };
    name.to_string()
}

impl Telnet {
    /// The state right after [`GREETING`] was sent.
    fn new() -> Telnet {
        let mut us = [Opt::No; 256];
        let mut him = [Opt::No; 256];
        us[OPT_ECHO as usize] = Opt::Asked;
        us[OPT_SGA as usize] = Opt::Asked;
        him[OPT_TTYPE as usize] = Opt::Asked;
        him[OPT_NAWS as usize] = Opt::Asked;
        Telnet {
            state: TState::Data,
            sb: Vec::new(),
            us,
            him,
            ttype: None,
            naws: None,
        }
    }

    /// Whether the device echoes (it offered WILL ECHO and the client did not refuse).
    fn echoing(&self) -> bool {
        self.us[OPT_ECHO as usize] != Opt::No
    }

    fn feed(&mut self, b: u8, fed: &mut Fed) {
        match self.state {
            TState::Data => {
                if b == IAC {
                    self.state = TState::Iac;
                } else {
                    fed.data.push(b);
                }
            }
            TState::Iac => {
                self.state = TState::Data;
                match b {
                    IAC => fed.data.push(IAC),
                    WILL | WONT | DO | DONT => self.state = TState::Verb(b),
                    SB => {
                        self.sb.clear();
                        self.state = TState::Sb;
                    }
                    // NOP, DM, BRK, IP, AO, AYT, EC, EL, GA, stray SE: nothing to do.
                    _ => {}
                }
            }
            TState::Verb(verb) => {
                self.state = TState::Data;
                self.option(verb, b, fed);
            }
            TState::Sb => {
                if b == IAC {
                    self.state = TState::SbIac;
                } else if self.sb.len() < MAX_SB {
                    self.sb.push(b);
                }
            }
            TState::SbIac => match b {
                IAC => {
                    if self.sb.len() < MAX_SB {
                        self.sb.push(IAC);
                    }
                    self.state = TState::Sb;
                }
                SE => {
                    self.state = TState::Data;
                    self.subnegotiation(fed);
                }
                _ => {
                    // Malformed: the client forgot IAC SE. Drop the subnegotiation and take
                    // this byte as the command after IAC.
                    self.sb.clear();
                    self.state = TState::Iac;
                    self.feed(b, fed);
                }
            },
        }
    }

    fn option(&mut self, verb: u8, opt: u8, fed: &mut Fed) {
        let v = match verb {
            WILL => "WILL",
            WONT => "WONT",
            DO => "DO",
            _ => "DONT",
        };
        fed.records.push(format!("client {v} {}", opt_name(opt)));
        let i = opt as usize;
        match verb {
            WILL => {
                if opt == OPT_TTYPE || opt == OPT_NAWS {
                    let was = self.him[i];
                    self.him[i] = Opt::Yes;
                    if was == Opt::No {
                        fed.reply.extend_from_slice(&[IAC, DO, opt]);
                    }
                    if was != Opt::Yes && opt == OPT_TTYPE {
                        fed.reply
                            .extend_from_slice(&[IAC, SB, OPT_TTYPE, TTYPE_SEND, IAC, SE]);
                    }
                } else {
                    fed.reply.extend_from_slice(&[IAC, DONT, opt]);
                }
            }
            WONT => {
                if self.him[i] == Opt::Yes {
                    fed.reply.extend_from_slice(&[IAC, DONT, opt]);
                }
                self.him[i] = Opt::No;
            }
            DO => {
                if opt == OPT_ECHO || opt == OPT_SGA {
                    if self.us[i] == Opt::No {
                        fed.reply.extend_from_slice(&[IAC, WILL, opt]);
                    }
                    self.us[i] = Opt::Yes;
                } else {
                    fed.reply.extend_from_slice(&[IAC, WONT, opt]);
                }
            }
            _ => {
                if self.us[i] == Opt::Yes {
                    fed.reply.extend_from_slice(&[IAC, WONT, opt]);
                }
                self.us[i] = Opt::No;
            }
        }
    }

    fn subnegotiation(&mut self, fed: &mut Fed) {
        match self.sb.as_slice() {
            [OPT_TTYPE, TTYPE_IS, name @ ..] => {
                let name: String = String::from_utf8_lossy(name)
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(64)
                    .collect();
                fed.records.push(format!("TTYPE {name}"));
                self.ttype = Some(name);
            }
            [OPT_NAWS, w1, w0, h1, h0] => {
                let w = u16::from_be_bytes([*w1, *w0]);
                let h = u16::from_be_bytes([*h1, *h0]);
                fed.records.push(format!("NAWS {w}x{h}"));
                self.naws = Some((w, h));
            }
            [opt, rest @ ..] => {
                fed.records
                    .push(format!("SB {} ({} bytes)", opt_name(*opt), rest.len()))
            }
            [] => {}
        }
        self.sb.clear();
    }
}

// ---------------------------------------------------------------------------------------------
// The CLI grammar (pure functions, so they can be tested without a socket)

/// A word of a command line and the column (in characters) where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Word {
    col: usize,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum CliErr {
    /// `% Invalid input detected at '^' marker.` with the caret at this column of the line.
    Invalid(usize),
    Incomplete,
    Ambiguous,
}

/// A `| include ...` part of a line: where the bar is and the words after it.
#[derive(Debug, Clone)]
struct Pipe {
    col: usize,
    words: Vec<Word>,
}

fn words_of(text: &str, offset: usize) -> Vec<Word> {
    let mut words = Vec::new();
    let mut cur: Option<Word> = None;
    for (i, ch) in text.chars().enumerate() {
        if ch.is_whitespace() {
            if let Some(w) = cur.take() {
                words.push(w);
            }
        } else if let Some(w) = cur.as_mut() {
            w.text.push(ch);
        } else {
            cur = Some(Word {
                col: offset + i,
                text: ch.to_string(),
            });
        }
    }
    words.extend(cur);
    words
}

/// Splits a line into the command's words and an optional output filter after `|`.
fn tokenize(line: &str) -> (Vec<Word>, Option<Pipe>) {
    match line.chars().position(|c| c == '|') {
        None => (words_of(line, 0), None),
        Some(col) => {
            let head: String = line.chars().take(col).collect();
            let tail: String = line.chars().skip(col + 1).collect();
            let pipe = Pipe {
                col,
                words: words_of(&tail, col + 1),
            };
            (words_of(&head, 0), Some(pipe))
        }
    }
}

/// IOS keyword matching: an exact match or a unique prefix.
fn kw(word: &Word, choices: &[&'static str]) -> Result<&'static str, CliErr> {
    let w = word.text.to_ascii_lowercase();
    if let Some(c) = choices.iter().find(|c| c.to_ascii_lowercase() == w) {
        return Ok(c);
    }
    let mut hits = choices
        .iter()
        .filter(|c| c.to_ascii_lowercase().starts_with(&w));
    match (hits.next(), hits.next()) {
        (Some(c), None) => Ok(c),
        (None, _) => Err(CliErr::Invalid(word.col)),
        _ => Err(CliErr::Ambiguous),
    }
}

fn need(w: &[Word], i: usize) -> Result<&Word, CliErr> {
    w.get(i).ok_or(CliErr::Incomplete)
}

fn done(w: &[Word], i: usize) -> Result<(), CliErr> {
    match w.get(i) {
        Some(x) => Err(CliErr::Invalid(x.col)),
        None => Ok(()),
    }
}

fn num<T: FromStr + PartialOrd>(word: &Word, lo: T, hi: T) -> Result<T, CliErr> {
    match word.text.parse::<T>() {
        Ok(v) if lo <= v && v <= hi => Ok(v),
        _ => Err(CliErr::Invalid(word.col)),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Show {
    Version,
    Clock,
    IpIntBrief,
    RunningConfig,
    Privilege,
    Terminal,
    Long(usize),
    Slow(Duration, String),
}

#[derive(Debug, Clone, PartialEq)]
enum Cmd {
    Enable(u8),
    Disable,
    TermLength(usize),
    TermWidth(usize),
    Show(Show),
    Configure { ask: bool },
    WriteMemory,
    CopyRunStart,
    Reload,
    Exit,
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FilterKind {
    Begin,
    Exclude,
    Include,
    Section,
}

#[derive(Debug, Clone)]
struct Filter {
    kind: FilterKind,
    re: Regex,
}

impl Filter {
    fn apply(&self, mut lines: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        match self.kind {
            FilterKind::Include => lines.retain(|l| self.re.is_match(l)),
            FilterKind::Exclude => lines.retain(|l| !self.re.is_match(l)),
            FilterKind::Begin => {
                let start = lines
                    .iter()
                    .position(|l| self.re.is_match(l))
                    .unwrap_or(lines.len());
                lines.drain(..start);
            }
            FilterKind::Section => {
                // A section is an unindented line and the indented lines under it; a section
                // is shown whole when any of its lines matches.
                let mut out = Vec::new();
                let mut section: Vec<Vec<u8>> = Vec::new();
                let mut hit = false;
                for l in lines {
                    if !l.starts_with(b" ") && !section.is_empty() {
                        if hit {
                            out.append(&mut section);
                        }
                        section.clear();
                        hit = false;
                    }
                    hit |= self.re.is_match(&l);
                    section.push(l);
                }
                if hit {
                    out.append(&mut section);
                }
                lines = out;
            }
        }
        lines
    }
}

const USER_EXEC: &[&str] = &[
    "disable", "drop", "enable", "exit", "logout", "show", "terminal",
];
const PRIV_EXEC: &[&str] = &[
    "configure",
    "copy",
    "disable",
    "drop",
    "enable",
    "exit",
    "logout",
    "reload",
    "show",
    "terminal",
    "write",
];
const SHOW_USER: &[&str] = &[
    "clock",
    "ip",
    "long",
    "privilege",
    "slow",
    "terminal",
    "version",
];
const SHOW_PRIV: &[&str] = &[
    "clock",
    "ip",
    "long",
    "privilege",
    "running-config",
    "slow",
    "terminal",
    "version",
];

fn parse_filter(pipe: &Pipe) -> Result<Filter, CliErr> {
    let first = need(&pipe.words, 0)?;
    let kind = match kw(first, &["begin", "exclude", "include", "section"])? {
        "begin" => FilterKind::Begin,
        "exclude" => FilterKind::Exclude,
        "include" => FilterKind::Include,
        _ => FilterKind::Section,
    };
    let pat_word = need(&pipe.words, 1)?;
    let pattern: Vec<&str> = pipe.words[1..].iter().map(|w| w.text.as_str()).collect();
    let re = Regex::new(&pattern.join(" ")).map_err(|_| CliErr::Invalid(pat_word.col))?;
    Ok(Filter { kind, re })
}

/// Parses an exec command (user or privileged) and its output filter.
fn parse_exec(
    w: &[Word],
    pipe: Option<&Pipe>,
    privileged: bool,
) -> Result<(Cmd, Option<Filter>), CliErr> {
    let cmd = kw(need(w, 0)?, if privileged { PRIV_EXEC } else { USER_EXEC })?;
    let cmd = match cmd {
        "enable" => {
            let level = match w.get(1) {
                Some(x) => num(x, 0u8, 15)?,
                None => 15,
            };
            done(w, 2)?;
            Cmd::Enable(level)
        }
        "disable" => {
            done(w, 1)?;
            Cmd::Disable
        }
        "drop" => {
            done(w, 1)?;
            Cmd::Drop
        }
        "exit" | "logout" => {
            done(w, 1)?;
            Cmd::Exit
        }
        "terminal" => {
            let sub = kw(need(w, 1)?, &["length", "width"])?;
            let n = num(need(w, 2)?, 0usize, 512)?;
            done(w, 3)?;
            if sub == "length" {
                Cmd::TermLength(n)
            } else {
                Cmd::TermWidth(n)
            }
        }
        "show" => Cmd::Show(parse_show(w, privileged)?),
        "configure" => match w.get(1) {
            None => Cmd::Configure { ask: true },
            Some(x) => {
                kw(x, &["terminal"])?;
                done(w, 2)?;
                Cmd::Configure { ask: false }
            }
        },
        "copy" => {
            kw(need(w, 1)?, &["running-config"])?;
            kw(need(w, 2)?, &["startup-config"])?;
            done(w, 3)?;
            Cmd::CopyRunStart
        }
        "reload" => {
            done(w, 1)?;
            Cmd::Reload
        }
        _ => {
            // write [memory]
            if let Some(x) = w.get(1) {
                kw(x, &["memory"])?;
            }
            done(w, 2)?;
            Cmd::WriteMemory
        }
    };
    let filter = match pipe {
        None => None,
        Some(p) if matches!(cmd, Cmd::Show(_)) => Some(parse_filter(p)?),
        Some(p) => return Err(CliErr::Invalid(p.col)),
    };
    Ok((cmd, filter))
}

fn parse_show(w: &[Word], privileged: bool) -> Result<Show, CliErr> {
    let what = kw(need(w, 1)?, if privileged { SHOW_PRIV } else { SHOW_USER })?;
    let show = match what {
        "ip" => {
            kw(need(w, 2)?, &["interface"])?;
            kw(need(w, 3)?, &["brief"])?;
            done(w, 4)?;
            return Ok(Show::IpIntBrief);
        }
        "long" => {
            let n = num(need(w, 2)?, 1usize, 100_000)?;
            done(w, 3)?;
            return Ok(Show::Long(n));
        }
        "slow" => {
            let x = need(w, 2)?;
            let secs = num(x, 0.0f64, 3600.0)?;
            done(w, 3)?;
            return Ok(Show::Slow(Duration::from_secs_f64(secs), x.text.clone()));
        }
        "version" => Show::Version,
        "clock" => Show::Clock,
        "privilege" => Show::Privilege,
        "terminal" => Show::Terminal,
        _ => Show::RunningConfig,
    };
    done(w, 2)?;
    Ok(show)
}

#[derive(Debug, Clone)]
enum Cfg {
    Do(Cmd, Option<Filter>),
    End,
    Exit,
    Hostname(String),
    NoHostname,
    Interface(String),
    NoInterface(String),
    Description(Vec<u8>),
    NoDescription,
    IpAddress(Ipv4Addr, Ipv4Addr),
    NoIpAddress,
    Shutdown(bool),
}

const CONFIG_GLOBAL: &[&str] = &["do", "end", "exit", "hostname", "interface", "no"];
const CONFIG_IF: &[&str] = &[
    "description",
    "do",
    "end",
    "exit",
    "hostname",
    "interface",
    "ip",
    "no",
    "shutdown",
];
const NO_GLOBAL: &[&str] = &["hostname", "interface"];
const NO_IF: &[&str] = &["description", "hostname", "interface", "ip", "shutdown"];
const IF_TYPES: &[&str] = &[
    "GigabitEthernet",
    "Loopback",
    "Port-channel",
    "TenGigabitEthernet",
    "Vlan",
];

/// The text after the first word of a raw line, trimmed (the argument of `description`).
fn rest_after_first_word(raw: &[u8]) -> &[u8] {
    let ws = |b: &u8| b.is_ascii_whitespace();
    let start = raw.iter().position(|b| !ws(b)).unwrap_or(raw.len());
    let raw = &raw[start..];
    let end_kw = raw.iter().position(ws).unwrap_or(raw.len());
    let raw = &raw[end_kw..];
    let start = raw.iter().position(|b| !ws(b)).unwrap_or(raw.len());
    let raw = &raw[start..];
    let end = raw.iter().rposition(|b| !ws(b)).map_or(0, |p| p + 1);
    &raw[..end]
}

/// `interface gi1/0/1`, `interface Gi 1/0/1`, `interface lo0`: the full interface name.
fn parse_ifname(w: &[Word], i: usize, ifaces: &[Iface], create: bool) -> Result<String, CliErr> {
    let first = need(w, i)?;
    let joined: String = w[i..].iter().map(|x| x.text.as_str()).collect();
    let split = joined
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(joined.len());
    let (kind, number) = joined.split_at(split);
    if kind.is_empty() {
        return Err(CliErr::Invalid(first.col));
    }
    let kind = kw(
        &Word {
            col: first.col,
            text: kind.to_string(),
        },
        IF_TYPES,
    )?;
    if number.is_empty() {
        return Err(CliErr::Incomplete);
    }
    let bad = CliErr::Invalid(w.last().map_or(first.col, |x| x.col));
    let parts: Vec<&str> = number.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 10)
    {
        return Err(bad);
    }
    let name = format!("{kind}{number}");
    let known = ifaces.iter().any(|f| f.name == name);
    let virtual_ok = match kind {
        "Loopback" => parts.len() == 1 && number.parse::<u64>().is_ok_and(|n| n <= 2_147_483_647),
        "Vlan" => parts.len() == 1 && number.parse::<u64>().is_ok_and(|n| (1..=4094).contains(&n)),
        "Port-channel" => {
            parts.len() == 1 && number.parse::<u64>().is_ok_and(|n| (1..=128).contains(&n))
        }
        _ => false,
    };
    if known || (create && virtual_ok) {
        Ok(name)
    } else {
        Err(bad)
    }
}

fn parse_config(
    w: &[Word],
    pipe: Option<&Pipe>,
    raw: &[u8],
    in_if: bool,
    ifaces: &[Iface],
) -> Result<Cfg, CliErr> {
    let first = need(w, 0)?;
    let cmd = kw(first, if in_if { CONFIG_IF } else { CONFIG_GLOBAL })?;
    if cmd == "do" {
        let (c, f) = parse_exec(&w[1..], pipe, true)?;
        return Ok(Cfg::Do(c, f));
    }
    if cmd == "description" {
        // The text is taken raw: it may hold '|' and any byte.
        let text = rest_after_first_word(raw);
        if text.is_empty() {
            return Err(CliErr::Incomplete);
        }
        return Ok(Cfg::Description(text.iter().copied().take(240).collect()));
    }
    if let Some(p) = pipe {
        return Err(CliErr::Invalid(p.col));
    }
    let cfg = match cmd {
        "end" => {
            done(w, 1)?;
            Cfg::End
        }
        "exit" => {
            done(w, 1)?;
            Cfg::Exit
        }
        "hostname" => {
            let h = need(w, 1)?;
            let ok = h.text.len() <= 63
                && h.text.starts_with(|c: char| c.is_ascii_alphabetic())
                && h.text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
            if !ok {
                return Err(CliErr::Invalid(h.col));
            }
            done(w, 2)?;
            Cfg::Hostname(h.text.clone())
        }
        "interface" => Cfg::Interface(parse_ifname(w, 1, ifaces, true)?),
        "ip" => {
            kw(need(w, 1)?, &["address"])?;
            let a = need(w, 2)?;
            let a_ip = a.text.parse().map_err(|_| CliErr::Invalid(a.col))?;
            let m = need(w, 3)?;
            let m_ip = m.text.parse().map_err(|_| CliErr::Invalid(m.col))?;
            done(w, 4)?;
            Cfg::IpAddress(a_ip, m_ip)
        }
        "shutdown" => {
            done(w, 1)?;
            Cfg::Shutdown(true)
        }
        _ => parse_no(w, in_if, ifaces)?,
    };
    Ok(cfg)
}

fn parse_no(w: &[Word], in_if: bool, ifaces: &[Iface]) -> Result<Cfg, CliErr> {
    let what = kw(need(w, 1)?, if in_if { NO_IF } else { NO_GLOBAL })?;
    Ok(match what {
        "description" => Cfg::NoDescription,
        "hostname" => {
            done(w, 2)?;
            Cfg::NoHostname
        }
        "interface" => {
            let name = parse_ifname(w, 2, ifaces, false)?;
            if name.starts_with("GigabitEthernet") || name.starts_with("TenGigabitEthernet") {
                return Err(CliErr::Invalid(w[2].col));
            }
            Cfg::NoInterface(name)
        }
        "ip" => {
            // `no ip address [A M]`
            kw(need(w, 2)?, &["address"])?;
            Cfg::NoIpAddress
        }
        _ => {
            done(w, 2)?;
            Cfg::Shutdown(false)
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Device state shown by the CLI

#[derive(Debug, Clone)]
struct Iface {
    name: String,
    description: Option<Vec<u8>>,
    addr: Option<(Ipv4Addr, Ipv4Addr)>,
    shutdown: bool,
    link: bool,
    method: &'static str,
    mgmt: bool,
}

impl Iface {
    fn new(name: &str) -> Iface {
        Iface {
            name: name.to_string(),
            description: None,
            addr: None,
            shutdown: false,
            link: name.starts_with("Loopback"),
            method: "unset",
            mgmt: false,
        }
    }
}

fn default_ifaces() -> Vec<Iface> {
    let mut mgmt = Iface::new("GigabitEthernet0/0");
    mgmt.addr = Some((
        Ipv4Addr::new(192, 168, 0, 10),
        Ipv4Addr::new(255, 255, 255, 0),
    ));
    mgmt.link = true;
    mgmt.method = "NVRAM";
    mgmt.mgmt = true;
    let mut up = Iface::new("GigabitEthernet1/0/1");
    up.description = Some(b"uplink to core1".to_vec());
    up.link = true;
    let mut p2p = Iface::new("GigabitEthernet1/0/2");
    p2p.addr = Some((
        Ipv4Addr::new(10, 0, 12, 1),
        Ipv4Addr::new(255, 255, 255, 252),
    ));
    p2p.method = "NVRAM";
    let mut vlan = Iface::new("Vlan1");
    vlan.shutdown = true;
    vlan.method = "NVRAM";
    vec![mgmt, up, p2p, vlan]
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

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
fn clock_line(t: SystemTime) -> String {
    let now = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
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

/// `1 week, 3 days, 4 hours, 12 minutes`.
fn uptime_text(d: Duration) -> String {
    let m = d.as_secs() / 60;
    let units = [
        (m / (7 * 24 * 60), "week"),
        (m / (24 * 60) % 7, "day"),
        (m / 60 % 24, "hour"),
        (m % 60, "minute"),
    ];
    let parts: Vec<String> = units
        .iter()
        .skip_while(|(n, unit)| *n == 0 && *unit != "minute")
        .map(|(n, unit)| format!("{n} {unit}{}", if *n == 1 { "" } else { "s" }))
        .collect();
    parts.join(", ")
}

// ---------------------------------------------------------------------------------------------
// One connection

/// The connection ended (closed by the client, killed, stopped, idle, or an I/O error).
#[derive(Debug)]
struct Gone;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Stay,
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Exec,
    Config,
    ConfigIf(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    No,
    Start,
    Csi,
    Ss3,
}

struct Conn<'a> {
    shared: &'a Shared,
    stream: TcpStream,
    killed: Arc<AtomicBool>,
    telnet: Telnet,
    input: VecDeque<u8>,
    out: Vec<u8>,
    after_cr: bool,
    last_input: Instant,
    hostname: String,
    mode: Mode,
    privileged: bool,
    length: usize,
    width: usize,
    ifaces: Vec<Iface>,
    editor: LineEditor,
}

impl<'a> Conn<'a> {
    fn new(shared: &'a Shared, stream: TcpStream, killed: Arc<AtomicBool>) -> Conn<'a> {
        Conn {
            shared,
            stream,
            killed,
            telnet: Telnet::new(),
            input: VecDeque::new(),
            out: Vec::new(),
            after_cr: false,
            last_input: Instant::now(),
            hostname: shared.opts.hostname.clone(),
            mode: Mode::Exec,
            privileged: shared.opts.start_privileged,
            length: 24,
            width: 80,
            ifaces: default_ifaces(),
            editor: LineEditor::new(),
        }
    }

    fn should_stop(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst) || self.killed.load(Ordering::SeqCst)
    }

    // -- output --------------------------------------------------------------------------

    /// Queues data bytes, escaping 255 as IAC IAC.
    fn send(&mut self, data: &[u8]) {
        for &b in data {
            if b == IAC {
                self.out.push(IAC);
            }
            self.out.push(b);
        }
    }

    fn flush(&mut self) -> Result<(), Gone> {
        if self.out.is_empty() {
            return Ok(());
        }
        let r = self.stream.write_all(&self.out);
        self.out.clear();
        r.map_err(|_| Gone)
    }

    /// Sleeps `d`, waking early (with `Gone`) on stop or kill.
    fn pause(&mut self, d: Duration) -> Result<(), Gone> {
        self.flush()?;
        let deadline = Instant::now().checked_add(d);
        loop {
            if self.should_stop() {
                return Err(Gone);
            }
            let left = match deadline {
                Some(t) => t.saturating_duration_since(Instant::now()),
                None => PAUSE_SLICE,
            };
            if left.is_zero() {
                return Ok(());
            }
            thread::sleep(left.min(PAUSE_SLICE));
        }
    }

    /// Prints lines (CR LF after each), paging by `page` lines when it is not zero.
    fn emit_paged(&mut self, lines: Vec<Vec<u8>>, page: usize) -> Result<(), Gone> {
        let slow = self.shared.opts.slow;
        let mut budget = if page == 0 { usize::MAX } else { page };
        for line in lines {
            if budget == 0 {
                self.out.extend_from_slice(MORE);
                let key = self.next_byte()?;
                self.out.extend_from_slice(MORE_ERASE);
                match key {
                    b' ' => budget = page,
                    b'\r' | b'\n' => budget = 1,
                    _ => return Ok(()),
                }
            }
            if !slow.is_zero() {
                self.pause(slow)?;
            }
            self.send(&line);
            self.out.extend_from_slice(b"\r\n");
            budget -= 1;
        }
        Ok(())
    }

    fn emit(&mut self, lines: Vec<Vec<u8>>) -> Result<(), Gone> {
        self.emit_paged(lines, self.length)
    }

    fn emit_strs<S: AsRef<str>>(&mut self, lines: &[S]) -> Result<(), Gone> {
        let lines = lines
            .iter()
            .map(|l| l.as_ref().as_bytes().to_vec())
            .collect();
        self.emit(lines)
    }

    // -- input ---------------------------------------------------------------------------

    /// Waits (in read slices) until some data byte is queued.
    fn fill(&mut self) -> Result<(), Gone> {
        self.flush()?;
        let mut buf = [0u8; 2048];
        while self.input.is_empty() {
            if self.should_stop() {
                return Err(Gone);
            }
            if self.last_input.elapsed() >= IDLE_TIMEOUT {
                log::info!("demo device: closing an idle connection");
                return Err(Gone);
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(Gone),
                Ok(n) => {
                    self.last_input = Instant::now();
                    let mut fed = Fed::default();
                    for &b in &buf[..n] {
                        self.telnet.feed(b, &mut fed);
                    }
                    self.input.extend(fed.data);
                    self.out.extend_from_slice(&fed.reply);
                    for r in fed.records {
                        push_capped(&self.shared.negotiation, r);
                    }
                    self.flush()?;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => return Err(Gone),
            }
        }
        Ok(())
    }

    /// The next data byte; the LF or NUL after a CR is dropped (CR LF and CR NUL are one Enter).
    fn next_byte(&mut self) -> Result<u8, Gone> {
        loop {
            let Some(b) = self.input.pop_front() else {
                self.fill()?;
                continue;
            };
            if std::mem::take(&mut self.after_cr) && (b == 0 || b == b'\n') {
                continue;
            }
            if b == b'\r' {
                self.after_cr = true;
            }
            return Ok(b);
        }
    }

    /// Reads a line, echoing it when `echo` (and the client let the device echo).
    fn read_line(&mut self, echo: bool) -> Result<Vec<u8>, Gone> {
        let echo = echo && self.telnet.echoing();
        let mut line = Vec::new();
        let mut esc = Esc::No;
        loop {
            let b = self.next_byte()?;
            // Cursor keys and other escape sequences are swallowed.
            match esc {
                Esc::No => {}
                Esc::Start => {
                    esc = match b {
                        b'[' => Esc::Csi,
                        b'O' => Esc::Ss3,
                        _ => Esc::No,
                    };
                    continue;
                }
                Esc::Csi => {
                    if (0x40..=0x7e).contains(&b) {
                        esc = Esc::No;
                    }
                    continue;
                }
                Esc::Ss3 => {
                    esc = Esc::No;
                    continue;
                }
            }
            match b {
                b'\r' | b'\n' => {
                    if echo {
                        self.out.extend_from_slice(b"\r\n");
                    }
                    return Ok(line);
                }
                0x08 | 0x7f => {
                    // Remove one character (all bytes of a UTF-8 sequence).
                    let mut removed = false;
                    while let Some(x) = line.pop() {
                        removed = true;
                        if x & 0xc0 != 0x80 {
                            break;
                        }
                    }
                    if removed && echo {
                        self.out.extend_from_slice(b"\x08 \x08");
                    }
                }
                CTRL_Z => {
                    if echo {
                        self.out.extend_from_slice(b"^Z\r\n");
                    }
                    return Ok(vec![CTRL_Z]);
                }
                0x1b => esc = Esc::Start,
                0x00..=0x1f => {}
                _ => {
                    if line.len() < MAX_LINE {
                        line.push(b);
                        if echo {
                            self.send(&[b]);
                        }
                    }
                }
            }
        }
    }

    fn record(&self, line: &str) {
        push_capped(&self.shared.lines, line.to_string());
    }

    fn journal(&self, line: &str) {
        let mut q = self.shared.journal.lock();
        if q.len() >= MAX_RECORDS {
            q.pop_front();
        }
        q.push_back(JournalEntry {
            mode: self.mode_name().to_string(),
            line: line.to_string(),
        });
    }

    fn mode_name(&self) -> &'static str {
        match self.mode {
            Mode::Exec if self.privileged => "priv",
            Mode::Exec => "user",
            Mode::Config => "config",
            Mode::ConfigIf(_) => "config-if",
        }
    }

    /// Reads a command line at `prompt` (already sent) through the line editor; `?` prints help
    /// and the prompt again. Returns Line, End or Abort.
    fn read_command(&mut self, prompt: &str) -> Result<LineEvent, Gone> {
        self.editor.set_echo(self.telnet.echoing());
        self.editor.set_history(match self.mode {
            Mode::Exec => History::Exec,
            _ => History::Config,
        });
        self.editor.start_line();
        loop {
            let b = self.next_byte()?;
            let ev = self.editor.feed(b);
            let echo = self.editor.take_echo();
            self.send(&echo);
            match ev {
                None => {}
                Some(LineEvent::Help(line)) => {
                    let help = self.help(&String::from_utf8_lossy(&line));
                    self.emit_paged(help.into_iter().map(String::into_bytes).collect(), 0)?;
                    self.send(prompt.as_bytes());
                    self.editor.redraw();
                    let echo = self.editor.take_echo();
                    self.send(&echo);
                }
                Some(ev) => return Ok(ev),
            }
        }
    }

    /// What `?` prints after `line`: the keywords that may come next (or that complete the word
    /// being typed). Modelled for the first word and the word after `show`; elsewhere `<cr>`.
    fn help(&self, line: &str) -> Vec<String> {
        let (words, pipe) = tokenize(line);
        let partial = !line.ends_with(char::is_whitespace) && !words.is_empty();
        let done = if partial {
            &words[..words.len() - 1]
        } else {
            &words[..]
        };
        let top = match (&self.mode, self.privileged) {
            (Mode::Exec, false) => USER_EXEC,
            (Mode::Exec, true) => PRIV_EXEC,
            (Mode::Config, _) => CONFIG_GLOBAL,
            (Mode::ConfigIf(_), _) => CONFIG_IF,
        };
        let choices = match done {
            _ if pipe.is_some() => None,
            [] => Some(top),
            [w] if matches!(self.mode, Mode::Exec) && kw(w, top) == Ok("show") => {
                Some(if self.privileged {
                    SHOW_PRIV
                } else {
                    SHOW_USER
                })
            }
            _ => None,
        };
        let Some(choices) = choices else {
            return vec!["  <cr>".to_string(), String::new()];
        };
        if partial {
            let typed = words[words.len() - 1].text.to_ascii_lowercase();
            let hits: Vec<&str> = choices
                .iter()
                .copied()
                .filter(|c| c.to_ascii_lowercase().starts_with(&typed))
                .collect();
            if hits.is_empty() {
                return vec!["% Unrecognized command".to_string()];
            }
            return vec![hits.join("  "), String::new()];
        }
        let mut v: Vec<String> = choices.iter().map(|c| format!("  {c}")).collect();
        v.push(String::new());
        v
    }

    // -- session -------------------------------------------------------------------------

    fn run(&mut self) -> Result<(), Gone> {
        let shared = self.shared;
        self.out.extend_from_slice(&GREETING);
        if let Some(banner) = &shared.opts.banner {
            let lines = banner.lines().map(|l| l.as_bytes().to_vec()).collect();
            self.emit_paged(lines, 0)?;
        }
        self.send(b"\r\nUser Access Verification\r\n\r\n");
        if !self.login()? {
            return Ok(());
        }
        loop {
            let prompt = self.prompt();
            self.send(prompt.as_bytes());
            let (raw, end) = match self.read_command(&prompt)? {
                LineEvent::Line(raw) => (raw, false),
                LineEvent::End(raw) => (raw, true),
                _ => {
                    // Ctrl-C: the line is dropped; configuration mode ends.
                    self.record("^C");
                    self.mode = Mode::Exec;
                    continue;
                }
            };
            if !end || !raw.is_empty() {
                let line = String::from_utf8_lossy(&raw).into_owned();
                self.record(&line);
                if line.trim() != "" {
                    self.journal(&line);
                }
                if self.dispatch(&raw, &line, prompt.chars().count())? == Flow::Close {
                    return Ok(());
                }
            }
            if end {
                // Ctrl-Z: after the line, like `end`.
                self.record("^Z");
                self.mode = Mode::Exec;
            }
        }
    }

    /// Username/password (or line password) with three attempts; false = give up and close.
    fn login(&mut self) -> Result<bool, Gone> {
        let opts = &self.shared.opts;
        for _ in 0..LOGIN_ATTEMPTS {
            let user_ok = match &opts.username {
                Some(u) => {
                    self.send(b"Username: ");
                    self.read_line(true)? == u.as_bytes()
                }
                None => true,
            };
            self.send(b"Password: ");
            let password = self.read_line(false)?;
            if user_ok && password == opts.password.as_bytes() {
                self.send(b"\r\n");
                return Ok(true);
            }
            if opts.username.is_some() {
                self.send(b"\r\n% Login invalid\r\n\r\n");
            } else {
                self.send(b"\r\n% Bad passwords\r\n\r\n");
            }
        }
        Ok(false)
    }

    fn prompt(&self) -> String {
        let h = &self.hostname;
        match self.mode {
            Mode::Exec if self.privileged => format!("{h}#"),
            Mode::Exec => format!("{h}>"),
            Mode::Config => format!("{h}(config)#"),
            Mode::ConfigIf(_) => format!("{h}(config-if)#"),
        }
    }

    fn cli_error(&mut self, e: CliErr, prompt_len: usize, line: &str) -> Result<(), Gone> {
        match e {
            CliErr::Invalid(col) => self.emit_strs(&[
                format!("{}^", " ".repeat(prompt_len + col)),
                "% Invalid input detected at '^' marker.".to_string(),
                String::new(),
            ]),
            CliErr::Incomplete => self.emit_strs(&["% Incomplete command.", ""]),
            CliErr::Ambiguous => self.emit_strs(&[
                format!("% Ambiguous command:  \"{}\"", line.trim()),
                String::new(),
            ]),
        }
    }

    fn dispatch(&mut self, raw: &[u8], line: &str, prompt_len: usize) -> Result<Flow, Gone> {
        let (words, pipe) = tokenize(line);
        if words.is_empty() {
            if let Some(p) = pipe {
                self.cli_error(CliErr::Invalid(p.col), prompt_len, line)?;
            }
            return Ok(Flow::Stay);
        }
        let parsed = match &self.mode {
            Mode::Exec => {
                parse_exec(&words, pipe.as_ref(), self.privileged).map(|(c, f)| Cfg::Do(c, f))
            }
            Mode::Config => parse_config(&words, pipe.as_ref(), raw, false, &self.ifaces),
            Mode::ConfigIf(_) => parse_config(&words, pipe.as_ref(), raw, true, &self.ifaces),
        };
        match parsed {
            Ok(Cfg::Do(cmd, filter)) => self.run_exec(cmd, filter),
            Ok(cfg) => {
                self.run_config(cfg);
                Ok(Flow::Stay)
            }
            Err(e) => {
                self.cli_error(e, prompt_len, line)?;
                Ok(Flow::Stay)
            }
        }
    }

    fn drop_privilege(&mut self) {
        self.privileged = false;
        self.mode = Mode::Exec;
    }

    fn run_exec(&mut self, cmd: Cmd, filter: Option<Filter>) -> Result<Flow, Gone> {
        let opts = &self.shared.opts;
        match cmd {
            Cmd::Enable(level) if level <= 1 => self.drop_privilege(),
            Cmd::Enable(level) if level < 15 => self.emit_strs(&["% No password set", ""])?,
            Cmd::Enable(_) if self.privileged => {}
            Cmd::Enable(_) => {
                if let Some(secret) = &opts.enable_secret {
                    self.send(b"Password: ");
                    let typed = self.read_line(false)?;
                    self.record("<hidden>");
                    self.send(b"\r\n");
                    if typed == secret.as_bytes() {
                        self.privileged = true;
                    } else {
                        self.emit_strs(&["% Access denied", ""])?;
                    }
                } else {
                    self.privileged = true;
                }
            }
            Cmd::Disable => self.drop_privilege(),
            Cmd::TermLength(n) => self.length = n,
            Cmd::TermWidth(n) => self.width = n,
            Cmd::Show(what) => {
                let lines = self.show(what)?;
                let lines = match filter {
                    Some(f) => f.apply(lines),
                    None => lines,
                };
                self.emit(lines)?;
            }
            Cmd::Configure { ask } => {
                if ask {
                    self.send(b"Configuring from terminal, memory, or network [terminal]? ");
                    let answer = self.read_line(true)?;
                    let answer = String::from_utf8_lossy(&answer).trim().to_ascii_lowercase();
                    self.record(&answer);
                    if !"terminal".starts_with(&answer) {
                        self.emit_strs(&["?Must be \"terminal\", \"memory\" or \"network\""])?;
                        return Ok(Flow::Stay);
                    }
                }
                self.emit_strs(&["Enter configuration commands, one per line.  End with CNTL/Z."])?;
                self.mode = Mode::Config;
            }
            Cmd::WriteMemory => self.emit_strs(&["Building configuration...", "[OK]"])?,
            Cmd::CopyRunStart => {
                self.send(b"Destination filename [startup-config]? ");
                let answer = self.read_line(true)?;
                self.record(&String::from_utf8_lossy(&answer));
                self.emit_strs(&["Building configuration...", "[OK]"])?;
            }
            Cmd::Reload => {
                self.send(b"Proceed with reload? [confirm]");
                let answer = self.read_line(true)?;
                let answer = String::from_utf8_lossy(&answer).into_owned();
                self.record(&answer);
                let a = answer.trim().to_ascii_lowercase();
                if a.is_empty() || a == "y" || a == "yes" {
                    self.emit_strs(&["Reload cancelled: this is a demo device."])?;
                }
            }
            Cmd::Exit | Cmd::Drop => return Ok(Flow::Close),
        }
        Ok(Flow::Stay)
    }

    fn current_if(&mut self) -> Option<&mut Iface> {
        let Mode::ConfigIf(name) = &self.mode else {
            return None;
        };
        self.ifaces.iter_mut().find(|f| &f.name == name)
    }

    fn run_config(&mut self, cfg: Cfg) {
        match cfg {
            Cfg::Do(..) => {}
            Cfg::End => self.mode = Mode::Exec,
            Cfg::Exit => {
                self.mode = match self.mode {
                    Mode::ConfigIf(_) => Mode::Config,
                    _ => Mode::Exec,
                }
            }
            Cfg::Hostname(h) => {
                self.hostname = h;
                self.mode = Mode::Config;
            }
            Cfg::NoHostname => {
                self.hostname = "Router".to_string();
                self.mode = Mode::Config;
            }
            Cfg::Interface(name) => {
                if !self.ifaces.iter().any(|f| f.name == name) {
                    self.ifaces.push(Iface::new(&name));
                }
                self.mode = Mode::ConfigIf(name);
            }
            Cfg::NoInterface(name) => {
                self.ifaces.retain(|f| f.name != name);
                self.mode = Mode::Config;
            }
            Cfg::Description(d) => {
                if let Some(f) = self.current_if() {
                    f.description = Some(d);
                }
            }
            Cfg::NoDescription => {
                if let Some(f) = self.current_if() {
                    f.description = None;
                }
            }
            Cfg::IpAddress(a, m) => {
                if let Some(f) = self.current_if() {
                    f.addr = Some((a, m));
                    f.method = "manual";
                }
            }
            Cfg::NoIpAddress => {
                if let Some(f) = self.current_if() {
                    f.addr = None;
                    f.method = "manual";
                }
            }
            Cfg::Shutdown(s) => {
                if let Some(f) = self.current_if() {
                    f.shutdown = s;
                }
            }
        }
    }

    // -- show ----------------------------------------------------------------------------

    fn show(&mut self, what: Show) -> Result<Vec<Vec<u8>>, Gone> {
        let lines: Vec<String> = match what {
            Show::Version => self.show_version(),
            Show::Clock => vec![clock_line(SystemTime::now())],
            Show::IpIntBrief => self.show_ip_int_brief(),
            Show::RunningConfig => return Ok(self.running_config()),
            Show::Privilege => vec![format!(
                "Current privilege level is {}",
                if self.privileged { 15 } else { 1 }
            )],
            Show::Terminal => vec![
                format!(
                    "Line 2, Location: \"\", Type: \"{}\"",
                    self.telnet.ttype.as_deref().unwrap_or("")
                ),
                format!(
                    "Length: {} lines, Width: {} columns",
                    self.length, self.width
                ),
            ],
            Show::Long(n) => (1..=n).map(|i| format!("line {i} of {n}")).collect(),
            Show::Slow(d, text) => {
                self.pause(d)?;
                vec![format!("slow output after {text} seconds")]
            }
        };
        Ok(lines.into_iter().map(String::into_bytes).collect())
    }

    fn show_version(&self) -> Vec<String> {
        let up = uptime_text(self.shared.started.elapsed() + Duration::from_secs(274_320));
        let up_cp = uptime_text(self.shared.started.elapsed() + Duration::from_secs(274_440));
        let h = &self.hostname;
        let mut v: Vec<String> = [
            "Cisco IOS XE Software, Version 17.03.04a",
            "Cisco IOS Software [Amsterdam], Catalyst L3 Switch Software (CAT9K_IOSXE), \
             Version 17.3.4a, RELEASE SOFTWARE (fc3)",
            "Technical Support: http://www.cisco.com/techsupport",
            "Copyright (c) 1986-2021 by Cisco Systems, Inc.",
            "Compiled Tue 20-Jul-21 05:59 by mcpre",
            "",
            "",
            "Cisco IOS-XE software, Copyright (c) 2005-2021 by cisco Systems, Inc.",
            "All rights reserved.  Certain components of Cisco IOS-XE software are",
            "licensed under the GNU General Public License (\"GPL\") Version 2.0.",
            "",
            "ROM: IOS-XE ROMMON",
            "BOOTLDR: System Bootstrap, Version 17.5.2r, RELEASE SOFTWARE (P)",
            "",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.push(format!("{h} uptime is {up}"));
        v.push(format!("Uptime for this control processor is {up_cp}"));
        v.extend(
            [
                "System returned to ROM by Reload Command",
                "System image file is \"flash:packages.conf\"",
                "Last reload reason: Reload Command",
                "",
                "cisco C9300-24T (X86) processor with 1343703K/6147K bytes of memory.",
                "Processor board ID FCW2233L0AB",
                "1 Virtual Ethernet interface",
                "28 Gigabit Ethernet interfaces",
                "2048K bytes of non-volatile configuration memory.",
                "8388608K bytes of physical memory.",
                "1638400K bytes of Crash Files at crashinfo:.",
                "11264000K bytes of Flash at flash:.",
                "",
                "Base Ethernet MAC Address          : 00:a3:d1:5e:8a:80",
                "Motherboard Assembly Number        : 73-18271-03",
                "Motherboard Serial Number          : FOC22311ABC",
                "Model Revision Number              : B0",
                "Motherboard Revision Number        : A0",
                "Model Number                       : C9300-24T",
                "System Serial Number               : FCW2233L0AB",
                "",
                "",
                "Switch Ports Model              SW Version        SW Image              Mode",
                "------ ----- -----              ----------        ----------            ----",
                "*    1 41    C9300-24T          17.03.04a         CAT9K_IOSXE           INSTALL",
                "",
                "",
                "Configuration register is 0x102",
                "",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        v
    }

    fn show_ip_int_brief(&self) -> Vec<String> {
        let row = |a: &str, b: &str, c: &str, d: &str, e: &str, f: &str| {
            format!("{a:<23}{b:<16}{c:<4}{d:<7}{e:<22}{f}")
        };
        let mut v = vec![row(
            "Interface",
            "IP-Address",
            "OK?",
            "Method",
            "Status",
            "Protocol",
        )];
        for f in &self.ifaces {
            let ip = f
                .addr
                .map_or_else(|| "unassigned".to_string(), |(a, _)| a.to_string());
            let (status, proto) = if f.shutdown {
                ("administratively down", "down")
            } else if f.link {
                ("up", "up")
            } else {
                ("down", "down")
            };
            v.push(row(&f.name, &ip, "YES", f.method, status, proto));
        }
        v
    }

    fn running_config(&self) -> Vec<Vec<u8>> {
        let opts = &self.shared.opts;
        let mut body: Vec<Vec<u8>> = Vec::new();
        let mut add = |s: &str| body.push(s.as_bytes().to_vec());
        for s in [
            "!",
            "version 17.3",
            "service timestamps debug datetime msec",
            "service timestamps log datetime msec",
            "service password-encryption",
            "platform punt-keepalive disable-kernel-core",
            "!",
        ] {
            add(s);
        }
        add(&format!("hostname {}", self.hostname));
        for s in [
            "!",
            "vrf definition Mgmt-vrf",
            " !",
            " address-family ipv4",
            " exit-address-family",
            "!",
        ] {
            add(s);
        }
        if opts.enable_secret.is_some() {
            add("enable secret 9 $9$4e2bBHn3M5/ZaE$0tXzGPEqZnQs6wY1aJ8wH4cFqRq3Rr0mQ2d1vYkqGZo");
        }
        if let Some(u) = &opts.username {
            add(&format!(
                "username {u} privilege 15 secret 9 $9$nhEmQVczB7dqsO$X.HsgL6x1il0RxkOSSvyQYwucySCt7qFm4v7pqCxkKM"
            ));
        }
        for s in ["no aaa new-model", "switch 1 provision c9300-24t", "!"] {
            add(s);
        }
        for f in &self.ifaces {
            body.push(format!("interface {}", f.name).into_bytes());
            if let Some(d) = &f.description {
                let mut l = b" description ".to_vec();
                l.extend_from_slice(d);
                body.push(l);
            }
            if f.mgmt {
                body.push(b" vrf forwarding Mgmt-vrf".to_vec());
            }
            body.push(match f.addr {
                Some((a, m)) => format!(" ip address {a} {m}").into_bytes(),
                None => b" no ip address".to_vec(),
            });
            if f.shutdown {
                body.push(b" shutdown".to_vec());
            }
            if f.mgmt {
                body.push(b" negotiation auto".to_vec());
            }
            body.push(b"!".to_vec());
        }
        let mut add = |s: &str| body.push(s.as_bytes().to_vec());
        for s in [
            "ip forward-protocol nd",
            "no ip http server",
            "!",
            "line con 0",
            " stopbits 1",
            "line vty 0 4",
        ] {
            add(s);
        }
        if opts.username.is_some() {
            add(" login local");
        } else {
            add(" password 7 070C285F4D06");
            add(" login");
        }
        for s in [" transport input telnet ssh", "!", "end"] {
            add(s);
        }
        let bytes: usize = body.iter().map(|l| l.len() + 1).sum();
        let mut out = vec![
            b"Building configuration...".to_vec(),
            Vec::new(),
            format!("Current configuration : {bytes} bytes").into_bytes(),
        ];
        out.extend(body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINE: Duration = Duration::from_secs(10);
    const ERASE: &str = "\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08          \x08\x08\x08\x08\x08\x08\x08\x08\x08\x08";

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        if needle.is_empty() {
            return Some(0);
        }
        hay.windows(needle.len()).position(|w| w == needle)
    }

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[derive(Clone, Copy)]
    enum CState {
        Data,
        Iac,
        Verb(u8),
        Sb,
        SbIac,
    }

    /// A raw Telnet client that answers the device's negotiation like a terminal would
    /// (DO ECHO, DO SGA, WILL TTYPE "VT100", WILL NAWS 511x0) unless `answer` is false.
    struct Client {
        stream: TcpStream,
        raw: Vec<u8>,
        data: Vec<u8>,
        seen: usize,
        state: CState,
        sb: Vec<u8>,
        answer: bool,
        closed: bool,
    }

    impl Client {
        fn connect(port: u16) -> Client {
            Self::connect_with(port, true)
        }

        fn connect_with(port: u16, answer: bool) -> Client {
            let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_millis(20)))
                .expect("read timeout");
            stream.set_nodelay(true).expect("nodelay");
            Client {
                stream,
                raw: Vec::new(),
                data: Vec::new(),
                seen: 0,
                state: CState::Data,
                sb: Vec::new(),
                answer,
                closed: false,
            }
        }

        fn pump(&mut self) {
            if self.closed {
                return;
            }
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => self.closed = true,
                Ok(n) => {
                    self.raw.extend_from_slice(&buf[..n]);
                    for &b in &buf[..n] {
                        self.feed(b);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => self.closed = true,
            }
        }

        fn feed(&mut self, b: u8) {
            self.state = match self.state {
                CState::Data if b == IAC => CState::Iac,
                CState::Data => {
                    self.data.push(b);
                    CState::Data
                }
                CState::Iac => match b {
                    IAC => {
                        self.data.push(IAC);
                        CState::Data
                    }
                    WILL | WONT | DO | DONT => CState::Verb(b),
                    SB => {
                        self.sb.clear();
                        CState::Sb
                    }
                    _ => CState::Data,
                },
                CState::Verb(v) => {
                    self.answer_verb(v, b);
                    CState::Data
                }
                CState::Sb if b == IAC => CState::SbIac,
                CState::Sb => {
                    self.sb.push(b);
                    CState::Sb
                }
                CState::SbIac if b == SE => {
                    if self.answer && self.sb == [OPT_TTYPE, TTYPE_SEND] {
                        let mut r = vec![IAC, SB, OPT_TTYPE, TTYPE_IS];
                        r.extend_from_slice(b"VT100");
                        r.extend_from_slice(&[IAC, SE]);
                        self.send(&r);
                    }
                    CState::Data
                }
                CState::SbIac => {
                    self.sb.push(b);
                    CState::Sb
                }
            };
        }

        fn answer_verb(&mut self, verb: u8, opt: u8) {
            if !self.answer {
                return;
            }
            let reply = match (verb, opt) {
                (WILL, OPT_ECHO) | (WILL, OPT_SGA) => vec![IAC, DO, opt],
                (WILL, _) => vec![IAC, DONT, opt],
                (DO, OPT_TTYPE) => vec![IAC, WILL, OPT_TTYPE],
                // 511 = 0x01FF: the 0xFF must be doubled inside SB.
                (DO, OPT_NAWS) => vec![
                    IAC, WILL, OPT_NAWS, IAC, SB, OPT_NAWS, 1, IAC, IAC, 0, 0, IAC, SE,
                ],
                (DO, _) => vec![IAC, WONT, opt],
                _ => vec![],
            };
            self.send(&reply);
        }

        fn send(&mut self, bytes: &[u8]) {
            // The device may have closed already; the tests look at what it sent instead.
            let _ = self.stream.write_all(bytes);
        }

        fn line(&mut self, s: &str) {
            self.send(format!("{s}\r\n").as_bytes());
        }

        /// Waits for `needle` in the data after the last match; returns the data up to its end.
        fn expect_bytes(&mut self, needle: &[u8]) -> Vec<u8> {
            let deadline = Instant::now() + DEADLINE;
            loop {
                if let Some(p) = find(&self.data[self.seen..], needle) {
                    let end = self.seen + p + needle.len();
                    let got = self.data[self.seen..end].to_vec();
                    self.seen = end;
                    return got;
                }
                let so_far = String::from_utf8_lossy(&self.data[self.seen..]).into_owned();
                assert!(
                    !self.closed,
                    "closed while waiting for {:?}; got {so_far:?}",
                    String::from_utf8_lossy(needle)
                );
                assert!(
                    Instant::now() < deadline,
                    "timed out waiting for {:?}; got {so_far:?}",
                    String::from_utf8_lossy(needle)
                );
                self.pump();
            }
        }

        fn expect(&mut self, needle: &str) -> String {
            String::from_utf8_lossy(&self.expect_bytes(needle.as_bytes())).into_owned()
        }

        fn cmd(&mut self, line: &str, prompt: &str) -> String {
            self.line(line);
            self.expect(prompt)
        }

        /// Pumps (answering negotiation) until the raw bytes received contain `needle`.
        fn wait_raw(&mut self, needle: &[u8]) {
            let deadline = Instant::now() + DEADLINE;
            while find(&self.raw, needle).is_none() {
                assert!(!self.closed, "closed while waiting for {needle:?}");
                assert!(
                    Instant::now() < deadline,
                    "timed out waiting for {needle:?}"
                );
                self.pump();
            }
        }

        fn wait_closed(&mut self) {
            let deadline = Instant::now() + DEADLINE;
            while !self.closed {
                assert!(Instant::now() < deadline, "the device did not close");
                self.pump();
            }
        }

        fn login(port: u16, prompt: &str) -> Client {
            let mut c = Client::connect(port);
            c.expect("Username: ");
            c.line("admin");
            c.expect("Password: ");
            c.line("cisco");
            c.expect(prompt);
            c
        }
    }

    fn device(opts: DeviceOptions) -> TelnetDevice {
        TelnetDevice::start(opts).expect("start device")
    }

    fn privileged() -> DeviceOptions {
        DeviceOptions {
            start_privileged: true,
            ..DeviceOptions::default()
        }
    }

    #[test]
    fn negotiation_sequence_and_client_answers_recorded() {
        let dev = device(DeviceOptions::default());
        let mut c = Client::connect(dev.port());
        c.expect("Username: ");
        assert_eq!(
            &c.raw[..12],
            &[255, 251, 1, 255, 251, 3, 255, 253, 24, 255, 253, 31]
        );
        // The client said WILL TERMINAL-TYPE, so the device asked for it.
        c.wait_raw(&[255, 250, 24, 1, 255, 240]);
        let wanted = [
            "client DO ECHO",
            "client DO SUPPRESS-GO-AHEAD",
            "client WILL TERMINAL-TYPE",
            "client WILL NAWS",
            "NAWS 511x0",
            "TTYPE VT100",
        ];
        wait_until("negotiation records", || {
            let n = dev.negotiation();
            wanted.iter().all(|w| n.iter().any(|x| x == w))
        });
        c.line("admin");
        c.expect("Password: ");
        c.line("cisco");
        c.expect("R1>");
        let out = c.cmd("show terminal", "R1>");
        assert!(out.contains("Type: \"VT100\""), "{out:?}");
        assert!(
            out.contains("Length: 24 lines, Width: 80 columns"),
            "{out:?}"
        );
    }

    #[test]
    fn parser_survives_byte_by_byte_input_and_answers_per_rfc() {
        let mut t = Telnet::new();
        let mut fed = Fed::default();
        let mut input = b"ab".to_vec();
        input.extend_from_slice(&[IAC, IAC]);
        input.extend_from_slice(b"c");
        input.extend_from_slice(&[IAC, WILL, OPT_TTYPE, IAC, WILL, OPT_TTYPE]);
        input.extend_from_slice(&[IAC, SB, OPT_NAWS, 0, IAC, IAC, 0, 40, IAC, SE]);
        input.extend_from_slice(&[IAC, SB, OPT_TTYPE, TTYPE_IS]);
        input.extend_from_slice(b"XTERM");
        input.extend_from_slice(&[IAC, SE, IAC, DO, 0, IAC, WILL, 34, IAC, 241]);
        input.extend_from_slice(&[IAC, DONT, OPT_ECHO, IAC, DO, OPT_ECHO]);
        input.extend_from_slice(b"\r\n");
        for b in input {
            t.feed(b, &mut fed);
        }
        assert_eq!(fed.data, b"ab\xffc\r\n");
        let mut want = vec![IAC, SB, OPT_TTYPE, TTYPE_SEND, IAC, SE]; // once, not twice
        want.extend_from_slice(&[IAC, WONT, 0, IAC, DONT, 34]);
        want.extend_from_slice(&[IAC, WILL, OPT_ECHO]); // DO ECHO after DONT: agree again
        assert_eq!(fed.reply, want);
        assert_eq!(
            fed.records,
            [
                "client WILL TERMINAL-TYPE",
                "client WILL TERMINAL-TYPE",
                "NAWS 255x40",
                "TTYPE XTERM",
                "client DO BINARY",
                "client WILL LINEMODE",
                "client DONT ECHO",
                "client DO ECHO",
            ]
        );
        assert_eq!(t.naws, Some((255, 40)));
        assert!(t.echoing());
    }

    #[test]
    fn negotiation_split_byte_by_byte_over_the_wire() {
        let dev = device(DeviceOptions::default());
        let mut c = Client::connect_with(dev.port(), false);
        let mut seq = vec![IAC, DO, OPT_ECHO, IAC, DO, OPT_SGA, IAC, WILL, OPT_TTYPE];
        seq.extend_from_slice(&[IAC, WILL, OPT_NAWS]);
        seq.extend_from_slice(&[IAC, SB, OPT_NAWS, 0, IAC, IAC, 0, 40, IAC, SE]);
        seq.extend_from_slice(&[IAC, SB, OPT_TTYPE, TTYPE_IS]);
        seq.extend_from_slice(b"XTERM");
        seq.extend_from_slice(&[IAC, SE]);
        seq.extend_from_slice(b"admin\r\0cisco\r\nshow privilege\n");
        for b in seq {
            c.send(&[b]);
            // Pacing, so that the bytes travel in separate segments.
            thread::sleep(Duration::from_millis(1));
        }
        let out = c.expect("Current privilege level is 1\r\nR1>");
        assert!(out.contains("Username: admin\r\nPassword: \r\nR1>show privilege\r\n"));
        assert!(find(&c.raw, &[255, 250, 24, 1, 255, 240]).is_some());
        let n = dev.negotiation();
        for w in ["client WILL TERMINAL-TYPE", "NAWS 255x40", "TTYPE XTERM"] {
            assert!(n.iter().any(|x| x == w), "{w} missing from {n:?}");
        }
        assert_eq!(dev.lines_received(), ["show privilege"]);
    }

    #[test]
    fn login_failure_then_success() {
        let dev = device(DeviceOptions::default());
        let mut c = Client::connect(dev.port());
        assert!(c
            .expect("Username: ")
            .ends_with("\r\nUser Access Verification\r\n\r\nUsername: "));
        c.line("admin");
        assert_eq!(c.expect("Password: "), "admin\r\nPassword: ");
        c.line("wrong");
        assert_eq!(
            c.expect("Username: "),
            "\r\n% Login invalid\r\n\r\nUsername: "
        );
        c.line("nobody");
        c.expect("Password: ");
        c.line("cisco");
        c.expect("% Login invalid\r\n\r\nUsername: ");
        c.line("admin");
        c.expect("Password: ");
        c.line("cisco");
        assert_eq!(c.expect("R1>"), "\r\nR1>");
        assert_eq!(
            c.cmd("show privilege", "R1>"),
            "show privilege\r\nCurrent privilege level is 1\r\nR1>"
        );
        assert_eq!(dev.lines_received(), ["show privilege"]);
    }

    #[test]
    fn three_failures_close_the_connection() {
        let dev = device(DeviceOptions::default());
        let mut c = Client::connect(dev.port());
        for _ in 0..3 {
            c.expect("Username: ");
            c.line("admin");
            c.expect("Password: ");
            c.line("bad");
            c.expect("% Login invalid");
        }
        c.wait_closed();
        assert!(!String::from_utf8_lossy(&c.data).contains("R1>"));
        wait_until("no active connection", || dev.active_connections() == 0);
    }

    #[test]
    fn line_password_only() {
        let dev = device(DeviceOptions {
            username: None,
            password: "linepw".into(),
            ..DeviceOptions::default()
        });
        let mut c = Client::connect(dev.port());
        let first = c.expect("Password: ");
        assert!(!first.contains("Username"), "{first:?}");
        c.line("cisco");
        assert_eq!(
            c.expect("Password: "),
            "\r\n% Bad passwords\r\n\r\nPassword: "
        );
        c.line("linepw");
        assert_eq!(c.expect("R1>"), "\r\nR1>");
        let mut c2 = Client::connect(dev.port());
        for _ in 0..3 {
            c2.expect("Password: ");
            c2.line("nope");
            c2.expect("% Bad passwords");
        }
        c2.wait_closed();
    }

    #[test]
    fn banner_comes_before_the_login_prompt() {
        let dev = device(DeviceOptions {
            banner: Some("Authorized access only #\n> not a prompt\nR9# fake\n".into()),
            ..DeviceOptions::default()
        });
        let mut c = Client::connect(dev.port());
        let out = c.expect("Username: ");
        assert_eq!(
            out,
            "Authorized access only #\r\n> not a prompt\r\nR9# fake\r\n\r\n\
             User Access Verification\r\n\r\nUsername: "
        );
    }

    #[test]
    fn enable_without_secret() {
        let dev = device(DeviceOptions::default());
        let mut c = Client::login(dev.port(), "R1>");
        assert_eq!(c.cmd("en", "R1#"), "en\r\nR1#");
        assert!(c.cmd("show privilege", "R1#").contains("level is 15"));
        assert_eq!(c.cmd("disable", "R1>"), "disable\r\nR1>");
        assert_eq!(c.cmd("enable 15", "R1#"), "enable 15\r\nR1#");
    }

    #[test]
    fn enable_with_secret_no_echo_and_hidden() {
        let dev = device(DeviceOptions {
            enable_secret: Some("s3cret".into()),
            ..DeviceOptions::default()
        });
        let mut c = Client::login(dev.port(), "R1>");
        assert_eq!(c.cmd("enable", "Password: "), "enable\r\nPassword: ");
        c.line("guess");
        assert_eq!(c.expect("R1>"), "\r\n% Access denied\r\n\r\nR1>");
        c.cmd("enable", "Password: ");
        c.line("s3cret");
        assert_eq!(c.expect("R1#"), "\r\nR1#");
        assert!(!String::from_utf8_lossy(&c.data).contains("s3cret"));
        assert!(!String::from_utf8_lossy(&c.data).contains("cisco"));
        assert_eq!(
            dev.lines_received(),
            ["enable", "<hidden>", "enable", "<hidden>"]
        );
    }

    #[test]
    fn echo_backspace_and_line_endings() {
        let dev = device(DeviceOptions::default());
        let mut c = Client::login(dev.port(), "R1>");
        c.send(b"shox\x7fw privilege\r\0");
        let out = c.expect("R1>");
        assert_eq!(
            out,
            "shox\x08 \x08w privilege\r\nCurrent privilege level is 1\r\nR1>"
        );
        // Up arrow recalls the line (it is redrawn over what was typed), Enter runs it.
        c.send(b"show privilege\nxyz\x1b[A\r\n");
        c.expect("R1>");
        assert_eq!(
            c.expect("R1>"),
            "xyz\x08\x08\x08show privilege\r\nCurrent privilege level is 1\r\nR1>"
        );
        c.cmd("", "R1>");
        assert_eq!(
            dev.lines_received(),
            ["show privilege", "show privilege", "show privilege", ""]
        );
        assert_eq!(dev.journal(), ["show privilege"; 3]);
    }

    #[test]
    fn line_editing_decides_what_is_executed() {
        let dev = device(privileged());
        let mut c = Client::login(dev.port(), "R1#");
        // (bytes, prompts before the reload question if any)
        let edits: [(&[u8], usize); 7] = [
            (b"x\x08reload\r", 0),
            (b"relx\x7foad\r", 0),
            (b"hostn\x15reload\r", 0),
            (b"\x1b[Creload\r", 0),
            (b"reoad\x1b[D\x1b[D\x1b[Dl\r", 0),
            (b"show clock\x1areload\r", 1),
            (b"reload\x03show clock\r", 2),
        ];
        for (bytes, prompts) in edits {
            c.send(bytes);
            for _ in 0..prompts {
                c.expect("R1#");
            }
            if bytes.ends_with(b"d\r") || bytes.ends_with(b"l\r") {
                c.expect("Proceed with reload? [confirm]");
                c.send(b"n\r");
                c.expect("R1#");
            }
        }
        assert_eq!(
            dev.journal(),
            [
                "reload",
                "reload",
                "reload",
                "reload",
                "reload",
                "show clock",
                "reload",
                "show clock"
            ]
        );
        let modes: Vec<String> = dev.journal_entries().into_iter().map(|e| e.mode).collect();
        assert_eq!(modes, ["priv"; 8]);
        // Answers to questions are not journaled; lines_received still has them.
        assert_eq!(dev.lines_received().iter().filter(|l| *l == "n").count(), 6);
        assert!(dev.lines_received().contains(&"^C".to_string()));
    }

    #[test]
    fn ctrl_z_runs_the_line_then_ends_configuration() {
        let dev = device(privileged());
        let mut c = Client::login(dev.port(), "R1#");
        c.cmd("configure terminal", "R1(config)#");
        c.send(b"hostname CORE1\x1a");
        assert_eq!(c.expect("CORE1#"), "hostname CORE1^Z\r\nCORE1#");
        c.cmd("conf t", "CORE1(config)#");
        // Ctrl-C drops the line and leaves configuration mode.
        c.send(b"hostname X\x03");
        assert_eq!(c.expect("CORE1#"), "hostname X^C\r\nCORE1#");
        c.send(b"wr\r");
        c.expect("[OK]\r\nCORE1#");
        assert_eq!(
            dev.journal_entries(),
            [
                ("priv", "configure terminal"),
                ("config", "hostname CORE1"),
                ("priv", "conf t"),
                ("priv", "wr"),
            ]
            .map(|(m, l)| JournalEntry {
                mode: m.into(),
                line: l.into()
            })
        );
        assert_eq!(
            dev.lines_received(),
            [
                "configure terminal",
                "hostname CORE1",
                "^Z",
                "conf t",
                "^C",
                "wr"
            ]
        );
    }

    #[test]
    fn question_mark_shows_help_and_keeps_the_line() {
        let dev = device(DeviceOptions::default());
        let mut c = Client::login(dev.port(), "R1>");
        c.send(b"sh?");
        assert_eq!(c.expect("R1>sh"), "sh?\r\nshow\r\n\r\nR1>sh");
        c.send(b"ow ?");
        let help = c.expect("R1>show ");
        assert!(
            help.starts_with("ow ?\r\n  clock\r\n  ip\r\n") && !help.contains("running"),
            "{help:?}"
        );
        c.send(b"priv?");
        c.expect("R1>show priv");
        c.send(b"ilege\r");
        c.expect("Current privilege level is 1\r\nR1>");
        c.send(b"zz?");
        assert_eq!(c.expect("R1>zz"), "zz?\r\n% Unrecognized command\r\nR1>zz");
        c.send(b"\x15\r");
        c.expect("R1>");
        assert_eq!(dev.journal(), ["show privilege"]);
    }

    #[test]
    fn config_mode_and_running_config() {
        let dev = device(privileged());
        let mut c = Client::login(dev.port(), "R1#");
        assert_eq!(
            c.cmd("conf t", "R1(config)#"),
            "conf t\r\nEnter configuration commands, one per line.  End with CNTL/Z.\r\nR1(config)#"
        );
        c.cmd("interface gi1/0/1", "R1(config-if)#");
        c.cmd("description TEST-DESC | core", "R1(config-if)#");
        c.cmd("ip address 10.9.9.1 255.255.255.0", "R1(config-if)#");
        c.cmd("exit", "R1(config)#");
        c.cmd("int Loopback7", "R1(config-if)#");
        c.cmd("interface Vlan1", "R1(config-if)#");
        c.cmd("no shutdown", "R1(config-if)#");
        c.cmd("hostname CORE1", "CORE1(config)#");
        let out = c.cmd("do show privilege", "CORE1(config)#");
        assert!(out.contains("Current privilege level is 15\r\n"), "{out:?}");
        let out = c.cmd("bogus thing", "CORE1(config)#");
        assert!(
            out.contains("\r\n              ^\r\n% Invalid input"),
            "{out:?}"
        );
        c.cmd("interface Gi9/9/9", "CORE1(config)#");
        assert_eq!(c.cmd("end", "CORE1#"), "end\r\nCORE1#");
        c.cmd("terminal length 0", "CORE1#");
        let run = c.cmd("show running-config", "CORE1#");
        assert!(run.starts_with(
            "show running-config\r\nBuilding configuration...\r\n\r\nCurrent configuration : "
        ));
        assert!(run.contains("\r\nhostname CORE1\r\n"), "{run}");
        assert!(
            run.contains(
                "\r\ninterface GigabitEthernet1/0/1\r\n description TEST-DESC | core\r\n \
             ip address 10.9.9.1 255.255.255.0\r\n!\r\n"
            ),
            "{run}"
        );
        assert!(
            run.contains("\r\ninterface Loopback7\r\n no ip address\r\n!\r\n"),
            "{run}"
        );
        assert!(
            run.contains("\r\ninterface Vlan1\r\n no ip address\r\n!\r\n"),
            "{run}"
        );
        assert!(
            !run.contains("Gi9/9/9") && !run.contains("uplink to core1"),
            "{run}"
        );
        assert!(run.ends_with("\r\nend\r\nCORE1#"), "{run}");
        let brief = c.cmd("sh ip int br", "CORE1#");
        assert!(
            brief.contains(
                "GigabitEthernet1/0/1   10.9.9.1        YES manual up                    up"
            ),
            "{brief}"
        );
        assert!(brief.contains("Loopback7"), "{brief}");
        let filtered = c.cmd("show run | include ^hostname|description", "CORE1#");
        assert_eq!(
            filtered,
            "show run | include ^hostname|description\r\nhostname CORE1\r\n \
             description TEST-DESC | core\r\nCORE1#"
        );
        // Configuration belongs to the connection that typed it.
        let mut other = Client::login(dev.port(), "R1#");
        other.cmd("terminal length 0", "R1#");
        let run2 = other.cmd("show running-config", "R1#");
        assert!(run2.contains("hostname R1\r\n") && run2.contains(" description uplink to core1"));
        // Ctrl-Z leaves configuration mode.
        c.cmd("conf t", "CORE1(config)#");
        c.send(b"\x1a");
        assert_eq!(c.expect("CORE1#"), "^Z\r\nCORE1#");
    }

    #[test]
    fn copy_run_start_write_and_reload_dialogues() {
        let dev = device(privileged());
        let mut c = Client::login(dev.port(), "R1#");
        assert_eq!(
            c.cmd("copy run start", "? "),
            "copy run start\r\nDestination filename [startup-config]? "
        );
        assert_eq!(
            c.cmd("", "R1#"),
            "\r\nBuilding configuration...\r\n[OK]\r\nR1#"
        );
        c.cmd("copy running-config startup-config", "[startup-config]? ");
        assert_eq!(
            c.cmd("backup.cfg", "R1#"),
            "backup.cfg\r\nBuilding configuration...\r\n[OK]\r\nR1#"
        );
        assert_eq!(
            c.cmd("wr", "R1#"),
            "wr\r\nBuilding configuration...\r\n[OK]\r\nR1#"
        );
        assert_eq!(
            c.cmd("reload", "[confirm]"),
            "reload\r\nProceed with reload? [confirm]"
        );
        assert_eq!(
            c.cmd("", "R1#"),
            "\r\nReload cancelled: this is a demo device.\r\nR1#"
        );
        c.cmd("reload", "[confirm]");
        assert_eq!(c.cmd("n", "R1#"), "n\r\nR1#");
        assert_eq!(
            dev.lines_received(),
            [
                "copy run start",
                "",
                "copy running-config startup-config",
                "backup.cfg",
                "wr",
                "reload",
                "",
                "reload",
                "n"
            ]
        );
    }

    fn long_lines(from: usize, to: usize, n: usize) -> String {
        (from..=to)
            .map(|i| format!("line {i} of {n}\r\n"))
            .collect()
    }

    #[test]
    fn pager_space_enter_q_and_length_zero() {
        let dev = device(DeviceOptions::default());
        let mut c = Client::login(dev.port(), "R1>");
        let first = c.cmd("show long 30", " --More-- ");
        assert_eq!(
            first,
            format!("show long 30\r\n{} --More-- ", long_lines(1, 24, 30))
        );
        c.send(b" ");
        assert_eq!(
            c.expect("R1>"),
            format!("{ERASE}{}R1>", long_lines(25, 30, 30))
        );

        c.cmd("show long 30", " --More-- ");
        c.send(b"\r\n");
        assert_eq!(
            c.expect(" --More-- "),
            format!("{ERASE}line 25 of 30\r\n --More-- ")
        );
        c.send(b"q");
        assert_eq!(c.expect("R1>"), format!("{ERASE}R1>"));

        // Exactly one page: no pager.
        assert_eq!(
            c.cmd("show long 24", "R1>"),
            format!("show long 24\r\n{}R1>", long_lines(1, 24, 24))
        );
        c.cmd("terminal length 0", "R1>");
        let all = c.cmd("show long 100", "R1>");
        assert_eq!(
            all,
            format!("show long 100\r\n{}R1>", long_lines(1, 100, 100))
        );
        c.cmd("terminal length 5", "R1>");
        let out = c.cmd("sh ver", " --More-- ");
        assert!(out.starts_with("sh ver\r\nCisco IOS XE Software, Version 17.03.04a\r\n"));
        c.send(b"q");
        c.expect("R1>");
        assert_eq!(
            dev.lines_received(),
            [
                "show long 30",
                "show long 30",
                "show long 24",
                "terminal length 0",
                "show long 100",
                "terminal length 5",
                "sh ver"
            ]
        );
    }

    #[test]
    fn invalid_input_caret_incomplete_and_ambiguous() {
        let dev = device(DeviceOptions::default());
        let mut c = Client::login(dev.port(), "R1>");
        let invalid = |spaces: usize| {
            format!(
                "{}^\r\n% Invalid input detected at '^' marker.\r\n\r\n",
                " ".repeat(spaces)
            )
        };
        assert_eq!(
            c.cmd("show bogus", "R1>"),
            format!("show bogus\r\n{}R1>", invalid(8))
        );
        assert_eq!(c.cmd("bogus", "R1>"), format!("bogus\r\n{}R1>", invalid(3)));
        // Privileged commands do not exist at R1>.
        assert_eq!(
            c.cmd("show running-config", "R1>"),
            format!("show running-config\r\n{}R1>", invalid(8))
        );
        assert_eq!(
            c.cmd("conf t", "R1>"),
            format!("conf t\r\n{}R1>", invalid(3))
        );
        assert_eq!(
            c.cmd("  show  version extra", "R1>"),
            format!("  show  version extra\r\n{}R1>", invalid(3 + 16))
        );
        assert_eq!(
            c.cmd("show", "R1>"),
            "show\r\n% Incomplete command.\r\n\r\nR1>"
        );
        assert_eq!(
            c.cmd("terminal length", "R1>"),
            "terminal length\r\n% Incomplete command.\r\n\r\nR1>"
        );
        assert_eq!(
            c.cmd("e", "R1>"),
            "e\r\n% Ambiguous command:  \"e\"\r\n\r\nR1>"
        );
        let cl = c.cmd("sh clo", "R1>");
        assert!(
            cl.starts_with("sh clo\r\n*") && cl.contains(" UTC "),
            "{cl:?}"
        );
        assert_eq!(c.cmd("", "R1>"), "\r\nR1>");
    }

    #[test]
    fn iac_iac_round_trip() {
        let dev = device(privileged());
        let mut c = Client::login(dev.port(), "R1#");
        c.cmd("conf t", "R1(config)#");
        c.cmd("interface GigabitEthernet1/0/2", "R1(config-if)#");
        c.send(b"description caf\xff\xffe\r\n");
        let echo = c.expect_bytes(b"R1(config-if)#");
        assert_eq!(echo, b"description caf\xffe\r\nR1(config-if)#");
        assert!(
            find(&c.raw, b"caf\xff\xffe\r\n").is_some(),
            "255 is sent doubled"
        );
        c.cmd("end", "R1#");
        c.cmd("terminal length 0", "R1#");
        c.line("show running-config");
        let run = c.expect_bytes(b"\r\nend\r\nR1#");
        assert!(find(&run, b"\r\n description caf\xffe\r\n").is_some());
        assert!(dev
            .lines_received()
            .contains(&"description caf\u{fffd}e".to_string()));
    }

    #[test]
    fn drop_and_exit_close_the_connection() {
        let dev = device(DeviceOptions::default());
        let mut c = Client::login(dev.port(), "R1>");
        c.line("drop");
        c.wait_closed();
        let mut c2 = Client::login(dev.port(), "R1>");
        c2.line("exit");
        c2.wait_closed();
        wait_until("no active connection", || dev.active_connections() == 0);
        assert_eq!(dev.total_connections(), 2);
    }

    #[test]
    fn kill_all_closes_every_client_even_mid_command() {
        let dev = device(DeviceOptions::default());
        let mut a = Client::login(dev.port(), "R1>");
        let mut b = Client::login(dev.port(), "R1>");
        a.line("show slow 60");
        a.expect("show slow 60\r\n");
        assert_eq!(dev.active_connections(), 2);
        let t0 = Instant::now();
        dev.kill_all();
        a.wait_closed();
        b.wait_closed();
        assert!(t0.elapsed() < Duration::from_secs(5));
        wait_until("no active connection", || dev.active_connections() == 0);
        // Still accepting.
        let mut c = Client::login(dev.port(), "R1>");
        c.cmd("show privilege", "R1>");
        assert_eq!(dev.total_connections(), 3);
    }

    #[test]
    fn stop_joins_promptly_mid_command() {
        let dev = device(DeviceOptions::default());
        let port = dev.port();
        let mut a = Client::login(port, "R1>");
        a.line("show slow 60");
        a.expect("show slow 60\r\n");
        let _idle = Client::connect(port);
        wait_until("two connections", || dev.active_connections() == 2);
        let t0 = Instant::now();
        dev.stop();
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        a.wait_closed();
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    }

    #[test]
    fn show_slow_waits_and_slow_device_pauses_per_line() {
        let dev = device(DeviceOptions {
            slow: Duration::from_millis(40),
            ..privileged()
        });
        let mut c = Client::login(dev.port(), "R1#");
        let t0 = Instant::now();
        let out = c.cmd("show long 5", "R1#");
        assert!(
            t0.elapsed() >= Duration::from_millis(200),
            "{:?}",
            t0.elapsed()
        );
        assert_eq!(out, format!("show long 5\r\n{}R1#", long_lines(1, 5, 5)));
        let t0 = Instant::now();
        let out = c.cmd("show slow 0.3", "R1#");
        assert!(t0.elapsed() >= Duration::from_millis(300));
        assert_eq!(out, "show slow 0.3\r\nslow output after 0.3 seconds\r\nR1#");
    }

    #[test]
    fn connections_over_the_limit_are_closed_at_once() {
        let dev = device(DeviceOptions::default());
        let mut clients: Vec<Client> = (0..MAX_CONNECTIONS)
            .map(|_| Client::connect(dev.port()))
            .collect();
        wait_until("64 connections", || {
            dev.active_connections() == MAX_CONNECTIONS
        });
        let mut extra = Client::connect(dev.port());
        extra.wait_closed();
        assert!(
            extra.raw.is_empty(),
            "the refused client got {:?}",
            extra.raw
        );
        assert_eq!(dev.total_connections(), MAX_CONNECTIONS);
        let mut last = clients.pop().expect("a client");
        last.expect("Username: ");
        drop(last);
        wait_until("a free slot", || dev.active_connections() < MAX_CONNECTIONS);
        let mut again = Client::connect(dev.port());
        again.expect("Username: ");
    }

    #[test]
    fn garbage_does_not_hurt_the_device() {
        let dev = device(DeviceOptions::default());
        let mut c = Client::connect(dev.port());
        let mut junk: Vec<u8> = (0..=255u8).cycle().take(20_000).collect();
        junk.extend_from_slice(&[IAC, SB, 99]);
        junk.extend(std::iter::repeat_n(7u8, 5000));
        junk.extend_from_slice(&[IAC, SE, IAC]);
        c.send(&junk);
        drop(c);
        wait_until("no active connection", || dev.active_connections() == 0);
        let mut ok = Client::login(dev.port(), "R1>");
        ok.cmd("show privilege", "R1>");
    }

    #[test]
    fn grammar_abbreviations() {
        let p = |s: &str, privileged: bool| {
            let (w, pipe) = tokenize(s);
            parse_exec(&w, pipe.as_ref(), privileged).map(|(c, _)| c)
        };
        assert_eq!(p("sh ver", false), Ok(Cmd::Show(Show::Version)));
        assert_eq!(p("sh ip int br", false), Ok(Cmd::Show(Show::IpIntBrief)));
        assert_eq!(p("sh run", true), Ok(Cmd::Show(Show::RunningConfig)));
        assert_eq!(p("sh run", false), Err(CliErr::Invalid(3)));
        assert_eq!(p("conf t", true), Ok(Cmd::Configure { ask: false }));
        assert_eq!(p("wr", true), Ok(Cmd::WriteMemory));
        assert_eq!(p("write mem", true), Ok(Cmd::WriteMemory));
        assert_eq!(p("copy run start", true), Ok(Cmd::CopyRunStart));
        assert_eq!(p("term len 0", false), Ok(Cmd::TermLength(0)));
        assert_eq!(p("term len 513", false), Err(CliErr::Invalid(9)));
        assert_eq!(p("conf t | inc x", true), Err(CliErr::Invalid(7)));
        assert_eq!(p("e", true), Err(CliErr::Ambiguous));
        assert_eq!(p("show", true), Err(CliErr::Incomplete));
        let ifs = default_ifaces();
        let name = |s: &str| parse_ifname(&words_of(s, 0), 0, &ifs, true);
        assert_eq!(name("gi1/0/1"), Ok("GigabitEthernet1/0/1".to_string()));
        assert_eq!(name("Gi 1/0/2"), Ok("GigabitEthernet1/0/2".to_string()));
        assert_eq!(name("lo0"), Ok("Loopback0".to_string()));
        assert_eq!(name("gi1/0/9"), Err(CliErr::Invalid(0)));
        assert_eq!(name("vlan"), Err(CliErr::Incomplete));
        assert_eq!(rest_after_first_word(b"  description  a b  "), b"a b");
    }

    #[test]
    fn clock_and_uptime_formats() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let t = UNIX_EPOCH + Duration::from_millis(1_773_325_800_123);
        assert_eq!(clock_line(t), "*14:30:00.123 UTC Thu Mar 12 2026");
        assert_eq!(
            uptime_text(Duration::from_secs(274_320)),
            "3 days, 4 hours, 12 minutes"
        );
        assert_eq!(uptime_text(Duration::from_secs(60)), "1 minute");
        assert_eq!(
            uptime_text(Duration::from_secs(8 * 86_400 + 3600)),
            "1 week, 1 day, 1 hour, 0 minutes"
        );
    }
}
