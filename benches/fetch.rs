//! End-to-end fetch benchmark: popfetch against a bare pipelining client,
//! mpop and fetchmail, all over implicit TLS to a private Dovecot on
//! 127.0.0.1 (the test harness of `tests/support/dovecot.rs`), over POP3
//! and (the `imap-*` scenarios) IMAP.
//!
//! Run from the repository root:
//!
//! ```text
//! cargo bench --bench fetch
//! ```
//!
//! Environment:
//! - `BENCH_REPS` (default 5): timed repetitions per scenario and contender.
//!   Repetitions are interleaved (bare, popfetch, mpop, fetchmail, bare, …)
//!   so a slow phase of the machine hits every contender alike.
//! - `BENCH_SCENARIOS` (default `first,nonew,delete,big`): which scenarios;
//!   the IMAP ones are `imap-first,imap-nonew,imap-big`. They are not in
//!   the default set: at `BENCH_REPS=5` the three alone took 8 minutes on
//!   the project's 2-core machine, most of it fetchmail over IMAP (4
//!   minutes priming 20,000 messages, 30 s per first fetch), which would
//!   take a default run far past ten minutes.
//! - `BENCH_CONTENDERS` (default `bare,popfetch,mpop,fetchmail`); mpop and
//!   fetchmail are skipped when not installed.
//! - `BENCH_POPFETCH_MBOX=1`: popfetch delivers into an mbox instead of a
//!   Maildir (what fetching costs without 5,000 file creations).
//! - `BENCH_POPFETCH_PREFIX`: a command put in front of popfetch, to profile
//!   it in place (`strace -c -f -o /tmp/st`, `perf record -g -o /tmp/p.data`).
//!
//! Scenarios (mailboxes are deterministic, from a seeded PRNG):
//! - `first`: first fetch, keep mode, of 5,000 mixed messages (~85 MB:
//!   mostly 2–10 KB, some 50–500 KB, a dozen of 1–2 MB). Every repetition
//!   starts from an empty local Maildir and fresh state.
//! - `nonew`: a sync with no new mail on a 20,000-message mailbox, with the
//!   state of an earlier full fetch. The bare client does login + UIDL + QUIT.
//! - `delete`: the 5,000 messages fetched and deleted; the mailbox is
//!   refilled (hard links, outside the timed region) before every run.
//! - `big`: one 50 MB message, keep mode; peak RSS is the point here.
//! - `imap-first`, `imap-nonew`, `imap-big`: the same over IMAPS (implicit
//!   TLS), on the same mailboxes; popfetch has `protocol = "imap"`. After
//!   the bare client's warm-up, an untimed popfetch run makes Dovecot
//!   compute and cache RFC822.SIZE, which the bare client never asks for.
//!
//! Before every timed run the bench calls sync(2), outside the timed
//! region, so no run pays for writing back another's data (popfetch's
//! group flush with syncfs would).
//!
//! Contenders, each a separate process timed from spawn to exit (peak RSS
//! from `wait4`):
//! - `bare`: this binary re-executed as a minimal client (rustls, USER/PASS,
//!   STAT, UIDL, every RETR pipelined in a window of 256, bytes read and
//!   thrown away without decoding; DELE pipelined in delete mode). The lower
//!   bound of any client that uses the same TLS stack. Over IMAP: LOGIN,
//!   SELECT, one `UID FETCH 1:* BODY.PEEK[]` whose literals are skipped by
//!   their length, LOGOUT; with no new mail LOGIN, `STATUS INBOX (MESSAGES
//!   UIDNEXT UIDVALIDITY)`, LOGOUT (all a client needs to learn that
//!   nothing came, given the last UIDNEXT).
//! - `popfetch`: `target/release/popfetch sync` with a config in a temp HOME,
//!   Maildir target (durable: SPEC §4), keep mode unless `delete`.
//! - `mpop`: `--delivery=maildir,DIR` (a fresh Maildir), `--keep=on`,
//!   `--received-header=off`, its uidls file in the temp dir.
//! - `fetchmail`: `--mda "cat >/dev/null"` (one shell per message, as
//!   fetchmail delivers to an MDA), `uidl`, `keep`, `sslcertck` with the
//!   test CA, idfile and pid file in the temp dir. Over IMAP (`protocol
//!   imap`) it tells new from old by `\Seen`, which it sets on what it
//!   fetched even with `keep`: `fetchall` where every run fetches, and the
//!   no-new-mail runs find nothing unseen after the priming fetch. mpop
//!   speaks only POP3 and sits the IMAP scenarios out.
//!
//! - `to-maildir`, `to-imap`, `to-lmtp` (issue 16, popfetch only, not in
//!   the default set): the `first` fetch into a Maildir directly, into a
//!   second Dovecot by IMAP APPEND, and into its LMTP, interleaved rep by
//!   rep; the table gives each one's ratio to the Maildir path.
//!   `BENCH_SCENARIOS=to-maildir,to-imap,to-lmtp cargo bench --bench fetch`;
//!   `BENCH_TARGET_FSYNC` sets the target Dovecot's `mail_fsync`
//!   (default `optimized`, Dovecot's own default).
//!
//! The IMAP targets of issue 15 are checked below the table ("met" or
//! "MISSED").
//!
//! The table goes to stdout and to `target/bench-results.md`.

#![allow(dead_code)]

#[path = "common/rng.rs"]
mod rng;
use rng::Rng;

#[path = "../tests/support"]
mod support {
    pub mod certs;
    pub mod dovecot;
}

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;

use support::dovecot::{dovecot_available, dovecot_imap_available, maildir_name, Dovecot};

const USER_MIXED: &str = "mixed";
const USER_MANY: &str = "many";
const USER_DEL: &str = "del";
const USER_BIG: &str = "big";
const PASSWORD: &str = "bench-pw";

const MIXED_COUNT: usize = 5_000;
const MANY_COUNT: usize = 20_000;
const BIG_SIZE: usize = 50 * 1024 * 1024;

/// Scenarios run when `BENCH_SCENARIOS` is not set.
const DEFAULT_SCENARIOS: &str = "first,nonew,delete,big";

/// Outstanding RETR/DELE commands of the bare client.
const BARE_WINDOW: usize = 256;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__bare") {
        bare_main(&args[2..]);
        return;
    }
    if args.get(1).map(String::as_str) == Some("__run") {
        run_main(&args[2..]);
        return;
    }
    if !dovecot_available() {
        eprintln!("SKIPPED: Dovecot (dovecot-core + dovecot-pop3d) is not installed");
        return;
    }
    Bench::run();
}

// ---------------------------------------------------------------------------
// Deterministic mailboxes

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "a",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "had",
    "they",
    "you",
    "were",
    "their",
    "one",
    "all",
    "we",
    "can",
    "her",
    "has",
    "there",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "meeting",
    "report",
    "server",
    "message",
    "quarterly",
    "attached",
    "please",
    "review",
    "schedule",
    "budget",
    "regards",
    "thanks",
    "deadline",
    "project",
    "update",
    "café",
    "über",
    "naïve",
];

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn text_line(rng: &mut Rng, out: &mut Vec<u8>) {
    // Some lines need dot-stuffing on the wire.
    match rng.below(40) {
        0 => out.extend_from_slice(b"."),
        1 => out.extend_from_slice(b".."),
        2 => out.extend_from_slice(b"> "),
        _ => {}
    }
    let target = rng.range(20, 76);
    let start = out.len();
    while out.len() - start < target {
        let w = WORDS[rng.below(WORDS.len() as u64) as usize];
        out.extend_from_slice(w.as_bytes());
        out.push(b' ');
    }
    out.pop();
    out.push(b'\n');
}

fn b64_line(rng: &mut Rng, out: &mut Vec<u8>) {
    let mut x = rng.next();
    for i in 0..76 {
        if i % 10 == 0 {
            x = rng.next();
        }
        out.push(B64[(x & 63) as usize]);
        x >>= 6;
    }
    out.push(b'\n');
}

/// One message of about `size` bytes (LF line ends, as Maildir stores them).
fn message(rng: &mut Rng, i: usize, size: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity(size + 200);
    let attach = size > 40_000;
    write!(
        m,
        "Return-Path: <sender{i}@example.org>\n\
         Received: from mx.example.org by pop.example.com; Tue, 4 Mar 2025 10:{:02}:{:02} +0000\n\
         From: Sender {i} <sender{i}@example.org>\n\
         To: Alice <alice@example.com>\n\
         Subject: benchmark message {i}\n\
         Date: Tue, 4 Mar 2025 10:{:02}:{:02} +0000\n\
         Message-ID: <{i}.{}@example.org>\n\
         MIME-Version: 1.0\n",
        i % 60,
        (i / 60) % 60,
        i % 60,
        (i / 60) % 60,
        rng.next()
    )
    .unwrap();
    if attach {
        m.extend_from_slice(
            b"Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\nContent-Type: text/plain; charset=utf-8\n\n",
        );
        for _ in 0..rng.range(5, 40) {
            text_line(rng, &mut m);
        }
        m.extend_from_slice(
            b"\n--b1\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n",
        );
        while m.len() + 8 < size {
            b64_line(rng, &mut m);
        }
        m.extend_from_slice(b"--b1--\n");
    } else {
        m.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\n\n");
        while m.len() < size {
            text_line(rng, &mut m);
        }
    }
    m
}

/// 5,000 messages, ~85 MB: 4,788 of 2–10 KB, 200 of 50–500 KB
/// (log-uniform), 12 of 1–2 MB, in a shuffled order.
fn mixed_mailbox() -> Vec<Vec<u8>> {
    let mut rng = Rng(0x5EED_0001);
    let mut kinds: Vec<u8> = std::iter::repeat_n(0u8, 4_788)
        .chain(std::iter::repeat_n(1u8, 200))
        .chain(std::iter::repeat_n(2u8, 12))
        .collect();
    for i in (1..kinds.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        kinds.swap(i, j);
    }
    kinds
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let size = match k {
                0 => rng.range(2_000, 10_000),
                1 => rng.log_range(50_000, 500_000),
                _ => rng.range(1_000_000, 2_000_000),
            };
            message(&mut rng, i, size)
        })
        .collect()
}

/// 20,000 small messages (1–3 KB).
fn many_mailbox() -> Vec<Vec<u8>> {
    let mut rng = Rng(0x5EED_0002);
    (0..MANY_COUNT)
        .map(|i| {
            let size = rng.range(1_000, 3_000);
            message(&mut rng, i, size)
        })
        .collect()
}

fn big_message() -> Vec<u8> {
    let mut rng = Rng(0x5EED_0003);
    message(&mut rng, 0, BIG_SIZE)
}

/// Message files written once, then hard-linked into a user's `new/` for
/// every refill: a 5,000-message refill is 5,000 `link` calls.
struct Template {
    files: Vec<PathBuf>,
    counter: u64,
}

impl Template {
    fn create(dir: &Path, messages: &[Vec<u8>], uid: u32, gid: u32) -> Template {
        fs::create_dir_all(dir).unwrap();
        let files = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let p = dir.join(format!("{i:06}"));
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&p)
                    .unwrap();
                f.write_all(m).unwrap();
                std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
                p
            })
            .collect();
        Template {
            files,
            counter: 1_000_000_000,
        }
    }

    /// Links every template file into `maildir/new`, in order.
    fn fill(&mut self, maildir: &Path) {
        for f in &self.files {
            self.counter += 1;
            let n = self.counter;
            let name = maildir_name(n, "bench");
            fs::hard_link(f, maildir.join("new").join(name)).unwrap();
        }
    }
}

fn count_files(dir: &Path) -> usize {
    fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn maildir_count(root: &Path) -> usize {
    count_files(&root.join("new")) + count_files(&root.join("cur"))
}

// ---------------------------------------------------------------------------
// Running and measuring a contender

#[derive(Clone, Copy, Debug)]
struct Sample {
    secs: f64,
    max_rss_kib: u64,
    /// CPU time (user + system) of the contender and the children it
    /// waited for; with Dovecot on the same cores, every CPU second a
    /// client spends is taken from the server too.
    cpu_secs: f64,
    /// CPU time Dovecot spent in the same run (its whole process tree).
    server_cpu_secs: f64,
    /// CPU time the whole machine spent (all processes and the kernel's
    /// own threads, e.g. write-back), from /proc/stat.
    machine_cpu_secs: f64,
}

/// Runs `cmd` through a small `__run` wrapper process and returns wall time
/// and peak RSS. Panics with the captured output when the exit code is not
/// in `ok_codes`.
///
/// Why the wrapper: Linux carries a process's peak RSS across `execve`, and
/// a child spawned straight from this (large) process would report our own
/// RSS. The wrapper is a fresh small process; its child's `ru_maxrss` (from
/// `wait4`) is the contender's own, with the wrapper's few MiB as a floor.
fn measure(cmd: &mut Command, log: &Path, ok_codes: &[i32]) -> Sample {
    let mut wrapper = Command::new(std::env::current_exe().unwrap());
    wrapper.arg("__run").arg(log).arg(cmd.get_program());
    wrapper.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapper.env(k, v),
            None => wrapper.env_remove(k),
        };
    }
    if cmd.get_envs().any(|(k, _)| k == "PATH") {
        // Built with env_clear(): keep the child's environment exactly.
        let keep: Vec<_> = cmd.get_envs().map(|(k, _)| k.to_owned()).collect();
        for (k, _) in std::env::vars_os() {
            if !keep.contains(&k) {
                wrapper.env_remove(&k);
            }
        }
    }
    let out = wrapper
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("spawn the __run wrapper: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace();
    let (Some(secs), Some(kib), Some(cpu), Some(code)) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        panic!("__run wrapper said {text:?}");
    };
    let code: i32 = code.parse().unwrap();
    if !ok_codes.contains(&code) {
        panic!(
            "{cmd:?} exited with {code}:\n{}",
            String::from_utf8_lossy(&fs::read(log).unwrap_or_default())
        );
    }
    Sample {
        secs: secs.parse().unwrap(),
        max_rss_kib: kib.parse().unwrap(),
        cpu_secs: cpu.parse().unwrap(),
        server_cpu_secs: 0.0,
        machine_cpu_secs: 0.0,
    }
}

/// `__run LOG PROGRAM ARGS...`: runs PROGRAM with stdout and stderr to LOG,
/// then prints `seconds max_rss_kib cpu_seconds exit_code`.
fn run_main(args: &[String]) {
    let (log, rest) = args.split_first().expect("__run LOG PROGRAM ARGS...");
    let (program, args) = rest.split_first().expect("__run LOG PROGRAM ARGS...");
    let out = fs::File::create(log).unwrap();
    let start = Instant::now();
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: all-zero is a valid rusage; wait4 fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: our own child, valid pointers.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(rc, pid, "wait4: {}", std::io::Error::last_os_error());
    drop(child);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
    println!("{secs:.6} {} {cpu:.6} {code}", usage.ru_maxrss);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Contender {
    Bare,
    /// The bare IMAP client writing each literal, as it came, into a
    /// Maildir made durable with one `syncfs` at the end: what durable
    /// delivery of the same files costs on this disk, with no journal,
    /// no decoding and no seen state (`BENCH_CONTENDERS=…,bare-maildir`;
    /// IMAP first fetch only).
    BareMaildir,
    Popfetch,
    /// Another popfetch binary (`BENCH_POPFETCH_B`), for A/B comparisons.
    PopfetchB,
    Mpop,
    Fetchmail,
}

impl Contender {
    fn name(self) -> &'static str {
        match self {
            Contender::Bare => "bare",
            Contender::BareMaildir => "bare-maildir",
            Contender::Popfetch => "popfetch",
            Contender::PopfetchB => "popfetch-B",
            Contender::Mpop => "mpop",
            Contender::Fetchmail => "fetchmail",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Scenario {
    First,
    NoNew,
    Delete,
    Big,
    ImapFirst,
    ImapNoNew,
    ImapBig,
}

impl Scenario {
    const ALL: [Scenario; 7] = [
        Scenario::First,
        Scenario::NoNew,
        Scenario::Delete,
        Scenario::Big,
        Scenario::ImapFirst,
        Scenario::ImapNoNew,
        Scenario::ImapBig,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::First => "first",
            Scenario::NoNew => "nonew",
            Scenario::Delete => "delete",
            Scenario::Big => "big",
            Scenario::ImapFirst => "imap-first",
            Scenario::ImapNoNew => "imap-nonew",
            Scenario::ImapBig => "imap-big",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Scenario::First => "first fetch, 5,000 msgs (keep)",
            Scenario::NoNew => "no new mail, 20,000 msgs",
            Scenario::Delete => "fetch + delete, 5,000 msgs",
            Scenario::Big => "one 50 MB message",
            Scenario::ImapFirst => "IMAP first fetch, 5,000 msgs (keep)",
            Scenario::ImapNoNew => "IMAP no new mail, 20,000 msgs",
            Scenario::ImapBig => "IMAP one 50 MB message",
        }
    }

    fn imap(self) -> bool {
        self.pop3() != self
    }

    /// The POP3 scenario with the same mailbox and the same work.
    fn pop3(self) -> Scenario {
        match self {
            Scenario::ImapFirst => Scenario::First,
            Scenario::ImapNoNew => Scenario::NoNew,
            Scenario::ImapBig => Scenario::Big,
            s => s,
        }
    }

    fn user(self) -> &'static str {
        match self.pop3() {
            Scenario::First => USER_MIXED,
            Scenario::NoNew => USER_MANY,
            Scenario::Delete => USER_DEL,
            _ => USER_BIG,
        }
    }

    fn keep(self) -> bool {
        self != Scenario::Delete
    }

    /// Messages a fetching run must deliver.
    fn expected(self) -> usize {
        match self.pop3() {
            Scenario::First | Scenario::Delete => MIXED_COUNT,
            Scenario::NoNew => 0,
            _ => 1,
        }
    }

    /// Whether contender `c` takes part: mpop speaks only POP3; the bare
    /// Maildir writer is there for the IMAP first fetch only.
    fn runs(self, c: Contender) -> bool {
        match c {
            Contender::Mpop => !self.imap(),
            Contender::BareMaildir => self == Scenario::ImapFirst,
            _ => true,
        }
    }
}

/// Where one contender's run keeps its local state.
struct LocalDirs {
    dir: tempfile::TempDir,
}

/// Parent of every contender's local dirs: `target/bench-tmp`, marked as a
/// top of a directory hierarchy (`chattr +T`) so that ext4 spreads each
/// run's folder to a fresh block group. Without that, files created right
/// after thousands were deleted nearby (the previous runs) are slow to
/// create on a journal-less ext4 (it skips inodes freed in the last
/// minutes one by one), whichever program creates them.
fn local_base() -> &'static Path {
    static BASE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-tmp");
        fs::create_dir_all(&base).unwrap();
        let _ = Command::new("chattr")
            .arg("+T")
            .arg(&base)
            .stderr(Stdio::null())
            .status();
        base
    })
}

impl LocalDirs {
    fn new(label: &str) -> LocalDirs {
        let dir = tempfile::Builder::new()
            .prefix(&format!("pfbench-{label}-"))
            .tempdir_in(local_base())
            .unwrap();
        let maildir = dir.path().join("Maildir");
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        LocalDirs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn maildir(&self) -> PathBuf {
        self.path().join("Maildir")
    }

    /// Where popfetch delivers with `BENCH_POPFETCH_MBOX=1`.
    fn mbox(&self) -> PathBuf {
        self.path().join("inbox.mbox")
    }
}

/// `BENCH_POPFETCH_MBOX=1`: popfetch delivers into an mbox instead of a
/// Maildir (one file appended to, a journal and an fsync per batch), to
/// tell the cost of fetching from the cost of making 5,000 files.
fn popfetch_to_mbox() -> bool {
    std::env::var("BENCH_POPFETCH_MBOX").is_ok_and(|v| v == "1")
}

/// Messages in an mbox: its `From ` lines (mboxrd quotes any in a body).
fn mbox_count(path: &Path) -> usize {
    let data = fs::read(path).unwrap_or_default();
    usize::from(data.starts_with(b"From ")) + memchr::memmem::find_iter(&data, b"\nFrom ").count()
}

fn write_private(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

struct Bench {
    dc: Dovecot,
    reps: usize,
    contenders: Vec<Contender>,
    /// State kept across the no-new-mail runs, per scenario and contender.
    nonew_state: BTreeMap<(Scenario, Contender), LocalDirs>,
    del_template: Option<Template>,
    results: BTreeMap<(Scenario, Contender), Vec<Sample>>,
    notes: Vec<String>,
    /// Local dirs of finished runs, removed only at the end: on ext4,
    /// deleting thousands of files makes the next file creations near
    /// them slower for minutes, which would penalise whoever runs next.
    finished: Vec<LocalDirs>,
}

fn installed(bin: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {bin} >/dev/null 2>&1"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn env_list_ws(name: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

impl Bench {
    fn run() {
        let reps: usize = std::env::var("BENCH_REPS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5)
            .max(1);
        let wanted = env_list("BENCH_CONTENDERS", "bare,popfetch,mpop,fetchmail");
        let mut notes = Vec::new();
        let mut contenders = Vec::new();
        for c in [
            Contender::Bare,
            Contender::BareMaildir,
            Contender::Popfetch,
            Contender::PopfetchB,
            Contender::Mpop,
            Contender::Fetchmail,
        ] {
            let skip = if c == Contender::PopfetchB {
                std::env::var_os("BENCH_POPFETCH_B").is_none()
            } else {
                !wanted.iter().any(|w| w == c.name())
            };
            if skip {
                continue;
            }
            if matches!(c, Contender::Mpop | Contender::Fetchmail) && !installed(c.name()) {
                notes.push(format!("{} is not installed: skipped", c.name()));
                continue;
            }
            contenders.push(c);
        }
        let mut scenarios: Vec<Scenario> = {
            let wanted = env_list("BENCH_SCENARIOS", DEFAULT_SCENARIOS);
            for w in &wanted {
                let target = Dest::ALL.iter().any(|t| t.name() == w);
                if !target && !Scenario::ALL.iter().any(|s| s.name() == w) {
                    let known: Vec<&str> = Scenario::ALL
                        .iter()
                        .map(|s| s.name())
                        .chain(Dest::ALL.iter().map(|t| t.name()))
                        .collect();
                    panic!(
                        "BENCH_SCENARIOS: unknown scenario {w:?} (known: {})",
                        known.join(",")
                    );
                }
            }
            Scenario::ALL
                .into_iter()
                .filter(|s| wanted.iter().any(|w| w == s.name()))
                .collect()
        };
        if scenarios.iter().any(|s| s.imap()) && !dovecot_imap_available() {
            notes.push(
                "Dovecot's IMAP service (dovecot-imapd) is not installed: IMAP scenarios skipped"
                    .to_string(),
            );
            scenarios.retain(|s| !s.imap());
        }

        eprintln!("bench: starting Dovecot and loading mailboxes…");
        let t = Instant::now();
        let dc = Dovecot::start(&[
            (USER_MIXED, PASSWORD),
            (USER_MANY, PASSWORD),
            (USER_DEL, PASSWORD),
            (USER_BIG, PASSWORD),
        ]);
        let mut bench = Bench {
            dc,
            reps,
            contenders,
            nonew_state: BTreeMap::new(),
            del_template: None,
            results: BTreeMap::new(),
            notes,
            finished: Vec::new(),
        };
        let meta = fs::metadata(bench.dc.maildir(USER_MIXED)).unwrap();
        let (uid, gid) = (meta.uid(), meta.gid());
        let dests = Dest::wanted();
        if !dests.is_empty()
            || scenarios
                .iter()
                .any(|s| matches!(s.pop3(), Scenario::First | Scenario::Delete))
        {
            let mixed = mixed_mailbox();
            let total: usize = mixed.iter().map(Vec::len).sum();
            bench.notes.push(format!(
                "mixed mailbox: {} messages, {:.1} MB (LF; ~{:.1} MB on the wire)",
                mixed.len(),
                total as f64 / 1e6,
                (total
                    + mixed
                        .iter()
                        .map(|m| m.iter().filter(|&&b| b == b'\n').count())
                        .sum::<usize>()) as f64
                    / 1e6
            ));
            let mut template =
                Template::create(&bench.dc.dir().join("template-mixed"), &mixed, uid, gid);
            drop(mixed);
            template.fill(&bench.dc.maildir(USER_MIXED));
            bench.del_template = Some(template);
        }
        if scenarios.iter().any(|s| s.pop3() == Scenario::NoNew) {
            bench.dc.add_messages(USER_MANY, &many_mailbox());
        }
        if scenarios.iter().any(|s| s.pop3() == Scenario::Big) {
            bench.dc.add_message(USER_BIG, &big_message());
        }
        eprintln!(
            "bench: mailboxes ready in {:.1} s",
            t.elapsed().as_secs_f64()
        );

        for s in &scenarios {
            bench.scenario(*s);
        }
        let mut table = if scenarios.is_empty() {
            String::new()
        } else {
            bench.table(&scenarios)
        };
        table.push_str(&bench.targets(&dests));
        println!("{table}");
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-results.md");
        fs::write(&out, &table).unwrap();
        eprintln!("bench: table written to {}", out.display());
        eprintln!("bench: cleaning up");
    }

    fn scenario(&mut self, s: Scenario) {
        eprintln!("bench: scenario {} ({})", s.name(), s.title());
        // Warm the page cache and Dovecot's index (untimed).
        if s == Scenario::Delete {
            self.refill_del();
        }
        let contenders: Vec<Contender> = self
            .contenders
            .iter()
            .copied()
            .filter(|c| s.runs(*c))
            .collect();
        let warm = LocalDirs::new("warm");
        self.run_once(s, Contender::Bare, &warm);
        self.finished.push(warm);
        // The bare IMAP client asks for no RFC822.SIZE, which Dovecot
        // computes (reading every message) and caches on first request:
        // an untimed popfetch run pays for that, not the first timed one.
        if s.imap() && s.pop3() != Scenario::NoNew && contenders.contains(&Contender::Popfetch) {
            let warm = LocalDirs::new("warm");
            self.run_once(s, Contender::Popfetch, &warm);
            self.finished.push(warm);
        }
        if s.pop3() == Scenario::NoNew {
            // fetchmail over IMAP sets `\Seen` on what it fetches, a change
            // to the folder (HIGHESTMODSEQ) that the others' first timed run
            // would find and list once: it is primed first, so every timed
            // run sees the folder as the previous sync left it.
            let mut priming = contenders.clone();
            priming.sort_by_key(|c| *c != Contender::Fetchmail);
            for c in priming {
                if matches!(c, Contender::Bare | Contender::BareMaildir) {
                    continue;
                }
                eprintln!("bench:   priming {} state (full fetch, untimed)", c.name());
                let dirs = LocalDirs::new(&format!("{}-{}", s.name(), c.name()));
                let t = Instant::now();
                self.run_once(s, c, &dirs);
                eprintln!(
                    "bench:   primed in {:.1} s: {} messages",
                    t.elapsed().as_secs_f64(),
                    maildir_count(&dirs.maildir())
                );
                self.nonew_state.insert((s, c), dirs);
            }
        }
        for rep in 0..self.reps {
            for c in contenders.clone() {
                if s == Scenario::Delete {
                    self.refill_del();
                }
                let mut fresh = None;
                let dirs = if s.pop3() == Scenario::NoNew && c != Contender::Bare {
                    &self.nonew_state[&(s, c)]
                } else {
                    fresh.insert(LocalDirs::new(c.name()))
                };
                // Every run starts with nothing left to write back from the
                // setup or an earlier run: a contender that flushes with
                // syncfs would otherwise pay for others' writes.
                // SAFETY: sync has no preconditions.
                unsafe { libc::sync() };
                let server_before = tree_cpu_secs(self.dc.pid());
                let machine_before = machine_busy_secs();
                let mut sample = self.run_once(s, c, dirs);
                sample.machine_cpu_secs = machine_busy_secs() - machine_before;
                sample.server_cpu_secs = server_cpu_since(self.dc.pid(), server_before);
                if s.pop3() != Scenario::NoNew || c == Contender::Bare {
                    let to_mbox = popfetch_to_mbox()
                        && matches!(c, Contender::Popfetch | Contender::PopfetchB);
                    let got = if to_mbox {
                        mbox_count(&dirs.mbox())
                    } else {
                        maildir_count(&dirs.maildir())
                    };
                    let want = if c == Contender::Bare || c == Contender::Fetchmail {
                        0 // bytes thrown away / handed to an MDA
                    } else {
                        s.expected()
                    };
                    assert_eq!(got, want, "{} {}: delivered {got}", s.name(), c.name());
                }
                if s == Scenario::Delete {
                    let left = self.dc.message_count(USER_DEL);
                    assert_eq!(left, 0, "{} left {left} messages", c.name());
                }
                eprintln!(
                    "bench:   rep {} {:<9} {:>8.3} s  {:>7.1} MiB  cpu {:.3} s  server cpu {:.3} s  machine cpu {:.2} s",
                    rep + 1,
                    c.name(),
                    sample.secs,
                    sample.max_rss_kib as f64 / 1024.0,
                    sample.cpu_secs,
                    sample.server_cpu_secs,
                    sample.machine_cpu_secs
                );
                self.results.entry((s, c)).or_default().push(sample);
                self.finished.extend(fresh);
            }
        }
    }

    fn refill_del(&mut self) {
        let md = self.dc.maildir(USER_DEL);
        for sub in ["new", "cur"] {
            for e in fs::read_dir(md.join(sub)).unwrap().flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
        self.del_template.as_mut().unwrap().fill(&md);
    }

    /// One run of `c` on scenario `s` using `dirs` for its local state.
    fn run_once(&self, s: Scenario, c: Contender, dirs: &LocalDirs) -> Sample {
        let user = s.user();
        let port = if s.imap() {
            self.dc.imaps_port()
        } else {
            self.dc.pop3s_port()
        };
        let ca = &self.dc.pki().ca_path;
        let log = dirs.path().join(format!("{}.log", c.name()));
        match c {
            Contender::Bare | Contender::BareMaildir => {
                let mode = match s {
                    _ if c == Contender::BareMaildir => "imap-maildir",
                    Scenario::NoNew => "uidl",
                    Scenario::Delete => "delete",
                    Scenario::ImapNoNew => "imap-status",
                    Scenario::ImapFirst | Scenario::ImapBig => "imap-fetch",
                    _ => "fetch",
                };
                let mut cmd = Command::new(std::env::current_exe().unwrap());
                cmd.arg("__bare")
                    .arg(mode)
                    .arg(port.to_string())
                    .arg(user)
                    .arg(PASSWORD)
                    .arg(ca);
                if c == Contender::BareMaildir {
                    cmd.arg(dirs.maildir());
                }
                measure(&mut cmd, &log, &[0])
            }
            Contender::Popfetch | Contender::PopfetchB => {
                let home = dirs.path().join("home");
                fs::create_dir_all(&home).unwrap();
                let config = dirs.path().join("popfetch.toml");
                write_private(
                    &config,
                    &format!(
                        "state_dir = \"{state}\"\n\n[accounts.bench]\n{protocol}host = \"localhost\"\nport = {port}\n\
                         tls = \"implicit\"\nuser = \"{user}\"\npassword = \"{PASSWORD}\"\nca_file = \"{ca}\"\n\
                         {target}\nkeep = {keep}\ntimeout = 120\n",
                        state = dirs.path().join("state").display(),
                        ca = ca.display(),
                        target = if popfetch_to_mbox() {
                            format!("mbox = \"{}\"", dirs.mbox().display())
                        } else {
                            format!("maildir = \"{}\"", dirs.maildir().display())
                        },
                        keep = s.keep(),
                        protocol = if s.imap() { "protocol = \"imap\"\n" } else { "" },
                    ),
                );
                // BENCH_POPFETCH_PREFIX: e.g. "strace -c -f -o /tmp/st" or
                // "perf record -g -o /tmp/perf.data", for profiling.
                let prefix = env_list_ws("BENCH_POPFETCH_PREFIX");
                let bin = match c {
                    Contender::PopfetchB => {
                        PathBuf::from(std::env::var_os("BENCH_POPFETCH_B").unwrap())
                    }
                    _ => PathBuf::from(env!("CARGO_BIN_EXE_popfetch")),
                };
                let mut cmd = popfetch_sync(&bin, &prefix, &config, &home);
                measure(&mut cmd, &log, &[0])
            }
            Contender::Mpop => {
                let mut cmd = Command::new("mpop");
                cmd.arg("--host=localhost")
                    .arg(format!("--port={port}"))
                    .arg("--tls=on")
                    .arg("--tls-starttls=off")
                    .arg(format!("--tls-trust-file={}", ca.display()))
                    .arg("--auth=on")
                    .arg(format!("--user={user}"))
                    .arg(format!("--passwordeval=echo {PASSWORD}"))
                    .arg(format!("--keep={}", if s.keep() { "on" } else { "off" }))
                    .arg("--only-new=on")
                    .arg("--received-header=off")
                    .arg(format!("--delivery=maildir,{}", dirs.maildir().display()))
                    .arg(format!(
                        "--uidls-file={}",
                        dirs.path().join("mpop_uidls").display()
                    ))
                    .arg("--quiet")
                    .env("HOME", dirs.path());
                measure(&mut cmd, &log, &[0])
            }
            Contender::Fetchmail => {
                let rc = dirs.path().join("fetchmailrc");
                // Over IMAP fetchmail tells old from new by `\Seen`, which it
                // sets on what it fetched, keep or not: `fetchall` makes every
                // run of a fetching scenario fetch the whole mailbox again,
                // while the no-new-mail runs find nothing unseen after the
                // priming fetch.
                let protocol = if s.imap() { "imap" } else { "pop3 uidl" };
                let fetchall = if s.imap() && s != Scenario::ImapNoNew {
                    " fetchall"
                } else {
                    ""
                };
                write_private(
                    &rc,
                    &format!(
                        "set no syslog\n\
                         poll localhost service {port} protocol {protocol}\n  \
                         user \"{user}\" there with password \"{PASSWORD}\" is \"root\" here\n  \
                         ssl sslcertck sslcertfile \"{ca}\"\n  \
                         {keep}{fetchall}\n  \
                         mda \"cat >/dev/null\"\n  \
                         no rewrite\n",
                        ca = ca.display(),
                        keep = if s.keep() { "keep" } else { "nokeep" },
                    ),
                );
                let mut cmd = Command::new("fetchmail");
                cmd.arg("-f")
                    .arg(&rc)
                    .arg("--nosyslog")
                    .arg("--silent")
                    .arg("-i")
                    .arg(dirs.path().join("fetchids"))
                    .arg("--pidfile")
                    .arg(dirs.path().join("fetchmail.pid"))
                    .env("HOME", dirs.path())
                    .env("FETCHMAILHOME", dirs.path());
                // 1: no new mail.
                measure(&mut cmd, &log, &[0, 1])
            }
        }
    }

    fn table(&self, scenarios: &[Scenario]) -> String {
        let mut t = String::new();
        let cpu = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0);
        writeln!(
            t,
            "Machine: {cores} cores, {cpu}. {} timed repetitions per cell, interleaved; \
             implicit TLS to a local Dovecot on 127.0.0.1.\n",
            self.reps
        )
        .ok();
        t.push_str(
            "| scenario | contender | median s | min–max s | × bare | × mpop | client CPU s | server CPU s | machine CPU s | peak RSS MiB |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for s in scenarios {
            let median_of = |c: Contender| {
                self.results
                    .get(&(*s, c))
                    .map(|v| median(v.iter().map(|x| x.secs)))
            };
            let bare = median_of(Contender::Bare);
            let mpop = median_of(Contender::Mpop);
            for c in &self.contenders {
                let Some(samples) = self.results.get(&(*s, *c)) else {
                    continue;
                };
                let m = median(samples.iter().map(|x| x.secs));
                let min = samples.iter().map(|x| x.secs).fold(f64::MAX, f64::min);
                let max = samples.iter().map(|x| x.secs).fold(0.0, f64::max);
                let rss = samples.iter().map(|x| x.max_rss_kib).max().unwrap_or(0);
                let cpu = median(samples.iter().map(|x| x.cpu_secs));
                let server_cpu = median(samples.iter().map(|x| x.server_cpu_secs));
                let machine_cpu = median(samples.iter().map(|x| x.machine_cpu_secs));
                let ratio = |base: Option<f64>| match base {
                    Some(b) if b > 0.0 => format!("{:.2}", m / b),
                    _ => "–".to_string(),
                };
                writeln!(
                    t,
                    "| {} | {} | {m:.3} | {min:.3}–{max:.3} | {} | {} | {cpu:.2} | {server_cpu:.2} | {machine_cpu:.2} | {:.1} |",
                    s.title(),
                    c.name(),
                    ratio(bare),
                    ratio(mpop),
                    rss as f64 / 1024.0
                )
                .ok();
            }
        }
        let targets = self.imap_targets(scenarios);
        if !self.notes.is_empty() || !targets.is_empty() {
            t.push('\n');
            for n in self.notes.iter().chain(&targets) {
                writeln!(t, "- {n}").ok();
            }
        }
        t.push_str(
            "- bare: minimal pipelining client (rustls, bytes discarded, no decoding); \
             popfetch and mpop: Maildir; fetchmail: MDA `cat >/dev/null`.\n",
        );
        if self.contenders.contains(&Contender::BareMaildir) {
            t.push_str(
                "- bare-maildir: the bare IMAP client writing each literal as it came (CRLF, \
                 no decoding) to a file in `tmp/`, then one `syncfs`, a rename of each into \
                 `new/` and an fsync of `new/`: durable Maildir delivery with nothing else.\n",
            );
        }
        if scenarios.iter().any(|s| s.imap()) {
            t.push_str(
                "- IMAP bare: LOGIN, SELECT, `UID FETCH 1:* BODY.PEEK[]` (literals skipped \
                 unread), LOGOUT; for no new mail LOGIN, `STATUS INBOX (MESSAGES UIDNEXT \
                 UIDVALIDITY)`, LOGOUT. fetchmail over IMAP with `fetchall` where every run \
                 fetches (it marks what it fetched `\\Seen`); mpop speaks only POP3.\n",
            );
        }
        t
    }
}

use std::fmt::Write as _;

impl Bench {
    /// The IMAP targets of issue 15, each with the measured figure:
    /// first fetch at most 1.3× the bare client and at least 5× faster
    /// than fetchmail, no new mail within 1.5× a bare login + STATUS +
    /// logout, peak RSS under 16 MiB for the 50 MB message.
    fn imap_targets(&self, scenarios: &[Scenario]) -> Vec<String> {
        let median_of = |s: Scenario, c: Contender| {
            self.results
                .get(&(s, c))
                .map(|v| median(v.iter().map(|x| x.secs)))
        };
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        let mut out = Vec::new();
        for &s in scenarios.iter().filter(|s| s.imap()) {
            let Some(pf) = median_of(s, Contender::Popfetch) else {
                continue;
            };
            let bare = median_of(s, Contender::Bare);
            match s {
                Scenario::ImapFirst => {
                    if let Some(b) = bare {
                        let r = pf / b;
                        out.push(format!(
                            "target, {}: popfetch ≤ 1.3× bare: {r:.2}× ({})",
                            s.name(),
                            verdict(r <= 1.3)
                        ));
                    }
                    if let Some(f) = median_of(s, Contender::Fetchmail) {
                        let r = f / pf;
                        out.push(format!(
                            "target, {}: popfetch ≥ 5× faster than fetchmail: {r:.1}× ({})",
                            s.name(),
                            verdict(r >= 5.0)
                        ));
                    }
                }
                Scenario::ImapNoNew => {
                    if let Some(b) = bare {
                        let r = pf / b;
                        out.push(format!(
                            "target, {}: popfetch ≤ 1.5× bare login + STATUS + logout: {r:.2}× ({})",
                            s.name(),
                            verdict(r <= 1.5)
                        ));
                    }
                }
                _ => {
                    let rss = self.results[&(s, Contender::Popfetch)]
                        .iter()
                        .map(|x| x.max_rss_kib)
                        .max()
                        .unwrap_or(0) as f64
                        / 1024.0;
                    out.push(format!(
                        "target, {}: popfetch peak RSS < 16 MiB: {rss:.1} MiB ({})",
                        s.name(),
                        verdict(rss < 16.0)
                    ));
                }
            }
        }
        out
    }
}

/// CPU seconds (user + system) used so far by the process `root` and all
/// its descendants, living or reaped: each process's own time plus the
/// time of the children it has reaped, summed over the live tree, counts
/// every process once.
fn tree_cpu_secs(root: u32) -> f64 {
    let mut parent_of = BTreeMap::new();
    let mut ticks_of = BTreeMap::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the parenthesised command name, which may hold spaces.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        // rest[0] is field 3 (state): ppid = field 4, utime..cstime = 14..17.
        let num = |i: usize| {
            f.get(i - 3)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        parent_of.insert(pid, num(4) as u32);
        ticks_of.insert(pid, num(14) + num(15) + num(16) + num(17));
    }
    let in_tree = |mut pid: u32| loop {
        if pid == root {
            return true;
        }
        match parent_of.get(&pid) {
            Some(&p) if p != 0 && p != pid => pid = p,
            _ => return false,
        }
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let ticks: u64 = ticks_of
        .iter()
        .filter(|(pid, _)| in_tree(**pid))
        .map(|(_, t)| t)
        .sum();
    ticks as f64 / hz
}

/// CPU seconds the machine has been busy (every state but idle and
/// waiting for I/O, summed over all cores) since boot, from /proc/stat.
fn machine_busy_secs() -> f64 {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is
    // already counted in user).
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    busy as f64 / hz
}

/// Dovecot's CPU seconds since `before`, once the session's processes
/// have ended and been reaped (their time then shows in the master's).
fn server_cpu_since(root: u32, before: f64) -> f64 {
    let mut last = tree_cpu_secs(root);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(25));
        let now = tree_cpu_secs(root);
        if now == last {
            break;
        }
        last = now;
    }
    last - before
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

// ---------------------------------------------------------------------------
// The bare client

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

struct Wire {
    s: Tls,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    bytes: u64,
    /// Where IMAP literals go instead of being skipped (`imap-maildir`).
    spool: Option<Spool>,
}

/// The least a durable Maildir writer does: each message into a file of
/// its own in `tmp/` as it arrives, then one `syncfs` for them all, a
/// rename of each into `new/` and an fsync of `new/`.
struct Spool {
    tmp: PathBuf,
    new: PathBuf,
    names: Vec<String>,
}

impl Spool {
    fn new(maildir: &Path) -> Spool {
        Spool {
            tmp: maildir.join("tmp"),
            new: maildir.join("new"),
            names: Vec::new(),
        }
    }

    fn create(&mut self) -> fs::File {
        let name = format!("{}.bare", self.names.len());
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.tmp.join(&name))
            .unwrap();
        self.names.push(name);
        file
    }

    fn publish(self) {
        let tmp = fs::File::open(&self.tmp).unwrap();
        // SAFETY: syncfs takes a valid descriptor, ours until `tmp` drops.
        assert_eq!(
            unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&tmp)) },
            0
        );
        for name in &self.names {
            fs::rename(self.tmp.join(name), self.new.join(name)).unwrap();
        }
        fs::File::open(&self.new).unwrap().sync_all().unwrap();
    }
}

impl Wire {
    fn connect(port: u16, ca: &Path) -> Wire {
        let config = support::certs::client_config_for_ca_file(ca);
        let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        tcp.set_nodelay(true).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(config, name).unwrap();
        Wire {
            s: rustls::StreamOwned::new(conn, tcp),
            buf: vec![0; 256 * 1024],
            start: 0,
            end: 0,
            bytes: 0,
            spool: None,
        }
    }

    fn send(&mut self, data: &[u8]) {
        self.s.write_all(data).unwrap();
        self.s.flush().unwrap();
    }

    fn fill(&mut self) {
        if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.s.read(&mut self.buf[self.end..]).unwrap();
        assert!(n > 0, "server closed the connection");
        self.end += n;
        self.bytes += n as u64;
    }

    /// One status line, which must be `+OK`.
    fn ok_line(&mut self) -> String {
        loop {
            if let Some(k) = memchr::memmem::find(&self.buf[self.start..self.end], b"\r\n") {
                let line =
                    String::from_utf8_lossy(&self.buf[self.start..self.start + k]).into_owned();
                self.start += k + 2;
                assert!(line.starts_with("+OK"), "server said {line:?}");
                return line;
            }
            self.fill();
        }
    }

    /// Consumes input up to and including the `n`-th occurrence of `needle`
    /// (counted from the current position). `on_found` is told of each one.
    fn skip(&mut self, needle: &[u8], n: usize, mut on_found: impl FnMut(&mut Tls, usize)) {
        let finder = memchr::memmem::Finder::new(needle);
        let mut found = 0;
        while found < n {
            let hay = &self.buf[self.start..self.end];
            match finder.find(hay) {
                Some(k) => {
                    self.start += k + needle.len();
                    found += 1;
                    on_found(&mut self.s, found);
                }
                None => {
                    // Keep a possible partial match.
                    let keep = (needle.len() - 1).min(hay.len());
                    self.start = self.end - keep;
                    if self.end == self.buf.len() || self.start > self.buf.len() / 2 {
                        self.buf.copy_within(self.start..self.end, 0);
                        self.end -= self.start;
                        self.start = 0;
                    }
                    self.fill();
                }
            }
        }
    }

    /// Sends `verb 1` … `verb count` pipelined with at most `BARE_WINDOW`
    /// outstanding, and reads the replies (`needle` ends each one).
    fn pipeline(&mut self, verb: &str, count: usize, needle: &[u8]) {
        let mut sent = 0;
        let mut cmds = String::new();
        let batch = |cmds: &mut String, from: usize, to: usize| {
            cmds.clear();
            for i in from..to {
                write!(cmds, "{verb} {}\r\n", i + 1).unwrap();
            }
        };
        let first = count.min(BARE_WINDOW);
        batch(&mut cmds, 0, first);
        self.send(cmds.as_bytes());
        sent += first;
        // Top up the window every 64 replies.
        let mut pending = String::new();
        self.skip(needle, count, |s, done| {
            if done % 64 == 0 && sent < count {
                let to = (done + BARE_WINDOW).min(count);
                if to > sent {
                    batch(&mut pending, sent, to);
                    s.write_all(pending.as_bytes()).unwrap();
                    s.flush().unwrap();
                    sent = to;
                }
            }
        });
    }
}

/// `__bare MODE PORT USER PASSWORD CA [MAILDIR]`; MODE: fetch, delete or
/// uidl (POP3), imap-fetch, imap-maildir (with MAILDIR) or imap-status
/// (IMAP).
fn bare_main(args: &[String]) {
    let (mode, port, user, password, ca, maildir) = match args {
        [mode, port, user, password, ca] => (mode, port, user, password, ca, None),
        [mode, port, user, password, ca, maildir] => {
            (mode, port, user, password, ca, Some(PathBuf::from(maildir)))
        }
        _ => panic!(
            "usage: __bare fetch|delete|uidl|imap-fetch|imap-maildir|imap-status PORT USER PASSWORD CA [MAILDIR]"
        ),
    };
    let port: u16 = port.parse().unwrap();
    let mut w = Wire::connect(port, Path::new(ca));
    if mode == "imap-maildir" {
        w.spool = Some(Spool::new(&maildir.expect("imap-maildir needs a MAILDIR")));
        bare_imap(&mut w, "fetch", user, password);
        w.spool.take().unwrap().publish();
        return;
    }
    if let Some(imap_mode) = mode.strip_prefix("imap-") {
        bare_imap(&mut w, imap_mode, user, password);
        return;
    }
    w.ok_line();
    w.send(format!("USER {user}\r\nPASS {password}\r\n").as_bytes());
    w.ok_line();
    w.ok_line();
    w.send(b"STAT\r\nUIDL\r\n");
    let stat = w.ok_line();
    let count: usize = stat.split_whitespace().nth(1).unwrap().parse().unwrap();
    w.skip(b"\r\n.\r\n", 1, |_, _| {});
    if mode != "uidl" && count > 0 {
        // A reply's status line and body end with "\r\n.\r\n" (a body line
        // "." is stuffed as ".."), so counting them counts replies.
        w.pipeline("RETR", count, b"\r\n.\r\n");
        if mode == "delete" {
            w.pipeline("DELE", count, b"\r\n");
        }
    }
    w.send(b"QUIT\r\n");
    w.ok_line();
    eprintln!("bare {mode}: {count} messages, {} bytes", w.bytes);
}

/// The bare IMAP client: LOGIN, then SELECT + `UID FETCH 1:* BODY.PEEK[]`
/// (`fetch`) or one STATUS (`status`), then LOGOUT. Literals are skipped
/// by their length, unread; nothing is parsed but what finds the tagged
/// end of each command.
fn bare_imap(w: &mut Wire, mode: &str, user: &str, password: &str) {
    let greeting = w.line();
    assert!(greeting.starts_with(b"* OK"), "greeting {greeting:?}");
    let quoted = |s: &str| {
        assert!(!s.contains(['"', '\\', '\r', '\n']), "unquotable {s:?}");
        format!("\"{s}\"")
    };
    w.imap_command(
        "a1",
        &format!("LOGIN {} {}", quoted(user), quoted(password)),
    );
    let count = match mode {
        "fetch" => {
            w.imap_command("a2", "SELECT INBOX");
            w.imap_command("a3", "UID FETCH 1:* BODY.PEEK[]")
        }
        "status" => {
            w.imap_command("a2", "STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY)");
            0
        }
        _ => panic!("bare IMAP mode {mode:?}: fetch or status"),
    };
    w.imap_command("a9", "LOGOUT");
    eprintln!("bare imap-{mode}: {count} literals, {} bytes", w.bytes);
}

impl Wire {
    /// One line without its CRLF.
    fn line(&mut self) -> Vec<u8> {
        loop {
            if let Some(k) = memchr::memmem::find(&self.buf[self.start..self.end], b"\r\n") {
                let line = self.buf[self.start..self.start + k].to_vec();
                self.start += k + 2;
                return line;
            }
            if self.start > 0 && self.end == self.buf.len() {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            self.fill();
        }
    }

    /// Consumes `n` bytes into a new file of the spool.
    fn spool_literal(&mut self, mut n: u64) {
        let mut file = self.spool.as_mut().unwrap().create();
        loop {
            let have = ((self.end - self.start) as u64).min(n) as usize;
            file.write_all(&self.buf[self.start..self.start + have])
                .unwrap();
            self.start += have;
            n -= have as u64;
            if n == 0 {
                return;
            }
            self.start = 0;
            self.end = 0;
            self.fill();
        }
    }

    /// Consumes `n` bytes unread.
    fn discard(&mut self, mut n: u64) {
        loop {
            let have = (self.end - self.start) as u64;
            if have >= n {
                self.start += n as usize;
                return;
            }
            n -= have;
            self.start = 0;
            self.end = 0;
            self.fill();
        }
    }

    /// Sends `tag command` and reads to its tagged reply, which must be
    /// OK; returns how many literals came in between.
    fn imap_command(&mut self, tag: &str, command: &str) -> usize {
        self.send(format!("{tag} {command}\r\n").as_bytes());
        let mut literals = 0;
        loop {
            let line = self.line();
            // A literal ends its line: `{n}`; the response goes on after it.
            if let Some(n) = line
                .strip_suffix(b"}")
                .and_then(|l| l.iter().rposition(|&b| b == b'{').map(|i| &l[i + 1..]))
                .and_then(|d| std::str::from_utf8(d).ok()?.parse::<u64>().ok())
            {
                if self.spool.is_some() {
                    self.spool_literal(n);
                } else {
                    self.discard(n);
                }
                literals += 1;
                continue;
            }
            if let Some(rest) = line.strip_prefix(tag.as_bytes()) {
                assert!(
                    rest.starts_with(b" OK"),
                    "{command}: server said {:?}",
                    String::from_utf8_lossy(&line)
                );
                return literals;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Delivery targets (issue 16): the `first` fetch (5,000 mixed messages from
// the same POP3 server, keep mode) into a Maildir directly, into another
// Dovecot's IMAP by APPEND, and into its LMTP. Only popfetch runs these;
// the three are interleaved rep by rep.
//
// The target Dovecot is a second instance with Dovecot's default
// `mail_fsync = optimized` (the harness's `never` would compare a durable
// Maildir with a target that never flushes); `BENCH_TARGET_FSYNC=never`
// takes the target's disk out, leaving the protocols' own cost. Each run delivers to a user
// of its own, so nothing is deleted on that file system while the bench
// runs; the Maildir runs get fresh dirs under `target/bench-tmp`, removed
// at the end like every other run's.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Dest {
    Maildir,
    Imap,
    Lmtp,
}

impl Dest {
    const ALL: [Dest; 3] = [Dest::Maildir, Dest::Imap, Dest::Lmtp];

    fn name(self) -> &'static str {
        match self {
            Dest::Maildir => "to-maildir",
            Dest::Imap => "to-imap",
            Dest::Lmtp => "to-lmtp",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Dest::Maildir => "5,000 msgs POP3 → Maildir (direct)",
            Dest::Imap => "5,000 msgs POP3 → Dovecot IMAP (APPEND)",
            Dest::Lmtp => "5,000 msgs POP3 → Dovecot LMTP (unix socket)",
        }
    }

    /// The ones `BENCH_SCENARIOS` asks for.
    fn wanted() -> Vec<Dest> {
        let wanted = env_list("BENCH_SCENARIOS", DEFAULT_SCENARIOS);
        Dest::ALL
            .into_iter()
            .filter(|t| wanted.iter().any(|w| w == t.name()))
            .collect()
    }
}

struct TargetBench {
    /// The target server (the source is the bench's own Dovecot).
    dc: Dovecot,
    /// The target Dovecot's `mail_fsync`.
    fsync: String,
    results: BTreeMap<Dest, Vec<Sample>>,
}

impl Bench {
    /// Runs the `to-*` scenarios; returns their table (empty when none).
    fn targets(&mut self, wanted: &[Dest]) -> String {
        if wanted.is_empty() {
            return String::new();
        }
        if (wanted.contains(&Dest::Imap) && !dovecot_imap_available())
            || (wanted.contains(&Dest::Lmtp) && !support::dovecot::dovecot_lmtp_available())
        {
            return "\nDelivery targets: skipped, Dovecot's IMAP or LMTP service is not installed.\n"
                .to_string();
        }
        let users: Vec<String> = (0..=self.reps)
            .flat_map(|r| [format!("imap{r}"), format!("lmtp{r}")])
            .collect();
        let pairs: Vec<(&str, &str)> = users.iter().map(|u| (u.as_str(), PASSWORD)).collect();
        eprintln!("bench: delivery targets: starting the target Dovecot");
        let fsync = std::env::var("BENCH_TARGET_FSYNC").unwrap_or_else(|_| "optimized".into());
        let mut tb = TargetBench {
            dc: Dovecot::start_with(&pairs, &format!("mail_fsync = {fsync}\n")),
            fsync,
            results: BTreeMap::new(),
        };
        // Rep 0 is the untimed warm-up of each.
        for rep in 0..=self.reps {
            for &t in wanted {
                let dirs = LocalDirs::new(t.name());
                // SAFETY: sync has no preconditions.
                unsafe { libc::sync() };
                let server_before = tree_cpu_secs(self.dc.pid()) + tree_cpu_secs(tb.dc.pid());
                let machine_before = machine_busy_secs();
                let mut sample = self.run_into(&tb, t, rep, &dirs);
                sample.machine_cpu_secs = machine_busy_secs() - machine_before;
                sample.server_cpu_secs = server_cpu_since(self.dc.pid(), 0.0)
                    + server_cpu_since(tb.dc.pid(), 0.0)
                    - server_before;
                let got = match t {
                    Dest::Maildir => maildir_count(&dirs.maildir()),
                    Dest::Imap => tb.dc.message_count(&format!("imap{rep}")),
                    Dest::Lmtp => tb.dc.message_count(&format!("lmtp{rep}")),
                };
                assert_eq!(got, MIXED_COUNT, "{}: delivered {got}", t.name());
                eprintln!(
                    "bench:   {} {:<10} {:>8.3} s  {:>7.1} MiB  cpu {:.3} s  server cpu {:.3} s  machine cpu {:.2} s",
                    if rep == 0 { "warm ".to_string() } else { format!("rep {rep}") },
                    t.name(),
                    sample.secs,
                    sample.max_rss_kib as f64 / 1024.0,
                    sample.cpu_secs,
                    sample.server_cpu_secs,
                    sample.machine_cpu_secs
                );
                if rep > 0 {
                    tb.results.entry(t).or_default().push(sample);
                }
                self.finished.push(dirs);
            }
        }
        target_table(&tb, wanted)
    }

    /// One popfetch run from the mixed POP3 mailbox into `t` (user
    /// `imap{rep}` / `lmtp{rep}` of the target Dovecot).
    fn run_into(&self, tb: &TargetBench, t: Dest, rep: usize, dirs: &LocalDirs) -> Sample {
        let home = dirs.path().join("home");
        fs::create_dir_all(&home).unwrap();
        let target = match t {
            Dest::Maildir => format!("maildir = \"{}\"\n", dirs.maildir().display()),
            Dest::Imap => "imap_target = \"home\"\n".to_string(),
            Dest::Lmtp => format!(
                "lmtp = \"unix:{}\"\ndeliver_to = \"lmtp{rep}\"\n",
                tb.dc.lmtp_socket().display()
            ),
        };
        let mut text = format!(
            "state_dir = \"{state}\"\n\n[accounts.bench]\nhost = \"localhost\"\nport = {port}\n\
             tls = \"implicit\"\nuser = \"{USER_MIXED}\"\npassword = \"{PASSWORD}\"\nca_file = \"{ca}\"\n\
             {target}keep = true\ntimeout = 120\n",
            state = dirs.path().join("state").display(),
            port = self.dc.pop3s_port(),
            ca = self.dc.pki().ca_path.display(),
        );
        if t == Dest::Imap {
            text.push_str(&format!(
                "\n[targets.home]\nurl = \"imaps://localhost:{}/INBOX\"\nuser = \"imap{rep}\"\n\
                 password = \"{PASSWORD}\"\nca_file = \"{}\"\ntimeout = 120\n",
                tb.dc.imaps_port(),
                tb.dc.pki().ca_path.display()
            ));
        }
        let config = dirs.path().join("popfetch.toml");
        write_private(&config, &text);
        let bin = Path::new(env!("CARGO_BIN_EXE_popfetch"));
        let mut cmd = popfetch_sync(bin, &[], &config, &home);
        measure(&mut cmd, &dirs.path().join("popfetch.log"), &[0])
    }
}

/// `BIN -c CONFIG sync` with HOME and the XDG dirs in `home` and nothing
/// else from the environment but PATH, behind `prefix` (a profiler) when
/// one is given.
fn popfetch_sync(bin: &Path, prefix: &[String], config: &Path, home: &Path) -> Command {
    let mut cmd = match prefix.split_first() {
        Some((p, rest)) => {
            let mut c = Command::new(p);
            c.args(rest).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.arg("-c")
        .arg(config)
        .arg("sync")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_STATE_HOME", home.join(".local/state"))
        .env("LANG", "C.UTF-8");
    cmd
}

fn target_table(tb: &TargetBench, wanted: &[Dest]) -> String {
    let mut t = String::from(
        "\nDelivery targets (popfetch only; source: the `first` mailbox over POP3S):\n\n\
         | scenario | median s | min–max s | × to-maildir | client CPU s | server CPU s | machine CPU s | peak RSS MiB |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let base = tb
        .results
        .get(&Dest::Maildir)
        .map(|v| median(v.iter().map(|x| x.secs)));
    for &s in wanted {
        let Some(samples) = tb.results.get(&s) else {
            continue;
        };
        let m = median(samples.iter().map(|x| x.secs));
        let min = samples.iter().map(|x| x.secs).fold(f64::MAX, f64::min);
        let max = samples.iter().map(|x| x.secs).fold(0.0, f64::max);
        let ratio = match base {
            Some(b) if b > 0.0 => format!("{:.2}", m / b),
            _ => "–".to_string(),
        };
        writeln!(
            t,
            "| {} | {m:.3} | {min:.3}–{max:.3} | {ratio} | {:.2} | {:.2} | {:.2} | {:.1} |",
            s.title(),
            median(samples.iter().map(|x| x.cpu_secs)),
            median(samples.iter().map(|x| x.server_cpu_secs)),
            median(samples.iter().map(|x| x.machine_cpu_secs)),
            samples.iter().map(|x| x.max_rss_kib).max().unwrap_or(0) as f64 / 1024.0
        )
        .ok();
    }
    t.push_str(
        "\n- Maildir: popfetch's own durable delivery (fsync per batch); IMAP: APPEND to a \
         second Dovecot over IMAPS, journaled before sending; LMTP: Dovecot's delivery over \
         its unix socket, one transaction and one seen record per message.\n",
    );
    writeln!(
        t,
        "- The target Dovecot runs with `mail_fsync = {}` (`BENCH_TARGET_FSYNC`; Dovecot's \
         default is `optimized`, which fsyncs every message it stores).",
        tb.fsync
    )
    .ok();
    t
}
