//! A scripted, in-process POP3 server for integration tests.
//!
//! It speaks real POP3 (RFC 1939, 2449 CAPA, 2595 STLS, 5034 AUTH, 6856 UTF8,
//! OAuth 7628 / XOAUTH2), plain, with STLS or with implicit TLS, on
//! `127.0.0.1:<ephemeral>`, one thread per connection, and can inject faults
//! (drops, stalls, garbage, wrong sizes, ...). Everything it receives is logged
//! verbatim so tests can assert what the client did (and did not) send.
//!
//! Dropping the [`Server`] stops it: the listener thread exits, every client
//! socket is shut down and all connection threads are joined.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use md5::{Digest, Md5};

use super::certs::TestPki;

/// Longest line (command or SASL response) the server accepts.
pub const MAX_LINE: usize = 16 * 1024;
/// Upper bound of the bytes streamed by [`Fault::EndlessLine`].
pub const ENDLESS_LIMIT: usize = 100 * 1024 * 1024;

/// One message in the mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    pub uidl: String,
    /// Raw message bytes, LF or CRLF line endings.
    pub data: Vec<u8>,
    /// Sent as-is (see [`Msg::raw`]) instead of with LF turned into CRLF.
    pub raw: bool,
}

impl Msg {
    pub fn new(uidl: impl Into<String>, data: impl Into<Vec<u8>>) -> Msg {
        Msg {
            uidl: uidl.into(),
            data: data.into(),
            raw: false,
        }
    }

    /// A message whose bytes go on the wire as they are: a bare LF or CR
    /// stays bare, dots are stuffed only at the start of a CRLF line, and
    /// only a missing final CRLF is added (what a server that stores a
    /// message verbatim sends).
    pub fn raw(uidl: impl Into<String>, data: impl Into<Vec<u8>>) -> Msg {
        Msg {
            raw: true,
            ..Msg::new(uidl, data)
        }
    }

    /// The message as sent on the wire before dot-stuffing: CRLF line endings
    /// (raw messages: their own bytes), always ending in CRLF (unless empty).
    /// Its length is the LIST/STAT size.
    pub fn wire(&self) -> Vec<u8> {
        if self.raw {
            let mut out = self.data.clone();
            if !out.is_empty() && !out.ends_with(b"\r\n") {
                out.extend_from_slice(b"\r\n");
            }
            return out;
        }
        wire_form(&self.data)
    }

    /// Octets reported by LIST / STAT.
    pub fn size(&self) -> usize {
        self.wire().len()
    }
}

/// Transport security offered by the server.
#[derive(Clone, Debug)]
pub enum Tls {
    /// Plain text only (STLS answers -ERR).
    None,
    /// Plain text, STLS advertised (before TLS) and accepted.
    Stls(Arc<TestPki>),
    /// TLS from the first byte (port-995 style).
    Implicit(Arc<TestPki>),
}

/// Injected misbehaviour. Every fault applies on every connection until it is
/// changed with [`Server::set_faults`] / [`Server::clear_faults`].
#[derive(Clone, Debug)]
pub enum Fault {
    /// Close the socket when the K-th line (command or SASL response, counted
    /// per connection, 1-based) arrives — before answering it. Earlier answers
    /// are flushed first.
    DropAfterCommands(usize),
    /// RETR of message number `msg`: send `after_bytes` bytes of the response
    /// (status line included) then close the socket.
    DropInRetr { msg: usize, after_bytes: usize },
    /// On this verb (case-insensitive, e.g. "RETR") stop answering until the
    /// server is dropped.
    StallOnCommand(String),
    /// Send RETR responses `bytes_per_write` bytes at a time, sleeping
    /// `delay_ms` between writes.
    TrickleRetr {
        bytes_per_write: usize,
        delay_ms: u64,
    },
    /// Sleep `delay_ms` before each RETR response (earlier answers flushed first).
    SlowRetr { delay_ms: u64 },
    /// Sleep `delay_ms` before answering this verb (earlier answers flushed
    /// first), then answer it as usual.
    SlowCommand { verb: String, delay_ms: u64 },
    /// Answer this verb with "HELLO WORLD" instead of +OK/-ERR.
    GarbageStatus(String),
    /// Answer this verb with an endless line (no CRLF) until the client goes
    /// away or [`ENDLESS_LIMIT`] bytes were sent, then close.
    EndlessLine(String),
    /// LIST / STAT report half the real sizes.
    WrongListSizes,
    /// UIDL (listing and `UIDL n`) reports message 1's uidl for message 2 too.
    DuplicateUidls,
    /// Answer this verb with `reply` verbatim (e.g. "-ERR [IN-USE] locked").
    ErrOnCommand { verb: String, reply: String },
    /// DELE removes the message from the mailbox at once, not at QUIT.
    DeleteWithoutQuit,
    /// DELE answers -ERR.
    RejectDele,
    /// Every line the server sends ends in a bare LF instead of CRLF.
    BareLfLines,
    /// After answering `verb` (with argument `arg`; "" for any), send
    /// `+OK unsolicited` in the same write: a reply no command asked for.
    Unsolicited { verb: String, arg: String },
    /// Wait `delay_ms` before the greeting (a server that is slow to greet,
    /// e.g. after a reverse-DNS lookup).
    SlowGreeting { delay_ms: u64 },
    /// Answer this verb (LIST, UIDL or CAPA) with `+OK` and then listing
    /// lines without end, until the client goes away or [`ENDLESS_LIMIT`]
    /// bytes were sent.
    EndlessListing(String),
}

/// Server configuration. Use `Config { field: .., ..Default::default() }`.
#[derive(Clone, Debug)]
pub struct Config {
    pub user: String,
    /// Password, also the OAuth bearer token for XOAUTH2 / OAUTHBEARER.
    pub password: String,
    pub messages: Vec<Msg>,
    pub tls: Tls,
    /// false → CAPA answers -ERR (old server).
    pub capa: bool,
    /// Capabilities listed by CAPA only after login.
    pub extra_capa_after_login: Vec<String>,
    pub pipelining: bool,
    /// false → UIDL answers -ERR and is not advertised.
    pub uidl: bool,
    /// false → TOP answers -ERR and is not advertised.
    pub top: bool,
    /// false → USER/PASS answer -ERR and USER is not advertised.
    pub user_cmd: bool,
    /// Greeting carries a `<pid.clock@host>` timestamp and APOP is accepted.
    pub apop: bool,
    /// SASL mechanisms advertised & accepted (PLAIN, LOGIN, CRAM-MD5, XOAUTH2, OAUTHBEARER).
    pub sasl: Vec<String>,
    /// Advertise UTF8 and accept the UTF8 command.
    pub utf8: bool,
    /// Greeting line, verbatim. A greeting starting with "-ERR" closes the
    /// connection right after it is sent.
    pub greeting: Option<String>,
    pub faults: Vec<Fault>,
    /// Advertise "EXPIRE <x>".
    pub expire: Option<String>,
    /// Advertise "LOGIN-DELAY <n>".
    pub login_delay: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            user: "alice".into(),
            password: "secret".into(),
            messages: Vec::new(),
            tls: Tls::None,
            capa: true,
            extra_capa_after_login: Vec::new(),
            pipelining: true,
            uidl: true,
            top: true,
            user_cmd: true,
            apop: false,
            sasl: vec!["PLAIN".into(), "LOGIN".into()],
            utf8: false,
            greeting: None,
            faults: Vec::new(),
            expire: None,
            login_delay: None,
        }
    }
}

struct State {
    /// The mailbox: (internal id, message).
    mailbox: Vec<(u64, Msg)>,
    faults: Vec<Fault>,
    log: Vec<String>,
    retr: HashMap<String, usize>,
    dele: HashMap<String, usize>,
    connections: usize,
    sockets: Vec<TcpStream>,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    cfg: Config,
    stop: AtomicBool,
    next_id: AtomicU64,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn new_entry(&self, m: Msg) -> (u64, Msg) {
        (self.next_id.fetch_add(1, Ordering::SeqCst), m)
    }

    /// Sleep up to `d`, waking early when the server stops. Returns false if stopped.
    fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            if self.stopped() {
                return false;
            }
            let now = Instant::now();
            if now >= end {
                return true;
            }
            thread::sleep((end - now).min(Duration::from_millis(10)));
        }
    }
}

/// A running scripted POP3 server; stops on drop.
pub struct Server {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(mut cfg: Config) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let messages = std::mem::take(&mut cfg.messages);
        let faults = cfg.faults.clone();
        let shared = Arc::new(Shared {
            cfg,
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            state: Mutex::new(State {
                mailbox: Vec::new(),
                faults,
                log: Vec::new(),
                retr: HashMap::new(),
                dele: HashMap::new(),
                connections: 0,
                sockets: Vec::new(),
                threads: Vec::new(),
            }),
        });
        {
            let entries: Vec<_> = messages.into_iter().map(|m| shared.new_entry(m)).collect();
            shared.lock().mailbox = entries;
        }
        let sh = shared.clone();
        let acceptor = thread::Builder::new()
            .name("pop3-test-accept".into())
            .spawn(move || accept_loop(listener, sh))
            .expect("spawn acceptor");
        Server {
            shared,
            addr,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every line received (commands and SASL responses), across all
    /// connections, in arrival order, verbatim without the line ending.
    pub fn log(&self) -> Vec<String> {
        self.shared.lock().log.clone()
    }

    pub fn clear_log(&self) {
        self.shared.lock().log.clear();
    }

    /// How many RETR commands named the message with this uidl.
    pub fn retr_count(&self, uidl: &str) -> usize {
        self.shared.lock().retr.get(uidl).copied().unwrap_or(0)
    }

    /// How many DELE commands named the message with this uidl.
    pub fn dele_count(&self, uidl: &str) -> usize {
        self.shared.lock().dele.get(uidl).copied().unwrap_or(0)
    }

    /// The mailbox as it is now.
    pub fn messages(&self) -> Vec<Msg> {
        self.shared
            .lock()
            .mailbox
            .iter()
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// Replace the mailbox (sessions already logged in keep their snapshot).
    pub fn set_messages(&self, msgs: Vec<Msg>) {
        let entries: Vec<_> = msgs.into_iter().map(|m| self.shared.new_entry(m)).collect();
        self.shared.lock().mailbox = entries;
    }

    pub fn push_message(&self, m: Msg) {
        let e = self.shared.new_entry(m);
        self.shared.lock().mailbox.push(e);
    }

    /// Replace the active faults (takes effect from the next command, also on
    /// open connections).
    pub fn set_faults(&self, faults: Vec<Fault>) {
        self.shared.lock().faults = faults;
    }

    pub fn clear_faults(&self) {
        self.set_faults(Vec::new());
    }

    /// Number of client connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.lock().connections
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let shared = &self.shared;
        stop_server(&shared.stop, self.addr, self.acceptor.take(), || {
            let mut st = shared.lock();
            (
                std::mem::take(&mut st.sockets),
                std::mem::take(&mut st.threads),
            )
        });
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopped() {
            break;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(_) => {
                thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let mut st = shared.lock();
        st.connections += 1;
        let n = st.connections;
        if let Ok(c) = stream.try_clone() {
            st.sockets.push(c);
        }
        let sh = shared.clone();
        let handle = thread::Builder::new()
            .name(format!("pop3-test-conn-{n}"))
            .spawn(move || {
                let _ = serve(stream, sh, n);
            })
            .expect("spawn connection thread");
        st.threads.push(handle);
    }
}

// ---------------------------------------------------------------------------
// Transport

/// A server's side of a connection, plain or TLS (the scripted IMAP server
/// uses it too).
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }

    pub(crate) fn tls(tcp: TcpStream, pki: &TestPki) -> io::Result<Stream> {
        let conn =
            rustls::ServerConnection::new(pki.rustls_server_config()).map_err(io::Error::other)?;
        Ok(Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))))
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Why a session ended early.
#[derive(Debug)]
enum End {
    /// Close the connection (client gone, fault, QUIT, ...).
    Close,
    Io,
}

impl From<io::Error> for End {
    fn from(_: io::Error) -> Self {
        End::Io
    }
}

type Res<T> = Result<T, End>;

/// Buffered connection: input buffer + output buffer; output is flushed
/// whenever the server would block waiting for input (pipelining friendly).
struct Conn {
    stream: Option<Stream>,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    /// End lines with a bare LF ([`Fault::BareLfLines`]).
    bare_lf: bool,
}

impl Conn {
    fn stream(&mut self) -> &mut Stream {
        self.stream.as_mut().expect("stream present")
    }

    fn send(&mut self, data: &[u8]) -> Res<()> {
        self.out.extend_from_slice(data);
        if self.out.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(())
    }

    fn line(&mut self, s: &str) -> Res<()> {
        self.out.extend_from_slice(s.as_bytes());
        let end: &[u8] = if self.bare_lf { b"\n" } else { b"\r\n" };
        self.out.extend_from_slice(end);
        Ok(())
    }

    fn flush(&mut self) -> Res<()> {
        if !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            let s = self.stream();
            s.write_all(&out)?;
            s.flush()?;
        }
        Ok(())
    }

    /// Write raw bytes immediately.
    fn write_now(&mut self, data: &[u8]) -> Res<()> {
        self.flush()?;
        let s = self.stream();
        s.write_all(data)?;
        s.flush()?;
        Ok(())
    }

    /// Read one line (without CR LF). `Ok(None)` at EOF.
    fn read_line(&mut self) -> Res<Option<String>> {
        loop {
            if let Some(pos) = self.inbuf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.inbuf.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
            }
            if self.inbuf.len() > MAX_LINE {
                self.line("-ERR line too long")?;
                self.flush()?;
                return Err(End::Close);
            }
            self.flush()?;
            let mut buf = [0u8; 8192];
            let n = match self.stream().read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Ok(None),
            };
            if n == 0 {
                return Ok(None);
            }
            self.inbuf.extend_from_slice(&buf[..n]);
        }
    }

    fn shutdown(&mut self) {
        if let Some(s) = &self.stream {
            let _ = s.tcp().shutdown(Shutdown::Both);
        }
    }
}

// ---------------------------------------------------------------------------
// Session

struct Session {
    shared: Arc<Shared>,
    conn: Conn,
    lines: usize,
    tls_active: bool,
    authed: bool,
    pending_user: Option<String>,
    timestamp: String,
    snapshot: Vec<(u64, Msg)>,
    deleted: Vec<bool>,
}

fn serve(tcp: TcpStream, shared: Arc<Shared>, conn_no: usize) -> Res<()> {
    // Closes the connection at the end whatever happened to `tcp` on the way.
    let guard = tcp.try_clone()?;
    let r = serve_inner(tcp, shared, conn_no);
    let _ = guard.shutdown(Shutdown::Both);
    r
}

fn serve_inner(tcp: TcpStream, shared: Arc<Shared>, conn_no: usize) -> Res<()> {
    let (stream, tls_active) = match &shared.cfg.tls {
        Tls::Implicit(pki) => (Stream::tls(tcp, pki)?, true),
        _ => (Stream::Plain(tcp), false),
    };
    let timestamp = format!(
        "<{}.{}.{}@popfetch.test>",
        std::process::id(),
        conn_no,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let mut s = Session {
        shared,
        conn: Conn {
            stream: Some(stream),
            inbuf: Vec::new(),
            out: Vec::new(),
            bare_lf: false,
        },
        lines: 0,
        tls_active,
        authed: false,
        pending_user: None,
        timestamp,
        snapshot: Vec::new(),
        deleted: Vec::new(),
    };
    s.conn.bare_lf = s.has_fault(|f| matches!(f, Fault::BareLfLines));
    let r = s.run();
    let _ = s.conn.flush();
    s.conn.shutdown();
    r
}

fn eq_verb(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

impl Session {
    fn cfg(&self) -> &Config {
        &self.shared.cfg
    }

    fn faults(&self) -> Vec<Fault> {
        self.shared.lock().faults.clone()
    }

    fn has_fault(&self, f: impl Fn(&Fault) -> bool) -> bool {
        self.shared.lock().faults.iter().any(f)
    }

    /// Next line from the client: logged, counted, DropAfterCommands applied.
    fn next_line(&mut self) -> Res<String> {
        let line = match self.conn.read_line()? {
            Some(l) => l,
            None => return Err(End::Close),
        };
        self.lines += 1;
        let drop_now = {
            let mut st = self.shared.lock();
            st.log.push(line.clone());
            st.faults
                .iter()
                .any(|f| matches!(f, Fault::DropAfterCommands(k) if *k == self.lines))
        };
        if drop_now {
            self.conn.flush()?;
            self.conn.shutdown();
            return Err(End::Close);
        }
        Ok(line)
    }

    fn run(&mut self) -> Res<()> {
        let greeting = match self.cfg().greeting.clone() {
            Some(g) => {
                if let (Some(a), Some(b)) = (g.find('<'), g.rfind('>')) {
                    if a < b {
                        self.timestamp = g[a..=b].to_string();
                    }
                }
                g
            }
            None if self.cfg().apop => format!("+OK POP3 ready {}", self.timestamp),
            None => "+OK POP3 ready".to_string(),
        };
        let slow = self.faults().iter().find_map(|f| match f {
            Fault::SlowGreeting { delay_ms } => Some(*delay_ms),
            _ => None,
        });
        if let Some(ms) = slow {
            let end = Instant::now() + Duration::from_millis(ms);
            while Instant::now() < end && !self.shared.stopped() {
                thread::sleep(Duration::from_millis(10));
            }
        }
        self.conn.line(&greeting)?;
        if greeting.starts_with("-ERR") {
            self.conn.flush()?;
            return Ok(());
        }
        loop {
            let line = self.next_line()?;
            let (verb, arg) = match line.find(' ') {
                Some(i) => (line[..i].to_string(), line[i + 1..].to_string()),
                None => (line.clone(), String::new()),
            };
            if self.apply_verb_faults(&verb)? {
                continue;
            }
            let v = verb.to_ascii_uppercase();
            let done = if self.authed {
                self.transaction(&v, &arg)?
            } else {
                self.authorization(&v, &arg)?
            };
            let unsolicited = self.has_fault(|f| {
                matches!(f, Fault::Unsolicited { verb: fv, arg: fa }
                    if eq_verb(fv, &v) && (fa.is_empty() || fa == arg.trim()))
            });
            if unsolicited {
                self.conn.line("+OK unsolicited")?;
            }
            if done {
                return Ok(());
            }
        }
    }

    /// Verb-triggered faults. Returns true when the command was handled.
    fn apply_verb_faults(&mut self, verb: &str) -> Res<bool> {
        for f in self.faults() {
            match f {
                Fault::StallOnCommand(v) if eq_verb(&v, verb) => {
                    self.conn.flush()?;
                    while self.shared.sleep(Duration::from_secs(3600)) {}
                    return Err(End::Close);
                }
                Fault::SlowCommand { verb: v, delay_ms } if eq_verb(&v, verb) => {
                    self.conn.flush()?;
                    if !self.shared.sleep(Duration::from_millis(delay_ms)) {
                        return Err(End::Close);
                    }
                }
                Fault::ErrOnCommand { verb: v, reply } if eq_verb(&v, verb) => {
                    self.conn.line(&reply)?;
                    return Ok(true);
                }
                Fault::GarbageStatus(v) if eq_verb(&v, verb) => {
                    self.conn.line("HELLO WORLD")?;
                    return Ok(true);
                }
                Fault::EndlessListing(v) if eq_verb(&v, verb) => {
                    self.conn.write_now(b"+OK listing follows\r\n")?;
                    let mut chunk = Vec::new();
                    for k in 1..=10_000 {
                        chunk.extend_from_slice(format!("{k} 100\r\n").as_bytes());
                    }
                    let mut sent = 0;
                    while sent < ENDLESS_LIMIT && !self.shared.stopped() {
                        self.conn.write_now(&chunk)?;
                        sent += chunk.len();
                    }
                    return Err(End::Close);
                }
                Fault::EndlessLine(v) if eq_verb(&v, verb) => {
                    self.conn.write_now(b"+OK ")?;
                    let chunk = vec![b'x'; 64 * 1024];
                    let mut sent = 0;
                    while sent < ENDLESS_LIMIT && !self.shared.stopped() {
                        self.conn.write_now(&chunk)?;
                        sent += chunk.len();
                    }
                    return Err(End::Close);
                }
                _ => {}
            }
        }
        Ok(false)
    }

    fn capa(&mut self) -> Res<()> {
        if !self.cfg().capa {
            return self.conn.line("-ERR unknown command");
        }
        let cfg = self.shared.cfg.clone();
        let mut caps: Vec<String> = Vec::new();
        if cfg.user_cmd {
            caps.push("USER".into());
        }
        if cfg.top {
            caps.push("TOP".into());
        }
        if cfg.uidl {
            caps.push("UIDL".into());
        }
        if cfg.pipelining {
            caps.push("PIPELINING".into());
        }
        caps.push("RESP-CODES".into());
        caps.push("AUTH-RESP-CODE".into());
        if !cfg.sasl.is_empty() {
            caps.push(format!("SASL {}", cfg.sasl.join(" ")));
        }
        if matches!(cfg.tls, Tls::Stls(_)) && !self.tls_active && !self.authed {
            caps.push("STLS".into());
        }
        if cfg.utf8 {
            caps.push("UTF8".into());
        }
        if let Some(e) = &cfg.expire {
            caps.push(format!("EXPIRE {e}"));
        }
        if let Some(d) = cfg.login_delay {
            caps.push(format!("LOGIN-DELAY {d}"));
        }
        caps.push("IMPLEMENTATION popfetch-test-server".into());
        if self.authed {
            caps.extend(cfg.extra_capa_after_login.iter().cloned());
        }
        self.conn.line("+OK Capability list follows")?;
        for c in caps {
            self.conn.line(&c)?;
        }
        self.conn.line(".")
    }

    // ----- AUTHORIZATION --------------------------------------------------

    fn authorization(&mut self, v: &str, arg: &str) -> Res<bool> {
        match v {
            "CAPA" => self.capa()?,
            "QUIT" => {
                self.conn.line("+OK bye")?;
                return Ok(true);
            }
            "NOOP" => self.conn.line("+OK")?,
            "UTF8" => self.utf8()?,
            "STLS" => self.stls()?,
            "USER" if self.cfg().user_cmd => {
                if arg.is_empty() {
                    self.conn.line("-ERR missing user name")?;
                } else {
                    self.pending_user = Some(arg.to_string());
                    self.conn.line("+OK send PASS")?;
                }
            }
            "PASS" if self.cfg().user_cmd => match self.pending_user.take() {
                None => self.conn.line("-ERR USER first")?,
                Some(u) => {
                    let ok = u == self.cfg().user && arg == self.cfg().password;
                    self.finish_login(ok)?;
                }
            },
            "APOP" if self.cfg().apop => {
                let mut it = arg.split(' ');
                let user = it.next().unwrap_or("");
                let digest = it.next().unwrap_or("");
                let want = hex(&Md5::digest(
                    format!("{}{}", self.timestamp, self.cfg().password).as_bytes(),
                ));
                let ok = user == self.cfg().user && digest == want;
                self.finish_login(ok)?;
            }
            "AUTH" => self.auth(arg)?,
            "STAT" | "LIST" | "UIDL" | "TOP" | "RETR" | "DELE" | "RSET" => {
                self.conn.line("-ERR not logged in")?
            }
            _ => self.conn.line("-ERR unknown command")?,
        }
        Ok(false)
    }

    fn utf8(&mut self) -> Res<()> {
        if self.cfg().utf8 {
            self.conn.line("+OK UTF8 enabled")
        } else {
            self.conn.line("-ERR unknown command")
        }
    }

    fn stls(&mut self) -> Res<()> {
        let pki = match &self.shared.cfg.tls {
            Tls::Stls(p) if !self.tls_active => p.clone(),
            Tls::Stls(_) => return self.conn.line("-ERR already using TLS"),
            _ => return self.conn.line("-ERR unknown command"),
        };
        self.conn.line("+OK Begin TLS negotiation")?;
        self.conn.flush()?;
        // Anything pipelined after STLS is discarded (RFC 2595 §4).
        self.conn.inbuf.clear();
        let tcp = match self.conn.stream.take() {
            Some(Stream::Plain(t)) => t,
            _ => return Err(End::Close),
        };
        self.conn.stream = Some(Stream::tls(tcp, &pki)?);
        self.tls_active = true;
        self.pending_user = None;
        Ok(())
    }

    fn finish_login(&mut self, ok: bool) -> Res<()> {
        if !ok {
            self.pending_user = None;
            return self.conn.line("-ERR [AUTH] invalid credentials");
        }
        self.authed = true;
        self.snapshot = self.shared.lock().mailbox.clone();
        self.deleted = vec![false; self.snapshot.len()];
        let total: usize = self.snapshot.iter().map(|(_, m)| m.size()).sum();
        let n = self.snapshot.len();
        self.conn
            .line(&format!("+OK maildrop has {n} messages ({total} octets)"))
    }

    /// Read a SASL client response line; None when the client aborted ("*").
    fn sasl_response(&mut self, challenge: &[u8]) -> Res<Option<Vec<u8>>> {
        self.conn.line(&format!("+ {}", B64.encode(challenge)))?;
        let line = self.next_line()?;
        if line == "*" {
            self.conn.line("-ERR authentication aborted")?;
            return Ok(None);
        }
        match B64.decode(line.trim()) {
            Ok(d) => Ok(Some(d)),
            Err(_) => {
                self.conn.line("-ERR invalid base64")?;
                Ok(None)
            }
        }
    }

    fn auth(&mut self, arg: &str) -> Res<()> {
        let sasl = self.cfg().sasl.clone();
        if arg.is_empty() {
            self.conn.line("+OK SASL mechanisms follow")?;
            for m in &sasl {
                self.conn.line(m)?;
            }
            return self.conn.line(".");
        }
        let mut it = arg.splitn(2, ' ');
        let mech = it.next().unwrap_or("").to_ascii_uppercase();
        let initial = it.next().map(str::to_string);
        if !sasl.iter().any(|m| m.eq_ignore_ascii_case(&mech)) {
            return self.conn.line("-ERR unsupported authentication mechanism");
        }
        // Decode an initial response ("=" means empty).
        let initial = match initial {
            None => None,
            Some(s) if s == "=" => Some(Vec::new()),
            Some(s) => match B64.decode(s.trim()) {
                Ok(d) => Some(d),
                Err(_) => return self.conn.line("-ERR invalid base64"),
            },
        };
        let user = self.cfg().user.clone();
        let pass = self.cfg().password.clone();
        match mech.as_str() {
            "PLAIN" => {
                let resp = match initial {
                    Some(r) => r,
                    None => match self.sasl_response(b"")? {
                        Some(r) => r,
                        None => return Ok(()),
                    },
                };
                let parts: Vec<&[u8]> = resp.split(|&b| b == 0).collect();
                let ok = parts.len() == 3
                    && (parts[0].is_empty() || parts[0] == user.as_bytes())
                    && parts[1] == user.as_bytes()
                    && parts[2] == pass.as_bytes();
                self.finish_login(ok)
            }
            "LOGIN" => {
                let u = match initial {
                    Some(r) => r,
                    None => match self.sasl_response(b"Username:")? {
                        Some(r) => r,
                        None => return Ok(()),
                    },
                };
                let p = match self.sasl_response(b"Password:")? {
                    Some(r) => r,
                    None => return Ok(()),
                };
                let ok = u == user.as_bytes() && p == pass.as_bytes();
                self.finish_login(ok)
            }
            "CRAM-MD5" => {
                if initial.is_some() {
                    return self.conn.line("-ERR CRAM-MD5 takes no initial response");
                }
                let challenge = self.timestamp.clone();
                let resp = match self.sasl_response(challenge.as_bytes())? {
                    Some(r) => r,
                    None => return Ok(()),
                };
                let want = format!(
                    "{} {}",
                    user,
                    hex(&hmac_md5(pass.as_bytes(), challenge.as_bytes()))
                );
                self.finish_login(resp == want.as_bytes())
            }
            "XOAUTH2" | "OAUTHBEARER" => {
                let resp = match initial {
                    Some(r) => r,
                    None => match self.sasl_response(b"")? {
                        Some(r) => r,
                        None => return Ok(()),
                    },
                };
                let (u, token) = if mech == "XOAUTH2" {
                    parse_xoauth2(&resp)
                } else {
                    parse_oauthbearer(&resp)
                };
                if u.as_deref() == Some(user.as_str()) && token.as_deref() == Some(pass.as_str()) {
                    return self.finish_login(true);
                }
                let err =
                    br#"{"status":"401","schemes":"bearer","scope":"https://mail.example.com/"}"#;
                self.conn.line(&format!("+ {}", B64.encode(err)))?;
                let _dummy = self.next_line()?;
                self.finish_login(false)
            }
            _ => self.conn.line("-ERR unsupported authentication mechanism"),
        }
    }

    // ----- TRANSACTION ----------------------------------------------------

    /// Message index (0-based) for a 1-based argument, if it names a message
    /// in the snapshot (deleted or not).
    fn msg_index(&self, arg: &str) -> Option<usize> {
        let n: usize = arg.trim().parse().ok()?;
        if n >= 1 && n <= self.snapshot.len() {
            Some(n - 1)
        } else {
            None
        }
    }

    /// Like msg_index, but answers -ERR (and returns None) when the message
    /// does not exist or is marked deleted.
    fn live_msg(&mut self, arg: &str) -> Res<Option<usize>> {
        match self.msg_index(arg) {
            None => {
                self.conn.line("-ERR no such message")?;
                Ok(None)
            }
            Some(i) if self.deleted[i] => {
                self.conn.line("-ERR message already deleted")?;
                Ok(None)
            }
            Some(i) => Ok(Some(i)),
        }
    }

    fn listed_size(&self, i: usize) -> usize {
        let s = self.snapshot[i].1.size();
        if self.has_fault(|f| matches!(f, Fault::WrongListSizes)) {
            s / 2
        } else {
            s
        }
    }

    fn listed_uidl(&self, i: usize) -> String {
        if i == 1 && self.has_fault(|f| matches!(f, Fault::DuplicateUidls)) {
            self.snapshot[0].1.uidl.clone()
        } else {
            self.snapshot[i].1.uidl.clone()
        }
    }

    fn live(&self) -> Vec<usize> {
        (0..self.snapshot.len())
            .filter(|&i| !self.deleted[i])
            .collect()
    }

    fn transaction(&mut self, v: &str, arg: &str) -> Res<bool> {
        match v {
            "CAPA" => self.capa()?,
            "NOOP" => self.conn.line("+OK")?,
            // RFC 6856 §2: valid in the AUTHORIZATION state only.
            "UTF8" => self.conn.line("-ERR UTF8 is valid only before the login")?,
            "STAT" => {
                let live = self.live();
                let total: usize = live.iter().map(|&i| self.listed_size(i)).sum();
                self.conn.line(&format!("+OK {} {}", live.len(), total))?;
            }
            "LIST" => {
                if arg.is_empty() {
                    let live = self.live();
                    let total: usize = live.iter().map(|&i| self.listed_size(i)).sum();
                    self.conn
                        .line(&format!("+OK {} messages ({} octets)", live.len(), total))?;
                    for i in live {
                        let l = format!("{} {}", i + 1, self.listed_size(i));
                        self.conn.line(&l)?;
                    }
                    self.conn.line(".")?;
                } else if let Some(i) = self.live_msg(arg)? {
                    let l = format!("+OK {} {}", i + 1, self.listed_size(i));
                    self.conn.line(&l)?;
                }
            }
            "UIDL" if self.cfg().uidl => {
                if arg.is_empty() {
                    self.conn.line("+OK unique-id listing follows")?;
                    for i in self.live() {
                        let l = format!("{} {}", i + 1, self.listed_uidl(i));
                        self.conn.line(&l)?;
                    }
                    self.conn.line(".")?;
                } else if let Some(i) = self.live_msg(arg)? {
                    let l = format!("+OK {} {}", i + 1, self.listed_uidl(i));
                    self.conn.line(&l)?;
                }
            }
            "TOP" if self.cfg().top => {
                let mut it = arg.split_whitespace();
                let (n, k) = (it.next().unwrap_or(""), it.next());
                let k: Option<usize> = k.and_then(|k| k.parse().ok());
                match k {
                    None => self.conn.line("-ERR usage: TOP msg lines")?,
                    Some(k) => {
                        if let Some(i) = self.live_msg(n)? {
                            let body = top_of(&self.snapshot[i].1.wire(), k);
                            self.conn.line("+OK top of message follows")?;
                            self.conn.send(&dot_stuff(&body))?;
                            self.conn.line(".")?;
                        }
                    }
                }
            }
            "RETR" => self.retr(arg)?,
            "DELE" => self.dele(arg)?,
            "RSET" => {
                self.deleted.iter_mut().for_each(|d| *d = false);
                let n = self.snapshot.len();
                self.conn.line(&format!("+OK maildrop has {n} messages"))?;
            }
            "QUIT" => {
                let gone: HashSet<u64> = self
                    .snapshot
                    .iter()
                    .zip(&self.deleted)
                    .filter(|(_, d)| **d)
                    .map(|((id, _), _)| *id)
                    .collect();
                self.shared
                    .lock()
                    .mailbox
                    .retain(|(id, _)| !gone.contains(id));
                self.conn.line("+OK bye")?;
                return Ok(true);
            }
            "USER" | "PASS" | "APOP" | "AUTH" | "STLS" => {
                self.conn.line("-ERR already logged in")?
            }
            _ => self.conn.line("-ERR unknown command")?,
        }
        Ok(false)
    }

    fn retr(&mut self, arg: &str) -> Res<()> {
        if let Some(i) = self.msg_index(arg) {
            let uidl = self.snapshot[i].1.uidl.clone();
            *self.shared.lock().retr.entry(uidl).or_insert(0) += 1;
        }
        let i = match self.live_msg(arg)? {
            Some(i) => i,
            None => return Ok(()),
        };
        let wire = self.snapshot[i].1.wire();
        let mut resp = format!("+OK {} octets\r\n", wire.len()).into_bytes();
        resp.extend_from_slice(&dot_stuff(&wire));
        resp.extend_from_slice(b".\r\n");
        for f in self.faults() {
            match f {
                Fault::SlowRetr { delay_ms } => {
                    self.conn.flush()?;
                    if !self.shared.sleep(Duration::from_millis(delay_ms)) {
                        return Err(End::Close);
                    }
                }
                Fault::DropInRetr { msg, after_bytes } if msg == i + 1 => {
                    let n = after_bytes.min(resp.len());
                    self.conn.write_now(&resp[..n])?;
                    self.conn.shutdown();
                    return Err(End::Close);
                }
                _ => {}
            }
        }
        let trickle = self.faults().into_iter().find_map(|f| match f {
            Fault::TrickleRetr {
                bytes_per_write,
                delay_ms,
            } => Some((bytes_per_write.max(1), delay_ms)),
            _ => None,
        });
        match trickle {
            None => self.conn.send(&resp),
            Some((step, delay)) => {
                for chunk in resp.chunks(step) {
                    self.conn.write_now(chunk)?;
                    if !self.shared.sleep(Duration::from_millis(delay)) {
                        return Err(End::Close);
                    }
                }
                Ok(())
            }
        }
    }

    fn dele(&mut self, arg: &str) -> Res<()> {
        if let Some(i) = self.msg_index(arg) {
            let uidl = self.snapshot[i].1.uidl.clone();
            *self.shared.lock().dele.entry(uidl).or_insert(0) += 1;
        }
        if self.has_fault(|f| matches!(f, Fault::RejectDele)) {
            return self.conn.line("-ERR cannot delete message");
        }
        let i = match self.live_msg(arg)? {
            Some(i) => i,
            None => return Ok(()),
        };
        self.deleted[i] = true;
        if self.has_fault(|f| matches!(f, Fault::DeleteWithoutQuit)) {
            let id = self.snapshot[i].0;
            self.shared.lock().mailbox.retain(|(x, _)| *x != id);
        }
        let n = i + 1;
        self.conn.line(&format!("+OK message {n} deleted"))
    }
}

// ---------------------------------------------------------------------------
// Helpers

/// CRLF line endings (lone LF → CRLF), ending in CRLF unless empty.
pub fn wire_form(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 16 + 2);
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' && (i == 0 || data[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Dot-stuff CRLF-terminated lines (a line starting with "." gets another
/// "."). Only CRLF starts a line: a dot after a bare LF is left alone.
pub fn dot_stuff(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(wire.len() + 16);
    let mut at_line_start = true;
    for (i, &b) in wire.iter().enumerate() {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n' && i > 0 && wire[i - 1] == b'\r';
    }
    out
}

/// The CRLF lines of `wire`, each with its CRLF (a bare LF is inside a line).
fn crlf_lines(wire: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    for i in 1..wire.len() {
        if wire[i] == b'\n' && wire[i - 1] == b'\r' {
            lines.push(&wire[start..=i]);
            start = i + 1;
        }
    }
    if start < wire.len() {
        lines.push(&wire[start..]);
    }
    lines
}

/// Header block, the blank line, and the first `k` body lines of a wire-form message.
fn top_of(wire: &[u8], k: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut in_body = false;
    let mut body_lines = 0;
    for line in crlf_lines(wire) {
        if in_body {
            if body_lines >= k {
                break;
            }
            body_lines += 1;
            out.extend_from_slice(line);
        } else {
            out.extend_from_slice(line);
            if line == b"\r\n" {
                in_body = true;
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// HMAC-MD5 (RFC 2104), for CRAM-MD5.
pub fn hmac_md5(key: &[u8], msg: &[u8]) -> [u8; 16] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..16].copy_from_slice(&Md5::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Md5::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let ih = inner.finalize();
    let mut outer = Md5::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(ih);
    outer.finalize().into()
}

/// "user=U\x01auth=Bearer TOKEN\x01\x01" → (U, TOKEN).
fn parse_xoauth2(resp: &[u8]) -> (Option<String>, Option<String>) {
    let s = String::from_utf8_lossy(resp);
    let mut user = None;
    let mut token = None;
    for kv in s.split('\x01') {
        if let Some(u) = kv.strip_prefix("user=") {
            user = Some(u.to_string());
        } else if let Some(a) = kv.strip_prefix("auth=") {
            token = bearer(a);
        }
    }
    (user, token)
}

/// "n,a=U,\x01[host=..\x01port=..\x01]auth=Bearer TOKEN\x01\x01" → (U, TOKEN).
fn parse_oauthbearer(resp: &[u8]) -> (Option<String>, Option<String>) {
    let s = String::from_utf8_lossy(resp);
    let mut parts = s.split('\x01');
    let gs2 = parts.next().unwrap_or("");
    let user = gs2
        .split(',')
        .find_map(|p| p.strip_prefix("a="))
        .map(|u| u.replace("=2C", ",").replace("=3D", "="));
    let token = parts.find_map(|kv| kv.strip_prefix("auth=").and_then(bearer));
    (user, token)
}

fn bearer(v: &str) -> Option<String> {
    let (scheme, tok) = v.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(tok.trim().to_string())
    } else {
        None
    }
}

// ---------------------------------------------------------------------------
// Self-tests of the test server (run as part of the integration-test target).

mod selftest {
    use super::*;
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    trait Rw: Read + Write + Send {}
    impl<T: Read + Write + Send> Rw for T {}

    /// A minimal hand-driven POP3 client.
    struct Client {
        s: Box<dyn Rw>,
        buf: Vec<u8>,
    }

    impl Client {
        fn new(s: impl Rw + 'static) -> Client {
            Client {
                s: Box::new(s),
                buf: Vec::new(),
            }
        }

        fn plain(srv: &Server) -> (Client, String) {
            let tcp = connect(srv);
            let mut c = Client::new(tcp);
            let g = c.line();
            (c, g)
        }

        fn tls(tcp: TcpStream, pki: &TestPki) -> Client {
            let conn = rustls::ClientConnection::new(
                pki.rustls_client_config(),
                "localhost".try_into().unwrap(),
            )
            .unwrap();
            Client::new(rustls::StreamOwned::new(conn, tcp))
        }

        fn send(&mut self, raw: &str) {
            self.s.write_all(raw.as_bytes()).unwrap();
            self.s.flush().unwrap();
        }

        /// One line without CRLF; panics at EOF.
        fn line(&mut self) -> String {
            self.try_line().expect("unexpected EOF")
        }

        fn try_line(&mut self) -> Option<String> {
            loop {
                if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    let l: Vec<u8> = self.buf.drain(..p + 2).collect();
                    return Some(String::from_utf8_lossy(&l[..p]).into_owned());
                }
                let mut b = [0u8; 4096];
                match self.s.read(&mut b) {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buf.extend_from_slice(&b[..n]),
                }
            }
        }

        fn cmd(&mut self, c: &str) -> String {
            self.send(&format!("{c}\r\n"));
            self.line()
        }

        /// Lines of a multi-line body, up to (not including) ".".
        fn multi(&mut self) -> Vec<String> {
            let mut v = Vec::new();
            loop {
                let l = self.line();
                if l == "." {
                    return v;
                }
                v.push(l);
            }
        }

        /// Everything until EOF.
        fn rest(&mut self) -> Vec<u8> {
            let mut out = std::mem::take(&mut self.buf);
            let mut b = [0u8; 4096];
            loop {
                match self.s.read(&mut b) {
                    Ok(0) | Err(_) => return out,
                    Ok(n) => out.extend_from_slice(&b[..n]),
                }
            }
        }

        fn login(&mut self) {
            assert!(self.cmd("USER alice").starts_with("+OK"));
            assert!(self.cmd("PASS secret").starts_with("+OK"));
        }
    }

    fn connect(srv: &Server) -> TcpStream {
        let t = TcpStream::connect(srv.addr()).unwrap();
        t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        t
    }

    fn two_msgs() -> Vec<Msg> {
        vec![
            Msg::new("uid-1", "Subject: one\n\n.leading dot\nbody\n"),
            Msg::new("uid-2", "Subject: two\r\n\r\nno newline"),
        ]
    }

    fn pki() -> (tempfile::TempDir, Arc<TestPki>) {
        let d = tempfile::tempdir().unwrap();
        let p = Arc::new(TestPki::generate(d.path()));
        (d, p)
    }

    #[test]
    fn certs_files_and_fingerprint() {
        let d = tempfile::tempdir().unwrap();
        let p = TestPki::generate(d.path());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p.key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(p.fingerprint.starts_with("sha256:"));
        assert_eq!(p.fingerprint.len(), "sha256:".len() + 32 * 3 - 1);
        let chain = std::fs::read_to_string(&p.chain_path).unwrap();
        assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
        let s = TestPki::self_signed(&d.path().join("ss"));
        assert_eq!(s.ca_cert_pem, s.cert_pem);
        let _ = s.rustls_server_config();
    }

    #[test]
    fn plain_session_uidl_retr_top_stuffing() {
        let srv = Server::start(Config {
            messages: two_msgs(),
            ..Default::default()
        });
        let (mut c, g) = Client::plain(&srv);
        assert_eq!(g, "+OK POP3 ready");
        assert!(c.cmd("CAPA").starts_with("+OK"));
        let caps = c.multi();
        assert!(caps.contains(&"UIDL".to_string()));
        assert!(caps.contains(&"SASL PLAIN LOGIN".to_string()));
        assert!(!caps.iter().any(|c| c == "STLS"));
        assert!(c.cmd("STAT").starts_with("-ERR"));
        assert!(c.cmd("USER alice").starts_with("+OK"));
        assert_eq!(c.cmd("PASS wrong"), "-ERR [AUTH] invalid credentials");
        c.login();
        let sz1 = "Subject: one\r\n\r\n.leading dot\r\nbody\r\n".len();
        let sz2 = "Subject: two\r\n\r\nno newline\r\n".len();
        // Pipelined batch.
        c.send("STAT\r\nLIST\r\nUIDL\r\nUIDL 2\r\n");
        assert_eq!(c.line(), format!("+OK 2 {}", sz1 + sz2));
        assert!(c.line().starts_with("+OK"));
        assert_eq!(c.multi(), vec![format!("1 {sz1}"), format!("2 {sz2}")]);
        assert!(c.line().starts_with("+OK"));
        assert_eq!(c.multi(), vec!["1 uid-1", "2 uid-2"]);
        assert_eq!(c.line(), "+OK 2 uid-2");
        assert!(c.cmd("RETR 1").starts_with("+OK"));
        assert_eq!(c.multi(), vec!["Subject: one", "", "..leading dot", "body"]);
        assert!(c.cmd("RETR 2").starts_with("+OK"));
        assert_eq!(c.multi(), vec!["Subject: two", "", "no newline"]);
        assert!(c.cmd("TOP 1 0").starts_with("+OK"));
        assert_eq!(c.multi(), vec!["Subject: one", ""]);
        assert!(c.cmd("TOP 1 1").starts_with("+OK"));
        assert_eq!(c.multi(), vec!["Subject: one", "", "..leading dot"]);
        assert!(c.cmd("RETR 3").starts_with("-ERR"));
        assert_eq!(c.cmd("XYZZY"), "-ERR unknown command");
        assert!(c.cmd("QUIT").starts_with("+OK"));
        assert!(c.try_line().is_none());
        drop(c);
        assert_eq!(srv.retr_count("uid-1"), 1);
        assert_eq!(srv.retr_count("uid-2"), 1);
        assert_eq!(srv.messages().len(), 2);
        assert_eq!(srv.connections(), 1);
        let log = srv.log();
        assert!(log.contains(&"PASS secret".to_string()));
        assert!(log.contains(&"UIDL 2".to_string()));
    }

    #[test]
    fn stls_upgrade() {
        let (_d, pki) = pki();
        let srv = Server::start(Config {
            tls: Tls::Stls(pki.clone()),
            messages: two_msgs(),
            ..Default::default()
        });
        let tcp = connect(&srv);
        let mut c = Client::new(tcp.try_clone().unwrap());
        assert!(c.line().starts_with("+OK"));
        assert!(c.cmd("CAPA").starts_with("+OK"));
        assert!(c.multi().contains(&"STLS".to_string()));
        assert!(c.cmd("STLS").starts_with("+OK"));
        drop(c);
        let mut c = Client::tls(tcp, &pki);
        assert!(c.cmd("CAPA").starts_with("+OK"));
        assert!(!c.multi().contains(&"STLS".to_string()));
        assert!(c.cmd("STLS").starts_with("-ERR"));
        c.login();
        assert_eq!(c.cmd("STAT").split(' ').nth(1), Some("2"));
        assert!(c.cmd("QUIT").starts_with("+OK"));
        assert!(srv.log().contains(&"PASS secret".to_string()));
    }

    #[test]
    fn implicit_tls() {
        let (_d, pki) = pki();
        let srv = Server::start(Config {
            tls: Tls::Implicit(pki.clone()),
            ..Default::default()
        });
        let mut c = Client::tls(connect(&srv), &pki);
        assert_eq!(c.line(), "+OK POP3 ready");
        c.login();
        assert_eq!(c.cmd("STAT"), "+OK 0 0");
        assert!(c.cmd("QUIT").starts_with("+OK"));
    }

    #[test]
    fn apop_login() {
        let srv = Server::start(Config {
            apop: true,
            ..Default::default()
        });
        let (mut c, g) = Client::plain(&srv);
        let ts = &g[g.find('<').unwrap()..=g.rfind('>').unwrap()];
        let bad = hex(&Md5::digest(format!("{ts}nope").as_bytes()));
        assert_eq!(
            c.cmd(&format!("APOP alice {bad}")),
            "-ERR [AUTH] invalid credentials"
        );
        let good = hex(&Md5::digest(format!("{ts}secret").as_bytes()));
        assert!(c.cmd(&format!("APOP alice {good}")).starts_with("+OK"));
        assert!(c.cmd("QUIT").starts_with("+OK"));
    }

    #[test]
    fn auth_mechanisms() {
        let srv = Server::start(Config {
            sasl: vec![
                "PLAIN".into(),
                "LOGIN".into(),
                "CRAM-MD5".into(),
                "XOAUTH2".into(),
                "OAUTHBEARER".into(),
            ],
            ..Default::default()
        });
        let (mut c, _) = Client::plain(&srv);
        assert!(c.cmd("AUTH").starts_with("+OK"));
        assert_eq!(c.multi().len(), 5);
        // PLAIN with an initial response, wrong then right.
        let bad = B64.encode(b"\0alice\0nope");
        assert_eq!(
            c.cmd(&format!("AUTH PLAIN {bad}")),
            "-ERR [AUTH] invalid credentials"
        );
        // PLAIN via the challenge, aborted.
        assert_eq!(c.cmd("AUTH PLAIN"), "+ ");
        assert!(c.cmd("*").starts_with("-ERR"));
        // PLAIN via the challenge.
        assert_eq!(c.cmd("AUTH PLAIN"), "+ ");
        assert!(c.cmd(&B64.encode(b"\0alice\0secret")).starts_with("+OK"));
        assert!(c.cmd("QUIT").starts_with("+OK"));

        // LOGIN
        let (mut c, _) = Client::plain(&srv);
        assert_eq!(c.cmd("AUTH LOGIN"), "+ VXNlcm5hbWU6");
        assert_eq!(c.cmd(&B64.encode("alice")), "+ UGFzc3dvcmQ6");
        assert!(c.cmd(&B64.encode("secret")).starts_with("+OK"));
        drop(c);

        // CRAM-MD5
        let (mut c, _) = Client::plain(&srv);
        let ch = c.cmd("AUTH CRAM-MD5");
        let ch = B64.decode(ch.strip_prefix("+ ").unwrap()).unwrap();
        let ans = format!("alice {}", hex(&hmac_md5(b"secret", &ch)));
        assert!(c.cmd(&B64.encode(ans)).starts_with("+OK"));
        drop(c);

        // XOAUTH2: bad token → 401 challenge, dummy reply, -ERR [AUTH].
        let (mut c, _) = Client::plain(&srv);
        let ir = B64.encode("user=alice\x01auth=Bearer nope\x01\x01");
        let r = c.cmd(&format!("AUTH XOAUTH2 {ir}"));
        let json = B64.decode(r.strip_prefix("+ ").unwrap()).unwrap();
        assert!(String::from_utf8(json).unwrap().contains("401"));
        assert_eq!(c.cmd(""), "-ERR [AUTH] invalid credentials");
        let ir = B64.encode("user=alice\x01auth=Bearer secret\x01\x01");
        assert!(c.cmd(&format!("AUTH XOAUTH2 {ir}")).starts_with("+OK"));
        drop(c);

        // OAUTHBEARER
        let (mut c, _) = Client::plain(&srv);
        let ir = B64.encode("n,a=alice,\x01host=localhost\x01auth=Bearer secret\x01\x01");
        assert!(c.cmd(&format!("AUTH OAUTHBEARER {ir}")).starts_with("+OK"));
        drop(c);
        assert!(srv.log().contains(&"AUTH PLAIN".to_string()));
    }

    #[test]
    fn deletion_only_at_quit() {
        let srv = Server::start(Config {
            messages: two_msgs(),
            ..Default::default()
        });
        // DELE then vanish: nothing deleted.
        let (mut c, _) = Client::plain(&srv);
        c.login();
        assert!(c.cmd("DELE 1").starts_with("+OK"));
        assert!(c.cmd("RETR 1").starts_with("-ERR"));
        assert_eq!(c.cmd("STAT").split(' ').nth(1), Some("1"));
        drop(c);
        // RSET undoes; DELE + QUIT deletes.
        let (mut c, _) = Client::plain(&srv);
        c.login();
        assert!(c.cmd("DELE 1").starts_with("+OK"));
        assert!(c.cmd("RSET").starts_with("+OK"));
        assert!(c.cmd("DELE 2").starts_with("+OK"));
        assert_eq!(srv.messages().len(), 2);
        assert!(c.cmd("QUIT").starts_with("+OK"));
        assert_eq!(srv.messages(), vec![two_msgs()[0].clone()]);
        assert_eq!(srv.dele_count("uid-1"), 2);
        assert_eq!(srv.dele_count("uid-2"), 1);
        assert_eq!(srv.connections(), 2);
    }

    #[test]
    fn drop_in_retr_and_after_commands() {
        let srv = Server::start(Config {
            messages: two_msgs(),
            faults: vec![Fault::DropInRetr {
                msg: 2,
                after_bytes: 20,
            }],
            ..Default::default()
        });
        let (mut c, _) = Client::plain(&srv);
        c.login();
        assert!(c.cmd("RETR 1").starts_with("+OK"));
        c.multi();
        c.send("RETR 2\r\n");
        assert_eq!(c.rest().len(), 20);
        assert_eq!(srv.retr_count("uid-2"), 1);

        srv.set_faults(vec![Fault::DropAfterCommands(3)]);
        let (mut c, _) = Client::plain(&srv);
        c.send("USER alice\r\nPASS secret\r\nSTAT\r\n");
        assert!(c.line().starts_with("+OK"));
        assert!(c.line().starts_with("+OK"));
        assert!(c.try_line().is_none());
        assert_eq!(srv.log().last().map(String::as_str), Some("STAT"));
    }

    #[test]
    fn verb_faults() {
        let srv = Server::start(Config {
            messages: two_msgs(),
            faults: vec![
                Fault::ErrOnCommand {
                    verb: "pass".into(),
                    reply: "-ERR [IN-USE] locked".into(),
                },
                Fault::GarbageStatus("NOOP".into()),
                Fault::WrongListSizes,
                Fault::DuplicateUidls,
            ],
            ..Default::default()
        });
        let (mut c, _) = Client::plain(&srv);
        assert!(c.cmd("USER alice").starts_with("+OK"));
        assert_eq!(c.cmd("PASS secret"), "-ERR [IN-USE] locked");
        assert_eq!(c.cmd("NOOP"), "HELLO WORLD");
        srv.set_faults(vec![Fault::WrongListSizes, Fault::DuplicateUidls]);
        c.login();
        c.cmd("UIDL");
        assert_eq!(c.multi(), vec!["1 uid-1", "2 uid-1"]);
        let real = two_msgs()[0].size();
        assert_eq!(c.cmd("LIST 1"), format!("+OK 1 {}", real / 2));
    }

    #[test]
    fn slow_trickle_and_endless() {
        let srv = Server::start(Config {
            messages: two_msgs(),
            faults: vec![
                Fault::SlowRetr { delay_ms: 100 },
                Fault::TrickleRetr {
                    bytes_per_write: 7,
                    delay_ms: 2,
                },
                Fault::EndlessLine("LIST".into()),
            ],
            ..Default::default()
        });
        let (mut c, _) = Client::plain(&srv);
        c.login();
        let t = Instant::now();
        assert!(c.cmd("RETR 2").starts_with("+OK"));
        assert_eq!(c.multi(), vec!["Subject: two", "", "no newline"]);
        assert!(t.elapsed() >= Duration::from_millis(100));
        c.send("LIST\r\n");
        let mut got = 0;
        let mut b = [0u8; 65536];
        while got < 1 << 20 {
            let n = c.s.read(&mut b).unwrap();
            assert!(n > 0);
            assert!(!b[..n].contains(&b'\n'));
            got += n;
        }
        drop(c);
        // The server notices the client is gone; a new session works.
        srv.clear_faults();
        let (mut c, _) = Client::plain(&srv);
        c.login();
        assert!(c.cmd("LIST 1").starts_with("+OK"));
    }

    #[test]
    fn drop_is_prompt_even_when_stalled() {
        let srv = Server::start(Config {
            messages: two_msgs(),
            faults: vec![Fault::StallOnCommand("RETR".into())],
            ..Default::default()
        });
        let (mut c, _) = Client::plain(&srv);
        c.login();
        c.send("RETR 1\r\n");
        std::thread::sleep(Duration::from_millis(50));
        let (mut idle, _) = Client::plain(&srv);
        let t = Instant::now();
        drop(srv);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        assert!(c.try_line().is_none());
        assert!(idle.try_line().is_none());
    }
}

/// Stops a scripted server (this one, the IMAP and the OAuth one): tells its acceptor to stop and wakes its
/// blocking `accept` with a connection of our own, waits for it, then cuts
/// the sessions still open (`sessions` hands them over, with their
/// threads) and waits for those threads too.
pub fn stop_server(
    stop: &AtomicBool,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
    sessions: impl FnOnce() -> (Vec<TcpStream>, Vec<JoinHandle<()>>),
) {
    stop.store(true, Ordering::SeqCst);
    let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
    if let Some(h) = acceptor {
        let _ = h.join();
    }
    let (sockets, threads) = sessions();
    for s in &sockets {
        let _ = s.shutdown(Shutdown::Both);
    }
    for t in threads {
        let _ = t.join();
    }
}
