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

/// Courier-IMAP keeps every folder under its personal namespace `INBOX.`
/// and refuses `UID COPY … Archive` with a bare NO (no `[TRYCREATE]`),
/// while mail readers show the folder as `Archive`.
fn courier_move(move_to: &str) -> (ImapServer, Env, crate::support::Run) {
    let mut capabilities: Vec<String> = ImapConfig::default()
        .capabilities
        .into_iter()
        .filter(|c| c != "LITERAL+" && c != "ID")
        .collect();
    capabilities.push("NAMESPACE".into());
    let server = ImapServer::start(ImapConfig {
        messages: numbered(&mixed_messages(3, 1000)),
        capabilities,
        namespace: Some(r##"(("INBOX." ".")) NIL (("#shared." "."))"##.into()),
        faults: vec![Fault::Reply {
            when: "UID COPY".into(),
            reply: "NO Error in IMAP command received by server.".into(),
        }],
        ..Default::default()
    });
    let env = Env::new();
    env.write_config(&format!(
        "[accounts.co]\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nuser = \"alice\"\npassword = \"secret\"\nmaildir = \"~/Mail/co\"\ntimeout = 10\nkeep = false\nmove_to = \"{move_to}\"\n",
        server.port()
    ));
    let run = env.run(&["sync"]);
    (server, env, run)
}

#[test]
fn courier_move_to_outside_the_inbox_namespace_names_the_prefix() {
    let (server, env, run) = courier_move("Archive");
    run.expect_code(76);
    assert!(
        run.stderr.contains("check move_to = \"Archive\"")
            && run
                .stderr
                .contains("under \"INBOX.\": try \"INBOX.Archive\"")
            && run
                .stderr
                .contains("NO Error in IMAP command received by server."),
        "{}",
        run.stderr
    );
    // Delivered before the move failed, and nothing deleted on the server.
    assert_eq!(
        crate::support::maildir_messages(&env.maildir("co")).len(),
        3
    );
    assert!(server.expunged().is_empty());
    assert_eq!(server.messages().len(), 3);
}

#[test]
fn courier_move_to_with_the_prefix_gets_no_namespace_advice() {
    let (_server, _env, run) = courier_move("INBOX.Archive");
    run.expect_code(76);
    assert!(
        run.stderr.contains("check move_to = \"INBOX.Archive\""),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("keeps your folders"), "{}", run.stderr);
}

/// The same namespace for `folders`: Courier-IMAP answers `SELECT Archive`
/// with `NO Mailbox does not exist` when the folder is `INBOX.Archive`.
#[test]
fn courier_folder_outside_the_inbox_namespace_names_the_prefix() {
    let mut capabilities: Vec<String> = ImapConfig::default().capabilities;
    capabilities.push("NAMESPACE".into());
    let server = ImapServer::start(ImapConfig {
        capabilities,
        namespace: Some(r##"(("INBOX." ".")) NIL (("#shared." "."))"##.into()),
        faults: vec![Fault::Reply {
            when: "SELECT Archive".into(),
            reply: "NO Mailbox does not exist, or must be subscribed to.".into(),
        }],
        ..Default::default()
    });
    let env = Env::new();
    env.write_config(&format!(
        "[accounts.co]\nprotocol = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nuser = \"alice\"\npassword = \"secret\"\nmaildir = \"~/Mail/co\"\ntimeout = 10\nfolders = [\"Archive\"]\n",
        server.port()
    ));
    for cmd in ["sync", "check"] {
        let run = env.run(&[cmd]);
        run.expect_code(78);
        assert!(
            run.stderr
                .contains("folder \"Archive\" (the server keeps your folders under \"INBOX.\": try \"INBOX.Archive\")")
                && run.stderr.contains("NO Mailbox does not exist"),
            "{cmd}: {}",
            run.stderr
        );
    }
}

/// Courier's POP3 does the same with STLS: `+OK Begin SSL/TLS negotiation
/// now.` and then no TLS. The error said to set tls = "starttls", which it
/// already was.
#[test]
fn courier_stls_ok_then_no_tls_blames_the_server_tls_not_the_port() {
    use crate::support::certs::TestPki;
    use crate::support::server::{self, Server, Tls};
    let env = Env::new();
    let pki = std::sync::Arc::new(TestPki::generate(env.dir.path()));
    let srv = Server::start(server::Config {
        tls: Tls::Stls(pki.clone()),
        faults: vec![server::Fault::ErrOnCommand {
            verb: "STLS".into(),
            reply: "+OK Begin SSL/TLS negotiation now.".into(),
        }],
        ..Default::default()
    });
    env.write_config(&format!(
        "[accounts.co]\nhost = \"localhost\"\nport = {}\ntls = \"starttls\"\nca_file = \"{}\"\nuser = \"alice\"\npassword = \"secret\"\nmaildir = \"~/Mail/co\"\ntimeout = 10\n",
        srv.port(),
        pki.ca_path.display()
    ));
    let run = env.run(&["sync"]);
    run.expect_code(76);
    assert!(
        run.stderr
            .contains("the server accepted STLS but then did not speak TLS")
            && run.stderr.contains("tls = \"implicit\""),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("then set tls = \"starttls\""),
        "{}",
        run.stderr
    );
}

/// The self-signed certificate `openssl req -x509` makes (Cyrus and Courier
/// setups use them) is marked CA:TRUE, which TLS refuses as a server's own
/// even when `ca_file` names it. popfetch said "self-signed … set ca_file",
/// which was already set; now it says why that cannot work and to pin it,
/// and the pin works.
#[test]
fn self_signed_ca_certificate_in_ca_file_is_explained_and_a_pin_works() {
    use crate::support::certs::TestPki;
    use crate::support::imapserver::Tls as ImapTls;
    let env = Env::new();
    let pki = std::sync::Arc::new(TestPki::self_signed_ca(env.dir.path()));
    let server = ImapServer::start(ImapConfig {
        messages: numbered(&mixed_messages(2, 1000)),
        tls: ImapTls::Implicit(pki.clone()),
        ..Default::default()
    });
    let account = |trust: String| {
        format!(
            "[accounts.cy]\nprotocol = \"imap\"\nhost = \"localhost\"\nport = {}\nuser = \"alice\"\npassword = \"secret\"\nmaildir = \"~/Mail/cy\"\ntimeout = 10\n{trust}\n",
            server.port()
        )
    };
    env.write_config(&account(format!("ca_file = \"{}\"", pki.ca_path.display())));
    let run = env.run(&["sync"]);
    run.expect_code(77);
    assert!(
        run.stderr.contains("marked as a CA (CA:TRUE")
            && run.stderr.contains("not even from ca_file")
            && run.stderr.contains(&pki.fingerprint),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("/path/to/ca.pem"), "{}", run.stderr);
    env.write_config(&account(format!(
        "tls_fingerprint = \"{}\"",
        pki.fingerprint
    )));
    env.run(&["sync"]).expect_code(0);
    assert_eq!(
        crate::support::maildir_messages(&env.maildir("cy")).len(),
        2
    );
}
