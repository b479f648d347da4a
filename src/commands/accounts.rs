//! `popfetch accounts`: what the config says each account does, checked
//! without touching a server (paths, the CA file, where the password
//! comes from), as text or JSON.

use anyhow::Result;
use serde_json::json;

use super::load_config;
use crate::cli::{AccountsArgs, Cli};
use crate::config::{Account, Config, PasswordSource, Target};
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
    let target_ca = match &a.target {
        Target::Smtp(w) | Target::Lmtp(w) => w.trust.ca_file.as_ref().map(|p| ("smtp_ca_file", p)),
        Target::Imap(t) => t.trust.ca_file.as_ref().map(|p| ("ca_file", p)),
        _ => None,
    };
    for (key, ca) in a
        .trust
        .ca_file
        .as_ref()
        .map(|p| ("ca_file", p))
        .into_iter()
        .chain(target_ca)
    {
        if !ca.is_file() {
            errors.push(format!(
                "{key} {} does not exist (or is not a file); fix the path or remove the key",
                ca.display()
            ));
        }
    }
    let target = match &a.target {
        Target::Maildir(p) | Target::Mbox(p) => Some(p),
        Target::Mda(_) | Target::Imap(_) | Target::Lmtp(_) | Target::Smtp(_) => None,
    };
    // OAuth logins not ready yet: a warning, as a sync would say it.
    let mut oauth = Vec::new();
    if let PasswordSource::OAuth(o) = &a.password {
        oauth.push(("", &**o));
    }
    if let crate::config::Target::Imap(t) = &a.target {
        if let PasswordSource::OAuth(o) = &t.password {
            oauth.push((" (imap_target)", &**o));
        }
    }
    for (whose, o) in oauth {
        if o.client_id.is_none() {
            warnings.push(format!(
                "no oauth_client_id{whose}: register popfetch with the provider (README, OAuth2) and set it"
            ));
        } else if !o.store.exists() {
            warnings.push(format!("not signed in{whose}: {}", o.login_hint()));
        }
    }
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
    source_name(&a.password)
}

fn source_name(password: &PasswordSource) -> &'static str {
    match password {
        PasswordSource::Inline(_) => "password (in the config file)",
        PasswordSource::Command(_) => "password_command",
        PasswordSource::Prompt => "prompt",
        PasswordSource::OAuth(_) => "oauth",
    }
}

/// The target's own connection, for JSON: where it is, the login (never
/// the secret), how its certificate is checked.
fn target_json(target: &Target) -> serde_json::Value {
    match target {
        Target::Maildir(p) => json!({ "type": "maildir", "path": p.display().to_string() }),
        Target::Mbox(p) => json!({ "type": "mbox", "path": p.display().to_string() }),
        Target::Mda(cmd) => json!({ "type": "mda", "path": cmd }),
        Target::Imap(t) => json!({
            "type": "imap_target",
            "path": t.url,
            "name": t.name,
            "url": t.url,
            "folder": t.folder,
            "user": t.user,
            "auth": t.auth.name(),
            "password_source": source_name(&t.password),
            "ca_file": t.trust.ca_file.as_ref().map(|p| p.display().to_string()),
            "tls_fingerprint": t.trust.fingerprints.iter().map(net::format_fingerprint).collect::<Vec<_>>(),
        }),
        Target::Lmtp(w) | Target::Smtp(w) => {
            let kind = if matches!(target, Target::Lmtp(_)) {
                "lmtp"
            } else {
                "smtp"
            };
            json!({
                "type": kind,
                "path": w.url,
                "url": w.url,
                "deliver_to": w.deliver_to,
                "smtp_user": w.login.as_ref().map(|l| l.user.clone()),
                "smtp_auth": w.login.as_ref().map(|l| l.auth.name()),
                "password_source": w.login.as_ref().map(|l| source_name(&l.password)),
                "ca_file": w.trust.ca_file.as_ref().map(|p| p.display().to_string()),
                "tls_fingerprint": w.trust.fingerprints.iter().map(net::format_fingerprint).collect::<Vec<_>>(),
            })
        }
    }
}

fn account_json(a: &Account, config: &Config) -> serde_json::Value {
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
        "destination": target_json(&a.target),
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
    match &a.target {
        Target::Lmtp(w) | Target::Smtp(w) => {
            match (&w.deliver_to, crate::target::lmtp::local_user()) {
                (Some(to), _) => lines.push(format!("  recipient    {to}")),
                (None, Some(user)) => lines.push(format!(
                    "  recipient    {user} (your user name: no deliver_to)"
                )),
                (None, None) => lines.push(
                    "  recipient    none: set deliver_to (no USER or LOGNAME to default to)"
                        .to_string(),
                ),
            }
            if let Some(l) = &w.login {
                lines.push(format!(
                    "  relay login  {} (smtp_auth {}, {})",
                    l.user,
                    l.auth.name(),
                    source_name(&l.password)
                ));
            }
            if let Some(ca) = &w.trust.ca_file {
                lines.push(format!("  relay ca     {}", ca.display()));
            }
            for fp in &w.trust.fingerprints {
                lines.push(format!("  relay pinned {}", net::format_fingerprint(fp)));
            }
        }
        Target::Imap(t) => {
            lines.push(format!(
                "  target login {} on {}:{} ({} TLS, auth {}, {})",
                t.user,
                t.host,
                t.port,
                t.tls.name(),
                t.auth.name(),
                source_name(&t.password)
            ));
            if let Some(ca) = &t.trust.ca_file {
                lines.push(format!("  target ca    {}", ca.display()));
            }
            for fp in &t.trust.fingerprints {
                lines.push(format!("  target pin   {}", net::format_fingerprint(fp)));
            }
        }
        Target::Maildir(_) | Target::Mbox(_) | Target::Mda(_) => {}
    }
    let on_server = match (a.keep, a.keep_days) {
        (false, _) => "delete after delivery".to_string(),
        (true, Some(days)) => format!("keep, then delete {days} days after delivery (keep_days)"),
        (true, None) => "keep".to_string(),
    };
    lines.push(format!("  on server    {on_server}"));
    if let Some(max) = a.max_size {
        lines.push(format!(
            "  max_size     {} (larger messages stay on the server)",
            crate::ui::units::human_bytes(max)
        ));
    }
    if let Some(filter) = &a.filter {
        lines.push(format!("  filter       {filter}"));
    }
    if let Some(folder) = &a.folder {
        lines.push(format!("  folder       {folder} (POP2)"));
    }
    if let Some(imap) = &a.imap {
        lines.push(format!("  folders      {}", imap.folders.join(", ")));
        let fetch = match imap.fetch {
            crate::config::FetchMode::New => "new (not in the seen state)",
            crate::config::FetchMode::Unseen => "unseen (no \\Seen flag)",
        };
        lines.push(format!("  fetch        {fetch}"));
        if imap.mark_seen {
            lines.push("  mark_seen    yes (fetched messages get \\Seen)".to_string());
        }
        if let Some(to) = &imap.move_to {
            lines.push(format!("  move to      {to} (instead of deleting)"));
        }
        if imap.idle {
            lines.push("  idle         yes (watch waits with IMAP IDLE)".to_string());
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
