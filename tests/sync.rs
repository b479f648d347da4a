//! `popfetch sync` end to end against the scripted server: byte-exact
//! delivery, no duplicates, deletion, mbox, TLS and the error exit codes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use crate::support::certs::TestPki;
use crate::support::server::{Config, Msg, Server, Tls};
use crate::support::{expected_delivery, maildir_messages, mixed_messages, Env};

/// An account section for a scripted server.
pub fn account(name: &str, port: u16, tls: &str, extra: &str) -> String {
    format!(
        "[accounts.{name}]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"{tls}\"\nuser = \"alice\"\npassword = \"secret\"\nmaildir = \"~/Mail/{name}\"\ntimeout = 10\n{extra}\n"
    )
}

fn msgs(datas: &[Vec<u8>]) -> Vec<Msg> {
    datas
        .iter()
        .enumerate()
        .map(|(i, d)| Msg::new(format!("uid-{i:04}"), d.clone()))
        .collect()
}

fn expected_all(datas: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = datas.iter().map(|d| expected_delivery(d)).collect();
    v.sort();
    v
}

fn stls_server(env: &Env, messages: Vec<Msg>) -> (Server, Arc<TestPki>) {
    let pki = Arc::new(TestPki::generate(env.dir.path()));
    let server = Server::start(Config {
        messages,
        tls: Tls::Stls(pki.clone()),
        ..Config::default()
    });
    (server, pki)
}

fn trusted(pki: &TestPki) -> String {
    format!("ca_file = \"{}\"", pki.ca_path.display())
}

#[test]
fn first_sync_is_byte_exact_and_second_delivers_nothing() {
    let env = Env::new();
    let datas = mixed_messages(40, 3 * 1024 * 1024);
    let (server, pki) = stls_server(&env, msgs(&datas));
    env.write_config(&account("t", server.port(), "starttls", &trusted(&pki)));

    env.run(&["sync"]).expect_code(0);
    assert_eq!(maildir_messages(&env.maildir("t")), expected_all(&datas));
    // SPEC §3: everything created is readable by the owner only.
    for root in [env.maildir("t"), env.state_dir()] {
        assert_private(&root);
    }
    // keep = true by default: the server still has everything.
    assert_eq!(server.messages().len(), 40);

    let second = env.run(&["sync"]);
    second.expect_code(0);
    assert_eq!(maildir_messages(&env.maildir("t")).len(), 40);
    assert!(
        second.stderr.is_empty(),
        "nothing happened, nothing printed: {}",
        second.stderr
    );
    for i in 0..40 {
        assert_eq!(server.retr_count(&format!("uid-{i:04}")), 1);
    }
}

/// Every file and folder under `root` has no group or other permissions.
fn assert_private(root: &std::path::Path) {
    let mode = fs::metadata(root).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "{} is mode {:o}", root.display(), mode);
    if root.is_dir() {
        for e in fs::read_dir(root).unwrap() {
            assert_private(&e.unwrap().path());
        }
    }
}

#[test]
fn delete_empties_the_server_and_delivers_each_message_once() {
    let env = Env::new();
    let datas = mixed_messages(12, 100_000);
    let (server, pki) = stls_server(&env, msgs(&datas));
    env.write_config(&account("t", server.port(), "starttls", &trusted(&pki)));

    // Keep first, then delete: the seen ones are deleted, none fetched twice.
    env.run(&["sync", "t"]).expect_code(0);
    server.push_message(Msg::new("late", b"Subject: late\n\nlate\n".to_vec()));
    let run = env.run(&["sync", "--delete", "--json"]);
    run.expect_code(0);
    assert!(server.messages().is_empty(), "server emptied");
    let lines = run.json_lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["new"], 1);
    assert_eq!(lines[0]["deleted"], 13);
    assert_eq!(lines[0]["status"], "ok");
    assert_eq!(lines[0]["exit_code"], 0);
    assert_eq!(maildir_messages(&env.maildir("t")).len(), 13);
    for m in 0..12 {
        assert_eq!(server.retr_count(&format!("uid-{m:04}")), 1);
    }
    // DELE only after the messages were delivered and recorded.
    let log = server.log();
    let last_retr = log.iter().rposition(|l| l.starts_with("RETR")).unwrap();
    let first_dele = log.iter().position(|l| l.starts_with("DELE")).unwrap();
    assert!(first_dele > last_retr, "{log:?}");
}

/// Splits an mboxrd file back into messages, undoing the quoting.
pub fn parse_mboxrd(text: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for line in text.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"From ") {
            out.push(Vec::new());
            continue;
        }
        let cur = out.last_mut().expect("mbox starts with a From_ line");
        let gt = line.iter().take_while(|&&b| b == b'>').count();
        if gt > 0 && line[gt..].starts_with(b"From ") {
            cur.extend_from_slice(&line[1..]);
        } else {
            cur.extend_from_slice(line);
        }
    }
    for m in &mut out {
        assert!(
            m.ends_with(b"\n\n") || m == b"\n",
            "each message ends with an empty line"
        );
        m.pop();
    }
    out
}

#[test]
fn mbox_round_trips_through_mboxrd_quoting() {
    let env = Env::new();
    let datas = mixed_messages(15, 50_000);
    let server = Server::start(Config {
        messages: msgs(&datas),
        ..Config::default()
    });
    env.write_config(&format!(
        "[accounts.m]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nuser = \"alice\"\npassword = \"secret\"\nmbox = \"~/mail/inbox\"\n",
        server.port()
    ));
    let run = env.run(&["sync"]);
    run.expect_code(0);
    assert!(
        run.stderr.contains("unencrypted"),
        "clear-text password warns: {}",
        run.stderr
    );
    let mbox = fs::read(env.home().join("mail/inbox")).unwrap();
    let text = String::from_utf8_lossy(&mbox);
    assert!(
        text.starts_with("From sender0@example.org "),
        "{}",
        &text[..80]
    );
    let mut got = parse_mboxrd(&mbox);
    got.sort();
    assert_eq!(got, expected_all(&datas));
    let mode = fs::metadata(env.home().join("mail/inbox"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "mbox is private");
    // Second run appends nothing.
    env.run(&["sync"]).expect_code(0);
    assert_eq!(fs::read(env.home().join("mail/inbox")).unwrap(), mbox);
}

#[test]
fn implicit_tls_works() {
    let env = Env::new();
    let pki = Arc::new(TestPki::generate(env.dir.path()));
    let server = Server::start(Config {
        messages: msgs(&mixed_messages(3, 1000)),
        tls: Tls::Implicit(pki.clone()),
        ..Config::default()
    });
    env.write_config(&account("t", server.port(), "implicit", &trusted(&pki)));
    env.run(&["sync"]).expect_code(0);
    assert_eq!(maildir_messages(&env.maildir("t")).len(), 3);
}

fn sent_secret(server: &Server) -> bool {
    server.log().iter().any(|l| {
        l.starts_with("PASS")
            || l.starts_with("AUTH")
            || l.starts_with("APOP")
            || l.contains("secret")
    })
}

#[test]
fn starttls_without_stls_is_refused_before_any_password() {
    let env = Env::new();
    let pki = TestPki::generate(env.dir.path());
    let server = Server::start(Config {
        messages: msgs(&mixed_messages(2, 100)),
        ..Config::default()
    });
    env.write_config(&account("t", server.port(), "starttls", &trusted(&pki)));
    let run = env.run(&["sync"]);
    run.expect_code(77);
    assert!(run.stderr.contains("STLS"), "{}", run.stderr);
    assert!(
        !sent_secret(&server),
        "no secret on the wire: {:?}",
        server.log()
    );
    assert!(maildir_messages(&env.maildir("t")).is_empty());
}

#[test]
fn untrusted_certificate_is_77_and_sends_no_password() {
    let env = Env::new();
    let pki = Arc::new(TestPki::self_signed(env.dir.path()));
    let server = Server::start(Config {
        messages: msgs(&mixed_messages(2, 100)),
        tls: Tls::Implicit(pki.clone()),
        ..Config::default()
    });
    env.write_config(&account("t", server.port(), "implicit", ""));
    let run = env.run(&["sync"]);
    run.expect_code(77);
    assert!(run.stderr.contains("not trusted"), "{}", run.stderr);
    assert!(
        run.stderr.contains("ca_file") && run.stderr.contains(&pki.fingerprint),
        "says how to trust or pin: {}",
        run.stderr
    );
    assert!(!sent_secret(&server));

    // Pinning the fingerprint it printed makes it work.
    env.write_config(&account(
        "t",
        server.port(),
        "implicit",
        &format!("tls_fingerprint = \"{}\"", pki.fingerprint),
    ));
    env.run(&["sync"]).expect_code(0);
    assert_eq!(maildir_messages(&env.maildir("t")).len(), 2);
}

/// RFC 6856: UTF8 is sent where the server offers it, before the login
/// (the only state it is valid in), and 8-bit headers arrive as sent.
#[test]
fn utf8_is_sent_before_the_login_where_offered() {
    let env = Env::new();
    let text = "Subject: Grüße aus Köln\r\nFrom: José <j@example.org>\r\n\r\nHallo\r\n";
    let server = Server::start(Config {
        utf8: true,
        messages: vec![Msg::new("u8", text.as_bytes().to_vec())],
        ..Config::default()
    });
    env.write_config(&account("t", server.port(), "none", ""));
    env.run(&["sync"]).expect_code(0);
    let log = server.log();
    let utf8 = log.iter().position(|l| l == "UTF8");
    let login = log
        .iter()
        .position(|l| l.starts_with("AUTH ") || l.starts_with("USER "));
    assert!(
        utf8.is_some() && utf8 < login,
        "UTF8 before the login: {log:?}"
    );
    assert_eq!(log.iter().filter(|l| *l == "UTF8").count(), 1, "{log:?}");
    let got = maildir_messages(&env.maildir("t"));
    assert_eq!(got, vec![expected_delivery(text.as_bytes())]);
}

/// RFC 2449 LOGIN-DELAY is reported at -v (and nothing is said without).
#[test]
fn login_delay_is_reported_with_verbose() {
    let env = Env::new();
    let server = Server::start(Config {
        login_delay: Some(900),
        messages: msgs(&mixed_messages(1, 100)),
        ..Config::default()
    });
    env.write_config(&account("t", server.port(), "none", ""));
    let run = env.run(&["sync", "-v"]);
    run.expect_code(0);
    assert!(
        run.stderr.contains("one login every 900 s (LOGIN-DELAY)"),
        "{}",
        run.stderr
    );
    let run = env.run(&["sync"]);
    run.expect_code(0);
    assert!(!run.stderr.contains("LOGIN-DELAY"), "{}", run.stderr);
}

#[test]
fn wrong_password_is_77() {
    let env = Env::new();
    let server = Server::start(Config {
        password: "other".into(),
        messages: msgs(&mixed_messages(2, 100)),
        ..Config::default()
    });
    env.write_config(&account("t", server.port(), "none", ""));
    let run = env.run(&["sync"]);
    run.expect_code(77);
    assert!(
        run.stderr.contains("authentication failed"),
        "{}",
        run.stderr
    );
}

#[test]
fn connection_refused_is_69() {
    let env = Env::new();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    env.write_config(&account("t", port, "none", ""));
    let run = env.run(&["sync", "--json"]);
    run.expect_code(69);
    let lines = run.json_lines();
    assert_eq!(lines[0]["status"], "error");
    assert_eq!(lines[0]["exit_code"], 69);
}

#[test]
fn config_typo_is_78_with_the_key_named() {
    let env = Env::new();
    env.write_config(&account("t", 1, "none", "kep = false"));
    let run = env.run(&["sync"]);
    run.expect_code(78);
    assert!(
        run.stderr.contains("`kep`") && run.stderr.contains("did you mean `keep`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("config.toml:9"),
        "names the line: {}",
        run.stderr
    );
}

#[test]
fn inline_password_in_a_readable_file_is_78() {
    let env = Env::new();
    let path = env.write_config(&account("t", 1, "none", ""));
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let run = env.run(&["sync"]);
    run.expect_code(78);
    assert!(run.stderr.contains("chmod 600"), "{}", run.stderr);
}

#[test]
fn one_failing_account_does_not_stop_the_others() {
    let env = Env::new();
    let good = Server::start(Config {
        messages: msgs(&mixed_messages(3, 100)),
        ..Config::default()
    });
    let bad = Server::start(Config {
        user: "bob".into(),
        password: "nope".into(),
        ..Config::default()
    });
    let mut cfg = account("bad", bad.port(), "none", "").replace("\"alice\"", "\"bob\"");
    cfg.push_str(&account("good", good.port(), "none", ""));
    env.write_config(&cfg);
    let run = env.run(&["sync"]);
    run.expect_code(77);
    assert_eq!(maildir_messages(&env.maildir("good")).len(), 3);
}

#[test]
fn trace_redacts_the_password() {
    let env = Env::new();
    let server = Server::start(Config {
        messages: msgs(&mixed_messages(2, 100)),
        ..Config::default()
    });
    env.write_config(&account("t", server.port(), "none", "auth = \"user\""));
    let run = env.run(&["sync", "-vv"]);
    run.expect_code(0);
    assert!(run.stderr.contains("PASS ***"), "{}", run.stderr);
    assert!(!run.stderr.contains("secret") && !run.stdout.contains("secret"));
}

#[test]
fn password_command_supplies_the_secret_and_its_failure_is_78() {
    let env = Env::new();
    let server = Server::start(Config {
        messages: msgs(&mixed_messages(2, 100)),
        ..Config::default()
    });
    let cfg = account("t", server.port(), "none", "").replace(
        "password = \"secret\"",
        "password_command = \"echo secret\"",
    );
    env.write_config(&cfg);
    env.run(&["sync"]).expect_code(0);
    assert_eq!(maildir_messages(&env.maildir("t")).len(), 2);
    env.write_config(&cfg.replace("echo secret", "exit 3"));
    let run = env.run(&["sync"]);
    run.expect_code(78);
    assert!(
        run.stderr.contains("password_command failed"),
        "{}",
        run.stderr
    );
}

/// `tmp/` of a Maildir may be shared by several machines (NFS): a pid is
/// checked only on the host that wrote the file, another host's file goes
/// only after 36 hours (the Maildir convention), and a file of a live
/// writer here stays however old it is.
#[test]
fn tmp_cleaning_removes_only_this_hosts_files_of_gone_writers() {
    let env = Env::new();
    let server = Server::start(Config {
        messages: msgs(&mixed_messages(1, 100)),
        ..Config::default()
    });
    env.write_config(&account("t", server.port(), "none", ""));
    env.run(&["sync"]).expect_code(0);
    let root = env.maildir("t");
    // This host's name as popfetch writes it, from the delivered file.
    let delivered = crate::support::files_in(&root.join("new"));
    let host = delivered[0]
        .split_once("Ppf.")
        .and_then(|(_, rest)| rest.split(',').next())
        .unwrap()
        .to_string();
    // Above the kernel's pid_max: never running. The test itself: running.
    let (dead, live) = (1u32 << 30, std::process::id());
    let hours = |h: u64| std::time::SystemTime::now() - std::time::Duration::from_secs(h * 3600);
    let cases = [
        (
            "this host, writer gone",
            dead,
            host.as_str(),
            hours(1),
            false,
        ),
        (
            "this host, writer running, old",
            live,
            host.as_str(),
            hours(48),
            true,
        ),
        (
            "another host, 35 hours old",
            dead,
            "elsewhere.example",
            hours(35),
            true,
        ),
        (
            "another host, 37 hours old",
            dead,
            "elsewhere.example",
            hours(37),
            false,
        ),
    ];
    let tmp = root.join("tmp");
    let names: Vec<String> = cases
        .iter()
        .enumerate()
        .map(|(i, (_, pid, host, mtime, _))| {
            let name = format!("1700000000.M1P{pid}Q{i}R0000000000000000Ppf.{host}");
            fs::write(tmp.join(&name), "partial").unwrap();
            let f = fs::File::options()
                .write(true)
                .open(tmp.join(&name))
                .unwrap();
            f.set_modified(*mtime).unwrap();
            name
        })
        .collect();
    // Every sync cleans tmp/ first.
    env.run(&["sync"]).expect_code(0);
    for ((what, .., kept), name) in cases.iter().zip(&names) {
        assert_eq!(tmp.join(name).exists(), *kept, "{what}: {name}");
    }
}

/// A seen database overwritten with garbage, or cut short, is exit 74
/// naming the file and how to recover, never a bare SQLite message.
#[test]
fn a_damaged_seen_database_is_74_naming_the_file_and_the_way_out() {
    let env = Env::new();
    let datas = mixed_messages(300, 100);
    let server = Server::start(Config {
        messages: msgs(&datas),
        ..Config::default()
    });
    env.write_config(&account("t", server.port(), "none", ""));
    env.run(&["sync"]).expect_code(0);
    let db = env.state_dir().join("seen.sqlite3");
    assert!(
        !env.state_dir().join("seen.sqlite3-wal").exists(),
        "checkpointed at exit"
    );
    let good = fs::read(&db).unwrap();
    assert!(good.len() > 3 * 4096, "several pages: {}", good.len());
    let says_what_to_do = |what: &str| {
        for args in [&["sync"][..], &["seen", "list", "t"]] {
            let run = env.run(args);
            run.expect_code(74);
            for part in [
                db.to_str().unwrap(),
                "is damaged",
                "mv ",
                "popfetch seen mark",
                "popfetch seen import",
            ] {
                assert!(
                    run.stderr.contains(part),
                    "{what}: {part:?} in {}",
                    run.stderr
                );
            }
        }
    };
    // Cut short after the first page (the header says more).
    fs::write(&db, &good[..4096]).unwrap();
    says_what_to_do("truncated");
    // Garbage.
    let garbage: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(&db, &garbage).unwrap();
    says_what_to_do("garbage");
    // The way out works: moved aside, a new database is started.
    fs::rename(&db, env.state_dir().join("seen.sqlite3.damaged")).unwrap();
    env.run(&["seen", "mark", "t"]).expect_code(0);
    server.clear_log();
    env.run(&["sync"]).expect_code(0);
    assert!(server.log().iter().all(|l| !l.starts_with("RETR")));
}

#[test]
fn server_without_uidl_falls_back_to_header_digests() {
    let env = Env::new();
    let datas = mixed_messages(6, 1000);
    let server = Server::start(Config {
        messages: msgs(&datas),
        uidl: false,
        ..Config::default()
    });
    env.write_config(&account("t", server.port(), "none", ""));
    env.run(&["sync"]).expect_code(0);
    assert_eq!(maildir_messages(&env.maildir("t")), expected_all(&datas));
    server.clear_log();
    env.run(&["sync"]).expect_code(0);
    assert!(
        server.log().iter().all(|l| !l.starts_with("RETR")),
        "nothing fetched twice"
    );
    assert!(server.log().iter().any(|l| l.starts_with("TOP")));
}

#[test]
fn server_without_uidl_or_top_needs_delete_mode() {
    let env = Env::new();
    let datas = mixed_messages(4, 1000);
    let server = Server::start(Config {
        messages: msgs(&datas),
        uidl: false,
        top: false,
        ..Config::default()
    });
    env.write_config(&account("t", server.port(), "none", ""));
    let run = env.run(&["sync"]);
    run.expect_code(78);
    assert!(run.stderr.contains("keep = false"), "{}", run.stderr);
    assert!(
        server.log().iter().all(|l| !l.starts_with("RETR")),
        "stopped before any RETR"
    );
    env.run(&["sync", "--delete"]).expect_code(0);
    assert_eq!(maildir_messages(&env.maildir("t")), expected_all(&datas));
    assert!(server.messages().is_empty());
}

#[test]
fn check_and_list_work_without_uidl_too() {
    let env = Env::new();
    let server = Server::start(Config {
        messages: msgs(&mixed_messages(4, 100)),
        uidl: false,
        ..Config::default()
    });
    env.write_config(&account("t", server.port(), "none", ""));
    env.run(&["check"]).expect_code(0);
    env.run(&["sync"]).expect_code(0);
    env.run(&["check"]).expect_code(1);
    let run = env.run(&["list", "t", "--json"]);
    run.expect_code(0);
    assert!(
        run.json_lines().iter().all(|l| l["seen"] == true),
        "{}",
        run.stdout
    );
}
