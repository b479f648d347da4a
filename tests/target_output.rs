//! What `accounts`, `info`, `sync --dry-run`, `--json` and `-v` say about
//! a target that is a server (LMTP, SMTP, IMAP): where it is and how it is
//! logged in to, never the secret; `info` probes it without a login;
//! a dry run names it without contacting it.

use std::sync::Arc;

use crate::support::certs::TestPki;
use crate::support::imapserver::{ImapConfig, ImapServer, Tls as ImapTls};
use crate::support::server::{Config, Msg, Server};
use crate::support::smtpserver::{Options, SmtpServer, SmtpTls};
use crate::support::Env;
use crate::sync::account;

fn with_target(pop: &Server, target: &str) -> String {
    account("t", pop.port(), "none", "").replace("maildir = \"~/Mail/t\"", target)
}

fn pop_with(n: usize) -> Server {
    Server::start(Config {
        messages: (0..n)
            .map(|i| {
                Msg::new(
                    format!("u{i}"),
                    format!("Subject: {i}\r\n\r\nbody\r\n").into_bytes(),
                )
            })
            .collect(),
        ..Config::default()
    })
}

/// Without `deliver_to`, `accounts` names the recipient LMTP will use:
/// the user's own name, or says there is none.
#[test]
fn accounts_shows_the_default_lmtp_recipient() {
    let env = Env::new();
    env.write_config(
        "[accounts.l]\nhost = \"pop.example.com\"\nuser = \"u\"\nlmtp = \"unix:/run/dovecot/lmtp\"\n",
    );
    let out = env
        .command(&["accounts"])
        .env("USER", "carol")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("recipient    carol (your user name"),
        "{text}"
    );
    let run = env.run(&["accounts"]);
    assert!(
        run.stdout.contains("recipient    none: set deliver_to"),
        "{}",
        run.stdout
    );
}

#[test]
fn accounts_shows_each_target_and_its_login_but_never_the_secret() {
    let env = Env::new();
    let pop = pop_with(0);
    let ca = env.dir.path().join("relay-ca.pem");
    std::fs::write(&ca, "").unwrap();
    env.write_config(&format!(
        "{}{}[targets.gmail]\nurl = \"imaps://imap.example.com/Archive\"\nuser = \"me@example.com\"\npassword_command = \"echo imap-secret-9\"\n",
        with_target(
            &pop,
            &format!(
                "smtp = \"smtps://relay.example.com\"\ndeliver_to = \"carol@example.net\"\nsmtp_user = \"relayuser\"\nsmtp_password = \"smtp-secret-7\"\nsmtp_ca_file = \"{}\"",
                ca.display()
            ),
        ),
        account("g", pop.port(), "none", "")
            .replace("user = \"alice\"", "user = \"gina\"")
            .replace("maildir = \"~/Mail/g\"", "imap_target = \"gmail\""),
    ));
    let run = env.run(&["accounts"]);
    run.expect_code(0);
    for want in [
        "deliver to   smtp smtps://relay.example.com",
        "recipient    carol@example.net",
        "relay login  relayuser (smtp_auth auto, password (in the config file))",
        &format!("relay ca     {}", ca.display()),
        "deliver to   imap_target gmail (imaps://imap.example.com/Archive)",
        "target login me@example.com on imap.example.com:993 (implicit TLS, auth auto, password_command)",
    ] {
        assert!(run.stdout.contains(want), "{want:?} in\n{}", run.stdout);
    }
    let run = env.run(&["accounts", "--json"]);
    run.expect_code(0);
    let lines = run.json_lines();
    let of = |name: &str| {
        lines
            .iter()
            .find(|l| l["account"] == name)
            .unwrap_or_else(|| panic!("{name} in {}", run.stdout))
    };
    let smtp = &of("t")["destination"];
    assert_eq!(smtp["type"], "smtp");
    assert_eq!(smtp["path"], "smtps://relay.example.com");
    assert_eq!(smtp["smtp_user"], "relayuser");
    assert_eq!(smtp["smtp_auth"], "auto");
    assert_eq!(smtp["deliver_to"], "carol@example.net");
    let imap = &of("g")["destination"];
    assert_eq!(imap["type"], "imap_target");
    assert_eq!(imap["name"], "gmail");
    assert_eq!(imap["url"], "imaps://imap.example.com/Archive");
    assert_eq!(imap["folder"], "Archive");
    assert_eq!(imap["user"], "me@example.com");
    assert_eq!(imap["password_source"], "password_command");
    for out in [&run.stdout, &run.stderr] {
        assert!(
            !out.contains("smtp-secret-7") && !out.contains("imap-secret-9"),
            "{out}"
        );
    }
    // A missing smtp_ca_file is named, as a missing ca_file is.
    std::fs::remove_file(&ca).unwrap();
    let run = env.run(&["accounts"]);
    run.expect_code(78);
    assert!(run.stderr.contains("smtp_ca_file"), "{}", run.stderr);
}

#[test]
fn info_probes_an_lmtp_target_without_sending_a_message() {
    let env = Env::new();
    let pop = pop_with(1);
    let lmtp = SmtpServer::with(Options {
        chunking: true,
        ..Options::default()
    });
    env.write_config(&with_target(
        &pop,
        &format!(
            "lmtp = \"lmtp://127.0.0.1:{}\"\ndeliver_to = \"bob\"",
            lmtp.port()
        ),
    ));
    let run = env.run(&["info", "t"]);
    run.expect_code(0);
    assert!(
        run.stdout.contains(&format!(
            "t delivers to lmtp lmtp://127.0.0.1:{}",
            lmtp.port()
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("  greeting      test ready"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("CHUNKING") && run.stdout.contains("PIPELINING"),
        "{}",
        run.stdout
    );
    let commands = lmtp.commands();
    assert!(commands[0].starts_with("LHLO "), "{commands:?}");
    assert!(
        !commands.iter().any(|c| c.starts_with("MAIL")),
        "{commands:?}"
    );
    assert_eq!(commands.last().unwrap(), "QUIT");
}

#[test]
fn info_probes_an_smtp_relay_over_starttls_shows_its_certificate_and_never_logs_in() {
    let env = Env::new();
    let pop = pop_with(0);
    let pki = Arc::new(TestPki::generate(env.dir.path()));
    let relay = SmtpServer::with(Options {
        lmtp: false,
        tls: SmtpTls::StartTls(pki.clone()),
        auth: vec!["PLAIN"],
        ..Options::default()
    });
    env.write_config(&with_target(
        &pop,
        &format!(
            "smtp = \"smtp://localhost:{}\"\nsmtp_user = \"relayuser\"\nsmtp_password = \"x\"",
            relay.port()
        ),
    ));
    // Not trusted (no smtp_ca_file): shown with the pin to set.
    let run = env.run(&["info", "t"]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("t delivers to smtp smtp://localhost:"),
        "{}",
        run.stdout
    );
    let target = run.stdout.split("t delivers to").nth(1).unwrap();
    assert!(target.contains("  TLS           TLS"), "{target}");
    assert!(target.contains("trusted       NO"), "{target}");
    assert!(
        target.contains(&format!("smtp_tls_fingerprint = \"{}\"", pki.fingerprint)),
        "{target}"
    );
    assert!(target.contains("AUTH PLAIN"), "{target}");
    let commands = relay.commands();
    assert!(commands.iter().any(|c| c == "STARTTLS"), "{commands:?}");
    assert!(
        !commands.iter().any(|c| c.starts_with("AUTH")),
        "{commands:?}"
    );
}

#[test]
fn info_probes_an_imap_target_without_a_login() {
    let env = Env::new();
    let pop = pop_with(0);
    let pki = Arc::new(TestPki::generate(env.dir.path()));
    let imap = ImapServer::start(ImapConfig {
        user: "me".into(),
        password: "imap-pw".into(),
        tls: ImapTls::Implicit(pki.clone()),
        ..ImapConfig::default()
    });
    env.write_config(&format!(
        "{}[targets.home]\nurl = \"imaps://localhost:{}/INBOX\"\nuser = \"me\"\npassword = \"imap-pw\"\nca_file = \"{}\"\n",
        with_target(&pop, "imap_target = \"home\""),
        imap.port(),
        pki.ca_path.display()
    ));
    let run = env.run(&["info", "t"]);
    run.expect_code(0);
    let target = run
        .stdout
        .split("t delivers to imap_target home")
        .nth(1)
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(target.contains("  TLS           TLS"), "{target}");
    assert!(target.contains("trusted       yes"), "{target}");
    assert!(target.contains("IMAP4REV1"), "{target}");
    let log = imap.log().join("\n");
    assert!(
        !log.contains("LOGIN") && !log.contains("AUTHENTICATE"),
        "{log}"
    );
}

#[test]
fn info_with_a_target_that_is_down_shows_the_source_and_fails_with_the_targets_code() {
    let env = Env::new();
    let pop = pop_with(0);
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    env.write_config(&with_target(
        &pop,
        &format!("lmtp = \"lmtp://127.0.0.1:{port}\"\ndeliver_to = \"bob\""),
    ));
    let run = env.run(&["info", "t"]);
    run.expect_code(69);
    assert!(run.stdout.contains("  greeting"), "{}", run.stdout);
    assert!(run.stdout.contains("  error         "), "{}", run.stdout);
}

/// The source down: `info` fails with the source's code and still shows
/// what the target's probe found.
#[test]
fn info_with_the_source_down_still_probes_the_target() {
    let env = Env::new();
    let lmtp = SmtpServer::start(true, true);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    env.write_config(&account("t", closed, "none", "").replace(
        "maildir = \"~/Mail/t\"",
        &format!(
            "lmtp = \"lmtp://127.0.0.1:{}\"\ndeliver_to = \"bob\"",
            lmtp.port()
        ),
    ));
    let run = env.run(&["info", "t"]);
    run.expect_code(69);
    assert!(run.stdout.contains("t delivers to lmtp"), "{}", run.stdout);
    assert!(
        run.stdout.contains("  greeting      test ready"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("refused"), "{}", run.stderr);
    assert_eq!(lmtp.received().len(), 0, "a probe sends no mail");
}

#[test]
fn dry_run_names_the_target_without_contacting_it_and_json_names_it_too() {
    let env = Env::new();
    let pop = pop_with(2);
    let lmtp = SmtpServer::start(true, true);
    env.write_config(&with_target(
        &pop,
        &format!(
            "lmtp = \"lmtp://127.0.0.1:{}\"\ndeliver_to = \"bob\"",
            lmtp.port()
        ),
    ));
    let run = env.run(&["sync", "--dry-run"]);
    run.expect_code(0);
    let first = run.stdout.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!(
            "t: delivers to lmtp lmtp://127.0.0.1:{} (not contacted by a dry run)",
            lmtp.port()
        )
    );
    assert!(
        run.stdout.contains("would fetch 2 messages"),
        "{}",
        run.stdout
    );
    let run = env.run(&["sync", "--dry-run", "--json"]);
    run.expect_code(0);
    assert_eq!(
        run.json_lines()[0]["target"],
        format!("lmtp lmtp://127.0.0.1:{}", lmtp.port())
    );
    assert_eq!(lmtp.connections(), 0, "a dry run never talks to the target");

    let run = env.run(&["sync", "--json", "-v"]);
    run.expect_code(0);
    let record = &run.json_lines()[0];
    assert_eq!(record["new"], 2);
    assert_eq!(
        record["target"],
        format!("lmtp lmtp://127.0.0.1:{}", lmtp.port())
    );
    assert!(
        run.stderr.contains(&format!(
            "t: connecting to LMTP lmtp://127.0.0.1:{}",
            lmtp.port()
        )) && run.stderr.contains("connected to LMTP"),
        "{}",
        run.stderr
    );
    assert_eq!(lmtp.received().len(), 2);
}

#[test]
fn vv_traces_the_imap_targets_session_with_the_password_hidden() {
    use crate::support::dovecot::{require_dovecot_imap, Dovecot};
    if !require_dovecot_imap() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice"), ("bob", "bob-imap-secret")]);
    dc.add_messages("alice", &[b"Subject: one\n\nbody\n".as_slice()]);
    let env = Env::new();
    env.write_config(&format!(
        "[accounts.isp]\nhost = \"localhost\"\nport = {}\nuser = \"alice\"\npassword = \"pw-alice\"\nca_file = \"{ca}\"\ntimeout = 20\nimap_target = \"home\"\n\
         [targets.home]\nurl = \"imaps://localhost:{}/INBOX\"\nuser = \"bob\"\npassword = \"bob-imap-secret\"\nca_file = \"{ca}\"\ntimeout = 20\n",
        dc.pop3s_port(),
        dc.imaps_port(),
        ca = dc.pki().ca_path.display()
    ));
    let run = env.run(&["sync", "-vv"]);
    run.expect_code(0);
    assert_eq!(dc.message_count("bob"), 1);
    let target_lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("[isp (target home)]"))
        .collect();
    assert!(
        target_lines
            .iter()
            .any(|l| l.contains("> ") && l.contains("APPEND")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("isp (target home): connected, TLS"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("bob-imap-secret"), "{}", run.stderr);
}

#[test]
fn target_key_mistakes_are_78_with_file_line_and_did_you_mean() {
    let env = Env::new();
    let pop = pop_with(0);
    let table = "[targets.gmail]\nurl = \"imaps://imap.example.com/INBOX\"\nuser = \"me\"\n";
    for (target, tables, want) in [
        ("lmpt = \"unix:/x\"", "", "did you mean `lmtp`"),
        ("smtp_usr = \"u\"\nsmtp = \"smtp://h\"", "", "did you mean `smtp_user`"),
        ("imap_target = \"gmial\"", table, "did you mean `gmail`"),
        (
            "imap_target = \"gmail\"",
            "[targets.gmail]\nurl = \"imaps://imap.example.com/INBOX\"\nuser = \"me\"\npasword = \"x\"\n",
            "did you mean `password`",
        ),
        (
            "smtp = \"smtp://h\"\nsmtp_user = \"u\"\nsmtp_password = \"p\"\nsmtp_auth = 3",
            "",
            "smtp_auth",
        ),
        ("smtp = \"smtps://h:0\"", "", "no valid host and port"),
    ] {
        env.write_config(&format!("{}{tables}", with_target(&pop, target)));
        for args in [&["accounts"][..], &["sync"], &["info", "t"]] {
            let run = env.run(args);
            run.expect_code(78);
            assert!(run.stderr.contains(want), "{target}: {}", run.stderr);
            assert!(
                run.stderr.contains("config.toml:"),
                "{target}: file:line in {}",
                run.stderr
            );
        }
    }
}
