//! Delivery guarantees (SPEC §4) under fire. The real binary is killed
//! with SIGKILL at seeded random instants, the scripted server misbehaves
//! in every way it knows, two syncs race for one mailbox, the disk fills
//! up, and secrets are hunted for in every output. After each failure:
//! the documented exit code, nothing partial on disk, and a clean later run
//! that delivers every message exactly once.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::certs::TestPki;
use crate::support::server::{dot_stuff, wire_form, Config, Fault, Msg, Server, Tls};
use crate::support::{expected_delivery, files_in, maildir_messages, Env, Rng, Run};
use crate::sync::{account, parse_mboxrd};

// ---------------------------------------------------------------------------
// Helpers

/// `n` distinct messages of roughly `size` bytes with the lines that need
/// care on the wire (dot lines, From lines, CRLF, 8-bit, no final LF).
fn messages(tag: &str, n: usize, size: usize) -> Vec<Msg> {
    (0..n)
        .map(|i| {
            let mut d = format!(
                "Return-Path: <s{i}@example.org>\nFrom: Sender {i} <s{i}@example.org>\nTo: alice@example.com\nSubject: {tag} {i}\nMessage-ID: <{tag}.{i}@popfetch.test>\n\n.leading dot\n..two dots\n.\nFrom the start\ncaf\u{e9} \u{2603}\r\n"
            )
            .into_bytes();
            let mut k = 0;
            while d.len() < size {
                d.extend_from_slice(format!("{tag} body line {k} of message {i}\n").as_bytes());
                k += 1;
            }
            if i % 3 == 2 {
                d.extend_from_slice(b"no final newline");
            }
            Msg::new(format!("{tag}-uid-{i:03}"), d)
        })
        .collect()
}

/// The bytes a RETR of `m` puts on the wire, status line included.
fn retr_response(m: &Msg) -> Vec<u8> {
    let wire = wire_form(&m.data);
    let mut resp = format!("+OK {} octets\r\n", wire.len()).into_bytes();
    resp.extend_from_slice(&dot_stuff(&wire));
    resp.extend_from_slice(b".\r\n");
    resp
}

/// What a Maildir holds compared with what the server had.
#[derive(Debug)]
struct Inventory {
    /// Copies of each message (same order as the messages) in new/ + cur/.
    counts: Vec<usize>,
    /// Files in new/ or cur/ that are no complete message of ours.
    strangers: Vec<String>,
    /// Files in tmp/.
    tmp: Vec<String>,
}

fn inventory(root: &Path, msgs: &[Msg]) -> Inventory {
    let want = wanted(msgs);
    let mut inv = Inventory {
        counts: vec![0; msgs.len()],
        strangers: Vec::new(),
        tmp: files_in(&root.join("tmp")),
    };
    for sub in ["new", "cur"] {
        for name in files_in(&root.join(sub)) {
            let data = fs::read(root.join(sub).join(&name)).unwrap();
            match want.get(&data) {
                Some(&i) => inv.counts[i] += 1,
                None => inv
                    .strangers
                    .push(format!("{sub}/{name} ({} bytes)", data.len())),
            }
        }
    }
    inv
}

/// Nothing partial or corrupt, nothing twice (after a failed run).
#[track_caller]
fn assert_clean_failure(what: &str, root: &Path, msgs: &[Msg]) {
    let inv = inventory(root, msgs);
    assert!(
        inv.tmp.is_empty(),
        "{what}: partial files left in tmp/: {:?}",
        inv.tmp
    );
    assert!(
        inv.strangers.is_empty(),
        "{what}: incomplete or corrupt files: {:?}",
        inv.strangers
    );
    assert!(
        inv.counts.iter().all(|&c| c <= 1),
        "{what}: delivered twice: {:?}",
        inv.counts
    );
}

/// Every message exactly once, and nothing else.
#[track_caller]
fn assert_exactly_once(what: &str, root: &Path, msgs: &[Msg]) {
    let inv = inventory(root, msgs);
    assert!(
        inv.strangers.is_empty() && inv.tmp.is_empty(),
        "{what}: stray files: {:?} tmp {:?}",
        inv.strangers,
        inv.tmp
    );
    assert!(
        inv.counts.iter().all(|&c| c == 1),
        "{what}: copies per message: {:?}",
        inv.counts
    );
}

fn uidls_on(server: &Server) -> Vec<String> {
    server.messages().into_iter().map(|m| m.uidl).collect()
}

/// No loss in delete mode: every message is still on the server or
/// delivered.
#[track_caller]
fn assert_none_lost(what: &str, root: &Path, msgs: &[Msg], server: &Server) {
    let inv = inventory(root, msgs);
    let left = uidls_on(server);
    for (m, &c) in msgs.iter().zip(&inv.counts) {
        assert!(
            c >= 1 || left.contains(&m.uidl),
            "{what}: {} is neither on the server nor delivered",
            m.uidl
        );
    }
}

/// A DELE was sent only for messages that are in the Maildir.
#[track_caller]
fn assert_dele_only_delivered(what: &str, root: &Path, msgs: &[Msg], server: &Server) {
    let inv = inventory(root, msgs);
    for (m, &c) in msgs.iter().zip(&inv.counts) {
        assert!(
            server.dele_count(&m.uidl) == 0 || c >= 1,
            "{what}: DELE sent for {} which was never delivered",
            m.uidl
        );
    }
}

/// Runs `f` over `items` on a few threads; collects every failure (panic
/// message) instead of stopping at the first, then fails with all of them.
fn run_parallel<T: Sync>(threads: usize, items: &[T], f: impl Fn(&T) + Sync) {
    let next = AtomicUsize::new(0);
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= items.len() {
                    break;
                }
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&items[i])));
                if let Err(p) = r {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panic".into());
                    failures.lock().unwrap().push(msg);
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        items.len(),
        failures.join("\n\n")
    );
}

fn with_timeout(cfg: String, secs: u32) -> String {
    cfg.replace("timeout = 10", &format!("timeout = {secs}"))
}

// ---------------------------------------------------------------------------
// 1. kill -9 at random instants

#[derive(Clone, Copy, Debug)]
struct Trial {
    index: usize,
    keep: bool,
    seed: u64,
}

#[derive(Default, Debug)]
struct Figures {
    trials: usize,
    killed_mid_run: usize,
    lost: usize,
    duplicated: usize,
    /// Duplicates inside the target's documented window (MDA: the message
    /// delivered when the kill came, before its seen record).
    duplicated_in_window: usize,
    bad_dele: usize,
    corrupt: usize,
    /// Partial messages seen at a kill instant or after recovery.
    truncated: usize,
    /// mbox: our unfinished append at the kill instant (under our dotlock,
    /// taken back by the next run's recovery).
    partial_append_at_kill: usize,
    tmp_leftovers: usize,
    /// Kills that landed after the first messages became visible.
    killed_after_commit: usize,
    /// Delete-mode kills that landed after the first DELE was sent.
    killed_after_dele: usize,
    /// Kills that left delivery-journal entries for the next run to resolve.
    killed_with_journal: usize,
    /// mbox: kills that left the `.lock` dotfile behind (a dead pid in it).
    killed_holding_dotlock: usize,
    failures: Vec<String>,
}

const CRASH_MESSAGES: usize = 30;

/// Where the crash trials deliver. Each has its own way of telling, from
/// outside, which messages it holds and which are partial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sink {
    Maildir,
    /// `~/mail/inbox`.
    Mbox,
    /// A shell MDA that writes each message to a temporary name in
    /// `~/mda-out`, fsyncs it, and renames it to a name of its own: one file
    /// per delivered message, never a partial one unless it was handed one.
    Mda,
}

impl Sink {
    /// The account's config for this target.
    fn config(self, env: &Env, port: u16, keep: bool) -> String {
        let extra = if keep { "" } else { "keep = false" };
        let cfg = account("c", port, "none", extra);
        let maildir = "maildir = \"~/Mail/c\"";
        match self {
            Sink::Maildir => cfg,
            Sink::Mbox => cfg.replace(maildir, "mbox = \"~/mail/inbox\""),
            Sink::Mda => {
                let out = self.root(env);
                fs::create_dir_all(&out).unwrap();
                let script = format!(
                    "t={out}/.tmp.$$ && cat > $t && sync $t && mv $t {out}/$(date +%s%N).$$",
                    out = out.display()
                );
                cfg.replace(maildir, &format!("mda = {script:?}"))
            }
        }
    }

    /// The Maildir, the mbox file, or the MDA's output folder.
    fn root(self, env: &Env) -> PathBuf {
        match self {
            Sink::Maildir => env.maildir("c"),
            Sink::Mbox => env.home().join("mail/inbox"),
            Sink::Mda => env.home().join("mda-out"),
        }
    }

    fn inventory(self, env: &Env, msgs: &[Msg]) -> Inventory {
        let root = self.root(env);
        match self {
            Sink::Maildir => inventory(&root, msgs),
            Sink::Mbox => {
                let want = wanted(msgs);
                let mut inv = Inventory {
                    counts: vec![0; msgs.len()],
                    strangers: Vec::new(),
                    tmp: Vec::new(),
                };
                let text = fs::read(&root).unwrap_or_default();
                for (at, m) in mbox_messages(&text) {
                    match m.and_then(|m| want.get(&m).copied()) {
                        Some(i) => inv.counts[i] += 1,
                        None => inv.strangers.push(format!("message at byte {at}")),
                    }
                }
                if root.with_file_name("inbox.lock").exists() {
                    inv.tmp.push("inbox.lock".into());
                }
                inv
            }
            Sink::Mda => {
                let want = wanted(msgs);
                let mut inv = Inventory {
                    counts: vec![0; msgs.len()],
                    strangers: Vec::new(),
                    tmp: Vec::new(),
                };
                for name in files_in(&root) {
                    if name.starts_with('.') {
                        // The MDA's own temporary file (an MDA killed
                        // before its rename): never a delivery.
                        inv.tmp.push(name);
                        continue;
                    }
                    let data = fs::read(root.join(&name)).unwrap();
                    match want.get(&data) {
                        Some(&i) => inv.counts[i] += 1,
                        None => inv.strangers.push(format!("{name} ({} bytes)", data.len())),
                    }
                }
                inv
            }
        }
    }

    /// When to kill. The Maildir keeps its long-standing draw (same seeds,
    /// same instants); the others aim at their own short windows.
    fn draw(self, rng: &mut Rng, keep: bool, span_us: u64) -> KillPoint {
        match self {
            Sink::Maildir => KillPoint::draw(rng, keep, span_us),
            // The append runs under the dotlock: journal, append, fsync,
            // then the seen records once the lock is gone.
            Sink::Mbox => match rng.next() % 10 {
                0..=2 => KillPoint::At(rng.range(0, span_us)),
                3 | 4 => KillPoint::Locked(rng.range(0, 1500)),
                // The append itself takes a few hundred microseconds.
                5 => KillPoint::Visible(rng.range(0, 300)),
                6 | 7 => KillPoint::Visible(rng.range(0, 3000)),
                _ if keep => KillPoint::At(rng.range(span_us * 3 / 4, span_us)),
                _ => KillPoint::Dele(rng.range(0, 1500)),
            },
            // Each message is one MDA run and one seen record.
            Sink::Mda => match rng.next() % 10 {
                0..=2 => KillPoint::At(rng.range(0, span_us)),
                3..=7 => KillPoint::Delivered(
                    rng.range(1, CRASH_MESSAGES as u64 + 1) as usize,
                    rng.range(0, 3000),
                ),
                _ if keep => KillPoint::At(rng.range(span_us * 3 / 4, span_us)),
                _ => KillPoint::Dele(rng.range(0, 1500)),
            },
        }
    }

    /// Whether `event` has happened.
    fn saw(self, env: &Env, server: &Server, event: Event) -> bool {
        let root = self.root(env);
        match event {
            Event::TmpFiles(n) => files_in(&root.join("tmp")).len() >= n,
            Event::Visible if self == Sink::Maildir => !files_in(&root.join("new")).is_empty(),
            Event::Visible => fs::metadata(&root).is_ok_and(|m| m.len() > 0),
            Event::Locked => root.with_file_name("inbox.lock").exists(),
            Event::Delivered(n) => {
                files_in(&root)
                    .iter()
                    .filter(|f| !f.starts_with('.'))
                    .count()
                    >= n
            }
            Event::Dele => server.log().iter().any(|l| l.starts_with("DELE")),
        }
    }
}

/// Each expected delivery and its index.
fn wanted(msgs: &[Msg]) -> HashMap<Vec<u8>, usize> {
    let want: HashMap<Vec<u8>, usize> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| (expected_delivery(&m.data), i))
        .collect();
    assert_eq!(want.len(), msgs.len(), "test messages must be distinct");
    want
}

/// The messages of an mboxrd file, unquoted, each with the byte offset of
/// its From_ line; `None` for one that does not end with the empty line
/// that closes every complete message (cut short), or text before the
/// first From_ line.
fn mbox_messages(text: &[u8]) -> Vec<(usize, Option<Vec<u8>>)> {
    let mut out: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut junk_at_start = false;
    let mut at = 0;
    for line in text.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"From ") {
            out.push((at, Vec::new()));
        } else if let Some((_, cur)) = out.last_mut() {
            let gt = line.iter().take_while(|&&b| b == b'>').count();
            if gt > 0 && line[gt..].starts_with(b"From ") {
                cur.extend_from_slice(&line[1..]);
            } else {
                cur.extend_from_slice(line);
            }
        } else {
            junk_at_start = true;
        }
        at += line.len();
    }
    let mut messages: Vec<(usize, Option<Vec<u8>>)> = out
        .into_iter()
        .map(|(at, mut m)| {
            let complete = m.ends_with(b"\n\n") || m == b"\n";
            m.pop();
            (at, complete.then_some(m))
        })
        .collect();
    if junk_at_start {
        messages.insert(0, (0, None));
    }
    messages
}

/// When a trial kills the process. A kill at a uniformly random time
/// rarely lands in the short windows that matter most (the batch commit,
/// the DELEs), so some trials wait for an event on disk or on the server
/// and kill a random few hundred microseconds after it.
#[derive(Clone, Copy, Debug)]
enum KillPoint {
    /// At a time (µs after the spawn) uniform over a full run.
    At(u64),
    /// When tmp/ holds this many files (messages being written; with all
    /// of them: the fsyncs and the journal), then after a delay.
    TmpFiles(usize, u64),
    /// When the first message appears in new/ (the renames, then the seen
    /// records), or the mbox first grows, then after a delay.
    Visible(u64),
    /// When the mbox's dotlock appears (its append begins), then after a
    /// delay.
    Locked(u64),
    /// When the MDA has delivered this many messages, then after a delay.
    Delivered(usize, u64),
    /// When the server got the first DELE, then after a delay.
    Dele(u64),
}

#[derive(Clone, Copy, Debug)]
enum Event {
    TmpFiles(usize),
    Visible,
    Locked,
    Delivered(usize),
    Dele,
}

impl KillPoint {
    fn draw(rng: &mut Rng, keep: bool, span_us: u64) -> KillPoint {
        match rng.next() % 10 {
            0..=2 => KillPoint::At(rng.range(0, span_us)),
            3 | 4 => KillPoint::TmpFiles(
                rng.range(1, CRASH_MESSAGES as u64) as usize,
                rng.range(0, 2000),
            ),
            5 | 6 => KillPoint::TmpFiles(CRASH_MESSAGES, rng.range(0, 4000)),
            7 if keep => KillPoint::Visible(rng.range(0, 3000)),
            7 | 8 => KillPoint::Visible(rng.range(0, 1500)),
            _ if keep => KillPoint::At(rng.range(span_us * 3 / 4, span_us)),
            _ => KillPoint::Dele(rng.range(0, 1500)),
        }
    }

    fn split(self) -> (Option<Event>, u64) {
        match self {
            KillPoint::At(us) => (None, us),
            KillPoint::TmpFiles(n, us) => (Some(Event::TmpFiles(n)), us),
            KillPoint::Visible(us) => (Some(Event::Visible), us),
            KillPoint::Locked(us) => (Some(Event::Locked), us),
            KillPoint::Delivered(n, us) => (Some(Event::Delivered(n)), us),
            KillPoint::Dele(us) => (Some(Event::Dele), us),
        }
    }
}

/// One trial: start a sync against a slow server, SIGKILL it at a seeded
/// instant, check what the disk and the server show at that instant, then
/// sync to completion and check every message.
fn crash_trial(sink: Sink, t: Trial, spans: &[[Duration; 2]; 2], figures: &Mutex<Figures>) {
    let mut rng = Rng::new(t.seed);
    let env = Env::new();
    let msgs = messages("crash", CRASH_MESSAGES, 6_000);
    let which = (rng.next() % 2) as usize;
    let fault = crash_faults()[which].clone();
    let full_run = spans[usize::from(t.keep)][which];
    let server = Server::start(Config {
        messages: msgs.clone(),
        faults: vec![fault.clone()],
        ..Config::default()
    });
    env.write_config(&sink.config(&env, server.port(), t.keep));

    let span = full_run.as_micros() as u64;
    let point = sink.draw(&mut rng, t.keep, span);
    let mut child = env
        .command(&["sync"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut finished_first = false;
    let (event, delay_us) = point.split();
    if let Some(event) = event {
        // Poll for the event (bounded), then wait the drawn delay.
        while started.elapsed() < Duration::from_secs(10) {
            if child.try_wait().unwrap().is_some() {
                finished_first = true;
                break;
            }
            if sink.saw(&env, &server, event) {
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    std::thread::sleep(Duration::from_micros(delay_us));
    finished_first |= child.try_wait().unwrap().is_some();
    let _ = child.kill(); // SIGKILL
    child.wait().unwrap();

    // Let the server take in whatever the dead client had already sent.
    // An MDA runs in a process group of its own and outlives popfetch:
    // let it finish its message too (its temporary file renamed, nothing
    // changing for a while).
    let mut last = (usize::MAX, Vec::new());
    let mut quiet = 0;
    let settle_by = Instant::now() + Duration::from_secs(10);
    while Instant::now() < settle_by {
        let files = if sink == Sink::Mda {
            files_in(&sink.root(&env))
        } else {
            Vec::new()
        };
        let busy = files.iter().any(|f| f.starts_with('.'));
        let now = (server.log().len(), files);
        quiet = if now == last && !busy { quiet + 1 } else { 0 };
        let enough = if sink == Sink::Mda { 20 } else { 1 };
        if quiet >= enough {
            break;
        }
        last = now;
        std::thread::sleep(Duration::from_millis(15));
    }

    let label = format!(
        "{sink:?} trial {} ({}, seed {:#x}, {fault:?}, kill {point:?}, full run {span} µs)",
        t.index,
        if t.keep { "keep" } else { "delete" },
        t.seed,
    );
    let mut fails = Vec::new();
    let mut bad_dele = 0;
    let mut lost = 0;
    // At the instant of the kill: DELE only for delivered messages, and
    // every message on the server or in the target.
    let at_kill = sink.inventory(&env, &msgs);
    let journal = journal_entries(&env.state_dir());
    let seen_at_kill = env.seen_uidls();
    let left = uidls_on(&server);
    let deleting = msgs.iter().any(|m| server.dele_count(&m.uidl) > 0);
    for (m, &c) in msgs.iter().zip(&at_kill.counts) {
        if server.dele_count(&m.uidl) > 0 && (t.keep || c == 0) {
            bad_dele += 1;
            fails.push(format!("{label}: DELE for undelivered {}", m.uidl));
        }
        if c == 0 && !left.contains(&m.uidl) {
            lost += 1;
            fails.push(format!("{label}: {} lost at the kill", m.uidl));
        }
    }
    // An mbox may show our unfinished append at the kill (recovery takes it
    // back); a Maildir or an MDA never shows a partial message.
    if !at_kill.strangers.is_empty() && sink != Sink::Mbox {
        fails.push(format!(
            "{label}: partial files visible: {:?}",
            at_kill.strangers
        ));
    }
    // The MDA's window: delivered, the kill came before its seen record.
    let in_window: Vec<&str> = msgs
        .iter()
        .zip(&at_kill.counts)
        .filter(|(m, &c)| c > 0 && !seen_at_kill.contains(&m.uidl))
        .map(|(m, _)| m.uidl.as_str())
        .collect();
    if sink == Sink::Mda && in_window.len() > 1 {
        fails.push(format!(
            "{label}: {} messages delivered without a seen record at the kill: {in_window:?}",
            in_window.len()
        ));
    }

    server.clear_faults();
    let run = env.run(&["sync"]);
    if run.code != 0 {
        fails.push(format!(
            "{label}: completing sync exited {}: {}",
            run.code, run.stderr
        ));
    }
    let end = sink.inventory(&env, &msgs);
    let mut duplicated = 0;
    let mut duplicated_in_window = 0;
    for (m, &c) in msgs.iter().zip(&end.counts) {
        match c {
            1 => {}
            0 => {
                lost += 1;
                fails.push(format!("{label}: {} never delivered", m.uidl));
            }
            2 if sink == Sink::Mda && in_window.contains(&m.uidl.as_str()) => {
                duplicated_in_window += 1;
            }
            n => {
                duplicated += 1;
                fails.push(format!("{label}: {} delivered {n} times", m.uidl));
            }
        }
    }
    if !end.strangers.is_empty() {
        fails.push(format!("{label}: stray files {:?}", end.strangers));
    }
    let on_server = server.messages().len();
    let want_on_server = if t.keep { CRASH_MESSAGES } else { 0 };
    if on_server != want_on_server {
        fails.push(format!(
            "{label}: {on_server} messages left on the server, wanted {want_on_server}"
        ));
    }
    if t.keep {
        let deles = msgs
            .iter()
            .map(|m| server.dele_count(&m.uidl))
            .sum::<usize>();
        if deles > 0 {
            bad_dele += 1;
            fails.push(format!("{label}: {deles} DELE in keep mode"));
        }
    }

    let committed = at_kill.counts.iter().any(|&c| c > 0);
    let mut f = figures.lock().unwrap();
    f.trials += 1;
    f.killed_mid_run += usize::from(!finished_first);
    f.killed_after_commit += usize::from(!finished_first && committed);
    f.killed_after_dele += usize::from(!finished_first && !t.keep && deleting);
    f.killed_with_journal += usize::from(journal > 0);
    f.killed_holding_dotlock += usize::from(sink == Sink::Mbox && !at_kill.tmp.is_empty());
    f.lost += lost;
    f.duplicated += duplicated;
    f.duplicated_in_window += duplicated_in_window;
    f.bad_dele += bad_dele;
    f.corrupt += end.strangers.len();
    if sink == Sink::Mbox {
        f.partial_append_at_kill += at_kill.strangers.len();
    } else {
        f.truncated += at_kill.strangers.len();
    }
    f.truncated += end.strangers.len();
    f.tmp_leftovers += end.tmp.len();
    f.failures.extend(fails);
}

/// Opens the seen database straight from SQLite while no popfetch runs;
/// `None` when it or its schema does not exist yet (killed before).
fn open_state(state_dir: &Path) -> Option<rusqlite::Connection> {
    let path = state_dir.join("seen.sqlite3");
    if !path.exists() {
        return None;
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'pending'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    (tables > 0).then_some(conn)
}

/// Entries in the delivery journal (the `pending` table) of the seen
/// database.
fn journal_entries(state_dir: &Path) -> usize {
    open_state(state_dir).map_or(0, |conn| {
        conn.query_row("SELECT count(*) FROM pending", [], |r| r.get::<_, i64>(0))
            .unwrap() as usize
    })
}

/// After a crash between the rename into `new/` and the seen record, the
/// next run finds the message in `new/` (or a reader moved it to `cur/`)
/// and records it as seen, which allows its DELE. The rename may still be
/// only in the page cache: `new/` and `cur/` must be flushed before the
/// record is written. Checked with strace: both fsyncs come before the
/// first write to the seen database's WAL.
#[test]
fn recovered_maildir_entries_are_recorded_only_after_new_and_cur_are_flushed() {
    let probe = Command::new("strace")
        .args(["-o", "/dev/null", "true"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        loud_skip(
            "recovered_maildir_entries_are_recorded_only_after_new_and_cur_are_flushed",
            "strace is missing or not permitted here",
        );
        return;
    }
    let env = Env::new();
    let msgs = fault_messages();
    let server = Server::start(Config {
        messages: msgs.clone(),
        ..Config::default()
    });
    env.write_config(&account("f", server.port(), "none", "keep = false"));
    let root = env.maildir("f");
    // A first run delivers everything; then the state is put back to what
    // a crash after the renames of two messages leaves: journal entries
    // instead of seen records, one file still in new/, one moved to cur/.
    server.set_faults(vec![Fault::RejectDele]);
    env.run(&["sync"]).expect_code(0);
    server.clear_faults();
    let new = files_in(&root.join("new"));
    let moved = format!("{}:2,S", new[1]);
    fs::rename(
        root.join("new").join(&new[1]),
        root.join("cur").join(&moved),
    )
    .unwrap();
    let conn = rusqlite::Connection::open(env.state_dir().join("seen.sqlite3")).unwrap();
    for name in &new[..2] {
        let data = fs::read(root.join("new").join(name))
            .or_else(|_| fs::read(root.join("cur").join(&moved)))
            .unwrap();
        let m = msgs
            .iter()
            .find(|m| expected_delivery(&m.data) == data)
            .expect("one of ours");
        conn.execute("DELETE FROM seen WHERE uidl = ?1", [&m.uidl])
            .unwrap();
        conn.execute(
            "INSERT INTO pending (mailbox, uidl, folder, name, created) \
             SELECT mailbox, ?1, ?2, ?3, 0 FROM seen LIMIT 1",
            [&m.uidl, &root.to_string_lossy().into_owned(), name],
        )
        .unwrap();
    }
    drop(conn);
    assert_eq!(journal_entries(&env.state_dir()), 2);

    let trace = env.dir.path().join("trace");
    let cmd = env.command(&["sync"]);
    let mut traced = Command::new("strace");
    traced
        .args([
            "-f",
            "-y",
            "-e",
            "trace=fsync,fdatasync,write,pwrite64",
            "-o",
        ])
        .arg(&trace)
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_clear()
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(Stdio::null());
    Run::from(traced.output().unwrap()).expect_code(0);
    assert_eq!(journal_entries(&env.state_dir()), 0);
    assert_exactly_once("recovered", &root, &msgs);
    for m in &msgs {
        assert_eq!(server.retr_count(&m.uidl), 1, "{} fetched again", m.uidl);
    }
    assert!(server.messages().is_empty(), "all deleted");

    let trace = fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = trace.lines().collect();
    let at = |what: &dyn Fn(&str) -> bool| lines.iter().position(|l| what(l));
    let flushed = |dir: &Path| {
        let dir = format!("<{}>)", dir.display());
        at(&|l: &str| l.contains("fsync(") && l.contains(&dir))
    };
    let recorded = at(&|l: &str| l.contains("seen.sqlite3-wal>") && l.contains("write"))
        .expect("a write to the seen database");
    for sub in ["new", "cur"] {
        let flush = flushed(&root.join(sub));
        assert!(
            flush.is_some_and(|f| f < recorded),
            "{sub}/ flushed at line {flush:?}, seen records written at line {recorded}:\n{trace}"
        );
    }
}

/// The two ways the server is slowed down: half the trials trickle the
/// bytes (the kill mostly lands inside a message being written), half delay
/// each reply (it mostly lands between messages).
fn crash_faults() -> [Fault; 2] {
    [
        Fault::SlowRetr { delay_ms: 10 },
        Fault::TrickleRetr {
            bytes_per_write: 1500,
            delay_ms: 2,
        },
    ]
}

/// How long an uninterrupted sync into `sink` takes against the slow
/// server: `[keep as usize][fault]`.
fn calibrate(sink: Sink) -> [[Duration; 2]; 2] {
    let mut spans = [[Duration::ZERO; 2]; 2];
    for keep in [false, true] {
        for (i, fault) in crash_faults().into_iter().enumerate() {
            let env = Env::new();
            let server = Server::start(Config {
                messages: messages("crash", CRASH_MESSAGES, 6_000),
                faults: vec![fault],
                ..Config::default()
            });
            env.write_config(&sink.config(&env, server.port(), keep));
            let start = Instant::now();
            env.run(&["sync"]).expect_code(0);
            spans[usize::from(keep)][i] = start.elapsed();
        }
    }
    spans
}

/// `per_mode` trials with keep and as many with delete, killed at seeded
/// instants; prints the figures and fails on any problem.
fn kill_9_trials(sink: Sink, per_mode: usize, default_seed: u64) {
    let base: u64 = std::env::var("POPFETCH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_seed);
    let started = Instant::now();
    let spans = calibrate(sink);
    let trials: Vec<Trial> = (0..2 * per_mode)
        .map(|i| Trial {
            index: i,
            keep: i % 2 == 0,
            seed: base ^ (i as u64).wrapping_mul(0xA24B_AED4_963E_E407),
        })
        .collect();
    let figures = Arc::new(Mutex::new(Figures::default()));
    run_parallel(4, &trials, |t| crash_trial(sink, *t, &spans, &figures));
    let f = figures.lock().unwrap();
    eprintln!(
        "kill -9 crash test, {sink:?} (seed {base:#x}): {} trials ({per_mode} keep, {per_mode} delete), \
         {} killed mid-run ({} with a delivery journal to recover, \
         {} after messages became visible, {} after a DELE, {} holding the mbox dotlock), \
         full runs {:?} (delete: slow, trickle; keep: slow, trickle); \
         lost {}, truncated {} (mbox: {} partial appends seen at the kill), \
         duplicated {} (+ {} inside the documented window), \
         DELE for undelivered {}, corrupt files {}, \
         stale tmp/ files left by the kills {}; {:?} in all",
        f.trials,
        f.killed_mid_run,
        f.killed_with_journal,
        f.killed_after_commit,
        f.killed_after_dele,
        f.killed_holding_dotlock,
        spans,
        f.lost,
        f.truncated,
        f.partial_append_at_kill,
        f.duplicated,
        f.duplicated_in_window,
        f.bad_dele,
        f.corrupt,
        f.tmp_leftovers,
        started.elapsed()
    );
    assert_eq!(f.trials, 2 * per_mode);
    assert!(
        f.failures.is_empty(),
        "{} problems:\n{}",
        f.failures.len(),
        f.failures.join("\n")
    );
    assert!(
        f.killed_mid_run >= per_mode,
        "too few kills landed inside a run ({}): the timing is off",
        f.killed_mid_run
    );
}

#[test]
fn kill_9_at_random_instants_never_loses_or_duplicates() {
    kill_9_trials(Sink::Maildir, 50, 0x5EED_0004);
}

/// SPEC §4.3 for an mbox: no loss, no partial message, and (with the
/// append journal) no duplicate either.
#[test]
fn kill_9_during_mbox_delivery_never_loses_truncates_or_duplicates() {
    kill_9_trials(Sink::Mbox, 50, 0x5EED_0B0C);
}

/// SPEC §4.3 for an MDA: no loss, the MDA never handed a partial message,
/// and a duplicate only for the message whose MDA had exited 0 when the
/// kill came, before its seen record.
#[test]
fn kill_9_during_mda_delivery_never_loses_or_truncates() {
    kill_9_trials(Sink::Mda, 50, 0x5EED_0FDA);
}

// ---------------------------------------------------------------------------
// 2. Every fault mode

/// One fault scenario: faults on the first run, the exit code it must give,
/// words its message must contain; then a clean run.
#[derive(Clone, Debug)]
struct Case {
    name: String,
    faults: Vec<Fault>,
    /// Extra account lines (auth = ..., keep = false).
    extra: String,
    timeout: u32,
    code: i32,
    says: Vec<&'static str>,
    keep: bool,
}

impl Case {
    fn new(name: impl Into<String>, faults: Vec<Fault>, code: i32) -> Case {
        Case {
            name: name.into(),
            faults,
            extra: String::new(),
            timeout: 10,
            code,
            says: Vec::new(),
            keep: false,
        }
    }

    fn says(mut self, words: &[&'static str]) -> Case {
        self.says.extend_from_slice(words);
        self
    }

    fn extra(mut self, line: &str) -> Case {
        self.extra.push_str(line);
        self.extra.push('\n');
        self
    }

    fn timeout(mut self, secs: u32) -> Case {
        self.timeout = secs;
        self
    }

    fn keep(mut self) -> Case {
        self.keep = true;
        self
    }
}

const FAULT_MESSAGES: usize = 5;

fn fault_messages() -> Vec<Msg> {
    messages("fault", FAULT_MESSAGES, 3_000)
}

/// Runs a case into a Maildir and checks it; panics with the details.
fn check_case(case: &Case) {
    let env = Env::new();
    let msgs = fault_messages();
    let server = Server::start(Config {
        messages: msgs.clone(),
        faults: case.faults.clone(),
        ..Config::default()
    });
    let mut extra = case.extra.clone();
    if !case.keep {
        extra.push_str("keep = false\n");
    }
    env.write_config(&with_timeout(
        account("f", server.port(), "none", &extra),
        case.timeout,
    ));
    let root = env.maildir("f");
    let what = &case.name;

    let start = Instant::now();
    let run = env.run(&["sync"]);
    let took = start.elapsed();
    assert_eq!(
        run.code, case.code,
        "{what}: exit code {} (wanted {})\n{}",
        run.code, case.code, run.stderr
    );
    for w in &case.says {
        assert!(
            run.stderr.contains(w),
            "{what}: message lacks {w:?}: {}",
            run.stderr
        );
    }
    assert!(
        took < Duration::from_secs(case.timeout as u64 + 8),
        "{what}: took {took:?}"
    );
    assert!(!run.stderr.contains("panicked"), "{what}: {}", run.stderr);
    assert_clean_failure(what, &root, &msgs);
    assert_none_lost(what, &root, &msgs, &server);
    assert_dele_only_delivered(what, &root, &msgs, &server);

    server.clear_faults();
    let run = env.run(&["sync"]);
    assert_eq!(
        run.code, 0,
        "{what}: the clean run after it failed: {}",
        run.stderr
    );
    assert_exactly_once(&format!("{what}, then a clean run"), &root, &msgs);
    if case.keep {
        assert_eq!(server.messages().len(), msgs.len(), "{what}: kept");
        for m in &msgs {
            assert_eq!(server.dele_count(&m.uidl), 0, "{what}: DELE in keep mode");
        }
    } else {
        assert!(
            server.messages().is_empty(),
            "{what}: the clean run deletes everything: {:?}",
            uidls_on(&server)
        );
    }
    // And a third run has nothing to do.
    let run = env.run(&["sync"]);
    assert_eq!(run.code, 0, "{what}: third run: {}", run.stderr);
    assert_exactly_once(&format!("{what}, third run"), &root, &msgs);
}

/// Lines a clean delete-mode session sends, for dropping at each of them.
fn clean_session_lines(extra: &str) -> Vec<String> {
    let env = Env::new();
    let server = Server::start(Config {
        messages: fault_messages(),
        ..Config::default()
    });
    env.write_config(&account(
        "f",
        server.port(),
        "none",
        &format!("keep = false\n{extra}"),
    ));
    env.run(&["sync"]).expect_code(0);
    server.log()
}

#[test]
fn connection_dropped_at_every_command_is_75_and_loses_nothing() {
    let mut cases = Vec::new();
    for extra in ["auth = \"user\"", "auth = \"plain\""] {
        let lines = clean_session_lines(extra);
        assert!(lines.iter().any(|l| l.starts_with("DELE")), "{lines:?}");
        for (k, line) in lines.iter().enumerate() {
            let shown = if line.starts_with("PASS") || line.starts_with("AUTH PLAIN ") {
                "<login>"
            } else {
                line.as_str()
            };
            cases.push(
                Case::new(
                    format!("{extra}: drop at line {} ({shown})", k + 1),
                    vec![Fault::DropAfterCommands(k + 1)],
                    75,
                )
                .extra(extra),
            );
        }
    }
    run_parallel(3, &cases, check_case);
}

#[test]
fn connection_dropped_inside_a_message_is_75_and_leaves_no_partial_file() {
    let msgs = fault_messages();
    let mut cases = Vec::new();
    for msg in [1, 3, FAULT_MESSAGES] {
        let resp = retr_response(&msgs[msg - 1]);
        let status = resp.iter().position(|&b| b == b'\n').unwrap() + 1;
        let len = resp.len();
        for after in [
            0,
            3,
            status,
            status + 1,
            status + 40,
            len / 2,
            len - 5,
            len - 3,
            len - 1,
            len,
        ] {
            cases.push(Case::new(
                format!("drop in RETR {msg} after {after} of {len} bytes"),
                vec![Fault::DropInRetr {
                    msg,
                    after_bytes: after,
                }],
                75,
            ));
        }
    }
    // Also in keep mode, where nothing may be deleted either.
    cases.push(
        Case::new(
            "drop in RETR 2 (keep)",
            vec![Fault::DropInRetr {
                msg: 2,
                after_bytes: 500,
            }],
            75,
        )
        .keep(),
    );
    run_parallel(3, &cases, check_case);
}

/// Every command of a keep-mode-then-delete session with USER/PASS, for
/// faults injected at each step in turn.
const SESSION_VERBS: [&str; 8] = [
    "CAPA", "USER", "PASS", "LIST", "UIDL", "RETR", "DELE", "QUIT",
];

#[test]
fn stalls_time_out_with_75() {
    let mut cases = Vec::new();
    for verb in SESSION_VERBS {
        cases.push(
            Case::new(
                format!("stall on {verb}"),
                vec![Fault::StallOnCommand(verb.into())],
                75,
            )
            .extra("auth = \"user\"")
            .timeout(2)
            .says(&["timed out"]),
        );
    }
    cases.push(
        Case::new(
            "RETR replies 3 s late",
            vec![Fault::SlowRetr { delay_ms: 3000 }],
            75,
        )
        .timeout(2)
        .says(&["timed out"]),
    );
    cases.push(
        Case::new(
            "RETR trickles, then pauses 3 s",
            vec![Fault::TrickleRetr {
                bytes_per_write: 700,
                delay_ms: 3000,
            }],
            75,
        )
        .timeout(2)
        .says(&["timed out"]),
    );
    // Slow but alive is not a timeout: the limit is per read, not per message.
    cases.push(
        Case::new(
            "RETR trickles steadily",
            vec![Fault::TrickleRetr {
                bytes_per_write: 200,
                delay_ms: 1,
            }],
            0,
        )
        .timeout(2),
    );
    run_parallel(4, &cases, check_case);
}

#[test]
fn a_server_that_never_greets_times_out_with_75() {
    let env = Env::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        // Accept and say nothing until the client gives up.
        let (mut s, _) = listener.accept().unwrap();
        let mut b = [0u8; 64];
        let _ = std::io::Read::read(&mut s, &mut b);
    });
    env.write_config(&with_timeout(account("f", port, "none", ""), 2));
    let start = Instant::now();
    let run = env.run(&["sync"]);
    run.expect_code(75);
    assert!(run.stderr.contains("timed out"), "{}", run.stderr);
    assert!(start.elapsed() < Duration::from_secs(8));
    holder.join().unwrap();
}

#[test]
fn garbage_and_endless_lines_are_76() {
    let mut cases = Vec::new();
    for verb in SESSION_VERBS {
        cases.push(
            Case::new(
                format!("garbage reply to {verb}"),
                vec![Fault::GarbageStatus(verb.into())],
                76,
            )
            .extra("auth = \"user\"")
            .says(&["protocol error", "HELLO WORLD"]),
        );
    }
    cases.push(
        Case::new(
            "garbage reply to AUTH",
            vec![Fault::GarbageStatus("AUTH".into())],
            76,
        )
        .extra("auth = \"plain\"")
        .says(&["protocol error"]),
    );
    for verb in ["CAPA", "PASS", "LIST", "UIDL", "RETR", "QUIT"] {
        cases.push(
            Case::new(
                format!("endless line in reply to {verb}"),
                vec![Fault::EndlessLine(verb.into())],
                76,
            )
            .extra("auth = \"user\"")
            .says(&["protocol error", "longer than 64 KiB"]),
        );
    }
    run_parallel(3, &cases, check_case);
}

#[test]
fn err_replies_get_the_documented_codes() {
    let err = |verb: &str, reply: &str| {
        vec![Fault::ErrOnCommand {
            verb: verb.into(),
            reply: reply.into(),
        }]
    };
    let mut cases = Vec::new();
    for (verb, auth) in [
        ("PASS", "auth = \"user\""),
        ("USER", "auth = \"user\""),
        ("AUTH", "auth = \"plain\""),
    ] {
        for (reply, code, says) in [
            (
                "-ERR [AUTH] invalid credentials",
                77,
                "authentication failed",
            ),
            ("-ERR nope", 77, "authentication failed"),
            ("-ERR [IN-USE] mailbox locked", 75, "IN-USE"),
            ("-ERR [SYS/TEMP] try later", 75, "SYS/TEMP"),
            ("-ERR [LOGIN-DELAY] too soon", 75, "LOGIN-DELAY"),
        ] {
            cases.push(
                Case::new(format!("{verb} answers {reply}"), err(verb, reply), code)
                    .extra(auth)
                    .says(&[says]),
            );
        }
    }
    for (verb, reply) in [
        ("LIST", "-ERR [SYS/TEMP] try later"),
        ("LIST", "-ERR [IN-USE] mailbox locked"),
        ("UIDL", "-ERR [SYS/TEMP] try later"),
        ("UIDL", "-ERR [IN-USE] mailbox locked"),
        ("DELE", "-ERR [SYS/TEMP] try later"),
        ("RETR", "-ERR [SYS/TEMP] try later"),
        ("RETR", "-ERR [IN-USE] mailbox locked"),
        ("QUIT", "-ERR [SYS/TEMP] try later"),
        ("QUIT", "-ERR [IN-USE] mailbox locked"),
    ] {
        cases.push(
            Case::new(format!("{verb} answers {reply}"), err(verb, reply), 75).says(&["-ERR ["]),
        );
        // Kept messages: a temporary refusal must not change how messages
        // are identified (or the next run would fetch them again). Keep
        // mode sends no DELE, so that one has nothing to refuse.
        if verb != "DELE" {
            cases.push(
                Case::new(
                    format!("{verb} answers {reply} (keep)"),
                    err(verb, reply),
                    75,
                )
                .keep()
                .says(&["-ERR ["]),
            );
        }
    }
    run_parallel(3, &cases, check_case);
}

/// A greeting the test server cannot take back: the clean run goes to a
/// second server with the same mailbox (same identity, so same state).
fn check_greeting(greeting: &str, code: i32, says: &str) {
    let env = Env::new();
    let msgs = fault_messages();
    let bad = Server::start(Config {
        messages: msgs.clone(),
        greeting: Some(greeting.into()),
        ..Config::default()
    });
    env.write_config(&account("f", bad.port(), "none", "keep = false"));
    let run = env.run(&["sync"]);
    run.expect_code(code);
    assert!(run.stderr.contains(says), "{greeting}: {}", run.stderr);
    let root = env.maildir("f");
    assert_clean_failure(greeting, &root, &msgs);
    assert!(
        !bad.log().iter().any(|l| l.starts_with("PASS")),
        "no login after a bad greeting"
    );
    let good = Server::start(Config {
        messages: msgs.clone(),
        ..Config::default()
    });
    env.write_config(&account("f", good.port(), "none", "keep = false"));
    env.run(&["sync"]).expect_code(0);
    assert_exactly_once(greeting, &root, &msgs);
    assert!(good.messages().is_empty());
}

#[test]
fn bad_greetings_get_the_documented_codes() {
    check_greeting("-ERR go away", 69, "go away");
    check_greeting("-ERR [SYS/TEMP] overloaded", 75, "SYS/TEMP");
    check_greeting("-ERR [IN-USE] busy", 75, "IN-USE");
    check_greeting("HELLO WORLD", 76, "protocol error");
}

#[test]
fn lying_list_sizes_still_deliver_byte_exact() {
    let case = Case::new("LIST halves the sizes", vec![Fault::WrongListSizes], 0);
    check_case(&case);
    // And a message much larger than announced, streamed whole.
    let env = Env::new();
    let big = messages("big", 2, 2_000_000);
    let server = Server::start(Config {
        messages: big.clone(),
        faults: vec![Fault::WrongListSizes],
        ..Config::default()
    });
    env.write_config(&account("f", server.port(), "none", ""));
    env.run(&["sync"]).expect_code(0);
    assert_exactly_once("2 MB messages, half announced", &env.maildir("f"), &big);
}

#[test]
fn duplicate_uidls_are_told_apart_by_headers_delivered_once_and_deleted() {
    // Messages 1 and 2 get the same UIDL from the start (a server bug).
    let env = Env::new();
    let msgs = fault_messages();
    let server = Server::start(Config {
        messages: msgs.clone(),
        faults: vec![Fault::DuplicateUidls],
        ..Config::default()
    });
    env.write_config(&account("f", server.port(), "none", ""));
    let run = env.run(&["sync"]);
    run.expect_code(0);
    let root = env.maildir("f");
    assert_exactly_once("shared UIDL, first run", &root, &msgs);
    assert_eq!(
        run.stderr.matches("a server bug").count(),
        1,
        "one warning per session: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("the same UIDL to messages 1 and 2")
            && run.stderr.contains("telling them apart by their headers"),
        "names the bug: {}",
        run.stderr
    );
    // Known by their headers in the next session too: nothing fetched.
    server.clear_log();
    env.run(&["sync"]).expect_code(0);
    assert!(
        server.log().iter().all(|l| !l.starts_with("RETR")),
        "fetched again: {:?}",
        server.log()
    );
    assert_exactly_once("shared UIDL, second run", &root, &msgs);
    // The server mends its ways and gives message 2 a UIDL of its own:
    // both are still known by their headers, nothing is fetched again.
    server.clear_faults();
    server.clear_log();
    env.run(&["sync"]).expect_code(0);
    assert!(
        server.log().iter().all(|l| !l.starts_with("RETR")),
        "fetched again after the server mended: {:?}",
        server.log()
    );
    // Delete mode deletes both.
    env.run(&["sync", "--delete"]).expect_code(0);
    assert!(server.messages().is_empty(), "{:?}", uidls_on(&server));
    assert_exactly_once("shared UIDL, delete mode", &root, &msgs);
}

#[test]
fn duplicate_uidls_never_mark_or_delete_the_wrong_message() {
    let env = Env::new();
    let msgs = fault_messages();
    // Message 1 is delivered and seen; then message 2 arrives, and the
    // server gives it message 1's UIDL. Which of the two was delivered
    // cannot be known: believing the server would skip message 2 as seen
    // and delete it unread; fetching both would deliver message 1 twice.
    let server = Server::start(Config {
        messages: msgs[..1].to_vec(),
        ..Config::default()
    });
    env.write_config(&account("f", server.port(), "none", ""));
    env.run(&["sync"]).expect_code(0);
    for m in &msgs[1..] {
        server.push_message(m.clone());
    }
    server.set_faults(vec![Fault::DuplicateUidls]);
    let run = env.run(&["sync", "--delete"]);
    run.expect_code(0);
    assert!(
        run.stderr.contains("same UIDL")
            && run.stderr.contains(&msgs[0].uidl)
            && run.stderr.contains("seen forget"),
        "warns and says what to do: {}",
        run.stderr
    );
    let root = env.maildir("f");
    assert_clean_failure("duplicate UIDLs", &root, &msgs);
    for m in &msgs[..2] {
        assert_eq!(server.dele_count(&m.uidl), 0, "{} deleted", m.uidl);
    }
    assert_eq!(server.retr_count(&msgs[1].uidl), 0, "message 2 not fetched");
    let inv = inventory(&root, &msgs);
    assert_eq!(inv.counts, vec![1, 0, 1, 1, 1], "the others are delivered");
    let left = uidls_on(&server);
    assert_eq!(left, vec![msgs[0].uidl.clone(), msgs[1].uidl.clone()]);

    // The server mends its ways: message 2 arrives, message 1 is not
    // fetched again, and both go.
    server.clear_faults();
    env.run(&["sync", "--delete"]).expect_code(0);
    assert_exactly_once("after duplicate UIDLs", &root, &msgs);
    assert!(server.messages().is_empty());
    assert_eq!(server.retr_count(&msgs[0].uidl), 1);

    // Shared from the start on a server without TOP: nothing tells them
    // apart, so neither is delivered nor deleted.
    let env = Env::new();
    let server = Server::start(Config {
        messages: msgs.clone(),
        faults: vec![Fault::DuplicateUidls],
        top: false,
        ..Config::default()
    });
    env.write_config(&account("f", server.port(), "none", "keep = false"));
    let run = env.run(&["sync"]);
    run.expect_code(0);
    assert!(run.stderr.contains("has no TOP"), "{}", run.stderr);
    let root = env.maildir("f");
    assert_eq!(inventory(&root, &msgs).counts, vec![0, 0, 1, 1, 1]);
    assert_eq!(server.messages().len(), 2);
    server.clear_faults();
    env.run(&["sync"]).expect_code(0);
    assert_exactly_once("duplicate UIDLs without TOP", &root, &msgs);
}

#[test]
fn a_server_without_uidl_or_top_cut_before_quit_delivers_nothing_twice() {
    let msgs = fault_messages();
    let config = |faults: Vec<Fault>| Config {
        messages: msgs.clone(),
        uidl: false,
        top: false,
        faults,
        ..Config::default()
    };
    // The line QUIT is in a clean session.
    let quit = {
        let env = Env::new();
        let server = Server::start(config(Vec::new()));
        env.write_config(&account("f", server.port(), "none", "keep = false"));
        env.run(&["sync"]).expect_code(0);
        server.log().iter().position(|l| l == "QUIT").unwrap() + 1
    };
    let env = Env::new();
    let server = Server::start(config(vec![Fault::DropAfterCommands(quit)]));
    env.write_config(&account("f", server.port(), "none", "keep = false"));
    env.run(&["sync"]).expect_code(75);
    let root = env.maildir("f");
    assert_exactly_once("cut at QUIT", &root, &msgs);
    assert_eq!(server.messages().len(), msgs.len(), "nothing deleted");
    // Every message comes again: each is recognised by its digest, not
    // delivered a second time, and deleted.
    server.clear_faults();
    let run = env.run(&["sync"]);
    run.expect_code(0);
    assert_exactly_once("after the cut", &root, &msgs);
    assert!(
        server.messages().is_empty(),
        "{:?}",
        server.messages().len()
    );
    assert!(files_in(&root.join("tmp")).is_empty());

    // Into an mbox: taken back from the spool before the append.
    let env = Env::new();
    let server = Server::start(config(vec![Fault::DropAfterCommands(quit)]));
    env.write_config(
        &account("m", server.port(), "none", "keep = false")
            .replace("maildir = \"~/Mail/m\"", "mbox = \"~/mail/inbox\""),
    );
    env.run(&["sync"]).expect_code(75);
    server.clear_faults();
    env.run(&["sync"]).expect_code(0);
    let mut got = parse_mboxrd(&fs::read(env.home().join("mail/inbox")).unwrap());
    got.sort();
    let mut want: Vec<Vec<u8>> = msgs.iter().map(|m| expected_delivery(&m.data)).collect();
    want.sort();
    assert_eq!(got, want, "each message once in the mbox");
    assert!(server.messages().is_empty());

    // Cut again, then the server refuses the DELEs: the records must stay
    // for the session after.
    let env = Env::new();
    let server = Server::start(config(vec![Fault::DropAfterCommands(quit)]));
    env.write_config(&account("f", server.port(), "none", "keep = false"));
    env.run(&["sync"]).expect_code(75);
    server.set_faults(vec![Fault::RejectDele]);
    env.run(&["sync"]).expect_code(0);
    server.clear_faults();
    env.run(&["sync"]).expect_code(0);
    assert_exactly_once("after refused DELEs", &env.maildir("f"), &msgs);
    assert!(server.messages().is_empty());
}

#[test]
fn dele_applied_without_quit_loses_nothing() {
    let lines = clean_session_lines("auth = \"user\"");
    let quit = lines.iter().position(|l| l == "QUIT").unwrap() + 1;
    let first_dele = lines.iter().position(|l| l.starts_with("DELE")).unwrap() + 1;
    let cases = vec![
        Case::new("DELE applied at once", vec![Fault::DeleteWithoutQuit], 0)
            .extra("auth = \"user\""),
        Case::new(
            "DELE applied at once, connection dropped at QUIT",
            vec![Fault::DeleteWithoutQuit, Fault::DropAfterCommands(quit)],
            75,
        )
        .extra("auth = \"user\""),
        Case::new(
            "DELE applied at once, connection dropped after the first DELE",
            vec![
                Fault::DeleteWithoutQuit,
                Fault::DropAfterCommands(first_dele + 1),
            ],
            75,
        )
        .extra("auth = \"user\""),
        Case::new(
            "DELE applied at once, QUIT refused",
            vec![
                Fault::DeleteWithoutQuit,
                Fault::ErrOnCommand {
                    verb: "QUIT".into(),
                    reply: "-ERR [SYS/TEMP] could not update".into(),
                },
            ],
            75,
        ),
    ];
    run_parallel(2, &cases, check_case);
}

#[test]
fn refused_dele_keeps_the_messages_and_a_later_run_deletes_them() {
    let env = Env::new();
    let msgs = fault_messages();
    let server = Server::start(Config {
        messages: msgs.clone(),
        faults: vec![Fault::RejectDele],
        ..Config::default()
    });
    env.write_config(&account("f", server.port(), "none", "keep = false"));
    let run = env.run(&["sync"]);
    run.expect_code(0);
    assert!(run.stderr.contains("refused to delete"), "{}", run.stderr);
    let root = env.maildir("f");
    assert_exactly_once("DELE refused", &root, &msgs);
    assert_eq!(server.messages().len(), msgs.len());
    server.clear_faults();
    env.run(&["sync"]).expect_code(0);
    assert_exactly_once("DELE refused, then accepted", &root, &msgs);
    assert!(server.messages().is_empty());
    for m in &msgs {
        assert_eq!(server.retr_count(&m.uidl), 1, "not fetched twice");
    }
}

/// mbox: a failed run leaves the file exactly as it was, or with complete
/// messages only; the clean run completes it with each message once.
#[test]
fn mbox_is_never_left_with_a_partial_message() {
    let msgs = fault_messages();
    let sorted = |v: &[Msg]| {
        let mut e: Vec<Vec<u8>> = v.iter().map(|m| expected_delivery(&m.data)).collect();
        e.sort();
        e
    };
    let faults: Vec<(Vec<Fault>, i32)> = vec![
        (
            vec![Fault::DropInRetr {
                msg: 1,
                after_bytes: 900,
            }],
            75,
        ),
        (
            vec![Fault::DropInRetr {
                msg: 4,
                after_bytes: 2000,
            }],
            75,
        ),
        (vec![Fault::GarbageStatus("RETR".into())], 76),
        (vec![Fault::EndlessLine("RETR".into())], 76),
        (vec![Fault::StallOnCommand("RETR".into())], 75),
        (
            vec![Fault::TrickleRetr {
                bytes_per_write: 1000,
                delay_ms: 3000,
            }],
            75,
        ),
        (vec![Fault::DropAfterCommands(9)], 75),
    ];
    run_parallel(3, &faults, |(fault, code)| {
        let env = Env::new();
        // One message delivered earlier; the rest arrive later.
        let server = Server::start(Config {
            messages: msgs[..1].to_vec(),
            ..Config::default()
        });
        let cfg = with_timeout(
            format!(
                "[accounts.m]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nuser = \"alice\"\npassword = \"secret\"\nmbox = \"~/mail/inbox\"\nkeep = false\ntimeout = 10\n",
                server.port()
            ),
            2,
        );
        env.write_config(&cfg);
        env.run(&["sync"]).expect_code(0);
        let path = env.home().join("mail/inbox");
        let before = fs::read(&path).unwrap();
        for m in &msgs[1..] {
            server.push_message(m.clone());
        }
        server.set_faults(fault.clone());
        let run = env.run(&["sync"]);
        assert_eq!(run.code, *code, "{fault:?}: {}", run.stderr);
        let after = fs::read(&path).unwrap();
        assert!(
            after.starts_with(&before),
            "{fault:?}: the old content changed"
        );
        let got = parse_mboxrd(&after);
        let complete = sorted(&msgs);
        for g in &got {
            assert!(complete.contains(g), "{fault:?}: a partial message");
        }
        let mut dedup = got.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), got.len(), "{fault:?}: a message twice");
        // Nothing was fully fetched before the fault in the first RETR.
        if matches!(fault[0], Fault::DropInRetr { msg: 1, .. }) {
            assert!(after == before, "{fault:?}: the mbox must be unchanged");
        }
        let spool: Vec<String> = files_in(&env.home().join("mail"))
            .into_iter()
            .filter(|f| f != "inbox")
            .collect();
        assert!(spool.is_empty(), "{fault:?}: left {spool:?}");

        server.clear_faults();
        env.run(&["sync"]).expect_code(0);
        let mut got = parse_mboxrd(&fs::read(&path).unwrap());
        got.sort();
        assert_eq!(got, complete, "{fault:?}: each message once");
        assert!(server.messages().is_empty());
    });
}

// ---------------------------------------------------------------------------
// 3. The per-mailbox lock

#[test]
fn a_second_sync_of_the_same_mailbox_exits_75_naming_the_first() {
    let env = Env::new();
    let msgs = messages("lock", 20, 2_000);
    let server = Server::start(Config {
        messages: msgs.clone(),
        faults: vec![Fault::SlowRetr { delay_ms: 50 }],
        ..Config::default()
    });
    env.write_config(&account("l", server.port(), "none", ""));
    let root = env.maildir("l");

    // The first holds the lock (taken before it connects).
    let mut first = env
        .command(&["sync"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.connections() == 0 {
        assert!(Instant::now() < deadline, "the first sync never connected");
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = env.run(&["sync"]);
    assert!(
        first.try_wait().unwrap().is_none(),
        "the second gave up while the first was still running"
    );
    second.expect_code(75);
    let pid = first.id().to_string();
    assert!(
        second.stderr.contains(&format!("pid {pid}")),
        "names the holder's pid {pid}: {}",
        second.stderr
    );
    assert_eq!(server.connections(), 1, "the second never connected");
    let out = Run::from(first.wait_with_output().unwrap());
    out.expect_code(0);
    assert_exactly_once("first sync", &root, &msgs);

    // Really started together: one wins, the other names it. The same
    // mailbox under two section names (in two config files: one file
    // refuses that) is still one mailbox.
    let mut all = msgs.clone();
    let alias_config = env.dir.path().join("alias.toml");
    std::fs::write(
        &alias_config,
        account("alias", server.port(), "none", "").replace("~/Mail/alias", "~/Mail/l"),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&alias_config, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    for round in 0..3 {
        // New mail each round, so each winner is busy for a second.
        let new = messages(&format!("race{round}"), 20, 2_000);
        all.extend(new.iter().cloned());
        server.set_messages(new);
        let spawn = |name: &str| {
            let config = if name == "alias" {
                alias_config.clone()
            } else {
                env.config_path()
            };
            env.command(&["-c", config.to_str().unwrap(), "sync", name])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let a = spawn("l");
        let b = spawn("alias");
        let (pa, pb) = (a.id(), b.id());
        let ra = Run::from(a.wait_with_output().unwrap());
        let rb = Run::from(b.wait_with_output().unwrap());
        let (winner, loser, winner_pid) = match (ra.code, rb.code) {
            (0, 75) => (&ra, &rb, pa),
            (75, 0) => (&rb, &ra, pb),
            _ => panic!(
                "round {round}: exit codes {} and {}:\n{}\n{}",
                ra.code, rb.code, ra.stderr, rb.stderr
            ),
        };
        winner.expect_code(0);
        assert!(
            loser.stderr.contains(&format!("pid {winner_pid}")),
            "round {round}: names pid {winner_pid}: {}",
            loser.stderr
        );
    }
    assert_exactly_once("after the races", &root, &all);
}

/// The lock is an OS lock: it dies with a `kill -9`ed holder, so the next
/// sync runs and delivers each message once.
#[test]
fn a_killed_holder_never_blocks_the_next_sync() {
    let env = Env::new();
    let msgs = messages("stale", 10, 2_000);
    let server = Server::start(Config {
        messages: msgs.clone(),
        faults: vec![Fault::StallOnCommand("RETR".into())],
        ..Config::default()
    });
    env.write_config(&account("s", server.port(), "none", ""));
    let mut child = env
        .command(&["sync"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().iter().any(|l| l.starts_with("RETR")) {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    server.clear_faults();
    env.run(&["sync"]).expect_code(0);
    assert_exactly_once("after a killed holder", &env.maildir("s"), &msgs);
}

// ---------------------------------------------------------------------------
// 4. Disk full

/// A tiny tmpfs, unmounted on drop.
struct TinyFs {
    dir: PathBuf,
}

impl TinyFs {
    fn mount(dir: &Path, size: &str) -> Option<TinyFs> {
        fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| TinyFs {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

fn loud_skip(what: &str, why: &str) {
    crate::support::skip(&format!("{what}: {why}"));
}

fn tiny_fs(env: &Env, test: &str) -> Option<TinyFs> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        loud_skip(
            test,
            "needs root to mount a tiny tmpfs; run the tests as root",
        );
        return None;
    }
    let fs = TinyFs::mount(&env.dir.path().join("tiny"), "256k");
    if fs.is_none() {
        loud_skip(test, "mount -t tmpfs failed (no CAP_SYS_ADMIN?)");
    }
    fs
}

#[test]
fn a_full_disk_is_74_marks_nothing_seen_and_leaves_no_partial_file() {
    let env = Env::new();
    let Some(tiny) = tiny_fs(&env, "disk full (Maildir)") else {
        return;
    };
    // A small message that fits, then two that cannot.
    let mut msgs = messages("small", 1, 2_000);
    msgs.extend(messages("huge", 2, 400_000));
    let server = Server::start(Config {
        messages: msgs.clone(),
        ..Config::default()
    });
    let cfg = |dir: &Path| {
        account("d", server.port(), "none", "keep = false")
            .replace("~/Mail/d", &dir.display().to_string())
    };
    let full = tiny.dir.join("Mail");
    env.write_config(&cfg(&full));
    let run = env.run(&["sync"]);
    run.expect_code(74);
    assert!(
        run.stderr.to_lowercase().contains("no space"),
        "says why: {}",
        run.stderr
    );
    let inv = inventory(&full, &msgs);
    assert!(inv.tmp.is_empty(), "partial files in tmp/: {:?}", inv.tmp);
    assert!(inv.strangers.is_empty(), "{:?}", inv.strangers);
    assert_eq!(inv.counts, vec![1, 0, 0], "the one that fit is there");
    // The small one was delivered and may go; the big ones stay.
    assert_eq!(
        uidls_on(&server),
        vec![msgs[1].uidl.clone(), msgs[2].uidl.clone()]
    );
    assert_dele_only_delivered("disk full", &full, &msgs, &server);

    // With room, the next run gets exactly what is missing.
    let roomy = env.home().join("Mail/roomy");
    env.write_config(&cfg(&roomy));
    env.run(&["sync"]).expect_code(0);
    assert!(server.messages().is_empty());
    let there = inventory(&roomy, &msgs);
    assert_eq!(
        there.counts,
        vec![0, 1, 1],
        "nothing was marked seen wrongly"
    );
    assert!(there.tmp.is_empty() && there.strangers.is_empty());
    assert_eq!(server.retr_count(&msgs[0].uidl), 1);
    drop(tiny);
}

#[test]
fn a_full_disk_leaves_the_mbox_exactly_as_it_was() {
    let env = Env::new();
    let Some(tiny) = tiny_fs(&env, "disk full (mbox)") else {
        return;
    };
    let first = messages("old", 1, 20_000);
    // 150 KB fits in the spool next to the mbox, but not twice (spool +
    // append): the append itself fails and must be truncated back. Then a
    // message that does not fit even in the spool.
    let cases = [messages("mid", 1, 150_000), messages("huge", 1, 300_000)];
    let mbox = tiny.dir.join("inbox");
    let server = Server::start(Config {
        messages: first.clone(),
        ..Config::default()
    });
    let cfg = |path: &Path| {
        format!(
            "[accounts.m]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nuser = \"alice\"\npassword = \"secret\"\nmbox = \"{}\"\nkeep = false\n",
            server.port(),
            path.display()
        )
    };
    env.write_config(&cfg(&mbox));
    env.run(&["sync"]).expect_code(0);
    let before = fs::read(&mbox).unwrap();
    for new in &cases {
        server.set_messages(new.clone());
        let run = env.run(&["sync"]);
        run.expect_code(74);
        assert_eq!(fs::read(&mbox).unwrap(), before, "mbox changed");
        assert_eq!(files_in(&tiny.dir), vec!["inbox".to_string()]);
        assert_eq!(uidls_on(&server), vec![new[0].uidl.clone()], "not deleted");
    }
    let roomy = env.home().join("roomy.mbox");
    env.write_config(&cfg(&roomy));
    server.set_messages(cases.iter().flatten().cloned().collect());
    env.run(&["sync"]).expect_code(0);
    let mut got = parse_mboxrd(&fs::read(&roomy).unwrap());
    got.sort();
    let mut want: Vec<Vec<u8>> = cases
        .iter()
        .flatten()
        .map(|m| expected_delivery(&m.data))
        .collect();
    want.sort();
    assert_eq!(got, want);
    drop(tiny);
}

// ---------------------------------------------------------------------------
// 5. Secrets

const PASSWORD: &str = "Zq9-uNiQu3-pw-7731";

/// Every form the password could leak in: itself, and base64 of the SASL
/// responses that carry it.
fn secret_forms() -> Vec<String> {
    use base64::Engine as _;
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    vec![
        PASSWORD.to_string(),
        b64(PASSWORD.as_bytes()),
        b64(format!("\0alice\0{PASSWORD}").as_bytes()),
    ]
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[track_caller]
fn assert_no_secret(what: &str, env: &Env, run: &Run) {
    let mut files = Vec::new();
    files_under(&env.state_dir(), &mut files);
    files_under(&env.home().join("Mail"), &mut files);
    for form in secret_forms() {
        assert!(
            !run.stdout.contains(&form) && !run.stderr.contains(&form),
            "{what}: the password ({form}) is in the output:\n{}\n{}",
            run.stdout,
            run.stderr
        );
        for f in &files {
            let data = fs::read(f).unwrap_or_default();
            assert!(
                !data.windows(form.len()).any(|w| w == form.as_bytes()),
                "{what}: the password ({form}) is in {}",
                f.display()
            );
        }
    }
}

#[test]
fn the_password_appears_nowhere() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Arc::new(TestPki::generate(&pki_dir.path().join("ca")));
    let self_signed = Arc::new(TestPki::self_signed(&pki_dir.path().join("self")));
    let msgs = messages("secret", 3, 1_000);
    let secret_account = |port: u16, tls: &str, extra: &str| {
        account("s", port, tls, extra).replace(
            "password = \"secret\"",
            &format!("password = \"{PASSWORD}\""),
        )
    };
    struct Scenario {
        name: &'static str,
        server: Config,
        tls: &'static str,
        extra: String,
        code: i32,
    }
    let good = |tls: Tls, faults: Vec<Fault>| Config {
        password: PASSWORD.into(),
        messages: msgs.clone(),
        tls,
        faults,
        sasl: vec!["PLAIN".into(), "LOGIN".into(), "CRAM-MD5".into()],
        apop: true,
        ..Config::default()
    };
    let ca = format!("ca_file = \"{}\"", pki.ca_path.display());
    let mut scenarios = Vec::new();
    for auth in ["user", "plain", "login", "cram-md5", "apop"] {
        scenarios.push(Scenario {
            name: "success",
            server: good(Tls::None, vec![]),
            tls: "none",
            extra: format!("auth = \"{auth}\"\nkeep = false"),
            code: 0,
        });
        scenarios.push(Scenario {
            name: "wrong password",
            server: Config {
                password: "not-it".into(),
                ..good(Tls::None, vec![])
            },
            tls: "none",
            extra: format!("auth = \"{auth}\""),
            code: 77,
        });
        scenarios.push(Scenario {
            name: "garbage after login",
            server: good(Tls::None, vec![Fault::GarbageStatus("LIST".into())]),
            tls: "none",
            extra: format!("auth = \"{auth}\""),
            code: 76,
        });
        scenarios.push(Scenario {
            name: "dropped in a message",
            server: good(
                Tls::None,
                vec![Fault::DropInRetr {
                    msg: 2,
                    after_bytes: 100,
                }],
            ),
            tls: "none",
            extra: format!("auth = \"{auth}\""),
            code: 75,
        });
    }
    scenarios.push(Scenario {
        name: "garbage reply to the password",
        server: good(Tls::None, vec![Fault::GarbageStatus("PASS".into())]),
        tls: "none",
        extra: "auth = \"user\"".into(),
        code: 76,
    });
    scenarios.push(Scenario {
        name: "endless reply to the password",
        server: good(Tls::None, vec![Fault::EndlessLine("PASS".into())]),
        tls: "none",
        extra: "auth = \"user\"".into(),
        code: 76,
    });
    scenarios.push(Scenario {
        name: "[SYS/TEMP] to AUTH",
        server: good(
            Tls::None,
            vec![Fault::ErrOnCommand {
                verb: "AUTH".into(),
                reply: "-ERR [SYS/TEMP] later".into(),
            }],
        ),
        tls: "none",
        extra: "auth = \"plain\"".into(),
        code: 75,
    });
    scenarios.push(Scenario {
        name: "STLS missing",
        server: good(Tls::None, vec![]),
        tls: "starttls",
        extra: ca.clone(),
        code: 77,
    });
    scenarios.push(Scenario {
        name: "STLS refused",
        server: good(
            Tls::Stls(pki.clone()),
            vec![Fault::ErrOnCommand {
                verb: "STLS".into(),
                reply: "-ERR not now".into(),
            }],
        ),
        tls: "starttls",
        extra: ca.clone(),
        code: 77,
    });
    scenarios.push(Scenario {
        name: "untrusted certificate",
        server: good(Tls::Implicit(self_signed.clone()), vec![]),
        tls: "implicit",
        extra: String::new(),
        code: 77,
    });
    scenarios.push(Scenario {
        name: "STLS success",
        server: good(Tls::Stls(pki.clone()), vec![]),
        tls: "starttls",
        extra: ca.clone(),
        code: 0,
    });
    run_parallel(3, &scenarios, |s| {
        let env = Env::new();
        let server = Server::start(s.server.clone());
        env.write_config(&secret_account(server.port(), s.tls, &s.extra));
        for args in [&["sync", "-vv"][..], &["sync", "-vv", "--json"][..]] {
            let run = env.run(args);
            let what = format!("{} ({}, {args:?})", s.name, s.extra.replace('\n', " "));
            assert!(
                run.code == s.code,
                "{what}: exit {} (wanted {}): {}",
                run.code,
                s.code,
                run.stderr
            );
            if s.code != 77 || s.name == "wrong password" {
                assert!(
                    run.stderr.contains("[s] >"),
                    "{what}: -vv shows the dialogue: {}",
                    run.stderr
                );
            }
            assert_no_secret(&what, &env, &run);
        }
        let run = env.run(&["accounts", "--json"]);
        assert_no_secret("accounts", &env, &run);
    });
}

// ---------------------------------------------------------------------------
// Out of step: a reply no command asked for

#[test]
fn an_unsolicited_reply_is_76_and_nothing_more_is_marked_or_deleted() {
    let unsolicited = |verb: &str, arg: &str| Fault::Unsolicited {
        verb: verb.into(),
        arg: arg.into(),
    };
    // (what, fault, pipelining, first sync in keep mode, args, delivered)
    let cases = [
        // After the last RETR reply: seen in step with DELE about to go.
        (
            "after the last RETR",
            unsolicited("RETR", "5"),
            true,
            false,
            &["sync"][..],
            5,
        ),
        // Without PIPELINING each RETR waits for the one before: caught
        // before the second one is asked for.
        (
            "after RETR 1",
            unsolicited("RETR", "1"),
            false,
            false,
            &["sync"][..],
            1,
        ),
        // Everything already seen: only DELE would follow.
        (
            "before DELE",
            unsolicited("UIDL", ""),
            true,
            true,
            &["sync", "--delete"][..],
            5,
        ),
        // Keep mode, nothing new: only QUIT would follow.
        (
            "before QUIT",
            unsolicited("UIDL", ""),
            true,
            true,
            &["sync", "--keep"][..],
            5,
        ),
    ];
    for (what, fault, pipelining, seen_first, args, delivered) in cases {
        let env = Env::new();
        let msgs = fault_messages();
        let server = Server::start(Config {
            messages: msgs.clone(),
            pipelining,
            ..Config::default()
        });
        env.write_config(&account("f", server.port(), "none", "keep = false"));
        let root = env.maildir("f");
        if seen_first {
            env.run(&["sync", "--keep"]).expect_code(0);
        }
        server.clear_log();
        server.set_faults(vec![fault]);
        let run = env.run(args);
        assert_eq!(run.code, 76, "{what}: {}", run.stderr);
        assert!(run.stderr.contains("out of step"), "{what}: {}", run.stderr);
        let log = server.log();
        assert!(
            !log.iter().any(|l| l.starts_with("DELE") || l == "QUIT"),
            "{what}: DELE or QUIT after the desync: {log:?}"
        );
        assert_eq!(
            server.messages().len(),
            msgs.len(),
            "{what}: nothing deleted"
        );
        assert_clean_failure(what, &root, &msgs);
        let inv = inventory(&root, &msgs);
        assert_eq!(
            inv.counts.iter().sum::<usize>(),
            delivered,
            "{what}: {inv:?}"
        );

        // In step again: what was delivered is not fetched twice, and the
        // rest arrives.
        server.clear_faults();
        env.run(&["sync"]).expect_code(0);
        assert_exactly_once(what, &root, &msgs);
        for m in &msgs {
            assert_eq!(
                server.retr_count(&m.uidl),
                1,
                "{what}: {} fetched once",
                m.uidl
            );
        }
        assert!(server.messages().is_empty(), "{what}");
    }
}

// ---------------------------------------------------------------------------
// Bounded against a hostile server

#[test]
fn an_endless_listing_is_76_not_unbounded_memory() {
    let mut cases = Vec::new();
    for verb in ["LIST", "UIDL", "CAPA"] {
        cases.push(
            Case::new(
                format!("endless {verb} listing"),
                vec![Fault::EndlessListing(verb.into())],
                76,
            )
            .timeout(30)
            .says(&["protocol error", "more than 1000000 entries"]),
        );
    }
    run_parallel(3, &cases, check_case);
}

#[test]
fn a_uidl_that_rfc_1939_forbids_is_76_naming_it() {
    for (bad, shown) in [
        ("has space", "has space"),
        ("bell\x07", "bell\\\\x07"),
        (&"x".repeat(71)[..], &"x".repeat(71)[..]),
    ] {
        let env = Env::new();
        let mut msgs = fault_messages();
        msgs[2].uidl = bad.to_string();
        let server = Server::start(Config {
            messages: msgs.clone(),
            ..Config::default()
        });
        env.write_config(&account("f", server.port(), "none", "keep = false"));
        let run = env.run(&["sync"]);
        assert_eq!(run.code, 76, "{bad:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("RFC 1939") && run.stderr.contains(shown),
            "{bad:?}: {}",
            run.stderr
        );
        assert!(maildir_messages(&env.maildir("f")).is_empty(), "{bad:?}");
        assert!(!server.log().iter().any(|l| l.starts_with("RETR")));
        assert_eq!(server.messages().len(), msgs.len());
    }
}

#[test]
fn a_message_that_grows_past_max_size_while_streaming_is_left_on_the_server() {
    let env = Env::new();
    let mut msgs = messages("grow", 4, 2_000);
    msgs[1] = messages("huge", 1, 20_000).remove(0);
    // LIST halves every size: the 20 kB message is announced as 10 kB,
    // under max_size, and only shows its real size while it streams.
    let server = Server::start(Config {
        messages: msgs.clone(),
        faults: vec![Fault::WrongListSizes],
        ..Config::default()
    });
    env.write_config(&account(
        "f",
        server.port(),
        "none",
        "keep = false\nmax_size = \"15000 B\"",
    ));
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert!(run.stderr.contains("grew past max_size"), "{}", run.stderr);
    let report = &run.json_lines()[0];
    assert_eq!(report["new"], 3, "{report}");
    assert_eq!(report["skipped"], 1, "{report}");
    let root = env.maildir("f");
    assert_clean_failure("grew past max_size", &root, &msgs);
    assert_eq!(inventory(&root, &msgs).counts, vec![1, 0, 1, 1]);
    assert_eq!(
        uidls_on(&server),
        vec![msgs[1].uidl.clone()],
        "left on the server, the rest deleted"
    );
    // Not marked seen: with a larger max_size it arrives.
    server.clear_faults();
    env.write_config(&account("f", server.port(), "none", "keep = false"));
    env.run(&["sync"]).expect_code(0);
    assert_exactly_once("after raising max_size", &root, &msgs);
}
