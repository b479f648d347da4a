//! POP2 (RFC 937) against the scripted POP2 server.

use crate::support::pop2server::Pop2Server;
use crate::support::{expected_delivery, maildir_messages, mixed_messages, Env};

fn pop2_account(port: u16, extra: &str) -> String {
    format!(
        "[accounts.old]\nprotocol = \"pop2\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nuser = \"alice\"\npassword = \"secret\"\nmaildir = \"~/Mail/old\"\ntimeout = 10\n{extra}\n"
    )
}

fn sorted_expected(datas: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = datas.iter().map(|d| expected_delivery(d)).collect();
    v.sort();
    v
}

#[test]
fn pop2_keep_mode_delivers_each_message_once_over_three_syncs() {
    let datas = mixed_messages(8, 5000);
    let server = Pop2Server::start(datas.clone());
    let env = Env::new();
    env.write_config(&pop2_account(server.port(), ""));
    for _ in 0..3 {
        env.run(&["sync"]).expect_code(0);
        assert_eq!(
            maildir_messages(&env.maildir("old")),
            sorted_expected(&datas)
        );
    }
    assert_eq!(server.inbox().len(), 8, "keep leaves them");
    assert!(server.log().iter().all(|l| l != "ACKD"));
}

#[test]
fn pop2_delete_mode_empties_the_mailbox_and_folder_works() {
    let datas = mixed_messages(5, 1000);
    let server = Pop2Server::start(vec![b"Subject: inbox\n\nnot this\n".to_vec()]);
    server.add_folder("archive", datas.clone());
    let env = Env::new();
    env.write_config(&pop2_account(
        server.port(),
        "keep = false\nfolder = \"archive\"",
    ));
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 5);
    assert_eq!(run.json_lines()[0]["deleted"], 5);
    assert_eq!(
        maildir_messages(&env.maildir("old")),
        sorted_expected(&datas)
    );
    assert_eq!(server.inbox().len(), 1, "only the folder was touched");
    env.run(&["sync"]).expect_code(0);
    assert_eq!(maildir_messages(&env.maildir("old")).len(), 5);
}

#[test]
fn pop2_delivery_failure_sends_nack_and_loses_nothing() {
    let datas = mixed_messages(3, 1000);
    let server = Pop2Server::start(datas.clone());
    let env = Env::new();
    let cfg = pop2_account(server.port(), "keep = false").replace(
        "maildir = \"~/Mail/old\"",
        "mda = \"cat >/dev/null; exit 1\"",
    );
    env.write_config(&cfg);
    let run = env.run(&["sync"]);
    run.expect_code(74);
    assert!(server.log().iter().any(|l| l == "NACK"));
    assert!(
        server.log().iter().all(|l| l != "ACKD"),
        "{:?}",
        server.log()
    );
    assert_eq!(server.inbox().len(), 3, "nothing lost");
    env.write_config(&pop2_account(server.port(), "keep = false"));
    env.run(&["sync"]).expect_code(0);
    assert_eq!(
        maildir_messages(&env.maildir("old")),
        sorted_expected(&datas)
    );
    assert!(server.inbox().is_empty());
}

#[test]
fn pop2_wrong_password_is_77_and_accounts_shows_protocol() {
    let server = Pop2Server::start(vec![]);
    let env = Env::new();
    env.write_config(&pop2_account(server.port(), "").replace("\"secret\"", "\"nope\""));
    env.run(&["sync"]).expect_code(77);
    let run = env.run(&["accounts", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["protocol"], "pop2");
    assert_eq!(run.json_lines()[0]["port"], server.port());
}

/// The server's reply is quoted as it was sent, not as a Rust enum
/// (`Refused("…")`), and the exit code says the protocol failed.
#[test]
fn pop2_unconfirmed_quit_quotes_the_server_reply_not_rust_debug_text() {
    let server = Pop2Server::start(mixed_messages(2, 100));
    server.refuse_quit("mailbox is read-only");
    let env = Env::new();
    env.write_config(&pop2_account(server.port(), "keep = false"));
    let run = env.run(&["sync"]);
    run.expect_code(76);
    assert!(
        run.stderr
            .contains("QUIT was not confirmed (`- mailbox is read-only`)"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("Refused("), "{}", run.stderr);
    assert_eq!(server.inbox().len(), 2, "QUIT refused: nothing deleted");
}

#[test]
fn pop2_check_counts_and_other_commands_say_why_not() {
    let server = Pop2Server::start(mixed_messages(3, 100));
    let env = Env::new();
    env.write_config(&pop2_account(server.port(), "keep = false"));
    let run = env.run(&["check", "--json"]);
    run.expect_code(0);
    let j = &run.json_lines()[0];
    assert_eq!(j["new"], 3);
    assert_eq!(j["total"], 3);
    assert!(
        server.log().iter().all(|l| l != "RETR"),
        "check reads no message"
    );
    let run = env.run(&["list", "old"]);
    run.expect_code(64);
    assert!(run.stderr.contains("POP2"), "{}", run.stderr);
}

/// Delivery copies a message in 64 KiB blocks, so after CRLF became LF the
/// last read of a block can ask for a single byte. The POP2 body refused
/// one-byte reads ("read buffer too small"): long messages, depending on
/// where their lines fell, failed to deliver at every sync.
#[test]
fn pop2_long_messages_deliver_whatever_their_line_lengths() {
    let datas: Vec<Vec<u8>> = (1..=6)
        .map(|k| {
            let mut m = format!("Subject: long {k}\n\n").into_bytes();
            let mut i = 0;
            while m.len() < 150_000 {
                i += 1;
                m.extend(std::iter::repeat_n(b'x', (i * k) % 77));
                m.push(b'\n');
            }
            m
        })
        .collect();
    let server = Pop2Server::start(datas.clone());
    let env = Env::new();
    env.write_config(&pop2_account(server.port(), ""));
    env.run(&["sync"]).expect_code(0);
    assert_eq!(
        maildir_messages(&env.maildir("old")),
        sorted_expected(&datas)
    );
}

/// POP2 names a message by its content, so identical messages are one:
/// delivered once, and with keep = false every copy goes once that one is
/// recorded; with keep = true they all stay and none comes again.
#[test]
fn pop2_identical_messages_are_delivered_once() {
    let same = b"Subject: twice\n\nthe same body\n".to_vec();
    let other = b"Subject: once\n\nanother body\n".to_vec();
    let datas = vec![same.clone(), other.clone(), same.clone()];
    for keep in [true, false] {
        let server = Pop2Server::start(datas.clone());
        let env = Env::new();
        let extra = if keep { "" } else { "keep = false" };
        env.write_config(&pop2_account(server.port(), extra));
        let run = env.run(&["sync", "--json"]);
        run.expect_code(0);
        assert_eq!(run.json_lines()[0]["new"], 2, "keep {keep}");
        let want = sorted_expected(&[same.clone(), other.clone()]);
        assert_eq!(maildir_messages(&env.maildir("old")), want, "keep {keep}");
        if keep {
            assert_eq!(server.inbox().len(), 3);
            assert!(server.log().iter().all(|l| l != "ACKD"));
        } else {
            assert_eq!(run.json_lines()[0]["deleted"], 3);
            assert!(server.inbox().is_empty(), "{:?}", server.log());
        }
        env.run(&["sync"]).expect_code(0);
        assert_eq!(maildir_messages(&env.maildir("old")), want, "keep {keep}");
    }
}
