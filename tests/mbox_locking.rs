//! The mbox's locks as mail programs see them: a dotlock left by a dead
//! process does not hold the mbox (one of a live process does, however
//! old), an mbox a mail reader replaced while popfetch waited is the one
//! appended to, and a spool folder where popfetch may not create its lock
//! (like /var/mail) gets an error that says what to do.

use std::fs;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::server::{Config, Msg, Server};
use crate::support::{expected_delivery, Env, Run};
use crate::sync::parse_mboxrd;

fn mbox_account(port: u16, path: &Path) -> String {
    format!(
        "[accounts.m]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nuser = \"alice\"\npassword = \"secret\"\nmbox = \"{}\"\ntimeout = 10\n",
        path.display()
    )
}

fn one_message() -> Msg {
    Msg::new("uid-1", b"Subject: hello\n\nbody\n".to_vec())
}

/// A pid that is certainly gone: a child that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn a_fresh_dotlock_whose_process_is_gone_does_not_hold_the_mbox() {
    let env = Env::new();
    let server = Server::start(Config {
        messages: vec![one_message()],
        ..Config::default()
    });
    let mbox = env.home().join("mail/inbox");
    fs::create_dir_all(mbox.parent().unwrap()).unwrap();
    // Left by a delivery agent killed a moment ago: young, but its pid is
    // gone. Judged by age alone it would block popfetch for minutes.
    let lock = mbox.with_file_name("inbox.lock");
    fs::write(&lock, format!("{}\n", dead_pid())).unwrap();
    env.write_config(&mbox_account(server.port(), &mbox));
    let started = Instant::now();
    env.run(&["sync"]).expect_code(0);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited {:?} for a dead process's lock",
        started.elapsed()
    );
    assert_eq!(
        parse_mboxrd(&fs::read(&mbox).unwrap()),
        vec![expected_delivery(&one_message().data)]
    );
    assert!(
        !lock.exists(),
        "our own dotlock is removed after the append"
    );
}

#[test]
fn a_dotlock_whose_process_lives_holds_the_mbox_however_old() {
    let env = Env::new();
    let server = Server::start(Config {
        messages: vec![one_message()],
        ..Config::default()
    });
    let mbox = env.home().join("mail/inbox");
    fs::create_dir_all(mbox.parent().unwrap()).unwrap();
    // A holder that is alive (this test), with an old lock: age alone
    // would break it under a slow mail reader's feet. (Not older than the
    // last boot: such a lock is stale whatever its pid.)
    let lock = mbox.with_file_name("inbox.lock");
    fs::write(&lock, format!("{}\n", std::process::id())).unwrap();
    let uptime: f64 = fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now();
    let booted = now - Duration::from_secs_f64(uptime);
    let old = (now - Duration::from_secs(3600)).max(booted + Duration::from_secs(120));
    fs::File::options()
        .write(true)
        .open(&lock)
        .unwrap()
        .set_modified(old)
        .unwrap();
    env.write_config(&mbox_account(server.port(), &mbox));
    let started = Instant::now();
    let mut child = env
        .command(&["sync"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Still waiting after a few seconds: the lock is respected.
    std::thread::sleep(Duration::from_secs(2));
    assert!(child.try_wait().unwrap().is_none(), "did not wait");
    assert!(fs::read(&mbox).unwrap_or_default().is_empty());
    // The holder lets go: the waiting sync appends.
    fs::remove_file(&lock).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(parse_mboxrd(&fs::read(&mbox).unwrap()).len(), 1);
}

/// `/var/mail` as Debian ships it: mode 2775 root:mail, the user's mbox in
/// it owned by the user, and the user not in group mail, so the user may
/// write the mbox but not create its `.lock` (nor any file) beside it.
/// Root ignores permissions, so the sync runs as `nobody` (setpriv).
#[test]
fn a_spool_folder_we_may_not_create_files_in_is_named_with_the_alternatives() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    if !root || !setpriv {
        crate::support::skip(
            "spool folder without create rights: needs root and setpriv to run popfetch as nobody",
        );
        return;
    }
    const NOBODY: u32 = 65534;
    let env = Env::new();
    let server = Server::start(Config {
        messages: vec![one_message()],
        ..Config::default()
    });
    let base = env.dir.path();
    fs::set_permissions(base, fs::Permissions::from_mode(0o755)).unwrap();
    let spool = base.join("var-mail");
    fs::create_dir(&spool).unwrap();
    chown(&spool, Some(0), Some(8)).unwrap();
    fs::set_permissions(&spool, fs::Permissions::from_mode(0o2775)).unwrap();
    let mbox = spool.join("nobody");
    fs::write(&mbox, b"").unwrap();
    chown(&mbox, Some(NOBODY), Some(8)).unwrap();
    fs::set_permissions(&mbox, fs::Permissions::from_mode(0o660)).unwrap();
    env.write_config(&mbox_account(server.port(), &mbox));
    // Everything under HOME belongs to nobody.
    let chowned = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(env.home())
        .status()
        .unwrap();
    assert!(chowned.success());

    let plain = env.command(&["sync"]);
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(plain.get_program())
        .args(plain.get_args())
        .env_clear()
        .stdin(std::process::Stdio::null());
    for (k, v) in plain.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let run = Run::from(cmd.output().unwrap());
    run.expect_code(73);
    for words in [
        spool.to_str().unwrap(),
        "may not create files",
        "maildir =",
        "mbox = \"~/mail/inbox\"",
        "mda =",
    ] {
        assert!(run.stderr.contains(words), "{words:?} in {}", run.stderr);
    }
    assert!(
        server.log().iter().all(|l| !l.starts_with("RETR")),
        "nothing fetched"
    );
    assert_eq!(fs::read(&mbox).unwrap(), b"", "the mbox is untouched");
}

/// A mail reader that rewrites the mbox holds its fcntl lock (no dotlock),
/// writes the new version to another file and renames it over the mbox.
/// popfetch, waiting for that lock on the file it opened, must notice that
/// the path now names another file, or it appends to the old one, which
/// nobody will ever read again: the message is lost, and marked seen.
#[test]
fn an_mbox_replaced_while_popfetch_waits_for_its_lock_gets_the_message() {
    use std::os::fd::AsRawFd;
    let env = Env::new();
    let server = Server::start(Config {
        messages: vec![one_message()],
        ..Config::default()
    });
    let mbox = env.home().join("mail/inbox");
    fs::create_dir_all(mbox.parent().unwrap()).unwrap();
    let old = b"From a@b Thu Jan  1 00:00:00 1970\nSubject: old\n\nold\n\n";
    fs::write(&mbox, old).unwrap();
    let reader = fs::File::options()
        .read(true)
        .write(true)
        .open(&mbox)
        .unwrap();
    // SAFETY: a zeroed flock is valid; the descriptor is open.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as _;
    fl.l_whence = libc::SEEK_SET as _;
    assert_eq!(
        unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_SETLK, &fl) },
        0
    );
    env.write_config(&mbox_account(server.port(), &mbox));
    let mut child = env
        .command(&["sync"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // popfetch has its dotlock and waits for the fcntl lock.
    let lock = mbox.with_file_name("inbox.lock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lock.exists() {
        assert!(Instant::now() < deadline, "popfetch never took the dotlock");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(300));
    // The reader's rewrite (it dropped the old message), then its unlock.
    let rewritten = mbox.with_file_name("inbox.rewrite");
    fs::write(&rewritten, b"").unwrap();
    fs::rename(&rewritten, &mbox).unwrap();
    drop(reader);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(
        parse_mboxrd(&fs::read(&mbox).unwrap()),
        vec![expected_delivery(&one_message().data)],
        "the message is in the mbox at the path"
    );
}
