//! A fake network device for netdev-broker's demo and tests.
//!
//! * [`persona`]: the platforms it plays, one YAML persona per platform (`personas/*.yml`,
//!   embedded at compile time; the format is the serde types of [`persona`], documented there): prompts per mode,
//!   command grammar, canned outputs, error texts, pager, questions, save dialogue, and a
//!   `test:` section for generic tests.
//! * [`engine`]: the synchronous CLI state machine that plays a persona over a byte stream
//!   ([`engine::Session`]: bytes in, bytes out, timers and an end action); no I/O of its own.
//! * [`line_edit`]: the IOS line editor every command line is read through; the lines the CLI
//!   acts on are kept in a journal ([`JournalEntry`]).
//! * [`state`]: what a device keeps across its sessions ([`DeviceState`]: running config,
//!   hostname, the revert timer of a confirmed change, which expires by itself).
//! * Fronts that carry a session over a transport: [`telnet`] (std threads: `netdev-broker
//!   demo` and the Telnet tests), [`stdio`] (stdin/stdout: an sshd `ForceCommand`, the bench's
//!   latency device) and [`ssh`] (feature `ssh`: russh + tokio, for tests, examples and
//!   benches only).
//!
//! Without features the crate uses std threads only and pulls no async runtime, so the product
//! can link it.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

pub mod engine;
pub mod line_edit;
pub mod persona;
#[cfg(feature = "ssh")]
pub mod ssh;
pub mod state;
pub mod stdio;
pub mod telnet;

pub use engine::BREAK_MARK;
pub use line_edit::{Event as LineEvent, History, LineEditor};
pub use persona::{persona_names, persona_test, Dialogue, Exchange, PersonaTest};
#[cfg(feature = "ssh")]
pub use ssh::{gen_client_key_openssh, gen_host_key_openssh, FakeDevice};
pub use state::{DeviceState, REVERT_MARK};
pub use telnet::{DeviceOptions, TelnetDevice};

/// Behaviour of one fake device.
#[derive(Clone, Debug)]
pub struct DeviceConfig {
    /// Platform persona: the name of a fixture in `personas/` (see
    /// [`persona_names`]). Default `cisco_ios`.
    pub persona: String,
    /// Initial hostname, shown in the prompt (`R1>`). [`DeviceConfig::persona`] sets the
    /// fixture's own hostname.
    pub hostname: String,
    /// The only user accepted (every auth method).
    pub username: String,
    /// Password of `username`.
    pub password: String,
    /// `None` => `enable` needs no password.
    pub enable_password: Option<String>,
    /// `true` => the session starts at `R1#` instead of `R1>`.
    pub start_privileged: bool,
    /// Printed (with `\r\n` line endings) before the first prompt.
    pub banner: Option<String>,
    /// Device-side idle timeout: disconnect after N s without input (like IOS exec-timeout).
    pub exec_timeout_secs: Option<u64>,
    /// The paging-off command is refused with the platform's authorization-failure text, so
    /// the pager stays on.
    pub paging_locked: bool,
    /// Message of the day, printed after login (after the banner) before the first prompt.
    /// Printed as given (`\n` becomes `\r\n`), so it may hold prompt-like text and ANSI codes.
    pub motd: Option<String>,
    /// Every prompt is written in two separate writes with a short gap (`R1` then `#`).
    pub prompt_split: bool,
    /// Pause before each output line of a command (a slow device); default zero.
    pub line_delay: Duration,
    /// Every prompt is wrapped in colour escape codes (`\x1b[1;32m` ... `\x1b[0m`).
    pub ansi_prompt: bool,
    /// Host key: an unencrypted OpenSSH-format private key (`-----BEGIN OPENSSH PRIVATE
    /// KEY-----`, e.g. from [`gen_host_key_openssh`]). `None` = a fresh ed25519 key per device.
    /// Starting another device on the same port with another key is a host-key rotation.
    /// [`FakeDevice::start_on`] panics if it can't be parsed.
    pub host_key: Option<String>,
    /// Which user-authentication methods are offered and accepted. Default
    /// [`AuthMode::Password`].
    pub auth: AuthMode,
    /// How long a device "minute" lasts for the revert timers of confirmed changes
    /// (`configure terminal revert timer 5`, `commit confirmed 5`); a device second is a
    /// sixtieth of it. Default 60 s; tests use e.g. 1 s.
    pub minute: Duration,
}

/// The user-authentication methods a [`FakeDevice`] offers and accepts (for
/// [`DeviceConfig::username`]). The others are refused, whatever the credentials, and not
/// advertised.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AuthMode {
    /// `password`, plus `keyboard-interactive` with one hidden `Password: ` prompt (both take
    /// [`DeviceConfig::password`]).
    #[default]
    Password,
    /// Only `keyboard-interactive` (one hidden `Password: ` prompt); `password` is refused.
    KeyboardInteractiveOnly,
    /// Only `publickey`, with these authorized public keys (OpenSSH one-line format,
    /// `ssh-ed25519 AAAA... comment`; the comment is ignored). russh checks the signature.
    PublicKeyOnly(Vec<String>),
    /// `publickey` (these keys) or `password`; `keyboard-interactive` is refused.
    PasswordOrPublicKey(Vec<String>),
}

impl DeviceConfig {
    /// The default configuration with the given persona and that persona's own hostname.
    /// Panics if there is no such persona.
    pub fn persona(name: &str) -> DeviceConfig {
        let p = persona::get(name);
        DeviceConfig {
            persona: p.name.clone(),
            hostname: p.hostname.clone(),
            ..Default::default()
        }
    }
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            hostname: "R1".to_string(),
            username: "admin".to_string(),
            password: "cisco".to_string(),
            enable_password: None,
            start_privileged: false,
            banner: None,
            exec_timeout_secs: None,
            persona: "cisco_ios".to_string(),
            paging_locked: false,
            motd: None,
            prompt_split: false,
            ansi_prompt: false,
            line_delay: Duration::ZERO,
            host_key: None,
            auth: AuthMode::Password,
            minute: Duration::from_secs(60),
        }
    }
}

/// One thing the device received from the client, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A line typed at a prompt.
    Command(String),
    /// A line typed at a (echoed) question, e.g. `Destination filename [startup-config]? `.
    Answer { question: String, text: String },
    /// A line typed at a hidden (not echoed) question such as `Password: `; `text` is what
    /// actually arrived.
    Hidden { question: String, text: String },
    /// The key pressed at a `Press any key to continue` screen (`\r` shows as "").
    Key { question: String, text: String },
    /// A control key the line editor acted on at a prompt: `^Z` (recorded after the line it
    /// ended, if any) or `^C` (the line is dropped).
    Control(String),
}

/// One line a fake device's CLI acted on (the journal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// The persona mode the line was executed in (`user`, `priv`, `config`, `config-if`, ...
    /// for `cisco_ios`).
    pub mode: String,
    /// The line as executed (after line editing; invalid UTF-8 replaced by U+FFFD).
    pub line: String,
}

/// What every session of a device received: shared by the sessions and the device's handle.
/// Only the newest [`Log::MAX`] inputs and journal entries are kept.
#[derive(Debug, Default)]
pub struct Log {
    inputs: Mutex<VecDeque<Input>>,
    journal: Mutex<VecDeque<JournalEntry>>,
}

fn push_capped<T>(q: &Mutex<VecDeque<T>>, x: T) {
    let mut q = lock(q);
    if q.len() >= Log::MAX {
        q.pop_front();
    }
    q.push_back(x);
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Log {
    pub const MAX: usize = 10_000;

    pub fn record(&self, input: Input) {
        push_capped(&self.inputs, input);
    }

    pub fn journal_push(&self, entry: JournalEntry) {
        push_capped(&self.journal, entry);
    }

    /// Every line received, in order: commands and answers to questions as typed; lines typed
    /// at a hidden question (`Password:`) are recorded as `<hidden>`. Empty lines are recorded
    /// as `""`; Ctrl-Z and Ctrl-C as `^Z` and `^C`. Keys pressed at `Press any key` are not
    /// lines. [`Log::inputs`] tells commands
    /// and answers apart.
    pub fn lines_received(&self) -> Vec<String> {
        lock(&self.inputs)
            .iter()
            .filter_map(|i| match i {
                Input::Command(t) | Input::Answer { text: t, .. } | Input::Control(t) => {
                    Some(t.clone())
                }
                Input::Hidden { .. } => Some("<hidden>".to_string()),
                Input::Key { .. } => None,
            })
            .collect()
    }

    /// Everything received, in order, telling commands, answers to questions (with the
    /// question), hidden answers (with what arrived) and keys apart.
    pub fn inputs(&self) -> Vec<Input> {
        lock(&self.inputs).iter().cloned().collect()
    }

    /// The command lines the CLI acted on, in order: each line as the IOS line editor finished
    /// it (Enter, or Ctrl-Z after text), whatever the CLI then made of it (errors included).
    /// Blank lines, lines dropped with Ctrl-C, `?` help and answers to questions are not in it
    /// ([`Log::inputs`] has the answers).
    pub fn journal(&self) -> Vec<String> {
        lock(&self.journal).iter().map(|e| e.line.clone()).collect()
    }

    /// [`Log::journal`] with the persona mode each line was executed in.
    pub fn journal_entries(&self) -> Vec<JournalEntry> {
        lock(&self.journal).iter().cloned().collect()
    }

    /// The answers given to questions so far: (question, answer), hidden ones included with
    /// their real text.
    pub fn answers(&self) -> Vec<(String, String)> {
        lock(&self.inputs)
            .iter()
            .filter_map(|i| match i {
                Input::Answer { question, text } | Input::Hidden { question, text } => {
                    Some((question.clone(), text.clone()))
                }
                _ => None,
            })
            .collect()
    }
}
