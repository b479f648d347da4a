//! Issue 6 policies: keep_days, max_size, filter, mda, --dry-run.

use crate::support::server::{Config, Msg, Server};
use crate::support::{files_in, maildir_messages, Env};
use crate::sync::account;

fn numbered(n: usize, subject: impl Fn(usize) -> String) -> Vec<Msg> {
    (0..n)
        .map(|i| {
            Msg::new(
                format!("u{i}"),
                format!("Subject: {}\n\nbody {i}\n", subject(i)).into_bytes(),
            )
        })
        .collect()
}

fn retr_lines(server: &Server) -> usize {
    server
        .log()
        .iter()
        .filter(|l| l.starts_with("RETR"))
        .count()
}

#[test]
fn keep_days_zero_deletes_on_the_next_sync() {
    let env = Env::new();
    let server = Server::start(Config {
        messages: numbered(20, |i| format!("m{i}")),
        ..Config::default()
    });
    env.write_config(&account("t", server.port(), "none", "keep_days = 0"));
    let first = env.run(&["sync", "--json"]);
    first.expect_code(0);
    assert_eq!(first.json_lines()[0]["new"], 20);
    assert_eq!(server.messages().len(), 20, "first sync leaves them");
    server.push_message(Msg::new("late", b"Subject: late\n\nx\n".to_vec()));
    server.clear_log();
    let second = env.run(&["sync", "--json"]);
    second.expect_code(0);
    let j = &second.json_lines()[0];
    assert_eq!(j["deleted"], 20);
    assert_eq!(j["new"], 1);
    let deles: Vec<String> = server
        .log()
        .into_iter()
        .filter(|l| l.starts_with("DELE"))
        .collect();
    assert_eq!(
        deles.len(),
        20,
        "DELE only for the 20 downloaded before: {deles:?}"
    );
    assert!(!deles.contains(&"DELE 21".to_string()));
    assert_eq!(server.messages().len(), 1);
    assert_eq!(maildir_messages(&env.maildir("t")).len(), 21);
}

#[test]
fn max_size_leaves_big_messages_unread() {
    let env = Env::new();
    let mut msgs = numbered(3, |i| format!("small {i}"));
    let mut big = b"Subject: big\n\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 3_000_000));
    msgs.push(Msg::new("big", big));
    let server = Server::start(Config {
        messages: msgs,
        ..Config::default()
    });
    env.write_config(&account("t", server.port(), "none", "max_size = \"1 MB\""));
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["skipped"], 1);
    assert!(
        run.stderr.contains("larger than max_size"),
        "{}",
        run.stderr
    );
    assert_eq!(server.retr_count("big"), 0);
    assert_eq!(maildir_messages(&env.maildir("t")).len(), 3);
    assert_eq!(server.messages().len(), 4);
}

#[test]
fn filter_deletes_spam_unread_and_leaves_later() {
    let env = Env::new();
    let subjects = ["hello", "SPAM", "later", "news"];
    let server = Server::start(Config {
        messages: numbered(4, |i| subjects[i].to_string()),
        ..Config::default()
    });
    let filter = "h=$(cat); case \\\"$h\\\" in *'Subject: SPAM'*) exit 1;; *'Subject: later'*) exit 2;; esac; exit 0";
    env.write_config(&account(
        "t",
        server.port(),
        "none",
        &format!("filter = \"{filter}\""),
    ));
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    let j = &run.json_lines()[0];
    assert_eq!(j["new"], 2);
    assert_eq!(j["deleted"], 1);
    assert_eq!(server.retr_count("u1"), 0, "spam deleted unread");
    assert_eq!(server.retr_count("u2"), 0, "later left");
    let left: Vec<String> = server.messages().into_iter().map(|m| m.uidl).collect();
    assert_eq!(left, vec!["u0", "u2", "u3"]);
    // Asked again next time.
    server.clear_log();
    env.run(&["sync"]).expect_code(0);
    assert!(
        server.log().iter().any(|l| l == "TOP 2 0"),
        "{:?}",
        server.log()
    );
    assert_eq!(retr_lines(&server), 0);
}

/// The MDA the tests below deliver with: each message to `~/out/<UIDL>`.
const MDA_TO_OUT: &str = "cat > $HOME/out/$POPFETCH_UIDL";

/// A server with `count` messages (`u0`…) and an account delivering them
/// with [`MDA_TO_OUT`] (plus `extra` keys); returns the config text and
/// the `out` folder.
fn mda_setup(env: &Env, count: usize, extra: &str) -> (Server, String, std::path::PathBuf) {
    let server = Server::start(Config {
        messages: numbered(count, |i| format!("m{i}")),
        ..Config::default()
    });
    let out = env.home().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let cfg = account("t", server.port(), "none", extra)
        .replace("maildir = \"~/Mail/t\"", &format!("mda = \"{MDA_TO_OUT}\""));
    (server, cfg, out)
}

#[test]
fn mda_delivery_and_temporary_failure() {
    let env = Env::new();
    let (server, cfg, out) = mda_setup(&env, 3, "");
    env.write_config(&cfg);
    env.run(&["sync"]).expect_code(0);
    assert_eq!(files_in(&out), vec!["u0", "u1", "u2"]);
    assert_eq!(
        std::fs::read(out.join("u1")).unwrap(),
        b"Subject: m1\n\nbody 1\n"
    );

    server.push_message(Msg::new("u3", b"Subject: m3\n\nx\n".to_vec()));
    env.write_config(&cfg.replace(MDA_TO_OUT, "echo busy >&2; exit 75"));
    let run = env.run(&["sync"]);
    run.expect_code(75);
    assert!(
        run.stderr.contains("busy"),
        "MDA's stderr reported: {}",
        run.stderr
    );
    // Unseen: a working MDA gets it next time.
    env.write_config(&cfg);
    env.run(&["sync"]).expect_code(0);
    assert_eq!(files_in(&out).len(), 4);
}

/// An MDA that says "later" (75) for one message ends the fetching, but the
/// session still ends cleanly: what was delivered before it is deleted in
/// the same run (delete mode), nothing after it is touched, and the next
/// run delivers the rest once.
#[test]
fn mda_temporary_failure_still_deletes_what_was_delivered() {
    let env = Env::new();
    let (server, cfg, out) = mda_setup(&env, 4, "keep = false\n");
    env.write_config(&cfg.replace(
        MDA_TO_OUT,
        &format!("if [ $POPFETCH_UIDL = u2 ]; then exit 75; fi; {MDA_TO_OUT}"),
    ));
    env.run(&["sync"]).expect_code(75);
    assert_eq!(files_in(&out), vec!["u0", "u1"]);
    let log = server.log();
    assert!(log.iter().any(|l| l == "DELE 1"), "{log:?}");
    assert!(log.iter().any(|l| l == "DELE 2"), "{log:?}");
    assert!(
        !log.iter().any(|l| l == "DELE 3" || l == "DELE 4"),
        "{log:?}"
    );
    assert!(log.iter().any(|l| l == "QUIT"), "a clean QUIT: {log:?}");
    let left: Vec<String> = server.messages().into_iter().map(|m| m.uidl).collect();
    assert_eq!(left, vec!["u2", "u3"]);

    env.write_config(&cfg);
    env.run(&["sync"]).expect_code(0);
    assert_eq!(files_in(&out), vec!["u0", "u1", "u2", "u3"]);
    assert!(server.messages().is_empty());
}

#[test]
fn dry_run_changes_nothing() {
    let env = Env::new();
    let server = Server::start(Config {
        messages: numbered(5, |i| format!("m{i}")),
        ..Config::default()
    });
    env.write_config(&account("t", server.port(), "none", ""));
    let run = env.run(&["sync", "--dry-run", "--delete"]);
    run.expect_code(0);
    assert!(
        run.stdout.starts_with("t: fetch and delete  1 "),
        "{}",
        run.stdout
    );
    assert!(!env.maildir("t").exists(), "no Maildir created");
    assert!(
        !env.state_dir().join("seen.sqlite3").exists(),
        "no state written"
    );
    assert_eq!(server.messages().len(), 5);
    assert!(server
        .log()
        .iter()
        .all(|l| !l.starts_with("RETR") && !l.starts_with("DELE")));
    // After a real sync, a dry run still changes nothing.
    env.run(&["sync"]).expect_code(0);
    let before = std::fs::read(env.state_dir().join("seen.sqlite3")).unwrap();
    let run = env.run(&["sync", "--dry-run", "--delete"]);
    run.expect_code(0);
    assert!(run.stdout.contains("t: delete  5 "), "{}", run.stdout);
    assert_eq!(server.messages().len(), 5);
    assert_eq!(
        std::fs::read(env.state_dir().join("seen.sqlite3")).unwrap(),
        before
    );
}
