//! `imap_target`: messages fetched by POP3 appended to another user's
//! mailbox on a real Dovecot over IMAPS, byte-exact, unread, with internal
//! dates from `Date:`, exactly once (a second run, two accounts feeding
//! one target, a journal entry left by a crash, kill -9 at random
//! instants).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use crate::support::dovecot::{require_dovecot_imap, Dovecot};
use crate::support::{expected_delivery, mixed_messages, Env};

/// `user`'s POP3 account on `dc` (implicit TLS), appending to the target.
fn pop_account(dc: &Dovecot, name: &str, user: &str) -> String {
    format!(
        "[accounts.{name}]\nhost = \"localhost\"\nport = {}\nuser = \"{user}\"\npassword = \"pw-{user}\"\nca_file = \"{}\"\ntimeout = 20\nimap_target = \"home\"\n",
        dc.pop3s_port(),
        dc.pki().ca_path.display()
    )
}

/// The target: bob's INBOX over IMAPS.
fn target_table(dc: &Dovecot) -> String {
    format!(
        "[targets.home]\nurl = \"imaps://localhost:{}/INBOX\"\nuser = \"bob\"\npassword = \"pw-bob\"\nca_file = \"{}\"\ntimeout = 20\n",
        dc.imaps_port(),
        dc.pki().ca_path.display()
    )
}

/// `mixed_messages` with a `Date:` each, a minute apart from 2026-01-01.
fn dated_messages(n: usize, big: usize, first: u64) -> Vec<(Vec<u8>, i64)> {
    mixed_messages(n, big)
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let secs = 1_767_225_600 + 60 * (first + i as u64) as i64;
            let minute = (first as usize + i) % 60;
            let hour = (first as usize + i) / 60;
            let mut dated =
                format!("Date: Thu, 1 Jan 2026 {hour:02}:{minute:02}:00 +0000\n").into_bytes();
            dated.extend_from_slice(&m);
            // Message-IDs unique across the sets of one test.
            let dated = String::from_utf8_lossy(&dated)
                .replace("@test>", &format!(".{first}@test>"))
                .into_bytes();
            (dated, secs)
        })
        .collect()
}

/// What is in a user's Maildir: (content with LF line ends, flags, mtime).
/// Dovecot may be moving files from new/ to cur/ (it goes on with a
/// killed client's pipelined APPENDs for a moment): a file is counted once
/// by its base name, and a listing that lost a file on the way is read
/// again.
fn mailbox(dir: &Path) -> Vec<(Vec<u8>, String, i64)> {
    'again: for _ in 0..250 {
        let mut by_base = std::collections::BTreeMap::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let (Ok(data), Ok(meta)) = (std::fs::read(e.path()), e.metadata()) else {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    continue 'again;
                };
                let base = name.split(':').next().unwrap_or(&name).to_string();
                let flags = name.split_once(":2,").map(|(_, f)| f.to_string());
                by_base.insert(
                    base,
                    (
                        expected_delivery(&data),
                        flags.unwrap_or_default(),
                        meta.mtime(),
                    ),
                );
            }
        }
        let mut out: Vec<_> = by_base.into_values().collect();
        out.sort();
        return out;
    }
    panic!("{}: files kept vanishing while being read", dir.display());
}

fn contents(dir: &Path) -> Vec<Vec<u8>> {
    mailbox(dir).into_iter().map(|(d, _, _)| d).collect()
}

fn expected<M: AsRef<[u8]>>(datas: &[M]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = datas
        .iter()
        .map(|d| expected_delivery(d.as_ref()))
        .collect();
    v.sort();
    v
}

#[test]
fn pop3_into_another_users_imap_inbox_byte_exact_unread_dated_once() {
    if !require_dovecot_imap() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice"), ("bob", "pw-bob")]);
    let dated = dated_messages(200, 300 * 1024, 0);
    let datas: Vec<&[u8]> = dated.iter().map(|(d, _)| d.as_slice()).collect();
    dc.add_messages("alice", &datas);
    let env = Env::new();
    env.write_config(&format!(
        "{}{}",
        pop_account(&dc, "isp", "alice"),
        target_table(&dc)
    ));

    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 200);
    let inbox = mailbox(&dc.maildir("bob"));
    assert_eq!(contents(&dc.maildir("bob")), expected(&datas));
    for (data, flags, mtime) in &inbox {
        assert!(!flags.contains('S'), "appended unread, got flags {flags:?}");
        // Dovecot keeps the internal date as the file's mtime.
        let want = dated
            .iter()
            .find(|(d, _)| expected_delivery(d) == *data)
            .map(|(_, secs)| *secs)
            .unwrap();
        assert_eq!(*mtime, want, "internal date from Date:");
    }

    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 0);
    assert_eq!(dc.message_count("bob"), 200, "nothing appended twice");
}

#[test]
fn two_accounts_feed_one_target() {
    if !require_dovecot_imap() {
        return;
    }
    let dc = Dovecot::start(&[
        ("alice", "pw-alice"),
        ("carol", "pw-carol"),
        ("bob", "pw-bob"),
    ]);
    let a: Vec<Vec<u8>> = dated_messages(30, 50_000, 0)
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    let c: Vec<Vec<u8>> = dated_messages(20, 50_000, 100)
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    dc.add_messages("alice", &a);
    dc.add_messages("carol", &c);
    let env = Env::new();
    env.write_config(&format!(
        "{}{}{}",
        pop_account(&dc, "a", "alice"),
        pop_account(&dc, "c", "carol"),
        target_table(&dc)
    ));
    env.run(&["sync"]).expect_code(0);
    let mut all = a.clone();
    all.extend(c.iter().cloned());
    assert_eq!(contents(&dc.maildir("bob")), expected(&all));
    env.run(&["sync"]).expect_code(0);
    assert_eq!(dc.message_count("bob"), 50);
}

/// Leaves, as a crash between APPEND and seen record would, the journal
/// entry of the one message alice has, its seen record gone; with `uid`,
/// the entry as rewritten once the server's APPENDUID came.
fn leave_journal_entry(env: &Env, data: &[u8]) {
    leave_journal_entry_with(env, data, None)
}

fn leave_journal_entry_with(env: &Env, data: &[u8], uid: Option<u32>) {
    let db = rusqlite::Connection::open(env.state_dir().join("seen.sqlite3")).unwrap();
    let (mailbox, uidl): (i64, String) = db
        .query_row(
            "SELECT s.mailbox, s.uidl FROM seen s JOIN mailbox m ON m.id = s.mailbox WHERE m.identity = 'alice@localhost'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    db.execute("DELETE FROM seen WHERE mailbox = ?1", [mailbox])
        .unwrap();
    let lf = expected_delivery(data);
    let crlf_size = lf.len() + lf.iter().filter(|&&b| b == b'\n').count();
    let text = String::from_utf8_lossy(data);
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .unwrap();
    let mut fields = serde_json::json!({
        "target": "home", "folder": "INBOX", "uidvalidity": 1, "uidl": uidl,
        "message_id": id, "date": null, "size": crlf_size, "digest": "0",
    });
    if let Some(uid) = uid {
        fields["uid"] = uid.into();
    }
    let name = format!("imap:{fields}");
    db.execute(
        "INSERT INTO pending (mailbox, uidl, folder, name, created) VALUES (?1, ?2, 'INBOX', ?3, 0)",
        rusqlite::params![mailbox, uidl, name],
    )
    .unwrap();
}

#[test]
fn a_journal_entry_left_by_a_crash_is_resolved_by_looking_in_the_folder() {
    if !require_dovecot_imap() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice"), ("bob", "pw-bob")]);
    let data = dated_messages(1, 1000, 0).remove(0).0;
    dc.add_message("alice", &data);
    let env = Env::new();
    env.write_config(&format!(
        "{}{}",
        pop_account(&dc, "isp", "alice"),
        target_table(&dc)
    ));
    env.run(&["sync"]).expect_code(0);
    assert_eq!(dc.message_count("bob"), 1);

    // The append reached the folder: found there, recorded, not sent again.
    leave_journal_entry(&env, &data);
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 0, "{}", run.stderr);
    assert_eq!(dc.message_count("bob"), 1, "no duplicate");

    // The append never arrived: the message is fetched and appended again.
    leave_journal_entry(&env, &data);
    for sub in ["new", "cur"] {
        for e in std::fs::read_dir(dc.maildir("bob").join(sub)).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
    }
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 1);
    assert_eq!(contents(&dc.maildir("bob")), expected(&[&data]));
}

/// An entry the APPEND's OK had given a UID (APPENDUID) is resolved by
/// that answer, without a search: the message was appended, even if it is
/// gone from the folder since (the reader deleted it), and is not sent
/// again.
#[test]
fn a_journal_entry_with_the_appenduid_is_resolved_without_a_search() {
    if !require_dovecot_imap() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice"), ("bob", "pw-bob")]);
    let data = dated_messages(1, 1000, 0).remove(0).0;
    dc.add_message("alice", &data);
    let env = Env::new();
    env.write_config(&format!(
        "{}{}",
        pop_account(&dc, "isp", "alice"),
        target_table(&dc)
    ));
    env.run(&["sync"]).expect_code(0);
    assert_eq!(dc.message_count("bob"), 1);
    leave_journal_entry_with(&env, &data, Some(1));
    for sub in ["new", "cur"] {
        for e in std::fs::read_dir(dc.maildir("bob").join(sub)).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
    }
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 0, "{}", run.stderr);
    assert_eq!(dc.message_count("bob"), 0, "not appended again");
    let db = rusqlite::Connection::open(env.state_dir().join("seen.sqlite3")).unwrap();
    let (seen, pending): (i64, i64) = db
        .query_row(
            "SELECT (SELECT count(*) FROM seen), (SELECT count(*) FROM pending)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((seen, pending), (1, 0));
}

/// The APPENDUID reaches the journal: a sync with `-v` names the UID
/// each message got. Dovecot offers MULTIAPPEND (RFC 3502) and LITERAL+:
/// the batch goes in one APPEND (`-vv` shows it), one transaction on the
/// server, and APPENDUID's set gives each message its UID.
#[test]
fn the_uid_each_append_got_is_shown_with_v() {
    if !require_dovecot_imap() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice"), ("bob", "pw-bob")]);
    let datas: Vec<Vec<u8>> = dated_messages(3, 1000, 0)
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    dc.add_messages("alice", &datas);
    let env = Env::new();
    env.write_config(&format!(
        "{}{}",
        pop_account(&dc, "isp", "alice"),
        target_table(&dc)
    ));
    let run = env.run(&["sync", "-vv"]);
    run.expect_code(0);
    let appends = run
        .stderr
        .lines()
        .filter(|l| l.contains(" APPEND "))
        .count();
    let literals = run
        .stderr
        .lines()
        .filter(|l| l.contains(" literal bytes)"))
        .count();
    assert_eq!((appends, literals), (1, 3), "{}", run.stderr);
    assert_eq!(contents(&dc.maildir("bob")), expected(&datas));
    for uid in 1..=3 {
        assert!(
            run.stderr.contains(&format!("/INBOX UID {uid}")),
            "UID {uid}: {}",
            run.stderr
        );
    }
    let db = rusqlite::Connection::open(env.state_dir().join("seen.sqlite3")).unwrap();
    let pending: i64 = db
        .query_row("SELECT count(*) FROM pending", [], |r| r.get(0))
        .unwrap();
    assert_eq!(pending, 0, "both journal entries of each message cleared");
}

#[test]
fn kill_9_at_random_instants_loses_nothing_and_duplicates_nothing() {
    if !require_dovecot_imap() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice"), ("bob", "pw-bob")]);
    let env = Env::new();
    env.write_config(&format!(
        "{}{}",
        pop_account(&dc, "isp", "alice"),
        target_table(&dc)
    ));
    let mut datas: Vec<Vec<u8>> = Vec::new();
    // Deterministic "random" instants, spread over a run's length; new
    // messages before each trial so that every kill finds work to cut.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut cut = 0;
    let mut run_length = Duration::from_millis(1500);
    for trial in 0..13u64 {
        let more: Vec<Vec<u8>> = dated_messages(20, 200_000, trial * 20)
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        dc.add_messages("alice", &more);
        datas.extend(more);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if trial == 0 {
            // The first run is timed, whole: the kills fall within the
            // length of a run like it.
            let started = std::time::Instant::now();
            env.run(&["sync", "-q"]).expect_code(0);
            run_length = started.elapsed();
            continue;
        }
        let mut child = env.command(&["sync", "-q"]).spawn().unwrap();
        std::thread::sleep(run_length.mul_f64((x % 1000) as f64 / 1000.0));
        let _ = child.kill();
        let status = child.wait().unwrap();
        cut += usize::from(status.code().is_none());
        let got = contents(&dc.maildir("bob"));
        let mut dedup = got.clone();
        dedup.dedup();
        assert_eq!(dedup.len(), got.len(), "a message appended twice");
        // The next run recovers: every message there, each once.
        env.run(&["sync", "-q"]).expect_code(0);
        assert_eq!(contents(&dc.maildir("bob")), expected(&datas));
    }
    assert!(cut >= 6, "only {cut} of 12 runs were cut by the kill");
}
