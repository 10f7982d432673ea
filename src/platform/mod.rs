//! Platforms as data: one YAML file per device type, embedded in the binary and compiled once.
//! The driver reads these tables; nothing else in the code knows about device types.

use regex::{Regex, RegexBuilder};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::OnceLock;

const DEFS: &[(&str, &str)] = &[("cisco_ios.yml", include_str!("defs/cisco_ios.yml"))];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Def {
    name: String,
    description: String,
    #[serde(default)]
    aliases: Vec<String>,
    prompt: PromptDef,
    modes: Vec<ModeDef>,
    #[serde(default)]
    on_open: Vec<String>,
    enable: Option<EnableDef>,
    config: Option<ConfigDef>,
    #[serde(default)]
    pagers: Vec<PagerDef>,
    #[serde(default)]
    failures: Vec<String>,
    #[serde(default)]
    prompt_changes: Vec<String>,
    close: CloseDef,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromptDef {
    generic: String,
    learned: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeDef {
    name: String,
    pattern: String,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct EnableDef {
    pub command: String,
    pub from_mode: String,
    pub mode: String,
    password_prompt: String,
    #[serde(default)]
    pub failures: Vec<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ConfigDef {
    pub enter: String,
    pub exit: String,
    pub mode: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PagerDef {
    pattern: String,
    send: String,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct CloseDef {
    #[serde(default)]
    pub from_mode: BTreeMap<String, String>,
    pub logout: Option<String>,
}

/// A compiled platform.
#[derive(Debug)]
pub struct Platform {
    pub name: String,
    pub description: String,
    pub aliases: Vec<String>,
    pub generic_prompt: Regex,
    learned_template: String,
    pub modes: Vec<(String, Regex)>,
    pub on_open: Vec<String>,
    pub enable: Option<Enable>,
    pub config: Option<ConfigDef>,
    pub pagers: Vec<(Regex, String)>,
    pub failures: Vec<String>,
    pub prompt_changes: Vec<Regex>,
    pub close: CloseDef,
}

#[derive(Debug)]
pub struct Enable {
    pub def: EnableDef,
    pub password_prompt: Regex,
}

/// Compile a pattern with a size cap. Platform patterns spell out ASCII classes ([A-Za-z0-9])
/// instead of \\w or \\d, whose Unicode tables cost megabytes per compiled regex.
pub fn compile(p: &str) -> Result<Regex, String> {
    RegexBuilder::new(p)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("bad pattern {p:?}: {e}"))
}

impl Platform {
    fn from_def(d: Def) -> Result<Platform, String> {
        let ctx = |e: String| format!("platform {}: {e}", d.name);
        if !d.prompt.learned.contains("{base}") {
            return Err(ctx("prompt.learned must contain {base}".into()));
        }
        let generic = compile(&d.prompt.generic).map_err(ctx)?;
        if generic.capture_names().all(|n| n != Some("base")) {
            return Err(ctx("prompt.generic needs a (?P<base>...) group".into()));
        }
        let modes = d
            .modes
            .iter()
            .map(|m| compile(&m.pattern).map(|r| (m.name.clone(), r)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ctx)?;
        let enable = match d.enable {
            Some(e) => Some(Enable {
                password_prompt: compile(&e.password_prompt).map_err(ctx)?,
                def: e,
            }),
            None => None,
        };
        let pagers = d
            .pagers
            .iter()
            .map(|p| compile(&p.pattern).map(|r| (r, p.send.clone())))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ctx)?;
        let prompt_changes = d
            .prompt_changes
            .iter()
            .map(|p| compile(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ctx)?;
        let p = Platform {
            name: d.name,
            description: d.description,
            aliases: d.aliases,
            generic_prompt: generic,
            learned_template: d.prompt.learned,
            modes,
            on_open: d.on_open,
            enable,
            config: d.config,
            pagers,
            failures: d.failures,
            prompt_changes,
            close: d.close,
        };
        // The learned template must compile for an ordinary hostname.
        p.learned_prompt("R1")
            .map_err(|e| format!("platform {}: {e}", p.name))?;
        Ok(p)
    }

    /// The exact prompt regex for a known hostname (regex metacharacters in it are escaped).
    pub fn learned_prompt(&self, base: &str) -> Result<Regex, String> {
        compile(
            &self
                .learned_template
                .replace("{base}", &regex::escape(base)),
        )
    }

    /// The mode a prompt line means, if any.
    pub fn mode_of(&self, prompt_line: &str) -> Option<&str> {
        self.modes
            .iter()
            .find(|(_, r)| r.is_match(prompt_line))
            .map(|(n, _)| n.as_str())
    }

    /// Does this output contain one of the platform's failure indicators?
    pub fn failure_in(&self, output: &str) -> Option<&str> {
        self.failures
            .iter()
            .find(|f| output.contains(f.as_str()))
            .map(|s| s.as_str())
    }
}

static PLATFORMS: OnceLock<Result<Vec<Platform>, String>> = OnceLock::new();

/// All platforms. The embedded definitions are checked by a unit test, so an error here means a
/// broken build; callers still get it as a Result.
pub fn all() -> Result<&'static [Platform], String> {
    PLATFORMS
        .get_or_init(|| {
            DEFS.iter()
                .map(|(file, text)| {
                    let d: Def =
                        serde_norway::from_str(text).map_err(|e| format!("{file}: {e}"))?;
                    Platform::from_def(d)
                })
                .collect()
        })
        .as_deref()
        .map_err(|e| e.clone())
}

/// Find the platform for a device_type (by name or alias, case-insensitive).
pub fn lookup(device_type: &str) -> Option<&'static Platform> {
    let dt = device_type.trim().to_ascii_lowercase();
    all()
        .ok()?
        .iter()
        .find(|p| p.name == dt || p.aliases.contains(&dt))
}

/// Every accepted device_type name, sorted.
pub fn known_names() -> Vec<String> {
    let mut v: Vec<String> = all()
        .map(|ps| {
            ps.iter()
                .flat_map(|p| std::iter::once(p.name.clone()).chain(p.aliases.iter().cloned()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_platforms_compile() {
        let ps = all().unwrap();
        assert!(!ps.is_empty());
        assert!(lookup("cisco_ios").is_some());
        assert!(lookup("CISCO_XE").is_some());
        assert!(lookup("nope").is_none());
    }

    #[test]
    fn cisco_ios_prompts_and_modes() {
        let p = lookup("cisco_ios").unwrap();
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            ("R1>", Some("R1"), Some("user")),
            ("R1#", Some("R1"), Some("enable")),
            ("R1(config)#", Some("R1"), Some("config")),
            (
                "core-sw.lab(config-if)#",
                Some("core-sw.lab"),
                Some("config"),
            ),
            ("#####", None, Some("enable")),
            ("Welcome to R1#", None, Some("enable")),
            ("show version", None, None),
        ];
        for (line, base, mode) in cases {
            let got = p
                .generic_prompt
                .captures(line)
                .and_then(|c| c.name("base"))
                .map(|m| m.as_str());
            assert_eq!(got, *base, "{line}");
            assert_eq!(p.mode_of(line), *mode, "{line}");
        }
        let learned = p.learned_prompt("sw1.a+b").unwrap();
        assert!(learned.is_match("sw1.a+b(config)#"));
        assert!(!learned.is_match("sw1xa+b#"));
        assert!(!learned.is_match("sw1.a+bb#"));
    }
}
