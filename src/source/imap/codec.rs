//! The IMAP wire format without I/O policy: response heads, tokens, response
//! codes, capabilities, how arguments are quoted, UID sets, and the
//! streaming decoder for message literals.
//!
//! Hand-written rather than `imap-codec`: that crate parses a response only
//! once all of it (literals included) is in memory, and a `BODY[]` literal is
//! a whole message. Here a response is read one CRLF-terminated segment at a
//! time (each at most [`MAX_LINE`]); a segment that ends in a literal marker
//! `{n}` hands the next `n` bytes to the caller, who streams them
//! ([`LiteralDecoder`]), drains them, or keeps a small one (bounded by
//! [`MAX_SMALL_LITERAL`]). Nothing a server sends makes us allocate without
//! bound: lines, nesting, literal counts per response and kept literals all
//! have limits.

use std::io;

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;

use crate::source::pop3::codec::{fill_message, PairDecoder};
use crate::ui::term;

/// Longest line segment of a response (up to CRLF or a literal).
pub const MAX_LINE: usize = crate::source::pop3::codec::MAX_LINE;
/// Deepest parenthesised nesting accepted (FETCH's BODYSTRUCTURE is the
/// deepest real one; we never ask for it).
pub const MAX_DEPTH: usize = 32;
/// Most literals in one response: a FETCH we send asks for at most two.
pub const MAX_LITERALS: usize = 1_000;
/// Largest literal kept in memory (not a message body: an ID value, a
/// folder name, a `top` preview).
pub const MAX_SMALL_LITERAL: u64 = 1024 * 1024;

/// A protocol violation, described for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

/// One token of a response segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// An atom or number, with any `[section]<partial>` attached
    /// (`BODY[HEADER]`, `BODY[]<0>`); `NIL` too.
    Atom(String),
    Quoted(Vec<u8>),
    /// `{n}`, `{n+}` or `~{n}`: the last token of its segment; `n` bytes
    /// follow on the connection.
    Literal(u64),
    Open,
    Close,
    /// The segment ended (CRLF).
    End,
}

impl Token {
    /// What the token is, for an error message: server bytes escaped and
    /// cut short (an atom or string may be a 64 KiB line).
    pub fn describe(&self) -> String {
        match self {
            Token::Atom(a) => format!("the word \"{}\"", printable(a.as_bytes(), 40)),
            Token::Quoted(q) => format!("the string \"{}\"", printable(q, 40)),
            Token::Literal(n) => format!("a literal of {n} bytes"),
            Token::Open => "`(`".into(),
            Token::Close => "`)`".into(),
            Token::End => "the end of the line".into(),
        }
    }
}

/// One line segment and how far it has been parsed.
#[derive(Debug, Default)]
pub struct Line {
    pub buf: Vec<u8>,
    pub pos: usize,
}

impl Line {
    pub fn reset(&mut self) {
        self.pos = 0;
    }

    fn skip_spaces(&mut self) {
        while self.buf.get(self.pos) == Some(&b' ') {
            self.pos += 1;
        }
    }

    pub fn peek(&mut self) -> Option<u8> {
        self.skip_spaces();
        self.buf.get(self.pos).copied()
    }

    /// The rest of the segment as text (control characters escaped).
    pub fn text(&mut self) -> String {
        self.skip_spaces();
        let t = String::from_utf8_lossy(&self.buf[self.pos..]).into_owned();
        self.pos = self.buf.len();
        term::escape_controls(&t)
    }

    pub fn token(&mut self) -> Result<Token, Malformed> {
        self.skip_spaces();
        let Some(&b) = self.buf.get(self.pos) else {
            return Ok(Token::End);
        };
        match b {
            b'(' => {
                self.pos += 1;
                Ok(Token::Open)
            }
            b')' => {
                self.pos += 1;
                Ok(Token::Close)
            }
            b'"' => self.quoted(),
            b'{' => self.literal(),
            b'~' if self.buf.get(self.pos + 1) == Some(&b'{') => {
                self.pos += 1;
                self.literal()
            }
            _ => Ok(Token::Atom(self.atom())),
        }
    }

    fn atom(&mut self) -> String {
        let start = self.pos;
        let mut in_brackets = false;
        while let Some(&b) = self.buf.get(self.pos) {
            match b {
                b'[' => in_brackets = true,
                b']' => in_brackets = false,
                b' ' | b'(' | b')' if !in_brackets => break,
                _ => {}
            }
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.buf[start..self.pos]).into_owned()
    }

    fn quoted(&mut self) -> Result<Token, Malformed> {
        self.pos += 1;
        let mut out = Vec::new();
        while let Some(&b) = self.buf.get(self.pos) {
            self.pos += 1;
            match b {
                b'"' => return Ok(Token::Quoted(out)),
                b'\\' => {
                    let Some(&e) = self.buf.get(self.pos) else {
                        break;
                    };
                    out.push(e);
                    self.pos += 1;
                }
                _ => out.push(b),
            }
        }
        Err(Malformed(
            "a quoted string without its closing quote".into(),
        ))
    }

    fn literal(&mut self) -> Result<Token, Malformed> {
        let rest = &self.buf[self.pos + 1..];
        let close = rest.iter().position(|&b| b == b'}');
        let inner = close.map(|c| &rest[..c]);
        let at_end = close.is_some_and(|c| c + 1 == rest.len());
        let digits = inner.map(|i| i.strip_suffix(b"+").unwrap_or(i));
        let n = digits
            .filter(|d| !d.is_empty() && d.len() <= 19 && d.iter().all(u8::is_ascii_digit))
            .and_then(|d| std::str::from_utf8(d).ok()?.parse::<u64>().ok());
        match (n, at_end) {
            (Some(n), true) => {
                self.pos = self.buf.len();
                Ok(Token::Literal(n))
            }
            _ => Err(Malformed(format!(
                "a malformed literal marker {:?}",
                printable(&self.buf[self.pos..], 40)
            ))),
        }
    }

    /// Skips one value (an atom, a string, or a parenthesised list). A
    /// literal is returned so the caller can drain it and go on with the
    /// next segment: `Some(depth, n)` means n bytes follow and `depth`
    /// lists are still open.
    pub fn skip_value(&mut self, mut depth: usize) -> Result<Option<(usize, u64)>, Malformed> {
        loop {
            match self.token()? {
                Token::Open => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(Malformed(format!("lists nested deeper than {MAX_DEPTH}")));
                    }
                }
                Token::Close => {
                    if depth == 0 {
                        return Err(Malformed("an unbalanced `)`".into()));
                    }
                    depth -= 1;
                }
                Token::Literal(n) => return Ok(Some((depth, n))),
                Token::End => {
                    if depth > 0 {
                        return Err(Malformed("a list the line does not close".into()));
                    }
                    return Ok(None);
                }
                Token::Atom(_) | Token::Quoted(_) => {}
            }
            if depth == 0 {
                return Ok(None);
            }
        }
    }
}

/// Shows untrusted bytes safely: control characters escaped, cut at `max`.
pub fn printable(bytes: &[u8], max: usize) -> String {
    crate::source::pop3::codec::printable(bytes, max)
}

/// The status of a status response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusKind {
    Ok,
    No,
    Bad,
    Bye,
    Preauth,
}

impl StatusKind {
    pub fn name(self) -> &'static str {
        match self {
            StatusKind::Ok => "OK",
            StatusKind::No => "NO",
            StatusKind::Bad => "BAD",
            StatusKind::Bye => "BYE",
            StatusKind::Preauth => "PREAUTH",
        }
    }
}

/// Response codes (RFC 3501 §7.1, RFC 5530) that change what popfetch does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Code {
    Alert,
    AuthenticationFailed,
    AuthorizationFailed,
    Expired,
    PrivacyRequired,
    Unavailable,
    Limit,
    InUse,
    ServerBug,
    Nonexistent,
    ReadOnly,
    ReadWrite,
    Capability(Vec<String>),
    UidValidity(u32),
    UidNext(u32),
    /// RFC 7162 (CONDSTORE): the folder's highest mod-sequence.
    HighestModSeq(u64),
    /// Any other code, as sent (name and arguments).
    Other(String),
}

impl Code {
    pub fn parse(inner: &str) -> Code {
        let (name, args) = match inner.find(' ') {
            Some(i) => (&inner[..i], inner[i + 1..].trim()),
            None => (inner, ""),
        };
        let number = || args.parse::<u32>().ok();
        match name.to_ascii_uppercase().as_str() {
            "ALERT" => Code::Alert,
            "AUTHENTICATIONFAILED" => Code::AuthenticationFailed,
            "AUTHORIZATIONFAILED" => Code::AuthorizationFailed,
            "EXPIRED" => Code::Expired,
            "PRIVACYREQUIRED" => Code::PrivacyRequired,
            "UNAVAILABLE" => Code::Unavailable,
            "LIMIT" => Code::Limit,
            "INUSE" => Code::InUse,
            "SERVERBUG" => Code::ServerBug,
            "NONEXISTENT" => Code::Nonexistent,
            "READ-ONLY" => Code::ReadOnly,
            "READ-WRITE" => Code::ReadWrite,
            "CAPABILITY" => Code::Capability(args.split_whitespace().map(str::to_string).collect()),
            "UIDVALIDITY" if number().is_some() => Code::UidValidity(number().unwrap_or(0)),
            "UIDNEXT" if number().is_some() => Code::UidNext(number().unwrap_or(0)),
            "HIGHESTMODSEQ" if args.parse::<u64>().is_ok() => {
                Code::HighestModSeq(args.parse().unwrap_or(0))
            }
            _ => Code::Other(inner.to_string()),
        }
    }

    /// As the server wrote it, for messages.
    pub fn name(&self) -> String {
        match self {
            Code::Alert => "ALERT".into(),
            Code::AuthenticationFailed => "AUTHENTICATIONFAILED".into(),
            Code::AuthorizationFailed => "AUTHORIZATIONFAILED".into(),
            Code::Expired => "EXPIRED".into(),
            Code::PrivacyRequired => "PRIVACYREQUIRED".into(),
            Code::Unavailable => "UNAVAILABLE".into(),
            Code::Limit => "LIMIT".into(),
            Code::InUse => "INUSE".into(),
            Code::ServerBug => "SERVERBUG".into(),
            Code::Nonexistent => "NONEXISTENT".into(),
            Code::ReadOnly => "READ-ONLY".into(),
            Code::ReadWrite => "READ-WRITE".into(),
            Code::Capability(c) => format!("CAPABILITY {}", c.join(" ")),
            Code::UidValidity(n) => format!("UIDVALIDITY {n}"),
            Code::UidNext(n) => format!("UIDNEXT {n}"),
            Code::HighestModSeq(n) => format!("HIGHESTMODSEQ {n}"),
            Code::Other(s) => s.clone(),
        }
    }

    /// A refusal that says "not now": SPEC §6's try-again-later.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            Code::Unavailable | Code::Limit | Code::InUse | Code::ServerBug
        )
    }

    /// A refusal of the credentials or of this user.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            Code::AuthenticationFailed
                | Code::AuthorizationFailed
                | Code::Expired
                | Code::PrivacyRequired
        )
    }
}

/// A status response: `OK`/`NO`/`BAD`/`BYE`/`PREAUTH`, its code and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub kind: StatusKind,
    pub code: Option<Code>,
    pub text: String,
}

impl Status {
    /// `NO [CODE] text`, for messages.
    pub fn describe(&self) -> String {
        match &self.code {
            Some(c) => format!("{} [{}] {}", self.kind.name(), c.name(), self.text),
            None => format!("{} {}", self.kind.name(), self.text),
        }
    }
}

/// What the first segment of a response says it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Head {
    /// `+ text`: the server waits for more of our command.
    Continue(String),
    Tagged(String, Status),
    /// Untagged `* OK/NO/BAD/BYE/PREAUTH`.
    Status(Status),
    /// `* n KIND`: EXISTS, EXPUNGE, RECENT, FETCH; the line stands after KIND.
    Numbered(u32, String),
    /// `* KIND ...`: CAPABILITY, SEARCH, FLAGS, LIST…; the line stands after KIND.
    Data(String),
}

fn status_kind(word: &str) -> Option<StatusKind> {
    match word.to_ascii_uppercase().as_str() {
        "OK" => Some(StatusKind::Ok),
        "NO" => Some(StatusKind::No),
        "BAD" => Some(StatusKind::Bad),
        "BYE" => Some(StatusKind::Bye),
        "PREAUTH" => Some(StatusKind::Preauth),
        _ => None,
    }
}

/// Reads the rest of a status response: `[code] text`. Text never holds
/// literals (RFC 3501 `resp-text`), so this ends the response.
fn status_rest(line: &mut Line, kind: StatusKind) -> Status {
    line.skip_spaces();
    let rest = &line.buf[line.pos..];
    let mut code = None;
    let mut text_from = line.pos;
    if rest.first() == Some(&b'[') {
        if let Some(end) = rest.iter().position(|&b| b == b']') {
            let inner = String::from_utf8_lossy(&rest[1..end]);
            code = Some(Code::parse(&term::escape_controls(&inner)));
            text_from = line.pos + end + 1;
        }
    }
    line.pos = text_from;
    let text = line.text();
    Status { kind, code, text }
}

/// Parses the head of a response from its first segment.
pub fn parse_head(line: &mut Line) -> Result<Head, Malformed> {
    line.reset();
    match line.buf.first() {
        Some(b'+') => {
            line.pos = 1;
            Ok(Head::Continue(line.text()))
        }
        Some(b'*') => {
            line.pos = 1;
            if line.buf.get(1) != Some(&b' ') {
                return Err(Malformed("`*` not followed by a space".into()));
            }
            let Token::Atom(word) = line.token()? else {
                return Err(Malformed("an untagged response without a name".into()));
            };
            if let Some(kind) = status_kind(&word) {
                return Ok(Head::Status(status_rest(line, kind)));
            }
            if word.bytes().all(|b| b.is_ascii_digit()) {
                let n = word.parse::<u32>().map_err(|_| {
                    Malformed(format!(
                        "a message number out of range: {}",
                        printable(word.as_bytes(), 20)
                    ))
                })?;
                let Token::Atom(kind) = line.token()? else {
                    return Err(Malformed(format!("`* {n}` without a response name")));
                };
                return Ok(Head::Numbered(n, kind.to_ascii_uppercase()));
            }
            Ok(Head::Data(word.to_ascii_uppercase()))
        }
        Some(_) => {
            let Token::Atom(tag) = line.token()? else {
                return Err(Malformed(
                    "a response that starts with neither a tag, `*` nor `+`".into(),
                ));
            };
            let Token::Atom(word) = line.token()? else {
                return Err(Malformed(format!(
                    "tagged response {} without a status",
                    printable(tag.as_bytes(), 40)
                )));
            };
            match status_kind(&word) {
                Some(kind @ (StatusKind::Ok | StatusKind::No | StatusKind::Bad)) => {
                    Ok(Head::Tagged(tag, status_rest(line, kind)))
                }
                _ => Err(Malformed(format!(
                    "tagged response {} with status {:?}",
                    printable(tag.as_bytes(), 40),
                    printable(word.as_bytes(), 20)
                ))),
            }
        }
        None => Err(Malformed("an empty line".into())),
    }
}

/// The server's capabilities (from `CAPABILITY` or a `[CAPABILITY]` code).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// False until the server told us any.
    pub known: bool,
    names: Vec<String>,
}

impl Capabilities {
    pub fn from_names<I: IntoIterator<Item = String>>(names: I) -> Capabilities {
        Capabilities {
            known: true,
            names: names
                .into_iter()
                .map(|n| term::escape_controls(&n).to_ascii_uppercase())
                .collect(),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// The SASL mechanisms (`AUTH=...`).
    pub fn sasl(&self) -> Vec<String> {
        self.names
            .iter()
            .filter_map(|n| n.strip_prefix("AUTH="))
            .map(str::to_string)
            .collect()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }
}

/// Whether `s` may go on the wire as an atom.
fn is_atom(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter().all(|&b| {
            b > 0x20
                && b < 0x7f
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
        })
}

/// How one string argument goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoded {
    /// As an atom or quoted string on the command line.
    Inline(String),
    /// As a literal: 8-bit or control characters cannot be quoted.
    Literal(Vec<u8>),
}

/// Encodes an `astring` argument: atom if it can be, quoted if it is 7-bit
/// text, else a literal.
pub fn astring(s: &[u8]) -> Encoded {
    if is_atom(s) {
        return Encoded::Inline(String::from_utf8_lossy(s).into_owned());
    }
    if s.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        let mut q = String::with_capacity(s.len() + 2);
        q.push('"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                q.push('\\');
            }
            q.push(b as char);
        }
        q.push('"');
        return Encoded::Inline(q);
    }
    Encoded::Literal(s.to_vec())
}

/// A folder name as IMAP4rev1 spells it: modified UTF-7 (RFC 3501 §5.1.3).
pub fn mailbox_name(name: &str) -> String {
    let mut out = String::new();
    let mut pending: Vec<u16> = Vec::new();
    let flush = |out: &mut String, pending: &mut Vec<u16>| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        out.push_str(&STANDARD_NO_PAD.encode(bytes).replace('/', ","));
        out.push('-');
        pending.clear();
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut out, &mut pending);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut b = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut b));
        }
    }
    flush(&mut out, &mut pending);
    out
}

/// Splits `uids` into UID sets (`1:5,7,9`) of at most about `max_len`
/// characters each, in the order given, runs of consecutive UIDs joined.
pub fn uid_sets(uids: &[u32], max_len: usize) -> Vec<(String, std::ops::Range<usize>)> {
    let mut sets = Vec::new();
    let mut cur = String::new();
    let mut start_index = 0;
    let mut i = 0;
    while i < uids.len() {
        let first = uids[i];
        let mut j = i;
        while j + 1 < uids.len() && uids[j].checked_add(1) == Some(uids[j + 1]) {
            j += 1;
        }
        let part = if j > i {
            format!("{first}:{}", uids[j])
        } else {
            first.to_string()
        };
        if !cur.is_empty() && cur.len() + 1 + part.len() > max_len {
            sets.push((std::mem::take(&mut cur), start_index..i));
            start_index = i;
        }
        if !cur.is_empty() {
            cur.push(',');
        }
        cur.push_str(&part);
        i = j + 1;
    }
    if !cur.is_empty() {
        sets.push((cur, start_index..uids.len()));
    }
    sets
}

/// Parses a sequence set of numbers (`1:3,7`), as ESEARCH returns it;
/// `None` when malformed or larger than `max` numbers.
pub fn parse_set(s: &str, max: usize) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let (a, b) = match part.split_once(':') {
            Some((a, b)) => (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?),
            None => {
                let n = part.parse::<u32>().ok()?;
                (n, n)
            }
        };
        let (lo, hi) = (a.min(b), a.max(b));
        if out.len() + (hi - lo) as usize >= max {
            return None;
        }
        out.extend(lo..=hi);
    }
    Some(out)
}

/// Turns a literal's CRLF line ends into LF as it streams (the delivered
/// form, like POP3's `Body`); a bare CR or LF is data and passes unchanged.
/// A CR at the end of the input is held back until the next byte shows
/// whether an LF follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrlfDecoder {
    held_cr: bool,
    /// CRLFs turned into LF so far.
    line_ends: u64,
}

impl CrlfDecoder {
    pub fn line_ends(&self) -> u64 {
        self.line_ends
    }

    pub fn holds_cr(&self) -> bool {
        self.held_cr
    }

    /// Decodes from `input` into `out` (at least 2 bytes); returns
    /// (consumed, written). `last`: no byte of this literal follows
    /// `input`, so a held CR is data.
    pub fn decode(&mut self, input: &[u8], out: &mut [u8], last: bool) -> (usize, usize) {
        let (mut i, mut o) = (0, 0);
        while o + 2 <= out.len() {
            if self.held_cr {
                match input.get(i) {
                    Some(b'\n') => {
                        out[o] = b'\n';
                        self.line_ends += 1;
                        i += 1;
                    }
                    None if !last => break,
                    _ => out[o] = b'\r',
                }
                o += 1;
                self.held_cr = false;
                continue;
            }
            if i >= input.len() {
                break;
            }
            // Copy up to the next CR in one go.
            let room = out.len() - o - 1;
            let run = &input[i..input.len().min(i + room)];
            let n = memchr::memchr(b'\r', run).unwrap_or(run.len());
            out[o..o + n].copy_from_slice(&run[..n]);
            o += n;
            i += n;
            if i < input.len() && input[i] == b'\r' && n < room {
                self.held_cr = true;
                i += 1;
            }
        }
        (i, o)
    }
}

/// Streams one literal from a buffered reader, decoded by [`CrlfDecoder`]:
/// used by the session's message bodies. Kept here so the pure part can be
/// tested on any `BufRead`.
pub struct LiteralReader<'a, R> {
    pub reader: &'a mut R,
    pub remaining: u64,
    pub decoder: CrlfDecoder,
    pub spilled: Option<u8>,
    /// Bytes given out.
    pub bytes: u64,
    pub limit: Option<u64>,
    pub over_limit: bool,
    pub net_failure: Option<io::ErrorKind>,
}

impl<'a, R: io::BufRead> LiteralReader<'a, R> {
    pub fn new(reader: &'a mut R, len: u64, limit: Option<u64>) -> LiteralReader<'a, R> {
        LiteralReader {
            reader,
            remaining: len,
            decoder: CrlfDecoder::default(),
            spilled: None,
            bytes: 0,
            limit,
            over_limit: false,
            net_failure: None,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.remaining == 0 && !self.decoder.holds_cr() && self.spilled.is_none()
    }

    /// Reads and drops the rest, with no limit.
    pub fn drain(&mut self) -> io::Result<()> {
        self.limit = None;
        let mut sink = [0u8; 16 * 1024];
        while io::Read::read(self, &mut sink)? > 0 {}
        Ok(())
    }
}

impl<R: io::BufRead> PairDecoder for LiteralReader<'_, R> {
    fn spilled(&mut self) -> &mut Option<u8> {
        &mut self.spilled
    }

    fn decode_into(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let (_, written) = if self.remaining == 0 {
                self.decoder.decode(&[], buf, true)
            } else {
                let input = fill_message(&mut self.reader, &mut self.net_failure)?;
                let take = input
                    .len()
                    .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                let last = take as u64 == self.remaining;
                let d = self.decoder.decode(&input[..take], buf, last);
                self.reader.consume(d.0);
                self.remaining -= d.0 as u64;
                d
            };
            self.bytes += written as u64;
            if let Some(max) = self.limit.filter(|max| self.bytes > *max) {
                self.over_limit = true;
                return Err(io::Error::other(format!(
                    "the message is larger than max_size ({})",
                    crate::ui::report::human_bytes(max)
                )));
            }
            if written > 0 || (self.remaining == 0 && !self.decoder.holds_cr()) {
                return Ok(written);
            }
        }
    }
}

impl<R: io::BufRead> io::Read for LiteralReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        crate::source::pop3::codec::read_decoded(self, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::pop3::mock::read_in_sizes;

    fn line(s: &str) -> Line {
        Line {
            buf: s.as_bytes().to_vec(),
            pos: 0,
        }
    }

    #[test]
    fn heads_of_every_kind() {
        let mut l = line("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready");
        let Head::Status(s) = parse_head(&mut l).unwrap() else {
            panic!()
        };
        assert_eq!(
            s.code,
            Some(Code::Capability(vec![
                "IMAP4rev1".into(),
                "AUTH=PLAIN".into()
            ]))
        );
        assert_eq!(s.text, "ready");
        let mut l = line("A1 NO [UNAVAILABLE] try later");
        assert_eq!(
            parse_head(&mut l).unwrap(),
            Head::Tagged(
                "A1".into(),
                Status {
                    kind: StatusKind::No,
                    code: Some(Code::Unavailable),
                    text: "try later".into()
                }
            )
        );
        let mut l = line("* 12 FETCH (UID 7)");
        assert_eq!(
            parse_head(&mut l).unwrap(),
            Head::Numbered(12, "FETCH".into())
        );
        assert_eq!(l.token().unwrap(), Token::Open);
        assert_eq!(
            parse_head(&mut line("+ abc")).unwrap(),
            Head::Continue("abc".into())
        );
        assert_eq!(
            parse_head(&mut line("+")).unwrap(),
            Head::Continue("".into())
        );
        assert_eq!(
            parse_head(&mut line("* search 1 2")).unwrap(),
            Head::Data("SEARCH".into())
        );
        assert!(parse_head(&mut line("A1 FOO bar")).is_err());
        assert!(parse_head(&mut line("")).is_err());
        let mut l = line("* OK [UIDVALIDITY 3857529045] UIDs valid");
        let Head::Status(s) = parse_head(&mut l).unwrap() else {
            panic!()
        };
        assert_eq!(s.code, Some(Code::UidValidity(3857529045)));
        // Control characters in the text never reach a terminal raw.
        let mut l = line("A2 NO \x1b[31mred");
        let Head::Tagged(_, s) = parse_head(&mut l).unwrap() else {
            panic!()
        };
        assert!(!s.text.contains('\x1b'), "{:?}", s.text);
    }

    #[test]
    fn tokens_atoms_sections_quoted_and_literals() {
        let mut l = line(r#"(UID 5 BODY[HEADER.FIELDS (FROM TO)]<0> "a \"q\" \\" NIL {12}"#);
        let want = [
            Token::Open,
            Token::Atom("UID".into()),
            Token::Atom("5".into()),
            Token::Atom("BODY[HEADER.FIELDS (FROM TO)]<0>".into()),
            Token::Quoted(br#"a "q" \"#.to_vec()),
            Token::Atom("NIL".into()),
            Token::Literal(12),
            Token::End,
        ];
        for w in want {
            assert_eq!(l.token().unwrap(), w);
        }
        assert_eq!(line("{3+}").token().unwrap(), Token::Literal(3));
        assert_eq!(line("~{3}").token().unwrap(), Token::Literal(3));
        // A literal marker must end its segment, and hold a number.
        assert!(line("{3} x").token().is_err());
        assert!(line("{}").token().is_err());
        assert!(line("{99999999999999999999}").token().is_err());
        assert!(line("\"open").token().is_err());
    }

    #[test]
    fn skip_value_is_bounded() {
        let deep = format!("{}{}", "(".repeat(MAX_DEPTH + 1), ")".repeat(MAX_DEPTH + 1));
        assert!(line(&deep).skip_value(0).is_err());
        let mut ok = line("(a (b c) \"d\") rest");
        assert_eq!(ok.skip_value(0).unwrap(), None);
        assert_eq!(ok.token().unwrap(), Token::Atom("rest".into()));
        assert_eq!(line("(a {5}").skip_value(0).unwrap(), Some((1, 5)));
        assert!(line("(a").skip_value(0).is_err());
    }

    #[test]
    fn arguments_are_atoms_quoted_or_literals() {
        assert_eq!(astring(b"alice"), Encoded::Inline("alice".into()));
        assert_eq!(
            astring(b"a b\"c\\"),
            Encoded::Inline(r#""a b\"c\\""#.into())
        );
        assert_eq!(astring(b""), Encoded::Inline("\"\"".into()));
        assert_eq!(
            astring("pässword".as_bytes()),
            Encoded::Literal("pässword".into())
        );
        assert_eq!(astring(b"a\r\nb"), Encoded::Literal(b"a\r\nb".to_vec()));
        assert_eq!(mailbox_name("INBOX"), "INBOX");
        assert_eq!(mailbox_name("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(mailbox_name("A&B"), "A&-B");
        assert_eq!(mailbox_name("台北"), "&U,BTFw-");
    }

    #[test]
    fn uid_sets_join_runs_and_split_by_length() {
        let sets = uid_sets(&[1, 2, 3, 5, 7, 8], 100);
        assert_eq!(sets, vec![("1:3,5,7:8".to_string(), 0..6)]);
        let many: Vec<u32> = (0..100).map(|i| i * 2).collect();
        let sets = uid_sets(&many, 20);
        assert!(sets.iter().all(|(s, _)| s.len() <= 20));
        let joined: Vec<u32> = sets
            .iter()
            .flat_map(|(s, _)| parse_set(s, 1000).unwrap())
            .collect();
        assert_eq!(joined, many);
        assert_eq!(sets.last().unwrap().1.end, 100);
        assert_eq!(parse_set("1:3,9", 10), Some(vec![1, 2, 3, 9]));
        assert_eq!(parse_set("1:4294967295", 1000), None);
    }

    #[test]
    fn literal_reader_turns_crlf_into_lf_at_any_read_size() {
        let wire = b"a\r\nb\rc\nd\r\r\n\r\nend\r";
        let want = b"a\nb\rc\nd\r\n\nend\r";
        for sizes in [&[1usize][..], &[2], &[1, 3, 1, 2], &[64]] {
            for chunk in [1usize, 2, 3, 64] {
                let mut data = wire.to_vec();
                data.extend_from_slice(b")\r\nNEXT");
                let mut r = io::BufReader::with_capacity(chunk, &data[..]);
                let mut lit = LiteralReader::new(&mut r, wire.len() as u64, None);
                let got = read_in_sizes(&mut lit, sizes);
                assert_eq!(got, want, "sizes {sizes:?} chunk {chunk}");
                assert!(lit.is_complete());
                assert_eq!(lit.bytes + lit.decoder.line_ends(), wire.len() as u64);
                let mut rest = String::new();
                io::Read::read_to_string(&mut r, &mut rest).unwrap();
                assert_eq!(rest, ")\r\nNEXT");
            }
        }
    }

    #[test]
    fn literal_reader_stops_at_the_limit_and_reports_eof() {
        let data = b"0123456789".to_vec();
        let mut r = io::BufReader::new(&data[..]);
        let mut lit = LiteralReader::new(&mut r, 10, Some(4));
        let mut out = Vec::new();
        assert!(io::Read::read_to_end(&mut lit, &mut out).is_err());
        assert!(lit.over_limit);
        lit.drain().unwrap();
        assert!(lit.is_complete());

        let mut r = io::BufReader::new(&b"short"[..]);
        let mut lit = LiteralReader::new(&mut r, 10, None);
        let mut out = Vec::new();
        let e = io::Read::read_to_end(&mut lit, &mut out).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(lit.net_failure, Some(io::ErrorKind::UnexpectedEof));
    }
}
