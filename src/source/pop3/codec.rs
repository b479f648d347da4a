//! The POP3 wire format, without any I/O policy: status lines, bounded line
//! reading, dot-unstuffing of multi-line responses, and the parsers for
//! CAPA, UIDL and LIST listings.
//!
//! Everything here is pure or works on a `BufRead`, so it can be tested (and
//! fuzzed) on arbitrary bytes. The rule throughout: be strict in what we send,
//! tolerant of odd spacing, but never credulous: every line is bounded, and
//! nothing is read past the end of the response it belongs to, so pipelined
//! replies stay in step.
//!
//! Framing (SPEC §8): a line ends at CRLF only, and a multi-line response at
//! CRLF "." CRLF only. A bare LF or CR inside a message is data. Taking a
//! bare LF as a line end would let a message that carries `\n.\n` end
//! early and the rest of it pass for the server's next replies: a sender
//! could inject a forged message ("POP3 smuggling").

use std::io::{self, BufRead};

/// Longest status or listing line we accept (SPEC §5). Message bodies are
/// streamed and have no line limit.
pub const MAX_LINE: usize = 64 * 1024;

/// Most entries of one listing (CAPA, LIST, UIDL). A million messages is
/// far beyond any real POP3 mailbox (servers slow to a crawl long before),
/// yet the listing of that many still fits in about 100 MB: a hostile
/// server cannot make popfetch hold an endless listing.
pub const MAX_LISTING_ENTRIES: usize = 1_000_000;

/// Most bytes of one listing. A real LIST or UIDL line is under 90 bytes
/// (a number and a UIDL of at most 70 characters), so a million entries
/// take about 64 MiB; beyond that the server is not listing a mailbox.
pub const MAX_LISTING_BYTES: usize = 64 * 1024 * 1024;

/// RFC 2449/3206 response codes that change what popfetch does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RespCode {
    Auth,
    SysTemp,
    SysPerm,
    InUse,
    LoginDelay,
    Utf8,
    Other(String),
}

impl RespCode {
    fn parse(code: &str) -> RespCode {
        // Codes are hierarchical ("SYS/TEMP"); compare case-insensitively.
        match code.to_ascii_uppercase().as_str() {
            "AUTH" => RespCode::Auth,
            "SYS/TEMP" => RespCode::SysTemp,
            "SYS/PERM" => RespCode::SysPerm,
            "IN-USE" => RespCode::InUse,
            "LOGIN-DELAY" => RespCode::LoginDelay,
            "UTF8" => RespCode::Utf8,
            other => RespCode::Other(other.to_string()),
        }
    }
}

/// A parsed status line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Ok(String),
    Err {
        code: Option<RespCode>,
        text: String,
    },
    /// `+ base64` continuation of a SASL exchange (RFC 5034).
    Continue(String),
}

/// Why a line could not be read or parsed.
#[derive(Debug)]
pub enum LineError {
    Io(io::Error),
    /// The connection ended before the line did.
    Eof,
    TooLong,
    /// A line ended with a bare LF: POP3 requires CRLF, and a client that
    /// took LF as a line end could not frame messages safely.
    BareLf,
    Garbage(String),
}

impl From<io::Error> for LineError {
    fn from(e: io::Error) -> Self {
        LineError::Io(e)
    }
}

/// Parses one status line (without its line end). Anything that is neither
/// `+OK`, `-ERR` nor a `+ ` continuation is garbage.
pub fn parse_status(line: &[u8]) -> Result<Status, LineError> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end();
    let (head, rest) = match text.find(' ') {
        Some(i) => (&text[..i], text[i + 1..].trim_start()),
        None => (text, ""),
    };
    if head.eq_ignore_ascii_case("+OK") {
        return Ok(Status::Ok(rest.to_string()));
    }
    if head.eq_ignore_ascii_case("-ERR") {
        let (code, text) = split_resp_code(rest);
        return Ok(Status::Err {
            code,
            text: text.to_string(),
        });
    }
    if head == "+" {
        return Ok(Status::Continue(rest.to_string()));
    }
    Err(LineError::Garbage(printable(line, 80)))
}

/// Splits `[CODE] text` into the code and the text.
fn split_resp_code(rest: &str) -> (Option<RespCode>, &str) {
    if let Some(inner) = rest.strip_prefix('[') {
        if let Some(end) = inner.find(']') {
            return (
                Some(RespCode::parse(&inner[..end])),
                inner[end + 1..].trim_start(),
            );
        }
    }
    (None, rest)
}

/// Shows untrusted bytes safely in a message: control characters escaped,
/// cut at `max` characters.
pub fn printable(bytes: &[u8], max: usize) -> String {
    let mut out = String::new();
    for (i, &b) in bytes.iter().enumerate() {
        if i >= max {
            out.push('…');
            break;
        }
        if (0x20..0x7f).contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Reads one line into `buf` (cleared first), without its CRLF, never
/// taking more than [`MAX_LINE`] bytes and never reading past the line end.
/// A line that ends in a bare LF is [`LineError::BareLf`]: waiting for a CR
/// that such a server never sends would hang, and guessing would break the
/// framing of the messages that follow. A bare CR inside a line is kept.
pub fn read_line<R: BufRead>(r: &mut R, buf: &mut Vec<u8>) -> Result<(), LineError> {
    buf.clear();
    loop {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            return Err(LineError::Eof);
        }
        match memchr::memchr(b'\n', avail) {
            Some(i) => {
                if buf.len() + i > MAX_LINE {
                    return Err(LineError::TooLong);
                }
                buf.extend_from_slice(&avail[..i]);
                r.consume(i + 1);
                if buf.pop_if(|b| *b == b'\r').is_none() {
                    return Err(LineError::BareLf);
                }
                return Ok(());
            }
            None => {
                let n = avail.len();
                if buf.len() + n > MAX_LINE {
                    return Err(LineError::TooLong);
                }
                buf.extend_from_slice(avail);
                r.consume(n);
            }
        }
    }
}

/// Reads one line of a multi-line response into `buf`, dot-unstuffed.
/// Returns `false` at the terminating `.` line.
pub fn read_multiline_line<R: BufRead>(r: &mut R, buf: &mut Vec<u8>) -> Result<bool, LineError> {
    read_line(r, buf)?;
    if buf.first() == Some(&b'.') {
        if buf.len() == 1 {
            return Ok(false);
        }
        buf.remove(0);
    }
    Ok(true)
}

/// Streaming decoder for a multi-line response body (RETR, TOP): removes
/// the byte-stuffing, turns CRLF into LF and stops exactly after the
/// terminating CRLF "." CRLF. A bare LF or CR is data and passes unchanged,
/// and so does a `.` after a bare LF: only a CRLF starts a new line, so
/// only there is a dot stuffing or the terminator. Works on arbitrary chunk
/// boundaries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unstuffer {
    state: State,
    /// CRLFs turned into LF so far: with the bytes given out, the size of
    /// the message as the server counts it (RFC 1939's octets).
    line_ends: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    /// At the first byte of a line (the start, or right after CRLF).
    #[default]
    LineStart,
    /// Inside a line.
    Mid,
    /// Saw CR inside a line; it is held back until we know whether LF follows.
    Cr,
    /// Saw `.` at the start of a line.
    Dot,
    /// Saw `.` CR at the start of a line: the terminator if LF follows.
    DotCr,
    /// The terminator has been consumed.
    Done,
}

/// How much [`Unstuffer::decode`] took and gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub consumed: usize,
    pub written: usize,
    pub done: bool,
}

impl Unstuffer {
    pub fn new() -> Unstuffer {
        Unstuffer::default()
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// How many CRLF line ends were turned into LF so far.
    pub fn line_ends(&self) -> u64 {
        self.line_ends
    }

    /// Decodes from `input` into `out`. Output never exceeds input, but a
    /// held-back CR may be emitted later, so `out` must have room for
    /// `input.len() + 1` bytes to take all of `input`; with less room, less
    /// input is consumed. Stops right after the terminator.
    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Decoded {
        let mut i = 0;
        let mut o = 0;
        while i < input.len() && self.state != State::Done {
            // Reserve 2 output bytes: a held-back CR plus the current byte.
            if o + 2 > out.len() {
                break;
            }
            match self.state {
                State::LineStart => {
                    if input[i] == b'.' {
                        self.state = State::Dot;
                        i += 1;
                    } else {
                        self.state = State::Mid;
                    }
                }
                State::Mid => {
                    // Copy the run up to the next CR in one go; a bare LF
                    // is data like any other byte.
                    let room = out.len() - o - 1;
                    let end = (i + room).min(input.len());
                    let run = &input[i..end];
                    match memchr::memchr(b'\r', run) {
                        Some(k) => {
                            out[o..o + k].copy_from_slice(&run[..k]);
                            o += k;
                            i += k + 1;
                            self.state = State::Cr;
                        }
                        None => {
                            out[o..o + run.len()].copy_from_slice(run);
                            o += run.len();
                            i += run.len();
                        }
                    }
                }
                State::Cr => match input[i] {
                    b'\n' => {
                        out[o] = b'\n';
                        o += 1;
                        i += 1;
                        self.line_ends += 1;
                        self.state = State::LineStart;
                    }
                    b'\r' => {
                        // The held CR was not a line end: emit it, hold this one.
                        out[o] = b'\r';
                        o += 1;
                        i += 1;
                    }
                    _ => {
                        out[o] = b'\r';
                        o += 1;
                        self.state = State::Mid;
                    }
                },
                State::Dot => {
                    if input[i] == b'\r' {
                        self.state = State::DotCr;
                        i += 1;
                    } else {
                        // RFC 1939: a line starting with the termination
                        // octet has that octet stripped (".." → ".",
                        // ".x" → "x", "." LF → LF: the LF is data).
                        self.state = State::Mid;
                    }
                }
                State::DotCr => {
                    if input[i] == b'\n' {
                        self.state = State::Done;
                        i += 1;
                    } else {
                        // ".\rX": the dot was stuffing, the CR is content.
                        self.state = State::Cr;
                    }
                }
                State::Done => unreachable!(),
            }
        }
        Decoded {
            consumed: i,
            written: o,
            done: self.state == State::Done,
        }
    }
}

/// A streaming decoder that needs room for two output bytes at a time (a
/// held-back CR and the byte after it). [`read_decoded`] gives it the
/// `Read` contract for any buffer size: delivery fills blocks, and its last
/// read of a block may ask for a single byte whenever the lines fall so.
pub trait PairDecoder {
    /// A decoded byte a one-byte read had no room for; given out first.
    fn spilled(&mut self) -> &mut Option<u8>;
    /// Decodes into `buf`, which holds at least two bytes; 0 at the end.
    fn decode_into(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

/// More of a message from the server: the bytes buffered, at least one.
/// A failure, the connection closing inside the message included, is also
/// noted in `failure`, so the session tells the network's failure from
/// the target's when the read comes back through the target.
pub fn fill_message<'r, R: BufRead + ?Sized>(
    reader: &'r mut R,
    failure: &mut Option<io::ErrorKind>,
) -> io::Result<&'r [u8]> {
    match reader.fill_buf() {
        Ok([]) => {
            *failure = Some(io::ErrorKind::UnexpectedEof);
            Err(cut_off())
        }
        Ok(input) => Ok(input),
        Err(e) => {
            *failure = Some(e.kind());
            Err(e)
        }
    }
}

/// The connection closed inside a message.
pub fn cut_off() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the server closed the connection in the middle of a message",
    )
}

/// `Read::read` for a [`PairDecoder`]: a held byte first; a one-byte read
/// decodes into a pair and keeps the second byte for the next read.
pub fn read_decoded<D: PairDecoder + ?Sized>(d: &mut D, buf: &mut [u8]) -> io::Result<usize> {
    if buf.is_empty() {
        return Ok(0);
    }
    if let Some(byte) = d.spilled().take() {
        buf[0] = byte;
        return Ok(1);
    }
    if buf.len() == 1 {
        let mut pair = [0u8; 2];
        let n = d.decode_into(&mut pair)?;
        if n == 2 {
            *d.spilled() = Some(pair[1]);
        }
        buf[0] = pair[0];
        return Ok(n.min(1));
    }
    d.decode_into(buf)
}

/// Encodes a message for the wire: CRLF line ends and dot-stuffing, with the
/// terminator. The inverse of [`Unstuffer`] for LF-terminated input; used by
/// tests and benchmarks.
pub fn stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 32 + 5);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' {
            out.extend_from_slice(b"\r\n");
            at_line_start = true;
        } else {
            out.push(b);
            at_line_start = false;
        }
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Encodes a message the way a server that stores it as-is sends it: its
/// bytes unchanged (a bare LF or CR stays), a dot doubled only at the start
/// of a CRLF line, CRLF added if it does not end in one, then the
/// terminator. Used by tests: any message survives this and [`Unstuffer`]
/// with only its CRLFs turned into LF.
pub fn stuff_raw(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 32 + 5);
    let mut at_line_start = true;
    for (i, &b) in message.iter().enumerate() {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n' && i > 0 && message[i - 1] == b'\r';
    }
    if !message.is_empty() && !message.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Capabilities from CAPA (RFC 2449). Names are upper-cased; arguments kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Whether the server answered CAPA at all.
    pub known: bool,
    entries: Vec<(String, Vec<String>)>,
}

impl Capabilities {
    pub fn parse_line(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let mut words = text.split_ascii_whitespace();
        if let Some(name) = words.next() {
            self.entries.push((
                name.to_ascii_uppercase(),
                words.map(str::to_string).collect(),
            ));
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.entries.iter().any(|(n, _)| n == name)
    }

    pub fn args(&self, name: &str) -> Option<&[String]> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.as_slice())
    }

    /// SASL mechanisms, upper-cased.
    pub fn sasl(&self) -> Vec<String> {
        self.args("SASL")
            .map(|a| a.iter().map(|m| m.to_ascii_uppercase()).collect())
            .unwrap_or_default()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }
}

/// Parses a `n uidl` listing line. The UIDL is everything after the number
/// (RFC 1939: `msg SP uid`; trailing blanks dropped), so a UIDL with a space
/// in it is seen whole, and [`valid_uidl`] (the caller's check) rejects it
/// instead of it being cut at the space. Bytes that are not UTF-8 come back
/// as U+FFFD, which `valid_uidl` rejects too.
pub fn parse_uidl_line(line: &[u8]) -> Option<(u32, String)> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_start_matches([' ', '\t']);
    let end = text.find([' ', '\t'])?;
    let n = text[..end].parse().ok()?;
    let uidl = text[end..]
        .trim_start_matches([' ', '\t'])
        .trim_end_matches([' ', '\t']);
    if uidl.is_empty() {
        return None;
    }
    Some((n, uidl.to_string()))
}

/// Parses a `n size` listing line.
pub fn parse_list_line(line: &[u8]) -> Option<(u32, u64)> {
    let text = std::str::from_utf8(line).ok()?;
    let mut words = text.split_ascii_whitespace();
    let n = words.next()?.parse().ok()?;
    let size = words.next()?.parse().ok()?;
    Some((n, size))
}

/// The APOP timestamp (`<…@…>`) in a greeting, if any.
pub fn apop_timestamp(greeting: &str) -> Option<&str> {
    let start = greeting.find('<')?;
    let end = start + greeting[start..].find('>')?;
    let stamp = &greeting[start..=end];
    // RFC 1939 requires a msg-id form; anything without '@' is not one.
    (stamp.contains('@') && !stamp[1..].contains('<')).then_some(stamp)
}

/// Whether `uidl` is what RFC 1939 allows: 1 to 70 printable ASCII
/// characters (0x21–0x7E).
pub fn valid_uidl(uidl: &str) -> bool {
    !uidl.is_empty() && uidl.len() <= 70 && uidl.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Cursor, Read};

    fn status(s: &str) -> Status {
        parse_status(s.as_bytes()).unwrap()
    }

    #[test]
    fn status_lines() {
        assert_eq!(status("+OK 2 320"), Status::Ok("2 320".into()));
        assert_eq!(status("+ok"), Status::Ok(String::new()));
        assert_eq!(status("+OK"), Status::Ok(String::new()));
        assert_eq!(
            status("-ERR [IN-USE] mailbox locked"),
            Status::Err {
                code: Some(RespCode::InUse),
                text: "mailbox locked".into()
            }
        );
        assert_eq!(
            status("-ERR [sys/temp] later"),
            Status::Err {
                code: Some(RespCode::SysTemp),
                text: "later".into()
            }
        );
        assert_eq!(
            status("-ERR no such message"),
            Status::Err {
                code: None,
                text: "no such message".into()
            }
        );
        assert_eq!(status("+ VXNlcg=="), Status::Continue("VXNlcg==".into()));
        assert!(matches!(
            parse_status(b"HELLO WORLD"),
            Err(LineError::Garbage(_))
        ));
        assert!(matches!(parse_status(b"+OKAY"), Err(LineError::Garbage(_))));
        assert!(matches!(parse_status(b""), Err(LineError::Garbage(_))));
    }

    #[test]
    fn lines_are_bounded_and_not_overread() {
        let mut r = BufReader::with_capacity(
            7,
            Cursor::new(b"+OK one\r\n+OK a\rb\r\n+OK two\r\nrest".to_vec()),
        );
        let mut buf = Vec::new();
        read_line(&mut r, &mut buf).unwrap();
        assert_eq!(buf, b"+OK one");
        read_line(&mut r, &mut buf).unwrap();
        assert_eq!(buf, b"+OK a\rb", "a bare CR is part of the line");
        read_line(&mut r, &mut buf).unwrap();
        assert_eq!(buf, b"+OK two");
        assert!(matches!(read_line(&mut r, &mut buf), Err(LineError::Eof)));

        let long = vec![b'a'; MAX_LINE + 10];
        let mut r = BufReader::new(Cursor::new(long));
        assert!(matches!(
            read_line(&mut r, &mut buf),
            Err(LineError::TooLong)
        ));
    }

    fn unstuff_all(wire: &[u8], chunk: usize, out_room: usize) -> (Vec<u8>, usize) {
        let mut u = Unstuffer::new();
        let mut out = Vec::new();
        let mut pos = 0;
        let mut scratch = vec![0u8; out_room];
        while !u.is_done() && pos < wire.len() {
            let end = (pos + chunk).min(wire.len());
            let d = u.decode(&wire[pos..end], &mut scratch);
            out.extend_from_slice(&scratch[..d.written]);
            pos += d.consumed;
        }
        assert!(u.is_done(), "no terminator found");
        (out, pos)
    }

    #[test]
    fn unstuffing_across_every_split() {
        let msg = b"From: a\n\n.hidden\n..two\n.\nFrom the start\nend\r\nx".to_vec();
        let mut wire = stuff(&msg);
        wire.extend_from_slice(b"+OK next");
        // A CR of the message's own (before its LF) is content and survives.
        let mut expected = msg.clone();
        expected.push(b'\n');
        for chunk in 1..wire.len() {
            for room in [2, 3, 5, 64] {
                let (out, consumed) = unstuff_all(&wire, chunk, room);
                assert_eq!(out, expected, "chunk {chunk} room {room}");
                assert_eq!(&wire[consumed..], b"+OK next");
            }
        }
    }

    #[test]
    fn a_line_ending_in_a_bare_lf_is_an_error_not_a_wait_for_cr() {
        // The CR may sit at the end of one buffer fill and the LF at the
        // start of the next: still CRLF.
        for cap in 1..12 {
            let mut r = BufReader::with_capacity(cap, Cursor::new(b"+OK hi\r\n+OK hi\nx".to_vec()));
            let mut buf = Vec::new();
            read_line(&mut r, &mut buf).unwrap();
            assert_eq!(buf, b"+OK hi");
            assert!(matches!(
                read_line(&mut r, &mut buf),
                Err(LineError::BareLf)
            ));
        }
        let mut r = Cursor::new(b"1 abc\n.\n".to_vec());
        let mut buf = Vec::new();
        assert!(matches!(
            read_multiline_line(&mut r, &mut buf),
            Err(LineError::BareLf)
        ));
    }

    #[test]
    fn bare_lf_and_cr_are_data_and_never_end_a_message() {
        // The smuggling attack: a body carrying LF "." LF and reply-like
        // text. All of it is the message; only CRLF "." CRLF ends it.
        let wire =
            b"Subject: a\r\n\r\nhi\n.\n+OK 99 octets\nFrom: forged\n\n.\nlast\r\n.\r\n+OK next";
        for chunk in 1..wire.len() {
            let (out, consumed) = unstuff_all(wire, chunk, 5);
            assert_eq!(
                out,
                b"Subject: a\n\nhi\n.\n+OK 99 octets\nFrom: forged\n\n.\nlast\n".to_vec()
            );
            assert_eq!(&wire[consumed..], b"+OK next");
        }
        // A dot after a bare LF or a bare CR is data, not stuffing.
        assert_eq!(unstuff_all(b"a\n..b\r.c\r\n.\r\n", 1, 8).0, b"a\n..b\r.c\n");
        // A stuffed dot before a bare LF goes; the LF stays.
        assert_eq!(unstuff_all(b".\nx\r\n.\r\n", 1, 8).0, b"\nx\n");
        // stuff_raw is what a server that keeps the bytes sends.
        let msg = b"a\n.\n\r\n.b\r\n\rc";
        assert_eq!(stuff_raw(msg), b"a\n.\n\r\n..b\r\n\rc\r\n.\r\n");
        assert_eq!(unstuff_all(&stuff_raw(msg), 3, 8).0, b"a\n.\n\n.b\n\rc\n");
    }

    #[test]
    fn unstuffing_edge_cases() {
        // Empty message.
        assert_eq!(unstuff_all(b".\r\n", 1, 8).0, b"");
        // Lone CR and a CR before CRLF are content.
        assert_eq!(unstuff_all(b"a\rb\r\r\n.\r\n", 1, 8).0, b"a\rb\r\n");
        // ".\rX" at line start: dot stripped, CR kept.
        assert_eq!(unstuff_all(b".\rX\r\n.\r\n", 1, 8).0, b"\rX\n");
        // Unstuffed but dotted line: dot stripped per RFC 1939.
        assert_eq!(unstuff_all(b".x\r\n.\r\n", 3, 8).0, b"x\n");
    }

    #[test]
    fn multiline_listing() {
        let mut r = Cursor::new(b"1 abc\r\n..2 def\r\n.\r\nnext".to_vec());
        let mut buf = Vec::new();
        assert!(read_multiline_line(&mut r, &mut buf).unwrap());
        assert_eq!(parse_uidl_line(&buf), Some((1, "abc".into())));
        assert!(read_multiline_line(&mut r, &mut buf).unwrap());
        assert_eq!(buf, b".2 def");
        assert!(!read_multiline_line(&mut r, &mut buf).unwrap());
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "next");
    }

    #[test]
    fn capa_uidl_list_parsing() {
        let mut caps = Capabilities::default();
        for l in ["TOP", "uidl", "SASL PLAIN login", "PIPELINING", "EXPIRE 0"] {
            caps.parse_line(l.as_bytes());
        }
        assert!(caps.has("UIDL") && caps.has("PIPELINING") && !caps.has("STLS"));
        assert_eq!(caps.sasl(), vec!["PLAIN", "LOGIN"]);
        assert_eq!(caps.args("EXPIRE"), Some(&["0".to_string()][..]));

        assert_eq!(
            parse_uidl_line(b"3  whqtswO00WBw418f9t5JxYwZ"),
            Some((3, "whqtswO00WBw418f9t5JxYwZ".into()))
        );
        assert_eq!(parse_uidl_line(b"x y"), None);
        // The whole rest is the UIDL, so an invalid one is seen as such.
        assert_eq!(
            parse_uidl_line(b"4 has space "),
            Some((4, "has space".into()))
        );
        assert!(!valid_uidl("has space"));
        assert_eq!(parse_uidl_line(b"3"), None);
        assert_eq!(parse_list_line(b"2 200"), Some((2, 200)));
        assert_eq!(parse_list_line(b"2 -5"), None);
    }

    #[test]
    fn apop_and_uidl_validation() {
        assert_eq!(
            apop_timestamp("+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>"),
            Some("<1896.697170952@dbc.mtview.ca.us>")
        );
        assert_eq!(apop_timestamp("+OK ready"), None);
        assert_eq!(apop_timestamp("+OK <noat>"), None);
        assert!(valid_uidl("abc-123"));
        assert!(!valid_uidl(""));
        assert!(!valid_uidl("has space"));
        assert!(!valid_uidl(&"x".repeat(71)));
        assert!(!valid_uidl("bell\x07"));
    }
}
