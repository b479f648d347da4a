//! Text a server sends (greeting, `-ERR` text, CAPA, SASL challenges)
//! reaches the user's terminal only with its control characters escaped:
//! a hostile server's escape sequences (here OSC 0, which sets the window
//! title) never arrive raw. Other text, UTF-8 included, stays readable.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::support::server::{self, Fault, Msg, Server};
use crate::support::Env;

/// What a hostile server puts in its text: an OSC title change, a bell, a
/// C1 CSI, and UTF-8 that must stay readable.
const HOSTILE: &str = "\x1b]0;pwned\x07 Grüße \u{9b}31m";
const ESCAPED: &str = "\\x1b]0;pwned\\x07 Grüße \\u{9b}31m";

#[track_caller]
fn assert_defused(output: &str) {
    assert!(
        !output.contains('\x1b') && !output.contains('\x07') && !output.contains('\u{9b}'),
        "raw control characters reached the terminal: {output:?}"
    );
    assert!(output.contains(ESCAPED), "escaped text missing: {output:?}");
}

fn account(port: u16, extra: &str) -> String {
    format!(
        "[accounts.evil]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nuser = \"alice\"\npassword = \"secret\"\nmaildir = \"~/Mail/evil\"\ntimeout = 10\n{extra}\n"
    )
}

/// A one-connection server that sends `greeting`, then answers each
/// command line with the reply of the first `(verb, reply)` whose verb
/// starts the line (`"*"` matches anything), until the client hangs up.
fn scripted(greeting: &str, script: Vec<(&'static str, String)>) -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let greeting = greeting.to_string();
    let handle = std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut out: TcpStream = sock.try_clone().unwrap();
        let _ = out.write_all(format!("{greeting}\r\n").as_bytes());
        let mut lines = BufReader::new(sock);
        let mut line = String::new();
        while lines.read_line(&mut line).is_ok_and(|n| n > 0) {
            let reply = script
                .iter()
                .find(|(verb, _)| *verb == "*" || line.starts_with(verb))
                .map(|(_, r)| r.clone())
                .unwrap_or_else(|| "-ERR unknown".to_string());
            if out.write_all(format!("{reply}\r\n").as_bytes()).is_err() {
                break;
            }
            line.clear();
        }
    });
    (port, handle)
}

#[test]
fn sync_escapes_control_characters_in_a_refused_login() {
    let srv = Server::start(server::Config {
        faults: vec![Fault::ErrOnCommand {
            verb: "PASS".into(),
            reply: format!("-ERR [AUTH] {HOSTILE}"),
        }],
        ..Default::default()
    });
    let env = Env::new();
    env.write_config(&account(srv.port(), "auth = \"user\""));
    let run = env.run(&["sync"]);
    run.expect_code(77);
    assert_defused(&run.stderr);
}

#[test]
fn sync_escapes_control_characters_in_a_refused_message() {
    let srv = Server::start(server::Config {
        messages: vec![Msg::new("u1", "Subject: x\n\nbody\n")],
        faults: vec![Fault::ErrOnCommand {
            verb: "RETR".into(),
            reply: format!("-ERR {HOSTILE}"),
        }],
        ..Default::default()
    });
    let env = Env::new();
    env.write_config(&account(srv.port(), ""));
    let run = env.run(&["sync"]);
    run.expect_code(0);
    assert!(run.stderr.contains("stays on the server"), "{}", run.stderr);
    assert_defused(&run.stderr);
}

#[test]
fn sync_escapes_control_characters_in_a_refused_greeting() {
    let srv = Server::start(server::Config {
        greeting: Some(format!("-ERR {HOSTILE}")),
        ..Default::default()
    });
    let env = Env::new();
    env.write_config(&account(srv.port(), ""));
    let run = env.run(&["sync", "--json"]);
    run.expect_code(69);
    assert_defused(&run.stderr);
}

#[test]
fn sync_escapes_control_characters_in_a_sasl_error_challenge() {
    use base64::Engine;
    let challenge =
        base64::engine::general_purpose::STANDARD.encode(format!("{{\"status\":\"{HOSTILE}\"}}"));
    let (port, server) = scripted(
        "+OK ready",
        vec![
            ("CAPA", "+OK\r\nSASL XOAUTH2\r\n.".to_string()),
            ("AUTH", format!("+ {challenge}")),
            ("QUIT", "+OK bye".to_string()),
            ("*", "-ERR [AUTH] no".to_string()),
        ],
    );
    let env = Env::new();
    env.write_config(&account(port, "auth = \"xoauth2\""));
    let run = env.run(&["sync"]);
    run.expect_code(77);
    assert!(
        run.stderr.contains("server error details"),
        "{}",
        run.stderr
    );
    assert_defused(&run.stderr);
    drop(env);
    server.join().unwrap();
}

#[test]
fn info_escapes_control_characters_in_the_greeting_and_capa() {
    let (port, server) = scripted(
        &format!("+OK {HOSTILE}"),
        vec![
            (
                "CAPA",
                format!("+OK\r\nUSER\r\nIMPLEMENTATION {HOSTILE}\r\n."),
            ),
            ("QUIT", "+OK bye".to_string()),
        ],
    );
    let env = Env::new();
    env.write_config(&account(port, ""));
    let run = env.run(&["info", "evil"]);
    run.expect_code(0);
    let greeting = run.stdout.lines().find(|l| l.contains("greeting")).unwrap();
    assert_defused(greeting);
    let capa = run
        .stdout
        .lines()
        .find(|l| l.contains("capabilities"))
        .unwrap();
    // CAPA words are split at white space; each piece is escaped.
    assert!(capa.contains("\\x1b]0;pwned\\x07"), "{capa:?}");
    assert!(!run.stdout.contains('\x1b'), "{:?}", run.stdout);
    server.join().unwrap();
}

#[test]
fn info_escapes_control_characters_in_a_refused_greeting() {
    let srv = Server::start(server::Config {
        greeting: Some(format!("-ERR {HOSTILE}")),
        ..Default::default()
    });
    let env = Env::new();
    env.write_config(&account(srv.port(), ""));
    let run = env.run(&["info", "evil"]);
    run.expect_code(69);
    assert_defused(&run.stderr);
}

#[test]
fn pop2_escapes_control_characters_in_a_refused_login() {
    let (port, server) = scripted(
        "+ POP2 ready",
        vec![
            ("HELO", format!("- {HOSTILE}")),
            ("QUIT", "+ bye".to_string()),
        ],
    );
    let env = Env::new();
    env.write_config(&account(port, "protocol = \"pop2\""));
    let run = env.run(&["sync", "-q"]);
    run.expect_code(77);
    assert_defused(&run.stderr);
    drop(env);
    server.join().unwrap();
}
