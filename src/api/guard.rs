//! The change guard routes: `POST|GET|DELETE /session/{id}/guard`, `POST .../guard/extend`,
//! `.../guard/confirm`, `.../guard/rollback`, and `GET /guards`. Bodies are parsed here; the
//! guard itself lives in `session::guard`.

use super::error::{Error, FieldError};
use super::wire::{self, Fields};
use super::{error_response, ok_json, Api, ApiLive, Outcome};
use crate::http::{Request, Responder, Response};
use crate::session::guard::{self, Guard, GuardSpec, GuardState, Login, OnExit, Rollback};
use crate::session::{Protocol, SessionHandle};
use serde_json::{json, Map, Value};
use std::time::Duration;

/// Longest guard timeout (a day).
const MAX_GUARD_SECONDS: f64 = 86_400.0;

impl Api {
    /// `/session/{id}/guard[/...]`, after the token check.
    pub(super) fn guard_route(
        &self,
        id: &str,
        action: Option<&str>,
        req: &Request,
        slot: &mut Option<Responder>,
        live: &ApiLive,
        p: &super::Principal,
    ) -> Result<Outcome, Error> {
        let m = req.method.as_str();
        // A session this token does not see does not exist for it (its guard neither).
        let seen = |found| p.session(found);
        match (action, m) {
            (None, "POST") => self.arm(id, req, slot, live, p),
            (None, "GET") => {
                let h = seen(self.registry.get(id))?;
                let g = h.guard.lock();
                let g = g.as_ref().ok_or(Error::GuardNotFound)?;
                let mut v = guard_json(g);
                if !p.sees_output() {
                    strip_output(&mut v);
                }
                ok_json(200, v)
            }
            (None, "DELETE") => {
                let h = seen(self.registry.get(id))?;
                guard::end(&self.registry, &h, GuardState::Disarmed)?;
                ok_json(200, current(&h))
            }
            (Some("extend"), _) => {
                let map = wire::parse_object(&req.body)?;
                let mut f = Fields::new(&map, vec![json!("body")]);
                let t = f.seconds("timeout", 1.0, MAX_GUARD_SECONDS);
                if absent(&map, "timeout") {
                    f.err("timeout", "Field required", "missing");
                }
                f.finish()?;
                let h = seen(self.registry.get(id))?;
                let t = t.ok_or_else(|| Error::Internal("timeout checked above".into()))?;
                guard::extend(&self.registry, &h, t)?;
                ok_json(200, current(&h))
            }
            (Some("confirm"), _) => {
                let h = seen(self.registry.get(id))?;
                guard::end(&self.registry, &h, GuardState::Confirmed)?;
                ok_json(200, current(&h))
            }
            (Some("rollback"), _) => {
                let h = seen(self.registry.get(id))?;
                let responder = slot
                    .take()
                    .ok_or_else(|| Error::Internal("responder already used".into()))?;
                let sent = std::sync::Arc::new(parking_lot::Mutex::new(Some(responder)));
                let waiter = sent.clone();
                let r = guard::rollback_now(
                    &h,
                    "request",
                    Box::new(move |g: &Guard| {
                        if let Some(r) = waiter.lock().take() {
                            r.send(Response::json(200, &guard_json(g)));
                        }
                    }),
                );
                match r {
                    Ok(()) => Ok(Outcome::Later),
                    Err(e) => {
                        // Not queued: answer here (the responder is still ours).
                        let e = Error::from(e);
                        if let Some(r) = sent.lock().take() {
                            r.send(error_response(&e));
                        }
                        Ok(Outcome::Later)
                    }
                }
            }
            (Some("probe"), _) => self.guard_probe(id, req, slot, live, p),
            _ => Err(Error::RouteNotFound),
        }
    }

    /// `POST .../guard/probe {"rollback_on_failure": bool}`: try the guard's stored login on a
    /// new connection (and its command, which must succeed); a failure with
    /// `rollback_on_failure` fires the rollback at once, and the answer waits for it.
    fn guard_probe(
        &self,
        id: &str,
        req: &Request,
        slot: &mut Option<Responder>,
        live: &ApiLive,
        p: &super::Principal,
    ) -> Result<Outcome, Error> {
        let map = if req.body.iter().all(u8::is_ascii_whitespace) {
            Map::new()
        } else {
            wire::parse_object(&req.body)?
        };
        let mut f = Fields::new(&map, vec![json!("body")]);
        let rollback_on_failure = f.boolean("rollback_on_failure").unwrap_or(false);
        f.finish()?;
        let h = p.session(self.registry.get(id))?;
        let probe = guard::stored_probe(&h, live.command_timeout)?;
        let responder = slot
            .take()
            .ok_or_else(|| Error::Internal("responder already used".into()))?;
        let registry = self.registry.clone();
        self.registry.probe(
            probe,
            Box::new(move |r| {
                let o = match r {
                    Ok(o) => o,
                    Err(e) => return responder.send(error_response(&Error::from(e))),
                };
                let (summary, ok) = probe_summary(o);
                guard::note_probe(&registry, &h, summary.clone(), ok);
                if !ok && rollback_on_failure {
                    let answer =
                        std::sync::Arc::new(parking_lot::Mutex::new(Some((responder, summary))));
                    let waiter = answer.clone();
                    let r = guard::rollback_now(
                        &h,
                        "probe failed",
                        Box::new(move |g: &Guard| {
                            if let Some((r, mut s)) = waiter.lock().take() {
                                s["guard"] = guard_json(g);
                                r.send(Response::json(200, &s));
                            }
                        }),
                    );
                    if r.is_err() {
                        if let Some((r, mut s)) = answer.lock().take() {
                            s["guard"] = current(&h);
                            r.send(Response::json(200, &s));
                        }
                    }
                    return;
                }
                let mut s = summary;
                s["guard"] = current(&h);
                responder.send(Response::json(200, &s));
            }),
        );
        Ok(Outcome::Later)
    }

    fn arm(
        &self,
        id: &str,
        req: &Request,
        slot: &mut Option<Responder>,
        live: &ApiLive,
        p: &super::Principal,
    ) -> Result<Outcome, Error> {
        let map = wire::parse_object(&req.body)?;
        // The session first for what depends on it (its platform, its protocol).
        let h = self.registry.get(id).filter(|h| p.sees(h));
        let mut spec = self.guard_spec(&map, h.as_deref(), live, p)?;
        let h = h.ok_or(Error::SessionNotFound)?;
        // The rollback runs under the arming token's rules too.
        spec.rollback.rules = p.caller.rules.clone();
        let responder = slot
            .take()
            .ok_or_else(|| Error::Internal("responder already used".into()))?;
        let handle = h.clone();
        self.registry.arm_guard(
            id,
            spec,
            Box::new(move |r| {
                responder.send(match r {
                    Ok(()) => Response::json(201, &current(&handle)),
                    Err(e) => error_response(&Error::from(e)),
                })
            }),
        );
        Ok(Outcome::Later)
    }

    fn guard_spec(
        &self,
        map: &Map<String, Value>,
        h: Option<&SessionHandle>,
        live: &ApiLive,
        p: &super::Principal,
    ) -> Result<GuardSpec, Error> {
        let mut f = Fields::new(map, vec![json!("body")]);
        let timeout = f.seconds("timeout", 1.0, MAX_GUARD_SECONDS);
        if absent(map, "timeout") {
            f.err("timeout", "Field required", "missing");
        }
        let on_broker_exit = match f.string("on_broker_exit", false).as_deref() {
            None | Some("rollback") => OnExit::Rollback,
            Some("keep") => OnExit::Keep,
            Some(_) => {
                f.err(
                    "on_broker_exit",
                    "Input should be 'rollback' or 'keep'",
                    "literal_error",
                );
                OnExit::Rollback
            }
        };
        let mut errors = std::mem::take(&mut f.errors);
        let rollback = match map.get("rollback") {
            None | Some(Value::Null) => {
                errors.push(FieldError::new(
                    vec![json!("body"), json!("rollback")],
                    "Field required",
                    "missing",
                ));
                None
            }
            Some(v) => match rollback_of(v, live) {
                Ok(r) => Some(r),
                Err(mut e) => {
                    errors.append(&mut e);
                    None
                }
            },
        };
        let telnet = h.is_some_and(|h| h.info.protocol == Protocol::Telnet.name());
        let login = |key: &str, errors: &mut Vec<FieldError>| -> Option<Login> {
            let v = map.get(key).filter(|v| !v.is_null())?;
            let Value::Object(o) = v else {
                errors.push(FieldError::new(
                    vec![json!("body"), json!(key)],
                    "Input should be a valid dictionary (the body of POST /session)",
                    "dict_type",
                ));
                return None;
            };
            // `command` (a probe's) is one line, checked as `POST /probe` checks it.
            let mut c = Fields::new(o, vec![json!("body"), json!(key)]);
            let command = c.typed("command", false);
            let command_ok = c.errors.is_empty();
            errors.append(&mut c.errors);
            let bytes = serde_json::to_vec(o).unwrap_or_default();
            let r = wire::open_body(&bytes)
                .and_then(|b| self.open_request(b, telnet, live, Some(p.caller.clone())));
            match r {
                Ok(open) if command_ok => Some(Login { open, command }),
                Ok(_) => None,
                Err(e) => {
                    errors.append(&mut under(e, key));
                    None
                }
            }
        };
        if let (Some(rb), Some(h)) = (&rollback, h) {
            errors.append(&mut rollback_fits(rb, h.info.platform));
        }
        let probe = login("probe", &mut errors);
        let reopen = login("reopen", &mut errors);
        let device_revert = match (map.get("device_revert"), timeout) {
            (None | Some(Value::Null) | Some(Value::Bool(false)), _) => None,
            (Some(v), Some(t)) => match device_minutes(v, t, h) {
                Ok(m) => Some(m),
                Err(msg) => {
                    errors.push(FieldError::new(
                        vec![json!("body"), json!("device_revert")],
                        msg,
                        "value_error",
                    ));
                    None
                }
            },
            (Some(_), None) => None,
        };
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        match (rollback, timeout) {
            (Some(rollback), Some(timeout)) => Ok(GuardSpec {
                rollback,
                timeout,
                device_revert,
                probe,
                reopen,
                on_broker_exit,
                request_id: Some(p.caller.request_id.clone()),
            }),
            _ => Err(Error::Internal("guard body checked above".into())),
        }
    }

    /// `GET /guards`: every session's guard (armed ones first), and the guards a previous run of
    /// the broker left armed.
    pub(super) fn guards(&self, p: &super::Principal) -> Value {
        let mut list: Vec<(bool, f64, Value)> = self
            .registry
            .list()
            .iter()
            .filter(|h| p.sees(h))
            .filter_map(|h| {
                let g = h.guard.lock();
                let g = g.as_ref()?;
                let mut v = guard_json(g);
                if !p.sees_output() {
                    strip_output(&mut v);
                }
                v["session_id"] = json!(h.info.id);
                v["host"] = json!(h.info.host);
                v["device_type"] = json!(h.info.device_type);
                Some((g.state.ended(), g.seconds_left(), v))
            })
            .collect();
        list.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let guards: Vec<Value> = list.into_iter().map(|(_, _, v)| v).collect();
        json!({
            "count": guards.len(),
            "guards": guards,
            // What a previous run left belongs to no session now: for those who see all.
            "previous_run": if p.role().sees_all() {
                self.registry.guard_book().orphaned()
            } else {
                Vec::new()
            },
        })
    }
}

/// `key` is missing or null (null counts as absent).
fn absent(map: &Map<String, Value>, key: &str) -> bool {
    map.get(key).is_none_or(Value::is_null)
}

/// The guard of a session as JSON (after a change).
fn current(h: &SessionHandle) -> Value {
    h.guard
        .lock()
        .as_ref()
        .map(guard_json)
        .unwrap_or(Value::Null)
}

/// Validation errors of a nested body, located under `key`.
fn under(e: Error, key: &str) -> Vec<FieldError> {
    match e {
        Error::Validation(errs) => errs
            .into_iter()
            .map(|mut fe| {
                if fe.loc.first() == Some(&json!("body")) {
                    fe.loc.insert(1, json!(key));
                }
                fe
            })
            .collect(),
        other => vec![FieldError::new(
            vec![json!("body"), json!(key)],
            other.to_string(),
            "value_error",
        )],
    }
}

/// What a rollback's config block needs on the session's platform: a configuration mode (and
/// a save command, if it saves), and on a commit-model platform (Junos, IOS-XR) `"save": true`,
/// without which its lines are never committed and the rollback would change nothing.
fn rollback_fits(rb: &Rollback, profile: &str) -> Vec<FieldError> {
    let Some(c) = rb.config.as_ref() else {
        return Vec::new();
    };
    if let Err(e) = super::check_config_support(profile, true, c.save) {
        return under(e, "rollback");
    }
    let commit_model = crate::platform::lookup(profile)
        .and_then(|p| p.config.as_ref())
        .and_then(|c| c.save.as_ref())
        .is_some_and(|s| s.in_config);
    if commit_model && !c.lines.is_empty() && !c.save {
        return vec![FieldError::new(
            vec![json!("body"), json!("rollback"), json!("save")],
            format!(
                "On {profile} config lines take effect only when committed: a rollback with config lines needs \"save\": true"
            ),
            "value_error",
        )];
    }
    Vec::new()
}

/// `rollback`: a list of exec items, or an object with the exec body's fields (`commands`,
/// `config`, `save`, `stop_on_error`, `timeout`).
fn rollback_of(v: &Value, live: &ApiLive) -> Result<Rollback, Vec<FieldError>> {
    let body = match v {
        Value::Array(items) => json!({ "commands": items }),
        Value::Object(_) => v.clone(),
        _ => {
            return Err(vec![FieldError::new(
                vec![json!("body"), json!("rollback")],
                "Input should be a list of exec items or an object like an exec body",
                "value_error",
            )])
        }
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let list = v.is_array();
    let mut b = wire::exec_body(&bytes).map_err(|e| {
        let mut errs = under(e, "rollback");
        if list {
            // Located as the client wrote it: `["body", "rollback", 0, "cmd"]`.
            for fe in &mut errs {
                if fe.loc.get(2) == Some(&json!("commands")) {
                    fe.loc.remove(2);
                }
            }
        }
        errs
    })?;
    let config = b.config_job();
    Ok(Rollback {
        items: b.items,
        config,
        stop_on_error: b.stop_on_error,
        timeout: b.timeout.unwrap_or(live.command_timeout),
        rules: None,
    })
}

/// `device_revert`: `true` (minutes enough to outlast the guard's own deadline) or
/// `{"minutes": N}`, within what the platform's timer accepts.
fn device_minutes(v: &Value, timeout: Duration, h: Option<&SessionHandle>) -> Result<u32, String> {
    let Some(h) = h else {
        // The session is looked up after the body: 404 then.
        return Ok(1);
    };
    let p = crate::platform::lookup(h.info.platform)
        .ok_or_else(|| format!("unknown platform {}", h.info.platform))?;
    let Some(dr) = p.device_revert.as_ref() else {
        return Err(format!(
            "platform {} has no device revert timer (GET /device-types lists the ones that have)",
            p.name
        ));
    };
    let [least, most] = dr.minutes;
    let minutes = match v {
        Value::Bool(true) => (timeout.as_secs().div_ceil(60) as u32)
            .saturating_add(1)
            .max(least),
        Value::Object(o) => match o.get("minutes").and_then(Value::as_u64) {
            Some(m) => u32::try_from(m).unwrap_or(u32::MAX),
            None => return Err("Input should be true or {\"minutes\": N}".into()),
        },
        _ => return Err("Input should be true or {\"minutes\": N}".into()),
    };
    if minutes < least || minutes > most {
        return Err(format!(
            "the device's revert timer on {} takes {least} to {most} minutes; {minutes} asked",
            p.name
        ));
    }
    if u64::from(minutes) * 60 < timeout.as_secs() {
        return Err(format!(
            "the device's timer ({minutes} min) would run out before the guard's own deadline ({} s)",
            timeout.as_secs()
        ));
    }
    Ok(minutes)
}

/// A guard as the API shows it.
/// A guard's JSON without the device's output (its rollback's `outputs`, each result's
/// `output`, `partial_output`, the last probe's `output`): what a viewer token sees.
pub fn strip_output(v: &mut Value) {
    if let Some(r) = v.get_mut("result").and_then(Value::as_object_mut) {
        r.remove("outputs");
        r.remove("partial_output");
        if let Some(list) = r.get_mut("results").and_then(Value::as_array_mut) {
            for item in list {
                if let Some(o) = item.as_object_mut() {
                    o.remove("output");
                }
            }
        }
    }
    if let Some(p) = v.get_mut("last_probe").and_then(Value::as_object_mut) {
        p.remove("output");
    }
}

pub fn guard_json(g: &Guard) -> Value {
    let platform_note = Value::Null;
    let mut v = json!({
        "state": g.state.name(),
        "armed_at": crate::util::iso8601(g.armed_at),
        "timeout": g.timeout.as_secs_f64(),
        "deadline": (g.state == GuardState::Armed).then(|| crate::util::iso8601(g.deadline_at())),
        "seconds_left": (g.seconds_left() * 10.0).round() / 10.0,
        "on_broker_exit": g.on_broker_exit.name(),
        "fired_by": g.fired_by,
        "ended_at": g.ended_at.map(crate::util::iso8601),
        "device_revert": match &g.device {
            Some(d) => json!({
                "armed": true,
                "minutes": d.minutes,
                "armed_at": crate::util::iso8601(d.armed_at),
                "confirmed": d.confirmed,
                "confirm_pending": d.confirm_pending,
                "confirm_error": d.confirm_error,
            }),
            None => json!({"armed": false}),
        },
        "probe": g.probe.is_some(),
        "reopen": g.reopen.is_some(),
        "last_probe": g.last_probe.clone().unwrap_or(platform_note),
        "result": Value::Null,
    });
    if let Some(r) = &g.result {
        let mut m = wire::exec_json(&r.results);
        m.insert("reopened".into(), json!(r.reopened));
        if let Some((detail, command, partial)) = &r.failure {
            m.insert("detail".into(), json!(detail));
            m.insert("command".into(), json!(command));
            m.insert("partial_output".into(), json!(partial));
        }
        v["result"] = Value::Object(m);
    }
    v
}

/// A guard probe's outcome as JSON, and whether it succeeded (login, and its command if any).
fn probe_summary(o: crate::session::ProbeOutcome) -> (Value, bool) {
    let elapsed_ms = o.elapsed.as_millis() as u64;
    let at = crate::util::iso8601(std::time::SystemTime::now());
    match o.login {
        Err(e) => {
            let e = Error::from(e);
            (
                json!({"login": "failed", "status": e.status(), "detail": e.body()["detail"], "elapsed_ms": elapsed_ms, "prompt": null, "mode": null, "output": null, "at": at}),
                false,
            )
        }
        Ok(l) => {
            let (ok, output, detail) = match o.exec {
                None => (true, Value::Null, Value::Null),
                Some(Ok(rep)) => {
                    let out = json!(rep.results.first().map(|r| r.output.as_str()));
                    match rep.failure {
                        None => (true, out, Value::Null),
                        Some(f) => (false, json!(f.partial), json!(f.error.to_string())),
                    }
                }
                Some(Err(e)) => (false, Value::Null, json!(e.to_string())),
            };
            (
                json!({"login": "ok", "status": 201, "detail": detail, "elapsed_ms": elapsed_ms, "prompt": l.prompt, "mode": l.mode, "output": output, "command_ok": ok, "at": at}),
                ok,
            )
        }
    }
}
