//! What the config says about one OAuth2 login, validated: the endpoints,
//! scopes, client and where its tokens are kept. Apart from the code that
//! uses it, so the config can hold it without depending on that code.

use std::path::PathBuf;
use std::time::Duration;

use super::providers::Provider;
use crate::config::secret::Secret;
use crate::error::{Error, Result};

/// Where the client secret comes from, if the provider wants one.
#[derive(Clone, Debug)]
pub enum ClientSecret {
    None,
    Inline(Secret),
    Command(String),
}

/// The OAuth2 settings of an account or a `[targets.NAME]` table,
/// validated, with where its tokens are kept.
#[derive(Clone, Debug)]
pub struct OAuth {
    /// `oauth = "google" | "microsoft"`, when set.
    pub provider: Option<Provider>,
    pub auth_url: Option<String>,
    pub token_url: String,
    pub device_url: Option<String>,
    pub scopes: Vec<String>,
    /// Required to sign in; left empty by `init` for the user to fill.
    pub client_id: Option<String>,
    pub client_secret: ClientSecret,
    /// The token file in the state directory.
    pub store: PathBuf,
    /// What `popfetch login` needs as ACCOUNT to renew this login.
    pub login_account: String,
    /// Limit for `oauth_client_secret_command`.
    pub command_timeout: Duration,
}

impl OAuth {
    /// The hint every "log in again" error ends with.
    pub fn login_hint(&self) -> String {
        format!("run `popfetch login {}`", self.login_account)
    }

    pub fn client_id(&self) -> Result<&str> {
        self.client_id.as_deref().ok_or_else(|| {
            Error::config(format!(
                "no oauth_client_id for `{}`: register popfetch as an application with \
                 your provider (the README says how) and set oauth_client_id",
                self.login_account
            ))
        })
    }
}
