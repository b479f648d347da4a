//! A real Dovecot POP3 server for integration tests.
//!
//! The scripted server (`server.rs`) shows what popfetch sends; this one shows
//! that popfetch gets along with a POP3 server people actually run. Every
//! [`Dovecot`] is a private instance: its config, `base_dir`, state, log, PKI
//! and mail live in a short temp dir (`/tmp/pfdc-XXXXXX`: unix socket paths
//! must stay under 108 bytes), it listens on two free ports on 127.0.0.1
//! (POP3 offering STLS, and POP3S), runs in the foreground as our child in its
//! own process group, and is stopped and removed on drop. The system's Dovecot
//! config, service and state are never touched.
//!
//! Tests call [`require_dovecot`] first: without Dovecot they are skipped
//! loudly, unless `POPFETCH_REQUIRE_DOVECOT=1` (as in `.ci/run`) turns that
//! into a failure.

use std::ffi::{CStr, CString};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{chown, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::certs::TestPki;

/// Set to `1` to make a missing Dovecot a test failure instead of a skip.
pub const REQUIRE_ENV: &str = "POPFETCH_REQUIRE_DOVECOT";
/// Where the Dovecot master binary is looked for before `PATH`.
const DOVECOT_BINARIES: [&str; 2] = ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"];
/// Where Dovecot's helper binaries (`pop3`, `pop3-login`) may live.
const LIBEXEC_DIRS: [&str; 3] = [
    "/usr/lib/dovecot",
    "/usr/libexec/dovecot",
    "/usr/local/libexec/dovecot",
];
/// How long `start` waits for both ports to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long drop waits for the master to exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often `start` picks new ports when one was taken in the meantime.
const START_ATTEMPTS: usize = 5;
/// Default wait of `wait_for_log` / `wait_for_sessions`.
const LOG_TIMEOUT: Duration = Duration::from_secs(10);

/// The Dovecot master binary, if installed.
/// A Maildir file name for the `n`th message, shaped like a real one:
/// `<secs>.M<usec>P<pid>.<host>`, where `n` (a timestamp plus a counter)
/// stands for the seconds, so that names sort in delivery order.
///
/// The microsecond part must vary like a real one: Dovecot finds files by
/// a hash of the name that mixes poorly, and names differing only in a
/// counter repeated twice (`{n}.M{n}P…`) fell into a few thousand buckets
/// for 20,000 messages, costing every session ~0.4 s of hash-chain walks
/// that no real mailbox pays.
pub fn maildir_name(n: u64, host: &str) -> String {
    let usec = n.wrapping_mul(7919) % 1_000_000;
    format!("{n}.M{usec}P{}.{host}", std::process::id())
}

pub fn dovecot_binary() -> Option<PathBuf> {
    if let Some(p) = DOVECOT_BINARIES.iter().find(|p| Path::new(p).is_file()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("dovecot"))
        .find(|p| p.is_file())
}

/// Dovecot and its POP3 service (Debian: `dovecot-core` + `dovecot-pop3d`) are installed.
pub fn dovecot_available() -> bool {
    dovecot_binary().is_some()
        && LIBEXEC_DIRS.iter().any(|d| {
            let d = Path::new(d);
            d.join("pop3").is_file() && d.join("pop3-login").is_file()
        })
}

/// Dovecot's IMAP service (Debian: `dovecot-imapd`) is installed too. When
/// it is, every instance also serves IMAP (STARTTLS offered) and IMAPS.
pub fn dovecot_imap_available() -> bool {
    dovecot_available()
        && LIBEXEC_DIRS.iter().any(|d| {
            let d = Path::new(d);
            d.join("imap").is_file() && d.join("imap-login").is_file()
        })
}

/// Dovecot's LMTP service (Debian: `dovecot-lmtpd`) is installed too. When
/// it is, every instance also serves LMTP on the unix socket `run/lmtp` in
/// its dir ([`Dovecot::lmtp_socket`]).
pub fn dovecot_lmtp_available() -> bool {
    dovecot_available()
        && LIBEXEC_DIRS
            .iter()
            .any(|d| Path::new(d).join("lmtp").is_file())
}

/// Call first in every Dovecot LMTP test: like [`require_dovecot`], for
/// `dovecot-lmtpd`.
pub fn require_dovecot_lmtp() -> bool {
    if !require_dovecot() {
        return false;
    }
    if dovecot_lmtp_available() {
        return true;
    }
    let what = format!(
        "dovecot's LMTP service not installed (lmtp in {}); install dovecot-lmtpd, see .ci/run",
        LIBEXEC_DIRS.join(", "),
    );
    if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
        panic!("{REQUIRE_ENV}=1 but {what}");
    }
    eprintln!();
    eprintln!("SKIPPED: {what} (set {REQUIRE_ENV}=1 to make this a failure)");
    false
}

/// Call first in every Dovecot IMAP test: like [`require_dovecot`], for
/// `dovecot-imapd`.
pub fn require_dovecot_imap() -> bool {
    if !require_dovecot() {
        return false;
    }
    if dovecot_imap_available() {
        return true;
    }
    let what = format!(
        "dovecot's IMAP service not installed (imap + imap-login in {}); install dovecot-imapd, see .ci/run",
        LIBEXEC_DIRS.join(", "),
    );
    if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
        panic!("{REQUIRE_ENV}=1 but {what}");
    }
    eprintln!();
    eprintln!("SKIPPED: {what} (set {REQUIRE_ENV}=1 to make this a failure)");
    false
}

/// Call first in every Dovecot test: `if !require_dovecot() { return; }`.
///
/// Without Dovecot this prints a loud SKIPPED message and returns false, or
/// panics when `POPFETCH_REQUIRE_DOVECOT=1` (CI must not skip silently).
pub fn require_dovecot() -> bool {
    if dovecot_available() {
        return true;
    }
    let what = format!(
        "dovecot not installed (looked for {} or `dovecot` on PATH, and pop3 + pop3-login in {}); \
         install dovecot-core and dovecot-pop3d, see .ci/run",
        DOVECOT_BINARIES.join(", "),
        LIBEXEC_DIRS.join(", "),
    );
    if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
        panic!("{REQUIRE_ENV}=1 but {what}");
    }
    eprintln!();
    eprintln!("**********************************************************************");
    eprintln!("SKIPPED: {what}");
    eprintln!("(set {REQUIRE_ENV}=1 to make this a failure)");
    eprintln!("**********************************************************************");
    false
}

/// A mailbox account of the test server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: String,
}

/// One finished POP3 session, parsed from the log line that
/// `pop3_logout_format = top=%t/%p retr=%r/%b del=%d/%m size=%s` produces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PopSession {
    pub user: String,
    /// Why it ended: `Logged out` after QUIT, `Connection closed` without it, ...
    pub reason: String,
    /// TOP commands and the bytes they sent.
    pub top: u64,
    pub top_bytes: u64,
    /// RETR commands and the bytes they sent.
    pub retr: u64,
    pub retr_bytes: u64,
    /// Messages deleted (expunged at QUIT).
    pub deleted: u64,
    /// Messages in the mailbox when the session started, and their total size.
    pub messages: u64,
    pub size: u64,
}

impl PopSession {
    /// The client ended the session with QUIT.
    pub fn quit(&self) -> bool {
        self.reason == "Logged out"
    }

    fn parse(line: &str) -> Option<PopSession> {
        let rest = &line[line.find("pop3(")? + 5..];
        let user = rest[..rest.find(')')?].to_string();
        let reason = rest[rest.find("Disconnected: ")? + 14..rest.find(" top=")?].to_string();
        let pair = |key: &str| -> Option<(u64, u64)> {
            let v = &rest[rest.find(key)? + key.len()..];
            let v = v.split_whitespace().next()?;
            let (a, b) = v.split_once('/')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        };
        let (top, top_bytes) = pair(" top=")?;
        let (retr, retr_bytes) = pair(" retr=")?;
        let (deleted, messages) = pair(" del=")?;
        let size = rest[rest.find(" size=")? + 6..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(PopSession {
            user,
            reason,
            top,
            top_bytes,
            retr,
            retr_bytes,
            deleted,
            messages,
            size,
        })
    }
}

/// Who the Dovecot processes run as.
struct Accounts {
    /// `default_internal_user` / `default_login_user` / `default_internal_group`.
    internal_user: String,
    login_user: String,
    internal_group: String,
    /// Owner of the mail processes and the Maildirs.
    mail_uid: u32,
    mail_gid: u32,
    root: bool,
}

impl Accounts {
    fn detect() -> Accounts {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            // Dovecot refuses to run mail processes as root ("userdb returned
            // 0 as uid"), so mail belongs to the `dovecot` user the Debian
            // package creates; logins run as `dovenull` as usual.
            let (_, uid, gid) = passwd_entry(Some("dovecot")).unwrap_or_else(|| {
                panic!("system user `dovecot` missing (the dovecot-core package creates it)")
            });
            let login_user = if passwd_entry(Some("dovenull")).is_some() {
                "dovenull"
            } else {
                "nobody"
            };
            Accounts {
                internal_user: "dovecot".into(),
                login_user: login_user.into(),
                internal_group: "dovecot".into(),
                mail_uid: uid,
                mail_gid: gid,
                root: true,
            }
        } else {
            // Rootless: every process runs as us.
            let (name, uid, gid) =
                passwd_entry(None).expect("current user not found in the passwd database");
            let group = group_name(gid).expect("current group not found in the group database");
            Accounts {
                internal_user: name.clone(),
                login_user: name,
                internal_group: group,
                mail_uid: uid,
                mail_gid: gid,
                root: false,
            }
        }
    }
}

/// `(name, uid, gid)` of a user (`None`: the effective user), thread-safe.
fn passwd_entry(name: Option<&str>) -> Option<(String, u32, u32)> {
    // SAFETY: all-zero is a valid `passwd` (null pointers, zero ids).
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = match name {
        Some(n) => {
            let c = CString::new(n).ok()?;
            // SAFETY: valid pointers and buffer length; the strings land in `buf`.
            unsafe {
                libc::getpwnam_r(
                    c.as_ptr(),
                    &mut pwd,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut result,
                )
            }
        }
        // SAFETY: as above.
        None => unsafe {
            libc::getpwuid_r(
                libc::geteuid(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        },
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points to a NUL-terminated string in `buf`.
    let name = unsafe { CStr::from_ptr(pwd.pw_name) }
        .to_string_lossy()
        .into_owned();
    Some((name, pwd.pw_uid, pwd.pw_gid))
}

/// Name of group `gid`, thread-safe.
fn group_name(gid: u32) -> Option<String> {
    // SAFETY: all-zero is a valid `group` (null pointers, zero id).
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 64 * 1024];
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: valid pointers and buffer length; the strings land in `buf`.
    let rc = unsafe { libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success gr_name points to a NUL-terminated string in `buf`.
    let name = unsafe { CStr::from_ptr(grp.gr_name) };
    Some(name.to_string_lossy().into_owned())
}

/// The Dovecot master process, in its own process group.
struct Master {
    child: Option<Child>,
}

impl Master {
    /// The master's exit status if it has exited (it is reaped then).
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM the master, wait for it, SIGKILL whatever is left of the
    /// process group (or all of it after the timeout), reap. Idempotent.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            // Exited on its own and is reaped: its pid may be reused, so its
            // process group must not be signalled any more. Its children
            // follow it out when the master pipe closes.
            return;
        }
        let pid = child.id() as libc::pid_t;
        // SAFETY: plain signal to our own, unreaped child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        wait_exit_unreaped(pid, STOP_TIMEOUT);
        // The master is still running or a zombie that we have not reaped, so
        // its pid (the process group id) cannot have been reused: the group
        // holds only Dovecot's processes.
        // SAFETY: signal to that process group.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = child.wait();
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Wait until `pid` (our child) has exited, without reaping it.
fn wait_exit_unreaped(pid: libc::pid_t, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        // SAFETY: all-zero is a valid siginfo_t; waitid only writes into it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer; WNOWAIT leaves the child waitable.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: si_pid is valid for the SIGCHLD info waitid fills in.
        if rc != 0 || unsafe { info.si_pid() } != 0 {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Why a start attempt failed.
enum StartError {
    /// A port was taken between picking and binding it: try other ports.
    PortInUse(String),
    Failed(String),
}

/// A private Dovecot POP3 server on 127.0.0.1. Stopped and deleted on drop.
pub struct Dovecot {
    // Drop order matters: the master is stopped before `dir` is removed.
    master: Master,
    pop3_port: u16,
    pop3s_port: u16,
    /// IMAP and IMAPS; `None` without dovecot-imapd.
    imap_ports: Option<(u16, u16)>,
    users: Vec<User>,
    pki: TestPki,
    mail_uid: u32,
    mail_gid: u32,
    instance: String,
    root: PathBuf,
    /// Leading number of the next Maildir file name (see `add_message`).
    next_msg: AtomicU64,
    dir: tempfile::TempDir,
}

impl Dovecot {
    /// Start a server with these `(user, password)` accounts. PLAIN, LOGIN,
    /// APOP, CRAM-MD5 and USER/PASS all work, with or without TLS. Waits until
    /// both ports answer (panics with Dovecot's log after 10 s).
    pub fn start(users: &[(&str, &str)]) -> Dovecot {
        Dovecot::start_with(users, "")
    }

    /// Like [`Dovecot::start`], with `extra_config` appended to the generated
    /// dovecot.conf (later settings win, e.g. `auth_mechanisms = plain`).
    pub fn start_with(users: &[(&str, &str)], extra_config: &str) -> Dovecot {
        let bin = dovecot_binary()
            .expect("dovecot is not installed: call require_dovecot() first and skip the test");
        let accounts = Accounts::detect();
        let users: Vec<User> = users
            .iter()
            .map(|&(name, password)| {
                check_field("user name", name);
                check_field("password", password);
                assert!(
                    !name.is_empty() && !name.contains('/') && !name.starts_with('.'),
                    "unusable user name {name:?}"
                );
                User {
                    name: name.into(),
                    password: password.into(),
                }
            })
            .collect();

        // /tmp itself, not $TMPDIR: socket paths under base_dir must stay short.
        let dir = tempfile::Builder::new()
            .prefix("pfdc-")
            .tempdir_in("/tmp")
            .expect("create Dovecot temp dir");
        let root = dir.path().to_path_buf();
        if accounts.root {
            // The mail and auth processes (user `dovecot`) must reach mail/ and users.
            fs::set_permissions(&root, fs::Permissions::from_mode(0o755))
                .expect("chmod Dovecot temp dir");
        }
        let instance = root.file_name().unwrap().to_string_lossy().into_owned();
        let pki = TestPki::generate(&root.join("pki"));
        fs::create_dir(root.join("state")).expect("create state dir");

        let mut passwd = String::new();
        for u in &users {
            let home = root.join("home").join(&u.name);
            let maildir = root.join("mail").join(&u.name);
            for d in [
                home.clone(),
                maildir.join("cur"),
                maildir.join("new"),
                maildir.join("tmp"),
            ] {
                fs::create_dir_all(&d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
            }
            for d in [
                root.join("home"),
                home.clone(),
                root.join("mail"),
                maildir.clone(),
                maildir.join("cur"),
                maildir.join("new"),
                maildir.join("tmp"),
            ] {
                chown(&d, Some(accounts.mail_uid), Some(accounts.mail_gid))
                    .unwrap_or_else(|e| panic!("chown {}: {e}", d.display()));
            }
            // user:password:uid:gid:gecos:home:shell:extra_fields
            passwd.push_str(&format!(
                "{}:{{PLAIN}}{}:{}:{}::{}::\n",
                u.name,
                u.password,
                accounts.mail_uid,
                accounts.mail_gid,
                home.display()
            ));
        }
        // Read by the auth process, which runs as the internal (= mail) user.
        let users_file = root.join("users");
        write_file(&users_file, passwd.as_bytes(), 0o600);
        chown(
            &users_file,
            Some(accounts.mail_uid),
            Some(accounts.mail_gid),
        )
        .expect("chown users file");

        let start_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1_700_000_000);
        let mut failures = Vec::new();
        let imap = dovecot_imap_available();
        for _ in 0..START_ATTEMPTS {
            let ports = free_ports();
            let (pop3_port, pop3s_port) = (ports[0], ports[1]);
            let imap_ports = imap.then_some((ports[2], ports[3]));
            let conf = config(
                &root,
                &instance,
                &accounts,
                &pki,
                (pop3_port, pop3s_port, imap_ports),
                extra_config,
            );
            write_file(&root.join("dovecot.conf"), conf.as_bytes(), 0o644);
            // A fresh base_dir per attempt: stale sockets would confuse Dovecot
            // (and the disabled auth-penalty socket must not exist at all).
            let _ = fs::remove_dir_all(root.join("run"));
            let _ = fs::remove_file(root.join("dovecot.log"));
            let out = fs::File::create(root.join("dovecot.out")).expect("create dovecot.out");
            let child = Command::new(&bin)
                .arg("-F")
                .arg("-c")
                .arg(root.join("dovecot.conf"))
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("dup dovecot.out"))
                .stderr(out)
                // Dovecot would take these as systemd socket activation.
                .env_remove("LISTEN_FDS")
                .env_remove("LISTEN_PID")
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
            let mut master = Master { child: Some(child) };
            match wait_ready(
                &mut master,
                &root,
                &instance,
                pop3_port,
                pop3s_port,
                imap_ports,
            ) {
                Ok(()) => {
                    return Dovecot {
                        master,
                        pop3_port,
                        pop3s_port,
                        imap_ports,
                        users,
                        pki,
                        mail_uid: accounts.mail_uid,
                        mail_gid: accounts.mail_gid,
                        instance,
                        root,
                        next_msg: AtomicU64::new(start_secs),
                        dir,
                    }
                }
                Err(StartError::PortInUse(why)) => {
                    master.stop();
                    failures.push(why);
                }
                Err(StartError::Failed(why)) => {
                    master.stop();
                    panic!("Dovecot did not start: {why}\n{}", diagnostics(&root));
                }
            }
        }
        panic!(
            "Dovecot did not start in {START_ATTEMPTS} attempts (ports kept being taken):\n{}",
            failures.join("\n")
        );
    }

    /// Host to connect to.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The POP3 port (plain, STLS offered).
    pub fn pop3_port(&self) -> u16 {
        self.pop3_port
    }

    /// The POP3S port (implicit TLS).
    pub fn pop3s_port(&self) -> u16 {
        self.pop3s_port
    }

    /// The IMAP port (plain, STARTTLS offered); panics without
    /// dovecot-imapd (call [`require_dovecot_imap`] first).
    pub fn imap_port(&self) -> u16 {
        self.imap_ports.expect("dovecot-imapd is not installed").0
    }

    /// The IMAPS port (implicit TLS).
    pub fn imaps_port(&self) -> u16 {
        self.imap_ports.expect("dovecot-imapd is not installed").1
    }

    /// The LMTP unix socket (Dovecot's default listener in `base_dir`);
    /// waits until the master created it. Panics without dovecot-lmtpd
    /// (call [`require_dovecot_lmtp`] first).
    pub fn lmtp_socket(&self) -> PathBuf {
        assert!(dovecot_lmtp_available(), "dovecot-lmtpd is not installed");
        let socket = self.root.join("run").join("lmtp");
        let deadline = Instant::now() + START_TIMEOUT;
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "no LMTP socket {} after {START_TIMEOUT:?}\n{}",
                socket.display(),
                diagnostics(&self.root)
            );
            thread::sleep(Duration::from_millis(20));
        }
        socket
    }

    /// The test PKI; give popfetch `ca_file = pki().ca_path`.
    pub fn pki(&self) -> &TestPki {
        &self.pki
    }

    pub fn users(&self) -> &[User] {
        &self.users
    }

    pub fn password(&self, user: &str) -> &str {
        &self.user(user).password
    }

    fn user(&self, user: &str) -> &User {
        self.users
            .iter()
            .find(|u| u.name == user)
            .unwrap_or_else(|| panic!("no Dovecot user {user:?}"))
    }

    /// The instance's temp dir (config, log, run/, state/, mail/, pki/).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join("dovecot.conf")
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.join("dovecot.log")
    }

    /// The master's pid (also its process group id).
    pub fn pid(&self) -> u32 {
        self.master.pid().expect("Dovecot is stopped")
    }

    /// The user's Maildir root (with cur/, new/, tmp/).
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.root.join("mail").join(&self.user(user).name)
    }

    /// Deliver a message by writing a Maildir file (tmp/, then renamed into
    /// new/). `data` is stored as is; Dovecot sends it with CRLF line ends,
    /// dot-stuffed, and assigns the UID (hence the UIDL) itself. Messages get
    /// UIDs in the order they were added.
    pub fn add_message(&self, user: &str, data: &[u8]) {
        let maildir = self.maildir(user);
        // Dovecot orders new files by the number the name starts with (a
        // timestamp by convention); a per-instance counter keeps it strict.
        let n = self.next_msg.fetch_add(1, Ordering::SeqCst);
        let name = maildir_name(n, "popfetch-test");
        let tmp = maildir.join("tmp").join(&name);
        write_file(&tmp, data, 0o600);
        chown(&tmp, Some(self.mail_uid), Some(self.mail_gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", tmp.display()));
        fs::rename(&tmp, maildir.join("new").join(&name))
            .unwrap_or_else(|e| panic!("deliver {name}: {e}"));
    }

    /// Add several messages in order; returns how many.
    pub fn add_messages<M: AsRef<[u8]>>(&self, user: &str, messages: &[M]) -> usize {
        for m in messages {
            self.add_message(user, m.as_ref());
        }
        messages.len()
    }

    fn message_files(&self, user: &str) -> Vec<PathBuf> {
        let maildir = self.maildir(user);
        let mut files = Vec::new();
        for sub in ["new", "cur"] {
            let dir = maildir.join(sub);
            let entries =
                fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
            for entry in entries.flatten() {
                let hidden = entry.file_name().to_string_lossy().starts_with('.');
                if !hidden && entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
                    files.push(entry.path());
                }
            }
        }
        // Order by name = the order `add_message` delivered them in.
        files.sort_by_key(|p| p.file_name().map(|n| n.to_os_string()));
        files
    }

    /// Messages left on the server: files in new/ + cur/.
    pub fn message_count(&self, user: &str) -> usize {
        self.message_files(user).len()
    }

    /// Contents of the messages left on the server, in delivery order.
    pub fn messages(&self, user: &str) -> Vec<Vec<u8>> {
        self.message_files(user)
            .iter()
            .filter_map(|p| fs::read(p).ok())
            .collect()
    }

    /// Dovecot's log (logins, auth failures, one line per ended POP3 session
    /// with `top=%t/%p retr=%r/%b del=%d/%m size=%s`).
    pub fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    /// Wait until the log contains `needle` (log lines are written after the
    /// client already saw the reply) and return the log; panics after 10 s.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + LOG_TIMEOUT;
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            if Instant::now() >= deadline {
                panic!("{needle:?} not in Dovecot's log after {LOG_TIMEOUT:?}:\n{log}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ended POP3 sessions so far, in log order.
    pub fn sessions(&self) -> Vec<PopSession> {
        self.log().lines().filter_map(PopSession::parse).collect()
    }

    /// Wait until at least `n` POP3 sessions have ended and return them all;
    /// panics after 10 s.
    pub fn wait_for_sessions(&self, n: usize) -> Vec<PopSession> {
        let deadline = Instant::now() + LOG_TIMEOUT;
        loop {
            let sessions = self.sessions();
            if sessions.len() >= n {
                return sessions;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{n} POP3 session(s) expected in Dovecot's log, found {} after {LOG_TIMEOUT:?}:\n{}",
                    sessions.len(),
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.master.stop();
        if thread::panicking() {
            eprintln!(
                "Dovecot instance {} (pop3 {}, pop3s {}):\n{}",
                self.instance,
                self.pop3_port,
                self.pop3s_port,
                diagnostics(&self.root)
            );
        }
        // Then `dir` (a TempDir) removes everything.
    }
}

/// Wait until Dovecot answers on both ports.
fn wait_ready(
    master: &mut Master,
    root: &Path,
    instance: &str,
    pop3_port: u16,
    pop3s_port: u16,
    imap_ports: Option<(u16, u16)>,
) -> Result<(), StartError> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut pop3_ok = false;
    loop {
        if let Some(status) = master.exited() {
            let text = format!(
                "{}{}",
                read_lossy(&root.join("dovecot.out")),
                read_lossy(&root.join("dovecot.log"))
            );
            let why = format!("dovecot exited with {status}:\n{text}");
            return Err(if text.contains("Address already in use") {
                StartError::PortInUse(why)
            } else {
                StartError::Failed(why)
            });
        }
        // Dovecot's own greeting (it names this instance) on the POP3 port
        // proves that the master bound both ports and that login + auth run.
        if !pop3_ok {
            pop3_ok = greets(pop3_port, instance);
        }
        if pop3_ok {
            let mut ports = vec![pop3s_port];
            ports.extend(imap_ports.map(|(a, b)| [a, b]).into_iter().flatten());
            let answers = |port: u16| {
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
            };
            if ports.into_iter().all(answers) {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(StartError::Failed(format!(
                "ports {pop3_port} (pop3) / {pop3s_port} (pop3s) did not answer within {START_TIMEOUT:?}"
            )));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn greets(port: u16, instance: &str) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    let ok = BufReader::new(&s).read_line(&mut line).is_ok()
        && line.starts_with("+OK")
        && line.contains(instance);
    let _ = s.write_all(b"QUIT\r\n");
    ok
}

/// Config, master output and log: everything useful when something failed.
fn diagnostics(root: &Path) -> String {
    let conf = root.join("dovecot.conf");
    format!(
        "--- {} ---\n{}--- dovecot -F output ---\n{}--- dovecot.log ---\n{}",
        conf.display(),
        read_lossy(&conf),
        read_lossy(&root.join("dovecot.out")),
        read_lossy(&root.join("dovecot.log"))
    )
}

/// The instance's dovecot.conf.
fn config(
    root: &Path,
    instance: &str,
    accounts: &Accounts,
    pki: &TestPki,
    (pop3_port, pop3s_port, imap_ports): (u16, u16, Option<(u16, u16)>),
    extra: &str,
) -> String {
    let r = root.display();
    // Dovecot chroots login processes and anvil, which needs root.
    let mut rootless = if accounts.root {
        String::new()
    } else {
        "\nservice pop3-login {\n  chroot =\n}\nservice anvil {\n  chroot =\n}\n".to_string()
    };
    let (protocols, imap_service) = match imap_ports {
        None => ("pop3", String::new()),
        Some((imap, imaps)) => {
            if !accounts.root {
                rootless.push_str("service imap-login {\n  chroot =\n}\n");
            }
            (
                "pop3 imap",
                format!(
                    "service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {imap}\n  }}\n  \
                     inet_listener imaps {{\n    address = 127.0.0.1\n    port = {imaps}\n    ssl = yes\n  }}\n}}\n"
                ),
            )
        }
    };
    let protocols = if dovecot_lmtp_available() {
        format!("{protocols} lmtp")
    } else {
        protocols.to_string()
    };
    format!(
        r#"# popfetch test instance, written by tests/support/dovecot.rs
instance_name = {instance}
base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/dovecot.log
protocols = {protocols}
listen = 127.0.0.1
login_greeting = Dovecot ready ({instance}).

default_internal_user = {internal}
default_login_user = {login}
default_internal_group = {group}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:{r}/mail/%u
mail_fsync = never
pop3_uidl_format = %08Xu%08Xv
pop3_logout_format = top=%t/%p retr=%r/%b del=%d/%m size=%s

disable_plaintext_auth = no
auth_mechanisms = plain login apop cram-md5
auth_verbose = yes
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {r}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {r}/users
}}

ssl = yes
ssl_cert = <{chain}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2

service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {pop3s_port}
    ssl = yes
  }}
}}
# No growing delays after failed logins: without this socket the auth
# process skips its penalty lookup (only works in a fresh base_dir).
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
{imap_service}
{rootless}
{extra}
"#,
        internal = accounts.internal_user,
        login = accounts.login_user,
        group = accounts.internal_group,
        chain = pki.chain_path.display(),
        key = pki.key_path.display(),
    )
}

/// Extra config for [`Dovecot::start_with`]: XOAUTH2 and OAUTHBEARER
/// beside the password mechanisms, the tokens checked by Dovecot's
/// `oauth2` passdb, which POSTs them to `introspection_url` (RFC 7662) and
/// wants `active: true` and the login's user as `username`. A token is
/// first tried as a password by the passwd-file passdb, fails there and
/// goes on (`result_failure = continue` is the default). The passdb's
/// args file is written into `dir`, which must outlive the server.
pub fn oauth2_passdb(dir: &Path, introspection_url: &str) -> String {
    let args = dir.join("dovecot-oauth2.conf.ext");
    // Read by the auth process, which may run as another user.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod oauth2 dir");
    write_file(
        &args,
        format!(
            "introspection_mode = post\nintrospection_url = {introspection_url}\n\
             force_introspection = yes\nusername_attribute = username\n\
             active_attribute = active\nactive_value = true\n"
        )
        .as_bytes(),
        0o644,
    );
    format!(
        "auth_mechanisms = plain login apop cram-md5 xoauth2 oauthbearer\n\
         passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {}\n}}\n",
        args.display()
    )
}

/// Four distinct free ports on 127.0.0.1 (held together while picked):
/// POP3, POP3S, IMAP, IMAPS.
fn free_ports() -> [u16; 4] {
    let held: Vec<TcpListener> = (0..4)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    let port = |i: usize| held[i].local_addr().unwrap().port();
    [port(0), port(1), port(2), port(3)]
}

/// passwd-file fields cannot hold these.
fn check_field(what: &str, value: &str) {
    assert!(
        !value.contains([':', '\n', '\r', '\0']),
        "Dovecot test {what} {value:?} must not contain ':', CR, LF or NUL"
    );
}

fn write_file(path: &Path, data: &[u8], mode: u32) {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(data)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The harness tested against the real thing, with a minimal POP3 client.
mod selftest {
    use super::*;
    use std::io::Read;

    use md5::{Digest, Md5};
    use rustls_pki_types::ServerName;

    /// A bare POP3 client over any stream; multi-line bodies come back raw
    /// (still dot-stuffed) so the wire format itself can be checked.
    struct Pop<S: Read + Write> {
        r: BufReader<S>,
        greeting: String,
    }

    impl<S: Read + Write> Pop<S> {
        fn new(stream: S) -> Pop<S> {
            let mut pop = Pop {
                r: BufReader::new(stream),
                greeting: String::new(),
            };
            pop.greeting = pop.line();
            assert!(
                pop.greeting.starts_with("+OK"),
                "greeting {:?}",
                pop.greeting
            );
            pop
        }

        fn line(&mut self) -> String {
            let mut line = String::new();
            self.r.read_line(&mut line).expect("read POP3 line");
            assert!(line.ends_with("\r\n"), "line without CRLF: {line:?}");
            line
        }

        fn send(&mut self, cmd: &str) {
            let s = self.r.get_mut();
            s.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
            s.flush().unwrap();
        }

        fn cmd(&mut self, cmd: &str) -> String {
            self.send(cmd);
            self.line()
        }

        fn ok(&mut self, cmd: &str) -> String {
            let reply = self.cmd(cmd);
            assert!(reply.starts_with("+OK"), "{cmd} -> {reply:?}");
            reply
        }

        /// Body of a multi-line reply, as on the wire, without the final ".\r\n".
        fn multi(&mut self, cmd: &str) -> Vec<u8> {
            self.ok(cmd);
            let mut body = Vec::new();
            loop {
                let mut line = Vec::new();
                self.r.read_until(b'\n', &mut line).unwrap();
                assert!(line.ends_with(b"\r\n"), "line without CRLF: {line:?}");
                if line == b".\r\n" {
                    return body;
                }
                body.extend_from_slice(&line);
            }
        }

        fn login(&mut self, user: &str, password: &str) {
            self.ok(&format!("USER {user}"));
            self.ok(&format!("PASS {password}"));
        }
    }

    fn connect(port: u16) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to Dovecot");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// A rustls client trusting only the file popfetch would get as `ca_file`.
    fn tls(
        dc: &Dovecot,
        tcp: TcpStream,
    ) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        let config = crate::support::certs::client_config_for_ca_file(&dc.pki().ca_path);
        let name = ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(config, name).unwrap();
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .expect("TLS handshake with Dovecot");
        }
        stream
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn hmac_md5(key: &[u8], msg: &[u8]) -> Vec<u8> {
        let mut k = [0u8; 64];
        k[..key.len()].copy_from_slice(key); // test keys are short
        let pad = |x: u8| k.iter().map(|b| b ^ x).collect::<Vec<u8>>();
        let inner = Md5::new()
            .chain_update(pad(0x36))
            .chain_update(msg)
            .finalize();
        Md5::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize()
            .to_vec()
    }

    fn b64(data: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    fn b64_decode(data: &str) -> Vec<u8> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .unwrap()
    }

    /// Stored with bare LF, with lines that need dot-stuffing.
    const MSG_LF: &[u8] = b"From: a@example.com\nSubject: dots\n\n.leading dot\n.\n..two\nend\n";
    /// Its size as LIST/STAT count it: CRLF line ends, not dot-stuffed.
    const MSG_LF_SIZE: usize = MSG_LF.len() + 7;
    /// What RETR sends before the terminating ".\r\n".
    const MSG_LF_WIRE: &[u8] =
        b"From: a@example.com\r\nSubject: dots\r\n\r\n..leading dot\r\n..\r\n...two\r\nend\r\n";
    const MSG_CRLF: &[u8] = b"Subject: crlf\r\n\r\nbody\r\n";

    #[test]
    fn dovecot_plain_pop3_session() {
        if !require_dovecot() {
            return;
        }
        let dc = Dovecot::start(&[("alice", "s3cret pass"), ("bob", "hunter2")]);
        assert_ne!(dc.pop3_port(), dc.pop3s_port());
        dc.add_message("alice", MSG_LF);
        dc.add_message("alice", MSG_CRLF);
        assert_eq!(dc.message_count("alice"), 2);
        assert_eq!(dc.message_count("bob"), 0);
        assert_eq!(
            dc.messages("alice"),
            vec![MSG_LF.to_vec(), MSG_CRLF.to_vec()]
        );

        let mut pop = Pop::new(connect(dc.pop3_port()));
        let capa = String::from_utf8(pop.multi("CAPA")).unwrap();
        for cap in ["STLS", "UIDL", "TOP", "USER", "SASL PLAIN LOGIN CRAM-MD5"] {
            assert!(capa.contains(cap), "{cap} missing from CAPA:\n{capa}");
        }
        pop.login("alice", "s3cret pass");
        let total = MSG_LF_SIZE + MSG_CRLF.len();
        assert_eq!(pop.ok("STAT"), format!("+OK 2 {total}\r\n"));
        let uidl = String::from_utf8(pop.multi("UIDL")).unwrap();
        let uidls: Vec<&str> = uidl
            .lines()
            .map(|l| l.split_whitespace().nth(1).unwrap())
            .collect();
        assert_eq!(uidls.len(), 2, "{uidl}");
        // %08Xu%08Xv: the UID (in add order), then UIDVALIDITY.
        assert!(
            uidls[0].starts_with("00000001") && uidls[0].len() == 16,
            "{uidl}"
        );
        assert!(
            uidls[1].starts_with("00000002") && uidls[1].len() == 16,
            "{uidl}"
        );
        // Byte-exact: CRLF line ends, dot-stuffed (the un-stuffed form is the message).
        assert_eq!(pop.multi("RETR 1"), MSG_LF_WIRE);
        assert_eq!(pop.multi("RETR 2"), MSG_CRLF);
        pop.ok("DELE 1");
        pop.ok("QUIT");
        // The expunge happens before the QUIT reply.
        assert_eq!(dc.message_count("alice"), 1);
        assert_eq!(dc.messages("alice"), vec![MSG_CRLF.to_vec()]);

        let sessions = dc.wait_for_sessions(1);
        let s = sessions.iter().find(|s| s.user == "alice").unwrap();
        assert!(s.quit(), "{s:?}");
        assert_eq!(
            (s.retr, s.deleted, s.messages, s.top),
            (2, 1, 2, 0),
            "{s:?}"
        );
        assert_eq!(s.size as usize, total);

        // A new session sees what is left, under the same UIDL.
        let mut pop = Pop::new(connect(dc.pop3_port()));
        pop.login("alice", "s3cret pass");
        let uidl = String::from_utf8(pop.multi("UIDL")).unwrap();
        assert_eq!(uidl, format!("1 {}\r\n", uidls[1]));
        pop.ok("QUIT");
    }

    #[test]
    fn dovecot_auth_mechanisms_and_failures() {
        if !require_dovecot() {
            return;
        }
        let dc = Dovecot::start(&[("carol", "pw-carol")]);

        // APOP: MD5 over the greeting's timestamp and the password.
        let mut pop = Pop::new(connect(dc.pop3_port()));
        let g = &pop.greeting;
        let stamp = &g[g.find('<').expect("APOP timestamp")..=g.rfind('>').unwrap()];
        let digest = hex(&Md5::digest(format!("{stamp}pw-carol").as_bytes()));
        pop.ok(&format!("APOP carol {digest}"));
        pop.ok("QUIT");

        // CRAM-MD5.
        let mut pop = Pop::new(connect(dc.pop3_port()));
        let challenge = pop.cmd("AUTH CRAM-MD5");
        assert!(challenge.starts_with("+ "), "{challenge:?}");
        let challenge = b64_decode(&challenge[2..]);
        let answer = format!("carol {}", hex(&hmac_md5(b"pw-carol", &challenge)));
        pop.ok(&b64(answer.as_bytes()));
        pop.ok("QUIT");

        // PLAIN with an initial response, and LOGIN.
        let mut pop = Pop::new(connect(dc.pop3_port()));
        pop.ok(&format!("AUTH PLAIN {}", b64(b"\0carol\0pw-carol")));
        pop.ok("QUIT");
        let mut pop = Pop::new(connect(dc.pop3_port()));
        assert!(pop.cmd("AUTH LOGIN").starts_with("+ "));
        assert!(pop.cmd(&b64(b"carol")).starts_with("+ "));
        pop.ok(&b64(b"pw-carol"));
        pop.ok("QUIT");

        // Wrong passwords fail quickly, also repeatedly (no auth penalty).
        for _ in 0..3 {
            let t = Instant::now();
            let mut pop = Pop::new(connect(dc.pop3_port()));
            pop.ok("USER carol");
            let reply = pop.cmd("PASS wrong");
            assert!(reply.starts_with("-ERR [AUTH]"), "{reply:?}");
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "slow failure: {:?}",
                t.elapsed()
            );
        }
        dc.wait_for_log("auth failed");
        assert_eq!(dc.wait_for_sessions(4).len(), 4);
    }

    #[test]
    fn dovecot_tls_pop3s_and_stls() {
        if !require_dovecot() {
            return;
        }
        let dc = Dovecot::start(&[("dave", "pw-dave")]);
        dc.add_message("dave", MSG_LF);

        // Implicit TLS.
        let mut pop = Pop::new(tls(&dc, connect(dc.pop3s_port())));
        pop.login("dave", "pw-dave");
        assert_eq!(pop.multi("RETR 1"), MSG_LF_WIRE);
        pop.ok("QUIT");

        // STLS upgrade, then CAPA no longer offers STLS.
        let mut pop = Pop::new(connect(dc.pop3_port()));
        pop.ok("STLS");
        assert!(pop.r.buffer().is_empty());
        let tcp = pop.r.into_inner();
        let mut pop = Pop {
            r: BufReader::new(tls(&dc, tcp)),
            greeting: String::new(),
        };
        let capa = String::from_utf8(pop.multi("CAPA")).unwrap();
        assert!(!capa.contains("STLS"), "{capa}");
        pop.login("dave", "pw-dave");
        assert_eq!(pop.ok("STAT"), format!("+OK 1 {MSG_LF_SIZE}\r\n"));
        pop.ok("QUIT");
    }

    #[test]
    fn dovecot_instances_run_side_by_side_and_clean_up() {
        if !require_dovecot() {
            return;
        }
        let a = Dovecot::start(&[("erin", "pw-a")]);
        let b = Dovecot::start(&[("erin", "pw-b")]);
        let ports = [a.pop3_port(), a.pop3s_port(), b.pop3_port(), b.pop3s_port()];
        for (i, p) in ports.iter().enumerate() {
            assert!(
                !ports[i + 1..].contains(p),
                "port {p} used twice: {ports:?}"
            );
        }
        assert_ne!(a.dir(), b.dir());
        a.add_message("erin", b"Subject: a\n\na\n");
        b.add_message("erin", b"Subject: b\n\nb\n");
        b.add_message("erin", b"Subject: b2\n\nb2\n");
        for (dc, pw, n) in [(&a, "pw-a", 1), (&b, "pw-b", 2)] {
            let mut pop = Pop::new(connect(dc.pop3_port()));
            pop.login("erin", pw);
            assert!(pop.ok("STAT").starts_with(&format!("+OK {n} ")));
            pop.ok("QUIT");
        }

        let (dir, pgid, port) = (a.dir().to_path_buf(), a.pid(), a.pop3_port());
        let t = Instant::now();
        drop(a);
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "slow stop: {:?}",
            t.elapsed()
        );
        assert!(!dir.exists(), "{} left behind", dir.display());
        // Killed processes may linger as zombies until init reaps them.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !live_in_group(pgid).is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let left = live_in_group(pgid);
        assert!(
            left.is_empty(),
            "Dovecot processes left in group {pgid}: {left:?}"
        );
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());

        // The other one is unaffected.
        let mut pop = Pop::new(connect(b.pop3_port()));
        pop.login("erin", "pw-b");
        pop.ok("QUIT");
    }

    /// Processes (not zombies) in process group `pgid`, from /proc.
    fn live_in_group(pgid: u32) -> Vec<String> {
        let mut live = Vec::new();
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid pgrp ...
            let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
                continue;
            };
            let fields: Vec<&str> = after.split_whitespace().collect();
            if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" {
                live.push(stat[..stat.rfind(')').unwrap() + 1].to_string());
            }
        }
        live
    }

    #[test]
    fn dovecot_session_log_parsing() {
        let line = "Nov 29 13:50:05 pop3(alice)<7924><iIoNkmph1ql/AAAB>: Info: Disconnected: \
                    Logged out top=1/20 retr=2/59 del=1/3 size=43";
        let s = PopSession::parse(line).unwrap();
        assert_eq!(
            s,
            PopSession {
                user: "alice".into(),
                reason: "Logged out".into(),
                top: 1,
                top_bytes: 20,
                retr: 2,
                retr_bytes: 59,
                deleted: 1,
                messages: 3,
                size: 43,
            }
        );
        assert!(PopSession::parse("pop3-login: Info: Login: user=<alice>").is_none());
    }
}
