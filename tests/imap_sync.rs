//! `popfetch sync` (and check/list/top/info) from IMAP accounts against a
//! real Dovecot IMAP server: byte-exact delivery into a Maildir and an mbox,
//! nothing twice, `--delete`, several folders, `mark_seen`, `move_to`,
//! `fetch = "unseen"`.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use popfetch::net::{self, Stream, TlsContext, TlsTrust};

use crate::support::dovecot::{require_dovecot_imap, Dovecot};
use crate::support::{expected_delivery, maildir_messages, mixed_messages, Env};

/// An IMAP account of alice on `dc`: implicit TLS on the IMAPS port unless
/// `tls` says otherwise.
fn imap_account(dc: &Dovecot, name: &str, tls: &str, extra: &str) -> String {
    let port = if tls == "implicit" {
        dc.imaps_port()
    } else {
        dc.imap_port()
    };
    format!(
        "[accounts.{name}]\nprotocol = \"imap\"\nhost = \"localhost\"\nport = {port}\ntls = \"{tls}\"\nuser = \"alice\"\npassword = \"pw-alice\"\nca_file = \"{}\"\ntimeout = 20\n{extra}\n",
        dc.pki().ca_path.display()
    )
}

fn sorted_expected<M: AsRef<[u8]>>(datas: &[M]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = datas
        .iter()
        .map(|d| expected_delivery(d.as_ref()))
        .collect();
    v.sort();
    v
}

#[test]
fn imap_maildir_byte_exact_then_nothing_new_then_delete_empties_the_folder() {
    if !require_dovecot_imap() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice")]);
    let datas = mixed_messages(200, 1024 * 1024);
    dc.add_messages("alice", &datas);
    let env = Env::new();
    env.write_config(&imap_account(
        &dc,
        "im",
        "implicit",
        "maildir = \"~/Mail/im\"",
    ));

    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 200, "{}", run.stderr);
    // What Dovecot holds, CRLF → LF, is what landed.
    assert_eq!(
        maildir_messages(&env.maildir("im")),
        sorted_expected(&dc.messages("alice"))
    );
    assert_eq!(
        maildir_messages(&env.maildir("im")),
        sorted_expected(&datas)
    );
    assert_eq!(dc.message_count("alice"), 200, "keep leaves them");

    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 0);

    let run = env.run(&["sync", "--delete", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["deleted"], 200, "{}", run.stderr);
    assert_eq!(run.json_lines()[0]["new"], 0);
    assert_eq!(dc.message_count("alice"), 0, "folder emptied");
    assert_eq!(maildir_messages(&env.maildir("im")).len(), 200);
}

/// A bare IMAP client over IMAPS, for what the tests do on the server side
/// (folders, flags, counts): one command at a time, no literals read.
struct Raw {
    io: BufReader<Stream>,
    tag: u32,
}

impl Raw {
    fn login(dc: &Dovecot) -> Raw {
        let trust = TlsTrust {
            ca_file: Some(dc.pki().ca_path.clone()),
            fingerprints: Vec::new(),
        };
        let tcp = net::connect("127.0.0.1", dc.imaps_port(), Duration::from_secs(20)).unwrap();
        let stream = TlsContext::new(&trust)
            .unwrap()
            .wrap_implicit(tcp, "localhost", "the test expects implicit TLS")
            .unwrap();
        let mut raw = Raw {
            io: BufReader::new(stream),
            tag: 0,
        };
        let greeting = raw.line();
        assert!(greeting.starts_with("* OK"), "{greeting}");
        raw.cmd("LOGIN alice pw-alice");
        raw
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.io.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "the server closed the connection");
        line.trim_end().to_string()
    }

    /// Sends `bytes` as a command and returns its untagged lines.
    fn send(&mut self, bytes: &[u8]) -> Vec<String> {
        self.tag += 1;
        let tag = format!("r{}", self.tag);
        let mut out = format!("{tag} ").into_bytes();
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"\r\n");
        self.io.get_mut().write_all(&out).unwrap();
        self.io.get_mut().flush().unwrap();
        let mut untagged = Vec::new();
        loop {
            let line = self.line();
            if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
                assert!(
                    rest.starts_with("OK"),
                    "{}: {line}",
                    String::from_utf8_lossy(bytes)
                );
                return untagged;
            }
            untagged.push(line);
        }
    }

    fn cmd(&mut self, command: &str) -> Vec<String> {
        self.send(command.as_bytes())
    }

    /// Appends messages to `folder` (created if need be), in order.
    fn append<M: AsRef<[u8]>>(&mut self, folder: &str, messages: &[M]) {
        let listed = self.cmd(&format!("LIST \"\" \"{folder}\""));
        if listed.is_empty() {
            self.cmd(&format!("CREATE \"{folder}\""));
        }
        for m in messages {
            let m = m.as_ref();
            let mut command = format!("APPEND \"{folder}\" {{{}+}}\r\n", m.len()).into_bytes();
            command.extend_from_slice(m);
            self.send(&command);
        }
    }

    /// The UIDs of `folder` that match a SEARCH `criteria`.
    fn search(&mut self, folder: &str, criteria: &str) -> Vec<u32> {
        self.cmd(&format!("EXAMINE \"{folder}\""));
        let lines = self.cmd(&format!("UID SEARCH {criteria}"));
        lines
            .iter()
            .filter_map(|l| l.strip_prefix("* SEARCH"))
            .flat_map(|rest| rest.split_whitespace().map(|n| n.parse::<u32>().unwrap()))
            .collect()
    }

    fn count(&mut self, folder: &str) -> usize {
        self.search(folder, "ALL").len()
    }

    fn uidvalidity(&mut self, folder: &str) -> u32 {
        let lines = self.cmd(&format!("STATUS \"{folder}\" (UIDVALIDITY)"));
        let line = lines.iter().find(|l| l.starts_with("* STATUS")).unwrap();
        let at = line.find("UIDVALIDITY ").unwrap() + "UIDVALIDITY ".len();
        line[at..]
            .trim_end_matches(')')
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = self.io.get_mut().write_all(b"z LOGOUT\r\n");
    }
}

#[test]
fn imap_starttls_into_an_mbox_byte_exact_and_once() {
    if !require_dovecot_imap() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice")]);
    let datas = mixed_messages(200, 300 * 1024);
    dc.add_messages("alice", &datas);
    let env = Env::new();
    env.write_config(&imap_account(
        &dc,
        "im",
        "starttls",
        "mbox = \"~/inbox.mbox\"",
    ));
    env.run(&["sync"]).expect_code(0);
    let mbox = std::fs::read(env.home().join("inbox.mbox")).unwrap();
    let mut got = crate::sync::parse_mboxrd(&mbox);
    got.sort();
    assert_eq!(got, sorted_expected(&dc.messages("alice")));
    assert_eq!(got, sorted_expected(&datas));
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 0);
    assert_eq!(
        std::fs::read(env.home().join("inbox.mbox")).unwrap().len(),
        mbox.len()
    );
    env.run(&["sync", "--delete"]).expect_code(0);
    assert_eq!(dc.message_count("alice"), 0);
}

#[test]
fn imap_folders_are_mailboxes_of_their_own_counted_together() {
    if !require_dovecot_imap() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice")]);
    let inbox = mixed_messages(7, 10_000);
    let lists: Vec<Vec<u8>> = (0..4)
        .map(|i| format!("Subject: list {i}\r\n\r\nlist body {i}\r\n").into_bytes())
        .collect();
    dc.add_messages("alice", &inbox);
    let mut raw = Raw::login(&dc);
    raw.append("Lists", &lists);
    let env = Env::new();
    env.write_config(&imap_account(
        &dc,
        "im",
        "implicit",
        "folders = [\"INBOX\", \"Lists\"]\nmaildir = \"~/Mail/im\"",
    ));

    let run = env.run(&["check", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 11, "{}", run.stdout);
    assert_eq!(run.json_lines()[0]["total"], 11);

    let logins = |dc: &Dovecot| {
        dc.log()
            .matches("imap-login: Info: Login: user=<alice>")
            .count()
    };
    let before = logins(&dc);
    let run = env.run(&["sync", "--json", "-v"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 11, "{}", run.stderr);
    // One session for both folders: the second is SELECTed, not logged
    // into again.
    assert!(
        run.stderr.contains("on to folder \"Lists\""),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stderr.matches("logged out").count(),
        1,
        "{}",
        run.stderr
    );
    assert_eq!(logins(&dc), before + 1, "{}", dc.log());
    let all: Vec<Vec<u8>> = inbox.iter().chain(&lists).cloned().collect();
    assert_eq!(maildir_messages(&env.maildir("im")), sorted_expected(&all));

    // A new message in the second folder is the only new one.
    raw.append("Lists", &[b"Subject: late\r\n\r\nlate\r\n"]);
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 1);
    assert_eq!(maildir_messages(&env.maildir("im")).len(), 12);

    // Each folder has its own seen state, named by the folder.
    let run = env.run(&["accounts", "--json"]);
    run.expect_code(0);
    let j = &run.json_lines()[0];
    assert_eq!(j["protocol"], "imap");
    assert_eq!(j["identity"], "alice@localhost/INBOX");
    assert_eq!(j["folders"], serde_json::json!(["INBOX", "Lists"]));
    assert_eq!(
        j["identities"],
        serde_json::json!(["alice@localhost/INBOX", "alice@localhost/Lists"])
    );
    let run = env.run(&["accounts"]);
    run.expect_code(0);
    assert!(
        run.stdout
            .contains("alice@localhost/INBOX, alice@localhost/Lists"),
        "{}",
        run.stdout
    );

    // `seen list` shows the records of both; `seen forget` could not tell
    // which folder a key is of.
    let run = env.run(&["seen", "list", "im", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines().len(), 12, "{}", run.stdout);
    let run = env.run(&["seen", "forget", "im", "--all", "--yes"]);
    run.expect_code(64);
    assert!(run.stderr.contains("works on one folder"), "{}", run.stderr);

    // --delete empties both folders.
    let run = env.run(&["sync", "--delete", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["deleted"], 12, "{}", run.stderr);
    assert_eq!(raw.count("INBOX"), 0);
    assert_eq!(raw.count("Lists"), 0);

    // list/top name messages by UID, which is per folder: one folder only.
    let run = env.run(&["list", "im"]);
    run.expect_code(64);
    assert!(
        run.stderr.contains("give each folder a section"),
        "{}",
        run.stderr
    );
}

#[test]
fn imap_mark_seen_sets_seen_only_when_asked_and_never_by_fetching() {
    if !require_dovecot_imap() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice")]);
    dc.add_messages("alice", &mixed_messages(5, 10_000));
    let mut raw = Raw::login(&dc);
    let env = Env::new();
    let plain = imap_account(&dc, "im", "implicit", "maildir = \"~/Mail/im\"");
    env.write_config(&plain);
    env.run(&["sync"]).expect_code(0);
    assert!(
        raw.search("INBOX", "SEEN").is_empty(),
        "BODY.PEEK sets no flag"
    );

    dc.add_messages("alice", &mixed_messages(3, 10_000));
    env.write_config(&format!("{plain}mark_seen = true\n"));
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 3);
    // The three delivered now, not the five delivered before.
    assert_eq!(raw.search("INBOX", "SEEN"), vec![6, 7, 8]);
    assert_eq!(raw.count("INBOX"), 8, "nothing deleted");
}

#[test]
fn imap_move_to_moves_instead_of_deleting() {
    if !require_dovecot_imap() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice")]);
    let datas = mixed_messages(20, 10_000);
    dc.add_messages("alice", &datas);
    let mut raw = Raw::login(&dc);
    let env = Env::new();
    // Archive does not exist yet: the server says TRYCREATE, popfetch
    // creates it.
    env.write_config(&imap_account(
        &dc,
        "im",
        "implicit",
        "keep = false\nmove_to = \"Archive\"\nmark_seen = true\nmaildir = \"~/Mail/im\"",
    ));
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 20, "{}", run.stderr);
    assert_eq!(run.json_lines()[0]["deleted"], 20);
    assert_eq!(raw.count("INBOX"), 0);
    assert_eq!(raw.count("Archive"), 20);
    assert_eq!(
        raw.search("Archive", "SEEN").len(),
        20,
        "seen before the move"
    );
    assert_eq!(
        maildir_messages(&env.maildir("im")),
        sorted_expected(&datas)
    );

    // The next run: nothing new, nothing moved twice.
    dc.add_message("alice", b"Subject: one more\n\nx\n");
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 1);
    assert_eq!(raw.count("Archive"), 21);
    assert_eq!(maildir_messages(&env.maildir("im")).len(), 21);
}

#[test]
fn imap_fetch_unseen_offers_only_messages_without_seen() {
    if !require_dovecot_imap() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice")]);
    let datas = mixed_messages(6, 10_000);
    dc.add_messages("alice", &datas);
    let mut raw = Raw::login(&dc);
    raw.cmd("SELECT INBOX");
    raw.cmd("UID STORE 2,4 +FLAGS.SILENT (\\Seen)");
    let env = Env::new();
    env.write_config(&imap_account(
        &dc,
        "im",
        "implicit",
        "fetch = \"unseen\"\nmaildir = \"~/Mail/im\"",
    ));
    let run = env.run(&["check", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 4, "{}", run.stdout);
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 4, "{}", run.stderr);
    let unseen: Vec<Vec<u8>> = [0, 2, 4, 5].iter().map(|&i| datas[i].clone()).collect();
    assert_eq!(
        maildir_messages(&env.maildir("im")),
        sorted_expected(&unseen)
    );

    // Still unseen on the server, yet recorded: not fetched again.
    assert_eq!(raw.search("INBOX", "UNSEEN"), vec![1, 3, 5, 6]);
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 0);

    // A fetched message marked seen and then unseen again by another
    // client is still not fetched twice: its record was kept.
    raw.cmd("SELECT INBOX");
    raw.cmd("UID STORE 1 +FLAGS.SILENT (\\Seen)");
    env.run(&["sync"]).expect_code(0);
    raw.cmd("SELECT INBOX");
    raw.cmd("UID STORE 1 -FLAGS.SILENT (\\Seen)");
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 0);
    assert_eq!(maildir_messages(&env.maildir("im")).len(), 4);
}

#[test]
fn imap_check_list_top_name_messages_by_uid_and_uidvalidity() {
    if !require_dovecot_imap() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice")]);
    let datas: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            format!("From: Sender {i} <s{i}@example.org>\nSubject: hello {i}\n\nbody {i}\n")
                .into_bytes()
        })
        .collect();
    dc.add_messages("alice", &datas);
    let mut raw = Raw::login(&dc);
    let validity = raw.uidvalidity("INBOX");
    let env = Env::new();
    env.write_config(&imap_account(
        &dc,
        "im",
        "implicit",
        "maildir = \"~/Mail/im\"",
    ));

    let run = env.run(&["check", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 3);

    let run = env.run(&["list", "im", "--json"]);
    run.expect_code(0);
    let lines = run.json_lines();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    for (i, j) in lines.iter().enumerate() {
        let uid = i + 1;
        assert_eq!(j["number"], uid);
        assert_eq!(j["uidl"], format!("{validity}/{uid}"));
        assert_eq!(j["seen"], false);
    }

    env.run(&["sync"]).expect_code(0);
    dc.add_message(
        "alice",
        b"From: late@example.org\nSubject: fresh one\n\nx\n",
    );
    let run = env.run(&["top", "im", "--new"]);
    run.expect_code(0);
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    assert!(run.stdout.contains("fresh one"), "{}", run.stdout);
    let run = env.run(&["top", "im", "2", "-n", "1"]);
    run.expect_code(0);
    assert!(run.stdout.contains("body 1"), "{}", run.stdout);
    let run = env.run(&["top", "im", &format!("{validity}/3"), "-n", "1"]);
    run.expect_code(0);
    assert!(run.stdout.contains("body 2"), "{}", run.stdout);

    // Nothing changed on the server: no flags, nothing gone.
    assert!(raw.search("INBOX", "SEEN").is_empty());
    assert_eq!(raw.count("INBOX"), 4);
}

#[test]
fn imap_info_shows_capabilities_and_the_certificate_without_logging_in() {
    if !require_dovecot_imap() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice")]);
    let env = Env::new();
    env.write_config(&imap_account(
        &dc,
        "im",
        "starttls",
        "maildir = \"~/Mail/im\"",
    ));
    let run = env.run(&["info", "im"]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("IMAP4rev1") || run.stdout.contains("IMAP4REV1"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("TLS"), "{}", run.stdout);
    assert!(!dc.log().contains("Login: user=<alice>"), "{}", dc.log());
    assert!(!run.stderr.contains("connecting to"), "{}", run.stderr);

    // -v says where it goes and how the connection is protected.
    let run = env.run(&["-v", "info", "im"]);
    run.expect_code(0);
    assert!(
        run.stderr.contains(&format!(
            "im: connecting to localhost:{} (STARTTLS)",
            dc.imap_port()
        )),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("im: connected, TLS"), "{}", run.stderr);
}

#[test]
fn imap_keys_on_a_pop3_account_are_refused_with_their_line() {
    let env = Env::new();
    env.write_config(
        "[accounts.p]\nhost = \"pop.example.com\"\nuser = \"u\"\nmaildir = \"~/m\"\nfolders = [\"INBOX\"]\n",
    );
    let run = env.run(&["check"]);
    run.expect_code(78);
    assert!(
        run.stderr.contains("config.toml:5")
            && run
                .stderr
                .contains("`folders` is for protocol = \"imap\" only"),
        "{}",
        run.stderr
    );
    env.write_config(
        "[accounts.i]\nprotocol = \"imap\"\nhost = \"imap.example.com\"\nuser = \"u\"\nmaildir = \"~/m\"\nmark_sen = true\n",
    );
    let run = env.run(&["check"]);
    run.expect_code(78);
    assert!(
        run.stderr.contains("config.toml:6") && run.stderr.contains("did you mean `mark_seen`"),
        "{}",
        run.stderr
    );
    let run = env.run(&["accounts", "--json"]);
    run.expect_code(78);
}

#[test]
fn imap_without_tls_warns_before_the_password_goes_out_in_clear() {
    // (auth = "auto" would choose CRAM-MD5 here, which sends no password.)
    if !require_dovecot_imap() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice")]);
    dc.add_message("alice", b"Subject: x\n\nx\n");
    let env = Env::new();
    env.write_config(&format!(
        "[accounts.im]\nprotocol = \"imap\"\nhost = \"localhost\"\nport = {}\ntls = \"none\"\nauth = \"user\"\nuser = \"alice\"\npassword = \"pw-alice\"\nmaildir = \"~/Mail/im\"\n",
        dc.imap_port()
    ));
    let run = env.run(&["sync", "-v"]);
    run.expect_code(0);
    assert!(
        run.stderr.contains("sending the password unencrypted")
            && run.stderr.contains("the server offers STARTTLS"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("folder \"INBOX\": 1 message, UIDVALIDITY"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("logging in as alice (LOGIN)"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("pw-alice"), "{}", run.stderr);
    assert_eq!(maildir_messages(&env.maildir("im")).len(), 1);
}

#[test]
fn imap_a_folder_the_server_cannot_open_is_a_config_error_naming_it() {
    if !require_dovecot_imap() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice")]);
    dc.add_message("alice", b"Subject: x\n\nx\n");
    let env = Env::new();
    env.write_config(&imap_account(
        &dc,
        "im",
        "implicit",
        "folders = [\"INBOX\", \"Nope\"]\nmaildir = \"~/Mail/im\"",
    ));
    let run = env.run(&["sync", "--json"]);
    run.expect_code(78);
    let j = &run.json_lines()[0];
    // INBOX came first and was delivered; the report counts it.
    assert_eq!(j["new"], 1, "{j}");
    assert!(
        run.stderr.contains("Nope") && run.stderr.contains("check `folders`"),
        "{}",
        run.stderr
    );
    assert_eq!(maildir_messages(&env.maildir("im")).len(), 1);
}

/// kill -9 at many points of a sync, in keep and delete mode: in the end
/// every message is in the Maildir exactly once (and, deleting, gone from
/// the server). New mail arrives before each trial, so every trial has
/// something to deliver, record and delete when it is killed.
#[test]
fn imap_kill_9_trials_lose_nothing_and_deliver_nothing_twice() {
    if !require_dovecot_imap() {
        return;
    }
    // 50 killed trials per mode after the two whole syncs: 100 in all.
    const TRIALS: usize = 52;
    const PER_TRIAL: usize = 5;
    for keep in [true, false] {
        let dc = Dovecot::start(&[("alice", "pw-alice")]);
        let datas = mixed_messages(TRIALS * PER_TRIAL, 100 * 1024);
        let env = Env::new();
        env.write_config(&imap_account(
            &dc,
            "im",
            "implicit",
            &format!("keep = {keep}\nmaildir = \"~/Mail/im\""),
        ));
        // The first two batches are synced whole (the first also creates
        // the state), the second to learn how long a sync takes here; the
        // kills of the others are spread over 30% to 110% of it.
        dc.add_messages("alice", &datas[..PER_TRIAL]);
        env.run(&["sync"]).expect_code(0);
        dc.add_messages("alice", &datas[PER_TRIAL..2 * PER_TRIAL]);
        let started = std::time::Instant::now();
        env.run(&["sync"]).expect_code(0);
        let mut whole = started.elapsed();
        let mut killed = 0;
        // Killed after delivering (some of) its messages: the record, the
        // deletion or the logout was still to come.
        let mut late = 0;
        for (trial, batch) in datas.chunks(PER_TRIAL).enumerate().skip(2) {
            dc.add_messages("alice", batch);
            let before = maildir_messages(&env.maildir("im")).len();
            let spread = 0.3 + 0.8 * ((trial as f64 * 0.618_034) % 1.0);
            let was_killed = match env.sync_killed_after(whole.mul_f64(spread)) {
                Ok(()) => true,
                // It ended before the kill: the machine is faster now than
                // when `whole` was measured (a load that came and went), so
                // the kills go by this run's time from now on.
                Err(took) => {
                    whole = whole.min(took);
                    false
                }
            };
            killed += usize::from(was_killed);
            let now = maildir_messages(&env.maildir("im")).len();
            late += usize::from(was_killed && now > before);
        }
        eprintln!(
            "keep = {keep}: a sync takes {whole:?}; {killed} of {} killed, {late} after delivering",
            TRIALS - 2
        );
        assert!(killed >= TRIALS / 4, "the trials must interrupt syncs");
        let run = env.run(&["sync", "--json"]);
        run.expect_code(0);
        assert_eq!(
            maildir_messages(&env.maildir("im")),
            sorted_expected(&datas),
            "keep = {keep}: each message exactly once"
        );
        let run = env.run(&["sync", "--json"]);
        run.expect_code(0);
        assert_eq!(run.json_lines()[0]["new"], 0);
        if !keep {
            assert_eq!(dc.message_count("alice"), 0, "all deleted in the end");
        }
    }
}

#[test]
fn imap_dry_run_plans_per_folder_and_changes_nothing() {
    if !require_dovecot_imap() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice")]);
    dc.add_messages("alice", &mixed_messages(3, 10_000));
    let mut raw = Raw::login(&dc);
    raw.append("Lists", &[b"Subject: l\r\n\r\nl\r\n"]);
    raw.cmd("SELECT INBOX");
    raw.cmd("UID STORE 2 +FLAGS.SILENT (\\Seen)");
    let validity = raw.uidvalidity("INBOX");
    let env = Env::new();
    env.write_config(&imap_account(
        &dc,
        "im",
        "implicit",
        "folders = [\"INBOX\", \"Lists\"]\nfetch = \"unseen\"\nmark_seen = true\nmove_to = \"Archive\"\nmaildir = \"~/Mail/im\"",
    ));
    let run = env.run(&["sync", "--dry-run", "--delete", "--json"]);
    run.expect_code(0);
    let j = &run.json_lines()[0];
    assert_eq!(j["new"], 3, "{j}");
    let planned = j["planned"].as_array().unwrap();
    assert_eq!(planned.len(), 3, "{j}");
    assert!(planned.iter().all(|p| p["action"] == "fetch_and_delete"));
    assert_eq!(planned[0]["uidl"], format!("{validity}/1"));
    assert_eq!(planned[1]["uidl"], format!("{validity}/3"));
    // Nothing delivered, flagged, moved or created.
    assert!(maildir_messages(&env.maildir("im")).is_empty());
    assert_eq!(raw.search("INBOX", "SEEN"), vec![2]);
    assert_eq!(raw.count("INBOX"), 3);
    assert!(raw.cmd("LIST \"\" Archive").is_empty());
}

/// The no-new-mail shortcut against Dovecot (which offers CONDSTORE, so
/// HIGHESTMODSEQ is part of the snapshot): an unchanged folder ends after
/// SELECT; new mail, an expunge-then-append that keeps the count, and a
/// flag changed by another client are each seen and listed.
#[test]
fn imap_no_new_mail_shortcut_sees_every_change() {
    if !require_dovecot_imap() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice")]);
    let datas = mixed_messages(20, 0);
    dc.add_messages("alice", &datas);
    let env = Env::new();
    env.write_config(&imap_account(
        &dc,
        "im",
        "implicit",
        "maildir = \"~/Mail/im\"",
    ));
    const UNCHANGED: &str = "folder unchanged since the last complete sync";
    // (new messages, whether the shortcut was taken)
    let sync = || {
        let run = env.run(&["sync", "-v", "--json"]);
        run.expect_code(0);
        let new = run.json_lines()[0]["new"].as_u64().unwrap();
        let short = run.stderr.contains(UNCHANGED);
        assert_eq!(short, !run.stderr.contains(" to fetch ("), "{}", run.stderr);
        (new, short)
    };
    assert_eq!(sync(), (20, false));
    assert_eq!(sync(), (0, true), "nothing changed");

    let mut raw = Raw::login(&dc);
    raw.append("INBOX", &[b"Subject: late 1\r\n\r\nfirst late\r\n"]);
    assert_eq!(sync(), (1, false), "new mail");
    assert_eq!(sync(), (0, true));

    // Another client expunges the newest message and a new one arrives:
    // as many messages as before, a higher UIDNEXT.
    let last = *raw.search("INBOX", "ALL").last().unwrap();
    raw.cmd("SELECT INBOX");
    raw.cmd(&format!("UID STORE {last} +FLAGS.SILENT (\\Deleted)"));
    raw.cmd("EXPUNGE");
    raw.append("INBOX", &[b"Subject: late 2\r\n\r\nsecond late\r\n"]);
    assert_eq!(raw.count("INBOX"), 21);
    assert_eq!(sync(), (1, false), "expunge then append");
    assert_eq!(sync(), (0, true));

    // A flag set by another client: only HIGHESTMODSEQ tells.
    raw.cmd("SELECT INBOX");
    raw.cmd("UID STORE 1 +FLAGS.SILENT (\\Flagged)");
    assert_eq!(sync(), (0, false), "a flag changed");
    assert_eq!(sync(), (0, true));
    drop(raw);

    let mut want = datas.clone();
    want.push(b"Subject: late 1\r\n\r\nfirst late\r\n".to_vec());
    want.push(b"Subject: late 2\r\n\r\nsecond late\r\n".to_vec());
    assert_eq!(maildir_messages(&env.maildir("im")), sorted_expected(&want));
}
