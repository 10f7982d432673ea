//! Execs as jobs: `POST /session/{id}/exec` (synchronous as before, plus `job_id`; or
//! `"wait": false` / `Prefer: respond-async` for 202 and a job to poll), idempotency keys,
//! `GET /session/{id}/jobs[/{job_id}[/output]]` (with `?wait=N` long-poll) and
//! `DELETE /session/{id}/jobs/{job_id}` (or `POST .../cancel`).

use super::error::Error;
use super::wire;
use super::{check_config_support, exec_result, ok_json, Api, ApiLive, Outcome};
use crate::http::{Request, Responder, Response};
use crate::session::jobs::{Answer, JobRecord, JobState, Lookup, Retry};
use crate::session::{ExecError, ExecJob, ExecReport, SessionHandle};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest `?wait=` of a job poll, and of a cancel waiting for the job to stop.
const MAX_WAIT: f64 = 60.0;
/// How long `DELETE .../jobs/{id}` waits for the job to stop before answering.
const CANCEL_WAIT: Duration = Duration::from_secs(15);
/// Most bytes one output read returns.
const OUTPUT_CHUNK: usize = 1 << 20;

impl Api {
    pub(super) fn exec_checked(
        &self,
        id: &str,
        req: &Request,
        slot: &mut Option<Responder>,
        started: Instant,
        live: &ApiLive,
        p: &super::Principal,
    ) -> Result<Outcome, Error> {
        // Body first (422), then the session (404): the order FastAPI answered in.
        // The command policy is applied by the session, to every line it would type, before
        // the first is sent (channel::typed).
        let b = wire::exec_body(&req.body)?;
        super::auth::reader_exec(p, &b)?;
        let key = match (req.header("Idempotency-Key"), &b.idempotency_key) {
            (Some(h), _) => Some(wire::idempotency_key(h)?),
            (None, k) => k.clone(),
        };
        let asynchronous = !b.wait
            || req
                .header("Prefer")
                .is_some_and(|p| p.split(',').any(|t| t.trim() == "respond-async"));
        let h = p.session(self.registry.get(id))?;
        if b.config.is_some() || b.save {
            check_config_support(h.info.platform, b.config.is_some(), b.save)?;
        }
        let hash: [u8; 32] = Sha256::digest(&req.body).into();
        let retention = self.registry.job_retention();
        // A retry with the same key: the first request's job, never a second run.
        let job = {
            let mut jobs = h.jobs.lock();
            match key.as_deref().and_then(|k| jobs.retry(k, &hash)) {
                Some(Retry::Conflict) => {
                    return Err(Error::validation(
                        vec![json!("header"), json!("Idempotency-Key")],
                        "This idempotency key was used with a different request body",
                        "value_error",
                    ))
                }
                Some(Retry::Same(j)) => {
                    drop(jobs);
                    return Ok(Outcome::Now(retried(id, &j)));
                }
                None => {
                    let job_id = crate::util::random_id()
                        .map_err(|e| Error::local_io("cannot make a job id", &e))?;
                    jobs.create(job_id, key, hash, b.job_timeout, retention)
                }
            }
        };
        let responder = slot
            .take()
            .ok_or_else(|| Error::Internal("responder already used".into()))?;
        let metrics = self.registry.metrics().clone();
        let handle = h.clone();
        let record = job.clone();
        let (reply_to, answer_now) = if asynchronous {
            (None, Some(responder))
        } else {
            (Some(responder), None)
        };
        let spec = b.into_spec(
            live.command_timeout,
            Some(job.clone()),
            Some(p.caller.clone()),
        );
        let reply = Box::new(move |r: Result<ExecReport, ExecError>| {
            let never_ran = record.state() == JobState::Queued;
            let state = match &r {
                Ok(ExecReport { failure: None, .. }) => JobState::Done,
                Err(ExecError::Cancelled(_)) => JobState::Cancelled,
                Ok(ExecReport {
                    failure: Some(f), ..
                }) if matches!(f.error, ExecError::Cancelled(_)) => JobState::Cancelled,
                _ => JobState::Failed,
            };
            let (response, label, detail) = match exec_result(r) {
                Ok(results) => (
                    Response::json_body(200, wire::exec_answer(&results, Some(&record.id))),
                    "ok",
                    None,
                ),
                Err(e) => {
                    let mut body = e.body();
                    // A refused exec (busy, dead) never became a job.
                    if !never_ran {
                        body["job_id"] = json!(record.id);
                    }
                    (
                        Response::json(e.status(), &body),
                        e.label(),
                        Some(e.to_string()),
                    )
                }
            };
            metrics.exec_done(label, started.elapsed());
            record.finish(
                state,
                detail,
                Answer {
                    status: response.status,
                    body: response.body.clone(),
                },
            );
            if never_ran {
                // Refused before it started (busy, dead, closed): no job to keep, and its
                // idempotency key is free again.
                handle.jobs.lock().forget(&record.id);
            }
            if let Some(r) = reply_to {
                // A client that hung up loses only this write: the job keeps the answer.
                r.send(response.with_header("X-Job-Id", &record.id));
            }
        });
        self.registry.exec(id, ExecJob { spec, reply });
        if let Some(r) = answer_now {
            // Accepted, unless the session refused it at once (busy, dead): then that answer.
            let kept = h.jobs.lock().list().iter().any(|j| j.id == job.id);
            let refused = (!kept)
                .then(|| {
                    job.inner
                        .lock()
                        .answer
                        .as_ref()
                        .map(|a| (a.status, a.body.clone()))
                })
                .flatten();
            r.send(match refused {
                Some((status, body)) => answer_response(status, body),
                None => accepted(id, &job),
            });
        }
        Ok(Outcome::Later)
    }

    /// `/session/{id}/jobs[/...]`, after the token check.
    pub(super) fn jobs_route(
        &self,
        id: &str,
        rest: &[&str],
        req: &Request,
        p: &super::Principal,
    ) -> Result<Outcome, Error> {
        let h = p.session(self.registry.get(id))?;
        // A viewer sees a job's state, never the device's output.
        let full = p.sees_output();
        let m = req.method.as_str();
        match (rest, m) {
            ([], "GET") => {
                let list: Vec<Value> = h
                    .jobs
                    .lock()
                    .list()
                    .iter()
                    .map(|j| job_json(id, j, false, full))
                    .collect();
                ok_json(200, json!({"count": list.len(), "jobs": list}))
            }
            ([job_id], "GET") => {
                let j = find(&h, job_id)?;
                let wait = query_seconds(req, "wait", MAX_WAIT)?;
                if let Some(w) = wait {
                    j.wait(w);
                }
                ok_json(200, job_json(id, &j, full, full))
            }
            ([job_id, "output"], "GET") => {
                let j = find(&h, job_id)?;
                let from = query_u64(req, "from")?.unwrap_or(0);
                let i = j.inner.lock();
                let (start, bytes) = i.stream.from(from, OUTPUT_CHUNK);
                let next = start + bytes.len() as u64;
                ok_json(
                    200,
                    json!({
                        "job_id": j.id,
                        "state": i.state.name(),
                        "from": start,
                        "next": next,
                        "end": i.stream.end(),
                        "dropped_before": i.stream.base,
                        "output": String::from_utf8_lossy(&bytes),
                    }),
                )
            }
            ([job_id], "DELETE") | ([job_id, "cancel"], "POST") => {
                let j = find(&h, job_id)?;
                if j.state().ended() {
                    return Err(Error::Conflict(format!(
                        "The job already ended ({})",
                        j.state().name()
                    )));
                }
                j.cancel.store(true, std::sync::atomic::Ordering::SeqCst);
                // A running job stops at the device's prompt; a queued one is dropped when its
                // turn comes, without sending anything (no wait for the exec ahead of it).
                if j.state() == JobState::Running {
                    j.wait(CANCEL_WAIT);
                }
                ok_json(200, job_json(id, &j, true, true))
            }
            _ => Err(Error::RouteNotFound),
        }
    }
}

fn find(h: &SessionHandle, job_id: &str) -> Result<Arc<JobRecord>, Error> {
    match h.jobs.lock().get(job_id) {
        Lookup::Found(j) => Ok(j),
        Lookup::Gone(why) => Err(Error::JobGone(why)),
        Lookup::NotFound => Err(Error::JobNotFound),
    }
}

/// The answer to a retried request: the finished job's own answer, or 202 while it runs.
fn retried(session: &str, j: &JobRecord) -> Response {
    let i = j.inner.lock();
    match &i.answer {
        Some(a) => answer_response(a.status, a.body.clone())
            .with_header("X-Job-Id", &j.id)
            .with_header("Idempotent-Replayed", "true"),
        None => {
            drop(i);
            accepted(session, j).with_header("Idempotent-Replayed", "true")
        }
    }
}

/// A stored answer sent again (its bytes shared, not copied).
fn answer_response(status: u16, body: Arc<Vec<u8>>) -> Response {
    Response {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body,
    }
}

/// 202 for a job that runs on.
fn accepted(session: &str, j: &JobRecord) -> Response {
    let url = status_url(session, &j.id);
    Response::json(
        202,
        &json!({"job_id": j.id, "state": j.state().name(), "status_url": url}),
    )
    .with_header("Location", &url)
    .with_header("X-Job-Id", &j.id)
}

fn status_url(session: &str, job: &str) -> String {
    format!("/session/{session}/jobs/{job}")
}

/// A job as `GET .../jobs/{id}` shows it; once ended with `full`, the exec's own answer's
/// fields (`outputs`, `results`, and `detail` etc. for a failure) are merged in. Without
/// `output`, no device output at all (a viewer's view).
fn job_json(session: &str, j: &JobRecord, full: bool, output: bool) -> Value {
    let i = j.inner.lock();
    let mut v = Map::new();
    v.insert("job_id".into(), json!(j.id));
    v.insert("state".into(), json!(i.state.name()));
    v.insert("status_url".into(), json!(status_url(session, &j.id)));
    v.insert("idempotency_key".into(), json!(j.key));
    v.insert(
        "created_at".into(),
        json!(crate::util::iso8601(j.created_at)),
    );
    v.insert(
        "started_at".into(),
        json!(i.started_at.map(crate::util::iso8601)),
    );
    v.insert(
        "finished_at".into(),
        json!(i.finished_at.map(crate::util::iso8601)),
    );
    let elapsed = i
        .elapsed
        .or_else(|| i.started.map(|s| s.elapsed()))
        .map(|d| d.as_millis() as u64);
    v.insert("elapsed_ms".into(), json!(elapsed));
    v.insert("bytes".into(), json!(i.stream.end()));
    v.insert("cancel_requested".into(), json!(j.cancelled()));
    v.insert(
        "current".into(),
        match &i.current {
            Some(c) if output => json!({
                "command": c.command,
                "elapsed_ms": c.started.elapsed().as_millis() as u64,
                "bytes": c.bytes,
                "output_so_far": String::from_utf8_lossy(&c.tail.iter().copied().collect::<Vec<u8>>()),
            }),
            Some(c) => json!({
                "command": c.command,
                "elapsed_ms": c.started.elapsed().as_millis() as u64,
                "bytes": c.bytes,
            }),
            None => Value::Null,
        },
    );
    match &i.answer {
        Some(a) => {
            v.insert("status".into(), json!(a.status));
            v.insert("detail".into(), json!(i.detail));
            if full {
                if let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&a.body) {
                    for (k, val) in body {
                        v.entry(k).or_insert(val);
                    }
                }
            }
        }
        None => {
            v.insert("status".into(), Value::Null);
            if output {
                v.insert(
                    "results".into(),
                    Value::Array(i.results.iter().map(wire::result_json).collect()),
                );
            }
        }
    }
    Value::Object(v)
}

/// A query parameter, percent-decoded (as the dashboard decodes its forms).
fn query(req: &Request, name: &str) -> Option<String> {
    let q = req.target.split_once('?')?.1;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn query_seconds(req: &Request, name: &str, max: f64) -> Result<Option<Duration>, Error> {
    let Some(v) = query(req, name) else {
        return Ok(None);
    };
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s.min(max)))),
        _ => Err(Error::validation(
            vec![json!("query"), json!(name)],
            format!("Input should be a number of seconds (0 to {max})"),
            "float_parsing",
        )),
    }
}

fn query_u64(req: &Request, name: &str) -> Result<Option<u64>, Error> {
    let Some(v) = query(req, name) else {
        return Ok(None);
    };
    v.parse::<u64>().map(Some).map_err(|_| {
        Error::validation(
            vec![json!("query"), json!(name)],
            "Input should be a non-negative integer (a byte offset)",
            "int_parsing",
        )
    })
}
