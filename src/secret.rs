//! Secrets (passwords, enable secrets, tokens) whose Debug/Display never show the value and whose
//! memory is zeroed when dropped.

use std::fmt;
use zeroize::Zeroizing;

#[derive(Clone, Default)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(Zeroizing::new(s.into()))
    }
    /// The only way to read the value. Call sites are few and grep-able.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Constant-time comparison (for the API token).
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        let a = self.0.as_bytes();
        let mut diff = (a.len() != other.len()) as u8;
        for (i, x) in a.iter().enumerate() {
            diff |= x ^ other.get(i).copied().unwrap_or(0);
        }
        diff == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(********)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn ct_eq_compares_whole_value() {
        let s = Secret::new("abc");
        assert!(s.ct_eq(b"abc"));
        assert!(!s.ct_eq(b"abd"));
        assert!(!s.ct_eq(b"ab"));
        assert!(!s.ct_eq(b"abcd"));
        assert!(!s.ct_eq(b""));
    }
}
