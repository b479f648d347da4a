//! `popfetch sync` against a real Dovecot: implicit TLS and STLS with a
//! test CA, Maildir and mbox, keep and delete.

use crate::support::dovecot::{require_dovecot, Dovecot};
use crate::support::{expected_delivery, maildir_messages, mixed_messages, Env};

fn dovecot_account(dc: &Dovecot, name: &str, tls: &str, dest: &str) -> String {
    let port = if tls == "implicit" {
        dc.pop3s_port()
    } else {
        dc.pop3_port()
    };
    format!(
        "[accounts.{name}]\nhost = \"localhost\"\nport = {port}\ntls = \"{tls}\"\nuser = \"alice\"\npassword = \"pw-alice\"\nca_file = \"{}\"\n{dest}\ntimeout = 20\n",
        dc.pki().ca_path.display()
    )
}

fn sorted_expected(datas: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = datas.iter().map(|d| expected_delivery(d)).collect();
    v.sort();
    v
}

#[test]
fn dovecot_implicit_tls_maildir_keep_then_delete() {
    if !require_dovecot() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice")]);
    let datas = mixed_messages(200, 1024 * 1024);
    dc.add_messages("alice", &datas);
    let env = Env::new();
    env.write_config(&dovecot_account(
        &dc,
        "dc",
        "implicit",
        "maildir = \"~/Mail/dc\"",
    ));

    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 200);
    assert_eq!(
        maildir_messages(&env.maildir("dc")),
        sorted_expected(&datas)
    );
    assert_eq!(dc.message_count("alice"), 200, "keep leaves them");

    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 0);

    let run = env.run(&["sync", "--delete", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["deleted"], 200);
    assert_eq!(run.json_lines()[0]["new"], 0);
    assert_eq!(dc.message_count("alice"), 0, "server emptied");
    assert_eq!(
        maildir_messages(&env.maildir("dc")).len(),
        200,
        "nothing delivered twice"
    );
}

#[test]
fn dovecot_starttls_mbox() {
    if !require_dovecot() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice")]);
    let datas = mixed_messages(200, 300 * 1024);
    dc.add_messages("alice", &datas);
    let env = Env::new();
    env.write_config(&dovecot_account(
        &dc,
        "dc",
        "starttls",
        "mbox = \"~/inbox.mbox\"",
    ));
    env.run(&["sync"]).expect_code(0);
    let mbox = std::fs::read(env.home().join("inbox.mbox")).unwrap();
    let mut got = crate::sync::parse_mboxrd(&mbox);
    got.sort();
    assert_eq!(got, sorted_expected(&datas));
    env.run(&["sync"]).expect_code(0);
    assert_eq!(
        std::fs::read(env.home().join("inbox.mbox")).unwrap().len(),
        mbox.len()
    );
    env.run(&["sync", "--delete"]).expect_code(0);
    assert_eq!(dc.message_count("alice"), 0);
}

#[test]
fn dovecot_wrong_password_and_untrusted_ca() {
    if !require_dovecot() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice")]);
    dc.add_message("alice", b"Subject: x\n\nx\n");
    let env = Env::new();
    let cfg = dovecot_account(&dc, "dc", "implicit", "maildir = \"~/Mail/dc\"");
    env.write_config(&cfg.replace("pw-alice", "wrong"));
    env.run(&["sync"]).expect_code(77);
    let no_ca: String = cfg
        .lines()
        .filter(|l| !l.starts_with("ca_file"))
        .collect::<Vec<_>>()
        .join("\n");
    env.write_config(&no_ca);
    let run = env.run(&["sync"]);
    run.expect_code(77);
    assert!(run.stderr.contains("not trusted"), "{}", run.stderr);
    assert!(maildir_messages(&env.maildir("dc")).is_empty());
}

#[test]
fn dovecot_cram_md5_and_apop_logins() {
    if !require_dovecot() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice")]);
    dc.add_messages("alice", &mixed_messages(3, 1000));
    for auth in ["cram-md5", "apop"] {
        let env = Env::new();
        let cfg = dovecot_account(&dc, "dc", "implicit", "maildir = \"~/Mail/dc\"");
        env.write_config(&format!("{cfg}auth = \"{auth}\"\n"));
        env.run(&["sync"]).expect_code(0);
        assert_eq!(maildir_messages(&env.maildir("dc")).len(), 3, "{auth}");
    }
}

/// The ports mixed up, against a real server: Dovecot's TLS port with a
/// plain `tls` answers the check with a ServerHello (76 at once, naming
/// `tls = "implicit"`), and its plain port with `tls = "implicit"` greets
/// in plain POP3 (76 naming `starttls`). Neither waits for the timeout.
#[test]
fn dovecot_tls_mode_and_port_mixed_up_fail_at_once() {
    if !require_dovecot() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice")]);
    let env = Env::new();
    let tls_port_plain = dovecot_account(&dc, "dc", "implicit", "maildir = \"~/Mail/dc\"")
        .replace("tls = \"implicit\"", "tls = \"starttls\"")
        .replace("timeout = 20", "timeout = 60");
    let plain_port_tls = dovecot_account(&dc, "dc", "starttls", "maildir = \"~/Mail/dc\"")
        .replace("tls = \"starttls\"", "tls = \"implicit\"")
        .replace("timeout = 20", "timeout = 60");
    for (cfg, says) in [
        (tls_port_plain, "tls = \"implicit\""),
        (plain_port_tls, "tls = \"starttls\""),
    ] {
        env.write_config(&cfg);
        let started = std::time::Instant::now();
        let run = env.run(&["sync"]);
        run.expect_code(76);
        assert!(run.stderr.contains(says), "{}", run.stderr);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
    }
}
