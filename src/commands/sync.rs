//! `popfetch sync`: every selected account, in parallel threads (one
//! worker per mailbox at a time), passwords asked first, reports printed
//! as accounts finish, one exit code in config order (SPEC §6).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::Result;

use super::{connect_options, load_config};
use crate::cli::{Cli, SyncArgs};
use crate::config::secret::Secret;
use crate::config::Account;
use crate::engine::sync::{self, SyncOptions};
use crate::error::ExitKind;
use crate::ui::report::{self, Output};

pub(super) fn sync_command(cli: &Cli, args: &SyncArgs) -> Result<u8> {
    let config = load_config(cli)?;
    let accounts = config.select(&args.accounts)?;
    let output = Output::new(cli.quiet, args.json, cli.color, true);
    let opts = SyncOptions {
        keep_override: if args.keep {
            Some(true)
        } else if args.delete {
            Some(false)
        } else {
            None
        },
        all: args.all,
        dry_run: args.dry_run,
        connect: connect_options(cli, &output),
    };
    // Accounts run in parallel threads (at most `jobs` at once); reports
    // are printed as each finishes, and the exit code follows config order.
    // Accounts of one mailbox identity share a lock, so they run one after
    // the other in the same worker; distinct mailboxes run in parallel.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, account) in accounts.iter().enumerate() {
        let identity = account.identity();
        match groups
            .iter_mut()
            .find(|g| accounts[g[0]].identity() == identity)
        {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    let jobs = usize::from(args.jobs.unwrap_or(4)).clamp(1, groups.len().max(1));
    let results: Mutex<Vec<Option<ExitKind>>> = Mutex::new(vec![None; accounts.len()]);
    // Passwords to be typed are asked for first, one account after the
    // other, before any work starts: prompts from parallel threads would
    // interleave on one terminal, and mix with the progress bars.
    // (`password_command` still runs in each account's thread, when its
    // server has answered.) `None`: the prompt failed, and that was reported.
    let mut runnable: Vec<Option<Cow<Account>>> =
        accounts.iter().map(|a| Some(Cow::Borrowed(*a))).collect();
    let mut asked: HashMap<String, Secret> = HashMap::new();
    for (i, account) in accounts.iter().enumerate() {
        if !account.prompts() {
            continue;
        }
        // Sections of one mailbox share its password: ask once.
        let secret = match asked.get(&account.identity()) {
            Some(s) => s.clone(),
            None => match account.secret() {
                Ok(s) => {
                    asked.insert(account.identity(), s.clone());
                    s
                }
                Err(e) => {
                    let report = sync::SyncReport {
                        account: account.name.clone(),
                        target: account.target.describe(),
                        error: Some(e),
                        ..Default::default()
                    };
                    output.sync_report(&report);
                    results.lock().unwrap()[i] = report.error.as_ref().map(|e| e.kind());
                    runnable[i] = None;
                    continue;
                }
            },
        };
        runnable[i] = Some(Cow::Owned(account.with_secret(secret)));
    }
    // Ctrl-C from here on stops the fetch between messages and says what
    // was kept (a dry run changes nothing: Ctrl-C just ends it).
    let catching = (!opts.dry_run).then(crate::ui::interrupt::catch_sigint);
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                while let Some(group) = groups.get(next.fetch_add(1, Ordering::Relaxed)) {
                    for &i in group {
                        let Some(account) = runnable[i].as_deref() else {
                            continue;
                        };
                        if crate::ui::interrupt::requested() {
                            // Stopped before this account started.
                            return;
                        }
                        let progress = output.progress(&account.name);
                        let report =
                            sync::sync_account(account, &config.state_dir, &opts, &progress);
                        output.sync_report(&report);
                        results.lock().unwrap()[i] = report.error.as_ref().map(|e| e.kind());
                    }
                }
            });
        }
    });
    drop(catching);
    if crate::ui::interrupt::requested() {
        // 128 + SIGINT, as when Ctrl-C ends a program.
        return Ok(130);
    }
    // Reports were printed as accounts finished; the exit code follows the
    // config's order (SPEC §6).
    let kinds = results.into_inner().unwrap();
    Ok(report::combined_exit(&kinds).map(|k| k.code()).unwrap_or(0))
}
