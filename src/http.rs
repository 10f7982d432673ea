//! A small, bounded HTTP/1.1 server: one acceptor thread and one thread per connection up to a
//! hard cap; that thread reads a request, runs the handler (which routes and hands device work to
//! a session's own thread) and writes the answer. It never waits on a device, only on the
//! handler's answer. (Until 0.1 a separate worker pool ran the handler: one more thread hop per
//! request, about 30 us, and half the /health throughput.)
//!
//! Every blocking read and write has a deadline; head and body sizes are capped; a panic in the
//! handler is caught (the dropped [`Responder`] makes the connection answer 500).
//!
//! This replaces tiny_http 0.12, whose header reader grows a line without limit, whose accept loop
//! spawns a thread per connection without limit, sets no socket timeouts and stops for good on the
//! first accept error (EMFILE).

use crate::api::error::Error;
use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    /// Open connections from one client address (the TCP peer's IP) at most, so that one
    /// client cannot hold every slot of `max_connections`.
    pub max_connections_per_client: usize,
    pub max_body_bytes: usize,
    pub max_head_bytes: usize,
    /// Time allowed to send a complete request head once its first byte arrived.
    pub head_timeout: Duration,
    /// How long an idle keep-alive connection is kept.
    pub idle_timeout: Duration,
    /// Time allowed for the whole body.
    pub body_timeout: Duration,
    /// Time allowed for each write of the response.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 512,
            max_connections_per_client: 256,
            max_body_bytes: 1 << 20,
            max_head_bytes: 64 << 10,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub remote: SocketAddr,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec()),
        }
    }
    /// A JSON body already serialized.
    pub fn json_body(status: u16, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body,
        }
    }
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    pub fn with_header(mut self, k: &str, v: &str) -> Response {
        self.headers.push((k.into(), v.into()));
        self
    }
}

/// The way back to the connection. Dropping it unanswered makes the connection answer 500.
pub struct Responder {
    tx: Sender<Response>,
}

impl Responder {
    pub fn send(self, r: Response) {
        // The connection may be gone (client hung up); nothing to do then.
        let _ = self.tx.send(r);
    }
}

pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request, responder: Responder);
    /// Called once per answered request, after the answer was written (metrics).
    fn observe(&self, _method: &str, _path: &str, _status: u16) {}
}

struct Shared {
    limits: Limits,
    /// How long in-flight requests may still be answered after shutdown began.
    grace: Duration,
    shutdown: AtomicBool,
    active: AtomicUsize,
    /// Open connections per client address (entries at zero are removed).
    per_client: Mutex<HashMap<IpAddr, usize>>,
    next_conn: AtomicU64,
    /// Clones of live connection sockets, to unblock them at shutdown.
    conns: Mutex<HashMap<u64, TcpStream>>,
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
            shutdown: AtomicBool::new(false),
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
                    reject(stream, &Error::Capacity("Too many connections".into()));
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
                        stream,
                        &Error::Capacity("Too many connections from your address".into()),
                    );
                    continue;
                }
                let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
                if let Ok(clone) = stream.try_clone() {
                    shared.conns.lock().insert(id, clone);
                }
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
                            reject(s, &Error::Capacity("Server overloaded".into()));
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
                        stream,
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

fn reject(mut stream: TcpStream, e: &Error) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let resp = refusal(e);
    let _ = write_response(&mut stream, &resp, false);
    // Closing with the request unread would send a reset, which can destroy the answer before
    // the client reads it: read what has already arrived (without waiting), then close.
    let _ = stream.shutdown(Shutdown::Write);
    if stream.set_nonblocking(true).is_ok() {
        let mut sink = [0u8; 4096];
        for _ in 0..16 {
            match stream.read(&mut sink) {
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
    stream: TcpStream,
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
            match self.stream.read(&mut chunk) {
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

/// Longest chunk-size line (with extensions) and longest trailer line of a chunked body.
const CHUNK_LINE_MAX: usize = 1024;
const TRAILER_LINE_MAX: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// This many bytes of chunk data still to come.
    Data(usize),
    /// Expecting the line break after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty one.
    Trailer,
    Done,
}

/// What a request is refused with (its status and detail come from `api/error.rs`).
pub type Refusal = Error;

/// A chunked request body (RFC 9112 §7.1) decoded as its bytes arrive, independent of the socket
/// (fuzzed by fuzz/fuzz_targets/http_head.rs). The body is capped at `max` bytes.
#[derive(Debug)]
pub struct ChunkedBody {
    max: usize,
    body: Vec<u8>,
    state: ChunkState,
}

impl ChunkedBody {
    pub fn new(max: usize) -> ChunkedBody {
        ChunkedBody {
            max,
            body: Vec::new(),
            state: ChunkState::Size,
        }
    }

    /// Decode what `buf` holds, removing the bytes used (what follows the body stays, for the
    /// next request). Ok(Some(body)): complete; Ok(None): more bytes are needed; Err: the status
    /// and detail to answer with. `buf` is shifted once per call, so the cost stays linear
    /// however small the chunks.
    pub fn feed(&mut self, buf: &mut Vec<u8>) -> Result<Option<Vec<u8>>, Refusal> {
        let mut pos = 0;
        let r = self.decode(buf, &mut pos);
        buf.drain(..pos);
        r
    }

    fn decode(&mut self, buf: &[u8], pos: &mut usize) -> Result<Option<Vec<u8>>, Refusal> {
        loop {
            let rest = &buf[*pos..];
            match self.state {
                ChunkState::Size => {
                    let start = *pos;
                    if take_line(rest, CHUNK_LINE_MAX, pos)?.is_none() {
                        return Ok(None);
                    }
                    let size = chunk_size(&buf[start..*pos])?;
                    if size == 0 {
                        self.state = ChunkState::Trailer;
                    } else if self.body.len().saturating_add(size) > self.max {
                        return Err(Error::PayloadTooLarge(self.max));
                    } else {
                        self.state = ChunkState::Data(size);
                    }
                }
                ChunkState::Data(left) => {
                    if rest.is_empty() {
                        return Ok(None);
                    }
                    let n = left.min(rest.len());
                    self.body.extend_from_slice(&rest[..n]);
                    *pos += n;
                    self.state = if n == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - n)
                    };
                }
                ChunkState::DataEnd => match rest {
                    [b'\n', ..] => {
                        *pos += 1;
                        self.state = ChunkState::Size;
                    }
                    [b'\r', b'\n', ..] => {
                        *pos += 2;
                        self.state = ChunkState::Size;
                    }
                    [] | [b'\r'] => return Ok(None),
                    _ => return Err(Error::Framing("chunk not followed by CRLF".into())),
                },
                ChunkState::Trailer => {
                    let Some(line) = take_line(rest, TRAILER_LINE_MAX, pos)? else {
                        return Ok(None);
                    };
                    if line.is_empty() {
                        self.state = ChunkState::Done;
                        return Ok(Some(std::mem::take(&mut self.body)));
                    }
                }
                ChunkState::Done => return Ok(Some(Vec::new())),
            }
        }
    }
}

/// The line at the start of `rest` without its LF or CRLF, advancing `pos` past it; None while
/// its end has not arrived; an error once it is longer than `max` bytes.
fn take_line<'a>(rest: &'a [u8], max: usize, pos: &mut usize) -> Result<Option<&'a [u8]>, Refusal> {
    let too_long = || Error::Framing("chunk header line too long".into());
    // A line of `max` bytes ends within max + 2 (CR LF).
    let Some(i) = rest.iter().take(max + 2).position(|b| *b == b'\n') else {
        return if rest.len() >= max + 2 {
            Err(too_long())
        } else {
            Ok(None)
        };
    };
    let line = &rest[..i];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > max {
        return Err(too_long());
    }
    *pos += i + 1;
    Ok(Some(line))
}

/// A chunk-size line with its line end: hex digits (at most 8), optionally followed by
/// `;extensions`, as `httparse::parse_chunk_size` reads it. That wants CRLF; a bare LF is
/// accepted here, as in the head.
fn chunk_size(line: &[u8]) -> Result<usize, Refusal> {
    let bad = || Error::Framing("invalid chunk size".into());
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if !(1..=8).contains(&digits) {
        return Err(bad());
    }
    let crlf;
    let line = if line.ends_with(b"\r\n") {
        line
    } else {
        crlf = [line.strip_suffix(b"\n").unwrap_or(line), b"\r\n"].concat();
        &crlf
    };
    match httparse::parse_chunk_size(line) {
        Ok(httparse::Status::Complete((n, size))) if n == line.len() => {
            usize::try_from(size).map_err(|_| bad())
        }
        _ => Err(bad()),
    }
}

/// Position of the end of the head and the length of the terminator, searching from `from`.
pub fn find_head_end(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some((i, 2));
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some((i, 3));
            }
        }
        i += 1;
    }
    None
}

/// A parsed head: method, target, version minor (0 or 1), headers.
pub struct Head {
    pub method: String,
    pub target: String,
    pub minor: u8,
    pub headers: Vec<(String, String)>,
}

/// Header fields a request may carry.
const MAX_HEADERS: usize = 100;

/// Parse a complete request head, blank line included (no socket involved; fuzzable). The
/// syntax is httparse's (strict: no obsolete folding, no blanks around names, no control
/// characters); every field is kept as text, so a head that is not UTF-8 is refused whole.
pub fn parse_head(raw: &[u8]) -> Result<Head, String> {
    std::str::from_utf8(raw).map_err(|_| "request head is not valid UTF-8".to_string())?;
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(raw) {
        Ok(httparse::Status::Complete(n)) if n == raw.len() => {}
        Ok(_) => return Err("incomplete request head".into()),
        Err(e) => {
            return Err(match e {
                httparse::Error::Token => "malformed method",
                httparse::Error::Version => "unsupported HTTP version",
                httparse::Error::HeaderName => "malformed header line",
                httparse::Error::HeaderValue => "invalid character in header value",
                httparse::Error::TooManyHeaders => "too many header fields",
                _ => "malformed request line",
            }
            .into())
        }
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err("malformed request line".into());
    };
    // Origin form only: no `*`, no absolute URI.
    if !target.starts_with('/') {
        return Err("malformed request target".into());
    }
    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).map_err(|_| "invalid header value")?;
        headers.push((h.name.to_string(), value.trim().to_string()));
    }
    Ok(Head {
        method: method.to_string(),
        target: target.to_string(),
        minor,
        headers,
    })
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn has_token(h: &[(String, String)], name: &str, token: &str) -> bool {
    h.iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

fn serve_connection(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
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
                reply_and_close(&mut conn.stream, &e);
                break;
            }
        };
        idle = limits.idle_timeout;
        let started = Instant::now();
        let head = match parse_head(&head) {
            Ok(h) => h,
            Err(msg) => {
                reply_and_close(&mut conn.stream, &Error::Framing(msg));
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
                reply_and_close(&mut conn.stream, &e);
                break;
            }
        };
        let (tx, rx) = bounded::<Response>(1);
        let req = Request {
            method: head.method,
            target: head.target,
            headers: head.headers,
            body,
            remote: peer,
        };
        let method = req.method.clone();
        let path = req.path().to_string();
        run_handler(&*shared.handler, req, Responder { tx });
        let resp = wait_response(&rx, shared);
        let keep = keep_alive && !shared.shutdown.load(Ordering::SeqCst);
        let ok = write_response(&mut conn.stream, &resp, keep).is_ok();
        shared.handler.observe(&method, &path, resp.status);
        log::debug!(
            "{peer} {method} {path} -> {} in {} us",
            resp.status,
            started.elapsed().as_micros()
        );
        if !ok || !keep {
            break;
        }
    }
    let _ = conn.stream.shutdown(Shutdown::Both);
}

/// Wait for the handler's answer. A dropped responder (a panic, a bug) is a 500. During
/// shutdown the wait is given up after the grace period, so no connection outlives it.
fn wait_response(rx: &Receiver<Response>, shared: &Shared) -> Response {
    let mut shutdown_seen: Option<Instant> = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(r) => return r,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                return refusal(&Error::NoAnswer);
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if shared.shutdown.load(Ordering::SeqCst) {
                    let since = *shutdown_seen.get_or_insert_with(Instant::now);
                    if since.elapsed() >= shared.grace {
                        return refusal(&Error::Capacity("The broker is shutting down".into()));
                    }
                }
            }
        }
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
        conn.stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|_| ReadErr::Closed)?;
    }
    Ok(())
}

/// Answer an error and close without losing the answer: closing a socket with unread input
/// makes the kernel send RST, which can destroy the response before the client reads it. So stop
/// writing, then read and discard what the client still sends, for at most 1 s or 4 MiB.
fn reply_and_close(stream: &mut TcpStream, e: &Error) {
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
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

fn write_response(stream: &mut TcpStream, resp: &Response, keep_alive: bool) -> io::Result<()> {
    let mut out = Vec::with_capacity(resp.body.len() + 256);
    out.extend_from_slice(
        format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status)).as_bytes(),
    );
    out.extend_from_slice(b"Server: netdev-broker\r\n");
    for (k, v) in &resp.headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    if resp.status != 204 && resp.status >= 200 {
        out.extend_from_slice(format!("Content-Length: {}\r\n", resp.body.len()).as_bytes());
    }
    out.extend_from_slice(if keep_alive {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
    if resp.status != 204 {
        out.extend_from_slice(&resp.body);
    }
    stream.write_all(&out)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads() {
        let h =
            parse_head(b"POST /session HTTP/1.1\r\nHost: x\r\nX-API-Token:  abc \r\n\r\n").unwrap();
        assert_eq!(h.method, "POST");
        assert_eq!(h.target, "/session");
        assert_eq!(h.minor, 1);
        assert_eq!(header(&h.headers, "x-api-token"), Some("abc"));
        let h = parse_head(b"GET /a?b=c HTTP/1.0\nX: 1\n\n").unwrap();
        assert_eq!((h.target.as_str(), h.minor), ("/a?b=c", 0));
        let bad: &[&[u8]] = &[
            b"GET / HTTP/2.0",
            b"GET  / HTTP/1.1",
            b"GET /a b HTTP/1.1",
            b"GET noslash HTTP/1.1",
            b"GET * HTTP/1.1",
            b"G\x00T / HTTP/1.1",
            b"GET / HTTP/1.1\r\n folded",
            b"GET / HTTP/1.1\r\nno colon",
            b"GET / HTTP/1.1\r\nBad Name: x",
            b"GET / HTTP/1.1\r\nName : x",
            b"GET / HTTP/1.1\r\nX: a\x00b",
            b"GET / HTTP/1.1\r\nX: a\rb",
            b"GET / HTTP/1.1\r\nX: \xff",
            b"\xff\xfe / HTTP/1.1",
        ];
        for b in bad {
            let whole = [b, &b"\r\n\r\n"[..]].concat();
            assert!(
                parse_head(&whole).is_err(),
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
        // Only a complete head is parsed.
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n").is_err());
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X{i}: v\r\n")).collect();
        assert!(parse_head(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()).is_err());
    }

    #[test]
    fn finds_head_end_with_either_line_ending() {
        assert_eq!(
            find_head_end(b"GET / HTTP/1.1\r\n\r\nbody", 0),
            Some((15, 3))
        );
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\nbody", 0), Some((14, 2)));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n", 0), None);
    }

    /// Decode `wire` fed in pieces of `step` bytes (0: all at once); the leftover bytes too.
    fn chunked(
        wire: &[u8],
        max: usize,
        step: usize,
    ) -> (Result<Option<Vec<u8>>, Refusal>, Vec<u8>) {
        let mut d = ChunkedBody::new(max);
        let mut buf = Vec::new();
        let step = if step == 0 { wire.len().max(1) } else { step };
        for piece in wire.chunks(step) {
            buf.extend_from_slice(piece);
            match d.feed(&mut buf) {
                Ok(None) => continue,
                r => return (r, buf),
            }
        }
        (Ok(None), buf)
    }

    #[test]
    fn chunked_bodies_decode_however_they_are_split() {
        let wire =
            b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nGET";
        for step in [0, 1, 2, 3, 7] {
            let (r, rest) = chunked(wire, 1024, step);
            assert_eq!(
                r,
                Ok(Some(b"Wikipedia in \r\n\r\nchunks.".to_vec())),
                "step {step}"
            );
            // The next request's bytes stay in the buffer.
            assert!(b"GET".starts_with(&rest), "step {step}: {rest:?}");
            if step == 0 {
                assert_eq!(rest, b"GET");
            }
        }
        // Bare LF line ends are accepted, as in the head.
        assert_eq!(chunked(b"1\nx\n0\n\n", 10, 1).0, Ok(Some(b"x".to_vec())));
        // Incomplete: more bytes needed, nothing decided.
        assert_eq!(chunked(b"5\r\nabc", 10, 0).0, Ok(None));
        assert_eq!(chunked(b"3\r\nabc\r", 10, 0).0, Ok(None));
    }

    #[test]
    fn chunked_bodies_are_bounded() {
        let status = |wire: &[u8], max: usize| match chunked(wire, max, 1).0 {
            Err(e) => e.status(),
            other => panic!("{other:?}"),
        };
        assert_eq!(status(b"5\r\nabcde\r\n0\r\n\r\n", 4), 413);
        assert_eq!(status(b"3\r\nabc\r\n3\r\nabc\r\n0\r\n\r\n", 5), 413);
        assert_eq!(status(b"zz\r\n", 10), 400);
        assert_eq!(status(b"123456789\r\n", 10), 400);
        assert_eq!(status(b"\r\n", 10), 400);
        assert_eq!(status(b" 5\r\nabcde\r\n0\r\n\r\n", 10), 400);
        assert_eq!(status(b"5x\r\nabcde\r\n0\r\n\r\n", 10), 400);
        assert_eq!(status(b"3\r\nabcX\r\n", 10), 400);
        // A size line, or a trailer line, that never ends is refused once over its limit.
        let mut long = b"1".to_vec();
        long.extend(std::iter::repeat_n(b' ', CHUNK_LINE_MAX + 1));
        assert_eq!(status(&long, 10), 400);
        let mut trailer = b"0\r\nX: ".to_vec();
        trailer.extend(std::iter::repeat_n(b'y', TRAILER_LINE_MAX));
        assert_eq!(status(&trailer, 10), 400);
        // Exactly at the limits is fine.
        let mut ok = b"1".to_vec();
        ok.extend(std::iter::repeat_n(b' ', CHUNK_LINE_MAX - 1));
        ok.extend(b"\r\nz\r\n0\r\n\r\n");
        assert_eq!(chunked(&ok, 10, 5).0, Ok(Some(b"z".to_vec())));
    }

    #[test]
    fn tiny_chunks_cost_linear_time() {
        // 256 KiB of one-byte chunks (1.5 MiB on the wire) arriving 8 KiB at a time, as the
        // socket reads them. The buffer is shifted once per read, not once per line: the old
        // per-line shifting moved ~12 GB for a 1 MiB body of such chunks.
        let n = 256 * 1024;
        let mut wire = Vec::with_capacity(6 * n + 5);
        for _ in 0..n {
            wire.extend_from_slice(b"1\r\nx\r\n");
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        let t = Instant::now();
        let (r, _) = chunked(&wire, 1 << 20, 8192);
        assert_eq!(r.map(|b| b.map(|b| b.len())), Ok(Some(n)));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
}
