//! `popfetch watch`: the long-running fetcher. One loop on the main
//! thread decides what runs (`watch::schedule`), starts each run on a
//! thread of its own (at most `-j` at once; each is `sync_account`, as in
//! `sync`), and sleeps in one place (`watch::wake`) until the next run is
//! due, a run ends, a signal comes or IDLE sees new mail.
//!
//! Stopping is `sync`'s Ctrl-C: the running syncs finish the message in
//! hand, commit and log out; nothing new starts; then exit 0. SIGHUP reads
//! the config again, and a config that does not load changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::Result;

use super::connect_options;
use crate::cli::{Cli, WatchArgs};
use crate::config::secret::Secret;
use crate::config::{Account, Config};
use crate::engine::sync::{self, SyncOptions, SyncReport};
use crate::error::{Error, ExitKind};
use crate::source::imap::idle::{self, Idler, Listener};
use crate::ui::progress::Progress;
use crate::ui::report::Output;
use crate::watch::backoff;
use crate::watch::events::Events;
use crate::watch::lock::WatchLock;
use crate::watch::notify::Notifier;
use crate::watch::schedule::{Schedule, Spec};
use crate::watch::wake::{Waiter, Waker};

/// The accounts being watched, by name, with what `sync_account` needs.
struct Watched {
    accounts: HashMap<String, Arc<Account>>,
    state_dir: Arc<PathBuf>,
    /// In config order, for the schedule.
    specs: Vec<Spec>,
}

pub(super) fn watch_command(cli: &Cli, args: &WatchArgs) -> Result<u8> {
    let path: PathBuf = match &cli.config {
        Some(p) => p.clone(),
        None => Config::default_path()?,
    };
    let output = Output::new(cli.quiet, args.json, cli.color, false);
    let mut connect = connect_options(cli, &output);
    connect.alerts = connect.alerts.once_each();
    let opts = Arc::new(SyncOptions {
        connect,
        ..SyncOptions::default()
    });
    let events = Events::new(output);
    // Signals are ours before anything slow (the config, a password
    // prompt, the lock): a `systemctl reload` or SIGUSR1 sent just after
    // start must not kill the process by their default action.
    let mut waiter = Waiter::new().map_err(|e| Error::local_io("cannot start watching", e))?;
    waiter
        .catch_signals()
        .map_err(|e| Error::local_io("cannot catch signals", e))?;
    let config = Config::load(&path)?;
    // Typed passwords are asked for once, here, and kept for reloads:
    // nobody is at the terminal when a run starts at 3 a.m.
    let mut secrets: HashMap<String, Secret> = HashMap::new();
    let mut watched = select_watched(&config, &args.accounts, &mut secrets, &events)?;
    let _lock = WatchLock::acquire(&config.state_dir, &path)?;

    let notifier = Notifier::from_env();
    let jobs = usize::from(args.jobs.unwrap_or(4));
    let mut schedule = Schedule::new(watched.specs.clone(), Instant::now(), &mut backoff::unit);
    let names: Vec<&str> = schedule.names().collect();
    events.start(&names, &path);

    let (done_tx, done_rx) = mpsc::channel::<(String, SyncReport)>();
    let mut running: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut failures: HashMap<String, u32> = HashMap::new();
    let mut status: BTreeMap<String, String> = BTreeMap::new();
    notifier.send(&format!(
        "READY=1\nSTATUS=watching {}",
        plural(names.len(), "account")
    ));
    let inbox = Arc::new(IdleInbox {
        news: Mutex::default(),
        waker: waiter
            .waker()
            .map_err(|e| Error::local_io("cannot start watching", e))?,
    });
    let mut idlers: HashMap<(String, String), Idler> = HashMap::new();
    start_idlers(&watched, &mut idlers, &inbox, &opts);
    let mut next_watchdog = notifier.watchdog.map(|d| Instant::now() + d);
    let mut stopping = false;
    loop {
        while let Ok((name, report)) = done_rx.try_recv() {
            if let Some(thread) = running.remove(&name) {
                let _ = thread.join();
            }
            let failure = report.error.as_ref().map(|e| e.kind());
            let next = schedule.finished(&name, failure, Instant::now(), &mut backoff::unit);
            let before = failures.remove(&name).unwrap_or(0);
            let line = events.synced(&report, next, before);
            if let Some(next) = next {
                if next.failures > 0 {
                    failures.insert(name.clone(), next.failures);
                }
                status.insert(name, line);
            }
            notifier.status(&status.values().cloned().collect::<Vec<_>>().join("; "));
        }
        if stopping && running.is_empty() {
            break;
        }
        let now = Instant::now();
        for news in inbox.take() {
            match news {
                IdleNews::NewMail(name) => schedule.run_now(Some(&name), now),
                IdleNews::Note(name, folder, text) => events.idle(&name, &folder, &text),
            }
        }
        if !stopping {
            for name in schedule.start_due(now, jobs) {
                let Some(account) = watched.accounts.get(&name).cloned() else {
                    continue;
                };
                match waiter.waker() {
                    Ok(waker) => {
                        let thread = spawn_run(
                            account,
                            watched.state_dir.clone(),
                            opts.clone(),
                            done_tx.clone(),
                            waker,
                        );
                        running.insert(name, thread);
                    }
                    // Out of file descriptors, most likely: reported as
                    // the run's failure, tried again at the interval.
                    Err(e) => {
                        let report = SyncReport {
                            account: name.clone(),
                            error: Some(Error::local_io("cannot start a sync", e)),
                            ..SyncReport::default()
                        };
                        let failure = report.error.as_ref().map(|e| e.kind());
                        let next =
                            schedule.finished(&name, failure, Instant::now(), &mut backoff::unit);
                        events.synced(&report, next, 0);
                    }
                }
            }
        }
        let mut timeout = if stopping {
            None
        } else {
            schedule.wait(Instant::now(), jobs)
        };
        if let Some(at) = next_watchdog {
            let until = at.saturating_duration_since(Instant::now());
            timeout = Some(timeout.map_or(until, |t| t.min(until)));
        }
        let woken = waiter.wait(timeout);
        if let (Some(at), Some(every)) = (next_watchdog, notifier.watchdog) {
            if Instant::now() >= at {
                notifier.send("WATCHDOG=1");
                next_watchdog = Some(Instant::now() + every);
            }
        }
        if woken.stop && !stopping {
            stopping = true;
            notifier.send("STOPPING=1");
            events.stopping(running.len());
            for (_, idler) in idlers.drain() {
                idler.stop();
            }
        }
        if stopping {
            continue;
        }
        if woken.reload {
            notifier.send("RELOADING=1");
            match Config::load(&path)
                .and_then(|c| select_watched(&c, &args.accounts, &mut secrets, &events))
            {
                Ok(new) => {
                    let (added, removed) =
                        schedule.replace(new.specs.clone(), Instant::now(), &mut backoff::unit);
                    for name in &removed {
                        status.remove(name);
                        failures.remove(name);
                    }
                    watched = new;
                    // IDLE for an account gone or changed ends; new ones start.
                    idlers.retain(|(name, folder), _| {
                        watched
                            .accounts
                            .get(name)
                            .is_some_and(|a| idle::folders(a).contains(folder))
                    });
                    let changed: Vec<(String, String)> = idlers
                        .iter()
                        .filter(|((name, _), idler)| !idler.same(&watched.accounts[name]))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for key in changed {
                        if let Some(idler) = idlers.remove(&key) {
                            idler.stop();
                        }
                    }
                    start_idlers(&watched, &mut idlers, &inbox, &opts);
                    events.reloaded(&added, &removed);
                }
                Err(e) => events.reload_failed(&e),
            }
            notifier.send("READY=1");
        }
        if woken.sync_now {
            schedule.run_now(None, Instant::now());
        }
    }
    for (_, idler) in idlers.drain() {
        idler.stop();
    }
    events.stopped();
    Ok(0)
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// One run of one account on a thread of its own; its report comes back
/// on `done`, and the main loop is woken to read it.
fn spawn_run(
    account: Arc<Account>,
    state_dir: Arc<PathBuf>,
    opts: Arc<SyncOptions>,
    done: mpsc::Sender<(String, SyncReport)>,
    waker: Waker,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let name = account.name.clone();
        let report = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sync::sync_account(&account, &state_dir, &opts, &Progress::hidden())
        }))
        .unwrap_or_else(|_| SyncReport {
            account: name.clone(),
            error: Some(Error::new(
                ExitKind::Internal,
                "the sync panicked (a bug in popfetch: please report it)",
            )),
            ..SyncReport::default()
        });
        let _ = done.send((name, report));
        waker.wake();
    })
}

/// The accounts of `config` to watch, with passwords that must be typed
/// asked for now (once per mailbox for the life of the process).
fn select_watched(
    config: &Config,
    names: &[String],
    secrets: &mut HashMap<String, Secret>,
    events: &Events,
) -> crate::error::Result<Watched> {
    let selected = config.select(names)?;
    let mut accounts = HashMap::new();
    let mut specs = Vec::new();
    for account in selected {
        let account = if account.prompts() {
            let secret = match secrets.get(&account.identity()) {
                Some(s) => Some(s.clone()),
                None => match account.secret() {
                    Ok(s) => {
                        secrets.insert(account.identity(), s.clone());
                        Some(s)
                    }
                    Err(e) => {
                        events.output.error(&format!(
                            "{}: {}",
                            account.name,
                            crate::ui::report::error_chain(&e)
                        ));
                        None
                    }
                },
            };
            match secret {
                Some(s) => account.with_secret(s),
                None => account.clone(),
            }
        } else {
            account.clone()
        };
        specs.push(Spec {
            name: account.name.clone(),
            mailbox: account.identity(),
            interval: account.interval,
        });
        accounts.insert(account.name.clone(), Arc::new(account));
    }
    Ok(Watched {
        accounts,
        state_dir: Arc::new(config.state_dir.clone()),
        specs,
    })
}

/// What the IDLE connections have told the main loop since it last looked.
enum IdleNews {
    NewMail(String),
    /// Account, folder, text.
    Note(String, String, String),
}

struct IdleInbox {
    news: Mutex<Vec<IdleNews>>,
    waker: Waker,
}

impl IdleInbox {
    fn take(&self) -> Vec<IdleNews> {
        std::mem::take(&mut *self.news.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn push(&self, news: IdleNews) {
        self.news
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(news);
        self.waker.wake();
    }
}

impl Listener for IdleInbox {
    fn new_mail(&self, account: &str, _folder: &str) {
        self.push(IdleNews::NewMail(account.to_string()));
    }

    fn note(&self, account: &str, folder: &str, text: String) {
        self.push(IdleNews::Note(
            account.to_string(),
            folder.to_string(),
            text,
        ));
    }
}

/// An IDLE connection for every folder of every account that asks for
/// IDLE and has none yet.
fn start_idlers(
    watched: &Watched,
    idlers: &mut HashMap<(String, String), Idler>,
    inbox: &Arc<IdleInbox>,
    opts: &SyncOptions,
) {
    for spec in &watched.specs {
        let account = &watched.accounts[&spec.name];
        for folder in idle::folders(account) {
            let key = (account.name.clone(), folder.clone());
            if idlers.contains_key(&key) {
                continue;
            }
            let listener: Arc<dyn Listener> = inbox.clone();
            let idler = Idler::start(account.clone(), folder, listener, opts.connect.clone());
            idlers.insert(key, idler);
        }
    }
}
