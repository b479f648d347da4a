//! Switching from another fetcher (seen import), `init`, and parallel
//! accounts.

use std::time::{Duration, Instant};

use crate::support::server::{Config, Fault, Msg, Server};
use crate::support::{maildir_messages, Env};
use crate::sync::account;

fn server_with(n: usize) -> Server {
    server_for("alice", n)
}

fn server_for(user: &str, n: usize) -> Server {
    Server::start(Config {
        user: user.to_string(),
        messages: (0..n)
            .map(|i| {
                Msg::new(
                    format!("UID{i}"),
                    format!("Subject: {i}\n\n{i}\n").into_bytes(),
                )
            })
            .collect(),
        ..Config::default()
    })
}

/// State files written the way each tool writes them, listing UID0..UID2
/// for alice@127.0.0.1 (plus other accounts' lines that must be ignored).
fn state_file(tool: &str) -> Vec<u8> {
    match tool {
        "fetchmail" => b"alice@127.0.0.1 UID0\nalice@127.0.0.1 UID1\nbob@127.0.0.1 UID3\nalice@127.0.0.1 UID2\n".to_vec(),
        "mpop" => b"MPOP_UIDLS_FILE 1\n\n3 127.0.0.1 alice\nUID0 1700000000\nUID1 1700000001\nUID2 1700000002\n1 other.host alice\nUID4 1700000003\n".to_vec(),
        "getmail" => b"UID0\x001700000000.0\nUID1\x001700000001.0\nUID2\x001700000002.0\n".to_vec(),
        "fdm" => b"4 UID0\n4 UID1\n4 UID2\n".to_vec(),
        _ => unreachable!(),
    }
}

/// Other fetchers' records are POP3 UIDLs: an IMAP account refuses them
/// and names `seen mark`.
#[test]
fn seen_import_into_an_imap_account_is_refused_naming_seen_mark() {
    let env = Env::new();
    env.write_config(
        "[accounts.im]\nprotocol = \"imap\"\nhost = \"imap.example.com\"\nuser = \"u\"\nmaildir = \"~/M\"\n",
    );
    let file = env.dir.path().join("fetchids");
    std::fs::write(&file, "u@imap.example.com UID1\n").unwrap();
    let run = env.run(&[
        "seen",
        "import",
        "im",
        "--from",
        "fetchmail",
        file.to_str().unwrap(),
    ]);
    run.expect_code(64);
    assert!(
        run.stderr.contains("popfetch seen mark im"),
        "{}",
        run.stderr
    );
    assert!(
        !env.state_dir().join("seen.sqlite3").exists(),
        "nothing written"
    );
}

#[test]
fn seen_import_from_each_fetcher_then_sync_fetches_only_the_rest() {
    for tool in ["fetchmail", "mpop", "getmail", "fdm"] {
        let env = Env::new();
        let server = server_with(6);
        env.write_config(&account("t", server.port(), "none", ""));
        let file = env.dir.path().join(format!("{tool}.state"));
        std::fs::write(&file, state_file(tool)).unwrap();
        let run = env.run(&[
            "seen",
            "import",
            "t",
            "--from",
            tool,
            file.to_str().unwrap(),
        ]);
        run.expect_code(0);
        assert!(run.stderr.contains("imported 3"), "{tool}: {}", run.stderr);
        env.run(&["sync"]).expect_code(0);
        for i in 0..3 {
            assert_eq!(
                server.retr_count(&format!("UID{i}")),
                0,
                "{tool}: UID{i} was listed"
            );
        }
        for i in 3..6 {
            assert_eq!(
                server.retr_count(&format!("UID{i}")),
                1,
                "{tool}: UID{i} not listed"
            );
        }
        assert_eq!(maildir_messages(&env.maildir("t")).len(), 3);
    }
}

#[test]
fn malformed_import_names_the_line_and_imports_nothing() {
    let env = Env::new();
    let server = server_with(3);
    env.write_config(&account("t", server.port(), "none", ""));
    let file = env.dir.path().join("fdm.cache");
    std::fs::write(&file, b"4 UID0\n9 UID1\n").unwrap();
    let run = env.run(&[
        "seen",
        "import",
        "t",
        "--from",
        "fdm",
        file.to_str().unwrap(),
    ]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains(":2:"), "{}", run.stderr);
    env.run(&["sync"]).expect_code(0);
    assert_eq!(
        maildir_messages(&env.maildir("t")).len(),
        3,
        "nothing was imported"
    );
}

#[test]
fn init_writes_a_private_config_and_refuses_to_overwrite() {
    let env = Env::new();
    let run = env.run(&["init", "--provider", "gmail", "--user", "me@gmail.com"]);
    run.expect_code(0);
    assert!(run.stderr.contains("popfetch sync"), "{}", run.stderr);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(env.config_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let accounts = env.run(&["accounts", "--json"]);
    accounts.expect_code(0);
    let j = &accounts.json_lines()[0];
    assert_eq!(j["host"], "pop.gmail.com");
    assert_eq!(j["port"], 995);
    assert_eq!(j["tls"], "implicit");
    let again = env.run(&["init", "--host", "x.example", "--user", "u"]);
    assert_eq!(again.code, 64, "{}", again.stderr);
    assert!(again.stderr.contains("never overwrites"));
}

/// `init` for any server: host:port, --tls, --name; the next steps name
/// the section; the starter config works without `pass` (it prompts).
#[test]
fn init_for_any_server_sets_port_tls_and_name() {
    let env = Env::new();
    let server = server_with(2);
    let host = format!("127.0.0.1:{}", server.port());
    let run = env.run(&[
        "init", "--host", &host, "--tls", "none", "--name", "home", "--user", "alice",
    ]);
    run.expect_code(0);
    assert!(run.stderr.contains("popfetch sync home"), "{}", run.stderr);
    assert!(run.stderr.contains("popfetch info home"), "{}", run.stderr);
    let text = std::fs::read_to_string(env.config_path()).unwrap();
    assert!(text.contains("[accounts.home]"), "{text}");
    assert!(
        !text.lines().any(|l| l.starts_with("password_command")),
        "an active password_command needs a tool the machine may not have:\n{text}"
    );
    assert!(
        text.contains("# password_command = \"secret-tool"),
        "{text}"
    );
    let j = &env.run(&["accounts", "--json"]).expect_code(0).json_lines()[0];
    assert_eq!(j["account"], "home");
    assert_eq!(j["host"], "127.0.0.1");
    assert_eq!(j["port"], server.port());
    assert_eq!(j["tls"], "none");
    assert_eq!(j["password_source"], "prompt");

    // The port once, or refused; a port that is not a number is refused.
    let env2 = Env::new();
    let both = env2.run(&[
        "init",
        "--host",
        "pop.example.com:995",
        "--port",
        "110",
        "--user",
        "u",
    ]);
    assert_eq!(both.code, 64, "{}", both.stderr);
    assert!(
        both.stderr.contains("give the port once"),
        "{}",
        both.stderr
    );
    let bad = env2.run(&["init", "--host", "pop.example.com:pop3", "--user", "u"]);
    assert_eq!(bad.code, 64, "{}", bad.stderr);
    assert!(bad.stderr.contains("HOST:PORT"), "{}", bad.stderr);
    assert!(!env2.config_path().exists());
    // --port 110 alone means STARTTLS, as in the config.
    env2.run(&[
        "init",
        "--host",
        "pop.example.com",
        "--port",
        "110",
        "--user",
        "u",
    ])
    .expect_code(0);
    let j = &env2
        .run(&["accounts", "--json"])
        .expect_code(0)
        .json_lines()[0];
    assert_eq!(
        (j["port"].as_u64(), j["tls"].as_str()),
        (Some(110), Some("starttls"))
    );
}

/// `accounts` checks the paths a sync would need: a missing ca_file is an
/// error (78), a missing folder above the Maildir a warning.
#[test]
fn accounts_checks_that_ca_file_and_target_folder_exist() {
    let env = Env::new();
    env.write_config(
        "[accounts.a]\nhost = \"pop.example.com\"\nuser = \"u\"\npassword = \"p\"\n\
         ca_file = \"~/no-such-ca.pem\"\nmaildir = \"~/Nowhere/a\"\n",
    );
    let run = env.run(&["accounts"]);
    assert_eq!(run.code, 78, "{}", run.stderr);
    assert!(
        run.stderr.contains("no-such-ca.pem does not exist"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("Nowhere does not exist yet"),
        "{}",
        run.stderr
    );
    std::fs::write(env.home().join("no-such-ca.pem"), "x").unwrap();
    std::fs::create_dir_all(env.home().join("Nowhere")).unwrap();
    let run = env.run(&["accounts"]);
    run.expect_code(0);
    assert!(!run.stderr.contains("does not exist"), "{}", run.stderr);
}

/// `accounts` prints the resolved settings that change what a sync does
/// (keep_days deletes mail; max_size and filter leave some behind), in the
/// file's order, and [defaults] as each account resolves it.
#[test]
fn accounts_shows_every_policy_in_the_files_order() {
    let env = Env::new();
    env.write_config(
        "[defaults]\nmaildir = \"~/Mail\"\n\
         [accounts.zz]\nhost = \"pop.example.com\"\nuser = \"u\"\n\
         keep_days = 14\nmax_size = \"5M\"\nfilter = \"spamc -c\"\n\
         [accounts.aa]\nprotocol = \"imap\"\nhost = \"imap.example.com\"\nuser = \"v\"\n\
         mbox = \"~/aa.mbox\"\nfetch = \"unseen\"\nmark_seen = true\nidle = true\n",
    );
    let run = env.run(&["accounts"]);
    run.expect_code(0);
    let out = &run.stdout;
    let (zz, aa) = (out.find("[zz]").unwrap(), out.find("[aa]").unwrap());
    assert!(zz < aa, "file order:\n{out}");
    for want in [
        "delete 14 days after delivery",
        "max_size",
        "spamc -c",
        "fetch        unseen",
        "mark_seen    yes",
        "idle         yes",
        "aa.mbox",
    ] {
        assert!(out.contains(want), "{want:?} in:\n{out}");
    }
    // The mbox of [aa] replaced [defaults]' maildir for it alone.
    assert!(out[..aa].contains("maildir"), "{out}");
    assert!(!out[aa..].contains("maildir"), "{out}");
}

/// A config given by a relative path: its relative paths are resolved
/// against its folder and shown whole.
#[test]
fn a_relative_config_path_gives_absolute_paths() {
    let env = Env::new();
    let folder = env.dir.path().join("conf");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("rel.toml"),
        "state_dir = \"state\"\n[accounts.r]\nhost = \"pop.example.com\"\nuser = \"u\"\nmbox = \"x.mbox\"\n",
    )
    .unwrap();
    let out = env
        .command(&["-c", "rel.toml", "accounts", "--json"])
        .current_dir(&folder)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let folder = folder.canonicalize().unwrap();
    assert_eq!(
        j["state_dir"],
        folder.join("state").display().to_string(),
        "{j}"
    );
    assert_eq!(
        j["destination"]["path"],
        folder.join("x.mbox").display().to_string(),
        "{j}"
    );
}

#[test]
fn parallel_accounts_are_not_held_up_by_a_stalled_one() {
    let env = Env::new();
    // Distinct users: accounts on one host and user share a mailbox lock.
    let fast: Vec<Server> = (0..3).map(|i| server_for(&format!("user{i}"), 5)).collect();
    let stalled = server_with(5);
    stalled.set_faults(vec![Fault::StallOnCommand("UIDL".into())]);
    let mut cfg =
        account("stalled", stalled.port(), "none", "").replace("timeout = 10", "timeout = 3");
    for (i, s) in fast.iter().enumerate() {
        cfg.push_str(
            &account(&format!("fast{i}"), s.port(), "none", "")
                .replace("user = \"alice\"", &format!("user = \"user{i}\"")),
        );
    }
    env.write_config(&cfg);
    let start = Instant::now();
    let run = env.run(&["sync", "-j", "4", "--json"]);
    let took = start.elapsed();
    run.expect_code(75);
    for i in 0..3 {
        assert_eq!(maildir_messages(&env.maildir(&format!("fast{i}"))).len(), 5);
    }
    let lines = run.json_lines();
    assert_eq!(lines.len(), 4);
    // The fast accounts finished before the stalled one timed out.
    assert_eq!(lines.last().unwrap()["account"], "stalled");
    assert_eq!(lines.last().unwrap()["exit_code"], 75);
    assert!(
        took < Duration::from_secs(20),
        "bounded by the timeout: {took:?}"
    );
}

fn sasl_server(mechs: &[&str], password: &str) -> Server {
    Server::start(Config {
        password: password.to_string(),
        sasl: mechs.iter().map(|m| m.to_string()).collect(),
        messages: vec![Msg::new("A", b"Subject: a\n\na\n".to_vec())],
        ..Config::default()
    })
}

#[test]
fn sasl_cram_md5_xoauth2_and_oauthbearer_logins() {
    for mech in ["cram-md5", "xoauth2", "oauthbearer"] {
        let env = Env::new();
        let server = sasl_server(&["CRAM-MD5", "XOAUTH2", "OAUTHBEARER"], "secret");
        env.write_config(&account(
            "t",
            server.port(),
            "none",
            &format!("auth = \"{mech}\""),
        ));
        let run = env.run(&["sync"]);
        run.expect_code(0);
        assert_eq!(maildir_messages(&env.maildir("t")).len(), 1, "{mech}");
        let auth = server
            .log()
            .into_iter()
            .find(|l| l.starts_with("AUTH"))
            .unwrap();
        assert!(
            auth.to_ascii_lowercase()
                .starts_with(&format!("auth {mech}")),
            "{auth}"
        );
    }
}

#[test]
fn a_long_oauth_token_goes_after_the_challenge() {
    let token = "t".repeat(2048);
    let env = Env::new();
    let server = sasl_server(&["XOAUTH2"], &token);
    let cfg = account("t", server.port(), "none", "auth = \"xoauth2\"").replace(
        "password = \"secret\"",
        &format!("password_command = \"printf %s {token}\""),
    );
    env.write_config(&cfg);
    env.run(&["sync"]).expect_code(0);
    let log = server.log();
    assert!(
        log.iter().any(|l| l == "AUTH XOAUTH2"),
        "initial response not inline: {log:?}"
    );
    assert!(log.iter().all(|l| l.len() <= 255 || !l.starts_with("AUTH")));
    // A wrong token: the server's error challenge is answered and reported.
    let cfg = cfg.replace(&token, "wrong");
    env.write_config(&cfg);
    let run = env.run(&["sync"]);
    run.expect_code(77);
    assert!(
        run.stderr.contains("401") || run.stderr.contains("status"),
        "JSON error shown: {}",
        run.stderr
    );
    assert!(!run.stderr.contains("wrong"), "token never printed");
}

#[test]
fn info_shows_the_certificate_to_pin_without_logging_in() {
    use crate::support::certs::TestPki;
    use crate::support::server::Tls;
    use std::sync::Arc;
    let env = Env::new();
    let pki = Arc::new(TestPki::self_signed(env.dir.path()));
    let server = Server::start(Config {
        tls: Tls::Implicit(pki.clone()),
        ..Config::default()
    });
    env.write_config(&account("t", server.port(), "implicit", ""));
    let run = env.run(&["info", "t"]);
    run.expect_code(0);
    eprintln!("{}", run.stdout);
    assert!(
        run.stdout.contains("CN="),
        "names read from the certificate: {}",
        run.stdout
    );
    assert!(run.stdout.contains(&pki.fingerprint), "{}", run.stdout);
    assert!(run.stdout.contains("trusted       NO"), "{}", run.stdout);
    assert!(run.stdout.contains("PIPELINING"), "{}", run.stdout);
    assert!(
        run.stdout.contains("TLS           TLSv1_3") || run.stdout.contains("TLSv1_2"),
        "{}",
        run.stdout
    );
    assert!(
        server
            .log()
            .iter()
            .all(|l| !l.starts_with("USER") && !l.starts_with("PASS") && !l.starts_with("AUTH")),
        "no login: {:?}",
        server.log()
    );
    // Pinning what info printed makes sync work.
    env.write_config(&account(
        "t",
        server.port(),
        "implicit",
        // A list pins several: another (unknown) certificate and this one.
        &format!(
            "tls_fingerprint = [\"sha256:{}\", \"{}\"]",
            "00".repeat(32),
            pki.fingerprint
        ),
    ));
    env.run(&["sync"]).expect_code(0);
}

/// The README's scheduling lines, run as written (with the binary's path
/// substituted): silent and 0 when there is nothing new; 75 when the server
/// is busy, which the systemd unit declares a success ("try later").
#[test]
fn readme_scheduling_command_lines_work_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let exec = readme
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("README shows a systemd ExecStart line");
    assert!(
        readme.contains("SuccessExitStatus=75"),
        "the unit treats 75 as try-later"
    );
    let cron = readme
        .lines()
        .find(|l| l.starts_with("*/10 * * * * "))
        .expect("README shows a crontab line")
        .trim_start_matches("*/10 * * * * ");
    let bin = env!("CARGO_BIN_EXE_popfetch");

    let server = server_with(2);
    let env = Env::new();
    env.write_config(&account("t", server.port(), "none", ""));
    for line in [
        exec.replace("%h/.cargo/bin/popfetch", bin),
        cron.replace("$HOME/.cargo/bin/popfetch", bin),
    ] {
        let first = env.command(&[]).arg("--version").output().unwrap();
        assert!(first.status.success());
        let mut sh = std::process::Command::new("sh");
        sh.arg("-c")
            .arg(&line)
            .env_clear()
            .env("HOME", env.home())
            .env("PATH", std::env::var_os("PATH").unwrap());
        let out = sh.output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{line}: silent on stdout");
    }
    assert_eq!(maildir_messages(&env.maildir("t")).len(), 2);

    // A busy server: 75, the "try later" code.
    let busy = |verb: &str| Fault::ErrOnCommand {
        verb: verb.into(),
        reply: "-ERR [IN-USE] mailbox locked".into(),
    };
    server.set_faults(vec![busy("AUTH"), busy("USER"), busy("PASS")]);
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(exec.replace("%h/.cargo/bin/popfetch", bin))
        .env_clear()
        .env("HOME", env.home())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75));
}

/// The mpop in Debian 12 (1.4.18) writes comment lines, headers with a
/// leading space and one UID per line without a time: run the installed
/// mpop against the scripted server so the file is the tool's own, then
/// import it.
#[test]
fn seen_import_reads_the_file_the_installed_mpop_writes() {
    let Some(mpop) = crate::support::tool("mpop") else {
        return;
    };
    let env = Env::new();
    let server = server_with(3);
    let uidls = env.dir.path().join("mpop-uidls");
    let mbox = env.dir.path().join("mpop.mbox");
    std::fs::write(&mbox, b"").unwrap();
    // mpop fetches the first three; the server then gets two more.
    let out = std::process::Command::new(mpop)
        .args([
            "--host=127.0.0.1",
            &format!("--port={}", server.port()),
            "--tls=off",
            "--auth=user",
            "--user=alice",
            "--passwordeval=echo secret",
            "--keep=on",
            &format!("--delivery=mbox,{}", mbox.display()),
            &format!("--uidls-file={}", uidls.display()),
        ])
        .env("HOME", env.home())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run mpop");
    assert!(out.status.success(), "mpop failed: {out:?}");
    let written = std::fs::read_to_string(&uidls).unwrap();
    assert!(
        written.starts_with('#') && written.contains(" 3 127.0.0.1 alice\n"),
        "not the layout this test is about:\n{written}"
    );
    for i in 3..5 {
        server.push_message(Msg::new(
            format!("UID{i}"),
            format!("Subject: {i}\n\n{i}\n"),
        ));
    }

    env.write_config(&account("t", server.port(), "none", ""));
    let run = env.run(&[
        "seen",
        "import",
        "t",
        "--from",
        "mpop",
        uidls.to_str().unwrap(),
    ]);
    run.expect_code(0);
    assert!(run.stderr.contains("imported 3"), "{}", run.stderr);
    env.run(&["sync"]).expect_code(0);
    for i in 0..3 {
        assert_eq!(
            server.retr_count(&format!("UID{i}")),
            1,
            "UID{i}: only mpop's RETR"
        );
    }
    for i in 3..5 {
        assert_eq!(
            server.retr_count(&format!("UID{i}")),
            1,
            "UID{i} not fetched"
        );
    }
    assert_eq!(maildir_messages(&env.maildir("t")).len(), 2);
}
