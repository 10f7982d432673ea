//! The command allow/deny rules (regular expressions, case ignored) that the command policy
//! applies to every line typed into a device (see `channel::typed`).

use regex::Regex;

// ---------------------------------------------------------------------------------------------
// Command rules
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
pub struct CommandRules {
    /// Every layer must allow a command and none may deny it: the config's rules, a token's,
    /// a role's read-only list.
    layers: Vec<Layer>,
}

#[derive(Debug, Clone)]
struct Layer {
    denied: Vec<Regex>,
    allowed: Vec<Regex>,
    /// The key whose rules `allowed` holds, as refusals name it.
    allow_key: &'static str,
    /// Whose rules they are, as refusals name them: "" (the config's) or " of token 'x'".
    of: String,
}

/// A refusal's rule: the rule (or the key of the list that matched nothing) and whose it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule<'a> {
    pub rule: &'a str,
    /// "" for the config's own rules, else " of token 'x'" and the like.
    pub of: &'a str,
}

fn compile<S: AsRef<str>>(v: &[S]) -> Result<Vec<Regex>, String> {
    // Device CLIs ignore case and repeated blanks, so the rules do too.
    v.iter()
        .map(|p| {
            regex::RegexBuilder::new(p.as_ref())
                .case_insensitive(true)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| format!("bad pattern {:?}: {e}", p.as_ref()))
        })
        .collect()
}

impl CommandRules {
    pub fn new<S: AsRef<str>>(denied: &[S], allowed: &[S]) -> Result<CommandRules, String> {
        let layer = Layer {
            denied: compile(denied)?,
            allowed: compile(allowed)?,
            allow_key: "allowed_commands",
            of: String::new(),
        };
        let empty = layer.denied.is_empty() && layer.allowed.is_empty();
        Ok(CommandRules {
            layers: if empty { Vec::new() } else { vec![layer] },
        })
    }

    /// An allow-list of read-only commands (`read_only_commands`): only what matches may run.
    pub fn read_only<S: AsRef<str>>(allowed: &[S]) -> Result<CommandRules, String> {
        let allowed = compile(allowed)?;
        Ok(CommandRules {
            layers: vec![Layer {
                // An empty list allows nothing (a read-only role with no read-only command).
                allowed: if allowed.is_empty() {
                    compile(&["^$"])?
                } else {
                    allowed
                },
                denied: Vec::new(),
                allow_key: "read_only_commands",
                of: String::new(),
            }],
        })
    }

    /// The same rules, named as `whose` in refusals ("token 'ops'").
    pub fn named(mut self, whose: &str) -> CommandRules {
        for l in &mut self.layers {
            l.of = format!(" of {whose}");
        }
        self
    }

    /// These rules and `other`'s together: a command must pass both.
    pub fn and(&self, other: &CommandRules) -> CommandRules {
        let mut layers = self.layers.clone();
        layers.extend(other.layers.iter().cloned());
        CommandRules { layers }
    }

    /// No rule at all: only the characters of a text are checked.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The deny rule that matches `cmd` (blanks folded by the caller), if any.
    pub fn denies(&self, cmd: &str) -> Option<Rule<'_>> {
        self.layers.iter().find_map(|l| {
            l.denied.iter().find(|r| r.is_match(cmd)).map(|r| Rule {
                rule: r.as_str(),
                of: &l.of,
            })
        })
    }

    /// `cmd` (blanks folded by the caller) may run as far as the allow-lists go; else the
    /// first list that matches nothing (its key as `rule`).
    pub fn allows(&self, cmd: &str) -> Result<(), Rule<'_>> {
        for l in &self.layers {
            if !l.allowed.is_empty() && !l.allowed.iter().any(|r| r.is_match(cmd)) {
                return Err(Rule {
                    rule: l.allow_key,
                    of: &l.of,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_rules_deny_and_allow() {
        let r = CommandRules::new(&["^reload", "^erase\\b"], &[]).unwrap();
        assert_eq!(r.denies("reload in 5").map(|r| r.rule), Some("^reload"));
        assert!(r.denies("show reload").is_none());
        // Case is ignored (blanks are folded by the caller).
        assert!(r.denies("RELOAD at 10:00").is_some());
        assert!(r.denies("erase startup-config").is_some());
        assert!(r.allows("configure terminal").is_ok());
        let r = CommandRules::new(&[], &["^show ", "^ping "]).unwrap();
        assert!(r.allows("show version").is_ok());
        assert!(r.allows("configure terminal").is_err());
        assert!(!r.is_empty() && CommandRules::default().is_empty());
        assert!(CommandRules::new(&[] as &[&str], &[]).unwrap().is_empty());
    }

    #[test]
    fn layers_narrow_each_other_and_name_themselves() {
        let global = CommandRules::new(&["^reload"], &[]).unwrap();
        let token = CommandRules::new(&["^debug"], &["^show ", "^debug "])
            .unwrap()
            .named("token 'ops'");
        let ro = CommandRules::read_only(&["^show "]).unwrap();
        let all = global.and(&token).and(&ro);
        assert_eq!(
            all.denies("reload"),
            Some(Rule {
                rule: "^reload",
                of: ""
            })
        );
        assert_eq!(
            all.denies("debug all"),
            Some(Rule {
                rule: "^debug",
                of: " of token 'ops'"
            })
        );
        assert!(all.allows("show version").is_ok());
        let e = all.allows("ping 1.1.1.1").unwrap_err();
        assert_eq!((e.rule, e.of), ("allowed_commands", " of token 'ops'"));
        let ro_only = global.and(&ro);
        let e = ro_only.allows("ping 1.1.1.1").unwrap_err();
        assert_eq!(e.rule, "read_only_commands");
        // An empty read-only list allows nothing.
        assert!(CommandRules::read_only(&[] as &[&str])
            .unwrap()
            .allows("show x")
            .is_err());
    }
}
