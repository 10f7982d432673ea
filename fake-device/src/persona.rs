//! Personas: the platforms the fake device plays, one YAML file per platform in `personas/`
//! (embedded at compile time), and the command grammar built from them. The format is the
//! serde types below (`Persona` and what it holds); [`persona_test`] gives the `test:` section generic tests drive.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use regex::Regex;
use serde::Deserialize;

/// Names of every persona (`cisco_ios`, `juniper_junos`, ...).
pub fn persona_names() -> Vec<&'static str> {
    FIXTURES.iter().map(|(n, _)| *n).collect()
}

// ---------------------------------------------------------------------------------------------
// Personas: the YAML fixtures and their command grammar
// ---------------------------------------------------------------------------------------------

macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/personas/",
                $name,
                ".yml"
            )),
        )
    };
}

/// Every persona fixture, embedded at compile time.
const FIXTURES: &[(&str, &str)] = &[
    fixture!("cisco_ios"),
    fixture!("cisco_nxos"),
    fixture!("cisco_asa"),
    fixture!("cisco_xr"),
    fixture!("juniper_junos"),
    fixture!("arista_eos"),
    fixture!("nokia_sros"),
    fixture!("hp_procurve"),
    fixture!("hp_comware"),
    fixture!("huawei_vrp"),
    fixture!("linux"),
];

/// A platform persona (one fixture file).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct Persona {
    pub(crate) name: String,
    pub(crate) device_type: String,
    #[serde(default)]
    #[allow(dead_code)] // for the reader of the persona file
    pub(crate) description: String,
    #[serde(default)]
    #[allow(dead_code)] // for the reader of the persona file
    pub(crate) sources: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)] // for the reader of the persona file
    pub(crate) notes: Vec<String>,
    /// Hostname used by `DeviceConfig::persona`.
    pub(crate) hostname: String,
    pub(crate) ssh_server_id: String,
    /// Printed after the banner, before the motd (e.g. `Last login: ...`).
    #[serde(default)]
    pub(crate) login_lines: Vec<String>,
    /// If set: printed (without newline) after login; the first prompt comes after a key.
    #[serde(default)]
    pub(crate) press_any_key: Option<String>,
    pub(crate) start_mode: String,
    /// Mode used when `DeviceConfig::start_privileged` is set.
    pub(crate) start_mode_privileged: String,
    pub(crate) modes: Vec<ModeDef>,
    pub(crate) errors: Errors,
    #[serde(default)]
    pub(crate) pager: Option<PagerDef>,
    /// Printed instead of turning paging off when `DeviceConfig::paging_locked`.
    #[serde(default)]
    pub(crate) paging_locked_error: Vec<String>,
    /// Pipe keyword -> kind (include, exclude, begin, count, no-more).
    #[serde(default)]
    pub(crate) filters: BTreeMap<String, String>,
    /// Ctrl-Z / Ctrl-C in a config mode go to this mode.
    #[serde(default)]
    pub(crate) ctrl_z: Option<String>,
    /// Config lines refused by the device.
    #[serde(default)]
    pub(crate) reject: Vec<RejectRule>,
    /// Config lines are kept in a candidate until `builtin: commit`.
    #[serde(default)]
    pub(crate) commit_model: bool,
    /// The test-only commands (`long`, `flood`, `slow`, `hang`, `drop`) are `<prefix> long`...
    pub(crate) hooks: Hooks,
    /// (regex, replacement) applied to a mode's `ctx` (e.g. `Ethernet1` -> `Et1`).
    #[serde(default)]
    pub(crate) ctx_rewrite: Vec<(String, String)>,
    /// Printed before the device closes an idle session.
    #[serde(default)]
    pub(crate) idle_message: Option<String>,
    /// Keys (one byte each) that interrupt a running test-hook command (`long`, `flood`,
    /// `slow`, `hang`): the output stops, `<break>` is journaled, the prompt comes back.
    #[serde(default)]
    pub(crate) break_keys: Vec<String>,
    /// Commands the device refuses while its running config holds a line (AAA command
    /// authorization with no reachable server).
    #[serde(default)]
    pub(crate) refuse: Vec<RefuseRule>,
    /// Named output blocks, used as `@name` lines in `say`.
    #[serde(default)]
    pub(crate) blocks: BTreeMap<String, Vec<String>>,
    pub(crate) commands: Vec<CommandDef>,
    pub(crate) test: PersonaTestDef,
    /// Built at load time: one grammar per mode.
    #[serde(skip)]
    pub(crate) tries: HashMap<String, Trie>,
    /// Built at load time: what an `accept_any` mode does with a line it does not know.
    #[serde(skip)]
    pub(crate) accept_any: Action,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModeDef {
    pub(crate) name: String,
    /// Template: `{hostname}`, `{user}`, `{ctx}`, `{dirty}` (`*` while unsaved).
    pub(crate) prompt: String,
    #[serde(default)]
    pub(crate) parent: Option<String>,
    /// A configuration mode (Ctrl-Z applies, `accept_any` lines are config).
    #[serde(default)]
    pub(crate) config: bool,
    /// A line whose first word is no command of this mode is a config line: it is checked
    /// against `reject` and recorded (prefixed with `indent`).
    #[serde(default)]
    pub(crate) accept_any: bool,
    #[serde(default)]
    pub(crate) indent: String,
    /// Config lines recorded in this mode go to the session's candidate until `builtin:
    /// commit` (an Arista configuration session), as on a `commit_model` persona.
    #[serde(default)]
    pub(crate) candidate: bool,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct Errors {
    /// Unknown first word (default: `invalid`).
    #[serde(default)]
    pub(crate) unknown: Option<Vec<String>>,
    /// Bad word after the first. `{marker}` = the `^` line, `{token}`, `{index}`, `{line}`.
    pub(crate) invalid: Vec<String>,
    pub(crate) incomplete: Vec<String>,
    pub(crate) ambiguous: Vec<String>,
    /// Rejected config line (default: `invalid`).
    #[serde(default)]
    pub(crate) config_reject: Option<Vec<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct PagerDef {
    pub(crate) prompt: String,
    pub(crate) erase: String,
    #[serde(default = "default_page_len")]
    pub(crate) length: usize,
}

fn default_page_len() -> usize {
    24
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RejectRule {
    #[serde(rename = "match")]
    pub(crate) pattern: String,
    /// Index of the token the `^` marker points at.
    #[serde(default)]
    pub(crate) at: usize,
}

/// While a running-config line matches `when`, every line typed in `modes` and every command
/// whose grammar matches `commands` (in any mode) is refused with `say`, except the commands
/// whose grammar matches `except`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefuseRule {
    /// Regex on the lines of the running config.
    pub(crate) when: String,
    #[serde(default)]
    pub(crate) modes: Vec<String>,
    /// Regex on a command's grammar (its `cmd`, e.g. `configure terminal`).
    #[serde(default)]
    pub(crate) commands: Option<String>,
    /// Regex on a command's grammar: never refused.
    #[serde(default)]
    pub(crate) except: Option<String>,
    /// The refusal (templates as in `say`; `{line}`).
    pub(crate) say: Vec<String>,
    /// Built at load time: `when`, `commands`, `except`.
    #[serde(skip)]
    pub(crate) compiled: Option<(Regex, Option<Regex>, Option<Regex>)>,
}

/// An operation on the device's revert timer (a confirmed change).
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevertOp {
    /// Start the timer for this amount (a template, in `unit`): the running config is
    /// snapshot first, unless a timer runs already (then it only restarts).
    #[serde(default)]
    pub(crate) arm: Option<String>,
    /// Restart a running timer with this amount (a template, in `unit`).
    #[serde(default)]
    pub(crate) reset: Option<String>,
    /// `minutes` (default), `seconds` or `hms` (`hh:mm:ss`); a device minute lasts
    /// `DeviceConfig::minute`.
    #[serde(default)]
    pub(crate) unit: Option<String>,
    /// Stop the timer, keeping the changes.
    #[serde(default)]
    pub(crate) confirm: bool,
    /// Restore the snapshot now (journaled as `<revert>`).
    #[serde(default)]
    pub(crate) now: bool,
}

impl RevertOp {
    pub(crate) fn unit(&self) -> crate::state::TimeUnit {
        use crate::state::TimeUnit;
        match self.unit.as_deref() {
            Some("seconds") => TimeUnit::Seconds,
            Some("hms") => TimeUnit::Hms,
            _ => TimeUnit::Minutes,
        }
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct Hooks {
    pub(crate) prefix: String,
    pub(crate) modes: Vec<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommandDef {
    /// Grammar: keywords (unique prefixes accepted), `<word>`, `<n>`, `<0-512>`, `<rest>`
    /// (the rest of the line), then optional trailing elements `[...]`.
    pub(crate) cmd: String,
    pub(crate) modes: Vec<String>,
    #[serde(rename = "do", default)]
    pub(crate) act: Action,
}

/// What a command (or an answer) does. Steps run in this order: `if` (then/else replace the
/// rest), reject check (when `record`), `paging`, `width`, `say`, `hostname`, `record`, `set`,
/// `mode`, `ctx`, `run_in`, `revert`, `builtin`, `ask`. Templates: `{1}`.. (arguments), `{line}`,
/// `{answer}`, `{hostname}`, `{user}`, `{ctx}`, `{indent}`, `{clock}`, `{term_type}`,
/// `{term_length}`, `{term_width}`, `{$name}` (a session variable, see `set`), `{timer_given}`,
/// `{timer_minutes}`, `{timer_left}` (the revert timer: as given, minutes configured, seconds
/// left).
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct Action {
    /// `enable_password`, `unsaved`, `uncommitted`, `paging_locked`, `timer` (a revert timer
    /// runs), `has:REGEX` (a running-config line matches); `!` negates.
    #[serde(rename = "if", default)]
    pub(crate) cond: Option<String>,
    #[serde(default)]
    pub(crate) then: Option<Box<Action>>,
    #[serde(rename = "else", default)]
    pub(crate) otherwise: Option<Box<Action>>,
    /// Output lines. `@block` includes a block; `{config}` / `{candidate}` alone on a line
    /// expand to the session's config lines; `?cond:text` is a conditional line.
    #[serde(default)]
    pub(crate) say: Vec<String>,
    /// `off`, `on`, or a template giving the page length (0 = off).
    #[serde(default)]
    pub(crate) paging: Option<String>,
    /// A template giving the terminal width (shown by `{term_width}`).
    #[serde(default)]
    pub(crate) width: Option<String>,
    #[serde(default)]
    pub(crate) hostname: Option<String>,
    /// Config lines to record (checked against `reject` first).
    #[serde(default)]
    pub(crate) record: Vec<String>,
    /// Mode to enter; `^` = the current mode's parent.
    #[serde(default)]
    pub(crate) mode: Option<String>,
    #[serde(default)]
    pub(crate) ctx: Option<String>,
    /// Session variables to set (name -> template), shown by `{$name}`.
    #[serde(default)]
    pub(crate) set: BTreeMap<String, String>,
    /// An operation on the device's revert timer.
    #[serde(default)]
    pub(crate) revert: Option<RevertOp>,
    /// Run the rest of the line (after the first word) as a command of this mode.
    #[serde(default)]
    pub(crate) run_in: Option<String>,
    /// `exit`, `reload`, `commit`, `discard`, `rollback` (`{1}`, default 0: load the
    /// configuration committed that many commits ago into the candidate), `save`, `clock`, and
    /// the test hooks `long`, `flood`, `slow`, `hang`, `drop`.
    #[serde(default)]
    pub(crate) builtin: Option<String>,
    #[serde(default)]
    pub(crate) ask: Option<Box<Ask>>,
}

/// A question: its prompt is printed without a newline and the next line is its answer.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct Ask {
    pub(crate) prompt: String,
    /// Not echoed (recorded as `<hidden>` in `lines_received`).
    #[serde(default)]
    pub(crate) hidden: bool,
    /// `{answer}` when the answer is empty.
    #[serde(default)]
    pub(crate) default: String,
    /// First matching rule wins.
    #[serde(default)]
    pub(crate) answers: Vec<AnswerRule>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct AnswerRule {
    /// Case-insensitive regex, matched against the trimmed answer.
    #[serde(rename = "match", default)]
    pub(crate) pattern: Option<String>,
    /// `enable_password` (the configured one, "" if none) or `password` (the login one).
    #[serde(default)]
    pub(crate) check: Option<String>,
    #[serde(rename = "do", default)]
    pub(crate) act: Action,
}

/// The `test:` section of a fixture as written.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct PersonaTestDef {
    pub(crate) prompt: String,
    #[serde(default)]
    pub(crate) enable: Option<String>,
    #[serde(default)]
    pub(crate) enable_dialogue: Vec<Exchange>,
    pub(crate) privileged_prompt: String,
    #[serde(default)]
    pub(crate) paging_off: Vec<String>,
    #[serde(default)]
    pub(crate) width: Option<String>,
    pub(crate) show_command: String,
    pub(crate) show_output: String,
    #[serde(default)]
    pub(crate) long_command: Option<String>,
    pub(crate) invalid_command: String,
    pub(crate) error_line: String,
    #[serde(default)]
    pub(crate) config_enter: Option<String>,
    #[serde(default)]
    pub(crate) config_prompt: Option<String>,
    #[serde(default)]
    pub(crate) config_lines: Vec<String>,
    #[serde(default)]
    pub(crate) config_rejected: Option<String>,
    #[serde(default)]
    pub(crate) config_rejected_error: Option<String>,
    #[serde(default)]
    pub(crate) config_exit: Option<String>,
    #[serde(default)]
    pub(crate) running_config_command: Option<String>,
    #[serde(default)]
    pub(crate) running_config_contains: Vec<String>,
    #[serde(default)]
    pub(crate) save_command: Option<String>,
    #[serde(default)]
    pub(crate) save_in_config: bool,
    #[serde(default)]
    pub(crate) save_dialogue: Vec<Exchange>,
    #[serde(default)]
    pub(crate) save_done: Option<String>,
    #[serde(default)]
    pub(crate) interactive: Vec<Dialogue>,
    pub(crate) logout_command: String,
}

/// One question the device asks and the answer to give.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    /// The question exactly as printed (it ends the output; no newline after it).
    pub question: String,
    pub answer: String,
    /// The answer is not echoed.
    #[serde(default)]
    pub hidden: bool,
}

/// An interactive command run at the privileged prompt: its questions, in order, and a line
/// printed once it is done (`None`: nothing but the prompt).
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Dialogue {
    pub command: String,
    pub dialogue: Vec<Exchange>,
    #[serde(default)]
    pub done: Option<String>,
}

/// What a generic test needs to drive a persona (the fixture's `test:` section). Prompts and
/// outputs assume `DeviceConfig::persona(name)` (the fixture's hostname, user `admin`).
/// `show_output` is the exact text between the command's echo line and the prompt, lines
/// joined with `\n`, no trailing newline.
#[derive(Debug, Clone)]
pub struct PersonaTest {
    pub persona: String,
    /// Netmiko's device_type for this platform.
    pub device_type: String,
    pub hostname: String,
    /// Test-only commands are `<hook_prefix> long [N]`, `... flood MiB`, `... slow S`,
    /// `... hang`, `... drop`.
    pub hook_prefix: String,
    /// Printed after login; a key must be pressed before the first prompt.
    pub press_any_key: Option<String>,
    /// First prompt after login.
    pub prompt: String,
    /// Command that reaches `privileged_prompt` from `prompt` (None: starts there).
    pub enable: Option<String>,
    /// Questions `enable` asks when no enable password is configured (ASA asks anyway).
    pub enable_dialogue: Vec<Exchange>,
    pub privileged_prompt: String,
    /// Commands that turn paging off (run at `privileged_prompt`).
    pub paging_off: Vec<String>,
    pub width: Option<String>,
    /// What the first paging-off command prints instead when `DeviceConfig::paging_locked`.
    pub paging_locked_error: Vec<String>,
    /// The pager prompt and the bytes that erase it once answered (None: no pager).
    pub pager_prompt: Option<String>,
    pub pager_erase: Option<String>,
    /// A command whose output is longer than a page (default `<hook_prefix> long 60`).
    pub long_command: String,
    pub show_command: String,
    pub show_output: String,
    pub invalid_command: String,
    /// A line of the error output of `invalid_command`.
    pub error_line: String,
    pub config_enter: Option<String>,
    pub config_prompt: Option<String>,
    /// Accepted in `config_prompt`'s mode.
    pub config_lines: Vec<String>,
    pub config_rejected: Option<String>,
    /// A line of the error output of `config_rejected`.
    pub config_rejected_error: Option<String>,
    /// Leaves config mode back to `privileged_prompt` (after saving when `save_in_config`).
    pub config_exit: Option<String>,
    pub running_config_command: Option<String>,
    /// Lines `running_config_command` shows once `config_lines` are applied (and saved).
    pub running_config_contains: Vec<String>,
    pub save_command: Option<String>,
    /// The save command is given in config mode (Junos / XR `commit`).
    pub save_in_config: bool,
    pub save_dialogue: Vec<Exchange>,
    /// A line printed when the save is done.
    pub save_done: Option<String>,
    /// Interactive commands (questions, hidden answers) safe to run at `privileged_prompt`.
    pub interactive: Vec<Dialogue>,
    pub logout_command: String,
}

/// The `test:` section of a persona. Panics if there is no such persona.
pub fn persona_test(name: &str) -> PersonaTest {
    let p = get(name);
    let t = p.test.clone();
    let first_paging_off = t.paging_off.first().cloned().unwrap_or_default();
    PersonaTest {
        persona: p.name.clone(),
        device_type: p.device_type.clone(),
        hostname: p.hostname.clone(),
        hook_prefix: p.hooks.prefix.clone(),
        press_any_key: p.press_any_key.clone(),
        prompt: t.prompt,
        enable: t.enable,
        enable_dialogue: t.enable_dialogue,
        privileged_prompt: t.privileged_prompt,
        paging_off: t.paging_off,
        width: t.width,
        paging_locked_error: p
            .paging_locked_error
            .iter()
            .map(|l| l.replace("{line}", &first_paging_off))
            .collect(),
        pager_prompt: p.pager.as_ref().map(|x| x.prompt.clone()),
        pager_erase: p.pager.as_ref().map(|x| x.erase.clone()),
        long_command: t
            .long_command
            .unwrap_or_else(|| format!("{} long 60", p.hooks.prefix)),
        show_command: t.show_command,
        show_output: t.show_output.trim_end_matches('\n').to_string(),
        invalid_command: t.invalid_command,
        error_line: t.error_line,
        config_enter: t.config_enter,
        config_prompt: t.config_prompt,
        config_lines: t.config_lines,
        config_rejected: t.config_rejected,
        config_rejected_error: t.config_rejected_error,
        config_exit: t.config_exit,
        running_config_command: t.running_config_command,
        running_config_contains: t.running_config_contains,
        save_command: t.save_command,
        save_in_config: t.save_in_config,
        save_dialogue: t.save_dialogue,
        save_done: t.save_done,
        interactive: t.interactive,
        logout_command: t.logout_command,
    }
}

pub(crate) fn personas() -> &'static HashMap<&'static str, &'static Persona> {
    static P: OnceLock<HashMap<&'static str, &'static Persona>> = OnceLock::new();
    P.get_or_init(|| {
        FIXTURES
            .iter()
            .map(|(name, text)| {
                let p = load_persona(name, text)
                    .unwrap_or_else(|e| panic!("fake device: persona personas/{name}.yml: {e}"));
                let p: &'static Persona = Box::leak(Box::new(p));
                (*name, p)
            })
            .collect()
    })
}

pub(crate) fn get(name: &str) -> &'static Persona {
    personas().get(name).copied().unwrap_or_else(|| {
        panic!(
            "fake device: no persona {name:?}; known: {:?}",
            persona_names()
        )
    })
}

fn load_persona(name: &str, text: &str) -> Result<Persona, String> {
    let mut p: Persona = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    if p.name != name {
        return Err(format!("name is {:?}, file is {name:?}", p.name));
    }
    let modes: Vec<String> = p.modes.iter().map(|m| m.name.clone()).collect();
    let known = |m: &str| modes.iter().any(|x| x == m);
    for m in [&p.start_mode, &p.start_mode_privileged]
        .into_iter()
        .chain(p.ctrl_z.iter())
        .chain(p.modes.iter().filter_map(|m| m.parent.as_ref()))
        .chain(p.hooks.modes.iter())
    {
        if !known(m) {
            return Err(format!("unknown mode {m:?}"));
        }
    }
    for r in &p.reject {
        Regex::new(&r.pattern).map_err(|e| e.to_string())?;
    }
    for (re, _) in &p.ctx_rewrite {
        Regex::new(re).map_err(|e| e.to_string())?;
    }
    for k in &p.break_keys {
        if k.len() != 1 {
            return Err(format!("break key {k:?} is not one byte"));
        }
    }
    for r in &mut p.refuse {
        for m in &r.modes {
            if !known(m) {
                return Err(format!("refuse: unknown mode {m:?}"));
            }
        }
        let re = |s: &str| Regex::new(s).map_err(|e| format!("refuse: {e}"));
        let when = re(&r.when)?;
        let commands = r.commands.as_deref().map(re).transpose()?;
        let except = r.except.as_deref().map(re).transpose()?;
        r.compiled = Some((when, commands, except));
    }
    for c in &p.commands {
        for m in &c.modes {
            if !known(m) {
                return Err(format!("command {:?}: unknown mode {m:?}", c.cmd));
            }
        }
        check_action(&c.act, &known, &p.blocks).map_err(|e| format!("{:?}: {e}", c.cmd))?;
    }
    // The test hooks, then the fixture's commands (first definition of a path wins, so the
    // hooks can't be shadowed by accident).
    let mut cmds: Vec<CommandDef> = Vec::new();
    for (hook, grammar) in [
        ("long", "long [<n>]"),
        ("flood", "flood <n>"),
        ("slow", "slow <n>"),
        ("hang", "hang"),
        ("drop", "drop"),
    ] {
        cmds.push(CommandDef {
            cmd: format!("{} {grammar}", p.hooks.prefix),
            modes: p.hooks.modes.clone(),
            act: Action {
                builtin: Some(hook.to_string()),
                ..Default::default()
            },
        });
    }
    cmds.append(&mut p.commands);
    p.commands = cmds;
    let mut tries = HashMap::new();
    for m in &modes {
        let mut t = Trie::default();
        for (i, c) in p.commands.iter().enumerate() {
            if c.modes.iter().any(|x| x == m) {
                t.insert(&c.cmd, i)
                    .map_err(|e| format!("command {:?}: {e}", c.cmd))?;
            }
        }
        tries.insert(m.clone(), t);
    }
    p.tries = tries;
    p.accept_any = Action {
        record: vec!["{indent}{line}".to_string()],
        ..Default::default()
    };
    Ok(p)
}

fn check_action(
    a: &Action,
    known: &dyn Fn(&str) -> bool,
    blocks: &BTreeMap<String, Vec<String>>,
) -> Result<(), String> {
    if let Some(m) = &a.mode {
        if m != "^" && !known(m) {
            return Err(format!("unknown mode {m:?}"));
        }
    }
    if let Some(m) = &a.run_in {
        if !known(m) {
            return Err(format!("unknown mode {m:?}"));
        }
    }
    if let Some(b) = &a.builtin {
        const B: &[&str] = &[
            "exit", "reload", "commit", "discard", "rollback", "save", "clock", "long", "flood",
            "slow", "hang", "drop",
        ];
        if !B.contains(&b.as_str()) {
            return Err(format!("unknown builtin {b:?}"));
        }
    }
    for l in &a.say {
        if let Some(b) = l.strip_prefix('@') {
            if !blocks.contains_key(b) {
                return Err(format!("unknown block {b:?}"));
            }
        }
    }
    if let Some(r) = &a.revert {
        if !matches!(
            r.unit.as_deref(),
            None | Some("minutes" | "seconds" | "hms")
        ) {
            return Err(format!("unknown revert unit {:?}", r.unit));
        }
    }
    if let Some(c) = &a.cond {
        if let Some(re) = c.trim_start_matches('!').strip_prefix("has:") {
            Regex::new(re).map_err(|e| e.to_string())?;
        }
    }
    for sub in [&a.then, &a.otherwise].into_iter().flatten() {
        check_action(sub, known, blocks)?;
    }
    if let Some(ask) = &a.ask {
        for r in &ask.answers {
            if let Some(p) = &r.pattern {
                Regex::new(p).map_err(|e| e.to_string())?;
            }
            check_action(&r.act, known, blocks)?;
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Param {
    Word,
    Num(Option<(u64, u64)>),
    Rest,
}

impl Param {
    pub(crate) fn parse(tok: &str) -> Option<Param> {
        let inner = tok.strip_prefix('<')?.strip_suffix('>')?;
        Some(match inner {
            "rest" => Param::Rest,
            "n" => Param::Num(None),
            _ => match inner.split_once('-') {
                Some((a, b)) => match (a.parse(), b.parse()) {
                    (Ok(a), Ok(b)) => Param::Num(Some((a, b))),
                    _ => Param::Word,
                },
                None => Param::Word,
            },
        })
    }

    pub(crate) fn accepts(self, tok: &str) -> bool {
        match self {
            Param::Word | Param::Rest => true,
            Param::Num(range) => match tok.parse::<u64>() {
                Ok(n) => range.is_none_or(|(a, b)| a <= n && n <= b),
                Err(_) => false,
            },
        }
    }
}

#[derive(Default, Debug)]
pub(crate) struct Node {
    pub(crate) kws: Vec<(String, usize)>,
    pub(crate) params: Vec<(Param, usize)>,
    pub(crate) cmd: Option<usize>,
}

/// The commands of one mode as a tree of words.
#[derive(Debug)]
pub(crate) struct Trie {
    pub(crate) nodes: Vec<Node>,
}

impl Default for Trie {
    fn default() -> Self {
        Trie {
            nodes: vec![Node::default()],
        }
    }
}

/// Result of parsing a command line against a mode's grammar.
#[derive(Debug)]
pub(crate) enum Parse {
    Match {
        cmd: usize,
        args: Vec<String>,
    },
    /// No command word matches token `i`.
    Invalid(usize),
    Incomplete,
    Ambiguous(usize),
}

impl Trie {
    pub(crate) fn insert(&mut self, grammar: &str, cmd: usize) -> Result<(), String> {
        let mut required = Vec::new();
        let mut optional = Vec::new();
        for w in grammar.split_whitespace() {
            match w.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
                Some(inner) => optional.push(inner),
                None if optional.is_empty() => required.push(w),
                None => return Err("a required word after an optional one".into()),
            }
        }
        for k in 0..=optional.len() {
            let words = required.iter().chain(optional[..k].iter());
            let mut node = 0;
            for w in words {
                node = match Param::parse(w) {
                    Some(p) => match self.nodes[node].params.iter().find(|(q, _)| *q == p) {
                        Some(&(_, n)) => n,
                        None => {
                            self.nodes.push(Node::default());
                            let n = self.nodes.len() - 1;
                            self.nodes[node].params.push((p, n));
                            n
                        }
                    },
                    None => {
                        let w = w.to_ascii_lowercase();
                        match self.nodes[node].kws.iter().find(|(k, _)| *k == w) {
                            Some(&(_, n)) => n,
                            None => {
                                self.nodes.push(Node::default());
                                let n = self.nodes.len() - 1;
                                self.nodes[node].kws.push((w, n));
                                n
                            }
                        }
                    }
                };
            }
            if self.nodes[node].cmd.is_none() {
                self.nodes[node].cmd = Some(cmd);
            }
        }
        Ok(())
    }

    pub(crate) fn parse(&self, toks: &[(usize, &str)]) -> Parse {
        self.parse_from(0, toks, 0, &mut Vec::new())
    }

    /// Depth-first: keywords (exact, then a unique prefix) before parameters; on failure the
    /// error that got furthest into the line wins.
    fn parse_from(
        &self,
        node: usize,
        toks: &[(usize, &str)],
        i: usize,
        args: &mut Vec<String>,
    ) -> Parse {
        let n = &self.nodes[node];
        let Some(&(_, tok)) = toks.get(i) else {
            return match n.cmd {
                Some(cmd) => Parse::Match {
                    cmd,
                    args: args.clone(),
                },
                None => Parse::Incomplete,
            };
        };
        let w = tok.to_ascii_lowercase();
        let reach = |p: &Parse| match p {
            Parse::Match { .. } => usize::MAX,
            Parse::Invalid(j) | Parse::Ambiguous(j) => *j,
            Parse::Incomplete => toks.len(),
        };
        let mut best = Parse::Invalid(i);
        let consider = |r: Parse, best: &mut Parse| {
            if reach(&r) > reach(best) {
                *best = r;
            }
        };
        let exact = n.kws.iter().find(|(k, _)| *k == w).map(|&(_, x)| x);
        let kw = match exact {
            Some(x) => Some(x),
            None => {
                let prefixed: Vec<usize> = n
                    .kws
                    .iter()
                    .filter(|(k, _)| k.starts_with(&w))
                    .map(|&(_, x)| x)
                    .collect();
                match prefixed[..] {
                    [x] => Some(x),
                    [] => None,
                    _ => {
                        best = Parse::Ambiguous(i);
                        None
                    }
                }
            }
        };
        if let Some(next) = kw {
            let r = self.parse_from(next, toks, i + 1, args);
            if matches!(r, Parse::Match { .. }) {
                return r;
            }
            consider(r, &mut best);
        }
        for &(p, next) in &n.params {
            if !p.accepts(tok) {
                continue;
            }
            let (arg, j) = if p == Param::Rest {
                let rest: Vec<&str> = toks[i..].iter().map(|(_, t)| *t).collect();
                (rest.join(" "), toks.len())
            } else {
                (tok.to_string(), i + 1)
            };
            args.push(arg);
            let r = self.parse_from(next, toks, j, args);
            args.pop();
            if matches!(r, Parse::Match { .. }) {
                return r;
            }
            consider(r, &mut best);
        }
        best
    }
}

// ---------------------------------------------------------------------------------------------
