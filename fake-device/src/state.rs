//! What one fake device keeps across its sessions: the running configuration (the lines
//! entered on it), the hostname, the unsaved flag, the committed configurations of the past
//! (for `rollback N`) and the revert timer of a confirmed change. Every session of a device
//! shares one [`DeviceState`] (a second connection sees what the first one configured), and so
//! does the device's handle (`running_config()`).
//!
//! The revert timer: arming it snapshots the running configuration; confirming it drops the
//! snapshot; when it expires, [`DeviceState::tick`] restores the snapshot and journals
//! `<revert>`. The fronts call `tick` on their own clock (the Telnet accept loop, the SSH
//! runtime, the sessions' timers), so the device reverts by itself, connected or not.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{lock, JournalEntry, Log};

/// How many past committed configurations are kept for `rollback N`.
const HISTORY: usize = 49;

/// The journal line of a revert the device did by itself (timer expiry) or on request
/// (`configure revert now`).
pub const REVERT_MARK: &str = "<revert>";

/// The state one fake device keeps across its sessions (see the module documentation).
#[derive(Debug)]
pub struct DeviceState {
    log: Arc<Log>,
    /// How long a device "minute" lasts (`DeviceConfig::minute`).
    minute: Duration,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Vec<String>,
    hostname: String,
    dirty: bool,
    /// Committed configurations before the current one, newest first.
    history: VecDeque<Vec<String>>,
    timer: Option<Timer>,
}

#[derive(Debug)]
struct Timer {
    config: Vec<String>,
    hostname: String,
    deadline: Instant,
    /// The time as given (`5` minutes, `00:05:00`...), for `show` outputs.
    given: String,
    length: Duration,
}

/// The unit of a revert timer's amount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimeUnit {
    Minutes,
    Seconds,
    /// `hh:mm:ss`.
    Hms,
}

impl DeviceState {
    /// A device with no configuration lines yet, `hostname`, journaling into `log`; a device
    /// minute lasts `minute`.
    pub fn new(hostname: &str, minute: Duration, log: Arc<Log>) -> DeviceState {
        DeviceState {
            log,
            minute,
            inner: Mutex::new(Inner {
                config: Vec::new(),
                hostname: hostname.to_string(),
                dirty: false,
                history: VecDeque::new(),
                timer: None,
            }),
        }
    }

    /// The device's journal and inputs.
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    /// The configuration lines entered on the device (and committed, on a commit-model
    /// persona), in order: what `{config}` shows inside the persona's fixed configuration.
    pub fn running_config(&self) -> Vec<String> {
        lock(&self.inner).config.clone()
    }

    /// The hostname now.
    pub fn hostname(&self) -> String {
        lock(&self.inner).hostname.clone()
    }

    /// Time left before the revert timer expires (`None`: no timer runs).
    pub fn revert_timer(&self) -> Option<Duration> {
        lock(&self.inner)
            .timer
            .as_ref()
            .map(|t| t.deadline.saturating_duration_since(Instant::now()))
    }

    /// When [`DeviceState::tick`] has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        lock(&self.inner).timer.as_ref().map(|t| t.deadline)
    }

    /// Time passed: an expired revert timer restores its snapshot (journaled as `<revert>`).
    /// True if it did.
    pub fn tick(&self, now: Instant) -> bool {
        let mut g = lock(&self.inner);
        if g.timer.as_ref().is_some_and(|t| now >= t.deadline) {
            Self::restore(&mut g);
            drop(g);
            self.journal_revert();
            return true;
        }
        false
    }

    fn restore(g: &mut Inner) {
        if let Some(t) = g.timer.take() {
            g.config = t.config;
            g.hostname = t.hostname;
            g.dirty = true;
        }
    }

    fn journal_revert(&self) {
        self.log.journal_push(JournalEntry {
            mode: String::new(),
            line: REVERT_MARK.to_string(),
        });
    }

    // ----- for the engine ----------------------------------------------------------------

    pub(crate) fn set_hostname(&self, h: String) {
        lock(&self.inner).hostname = h;
    }

    pub(crate) fn dirty(&self) -> bool {
        lock(&self.inner).dirty
    }

    pub(crate) fn set_dirty(&self, d: bool) {
        lock(&self.inner).dirty = d;
    }

    /// Apply config lines as an IOS-style CLI does: `no <line>` removes that line (at the same
    /// indent) and the lines indented under it; any other line, and a `no` line that removes
    /// nothing (` no shutdown`), is added.
    pub(crate) fn push_config(&self, lines: Vec<String>) {
        let mut g = lock(&self.inner);
        for line in lines {
            let indent = line.len() - line.trim_start().len();
            let what = line.trim_start().strip_prefix("no ").map(str::trim);
            let found = what.and_then(|what| {
                g.config
                    .iter()
                    .position(|l| l.len() - l.trim_start().len() == indent && l.trim() == what)
            });
            if let Some(i) = found {
                let mut end = i + 1;
                while end < g.config.len()
                    && g.config[end].len() - g.config[end].trim_start().len() > indent
                {
                    end += 1;
                }
                g.config.drain(i..end);
            } else {
                g.config.push(line);
            }
        }
        g.dirty = true;
    }

    /// Whether a running-config line matches `re`.
    pub(crate) fn has_line(&self, re: &regex::Regex) -> bool {
        lock(&self.inner).config.iter().any(|l| re.is_match(l))
    }

    /// A commit: the running config becomes `base` (or stays) plus `lines`; the old one goes
    /// to the history.
    pub(crate) fn commit(&self, base: Option<Vec<String>>, lines: Vec<String>) {
        let mut g = lock(&self.inner);
        let old = g.config.clone();
        let mut new = base.unwrap_or_else(|| old.clone());
        new.extend(lines);
        g.history.push_front(old);
        g.history.truncate(HISTORY);
        g.config = new;
        g.dirty = false;
    }

    /// The committed configuration `n` commits ago (`1`: the one before the current).
    pub(crate) fn history(&self, n: usize) -> Option<Vec<String>> {
        let g = lock(&self.inner);
        match n {
            0 => Some(g.config.clone()),
            _ => g.history.get(n - 1).cloned(),
        }
    }

    pub(crate) fn timer_running(&self) -> bool {
        lock(&self.inner).timer.is_some()
    }

    /// The length of `amount` in `unit`, in device time (`None`: not a valid amount).
    pub(crate) fn duration(&self, amount: &str, unit: TimeUnit) -> Option<Duration> {
        let secs = match unit {
            TimeUnit::Minutes => amount.trim().parse::<u64>().ok()?.checked_mul(60)?,
            TimeUnit::Seconds => amount.trim().parse::<u64>().ok()?,
            TimeUnit::Hms => {
                let mut s = 0u64;
                for part in amount.trim().split(':') {
                    s = s.checked_mul(60)?.checked_add(part.parse::<u64>().ok()?)?;
                }
                s
            }
        };
        Some(self.minute.mul_f64(secs as f64 / 60.0))
    }

    /// Arms the revert timer: snapshots the running config unless a timer runs already (which
    /// is then only restarted).
    pub(crate) fn arm(&self, given: &str, length: Duration) {
        let mut g = lock(&self.inner);
        let deadline = Instant::now() + length;
        match g.timer.as_mut() {
            Some(t) => {
                t.deadline = deadline;
                t.given = given.to_string();
                t.length = length;
            }
            None => {
                g.timer = Some(Timer {
                    config: g.config.clone(),
                    hostname: g.hostname.clone(),
                    deadline,
                    given: given.to_string(),
                    length,
                })
            }
        }
    }

    /// Restarts a running timer with a new length; false if none runs.
    pub(crate) fn reset(&self, given: &str, length: Duration) -> bool {
        let mut g = lock(&self.inner);
        match g.timer.as_mut() {
            Some(t) => {
                t.deadline = Instant::now() + length;
                t.given = given.to_string();
                t.length = length;
                true
            }
            None => false,
        }
    }

    /// Confirms the change: the timer stops, the changes stay.
    pub(crate) fn confirm(&self) {
        lock(&self.inner).timer = None;
    }

    /// Restores the snapshot now (journaled as `<revert>`); false if no timer ran.
    pub(crate) fn revert_now(&self) -> bool {
        let mut g = lock(&self.inner);
        if g.timer.is_none() {
            return false;
        }
        Self::restore(&mut g);
        drop(g);
        self.journal_revert();
        true
    }

    /// `(as given, whole device minutes configured, whole device seconds left)` of the
    /// running timer.
    pub(crate) fn timer_info(&self) -> Option<(String, u64, u64)> {
        let g = lock(&self.inner);
        let t = g.timer.as_ref()?;
        let sec = self.minute.as_secs_f64() / 60.0;
        let left = t.deadline.saturating_duration_since(Instant::now());
        let minutes = (t.length.as_secs_f64() / self.minute.as_secs_f64()).round() as u64;
        let left = (left.as_secs_f64() / sec).ceil() as u64;
        Some((t.given.clone(), minutes, left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_snapshots_restores_and_journals() {
        let log = Arc::new(Log::default());
        let s = DeviceState::new("R1", Duration::from_millis(600), Arc::clone(&log));
        s.push_config(vec!["a".into()]);
        let d = s.duration("1", TimeUnit::Minutes).unwrap();
        assert_eq!(d, Duration::from_millis(600));
        assert_eq!(
            s.duration("00:01:30", TimeUnit::Hms),
            Some(Duration::from_millis(900))
        );
        assert_eq!(
            s.duration("30", TimeUnit::Seconds),
            Some(Duration::from_millis(300))
        );
        s.arm("1", d);
        s.push_config(vec!["b".into()]);
        s.set_hostname("X".into());
        // Re-arming keeps the first snapshot.
        s.arm("1", d);
        assert!(!s.tick(Instant::now()));
        assert!(s.tick(Instant::now() + Duration::from_secs(1)));
        assert_eq!(s.running_config(), vec!["a".to_string()]);
        assert_eq!(s.hostname(), "R1");
        assert_eq!(log.journal(), vec![REVERT_MARK.to_string()]);
        assert!(s.revert_timer().is_none());
    }
}
