//! Masking of secrets inside command text (for the command log and application logs).
//! API outputs are never masked: the client asked for them.

use regex::Regex;

pub const MASK: &str = "********";

/// Default patterns, applied in this order. Each masks the value after a keyword that IOS-style
/// configs follow with a secret, optionally after an encryption-type digit (`secret 5 $1$..`):
/// * SNMPv3 users: `auth md5|sha X` and `priv des|3des|aes [128|192|256] Y`;
/// * WLAN: `wpa-psk ascii|hex [0-9] X`;
/// * `snmp-server host ADDR [vrf V] [traps|informs] [version 1|2c] COMMUNITY` (not `version 3`,
///   whose next words are a security level and a user name);
/// * `key config-key password-encrypt X`;
/// * `[message-digest-|authentication-]key [ID] [md5|sha..] [0-9] X` (tacacs-server, radius-server,
///   crypto isakmp, OSPF, NTP), but not `key chain`, `crypto key generate|zeroize|...` or
///   `trusted-key`;
/// * `password`, `secret`, `passphrase`, `pre-shared-key`, `key-string`, `community`, `auth-key`.
pub const DEFAULT_PATTERNS: &[&str] = &[
    r"(?i)\bauth\s+(?:md5|sha\S*)\s+(?P<secret>\S+)",
    r"(?i)\bpriv\s+(?:des56|3des|des|aes(?:-?(?:128|192|256)|\s+(?:128|192|256))?)\s+(?P<secret>\S+)",
    r"(?i)\bwpa-psk\s+(?:ascii|hex)\s+(?:[0-9]\s+)?(?P<secret>\S+)",
    r"(?i)\bsnmp-server\s+host\s+\S+\s+(?:vrf\s+\S+\s+)?(?:(?:traps|informs)\s+)?(?:version\s+3\b|(?:version\s+(?:1|2c)\s+)?(?P<secret>\S+))",
    r"(?i)\bpassword-encrypt\s+(?P<secret>\S+)",
    r"(?i)(?:^|\s)(?:message-digest-key|authentication-key|key)\s+(?:(?:chain|config-key|generate|zeroize|import|export|pubkey-chain|storage|encryption|exchange|pair)\b|(?:\d+\s+)?(?:(?:md5|sha\S*|hmac-sha\S*)\s+)?(?:[0-9]\s+)?(?P<secret>\S+))",
    r"(?i)\b(?:password|secret|passphrase|pre-shared-key|key-string|community|auth-key)\s+(?:[0-9]\s+)?(?P<secret>\S+)",
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

    /// Every default form: the secrets masked, the words around them kept.
    #[test]
    fn default_patterns_cover_the_common_secret_forms() {
        let m = Masker::default();
        let cases = [
            (
                "snmp-server user NMS NMSGROUP v3 auth md5 AuthPass1 priv aes 128 PrivPass2",
                "snmp-server user NMS NMSGROUP v3 auth md5 ******** priv aes 128 ********",
            ),
            (
                "snmp-server user nms g v3 auth sha AuthPass1 priv 3des PrivPass2",
                "snmp-server user nms g v3 auth sha ******** priv 3des ********",
            ),
            (
                "snmp-server user admin network-admin auth sha AuthPass1 priv aes-128 PrivPass2",
                "snmp-server user admin network-admin auth sha ******** priv aes-128 ********",
            ),
            (
                "snmp-server community Publ1c RO 10",
                "snmp-server community ******** RO 10",
            ),
            (
                "snmp-server host 10.1.1.1 version 2c C0mm udp-port 162",
                "snmp-server host 10.1.1.1 version 2c ******** udp-port 162",
            ),
            (
                "snmp-server host 10.1.1.1 traps version 1 C0mm",
                "snmp-server host 10.1.1.1 traps version 1 ********",
            ),
            (
                "snmp-server host 10.1.1.1 informs version 2c C0mm",
                "snmp-server host 10.1.1.1 informs version 2c ********",
            ),
            (
                "snmp-server host 10.1.1.1 C0mm",
                "snmp-server host 10.1.1.1 ********",
            ),
            (
                "snmp-server host 10.1.1.1 traps C0mm",
                "snmp-server host 10.1.1.1 traps ********",
            ),
            (
                "snmp-server host 10.1.1.1 vrf MGMT version 2c C0mm",
                "snmp-server host 10.1.1.1 vrf MGMT version 2c ********",
            ),
            (
                " ip ospf message-digest-key 1 md5 Md5Key",
                " ip ospf message-digest-key 1 md5 ********",
            ),
            (
                " ip ospf message-digest-key 10 md5 7 0822455D0A16",
                " ip ospf message-digest-key 10 md5 7 ********",
            ),
            (
                "ntp authentication-key 1 md5 NtpKey",
                "ntp authentication-key 1 md5 ********",
            ),
            (
                "ntp authentication-key 2 md5 0822455D0A16 7",
                "ntp authentication-key 2 md5 ******** 7",
            ),
            (
                " ip ospf authentication-key 7 0822455D0A16",
                " ip ospf authentication-key 7 ********",
            ),
            (" wpa-psk ascii 0 WlanPsk", " wpa-psk ascii 0 ********"),
            (" wpa-psk hex 7 0A1B2C", " wpa-psk hex 7 ********"),
            (" wpa-psk ascii WlanPsk", " wpa-psk ascii ********"),
            (" pre-shared-key Psk1", " pre-shared-key ********"),
            (" pre-shared-key 0 Psk1", " pre-shared-key 0 ********"),
            (
                "tacacs-server key 7 0822455D0A16",
                "tacacs-server key 7 ********",
            ),
            ("radius-server key 0 RadKey", "radius-server key 0 ********"),
            (" key 7 0822455D0A16", " key 7 ********"),
            ("key 0 Plain", "key 0 ********"),
            (" key-string KeyStr", " key-string ********"),
            (" key-string 7 0822455D0A16", " key-string 7 ********"),
            (
                "key config-key password-encrypt Master1",
                "key config-key password-encrypt ********",
            ),
            (
                "crypto isakmp key K3y address 1.2.3.4",
                "crypto isakmp key ******** address 1.2.3.4",
            ),
            (
                "username bob privilege 15 secret 9 $9$abc",
                "username bob privilege 15 secret 9 ********",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(m.mask(input), want, "{input}");
        }
    }

    /// Commands that hold no secret are left alone.
    #[test]
    fn default_patterns_leave_non_secrets_alone() {
        let m = Masker::default();
        for text in [
            "show version",
            "show snmp user",
            "key chain OSPF-KEYS",
            "crypto key generate rsa modulus 2048",
            "crypto key zeroize rsa",
            "ntp trusted-key 1",
            "ntp authenticate",
            "snmp-server host 10.1.1.1 version 3 priv nmsuser",
            "snmp-server host 10.1.1.1 informs version 3 auth nmsuser",
            "snmp-server group NMS v3 priv read V1",
            "service password-encryption",
            " ip ospf authentication message-digest",
            "aaa authentication login default group tacacs+ local",
            "interface GigabitEthernet0/1",
        ] {
            assert_eq!(m.mask(text), text, "{text}");
        }
    }

    /// config.example.yml shows the defaults exactly (commented out).
    #[test]
    fn example_config_lists_the_defaults() {
        let example = include_str!("../../config.example.yml");
        let listed: Vec<&str> = example
            .lines()
            .skip_while(|l| *l != "# mask_patterns:")
            .skip(1)
            .map_while(|l| l.strip_prefix("#   - '")?.strip_suffix('\''))
            .collect();
        assert_eq!(listed, DEFAULT_PATTERNS);
    }

    #[test]
    fn custom_patterns_need_a_group() {
        assert!(Masker::new(&["token \\S+"]).is_err());
        assert!(Masker::new(&["("]).is_err());
        let m = Masker::new(&["token (\\S+)"]).unwrap();
        assert_eq!(m.mask("set token abc"), "set token ********");
    }
}
