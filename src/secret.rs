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
    /// Constant-time comparison (for the API token): the time does not depend on where the
    /// bytes differ, only on whether the lengths do.
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        subtle::ConstantTimeEq::ct_eq(self.0.as_bytes(), other).into()
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

/// The SHA-256 of a token, as 64 lowercase hex characters: what a named token's `token_sha256`
/// in the config holds (the exact string a client sends in `X-API-Token`, nothing trimmed).
/// A fast hash is enough for tokens of 32 random bytes (`netdev-broker token new`): there is no
/// dictionary to try, unlike the web users' passwords (bcrypt).
pub fn token_sha256(token: &str) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(token.as_bytes()))
}

extern "C" {
    /// The C library's environment block (POSIX); its strings are, at start-up, the very bytes
    /// the kernel shows in /proc/PID/environ.
    static mut environ: *mut *mut libc::c_char;
}

/// Read the environment variable `name` as a secret, then wipe its value from the process's
/// environment block (so /proc/PID/environ no longer shows it) and remove the variable.
///
/// Must be called at start-up, before any thread is spawned (the environment is not
/// thread-safe). `remove_var` alone is not enough: it only unlinks the entry and leaves the
/// original bytes where the kernel reads them.
pub fn take_env_secret(name: &str) -> Option<Secret> {
    let value = std::env::var(name).ok().map(Secret::new);
    let key = name.as_bytes();
    // SAFETY: single-threaded at start-up (documented contract). `environ` is a NULL-terminated
    // array of pointers to NUL-terminated strings owned by the process; we only overwrite bytes
    // inside such a string, between its `=` and its terminating NUL, never its length.
    unsafe {
        let mut p = *std::ptr::addr_of!(environ);
        while !p.is_null() && !(*p).is_null() {
            let entry = (*p).cast::<u8>();
            let len = libc::strlen(*p);
            let bytes = std::slice::from_raw_parts_mut(entry, len);
            if len > key.len() && bytes.starts_with(key) && bytes[key.len()] == b'=' {
                for b in &mut bytes[key.len() + 1..] {
                    std::ptr::write_volatile(b, 0);
                }
            }
            p = p.add(1);
        }
    }
    std::env::remove_var(name);
    value
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
    fn token_sha256_is_lowercase_hex_of_the_exact_string() {
        assert_eq!(
            token_sha256("test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        assert_eq!(
            token_sha256(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_ne!(token_sha256("test\n"), token_sha256("test"));
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
