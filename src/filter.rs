//! The `filter` hook: before a new message is downloaded, its header block
//! (from a pipelined `TOP n 0`) goes to a command that decides: exit 0
//! fetch it, 1 delete it unread, 2 leave it on the server (and ask again
//! next time). Anything else, or a filter that crashes, is an error for
//! that message only: it stays on the server untouched. A filter still
//! running after `command_timeout` is killed with its process group and
//! stops the account (exit 78) before anything is fetched or deleted:
//! waiting that long again for every further message would hold the
//! mailbox lock for hours, and a filter that hangs needs its owner.

use std::io::{Read, Write};
use std::process::Stdio;

use crate::config::Account;
use crate::error::{Error, ExitKind, Result};
use crate::plan::Plan;
use crate::pop3::{Retrieved, Session};
use crate::report::Progress;
use crate::sync::SyncReport;

/// Most header bytes handed to a filter.
const MAX_HEADERS: usize = 1024 * 1024;

/// What the filter decided beyond "fetch".
#[derive(Debug, Default)]
pub struct Verdicts {
    /// Messages to delete without downloading: (number, UIDL).
    pub delete: Vec<(u32, String)>,
    /// Messages left on the server this time.
    pub left: usize,
}

/// A filter's answer for one message.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Fetch,
    Delete,
    Leave,
}

/// Runs the account's filter over the messages the plan would fetch and
/// removes from the plan every message it does not want fetched.
pub fn apply(
    session: &mut Session,
    account: &Account,
    plan: &mut Plan,
    progress: &Progress,
    report: &mut SyncReport,
) -> Result<Verdicts> {
    let mut verdicts = Verdicts::default();
    let Some(command) = &account.filter else {
        return Ok(verdicts);
    };
    if plan.fetch.is_empty() {
        return Ok(verdicts);
    }
    let numbers: Vec<u32> = plan.fetch.iter().map(|f| f.number).collect();
    let mut keep = vec![true; numbers.len()];
    session.top_many(&numbers, 0, &mut |i, reply| {
        let item = &plan.fetch[i];
        progress.phase(&format!("filtering {}/{}", i + 1, numbers.len()));
        let headers = match reply {
            Retrieved::Body(body) => {
                let mut h = Vec::new();
                body.take(MAX_HEADERS as u64)
                    .read_to_end(&mut h)
                    .map_err(|e| Error::with_source(ExitKind::TempFail, "reading headers", e))?;
                h
            }
            Retrieved::Refused(reason) => {
                return Err(Error::new(
                    ExitKind::Protocol,
                    format!(
                        "{}: the server refused TOP {} ({reason}), which `filter` needs",
                        account.host, item.number
                    ),
                ))
            }
        };
        match run_filter(command, account, &item.uidl, item.size, &headers)? {
            Ok(Verdict::Fetch) => {}
            Ok(Verdict::Delete) => {
                keep[i] = false;
                verdicts.delete.push((item.number, item.uidl.clone()));
            }
            Ok(Verdict::Leave) => {
                keep[i] = false;
                verdicts.left += 1;
            }
            Err(why) => {
                keep[i] = false;
                report.skipped += 1;
                report.warnings.push(format!(
                    "{}: message {} left on the server: the filter {why}",
                    account.name, item.number
                ));
            }
        }
        Ok(())
    })?;
    let mut flags = keep.into_iter();
    plan.fetch.retain(|_| flags.next().unwrap_or(false));
    Ok(verdicts)
}

/// Runs the filter on one message's headers. The outer error (the filter
/// timed out) stops the account; the inner one is about this message.
fn run_filter(
    command: &str,
    account: &Account,
    uidl: &str,
    size: u64,
    headers: &[u8],
) -> Result<std::result::Result<Verdict, String>> {
    let mut cmd = crate::command::shell(command);
    cmd.env("POPFETCH_ACCOUNT", &account.name)
        .env("POPFETCH_UIDL", uidl)
        .env("POPFETCH_SIZE", size.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let limit = account.command_timeout;
    let ran = crate::command::run(&mut cmd, limit, false, |child| {
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
    let status = match ran {
        Ok((crate::command::Ended::Exited(status), ())) => status,
        Ok((crate::command::Ended::TimedOut, ())) => {
            return Err(Error::config(format!(
                "{}: the filter {command:?} did not finish within {} s (command_timeout) and was \
                 killed; nothing was fetched or deleted: fix the filter or raise command_timeout",
                account.name,
                limit.as_secs()
            )))
        }
        Err(e) => return Ok(Err(format!("could not be started: {e}"))),
    };
    Ok(match status.code() {
        Some(0) => Ok(Verdict::Fetch),
        Some(1) => Ok(Verdict::Delete),
        Some(2) => Ok(Verdict::Leave),
        Some(code) => Err(format!("exited {code} (0 fetch, 1 delete, 2 leave)")),
        None => Err("was killed by a signal".to_string()),
    })
}
