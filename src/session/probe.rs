//! Probes: log in on a new connection, reach the prompt, optionally run an exec through the
//! same path as a session's (`exec_on`: command policy preflight, run, command log), close
//! politely. A probe is never a session: it is not registered, not listed and not counted in
//! max_sessions; at most [`MAX_PROBES`] run at once through [`Registry::probe`].

use super::{
    exec_on, open_driver, ExecCtx, ExecError, ExecReport, ExecSpec, OpenError, OpenRequest, Opened,
    Registry, Settings, CLOSE_DEADLINE, SESSION_STACK,
};
use crate::policy::HostKeySeen;
use crate::util::random_id;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most probes running at once (their own cap: probes are not sessions and take no
/// max_sessions slot).
pub const MAX_PROBES: usize = 8;

/// A probe: the open, and what to run once at the prompt (nothing: a login check).
pub struct ProbeRequest {
    pub open: OpenRequest,
    pub exec: Option<ExecSpec>,
}

/// What the login found.
#[derive(Debug, Clone)]
pub struct ProbeLogin {
    /// The prompt's base (the hostname part, as the platform learned it).
    pub prompt: String,
    /// The CLI mode the login ended in (`enable`, `user`, ...).
    pub mode: String,
    pub negotiated: String,
    pub host_key: Option<HostKeySeen>,
    /// From the start until the prompt was found.
    pub login_time: Duration,
}

/// How a probe went. `login` is what `POST /session` would have got from the device; `exec` is
/// what `POST /session/{id}/exec` would have got (None: nothing asked, or the login failed).
pub struct ProbeOutcome {
    /// `probe-xxxxxxxx`: the name of its thread, its id in the log and the command log.
    pub id: String,
    pub login: Result<ProbeLogin, OpenError>,
    pub exec: Option<Result<ExecReport, ExecError>>,
    /// Login, exec and close.
    pub elapsed: Duration,
}

/// How a probe started by [`Registry::probe`] is answered: its outcome, or why it did not run
/// (the broker is shutting down, [`MAX_PROBES`] running, no thread).
pub type ProbeReply = Box<dyn FnOnce(Result<ProbeOutcome, OpenError>) + Send>;

fn new_id() -> Result<String, OpenError> {
    random_id()
        .map(|r| format!("probe-{}", r.get(..8).unwrap_or(&r)))
        .map_err(OpenError::NoRandomness)
}

/// Run a probe on the calling thread, blocking: the login runs on a short-lived thread named
/// after the probe, the exec (if any) and the close on the caller's. Nothing is left behind:
/// the connection is closed (politely when it is still up) before this returns. No cap applies
/// here (the caller bounds its own probes).
pub fn probe(settings: &Settings, req: ProbeRequest) -> ProbeOutcome {
    let started = Instant::now();
    match new_id() {
        Ok(id) => probe_as(settings, id, req),
        Err(e) => ProbeOutcome {
            id: "probe".into(),
            login: Err(e),
            exec: None,
            elapsed: started.elapsed(),
        },
    }
}

fn probe_as(settings: &Settings, id: String, req: ProbeRequest) -> ProbeOutcome {
    let started = Instant::now();
    let ProbeRequest { open, exec } = req;
    let _scope = crate::observe::logging::RequestScope::enter(
        open.caller.as_ref().map(|c| c.request_id.clone()),
    );
    let opened = open_driver(settings, &open, id.clone());
    let host = open.host.clone();
    // Credentials are not needed any more (Secret zeroes its memory on drop).
    drop(open);
    let Opened {
        mut driver,
        negotiated,
        host_key,
        ..
    } = match opened {
        Ok(o) => o,
        Err(e) => {
            log::info!(
                "{id} host {host}: login failed after {} ms: {e}",
                started.elapsed().as_millis()
            );
            return ProbeOutcome {
                id,
                login: Err(e),
                exec: None,
                elapsed: started.elapsed(),
            };
        }
    };
    let login_time = started.elapsed();
    let cancel = AtomicBool::new(false);
    let mut alive = true;
    let exec = exec.map(|spec| {
        let caller = spec.caller.clone();
        let ctx = ExecCtx {
            id: &id,
            host: &host,
            cancel: &cancel,
            handle: None,
            by: spec.by,
            caller: caller.as_deref(),
        };
        let (r, up) = exec_on(settings, &ctx, &mut driver, spec);
        alive = up;
        r
    });
    let login = ProbeLogin {
        prompt: driver.prompt_base().to_string(),
        mode: driver.mode.clone(),
        negotiated,
        host_key,
        login_time,
    };
    // A dead connection is only dropped; a live one is logged out of.
    if alive {
        driver.close(Instant::now() + CLOSE_DEADLINE);
    } else {
        drop(driver);
    }
    log::info!(
        "{id} host {host}: logged in in {} ms, done in {} ms",
        login_time.as_millis(),
        started.elapsed().as_millis()
    );
    ProbeOutcome {
        id,
        login: Ok(login),
        exec,
        elapsed: started.elapsed(),
    }
}

/// Gives back a probe slot when the probe ends (or unwinds).
struct ProbeSlot(Arc<Registry>);

impl Drop for ProbeSlot {
    fn drop(&mut self) {
        self.0.probing.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Registry {
    /// Start a probe on its own thread (`probe-xxxxxxxx`, joined at shutdown like a session's);
    /// `reply` is called from that thread once the connection is closed. Refusals (shutting
    /// down, [`MAX_PROBES`] running) are answered at once.
    pub fn probe(self: &Arc<Self>, req: ProbeRequest, reply: ProbeReply) {
        if self.shutting_down.load(Ordering::SeqCst) {
            return reply(Err(OpenError::ShuttingDown));
        }
        if self.probing.fetch_add(1, Ordering::SeqCst) >= MAX_PROBES {
            self.probing.fetch_sub(1, Ordering::SeqCst);
            return reply(Err(OpenError::ProbeLimit { max: MAX_PROBES }));
        }
        let slot = ProbeSlot(self.clone());
        let id = match new_id() {
            Ok(id) => id,
            Err(e) => return reply(Err(e)),
        };
        let reg = self.clone();
        let once = Arc::new(parking_lot::Mutex::new(Some((reply, req))));
        let once2 = once.clone();
        let spawned = std::thread::Builder::new()
            .name(id.clone())
            .stack_size(SESSION_STACK)
            .spawn(move || {
                let _slot = slot;
                let taken = once2.lock().take();
                if let Some((reply, req)) = taken {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        probe_as(&reg.settings, id, req)
                    }));
                    match r {
                        Ok(outcome) => reply(Ok(outcome)),
                        Err(_) => {
                            log::error!("a probe thread panicked");
                            reply(Err(OpenError::Panicked))
                        }
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
                // The closure (and the slot in it) was dropped with the failed spawn.
                if let Some((reply, _)) = once.lock().take() {
                    reply(Err(OpenError::SessionThread(e)));
                }
            }
        }
    }

    /// Probes running now.
    pub fn probes(&self) -> usize {
        self.probing.load(Ordering::SeqCst)
    }

    /// The settings a blocking [`probe`] needs.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}
