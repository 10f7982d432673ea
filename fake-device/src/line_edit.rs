//! An IOS-like line editor: bytes typed at a CLI prompt in, the line the device executes out.
//!
//! Pure (no I/O), byte at a time, so escape sequences and CR LF split across reads are fine.
//! Both fake devices (the Telnet `demo` device and the SSH fake of the integration tests) read
//! their command lines through it, so that what they execute (and journal) is what a Cisco IOS
//! line editor would have made of the bytes, not the raw bytes.
//!
//! Keys, as the IOS "Using the Cisco IOS Command-Line Interface" chapter lists them:
//!
//! | key | effect |
//! |---|---|
//! | CR, LF, CR LF, CR NUL | [`Event::Line`] (one Enter) |
//! | Ctrl-Z | [`Event::End`]: the line typed so far is executed, then configuration mode ends |
//! | Ctrl-C | [`Event::Abort`]: the line is discarded (and configuration mode ends) |
//! | `?` | [`Event::Help`]; the line stays as it was (the `?` is not inserted) |
//! | BS (0x08), DEL (0x7f) | erase the character before the cursor |
//! | Ctrl-D | erase the character at the cursor |
//! | Ctrl-U, Ctrl-X | erase from the cursor to the start of the line (saved for Ctrl-Y) |
//! | Ctrl-K | erase from the cursor to the end of the line (saved) |
//! | Ctrl-W | erase the word before the cursor (saved) |
//! | ESC D | erase from the cursor to the end of the word (saved) |
//! | Ctrl-Y | insert the most recently erased text at the cursor; ESC Y then cycles older ones |
//! | Ctrl-A / Ctrl-E | cursor to the start / end of the line |
//! | Ctrl-B, ESC `[` D, ESC O D / Ctrl-F, ESC `[` C, ESC O C | cursor one character left / right |
//! | ESC B / ESC F | cursor one word left / right |
//! | Ctrl-P, ESC `[` A / Ctrl-N, ESC `[` B | recall the previous / next line of the history |
//! | Ctrl-T | transpose the character before the cursor with the one at it |
//! | ESC C / ESC L / ESC U | capitalize / lowercase / uppercase from the cursor to the end of the word |
//! | Ctrl-V, ESC Q | the next byte is inserted as it is (even `?` or a control byte; not CR/LF) |
//! | Tab | word completion: not modelled, ignored |
//! | other C0 bytes, other escape sequences | ignored (a CSI sequence is read to its final byte) |
//!
//! Characters are inserted at the cursor. Bytes are characters (IOS is not UTF-8 aware: BS
//! erases one byte). Lines are at most [`MAX_LINE`] bytes; more is dropped. Executed non-blank
//! lines go to a history of [`HISTORY_SIZE`] lines; like IOS there is one history for EXEC
//! modes and another for configuration modes ([`LineEditor::set_history`]).
//!
//! Echo: the editor writes what a terminal needs to show the line (characters, `\x08` to move
//! left, the rest of the line re-sent after a mid-line change, blanks over erased tails,
//! `\r\n` on Enter, `^Z\r\n`, `^C\r\n`, `?\r\n`); the caller sends [`LineEditor::take_echo`].

use std::collections::VecDeque;

/// Lines kept in each history (IOS `terminal history size` default).
pub const HISTORY_SIZE: usize = 10;
/// The longest line, in bytes; bytes typed beyond it are dropped.
pub const MAX_LINE: usize = 4096;
/// Erased texts kept for Ctrl-Y (IOS keeps ten).
const KILL_RING: usize = 10;

const BS: u8 = 0x08;
const CR: u8 = b'\r';
const LF: u8 = b'\n';
const ESC: u8 = 0x1b;
const DEL: u8 = 0x7f;

/// What a key completed. Echo is separate ([`LineEditor::take_echo`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Enter: execute this line (it may be empty or blank).
    Line(Vec<u8>),
    /// Ctrl-Z: execute this line when it is not blank, then leave configuration mode (IOS's
    /// `end`; nothing more in EXEC mode).
    End(Vec<u8>),
    /// Ctrl-C: the line was discarded, nothing is executed; in configuration mode IOS also goes
    /// back to privileged EXEC mode.
    Abort,
    /// `?`: show the help for this line, then the prompt, then call [`LineEditor::redraw`].
    /// The line is kept as it was before the `?`, with the cursor at its end.
    Help(Vec<u8>),
}

/// Which history the Up/Down keys walk and executed lines go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum History {
    Exec,
    Config,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    No,
    /// After ESC.
    Start,
    /// After ESC `[`; true once a parameter or intermediate byte was seen.
    Csi(bool),
    /// After ESC `O`.
    Ss3,
}

/// The line editor of one terminal session. See the module documentation for the keys.
#[derive(Debug, Clone)]
pub struct LineEditor {
    buf: Vec<u8>,
    cursor: usize,
    /// What the terminal shows of the line, and where its cursor is (for the echo).
    shown: Vec<u8>,
    shown_cursor: usize,
    echo: bool,
    out: Vec<u8>,
    esc: Esc,
    literal: bool,
    after_cr: bool,
    histories: [VecDeque<Vec<u8>>; 2],
    slot: usize,
    /// While walking the history: how far back (0 = the newest line).
    recalled: Option<usize>,
    kills: VecDeque<Vec<u8>>,
    /// The text the last key yanked: (start, length, index in `kills`), for ESC Y.
    yank: Option<(usize, usize, usize)>,
}

impl Default for LineEditor {
    fn default() -> Self {
        LineEditor::new()
    }
}

impl LineEditor {
    /// An empty line, echo on, EXEC history.
    pub fn new() -> LineEditor {
        LineEditor {
            buf: Vec::new(),
            cursor: 0,
            shown: Vec::new(),
            shown_cursor: 0,
            echo: true,
            out: Vec::new(),
            esc: Esc::No,
            literal: false,
            after_cr: false,
            histories: [VecDeque::new(), VecDeque::new()],
            slot: 0,
            recalled: None,
            kills: VecDeque::new(),
            yank: None,
        }
    }

    /// Echo on (default) or off. Off: [`LineEditor::take_echo`] stays empty.
    pub fn set_echo(&mut self, on: bool) {
        self.echo = on;
    }

    /// Selects the history for the next keys and lines (the mode the prompt is in).
    pub fn set_history(&mut self, h: History) {
        self.slot = match h {
            History::Exec => 0,
            History::Config => 1,
        };
        self.recalled = None;
    }

    /// A new prompt was shown: forgets any partial line, escape sequence, pending Ctrl-V and
    /// the CR of a CR LF pair (the caller's reader owns the bytes in between). History and
    /// erased texts stay.
    pub fn start_line(&mut self) {
        self.buf.clear();
        self.cursor = 0;
        self.shown.clear();
        self.shown_cursor = 0;
        self.esc = Esc::No;
        self.literal = false;
        self.after_cr = false;
        self.recalled = None;
        self.yank = None;
    }

    /// The line as edited so far.
    pub fn line(&self) -> &[u8] {
        &self.buf
    }

    /// The cursor position in [`LineEditor::line`] (0 = before the first byte).
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// The history selected now, oldest first.
    pub fn history(&self) -> Vec<Vec<u8>> {
        self.histories[self.slot].iter().cloned().collect()
    }

    /// The echo produced since the last call.
    pub fn take_echo(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Echoes the whole line again (after [`Event::Help`] and the prompt).
    pub fn redraw(&mut self) {
        self.shown.clear();
        self.shown_cursor = 0;
        self.sync();
    }

    /// Feeds every byte; returns the events in order. Bytes after an event start the next line.
    pub fn feed_all(&mut self, bytes: &[u8]) -> Vec<Event> {
        bytes.iter().filter_map(|&b| self.feed(b)).collect()
    }

    /// Feeds one byte.
    pub fn feed(&mut self, b: u8) -> Option<Event> {
        if std::mem::take(&mut self.after_cr) && (b == LF || b == 0) {
            return None;
        }
        let yanked = self.yank.take();
        if self.literal && b != CR && b != LF {
            self.literal = false;
            if b != 0 {
                self.insert(&[b]);
                self.sync();
            }
            return None;
        }
        self.literal = false;
        match self.esc {
            Esc::No => {}
            // A control byte cuts a sequence short and counts by itself.
            _ if b < 0x20 || b == DEL => self.esc = Esc::No,
            Esc::Start => {
                self.esc = Esc::No;
                return self.escape(b, yanked);
            }
            Esc::Csi(params) => {
                if (0x40..=0x7e).contains(&b) {
                    self.esc = Esc::No;
                    if !params {
                        self.arrow(b);
                    }
                } else {
                    self.esc = Esc::Csi(true);
                }
                return None;
            }
            Esc::Ss3 => {
                self.esc = Esc::No;
                self.arrow(b);
                return None;
            }
        }
        match b {
            CR | LF => {
                self.after_cr = b == CR;
                self.echo_bytes(b"\r\n");
                return Some(Event::Line(self.finish(true)));
            }
            0x1a => {
                self.echo_bytes(b"^Z\r\n");
                return Some(Event::End(self.finish(true)));
            }
            0x03 => {
                self.echo_bytes(b"^C\r\n");
                self.finish(false);
                return Some(Event::Abort);
            }
            b'?' => {
                self.move_to(self.buf.len());
                self.sync();
                self.echo_bytes(b"?\r\n");
                self.shown.clear();
                self.shown_cursor = 0;
                return Some(Event::Help(self.buf.clone()));
            }
            0x01 => self.move_to(0),
            0x05 => self.move_to(self.buf.len()),
            0x02 => self.move_to(self.cursor.saturating_sub(1)),
            0x06 => self.move_to((self.cursor + 1).min(self.buf.len())),
            BS | DEL => {
                if self.cursor > 0 {
                    self.remove(self.cursor - 1, self.cursor);
                }
            }
            0x04 => {
                if self.cursor < self.buf.len() {
                    self.remove(self.cursor, self.cursor + 1);
                }
            }
            0x15 | 0x18 => self.kill(0, self.cursor),
            0x0b => self.kill(self.cursor, self.buf.len()),
            0x17 => self.kill(self.word_start(), self.cursor),
            0x19 => self.yank_from(0),
            0x10 => self.recall_older(),
            0x0e => self.recall_newer(),
            0x14 => self.transpose(),
            0x16 => self.literal = true,
            ESC => {
                self.esc = Esc::Start;
                // ESC Y must still see the text the key before ESC yanked.
                self.yank = yanked;
            }
            // Tab (completion is not modelled), Ctrl-L/Ctrl-R (redisplay), NUL, the rest.
            0x00..=0x1f => {}
            _ => self.insert(&[b]),
        }
        self.sync();
        None
    }

    /// The byte after a lone ESC.
    fn escape(&mut self, b: u8, yanked: Option<(usize, usize, usize)>) -> Option<Event> {
        match b.to_ascii_uppercase() {
            b'[' => self.esc = Esc::Csi(false),
            b'O' => self.esc = Esc::Ss3,
            b'B' => self.move_to(self.word_start()),
            b'F' => self.move_to(self.word_end()),
            b'D' => self.kill(self.cursor, self.word_end()),
            b'C' | b'L' | b'U' => self.change_case(b.to_ascii_uppercase()),
            b'Q' => self.literal = true,
            b'Y' => {
                if let Some((start, len, i)) = yanked {
                    if !self.kills.is_empty() {
                        self.remove(start, start + len);
                        self.yank_from((i + 1) % self.kills.len());
                    }
                }
            }
            _ => {}
        }
        self.sync();
        None
    }

    /// The final byte of ESC `[` or ESC `O`.
    fn arrow(&mut self, b: u8) {
        match b {
            b'A' => self.recall_older(),
            b'B' => self.recall_newer(),
            b'C' => self.move_to((self.cursor + 1).min(self.buf.len())),
            b'D' => self.move_to(self.cursor.saturating_sub(1)),
            _ => {}
        }
        self.sync();
    }

    /// Ends the line: returns it, keeps it in the history when `execute` and not blank.
    fn finish(&mut self, execute: bool) -> Vec<u8> {
        let line = std::mem::take(&mut self.buf);
        if execute && line.iter().any(|b| !b.is_ascii_whitespace()) {
            let h = &mut self.histories[self.slot];
            if h.len() >= HISTORY_SIZE {
                h.pop_front();
            }
            h.push_back(line.clone());
        }
        self.cursor = 0;
        self.shown.clear();
        self.shown_cursor = 0;
        self.recalled = None;
        line
    }

    fn insert(&mut self, bytes: &[u8]) {
        let room = MAX_LINE.saturating_sub(self.buf.len());
        let bytes = &bytes[..bytes.len().min(room)];
        self.buf
            .splice(self.cursor..self.cursor, bytes.iter().copied());
        self.cursor += bytes.len();
    }

    fn remove(&mut self, from: usize, to: usize) {
        self.buf.drain(from..to);
        if self.cursor >= to {
            self.cursor -= to - from;
        } else if self.cursor > from {
            self.cursor = from;
        }
    }

    /// Erases `from..to`, keeping the text for Ctrl-Y.
    fn kill(&mut self, from: usize, to: usize) {
        if from >= to {
            return;
        }
        if self.kills.len() >= KILL_RING {
            self.kills.pop_back();
        }
        self.kills.push_front(self.buf[from..to].to_vec());
        self.remove(from, to);
    }

    fn yank_from(&mut self, i: usize) {
        let Some(text) = self.kills.get(i).cloned() else {
            return;
        };
        let start = self.cursor;
        let before = self.buf.len();
        self.insert(&text);
        self.yank = Some((start, self.buf.len() - before, i));
    }

    fn move_to(&mut self, pos: usize) {
        self.cursor = pos.min(self.buf.len());
    }

    /// The start of the word before the cursor (blanks before the cursor are skipped).
    fn word_start(&self) -> usize {
        let mut i = self.cursor;
        while i > 0 && self.buf[i - 1] == b' ' {
            i -= 1;
        }
        while i > 0 && self.buf[i - 1] != b' ' {
            i -= 1;
        }
        i
    }

    /// The end of the word at or after the cursor.
    fn word_end(&self) -> usize {
        let mut i = self.cursor;
        while i < self.buf.len() && self.buf[i] == b' ' {
            i += 1;
        }
        while i < self.buf.len() && self.buf[i] != b' ' {
            i += 1;
        }
        i
    }

    fn change_case(&mut self, how: u8) {
        let end = self.word_end();
        let mut first = true;
        for b in &mut self.buf[self.cursor..end] {
            if *b == b' ' {
                continue;
            }
            *b = match how {
                b'U' => b.to_ascii_uppercase(),
                b'C' if first => b.to_ascii_uppercase(),
                _ => b.to_ascii_lowercase(),
            };
            first = false;
        }
        self.cursor = end;
    }

    fn transpose(&mut self) {
        let n = self.buf.len();
        if n < 2 || self.cursor == 0 {
            return;
        }
        let at = if self.cursor == n { n - 1 } else { self.cursor };
        self.buf.swap(at - 1, at);
        self.cursor = at + 1;
    }

    fn recall_older(&mut self) {
        let next = self.recalled.map_or(0, |i| i + 1);
        self.recall(next);
    }

    fn recall_newer(&mut self) {
        if let Some(i) = self.recalled.filter(|&i| i > 0) {
            self.recall(i - 1);
        }
    }

    fn recall(&mut self, back: usize) {
        let h = &self.histories[self.slot];
        if back >= h.len() {
            return;
        }
        self.buf = h[h.len() - 1 - back].clone();
        self.cursor = self.buf.len();
        self.recalled = Some(back);
    }

    fn echo_bytes(&mut self, b: &[u8]) {
        if self.echo {
            self.out.extend_from_slice(b);
        }
    }

    /// Echoes what turns the terminal's view of the line (`shown`) into `buf` with the cursor
    /// at `cursor`: back to the first difference, the new tail, blanks over a shorter tail, back
    /// to the cursor.
    fn sync(&mut self) {
        let common = self
            .shown
            .iter()
            .zip(&self.buf)
            .take_while(|(a, b)| a == b)
            .count();
        let mut out = Vec::new();
        let mut at = self.shown_cursor;
        if common < self.shown.len() || common < self.buf.len() {
            if at > common {
                out.extend(std::iter::repeat_n(BS, at - common));
            } else {
                out.extend_from_slice(&self.buf[at..common]);
            }
            out.extend_from_slice(&self.buf[common..]);
            let blanks = self.shown.len().saturating_sub(self.buf.len());
            out.extend(std::iter::repeat_n(b' ', blanks));
            at = self.buf.len() + blanks;
        }
        if at > self.cursor {
            out.extend(std::iter::repeat_n(BS, at - self.cursor));
        } else {
            out.extend_from_slice(&self.buf[at..self.cursor]);
        }
        self.shown.clone_from(&self.buf);
        self.shown_cursor = self.cursor;
        self.echo_bytes(&out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The events of `input` fed in one go, and again fed one byte per call, must agree.
    fn events(input: &[u8]) -> Vec<Event> {
        let whole = LineEditor::new().feed_all(input);
        let mut ed = LineEditor::new();
        let split: Vec<Event> = input.iter().filter_map(|&b| ed.feed(b)).collect();
        assert_eq!(whole, split, "split feeding differs for {input:?}");
        whole
    }

    fn lines(input: &[u8]) -> Vec<String> {
        events(input)
            .into_iter()
            .map(|e| match e {
                Event::Line(l) => String::from_utf8_lossy(&l).into_owned(),
                Event::End(l) => format!("{}^Z", String::from_utf8_lossy(&l)),
                Event::Abort => "^C".to_string(),
                Event::Help(l) => format!("{}?", String::from_utf8_lossy(&l)),
            })
            .collect()
    }

    fn line(l: &str) -> Event {
        Event::Line(l.as_bytes().to_vec())
    }

    /// Feeds `input` and returns (line so far, cursor, echo).
    fn state(input: &[u8]) -> (String, usize, String) {
        let mut ed = LineEditor::new();
        assert_eq!(ed.feed_all(input), [], "no event expected for {input:?}");
        let echo = String::from_utf8_lossy(&ed.take_echo()).into_owned();
        (
            String::from_utf8_lossy(ed.line()).into_owned(),
            ed.cursor(),
            echo,
        )
    }

    #[test]
    fn enter_in_every_form_counts_once() {
        assert_eq!(
            lines(b"a\rb\nc\r\nd\r\0e\n\r"),
            ["a", "b", "c", "d", "e", ""]
        );
        assert_eq!(lines(b"\r\n\r\n"), ["", ""]);
        assert_eq!(lines(b"\n\n"), ["", ""]);
        assert_eq!(lines(b"\r\r"), ["", ""]);
        // A NUL or LF that does not follow a CR is ignored / an Enter.
        assert_eq!(lines(b"a\0b\r"), ["ab"]);
        let mut ed = LineEditor::new();
        assert_eq!(ed.feed_all(b"show clock\r"), [line("show clock")]);
        // The LF of CR LF arriving in the next read is still swallowed.
        assert_eq!(ed.feed_all(b"\n"), []);
        assert_eq!(ed.take_echo(), b"show clock\r\n");
        // start_line forgets the CR: a lone LF after it is a line of its own.
        ed.feed_all(b"x\r");
        ed.start_line();
        assert_eq!(ed.feed_all(b"\n"), [line("")]);
    }

    #[test]
    fn backspace_and_delete_erase_before_the_cursor() {
        assert_eq!(lines(b"x\x08reload\r"), ["reload"]);
        assert_eq!(lines(b"relx\x7foad\r"), ["reload"]);
        assert_eq!(lines(b"\x08\x7freload\r"), ["reload"]);
        assert_eq!(lines(b"ab\x08\x08\x08\x08cd\r"), ["cd"]);
        let (l, c, echo) = state(b"shox\x7f");
        assert_eq!((l.as_str(), c, echo.as_str()), ("sho", 3, "shox\x08 \x08"));
        // Mid-line: the tail moves left.
        let (l, c, echo) = state(b"relxoad\x02\x02\x02\x08");
        assert_eq!((l.as_str(), c), ("reload", 3));
        assert!(echo.ends_with("\x08oad \x08\x08\x08\x08"), "{echo:?}");
        // Bytes, not UTF-8 characters.
        assert_eq!(events("é\x08\r".as_bytes()), [Event::Line(vec![0xc3])]);
    }

    #[test]
    fn ctrl_d_erases_at_the_cursor() {
        assert_eq!(lines(b"rxeload\x01\x06\x04\r"), ["reload"]);
        assert_eq!(lines(b"reload\x04\x04\r"), ["reload"]);
        let (l, c, _) = state(b"abc\x01\x04");
        assert_eq!((l.as_str(), c), ("bc", 0));
    }

    #[test]
    fn ctrl_u_and_ctrl_x_erase_to_the_start_of_the_line() {
        assert_eq!(lines(b"hostn\x15reload\r"), ["reload"]);
        assert_eq!(lines(b"hostname X\x18reload\r"), ["reload"]);
        // From the cursor: what is after it stays.
        assert_eq!(
            lines(b"show reload\x02\x02\x02\x02\x02\x02\x15\r"),
            ["reload"]
        );
        let (l, c, echo) = state(b"ab\x15");
        assert_eq!(
            (l.as_str(), c, echo.as_str()),
            ("", 0, "ab\x08\x08  \x08\x08")
        );
    }

    #[test]
    fn ctrl_k_erases_to_the_end() {
        assert_eq!(lines(b"reload in 5\x02\x02\x02\x02\x02\x0b\r"), ["reload"]);
        assert_eq!(lines(b"reload\x0b\r"), ["reload"]);
    }

    #[test]
    fn ctrl_w_erases_the_word_before_the_cursor() {
        assert_eq!(lines(b"show clock\x17\x17reload\r"), ["reload"]);
        assert_eq!(lines(b"reload show  \x17\r"), ["reload "]);
        assert_eq!(lines(b"\x17reload\r"), ["reload"]);
        // ESC D erases forwards to the end of the word.
        assert_eq!(lines(b"xyz reload\x01\x1bd\x1bD\x1bd\x06\x08\r"), [""]);
        assert_eq!(lines(b"xyz reload\x01\x1bd\x04\r"), ["reload"]);
    }

    #[test]
    fn ctrl_y_and_esc_y_bring_erased_text_back() {
        assert_eq!(lines(b"reload\x15\x19\r"), ["reload"]);
        assert_eq!(lines(b"reload\x15show \x19\r"), ["show reload"]);
        assert_eq!(lines(b"rel\x15oad\x01\x19\r"), ["reload"]);
        // Ctrl-Y inserts the newest; ESC Y right after it swaps in the one before.
        assert_eq!(lines(b"reload\x15clock\x15\x19\x1by\r"), ["reload"]);
        assert_eq!(lines(b"reload\x15clock\x15\x19\x1by\x1by\r"), ["clock"]);
        // ESC Y not right after a yank does nothing.
        assert_eq!(lines(b"reload\x15\x1byx\r"), ["x"]);
        // Nothing erased: nothing to yank.
        assert_eq!(lines(b"\x19ok\r"), ["ok"]);
        // The erased texts outlive the line.
        assert_eq!(lines(b"reload\x15\r\x19\r"), ["", "reload"]);
    }

    #[test]
    fn cursor_moves_and_insertion_at_the_cursor() {
        // "reoad": three times left puts the cursor after "re".
        assert_eq!(lines(b"reoad\x1b[D\x1b[D\x1b[Dl\r"), ["reload"]);
        assert_eq!(lines(b"reoad\x02\x02\x02l\r"), ["reload"]);
        assert_eq!(lines(b"reoad\x1bOD\x1bOD\x1bODl\r"), ["reload"]);
        assert_eq!(lines(b"eload\x01r\r"), ["reload"]);
        assert_eq!(lines(b"rload\x01\x06e\x05\r"), ["reload"]);
        assert_eq!(lines(b"rload\x01\x1b[Ce\r"), ["reload"]);
        assert_eq!(lines(b"\x1b[Creload\r"), ["reload"]);
        assert_eq!(lines(b"\x1b[D\x02reload\x06\x1b[C\r"), ["reload"]);
        // Enter executes the whole line, wherever the cursor is.
        assert_eq!(lines(b"reload\x01\r"), ["reload"]);
        let (l, c, echo) = state(b"reoad\x1b[D\x1b[D\x1b[Dl");
        assert_eq!((l.as_str(), c), ("reload", 3));
        assert_eq!(echo, "reoad\x08\x08\x08load\x08\x08\x08");
        let (_, c, echo) = state(b"abc\x01\x06\x05");
        assert_eq!((c, echo.as_str()), (3, "abc\x08\x08\x08abc"));
    }

    #[test]
    fn word_moves() {
        assert_eq!(
            lines(b"show reload\x1bb\x1bbno \x1bf\x1bF!\r"),
            ["no show reload!"]
        );
        assert_eq!(lines(b"a  b\x1bB\x1bBx\r"), ["xa  b"]);
    }

    #[test]
    fn ctrl_t_transposes() {
        assert_eq!(lines(b"relaod\x02\x02\x14\r"), ["reload"]);
        assert_eq!(lines(b"reloda\x14\r"), ["reload"]);
        assert_eq!(lines(b"r\x14eload\r"), ["reload"]);
        assert_eq!(lines(b"ab\x01\x14\r"), ["ab"]);
    }

    #[test]
    fn case_changes() {
        assert_eq!(lines(b"RELOAD now\x01\x1bl\r"), ["reload now"]);
        assert_eq!(lines(b"reload now\x01\x1bu\x1bc\r"), ["RELOAD Now"]);
    }

    #[test]
    fn ctrl_z_executes_the_line_then_ends() {
        assert_eq!(
            events(b"show clock\x1areload\r"),
            [Event::End(b"show clock".to_vec()), line("reload")]
        );
        assert_eq!(events(b"\x1a"), [Event::End(vec![])]);
        let mut ed = LineEditor::new();
        ed.feed_all(b"hostname X\x1a");
        assert_eq!(ed.take_echo(), b"hostname X^Z\r\n");
        assert_eq!(ed.history(), [b"hostname X".to_vec()]);
    }

    #[test]
    fn ctrl_c_discards_the_line() {
        assert_eq!(
            events(b"reload\x03show clock\r"),
            [Event::Abort, line("show clock")]
        );
        let mut ed = LineEditor::new();
        ed.feed_all(b"reload\x03");
        assert_eq!(ed.take_echo(), b"reload^C\r\n");
        assert!(ed.history().is_empty());
        assert_eq!(ed.line(), b"");
    }

    #[test]
    fn history_up_down_and_size() {
        assert_eq!(lines(b"reload\r\x1b[A\r"), ["reload", "reload"]);
        assert_eq!(lines(b"reload\r\x10\r"), ["reload", "reload"]);
        assert_eq!(
            lines(b"reload\rshow\r\x1b[A\x1b[A\x1b[A\x1b[B\r"),
            ["reload", "show", "show"]
        );
        assert_eq!(
            lines(b"reload\rshow\r\x10\x10\x0e\x0e\x0e\r"),
            ["reload", "show", "show"]
        );
        // Recall replaces what was typed; the recalled line can be edited.
        assert_eq!(lines(b"reload\rxyz\x1b[A\x08d\r"), ["reload", "reload"]);
        // The old `demo` test: Up then typing appends to the recalled line.
        assert_eq!(
            lines(b"show privilege\n\x1b[Ashow privilege\r\n"),
            ["show privilege", "show privilegeshow privilege"]
        );
        // Empty and blank lines, and aborted ones, are not kept.
        assert_eq!(
            lines(b"reload\r\r  \rx\x03\x1b[A\r"),
            ["reload", "", "  ", "^C", "reload"]
        );
        // Ten lines are kept.
        let mut ed = LineEditor::new();
        for i in 0..12 {
            ed.feed_all(format!("l{i}\r").as_bytes());
        }
        let h = ed.history();
        assert_eq!(h.len(), HISTORY_SIZE);
        assert_eq!(h[0], b"l2");
        let ups: Vec<u8> = b"\x1b[A".repeat(20);
        assert_eq!(ed.feed_all(&[&ups[..], b"\r"].concat()), [line("l2")]);
        // Echo: the old line is overwritten.
        let mut ed = LineEditor::new();
        ed.feed_all(b"reload\r");
        ed.take_echo();
        ed.feed_all(b"show clock\x1b[A");
        assert_eq!(
            ed.take_echo(),
            b"show clock\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08reload    \x08\x08\x08\x08"
        );
    }

    #[test]
    fn exec_and_config_histories_are_separate() {
        let mut ed = LineEditor::new();
        ed.feed_all(b"reload\r");
        ed.set_history(History::Config);
        assert_eq!(ed.feed_all(b"\x1b[A\r"), [line("")]);
        ed.feed_all(b"hostname X\r");
        assert_eq!(ed.feed_all(b"\x1b[A\r"), [line("hostname X")]);
        ed.set_history(History::Exec);
        assert_eq!(ed.feed_all(b"\x1b[A\r"), [line("reload")]);
    }

    #[test]
    fn question_mark_asks_for_help_and_keeps_the_line() {
        assert_eq!(
            events(b"show ?clock\r"),
            [Event::Help(b"show ".to_vec()), line("show clock")]
        );
        assert_eq!(
            events(b"rel?oad\r"),
            [Event::Help(b"rel".to_vec()), line("reload")]
        );
        // The cursor goes to the end.
        assert_eq!(
            events(b"rel\x01?x\r"),
            [Event::Help(b"rel".to_vec()), line("relx")]
        );
        let mut ed = LineEditor::new();
        ed.feed_all(b"sh?");
        assert_eq!(ed.take_echo(), b"sh?\r\n");
        ed.redraw();
        assert_eq!(ed.take_echo(), b"sh");
        ed.feed_all(b"ow\x08");
        assert_eq!(ed.take_echo(), b"ow\x08 \x08");
        // Ctrl-V / ESC Q insert it.
        assert_eq!(lines(b"description a\x16?\x1bQ?\r"), ["description a??"]);
        let mut ed = LineEditor::new();
        ed.feed_all(b"a\x16?");
        assert_eq!(ed.take_echo(), b"a?");
    }

    #[test]
    fn literal_next_inserts_control_bytes() {
        assert_eq!(
            events(b"rel\x16\x08oad\r"),
            [Event::Line(b"rel\x08oad".to_vec())]
        );
        assert_eq!(events(b"a\x16\rb\r"), [line("a"), line("b")]);
        assert_eq!(events(b"a\x16\x1a\r"), [Event::Line(b"a\x1a".to_vec())]);
    }

    #[test]
    fn tab_and_other_control_bytes_are_ignored() {
        assert_eq!(
            lines(b"rel\toad\x07\x0c\x12\x1c\x1d\x1e\x1f\x11\x13\r"),
            ["reload"]
        );
    }

    #[test]
    fn escape_sequences_are_swallowed_whole() {
        assert_eq!(lines(b"\x1b[3~reload\r"), ["reload"]);
        assert_eq!(lines(b"\x1b[1;5Dreload\r"), ["reload"]);
        assert_eq!(lines(b"\x1b[200~reload\x1b[201~\r"), ["reload"]);
        assert_eq!(lines(b"\x1bOPreload\r"), ["reload"]);
        assert_eq!(lines(b"\x1bxreload\r"), ["reload"]);
        // A control byte ends a sequence and counts.
        assert_eq!(lines(b"re\x1b[\rload\r"), ["re", "load"]);
        assert_eq!(lines(b"\x1b\x1b[Creload\r"), ["reload"]);
        assert_eq!(lines(b"x\x1b\x7freload\r"), ["reload"]);
    }

    #[test]
    fn split_sequences_across_feeds() {
        let input: &[u8] = b"x\x08rel\x1b[D\x1b[Coa\x1bOD\x1bOC\x02\x02\x06\x05d\r\n";
        for cut in 0..input.len() {
            let mut ed = LineEditor::new();
            let mut got = ed.feed_all(&input[..cut]);
            got.extend(ed.feed_all(&input[cut..]));
            assert_eq!(got, [line("reload")], "cut at {cut}");
        }
    }

    #[test]
    fn long_lines_are_capped() {
        let mut ed = LineEditor::new();
        let big = vec![b'a'; MAX_LINE + 10];
        ed.feed_all(&big);
        assert_eq!(ed.line().len(), MAX_LINE);
        ed.feed_all(b"\x08b");
        assert_eq!(ed.line().last(), Some(&b'b'));
    }

    /// Random keys (xorshift, fixed seed): no panic, the cursor stays in the line, and feeding
    /// byte by byte agrees with feeding in one go.
    #[test]
    fn random_keys_keep_the_invariants() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let keys: &[u8] = b"\x01\x02\x03\x04\x05\x06\x08\x0b\x0e\x10\x14\x15\x16\x17\x18\x19\x1a\x1b[ABCDOQYbdfclu?\r\n\0\x7f\xffab ";
        for _ in 0..1000 {
            let mut input = Vec::new();
            for _ in 0..300 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                input.push(keys[(x % keys.len() as u64) as usize]);
            }
            let mut ed = LineEditor::new();
            // A terminal line the echo is played on: it must show the line, cursor included.
            let (mut row, mut col) = (Vec::<u8>::new(), 0usize);
            for (i, &b) in input.iter().enumerate() {
                let ev = ed.feed(b);
                if let Some(Event::Help(_)) = ev {
                    ed.redraw();
                }
                for &e in &ed.take_echo() {
                    match e {
                        BS => col = col.saturating_sub(1),
                        CR => col = 0,
                        LF => row.clear(),
                        _ if col < row.len() => row[col] = e,
                        _ => row.push(e),
                    }
                    if e != BS && e != CR && e != LF {
                        col += 1;
                    }
                }
                let (line, cursor) = (ed.line(), ed.cursor());
                assert!(cursor <= line.len());
                assert!(line.len() <= MAX_LINE);
                assert!(ed.history().len() <= HISTORY_SIZE);
                if line.iter().all(|&c| c >= 0x20) {
                    let at = &input[..=i];
                    assert_eq!(&row[..line.len()], line, "after {at:?}");
                    assert!(row[line.len()..].iter().all(|&c| c == b' '));
                    assert_eq!(col, cursor);
                } else {
                    // A control byte inserted with Ctrl-V moved the terminal: start afresh.
                    row = line.to_vec();
                    col = cursor;
                    ed.redraw();
                    ed.take_echo();
                }
            }
            events(&input);
        }
    }

    #[test]
    fn echo_off_and_enter_echo() {
        let mut ed = LineEditor::new();
        ed.set_echo(false);
        ed.feed_all(b"secret\x08\r");
        assert!(ed.take_echo().is_empty());
        let mut ed = LineEditor::new();
        ed.feed_all(b"show\r");
        assert_eq!(ed.take_echo(), b"show\r\n");
    }
}
