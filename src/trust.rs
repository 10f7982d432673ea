//! What the broker trusts and where it may reach: the host-key policy and its known_hosts file,
//! the SSH algorithm lists (modern by default, legacy SHA-1 only on request), the device
//! allow-list, and the command allow/deny rules. Pure logic plus one file; no sockets.

use crate::transport::ConnectError;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use ipnet::IpNet;
use parking_lot::Mutex;
use regex::Regex;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

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

/// The host key algorithms that produce keys of a key type (RSA keys sign with SHA-2 first).
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

// ---------------------------------------------------------------------------------------------
// Allow-list of devices
// ---------------------------------------------------------------------------------------------

/// CIDRs and hostname globs. Empty: anything.
#[derive(Debug, Clone, Default)]
pub struct HostList {
    cidrs: Vec<IpNet>,
    globs: Vec<String>,
}

impl HostList {
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<HostList, String> {
        let mut l = HostList::default();
        for it in items {
            let s = it.as_ref().trim();
            if s.is_empty() {
                continue;
            }
            // An address alone is a host route (/32, /128); host bits under the prefix are
            // allowed (10.1.2.3/8 is 10.0.0.0/8).
            let net = match s.split_once('/') {
                None => s.parse::<IpAddr>().ok().map(IpNet::from),
                Some((addr, _)) => match s.parse::<IpNet>() {
                    Ok(n) => Some(n),
                    Err(_) if addr.parse::<IpAddr>().is_ok() => {
                        return Err(format!("bad prefix length in '{s}'"))
                    }
                    Err(_) => return Err(format!("'{s}' is not a valid CIDR")),
                },
            };
            if let Some(n) = net {
                l.cidrs.push(n);
                continue;
            }
            let g = s.to_ascii_lowercase();
            if !g
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._*?".contains(&b))
            {
                return Err(format!("'{s}' is neither a CIDR nor a hostname glob"));
            }
            l.globs.push(g);
        }
        Ok(l)
    }

    pub fn has_globs(&self) -> bool {
        !self.globs.is_empty()
    }
    pub fn is_empty(&self) -> bool {
        self.cidrs.is_empty() && self.globs.is_empty()
    }

    pub fn matches_name(&self, name: &str) -> bool {
        let n = name.trim().to_ascii_lowercase();
        self.globs.iter().any(|g| glob(g.as_bytes(), n.as_bytes()))
    }

    /// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is matched as the IPv4 address it is.
    pub fn matches_addr(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.cidrs.iter().any(|net| net.contains(&ip))
    }

    /// Is a target allowed: by its name (glob), or by its address (CIDR)?
    pub fn allows(&self, name: &str, ip: IpAddr) -> bool {
        self.is_empty() || self.matches_name(name) || self.matches_addr(ip)
    }
}

/// `*` any run, `?` one character.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

// ---------------------------------------------------------------------------------------------
// Command rules
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
pub struct CommandRules {
    denied: Vec<Regex>,
    allowed: Vec<Regex>,
}

impl CommandRules {
    pub fn new<S: AsRef<str>>(denied: &[S], allowed: &[S]) -> Result<CommandRules, String> {
        // Device CLIs ignore case and repeated blanks, so the rules do too.
        let c = |v: &[S]| -> Result<Vec<Regex>, String> {
            v.iter()
                .map(|p| {
                    regex::RegexBuilder::new(p.as_ref())
                        .case_insensitive(true)
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| format!("bad pattern {:?}: {e}", p.as_ref()))
                })
                .collect()
        };
        Ok(CommandRules {
            denied: c(denied)?,
            allowed: c(allowed)?,
        })
    }

    /// No rule at all: only the characters of a text are checked.
    pub fn is_empty(&self) -> bool {
        self.denied.is_empty() && self.allowed.is_empty()
    }

    /// The denied_commands rule that matches `cmd` (blanks folded by the caller), if any.
    pub fn denies(&self, cmd: &str) -> Option<&str> {
        self.denied
            .iter()
            .find(|r| r.is_match(cmd))
            .map(|r| r.as_str())
    }

    /// `cmd` (blanks folded by the caller) may run as far as allowed_commands goes.
    pub fn allows(&self, cmd: &str) -> bool {
        self.allowed.is_empty() || self.allowed.iter().any(|r| r.is_match(cmd))
    }
}

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

    #[test]
    fn host_lists_and_command_rules() {
        let l = HostList::parse(&[
            "10.0.0.0/8",
            "192.168.1.5",
            "*.lab.example.net",
            "sw?-core",
            "2001:db8::/32",
        ])
        .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(l.allows("x", ip("10.20.30.40")));
        assert!(!l.allows("x", ip("11.0.0.1")));
        assert!(l.allows("x", ip("192.168.1.5")));
        assert!(!l.allows("x", ip("192.168.1.6")));
        assert!(l.allows("SW1.LAB.example.net", ip("8.8.8.8")));
        assert!(l.allows("sw1-core", ip("8.8.8.8")));
        assert!(!l.allows("sw12-core", ip("8.8.8.8")));
        assert!(l.allows("x", ip("2001:db8::1")));
        assert!(l.allows("x", ip("::ffff:10.1.1.1")));
        assert!(HostList::parse(&["10.0.0.0/33"]).is_err());
        assert!(HostList::parse(&["2001:db8::/129"]).is_err());
        assert!(HostList::parse(&["10.0.0.0/"]).is_err());
        assert!(HostList::parse(&["sw1/24"]).is_err());
        // Host bits under the prefix are ignored; ::/0 holds every IPv6 address only.
        let l = HostList::parse(&["172.16.5.9/12", "::/0"]).unwrap();
        assert!(l.allows("x", ip("172.31.255.1")) && !l.allows("x", ip("172.32.0.1")));
        assert!(l.allows("x", ip("fe80::1")) && !l.allows("x", ip("8.8.8.8")));
        assert!(!l.allows("x", ip("::ffff:8.8.8.8")));
        assert!(HostList::parse(&["a b"]).is_err());
        assert!(HostList::parse::<&str>(&[])
            .unwrap()
            .allows("anything", ip("1.1.1.1")));
        let r = CommandRules::new(&["^reload", "^erase\\b"], &[]).unwrap();
        assert_eq!(r.denies("reload in 5"), Some("^reload"));
        assert!(r.denies("show reload").is_none());
        // Case is ignored (blanks are folded by the caller).
        assert!(r.denies("RELOAD at 10:00").is_some());
        assert!(r.denies("erase startup-config").is_some());
        assert!(r.allows("configure terminal"));
        let r = CommandRules::new(&[], &["^show ", "^ping "]).unwrap();
        assert!(r.allows("show version"));
        assert!(!r.allows("configure terminal"));
        assert!(!r.is_empty() && CommandRules::default().is_empty());
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

    /// The ed25519 key of `base64_and_fingerprints_match_openssh`.
    const ED: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIFNkdBVPFDHbe8TLSuvHK0xVZJTVEWMpEDYpw/Hjowew";

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
}
