//! `popfetch watch` end to end: scripted servers, intervals of a second,
//! the real binary in the background (killed when a test ends, however it
//! ends), and signals sent to it as systemd or a user would.

use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use crate::support::server::{Config, Fault, Msg, Server};
use crate::support::{maildir_messages, Env};

/// A scripted server whose user is `name` (accounts of one user and host
/// would be one mailbox).
fn server(name: &str, cfg: Config) -> Server {
    Server::start(Config {
        user: name.into(),
        ..cfg
    })
}

/// An account section for a scripted server, synced every `interval`.
fn account(name: &str, port: u16, interval: &str) -> String {
    format!(
        "[accounts.{name}]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nuser = \"{name}\"\npassword = \"secret\"\nmaildir = \"~/Mail/{name}\"\ntimeout = 10\ninterval = \"{interval}\"\n"
    )
}

fn msg(name: &str) -> Msg {
    Msg::new(
        name,
        format!(
            "From: a@example.org\nSubject: {name}\nMessage-ID: <{name}@test>\n\nbody of {name}\n"
        ),
    )
}

/// A `popfetch watch` running in the background; killed on drop.
struct Watch {
    child: Child,
    stderr: PathBuf,
    stdout: PathBuf,
}

impl Watch {
    fn start(env: &Env, args: &[&str]) -> Watch {
        Watch::start_with(env, args, &[])
    }

    fn start_with(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Watch {
        let n = fs::read_dir(env.dir.path()).unwrap().count();
        let stderr = env.dir.path().join(format!("watch-{n}.stderr"));
        let stdout = env.dir.path().join(format!("watch-{n}.stdout"));
        let mut all = vec!["watch"];
        all.extend_from_slice(args);
        let child = env
            .command(&all)
            .envs(vars.iter().copied())
            .stdout(fs::File::create(&stdout).unwrap())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start popfetch watch");
        Watch {
            child,
            stderr,
            stdout,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
    }

    fn stderr(&self) -> String {
        let mut s = String::new();
        fs::File::open(&self.stderr)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap()
    }

    /// Waits for the exit, up to `limit`.
    fn exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    #[track_caller]
    fn wait_for(&self, what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
        let end = Instant::now() + limit;
        while !done() {
            assert!(
                Instant::now() < end,
                "waited {limit:?} for {what}\n--- stderr\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

use rustix::process::Signal;

#[test]
fn three_accounts_fetch_on_schedule_and_a_failing_one_backs_off_alone() {
    let env = Env::new();
    let a = server("a", Config::default());
    let b = server("b", Config::default());
    // c's server is busy (exit 75) at every login.
    let c = server(
        "c",
        Config {
            faults: ["AUTH", "PASS"]
                .map(|verb| Fault::ErrOnCommand {
                    verb: verb.into(),
                    reply: "-ERR [IN-USE] mailbox locked".into(),
                })
                .to_vec(),
            ..Config::default()
        },
    );
    env.write_config(&format!(
        "{}{}{}",
        account("a", a.port(), "1s"),
        account("b", b.port(), "1s"),
        account("c", c.port(), "1s")
    ));
    let watch = Watch::start(&env, &["--json"]);
    let started = Instant::now();
    // Mail arriving later is fetched on the next run of its account.
    for i in 0..3 {
        a.push_message(msg(&format!("a{i}")));
        b.push_message(msg(&format!("b{i}")));
        watch.wait_for("a's and b's mail", Duration::from_secs(10), || {
            maildir_messages(&env.maildir("a")).len() == i + 1
                && maildir_messages(&env.maildir("b")).len() == i + 1
        });
    }
    let until = started + Duration::from_secs(7);
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
    // In 7 s, c was tried after about 1, 1, 2 and 4 s (±25 %): 4 times at
    // most. a and b went on every second.
    let (ca, cc) = (a.connections(), c.connections());
    assert!(
        cc <= 4,
        "c tried {cc} times in 7 s: no backoff\n{}",
        watch.stderr()
    );
    assert!(cc >= 2, "c tried {cc} times in 7 s");
    assert!(ca >= 5, "a synced {ca} times in 7 s");
    let stderr = watch.stderr();
    assert!(
        stderr.contains("c: ") && stderr.contains("IN-USE") && stderr.contains("(exit 75)"),
        "{stderr}"
    );
    assert!(stderr.contains("next try in"), "{stderr}");
    assert!(stderr.contains("a: 1 new message"), "{stderr}");
    // Nothing is said of a run that found nothing: the start line, the
    // clear-text warning once per account, one line per message per
    // account, one per failure of c.
    let lines = stderr.lines().count();
    assert!(lines <= 1 + 3 + 6 + cc, "{stderr}");
    assert_eq!(
        stderr
            .matches("a: sending the password unencrypted")
            .count(),
        1
    );
    let events: Vec<serde_json::Value> = watch
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["event"], "start");
    let c_events: Vec<&serde_json::Value> = events.iter().filter(|e| e["account"] == "c").collect();
    assert!(!c_events.is_empty());
    for (i, e) in c_events.iter().enumerate() {
        assert_eq!(e["exit_code"], 75);
        assert_eq!(e["failures"], i + 1);
    }
    let a_new: u64 = events
        .iter()
        .filter(|e| e["account"] == "a")
        .map(|e| e["new"].as_u64().unwrap())
        .sum();
    assert_eq!(a_new, 3);
}

#[test]
fn sigterm_during_a_fetch_commits_and_exits_0_and_the_next_run_completes() {
    let env = Env::new();
    let server = server(
        "t",
        Config {
            messages: (0..12).map(|i| msg(&format!("m{i:02}"))).collect(),
            faults: vec![Fault::SlowRetr { delay_ms: 150 }],
            ..Config::default()
        },
    );
    env.write_config(&account("t", server.port(), "1s"));
    let mut watch = Watch::start(&env, &[]);
    watch.wait_for("the first messages", Duration::from_secs(10), || {
        server.retr_count("m02") > 0
    });
    watch.signal(Signal::TERM);
    let status = watch
        .exit(Duration::from_secs(10))
        .expect("exit within the timeout");
    assert_eq!(status.code(), Some(0), "{}", watch.stderr());
    let got = maildir_messages(&env.maildir("t"));
    assert!(
        !got.is_empty() && got.len() < 12,
        "stopped mid-fetch: {} delivered",
        got.len()
    );
    let stderr = watch.stderr();
    assert!(stderr.contains("popfetch: stopping"), "{stderr}");
    assert!(stderr.contains("t: stopped after"), "{stderr}");
    assert!(stderr.contains("popfetch: stopped"), "{stderr}");
    // The session ended with QUIT.
    assert!(
        server.log().iter().any(|l| l == "QUIT"),
        "{:?}",
        server.log()
    );

    // The next watch fetches the rest, and nothing twice.
    server.clear_faults();
    let mut watch = Watch::start(&env, &[]);
    watch.wait_for("the rest", Duration::from_secs(10), || {
        maildir_messages(&env.maildir("t")).len() >= 12
    });
    watch.signal(Signal::INT);
    assert_eq!(watch.exit(Duration::from_secs(10)).unwrap().code(), Some(0));
    let mut got = maildir_messages(&env.maildir("t"));
    assert_eq!(got.len(), 12);
    got.dedup();
    assert_eq!(got.len(), 12, "a message delivered twice");
}

#[test]
fn sighup_adds_an_account_and_a_broken_config_keeps_the_old_one() {
    let env = Env::new();
    let a = server(
        "a",
        Config {
            messages: vec![msg("a0")],
            ..Config::default()
        },
    );
    let b = server(
        "b",
        Config {
            messages: vec![msg("b0")],
            ..Config::default()
        },
    );
    let path = env.write_config(&account("a", a.port(), "1s"));
    let watch = Watch::start(&env, &[]);
    watch.wait_for("a's mail", Duration::from_secs(10), || {
        maildir_messages(&env.maildir("a")).len() == 1
    });

    // A typo: the old config stays, and the error names the line.
    fs::write(
        &path,
        format!("{}intervall = \"1s\"\n", account("a", a.port(), "1s")),
    )
    .unwrap();
    watch.signal(Signal::HUP);
    watch.wait_for("the reload error", Duration::from_secs(10), || {
        watch.stderr().contains("config not reloaded")
    });
    let stderr = watch.stderr();
    assert!(
        stderr.contains("config.toml:10") && stderr.contains("did you mean `interval`"),
        "{stderr}"
    );
    a.push_message(msg("a1"));
    watch.wait_for("a's next mail", Duration::from_secs(10), || {
        maildir_messages(&env.maildir("a")).len() == 2
    });

    fs::write(
        &path,
        format!(
            "{}{}",
            account("a", a.port(), "1s"),
            account("b", b.port(), "1s")
        ),
    )
    .unwrap();
    watch.signal(Signal::HUP);
    watch.wait_for("b's mail", Duration::from_secs(10), || {
        maildir_messages(&env.maildir("b")).len() == 1
    });
    assert!(
        watch.stderr().contains("config reloaded: added b"),
        "{}",
        watch.stderr()
    );
}

#[test]
fn sigusr1_syncs_every_account_at_once() {
    let env = Env::new();
    let a = server("a", Config::default());
    let b = server("b", Config::default());
    // An hour apart: only SIGUSR1 makes them run within seconds (their
    // first runs are somewhere in the first hour).
    env.write_config(&format!(
        "{}{}",
        account("a", a.port(), "1h"),
        account("b", b.port(), "1h")
    ));
    let watch = Watch::start(&env, &[]);
    watch.wait_for("the start line", Duration::from_secs(10), || {
        watch.stderr().contains("watching 2 accounts")
    });
    for round in 1..=2 {
        a.push_message(msg(&format!("a{round}")));
        b.push_message(msg(&format!("b{round}")));
        watch.signal(Signal::USR1);
        watch.wait_for("both accounts' mail", Duration::from_secs(5), || {
            maildir_messages(&env.maildir("a")).len() == round
                && maildir_messages(&env.maildir("b")).len() == round
        });
    }
}

#[test]
fn a_second_watch_on_the_same_config_exits_75_naming_the_first() {
    let env = Env::new();
    let a = server("a", Config::default());
    env.write_config(&account("a", a.port(), "1h"));
    let first = Watch::start(&env, &[]);
    first.wait_for("the start line", Duration::from_secs(10), || {
        first.stderr().contains("watching 1 account")
    });
    let second = env.run(&["watch"]);
    second.expect_code(75);
    assert!(
        second.stderr.contains(&format!(
            "already running for {}",
            env.config_path().display()
        )) && second.stderr.contains(&format!("pid {}", first.pid())),
        "{}",
        second.stderr
    );
    // `sync` by hand is not held back by the watch's lock.
    a.push_message(msg("a0"));
    env.run(&["sync"]).expect_code(0);
    assert_eq!(maildir_messages(&env.maildir("a")).len(), 1);
}

#[test]
fn a_bad_interval_is_a_config_error_naming_the_line() {
    let env = Env::new();
    env.write_config(&account("a", 1, "5"));
    let run = env.run(&["watch"]);
    run.expect_code(78);
    assert!(
        run.stderr.contains("config.toml:9: interval = \"5\""),
        "{}",
        run.stderr
    );
}

#[test]
fn idle_against_dovecot_fetches_new_mail_within_seconds() {
    use crate::support::dovecot::{require_dovecot_imap, Dovecot};
    if !require_dovecot_imap() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice")]);
    dc.add_message("alice", b"Subject: before\n\nbefore\n");
    let env = Env::new();
    // An hour between runs: only IDLE can bring the new mail in seconds.
    env.write_config(&format!(
        "[accounts.i]\nprotocol = \"imap\"\nhost = \"localhost\"\nport = {}\ntls = \"implicit\"\nuser = \"alice\"\npassword = \"pw-alice\"\nca_file = \"{}\"\ntimeout = 20\nmaildir = \"~/Mail/i\"\nidle = true\ninterval = \"1h\"\n",
        dc.imaps_port(),
        dc.pki().ca_path.display()
    ));
    // -vv: the dialogue shows when the server has accepted the IDLE.
    let mut watch = Watch::start(&env, &["-vv"]);
    watch.wait_for("the IDLE", Duration::from_secs(20), || {
        watch.stderr().contains("[i] < + ")
    });
    for (round, subject) in ["first", "second"].iter().enumerate() {
        let arrived = Instant::now();
        dc.add_message(
            "alice",
            format!("Subject: {subject}\n\n{subject}\n").as_bytes(),
        );
        watch.wait_for("the new message", Duration::from_secs(5), || {
            maildir_messages(&env.maildir("i"))
                .iter()
                .any(|m| m.starts_with(format!("Subject: {subject}").as_bytes()))
        });
        eprintln!(
            "round {round}: fetched {:?} after arrival",
            arrived.elapsed()
        );
    }
    assert!(
        !watch.stderr().contains("IDLE on INBOX"),
        "{}",
        watch.stderr()
    );
    assert!(watch.stderr().contains("[i] > DONE"), "{}", watch.stderr());
    // Stopping does not wait for the IDLE's renewal.
    let asked = Instant::now();
    watch.signal(Signal::TERM);
    let status = watch.exit(Duration::from_secs(5)).expect("exit within 5 s");
    assert_eq!(status.code(), Some(0), "{}", watch.stderr());
    assert!(asked.elapsed() < Duration::from_secs(5));
}

#[test]
fn under_systemd_it_says_ready_status_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let env = Env::new();
    let a = server(
        "a",
        Config {
            messages: vec![msg("a0")],
            ..Config::default()
        },
    );
    env.write_config(&account("a", a.port(), "1s"));
    let path = env.dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut watch = Watch::start_with(
        &env,
        &[],
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let mut got: Vec<String> = Vec::new();
    let mut receive = |until: &dyn Fn(&[String]) -> bool| {
        let end = Instant::now() + Duration::from_secs(10);
        while !until(&got) && Instant::now() < end {
            let mut buf = [0u8; 4096];
            if let Ok(n) = socket.recv(&mut buf) {
                got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        got.clone()
    };
    let got_now = receive(&|g: &[String]| {
        g.iter().filter(|m| *m == "WATCHDOG=1").count() >= 3
            && g.iter().any(|m| m.contains("STATUS=a: ok, 1 new"))
    });
    assert!(got_now[0].starts_with("READY=1\n"), "{got_now:?}");
    assert!(
        got_now.iter().filter(|m| *m == "WATCHDOG=1").count() >= 3,
        "{got_now:?}"
    );
    assert!(
        got_now.iter().any(|m| m.contains("STATUS=a: ok, 1 new")),
        "{got_now:?}"
    );
    watch.signal(Signal::TERM);
    assert_eq!(watch.exit(Duration::from_secs(10)).unwrap().code(), Some(0));
    let got_now = receive(&|g: &[String]| g.iter().any(|m| m == "STOPPING=1"));
    assert!(got_now.iter().any(|m| m == "STOPPING=1"), "{got_now:?}");
}
