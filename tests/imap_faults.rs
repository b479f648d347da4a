//! IMAP under fire: the scripted IMAP server (tests/support/imapserver.rs)
//! drops the connection inside a literal, says BYE, refuses with
//! `NO [UNAVAILABLE]`, lies about RFC822.SIZE, has another client expunge
//! a message mid-session, stalls, talks garbage, and changes UIDVALIDITY
//! between sessions. First against the wire client, then through the
//! binary: the exit code SPEC §6 names, nothing lost, nothing marked seen
//! that was not delivered whole, and a clean next run with no duplicates.

use std::time::Duration;

use popfetch::config::secret::Secret;
use popfetch::error::ExitKind;
use popfetch::net::{self, Stream};
use popfetch::source::imap::{Client, Fetched, Session};
use popfetch::source::pop3::auth::AuthMethod;

use crate::support::certs::TestPki;
use crate::support::imapserver::{
    numbered, Fault, ImapConfig, ImapMsg, ImapServer, Tls as ImapTls,
};
use crate::support::{expected_delivery, files_in, maildir_messages, mixed_messages, Env, Run};

/// A message's text as the scripted server is given it.
fn text(i: usize, body: &str) -> Vec<u8> {
    format!(
        "From: Sender {i} <s{i}@example.org>\nTo: alice@example.com\nSubject: imap fault {i}\nMessage-ID: <imap.{i}@popfetch.test>\n\n{body}\n"
    )
    .into_bytes()
}

fn five() -> Vec<ImapMsg> {
    let texts: Vec<Vec<u8>> = (0..5)
        .map(|i| {
            text(
                i,
                &format!("body of message {i}\n.leading dot\nFrom the start"),
            )
        })
        .collect();
    numbered(&texts)
}

// ---------------------------------------------------------------------------
// The wire client against the scripted server

fn session_with(server: &ImapServer, timeout: Duration) -> Session {
    let tcp = net::connect("127.0.0.1", server.port(), timeout).unwrap();
    let client = Client::new(Stream::Plain(tcp), "127.0.0.1", None).unwrap();
    let mut session = client
        .login(AuthMethod::Auto, "alice", &Secret::new("secret"))
        .unwrap();
    session.select("INBOX", false).unwrap();
    session
}

fn session(server: &ImapServer) -> Session {
    session_with(server, Duration::from_secs(10))
}

/// Each requested message: its bytes, or why not.
fn fetch_all(
    session: &mut Session,
    uids: &[u32],
) -> (Vec<Result<Vec<u8>, String>>, popfetch::error::Result<()>) {
    let mut got: Vec<Result<Vec<u8>, String>> = vec![Err("not handed over".into()); uids.len()];
    let result = session.fetch(uids, None, &mut |i, f| {
        got[i] = match f {
            Fetched::Body(body) => {
                let mut data = Vec::new();
                body.read_to_end(&mut data)
                    .map(|_| data)
                    .map_err(|e| e.to_string())
            }
            Fetched::Refused(why) => Err(why),
        };
        Ok(())
    });
    (got, result)
}

#[test]
fn scripted_imap_server_serves_lists_fetches_and_expunges() {
    let texts = mixed_messages(12, 30_000);
    let server = ImapServer::start(ImapConfig {
        messages: numbered(&texts),
        ..ImapConfig::default()
    });
    let mut s = session(&server);
    assert_eq!(s.mailbox().unwrap().uidvalidity, 1000);
    let listing = s.listing().unwrap();
    assert_eq!(listing.len(), 12);
    assert_eq!(listing[0].id.as_deref(), Some("1000/1"));
    let uids: Vec<u32> = listing.iter().map(|e| e.handle).collect();
    let (got, result) = fetch_all(&mut s, &uids);
    result.unwrap();
    for (i, t) in texts.iter().enumerate() {
        let want = expected_delivery(t);
        let got = got[i].as_ref().unwrap();
        // The client hands over what the server stores, CRLF → LF; the
        // final LF is the target's to add.
        assert_eq!(got.as_slice(), &want[..got.len()], "message {i}");
    }
    assert_eq!(s.delete(&[2, 5]).unwrap(), vec![true, true]);
    s.finish().unwrap();
    assert_eq!(server.expunged(), vec![2, 5]);
    assert_eq!(server.messages().len(), 10);
    assert_eq!(server.body_fetches(1), 1);
    let log = server.log();
    assert!(
        log.iter()
            .any(|l| l.contains("UID FETCH") && l.contains("BODY.PEEK[]")),
        "{log:?}"
    );
    assert!(
        server.messages().iter().all(|m| m.flags.is_empty()),
        "PEEK sets no flag"
    );
}

/// AUTHENTICATE PLAIN with and without SASL-IR; without UIDPLUS, a
/// plain EXPUNGE only when no other message carries `\Deleted`.
#[test]
fn scripted_server_logs_in_with_plain_and_expunges_without_uidplus() {
    for sasl_ir in [true, false] {
        let mut capabilities = vec!["AUTH=PLAIN".to_string()];
        if sasl_ir {
            capabilities.push("SASL-IR".into());
        }
        let server = ImapServer::start(ImapConfig {
            messages: five(),
            capabilities,
            ..ImapConfig::default()
        });
        let tcp = net::connect("127.0.0.1", server.port(), Duration::from_secs(10)).unwrap();
        let client = Client::new(Stream::Plain(tcp), "127.0.0.1", None).unwrap();
        let mut s = client
            .login(AuthMethod::Plain, "alice", &Secret::new("secret"))
            .unwrap();
        s.select("INBOX", false).unwrap();
        let log = server.log();
        let auth: Vec<&String> = log.iter().filter(|l| l.contains("AUTHENTICATE")).collect();
        assert_eq!(auth.len(), 1, "{log:?}");
        assert_eq!(auth[0].split(' ').count(), if sasl_ir { 4 } else { 3 });
        assert_eq!(
            log.iter().any(|l| l == "<sasl response>"),
            !sasl_ir,
            "{log:?}"
        );
        // Another client marked UID 5: ours stay marked, nothing expunged.
        server.set_flags(5, &["\\Deleted"]);
        assert_eq!(s.delete(&[2]).unwrap(), vec![false]);
        assert!(server.expunged().is_empty());
        assert!(!server.log().iter().any(|l| l.ends_with(" EXPUNGE")));
        server.set_flags(5, &[]);
        server.set_flags(2, &[]);
        assert_eq!(s.delete(&[2, 3]).unwrap(), vec![true, true]);
        assert_eq!(server.expunged(), vec![2, 3]);
        assert!(server.log().iter().any(|l| l.contains("UID SEARCH")));
        s.finish().unwrap();
    }
}

#[test]
fn client_sees_each_scripted_fault_as_the_right_kind_of_error() {
    // (fault, what the fetch of every message must fail with)
    let cases: Vec<(&str, Fault, ExitKind)> = vec![
        (
            "drop inside a literal",
            Fault::DropInLiteral {
                uid: 3,
                after_bytes: 40,
            },
            ExitKind::TempFail,
        ),
        (
            "BYE in the middle",
            Fault::ByeBeforeBody { uid: 2 },
            ExitKind::TempFail,
        ),
        (
            "NO [UNAVAILABLE]",
            Fault::Reply {
                when: "BODY.PEEK[]".into(),
                reply: "NO [UNAVAILABLE] backend down, try later".into(),
            },
            ExitKind::TempFail,
        ),
        (
            "garbage",
            Fault::Garbage {
                when: "BODY.PEEK[]".into(),
            },
            ExitKind::Protocol,
        ),
    ];
    for (what, fault, kind) in cases {
        let server = ImapServer::start(ImapConfig {
            messages: five(),
            ..ImapConfig::default()
        });
        let mut s = session(&server);
        server.set_faults(vec![fault]);
        let (_, result) = fetch_all(&mut s, &[1, 2, 3, 4, 5]);
        let err = result.expect_err(what);
        assert_eq!(err.kind(), kind, "{what}: {err}");
    }
}

#[test]
fn client_times_out_on_a_stalled_fetch() {
    let server = ImapServer::start(ImapConfig {
        messages: five(),
        faults: vec![Fault::Stall {
            when: "BODY.PEEK[]".into(),
        }],
        ..ImapConfig::default()
    });
    let mut s = session_with(&server, Duration::from_secs(1));
    let (_, result) = fetch_all(&mut s, &[1, 2]);
    assert_eq!(result.unwrap_err().kind(), ExitKind::TempFail);
}

#[test]
fn lying_sizes_and_an_expunge_by_another_client_are_survived() {
    let msgs = five();
    let server = ImapServer::start(ImapConfig {
        messages: msgs.clone(),
        faults: vec![
            Fault::LyingSize { uid: 1, delta: -30 },
            Fault::LyingSize {
                uid: 2,
                delta: 5000,
            },
            Fault::ExpungeByOther {
                when: "BODY.PEEK[]".into(),
                uid: 4,
            },
        ],
        ..ImapConfig::default()
    });
    let mut s = session(&server);
    let listing = s.listing().unwrap();
    assert_eq!(listing[0].size, msgs[0].size() as u64 - 30);
    assert_eq!(listing[1].size, msgs[1].size() as u64 + 5000);
    let (got, result) = fetch_all(&mut s, &[1, 2, 3, 4, 5]);
    result.unwrap();
    for i in [0, 1, 2, 4] {
        let want = expected_delivery(&msgs[i].data);
        assert_eq!(got[i].as_ref().unwrap(), &want, "message {}", i + 1);
    }
    assert!(got[3].is_err(), "UID 4 was expunged by the other client");
    s.finish().unwrap();
}

#[test]
fn uidvalidity_changes_between_sessions() {
    let server = ImapServer::start(ImapConfig {
        messages: five(),
        ..ImapConfig::default()
    });
    let mut s = session(&server);
    assert_eq!(s.listing().unwrap()[4].id.as_deref(), Some("1000/5"));
    s.finish().unwrap();
    server.change_uidvalidity(2000, 101);
    let mut s = session(&server);
    assert_eq!(s.mailbox().unwrap().uidvalidity, 2000);
    let listing = s.listing().unwrap();
    assert_eq!(listing[0].id.as_deref(), Some("2000/101"));
    assert_eq!(listing[4].id.as_deref(), Some("2000/105"));
    s.finish().unwrap();
}

// ---------------------------------------------------------------------------
// Through the binary

/// An IMAP account on the scripted server (plain TCP: the faults are the
/// point here, TLS is tested against Dovecot).
fn imap_account(server: &ImapServer, timeout: u32) -> String {
    format!(
        "[accounts.im]\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nuser = \"alice\"\npassword = \"secret\"\nmaildir = \"~/Mail/im\"\ntimeout = {timeout}\n",
        server.port()
    )
}

/// How many copies of each message the Maildir holds (by the server's
/// order of `msgs`), and the files that are none of them.
fn copies(env: &Env, msgs: &[ImapMsg]) -> (Vec<usize>, usize) {
    let mut counts = vec![0; msgs.len()];
    let mut strangers = 0;
    for file in maildir_messages(&env.maildir("im")) {
        match msgs.iter().position(|m| expected_delivery(&m.data) == file) {
            Some(i) => counts[i] += 1,
            None => strangers += 1,
        }
    }
    (counts, strangers)
}

/// Nothing partial, nothing twice, nothing left in tmp/.
#[track_caller]
fn assert_no_damage(what: &str, env: &Env, msgs: &[ImapMsg]) {
    let (counts, strangers) = copies(env, msgs);
    assert_eq!(strangers, 0, "{what}: partial or foreign files");
    assert!(counts.iter().all(|&c| c <= 1), "{what}: twice: {counts:?}");
    assert!(
        files_in(&env.maildir("im").join("tmp")).is_empty(),
        "{what}: files left in tmp/"
    );
}

#[track_caller]
fn assert_each_once(what: &str, env: &Env, msgs: &[ImapMsg]) {
    let (counts, strangers) = copies(env, msgs);
    assert_eq!(strangers, 0, "{what}: partial or foreign files");
    assert!(counts.iter().all(|&c| c == 1), "{what}: {counts:?}");
}

fn new_of(run: &Run) -> u64 {
    run.json_lines()[0]["new"].as_u64().unwrap_or(0)
}

#[test]
fn clean_imap_sync_from_the_scripted_server() {
    let msgs = five();
    let server = ImapServer::start(ImapConfig {
        messages: msgs.clone(),
        ..ImapConfig::default()
    });
    let env = Env::new();
    env.write_config(&imap_account(&server, 10));
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(new_of(&run), 5, "{}", run.stderr);
    assert_each_once("first run", &env, &msgs);
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(new_of(&run), 0);
    assert_eq!(server.total_body_fetches(), 5);
    assert!(
        server.messages().iter().all(|m| m.flags.is_empty()),
        "no \\Seen from fetching"
    );
    let run = env.run(&["sync", "--delete", "--json"]);
    run.expect_code(0);
    assert_eq!(server.expunged(), vec![1, 2, 3, 4, 5], "{}", run.stderr);
    assert!(server.messages().is_empty());
}

/// Each fault in the middle of a fetch, keeping and deleting: the exit
/// code SPEC §6 names, nothing damaged or doubled, nothing expunged that
/// is not in the Maildir, and a clean next run delivers the rest once.
#[test]
fn imap_faults_exit_with_their_code_and_lose_nothing() {
    // (fault, exit code, messages delivered before it)
    let cases: Vec<(&str, Fault, i32, usize)> = vec![
        (
            "drop inside a literal",
            Fault::DropInLiteral {
                uid: 3,
                after_bytes: 50,
            },
            75,
            2,
        ),
        ("BYE in the middle", Fault::ByeBeforeBody { uid: 3 }, 75, 2),
        (
            "NO [UNAVAILABLE]",
            Fault::Reply {
                when: "BODY.PEEK[]".into(),
                reply: "NO [UNAVAILABLE] backend down, try later".into(),
            },
            75,
            0,
        ),
        (
            "a stall past the timeout",
            Fault::Stall {
                when: "BODY.PEEK[]".into(),
            },
            75,
            0,
        ),
        (
            "garbage",
            Fault::Garbage {
                when: "BODY.PEEK[]".into(),
            },
            76,
            0,
        ),
        (
            "BYE at the listing",
            Fault::Bye {
                when: "RFC822.SIZE".into(),
            },
            75,
            0,
        ),
    ];
    for (what, fault, code, before) in cases {
        for delete in [false, true] {
            let what = format!("{what} ({})", if delete { "delete" } else { "keep" });
            let msgs = five();
            let server = ImapServer::start(ImapConfig {
                messages: msgs.clone(),
                faults: vec![fault.clone()],
                ..ImapConfig::default()
            });
            let env = Env::new();
            env.write_config(&imap_account(&server, 2));
            let mut args = vec!["sync", "--json"];
            if delete {
                args.push("--delete");
            }
            let run = env.run(&args);
            assert_eq!(run.code, code, "{what}\n{}", run.stderr);
            assert_no_damage(&what, &env, &msgs);
            let (counts, _) = copies(&env, &msgs);
            assert_eq!(
                counts.iter().sum::<usize>(),
                before,
                "{what}: what came whole before the fault is kept\n{}",
                run.stderr
            );
            assert!(
                server
                    .messages()
                    .iter()
                    .all(|m| !m.flags.iter().any(|f| f == "\\Seen")),
                "{what}: fetching set \\Seen"
            );
            for uid in server.expunged() {
                assert_eq!(
                    counts[uid as usize - 1],
                    1,
                    "{what}: UID {uid} expunged but not delivered"
                );
            }
            server.clear_faults();
            let run = env.run(&args);
            run.expect_code(0);
            assert_each_once(&what, &env, &msgs);
            if delete {
                assert!(server.messages().is_empty(), "{what}: left on the server");
            }
            let run = env.run(&["sync", "--json"]);
            run.expect_code(0);
            assert_eq!(new_of(&run), 0, "{what}: third run");
        }
    }
}

/// Faults while deleting: every message is delivered and recorded first,
/// so whatever the server did with its `\Deleted` flags, the next run
/// deletes the rest and delivers nothing again.
#[test]
fn imap_faults_while_deleting_lose_and_double_nothing() {
    let cases: Vec<(&str, Fault)> = vec![
        (
            "BYE at UID STORE",
            Fault::Bye {
                when: "UID STORE".into(),
            },
        ),
        (
            "NO [UNAVAILABLE] at UID EXPUNGE",
            Fault::Reply {
                when: "UID EXPUNGE".into(),
                reply: "NO [UNAVAILABLE] try later".into(),
            },
        ),
        (
            "a drop at UID EXPUNGE",
            Fault::Bye {
                when: "UID EXPUNGE".into(),
            },
        ),
    ];
    for (what, fault) in cases {
        let msgs = five();
        let server = ImapServer::start(ImapConfig {
            messages: msgs.clone(),
            faults: vec![fault],
            ..ImapConfig::default()
        });
        let env = Env::new();
        env.write_config(&imap_account(&server, 5));
        let run = env.run(&["sync", "--delete", "--json"]);
        assert_eq!(run.code, 75, "{what}\n{}", run.stderr);
        assert_each_once(what, &env, &msgs);
        assert!(server.expunged().is_empty(), "{what}");
        server.clear_faults();
        server.clear_counts();
        let run = env.run(&["sync", "--delete", "--json"]);
        run.expect_code(0);
        assert_eq!(new_of(&run), 0, "{what}");
        assert_eq!(server.total_body_fetches(), 0, "{what}: fetched again");
        assert_eq!(server.expunged(), vec![1, 2, 3, 4, 5], "{what}");
        assert_each_once(what, &env, &msgs);
    }
}

#[test]
fn lying_sizes_and_an_expunge_by_another_client_through_the_binary() {
    let msgs = five();
    let server = ImapServer::start(ImapConfig {
        messages: msgs.clone(),
        faults: vec![
            Fault::LyingSize { uid: 1, delta: -60 },
            Fault::LyingSize {
                uid: 2,
                delta: 100_000,
            },
            Fault::ExpungeByOther {
                when: "BODY.PEEK[]".into(),
                uid: 4,
            },
        ],
        ..ImapConfig::default()
    });
    let env = Env::new();
    env.write_config(&imap_account(&server, 10));
    let run = env.run(&["sync", "--delete", "--json"]);
    run.expect_code(0);
    assert_eq!(new_of(&run), 4, "{}", run.stderr);
    let (counts, strangers) = copies(&env, &msgs);
    assert_eq!(
        (counts, strangers),
        (vec![1, 1, 1, 0, 1], 0),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("message 4"), "{}", run.stderr);
    assert_eq!(server.expunged(), vec![1, 2, 3, 5]);
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(new_of(&run), 0);
}

/// The server renumbers the folder between two syncs (a new UIDVALIDITY,
/// new UIDs) and a message arrives: only that one is fetched, the rest
/// are known again by their headers, and the user is told.
#[test]
fn a_uidvalidity_change_redelivers_nothing() {
    let msgs = five();
    let server = ImapServer::start(ImapConfig {
        messages: msgs.clone(),
        ..ImapConfig::default()
    });
    let env = Env::new();
    env.write_config(&imap_account(&server, 10));
    env.run(&["sync", "--json"]).expect_code(0);
    assert_each_once("first run", &env, &msgs);

    server.change_uidvalidity(2000, 101);
    let late = ImapMsg::new(106, text(5, "came after the renumbering"));
    server.push_message(late.clone());
    server.clear_counts();
    // `check` and a dry run see what the sync will do, and change nothing.
    let run = env.run(&["check", "--json"]);
    run.expect_code(0);
    assert_eq!(new_of(&run), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("UIDVALIDITY 1000 → 2000"),
        "{}",
        run.stderr
    );
    let run = env.run(&["sync", "--dry-run", "--json"]);
    run.expect_code(0);
    let planned = run.json_lines()[0]["planned"].clone();
    let fetch: Vec<&serde_json::Value> = planned
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["action"] == "fetch")
        .collect();
    assert_eq!(fetch.len(), 1, "{planned}");
    assert_eq!(fetch[0]["uidl"], "2000/106");
    assert_eq!(server.total_body_fetches(), 0);
    assert_eq!(server.header_fetches(101), 2, "check and the dry run");
    server.clear_counts();
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(new_of(&run), 1, "{}", run.stderr);
    assert_eq!(server.total_body_fetches(), 1, "only the new one");
    assert_eq!(server.body_fetches(106), 1);
    assert!(
        run.stderr.contains("UIDVALIDITY 1000 → 2000")
            && run.stderr.contains("5 matched")
            && run.stderr.contains("1 new"),
        "{}",
        run.stderr
    );
    let mut all = msgs.clone();
    all.push(late);
    assert_each_once("after the renumbering", &env, &all);

    // Settled: no header is asked for again, nothing is new.
    server.clear_counts();
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(new_of(&run), 0);
    assert_eq!(server.header_fetches(101), 0);
    assert!(!run.stderr.contains("UIDVALIDITY"), "{}", run.stderr);
    // The moved records are what deleting goes by.
    let run = env.run(&["sync", "--delete", "--json"]);
    run.expect_code(0);
    assert_eq!(server.expunged(), vec![101, 102, 103, 104, 105, 106]);
    assert_each_once("after deleting", &env, &all);
}

/// Over implicit TLS (the test PKI): a drop inside a literal is still a
/// temporary failure (no TLS close_notify either), and the next run
/// completes.
#[test]
fn imaps_drop_inside_a_literal_then_a_clean_run() {
    let env = Env::new();
    let pki = std::sync::Arc::new(TestPki::generate(env.dir.path()));
    let msgs = five();
    let server = ImapServer::start(ImapConfig {
        messages: msgs.clone(),
        tls: ImapTls::Implicit(pki.clone()),
        faults: vec![Fault::DropInLiteral {
            uid: 2,
            after_bytes: 10,
        }],
        ..ImapConfig::default()
    });
    let config = imap_account(&server, 10).replace(
        "tls = \"none\"",
        &format!(
            "tls = \"implicit\"\nca_file = \"{}\"",
            pki.ca_path.display()
        ),
    );
    env.write_config(&config);
    let run = env.run(&["sync", "--json"]);
    assert_eq!(run.code, 75, "{}", run.stderr);
    assert!(!run.stderr.contains("unencrypted"), "{}", run.stderr);
    assert_no_damage("IMAPS drop", &env, &msgs);
    server.clear_faults();
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_each_once("IMAPS after the drop", &env, &msgs);
    assert!(!run.stderr.contains("secret"), "{}", run.stderr);
}

/// The sessions that meet the renumbering fail: one while reading the
/// headers (nothing changes), one while fetching the new message (what
/// was matched stays matched); the next run fetches the new message once
/// and nothing else.
#[test]
fn a_uidvalidity_change_then_a_drop_redelivers_nothing() {
    let msgs = five();
    let server = ImapServer::start(ImapConfig {
        messages: msgs.clone(),
        ..ImapConfig::default()
    });
    let env = Env::new();
    env.write_config(&imap_account(&server, 10));
    env.run(&["sync", "--json"]).expect_code(0);
    server.change_uidvalidity(77, 1);
    let late = ImapMsg::new(6, text(5, "new after the renumbering"));
    server.push_message(late.clone());
    // Cut off while the headers are read: nothing is fetched or changed.
    server.set_faults(vec![Fault::Bye {
        when: "BODY.PEEK[HEADER]".into(),
    }]);
    server.clear_counts();
    let run = env.run(&["sync", "--delete", "--json"]);
    assert_eq!(run.code, 75, "{}", run.stderr);
    assert_eq!(server.total_body_fetches(), 0);
    assert!(server.expunged().is_empty());
    assert_each_once("after the cut", &env, &msgs);
    server.set_faults(vec![Fault::DropInLiteral {
        uid: 6,
        after_bytes: 20,
    }]);
    server.clear_counts();
    let run = env.run(&["sync", "--delete", "--json"]);
    assert_eq!(run.code, 75, "{}", run.stderr);
    assert!(
        run.stderr.contains("UIDVALIDITY 1000 → 77"),
        "{}",
        run.stderr
    );
    assert_eq!(server.total_body_fetches(), 1, "only the new one was tried");
    assert!(server.expunged().is_empty());
    let mut all = msgs.clone();
    all.push(late);
    assert_no_damage("after the drop", &env, &all);
    server.clear_faults();
    server.clear_counts();
    let run = env.run(&["sync", "--delete", "--json"]);
    run.expect_code(0);
    assert_eq!(new_of(&run), 1, "{}", run.stderr);
    assert!(!run.stderr.contains("UIDVALIDITY"), "{}", run.stderr);
    assert_eq!(server.total_body_fetches(), 1);
    assert_eq!(server.expunged(), vec![1, 2, 3, 4, 5, 6]);
    assert_each_once("after the clean run", &env, &all);
}

// ---------------------------------------------------------------------------
// Against Dovecot

/// Dovecot forgets a folder's UIDs (its uidlist and indexes removed, as
/// after a restore or a broken index): a new UIDVALIDITY, every message
/// numbered again. The next sync delivers only what arrived since, and
/// says why the rest is not fetched.
#[test]
fn dovecot_renumbering_a_folder_redelivers_nothing() {
    use crate::support::dovecot::{require_dovecot_imap, Dovecot};
    if !require_dovecot_imap() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice")]);
    let first = mixed_messages(30, 100_000);
    dc.add_messages("alice", &first);
    let env = Env::new();
    env.write_config(&format!(
        "[accounts.im]\nprotocol = \"imap\"\nhost = \"localhost\"\nport = {}\ntls = \"implicit\"\nuser = \"alice\"\npassword = \"pw-alice\"\nca_file = \"{}\"\nmaildir = \"~/Mail/im\"\ntimeout = 20\n",
        dc.imaps_port(),
        dc.pki().ca_path.display()
    ));
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(new_of(&run), 30, "{}", run.stderr);

    // Dovecot's UIDVALIDITY is a time in seconds: make the new one differ.
    std::thread::sleep(Duration::from_millis(1100));
    let root = dc.maildir("alice");
    for name in files_in(&root) {
        if name.starts_with("dovecot") {
            std::fs::remove_file(root.join(&name)).unwrap();
        }
    }
    let late: Vec<Vec<u8>> = (0..3)
        .map(|i| text(100 + i, "arrived after the renumbering"))
        .collect();
    dc.add_messages("alice", &late);
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(new_of(&run), 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("renumbered") && run.stderr.contains("30 matched"),
        "{}",
        run.stderr
    );
    let mut all: Vec<Vec<u8>> = first
        .iter()
        .chain(&late)
        .map(|d| expected_delivery(d))
        .collect();
    all.sort();
    assert_eq!(maildir_messages(&env.maildir("im")), all);

    let run = env.run(&["sync", "--delete", "--json"]);
    run.expect_code(0);
    assert_eq!(new_of(&run), 0, "{}", run.stderr);
    assert_eq!(dc.message_count("alice"), 0);
    assert_eq!(maildir_messages(&env.maildir("im")), all);
}

// ---------------------------------------------------------------------------
// The no-new-mail shortcut: a folder SELECT finds as the last complete and
// clean sync left it is not listed again.

/// The session listed the folder (asked for every UID and size).
fn listed(server: &ImapServer) -> bool {
    server.log().iter().any(|l| l.contains("UID FETCH 1:*"))
}

/// Syncs once; the number of new messages.
#[track_caller]
fn sync_new(env: &Env, args: &[&str]) -> u64 {
    let mut all = vec!["sync", "--json"];
    all.extend_from_slice(args);
    let run = env.run(&all);
    run.expect_code(0);
    new_of(&run)
}

/// Syncs twice from the start (first fetch, then the run that finds the
/// folder settled), so the next run may take the shortcut; clears the log.
fn settled(server: &ImapServer, env: &Env, n: u64) {
    assert_eq!(sync_new(env, &[]), n);
    server.clear_counts();
}

#[test]
fn no_new_mail_ends_after_select_and_new_mail_is_still_fetched() {
    let msgs = five();
    let server = ImapServer::start(ImapConfig {
        messages: msgs.clone(),
        ..ImapConfig::default()
    });
    let env = Env::new();
    env.write_config(&imap_account(&server, 10));
    settled(&server, &env, 5);

    let run = env.run(&["sync", "-v", "--json"]);
    run.expect_code(0);
    assert_eq!(new_of(&run), 0);
    assert!(!listed(&server), "{:?}", server.log());
    assert!(
        run.stderr
            .contains("folder unchanged since the last complete sync"),
        "{}",
        run.stderr
    );
    let log = server.log();
    assert!(log.iter().any(|l| l.contains("SELECT")), "{log:?}");
    assert!(log.iter().any(|l| l.contains("LOGOUT")), "{log:?}");

    // New mail changes UIDNEXT: listed, fetched, and settled again.
    let late = ImapMsg::new(6, text(6, "came later"));
    server.push_message(late.clone());
    server.clear_counts();
    assert_eq!(sync_new(&env, &[]), 1);
    assert!(listed(&server));
    assert_eq!(server.total_body_fetches(), 1);
    assert_eq!(server.body_fetches(6), 1);
    server.clear_counts();
    assert_eq!(sync_new(&env, &[]), 0);
    assert!(!listed(&server), "{:?}", server.log());
    let mut all = msgs.clone();
    all.push(late);
    assert_each_once("after the new one", &env, &all);
}

/// Another client expunges a message and a new one arrives: MESSAGES is
/// as before, UIDNEXT is not.
#[test]
fn an_expunge_then_append_that_keeps_messages_is_caught_by_uidnext() {
    let msgs = five();
    let server = ImapServer::start(ImapConfig {
        messages: msgs.clone(),
        ..ImapConfig::default()
    });
    let env = Env::new();
    env.write_config(&imap_account(&server, 10));
    settled(&server, &env, 5);
    server.remove_message(5);
    let late = ImapMsg::new(6, text(6, "replaced number five"));
    server.push_message(late.clone());
    assert_eq!(server.messages().len(), 5);
    server.clear_counts();
    assert_eq!(sync_new(&env, &[]), 1);
    assert!(listed(&server));
    assert_eq!(server.body_fetches(6), 1);
    let mut all = msgs.clone();
    all.push(late);
    assert_each_once("after the swap", &env, &all);

    // The highest message expunged, and the one after it too: MESSAGES
    // drops, UIDNEXT stays; the records of those gone are pruned.
    server.clear_counts();
    assert_eq!(sync_new(&env, &[]), 0);
    server.remove_message(6);
    server.clear_counts();
    assert_eq!(sync_new(&env, &[]), 0);
    assert!(listed(&server), "MESSAGES went down");
    let run = env.run(&["seen", "list", "im", "--json"]);
    run.expect_code(0);
    assert!(run.stdout.contains("1000/4"), "{}", run.stdout);
    assert!(!run.stdout.contains("1000/6"), "{}", run.stdout);
}

/// A renumbered folder with the same UIDNEXT and MESSAGES is still
/// listed: UIDVALIDITY is part of the snapshot.
#[test]
fn a_uidvalidity_change_alone_is_listed() {
    let msgs = five();
    let server = ImapServer::start(ImapConfig {
        messages: msgs.clone(),
        ..ImapConfig::default()
    });
    let env = Env::new();
    env.write_config(&imap_account(&server, 10));
    settled(&server, &env, 5);
    server.change_uidvalidity(2000, 1);
    server.clear_counts();
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(new_of(&run), 0, "{}", run.stderr);
    assert!(listed(&server));
    assert!(
        run.stderr.contains("UIDVALIDITY 1000 → 2000"),
        "{}",
        run.stderr
    );
    assert_eq!(server.total_body_fetches(), 0);
    assert_each_once("after the renumbering", &env, &msgs);
}

/// With CONDSTORE the folder is SELECTed with `(CONDSTORE)` and a flag
/// another client changed (HIGHESTMODSEQ up, the counts as they were)
/// makes the folder listed again.
#[test]
fn with_condstore_a_flag_change_is_listed() {
    let msgs = five();
    let mut cfg = ImapConfig {
        messages: msgs.clone(),
        ..ImapConfig::default()
    };
    cfg.capabilities.push("CONDSTORE".into());
    let server = ImapServer::start(cfg);
    let env = Env::new();
    env.write_config(&imap_account(&server, 10));
    settled(&server, &env, 5);
    assert_eq!(sync_new(&env, &[]), 0);
    assert!(!listed(&server));
    assert!(
        server.log().iter().any(|l| l.contains("(CONDSTORE)")),
        "{:?}",
        server.log()
    );
    server.set_flags(2, &["\\Flagged"]);
    server.clear_counts();
    assert_eq!(sync_new(&env, &[]), 0);
    assert!(listed(&server), "HIGHESTMODSEQ changed");
    server.clear_counts();
    assert_eq!(sync_new(&env, &[]), 0);
    assert!(!listed(&server), "settled again");
}

/// Where the answer can change while UIDNEXT and MESSAGES do not, every
/// run lists the folder: `fetch = "unseen"` (flags), `keep_days` (time),
/// a `filter`, a message left over `max_size`, `--all`, `--dry-run`, a
/// changed policy (`--delete`), and records changed by `seen forget`.
#[test]
fn where_the_answer_can_change_unseen_the_folder_is_always_listed() {
    // (what, extra config lines, extra sync arguments)
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("fetch = unseen", "fetch = \"unseen\"\n".into(), vec![]),
        ("keep_days", "keep_days = 30\n".into(), vec![]),
        (
            "filter",
            "filter = \"cat >/dev/null; exit 0\"\n".into(),
            vec![],
        ),
        ("over max_size", "max_size = \"300 B\"\n".into(), vec![]),
        ("--all", String::new(), vec!["--all"]),
        ("--dry-run", String::new(), vec!["--dry-run"]),
    ];
    for (what, extra, args) in cases {
        let msgs = five();
        let mut big = text(9, &"x".repeat(400));
        big.truncate(400);
        let mut all = msgs.clone();
        all.push(ImapMsg::new(6, &big));
        let server = ImapServer::start(ImapConfig {
            messages: all,
            ..ImapConfig::default()
        });
        let env = Env::new();
        env.write_config(&format!("{}{extra}", imap_account(&server, 10)));
        let _ = env.run(&["sync", "--json"]);
        for run in 0..2 {
            server.clear_counts();
            let mut all = vec!["sync", "--json"];
            all.extend_from_slice(&args);
            let out = env.run(&all);
            assert!(
                out.code == 0 || out.code == 2,
                "{what}: exit {} {}",
                out.code,
                out.stderr
            );
            assert!(listed(&server), "{what}: run {run} was not listed");
        }
    }

    // A changed policy, and records forgotten, list again too.
    let msgs = five();
    let server = ImapServer::start(ImapConfig {
        messages: msgs.clone(),
        ..ImapConfig::default()
    });
    let env = Env::new();
    env.write_config(&imap_account(&server, 10));
    settled(&server, &env, 5);
    env.run(&["seen", "forget", "im", "1000/3"]).expect_code(0);
    assert_eq!(sync_new(&env, &[]), 1, "the forgotten one again");
    assert!(listed(&server));
    server.clear_counts();
    assert_eq!(sync_new(&env, &["--delete"]), 0);
    assert!(listed(&server), "--delete is another policy");
    assert!(server.messages().is_empty());
}
