//! A scripted, in-process IMAP server for integration tests.
//!
//! It serves one folder (`INBOX`, any name is accepted) of given messages
//! over plain TCP or implicit TLS on `127.0.0.1:<ephemeral>`, one thread
//! per connection: greeting, CAPABILITY, ID, LOGIN, AUTHENTICATE PLAIN
//! (SASL-IR or `+`), SELECT/EXAMINE, UID FETCH (UID, RFC822.SIZE, FLAGS,
//! BODY[]/BODY[HEADER]/BODY[TEXT]<..>, PEEK or not), UID STORE, UID
//! EXPUNGE, EXPUNGE, UID SEARCH, NOOP, CLOSE, LOGOUT. Literals in commands
//! are read (`{n}` after a `+`, `{n+}` at once). It can inject faults (a
//! drop inside a literal, BYE, tagged refusals, lying RFC822.SIZE, an
//! expunge by another client, a stall, garbage) and change UIDVALIDITY
//! between sessions. Every command line is logged so tests can assert what
//! the client did (and did not) send.
//!
//! Dropping the [`ImapServer`] stops it: the listener exits, client sockets
//! are shut down and connection threads joined.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use super::certs::TestPki;
// The server side of a connection, shared with the scripted POP3 server.
use super::server::wire_form;
use super::server::Stream;

/// Longest command line the server accepts (literals not counted).
const MAX_LINE: usize = 64 * 1024;

/// One message in the folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImapMsg {
    pub uid: u32,
    /// The message as the server stores it: CRLF line ends.
    pub data: Vec<u8>,
    /// `\Seen`, `\Deleted`, ...
    pub flags: Vec<String>,
}

impl ImapMsg {
    /// A message from LF or CRLF text (stored with CRLF line ends).
    pub fn new(uid: u32, data: impl AsRef<[u8]>) -> ImapMsg {
        ImapMsg {
            uid,
            data: wire_form(data.as_ref()),
            flags: Vec::new(),
        }
    }

    /// RFC822.SIZE.
    pub fn size(&self) -> usize {
        self.data.len()
    }

    /// `BODY[HEADER]`: the header block with the empty line that ends it
    /// (the whole message when it has no body).
    pub fn header(&self) -> &[u8] {
        match self.data.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(p) => &self.data[..p + 4],
            None => &self.data,
        }
    }

    /// `BODY[TEXT]`.
    pub fn text(&self) -> &[u8] {
        &self.data[self.header().len()..]
    }

    fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
    }
}

/// Transport security offered by the server.
#[derive(Clone, Debug)]
pub enum Tls {
    None,
    /// TLS from the first byte (port-993 style).
    Implicit(Arc<TestPki>),
}

/// Injected misbehaviour. A fault's `when` is matched, case-insensitively,
/// as a substring of the command line after the tag (`"UID FETCH"` matches
/// the listing and every fetch, `"BODY.PEEK[]"` only whole-message
/// fetches). Faults apply on every connection until changed with
/// [`ImapServer::set_faults`].
#[derive(Clone, Debug)]
pub enum Fault {
    /// Fetching the body of `uid` (`BODY[]`): send the response up to and
    /// including `after_bytes` bytes of the literal, then close.
    DropInLiteral { uid: u32, after_bytes: usize },
    /// Before the FETCH response that carries `uid`'s body, send
    /// `* BYE` and close.
    ByeBeforeBody { uid: u32 },
    /// On a matching command, send `* BYE` and close without a tagged reply.
    Bye { when: String },
    /// Answer a matching command with `<tag> <reply>`, e.g.
    /// `NO [UNAVAILABLE] try later`, and do nothing else.
    Reply { when: String, reply: String },
    /// RFC822.SIZE of `uid` is its real size plus `delta` (the literal
    /// stays true).
    LyingSize { uid: u32, delta: i64 },
    /// When a matching command arrives, another client has just expunged
    /// `uid`: it is gone from the folder, and `* n EXPUNGE` (then `* k
    /// EXISTS`) comes before the answer. Once per session.
    ExpungeByOther { when: String, uid: u32 },
    /// Never answer a matching command (until the server is dropped).
    Stall { when: String },
    /// Answer a matching command with a line that is not IMAP.
    Garbage { when: String },
    /// Courier-IMAP when its couriertls cannot start: STARTTLS is answered
    /// `OK`, then (after `pause`, or in the same write without one) a tagged
    /// `NO STARTTLS failed: …` in clear, and the connection closes.
    StarttlsFails { pause: Option<Duration> },
}

/// Server configuration. Use `ImapConfig { field: .., ..Default::default() }`.
#[derive(Clone, Debug)]
pub struct ImapConfig {
    pub user: String,
    pub password: String,
    pub messages: Vec<ImapMsg>,
    pub uidvalidity: u32,
    pub tls: Tls,
    /// Advertised after the fixed `IMAP4rev1`.
    pub capabilities: Vec<String>,
    pub faults: Vec<Fault>,
    /// The answer to `NAMESPACE` after `* NAMESPACE ` (Courier-IMAP:
    /// `(("INBOX." ".")) NIL (("#shared." "."))`); `None`: not understood.
    pub namespace: Option<String>,
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            user: "alice".into(),
            password: "secret".into(),
            messages: Vec::new(),
            uidvalidity: 1000,
            tls: Tls::None,
            capabilities: ["LITERAL+", "SASL-IR", "AUTH=PLAIN", "UIDPLUS", "ID"]
                .map(String::from)
                .to_vec(),
            faults: Vec::new(),
            namespace: None,
        }
    }
}

/// Messages numbered from UID 1: `(uid, text)` pairs made from texts.
pub fn numbered(texts: &[Vec<u8>]) -> Vec<ImapMsg> {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| ImapMsg::new(i as u32 + 1, t))
        .collect()
}

struct State {
    folder: Vec<ImapMsg>,
    uidvalidity: u32,
    /// The next UID to hand out: never goes down, also when the highest
    /// message is expunged.
    uidnext: u32,
    /// RFC 7162's HIGHESTMODSEQ: up by one with each change of flags,
    /// expunge or arrival (sent on SELECT when CONDSTORE is advertised).
    modseq: u64,
    faults: Vec<Fault>,
    log: Vec<String>,
    /// Whole-message fetches per UID (`BODY[]`).
    bodies: HashMap<u32, usize>,
    /// Header fetches per UID (`BODY[HEADER]`).
    headers: HashMap<u32, usize>,
    /// UIDs expunged at the client's request.
    expunged: Vec<u32>,
    connections: usize,
    sockets: Vec<TcpStream>,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    cfg: ImapConfig,
    stop: AtomicBool,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// A running scripted IMAP server; stops on drop.
pub struct ImapServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

impl ImapServer {
    pub fn start(mut cfg: ImapConfig) -> ImapServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let folder = std::mem::take(&mut cfg.messages);
        let state = State {
            uidnext: folder.iter().map(|m| m.uid).max().unwrap_or(0) + 1,
            modseq: 1,
            folder,
            uidvalidity: cfg.uidvalidity,
            faults: cfg.faults.clone(),
            log: Vec::new(),
            bodies: HashMap::new(),
            headers: HashMap::new(),
            expunged: Vec::new(),
            connections: 0,
            sockets: Vec::new(),
            threads: Vec::new(),
        };
        let shared = Arc::new(Shared {
            cfg,
            stop: AtomicBool::new(false),
            state: Mutex::new(state),
        });
        let sh = shared.clone();
        let acceptor = thread::Builder::new()
            .name("imap-test-accept".into())
            .spawn(move || accept_loop(listener, sh))
            .expect("spawn acceptor");
        ImapServer {
            shared,
            addr,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every command line received (SASL responses too), across all
    /// connections, in arrival order, without the line ending.
    pub fn log(&self) -> Vec<String> {
        self.shared.lock().log.clone()
    }

    pub fn clear_log(&self) {
        self.shared.lock().log.clear();
    }

    /// How many times the whole message with this UID was sent.
    pub fn body_fetches(&self, uid: u32) -> usize {
        self.shared.lock().bodies.get(&uid).copied().unwrap_or(0)
    }

    /// Whole messages sent, all UIDs together.
    pub fn total_body_fetches(&self) -> usize {
        self.shared.lock().bodies.values().sum()
    }

    /// How many times this UID's header block was sent.
    pub fn header_fetches(&self, uid: u32) -> usize {
        self.shared.lock().headers.get(&uid).copied().unwrap_or(0)
    }

    /// UIDs the client expunged, in order.
    pub fn expunged(&self) -> Vec<u32> {
        self.shared.lock().expunged.clone()
    }

    /// Forgets the fetch counts and the expunged list (and the log).
    pub fn clear_counts(&self) {
        let mut st = self.shared.lock();
        st.bodies.clear();
        st.headers.clear();
        st.expunged.clear();
        st.log.clear();
    }

    /// The folder as it is now.
    pub fn messages(&self) -> Vec<ImapMsg> {
        self.shared.lock().folder.clone()
    }

    pub fn uidvalidity(&self) -> u32 {
        self.shared.lock().uidvalidity
    }

    /// What a server does when it rebuilds its index: a new UIDVALIDITY,
    /// and every message numbered again from `first_uid`, in order.
    pub fn change_uidvalidity(&self, uidvalidity: u32, first_uid: u32) {
        let mut st = self.shared.lock();
        st.uidvalidity = uidvalidity;
        for (i, m) in st.folder.iter_mut().enumerate() {
            m.uid = first_uid + i as u32;
        }
        st.uidnext = first_uid + st.folder.len() as u32;
        st.modseq += 1;
    }

    /// What another client does with UID STORE FLAGS: replaces the flags
    /// of `uid`.
    pub fn set_flags(&self, uid: u32, flags: &[&str]) {
        let mut st = self.shared.lock();
        if let Some(m) = st.folder.iter_mut().find(|m| m.uid == uid) {
            m.flags = flags.iter().map(|f| f.to_string()).collect();
            st.modseq += 1;
        }
    }

    /// Appends a message (its UID must be at least the folder's UIDNEXT).
    pub fn push_message(&self, m: ImapMsg) {
        let mut st = self.shared.lock();
        assert!(
            m.uid >= st.uidnext,
            "UID {} below UIDNEXT {}",
            m.uid,
            st.uidnext
        );
        st.uidnext = m.uid + 1;
        st.modseq += 1;
        st.folder.push(m);
    }

    /// What another client does between sessions with STORE \Deleted and
    /// EXPUNGE: `uid` is gone (UIDNEXT stays).
    pub fn remove_message(&self, uid: u32) {
        let mut st = self.shared.lock();
        st.folder.retain(|m| m.uid != uid);
        st.modseq += 1;
    }

    pub fn set_faults(&self, faults: Vec<Fault>) {
        self.shared.lock().faults = faults;
    }

    pub fn clear_faults(&self) {
        self.set_faults(Vec::new());
    }

    pub fn connections(&self) -> usize {
        self.shared.lock().connections
    }
}

impl Drop for ImapServer {
    fn drop(&mut self) {
        let shared = &self.shared;
        super::server::stop_server(&shared.stop, self.addr, self.acceptor.take(), || {
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
        let Ok(stream) = stream else {
            thread::sleep(Duration::from_millis(5));
            continue;
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
            .name(format!("imap-test-conn-{n}"))
            .spawn(move || {
                let guard = stream.try_clone();
                let _ = serve(stream, sh);
                if let Ok(g) = guard {
                    let _ = g.shutdown(Shutdown::Both);
                }
            })
            .expect("spawn connection thread");
        st.threads.push(handle);
    }
}

// ---------------------------------------------------------------------------
// Transport

/// Why a session ends: the client left, a fault closed it, or LOGOUT.
#[derive(Debug)]
struct End;

impl From<io::Error> for End {
    fn from(_: io::Error) -> Self {
        End
    }
}

type Res<T> = Result<T, End>;

/// One argument of a command.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Arg {
    /// An atom (also `(`, `)` and anything unquoted).
    Atom(String),
    /// A quoted string or a literal.
    Str(Vec<u8>),
}

impl Arg {
    fn text(&self) -> String {
        match self {
            Arg::Atom(a) => a.clone(),
            Arg::Str(s) => String::from_utf8_lossy(s).into_owned(),
        }
    }

    fn is(&self, word: &str) -> bool {
        matches!(self, Arg::Atom(a) if a.eq_ignore_ascii_case(word))
    }
}

struct Conn {
    stream: Stream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
}

impl Conn {
    fn line(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn flush(&mut self) -> Res<()> {
        if !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            self.stream.write_all(&out)?;
            self.stream.flush()?;
        }
        Ok(())
    }

    fn fill(&mut self) -> Res<()> {
        self.flush()?;
        let mut buf = [0u8; 8192];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(End),
                Ok(n) => {
                    self.inbuf.extend_from_slice(&buf[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(End),
            }
        }
    }

    /// One line without its CRLF.
    fn read_line(&mut self) -> Res<Vec<u8>> {
        loop {
            if let Some(pos) = self.inbuf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.inbuf.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.inbuf.len() > MAX_LINE {
                self.line("* BYE line too long");
                self.flush()?;
                return Err(End);
            }
            self.fill()?;
        }
    }

    fn read_exact(&mut self, n: usize) -> Res<Vec<u8>> {
        while self.inbuf.len() < n {
            self.fill()?;
        }
        Ok(self.inbuf.drain(..n).collect())
    }

    /// A command: its tag, the text shown in the log (literals as
    /// `{n}` + their text), and its arguments with literals read.
    fn read_command(&mut self) -> Res<(String, String, Vec<Arg>)> {
        let mut args = Vec::new();
        let mut shown = String::new();
        loop {
            let line = self.read_line()?;
            shown.push_str(&String::from_utf8_lossy(&line));
            let (mut parsed, literal) = tokenize(&line);
            args.append(&mut parsed);
            let Some((n, plus)) = literal else { break };
            if !plus {
                self.line("+ go ahead");
                self.flush()?;
            }
            let data = self.read_exact(n)?;
            shown.push_str(&String::from_utf8_lossy(&data));
            args.push(Arg::Str(data));
        }
        if args.is_empty() {
            return Ok((String::new(), shown, args));
        }
        let tag = args.remove(0).text();
        Ok((tag, shown, args))
    }
}

/// Splits a command line into arguments; a trailing `{n}`/`{n+}` is the
/// literal that follows (its length, and whether it is LITERAL+).
fn tokenize(line: &[u8]) -> (Vec<Arg>, Option<(usize, bool)>) {
    let mut args = Vec::new();
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b' ' => i += 1,
            b'(' | b')' => {
                args.push(Arg::Atom((line[i] as char).to_string()));
                i += 1;
            }
            b'"' => {
                let mut s = Vec::new();
                i += 1;
                while i < line.len() && line[i] != b'"' {
                    if line[i] == b'\\' && i + 1 < line.len() {
                        i += 1;
                    }
                    s.push(line[i]);
                    i += 1;
                }
                i += 1;
                args.push(Arg::Str(s));
            }
            b'{' if line.ends_with(b"}") && !line[i..].contains(&b' ') => {
                let inner = &line[i + 1..line.len() - 1];
                let (digits, plus) = match inner.strip_suffix(b"+") {
                    Some(d) => (d, true),
                    None => (inner, false),
                };
                if let Some(n) = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| d.parse().ok())
                {
                    return (args, Some((n, plus)));
                }
                args.push(Arg::Atom(String::from_utf8_lossy(&line[i..]).into_owned()));
                break;
            }
            _ => {
                let start = i;
                // Brackets keep their spaces (`BODY.PEEK[HEADER.FIELDS (A B)]`).
                let mut depth = 0;
                while i < line.len() {
                    match line[i] {
                        b'[' => depth += 1,
                        b']' => depth -= 1,
                        b' ' | b'(' | b')' if depth == 0 => break,
                        _ => {}
                    }
                    i += 1;
                }
                args.push(Arg::Atom(
                    String::from_utf8_lossy(&line[start..i]).into_owned(),
                ));
            }
        }
    }
    (args, None)
}

/// A UID set (`1:*`, `3,5:7`) against the highest UID in the folder.
fn parse_set(set: &str, max: u32) -> Option<Vec<(u32, u32)>> {
    let num = |s: &str| -> Option<u32> {
        if s == "*" {
            Some(max)
        } else {
            s.parse().ok()
        }
    };
    set.split(',')
        .map(|part| match part.split_once(':') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                Some((a.min(b), a.max(b)))
            }
            None => num(part).map(|n| (n, n)),
        })
        .collect()
}

fn in_set(set: &[(u32, u32)], uid: u32) -> bool {
    set.iter().any(|&(a, b)| (a..=b).contains(&uid))
}

/// What a FETCH asks for, item by item.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    Uid,
    Size,
    Flags,
    /// `BODY[...]`: the section (``, `HEADER`, `TEXT`), a partial
    /// `<start.len>`, and whether it is a PEEK.
    Body {
        section: String,
        partial: Option<(usize, usize)>,
        peek: bool,
    },
}

fn parse_item(word: &str) -> Option<Item> {
    let upper = word.to_ascii_uppercase();
    match upper.as_str() {
        "UID" => return Some(Item::Uid),
        "RFC822.SIZE" => return Some(Item::Size),
        "FLAGS" => return Some(Item::Flags),
        _ => {}
    }
    let (peek, rest) = if let Some(r) = upper.strip_prefix("BODY.PEEK[") {
        (true, r)
    } else if let Some(r) = upper.strip_prefix("BODY[") {
        (false, r)
    } else {
        return None;
    };
    let (section, after) = rest.split_once(']')?;
    let partial = match after.strip_prefix('<') {
        Some(p) => {
            let (a, b) = p.strip_suffix('>')?.split_once('.')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        }
        None if after.is_empty() => None,
        None => return None,
    };
    if !matches!(section, "" | "HEADER" | "TEXT") {
        return None;
    }
    Some(Item::Body {
        section: section.to_string(),
        partial,
        peek,
    })
}

// ---------------------------------------------------------------------------
// Session

struct Session {
    shared: Arc<Shared>,
    conn: Conn,
    authed: bool,
    selected: bool,
    read_only: bool,
    /// `ExpungeByOther` faults already played on this connection.
    expunged_by_other: Vec<u32>,
}

fn serve(tcp: TcpStream, shared: Arc<Shared>) -> Res<()> {
    let stream = match &shared.cfg.tls {
        Tls::Implicit(pki) => Stream::tls(tcp, pki)?,
        Tls::None => Stream::Plain(tcp),
    };
    let mut s = Session {
        shared,
        conn: Conn {
            stream,
            inbuf: Vec::new(),
            out: Vec::new(),
        },
        authed: false,
        selected: false,
        read_only: false,
        expunged_by_other: Vec::new(),
    };
    s.conn.line("* OK popfetch test IMAP server ready");
    let r = s.run();
    let _ = s.conn.flush();
    r
}

impl Session {
    fn faults(&self) -> Vec<Fault> {
        self.shared.lock().faults.clone()
    }

    fn capabilities(&self) -> String {
        let mut caps = vec!["IMAP4rev1".to_string()];
        caps.extend(self.shared.cfg.capabilities.iter().cloned());
        caps.join(" ")
    }

    fn run(&mut self) -> Res<()> {
        loop {
            let (tag, shown, args) = self.conn.read_command()?;
            self.shared.lock().log.push(shown.clone());
            if tag.is_empty() {
                continue;
            }
            let after_tag = shown
                .split_once(' ')
                .map(|(_, r)| r.to_ascii_uppercase())
                .unwrap_or_default();
            if self.play_faults(&tag, &after_tag)? {
                continue;
            }
            self.command(&tag, &args)?;
        }
    }

    /// The faults that take a whole command; `true` when one answered it.
    fn play_faults(&mut self, tag: &str, command: &str) -> Res<bool> {
        let hits = |when: &str| command.contains(&when.to_ascii_uppercase());
        for fault in self.faults() {
            match fault {
                Fault::Bye { when } if hits(&when) => {
                    self.conn.line("* BYE server shutting down");
                    self.conn.flush()?;
                    return Err(End);
                }
                Fault::Reply { when, reply } if hits(&when) => {
                    self.conn.line(&format!("{tag} {reply}"));
                    return Ok(true);
                }
                Fault::Stall { when } if hits(&when) => {
                    self.conn.flush()?;
                    while !self.shared.stopped() {
                        thread::sleep(Duration::from_millis(10));
                    }
                    return Err(End);
                }
                Fault::Garbage { when } if hits(&when) => {
                    self.conn.line("HELLO WORLD this is not IMAP");
                    return Ok(true);
                }
                Fault::StarttlsFails { pause } if command.starts_with("STARTTLS") => {
                    self.conn
                        .line(&format!("{tag} OK Begin SSL/TLS negotiation now."));
                    if let Some(pause) = pause {
                        self.conn.flush()?;
                        thread::sleep(pause);
                    }
                    self.conn.line(&format!(
                        "{tag} NO STARTTLS failed: ip=[::ffff:127.0.0.1], couriertls: \
                         /var/lib/courier/couriersslimapcache: Permission denied"
                    ));
                    self.conn.flush()?;
                    return Err(End);
                }
                Fault::ExpungeByOther { when, uid }
                    if hits(&when) && self.selected && !self.expunged_by_other.contains(&uid) =>
                {
                    self.expunged_by_other.push(uid);
                    let mut st = self.shared.lock();
                    if let Some(i) = st.folder.iter().position(|m| m.uid == uid) {
                        st.folder.remove(i);
                        st.modseq += 1;
                        let exists = st.folder.len();
                        drop(st);
                        self.conn.line(&format!("* {} EXPUNGE", i + 1));
                        self.conn.line(&format!("* {exists} EXISTS"));
                    }
                }
                _ => {}
            }
        }
        Ok(false)
    }

    fn command(&mut self, tag: &str, args: &[Arg]) -> Res<()> {
        let verb = args.first().map(Arg::text).unwrap_or_default();
        let verb = verb.to_ascii_uppercase();
        let rest = args.get(1..).unwrap_or(&[]);
        match verb.as_str() {
            "CAPABILITY" => {
                let caps = self.capabilities();
                self.conn.line(&format!("* CAPABILITY {caps}"));
                self.ok(tag, "CAPABILITY done");
            }
            "NOOP" => self.ok(tag, "NOOP done"),
            "ID" => {
                self.conn.line("* ID (\"name\" \"popfetch-test\")");
                self.ok(tag, "ID done");
            }
            "LOGOUT" => {
                self.conn.line("* BYE logging out");
                self.ok(tag, "LOGOUT done");
                self.conn.flush()?;
                return Err(End);
            }
            "LOGIN" => {
                let user = rest.first().map(Arg::text).unwrap_or_default();
                let pass = rest.get(1).map(Arg::text).unwrap_or_default();
                self.login(tag, &user, &pass);
            }
            "AUTHENTICATE" => self.authenticate(tag, rest)?,
            _ if !self.authed => self.bad(tag, "log in first"),
            "SELECT" | "EXAMINE" => self.select(tag, verb == "EXAMINE"),
            "NAMESPACE" if self.shared.cfg.namespace.is_some() => {
                let ns = self.shared.cfg.namespace.clone().unwrap_or_default();
                self.conn.line(&format!("* NAMESPACE {ns}"));
                self.ok(tag, "NAMESPACE completed");
            }
            "CLOSE" | "UNSELECT" => {
                self.selected = false;
                self.ok(tag, "closed");
            }
            _ if !self.selected => self.bad(tag, "select a folder first"),
            "EXPUNGE" => {
                self.expunge(None);
                self.ok(tag, "EXPUNGE done");
            }
            "UID" => {
                let sub = rest.first().map(Arg::text).unwrap_or_default();
                let rest = rest.get(1..).unwrap_or(&[]);
                match sub.to_ascii_uppercase().as_str() {
                    "FETCH" => self.fetch(tag, rest)?,
                    "STORE" => self.store(tag, rest),
                    "SEARCH" => self.search(tag, rest),
                    "EXPUNGE" if self.has_capability("UIDPLUS") => {
                        let max = self.max_uid();
                        match rest.first().and_then(|s| parse_set(&s.text(), max)) {
                            Some(set) => {
                                self.expunge(Some(&set));
                                self.ok(tag, "UID EXPUNGE done");
                            }
                            None => self.bad(tag, "a UID set expected"),
                        }
                    }
                    _ => self.bad(tag, "unknown UID command"),
                }
            }
            _ => self.bad(tag, "unknown command"),
        }
        Ok(())
    }

    fn has_capability(&self, name: &str) -> bool {
        self.shared
            .cfg
            .capabilities
            .iter()
            .any(|c| c.eq_ignore_ascii_case(name))
    }

    fn ok(&mut self, tag: &str, text: &str) {
        self.conn.line(&format!("{tag} OK {text}"));
    }

    fn bad(&mut self, tag: &str, text: &str) {
        self.conn.line(&format!("{tag} BAD {text}"));
    }

    fn login(&mut self, tag: &str, user: &str, pass: &str) {
        let cfg = &self.shared.cfg;
        if user == cfg.user && pass == cfg.password {
            self.authed = true;
            self.ok(tag, "logged in");
        } else {
            self.conn.line(&format!(
                "{tag} NO [AUTHENTICATIONFAILED] invalid credentials"
            ));
        }
    }

    fn authenticate(&mut self, tag: &str, args: &[Arg]) -> Res<()> {
        if !args.first().is_some_and(|m| m.is("PLAIN")) {
            self.conn.line(&format!("{tag} NO unsupported mechanism"));
            return Ok(());
        }
        let response = match args.get(1) {
            Some(ir) => ir.text(),
            None => {
                self.conn.line("+ ");
                self.conn.flush()?;
                let line = self.conn.read_line()?;
                self.shared.lock().log.push("<sasl response>".into());
                String::from_utf8_lossy(&line).into_owned()
            }
        };
        let decoded = B64.decode(response.trim()).unwrap_or_default();
        let parts: Vec<&[u8]> = decoded.split(|&b| b == 0).collect();
        match parts.as_slice() {
            [_, user, pass] => {
                let (user, pass) = (
                    String::from_utf8_lossy(user).into_owned(),
                    String::from_utf8_lossy(pass).into_owned(),
                );
                self.login(tag, &user, &pass);
            }
            _ => self.bad(tag, "malformed PLAIN response"),
        }
        Ok(())
    }

    fn select(&mut self, tag: &str, read_only: bool) {
        let st = self.shared.lock();
        let exists = st.folder.len();
        let uidvalidity = st.uidvalidity;
        let uidnext = st.uidnext;
        let modseq = st.modseq;
        drop(st);
        self.selected = true;
        self.read_only = read_only;
        self.conn
            .line("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)");
        self.conn.line(&format!("* {exists} EXISTS"));
        self.conn.line("* 0 RECENT");
        self.conn
            .line(&format!("* OK [UIDVALIDITY {uidvalidity}] UIDs valid"));
        self.conn
            .line(&format!("* OK [UIDNEXT {uidnext}] predicted next UID"));
        if self.has_capability("CONDSTORE") {
            self.conn
                .line(&format!("* OK [HIGHESTMODSEQ {modseq}] mod-sequences kept"));
        }
        let mode = if read_only { "READ-ONLY" } else { "READ-WRITE" };
        self.conn.line(&format!("{tag} OK [{mode}] selected"));
    }

    fn max_uid(&self) -> u32 {
        self.shared
            .lock()
            .folder
            .iter()
            .map(|m| m.uid)
            .max()
            .unwrap_or(0)
    }

    fn fetch(&mut self, tag: &str, args: &[Arg]) -> Res<()> {
        let max = self.max_uid();
        let Some(set) = args.first().and_then(|s| parse_set(&s.text(), max)) else {
            self.bad(tag, "a UID set expected");
            return Ok(());
        };
        let mut items = Vec::new();
        for a in &args[1..] {
            if a.is("(") || a.is(")") {
                continue;
            }
            match parse_item(&a.text()) {
                Some(item) => items.push(item),
                None => {
                    self.bad(tag, "unknown FETCH item");
                    return Ok(());
                }
            }
        }
        // RFC 3501 §6.4.8: UID FETCH always returns the UID.
        if !items.contains(&Item::Uid) {
            items.insert(0, Item::Uid);
        }
        let faults = self.faults();
        let listed: Vec<(usize, ImapMsg)> = self
            .shared
            .lock()
            .folder
            .iter()
            .enumerate()
            .filter(|(_, m)| in_set(&set, m.uid))
            .map(|(i, m)| (i + 1, m.clone()))
            .collect();
        for (seq, msg) in listed {
            let whole = items.iter().any(
                |i| matches!(i, Item::Body { section, partial: None, .. } if section.is_empty()),
            );
            if whole
                && faults
                    .iter()
                    .any(|f| matches!(f, Fault::ByeBeforeBody { uid } if *uid == msg.uid))
            {
                self.conn.line("* BYE server shutting down");
                self.conn.flush()?;
                return Err(End);
            }
            let mut out = format!("* {seq} FETCH (").into_bytes();
            let mut set_seen = false;
            for (k, item) in items.iter().enumerate() {
                if k > 0 {
                    out.push(b' ');
                }
                match item {
                    Item::Uid => out.extend_from_slice(format!("UID {}", msg.uid).as_bytes()),
                    Item::Size => {
                        let lie = faults.iter().find_map(|f| match f {
                            Fault::LyingSize { uid, delta } if *uid == msg.uid => Some(*delta),
                            _ => None,
                        });
                        let size = (msg.size() as i64 + lie.unwrap_or(0)).max(0);
                        out.extend_from_slice(format!("RFC822.SIZE {size}").as_bytes());
                    }
                    Item::Flags => {
                        out.extend_from_slice(format!("FLAGS ({})", msg.flags.join(" ")).as_bytes())
                    }
                    Item::Body {
                        section,
                        partial,
                        peek,
                    } => {
                        let data: &[u8] = match section.as_str() {
                            "HEADER" => msg.header(),
                            "TEXT" => msg.text(),
                            _ => &msg.data,
                        };
                        let data = match partial {
                            Some((start, len)) => {
                                let s = (*start).min(data.len());
                                &data[s..(s + len).min(data.len())]
                            }
                            None => data,
                        };
                        let name = match partial {
                            Some((start, _)) => format!("BODY[{section}]<{start}>"),
                            None => format!("BODY[{section}]"),
                        };
                        {
                            let mut st = self.shared.lock();
                            let counts = if section == "HEADER" {
                                &mut st.headers
                            } else {
                                &mut st.bodies
                            };
                            if section.is_empty() && partial.is_none() || section == "HEADER" {
                                *counts.entry(msg.uid).or_default() += 1;
                            }
                        }
                        out.extend_from_slice(format!("{name} {{{}}}\r\n", data.len()).as_bytes());
                        let drop_at = faults.iter().find_map(|f| match f {
                            Fault::DropInLiteral { uid, after_bytes }
                                if *uid == msg.uid && section.is_empty() =>
                            {
                                Some(*after_bytes)
                            }
                            _ => None,
                        });
                        if let Some(n) = drop_at {
                            out.extend_from_slice(&data[..n.min(data.len())]);
                            self.conn.out.extend_from_slice(&out);
                            self.conn.flush()?;
                            return Err(End);
                        }
                        out.extend_from_slice(data);
                        set_seen |= !*peek && !self.read_only;
                    }
                }
            }
            out.extend_from_slice(b")\r\n");
            self.conn.out.extend_from_slice(&out);
            if self.conn.out.len() >= 64 * 1024 {
                self.conn.flush()?;
            }
            if set_seen {
                let mut st = self.shared.lock();
                if let Some(m) = st.folder.iter_mut().find(|m| m.uid == msg.uid) {
                    if !m.has_flag("\\Seen") {
                        m.flags.push("\\Seen".into());
                        st.modseq += 1;
                    }
                }
            }
        }
        self.ok(tag, "UID FETCH done");
        Ok(())
    }

    fn store(&mut self, tag: &str, args: &[Arg]) {
        if self.read_only {
            self.conn.line(&format!("{tag} NO read-only folder"));
            return;
        }
        let max = self.max_uid();
        let Some(set) = args.first().and_then(|s| parse_set(&s.text(), max)) else {
            self.bad(tag, "a UID set expected");
            return;
        };
        let op = args.get(1).map(Arg::text).unwrap_or_default();
        let op = op.to_ascii_uppercase();
        let silent = op.ends_with(".SILENT");
        let flags: Vec<String> = args[2..]
            .iter()
            .filter(|a| !a.is("(") && !a.is(")"))
            .map(Arg::text)
            .collect();
        let mut changed = Vec::new();
        {
            let mut st = self.shared.lock();
            for (i, m) in st.folder.iter_mut().enumerate() {
                if !in_set(&set, m.uid) {
                    continue;
                }
                match op.trim_end_matches(".SILENT") {
                    "+FLAGS" => {
                        for f in &flags {
                            if !m.has_flag(f) {
                                m.flags.push(f.clone());
                            }
                        }
                    }
                    "-FLAGS" => m
                        .flags
                        .retain(|f| !flags.iter().any(|g| g.eq_ignore_ascii_case(f))),
                    _ => m.flags = flags.clone(),
                }
                changed.push((i + 1, m.uid, m.flags.join(" ")));
            }
            st.modseq += changed.len() as u64;
        }
        if !silent {
            for (seq, uid, flags) in changed {
                self.conn
                    .line(&format!("* {seq} FETCH (UID {uid} FLAGS ({flags}))"));
            }
        }
        self.ok(tag, "UID STORE done");
    }

    fn search(&mut self, tag: &str, args: &[Arg]) {
        let key = args.first().map(Arg::text).unwrap_or_default();
        let key = key.to_ascii_uppercase();
        let uids: Vec<String> = self
            .shared
            .lock()
            .folder
            .iter()
            .filter(|m| match key.as_str() {
                "DELETED" => m.has_flag("\\Deleted"),
                "UNDELETED" => !m.has_flag("\\Deleted"),
                "SEEN" => m.has_flag("\\Seen"),
                "UNSEEN" => !m.has_flag("\\Seen"),
                _ => true,
            })
            .map(|m| m.uid.to_string())
            .collect();
        if uids.is_empty() {
            self.conn.line("* SEARCH");
        } else {
            self.conn.line(&format!("* SEARCH {}", uids.join(" ")));
        }
        self.ok(tag, "UID SEARCH done");
    }

    /// Removes the `\Deleted` messages (of `set`, if given), answering
    /// `* n EXPUNGE` for each.
    fn expunge(&mut self, set: Option<&[(u32, u32)]>) {
        if self.read_only {
            return;
        }
        let mut st = self.shared.lock();
        let mut lines = Vec::new();
        let mut i = 0;
        while i < st.folder.len() {
            let m = &st.folder[i];
            if m.has_flag("\\Deleted") && set.is_none_or(|s| in_set(s, m.uid)) {
                let uid = m.uid;
                st.folder.remove(i);
                st.modseq += 1;
                st.expunged.push(uid);
                lines.push(format!("* {} EXPUNGE", i + 1));
            } else {
                i += 1;
            }
        }
        drop(st);
        for l in lines {
            self.conn.line(&l);
        }
    }
}

/// Waits until `f` holds or `timeout` passes; whether it held.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    f()
}
