//! The socket side: one acceptor thread, one capped thread per connection, deadlines on every
//! read and write, per-client caps, and the handler's answer written back.

use super::framing::{find_head_end, has_token, header, parse_head, reason, ChunkedBody, Head};
use super::{Finish, Handler, Limits, Request, Responder, Response};
use crate::api::error::Error;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

struct Shared {
    limits: Limits,
    /// How long in-flight requests may still be answered after shutdown began.
    grace: Duration,
    /// Shared with every request's [`Wire`] (a responder queued with a session holds no
    /// reference to the server itself).
    shutdown: Arc<AtomicBool>,
    active: AtomicUsize,
    /// Open connections per client address (entries at zero are removed).
    per_client: Mutex<HashMap<IpAddr, usize>>,
    next_conn: AtomicU64,
    /// Live connection sockets, to unblock them at shutdown.
    conns: Mutex<HashMap<u64, Arc<TcpStream>>>,
    conn_threads: Mutex<Vec<JoinHandle<()>>>,
    handler: Arc<dyn Handler>,
}

pub struct HttpServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// Room for the handler too (JSON nesting is cut at depth 128 by serde_json).
const CONN_STACK: usize = 512 << 10;
/// How long requests in flight at shutdown may still be answered normally.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

impl HttpServer {
    pub fn start(
        listener: TcpListener,
        limits: Limits,
        handler: Arc<dyn Handler>,
    ) -> io::Result<HttpServer> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            limits,
            grace: SHUTDOWN_GRACE,
            shutdown: Arc::new(AtomicBool::new(false)),
            active: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            conn_threads: Mutex::new(Vec::new()),
            handler,
        });
        let acc_shared = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name("http-accept".into())
            .spawn(move || accept_loop(listener, acc_shared))?;
        Ok(HttpServer {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn active_connections(&self) -> usize {
        self.shared.active.load(Ordering::Relaxed)
    }

    /// Stop accepting; give in-flight requests [`SHUTDOWN_GRACE`] to be answered (after that
    /// they are answered 503); close idle connections; join every thread that finished.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.shared.shutdown.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake the acceptor blocked in accept().
        let _ = TcpStream::connect_timeout(&wake_addr(self.addr), Duration::from_millis(500));
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        // Unblock connections waiting for a request; those writing a response finish it.
        for s in self.shared.conns.lock().values() {
            let _ = s.shutdown(Shutdown::Read);
        }
        // Connection threads answer 503 themselves once the grace has passed (wait_response);
        // allow them a moment beyond it to write that answer.
        let deadline = Instant::now() + self.shared.grace + Duration::from_millis(750);
        while self.shared.active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::park_timeout(Duration::from_millis(20));
        }
        for s in self.shared.conns.lock().values() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let handles: Vec<_> = std::mem::take(&mut *self.shared.conn_threads.lock());
        for h in handles {
            if h.is_finished() || self.shared.active.load(Ordering::SeqCst) == 0 {
                let _ = h.join();
            }
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let mut a = addr;
    if a.ip().is_unspecified() {
        a.set_ip(if a.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    a
}

/// Run the handler; a panic is logged and the dropped responder makes the answer a 500.
fn run_handler(handler: &dyn Handler, req: Request, responder: Responder) {
    let method = req.method.clone();
    let path = req.path().to_string();
    let r = catch_unwind(AssertUnwindSafe(|| handler.handle(req, responder)));
    if let Err(p) = r {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        log::error!("handler panicked on {method} {path}: {msg}");
    }
}

/// A descriptor held in reserve: when accept() fails for want of descriptors, it is closed so
/// that one waiting connection can be accepted and answered 503 (instead of piling up in the
/// backlog unanswered), then taken again.
fn spare_fd() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// `::ffff:a.b.c.d` is `a.b.c.d`: one client, however it reached a dual-stack socket.
fn client_ip(peer: &SocketAddr) -> IpAddr {
    match peer.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Take one of `ip`'s connection slots; false when it already holds its share.
fn claim_client_slot(shared: &Shared, ip: IpAddr) -> bool {
    let mut m = shared.per_client.lock();
    let n = m.entry(ip).or_insert(0);
    if *n >= shared.limits.max_connections_per_client {
        return false;
    }
    *n += 1;
    true
}

fn release_client_slot(shared: &Shared, ip: IpAddr) {
    let mut m = shared.per_client.lock();
    if let Some(n) = m.get_mut(&ip) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            m.remove(&ip);
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(10);
    let mut spare = spare_fd();
    let mut last_exhaustion_log: Option<Instant> = None;
    let mut last_per_client_log: Option<Instant> = None;
    loop {
        let accepted = listener.accept();
        if shared.shutdown.load(Ordering::SeqCst) {
            break;
        }
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                // Reap finished connection threads so the list stays bounded.
                shared.conn_threads.lock().retain(|h| !h.is_finished());
                if shared.active.load(Ordering::SeqCst) >= shared.limits.max_connections {
                    log::warn!(
                        "connection from {peer} refused: {} connections open (max_connections)",
                        shared.limits.max_connections
                    );
                    reject(&stream, &Error::Capacity("Too many connections".into()));
                    continue;
                }
                let ip = client_ip(&peer);
                if !claim_client_slot(&shared, ip) {
                    // At most one line a second: a client hammering its cap must not flood the log.
                    if last_per_client_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        log::warn!(
                            "connection from {peer} refused: {} connections open from {ip} \
                             (max_connections_per_client)",
                            shared.limits.max_connections_per_client
                        );
                        last_per_client_log = Some(Instant::now());
                    }
                    reject(
                        &stream,
                        &Error::Capacity("Too many connections from your address".into()),
                    );
                    continue;
                }
                let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
                let stream = Arc::new(stream);
                shared.conns.lock().insert(id, stream.clone());
                shared.active.fetch_add(1, Ordering::SeqCst);
                let s2 = shared.clone();
                let spawned = std::thread::Builder::new()
                    .name("http-conn".into())
                    .stack_size(CONN_STACK)
                    .spawn(move || {
                        // A panic in the framing code must not keep the slot and the clone.
                        let served =
                            catch_unwind(AssertUnwindSafe(|| serve_connection(stream, peer, &s2)));
                        if served.is_err() {
                            log::error!("connection from {peer}: panic while serving it");
                        }
                        s2.conns.lock().remove(&id);
                        release_client_slot(&s2, ip);
                        s2.active.fetch_sub(1, Ordering::SeqCst);
                    });
                match spawned {
                    Ok(h) => shared.conn_threads.lock().push(h),
                    Err(e) => {
                        log::error!("cannot start a connection thread: {e}");
                        if let Some(s) = shared.conns.lock().remove(&id) {
                            reject(&s, &Error::Capacity("Server overloaded".into()));
                        }
                        release_client_slot(&shared, ip);
                        shared.active.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            }
            Err(e) if is_fd_exhaustion(&e) && spare.is_some() => {
                // Out of descriptors: free the spare, answer one waiting client 503, retake it.
                // Logged at most once a second (a flood would otherwise flood the log).
                if last_exhaustion_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    log::error!(
                        "accept failed: {e}; answering waiting connections 503 until \
                         descriptors are free ({} HTTP connections open)",
                        shared.active.load(Ordering::SeqCst)
                    );
                    last_exhaustion_log = Some(Instant::now());
                }
                drop(spare.take());
                if let Ok((stream, _)) = listener.accept() {
                    reject(
                        &stream,
                        &Error::Capacity("Too many open files: try again shortly".into()),
                    );
                }
                spare = spare_fd();
                if spare.is_none() {
                    std::thread::park_timeout(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
            Err(e) => {
                // EMFILE/ENFILE/ENOMEM and friends: keep the listener, back off, retry.
                spare = spare.or_else(spare_fd);
                if !matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) {
                    log::error!("accept failed: {e}; retrying in {} ms", backoff.as_millis());
                    std::thread::park_timeout(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

/// The answer to a refusal of this module, from the table (`api/error.rs`).
fn refusal(e: &Error) -> Response {
    Response::json(e.status(), &e.body())
}

fn reject(stream: &TcpStream, e: &Error) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let resp = refusal(e);
    let _ = write_response(stream, &resp, false);
    // Closing with the request unread would send a reset, which can destroy the answer before
    // the client reads it: read what has already arrived (without waiting), then close.
    let _ = stream.shutdown(Shutdown::Write);
    if stream.set_nonblocking(true).is_ok() {
        let mut sink = [0u8; 4096];
        for _ in 0..16 {
            match (&*stream).read(&mut sink) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
    }
}

/// Why a request could not be read.
enum ReadErr {
    /// The peer closed or went idle: close quietly.
    Closed,
    /// Answer with this refusal, then close.
    Reply(Error),
}

struct Conn<'a> {
    /// Shared with the request's [`Wire`], so that the thread that answers writes the answer.
    stream: Arc<TcpStream>,
    buf: Vec<u8>,
    limits: &'a Limits,
}

impl Conn<'_> {
    /// Read more bytes into `buf`, waiting at most until `deadline`. Ok(0) = peer closed.
    fn fill(&mut self, deadline: Instant) -> Result<usize, ReadErr> {
        let now = Instant::now();
        if now >= deadline {
            return Err(ReadErr::Closed);
        }
        self.stream
            .set_read_timeout(Some(deadline - now))
            .map_err(|_| ReadErr::Closed)?;
        let mut chunk = [0u8; 8192];
        loop {
            match (&*self.stream).read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(ReadErr::Closed),
            }
        }
    }

    /// Read more bytes: the peer closing is `Closed`, the deadline passing is a 408 answer.
    fn fill_more(&mut self, deadline: Instant, timeout_msg: &'static str) -> Result<(), ReadErr> {
        match self.fill(deadline) {
            Ok(0) => Err(ReadErr::Closed),
            Ok(_) => Ok(()),
            Err(ReadErr::Closed) if Instant::now() >= deadline => {
                Err(ReadErr::Reply(Error::RequestTimeout(timeout_msg)))
            }
            Err(e) => Err(e),
        }
    }

    /// Read one request head. Returns the head's bytes, its blank line included.
    fn read_head(&mut self, idle: Duration) -> Result<Vec<u8>, ReadErr> {
        // Skip stray CRLFs between requests (RFC 9112 §2.2).
        let idle_deadline = Instant::now() + idle;
        loop {
            let stray = self
                .buf
                .iter()
                .take_while(|b| **b == b'\r' || **b == b'\n')
                .count();
            self.buf.drain(..stray);
            if !self.buf.is_empty() {
                break;
            }
            if self.fill(idle_deadline)? == 0 {
                return Err(ReadErr::Closed);
            }
        }
        let deadline = Instant::now() + self.limits.head_timeout;
        let mut scanned = 0;
        loop {
            if let Some((end, skip)) = find_head_end(&self.buf, scanned) {
                // The end may arrive in the same read as the bytes past the cap.
                if end > self.limits.max_head_bytes {
                    return Err(ReadErr::Reply(Error::HeadersTooLarge));
                }
                return Ok(self.buf.drain(..end + skip).collect());
            }
            scanned = self.buf.len().saturating_sub(3);
            if self.buf.len() > self.limits.max_head_bytes {
                return Err(ReadErr::Reply(Error::HeadersTooLarge));
            }
            self.fill_more(deadline, "Request header timeout")?;
        }
    }

    fn take_exact(&mut self, n: usize, deadline: Instant) -> Result<Vec<u8>, ReadErr> {
        while self.buf.len() < n {
            self.fill_more(deadline, "Request body timeout")?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    fn read_chunked(&mut self, max: usize, deadline: Instant) -> Result<Vec<u8>, ReadErr> {
        let mut body = ChunkedBody::new(max);
        loop {
            match body.feed(&mut self.buf) {
                Ok(Some(b)) => return Ok(b),
                Ok(None) => self.fill_more(deadline, "Request body timeout")?,
                Err(e) => return Err(ReadErr::Reply(e)),
            }
        }
    }
}

fn serve_connection(stream: Arc<TcpStream>, peer: SocketAddr, shared: &Arc<Shared>) {
    let limits = &shared.limits;
    let _ = stream.set_write_timeout(Some(limits.write_timeout));
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
        limits,
    };
    let mut idle = limits.head_timeout;
    loop {
        if shared.shutdown.load(Ordering::SeqCst) {
            break;
        }
        let head = match conn.read_head(idle) {
            Ok(h) => h,
            Err(ReadErr::Closed) => break,
            Err(ReadErr::Reply(e)) => {
                reply_and_close(&conn.stream, &e);
                break;
            }
        };
        idle = limits.idle_timeout;
        let started = Instant::now();
        let head = match parse_head(&head) {
            Ok(h) => h,
            Err(msg) => {
                reply_and_close(&conn.stream, &Error::Framing(msg));
                break;
            }
        };
        let keep_alive = if head.minor == 1 {
            !has_token(&head.headers, "Connection", "close")
        } else {
            has_token(&head.headers, "Connection", "keep-alive")
        };
        let body = match read_body(&mut conn, &head) {
            Ok(b) => b,
            Err(ReadErr::Closed) => break,
            Err(ReadErr::Reply(e)) => {
                reply_and_close(&conn.stream, &e);
                break;
            }
        };
        let req = Request {
            method: head.method,
            target: head.target,
            headers: head.headers,
            body,
            remote: peer,
        };
        let method = req.method.clone();
        let path = req.path().to_string();
        let slot = Arc::new(Slot::default());
        let wire = Wire {
            stream: conn.stream.clone(),
            keep_alive,
            shutdown: shared.shutdown.clone(),
            slot: slot.clone(),
        };
        run_handler(&*shared.handler, req, Responder::new(wire));
        let mut d = wait_response(&slot, shared, keep_alive);
        let (status, keep) = (d.resp.status, d.keep);
        // Before the rest is written: a client that reads slowly must not hold back the audit
        // line of what its request did.
        if let Some(f) = d.finish.take() {
            f.after(status);
        }
        let ok = d.write_rest(&conn.stream).is_ok();
        shared.handler.observe(&method, &path, status);
        // The access line names the request id the handler gave the answer, as its own lines do.
        let _scope = crate::observe::logging::RequestScope::enter(
            d.resp
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("X-Request-ID"))
                .map(|(_, v)| v.as_str().into()),
        );
        log::debug!(
            "{peer} {method} {path} -> {status} in {} us",
            started.elapsed().as_micros()
        );
        if !ok || !keep {
            break;
        }
    }
    let _ = conn.stream.shutdown(Shutdown::Both);
}

/// Where a request's answer stands, between the thread that answers and the connection's.
#[derive(Default)]
enum Answer {
    /// Still awaited by the connection.
    #[default]
    Waiting,
    /// The answering thread took the socket and is writing.
    Writing,
    /// Written as far as the socket took it; the connection writes the rest.
    Ready(Delivered),
    /// The responder was dropped without answering (a panic, a bug): the connection answers 500.
    Dropped,
    /// The connection gave up waiting (shutdown grace passed) and answered itself.
    Abandoned,
}

/// A one-shot hand-off from the answering thread to the connection's thread: a mutex and a
/// condition variable, so that neither side spins or yields (a channel's receive spins and
/// calls `sched_yield` before it sleeps, which on two busy cores costs a context switch).
#[derive(Default)]
pub(crate) struct Slot {
    answer: std::sync::Mutex<Answer>,
    ready: std::sync::Condvar,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Answer> {
        // The lock is held only to move an `Answer`: no panic can poison it half-way.
        self.answer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, a: Answer) {
        *self.lock() = a;
        self.ready.notify_one();
    }
}

/// The socket side of a [`Responder`]: the connection's socket and what the answer's head needs.
pub(crate) struct Wire {
    stream: Arc<TcpStream>,
    keep_alive: bool,
    shutdown: Arc<AtomicBool>,
    /// Exactly one of the answering thread and the connection's own thread writes an answer.
    slot: Arc<Slot>,
}

/// An answer on its way to the client: its encoded head, how much of head and body the
/// answering thread already wrote, and the [`Finish`] still to run.
pub(crate) struct Delivered {
    resp: Response,
    head: Vec<u8>,
    sent: usize,
    keep: bool,
    finish: Option<Box<dyn Finish>>,
}

impl Wire {
    /// Write what the socket takes now, without waiting; the connection's thread writes the rest.
    /// Gives `finish` back when the connection no longer waits for this answer.
    pub(crate) fn write_now(
        &self,
        resp: Response,
        finish: Option<Box<dyn Finish>>,
    ) -> Result<(), Option<Box<dyn Finish>>> {
        {
            let mut a = self.slot.lock();
            if !matches!(*a, Answer::Waiting) {
                return Err(finish);
            }
            *a = Answer::Writing;
        }
        let keep = self.keep_alive && !self.shutdown.load(Ordering::SeqCst);
        let mut d = Delivered::new(resp, keep, finish);
        d.sent = send_now(
            &self.stream,
            &[IoSlice::new(&d.head), IoSlice::new(d.body())],
        );
        self.slot.set(Answer::Ready(d));
        Ok(())
    }

    /// The responder is gone without an answer.
    pub(crate) fn unanswered(&self) {
        let mut a = self.slot.lock();
        if matches!(*a, Answer::Waiting) {
            *a = Answer::Dropped;
            self.slot.ready.notify_one();
        }
    }
}

impl Delivered {
    fn new(resp: Response, keep: bool, finish: Option<Box<dyn Finish>>) -> Delivered {
        Delivered {
            head: encode_head(&resp, keep),
            resp,
            sent: 0,
            keep,
            finish,
        }
    }

    fn body(&self) -> &[u8] {
        if self.resp.status == 204 {
            &[]
        } else {
            &self.resp.body
        }
    }

    /// Write what the answering thread left, within the socket's write timeout.
    fn write_rest(&self, stream: &TcpStream) -> io::Result<()> {
        let mut parts = [IoSlice::new(&self.head), IoSlice::new(self.body())];
        let mut parts: &mut [IoSlice] = &mut parts;
        IoSlice::advance_slices(&mut parts, self.sent);
        while !parts.is_empty() {
            match send_parts(stream, parts, 0) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut parts, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// One `sendmsg` that does not wait: the bytes the socket took (0 on any error; the
/// connection's blocking write then meets the same error and closes).
fn send_now(stream: &TcpStream, parts: &[IoSlice]) -> usize {
    send_parts(stream, parts, libc::MSG_DONTWAIT).unwrap_or(0)
}

/// One `sendmsg` of `parts` with `flags` (always with `MSG_NOSIGNAL`: a client that hung up is
/// an error, never a SIGPIPE); blocking ones end at the socket's write timeout.
fn send_parts(stream: &TcpStream, parts: &[IoSlice], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix; the slices outlive the call and
    // the kernel only reads them; a zeroed msghdr is a valid one with no name and no control.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = parts.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = parts.len() as _;
        libc::sendmsg(stream.as_raw_fd(), &msg, flags | libc::MSG_NOSIGNAL)
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Wait for the handler's answer. A dropped responder (a panic, a bug) is a 500. During
/// shutdown the wait is given up after the grace period, so no connection outlives it; an
/// answer already being written is waited for (its thread does not block on the socket).
fn wait_response(slot: &Slot, shared: &Shared, keep_alive: bool) -> Delivered {
    let own = |e: &Error| {
        let keep = keep_alive && !shared.shutdown.load(Ordering::SeqCst);
        Delivered::new(refusal(e), keep, None)
    };
    let mut shutdown_seen: Option<Instant> = None;
    let mut a = slot.lock();
    loop {
        match std::mem::take(&mut *a) {
            Answer::Ready(d) => return d,
            Answer::Dropped => return own(&Error::NoAnswer),
            other => *a = other,
        }
        if shared.shutdown.load(Ordering::SeqCst) {
            let since = *shutdown_seen.get_or_insert_with(Instant::now);
            if since.elapsed() >= shared.grace && matches!(*a, Answer::Waiting) {
                *a = Answer::Abandoned;
                return own(&Error::Capacity("The broker is shutting down".into()));
            }
        }
        a = slot
            .ready
            .wait_timeout(a, Duration::from_millis(250))
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

fn read_body(conn: &mut Conn, head: &Head) -> Result<Vec<u8>, ReadErr> {
    let max = conn.limits.max_body_bytes;
    let deadline = Instant::now() + conn.limits.body_timeout;
    let te = header(&head.headers, "Transfer-Encoding");
    let cls: Vec<&str> = head
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
        .map(|(_, v)| v.as_str())
        .collect();
    let te_count = head
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Transfer-Encoding"))
        .count();
    if te_count > 1 {
        return Err(ReadErr::Reply(Error::Framing(
            "repeated Transfer-Encoding".into(),
        )));
    }
    if te.is_some() && !cls.is_empty() {
        return Err(ReadErr::Reply(Error::Framing(
            "both Transfer-Encoding and Content-Length".into(),
        )));
    }
    let expect = header(&head.headers, "Expect");
    if let Some(e) = expect {
        if !e.eq_ignore_ascii_case("100-continue") {
            return Err(ReadErr::Reply(Error::ExpectationFailed));
        }
    }
    let len: usize = if let Some(te) = te {
        if !te.trim().eq_ignore_ascii_case("chunked") {
            return Err(ReadErr::Reply(Error::NotImplemented(
                "unsupported Transfer-Encoding".into(),
            )));
        }
        send_continue(conn, expect)?;
        return conn.read_chunked(max, deadline);
    } else if let Some(first) = cls.first() {
        if cls.iter().any(|v| v != first)
            || first.is_empty()
            || !first.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ReadErr::Reply(Error::Framing(
                "invalid Content-Length".into(),
            )));
        }
        match first.parse::<usize>() {
            Ok(n) if n <= max => n,
            _ => return Err(ReadErr::Reply(Error::PayloadTooLarge(max))),
        }
    } else {
        0
    };
    if len == 0 {
        return Ok(Vec::new());
    }
    send_continue(conn, expect)?;
    conn.take_exact(len, deadline)
}

fn send_continue(conn: &mut Conn, expect: Option<&str>) -> Result<(), ReadErr> {
    if expect.is_some() && conn.buf.is_empty() {
        (&*conn.stream)
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|_| ReadErr::Closed)?;
    }
    Ok(())
}

/// Answer an error and close without losing the answer: closing a socket with unread input
/// makes the kernel send RST, which can destroy the response before the client reads it. So stop
/// writing, then read and discard what the client still sends, for at most 1 s or 4 MiB.
fn reply_and_close(stream: &TcpStream, e: &Error) {
    let resp = refusal(e);
    if write_response(stream, &resp, false).is_err() {
        return;
    }
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 16 * 1024];
    let mut total = 0usize;
    while total < (4 << 20) {
        let Some(left) = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        else {
            break;
        };
        if stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match (&*stream).read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
}

fn write_response(stream: &TcpStream, resp: &Response, keep_alive: bool) -> io::Result<()> {
    Delivered::new(resp.clone(), keep_alive, None).write_rest(stream)
}

/// Status line and headers of an answer, its blank line included.
fn encode_head(resp: &Response, keep_alive: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    // Writes to a Vec cannot fail.
    let _ = write!(out, "HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    out.extend_from_slice(b"Server: netdev-broker\r\n");
    for (k, v) in &resp.headers {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    if resp.status != 204 && resp.status >= 200 {
        let _ = write!(out, "Content-Length: {}\r\n", resp.body.len());
    }
    out.extend_from_slice(if keep_alive {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
    out
}
