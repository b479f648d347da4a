//! The commands: what each subcommand does with the config, the store and
//! the servers. Errors go up as `anyhow` with a typed [`Error`] inside, so
//! the binary can map them to an exit code.

use std::path::PathBuf;

use anyhow::Result;
use serde_json::json;

use crate::cli::{AccountsArgs, Cli, Command, SyncArgs};
use crate::config::{Account, Config, PasswordSource};
use crate::connect::ConnectOptions;
use crate::docs;
use crate::net;
use crate::report::{self, Output};
use crate::sync::{self, SyncOptions};

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
    }
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
        connect: ConnectOptions {
            trace: cli.verbose >= 2,
        },
    };
    let mut kinds = Vec::new();
    for account in accounts {
        let progress = output.progress(&account.name);
        let report = sync::sync_account(account, &config.state_dir, &opts, &progress);
        output.sync_report(&report);
        kinds.push(report.error.as_ref().map(|e| e.kind()));
    }
    Ok(report::combined_exit(&kinds).map(|k| k.code()).unwrap_or(0))
}

fn accounts_command(cli: &Cli, args: &AccountsArgs) -> Result<u8> {
    let config = load_config(cli)?;
    for a in &config.accounts {
        if args.json {
            report::print_json_line(&account_json(a, &config));
        } else {
            println!("{}", account_text(a, &config));
        }
    }
    Ok(0)
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
        crate::config::Target::Maildir(p) => ("maildir", p),
        crate::config::Target::Mbox(p) => ("mbox", p),
    };
    json!({
        "account": a.name,
        "host": a.host,
        "port": a.port,
        "protocol": "pop3",
        "tls": a.tls.name(),
        "auth": a.auth.name(),
        "user": a.user,
        "password_source": password_source(a),
        "ca_file": a.trust.ca_file.as_ref().map(|p| p.display().to_string()),
        "tls_fingerprint": a.trust.fingerprints.iter().map(net::format_fingerprint).collect::<Vec<_>>(),
        "destination": { "type": kind, "path": path.display().to_string() },
        "keep": a.keep,
        "timeout": a.timeout.as_secs(),
        "identity": a.identity(),
        "state_dir": config.state_dir.display().to_string(),
    })
}

fn account_text(a: &Account, config: &Config) -> String {
    let mut lines = vec![
        format!("[{}]", a.name),
        format!(
            "  server       {}:{} ({} TLS)",
            a.host,
            a.port,
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
    lines.push(format!("  timeout      {} s", a.timeout.as_secs()));
    lines.push(format!(
        "  seen state   {} in {}",
        a.identity(),
        config.state_dir.display()
    ));
    lines.join("\n")
}
