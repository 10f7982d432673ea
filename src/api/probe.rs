//! Login probes and one-shot execs: `POST /probe`, `POST /telnet-probe`, and the Netmiko
//! gateway's `POST /api/v2.0/netmiko/send_command` and `send_config`. Each logs in on a new
//! connection on its own thread (`session::Registry::probe`), never registered as a session,
//! and is answered through the responder once the connection is closed.

use super::{check_config_support, error_response, exec_result, wire, Api, ApiLive, Outcome};
use crate::api::error::Error;
use crate::http::{Request, Responder, Response};
use crate::session::{ExecSpec, OpenError, ProbeOutcome, ProbeRequest};
use serde_json::{json, Map, Value};

/// Which route a probe came in by.
#[derive(Clone, Copy)]
pub(super) enum ProbeRoute {
    /// `/probe` (`telnet`: `/telnet-probe`).
    Probe { telnet: bool },
    /// `/api/v2.0/netmiko/send_command` or (`config`) `send_config`.
    Netmiko { config: bool },
}

/// How the answer is shaped.
#[derive(Clone, Copy)]
enum Shape {
    /// A login check, with at most one command: always 200 unless the command was refused or
    /// failed.
    Probe,
    /// A one-shot exec: the exec's answer plus `login` and `elapsed_ms`.
    Exec,
}

impl Api {
    pub(super) fn probe(
        &self,
        req: &Request,
        slot: &mut Option<Responder>,
        route: ProbeRoute,
        live: &ApiLive,
        p: &super::Principal,
    ) -> Result<Outcome, Error> {
        let (body, telnet) = match route {
            ProbeRoute::Probe { telnet } => (wire::probe_body(&req.body)?, telnet),
            ProbeRoute::Netmiko { config } => (wire::netmiko_body(&req.body, config)?, false),
        };
        let open = self.open_request(body.open, telnet, live, Some(p.caller.clone()))?;
        let (exec, shape) = match body.ask {
            wire::ProbeAsk::Login => (None, Shape::Probe),
            wire::ProbeAsk::Command(c) => {
                let mut spec = ExecSpec::command(&c, live.command_timeout);
                spec.caller = Some(p.caller.clone());
                (Some(spec), Shape::Probe)
            }
            wire::ProbeAsk::Exec(b) => {
                super::auth::reader_exec(p, &b)?;
                if b.config.is_some() || b.save {
                    check_config_support(&open.platform.name, b.config.is_some(), b.save)?;
                }
                let spec = b.into_spec(live.command_timeout, None, Some(p.caller.clone()));
                (Some(spec), Shape::Exec)
            }
        };
        // Taken only after every check above: an error there is answered by the caller.
        let responder = slot
            .take()
            .ok_or_else(|| Error::Internal("responder already used".into()))?;
        self.registry.probe(
            ProbeRequest { open, exec },
            Box::new(move |r| responder.send(probe_response(r, shape))),
        );
        Ok(Outcome::Later)
    }
}

/// The answer to a probe. A refusal before it ran (capacity, shutdown) is an error of its own.
fn probe_response(r: Result<ProbeOutcome, OpenError>, shape: Shape) -> Response {
    let outcome = match r {
        Ok(o) => o,
        Err(e) => return error_response(&Error::from(e)),
    };
    let elapsed_ms = outcome.elapsed.as_millis() as u64;
    let login = outcome.login.map_err(Error::from);
    let mut fields = Map::new();
    fields.insert(
        "login".into(),
        json!(if login.is_ok() { "ok" } else { "failed" }),
    );
    fields.insert("elapsed_ms".into(), json!(elapsed_ms));
    match shape {
        Shape::Probe => {
            let (prompt, mode) = match &login {
                Ok(l) => (json!(l.prompt), json!(l.mode)),
                Err(_) => (Value::Null, Value::Null),
            };
            fields.insert("prompt".into(), prompt);
            fields.insert("mode".into(), mode);
            let output = match outcome.exec.map(exec_result) {
                None => Value::Null,
                Some(Ok(results)) => json!(results.first().map(|r| r.output.as_str())),
                // A refused or failed command is answered as its exec would be.
                Some(Err(e)) => return error_response(&with_fields(e, fields)),
            };
            let (status, detail) = match &login {
                Ok(_) => (201, Value::Null),
                Err(e) => (e.status(), e.body()["detail"].clone()),
            };
            fields.insert("status".into(), json!(status));
            fields.insert("detail".into(), detail);
            fields.insert("output".into(), output);
            Response::json(200, &Value::Object(fields))
        }
        Shape::Exec => {
            let r = match login {
                Err(e) => Err(e),
                Ok(_) => match outcome.exec.map(exec_result) {
                    Some(Ok(results)) => Ok(results),
                    Some(Err(e)) => Err(e),
                    None => Ok(Vec::new()),
                },
            };
            match r {
                Ok(results) => {
                    let mut body = wire::exec_json(&results);
                    body.append(&mut fields);
                    Response::json(200, &Value::Object(body))
                }
                Err(e) => error_response(&with_fields(e, fields)),
            }
        }
    }
}

/// `e` with `fields` next to its detail (and to the fields it already has).
fn with_fields(e: Error, mut fields: Map<String, Value>) -> Error {
    match e {
        Error::WithFields(inner, mut extra) => {
            extra.append(&mut fields);
            Error::WithFields(inner, extra)
        }
        other => Error::WithFields(Box::new(other), fields),
    }
}
