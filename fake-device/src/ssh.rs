//! The SSH front (feature `ssh`): a fake device that speaks real SSH (server side via `russh`)
//! and plays a persona ([`crate::engine::Session`]) on every shell channel.
//!
//! The public API is synchronous: the device runs its own tokio runtime on a background thread,
//! which is shut down when the [`FakeDevice`] is dropped.
//!
//! Connection architecture:
//! * we accept TCP connections ourselves and register every socket's fd while it is open
//!   ([`ConnStream`]), so that [`FakeDevice::kill_all`] / the `drop` hook can close the TCP
//!   connection abruptly (`shutdown(SHUT_RDWR)`, no SSH disconnect message, no exit-status).
//!   One fd per connection, so one device holds 10,000 connections within a 20,000-fd limit;
//! * every session channel gets a "reader" task that drains russh's per-channel queue into an
//!   unbounded queue (so the russh session loop never blocks on us, even while we are stuck
//!   on flow control) and a CLI task that drives the session and writes through a
//!   window-aware `ChannelTx` writer (so `flood` respects SSH flow control and does not
//!   buffer the output in memory).

use std::borrow::Cow;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::ssh_key::private::{Ed25519Keypair, RsaKeypair};
use russh::keys::ssh_key::rand_core::OsRng;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PrivateKey, PublicKey};
use russh::server::{Auth, Handle, Handler, Msg, Response, Session};
use russh::{
    Channel, ChannelId, ChannelMsg, ChannelWriteHalf, Disconnect, MethodKind, MethodSet, Pty, SshId,
};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::engine::{self, End};
use crate::persona;
use crate::{lock, AuthMode, DeviceConfig, DeviceState, Input, JournalEntry, Log};

impl AuthMode {
    fn methods(&self) -> MethodSet {
        let m: &[MethodKind] = match self {
            AuthMode::Password => &[MethodKind::Password, MethodKind::KeyboardInteractive],
            AuthMode::KeyboardInteractiveOnly => &[MethodKind::KeyboardInteractive],
            AuthMode::PublicKeyOnly(_) => &[MethodKind::PublicKey],
            AuthMode::PasswordOrPublicKey(_) => &[MethodKind::PublicKey, MethodKind::Password],
        };
        MethodSet::from(m)
    }

    fn allows(&self, method: MethodKind) -> bool {
        self.methods().contains(&method)
    }

    fn authorized_keys(&self) -> &[String] {
        match self {
            AuthMode::PublicKeyOnly(k) | AuthMode::PasswordOrPublicKey(k) => k,
            _ => &[],
        }
    }
}

/// State shared by the public handle, the accept loop and every connection/shell task.
struct Shared {
    cfg: DeviceConfig,
    /// What the sessions received (see [`FakeDevice::journal`]).
    log: Arc<Log>,
    /// Running config, hostname, revert timer: shared by every shell.
    dev: Arc<DeviceState>,
    total: AtomicUsize,
    next_id: AtomicU64,
    /// Open connections: id -> the fd of its TCP socket (used for abrupt kills). An entry goes
    /// before its fd is closed ([`ConnStream`]'s drop), and kills hold this lock while they
    /// shut a socket down, so a kill never reaches a reused fd number.
    conns: Mutex<HashMap<u64, RawFd>>,
    /// Started shells: id -> queue for injected text.
    shells: Mutex<HashMap<u64, mpsc::UnboundedSender<String>>>,
    freeze: watch::Sender<bool>,
    /// Parsed [`AuthMode`] keys.
    authorized: Vec<PublicKey>,
    /// Auth methods tried by clients, in order (see [`FakeDevice::auth_methods_tried`]).
    auth_tried: Mutex<Vec<String>>,
}

impl Shared {
    /// Abruptly close one TCP connection (FIN both ways, no SSH_MSG_DISCONNECT).
    fn kill_conn(&self, id: u64) {
        let mut conns = lock(&self.conns);
        if let Some(fd) = conns.remove(&id) {
            shutdown_both(fd);
        }
    }

    fn kill_all(&self) {
        let mut conns = lock(&self.conns);
        for (_, fd) in conns.drain() {
            shutdown_both(fd);
        }
    }
}

/// `shutdown(SHUT_RDWR)` on a registered connection's socket. Called with `Shared::conns`
/// locked and the fd still in it, so the fd is still that connection's socket.
fn shutdown_both(fd: RawFd) {
    // SAFETY: shutdown takes any fd; this one is an open TCP socket (see above).
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
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
        FakeDevice::start_at(cfg, std::net::Ipv4Addr::LOCALHOST.into(), port)
    }

    /// Start on `ip:port` (a test host's address in a network namespace, say). The listening
    /// socket belongs to the network namespace of the calling thread.
    pub fn start_at(cfg: DeviceConfig, ip: std::net::IpAddr, port: u16) -> FakeDevice {
        let listener = std::net::TcpListener::bind((ip, port))
            .unwrap_or_else(|e| panic!("fake device: cannot bind {ip}:{port}: {e}"));
        listener
            .set_nonblocking(true)
            .expect("fake device: set_nonblocking");
        let port = listener
            .local_addr()
            .expect("fake device: local_addr")
            .port();

        let key = match &cfg.host_key {
            None => gen_host_key(),
            // Not `PrivateKey::from_openssh`: its PEM decoder refuses about half of the valid
            // ECDSA keys (apparently those whose private section needs no padding), which
            // ssh-keygen and libssh2 read fine.
            Some(pem) => russh::keys::decode_secret_key(pem, None)
                .unwrap_or_else(|e| panic!("fake device: bad host_key: {e}")),
        };
        // Without the key's comment, like `ssh-keyscan` shows it.
        let host_key_openssh = PublicKey::from(key.public_key().key_data().clone())
            .to_openssh()
            .expect("fake device: encode host key");
        let host_key_sha256 = key.public_key().fingerprint(HashAlg::Sha256).to_string();
        let authorized = cfg
            .auth
            .authorized_keys()
            .iter()
            .map(|k| {
                PublicKey::from_openssh(k.trim())
                    .unwrap_or_else(|e| panic!("fake device: bad authorized key {k:?}: {e}"))
            })
            .collect();
        let methods = cfg.auth.methods();
        let (freeze, _) = watch::channel(false);
        let persona = persona::get(&cfg.persona);
        let log = Arc::new(Log::default());
        let dev = Arc::new(DeviceState::new(
            &cfg.hostname,
            cfg.minute,
            Arc::clone(&log),
        ));
        let shared = Arc::new(Shared {
            cfg,
            log,
            dev,
            total: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            conns: Mutex::new(HashMap::new()),
            shells: Mutex::new(HashMap::new()),
            freeze,
            authorized,
            auth_tried: Mutex::new(Vec::new()),
        });
        let config = Arc::new(server_config(key, &persona.ssh_server_id, methods));
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

    /// Every line the CLI received, in order, across connections: commands and answers to
    /// questions as typed; lines typed at a hidden question (`Password:`) are recorded as
    /// `<hidden>`. Empty lines are recorded as `""`. Keys pressed at `Press any key` are not
    /// lines. [`FakeDevice::inputs`] tells commands and answers apart.
    pub fn lines_received(&self) -> Vec<String> {
        self.shared.log.lines_received()
    }

    /// Everything received, in order, across connections, telling commands, answers to
    /// questions (with the question), hidden answers (with what arrived) and keys apart.
    pub fn inputs(&self) -> Vec<Input> {
        self.shared.log.inputs()
    }

    /// The command lines the CLI acted on, in order, across connections: each line as the IOS
    /// line editor finished it (Enter, or Ctrl-Z after text), whatever the CLI then made of it
    /// (errors included). Blank lines, lines dropped with Ctrl-C, `?` help and answers to
    /// questions are not in it ([`FakeDevice::inputs`] has the answers).
    pub fn journal(&self) -> Vec<String> {
        self.shared.log.journal()
    }

    /// [`FakeDevice::journal`] with the persona mode each line was executed in (`user`, `priv`,
    /// `config`, `config-if`, ... for `cisco_ios`).
    pub fn journal_entries(&self) -> Vec<JournalEntry> {
        self.shared.log.journal_entries()
    }

    /// The answers given to questions so far: (question, answer), hidden ones included with
    /// their real text.
    pub fn answers(&self) -> Vec<(String, String)> {
        self.shared.log.answers()
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

    /// Names of every persona fixture (`cisco_ios`, `juniper_junos`, ...).
    pub fn persona_names() -> Vec<&'static str> {
        persona::persona_names()
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

    /// Host public key actually used, in OpenSSH format without comment (`ssh-ed25519 AAAA...`):
    /// [`DeviceConfig::host_key`]'s, or a new ed25519 key generated for this device.
    pub fn host_key_openssh(&self) -> String {
        self.host_key_openssh.clone()
    }

    /// Host key fingerprint as `ssh-keygen -l` prints it: `SHA256:` + unpadded base64.
    pub fn host_key_sha256(&self) -> String {
        self.host_key_sha256.clone()
    }

    /// The user-authentication methods clients tried, in order, across connections:
    /// `"password"`, `"keyboard-interactive"`, `"publickey"` (one entry per request, accepted or
    /// refused, offered or not; a publickey probe and its signed request count once). The
    /// `none` method (a client asking which methods exist) is not recorded.
    pub fn auth_methods_tried(&self) -> Vec<String> {
        lock(&self.shared.auth_tried).clone()
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

/// A new key pair: `alg` is `ed25519`, `ecdsa` (nistp256) or `rsa` (2048 bits; slow-ish in
/// debug builds). Panics on anything else.
fn gen_key(alg: &str) -> PrivateKey {
    let key = match alg {
        "ed25519" | "ssh-ed25519" => PrivateKey::random(&mut OsRng, Algorithm::Ed25519),
        "ecdsa" | "ecdsa-sha2-nistp256" => PrivateKey::random(
            &mut OsRng,
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            },
        ),
        "rsa" | "ssh-rsa" => RsaKeypair::random(&mut OsRng, 2048).map(PrivateKey::from),
        other => panic!("fake device: unknown key algorithm {other:?} (ed25519, ecdsa, rsa)"),
    };
    key.unwrap_or_else(|e| panic!("fake device: generate {alg} key: {e}"))
}

/// `key` as OpenSSH PEM text, or `None` when ssh-key's own PEM decoder can't read it back
/// (see [`FakeDevice::start_on`]); the generators then take another key, so that their output
/// also works with `PrivateKey::from_openssh`.
fn to_openssh_checked(key: &PrivateKey) -> Option<String> {
    let pem = key
        .to_openssh(LineEnding::LF)
        .expect("fake device: encode private key")
        .to_string();
    PrivateKey::from_openssh(&pem).is_ok().then_some(pem)
}

/// A new host key for [`DeviceConfig::host_key`], as an OpenSSH-format private key (PEM text).
/// `alg`: `ed25519`, `ecdsa` (nistp256) or `rsa` (2048 bits).
pub fn gen_host_key_openssh(alg: &str) -> String {
    for _ in 0..50 {
        if let Some(pem) = to_openssh_checked(&gen_key(alg)) {
            return pem;
        }
    }
    panic!("fake device: no readable {alg} key")
}

/// A new client key pair for [`AuthMode::PublicKeyOnly`] / [`AuthMode::PasswordOrPublicKey`]:
/// (OpenSSH-format private key (PEM text), public key as one OpenSSH line with the comment
/// `fake-ssh-client`). With a non-empty `passphrase` the private key is encrypted the way
/// `ssh-keygen` does it (bcrypt KDF, aes256-ctr); `Some("")` means unencrypted, as with
/// `ssh-keygen -N ""`. `alg`: `ed25519`, `ecdsa` (nistp256) or `rsa` (2048 bits).
pub fn gen_client_key_openssh(alg: &str, passphrase: Option<&str>) -> (String, String) {
    for _ in 0..50 {
        let mut key = gen_key(alg);
        key.set_comment("fake-ssh-client");
        let public = key
            .public_key()
            .to_openssh()
            .expect("fake device: encode public key");
        if let Some(p) = passphrase.filter(|p| !p.is_empty()) {
            key = key
                .encrypt(&mut OsRng, p)
                .unwrap_or_else(|e| panic!("fake device: encrypt key: {e}"));
        }
        if let Some(private) = to_openssh_checked(&key) {
            return (private, public);
        }
    }
    panic!("fake device: no readable {alg} key")
}

fn reject(mode: &AuthMode) -> Auth {
    // Keep advertising the mode's methods so a client may retry after a wrong password.
    Auth::Reject {
        proceed_with_methods: Some(mode.methods()),
        partial_success: false,
    }
}

fn server_config(key: PrivateKey, server_id: &str, methods: MethodSet) -> russh::server::Config {
    russh::server::Config {
        server_id: SshId::Standard(server_id.to_string()),
        methods,
        auth_rejection_time: Duration::from_millis(50),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![key],
        // Long-lived sessions: never garbage-collect idle connections.
        inactivity_timeout: None,
        keepalive_interval: None,
        nodelay: true,
        preferred: server_preferred(),
        ..Default::default()
    }
}

/// russh 0.54 keeps the *client* markers `ext-info-c` and `kex-strict-c-v00@openssh.com` in its
/// server-side kex preferences and picks one of them as "the" kex when a client lists it first,
/// which libssh2 does whenever an application sets kex preferences; the handshake then fails.
/// A real sshd never does that, so the fake device leaves them out of its own list.
fn server_preferred() -> russh::Preferred {
    use russh::kex::{EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT, EXTENSION_SUPPORT_AS_CLIENT};
    let default = russh::Preferred::default();
    let kex: Vec<russh::kex::Name> = default
        .kex
        .iter()
        .filter(|k| {
            ![
                EXTENSION_SUPPORT_AS_CLIENT,
                EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
            ]
            .contains(k)
        })
        .copied()
        .collect();
    russh::Preferred {
        kex: kex.into(),
        ..default
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
    // The device's own clock: a revert timer expires with no client connected too.
    let mut clock = tokio::time::interval(Duration::from_millis(25));
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            _ = clock.tick() => {
                shared.dev.tick(std::time::Instant::now());
            }
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

/// A connection's TCP stream, registered in `Shared::conns` while it is open: its drop takes
/// the entry out before the socket (the field, dropped after `drop`) is closed.
struct ConnStream {
    inner: tokio::net::TcpStream,
    shared: Arc<Shared>,
    id: u64,
}

impl ConnStream {
    fn new(shared: Arc<Shared>, id: u64, inner: tokio::net::TcpStream) -> ConnStream {
        lock(&shared.conns).insert(id, inner.as_raw_fd());
        ConnStream { inner, shared, id }
    }
}

impl Drop for ConnStream {
    fn drop(&mut self) {
        lock(&self.shared.conns).remove(&self.id);
    }
}

impl tokio::io::AsyncRead for ConnStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
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
    let stream = ConnStream::new(shared.clone(), id, stream);
    let handler = DeviceHandler {
        shared: shared.clone(),
        conn_id: id,
    };
    if let Ok(session) = russh::server::run_stream(config, stream, handler).await {
        let _ = session.await;
    }
}

/// Per-connection russh handler.
struct DeviceHandler {
    shared: Arc<Shared>,
    conn_id: u64,
}

impl DeviceHandler {
    fn tried(&self, method: &str) {
        lock(&self.shared.auth_tried).push(method.to_string());
    }

    /// `user` may log in with `key` (the mode allows publickey and lists the key).
    fn key_ok(&self, user: &str, key: &PublicKey) -> bool {
        let cfg = &self.shared.cfg;
        cfg.auth.allows(MethodKind::PublicKey)
            && user == cfg.username
            && self
                .shared
                .authorized
                .iter()
                .any(|k| k.key_data() == key.key_data())
    }
}

impl Handler for DeviceHandler {
    type Error = russh::Error;

    // russh hands every request to the handler whatever `Config::methods` says, so each
    // method checks the mode itself.

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        self.tried("password");
        let cfg = &self.shared.cfg;
        if cfg.auth.allows(MethodKind::Password) && user == cfg.username && password == cfg.password
        {
            Ok(Auth::Accept)
        } else {
            Ok(reject(&cfg.auth))
        }
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        let cfg = &self.shared.cfg;
        match response {
            None => {
                self.tried("keyboard-interactive");
                if !cfg.auth.allows(MethodKind::KeyboardInteractive) {
                    return Ok(reject(&cfg.auth));
                }
                Ok(Auth::Partial {
                    name: Cow::Borrowed(""),
                    instructions: Cow::Borrowed(""),
                    prompts: Cow::Owned(vec![(Cow::Borrowed("Password: "), false)]),
                })
            }
            Some(mut response) => {
                let answer = response.next();
                let ok = cfg.auth.allows(MethodKind::KeyboardInteractive)
                    && user == cfg.username
                    && answer.as_deref() == Some(cfg.password.as_bytes())
                    && response.next().is_none();
                Ok(if ok { Auth::Accept } else { reject(&cfg.auth) })
            }
        }
    }

    /// Called for a probe (no signature) and for a signed request that was not probed; russh
    /// then verifies the signature and calls [`Handler::auth_publickey`].
    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        public_key: &PublicKey,
    ) -> Result<Auth, Self::Error> {
        self.tried("publickey");
        Ok(if self.key_ok(user, public_key) {
            Auth::Accept
        } else {
            reject(&self.shared.cfg.auth)
        })
    }

    /// Called only after russh verified the signature.
    async fn auth_publickey(
        &mut self,
        user: &str,
        public_key: &PublicKey,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.key_ok(user, public_key) {
            Auth::Accept
        } else {
            reject(&self.shared.cfg.auth)
        })
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
// The shell: one engine session per channel
// ---------------------------------------------------------------------------------------------

/// Events from the channel reader task to the CLI task.
enum Ev {
    Data(Vec<u8>),
    Shell,
}

/// The channel (or the whole connection) is gone; the CLI task must end.
struct Closed;

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
    let session = engine::Session::on_device(shared.cfg.clone(), shared.dev.clone());
    let shell_id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let mut shell = Shell {
        shared,
        s: session,
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
    };
    let _ = shell.run().await;
}

/// Carries one [`engine::Session`] over one SSH channel.
struct Shell {
    shared: Arc<Shared>,
    s: engine::Session,
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
}

impl Drop for Shell {
    fn drop(&mut self) {
        lock(&self.shared.shells).remove(&self.shell_id);
    }
}

async fn wait_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

impl Shell {
    async fn run(&mut self) -> Result<(), Closed> {
        loop {
            self.s.process_input();
            self.flush().await?;
            if let Some(end) = self.s.take_end() {
                self.perform(end).await;
                return Ok(());
            }
            if self.s.is_writing() {
                let d = self.s.line_delay();
                if !d.is_zero() {
                    tokio::time::sleep(d).await;
                }
                self.drain_nonblocking().await?;
                self.s.job_step();
                self.flush().await?;
                continue;
            }
            let at = self.s.deadline().map(Instant::from_std);
            let far = Instant::now() + Duration::from_secs(86400);
            tokio::select! {
                ev = self.ev_rx.recv() => match ev {
                    Some(ev) => self.on_event(ev),
                    None => return Err(Closed),
                },
                Some(text) = self.inject_rx.recv() => self.on_inject(text).await?,
                _ = tokio::time::sleep_until(at.unwrap_or(far)), if at.is_some() => {
                    self.s.on_timer(std::time::Instant::now());
                }
            }
        }
    }

    fn on_event(&mut self, ev: Ev) {
        match ev {
            Ev::Data(d) => self.s.feed(&d),
            Ev::Shell => {
                if self.s.start() {
                    if let Some(tx) = self.inject_tx.take() {
                        lock(&self.shared.shells).insert(self.shell_id, tx);
                    }
                }
            }
        }
    }

    async fn on_inject(&mut self, text: String) -> Result<(), Closed> {
        if !self.s.is_started() || *self.freeze_rx.borrow() {
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

    async fn flush(&mut self) -> Result<(), Closed> {
        let buf = self.s.take_output();
        if !buf.is_empty() {
            self.write_raw(&buf).await?;
        }
        if let Some(tail) = self.s.take_prompt_tail() {
            tokio::time::sleep(engine::PROMPT_SPLIT_GAP).await;
            self.write_raw(&tail).await?;
        }
        Ok(())
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

    async fn perform(&mut self, action: End) {
        match action {
            End::Exit | End::Timeout => {
                let _ = self.flush().await;
                if matches!(action, End::Exit) {
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
            End::Drop => self.shared.kill_conn(self.conn_id),
            End::Reload => {
                let _ = self.flush().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                self.shared.kill_conn(self.conn_id);
            }
        }
    }
}
