//! The SSH algorithm lists one connection offers: modern by default, legacy SHA-1 and CBC only
//! on request, and the host-key algorithms that match a known key type.

/// The host key algorithms that produce keys of a key type (RSA keys sign with SHA-2 first).
#[cfg(feature = "ssh")]
pub fn algorithms_for_key_type(t: &str) -> &'static [&'static str] {
    match t {
        "ssh-ed25519" => &["ssh-ed25519"],
        "ecdsa-sha2-nistp256" => &["ecdsa-sha2-nistp256"],
        "ecdsa-sha2-nistp384" => &["ecdsa-sha2-nistp384"],
        "ecdsa-sha2-nistp521" => &["ecdsa-sha2-nistp521"],
        "ssh-rsa" => &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
        "ssh-dss" => &["ssh-dss"],
        _ => &[],
    }
}

// ---------------------------------------------------------------------------------------------
// Algorithms
// ---------------------------------------------------------------------------------------------

pub const MODERN_KEX: &[&str] = &[
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group-exchange-sha256",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group14-sha256",
];
pub const LEGACY_KEX: &[&str] = &[
    "diffie-hellman-group14-sha1",
    "diffie-hellman-group-exchange-sha1",
    "diffie-hellman-group1-sha1",
];
pub const MODERN_HOST_KEY: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
];
pub const LEGACY_HOST_KEY: &[&str] = &["ssh-rsa", "ssh-dss"];
pub const MODERN_CIPHERS: &[&str] = &[
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
];
pub const LEGACY_CIPHERS: &[&str] = &["aes256-cbc", "aes192-cbc", "aes128-cbc", "3des-cbc"];
pub const MODERN_MACS: &[&str] = &[
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256",
    "hmac-sha2-512",
];
pub const LEGACY_MACS: &[&str] = &["hmac-sha1", "hmac-sha1-96"];

/// The algorithm lists one connection offers. `None` in a field: the default for `legacy`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Algorithms {
    pub legacy: bool,
    pub kex: Option<Vec<String>>,
    pub host_key: Option<Vec<String>>,
    pub ciphers: Option<Vec<String>>,
    pub macs: Option<Vec<String>>,
}

impl Algorithms {
    /// (kex, host key, ciphers, macs) in preference order.
    pub fn lists(&self) -> [Vec<String>; 4] {
        let pick = |given: &Option<Vec<String>>, modern: &[&str], legacy: &[&str]| match given {
            Some(v) => v.clone(),
            None => {
                let mut v: Vec<String> = modern.iter().map(|s| s.to_string()).collect();
                if self.legacy {
                    v.extend(legacy.iter().map(|s| s.to_string()));
                }
                v
            }
        };
        [
            pick(&self.kex, MODERN_KEX, LEGACY_KEX),
            pick(&self.host_key, MODERN_HOST_KEY, LEGACY_HOST_KEY),
            pick(&self.ciphers, MODERN_CIPHERS, LEGACY_CIPHERS),
            pick(&self.macs, MODERN_MACS, LEGACY_MACS),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_algorithms_only_on_request() {
        let algs = Algorithms::default().lists();
        assert!(!algs[0].iter().any(|k| k.ends_with("sha1")));
        let legacy = Algorithms {
            legacy: true,
            ..Default::default()
        }
        .lists();
        assert!(legacy[0].contains(&"diffie-hellman-group1-sha1".to_string()));
        assert!(legacy[1].contains(&"ssh-rsa".to_string()));
        assert!(legacy[2].contains(&"3des-cbc".to_string()));
        assert!(legacy[3].contains(&"hmac-sha1".to_string()));
    }
}
