//! A small, bounded HTTP/1.1 server: one acceptor thread and one thread per connection up to a
//! hard cap; that thread reads a request and runs the handler (which routes and hands device work
//! to a session's own thread). The thread that answers writes the answer to the socket itself, as
//! far as the socket takes it at once; the connection's thread writes the rest. It never waits on
//! a device, only on the handler's answer. (Until 0.1 a separate worker pool ran the handler: one
//! more thread hop per request, about 30 us, and half the /health throughput.)
//!
//! Every blocking read and write has a deadline; head and body sizes are capped; a panic in the
//! handler is caught (the dropped [`Responder`] makes the connection answer 500).
//!
//! This replaces tiny_http 0.12, whose header reader grows a line without limit, whose accept loop
//! spawns a thread per connection without limit, sets no socket timeouts and stops for good on the
//! first accept error (EMFILE).
//!
//! [`server`] is the socket side (accept loop, connection threads, deadlines); [`framing`] is
//! the byte side (request heads, chunked bodies, reason phrases), pure and fuzzed.

mod framing;
mod server;

pub use framing::{find_head_end, parse_head, reason, ChunkedBody, Head, Refusal};
use server::Wire;
pub use server::{HttpServer, SHUTDOWN_GRACE};

use std::net::SocketAddr;
use std::time::Duration;

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
    /// Shared, so a job can keep the answer it sends without a copy.
    pub body: std::sync::Arc<Vec<u8>>,
}

impl Response {
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: serde_json::to_vec(value)
                .unwrap_or_else(|_| b"{}".to_vec())
                .into(),
        }
    }
    /// A JSON body already serialized.
    pub fn json_body(status: u16, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.into(),
        }
    }
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Default::default(),
        }
    }
    pub fn with_header(mut self, k: &str, v: &str) -> Response {
        self.headers.push((k.into(), v.into()));
        self
    }
}

/// The way back to the connection. Dropping it unanswered makes the connection answer 500
/// (through its [`Finish`], if it has one).
///
/// Whichever thread answers (the connection's own for most routes, a session's thread for an
/// exec) writes the answer to the client's socket itself, as much as the socket takes without
/// waiting, and hands the rest to the connection's thread: the client is not kept waiting for
/// one more thread to wake, and a client that reads slowly never blocks a session thread.
pub struct Responder {
    finish: Option<Box<dyn Finish>>,
    wire: Wire,
    answered: bool,
}

/// What happens to every answer of a request, whoever sends it (the HTTP thread, a session
/// thread, a dropped responder): `before` may change it (on the answering thread, before the
/// answer is written); `after` runs on the connection's thread once the answering thread has
/// written what the socket took (before the rest of a large answer, so that a client reading
/// slowly does not hold it back), so slow work there, such as an fsync, neither delays a small
/// answer nor holds a session thread.
pub trait Finish: Send {
    fn before(&mut self, r: &mut Response);
    fn after(self: Box<Self>, status: u16);
}

impl Responder {
    pub(crate) fn new(wire: Wire) -> Responder {
        Responder {
            finish: None,
            wire,
            answered: false,
        }
    }

    /// Every answer through this responder passes `f` first.
    pub fn with_finish(mut self, f: Box<dyn Finish>) -> Responder {
        self.finish = Some(f);
        self
    }

    pub fn send(mut self, r: Response) {
        self.deliver(r);
    }

    fn deliver(&mut self, mut r: Response) {
        let mut finish = self.finish.take();
        if let Some(f) = finish.as_mut() {
            f.before(&mut r);
        }
        let status = r.status;
        self.answered = true;
        // The connection gave up on this answer (shutdown): nothing was written, and the
        // answer's `after` runs here.
        if let Err(Some(f)) = self.wire.write_now(r, finish) {
            f.after(status);
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if self.finish.is_some() {
            let e = crate::api::error::Error::NoAnswer;
            self.deliver(Response::json(e.status(), &e.body()));
        } else if !self.answered {
            self.wire.unanswered();
        }
    }
}

pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request, responder: Responder);
    /// Called once per answered request, after the answer was written (metrics).
    fn observe(&self, _method: &str, _path: &str, _status: u16) {}
}
