//! `netdev-broker --version`: the broker's version and the native libraries linked into it.
//!
//! libssh2 is compiled into the binary by `libssh2-sys` (the pinned 1.11.x with the legacy
//! algorithms, `.cargo/config.toml`); OpenSSL is Debian's libssl-dev, linked dynamically in
//! the normal build and statically in the static build (`scripts/build-static.sh`). Both
//! versions are asked of the libraries themselves at run time, so they name what is really
//! inside the binary, not what the headers said at build time.

#[cfg(feature = "ssh")]
use std::ffi::CStr;
#[cfg(feature = "ssh")]
use std::os::raw::{c_char, c_int};

#[cfg(feature = "ssh")]
extern "C" {
    // libssh2.h: `const char *libssh2_version(int req_version_num)`; with 0 it always
    // returns the version string of the library linked in. Not declared by libssh2-sys.
    fn libssh2_version(req_version_num: c_int) -> *const c_char;
    // libssh2.h: which crypto backend libssh2 was built with (1 = OpenSSL).
    fn libssh2_crypto_engine() -> c_int;
}

#[cfg(feature = "ssh")]
fn c_string(p: *const c_char) -> String {
    if p.is_null() {
        return "unknown".into();
    }
    // SAFETY: both libraries return pointers to static NUL-terminated strings.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// The libssh2 version linked in, e.g. "1.11.2_DEV".
#[cfg(feature = "ssh")]
pub fn libssh2() -> String {
    // SAFETY: a pure function of the library returning a static string.
    c_string(unsafe { libssh2_version(0) })
}

/// libssh2's crypto backend.
#[cfg(feature = "ssh")]
pub fn libssh2_crypto() -> &'static str {
    // SAFETY: returns an enum value, no arguments.
    match unsafe { libssh2_crypto_engine() } {
        0 => "none",
        1 => "OpenSSL",
        2 => "libgcrypt",
        3 => "mbedTLS",
        4 => "WinCNG",
        5 => "OS400QC3",
        _ => "unknown",
    }
}

/// The OpenSSL version linked in, e.g. "OpenSSL 3.0.19 27 Jan 2026".
#[cfg(feature = "ssh")]
pub fn openssl() -> String {
    // SAFETY: OpenSSL_version returns a static string for every known key.
    c_string(unsafe { openssl_sys::OpenSSL_version(openssl_sys::OPENSSL_VERSION) })
}

// A build without the `ssh` feature (the fuzz targets', fuzz/) links neither library.
#[cfg(not(feature = "ssh"))]
pub fn libssh2() -> String {
    "none (built without the ssh feature)".into()
}
#[cfg(not(feature = "ssh"))]
pub fn libssh2_crypto() -> &'static str {
    "none"
}
#[cfg(not(feature = "ssh"))]
pub fn openssl() -> String {
    "OpenSSL: none (built without the ssh feature)".into()
}

/// How the C runtime was linked: "static" for the `+crt-static` build, else "dynamic".
pub fn linkage() -> &'static str {
    if cfg!(target_feature = "crt-static") {
        "static"
    } else {
        "dynamic"
    }
}

/// The text `--version` prints.
pub fn long() -> String {
    format!(
        "netdev-broker {}\nlibssh2 {} (crypto: {})\n{}\nlinkage: {} ({}-{})\n",
        env!("CARGO_PKG_VERSION"),
        libssh2(),
        libssh2_crypto(),
        openssl(),
        linkage(),
        std::env::consts::ARCH,
        std::env::consts::OS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_come_from_the_linked_libraries() {
        assert!(libssh2().starts_with("1.11."), "{}", libssh2());
        assert_eq!(libssh2_crypto(), "OpenSSL");
        assert!(openssl().starts_with("OpenSSL 3."), "{}", openssl());
        let l = long();
        assert!(l.starts_with(concat!("netdev-broker ", env!("CARGO_PKG_VERSION"), "\n")));
        assert!(
            l.contains("libssh2 1.11.") && l.contains("\nOpenSSL 3."),
            "{l}"
        );
    }
}
