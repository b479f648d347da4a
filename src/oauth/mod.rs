//! OAuth2 sign-in built in (SPEC §8): popfetch gets, keeps and refreshes the
//! access token that XOAUTH2 and OAUTHBEARER send, so no helper script is
//! needed in `password_command`.
//!
//! ```text
//! providers  google and microsoft: endpoints, scopes, extra parameters
//! settings   what the config says about one login (the validated keys)
//! http       one form POST with ureq over our rustls, JSON back
//! token      the token endpoint: code, device code and refresh grants
//! store      the tokens on disk: owner-only, atomic, locked for refresh
//! pkce       random strings, PKCE S256, URL encoding
//! code       `popfetch login`: authorization code + PKCE, loopback redirect
//! device     `popfetch login --device`: the device authorization grant
//! ```
//!
//! Tokens are [`Secret`]s from the moment they are parsed: nothing prints
//! them, `-vv` included.

pub mod code;
pub mod device;
mod http;
mod pkce;
pub mod providers;
pub mod settings;
pub mod store;
mod token;

use crate::config::secret::Secret;
use crate::error::{Error, ExitKind, Result};

pub use providers::Provider;
pub use settings::{ClientSecret, OAuth};

/// The client secret, if the login has one: `oauth_client_secret_command`
/// runs here, when a token request needs it.
fn client_secret(oauth: &OAuth) -> Result<Option<Secret>> {
    Ok(match &oauth.client_secret {
        ClientSecret::None => None,
        ClientSecret::Inline(s) => Some(s.clone()),
        ClientSecret::Command(cmd) => Some(
            crate::config::password::run_command(cmd, oauth.command_timeout).map_err(|e| {
                Error::config(
                    e.message()
                        .replace("password_command", "oauth_client_secret_command"),
                )
            })?,
        ),
    })
}

/// Where the lines about OAuth go: `-v` says when a token is refreshed,
/// `-vv` shows each HTTP request and reply with every secret as `***`.
#[derive(Clone, Copy)]
pub struct Log<'a> {
    pub verbose: &'a dyn Fn(&str),
    pub trace: Option<&'a dyn Fn(&str)>,
}

impl Log<'static> {
    /// Nothing is said.
    pub const SILENT: Log<'static> = Log {
        verbose: &|_| {},
        trace: None,
    };
}

/// How close to its expiry an access token is refreshed: a session that
/// starts with a token about to expire would be refused half-way.
const REFRESH_MARGIN_SECS: i64 = 60;

/// The access token to log in with: the stored one, or a fresh one when it
/// has expired or is about to. `rejected`: the server refused this token,
/// so it is refreshed whatever its expiry says (unless another process
/// has already replaced it). Parallel sessions sharing one login hold the
/// token file's lock in turn, so only the first refreshes.
pub fn access_token(oauth: &OAuth, rejected: Option<&Secret>, log: Log) -> Result<Secret> {
    let _lock = store::lock(&oauth.store)?;
    let Some(mut tokens) = store::read(&oauth.store)? else {
        return Err(Error::new(
            ExitKind::NoPerm,
            format!(
                "not signed in with OAuth for `{}`: {}",
                oauth.login_account,
                oauth.login_hint()
            ),
        ));
    };
    let now = crate::state::store::now_secs();
    let fresh = tokens
        .expires_at
        .is_none_or(|at| at > now + REFRESH_MARGIN_SECS);
    let refused = rejected.is_some_and(|r| r.expose() == tokens.access_token.expose());
    if fresh && !refused {
        return Ok(tokens.access_token);
    }
    let Some(refresh) = tokens.refresh_token.clone() else {
        return Err(Error::new(
            ExitKind::NoPerm,
            format!(
                "the OAuth access token for `{}` {} and the provider gave no refresh token: {}",
                oauth.login_account,
                if refused {
                    "was refused by the server"
                } else {
                    "has expired"
                },
                oauth.login_hint()
            ),
        ));
    };
    (log.verbose)(&format!(
        "{}: refreshing the OAuth access token ({}) at {}",
        oauth.login_account,
        if refused {
            "the server refused it"
        } else {
            "it has expired or is about to"
        },
        oauth.token_url
    ));
    let granted = token::refresh(oauth, &refresh, log.trace)?;
    tokens.access_token = granted.access_token;
    tokens.expires_at = granted.expires_in.map(|s| now + s);
    // A provider that rotates refresh tokens sends a new one with every
    // refresh; the old one may already be void, so it is replaced in the
    // same atomic write as the access token.
    if let Some(rotated) = granted.refresh_token {
        tokens.refresh_token = Some(rotated);
    }
    store::write(&oauth.store, &tokens)?;
    Ok(tokens.access_token)
}

/// Stores what a login got, replacing any earlier login.
fn keep(oauth: &OAuth, granted: token::Granted) -> Result<bool> {
    let now = crate::state::store::now_secs();
    let has_refresh = granted.refresh_token.is_some();
    let _lock = store::lock(&oauth.store)?;
    store::write(
        &oauth.store,
        &store::Tokens {
            access_token: granted.access_token,
            refresh_token: granted.refresh_token,
            expires_at: granted.expires_in.map(|s| now + s),
        },
    )?;
    Ok(has_refresh)
}
