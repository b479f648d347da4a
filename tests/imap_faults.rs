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

use crate::support::imapserver::{numbered, Fault, ImapConfig, ImapMsg, ImapServer};
use crate::support::{expected_delivery, mixed_messages};

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
