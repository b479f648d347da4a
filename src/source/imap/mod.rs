//! IMAP client for fetching (RFC 3501 IMAP4rev1, read by IMAP4rev2 servers
//! too; RFC 2595 STARTTLS, 4959 SASL-IR, 2971 ID, 7888 LITERAL+/-, 4315
//! UIDPLUS).
//!
//! Built like the POP3 client: a [`Client`] is connected but not logged in
//! (CAPABILITY, STARTTLS, login); logging in yields a [`Session`], the only
//! thing that can select a folder, list, fetch and delete. One command is
//! outstanding at a time and every response is read to its tagged end, so
//! client and server stay in step by construction: tags frame the
//! commands, literal lengths frame the messages.
//!
//! A message is fetched as the literal of `BODY.PEEK[]` (never sets `\Seen`)
//! and streamed to the caller through a reader that turns CRLF into LF, in
//! fixed buffers: it never sits whole in memory. Many messages go in one
//! `UID FETCH`; whatever else the server says in between (other messages'
//! FETCH, EXPUNGE, EXISTS, FLAGS) is read and never taken for a body.
//!
//! The session speaks in the types of the shared source interface
//! ([`Entry`], [`Fetched`], [`Message`]); [`Folder`] (one selected folder
//! with the account's IMAP settings) is the [`crate::source::Source`] the
//! engine drives.

mod append;
pub(crate) mod codec;
mod folder;
pub mod idle;

pub use append::{AppendUid, Appending};

pub use folder::Folder;
#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufReader, Read};

use crate::config::secret::Secret;
use crate::error::{Error, ExitKind, Result};
use crate::net::{Stream, TlsContext, Transport, Upgrade};
use crate::source::pop3::auth::{self, AuthMethod};
use crate::source::pop3::codec::{read_line, LineError, RespCode};
use crate::ui::term;
use codec::{
    parse_head, Capabilities, Code, Encoded, Head, Line, LiteralReader, Status, StatusKind, Token,
};

/// Read buffer: large enough for bulk fetch throughput.
const READ_BUFFER: usize = 128 * 1024;
/// Longest UID set in one command: servers accept command lines of 8 KiB
/// at least (RFC 7162 §4 recommends that much), and a few hundred messages
/// per command already hide the round trip.
const MAX_SET_LEN: usize = 4000;
/// Most messages a listing may hold (as POP3's listing bound).
const MAX_LISTING_ENTRIES: usize = crate::source::pop3::codec::MAX_LISTING_ENTRIES;
/// Most untagged responses to one command that is not a listing or fetch:
/// a server that never sends the tagged end is not answering.
const MAX_UNTAGGED: usize = 100_000;
/// What to do when a server says yes to STARTTLS and then cannot start it.
/// IMAP's upgrade to TLS, for what to say when it fails.
const STARTTLS: Upgrade = Upgrade {
    verb: "STARTTLS",
    tls_port: 993,
};

/// Largest literal LITERAL- (RFC 7888) lets us send without waiting.
const LITERAL_MINUS_MAX: usize = 4096;

// The listing's ids are `UIDVALIDITY/UID` (SPEC §8: the `uidl` shown for
// IMAP messages); handles are UIDs; sizes are RFC822.SIZE, the server's
// word, never trusted for framing.
pub use crate::source::{Entry, Fetched, Message, Sink};

/// The folder selected, as SELECT/EXAMINE reported it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mailbox {
    pub name: String,
    pub uidvalidity: u32,
    pub exists: u32,
    pub uidnext: Option<u32>,
    /// RFC 7162: sent when the server offers CONDSTORE (it changes with
    /// every flag change and expunge).
    pub highestmodseq: Option<u64>,
    pub read_only: bool,
}

/// One part of a command line.
#[derive(Debug, Clone)]
enum Part {
    /// Already encoded (atom, number, quoted string, list).
    Text(String),
    /// An encoded argument that is a secret: `***` in traces.
    Secret(String),
    /// A literal, sent with `{n}` (waiting for `+`) or `{n+}`.
    Literal { data: Vec<u8>, secret: bool },
}

impl Part {
    fn arg(s: &str) -> Part {
        match codec::astring(s.as_bytes()) {
            Encoded::Inline(t) => Part::Text(t),
            Encoded::Literal(data) => Part::Literal {
                data,
                secret: false,
            },
        }
    }

    fn secret(s: &Secret) -> Part {
        match codec::astring(s.expose().as_bytes()) {
            Encoded::Inline(t) => Part::Secret(t),
            Encoded::Literal(data) => Part::Literal { data, secret: true },
        }
    }
}

/// A command as the `-vv` trace shows it: every secret is `***`.
fn shown(parts: &[Part]) -> String {
    let shown: Vec<String> = parts
        .iter()
        .map(|p| match p {
            Part::Text(t) => t.clone(),
            Part::Secret(_) | Part::Literal { secret: true, .. } => "***".into(),
            Part::Literal { data, .. } => {
                format!("{{{}}} {}", data.len(), codec::printable(data, 60))
            }
        })
        .collect();
    shown.join(" ")
}

/// Rejects an argument that cannot be sent at all.
fn check_arg(what: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.bytes().any(|b| b == 0) {
        return Err(Error::config(format!(
            "{what} must be non-empty and must not contain NUL"
        )));
    }
    Ok(())
}

/// Where in the dialogue a refusal came: it decides the exit class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Greeting,
    Auth,
    /// SELECT/EXAMINE: a plain NO means the folder cannot be opened
    /// (Dovecot says "Mailbox doesn't exist" without `[NONEXISTENT]`).
    Select,
    Transaction,
}

/// The error for a `NO`, `BAD` or `BYE`, keeping the server's words.
fn refused(host: &str, what: &str, phase: Phase, status: &Status) -> Error {
    let code = status.code.as_ref();
    let kind = match (code, status.kind, phase) {
        (Some(c), _, _) if c.is_temporary() => ExitKind::TempFail,
        (Some(c), _, _) if c.is_auth() => ExitKind::NoPerm,
        (Some(Code::Nonexistent), _, _) => ExitKind::Config,
        (_, StatusKind::Bad, _) => ExitKind::Protocol,
        (_, StatusKind::Bye, Phase::Greeting) => ExitKind::Unavailable,
        (_, StatusKind::Bye, _) => ExitKind::TempFail,
        (_, _, Phase::Greeting) => ExitKind::Unavailable,
        (_, _, Phase::Auth) => ExitKind::NoPerm,
        (_, _, Phase::Select) => ExitKind::Config,
        (_, _, Phase::Transaction) => ExitKind::Protocol,
    };
    let hint = match (code, phase) {
        (Some(Code::InUse), _) => " (another client is using the mailbox; try again later)",
        (Some(Code::Unavailable | Code::ServerBug), _) => {
            " (a temporary problem on the server; try again later)"
        }
        (Some(Code::Limit), _) => {
            " (the server's limit for this account was reached; try again later)"
        }
        (Some(Code::Nonexistent), _) | (None, Phase::Select) => {
            " (check `folders`: the server cannot open this folder)"
        }
        (Some(c), _) if c.is_auth() => " (authentication failed: check `user` and the password)",
        (None, Phase::Auth) if status.kind == StatusKind::No => {
            " (authentication failed: check `user` and the password)"
        }
        _ => "",
    };
    let resp_code = code.map(|c| match c {
        Code::InUse => RespCode::InUse,
        Code::AuthenticationFailed => RespCode::Auth,
        Code::Unavailable => RespCode::SysTemp,
        other => RespCode::Other(other.name()),
    });
    Error::refused(
        kind,
        format!(
            "{host}: the server refused {what}: {}{hint}",
            status.describe()
        ),
        resp_code,
        status.text.clone(),
    )
}

/// The byte stream with its read buffer, the current response segment, the
/// tag counter and what untagged responses told us.
struct Connection<S> {
    reader: BufReader<S>,
    line: Line,
    out: Vec<u8>,
    trace: Option<String>,
    host: String,
    next_tag: u32,
    /// LITERAL+ (any size) or LITERAL- (small ones) without waiting.
    literal_plus: bool,
    literal_minus: bool,
    /// The server's BYE, if it said one: the reason the connection ends.
    bye: Option<Status>,
    /// Sequence number - 1 → UID (0: unknown), kept through EXPUNGE and
    /// EXISTS; places a body that comes before its UID.
    seq_uids: Vec<u32>,
    exists: u32,
    /// Texts the server marked `[ALERT]`: RFC 3501 §7.1 wants them shown
    /// to the user (at most [`MAX_ALERTS`], escaped).
    alerts: Vec<String>,
}

/// Most `[ALERT]` texts kept between two `take_alerts`.
const MAX_ALERTS: usize = 16;

impl<S: Transport> Connection<S> {
    fn new(stream: S, host: &str, trace: Option<String>) -> Connection<S> {
        Connection {
            reader: BufReader::with_capacity(READ_BUFFER, stream),
            line: Line::default(),
            out: Vec::with_capacity(4096),
            trace,
            host: host.to_string(),
            next_tag: 1,
            literal_plus: false,
            literal_minus: false,
            bye: None,
            seq_uids: Vec::new(),
            exists: 0,
            alerts: Vec::new(),
        }
    }

    fn net_error(&self, what: &str, e: io::Error) -> Error {
        let kind = ExitKind::of_io(&e);
        let msg = match (e.kind(), &self.bye) {
            (io::ErrorKind::UnexpectedEof, Some(bye)) => format!(
                "{}: the server ended the session while {what}: {}",
                self.host,
                bye.describe()
            ),
            (io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock, _) => format!(
                "{}: timed out {what} (raise `timeout` if the server is slow)",
                self.host
            ),
            (io::ErrorKind::UnexpectedEof, None) => {
                format!(
                    "{}: the server closed the connection while {what}",
                    self.host
                )
            }
            _ => format!("{}: connection failed while {what}", self.host),
        };
        Error::transport(kind, msg, e)
    }

    fn protocol(&self, what: &str, why: impl std::fmt::Display) -> Error {
        Error::new(
            ExitKind::Protocol,
            format!("{}: protocol error while {what}: {why}", self.host),
        )
    }

    fn line_error(&self, what: &str, e: LineError) -> Error {
        match e {
            LineError::Io(e) => self.net_error(what, e),
            LineError::Eof => self.net_error(what, io::ErrorKind::UnexpectedEof.into()),
            LineError::TooLong => self.protocol(
                what,
                format!("a line longer than {} KiB", codec::MAX_LINE / 1024),
            ),
            LineError::BareLf => self.protocol(
                what,
                "the server ends lines with a bare LF; IMAP requires CRLF",
            ),
            LineError::Garbage(g) => self.protocol(what, g),
        }
    }

    /// Reads the next segment of the response into `line`.
    fn read_segment(&mut self, what: &str) -> Result<()> {
        let res = read_line(&mut self.reader, &mut self.line.buf);
        self.line.reset();
        if let Some(label) = &self.trace {
            eprintln!("{label} < {}", codec::printable(&self.line.buf, 200));
        }
        res.map_err(|e| self.line_error(what, e))
    }

    /// Reads the next response's first segment and its head.
    fn head(&mut self, what: &str) -> Result<Head> {
        self.read_segment(what)?;
        let head = parse_head(&mut self.line).map_err(|m| self.protocol(what, m.0))?;
        let status = match &head {
            Head::Status(s) | Head::Tagged(_, s) => Some(s),
            _ => None,
        };
        if let Some(s) = status {
            if s.code == Some(Code::Alert) && self.alerts.len() < MAX_ALERTS {
                self.alerts.push(s.text.clone());
            }
            if s.kind == StatusKind::Bye {
                self.bye = Some(s.clone());
            }
        }
        Ok(head)
    }

    fn token(&mut self, what: &str) -> Result<Token> {
        self.line.token().map_err(|m| self.protocol(what, m.0))
    }

    /// Drains `n` literal bytes and reads the segment after them.
    fn drain_literal(&mut self, n: u64, what: &str) -> Result<()> {
        if let Some(label) = &self.trace {
            eprintln!("{label} < ({n} literal bytes skipped)");
        }
        let copied = io::copy(&mut (&mut self.reader).take(n), &mut io::sink())
            .map_err(|e| self.net_error(what, e))?;
        if copied < n {
            return Err(self.net_error(what, io::ErrorKind::UnexpectedEof.into()));
        }
        self.read_segment(what)
    }

    /// Reads a literal of at most [`codec::MAX_SMALL_LITERAL`] bytes into
    /// memory, then the segment after it.
    fn small_literal(&mut self, n: u64, what: &str) -> Result<Vec<u8>> {
        if n > codec::MAX_SMALL_LITERAL {
            return Err(self.protocol(
                what,
                format!(
                    "a literal of {n} bytes where at most {} were expected",
                    codec::MAX_SMALL_LITERAL
                ),
            ));
        }
        let mut data = vec![0u8; n as usize];
        self.reader
            .read_exact(&mut data)
            .map_err(|e| self.net_error(what, e))?;
        if let Some(label) = &self.trace {
            eprintln!("{label} < ({n} literal bytes)");
        }
        self.read_segment(what)?;
        Ok(data)
    }

    /// Reads the rest of the current response, whatever it holds.
    fn skip_response(&mut self, what: &str) -> Result<()> {
        let mut depth = 0;
        let mut literals = 0;
        loop {
            match self.line.skip_value(depth) {
                Ok(None) => {
                    depth = 0;
                    if self.line.peek().is_none() {
                        return Ok(());
                    }
                }
                Ok(Some((d, n))) => {
                    literals += 1;
                    if literals > codec::MAX_LITERALS {
                        return Err(self.protocol(
                            what,
                            format!("a response with more than {} literals", codec::MAX_LITERALS),
                        ));
                    }
                    depth = d;
                    self.drain_literal(n, what)?;
                }
                // Free text in a response we do not know (a server
                // extension) need not be tokens: only a literal at the end
                // of the segment continues it.
                Err(_) => {
                    let rest = &self.line.buf;
                    if let Some(n) = trailing_literal(rest) {
                        literals += 1;
                        if literals > codec::MAX_LITERALS {
                            return Err(self.protocol(what, "too many literals"));
                        }
                        self.drain_literal(n, what)?;
                        depth = 0;
                    } else {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Untagged responses any command may bring: message counts, and BYE.
    /// Returns true when it read the whole response.
    fn common_untagged(&mut self, head: &Head, what: &str) -> Result<bool> {
        match head {
            Head::Numbered(n, kind) if kind == "EXISTS" => {
                let n = *n as usize;
                if n > MAX_LISTING_ENTRIES {
                    return Err(self.protocol(what, format!("a folder of {n} messages")));
                }
                self.exists = n as u32;
                self.seq_uids.resize(n, 0);
                Ok(true)
            }
            Head::Numbered(n, kind) if kind == "EXPUNGE" => {
                let i = *n as usize;
                if i >= 1 && i <= self.seq_uids.len() {
                    self.seq_uids.remove(i - 1);
                }
                self.exists = self.exists.saturating_sub(1);
                Ok(true)
            }
            Head::Status(_) => Ok(true),
            _ => Ok(false),
        }
    }

    fn tag(&mut self) -> String {
        let tag = format!("A{:04}", self.next_tag);
        self.next_tag += 1;
        tag
    }

    /// Sends a command; synchronising literals wait for the server's `+`.
    /// Returns the tag. A tagged refusal instead of `+` is returned as the
    /// command's final status.
    fn send(&mut self, parts: &[Part], what: &str) -> Result<std::result::Result<String, Status>> {
        let tag = self.tag();
        if let Some(label) = &self.trace {
            eprintln!("{label} > {tag} {}", shown(parts));
        }
        self.out.clear();
        self.out.extend_from_slice(tag.as_bytes());
        for part in parts {
            self.out.push(b' ');
            match part {
                Part::Text(t) | Part::Secret(t) => self.out.extend_from_slice(t.as_bytes()),
                Part::Literal { data, .. } => {
                    let plus = self.literal_plus
                        || (self.literal_minus && data.len() <= LITERAL_MINUS_MAX);
                    let marker = if plus {
                        format!("{{{}+}}\r\n", data.len())
                    } else {
                        format!("{{{}}}\r\n", data.len())
                    };
                    self.out.extend_from_slice(marker.as_bytes());
                    if !plus {
                        self.flush(what)?;
                        loop {
                            match self.head(what)? {
                                Head::Continue(_) => break,
                                Head::Tagged(t, status) if t == tag => return Ok(Err(status)),
                                Head::Tagged(t, _) => {
                                    return Err(self.protocol(
                                        what,
                                        format!(
                                            "a reply tagged {}",
                                            codec::printable(t.as_bytes(), 40)
                                        ),
                                    ))
                                }
                                other => {
                                    if !self.common_untagged(&other, what)? {
                                        self.skip_response(what)?;
                                    }
                                }
                            }
                        }
                    }
                    self.out.extend_from_slice(data);
                }
            }
        }
        self.out.extend_from_slice(b"\r\n");
        self.flush(what)?;
        Ok(Ok(tag))
    }

    fn flush(&mut self, what: &str) -> Result<()> {
        let stream = self.reader.get_mut();
        let res = stream.write_all(&self.out).and_then(|_| stream.flush());
        self.out.clear();
        res.map_err(|e| self.net_error(&format!("sending {what}"), e))
    }

    /// Reads responses up to the tagged one. `untagged` sees each untagged
    /// response first and returns whether it read all of it.
    fn finish(
        &mut self,
        tag: &str,
        what: &str,
        untagged: &mut dyn FnMut(&mut Connection<S>, &Head) -> Result<bool>,
    ) -> Result<Status> {
        let mut count = 0usize;
        loop {
            let head = self.head(what)?;
            match head {
                Head::Tagged(t, status) => {
                    if t != tag {
                        return Err(self.protocol(
                            what,
                            format!(
                                "a reply tagged \"{}\", expected \"{tag}\"",
                                codec::printable(t.as_bytes(), 40)
                            ),
                        ));
                    }
                    return Ok(status);
                }
                Head::Continue(_) => {
                    return Err(self.protocol(what, "an unexpected `+` continuation"));
                }
                head => {
                    count += 1;
                    if count > MAX_UNTAGGED.max(2 * MAX_LISTING_ENTRIES) {
                        return Err(self.protocol(what, "an endless stream of untagged responses"));
                    }
                    if !untagged(self, &head)? && !self.common_untagged(&head, what)? {
                        self.skip_response(what)?;
                    }
                }
            }
        }
    }

    /// Sends a command and reads it to its end; anything but `OK` is an error.
    fn run(
        &mut self,
        parts: &[Part],
        what: &str,
        phase: Phase,
        untagged: &mut dyn FnMut(&mut Connection<S>, &Head) -> Result<bool>,
    ) -> Result<Status> {
        let status = match self.send(parts, what)? {
            Ok(tag) => self.finish(&tag, what, untagged)?,
            Err(status) => status,
        };
        if status.kind != StatusKind::Ok {
            return Err(refused(&self.host, what, phase, &status));
        }
        Ok(status)
    }

    /// Reads the atoms of a `CAPABILITY` response.
    fn capability_response(&mut self, what: &str) -> Result<Capabilities> {
        let mut names = Vec::new();
        loop {
            match self.token(what)? {
                Token::Atom(a) => {
                    if names.len() < 1000 {
                        names.push(a);
                    }
                }
                Token::End => break,
                _ => return Err(self.protocol(what, "a CAPABILITY response with a non-atom")),
            }
        }
        Ok(Capabilities::from_names(names))
    }

    fn capability(&mut self, phase: Phase) -> Result<Capabilities> {
        let mut caps = None;
        let status = self.run(
            &[Part::Text("CAPABILITY".into())],
            "CAPABILITY",
            phase,
            &mut |conn, head| {
                if matches!(head, Head::Data(d) if d == "CAPABILITY") {
                    caps = Some(conn.capability_response("CAPABILITY")?);
                    return Ok(true);
                }
                Ok(false)
            },
        )?;
        let caps = match (caps, status.code) {
            (Some(c), _) => c,
            (None, Some(Code::Capability(names))) => Capabilities::from_names(names),
            (None, _) => {
                return Err(self.protocol("CAPABILITY", "the server listed no capabilities"))
            }
        };
        self.note_caps(&caps);
        Ok(caps)
    }

    fn note_caps(&mut self, caps: &Capabilities) {
        self.literal_plus = caps.has("LITERAL+");
        self.literal_minus = caps.has("LITERAL-");
    }
}

/// A literal marker at the very end of a segment (`{n}`, `{n+}`).
fn trailing_literal(line: &[u8]) -> Option<u64> {
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = &body[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Connected, not logged in.
pub struct Client<S = Stream> {
    conn: Connection<S>,
    greeting: Status,
    capa: Capabilities,
}

impl<S: Transport> Client<S> {
    /// Reads the greeting: `OK` (log in next), `PREAUTH` (already logged
    /// in), or `BYE` (refused).
    pub fn new(stream: S, host: &str, trace: Option<String>) -> Result<Client<S>> {
        let mut conn = Connection::new(stream, host, trace);
        let what = "the connection (greeting)";
        let status = match conn.head(what)? {
            Head::Status(s) => s,
            _ => return Err(conn.protocol(what, "expected `* OK`, `* PREAUTH` or `* BYE`")),
        };
        match status.kind {
            StatusKind::Ok | StatusKind::Preauth => {}
            _ => return Err(refused(host, what, Phase::Greeting, &status)),
        }
        let capa = match &status.code {
            Some(Code::Capability(names)) => Capabilities::from_names(names.clone()),
            _ => Capabilities::default(),
        };
        conn.note_caps(&capa);
        Ok(Client {
            conn,
            greeting: status,
            capa,
        })
    }

    pub fn greeting(&self) -> &str {
        &self.greeting.text
    }

    /// What the server marked `[ALERT]` so far (for the user to see),
    /// forgotten once taken.
    pub fn take_alerts(&mut self) -> Vec<String> {
        std::mem::take(&mut self.conn.alerts)
    }

    /// The server greeted with PREAUTH: the connection is logged in already.
    pub fn is_preauth(&self) -> bool {
        self.greeting.kind == StatusKind::Preauth
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.capa
    }

    pub fn is_tls(&self) -> bool {
        self.conn.reader.get_ref().is_tls()
    }

    pub fn stream(&self) -> &S {
        self.conn.reader.get_ref()
    }

    pub fn host(&self) -> &str {
        &self.conn.host
    }

    /// Asks CAPABILITY (unless the greeting already told).
    pub fn refresh_capabilities(&mut self) -> Result<&Capabilities> {
        self.capa = self.conn.capability(Phase::Greeting)?;
        Ok(&self.capa)
    }

    /// Upgrades the connection with STARTTLS and asks CAPABILITY again
    /// (what was said in clear may have been forged). Never a silent
    /// downgrade: a server that does not offer STARTTLS, refuses it, or
    /// greeted with PREAUTH (a connection logged in before TLS can start)
    /// is refused.
    pub fn starttls(mut self, tls: &TlsContext) -> Result<Client<S>> {
        let host = self.conn.host.clone();
        if self.is_preauth() {
            return Err(Error::new(
                ExitKind::NoPerm,
                format!(
                    "{host}: the server greeted with PREAUTH, so STARTTLS cannot start and nothing \
                     would be encrypted; use tls = \"implicit\" with the server's TLS port (usually 993)"
                ),
            ));
        }
        if !self.capa.known {
            self.refresh_capabilities()?;
        }
        if !self.capa.has("STARTTLS") {
            return Err(Error::new(
                ExitKind::NoPerm,
                format!(
                    "{host}: the server does not offer STARTTLS, so tls = \"starttls\" cannot protect \
                     the password; use tls = \"implicit\" with the server's TLS port (usually 993) if it has one"
                ),
            ));
        }
        let what = "starting TLS (STARTTLS)";
        let tag = match self.conn.send(&[Part::Text("STARTTLS".into())], what)? {
            Ok(tag) => tag,
            Err(s) => return Err(refused(&host, what, Phase::Auth, &s)),
        };
        // Untagged responses before the OK are allowed but would have been
        // read in clear: ignore them.
        let status = self.conn.finish(&tag, what, &mut |_, _| Ok(false))?;
        if status.kind != StatusKind::Ok {
            return Err(Error::new(
                ExitKind::NoPerm,
                format!(
                    "{host}: the server refused STARTTLS ({}), so tls = \"starttls\" cannot protect the password",
                    status.describe()
                ),
            ));
        }
        // Bytes already buffered were sent before TLS started and could
        // have been injected by an attacker (CVE-2011-0411 class): refuse.
        if !self.conn.reader.buffer().is_empty() {
            // Shown, never acted on: Courier sends `NO STARTTLS failed: …`
            // here when its own TLS cannot start, which says what to fix.
            let buffered = self.conn.reader.buffer();
            let line = buffered.split(|&b| b == b'\n').next().unwrap_or(buffered);
            let said = codec::printable(line.trim_ascii_end(), 200);
            return Err(Error::new(
                ExitKind::Protocol,
                format!(
                    "{host}: the server sent data after its STARTTLS reply ({said}); refusing to \
                     continue. {}",
                    STARTTLS.broken_advice()
                ),
            ));
        }
        let Connection {
            reader,
            trace,
            next_tag,
            ..
        } = self.conn;
        let stream = reader.into_inner().start_tls(tls, &host, STARTTLS)?;
        let mut conn = Connection::new(stream, &host, trace);
        conn.next_tag = next_tag;
        let mut client = Client {
            conn,
            greeting: self.greeting,
            capa: Capabilities::default(),
        };
        client.refresh_capabilities()?;
        Ok(client)
    }

    /// Resolves `auth = "auto"` against what the server offers. LOGIN (the
    /// IMAP command) plays the part of POP3's USER/PASS.
    pub fn choose_auth(&self, method: AuthMethod) -> Result<AuthMethod> {
        let host = &self.conn.host;
        let sasl = self.capa.sasl();
        match method {
            AuthMethod::Apop => Err(Error::config(format!(
                "{host}: auth = \"apop\" is a POP3 mechanism; choose another `auth` for IMAP"
            ))),
            AuthMethod::Auto => {
                let offer = auth::Offer {
                    sasl: &sasl,
                    apop: false,
                    user: !self.capa.has("LOGINDISABLED"),
                    encrypted: self.is_tls(),
                };
                auth::choose(&offer).ok_or_else(|| {
                    Error::new(
                        ExitKind::NoPerm,
                        format!(
                            "{host}: the server offers no login method popfetch can use \
                             (LOGINDISABLED, SASL: {}); servers often offer more once the connection \
                             is encrypted: set tls = \"starttls\" or \"implicit\"",
                            sasl.join(" ")
                        ),
                    )
                })
            }
            AuthMethod::User if self.capa.has("LOGINDISABLED") => Err(Error::new(
                ExitKind::NoPerm,
                format!(
                    "{host}: the server disables LOGIN on this connection (LOGINDISABLED); \
                     use TLS (tls = \"starttls\" or \"implicit\") or a SASL `auth` it offers ({})",
                    sasl.join(" ")
                ),
            )),
            m => {
                if let Some(mech) = m.sasl_name() {
                    if self.capa.known && !sasl.iter().any(|s| s == mech) {
                        return Err(Error::new(
                            ExitKind::NoPerm,
                            format!(
                                "{host}: the server does not offer {mech} (it offers: {}); set auth = \"auto\"",
                                if sasl.is_empty() { "no SASL mechanism".to_string() } else { sasl.join(" ") }
                            ),
                        ));
                    }
                }
                Ok(m)
            }
        }
    }

    /// Logs in; on success the client becomes a session. After PREAUTH
    /// nothing is sent: the server logged us in already.
    pub fn login(mut self, method: AuthMethod, user: &str, secret: &Secret) -> Result<Session<S>> {
        let mut after: Option<Capabilities> = None;
        if !self.is_preauth() {
            check_arg("user", user)?;
            if !self.capa.known {
                self.refresh_capabilities()?;
            }
            let method = self.choose_auth(method)?;
            let status = match method {
                AuthMethod::User => {
                    check_arg("the password", secret.expose())?;
                    self.conn.run(
                        &[
                            Part::Text("LOGIN".into()),
                            Part::arg(user),
                            Part::secret(secret),
                        ],
                        "the login (LOGIN)",
                        Phase::Auth,
                        &mut |_, _| Ok(false),
                    )?
                }
                AuthMethod::Plain => {
                    let initial = auth::plain_response(user, secret);
                    self.sasl("PLAIN", Some(initial), &mut |_| Ok(None))?
                }
                AuthMethod::Login => {
                    let answers = [
                        Secret::new(auth::b64(user.as_bytes())),
                        Secret::new(auth::b64(secret.expose().as_bytes())),
                    ];
                    let mut step = 0;
                    self.sasl("LOGIN", None, &mut |_| {
                        let a = answers.get(step).cloned();
                        step += 1;
                        Ok(a)
                    })?
                }
                AuthMethod::CramMd5 => self.sasl("CRAM-MD5", None, &mut |challenge| {
                    Ok(Some(auth::cram_md5_response(user, secret, challenge)))
                })?,
                AuthMethod::XOAuth2 => {
                    let initial = auth::xoauth2_response(user, secret);
                    self.sasl("XOAUTH2", Some(initial), &mut |_| Ok(None))?
                }
                AuthMethod::OAuthBearer => {
                    let initial = auth::oauthbearer_response(user, secret);
                    self.sasl("OAUTHBEARER", Some(initial), &mut |_| Ok(None))?
                }
                AuthMethod::Auto | AuthMethod::Apop => unreachable!("resolved by choose_auth"),
            };
            if let Some(Code::Capability(names)) = status.code {
                after = Some(Capabilities::from_names(names));
            }
        }
        // Servers advertise more once authenticated (RFC 3501 §6.2.2).
        let capa = match after {
            Some(c) => {
                self.conn.note_caps(&c);
                c
            }
            None => self.conn.capability(Phase::Transaction)?,
        };
        let mut session = Session {
            conn: self.conn,
            capa,
            mailbox: None,
        };
        if session.capa.has("ID") {
            session.id()?;
        }
        Ok(session)
    }

    /// Runs `AUTHENTICATE` (RFC 3501 §6.2.2), with the initial response on
    /// the command line when the server offers SASL-IR (RFC 4959).
    fn sasl(
        &mut self,
        mech: &str,
        initial: Option<Secret>,
        respond: &mut dyn FnMut(&[u8]) -> Result<Option<Secret>>,
    ) -> Result<Status> {
        let what = format!("the login (AUTHENTICATE {mech})");
        let mut parts = vec![Part::Text("AUTHENTICATE".into()), Part::Text(mech.into())];
        let mut pending = initial;
        if self.capa.has("SASL-IR") {
            if let Some(ir) = pending.take() {
                // RFC 4959: an empty initial response is sent as `=`.
                let text = if ir.expose().is_empty() {
                    "=".to_string()
                } else {
                    ir.expose().to_string()
                };
                parts.push(Part::Secret(text));
            }
        }
        let tag = match self.conn.send(&parts, &what)? {
            Ok(tag) => tag,
            Err(s) => return Err(refused(&self.conn.host, &what, Phase::Auth, &s)),
        };
        let mut error_challenge: Option<String> = None;
        loop {
            match self.conn.head(&what)? {
                Head::Tagged(t, status) => {
                    if t != tag {
                        return Err(self.conn.protocol(
                            &what,
                            format!("a reply tagged \"{}\"", codec::printable(t.as_bytes(), 40)),
                        ));
                    }
                    if status.kind == StatusKind::Ok {
                        return Ok(status);
                    }
                    let mut err = refused(&self.conn.host, &what, Phase::Auth, &status);
                    if let Some(detail) = error_challenge {
                        err = err.context(format!("server error details: {detail}"));
                    }
                    return Err(err);
                }
                Head::Continue(challenge) => {
                    let decoded = auth::unb64(&challenge).unwrap_or_default();
                    let answer = match pending.take() {
                        Some(initial) => Some(initial),
                        None => respond(&decoded)?,
                    };
                    let line = match answer {
                        Some(a) => a,
                        None => {
                            // An error challenge (OAuth servers send JSON):
                            // keep what it says, then end the exchange
                            // (RFC 7628 §3.2.3).
                            error_challenge = Some(term::escape_controls(
                                String::from_utf8_lossy(&decoded).trim(),
                            ));
                            Secret::new(if mech == "XOAUTH2" { "" } else { "AQ==" })
                        }
                    };
                    if let Some(label) = &self.conn.trace {
                        eprintln!("{label} > ***");
                    }
                    self.conn.out.clear();
                    self.conn.out.extend_from_slice(line.expose().as_bytes());
                    self.conn.out.extend_from_slice(b"\r\n");
                    self.conn.flush(&what)?;
                }
                head => {
                    if !self.conn.common_untagged(&head, &what)? {
                        self.conn.skip_response(&what)?;
                    }
                }
            }
        }
    }

    /// Says goodbye without logging in.
    pub fn logout(mut self) {
        if let Ok(Ok(tag)) = self.conn.send(&[Part::Text("LOGOUT".into())], "LOGOUT") {
            let _ = self.conn.finish(&tag, "LOGOUT", &mut |_, _| Ok(false));
        }
    }
}

/// What one FETCH asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// `BODY.PEEK[]`, capped at the limit.
    Full(Option<u64>),
    /// `BODY.PEEK[HEADER]`.
    Header,
    /// `BODY.PEEK[HEADER] BODY.PEEK[TEXT]<0.n>`: the header and the first
    /// `lines` lines of the text, kept in memory (bounded) and given as one.
    Top(u32),
}

/// A message held in memory (a `top` preview, bounded).
struct Held {
    data: io::Cursor<Vec<u8>>,
    octets: u64,
}

impl Read for Held {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.data.read(buf)
    }
}

impl Message for Held {
    fn octets(&self) -> u64 {
        self.octets
    }
    fn over_limit(&self) -> bool {
        false
    }
}

/// A literal streaming from the connection.
struct Streamed<'a, S>(LiteralReader<'a, BufReader<S>>);

impl<S: Read> Read for Streamed<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<S: Read> Message for Streamed<'_, S> {
    fn octets(&self) -> u64 {
        self.0.bytes + self.0.decoder.line_ends()
    }
    fn over_limit(&self) -> bool {
        self.0.over_limit
    }
}

/// Most bytes of text asked for per `top` line: enough for real lines, and
/// the preview stays small.
const TOP_BYTES_PER_LINE: u64 = 1000;

/// Decodes a literal held in memory (CRLF → LF).
fn decode_held(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'\r' && data.get(i + 1) == Some(&b'\n') {
            out.push(b'\n');
            i += 2;
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

/// Logged in: the authenticated (and, after [`Session::select`], selected)
/// state.
pub struct Session<S = Stream> {
    conn: Connection<S>,
    capa: Capabilities,
    mailbox: Option<Mailbox>,
}

impl<S: Transport> Session<S> {
    pub fn capabilities(&self) -> &Capabilities {
        &self.capa
    }

    pub fn host(&self) -> &str {
        &self.conn.host
    }

    pub fn mailbox(&self) -> Option<&Mailbox> {
        self.mailbox.as_ref()
    }

    /// What the server marked `[ALERT]` since the last call (login
    /// included), for the user to see.
    pub fn take_alerts(&mut self) -> Vec<String> {
        std::mem::take(&mut self.conn.alerts)
    }

    /// RFC 2971 ID: some providers refuse service to clients that do not
    /// say who they are. A refusal is no reason to stop.
    fn id(&mut self) -> Result<()> {
        let parts = [
            Part::Text("ID".into()),
            Part::Text(format!(
                "(\"name\" \"popfetch\" \"version\" \"{}\")",
                env!("CARGO_PKG_VERSION")
            )),
        ];
        let tag = match self.conn.send(&parts, "ID")? {
            Ok(tag) => tag,
            Err(_) => return Ok(()),
        };
        let status = self.conn.finish(&tag, "ID", &mut |_, _| Ok(false))?;
        if status.kind == StatusKind::Bad {
            return Err(refused(&self.conn.host, "ID", Phase::Transaction, &status));
        }
        Ok(())
    }

    /// SELECT (read-write) or EXAMINE (`read_only`) a folder: its
    /// UIDVALIDITY, message count and next UID.
    pub fn select(&mut self, folder: &str, read_only: bool) -> Result<&Mailbox> {
        check_arg("folder", folder)?;
        let verb = if read_only { "EXAMINE" } else { "SELECT" };
        let what = format!("{verb} {folder:?}");
        self.mailbox = None;
        self.conn.seq_uids.clear();
        self.conn.exists = 0;
        let name = codec::mailbox_name(folder);
        let mut uidvalidity = None;
        let mut uidnext = None;
        let mut highestmodseq = None;
        // `(CONDSTORE)` asks for HIGHESTMODSEQ, which tells a flag change
        // that leaves the counts as they were (RFC 7162 §3.1.8).
        let mut parts = vec![Part::Text(verb.into()), Part::arg(&name)];
        if self.capa.has("CONDSTORE") {
            parts.push(Part::Text("(CONDSTORE)".into()));
        }
        let status = self.conn.run(&parts, &what, Phase::Select, &mut |_, head| {
            if let Head::Status(s) = head {
                match s.code {
                    Some(Code::UidValidity(v)) => uidvalidity = Some(v),
                    Some(Code::UidNext(n)) => uidnext = Some(n),
                    Some(Code::HighestModSeq(n)) => highestmodseq = Some(n),
                    _ => {}
                }
            }
            Ok(false)
        });
        let status = match status {
            Err(e) if e.kind() == ExitKind::Config => {
                let hint = self.namespace_hint(folder);
                if hint.is_empty() {
                    return Err(e);
                }
                return Err(e.context(format!("folder {folder:?}{hint}")));
            }
            other => other?,
        };
        let uidvalidity = uidvalidity.ok_or_else(|| {
            self.conn.protocol(
                &what,
                "no UIDVALIDITY: without it popfetch cannot tell this folder's messages apart over time",
            )
        })?;
        let read_only = read_only || status.code == Some(Code::ReadOnly);
        self.mailbox = Some(Mailbox {
            name: folder.to_string(),
            uidvalidity,
            exists: self.conn.exists,
            uidnext,
            highestmodseq,
            read_only,
        });
        Ok(self.mailbox.as_ref().expect("just set"))
    }

    fn selected(&self, what: &str) -> Result<Mailbox> {
        self.mailbox.clone().ok_or_else(|| {
            Error::new(
                ExitKind::Internal,
                format!("{}: {what} before a folder was selected", self.conn.host),
            )
        })
    }

    /// The selected folder: every message's UID and size, by UID.
    pub fn listing(&mut self) -> Result<Vec<Entry>> {
        let mb = self.selected("listing")?;
        if self.conn.exists == 0 {
            return Ok(Vec::new());
        }
        let what = "listing the folder (UID FETCH 1:* (UID RFC822.SIZE))";
        let mut found: BTreeMap<u32, u64> = BTreeMap::new();
        self.conn.run(
            &[Part::Text("UID FETCH 1:* (UID RFC822.SIZE)".into())],
            what,
            Phase::Transaction,
            &mut |conn, head| {
                let Head::Numbered(seq, kind) = head else {
                    return Ok(false);
                };
                if kind != "FETCH" {
                    return Ok(false);
                }
                let (uid, size) = conn.fetch_attributes(what)?;
                if let Some(uid) = uid {
                    let i = *seq as usize;
                    if (1..=MAX_LISTING_ENTRIES).contains(&i) {
                        if conn.seq_uids.len() < i {
                            conn.seq_uids.resize(i, 0);
                        }
                        conn.seq_uids[i - 1] = uid;
                    }
                    if found.len() >= MAX_LISTING_ENTRIES && !found.contains_key(&uid) {
                        return Err(conn
                            .protocol(what, format!("more than {MAX_LISTING_ENTRIES} messages")));
                    }
                    let e = found.entry(uid).or_insert(0);
                    *e = (*e).max(size.unwrap_or(0));
                }
                Ok(true)
            },
        )?;
        Ok(found
            .into_iter()
            .map(|(uid, size)| Entry {
                handle: uid,
                size,
                id: Some(format!("{}/{uid}", mb.uidvalidity)),
            })
            .collect())
    }

    /// Fetches whole messages (`BODY.PEEK[]`: no flag changes), many per
    /// command, and hands each to `sink` with its index in `handles`, in
    /// the order the server sends them. A message growing past `max_size`
    /// fails to read with [`Message::over_limit`] set. A UID the server
    /// does not return is `Refused`. If the sink fails, every pending
    /// response is still read (the session stays usable) and its error is
    /// returned.
    pub fn fetch(&mut self, handles: &[u32], max_size: Option<u64>, sink: &mut Sink) -> Result<()> {
        self.fetch_with(handles, Want::Full(max_size), sink)
    }

    /// Fetches the header block of each message (`BODY.PEEK[HEADER]`).
    /// Returns true: IMAP always can.
    pub fn headers(&mut self, handles: &[u32], sink: &mut Sink) -> Result<bool> {
        self.fetch_with(handles, Want::Header, sink)?;
        Ok(true)
    }

    /// The header and the first `lines` lines of each message's text.
    pub fn top(&mut self, handles: &[u32], lines: u32, sink: &mut Sink) -> Result<()> {
        self.fetch_with(handles, Want::Top(lines), sink)
    }

    fn fetch_with(&mut self, handles: &[u32], want: Want, sink: &mut Sink) -> Result<()> {
        self.selected("fetching")?;
        let mut index: HashMap<u32, usize> = HashMap::with_capacity(handles.len());
        for (i, &h) in handles.iter().enumerate() {
            index.entry(h).or_insert(i);
        }
        let mut done = vec![false; handles.len()];
        let mut failure: Option<Error> = None;
        let items = match want {
            Want::Full(_) => "(UID BODY.PEEK[])".to_string(),
            Want::Header => "(UID BODY.PEEK[HEADER])".to_string(),
            Want::Top(0) => "(UID BODY.PEEK[HEADER])".to_string(),
            Want::Top(n) => format!(
                "(UID BODY.PEEK[HEADER] BODY.PEEK[TEXT]<0.{}>)",
                (u64::from(n) * TOP_BYTES_PER_LINE).min(codec::MAX_SMALL_LITERAL)
            ),
        };
        let mut sorted: Vec<u32> = index.keys().copied().collect();
        sorted.sort_unstable();
        for (set, range) in codec::uid_sets(&sorted, MAX_SET_LEN) {
            if failure.is_some() {
                break;
            }
            let what = format!("UID FETCH {set} {items}");
            let what = if what.len() > 80 {
                format!("UID FETCH of {} messages", handles.len())
            } else {
                what
            };
            let tag = match self
                .conn
                .send(&[Part::Text(format!("UID FETCH {set} {items}"))], &what)?
            {
                Ok(tag) => tag,
                Err(s) => return Err(refused(&self.conn.host, &what, Phase::Transaction, &s)),
            };
            let status = self.conn.finish(&tag, &what, &mut |conn, head| {
                let Head::Numbered(seq, kind) = head else {
                    return Ok(false);
                };
                if kind != "FETCH" {
                    return Ok(false);
                }
                conn.fetch_response(*seq, want, &index, &mut done, &mut failure, sink, &what)?;
                Ok(true)
            })?;
            match status.kind {
                StatusKind::Ok => {}
                // A temporary refusal is about the server, not these
                // messages: report it (SPEC §6: 75), with the sink's error
                // first if it had one.
                _ if status.code.as_ref().is_some_and(Code::is_temporary)
                    || status.kind == StatusKind::Bad =>
                {
                    return Err(failure.unwrap_or_else(|| {
                        refused(&self.conn.host, &what, Phase::Transaction, &status)
                    }));
                }
                // RFC 3501: NO when some messages could not be fetched
                // (expunged by another client): those are refused below.
                _ => {
                    for uid in &sorted[range] {
                        let i = index[uid];
                        if failure.is_none() && !done[i] {
                            done[i] = true;
                            if let Err(e) = sink(i, Fetched::Refused(status.describe())) {
                                failure = Some(e);
                            }
                        }
                    }
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        for (i, &h) in handles.iter().enumerate() {
            if !done[i] {
                let why = if index.get(&h) == Some(&i) {
                    format!("the server did not return UID {h} (deleted by another client?)")
                } else {
                    format!("UID {h} was asked for twice")
                };
                sink(i, Fetched::Refused(why))?;
            }
        }
        Ok(())
    }

    /// Deletes: `UID STORE +FLAGS.SILENT (\Deleted)`, then `UID EXPUNGE`
    /// with UIDPLUS. Without it a plain EXPUNGE would also remove what
    /// another client marked, so it is sent only when no other message
    /// carries `\Deleted`; otherwise ours stay marked and are reported not
    /// deleted. Returns, per handle, whether it is gone.
    pub fn delete(&mut self, handles: &[u32]) -> Result<Vec<bool>> {
        let mb = self.selected("deleting")?;
        let mut gone = vec![false; handles.len()];
        if handles.is_empty() {
            return Ok(gone);
        }
        if mb.read_only {
            return Err(Error::new(
                ExitKind::Protocol,
                format!(
                    "{}: folder {:?} is read-only here, so nothing can be deleted from it",
                    self.conn.host, mb.name
                ),
            ));
        }
        let mut sorted: Vec<u32> = handles.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut marked: Vec<u32> = Vec::new();
        for (set, range) in codec::uid_sets(&sorted, MAX_SET_LEN) {
            let what = format!("UID STORE (marking {} messages deleted)", range.len());
            let res = self.conn.run(
                &[Part::Text(format!(
                    "UID STORE {set} +FLAGS.SILENT (\\Deleted)"
                ))],
                &what,
                Phase::Transaction,
                &mut |_, _| Ok(false),
            );
            match res {
                Ok(_) => marked.extend_from_slice(&sorted[range]),
                Err(e) if e.kind() == ExitKind::Protocol && e.server_reply().is_some() => {}
                Err(e) => return Err(e),
            }
        }
        if marked.is_empty() {
            return Ok(gone);
        }
        let expunged: Vec<u32> = if self.capa.has("UIDPLUS") {
            let mut ok = Vec::new();
            for (set, range) in codec::uid_sets(&marked, MAX_SET_LEN) {
                let what = format!("UID EXPUNGE ({} messages)", range.len());
                self.conn.run(
                    &[Part::Text(format!("UID EXPUNGE {set}"))],
                    &what,
                    Phase::Transaction,
                    &mut |_, _| Ok(false),
                )?;
                ok.extend_from_slice(&marked[range]);
            }
            ok
        } else {
            let flagged = self.search_deleted()?;
            if flagged.iter().all(|u| marked.binary_search(u).is_ok()) {
                self.conn.run(
                    &[Part::Text("EXPUNGE".into())],
                    "EXPUNGE",
                    Phase::Transaction,
                    &mut |_, _| Ok(false),
                )?;
                marked
            } else {
                Vec::new()
            }
        };
        for (i, h) in handles.iter().enumerate() {
            gone[i] = expunged.binary_search(h).is_ok();
        }
        Ok(gone)
    }

    /// Every UID in the folder that carries `\Deleted`.
    fn search_deleted(&mut self) -> Result<Vec<u32>> {
        self.search("DELETED")
    }

    /// The UIDs of the selected folder's messages without `\Seen`.
    pub fn unseen(&mut self) -> Result<Vec<u32>> {
        self.selected("searching")?;
        if self.conn.exists == 0 {
            return Ok(Vec::new());
        }
        let mut uids = self.search("UNSEEN")?;
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// Sets `\Seen` on messages (`UID STORE +FLAGS.SILENT (\Seen)`);
    /// whether the server accepted, per handle.
    pub fn flag_seen(&mut self, handles: &[u32]) -> Result<Vec<bool>> {
        self.store_flags(handles, "\\Seen", "marking {} messages seen")
    }

    /// `UID STORE set +FLAGS.SILENT (flag)` in sets of UIDs; a set the
    /// server refuses (NO) counts as not done, anything else fails.
    fn store_flags(&mut self, handles: &[u32], flag: &str, doing: &str) -> Result<Vec<bool>> {
        let mut done = vec![false; handles.len()];
        if handles.is_empty() {
            return Ok(done);
        }
        self.selected("storing flags")?;
        let mut sorted: Vec<u32> = handles.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut stored: Vec<u32> = Vec::new();
        for (set, range) in codec::uid_sets(&sorted, MAX_SET_LEN) {
            let what = format!(
                "UID STORE ({})",
                doing.replace("{}", &range.len().to_string())
            );
            let res = self.conn.run(
                &[Part::Text(format!(
                    "UID STORE {set} +FLAGS.SILENT ({flag})"
                ))],
                &what,
                Phase::Transaction,
                &mut |_, _| Ok(false),
            );
            match res {
                Ok(_) => stored.extend_from_slice(&sorted[range]),
                Err(e) if e.kind() == ExitKind::Protocol && e.server_reply().is_some() => {}
                Err(e) => return Err(e),
            }
        }
        for (i, h) in handles.iter().enumerate() {
            done[i] = stored.binary_search(h).is_ok();
        }
        Ok(done)
    }

    /// Moves messages to `folder`: `UID MOVE` (RFC 6851) when the server
    /// offers it, else `UID COPY` and then [`Session::delete`]. A folder
    /// the server says to create first (`[TRYCREATE]`) is created once.
    /// Returns, per handle, whether it left the selected folder.
    pub fn move_to(&mut self, handles: &[u32], folder: &str) -> Result<Vec<bool>> {
        let mb = self.selected("moving")?;
        if handles.is_empty() {
            return Ok(Vec::new());
        }
        check_arg("move_to", folder)?;
        if mb.read_only {
            return Err(Error::new(
                ExitKind::Protocol,
                format!(
                    "{}: folder {:?} is read-only here, so nothing can be moved out of it",
                    self.conn.host, mb.name
                ),
            ));
        }
        let verb = if self.capa.has("MOVE") {
            "MOVE"
        } else {
            "COPY"
        };
        let mut sorted: Vec<u32> = handles.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut created = false;
        let mut moved: Vec<u32> = Vec::new();
        for (set, range) in codec::uid_sets(&sorted, MAX_SET_LEN) {
            let what = format!("UID {verb} ({} messages to {folder:?})", range.len());
            loop {
                let parts = [
                    Part::Text(format!("UID {verb} {set}")),
                    Part::arg(&codec::mailbox_name(folder)),
                ];
                let status = match self.conn.send(&parts, &what)? {
                    Ok(tag) => self.conn.finish(&tag, &what, &mut |_, _| Ok(false))?,
                    Err(status) => status,
                };
                let try_create = matches!(&status.code, Some(Code::Other(c)) if c.eq_ignore_ascii_case("TRYCREATE"));
                match status.kind {
                    StatusKind::Ok => {
                        moved.extend_from_slice(&sorted[range.clone()]);
                        break;
                    }
                    StatusKind::No if try_create && !created => {
                        created = true;
                        self.create(folder)?;
                    }
                    StatusKind::No if !status.code.as_ref().is_some_and(Code::is_temporary) => {
                        let hint = self.namespace_hint(folder);
                        return Err(refused(&self.conn.host, &what, Phase::Transaction, &status)
                            .context(format!("check move_to = {folder:?}{hint}")));
                    }
                    _ => return Err(refused(&self.conn.host, &what, Phase::Transaction, &status)),
                }
            }
        }
        if verb == "MOVE" {
            return Ok(handles
                .iter()
                .map(|h| moved.binary_search(h).is_ok())
                .collect());
        }
        // Copied: now delete them here, as a deletion would.
        let gone = self.delete(&moved)?;
        let gone: Vec<u32> = moved
            .iter()
            .zip(gone)
            .filter(|(_, g)| *g)
            .map(|(u, _)| *u)
            .collect();
        Ok(handles
            .iter()
            .map(|h| gone.binary_search(h).is_ok())
            .collect())
    }

    /// Advice for a folder the server refused: Courier-IMAP keeps every
    /// folder under its personal namespace `INBOX.` and refuses `Archive`
    /// with a bare `NO Error in IMAP command received by server.`, while
    /// mail readers show it as `Archive`. Empty when the server has no
    /// such prefix, the name already has it, or NAMESPACE fails.
    fn namespace_hint(&mut self, folder: &str) -> String {
        if folder.eq_ignore_ascii_case("INBOX") || !self.capa.has("NAMESPACE") {
            return String::new();
        }
        let Ok(Some(prefix)) = self.personal_prefix() else {
            return String::new();
        };
        let has_prefix = folder
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(&prefix));
        if prefix.is_empty() || has_prefix {
            return String::new();
        }
        format!(" (the server keeps your folders under {prefix:?}: try \"{prefix}{folder}\")")
    }

    /// The prefix of the first personal namespace (RFC 2342) `NAMESPACE`
    /// answers, if it is a plain quoted string.
    fn personal_prefix(&mut self) -> Result<Option<String>> {
        let what = "NAMESPACE";
        let mut prefix = None;
        self.conn.run(
            &[Part::Text(what.into())],
            what,
            Phase::Transaction,
            &mut |conn, head| {
                if !matches!(head, Head::Data(kind) if kind.eq_ignore_ascii_case("NAMESPACE")) {
                    return Ok(false);
                }
                if conn.token(what)? == Token::Open && conn.token(what)? == Token::Open {
                    if let Token::Quoted(p) = conn.token(what)? {
                        if p.len() <= 100 && p.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
                            prefix = Some(String::from_utf8_lossy(&p).into_owned());
                        }
                    }
                }
                conn.skip_response(what)?;
                Ok(true)
            },
        )?;
        Ok(prefix)
    }

    /// `CREATE folder`.
    fn create(&mut self, folder: &str) -> Result<()> {
        let what = format!("CREATE {folder:?}");
        self.conn.run(
            &[
                Part::Text("CREATE".into()),
                Part::arg(&codec::mailbox_name(folder)),
            ],
            &what,
            Phase::Transaction,
            &mut |_, _| Ok(false),
        )?;
        Ok(())
    }

    /// The UIDs `UID SEARCH criteria` answers with.
    fn search(&mut self, criteria: &str) -> Result<Vec<u32>> {
        let what = format!("UID SEARCH {criteria}");
        let what = what.as_str();
        let mut uids = Vec::new();
        self.conn.run(
            &[Part::Text(what.into())],
            what,
            Phase::Transaction,
            &mut |conn, head| match head {
                Head::Data(d) if d == "SEARCH" => {
                    loop {
                        match conn.token(what)? {
                            Token::Atom(a) => match a.parse::<u32>() {
                                Ok(n) if uids.len() < MAX_LISTING_ENTRIES => uids.push(n),
                                Ok(_) => return Err(conn.protocol(what, "too many results")),
                                Err(_) => {}
                            },
                            Token::End => break,
                            _ => return Err(conn.protocol(what, "a malformed SEARCH response")),
                        }
                    }
                    Ok(true)
                }
                // IMAP4rev2 answers with ESEARCH: `(TAG "x") UID ALL 1:3`.
                Head::Data(d) if d == "ESEARCH" => {
                    let mut last_all = false;
                    loop {
                        match conn.token(what)? {
                            Token::Atom(a) if last_all => {
                                let set =
                                    codec::parse_set(&a, MAX_LISTING_ENTRIES).ok_or_else(|| {
                                        conn.protocol(what, "a malformed ESEARCH set")
                                    })?;
                                uids.extend(set);
                                last_all = false;
                            }
                            Token::Atom(a) => last_all = a.eq_ignore_ascii_case("ALL"),
                            Token::End => break,
                            Token::Literal(_) => {
                                return Err(conn.protocol(what, "a literal in ESEARCH"))
                            }
                            _ => last_all = false,
                        }
                    }
                    Ok(true)
                }
                _ => Ok(false),
            },
        )?;
        Ok(uids)
    }

    /// Ends the session with LOGOUT. Deletions happened already (UID
    /// EXPUNGE / EXPUNGE answered OK), so a connection that closes after
    /// its BYE is as good as the tagged OK.
    pub fn finish(mut self) -> Result<()> {
        let what = "LOGOUT";
        let tag = match self.conn.send(&[Part::Text("LOGOUT".into())], what)? {
            Ok(tag) => tag,
            Err(s) => return Err(refused(&self.conn.host, what, Phase::Transaction, &s)),
        };
        match self.conn.finish(&tag, what, &mut |_, _| Ok(false)) {
            Ok(s) if s.kind == StatusKind::Ok => Ok(()),
            Ok(s) => Err(refused(&self.conn.host, what, Phase::Transaction, &s)),
            Err(e) if e.is_transport() && self.conn.bye.is_some() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl<S: Transport> Connection<S> {
    /// Reads the rest of a `* n FETCH (...)` of the listing: UID and
    /// RFC822.SIZE; anything else is skipped.
    fn fetch_attributes(&mut self, what: &str) -> Result<(Option<u32>, Option<u64>)> {
        let (mut uid, mut size) = (None, None);
        if self.token(what)? != Token::Open {
            return Err(self.protocol(what, "FETCH without `(`"));
        }
        loop {
            match self.token(what)? {
                Token::Close => break,
                Token::Atom(name) => {
                    let upper = name.to_ascii_uppercase();
                    match upper.as_str() {
                        "UID" => uid = Some(self.uid(what)?),
                        "RFC822.SIZE" => size = Some(self.number(what)?),
                        _ => self.skip_item_value(what)?,
                    }
                }
                other => {
                    return Err(
                        self.protocol(what, format!("unexpected {} in FETCH", other.describe()))
                    )
                }
            }
        }
        if self.line.peek().is_some() {
            return Err(self.protocol(what, "text after the end of a FETCH response"));
        }
        Ok((uid, size))
    }

    fn number(&mut self, what: &str) -> Result<u64> {
        match self.token(what)? {
            Token::Atom(a) => a.parse::<u64>().ok().filter(|_| a.len() <= 20),
            _ => None,
        }
        .ok_or_else(|| self.protocol(what, "a number expected in FETCH"))
    }

    /// A UID: 32 bits (RFC 3501 `uniqueid`). A larger number is an error,
    /// never cut to 32 bits: `UID 4294967300` would name UID 4, and its
    /// body would be taken (and later deleted) as that message.
    fn uid(&mut self, what: &str) -> Result<u32> {
        let n = self.number(what)?;
        // RFC 3501 §2.3.1.1: a UID is a non-zero 32-bit number.
        u32::try_from(n)
            .ok()
            .filter(|&uid| uid != 0)
            .ok_or_else(|| self.protocol(what, format!("a UID out of range: {n}")))
    }

    /// Skips the value of a FETCH item, literals included.
    fn skip_item_value(&mut self, what: &str) -> Result<()> {
        let mut depth = 0;
        let mut literals = 0;
        loop {
            match self.line.skip_value(depth) {
                Ok(None) => return Ok(()),
                Ok(Some((d, n))) => {
                    literals += 1;
                    if literals > codec::MAX_LITERALS {
                        return Err(self.protocol(what, "too many literals"));
                    }
                    self.drain_literal(n, what)?;
                    if d == 0 {
                        return Ok(());
                    }
                    depth = d;
                }
                Err(m) => return Err(self.protocol(what, m.0)),
            }
        }
    }

    /// Reads one `* seq FETCH (...)` of a body fetch, streaming a body
    /// literal to the sink when it is one we asked for and have not had.
    #[allow(clippy::too_many_arguments)]
    fn fetch_response(
        &mut self,
        seq: u32,
        want: Want,
        index: &HashMap<u32, usize>,
        done: &mut [bool],
        failure: &mut Option<Error>,
        sink: &mut Sink,
        what: &str,
    ) -> Result<()> {
        if self.token(what)? != Token::Open {
            return Err(self.protocol(what, "FETCH without `(`"));
        }
        let mut uid: Option<u32> = None;
        // The message this response's body went to, placed by sequence
        // number because the UID had not come yet.
        let mut placed: Option<u32> = None;
        let mut header: Option<Vec<u8>> = None;
        let mut text: Option<Vec<u8>> = None;
        let mut literals = 0;
        loop {
            let name = match self.token(what)? {
                Token::Close => break,
                Token::Atom(name) => name.to_ascii_uppercase(),
                other => {
                    return Err(
                        self.protocol(what, format!("unexpected {} in FETCH", other.describe()))
                    )
                }
            };
            if name == "UID" {
                let u = self.uid(what)?;
                if placed.is_some_and(|p| p != u) {
                    return Err(self.protocol(
                        what,
                        format!(
                            "message {seq} came as UID {u} after its body was taken for UID {}",
                            placed.unwrap_or(0)
                        ),
                    ));
                }
                uid = Some(u);
                continue;
            }
            // Only the section asked for is a body; any other is skipped.
            let section = match want {
                Want::Full(_) if matches!(name.as_str(), "BODY[]" | "RFC822" | "BINARY[]") => {
                    Some(false)
                }
                Want::Header | Want::Top(_)
                    if matches!(name.as_str(), "BODY[HEADER]" | "RFC822.HEADER") =>
                {
                    Some(true)
                }
                Want::Top(_) if name.starts_with("BODY[TEXT]") => Some(false),
                _ => None,
            };
            let Some(is_header) = section else {
                self.skip_item_value(what)?;
                continue;
            };
            let value = self.token(what)?;
            let len = match value {
                Token::Literal(n) => n,
                Token::Quoted(q) => {
                    // A body sent as a quoted string is small by nature.
                    let decoded = decode_held(&q);
                    if let Want::Top(_) = want {
                        if is_header {
                            header = Some(decoded);
                        } else {
                            text = Some(decoded);
                        }
                    } else if let Some(i) = self.target(uid, seq, index, done) {
                        let u = uid.unwrap_or_else(|| self.seq_uids[seq as usize - 1]);
                        placed = Some(u);
                        done[i] = true;
                        if failure.is_none() {
                            let mut held = Held {
                                octets: q.len() as u64,
                                data: io::Cursor::new(decoded),
                            };
                            if let Err(e) = sink(i, Fetched::Body(&mut held)) {
                                *failure = Some(e);
                            }
                        }
                    }
                    continue;
                }
                // NIL: the server has no such part; the message counts as
                // not returned.
                _ => continue,
            };
            literals += 1;
            if literals > codec::MAX_LITERALS {
                return Err(self.protocol(what, "too many literals in one FETCH"));
            }
            if let Want::Top(_) = want {
                let data = self.small_literal(len, what)?;
                if is_header {
                    header = Some(decode_held(&data));
                } else {
                    text = Some(decode_held(&data));
                }
                continue;
            }
            let target = self.target(uid, seq, index, done);
            let Some(i) = target.filter(|_| failure.is_none()) else {
                if let Some(i) = target {
                    done[i] = true;
                }
                self.drain_literal(len, what)?;
                continue;
            };
            if uid.is_none() {
                placed = Some(self.seq_uids[seq as usize - 1]);
            }
            done[i] = true;
            if let Some(label) = &self.trace {
                eprintln!("{label} < ({len} bytes of message)");
            }
            let limit = match want {
                Want::Full(limit) => limit,
                _ => None,
            };
            let mut body = Streamed(LiteralReader::new(&mut self.reader, len, limit));
            let outcome = sink(i, Fetched::Body(&mut body));
            if let Some(kind) = body.0.net_failure {
                return Err(self.net_error(
                    &format!("receiving message {}", uid.or(placed).unwrap_or(0)),
                    kind.into(),
                ));
            }
            if !body.0.is_complete() {
                if let Err(e) = body.0.drain() {
                    return Err(self.net_error(what, e));
                }
            }
            if let Err(e) = outcome {
                *failure = Some(e);
            }
            self.read_segment(what)?;
        }
        if self.line.peek().is_some() {
            return Err(self.protocol(what, "text after the end of a FETCH response"));
        }
        if let (Want::Top(lines), Some(header)) = (want, header) {
            if let Some(i) = self.target(uid, seq, index, done) {
                done[i] = true;
                let mut data = header;
                let raw = data.len() as u64;
                if let Some(text) = text {
                    let end = memchr::memchr_iter(b'\n', &text)
                        .nth(lines.saturating_sub(1) as usize)
                        .map_or(text.len(), |n| n + 1);
                    data.extend_from_slice(&text[..end]);
                }
                if failure.is_none() {
                    let mut held = Held {
                        octets: raw,
                        data: io::Cursor::new(data),
                    };
                    if let Err(e) = sink(i, Fetched::Body(&mut held)) {
                        *failure = Some(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// The index of the message a body belongs to, if we asked for it and
    /// have not had it: by UID, or by sequence number when the server sent
    /// the body before the UID.
    fn target(
        &self,
        uid: Option<u32>,
        seq: u32,
        index: &HashMap<u32, usize>,
        done: &[bool],
    ) -> Option<usize> {
        let uid = uid.or_else(|| {
            self.seq_uids
                .get((seq as usize).checked_sub(1)?)
                .copied()
                .filter(|u| *u != 0)
        })?;
        index.get(&uid).copied().filter(|&i| !done[i])
    }
}
