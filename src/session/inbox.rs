//! A session's inbox: a bounded channel of jobs and an eventfd that every send signals, so that
//! the idle session thread blocks in one `poll` on its inbox and its device's connection
//! together, and wakes for nothing else: a job, the device sending something (or closing, or
//! failing), its own keepalive or its change guard's next look.

use super::Job;
use crossbeam_channel::{Sender, TrySendError};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

/// The sending side, on the session's handle.
pub(super) struct Inbox {
    tx: Sender<Job>,
    /// None when no eventfd could be made (out of descriptors): the thread then wakes on a timer.
    pub wake: Option<Arc<Wake>>,
}

impl Inbox {
    pub fn new(tx: Sender<Job>) -> Inbox {
        let wake = match Wake::new() {
            Ok(w) => Some(Arc::new(w)),
            Err(e) => {
                log::warn!(
                    "no eventfd for a session's inbox ({e}); it checks its connection on a timer"
                );
                None
            }
        };
        Inbox { tx, wake }
    }

    /// Queue `job` and wake the session thread. A refusal hands the job back (as crossbeam's
    /// own `try_send` does), so the caller can answer its reply.
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, job: Job) -> Result<(), TrySendError<Job>> {
        self.tx.try_send(job)?;
        if let Some(w) = &self.wake {
            w.signal();
        }
        Ok(())
    }
}

/// An eventfd: written by senders, read (reset) by the session thread.
pub(super) struct Wake {
    fd: OwnedFd,
}

impl Wake {
    fn new() -> std::io::Result<Wake> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by eventfd and is owned by nobody else.
        Ok(Wake {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a u64 on the stack to our own eventfd. It cannot block
        // (EFD_NONBLOCK); a full counter (EAGAIN) means the thread has a wake-up pending anyway.
        unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                &one as *const u64 as *const libc::c_void,
                8,
            );
        }
    }

    /// Reset the counter (the jobs are read from the channel, not from here).
    fn drain(&self) {
        let mut n: u64 = 0;
        // SAFETY: reads at most 8 bytes into a u64 on the stack; non-blocking.
        unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                &mut n as *mut u64 as *mut libc::c_void,
                8,
            );
        }
    }
}

/// What ended a [`wait`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Woke {
    Inbox,
    /// The device's connection is readable, closed or failed.
    Device,
    /// The timeout passed (or a signal interrupted the wait: the caller looks again).
    Timeout,
}

/// Block until the inbox is signalled, `device` (if given) is readable or in error, or
/// `timeout` passes (None: no timeout).
pub(super) fn wait(wake: &Wake, device: Option<RawFd>, timeout: Option<Duration>) -> Woke {
    let mut fds = [
        libc::pollfd {
            fd: wake.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: device.unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let n = if device.is_some() { 2 } else { 1 };
    let ms = match timeout {
        None => -1,
        // Rounded up: a wake-up a little early would only poll again.
        Some(t) => t.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int,
    };
    // SAFETY: fds is a valid array of `n` pollfds on the stack.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), n as libc::nfds_t, ms) };
    if rc <= 0 {
        return Woke::Timeout;
    }
    if fds[0].revents != 0 {
        wake.drain();
        return Woke::Inbox;
    }
    if n == 2 && fds[1].revents != 0 {
        return Woke::Device;
    }
    Woke::Timeout
}
