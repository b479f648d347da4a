//! The `filter` hook: before a new message is downloaded, its header block
//! (from a pipelined `TOP n 0`) goes to a command that decides: exit 0
//! fetch it, 1 delete it unread, 2 leave it on the server (and ask again
//! next time). A filter that does anything else (another exit code, a
//! crash, not found, still running after `command_timeout` and killed with
//! its process group) stops the account (exit 78) before anything is
//! fetched or deleted, with one line that says so even under `-q`: a
//! broken filter is broken for every message, and skipping them one by one
//! with a warning that cron never shows means mail silently stops
//! arriving. Nothing it judged before failing is recorded either, so the
//! mended filter judges those messages again.

use std::io::{Read, Write};
use std::process::Stdio;

use crate::config::Account;
use crate::engine::plan::Plan;
use crate::error::{Error, ExitKind, Result};
use crate::source::{Fetched, Source};
use crate::ui::progress::Progress;

/// Most header bytes handed to a filter.
const MAX_HEADERS: usize = 1024 * 1024;

/// What the filter decided beyond "fetch".
#[derive(Debug, Default)]
pub struct Verdicts {
    /// Messages to delete without downloading: (number, UIDL).
    pub delete: Vec<(u32, String)>,
    /// Messages left on the server this time (exit 2): (number, UIDL).
    pub left: Vec<(u32, String)>,
}

/// A filter's answer for one message.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Fetch,
    Delete,
    Leave,
}

/// Runs the account's filter over the messages the plan would fetch and
/// removes from the plan every message it does not want fetched. A filter
/// failure is the account's error.
pub fn apply(
    source: &mut dyn Source,
    account: &Account,
    plan: &mut Plan,
    progress: &Progress,
) -> Result<Verdicts> {
    let mut verdicts = Verdicts::default();
    let Some(command) = &account.filter else {
        return Ok(verdicts);
    };
    if plan.fetch.is_empty() {
        return Ok(verdicts);
    }
    let numbers: Vec<u32> = plan.fetch.iter().map(|f| f.handle).collect();
    let mut keep = vec![true; numbers.len()];
    let sent = source.headers(&numbers, &mut |i, reply| {
        let item = &plan.fetch[i];
        progress.phase(&format!("filtering {}/{}", i + 1, numbers.len()));
        let headers = match reply {
            Fetched::Body(body) => {
                let mut h = Vec::new();
                body.take(MAX_HEADERS as u64)
                    .read_to_end(&mut h)
                    .map_err(|e| Error::with_source(ExitKind::TempFail, "reading headers", e))?;
                h
            }
            Fetched::Refused(reason) => {
                return Err(Error::new(
                    ExitKind::Protocol,
                    format!(
                        "{}: the server refused TOP {} ({reason}), which `filter` needs",
                        account.host, item.handle
                    ),
                ))
            }
        };
        match run_filter(command, account, item, &headers)? {
            Verdict::Fetch => {}
            Verdict::Delete => {
                keep[i] = false;
                verdicts.delete.push((item.handle, item.key.clone()));
            }
            Verdict::Leave => {
                keep[i] = false;
                verdicts.left.push((item.handle, item.key.clone()));
            }
        }
        Ok(())
    })?;
    if !sent {
        return Err(Error::new(
            ExitKind::Protocol,
            format!(
                "{}: the server cannot send header blocks (it has no TOP), which `filter` needs",
                account.host
            ),
        ));
    }
    let mut flags = keep.into_iter();
    plan.fetch.retain(|_| flags.next().unwrap_or(false));
    Ok(verdicts)
}

/// Runs the filter on one message's headers. Any answer but 0, 1 or 2 is
/// an error that stops the account.
fn run_filter(
    command: &str,
    account: &Account,
    item: &crate::engine::plan::Fetch,
    headers: &[u8],
) -> Result<Verdict> {
    let mut cmd = crate::external::shell(command);
    cmd.env("POPFETCH_ACCOUNT", &account.name)
        .env("POPFETCH_UIDL", &item.key)
        .env("POPFETCH_SIZE", item.size.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let limit = account.command_timeout;
    let ran = crate::external::run(&mut cmd, limit, false, |child| {
        // Written on a thread, waited for at most the time limit: a daemon
        // the filter started outside its process group could keep the
        // pipe open, unread, for ever. A filter may decide without reading
        // everything: a broken pipe is not an error.
        let Some(mut stdin) = child.stdin.take() else {
            return;
        };
        let data = headers.to_vec();
        let (done, written) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
            drop(stdin);
            let _ = done.send(());
        });
        let _ = written.recv_timeout(limit);
    });
    let number = item.handle;
    // Run by hand on the headers it got, the filter shows why it failed.
    let try_it = format!(
        "try it by hand on the output of `popfetch top {} {number}`, fix it, and sync again",
        account.name
    );
    let (what, fix) = match ran {
        Err(e) => (format!("could not be started ({e})"), try_it),
        Ok((crate::external::Ended::TimedOut, ())) => (
            format!(
                "did not finish within {} s (command_timeout) on message {number} and was killed",
                limit.as_secs()
            ),
            "fix the filter or raise command_timeout".to_string(),
        ),
        Ok((crate::external::Ended::Exited(status), ())) => match status.code() {
            Some(0) => return Ok(Verdict::Fetch),
            Some(1) => return Ok(Verdict::Delete),
            Some(2) => return Ok(Verdict::Leave),
            // sh's codes for a command it could not find or not run.
            Some(127) => (
                "was not found (exit 127: the command, or one it runs, is missing)".to_string(),
                "check the name, or give the full path (cron's PATH is short)".to_string(),
            ),
            Some(126) => (
                "could not be run (sh: exit 126)".to_string(),
                "check that it is executable".to_string(),
            ),
            Some(code) => (
                format!(
                    "failed on message {number} (exit {code}; a filter exits 0 fetch, 1 delete \
                     or 2 leave)"
                ),
                try_it,
            ),
            None => {
                use std::os::unix::process::ExitStatusExt;
                let signal = status.signal().unwrap_or(0);
                let name = crate::external::signal_name(signal)
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default();
                (
                    format!("was killed by signal {signal}{name} on message {number}"),
                    try_it,
                )
            }
        },
    };
    // The report names the account.
    Err(Error::config(format!(
        "the filter {command:?} {what}; nothing was fetched or deleted: {fix}"
    )))
}
