//! The command allow/deny rules (regular expressions, case ignored) that the command policy
//! applies to every line typed into a device (see `channel::typed`).

use regex::Regex;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_rules_deny_and_allow() {
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
    }
}
