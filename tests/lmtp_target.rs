//! LMTP and SMTP as targets, against a scripted server: the envelope,
//! pipelining, dot-stuffing and CRLF on the wire, byte-exact content, one
//! connection for many messages, 4xx (exit 75, unseen, stays) and 5xx
//! (reported, stays, the others delivered), a 50 MB message.

use std::collections::HashSet;
use std::time::Duration;

use crate::support::dovecot::{require_dovecot_lmtp, Dovecot};
use crate::support::server::{Config, Fault, Msg, Server};
use crate::support::smtpserver::{unwire, Options, SmtpServer};
use crate::support::{expected_delivery, mixed_messages, Env};
use crate::sync::account;

/// An account on `pop` delivering to `target` (a TOML value line).
fn wired_account(pop: &Server, target: &str, extra: &str) -> String {
    account("t", pop.port(), "none", extra).replace("maildir = \"~/Mail/t\"", target)
}

fn mixed(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut m = format!(
                "Return-Path: <sender{i}@example.org>\r\nSubject: message {i}\r\nMessage-ID: <{i}@test>\r\n\r\n"
            )
            .into_bytes();
            match i % 4 {
                0 => m.extend_from_slice(b".starts with a dot\r\n..two dots\r\n.\r\nend\r\n"),
                1 => m.extend_from_slice("8-bit: grüße, ½\r\nno final newline".as_bytes()),
                2 => m.extend_from_slice(b"a bare\rCR and\r\n\r\n\r\nblank lines\r\n"),
                _ => {
                    for l in 0..(i * 7 % 300) {
                        m.extend_from_slice(format!("line {l} {}\r\n", "y".repeat(l % 90)).as_bytes());
                    }
                }
            }
            m
        })
        .collect()
}

#[test]
fn lmtp_delivers_each_message_byte_exact_with_its_envelope_on_one_pipelined_connection() {
    let env = Env::new();
    let datas = mixed(40);
    let pop = Server::start(Config {
        messages: datas
            .iter()
            .enumerate()
            .map(|(i, d)| Msg::new(format!("u{i}"), d.clone()))
            .collect(),
        ..Config::default()
    });
    let lmtp = SmtpServer::start(true, true);
    env.write_config(&wired_account(
        &pop,
        &format!(
            "lmtp = \"lmtp://127.0.0.1:{}\"\ndeliver_to = \"bob\"",
            lmtp.port()
        ),
        "",
    ));
    env.run(&["sync"]).expect_code(0);
    let got = lmtp.received();
    assert_eq!(got.len(), datas.len());
    assert_eq!(lmtp.connections(), 1, "one connection for the whole sync");
    for (i, (r, d)) in got.iter().zip(&datas).enumerate() {
        assert_eq!(r.from, format!("sender{i}@example.org"));
        assert_eq!(r.to, "bob");
        assert!(r.pipelined, "MAIL, RCPT and DATA pipelined");
        assert!(r.params.contains("BODY=8BITMIME"), "{}", r.params);
        // On the wire: CRLF only, dot-stuffed.
        for line in r.wire.split_inclusive(|&b| b == b'\n') {
            assert!(line.ends_with(b"\r\n"), "line {line:?}");
            assert_ne!(line, b".\r\n");
        }
        assert_eq!(unwire(&r.wire), expected_delivery(d), "message {i}");
    }
    let commands = lmtp.commands();
    assert!(commands[0].starts_with("LHLO "), "{commands:?}");
    assert_eq!(commands.last().unwrap(), "QUIT");
    // A second run delivers nothing.
    env.run(&["sync"]).expect_code(0);
    assert_eq!(lmtp.received().len(), datas.len());
}

#[test]
fn smtp_without_pipelining_sends_one_command_at_a_time_and_empty_return_path_is_null_sender() {
    let env = Env::new();
    let pop = Server::start(Config {
        messages: vec![
            Msg::new(
                "a",
                b"Return-Path: <>\r\nSubject: bounce\r\n\r\nbody\r\n".to_vec(),
            ),
            Msg::new("b", b"Subject: no return path\r\n\r\nbody\r\n".to_vec()),
        ],
        ..Config::default()
    });
    let smtp = SmtpServer::start(false, false);
    env.write_config(&wired_account(
        &pop,
        &format!(
            "smtp = \"smtp://127.0.0.1:{}\"\ndeliver_to = \"carol@example.net\"",
            smtp.port()
        ),
        "",
    ));
    env.run(&["sync"]).expect_code(0);
    let got = smtp.received();
    assert_eq!(got.len(), 2);
    for r in &got {
        assert_eq!(r.from, "");
        assert_eq!(r.to, "carol@example.net");
        assert!(!r.pipelined);
    }
    assert!(smtp.commands()[0].starts_with("EHLO "));
}

#[test]
fn lmtp_4xx_stops_with_75_and_leaves_the_message_unseen_5xx_is_reported_and_the_rest_delivered() {
    let env = Env::new();
    let msg = |uidl: &str, test: &str| {
        Msg::new(
            uidl,
            format!("Subject: {uidl}\r\nX-Test: {test}\r\n\r\nbody {uidl}\r\n").into_bytes(),
        )
    };
    let pop = Server::start(Config {
        messages: vec![
            msg("m1", "ok"),
            msg("m2", "reject"),
            msg("m3", "ok"),
            msg("m4", "tempfail"),
            msg("m5", "ok"),
        ],
        ..Config::default()
    });
    let lmtp = SmtpServer::start(true, true);
    env.write_config(&wired_account(
        &pop,
        &format!(
            "lmtp = \"lmtp://127.0.0.1:{}\"\ndeliver_to = \"bob\"",
            lmtp.port()
        ),
        "keep = false",
    ));
    let run = env.run(&["sync"]);
    run.expect_code(75);
    assert!(run.stderr.contains("550"), "{}", run.stderr);
    assert!(run.stderr.contains("451"), "{}", run.stderr);
    let codes: Vec<u16> = lmtp.received().iter().map(|r| r.code).collect();
    assert_eq!(codes, [250, 550, 250, 451]);
    // Delivered ones deleted; the refused and the temporary stay; m5 was
    // never reached.
    let left: Vec<String> = pop.messages().iter().map(|m| m.uidl.clone()).collect();
    assert_eq!(left, ["m2", "m4", "m5"]);
    // RSET after the refused transaction.
    assert!(lmtp.commands().iter().any(|c| c == "RSET"));
}

#[test]
fn a_550_recipient_leaves_every_message_on_the_server() {
    let env = Env::new();
    let pop = Server::start(Config {
        messages: vec![Msg::new("a", b"Subject: a\r\n\r\nx\r\n".to_vec())],
        ..Config::default()
    });
    let lmtp = SmtpServer::start(true, true);
    env.write_config(&wired_account(
        &pop,
        &format!(
            "lmtp = \"lmtp://127.0.0.1:{}\"\ndeliver_to = \"nobody\"",
            lmtp.port()
        ),
        "keep = false",
    ));
    let run = env.run(&["sync"]);
    // Reported, not a failure of the account: the next message would go on.
    run.expect_code(0);
    assert!(run.stderr.contains("no such user"), "{}", run.stderr);
    assert!(run.stderr.contains("stays on the server"), "{}", run.stderr);
    assert!(lmtp.received().is_empty());
    assert_eq!(pop.messages().len(), 1);
}

#[test]
fn an_lmtp_server_that_is_not_there_stops_the_account_and_leaves_the_mail() {
    let env = Env::new();
    let pop = Server::start(Config {
        messages: vec![Msg::new("a", b"Subject: a\r\n\r\nx\r\n".to_vec())],
        ..Config::default()
    });
    let socket = env.dir.path().join("no-such-socket");
    env.write_config(&wired_account(
        &pop,
        &format!("lmtp = \"unix:{}\"\ndeliver_to = \"bob\"", socket.display()),
        "keep = false",
    ));
    let run = env.run(&["sync"]);
    run.expect_code(69);
    assert!(
        run.stderr.contains("cannot connect to the LMTP socket"),
        "{}",
        run.stderr
    );
    assert_eq!(pop.messages().len(), 1);
    assert_eq!(pop.dele_count("a"), 0);
}

#[test]
fn a_server_that_refuses_the_connection_stops_the_account_instead_of_skipping_each_message() {
    let env = Env::new();
    let pop = Server::start(Config {
        messages: vec![
            Msg::new("a", b"Subject: a\r\n\r\nx\r\n".to_vec()),
            Msg::new("b", b"Subject: b\r\n\r\ny\r\n".to_vec()),
        ],
        ..Config::default()
    });
    let lmtp = SmtpServer::start_greeting(true, true, "554 5.3.2 not today");
    env.write_config(&wired_account(
        &pop,
        &format!(
            "lmtp = \"lmtp://127.0.0.1:{}\"\ndeliver_to = \"bob\"",
            lmtp.port()
        ),
        "keep = false",
    ));
    let run = env.run(&["sync"]);
    run.expect_code(69);
    assert!(run.stderr.contains("not today"), "{}", run.stderr);
    assert_eq!(lmtp.connections(), 1, "stopped at the first refusal");
    assert_eq!(pop.messages().len(), 2);
}

#[test]
fn a_50_mb_message_goes_through_lmtp_whole() {
    fifty_mb_through(SmtpServer::start(true, true), false);
}

#[test]
fn a_50_mb_message_goes_through_bdat_chunks_whole_at_flat_memory() {
    fifty_mb_through(
        SmtpServer::with(Options {
            chunking: true,
            ..Options::default()
        }),
        true,
    );
}

/// Sends a 50 MB message of dot-led lines through `lmtp`, watching the
/// peak RSS; `chunked`: the server offers CHUNKING.
fn fifty_mb_through(lmtp: SmtpServer, chunked: bool) {
    let env = Env::new();
    let mut data = b"Subject: big\r\n\r\n".to_vec();
    let line = format!(".{}\r\n", "z".repeat(98));
    while data.len() < 50 * 1024 * 1024 {
        data.extend_from_slice(line.as_bytes());
    }
    let pop = Server::start(Config {
        messages: vec![Msg::new("big", data.clone())],
        ..Config::default()
    });
    // One 50 MB run at a time: two at once on a loaded machine starve
    // each other's scripted servers.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    env.write_config(
        // The debug-built scripted POP3 server answers LIST of 50 MB
        // slowly when the machine is busy.
        &wired_account(
            &pop,
            &format!(
                "lmtp = \"lmtp://127.0.0.1:{}\"\ndeliver_to = \"bob\"",
                lmtp.port()
            ),
            "",
        )
        .replace("timeout = 10\n", "timeout = 120\n"),
    );
    let mut child = env
        .command(&["sync"])
        .stderr(std::fs::File::create(env.dir.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak_kb = 0u64;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            for l in s.lines() {
                if let Some(v) = l.strip_prefix("VmHWM:") {
                    let kb: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                    peak_kb = peak_kb.max(kb);
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(
        status.success(),
        "{status}: {}",
        std::fs::read_to_string(env.dir.path().join("stderr")).unwrap()
    );
    let got = lmtp.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].chunks.is_some(), chunked);
    if !chunked {
        assert!(
            unwire(&got[0].wire) == expected_delivery(&data),
            "the 50 MB message is byte-exact"
        );
    }
    assert!(
        got[0].content() == expected_delivery(&data),
        "the 50 MB message is byte-exact"
    );
    eprintln!("50 MB through LMTP (chunked: {chunked}): peak RSS {peak_kb} kB");
    assert!(
        peak_kb < 40 * 1024,
        "peak RSS {peak_kb} kB: memory stays flat"
    );
}

#[test]
fn lmtp_and_smtp_keys_are_validated() {
    let env = Env::new();
    let pop = Server::start(Config::default());
    for (target, want) in [
        ("lmtp = \"http://x\"", "unknown scheme"),
        ("lmtp = \"unix:\"", "names no socket"),
        ("smtp = \"smtp://:25\"", "no valid host"),
        (
            "smtp = \"smtp://h:25\"\nmaildir = \"m\"",
            "choose exactly one",
        ),
        (
            "maildir = \"m\"\ndeliver_to = \"bob\"",
            "remove `deliver_to`",
        ),
        ("lmtp = \"unix:/x\"\ndeliver_too = \"bob\"", "deliver_to"),
        (
            "lmtp = \"unix:/x\"\ndeliver_to = \"bob\\r\\nRCPT TO:<eve>\"",
            "is not one address",
        ),
    ] {
        env.write_config(&wired_account(&pop, target, ""));
        let run = env.run(&["accounts"]);
        run.expect_code(78);
        assert!(run.stderr.contains(want), "{target}: {}", run.stderr);
    }
    env.write_config(&wired_account(
        &pop,
        "lmtp = \"unix:/run/dovecot/lmtp\"",
        "",
    ));
    let run = env.run(&["accounts", "--json"]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("\"lmtp\"") && run.stdout.contains("unix:/run/dovecot/lmtp"),
        "{}",
        run.stdout
    );
}

/// The headers Dovecot's LMTP puts on top of a message it stores:
/// `Return-Path`, `Delivered-To` and its `Received` (with continuations).
pub(crate) fn strip_dovecot_lmtp_headers(stored: &[u8]) -> &[u8] {
    let mut rest = stored;
    let mut seen = (false, false, false);
    loop {
        let line_end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let line = &rest[..line_end];
        let lower = String::from_utf8_lossy(line).to_ascii_lowercase();
        if lower.starts_with("return-path:") && !seen.0 {
            seen.0 = true;
        } else if lower.starts_with("delivered-to:") && !seen.1 {
            seen.1 = true;
        } else if lower.starts_with("received:") && !seen.2 {
            seen.2 = true;
        } else {
            return rest;
        }
        rest = &rest[line_end..];
        // Continuation lines of the header just taken.
        while rest.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| i + 1);
            rest = &rest[end..];
        }
    }
}

#[test]
fn dovecot_lmtp_stores_200_mixed_messages_byte_exact_and_a_second_run_delivers_none() {
    if !require_dovecot_lmtp() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice"), ("bob", "pw-bob")]);
    let datas = mixed_messages(200, 512 * 1024);
    dc.add_messages("alice", &datas);
    let env = Env::new();
    env.write_config(&format!(
        "[accounts.dc]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"implicit\"\nuser = \"alice\"\npassword = \"pw-alice\"\nca_file = \"{}\"\nlmtp = \"unix:{}\"\ndeliver_to = \"bob\"\ntimeout = 20\n",
        dc.pop3s_port(),
        dc.pki().ca_path.display(),
        dc.lmtp_socket().display()
    ));
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 200);
    let stored = dc.messages("bob");
    assert_eq!(stored.len(), 200);
    let mut got: Vec<Vec<u8>> = stored
        .iter()
        .map(|m| strip_dovecot_lmtp_headers(m).to_vec())
        .collect();
    got.sort();
    let mut want: Vec<Vec<u8>> = datas.iter().map(|d| expected_delivery(d)).collect();
    want.sort();
    for (g, w) in got.iter().zip(&want) {
        assert!(
            g == w,
            "stored:\n{}\nsent:\n{}",
            String::from_utf8_lossy(&g[..g.len().min(400)]),
            String::from_utf8_lossy(&w[..w.len().min(400)])
        );
    }
    // What Dovecot added: its own envelope headers, naming our recipient.
    let first = String::from_utf8_lossy(&stored[0]);
    assert!(
        first.starts_with("Return-Path: "),
        "{}",
        &first[..first.len().min(400)]
    );
    assert!(
        first.contains("Delivered-To: bob"),
        "{}",
        &first[..first.len().min(400)]
    );
    assert!(
        first.contains("with LMTP"),
        "{}",
        &first[..first.len().min(400)]
    );
    assert!(
        stored
            .iter()
            .all(|m| String::from_utf8_lossy(&m[..m.len().min(400)])
                .contains("(envelope-from <sender")),
        "the envelope sender is each message's Return-Path"
    );
    assert!(dc.log().contains("lmtp("), "Dovecot's LMTP delivered them");

    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 0);
    assert_eq!(dc.message_count("bob"), 200);
}

/// The UIDL each message accepted (250) by the server carries, in order.
fn accepted_uidls(lmtp: &SmtpServer) -> Vec<String> {
    lmtp.received()
        .iter()
        .filter(|r| r.code == 250)
        .map(|r| {
            let body = String::from_utf8_lossy(&unwire(&r.wire)).into_owned();
            let at = body.find("uidl=").expect("one of ours") + 5;
            body[at..].lines().next().unwrap().to_string()
        })
        .collect()
}

/// SPEC §4.3 for LMTP: killed at random instants (100 trials, keep and
/// delete), the next sync delivers every message; a message is delivered
/// twice only when it is the one the server had accepted (250) without a
/// seen record at the kill, the window the README documents, and there is
/// never more than one such message.
#[test]
fn lmtp_kill_9_trials_lose_nothing_and_duplicate_only_inside_the_window() {
    const TRIALS: usize = 100;
    const MESSAGES: usize = 12;
    let mut rng: u64 = std::env::var("POPFETCH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_1A7B);
    let (mut killed, mut window_open, mut duplicated) = (0, 0, 0);
    let mut failures = Vec::new();
    // How long a whole run takes on this machine now: the kills are spread
    // over 0–110% of it, so they land inside runs on a fast machine and a
    // loaded one alike. Set by the first trial, which is not killed, and
    // lowered whenever a run ends before its kill.
    let mut span: Option<Duration> = None;
    for t in 0..TRIALS {
        let env = Env::new();
        let keep = t % 2 == 0;
        let msgs: Vec<Msg> = (0..MESSAGES)
            .map(|i| {
                Msg::new(
                    format!("k{t}-{i}"),
                    format!("Subject: {i}\r\n\r\n.dot line\r\nuidl=k{t}-{i}\r\n").into_bytes(),
                )
            })
            .collect();
        let pop = Server::start(Config {
            messages: msgs.clone(),
            faults: vec![Fault::SlowRetr { delay_ms: 15 }],
            ..Config::default()
        });
        let lmtp = SmtpServer::start(true, true);
        env.write_config(&wired_account(
            &pop,
            &format!(
                "lmtp = \"lmtp://127.0.0.1:{}\"\ndeliver_to = \"bob\"",
                lmtp.port()
            ),
            if keep { "" } else { "keep = false" },
        ));
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let after = match span {
            Some(span) => span.mul_f64((rng % 1000) as f64 / 1000.0 * 1.1),
            None => Duration::from_secs(600),
        };
        match env.sync_killed_after(after) {
            Ok(()) => killed += 1,
            Err(took) => span = Some(span.map_or(took, |s| s.min(took))),
        }
        // What the killed client had already sent is still read and
        // accepted by the server after the kill: wait for it.
        lmtp.settle();
        let accepted: HashSet<String> = accepted_uidls(&lmtp).into_iter().collect();
        let seen = env.seen_uidls();
        let window: Vec<&String> = accepted.iter().filter(|u| !seen.contains(*u)).collect();
        if window.len() > 1 {
            failures.push(format!(
                "trial {t}: {} accepted without a record: {window:?}",
                window.len()
            ));
        }
        window_open += window.len();
        pop.clear_faults();
        let run = env.run(&["sync"]);
        if run.code != 0 {
            failures.push(format!(
                "trial {t}: the next sync exited {}: {}",
                run.code, run.stderr
            ));
            continue;
        }
        let all = accepted_uidls(&lmtp);
        for m in &msgs {
            match all.iter().filter(|u| **u == m.uidl).count() {
                1 => {}
                2 if window.contains(&&m.uidl) => duplicated += 1,
                n => failures.push(format!("trial {t}: {} delivered {n} times", m.uidl)),
            }
        }
        if !keep && !pop.messages().is_empty() {
            failures.push(format!(
                "trial {t}: {} left on the server",
                pop.messages().len()
            ));
        }
    }
    eprintln!(
        "LMTP kill -9 trials: {TRIALS} ({} keep, {} delete), {killed} killed mid-run, \
         {window_open} inside the window at the kill, {duplicated} duplicated (all inside it), \
         {} problems",
        TRIALS / 2,
        TRIALS / 2,
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        killed >= TRIALS / 2,
        "too few kills landed inside a run ({killed})"
    );
}

/// Where Debian's dovecot-sieve puts the Sieve plugin LMTP loads.
const SIEVE_PLUGIN: &str = "/usr/lib/dovecot/modules/lib90_sieve_plugin.so";

/// The mail goes through Dovecot's own delivery, not beside it: the
/// recipient's Sieve rule files one message into a folder of its own, and
/// the others land in the INBOX.
#[test]
fn dovecot_lmtp_runs_the_recipients_sieve_rules() {
    use std::os::unix::fs::{chown, MetadataExt};
    if !require_dovecot_lmtp() {
        return;
    }
    if !std::path::Path::new(SIEVE_PLUGIN).exists() {
        let what = format!("dovecot's Sieve plugin not installed ({SIEVE_PLUGIN}); install dovecot-sieve, see .ci/run");
        if std::env::var(crate::support::dovecot::REQUIRE_ENV).as_deref() == Ok("1") {
            panic!("POPFETCH_REQUIRE_DOVECOT=1 but {what}");
        }
        eprintln!("\nSKIPPED: {what}");
        return;
    }
    let dc = Dovecot::start_with(
        &[("alice", "pw-alice"), ("bob", "pw-bob")],
        "protocol lmtp {\n  mail_plugins = $mail_plugins sieve\n}\n\
         plugin {\n  sieve = file:~/sieve;active=~/.dovecot.sieve\n}\n",
    );
    let home = dc.dir().join("home").join("bob");
    let owner = std::fs::metadata(&home).unwrap();
    let storage = home.join("sieve");
    std::fs::create_dir(&storage).unwrap();
    let script = home.join(".dovecot.sieve");
    std::fs::write(
        &script,
        "require [\"fileinto\", \"mailbox\"];\n\
         if header :contains \"subject\" \"file me\" {\n  fileinto :create \"Filed\";\n}\n",
    )
    .unwrap();
    for p in [&storage, &script] {
        chown(p, Some(owner.uid()), Some(owner.gid())).unwrap();
    }
    let message = |subject: &str| {
        format!("From: a@example.org\r\nTo: bob@example.org\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n")
            .into_bytes()
    };
    dc.add_messages(
        "alice",
        &[message("hello"), message("please file me"), message("bye")],
    );
    let env = Env::new();
    env.write_config(&format!(
        "[accounts.dc]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"implicit\"\nuser = \"alice\"\npassword = \"pw-alice\"\nca_file = \"{}\"\nlmtp = \"unix:{}\"\ndeliver_to = \"bob\"\ntimeout = 20\n",
        dc.pop3s_port(),
        dc.pki().ca_path.display(),
        dc.lmtp_socket().display()
    ));
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 3);
    let inbox: Vec<String> = dc
        .messages("bob")
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    assert_eq!(inbox.len(), 2, "{inbox:?}\n{}", dc.log());
    assert!(inbox.iter().all(|m| !m.contains("file me")), "{inbox:?}");
    let filed_dir = dc.maildir("bob").join(".Filed");
    let filed: Vec<String> = ["new", "cur"]
        .iter()
        .filter_map(|d| std::fs::read_dir(filed_dir.join(d)).ok())
        .flatten()
        .map(|e| String::from_utf8_lossy(&std::fs::read(e.unwrap().path()).unwrap()).into_owned())
        .collect();
    assert_eq!(filed.len(), 1, "the rule filed one message\n{}", dc.log());
    assert!(filed[0].contains("Subject: please file me"), "{}", filed[0]);
    assert!(filed[0].contains("with LMTP"), "{}", filed[0]);
}

/// A scripted server that offers CHUNKING (RFC 3030).
fn chunking_server(lmtp: bool, pipelining: bool) -> SmtpServer {
    SmtpServer::with(Options {
        lmtp,
        pipelining,
        chunking: true,
        ..Options::default()
    })
}

#[test]
fn with_chunking_the_bytes_go_in_bdat_chunks_exact_without_dot_stuffing() {
    let env = Env::new();
    let mut datas = mixed(40);
    // Bigger than a chunk, ending without a line end.
    let mut big = b"Return-Path: <big@example.org>\r\nSubject: big\r\n\r\n".to_vec();
    while big.len() < 300 * 1024 {
        big.extend_from_slice(b".a line that starts with a dot\r\nbare\rCR\r\n");
    }
    big.extend_from_slice(b"no final newline");
    datas.push(big);
    let pop = Server::start(Config {
        messages: datas
            .iter()
            .enumerate()
            .map(|(i, d)| Msg::new(format!("u{i}"), d.clone()))
            .collect(),
        ..Config::default()
    });
    for (lmtp, pipelining) in [(true, true), (false, false)] {
        let server = chunking_server(lmtp, pipelining);
        let key = if lmtp { "lmtp" } else { "smtp" };
        env.write_config(&wired_account(
            &pop,
            &format!(
                "{key} = \"{key}://127.0.0.1:{}\"\ndeliver_to = \"bob\"",
                server.port()
            ),
            "",
        ));
        let _ = std::fs::remove_dir_all(env.state_dir());
        env.run(&["sync"]).expect_code(0);
        let got = server.received();
        assert_eq!(got.len(), datas.len());
        assert_eq!(server.connections(), 1);
        for (i, (r, d)) in got.iter().zip(&datas).enumerate() {
            let chunks = r.chunks.as_ref().expect("sent with BDAT");
            assert_eq!(r.pipelined, pipelining, "message {i}");
            assert_eq!(r.from, format!("{}", return_path_of(d)));
            // CRLF line ends, nothing else changed: no dot-stuffing.
            let want = expected_delivery(d);
            let mut wire = Vec::new();
            for &b in &want {
                if b == b'\n' {
                    wire.push(b'\r');
                }
                wire.push(b);
            }
            assert_eq!(r.wire, wire, "message {i} ({key})");
            assert_eq!(r.content(), want);
            assert_eq!(chunks.iter().sum::<usize>(), r.wire.len());
            if d.len() > 256 * 1024 {
                assert!(chunks.len() > 2, "{chunks:?}");
            } else {
                assert_eq!(chunks.len(), 1, "a small message is one BDAT LAST");
            }
        }
        let commands = server.commands();
        assert!(!commands.iter().any(|c| c == "DATA"), "{key}");
        assert!(commands.iter().any(|c| c.ends_with(" LAST")), "{key}");
    }
}

fn return_path_of(d: &[u8]) -> String {
    let text = String::from_utf8_lossy(d);
    text.lines()
        .find_map(|l| l.strip_prefix("Return-Path: <"))
        .map(|r| r.trim_end_matches(['>', '\r']).to_string())
        .unwrap_or_default()
}

#[test]
fn with_chunking_4xx_is_75_5xx_is_reported_and_a_refused_recipient_ends_the_pipelined_bdat() {
    let env = Env::new();
    let msg = |uidl: &str, test: &str| {
        Msg::new(
            uidl,
            format!("Subject: {uidl}\r\nX-Test: {test}\r\n\r\nbody {uidl}\r\n").into_bytes(),
        )
    };
    let pop = Server::start(Config {
        messages: vec![
            msg("m1", "ok"),
            msg("m2", "reject"),
            msg("m3", "ok"),
            msg("m4", "tempfail"),
            msg("m5", "ok"),
        ],
        ..Config::default()
    });
    let lmtp = chunking_server(true, true);
    env.write_config(&wired_account(
        &pop,
        &format!(
            "lmtp = \"lmtp://127.0.0.1:{}\"\ndeliver_to = \"bob\"",
            lmtp.port()
        ),
        "keep = false",
    ));
    let run = env.run(&["sync"]);
    run.expect_code(75);
    assert!(
        run.stderr.contains("550") && run.stderr.contains("451"),
        "{}",
        run.stderr
    );
    let codes: Vec<u16> = lmtp.received().iter().map(|r| r.code).collect();
    assert_eq!(codes, [250, 550, 250, 451]);
    let left: Vec<String> = pop.messages().iter().map(|m| m.uidl.clone()).collect();
    assert_eq!(left, ["m2", "m4", "m5"]);

    // A recipient refused in the pipelined group: its BDAT is refused
    // too, and the message stays.
    let env = Env::new();
    let pop = Server::start(Config {
        messages: vec![msg("a", "ok")],
        ..Config::default()
    });
    let lmtp = chunking_server(true, true);
    env.write_config(&wired_account(
        &pop,
        &format!(
            "lmtp = \"lmtp://127.0.0.1:{}\"\ndeliver_to = \"nobody\"",
            lmtp.port()
        ),
        "keep = false",
    ));
    let run = env.run(&["sync"]);
    // Reported, as with DATA: the next message would go on.
    run.expect_code(0);
    assert!(
        run.stderr.contains("RCPT TO") && run.stderr.contains("no such user"),
        "{}",
        run.stderr
    );
    assert!(lmtp.received().is_empty());
    assert_eq!(pop.messages().len(), 1);
    assert!(lmtp.commands().iter().any(|c| c == "RSET"));
}

#[test]
fn dovecot_lmtp_offers_chunking_and_stores_bdat_messages_byte_exact() {
    if !require_dovecot_lmtp() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice"), ("bob", "pw-bob")]);
    let datas = mixed_messages(30, 300 * 1024);
    dc.add_messages("alice", &datas);
    let env = Env::new();
    env.write_config(&format!(
        "[accounts.dc]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"implicit\"\nuser = \"alice\"\npassword = \"pw-alice\"\nca_file = \"{}\"\nlmtp = \"unix:{}\"\ndeliver_to = \"bob\"\ntimeout = 20\n",
        dc.pop3s_port(),
        dc.pki().ca_path.display(),
        dc.lmtp_socket().display()
    ));
    let run = env.run(&["sync", "-vv"]);
    run.expect_code(0);
    assert!(
        run.stderr.contains("[dc lmtp] < 250-CHUNKING"),
        "Dovecot's LMTP offers CHUNKING: {}",
        &run.stderr[..run.stderr.len().min(3000)]
    );
    assert!(run.stderr.contains("[dc lmtp] > BDAT "), "sent with BDAT");
    assert!(!run.stderr.contains("[dc lmtp] > DATA"));
    let mut got: Vec<Vec<u8>> = dc
        .messages("bob")
        .iter()
        .map(|m| strip_dovecot_lmtp_headers(m).to_vec())
        .collect();
    got.sort();
    let mut want: Vec<Vec<u8>> = datas.iter().map(|d| expected_delivery(d)).collect();
    want.sort();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!(g == w, "stored differs from sent");
    }
}
