//! `popfetch accounts`: what the config says each account does, checked
//! without touching a server (paths, the CA file, where the password
//! comes from), as text or JSON.

use anyhow::Result;
use serde_json::json;

use super::load_config;
use crate::cli::{AccountsArgs, Cli};
use crate::config::{Account, Config, PasswordSource};
use crate::error::ExitKind;
use crate::net;
use crate::ui::report::{self, Output};

pub(super) fn accounts_command(cli: &Cli, args: &AccountsArgs) -> Result<u8> {
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
        crate::config::Target::Mda(_)
        | crate::config::Target::Imap(_)
        | crate::config::Target::Lmtp(_)
        | crate::config::Target::Smtp(_) => None,
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
        crate::config::Target::Imap(t) => ("imap_target", t.url.clone()),
        crate::config::Target::Lmtp(w) => ("lmtp", w.url.clone()),
        crate::config::Target::Smtp(w) => ("smtp", w.url.clone()),
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
        "interval": a.interval.as_secs(),
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
    lines.push(format!(
        "  interval     {} (watch)",
        crate::watch::events::human_duration(a.interval)
    ));
    let identities: Vec<String> = a.per_folder().iter().map(Account::identity).collect();
    lines.push(format!(
        "  seen state   {} in {}",
        identities.join(", "),
        config.state_dir.display()
    ));
    lines.join("\n")
}
