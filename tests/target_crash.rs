//! kill -9 trials for the mail-server targets (SPEC §4.3, issue 16): the
//! real binary fetching from the scripted POP3 server into Dovecot's own
//! IMAP (APPEND) and LMTP, killed at seeded random instants, keep and
//! delete mode, then a clean run. Seed: `POPFETCH_CRASH_SEED` (decimal or
//! 0x hex), printed with the figures.
//!
//! IMAP: every message in the target folder exactly once, byte-exact as
//! Dovecot stores it, never a partial one, not even at the kill instant.
//! LMTP: every message there, none partial; a duplicate only for a message
//! the kill caught between its delivery (the final dot) and its seen
//! record, counted at the kill instant from outside (in the mailbox, no
//! record) and bounding the duplicates.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::lmtp_target::strip_dovecot_lmtp_headers;
use crate::support::dovecot::{require_dovecot_imap, require_dovecot_lmtp, Dovecot};
use crate::support::server::{Config, Fault, Msg, Server};
use crate::support::{expected_delivery, mixed_messages, Env, Rng};
use crate::sync::account;

const TRIALS: usize = 100;
/// Messages per trial; message 3 is the large one.
const MESSAGES: usize = 12;
const LARGE: usize = 1024 * 1024;

fn seed(default: u64) -> u64 {
    std::env::var("POPFETCH_CRASH_SEED")
        .ok()
        .and_then(|s| match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => s.parse().ok(),
        })
        .unwrap_or(default)
}

/// Trial `t`'s messages (the mixed set: dot lines, 8-bit, no final
/// newline, CRLF, a large one), Message-IDs and subjects of its own.
fn trial_messages(t: usize) -> Vec<Msg> {
    mixed_messages(MESSAGES, LARGE)
        .into_iter()
        .enumerate()
        .map(|(i, mut data)| {
            // Byte by byte: one of the messages is not UTF-8.
            for (from, to) in [
                (format!("<{i}@test>"), format!("<t{t}.{i}@test>")),
                (
                    format!("Subject: message {i}\n"),
                    format!("Subject: trial {t} message {i}\n"),
                ),
            ] {
                let at = memfind(&data, from.as_bytes()).expect("in every message");
                data.splice(at..at + from.len(), to.into_bytes());
            }
            Msg::new(format!("t{t}-{i}"), data)
        })
        .collect()
}

fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Journal entries a run left.
fn pending_count(env: &Env) -> usize {
    let path = env.state_dir().join("seen.sqlite3");
    if !path.exists() {
        return 0;
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.query_row("SELECT count(*) FROM pending", [], |r| r.get::<_, i64>(0))
        .map(|n| n as usize)
        .unwrap_or(0)
}

/// The message files of a Maildir (new/ and cur/), by their base name
/// (Dovecot moves a file from new/ to cur/ and adds flags to its name).
fn message_files(root: &Path) -> HashMap<String, PathBuf> {
    let mut out = HashMap::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(root.join(sub)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let base = name.split(':').next().unwrap_or(&name).to_string();
            out.insert(base, e.path());
        }
    }
    out
}

/// What a trial finds in the target: how many times each message is
/// there, and files that are none of them (partial or altered).
struct Inventory {
    counts: Vec<usize>,
    strangers: Vec<String>,
}

/// Reads the files in `root` not in `before`: each must be one of `want`
/// exactly (after `strip`).
fn inventory(
    root: &Path,
    before: &HashSet<String>,
    want: &HashMap<Vec<u8>, usize>,
    strip: fn(&[u8]) -> &[u8],
) -> Inventory {
    let mut inv = Inventory {
        counts: vec![0; want.len()],
        strangers: Vec::new(),
    };
    for (base, path) in message_files(root) {
        if before.contains(&base) {
            continue;
        }
        let Ok(data) = std::fs::read(&path) else {
            continue;
        };
        match want.get(strip(&data)) {
            Some(&i) => inv.counts[i] += 1,
            None => inv.strangers.push(format!(
                "{base} ({} bytes): {:?}",
                data.len(),
                String::from_utf8_lossy(&data[..data.len().min(200)])
            )),
        }
    }
    inv
}

/// Waits until the server stopped adding to the Maildir: the same files
/// for 200 ms running (at most 5 s).
fn settle(root: &Path) {
    let started = Instant::now();
    let mut last = message_files(root).len();
    let mut still_since = Instant::now();
    while still_since.elapsed() < Duration::from_millis(200)
        && started.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(20));
        let now = message_files(root).len();
        if now != last {
            last = now;
            still_since = Instant::now();
        }
    }
}

/// Removes what a trial left in the target, so that the next one reads
/// only its own files (and Dovecot's folder stays small).
fn clear_new_files(root: &Path, before: &HashSet<String>) {
    for (base, path) in message_files(root) {
        if !before.contains(&base) {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Imap,
    Lmtp,
}

fn config(kind: Kind, dc: &Dovecot, pop: &Server, keep: bool) -> String {
    let extra = if keep { "" } else { "keep = false" };
    let cfg = account("t", pop.port(), "none", extra);
    let maildir = "maildir = \"~/Mail/t\"";
    match kind {
        Kind::Imap => format!(
            "{}[targets.home]\nurl = \"imaps://localhost:{}/INBOX\"\nuser = \"bob\"\npassword = \"pw-bob\"\nca_file = \"{}\"\ntimeout = 20\n",
            cfg.replace(maildir, "imap_target = \"home\""),
            dc.imaps_port(),
            dc.pki().ca_path.display()
        ),
        Kind::Lmtp => cfg.replace(
            maildir,
            &format!(
                "lmtp = \"unix:{}\"\ndeliver_to = \"bob\"",
                dc.lmtp_socket().display()
            ),
        ),
    }
}

fn stored_imap(data: &[u8]) -> &[u8] {
    data
}

#[derive(Default, Debug)]
struct Figures {
    killed: usize,
    /// Kills that left journal entries (IMAP: appends to look up).
    with_journal: usize,
    /// Messages in the target without a seen record at the kill.
    in_window: usize,
    duplicated: usize,
    failures: Vec<String>,
}

/// `TRIALS` trials (half keep, half delete) against one Dovecot.
fn trials(kind: Kind, default_seed: u64) {
    let dc = Dovecot::start(&[("bob", "pw-bob")]);
    let inbox = dc.maildir("bob");
    let base = seed(default_seed);
    let strip: fn(&[u8]) -> &[u8] = match kind {
        Kind::Imap => stored_imap,
        Kind::Lmtp => strip_dovecot_lmtp_headers,
    };
    // A whole run, timed (again every 10 trials, as the machine's load
    // changes): the kills fall within the length of one.
    let whole_run = || {
        let env = Env::new();
        let before: HashSet<String> = message_files(&inbox).into_keys().collect();
        let pop = Server::start(Config {
            messages: trial_messages(TRIALS),
            faults: vec![Fault::SlowRetr { delay_ms: 10 }],
            ..Config::default()
        });
        env.write_config(&config(kind, &dc, &pop, false));
        let started = Instant::now();
        env.run(&["sync", "-q"]).expect_code(0);
        let span = started.elapsed();
        clear_new_files(&inbox, &before);
        span
    };
    let mut span = whole_run();
    let started = Instant::now();
    let mut f = Figures::default();
    for t in 0..TRIALS {
        let keep = t % 2 == 0;
        if t > 0 && t % 10 == 0 {
            span = whole_run();
        }
        let mut rng = Rng::new(base ^ (t as u64).wrapping_mul(0xA24B_AED4_963E_E407));
        let env = Env::new();
        let msgs = trial_messages(t);
        let want: HashMap<Vec<u8>, usize> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| (expected_delivery(&m.data), i))
            .collect();
        assert_eq!(want.len(), MESSAGES);
        let pop = Server::start(Config {
            messages: msgs.clone(),
            faults: vec![Fault::SlowRetr { delay_ms: 10 }],
            ..Config::default()
        });
        env.write_config(&config(kind, &dc, &pop, keep));
        let before: HashSet<String> = message_files(&inbox).into_keys().collect();
        // Half the kills anywhere in a run, half in its last part, where
        // the appends of an IMAP batch and the seen records are written.
        let from = if t % 4 < 2 { 0.0 } else { 0.5 };
        let at = span.mul_f64(from + (rng.next() % 1000) as f64 / 1000.0 * (1.1 - from));
        let what = format!(
            "{kind:?} trial {t} ({}, kill at {at:?} of {span:?})",
            if keep { "keep" } else { "delete" }
        );
        if env.sync_killed_after(at).is_ok() {
            f.killed += 1;
        }
        // At the kill: nothing partial, nothing twice yet. The server
        // finishes what it had whole after the client died. LMTP: a
        // message after its final dot, counted once the server is done.
        // IMAP: pipelined APPENDs whose literals arrived; the next run
        // starts at once, while the server may still store them (its
        // recovery must wait for them).
        if kind == Kind::Lmtp {
            settle(&inbox);
        }
        let inv = inventory(&inbox, &before, &want, strip);
        for s in &inv.strangers {
            f.failures
                .push(format!("{what}: a file that is none of the messages: {s}"));
        }
        for (i, n) in inv.counts.iter().enumerate() {
            if *n > 1 {
                f.failures
                    .push(format!("{what}: message {i} there {n} times at the kill"));
            }
        }
        if pending_count(&env) > 0 {
            f.with_journal += 1;
        }
        let seen = env.seen_uidls();
        let window: Vec<usize> = (0..MESSAGES)
            .filter(|&i| inv.counts[i] > 0 && !seen.contains(&msgs[i].uidl))
            .collect();
        // IMAP: appended, not yet recorded (recovery must find them in the
        // folder); LMTP: the duplicate window.
        f.in_window += window.len();
        if kind == Kind::Lmtp {
            // One message at a time is between its final dot and its record.
            if window.len() > 1 {
                f.failures.push(format!(
                    "{what}: {} messages delivered without a record: {window:?}",
                    window.len()
                ));
            }
        }
        // Whatever the kill left, the next run puts right.
        pop.clear_faults();
        let run = env.run(&["sync", "-q"]);
        if run.code != 0 {
            f.failures.push(format!(
                "{what}: the clean run exited {}: {}",
                run.code, run.stderr
            ));
        }
        let inv = inventory(&inbox, &before, &want, strip);
        for s in &inv.strangers {
            f.failures
                .push(format!("{what}: after the clean run, a stranger: {s}"));
        }
        for (i, n) in inv.counts.iter().enumerate() {
            match (kind, *n) {
                (_, 1) => {}
                (Kind::Lmtp, 2) if window.contains(&i) => f.duplicated += 1,
                (_, 0) => f.failures.push(format!("{what}: message {i} lost")),
                (_, n) => f
                    .failures
                    .push(format!("{what}: message {i} there {n} times")),
            }
        }
        if pending_count(&env) > 0 {
            f.failures
                .push(format!("{what}: the clean run left journal entries"));
        }
        let left = pop.messages().len();
        if keep && left != MESSAGES || !keep && left != 0 {
            f.failures
                .push(format!("{what}: {left} messages left on the server"));
        }
        clear_new_files(&inbox, &before);
    }
    eprintln!(
        "kill -9 trials, {kind:?} target into Dovecot (seed {base:#x}): {TRIALS} trials \
         ({} keep, {} delete; {MESSAGES} messages each, one of {LARGE} bytes), last whole run {span:?}, \
         {} killed mid-run, {} leaving journal entries, {} messages in the target without a seen \
         record at the kill (LMTP: the duplicate window), {} duplicated, {} problems; {:?} in all",
        TRIALS / 2,
        TRIALS / 2,
        f.killed,
        f.with_journal,
        f.in_window,
        f.duplicated,
        f.failures.len(),
        started.elapsed()
    );
    assert!(f.failures.is_empty(), "{}", f.failures.join("\n"));
    assert!(
        f.duplicated <= f.in_window,
        "{} duplicates, only {} kills in the window",
        f.duplicated,
        f.in_window
    );
    assert!(
        f.killed >= TRIALS / 2,
        "too few kills landed inside a run ({}): the timing is off",
        f.killed
    );
}

#[test]
fn imap_target_kill_9_trials_lose_nothing_and_duplicate_nothing() {
    if !require_dovecot_imap() {
        return;
    }
    trials(Kind::Imap, 0x5EED_1A9D);
}

#[test]
fn lmtp_target_kill_9_trials_lose_nothing_and_duplicate_only_inside_the_window() {
    if !require_dovecot_lmtp() {
        return;
    }
    trials(Kind::Lmtp, 0x5EED_1D7B);
}
