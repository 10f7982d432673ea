//! The pure core of the channel: turn raw device bytes into text the way Netmiko does, find the
//! line the device is waiting on, strip the echoed command and the trailing prompt.
//! No I/O here; unit-tested with tables of raw bytes.

/// Clean raw bytes: drop ANSI escape sequences and NULs, apply backspaces, and normalise line
/// endings as Netmiko does (`\r\r\r\n`, `\r\r\n`, `\r\n`, `\n\r` become `\n`; any other `\r`
/// becomes `\n`). Invalid UTF-8 becomes U+FFFD.
pub fn clean(raw: &[u8]) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        match b {
            0x1b => i = skip_escape(raw, i),
            0x08 => {
                // Backspace erases the previous character on the current line.
                if out.last().is_some_and(|c| *c != b'\n' && *c != b'\r') {
                    pop_char(&mut out);
                }
                i += 1;
            }
            0 | 0x07 => i += 1,
            b'\r' | b'\n' => {
                let n = line_break_len(&raw[i..]);
                out.push(b'\n');
                i += n;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    // Valid UTF-8 (the usual case) becomes the String without a copy.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Length of the line break at the start of `s` (the longest of Netmiko's forms), at least 1.
fn line_break_len(s: &[u8]) -> usize {
    for form in [&b"\r\r\r\n"[..], b"\r\r\n", b"\r\n", b"\n\r"] {
        if s.starts_with(form) {
            return form.len();
        }
    }
    1
}

fn pop_char(out: &mut Vec<u8>) {
    // Remove one UTF-8 character (continuation bytes first).
    while let Some(c) = out.pop() {
        if c & 0xC0 != 0x80 {
            break;
        }
    }
}

/// Index just past an escape sequence starting at `i` (which holds ESC).
fn skip_escape(raw: &[u8], i: usize) -> usize {
    match raw.get(i + 1) {
        Some(b'[') => {
            // CSI: parameters and intermediates, then one final byte 0x40..=0x7e.
            let mut j = i + 2;
            while j < raw.len() && !(0x40..=0x7e).contains(&raw[j]) {
                j += 1;
            }
            (j + 1).min(raw.len())
        }
        Some(b']') => {
            // OSC: until BEL or ESC \.
            let mut j = i + 2;
            while j < raw.len() {
                if raw[j] == 0x07 {
                    return j + 1;
                }
                if raw[j] == 0x1b && raw.get(j + 1) == Some(&b'\\') {
                    return j + 2;
                }
                j += 1;
            }
            raw.len()
        }
        Some(b'(') | Some(b')') => (i + 3).min(raw.len()),
        Some(_) => i + 2,
        None => i + 1,
    }
}

/// The last line of cleaned text (what the device is waiting on), without trailing whitespace
/// other than one space.
pub fn last_line(text: &str) -> &str {
    let line = text.rsplit('\n').next().unwrap_or("");
    // Only ASCII blanks: trimming Unicode whitespace (U+00A0 is 2 bytes) would make the slice
    // below cut a character in half.
    let trimmed = line.trim_end_matches([' ', '\t']);
    if line.len() > trimmed.len() {
        // keep one trailing space: prompts like "R1# " and "Password: " end with one
        &line[..trimmed.len() + 1]
    } else {
        line
    }
}

/// Netmiko's `strip_command`: drop the first line if the output starts with the command.
pub fn strip_echo<'a>(output: &'a str, command: &str) -> &'a str {
    let cmd = command.trim();
    if !cmd.is_empty() && output.starts_with(cmd) {
        match output.find('\n') {
            Some(i) => &output[i + 1..],
            None => "",
        }
    } else {
        output
    }
}

/// Netmiko's `strip_prompt`: drop the last line if it is the prompt.
pub fn strip_prompt(output: &str, is_prompt: impl Fn(&str) -> bool) -> &str {
    match output.rfind('\n') {
        Some(i) if is_prompt(last_line(output)) => &output[..i],
        None if is_prompt(last_line(output)) => "",
        _ => output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &[u8], want: &str) {
        assert_eq!(clean(raw), want, "raw: {:?}", String::from_utf8_lossy(raw));
    }

    #[test]
    fn cleans_like_netmiko() {
        check(b"a\r\nb", "a\nb");
        check(b"a\r\r\nb", "a\nb");
        check(b"a\r\r\r\nb", "a\nb");
        check(b"a\n\rb", "a\nb");
        check(b"a\rb", "a\nb");
        check(b"a\nb", "a\nb");
        check(b"\x1b[1;32mgreen\x1b[0m", "green");
        check(b"\x1b[K\x1b[?25hx", "x");
        check(b"\x1b]0;title\x07R1#", "R1#");
        check(b"abc\x08\x08d", "ad");
        check(b"\x08x", "x");
        check(b"a\0b\x07c", "abc");
        check(b" --More-- \x08\x08\x08\x08\x08\x08\x08\x08\x08\x08          \x08\x08\x08\x08\x08\x08\x08\x08\x08\x08line", "line");
        check(b"bad \xff utf8", "bad \u{fffd} utf8");
        check(b"cut \x1b[", "cut ");
    }

    #[test]
    fn finds_last_line() {
        assert_eq!(last_line("a\nb\nR1#"), "R1#");
        assert_eq!(last_line("a\nR1# "), "R1# ");
        assert_eq!(last_line("a\nR1#   "), "R1# ");
        assert_eq!(last_line("a\n"), "");
        assert_eq!(last_line("R1>"), "R1>");
        assert_eq!(last_line("note\u{a0}"), "note\u{a0}");
        assert_eq!(last_line("x\u{3000}  "), "x\u{3000} ");
    }

    #[test]
    fn strips_echo_and_prompt() {
        let is_prompt = |l: &str| l.starts_with("R1") && (l.ends_with('#') || l.ends_with('>'));
        let cases = [
            (
                "show clock\n*10:00:00 UTC\nR1#",
                "show clock",
                "*10:00:00 UTC",
            ),
            ("terminal length 0\nR1#", "terminal length 0", ""),
            ("show ver\nline1\nline2\nR1>", "show ver", "line1\nline2"),
            ("no echo\nR1#", "show x", "no echo"),
            ("show x\nout\n", "show x", "out\n"),
            ("  show x\nout\nR1#", "show x", "  show x\nout"),
        ];
        for (text, cmd, want) in cases {
            assert_eq!(
                strip_prompt(strip_echo(text, cmd), is_prompt),
                want,
                "{text:?}"
            );
        }
    }
}
