//! `popfetch login ACCOUNT [--device]` and `popfetch logout ACCOUNT`: the
//! OAuth2 logins of an account, its server's and its imap_target's.

use anyhow::Result;

use super::{load_config, one_account};
use crate::cli::{Cli, LoginArgs};
use crate::config::{Account, PasswordSource, Target};
use crate::error::Error;
use crate::oauth::{self, OAuth};

/// The account's OAuth logins, each with what it signs in to.
fn logins(account: &Account) -> Vec<(String, &OAuth)> {
    let mut out = Vec::new();
    if let PasswordSource::OAuth(o) = &account.password {
        out.push((format!("{}@{}", account.user, account.host), &**o));
    }
    if let Target::Imap(t) = &account.target {
        if let PasswordSource::OAuth(o) = &t.password {
            out.push((
                format!("{}@{} ([targets.{}])", t.user, t.host, t.name),
                &**o,
            ));
        }
    }
    out
}

fn no_oauth(account: &Account) -> Error {
    Error::config(format!(
        "`{}` does not sign in with OAuth: set oauth = \"google\" or \"microsoft\" (or \
         oauth_token_url and oauth_auth_url) and oauth_client_id in [accounts.{}] \
         or in its [targets.NAME] table",
        account.name, account.name
    ))
}

pub(super) fn login_command(cli: &Cli, args: &LoginArgs) -> Result<u8> {
    let config = load_config(cli)?;
    let account = one_account(&config, &args.account)?;
    let logins = logins(account);
    if logins.is_empty() {
        return Err(no_oauth(account).into());
    }
    // What the user must act on is printed even with --quiet.
    let say = |line: &str| eprintln!("{line}");
    let label = format!("[{}]", account.name);
    let trace_line = |line: &str| eprintln!("{label} {line}");
    let trace: Option<&dyn Fn(&str)> = (cli.verbose >= 2).then_some(&trace_line);
    for (what, o) in logins {
        if !cli.quiet {
            eprintln!("{}: signing in to {what}", account.name);
        }
        let renewable = if args.device {
            oauth::device::login(o, &say, trace)?
        } else {
            oauth::code::login(o, &say, trace)?
        };
        if !cli.quiet {
            eprintln!(
                "{}: signed in to {what}; the tokens are kept in {}",
                account.name,
                o.store.display()
            );
        }
        if !renewable {
            eprintln!(
                "warning: {}: the provider gave no refresh token, so popfetch cannot renew \
                 this login: run popfetch login again when the access token expires",
                account.name
            );
        }
    }
    Ok(0)
}

pub(super) fn logout_command(cli: &Cli, name: &str) -> Result<u8> {
    let config = load_config(cli)?;
    let account = one_account(&config, name)?;
    let logins = logins(account);
    if logins.is_empty() {
        return Err(no_oauth(account).into());
    }
    for (what, o) in logins {
        let had = oauth::store::delete(&o.store)?;
        if !cli.quiet {
            if had {
                eprintln!("{}: forgot the tokens of {what}", account.name);
            } else {
                eprintln!("{}: was not signed in to {what}", account.name);
            }
        }
    }
    Ok(0)
}
