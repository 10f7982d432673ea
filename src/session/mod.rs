//! Sessions: one named OS thread per session owns its driver (and through it the transport).
//! The registry holds only handles: metadata, flags and the sender of the session's inbox.

pub mod driver;
mod error;
pub mod guard;
mod inbox;
pub mod jobs;
mod probe;

pub use error::{ExecError, GuardError, OpenError};
pub use probe::{probe, ProbeLogin, ProbeOutcome, ProbeReply, ProbeRequest, MAX_PROBES};

use crate::channel::typed::Step;
use crate::channel::Channel;
use crate::observe::cmdlog::{CmdLog, Entry};
use crate::observe::mask::Masker;
use crate::observe::metrics::{CloseReason, Metrics};
use crate::platform::Platform;
use crate::policy::{Algorithms, CommandRules, HostKeyPolicy, HostKeySeen, HostList, KnownHosts};
use crate::secret::Secret;
#[cfg(feature = "ssh")]
use crate::transport::ssh::{SshParams, SshTransport};
use crate::transport::telnet::TelnetTransport;
use crate::transport::{Hop, HopSeen, Reach, Transport};
use crate::util::random_id;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, TrySendError};
use driver::{CmdFail, CmdResult, Driver, ExecItem, Keepalive, Login, OpenOptions};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// How often an idle session checks its connection (reads what is waiting, SSH keepalive),
/// whatever its CLI keepalive interval.
const IDLE_TICK: Duration = Duration::from_secs(15);
/// How long an idle connection that woke its thread with nothing to read is left out of the wait.
const DEVICE_QUIET: Duration = Duration::from_secs(1);
/// Longest wait for the prompt after a keepalive newline.
const KEEPALIVE_WAIT: Duration = Duration::from_secs(10);
/// How long closing a session may take.
const CLOSE_DEADLINE: Duration = Duration::from_secs(3);
const SESSION_STACK: usize = 512 << 10;
/// How long a dead session with session_timeout 0 stays listed before the reaper removes it.
const DEAD_KEEP: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Ssh,
    Telnet,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Ssh => "ssh",
            Protocol::Telnet => "telnet",
        }
    }
}

/// Everything needed to open a session. Credentials are dropped as soon as the session is up.
/// Cloned only for a guard's stored probe (each probe opens with its own copy).
#[derive(Clone)]
pub struct OpenRequest {
    pub protocol: Protocol,
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: Secret,
    pub enable_secret: Option<Secret>,
    pub device_type: String,
    pub platform: &'static Platform,
    pub connect_timeout: Duration,
    pub session_timeout: Duration,
    pub enable_level: Option<u8>,
    /// None: the broker's default.
    pub keepalive_interval: Option<Duration>,
    /// SSH only: a key file inside key_dir, its passphrase, the algorithms to offer, and the
    /// host-key policy of this session.
    pub key_file: Option<std::path::PathBuf>,
    pub passphrase: Option<Secret>,
    pub algorithms: Algorithms,
    pub host_key_policy: HostKeyPolicy,
    /// Jump hosts to go through, first hop first (empty: direct). Their secrets are dropped
    /// with the request's, once the session is up.
    pub jump: Vec<Hop>,
    /// Who opens it: the session's owner, whose `allowed_hosts` and `max_sessions` apply too.
    pub caller: Option<Arc<Caller>>,
}

/// Who a request runs for: an API token's name and limits, and the request's id. The command
/// log's `by` and `request_id`, the session's owner.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The token's name.
    pub name: Arc<str>,
    pub request_id: Arc<str>,
    /// The token's own command rules (they narrow the config's).
    pub rules: Option<Arc<CommandRules>>,
    /// Only the read-only commands (`read_only_commands`) may run: a `reader` token.
    pub read_only: bool,
    /// The token's `allowed_hosts` (narrows the config's).
    pub allowed_hosts: Option<HostList>,
    /// Sessions the token may hold at once.
    pub max_sessions: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: String,
    pub protocol: &'static str,
    pub host: String,
    pub port: u16,
    pub username: String,
    pub device_type: String,
    pub platform: &'static str,
    pub created_at: SystemTime,
    pub created: Instant,
    /// Zero: never reaped.
    pub session_timeout: Duration,
    pub negotiated: String,
    /// Zero: no CLI keepalives.
    pub keepalive_interval: Duration,
    /// SSH: the device's host key (type, SHA256 fingerprint, verdict).
    pub host_key: Option<HostKeySeen>,
    /// The jump hosts the session goes through, first hop first, with their host keys.
    pub via: Vec<HopSeen>,
    /// The name of the API token that opened it (None: opened without one).
    pub owner: Option<Arc<str>>,
}

#[derive(Debug, Clone)]
pub struct SessionState {
    pub alive: bool,
    pub mode: String,
    pub last_used_at: SystemTime,
    pub last_used: Instant,
    pub dead_reason: Option<String>,
    pub commands_run: u64,
    pub keepalives: u64,
    /// When the last CLI keepalive was answered by the prompt.
    pub last_keepalive_at: Option<SystemTime>,
    /// Set while the prompt has not come back after a keepalive newline.
    pub keepalive_problem: Option<String>,
    /// The last few commands (newest last), masked as in the command log.
    pub recent: std::collections::VecDeque<RecentCommand>,
}

/// How many commands [`SessionState::recent`] keeps.
pub const RECENT_COMMANDS: usize = 5;

/// One command as the dashboard shows it: masked, without output.
#[derive(Debug, Clone)]
pub struct RecentCommand {
    pub at: SystemTime,
    pub command: String,
    /// ok | failed | timeout | error
    pub status: String,
    pub elapsed_ms: u64,
}

pub struct SessionHandle {
    pub info: SessionInfo,
    state: Mutex<SessionState>,
    busy: AtomicBool,
    cancel: AtomicBool,
    inbox: inbox::Inbox,
    /// The change guard, if one was ever armed (the last one stays for its status).
    pub guard: Mutex<Option<guard::Guard>>,
    /// Its execs as jobs (running, queued and recently finished).
    pub jobs: Mutex<jobs::Jobs>,
}

impl SessionHandle {
    pub fn state(&self) -> SessionState {
        self.state.lock().clone()
    }
    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst)
    }
    /// An armed guard is past its deadline.
    pub fn guard_due(&self) -> bool {
        self.guard.lock().as_ref().is_some_and(guard::Guard::due)
    }
    /// A guard is armed (or its rollback is running).
    pub fn guard_armed(&self) -> bool {
        self.guard.lock().as_ref().is_some_and(|g| !g.state.ended())
    }
    fn mark_dead(&self, reason: &str) {
        let mut s = self.state.lock();
        if s.alive {
            s.alive = false;
            s.dead_reason = Some(reason.to_string());
        }
    }
}

/// What an exec produced: every command that completed, and why it stopped early, if it did.
pub struct ExecReport {
    pub results: Vec<CmdResult>,
    pub failure: Option<ExecFailure>,
}

pub struct ExecFailure {
    pub error: ExecError,
    pub command: String,
    pub partial: String,
}

pub type ExecReply = Box<dyn FnOnce(Result<ExecReport, ExecError>) + Send>;
pub type OpenReply = Box<dyn FnOnce(Result<SessionInfo, OpenError>) + Send>;

/// An exec for a session's thread: what to run and how to answer.
pub struct ExecJob {
    pub spec: ExecSpec,
    pub reply: ExecReply,
}

/// Who an exec runs for (the command log's `by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Client,
    Guard,
}

impl By {
    pub fn name(self) -> &'static str {
        match self {
            By::Client => "client",
            By::Guard => "guard",
        }
    }
}

/// What an exec runs, without its way back: a session's job, or a probe's.
pub struct ExecSpec {
    pub items: Vec<ExecItem>,
    /// Read deadline per command unless an item sets its own.
    pub timeout: Duration,
    /// Stop at the first command whose output shows a failure (answered as an error).
    pub stop_on_error: bool,
    /// Config lines to send in config mode before `items` (and whether to save after).
    pub config: Option<ConfigJob>,
    /// Who it runs for: a client, or the session's change guard (its rollback and
    /// device-timer steps).
    pub by: By,
    /// The job that records it (a client's exec through the API).
    pub job: Option<Arc<jobs::JobRecord>>,
    /// The command policy to check it against (a guard's rollback: the policy it was armed
    /// under). None: the policy in force when it starts.
    pub rules: Option<Arc<CommandRules>>,
    /// Who asked for it (its token's rules narrow `rules`; the command log names it).
    pub caller: Option<Arc<Caller>>,
}

impl ExecSpec {
    /// One plain command, as a probe runs it.
    pub fn command(cmd: &str, timeout: Duration) -> ExecSpec {
        ExecSpec {
            items: vec![ExecItem::plain(cmd)],
            timeout,
            stop_on_error: false,
            config: None,
            by: By::Client,
            job: None,
            rules: None,
            caller: None,
        }
    }
}

#[derive(Clone)]
pub struct ConfigJob {
    pub lines: Vec<String>,
    pub save: bool,
}

enum Job {
    Exec(ExecJob),
    /// Arm a change guard (types the device-revert steps, if any).
    Arm(Box<guard::GuardSpec>, guard::ArmReply),
    /// Look at the guard now (it changed: confirmed, disarmed, fire now).
    Wake,
    Close,
}

/// Shared settings the session threads need.
pub struct Settings {
    pub known_hosts: KnownHosts,
    /// Changed by a reload: each open reads it once.
    pub allowed_hosts: RwLock<HostList>,
    /// The command policy; changed by a reload, read by each exec when it starts.
    pub commands: RwLock<Arc<CommandRules>>,
    /// `read_only_commands` for every platform (None: each platform's own list).
    pub read_only: RwLock<Option<Arc<CommandRules>>>,
    pub max_sessions: usize,
    pub max_output_bytes: usize,
    /// Output kept for all the commands of one exec together.
    pub max_exec_output_bytes: usize,
    pub keepalive_interval: Duration,
    /// TCP_USER_TIMEOUT of device connections (zero: the kernel's).
    pub dead_peer_timeout: Duration,
    pub command_timeout: Duration,
    pub cmdlog: Option<CmdLog>,
    pub masker: Masker,
    /// Where opens, closes, keepalive failures and lost connections are counted.
    pub metrics: Arc<Metrics>,
    /// Armed change guards, recorded in state_dir for the next start.
    pub guards: guard::GuardBook,
    /// How long finished jobs are kept (a reload changes it).
    pub job_retention: RwLock<Duration>,
}

pub struct Registry {
    sessions: RwLock<HashMap<String, Arc<SessionHandle>>>,
    opening: AtomicUsize,
    /// Opens under way per owner (for a token's `max_sessions`).
    opening_by: Mutex<HashMap<Arc<str>, usize>>,
    /// Probes running now (at most [`MAX_PROBES`]); never counted as sessions.
    probing: AtomicUsize,
    threads: Mutex<Vec<JoinHandle<()>>>,
    settings: Settings,
    shutting_down: AtomicBool,
}

impl Registry {
    pub fn new(settings: Settings) -> Arc<Registry> {
        Arc::new(Registry {
            sessions: RwLock::new(HashMap::new()),
            opening: AtomicUsize::new(0),
            opening_by: Mutex::new(HashMap::new()),
            probing: AtomicUsize::new(0),
            threads: Mutex::new(Vec::new()),
            settings,
            shutting_down: AtomicBool::new(false),
        })
    }

    /// A reload's allow-list: sessions opened from now on are checked against it; open
    /// sessions stay.
    pub fn set_allowed_hosts(&self, l: HostList) {
        *self.settings.allowed_hosts.write() = l;
    }

    /// A reload's command policy: every exec from now on, on every session, is checked by it.
    pub fn set_command_rules(&self, r: CommandRules) {
        *self.settings.commands.write() = Arc::new(r);
    }

    /// A reload's `read_only_commands` (None: each platform's own list).
    pub fn set_read_only(&self, r: Option<CommandRules>) {
        *self.settings.read_only.write() = r.map(Arc::new);
    }

    /// Sessions `owner` holds now.
    pub fn owned_by(&self, owner: &str) -> usize {
        self.sessions
            .read()
            .values()
            .filter(|h| h.info.owner.as_deref() == Some(owner))
            .count()
    }

    /// Each held session's protocol and state for the session gauge: `alive`, `busy` (running
    /// an exec) or `dead` (connection lost, not yet deleted or reaped).
    pub fn gauge_states(&self) -> Vec<(&'static str, &'static str)> {
        self.list()
            .iter()
            .map(|h| {
                let state = if !h.state().alive {
                    "dead"
                } else if h.busy() {
                    "busy"
                } else {
                    "alive"
                };
                (h.info.protocol, state)
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.sessions.read().len()
    }

    pub fn set_job_retention(&self, d: Duration) {
        *self.settings.job_retention.write() = d;
    }

    /// How long a finished job's result is kept.
    pub fn job_retention(&self) -> Duration {
        *self.settings.job_retention.read()
    }

    /// The record of armed guards (and those a previous run left).
    pub fn guard_book(&self) -> &guard::GuardBook {
        &self.settings.guards
    }

    /// `text` with the secrets the config's mask patterns find replaced by `********` (as the
    /// command log and a session's recent commands show commands).
    pub fn mask(&self, text: &str) -> String {
        self.settings.masker.mask(text)
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.settings.metrics
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, id: &str) -> Option<Arc<SessionHandle>> {
        self.sessions.read().get(id).cloned()
    }

    /// Every session, oldest first.
    pub fn list(&self) -> Vec<Arc<SessionHandle>> {
        let mut v: Vec<_> = self.sessions.read().values().cloned().collect();
        v.sort_by_key(|h| h.info.created);
        v
    }

    /// Start opening a session on its own thread; `reply` is called from that thread when the
    /// session is up (after it is registered) or failed. Capacity errors are returned at once.
    pub fn open(self: &Arc<Self>, req: OpenRequest, reply: OpenReply) {
        if self.shutting_down.load(Ordering::SeqCst) {
            return reply(Err(OpenError::ShuttingDown));
        }
        // Reserve a slot: sessions plus those being opened never exceed max_sessions.
        let opening = self.opening.fetch_add(1, Ordering::SeqCst) + 1;
        if self.len() + opening > self.settings.max_sessions {
            self.opening.fetch_sub(1, Ordering::SeqCst);
            return reply(Err(OpenError::SessionLimit {
                max: self.settings.max_sessions,
            }));
        }
        // A token's own cap: what it holds plus what it is opening.
        let owner = req
            .caller
            .as_ref()
            .map(|c| (c.name.clone(), c.max_sessions));
        if let Some((name, max)) = &owner {
            let mut by = self.opening_by.lock();
            let opening = by.get(name).copied().unwrap_or(0);
            if let Some(max) = *max {
                if self.owned_by(name) + opening >= max {
                    drop(by);
                    self.opening.fetch_sub(1, Ordering::SeqCst);
                    return reply(Err(OpenError::TokenSessionLimit {
                        token: name.to_string(),
                        max,
                    }));
                }
            }
            *by.entry(name.clone()).or_insert(0) += 1;
        }
        let id = match random_id() {
            Ok(id) => id,
            Err(e) => {
                self.release_opening(owner.as_ref().map(|o| &o.0));
                return reply(Err(OpenError::NoRandomness(e)));
            }
        };
        let reg = self.clone();
        let name = format!("sess-{}", &id[..8]);
        let slot: Arc<Mutex<Option<OpenReply>>> = Arc::new(Mutex::new(Some(reply)));
        let slot2 = slot.clone();
        let spawned = std::thread::Builder::new()
            .name(name)
            .stack_size(SESSION_STACK)
            .spawn(move || {
                let reply = slot2.lock().take();
                if let Some(reply) = reply {
                    // A bug must not leave a session stuck busy or a max_sessions slot taken:
                    // the guards in session_main undo both while unwinding; here it is logged.
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        session_main(reg, id, req, reply)
                    }));
                    if r.is_err() {
                        log::error!("a session thread panicked; the session is marked dead");
                    }
                }
            });
        match spawned {
            Ok(h) => {
                let mut t = self.threads.lock();
                t.retain(|h| !h.is_finished());
                t.push(h);
            }
            Err(e) => {
                self.release_opening(owner.as_ref().map(|o| &o.0));
                if let Some(reply) = slot.lock().take() {
                    reply(Err(OpenError::SessionThread(e)));
                }
            }
        }
    }

    /// An open's reserved slot is free again (it failed, or the session is registered).
    fn release_opening(&self, owner: Option<&Arc<str>>) {
        self.opening.fetch_sub(1, Ordering::SeqCst);
        self.release_owner(owner);
    }

    /// Never called under the sessions lock (`open` takes the two the other way round).
    fn release_owner(&self, owner: Option<&Arc<str>>) {
        if let Some(o) = owner {
            let mut by = self.opening_by.lock();
            if let Some(n) = by.get_mut(o) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    by.remove(o);
                }
            }
        }
    }

    /// Hand an exec to the session. 404/410/409 are answered through `job.reply` right here.
    pub fn exec(&self, id: &str, job: ExecJob) {
        let Some(h) = self.get(id) else {
            return (job.reply)(Err(ExecError::NotFound));
        };
        {
            let s = h.state.lock();
            if !s.alive {
                let why = s
                    .dead_reason
                    .clone()
                    .unwrap_or_else(|| "connection lost".into());
                drop(s);
                return (job.reply)(Err(ExecError::Dead(format!("{why}; re-open required"))));
            }
        }
        if h.busy
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return (job.reply)(Err(ExecError::Busy));
        }
        match h.inbox.try_send(Job::Exec(job)) {
            Ok(()) => {}
            Err(TrySendError::Full(Job::Exec(job))) => {
                h.busy.store(false, Ordering::SeqCst);
                (job.reply)(Err(ExecError::Busy));
            }
            Err(TrySendError::Disconnected(Job::Exec(job))) => {
                h.busy.store(false, Ordering::SeqCst);
                h.mark_dead("the session thread has ended");
                (job.reply)(Err(ExecError::Dead(
                    "the session thread has ended; re-open required".into(),
                )));
            }
            Err(_) => h.busy.store(false, Ordering::SeqCst),
        }
    }

    /// Arm a change guard on a session: the session's thread checks the rollback against the
    /// command policy and arms the device's own timer, if asked, then answers `reply`.
    pub fn arm_guard(&self, id: &str, spec: guard::GuardSpec, reply: guard::ArmReply) {
        let Some(h) = self.get(id) else {
            return reply(Err(GuardError::NotFound));
        };
        {
            let s = h.state.lock();
            if !s.alive {
                let why = s.dead_reason.clone().unwrap_or_default();
                drop(s);
                return reply(Err(GuardError::Dead(format!(
                    "{why}; a guard needs a live session"
                ))));
            }
        }
        if h.guard_armed() {
            return reply(Err(GuardError::AlreadyArmed));
        }
        if h.busy
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return reply(Err(GuardError::Busy));
        }
        if let Err(e) = h.inbox.try_send(Job::Arm(Box::new(spec), reply)) {
            h.busy.store(false, Ordering::SeqCst);
            if let Job::Arm(_, reply) = e.into_inner() {
                reply(Err(GuardError::Busy));
            }
        }
    }

    /// Whether shutting down must wait for guard rollbacks (armed, `on_broker_exit: rollback`).
    pub fn rollbacks_at_exit(&self) -> usize {
        self.list()
            .iter()
            .filter(|h| {
                h.guard.lock().as_ref().is_some_and(|g| {
                    !g.state.ended() && g.on_broker_exit == guard::OnExit::Rollback
                })
            })
            .count()
    }

    /// Remove a session and tell its thread to close. Returns whether it existed.
    /// A session holding an armed change guard is not removed on a client's or the dashboard's
    /// request (the guard must end first); shutdown and the reaper's rules decide for it.
    pub fn remove(&self, id: &str, reason: CloseReason) -> bool {
        let h = {
            let mut map = self.sessions.write();
            let held = map.get(id).is_some_and(|h| {
                matches!(reason, CloseReason::Delete | CloseReason::Dashboard) && h.guard_armed()
            });
            if held {
                return false;
            }
            map.remove(id)
        };
        match h {
            Some(h) => {
                log::info!(
                    "session {} host {}: closing ({})",
                    h.info.id,
                    h.info.host,
                    reason.describe()
                );
                self.settings.metrics.session_closed(reason);
                h.cancel.store(true, Ordering::SeqCst);
                let _ = h.inbox.try_send(Job::Close);
                true
            }
            None => false,
        }
    }

    /// Close sessions idle longer than their session_timeout (zero = never). Only exec counts as
    /// use. Also joins session threads that have ended.
    pub fn reap(&self) -> usize {
        let mut n = 0;
        let retention = self.job_retention();
        for h in self.list() {
            h.jobs.lock().sweep(retention);
            let (idle, alive) = {
                let s = h.state.lock();
                (s.last_used.elapsed(), s.alive)
            };
            // A dead session of a never-reaped (0) safety session is kept for an hour, so the
            // playbook can still see it answer 410, then removed.
            let t = match (h.info.session_timeout.is_zero(), alive) {
                (true, false) => DEAD_KEEP,
                _ => h.info.session_timeout,
            };
            // A session holding an armed change guard is in use until the guard ends.
            if !t.is_zero() && idle > t && !h.busy() && !h.guard_armed() {
                log::info!(
                    "session {} host {}: idle {} s > session_timeout {} s, reaping",
                    h.info.id,
                    h.info.host,
                    idle.as_secs(),
                    t.as_secs()
                );
                if self.remove(&h.info.id, CloseReason::Reaped) {
                    n += 1;
                }
            }
        }
        self.join_finished();
        n
    }

    pub fn join_finished(&self) {
        let done: Vec<JoinHandle<()>> = {
            let mut t = self.threads.lock();
            let (done, live): (Vec<_>, Vec<_>) = t.drain(..).partition(|h| h.is_finished());
            *t = live;
            done
        };
        for h in done {
            let _ = h.join();
        }
    }

    /// Refuse new sessions and tell every session to close (running commands are cancelled and
    /// answered). Does not wait.
    pub fn close_all(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let ids: Vec<String> = self.sessions.read().keys().cloned().collect();
        for id in ids {
            self.remove(&id, CloseReason::Shutdown);
        }
    }

    /// Close every session politely and join their threads, giving up at the deadline (a thread
    /// still inside a blocking SSH handshake is left to its own deadline; the process exits).
    pub fn shutdown(&self, deadline: Instant) {
        self.close_all();
        loop {
            let live = {
                let mut t = self.threads.lock();
                t.retain(|h| !h.is_finished());
                t.len()
            };
            if live == 0 || Instant::now() >= deadline {
                if live > 0 {
                    log::warn!("{live} session thread(s) still closing at shutdown deadline");
                }
                break;
            }
            std::thread::park_timeout(Duration::from_millis(20));
        }
        self.join_finished();
    }
}

/// The session thread: connect, register, serve jobs, close.
/// Gives back the `opening` slot if the thread ends (or unwinds) before the session is registered.
struct OpeningSlot<'a> {
    reg: &'a Registry,
    held: bool,
    owner: Option<Arc<str>>,
}

impl OpeningSlot<'_> {
    /// The global slot (under the sessions lock when the session is registered).
    fn release_global(&mut self) {
        if std::mem::take(&mut self.held) {
            self.reg.opening.fetch_sub(1, Ordering::SeqCst);
        }
    }
    fn release(&mut self) {
        self.release_global();
        self.reg.release_owner(self.owner.take().as_ref());
    }
}

impl Drop for OpeningSlot<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// If the session thread unwinds, the session is marked dead and not busy, so exec answers 410
/// and DELETE or the reaper can remove it.
struct LiveGuard<'a>(&'a SessionHandle);

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0
                .mark_dead("internal error in the session thread (see the broker log)");
            self.0.busy.store(false, Ordering::SeqCst);
        }
    }
}

fn session_main(reg: Arc<Registry>, id: String, req: OpenRequest, reply: OpenReply) {
    let mut slot = OpeningSlot {
        reg: &reg,
        held: true,
        owner: req.caller.as_ref().map(|c| c.name.clone()),
    };
    // The open's request: its log lines carry the id until the session is up (not after).
    let scope = crate::observe::logging::RequestScope::enter(
        req.caller.as_ref().map(|c| c.request_id.clone()),
    );
    let started = Instant::now();
    let opened = open_driver(
        &reg.settings,
        &req,
        format!("sess-{}", id.get(..8).unwrap_or(&id)),
    );
    let req_protocol = req.protocol;
    let OpenRequest {
        host,
        port,
        username,
        password,
        enable_secret,
        passphrase,
        device_type,
        platform,
        session_timeout,
        keepalive_interval,
        jump,
        caller,
        ..
    } = req;
    // Credentials are not needed any more (Secret zeroes its memory on drop).
    drop(password);
    drop(enable_secret);
    drop(passphrase);
    drop(jump);
    let Opened {
        driver,
        negotiated,
        host_key,
        via,
    } = match opened {
        Ok(x) => x,
        Err(e) => {
            slot.release();
            log::warn!(
                "session {id} host {host}: open failed after {} ms: {e}",
                started.elapsed().as_millis()
            );
            return reply(Err(e));
        }
    };
    let (tx, rx) = bounded::<Job>(2);
    let now = SystemTime::now();
    let info = SessionInfo {
        id: id.clone(),
        protocol: req_protocol.name(),
        host,
        port,
        username,
        device_type,
        platform: &platform.name,
        created_at: now,
        created: started,
        session_timeout,
        negotiated,
        keepalive_interval: keepalive_interval.unwrap_or(reg.settings.keepalive_interval),
        host_key,
        via,
        owner: caller.as_ref().map(|c| c.name.clone()),
    };
    drop(caller);
    let handle = Arc::new(SessionHandle {
        info: info.clone(),
        state: Mutex::new(SessionState {
            alive: true,
            mode: driver.mode.clone(),
            last_used_at: now,
            last_used: Instant::now(),
            dead_reason: None,
            commands_run: 0,
            keepalives: 0,
            last_keepalive_at: None,
            keepalive_problem: None,
            recent: Default::default(),
        }),
        busy: AtomicBool::new(false),
        cancel: AtomicBool::new(false),
        inbox: inbox::Inbox::new(tx),
        guard: Mutex::new(None),
        jobs: Mutex::new(jobs::Jobs::default()),
    });
    let shutting_down = {
        let mut map = reg.sessions.write();
        slot.release_global();
        let sd = reg.shutting_down.load(Ordering::SeqCst);
        if !sd {
            map.insert(id.clone(), handle.clone());
        }
        sd
    };
    slot.release();
    log::info!(
        "session {id} host {}: opened {}@{}:{}{} ({}, {}{}) in {} ms; prompt {:?}, mode {}",
        info.host,
        info.username,
        info.host,
        info.port,
        via_text(&info.via),
        info.device_type,
        info.negotiated,
        info.host_key
            .as_ref()
            .map(|k| format!(", host key {} {} {}", k.key_type, k.fingerprint, k.verdict))
            .unwrap_or_default(),
        started.elapsed().as_millis(),
        driver.prompt_base(),
        driver.mode
    );
    if shutting_down {
        reply(Err(OpenError::ShuttingDown));
        driver.close(Instant::now() + CLOSE_DEADLINE);
        return;
    }
    reply(Ok(info));
    // What the session does from now on (keepalives, a change guard that fires by itself, the
    // close) is no request's: each exec and arm enters its own request's scope.
    drop(scope);
    serve(&reg, &handle, driver, rx);
}

/// " via a:22 (host key ED25519 SHA256:..., known), b:22 (...)" for the open's log line.
fn via_text(via: &[HopSeen]) -> String {
    if via.is_empty() {
        return String::new();
    }
    let hops: Vec<String> = via
        .iter()
        .map(|h| {
            format!(
                "{} (host key {} {} {})",
                h.addr, h.host_key.key_type, h.host_key.fingerprint, h.host_key.verdict
            )
        })
        .collect();
    format!(" via {}", hops.join(", "))
}

/// A session's driver, right after login and prompt discovery.
pub(crate) struct Opened {
    pub driver: Driver,
    pub negotiated: String,
    pub host_key: Option<HostKeySeen>,
    /// The jump hosts it went through.
    pub via: Vec<HopSeen>,
}

/// Connect, log in and find the prompt (TCP, SSH key exchange or Telnet login, enable), on a
/// short-lived thread named `thread_name`, within `req.connect_timeout`. Used by a session's
/// own thread and by probes; the caller owns the driver afterwards.
pub(crate) fn open_driver(
    settings: &Settings,
    req: &OpenRequest,
    thread_name: String,
) -> Result<Opened, OpenError> {
    let deadline = Instant::now() + req.connect_timeout;
    let allowed_hosts = {
        let global = settings.allowed_hosts.read();
        match req.caller.as_ref().and_then(|c| c.allowed_hosts.as_ref()) {
            Some(token) => global.narrowed(token),
            None => global.clone(),
        }
    };
    let id8 = thread_name
        .split_once('-')
        .map_or(thread_name.as_str(), |(_, id)| id)
        .to_string();
    let open = || {
        #[cfg_attr(not(feature = "ssh"), allow(unused_mut))]
        let mut host_key = None;
        #[cfg_attr(not(feature = "ssh"), allow(unused_mut))]
        let mut via = Vec::new();
        let reach = Reach {
            allowed: &allowed_hosts,
            dead_peer_timeout: settings.dead_peer_timeout,
        };
        // Through jump hosts: the chain first (each hop's host key, login and forward), then
        // the device's own transport on the chain's forwarded stream.
        #[cfg(feature = "ssh")]
        let chain = if req.jump.is_empty() {
            None
        } else {
            let (stream, chain) = crate::transport::jump::connect(
                &req.jump,
                &req.host,
                req.port,
                reach,
                &settings.known_hosts,
                deadline,
                &id8,
            )?;
            via = chain.via.clone();
            Some((stream, chain))
        };
        #[cfg(not(feature = "ssh"))]
        if !req.jump.is_empty() {
            let _ = &id8;
            return Err(OpenError::Connect(crate::transport::ConnectError::NoSsh));
        }
        let (transport, login): (Box<dyn Transport>, _) = match req.protocol {
            // A build without the `ssh` feature (the fuzz targets') cannot open SSH sessions.
            #[cfg(not(feature = "ssh"))]
            Protocol::Ssh => return Err(OpenError::Connect(crate::transport::ConnectError::NoSsh)),
            #[cfg(feature = "ssh")]
            Protocol::Ssh => {
                let params = SshParams {
                    host: &req.host,
                    port: req.port,
                    username: &req.username,
                    password: &req.password,
                    key_file: req.key_file.as_deref(),
                    passphrase: req.passphrase.as_ref(),
                    algorithms: &req.algorithms,
                    known_hosts: &settings.known_hosts,
                    policy: req.host_key_policy,
                    reach,
                };
                let t: Box<dyn Transport> = match chain {
                    None => {
                        let t = SshTransport::connect(&params, deadline)?;
                        host_key = t.host_key.clone();
                        Box::new(t)
                    }
                    Some((stream, chain)) => {
                        let (session, offered) = crate::transport::ssh::new_session(&params)?;
                        let t = SshTransport::over(session, &offered, &params, stream, deadline);
                        // A failed device login: the chain is torn down (dropped) here.
                        let t = t?;
                        host_key = t.host_key.clone();
                        Box::new(crate::transport::jump::Jumped::new(Box::new(t), chain))
                    }
                };
                (t, None)
            }
            Protocol::Telnet => {
                #[cfg(feature = "ssh")]
                let t: Box<dyn Transport> = match chain {
                    None => Box::new(TelnetTransport::connect(
                        &req.host, req.port, reach, deadline, None,
                    )?),
                    Some((stream, chain)) => {
                        let t = TelnetTransport::over(
                            crate::transport::Stream::Unix(stream),
                            &req.host,
                            req.port,
                            None,
                        )?;
                        Box::new(crate::transport::jump::Jumped::new(Box::new(t), chain))
                    }
                };
                #[cfg(not(feature = "ssh"))]
                let t: Box<dyn Transport> = Box::new(TelnetTransport::connect(
                    &req.host, req.port, reach, deadline, None,
                )?);
                let login = Login {
                    username: &req.username,
                    password: &req.password,
                };
                (t, Some(login))
            }
        };
        let driver = Driver::open(
            Channel::new(transport, req.platform.line.clone()),
            req.platform,
            &OpenOptions {
                host: &req.host,
                login,
                enable_secret: req.enable_secret.as_ref(),
                enable_level: req.enable_level,
                max_output: settings.max_output_bytes,
                deadline,
            },
        )?;
        let negotiated = driver.negotiated();
        Ok::<_, OpenError>(Opened {
            driver,
            negotiated,
            host_key,
            via,
        })
    };
    // The open (TCP, SSH key exchange, login, prompt discovery) runs on a short-lived thread:
    // its deep stack (OpenSSL and libssh2 key exchange, regex compilation) goes away with it,
    // and the session thread, which lives as long as the session, only ever touches the shallow
    // stack of exec and keepalive. About 25 KiB less resident memory per held session.
    std::thread::scope(|s| {
        let spawned = std::thread::Builder::new()
            .name(thread_name)
            .stack_size(SESSION_STACK)
            .spawn_scoped(s, open);
        match spawned {
            Ok(h) => h.join().unwrap_or_else(|_| Err(OpenError::Panicked)),
            Err(e) => Err(OpenError::OpenThread(e)),
        }
    })
}

fn serve(reg: &Registry, h: &Arc<SessionHandle>, mut driver: Driver, rx: Receiver<Job>) {
    let _guard = LiveGuard(h);
    let id = &h.info.id;
    let interval = h.info.keepalive_interval;
    // Device I/O the CLI keepalive counts from: the end of the last exec or keepalive.
    let mut last_io = Instant::now();
    // The last idle check of the connection on the timer (only without the wait below).
    let mut last_check = Instant::now();
    // Idle, the thread blocks in one ppoll on the device's connection, which a send to its
    // inbox interrupts (inbox.rs): it wakes for a job, for the device (output, EOF, RST, an
    // error: a dead connection is seen at once), for its own CLI keepalive and for its change
    // guard. A transport without a descriptor falls back to checking every IDLE_TICK.
    let attached = h.inbox.wake.attach();
    let device_fd = driver.wait_fd();
    let polled = device_fd.is_some();
    // The connection woke the thread with nothing to read (an SSH packet of its own, such as a
    // keepalive reply, that libssh2 consumed): it is left out of the wait until then, so that a
    // socket that stays readable can never spin the thread.
    let mut device_quiet_until: Option<Instant> = None;
    // A job taken by the timer fallback's blocking receive, run at the top of the loop.
    let mut pending: Option<Job> = None;
    // true: closed on request (log out politely); false: the connection died.
    let polite = loop {
        if h.cancel.load(Ordering::SeqCst) {
            break true;
        }
        // The change guard: its rollback at the deadline, the device timer's confirm when asked.
        if !guard::tend(reg, h, &mut driver) {
            break false;
        }
        let job = match pending.take().map(Ok).unwrap_or_else(|| rx.try_recv()) {
            Ok(job) => Some(job),
            Err(crossbeam_channel::TryRecvError::Empty) => None,
            Err(crossbeam_channel::TryRecvError::Disconnected) => break true,
        };
        if let Some(job) = job {
            match job {
                Job::Exec(job) => {
                    let alive = run_exec(reg, h, &mut driver, job);
                    last_io = Instant::now();
                    if !alive {
                        break false;
                    }
                }
                Job::Arm(spec, reply) => {
                    let _scope =
                        crate::observe::logging::RequestScope::enter(spec.request_id.clone());
                    let alive = guard::arm(reg, h, &mut driver, *spec, reply);
                    last_io = Instant::now();
                    if !alive {
                        break false;
                    }
                }
                Job::Wake => {}
                Job::Close => break true,
            }
            continue;
        }
        let now = Instant::now();
        let keepalive_at = (!interval.is_zero()).then(|| last_io + interval);
        let check_at = if polled {
            keepalive_at
        } else {
            Some(keepalive_at.map_or(last_check + IDLE_TICK, |k| k.min(last_check + IDLE_TICK)))
        };
        // The guard's next look is always a finite wait (an hour when there is no guard).
        let look = guard::next_look(h);
        let mut timeout = check_at.map_or(look, |t| t.saturating_duration_since(now).min(look));
        let woke = if polled {
            // Until then the device is left out of the wait, and the wait ends no later.
            let quiet = device_quiet_until.filter(|t| now < *t);
            if let Some(t) = quiet {
                timeout = timeout.min(t - now);
            }
            inbox::wait(&attached, device_fd.filter(|_| quiet.is_none()), timeout)
        } else {
            match rx.recv_timeout(timeout) {
                Ok(job) => {
                    pending = Some(job);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break true,
                Err(RecvTimeoutError::Timeout) => inbox::Woke::Timeout,
            }
        };
        match woke {
            inbox::Woke::Inbox => continue,
            inbox::Woke::Device => match driver.idle_read() {
                Err(reason) => {
                    log::warn!(
                        "session {id} host {}: connection lost while idle: {reason}",
                        h.info.host
                    );
                    h.mark_dead(&reason);
                    break false;
                }
                Ok(0) => device_quiet_until = Some(Instant::now() + DEVICE_QUIET),
                Ok(_) => device_quiet_until = None,
            },
            inbox::Woke::Timeout => {
                if check_at.is_none_or(|t| Instant::now() < t) {
                    continue;
                }
                last_check = Instant::now();
                let cli = !interval.is_zero() && last_io.elapsed() >= interval;
                let wait = KEEPALIVE_WAIT.min(reg.settings.command_timeout);
                match driver.keepalive(cli, wait) {
                    Err(reason) => {
                        log::warn!(
                            "session {id} host {}: connection lost while idle: {reason}",
                            h.info.host
                        );
                        h.mark_dead(&reason);
                        break false;
                    }
                    Ok(k) => {
                        if cli {
                            last_io = Instant::now();
                        }
                        note_keepalive(reg, h, k, wait);
                    }
                }
            }
        }
    };
    // An armed guard outlives its session's connection: closing (shutdown) runs its rollback
    // unless told to keep it; a dead connection waits for the deadline, then re-opens or
    // reports the rollback impossible.
    let mut driver = Some(driver);
    if polite {
        if !guard::at_close(reg, h, driver.as_mut()) {
            driver = None;
        }
    } else {
        h.mark_dead("connection lost");
        guard::after_death(reg, h, &rx);
    }
    // The session is over: answer anything still queued (never leave a client waiting), then
    // drop the inbox so later execs see it closed. The handle stays in the registry for a dead
    // connection (exec answers 410) until DELETE or the reaper removes it.
    if polite {
        h.mark_dead("the session was closed");
    } else {
        reg.settings.metrics.connection_lost();
    }
    while let Ok(job) = rx.try_recv() {
        match job {
            Job::Exec(job) => {
                h.busy.store(false, Ordering::SeqCst);
                (job.reply)(Err(ExecError::Closed(
                    "the session was closed before this exec ran".into(),
                )));
            }
            Job::Arm(_, reply) => {
                h.busy.store(false, Ordering::SeqCst);
                reply(Err(GuardError::Dead(
                    "the session was closed before the guard was armed".into(),
                )));
            }
            Job::Wake | Job::Close => {}
        }
    }
    drop(rx);
    if let Some(driver) = driver.filter(|_| polite) {
        driver.close(Instant::now() + CLOSE_DEADLINE);
        log::info!("session {id} host {}: closed", h.info.host);
    }
}

/// The steps of an exec: the config block (enter config mode unless already there, the lines,
/// commit if saving in config mode, leave config mode if we entered it, save), then the commands.
/// Each item's `step` says what it is for (the command policy and the run loop read it).
fn plan(
    driver: &Driver,
    config: Option<ConfigJob>,
    mut items: Vec<ExecItem>,
    save_override: Option<&str>,
) -> Result<Vec<ExecItem>, ExecError> {
    let mut steps = Vec::new();
    if let Some(c) = config {
        let p = driver.platform();
        let cfg = p.config.as_ref().ok_or_else(|| ExecError::NoConfigMode {
            platform: p.name.clone(),
        })?;
        let save = match (c.save, &cfg.save) {
            (false, _) => None,
            (true, Some(s)) => Some(s),
            (true, None) => {
                return Err(ExecError::NoSave {
                    platform: p.name.clone(),
                })
            }
        };
        let in_config = driver.mode == cfg.mode;
        let enter = !in_config && (!c.lines.is_empty() || save.is_some_and(|s| s.in_config));
        let step = |item: ExecItem, step: Step| ExecItem { step, ..item };
        if enter {
            steps.push(step(ExecItem::plain(&cfg.enter), Step::ConfigEnter));
        }
        for l in c.lines {
            steps.push(step(ExecItem::plain(&l), Step::ConfigLine));
        }
        // While a guard keeps the device's revert timer armed on a commit-model platform, the
        // commit is the platform's confirmed commit (a plain one would confirm the timer).
        let save_cmd = |s: &crate::platform::Save| save_override.unwrap_or(&s.command).to_string();
        if let Some(s) = save.filter(|s| s.in_config) {
            steps.push(step(
                ExecItem::answering(&save_cmd(s), &s.answers),
                Step::Save,
            ));
        }
        if enter || (in_config && save.is_some_and(|s| !s.in_config)) {
            let exit = ExecItem::answering(&cfg.exit, &cfg.exit_answers);
            steps.push(step(exit, Step::ConfigExit));
        }
        if let Some(s) = save.filter(|s| !s.in_config) {
            steps.push(step(
                ExecItem::answering(&save_cmd(s), &s.answers),
                Step::Save,
            ));
        }
    }
    steps.append(&mut items);
    Ok(steps)
}

/// Run one exec job. Returns false when the connection died.
fn run_exec(reg: &Registry, h: &Arc<SessionHandle>, driver: &mut Driver, job: ExecJob) -> bool {
    let ExecJob { spec, reply } = job;
    if spec.by == By::Client && h.guard_due() {
        h.busy.store(false, Ordering::SeqCst);
        reply(Err(ExecError::GuardFired(
            "the session's change guard has fired: its rollback runs first; nothing of this exec was sent".into(),
        )));
        return true;
    }
    let _scope = crate::observe::logging::RequestScope::enter(
        spec.caller.as_ref().map(|c| c.request_id.clone()),
    );
    let caller = spec.caller.clone();
    let ctx = ExecCtx {
        id: &h.info.id,
        host: &h.info.host,
        cancel: &h.cancel,
        handle: Some(h),
        by: spec.by,
        caller: caller.as_deref(),
    };
    let by = spec.by;
    let (r, alive) = exec_on(&reg.settings, &ctx, driver, spec);
    // Free the session before answering, so the client's next exec is never refused as busy.
    // (The guard's own steps never claimed it: a client's exec may be queued behind them.)
    if by == By::Client {
        h.busy.store(false, Ordering::SeqCst);
    }
    reply(r);
    alive
}

/// Who an exec runs for: a registered session (whose state it updates), or a probe, which has
/// no handle (an id for the logs and the command log, its own cancel flag).
pub(crate) struct ExecCtx<'a> {
    pub id: &'a str,
    pub host: &'a str,
    pub cancel: &'a AtomicBool,
    pub handle: Option<&'a SessionHandle>,
    /// Who the exec runs for (the command log's `by`).
    pub by: By,
    /// The client's token, if a client's.
    pub caller: Option<&'a Caller>,
}

impl ExecCtx<'_> {
    /// The command log's `by`: `guard`, or the client's token name (`client` without one).
    fn by_name(&self) -> &str {
        match (self.by, self.caller) {
            (By::Guard, _) => By::Guard.name(),
            (By::Client, Some(c)) => &c.name,
            (By::Client, None) => By::Client.name(),
        }
    }
}

/// Run one exec on `driver`: plan, preflight against the command policy in force (a refusal
/// sends nothing), run, log. Returns the answer and whether the connection is still up. Used
/// by a session's thread (through [`run_exec`]) and by probes.
pub(crate) fn exec_on(
    settings: &Settings,
    ctx: &ExecCtx,
    driver: &mut Driver,
    job: ExecSpec,
) -> (Result<ExecReport, ExecError>, bool) {
    // A job sees each byte of its commands' output as it arrives.
    let record = job.job.clone();
    if let Some(j) = &record {
        j.start();
        let tap = j.clone();
        driver.tap = crate::channel::Tap(Some(Arc::new(move |d: &[u8]| tap.output(d))));
    }
    let r = exec_steps(settings, ctx, driver, job, record.as_deref());
    driver.tap = crate::channel::Tap::default();
    r
}

fn exec_steps(
    settings: &Settings,
    ctx: &ExecCtx,
    driver: &mut Driver,
    mut job: ExecSpec,
    record: Option<&jobs::JobRecord>,
) -> (Result<ExecReport, ExecError>, bool) {
    let id = ctx.id;
    let host = ctx.host;
    let started = Instant::now();
    if let Some(h) = ctx.handle {
        touch(h);
    }
    // The command policy in force when the exec starts; every line the plan could type is
    // tried against it before the first is sent (a refusal sends nothing).
    // A client's token narrows it with its own rules, and a `reader` with the read-only
    // commands (the config's `read_only_commands`, else the platform's).
    let mut rules = job
        .rules
        .clone()
        .unwrap_or_else(|| settings.commands.read().clone());
    if let Some(c) = job.caller.as_ref().filter(|_| job.by == By::Client) {
        if let Some(t) = &c.rules {
            rules = Arc::new(rules.and(t));
        }
        if c.read_only {
            let ro = settings
                .read_only
                .read()
                .clone()
                .unwrap_or_else(|| driver.platform().read_only.clone());
            rules = Arc::new(rules.and(&ro));
        }
    }
    driver.set_rules(rules);
    let save_override = ctx
        .handle
        .and_then(|h| guard::save_override(h, driver.platform()));
    let steps = match plan(
        driver,
        job.config.take(),
        std::mem::take(&mut job.items),
        save_override.as_deref(),
    )
    .and_then(|steps| {
        driver.preflight(steps.iter()).map_err(ExecError::Refused)?;
        Ok(steps)
    }) {
        Ok(s) => s,
        Err(e) => {
            if let ExecError::Refused(why) = &e {
                log::warn!(
                    "session {id} host {host}: exec refused by the command policy: {}",
                    settings.masker.mask(why)
                );
            }
            return (Err(e), true);
        }
    };
    // Output kept for the whole exec; each command keeps at most what is left of it.
    let mut budget = settings.max_exec_output_bytes;
    let mut results = Vec::with_capacity(steps.len());
    let mut failure = None;
    let mut alive = true;
    // After a failed config line (stop_on_error) or a refused `configure`, skip to leaving
    // config mode; nothing else is sent.
    let mut skipping = false;
    let config_mode = driver
        .platform()
        .config
        .as_ref()
        .map(|c| c.mode.clone())
        .unwrap_or_default();
    // A client's exec stops for DELETE or shutdown, and when the change guard comes due (the
    // rollback must start within a second); the guard's own steps stop only for their deadline.
    // A job also stops when cancelled or past its own deadline (job_timeout).
    let by = job.by;
    let stop = || {
        by == By::Client
            && (ctx.cancel.load(Ordering::SeqCst)
                || ctx.handle.is_some_and(|h| h.guard_due())
                || record.is_some_and(|j| j.cancelled() || j.timed_out()))
    };
    for item in &steps {
        let role = item.step;
        if skipping && role != Step::ConfigExit {
            continue;
        }
        let timeout = item.timeout.unwrap_or(job.timeout);
        let cmd_started = Instant::now();
        let deadline = cmd_started + timeout;
        log::debug!(
            "session {id} host {host}: run {:?}",
            settings.masker.mask(&item.cmd)
        );
        if let Some(j) = record {
            j.command_started(&item.cmd);
        }
        match driver.run(item, deadline, &stop, budget) {
            Ok(r) => {
                budget = budget.saturating_sub(r.output.len());
                if let Some(j) = record {
                    j.command_done(&r);
                }
                log_cmd(
                    settings,
                    ctx,
                    &r.command,
                    &r.output,
                    r.elapsed_ms,
                    if r.failure.is_some() { "failed" } else { "ok" },
                    r.truncated,
                );
                // Never send config lines outside config mode.
                let refused_enter = role == Step::ConfigEnter
                    && (r.failure.is_some() || driver.mode != config_mode);
                let stop = refused_enter || (job.stop_on_error && r.failure.is_some());
                if stop && failure.is_none() {
                    let why = r.failure.clone().unwrap_or_else(|| {
                        format!(
                            "the device did not enter config mode (now in {:?})",
                            driver.mode
                        )
                    });
                    failure = Some(ExecFailure {
                        error: ExecError::DeviceFailed(format!(
                            "Command {:?} failed: {why}",
                            settings.masker.mask(&item.cmd)
                        )),
                        command: item.cmd.clone(),
                        partial: r.output.clone(),
                    });
                }
                results.push(r);
                if stop {
                    if matches!(role, Step::ConfigEnter | Step::ConfigLine) && !refused_enter {
                        skipping = true;
                    } else {
                        break;
                    }
                }
            }
            Err(f) => {
                let cmd = settings.masker.mask(&item.cmd);
                let (error, partial, status) = match f {
                    CmdFail::Timeout { partial, .. } => (
                        ExecError::TimedOut(format!(
                            "Command {cmd:?} timed out after {} s waiting for the prompt",
                            timeout.as_secs_f64()
                        )),
                        partial,
                        "timeout",
                    ),
                    CmdFail::Desynced { since } => (
                        ExecError::Desynced(format!(
                            "The device has not returned to its prompt since {:?} timed out; nothing was sent. Retry later or re-open the session",
                            settings.masker.mask(&since)
                        )),
                        String::new(),
                        "error",
                    ),
                    CmdFail::Closed { partial, reason } => {
                        alive = false;
                        if let Some(h) = ctx.handle {
                            h.mark_dead(&reason);
                        }
                        (ExecError::Dead(format!("{reason} (while running {cmd:?})")), partial, "error")
                    }
                    CmdFail::Cancelled { partial, sent } if !ctx.cancel.load(Ordering::SeqCst) => {
                        // Stopped by the change guard, a cancel or the job's deadline: interrupt
                        // the command as an operator would, and leave the device at its prompt.
                        let how = if !sent {
                            "it was not sent".to_string()
                        } else {
                            match driver.interrupt(&item.cmd, Instant::now() + guard::INTERRUPT_WAIT) {
                                Ok(()) => "it was interrupted (the platform's interrupt key) and the prompt came back".to_string(),
                                Err(e) => format!("it was interrupted, but {e}"),
                            }
                        };
                        // Interrupted inside a config block: leave config mode (the platform's own
                        // exit step), so the session is back where execs start.
                        driver.leave_config_mode(Instant::now() + guard::INTERRUPT_WAIT);
                        let error = if record.is_some_and(|j| j.cancelled()) {
                            ExecError::Cancelled(format!(
                                "the job was cancelled while {cmd:?} was running: {how}; later commands were not sent"
                            ))
                        } else if record.is_some_and(|j| j.timed_out()) {
                            ExecError::TimedOut(format!(
                                "the job's timeout passed while {cmd:?} was running: {how}; later commands were not sent"
                            ))
                        } else {
                            ExecError::GuardFired(format!(
                                "the session's change guard fired while {cmd:?} was running: {how}; the rollback runs next and later execs wait for it"
                            ))
                        };
                        (error, partial, "interrupted")
                    }
                    CmdFail::Cancelled { partial, sent } => {
                        // Closing with an armed guard that rolls back next: stop the command
                        // first, so the rollback is not typed into it.
                        if sent
                            && ctx.handle.is_some_and(SessionHandle::guard_armed)
                            && driver
                                .interrupt(&item.cmd, Instant::now() + guard::INTERRUPT_WAIT)
                                .is_ok()
                        {
                            driver.leave_config_mode(Instant::now() + guard::INTERRUPT_WAIT);
                        }
                        (
                            ExecError::Closed(format!("the session was closed while {cmd:?} was running")),
                            partial,
                            "error",
                        )
                    }
                    CmdFail::Refused { partial, why } => {
                        (ExecError::Refused(why), partial, "refused")
                    }
                };
                log::warn!("session {id} host {host}: {error}");
                log_cmd(
                    settings,
                    ctx,
                    &item.cmd,
                    &partial,
                    cmd_started.elapsed().as_millis() as u64,
                    status,
                    false,
                );
                // A failed config line already answered above keeps its error; a timeout wins.
                failure = Some(ExecFailure {
                    error,
                    command: item.cmd.clone(),
                    partial,
                });
                break;
            }
        }
    }
    if let Some(h) = ctx.handle {
        {
            let mut s = h.state.lock();
            s.mode = driver.mode.clone();
            s.commands_run += results.len() as u64;
        }
        touch(h);
    }
    log::info!(
        "session {id} host {host}: exec of {} step(s) {} in {} ms",
        steps.len(),
        if failure.is_some() { "failed" } else { "done" },
        started.elapsed().as_millis()
    );
    (Ok(ExecReport { results, failure }), alive)
}

/// Record a keepalive in the session's status (never as use: the reaper ignores keepalives).
fn note_keepalive(reg: &Registry, h: &SessionHandle, k: Keepalive, wait: Duration) {
    let mut s = h.state.lock();
    match k {
        Keepalive::Checked => {}
        Keepalive::Answered => {
            s.keepalives += 1;
            s.last_keepalive_at = Some(SystemTime::now());
            if s.keepalive_problem.take().is_some() {
                log::info!(
                    "session {} host {}: keepalive answered again",
                    h.info.id,
                    h.info.host
                );
            }
        }
        Keepalive::NoPrompt => {
            s.keepalives += 1;
            reg.settings.metrics.keepalive_failed();
            let m = format!(
                "no prompt within {} s after a keepalive newline",
                wait.as_secs_f64()
            );
            log::warn!("session {} host {}: {m}", h.info.id, h.info.host);
            s.keepalive_problem = Some(m);
        }
    }
}

fn touch(h: &SessionHandle) {
    let mut s = h.state.lock();
    s.last_used = Instant::now();
    s.last_used_at = SystemTime::now();
}

fn log_cmd(
    settings: &Settings,
    ctx: &ExecCtx,
    cmd: &str,
    output: &str,
    ms: u64,
    status: &str,
    truncated: bool,
) {
    if let Some(h) = ctx.handle {
        let mut s = h.state.lock();
        if s.recent.len() >= RECENT_COMMANDS {
            s.recent.pop_front();
        }
        s.recent.push_back(RecentCommand {
            at: SystemTime::now(),
            command: settings.masker.mask(cmd),
            status: status.to_string(),
            elapsed_ms: ms,
        });
    }
    if let Some(cl) = &settings.cmdlog {
        cl.append(&Entry {
            session_id: ctx.id,
            host: ctx.host,
            command: cmd,
            output,
            elapsed_ms: ms,
            status,
            truncated,
            by: ctx.by_name(),
        });
    }
}
