//! The read-only side: `check`, `list`, `top`, and `seen list|forget|mark`,
//! against the scripted server (and `check` against a real Dovecot).

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::server::{self, Fault, Msg, Server};
use crate::support::{dovecot, maildir_messages, Env};

fn config_for(port: u16) -> String {
    format!(
        "[accounts.test]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nuser = \"alice\"\npassword = \"secret\"\nmaildir = \"~/Mail/test\"\n"
    )
}

fn plain_message(i: usize) -> Vec<u8> {
    format!(
        "From: Sender {i} <s{i}@example.org>\nSubject: message {i}\nDate: Tue, 14 May 2024 09:12:00 +0000\n\nbody {i}\n"
    )
    .into_bytes()
}

fn numbered(range: std::ops::Range<usize>) -> Vec<Msg> {
    range
        .map(|i| Msg::new(format!("uid-{i:04}"), plain_message(i)))
        .collect()
}

fn start(messages: Vec<Msg>) -> (Env, Server) {
    let srv = Server::start(server::Config {
        messages,
        ..Default::default()
    });
    let env = Env::new();
    env.write_config(&config_for(srv.port()));
    (env, srv)
}

/// Commands the server received that read or change messages.
fn touching(srv: &Server) -> Vec<String> {
    srv.log()
        .into_iter()
        .filter(|l| {
            let verb = l.split(' ').next().unwrap_or("").to_ascii_uppercase();
            verb == "RETR" || verb == "DELE"
        })
        .collect()
}

fn seen_list(env: &Env) -> String {
    env.run(&["seen", "list", "test"])
        .expect_code(0)
        .stdout
        .clone()
}

/// `seen list --json`: one object per record, the same UIDLs as the text
/// form, with the time of the first delivery in Unix seconds.
#[test]
fn seen_list_json_matches_the_records() {
    let (env, _srv) = start(numbered(0..4));
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let before = now();
    env.run(&["sync"]).expect_code(0);
    let after = now();
    let run = env.run(&["seen", "list", "test", "--json"]);
    run.expect_code(0);
    let records = run.json_lines();
    let mut uidls: Vec<&str> = records
        .iter()
        .map(|r| r["uidl"].as_str().unwrap())
        .collect();
    uidls.sort();
    assert_eq!(uidls, ["uid-0000", "uid-0001", "uid-0002", "uid-0003"]);
    for r in &records {
        assert_eq!(r["account"], "test", "{r}");
        let t = r["first_seen"].as_i64().unwrap();
        assert!(
            (before..=after).contains(&t),
            "{r} not in {before}..={after}"
        );
    }
    let text: Vec<String> = seen_list(&env)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(text.len(), 4);
    assert!(text.iter().all(|u| uidls.contains(&u.as_str())));
    // No state yet for a fresh account: no lines, exit 0.
    let (fresh, _srv2) = start(numbered(0..1));
    let run = fresh.run(&["seen", "list", "test", "--json"]);
    run.expect_code(0);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[test]
fn check_counts_new_mail_then_exits_1_after_sync() {
    let (env, srv) = start(numbered(0..295));
    env.run(&["seen", "mark", "test"]).expect_code(0);
    for m in numbered(295..300) {
        srv.push_message(m);
    }
    srv.clear_log();

    let run = env.run(&["check"]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("test: 5 new messages"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("300 on the server"), "{}", run.stdout);

    let run = env.run(&["check", "--json", "test"]);
    run.expect_code(0);
    let lines = run.json_lines();
    assert_eq!(lines.len(), 1);
    let j = &lines[0];
    let new_bytes: usize = srv.messages()[295..].iter().map(Msg::size).sum();
    let total_bytes: usize = srv.messages().iter().map(Msg::size).sum();
    assert_eq!(j["account"], "test");
    assert_eq!(j["status"], "ok");
    assert_eq!(j["new"], 5);
    assert_eq!(j["new_bytes"], new_bytes);
    assert_eq!(j["total"], 300);
    assert_eq!(j["total_bytes"], total_bytes);
    assert!(j["error"].is_null());
    assert_eq!(j["exit_code"], 0);
    // check is LIST + UIDL only.
    let verbs: Vec<String> = srv
        .log()
        .iter()
        .map(|l| l.split(' ').next().unwrap().to_ascii_uppercase())
        .collect();
    assert!(
        !verbs
            .iter()
            .any(|v| v == "RETR" || v == "TOP" || v == "DELE"),
        "{verbs:?}"
    );

    env.run(&["sync"]).expect_code(0);
    assert_eq!(
        maildir_messages(&env.maildir("test")).len(),
        5,
        "seen mark, then sync fetched only the new ones"
    );

    let run = env.run(&["check"]);
    run.expect_code(1);
    assert!(run.stdout.contains("test: no new mail"), "{}", run.stdout);
    let run = env.run(&["check", "--json"]);
    run.expect_code(1);
    let j = &run.json_lines()[0];
    assert_eq!(
        (j["new"].as_u64(), j["total"].as_u64()),
        (Some(0), Some(300))
    );
    assert_eq!(j["exit_code"], 1);
}

#[test]
fn check_reports_each_account_and_errors_win_the_exit_code() {
    let srv = Server::start(server::Config {
        messages: numbered(0..2),
        ..Default::default()
    });
    // A port nobody listens on: connection refused, 69.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let env = Env::new();
    env.write_config(&format!(
        "{}\n[accounts.down]\nhost = \"127.0.0.1\"\nport = {closed_port}\ntls = \"none\"\nuser = \"bob\"\npassword = \"x\"\nmaildir = \"~/Mail/down\"\n",
        config_for(srv.port())
    ));
    let run = env.run(&["check", "--json"]);
    run.expect_code(69);
    let lines = run.json_lines();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    let of = |name: &str| lines.iter().find(|j| j["account"] == name).unwrap().clone();
    let (up, down) = (of("test"), of("down"));
    assert_eq!(up["new"], 2);
    assert_eq!(up["exit_code"], 0);
    assert_eq!(down["status"], "error");
    assert_eq!(down["exit_code"], 69);
    assert!(
        down["error"].as_str().unwrap().contains("127.0.0.1"),
        "{down}"
    );
    assert!(run.stderr.contains("down:"), "{}", run.stderr);

    // Only the healthy account: new mail, 0.
    env.run(&["check", "test"]).expect_code(0);
    // An unknown account is a usage error.
    env.run(&["check", "nope"]).expect_code(64);
}

#[test]
fn list_shows_every_message_with_its_state() {
    let (env, srv) = start(numbered(0..3));
    env.run(&["seen", "mark", "test"]).expect_code(0);
    srv.push_message(Msg::new("late-one", plain_message(9)));

    let run = env.run(&["list", "test", "--json"]);
    run.expect_code(0);
    let lines = run.json_lines();
    assert_eq!(lines.len(), 4);
    for (i, j) in lines.iter().enumerate() {
        let m = &srv.messages()[i];
        assert_eq!(j["number"], i + 1);
        assert_eq!(j["uidl"], m.uidl.as_str());
        assert_eq!(j["size"], m.size());
        assert_eq!(j["seen"], i < 3, "{j}");
    }

    let run = env.run(&["list", "test"]);
    run.expect_code(0);
    let text: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(text.len(), 4, "{}", run.stdout);
    let fields: Vec<&str> = text[3].split_whitespace().collect();
    let size = srv.messages()[3].size().to_string();
    assert_eq!(fields, ["4", size.as_str(), "late-one", "new"]);
    assert!(text[0].ends_with("uid-0000 seen"), "{}", text[0]);
}

/// Encoded-word headers in UTF-8 and ISO-8859-1, B and Q.
fn encoded_messages() -> Vec<Msg> {
    vec![
        Msg::new(
            "enc-1",
            b"From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <jm@example.de>\r\n\
Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4g4piD?=\r\n\
Date: Tue, 14 May 2024 09:12:00 +0200\r\n\r\nHallo\r\n"
                .to_vec(),
        ),
        Msg::new(
            "enc-2",
            b"From: =?ISO-8859-1?B?Wm/rIMVuZ3N0cvZt?= <zoe@example.se>\r\n\
Subject: =?ISO-8859-1?Q?Caf=E9_cr=E8me?= =?iso-8859-1?q?_=E0_la_carte?=\r\n\
Date: Wed, 15 May 2024 18:00:00 -0400\r\n\r\nBody\r\n"
                .to_vec(),
        ),
        Msg::new(
            "enc-3",
            b"From: plain@example.com\r\nSubject: =?utf-8?b?0J/RgNC40LLQtdGC?= =?UTF-8?Q?_=E2=82=AC?=\r\n\r\nx\r\n".to_vec(),
        ),
    ]
}

#[test]
fn top_decodes_rfc2047_subjects_and_senders() {
    let (env, srv) = start(encoded_messages());
    let run = env.run(&["top", "test"]);
    run.expect_code(0);
    let out = &run.stdout;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].contains("Jürgen Müller"), "{out}");
    assert!(lines[0].contains("Grüße aus Köln ☃"), "{out}");
    assert!(lines[1].contains("Zoë Ångström"), "{out}");
    assert!(lines[1].contains("Café crème à la carte"), "{out}");
    assert!(lines[2].contains("plain@example.com"), "{out}");
    assert!(lines[2].contains("Привет €"), "{out}");
    assert!(lines.iter().all(|l| l.ends_with("  new")), "{out}");
    assert!(lines[0].contains("May 14"), "a compact local date: {out}");
    assert!(!out.contains("=?"), "{out}");

    // The headers came from TOP n 0, pipelined; nothing was downloaded.
    let log = srv.log();
    assert_eq!(
        log.iter()
            .filter(|l| l.starts_with("TOP ") && l.ends_with(" 0"))
            .count(),
        3,
        "{log:?}"
    );
    assert!(touching(&srv).is_empty(), "{log:?}");

    // --new after marking one seen; a narrow terminal width cuts lines.
    env.run(&["sync"]).expect_code(0);
    srv.push_message(Msg::new(
        "enc-4",
        b"From: a@b\nSubject: fresh\n\nx\n".to_vec(),
    ));
    let run = env.run(&["top", "test", "--new"]);
    run.expect_code(0);
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    assert!(run.stdout.contains("fresh"));
    let mut cmd = env.command(&["top", "test"]);
    let out = cmd.env("COLUMNS", "50").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 4);
    for line in text.lines() {
        assert!(line.chars().count() <= 50, "{line:?}");
    }
    assert!(text.contains('…'), "{text}");
}

#[test]
fn top_message_prints_headers_and_n_body_lines() {
    let body: String = (1..=10).map(|i| format!("line {i}\n")).collect();
    let header = "From: a@example.org\nSubject: peek\nX-Dot: yes\n";
    let msg = format!("{header}\n.dot-stuffed first line\n{body}");
    let (env, srv) = start(vec![
        Msg::new("first", plain_message(1)),
        Msg::new("the-uidl", msg.clone()),
    ]);

    let run = env.run(&["top", "test", "2", "-n", "5"]);
    run.expect_code(0);
    let want = format!("{header}\n.dot-stuffed first line\nline 1\nline 2\nline 3\nline 4\n");
    assert_eq!(run.stdout, want);

    // By UIDL, default 0 lines: the header block and the blank line.
    let run = env.run(&["top", "test", "the-uidl"]);
    run.expect_code(0);
    assert_eq!(run.stdout, format!("{header}\n"));

    // Several messages: each introduced like head(1) does.
    let run = env.run(&["top", "test", "1", "the-uidl", "-n", "1"]);
    run.expect_code(0);
    assert!(
        run.stdout.starts_with("==> 1 first <==\nFrom: Sender 1"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("\n\n==> 2 the-uidl <==\nFrom: a@example.org"),
        "{}",
        run.stdout
    );

    // An unknown message is a usage error that says what exists.
    let run = env.run(&["top", "test", "nope"]);
    run.expect_code(64);
    assert!(run.stderr.contains("no message \"nope\""), "{}", run.stderr);

    assert!(touching(&srv).is_empty(), "{:?}", srv.log());
    assert_eq!(srv.messages().len(), 2);
}

#[test]
fn peeking_changes_nothing_on_the_server_or_in_the_seen_state() {
    let (env, srv) = start(numbered(0..4));
    // No state yet: the read-only commands do not create any.
    env.run(&["check"]).expect_code(0);
    env.run(&["list", "test"]).expect_code(0);
    env.run(&["top", "test"]).expect_code(0);
    assert!(!env.state_dir().join("seen.sqlite3").exists());

    env.run(&["sync"]).expect_code(0);
    srv.push_message(Msg::new("uid-new", plain_message(7)));
    let before = seen_list(&env);
    let messages = srv.messages();
    srv.clear_log();
    env.run(&["check"]).expect_code(0);
    env.run(&["check", "--json"]).expect_code(0);
    env.run(&["list", "test", "--json"]).expect_code(0);
    env.run(&["top", "test"]).expect_code(0);
    env.run(&["top", "test", "--new"]).expect_code(0);
    env.run(&["top", "test", "5", "-n", "3"]).expect_code(0);
    assert!(touching(&srv).is_empty(), "{:?}", srv.log());
    assert_eq!(srv.messages(), messages);
    assert_eq!(seen_list(&env), before);
    assert_eq!(before.lines().count(), 4);
    // Every session ended with QUIT.
    let log = srv.log();
    assert_eq!(log.iter().filter(|l| *l == "QUIT").count(), 6, "{log:?}");
}

#[test]
fn seen_mark_then_sync_downloads_nothing_and_forget_brings_messages_back() {
    let (env, srv) = start(numbered(0..6));
    let run = env.run(&["seen", "mark", "test"]);
    run.expect_code(0);
    assert!(run.stderr.contains("marked 6 message(s)"), "{}", run.stderr);
    assert!(touching(&srv).is_empty());
    let listed = seen_list(&env);
    assert_eq!(listed.lines().count(), 6);
    assert!(
        listed.lines().next().unwrap().starts_with("uid-0000  20"),
        "{listed}"
    );

    env.run(&["sync"]).expect_code(0);
    assert!(maildir_messages(&env.maildir("test")).is_empty());
    assert!(touching(&srv).is_empty(), "{:?}", srv.log());

    // Forget two: exactly those come back.
    let run = env.run(&[
        "seen",
        "forget",
        "test",
        "uid-0002",
        "uid-0004",
        "never-seen",
    ]);
    run.expect_code(0);
    assert!(run.stderr.contains("forgot 2"), "{}", run.stderr);
    assert!(
        run.stderr.contains("\"never-seen\" was not recorded"),
        "{}",
        run.stderr
    );
    env.run(&["sync"]).expect_code(0);
    assert_eq!(maildir_messages(&env.maildir("test")).len(), 2);
    for i in 0..6 {
        let want = usize::from(i == 2 || i == 4);
        assert_eq!(srv.retr_count(&format!("uid-{i:04}")), want, "uid-{i:04}");
    }

    // Forget everything: off a terminal only with --all; then all come back.
    let refused = env.run(&["seen", "forget", "test"]);
    assert_eq!(refused.code, 64, "{}", refused.stderr);
    assert!(refused.stderr.contains("add --all"), "{}", refused.stderr);
    assert_eq!(seen_list(&env).lines().count(), 6, "nothing forgotten");
    let run = env.run(&["seen", "forget", "test", "--all"]);
    run.expect_code(0);
    assert!(run.stderr.contains("forgot all 6"), "{}", run.stderr);
    assert_eq!(seen_list(&env), "");
    env.run(&["sync"]).expect_code(0);
    assert_eq!(maildir_messages(&env.maildir("test")).len(), 8);
    assert_eq!(srv.retr_count("uid-0000"), 1);
    assert_eq!(srv.retr_count("uid-0002"), 2);
}

#[test]
fn seen_writers_take_the_lock_and_readers_do_not() {
    let (env, srv) = start(numbered(0..3));
    srv.set_faults(vec![Fault::SlowRetr { delay_ms: 1500 }]);
    let mut sync = env
        .command(&["sync"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !srv.log().iter().any(|l| l.starts_with("RETR")) {
        assert!(Instant::now() < deadline, "sync never sent RETR");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Readers work while the sync holds the lock…
    env.run(&["check"]).expect_code(0);
    env.run(&["seen", "list", "test"]).expect_code(0);
    // …writers give up at once, naming the holder.
    let run = env.run(&["seen", "mark", "test"]);
    run.expect_code(75);
    assert!(
        run.stderr.contains(&format!("pid {}", sync.id())),
        "{}",
        run.stderr
    );
    env.run(&["seen", "forget", "test", "uid-0000"])
        .expect_code(75);
    srv.clear_faults();
    assert!(sync.wait().unwrap().success());
}

#[test]
fn check_against_dovecot() {
    if !dovecot::require_dovecot() {
        return;
    }
    let d = dovecot::Dovecot::start(&[("alice", "pw")]);
    for i in 0..3 {
        d.add_message("alice", &plain_message(i));
    }
    let env = Env::new();
    env.write_config(&format!(
        "[accounts.real]\nhost = \"{}\"\nport = {}\ntls = \"implicit\"\nca_file = \"{}\"\nuser = \"alice\"\npassword = \"pw\"\nmaildir = \"~/Mail/real\"\n",
        d.host(),
        d.pop3s_port(),
        d.pki().ca_path.display()
    ));
    let run = env.run(&["check", "--json"]);
    run.expect_code(0);
    let j = &run.json_lines()[0];
    assert_eq!(
        (j["new"].as_u64(), j["total"].as_u64()),
        (Some(3), Some(3)),
        "{j}"
    );
    assert!(j["new_bytes"].as_u64().unwrap() > 0);
    assert_eq!(d.message_count("alice"), 3);
    env.run(&["sync"]).expect_code(0);
    let run = env.run(&["check"]);
    run.expect_code(1);
    assert!(
        run.stdout.contains("real: no new mail, 3 on the server"),
        "{}",
        run.stdout
    );
    let run = env.run(&["top", "real"]);
    run.expect_code(0);
    assert_eq!(run.stdout.lines().count(), 3, "{}", run.stdout);
    assert!(run.stdout.contains("message 2"), "{}", run.stdout);
}

#[test]
fn top_message_cuts_endless_lines_and_header_blocks() {
    // One header line of 2 MB, and a header block of 2 MB: what `top`
    // prints (and holds) stays small, and the session still ends cleanly.
    let mut long_line = b"Subject: ".to_vec();
    long_line.extend(std::iter::repeat_n(b'x', 2_000_000));
    long_line.extend_from_slice(b"\nFrom: a@example.org\n\nbody 1\nbody 2\n");
    let mut many_lines = Vec::new();
    while many_lines.len() < 2_000_000 {
        many_lines.extend_from_slice(b"X-Filler: a header line of no interest at all\n");
    }
    many_lines.extend_from_slice(b"\nbody\n");
    let (env, srv) = start(vec![
        Msg::new("long-line", long_line),
        Msg::new("many-lines", many_lines),
    ]);

    let run = env.run(&["top", "test", "1", "-n", "1"]);
    run.expect_code(0);
    let first = run.stdout.lines().next().unwrap();
    assert!(
        first.len() < 20_000 && first.ends_with('…'),
        "the line is cut: {} bytes",
        first.len()
    );
    assert!(
        run.stdout.ends_with("\nFrom: a@example.org\n\nbody 1\n"),
        "the rest follows"
    );

    let run = env.run(&["top", "test", "2"]);
    run.expect_code(0);
    assert!(run.stdout.len() < 300_000, "{} bytes", run.stdout.len());
    assert!(run.stdout.contains("header block cut"), "says so");
    assert!(srv.log().iter().any(|l| l == "QUIT"), "a clean end");
}

/// `check` on an IMAP account of two folders counts both on one session
/// (SELECT, then SELECT the next), as `sync` does: one TLS handshake and
/// one login, not one per folder.
#[test]
fn check_counts_every_imap_folder_on_one_session() {
    use crate::support::imapserver::{numbered, ImapConfig, ImapServer};
    let texts: Vec<Vec<u8>> = (0..3).map(plain_message).collect();
    // The scripted server shows the same messages in any folder it is asked for.
    let server = ImapServer::start(ImapConfig {
        messages: numbered(&texts),
        ..ImapConfig::default()
    });
    let env = Env::new();
    env.write_config(&format!(
        "[accounts.im]\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nuser = \"alice\"\npassword = \"secret\"\nmaildir = \"~/Mail/im\"\nfolders = [\"INBOX\", \"Archive\"]\n",
        server.port()
    ));
    let run = env.run(&["check", "--json"]);
    run.expect_code(0);
    let record = &run.json_lines()[0];
    assert_eq!(record["new"], 6, "both folders counted: {record}");
    assert_eq!(server.connections(), 1, "one session for both folders");
    let selects: Vec<String> = server
        .log()
        .into_iter()
        .filter(|l| l.contains("SELECT") || l.contains("EXAMINE"))
        .collect();
    assert_eq!(selects.len(), 2, "{selects:?}");
    assert!(server.log().iter().any(|l| l.contains("LOGOUT")));
}
