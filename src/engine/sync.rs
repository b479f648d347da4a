//! One account's sync: lock the mailbox, recover an interrupted run, log
//! in, plan, fetch in batches, commit each batch durably, delete what the
//! policy says, QUIT, prune.
//!
//! Order is everything here (SPEC §4): a message is recorded as seen only
//! after its batch is durable in the target, and DELE is sent only for
//! messages whose record is committed. A session that ends without a clean
//! QUIT deletes nothing on the server, and nothing here assumes it did: the
//! records stay, and the next run deletes what is still there.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::{Account, Target};
use crate::engine::filter;
use crate::engine::plan::{self, Policy};
use crate::error::{Error, Result};
use crate::source::connect::{self, ConnectOptions};
use crate::source::pop3::{Listed, Retrieved, Session};
use crate::state::store::{MailboxLock, PendingEntry, Store};
use crate::target::maildir::{Maildir, Recovered};
use crate::target::{self, mbox, Delivery, MessageInfo};
use crate::ui::report::{self, Progress, Verbose};
use sha2::{Digest, Sha256};

/// A batch is committed when it reaches any of these.
const BATCH_MESSAGES: usize = 1024;
const BATCH_BYTES: u64 = 32 * 1024 * 1024;
const BATCH_TIME: Duration = Duration::from_secs(2);

/// What `popfetch sync` was asked to do, beyond the account's settings.
#[derive(Clone, Debug, Default)]
pub struct SyncOptions {
    /// `--keep` / `--delete`.
    pub keep_override: Option<bool>,
    /// `--all`: fetch messages already seen too.
    pub all: bool,
    /// `--dry-run`: plan and report, change nothing.
    pub dry_run: bool,
    pub connect: ConnectOptions,
}

/// The outcome of one account's sync.
#[derive(Debug, Default)]
pub struct SyncReport {
    pub account: String,
    /// Messages delivered.
    pub new: u64,
    pub bytes: u64,
    /// Messages deleted on the server (confirmed by QUIT).
    pub deleted: u64,
    /// Messages left on the server because of a problem with them.
    pub skipped: u64,
    /// Messages the filter left on the server (exit 2): `check` still
    /// counts them as new.
    pub left: u64,
    pub warnings: Vec<String>,
    /// With `--dry-run`: what would be done, one entry per message, in
    /// server order.
    pub planned: Vec<Planned>,
    pub dry_run: bool,
    /// Ctrl-C stopped the fetch: `new` says what was delivered and recorded.
    pub stopped: bool,
    pub error: Option<Error>,
}

/// What `--dry-run` says would happen to one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub action: Action,
    pub number: u32,
    /// As the server counts it (LIST).
    pub size: u64,
    /// `-` when the server gave none.
    pub uidl: String,
    /// Why it is deleted unread or left on the server.
    pub reason: Option<&'static str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Fetch,
    FetchAndDelete,
    /// Delete without downloading (fetched before, or the filter said so).
    Delete,
    /// Leave on the server untouched.
    Leave,
}

impl Action {
    /// The words of the text plan.
    pub fn words(self) -> &'static str {
        match self {
            Action::Fetch => "fetch",
            Action::FetchAndDelete => "fetch and delete",
            Action::Delete => "delete",
            Action::Leave => "leave",
        }
    }

    /// The `action` of a `planned` item in `--json`.
    pub fn json_name(self) -> &'static str {
        match self {
            Action::Fetch => "fetch",
            Action::FetchAndDelete => "fetch_and_delete",
            Action::Delete => "delete",
            Action::Leave => "leave",
        }
    }
}

/// Syncs one account. Never panics on a server's behaviour; every failure
/// ends up in the report's `error`.
pub fn sync_account(
    account: &Account,
    state_dir: &Path,
    opts: &SyncOptions,
    progress: &Progress,
) -> SyncReport {
    let mut report = SyncReport {
        account: account.name.clone(),
        ..SyncReport::default()
    };
    if let Err(e) = run(account, state_dir, opts, progress, &mut report) {
        report.error = Some(e);
    }
    progress.finish();
    report
}

fn run(
    account: &Account,
    state_dir: &Path,
    opts: &SyncOptions,
    progress: &Progress,
    report: &mut SyncReport,
) -> Result<()> {
    if account.protocol == crate::config::Protocol::Pop2 {
        return crate::source::pop2::sync(account, state_dir, opts, progress, report);
    }
    if opts.dry_run {
        report.dry_run = true;
        return dry_run(account, state_dir, opts, report);
    }
    let identity = account.identity();
    let _lock = MailboxLock::acquire(state_dir, &identity)?;
    let mut store = Store::open(state_dir)?;
    let mailbox = store.mailbox(&identity)?;
    let mut target = target::open(account, state_dir)?;
    report
        .warnings
        .extend(recover(&mut store, mailbox, &account.target)?);

    // The seen set is read while the server handles the login: on a big
    // mailbox each takes a while, and neither needs the other.
    progress.phase(&format!("connecting to {}:{}", account.host, account.port));
    let (opened, seen) = std::thread::scope(|scope| {
        // A unique borrow moves to the loader (a connection is Send, not
        // Sync); the store is back in our hands after the join.
        let store = &mut store;
        let loading = scope.spawn(move || store.seen(mailbox));
        let opened =
            connect::open_telling(account, &opts.connect, &|| progress.phase("logging in"));
        let seen = loading
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (opened, seen)
    });
    let opened = opened?;
    let seen = seen?;
    report.warnings.extend(opened.warnings);
    let mut session = opened.session;
    let keep = opts.keep_override.unwrap_or(account.keep);
    progress.phase("listing");
    let (listing, mut plan) = plan_session(&mut session, account, opts, &seen, keep, report)?;
    let verdicts = filter::apply(&mut session, account, &mut plan, progress, report)?;
    let mut to_delete: Vec<u32> = plan.delete_seen.iter().map(|(n, _)| *n).collect();
    if !verdicts.delete.is_empty() {
        // Deleted unread: recorded first, so the DELE follows a committed
        // record like any other (SPEC §4.2).
        let uidls: Vec<&str> = verdicts.delete.iter().map(|(_, u)| u.as_str()).collect();
        store.commit_delivered(mailbox, &uidls, &[])?;
        to_delete.extend(verdicts.delete.iter().map(|(n, _)| *n));
    }

    let verbose = &opts.connect.verbose;
    verbose.say(|| plan_line(account, listing.len(), &plan, to_delete.len(), keep));

    // LIST sizes are the server's word: max_size holds while a message
    // streams, too (an oversized one is reported below, in fetch).
    session.limit_retr(account.max_size);
    if crate::ui::interrupt::requested() {
        report.stopped = true;
        session.quit()?;
        return Ok(());
    }
    progress.start(plan.fetch.len() as u64, plan.fetch_bytes());
    let fetched = fetch(
        &mut session,
        target.as_mut(),
        &mut store,
        mailbox,
        &plan.fetch,
        &seen,
        progress,
        verbose,
        report,
    );
    // Messages recorded as seen in this run may be deleted even if a later
    // one failed, provided the connection is still usable.
    if report.stopped {
        if let Err(f) = &fetched {
            if f.session_usable && f.error.is_stop() {
                // Ctrl-C: what was delivered is committed and counted; no
                // DELE, the user wants out (the next run deletes what the
                // policy says), and QUIT ends the session cleanly.
                session.quit()?;
                return Ok(());
            }
        }
    }
    let (delivered, fetch_error) = match fetched {
        Ok(d) => (d, None),
        Err(f) => {
            if !f.session_usable {
                return Err(f.error);
            }
            // A local failure (disk full, an MDA saying "later"…): the
            // client read every reply, so still delete what was delivered
            // and QUIT cleanly, then report the failure.
            (f.recorded, Some(f.error))
        }
    };
    if !keep {
        to_delete.extend(delivered.iter().copied());
    }
    if !to_delete.is_empty() {
        verbose.say(|| {
            format!(
                "{}: deleting {} on the server",
                account.name,
                messages(to_delete.len())
            )
        });
    }
    let marked = mark_deletions(&mut session, &to_delete, report)?;
    session.quit()?;
    // QUIT's +OK is the server's word that the deletions happened.
    report.deleted = marked;
    verbose.say(|| format!("{}: logged out", account.name));
    if let Some(e) = fetch_error {
        return Err(e);
    }
    // Without UIDL and TOP the listing names no message, so a record is
    // known to be of a message gone only when every deletion happened.
    let content_keyed = listing.iter().all(|e| e.uidl.is_none());
    if !content_keyed || marked == to_delete.len() as u64 {
        store.prune_known(mailbox, &seen, &plan::listed_uidls(&listing))?;
    }
    Ok(())
}

/// `-v`: what the session will do, once the listing is planned.
fn plan_line(
    account: &Account,
    listed: usize,
    plan: &plan::Plan,
    to_delete: usize,
    keep: bool,
) -> String {
    let mut line = format!(
        "{}: {} on the server, {} to fetch ({})",
        account.name,
        messages(listed),
        plan.fetch.len(),
        report::human_bytes(plan.fetch_bytes()),
    );
    let delete = to_delete + if keep { 0 } else { plan.fetch.len() };
    if delete > 0 {
        line.push_str(&format!(", {delete} to delete"));
    }
    if !plan.skip.is_empty() {
        line.push_str(&format!(", {} left there", plan.skip.len()));
    }
    line
}

/// "1 message", "2 messages".
fn messages(n: usize) -> String {
    format!("{n} message{}", if n == 1 { "" } else { "s" })
}

/// `-v`: one delivered message and where it went.
pub(crate) fn delivered_line(
    account: &str,
    number: impl std::fmt::Display,
    size: u64,
    key: &str,
    to: &str,
) -> String {
    format!("{account}: message {number} ({size} bytes, UIDL {key}) -> {to}")
}

/// Lists the mailbox and plans the session.
fn plan_session(
    session: &mut Session,
    account: &Account,
    opts: &SyncOptions,
    seen: &HashMap<String, i64>,
    keep: bool,
    report: &mut SyncReport,
) -> Result<(Vec<Listed>, plan::Plan)> {
    let mut listing = session.listing()?;
    let content_keyed = identify_without_uidl(session, &mut listing, keep)?;
    let mut held = Vec::new();
    if !content_keyed {
        let shared = tell_shared_uidls_apart(session, &mut listing, seen)?;
        report.warnings.extend(shared.warning);
        held = shared.held;
    }
    let mut plan = if content_keyed {
        // Neither UIDL nor TOP: every message is fetched and deleted.
        plan::Plan {
            fetch: listing
                .iter()
                .map(|e| plan::Fetch {
                    number: e.number,
                    uidl: String::new(),
                    size: e.size,
                })
                .collect(),
            ..plan::Plan::default()
        }
    } else {
        plan::plan(
            &listing,
            seen,
            Policy {
                keep,
                refetch_seen: opts.all,
                keep_days: if keep { account.keep_days } else { None },
                max_size: account.max_size,
                now: crate::state::store::now_secs(),
            },
        )
    };
    for (number, reason) in held {
        plan.hold(number, reason);
    }
    // A dry run lists these in its plan instead.
    for (number, reason) in plan.skip.iter().filter(|_| !opts.dry_run) {
        report.warnings.push(format!(
            "{}: message {number} left on the server: {reason}",
            account.name
        ));
    }
    report.skipped = plan.skip.len() as u64;
    Ok((listing, plan))
}

/// `--dry-run`: connect, plan and say what would happen; no RETR, no DELE,
/// nothing written (not even the state directory).
fn dry_run(
    account: &Account,
    state_dir: &Path,
    opts: &SyncOptions,
    report: &mut SyncReport,
) -> Result<()> {
    let seen = if state_dir.join(Store::FILE_NAME).exists() {
        let store = Store::open(state_dir)?;
        match store.find_mailbox(&account.identity())? {
            Some(mb) => store.seen(mb)?,
            None => HashMap::new(),
        }
    } else {
        HashMap::new()
    };
    let opened = connect::open(account, &opts.connect)?;
    report.warnings.extend(opened.warnings);
    let mut session = opened.session;
    let keep = opts.keep_override.unwrap_or(account.keep);
    let (listing, mut plan) = plan_session(&mut session, account, opts, &seen, keep, report)?;
    let verdicts = filter::apply(
        &mut session,
        account,
        &mut plan,
        &Progress::hidden(),
        report,
    )?;
    let listed: HashMap<u32, &Listed> = listing.iter().map(|e| (e.number, e)).collect();
    let item = |action, number: u32, reason| {
        let entry = listed.get(&number);
        let key = entry.and_then(|e| e.uidl.as_deref()).unwrap_or("-");
        Planned {
            action,
            number,
            size: entry.map_or(0, |e| e.size),
            // A told-apart key shows as the UIDL the server gave.
            uidl: plan::told_apart_parts(key)
                .map_or(key, |(uidl, _)| uidl)
                .to_string(),
            reason,
        }
    };
    let fetch_action = if keep {
        Action::Fetch
    } else {
        Action::FetchAndDelete
    };
    let planned = &mut report.planned;
    planned.extend(
        plan.fetch
            .iter()
            .map(|f| item(fetch_action, f.number, None)),
    );
    planned.extend(
        plan.delete_seen
            .iter()
            .map(|(n, _)| item(Action::Delete, *n, Some("fetched before"))),
    );
    planned.extend(
        verdicts
            .delete
            .iter()
            .map(|(n, _)| item(Action::Delete, *n, Some("by the filter"))),
    );
    planned.extend(
        plan.skip
            .iter()
            .map(|(n, why)| item(Action::Leave, *n, Some(why.label()))),
    );
    planned.extend(
        verdicts
            .left
            .iter()
            .map(|(n, _)| item(Action::Leave, *n, Some("by the filter"))),
    );
    planned.sort_by_key(|p| p.number);
    report.new = plan.fetch.len() as u64;
    report.bytes = plan.fetch_bytes();
    report.deleted = (plan.delete_seen.len() + verdicts.delete.len()) as u64
        + if keep { 0 } else { plan.fetch.len() as u64 };
    session.quit()?;
    Ok(())
}

/// Sends DELE for `to_delete`; returns how many the server accepted.
fn mark_deletions(
    session: &mut Session,
    to_delete: &[u32],
    report: &mut SyncReport,
) -> Result<u64> {
    if to_delete.is_empty() {
        return Ok(0);
    }
    let accepted = session.dele_many(to_delete)?;
    let refused = accepted.iter().filter(|ok| !**ok).count();
    if refused > 0 {
        report.warnings.push(format!(
            "{}: the server refused to delete {refused} message(s); they stay on the server",
            report.account
        ));
    }
    Ok((accepted.len() - refused) as u64)
}

/// Resolves journal entries left by an interrupted run. Returns warnings
/// about what recovery had to leave alone.
pub(crate) fn recover(store: &mut Store, mailbox: i64, target: &Target) -> Result<Vec<String>> {
    let pending = store.pending(mailbox)?;
    // Interrupted mbox appends are named by where they lie in the mbox;
    // the rest are Maildir files.
    let (appends, pending): (Vec<_>, Vec<_>) = pending
        .into_iter()
        .partition(|p| mbox::Segment::parse(&p.name).is_some());
    let to = match target {
        Target::Mbox(path) => Some(path.as_path()),
        _ => None,
    };
    let warnings = mbox::recover_journal(store, mailbox, appends, to)?;
    if !pending.is_empty() {
        resolve_journal(store, mailbox, target, pending)?;
    }
    // Files an interrupted run left in tmp/ (never journaled, never seen).
    if let Target::Maildir(root) = target {
        Maildir::open(root)?.clean_tmp();
    }
    Ok(warnings)
}

fn resolve_journal(
    store: &mut Store,
    mailbox: i64,
    target: &Target,
    pending: Vec<PendingEntry>,
) -> Result<()> {
    let mut by_folder: HashMap<std::path::PathBuf, Vec<PendingEntry>> = HashMap::new();
    for p in pending {
        by_folder.entry(p.folder.clone()).or_default().push(p);
    }
    for (folder, entries) in by_folder {
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        let current = matches!(target, Target::Maildir(p) if *p == folder);
        if !current && !folder.join("new").is_dir() {
            // The folder is gone: those messages are not there, fetch again.
            store.drop_pending(mailbox, &names)?;
            continue;
        }
        let maildir = Maildir::open(&folder)?;
        let outcome = maildir.recover(&entries)?;
        let delivered: Vec<&str> = outcome
            .iter()
            .filter(|(_, r)| *r == Recovered::Delivered)
            .map(|(e, _)| e.uidl.as_str())
            .collect();
        store.commit_delivered(mailbox, &delivered, &names)?;
    }
    Ok(())
}

/// The error [`fetch`] stops with on Ctrl-C (never shown: the report says
/// what was kept).
const STOPPED: &str = "stopped by Ctrl-C";

/// Why [`fetch`] stopped early.
struct FetchFailure {
    /// Numbers of the messages delivered and recorded before it.
    recorded: Vec<u32>,
    error: Error,
    /// The failure was ours (delivery or commit), reported after every
    /// pending reply was read: the session can go on to DELE and QUIT.
    session_usable: bool,
}

/// Fetches `wanted`, committing in batches. Returns the numbers of the
/// messages delivered and recorded, or why it stopped.
///
/// A batch is committed from inside the RETR loop, so the pipeline keeps
/// running: the server goes on sending into the socket buffers while the
/// batch is made durable. (DELE is sent after all of this, before QUIT,
/// which is when deletion takes effect anyway.)
///
/// `seen` is the seen state at the start of the session: a message keyed
/// by its content's digest that is already there is not delivered again.
#[allow(clippy::too_many_arguments)] // the session's parts, each used once
fn fetch(
    session: &mut Session,
    target: &mut dyn Delivery,
    store: &mut Store,
    mailbox: i64,
    wanted: &[plan::Fetch],
    seen: &HashMap<String, i64>,
    progress: &Progress,
    verbose: &Verbose,
    report: &mut SyncReport,
) -> std::result::Result<Vec<u32>, FetchFailure> {
    let batch_limit = target.batch_limit().min(BATCH_MESSAGES);
    let mut batch = Batch::default();
    let mut commit_failed = false;
    let numbers: Vec<u32> = wanted.iter().map(|f| f.number).collect();
    let result = session.retr_many(&numbers, &mut |i, reply| {
        let item = &wanted[i];
        if crate::ui::interrupt::requested() {
            // Ctrl-C: stop between messages, like a local failure, so what
            // was delivered is committed below. The replies already asked
            // for are read first (the session must stay in step to QUIT).
            report.stopped = true;
            progress.phase("stopping (Ctrl-C again to quit at once)");
            return Err(Error::stopped(STOPPED));
        }
        match reply {
            Retrieved::Body(body) => {
                let mut counting = CountingReader {
                    inner: &mut *body,
                    read: 0,
                    cap: item.size,
                    progress,
                };
                let delivered = if item.uidl.is_empty() {
                    // No identity from the server: the content's digest,
                    // known only once the message was read to the end.
                    let mut hashing = HashingReader::new(&mut counting);
                    target
                        .deliver(&MessageInfo { uidl: "" }, &mut hashing)
                        .map(|size| (size, format!("body:{}", hashing.hex())))
                } else {
                    target
                        .deliver(&MessageInfo { uidl: &item.uidl }, &mut counting)
                        .map(|size| (size, item.uidl.clone()))
                };
                match delivered {
                    Ok((_written, key)) => {
                        // Sizes reported are the server's (see Body::octets);
                        // the bar counts by LIST size, the unit of its total.
                        let size = body.octets();
                        progress.advance(item.size);
                        if item.uidl.is_empty() && seen.contains_key(&key) && target.discard_last()
                        {
                            // Delivered and recorded by a session that ended
                            // before its QUIT: taken back before anyone saw
                            // it, and deleted now on the strength of that
                            // record.
                            batch.recorded.push(item.number);
                        } else {
                            if item.uidl.is_empty() {
                                target.set_last_uidl(&key);
                            }
                            batch.add(i, key, size);
                        }
                    }
                    // The target dropped what it had of it (Delivery's
                    // contract); the rest is skipped and the session goes on.
                    Err(_) if body.over_limit() => {
                        report.warnings.push(format!(
                            "{}: message {} grew past max_size while it was received \
                             (the server announced {}); it was not delivered and stays on the server",
                            report.account, item.number, crate::ui::report::human_bytes(item.size)
                        ));
                        report.skipped += 1;
                    }
                    // Whatever the target says, it is our side that failed:
                    // the session is still in step.
                    Err(e) => return Err(e.local()),
                }
            }
            Retrieved::Refused(reason) => {
                report.warnings.push(format!(
                    "{}: the server would not send message {} ({reason}); it stays on the server",
                    report.account, item.number
                ));
                report.skipped += 1;
            }
        }
        let full = batch.keys.len() >= batch_limit
            || batch.bytes >= BATCH_BYTES
            || batch.started.elapsed() >= BATCH_TIME;
        if full {
            batch
                .commit(target, store, mailbox, wanted, verbose, report)
                .map_err(|e| {
                    commit_failed = true;
                    e.local()
                })?;
        }
        Ok(())
    });
    // retr_many returns the callback's own error only after reading every
    // pending reply (marked local or stopped above); a network failure comes
    // back as itself.
    let ours_stopped_it = |e: &Error| e.is_local();
    if !commit_failed {
        // Commit whatever was fully delivered, even when the loop stopped on
        // an error: those messages are complete on our side.
        if let Err(error) = batch.commit(target, store, mailbox, wanted, verbose, report) {
            target.rollback();
            let session_usable = match &result {
                Ok(()) => true,
                Err(e) => ours_stopped_it(e),
            };
            return Err(FetchFailure {
                recorded: batch.recorded,
                error,
                session_usable,
            });
        }
    } else {
        target.rollback();
    }
    match result {
        Ok(()) => Ok(batch.recorded),
        Err(error) => Err(FetchFailure {
            recorded: batch.recorded,
            session_usable: ours_stopped_it(&error),
            error,
        }),
    }
}

/// Messages delivered since the last commit, and what was recorded so far.
struct Batch {
    /// (index into `wanted`, the key its seen record gets)
    keys: Vec<(usize, String)>,
    bytes: u64,
    started: Instant,
    /// Numbers of the messages delivered and recorded.
    recorded: Vec<u32>,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            keys: Vec::new(),
            bytes: 0,
            started: Instant::now(),
            recorded: Vec::new(),
        }
    }
}

impl Batch {
    fn add(&mut self, index: usize, key: String, size: u64) {
        self.keys.push((index, key));
        self.bytes += size;
    }

    /// Makes the batch durable and recorded, then starts a new one.
    fn commit(
        &mut self,
        target: &mut dyn Delivery,
        store: &mut Store,
        mailbox: i64,
        wanted: &[plan::Fetch],
        verbose: &Verbose,
        report: &mut SyncReport,
    ) -> Result<()> {
        let names = commit_batch(target, store, mailbox, &self.keys)?;
        if verbose.is_on() {
            // One name per message, in order, from a target that names them.
            let named = names.len() == self.keys.len();
            for (j, (i, key)) in self.keys.iter().enumerate() {
                let to = target.destination(named.then(|| names[j].as_str()));
                let f = &wanted[*i];
                verbose.say(|| delivered_line(&report.account, f.number, f.size, key, &to));
            }
        }
        for (i, _) in self.keys.drain(..) {
            self.recorded.push(wanted[i].number);
            report.new += 1;
        }
        report.bytes += self.bytes;
        self.bytes = 0;
        self.started = Instant::now();
        Ok(())
    }
}

fn commit_batch(
    target: &mut dyn Delivery,
    store: &mut Store,
    mailbox: i64,
    batch: &[(usize, String)],
) -> Result<Vec<String>> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let names = target.commit(&mut |entries| store.journal(mailbox, entries))?;
    let keys: Vec<&str> = batch.iter().map(|(_, k)| k.as_str()).collect();
    let named: Vec<&str> = names.iter().map(String::as_str).collect();
    store.commit_delivered(mailbox, &keys, &named)?;
    Ok(names)
}

/// SPEC §4.5: when the server has no UIDL, a message's identity is a
/// digest of its header block (`TOP n 0`). Returns `true` when the server
/// has neither UIDL nor TOP, which is only usable with `keep = false`
/// (every message is then fetched, keyed by a digest of its content, and
/// deleted).
pub(crate) fn identify_without_uidl(
    session: &mut Session,
    listing: &mut [Listed],
    keep: bool,
) -> Result<bool> {
    if listing.is_empty() || listing.iter().any(|e| e.uidl.is_some()) {
        return Ok(false);
    }
    let numbers: Vec<u32> = listing.iter().map(|e| e.number).collect();
    if let Some(digests) = header_digests(session, &numbers)? {
        for (entry, digest) in listing.iter_mut().zip(digests) {
            entry.uidl = Some(format!("hdr:{digest}"));
        }
        return Ok(false);
    }
    if keep {
        return Err(Error::config(format!(
            "{}: the server supports neither UIDL nor TOP, so popfetch cannot tell new messages from \
             ones it fetched before; with such a server set keep = false (or run with --delete) so \
             every message is fetched once and deleted",
            session.host()
        )));
    }
    Ok(true)
}

/// What [`tell_shared_uidls_apart`] found.
#[derive(Debug, Default)]
pub(crate) struct SharedUidls {
    /// Names the server's bug, once per session.
    pub warning: Option<String>,
    /// Messages to leave on the server this session.
    pub held: Vec<(u32, plan::SkipReason)>,
}

/// Messages that share a UIDL (a server bug) are told apart by a digest of
/// their header block (`TOP n 0`): each listing entry gets the key
/// [`plan::told_apart_key`] instead of the shared UIDL, so it is fetched
/// once and deleted like any other.
///
/// Once such keys are recorded, every message not known by its plain UIDL
/// is looked at the same way, so that none of them is delivered again:
/// one whose header digest is recorded under a told-apart key is that
/// message (its copy was deleted, or the server mended its ways and gave
/// it a UIDL of its own), and one whose UIDL was shared before keeps being
/// known by its header digest.
///
/// A UIDL recorded as seen before it was shared is left as it is: one of
/// its messages was delivered under it, and nothing says which (the plan
/// leaves them on the server). Without TOP nothing can be told apart: the
/// shared ones stay on the server (the plan skips them), and so do those
/// whose UIDL was shared before, which must not be fetched under it.
pub(crate) fn tell_shared_uidls_apart(
    session: &mut Session,
    listing: &mut [Listed],
    seen: &HashMap<String, i64>,
) -> Result<SharedUidls> {
    let shared: Vec<(String, Vec<usize>)> = plan::shared_uidls(listing)
        .into_iter()
        .filter(|(uidl, _)| !seen.contains_key(*uidl))
        .map(|(uidl, group)| (uidl.to_string(), group))
        .collect();
    // The records under told-apart keys: their UIDLs, and their keys by
    // header digest.
    let mut told_uidls: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut told_keys: HashMap<&str, Vec<&str>> = HashMap::new();
    for key in seen.keys().filter(|k| k.contains(' ')) {
        if let Some((uidl, digest)) = plan::told_apart_parts(key) {
            told_uidls.insert(uidl);
            told_keys.entry(digest).or_default().push(key);
        }
    }
    // Messages not known by their plain UIDL, while such records exist.
    let mut unknown: Vec<usize> = Vec::new();
    if !told_keys.is_empty() {
        let in_shared: std::collections::HashSet<usize> =
            shared.iter().flat_map(|(_, g)| g.iter().copied()).collect();
        unknown = (0..listing.len())
            .filter(|i| !in_shared.contains(i))
            .filter(|&i| {
                listing[i]
                    .uidl
                    .as_deref()
                    .is_some_and(|u| plan::valid_key(u) && !seen.contains_key(u))
            })
            .collect();
    }
    if shared.is_empty() && unknown.is_empty() {
        return Ok(SharedUidls::default());
    }
    let wanted: Vec<usize> = shared
        .iter()
        .flat_map(|(_, g)| g.iter().copied())
        .chain(unknown.iter().copied())
        .collect();
    let numbers: Vec<u32> = wanted.iter().map(|&i| listing[i].number).collect();
    let Some(digests) = header_digests(session, &numbers)? else {
        let held = unknown
            .into_iter()
            .filter_map(|i| {
                let uidl = listing[i].uidl.clone()?;
                told_uidls
                    .contains(uidl.as_str())
                    .then(|| (listing[i].number, plan::SkipReason::DuplicateUidl(uidl)))
            })
            .collect();
        return Ok(SharedUidls {
            warning: None,
            held,
        });
    };
    let digest_of: HashMap<usize, String> = wanted.into_iter().zip(digests).collect();
    for (uidl, group) in &shared {
        let digests: Vec<String> = group.iter().map(|i| digest_of[i].clone()).collect();
        for (&i, key) in group.iter().zip(plan::told_apart_keys(uidl, &digests)) {
            listing[i].uidl = Some(key);
        }
    }
    let mut taken: std::collections::HashSet<String> =
        listing.iter().filter_map(|e| e.uidl.clone()).collect();
    for i in unknown {
        let digest = &digest_of[&i];
        let recorded = told_keys
            .get(digest.as_str())
            .and_then(|keys| keys.iter().find(|k| !taken.contains(**k)));
        let uidl = listing[i].uidl.clone().unwrap_or_default();
        let key = match recorded {
            Some(key) => key.to_string(),
            None if told_uidls.contains(uidl.as_str()) => plan::told_apart_key(&uidl, digest, 1),
            None => continue,
        };
        taken.insert(key.clone());
        listing[i].uidl = Some(key);
    }
    if shared.is_empty() {
        return Ok(SharedUidls::default());
    }
    const NAMED: usize = 5;
    let mut named: Vec<String> = shared
        .iter()
        .take(NAMED)
        .map(|(_, group)| {
            let numbers: Vec<String> = group
                .iter()
                .map(|&i| listing[i].number.to_string())
                .collect();
            let (last, first) = numbers
                .split_last()
                .expect("a shared UIDL has two messages");
            format!("messages {} and {last}", first.join(", "))
        })
        .collect();
    if shared.len() > NAMED {
        named.push(format!("{} more groups", shared.len() - NAMED));
    }
    let warning = format!(
        "{}: the server gives the same UIDL to {} (a server bug); telling them apart by their headers",
        session.host(),
        named.join("; ")
    );
    Ok(SharedUidls {
        warning: Some(warning),
        held: Vec::new(),
    })
}

/// The SHA-256 (hex) of each message's header block, from pipelined
/// `TOP n 0`; `None` when the server has no TOP or refuses it for any of
/// them.
fn header_digests(session: &mut Session, numbers: &[u32]) -> Result<Option<Vec<String>>> {
    let caps = session.capabilities();
    if caps.known && !caps.has("TOP") {
        return Ok(None);
    }
    let mut top_works = true;
    let mut digests: Vec<String> = vec![String::new(); numbers.len()];
    session.top_many(numbers, 0, &mut |i, reply| {
        match reply {
            Retrieved::Body(body) => {
                let mut hashing = HashingReader::new(body);
                std::io::copy(&mut hashing, &mut std::io::sink())
                    .map_err(|e| Error::new(crate::error::ExitKind::TempFail, e.to_string()))?;
                digests[i] = hashing.hex();
            }
            Retrieved::Refused(_) => {
                top_works = false;
            }
        }
        Ok(())
    })?;
    Ok(top_works.then_some(digests))
}

/// Passes a message's bytes through while telling the progress display
/// how far it is (capped at the size the server announced: the bar counts
/// LIST sizes).
struct CountingReader<'a> {
    inner: &'a mut dyn Read,
    read: u64,
    cap: u64,
    progress: &'a Progress,
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.progress.receiving(self.read.min(self.cap));
        Ok(n)
    }
}

/// Passes bytes through while computing their SHA-256.
struct HashingReader<'a> {
    inner: &'a mut dyn Read,
    hasher: Sha256,
}

impl<'a> HashingReader<'a> {
    fn new(inner: &'a mut dyn Read) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    fn hex(self) -> String {
        self.hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl Read for HashingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
