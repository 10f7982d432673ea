//! JSON wire types: request validation with FastAPI/pydantic-shaped 422 errors, and the JSON
//! bodies of responses. Nothing else in the broker builds or parses API JSON.

use crate::api::error::{Error, FieldError};
use crate::channel::typed::{char_name, is_control, Step};
use crate::secret::Secret;
use crate::session::driver::{CmdResult, ExecItem, Interaction};
use crate::session::{SessionHandle, SessionInfo};
use crate::util::{iso8601, secs_since};
use regex::Regex;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// Parse a JSON body into an object, as FastAPI does for a pydantic model body.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Error> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::validation(
            vec![json!("body")],
            "Field required",
            "missing",
        ));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        Error::Validation(vec![FieldError::new(
            vec![json!("body"), json!(e.column())],
            format!("JSON decode error: {e}"),
            "json_invalid",
        )])
    })?;
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(Error::validation(
            vec![json!("body")],
            "Input should be a valid dictionary or object to extract fields from",
            "model_attributes_type",
        )),
    }
}

/// Longest regex a request may give (`expect`, `answer`, `interactions[].expect`).
pub const MAX_PATTERN_CHARS: usize = 4096;
/// Most regexes one request may give, counted before any is compiled.
pub const MAX_PATTERNS: usize = 64;
/// Compiled size cap of each request regex (program, and the lazy DFA's cache): with
/// [`MAX_PATTERNS`] they bound what one request's patterns can cost.
const PATTERN_SIZE_LIMIT: usize = 256 << 10;
const PATTERN_DFA_LIMIT: usize = 64 << 10;
/// Longest text typed as one line (a command, a config line, an answer).
pub const MAX_LINE_CHARS: usize = 4096;
/// Most items in `commands`, and most lines in `config`.
pub const MAX_COMMANDS: usize = 1000;
pub const MAX_CONFIG_LINES: usize = 10_000;
/// Most interactions of one command.
pub const MAX_INTERACTIONS: usize = 16;

/// The first control character of `s`, as a 422 message.
fn control_char(s: &str) -> Option<String> {
    s.chars()
        .enumerate()
        .find(|(_, c)| is_control(*c))
        .map(|(i, c)| {
            format!(
                "must not contain control characters: {} at position {i}",
                char_name(c)
            )
        })
}

/// A typed text (command, config line, answer): one line, no control character, bounded.
fn typed_text_error(s: &str) -> Option<String> {
    if s.chars().count() > MAX_LINE_CHARS {
        return Some(format!(
            "String should have at most {MAX_LINE_CHARS} characters"
        ));
    }
    control_char(s)
}

/// Reads fields of one JSON object, collecting every problem (pydantic reports them all).
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    prefix: Vec<Value>,
    pub errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    pub fn new(map: &'a Map<String, Value>, prefix: Vec<Value>) -> Fields<'a> {
        Fields {
            map,
            prefix,
            errors: Vec::new(),
        }
    }

    fn loc(&self, name: &str) -> Vec<Value> {
        let mut l = self.prefix.clone();
        l.push(json!(name));
        l
    }

    pub fn err(&mut self, name: &str, msg: impl Into<String>, kind: &'static str) {
        let loc = self.loc(name);
        self.errors.push(FieldError::new(loc, msg, kind));
    }

    fn present(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    pub fn string(&mut self, name: &str, required: bool) -> Option<String> {
        match self.present(name) {
            None => {
                if required {
                    self.err(name, "Field required", "missing");
                }
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.err(name, "Input should be a valid string", "string_type");
                None
            }
        }
    }

    /// An integer; numeric strings are accepted ("600"), as Ansible templating sends them.
    pub fn int(&mut self, name: &str, min: i64, max: i64) -> Option<i64> {
        let v = self.present(name)?;
        let n = match v {
            Value::Number(n) => match n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                    .map(|f| f as i64)
            }) {
                Some(n) => n,
                None => {
                    self.err(name, "Input should be a valid integer", "int_from_float");
                    return None;
                }
            },
            Value::String(s) => match s.trim().parse::<i64>() {
                Ok(n) => n,
                Err(_) => {
                    self.err(
                        name,
                        "Input should be a valid integer, unable to parse string as an integer",
                        "int_parsing",
                    );
                    return None;
                }
            },
            _ => {
                self.err(name, "Input should be a valid integer", "int_type");
                return None;
            }
        };
        self.bounds(name, n as f64, min as f64, max as f64)
            .then_some(n)
    }

    /// A boolean as pydantic accepts it: true/false, 0/1, and the strings "true"/"false",
    /// "yes"/"no", "on"/"off", "1"/"0" (Ansible templating turns booleans into strings).
    pub fn boolean(&mut self, name: &str) -> Option<bool> {
        let v = self.present(name)?;
        let b = match v {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => match n.as_i64() {
                Some(0) => Some(false),
                Some(1) => Some(true),
                _ => None,
            },
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" | "t" | "y" => Some(true),
                "false" | "no" | "off" | "0" | "f" | "n" => Some(false),
                _ => None,
            },
            _ => None,
        };
        if b.is_none() {
            self.err(name, "Input should be a valid boolean", "bool_parsing");
        }
        b
    }

    /// A regex (compiled with the platform size cap); an invalid one is a 422 naming the field.
    /// A pattern longer than [`MAX_PATTERN_CHARS`] is refused before it is parsed: parsing a
    /// 1 MiB pattern takes hundreds of MiB (and the error message would quote it whole).
    pub fn regex(&mut self, name: &str, required: bool) -> Option<Regex> {
        let s = self.string(name, required)?;
        if s.chars().count() > MAX_PATTERN_CHARS {
            self.err(
                name,
                format!("String should have at most {MAX_PATTERN_CHARS} characters"),
                "string_too_long",
            );
            return None;
        }
        let compiled = regex::RegexBuilder::new(&s)
            .size_limit(PATTERN_SIZE_LIMIT)
            .dfa_size_limit(PATTERN_DFA_LIMIT)
            .build();
        match compiled {
            Ok(r) => Some(r),
            Err(e) => {
                self.err(name, format!("bad pattern {s:?}: {e}"), "value_error");
                None
            }
        }
    }

    /// Algorithm names: a list, or one comma-separated string (as ssh_config writes them).
    pub fn names(&mut self, name: &str) -> Option<Vec<String>> {
        let v = self.present(name)?;
        let list: Vec<String> = match v {
            Value::String(s) => s.split(',').map(|x| x.trim().to_string()).collect(),
            Value::Array(a) if a.iter().all(|x| x.is_string()) => a
                .iter()
                .filter_map(|x| x.as_str())
                .map(|x| x.trim().to_string())
                .collect(),
            _ => {
                self.err(
                    name,
                    "Input should be a list of algorithm names",
                    "list_type",
                );
                return None;
            }
        };
        let list: Vec<String> = list.into_iter().filter(|x| !x.is_empty()).collect();
        if list.is_empty()
            || !list.iter().all(|x| {
                x.len() <= 64
                    && x.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-@._".contains(&b))
            })
        {
            self.err(
                name,
                "Input should be a non-empty list of algorithm names",
                "value_error",
            );
            return None;
        }
        Some(list)
    }

    /// A string that is sent to the device as login data: no control character at all.
    pub fn login_text(&mut self, name: &str, required: bool) -> Option<String> {
        let s = self.string(name, required)?;
        if let Some(m) = control_char(&s) {
            self.err(name, m, "value_error");
        }
        Some(s)
    }

    /// A string typed into the device as one line: no control character, bounded.
    pub fn typed(&mut self, name: &str, required: bool) -> Option<String> {
        let s = self.string(name, required)?;
        if let Some(m) = typed_text_error(&s) {
            self.err(name, m, "value_error");
        }
        Some(s)
    }

    /// A list of single-line strings (config lines).
    pub fn lines(&mut self, name: &str) -> Option<Vec<String>> {
        let v = self.present(name)?;
        let Value::Array(list) = v else {
            self.err(name, "Input should be a valid list", "list_type");
            return None;
        };
        if list.len() > MAX_CONFIG_LINES {
            self.err(
                name,
                format!("List should have at most {MAX_CONFIG_LINES} items"),
                "too_long",
            );
            return None;
        }
        let mut out = Vec::with_capacity(list.len());
        for (i, v) in list.iter().enumerate() {
            let mut loc = self.loc(name);
            loc.push(json!(i));
            match v {
                Value::String(s) => match typed_text_error(s) {
                    None => out.push(s.clone()),
                    Some(m) => self.errors.push(FieldError::new(loc, m, "value_error")),
                },
                _ => self.errors.push(FieldError::new(
                    loc,
                    "Input should be a valid string",
                    "string_type",
                )),
            }
        }
        Some(out)
    }

    /// A number of seconds (integer or fraction; numeric strings accepted).
    pub fn seconds(&mut self, name: &str, min: f64, max: f64) -> Option<Duration> {
        let v = self.present(name)?;
        let f = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        };
        match f {
            Some(f) if self.bounds(name, f, min, max) => Some(Duration::from_secs_f64(f)),
            Some(_) => None,
            None => {
                self.err(name, "Input should be a valid number", "float_parsing");
                None
            }
        }
    }

    fn bounds(&mut self, name: &str, v: f64, min: f64, max: f64) -> bool {
        if v < min {
            self.err(
                name,
                format!("Input should be greater than or equal to {min}"),
                "greater_than_equal",
            );
            false
        } else if v > max {
            self.err(
                name,
                format!("Input should be less than or equal to {max}"),
                "less_than_equal",
            );
            false
        } else {
            true
        }
    }

    pub fn finish(self) -> Result<(), Error> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(self.errors))
        }
    }
}

/// POST /session body after validation.
pub struct OpenBody {
    pub host: String,
    pub username: String,
    pub password: crate::secret::Secret,
    pub device_type: String,
    /// None: the protocol's default port.
    pub port: Option<u16>,
    pub timeout: Duration,
    pub session_timeout: Option<Duration>,
    pub enable_password: Option<crate::secret::Secret>,
    /// `enable {level}` instead of `enable`, where the platform has privilege levels.
    pub enable_level: Option<u8>,
    /// Seconds of idleness between CLI keepalives for this session (0 = off).
    pub keepalive_interval: Option<Duration>,
    /// None: the config's default for this host.
    pub legacy_algorithms: Option<bool>,
    pub kex: Option<Vec<String>>,
    pub host_key_algorithms: Option<Vec<String>>,
    pub ciphers: Option<Vec<String>>,
    pub macs: Option<Vec<String>>,
    pub key_file: Option<String>,
    pub passphrase: Option<crate::secret::Secret>,
    pub host_key_policy: Option<crate::policy::HostKeyPolicy>,
    /// Jump hosts, first hop first. None: the config's `jump_hosts` rules decide; empty:
    /// direct.
    pub jump: Option<Vec<JumpBody>>,
}

/// One jump host of a request's `jump` list.
pub struct JumpBody {
    pub host: String,
    /// None: 22.
    pub port: Option<u16>,
    pub username: String,
    pub password: Secret,
    pub key_file: Option<String>,
    pub passphrase: Option<Secret>,
    pub legacy_algorithms: Option<bool>,
    pub host_key_policy: Option<crate::policy::HostKeyPolicy>,
}

/// `jump`: a list of at most [`crate::transport::MAX_HOPS`] jump hosts, each an object of
/// [`HOP_FIELDS`](crate::policy::HOP_FIELDS) (another field is refused: a typo must not send credentials elsewhere).
fn jump_list(f: &mut Fields) -> Option<Vec<JumpBody>> {
    let v = f.present("jump")?;
    let Value::Array(list) = v else {
        f.err("jump", "Input should be a valid list", "list_type");
        return None;
    };
    let max = crate::transport::MAX_HOPS;
    if list.len() > max {
        f.err(
            "jump",
            format!("List should have at most {max} items"),
            "too_long",
        );
        return None;
    }
    let mut out = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let mut prefix = f.loc("jump");
        prefix.push(json!(i));
        let Value::Object(m) = item else {
            f.errors.push(FieldError::new(
                prefix,
                "Input should be a valid dictionary",
                "dict_type",
            ));
            continue;
        };
        let mut h = Fields::new(m, prefix);
        for k in m.keys() {
            if !crate::policy::HOP_FIELDS.contains(&k.as_str()) {
                h.err(k, "Extra inputs are not permitted", "extra_forbidden");
            }
        }
        let host = h.login_text("host", true);
        if let Some(x) = &host {
            if let Err(m) = crate::transport::validate_host(x) {
                h.err("host", m, "value_error");
            }
        }
        let port = h.int("port", 1, 65_535).map(|p| p as u16);
        let username = h.login_text("username", true);
        let key_file = h
            .login_text("key_file", false)
            .filter(|k| !k.trim().is_empty());
        let password = h.login_text("password", key_file.is_none());
        let passphrase = h.login_text("passphrase", false);
        let legacy_algorithms = h.boolean("legacy_algorithms");
        let host_key_policy = match h.string("host_key_policy", false) {
            Some(p) => match crate::policy::HostKeyPolicy::parse(&p) {
                Ok(p) => Some(p),
                Err(m) => {
                    h.err("host_key_policy", m, "value_error");
                    None
                }
            },
            None => None,
        };
        f.errors.append(&mut h.errors);
        out.push(JumpBody {
            host: host.unwrap_or_default().trim().to_string(),
            port,
            username: username.unwrap_or_default(),
            password: Secret::new(password.unwrap_or_default()),
            key_file,
            passphrase: passphrase.map(Secret::new),
            legacy_algorithms,
            host_key_policy,
        });
    }
    Some(out)
}

pub fn open_body(body: &[u8]) -> Result<OpenBody, Error> {
    let map = parse_object(body)?;
    let mut f = Fields::new(&map, vec![json!("body")]);
    // Login data is typed at the device's prompts or handed to SSH: no control character (a
    // line end in a password would type a command after it).
    let host = f.login_text("host", true);
    let username = f.login_text("username", true);
    let key_file = f
        .login_text("key_file", false)
        .filter(|k| !k.trim().is_empty());
    // With a key file the password may be left out.
    let password = f.login_text("password", key_file.is_none());
    let passphrase = f.login_text("passphrase", false);
    let legacy_algorithms = f.boolean("legacy_algorithms");
    let kex = f.names("kex");
    let host_key_algorithms = f.names("host_key_algorithms");
    let ciphers = f.names("ciphers");
    let macs = f.names("macs");
    let host_key_policy = match f.string("host_key_policy", false) {
        Some(p) => match crate::policy::HostKeyPolicy::parse(&p) {
            Ok(p) => Some(p),
            Err(m) => {
                f.err("host_key_policy", m, "value_error");
                None
            }
        },
        None => None,
    };
    let device_type = f
        .string("device_type", false)
        .unwrap_or_else(|| crate::platform::DEFAULT_DEVICE_TYPE.into());
    let port = f.int("port", 1, 65_535).map(|p| p as u16);
    let timeout = f
        .seconds("timeout", 0.1, 3600.0)
        .unwrap_or(Duration::from_secs(30));
    let session_timeout = f
        .int("session_timeout", 0, 10 * 365 * 86_400)
        .map(|n| Duration::from_secs(n as u64));
    let enable_level = f.int("enable_level", 0, 15).map(|n| n as u8);
    let keepalive_interval = f
        .int("keepalive_interval", 0, 86_400)
        .map(|n| Duration::from_secs(n as u64));
    // Netmiko calls it `secret`; the seed's Telnet API calls it `enable_password`.
    // Both are checked when both are given; enable_password wins.
    let enable_password = f.login_text("enable_password", false);
    let secret = f.login_text("secret", false);
    let enable = enable_password.or(secret);
    if let Some(h) = &host {
        if let Err(m) = crate::transport::validate_host(h) {
            f.err("host", m, "value_error");
        }
    }
    let jump = jump_list(&mut f);
    f.finish()?;
    Ok(OpenBody {
        jump,
        host: host.unwrap_or_default().trim().to_string(),
        username: username.unwrap_or_default(),
        password: crate::secret::Secret::new(password.unwrap_or_default()),
        device_type,
        port,
        timeout,
        session_timeout,
        enable_level,
        keepalive_interval,
        legacy_algorithms,
        kex,
        host_key_algorithms,
        ciphers,
        macs,
        key_file,
        passphrase: passphrase.map(crate::secret::Secret::new),
        host_key_policy,
        enable_password: enable
            .filter(|s| !s.is_empty())
            .map(crate::secret::Secret::new),
    })
}

pub struct ExecBody {
    pub items: Vec<ExecItem>,
    pub timeout: Option<Duration>,
    /// Stop at the first command whose output shows a failure, and answer 500.
    pub stop_on_error: bool,
    /// Config lines sent in config mode (Netmiko's send_config_set), before `items`.
    pub config: Option<Vec<String>>,
    /// Save (or commit) the configuration after the config lines.
    pub save: bool,
    /// `false`: answer 202 at once and run as a job to poll.
    pub wait: bool,
    /// A retry with the same key (and body) gets the first run's job.
    pub idempotency_key: Option<String>,
    /// The whole job's deadline.
    pub job_timeout: Option<Duration>,
}

const MAX_TIMEOUT: f64 = 86_400.0;

impl ExecBody {
    /// The config block it asks for, if any (lines, and whether to save after).
    pub fn config_job(&mut self) -> Option<crate::session::ConfigJob> {
        (self.config.is_some() || self.save).then(|| crate::session::ConfigJob {
            lines: self.config.take().unwrap_or_default(),
            save: self.save,
        })
    }

    /// What a client's exec runs: its items and config block, with the broker's default read
    /// deadline where the body gives none, recorded by `job` if any.
    pub fn into_spec(
        mut self,
        default_timeout: Duration,
        job: Option<std::sync::Arc<crate::session::jobs::JobRecord>>,
        caller: Option<std::sync::Arc<crate::session::Caller>>,
    ) -> crate::session::ExecSpec {
        let config = self.config_job();
        crate::session::ExecSpec {
            items: self.items,
            timeout: self.timeout.unwrap_or(default_timeout),
            stop_on_error: self.stop_on_error,
            config,
            by: crate::session::By::Client,
            job,
            rules: None,
            caller,
        }
    }
}

/// Longest idempotency key.
const MAX_KEY_CHARS: usize = 255;

/// An idempotency key: 1 to 255 printable ASCII characters.
pub fn idempotency_key(k: &str) -> Result<String, Error> {
    if k.is_empty() || k.len() > MAX_KEY_CHARS || !k.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(Error::validation(
            vec![json!("header"), json!("Idempotency-Key")],
            format!("An idempotency key is 1 to {MAX_KEY_CHARS} printable ASCII characters without blanks"),
            "value_error",
        ));
    }
    Ok(k.to_string())
}

/// One object item of `commands`.
fn exec_item(
    o: &Map<String, Value>,
    at: Vec<Value>,
    errors: &mut Vec<FieldError>,
) -> Option<ExecItem> {
    let mut g = Fields::new(o, at.clone());
    let cmd = g.typed("cmd", true);
    let expect = g.regex("expect", false);
    // The seed's interactive form: wait for `answer`, then send `send_newlines` newlines.
    let answer = g.regex("answer", false);
    let newlines = g.int("send_newlines", 0, 16).unwrap_or(1) as usize;
    let timeout = g
        .seconds("read_timeout", 0.1, MAX_TIMEOUT)
        .or_else(|| g.seconds("timeout", 0.1, MAX_TIMEOUT));
    let mut interactions = Vec::new();
    let answer_given = answer.is_some();
    if let Some(a) = answer {
        interactions.push(Interaction {
            expect: a,
            send: Secret::new("\n".repeat(newlines)),
            hidden: false,
            from_platform: false,
        });
    }
    match o.get("interactions") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) if list.len() > MAX_INTERACTIONS => g.err(
            "interactions",
            format!("List should have at most {MAX_INTERACTIONS} items"),
            "too_long",
        ),
        Some(Value::Array(list)) => {
            for (j, v) in list.iter().enumerate() {
                let mut loc = at.clone();
                loc.extend([json!("interactions"), json!(j)]);
                let Value::Object(io) = v else {
                    g.errors.push(FieldError::new(
                        loc,
                        "Input should be an object with 'expect' and 'send'",
                        "model_attributes_type",
                    ));
                    continue;
                };
                let mut h = Fields::new(io, loc);
                let expect = h.regex("expect", true);
                // The line end is the broker's (`newline`); the text itself is one line.
                let send = h.typed("send", false).unwrap_or_default();
                let hidden = h.boolean("hidden").unwrap_or(false);
                let newline = h.boolean("newline").unwrap_or(true);
                g.errors.append(&mut h.errors);
                if let Some(expect) = expect {
                    let mut send = send;
                    if newline {
                        send.push('\n');
                    }
                    interactions.push(Interaction {
                        expect,
                        send: Secret::new(send),
                        hidden,
                        from_platform: false,
                    });
                }
            }
        }
        Some(_) => g.err("interactions", "Input should be a valid list", "list_type"),
    }
    errors.append(&mut g.errors);
    Some(ExecItem {
        cmd: cmd?,
        expect,
        interactions,
        timeout,
        any_order: false,
        seed_answer: answer_given,
        step: Step::Command,
    })
}

/// How many regexes the `commands` of an exec body give (before any is compiled).
fn pattern_count(commands: Option<&Value>) -> usize {
    let Some(Value::Array(list)) = commands else {
        return 0;
    };
    let present = |o: &Map<String, Value>, k: &str| o.get(k).is_some_and(|v| !v.is_null());
    list.iter()
        .filter_map(Value::as_object)
        .map(|o| {
            let own = usize::from(present(o, "expect")) + usize::from(present(o, "answer"));
            let asked = match o.get("interactions") {
                Some(Value::Array(l)) => l
                    .iter()
                    .filter_map(Value::as_object)
                    .filter(|i| present(i, "expect"))
                    .count(),
                _ => 0,
            };
            own + asked
        })
        .sum()
}

pub fn exec_body(body: &[u8]) -> Result<ExecBody, Error> {
    let map = parse_object(body)?;
    let mut f = Fields::new(&map, vec![json!("body")]);
    // What the request may cost is bounded before any of it is compiled or sent.
    let commands = map.get("commands");
    if let Some(Value::Array(list)) = commands {
        if list.len() > MAX_COMMANDS {
            f.err(
                "commands",
                format!("List should have at most {MAX_COMMANDS} items"),
                "too_long",
            );
            return Err(Error::Validation(f.errors));
        }
    }
    let patterns = pattern_count(commands);
    if patterns > MAX_PATTERNS {
        f.err(
            "commands",
            format!(
                "At most {MAX_PATTERNS} patterns (expect, answer, interactions[].expect) per request; this one gives {patterns}"
            ),
            "too_long",
        );
        return Err(Error::Validation(f.errors));
    }
    let timeout = f.seconds("timeout", 0.1, MAX_TIMEOUT);
    let stop_on_error = f.boolean("stop_on_error").unwrap_or(false);
    let config = f.lines("config");
    let save = f.boolean("save").unwrap_or(false);
    let wait = f.boolean("wait").unwrap_or(true);
    let job_timeout = f.seconds("job_timeout", 0.1, MAX_TIMEOUT);
    let key = f.string("idempotency_key", false);
    if let Some(k) = &key {
        if idempotency_key(k).is_err() {
            f.err(
                "idempotency_key",
                format!("An idempotency key is 1 to {MAX_KEY_CHARS} printable ASCII characters without blanks"),
                "value_error",
            );
        }
    }
    let mut items = Vec::new();
    match map.get("commands") {
        None | Some(Value::Null) => {
            // A config-only exec needs no commands.
            if config.is_none() && !save {
                f.err("commands", "Field required", "missing");
            }
        }
        Some(Value::Array(list)) => {
            for (i, v) in list.iter().enumerate() {
                let at = vec![json!("body"), json!("commands"), json!(i)];
                match v {
                    Value::String(s) => match typed_text_error(s) {
                        None => items.push(ExecItem::plain(s)),
                        Some(m) => f.errors.push(FieldError::new(at, m, "value_error")),
                    },
                    Value::Object(o) => {
                        if let Some(it) = exec_item(o, at, &mut f.errors) {
                            items.push(it);
                        }
                    }
                    _ => f.errors.push(FieldError::new(
                        at,
                        "Input should be a valid string or an object with a 'cmd' field",
                        "string_type",
                    )),
                }
            }
        }
        Some(_) => f.err("commands", "Input should be a valid list", "list_type"),
    }
    f.finish()?;
    Ok(ExecBody {
        items,
        timeout,
        stop_on_error,
        config,
        save,
        wait,
        idempotency_key: key,
        job_timeout,
    })
}

/// What a probe does once at the prompt.
pub enum ProbeAsk {
    /// Nothing: a login check.
    Login,
    /// One command, answered in the probe's shape (`output`).
    Command(String),
    /// An exec (`commands`, `config`...), answered in the exec's shape.
    Exec(ExecBody),
}

/// `POST /probe` and the Netmiko routes' bodies after validation.
pub struct ProbeBody {
    pub open: OpenBody,
    pub ask: ProbeAsk,
}

/// The keys of an exec body that make a probe a one-shot exec (`timeout` is the open's too).
const EXEC_KEYS: &[&str] = &["commands", "config", "save", "stop_on_error"];

/// Keep every field error of `r`, collected into `errors`.
fn collect<T>(r: Result<T, Error>, errors: &mut Vec<FieldError>) -> Result<Option<T>, Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Error::Validation(mut v)) => {
            errors.append(&mut v);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// `POST /probe` (`/telnet-probe`): the open body of `POST /session`, plus either `command`
/// (one command) or the fields of an exec body (`commands`, `config`, `save`, `stop_on_error`;
/// `timeout` is then also each command's read timeout).
pub fn probe_body(body: &[u8]) -> Result<ProbeBody, Error> {
    let map = parse_object(body)?;
    let exec = EXEC_KEYS
        .iter()
        .any(|k| map.get(*k).is_some_and(|v| !v.is_null()));
    let mut f = Fields::new(&map, vec![json!("body")]);
    let command = f.typed("command", false);
    if command.is_some() && exec {
        f.err(
            "command",
            "Give either command or an exec (commands, config, save), not both",
            "value_error",
        );
    }
    let mut errors = f.errors;
    let open = collect(open_body(body), &mut errors)?;
    let exec = if exec {
        collect(exec_body(body), &mut errors)?
    } else {
        None
    };
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let ask = match (exec, command) {
        (Some(e), _) => ProbeAsk::Exec(e),
        (None, Some(c)) => ProbeAsk::Command(c),
        (None, None) => ProbeAsk::Login,
    };
    Ok(ProbeBody {
        open: open.ok_or_else(|| Error::Internal("probe body without open fields".into()))?,
        ask,
    })
}

/// The Netmiko `ConnectHandler` arguments the Netmiko routes honour, as (Netmiko name, open
/// body field). Any other key of `connection_options` is ignored.
pub const NETMIKO_OPTIONS: &[(&str, &str)] = &[
    ("device_type", "device_type"),
    ("port", "port"),
    ("username", "username"),
    ("password", "password"),
    ("secret", "enable_password"),
    ("timeout", "timeout"),
    ("key_file", "key_file"),
    ("passphrase", "passphrase"),
];

/// `loc` of an error in the body we built, as the client wrote it.
fn netmiko_loc(loc: &mut Vec<Value>, rename: &[(&str, Vec<Value>)]) {
    let Some(name) = loc.get(1).and_then(Value::as_str).map(str::to_string) else {
        return;
    };
    if let Some((_, to)) = rename.iter().find(|(from, _)| *from == name) {
        let rest = loc.split_off(2);
        loc.truncate(1);
        loc.extend(to.iter().cloned());
        loc.extend(rest);
    }
}

/// `POST /api/v2.0/netmiko/send_command` (`config` false) and `send_config` (true):
/// `{"host", "connection_options": {Netmiko ConnectHandler arguments}, "commands": [...]}`;
/// send_config takes its lines from `config` (or, without it, `commands`). Mapped onto a
/// one-shot exec: [`NETMIKO_OPTIONS`] onto the open body, `read_timeout_override` onto the
/// exec's `timeout`, `save` and `stop_on_error` as given.
pub fn netmiko_body(body: &[u8], config: bool) -> Result<ProbeBody, Error> {
    let map = parse_object(body)?;
    let mut errors = Vec::new();
    let empty = Map::new();
    let opts = match map.get("connection_options") {
        Some(Value::Object(o)) => o,
        None | Some(Value::Null) => {
            errors.push(FieldError::new(
                vec![json!("body"), json!("connection_options")],
                "Field required",
                "missing",
            ));
            &empty
        }
        Some(_) => {
            errors.push(FieldError::new(
                vec![json!("body"), json!("connection_options")],
                "Input should be a valid dictionary",
                "dict_type",
            ));
            &empty
        }
    };
    // The open body: the honoured options, and the top-level host (which wins).
    let mut open = Map::new();
    let mut rename: Vec<(&str, Vec<Value>)> = Vec::new();
    for (theirs, ours) in NETMIKO_OPTIONS {
        if let Some(v) = opts.get(*theirs) {
            open.insert((*ours).into(), v.clone());
        }
        rename.push((ours, vec![json!("connection_options"), json!(theirs)]));
    }
    if let Some(h) = map.get("host") {
        open.insert("host".into(), h.clone());
    }
    // Over Telnet no password may be given for a device that asks none; Netmiko's default is "".
    if !open.contains_key("password") && !open.contains_key("key_file") {
        open.insert("password".into(), json!(""));
    }
    // The exec body: the lines, as a list (one string is one line).
    let list = |v: &Value| match v {
        Value::String(_) => json!([v]),
        _ => v.clone(),
    };
    let mut exec = Map::new();
    // Where an exec body's field came from.
    let mut exec_rename: Vec<(&str, Vec<Value>)> = vec![(
        "timeout",
        vec![json!("connection_options"), json!("read_timeout_override")],
    )];
    if config {
        match (map.get("config"), map.get("commands")) {
            (Some(v), _) if !v.is_null() => {
                exec.insert("config".into(), list(v));
            }
            (_, Some(v)) if !v.is_null() => {
                exec.insert("config".into(), list(v));
                exec_rename.push(("config", vec![json!("commands")]));
            }
            _ => errors.push(FieldError::new(
                vec![json!("body"), json!("config")],
                "Field required",
                "missing",
            )),
        }
    } else if let Some(v) = map.get("commands").filter(|v| !v.is_null()) {
        exec.insert("commands".into(), list(v));
    }
    if let Some(t) = opts.get("read_timeout_override") {
        exec.insert("timeout".into(), t.clone());
    }
    for k in ["save", "stop_on_error"] {
        if let Some(v) = map.get(k) {
            exec.insert(k.into(), v.clone());
        }
    }
    let bytes = |m: Map<String, Value>| serde_json::to_vec(&Value::Object(m)).unwrap_or_default();
    let mut theirs = Vec::new();
    let open = collect(open_body(&bytes(open)), &mut theirs)?;
    for e in &mut theirs {
        netmiko_loc(&mut e.loc, &rename);
    }
    errors.append(&mut theirs);
    // send_config without its lines is already refused above.
    let exec = if config && !exec.contains_key("config") {
        None
    } else {
        collect(exec_body(&bytes(exec)), &mut theirs)?
    };
    for e in &mut theirs {
        netmiko_loc(&mut e.loc, &exec_rename);
    }
    errors.append(&mut theirs);
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    match (open, exec) {
        (Some(open), Some(e)) => Ok(ProbeBody {
            open,
            ask: ProbeAsk::Exec(e),
        }),
        _ => Err(Error::Internal("netmiko body without its parts".into())),
    }
}

pub fn result_json(r: &CmdResult) -> Value {
    let mut v = json!({
        "command": r.command,
        "output": r.output,
        "elapsed_ms": r.elapsed_ms,
        "truncated": r.truncated,
        "failed": r.failure.is_some(),
    });
    if let Some(e) = &r.failure {
        v["error"] = json!(e);
    }
    if r.answered > 0 {
        v["answered"] = json!(r.answered);
    }
    if r.ended_by_expect {
        v["ended_by"] = json!("expect");
    }
    v
}

/// `outputs` keyed by the exact command string (a repeated command keeps its last output, as a
/// Python dict did) and `results` in order.
pub fn exec_json(results: &[CmdResult]) -> Map<String, Value> {
    let mut outputs = Map::new();
    for r in results {
        outputs.insert(r.command.clone(), json!(r.output));
    }
    let mut m = Map::new();
    m.insert("outputs".into(), Value::Object(outputs));
    m.insert(
        "results".into(),
        Value::Array(results.iter().map(result_json).collect()),
    );
    m
}

/// The 200 answer of an exec, serialized straight from the results: the same JSON as
/// `exec_json`, without building a `Value` (which would copy every output twice, once for
/// `outputs` and once for `results`). With 16 MiB outputs that is the difference between about
/// 3x and 6x the output in memory.
pub fn exec_answer(results: &[CmdResult], job_id: Option<&str>) -> Vec<u8> {
    use serde::ser::{SerializeMap, Serializer};
    struct Outputs<'a>(&'a [CmdResult]);
    impl serde::Serialize for Outputs<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            // First appearance decides the position, the last result the value (a dict).
            let mut order: Vec<(&str, &str)> = Vec::new();
            for r in self.0 {
                match order.iter_mut().find(|(c, _)| *c == r.command) {
                    Some(slot) => slot.1 = &r.output,
                    None => order.push((&r.command, &r.output)),
                }
            }
            let mut m = s.serialize_map(Some(order.len()))?;
            for (c, o) in order {
                m.serialize_entry(c, o)?;
            }
            m.end()
        }
    }
    struct One<'a>(&'a CmdResult);
    impl serde::Serialize for One<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let r = self.0;
            let mut m = s.serialize_map(None)?;
            m.serialize_entry("command", &r.command)?;
            m.serialize_entry("output", &r.output)?;
            m.serialize_entry("elapsed_ms", &r.elapsed_ms)?;
            m.serialize_entry("truncated", &r.truncated)?;
            m.serialize_entry("failed", &r.failure.is_some())?;
            if let Some(e) = &r.failure {
                m.serialize_entry("error", e)?;
            }
            if r.answered > 0 {
                m.serialize_entry("answered", &r.answered)?;
            }
            if r.ended_by_expect {
                m.serialize_entry("ended_by", "expect")?;
            }
            m.end()
        }
    }
    struct Body<'a>(&'a [CmdResult], Option<&'a str>);
    impl serde::Serialize for Body<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(None)?;
            if let Some(id) = self.1 {
                m.serialize_entry("job_id", id)?;
            }
            m.serialize_entry("outputs", &Outputs(self.0))?;
            let results: Vec<One> = self.0.iter().map(One).collect();
            m.serialize_entry("results", &results)?;
            m.end()
        }
    }
    // Sized up front: growing by doubling would briefly hold the old and the new buffer.
    let size: usize = results
        .iter()
        .map(|r| 2 * (r.output.len() + r.command.len()) + 160)
        .sum::<usize>()
        + 32;
    let mut buf = Vec::with_capacity(size);
    match serde_json::to_writer(&mut buf, &Body(results, job_id)) {
        Ok(()) => buf,
        // Strings and integers only: cannot fail; the Value path is the fallback anyway.
        Err(_) => {
            let mut m = exec_json(results);
            if let Some(id) = job_id {
                m.insert("job_id".into(), json!(id));
            }
            serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
        }
    }
}

pub fn opened_json(info: &SessionInfo) -> Value {
    json!({"session_id": info.id, "host": info.host})
}

pub fn status_json(h: &SessionHandle) -> Value {
    let i = &h.info;
    let s = h.state();
    let mut v = json!({
        "session_id": i.id,
        "alive": s.alive,
        "host": i.host,
        "device_type": i.device_type,
        "created_at": iso8601(i.created_at),
        "last_used": iso8601(s.last_used_at),
        "age_seconds": secs_since(i.created),
        "idle_seconds": secs_since(s.last_used),
        "protocol": i.protocol,
        "mode": s.mode,
        "port": i.port,
        "username": i.username,
        "platform": i.platform,
        "session_timeout": i.session_timeout.as_secs(),
        "busy": h.busy(),
        "commands_run": s.commands_run,
        "algorithms": i.negotiated,
        "keepalive_interval": i.keepalive_interval.as_secs(),
        "host_key_type": i.host_key.as_ref().map(|k| k.key_type.as_str()),
        "host_key_fingerprint": i.host_key.as_ref().map(|k| k.fingerprint.as_str()),
        "host_key_check": i.host_key.as_ref().map(|k| k.verdict),
        "keepalives": s.keepalives,
        "last_keepalive": s.last_keepalive_at.map(iso8601),
        "via": i.via.iter().map(|h| h.addr.as_str()).collect::<Vec<_>>(),
        "owner": i.owner.as_deref(),
    });
    if !i.via.is_empty() {
        v["via_host_keys"] = i
            .via
            .iter()
            .map(|h| {
                json!({
                    "hop": h.addr,
                    "host_key_type": h.host_key.key_type,
                    "host_key_fingerprint": h.host_key.fingerprint,
                    "host_key_check": h.host_key.verdict,
                    "algorithms": h.negotiated,
                })
            })
            .collect();
    }
    if let Some(p) = &s.keepalive_problem {
        v["keepalive_problem"] = json!(p);
    }
    if let Some(r) = &s.dead_reason {
        v["dead_reason"] = json!(r);
    }
    if let Some(g) = h.guard.lock().as_ref() {
        v["guard"] = super::guard::guard_json(g);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(r: Result<impl Sized, Error>) -> Value {
        match r {
            Ok(_) => panic!("expected a validation error"),
            Err(e) => {
                assert_eq!(e.status(), 422);
                e.body()
            }
        }
    }

    #[test]
    fn open_body_accepts_seed_and_ansible_shapes() {
        let b = open_body(br#"{"host":"10.0.0.1","username":"u","password":"p"}"#).unwrap();
        assert_eq!(b.port, None);
        assert_eq!(b.device_type, "cisco_ios");
        assert_eq!(b.timeout, Duration::from_secs(30));
        assert!(b.session_timeout.is_none());
        let b = open_body(br#"{"host":"h","username":"u","password":"p","port":"2222","session_timeout":"600","timeout":"5","secret":"en","extra":1}"#).unwrap();
        assert_eq!(b.port, Some(2222));
        assert_eq!(b.session_timeout, Some(Duration::from_secs(600)));
        assert_eq!(b.timeout, Duration::from_secs(5));
        assert_eq!(b.enable_password.unwrap().expose(), "en");
        let b = open_body(br#"{"host":"h","username":"u","password":"p","enable_password":""}"#)
            .unwrap();
        assert!(b.enable_password.is_none());
    }

    #[test]
    fn open_body_errors_have_fastapi_locs() {
        let v = errs(open_body(br#"{"username":"u"}"#));
        let locs: Vec<&Value> = v["detail"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["loc"])
            .collect();
        assert_eq!(
            locs,
            vec![&json!(["body", "host"]), &json!(["body", "password"])]
        );
        let v = errs(open_body(
            br#"{"host":"h","username":"u","password":"p","port":"abc"}"#,
        ));
        assert_eq!(v["detail"][0]["type"], "int_parsing");
        let v = errs(open_body(
            br#"{"host":"h","username":"u","password":"p","port":70000}"#,
        ));
        assert_eq!(v["detail"][0]["loc"], json!(["body", "port"]));
        let v = errs(open_body(
            br#"{"host":"a\u0000b","username":"u","password":"p"}"#,
        ));
        assert_eq!(v["detail"][0]["loc"], json!(["body", "host"]));
        let v = errs(open_body(br#"{"host":5,"username":"u","password":"p"}"#));
        assert_eq!(v["detail"][0]["type"], "string_type");
        assert_eq!(
            errs(open_body(b"{not json"))["detail"][0]["type"],
            "json_invalid"
        );
        assert_eq!(
            errs(open_body(b"[1,2]"))["detail"][0]["type"],
            "model_attributes_type"
        );
        assert_eq!(errs(open_body(b""))["detail"][0]["type"], "missing");
    }

    #[test]
    fn long_patterns_are_refused_before_compiling() {
        let at_cap = "a".repeat(MAX_PATTERN_CHARS);
        let over = "(".repeat(MAX_PATTERN_CHARS + 1);
        let body = json!({"commands": [{"cmd": "x", "expect": at_cap}]}).to_string();
        assert!(exec_body(body.as_bytes()).is_ok());
        for (item, loc) in [
            (
                json!({"cmd": "x", "expect": over}),
                json!(["body", "commands", 0, "expect"]),
            ),
            (
                json!({"cmd": "x", "answer": over}),
                json!(["body", "commands", 0, "answer"]),
            ),
            (
                json!({"cmd": "x", "interactions": [{"expect": over}]}),
                json!(["body", "commands", 0, "interactions", 0, "expect"]),
            ),
        ] {
            let body = json!({ "commands": [item] }).to_string();
            let v = errs(exec_body(body.as_bytes()));
            assert_eq!(v["detail"][0]["type"], "string_too_long");
            assert_eq!(v["detail"][0]["loc"], loc);
            // The message does not quote the pattern.
            assert!(v.to_string().len() < 300, "{v}");
        }
    }

    #[test]
    fn exec_body_forms() {
        let b = exec_body(br#"{"commands":["show version",{"cmd":"copy run start","answer":"\\[confirm\\]","send_newlines":1}],"timeout":"5"}"#).unwrap();
        assert_eq!(b.items.len(), 2);
        assert_eq!(b.items[1].interactions.len(), 1);
        assert_eq!(b.items[1].interactions[0].send.expose(), "\n");
        assert_eq!(b.timeout, Some(Duration::from_secs(5)));
        let v = errs(exec_body(br#"{"commands":"show version"}"#));
        assert_eq!(v["detail"][0]["type"], "list_type");
        let v = errs(exec_body(br#"{"commands":[1]}"#));
        assert_eq!(v["detail"][0]["loc"], json!(["body", "commands", 0]));
        let v = errs(exec_body(br#"{"commands":[{"cmd":"x","answer":"("}]}"#));
        assert_eq!(
            v["detail"][0]["loc"],
            json!(["body", "commands", 0, "answer"])
        );
        let v = errs(exec_body(br#"{"commands":["a\nb"]}"#));
        assert_eq!(v["detail"][0]["loc"], json!(["body", "commands", 0]));
        assert!(exec_body(br#"{"commands":[]}"#).unwrap().items.is_empty());
    }

    #[test]
    fn exec_body_interactions_config_and_flags() {
        let b = exec_body(
            br#"{"commands":[{"cmd":"copy scp: flash:","expect":"Done","interactions":[
            {"expect":"remote host","send":"10.0.0.9"},
            {"expect":"Password:","send":"pw","hidden":true},
            {"expect":"\\(y/n\\)","send":"y","newline":"false"}]}],
            "stop_on_error":"yes","config":["interface Gi1","description x"],"save":true}"#,
        )
        .unwrap();
        let it = &b.items[0];
        assert!(it.expect.is_some());
        let sends: Vec<&str> = it.interactions.iter().map(|i| i.send.expose()).collect();
        assert_eq!(sends, ["10.0.0.9\n", "pw\n", "y"]);
        assert!(it.interactions[1].hidden && !it.interactions[0].hidden);
        assert!(format!("{:?}", it.interactions[1]).contains("********"));
        assert!(b.stop_on_error && b.save);
        assert_eq!(b.config.unwrap(), ["interface Gi1", "description x"]);
        // Config alone needs no commands.
        let b = exec_body(br#"{"config":["hostname x"]}"#).unwrap();
        assert!(b.items.is_empty() && !b.save && !b.stop_on_error);
        let v = errs(exec_body(br#"{"config":["a\nb"],"stop_on_error":"maybe"}"#));
        let locs: Vec<&Value> = v["detail"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["loc"])
            .collect();
        assert_eq!(
            locs,
            vec![
                &json!(["body", "stop_on_error"]),
                &json!(["body", "config", 0])
            ]
        );
        let v = errs(exec_body(
            br#"{"commands":[{"cmd":"x","interactions":[{"send":"y"},5]}]}"#,
        ));
        let locs: Vec<&Value> = v["detail"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["loc"])
            .collect();
        assert_eq!(
            locs,
            vec![
                &json!(["body", "commands", 0, "interactions", 0, "expect"]),
                &json!(["body", "commands", 0, "interactions", 1])
            ]
        );
        assert_eq!(
            errs(exec_body(br#"{}"#))["detail"][0]["loc"],
            json!(["body", "commands"])
        );
    }

    #[test]
    fn outputs_keep_repeats_in_results() {
        let r = |c: &str, o: &str| CmdResult {
            command: c.into(),
            output: o.into(),
            elapsed_ms: 1,
            truncated: false,
            failure: None,
            answered: 0,
            ended_by_expect: false,
        };
        let m = exec_json(&[r("end", "a"), r("end", "b")]);
        assert_eq!(m["outputs"], json!({"end": "b"}));
        assert_eq!(m["results"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn exec_answer_is_exec_json_serialized() {
        let r = |c: &str, o: &str| CmdResult {
            command: c.into(),
            output: o.into(),
            elapsed_ms: 7,
            truncated: false,
            failure: None,
            answered: 0,
            ended_by_expect: false,
        };
        let mut failed = r("show x", "% Invalid \"x\"\n\u{1}");
        failed.failure = Some("% Invalid".into());
        failed.truncated = true;
        let mut asked = r(
            "copy run start",
            "Destination filename [startup-config]?\n[OK]",
        );
        asked.answered = 2;
        asked.ended_by_expect = true;
        let cases: Vec<Vec<CmdResult>> = vec![
            vec![],
            vec![r("end", "a"), r("show clock", "12:00"), r("end", "b")],
            vec![failed, asked, r("ünï", "ödd ✓")],
        ];
        for c in &cases {
            let want = serde_json::to_vec(&Value::Object(exec_json(c))).unwrap();
            assert_eq!(
                String::from_utf8(exec_answer(c, None)).unwrap(),
                String::from_utf8(want).unwrap()
            );
        }
    }
}
