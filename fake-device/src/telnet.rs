//! The Telnet front (std threads only, no async): a fake device that speaks real Telnet (RFC
//! 854/855/857/858/1091/1073) and plays a persona ([`crate::engine::Session`]) on every
//! connection after an IOS-style vty login. `netdev-broker demo` ships it; the Telnet
//! integration tests use it.
//!
//! Threads: one `fake-telnet-accept` thread polls a non-blocking listener; every client gets
//! one `fake-telnet-conn` thread. Every read is a 200 ms slice that checks the stop flag and
//! the connection's kill flag, so `kill_all()` and `stop()` act within a slice; `stop()` (and
//! Drop) joins every thread. At most 64 clients are served (more are closed at once) and a
//! client that sends nothing for 30 minutes is closed. Nothing on an I/O path unwraps: a client
//! that sends garbage gets its connection closed, never a panic.
//!
//! Telnet: the device offers WILL ECHO, WILL SUPPRESS-GO-AHEAD and asks DO TERMINAL-TYPE,
//! DO NAWS; a byte-at-a-time state machine (so sequences split across reads are fine) answers
//! per RFC 854 without loops, asks for the terminal type when the client agrees, and records
//! everything the client says in [`TelnetDevice::negotiation`]. It is this crate's own small
//! codec, written from the RFCs, not the broker's client codec: an independent implementation
//! is what catches the broker's interop bugs (BusyBox telnetd is the other independent check,
//! in tests/external).
//!
//! Login: the banner, `User Access Verification`, then `Username: ` and `Password: ` (or the
//! line password only), three attempts (`% Login invalid` / `% Bad passwords`). Usernames and
//! passwords are read raw and never recorded.

use std::collections::{HashMap, VecDeque};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::engine::{self, End, Session};
use crate::{lock, DeviceConfig, DeviceState, JournalEntry, Log};

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

/// How the fake Telnet device behaves.
#[derive(Debug, Clone)]
pub struct DeviceOptions {
    /// The persona it plays (default `cisco_ios`; see [`crate::persona_names`]).
    pub persona: String,
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
    /// How long a device "minute" lasts for revert timers ([`DeviceConfig::minute`]);
    /// default 60 s.
    pub minute: Duration,
}

impl Default for DeviceOptions {
    fn default() -> Self {
        DeviceOptions {
            persona: "cisco_ios".to_string(),
            hostname: "R1".to_string(),
            username: Some("admin".to_string()),
            password: "cisco".to_string(),
            enable_secret: None,
            start_privileged: false,
            banner: None,
            slow: Duration::ZERO,
            minute: Duration::from_secs(60),
        }
    }
}

impl DeviceOptions {
    /// The engine's configuration (the banner and the login are the front's).
    fn session_config(&self) -> DeviceConfig {
        DeviceConfig {
            persona: self.persona.clone(),
            hostname: self.hostname.clone(),
            username: self.username.clone().unwrap_or_else(|| "admin".into()),
            password: self.password.clone(),
            enable_password: self.enable_secret.clone(),
            start_privileged: self.start_privileged,
            line_delay: self.slow,
            minute: self.minute,
            exec_timeout_secs: Some(IDLE_TIMEOUT.as_secs()),
            ..DeviceConfig::default()
        }
    }
}

/// A running fake device listening for Telnet clients. Stops on [`TelnetDevice::stop`] or drop.
pub struct TelnetDevice {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    opts: DeviceOptions,
    stop: AtomicBool,
    log: Arc<Log>,
    /// Running config, hostname, revert timer: shared by every connection.
    dev: Arc<DeviceState>,
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
    /// Starts the device on 127.0.0.1 with a free port. Panics if there is no such persona.
    pub fn start(opts: DeviceOptions) -> io::Result<TelnetDevice> {
        Self::start_on(opts, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Starts the device on `addr`. Panics if there is no such persona.
    pub fn start_on(opts: DeviceOptions, addr: SocketAddr) -> io::Result<TelnetDevice> {
        crate::persona::get(&opts.persona);
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let log = Arc::new(Log::default());
        let dev = Arc::new(DeviceState::new(
            &opts.hostname,
            opts.minute,
            Arc::clone(&log),
        ));
        let shared = Arc::new(Shared {
            opts,
            stop: AtomicBool::new(false),
            log,
            dev,
            negotiation: Mutex::new(VecDeque::new()),
            conns: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
            active: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        });
        let sh = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name("fake-telnet-accept".to_string())
            .spawn(move || accept_loop(&sh, &listener))?;
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
    /// and answers to questions; hidden answers (the enable secret) as "<hidden>", Ctrl-Z as
    /// "^Z" (after the line it ended, if any), Ctrl-C as "^C". Only the newest 10,000 are kept.
    pub fn lines_received(&self) -> Vec<String> {
        self.shared.log.lines_received()
    }

    /// The command lines the CLI acted on, in order, over all connections: each line as the
    /// line editor finished it (Enter, or Ctrl-Z after text), whatever the CLI then made of it
    /// (invalid input included). Blank lines, aborted lines (Ctrl-C), `?` help, usernames,
    /// passwords and answers to questions are not in it. Only the newest 10,000 are kept.
    pub fn journal(&self) -> Vec<String> {
        self.shared.log.journal()
    }

    /// [`TelnetDevice::journal`] with the persona mode each line was executed in.
    pub fn journal_entries(&self) -> Vec<JournalEntry> {
        self.shared.log.journal_entries()
    }

    /// The configuration lines entered on the device, over all connections, as the device
    /// has them now (after a revert, the restored ones): see [`DeviceState::running_config`].
    pub fn running_config(&self) -> Vec<String> {
        self.shared.dev.running_config()
    }

    /// Time left before the device's revert timer expires (`None`: no timer runs).
    pub fn revert_timer(&self) -> Option<Duration> {
        self.shared.dev.revert_timer()
    }

    /// The device's state shared by its connections.
    pub fn device(&self) -> &Arc<DeviceState> {
        &self.shared.dev
    }

    /// What clients negotiated, in order: "client DO ECHO", "client WILL NAWS", "NAWS 511x0",
    /// "TTYPE VT100", ... Only the newest 10,000 are kept.
    pub fn negotiation(&self) -> Vec<String> {
        lock(&self.shared.negotiation).iter().cloned().collect()
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
        let handles = std::mem::take(&mut *lock(&self.shared.threads));
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
    for r in lock(&shared.conns).values() {
        r.killed.store(true, Ordering::SeqCst);
        let _ = r.stream.shutdown(Shutdown::Both);
    }
}

fn push_capped(q: &Mutex<VecDeque<String>>, s: String) {
    let mut q = lock(q);
    if q.len() >= MAX_RECORDS {
        q.pop_front();
    }
    q.push_back(s);
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    while !shared.stop.load(Ordering::SeqCst) {
        // The device's own clock: a revert timer expires with no client connected too.
        shared.dev.tick(Instant::now());
        match listener.accept() {
            Ok((stream, _)) => admit(shared, stream),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // WouldBlock, or e.g. out of file descriptors: do not spin.
            Err(_) => thread::sleep(ACCEPT_POLL),
        }
        reap(shared);
    }
}

/// Joins the connection threads that have ended.
fn reap(shared: &Shared) {
    let done: Vec<JoinHandle<()>> = {
        let mut threads = lock(&shared.threads);
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
        if let Some(r) = lock(&self.shared.conns).remove(&self.id) {
            let _ = r.stream.shutdown(Shutdown::Both);
        }
        self.shared.active.fetch_sub(1, Ordering::SeqCst);
    }
}

fn admit(shared: &Arc<Shared>, stream: TcpStream) {
    if shared.active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
        let _ = stream.shutdown(Shutdown::Both);
        return;
    }
    let setup = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(Some(READ_SLICE)))
        .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)))
        .and_then(|()| stream.try_clone());
    let Ok(registered) = setup else {
        let _ = stream.shutdown(Shutdown::Both);
        return;
    };
    let _ = stream.set_nodelay(true);
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let killed = Arc::new(AtomicBool::new(false));
    lock(&shared.conns).insert(
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
        .name("fake-telnet-conn".to_string())
        .spawn(move || {
            let _guard = guard;
            let mut conn = Conn::new(&sh, stream, killed);
            let _ = conn.run();
            let _ = conn.flush();
            let _ = conn.stream.shutdown(Shutdown::Both);
        });
    if let Ok(h) = spawned {
        lock(&shared.threads).push(h);
    }
    // Otherwise the closure, and with it the guard, has been dropped: the connection is closed.
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
// One connection

/// The connection ended (closed by the client, killed, stopped, idle, or an I/O error).
#[derive(Debug)]
struct Gone;

struct Conn<'a> {
    shared: &'a Shared,
    stream: TcpStream,
    killed: Arc<AtomicBool>,
    telnet: Telnet,
    /// Data bytes received (Telnet commands taken out), not yet consumed.
    input: VecDeque<u8>,
    out: Vec<u8>,
    after_cr: bool,
    /// The password line ended with CR: an LF right after it is part of that Enter.
    login_cr: bool,
    last_input: Instant,
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
            login_cr: false,
            last_input: Instant::now(),
        }
    }

    fn should_stop(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst) || self.killed.load(Ordering::SeqCst)
    }

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
        let deadline = Instant::now() + d;
        loop {
            if self.should_stop() {
                return Err(Gone);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            thread::sleep(left.min(PAUSE_SLICE));
        }
    }

    /// One read slice: what arrives is decoded (data to `input`, negotiation answered and
    /// recorded). Err on stop, kill, idle timeout, close or error.
    fn read_some(&mut self) -> Result<(), Gone> {
        self.flush()?;
        if self.should_stop() || self.last_input.elapsed() >= IDLE_TIMEOUT {
            return Err(Gone);
        }
        let mut buf = [0u8; 2048];
        match self.stream.read(&mut buf) {
            Ok(0) => Err(Gone),
            Ok(n) => {
                self.last_input = Instant::now();
                let mut fed = Fed::default();
                for &b in &buf[..n] {
                    self.telnet.feed(b, &mut fed);
                }
                // CR NUL and CR LF are one Enter: the NUL goes (the engine folds CR LF).
                for b in fed.data {
                    if std::mem::take(&mut self.after_cr) && b == 0 {
                        continue;
                    }
                    self.after_cr = b == b'\r';
                    self.input.push_back(b);
                }
                self.out.extend_from_slice(&fed.reply);
                for r in fed.records {
                    push_capped(&self.shared.negotiation, r);
                }
                self.flush()
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                Ok(())
            }
            Err(_) => Err(Gone),
        }
    }

    /// [`Conn::read_some`] without waiting: only what has arrived already.
    fn poll_some(&mut self) -> Result<(), Gone> {
        self.stream.set_nonblocking(true).map_err(|_| Gone)?;
        let r = self.read_some();
        self.stream.set_nonblocking(false).map_err(|_| Gone)?;
        r
    }

    /// The next data byte (LF after CR dropped: one Enter).
    fn next_byte(&mut self, last_cr: &mut bool) -> Result<u8, Gone> {
        loop {
            let Some(b) = self.input.pop_front() else {
                self.read_some()?;
                continue;
            };
            if std::mem::take(last_cr) && b == b'\n' {
                continue;
            }
            *last_cr = b == b'\r';
            return Ok(b);
        }
    }

    /// Reads a login line raw, echoing it when `echo` (and the client let the device echo).
    fn read_line(&mut self, echo: bool, last_cr: &mut bool) -> Result<Vec<u8>, Gone> {
        let echo = echo && self.telnet.echoing();
        let mut line = Vec::new();
        loop {
            match self.next_byte(last_cr)? {
                b'\r' | b'\n' => {
                    if echo {
                        self.out.extend_from_slice(b"\r\n");
                    }
                    return Ok(line);
                }
                0x08 | 0x7f if line.pop().is_some() && echo => {
                    self.out.extend_from_slice(b"\x08 \x08");
                }
                b @ 0x20.. if line.len() < MAX_LINE => {
                    line.push(b);
                    if echo {
                        self.send(&[b]);
                    }
                }
                _ => {}
            }
        }
    }

    /// Username/password (or line password) with three attempts; false = give up and close.
    fn login(&mut self) -> Result<bool, Gone> {
        let opts = &self.shared.opts;
        let mut last_cr = false;
        for _ in 0..LOGIN_ATTEMPTS {
            let user_ok = match &opts.username {
                Some(u) => {
                    self.send(b"Username: ");
                    self.read_line(true, &mut last_cr)? == u.as_bytes()
                }
                None => true,
            };
            self.send(b"Password: ");
            let password = self.read_line(false, &mut last_cr)?;
            if user_ok && password == opts.password.as_bytes() {
                self.send(b"\r\n");
                self.login_cr = last_cr;
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

    /// Writes what the session produced (a split prompt's tail after its gap).
    fn write_session(&mut self, s: &mut Session) -> Result<(), Gone> {
        let out = s.take_output();
        self.send(&out);
        if let Some(tail) = s.take_prompt_tail() {
            self.pause(engine::PROMPT_SPLIT_GAP)?;
            self.send(&tail);
        }
        self.flush()
    }

    fn run(&mut self) -> Result<(), Gone> {
        let shared = self.shared;
        self.out.extend_from_slice(&GREETING);
        if let Some(banner) = &shared.opts.banner {
            for l in banner.lines() {
                self.send(l.as_bytes());
                self.send(b"\r\n");
            }
        }
        self.send(b"\r\nUser Access Verification\r\n\r\n");
        if !self.login()? {
            return Ok(());
        }
        let mut s = Session::on_device(shared.opts.session_config(), Arc::clone(&shared.dev));
        s.set_echo(self.telnet.echoing());
        s.start();
        loop {
            s.set_echo(self.telnet.echoing());
            if let Some(t) = &self.telnet.ttype {
                s.set_terminal_type(t);
            }
            if self.login_cr {
                if let Some(&b) = self.input.front() {
                    if b == b'\n' {
                        self.input.pop_front();
                    }
                    self.login_cr = false;
                }
            }
            if !self.input.is_empty() {
                let data: Vec<u8> = self.input.drain(..).collect();
                s.feed(&data);
            }
            s.process_input();
            self.write_session(&mut s)?;
            if let Some(end) = s.take_end() {
                // Exit, exec timeout, reload: the output is written, then the line closes;
                // drop: it just closes.
                if end == End::Reload {
                    self.pause(Duration::from_millis(100))?;
                }
                return Ok(());
            }
            if s.is_writing() {
                if self.should_stop() {
                    return Err(Gone);
                }
                // What arrived meanwhile (a break key) without waiting.
                self.poll_some()?;
                if !self.input.is_empty() {
                    let data: Vec<u8> = self.input.drain(..).collect();
                    s.feed(&data);
                }
                let d = s.line_delay();
                if !d.is_zero() {
                    self.pause(d)?;
                }
                s.job_step();
                continue;
            }
            if s.deadline().is_none_or(|at| Instant::now() < at) {
                self.read_some()?;
            }
            let now = Instant::now();
            if s.deadline().is_some_and(|at| now >= at) {
                s.on_timer(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JournalEntry;

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
        // The words that may come next, sorted like IOS.
        assert!(
            help.starts_with("ow ?\r\n  clock\r\n")
                && help.contains("\r\n  ip\r\n")
                && !help.contains("running"),
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
        c.cmd("interface GigabitEthernet1/0/1", "R1(config-if)#");
        c.cmd("description TEST-DESC | core", "R1(config-if)#");
        c.cmd("ip address 10.9.9.1 255.255.255.0", "R1(config-if)#");
        c.cmd("exit", "R1(config)#");
        c.cmd("int Loopback7", "R1(config-if)#");
        c.cmd("interface Vlan1", "R1(config-if)#");
        c.cmd("no shutdown", "R1(config-if)#");
        c.cmd("hostname CORE1", "CORE1(config-if)#");
        c.cmd("exit", "CORE1(config)#");
        let out = c.cmd("do show privilege", "CORE1(config)#");
        assert!(out.contains("Current privilege level is 15\r\n"), "{out:?}");
        let out = c.cmd("bogus thing", "CORE1(config)#");
        assert!(
            out.contains("\r\n              ^\r\n% Invalid input"),
            "{out:?}"
        );
        assert_eq!(c.cmd("end", "CORE1#"), "end\r\nCORE1#");
        c.cmd("terminal length 0", "CORE1#");
        let run = c.cmd("show running-config", "CORE1#");
        assert!(
            run.starts_with(
                "show running-config\r\nBuilding configuration...\r\n\r\nCurrent configuration : "
            ),
            "{run:?}"
        );
        assert!(run.contains("\r\nhostname CORE1\r\n"), "{run}");
        assert!(
            run.contains(
                "\r\ninterface GigabitEthernet1/0/1\r\n description TEST-DESC | core\r\n \
             ip address 10.9.9.1 255.255.255.0\r\n!\r\n"
            ),
            "{run}"
        );
        assert!(
            run.contains("\r\ninterface Vlan1\r\n no shutdown\r\n"),
            "{run}"
        );
        assert!(!run.contains("bogus"), "{run}");
        assert!(run.ends_with("\r\nend\r\nCORE1#"), "{run}");
        let filtered = c.cmd("show run | include TEST-DESC", "CORE1#");
        assert_eq!(
            filtered,
            "show run | include TEST-DESC\r\n description TEST-DESC | core\r\nCORE1#"
        );
        // Configuration belongs to the device: another connection sees it.
        let mut other = Client::login(dev.port(), "CORE1#");
        other.cmd("terminal length 0", "CORE1#");
        let run2 = other.cmd("show running-config", "CORE1#");
        assert!(run2.contains("hostname CORE1\r\n") && run2.contains("TEST-DESC"));
        assert!(dev
            .running_config()
            .contains(&" description TEST-DESC | core".to_string()));
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
        assert_eq!(c.cmd("n", "R1#"), "n\r\nR1#");
        // Confirmed, the device reloads: the connection goes.
        c.cmd("reload", "[confirm]");
        assert_eq!(c.cmd("", "Reloading...\r\n"), "\r\nReloading...\r\n");
        c.wait_closed();
        assert_eq!(
            dev.lines_received(),
            [
                "copy run start",
                "",
                "copy running-config startup-config",
                "backup.cfg",
                "wr",
                "reload",
                "n",
                "reload",
                ""
            ]
        );
    }

    fn long_lines(from: usize, to: usize) -> String {
        (from..=to)
            .map(|i| format!("line {i:04} the quick brown fox jumps over the lazy dog\r\n"))
            .collect()
    }

    #[test]
    fn pager_space_enter_q_and_length_zero() {
        let dev = device(DeviceOptions::default());
        let mut c = Client::login(dev.port(), "R1>");
        let first = c.cmd("show long 30", " --More-- ");
        assert_eq!(
            first,
            format!("show long 30\r\n{} --More-- ", long_lines(1, 24))
        );
        c.send(b" ");
        assert_eq!(c.expect("R1>"), format!("{ERASE}{}R1>", long_lines(25, 30)));

        c.cmd("show long 30", " --More-- ");
        c.send(b"\r\n");
        assert_eq!(
            c.expect(" --More-- "),
            format!("{ERASE}{} --More-- ", long_lines(25, 25))
        );
        c.send(b"q");
        assert_eq!(c.expect("R1>"), format!("{ERASE}R1>"));

        // Exactly one page: no pager.
        assert_eq!(
            c.cmd("show long 24", "R1>"),
            format!("show long 24\r\n{}R1>", long_lines(1, 24))
        );
        c.cmd("terminal length 0", "R1>");
        let all = c.cmd("show long 100", "R1>");
        assert_eq!(all, format!("show long 100\r\n{}R1>", long_lines(1, 100)));
        c.cmd("terminal length 5", "R1>");
        let out = c.cmd("sh ver", " --More-- ");
        assert!(out.starts_with("sh ver\r\nCisco IOS Software, IOSv Software"));
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
        assert_eq!(c.cmd("e", "R1>"), "e\r\n% Ambiguous command:  \"e\"\r\nR1>");
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
        // The engine keeps configuration as text: the byte is U+FFFD there.
        assert!(find(&run, "\r\n description caf\u{fffd}e\r\n".as_bytes()).is_some());
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
        assert_eq!(out, format!("show long 5\r\n{}R1#", long_lines(1, 5)));
        let t0 = Instant::now();
        let out = c.cmd("show slow 1", "R1#");
        assert!(t0.elapsed() >= Duration::from_millis(900));
        assert_eq!(out, "show slow 1\r\nslow line 1 of 1\r\nR1#");
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
    fn revert_timer_expires_with_no_connection_open() {
        let dev = device(DeviceOptions {
            minute: Duration::from_millis(400),
            ..privileged()
        });
        let mut c = Client::login(dev.port(), "R1#");
        c.cmd("conf t", "R1(config)#");
        c.cmd("archive", "R1(config-archive)#");
        c.cmd("path flash:rollback", "R1(config-archive)#");
        c.cmd("end", "R1#");
        c.cmd("configure terminal revert timer 1", "R1(config)#");
        c.cmd(
            "aaa authorization commands 15 default group tacacs+",
            "R1(config)#",
        );
        let out = c.cmd("logging host 192.0.2.9", "R1(config)#");
        assert!(out.contains("% Authorization failed.\r\n"), "{out:?}");
        c.cmd("end", "R1#");
        c.line("exit");
        c.wait_closed();
        wait_until("no connection", || dev.active_connections() == 0);
        assert!(dev.revert_timer().is_some());
        // Nobody is connected: the device reverts by itself.
        wait_until("the revert", || dev.revert_timer().is_none());
        assert!(!dev.running_config().iter().any(|l| l.starts_with("aaa")));
        assert_eq!(
            dev.journal().last().map(String::as_str),
            Some(crate::REVERT_MARK)
        );
        let mut c = Client::login(dev.port(), "R1#");
        c.cmd("conf t", "R1(config)#");
        c.cmd("logging host 192.0.2.9", "R1(config)#");
        assert!(dev
            .running_config()
            .contains(&"logging host 192.0.2.9".to_string()));
    }

    #[test]
    fn break_key_returns_to_the_prompt_mid_output() {
        let dev = device(privileged());
        let mut c = Client::login(dev.port(), "R1#");
        c.cmd("terminal length 0", "R1#");
        c.line("show hang");
        c.expect("working...\r\n");
        c.send(b"\x1e");
        c.expect("R1#");
        // A long output (read between chunks).
        c.line("show long 2000000");
        c.expect("line 0001");
        c.send(b"\x1e");
        c.expect("\r\nR1#");
        c.cmd("show privilege", "Current privilege level is 15\r\nR1#");
        let j = dev.journal();
        assert_eq!(
            j.iter().filter(|l| *l == crate::BREAK_MARK).count(),
            2,
            "{j:?}"
        );
    }

    #[test]
    fn grammar_abbreviations() {
        let dev = device(privileged());
        let mut c = Client::login(dev.port(), "R1#");
        assert!(c.cmd("sh ver", "R1#").contains("Cisco IOS Software"));
        assert!(c.cmd("sh ip int br", "R1#").contains("Interface "));
        c.cmd("term len 0", "R1#");
        assert!(c.cmd("sh run", "R1#").contains("Current configuration"));
        assert!(c.cmd("wr", "R1#").contains("[OK]"));
        assert!(c.cmd("write mem", "R1#").contains("[OK]"));
        c.cmd("copy run start", "[startup-config]? ");
        assert!(c.cmd("", "R1#").contains("[OK]"));
        assert!(c.cmd("term len 513", "R1#").contains("% Invalid input"));
        assert!(c.cmd("show", "R1#").contains("% Incomplete command."));
        assert!(c.cmd("e", "R1#").contains("% Ambiguous command"));
        c.cmd("disable", "R1>");
        assert!(c.cmd("sh run", "R1>").contains("% Invalid input"));
    }

    #[test]
    fn show_terminal_tells_the_negotiated_type_and_the_sizes() {
        let dev = device(DeviceOptions::default());
        let mut c = Client::login(dev.port(), "R1>");
        c.cmd("terminal length 0", "R1>");
        c.cmd("terminal width 132", "R1>");
        let out = c.cmd("show terminal", "R1>");
        assert!(out.contains("Type: \"VT100\""), "{out:?}");
        assert!(
            out.contains("Length: 0 lines, Width: 132 columns"),
            "{out:?}"
        );
    }
}
