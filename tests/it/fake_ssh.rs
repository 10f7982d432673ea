//! A fake network device that speaks real SSH (server side via `russh`).
//!
//! The CLI it plays is data-driven: one *persona* per platform, described by a YAML fixture in
//! `tests/fixtures/devices/<persona>.yml` (prompts per mode, command grammar, canned outputs,
//! error texts, pager, questions, save dialogue, and a `test:` section for generic tests). The
//! default persona is `cisco_ios`. See `tests/fixtures/devices/README.md` for the format.
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
//!
//! Command lines are read through the IOS line editor of the product's demo device
//! (`netdev_broker::demo::LineEditor`: erase and cursor keys, history, Ctrl-Z, Ctrl-C, `?`), for
//! every persona; answers to questions (hidden or not) are read raw. Every line the CLI then acts
//! on is kept in [`FakeDevice::journal`].
#![allow(dead_code)]

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write as _;
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
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

use netdev_broker::demo::{History, JournalEntry, LineEditor, LineEvent};
use regex::Regex;
use serde::Deserialize;

/// Behaviour of one fake device.
#[derive(Clone, Debug)]
pub struct DeviceConfig {
    /// Platform persona: the name of a fixture in `tests/fixtures/devices/` (see
    /// [`FakeDevice::persona_names`]). Default `cisco_ios`.
    pub persona: String,
    /// Initial hostname, shown in the prompt (`R1>`). [`DeviceConfig::persona`] sets the
    /// fixture's own hostname.
    pub hostname: String,
    /// The only user accepted (every auth method).
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
    /// The paging-off command is refused with the platform's authorization-failure text, so
    /// the pager stays on.
    pub paging_locked: bool,
    /// Message of the day, printed after login (after the banner) before the first prompt.
    /// Printed as given (`\n` becomes `\r\n`), so it may hold prompt-like text and ANSI codes.
    pub motd: Option<String>,
    /// Every prompt is written in two separate writes with a short gap (`R1` then `#`).
    pub prompt_split: bool,
    /// Every prompt is wrapped in colour escape codes (`\x1b[1;32m` ... `\x1b[0m`).
    pub ansi_prompt: bool,
    /// Host key: an unencrypted OpenSSH-format private key (`-----BEGIN OPENSSH PRIVATE
    /// KEY-----`, e.g. from [`gen_host_key_openssh`]). `None` = a fresh ed25519 key per device.
    /// Starting another device on the same port with another key is a host-key rotation.
    /// [`FakeDevice::start_on`] panics if it can't be parsed.
    pub host_key: Option<String>,
    /// Which user-authentication methods are offered and accepted. Default
    /// [`AuthMode::Password`].
    pub auth: AuthMode,
}

/// The user-authentication methods a [`FakeDevice`] offers and accepts (for
/// [`DeviceConfig::username`]). The others are refused, whatever the credentials, and not
/// advertised.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AuthMode {
    /// `password`, plus `keyboard-interactive` with one hidden `Password: ` prompt (both take
    /// [`DeviceConfig::password`]).
    #[default]
    Password,
    /// Only `keyboard-interactive` (one hidden `Password: ` prompt); `password` is refused.
    KeyboardInteractiveOnly,
    /// Only `publickey`, with these authorized public keys (OpenSSH one-line format,
    /// `ssh-ed25519 AAAA... comment`; the comment is ignored). russh checks the signature.
    PublicKeyOnly(Vec<String>),
    /// `publickey` (these keys) or `password`; `keyboard-interactive` is refused.
    PasswordOrPublicKey(Vec<String>),
}

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

impl DeviceConfig {
    /// The default configuration with the given persona and that persona's own hostname.
    /// Panics if there is no such persona.
    pub fn persona(name: &str) -> DeviceConfig {
        let p = persona(name);
        DeviceConfig {
            persona: p.name.clone(),
            hostname: p.hostname.clone(),
            ..Default::default()
        }
    }
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
            persona: "cisco_ios".to_string(),
            paging_locked: false,
            motd: None,
            prompt_split: false,
            ansi_prompt: false,
            host_key: None,
            auth: AuthMode::Password,
        }
    }
}

/// State shared by the public handle, the accept loop and every connection/shell task.
struct Shared {
    cfg: DeviceConfig,
    persona: &'static Persona,
    inputs: Mutex<Vec<Input>>,
    /// Command lines the CLI acted on (see [`FakeDevice::journal`]).
    journal: Mutex<Vec<JournalEntry>>,
    total: AtomicUsize,
    next_id: AtomicU64,
    /// Open connections: id -> dup of the TCP socket (used for abrupt kills).
    conns: Mutex<HashMap<u64, std::net::TcpStream>>,
    /// Started shells: id -> queue for injected text.
    shells: Mutex<HashMap<u64, mpsc::UnboundedSender<String>>>,
    freeze: watch::Sender<bool>,
    /// Parsed [`AuthMode`] keys.
    authorized: Vec<PublicKey>,
    /// Auth methods tried by clients, in order (see [`FakeDevice::auth_methods_tried`]).
    auth_tried: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One thing the device received from the client, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A line typed at a prompt.
    Command(String),
    /// A line typed at a (echoed) question, e.g. `Destination filename [startup-config]? `.
    Answer { question: String, text: String },
    /// A line typed at a hidden (not echoed) question such as `Password: `; `text` is what
    /// actually arrived.
    Hidden { question: String, text: String },
    /// The key pressed at a `Press any key to continue` screen (`\r` shows as "").
    Key { question: String, text: String },
}

impl Shared {
    fn record(&self, input: Input) {
        lock(&self.inputs).push(input);
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
        let persona = persona(&cfg.persona);
        let shared = Arc::new(Shared {
            cfg,
            persona,
            inputs: Mutex::new(Vec::new()),
            journal: Mutex::new(Vec::new()),
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
        lock(&self.shared.inputs)
            .iter()
            .filter_map(|i| match i {
                Input::Command(t) | Input::Answer { text: t, .. } => Some(t.clone()),
                Input::Hidden { .. } => Some("<hidden>".to_string()),
                Input::Key { .. } => None,
            })
            .collect()
    }

    /// Everything received, in order, across connections, telling commands, answers to
    /// questions (with the question), hidden answers (with what arrived) and keys apart.
    pub fn inputs(&self) -> Vec<Input> {
        lock(&self.shared.inputs).clone()
    }

    /// The command lines the CLI acted on, in order, across connections: each line as the IOS
    /// line editor finished it (Enter, or Ctrl-Z after text), whatever the CLI then made of it
    /// (errors included). Blank lines, lines dropped with Ctrl-C, `?` help and answers to
    /// questions are not in it ([`FakeDevice::inputs`] has the answers).
    pub fn journal(&self) -> Vec<String> {
        lock(&self.shared.journal)
            .iter()
            .map(|e| e.line.clone())
            .collect()
    }

    /// [`FakeDevice::journal`] with the persona mode each line was executed in (`user`, `priv`,
    /// `config`, `config-if`, ... for `cisco_ios`).
    pub fn journal_entries(&self) -> Vec<JournalEntry> {
        lock(&self.shared.journal).clone()
    }

    /// The answers given to questions so far: (question, answer), hidden ones included with
    /// their real text.
    pub fn answers(&self) -> Vec<(String, String)> {
        lock(&self.shared.inputs)
            .iter()
            .filter_map(|i| match i {
                Input::Answer { question, text } | Input::Hidden { question, text } => {
                    Some((question.clone(), text.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// Names of every persona fixture (`cisco_ios`, `juniper_junos`, ...).
    pub fn persona_names() -> Vec<&'static str> {
        FIXTURES.iter().map(|(n, _)| *n).collect()
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
// Personas: the YAML fixtures and their command grammar
// ---------------------------------------------------------------------------------------------

macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/devices/",
                $name,
                ".yml"
            )),
        )
    };
}

/// Every persona fixture, embedded at compile time.
const FIXTURES: &[(&str, &str)] = &[
    fixture!("cisco_ios"),
    fixture!("cisco_nxos"),
    fixture!("cisco_asa"),
    fixture!("cisco_xr"),
    fixture!("juniper_junos"),
    fixture!("arista_eos"),
    fixture!("nokia_sros"),
    fixture!("hp_procurve"),
    fixture!("hp_comware"),
    fixture!("huawei_vrp"),
    fixture!("linux"),
];

/// A platform persona (one fixture file).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Persona {
    name: String,
    device_type: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    sources: Vec<String>,
    #[serde(default)]
    notes: Vec<String>,
    /// Hostname used by `DeviceConfig::persona`.
    hostname: String,
    ssh_server_id: String,
    /// Printed after the banner, before the motd (e.g. `Last login: ...`).
    #[serde(default)]
    login_lines: Vec<String>,
    /// If set: printed (without newline) after login; the first prompt comes after a key.
    #[serde(default)]
    press_any_key: Option<String>,
    start_mode: String,
    /// Mode used when `DeviceConfig::start_privileged` is set.
    start_mode_privileged: String,
    modes: Vec<ModeDef>,
    errors: Errors,
    #[serde(default)]
    pager: Option<PagerDef>,
    /// Printed instead of turning paging off when `DeviceConfig::paging_locked`.
    #[serde(default)]
    paging_locked_error: Vec<String>,
    /// Pipe keyword -> kind (include, exclude, begin, count, no-more).
    #[serde(default)]
    filters: BTreeMap<String, String>,
    /// Ctrl-Z / Ctrl-C in a config mode go to this mode.
    #[serde(default)]
    ctrl_z: Option<String>,
    /// Config lines refused by the device.
    #[serde(default)]
    reject: Vec<RejectRule>,
    /// Config lines are kept in a candidate until `builtin: commit`.
    #[serde(default)]
    commit_model: bool,
    /// The test-only commands (`long`, `flood`, `slow`, `hang`, `drop`) are `<prefix> long`...
    hooks: Hooks,
    /// (regex, replacement) applied to a mode's `ctx` (e.g. `Ethernet1` -> `Et1`).
    #[serde(default)]
    ctx_rewrite: Vec<(String, String)>,
    /// Printed before the device closes an idle session.
    #[serde(default)]
    idle_message: Option<String>,
    /// Named output blocks, used as `@name` lines in `say`.
    #[serde(default)]
    blocks: BTreeMap<String, Vec<String>>,
    commands: Vec<CommandDef>,
    test: PersonaTestDef,
    /// Built at load time: one grammar per mode.
    #[serde(skip)]
    tries: HashMap<String, Trie>,
    /// Built at load time: what an `accept_any` mode does with a line it does not know.
    #[serde(skip)]
    accept_any: Action,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct ModeDef {
    name: String,
    /// Template: `{hostname}`, `{user}`, `{ctx}`, `{dirty}` (`*` while unsaved).
    prompt: String,
    #[serde(default)]
    parent: Option<String>,
    /// A configuration mode (Ctrl-Z applies, `accept_any` lines are config).
    #[serde(default)]
    config: bool,
    /// A line whose first word is no command of this mode is a config line: it is checked
    /// against `reject` and recorded (prefixed with `indent`).
    #[serde(default)]
    accept_any: bool,
    #[serde(default)]
    indent: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Errors {
    /// Unknown first word (default: `invalid`).
    #[serde(default)]
    unknown: Option<Vec<String>>,
    /// Bad word after the first. `{marker}` = the `^` line, `{token}`, `{index}`, `{line}`.
    invalid: Vec<String>,
    incomplete: Vec<String>,
    ambiguous: Vec<String>,
    /// Rejected config line (default: `invalid`).
    #[serde(default)]
    config_reject: Option<Vec<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct PagerDef {
    prompt: String,
    erase: String,
    #[serde(default = "default_page_len")]
    length: usize,
}

fn default_page_len() -> usize {
    24
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RejectRule {
    #[serde(rename = "match")]
    pattern: String,
    /// Index of the token the `^` marker points at.
    #[serde(default)]
    at: usize,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Hooks {
    prefix: String,
    modes: Vec<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct CommandDef {
    /// Grammar: keywords (unique prefixes accepted), `<word>`, `<n>`, `<0-512>`, `<rest>`
    /// (the rest of the line), then optional trailing elements `[...]`.
    cmd: String,
    modes: Vec<String>,
    #[serde(rename = "do", default)]
    act: Action,
}

/// What a command (or an answer) does. Steps run in this order: `if` (then/else replace the
/// rest), reject check (when `record`), `paging`, `say`, `hostname`, `record`, `mode`, `ctx`,
/// `run_in`, `builtin`, `ask`. Templates: `{1}`.. (arguments), `{line}`, `{answer}`,
/// `{hostname}`, `{user}`, `{ctx}`, `{indent}`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct Action {
    /// `enable_password`, `unsaved`, `uncommitted`, `paging_locked`; `!` negates.
    #[serde(rename = "if", default)]
    cond: Option<String>,
    #[serde(default)]
    then: Option<Box<Action>>,
    #[serde(rename = "else", default)]
    otherwise: Option<Box<Action>>,
    /// Output lines. `@block` includes a block; `{config}` / `{candidate}` alone on a line
    /// expand to the session's config lines; `?cond:text` is a conditional line.
    #[serde(default)]
    say: Vec<String>,
    /// `off`, `on`, or a template giving the page length (0 = off).
    #[serde(default)]
    paging: Option<String>,
    #[serde(default)]
    hostname: Option<String>,
    /// Config lines to record (checked against `reject` first).
    #[serde(default)]
    record: Vec<String>,
    /// Mode to enter; `^` = the current mode's parent.
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    ctx: Option<String>,
    /// Run the rest of the line (after the first word) as a command of this mode.
    #[serde(default)]
    run_in: Option<String>,
    /// `exit`, `reload`, `commit`, `discard`, `save`, `clock`, and the test hooks `long`,
    /// `flood`, `slow`, `hang`, `drop`.
    #[serde(default)]
    builtin: Option<String>,
    #[serde(default)]
    ask: Option<Box<Ask>>,
}

/// A question: its prompt is printed without a newline and the next line is its answer.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Ask {
    prompt: String,
    /// Not echoed (recorded as `<hidden>` in `lines_received`).
    #[serde(default)]
    hidden: bool,
    /// `{answer}` when the answer is empty.
    #[serde(default)]
    default: String,
    /// First matching rule wins.
    #[serde(default)]
    answers: Vec<AnswerRule>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct AnswerRule {
    /// Case-insensitive regex, matched against the trimmed answer.
    #[serde(rename = "match", default)]
    pattern: Option<String>,
    /// `enable_password` (the configured one, "" if none) or `password` (the login one).
    #[serde(default)]
    check: Option<String>,
    #[serde(rename = "do", default)]
    act: Action,
}

/// The `test:` section of a fixture as written.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct PersonaTestDef {
    prompt: String,
    #[serde(default)]
    enable: Option<String>,
    #[serde(default)]
    enable_dialogue: Vec<Exchange>,
    privileged_prompt: String,
    #[serde(default)]
    paging_off: Vec<String>,
    #[serde(default)]
    width: Option<String>,
    show_command: String,
    show_output: String,
    #[serde(default)]
    long_command: Option<String>,
    invalid_command: String,
    error_line: String,
    #[serde(default)]
    config_enter: Option<String>,
    #[serde(default)]
    config_prompt: Option<String>,
    #[serde(default)]
    config_lines: Vec<String>,
    #[serde(default)]
    config_rejected: Option<String>,
    #[serde(default)]
    config_rejected_error: Option<String>,
    #[serde(default)]
    config_exit: Option<String>,
    #[serde(default)]
    running_config_command: Option<String>,
    #[serde(default)]
    running_config_contains: Vec<String>,
    #[serde(default)]
    save_command: Option<String>,
    #[serde(default)]
    save_in_config: bool,
    #[serde(default)]
    save_dialogue: Vec<Exchange>,
    #[serde(default)]
    save_done: Option<String>,
    #[serde(default)]
    interactive: Vec<Dialogue>,
    logout_command: String,
}

/// One question the device asks and the answer to give.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    /// The question exactly as printed (it ends the output; no newline after it).
    pub question: String,
    pub answer: String,
    /// The answer is not echoed.
    #[serde(default)]
    pub hidden: bool,
}

/// An interactive command run at the privileged prompt: its questions, in order, and a line
/// printed once it is done (`None`: nothing but the prompt).
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Dialogue {
    pub command: String,
    pub dialogue: Vec<Exchange>,
    #[serde(default)]
    pub done: Option<String>,
}

/// What a generic test needs to drive a persona (the fixture's `test:` section). Prompts and
/// outputs assume `DeviceConfig::persona(name)` (the fixture's hostname, user `admin`).
/// `show_output` is the exact text between the command's echo line and the prompt, lines
/// joined with `\n`, no trailing newline.
#[derive(Debug, Clone)]
pub struct PersonaTest {
    pub persona: String,
    /// Netmiko's device_type for this platform.
    pub device_type: String,
    pub hostname: String,
    /// Test-only commands are `<hook_prefix> long [N]`, `... flood MiB`, `... slow S`,
    /// `... hang`, `... drop`.
    pub hook_prefix: String,
    /// Printed after login; a key must be pressed before the first prompt.
    pub press_any_key: Option<String>,
    /// First prompt after login.
    pub prompt: String,
    /// Command that reaches `privileged_prompt` from `prompt` (None: starts there).
    pub enable: Option<String>,
    /// Questions `enable` asks when no enable password is configured (ASA asks anyway).
    pub enable_dialogue: Vec<Exchange>,
    pub privileged_prompt: String,
    /// Commands that turn paging off (run at `privileged_prompt`).
    pub paging_off: Vec<String>,
    pub width: Option<String>,
    /// What the first paging-off command prints instead when `DeviceConfig::paging_locked`.
    pub paging_locked_error: Vec<String>,
    /// The pager prompt and the bytes that erase it once answered (None: no pager).
    pub pager_prompt: Option<String>,
    pub pager_erase: Option<String>,
    /// A command whose output is longer than a page (default `<hook_prefix> long 60`).
    pub long_command: String,
    pub show_command: String,
    pub show_output: String,
    pub invalid_command: String,
    /// A line of the error output of `invalid_command`.
    pub error_line: String,
    pub config_enter: Option<String>,
    pub config_prompt: Option<String>,
    /// Accepted in `config_prompt`'s mode.
    pub config_lines: Vec<String>,
    pub config_rejected: Option<String>,
    /// A line of the error output of `config_rejected`.
    pub config_rejected_error: Option<String>,
    /// Leaves config mode back to `privileged_prompt` (after saving when `save_in_config`).
    pub config_exit: Option<String>,
    pub running_config_command: Option<String>,
    /// Lines `running_config_command` shows once `config_lines` are applied (and saved).
    pub running_config_contains: Vec<String>,
    pub save_command: Option<String>,
    /// The save command is given in config mode (Junos / XR `commit`).
    pub save_in_config: bool,
    pub save_dialogue: Vec<Exchange>,
    /// A line printed when the save is done.
    pub save_done: Option<String>,
    /// Interactive commands (questions, hidden answers) safe to run at `privileged_prompt`.
    pub interactive: Vec<Dialogue>,
    pub logout_command: String,
}

/// The `test:` section of a persona. Panics if there is no such persona.
pub fn persona_test(name: &str) -> PersonaTest {
    let p = persona(name);
    let t = p.test.clone();
    let first_paging_off = t.paging_off.first().cloned().unwrap_or_default();
    PersonaTest {
        persona: p.name.clone(),
        device_type: p.device_type.clone(),
        hostname: p.hostname.clone(),
        hook_prefix: p.hooks.prefix.clone(),
        press_any_key: p.press_any_key.clone(),
        prompt: t.prompt,
        enable: t.enable,
        enable_dialogue: t.enable_dialogue,
        privileged_prompt: t.privileged_prompt,
        paging_off: t.paging_off,
        width: t.width,
        paging_locked_error: p
            .paging_locked_error
            .iter()
            .map(|l| l.replace("{line}", &first_paging_off))
            .collect(),
        pager_prompt: p.pager.as_ref().map(|x| x.prompt.clone()),
        pager_erase: p.pager.as_ref().map(|x| x.erase.clone()),
        long_command: t
            .long_command
            .unwrap_or_else(|| format!("{} long 60", p.hooks.prefix)),
        show_command: t.show_command,
        show_output: t.show_output.trim_end_matches('\n').to_string(),
        invalid_command: t.invalid_command,
        error_line: t.error_line,
        config_enter: t.config_enter,
        config_prompt: t.config_prompt,
        config_lines: t.config_lines,
        config_rejected: t.config_rejected,
        config_rejected_error: t.config_rejected_error,
        config_exit: t.config_exit,
        running_config_command: t.running_config_command,
        running_config_contains: t.running_config_contains,
        save_command: t.save_command,
        save_in_config: t.save_in_config,
        save_dialogue: t.save_dialogue,
        save_done: t.save_done,
        interactive: t.interactive,
        logout_command: t.logout_command,
    }
}

fn personas() -> &'static HashMap<&'static str, &'static Persona> {
    static P: OnceLock<HashMap<&'static str, &'static Persona>> = OnceLock::new();
    P.get_or_init(|| {
        FIXTURES
            .iter()
            .map(|(name, text)| {
                let p = load_persona(name, text).unwrap_or_else(|e| {
                    panic!("fake device: fixture tests/fixtures/devices/{name}.yml: {e}")
                });
                let p: &'static Persona = Box::leak(Box::new(p));
                (*name, p)
            })
            .collect()
    })
}

fn persona(name: &str) -> &'static Persona {
    personas().get(name).copied().unwrap_or_else(|| {
        panic!(
            "fake device: no persona {name:?}; known: {:?}",
            FakeDevice::persona_names()
        )
    })
}

fn load_persona(name: &str, text: &str) -> Result<Persona, String> {
    let mut p: Persona = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    if p.name != name {
        return Err(format!("name is {:?}, file is {name:?}", p.name));
    }
    let modes: Vec<String> = p.modes.iter().map(|m| m.name.clone()).collect();
    let known = |m: &str| modes.iter().any(|x| x == m);
    for m in [&p.start_mode, &p.start_mode_privileged]
        .into_iter()
        .chain(p.ctrl_z.iter())
        .chain(p.modes.iter().filter_map(|m| m.parent.as_ref()))
        .chain(p.hooks.modes.iter())
    {
        if !known(m) {
            return Err(format!("unknown mode {m:?}"));
        }
    }
    for r in &p.reject {
        Regex::new(&r.pattern).map_err(|e| e.to_string())?;
    }
    for (re, _) in &p.ctx_rewrite {
        Regex::new(re).map_err(|e| e.to_string())?;
    }
    for c in &p.commands {
        for m in &c.modes {
            if !known(m) {
                return Err(format!("command {:?}: unknown mode {m:?}", c.cmd));
            }
        }
        check_action(&c.act, &known, &p.blocks).map_err(|e| format!("{:?}: {e}", c.cmd))?;
    }
    // The test hooks, then the fixture's commands (first definition of a path wins, so the
    // hooks can't be shadowed by accident).
    let mut cmds: Vec<CommandDef> = Vec::new();
    for (hook, grammar) in [
        ("long", "long [<n>]"),
        ("flood", "flood <n>"),
        ("slow", "slow <n>"),
        ("hang", "hang"),
        ("drop", "drop"),
    ] {
        cmds.push(CommandDef {
            cmd: format!("{} {grammar}", p.hooks.prefix),
            modes: p.hooks.modes.clone(),
            act: Action {
                builtin: Some(hook.to_string()),
                ..Default::default()
            },
        });
    }
    cmds.append(&mut p.commands);
    p.commands = cmds;
    let mut tries = HashMap::new();
    for m in &modes {
        let mut t = Trie::default();
        for (i, c) in p.commands.iter().enumerate() {
            if c.modes.iter().any(|x| x == m) {
                t.insert(&c.cmd, i)
                    .map_err(|e| format!("command {:?}: {e}", c.cmd))?;
            }
        }
        tries.insert(m.clone(), t);
    }
    p.tries = tries;
    p.accept_any = Action {
        record: vec!["{indent}{line}".to_string()],
        ..Default::default()
    };
    Ok(p)
}

fn check_action(
    a: &Action,
    known: &dyn Fn(&str) -> bool,
    blocks: &BTreeMap<String, Vec<String>>,
) -> Result<(), String> {
    if let Some(m) = &a.mode {
        if m != "^" && !known(m) {
            return Err(format!("unknown mode {m:?}"));
        }
    }
    if let Some(m) = &a.run_in {
        if !known(m) {
            return Err(format!("unknown mode {m:?}"));
        }
    }
    if let Some(b) = &a.builtin {
        const B: &[&str] = &[
            "exit", "reload", "commit", "discard", "save", "clock", "long", "flood", "slow",
            "hang", "drop",
        ];
        if !B.contains(&b.as_str()) {
            return Err(format!("unknown builtin {b:?}"));
        }
    }
    for l in &a.say {
        if let Some(b) = l.strip_prefix('@') {
            if !blocks.contains_key(b) {
                return Err(format!("unknown block {b:?}"));
            }
        }
    }
    for sub in [&a.then, &a.otherwise].into_iter().flatten() {
        check_action(sub, known, blocks)?;
    }
    if let Some(ask) = &a.ask {
        for r in &ask.answers {
            if let Some(p) = &r.pattern {
                Regex::new(p).map_err(|e| e.to_string())?;
            }
            check_action(&r.act, known, blocks)?;
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Param {
    Word,
    Num(Option<(u64, u64)>),
    Rest,
}

impl Param {
    fn parse(tok: &str) -> Option<Param> {
        let inner = tok.strip_prefix('<')?.strip_suffix('>')?;
        Some(match inner {
            "rest" => Param::Rest,
            "n" => Param::Num(None),
            _ => match inner.split_once('-') {
                Some((a, b)) => match (a.parse(), b.parse()) {
                    (Ok(a), Ok(b)) => Param::Num(Some((a, b))),
                    _ => Param::Word,
                },
                None => Param::Word,
            },
        })
    }

    fn accepts(self, tok: &str) -> bool {
        match self {
            Param::Word | Param::Rest => true,
            Param::Num(range) => match tok.parse::<u64>() {
                Ok(n) => range.is_none_or(|(a, b)| a <= n && n <= b),
                Err(_) => false,
            },
        }
    }
}

#[derive(Default, Debug)]
struct Node {
    kws: Vec<(String, usize)>,
    params: Vec<(Param, usize)>,
    cmd: Option<usize>,
}

/// The commands of one mode as a tree of words.
#[derive(Debug)]
struct Trie {
    nodes: Vec<Node>,
}

impl Default for Trie {
    fn default() -> Self {
        Trie {
            nodes: vec![Node::default()],
        }
    }
}

/// Result of parsing a command line against a mode's grammar.
#[derive(Debug)]
enum Parse {
    Match {
        cmd: usize,
        args: Vec<String>,
    },
    /// No command word matches token `i`.
    Invalid(usize),
    Incomplete,
    Ambiguous(usize),
}

impl Trie {
    fn insert(&mut self, grammar: &str, cmd: usize) -> Result<(), String> {
        let mut required = Vec::new();
        let mut optional = Vec::new();
        for w in grammar.split_whitespace() {
            match w.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
                Some(inner) => optional.push(inner),
                None if optional.is_empty() => required.push(w),
                None => return Err("a required word after an optional one".into()),
            }
        }
        for k in 0..=optional.len() {
            let words = required.iter().chain(optional[..k].iter());
            let mut node = 0;
            for w in words {
                node = match Param::parse(w) {
                    Some(p) => match self.nodes[node].params.iter().find(|(q, _)| *q == p) {
                        Some(&(_, n)) => n,
                        None => {
                            self.nodes.push(Node::default());
                            let n = self.nodes.len() - 1;
                            self.nodes[node].params.push((p, n));
                            n
                        }
                    },
                    None => {
                        let w = w.to_ascii_lowercase();
                        match self.nodes[node].kws.iter().find(|(k, _)| *k == w) {
                            Some(&(_, n)) => n,
                            None => {
                                self.nodes.push(Node::default());
                                let n = self.nodes.len() - 1;
                                self.nodes[node].kws.push((w, n));
                                n
                            }
                        }
                    }
                };
            }
            if self.nodes[node].cmd.is_none() {
                self.nodes[node].cmd = Some(cmd);
            }
        }
        Ok(())
    }

    fn parse(&self, toks: &[(usize, &str)]) -> Parse {
        self.parse_from(0, toks, 0, &mut Vec::new())
    }

    /// Depth-first: keywords (exact, then a unique prefix) before parameters; on failure the
    /// error that got furthest into the line wins.
    fn parse_from(
        &self,
        node: usize,
        toks: &[(usize, &str)],
        i: usize,
        args: &mut Vec<String>,
    ) -> Parse {
        let n = &self.nodes[node];
        let Some(&(_, tok)) = toks.get(i) else {
            return match n.cmd {
                Some(cmd) => Parse::Match {
                    cmd,
                    args: args.clone(),
                },
                None => Parse::Incomplete,
            };
        };
        let w = tok.to_ascii_lowercase();
        let reach = |p: &Parse| match p {
            Parse::Match { .. } => usize::MAX,
            Parse::Invalid(j) | Parse::Ambiguous(j) => *j,
            Parse::Incomplete => toks.len(),
        };
        let mut best = Parse::Invalid(i);
        let consider = |r: Parse, best: &mut Parse| {
            if reach(&r) > reach(best) {
                *best = r;
            }
        };
        let exact = n.kws.iter().find(|(k, _)| *k == w).map(|&(_, x)| x);
        let kw = match exact {
            Some(x) => Some(x),
            None => {
                let prefixed: Vec<usize> = n
                    .kws
                    .iter()
                    .filter(|(k, _)| k.starts_with(&w))
                    .map(|&(_, x)| x)
                    .collect();
                match prefixed[..] {
                    [x] => Some(x),
                    [] => None,
                    _ => {
                        best = Parse::Ambiguous(i);
                        None
                    }
                }
            }
        };
        if let Some(next) = kw {
            let r = self.parse_from(next, toks, i + 1, args);
            if matches!(r, Parse::Match { .. }) {
                return r;
            }
            consider(r, &mut best);
        }
        for &(p, next) in &n.params {
            if !p.accepts(tok) {
                continue;
            }
            let (arg, j) = if p == Param::Rest {
                let rest: Vec<&str> = toks[i..].iter().map(|(_, t)| *t).collect();
                (rest.join(" "), toks.len())
            } else {
                (tok.to_string(), i + 1)
            };
            args.push(arg);
            let r = self.parse_from(next, toks, j, args);
            args.pop();
            if matches!(r, Parse::Match { .. }) {
                return r;
            }
            consider(r, &mut best);
        }
        best
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
enum LineKind {
    Command,
    /// Answering `Cli::ask`.
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

enum Action2 {
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
/// Gap between the two writes of a split prompt.
const PROMPT_SPLIT_GAP: Duration = Duration::from_millis(80);
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
    let p = shared.persona;
    let shell_id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let cli = Cli {
        shared,
        p,
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
            p.start_mode_privileged.clone()
        } else {
            p.start_mode.clone()
        },
        ctx: String::new(),
        page_len: p.pager.as_ref().map_or(0, |x| x.length),
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
        session_cfg: Vec::new(),
        candidate: Vec::new(),
        pending_hostname: None,
        dirty: false,
        cfg,
    };
    cli.run().await;
}

struct Cli {
    shared: Arc<Shared>,
    p: &'static Persona,
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
    mode: String,
    /// Context shown in the prompt of some modes (`Et1`, ` interfaces ge-0/0/1`).
    ctx: String,
    /// Lines per page; 0 = paging off.
    page_len: usize,
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
    action: Option<Action2>,
    last_input: Instant,
    /// Config lines entered (and committed) in this session.
    session_cfg: Vec<String>,
    /// Uncommitted config lines (commit-model personas).
    candidate: Vec<String>,
    pending_hostname: Option<String>,
    /// Config changed since the last save.
    dirty: bool,
}

impl Drop for Cli {
    fn drop(&mut self) {
        lock(&self.shared.shells).remove(&self.shell_id);
    }
}

async fn wait_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// `\n` / `\r\n` / `\r` line ends become `\r\n`.
fn crlf(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .replace('\n', "\r\n")
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
                            if let Some(m) = &self.p.idle_message {
                                self.emit(&crlf(m));
                            }
                            self.action = Some(Action2::Timeout);
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
        t.replace("{hostname}", &self.hostname)
            .replace("{user}", &self.cfg.username)
            .replace("{ctx}", &self.ctx)
            .replace("{dirty}", if self.dirty { "*" } else { "" })
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

    async fn flush(&mut self) -> Result<(), Closed> {
        if !self.pending.is_empty() {
            let buf = std::mem::take(&mut self.pending);
            self.write_raw(&buf).await?;
        }
        if let Some(tail) = self.prompt_tail.take() {
            tokio::time::sleep(PROMPT_SPLIT_GAP).await;
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
        if let Some(tail) = self.prompt_tail.take() {
            self.pending.extend_from_slice(&tail);
        }
        let mut buf = std::mem::take(&mut self.pending);
        let paging = self.page_len > 0 && self.job_paging && self.p.pager.is_some();
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
            self.job_paging = true;
            self.show_prompt();
        } else if paging && self.page_count >= self.page_budget {
            if let Some(pager) = &self.p.pager {
                self.pending.extend_from_slice(pager.prompt.as_bytes());
            }
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

    async fn perform(&mut self, action: Action2) {
        match action {
            Action2::Exit | Action2::Timeout => {
                let _ = self.flush().await;
                if matches!(action, Action2::Exit) {
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
            Action2::Drop => self.shared.kill_conn(self.conn_id),
            Action2::Reload => {
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
                    self.shared.record(Input::Key { question, text });
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
            }
            Some(LineEvent::Abort) => {
                // Ctrl-C: nothing runs; in configuration mode it is like `end`.
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
            n.kws.iter().map(|(k, _)| format!("  {k}")).collect()
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
        let echo = !self.ask.as_ref().is_some_and(|(a, _, _)| a.hidden);
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
                self.shared.record(Input::Command(line.clone()));
                if !line.trim().is_empty() {
                    lock(&self.shared.journal).push(JournalEntry {
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
                self.shared.record(if ask.hidden {
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
        let (toks, filter) = match self.split_filter(line, toks, trie) {
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
    ) -> Result<(Toks<'t>, Option<Filter>), ()> {
        let p = self.p;
        if p.filters.is_empty() {
            return Ok((toks, None));
        }
        let Some(i) = toks.iter().position(|(_, t)| *t == "|") else {
            return Ok((toks, None));
        };
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
                .replace("{hostname}", &self.hostname);
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
            "unsaved" => self.dirty,
            "uncommitted" => !self.candidate.is_empty(),
            "paging_locked" => self.cfg.paging_locked,
            _ => false,
        };
        v != neg
    }

    /// Fill a template.
    fn fill(&self, t: &str, args: &[String], answer: &str) -> String {
        let mut s = t
            .replace("{hostname}", &self.hostname)
            .replace("{user}", &self.cfg.username)
            .replace("{ctx}", &self.ctx)
            .replace("{password}", &self.cfg.password)
            .replace("{answer}", answer)
            .replace("{clock}", &clock_line());
        for (i, a) in args.iter().enumerate() {
            s = s.replace(&format!("{{{}}}", i + 1), a);
        }
        s
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
            "{config}" => out.extend(self.session_cfg.iter().cloned()),
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
        for l in &a.say {
            let mut v = Vec::new();
            self.expand(l, run, &mut v, 0);
            run.out.extend(v);
        }
        if let Some(h) = &a.hostname {
            let h = self.fill(h, &run.args, &run.answer);
            if self.p.commit_model {
                self.pending_hostname = Some(h);
            } else {
                self.hostname = h;
            }
        }
        if !a.record.is_empty() {
            let indent = self.mode_def(&self.mode).indent.clone();
            for r in &a.record {
                let l = self
                    .fill(r, &run.args, &run.answer)
                    .replace("{line}", run.line.trim())
                    .replace("{indent}", &indent);
                if self.p.commit_model {
                    self.candidate.push(l);
                } else {
                    self.session_cfg.push(l);
                    self.dirty = true;
                }
            }
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
            "exit" => self.action = Some(Action2::Exit),
            "reload" => self.action = Some(Action2::Reload),
            "drop" => self.action = Some(Action2::Drop),
            "commit" => {
                self.session_cfg.append(&mut self.candidate);
                if let Some(h) = self.pending_hostname.take() {
                    self.hostname = h;
                }
                self.dirty = false;
            }
            "discard" => {
                self.candidate.clear();
                self.pending_hostname = None;
            }
            "save" => self.dirty = false,
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
