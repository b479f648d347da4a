//! Settings that do not match the server: a `tls` mode that is wrong for
//! the port, a pin the certificate no longer matches, an `auth` mechanism
//! the server does not offer. Each fails at once, not after the timeout,
//! with an exit code a scheduler will not retry (SPEC §6), the fact and
//! the fix.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::certs::TestPki;
use crate::support::server::{Config, Fault, Msg, Server, Tls};
use crate::support::{maildir_messages, Env};
use crate::sync::account;

fn one_message() -> Vec<Msg> {
    vec![Msg::new("u1", "Subject: hi\n\nhello\n")]
}

fn implicit_server(env: &Env) -> (Server, Arc<TestPki>) {
    let pki = Arc::new(TestPki::generate(&env.dir.path().join("pki")));
    let server = Server::start(Config {
        messages: one_message(),
        tls: Tls::Implicit(pki.clone()),
        ..Config::default()
    });
    (server, pki)
}

/// A timeout far above the time the mismatch may take to be recognised, so
/// a run that waits for it is told apart from one that does not.
fn slow_timeout(cfg: String) -> String {
    cfg.replace("timeout = 10", "timeout = 30")
}

/// `tls = "none"` or `"starttls"` on an implicit-TLS port: the server waits
/// for a ClientHello while we wait for a greeting. That used to last the
/// whole timeout and end in 75 ("raise timeout"), which schedulers retry
/// for ever.
#[test]
fn plain_tls_modes_on_an_implicit_tls_port_fail_at_once_naming_implicit() {
    for mode in ["none", "starttls"] {
        let env = Env::new();
        let (server, pki) = implicit_server(&env);
        let ca = format!("ca_file = \"{}\"", pki.ca_path.display());
        let trust = if mode == "none" { "" } else { ca.as_str() };
        env.write_config(&slow_timeout(account("t", server.port(), mode, trust)));
        let started = Instant::now();
        let run = env.run(&["sync"]);
        let took = started.elapsed();
        eprintln!("tls = {mode:?}, {took:?}: {}", run.stderr);
        run.expect_code(76);
        assert!(
            took < Duration::from_secs(15),
            "tls = {mode:?}: recognised well before the 30 s timeout, took {took:?}"
        );
        assert!(
            run.stderr.contains("speaks TLS")
                && run.stderr.contains("tls = \"implicit\"")
                && run.stderr.contains(&format!("port {}", server.port())),
            "tls = {mode:?}: {}",
            run.stderr
        );
        assert!(maildir_messages(&env.maildir("t")).is_empty());
        assert!(
            server.log().is_empty(),
            "tls = {mode:?}: no command (or password) reached the TLS server: {:?}",
            server.log()
        );
        // The fix it names works.
        env.write_config(&account("t", server.port(), "implicit", &ca));
        env.run(&["sync"]).expect_code(0);
        assert_eq!(maildir_messages(&env.maildir("t")).len(), 1);
    }
}

/// The check for a TLS port never harms a plain server that is merely
/// slow to greet: nothing is sent on the connection that waits for the
/// greeting (the probe goes on a second one), so the session is in step and
/// the mail arrives.
#[test]
fn a_plain_server_slow_to_greet_is_still_waited_for() {
    for mode in ["none", "starttls"] {
        let env = Env::new();
        let pki = Arc::new(TestPki::generate(&env.dir.path().join("pki")));
        let server = Server::start(Config {
            messages: one_message(),
            tls: if mode == "none" {
                Tls::None
            } else {
                Tls::Stls(pki.clone())
            },
            // Longer than the silence after which the port is checked.
            faults: vec![Fault::SlowGreeting { delay_ms: 3_500 }],
            ..Config::default()
        });
        let ca = format!("ca_file = \"{}\"", pki.ca_path.display());
        let trust = if mode == "none" { "" } else { ca.as_str() };
        env.write_config(&slow_timeout(account("t", server.port(), mode, trust)));
        let run = env.run(&["sync"]);
        run.expect_code(0);
        assert_eq!(
            maildir_messages(&env.maildir("t")).len(),
            1,
            "tls = {mode:?}"
        );
        assert!(
            server.connections() >= 2,
            "tls = {mode:?}: the port was checked on a connection of its own"
        );
    }
}

/// A server that answers where a greeting should be with a TLS record (a
/// handshake record or an alert, as some TLS front ends do at once).
#[test]
fn a_tls_record_where_the_greeting_should_be_is_76_naming_implicit() {
    use std::io::{Read, Write};
    // A TLS alert record (fatal, unexpected_message), then the connection
    // stays open, as a TLS terminator might leave it.
    for record in [
        &[0x15u8, 0x03, 0x03, 0x00, 0x02, 0x02, 0x0a][..],
        &[0x16u8, 0x03, 0x01, 0x00, 0x04, 0x0e, 0x00, 0x00, 0x00][..],
    ] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let record = record.to_vec();
        let holder = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(&record).unwrap();
            let mut b = [0u8; 64];
            let _ = s.read(&mut b);
        });
        let env = Env::new();
        env.write_config(&slow_timeout(account("t", port, "none", "")));
        let started = Instant::now();
        let run = env.run(&["sync"]);
        eprintln!("{}", run.stderr);
        run.expect_code(76);
        assert!(started.elapsed() < Duration::from_secs(15));
        assert!(
            run.stderr.contains("speaks TLS") && run.stderr.contains("tls = \"implicit\""),
            "{}",
            run.stderr
        );
        holder.join().unwrap();
    }
}

/// `tls = "implicit"` on a plain POP3 port: the server greets with `+OK`
/// where a ServerHello should be.
#[test]
fn implicit_tls_on_a_plain_port_is_76_naming_starttls() {
    let env = Env::new();
    let server = Server::start(Config {
        messages: one_message(),
        ..Config::default()
    });
    env.write_config(&slow_timeout(account("t", server.port(), "implicit", "")));
    let started = Instant::now();
    let run = env.run(&["sync"]);
    eprintln!("{}", run.stderr);
    run.expect_code(76);
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(
        run.stderr.contains("speaks plain POP3")
            && run.stderr.contains("+OK")
            && run.stderr.contains("tls = \"starttls\"")
            && run.stderr.contains(&format!("port {}", server.port())),
        "{}",
        run.stderr
    );
    assert!(server.log().iter().all(|l| !l.contains("secret")));
}

/// A pinned certificate that changed: the message says so, shows the
/// pinned and the presented fingerprint and what to do, exit 77.
#[test]
fn a_changed_pinned_certificate_is_77_with_both_fingerprints() {
    let env = Env::new();
    let old = TestPki::self_signed(&env.dir.path().join("old"));
    let new = Arc::new(TestPki::self_signed(&env.dir.path().join("new")));
    let server = Server::start(Config {
        messages: one_message(),
        tls: Tls::Implicit(new.clone()),
        ..Config::default()
    });
    env.write_config(&account(
        "t",
        server.port(),
        "implicit",
        &format!("tls_fingerprint = \"{}\"", old.fingerprint),
    ));
    let run = env.run(&["sync"]);
    eprintln!("{}", run.stderr);
    run.expect_code(77);
    for needle in [
        "certificate of 127.0.0.1 has changed",
        old.fingerprint.as_str(),
        new.fingerprint.as_str(),
        "popfetch info t",
    ] {
        assert!(
            run.stderr.contains(needle),
            "lacks {needle:?}: {}",
            run.stderr
        );
    }
    assert!(server.log().is_empty(), "no login: {:?}", server.log());
    assert!(maildir_messages(&env.maildir("t")).is_empty());
}

/// `auth = "cram-md5"` on a server whose CAPA lists other mechanisms: the
/// fact and the choices, before any AUTH (and before the password is
/// asked for), not "check `user` and the password".
#[test]
fn an_auth_mechanism_the_server_does_not_offer_is_named_before_any_auth() {
    let env = Env::new();
    let server = Server::start(Config {
        messages: one_message(),
        sasl: vec!["PLAIN".into(), "LOGIN".into()],
        ..Config::default()
    });
    env.write_config(&account("t", server.port(), "none", "auth = \"cram-md5\""));
    let run = env.run(&["sync"]);
    eprintln!("{}", run.stderr);
    run.expect_code(77);
    assert!(
        run.stderr.contains("does not offer CRAM-MD5")
            && run.stderr.contains("PLAIN LOGIN")
            && run.stderr.contains("auth = \"auto\""),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("check `user`"),
        "not blamed on the password: {}",
        run.stderr
    );
    assert!(
        server.log().iter().all(|l| !l.starts_with("AUTH")),
        "no AUTH sent: {:?}",
        server.log()
    );
    // `auth = "user"` stays allowed where CAPA lists USER.
    env.write_config(&account("t", server.port(), "none", "auth = \"user\""));
    env.run(&["sync"]).expect_code(0);

    // Without CAPA there is no list to go by: the mechanism is tried.
    let env = Env::new();
    let old = Server::start(Config {
        messages: one_message(),
        capa: false,
        sasl: vec!["CRAM-MD5".into()],
        ..Config::default()
    });
    env.write_config(&account("t", old.port(), "none", "auth = \"cram-md5\""));
    env.run(&["sync"]).expect_code(0);
}
