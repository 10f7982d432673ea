//! A fake Cisco-IOS-like network device that speaks real SSH (server side via `russh`).
//!
//! Used by the integration tests (as a module of `tests/it/main.rs`) and by
//! `examples/fake_ssh_device.rs`. The public API is synchronous: the device runs its own
//! tokio runtime on a background thread, which is shut down when the [`FakeDevice`] is dropped.
//!
//! Connection architecture:
//! * we accept TCP connections ourselves and keep a `dup()` of every socket, so that
//!   [`FakeDevice::kill_all`] / `show drop` can close the TCP connection abruptly
//!   (`shutdown(SHUT_RDWR)`, no SSH disconnect message, no exit-status);
//! * every session channel gets a "reader" task that drains russh's per-channel queue into an
//!   unbounded queue (so the russh session loop never blocks on us, even while we are stuck
//!   on flow control) and a CLI task that owns the IOS-like state machine and writes through a
//!   window-aware `ChannelTx` writer (so `show flood` respects SSH flow control and does not
//!   buffer the output in memory).
#![allow(dead_code)]

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{HashAlg, PrivateKey};
use russh::server::{Auth, Handle, Handler, Msg, Response, Session};
use russh::{
    Channel, ChannelId, ChannelMsg, ChannelWriteHalf, Disconnect, MethodKind, MethodSet, Pty, SshId,
};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Behaviour of one fake device.
#[derive(Clone, Debug)]
pub struct DeviceConfig {
    /// Initial hostname, shown in the prompt (`R1>`).
    pub hostname: String,
    /// The only user accepted (password and keyboard-interactive auth).
    pub username: String,
    /// Password of `username`.
    pub password: String,
    /// `None` => `enable` needs no password.
    pub enable_password: Option<String>,
    /// `true` => the session starts at `R1#` instead of `R1>`.
    pub start_privileged: bool,
    /// Printed (with `\r\n` line endings) before the first prompt.
    pub banner: Option<String>,
    /// Device-side idle timeout: disconnect after N s without input (like IOS exec-timeout).
    pub exec_timeout_secs: Option<u64>,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            hostname: "R1".to_string(),
            username: "admin".to_string(),
            password: "cisco".to_string(),
            enable_password: None,
            start_privileged: false,
            banner: None,
            exec_timeout_secs: None,
        }
    }
}

/// State shared by the public handle, the accept loop and every connection/shell task.
struct Shared {
    cfg: DeviceConfig,
    lines: Mutex<Vec<String>>,
    total: AtomicUsize,
    next_id: AtomicU64,
    /// Open connections: id -> dup of the TCP socket (used for abrupt kills).
    conns: Mutex<HashMap<u64, std::net::TcpStream>>,
    /// Started shells: id -> queue for injected text.
    shells: Mutex<HashMap<u64, mpsc::UnboundedSender<String>>>,
    freeze: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn record(&self, line: String) {
        lock(&self.lines).push(line);
    }

    /// Abruptly close one TCP connection (FIN both ways, no SSH_MSG_DISCONNECT).
    fn kill_conn(&self, id: u64) {
        if let Some(sock) = lock(&self.conns).remove(&id) {
            let _ = sock.shutdown(Shutdown::Both);
        }
    }

    fn kill_all(&self) {
        let socks: Vec<std::net::TcpStream> = lock(&self.conns).drain().map(|(_, s)| s).collect();
        for s in socks {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// A running fake device listening on 127.0.0.1.
pub struct FakeDevice {
    shared: Arc<Shared>,
    port: u16,
    host_key_openssh: String,
    host_key_sha256: String,
    stop: watch::Sender<bool>,
    rt: tokio::runtime::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeDevice {
    /// Start on an ephemeral port of 127.0.0.1.
    pub fn start(cfg: DeviceConfig) -> FakeDevice {
        FakeDevice::start_on(cfg, 0)
    }

    /// Start on the given port of 127.0.0.1 (0 = ephemeral). Panics if the port can't be bound.
    pub fn start_on(cfg: DeviceConfig, port: u16) -> FakeDevice {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("fake device: cannot bind 127.0.0.1:{port}: {e}"));
        listener
            .set_nonblocking(true)
            .expect("fake device: set_nonblocking");
        let port = listener
            .local_addr()
            .expect("fake device: local_addr")
            .port();

        let key = gen_host_key();
        let host_key_openssh = key.public_key().to_openssh().unwrap_or_default();
        let host_key_sha256 = key.public_key().fingerprint(HashAlg::Sha256).to_string();
        let (freeze, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            cfg,
            lines: Mutex::new(Vec::new()),
            total: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            conns: Mutex::new(HashMap::new()),
            shells: Mutex::new(HashMap::new()),
            freeze,
        });
        let config = Arc::new(server_config(key));
        let (stop, stop_rx) = watch::channel(false);

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fake-ssh-worker")
            .enable_all()
            .build()
            .expect("fake device: tokio runtime");
        let rt_handle = rt.handle().clone();
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fake-ssh-{port}"))
            .spawn(move || {
                rt.block_on(accept_loop(sh, config, listener, stop_rx));
                // Drops every remaining task (sessions, shells) and closes their sockets.
                rt.shutdown_timeout(Duration::from_millis(500));
            })
            .expect("fake device: spawn thread");

        FakeDevice {
            shared,
            port,
            host_key_openssh,
            host_key_sha256,
            stop,
            rt: rt_handle,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every line the CLI received, in order, across connections. Lines typed at a
    /// `Password:` prompt are recorded as `<hidden>`. Empty lines are recorded as `""`.
    pub fn lines_received(&self) -> Vec<String> {
        lock(&self.shared.lines).clone()
    }

    /// Currently open TCP/SSH connections (including ones still authenticating).
    pub fn active_connections(&self) -> usize {
        lock(&self.shared.conns).len()
    }

    /// TCP connections accepted so far.
    pub fn total_connections(&self) -> usize {
        self.shared.total.load(Ordering::SeqCst)
    }

    /// Write unsolicited text to every open (started) shell right now. Dropped while frozen.
    pub fn inject(&self, text: &str) {
        for tx in lock(&self.shared.shells).values() {
            let _ = tx.send(text.to_string());
        }
    }

    /// Abruptly drop every open connection (TCP close without SSH disconnect).
    pub fn kill_all(&self) {
        self.shared.kill_all();
    }

    /// While frozen the device keeps reading (buffering) input but writes nothing at all.
    /// Buffered input is processed when unfrozen.
    pub fn set_freeze(&self, frozen: bool) {
        self.shared.freeze.send_replace(frozen);
    }

    /// Number of tokio tasks alive in the device's runtime (0 when idle: the accept loop is not a
    /// task; each connection/channel adds a few). For leak checks.
    pub fn alive_tasks(&self) -> usize {
        self.rt.metrics().num_alive_tasks()
    }

    /// Host public key in OpenSSH format (`ssh-ed25519 AAAA...`). A new key is generated for
    /// every device.
    pub fn host_key_openssh(&self) -> String {
        self.host_key_openssh.clone()
    }

    /// Host key fingerprint as `SHA256:<base64>` (OpenSSH style).
    pub fn host_key_sha256(&self) -> String {
        self.host_key_sha256.clone()
    }
}

impl Drop for FakeDevice {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        self.shared.kill_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn gen_host_key() -> PrivateKey {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("fake device: getrandom");
    PrivateKey::from(Ed25519Keypair::from_seed(&seed))
}

fn auth_methods() -> MethodSet {
    MethodSet::from(&[MethodKind::Password, MethodKind::KeyboardInteractive][..])
}

fn reject() -> Auth {
    // Keep advertising both methods so a client may retry after a wrong password.
    Auth::Reject {
        proceed_with_methods: Some(auth_methods()),
        partial_success: false,
    }
}

fn server_config(key: PrivateKey) -> russh::server::Config {
    russh::server::Config {
        server_id: SshId::Standard("SSH-2.0-Cisco-1.25".to_string()),
        methods: auth_methods(),
        auth_rejection_time: Duration::from_millis(50),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![key],
        // Long-lived sessions: never garbage-collect idle connections.
        inactivity_timeout: None,
        keepalive_interval: None,
        nodelay: true,
        ..Default::default()
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    config: Arc<russh::server::Config>,
    listener: std::net::TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fake device: listener: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    tokio::spawn(serve_conn(shared.clone(), config.clone(), stream));
                }
                // e.g. EMFILE: back off a little instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
        }
    }
}

/// Removes the connection from the registry when its task ends (or is dropped).
struct ConnGuard {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        lock(&self.shared.conns).remove(&self.id);
    }
}

async fn serve_conn(
    shared: Arc<Shared>,
    config: Arc<russh::server::Config>,
    stream: tokio::net::TcpStream,
) {
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    shared.total.fetch_add(1, Ordering::SeqCst);
    let _ = stream.set_nodelay(true);
    let (stream, dup) = match dup_stream(stream) {
        Ok(x) => x,
        Err(_) => return,
    };
    lock(&shared.conns).insert(id, dup);
    let _guard = ConnGuard {
        shared: shared.clone(),
        id,
    };
    let handler = DeviceHandler {
        shared: shared.clone(),
        conn_id: id,
    };
    if let Ok(session) = russh::server::run_stream(config, stream, handler).await {
        let _ = session.await;
    }
}

fn dup_stream(
    stream: tokio::net::TcpStream,
) -> std::io::Result<(tokio::net::TcpStream, std::net::TcpStream)> {
    let std_stream = stream.into_std()?;
    let dup = std_stream.try_clone()?;
    Ok((tokio::net::TcpStream::from_std(std_stream)?, dup))
}

/// Per-connection russh handler.
struct DeviceHandler {
    shared: Arc<Shared>,
    conn_id: u64,
}

impl Handler for DeviceHandler {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let cfg = &self.shared.cfg;
        if user == cfg.username && password == cfg.password {
            Ok(Auth::Accept)
        } else {
            Ok(reject())
        }
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        match response {
            None => Ok(Auth::Partial {
                name: Cow::Borrowed(""),
                instructions: Cow::Borrowed(""),
                prompts: Cow::Owned(vec![(Cow::Borrowed("Password: "), false)]),
            }),
            Some(mut response) => {
                let cfg = &self.shared.cfg;
                let answer = response.next();
                let ok = user == cfg.username
                    && answer.as_deref() == Some(cfg.password.as_bytes())
                    && response.next().is_none();
                Ok(if ok { Auth::Accept } else { reject() })
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        tokio::spawn(run_shell(
            self.shared.clone(),
            self.conn_id,
            session.handle(),
            channel,
        ));
        Ok(true)
    }

    /// russh (0.54) never answers a client's CHANNEL_CLOSE with its own CLOSE (the channel is
    /// forgotten before the handler runs), but libssh2's `channel_close`/`channel_free` block
    /// until the server's CLOSE arrives. libssh2 always sends EOF before CLOSE, so close our
    /// side as soon as the client sends EOF (like a shell whose stdin ends).
    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.eof(channel)?;
        session.close(channel)
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The shell task starts on the ChannelMsg::RequestShell it receives on the channel;
        // that message is queued before this success is written, but the shell's first output
        // can only be sent by the session loop after this packet has been fully handled.
        session.channel_success(channel)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }
}

// ---------------------------------------------------------------------------------------------
// The CLI
// ---------------------------------------------------------------------------------------------

/// Events from the channel reader task to the CLI task.
enum Ev {
    Data(Vec<u8>),
    Shell,
}

/// The channel (or the whole connection) is gone; the CLI task must end.
struct Closed;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    User,
    Priv,
    /// Configuration mode; the string is the prompt part: "config", "config-if", ...
    Config(&'static str),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum LineKind {
    Command,
    EnablePassword,
    ConfirmCopy,
    ConfirmReload,
}

enum State {
    /// Reading a line of input.
    Idle(LineKind),
    /// A (possibly paged) output job is being written; input is buffered (type-ahead).
    Output,
    /// Paused at ` --More-- `.
    More,
    /// `show slow`: `done` of `total` lines written; next tick at `next`.
    Slow {
        done: u64,
        total: u64,
        next: Instant,
    },
    /// `show hang`: input is ignored forever.
    Hang,
}

enum Action {
    Exit,
    Timeout,
    Drop,
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
const CHUNK: usize = 32 * 1024;
const MORE: &[u8] = b" --More-- ";
const MORE_ERASE: &[u8] =
    b"\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08          \x08\x08\x08\x08\x08\x08\x08\x08\x08\x08";

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

/// Result of looking a (possibly abbreviated) keyword up in a list of candidates.
enum Kw {
    Found(&'static str),
    Ambiguous,
    NoMatch,
}

fn lookup(word: &str, candidates: &[&'static str]) -> Kw {
    let w = word.to_ascii_lowercase();
    if let Some(c) = candidates.iter().find(|c| **c == w) {
        return Kw::Found(c);
    }
    let matches: Vec<&'static str> = candidates
        .iter()
        .copied()
        .filter(|c| c.starts_with(&w))
        .collect();
    match matches.len() {
        0 => Kw::NoMatch,
        1 => Kw::Found(matches[0]),
        _ => Kw::Ambiguous,
    }
}

/// `word` is an abbreviation (at least `min` chars) of `full`.
fn abbrev(word: &str, full: &str, min: usize) -> bool {
    let w = word.to_ascii_lowercase();
    w.len() >= min.min(full.len()) && full.starts_with(&w)
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

const EXEC_USER: &[&str] = &[
    "enable", "disable", "exit", "logout", "quit", "terminal", "show",
];
const EXEC_PRIV: &[&str] = &[
    "enable",
    "disable",
    "exit",
    "logout",
    "quit",
    "terminal",
    "show",
    "configure",
    "write",
    "copy",
    "reload",
];
const SHOW_USER: &[&str] = &[
    "version",
    "clock",
    "ip",
    "privilege",
    "long",
    "flood",
    "slow",
    "hang",
    "drop",
];
const SHOW_PRIV: &[&str] = &[
    "version",
    "clock",
    "ip",
    "privilege",
    "running-config",
    "startup-config",
    "long",
    "flood",
    "slow",
    "hang",
    "drop",
];

enum Filter {
    Include(String),
    Exclude(String),
    Begin(String),
}

async fn run_shell(shared: Arc<Shared>, conn_id: u64, handle: Handle, channel: Channel<Msg>) {
    let (mut rd, wr) = channel.split();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let (closed_tx, closed_rx) = watch::channel(false);
    // Reader: drain russh's bounded per-channel queue promptly, whatever the CLI is doing.
    tokio::spawn(async move {
        while let Some(msg) = rd.wait().await {
            let ev = match msg {
                ChannelMsg::Data { data } => Ev::Data(data.to_vec()),
                ChannelMsg::RequestShell { .. } => Ev::Shell,
                _ => continue,
            };
            if ev_tx.send(ev).is_err() {
                break;
            }
        }
        let _ = closed_tx.send(true);
    });

    let out: Pin<Box<dyn AsyncWrite + Send>> = Box::pin(wr.make_writer());
    let (inject_tx, inject_rx) = mpsc::unbounded_channel();
    let freeze_rx = shared.freeze.subscribe();
    let cfg = shared.cfg.clone();
    let shell_id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let cli = Cli {
        shared,
        conn_id,
        shell_id,
        handle,
        wr,
        out,
        ev_rx,
        closed_rx,
        freeze_rx,
        inject_tx: Some(inject_tx),
        inject_rx,
        started: false,
        hostname: cfg.hostname.clone(),
        mode: if cfg.start_privileged {
            Mode::Priv
        } else {
            Mode::User
        },
        page_len: 24,
        input: VecDeque::new(),
        last_cr: false,
        line: Vec::new(),
        line_prompt_len: 0,
        state: State::Idle(LineKind::Command),
        job: None,
        page_count: 0,
        page_budget: 0,
        pending: Vec::new(),
        action: None,
        last_input: Instant::now(),
        session_cfg: Vec::new(),
        cfg,
    };
    cli.run().await;
}

struct Cli {
    shared: Arc<Shared>,
    cfg: DeviceConfig,
    conn_id: u64,
    shell_id: u64,
    handle: Handle,
    wr: ChannelWriteHalf<Msg>,
    out: Pin<Box<dyn AsyncWrite + Send>>,
    ev_rx: mpsc::UnboundedReceiver<Ev>,
    closed_rx: watch::Receiver<bool>,
    freeze_rx: watch::Receiver<bool>,
    inject_tx: Option<mpsc::UnboundedSender<String>>,
    inject_rx: mpsc::UnboundedReceiver<String>,
    started: bool,
    hostname: String,
    mode: Mode,
    /// Lines per page; 0 = paging off (`terminal length 0`).
    page_len: usize,
    /// Received but not yet processed input bytes.
    input: VecDeque<u8>,
    last_cr: bool,
    line: Vec<u8>,
    /// Length of the prompt that was shown when the current line was typed (for '^').
    line_prompt_len: usize,
    state: State,
    job: Option<Job>,
    page_count: usize,
    page_budget: usize,
    /// Output produced but not written yet.
    pending: Vec<u8>,
    action: Option<Action>,
    last_input: Instant,
    /// Config lines entered in this session (shown in `show running-config`).
    session_cfg: Vec<String>,
}

impl Drop for Cli {
    fn drop(&mut self) {
        lock(&self.shared.shells).remove(&self.shell_id);
    }
}

async fn wait_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

impl Cli {
    async fn run(mut self) {
        let _ = self.run_inner().await;
    }

    async fn run_inner(&mut self) -> Result<(), Closed> {
        loop {
            self.process_input();
            self.flush().await?;
            if let Some(action) = self.action.take() {
                self.perform(action).await;
                return Ok(());
            }
            if matches!(self.state, State::Output) {
                self.drain_nonblocking().await?;
                self.job_step().await?;
                continue;
            }
            let slow_at = match self.state {
                State::Slow { next, .. } => Some(next),
                _ => None,
            };
            let idle_at = match self.cfg.exec_timeout_secs {
                Some(n) if self.started => Some(self.last_input + Duration::from_secs(n)),
                _ => None,
            };
            let far = Instant::now() + Duration::from_secs(86400);
            tokio::select! {
                ev = self.ev_rx.recv() => match ev {
                    Some(ev) => self.on_event(ev),
                    None => return Err(Closed),
                },
                Some(text) = self.inject_rx.recv() => self.on_inject(text).await?,
                _ = tokio::time::sleep_until(slow_at.unwrap_or(far)), if slow_at.is_some() => {
                    self.slow_tick();
                }
                _ = tokio::time::sleep_until(idle_at.unwrap_or(far)), if idle_at.is_some() => {
                    if let Some(n) = self.cfg.exec_timeout_secs {
                        if Instant::now() >= self.last_input + Duration::from_secs(n) {
                            self.action = Some(Action::Timeout);
                        }
                    }
                }
            }
        }
    }

    fn on_event(&mut self, ev: Ev) {
        match ev {
            Ev::Data(d) => {
                self.last_input = Instant::now();
                self.input.extend(d);
            }
            Ev::Shell => {
                if self.started {
                    return;
                }
                self.started = true;
                self.last_input = Instant::now();
                if let Some(tx) = self.inject_tx.take() {
                    lock(&self.shared.shells).insert(self.shell_id, tx);
                }
                if let Some(banner) = self.cfg.banner.clone() {
                    let b = banner.replace("\r\n", "\n").replace('\r', "\n");
                    let b = b.strip_suffix('\n').unwrap_or(&b);
                    for l in b.split('\n') {
                        self.emit_line(l);
                    }
                }
                self.show_prompt();
            }
        }
    }

    async fn on_inject(&mut self, text: String) -> Result<(), Closed> {
        if !self.started || *self.freeze_rx.borrow() {
            return Ok(());
        }
        self.flush().await?;
        self.write_raw(text.as_bytes()).await
    }

    /// Handle queued events and injections without blocking (used between output chunks).
    async fn drain_nonblocking(&mut self) -> Result<(), Closed> {
        loop {
            match self.ev_rx.try_recv() {
                Ok(ev) => self.on_event(ev),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(Closed),
            }
        }
        while let Ok(text) = self.inject_rx.try_recv() {
            self.on_inject(text).await?;
        }
        Ok(())
    }

    // ----- output ------------------------------------------------------------------------

    fn emit(&mut self, s: &str) {
        self.pending.extend_from_slice(s.as_bytes());
    }

    fn emit_line(&mut self, s: &str) {
        self.pending.extend_from_slice(s.as_bytes());
        self.pending.extend_from_slice(b"\r\n");
    }

    fn prompt(&self) -> String {
        match self.mode {
            Mode::User => format!("{}>", self.hostname),
            Mode::Priv => format!("{}#", self.hostname),
            Mode::Config(sub) => format!("{}({})#", self.hostname, sub),
        }
    }

    /// Print the prompt and go back to reading commands.
    fn show_prompt(&mut self) {
        let p = self.prompt();
        self.line_prompt_len = p.len();
        self.emit(&p);
        self.state = State::Idle(LineKind::Command);
    }

    async fn flush(&mut self) -> Result<(), Closed> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.pending);
        self.write_raw(&buf).await
    }

    /// Write to the channel, respecting freeze and SSH flow control.
    async fn write_raw(&mut self, data: &[u8]) -> Result<(), Closed> {
        loop {
            let frozen = *self.freeze_rx.borrow();
            if !frozen {
                break;
            }
            tokio::select! {
                r = self.freeze_rx.changed() => {
                    if r.is_err() {
                        return Err(Closed);
                    }
                }
                ev = self.ev_rx.recv() => match ev {
                    Some(ev) => self.on_event(ev),
                    None => return Err(Closed),
                },
            }
        }
        tokio::select! {
            r = self.out.write_all(data) => r.map_err(|_| Closed),
            _ = wait_true(&mut self.closed_rx) => Err(Closed),
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

    /// Write the next chunk of the current job (up to a page boundary).
    async fn job_step(&mut self) -> Result<(), Closed> {
        let mut buf = std::mem::take(&mut self.pending);
        let paging = self.page_len > 0;
        let done = match self.job.as_mut() {
            Some(job) => {
                while buf.len() < CHUNK {
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
            self.show_prompt();
        } else if paging && self.page_count >= self.page_budget {
            self.pending.extend_from_slice(MORE);
            self.state = State::More;
        }
        self.flush().await
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

    async fn perform(&mut self, action: Action) {
        match action {
            Action::Exit | Action::Timeout => {
                let _ = self.flush().await;
                if matches!(action, Action::Exit) {
                    let _ = self.wr.exit_status(0).await;
                }
                let _ = self.wr.eof().await;
                let _ = self.wr.close().await;
                // Like a real device: once the vty session is over, the connection goes away.
                // Give the client a moment to see EOF/close (and confirm the close) first.
                let _ = tokio::time::timeout(
                    Duration::from_millis(500),
                    wait_true(&mut self.closed_rx),
                )
                .await;
                let _ = self
                    .handle
                    .disconnect(Disconnect::ByApplication, String::new(), String::new())
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                self.shared.kill_conn(self.conn_id);
            }
            Action::Drop => self.shared.kill_conn(self.conn_id),
            Action::Reload => {
                let _ = self.flush().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                self.shared.kill_conn(self.conn_id);
            }
        }
    }

    // ----- input -------------------------------------------------------------------------

    fn process_input(&mut self) {
        if !self.started {
            return;
        }
        while self.action.is_none() {
            if !matches!(self.state, State::Idle(_) | State::More | State::Hang) {
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
                State::Idle(kind) => self.line_byte(kind, b, eol),
                _ => {}
            }
        }
    }

    fn more_key(&mut self, b: u8, eol: bool) {
        self.pending.extend_from_slice(MORE_ERASE);
        if b == b' ' {
            self.page_count = 0;
            self.page_budget = self.page_len;
            self.state = State::Output;
        } else if eol {
            self.page_budget = self.page_count + 1;
            self.state = State::Output;
        } else {
            self.job = None;
            self.show_prompt();
        }
    }

    fn line_byte(&mut self, kind: LineKind, b: u8, eol: bool) {
        let echo = kind != LineKind::EnablePassword;
        if eol {
            let line = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
            self.emit("\r\n");
            self.on_line(kind, line);
        } else if b == 0x08 || b == 0x7f {
            if self.line.pop().is_some() && echo {
                self.emit("\x08 \x08");
            }
        } else if (b == 0x1a || b == 0x03)
            && kind == LineKind::Command
            && matches!(self.mode, Mode::Config(_))
        {
            // Ctrl-Z / Ctrl-C in config mode: like `end`.
            self.line.clear();
            self.emit_line(if b == 0x1a { "^Z" } else { "^C" });
            self.mode = Mode::Priv;
            self.show_prompt();
        } else if b >= 0x20 {
            self.line.push(b);
            if echo {
                self.pending.push(b);
            }
        }
    }

    fn on_line(&mut self, kind: LineKind, line: String) {
        match kind {
            LineKind::Command => {
                self.shared.record(line.clone());
                self.command(&line);
            }
            LineKind::EnablePassword => {
                self.shared.record("<hidden>".to_string());
                if self.cfg.enable_password.as_deref() == Some(line.as_str()) {
                    self.mode = Mode::Priv;
                } else {
                    self.emit_line("% Access denied");
                    self.emit_line("");
                }
                self.show_prompt();
            }
            LineKind::ConfirmCopy => {
                self.shared.record(line);
                self.emit_line("Building configuration...");
                self.emit_line("[OK]");
                self.show_prompt();
            }
            LineKind::ConfirmReload => {
                self.shared.record(line.clone());
                let answer = line.trim().to_ascii_lowercase();
                if answer.is_empty() || answer == "y" || answer == "yes" {
                    self.emit_line("Reloading...");
                    self.action = Some(Action::Reload);
                } else {
                    self.show_prompt();
                }
            }
        }
    }

    // ----- commands ----------------------------------------------------------------------

    /// Resolve a (possibly abbreviated) keyword; on no match or an ambiguous one, print the
    /// IOS error and the prompt and return None.
    fn keyword(
        &mut self,
        line: &str,
        off: usize,
        word: &str,
        candidates: &[&'static str],
    ) -> Option<&'static str> {
        match lookup(word, candidates) {
            Kw::Found(c) => return Some(c),
            Kw::Ambiguous => self.ambiguous(line),
            Kw::NoMatch => self.invalid_at(off),
        }
        self.show_prompt();
        None
    }

    fn invalid_at(&mut self, offset: usize) {
        let col = self.line_prompt_len + offset;
        self.emit_line(&format!("{}^", " ".repeat(col)));
        self.emit_line("% Invalid input detected at '^' marker.");
        self.emit_line("");
    }

    fn incomplete(&mut self) {
        self.emit_line("% Incomplete command.");
        self.emit_line("");
    }

    fn ambiguous(&mut self, line: &str) {
        self.emit_line(&format!("% Ambiguous command:  \"{}\"", line.trim()));
    }

    fn command(&mut self, line: &str) {
        let toks = tokenize(line);
        if toks.is_empty() {
            self.show_prompt();
            return;
        }
        match self.mode {
            Mode::Config(_) => self.config_command(line, &toks),
            Mode::User => self.exec_command(line, &toks, false),
            Mode::Priv => self.exec_command(line, &toks, true),
        }
    }

    /// Run an exec-mode command. Ends by either printing the prompt, starting an output job,
    /// or switching to a state that prints it later.
    fn exec_command(&mut self, line: &str, toks: &[(usize, &str)], privileged: bool) {
        // Output filter: `... | include X`.
        let (toks, filter) = match toks.iter().position(|(_, t)| *t == "|") {
            Some(i) => {
                let f = match toks.get(i + 1) {
                    Some(&(off, w)) => {
                        let pat = toks[i + 2..]
                            .iter()
                            .map(|(_, t)| *t)
                            .collect::<Vec<_>>()
                            .join(" ");
                        match lookup(w, &["include", "exclude", "begin", "section"]) {
                            Kw::Found("include") | Kw::Found("section") => Filter::Include(pat),
                            Kw::Found("exclude") => Filter::Exclude(pat),
                            Kw::Found(_) => Filter::Begin(pat),
                            _ => {
                                self.invalid_at(off);
                                self.show_prompt();
                                return;
                            }
                        }
                    }
                    None => {
                        self.incomplete();
                        self.show_prompt();
                        return;
                    }
                };
                (&toks[..i], Some(f))
            }
            None => (toks, None),
        };
        if toks.is_empty() {
            self.invalid_at(0);
            self.show_prompt();
            return;
        }
        let (off0, w0) = toks[0];
        let Some(cmd) = self.keyword(
            line,
            off0,
            w0,
            if privileged { EXEC_PRIV } else { EXEC_USER },
        ) else {
            return;
        };
        let args = &toks[1..];
        match cmd {
            "enable" => {
                if self.mode == Mode::User {
                    if self.cfg.enable_password.is_some() {
                        self.emit("Password: ");
                        self.state = State::Idle(LineKind::EnablePassword);
                        return;
                    }
                    self.mode = Mode::Priv;
                }
                self.show_prompt();
            }
            "disable" => {
                if self.mode == Mode::Priv {
                    self.mode = Mode::User;
                }
                self.show_prompt();
            }
            "exit" | "logout" | "quit" => self.action = Some(Action::Exit),
            "terminal" => {
                self.terminal(args);
                self.show_prompt();
            }
            "show" => self.show(line, args, privileged, filter),
            "configure" => match args.first() {
                None => {
                    self.incomplete();
                    self.show_prompt();
                }
                Some(&(off, w)) => {
                    if abbrev(w, "terminal", 1) && args.len() == 1 {
                        self.emit_line(
                            "Enter configuration commands, one per line.  End with CNTL/Z.",
                        );
                        self.mode = Mode::Config("config");
                    } else {
                        let bad = if abbrev(w, "terminal", 1) {
                            args[1].0
                        } else {
                            off
                        };
                        self.invalid_at(bad);
                    }
                    self.show_prompt();
                }
            },
            "write" => match args.first() {
                None => self.write_memory(),
                Some(&(off, w)) => {
                    if abbrev(w, "memory", 1) {
                        self.write_memory();
                    } else if abbrev(w, "terminal", 1) {
                        let lines = self.running_config();
                        self.start_lines(apply_filter(lines, filter.as_ref()));
                    } else {
                        self.invalid_at(off);
                        self.show_prompt();
                    }
                }
            },
            "copy" => {
                let ok = args.len() == 2
                    && abbrev(args[0].1, "running-config", 3)
                    && abbrev(args[1].1, "startup-config", 3);
                if ok {
                    self.emit("Destination filename [startup-config]? ");
                    self.state = State::Idle(LineKind::ConfirmCopy);
                } else if args.len() < 2 {
                    self.incomplete();
                    self.show_prompt();
                } else {
                    let bad = if abbrev(args[0].1, "running-config", 3) {
                        args[1].0
                    } else {
                        args[0].0
                    };
                    self.invalid_at(bad);
                    self.show_prompt();
                }
            }
            "reload" => {
                self.emit("Proceed with reload? [confirm]");
                self.state = State::Idle(LineKind::ConfirmReload);
            }
            _ => {
                self.invalid_at(off0);
                self.show_prompt();
            }
        }
    }

    fn write_memory(&mut self) {
        self.emit_line("Building configuration...");
        self.emit_line("[OK]");
        self.show_prompt();
    }

    fn terminal(&mut self, args: &[(usize, &str)]) {
        let Some(&(off, w)) = args.first() else {
            self.incomplete();
            return;
        };
        match lookup(w, &["length", "width", "monitor", "no"]) {
            Kw::Found("length") | Kw::Found("width") => {
                let is_len = abbrev(w, "length", 1);
                match args.get(1) {
                    None => self.incomplete(),
                    Some(&(off2, n)) => match n.parse::<usize>() {
                        Ok(n) if args.len() == 2 && n <= 512 => {
                            if is_len {
                                self.page_len = n;
                            }
                        }
                        _ => self.invalid_at(off2),
                    },
                }
            }
            Kw::Found(_) => {}
            _ => self.invalid_at(off),
        }
    }

    fn show(
        &mut self,
        line: &str,
        args: &[(usize, &str)],
        privileged: bool,
        filter: Option<Filter>,
    ) {
        let Some(&(off, w)) = args.first() else {
            self.incomplete();
            self.show_prompt();
            return;
        };
        let Some(what) = self.keyword(line, off, w, if privileged { SHOW_PRIV } else { SHOW_USER })
        else {
            return;
        };
        let rest = &args[1..];
        // Optional / required numeric argument for the test commands.
        let number = |rest: &[(usize, &str)]| -> Result<Option<u64>, usize> {
            match rest {
                [] => Ok(None),
                [(o, n)] => n.parse::<u64>().map(Some).map_err(|_| *o),
                [_, (o, _), ..] => Err(*o),
            }
        };
        let no_args = |rest: &[(usize, &str)]| rest.first().map(|(o, _)| *o);
        match what {
            "version" | "clock" | "privilege" | "running-config" | "startup-config" | "hang"
            | "drop" => {
                if let Some(o) = no_args(rest) {
                    self.invalid_at(o);
                    self.show_prompt();
                    return;
                }
                match what {
                    "version" => {
                        let lines = self.show_version();
                        self.start_lines(apply_filter(lines, filter.as_ref()));
                    }
                    "clock" => {
                        self.start_lines(vec![clock_line()]);
                    }
                    "privilege" => {
                        let lvl = if self.mode == Mode::User { 1 } else { 15 };
                        self.start_lines(vec![format!("Current privilege level is {lvl}")]);
                    }
                    "running-config" => {
                        let lines = self.running_config();
                        self.start_lines(apply_filter(lines, filter.as_ref()));
                    }
                    "startup-config" => {
                        let mut lines = self.running_config();
                        lines[0] = "Using 1651 out of 262144 bytes".to_string();
                        self.start_lines(apply_filter(lines, filter.as_ref()));
                    }
                    "hang" => {
                        self.emit_line("working...");
                        self.state = State::Hang;
                    }
                    _ => self.action = Some(Action::Drop),
                }
            }
            "ip" => {
                // Only `show ip interface brief` exists.
                let parsed: Result<bool, usize> = match rest {
                    [] => Ok(false),
                    [(o, w), ..] if !abbrev(w, "interface", 1) => Err(*o),
                    [_] => Ok(false),
                    [_, (o, w), ..] if !abbrev(w, "brief", 1) => Err(*o),
                    [_, _] => Ok(true),
                    [_, _, (o, _), ..] => Err(*o),
                };
                match parsed {
                    Ok(true) => {
                        let lines = ip_int_brief();
                        self.start_lines(apply_filter(lines, filter.as_ref()));
                    }
                    Ok(false) => {
                        self.incomplete();
                        self.show_prompt();
                    }
                    Err(o) => {
                        self.invalid_at(o);
                        self.show_prompt();
                    }
                }
            }
            "long" => match number(rest) {
                Ok(n) => self.start_job(Job::Numbered {
                    next: 1,
                    last: n.unwrap_or(100),
                }),
                Err(o) => {
                    self.invalid_at(o);
                    self.show_prompt();
                }
            },
            "flood" => match number(rest) {
                Ok(Some(mb)) => self.start_job(Job::Flood {
                    next: 1,
                    last: mb.saturating_mul(FLOOD_LINES_PER_MIB),
                }),
                Ok(None) => {
                    self.incomplete();
                    self.show_prompt();
                }
                Err(o) => {
                    self.invalid_at(o);
                    self.show_prompt();
                }
            },
            "slow" => match number(rest) {
                Ok(Some(s)) => {
                    self.state = State::Slow {
                        done: 0,
                        total: s,
                        next: Instant::now(),
                    }
                }
                Ok(None) => {
                    self.incomplete();
                    self.show_prompt();
                }
                Err(o) => {
                    self.invalid_at(o);
                    self.show_prompt();
                }
            },
            _ => {
                self.invalid_at(off);
                self.show_prompt();
            }
        }
    }

    fn config_command(&mut self, line: &str, toks: &[(usize, &str)]) {
        let Mode::Config(sub) = self.mode else {
            return;
        };
        let (off0, w0) = toks[0];
        let w0l = w0.to_ascii_lowercase();
        let trimmed = line.trim().to_string();
        if w0l == "end" {
            self.mode = Mode::Priv;
        } else if w0l == "exit" {
            self.mode = if sub == "config" {
                Mode::Priv
            } else {
                Mode::Config("config")
            };
        } else if w0l == "do" {
            if toks.len() == 1 {
                self.incomplete();
            } else {
                // Runs an exec command; its output ends with the (config) prompt.
                self.exec_command(line, &toks[1..], true);
                return;
            }
        } else if w0l.starts_with("bogus") {
            self.invalid_at(off0);
        } else if abbrev(w0, "hostname", 4) {
            match toks.get(1) {
                None => self.incomplete(),
                Some((_, name)) => self.hostname = name.to_string(),
            }
        } else if abbrev(w0, "interface", 3)
            || abbrev(w0, "line", 4)
            || abbrev(w0, "router", 3)
            || abbrev(w0, "vlan", 4)
        {
            if toks.len() == 1 {
                self.incomplete();
            } else {
                let new_sub = if abbrev(w0, "interface", 3) {
                    "config-if"
                } else if abbrev(w0, "line", 4) {
                    "config-line"
                } else if abbrev(w0, "router", 3) {
                    "config-router"
                } else {
                    "config-vlan"
                };
                self.session_cfg.push("!".to_string());
                self.session_cfg.push(trimmed);
                self.mode = Mode::Config(new_sub);
            }
        } else if sub == "config" {
            self.session_cfg.push(trimmed);
        } else {
            self.session_cfg.push(format!(" {trimmed}"));
        }
        self.show_prompt();
    }

    // ----- canned output -----------------------------------------------------------------

    fn show_version(&self) -> Vec<String> {
        let h = &self.hostname;
        [
            "Cisco IOS Software, IOSv Software (VIOS-ADVENTERPRISEK9-M), Version 15.6(2)T, RELEASE SOFTWARE (fc2)",
            "Technical Support: http://www.cisco.com/techsupport",
            "Copyright (c) 1986-2016 by Cisco Systems, Inc.",
            "Compiled Tue 22-Mar-16 16:19 by prod_rel_team",
            "",
            "",
            "ROM: Bootstrap program is IOSv",
            "",
            &format!("{h} uptime is 1 week, 2 days, 3 hours, 4 minutes"),
            "System returned to ROM by reload",
            "System image file is \"flash0:/vios-adventerprisek9-m\"",
            "Last reload reason: Unknown reason",
            "",
            "Cisco IOSv (revision 1.0) with  with 460137K/62464K bytes of memory.",
            "Processor board ID 9KIBQAQ3OPE0C6R2T4A5E",
            "3 Gigabit Ethernet interfaces",
            "DRAM configuration is 72 bits wide with parity disabled.",
            "256K bytes of non-volatile configuration memory.",
            "2097152K bytes of ATA System CompactFlash 0 (Read/Write)",
            "",
            "Configuration register is 0x0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn running_config(&self) -> Vec<String> {
        let mut v: Vec<String> = [
            "Building configuration...",
            "",
            "Current configuration : 1651 bytes",
            "!",
            "! Last configuration change at 09:15:02 UTC Mon Mar 1 2024",
            "!",
            "version 15.6",
            "service timestamps debug datetime msec",
            "service timestamps log datetime msec",
            "no service password-encryption",
            "!",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.push(format!("hostname {}", self.hostname));
        v.push("!".into());
        v.push("boot-start-marker".into());
        v.push("boot-end-marker".into());
        v.push("!".into());
        if self.cfg.enable_password.is_some() {
            v.push("enable secret 5 $1$mERr$hx5rVt7rPNoS4wqbXKX7m0".into());
            v.push("!".into());
        }
        v.push("no aaa new-model".into());
        v.push("ip cef".into());
        v.push("no ipv6 cef".into());
        v.push("!".into());
        v.push(format!(
            "username {} privilege 15 password 0 {}",
            self.cfg.username, self.cfg.password
        ));
        for l in [
            "!",
            "interface GigabitEthernet0/0",
            " ip address 192.168.1.1 255.255.255.0",
            " duplex auto",
            " speed auto",
            "!",
            "interface GigabitEthernet0/1",
            " no ip address",
            " shutdown",
            " duplex auto",
            " speed auto",
            "!",
            "interface GigabitEthernet0/2",
            " ip address 10.0.0.1 255.255.255.0",
            "!",
            "interface Loopback0",
            " ip address 1.1.1.1 255.255.255.255",
        ] {
            v.push(l.into());
        }
        v.extend(self.session_cfg.iter().cloned());
        for l in [
            "!",
            "ip forward-protocol nd",
            "no ip http server",
            "!",
            "line con 0",
            "line aux 0",
            "line vty 0 4",
            " login local",
            " transport input ssh",
            "!",
            "end",
        ] {
            v.push(l.into());
        }
        v
    }
}

fn apply_filter(lines: Vec<String>, filter: Option<&Filter>) -> Vec<String> {
    match filter {
        None => lines,
        Some(Filter::Include(p)) => lines.into_iter().filter(|l| l.contains(p)).collect(),
        Some(Filter::Exclude(p)) => lines.into_iter().filter(|l| !l.contains(p)).collect(),
        Some(Filter::Begin(p)) => lines.into_iter().skip_while(|l| !l.contains(p)).collect(),
    }
}

fn ip_int_brief() -> Vec<String> {
    [
        "Interface                  IP-Address      OK? Method Status                Protocol",
        "GigabitEthernet0/0         192.168.1.1     YES NVRAM  up                    up      ",
        "GigabitEthernet0/1         unassigned      YES NVRAM  administratively down down    ",
        "GigabitEthernet0/2         10.0.0.1        YES manual up                    up      ",
        "Loopback0                  1.1.1.1         YES NVRAM  up                    up      ",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn clock_line() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() % 86400;
    format!(
        "*{:02}:{:02}:{:02}.{:03} UTC Mon Mar 1 2024",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        now.subsec_millis()
    )
}
