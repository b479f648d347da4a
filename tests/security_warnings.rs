//! A secret that crosses the network in clear (`tls = "none"`) is always
//! warned about: for a password and for an OAuth bearer token, for POP3
//! and POP2, even with `-q`, even when the login then fails, and with the
//! fix when the server offers STLS. Everything else stays quiet with `-q`.

use std::sync::Arc;

use crate::support::certs::TestPki;
use crate::support::pop2server::Pop2Server;
use crate::support::server::{self, Msg, Server, Tls};
use crate::support::Env;

fn account(port: u16, extra: &str) -> String {
    format!(
        "[accounts.plain]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nuser = \"alice\"\nmaildir = \"~/Mail/plain\"\ntimeout = 10\n{extra}\n"
    )
}

#[track_caller]
fn assert_warned(stderr: &str, secret: &str) {
    assert!(
        stderr.contains(&format!("sending the {secret} unencrypted")),
        "no clear-text warning for the {secret}:\n{stderr}"
    );
}

#[test]
fn cleartext_password_warning_shows_even_with_quiet() {
    let srv = Server::start(server::Config {
        messages: vec![Msg::new("u1", "Subject: x\n\nbody\n")],
        // An ordinary warning, which -q keeps quiet.
        expire: Some("0".into()),
        ..Default::default()
    });
    let env = Env::new();
    env.write_config(&account(srv.port(), "password = \"secret\""));
    let run = env.run(&["sync", "-q"]);
    run.expect_code(0);
    assert_warned(&run.stderr, "password");
    assert!(
        !run.stderr.contains("EXPIRE"),
        "-q shows only security warnings:\n{}",
        run.stderr
    );
    // Without -q the ordinary warning shows, when a run took mail the
    // server will drop; a run with nothing new says nothing (cron mails
    // whatever a run prints), and neither does one that deletes anyway.
    srv.push_message(Msg::new("u2", "Subject: y\n\nbody\n"));
    let run = env.run(&["sync"]);
    assert!(run.stderr.contains("EXPIRE 0"), "{}", run.stderr);
    let run = env.run(&["sync"]);
    run.expect_code(0);
    assert!(!run.stderr.contains("EXPIRE"), "{}", run.stderr);
    srv.push_message(Msg::new("u3", "Subject: z\n\nbody\n"));
    let run = env.run(&["sync", "--delete"]);
    run.expect_code(0);
    assert!(!run.stderr.contains("EXPIRE"), "{}", run.stderr);
}

#[test]
fn cleartext_password_warning_shows_when_the_login_fails() {
    let srv = Server::start(server::Config::default());
    let env = Env::new();
    env.write_config(&account(srv.port(), "password = \"wrong\""));
    let run = env.run(&["sync"]);
    run.expect_code(77);
    assert_warned(&run.stderr, "password");
    let run = env.run(&["check", "-q"]);
    run.expect_code(77);
    assert_warned(&run.stderr, "password");
}

#[test]
fn bearer_token_over_plain_text_gets_the_cleartext_warning() {
    for auth in ["xoauth2", "oauthbearer"] {
        let srv = Server::start(server::Config {
            sasl: vec![auth.to_ascii_uppercase()],
            user_cmd: false,
            messages: vec![Msg::new("u1", "Subject: x\n\nbody\n")],
            ..Default::default()
        });
        let env = Env::new();
        env.write_config(&account(
            srv.port(),
            &format!("auth = \"{auth}\"\npassword = \"secret\""),
        ));
        let run = env.run(&["sync", "-q"]);
        run.expect_code(0);
        assert_warned(&run.stderr, "OAuth token");
    }
}

#[test]
fn pop2_check_and_sync_warn_about_the_cleartext_password() {
    let srv = Pop2Server::start(vec![b"Subject: x\n\nbody\n".to_vec()]);
    let env = Env::new();
    env.write_config(&account(
        srv.port(),
        "protocol = \"pop2\"\npassword = \"secret\"",
    ));
    let run = env.run(&["check", "-q"]);
    run.expect_code(0);
    assert_warned(&run.stderr, "password");
    let run = env.run(&["sync", "-q"]);
    run.expect_code(0);
    assert_warned(&run.stderr, "password");
}

#[test]
fn cleartext_warning_says_to_use_stls_when_the_server_offers_it() {
    let env = Env::new();
    let pki = Arc::new(TestPki::generate(env.dir.path()));
    let srv = Server::start(server::Config {
        tls: Tls::Stls(pki),
        ..Default::default()
    });
    env.write_config(&account(srv.port(), "password = \"secret\""));
    let run = env.run(&["sync", "-q"]);
    run.expect_code(0);
    assert_warned(&run.stderr, "password");
    assert!(
        run.stderr
            .contains("the server offers STLS: set tls = \"starttls\""),
        "{}",
        run.stderr
    );
}
