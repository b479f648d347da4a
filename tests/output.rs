//! Output where people look for it: the `--dry-run` plan on stdout with a
//! summary that reads as a sentence, `top --json`, header rows on a
//! terminal only (never in a pipe), and sizes in one unit style whose
//! bytes agree between check, dry run, sync and `--json`.

use popfetch::ui::report::human_bytes;

use crate::cli::{installed, skip, Tmux};
use crate::support::server::{Config, Msg, Server};
use crate::support::Env;
use crate::sync::account;

fn msg(uidl: &str, subject: &str, body_lines: usize) -> Msg {
    let mut text = format!(
        "From: Ann Example <ann@example.org>\nSubject: {subject}\nDate: Tue, 14 May 2024 09:12:00 +0000\n\n"
    );
    for i in 0..body_lines {
        text.push_str(&format!("line {i} of {subject}\n"));
    }
    Msg::new(uidl, text.into_bytes())
}

fn big(uidl: &str) -> Msg {
    let mut data = b"Subject: big\n\n".to_vec();
    data.extend(std::iter::repeat_n(b'x', 3_000_000));
    data.push(b'\n');
    Msg::new(uidl, data)
}

/// The non-empty lines of a tmux screen, without stderr's warnings.
fn screen_rows(screen: &str) -> Vec<&str> {
    screen
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("popfetch: warning:"))
        .collect()
}

fn server(messages: Vec<Msg>) -> Server {
    Server::start(Config {
        messages,
        ..Config::default()
    })
}

/// Lines of stderr other than the warning every `tls = "none"` login gives.
fn beyond_cleartext_warning(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| !l.contains("sending the password unencrypted"))
        .collect()
}

fn size_of(srv: &Server, uidls: &[&str]) -> u64 {
    srv.messages()
        .iter()
        .filter(|m| uidls.contains(&m.uidl.as_str()))
        .map(|m| m.size() as u64)
        .sum()
}

/// The plan is data the user asked for: stdout, one line per message
/// (action, number, size, UIDL, why), then a sentence; stderr gets no
/// copy of it. The old dry run wrote it all to stderr, with sizes in
/// bytes and a summary "dry run, would do: 3 new messages (…)".
#[test]
fn dry_run_plan_goes_to_stdout_one_line_per_message_then_a_sentence() {
    let env = Env::new();
    let srv = server(vec![msg("a", "one", 3), msg("b", "two", 3), big("big")]);
    env.write_config(&account(
        "t",
        srv.port(),
        "none",
        "max_size = \"1 MB\"\nkeep_days = 0",
    ));
    env.run(&["sync"]).expect_code(0);
    for (u, s) in [("c", "three"), ("d", "four"), ("e", "five")] {
        srv.push_message(msg(u, s, 40));
    }
    let run = env.run(&["sync", "--dry-run"]);
    run.expect_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let words = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        lines.len(),
        7,
        "six messages and a summary:\n{}",
        run.stdout
    );
    // Messages in server order: 1 a, 2 b (seen, keep_days = 0: deleted),
    // 3 big (left), 4..6 new (fetched).
    let expect = [
        ("delete", "1", "a", "(fetched before)"),
        ("delete", "2", "b", "(fetched before)"),
        ("leave", "3", "big", "(larger than max_size)"),
        ("fetch", "4", "c", ""),
        ("fetch", "5", "d", ""),
        ("fetch", "6", "e", ""),
    ];
    for (line, (action, number, uidl, why)) in lines.iter().zip(expect) {
        let w = words(line);
        assert_eq!(w[0], "t:", "{line}");
        assert_eq!(w[1], action, "{line}");
        assert_eq!(w[2], number, "{line}");
        let size = human_bytes(size_of(&srv, &[uidl]));
        assert!(line.contains(&format!(" {size}  ")), "{size} in {line:?}");
        assert_eq!(w[5], uidl, "{line}");
        assert!(line.ends_with(why), "{line:?} ends with {why:?}");
    }
    let new_size = human_bytes(size_of(&srv, &["c", "d", "e"]));
    assert_eq!(
        lines[6],
        format!(
            "t: would fetch 3 messages ({new_size}) and delete 2; 1 left on the server (larger than max_size)"
        )
    );
    assert_eq!(
        beyond_cleartext_warning(&run.stderr),
        Vec::<&str>::new(),
        "the plan is not repeated on stderr"
    );
    assert_eq!(srv.messages().len(), 6, "nothing changed");

    // --json: the same plan as `planned`, one object for the account.
    let run = env.run(&["sync", "--dry-run", "--json"]);
    run.expect_code(0);
    let records = run.json_lines();
    assert_eq!(records.len(), 1, "{}", run.stdout);
    let j = &records[0];
    assert_eq!(j["account"], "t");
    assert_eq!(j["dry_run"], true);
    assert_eq!(j["new"], 3);
    assert_eq!(j["deleted"], 2);
    assert_eq!(j["skipped"], 1);
    assert_eq!(j["bytes"], size_of(&srv, &["c", "d", "e"]));
    let planned = j["planned"].as_array().expect("a planned array");
    let got: Vec<(String, u64, String, u64)> = planned
        .iter()
        .map(|p| {
            (
                p["action"].as_str().unwrap().to_string(),
                p["number"].as_u64().unwrap(),
                p["uidl"].as_str().unwrap().to_string(),
                p["size"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64, String, u64)> = [
        ("delete", 1, "a"),
        ("delete", 2, "b"),
        ("leave", 3, "big"),
        ("fetch", 4, "c"),
        ("fetch", 5, "d"),
        ("fetch", 6, "e"),
    ]
    .iter()
    .map(|(a, n, u)| (a.to_string(), *n, u.to_string(), size_of(&srv, &[u])))
    .collect();
    assert_eq!(got, want);
    assert_eq!(planned[2]["reason"], "larger than max_size");
    assert!(planned[3]["reason"].is_null());

    // --delete: fetched messages are deleted too, and the sentence says so.
    let run = env.run(&["sync", "--dry-run", "--delete"]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("t: fetch and delete  4"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!(
            "t: would fetch and delete 3 messages ({new_size}), and delete 2 fetched before;"
        )),
        "{}",
        run.stdout
    );
}

/// A dry run with nothing to do says so, on stdout, rather than nothing.
#[test]
fn dry_run_with_nothing_to_do_says_so() {
    let env = Env::new();
    let srv = server(vec![msg("a", "one", 2)]);
    env.write_config(&account("t", srv.port(), "none", ""));
    env.run(&["sync"]).expect_code(0);
    let run = env.run(&["sync", "--dry-run"]);
    run.expect_code(0);
    assert_eq!(run.stdout, "t: nothing to do\n", "stderr: {}", run.stderr);
    assert_eq!(beyond_cleartext_warning(&run.stderr), Vec::<&str>::new());
    // Nothing to fetch, but something left: the sentence says what.
    srv.push_message(big("big"));
    env.write_config(&account("t", srv.port(), "none", "max_size = \"1 MB\""));
    let run = env.run(&["sync", "--dry-run"]);
    run.expect_code(0);
    assert!(
        run.stdout.ends_with(
            "t: nothing to fetch or delete; 1 left on the server (larger than max_size)\n"
        ),
        "{}",
        run.stdout
    );
}

/// The bytes of a sync are the server's octets (CRLF line ends, as LIST
/// announces them), the same count `check` and `--dry-run` give: the old
/// sync counted what it wrote after CRLF became LF, so `check` said one
/// size and `sync` another for the same messages.
#[test]
fn sync_bytes_are_the_servers_octets_like_check_and_dry_run() {
    let env = Env::new();
    let srv = server(vec![msg("a", "one", 300), msg("b", "two", 300)]);
    env.write_config(&account("t", srv.port(), "none", ""));
    let octets = size_of(&srv, &["a", "b"]);

    let check = env.run(&["check", "--json"]);
    check.expect_code(0);
    assert_eq!(check.json_lines()[0]["new_bytes"], octets);
    let dry = env.run(&["sync", "--dry-run", "--json"]);
    dry.expect_code(0);
    assert_eq!(dry.json_lines()[0]["bytes"], octets);

    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    let j = &run.json_lines()[0];
    assert_eq!(j["new"], 2);
    assert_eq!(
        j["bytes"], octets,
        "sync counts what the server sent, as check did"
    );
    let run = env.run(&["sync", "--all"]);
    run.expect_code(0);
    assert!(
        run.stderr
            .contains(&format!("t: 2 new messages ({})", human_bytes(octets))),
        "{}",
        run.stderr
    );
}

/// Every size a person reads has the same units (B, KiB, MiB): the top
/// table said "9.5K", a max_size warning "3000016 bytes".
#[test]
fn sizes_use_one_unit_style() {
    let env = Env::new();
    let srv = server(vec![msg("a", "one", 300), big("big")]);
    env.write_config(&account("t", srv.port(), "none", "max_size = \"1 MB\""));
    let big_size = human_bytes(size_of(&srv, &["big"]));
    assert!(big_size.ends_with(" MiB"), "{big_size}");
    let run = env.run(&["sync"]);
    run.expect_code(0);
    assert!(
        run.stderr
            .contains(&format!("it is {big_size}, larger than max_size")),
        "{}",
        run.stderr
    );
    let run = env.run(&["top", "t"]);
    run.expect_code(0);
    let small = human_bytes(size_of(&srv, &["a"]));
    assert!(small.ends_with(" KiB"), "{small}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[0].starts_with('1') && lines[0].contains(&format!("  {small}  ")),
        "{:?}",
        lines[0]
    );
    assert!(
        lines[1].starts_with('2') && lines[1].contains(&format!("  {big_size}  ")),
        "{:?}",
        lines[1]
    );
}

/// `top --json`: one object per message, for scripts and status bars.
#[test]
fn top_json_gives_summaries_and_messages() {
    let env = Env::new();
    let srv = server(vec![msg("a", "one", 3), msg("b", "two", 3)]);
    env.write_config(&account("t", srv.port(), "none", ""));
    env.run(&["sync"]).expect_code(0);
    srv.push_message(msg("c", "Grüße", 3));

    let run = env.run(&["top", "t", "--json"]);
    run.expect_code(0);
    let rows = run.json_lines();
    assert_eq!(rows.len(), 3, "{}", run.stdout);
    let c = &rows[2];
    assert_eq!(c["number"], 3);
    assert_eq!(c["uidl"], "c");
    assert_eq!(c["size"], size_of(&srv, &["c"]));
    assert_eq!(c["from"], "Ann Example");
    assert_eq!(c["subject"], "Grüße");
    assert_eq!(c["date"], 1_715_677_920);
    assert_eq!(c["seen"], false);
    assert_eq!(rows[0]["seen"], true);
    let run = env.run(&["top", "t", "--new", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines().len(), 1);

    let run = env.run(&["top", "t", "3", "a", "-n", "2", "--json"]);
    run.expect_code(0);
    let msgs = run.json_lines();
    assert_eq!(msgs.len(), 2, "{}", run.stdout);
    assert_eq!(msgs[0]["number"], 3);
    assert_eq!(msgs[0]["uidl"], "c");
    assert_eq!(
        msgs[0]["header"],
        "From: Ann Example <ann@example.org>\nSubject: Grüße\nDate: Tue, 14 May 2024 09:12:00 +0000\n"
    );
    assert_eq!(msgs[0]["body"], "line 0 of Grüße\nline 1 of Grüße\n");
    assert_eq!(msgs[1]["number"], 1);
    assert_eq!(msgs[1]["uidl"], "a");
}

/// `list` and `seen list` name their columns for a person at a terminal,
/// and print the bare lines into a pipe, where scripts parse them.
#[test]
fn list_and_seen_list_have_a_header_row_on_a_terminal_only() {
    let env = Env::new();
    let srv = server(vec![msg("uid-a", "one", 300), msg("uid-b", "two", 3)]);
    env.write_config(&account("t", srv.port(), "none", ""));
    env.run(&["sync"]).expect_code(0);
    srv.push_message(msg("uid-c", "three", 3));

    // Piped: data lines only, sizes in octets.
    let run = env.run(&["list", "t"]);
    run.expect_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    let first: Vec<&str> = lines[0].split_whitespace().collect();
    let a = size_of(&srv, &["uid-a"]).to_string();
    assert_eq!(first, ["1", a.as_str(), "uid-a", "seen"]);
    let run = env.run(&["seen", "list", "t"]);
    run.expect_code(0);
    assert_eq!(run.stdout.lines().count(), 2, "{}", run.stdout);
    assert!(run.stdout.starts_with("uid-"), "{}", run.stdout);

    if !installed("tmux") {
        skip("tmux is not installed; cannot check the header rows on a terminal");
        return;
    }
    let screen = {
        let tmux = Tmux::start(&env, "list t");
        tmux.wait_for("the end of list", |s| s.contains("EXIT="))
    };
    assert!(screen.contains("EXIT=0"), "{screen}");
    let rows = screen_rows(&screen);
    let header: Vec<&str> = rows[0].split_whitespace().collect();
    assert_eq!(header, ["#", "SIZE", "UIDL", "STATE"], "{screen}");
    let a_size = human_bytes(size_of(&srv, &["uid-a"]));
    assert!(
        rows[1].contains(&format!("{a_size}  uid-a  seen")),
        "{screen}"
    );
    assert!(rows[3].trim_end().ends_with("uid-c  new"), "{screen}");

    let screen = {
        let tmux = Tmux::start(&env, "seen list t");
        tmux.wait_for("the end of seen list", |s| s.contains("EXIT="))
    };
    assert!(screen.contains("EXIT=0"), "{screen}");
    let rows = screen_rows(&screen);
    let header: Vec<&str> = rows[0].split_whitespace().collect();
    assert_eq!(header, ["UIDL", "FIRST", "SEEN"], "{screen}");
    let mut uidls: Vec<&str> = rows[1..3]
        .iter()
        .map(|r| r.split_whitespace().next().unwrap())
        .collect();
    uidls.sort();
    assert_eq!(uidls, ["uid-a", "uid-b"], "{screen}");
}

/// What a filter would do shows in the plan too: deleted unread, or left.
#[test]
fn dry_run_plan_shows_what_the_filter_decides() {
    let env = Env::new();
    let srv = server(vec![
        msg("a", "hello", 2),
        msg("b", "SPAM", 2),
        msg("c", "later", 2),
        msg("d", "news", 2),
    ]);
    let filter = "h=$(cat); case \\\"$h\\\" in *'Subject: SPAM'*) exit 1;; *'Subject: later'*) exit 2;; esac; exit 0";
    env.write_config(&account(
        "t",
        srv.port(),
        "none",
        &format!("filter = \"{filter}\""),
    ));
    let run = env.run(&["sync", "--dry-run"]);
    run.expect_code(0);
    let lines: Vec<Vec<&str>> = run
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let first_words: Vec<(&str, &str)> = lines[..4].iter().map(|w| (w[1], w[2])).collect();
    assert_eq!(
        first_words,
        [
            ("fetch", "1"),
            ("delete", "2"),
            ("leave", "3"),
            ("fetch", "4")
        ],
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("(by the filter)\n"), "{}", run.stdout);
    let size = human_bytes(size_of(&srv, &["a", "d"]));
    assert!(
        run.stdout.ends_with(&format!(
            "t: would fetch 2 messages ({size}) and delete 1; 1 left on the server (by the filter)\n"
        )),
        "{}",
        run.stdout
    );
    assert_eq!(srv.messages().len(), 4, "nothing deleted");
}
