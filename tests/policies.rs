//! The per-account policies: `keep_days`, `max_size`, a `filter` that
//! sorts or deletes unread, delivery through an `mda`, and `--dry-run`,
//! which changes nothing.

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

/// A filter that sorts: SPAM is deleted unread, everything else fetched;
/// `extra` adds case arms (e.g. one that fails).
fn sorting_filter(extra: &str) -> String {
    format!(
        "filter = '''h=$(cat); case \"$h\" in *'Subject: SPAM'*) exit 1;; {extra} esac; exit 0'''"
    )
}

/// A filter that fails (exit 5) on one message stops the account with 78
/// and one line naming the command and the exit, even with `-q` (the
/// README's cron line); nothing is fetched or deleted, not even what it
/// had already judged; the next run with a mended filter delivers. The
/// old code warned (hidden by `-q`), fetched the rest and exited 0.
#[test]
fn failing_filter_stops_the_account_with_one_line_even_when_quiet() {
    let env = Env::new();
    let subjects = ["hello", "SPAM", "BROKEN", "news"];
    let server = Server::start(Config {
        messages: numbered(4, |i| subjects[i].to_string()),
        ..Config::default()
    });
    let broken = sorting_filter("*'Subject: BROKEN'*) exit 5;;");
    let cfg = account(
        "t",
        server.port(),
        "none",
        &format!("keep = false\n{broken}"),
    );
    env.write_config(&cfg);
    let run = env.run(&["sync", "-q"]);
    run.expect_code(78);
    // (Besides the alert that tls = "none" sends the password in clear.)
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("unencrypted"))
        .collect();
    assert_eq!(lines.len(), 1, "one line: {}", run.stderr);
    let line = lines[0];
    for part in [
        "t: ",
        "filter",
        "Subject: BROKEN",
        "exit 5",
        "message 3",
        "nothing was fetched or deleted",
    ] {
        assert!(line.contains(part), "{part:?} missing: {line}");
    }
    assert!(
        server
            .log()
            .iter()
            .all(|l| !l.starts_with("RETR") && !l.starts_with("DELE")),
        "{:?}",
        server.log()
    );
    assert_eq!(server.messages().len(), 4, "all stay on the server");
    assert!(maildir_messages(&env.maildir("t")).is_empty());

    // Mended: the spam judged before the failure was not recorded, so it
    // is judged again and deleted unread; the rest is delivered.
    env.write_config(&cfg.replace(&broken, &sorting_filter("")));
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    let j = &run.json_lines()[0];
    assert_eq!(
        (j["new"].as_u64(), j["deleted"].as_u64()),
        (Some(3), Some(4))
    );
    assert_eq!(server.retr_count("u1"), 0, "spam deleted unread");
    assert!(server.messages().is_empty());
    assert_eq!(maildir_messages(&env.maildir("t")).len(), 3);
}

/// A filter that does not exist (sh exits 127) is named as not found,
/// exit 78; the old code warned once per message and exited 0.
#[test]
fn missing_filter_is_named_not_found_and_stops_the_account() {
    let env = Env::new();
    let server = Server::start(Config {
        messages: numbered(3, |i| format!("m{i}")),
        ..Config::default()
    });
    env.write_config(&account(
        "t",
        server.port(),
        "none",
        "filter = 'no-such-popfetch-filter --strict'",
    ));
    let run = env.run(&["sync", "-q", "--json"]);
    run.expect_code(78);
    // sh's own "not found" line aside, and the tls = "none" alert.
    let ours: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("popfetch") && !l.contains("unencrypted"))
        .collect();
    assert_eq!(ours.len(), 1, "{}", run.stderr);
    assert!(
        ours[0].contains("no-such-popfetch-filter --strict") && ours[0].contains("not found"),
        "{}",
        ours[0]
    );
    let j = &run.json_lines()[0];
    assert_eq!(j["exit_code"], 78);
    assert!(j["error"].as_str().unwrap().contains("not found"), "{j}");
    assert_eq!(retr_lines(&server), 0);
    assert_eq!(server.messages().len(), 3);
}

/// A filter killed by a signal stops the account (78) and names the
/// signal; the old code warned and exited 0.
#[test]
fn filter_killed_by_a_signal_stops_the_account() {
    let env = Env::new();
    let server = Server::start(Config {
        messages: numbered(2, |i| format!("m{i}")),
        ..Config::default()
    });
    env.write_config(&account(
        "t",
        server.port(),
        "none",
        "filter = 'kill -9 $$'",
    ));
    let run = env.run(&["sync", "-q"]);
    run.expect_code(78);
    assert!(
        run.stderr.contains("killed by signal 9 (SIGKILL)"),
        "{}",
        run.stderr
    );
    assert_eq!(retr_lines(&server), 0);
    assert_eq!(server.messages().len(), 2);
}

/// Messages a filter leaves (exit 2) are counted, in the summary and in
/// `--json` (`left`), for sync and for a dry run, so that `check` still
/// seeing them as new is explained. The old code counted them nowhere.
#[test]
fn messages_the_filter_leaves_are_counted_in_summary_and_json() {
    let env = Env::new();
    let subjects = ["hello", "later", "later", "news"];
    let server = Server::start(Config {
        messages: numbered(4, |i| subjects[i].to_string()),
        ..Config::default()
    });
    env.write_config(&account(
        "t",
        server.port(),
        "none",
        &sorting_filter("*'Subject: later'*) exit 2;;"),
    ));
    let dry = env.run(&["sync", "--dry-run", "--json"]);
    dry.expect_code(0);
    let plan = &dry.json_lines()[0];
    assert_eq!(plan["left"], 2);
    let left: Vec<u64> = plan["planned"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["action"] == "leave" && p["reason"] == "by the filter")
        .map(|p| p["number"].as_u64().unwrap())
        .collect();
    assert_eq!(left, vec![2, 3], "{plan}");
    let dry = env.run(&["sync", "--dry-run"]);
    dry.expect_code(0);
    assert!(
        dry.stdout.contains("2 left on the server (by the filter)"),
        "{}",
        dry.stdout
    );

    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    let j = &run.json_lines()[0];
    assert_eq!((j["new"].as_u64(), j["left"].as_u64()), (Some(2), Some(2)));
    assert!(
        run.stderr.contains("t: 2 new messages")
            && run.stderr.contains("2 left on the server by the filter"),
        "{}",
        run.stderr
    );
    // Nothing new but the two it leaves: still said, and counted.
    let again = env.run(&["sync", "--json"]);
    again.expect_code(0);
    assert_eq!(again.json_lines()[0]["left"], 2);
    assert_eq!(again.json_lines()[0]["new"], 0);
    assert!(
        again
            .stderr
            .contains("t: 2 left on the server by the filter"),
        "{}",
        again.stderr
    );
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
