//! Telnet transport (RFC 854/855) on a std `TcpStream`: option negotiation stays in here, the
//! layers above see only data bytes. The socket is non-blocking; every wait is a poll() with a
//! deadline.
//!
//! We accept the server's ECHO and SUPPRESS-GO-AHEAD, offer TERMINAL-TYPE (`VT100`), NAWS
//! (510 columns, 0 rows: "no paging") and SUPPRESS-GO-AHEAD when asked, and refuse everything
//! else. Data: IAC IAC is a 255 byte, NUL after CR is dropped; outgoing 255 is doubled, and a
//! line break is sent as CR LF (the NVT newline).

use super::{
    connect_tcp, escape_bytes, poll_fd, ConnectError, Reach, Stream, Trace, Transport,
    TransportError,
};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::Instant;

const IAC: u8 = 255;
const DONT: u8 = 254;
const DO: u8 = 253;
const WONT: u8 = 252;
const WILL: u8 = 251;
const SB: u8 = 250;
const SE: u8 = 240;

const ECHO: u8 = 1;
const SGA: u8 = 3;
const TTYPE: u8 = 24;
const NAWS: u8 = 31;

const TTYPE_IS: u8 = 0;
const TTYPE_SEND: u8 = 1;
/// Longest subnegotiation kept (longer ones are skipped to their end, not stored).
const SB_MAX: usize = 256;
/// After this many requests for the same option, stop answering (a peer looping on requests).
const MAX_ANSWERS: u8 = 8;

pub fn option_name(o: u8) -> String {
    match o {
        0 => "BINARY".into(),
        ECHO => "ECHO".into(),
        SGA => "SUPPRESS-GO-AHEAD".into(),
        5 => "STATUS".into(),
        6 => "TIMING-MARK".into(),
        TTYPE => "TERMINAL-TYPE".into(),
        NAWS => "NAWS".into(),
        32 => "TERMINAL-SPEED".into(),
        33 => "REMOTE-FLOW-CONTROL".into(),
        34 => "LINEMODE".into(),
        35 => "X-DISPLAY-LOCATION".into(),
        36 => "OLD-ENVIRON".into(),
        37 => "AUTHENTICATION".into(),
        38 => "ENCRYPT".into(),
        39 => "NEW-ENVIRON".into(),
        _ => format!("option {o}"),
    }
}

fn verb(v: u8) -> &'static str {
    match v {
        WILL => "WILL",
        WONT => "WONT",
        DO => "DO",
        DONT => "DONT",
        _ => "?",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Data,
    /// The last data byte was CR (a NUL after it is dropped).
    Cr,
    Iac,
    Verb(u8),
    Sb,
    SbIac,
}

/// The negotiation and data decoder, independent of the socket (unit-tested byte by byte).
#[derive(Debug)]
pub struct Codec {
    state: State,
    sb: Vec<u8>,
    sb_overflow: bool,
    /// Options the server has agreed to perform (WILL answered with DO).
    them: [bool; 256],
    /// Options we perform (DO answered with WILL).
    us: [bool; 256],
    answers: [u8; 256],
    /// Human-readable negotiation events, drained by the transport for tracing.
    pub events: Vec<String>,
}

impl Default for Codec {
    fn default() -> Self {
        Codec {
            state: State::Data,
            sb: Vec::new(),
            sb_overflow: false,
            them: [false; 256],
            us: [false; 256],
            answers: [0; 256],
            events: Vec::new(),
        }
    }
}

impl Codec {
    /// Decode received bytes: data goes to `data`, negotiation replies to `reply`.
    pub fn decode(&mut self, input: &[u8], data: &mut Vec<u8>, reply: &mut Vec<u8>) {
        for &b in input {
            self.state = match self.state {
                State::Data | State::Cr => match b {
                    IAC => State::Iac,
                    0 if self.state == State::Cr => State::Data,
                    b'\r' => {
                        data.push(b);
                        State::Cr
                    }
                    _ => {
                        data.push(b);
                        State::Data
                    }
                },
                State::Iac => match b {
                    IAC => {
                        data.push(IAC);
                        State::Data
                    }
                    WILL | WONT | DO | DONT => State::Verb(b),
                    SB => {
                        self.sb.clear();
                        self.sb_overflow = false;
                        State::Sb
                    }
                    // NOP, GA, DM, AYT, ...: no data, nothing to answer.
                    _ => State::Data,
                },
                State::Verb(v) => {
                    self.negotiate(v, b, reply);
                    State::Data
                }
                State::Sb => match b {
                    IAC => State::SbIac,
                    _ => {
                        self.sb_push(b);
                        State::Sb
                    }
                },
                State::SbIac => match b {
                    SE => {
                        self.subnegotiation(reply);
                        State::Data
                    }
                    IAC => {
                        self.sb_push(IAC);
                        State::Sb
                    }
                    // An IAC command inside SB is a protocol error; end the SB here.
                    _ => State::Data,
                },
            };
        }
    }

    fn sb_push(&mut self, b: u8) {
        if self.sb.len() < SB_MAX {
            self.sb.push(b);
        } else {
            self.sb_overflow = true;
        }
    }

    fn send(&mut self, reply: &mut Vec<u8>, v: u8, o: u8) {
        reply.extend_from_slice(&[IAC, v, o]);
    }

    fn negotiate(&mut self, v: u8, o: u8, reply: &mut Vec<u8>) {
        let i = o as usize;
        let name = option_name(o);
        let mut answer = |c: &mut Codec, rv: u8| {
            if c.answers[i] < MAX_ANSWERS {
                c.answers[i] += 1;
                c.send(reply, rv, o);
                c.events
                    .push(format!("server {} {name} -> {} {name}", verb(v), verb(rv)));
                true
            } else {
                c.events.push(format!(
                    "server {} {name} (ignored: asked too often)",
                    verb(v)
                ));
                false
            }
        };
        match v {
            WILL => {
                let wanted = matches!(o, ECHO | SGA);
                if wanted && !self.them[i] {
                    self.them[i] = true;
                    answer(self, DO);
                } else if !wanted {
                    answer(self, DONT);
                } else {
                    self.events
                        .push(format!("server WILL {name} (already agreed)"));
                }
            }
            WONT => {
                if self.them[i] {
                    self.them[i] = false;
                    answer(self, DONT);
                } else {
                    self.events.push(format!("server WONT {name}"));
                }
            }
            DO => {
                let offered = matches!(o, TTYPE | NAWS | SGA);
                if offered && !self.us[i] {
                    self.us[i] = true;
                    if answer(self, WILL) && o == NAWS {
                        // 510 columns (no wrapping; 511 = 0x01FF would need its 255 doubled,
                        // which naive servers such as BusyBox telnetd misread), 0 rows (no
                        // paging where honoured).
                        reply.extend_from_slice(&[IAC, SB, NAWS, 1, 254, 0, 0, IAC, SE]);
                        self.events.push("sent NAWS 510x0".into());
                    }
                } else if !offered {
                    answer(self, WONT);
                } else {
                    self.events
                        .push(format!("server DO {name} (already agreed)"));
                }
            }
            DONT => {
                if self.us[i] {
                    self.us[i] = false;
                    answer(self, WONT);
                } else {
                    self.events.push(format!("server DONT {name}"));
                }
            }
            _ => {}
        }
    }

    fn subnegotiation(&mut self, reply: &mut Vec<u8>) {
        let Some(&opt) = self.sb.first() else {
            return;
        };
        if self.sb_overflow {
            self.events.push(format!(
                "server SB {} (over {SB_MAX} bytes, skipped)",
                option_name(opt)
            ));
            return;
        }
        if opt == TTYPE && self.sb.get(1) == Some(&TTYPE_SEND) && self.us[TTYPE as usize] {
            reply.extend_from_slice(&[IAC, SB, TTYPE, TTYPE_IS]);
            reply.extend_from_slice(b"VT100");
            reply.extend_from_slice(&[IAC, SE]);
            self.events
                .push("server SB TERMINAL-TYPE SEND -> IS VT100".into());
        } else {
            self.events.push(format!(
                "server SB {} {} (ignored)",
                option_name(opt),
                escape_bytes(&self.sb[1..])
            ));
        }
    }

    /// The options in effect, for status ("server: ECHO, SUPPRESS-GO-AHEAD; us: NAWS").
    pub fn agreed(&self) -> String {
        let list = |v: &[bool; 256]| {
            let names: Vec<String> = (0..=255u8)
                .filter(|o| v[*o as usize])
                .map(option_name)
                .collect();
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        };
        format!("server: {}; us: {}", list(&self.them), list(&self.us))
    }
}

/// Data to send: IAC doubled, a line break (LF, or CR LF) sent as CR LF, a lone CR as CR NUL.
pub fn encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 8);
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            IAC => out.extend_from_slice(&[IAC, IAC]),
            b'\r' if data.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b'\r' => out.extend_from_slice(b"\r\0"),
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

pub struct TelnetTransport {
    stream: Stream,
    codec: Codec,
    raw: Vec<u8>,
    data: Vec<u8>,
    reply: Vec<u8>,
    trace: Option<Trace>,
}

impl TelnetTransport {
    pub fn connect(
        host: &str,
        port: u16,
        reach: Reach,
        deadline: Instant,
        trace: Option<Trace>,
    ) -> Result<TelnetTransport, ConnectError> {
        let stream = connect_tcp(host, port, reach, deadline)?;
        Self::over(Stream::Tcp(stream), host, port, trace)
    }

    /// Telnet on a stream already connected to the device: TCP, or a jump chain's forwarded
    /// stream.
    pub(crate) fn over(
        stream: Stream,
        host: &str,
        port: u16,
        trace: Option<Trace>,
    ) -> Result<TelnetTransport, ConnectError> {
        stream
            .set_nonblocking(true)
            .map_err(|source| ConnectError::Socket {
                host: host.into(),
                port,
                source,
            })?;
        Ok(TelnetTransport {
            stream,
            codec: Codec::default(),
            raw: vec![0; 16 * 1024],
            data: Vec::new(),
            reply: Vec::new(),
            trace,
        })
    }

    fn note(&self, line: &str) {
        if let Some(t) = &self.trace {
            t(line);
        }
    }

    /// One non-blocking read of raw bytes, decoded into `self.data`; negotiation replies are
    /// written at once. Ok(false): nothing was waiting.
    fn pump(&mut self, deadline: Instant) -> Result<bool, TransportError> {
        let n = match self.stream.read(&mut self.raw) {
            Ok(0) => {
                return Err(TransportError::Closed(
                    "the device closed the connection".into(),
                ))
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(false),
            Err(e) => {
                return Err(TransportError::Closed(format!(
                    "Telnet connection lost: {e}"
                )))
            }
        };
        if self.trace.is_some() {
            self.note(&format!("[recv] \"{}\"", escape_bytes(&self.raw[..n])));
        }
        let mut data = std::mem::take(&mut self.data);
        let mut reply = std::mem::take(&mut self.reply);
        self.codec.decode(&self.raw[..n], &mut data, &mut reply);
        self.data = data;
        for e in std::mem::take(&mut self.codec.events) {
            self.note(&format!("[telnet] {e}"));
            log::debug!("telnet: {e}");
        }
        if !reply.is_empty() {
            let r = self.write_raw(&reply, deadline);
            reply.clear();
            self.reply = reply;
            r?;
        } else {
            self.reply = reply;
        }
        Ok(true)
    }

    fn take_data(&mut self, buf: &mut [u8]) -> usize {
        let n = self.data.len().min(buf.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data.drain(..n);
        n
    }

    fn write_raw(&mut self, mut data: &[u8], deadline: Instant) -> Result<(), TransportError> {
        while !data.is_empty() {
            match self.stream.write(data) {
                Ok(0) => return Err(TransportError::Closed("the device stopped reading".into())),
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    poll_fd(self.stream.as_raw_fd(), true, deadline)?
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(TransportError::Closed(format!(
                        "Telnet connection lost: {e}"
                    )))
                }
            }
        }
        Ok(())
    }
}

impl Transport for TelnetTransport {
    fn wait_fd(&self) -> Option<std::os::unix::io::RawFd> {
        Some(self.stream.as_raw_fd())
    }
    fn read(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize, TransportError> {
        loop {
            if !self.data.is_empty() {
                return Ok(self.take_data(buf));
            }
            if !self.pump(deadline)? {
                poll_fd(self.stream.as_raw_fd(), false, deadline)?;
            }
        }
    }

    fn try_read(&mut self, buf: &mut [u8]) -> Result<usize, TransportError> {
        if self.data.is_empty() {
            // Negotiation replies are tiny; give them a short deadline of their own.
            self.pump(Instant::now() + std::time::Duration::from_secs(1))?;
        }
        Ok(self.take_data(buf))
    }

    fn write_all(&mut self, data: &[u8], deadline: Instant) -> Result<(), TransportError> {
        let wire = encode(data);
        self.write_raw(&wire, deadline)
    }

    fn keepalive(&mut self) -> Result<(), TransportError> {
        // Telnet has no keepalive of its own (TCP keepalive is on); reading what is waiting
        // finds a closed connection.
        if self.data.is_empty() {
            self.pump(Instant::now() + std::time::Duration::from_secs(1))?;
        }
        Ok(())
    }

    fn close(&mut self, _deadline: Instant) {
        self.stream.shutdown();
    }

    fn protocol(&self) -> &'static str {
        "telnet"
    }

    fn negotiated(&self) -> String {
        self.codec.agreed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_split(input: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<String>) {
        // Byte by byte: every state must survive a read boundary anywhere.
        let mut c = Codec::default();
        let (mut data, mut reply) = (Vec::new(), Vec::new());
        for b in input {
            c.decode(std::slice::from_ref(b), &mut data, &mut reply);
        }
        let mut whole = Codec::default();
        let (mut d2, mut r2) = (Vec::new(), Vec::new());
        whole.decode(input, &mut d2, &mut r2);
        assert_eq!((&data, &reply), (&d2, &r2), "split vs whole");
        (data, reply, c.events)
    }

    #[test]
    fn negotiation_as_an_ios_device_does_it() {
        let input = [
            IAC, WILL, ECHO, IAC, WILL, SGA, IAC, DO, TTYPE, IAC, DO, NAWS, b'\r', b'\n', b'U',
            b's', b'e', b'r', b':', b' ',
        ];
        let (data, reply, events) = decode_split(&input);
        assert_eq!(data, b"\r\nUser: ");
        assert_eq!(
            reply,
            [
                IAC, DO, ECHO, IAC, DO, SGA, IAC, WILL, TTYPE, IAC, WILL, NAWS, IAC, SB, NAWS, 1,
                254, 0, 0, IAC, SE
            ]
        );
        assert!(events.contains(&"server DO TERMINAL-TYPE -> WILL TERMINAL-TYPE".to_string()));
    }

    #[test]
    fn refusals_subnegotiation_and_escapes() {
        let mut input = vec![IAC, DO, TTYPE, IAC, SB, TTYPE, TTYPE_SEND, IAC, SE];
        input.extend([IAC, WILL, 34, IAC, DO, ECHO, IAC, DO, 39]); // LINEMODE, ECHO, NEW-ENVIRON
        input.extend([b'a', IAC, IAC, b'b', b'\r', 0, b'c', IAC, 241, b'd']); // NOP dropped
        input.extend([IAC, SB, 24, IAC, IAC, b'x', IAC, SE, b'e']);
        let (data, reply, _) = decode_split(&input);
        assert_eq!(data, [b'a', 255, b'b', b'\r', b'c', b'd', b'e']);
        let mut want = vec![IAC, WILL, TTYPE, IAC, SB, TTYPE, TTYPE_IS];
        want.extend_from_slice(b"VT100");
        want.extend([IAC, SE, IAC, DONT, 34, IAC, WONT, ECHO, IAC, WONT, 39]);
        assert_eq!(reply, want);
        // Already agreed: no answer (no loops); WONT after WILL is acknowledged once.
        let (_, reply, _) = decode_split(&[
            IAC, WILL, ECHO, IAC, WILL, ECHO, IAC, WONT, ECHO, IAC, WONT, ECHO,
        ]);
        assert_eq!(reply, [IAC, DO, ECHO, IAC, DONT, ECHO]);
        // A peer that keeps asking stops getting answers.
        let many: Vec<u8> = (0..20).flat_map(|_| [IAC, DO, 34]).collect();
        let (_, reply, _) = decode_split(&many);
        assert_eq!(reply.len(), 3 * MAX_ANSWERS as usize);
        // An oversized subnegotiation is skipped to its end.
        let mut big = vec![IAC, SB, 200];
        big.extend(std::iter::repeat_n(7u8, 1000));
        big.extend([IAC, SE, b'z']);
        let (data, reply, _) = decode_split(&big);
        assert_eq!((data, reply), (b"z".to_vec(), vec![]));
    }

    #[test]
    fn encoding_doubles_iac_and_sends_crlf() {
        assert_eq!(encode(b"show ver\n"), b"show ver\r\n");
        assert_eq!(encode(b"a\r\nb"), b"a\r\nb");
        assert_eq!(encode(b"a\rb"), b"a\r\0b");
        assert_eq!(encode(&[b'x', 255, b'y']), [b'x', 255, 255, b'y']);
        assert_eq!(encode(b" "), b" ");
    }
}
