//! The host-key policy (strict, accept-new, ...) and the key blob helpers: SHA-256
//! fingerprints as ssh-keygen prints them, and canonical base64 as known_hosts holds it.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum HostKeyPolicy {
    /// Warn on every connect; accept any key (known_hosts is not read, so `@revoked` lines do
    /// not apply either). Weakest.
    Off = 0,
    /// Record unknown keys, refuse changed ones (the default).
    #[default]
    AcceptNew = 1,
    /// Refuse unknown and changed keys.
    Strict = 2,
}

impl HostKeyPolicy {
    pub fn parse(s: &str) -> Result<HostKeyPolicy, String> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "strict" | "yes" => Ok(HostKeyPolicy::Strict),
            "accept-new" => Ok(HostKeyPolicy::AcceptNew),
            "off" | "no" => Ok(HostKeyPolicy::Off),
            _ => Err(format!(
                "unknown host key policy '{s}' (strict, accept-new or off)"
            )),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            HostKeyPolicy::Strict => "strict",
            HostKeyPolicy::AcceptNew => "accept-new",
            HostKeyPolicy::Off => "off",
        }
    }
}

/// `SHA256:` + unpadded base64 of the SHA-256 of the key blob, as `ssh-keygen -l` prints.
pub fn fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(blob)))
}

/// A key blob as known_hosts writes it: standard base64, padded.
pub fn encode_blob(blob: &[u8]) -> String {
    STANDARD.encode(blob)
}

/// The key blob of a known_hosts line: canonical padded standard base64 only (a missing, short
/// or extra `=`, or stray bits in the last character, make the line unusable).
pub fn decode_blob(b64: &str) -> Option<Vec<u8>> {
    STANDARD.decode(b64).ok()
}

/// The key type named inside an SSH public key blob (`ssh-ed25519`, `ssh-rsa`, ...).
pub fn blob_type(blob: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let name = blob.get(4..4 + len)?;
    std::str::from_utf8(name).ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_fingerprints_match_openssh() {
        assert_eq!(encode_blob(b""), "");
        assert_eq!(encode_blob(b"f"), "Zg==");
        assert_eq!(encode_blob(b"foobar"), "Zm9vYmFy");
        assert_eq!(decode_blob("Zm9vYg==").unwrap(), b"foob");
        // ssh-keygen -lf of this ed25519 public key prints this fingerprint.
        let b = decode_blob("AAAAC3NzaC1lZDI1NTE5AAAAIFNkdBVPFDHbe8TLSuvHK0xVZJTVEWMpEDYpw/Hjowew")
            .unwrap();
        assert_eq!(blob_type(&b).as_deref(), Some("ssh-ed25519"));
        assert_eq!(
            fingerprint(&b),
            "SHA256:Wd9wVYY9oVf3m4O9dp1Nll5Cqed4bgqI27svl9tfaUI"
        );
        // Unpadded, as fingerprints are.
        assert_eq!(fingerprint(b"").len(), "SHA256:".len() + 43);
    }
}
