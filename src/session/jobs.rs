//! Every exec is a job: an id, a state, what it produced so far (the results of the commands
//! that finished, the live output of the one running) and, once it ended, the exact answer a
//! synchronous exec gave. Jobs are kept per session for `job_retention`, bounded in count and
//! bytes; an idempotency key maps a retried request to the job it already started.
//!
//! The session thread writes a job's progress (through [`ExecCtx`](super::ExecCtx)); HTTP
//! threads read it, wait for its end (bounded long-poll) or ask it to stop (`cancel`).

use super::driver::CmdResult;
use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Finished jobs kept per session, at most.
pub const MAX_JOBS: usize = 100;
/// Bytes of finished jobs' answers kept per session, at most.
pub const MAX_JOB_BYTES: usize = 64 << 20;
/// Live output kept per job while it runs (the newest bytes; older ones are counted, not kept).
pub const STREAM_KEEP: usize = 1 << 20;
/// Live output kept once the job ended (its answer holds the whole output).
pub const STREAM_KEEP_ENDED: usize = 64 << 10;
/// Ids of dropped jobs remembered (answered 410 with why).
const GONE_KEEP: usize = 256;
/// The tail of the running command's output shown in a job's status.
pub const CURRENT_TAIL: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn name(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
    pub fn ended(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }
}

/// The exact answer of the job's exec: its HTTP status and JSON body.
pub struct Answer {
    pub status: u16,
    pub body: Arc<Vec<u8>>,
}

/// The command running now.
pub struct Current {
    pub command: String,
    pub started: Instant,
    /// Bytes received for it so far.
    pub bytes: u64,
    /// The newest of them (at most [`CURRENT_TAIL`]).
    pub tail: VecDeque<u8>,
}

/// The job's output as it arrived, every command after the other: the newest
/// [`STREAM_KEEP`] bytes, and the offset of the first one kept.
#[derive(Default)]
pub struct Stream {
    pub base: u64,
    pub bytes: VecDeque<u8>,
}

impl Stream {
    fn push(&mut self, data: &[u8]) {
        self.bytes
            .extend(data.iter().copied().filter(|b| *b != b'\r'));
        if self.bytes.len() > STREAM_KEEP {
            let cut = self.bytes.len() - STREAM_KEEP;
            self.bytes.drain(..cut);
            self.base += cut as u64;
        }
    }
    /// The end offset of everything received.
    pub fn end(&self) -> u64 {
        self.base + self.bytes.len() as u64
    }
    /// Bytes from `from` (clamped to what is kept), at most `max`; and the offset they start at.
    pub fn from(&self, from: u64, max: usize) -> (u64, Vec<u8>) {
        let start = from.clamp(self.base, self.end());
        let skip = (start - self.base) as usize;
        (
            start,
            self.bytes.iter().skip(skip).take(max).copied().collect(),
        )
    }
}

pub struct JobInner {
    pub state: JobState,
    pub started_at: Option<SystemTime>,
    pub started: Option<Instant>,
    pub finished_at: Option<SystemTime>,
    pub elapsed: Option<Duration>,
    /// Commands that finished (while it runs; the answer holds them once it ended).
    pub results: Vec<CmdResult>,
    pub current: Option<Current>,
    pub stream: Stream,
    pub answer: Option<Answer>,
    /// Why it failed or was cancelled, in one line.
    pub detail: Option<String>,
}

/// One exec, from the request to its answer.
pub struct JobRecord {
    pub id: String,
    pub key: Option<String>,
    body_hash: [u8; 32],
    pub created_at: SystemTime,
    created: Instant,
    /// The whole job's deadline (`job_timeout`), if any.
    pub timeout: Option<Duration>,
    pub inner: Mutex<JobInner>,
    /// Asked to stop (DELETE .../jobs/{id}).
    pub cancel: AtomicBool,
    ended: Condvar,
}

impl JobRecord {
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }
    /// Past its own deadline.
    pub fn timed_out(&self) -> bool {
        let i = self.inner.lock();
        match (self.timeout, i.started) {
            (Some(t), Some(s)) => s.elapsed() >= t,
            _ => false,
        }
    }
    pub fn state(&self) -> JobState {
        self.inner.lock().state
    }

    /// The session thread starts it.
    pub fn start(&self) {
        let mut i = self.inner.lock();
        i.state = JobState::Running;
        i.started_at = Some(SystemTime::now());
        i.started = Some(Instant::now());
    }
    /// A command starts.
    pub fn command_started(&self, command: &str) {
        self.inner.lock().current = Some(Current {
            command: command.to_string(),
            started: Instant::now(),
            bytes: 0,
            tail: VecDeque::new(),
        });
    }
    /// Bytes of the running command arrive.
    pub fn output(&self, data: &[u8]) {
        let mut i = self.inner.lock();
        i.stream.push(data);
        if let Some(c) = i.current.as_mut() {
            c.bytes += data.len() as u64;
            c.tail.extend(data.iter().copied().filter(|b| *b != b'\r'));
            if c.tail.len() > CURRENT_TAIL {
                let cut = c.tail.len() - CURRENT_TAIL;
                c.tail.drain(..cut);
            }
        }
    }
    /// A command finished (kept without its output, which the answer and the live output
    /// hold: a job never keeps a second copy of a large output).
    pub fn command_done(&self, r: &CmdResult) {
        let mut i = self.inner.lock();
        i.current = None;
        i.results.push(CmdResult {
            output: String::new(),
            ..r.clone_without_output()
        });
    }
    /// The job ended with this answer.
    pub fn finish(&self, state: JobState, detail: Option<String>, answer: Answer) {
        {
            let mut i = self.inner.lock();
            i.state = state;
            i.finished_at = Some(SystemTime::now());
            i.elapsed = Some(i.started.unwrap_or(self.created).elapsed());
            i.current = None;
            i.results = Vec::new();
            i.detail = detail;
            i.answer = Some(answer);
            let s = &mut i.stream;
            if s.bytes.len() > STREAM_KEEP_ENDED {
                let cut = s.bytes.len() - STREAM_KEEP_ENDED;
                s.bytes.drain(..cut);
                s.bytes.shrink_to_fit();
                s.base += cut as u64;
            }
        }
        self.ended.notify_all();
    }
    /// Wait until it ended, at most `wait`. Returns whether it has.
    pub fn wait(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut i = self.inner.lock();
        while !i.state.ended() {
            if self.ended.wait_until(&mut i, deadline).timed_out() {
                break;
            }
        }
        i.state.ended()
    }
    /// Bytes it holds (its answer and live output), for the per-session cap.
    fn size(&self) -> usize {
        let i = self.inner.lock();
        i.answer.as_ref().map_or(0, |a| a.body.len()) + i.stream.bytes.len()
    }
    fn finished_for(&self) -> Option<Duration> {
        let i = self.inner.lock();
        i.state.ended().then(|| {
            i.finished_at
                .and_then(|t| t.elapsed().ok())
                .unwrap_or_default()
        })
    }
}

/// What looking a job up found.
pub enum Lookup {
    Found(Arc<JobRecord>),
    /// Dropped: why (retention, the per-session caps).
    Gone(String),
    NotFound,
}

/// A retried request with an idempotency key.
pub enum Retry {
    /// The first request's job.
    Same(Arc<JobRecord>),
    /// The key was used with another body.
    Conflict,
}

/// A session's jobs, newest last.
#[derive(Default)]
pub struct Jobs {
    list: VecDeque<Arc<JobRecord>>,
    keys: HashMap<String, Arc<JobRecord>>,
    gone: VecDeque<(String, String)>,
}

impl Jobs {
    /// A retried request: the job its key started (same body), or a conflict.
    pub fn retry(&self, key: &str, body_hash: &[u8; 32]) -> Option<Retry> {
        let j = self.keys.get(key)?;
        Some(if &j.body_hash == body_hash {
            Retry::Same(j.clone())
        } else {
            Retry::Conflict
        })
    }

    /// A new queued job (the caller has checked its key).
    pub fn create(
        &mut self,
        id: String,
        key: Option<String>,
        body_hash: [u8; 32],
        timeout: Option<Duration>,
        retention: Duration,
    ) -> Arc<JobRecord> {
        self.sweep(retention);
        let j = Arc::new(JobRecord {
            id,
            key: key.clone(),
            body_hash,
            created_at: SystemTime::now(),
            created: Instant::now(),
            timeout,
            inner: Mutex::new(JobInner {
                state: JobState::Queued,
                started_at: None,
                started: None,
                finished_at: None,
                elapsed: None,
                results: Vec::new(),
                current: None,
                stream: Stream::default(),
                answer: None,
                detail: None,
            }),
            cancel: AtomicBool::new(false),
            ended: Condvar::new(),
        });
        if let Some(k) = key {
            self.keys.insert(k, j.clone());
        }
        self.list.push_back(j.clone());
        j
    }

    /// Forget a job that never ran (refused before it started: busy, dead session), so its
    /// idempotency key is free again.
    pub fn forget(&mut self, id: &str) {
        self.list.retain(|j| j.id != id);
        self.keys.retain(|_, j| j.id != id);
    }

    pub fn get(&self, id: &str) -> Lookup {
        if let Some(j) = self.list.iter().find(|j| j.id == id) {
            return Lookup::Found(j.clone());
        }
        match self.gone.iter().find(|(g, _)| g == id) {
            Some((_, why)) => Lookup::Gone(why.clone()),
            None => Lookup::NotFound,
        }
    }

    /// The newest jobs first.
    pub fn list(&self) -> Vec<Arc<JobRecord>> {
        self.list.iter().rev().cloned().collect()
    }

    /// Drop finished jobs older than `retention`, then the oldest finished ones while more
    /// than [`MAX_JOBS`] or [`MAX_JOB_BYTES`] are kept. Running and queued jobs stay.
    pub fn sweep(&mut self, retention: Duration) {
        let mut drop_ids: Vec<(String, String)> = Vec::new();
        for j in &self.list {
            if j.finished_for().is_some_and(|f| f > retention) {
                drop_ids.push((
                    j.id.clone(),
                    format!(
                        "the job's result was kept for job_retention ({} s) and dropped",
                        retention.as_secs()
                    ),
                ));
            }
        }
        self.drop_all(&drop_ids);
        let mut total: usize = self.list.iter().map(|j| j.size()).sum();
        let mut count = self.list.len();
        let mut extra = Vec::new();
        for j in &self.list {
            if count <= MAX_JOBS && total <= MAX_JOB_BYTES {
                break;
            }
            if j.finished_for().is_some() {
                count -= 1;
                total = total.saturating_sub(j.size());
                extra.push((
                    j.id.clone(),
                    format!(
                        "the job's result was dropped to keep at most {MAX_JOBS} jobs and {} MiB of results per session",
                        MAX_JOB_BYTES >> 20
                    ),
                ));
            }
        }
        self.drop_all(&extra);
    }

    fn drop_all(&mut self, ids: &[(String, String)]) {
        if ids.is_empty() {
            return;
        }
        self.list.retain(|j| !ids.iter().any(|(i, _)| *i == j.id));
        self.keys
            .retain(|_, j| !ids.iter().any(|(i, _)| *i == j.id));
        for g in ids {
            self.gone.push_back(g.clone());
        }
        while self.gone.len() > GONE_KEEP {
            self.gone.pop_front();
        }
    }

    /// Bytes held by this session's jobs.
    pub fn bytes(&self) -> usize {
        self.list.iter().map(|j| j.size()).sum()
    }
}
