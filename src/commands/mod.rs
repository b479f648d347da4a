//! The commands: what each subcommand does with the config, the store and
//! the servers. Errors go up as `anyhow` with a typed [`Error`] inside, so
//! the binary can map them to an exit code.

pub mod docs;
pub mod import;
pub mod info;
pub mod init;
pub mod peek;
pub mod seen;

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::Result;
use serde_json::json;

use crate::cli::{AccountsArgs, CheckArgs, Cli, Command, ListArgs, SeenCommand, SyncArgs, TopArgs};
use crate::config::secret::Secret;
use crate::config::{Account, Config, PasswordSource};
use crate::engine::sync::{self, SyncOptions};
use crate::error::ExitKind;
use crate::net;
use crate::source::connect::ConnectOptions;
use crate::ui::report::{self, Output};
use peek::Peek;

/// Runs a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> Result<u8> {
    match &cli.command {
        Command::Completions { shell } => {
            docs::write_completions(*shell, &mut std::io::stdout())?;
            Ok(0)
        }
        Command::Man => {
            docs::write_man(&mut std::io::stdout())?;
            Ok(0)
        }
        Command::Sync(args) => sync_command(&cli, args),
        Command::Accounts(args) => accounts_command(&cli, args),
        Command::Check(args) => check_command(&cli, args),
        Command::List(args) => list_command(&cli, args),
        Command::Top(args) => top_command(&cli, args),
        Command::Seen { command } => seen_command(&cli, command),
        Command::Init(args) => init_command(&cli, args),
        Command::Info { account } => info_command(&cli, account),
    }
}

fn connect_options(cli: &Cli, output: &Output) -> ConnectOptions {
    ConnectOptions {
        trace: cli.verbose >= 2,
        alerts: output.alerts(),
        verbose: output.verbose(cli.verbose >= 1),
    }
}

/// The one account a command names.
fn one_account<'c>(config: &'c Config, name: &str) -> Result<&'c Account> {
    Ok(config.select(std::slice::from_ref(&name.to_string()))?[0])
}

fn check_command(cli: &Cli, args: &CheckArgs) -> Result<u8> {
    let config = load_config(cli)?;
    let accounts = config.select(&args.accounts)?;
    let output = Output::new(cli.quiet, args.json, cli.color, false);
    let opts = connect_options(cli, &output);
    let mut kinds = Vec::new();
    let mut any_new = false;
    for account in accounts {
        let report = peek::check_account(account, &config.state_dir, &opts);
        output.check_report(&report);
        any_new |= report.error.is_none() && report.new > 0;
        kinds.push(report.error.as_ref().map(|e| e.kind()));
    }
    Ok(match report::combined_exit(&kinds) {
        Some(kind) => kind.code(),
        None if any_new => 0,
        None => 1,
    })
}

fn list_command(cli: &Cli, args: &ListArgs) -> Result<u8> {
    let config = load_config(cli)?;
    let account = one_account(&config, &args.account)?;
    let output = Output::new(cli.quiet, args.json, cli.color, false);
    let (entries, warnings) =
        peek::list_account(account, &config.state_dir, &connect_options(cli, &output))?;
    for w in &warnings {
        output.warn(w);
    }
    if args.json {
        for e in &entries {
            report::print_json_line(&json!({
                "number": e.number,
                "uidl": e.uidl,
                "size": e.size,
                "seen": e.seen,
            }));
        }
        return Ok(0);
    }
    let terminal = std::io::stdout().is_terminal();
    let mut out = std::io::stdout().lock();
    for line in peek::list_table(&entries, terminal) {
        writeln!(out, "{}", output.mark_new(&line))?;
    }
    out.flush()?;
    Ok(0)
}

fn top_command(cli: &Cli, args: &TopArgs) -> Result<u8> {
    let config = load_config(cli)?;
    let account = one_account(&config, &args.account)?;
    let output = Output::new(cli.quiet, args.json, cli.color, false);
    let mut peek = Peek::open(account, &config.state_dir, &connect_options(cli, &output))?;
    for w in &peek.warnings {
        output.warn(w);
    }
    let mut out = std::io::stdout().lock();
    if !args.messages.is_empty() {
        let numbers = peek::resolve(&peek.listing, &args.messages, &account.host)?;
        if args.json {
            let records = peek::message_records(&mut peek, &numbers, args.lines)?;
            peek.close();
            drop(out);
            records.iter().for_each(report::print_json_line);
            return Ok(0);
        }
        peek::print_messages(&mut peek, &numbers, args.lines, &mut out)?;
        peek.close();
        return Ok(0);
    }
    let rows = peek::summaries(&mut peek, args.new)?;
    peek.close();
    if args.json {
        drop(out);
        rows.iter()
            .for_each(|r| report::print_json_line(&peek::summary_json(r)));
        return Ok(0);
    }
    if rows.is_empty() {
        output.info(&format!(
            "{}: {}",
            account.name,
            if args.new {
                "no new messages"
            } else {
                "no messages on the server"
            }
        ));
        return Ok(0);
    }
    for line in peek::summary_table(
        &rows,
        crate::ui::term::stdout_width(),
        crate::state::store::now_secs(),
    ) {
        writeln!(out, "{}", output.mark_new(&line))?;
    }
    out.flush()?;
    Ok(0)
}

fn seen_command(cli: &Cli, command: &SeenCommand) -> Result<u8> {
    let config = load_config(cli)?;
    let output = Output::new(cli.quiet, false, cli.color, false);
    match command {
        SeenCommand::List { account, json } => seen::list(
            one_account(&config, account)?,
            &config.state_dir,
            *json,
            &output,
        )?,
        SeenCommand::Forget {
            account,
            uidls,
            all,
            yes,
        } => seen::forget(
            one_account(&config, account)?,
            &config.state_dir,
            uidls,
            seen::ForgetAll {
                all: *all,
                yes: *yes,
            },
            &output,
        )?,
        SeenCommand::Mark { account } => seen::mark(
            one_account(&config, account)?,
            &config.state_dir,
            &connect_options(cli, &output),
            &output,
        )?,
        SeenCommand::Import {
            account,
            from,
            file,
        } => seen::import(
            one_account(&config, account)?,
            &config.state_dir,
            *from,
            file,
            &output,
        )?,
    }
    Ok(0)
}

fn load_config(cli: &Cli) -> Result<Config> {
    let path: PathBuf = match &cli.config {
        Some(p) => p.clone(),
        None => Config::default_path()?,
    };
    Ok(Config::load(&path)?)
}

fn sync_command(cli: &Cli, args: &SyncArgs) -> Result<u8> {
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

fn accounts_command(cli: &Cli, args: &AccountsArgs) -> Result<u8> {
    let config = load_config(cli)?;
    let output = Output::new(cli.quiet, args.json, cli.color, false);
    let mut code = 0;
    for a in &config.accounts {
        if args.json {
            report::print_json_line(&account_json(a, &config));
        } else {
            println!("{}", account_text(a, &config));
        }
        let (errors, warnings) = path_problems(a);
        for w in warnings {
            output.warn(&format!("{}: {w}", a.name));
        }
        for e in errors {
            output.error(&format!("{}: {e}", a.name));
            code = ExitKind::Config.code();
        }
    }
    Ok(code)
}

/// Paths in an account that point nowhere: a missing `ca_file` would stop
/// every sync (an error); a missing folder above the Maildir or mbox is
/// created at the first sync, which is what a typo in the path would do too
/// (a warning).
fn path_problems(a: &Account) -> (Vec<String>, Vec<String>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    if let Some(ca) = &a.trust.ca_file {
        if !ca.is_file() {
            errors.push(format!(
                "ca_file {} does not exist (or is not a file); fix the path or remove the key",
                ca.display()
            ));
        }
    }
    let target = match &a.target {
        crate::config::Target::Maildir(p) | crate::config::Target::Mbox(p) => Some(p),
        crate::config::Target::Mda(_) => None,
    };
    if let Some(parent) = target.and_then(|p| p.parent()) {
        if !parent.as_os_str().is_empty() && !parent.is_dir() {
            warnings.push(format!(
                "the folder {} does not exist yet; the first sync creates it (check the path for a typo)",
                parent.display()
            ));
        }
    }
    (errors, warnings)
}

fn password_source(a: &Account) -> &'static str {
    match a.password {
        PasswordSource::Inline(_) => "password (in the config file)",
        PasswordSource::Command(_) => "password_command",
        PasswordSource::Prompt => "prompt",
    }
}

fn account_json(a: &Account, config: &Config) -> serde_json::Value {
    let (kind, path) = match &a.target {
        crate::config::Target::Maildir(p) => ("maildir", p.display().to_string()),
        crate::config::Target::Mbox(p) => ("mbox", p.display().to_string()),
        crate::config::Target::Mda(cmd) => ("mda", cmd.clone()),
    };
    let mut value = json!({
        "account": a.name,
        "host": a.host,
        "port": a.port,
        "protocol": a.protocol.name(),
        "tls": a.tls.name(),
        "auth": a.auth.name(),
        "user": a.user,
        "password_source": password_source(a),
        "ca_file": a.trust.ca_file.as_ref().map(|p| p.display().to_string()),
        "tls_fingerprint": a.trust.fingerprints.iter().map(net::format_fingerprint).collect::<Vec<_>>(),
        "destination": { "type": kind, "path": path },
        "keep": a.keep,
        "keep_days": a.keep_days,
        "max_size": a.max_size,
        "filter": a.filter,
        "folder": a.folder,
        "timeout": a.timeout.as_secs(),
        "identity": a.identity(),
        "state_dir": config.state_dir.display().to_string(),
    });
    if let Some(imap) = &a.imap {
        value["folders"] = json!(imap.folders);
        value["identities"] = json!(a
            .per_folder()
            .iter()
            .map(Account::identity)
            .collect::<Vec<_>>());
        value["fetch"] = json!(match imap.fetch {
            crate::config::FetchMode::New => "new",
            crate::config::FetchMode::Unseen => "unseen",
        });
        value["mark_seen"] = json!(imap.mark_seen);
        value["move_to"] = json!(imap.move_to);
        value["idle"] = json!(imap.idle);
    }
    value
}

fn account_text(a: &Account, config: &Config) -> String {
    let mut lines = vec![
        format!("[{}]", a.name),
        format!(
            "  server       {}:{} ({}, {} TLS)",
            a.host,
            a.port,
            a.protocol.name(),
            a.tls.name()
        ),
        format!(
            "  login        {} (auth {}, {})",
            a.user,
            a.auth.name(),
            password_source(a)
        ),
    ];
    if let Some(ca) = &a.trust.ca_file {
        lines.push(format!("  ca_file      {}", ca.display()));
    }
    for fp in &a.trust.fingerprints {
        lines.push(format!("  pinned       {}", net::format_fingerprint(fp)));
    }
    lines.push(format!("  deliver to   {}", a.target.describe()));
    lines.push(format!(
        "  on server    {}",
        if a.keep {
            "keep"
        } else {
            "delete after delivery"
        }
    ));
    if let Some(imap) = &a.imap {
        lines.push(format!("  folders      {}", imap.folders.join(", ")));
        if let Some(to) = &imap.move_to {
            lines.push(format!("  move to      {to} (instead of deleting)"));
        }
    }
    lines.push(format!("  timeout      {} s", a.timeout.as_secs()));
    let identities: Vec<String> = a.per_folder().iter().map(Account::identity).collect();
    lines.push(format!(
        "  seen state   {} in {}",
        identities.join(", "),
        config.state_dir.display()
    ));
    lines.join("\n")
}

fn info_command(cli: &Cli, account: &str) -> Result<u8> {
    let config = load_config(cli)?;
    let account = one_account(&config, account)?;
    let info = crate::commands::info::probe(account, cli.verbose >= 2)?;
    println!("{}", info.render(account));
    Ok(0)
}

fn init_command(cli: &Cli, args: &crate::cli::InitArgs) -> Result<u8> {
    use crate::commands::init;
    use crate::error::{Error, ExitKind};
    let path: PathBuf = match &cli.config {
        Some(p) => p.clone(),
        None => Config::default_path()?,
    };
    let server = init::server(
        args.provider.as_deref(),
        args.host.as_deref(),
        args.protocol.as_deref(),
    )?;
    let (host, port_in_host) = init::split_host_port(&server.host)?;
    let port = match (port_in_host, args.port) {
        (Some(a), Some(b)) if a != b => {
            return Err(Error::new(
                ExitKind::Usage,
                format!("--host names port {a} but --port says {b}: give the port once"),
            )
            .into())
        }
        (a, b) => a.or(b),
    };
    let (port, tls) = init::resolve_transport(server.protocol, port, args.tls.as_deref());
    let account = args
        .name
        .clone()
        .unwrap_or_else(|| server.default_name.to_string());
    let maildir = args
        .maildir
        .clone()
        .unwrap_or_else(|| format!("~/Mail/{account}"));
    // Refuse values that would break the TOML we write.
    if [&account, &host, &args.user, &maildir]
        .iter()
        .any(|v| v.contains(['"', '\\', '\n']))
    {
        return Err(Error::new(
            ExitKind::Usage,
            "names and paths must not contain quotes, backslashes or line breaks",
        )
        .into());
    }
    let text = init::render(&init::InitRequest {
        account: &account,
        protocol: server.protocol,
        host: &host,
        port,
        tls,
        user: &args.user,
        auth: server.auth,
        note: server.note,
        also: server.also.as_deref(),
        maildir: &maildir,
    });
    crate::config::parse(&text, &path)?;
    init::write(&path, &text)?;
    if !cli.quiet {
        eprintln!("wrote {} (mode 600)", path.display());
        eprintln!("next:");
        eprintln!("  popfetch accounts            # check the settings");
        eprintln!("  popfetch info {account:<14} # see the server and its certificate");
        eprintln!("  popfetch sync {account:<14} # fetch your mail (asks for the password)");
        eprintln!("for cron or a timer, set password_command in the file (it lists ways to)");
        if let Some(also) = &server.also {
            eprintln!("{also}");
        }
    }
    Ok(0)
}
