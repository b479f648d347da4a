//! SMTP to a relay that is logged in to: TLS first (STARTTLS or smtps://,
//! the certificate checked against `smtp_ca_file`), then AUTH PLAIN, LOGIN
//! or CRAM-MD5; a refused login is exit 77 and leaves the mail; a relay
//! that cannot do STARTTLS is never sent the password; the secret is in no
//! output, not even the trace. And the config keys' mistakes (78).

use std::sync::Arc;

use crate::support::certs::TestPki;
use crate::support::server::{Config, Msg, Server};
use crate::support::smtpserver::{Options, SmtpServer, SmtpTls};
use crate::support::{expected_delivery, Env};
use crate::sync::account;

const PASSWORD: &str = "relay secret";

fn pop_with(n: usize) -> (Server, Vec<Vec<u8>>) {
    let datas: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            format!(
                "Return-Path: <s{i}@example.org>\r\nSubject: m{i}\r\n\r\n.dot line\r\nbody {i}\r\n"
            )
            .into_bytes()
        })
        .collect();
    let pop = Server::start(Config {
        messages: datas
            .iter()
            .enumerate()
            .map(|(i, d)| Msg::new(format!("u{i}"), d.clone()))
            .collect(),
        ..Config::default()
    });
    (pop, datas)
}

/// An account on `pop` delivering to `url` with the given extra keys.
fn relay_account(env: &Env, pop: &Server, pki: &TestPki, url: &str, extra: &str) {
    let target = format!(
        "smtp = \"{url}\"\ndeliver_to = \"carol@example.net\"\nsmtp_ca_file = \"{}\"\n{extra}",
        pki.ca_path.display()
    );
    env.write_config(
        &account("t", pop.port(), "none", "").replace("maildir = \"~/Mail/t\"", &target),
    );
}

fn relay(
    env: &Env,
    tls: fn(Arc<TestPki>) -> SmtpTls,
    auth: Vec<&'static str>,
) -> (SmtpServer, Arc<TestPki>) {
    let pki = Arc::new(TestPki::generate(env.dir.path()));
    let server = SmtpServer::with(Options {
        lmtp: false,
        tls: tls(pki.clone()),
        auth,
        ..Options::default()
    });
    (server, pki)
}

fn assert_no_secret(text: &str) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    for needle in [
        PASSWORD.to_string(),
        b64.encode(PASSWORD),
        b64.encode(format!("\0relayuser\0{PASSWORD}")),
    ] {
        assert!(
            !text.contains(&needle),
            "the secret {needle:?} shows in:\n{text}"
        );
    }
}

#[test]
fn starttls_then_auth_plain_delivers_over_tls_and_the_trace_hides_the_secret() {
    let env = Env::new();
    let (pop, datas) = pop_with(3);
    let (smtp, pki) = relay(&env, SmtpTls::StartTls, vec!["PLAIN", "LOGIN"]);
    relay_account(
        &env,
        &pop,
        &pki,
        &format!("smtp://127.0.0.1:{}", smtp.port()),
        &format!("smtp_user = \"relayuser\"\nsmtp_password = \"{PASSWORD}\""),
    );
    let run = env.run(&["sync", "-vv"]);
    run.expect_code(0);
    let got = smtp.received();
    assert_eq!(got.len(), 3);
    for (r, d) in got.iter().zip(&datas) {
        assert!(r.tls, "delivered over TLS");
        assert_eq!(r.user.as_deref(), Some("relayuser"));
        assert_eq!(r.to, "carol@example.net");
        assert_eq!(r.content(), expected_delivery(d));
    }
    let commands = smtp.commands();
    let starttls = commands
        .iter()
        .position(|c| c == "STARTTLS")
        .expect("STARTTLS sent");
    let auth = commands
        .iter()
        .position(|c| c.starts_with("AUTH PLAIN"))
        .expect("AUTH PLAIN");
    assert!(starttls < auth, "{commands:?}");
    assert_eq!(smtp.connections(), 1);
    assert!(
        run.stderr.contains("[t smtp] > AUTH PLAIN ***"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("[t smtp] < 235"), "{}", run.stderr);
    assert_no_secret(&run.stderr);
    assert_no_secret(&run.stdout);
}

#[test]
fn smtps_with_auth_login_from_a_password_command() {
    let env = Env::new();
    let (pop, datas) = pop_with(2);
    let (smtp, pki) = relay(&env, SmtpTls::Implicit, vec!["PLAIN", "LOGIN"]);
    relay_account(
        &env,
        &pop,
        &pki,
        &format!("smtps://localhost:{}", smtp.port()),
        &format!(
            "smtp_user = \"relayuser\"\nsmtp_auth = \"LOGIN\"\nsmtp_password_command = \"echo '{PASSWORD}'\""
        ),
    );
    let run = env.run(&["sync", "-vv"]);
    run.expect_code(0);
    let got = smtp.received();
    assert_eq!(got.len(), 2);
    for (r, d) in got.iter().zip(&datas) {
        assert!(r.tls && r.user.is_some());
        assert_eq!(r.content(), expected_delivery(d));
    }
    assert!(smtp.commands().iter().any(|c| c == "AUTH LOGIN"));
    assert!(!smtp.commands().iter().any(|c| c == "STARTTLS"));
    assert_no_secret(&run.stderr);
}

#[test]
fn cram_md5_when_it_is_the_one_offered() {
    let env = Env::new();
    let (pop, _) = pop_with(1);
    let (smtp, pki) = relay(&env, SmtpTls::StartTls, vec!["CRAM-MD5"]);
    relay_account(
        &env,
        &pop,
        &pki,
        &format!("smtp://localhost:{}", smtp.port()),
        &format!("smtp_user = \"relayuser\"\nsmtp_password = \"{PASSWORD}\""),
    );
    let run = env.run(&["sync", "-vv"]);
    run.expect_code(0);
    assert_eq!(smtp.received().len(), 1);
    assert!(smtp.commands().iter().any(|c| c == "AUTH CRAM-MD5"));
    assert_no_secret(&run.stderr);
}

#[test]
fn a_refused_login_is_77_with_what_to_check_and_the_mail_stays() {
    let env = Env::new();
    let (pop, _) = pop_with(2);
    let (smtp, pki) = relay(&env, SmtpTls::StartTls, vec!["PLAIN"]);
    relay_account(
        &env,
        &pop,
        &pki,
        &format!("smtp://127.0.0.1:{}", smtp.port()),
        "smtp_user = \"relayuser\"\nsmtp_password = \"wrong-pw-X7\"",
    );
    let run = env.run(&["sync"]);
    run.expect_code(77);
    assert!(
        run.stderr.contains("refused the login as relayuser")
            && run.stderr.contains("smtp_password"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("wrong-pw-X7"), "{}", run.stderr);
    assert!(smtp.received().is_empty());
    assert!(!smtp.commands().iter().any(|c| c.starts_with("MAIL")));
    // Nothing was recorded: with the right password both come.
    relay_account(
        &env,
        &pop,
        &pki,
        &format!("smtp://127.0.0.1:{}", smtp.port()),
        &format!("smtp_user = \"relayuser\"\nsmtp_password = \"{PASSWORD}\""),
    );
    env.run(&["sync"]).expect_code(0);
    assert_eq!(smtp.received().len(), 2);
}

#[test]
fn a_relay_without_starttls_is_never_sent_the_password_nor_the_mail() {
    let env = Env::new();
    let (pop, _) = pop_with(1);
    let pki = Arc::new(TestPki::generate(env.dir.path()));
    // Offers AUTH only once TLS is up, and cannot do TLS: nothing to do.
    let smtp = SmtpServer::with(Options {
        lmtp: false,
        ..Options::default()
    });
    relay_account(
        &env,
        &pop,
        &pki,
        &format!("smtp://127.0.0.1:{}", smtp.port()),
        &format!("smtp_user = \"relayuser\"\nsmtp_password = \"{PASSWORD}\""),
    );
    let run = env.run(&["sync"]);
    run.expect_code(77);
    assert!(
        run.stderr.contains("does not offer STARTTLS") && run.stderr.contains("smtps://"),
        "{}",
        run.stderr
    );
    let commands = smtp.commands();
    assert!(
        commands
            .iter()
            .all(|c| !c.starts_with("AUTH") && !c.starts_with("MAIL")),
        "{commands:?}"
    );
    assert!(smtp.received().is_empty());
}

#[test]
fn a_certificate_that_is_not_trusted_stops_before_the_login() {
    let env = Env::new();
    let (pop, _) = pop_with(1);
    let (smtp, pki) = relay(&env, SmtpTls::StartTls, vec!["PLAIN"]);
    drop(pki);
    let other_dir = env.dir.path().join("other");
    std::fs::create_dir(&other_dir).unwrap();
    let other = TestPki::generate(&other_dir);
    relay_account(
        &env,
        &pop,
        &other,
        &format!("smtp://127.0.0.1:{}", smtp.port()),
        &format!("smtp_user = \"relayuser\"\nsmtp_password = \"{PASSWORD}\""),
    );
    let run = env.run(&["sync"]);
    run.expect_code(77);
    assert!(!smtp.commands().iter().any(|c| c.starts_with("AUTH")));
    assert!(smtp.received().is_empty());
}

#[test]
fn smtp_login_keys_are_validated() {
    let env = Env::new();
    let pop = Server::start(Config::default());
    for (target, want) in [
        (
            "smtp = \"smtp://h\"\nsmtp_user = \"u\"",
            "`smtp_user` needs `smtp_password_command`",
        ),
        (
            "smtp = \"smtp://h\"\nsmtp_password = \"p\"",
            "`smtp_password` without `smtp_user`",
        ),
        (
            "smtp = \"smtp://h\"\nsmtp_user = \"u\"\nsmtp_pasword = \"p\"",
            "did you mean `smtp_password`",
        ),
        (
            "smtp = \"smtp://h\"\nsmtp_user = \"u\"\nsmtp_password = \"p\"\nsmtp_password_command = \"c\"",
            "keep one",
        ),
        (
            "smtp = \"smtp://h\"\nsmtp_user = \"u\"\nsmtp_password = \"p\"\nsmtp_auth = \"plian\"",
            "did you mean \"plain\"",
        ),
        (
            "lmtp = \"unix:/x\"\nsmtp_user = \"u\"",
            "`smtp_user` is for the `smtp` target",
        ),
        (
            "maildir = \"m\"\nsmtp_ca_file = \"ca.pem\"",
            "remove `smtp_ca_file`",
        ),
        (
            "smtp = \"smtp://h\"\nsmtp_tls_fingerprint = \"sha256:12\"",
            "smtp_tls_fingerprint \"sha256:12\" is not a SHA-256",
        ),
    ] {
        env.write_config(
            &account("t", pop.port(), "none", "").replace("maildir = \"~/Mail/t\"", target),
        );
        let run = env.run(&["accounts"]);
        run.expect_code(78);
        assert!(run.stderr.contains(want), "{target}: {}", run.stderr);
        assert!(run.stderr.contains("config.toml:"), "{target}: {}", run.stderr);
    }
}
