//! POP3 client (RFC 1939, 2449, 2595, 5034, 3206, 6856).
//!
//! The protocol state lives in the types: a [`Client`] is connected but not
//! logged in (it can ask CAPA, upgrade with STLS and log in); logging in
//! consumes it and yields a [`Session`], the only thing that can list, RETR
//! or DELE. Commands are values that write their exact line; arguments with
//! CR, LF or NUL never reach the wire.
//!
//! In the transaction state, with PIPELINING, commands go out in batches
//! without waiting for each reply. The window is small in bytes (a few KiB
//! of commands at most), far below any socket buffer, so our writes can
//! never block while the server waits for us to read: no deadlock.

pub mod auth;
pub mod codec;

use std::io::{self, BufRead, BufReader, Read};

use crate::config::secret::Secret;
use crate::error::{Error, ExitKind, Result};
use crate::net::{Stream, TlsContext, Transport, Upgrade};
use crate::ui::term;
use auth::AuthMethod;
use codec::{read_decoded, Capabilities, LineError, PairDecoder, RespCode, Status, Unstuffer};

/// How many pipelined commands may be outstanding. 256 RETR lines are
/// about 3 KiB, far below any socket buffer, so our writes never block
/// while the server waits for us to read its replies: no deadlock.
const PIPELINE_WINDOW: usize = 256;
/// Read buffer: large enough for bulk RETR throughput.
const READ_BUFFER: usize = 128 * 1024;

/// A POP3 command. `Display` gives the exact line (without CRLF);
/// [`Command::redacted`] the same with every secret replaced by `***`.
#[derive(Debug)]
pub enum Command<'a> {
    Capa,
    Stls,
    Utf8,
    User(&'a str),
    Pass(&'a Secret),
    Apop(&'a str, &'a Secret),
    /// `AUTH mech [initial-response]`.
    Auth(&'a str, Option<&'a Secret>),
    /// A line answering a `+` challenge.
    SaslResponse(&'a Secret),
    List,
    Uidl,
    Top(u32, u32),
    Retr(u32),
    Dele(u32),
    Quit,
}

impl Command<'_> {
    fn write(&self, out: &mut Vec<u8>, redact: bool) {
        let secret = |s: &Secret| -> String {
            if redact {
                "***".to_string()
            } else {
                s.expose().to_string()
            }
        };
        let line = match self {
            Command::Capa => "CAPA".to_string(),
            Command::Stls => "STLS".to_string(),
            Command::Utf8 => "UTF8".to_string(),
            Command::User(u) => format!("USER {u}"),
            Command::Pass(p) => format!("PASS {}", secret(p)),
            Command::Apop(u, d) => format!("APOP {u} {}", secret(d)),
            Command::Auth(m, None) => format!("AUTH {m}"),
            Command::Auth(m, Some(r)) => format!("AUTH {m} {}", secret(r)),
            Command::SaslResponse(r) => secret(r),
            Command::List => "LIST".to_string(),
            Command::Uidl => "UIDL".to_string(),
            Command::Top(n, k) => format!("TOP {n} {k}"),
            Command::Retr(n) => format!("RETR {n}"),
            Command::Dele(n) => format!("DELE {n}"),
            Command::Quit => "QUIT".to_string(),
        };
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    pub fn redacted(&self) -> String {
        let mut v = Vec::new();
        self.write(&mut v, true);
        String::from_utf8_lossy(&v).trim_end().to_string()
    }
}

/// Rejects an argument that would break the command line.
fn check_arg(what: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(Error::config(format!(
            "{what} must be non-empty and must not contain line breaks or NUL"
        )));
    }
    Ok(())
}

/// The byte stream with its read buffer and the per-connection trace.
struct Connection<S> {
    reader: BufReader<S>,
    out: Vec<u8>,
    line: Vec<u8>,
    /// Prefix for `-vv` protocol trace lines; `None`: no trace.
    trace: Option<String>,
    host: String,
}

impl<S: Transport> Connection<S> {
    fn queue(&mut self, cmd: &Command) {
        if let Some(label) = &self.trace {
            eprintln!("{label} > {}", cmd.redacted());
        }
        cmd.write(&mut self.out, false);
    }

    fn flush(&mut self) -> Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let stream = self.reader.get_mut();
        let res = stream.write_all(&self.out).and_then(|_| stream.flush());
        self.out.clear();
        res.map_err(|e| self.net_error("sending a command", e))
    }

    fn send(&mut self, cmd: &Command) -> Result<()> {
        self.queue(cmd);
        self.flush()
    }

    fn net_error(&self, what: &str, e: io::Error) -> Error {
        let kind = ExitKind::of_io(&e);
        let msg = match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                format!(
                    "{}: timed out {what} (raise `timeout` if the server is slow)",
                    self.host
                )
            }
            io::ErrorKind::UnexpectedEof => {
                format!(
                    "{}: the server closed the connection while {what}",
                    self.host
                )
            }
            _ => format!("{}: connection failed while {what}", self.host),
        };
        Error::transport(kind, msg, e)
    }

    fn line_error(&self, what: &str, e: LineError) -> Error {
        match e {
            LineError::Io(e) => self.net_error(what, e),
            LineError::Eof => self.net_error(what, io::ErrorKind::UnexpectedEof.into()),
            LineError::TooLong => Error::new(
                ExitKind::Protocol,
                format!(
                    "{}: protocol error while {what}: a line longer than {} KiB",
                    self.host,
                    codec::MAX_LINE / 1024
                ),
            ),
            LineError::BareLf => Error::new(
                ExitKind::Protocol,
                format!(
                    "{}: protocol error while {what}: the server ends lines with a bare LF; \
                     POP3 requires CRLF, and popfetch cannot frame messages safely without it",
                    self.host
                ),
            ),
            LineError::Garbage(g) => Error::new(
                ExitKind::Protocol,
                format!(
                    "{}: protocol error while {what}: expected +OK or -ERR, got {g:?}",
                    self.host
                ),
            ),
        }
    }

    /// Reads one status line.
    fn status(&mut self, what: &str) -> Result<Status> {
        let mut line = std::mem::take(&mut self.line);
        let res =
            codec::read_line(&mut self.reader, &mut line).and_then(|_| codec::parse_status(&line));
        if let Some(label) = &self.trace {
            eprintln!("{label} < {}", codec::printable(&line, 200));
        }
        self.line = line;
        res.map(escape_err_text)
            .map_err(|e| self.line_error(what, e))
    }

    /// Reads a status line and insists on `+OK`; a `-ERR` becomes an error
    /// classified by `phase`.
    fn expect_ok(&mut self, what: &str, phase: Phase) -> Result<String> {
        match self.status(what)? {
            Status::Ok(text) => Ok(text),
            Status::Err { code, text } => Err(server_error(&self.host, what, phase, code, &text)),
            Status::Continue(_) => Err(Error::new(
                ExitKind::Protocol,
                format!(
                    "{}: protocol error while {what}: unexpected `+` continuation",
                    self.host
                ),
            )),
        }
    }

    /// Reads the lines of a multi-line listing, calling `f` on each. A
    /// listing longer than [`codec::MAX_LISTING_ENTRIES`] entries or
    /// [`codec::MAX_LISTING_BYTES`] bytes is a protocol error.
    fn listing(&mut self, what: &str, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let mut line = std::mem::take(&mut self.line);
        let (mut entries, mut bytes) = (0usize, 0usize);
        loop {
            match codec::read_multiline_line(&mut self.reader, &mut line) {
                Ok(true) => {
                    entries += 1;
                    bytes += line.len() + 2;
                    if entries > codec::MAX_LISTING_ENTRIES || bytes > codec::MAX_LISTING_BYTES {
                        self.line = line;
                        return Err(Error::new(
                            ExitKind::Protocol,
                            format!(
                                "{}: protocol error while {what}: more than {} entries or {} MiB; \
                                 no real mailbox lists that much, so popfetch stops here",
                                self.host,
                                codec::MAX_LISTING_ENTRIES,
                                codec::MAX_LISTING_BYTES / (1024 * 1024)
                            ),
                        ));
                    }
                    if let Err(e) = f(&line) {
                        self.line = line;
                        return Err(e);
                    }
                }
                Ok(false) => break,
                Err(e) => {
                    self.line = line;
                    return Err(self.line_error(what, e));
                }
            }
        }
        self.line = line;
        Ok(())
    }

    /// Insists that nothing the server sent is left unread. Called where
    /// every reply asked for has been read (before DELE, before QUIT, before
    /// a RETR or TOP with none outstanding, after the last one): bytes there
    /// answer no command, so client and server are out of step, and the
    /// replies read so far may not belong to the commands they were taken
    /// for. Going on could mark or delete the wrong messages, so this is a
    /// protocol error.
    fn ensure_in_step(&self, when: &str) -> Result<()> {
        let mut probe = [0u8; 80];
        let pending: &[u8] = if !self.reader.buffer().is_empty() {
            self.reader.buffer()
        } else {
            // Bytes may have arrived after the last read: look without
            // waiting.
            let n = self.reader.get_ref().peek_unread(&mut probe);
            &probe[..n]
        };
        if pending.is_empty() {
            return Ok(());
        }
        Err(Error::new(
            ExitKind::Protocol,
            format!(
                "{}: protocol error {when}: the server sent data no command asked for (\"{}\"); \
                 client and server are out of step, so nothing more is marked or deleted in this session",
                self.host,
                codec::printable(pending, 80)
            ),
        ))
    }
}

/// A `-ERR` text ends up in errors and warnings on a terminal: its control
/// characters are escaped here, where every status line enters, so no path
/// can forget (a hostile server's escape sequences never reach the user).
fn escape_err_text(status: Status) -> Status {
    match status {
        Status::Err { code, text } => Status::Err {
            code: code.map(|c| match c {
                RespCode::Other(c) => RespCode::Other(term::escape_controls(&c)),
                c => c,
            }),
            text: term::escape_controls(&text),
        },
        other => other,
    }
}

/// Where in the dialogue a `-ERR` arrived: it decides the exit class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Greeting,
    Auth,
    Transaction,
}

fn server_error(host: &str, what: &str, phase: Phase, code: Option<RespCode>, text: &str) -> Error {
    let kind = match (&code, phase) {
        (Some(RespCode::SysTemp | RespCode::InUse | RespCode::LoginDelay), _) => ExitKind::TempFail,
        (Some(RespCode::Auth), _) => ExitKind::NoPerm,
        (Some(RespCode::SysPerm), _) => ExitKind::Unavailable,
        (_, Phase::Greeting) => ExitKind::Unavailable,
        (_, Phase::Auth) => ExitKind::NoPerm,
        (_, Phase::Transaction) => ExitKind::Protocol,
    };
    let hint = match (&code, phase) {
        (Some(RespCode::InUse), _) => " (another client is using the mailbox; try again later)",
        (Some(RespCode::LoginDelay), _) => {
            " (the server allows logins only every so often: run popfetch less frequently)"
        }
        (Some(RespCode::SysTemp), _) => " (a temporary problem on the server; try again later)",
        (Some(RespCode::Auth), _) | (None, Phase::Auth) => {
            " (authentication failed: check `user` and the password)"
        }
        _ => "",
    };
    let code_text = match &code {
        Some(RespCode::Other(c)) => format!("[{c}] "),
        Some(c) => format!("[{}] ", resp_code_name(c)),
        None => String::new(),
    };
    Error::refused(
        kind,
        format!("{host}: the server refused {what}: -ERR {code_text}{text}{hint}"),
        code,
        text,
    )
}

fn resp_code_name(c: &RespCode) -> &str {
    match c {
        RespCode::Auth => "AUTH",
        RespCode::SysTemp => "SYS/TEMP",
        RespCode::SysPerm => "SYS/PERM",
        RespCode::InUse => "IN-USE",
        RespCode::LoginDelay => "LOGIN-DELAY",
        RespCode::Utf8 => "UTF8",
        RespCode::Other(s) => s,
    }
}

/// Connected, not logged in. `S` is the byte stream: a real connection,
/// or a scripted one in unit tests.
pub struct Client<S = Stream> {
    conn: Connection<S>,
    greeting: String,
    capa: Capabilities,
}

impl<S: Transport> Client<S> {
    /// Reads the greeting from a fresh connection.
    pub fn new(stream: S, host: &str, trace: Option<String>) -> Result<Client<S>> {
        let mut conn = Connection {
            reader: BufReader::with_capacity(READ_BUFFER, stream),
            out: Vec::with_capacity(4096),
            line: Vec::new(),
            trace,
            host: host.to_string(),
        };
        let greeting = conn.expect_ok("the connection (greeting)", Phase::Greeting)?;
        Ok(Client {
            conn,
            greeting,
            capa: Capabilities::default(),
        })
    }

    pub fn greeting(&self) -> &str {
        &self.greeting
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

    /// Asks CAPA; a server without it (`-ERR`) leaves the set unknown.
    pub fn refresh_capa(&mut self) -> Result<&Capabilities> {
        self.capa = read_capa(&mut self.conn)?;
        Ok(&self.capa)
    }

    /// Upgrades the connection with STLS (RFC 2595) and asks CAPA again.
    /// A server that does not offer STLS is refused: never a silent downgrade.
    pub fn starttls(mut self, tls: &TlsContext) -> Result<Client<S>> {
        if self.capa.known && !self.capa.has("STLS") {
            return Err(Error::new(
                ExitKind::NoPerm,
                format!(
                    "{}: the server does not offer STLS, so tls = \"starttls\" cannot protect the password; \
                     use tls = \"implicit\" with the server's TLS port (usually 995) if it has one",
                    self.conn.host
                ),
            ));
        }
        self.conn.send(&Command::Stls)?;
        match self.conn.status("starting TLS (STLS)")? {
            Status::Ok(_) => {}
            _ => {
                return Err(Error::new(
                    ExitKind::NoPerm,
                    format!(
                        "{}: the server refused STLS, so tls = \"starttls\" cannot protect the password",
                        self.conn.host
                    ),
                ))
            }
        }
        // Anything already buffered was sent before TLS started and could
        // have been injected by an attacker (CVE-2011-0411 class): refuse.
        if !self.conn.reader.buffer().is_empty() {
            return Err(Error::new(
                ExitKind::Protocol,
                format!(
                    "{}: the server sent data after its STLS reply; refusing to continue",
                    self.conn.host
                ),
            ));
        }
        let Connection {
            reader,
            trace,
            host,
            ..
        } = self.conn;
        let stream = reader.into_inner().start_tls(
            tls,
            &host,
            Upgrade {
                verb: "STLS",
                tls_port: 995,
            },
        )?;
        let mut client = Client {
            conn: Connection {
                reader: BufReader::with_capacity(READ_BUFFER, stream),
                out: Vec::with_capacity(4096),
                line: Vec::new(),
                trace,
                host,
            },
            greeting: self.greeting,
            capa: Capabilities::default(),
        };
        client.refresh_capa()?;
        Ok(client)
    }

    /// The APOP timestamp of the greeting, if the server offers APOP.
    pub fn apop_timestamp(&self) -> Option<&str> {
        codec::apop_timestamp(&self.greeting)
    }

    /// Resolves `auth = "auto"` against what this server offers.
    pub fn choose_auth(&self, method: AuthMethod) -> Result<AuthMethod> {
        if method != AuthMethod::Auto {
            self.ensure_offered(method)?;
            return Ok(method);
        }
        let sasl = self.capa.sasl();
        let offer = auth::Offer {
            sasl: &sasl,
            apop: self.apop_timestamp().is_some(),
            user: !self.capa.known || self.capa.has("USER") || sasl.is_empty(),
            encrypted: self.is_tls(),
        };
        auth::choose(&offer).ok_or_else(|| {
            Error::new(
                ExitKind::NoPerm,
                format!(
                    "{}: the server offers no login method popfetch can use (SASL: {})",
                    self.conn.host,
                    sasl.join(" ")
                ),
            )
        })
    }

    /// Refuses an `auth` SASL mechanism that the server's CAPA does not
    /// list, before the password is fetched or anything is sent: the
    /// server's `-ERR` to it would read as a wrong password. Only a SASL
    /// line is evidence (without one, an old server may still take AUTH);
    /// USER is not always listed and APOP is offered by the greeting, which
    /// the login checks.
    fn ensure_offered(&self, method: AuthMethod) -> Result<()> {
        let Some(mech) = method.sasl_name() else {
            return Ok(());
        };
        if self.capa.args("SASL").is_none() {
            return Ok(());
        }
        let offered = self.capa.sasl();
        if offered.iter().any(|m| m == mech) {
            return Ok(());
        }
        let mut choices: Vec<String> = AuthMethod::ALL
            .iter()
            .filter(|(_, m)| match m.sasl_name() {
                Some(name) => offered.iter().any(|o| o == name),
                None => match m {
                    AuthMethod::User => self.capa.has("USER"),
                    AuthMethod::Apop => self.apop_timestamp().is_some(),
                    _ => false,
                },
            })
            .map(|(name, _)| format!("\"{name}\""))
            .collect();
        let offers = if offered.is_empty() {
            "it lists no SASL mechanism".to_string()
        } else {
            format!("it offers: {}", offered.join(" "))
        };
        let mut msg = format!(
            "{}: the server does not offer {mech} ({offers}); set auth = \"auto\"",
            self.conn.host
        );
        if !choices.is_empty() {
            let last = choices.pop().unwrap_or_default();
            let list = if choices.is_empty() {
                last
            } else {
                format!("{} or {last}", choices.join(", "))
            };
            msg.push_str(&format!(" or one it offers: {list}"));
        }
        if !self.is_tls() && self.capa.has("STLS") {
            msg.push_str(
                "; servers often offer more once the connection is encrypted: set tls = \"starttls\"",
            );
        }
        Err(Error::new(ExitKind::NoPerm, msg))
    }

    /// Logs in; on success the client becomes a session.
    pub fn login(mut self, method: AuthMethod, user: &str, secret: &Secret) -> Result<Session<S>> {
        check_arg("user", user)?;
        let method = self.choose_auth(method)?;
        if self.capa.has("UTF8") {
            // RFC 6856: without it some servers rewrite 8-bit headers. Only
            // valid before the login (the AUTHORIZATION state), where it
            // also lets a UTF-8 user name through; a refusal changes
            // nothing we need.
            self.conn.send(&Command::Utf8)?;
            let _ = self.conn.status("UTF8")?;
        }
        match method {
            AuthMethod::User => {
                self.conn.send(&Command::User(user))?;
                self.conn.expect_ok("USER", Phase::Auth)?;
                check_arg("the password", secret.expose())?;
                self.conn.send(&Command::Pass(secret))?;
                self.conn.expect_ok("the login (PASS)", Phase::Auth)?;
            }
            AuthMethod::Apop => {
                let stamp = self.apop_timestamp().ok_or_else(|| {
                    Error::new(
                        ExitKind::NoPerm,
                        format!(
                            "{}: auth = \"apop\" but the server's greeting has no APOP timestamp; choose another `auth`",
                            self.conn.host
                        ),
                    )
                })?;
                let digest = auth::apop_digest(stamp, secret);
                self.conn.send(&Command::Apop(user, &digest))?;
                self.conn.expect_ok("the login (APOP)", Phase::Auth)?;
            }
            AuthMethod::Plain => {
                let initial = auth::plain_response(user, secret);
                self.sasl("PLAIN", Some(initial), &mut |_| Ok(None))?;
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
                })?;
            }
            AuthMethod::CramMd5 => {
                self.sasl("CRAM-MD5", None, &mut |challenge| {
                    Ok(Some(auth::cram_md5_response(user, secret, challenge)))
                })?;
            }
            AuthMethod::XOAuth2 => {
                let initial = auth::xoauth2_response(user, secret);
                self.sasl("XOAUTH2", Some(initial), &mut |_| Ok(None))?;
            }
            AuthMethod::OAuthBearer => {
                let initial = auth::oauthbearer_response(user, secret);
                self.sasl("OAUTHBEARER", Some(initial), &mut |_| Ok(None))?;
            }
            AuthMethod::Auto => unreachable!("resolved above"),
        }
        let mut session = Session {
            conn: self.conn,
            capa: self.capa,
            retr_limit: None,
        };
        // Servers may advertise more once authenticated (RFC 2449 §5).
        let after = read_capa(&mut session.conn)?;
        if after.known {
            session.capa = after;
        }
        Ok(session)
    }

    /// Runs a SASL exchange (RFC 5034). `respond` turns each decoded `+`
    /// challenge into the next response; `None` when it has nothing more
    /// to say, which for the OAuth mechanisms means the server sent an
    /// error challenge: RFC 7628 §3.2.3 says to answer it with `AQ==` and
    /// read the final `-ERR`.
    fn sasl(
        &mut self,
        mech: &str,
        initial: Option<Secret>,
        respond: &mut dyn FnMut(&[u8]) -> Result<Option<Secret>>,
    ) -> Result<()> {
        // RFC 5034 §4: the command line may not exceed 255 octets; a longer
        // initial response goes after an empty challenge instead.
        let inline = initial
            .as_ref()
            .filter(|r| "AUTH ".len() + mech.len() + 1 + r.expose().len() + 2 <= 255);
        let mut pending = if inline.is_some() {
            None
        } else {
            initial.clone()
        };
        self.conn.send(&Command::Auth(mech, inline))?;
        let what = format!("the login (AUTH {mech})");
        let mut error_challenge: Option<String> = None;
        loop {
            match self.conn.status(&what)? {
                Status::Ok(_) => return Ok(()),
                Status::Err { code, text } => {
                    let mut err = server_error(&self.conn.host, &what, Phase::Auth, code, &text);
                    if let Some(detail) = error_challenge {
                        err = err.context(format!("server error details: {detail}"));
                    }
                    return Err(err);
                }
                Status::Continue(challenge) => {
                    let decoded = auth::unb64(&challenge).unwrap_or_default();
                    let answer = match pending.take() {
                        Some(initial) => Some(initial),
                        None => respond(&decoded)?,
                    };
                    match answer {
                        Some(a) => self.conn.send(&Command::SaslResponse(&a))?,
                        None => {
                            // An error challenge: keep what it says (OAuth
                            // servers send JSON), then end the exchange.
                            error_challenge = Some(term::escape_controls(
                                String::from_utf8_lossy(&decoded).trim(),
                            ));
                            let dummy = Secret::new(if mech == "XOAUTH2" { "" } else { "AQ==" });
                            self.conn.send(&Command::SaslResponse(&dummy))?;
                        }
                    }
                }
            }
        }
    }

    /// Says goodbye without logging in.
    pub fn quit(mut self) {
        let _ = self.conn.send(&Command::Quit);
        let _ = self.conn.status("QUIT");
    }
}

fn read_capa<S: Transport>(conn: &mut Connection<S>) -> Result<Capabilities> {
    conn.send(&Command::Capa)?;
    let mut caps = Capabilities::default();
    match conn.status("CAPA")? {
        Status::Ok(_) => {
            caps.known = true;
            conn.listing("reading the CAPA list", |line| {
                // Shown by `info` and in errors: escaped as it enters.
                let line = term::escape_controls(&String::from_utf8_lossy(line));
                caps.parse_line(line.as_bytes());
                Ok(())
            })?;
        }
        // An old server without CAPA: we know nothing and assume RFC 1939.
        Status::Err { .. } => {}
        Status::Continue(_) => {
            return Err(Error::new(
                ExitKind::Protocol,
                format!("{}: protocol error: `+` in reply to CAPA", conn.host),
            ))
        }
    }
    Ok(caps)
}

/// One entry of the mailbox listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub number: u32,
    pub size: u64,
    /// `None` when the server has no UIDL.
    pub uidl: Option<String>,
}

/// What happened to one pipelined RETR.
pub enum Retrieved<'a, 'b, S = Stream> {
    /// `+OK`: read the message from the body (to its end).
    Body(&'b mut Body<'a, S>),
    /// `-ERR`: the server would not give this message.
    Refused(String),
}

/// A multi-line response body as a `Read`: dot-unstuffed, LF line ends,
/// ends (returns 0) right after the terminator.
pub struct Body<'a, S = Stream> {
    reader: &'a mut BufReader<S>,
    unstuffer: Unstuffer,
    bytes: u64,
    /// A decoded byte a one-byte read had no room for; given out first.
    spilled: Option<u8>,
    /// A network failure seen while reading, kept so the caller can tell it
    /// from a local write failure.
    net_failure: Option<io::ErrorKind>,
    /// Most bytes a read may reach (see [`Session::limit_retr`]).
    limit: Option<u64>,
    over_limit: bool,
}

impl<S: Read> Body<'_, S> {
    /// The message's size so far as the server counts it: unstuffed, with
    /// CRLF line ends (what LIST announces for an honest server). Sizes
    /// shown to the user are this count, so they agree with `check`,
    /// `list` and `--dry-run`.
    pub fn octets(&self) -> u64 {
        self.bytes + self.unstuffer.line_ends()
    }

    pub fn is_complete(&self) -> bool {
        self.unstuffer.is_done() && self.spilled.is_none()
    }

    /// Whether the message grew past the session's
    /// [`Session::limit_retr`]: the size `LIST` announced is never trusted
    /// (SPEC §5), so the cap holds while the message streams. The reader
    /// got an error, never a cut message, and the rest of the body is
    /// skipped so the session goes on.
    pub fn over_limit(&self) -> bool {
        self.over_limit
    }

    fn drain(&mut self) -> io::Result<()> {
        self.limit = None;
        let mut sink = [0u8; 16 * 1024];
        while self.read(&mut sink)? > 0 {}
        Ok(())
    }
}

impl<S: Read> PairDecoder for Body<'_, S> {
    fn spilled(&mut self) -> &mut Option<u8> {
        &mut self.spilled
    }

    fn decode_into(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.unstuffer.is_done() {
                return Ok(0);
            }
            let input = codec::fill_message(&mut self.reader, &mut self.net_failure)?;
            let d = self.unstuffer.decode(input, buf);
            self.reader.consume(d.consumed);
            self.bytes += d.written as u64;
            if self.limit.is_some_and(|max| self.bytes > max) {
                self.over_limit = true;
                return Err(io::Error::other(format!(
                    "the message is larger than max_size ({})",
                    crate::ui::units::human_bytes(self.limit.unwrap_or_default())
                )));
            }
            if d.written > 0 || d.done {
                return Ok(d.written);
            }
        }
    }
}

impl<S: Read> Read for Body<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_decoded(self, buf)
    }
}

/// Logged in: the transaction state.
pub struct Session<S = Stream> {
    conn: Connection<S>,
    capa: Capabilities,
    /// Most bytes of one RETR body (see [`Session::limit_retr`]).
    retr_limit: Option<u64>,
}

impl<S: Transport> Session<S> {
    pub fn capabilities(&self) -> &Capabilities {
        &self.capa
    }

    pub fn host(&self) -> &str {
        &self.conn.host
    }

    pub fn pipelining(&self) -> bool {
        self.capa.has("PIPELINING")
    }

    fn window(&self) -> usize {
        if self.pipelining() {
            PIPELINE_WINDOW
        } else {
            1
        }
    }

    /// Caps every RETR body that follows at `max` bytes (`None`: no cap):
    /// a message that grows past it fails to read, with
    /// [`Body::over_limit`] set, and the rest of it is skipped.
    pub fn limit_retr(&mut self, max: Option<u64>) {
        self.retr_limit = max;
    }

    /// The whole mailbox: LIST and UIDL (both asked at once with
    /// PIPELINING). Messages are returned in number order. A server that
    /// refuses UIDL gives entries with `uidl: None`.
    pub fn listing(&mut self) -> Result<Vec<Listed>> {
        let host = self.conn.host.clone();
        let pipelined = self.pipelining();
        self.conn.queue(&Command::List);
        if pipelined {
            self.conn.queue(&Command::Uidl);
        }
        self.conn.flush()?;
        self.conn.expect_ok("LIST", Phase::Transaction)?;
        let mut entries: Vec<Listed> = Vec::new();
        self.conn.listing("reading the LIST listing", |line| {
            let (number, size) = codec::parse_list_line(line).ok_or_else(|| {
                Error::new(
                    ExitKind::Protocol,
                    format!(
                        "{host}: protocol error: malformed LIST line {:?}",
                        codec::printable(line, 80)
                    ),
                )
            })?;
            entries.push(Listed {
                number,
                size,
                uidl: None,
            });
            Ok(())
        })?;
        entries.sort_by_key(|e| e.number);
        entries.dedup_by_key(|e| e.number);

        if !pipelined {
            self.conn.send(&Command::Uidl)?;
        }
        match self.conn.status("UIDL")? {
            Status::Ok(_) => {
                let mut uidls: Vec<(u32, String)> = Vec::with_capacity(entries.len());
                self.conn.listing("reading the UIDL listing", |line| {
                    let parsed = codec::parse_uidl_line(line).ok_or_else(|| {
                        Error::new(
                            ExitKind::Protocol,
                            format!(
                                "{host}: protocol error: malformed UIDL line {:?}",
                                codec::printable(line, 80)
                            ),
                        )
                    })?;
                    // Checked as it arrives: an identity popfetch would
                    // store, compare and show must be what RFC 1939 allows.
                    if !codec::valid_uidl(&parsed.1) {
                        return Err(Error::new(
                            ExitKind::Protocol,
                            format!(
                                "{host}: protocol error: the server gave message {} the UIDL {:?}, \
                                 which RFC 1939 does not allow (1 to 70 characters from 0x21 to 0x7E); \
                                 the server is broken, so popfetch cannot tell its messages apart",
                                parsed.0,
                                codec::printable(parsed.1.as_bytes(), 80)
                            ),
                        ));
                    }
                    uidls.push(parsed);
                    Ok(())
                })?;
                for (number, uidl) in uidls {
                    if let Ok(i) = entries.binary_search_by_key(&number, |e| e.number) {
                        entries[i].uidl = Some(uidl);
                    }
                }
            }
            // A temporary refusal is not "no UIDL here": taking it as such
            // would key this session's messages by header digest and fetch
            // them all again once UIDL answers.
            Status::Err {
                code:
                    Some(
                        code @ (RespCode::SysTemp
                        | RespCode::SysPerm
                        | RespCode::InUse
                        | RespCode::LoginDelay),
                    ),
                text,
            } => {
                return Err(server_error(
                    &host,
                    "UIDL",
                    Phase::Transaction,
                    Some(code),
                    &text,
                ))
            }
            Status::Err { .. } => {}
            Status::Continue(_) => {
                return Err(Error::new(
                    ExitKind::Protocol,
                    format!("{host}: protocol error: `+` in reply to UIDL"),
                ))
            }
        }
        Ok(entries)
    }

    /// Retrieves `numbers` with RETR, pipelined, handing each reply to
    /// `on_message(index, reply)` in order. The callback must read a body to
    /// its end or fail.
    ///
    /// If the callback fails, the replies already requested are read and
    /// thrown away so the session stays usable (to commit and QUIT), and
    /// the callback's error is returned. A network failure inside a body is
    /// reported as the network error it is, not as the callback's.
    pub fn retr_many(
        &mut self,
        numbers: &[u32],
        on_message: &mut dyn FnMut(usize, Retrieved<'_, '_, S>) -> Result<()>,
    ) -> Result<()> {
        self.fetch_many(numbers, None, on_message)
    }

    /// Like [`Session::retr_many`] with `TOP n lines`.
    pub fn top_many(
        &mut self,
        numbers: &[u32],
        lines: u32,
        on_message: &mut dyn FnMut(usize, Retrieved<'_, '_, S>) -> Result<()>,
    ) -> Result<()> {
        self.fetch_many(numbers, Some(lines), on_message)
    }

    fn fetch_many(
        &mut self,
        numbers: &[u32],
        top_lines: Option<u32>,
        on_message: &mut dyn FnMut(usize, Retrieved<'_, '_, S>) -> Result<()>,
    ) -> Result<()> {
        let window = self.window();
        let verb = if top_lines.is_some() { "TOP" } else { "RETR" };
        let mut sent = 0;
        let mut failure: Option<Error> = None;
        let mut done = 0;
        while done < sent || (failure.is_none() && sent < numbers.len()) {
            // Refill the window when half of it is used up, not after every
            // reply: far fewer writes (and TLS records) for the same flow.
            if failure.is_none() && sent - done <= window / 2 {
                if sent == done {
                    // No reply is outstanding, so nothing may be waiting.
                    self.conn.ensure_in_step(&format!("before {verb}"))?;
                }
                while sent < numbers.len() && sent < done + window {
                    let cmd = match top_lines {
                        Some(k) => Command::Top(numbers[sent], k),
                        None => Command::Retr(numbers[sent]),
                    };
                    self.conn.queue(&cmd);
                    sent += 1;
                }
                self.conn.flush()?;
            }
            let what = format!("{verb} {}", numbers[done]);
            let status = self.conn.status(&what)?;
            let index = done;
            done += 1;
            match status {
                Status::Ok(_) => {
                    let mut body = Body {
                        spilled: None,
                        reader: &mut self.conn.reader,
                        unstuffer: Unstuffer::new(),
                        bytes: 0,
                        net_failure: None,
                        limit: None,
                        over_limit: false,
                    };
                    if failure.is_some() {
                        body.drain().map_err(|e| self.conn.net_error(&what, e))?;
                        continue;
                    }
                    if top_lines.is_none() {
                        body.limit = self.retr_limit;
                    }
                    let outcome = on_message(index, Retrieved::Body(&mut body));
                    if let Some(kind) = body.net_failure {
                        return Err(self.conn.net_error(
                            &format!("receiving message {}", numbers[index]),
                            kind.into(),
                        ));
                    }
                    let complete = body.is_complete();
                    if !complete {
                        body.drain().map_err(|e| self.conn.net_error(&what, e))?;
                    }
                    if let Err(e) = outcome {
                        failure = Some(e);
                    }
                }
                Status::Err { code, text } => {
                    if failure.is_some() {
                        continue;
                    }
                    // A temporary refusal is about the server, not this
                    // message: stop asking, and report it (SPEC §6: 75).
                    if matches!(
                        code,
                        Some(RespCode::SysTemp | RespCode::InUse | RespCode::LoginDelay)
                    ) {
                        failure = Some(server_error(
                            &self.conn.host,
                            &what,
                            Phase::Transaction,
                            code,
                            &text,
                        ));
                        continue;
                    }
                    let reason = match code {
                        Some(c) => format!("[{}] {text}", resp_code_name(&c)),
                        None => text,
                    };
                    if let Err(e) = on_message(index, Retrieved::Refused(reason)) {
                        failure = Some(e);
                    }
                }
                Status::Continue(_) => {
                    return Err(Error::new(
                        ExitKind::Protocol,
                        format!("{}: protocol error: `+` in reply to {what}", self.conn.host),
                    ))
                }
            }
        }
        // Every reply asked for has been read: anything more is a desync.
        if numbers.is_empty() {
            return Ok(());
        }
        self.conn
            .ensure_in_step(&format!("after the last {verb} reply"))?;
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Marks messages for deletion (pipelined). Returns, per message,
    /// whether the server accepted the DELE. Nothing is deleted until a
    /// clean QUIT.
    pub fn dele_many(&mut self, numbers: &[u32]) -> Result<Vec<bool>> {
        if numbers.is_empty() {
            return Ok(Vec::new());
        }
        self.conn.ensure_in_step("before DELE")?;
        let window = self.window();
        let mut accepted = Vec::with_capacity(numbers.len());
        let mut sent = 0;
        while accepted.len() < numbers.len() {
            while sent < numbers.len() && sent < accepted.len() + window {
                self.conn.queue(&Command::Dele(numbers[sent]));
                sent += 1;
            }
            self.conn.flush()?;
            let what = format!("DELE {}", numbers[accepted.len()]);
            match self.conn.status(&what)? {
                Status::Ok(_) => accepted.push(true),
                Status::Err { code, text } => {
                    if matches!(code, Some(RespCode::SysTemp)) {
                        // Drain the rest so QUIT still lines up, then fail.
                        let err =
                            server_error(&self.conn.host, &what, Phase::Transaction, code, &text);
                        while accepted.len() + 1 < sent {
                            accepted.push(false);
                            let _ = self.conn.status("DELE")?;
                        }
                        return Err(err);
                    }
                    accepted.push(false)
                }
                Status::Continue(_) => {
                    return Err(Error::new(
                        ExitKind::Protocol,
                        format!("{}: protocol error: `+` in reply to {what}", self.conn.host),
                    ))
                }
            }
        }
        Ok(accepted)
    }

    /// Ends the session. `Ok` means the server confirmed the update
    /// (deletions applied); anything else means deletions may not have
    /// happened and must not be assumed.
    pub fn quit(mut self) -> Result<()> {
        self.conn.ensure_in_step("before QUIT")?;
        self.conn.send(&Command::Quit)?;
        self.conn
            .expect_ok("QUIT (deleting messages)", Phase::Transaction)?;
        Ok(())
    }
}

impl<S: Read> crate::source::Message for Body<'_, S> {
    fn octets(&self) -> u64 {
        Body::octets(self)
    }

    fn over_limit(&self) -> bool {
        Body::over_limit(self)
    }
}

/// A POP3 session is a [`Source`](crate::source::Source): handles are
/// message numbers, ids are UIDLs.
impl<S: Transport> crate::source::Source for Session<S> {
    fn host(&self) -> &str {
        Session::host(self)
    }

    fn expires_what_is_fetched(&self) -> bool {
        self.capa
            .args("EXPIRE")
            .and_then(|args| args.first())
            .is_some_and(|days| days == "0")
    }

    fn listing(&mut self) -> Result<Vec<crate::source::Entry>> {
        Ok(Session::listing(self)?
            .into_iter()
            .map(|e| crate::source::Entry {
                handle: e.number,
                size: e.size,
                id: e.uidl,
            })
            .collect())
    }

    fn headers(&mut self, handles: &[u32], sink: &mut crate::source::Sink<'_>) -> Result<bool> {
        // A server that lists its capabilities without TOP has none; one
        // without CAPA is asked, and its refusals go to the sink.
        let caps = self.capabilities();
        if caps.known && !caps.has("TOP") {
            return Ok(false);
        }
        self.top(handles, 0, sink)?;
        Ok(true)
    }

    fn top(
        &mut self,
        handles: &[u32],
        lines: u32,
        sink: &mut crate::source::Sink<'_>,
    ) -> Result<()> {
        self.top_many(handles, lines, &mut |i, reply| sink(i, reply.into()))
    }

    fn fetch(
        &mut self,
        handles: &[u32],
        max_size: Option<u64>,
        sink: &mut crate::source::FetchSink<'_>,
    ) -> Result<()> {
        self.limit_retr(max_size);
        // DELE follows the fetch (before QUIT, when deletion takes
        // effect anyway): what the sink says of each message is not needed.
        self.retr_many(handles, &mut |i, reply| sink(i, reply.into()).map(|_| ()))
    }

    fn delete(&mut self, handles: &[u32]) -> Result<Vec<bool>> {
        self.dele_many(handles)
    }

    fn finish(self: Box<Self>) -> Result<()> {
        self.quit()
    }
}

impl<'b, S: Read> From<Retrieved<'_, 'b, S>> for crate::source::Fetched<'b> {
    fn from(reply: Retrieved<'_, 'b, S>) -> Self {
        match reply {
            Retrieved::Body(body) => crate::source::Fetched::Body(body),
            Retrieved::Refused(reason) => crate::source::Fetched::Refused(reason),
        }
    }
}

#[cfg(test)]
pub(crate) mod mock;
#[cfg(test)]
mod state_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn commands_are_exact_and_redacted() {
        let pw = Secret::new("hunter2");
        let mut out = Vec::new();
        Command::Pass(&pw).write(&mut out, false);
        assert_eq!(out, b"PASS hunter2\r\n");
        assert_eq!(Command::Pass(&pw).redacted(), "PASS ***");
        assert_eq!(
            Command::Auth("PLAIN", Some(&pw)).redacted(),
            "AUTH PLAIN ***"
        );
        assert_eq!(Command::Top(3, 0).redacted(), "TOP 3 0");
        assert!(check_arg("user", "a\r\nDELE 1").is_err());
        assert!(check_arg("user", "alice").is_ok());
    }

    #[test]
    fn error_classes_follow_response_codes() {
        let e = server_error("h", "PASS", Phase::Auth, None, "bad");
        assert_eq!(e.kind(), ExitKind::NoPerm);
        let e = server_error("h", "PASS", Phase::Auth, Some(RespCode::InUse), "locked");
        assert_eq!(e.kind(), ExitKind::TempFail);
        let e = server_error("h", "greeting", Phase::Greeting, None, "go away");
        assert_eq!(e.kind(), ExitKind::Unavailable);
        let e = server_error(
            "h",
            "greeting",
            Phase::Greeting,
            Some(RespCode::SysTemp),
            "later",
        );
        assert_eq!(e.kind(), ExitKind::TempFail);
        let e = server_error("h", "RETR 1", Phase::Transaction, None, "no");
        assert_eq!(e.kind(), ExitKind::Protocol);
        assert!(e.message().contains("-ERR no"));
        // The server's own words are kept apart from the message.
        assert_eq!(e.server_reply(), Some((None, "no")));
        let e = server_error("h", "PASS", Phase::Auth, Some(RespCode::InUse), "locked");
        assert_eq!(e.server_reply(), Some((Some(&RespCode::InUse), "locked")));
        assert!(!e.is_local() && !e.is_transport());
    }

    /// `Body` is a proper `Read`: any buffer size, including one byte
    /// (the unstuffer itself needs room for two), gives the same bytes.
    #[test]
    fn body_reads_the_same_with_any_buffer_size() {
        use crate::source::pop3::mock::read_in_sizes;
        use std::net::{TcpListener, TcpStream};
        let wire = b"a\r\n..dot\r\nx\ry\r\n\r\nend\r\n.\r\nNEXT";
        let want = b"a\n.dot\nx\ry\n\nend\n";
        for sizes in [&[1usize][..], &[2], &[1, 3, 1, 2], &[64]] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let mut server = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (client, _) = listener.accept().unwrap();
            server.write_all(wire).unwrap();
            let mut reader = BufReader::with_capacity(READ_BUFFER, Stream::Plain(client));
            let mut body = Body {
                spilled: None,
                reader: &mut reader,
                unstuffer: Unstuffer::new(),
                bytes: 0,
                net_failure: None,
                limit: None,
                over_limit: false,
            };
            let got = read_in_sizes(&mut body, sizes);
            assert_eq!(got, want, "buffer sizes {sizes:?}");
            assert!(body.is_complete());
            let mut rest = [0u8; 4];
            reader.read_exact(&mut rest).unwrap();
            assert_eq!(&rest, b"NEXT", "stops right after the terminator");
        }
    }
}
