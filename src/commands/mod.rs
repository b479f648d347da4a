//! The commands: what each subcommand does with the config, the store and
//! the servers. [`run`] dispatches; `sync`, `watch` and `accounts` have
//! files of their own, `peek` serves check, list and top, `seen`, `info`,
//! `init`, `login` (login, logout) and `docs` (man, completions) theirs.
//! Errors go up as `anyhow` with a typed [`Error`] inside, so the binary
//! can map them to an exit code.

mod accounts;
pub(crate) mod docs;
pub(crate) mod import;
pub(crate) mod info;
pub(crate) mod init;
mod login;
pub(crate) mod peek;
pub(crate) mod seen;
mod sync;
mod watch;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Result;
use serde_json::json;

use crate::cli::{CheckArgs, Cli, Command, ListArgs, SeenCommand, TopArgs};
use crate::config::{Account, Config};
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
        Command::Sync(args) => sync::sync_command(&cli, args),
        Command::Watch(args) => watch::watch_command(&cli, args),
        Command::Accounts(args) => accounts::accounts_command(&cli, args),
        Command::Check(args) => check_command(&cli, args),
        Command::List(args) => list_command(&cli, args),
        Command::Top(args) => top_command(&cli, args),
        Command::Seen { command } => seen_command(&cli, command),
        Command::Init(args) => init_command(&cli, args),
        Command::Info { account } => info_command(&cli, account),
        Command::Login(args) => login::login_command(&cli, args),
        Command::Logout { account } => login::logout_command(&cli, account),
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

fn info_command(cli: &Cli, account: &str) -> Result<u8> {
    let config = load_config(cli)?;
    let account = one_account(&config, account)?;
    let output = Output::new(cli.quiet, false, cli.color, false);
    let opts = connect_options(cli, &output);
    let info = match crate::commands::info::probe(account, &opts) {
        Ok(info) => info,
        Err(e) => {
            // The source's failure decides the exit code; the target is
            // probed all the same, so one run shows both sides.
            if let Some(target) = crate::commands::info::target_report(account, &opts) {
                println!("{target}");
            }
            return Err(e.into());
        }
    };
    println!("{}", info.render(account));
    Ok(info.code())
}

/// `word` as one shell word: as it is when it needs no quoting.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%=,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
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
        oauth: server.oauth,
        also: server.also.as_deref(),
        maildir: &maildir,
    });
    crate::config::parse(&text, &path)?;
    init::write(&path, &text)?;
    if !cli.quiet {
        eprintln!("wrote {} (mode 600)", path.display());
        eprintln!("next:");
        // The commands as they will work: with -c when the file is not
        // where popfetch looks by itself.
        let prog = match &cli.config {
            Some(p) => format!("popfetch -c {}", shell_word(&p.display().to_string())),
            None => "popfetch".to_string(),
        };
        let mut steps = vec![
            (format!("{prog} accounts"), "check the settings"),
            (
                format!("{prog} info {account}"),
                "see the server and its certificate",
            ),
        ];
        if server.oauth.is_some_and(|o| o.only) {
            steps.push((
                format!("{prog} login {account}"),
                "sign in, once oauth_client_id is set (README: OAuth2)",
            ));
            steps.push((format!("{prog} sync {account}"), "fetch your mail"));
        } else {
            steps.push((
                format!("{prog} sync {account}"),
                "fetch your mail (asks for the password)",
            ));
        }
        let width = steps.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
        for (command, why) in &steps {
            eprintln!("  {command:<width$} # {why}");
        }
        if !server.oauth.is_some_and(|o| o.only) {
            eprintln!("for cron or a timer, set password_command in the file (it lists ways to)");
        }
        if let Some(also) = &server.also {
            eprintln!("{also}");
        }
    }
    Ok(0)
}
