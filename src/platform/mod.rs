//! Platforms as data: one YAML file per device type, embedded in the binary and compiled once.
//! The driver reads these tables; nothing else in the code knows about device types.
//! The format is documented in docs/platforms.md and in `defs/cisco_ios.yml`.

use crate::channel::typed::LineSyntax;
use regex::bytes::Regex as BytesRegex;
use regex::{Regex, RegexBuilder};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::OnceLock;

#[cfg(test)]
mod tests;

const DEFS: &[(&str, &str)] = &[
    ("generic.yml", include_str!("defs/generic.yml")),
    ("cisco_ios.yml", include_str!("defs/cisco_ios.yml")),
    ("cisco_nxos.yml", include_str!("defs/cisco_nxos.yml")),
    ("cisco_asa.yml", include_str!("defs/cisco_asa.yml")),
    ("cisco_xr.yml", include_str!("defs/cisco_xr.yml")),
    ("juniper_junos.yml", include_str!("defs/juniper_junos.yml")),
    ("arista_eos.yml", include_str!("defs/arista_eos.yml")),
    ("nokia_sros.yml", include_str!("defs/nokia_sros.yml")),
    ("hp_procurve.yml", include_str!("defs/hp_procurve.yml")),
    ("hp_comware.yml", include_str!("defs/hp_comware.yml")),
    ("huawei_vrp.yml", include_str!("defs/huawei_vrp.yml")),
    ("linux.yml", include_str!("defs/linux.yml")),
];

/// Every device_type name Netmiko accepts; those without a profile of their own run on `generic`.
const NETMIKO_NAMES: &str = include_str!("netmiko_device_types.txt");

/// The profile for device types that have none of their own.
pub const GENERIC: &str = "generic";

/// The device type of an open request that names none (the API's documented default).
pub const DEFAULT_DEVICE_TYPE: &str = "cisco_ios";

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
    login: Vec<AnswerDef>,
    #[serde(default)]
    shell_escape: Option<EscapeDef>,
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
    #[serde(default)]
    default_questions: Vec<String>,
    #[serde(default)]
    line: LineDef,
    close: CloseDef,
    #[serde(default)]
    device_revert: Option<DeviceRevertDef>,
    /// Commands a `reader` token may run (regexes, case ignored); absent: [`READ_ONLY_DEFAULT`].
    #[serde(default)]
    read_only_commands: Option<Vec<String>>,
}

/// The read-only commands of a platform that lists none: show, ping and traceroute (and their
/// abbreviations), without any pipe or redirection.
pub const READ_ONLY_DEFAULT: &str =
    r"^(sh|sho|show|ping|trace|tracer|tracero|tracerou|tracerout|traceroute)\b[^|>;]*$";

/// The device's own revert timer, armed by a change guard (`device_revert`). Commands are
/// templates with `{minutes}`; they are typed as commands, so the command policy sees them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceRevertDef {
    /// What the device does, for `GET /device-types` and the guard's status.
    description: String,
    /// Typed when the guard is armed, in order.
    arm: Vec<String>,
    /// Output of an arm step meaning the device cannot arm its timer (IOS without an archive
    /// path): the guard is refused with 409 and `missing_detail`; nothing is armed.
    #[serde(default)]
    missing: Vec<String>,
    #[serde(default)]
    missing_detail: Option<String>,
    /// Typed when the guard is confirmed or disarmed, or after a rollback that succeeded: the
    /// timer stops and the running configuration stays.
    confirm: Vec<String>,
    /// Commit-model platforms: while the guard is armed, the save step of a config exec is this
    /// instead (`commit confirmed {minutes}`), so a commit does not confirm the device's timer.
    #[serde(default)]
    save: Option<String>,
    /// The timer the device accepts, in minutes: [least, most].
    minutes: [u32; 2],
}

/// How the CLI's line editor reads a line: what the command policy must know to check what the
/// device runs rather than what was typed.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LineDef {
    /// A key that asks for help and is not part of the line (`?`).
    #[serde(default)]
    help: Option<char>,
    /// Words that run an exec command from config mode (`do`, `run`).
    #[serde(default)]
    exec_escape: Vec<String>,
    /// The key that erases the whole line (Ctrl-U, written "\u0015").
    #[serde(default)]
    kill: Option<String>,
    /// The key that interrupts a running command (IOS Ctrl-^ "\u001e", elsewhere Ctrl-C).
    #[serde(default)]
    interrupt: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromptDef {
    generic: String,
    learned: String,
    #[serde(default)]
    context: Vec<String>,
    /// The device may shorten the hostname in its prompt to this many characters or more
    /// (IOS in config mode); the learned prompt then accepts any such prefix of it.
    #[serde(default)]
    truncate_base: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeDef {
    name: String,
    pattern: String,
}

/// A question and its answer (`send` is sent as is; write "\n" for Enter).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerDef {
    expect: String,
    send: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EscapeDef {
    pattern: String,
    command: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnableDef {
    command: String,
    #[serde(default)]
    level_command: Option<String>,
    from_mode: String,
    mode: String,
    password_prompt: String,
    #[serde(default)]
    failures: Vec<String>,
    /// Only enter privileged mode when the open request gives a secret (or a level).
    #[serde(default)]
    requires_secret: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigDef {
    enter: String,
    exit: String,
    mode: String,
    #[serde(default)]
    exit_answers: Vec<AnswerDef>,
    #[serde(default)]
    save: Option<SaveDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SaveDef {
    command: String,
    #[serde(default)]
    in_config: bool,
    #[serde(default)]
    answers: Vec<AnswerDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PagerDef {
    pattern: String,
    send: String,
    #[serde(default)]
    erase: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct CloseDef {
    #[serde(default)]
    pub from_mode: BTreeMap<String, String>,
    pub logout: Option<String>,
}

/// A compiled question and the answer to send.
#[derive(Debug)]
pub struct Answer {
    pub expect: Regex,
    pub send: String,
}

#[derive(Debug)]
pub struct Escape {
    pub pattern: Regex,
    pub command: String,
}

#[derive(Debug)]
pub struct Enable {
    pub command: String,
    /// `enable {level}`-style command for a privilege level, where the platform has levels.
    pub level_command: Option<String>,
    pub from_mode: String,
    pub mode: String,
    pub password_prompt: Regex,
    pub failures: Vec<String>,
    pub requires_secret: bool,
}

impl Enable {
    pub fn command_for(&self, level: Option<u8>) -> String {
        match (level, &self.level_command) {
            (Some(l), Some(t)) => t.replace("{level}", &l.to_string()),
            _ => self.command.clone(),
        }
    }
}

#[derive(Debug)]
pub struct Config {
    pub enter: String,
    pub exit: String,
    pub mode: String,
    pub exit_answers: Vec<Answer>,
    pub save: Option<Save>,
}

#[derive(Debug)]
pub struct Save {
    pub command: String,
    /// Run before leaving config mode (`commit`), not after.
    pub in_config: bool,
    pub answers: Vec<Answer>,
}

#[derive(Debug)]
pub struct Pager {
    pub pattern: Regex,
    pub send: String,
    /// What the device prints right after the pager prompt to erase it (matched at the start of
    /// the bytes that follow, removed from the output).
    pub erase: BytesRegex,
}

/// A compiled platform.
#[derive(Debug)]
pub struct Platform {
    pub name: String,
    pub description: String,
    pub aliases: Vec<String>,
    pub generic_prompt: Regex,
    learned_template: String,
    truncate_base: Option<usize>,
    /// Lines printed just above the prompt that belong to it (`[edit]`); one such last line is
    /// removed from output.
    pub context: Vec<Regex>,
    pub modes: Vec<(String, Regex)>,
    pub login: Vec<Answer>,
    pub shell_escape: Option<Escape>,
    pub on_open: Vec<String>,
    pub enable: Option<Enable>,
    pub config: Option<Config>,
    pub pagers: Vec<Pager>,
    pub failures: Vec<Regex>,
    pub prompt_changes: Vec<Regex>,
    /// Questions whose default (shown in brackets) Enter accepts; the original API's interactive
    /// form answers them as well as its own `answer`.
    pub default_questions: Vec<Regex>,
    /// The line editor, for the command policy.
    pub line: LineSyntax,
    pub close: CloseDef,
    /// The device's own revert timer, where the platform has one.
    pub device_revert: Option<DeviceRevert>,
    /// The commands a `reader` token may run (`read_only_commands`), as written and compiled.
    pub read_only_commands: Vec<String>,
    pub read_only: std::sync::Arc<crate::policy::CommandRules>,
}

/// See `DeviceRevertDef`.
#[derive(Debug)]
pub struct DeviceRevert {
    pub description: String,
    pub arm: Vec<String>,
    pub missing: Vec<Regex>,
    pub missing_detail: String,
    pub confirm: Vec<String>,
    pub save: Option<String>,
    pub minutes: [u32; 2],
}

impl DeviceRevert {
    /// `cmds` with `{minutes}` (and `{hh_mm_ss}`, the same time) filled in.
    pub fn fill(cmds: &[String], minutes: u32) -> Vec<String> {
        let hms = format!("{:02}:{:02}:00", minutes / 60, minutes % 60);
        cmds.iter()
            .map(|c| {
                c.replace("{minutes}", &minutes.to_string())
                    .replace("{hh_mm_ss}", &hms)
            })
            .collect()
    }
}

/// What the device prints after a pager prompt to erase it, when the platform does not say:
/// backspaces, blanks, lone carriage returns and cursor/erase CSI sequences, ending in one of
/// the erasing characters (so indentation of the next line is kept).
const DEFAULT_ERASE: &str =
    r"^(?:[\x08 \r]|\x1b\[[0-9;?]*[A-Za-z])*(?:[\x08\r]|\x1b\[[0-9;?]*[A-Za-z])";

fn line_syntax(d: LineDef) -> Result<LineSyntax, String> {
    if d.help.is_some_and(|c| c.is_whitespace() || c.is_control()) {
        return Err("line.help must be a printable key".into());
    }
    if d.exec_escape
        .iter()
        .any(|w| w.is_empty() || w.contains(char::is_whitespace))
    {
        return Err("line.exec_escape entries must be single words".into());
    }
    let one_control_key =
        |k: &String| k.chars().count() == 1 && k.chars().all(|c| c.is_ascii_control());
    if d.kill.as_ref().is_some_and(|k| !one_control_key(k)) {
        return Err("line.kill must be one control key".into());
    }
    if d.interrupt.as_ref().is_some_and(|k| !one_control_key(k)) {
        return Err("line.interrupt must be one control key".into());
    }
    Ok(LineSyntax {
        help: d.help,
        exec_escapes: d.exec_escape,
        kill: d.kill,
        interrupt: d.interrupt,
    })
}

/// Compile a pattern with a size cap. Platform patterns spell out ASCII classes ([A-Za-z0-9])
/// instead of \\w or \\d, whose Unicode tables cost megabytes per compiled regex.
pub fn compile(p: &str) -> Result<Regex, String> {
    RegexBuilder::new(p)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("bad pattern {p:?}: {e}"))
}

fn compile_bytes(p: &str) -> Result<BytesRegex, String> {
    regex::bytes::RegexBuilder::new(p)
        .unicode(false)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("bad pattern {p:?}: {e}"))
}

fn compile_all(ps: &[String]) -> Result<Vec<Regex>, String> {
    ps.iter().map(|p| compile(p)).collect()
}

fn answers(a: &[AnswerDef]) -> Result<Vec<Answer>, String> {
    a.iter()
        .map(|a| {
            Ok(Answer {
                expect: compile(&a.expect)?,
                send: a.send.clone(),
            })
        })
        .collect()
}

impl Platform {
    fn from_def(d: Def) -> Result<Platform, String> {
        let name = d.name.clone();
        let ctx = |e: String| format!("platform {name}: {e}");
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
        let mode_known = |m: &str| modes.iter().any(|(n, _)| n == m);
        let enable = match d.enable {
            Some(e) => {
                if !mode_known(&e.mode) || !mode_known(&e.from_mode) {
                    return Err(ctx(format!("enable names an unknown mode ({e:?})")));
                }
                if e.level_command
                    .as_ref()
                    .is_some_and(|c| !c.contains("{level}"))
                {
                    return Err(ctx("enable.level_command must contain {level}".into()));
                }
                Some(Enable {
                    password_prompt: compile(&e.password_prompt).map_err(ctx)?,
                    command: e.command,
                    level_command: e.level_command,
                    from_mode: e.from_mode,
                    mode: e.mode,
                    failures: e.failures,
                    requires_secret: e.requires_secret,
                })
            }
            None => None,
        };
        let config = match d.config {
            Some(c) => {
                if !mode_known(&c.mode) {
                    return Err(ctx(format!("config.mode {:?} is not a mode", c.mode)));
                }
                Some(Config {
                    exit_answers: answers(&c.exit_answers).map_err(ctx)?,
                    save: match c.save {
                        Some(s) => Some(Save {
                            answers: answers(&s.answers).map_err(ctx)?,
                            command: s.command,
                            in_config: s.in_config,
                        }),
                        None => None,
                    },
                    enter: c.enter,
                    exit: c.exit,
                    mode: c.mode,
                })
            }
            None => None,
        };
        let pagers = d
            .pagers
            .iter()
            .map(|p| {
                Ok(Pager {
                    pattern: compile(&p.pattern)?,
                    send: p.send.clone(),
                    erase: compile_bytes(p.erase.as_deref().unwrap_or(DEFAULT_ERASE))?,
                })
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(ctx)?;
        for m in d.close.from_mode.keys() {
            if !mode_known(m) {
                return Err(ctx(format!("close.from_mode names an unknown mode {m:?}")));
            }
        }
        let p = Platform {
            generic_prompt: generic,
            learned_template: d.prompt.learned,
            truncate_base: d.prompt.truncate_base.filter(|n| *n > 0),
            context: compile_all(&d.prompt.context).map_err(ctx)?,
            modes,
            login: answers(&d.login).map_err(ctx)?,
            shell_escape: match d.shell_escape {
                Some(e) => Some(Escape {
                    pattern: compile(&e.pattern).map_err(ctx)?,
                    command: e.command,
                }),
                None => None,
            },
            on_open: d.on_open,
            enable,
            config,
            pagers,
            failures: d
                .failures
                .iter()
                .map(|f| compile(&format!("(?m){f}")))
                .collect::<Result<Vec<_>, _>>()
                .map_err(ctx)?,
            prompt_changes: compile_all(&d.prompt_changes).map_err(ctx)?,
            default_questions: compile_all(&d.default_questions).map_err(ctx)?,
            line: line_syntax(d.line).map_err(ctx)?,
            close: d.close,
            device_revert: match d.device_revert {
                Some(r) => {
                    if r.arm.is_empty()
                        || r.confirm.is_empty()
                        || r.minutes[0] == 0
                        || r.minutes[0] > r.minutes[1]
                    {
                        return Err(ctx("device_revert needs arm and confirm steps and minutes [least, most] with 0 < least <= most".into()));
                    }
                    Some(DeviceRevert {
                        missing: compile_all(&r.missing).map_err(ctx)?,
                        missing_detail: r
                            .missing_detail
                            .unwrap_or_else(|| "the device cannot arm its revert timer".into()),
                        description: r.description,
                        arm: r.arm,
                        confirm: r.confirm,
                        save: r.save,
                        minutes: r.minutes,
                    })
                }
                None => None,
            },
            read_only: std::sync::Arc::new(
                crate::policy::CommandRules::read_only(
                    d.read_only_commands
                        .as_deref()
                        .unwrap_or(&[READ_ONLY_DEFAULT.to_string()]),
                )
                .map_err(ctx)?,
            ),
            read_only_commands: d
                .read_only_commands
                .unwrap_or_else(|| vec![READ_ONLY_DEFAULT.to_string()]),
            name: d.name,
            description: d.description,
            aliases: d.aliases,
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
                .replace("{base}", &base_pattern(base, self.truncate_base)),
        )
    }

    /// The hostname part of a prompt line, if the line is a prompt of this platform.
    pub fn prompt_base<'a>(&self, line: &'a str) -> Option<&'a str> {
        self.generic_prompt
            .captures(line)
            .and_then(|c| c.name("base"))
            .map(|m| m.as_str())
    }

    /// The mode a prompt line means, if any.
    pub fn mode_of(&self, prompt_line: &str) -> Option<&str> {
        self.modes
            .iter()
            .find(|(_, r)| r.is_match(prompt_line))
            .map(|(n, _)| n.as_str())
    }

    /// The first output line that shows one of the platform's failure indicators.
    pub fn failure_in(&self, output: &str) -> Option<String> {
        self.failures.iter().find_map(|f| {
            f.find(output).map(|m| {
                let start = output[..m.start()].rfind('\n').map_or(0, |i| i + 1);
                let end = output[m.end()..]
                    .find('\n')
                    .map_or(output.len(), |i| m.end() + i);
                output[start..end].trim().to_string()
            })
        })
    }

    /// Is this a context line (`[edit]`) that belongs to the prompt below it?
    pub fn is_context(&self, line: &str) -> bool {
        self.context.iter().any(|r| r.is_match(line))
    }
}

/// The escaped hostname; with `truncate`, any prefix of at least that many characters of it
/// (`head(?:x(?:y(?:z)?)?)?`).
fn base_pattern(base: &str, truncate: Option<usize>) -> String {
    let chars: Vec<char> = base.chars().collect();
    match truncate {
        Some(n) if chars.len() > n => {
            let head: String = chars[..n].iter().collect();
            let mut tail = String::new();
            for c in chars[n..].iter().rev() {
                tail = format!("(?:{}{tail})?", regex::escape(&c.to_string()));
            }
            format!("{}{tail}", regex::escape(&head))
        }
        _ => regex::escape(base),
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

fn netmiko_names() -> impl Iterator<Item = &'static str> {
    NETMIKO_NAMES
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// The platform for a device_type (a profile name or alias, case-insensitive); a name Netmiko
/// knows but no profile claims runs on `generic`. None: nobody knows this name.
pub fn lookup(device_type: &str) -> Option<&'static Platform> {
    let dt = device_type.trim().to_ascii_lowercase();
    let ps = all().ok()?;
    ps.iter()
        .find(|p| p.name == dt || p.aliases.contains(&dt))
        .or_else(|| {
            netmiko_names()
                .any(|n| n == dt)
                .then(|| ps.iter().find(|p| p.name == GENERIC))
                .flatten()
        })
}

/// Every accepted device_type name with the profile it runs on, sorted by name.
pub fn known() -> Vec<(String, &'static str)> {
    let mut m: BTreeMap<String, &'static str> = BTreeMap::new();
    if let Ok(ps) = all() {
        for n in netmiko_names() {
            m.insert(n.to_string(), GENERIC);
        }
        for p in ps {
            for n in std::iter::once(&p.name).chain(p.aliases.iter()) {
                m.insert(n.clone(), p.name.as_str());
            }
        }
    }
    m.into_iter().collect()
}

/// Every accepted device_type name, sorted.
pub fn known_names() -> Vec<String> {
    known().into_iter().map(|(n, _)| n).collect()
}
