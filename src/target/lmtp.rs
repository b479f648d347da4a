//! Delivery to a mail server's own delivery: LMTP (RFC 2033), over a unix
//! socket or TCP, or SMTP (`smtp://`, `smtps://`), the same client with
//! EHLO and one reply after the data.
//!
//! One connection per sync, many messages on it: per message MAIL FROM
//! (the `Return-Path`, else `<>`), RCPT TO `deliver_to`, DATA, sent in one
//! write where the server offers PIPELINING (RFC 2920); the body follows
//! streamed, LF turned into CRLF and dot-stuffed, in blocks: memory stays
//! flat whatever the size. The reply after the final dot decides: 250 is
//! delivered (the server is durable by its own contract); 4xx is
//! temporary (the sync stops, exit 75, the message stays unseen); 5xx
//! leaves the message on the server, reported, and the sync goes on with
//! the next one after RSET.
//!
//! The duplicate window: as for an MDA, a message is final at the server's
//! 250 and cannot be taken back, so each one is recorded on its own right
//! after it. A crash (kill -9) of popfetch between that 250 and the
//! commit of its seen record delivers that one message again on the next
//! sync. No other message is at risk, and none is handed over partial: a
//! connection that drops inside the data never gets the final dot.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::{read_header_block, return_path, Delivery, MessageInfo};
use crate::config::{Endpoint, Wire};
use crate::error::{Error, ExitKind, Origin, Result};
use crate::net::{self, Stream, TlsContext, TlsTrust};
use crate::state::store::PendingEntry;

/// Longest reply line accepted (SPEC §5: a bound, not unbounded memory).
const MAX_LINE: usize = 64 * 1024;

/// Size of the blocks the body is written in.
const DATA_BLOCK: usize = 64 * 1024;

enum Conn {
    Unix(UnixStream),
    Net(Stream),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Net(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Net(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Unix(s) => s.flush(),
            Conn::Net(s) => s.flush(),
        }
    }
}

/// A server's reply: its code and the text of its lines.
struct Reply {
    code: u16,
    text: String,
}

impl Reply {
    fn ok(&self) -> bool {
        (200..400).contains(&self.code)
    }
}

/// What the server offered after LHLO/EHLO.
#[derive(Default)]
struct Offers {
    pipelining: bool,
    eight_bit: bool,
    smtputf8: bool,
    starttls: bool,
}

struct Session {
    io: BufReader<Conn>,
    offers: Offers,
}

pub struct Wired {
    wire: Wire,
    lmtp: bool,
    timeout: Duration,
    recipient: String,
    session: Option<Session>,
}

impl Wired {
    /// No connection yet: the first message opens it, so a sync with
    /// nothing to deliver never talks to the server.
    pub fn new(wire: &Wire, lmtp: bool, timeout: Duration) -> Result<Wired> {
        let recipient = match &wire.deliver_to {
            Some(to) => to.clone(),
            None => local_user().ok_or_else(|| {
                Error::config(format!(
                    "{} needs an envelope recipient and neither USER nor LOGNAME is set: \
                     set deliver_to = \"USER\" in the account",
                    wire.url
                ))
            })?,
        };
        Ok(Wired {
            wire: wire.clone(),
            lmtp,
            timeout,
            recipient,
            session: None,
        })
    }

    fn what(&self) -> String {
        format!(
            "{} {}",
            if self.lmtp { "LMTP" } else { "SMTP" },
            self.wire.url
        )
    }

    fn transport_error(&self, doing: &str, e: std::io::Error) -> Error {
        Error::transport(
            ExitKind::TempFail,
            format!("{}: the connection failed while {doing}; the message stays on the server for the next sync", self.what()),
            e,
        )
    }

    fn connect(&self) -> Result<Session> {
        let conn = match &self.wire.endpoint {
            Endpoint::Unix(path) => {
                let s = UnixStream::connect(path).map_err(|e| {
                    Error::with_source(
                        ExitKind::Unavailable,
                        format!("cannot connect to the LMTP socket {}", path.display()),
                        e,
                    )
                })?;
                let _ = s.set_read_timeout(Some(self.timeout));
                let _ = s.set_write_timeout(Some(self.timeout));
                Conn::Unix(s)
            }
            Endpoint::Tcp {
                host,
                port,
                implicit_tls,
            } => {
                let tcp = net::connect(host, *port, self.timeout)?;
                if *implicit_tls {
                    let tls = TlsContext::new(&TlsTrust::default())?;
                    Conn::Net(tls.wrap_implicit(tcp, host, "use smtp:// for this port")?)
                } else {
                    Conn::Net(Stream::Plain(tcp))
                }
            }
        };
        let mut session = Session {
            io: BufReader::new(conn),
            offers: Offers::default(),
        };
        let greeting = self.read_reply(&mut session, "reading the greeting")?;
        if greeting.code != 220 {
            return Err(Error::refused(
                ExitKind::Unavailable,
                format!(
                    "{} refused the connection: {} {}",
                    self.what(),
                    greeting.code,
                    greeting.text
                ),
                None,
                greeting.text,
            ));
        }
        self.hello(&mut session)?;
        if let Endpoint::Tcp {
            host,
            implicit_tls: false,
            ..
        } = &self.wire.endpoint
        {
            if !self.lmtp && session.offers.starttls && !is_loopback(host) {
                self.command(&mut session, "STARTTLS", "STARTTLS", 220)?;
                let Conn::Net(stream) = session.io.into_inner() else {
                    unreachable!("TCP endpoints have network streams")
                };
                let tcp = stream.into_plain().expect("STARTTLS on a plain stream");
                let tls = TlsContext::new(&TlsTrust::default())?.wrap(tcp, host)?;
                session = Session {
                    io: BufReader::new(Conn::Net(tls)),
                    offers: Offers::default(),
                };
                self.hello(&mut session)?;
            }
        }
        Ok(session)
    }

    fn hello(&self, session: &mut Session) -> Result<()> {
        let verb = if self.lmtp { "LHLO" } else { "EHLO" };
        let name = hostname();
        let reply = self.command(session, &format!("{verb} {name}"), verb, 250)?;
        let mut offers = Offers::default();
        for line in reply.text.lines().skip(1) {
            let word = line
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            match word.as_str() {
                "PIPELINING" => offers.pipelining = true,
                "8BITMIME" => offers.eight_bit = true,
                "SMTPUTF8" => offers.smtputf8 = true,
                "STARTTLS" => offers.starttls = true,
                _ => {}
            }
        }
        session.offers = offers;
        Ok(())
    }

    /// Sends one command and reads its reply, which must have `want`'s
    /// first digit.
    fn command(&self, session: &mut Session, line: &str, verb: &str, want: u16) -> Result<Reply> {
        self.send(session, &format!("{line}\r\n"), verb)?;
        let reply = self.read_reply(session, verb)?;
        if reply.code / 100 != want / 100 {
            return Err(self.refusal(verb, &reply));
        }
        Ok(reply)
    }

    fn send(&self, session: &mut Session, text: &str, doing: &str) -> Result<()> {
        let io = session.io.get_mut();
        io.write_all(text.as_bytes())
            .and_then(|_| io.flush())
            .map_err(|e| self.transport_error(&format!("sending {doing}"), e))
    }

    fn refusal(&self, verb: &str, reply: &Reply) -> Error {
        let (kind, then) = if reply.code / 100 == 4 {
            (
                ExitKind::TempFail,
                "a temporary failure; the message stays on the server for the next sync",
            )
        } else {
            (ExitKind::Io, "the message stays on the server")
        };
        Error::refused(
            kind,
            format!(
                "{} answered {verb} with {} {} ({then})",
                self.what(),
                reply.code,
                reply.text.replace('\n', " / ")
            ),
            None,
            reply.text.clone(),
        )
    }

    fn read_reply(&self, session: &mut Session, doing: &str) -> Result<Reply> {
        let mut text = String::new();
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = (&mut session.io)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut line)
                .map_err(|e| self.transport_error(&format!("reading the reply to {doing}"), e))?;
            if n == 0 {
                return Err(self.transport_error(
                    &format!("reading the reply to {doing}"),
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            if n > MAX_LINE || !line.ends_with(b"\n") {
                return Err(self.protocol(format!("a reply line to {doing} longer than 64 KiB")));
            }
            let s = String::from_utf8_lossy(&line);
            let s = s.trim_end_matches(['\r', '\n']);
            let code = s
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|c| (200..600).contains(c))
                .ok_or_else(|| {
                    self.protocol(format!("a reply to {doing} without a code: {s:?}"))
                })?;
            if !text.is_empty() {
                text.push('\n');
            }
            // The server's words reach the terminal: no control
            // characters of its own.
            for c in s.get(4..).unwrap_or("").chars() {
                if c.is_control() {
                    text.extend(c.escape_default());
                } else {
                    text.push(c);
                }
            }
            match s.as_bytes().get(3) {
                Some(b'-') => continue,
                None | Some(b' ') => return Ok(Reply { code, text }),
                _ => return Err(self.protocol(format!("a malformed reply to {doing}: {s:?}"))),
            }
        }
    }

    fn protocol(&self, what: String) -> Error {
        Error::new(
            ExitKind::Protocol,
            format!("{} broke the protocol: {what}", self.what()),
        )
    }

    /// One transaction on an open session. `Ok(None)`: delivered; the
    /// server refused before or after the data: `Ok(Some(error))`, the
    /// session still in step.
    fn transaction(
        &self,
        session: &mut Session,
        sender: &str,
        head: &[u8],
        body: &mut dyn Read,
    ) -> Result<std::result::Result<u64, Error>> {
        let utf8 = session.offers.smtputf8 && !(sender.is_ascii() && self.recipient.is_ascii());
        let mut params = String::new();
        if session.offers.eight_bit {
            params.push_str(" BODY=8BITMIME");
        }
        if utf8 {
            params.push_str(" SMTPUTF8");
        }
        let mail = format!("MAIL FROM:<{sender}>{params}\r\n");
        let rcpt = format!("RCPT TO:<{}>\r\n", self.recipient);
        let replies = if session.offers.pipelining {
            self.send(session, &format!("{mail}{rcpt}DATA\r\n"), "MAIL FROM")?;
            let m = self.read_reply(session, "MAIL FROM")?;
            let r = self.read_reply(session, "RCPT TO")?;
            let d = self.read_reply(session, "DATA")?;
            [Some(m), Some(r), Some(d)]
        } else {
            let mut out = [None, None, None];
            for (i, (text, verb)) in [
                (mail.as_str(), "MAIL FROM"),
                (rcpt.as_str(), "RCPT TO"),
                ("DATA\r\n", "DATA"),
            ]
            .into_iter()
            .enumerate()
            {
                self.send(session, text, verb)?;
                let reply = self.read_reply(session, verb)?;
                let stop = !reply.ok();
                out[i] = Some(reply);
                if stop {
                    break;
                }
            }
            out
        };
        for (reply, verb) in replies.iter().zip(["MAIL FROM", "RCPT TO", "DATA"]) {
            let Some(reply) = reply else { break };
            let fine = if verb == "DATA" {
                reply.code == 354
            } else {
                reply.code / 100 == 2
            };
            if !fine {
                let refused = self.refusal(verb, reply);
                if replies[2].as_ref().is_some_and(|d| d.code == 354) {
                    // DATA went through though a command before it failed
                    // (pipelined): an empty message ends it, refused for
                    // want of recipients.
                    self.send(session, ".\r\n", "the end of the data")?;
                    self.read_reply(session, "the end of the data")?;
                }
                self.command(session, "RSET", "RSET", 250)?;
                // The rest of the message is read, so the source stays in
                // step with its reply.
                let _ = std::io::copy(body, &mut std::io::sink());
                return Ok(Err(refused));
            }
        }
        let written = self.stream_data(session, head, body)?;
        let reply = self.read_reply(session, "the end of the data")?;
        if reply.code / 100 == 2 {
            Ok(Ok(written))
        } else {
            let refused = self.refusal("the message", &reply);
            self.command(session, "RSET", "RSET", 250)?;
            Ok(Err(refused))
        }
    }

    /// Writes `head` then `body` as DATA: CRLF line ends, dot-stuffed, a
    /// final line end added if missing, then the final dot. Returns the
    /// message's bytes (LF ends, as the other targets count them).
    fn stream_data(&self, session: &mut Session, head: &[u8], body: &mut dyn Read) -> Result<u64> {
        let mut out = Vec::with_capacity(DATA_BLOCK + DATA_BLOCK / 2);
        let mut buf = vec![0u8; DATA_BLOCK];
        let mut at_line_start = true;
        let mut total = 0u64;
        let mut last = b'\n';
        let mut feed = |chunk: &[u8], out: &mut Vec<u8>| {
            for &b in chunk {
                if at_line_start && b == b'.' {
                    out.push(b'.');
                }
                if b == b'\n' {
                    out.push(b'\r');
                }
                out.push(b);
                at_line_start = b == b'\n';
            }
        };
        if !head.is_empty() {
            feed(head, &mut out);
            total += head.len() as u64;
            last = head[head.len() - 1];
        }
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // The source failed: the final dot is never sent, so the
                // server delivers nothing; the connection is dropped.
                Err(e) => {
                    return Err(Error::with_source(
                        ExitKind::TempFail,
                        "receiving the message",
                        e,
                    ))
                }
            };
            feed(&buf[..n], &mut out);
            total += n as u64;
            last = buf[n - 1];
            if out.len() >= DATA_BLOCK {
                session
                    .io
                    .get_mut()
                    .write_all(&out)
                    .map_err(|e| self.transport_error("sending the message", e))?;
                out.clear();
            }
        }
        if total > 0 && last != b'\n' {
            feed(b"\n", &mut out);
            total += 1;
        }
        out.extend_from_slice(b".\r\n");
        let io = session.io.get_mut();
        io.write_all(&out)
            .and_then(|_| io.flush())
            .map_err(|e| self.transport_error("sending the message", e))?;
        Ok(total)
    }
}

impl Delivery for Wired {
    fn deliver(&mut self, _info: &MessageInfo, body: &mut dyn Read) -> Result<u64> {
        let head = read_header_block(body)
            .map_err(|e| Error::with_source(ExitKind::TempFail, "reading the message", e))?;
        let sender = match return_path(&head) {
            Some(s) if s != "MAILER-DAEMON" => s,
            _ => String::new(),
        };
        let mut session = match self.session.take() {
            Some(s) => s,
            // A refusal here (greeting, LHLO, STARTTLS) is about the
            // server, not this message: it stops the account.
            None => self.connect().map_err(|e| e.with_origin(Origin::Other))?,
        };
        match self.transaction(&mut session, &sender, &head, body) {
            Ok(Ok(n)) => {
                self.session = Some(session);
                Ok(n)
            }
            Ok(Err(refused)) => {
                self.session = Some(session);
                Err(refused)
            }
            // The session is out of step or gone: a new one for the next.
            Err(e) => Err(e),
        }
    }

    fn commit(
        &mut self,
        _journal: &mut dyn FnMut(&[PendingEntry]) -> Result<()>,
    ) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn rollback(&mut self) {
        // Delivered is delivered: the server cannot take a message back.
    }

    fn destination(&self, _name: Option<&str>) -> String {
        self.what()
    }

    fn batch_limit(&self) -> usize {
        // Each delivery is final at the 250: record it at once too.
        1
    }
}

impl Drop for Wired {
    fn drop(&mut self) {
        if let Some(mut session) = self.session.take() {
            let _ = self.send(&mut session, "QUIT\r\n", "QUIT");
            let _ = self.read_reply(&mut session, "QUIT");
        }
    }
}

/// The user name whose mailbox `deliver_to` defaults to.
fn local_user() -> Option<String> {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.trim().is_empty())
}

fn hostname() -> String {
    let name = rustix::system::uname();
    let name = name.nodename().to_string_lossy().into_owned();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        "localhost".to_string()
    } else {
        name
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
