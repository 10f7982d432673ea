//! The broker's own known_hosts file (OpenSSH format, hashed and `@revoked` lines read):
//! lookups by host and port, and appends of newly accepted keys, serialised.

use super::host_keys::{blob_type, decode_blob, encode_blob, fingerprint, HostKeyPolicy};
use super::reach::glob;
use crate::transport::ConnectError;
use parking_lot::Mutex;
use std::io::Write;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// known_hosts
// ---------------------------------------------------------------------------------------------

/// The host key a device presented, and what the policy made of it.
#[derive(Debug, Clone)]
pub struct HostKeySeen {
    pub key_type: String,
    pub fingerprint: String,
    /// "known", "recorded", "unchecked".
    pub verdict: &'static str,
}

/// The broker's own known_hosts file (OpenSSH format). Reads and appends are serialised.
#[derive(Debug)]
pub struct KnownHosts {
    pub path: PathBuf,
    lock: Mutex<()>,
}

struct Entry {
    hosts: Hosts,
    /// `@revoked`: this key must never be accepted for the hosts of the line.
    revoked: bool,
    key_type: String,
    blob: Vec<u8>,
}

/// The host field of a known_hosts line.
enum Hosts {
    /// Comma-separated patterns (`*`, `?`, `!` negation), lowercased.
    Patterns(Vec<String>),
    /// `|1|salt|hash` (ssh-keygen -H, HashKnownHosts): HMAC-SHA1 of the name, keyed by the salt.
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
}

impl Hosts {
    fn parse(field: &str) -> Option<Hosts> {
        let Some(hashed) = field.strip_prefix("|1|") else {
            return Some(Hosts::Patterns(
                field.split(',').map(|h| h.to_ascii_lowercase()).collect(),
            ));
        };
        let (salt, hash) = hashed.split_once('|')?;
        let (salt, hash) = (decode_blob(salt)?, decode_blob(hash)?);
        (salt.len() == 20 && hash.len() == 20).then_some(Hosts::Hashed { salt, hash })
    }

    /// `name` as [`host_entry_name`] writes it.
    fn matches(&self, name: &str) -> bool {
        match self {
            Hosts::Patterns(p) => pattern_matches(p, name),
            Hosts::Hashed { salt, hash } => {
                use hmac::Mac;
                let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(salt) else {
                    return false;
                };
                mac.update(name.as_bytes());
                mac.verify_slice(hash).is_ok()
            }
        }
    }
}

/// The host name as known_hosts writes it: `host` on port 22, `[host]:port` otherwise.
pub fn host_entry_name(host: &str, port: u16) -> String {
    let h = host.trim().to_ascii_lowercase();
    if port == 22 {
        h
    } else {
        format!("[{h}]:{port}")
    }
}

fn pattern_matches(patterns: &[String], name: &str) -> bool {
    let mut hit = false;
    for p in patterns {
        if let Some(neg) = p.strip_prefix('!') {
            if glob(neg.as_bytes(), name.as_bytes()) {
                return false;
            }
        } else if glob(p.as_bytes(), name.as_bytes()) {
            hit = true;
        }
    }
    hit
}

impl KnownHosts {
    pub fn new(path: PathBuf) -> KnownHosts {
        KnownHosts {
            path,
            lock: Mutex::new(()),
        }
    }

    fn entries(path: &Path) -> Result<Vec<Entry>, ConnectError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(ConnectError::Local {
                    context: format!("cannot read {}", path.display()),
                    source,
                })
            }
        };
        let mut out = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut f = line.split_whitespace();
            // `@revoked` is honoured; `@cert-authority` lines are not used (no certificates).
            let revoked = match line.starts_with('@').then(|| f.next()).flatten() {
                None => false,
                Some("@revoked") => true,
                Some(_) => continue,
            };
            let (Some(hosts), Some(kt), Some(b64)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let (Some(hosts), Some(blob)) = (Hosts::parse(hosts), decode_blob(b64)) else {
                continue;
            };
            out.push(Entry {
                hosts,
                revoked,
                key_type: kt.to_string(),
                blob,
            });
        }
        Ok(out)
    }

    /// Key types already known for this host (to prefer them in the key exchange, as OpenSSH
    /// does, so a host known by its ECDSA key is asked for that key).
    pub fn known_types(&self, host: &str, port: u16) -> Vec<String> {
        let name = host_entry_name(host, port);
        let _g = self.lock.lock();
        let mut v: Vec<String> = Self::entries(&self.path)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| !e.revoked && e.hosts.matches(&name))
            .map(|e| e.key_type)
            .collect();
        v.dedup();
        v
    }

    /// Check the presented key under `policy`; record it if the policy says so.
    pub fn verify(
        &self,
        host: &str,
        port: u16,
        blob: &[u8],
        policy: HostKeyPolicy,
    ) -> Result<HostKeySeen, ConnectError> {
        let name = host_entry_name(host, port);
        let key_type = blob_type(blob).unwrap_or_else(|| "unknown".into());
        let fp = fingerprint(blob);
        let seen = |verdict| HostKeySeen {
            key_type: key_type.clone(),
            fingerprint: fp.clone(),
            verdict,
        };
        if policy == HostKeyPolicy::Off {
            log::warn!("{name}: host key NOT checked (host_key_policy off): {key_type} {fp}");
            return Ok(seen("unchecked"));
        }
        let _g = self.lock.lock();
        let entries = Self::entries(&self.path)?;
        let (revoked, mine): (Vec<&Entry>, Vec<&Entry>) = entries
            .iter()
            .filter(|e| e.hosts.matches(&name))
            .partition(|e| e.revoked);
        if revoked
            .iter()
            .any(|e| e.key_type == key_type && e.blob == blob)
        {
            return Err(ConnectError::HostKey {
                message: format!(
                "host key for {name} is revoked: known_hosts ({}) marks {key_type} {fp} @revoked; \
                 the device may be using a stolen key",
                self.path.display()
            ),
            });
        }
        if mine
            .iter()
            .any(|e| e.key_type == key_type && e.blob == blob)
        {
            return Ok(seen("known"));
        }
        // Only an entry of the same key type can be contradicted; an entry of another type
        // (the host also has an ECDSA key) is not a mismatch.
        if let Some(old) = mine.iter().find(|e| e.key_type == key_type) {
            return Err(ConnectError::HostKey { message: format!(
                "host key mismatch for {name}: known_hosts ({}) has {key_type} {}, the device presented {key_type} {fp}. \
                 The key was not replaced; if the device was really re-keyed, remove the old line \
                 (ssh-keygen -R '{name}' -f {}) and connect again",
                self.path.display(),
                fingerprint(&old.blob),
                self.path.display()
            ) });
        }
        let other_types: Vec<&str> = mine.iter().map(|e| e.key_type.as_str()).collect();
        if !other_types.is_empty() {
            // Known types are offered first, so a device that still had its known key would
            // have shown it. Only another type now: re-keyed, or not the same device. Never
            // learn that silently.
            return Err(ConnectError::HostKey { message: format!(
                "host key mismatch for {name}: known_hosts ({}) has {} for it, the device presented only {key_type} {fp}. \
                 The key was not recorded; if the device was really re-keyed, remove the old line \
                 (ssh-keygen -R '{name}' -f {}) and connect again",
                self.path.display(),
                other_types.join(", "),
                self.path.display()
            ) });
        }
        if policy == HostKeyPolicy::Strict {
            return Err(ConnectError::HostKey {
                message: format!(
                    "host key for {name} is not known (host_key_policy strict): {key_type} {fp}"
                ),
            });
        }
        let line = format!("{name} {key_type} {}\n", encode_blob(blob));
        self.append(&line).map_err(|source| ConnectError::Local {
            context: format!("cannot record the host key in {}", self.path.display()),
            source,
        })?;
        log::info!("{name}: new host key recorded: {key_type} {fp}");
        Ok(seen("recorded"))
    }

    fn append(&self, line: &str) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        f.write_all(line.as_bytes())?;
        f.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(kt: &str, payload: &[u8]) -> Vec<u8> {
        let mut b = (kt.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kt.as_bytes());
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn known_hosts_policies() {
        let dir = std::env::temp_dir().join(format!("nb-kh-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let kh = KnownHosts::new(dir.join("known_hosts"));
        let a = blob("ssh-ed25519", b"key-a");
        let b = blob("ssh-ed25519", b"key-b");
        let e = blob("ecdsa-sha2-nistp256", b"key-e");
        // strict: unknown refused, nothing written.
        let err = kh
            .verify("10.0.0.1", 2222, &a, HostKeyPolicy::Strict)
            .unwrap_err();
        assert!(err.to_string().contains("not known"), "{err}");
        assert!(!kh.path.exists());
        // accept-new records; then known; a changed key of the same type is a mismatch.
        assert_eq!(
            kh.verify("10.0.0.1", 2222, &a, HostKeyPolicy::AcceptNew)
                .unwrap()
                .verdict,
            "recorded"
        );
        assert_eq!(
            kh.verify("10.0.0.1", 2222, &a, HostKeyPolicy::Strict)
                .unwrap()
                .verdict,
            "known"
        );
        let err = kh
            .verify("10.0.0.1", 2222, &b, HostKeyPolicy::AcceptNew)
            .unwrap_err();
        let m = err.to_string();
        assert!(
            m.contains("host key mismatch")
                && m.contains(&fingerprint(&a))
                && m.contains(&fingerprint(&b)),
            "{m}"
        );
        assert!(matches!(err, ConnectError::HostKey { .. }), "{err:?}");
        // Another port is another host.
        assert_eq!(
            kh.verify("10.0.0.1", 22, &b, HostKeyPolicy::AcceptNew)
                .unwrap()
                .verdict,
            "recorded"
        );
        // Only another key type where one is known: refused as well, and not recorded.
        let m = kh
            .verify("10.0.0.1", 2222, &e, HostKeyPolicy::AcceptNew)
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("host key mismatch") && m.contains("presented only ecdsa-sha2-nistp256"),
            "{m}"
        );
        // A second type listed by the operator is known, and both are offered first.
        kh.append(&format!(
            "[10.0.0.1]:2222 ecdsa-sha2-nistp256 {}\n",
            encode_blob(&e)
        ))
        .unwrap();
        assert_eq!(
            kh.known_types("10.0.0.1", 2222),
            ["ssh-ed25519", "ecdsa-sha2-nistp256"]
        );
        for k in [&a, &e] {
            assert_eq!(
                kh.verify("10.0.0.1", 2222, k, HostKeyPolicy::Strict)
                    .unwrap()
                    .verdict,
                "known"
            );
        }
        let text = std::fs::read_to_string(&kh.path).unwrap();
        assert!(
            text.starts_with("[10.0.0.1]:2222 ssh-ed25519 AAAA"),
            "{text}"
        );
        assert!(text.contains("\n10.0.0.1 ssh-ed25519 "));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&kh.path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // off: anything goes, nothing written.
        let before = std::fs::read_to_string(&kh.path).unwrap();
        assert_eq!(
            kh.verify("10.9.9.9", 22, &b, HostKeyPolicy::Off)
                .unwrap()
                .verdict,
            "unchecked"
        );
        assert_eq!(std::fs::read_to_string(&kh.path).unwrap(), before);
        std::fs::remove_dir_all(&dir).ok();
        assert!(HostKeyPolicy::Strict > HostKeyPolicy::AcceptNew);
        assert_eq!(
            HostKeyPolicy::parse("accept_new").unwrap(),
            HostKeyPolicy::AcceptNew
        );
        assert!(HostKeyPolicy::parse("maybe").is_err());
    }

    fn known_hosts_with(tag: &str, text: &str) -> (KnownHosts, PathBuf) {
        let dir = std::env::temp_dir().join(format!("nb-kh-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let kh = KnownHosts::new(dir.join("known_hosts"));
        std::fs::write(&kh.path, text).unwrap();
        (kh, dir)
    }

    /// Hashed names (`ssh-keygen -H`) match their host; they were skipped.
    #[test]
    fn known_hosts_hashed_lines_match_their_host() {
        // `ssh-keygen -H` of the plain lines for 10.0.0.1, [10.0.0.1]:2222 and sw1.lab.
        let text = format!(
            "|1|GQN4so4U8ZcplXqj0LgWhPHa2D0=|ZjdksHmw0/S+1Z1ZKL12ENxv01M= ssh-ed25519 {ED}\n\
             |1|6iPLrrZittM1KG/tZnpfFDl7eJc=|5Rnr67bKhgNsLnTHp6hylfzesjw= ssh-ed25519 {ED}\n\
             |1|yLzxXH+1JqEX2HVt8HGqRyb3Wvk=|pQqL7yeb8MWfyTXd/i6i0/ADDPU= ssh-ed25519 {ED}\n\
             |1|bm90IGJhc2U2NA|xx ssh-ed25519 {ED}\n"
        );
        let (kh, dir) = known_hosts_with("hashed", &text);
        let ed = decode_blob(ED).unwrap();
        for (host, port) in [("10.0.0.1", 22), ("10.0.0.1", 2222), ("SW1.lab", 22)] {
            let seen = kh.verify(host, port, &ed, HostKeyPolicy::Strict);
            assert_eq!(seen.unwrap().verdict, "known", "{host}:{port}");
        }
        assert_eq!(kh.known_types("10.0.0.1", 2222), ["ssh-ed25519"]);
        assert!(kh.known_types("10.0.0.1", 2223).is_empty());
        let err = kh
            .verify("10.0.0.2", 22, &ed, HostKeyPolicy::Strict)
            .unwrap_err();
        assert!(err.to_string().contains("not known"), "{err}");
        // A hashed line is an entry like any other: another key for its host is a mismatch.
        let other = blob("ssh-ed25519", b"key-b");
        let err = kh
            .verify("10.0.0.1", 2222, &other, HostKeyPolicy::AcceptNew)
            .unwrap_err();
        assert!(err.to_string().contains("host key mismatch"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A key marked `@revoked` is refused (it was skipped, and so could be recorded anew).
    #[test]
    fn known_hosts_revoked_keys_are_refused() {
        let a = blob("ssh-ed25519", b"key-a");
        let b = blob("ssh-ed25519", b"key-b");
        let text = format!(
            "@revoked 10.0.0.1,sw?.lab ssh-ed25519 {a64}\n\
             @cert-authority * ssh-ed25519 {b64}\n\
             @revoked |1|GQN4so4U8ZcplXqj0LgWhPHa2D0=|ZjdksHmw0/S+1Z1ZKL12ENxv01M= ssh-ed25519 {b64}\n\
             sw1.lab ssh-ed25519 {a64}\n",
            a64 = encode_blob(&a),
            b64 = encode_blob(&b),
        );
        let (kh, dir) = known_hosts_with("revoked", &text);
        for policy in [HostKeyPolicy::AcceptNew, HostKeyPolicy::Strict] {
            // Revoked, even where a plain line lists the same key.
            for host in ["10.0.0.1", "sw1.lab"] {
                let err = kh.verify(host, 22, &a, policy).unwrap_err();
                assert!(err.to_string().contains("revoked"), "{host}: {err}");
                assert!(matches!(err, ConnectError::HostKey { .. }), "{err:?}");
            }
            // Through a hashed name too (10.0.0.1).
            let err = kh.verify("10.0.0.1", 22, &b, policy).unwrap_err();
            assert!(err.to_string().contains("revoked"), "{err}");
        }
        // A revoked line is no known key: it neither makes another key a mismatch nor counts
        // as a known type; the other key is learnt under accept-new.
        assert!(kh.known_types("10.0.0.1", 22).is_empty());
        assert_eq!(kh.known_types("sw1.lab", 22), ["ssh-ed25519"]);
        assert_eq!(
            kh.verify("sw2.lab", 22, &b, HostKeyPolicy::AcceptNew)
                .unwrap()
                .verdict,
            "recorded"
        );
        // The revoked key is fine for a host its line does not name.
        assert_eq!(
            kh.verify("10.0.0.9", 22, &a, HostKeyPolicy::AcceptNew)
                .unwrap()
                .verdict,
            "recorded"
        );
        let text = std::fs::read_to_string(&kh.path).unwrap();
        assert_eq!(text.lines().count(), 6, "{text}");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// The old decoder dropped any run of `=` and accepted stray bits; known_hosts blobs are
    /// padded standard base64, so only the canonical form is read.
    #[test]
    fn known_hosts_base64_must_be_canonical() {
        for bad in [
            "Zm9vYg",
            "Zm9vYg=",
            "Zm9vYg===",
            "Zm9vYh==",
            "Zg=a",
            "Zm9v=",
            "Zm9v YmFy",
            "Zm9v-_",
        ] {
            assert!(decode_blob(bad).is_none(), "{bad}");
        }
        let dir = std::env::temp_dir().join(format!("nb-kh64-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let kh = KnownHosts::new(dir.join("known_hosts"));
        let a = blob("ssh-ed25519", b"key-a");
        let padded = encode_blob(&a);
        assert!(padded.ends_with('='), "{padded}");
        // The key's line with its padding cut is not read: the key is not known.
        std::fs::write(
            &kh.path,
            format!("h1 ssh-ed25519 {}\n", padded.trim_end_matches('=')),
        )
        .unwrap();
        let err = kh.verify("h1", 22, &a, HostKeyPolicy::Strict).unwrap_err();
        assert!(err.to_string().contains("not known"), "{err}");
        std::fs::write(&kh.path, format!("h1 ssh-ed25519 {padded}\n")).unwrap();
        assert_eq!(
            kh.verify("h1", 22, &a, HostKeyPolicy::Strict)
                .unwrap()
                .verdict,
            "known"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    /// The ed25519 key whose fingerprint `host_keys::tests` checks.
    const ED: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIFNkdBVPFDHbe8TLSuvHK0xVZJTVEWMpEDYpw/Hjowew";
}
