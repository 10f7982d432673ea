//! Masking of secrets inside command text (for the command log and application logs).
//! API outputs are never masked: the client asked for them.

use regex::Regex;

pub const MASK: &str = "********";

/// Default patterns: the value after `password`, `secret`, `key`, `key-string`, `community`,
/// `passphrase`, `pre-shared-key`, optionally after an IOS encryption-type digit (`secret 5 $1$..`).
pub const DEFAULT_PATTERNS: &[&str] = &[
    r"(?i)\b(?:password|secret|passphrase|pre-shared-key|key-string|community|key|auth-key|authentication-key)\s+(?:[0-9]\s+)?(?P<secret>\S+)",
];

#[derive(Debug, Clone)]
pub struct Masker {
    patterns: Vec<Regex>,
}

impl Default for Masker {
    fn default() -> Self {
        // The defaults are compile-time constants covered by tests; an error here is a bug.
        Masker::new(DEFAULT_PATTERNS).unwrap_or(Masker {
            patterns: Vec::new(),
        })
    }
}

impl Masker {
    /// Each pattern must have a capture group named `secret` (or, failing that, group 1): the
    /// text it captures is replaced by `********`.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Masker, String> {
        let mut out = Vec::new();
        for p in patterns {
            let re = regex::RegexBuilder::new(p.as_ref())
                .size_limit(1 << 20)
                .build()
                .map_err(|e| format!("invalid mask pattern {:?}: {e}", p.as_ref()))?;
            if re.captures_len() < 2 {
                return Err(format!(
                    "mask pattern {:?} needs a capture group (?P<secret>...)",
                    p.as_ref()
                ));
            }
            out.push(re);
        }
        Ok(Masker { patterns: out })
    }

    pub fn mask(&self, text: &str) -> String {
        let mut s = text.to_string();
        for re in &self.patterns {
            let mut spans: Vec<(usize, usize)> = Vec::new();
            for caps in re.captures_iter(&s) {
                if let Some(m) = caps.name("secret").or_else(|| caps.get(1)) {
                    spans.push((m.start(), m.end()));
                }
            }
            for (a, b) in spans.into_iter().rev() {
                s.replace_range(a..b, MASK);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_common_ios_secrets() {
        let m = Masker::default();
        let cases = [
            (
                "username bob password 0 s3cret",
                "username bob password 0 ********",
            ),
            (
                "username bob privilege 15 secret 5 $1$abc$def",
                "username bob privilege 15 secret 5 ********",
            ),
            ("enable secret hunter2", "enable secret ********"),
            (
                "tacacs-server key 7 0822455D0A16",
                "tacacs-server key 7 ********",
            ),
            (
                "snmp-server community public RO",
                "snmp-server community ******** RO",
            ),
            (
                "crypto isakmp key K3y address 1.2.3.4",
                "crypto isakmp key ******** address 1.2.3.4",
            ),
            ("show version", "show version"),
            (
                "aaa authentication login default local",
                "aaa authentication login default local",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(m.mask(input), want, "{input}");
        }
    }

    #[test]
    fn custom_patterns_need_a_group() {
        assert!(Masker::new(&["token \\S+"]).is_err());
        assert!(Masker::new(&["("]).is_err());
        let m = Masker::new(&["token (\\S+)"]).unwrap();
        assert_eq!(m.mask("set token abc"), "set token ********");
    }
}
