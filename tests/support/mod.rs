//! Shared test machinery: hermetic environments, the scripted POP3 server,
//! test certificates and the real Dovecot harness.
#![allow(dead_code)]

pub mod certs;
pub mod dovecot;
pub mod imapserver;
pub mod oauthserver;
pub mod pop2server;
pub mod server;
pub mod smtpserver;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A hermetic place to run popfetch: its own HOME and XDG dirs in a temp
/// dir, no inherited POPFETCH_* variables, so a test never reads the
/// developer's own setup.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::Builder::new()
                .prefix("popfetch-test-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn config_path(&self) -> PathBuf {
        self.home().join(".config/popfetch/config.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.home().join(".local/state/popfetch")
    }

    /// Writes the config (mode 0600) at the default location.
    pub fn write_config(&self, text: &str) -> PathBuf {
        let path = self.config_path();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// A command running the real binary in this environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_popfetch"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("XDG_CONFIG_HOME", self.home().join(".config"))
            .env("XDG_STATE_HOME", self.home().join(".local/state"))
            .env("XDG_DATA_HOME", self.home().join(".local/share"))
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null());
        fs::create_dir_all(self.home()).unwrap();
        cmd
    }

    /// Runs `sync -q` and kills it (SIGKILL) after `after`, unless it
    /// ended first: `Ok` when it was killed, else how long it ran (the kill
    /// trials time their kills by it).
    pub fn sync_killed_after(&self, after: Duration) -> Result<(), Duration> {
        let mut child = self
            .command(&["sync", "-q"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while started.elapsed() < after {
            if child.try_wait().unwrap().is_some() {
                return Err(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = child.kill();
        child.wait().unwrap();
        Ok(())
    }

    /// The keys of the seen records in this environment's database, none
    /// when it does not exist yet (a run killed before it made one).
    pub fn seen_uidls(&self) -> std::collections::HashSet<String> {
        let path = self.state_dir().join("seen.sqlite3");
        if !path.exists() {
            return Default::default();
        }
        let conn = rusqlite::Connection::open(&path).unwrap();
        let Ok(mut stmt) = conn.prepare("SELECT uidl FROM seen") else {
            return Default::default();
        };
        let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let out = self.command(args).output().expect("run popfetch");
        Run::from(out)
    }

    pub fn maildir(&self, name: &str) -> PathBuf {
        self.home().join("Mail").join(name)
    }
}

/// The result of one popfetch run, with readable failure output.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit code {} (wanted {code})\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l:?}: {e}")))
            .collect()
    }
}

/// Every message file in a Maildir (new/ and cur/), contents sorted.
pub fn maildir_messages(root: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = fs::read_dir(root.join(sub)) else {
            continue;
        };
        for e in entries {
            out.push(fs::read(e.unwrap().path()).unwrap());
        }
    }
    out.sort();
    out
}

pub fn files_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// What SPEC §3 says lands on disk for a message the server holds:
/// CRLF → LF, and a final LF if missing.
pub fn expected_delivery(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1);
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'\r' && data.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(data[i]);
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out
}

/// A deterministic mix of messages: dot lines, From lines, 8-bit bytes,
/// one without a trailing newline, sizes from tiny to `big` bytes.
pub fn mixed_messages(n: usize, big: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut m = format!(
            "Return-Path: <sender{i}@example.org>\nFrom: Sender {i} <sender{i}@example.org>\nTo: alice@example.com\nSubject: message {i}\nMessage-ID: <{i}@test>\n\n"
        )
        .into_bytes();
        match i % 7 {
            0 => {
                m.extend_from_slice(b".leading dot\n..two dots\n.\nFrom the start\n>From quoted\n")
            }
            1 => m.extend_from_slice("8-bit: caf\u{e9} \u{fc}ber \u{2603}\n".as_bytes()),
            2 => m.extend_from_slice(b"no trailing newline"),
            3 => {
                let line =
                    b"0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ\n";
                let mut size = 0;
                let target = if i % 3 == 0 { big } else { 20_000 };
                while size < target {
                    m.extend_from_slice(line);
                    size += line.len();
                }
            }
            4 => m.extend_from_slice(b"binary-ish \x01\x02\x7f\xff bytes\n"),
            5 => m.extend_from_slice(b"line\r\nwith\r\ncrlf\r\n"),
            _ => m.extend_from_slice(format!("plain body {i}\n").as_bytes()),
        }
        out.push(m);
    }
    out
}

/// Says loudly that a test cannot run here, and why; under
/// `POPFETCH_REQUIRE_DOVECOT=1` (set by `.ci/run`, which installs every tool
/// the tests use) that is a failure instead, so CI never skips silently.
pub fn skip(what: &str) {
    if std::env::var(dovecot::REQUIRE_ENV).as_deref() == Ok("1") {
        panic!(
            "{}=1 but this test cannot run: {what}",
            dovecot::REQUIRE_ENV
        );
    }
    eprintln!("\n**********************************************************************");
    eprintln!("SKIPPED: {what}");
    eprintln!("**********************************************************************");
}

/// The path of an installed reference tool (`mpop`, `fetchmail`), or
/// `None` after [`skip`].
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        skip(&format!("{name} not installed (see .ci/run)"));
    }
    found
}

/// A small seeded PRNG (xorshift64*): reproducible trials, no new crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Never zero; spread nearby seeds apart.
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[lo, hi)` (hi > lo).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}
