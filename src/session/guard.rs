//! The change guard of a session: a dead-man rollback the session's own thread runs when the
//! guard is not confirmed or extended by its deadline, optionally backed by the device's own
//! revert timer (platform data, `device_revert`). The guard's state lives on the session handle
//! (the API reads and changes it under its lock); everything that types into the device runs
//! on the session thread. Deadlines are monotonic (`Instant`).

use super::driver::{CmdResult, ExecItem};
use super::{ConfigJob, OpenRequest};
use serde_json::{json, Value};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// What happens to an armed guard when the broker is told to stop (SIGTERM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExit {
    /// Run the rollback before the session closes (fail safe; the default).
    Rollback,
    /// Leave the device as it is; the guard is reported after the next start.
    Keep,
}

impl OnExit {
    pub fn name(self) -> &'static str {
        match self {
            OnExit::Rollback => "rollback",
            OnExit::Keep => "keep",
        }
    }
}

/// The rollback: exactly what an exec accepts.
#[derive(Clone)]
pub struct Rollback {
    pub items: Vec<ExecItem>,
    pub config: Option<ConfigJob>,
    pub stop_on_error: bool,
    pub timeout: Duration,
    /// The command policy it was checked against when the guard was armed (a reload that
    /// tightens the policy meanwhile cannot block the rollback). None: the policy in force.
    pub rules: Option<Arc<crate::policy::CommandRules>>,
}

impl Rollback {
    /// Platform steps (device timer, leaving config mode), under the policy in force.
    fn steps(items: Vec<ExecItem>, stop_on_error: bool, timeout: Duration) -> Rollback {
        Rollback {
            items,
            config: None,
            stop_on_error,
            timeout,
            rules: None,
        }
    }
}

/// A login the guard may use later: a fresh connection for a probe, or to roll back when the
/// session itself has died (`reopen`). Its secrets live only while the guard is armed.
pub struct Login {
    pub open: OpenRequest,
    /// For a probe: one command to run after login.
    pub command: Option<String>,
}

/// Everything `POST /session/{id}/guard` asks for, checked.
pub struct GuardSpec {
    pub rollback: Rollback,
    pub timeout: Duration,
    /// The device's own revert timer, in minutes (None: not armed).
    pub device_revert: Option<u32>,
    pub probe: Option<Login>,
    pub reopen: Option<Login>,
    pub on_broker_exit: OnExit,
    /// The arming request's id (the arm's log lines carry it).
    pub request_id: Option<Arc<str>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardState {
    Armed,
    /// The rollback is running.
    Firing,
    Confirmed,
    RolledBack,
    RollbackFailed,
    RollbackImpossible,
    Disarmed,
}

impl GuardState {
    pub fn name(self) -> &'static str {
        match self {
            GuardState::Armed => "armed",
            GuardState::Firing => "rolling_back",
            GuardState::Confirmed => "confirmed",
            GuardState::RolledBack => "rolled_back",
            GuardState::RollbackFailed => "rollback_failed",
            GuardState::RollbackImpossible => "rollback_impossible",
            GuardState::Disarmed => "disarmed",
        }
    }
    pub fn ended(self) -> bool {
        !matches!(self, GuardState::Armed | GuardState::Firing)
    }
}

/// The device's revert timer as the guard armed it.
#[derive(Debug, Clone)]
pub struct DeviceTimer {
    pub minutes: u32,
    pub armed_at: SystemTime,
    /// Confirmed (stopped, configuration kept) by the broker.
    pub confirmed: bool,
    /// The confirm steps are still to be typed (the session thread does it when free).
    pub confirm_pending: bool,
    /// Why confirming failed, if it did.
    pub confirm_error: Option<String>,
}

/// What the rollback did.
pub struct GuardResult {
    pub results: Vec<CmdResult>,
    /// The failure's detail, command and partial output, if the rollback failed.
    pub failure: Option<(String, String, String)>,
    /// The rollback ran on a new connection because the session had died.
    pub reopened: bool,
}

/// Called with the guard once it ends.
pub type Waiter = Box<dyn FnOnce(&Guard) + Send>;

/// A session's guard. `None` on the handle: never armed.
pub struct Guard {
    pub state: GuardState,
    pub armed_at: SystemTime,
    pub deadline: Instant,
    pub timeout: Duration,
    pub device: Option<DeviceTimer>,
    pub on_broker_exit: OnExit,
    /// Why it fired: `deadline`, `request`, `probe failed`, `broker exit`.
    pub fired_by: Option<&'static str>,
    pub ended_at: Option<SystemTime>,
    pub last_probe: Option<Value>,
    pub result: Option<GuardResult>,
    /// Answered with the guard's JSON once it ends (`POST .../guard/rollback` waits for it).
    pub waiters: Vec<Waiter>,
    /// Kept only while armed: the rollback and the logins (their secrets are zeroed on drop).
    pub rollback: Option<Rollback>,
    pub probe: Option<Login>,
    pub reopen: Option<Login>,
}

impl Guard {
    pub fn new(spec: GuardSpec, device: Option<DeviceTimer>) -> Guard {
        Guard {
            state: GuardState::Armed,
            armed_at: SystemTime::now(),
            deadline: Instant::now() + spec.timeout,
            timeout: spec.timeout,
            device,
            on_broker_exit: spec.on_broker_exit,
            fired_by: None,
            ended_at: None,
            last_probe: None,
            result: None,
            waiters: Vec::new(),
            rollback: Some(spec.rollback),
            probe: spec.probe,
            reopen: spec.reopen,
        }
    }

    /// Armed and past its deadline.
    pub fn due(&self) -> bool {
        self.state == GuardState::Armed && Instant::now() >= self.deadline
    }

    pub fn seconds_left(&self) -> f64 {
        if self.state != GuardState::Armed {
            return 0.0;
        }
        self.deadline
            .saturating_duration_since(Instant::now())
            .as_secs_f64()
    }

    /// The wall-clock time of the deadline, for people.
    pub fn deadline_at(&self) -> SystemTime {
        SystemTime::now() + self.deadline.saturating_duration_since(Instant::now())
    }

    /// End the guard: drop what it kept (secrets included) and answer whoever waits.
    pub fn end(&mut self, state: GuardState) {
        self.state = state;
        self.ended_at = Some(SystemTime::now());
        self.rollback = None;
        self.probe = None;
        self.reopen = None;
        for w in std::mem::take(&mut self.waiters) {
            w(self);
        }
    }
}

/// The record of armed guards in `state_dir/guards.json` (no credentials), so that a broker
/// that crashed or was restarted reports each guard it held, and whether the device's own timer
/// was armed.
pub struct GuardBook {
    path: Option<PathBuf>,
    inner: parking_lot::Mutex<BookInner>,
}

#[derive(Default)]
struct BookInner {
    armed: serde_json::Map<String, Value>,
    /// Found in the file at start: guards of a previous run.
    orphaned: Vec<Value>,
}

impl GuardBook {
    /// Read what a previous run left (each entry is logged as an ERROR) and start a new record.
    pub fn open(path: Option<PathBuf>) -> GuardBook {
        let mut inner = BookInner::default();
        if let Some(p) = &path {
            match std::fs::read(p) {
                Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                    Ok(v) => {
                        for (_, g) in v["armed"].as_object().cloned().unwrap_or_default() {
                            log::error!(
                                "a change guard was armed when the broker stopped: session {} host {}:{} ({}), armed at {}, deadline {}, device revert timer {}; check the device",
                                g["session_id"].as_str().unwrap_or("?"),
                                g["host"].as_str().unwrap_or("?"),
                                g["port"],
                                g["device_type"].as_str().unwrap_or("?"),
                                g["armed_at"].as_str().unwrap_or("?"),
                                g["deadline_at"].as_str().unwrap_or("?"),
                                if g["device_revert"]["armed"] == json!(true) {
                                    format!("armed ({} min): the device reverts by itself unless confirmed", g["device_revert"]["minutes"])
                                } else {
                                    "not armed: nothing rolls the device back".into()
                                }
                            );
                            inner.orphaned.push(g);
                        }
                    }
                    Err(e) => log::error!("{}: unreadable ({e}); ignored", p.display()),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log::error!("{}: {e}", p.display()),
            }
        }
        let book = GuardBook {
            path,
            inner: parking_lot::Mutex::new(inner),
        };
        book.write(&book.inner.lock());
        book
    }

    pub fn armed(&self, id: &str, entry: Value) {
        let mut i = self.inner.lock();
        i.armed.insert(id.to_string(), entry);
        self.write(&i);
    }

    pub fn ended(&self, id: &str) {
        let mut i = self.inner.lock();
        if i.armed.remove(id).is_some() {
            self.write(&i);
        }
    }

    /// Guards of a previous run, as read at start.
    pub fn orphaned(&self) -> Vec<Value> {
        self.inner.lock().orphaned.clone()
    }

    fn write(&self, i: &BookInner) {
        let Some(p) = &self.path else { return };
        let text = json!({"armed": i.armed}).to_string();
        let tmp = p.with_extension("json.tmp");
        let r = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&tmp, p));
        if let Err(e) = r {
            log::error!("cannot record armed guards in {}: {e}", p.display());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// On the session's own thread
// ---------------------------------------------------------------------------------------------

use super::{
    open_driver, run_exec, By, ExecJob, ExecReport, Registry, SessionHandle, CLOSE_DEADLINE,
};
use super::{ExecError, GuardError};
use crate::observe::cmdlog::Entry;
use crate::platform::{DeviceRevert, Platform};
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub type ArmReply = Box<dyn FnOnce(Result<(), GuardError>) + Send>;

/// How long an interrupted command may take to give the prompt back.
pub const INTERRUPT_WAIT: Duration = Duration::from_secs(10);
/// How often the session thread looks at a guard with work pending.
const LOOK: Duration = Duration::from_millis(100);

/// How long the session thread may wait before it must look at the guard again.
pub fn next_look(h: &SessionHandle) -> Duration {
    match h.guard.lock().as_ref() {
        Some(g) if g.state == GuardState::Armed => g
            .deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(1)),
        Some(g) if g.device.as_ref().is_some_and(|d| d.confirm_pending) => LOOK,
        _ => Duration::from_secs(3600),
    }
}

/// The save command while a guard keeps a commit-model device's timer armed.
pub fn save_override(h: &SessionHandle, p: &Platform) -> Option<String> {
    let g = h.guard.lock();
    let g = g.as_ref().filter(|g| g.state == GuardState::Armed)?;
    let d = g.device.as_ref().filter(|d| !d.confirmed)?;
    let save = p.device_revert.as_ref()?.save.as_ref()?;
    DeviceRevert::fill(std::slice::from_ref(save), d.minutes).pop()
}

/// Run steps for the guard as an exec of its own (policy, command log with `by: guard`).
fn run_steps(
    reg: &Registry,
    h: &Arc<SessionHandle>,
    driver: &mut super::driver::Driver,
    plan: Rollback,
) -> (Result<ExecReport, ExecError>, bool) {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let job = ExecJob {
        spec: super::ExecSpec {
            items: plan.items,
            timeout: plan.timeout,
            stop_on_error: plan.stop_on_error,
            config: plan.config,
            by: By::Guard,
            job: None,
            rules: plan.rules,
            caller: None,
        },
        reply: Box::new(move |r| {
            let _ = tx.send(r);
        }),
    };
    let alive = run_exec(reg, h, driver, job);
    let r = rx.try_recv().unwrap_or_else(|_| {
        Err(ExecError::Closed(
            "the guard's steps were not answered".into(),
        ))
    });
    (r, alive)
}

/// The rollback typed nothing the device answered: the session waits for a prompt that does
/// not come, or its first step timed out.
fn nothing_ran(r: &Result<ExecReport, ExecError>) -> bool {
    match r {
        Err(ExecError::Desynced(_) | ExecError::TimedOut(_)) => true,
        Ok(ExecReport {
            results,
            failure: Some(f),
        }) => {
            results.is_empty() && matches!(f.error, ExecError::Desynced(_) | ExecError::TimedOut(_))
        }
        _ => false,
    }
}

/// Why a report failed, in one line.
fn report_failure(r: &Result<ExecReport, ExecError>) -> Option<String> {
    match r {
        Ok(ExecReport { failure: None, .. }) => None,
        Ok(ExecReport {
            failure: Some(f), ..
        }) => Some(f.error.to_string()),
        Err(e) => Some(e.to_string()),
    }
}

/// A guard event in the command log (`by: guard`) and the process log.
pub(super) fn event(reg: &Registry, h: &SessionHandle, what: &str) {
    log::info!(
        "session {} host {}: change guard: {what}",
        h.info.id,
        h.info.host
    );
    if let Some(cl) = &reg.settings.cmdlog {
        cl.append(&Entry {
            session_id: &h.info.id,
            host: &h.info.host,
            command: &format!("[guard] {what}"),
            output: "",
            elapsed_ms: 0,
            status: "guard",
            truncated: false,
            by: By::Guard.name(),
        });
    }
}

fn book_entry(h: &SessionHandle, g: &Guard) -> Value {
    json!({
        "session_id": h.info.id,
        "host": h.info.host,
        "port": h.info.port,
        "protocol": h.info.protocol,
        "device_type": h.info.device_type,
        "armed_at": crate::util::iso8601(g.armed_at),
        "deadline_at": crate::util::iso8601(g.deadline_at()),
        "on_broker_exit": g.on_broker_exit.name(),
        "device_revert": {
            "armed": g.device.is_some(),
            "minutes": g.device.as_ref().map(|d| d.minutes),
        },
    })
}

/// Arm a guard (Job::Arm). Returns false when the connection died.
pub(super) fn arm(
    reg: &Registry,
    h: &Arc<SessionHandle>,
    driver: &mut super::driver::Driver,
    spec: GuardSpec,
    reply: ArmReply,
) -> bool {
    let done = |r: Result<(), GuardError>, reply: ArmReply| {
        h.busy.store(false, Ordering::SeqCst);
        reply(r);
    };
    if h.guard_armed() {
        done(Err(GuardError::AlreadyArmed), reply);
        return true;
    }
    if h.cancel.load(Ordering::SeqCst) {
        done(
            Err(GuardError::Dead(
                "the session is closing; nothing was armed".into(),
            )),
            reply,
        );
        return true;
    }
    // The rollback is checked against the command policy now (narrowed by the arming token's
    // own rules, which the API put in `rollback.rules`), and runs under the same policy when it
    // fires.
    let mut spec = spec;
    let global = reg.settings.commands.read().clone();
    let rules = match spec.rollback.rules.take() {
        Some(token) => Arc::new(global.and(&token)),
        None => global,
    };
    driver.set_rules(rules.clone());
    spec.rollback.rules = Some(rules);
    let rb = &spec.rollback;
    let checked = super::plan(driver, rb.config.clone(), rb.items.clone(), None)
        .and_then(|steps| driver.preflight(steps.iter()).map_err(ExecError::Refused));
    if let Err(e) = checked {
        let e = match e {
            ExecError::Refused(m) => GuardError::Refused(format!(
                "the command policy refuses the rollback: {m}; nothing was armed"
            )),
            other => GuardError::DeviceRevert(format!(
                "the rollback cannot run on this session: {other}; nothing was armed"
            )),
        };
        done(Err(e), reply);
        return true;
    }
    let mut device = None;
    if let Some(minutes) = spec.device_revert {
        let p = driver.platform();
        let Some(dr) = p.device_revert.as_ref() else {
            done(
                Err(GuardError::DeviceRevert(format!(
                    "platform {} has no device revert timer",
                    p.name
                ))),
                reply,
            );
            return true;
        };
        let items = DeviceRevert::fill(&dr.arm, minutes)
            .iter()
            .map(|c| ExecItem::plain(c))
            .collect();
        let (r, alive) = run_steps(reg, h, driver, Rollback::steps(items, true, rb.timeout));
        if !alive {
            done(
                Err(GuardError::Dead(
                    "the connection died while arming the device's revert timer; nothing was armed"
                        .into(),
                )),
                reply,
            );
            return false;
        }
        let output: String = match &r {
            Ok(rep) => rep.results.iter().map(|c| c.output.as_str()).collect(),
            Err(_) => String::new(),
        };
        let missing = dr.missing.iter().any(|m| m.is_match(&output));
        let failed = report_failure(&r);
        if missing || failed.is_some() {
            // Never half a guard: leave config mode if an arm step left the device there.
            leave_config(reg, h, driver, rb.timeout);
            let why = if missing {
                dr.missing_detail.clone()
            } else {
                format!(
                    "arming the device's revert timer failed: {}; nothing was armed",
                    failed.unwrap_or_default()
                )
            };
            done(Err(GuardError::DeviceRevert(why)), reply);
            return true;
        }
        device = Some(DeviceTimer {
            minutes,
            armed_at: SystemTime::now(),
            confirmed: false,
            confirm_pending: false,
            confirm_error: None,
        });
    }
    let timeout = spec.timeout;
    let g = Guard::new(spec, device);
    reg.settings.guards.armed(&h.info.id, book_entry(h, &g));
    let what = format!(
        "armed: rollback in {} s unless confirmed or extended{}; on broker exit: {}",
        timeout.as_secs_f64(),
        g.device
            .as_ref()
            .map(|d| format!(
                "; the device's own revert timer armed for {} min",
                d.minutes
            ))
            .unwrap_or_default(),
        g.on_broker_exit.name()
    );
    *h.guard.lock() = Some(g);
    reg.settings.metrics.guard_event("armed");
    event(reg, h, &what);
    done(Ok(()), reply);
    true
}

/// After a failed arm step: back to exec mode if the device is in config mode.
fn leave_config(
    reg: &Registry,
    h: &Arc<SessionHandle>,
    driver: &mut super::driver::Driver,
    timeout: Duration,
) {
    let Some(cfg) = driver.platform().config.as_ref() else {
        return;
    };
    if driver.mode == cfg.mode {
        let mut exit = ExecItem::answering(&cfg.exit, &cfg.exit_answers);
        exit.step = crate::channel::typed::Step::ConfigExit;
        let _ = run_steps(reg, h, driver, Rollback::steps(vec![exit], false, timeout));
    }
}

/// The guard's work on the session thread: fire at the deadline, confirm the device's timer
/// when asked. Returns false when the connection died.
pub(super) fn tend(
    reg: &Registry,
    h: &Arc<SessionHandle>,
    driver: &mut super::driver::Driver,
) -> bool {
    let (due, confirm) = match h.guard.lock().as_ref() {
        Some(g) => (
            g.due(),
            g.device.as_ref().is_some_and(|d| d.confirm_pending),
        ),
        None => return true,
    };
    if due {
        return fire(reg, h, Some(driver));
    }
    if confirm {
        return confirm_device(reg, h, driver);
    }
    true
}

/// Type the device timer's confirm steps (the timer stops, the configuration stays).
fn confirm_device(
    reg: &Registry,
    h: &Arc<SessionHandle>,
    driver: &mut super::driver::Driver,
) -> bool {
    let minutes = match h.guard.lock().as_mut().and_then(|g| g.device.as_mut()) {
        Some(d) => {
            d.confirm_pending = false;
            d.minutes
        }
        None => return true,
    };
    let Some(dr) = driver.platform().device_revert.as_ref() else {
        return true;
    };
    let items = DeviceRevert::fill(&dr.confirm, minutes)
        .iter()
        .map(|c| ExecItem::plain(c))
        .collect();
    let (r, alive) = run_steps(
        reg,
        h,
        driver,
        Rollback::steps(items, true, reg.settings.command_timeout),
    );
    let err = report_failure(&r);
    if let Some(g) = h.guard.lock().as_mut() {
        if let Some(d) = g.device.as_mut() {
            d.confirmed = err.is_none();
            d.confirm_error = err.clone();
            // The connection died on the way: a new one (reopen) may still confirm it.
            d.confirm_pending = err.is_some() && !alive;
        }
        if err.is_none() && g.state.ended() {
            // Nothing left to do for the login kept to confirm on a new connection.
            g.reopen = None;
        }
    }
    match err {
        None => event(reg, h, "the device's revert timer was confirmed (stopped; configuration kept)"),
        Some(e) => event(
            reg,
            h,
            &format!("confirming the device's revert timer failed: {e}; the device will revert when its timer runs out"),
        ),
    }
    alive
}

/// Run the rollback (the guard is due, or asked to roll back now, or the broker is exiting).
/// `driver`: the session's, if its connection is alive. Returns false when it died.
pub(super) fn fire(
    reg: &Registry,
    h: &Arc<SessionHandle>,
    driver: Option<&mut super::driver::Driver>,
) -> bool {
    let started = Instant::now();
    let (rollback, reopen, fired_by) = {
        let mut g = h.guard.lock();
        let Some(g) = g.as_mut().filter(|g| g.state == GuardState::Armed) else {
            return true;
        };
        g.state = GuardState::Firing;
        let by = *g.fired_by.get_or_insert("deadline");
        (g.rollback.take(), g.reopen.take(), by)
    };
    let Some(rb) = rollback else {
        return true;
    };
    event(reg, h, &format!("fired ({fired_by}): rolling back"));
    let mut alive = true;
    let mut reopened = false;
    let mut outcome: Option<Result<ExecReport, ExecError>> = None;
    let mut confirm_on: Option<super::driver::Driver> = None;
    let mut confirmed_device = false;
    let usable = driver.filter(|_| h.state.lock().alive);
    if let Some(d) = usable {
        let (r, a) = run_steps(reg, h, d, rb.clone());
        alive = a;
        // A session that is up but stuck (its prompt lost, nothing it sends answered) rolls
        // back on a new connection when the guard has one, instead of failing here.
        if a && reopen.is_some() && nothing_ran(&r) {
            let why = report_failure(&r).unwrap_or_default();
            event(
                reg,
                h,
                &format!("the session is stuck ({why}): giving it up for a new connection"),
            );
            h.mark_dead(&format!("stuck when the change guard fired: {why}"));
            alive = false;
        } else if a || reopen.is_none() {
            if a && report_failure(&r).is_none() {
                confirmed_device = confirm_timer_after_rollback(reg, h, d);
            }
            outcome = Some(r);
        }
    }
    if outcome.is_none() {
        if let Some(login) = &reopen {
            event(
                reg,
                h,
                "the session is dead: opening a new connection to roll back",
            );
            let name = format!("guard-{}", h.info.id.get(..8).unwrap_or(&h.info.id));
            match open_driver(&reg.settings, &login.open, name) {
                Ok(o) => {
                    let mut d = o.driver;
                    reopened = true;
                    let (r, a) = run_steps(reg, h, &mut d, rb.clone());
                    if a && report_failure(&r).is_none() {
                        confirmed_device = confirm_timer_after_rollback(reg, h, &mut d);
                    }
                    outcome = Some(r);
                    confirm_on = a.then_some(d);
                }
                Err(e) => {
                    outcome = Some(Err(ExecError::Dead(format!(
                        "the session was dead and opening a new connection failed: {e}"
                    ))));
                }
            }
        }
    }
    if let Some(d) = confirm_on {
        d.close(Instant::now() + CLOSE_DEADLINE);
    }
    drop(reopen);
    let (state, result) = match outcome {
        None => (
            GuardState::RollbackImpossible,
            GuardResult {
                results: Vec::new(),
                failure: Some((
                    "the session's connection is dead and the guard has no reopen credentials"
                        .into(),
                    String::new(),
                    String::new(),
                )),
                reopened,
            },
        ),
        Some(Ok(rep)) => {
            let failed = rep.failure.is_some();
            (
                if failed {
                    GuardState::RollbackFailed
                } else {
                    GuardState::RolledBack
                },
                GuardResult {
                    failure: rep
                        .failure
                        .map(|f| (f.error.to_string(), f.command, f.partial)),
                    results: rep.results,
                    reopened,
                },
            )
        }
        Some(Err(e)) => (
            if reopened || alive {
                GuardState::RollbackFailed
            } else {
                GuardState::RollbackImpossible
            },
            GuardResult {
                results: Vec::new(),
                failure: Some((e.to_string(), String::new(), String::new())),
                reopened,
            },
        ),
    };
    let device_note = {
        let mut g = h.guard.lock();
        match g.as_mut() {
            Some(g) => {
                if let Some(d) = g.device.as_mut() {
                    d.confirmed |= confirmed_device;
                }
                let note = match &g.device {
                    Some(d) if !d.confirmed => format!(
                        "; the device's own revert timer ({} min from {}) is still armed and will restore the configuration",
                        d.minutes,
                        crate::util::iso8601(d.armed_at)
                    ),
                    _ => String::new(),
                };
                g.result = Some(result);
                g.end(state);
                note
            }
            None => String::new(),
        }
    };
    reg.settings.guards.ended(&h.info.id);
    reg.settings.metrics.guard_event(state.name());
    event(
        reg,
        h,
        &format!(
            "{} in {} ms{}{}",
            state.name(),
            started.elapsed().as_millis(),
            if reopened {
                " (on a new connection)"
            } else {
                ""
            },
            device_note
        ),
    );
    alive
}

/// After a rollback that succeeded: stop the device's own timer (the configuration is
/// restored already). Returns whether it was confirmed.
fn confirm_timer_after_rollback(
    reg: &Registry,
    h: &Arc<SessionHandle>,
    d: &mut super::driver::Driver,
) -> bool {
    let pending = h
        .guard
        .lock()
        .as_mut()
        .and_then(|g| g.device.as_mut())
        .is_some_and(|dev| {
            let p = !dev.confirmed;
            dev.confirm_pending = p;
            p
        });
    if !pending {
        return false;
    }
    confirm_device(reg, h, d);
    h.guard
        .lock()
        .as_ref()
        .and_then(|g| g.device.as_ref())
        .is_some_and(|dev| dev.confirmed)
}

/// The session is closing politely (shutdown): roll back or keep an armed guard, as it says.
/// Returns false when the connection died meanwhile.
pub(super) fn at_close(
    reg: &Registry,
    h: &Arc<SessionHandle>,
    driver: Option<&mut super::driver::Driver>,
) -> bool {
    let on_exit = match h.guard.lock().as_mut() {
        Some(g) if g.state == GuardState::Armed => {
            if g.on_broker_exit == OnExit::Rollback {
                g.fired_by = Some("broker exit");
                g.deadline = Instant::now();
            }
            g.on_broker_exit
        }
        _ => return true,
    };
    match on_exit {
        OnExit::Rollback => fire(reg, h, driver),
        OnExit::Keep => {
            let device = h
                .guard
                .lock()
                .as_ref()
                .and_then(|g| g.device.as_ref().map(|d| d.minutes));
            log::warn!(
                "session {} host {}: change guard kept armed at broker exit (on_broker_exit: keep); {}",
                h.info.id,
                h.info.host,
                match device {
                    Some(m) => format!("the device's own revert timer ({m} min) is still armed"),
                    None => "nothing will roll the device back".into(),
                }
            );
            true
        }
    }
}

/// A guard ended (confirmed, disarmed) while its session was dead: confirm the device's timer
/// on a new connection with the guard's reopen login, or say that it could not be.
fn confirm_after_death(reg: &Registry, h: &Arc<SessionHandle>) {
    let (pending, login) = match h.guard.lock().as_mut() {
        Some(g) => (
            g.device.as_ref().is_some_and(|d| d.confirm_pending),
            g.reopen.take(),
        ),
        None => return,
    };
    if !pending {
        return;
    }
    let opened = match &login {
        Some(l) => open_driver(
            &reg.settings,
            &l.open,
            format!("guard-{}", h.info.id.get(..8).unwrap_or(&h.info.id)),
        )
        .map_err(|e| format!("opening a new connection failed: {e}")),
        None => Err("the guard has no reopen login".to_string()),
    };
    drop(login);
    match opened {
        Ok(o) => {
            let mut d = o.driver;
            if confirm_device(reg, h, &mut d) {
                d.close(Instant::now() + CLOSE_DEADLINE);
            }
        }
        Err(why) => {
            let msg = format!(
                "the session is dead and {why}: the device's revert timer was not confirmed and will restore the configuration unless it is confirmed on the device"
            );
            if let Some(d) = h.guard.lock().as_mut().and_then(|g| g.device.as_mut()) {
                d.confirm_pending = false;
                d.confirm_error = Some(msg.clone());
            }
            event(reg, h, &msg);
        }
    }
}

/// The session's connection died with a guard armed: wait for its deadline (or an end asked
/// through the API, or the broker's exit), then roll back on a new connection if the guard
/// has reopen credentials, or report the rollback impossible.
pub(super) fn after_death(
    reg: &Registry,
    h: &Arc<SessionHandle>,
    rx: &crossbeam_channel::Receiver<super::Job>,
) {
    loop {
        let (state, due) = match h.guard.lock().as_ref() {
            Some(g) => (g.state, g.due()),
            None => return,
        };
        if state.ended() {
            confirm_after_death(reg, h);
            return;
        }
        if due {
            fire(reg, h, None);
            return;
        }
        if reg.shutting_down.load(Ordering::SeqCst) {
            at_close(reg, h, None);
            return;
        }
        // Anything queued just before the connection died is answered, never dropped.
        match rx.recv_timeout(next_look(h).min(LOOK * 5)) {
            Ok(super::Job::Exec(job)) => {
                h.busy.store(false, Ordering::SeqCst);
                (job.reply)(Err(ExecError::Dead(
                    "the session's connection is dead; re-open required".into(),
                )));
            }
            Ok(super::Job::Arm(_, reply)) => {
                h.busy.store(false, Ordering::SeqCst);
                reply(Err(GuardError::Dead(
                    "the session's connection is dead; a guard needs a live session".into(),
                )));
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Asked through the API (any thread): the guard's state changes at once, under its lock; what
// must be typed into the device is left to the session thread, which is woken.
// ---------------------------------------------------------------------------------------------

fn wake(h: &SessionHandle) {
    let _ = h.inbox.try_send(super::Job::Wake);
}

/// The guard, if it is armed and has not come due: once its deadline passed or a rollback was
/// asked for, the rollback runs whatever comes next (a late confirm or extend is a 409).
fn armed(g: &mut Option<Guard>) -> Result<&mut Guard, GuardError> {
    match g.as_mut() {
        None => Err(GuardError::NoGuard),
        Some(g) if g.state == GuardState::Armed && (g.due() || g.fired_by.is_some()) => {
            Err(GuardError::Ended(GuardState::Firing.name()))
        }
        Some(g) if g.state == GuardState::Armed => Ok(g),
        Some(g) => Err(GuardError::Ended(g.state.name())),
    }
}

/// `POST .../guard/extend`: a new deadline `timeout` from now.
pub fn extend(reg: &Registry, h: &SessionHandle, timeout: Duration) -> Result<(), GuardError> {
    {
        let mut lock = h.guard.lock();
        let g = armed(&mut lock)?;
        g.deadline = Instant::now() + timeout;
        g.timeout = timeout;
        // Under the guard's lock: a confirm at the same moment cannot be undone by this write.
        reg.settings.guards.armed(&h.info.id, book_entry(h, g));
    }
    reg.settings.metrics.guard_event("extended");
    event(
        reg,
        h,
        &format!("extended: rollback in {} s", timeout.as_secs_f64()),
    );
    Ok(())
}

/// `POST .../guard/confirm` (`Confirmed`) and `DELETE .../guard` (`Disarmed`): the guard ends
/// without a rollback; the device's own timer, if armed, is confirmed by the session thread.
pub fn end(reg: &Registry, h: &SessionHandle, state: GuardState) -> Result<(), GuardError> {
    let device = {
        let mut lock = h.guard.lock();
        let g = armed(&mut lock)?;
        if let Some(d) = g.device.as_mut() {
            d.confirm_pending = true;
        }
        // A dead session confirms the device's timer on a new connection, if it may.
        let reopen = g.reopen.take();
        g.end(state);
        if g.device.is_some() {
            g.reopen = reopen;
        }
        g.device.is_some()
    };
    reg.settings.guards.ended(&h.info.id);
    reg.settings.metrics.guard_event(state.name());
    event(
        reg,
        h,
        &format!(
            "{}{}",
            state.name(),
            if device {
                "; confirming the device's revert timer"
            } else {
                ""
            }
        ),
    );
    if device {
        wake(h);
    }
    Ok(())
}

/// `POST .../guard/rollback`: fire now; `done` is called with the guard once it ended (at
/// once if it already has, with `Err`).
pub fn rollback_now(
    h: &SessionHandle,
    fired_by: &'static str,
    done: Waiter,
) -> Result<(), GuardError> {
    {
        let mut lock = h.guard.lock();
        match lock.as_mut() {
            None => return Err(GuardError::NoGuard),
            Some(g) if g.state == GuardState::Firing => g.waiters.push(done),
            Some(g) if g.state == GuardState::Armed => {
                g.deadline = Instant::now();
                g.fired_by = Some(fired_by);
                g.waiters.push(done);
            }
            Some(g) => return Err(GuardError::Ended(g.state.name())),
        }
    }
    wake(h);
    Ok(())
}

/// `POST .../guard/probe`: the guard's stored login as a probe request (a copy of its
/// credentials for this one connection), with its command, which must succeed.
pub fn stored_probe(
    h: &SessionHandle,
    timeout: Duration,
) -> Result<super::ProbeRequest, GuardError> {
    let mut lock = h.guard.lock();
    let g = armed(&mut lock)?;
    let login = g.probe.as_ref().ok_or(GuardError::NoProbe)?;
    Ok(super::ProbeRequest {
        open: login.open.clone(),
        exec: login.command.as_ref().map(|c| {
            let mut spec = super::ExecSpec::command(c, timeout);
            spec.stop_on_error = true;
            spec
        }),
    })
}

/// Keep a probe's summary on the guard (`last_probe`).
pub fn note_probe(reg: &Registry, h: &SessionHandle, summary: Value, ok: bool) {
    if let Some(g) = h.guard.lock().as_mut() {
        g.last_probe = Some(summary);
    }
    reg.settings
        .metrics
        .guard_event(if ok { "probe_ok" } else { "probe_failed" });
    event(
        reg,
        h,
        if ok {
            "probe: a new login succeeded"
        } else {
            "probe: a new login FAILED"
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(timeout: Duration) -> Guard {
        Guard::new(
            GuardSpec {
                rollback: Rollback::steps(Vec::new(), true, Duration::from_secs(1)),
                timeout,
                device_revert: None,
                probe: None,
                reopen: None,
                on_broker_exit: OnExit::Rollback,
                request_id: None,
            },
            None,
        )
    }

    /// Once the deadline passed (or a rollback was asked for), a late confirm, extend or
    /// disarm is refused: the rollback runs, even if the session thread has not started it.
    #[test]
    fn a_guard_past_its_deadline_cannot_be_confirmed() {
        let mut g = Some(guard(Duration::ZERO));
        assert!(matches!(
            armed(&mut g),
            Err(GuardError::Ended("rolling_back"))
        ));
        let mut g = Some(guard(Duration::from_secs(60)));
        assert!(armed(&mut g).is_ok());
        g.as_mut().unwrap().fired_by = Some("request");
        assert!(matches!(
            armed(&mut g),
            Err(GuardError::Ended("rolling_back"))
        ));
    }
}
