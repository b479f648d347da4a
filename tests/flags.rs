//! The global flags do what their help says: `-v` tells each step and
//! where each message went, `--color` paints errors, warnings and `new`
//! only where a terminal will show it, and a command's `--help` keeps its
//! own options apart from the global ones.

use std::path::Path;

use crate::cli::{installed, skip, Tmux};
use crate::support::server::{self, Msg, Server};
use crate::support::Env;

fn message(i: usize) -> Vec<u8> {
    format!("From: s{i}@example.org\nSubject: message {i}\n\nbody {i}\n").into_bytes()
}

fn server(count: usize) -> Server {
    Server::start(server::Config {
        messages: (0..count)
            .map(|i| Msg::new(format!("uid-{i:04}"), message(i)))
            .collect(),
        ..Default::default()
    })
}

fn account(port: u16, target: &str) -> String {
    format!(
        "[accounts.t]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nuser = \"alice\"\npassword = \"secret\"\n{target}\n"
    )
}

/// The `-v` lines that name a delivered message.
fn message_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("t: message "))
        .collect()
}

#[test]
fn verbose_sync_prints_each_step_and_where_each_message_went() {
    let srv = server(3);
    let env = Env::new();
    env.write_config(&account(srv.port(), "maildir = \"~/Mail/t\""));
    let run = env.run(&["sync", "-v"]);
    run.expect_code(0);
    let err = &run.stderr;
    for step in [
        "t: connecting to 127.0.0.1:",
        "t: connected, not encrypted",
        "t: logging in as alice (",
        "t: 3 messages on the server, 3 to fetch (",
        "t: logged out",
    ] {
        assert!(err.contains(step), "no {step:?} in:\n{err}");
    }
    let lines = message_lines(err);
    assert_eq!(lines.len(), 3, "one line per message:\n{err}");
    let new_dir = env.maildir("t").join("new");
    for (i, line) in lines.iter().enumerate() {
        let size = srv.messages()[i].size();
        let head = format!(
            "t: message {} ({size} bytes, UIDL uid-{i:04}) -> {}/",
            i + 1,
            new_dir.display()
        );
        assert!(line.starts_with(&head), "{line:?} (wanted {head:?}...)");
        // The name printed is the file that holds the message.
        let file = Path::new(line.rsplit(" -> ").next().unwrap());
        assert_eq!(std::fs::read(file).unwrap(), message(i), "{line}");
    }
    // -v is not -vv: no protocol dialogue.
    assert!(!err.contains("[t] >"), "{err}");
    // Without -v, none of it.
    let quiet = Env::new();
    quiet.write_config(&account(srv.port(), "maildir = \"~/Mail/t\""));
    let run = quiet.run(&["sync"]);
    run.expect_code(0);
    assert!(!run.stderr.contains("connecting"), "{}", run.stderr);
    assert!(message_lines(&run.stderr).is_empty(), "{}", run.stderr);
}

#[test]
fn verbose_names_the_mbox_and_the_mda_as_destinations() {
    let srv = server(2);
    let env = Env::new();
    let mbox = env.home().join("mail/t.mbox");
    let spool = env.home().join("mda-out");
    for (target, destination) in [
        (
            format!("mbox = \"{}\"", mbox.display()),
            mbox.display().to_string(),
        ),
        (
            format!("mda = \"cat >> {}\"", spool.display()),
            "mda".to_string(),
        ),
    ] {
        env.write_config(&account(srv.port(), &target));
        let run = env.run(&["sync", "-v", "--all"]);
        run.expect_code(0);
        let lines = message_lines(&run.stderr);
        assert_eq!(lines.len(), 2, "{}", run.stderr);
        for (i, line) in lines.iter().enumerate() {
            assert!(
                line.starts_with(&format!("t: message {} (", i + 1))
                    && line.contains(&format!("UIDL uid-{i:04})"))
                    && line.ends_with(&format!(" -> {destination}")),
                "{line:?}"
            );
        }
    }
}

#[test]
fn quiet_and_verbose_together_are_a_usage_error() {
    let env = Env::new();
    let run = env.run(&["sync", "-q", "-v"]);
    run.expect_code(64);
    assert!(run.stderr.contains("cannot be used with"), "{}", run.stderr);
}

const GREEN_NEW: &str = "\x1b[1;32mnew\x1b[0m";
const YELLOW_WARNING: &str = "\x1b[1;33mwarning:\x1b[0m";
const RED_ERROR: &str = "\x1b[1;31merror:\x1b[0m";

/// A server with two messages seen and two new, one of them too big for
/// `max_size`.
fn mixed_state() -> (Server, Env) {
    let srv = server(2);
    let env = Env::new();
    env.write_config(&account(srv.port(), "maildir = \"~/Mail/t\""));
    env.run(&["seen", "mark", "t"]).expect_code(0);
    srv.push_message(Msg::new("uid-0002", message(2)));
    srv.push_message(Msg::new(
        "big",
        format!("Subject: big\n\n{}\n", "x".repeat(4000)),
    ));
    env.write_config(&account(
        srv.port(),
        "maildir = \"~/Mail/t\"\nmax_size = \"1 KiB\"",
    ));
    (srv, env)
}

#[test]
fn color_always_paints_new_markers_warnings_and_errors() {
    let (srv, env) = mixed_state();
    let list = env.run(&["list", "t", "--color", "always"]);
    list.expect_code(0);
    assert!(list.stdout.contains(GREEN_NEW), "{:?}", list.stdout);
    // Only the marker: a seen line is as it was.
    assert!(
        list.stdout
            .lines()
            .any(|l| l.ends_with(" seen") && !l.contains('\x1b')),
        "{:?}",
        list.stdout
    );
    let top = env.run(&["top", "t", "--color", "always"]);
    top.expect_code(0);
    assert!(top.stdout.contains(GREEN_NEW), "{:?}", top.stdout);
    let check = env.run(&["check", "t", "--color", "always"]);
    check.expect_code(0);
    assert!(
        check.stdout.contains("\x1b[1;32m1 new message\x1b[0m"),
        "{:?}",
        check.stdout
    );
    // The oversized message is left with a warning.
    let sync = env.run(&["sync", "--color", "always"]);
    sync.expect_code(0);
    assert!(sync.stderr.contains(YELLOW_WARNING), "{:?}", sync.stderr);
    // An error: in a report (sync), and one main prints itself (list).
    drop(srv);
    let sync = env.run(&["sync", "--color", "always"]);
    assert_ne!(sync.code, 0);
    assert!(sync.stderr.contains(RED_ERROR), "{:?}", sync.stderr);
    let list = env.run(&["list", "t", "--color", "always"]);
    assert_ne!(list.code, 0);
    assert!(list.stderr.contains(RED_ERROR), "{:?}", list.stderr);
}

#[test]
fn color_auto_in_a_pipe_and_never_paint_nothing() {
    let (_srv, env) = mixed_state();
    for color in [&[][..], &["--color", "auto"][..], &["--color", "never"][..]] {
        for command in [
            &["list", "t"][..],
            &["top", "t"],
            &["check", "t"],
            &["sync"],
        ] {
            let args: Vec<&str> = command.iter().chain(color).copied().collect();
            let run = env.run(&args);
            assert!(
                !run.stdout.contains('\x1b') && !run.stderr.contains('\x1b'),
                "{args:?}: {:?} {:?}",
                run.stdout,
                run.stderr
            );
        }
    }
}

/// The text of the pane with its colours (as escape sequences).
fn capture_with_colors(tmux: &Tmux) -> String {
    let out = tmux
        .cmd()
        .args(["capture-pane", "-p", "-e", "-t", "pf"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn color_auto_paints_on_a_terminal_but_not_into_a_pipe() {
    if !installed("tmux") {
        skip("tmux is not installed; cannot check colours on a terminal");
        return;
    }
    let (_srv, env) = mixed_state();
    let tmux = Tmux::start(&env, "list t");
    tmux.wait_for("the listing", |s| s.contains("EXIT="));
    let screen = capture_with_colors(&tmux);
    assert!(screen.contains("EXIT=0"), "{screen}");
    // tmux re-encodes the colour: bold green, however it spells it.
    let new_line = screen.lines().find(|l| l.contains("uid-0002")).unwrap();
    assert!(
        new_line.contains("\x1b[1m") && new_line.contains("32m"),
        "{new_line:?}"
    );
    drop(tmux);
    // stdout into a pipe, stderr still on the terminal: stdout stays plain.
    let tmux = Tmux::start(&env, "list t | od -c | grep -c 033");
    let screen = tmux.wait_for("the listing", |s| s.contains("EXIT="));
    assert!(screen.lines().any(|l| l.trim() == "0"), "{screen}");
}

#[test]
fn subcommand_help_lists_its_own_options_apart_from_the_global_ones() {
    let env = Env::new();
    let run = env.run(&["sync", "--help"]);
    run.expect_code(0);
    let help = &run.stdout;
    let own = help.find("\nOptions:\n").expect("an Options: section");
    let global = help
        .find("\nGlobal options:\n")
        .unwrap_or_else(|| panic!("no Global options: section:\n{help}"));
    let (own, global) = if own < global {
        (&help[own..global], &help[global..])
    } else {
        (&help[own..], &help[global..own])
    };
    for flag in [
        "--keep",
        "--delete",
        "--all",
        "--dry-run",
        "--jobs",
        "--json",
    ] {
        assert!(own.contains(flag), "{flag} not among sync's own:\n{help}");
        assert!(!global.contains(flag), "{flag} among the global:\n{help}");
    }
    for flag in ["--config", "--quiet", "--verbose", "--color"] {
        assert!(global.contains(flag), "{flag} not global:\n{help}");
        assert!(!own.contains(flag), "{flag} among sync's own:\n{help}");
    }
}
