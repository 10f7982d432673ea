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
    fn ct_eq_compares_whole_value() {
        let s = Secret::new("abc");
        assert!(s.ct_eq(b"abc"));
        assert!(!s.ct_eq(b"abd"));
        assert!(!s.ct_eq(b"ab"));
        assert!(!s.ct_eq(b"abcd"));
        assert!(!s.ct_eq(b""));
    }
}
