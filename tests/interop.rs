//! Behaviours of mail servers other than Dovecot that broke popfetch or
//! misled its users, found by running it against Courier-IMAP 5.0.13 and
//! Cyrus IMAP 3.6.1 (README, "Interoperability"), and replayed here on the
//! scripted servers so CI keeps them fixed without installing those servers.

use std::time::Duration;

use crate::support::imapserver::{numbered, Fault, ImapConfig, ImapServer};
use crate::support::{mixed_messages, Env};

/// An IMAP account on the scripted server with STARTTLS.
fn starttls_account(server: &ImapServer) -> String {
    format!(
        "[accounts.co]\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\nuser = \"alice\"\npassword = \"secret\"\nmaildir = \"~/Mail/co\"\ntimeout = 10\n",
        server.port()
    )
}

fn courier_starttls(pause: Option<Duration>) -> ImapServer {
    let mut capabilities: Vec<String> = ImapConfig::default().capabilities;
    capabilities.push("STARTTLS".into());
    ImapServer::start(ImapConfig {
        messages: numbered(&mixed_messages(3, 1000)),
        capabilities,
        faults: vec![Fault::StarttlsFails { pause }],
        ..Default::default()
    })
}

/// Courier-IMAP answers STARTTLS with OK and then, when its couriertls
/// cannot start, `NO STARTTLS failed: …` in clear. popfetch used to blame
/// the port ("a plain POP3 port? then set tls = \"starttls\"", which it
/// already was); now it says the server's TLS is broken, still exit 76 and
/// no password sent.
#[test]
fn courier_starttls_ok_then_no_blames_the_server_tls_not_the_port() {
    let server = courier_starttls(Some(Duration::from_millis(300)));
    let env = Env::new();
    env.write_config(&starttls_account(&server));
    let run = env.run(&["sync"]);
    run.expect_code(76);
    assert!(
        run.stderr
            .contains("the server accepted STARTTLS but then did not speak TLS"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("tls = \"implicit\""), "{}", run.stderr);
    assert!(!run.stderr.contains("POP3"), "{}", run.stderr);
    assert!(!run.stderr.contains("secret"), "{}", run.stderr);
    assert!(
        !server.log().iter().any(|l| l.contains("LOGIN")),
        "nothing after STARTTLS: {:?}",
        server.log()
    );
}

/// The same failure when the NO arrives together with the OK: refused as
/// data sent after the STARTTLS reply (never read as a reply), and the
/// server's words are shown, since they say what to fix.
#[test]
fn courier_starttls_no_in_the_same_write_is_shown_and_refused() {
    let server = courier_starttls(None);
    let env = Env::new();
    env.write_config(&starttls_account(&server));
    let run = env.run(&["sync"]);
    run.expect_code(76);
    assert!(
        run.stderr.contains("NO STARTTLS failed")
            && run.stderr.contains("Permission denied")
            && run.stderr.contains("refusing to continue")
            && run.stderr.contains("TLS setup is broken"),
        "{}",
        run.stderr
    );
}
