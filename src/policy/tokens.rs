//! Named API tokens and their roles (config `api_tokens`, plus the single `api_token` as an
//! `admin` token named `default`). The file holds each token's SHA-256, never the token: tokens
//! are 32 random bytes, so there is no dictionary to try against a fast hash (a password needs a
//! slow one; a token does not). A presented token is hashed once and compared with every
//! configured hash in constant time, so the time taken does not say which one, if any, is near.

use super::{CommandRules, HostList};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// What a token may do. Ordered: each role may do what the ones before it may, except that a
/// `viewer` sees every session and a `reader` or `operator` only its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Health, status, `/sessions`, `/guards`, metrics, jobs' status: every session, read only.
    Viewer,
    /// Opens sessions and runs the read-only commands on them; no config, save, guard or
    /// interaction answers.
    Reader,
    /// Everything on its own sessions.
    Operator,
    /// Everything on every session.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Reader, Role::Operator, Role::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Reader => "reader",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| format!("expected viewer, reader, operator or admin, got {s:?}"))
    }

    /// Sees (and, as admin, acts on) every session, not only its own.
    pub fn sees_all(self) -> bool {
        matches!(self, Role::Viewer | Role::Admin)
    }
}

/// The name the seed's single `api_token` goes by.
pub const DEFAULT_TOKEN_NAME: &str = "default";

/// One configured token.
#[derive(Debug, Clone)]
pub struct ApiToken {
    pub name: Arc<str>,
    pub sha256: [u8; 32],
    pub role: Role,
    /// When it stops working (seconds since the epoch, UTC); as written in `expires`.
    pub expires: Option<(i64, String)>,
    /// Narrows the global `allowed_hosts` (both must allow).
    pub allowed_hosts: Option<HostList>,
    /// Narrows the global command rules (both must allow).
    pub commands: Option<Arc<CommandRules>>,
    /// Sessions it may hold at once.
    pub max_sessions: Option<usize>,
    /// The entry as written, for `check-config` (no secret in it: only the hash).
    pub written: serde_json::Value,
}

impl ApiToken {
    /// Past its `expires` now.
    pub fn expired(&self) -> bool {
        self.expires
            .as_ref()
            .is_some_and(|(at, _)| crate::util::unix_now() >= *at)
    }
}

/// Longest token name; names are `[A-Za-z0-9._-]`.
pub const MAX_NAME: usize = 64;

/// A valid token name.
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= MAX_NAME
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The tokens in force: the config's list plus, when `api_token` is set, `default` (admin).
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    list: Vec<Arc<ApiToken>>,
}

impl Tokens {
    /// `api_tokens` and the single `api_token` (as `default`, admin). A `default` in both is
    /// refused by the config check before this.
    pub fn new(named: &[ApiToken], single: Option<&str>) -> Tokens {
        let mut list: Vec<Arc<ApiToken>> = named.iter().cloned().map(Arc::new).collect();
        if let Some(t) = single.filter(|t| !t.is_empty()) {
            list.push(Arc::new(ApiToken {
                name: DEFAULT_TOKEN_NAME.into(),
                sha256: Sha256::digest(t.as_bytes()).into(),
                role: Role::Admin,
                expires: None,
                allowed_hosts: None,
                commands: None,
                max_sessions: None,
                written: serde_json::json!({"name": DEFAULT_TOKEN_NAME, "role": "admin", "from": "api_token"}),
            }));
        }
        Tokens { list }
    }

    /// The token whose hash matches `presented`: every configured hash is compared, in
    /// constant time, whatever matched (no early exit).
    pub fn find(&self, presented: &[u8]) -> Option<&Arc<ApiToken>> {
        use subtle::{ConditionallySelectable, ConstantTimeEq};
        let h: [u8; 32] = Sha256::digest(presented).into();
        let mut found = 0u32;
        let mut at = 0u32;
        for (i, t) in self.list.iter().enumerate() {
            let hit = t.sha256.ct_eq(&h);
            at.conditional_assign(&(i as u32 + 1), hit);
            found |= u32::from(hit.unwrap_u8());
        }
        if found == 0 {
            return None;
        }
        self.list.get(at as usize - 1)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|t| &*t.name)
    }

    pub fn get(&self, name: &str) -> Option<&Arc<ApiToken>> {
        self.list.iter().find(|t| &*t.name == name)
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }
}

/// What `expires` takes, for messages.
pub const EXPIRES_FORMS: &str =
    "expected a date YYYY-MM-DD (00:00 UTC that day) or an RFC 3339 time such as 2027-06-30T18:00:00Z";

/// An `expires` value: `YYYY-MM-DD` (the token stops working at 00:00 UTC that day) or an RFC
/// 3339 time with its offset (`2027-06-30T18:00:00Z`, `...+02:00`). Nothing else: a value that
/// reads two ways is refused.
pub fn parse_expires(s: &str) -> Result<jiff::Timestamp, String> {
    let bad = || format!("expires {s:?}: {EXPIRES_FORMS}");
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|x| x.iter().all(u8::is_ascii_digit));
    let date_shape = digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10);
    if !date_shape {
        return Err(bad());
    }
    if b.len() == 10 {
        let date: jiff::civil::Date = s.parse().map_err(|_| bad())?;
        return jiff::tz::Offset::UTC
            .to_timestamp(date.to_datetime(jiff::civil::Time::midnight()))
            .map_err(|_| bad());
    }
    // A time must carry its offset (`Z` or `+hh:mm`): a local time would depend on the host.
    let offset = s.ends_with(['Z', 'z'])
        || s.get(s.len().saturating_sub(6)..).is_some_and(|t| {
            let t = t.as_bytes();
            (t[0] == b'+' || t[0] == b'-') && t[3] == b':'
        });
    let time_shape = matches!(b.get(10), Some(b'T' | b't' | b' '))
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19);
    if !offset || !time_shape {
        return Err(bad());
    }
    s.parse::<jiff::Timestamp>().map_err(|_| bad())
}

/// `api_tokens`: a list of `{name, token_sha256, role, expires?, allowed_hosts?,
/// allowed_commands?, denied_commands?, max_sessions?}`.
pub fn parse_list(v: &serde_norway::Value) -> Result<Vec<ApiToken>, String> {
    use serde_norway::Value;
    let seq = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Sequence(s) => s,
        _ => return Err("expected a list of {name, token_sha256, role, ...}".into()),
    };
    const FIELDS: &[&str] = &[
        "name",
        "token_sha256",
        "role",
        "expires",
        "allowed_hosts",
        "allowed_commands",
        "denied_commands",
        "max_sessions",
    ];
    let mut out: Vec<ApiToken> = Vec::new();
    for (i, item) in seq.iter().enumerate() {
        let Value::Mapping(m) = item else {
            return Err(format!("entry {i}: expected a mapping"));
        };
        for k in m.keys() {
            let k = k.as_str().unwrap_or("");
            if !FIELDS.contains(&k) {
                return Err(format!(
                    "entry {i}: unknown field {k:?} (known: {})",
                    FIELDS.join(", ")
                ));
            }
        }
        let text = |k: &str| -> Result<Option<String>, String> {
            match m.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(_) => Err(format!("entry {i}: {k} must be a string")),
            }
        };
        let list = |k: &str| -> Result<Option<Vec<String>>, String> {
            match m.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Sequence(s)) => s
                    .iter()
                    .map(|x| match x {
                        Value::String(s) => Ok(s.clone()),
                        _ => Err(format!("entry {i}: {k} must be a list of strings")),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some),
                Some(_) => Err(format!("entry {i}: {k} must be a list of strings")),
            }
        };
        let name = text("name")?.ok_or(format!("entry {i}: name is required"))?;
        if !valid_name(&name) {
            return Err(format!(
                "entry {i}: name {name:?} must be 1 to {MAX_NAME} of A-Z a-z 0-9 . _ -"
            ));
        }
        let at = |m: String| format!("entry {i} ({name}): {m}");
        if out.iter().any(|t| *t.name == *name) {
            return Err(at("this name is listed twice".into()));
        }
        let hash = text("token_sha256")?
            .ok_or_else(|| at("token_sha256 is required (make a token: netdev-broker token new --name NAME --role ROLE)".into()))?;
        let hash = hash.trim().to_ascii_lowercase();
        let mut sha256 = [0u8; 32];
        if hash.len() != 64
            || !hash.bytes().all(|b| b.is_ascii_hexdigit())
            || (0..32).any(|j| {
                u8::from_str_radix(&hash[2 * j..2 * j + 2], 16)
                    .map(|b| sha256[j] = b)
                    .is_err()
            })
        {
            return Err(at(
                "token_sha256 must be 64 hex digits, the SHA-256 of the token (not the token itself)".into(),
            ));
        }
        if out.iter().any(|t| t.sha256 == sha256) {
            return Err(at("its token_sha256 is another entry's too".into()));
        }
        let role = Role::parse(&text("role")?.ok_or_else(|| at("role is required".into()))?)
            .map_err(|e| at(format!("role: {e}")))?;
        let expires = match text("expires")? {
            Some(e) => Some((parse_expires(&e).map_err(at)?.as_second(), e)),
            None => None,
        };
        let hosts = list("allowed_hosts")?;
        let allowed_hosts = match &hosts {
            Some(l) => Some(HostList::parse(l).map_err(|e| at(format!("allowed_hosts: {e}")))?),
            None => None,
        };
        let denied = list("denied_commands")?.unwrap_or_default();
        let allowed = list("allowed_commands")?.unwrap_or_default();
        let commands = if denied.is_empty() && allowed.is_empty() {
            None
        } else {
            for p in denied.iter().chain(&allowed) {
                crate::platform::compile(p).map_err(|e| at(format!("command rule: {e}")))?;
            }
            Some(Arc::new(
                CommandRules::new(&denied, &allowed)
                    .map_err(|e| at(format!("command rule: {e}")))?
                    .named(&format!("token '{name}'")),
            ))
        };
        let max_sessions = match m.get("max_sessions") {
            None | Some(Value::Null) => None,
            Some(v) => {
                let n = match v {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.trim().parse::<u64>().ok(),
                    _ => None,
                };
                match n {
                    Some(n @ 1..=100_000) => Some(n as usize),
                    _ => {
                        return Err(at(
                            "max_sessions: expected a whole number from 1 to 100000".into()
                        ))
                    }
                }
            }
        };
        let mut written = serde_json::json!({"name": name, "role": role.name()});
        if let Some((_, e)) = &expires {
            written["expires"] = e.clone().into();
        }
        for (k, v) in [
            ("allowed_hosts", hosts),
            ("allowed_commands", Some(allowed)),
            ("denied_commands", Some(denied)),
        ] {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                written[k] = v.into();
            }
        }
        if let Some(n) = max_sessions {
            written["max_sessions"] = n.into();
        }
        out.push(ApiToken {
            name: name.as_str().into(),
            sha256,
            role,
            expires,
            allowed_hosts,
            commands,
            max_sessions,
            written,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::token_sha256;

    fn entry(name: &str, token: &str, role: &str) -> String {
        format!(
            "- {{name: {name}, token_sha256: {}, role: {role}}}\n",
            token_sha256(token)
        )
    }

    #[test]
    fn tokens_are_found_by_their_hash_and_only_then() {
        let yaml = entry("a", "tok-a", "viewer") + &entry("b", "tok-b", "operator");
        let v: serde_norway::Value = serde_norway::from_str(&yaml).unwrap();
        let l = parse_list(&v).unwrap();
        let t = Tokens::new(&l, Some("single"));
        assert_eq!(&*t.find(b"tok-a").unwrap().name, "a");
        assert_eq!(t.find(b"tok-b").unwrap().role, Role::Operator);
        let d = t.find(b"single").unwrap();
        assert_eq!((&*d.name, d.role), ("default", Role::Admin));
        assert!(t.find(b"tok-c").is_none() && t.find(b"").is_none());
        assert!(Tokens::new(&l, Some("")).get("default").is_none());
    }

    #[test]
    fn bad_entries_are_named() {
        let bad = |y: &str| {
            let v: serde_norway::Value = serde_norway::from_str(y).unwrap();
            parse_list(&v).unwrap_err()
        };
        let h = token_sha256("x");
        assert!(bad(&format!(
            "- {{name: 'a b', token_sha256: {h}, role: admin}}"
        ))
        .contains("must be 1 to 64"));
        assert!(
            bad(&format!("- {{name: a, token_sha256: {h}, role: root}}"))
                .contains("expected viewer, reader, operator or admin")
        );
        assert!(bad("- {name: a, token_sha256: ndb_secret, role: admin}")
            .contains("not the token itself"));
        assert!(
            bad(&(entry("a", "x", "admin") + &entry("a", "y", "admin"))).contains("listed twice")
        );
        assert!(bad(&(entry("a", "x", "admin") + &entry("b", "x", "admin")))
            .contains("another entry's"));
        assert!(bad(&format!(
            "- {{name: a, token_sha256: {h}, role: admin, expires: soon}}"
        ))
        .contains("expected a date"));
        let v: serde_norway::Value = serde_norway::from_str(&format!(
            "- {{name: a, token_sha256: {h}, role: admin, expires: 2027-06-30}}"
        ))
        .unwrap();
        assert_eq!(
            parse_list(&v).unwrap()[0].expires.as_ref().unwrap().1,
            "2027-06-30"
        );
        assert!(bad(&format!(
            "- {{name: a, token_sha256: {h}, role: admin, secret: x}}"
        ))
        .contains("unknown field"));
        assert!(bad(&format!(
            "- {{name: a, token_sha256: {h}, role: admin, allowed_hosts: ['10.0.0.0/40']}}"
        ))
        .contains("allowed_hosts"));
    }

    #[test]
    fn expiry_takes_dates_and_times() {
        let at = |s| parse_expires(s).map(|t| t.as_second());
        assert_eq!(at("1970-01-02"), Ok(86_400));
        assert_eq!(at("1970-01-01T00:01:00Z"), Ok(60));
        assert_eq!(at("1970-01-01T01:00:00+01:00"), Ok(0));
        for bad in [
            "tomorrow",
            "2027-06-30T12:00:00",
            "2027-6-30",
            "2027-02-30",
            "27-06-30",
        ] {
            assert!(parse_expires(bad).is_err(), "{bad}");
        }
    }
}
