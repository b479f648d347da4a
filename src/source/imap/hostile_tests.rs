//! Property tests that play a hostile IMAP server against the real client:
//! valid sessions in every shape and chunking, then the same sessions
//! mutated (flipped, cut, padded with lying literal markers, bogus tags,
//! NULs, endless lines, deep nesting, numbers past 32 bits) and run
//! through the login (LOGIN or SASL), select, listing, fetch (whole,
//! headers or `top`), delete / flag_seen / move_to and logout; APPEND
//! likewise. Whatever the server sends, the client never panics, always
//! returns, stays within a fixed memory budget, fails with a non-internal
//! error that names the server and holds no raw control character, and
//! never hands a partial or merged message to the sink: a body read to
//! its end is exactly one literal the server sent, for the UID its
//! response named. The pure codec functions get arbitrary bytes too.
//!
//! A body that comes before its UID is placed by sequence number and
//! streamed before the UID is seen (messages are never held whole); if
//! the UID then disagrees, the fetch fails, but that body was handed out
//! already. That is the design (see `fetch_response`), so the UID check
//! here only looks at a UID named before the literal.
//!
//! The server here ([`Hostile`]) answers each command line with the next
//! reply of its script whatever the command was (a broken server need not
//! understand us), and closes the connection when the script runs out.
//! Each case runs on its own thread under a watchdog, so a client that
//! loops without reading fails the property instead of hanging the test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;

use super::codec::{self, CrlfDecoder, Line, LiteralReader, Token};
use super::*;
use crate::net::Transport;

// ---------------------------------------------------------------------------
// Memory: a counting allocator, per thread.

/// Counts the bytes each thread holds, so a case (on its own thread) can
/// tell how much the client allocated. It is the global allocator of the
/// whole lib test binary; other tests only pay two thread-local updates
/// per allocation.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().wrapping_add(delta);
        live.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now);
            }
        });
    });
}

// SAFETY: every call goes to `System` unchanged; only counters are kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }

    // SAFETY: as for `alloc`: the caller's contract passes to `System` as is.
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }

    // SAFETY: as for `alloc`: the caller's contract passes to `System` as is.
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as isize));
    }

    // SAFETY: as for `alloc`: the caller's contract passes to `System` as is.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Most bytes this thread held at once since the last call, above what it
/// held then.
fn peak_since_reset() -> isize {
    PEAK.with(Cell::get) - BASE.with(Cell::get)
}

thread_local! {
    static BASE: Cell<isize> = const { Cell::new(0) };
}

fn reset_peak() {
    let now = LIVE.with(Cell::get);
    BASE.with(|b| b.set(now));
    PEAK.with(|p| p.set(now));
}

// ---------------------------------------------------------------------------
// The server.

/// A server that answers every command line with the next reply of its
/// script, in turn, whatever the command said; reads return at most the
/// next of `chunks` bytes (cycled); when the script is out, EOF.
struct Hostile {
    /// Replies sent and not yet read, the first from `offset`.
    arrived: VecDeque<Vec<u8>>,
    offset: usize,
    script: VecDeque<Vec<u8>>,
    chunks: Vec<usize>,
    next_chunk: usize,
    /// Reads that found nothing (EOF, or nothing sent yet): a client that
    /// keeps reading after the end is looping.
    empty_reads: usize,
}

impl Hostile {
    fn new(mut replies: Vec<Vec<u8>>, chunks: Vec<usize>) -> Hostile {
        let mut script: VecDeque<Vec<u8>> = replies.drain(..).collect();
        let mut arrived = VecDeque::new();
        if let Some(greeting) = script.pop_front() {
            arrived.push_back(greeting);
        }
        Hostile {
            arrived,
            offset: 0,
            script,
            chunks,
            next_chunk: 0,
            empty_reads: 0,
        }
    }
}

impl Read for Hostile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.arrived.front().is_some_and(|r| self.offset == r.len()) {
            self.arrived.pop_front();
            self.offset = 0;
        }
        let Some(reply) = self.arrived.front() else {
            self.empty_reads += 1;
            assert!(
                self.empty_reads < 1000,
                "the client keeps reading a connection that has ended"
            );
            if self.script.is_empty() {
                return Ok(0);
            }
            // The server waits for a command the client does not send: on
            // a socket, the read timeout.
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the server waits for a command",
            ));
        };
        let chunk = self.chunks[self.next_chunk % self.chunks.len()].max(1);
        self.next_chunk += 1;
        let n = (reply.len() - self.offset).min(buf.len()).min(chunk);
        buf[..n].copy_from_slice(&reply[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}

impl Write for Hostile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for _ in memchr::memchr_iter(b'\n', buf) {
            if let Some(reply) = self.script.pop_front() {
                self.arrived.push_back(reply);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for Hostile {}

// ---------------------------------------------------------------------------
// Sessions.

/// One message of the folder: its UID and its literal as sent (CRLF).
#[derive(Clone, Debug)]
struct Msg {
    uid: u32,
    body: Vec<u8>,
}

/// How the FETCH of one message is written.
#[derive(Clone, Debug)]
struct Shape {
    /// `BODY[]` before `UID` (placed by sequence number).
    body_first: bool,
    /// A `FLAGS (...)` item too.
    flags: bool,
    /// `~{n}` (literal8) instead of `{n}`.
    literal8: bool,
    /// Sent a second time (the copy must be read and dropped).
    twice: bool,
    /// An unsolicited response before this one.
    noise: Option<u8>,
}

/// A valid session: the messages in order of sequence number, how each
/// FETCH looks, the order the server sends them in (a permutation), and
/// how the sink reads.
#[derive(Clone, Debug)]
struct Session0 {
    msgs: Vec<Msg>,
    shapes: Vec<Shape>,
    order: Vec<usize>,
    dialect: Dialect,
}

/// How the server logs in and deletes, and what it offers.
#[derive(Clone, Copy, Debug)]
struct Dialect {
    /// 0: LOGIN, 1: AUTHENTICATE PLAIN (SASL-IR), 2: AUTHENTICATE LOGIN
    /// (two challenges), 3: CRAM-MD5.
    auth: u8,
    /// UIDPLUS (UID EXPUNGE); else UID SEARCH DELETED and EXPUNGE.
    uidplus: bool,
    /// The search answered as ESEARCH (IMAP4rev2).
    esearch: bool,
    /// ID offered: the client says who it is after the login.
    id: bool,
    /// What follows the fetch: 0 delete; 1 UID SEARCH UNSEEN and
    /// flag_seen; 2 move_to with MOVE (the folder created on TRYCREATE);
    /// 3 move_to without MOVE (UID COPY, then the deletion).
    after: u8,
}

impl Dialect {
    fn method(self) -> AuthMethod {
        match self.auth {
            0 => AuthMethod::User,
            1 => AuthMethod::Plain,
            2 => AuthMethod::Login,
            _ => AuthMethod::CramMd5,
        }
    }
}

fn dialect() -> impl Strategy<Value = Dialect> {
    (0u8..4, any::<bool>(), any::<bool>(), any::<bool>(), 0u8..4).prop_map(
        |(auth, uidplus, esearch, id, after)| Dialect {
            auth,
            uidplus,
            esearch,
            id,
            after,
        },
    )
}

/// What the fetch step asks for.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// `fetch`, with this max_size.
    Full(Option<u64>),
    /// `headers`: the header block, streamed like a body.
    Headers,
    /// `top`: the header and the first lines of the text, held in memory.
    Top(u32),
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        4 => prop::option::weighted(0.3, 0u64..100).prop_map(Mode::Full),
        1 => Just(Mode::Headers),
        1 => (0u32..4).prop_map(Mode::Top),
    ]
}

/// Body bytes biased towards what framing cares about: CR, LF, braces,
/// parentheses, quotes, and text that looks like responses.
fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..120).prop_map(|v| {
        let mut out = Vec::new();
        for b in v {
            match b {
                0..=29 => out.extend_from_slice(b"\r\n"),
                30..=44 => out.push(b'\r'),
                45..=59 => out.push(b'\n'),
                60..=64 => out.extend_from_slice(b"{5}\r\n"),
                65..=69 => out.extend_from_slice(b"\r\n* 1 FETCH (UID 4 BODY[] {3}\r\n"),
                70..=74 => out.extend_from_slice(b")\r\nA0004 OK done\r\n"),
                75..=79 => out.push(b'"'),
                80..=84 => out.push(b'('),
                85..=89 => out.push(b')'),
                90..=94 => out.push(0),
                _ => out.push(b'a' + b % 26),
            }
        }
        out
    })
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
        prop::option::weighted(0.3, 0u8..6),
    )
        .prop_map(|(body_first, flags, literal8, twice, noise)| Shape {
            body_first,
            flags,
            literal8,
            twice,
            noise,
        })
}

fn session() -> impl Strategy<Value = Session0> {
    (
        prop::collection::btree_set(1u32..2000, 0..5),
        prop::collection::vec(body_bytes(), 5),
        prop::collection::vec(shape(), 5),
        any::<prop::sample::Index>(),
        dialect(),
    )
        .prop_map(|(uids, bodies, shapes, perm, dialect)| {
            let msgs: Vec<Msg> = uids
                .into_iter()
                .zip(bodies)
                .map(|(uid, body)| Msg { uid, body })
                .collect();
            let n = msgs.len();
            // A permutation from one index: rotate, and reverse on odd.
            let k = if n == 0 { 0 } else { perm.index(n) };
            let mut order: Vec<usize> = (0..n).map(|i| (i + k) % n.max(1)).collect();
            if k % 2 == 1 {
                order.reverse();
            }
            Session0 {
                shapes: shapes[..n].to_vec(),
                msgs,
                order,
                dialect,
            }
        })
}

fn literal_marker(len: usize, literal8: bool) -> String {
    if literal8 {
        format!("~{{{len}}}\r\n")
    } else {
        format!("{{{len}}}\r\n")
    }
}

/// An unsolicited response a server may send in the middle of a FETCH.
fn noise(kind: u8, n: usize) -> Vec<u8> {
    match kind {
        0 => format!("* {n} EXISTS\r\n").into_bytes(),
        1 => b"* OK [ALERT] the server says hello\r\n".to_vec(),
        2 => format!("* {} FETCH (FLAGS (\\Seen \\Answered))\r\n", n.max(1)).into_bytes(),
        3 => b"* XFOO (a \"b\" {4}\r\nx)\r\n more)\r\n".to_vec(),
        4 => b"* 0 RECENT\r\n".to_vec(),
        _ => b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n".to_vec(),
    }
}

impl Session0 {
    /// The server's replies, one per command the client sends (the
    /// greeting first).
    fn replies(&self, mode: Mode) -> Vec<Vec<u8>> {
        let n = self.msgs.len();
        let d = self.dialect;
        let mut tags = 0;
        let mut tag = || {
            tags += 1;
            format!("A{tags:04}")
        };
        let mut r: Vec<Vec<u8>> = vec![
            b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN AUTH=LOGIN AUTH=CRAM-MD5 SASL-IR] ready\r\n"
                .to_vec(),
        ];
        // The login: each `+` waits for the client's next line.
        match d.auth {
            2 => r.extend([
                b"+ VXNlcm5hbWU6\r\n".to_vec(),
                b"+ UGFzc3dvcmQ6\r\n".to_vec(),
            ]),
            3 => r.push(b"+ PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n".to_vec()),
            _ => {}
        }
        let caps = format!(
            "IMAP4rev1{}{}{}",
            if d.uidplus { " UIDPLUS" } else { "" },
            if d.after == 2 { " MOVE" } else { "" },
            if d.id { " ID" } else { "" }
        );
        r.push(format!("{} OK [CAPABILITY {caps}] logged in\r\n", tag()).into_bytes());
        if d.id {
            r.push(format!("* ID (\"name\" \"Hostile\")\r\n{} OK id\r\n", tag()).into_bytes());
        }
        r.push(
            format!(
                "* FLAGS (\\Answered \\Deleted \\Seen)\r\n* {n} EXISTS\r\n\
                 * OK [UIDVALIDITY 42] UIDs valid\r\n* OK [UIDNEXT 2001] next\r\n\
                 {} OK [READ-WRITE] selected\r\n",
                tag()
            )
            .into_bytes(),
        );
        if n == 0 {
            // No listing, fetch or delete is sent for an empty folder.
            r.push(format!("* BYE logging out\r\n{} OK bye\r\n", tag()).into_bytes());
            return r;
        }
        let mut listing = Vec::new();
        for (i, m) in self.msgs.iter().enumerate() {
            listing.extend_from_slice(
                format!(
                    "* {} FETCH (UID {} RFC822.SIZE {})\r\n",
                    i + 1,
                    m.uid,
                    m.body.len()
                )
                .as_bytes(),
            );
        }
        listing.extend_from_slice(format!("{} OK done\r\n", tag()).as_bytes());
        r.push(listing);

        let mut fetch = Vec::new();
        for &i in &self.order {
            let (m, s) = (&self.msgs[i], &self.shapes[i]);
            if let Some(k) = s.noise {
                fetch.extend_from_slice(&noise(k, n));
            }
            let copies = if s.twice { 2 } else { 1 };
            for _ in 0..copies {
                let mut items = Vec::new();
                let uid = format!("UID {}", m.uid).into_bytes();
                let section = match mode {
                    Mode::Full(_) => "BODY[]",
                    Mode::Headers | Mode::Top(_) => "BODY[HEADER]",
                };
                let mut body =
                    format!("{section} {}", literal_marker(m.body.len(), s.literal8)).into_bytes();
                body.extend_from_slice(&m.body);
                if let Mode::Top(1..) = mode {
                    // The text is the same bytes again: the preview is the
                    // header and the first lines of it.
                    body.extend_from_slice(b" BODY[TEXT]<0> ");
                    body.extend_from_slice(literal_marker(m.body.len(), false).as_bytes());
                    body.extend_from_slice(&m.body);
                }
                if s.body_first {
                    items.push(body);
                    items.push(uid);
                } else {
                    items.push(uid);
                    items.push(body);
                }
                if s.flags {
                    items.insert(1, b"FLAGS (\\Seen)".to_vec());
                }
                fetch.extend_from_slice(format!("* {} FETCH (", i + 1).as_bytes());
                fetch.extend_from_slice(&items.join(&b' '));
                fetch.extend_from_slice(b")\r\n");
            }
        }
        fetch.extend_from_slice(format!("{} OK done\r\n", tag()).as_bytes());
        r.push(fetch);
        let uids: Vec<String> = self.msgs.iter().map(|m| m.uid.to_string()).collect();
        match d.after {
            1 => {
                let t = tag();
                r.push(format!("* SEARCH {}\r\n{t} OK searched\r\n", uids.join(" ")).into_bytes());
                r.push(format!("{} OK stored\r\n", tag()).into_bytes());
                r.push(format!("* BYE logging out\r\n{} OK bye\r\n", tag()).into_bytes());
                return r;
            }
            2 => {
                r.push(format!("{} NO [TRYCREATE] no such folder\r\n", tag()).into_bytes());
                r.push(format!("{} OK created\r\n", tag()).into_bytes());
                let mut moved = b"* OK [COPYUID 7 1:9 1:9] moved\r\n".to_vec();
                moved.extend_from_slice(&b"* 1 EXPUNGE\r\n".repeat(n));
                moved.extend_from_slice(format!("{} OK moved\r\n", tag()).as_bytes());
                r.push(moved);
                r.push(format!("* BYE logging out\r\n{} OK bye\r\n", tag()).into_bytes());
                return r;
            }
            3 => r.push(format!("{} OK copied\r\n", tag()).into_bytes()),
            _ => {}
        }
        r.push(format!("{} OK stored\r\n", tag()).into_bytes());
        if !d.uidplus {
            // Only ours carry \Deleted: a plain EXPUNGE is safe.
            let t = tag();
            let found = if d.esearch {
                format!("* ESEARCH (TAG \"{t}\") UID ALL {}\r\n", uids.join(","))
            } else {
                format!("* SEARCH {}\r\n", uids.join(" "))
            };
            r.push(format!("{found}{t} OK searched\r\n").into_bytes());
        }
        let mut expunge = b"* 1 EXPUNGE\r\n".repeat(n);
        expunge.extend_from_slice(format!("{} OK expunged\r\n", tag()).as_bytes());
        r.push(expunge);
        r.push(format!("* BYE logging out\r\n{} OK bye\r\n", tag()).into_bytes());
        r
    }
}

/// How the sink treats each body: how many bytes per read, and how much
/// it reads before it stops (a sink may stop early; the client must then
/// skip the rest in step).
#[derive(Clone, Debug)]
struct Reading {
    sizes: Vec<usize>,
    stop_after: Option<usize>,
    /// The sink fails (disk full) on this call, without reading: the
    /// client must still read every pending response, so the session
    /// goes on in step.
    fail_at: Option<usize>,
}

fn reading() -> impl Strategy<Value = Reading> {
    (
        prop::collection::vec(1usize..300, 1..4),
        prop::option::weighted(0.15, 0usize..40),
        prop::option::weighted(0.15, 0usize..5),
    )
        .prop_map(|(sizes, stop_after, fail_at)| Reading {
            sizes,
            stop_after,
            fail_at,
        })
}

/// One sink call: the index, and what reading the body gave.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    /// Read to its end without error.
    Whole(Vec<u8>),
    /// The sink stopped reading after these bytes.
    Stopped(Vec<u8>),
    /// The read failed; `over` is [`Message::over_limit`].
    Failed {
        over: bool,
    },
    Refused,
    /// The sink failed on this call.
    SinkFailed,
}

/// What the client did with one script.
#[derive(Debug)]
struct Outcome {
    /// Steps that returned Ok, in order; the first error ends the run.
    steps: Vec<&'static str>,
    error: Option<(ExitKind, String)>,
    listed: Vec<u32>,
    /// `fetch` returned the sink's own failure.
    sink_failed: bool,
    /// What `delete` said, per listed UID.
    deleted: Vec<bool>,
    got: Vec<(usize, Got)>,
    peak: isize,
}

fn read_body(body: &mut dyn Message, how: &Reading) -> Got {
    let mut out = Vec::new();
    let mut buf = [0u8; 300];
    for k in 0.. {
        if how.stop_after.is_some_and(|s| out.len() >= s) {
            return Got::Stopped(out);
        }
        let want = how.sizes[k % how.sizes.len()];
        match body.read(&mut buf[..want]) {
            Ok(0) => return Got::Whole(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => {
                return Got::Failed {
                    over: body.over_limit(),
                }
            }
        }
    }
    unreachable!()
}

/// Runs the client through a whole session against `replies`, on this
/// thread: greeting, LOGIN, SELECT, listing, fetch of everything listed,
/// delete of it, LOGOUT, stopping at the first error.
fn drive(
    replies: Vec<Vec<u8>>,
    chunks: Vec<usize>,
    how: &Reading,
    mode: Mode,
    dialect: Dialect,
) -> Outcome {
    reset_peak();
    let mut out = Outcome {
        steps: Vec::new(),
        error: None,
        listed: Vec::new(),
        sink_failed: false,
        deleted: Vec::new(),
        got: Vec::new(),
        peak: 0,
    };
    let res = (|| -> Result<()> {
        let stream = Hostile::new(replies, chunks);
        let client = Client::new(stream, "mock", None)?;
        out.steps.push("greeting");
        let mut s = client.login(dialect.method(), "alice", &Secret::new("hunter2"))?;
        out.steps.push("login");
        s.select("INBOX", false)?;
        out.steps.push("select");
        let listing = s.listing()?;
        out.steps.push("listing");
        // A hostile listing may name many UIDs: fetch a bounded number.
        out.listed = listing.iter().map(|e| e.handle).take(64).collect();
        let handles = out.listed.clone();
        let got = &mut out.got;
        let mut sink = |i: usize, f: Fetched<'_>| -> Result<()> {
            if how.fail_at == Some(got.len()) {
                got.push((i, Got::SinkFailed));
                return Err(Error::local_io(
                    "writing the message",
                    io::ErrorKind::StorageFull.into(),
                ));
            }
            let g = match f {
                Fetched::Body(body) => read_body(body, how),
                Fetched::Refused(_) => Got::Refused,
            };
            got.push((i, g));
            Ok(())
        };
        let fetched = match mode {
            Mode::Full(max) => s.fetch(&handles, max, &mut sink),
            Mode::Headers => s.headers(&handles, &mut sink).map(|_| ()),
            Mode::Top(lines) => s.top(&handles, lines, &mut sink),
        };
        match fetched {
            Ok(()) => {}
            // Ours: the session is meant to go on.
            Err(e) if e.is_local() => out.sink_failed = true,
            Err(e) => return Err(e),
        }
        out.steps.push("fetch");
        out.deleted = match dialect.after {
            1 => {
                let mut unseen = s.unseen()?;
                unseen.retain(|u| handles.contains(u));
                s.flag_seen(&unseen)?
            }
            2 | 3 => s.move_to(&handles, "Archive")?,
            _ => s.delete(&handles)?,
        };
        out.steps.push("delete");
        s.finish()?;
        out.steps.push("logout");
        Ok(())
    })();
    out.peak = peak_since_reset();
    if let Err(e) = res {
        out.error = Some((e.kind(), e.to_string()));
    }
    out
}

/// [`drive`] on its own thread, under a watchdog.
fn drive_guarded(
    replies: Vec<Vec<u8>>,
    chunks: Vec<usize>,
    how: Reading,
    mode: Mode,
    dialect: Dialect,
) -> Outcome {
    guarded(move || drive(replies, chunks, &how, mode, dialect))
}

/// Runs `f` on its own thread (so its memory is counted alone) under a
/// watchdog: a client that neither returns nor panics within the limit
/// fails the property.
fn guarded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(outcome) => {
            let _ = worker.join();
            outcome
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the worker sends before it ends"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("the client did not return within 60 s (a loop that does not read?)")
        }
    }
}

/// What SPEC's delivered form of a literal is: CRLF → LF, nothing else.
fn decoded(literal: &[u8]) -> Vec<u8> {
    decode_held(literal)
}

/// The most bytes the client may hold for a session over `wire`: fixed
/// buffers (the 128 KiB read buffer, 64 KiB lines and their copies, a
/// kept literal of at most 1 MiB), plus a `u32` per message number the
/// server names (EXISTS and the listing size the sequence map; doubled
/// for vector growth, and a listing entry each). Never the size of a
/// literal announced.
fn memory_budget(wire: &[u8], mode: Mode) -> isize {
    let mut most = 0usize;
    let mut n = 0usize;
    for &b in wire {
        if b.is_ascii_digit() {
            n = n.saturating_mul(10).saturating_add(usize::from(b - b'0'));
        } else {
            if n <= MAX_LISTING_ENTRIES {
                most = most.max(n);
            }
            n = 0;
        }
    }
    // `top` keeps its two literals (at most 1 MiB each, allocated as
    // announced) while it reads a third.
    let kept = match mode {
        Mode::Top(_) => 3 * codec::MAX_SMALL_LITERAL as usize,
        _ => 0,
    };
    (4 * 1024 * 1024 + kept + 64 * most + 16 * wire.len()) as isize
}

/// Every decoded form a body could take on `wire`: each literal marker
/// `{n}`, `{n+}` or `~{n}` followed by CRLF and `n` bytes. Returns
/// (where the marker's segment starts, where the literal starts, length).
fn literals_on(wire: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut found = Vec::new();
    for close in memchr::memchr_iter(b'}', wire) {
        if wire.get(close + 1..close + 3) != Some(b"\r\n") {
            continue;
        }
        let Some(open) = wire[..close].iter().rposition(|&b| b == b'{') else {
            continue;
        };
        let inner = &wire[open + 1..close];
        let digits = inner.strip_suffix(b"+").unwrap_or(inner);
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            continue;
        }
        let Ok(n) = std::str::from_utf8(digits).unwrap_or("x").parse::<usize>() else {
            continue;
        };
        let start = close + 3;
        if n <= wire.len() - start {
            let seg = wire[..open]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
            found.push((seg, start, n));
        }
    }
    found
}

/// Every quoted string on `wire` (a body may come as one), unescaped.
fn quoted_on(wire: &[u8]) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    for s in memchr::memchr_iter(b'"', wire) {
        let mut out = Vec::new();
        let mut i = s + 1;
        while let Some(&b) = wire.get(i) {
            i += 1;
            match b {
                b'"' => {
                    found.push(out);
                    break;
                }
                b'\n' => break,
                b'\\' => match wire.get(i) {
                    Some(&e) if e != b'\n' => {
                        out.push(e);
                        i += 1;
                    }
                    _ => break,
                },
                _ => out.push(b),
            }
        }
    }
    found
}

/// The UID the segment that opens a FETCH response names before the
/// literal, if it plainly does (`* n FETCH (... UID u ...`).
fn uid_named_before(segment: &[u8]) -> Option<u64> {
    if !segment.starts_with(b"* ") {
        return None;
    }
    let text = std::str::from_utf8(segment).ok()?;
    if text.contains('"') {
        // A string may hide words from this simple reading.
        return None;
    }
    // Words as the client splits atoms: at spaces and parentheses outside
    // `[section]` brackets.
    let mut words: Vec<&str> = Vec::new();
    let (mut start, mut in_brackets) = (0, false);
    for (i, c) in text.char_indices() {
        match c {
            '[' => in_brackets = true,
            ']' => in_brackets = false,
            ' ' | '(' | ')' if !in_brackets => {
                words.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    words.push(&text[start..]);
    words.retain(|w| !w.is_empty());
    if words.get(2).map(|w| w.to_ascii_uppercase()) != Some("FETCH".into()) {
        return None;
    }
    let at = words.iter().rposition(|w| w.eq_ignore_ascii_case("UID"))?;
    let n = words.get(at + 1)?;
    if n.len() > 20 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// The framing property for any script: each body read whole is exactly
/// one literal (or quoted string) of the wire, never a part of one or two
/// run together; when the response that carried it names its UID before
/// the literal, that is the UID the body was handed out for.
fn check_framing(wire: &[u8], handles: &[u32], got: &[(usize, Got)]) -> Result<(), String> {
    let lits = literals_on(wire);
    let mut seen = vec![false; handles.len()];
    for (i, g) in got {
        if std::mem::replace(&mut seen[*i], true) {
            return Err(format!("the sink got index {i} twice"));
        }
        let Got::Whole(body) = g else { continue };
        let mut framed = false;
        let mut attributed = false;
        for &(seg, start, n) in &lits {
            if decoded(&wire[start..start + n]) != *body {
                continue;
            }
            framed = true;
            // The line the marker ends is read back from the last LF, which
            // may lie inside an earlier literal (a body that holds
            // response-like text): then which response this is cannot be
            // told without a parser, and the UID is not checked.
            if lits.iter().any(|&(_, s2, n2)| s2 <= seg && seg < s2 + n2) {
                attributed = true;
                continue;
            }
            let marker = wire[..start - 2]
                .iter()
                .rposition(|&b| b == b'{')
                .unwrap_or(seg);
            match uid_named_before(&wire[seg..marker]) {
                Some(u) if u != u64::from(handles[*i]) => {}
                _ => attributed = true,
            }
        }
        if !framed && quoted_on(wire).iter().any(|q| decoded(q) == *body) {
            continue;
        }
        if !framed {
            return Err(format!(
                "index {i} (UID {}) got {:?}, which is no literal the server sent",
                handles[*i],
                codec::printable(body, 200)
            ));
        }
        if !attributed {
            return Err(format!(
                "index {i} got a literal of a response naming another UID than {}",
                handles[*i]
            ));
        }
    }
    Ok(())
}

/// Errors are the server's fault or the network's, never an internal one,
/// and say what happened.
fn check_error(error: Option<&(ExitKind, String)>) -> Result<(), String> {
    if let Some((kind, msg)) = error {
        if *kind == ExitKind::Internal || msg.trim().is_empty() {
            return Err(format!("error {kind:?}: {msg:?}"));
        }
        if !msg.contains("mock") {
            return Err(format!("an error that does not name the server: {msg}"));
        }
        // The message goes to a terminal as it is: what the server sent
        // in it must be escaped. Our description of a broken response is
        // short whatever the line was; the server's own words (the text of
        // a NO, BAD or BYE, the login methods it offers) are shown whole,
        // escaped: they are what the user needs, and a line bounds them.
        if msg.chars().any(char::is_control) {
            return Err(format!("raw control characters in the error: {msg:?}"));
        }
        let servers_words = [
            "the server refused",
            "the server ended the session",
            "it offers:",
            "SASL:",
        ]
        .iter()
        .any(|w| msg.contains(w));
        if msg.len() > 1000 && !servers_words {
            return Err(format!("an error of {} bytes: {msg:?}", msg.len()));
        }
    }
    Ok(())
}

/// What the sink gets for a message sent as `body`.
fn expected(body: &[u8], mode: Mode) -> Vec<u8> {
    let mut want = decoded(body);
    if let Mode::Top(lines @ 1..) = mode {
        let text = want.clone();
        let end = memchr::memchr_iter(b'\n', &text)
            .nth(lines as usize - 1)
            .map_or(text.len(), |n| n + 1);
        want.extend_from_slice(&text[..end]);
    }
    want
}

/// The exact outcome of a valid session: each listed UID handed out once,
/// with its first literal (decoded), or `OVER` past `max_size`; a `top`
/// preview is the header and the first lines of the text.
fn check_exact(s: &Session0, out: &Outcome, how: &Reading, mode: Mode) -> Result<(), String> {
    let max = match mode {
        Mode::Full(max) => max,
        _ => None,
    };
    let mut uids: Vec<u32> = s.msgs.iter().map(|m| m.uid).collect();
    uids.sort_unstable();
    if out.listed != uids {
        return Err(format!("listed {:?}, want {uids:?}", out.listed));
    }
    // A failing sink is called no more after its failure.
    let fails = how.fail_at.filter(|&k| k < uids.len());
    let calls = fails.map_or(uids.len(), |k| k + 1);
    if out.sink_failed != fails.is_some() {
        return Err(format!(
            "sink failed {}, fail_at {:?}",
            out.sink_failed, how.fail_at
        ));
    }
    if out.got.len() != calls {
        return Err(format!(
            "{} sink calls for {} UIDs",
            out.got.len(),
            uids.len()
        ));
    }
    for (i, g) in &out.got {
        let m = s.msgs.iter().find(|m| m.uid == uids[*i]).expect("listed");
        let want = expected(&m.body, mode);
        let over = max.is_some_and(|max| want.len() as u64 > max);
        let ok = match g {
            Got::Whole(b) => !over && *b == want,
            Got::Stopped(b) => want.starts_with(b) && how.stop_after.is_some(),
            Got::Failed { over: true } => over,
            Got::SinkFailed => how.fail_at.is_some(),
            _ => false,
        };
        if !ok {
            return Err(format!(
                "UID {}: got {g:?}, want {:?} (over max: {over})",
                m.uid,
                String::from_utf8_lossy(&want)
            ));
        }
    }
    Ok(())
}

fn chunks() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![1usize..8, 1usize..5000], 1..4)
}

// ---------------------------------------------------------------------------
// Mutations.

/// One change a broken or hostile server makes to its replies.
#[derive(Clone, Debug)]
enum Mutation {
    Flip {
        at: prop::sample::Index,
        xor: u8,
    },
    Insert {
        at: prop::sample::Index,
        bytes: Vec<u8>,
    },
    Delete {
        at: prop::sample::Index,
        len: usize,
    },
    /// The connection ends here.
    Truncate {
        at: prop::sample::Index,
    },
    /// A line of the reply, sent twice.
    DuplicateLine {
        at: prop::sample::Index,
    },
    /// A tag (`A000n`) changed.
    WrongTag {
        at: prop::sample::Index,
        digit: u8,
    },
    /// The next literal marker's length off by `delta` (a server that
    /// miscounts a message by a CRLF or two).
    LiteralLength {
        at: prop::sample::Index,
        delta: i8,
    },
    /// A number replaced by an extreme one, or (`None`) by itself plus
    /// 2^32, which a 32-bit reading would take for the original.
    Number {
        at: prop::sample::Index,
        with: Option<&'static str>,
    },
}

/// Bytes worth inserting: literal markers that lie, brackets that do not
/// close, NUL, bare CR/LF, an endless line, deep nesting.
fn insertion() -> impl Strategy<Value = Vec<u8>> {
    let sizes = prop::sample::select(vec![
        "0",
        "1",
        "7",
        "64",
        "4096",
        "2147483648",
        "1000000000000000",
        "18446744073709551615",
        "99999999999999999999",
        "",
        "-1",
        "1x",
    ]);
    prop_oneof![
        (sizes.clone(), 0u8..3).prop_map(|(n, form)| match form {
            0 => format!("{{{n}}}\r\n").into_bytes(),
            1 => format!("{{{n}+}}\r\n").into_bytes(),
            _ => format!(" ~{{{n}}}\r\n").into_bytes(),
        }),
        sizes.prop_map(|n| format!(" {n}").into_bytes()),
        prop::sample::select(vec![
            &b"("[..],
            b")",
            b"\0",
            b"\r",
            b"\n",
            b"\r\n",
            b"\"",
            b"\\",
            b"[",
            b"]",
            b" ",
            b"* ",
            b"+ go\r\n",
            b"* BYE [UNAVAILABLE] bye\r\n",
            b"* 1000000 EXISTS\r\n",
            b"* 0 EXISTS\r\n",
            b"* 1 EXISTS\r\n",
            b"* 1000001 EXISTS\r\n",
            b"* 4294967295 EXPUNGE\r\n",
            b"* 0 EXPUNGE\r\n",
            b"* 1 EXPUNGE\r\n",
            b"* 0 FETCH (BODY[] {2}\r\nhi)\r\n",
            b"* 1 FETCH (BODY[] {2}\r\nhi)\r\n",
            b"* 1 FETCH (BODY[] \"quoted\\\"body\")\r\n",
            b"* 1 FETCH (BODY[] NIL)\r\n",
            b"* 1 FETCH (BODY[] {1000000000000000}\r\n",
            b"* 2 FETCH (UID 4294967296 BODY[] {2}\r\nhi)\r\n",
            b"* OK [UIDVALIDITY 4294967296] x\r\n",
            b"* OK [ALERT] \x1b[2J\r\n",
        ])
        .prop_map(<[u8]>::to_vec),
        (1usize..=2, 0u8..2).prop_map(|(k, fill)| {
            let mut v = vec![if fill == 0 { b'a' } else { b'(' }; codec::MAX_LINE + k - 2];
            v.extend_from_slice(b"\r\n");
            v
        }),
        (1usize..80).prop_map(|d| {
            let mut v = b"* 1 FETCH (X ".to_vec();
            v.extend(std::iter::repeat_n(b'(', d));
            v.extend(std::iter::repeat_n(b')', d));
            v.extend_from_slice(b")\r\n");
            v
        }),
        prop::collection::vec(any::<u8>(), 1..6),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<prop::sample::Index>;
    prop_oneof![
        3 => (at(), 1u8..=255).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        4 => (at(), insertion()).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (at(), 1usize..20).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => at().prop_map(|at| Mutation::Truncate { at }),
        1 => (at(), -3i8..=3).prop_map(|(at, delta)| Mutation::LiteralLength { at, delta }),
        1 => at().prop_map(|at| Mutation::DuplicateLine { at }),
        1 => (at(), 0u8..10).prop_map(|(at, digit)| Mutation::WrongTag { at, digit }),
        2 => (
            at(),
            prop::option::weighted(
                0.7,
                prop::sample::select(vec![
                    "0",
                    "4294967295",
                    "4294967296",
                    "18446744073709551616",
                    "999999999999999999999999",
                    "1000000",
                ])
            )
        )
            .prop_map(|(at, with)| Mutation::Number { at, with }),
    ]
}

/// Applies `m` to the replies (all of them seen as one stream, so a
/// position may fall in any reply). A truncation drops every later reply.
fn mutate(replies: &mut Vec<Vec<u8>>, m: &Mutation) {
    let total: usize = replies.iter().map(Vec::len).sum();
    if total == 0 {
        return;
    }
    let locate = |replies: &Vec<Vec<u8>>, at: &prop::sample::Index| {
        let mut pos = at.index(total);
        for (r, reply) in replies.iter().enumerate() {
            if pos < reply.len() {
                return (r, pos);
            }
            pos -= reply.len();
        }
        (replies.len() - 1, replies.last().map_or(0, Vec::len))
    };
    match m {
        Mutation::Flip { at, xor } => {
            let (r, p) = locate(replies, at);
            if let Some(b) = replies[r].get_mut(p) {
                *b ^= xor;
            }
        }
        Mutation::Insert { at, bytes } => {
            let (r, p) = locate(replies, at);
            replies[r].splice(p..p, bytes.iter().copied());
        }
        Mutation::Delete { at, len } => {
            let (r, p) = locate(replies, at);
            let end = (p + len).min(replies[r].len());
            replies[r].drain(p..end);
        }
        Mutation::Truncate { at } => {
            let (r, p) = locate(replies, at);
            replies[r].truncate(p);
            replies.truncate(r + 1);
        }
        Mutation::DuplicateLine { at } => {
            let (r, p) = locate(replies, at);
            let reply = &replies[r];
            let start = reply[..p]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let end = reply[p..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(reply.len(), |i| p + i + 1);
            let line = reply[start..end].to_vec();
            replies[r].splice(start..start, line);
        }
        Mutation::WrongTag { at, digit } => {
            let (r, p) = locate(replies, at);
            let reply = &mut replies[r];
            if let Some(t) = memchr::memmem::find(&reply[p..], b"A000").map(|i| p + i) {
                if let Some(d) = reply.get_mut(t + 4) {
                    *d = b'0' + digit;
                }
            }
        }
        Mutation::LiteralLength { at, delta } => {
            let (r, p) = locate(replies, at);
            let reply = &mut replies[r];
            let Some(open) = memchr::memchr(b'{', &reply[p..]).map(|i| p + i) else {
                return;
            };
            let Some(close) = memchr::memchr(b'}', &reply[open..]).map(|i| open + i) else {
                return;
            };
            let Some(n) = std::str::from_utf8(&reply[open + 1..close])
                .ok()
                .and_then(|t| t.parse::<i64>().ok())
            else {
                return;
            };
            let lied = (n + i64::from(*delta)).max(0).to_string();
            reply.splice(open + 1..close, lied.bytes());
        }
        Mutation::Number { at, with } => {
            let (r, p) = locate(replies, at);
            let reply = &mut replies[r];
            // An alias goes where it matters: the next UID of the reply.
            let from = match with {
                Some(_) => Some(p),
                None => memchr::memmem::find(&reply[p..], b"UID ")
                    .map(|i| p + i)
                    .or_else(|| memchr::memmem::find(reply, b"UID ")),
            };
            let Some(p) = from else { return };
            if let Some(s) = reply[p..]
                .iter()
                .position(u8::is_ascii_digit)
                .map(|i| p + i)
            {
                let e = reply[s..]
                    .iter()
                    .position(|b| !b.is_ascii_digit())
                    .map_or(reply.len(), |i| s + i);
                let with = match with {
                    Some(w) => w.to_string(),
                    None => {
                        let n: u128 = std::str::from_utf8(&reply[s..e])
                            .ok()
                            .and_then(|t| t.parse().ok())
                            .unwrap_or(0);
                        (n + (1 << 32)).to_string()
                    }
                };
                reply.splice(s..e, with.bytes());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Session properties.

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// A valid session in any shape (bodies that look like responses,
    /// BODY before UID, literal8, duplicate FETCH responses, unsolicited
    /// responses in between), read in any chunks and buffer sizes, with or
    /// without max_size: every listed message is handed out once, exactly.
    #[test]
    fn valid_sessions_hand_out_each_message_exactly(
        s in session(),
        chunks in chunks(),
        how in reading(),
        mode in mode(),
    ) {
        let out = drive_guarded(s.replies(mode), chunks, how.clone(), mode, s.dialect);
        prop_assert!(out.error.is_none(), "{:?} after {:?}", out.error, out.steps);
        prop_assert_eq!(out.steps.len(), 7);
        prop_assert!(out.deleted.iter().all(|d| *d), "deleted {:?}", out.deleted);
        if let Err(e) = check_exact(&s, &out, &how, mode) {
            return Err(TestCaseError::fail(e));
        }
        let wire = s.replies(mode).concat();
        prop_assert!(out.peak <= memory_budget(&wire, mode), "peak {} bytes", out.peak);
    }

    /// The connection drops at any byte: bodies read whole before the cut
    /// are exact, the one cut short fails to read, and the session fails
    /// as a transport failure (75) or protocol error (76).
    #[test]
    fn a_connection_cut_anywhere_never_hands_out_a_partial_message(
        s in session(),
        cut in any::<prop::sample::Index>(),
        chunks in chunks(),
        mode in mode(),
    ) {
        let mode = match mode {
            Mode::Full(_) => Mode::Full(None),
            other => other,
        };
        let mut replies = s.replies(mode);
        mutate(&mut replies, &Mutation::Truncate { at: cut });
        let how = Reading { sizes: vec![64], stop_after: None, fail_at: None };
        let out = drive_guarded(replies, chunks, how, mode, s.dialect);
        if let Err(e) = check_error(out.error.as_ref()) {
            return Err(TestCaseError::fail(e));
        }
        if let Some((kind, msg)) = &out.error {
            prop_assert!(
                matches!(kind, ExitKind::TempFail | ExitKind::Protocol),
                "{:?}: {}", kind, msg
            );
        }
        for (i, g) in &out.got {
            let uid = out.listed[*i];
            let m = s.msgs.iter().find(|m| m.uid == uid).expect("listed");
            match g {
                Got::Whole(b) => prop_assert_eq!(b, &expected(&m.body, mode)),
                Got::Failed { over: false } => {
                    prop_assert_eq!(out.steps.last(), Some(&"listing"))
                }
                other => prop_assert!(false, "UID {}: {:?}", uid, other),
            }
        }
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Any mutation of a valid session: no panic, no hang, bounded
    /// memory, a server-side error class, and a body read whole is always
    /// exactly one literal the server sent (for the UID it named).
    #[test]
    fn mutated_sessions_are_contained(
        s in session(),
        mutations in prop::collection::vec(mutation(), 1..5),
        chunks in chunks(),
        how in reading(),
        mode in mode(),
    ) {
        let mut replies = s.replies(mode);
        for m in &mutations {
            mutate(&mut replies, m);
        }
        let wire = replies.concat();
        let out = drive_guarded(replies, chunks, how, mode, s.dialect);
        if let Err(e) = check_error(out.error.as_ref()) {
            return Err(TestCaseError::fail(e));
        }
        // A `top` preview is two literals joined and cut at a line: only
        // streamed bodies are held to the one-literal rule.
        if !matches!(mode, Mode::Top(_)) {
            if let Err(e) = check_framing(&wire, &out.listed, &out.got) {
                return Err(TestCaseError::fail(format!("{e} (steps {:?})", out.steps)));
            }
        }
        prop_assert!(
            out.peak <= memory_budget(&wire, mode),
            "peak {} bytes, budget {}", out.peak, memory_budget(&wire, mode)
        );
    }
}

// ---------------------------------------------------------------------------
// APPEND (the IMAP target) against the same server.

/// A login and `append_all` of `bodies` (no LF in them: the server here
/// counts lines, and a body is one), then LOGOUT. The replies: for each
/// message, one to the APPEND line (`+` to go on, or nothing with
/// LITERAL+) and one to the literal's line (the tagged OK with APPENDUID).
fn append_replies(bodies: &[Vec<u8>], literal_plus: bool) -> Vec<Vec<u8>> {
    let caps = if literal_plus { " LITERAL+" } else { "" };
    let mut r = vec![
        b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n".to_vec(),
        format!("A0001 OK [CAPABILITY IMAP4rev1 UIDPLUS{caps}] in\r\n").into_bytes(),
    ];
    for (k, _) in bodies.iter().enumerate() {
        r.push(if literal_plus {
            Vec::new()
        } else {
            b"+ go ahead\r\n".to_vec()
        });
        r.push(
            format!(
                "* {} EXISTS\r\nA{:04} OK [APPENDUID 42 {}] done\r\n",
                k + 1,
                k + 2,
                k + 10
            )
            .into_bytes(),
        );
    }
    let t = bodies.len() + 2;
    r.push(format!("* BYE bye\r\nA{t:04} OK out\r\n").into_bytes());
    r
}

/// What `append_all` returned (or the error), and the peak memory.
type Appended = (
    std::result::Result<Vec<Option<AppendUid>>, (ExitKind, String)>,
    isize,
);

fn drive_append(replies: Vec<Vec<u8>>, chunks: Vec<usize>, bodies: Vec<Vec<u8>>) -> Appended {
    guarded(move || {
        reset_peak();
        let res = (|| -> Result<Vec<Option<AppendUid>>> {
            let client = Client::new(Hostile::new(replies, chunks), "mock", None)?;
            let mut s = client.login(AuthMethod::User, "alice", &Secret::new("hunter2"))?;
            let mut readers: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
            let mut batch: Vec<Appending> = readers
                .iter_mut()
                .map(|r| Appending {
                    date: None,
                    size: r.len() as u64,
                    body: r,
                })
                .collect();
            let got = s.append_all("INBOX", &mut batch)?;
            s.finish()?;
            Ok(got)
        })();
        let peak = peak_since_reset();
        (res.map_err(|e| (e.kind(), e.to_string())), peak)
    })
}

fn append_bodies() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(
        body_bytes().prop_map(|b| b.into_iter().filter(|&c| c != b'\n').collect()),
        1..4,
    )
}

proptest! {
    #![proptest_config(config(256))]

    /// APPEND with and without LITERAL+: valid replies give every
    /// APPENDUID; mutated ones never panic, hang or grow memory, and fail
    /// with an error naming the server.
    #[test]
    fn appends_against_a_hostile_server_are_contained(
        bodies in append_bodies(),
        literal_plus in any::<bool>(),
        mutations in prop::collection::vec(mutation(), 0..4),
        chunks in chunks(),
    ) {
        let mut replies = append_replies(&bodies, literal_plus);
        for m in &mutations {
            mutate(&mut replies, m);
        }
        let wire = replies.concat();
        let (res, peak) = drive_append(replies, chunks, bodies.clone());
        if mutations.is_empty() {
            let want: Vec<Option<AppendUid>> = (0..bodies.len())
                .map(|k| Some(AppendUid { uidvalidity: 42, uid: k as u32 + 10 }))
                .collect();
            prop_assert_eq!(res.clone(), Ok(want));
        }
        if let Err((kind, msg)) = &res {
            if let Err(e) = check_error(Some(&(*kind, msg.clone()))) {
                return Err(TestCaseError::fail(e));
            }
        }
        let budget = memory_budget(&wire, Mode::Full(None));
        prop_assert!(peak <= budget, "peak {} bytes, budget {}", peak, budget);
    }
}

// ---------------------------------------------------------------------------
// Pure codec functions on arbitrary bytes.

/// Bytes biased towards IMAP syntax.
fn imap_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(|v| {
        v.into_iter()
            .map(|b| {
                const SYNTAX: &[u8] = b" ()[]{}+~\"\\*0123456789\r\nAOKNBYE<>.:,";
                if b < 160 {
                    SYNTAX[usize::from(b) % SYNTAX.len()]
                } else {
                    b
                }
            })
            .collect()
    })
}

fn line_of(bytes: &[u8]) -> Line {
    Line {
        buf: bytes.to_vec(),
        pos: 0,
    }
}

/// CRLF → LF by the book, the reference for [`CrlfDecoder`].
fn reference_decode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(b"\r\n") {
            out.push(b'\n');
            i += 2;
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

proptest! {
    #![proptest_config(config(512))]

    /// Heads, tokens and values never panic, and every token moves on:
    /// reading tokens to the end takes at most one per byte.
    #[test]
    fn parsers_never_panic_and_always_progress(bytes in imap_bytes(200)) {
        let _ = codec::parse_head(&mut line_of(&bytes));
        let mut l = line_of(&bytes);
        for _ in 0..=bytes.len() + 1 {
            let before = l.pos;
            match l.token() {
                Ok(Token::End) | Err(_) => break,
                Ok(_) => prop_assert!(l.pos > before, "a token that reads nothing"),
            }
        }
        prop_assert!(matches!(l.token(), Ok(Token::End) | Err(_)));
        let mut l = line_of(&bytes);
        for _ in 0..=bytes.len() + 1 {
            let before = l.pos;
            match l.skip_value(0) {
                Ok(None) if l.peek().is_none() => break,
                Ok(None) => prop_assert!(l.pos > before),
                Ok(Some((depth, _))) => prop_assert!(depth <= codec::MAX_DEPTH),
                Err(_) => break,
            }
            if l.pos == before {
                break;
            }
        }
        let _ = l.text();
        let text = String::from_utf8_lossy(&bytes);
        let _ = codec::Code::parse(&text);
        let _ = trailing_literal(&bytes);
    }

    /// What a status response says reaches the user (alerts, refusals,
    /// the greeting): its text and code never hold a raw control
    /// character, whatever the line.
    #[test]
    fn status_words_are_escaped(bytes in imap_bytes(120), ctl in any::<u8>()) {
        let mut bytes = bytes;
        if !bytes.is_empty() {
            let at = usize::from(ctl) % bytes.len();
            bytes[at] = ctl % 32;
        }
        for prefix in [&b"* "[..], b"A1 ", b""] {
            let mut line = prefix.to_vec();
            line.extend_from_slice(&bytes);
            let status = match codec::parse_head(&mut line_of(&line)) {
                Ok(codec::Head::Status(s) | codec::Head::Tagged(_, s)) => s,
                Ok(codec::Head::Continue(text)) => {
                    prop_assert!(!text.chars().any(char::is_control), "{:?}", text);
                    continue;
                }
                _ => continue,
            };
            let shown = status.describe();
            prop_assert!(!shown.chars().any(char::is_control), "{:?}", shown);
        }
    }

    /// A head's parse is the same on any line (it resets the position).
    #[test]
    fn parse_head_is_repeatable(bytes in imap_bytes(120)) {
        let mut l = line_of(&bytes);
        let first = codec::parse_head(&mut l);
        l.pos = l.buf.len();
        prop_assert_eq!(codec::parse_head(&mut l), first);
    }

    /// `parse_set` never panics, never returns `max` numbers or more, and
    /// reads back what `uid_sets` writes.
    #[test]
    fn sets_parse_within_their_bound(
        text in imap_bytes(40),
        max in 0usize..2000,
        uids in prop::collection::btree_set(1u32..u32::MAX, 0..50),
    ) {
        if let Some(v) = codec::parse_set(&String::from_utf8_lossy(&text), max) {
            prop_assert!(v.len() <= max);
        }
        let uids: Vec<u32> = uids.into_iter().collect();
        let back: Vec<u32> = codec::uid_sets(&uids, 30)
            .iter()
            .flat_map(|(s, _)| codec::parse_set(s, 100_000).expect("our own set"))
            .collect();
        prop_assert_eq!(back, uids);
    }

    /// The CRLF decoder gives the reference result whatever the input
    /// chunks and output buffer sizes, and always makes progress.
    #[test]
    fn crlf_decoder_is_independent_of_chunking(
        data in imap_bytes(300),
        chunks in prop::collection::vec(1usize..40, 1..5),
        rooms in prop::collection::vec(2usize..40, 1..5),
    ) {
        let mut d = CrlfDecoder::default();
        let mut out = Vec::new();
        let (mut pos, mut c, mut r) = (0, 0, 0);
        loop {
            let end = (pos + chunks[c % chunks.len()]).min(data.len());
            c += 1;
            let last = end == data.len();
            let mut buf = vec![0u8; rooms[r % rooms.len()]];
            r += 1;
            let (used, wrote) = d.decode(&data[pos..end], &mut buf, last);
            prop_assert!(used <= end - pos && wrote <= buf.len());
            out.extend_from_slice(&buf[..wrote]);
            pos += used;
            if pos == data.len() && !d.holds_cr() {
                break;
            }
            prop_assert!(used > 0 || wrote > 0, "no progress");
        }
        prop_assert_eq!(&out, &reference_decode(&data));
        prop_assert_eq!(
            out.len() as u64 + d.line_ends(),
            data.len() as u64
        );
    }

    /// A literal read through any buffer and read sizes gives its decoded
    /// bytes and leaves what follows it unread; cut short, it fails.
    #[test]
    fn literal_reader_frames_exactly(
        literal in imap_bytes(300),
        rest in imap_bytes(20),
        capacity in 1usize..64,
        sizes in prop::collection::vec(1usize..50, 1..4),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let mut wire = literal.clone();
        wire.extend_from_slice(&rest);
        if let Some(cut) = cut.filter(|_| !literal.is_empty()) {
            wire.truncate(cut.index(literal.len()));
        }
        let mut r = io::BufReader::with_capacity(capacity, &wire[..]);
        let mut lit = LiteralReader::new(&mut r, literal.len() as u64, None);
        let mut out = Vec::new();
        let mut buf = [0u8; 50];
        let mut failed = false;
        for k in 0.. {
            match lit.read(&mut buf[..sizes[k % sizes.len()]]) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
            prop_assert!(out.len() <= literal.len());
        }
        if wire.len() < literal.len() {
            prop_assert!(failed, "a cut literal read as whole");
        } else {
            prop_assert!(!failed);
            prop_assert!(lit.is_complete());
            prop_assert_eq!(&out, &reference_decode(&literal));
            let mut after = Vec::new();
            r.read_to_end(&mut after).unwrap();
            prop_assert_eq!(after, rest);
        }
    }
}

// ---------------------------------------------------------------------------
// Plain regression tests: the inputs the properties are about, kept small.

/// A complete session with one message (UID 4), whose FETCH reply is
/// `fetch` (tagged A0004).
fn one_message(fetch: &[u8]) -> Vec<Vec<u8>> {
    let s = Session0 {
        msgs: vec![Msg {
            uid: 4,
            body: b"hi\r\n".to_vec(),
        }],
        shapes: vec![Shape {
            body_first: false,
            flags: false,
            literal8: false,
            twice: false,
            noise: None,
        }],
        order: vec![0],
        dialect: PLAIN,
    };
    let mut r = s.replies(Mode::Full(None));
    r[4] = fetch.to_vec();
    r
}

/// LOGIN, UIDPLUS, delete.
const PLAIN: Dialect = Dialect {
    auth: 0,
    uidplus: true,
    esearch: false,
    id: false,
    after: 0,
};

fn plain_reading() -> Reading {
    Reading {
        sizes: vec![300],
        stop_after: None,
        fail_at: None,
    }
}

#[test]
fn announced_literals_of_any_size_are_never_allocated() {
    for fetch in [
        &b"* 1 FETCH (UID 4 BODY[] {1000000000000000}\r\nabc"[..],
        b"* 1 FETCH (UID 4 X-HUGE {1000000000000000}\r\nabc",
        b"* XFOO {18446744073709551615}\r\nabc",
        b"* 1 FETCH (UID 4 BODY[] {999999999999999999}\r\n",
    ] {
        let replies = one_message(fetch);
        let wire = replies.concat();
        let out = drive_guarded(
            replies,
            vec![4096],
            plain_reading(),
            Mode::Full(None),
            PLAIN,
        );
        let (kind, msg) = out.error.clone().expect("cut short");
        assert_eq!(kind, ExitKind::TempFail, "{msg}");
        assert!(
            out.peak < memory_budget(&wire, Mode::Full(None)),
            "peak {}",
            out.peak
        );
        assert!(!out.got.iter().any(|(_, g)| matches!(g, Got::Whole(_))));
    }
}

#[test]
fn valid_session_passes_every_step() {
    let s = Session0 {
        msgs: vec![
            Msg {
                uid: 4,
                body: b"a\r\nb".to_vec(),
            },
            Msg {
                uid: 9,
                body: b")\r\nA0004 OK x\r\n".to_vec(),
            },
        ],
        shapes: vec![
            Shape {
                body_first: true,
                flags: true,
                literal8: false,
                twice: true,
                noise: Some(3),
            },
            Shape {
                body_first: false,
                flags: false,
                literal8: true,
                twice: false,
                noise: Some(0),
            },
        ],
        order: vec![1, 0],
        dialect: Dialect {
            auth: 2,
            uidplus: false,
            esearch: true,
            id: true,
            after: 3,
        },
    };
    let how = plain_reading();
    for mode in [Mode::Full(None), Mode::Headers, Mode::Top(0), Mode::Top(2)] {
        let out = drive_guarded(s.replies(mode), vec![1], how.clone(), mode, s.dialect);
        assert_eq!(out.error, None, "{mode:?}");
        check_exact(&s, &out, &how, mode).unwrap();
    }
}
