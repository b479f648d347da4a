//! POP2 (RFC 937), for the old servers that still speak it.
//!
//! The dialogue: `HELO user password` → `#count`; optional `FOLD mailbox`
//! → `#count`; `READ n` → `=length`; `RETR` → exactly `length` octets;
//! then `ACKS` (received, keep), `ACKD` (received, delete) or `NACK` (not
//! received), each answered with the `=length` of the next message; `QUIT`.
//! Replies starting with `-` are refusals.
//!
//! POP2 has no unique ids, so a message's identity is the SHA-256 of its
//! delivered bytes, and a sync reads each message twice when it is new:
//! once to list it with its digest (answered with NACK), once to deliver
//! it. With `keep = true` every message is re-read at each sync but never
//! re-delivered. ACKD is sent only after the delivery is durable and its
//! record committed, exactly as DELE is for POP3, and a message whose
//! delivery failed is answered with NACK. The sync itself is the engine's
//! ([`Pop2Source`] is a `Source`).

use std::collections::HashMap;
use std::io::{self, BufReader, Read};

use sha2::{Digest, Sha256};

use crate::config::secret::Secret;
use crate::config::{Account, TlsMode};
use crate::error::{Error, ExitKind, Result};
use crate::net::{self, Stream, TlsContext, Transport};
use crate::source::connect::{self, ConnectOptions};
use crate::source::pop3::codec::{self, cut_off, read_decoded, PairDecoder};
use crate::source::{Entry, FetchSink, Fetched, Sink, Source, Taken};
use crate::ui::term;

/// A POP2 connection after the greeting. `S` is the byte stream: a real
/// connection, or a scripted one in unit tests.
pub struct Pop2<S = Stream> {
    reader: BufReader<S>,
    host: String,
    trace: Option<String>,
    line: Vec<u8>,
}

/// A parsed POP2 reply.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Ok(String),
    Count(u64),
    Length(u64),
    Refused(String),
}

/// A reply as the server wrote it (control characters already escaped),
/// for error messages: the user sees the wire, not a Rust enum.
impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Ok(text) if text.is_empty() => f.write_str("+"),
            Reply::Ok(text) => write!(f, "+ {text}"),
            Reply::Refused(text) if text.is_empty() => f.write_str("-"),
            Reply::Refused(text) => write!(f, "- {text}"),
            Reply::Count(n) => write!(f, "#{n}"),
            Reply::Length(n) => write!(f, "={n}"),
        }
    }
}

/// The reply's text ends up in errors on a terminal: its control
/// characters are escaped here, where every reply enters.
fn parse_reply(line: &[u8]) -> std::result::Result<Reply, String> {
    let text = term::escape_controls(String::from_utf8_lossy(line).trim_end());
    let number = |s: &str| -> std::result::Result<u64, String> {
        s.split_ascii_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("malformed reply {:?}", codec::printable(line, 80)))
    };
    match text.as_bytes().first() {
        Some(b'+') => Ok(Reply::Ok(text[1..].trim().to_string())),
        Some(b'-') => Ok(Reply::Refused(text[1..].trim().to_string())),
        Some(b'#') => number(&text[1..]).map(Reply::Count),
        Some(b'=') => number(&text[1..]).map(Reply::Length),
        _ => Err(format!(
            "expected a POP2 reply (+, -, # or =), got {:?}",
            codec::printable(line, 80)
        )),
    }
}

impl Pop2 {
    /// Connects (plain, or TLS-wrapped with `tls = "implicit"`) and reads
    /// the greeting.
    pub fn connect(account: &Account, trace: bool) -> Result<Pop2> {
        let tcp = net::connect(&account.host, account.port, account.timeout)?;
        let stream = match account.tls {
            TlsMode::Implicit => TlsContext::new(&account.trust)?
                .for_account(&account.name)
                .wrap_implicit(tcp, &account.host, "set tls = \"none\" for this port")?,
            _ => {
                net::await_plain_greeting(&tcp, &account.host, account.timeout)?;
                Stream::Plain(tcp)
            }
        };
        Pop2::new(
            stream,
            &account.host,
            trace.then(|| format!("[{}]", account.name)),
        )
    }
}

impl<S: Transport> Pop2<S> {
    /// Reads the greeting from a fresh connection.
    pub fn new(stream: S, host: &str, trace: Option<String>) -> Result<Pop2<S>> {
        let mut conn = Pop2 {
            reader: BufReader::with_capacity(64 * 1024, stream),
            host: host.to_string(),
            trace,
            line: Vec::new(),
        };
        match conn.reply("the connection (greeting)")? {
            Reply::Ok(_) => Ok(conn),
            Reply::Refused(text) => Err(Error::refused(
                ExitKind::Unavailable,
                format!(
                    "{}: the POP2 server refused the connection: - {text}",
                    conn.host
                ),
                None,
                text,
            )),
            other => Err(conn.unexpected("the greeting", &other)),
        }
    }

    pub fn is_tls(&self) -> bool {
        self.reader.get_ref().is_tls()
    }

    fn send(&mut self, line: &str, shown: &str) -> Result<()> {
        if let Some(label) = &self.trace {
            eprintln!("{label} > {shown}");
        }
        let stream = self.reader.get_mut();
        stream
            .write_all(line.as_bytes())
            .and_then(|_| stream.write_all(b"\r\n"))
            .and_then(|_| stream.flush())
            .map_err(|e| net_error(&self.host, "sending a command", e))
    }

    fn reply(&mut self, what: &str) -> Result<Reply> {
        let mut line = std::mem::take(&mut self.line);
        let read = codec::read_line(&mut self.reader, &mut line);
        if let Some(label) = &self.trace {
            eprintln!("{label} < {}", codec::printable(&line, 200));
        }
        let parsed = match read {
            Ok(()) => parse_reply(&line).map_err(|m| {
                Error::new(
                    ExitKind::Protocol,
                    format!("{}: protocol error while {what}: {m}", self.host),
                )
            }),
            Err(codec::LineError::Io(e)) => Err(net_error(&self.host, what, e)),
            Err(codec::LineError::Eof) => Err(net_error(
                &self.host,
                what,
                io::ErrorKind::UnexpectedEof.into(),
            )),
            Err(codec::LineError::TooLong) => Err(Error::new(
                ExitKind::Protocol,
                format!(
                    "{}: protocol error while {what}: an over-long line",
                    self.host
                ),
            )),
            Err(codec::LineError::BareLf) => Err(Error::new(
                ExitKind::Protocol,
                format!(
                    "{}: protocol error while {what}: the server ends lines with a bare LF; \
                     POP2 requires CRLF",
                    self.host
                ),
            )),
            Err(codec::LineError::Garbage(g)) => Err(Error::new(
                ExitKind::Protocol,
                format!("{}: protocol error while {what}: {g:?}", self.host),
            )),
        };
        self.line = line;
        parsed
    }

    fn unexpected(&self, what: &str, reply: &Reply) -> Error {
        Error::new(
            ExitKind::Protocol,
            format!(
                "{}: protocol error: unexpected reply `{reply}` to {what}",
                self.host
            ),
        )
    }

    /// `HELO user password` → the number of messages in the inbox.
    pub fn helo(&mut self, user: &str, password: &Secret) -> Result<u64> {
        for (what, v) in [("user", user), ("the password", password.expose())] {
            if v.is_empty()
                || v.bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            {
                return Err(Error::config(format!(
                    "POP2 sends {what} as one word of the HELO command: it must not be empty or contain spaces"
                )));
            }
        }
        self.send(
            &format!("HELO {user} {}", password.expose()),
            &format!("HELO {user} ***"),
        )?;
        match self.reply("the login (HELO)")? {
            Reply::Count(n) => Ok(n),
            Reply::Refused(text) => Err(Error::refused(
                ExitKind::NoPerm,
                format!(
                    "{}: the server refused the login (HELO): - {text} \
                     (check `user` and the password)",
                    self.host
                ),
                None,
                text,
            )),
            other => Err(self.unexpected("HELO", &other)),
        }
    }

    /// `FOLD mailbox` → the number of messages in it.
    pub fn fold(&mut self, folder: &str) -> Result<u64> {
        self.send(&format!("FOLD {folder}"), &format!("FOLD {folder}"))?;
        match self.reply("FOLD")? {
            Reply::Count(n) => Ok(n),
            Reply::Refused(text) => Err(Error::refused(
                ExitKind::Config,
                format!(
                    "{}: the server cannot open folder {folder:?}: - {text}",
                    self.host
                ),
                None,
                text,
            )),
            other => Err(self.unexpected("FOLD", &other)),
        }
    }

    /// `READ n` → the message's length (0: no such message).
    pub fn read(&mut self, n: u64) -> Result<u64> {
        let cmd = format!("READ {n}");
        self.send(&cmd, &cmd)?;
        self.length(&cmd)
    }

    fn length(&mut self, what: &str) -> Result<u64> {
        match self.reply(what)? {
            Reply::Length(len) => Ok(len),
            Reply::Refused(text) => Err(Error::refused(
                ExitKind::Protocol,
                format!("{}: the server refused {what}: - {text}", self.host),
                None,
                text,
            )),
            other => Err(self.unexpected(what, &other)),
        }
    }

    /// `RETR`: the message as a reader of exactly `length` octets, with
    /// CRLF turned into LF. Read it to the end before the next command.
    pub fn retr(&mut self, length: u64) -> Result<Pop2Body<'_, S>> {
        self.send("RETR", "RETR")?;
        Ok(Pop2Body {
            inner: (&mut self.reader).take(length),
            length,
            net_failure: None,
            pending_cr: false,
            spilled: None,
            scratch: vec![0u8; 16 * 1024],
        })
    }

    /// `ACKS`, `ACKD` or `NACK`; returns the length the server announces
    /// next (which this client does not rely on: it always sends READ).
    pub fn ack(&mut self, verb: &str) -> Result<u64> {
        self.ensure_in_step(verb)?;
        self.send(verb, verb)?;
        self.length(verb)
    }

    /// Insists that nothing is left unread after a message: POP2 frames a
    /// message by its announced length only, so bytes beyond it (a server
    /// that announced too little, or sent more) answer no command. Taking
    /// them for the next reply could acknowledge, and delete, the wrong
    /// message: a protocol error instead, before ACKS/ACKD/NACK and QUIT.
    fn ensure_in_step(&self, verb: &str) -> Result<()> {
        let buffered = self.reader.buffer();
        if buffered.is_empty() {
            return Ok(());
        }
        Err(Error::new(
            ExitKind::Protocol,
            format!(
                "{}: protocol error before {verb}: the server sent more than the message length it \
                 announced ({:?}); client and server are out of step, so nothing more is \
                 acknowledged or deleted in this session",
                self.host,
                codec::printable(buffered, 80)
            ),
        ))
    }

    /// `QUIT`: deletions happen when the server confirms.
    pub fn quit(mut self) -> Result<()> {
        self.ensure_in_step("QUIT")?;
        self.send("QUIT", "QUIT")?;
        match self.reply("QUIT")? {
            Reply::Ok(_) => Ok(()),
            other => Err(Error::new(
                ExitKind::Protocol,
                format!(
                    "{}: QUIT was not confirmed (`{other}`); deletions may not have happened",
                    self.host
                ),
            )),
        }
    }
}

fn net_error(host: &str, what: &str, e: io::Error) -> Error {
    Error::transport(
        ExitKind::of_io(&e),
        format!("{host}: connection failed while {what}"),
        e,
    )
}

/// A POP2 message body: exactly the announced octets, CRLF → LF. A
/// connection that ends early is an error, never a short message.
pub struct Pop2Body<'a, S = Stream> {
    inner: io::Take<&'a mut BufReader<S>>,
    /// The octets announced, all of which come on the wire.
    length: u64,
    /// A network failure seen while reading, kept so the caller can tell it
    /// from a local write failure.
    net_failure: Option<io::ErrorKind>,
    pending_cr: bool,
    /// A decoded byte a one-byte read had no room for; given out first.
    spilled: Option<u8>,
    scratch: Vec<u8>,
}

impl<S: Read> PairDecoder for Pop2Body<'_, S> {
    fn spilled(&mut self) -> &mut Option<u8> {
        &mut self.spilled
    }

    fn decode_into(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let room = (buf.len() - usize::from(self.pending_cr)).min(self.scratch.len());
            let n = match self.inner.read(&mut self.scratch[..room]) {
                Ok(n) => n,
                Err(e) => {
                    self.net_failure = Some(e.kind());
                    return Err(e);
                }
            };
            if n == 0 {
                if self.inner.limit() > 0 {
                    self.net_failure = Some(io::ErrorKind::UnexpectedEof);
                    return Err(cut_off());
                }
                if self.pending_cr {
                    self.pending_cr = false;
                    buf[0] = b'\r';
                    return Ok(1);
                }
                return Ok(0);
            }
            let mut o = 0;
            for &b in &self.scratch[..n] {
                if self.pending_cr {
                    self.pending_cr = false;
                    if b != b'\n' {
                        buf[o] = b'\r';
                        o += 1;
                    }
                }
                if b == b'\r' {
                    self.pending_cr = true;
                } else {
                    buf[o] = b;
                    o += 1;
                }
            }
            if o > 0 {
                return Ok(o);
            }
        }
    }
}

impl<S: Read> Read for Pop2Body<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_decoded(self, buf)
    }
}

impl<S: Read> Pop2Body<'_, S> {
    /// Reads the rest of the message and throws it away.
    fn drain(&mut self) -> io::Result<()> {
        let mut sink = [0u8; 16 * 1024];
        while self.read(&mut sink)? > 0 {}
        Ok(())
    }
}

impl<S: Read> crate::source::Message for Pop2Body<'_, S> {
    /// The octets received on the wire (CRLF line ends).
    fn octets(&self) -> u64 {
        self.length - self.inner.limit()
    }

    fn over_limit(&self) -> bool {
        false
    }
}

/// Reads and digests a message without keeping it.
fn digest_of(body: &mut dyn Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = [0u8; 16 * 1024];
    let mut last = b'\n';
    let mut any = false;
    loop {
        let n = body.read(&mut buf)?;
        if n == 0 {
            break;
        }
        any = true;
        last = buf[n - 1];
        hasher.update(&buf[..n]);
    }
    // The delivered form gets a final LF; digest that same form.
    if any && last != b'\n' {
        hasher.update(b"\n");
    }
    Ok(format!(
        "pop2:{}",
        hasher.finalize()[..24]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ))
}

/// A logged-in POP2 mailbox as a [`Source`]: handles are message
/// numbers, ids digests of the content (`pop2:…`).
pub struct Pop2Source<S = Stream> {
    conn: Pop2<S>,
    /// Messages in the mailbox (HELO's or FOLD's count).
    count: u64,
    /// Each listed message's id, to check that a message about to be
    /// deleted is the one listed.
    ids: HashMap<u32, String>,
}

/// Connects, logs in with HELO and opens the account's folder.
pub fn open(
    account: &Account,
    opts: &ConnectOptions,
    logging_in: &(dyn Fn() + Sync),
) -> Result<Pop2Source> {
    opts.verbose.say(|| {
        format!(
            "{}: connecting to {}:{} (POP2)",
            account.name, account.host, account.port
        )
    });
    let mut conn = Pop2::connect(account, opts.trace)?;
    logging_in();
    if !conn.is_tls() {
        connect::warn_cleartext(account, opts, "password", false);
    }
    let secret = account.secret()?;
    let mut count = conn.helo(&account.user, &secret)?;
    if let Some(folder) = &account.folder {
        count = conn.fold(folder)?;
    }
    Ok(Pop2Source::new(conn, count))
}

impl<S: Transport> Pop2Source<S> {
    pub(crate) fn new(conn: Pop2<S>, count: u64) -> Pop2Source<S> {
        Pop2Source {
            conn,
            count,
            ids: HashMap::new(),
        }
    }

    /// The message numbers HELO or FOLD announced.
    fn numbers(&self) -> impl Iterator<Item = u32> {
        1..=u32::try_from(self.count).unwrap_or(u32::MAX)
    }

    /// `RETR` after `READ`, and the digest of what came; the caller answers.
    fn read_digest(&mut self, len: u64) -> Result<String> {
        let host = self.conn.host.clone();
        let mut body = self.conn.retr(len)?;
        digest_of(&mut body).map_err(|e| net_error(&host, "reading a message", e))
    }
}

/// POP2 answers each message before the next (ACKS, ACKD or NACK), so the
/// engine commits each one as it comes and a deletion rides on that
/// answer. Listing reads every message once (answered NACK) to learn its
/// digest, which is why `--dry-run` is refused and `check` only counts.
///
/// [`Source::delete`] is the costly way: RFC 937 accepts ACKD only after
/// RETR, so each message is read again (`READ n`, `RETR`, ACKD), and
/// answered NACK instead when its digest is no longer the listed one. The
/// engine needs it only for messages delivered by an earlier session, and
/// for copies of a message.
impl<S: Transport> Source for Pop2Source<S> {
    fn host(&self) -> &str {
        &self.conn.host
    }

    fn listing(&mut self) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for n in self.numbers() {
            let len = self.conn.read(u64::from(n))?;
            if len == 0 {
                break;
            }
            let id = self.read_digest(len)?;
            self.conn.ack("NACK")?;
            self.ids.insert(n, id.clone());
            entries.push(Entry {
                handle: n,
                size: len,
                id: Some(id),
            });
        }
        Ok(entries)
    }

    fn headers(&mut self, _handles: &[u32], _sink: &mut Sink<'_>) -> Result<bool> {
        Ok(false)
    }

    fn top(&mut self, _handles: &[u32], _lines: u32, _sink: &mut Sink<'_>) -> Result<()> {
        Err(Error::new(
            ExitKind::Usage,
            format!("{}: POP2 has no TOP", self.conn.host),
        ))
    }

    fn fetch(
        &mut self,
        handles: &[u32],
        // The announced length frames a POP2 message: it cannot grow
        // past what the plan judged.
        _max_size: Option<u64>,
        sink: &mut FetchSink<'_>,
    ) -> Result<()> {
        let host = self.conn.host.clone();
        for (i, &n) in handles.iter().enumerate() {
            let len = self.conn.read(u64::from(n))?;
            if len == 0 {
                let gone = format!("the server has no message {n} any more");
                sink(i, Fetched::Refused(gone))?;
                continue;
            }
            let taken = {
                let mut body = self.conn.retr(len)?;
                let taken = sink(i, Fetched::Body(&mut body));
                if let Some(kind) = body.net_failure {
                    return Err(net_error(
                        &host,
                        &format!("receiving message {n}"),
                        kind.into(),
                    ));
                }
                // Whatever the sink left unread: the session stays in step.
                body.drain()
                    .map_err(|e| net_error(&host, "reading a message", e))?;
                taken
            };
            let verb = match taken {
                Ok(Taken::Recorded { delete: true }) => "ACKD",
                Ok(_) => "ACKS",
                // Not received: the server keeps it for next time.
                Err(_) => "NACK",
            };
            self.conn.ack(verb)?;
            taken?;
        }
        Ok(())
    }

    fn delete(&mut self, handles: &[u32]) -> Result<Vec<bool>> {
        let mut accepted = Vec::with_capacity(handles.len());
        for &n in handles {
            let len = self.conn.read(u64::from(n))?;
            if len == 0 {
                accepted.push(false);
                continue;
            }
            let id = self.read_digest(len)?;
            let same = self.ids.get(&n) == Some(&id);
            self.conn.ack(if same { "ACKD" } else { "NACK" })?;
            accepted.push(same);
        }
        Ok(accepted)
    }

    fn finish(self: Box<Self>) -> Result<()> {
        self.conn.quit()
    }

    /// `READ n` gives each length without sending the message.
    fn count(&mut self) -> Result<Option<(u64, u64)>> {
        let mut count = 0;
        let mut bytes = 0;
        for n in self.numbers() {
            let len = self.conn.read(u64::from(n))?;
            count += 1;
            bytes += len;
        }
        Ok(Some((count, bytes)))
    }

    fn ids_are_digests(&self) -> bool {
        true
    }

    fn acks_each_message(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::pop3::mock::{Handle, MockStream};

    fn open(stream: MockStream) -> (Result<Pop2<MockStream>>, Handle) {
        let handle = stream.handle();
        (Pop2::new(stream, "mock", None), handle)
    }

    fn body(conn: &mut Pop2<MockStream>, len: u64) -> io::Result<String> {
        let mut text = String::new();
        conn.retr(len).unwrap().read_to_string(&mut text)?;
        Ok(text)
    }

    /// The whole dialogue of RFC 937 in one-byte chunks: the exact lines
    /// sent, the counts and lengths read, the body framed by its length.
    #[test]
    fn helo_fold_read_retr_ack_quit_exchange() {
        let stream = MockStream::new(b"+ POP2 ready\r\n")
            .on("HELO alice hunter2", b"#2 messages\r\n")
            .on("FOLD archive", b"#1\r\n")
            .on("READ 1", b"=11\r\n")
            .on("RETR", b"one\r\nline\r\n")
            .on("ACKD", b"=0\r\n")
            .on("READ 2", b"=0\r\n")
            .on("QUIT", b"+ bye\r\n")
            .chunked(1);
        let (conn, handle) = open(stream);
        let mut conn = conn.unwrap();
        assert!(!conn.is_tls());
        assert_eq!(conn.helo("alice", &Secret::new("hunter2")).unwrap(), 2);
        assert_eq!(conn.fold("archive").unwrap(), 1);
        assert_eq!(conn.read(1).unwrap(), 11);
        assert_eq!(body(&mut conn, 11).unwrap(), "one\nline\n");
        assert_eq!(conn.ack("ACKD").unwrap(), 0);
        assert_eq!(conn.read(2).unwrap(), 0, "no such message");
        conn.quit().unwrap();
        assert_eq!(
            handle.written(),
            "HELO alice hunter2\r\nFOLD archive\r\nREAD 1\r\nRETR\r\nACKD\r\nREAD 2\r\nQUIT\r\n"
        );
    }

    #[test]
    fn refused_greeting_and_login_are_classified() {
        let (conn, _) = open(MockStream::new(b"- go away\r\n"));
        assert_eq!(conn.err().unwrap().kind(), ExitKind::Unavailable);

        let (conn, _) = open(MockStream::new(b"+OK this is POP3\r\n"));
        assert!(conn.is_ok(), "a `+` greeting is all POP2 asks for");

        let (conn, _) = open(MockStream::new(b"#3\r\n"));
        assert_eq!(conn.err().unwrap().kind(), ExitKind::Protocol);

        let stream =
            MockStream::new(b"+ ready\r\n").on("HELO alice hunter2", b"- wrong password\r\n");
        let err = open(stream)
            .0
            .unwrap()
            .helo("alice", &Secret::new("hunter2"))
            .unwrap_err();
        assert_eq!(err.kind(), ExitKind::NoPerm);
        assert!(
            err.message().contains("wrong password"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn helo_words_with_spaces_never_reach_the_wire() {
        let (conn, handle) = open(MockStream::new(b"+ ready\r\n"));
        let err = conn
            .unwrap()
            .helo("alice", &Secret::new("two words"))
            .unwrap_err();
        assert_eq!(err.kind(), ExitKind::Config);
        assert_eq!(handle.written(), "");
    }

    #[test]
    fn bare_lf_replies_and_garbage_are_protocol_errors() {
        let (conn, _) = open(MockStream::new(b"+ ready\n"));
        let err = conn.err().unwrap();
        assert_eq!(err.kind(), ExitKind::Protocol);
        assert!(err.message().contains("bare LF"), "{}", err.message());

        let stream = MockStream::new(b"+ ready\r\n").on("READ 1", b"=many\r\n");
        let err = open(stream).0.unwrap().read(1).unwrap_err();
        assert_eq!(err.kind(), ExitKind::Protocol);
    }

    /// The body is exactly the announced octets: a lone CR is kept, CRLF
    /// split across reads still becomes LF, and the next reply is not
    /// taken for message text.
    #[test]
    fn body_is_framed_by_its_length_alone() {
        for chunk in [1, 2, 5, usize::MAX] {
            let stream = MockStream::new(b"+ ready\r\n")
                .on("RETR", b"a\rb\r\n.\r\nend\r")
                .on("ACKS", b"=0\r\n")
                .chunked(chunk);
            let mut conn = open(stream).0.unwrap();
            assert_eq!(
                body(&mut conn, 12).unwrap(),
                "a\rb\n.\nend\r",
                "chunk {chunk}"
            );
            assert_eq!(conn.ack("ACKS").unwrap(), 0, "chunk {chunk}");
        }
    }

    /// A server that announced fewer octets than it sent: the rest answers
    /// no command, so nothing is acknowledged (or deleted) after it.
    #[test]
    fn more_bytes_than_announced_stop_the_session_before_the_ack() {
        let stream = MockStream::new(b"+ ready\r\n")
            .on("RETR", b"hello\r\nworld\r\n")
            .on("ACKD", b"=0\r\n");
        let (conn, handle) = open(stream);
        let mut conn = conn.unwrap();
        assert_eq!(body(&mut conn, 7).unwrap(), "hello\n");
        let err = conn.ack("ACKD").unwrap_err();
        assert_eq!(err.kind(), ExitKind::Protocol);
        assert!(err.message().contains("world"), "{}", err.message());
        assert_eq!(conn.quit().unwrap_err().kind(), ExitKind::Protocol);
        assert_eq!(handle.written(), "RETR\r\n");
    }

    /// Fewer bytes than announced, then the end of the connection: an
    /// error, never a short message.
    #[test]
    fn connection_closing_inside_a_message_is_an_error() {
        let stream = MockStream::new(b"+ ready\r\n")
            .on("RETR", b"only part")
            .then_eof();
        let mut conn = open(stream).0.unwrap();
        let err = body(&mut conn, 100).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);

        let stream = MockStream::new(b"+ ready\r\n")
            .on("RETR", b"only part")
            .then_fail(io::ErrorKind::ConnectionReset);
        let mut conn = open(stream).0.unwrap();
        assert_eq!(
            body(&mut conn, 100).unwrap_err().kind(),
            io::ErrorKind::ConnectionReset
        );
    }

    #[test]
    fn refusals_and_an_unconfirmed_quit_are_errors() {
        let stream = MockStream::new(b"+ ready\r\n")
            .on("FOLD nothere", b"- no such folder\r\n")
            .on("READ 1", b"- cannot\r\n")
            .on("QUIT", b"- could not update\r\n");
        let mut conn = open(stream).0.unwrap();
        assert_eq!(conn.fold("nothere").unwrap_err().kind(), ExitKind::Config);
        assert_eq!(conn.read(1).unwrap_err().kind(), ExitKind::Protocol);
        let err = conn.quit().unwrap_err();
        assert!(
            err.message().contains("deletions may not have happened"),
            "{}",
            err.message()
        );
    }

    /// `Pop2Body` is a proper `Read`: any buffer size, one byte included,
    /// gives the same bytes. Delivery fills 64 KiB blocks, so its last
    /// read of a block can be a single byte: refusing it failed the
    /// delivery of long messages.
    #[test]
    fn body_reads_the_same_with_any_buffer_size() {
        use crate::source::pop3::mock::read_in_sizes;
        let wire = b"a\r\nb\rc\r\n\r\nend\r";
        let want = b"a\nb\rc\n\nend\r";
        for sizes in [&[1usize][..], &[2], &[1, 3, 1, 2], &[64]] {
            let stream = MockStream::new(b"+ ready\r\n")
                .on("RETR", wire)
                .on("ACKS", b"=0\r\n");
            let mut conn = open(stream).0.unwrap();
            let mut body = conn.retr(wire.len() as u64).unwrap();
            let got = read_in_sizes(&mut body, sizes);
            assert_eq!(got, want, "buffer sizes {sizes:?}");
            assert_eq!(conn.ack("ACKS").unwrap(), 0, "in step after {sizes:?}");
        }
    }

    fn source(stream: MockStream, count: u64) -> (Pop2Source<MockStream>, Handle) {
        let (conn, handle) = open(stream);
        (Pop2Source::new(conn.unwrap(), count), handle)
    }

    /// The listing reads each message once and answers NACK; the fetch
    /// answers each message as the sink says (ACKD once recorded and to
    /// go, ACKS otherwise); a deletion reads the message again and
    /// acknowledges it only when it is still the message listed.
    #[test]
    fn source_lists_fetches_and_deletes_by_acknowledgement() {
        let stream = MockStream::new(b"+ ready\r\n")
            .on("READ 1", b"=3\r\n")
            .on("RETR", b"a\r\n")
            .on("NACK", b"=4\r\n")
            .on("READ 2", b"=4\r\n")
            .on("RETR", b"bb\r\n")
            .on("NACK", b"=0\r\n")
            .on("READ 1", b"=3\r\n")
            .on("RETR", b"a\r\n")
            .on("ACKD", b"=4\r\n")
            .on("READ 2", b"=4\r\n")
            .on("RETR", b"bb\r\n")
            .on("ACKS", b"=0\r\n")
            .on("READ 1", b"=3\r\n")
            .on("RETR", b"x\r\n")
            .on("NACK", b"=4\r\n")
            .on("READ 2", b"=4\r\n")
            .on("RETR", b"bb\r\n")
            .on("ACKD", b"=0\r\n")
            .on("QUIT", b"+ bye\r\n")
            .chunked(2);
        let (mut src, handle) = source(stream, 2);
        let listing = src.listing().unwrap();
        let a = digest_of(&mut &b"a\n"[..]).unwrap();
        let bb = digest_of(&mut &b"bb\n"[..]).unwrap();
        assert_eq!(
            listing,
            vec![
                Entry {
                    handle: 1,
                    size: 3,
                    id: Some(a)
                },
                Entry {
                    handle: 2,
                    size: 4,
                    id: Some(bb)
                },
            ]
        );
        let mut got = Vec::new();
        src.fetch(&[1, 2], None, &mut |i, reply| {
            let Fetched::Body(body) = reply else {
                panic!("refused")
            };
            let mut text = String::new();
            body.read_to_string(&mut text).unwrap();
            got.push((text, body.octets()));
            Ok(if i == 0 {
                Taken::Recorded { delete: true }
            } else {
                Taken::Received
            })
        })
        .unwrap();
        assert_eq!(got, [("a\n".to_string(), 3), ("bb\n".to_string(), 4)]);
        assert_eq!(src.delete(&[1, 2]).unwrap(), [false, true], "1 changed");
        Box::new(src).finish().unwrap();
        assert_eq!(
            handle.written(),
            "READ 1\r\nRETR\r\nNACK\r\nREAD 2\r\nRETR\r\nNACK\r\n\
             READ 1\r\nRETR\r\nACKD\r\nREAD 2\r\nRETR\r\nACKS\r\n\
             READ 1\r\nRETR\r\nNACK\r\nREAD 2\r\nRETR\r\nACKD\r\nQUIT\r\n"
        );
    }

    /// The sink's own failure: the message is read to its end and answered
    /// NACK (nothing more is asked), the sink's error comes back, and the
    /// session can still QUIT.
    #[test]
    fn a_failing_sink_gets_nack_and_leaves_the_session_in_step() {
        let stream = MockStream::new(b"+ ready\r\n")
            .on("READ 1", b"=7\r\n")
            .on("RETR", b"hello\r\n")
            .on("NACK", b"=0\r\n")
            .on("QUIT", b"+ bye\r\n");
        let (mut src, handle) = source(stream, 2);
        let err = src
            .fetch(&[1, 2], None, &mut |_, _| {
                Err(Error::new(ExitKind::Io, "disk full").local())
            })
            .unwrap_err();
        assert!(err.is_local(), "{err}");
        Box::new(src).finish().unwrap();
        assert_eq!(handle.written(), "READ 1\r\nRETR\r\nNACK\r\nQUIT\r\n");
    }

    /// A connection that fails inside a body is the transport's failure,
    /// whatever the sink made of it, and nothing is acknowledged.
    #[test]
    fn a_connection_lost_inside_a_body_is_a_transport_error() {
        let stream = MockStream::new(b"+ ready\r\n")
            .on("READ 1", b"=100\r\n")
            .on("RETR", b"only part")
            .then_eof();
        let (mut src, handle) = source(stream, 1);
        let err = src
            .fetch(&[1], None, &mut |_, reply| {
                let Fetched::Body(body) = reply else {
                    panic!("refused")
                };
                io::copy(body, &mut io::sink())
                    .map_err(|e| Error::local_io("writing the message", e))?;
                Ok(Taken::Received)
            })
            .unwrap_err();
        assert!(err.is_transport(), "{err}");
        assert_eq!(handle.written(), "READ 1\r\nRETR\r\n");
    }

    #[test]
    fn digest_is_of_the_delivered_form() {
        // With or without the final LF the delivered message is the same,
        // so is its identity; and a different body is another one.
        let a = digest_of(&mut &b"hello\n"[..]).unwrap();
        assert_eq!(a, digest_of(&mut &b"hello"[..]).unwrap());
        assert_ne!(a, digest_of(&mut &b"hello!\n"[..]).unwrap());
        assert!(a.starts_with("pop2:") && a.len() == 5 + 48, "{a}");
    }

    #[test]
    fn replies_parse() {
        assert_eq!(
            parse_reply(b"+ POP2 ready").unwrap(),
            Reply::Ok("POP2 ready".into())
        );
        assert_eq!(parse_reply(b"#12 messages").unwrap(), Reply::Count(12));
        assert_eq!(parse_reply(b"=345").unwrap(), Reply::Length(345));
        assert_eq!(
            parse_reply(b"- no such user").unwrap(),
            Reply::Refused("no such user".into())
        );
        assert!(parse_reply(b"=x").is_err());
        assert!(parse_reply(b"+OK pop3").is_ok());
        assert!(parse_reply(b"hello").is_err());
    }
}
