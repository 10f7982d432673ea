//! `netdev-broker token new --name NAME --role ROLE [--expires DATE] [--token-file PATH]`: make a
//! named API token and print it once with the `api_tokens:` entry to paste into the config (which
//! keeps only its SHA-256); `netdev-broker token hash`: the `token_sha256` of a token read from
//! standard input, for tokens made by other means.

use crate::policy::Role;
use crate::secret::token_sha256;
use crate::server::StartError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// What every token `token new` makes starts with (then 43 base64url characters, no padding).
pub const TOKEN_PREFIX: &str = "ndb_";
/// Random bytes in a token, from the OS.
pub const TOKEN_BYTES: usize = 32;
/// Shorter tokens given to `token hash` are warned about: the fast hash in the config is safe
/// only for long random tokens.
const SHORT_TOKEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewArgs {
    pub name: String,
    pub role: &'static str,
    pub expires: Option<Expiry>,
    /// Write the token there (created, mode 0600) instead of printing it.
    pub token_file: Option<PathBuf>,
}

/// `--expires`: a date (the token expires at 00:00 UTC that day) or an RFC 3339 time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    /// The value written into the entry: the date as given, or the time in UTC (`...Z`).
    pub value: String,
    pub at: jiff::Timestamp,
}

/// A token's name: 1 to 64 letters, digits, `.`, `_` or `-` (as the config takes it).
pub fn check_name(name: &str) -> Result<(), String> {
    if crate::policy::valid_name(name) {
        Ok(())
    } else {
        Err(format!(
            "--name '{}': expected 1 to {} letters, digits, '.', '_' or '-'",
            name.escape_debug(),
            crate::policy::MAX_NAME
        ))
    }
}

/// A role's name, as the config spells it (lower case only: what the entry will say).
pub fn check_role(role: &str) -> Result<&'static str, String> {
    Role::ALL
        .iter()
        .map(|r| r.name())
        .find(|r| *r == role)
        .ok_or_else(|| {
            format!(
                "--role '{}': expected one of {}",
                role.escape_debug(),
                Role::ALL.map(|r| r.name()).join(", ")
            )
        })
}

/// `--expires` as of `now`: what the config's `expires` takes, refused unless in the future.
pub fn parse_expires(s: &str, now: jiff::Timestamp) -> Result<Expiry, String> {
    let at = crate::policy::parse_expires(s).map_err(|_| {
        format!(
            "--expires '{}': {}",
            s.escape_debug(),
            crate::policy::EXPIRES_FORMS
        )
    })?;
    let e = Expiry {
        // A date is kept as given; a time is written in UTC.
        value: if s.len() == 10 {
            s.to_string()
        } else {
            at.to_string()
        },
        at,
    };
    if e.at <= now {
        return Err(format!(
            "--expires '{}' is in the past ({} UTC; now is {}): a token that has expired is refused",
            s.escape_debug(),
            shown(e.at),
            shown(now)
        ));
    }
    Ok(e)
}

/// `2027-06-30 00:00` (UTC), for messages.
fn shown(t: jiff::Timestamp) -> String {
    let d = jiff::tz::Offset::UTC.to_datetime(t);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        d.year(),
        d.month(),
        d.day(),
        d.hour(),
        d.minute()
    )
}

/// A new token: `ndb_` and 32 random bytes from the OS as 43 base64url characters.
pub fn generate() -> std::io::Result<Zeroizing<String>> {
    let mut bytes = Zeroizing::new([0u8; TOKEN_BYTES]);
    getrandom::fill(&mut bytes[..]).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut t = Zeroizing::new(String::with_capacity(TOKEN_PREFIX.len() + 44));
    t.push_str(TOKEN_PREFIX);
    URL_SAFE_NO_PAD.encode_string(&bytes[..], &mut t);
    Ok(t)
}

/// The `api_tokens:` entry (indented as an item of that list), every line ending in `\n`.
pub fn yaml_entry(name: &str, role: &str, sha256: &str, expires: Option<&Expiry>) -> String {
    let mut y = format!("  - name: \"{name}\"\n    token_sha256: \"{sha256}\"\n    role: {role}\n");
    if let Some(e) = expires {
        y.push_str(&format!("    expires: \"{}\"\n", e.value));
    }
    y
}

/// Write the token to `path`: a new file (never an existing one, nor through a symlink), mode
/// 0600. A file left half-written is removed.
fn write_token_file(path: &Path, token: &str) -> Result<(), StartError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            let context = if e.kind() == std::io::ErrorKind::AlreadyExists {
                format!(
                    "--token-file {}: it exists (not overwritten: give a new path)",
                    path.display()
                )
            } else {
                format!("--token-file {}: cannot create it", path.display())
            };
            StartError::io(context, e)
        })?;
    let written = f
        .write_all(format!("{token}\n").as_bytes())
        .and_then(|()| f.sync_all());
    if let Err(e) = written {
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(StartError::io(
            format!("--token-file {}: cannot write it", path.display()),
            e,
        ));
    }
    Ok(())
}

/// `token new`: make the token, write it to `--token-file` if given, and return what to print
/// on standard output: comment lines, the token (unless written to the file) and the entry.
pub fn new(a: &NewArgs) -> Result<Zeroizing<String>, StartError> {
    let token =
        generate().map_err(|e| StartError::io("cannot read random bytes from the OS", e))?;
    let sha = token_sha256(&token);
    let expiry = a
        .expires
        .as_ref()
        .map(|e| format!(", expires {} UTC", shown(e.at)))
        .unwrap_or_default();
    let mut out = Zeroizing::new(String::with_capacity(1024));
    if let Some(path) = &a.token_file {
        write_token_file(path, &token)?;
        out.push_str(&format!(
            "# Token for '{}' ({}{expiry}) written to {} (mode 0600); the broker keeps only its SHA-256.\n",
            a.name,
            a.role,
            path.display()
        ));
    } else {
        out.push_str(&format!(
            "# Token for '{}' ({}{expiry}). It is shown only now; the broker keeps only its SHA-256.\n",
            a.name, a.role
        ));
        out.push_str(&token);
        out.push('\n');
    }
    out.push_str(&format!(
        "# Paste under api_tokens: in {}, then reload: systemctl reload netdev-broker\n",
        crate::config::DEFAULT_CONFIG_PATH
    ));
    out.push_str(&yaml_entry(&a.name, a.role, &sha, a.expires.as_ref()));
    Ok(out)
}

/// Why `token` cannot be a token, if it cannot: empty, or with whitespace or control characters
/// (a client could not send it intact in a header).
pub fn check_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("empty token".into());
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(
            "the token has spaces or control characters: an HTTP header cannot carry it intact"
                .into(),
        );
    }
    Ok(())
}

/// `token hash`: the token from the first line of standard input (asked without echo on a
/// terminal), its `token_sha256`; a warning on standard error for a short token.
pub fn hash() -> Result<String, String> {
    let token = crate::cmd::hash::read_secret_line("Token: ", "token")?;
    check_token(token.expose())?;
    let n = token.expose().chars().count();
    if n < SHORT_TOKEN {
        eprintln!(
            "warning: a short token ({n} characters): the config's SHA-256 is safe only for long \
             random tokens (netdev-broker token new, or openssl rand -hex 32)"
        );
    }
    Ok(token_sha256(token.expose()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn names_and_roles() {
        for ok in ["ansible-prod", "a", "A.b_c-9", &"x".repeat(64)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "has space", "ü", "a/b", "a:b", &"x".repeat(65), "a\n"] {
            let e = check_name(bad).unwrap_err();
            assert!(e.contains("1 to 64 letters"), "{bad}: {e}");
        }
        assert_eq!(check_role("operator"), Ok("operator"));
        for r in Role::ALL.map(|r| r.name()) {
            assert_eq!(check_role(r), Ok(r));
        }
        let e = check_role("Admin").unwrap_err();
        assert!(e.contains("viewer, reader, operator, admin"), "{e}");
        assert!(check_role("root").is_err());
    }

    #[test]
    fn expires_dates_and_times() {
        let now = ts("2026-01-15T12:00:00Z");
        let d = parse_expires("2027-06-30", now).unwrap();
        assert_eq!(d.value, "2027-06-30");
        assert_eq!(d.at, ts("2027-06-30T00:00:00Z"));
        let t = parse_expires("2027-06-30T20:00:00+02:00", now).unwrap();
        assert_eq!(t.value, "2027-06-30T18:00:00Z");
        assert_eq!(t.at, ts("2027-06-30T18:00:00Z"));
        let t = parse_expires("2026-01-15t12:00:00.5z", now).unwrap();
        assert_eq!(t.value, "2026-01-15T12:00:00.5Z");
        // Today's date expired at midnight; an instant not after now is refused as well.
        for past in [
            "2026-01-15",
            "2020-01-01",
            "2026-01-15T12:00:00Z",
            "2026-01-15T13:00:00+01:00",
        ] {
            let e = parse_expires(past, now).unwrap_err();
            assert!(e.contains("is in the past"), "{past}: {e}");
        }
        for bad in [
            "",
            "tomorrow",
            "2027-6-30",
            "20270630",
            "2027-02-30",
            "2027-13-01",
            "2027-06-30T18:00:00",
            "2027-06-30T18:00Z",
            "2027-06-30T25:00:00Z",
            "2027-06-30T18:00:00Z[UTC]",
            " 2027-06-30",
        ] {
            let e = parse_expires(bad, now).unwrap_err();
            assert!(e.contains("expected a date YYYY-MM-DD"), "{bad}: {e}");
        }
    }

    #[test]
    fn tokens_are_prefixed_random_base64url() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(*a, *b);
        for t in [&a, &b] {
            assert_eq!(t.len(), 47, "{}", t.as_str());
            assert!(t.starts_with("ndb_"));
            assert!(t[4..]
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
            let raw = URL_SAFE_NO_PAD.decode(&t[4..]).unwrap();
            assert_eq!(raw.len(), 32);
            assert!(check_token(t).is_ok());
        }
    }

    #[test]
    fn entry_and_output() {
        let now = ts("2026-01-15T12:00:00Z");
        let e = parse_expires("2027-06-30", now).unwrap();
        assert_eq!(
            yaml_entry("ansible-prod", "operator", "ab12", Some(&e)),
            "  - name: \"ansible-prod\"\n    token_sha256: \"ab12\"\n    role: operator\n    expires: \"2027-06-30\"\n"
        );
        let a = NewArgs {
            name: "ci".into(),
            role: "viewer",
            expires: None,
            token_file: None,
        };
        let out = new(&a).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 6, "{}", out.as_str());
        assert!(lines[0].starts_with("# Token for 'ci' (viewer). It is shown only now"));
        let token = lines[1];
        assert!(token.starts_with("ndb_") && token.len() == 47);
        assert!(lines[2].starts_with("# Paste under api_tokens: in /etc/netdev-broker/config.yml"));
        assert_eq!(lines[3], "  - name: \"ci\"");
        assert_eq!(
            lines[4],
            format!("    token_sha256: \"{}\"", token_sha256(token))
        );
        assert_eq!(lines[5], "    role: viewer");
    }

    #[test]
    fn tokens_that_a_header_cannot_carry() {
        assert!(check_token("ndb_x").is_ok());
        for bad in ["", " lead", "trail ", "in side", "tab\t", "nul\0", "cr\r"] {
            assert!(check_token(bad).is_err(), "{bad:?}");
        }
    }
}
