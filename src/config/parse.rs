//! Lenient readers of YAML values: numbers also from numeric strings ("600"), booleans also
//! from yes/no/on/off/1/0, strings also from numbers and booleans. Each returns a message
//! without the key's name (the caller adds it).

use super::WebUser;
use crate::secret::Secret;
use serde_norway::Value;

pub fn list(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Sequence(s) => s.iter().map(string_of).collect(),
        other => Err(format!("expected a list, got {}", kind(other))),
    }
}

pub fn string_of(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("expected a string, got {}", kind(other))),
    }
}

pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// An integer, also from a numeric string ("600"), within bounds.
pub fn int_in(v: &Value, min: u64, max: u64) -> Result<u64, String> {
    let n = match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("expected a whole number >= {min}, got {n}"))?,
        Value::String(s) => s
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("expected a whole number, got '{s}'"))?,
        other => return Err(format!("expected a whole number, got {}", kind(other))),
    };
    if n < min || n > max {
        return Err(format!("{n} is out of range ({min}..={max})"));
    }
    Ok(n)
}

pub fn boolean_of(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err(format!("expected true or false, got '{s}'")),
        },
        other => Err(format!("expected true or false, got {}", kind(other))),
    }
}

pub fn parse_level(s: &str) -> Result<log::LevelFilter, String> {
    Ok(match s.trim().to_ascii_uppercase().as_str() {
        "DEBUG" => log::LevelFilter::Debug,
        "INFO" => log::LevelFilter::Info,
        "WARNING" | "WARN" => log::LevelFilter::Warn,
        "ERROR" | "CRITICAL" => log::LevelFilter::Error,
        other => {
            return Err(format!(
                "expected DEBUG, INFO, WARNING or ERROR, got '{other}'"
            ))
        }
    })
}

pub fn web_users_of(v: &Value) -> Result<Vec<WebUser>, String> {
    let seq = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Sequence(s) => s,
        other => {
            return Err(format!(
                "expected a list of {{username, password_hash}}, got {}",
                kind(other)
            ))
        }
    };
    let mut out = Vec::new();
    for (i, item) in seq.iter().enumerate() {
        let get = |k: &str| item.get(k).map(string_of).transpose();
        let username = get("username")?
            .filter(|s| !s.is_empty())
            .ok_or(format!("entry {i}: username is required"))?;
        let hash = get("password_hash")?
            .filter(|s| !s.is_empty())
            .ok_or(format!("entry {i} ({username}): password_hash is required"))?;
        if !(hash.starts_with("$2b$") || hash.starts_with("$2a$") || hash.starts_with("$2y$"))
            || hash.parse::<bcrypt::HashParts>().is_err()
        {
            return Err(format!(
                "entry {i} ({username}): password_hash must be a bcrypt hash ($2b$12$ + 53 characters; make one with `netdev-broker hash-password`)"
            ));
        }
        if out.iter().any(|u: &WebUser| u.username == username) {
            return Err(format!("entry {i}: username {username:?} is listed twice"));
        }
        out.push(WebUser {
            username,
            password_hash: Secret::new(hash),
        });
    }
    Ok(out)
}
