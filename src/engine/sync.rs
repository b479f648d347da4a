//! One account's sync, for any [`Source`] into any [`Delivery`]: lock the
//! mailbox, recover an interrupted run, log in, plan, fetch in batches,
//! commit each batch durably, delete what the policy says, log out
//! (QUIT), prune.
//!
//! Order is everything here (SPEC §4): a message is recorded as seen only
//! after its batch is durable in the target, and its deletion (DELE,
//! POP2's ACKD, IMAP's expunge or move), like any flag a source sets on
//! what was delivered (IMAP's `\Seen`: `Source::recorded`), is asked for
//! only once its record is committed. Nothing here assumes a deletion
//! happened unless the source said so (POP3's QUIT, IMAP's expunge): when
//! a session ends badly the records stay, and the next run deletes what is
//! still there. No protocol is decided on here: what differs between
//! sources is what the `Source` trait says of them.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::config::{Account, FetchMode, Target};
use crate::engine::filter;
use crate::engine::identity::{
    follow_uidvalidity, identify_without_uidl, maildir_header_digests, tell_shared_uidls_apart,
    HashingReader, HeaderDigest,
};
use crate::engine::plan::{self, Policy};
use crate::error::{Error, Result};
use crate::source::connect::ConnectOptions;
use crate::source::{self, Entry, Fetched, Message, Source, Taken};
use crate::state::store::{FolderSnapshot, MailboxLock, PendingEntry, Store};
use crate::target::maildir::{Maildir, Recovered};
use crate::target::{self, mbox, Delivered, Delivery, MessageInfo};
use crate::ui::notice::Verbose;
use crate::ui::progress::Progress;
use crate::ui::units::human_bytes;

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
    /// Where the messages go, as `accounts` says it (`lmtp unix:/…`).
    pub target: String,
    /// The target is a server (LMTP, SMTP, IMAP): a dry run names it,
    /// since it does not contact it.
    pub target_is_server: bool,
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
///
/// Each mailbox of the account (an IMAP account has one per folder) is
/// synced on its own, one after the other, with its own lock and seen
/// state; the report counts them all. One session serves them all when
/// the source can switch folders (IMAP's SELECT: its deletions took
/// effect before the switch). The first that fails stops the account
/// (what the others delivered stays counted), as Ctrl-C does.
pub fn sync_account(
    account: &Account,
    state_dir: &Path,
    opts: &SyncOptions,
    progress: &Progress,
) -> SyncReport {
    let mut report = SyncReport {
        account: account.name.clone(),
        target: account.target.describe(),
        target_is_server: matches!(
            account.target,
            crate::config::Target::Lmtp(_)
                | crate::config::Target::Smtp(_)
                | crate::config::Target::Imap(_)
        ),
        ..SyncReport::default()
    };
    let mailboxes = account.per_folder();
    let mut carried: Carried = None;
    for (i, mailbox) in mailboxes.iter().enumerate() {
        let mut one = SyncReport {
            account: account.name.clone(),
            ..SyncReport::default()
        };
        let more = i + 1 < mailboxes.len();
        if let Err(e) = run(
            mailbox,
            state_dir,
            opts,
            progress,
            &mut one,
            &mut carried,
            more,
        ) {
            one.error = Some(e);
        }
        report.add(one);
        if report.error.is_some() || report.stopped || crate::ui::interrupt::requested() {
            break;
        }
    }
    // A session kept for a folder that was never reached.
    if let Some(source) = carried.take() {
        if let Err(e) = source.finish() {
            report.error.get_or_insert(e);
        }
    }
    progress.finish();
    report
}

/// A logged-in session kept for the next folder of the account.
type Carried = Option<Box<dyn Source>>;

impl SyncReport {
    /// Adds the report of another mailbox of the same account.
    fn add(&mut self, other: SyncReport) {
        self.new += other.new;
        self.bytes += other.bytes;
        self.deleted += other.deleted;
        self.skipped += other.skipped;
        self.left += other.left;
        self.warnings.extend(other.warnings);
        self.planned.extend(other.planned);
        self.dry_run |= other.dry_run;
        self.stopped |= other.stopped;
        if self.error.is_none() {
            self.error = other.error;
        }
    }
}

/// Syncs one mailbox. `carried` is a session an earlier folder of the
/// account kept open (it is used, when it can switch folders, instead of a
/// new login); with `more` folders to follow, the session is left there
/// for them instead of ending.
fn run(
    account: &Account,
    state_dir: &Path,
    opts: &SyncOptions,
    progress: &Progress,
    report: &mut SyncReport,
    carried: &mut Carried,
    more: bool,
) -> Result<()> {
    if opts.dry_run {
        source::refuse_dry_run(account)?;
        report.dry_run = true;
        return dry_run(account, state_dir, opts, report);
    }
    let identity = account.identity();
    let _lock = MailboxLock::acquire(state_dir, &identity)?;
    let mut store = Store::open(state_dir)?;
    let mailbox = store.mailbox(&identity)?;
    let mut target = target::open(account, state_dir, &opts.connect)?;
    report
        .warnings
        .extend(recover(&mut store, mailbox, &account.target)?);
    let keep = opts.keep_override.unwrap_or(account.keep);
    // The no-new-mail shortcut: a snapshot kept under this same policy.
    // (Recovery above committed records only if a run was killed, and any
    // record written drops the snapshot.)
    let fingerprint = shortcut_fingerprint(account, opts, keep);
    let kept = store.snapshot(mailbox)?;
    let snapshot = kept
        .as_ref()
        .filter(|s| Some(&s.fingerprint) == fingerprint.as_ref());

    let switched = match carried.take() {
        Some(source) => {
            let name = account
                .imap
                .as_ref()
                .and_then(|i| i.folders.first())
                .map_or("", String::as_str);
            progress.phase(&format!("selecting {name}"));
            opts.connect
                .verbose
                .say(|| format!("{}: on to folder {name:?}", account.name));
            source::switch_folder(source, account)?
        }
        None => None,
    };
    let (opened, seen) = if let Some(source) = switched {
        let opened = source::Opened {
            source,
            warnings: Vec::new(),
        };
        (Ok(opened), None)
    } else if snapshot.is_some() {
        // Likely nothing new: the seen set is read only if the folder
        // turns out to have changed.
        progress.phase(&format!("connecting to {}:{}", account.host, account.port));
        let opened = source::open(account, &opts.connect, &|| progress.phase("logging in"));
        (opened, None)
    } else {
        // The seen set is read while the server handles the login: on a big
        // mailbox each takes a while, and neither needs the other.
        progress.phase(&format!("connecting to {}:{}", account.host, account.port));
        std::thread::scope(|scope| {
            // A unique borrow moves to the loader (a connection is Send, not
            // Sync); the store is back in our hands after the join.
            let store = &mut store;
            let loading = scope.spawn(move || store.seen(mailbox));
            let opened = source::open(account, &opts.connect, &|| progress.phase("logging in"));
            let seen = loading
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (opened, Some(seen))
        })
    };
    let opened = opened?;
    let seen = seen.transpose()?;
    report.warnings.extend(opened.warnings);
    let mut source = opened.source;
    if let Some(snapshot) = snapshot {
        if let Some(state) = source.folder_state().filter(|s| unchanged(snapshot, s)) {
            opts.connect.verbose.say(|| {
                format!(
                    "{}: folder unchanged since the last complete sync (UIDVALIDITY {}, UIDNEXT {}, {}): nothing to fetch",
                    account.name,
                    state.uidvalidity,
                    state.uidnext,
                    messages(state.messages as usize)
                )
            });
            if more {
                *carried = Some(source);
            } else {
                source.finish()?;
                opts.connect
                    .verbose
                    .say(|| format!("{}: logged out", account.name));
            }
            return Ok(());
        }
    }
    // From here the folder is listed and may change: a snapshot goes
    // before anything is fetched or deleted, so a run killed on the way
    // never leaves one that vouches for what it did not finish.
    if kept.is_some() {
        store.set_snapshot(mailbox, None)?;
    }
    let mut seen = match seen {
        Some(seen) => seen,
        None => store.seen(mailbox)?,
    };
    progress.phase("listing");
    let (listing, mut plan, copies) = plan_session(
        source.as_mut(),
        account,
        opts,
        (&mut seen, Some((&mut store, mailbox))),
        keep,
        report,
    )?;
    let copies_none = copies.is_empty();
    let verdicts = filter::apply(source.as_mut(), account, &mut plan, progress)?;
    report.left = verdicts.left.len() as u64;
    let mut to_delete: Vec<u32> = plan.delete_seen.iter().map(|(n, _)| *n).collect();
    if !verdicts.delete.is_empty() {
        // Deleted unread: recorded first, so the DELE follows a committed
        // record like any other (SPEC §4.2).
        let uidls: Vec<&str> = verdicts.delete.iter().map(|(_, u)| u.as_str()).collect();
        store.commit_delivered(mailbox, &uidls, &[])?;
        to_delete.extend(verdicts.delete.iter().map(|(n, _)| *n));
    }

    let verbose = &opts.connect.verbose;
    verbose.say(|| {
        let listed = listing.len() + copies.len();
        plan_line(account, listed, &plan, to_delete.len(), keep)
    });

    if crate::ui::interrupt::requested() {
        report.stopped = true;
        source.finish()?;
        return Ok(());
    }
    progress.start(plan.fetch.len() as u64, plan.fetch_bytes());
    let digest_headers = source.uidvalidity().is_some();
    let mut fetch = Fetch {
        target: target.as_mut(),
        store: &mut store,
        mailbox,
        wanted: &plan.fetch,
        seen: &seen,
        delete: !keep,
        digest_headers,
        progress,
        verbose,
    };
    let fetched = fetch.run(source.as_mut(), account.max_size, report);
    // A source that acknowledges each message deleted the delivered ones
    // on the way; QUIT applies that like any deletion.
    let deleted_on_the_way = if !keep && source.acks_each_message() {
        match &fetched {
            Ok(d) => d.len(),
            Err(f) => f.recorded.len(),
        }
    } else {
        0
    };
    // Messages recorded as seen in this run may be deleted even if a later
    // one failed, provided the connection is still usable.
    if report.stopped {
        if let Err(f) = &fetched {
            if f.session_usable && f.error.is_stop() {
                // Ctrl-C: what was delivered is committed and counted; no
                // DELE, the user wants out (the next run deletes what the
                // policy says), and QUIT ends the session cleanly (and
                // applies what a source acknowledging each message was
                // told to delete on the way: those are recorded).
                if !f.recorded.is_empty() {
                    source.recorded(&f.recorded)?;
                }
                source.finish()?;
                report.deleted = deleted_on_the_way as u64;
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
    // Their records are committed: only now may the server hear of it.
    if !delivered.is_empty() {
        source.recorded(&delivered)?;
        if keep && source.expires_what_is_fetched() {
            // Said when it matters (this run took mail the server will now
            // drop), not on every run: cron mails whatever a run prints.
            report.warnings.push(format!(
                "{}: the server says EXPIRE 0: it deletes messages once they are downloaded, even with keep = true",
                account.name
            ));
        }
    }
    let copies = if keep || copies.is_empty() {
        Vec::new()
    } else {
        let going: Vec<u32> = to_delete.iter().chain(&delivered).copied().collect();
        copies_to_delete(&copies, &going, &listing)
    };
    if !keep && deleted_on_the_way == 0 {
        to_delete.extend(delivered.iter().copied());
    }
    to_delete.extend(copies);
    if !to_delete.is_empty() {
        verbose.say(|| {
            format!(
                "{}: deleting {} on the server",
                account.name,
                messages(to_delete.len())
            )
        });
    }
    let marked = mark_deletions(source.as_mut(), &to_delete, report)?;
    // Asked before the session is handed on or ended: `None` once it
    // flagged, deleted or moved anything.
    let folder_state = source.folder_state();
    if more {
        // Kept for the next folder: only a source that can switch folders
        // is (see above), and its deletions took effect already.
        *carried = Some(source);
    } else {
        source.finish()?;
        verbose.say(|| format!("{}: logged out", account.name));
    }
    // QUIT's +OK is the server's word that the deletions happened.
    let marked = marked + deleted_on_the_way as u64;
    let to_delete = to_delete.len() + deleted_on_the_way;
    report.deleted = marked;
    if let Some(e) = fetch_error {
        return Err(e);
    }
    // Without UIDL and TOP the listing names no message, so a record is
    // known to be of a message gone only when every deletion happened.
    let content_keyed = listing.iter().all(|e| e.id.is_none());
    if !content_keyed || marked == to_delete as u64 {
        store.prune_known(mailbox, &seen, &plan::listed_uidls(&listing))?;
    }
    // Complete and clean: every message listed is recorded (none left
    // over max_size, refused by the server or the target, held back, or
    // copied), and the session changed nothing in the folder, so what
    // SELECT said still describes it.
    let clean = report.skipped == 0 && report.left == 0 && plan.skip.is_empty() && copies_none;
    if let (Some(fingerprint), Some(state), true) = (fingerprint, folder_state, clean) {
        store.set_snapshot(
            mailbox,
            Some(&FolderSnapshot {
                uidvalidity: state.uidvalidity,
                uidnext: state.uidnext,
                messages: state.messages,
                highestmodseq: state.highestmodseq,
                fingerprint,
            }),
        )?;
    }
    Ok(())
}

/// The folder is as the snapshot found it: no UID handed out since (a
/// message arrived, even one expunged again), none expunged (with no
/// arrival, a smaller MESSAGES), the same numbering, and no flag changed
/// when the server keeps mod-sequences.
fn unchanged(snapshot: &FolderSnapshot, now: &source::FolderState) -> bool {
    snapshot.uidvalidity == now.uidvalidity
        && snapshot.uidnext == now.uidnext
        && snapshot.messages == now.messages
        && snapshot.highestmodseq == now.highestmodseq
}

/// The fingerprint of what a folder snapshot depends on besides the
/// folder, or `None` where the shortcut is never taken because the answer
/// can change while UIDVALIDITY, UIDNEXT and MESSAGES stay as they were.
fn shortcut_fingerprint(account: &Account, opts: &SyncOptions, keep: bool) -> Option<String> {
    // Only an IMAP folder has those numbers.
    let imap = account.imap.as_ref()?;
    // `fetch = "unseen"`: another client clearing `\Seen` makes a message
    // due again without touching the counts.
    if imap.fetch == FetchMode::Unseen {
        return None;
    }
    // `keep_days`: messages come due for deletion as time passes.
    if keep && account.keep_days.is_some() {
        return None;
    }
    // A filter command may answer differently tomorrow (its own rules,
    // the time of day); what it left on the server is asked again.
    if account.filter.is_some() {
        return None;
    }
    // `--all` fetches what was seen; `--dry-run` never gets here (it
    // writes nothing and lists always).
    if opts.all || opts.dry_run {
        return None;
    }
    // What else decides what a sync does with the same folder: a change
    // of any of these since the snapshot lists the folder again.
    let policy = format!(
        "v1 keep={keep} max_size={:?} mark_seen={} move_to={:?}",
        account.max_size, imap.mark_seen, imap.move_to
    );
    let digest = Sha256::digest(policy.as_bytes());
    Some(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
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
        human_bytes(plan.fetch_bytes()),
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

/// Lists the mailbox and plans the session. The copies of a message that
/// a source naming messages by their content lists more than once are
/// returned apart, out of the listing and the plan: they go where their
/// first goes (see [`copies_to_delete`]).
///
/// `seen` comes with the store it was read from (none for a dry run
/// without state): a renumbered IMAP folder moves records to new keys.
fn plan_session(
    source: &mut dyn Source,
    account: &Account,
    opts: &SyncOptions,
    (seen, store): (&mut HashMap<String, i64>, Option<(&mut Store, i64)>),
    keep: bool,
    report: &mut SyncReport,
) -> Result<(Vec<Entry>, plan::Plan, Copies)> {
    let listing = source.listing()?;
    if let Some((store, mailbox)) = store {
        let commit = !opts.dry_run;
        report.warnings.extend(follow_uidvalidity(
            source,
            store,
            mailbox,
            &listing,
            seen,
            commit,
            &account.name,
        )?);
    }
    let seen = &*seen;
    let (mut listing, copies) = if source.ids_are_digests() {
        split_copies(listing)
    } else {
        (listing, Vec::new())
    };
    let content_keyed = identify_without_uidl(source, &mut listing, keep)?;
    let mut held = Vec::new();
    if !content_keyed {
        let shared = tell_shared_uidls_apart(source, &mut listing, seen)?;
        report.warnings.extend(shared.warning);
        held = shared.held;
    }
    let mut plan = if content_keyed {
        // Neither UIDL nor TOP: every message is fetched and deleted.
        plan::Plan {
            fetch: listing
                .iter()
                .map(|e| plan::Fetch {
                    handle: e.handle,
                    key: String::new(),
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
    // Left alone this time but still listed, so their records stay.
    let held_back: std::collections::HashSet<u32> = source.held_back()?.into_iter().collect();
    if !held_back.is_empty() {
        plan.fetch.retain(|f| !held_back.contains(&f.handle));
    }
    // A dry run lists these in its plan instead.
    for (number, reason) in plan.skip.iter().filter(|_| !opts.dry_run) {
        report.warnings.push(format!(
            "{}: message {number} left on the server: {reason}",
            account.name
        ));
    }
    report.skipped = plan.skip.len() as u64;
    Ok((listing, plan, copies))
}

/// Copies of a message: (handle, id), see [`split_copies`].
type Copies = Vec<(u32, String)>;

/// Entries whose id an earlier entry has: for a source whose ids are
/// digests of the content, copies of one message, which is delivered once.
fn split_copies(listing: Vec<Entry>) -> (Vec<Entry>, Copies) {
    let mut firsts = Vec::with_capacity(listing.len());
    let mut copies = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for entry in listing {
        match entry.id {
            Some(id) if ids.contains(&id) => copies.push((entry.handle, id)),
            Some(ref id) => {
                ids.insert(id.clone());
                firsts.push(entry);
            }
            None => firsts.push(entry),
        }
    }
    (firsts, copies)
}

/// The copies whose first is deleted (or was deleted on the way), so none
/// stays behind as "new" mail that is never delivered.
fn copies_to_delete(copies: &[(u32, String)], to_delete: &[u32], listing: &[Entry]) -> Vec<u32> {
    if copies.is_empty() {
        return Vec::new();
    }
    let going: std::collections::HashSet<u32> = to_delete.iter().copied().collect();
    let deleted: std::collections::HashSet<&str> = listing
        .iter()
        .filter(|e| going.contains(&e.handle))
        .filter_map(|e| e.id.as_deref())
        .collect();
    copies
        .iter()
        .filter(|(_, id)| deleted.contains(id.as_str()))
        .map(|(handle, _)| *handle)
        .collect()
}

/// `--dry-run`: connect, plan and say what would happen; no message
/// fetched, none deleted, nothing written (not even the state directory).
fn dry_run(
    account: &Account,
    state_dir: &Path,
    opts: &SyncOptions,
    report: &mut SyncReport,
) -> Result<()> {
    let mut store = match state_dir.join(Store::FILE_NAME).exists() {
        true => {
            let store = Store::open(state_dir)?;
            store
                .find_mailbox(&account.identity())?
                .map(|mb| (store, mb))
        }
        false => None,
    };
    let mut seen = match &store {
        Some((store, mb)) => store.seen(*mb)?,
        None => HashMap::new(),
    };
    let opened = source::open(account, &opts.connect, &|| {})?;
    report.warnings.extend(opened.warnings);
    let mut source = opened.source;
    let keep = opts.keep_override.unwrap_or(account.keep);
    let records = store.as_mut().map(|(store, mb)| (store, *mb));
    let (listing, mut plan, _copies) = plan_session(
        source.as_mut(),
        account,
        opts,
        (&mut seen, records),
        keep,
        report,
    )?;
    let verdicts = filter::apply(source.as_mut(), account, &mut plan, &Progress::hidden())?;
    report.left = verdicts.left.len() as u64;
    let listed: HashMap<u32, &Entry> = listing.iter().map(|e| (e.handle, e)).collect();
    let item = |action, number: u32, reason| {
        let entry = listed.get(&number);
        let key = entry.and_then(|e| e.id.as_deref()).unwrap_or("-");
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
            .map(|f| item(fetch_action, f.handle, None)),
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
    source.finish()?;
    Ok(())
}

/// Marks `to_delete` for deletion; returns how many the server accepted.
fn mark_deletions(
    source: &mut dyn Source,
    to_delete: &[u32],
    report: &mut SyncReport,
) -> Result<u64> {
    if to_delete.is_empty() {
        return Ok(0);
    }
    let accepted = source.delete(to_delete)?;
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
    let mut warnings = mbox::recover_journal(store, mailbox, appends, to)?;
    // Interrupted IMAP appends are looked up in the target folder.
    let (appends, pending): (Vec<_>, Vec<_>) =
        pending.into_iter().partition(target::imap::is_append);
    if !appends.is_empty() {
        warnings.extend(target::imap::recover(store, mailbox, target, appends)?);
    }
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
        let delivered: Vec<&PendingEntry> = outcome
            .iter()
            .filter(|(_, r)| *r == Recovered::Delivered)
            .map(|(e, _)| e)
            .collect();
        // An IMAP folder's records carry header digests (see
        // identity::follow_uidvalidity): these get theirs from the files.
        let digests = if store.uidvalidity(mailbox)?.is_some() {
            let files: Vec<&str> = delivered.iter().map(|e| e.name.as_str()).collect();
            maildir_header_digests(&folder, &files)
        } else {
            HashMap::new()
        };
        let records: Vec<(&str, Option<&str>)> = delivered
            .iter()
            .map(|e| (e.uidl.as_str(), digests.get(&e.name).map(String::as_str)))
            .collect();
        store.commit_delivered_with_headers(mailbox, &records, &names)?;
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

/// The parts of one account's fetch.
struct Fetch<'a> {
    target: &'a mut dyn Delivery,
    store: &'a mut Store,
    mailbox: i64,
    wanted: &'a [plan::Fetch],
    /// The seen state at the start of the session: a message keyed by its
    /// content's digest that is already there is not delivered again.
    seen: &'a HashMap<String, i64>,
    /// The policy deletes what is delivered.
    delete: bool,
    /// Records get the digest of the message's header block (sources with
    /// a UIDVALIDITY: see `identity::follow_uidvalidity`).
    digest_headers: bool,
    progress: &'a Progress,
    verbose: &'a Verbose,
}

impl Fetch<'_> {
    /// Fetches `wanted`, committing in batches. Returns the handles of the
    /// messages delivered and recorded, or why it stopped.
    ///
    /// A batch is committed from inside the source's fetch, so a pipeline
    /// keeps running: the server goes on sending into the socket buffers
    /// while the batch is made durable. (Deletions are asked for after all
    /// of this, before QUIT, which is when they take effect anyway; a
    /// source that acknowledges each message gets batches of one, and its
    /// deletions ride on the acknowledgements.)
    fn run(
        &mut self,
        source: &mut dyn Source,
        max_size: Option<u64>,
        report: &mut SyncReport,
    ) -> std::result::Result<Vec<u32>, FetchFailure> {
        let batch_limit = if source.acks_each_message() {
            1
        } else {
            self.target.batch_limit().min(BATCH_MESSAGES)
        };
        let mut batch = Batch::default();
        let mut commit_failed = false;
        let numbers: Vec<u32> = self.wanted.iter().map(|f| f.handle).collect();
        let result = source.fetch(&numbers, max_size, &mut |i, reply| {
            let item = &self.wanted[i];
            if crate::ui::interrupt::requested() {
                // Ctrl-C: stop between messages, like a local failure, so
                // what was delivered is committed below. The replies
                // already asked for are read first (the session must stay
                // in step to QUIT).
                report.stopped = true;
                self.progress
                    .phase("stopping (Ctrl-C again to quit at once)");
                return Err(Error::stopped(STOPPED));
            }
            let recorded_before = batch.recorded.len();
            match reply {
                Fetched::Body(body) => self.take(i, item, body, &mut batch, report)?,
                Fetched::Refused(reason) => {
                    report.warnings.push(format!(
                        "{}: the server would not send message {} ({reason}); it stays on the server",
                        report.account, item.handle
                    ));
                    report.skipped += 1;
                }
            }
            let full = batch.keys.len() >= batch_limit
                || batch.bytes >= BATCH_BYTES
                || batch.started.elapsed() >= BATCH_TIME;
            if full {
                batch
                    .commit(
                        self.target,
                        self.store,
                        self.mailbox,
                        self.wanted,
                        self.verbose,
                        report,
                    )
                    .map_err(|e| {
                        commit_failed = true;
                        e.local()
                    })?;
            }
            Ok(if batch.recorded[recorded_before..].contains(&item.handle) {
                Taken::Recorded {
                    delete: self.delete,
                }
            } else {
                Taken::Received
            })
        });
        // The source returns the sink's own error only after reading every
        // pending reply (marked local or stopped above); a network failure
        // comes back as itself.
        let ours_stopped_it = |e: &Error| e.is_local();
        if !commit_failed {
            // Commit whatever was fully delivered, even when the loop
            // stopped on an error: those messages are complete on our side.
            let committed = batch.commit(
                self.target,
                self.store,
                self.mailbox,
                self.wanted,
                self.verbose,
                report,
            );
            if let Err(error) = committed {
                self.target.rollback();
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
            self.target.rollback();
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

    /// Delivers one message into the batch (or skips it, saying why).
    fn take(
        &mut self,
        i: usize,
        item: &plan::Fetch,
        body: &mut dyn Message,
        batch: &mut Batch,
        report: &mut SyncReport,
    ) -> Result<()> {
        let progress = self.progress;
        let mut counting = CountingReader {
            inner: &mut *body,
            read: 0,
            cap: item.size,
            progress,
        };
        let mut counting = HeaderDigest::new(&mut counting, self.digest_headers);
        let delivered = if item.key.is_empty() {
            // No identity from the server: the content's digest, known
            // only once the message was read to the end.
            let mut hashing = HashingReader::new(&mut counting);
            self.target
                .deliver(&MessageInfo { uidl: "" }, &mut hashing)
                .map(|size| (size, format!("body:{}", hashing.hex())))
        } else {
            self.target
                .deliver(&MessageInfo { uidl: &item.key }, &mut counting)
                .map(|size| (size, item.key.clone()))
        };
        let header = counting.hex();
        match delivered {
            Ok((Delivered::Stored, key)) => {
                // Sizes reported are the server's (see Message::octets);
                // the bar counts by LIST size, the unit of its total.
                let size = body.octets();
                progress.advance(item.size);
                if item.key.is_empty() && self.seen.contains_key(&key) && self.target.discard_last()
                {
                    // Delivered and recorded by a session that ended
                    // before its QUIT: taken back before anyone saw it,
                    // and deleted now on the strength of that record.
                    batch.recorded.push(item.handle);
                } else {
                    if item.key.is_empty() {
                        self.target.set_last_uidl(&key);
                    }
                    batch.add(i, key, header, size);
                }
                Ok(())
            }
            // The target dropped what it had of it (Delivery's contract);
            // the rest is skipped and the session goes on.
            Err(_) if body.over_limit() => {
                report.warnings.push(format!(
                    "{}: message {} grew past max_size while it was received \
                     (the server announced {}); it was not delivered and stays on the server",
                    report.account,
                    item.handle,
                    human_bytes(item.size)
                ));
                report.skipped += 1;
                Ok(())
            }
            // A mail server's permanent refusal (LMTP/SMTP 5xx) is about
            // this message only: it stays on the server, the rest go on.
            Ok((Delivered::Refused(e), _)) => {
                report.warnings.push(format!(
                    "{}: message {} was not delivered: {e}",
                    report.account, item.handle
                ));
                report.skipped += 1;
                Ok(())
            }
            // Whatever the target says, it is our side that failed: the
            // session is still in step.
            Err(e) => Err(e.local()),
        }
    }
}

/// Messages delivered since the last commit, and what was recorded so far.
struct Batch {
    /// (index into `wanted`, the key its seen record gets, its header
    /// digest if taken)
    keys: Vec<(usize, String, Option<String>)>,
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
    fn add(&mut self, index: usize, key: String, header: Option<String>, size: u64) {
        self.keys.push((index, key, header));
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
            // One name per message, in order, from a target that names
            // them (more names after those are journal entries to clear).
            let named = names.len() >= self.keys.len();
            for (j, (i, key, _)) in self.keys.iter().enumerate() {
                let to = target.destination(named.then(|| names[j].as_str()));
                let f = &wanted[*i];
                verbose.say(|| delivered_line(&report.account, f.handle, f.size, key, &to));
            }
        }
        for (i, _, _) in self.keys.drain(..) {
            self.recorded.push(wanted[i].handle);
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
    batch: &[(usize, String, Option<String>)],
) -> Result<Vec<String>> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let names = target.commit(&mut |entries| store.journal(mailbox, entries))?;
    let records: Vec<(&str, Option<&str>)> = batch
        .iter()
        .map(|(_, k, h)| (k.as_str(), h.as_deref()))
        .collect();
    let named: Vec<&str> = names.iter().map(String::as_str).collect();
    store.commit_delivered_with_headers(mailbox, &records, &named)?;
    Ok(names)
}

/// Passes a message's bytes through while telling the progress display
/// how far it is (capped at the size the server announced: the bar counts
/// LIST sizes).
struct CountingReader<'a> {
    inner: &'a mut dyn Message,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(handle: u32, id: &str) -> Entry {
        Entry {
            handle,
            size: 10,
            id: Some(id.to_string()),
        }
    }

    /// A message a killed run left in the Maildir is recorded by recovery
    /// with its header digest when the mailbox is an IMAP folder, so a
    /// later renumbering of the folder finds it.
    #[test]
    fn recovery_records_header_digests_of_imap_messages() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("Mail");
        let maildir = Maildir::open(&root).unwrap();
        drop(maildir);
        let mut store = Store::open(&dir.path().join("state")).unwrap();
        let imap = store.mailbox("a@h/INBOX").unwrap();
        let pop = store.mailbox("a@h").unwrap();
        store.renumber(imap, 5, &[]).unwrap();
        for (mailbox, uidl, name) in [(imap, "5/1", "1.Ppf1.h"), (pop, "u1", "2.Ppf2.h")] {
            std::fs::write(root.join("new").join(name), b"Subject: s\n\nbody\n").unwrap();
            let entry = PendingEntry {
                uidl: uidl.into(),
                folder: root.clone(),
                name: name.into(),
            };
            store.journal(mailbox, &[entry]).unwrap();
            recover(&mut store, mailbox, &Target::Maildir(root.clone())).unwrap();
            assert!(store.pending(mailbox).unwrap().is_empty());
            assert!(store.seen(mailbox).unwrap().contains_key(uidl));
        }
        let digests = store.header_digests(imap).unwrap();
        let mut reader: &[u8] = b"Subject: s\n\n";
        let mut hashing = HashingReader::new(&mut reader);
        std::io::copy(&mut hashing, &mut std::io::sink()).unwrap();
        assert_eq!(digests.get("5/1"), Some(&hashing.hex()));
        assert!(store.header_digests(pop).unwrap().is_empty(), "POP3: none");
    }

    /// Copies of a message (same content digest) are kept out of the plan
    /// and follow their first: deleted when it is, left when it is not.
    #[test]
    fn copies_go_where_their_first_goes() {
        let listing = vec![entry(1, "a"), entry(2, "b"), entry(3, "a"), entry(4, "a")];
        let (firsts, copies) = split_copies(listing);
        assert_eq!(firsts, vec![entry(1, "a"), entry(2, "b")]);
        assert_eq!(copies, vec![(3, "a".to_string()), (4, "a".to_string())]);
        assert_eq!(copies_to_delete(&copies, &[1], &firsts), vec![3, 4]);
        assert!(copies_to_delete(&copies, &[2], &firsts).is_empty());
        assert!(copies_to_delete(&[], &[1], &firsts).is_empty());
    }
}
