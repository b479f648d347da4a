//! IMAP IDLE (RFC 2177) for `watch`: one connection per folder that waits,
//! logged in and EXAMINEd (read-only: waiting changes no flag), for the
//! server to say `* n EXISTS`; then DONE, and the caller is told to sync
//! the account now (on a connection of its own, while this one goes back
//! to waiting). The IDLE is renewed before the 30 minutes after which a
//! server may drop it (RFC 2177 §3), or every `interval` when that is
//! shorter (NAT boxes forget quieter connections). Waiting costs nothing:
//! the thread sleeps in one `peek` on the socket with a timeout to the
//! renewal.
//!
//! Any failure ends the IDLE and says why; it is tried again later and
//! later (the interval goes on meanwhile, so no mail waits longer than
//! it would without IDLE). A server that does not offer IDLE is told once.

use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::codec::Head;
use super::Session;
use crate::config::{Account, Protocol};
use crate::error::{Error, Result};
use crate::net::Stream;
use crate::source::connect::{self, ConnectOptions};

/// Under the 30 minutes a server must keep an IDLE open (RFC 2177 §3).
pub const RENEW: Duration = Duration::from_secs(29 * 60);

/// The longest wait before IDLE is tried again after failures.
const RETRY_CAP: Duration = Duration::from_secs(3600);

/// What an IDLE connection tells its owner.
pub trait Listener: Send + Sync {
    /// New mail in `folder`: sync the account now.
    fn new_mail(&self, account: &str, folder: &str);
    /// Something the user should read (IDLE failed, not offered, back).
    fn note(&self, account: &str, folder: &str, text: String);
}

/// The folders of `account` to wait on with IDLE: none unless it is an
/// IMAP account with `idle = true`.
pub fn folders(account: &Account) -> Vec<String> {
    match (&account.imap, account.protocol) {
        (Some(imap), Protocol::Imap) if imap.idle => imap.folders.clone(),
        _ => Vec::new(),
    }
}

/// Why an IDLE ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// `* n EXISTS` with more messages than before.
    NewMail,
    /// Time to renew.
    Renew,
    /// [`Idler::stop`] closed our side.
    Stopped,
}

impl Session<Stream> {
    /// One IDLE on the selected folder, up to `renew`. `exists` is the
    /// message count last known; a count above it is new mail. `stop` is
    /// checked when the socket is closed under us. DONE is sent, and the
    /// command read to its end, before it returns (except when stopped:
    /// then the read side is gone, and DONE is only written). `timeout`
    /// is the account's, for every read but the wait itself.
    pub fn idle(&mut self, renew: Duration, timeout: Duration, stop: &AtomicBool) -> Result<Ended> {
        let what = "IDLE";
        let known = self.conn.exists;
        let tag = match self.conn.send(&[super::Part::Text("IDLE".into())], what)? {
            Ok(tag) => tag,
            Err(s) => {
                return Err(super::refused(
                    &self.conn.host,
                    what,
                    super::Phase::Transaction,
                    &s,
                ))
            }
        };
        loop {
            match self.conn.head(what)? {
                Head::Continue(_) => break,
                Head::Tagged(_, s) => {
                    return Err(super::refused(
                        &self.conn.host,
                        what,
                        super::Phase::Transaction,
                        &s,
                    ))
                }
                head => {
                    if !self.conn.common_untagged(&head, what)? {
                        self.conn.skip_response(what)?;
                    }
                }
            }
        }
        let tcp = self
            .conn
            .reader
            .get_ref()
            .tcp()
            .try_clone()
            .map_err(|e| self.conn.net_error(what, e))?;
        let deadline = Instant::now() + renew;
        let ended = loop {
            if self.conn.exists > known {
                break Ended::NewMail;
            }
            if self.conn.reader.buffer().is_empty() && self.conn.reader.get_ref().read_ahead() == 0
            {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break Ended::Renew;
                }
                let _ = tcp.set_read_timeout(Some(left));
                let waited = tcp.peek(&mut [0u8; 1]);
                let _ = tcp.set_read_timeout(Some(timeout));
                match waited {
                    Ok(0) if stop.load(Ordering::SeqCst) => break Ended::Stopped,
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        break Ended::Renew
                    }
                    Err(e) => return Err(self.conn.net_error("waiting in IDLE", e)),
                }
            }
            let head = self.conn.head("waiting in IDLE")?;
            match head {
                Head::Tagged(_, s) => {
                    // The server ended the IDLE itself: begin again.
                    if s.kind == super::StatusKind::Ok {
                        return Ok(Ended::Renew);
                    }
                    return Err(super::refused(
                        &self.conn.host,
                        what,
                        super::Phase::Transaction,
                        &s,
                    ));
                }
                Head::Status(s) if s.kind == super::StatusKind::Bye => {
                    return Err(self
                        .conn
                        .net_error("waiting in IDLE", io::ErrorKind::UnexpectedEof.into()));
                }
                head => {
                    if !self.conn.common_untagged(&head, what)? {
                        self.conn.skip_response(what)?;
                    }
                }
            }
        };
        if let Some(label) = &self.conn.trace {
            eprintln!("{label} > DONE");
        }
        self.conn.out.extend_from_slice(b"DONE\r\n");
        if ended == Ended::Stopped {
            // Our read side is closed: say goodbye without waiting.
            let tag = self.conn.tag();
            if let Some(label) = &self.conn.trace {
                eprintln!("{label} > {tag} LOGOUT");
            }
            self.conn
                .out
                .extend_from_slice(format!("{tag} LOGOUT\r\n").as_bytes());
            let _ = self.conn.flush("LOGOUT");
            return Ok(ended);
        }
        self.conn.flush(what)?;
        let status = self.conn.finish(&tag, what, &mut |_, _| Ok(false))?;
        if status.kind != super::StatusKind::Ok {
            return Err(super::refused(
                &self.conn.host,
                what,
                super::Phase::Transaction,
                &status,
            ));
        }
        Ok(ended)
    }
}

/// An IDLE connection on a thread of its own.
pub struct Idler {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// The account as it was started, to tell a changed one on reload.
    account: Arc<Account>,
}

struct Shared {
    stop: AtomicBool,
    /// The socket of the IDLE in progress, to close it under the thread.
    socket: Mutex<Option<TcpStream>>,
}

impl Idler {
    pub fn start(
        account: Arc<Account>,
        folder: String,
        listener: Arc<dyn Listener>,
        opts: ConnectOptions,
    ) -> Idler {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            socket: Mutex::new(None),
        });
        let thread = {
            let shared = shared.clone();
            let account = account.clone();
            std::thread::spawn(move || run(&account, &folder, &*listener, &opts, &shared))
        };
        Idler {
            shared,
            thread: Some(thread),
            account,
        }
    }

    /// Whether this IDLE was started for `account` as it is now.
    pub fn same(&self, account: &Account) -> bool {
        format!("{:?}", self.account) == format!("{account:?}")
    }

    /// Ends the IDLE: the socket's read side is closed under the waiting
    /// thread, which writes DONE and LOGOUT and ends. Does not wait for a
    /// thread still connecting (its `timeout` bounds that; it sees the
    /// flag when it is through).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Idler {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(socket) = &*self.shared.socket.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = socket.shutdown(Shutdown::Read);
        }
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
        }
    }
}

/// The thread: connect, log in, EXAMINE, IDLE until stopped; after a
/// failure, again after a while.
fn run(
    account: &Account,
    folder: &str,
    listener: &dyn Listener,
    opts: &ConnectOptions,
    shared: &Shared,
) {
    let renew = RENEW.min(account.interval);
    let mut failures: u32 = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        match session(
            account,
            folder,
            listener,
            opts,
            shared,
            renew,
            &mut failures,
        ) {
            Ok(Outcome::Stopped) => return,
            Ok(Outcome::NotOffered) => {
                listener.note(
                    &account.name,
                    folder,
                    format!(
                        "{} does not offer IDLE; syncing every interval instead",
                        account.host
                    ),
                );
                return;
            }
            // Closed under it by stop(): nothing to report.
            Err(_) if shared.stop.load(Ordering::SeqCst) => return,
            Err(e) => {
                failures += 1;
                // A minute (or the interval, if shorter), doubling.
                let first = Duration::from_secs(60).min(account.interval);
                let wait = first
                    .saturating_mul(1 << failures.saturating_sub(1).min(16))
                    .min(RETRY_CAP);
                listener.note(
                    &account.name,
                    folder,
                    format!(
                        "{}; syncing every interval meanwhile, IDLE again in {}s",
                        crate::ui::report::error_chain(&e),
                        wait.as_secs()
                    ),
                );
                *shared.socket.lock().unwrap_or_else(|e| e.into_inner()) = None;
                // Woken early by stop().
                std::thread::park_timeout(wait);
            }
        }
    }
}

/// How an IDLE session ended, other than by an error.
enum Outcome {
    Stopped,
    NotOffered,
}

fn session(
    account: &Account,
    folder: &str,
    listener: &dyn Listener,
    opts: &ConnectOptions,
    shared: &Shared,
    renew: Duration,
    failures: &mut u32,
) -> Result<Outcome> {
    let mut session = connect::open_imap(account, opts, &|| {})?.session;
    if !session.capabilities().has("IDLE") {
        let _ = session.finish();
        return Ok(Outcome::NotOffered);
    }
    session.select(folder, true)?;
    {
        let mut slot = shared.socket.lock().unwrap_or_else(|e| e.into_inner());
        let tcp = session.conn.reader.get_ref().tcp();
        *slot = Some(
            tcp.try_clone()
                .map_err(|e| Error::local_io("cannot watch the IDLE socket", e))?,
        );
    }
    if *failures > 0 {
        listener.note(&account.name, folder, "IDLE is back".to_string());
        *failures = 0;
    }
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            let _ = session.finish();
            return Ok(Outcome::Stopped);
        }
        match session.idle(renew, account.timeout, &shared.stop)? {
            Ended::NewMail => listener.new_mail(&account.name, folder),
            Ended::Renew => {}
            Ended::Stopped => return Ok(Outcome::Stopped),
        }
    }
}
