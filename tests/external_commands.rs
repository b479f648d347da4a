//! The commands popfetch runs (the MDA, `filter`, `password_command`):
//! the MDA never sees a partial message, and a command that hangs is
//! killed with every process it started after `command_timeout`, so it
//! never holds the mailbox.

use std::fs;
use std::time::{Duration, Instant};

use crate::support::server::{Config, Fault, Msg, Server};
use crate::support::{expected_delivery, files_in, Env, Run};
use crate::sync::account;

/// Delivers each message to `~/out/<UIDL>` and notes each run in `~/runs`.
const MDA_TO_OUT: &str = "echo $POPFETCH_UIDL >> $HOME/runs; cat > $HOME/out/$POPFETCH_UIDL";

/// A command that hangs, and a child of it that hangs too; it writes both
/// pids to `~/pids` first.
const HANGS: &str = "sleep 1000 & echo $$ $! > $HOME/pids; sleep 1000";

/// An account on `server` delivering with `mda` (a TOML literal string),
/// plus `extra` keys.
fn mda_account(env: &Env, server: &Server, mda: &str, extra: &str) -> String {
    fs::create_dir_all(env.home().join("out")).unwrap();
    account("t", server.port(), "none", extra)
        .replace("maildir = \"~/Mail/t\"", &format!("mda = '{mda}'"))
}

fn message(uidl: &str, body_bytes: usize) -> Msg {
    let mut data = format!("Subject: {uidl}\n\n").into_bytes();
    for i in 0..body_bytes / 64 {
        data.extend_from_slice(format!("{i:06} {}\n", "x".repeat(56)).as_bytes());
    }
    Msg::new(uidl, data)
}

/// Runs popfetch, killing it if it is still running after `limit` (a
/// command that hangs must not hang the test): `None` then. Its output
/// goes to files, not pipes, which a leftover child could hold open.
fn run_within(env: &Env, args: &[&str], limit: Duration) -> Option<Run> {
    let out = env.dir.path().join("stdout");
    let err = env.dir.path().join("stderr");
    let mut child = env
        .command(args)
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Some(Run {
        code: status.code().unwrap_or(-1),
        stdout: fs::read_to_string(&out).unwrap(),
        stderr: fs::read_to_string(&err).unwrap(),
    })
}

/// The pids a [`HANGS`] command wrote.
fn hung_pids(env: &Env) -> Vec<i32> {
    fs::read_to_string(env.home().join("pids"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

fn alive(pid: i32) -> bool {
    // A zombie is dead; its parent just has not reaped it yet.
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Asserts that none of `pids` is left running (waiting a moment for
/// orphans to be reaped), and kills any that are so the test leaves
/// nothing behind either way.
#[track_caller]
fn assert_all_gone(pids: &[i32]) {
    assert_eq!(pids.len(), 2, "the command wrote its pids: {pids:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<i32> = pids.iter().copied().filter(|&p| alive(p)).collect();
    for &p in &left {
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    assert!(left.is_empty(), "processes left running: {left:?}");
}

/// Connection dropped inside message 2: the MDA never runs for it (old
/// code streamed it into the MDA's stdin, which took the cut-off message
/// as whole and exited 0), and the next run delivers it whole, once.
#[test]
fn mda_never_sees_a_message_cut_by_a_dropped_connection() {
    let env = Env::new();
    let msgs = vec![message("u0", 1000), message("u1", 300_000)];
    let server = Server::start(Config {
        messages: msgs.clone(),
        faults: vec![Fault::DropInRetr {
            msg: 2,
            after_bytes: 100_000,
        }],
        ..Config::default()
    });
    env.write_config(&mda_account(&env, &server, MDA_TO_OUT, ""));
    let out = env.home().join("out");

    let run = env.run(&["sync"]);
    run.expect_code(75);
    assert_eq!(files_in(&out), vec!["u0"], "{}", run.stderr);
    let runs = fs::read_to_string(env.home().join("runs")).unwrap();
    assert_eq!(runs, "u0\n", "the MDA ran only for the complete message");

    server.clear_faults();
    env.run(&["sync"]).expect_code(0);
    assert_eq!(files_in(&out), vec!["u0", "u1"]);
    assert_eq!(
        fs::read(out.join("u1")).unwrap(),
        expected_delivery(&msgs[1].data)
    );
    let runs = fs::read_to_string(env.home().join("runs")).unwrap();
    assert_eq!(runs, "u0\nu1\n", "each message delivered once");
}

/// The MDA's stdin is the spooled message: an unlinked file in the state
/// directory, readable by its owner only, holding exactly the message.
#[test]
fn mda_reads_an_unlinked_owner_only_spool_in_the_state_dir() {
    let env = Env::new();
    let msgs = vec![Msg::new(
        "u0",
        b"Return-Path: <a@b.example>\r\nSubject: s\r\n\r\nno final newline".to_vec(),
    )];
    let server = Server::start(Config {
        messages: msgs.clone(),
        ..Config::default()
    });
    let mda = "readlink /proc/self/fd/0 > $HOME/link; stat -L -c %a /proc/self/fd/0 > $HOME/mode; \
               echo $POPFETCH_ACCOUNT $POPFETCH_UIDL $POPFETCH_SENDER > $HOME/env; \
               cat > $HOME/out/$POPFETCH_UIDL";
    env.write_config(&mda_account(&env, &server, mda, ""));
    env.run(&["sync"]).expect_code(0);
    let home = env.home();
    let link = fs::read_to_string(home.join("link")).unwrap();
    let state = fs::canonicalize(env.state_dir()).unwrap();
    assert!(
        link.starts_with(&format!("{}/", state.display()))
            && link.trim_end().ends_with("(deleted)"),
        "stdin is an unlinked file in the state dir: {link}"
    );
    assert_eq!(fs::read_to_string(home.join("mode")).unwrap(), "600\n");
    assert_eq!(
        fs::read_to_string(home.join("env")).unwrap(),
        "t u0 a@b.example\n"
    );
    assert_eq!(
        fs::read(home.join("out/u0")).unwrap(),
        expected_delivery(&msgs[0].data)
    );
    let spools: Vec<String> = files_in(&env.state_dir())
        .into_iter()
        .filter(|f| f.contains("spool"))
        .collect();
    assert!(spools.is_empty(), "no spool file left: {spools:?}");
}

/// With a file as stdin, an MDA that stops reading early and exits 0 has
/// delivered (SPEC §3: exit 0 is delivered); the old pipe made it an error.
#[test]
fn mda_exiting_0_without_reading_everything_has_delivered() {
    let env = Env::new();
    let server = Server::start(Config {
        messages: vec![message("u0", 1_000_000)],
        ..Config::default()
    });
    env.write_config(&mda_account(
        &env,
        &server,
        "head -c 10 > $HOME/out/$POPFETCH_UIDL",
        "keep = false",
    ));
    env.run(&["sync"]).expect_code(0);
    assert_eq!(fs::read(env.home().join("out/u0")).unwrap(), b"Subject: u");
    assert!(server.messages().is_empty(), "recorded and deleted");
}

/// An MDA that hangs (with a child that hangs too) is killed with its
/// whole process group after command_timeout: exit 75, nothing left
/// running, the message unseen, and the mailbox free for the next run.
#[test]
fn hung_mda_is_killed_with_its_children_after_command_timeout() {
    let env = Env::new();
    let server = Server::start(Config {
        messages: vec![message("u0", 1000)],
        ..Config::default()
    });
    let hung = mda_account(&env, &server, HANGS, "command_timeout = 1");
    env.write_config(&hung);
    let started = Instant::now();
    let run = run_within(&env, &["sync"], Duration::from_secs(30));
    let pids = hung_pids(&env);
    let run = run.unwrap_or_else(|| {
        assert_all_gone(&pids);
        panic!("popfetch still running after 30 s: the MDA was never killed")
    });
    run.expect_code(75);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        run.stderr.contains("command_timeout") && run.stderr.contains("sleep 1000"),
        "names the command and the key: {}",
        run.stderr
    );
    assert_all_gone(&pids);

    env.write_config(&hung.replace(HANGS, MDA_TO_OUT));
    env.run(&["sync"]).expect_code(0);
    assert_eq!(
        files_in(&env.home().join("out")),
        vec!["u0"],
        "it stayed unseen"
    );
}

/// A filter that hangs is killed with its children after command_timeout
/// and stops the account (78) before anything is fetched or deleted; the
/// old code waited `timeout` per message, left the children running and
/// exited 0.
#[test]
fn hung_filter_is_killed_with_its_children_and_stops_the_account() {
    let env = Env::new();
    let server = Server::start(Config {
        messages: vec![message("u0", 1000), message("u1", 1000)],
        ..Config::default()
    });
    env.write_config(&account(
        "t",
        server.port(),
        "none",
        &format!("keep = false\ncommand_timeout = 1\nfilter = '{HANGS}'"),
    ));
    let run = run_within(&env, &["sync"], Duration::from_secs(30));
    let pids = hung_pids(&env);
    let run = run.unwrap_or_else(|| {
        assert_all_gone(&pids);
        panic!("popfetch still running after 30 s: the filter was never killed")
    });
    run.expect_code(78);
    assert!(
        run.stderr.contains("command_timeout") && run.stderr.contains("filter"),
        "{}",
        run.stderr
    );
    assert_all_gone(&pids);
    assert_eq!(server.retr_count("u0") + server.retr_count("u1"), 0);
    assert_eq!(server.messages().len(), 2, "nothing deleted");
}

/// A password_command that hangs is killed with its children after
/// command_timeout: exit 78 naming the key (the old code waited forever,
/// holding the mailbox lock).
#[test]
fn hung_password_command_is_killed_with_its_children() {
    let env = Env::new();
    let server = Server::start(Config {
        messages: vec![message("u0", 1000)],
        ..Config::default()
    });
    env.write_config(
        &account("t", server.port(), "none", "command_timeout = 1").replace(
            "password = \"secret\"",
            &format!("password_command = '{HANGS}'"),
        ),
    );
    let run = run_within(&env, &["sync"], Duration::from_secs(30));
    let pids = hung_pids(&env);
    let run = run.unwrap_or_else(|| {
        assert_all_gone(&pids);
        panic!("popfetch still running after 30 s: the password_command was never killed")
    });
    run.expect_code(78);
    assert!(
        run.stderr.contains("password_command") && run.stderr.contains("command_timeout"),
        "{}",
        run.stderr
    );
    assert_all_gone(&pids);
    assert_eq!(server.retr_count("u0"), 0);
}

/// A daemon that a password_command starts outside its process group
/// (a gpg-agent would) may hold the command's stdout open for ever: the
/// first line is the password, and popfetch goes on without waiting for
/// the end of the output.
#[test]
fn password_command_leaving_a_daemon_on_its_output_does_not_hang() {
    let env = Env::new();
    let server = Server::start(Config {
        messages: vec![message("u0", 1000)],
        ..Config::default()
    });
    let daemon = "setsid sleep 1000 & echo $! > $HOME/daemon; echo secret";
    env.write_config(
        &account("t", server.port(), "none", "command_timeout = 5").replace(
            "password = \"secret\"",
            &format!("password_command = '{daemon}'"),
        ),
    );
    let run = run_within(&env, &["sync"], Duration::from_secs(30));
    let daemon: i32 = fs::read_to_string(env.home().join("daemon"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill has no memory effects.
    unsafe { libc::kill(daemon, libc::SIGKILL) };
    let run = run.expect("popfetch still running after 30 s: it waited for the daemon");
    run.expect_code(0);
    assert_eq!(server.retr_count("u0"), 1);
}

#[test]
fn command_timeout_is_checked() {
    let env = Env::new();
    env.write_config(&account("t", 110, "none", "command_timeout = 0"));
    let run = env.run(&["accounts"]);
    run.expect_code(78);
    assert!(run.stderr.contains("command_timeout = 0"), "{}", run.stderr);
}

/// A password_command may ask on the terminal (`read`, gpg's loopback
/// pinentry) although it runs in a process group of its own: its group
/// gets the terminal while it runs (else SIGTTIN stops it), and popfetch
/// takes the terminal back afterwards (else the next command's turn
/// stops popfetch with SIGTTOU). `sync` asks for typed passwords first,
/// then each account's password_command asks in its turn.
#[test]
fn password_command_can_ask_on_the_terminal() {
    if !tmux_installed() {
        return;
    }
    let env = Env::new();
    let first = Server::start(Config {
        messages: vec![message("u0", 1000)],
        ..Config::default()
    });
    let second = Server::start(Config {
        user: "bob".into(),
        messages: vec![message("u1", 1000)],
        ..Config::default()
    });
    let third = Server::start(Config {
        user: "carol".into(),
        messages: vec![message("u2", 1000)],
        ..Config::default()
    });
    let asks = |tag: &str| format!("printf \"{tag}? \" >&2; read -r p; echo \"$p\"");
    env.write_config(&format!(
        "{}{}{}",
        account("a", first.port(), "none", "").replace(
            "password = \"secret\"",
            &format!("password_command = '{}'", asks("pw1"))
        ),
        account("b", second.port(), "none", "")
            .replace("user = \"alice\"", "user = \"bob\"")
            .replace("password = \"secret\"\n", ""),
        account("c", third.port(), "none", "")
            .replace("user = \"alice\"", "user = \"carol\"")
            .replace(
                "password = \"secret\"",
                &format!("password_command = '{}'", asks("pw2"))
            ),
    ));
    let pane = Pane::start(&env, "sync -j 1");
    pane.wait_for("Password for bob@127.0.0.1");
    pane.keys(&["secret", "Enter"]);
    pane.wait_for("pw1?");
    pane.keys(&["secret", "Enter"]);
    pane.wait_for("pw2?");
    pane.keys(&["secret", "Enter"]);
    let screen = pane.wait_for("EXIT=");
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert_eq!(first.retr_count("u0"), 1, "{screen}");
    assert_eq!(second.retr_count("u1"), 1, "{screen}");
    assert_eq!(third.retr_count("u2"), 1, "{screen}");
}

/// Ctrl-C at a password_command's prompt interrupts popfetch too, as it
/// did when the command shared popfetch's process group.
#[test]
fn ctrl_c_at_a_password_command_prompt_stops_popfetch() {
    if !tmux_installed() {
        return;
    }
    let env = Env::new();
    let server = Server::start(Config {
        messages: vec![message("u0", 1000)],
        ..Config::default()
    });
    let asks = "printf \"pw? \" >&2; read -r p; echo \"$p\"";
    env.write_config(&account("a", server.port(), "none", "").replace(
        "password = \"secret\"",
        &format!("password_command = '{asks}'"),
    ));
    let pane = Pane::start(&env, "sync");
    pane.wait_for("pw?");
    pane.keys(&["C-c"]);
    let screen = pane.wait_for("EXIT=");
    assert!(screen.contains("EXIT=130"), "{screen}");
    assert_eq!(server.retr_count("u0"), 0);
}

fn tmux_installed() -> bool {
    let installed = crate::cli::installed("tmux");
    if !installed {
        crate::cli::skip(
            "tmux is not installed; cannot check password_command prompts on a terminal",
        );
    }
    installed
}

/// popfetch running in a tmux pane (a real terminal), in the test's
/// hermetic environment; the pane stays after it exits, showing `EXIT=n`.
struct Pane {
    tmux: crate::cli::Tmux,
}

impl Pane {
    fn start(env: &Env, args: &str) -> Pane {
        Pane {
            tmux: crate::cli::Tmux::start(env, args),
        }
    }

    #[track_caller]
    fn wait_for(&self, needle: &str) -> String {
        self.tmux
            .wait_for(&format!("{needle:?} on the terminal"), |screen| {
                screen.contains(needle)
            })
    }

    fn keys(&self, keys: &[&str]) {
        let sent = self
            .tmux
            .cmd()
            .args(["send-keys", "-t", "pf"])
            .args(keys)
            .status()
            .unwrap();
        assert!(sent.success());
    }
}
