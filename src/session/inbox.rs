//! A session's inbox: a bounded channel of jobs, and a wake-up that every send gives the session
//! thread, so that the idle thread blocks in one `ppoll` on its device's connection and wakes
//! for nothing else but a job, the device sending something (or closing, or failing), its own
//! keepalive or its change guard's next look.
//!
//! The wake-up is a signal sent to the session's own thread (`tgkill`), not a descriptor: a
//! session costs one descriptor (its socket), so 10,000 sessions fit a 20,000-descriptor limit.
//! The thread blocks the signal all the time except inside its `ppoll`, which unblocks it
//! atomically: a wake-up sent before the thread reached `ppoll` stays pending and ends the
//! `ppoll` at once, so none is lost. The handler does nothing; `ppoll` returns `EINTR`.

use super::Job;
use crossbeam_channel::{Sender, TrySendError};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The wake-up signal. SIGUSR2 has no other use in the broker; a process-directed one (from
/// `kill`) runs the empty handler on some thread and is otherwise ignored.
const WAKE: libc::c_int = libc::SIGUSR2;

/// The sending side, on the session's handle.
pub(super) struct Inbox {
    tx: Sender<Job>,
    pub wake: Arc<Wake>,
}

impl Inbox {
    pub fn new(tx: Sender<Job>) -> Inbox {
        Inbox {
            tx,
            wake: Arc::new(Wake {
                tid: AtomicI32::new(0),
            }),
        }
    }

    /// Queue `job` and wake the session thread. A refusal hands the job back (as crossbeam's
    /// own `try_send` does), so the caller can answer its reply.
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, job: Job) -> Result<(), TrySendError<Job>> {
        self.tx.try_send(job)?;
        self.wake.signal();
        Ok(())
    }
}

/// Which thread to wake: its kernel thread id while it serves the session, else 0.
pub(super) struct Wake {
    tid: AtomicI32,
}

extern "C" fn on_wake(_: libc::c_int) {}

impl Wake {
    /// Called by the session thread before it first looks at its inbox: from now on sends wake
    /// it. The wake-up signal is blocked on this thread except inside [`wait`]. The returned
    /// guard forgets the thread when it is dropped (when the thread stops serving).
    pub fn attach(self: &Arc<Self>) -> Attached {
        static HANDLER: std::sync::Once = std::sync::Once::new();
        HANDLER.call_once(|| {
            // SAFETY: a zeroed sigaction with an empty mask and a handler that does nothing
            // (async-signal-safe); SA_RESTART so that any other call it interrupts is restarted.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_wake as extern "C" fn(libc::c_int) as libc::sighandler_t;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(WAKE, &sa, std::ptr::null_mut());
            }
        });
        // SAFETY: sigset operations on a set on the stack; pthread_sigmask changes only this
        // thread's mask.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, WAKE);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        // The mask `wait` installs for its ppoll: this thread's, without the wake-up signal
        // (read once here, not at every wait).
        // SAFETY: reads this thread's mask into a set on the stack.
        let wait_mask = unsafe {
            let mut mask: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask);
            libc::sigdelset(&mut mask, WAKE);
            mask
        };
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        self.tid.store(tid, Ordering::SeqCst);
        Attached {
            wake: self.clone(),
            wait_mask,
        }
    }

    fn signal(&self) {
        let tid = self.tid.load(Ordering::SeqCst);
        if tid == 0 {
            // Not serving yet (it looks at its inbox before it first waits) or any more.
            return;
        }
        // The process id once: glibc makes getpid a system call each time, and this runs on
        // every exec.
        static PID: std::sync::OnceLock<libc::pid_t> = std::sync::OnceLock::new();
        // SAFETY: getpid has no preconditions.
        let pid = *PID.get_or_init(|| unsafe { libc::getpid() });
        // SAFETY: tgkill sends to a thread of this process only (the thread group is ours); a
        // thread that has just ended gives ESRCH, which is ignored.
        unsafe {
            libc::syscall(libc::SYS_tgkill, pid, tid, WAKE);
        }
    }
}

/// The attached session thread's side: the mask its waits use; forgets the thread when dropped.
pub(super) struct Attached {
    wake: Arc<Wake>,
    wait_mask: libc::sigset_t,
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.wake.tid.store(0, Ordering::SeqCst);
    }
}

/// What ended a [`wait`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Woke {
    /// A send woke it (or another signal did: the caller looks at the inbox either way).
    Inbox,
    /// The device's connection is readable, closed or failed.
    Device,
    /// The timeout passed.
    Timeout,
}

/// Block until a send wakes this (attached) thread, `device` (if given) is readable or in
/// error, or `timeout` passes (the caller's wait is always finite: its guard looks at least
/// hourly).
pub(super) fn wait(on: &Attached, device: Option<RawFd>, timeout: Duration) -> Woke {
    let mut fd = libc::pollfd {
        fd: device.unwrap_or(-1),
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: one pollfd (fd -1 is ignored by the kernel), a timespec on the stack, and the
    // attached thread's mask without the wake-up signal, which ppoll installs for the wait only.
    let rc = unsafe { libc::ppoll(&mut fd, 1, &ts, &on.wait_mask) };
    if rc < 0 {
        // EINTR: the wake-up (or another signal); anything else: look again.
        return Woke::Inbox;
    }
    if rc > 0 && device.is_some() && fd.revents != 0 {
        return Woke::Device;
    }
    Woke::Timeout
}
