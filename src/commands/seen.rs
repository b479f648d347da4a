//! `popfetch seen`: look at and change the record of what was delivered.
//!
//! `list` only reads (no lock). `forget` and `mark` write, so they hold
//! the mailbox lock like `sync` does: a sync running at the same time
//! makes them stop with exit 75 instead of racing it.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use crate::commands::peek::Peek;
use crate::config::Account;
use crate::engine::plan::{self, Policy};
use crate::error::{Error, ExitKind, Result};
use crate::source::connect::ConnectOptions;
use crate::state::store::{MailboxLock, SeenRecord, Store};
use crate::ui::report::Output;
use crate::ui::term;

/// The records of `account` (of each of its IMAP folders in turn), oldest
/// first; none when there is no state.
pub fn records(account: &Account, state_dir: &Path) -> Result<Vec<SeenRecord>> {
    let Some(store) = Store::open_existing(state_dir)? else {
        return Ok(Vec::new());
    };
    let mut records = Vec::new();
    for one in account.per_folder() {
        if let Some(mailbox) = store.find_mailbox(&one.identity())? {
            records.extend(store.seen_records(mailbox)?);
        }
    }
    Ok(records)
}

/// `seen list`: one line per record, `UIDL  first-seen` (local time), so
/// `cut -d' ' -f1` gives UIDLs to feed back to `seen forget`; with `json`,
/// one object per record (`account`, `uidl`, `first_seen` in Unix seconds).
pub fn list(account: &Account, state_dir: &Path, json: bool, output: &Output) -> Result<()> {
    let records = records(account, state_dir)?;
    if json {
        for r in &records {
            crate::ui::report::print_json_line(&serde_json::json!({
                "account": account.name,
                "uidl": r.uidl,
                "first_seen": r.first_seen,
            }));
        }
        return Ok(());
    }
    if records.is_empty() {
        output.info(&format!(
            "{}: nothing recorded as seen for {}",
            account.name,
            account.identity()
        ));
        return Ok(());
    }
    let w = records.iter().map(|r| r.uidl.len()).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    // The column names only for a person: a script reads the lines as they are.
    let header = std::io::stdout()
        .is_terminal()
        .then(|| format!("{:<w$}  FIRST SEEN", "UIDL", w = w.max("UIDL".len())));
    let w = if header.is_some() {
        w.max("UIDL".len())
    } else {
        w
    };
    let written = header
        .iter()
        .try_for_each(|h| writeln!(out, "{h}"))
        .and_then(|()| {
            records.iter().try_for_each(|r| {
                writeln!(out, "{:<w$}  {}", r.uidl, term::iso_minutes(r.first_seen))
            })
        })
        .and_then(|()| out.flush());
    written.map_err(|e| Error::with_source(ExitKind::Io, "writing to stdout", e))
}

/// `seen forget`: the named UIDLs, or with none every record (after a
/// confirmation when a person is at the terminal, unless `yes`). Nothing
/// is lost by forgetting: the next sync downloads those messages again.
/// How `seen forget` without UIDLs was confirmed.
#[derive(Clone, Copy, Debug, Default)]
pub struct ForgetAll {
    /// `--all`: forgetting everything was asked for in so many words.
    pub all: bool,
    /// `--yes`: no question on a terminal.
    pub yes: bool,
}

pub fn forget(
    account: &Account,
    state_dir: &Path,
    uidls: &[String],
    confirmed: ForgetAll,
    output: &Output,
) -> Result<()> {
    // An IMAP key (UIDVALIDITY/UID) names a message of one folder only.
    if let Some(imap) = account.imap.as_ref().filter(|i| i.folders.len() > 1) {
        return Err(Error::new(
            ExitKind::Usage,
            format!(
                "account {}: `seen forget` works on one folder, and it has {} ({}); give each \
                 folder a section of its own (folders = [\"NAME\"]) to forget its records",
                account.name,
                imap.folders.len(),
                imap.folders.join(", ")
            ),
        ));
    }
    let identity = account.identity();
    let _lock = MailboxLock::acquire(state_dir, &identity)?;
    let Some(mut store) = Store::open_existing(state_dir)? else {
        output.info(&format!(
            "{}: nothing recorded, nothing to forget",
            account.name
        ));
        return Ok(());
    };
    let Some(mailbox) = store.find_mailbox(&identity)? else {
        output.info(&format!(
            "{}: nothing recorded, nothing to forget",
            account.name
        ));
        return Ok(());
    };
    if uidls.is_empty() {
        let count = store.seen(mailbox)?.len();
        if count == 0 {
            output.info(&format!(
                "{}: nothing recorded, nothing to forget",
                account.name
            ));
            return Ok(());
        }
        let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
        // A script that meant to forget a few UIDLs and passed none (an
        // empty variable) must not reset the whole mailbox.
        if !interactive && !confirmed.all {
            return Err(Error::new(
                ExitKind::Usage,
                format!(
                    "{}: no UIDL given: that would forget all {count} records of {identity}, and the next \
                     sync would download everything again; to do that, add --all",
                    account.name
                ),
            ));
        }
        if interactive && !confirmed.yes {
            let question = format!(
                "Forget all {count} seen records of {identity}? The next sync downloads every message still on the server again."
            );
            if !confirm(&question)? {
                return Err(Error::new(ExitKind::Usage, "nothing forgotten"));
            }
        }
        let n = store.forget_all(mailbox)?;
        output.info(&format!(
            "{}: forgot all {n} seen record(s); the next sync downloads every message on the server again",
            account.name
        ));
        return Ok(());
    }
    let seen = store.seen(mailbox)?;
    let unknown: Vec<&str> = uidls
        .iter()
        .map(String::as_str)
        .filter(|u| !seen.contains_key(*u))
        .collect();
    let wanted: Vec<&str> = uidls.iter().map(String::as_str).collect();
    let n = store.forget(mailbox, &wanted)?;
    for u in &unknown {
        output.warn(&format!("{}: {u:?} was not recorded as seen", account.name));
    }
    output.info(&format!(
        "{}: forgot {n} seen record(s); the next sync downloads those messages again if they are on the server",
        account.name
    ));
    Ok(())
}

fn confirm(question: &str) -> Result<bool> {
    let ask = || -> std::io::Result<String> {
        let mut err = std::io::stderr().lock();
        write!(err, "{question} [y/N] ")?;
        err.flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        Ok(answer)
    };
    let answer =
        ask().map_err(|e| Error::with_source(ExitKind::Io, "asking for confirmation", e))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES"))
}

/// `seen mark`: records every message now on the server as seen, without
/// downloading it, so the next sync fetches only mail that arrives later.
/// Messages whose UIDL cannot tell them apart are left unmarked, as sync
/// would leave them.
pub fn mark(
    account: &Account,
    state_dir: &Path,
    opts: &ConnectOptions,
    output: &Output,
) -> Result<()> {
    let identity = account.identity();
    let _lock = MailboxLock::acquire(state_dir, &identity)?;
    let mut store = Store::open(state_dir)?;
    let mailbox = store.mailbox(&identity)?;
    let peek = Peek::open(account, state_dir, opts)?;
    for w in &peek.warnings {
        output.warn(w);
    }
    let uidl_check = peek.require_uidl(account);
    let plan = plan::plan(&peek.listing, &peek.seen, Policy::keep_new());
    let on_server = plan::listed_uidls(&peek.listing)
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    peek.close();
    uidl_check?;
    for (number, reason) in &plan.skip {
        output.warn(&format!(
            "{}: message {number} not marked: {reason}",
            account.name
        ));
    }
    let uidls: Vec<&str> = plan.fetch.iter().map(|f| f.key.as_str()).collect();
    let added = store.mark_seen(mailbox, &uidls, "mark")?;
    // The listing was complete: records of messages gone are pruned, as
    // after a sync (SPEC §4.6).
    store.prune(mailbox, &on_server.iter().map(String::as_str).collect())?;
    output.info(&format!(
        "{}: marked {added} message(s) as seen ({} already were); the next sync fetches only mail that arrives from now on",
        account.name, plan.kept
    ));
    Ok(())
}

/// `seen import`: adds another fetcher's records for this account.
pub fn import(
    account: &Account,
    state_dir: &Path,
    source: crate::commands::import::Source,
    file: &Path,
    output: &Output,
) -> Result<()> {
    if account.imap.is_some() {
        return Err(Error::new(
            ExitKind::Usage,
            format!(
                "account {}: `seen import` takes other fetchers' POP3 records, and this is an IMAP \
                 account (its messages are known by folder, UIDVALIDITY and UID); to take what is \
                 in the folder now as delivered, run `popfetch seen mark {}`",
                account.name, account.name
            ),
        ));
    }
    let records = crate::commands::import::read(source, file, &account.user, &account.host)?;
    let identity = account.identity();
    let _lock = MailboxLock::acquire(state_dir, &identity)?;
    let mut store = Store::open(state_dir)?;
    let mailbox = store.mailbox(&identity)?;
    let now = crate::state::store::now_secs();
    let rows: Vec<(&str, i64)> = records
        .iter()
        .map(|r| (r.uidl.as_str(), r.time.unwrap_or(now)))
        .collect();
    let origin = format!("import:{source:?}").to_lowercase();
    let added = store.add_seen(mailbox, &rows, &origin)?;
    // fetchmail's and mpop's files hold several accounts, of which this
    // one's records were taken; getmail's and fdm's hold one.
    let whose = match source {
        crate::commands::import::Source::Fetchmail | crate::commands::import::Source::Mpop => {
            format!(" for {identity}")
        }
        crate::commands::import::Source::Getmail | crate::commands::import::Source::Fdm => {
            String::new()
        }
    };
    output.info(&format!(
        "{}: imported {added} record(s) from {} ({}{whose} in the file, {} already known)",
        account.name,
        file.display(),
        records.len(),
        records.len() - added
    ));
    Ok(())
}
