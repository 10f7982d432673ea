//! The API knows HTTP and JSON: routing on (method, path segments), token check, and turning
//! domain results and errors into responses. Handlers never wait on a device: opens and execs
//! are handed to the session thread together with the way back to the client.

pub mod wire;

use crate::error::Error;
use crate::http::{Handler, Request, Responder, Response};
use crate::platform;
use crate::secret::Secret;
use crate::session::{ExecJob, ExecReport, OpenRequest, Registry};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub struct Api {
    pub registry: Arc<Registry>,
    pub token: Secret,
    pub command_timeout: Duration,
    pub default_session_timeout: Duration,
}

/// What a route does with the request.
enum Outcome {
    Now(Response),
    /// The responder was handed to a session thread.
    Later,
}

fn ok_json(status: u16, v: Value) -> Result<Outcome, Error> {
    Ok(Outcome::Now(Response::json(status, &v)))
}

pub fn error_response(e: &Error) -> Response {
    let r = Response::json(e.status(), &e.body());
    match e {
        Error::MethodNotAllowed(allowed) => r.with_header("Allow", &allowed.join(", ")),
        _ => r,
    }
}

impl Handler for Api {
    fn handle(&self, req: Request, responder: Responder) {
        let mut slot = Some(responder);
        let result = self.route(&req, &mut slot);
        let resp = match result {
            Ok(Outcome::Later) => return,
            Ok(Outcome::Now(r)) => r,
            Err(e) => error_response(&e),
        };
        if let Some(r) = slot.take() {
            r.send(resp);
        }
    }
}

impl Api {
    fn authorized(&self, req: &Request) -> Result<(), Error> {
        match req.header("X-API-Token") {
            Some(t) if self.token.ct_eq(t.as_bytes()) => Ok(()),
            _ => Err(Error::Unauthorized),
        }
    }

    fn route(&self, req: &Request, slot: &mut Option<Responder>) -> Result<Outcome, Error> {
        let path = req.path();
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let m = req.method.as_str();
        const GET: &[&str] = &["GET"];
        const POST: &[&str] = &["POST"];
        const DELETE: &[&str] = &["DELETE"];
        // Route first (unknown path 404, wrong method 405), then the token, then the body:
        // the order FastAPI answered in.
        let allowed: &[&str] = match segs.as_slice() {
            ["health"] | ["sessions"] | ["device-types"] => GET,
            ["session"] => POST,
            ["session", _, "status"] => GET,
            ["session", _, "exec"] => POST,
            ["session", _] => DELETE,
            _ => return Err(Error::RouteNotFound),
        };
        if !allowed.contains(&m) {
            return Err(Error::MethodNotAllowed(allowed));
        }
        if segs.as_slice() == ["health"] {
            return ok_json(
                200,
                json!({"status": "ok", "version": env!("CARGO_PKG_VERSION"), "sessions": self.registry.len()}),
            );
        }
        self.authorized(req)?;
        match segs.as_slice() {
            ["sessions"] => {
                let list: Vec<Value> = self
                    .registry
                    .list()
                    .iter()
                    .map(|h| wire::status_json(h))
                    .collect();
                ok_json(200, json!({"count": list.len(), "sessions": list}))
            }
            ["device-types"] => ok_json(200, json!({"device_types": platform::known_names()})),
            ["session"] => self.open(req, slot),
            ["session", id, "status"] => match self.registry.get(id) {
                Some(h) => ok_json(200, wire::status_json(&h)),
                None => Err(Error::SessionNotFound),
            },
            ["session", id, "exec"] => self.exec(id, req, slot),
            ["session", id] => {
                self.registry.remove(id, "DELETE");
                Ok(Outcome::Now(Response::empty(204)))
            }
            _ => Err(Error::RouteNotFound),
        }
    }

    fn open(&self, req: &Request, slot: &mut Option<Responder>) -> Result<Outcome, Error> {
        let b = wire::open_body(&req.body)?;
        let platform = platform::lookup(&b.device_type).ok_or_else(|| {
            Error::validation(
                vec![json!("body"), json!("device_type")],
                format!(
                    "Unsupported device_type {:?}; known: {}",
                    b.device_type,
                    platform::known_names().join(", ")
                ),
                "value_error",
            )
        })?;
        let responder = slot
            .take()
            .ok_or_else(|| Error::Internal("responder already used".into()))?;
        let open = OpenRequest {
            host: b.host,
            port: b.port,
            username: b.username,
            password: b.password,
            enable_secret: b.enable_password,
            device_type: b.device_type,
            platform,
            connect_timeout: b.timeout,
            session_timeout: b.session_timeout.unwrap_or(self.default_session_timeout),
        };
        self.registry.open(
            open,
            Box::new(move |r| {
                responder.send(match r {
                    Ok(info) => Response::json(201, &wire::opened_json(&info)),
                    Err(e) => error_response(&e),
                })
            }),
        );
        Ok(Outcome::Later)
    }

    fn exec(
        &self,
        id: &str,
        req: &Request,
        slot: &mut Option<Responder>,
    ) -> Result<Outcome, Error> {
        // Body first (422), then the session (404): the order FastAPI answered in.
        let b = wire::exec_body(&req.body)?;
        let responder = slot
            .take()
            .ok_or_else(|| Error::Internal("responder already used".into()))?;
        let job = ExecJob {
            items: b.items,
            timeout: b.timeout.unwrap_or(self.command_timeout),
            reply: Box::new(move |r: Result<ExecReport, Error>| responder.send(exec_response(r))),
        };
        self.registry.exec(id, job);
        Ok(Outcome::Later)
    }
}

fn exec_response(r: Result<ExecReport, Error>) -> Response {
    match r {
        Err(e) => error_response(&e),
        Ok(ExecReport {
            results,
            failure: None,
        }) => Response::json(200, &Value::Object(wire::exec_json(&results))),
        Ok(ExecReport {
            results,
            failure: Some(f),
        }) => {
            let mut extra = wire::exec_json(&results);
            extra.insert("command".into(), json!(f.command));
            extra.insert("partial_output".into(), json!(f.partial));
            error_response(&Error::WithFields(Box::new(f.error), extra))
        }
    }
}
