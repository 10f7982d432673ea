//! The command policy's choke point: every text the broker types into a device passes
//! [`LineGuard::admit`] before a byte of it is written, whatever asked for it (a command, a config
//! line, an interaction answer, a platform step such as `write memory`).
//!
//! What is checked is what the device would execute, not the string a client sent:
//! - No control character is ever typed (only the line end the channel adds): line editors turn
//!   backspace, Ctrl-U, Ctrl-Z, cursor keys and the like into other commands.
//! - A text is cut at its line ends; each line is checked on its own, joined to whatever may still
//!   sit in the device's line buffer from earlier text typed without a line end.
//! - While the device is not known to sit at its prompt (an answer to a question, anything typed
//!   ahead of a prompt), a question or pager may take leading keys as its answer and the rest runs
//!   as a command: the deny rules then see every tail of the line too.
//! - The platform's help key (`?` on most network CLIs) is not part of the line the device runs,
//!   and a config-mode exec escape (`do reload`) runs the command after it.
//!
//! Nothing here knows HTTP or platforms: the driver hands over the platform's [`LineSyntax`] and
//! the session the operator's [`CommandRules`].

use crate::policy::CommandRules;
use std::sync::Arc;

/// Why a text is typed. Decides whether the operator's command rules apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A command of an exec.
    Command,
    /// The platform's command that enters config mode (`configure terminal`).
    ConfigEnter,
    /// A line of a config block.
    ConfigLine,
    /// The platform's save or commit command (`write memory`, `commit`).
    Save,
    /// A client's interaction answer (`interactions[].send`, the `answer` form's newlines).
    Answer,
    /// A client's interaction answer marked `hidden` (masked in traces and refusals).
    HiddenAnswer,
    /// The platform's command that leaves config mode (`end`): exempt.
    ConfigExit,
    /// An answer from platform data to a question the platform knows: exempt.
    PlatformAnswer,
    /// The key that continues a pager: exempt.
    Pager,
    /// A username or a login question's answer while logging in: exempt.
    Login,
    /// A password or enable secret at the device's own prompt for it: exempt, masked.
    Secret,
    /// The platform's enable command at open: exempt.
    Enable,
    /// The platform's on-open commands (paging off, width): exempt.
    OnOpen,
    /// The platform's command that leaves a shell at open: exempt.
    ShellExit,
    /// An empty line (confirming the prompt, the CLI keepalive): exempt.
    Newline,
    /// The platform's logout command at close: exempt.
    Logout,
}

impl Step {
    /// Every step, for tests that walk them all.
    pub const ALL: [Step; 16] = [
        Step::Command,
        Step::ConfigEnter,
        Step::ConfigLine,
        Step::Save,
        Step::Answer,
        Step::HiddenAnswer,
        Step::ConfigExit,
        Step::PlatformAnswer,
        Step::Pager,
        Step::Login,
        Step::Secret,
        Step::Enable,
        Step::OnOpen,
        Step::ShellExit,
        Step::Newline,
        Step::Logout,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::Command => "command",
            Step::ConfigEnter => "config-mode step",
            Step::ConfigLine => "config line",
            Step::Save => "save step",
            Step::Answer => "interaction answer",
            Step::HiddenAnswer => "hidden interaction answer",
            Step::ConfigExit => "config-exit step",
            Step::PlatformAnswer => "platform answer",
            Step::Pager => "pager key",
            Step::Login => "login answer",
            Step::Secret => "secret",
            Step::Enable => "enable step",
            Step::OnOpen => "on-open command",
            Step::ShellExit => "shell-exit step",
            Step::Newline => "empty line",
            Step::Logout => "logout step",
        }
    }

    /// The operator's rules apply (the others are exempt by name, see docs/security.md).
    pub fn checked(self) -> bool {
        matches!(
            self,
            Step::Command
                | Step::ConfigEnter
                | Step::ConfigLine
                | Step::Save
                | Step::Answer
                | Step::HiddenAnswer
        )
    }

    /// Its text never reaches a trace, a log or a refusal.
    pub fn hidden(self) -> bool {
        matches!(self, Step::Secret | Step::HiddenAnswer)
    }
}

/// How a platform's line editor reads a line (platform data, `line:` in the platform files).
#[derive(Debug, Clone, Default)]
pub struct LineSyntax {
    /// A key that asks for help and is not part of the line (`?`).
    pub help: Option<char>,
    /// Words that, in config mode, run the command after them (`do`, `run`).
    pub exec_escapes: Vec<String>,
    /// The key that erases the whole line (Ctrl-U), typed before a line when text typed earlier
    /// may still sit in the device's line buffer.
    pub kill: Option<String>,
    /// The key that interrupts a running command (Ctrl-^ on IOS, Ctrl-C elsewhere): typed only
    /// by `Channel::interrupt`, never as part of a line.
    pub interrupt: Option<String>,
}

/// Longest text that may sit unfinished in the device's line buffer.
const MAX_PENDING_CHARS: usize = 4096;
/// Most different buffer contents tracked before a text is refused.
const MAX_PENDING: usize = 16;

/// Text typed without a line end that may still be in the device's line buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    text: String,
    /// Any tail of `text` may be what is left (leading keys may have been taken by a question).
    tails: bool,
}

/// The line buffer model of one session and the rules it types under.
#[derive(Debug, Clone)]
pub struct LineGuard {
    rules: Arc<CommandRules>,
    syntax: LineSyntax,
    /// What else but nothing the device's line buffer may hold.
    pending: Vec<Pending>,
    /// The device showed its prompt after the last text typed: no question or pager is open, so
    /// the next text reaches the line editor whole.
    settled: bool,
    /// Every step typed, in order (tests walk the send paths with it).
    #[cfg(test)]
    pub typed: Vec<Step>,
}

/// Which rules a line is checked against: unfinished text only against the deny rules (it may
/// still become an allowed command), but what they refuse now they refuse once it is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rules {
    All,
    DenyOnly,
}

/// What [`LineGuard::admit`] decided: write the kill key first (or not), then the text.
#[derive(Debug)]
pub struct Admitted {
    pub kill: Option<String>,
    pending: Vec<Pending>,
    #[cfg(test)]
    step: Step,
}

impl LineGuard {
    pub fn new(syntax: LineSyntax) -> LineGuard {
        LineGuard {
            rules: Arc::new(CommandRules::default()),
            syntax,
            pending: Vec::new(),
            settled: false,
            #[cfg(test)]
            typed: Vec::new(),
        }
    }

    /// The rules texts are checked against from now on (read by the session at each exec).
    pub fn set_rules(&mut self, rules: Arc<CommandRules>) {
        self.rules = rules;
    }

    /// The device showed its prompt after the last text typed.
    pub fn settle(&mut self) {
        self.settled = true;
    }

    /// The platform's line syntax this guard reads lines with.
    pub fn syntax(&self) -> &LineSyntax {
        &self.syntax
    }

    /// The running command was interrupted (the platform's interrupt key): the device drops its
    /// line buffer, and nothing is known to be settled until its prompt is seen again.
    pub fn interrupted(&mut self) {
        self.pending.clear();
        self.settled = false;
    }

    /// Check `text` typed as `step`; nothing is written when this refuses. `Err` names the step,
    /// the line (unless hidden) and the rule.
    pub fn admit(&self, text: &str, step: Step) -> Result<Admitted, String> {
        let what = step.name();
        if let Some((i, c)) = text.chars().enumerate().find(|(_, c)| bad_char(*c)) {
            return Err(format!(
                "the {what} contains the control character {} at position {i}; nothing is typed",
                char_name(c)
            ));
        }
        // An exempt step types one line of its own at most: a line end inside a username or a
        // password would type a command after it.
        if !step.checked() && text.trim_end_matches('\n').contains('\n') {
            return Err(format!(
                "the {what} would type more than one line; nothing is typed"
            ));
        }
        let mut pending = self.pending.clone();
        let kill = match &self.syntax.kill {
            Some(k) if self.settled && !pending.is_empty() => {
                pending.clear();
                Some(k.clone())
            }
            _ => None,
        };
        let mut settled = self.settled;
        let mut segs = text.split('\n').peekable();
        while let Some(seg) = segs.next() {
            if segs.peek().is_some() {
                self.check_line(seg, &pending, settled, step, Rules::All)?;
                pending.clear();
            } else if !seg.trim().is_empty() || !pending.is_empty() {
                // Unfinished text runs nothing yet, but what a deny rule refuses now it refuses
                // once finished too: refuse it before it is typed.
                self.check_line(seg, &pending, settled, step, Rules::DenyOnly)?;
                pending = grow(&pending, seg, settled);
                if pending.len() > MAX_PENDING
                    || pending
                        .iter()
                        .any(|p| p.text.chars().count() > MAX_PENDING_CHARS)
                {
                    return Err(format!(
                        "too much text typed without a line end for the broker to check ({what}); nothing is typed"
                    ));
                }
            }
            settled = false;
        }
        Ok(Admitted {
            kill,
            pending,
            #[cfg(test)]
            step,
        })
    }

    /// Take `other`'s possible buffer contents as possible too (an answer that may or may not
    /// have been sent).
    pub fn merge(&mut self, other: LineGuard) -> Result<(), String> {
        for p in other.pending {
            if !self.pending.contains(&p) {
                self.pending.push(p);
            }
        }
        self.settled &= other.settled;
        if self.pending.len() > MAX_PENDING {
            return Err(
                "too much text typed without a line end for the broker to check; nothing of this exec was sent"
                    .into(),
            );
        }
        Ok(())
    }

    /// Record that an admitted text was written.
    pub fn commit(&mut self, a: Admitted) {
        #[cfg(test)]
        self.typed.push(a.step);
        self.pending = a.pending;
        self.settled = false;
    }

    fn check_line(
        &self,
        line: &str,
        pending: &[Pending],
        settled: bool,
        step: Step,
        which: Rules,
    ) -> Result<(), String> {
        if self.rules.is_empty() {
            return Ok(());
        }
        // (text, the device may run any tail of it from `from` on): the line alone (when this
        // step is checked), and joined to each text that may be in the buffer.
        let mut forms: Vec<(String, Option<usize>)> = Vec::new();
        if step.checked() {
            forms.push((line.to_string(), (!settled).then_some(0)));
        }
        for p in pending {
            let joined = format!("{}{line}", p.text);
            let tails = (p.tails || !settled).then_some(0);
            forms.push((joined, tails));
        }
        for (form, tails) in &forms {
            if form.trim().is_empty() {
                continue;
            }
            let mut starts = vec![0];
            if tails.is_some() {
                starts.extend(form.char_indices().map(|(i, _)| i).skip(1));
            }
            for at in starts {
                let tail = &form[at..];
                if tail.trim().is_empty() {
                    continue;
                }
                for c in self.candidates(tail) {
                    if let Some(rule) = self.rules.denies(&c) {
                        return Err(self.refusal(step, line, form, &c, at > 0, rule));
                    }
                }
            }
            let eff = self.effective(form);
            if which == Rules::All && !eff.is_empty() {
                if let Err(r) = self.rules.allows(&eff) {
                    let (key, of) = (r.rule, r.of);
                    return Err(if step.hidden() {
                        format!(
                            "the {} matches no {key} rule{of}; nothing of this exec was sent",
                            step.name()
                        )
                    } else {
                        format!(
                            "the {} {:?} matches no {key} rule{of}{}; nothing of this exec was sent",
                            step.name(),
                            normalize(line),
                            joined_note(form, line, &eff)
                        )
                    });
                }
            }
        }
        Ok(())
    }

    fn refusal(
        &self,
        step: Step,
        line: &str,
        form: &str,
        runs: &str,
        tail: bool,
        rule: crate::policy::Rule,
    ) -> String {
        let (rule, of) = (rule.rule, rule.of);
        let how = if tail {
            " (typed where a question or pager may take the keys before it)"
        } else {
            ""
        };
        if step.hidden() {
            return format!(
                "the {} could run a command that matches denied_commands rule {rule:?}{of}; nothing of this exec was sent",
                step.name()
            );
        }
        let line = normalize(line);
        let runs = normalize(runs);
        if runs == line && form == line {
            format!(
                "the {} {line:?} matches denied_commands rule {rule:?}{of}; nothing of this exec was sent",
                step.name()
            )
        } else {
            format!(
                "the {} {line:?} could run {runs:?}{how}, which matches denied_commands rule {rule:?}{of}; nothing of this exec was sent",
                step.name()
            )
        }
    }

    /// The texts a deny rule is tried on: the line as typed (blanks folded) and the command the
    /// device runs (help keys dropped, exec escapes taken off).
    fn candidates(&self, line: &str) -> Vec<String> {
        let n = normalize(line);
        let e = self.effective(line);
        if e == n {
            vec![n]
        } else {
            vec![n, e]
        }
    }

    /// The command the device runs for `line`.
    pub fn effective(&self, line: &str) -> String {
        let line: String = match self.syntax.help {
            Some(h) => line.chars().filter(|c| *c != h).collect(),
            None => line.to_string(),
        };
        let mut s = normalize(&line);
        'strip: loop {
            for esc in &self.syntax.exec_escapes {
                let n = esc.len();
                if s.len() > n
                    && s.is_char_boundary(n)
                    && s[..n].eq_ignore_ascii_case(esc)
                    && s.as_bytes()[n] == b' '
                {
                    s = s[n + 1..].to_string();
                    continue 'strip;
                }
            }
            break s;
        }
    }
}

fn joined_note(form: &str, line: &str, eff: &str) -> String {
    if form != line {
        format!(" (joined to text typed earlier, the device would run {eff:?})")
    } else {
        String::new()
    }
}

/// The buffer contents possible after typing `seg` without a line end.
fn grow(pending: &[Pending], seg: &str, settled: bool) -> Vec<Pending> {
    let mut out: Vec<Pending> = Vec::new();
    let mut add = |p: Pending| {
        if !p.text.trim().is_empty() && !out.contains(&p) {
            out.push(p);
        }
    };
    add(Pending {
        text: seg.to_string(),
        tails: !settled,
    });
    for p in pending {
        add(Pending {
            text: format!("{}{seg}", p.text),
            tails: p.tails || !settled,
        });
    }
    out
}

/// Blanks folded, as device CLIs read them.
fn normalize(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A character a line editor may act on: C0 controls, DEL and C1 controls. The line end is the
/// channel's own, never part of a text.
pub fn bad_char(c: char) -> bool {
    c != '\n' && is_control(c)
}

/// C0 controls, DEL, C1 controls.
pub fn is_control(c: char) -> bool {
    (c as u32) < 0x20 || (0x7f..=0x9f).contains(&(c as u32))
}

/// `U+0008 (backspace)` and the like, for error messages.
pub fn char_name(c: char) -> String {
    let name = match c as u32 {
        0x00 => "NUL",
        0x03 => "Ctrl-C",
        0x04 => "Ctrl-D",
        0x08 => "backspace",
        0x09 => "tab",
        0x0a => "line feed",
        0x0d => "carriage return",
        0x15 => "Ctrl-U",
        0x16 => "Ctrl-V",
        0x17 => "Ctrl-W",
        0x1a => "Ctrl-Z",
        0x1b => "escape",
        0x1e => "Ctrl-^",
        0x7f => "delete",
        n if n < 0x20 => "control character",
        _ => "C1 control character",
    };
    format!("U+{:04X} ({name})", c as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ios() -> LineSyntax {
        LineSyntax {
            help: Some('?'),
            exec_escapes: vec!["do".into()],
            kill: Some("\u{15}".into()),
            interrupt: Some("\u{1e}".into()),
        }
    }

    fn guard(denied: &[&str], allowed: &[&str], syntax: LineSyntax) -> LineGuard {
        let mut g = LineGuard::new(syntax);
        g.set_rules(Arc::new(CommandRules::new(denied, allowed).unwrap()));
        g.settle();
        g
    }

    /// Types each text as `step`, as a session would; the device shows its prompt after each
    /// text that ends a line when `settle` says so.
    fn type_all(g: &mut LineGuard, texts: &[(&str, Step)], settle: bool) -> Result<(), String> {
        for (t, s) in texts {
            let a = g.admit(t, *s)?;
            g.commit(a);
            if settle && t.ends_with('\n') {
                g.settle();
            }
        }
        Ok(())
    }

    const DENY: &[&str] = &["^reload", "^conf", "^write"];

    #[test]
    fn control_characters_are_never_typed() {
        let g = guard(&[], &[], ios());
        for t in [
            "x\u{8}reload\n",
            "relx\u{7f}oad\n",
            "hostn\u{15}reload\n",
            "\u{1b}[Creload\n",
            "show clock\u{1a}reload\n",
            "a\rb\n",
            "a\tb\n",
            "a\u{9b}b\n",
            "a\0\n",
        ] {
            let e = g.admit(t, Step::Command).unwrap_err();
            assert!(e.contains("control character U+"), "{t:?}: {e}");
            // Exempt steps too: nothing types a control character.
            assert!(g.admit(t, Step::Secret).is_err());
        }
        assert!(g.admit("show clock\n", Step::Command).is_ok());
    }

    #[test]
    fn every_line_of_a_text_is_checked() {
        let g = guard(DENY, &[], ios());
        assert!(g.admit("show clock\nreload\n", Step::Answer).is_err());
        assert!(g.admit("show clock\n", Step::Answer).is_ok());
        // Help keys are not part of the line; exec escapes run what follows.
        for t in [
            "?reload\n",
            "rel?oad\n",
            "do reload\n",
            "do  do  conf t\n",
            "DO Write\n",
        ] {
            assert!(g.admit(t, Step::ConfigLine).is_err(), "{t:?}");
        }
        // Platform steps are checked when they change the device.
        assert!(g.admit("write memory\n", Step::Save).is_err());
        assert!(g.admit("configure terminal\n", Step::ConfigEnter).is_err());
        // Exempt by name: leaving config mode, paging off.
        assert!(g.admit("end\n", Step::ConfigExit).is_ok());
        assert!(g.admit("terminal length 0\n", Step::OnOpen).is_ok());
        // Exempt steps type one line at most (a password cannot carry a command).
        assert!(g.admit("s3cret\nreload\n", Step::Secret).is_err());
        assert!(g.admit("admin\nshow clock\n", Step::Login).is_err());
    }

    #[test]
    fn text_split_across_answers_is_joined() {
        let mut g = guard(DENY, &[], LineSyntax::default());
        // "rel" typed without a line end (at the prompt), then "oad" as the next command.
        let r = type_all(
            &mut g,
            &[
                ("show clock\n", Step::Command),
                ("rel", Step::Answer),
                ("oad\n", Step::Command),
            ],
            true,
        );
        let e = r.unwrap_err();
        assert!(e.contains("\"reload\""), "{e}");
        // Unfinished text a deny rule refuses is refused before it is typed.
        let g = guard(DENY, &[], LineSyntax::default());
        assert!(g.admit("reload", Step::Answer).is_err());
        let mut g = guard(DENY, &[], LineSyntax::default());
        let a = g.admit("show clock\n", Step::Command).unwrap();
        g.commit(a);
        assert!(g.admit("yreload", Step::Answer).is_err());
        // Even an exempt step's line end is checked when it would finish a client's text.
        let mut g = guard(&[], &["^show "], LineSyntax::default());
        let a = g.admit("conf", Step::Answer).unwrap();
        g.commit(a);
        assert!(g.admit("\n", Step::Newline).is_err());
        assert!(g.admit("\n", Step::PlatformAnswer).is_err());
    }

    #[test]
    fn keys_taken_by_a_question_expose_the_rest() {
        let mut g = guard(DENY, &[], LineSyntax::default());
        // An answer is typed while a question is open: `y` may answer [confirm], the rest runs.
        let a = g.admit("show clock\n", Step::Command).unwrap();
        g.commit(a);
        let e = g.admit("yreload\n", Step::Answer).unwrap_err();
        assert!(e.contains("could run \"reload\""), "{e}");
        // Pager pauses can take several keys.
        assert!(g.admit("   xxxxconf t\n", Step::Answer).is_err());
        // At a known prompt a command runs whole: no tails.
        let mut g = guard(DENY, &[], LineSyntax::default());
        assert!(g.admit("show reload\n", Step::Command).is_ok());
        // ... but not once something else was typed since the prompt.
        let a = g.admit("show clock\n", Step::Command).unwrap();
        g.commit(a);
        assert!(g.admit("yreload\n", Step::Command).is_err());
    }

    #[test]
    fn allow_lists_see_joined_and_effective_lines() {
        let g = guard(&[], &["^show "], ios());
        assert!(g.admit("show clock\n", Step::Command).is_ok());
        assert!(g.admit("do show clock\n", Step::ConfigLine).is_ok());
        assert!(g.admit("show clock ?\n", Step::Command).is_ok());
        assert!(g
            .admit(
                "show \u{8}\u{8}\u{8}\u{8}\u{8}configure terminal\n",
                Step::Command
            )
            .is_err());
        assert!(g.admit("configure terminal\n", Step::ConfigEnter).is_err());
        assert!(g.admit("y\n", Step::Answer).is_err());
        // Empty lines run nothing.
        assert!(g.admit("\n", Step::Answer).is_ok());
        // "show " typed without a line end, then "clock" answered: "show clock" is what runs.
        let mut g = guard(&[], &["^show "], LineSyntax::default());
        let a = g.admit("conf", Step::Answer).unwrap();
        g.commit(a);
        assert!(g.admit("igure terminal\n", Step::Command).is_err());
    }

    #[test]
    fn the_kill_key_clears_what_may_be_left() {
        let mut g = guard(&[], &["^show ", "^y$"], ios());
        let a = g.admit("y", Step::Answer).unwrap();
        assert!(a.kill.is_none());
        g.commit(a);
        g.settle();
        // Back at the prompt: Ctrl-U first, then the command checks alone.
        let a = g.admit("show clock\n", Step::Command).unwrap();
        assert_eq!(a.kill.as_deref(), Some("\u{15}"));
        g.commit(a);
        g.settle();
        assert!(g
            .admit("show clock\n", Step::Command)
            .unwrap()
            .kill
            .is_none());
        // Without a kill key the joined line is refused by the allow-list.
        let mut g = guard(&[], &["^show ", "^y$"], LineSyntax::default());
        let a = g.admit("y", Step::Answer).unwrap();
        g.commit(a);
        g.settle();
        assert!(g.admit("show clock\n", Step::Command).is_err());
    }

    #[test]
    fn hidden_answers_are_checked_but_never_shown() {
        let g = guard(DENY, &[], ios());
        let e = g.admit("reload\n", Step::HiddenAnswer).unwrap_err();
        assert!(!e.contains("\"reload\""), "{e}");
        assert!(e.contains("^reload"));
        assert!(g.admit("reload\n", Step::Secret).is_ok());
    }

    #[test]
    fn without_rules_only_characters_are_checked() {
        let g = guard(&[], &[], ios());
        assert!(g.admit("reload\n", Step::Command).is_ok());
        assert!(g.admit("re\u{8}load\n", Step::Command).is_err());
    }

    #[test]
    fn unfinished_text_is_bounded() {
        let mut g = guard(DENY, &[], LineSyntax::default());
        for _ in 0..MAX_PENDING {
            let a = g.admit("x", Step::Answer).unwrap();
            g.commit(a);
        }
        assert!(g.admit("x", Step::Answer).is_err());
    }
}
