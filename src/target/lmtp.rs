//! Delivery to a mail server's own delivery: LMTP (RFC 2033), over a unix
//! socket or TCP, or SMTP (`smtp://`, `smtps://`), the same client with
//! EHLO and one reply after the data.
//!
//! A relay that is not on this machine, or that is logged in to
//! (`smtp_user`), is spoken to over TLS only: `smtps://`, or STARTTLS on
//! `smtp://`, which is then required (a relay that does not offer it is
//! refused, never used in clear). Its certificate is checked as a
//! source's is (`smtp_ca_file`, `smtp_tls_fingerprint`). AUTH PLAIN,
//! LOGIN or CRAM-MD5 (RFC 4954) follow.
//!
//! Where the server offers CHUNKING (RFC 3030) the message goes in BDAT
//! chunks of a fixed size, with CRLF line ends and no dot-stuffing, the
//! last one `BDAT n LAST`; otherwise DATA.
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

use super::{read_header_block, return_path, Delivered, Delivery, MessageInfo};
use crate::config::secret::Secret;
use crate::config::{Account, Endpoint, SmtpAuth, SmtpLogin, Wire};
use crate::error::{Error, ExitKind, Origin, Result};
use crate::net::{self, Stream, TlsContext};
use crate::source::connect::ConnectOptions;
use crate::source::pop3::auth;
use crate::source::Probe;
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

impl Conn {
    fn stream(&self) -> Option<&Stream> {
        match self {
            Conn::Unix(_) => None,
            Conn::Net(s) => Some(s),
        }
    }

    fn is_tls(&self) -> bool {
        self.stream().is_some_and(Stream::is_tls)
    }

    fn tls_description(&self) -> Option<String> {
        self.stream().and_then(Stream::tls_description)
    }

    fn peer_certificates(&self) -> Vec<Vec<u8>> {
        self.stream()
            .map(Stream::peer_certificates)
            .unwrap_or_default()
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
    chunking: bool,
    /// The SASL mechanisms of `AUTH`, upper-cased.
    auth: Vec<String>,
    /// Every line after the first, as the server wrote it (escaped).
    lines: Vec<String>,
}

struct Session {
    io: BufReader<Conn>,
    offers: Offers,
    /// The greeting's text.
    greeting: String,
}

pub struct Wired {
    wire: Wire,
    lmtp: bool,
    timeout: Duration,
    /// Limit for `smtp_password_command`.
    command_timeout: Duration,
    recipient: String,
    /// `-vv`: the conversation on stderr under this label, secrets
    /// replaced by `***`.
    trace: Option<String>,
    connect_opts: ConnectOptions,
    account: String,
    session: Option<Session>,
}

impl Wired {
    /// No connection yet: the first message opens it, so a sync with
    /// nothing to deliver never talks to the server.
    pub fn new(wire: &Wire, lmtp: bool, account: &Account, opts: &ConnectOptions) -> Result<Wired> {
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
        let mut wired = Wired::prober(wire, lmtp, account, opts);
        wired.recipient = recipient;
        Ok(wired)
    }

    /// For [`Wired::probe`] only: no recipient, no message.
    pub fn prober(wire: &Wire, lmtp: bool, account: &Account, opts: &ConnectOptions) -> Wired {
        let label = format!("[{} {}]", account.name, if lmtp { "lmtp" } else { "smtp" });
        Wired {
            wire: wire.clone(),
            lmtp,
            timeout: account.timeout,
            command_timeout: account.command_timeout,
            recipient: String::new(),
            trace: opts.trace.then_some(label),
            connect_opts: opts.clone(),
            account: account.name.clone(),
            session: None,
        }
    }

    /// What `popfetch info` shows: connects, greets and reads the
    /// capabilities (after STARTTLS when the connection needs it),
    /// accepting any certificate to show it with its verdict, and leaves:
    /// no login, no message.
    pub fn probe(&self) -> Result<Probe> {
        let tls = TlsContext::for_probe(&self.wire.trust)?;
        let mut session = self.reach(&tls)?;
        let probe = Probe {
            greeting: session.greeting.clone(),
            capabilities: Some(session.offers.lines.clone()),
            tls: session.io.get_ref().tls_description(),
            peer_certificates: session.io.get_ref().peer_certificates(),
            trusted: if session.io.get_ref().is_tls() {
                tls.verdict()
            } else {
                None
            },
        };
        let _ = self.send(&mut session, "QUIT\r\n", "QUIT");
        let _ = self.read_reply(&mut session, "QUIT");
        Ok(probe)
    }

    /// Whether this connection must be encrypted before anything but
    /// EHLO goes over it: a relay elsewhere, a login, or trust settings
    /// that say TLS is expected.
    fn needs_tls(&self) -> bool {
        match &self.wire.endpoint {
            Endpoint::Unix(_) => false,
            Endpoint::Tcp { host, .. } => {
                !self.lmtp
                    && (!is_loopback(host)
                        || self.wire.login.is_some()
                        || self.wire.trust.ca_file.is_some()
                        || !self.wire.trust.fingerprints.is_empty())
            }
        }
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
        self.connect_opts
            .verbose
            .say(|| format!("{}: connecting to {}", self.account, self.what()));
        let tls = TlsContext::new(&self.wire.trust)?.for_account(&self.account);
        let mut session = self.reach(&tls)?;
        self.connect_opts
            .verbose
            .say(|| match session.io.get_ref().tls_description() {
                Some(t) => format!("{}: connected to {}, {t}", self.account, self.what()),
                None => format!(
                    "{}: connected to {}, not encrypted",
                    self.account,
                    self.what()
                ),
            });
        if let Some(login) = &self.wire.login {
            self.login(&mut session, login)?;
        }
        Ok(session)
    }

    /// Connects and greets: TLS from the first byte (`smtps://`), or
    /// STARTTLS when the connection [needs it](Wired::needs_tls), then
    /// LHLO/EHLO again.
    fn reach(&self, tls: &TlsContext) -> Result<Session> {
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
                    Conn::Net(tls.wrap_implicit(tcp, host, "use smtp:// for this port")?)
                } else {
                    Conn::Net(Stream::Plain(tcp))
                }
            }
        };
        let mut session = Session {
            io: BufReader::new(conn),
            offers: Offers::default(),
            greeting: String::new(),
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
        session.greeting = greeting.text.replace('\n', " / ");
        self.hello(&mut session)?;
        if let Endpoint::Tcp {
            host,
            implicit_tls: false,
            ..
        } = &self.wire.endpoint
        {
            if self.needs_tls() {
                if !session.offers.starttls {
                    let why = if self.wire.login.is_some() {
                        "the password would cross the network in clear"
                    } else if !is_loopback(host) {
                        "the mail would cross the network in clear"
                    } else {
                        "smtp_ca_file/smtp_tls_fingerprint ask for TLS"
                    };
                    return Err(Error::new(
                        ExitKind::NoPerm,
                        format!(
                            "{} does not offer STARTTLS, and {why}: use smtps:// with the relay's TLS port \
                             (usually 465), or a relay that offers STARTTLS",
                            self.what()
                        ),
                    ));
                }
                self.command(&mut session, "STARTTLS", "STARTTLS", 220)?;
                let Conn::Net(stream) = session.io.into_inner() else {
                    unreachable!("TCP endpoints have network streams")
                };
                // Anything the server sent before the handshake would be
                // an injected reply (the STARTTLS weakness of RFC 3207 §6):
                // BufReader's buffer is dropped with it.
                let tcp = stream.into_plain().expect("STARTTLS on a plain stream");
                let stream = tls.wrap(
                    tcp,
                    host,
                    net::Upgrade {
                        verb: "STARTTLS",
                        tls_port: 465,
                    },
                )?;
                session = Session {
                    io: BufReader::new(Conn::Net(stream)),
                    offers: Offers::default(),
                    greeting: session.greeting,
                };
                self.hello(&mut session)?;
            }
        }
        Ok(session)
    }

    /// AUTH (RFC 4954) with the mechanism `smtp_auth` names, or the first
    /// of PLAIN, LOGIN, CRAM-MD5 the relay offers. Only ever over TLS.
    fn login(&self, session: &mut Session, login: &SmtpLogin) -> Result<()> {
        let offered = |m: &str| session.offers.auth.iter().any(|o| o == m);
        let mech = match login.auth {
            SmtpAuth::Auto => ["PLAIN", "LOGIN", "CRAM-MD5"]
                .into_iter()
                .find(|m| offered(m)),
            SmtpAuth::Plain => Some("PLAIN").filter(|m| offered(m)),
            SmtpAuth::Login => Some("LOGIN").filter(|m| offered(m)),
            SmtpAuth::CramMd5 => Some("CRAM-MD5").filter(|m| offered(m)),
        };
        let Some(mech) = mech else {
            let offers = if session.offers.auth.is_empty() {
                "no AUTH at all".to_string()
            } else {
                format!("AUTH {}", session.offers.auth.join(" "))
            };
            let fix = match login.auth {
                SmtpAuth::Auto => "remove smtp_user if the relay takes mail without a login",
                _ => "set smtp_auth = \"auto\"",
            };
            return Err(Error::new(
                ExitKind::NoPerm,
                format!(
                    "{} offers {offers}, no login popfetch can use with smtp_auth = \"{}\": {fix}",
                    self.what(),
                    login.auth.name()
                ),
            ));
        };
        if !session.io.get_ref().is_tls() {
            // needs_tls() made sure of TLS before any login: a bug if not.
            return Err(Error::new(
                ExitKind::Internal,
                format!("{}: refusing to log in without TLS", self.what()),
            ));
        }
        let secret = login.secret(self.command_timeout)?;
        self.connect_opts.verbose.say(|| {
            format!(
                "{}: logging in to {} as {} ({mech})",
                self.account,
                self.what(),
                login.user
            )
        });
        let reply = match mech {
            "PLAIN" => {
                let response = auth::plain_response(&login.user, &secret);
                self.secret_line(session, "AUTH PLAIN ", &response, "AUTH")?
            }
            "LOGIN" => {
                let r = self.auth_step(session, "AUTH LOGIN\r\n", "AUTH LOGIN")?;
                let r = match r.code {
                    334 => self.auth_step(
                        session,
                        &format!("{}\r\n", auth::b64(login.user.as_bytes())),
                        "AUTH LOGIN",
                    )?,
                    _ => r,
                };
                match r.code {
                    334 => self.secret_line(
                        session,
                        "",
                        &Secret::new(auth::b64(secret.expose().as_bytes())),
                        "AUTH LOGIN",
                    )?,
                    _ => r,
                }
            }
            _ => {
                let r = self.auth_step(session, "AUTH CRAM-MD5\r\n", "AUTH CRAM-MD5")?;
                if r.code == 334 {
                    let challenge = auth::unb64(r.text.trim()).ok_or_else(|| {
                        self.protocol("a CRAM-MD5 challenge that is not base64".to_string())
                    })?;
                    let response = auth::cram_md5_response(&login.user, &secret, &challenge);
                    self.secret_line(session, "", &response, "AUTH CRAM-MD5")?
                } else {
                    r
                }
            }
        };
        match reply.code {
            235 => Ok(()),
            code if code / 100 == 4 => Err(Error::refused(
                ExitKind::TempFail,
                format!(
                    "{} could not log in {} now: {code} {} (a temporary failure; the mail stays on the server for the next sync)",
                    self.what(),
                    login.user,
                    reply.text.replace('\n', " / ")
                ),
                None,
                reply.text,
            )),
            code => Err(Error::refused(
                ExitKind::NoPerm,
                format!(
                    "{} refused the login as {}: {code} {}; check smtp_user and smtp_password \
                     (or what smtp_password_command prints){}",
                    self.what(),
                    login.user,
                    reply.text.replace('\n', " / "),
                    if login.auth == SmtpAuth::Auto {
                        ", or name the relay's method with smtp_auth"
                    } else {
                        ""
                    }
                ),
                None,
                reply.text,
            )),
        }
    }

    /// One step of a login whose line holds nothing secret.
    fn auth_step(&self, session: &mut Session, line: &str, verb: &str) -> Result<Reply> {
        self.send(session, line, verb)?;
        self.read_reply(session, verb)
    }

    /// Sends `prefix` and a secret as one line; the trace shows `***`.
    fn secret_line(
        &self,
        session: &mut Session,
        prefix: &str,
        secret: &Secret,
        verb: &str,
    ) -> Result<Reply> {
        if let Some(label) = &self.trace {
            eprintln!("{label} > {prefix}***");
        }
        let io = session.io.get_mut();
        io.write_all(prefix.as_bytes())
            .and_then(|_| io.write_all(secret.expose().as_bytes()))
            .and_then(|_| io.write_all(b"\r\n"))
            .and_then(|_| io.flush())
            .map_err(|e| self.transport_error(&format!("sending {verb}"), e))?;
        self.read_reply(session, verb)
    }

    fn hello(&self, session: &mut Session) -> Result<()> {
        let verb = if self.lmtp { "LHLO" } else { "EHLO" };
        let name = hostname();
        let reply = self.command(session, &format!("{verb} {name}"), verb, 250)?;
        let mut offers = Offers::default();
        for line in reply.text.lines().skip(1) {
            offers.lines.push(line.to_string());
            let mut words = line.split_whitespace();
            let word = words.next().unwrap_or("").to_ascii_uppercase();
            match word.as_str() {
                "PIPELINING" => offers.pipelining = true,
                "8BITMIME" => offers.eight_bit = true,
                "SMTPUTF8" => offers.smtputf8 = true,
                "STARTTLS" => offers.starttls = true,
                "CHUNKING" => offers.chunking = true,
                "AUTH" => offers.auth.extend(words.map(|w| w.to_ascii_uppercase())),
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
        if let Some(label) = &self.trace {
            for line in text.lines() {
                eprintln!("{label} > {line}");
            }
        }
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
            if let Some(label) = &self.trace {
                eprintln!("{label} < {}", crate::ui::term::escape_controls(s));
            }
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
        if session.offers.chunking {
            return self.chunked(session, &mail, &rcpt, head, body);
        }
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
        if let Some(label) = &self.trace {
            eprintln!("{label} > ({written} bytes of message)");
            eprintln!("{label} > .");
        }
        let reply = self.read_reply(session, "the end of the data")?;
        if reply.code / 100 == 2 {
            Ok(Ok(written))
        } else {
            let refused = self.refusal("the message", &reply);
            self.command(session, "RSET", "RSET", 250)?;
            Ok(Err(refused))
        }
    }

    /// One transaction with BDAT (RFC 3030): the message in chunks of
    /// about [`DATA_BLOCK`] bytes, CRLF line ends and nothing else changed
    /// (no dot-stuffing), a final line end added if missing as the other
    /// targets do, the last chunk `BDAT n LAST` (`BDAT 0 LAST` when the
    /// message ended exactly with the previous one). With PIPELINING, MAIL,
    /// RCPT and the first chunk go in one write; a refused MAIL or RCPT
    /// then has the server refuse that BDAT too (it reads the chunk all the
    /// same). After LAST an LMTP server replies once per recipient: one.
    fn chunked(
        &self,
        session: &mut Session,
        mail: &str,
        rcpt: &str,
        head: &[u8],
        body: &mut dyn Read,
    ) -> Result<std::result::Result<u64, Error>> {
        let mut chunker = Chunker::new(head, body);
        let mut chunk = Vec::with_capacity(2 * DATA_BLOCK + 2);
        let last = chunker.fill(&mut chunk)?;
        let first_bdat = bdat_line(chunk.len(), last);
        let mut envelope = Vec::new();
        if session.offers.pipelining {
            self.send_chunk(session, &format!("{mail}{rcpt}{first_bdat}"), &chunk)?;
            envelope.push((self.read_reply(session, "MAIL FROM")?, "MAIL FROM"));
            envelope.push((self.read_reply(session, "RCPT TO")?, "RCPT TO"));
        } else {
            for (line, verb) in [(mail, "MAIL FROM"), (rcpt, "RCPT TO")] {
                self.send(session, line, verb)?;
                let reply = self.read_reply(session, verb)?;
                let fine = reply.code / 100 == 2;
                envelope.push((reply, verb));
                if !fine {
                    break;
                }
            }
            if envelope.iter().all(|(r, _)| r.code / 100 == 2) {
                self.send_chunk(session, &first_bdat, &chunk)?;
            }
        }
        let envelope_refused = envelope
            .iter()
            .find(|(r, _)| r.code / 100 != 2)
            .map(|(r, verb)| self.refusal(verb, r));
        let sent_first = session.offers.pipelining || envelope_refused.is_none();
        let mut last = last;
        let mut refused = envelope_refused;
        if sent_first {
            let verb = if last { "BDAT LAST" } else { "BDAT" };
            let reply = self.read_reply(session, verb)?;
            if refused.is_none() && reply.code / 100 != 2 {
                refused = Some(self.refusal(if last { "the message" } else { "BDAT" }, &reply));
            }
        }
        while refused.is_none() && !last {
            chunk.clear();
            last = chunker.fill(&mut chunk)?;
            let verb = if last { "BDAT LAST" } else { "BDAT" };
            self.send_chunk(session, &bdat_line(chunk.len(), last), &chunk)?;
            let reply = self.read_reply(session, verb)?;
            if reply.code / 100 != 2 {
                refused = Some(self.refusal(if last { "the message" } else { "BDAT" }, &reply));
            }
        }
        match refused {
            None => Ok(Ok(chunker.total)),
            Some(refused) => {
                self.command(session, "RSET", "RSET", 250)?;
                // The rest of the message is read, so the source stays in
                // step with its reply.
                let _ = std::io::copy(body, &mut std::io::sink());
                Ok(Err(refused))
            }
        }
    }

    /// `command` (BDAT's line, maybe after MAIL and RCPT) and `chunk`, in
    /// one write.
    fn send_chunk(&self, session: &mut Session, command: &str, chunk: &[u8]) -> Result<()> {
        if let Some(label) = &self.trace {
            for line in command.lines() {
                eprintln!("{label} > {line}");
            }
            eprintln!("{label} > ({} bytes of message)", chunk.len());
        }
        let io = session.io.get_mut();
        io.write_all(command.as_bytes())
            .and_then(|_| io.write_all(chunk))
            .and_then(|_| io.flush())
            .map_err(|e| self.transport_error("sending the message", e))
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

fn bdat_line(len: usize, last: bool) -> String {
    if last {
        format!("BDAT {len} LAST\r\n")
    } else {
        format!("BDAT {len}\r\n")
    }
}

/// The message as BDAT chunks: the header block already read, then the
/// body, LF turned into CRLF, a final line end added if missing.
struct Chunker<'a> {
    head: &'a [u8],
    body: &'a mut dyn Read,
    buf: Box<[u8]>,
    /// The message's bytes (LF ends, as the other targets count them).
    total: u64,
    last: u8,
    done: bool,
}

impl<'a> Chunker<'a> {
    fn new(head: &'a [u8], body: &'a mut dyn Read) -> Chunker<'a> {
        Chunker {
            head,
            body,
            buf: vec![0u8; DATA_BLOCK].into_boxed_slice(),
            total: 0,
            last: b'\n',
            done: false,
        }
    }

    fn push(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let mut rest = data;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            out.extend_from_slice(&rest[..i]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[i + 1..];
        }
        out.extend_from_slice(rest);
        if let Some(&b) = data.last() {
            self.last = b;
        }
        self.total += data.len() as u64;
    }

    /// Appends the next chunk to `out` (at least [`DATA_BLOCK`] bytes
    /// unless the message ends); true when it is the last.
    fn fill(&mut self, out: &mut Vec<u8>) -> Result<bool> {
        if !self.head.is_empty() {
            let head = std::mem::take(&mut self.head);
            self.push(head, out);
        }
        while out.len() < DATA_BLOCK && !self.done {
            let n = match self.body.read(&mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    if self.total > 0 && self.last != b'\n' {
                        out.extend_from_slice(b"\r\n");
                        self.total += 1;
                    }
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // The source failed: LAST is never sent, so the server
                // delivers nothing; the connection is dropped.
                Err(e) => {
                    return Err(Error::with_source(
                        ExitKind::TempFail,
                        "receiving the message",
                        e,
                    ))
                }
            };
            let buf = std::mem::take(&mut self.buf);
            self.push(&buf[..n], out);
            self.buf = buf;
        }
        Ok(self.done)
    }
}

impl Delivery for Wired {
    fn deliver(&mut self, _info: &MessageInfo, body: &mut dyn Read) -> Result<Delivered> {
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
            Ok(Ok(_written)) => {
                self.session = Some(session);
                Ok(Delivered::Stored)
            }
            Ok(Err(refused)) => {
                self.session = Some(session);
                // 4xx: try later, so the account stops here (75) and the
                // message stays unseen; 5xx: this message only.
                if refused.kind() == ExitKind::TempFail {
                    Err(refused)
                } else {
                    Ok(Delivered::Refused(refused))
                }
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
pub(crate) fn local_user() -> Option<String> {
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

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::path::Path;

    use super::*;
    use crate::config::Target;

    fn wired(target: &str) -> Wired {
        let text = format!(
            "[accounts.a]\nhost = \"pop.example.com\"\nuser = \"alice\"\n{target}\ndeliver_to = \"bob\"\n"
        );
        let c = crate::config::parse(&text, Path::new("/etc/popfetch/config.toml")).unwrap();
        let a = &c.accounts[0];
        match &a.target {
            Target::Smtp(w) => Wired::new(w, false, a, &ConnectOptions::default()).unwrap(),
            Target::Lmtp(w) => Wired::new(w, true, a, &ConnectOptions::default()).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    const LOGIN: &str = "smtp_user = \"u\"\nsmtp_password = \"hunter2\"";

    #[test]
    fn tls_is_required_off_this_machine_with_a_login_or_with_trust_settings() {
        assert!(wired("smtp = \"smtp://mail.example.com\"").needs_tls());
        assert!(wired("smtp = \"smtp://192.0.2.1:587\"").needs_tls());
        assert!(!wired("smtp = \"smtp://localhost\"").needs_tls());
        assert!(!wired("smtp = \"smtp://127.0.0.1:2525\"").needs_tls());
        assert!(!wired("smtp = \"smtp://[::1]:25\"").needs_tls());
        assert!(wired(&format!("smtp = \"smtp://127.0.0.1\"\n{LOGIN}")).needs_tls());
        assert!(wired("smtp = \"smtp://localhost\"\nsmtp_ca_file = \"/ca.pem\"").needs_tls());
        // LMTP is this machine's own delivery: as before, no TLS.
        assert!(!wired("lmtp = \"unix:/run/dovecot/lmtp\"").needs_tls());
    }

    #[test]
    fn no_auth_is_ever_sent_over_a_connection_without_tls() {
        let w = wired(&format!("smtp = \"smtp://mail.example.com\"\n{LOGIN}"));
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let mut session = Session {
            io: BufReader::new(Conn::Unix(ours)),
            offers: Offers {
                auth: vec!["PLAIN".into(), "LOGIN".into()],
                ..Offers::default()
            },
            greeting: String::new(),
        };
        let login = w.wire.login.clone().unwrap();
        let err = w.login(&mut session, &login).unwrap_err();
        assert!(err.to_string().contains("without TLS"), "{err}");
        drop(session);
        let mut sent = Vec::new();
        theirs.read_to_end(&mut sent).unwrap();
        assert!(sent.is_empty(), "{:?}", String::from_utf8_lossy(&sent));
    }

    #[test]
    fn chunks_have_crlf_no_dot_stuffing_and_a_final_line_end() {
        let head = b"Subject: x\n\n".to_vec();
        let mut body: &[u8] = b".dot\n..two\r\nbare\rcr\nend";
        let mut c = Chunker::new(&head, &mut body);
        let mut out = Vec::new();
        assert!(c.fill(&mut out).unwrap());
        assert_eq!(
            out,
            b"Subject: x\r\n\r\n.dot\r\n..two\r\r\nbare\rcr\r\nend\r\n".to_vec()
        );
        assert_eq!(c.total, (head.len() + 23 + 1) as u64);
        // A big body: chunks of at least DATA_BLOCK, the last one short.
        let big = vec![b'a'; DATA_BLOCK * 2 + 10];
        let mut body: &[u8] = &big;
        let mut c = Chunker::new(b"", &mut body);
        let mut sizes = Vec::new();
        loop {
            let mut out = Vec::new();
            let last = c.fill(&mut out).unwrap();
            sizes.push(out.len());
            if last {
                break;
            }
        }
        assert_eq!(sizes.iter().sum::<usize>(), big.len() + 2);
        assert!(sizes[..sizes.len() - 1].iter().all(|&n| n >= DATA_BLOCK));
    }
}
