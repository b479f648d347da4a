//! Message framing against a hostile server or sender (SPEC §8): a message
//! ends only at CRLF "." CRLF, a bare LF or CR is data and lands as it
//! came, a server that ends lines with a bare LF is refused at once, and a
//! reply no command asked for stops the session before anything more is
//! marked or deleted. POP3 and POP2.

use std::time::{Duration, Instant};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

use crate::codec_props::hostile_body;
use crate::support::pop2server::Pop2Server;
use crate::support::server::{Config, Fault, Msg, Server};
use crate::support::{expected_delivery, maildir_messages, Env};
use crate::sync::account;

/// What lands in the Maildir for `m`: its wire form with CRLF turned into
/// LF (a bare LF or CR stays).
fn landed(m: &Msg) -> Vec<u8> {
    expected_delivery(&m.wire())
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

/// A body that carries LF "." LF and then a whole forged reply and
/// message, as the SMTP-smuggling class of attack would put in a mail.
/// A client that takes a bare LF as a line end ends the message early and
/// reads the rest as the server's next replies.
const SMUGGLED: &[u8] = b"From: mallory@example.org\r\nSubject: harmless\r\n\r\nhello\n.\n+OK 80 octets\nFrom: ceo@example.com\nSubject: forged\n\nwire the money\n.\n";

fn smuggling_mailbox() -> Vec<Msg> {
    vec![
        Msg::raw("real-1", SMUGGLED),
        Msg::raw(
            "real-2",
            b"From: bob@example.org\r\nSubject: two\r\n\r\nbare\nLF and bare\rCR\r\n.dot\n.\r\n"
                .to_vec(),
        ),
    ]
}

#[test]
fn a_body_with_lf_dot_lf_cannot_smuggle_a_forged_message() {
    for pipelining in [true, false] {
        let env = Env::new();
        let msgs = smuggling_mailbox();
        let server = Server::start(Config {
            messages: msgs.clone(),
            pipelining,
            ..Config::default()
        });
        env.write_config(&account("f", server.port(), "none", ""));
        let run = env.run(&["sync"]);
        let root = env.maildir("f");
        let got = maildir_messages(&root);
        assert_eq!(
            sorted(got.clone()),
            sorted(msgs.iter().map(landed).collect()),
            "pipelining {pipelining}: exactly the two real messages, byte-exact: {:?}",
            got.iter()
                .map(|m| String::from_utf8_lossy(m))
                .collect::<Vec<_>>()
        );
        assert!(
            !got.iter().any(|m| m.starts_with(b"From: ceo@")),
            "nothing forged"
        );
        run.expect_code(0);
        // Both are seen: a second run fetches nothing, and delete mode
        // deletes both without fetching them again.
        env.run(&["sync", "--delete"]).expect_code(0);
        assert_eq!(maildir_messages(&root).len(), 2);
        for m in &msgs {
            assert_eq!(server.retr_count(&m.uidl), 1, "{} fetched once", m.uidl);
        }
        assert!(server.messages().is_empty(), "both deleted once seen");
    }
}

#[test]
fn hostile_bodies_land_byte_exact_through_a_server_that_stuffs_only_at_crlf() {
    // Random bodies (bare LF, bare CR, dots at line starts and after bare
    // LFs, reply-like text), each behind a header that makes it unique.
    let mut runner = TestRunner::deterministic();
    let strategy = hostile_body(60);
    let msgs: Vec<Msg> = (0..40)
        .map(|i| {
            let mut data = format!("Message-ID: <{i}@framing.test>\r\n\r\n").into_bytes();
            data.extend(strategy.new_tree(&mut runner).unwrap().current());
            Msg::raw(format!("raw-{i:02}"), data)
        })
        .collect();
    let env = Env::new();
    let server = Server::start(Config {
        messages: msgs.clone(),
        ..Config::default()
    });
    env.write_config(&account("f", server.port(), "none", "keep = false"));
    env.run(&["sync"]).expect_code(0);
    assert_eq!(
        sorted(maildir_messages(&env.maildir("f"))),
        sorted(msgs.iter().map(landed).collect())
    );
    assert!(server.messages().is_empty());
}

#[test]
fn a_server_that_ends_lines_with_a_bare_lf_gets_76_at_once() {
    let env = Env::new();
    let server = Server::start(Config {
        messages: smuggling_mailbox(),
        faults: vec![Fault::BareLfLines],
        ..Config::default()
    });
    env.write_config(&account("f", server.port(), "none", ""));
    let start = Instant::now();
    let run = env.run(&["sync"]);
    run.expect_code(76);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "no wait for a CR that never comes: {:?}",
        start.elapsed()
    );
    assert!(
        run.stderr.contains("bare LF") && run.stderr.contains("CRLF"),
        "{}",
        run.stderr
    );
    assert!(
        !server.log().iter().any(|l| l.starts_with("PASS")),
        "stopped at the greeting: {:?}",
        server.log()
    );
    assert!(maildir_messages(&env.maildir("f")).is_empty());
}

// ---------------------------------------------------------------------------
// POP2: a message is framed by its announced length, so there is no
// stuffing; a bare LF must still land as it came, and bytes beyond the
// announced length must never pass for the next reply.

fn pop2_account(port: u16, extra: &str) -> String {
    format!(
        "[accounts.old]\nprotocol = \"pop2\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nuser = \"alice\"\npassword = \"secret\"\nmaildir = \"~/Mail/old\"\ntimeout = 10\n{extra}\n"
    )
}

#[test]
fn pop2_bare_lf_and_cr_land_as_they_came() {
    let datas = vec![
        SMUGGLED.to_vec(),
        b"Subject: two\r\n\r\nbare\nLF and bare\rCR\r\n.\r\nlast\r\n".to_vec(),
    ];
    let server = Pop2Server::start_raw(datas.clone());
    let env = Env::new();
    env.write_config(&pop2_account(server.port(), "keep = false"));
    env.run(&["sync"]).expect_code(0);
    assert_eq!(
        sorted(maildir_messages(&env.maildir("old"))),
        sorted(datas.iter().map(|d| expected_delivery(d)).collect())
    );
    assert!(server.inbox().is_empty());
}

#[test]
fn pop2_bytes_beyond_the_announced_length_are_76_and_nothing_is_acknowledged() {
    // The tail of the message is a valid POP2 reply: a client that read it
    // as the answer to its next command would go on one step out of line.
    let datas = vec![
        b"Subject: one\r\n\r\nbody\r\n=4\r\n".to_vec(),
        b"Subject: two\r\n\r\nbody\r\n".to_vec(),
    ];
    let server = Pop2Server::start(datas.clone());
    server.announce_short_by(4);
    let env = Env::new();
    env.write_config(&pop2_account(server.port(), "keep = false"));
    let run = env.run(&["sync"]);
    run.expect_code(76);
    assert!(run.stderr.contains("out of step"), "{}", run.stderr);
    assert!(maildir_messages(&env.maildir("old")).is_empty());
    let log = server.log();
    assert!(
        !log.iter()
            .any(|l| l == "ACKD" || l == "ACKS" || l == "NACK" || l == "QUIT"),
        "{log:?}"
    );
    assert_eq!(server.inbox().len(), 2, "nothing deleted");
}

#[test]
fn pop2_a_server_that_ends_lines_with_a_bare_lf_gets_76() {
    // The POP2 test server's replies end in CRLF; a bare-LF greeting is
    // enough to show the reply reader refuses one.
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        sock.write_all(b"+ POP2 ready\n").unwrap();
        // Hold the connection open: a client waiting for CR would hang here.
        let mut buf = [0u8; 64];
        let _ = std::io::Read::read(&mut sock, &mut buf);
    });
    let env = Env::new();
    env.write_config(&pop2_account(port, ""));
    let start = Instant::now();
    let run = env.run(&["sync"]);
    run.expect_code(76);
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(run.stderr.contains("bare LF"), "{}", run.stderr);
    server.join().unwrap();
}
