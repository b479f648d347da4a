//! Validator for the OAuth2 keys (SPEC §8): `oauth`, `oauth_auth_url`,
//! `oauth_token_url`, `oauth_device_url`, `oauth_scopes`,
//! `oauth_client_id`, `oauth_client_secret` / `oauth_client_secret_command`.
//! With any of them set, the token comes from `popfetch login` and the
//! store, so `password` and `password_command` must go, and `auth` must
//! be a mechanism that carries a token: "auto" becomes "xoauth2", the
//! one both Google and Microsoft take for POP3 and IMAP.

use std::path::PathBuf;
use std::time::Duration;

use toml::de::DeValue;

use super::keys::{did_you_mean, OAUTH_KEYS};
use super::password::PasswordSource;
use super::section::{Section, Value};
use super::Protocol;
use crate::error::Result;
use crate::oauth::providers::Provider;
use crate::oauth::settings::{ClientSecret, OAuth};
use crate::source::pop3::auth::AuthMethod;

/// Where one login's tokens go and who renews it.
pub(super) struct Login {
    pub store: PathBuf,
    pub account: String,
    pub command_timeout: Duration,
}

/// The section's `auth` and secret source once its OAuth keys are read:
/// unchanged without them.
pub(super) fn apply(
    s: &Section,
    protocol: Protocol,
    auth: AuthMethod,
    password: PasswordSource,
    login: Login,
) -> Result<(AuthMethod, PasswordSource)> {
    let Some(first) = OAUTH_KEYS.iter().find_map(|(k, _)| s.get(k)) else {
        return Ok((auth, password));
    };
    if protocol == Protocol::Pop2 {
        return Err(first.err("POP2 has no OAuth login: remove the oauth keys"));
    }
    if !matches!(password, PasswordSource::Prompt) {
        let v = s.get("password").or_else(|| s.get("password_command"));
        return Err(v.expect("a password key is set").err(format!(
            "{} sets `{}` and OAuth keys: with oauth, popfetch gets the token itself \
             (`popfetch login`); remove `{}`",
            s.header,
            v.expect("set").key,
            v.expect("set").key
        )));
    }
    let auth = match auth {
        AuthMethod::Auto => AuthMethod::XOAuth2,
        AuthMethod::XOAuth2 | AuthMethod::OAuthBearer => auth,
        other => {
            let v = s.get("auth").expect("auth is set when it is not auto");
            return Err(v.err(format!(
                "auth = \"{}\" sends a password, not an OAuth token: set auth = \"xoauth2\" or \
                 \"oauthbearer\" (or \"auto\", which means xoauth2 with oauth)",
                other.name()
            )));
        }
    };
    Ok((auth, PasswordSource::OAuth(Box::new(settings(s, login)?))))
}

fn settings(s: &Section, login: Login) -> Result<OAuth> {
    let provider = provider(s.get("oauth"))?;
    let url = |key: &str, builtin: Option<&'static str>| -> Result<Option<String>> {
        match s.str(key)? {
            Some((text, v)) => Ok(Some(endpoint(text, &v)?)),
            None => Ok(builtin.map(str::to_string)),
        }
    };
    let auth_url = url("oauth_auth_url", provider.map(Provider::auth_url))?;
    let device_url = url("oauth_device_url", provider.map(Provider::device_url))?;
    let Some(token_url) = url("oauth_token_url", provider.map(Provider::token_url))? else {
        return Err(s.err(format!(
            "{} has OAuth keys but no token endpoint: set oauth = \"google\" or \"microsoft\", \
             or oauth_token_url (with oauth_auth_url and/or oauth_device_url)",
            s.header
        )));
    };
    if auth_url.is_none() && device_url.is_none() {
        return Err(s.err(format!(
            "{}: no way to sign in: set oauth_auth_url (browser) or oauth_device_url (--device)",
            s.header
        )));
    }
    let scopes = match s.get("oauth_scopes") {
        Some(v) => scopes(&v)?,
        None => provider
            .map(|p| p.scopes().iter().map(|s| s.to_string()).collect())
            .unwrap_or_default(),
    };
    let client_id = match s.str("oauth_client_id")? {
        Some((id, v)) => {
            if id.bytes().any(|b| b.is_ascii_control()) {
                return Err(v.err("`oauth_client_id` must not contain control characters"));
            }
            Some(id.trim().to_string()).filter(|id| !id.is_empty())
        }
        None => None,
    };
    let client_secret = match super::password::inline_or_command(s, "oauth_client_secret")? {
        Some(PasswordSource::Inline(secret)) => ClientSecret::Inline(secret),
        Some(PasswordSource::Command(cmd)) => ClientSecret::Command(cmd),
        _ => ClientSecret::None,
    };
    Ok(OAuth {
        provider,
        auth_url,
        token_url,
        device_url,
        scopes,
        client_id,
        client_secret,
        store: login.store,
        login_account: login.account,
        command_timeout: login.command_timeout,
    })
}

/// `oauth = "google" | "microsoft"`.
fn provider(v: Option<Value>) -> Result<Option<Provider>> {
    let Some(v) = v else {
        return Ok(None);
    };
    let name = v.str()?;
    if let Some((_, p)) = Provider::ALL
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        return Ok(Some(*p));
    }
    let names: Vec<&str> = Provider::ALL.iter().map(|(n, _)| *n).collect();
    let hint = did_you_mean(&name.to_ascii_lowercase(), &names)
        .map(|k| format!("; did you mean \"{k}\"?"))
        .unwrap_or_else(|| {
            "; for another provider set oauth_token_url and oauth_auth_url instead".to_string()
        });
    Err(v.err(format!(
        "oauth = {name:?}: expected \"google\" or \"microsoft\"{hint}"
    )))
}

/// An endpoint URL: https, or plain http to this machine only (a token
/// must never cross the network in clear).
fn endpoint(text: &str, v: &Value) -> Result<String> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| {
            lower
                .strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
        });
    if t.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(v.err(format!(
            "`{}` must not contain spaces or control characters",
            v.key
        )));
    }
    let https = lower.starts_with("https://") && t.len() > "https://".len();
    if !(https || loopback) {
        return Err(v.err(format!(
            "{} = {t:?}: expected an https:// address (plain http only to 127.0.0.1 or localhost)",
            v.key
        )));
    }
    Ok(t.to_string())
}

/// `oauth_scopes`: a list of strings, or one string of space-separated
/// scopes.
fn scopes(v: &Value) -> Result<Vec<String>> {
    let items: Vec<String> = match v.toml() {
        DeValue::String(s) => s.split_whitespace().map(str::to_string).collect(),
        DeValue::Array(a) => a
            .iter()
            .map(|item| {
                item.get_ref()
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| v.err("oauth_scopes: every entry must be a string"))
            })
            .collect::<Result<_>>()?,
        other => {
            return Err(v.err(format!(
                "oauth_scopes must be a list of strings, not {}",
                other.type_str()
            )))
        }
    };
    if items
        .iter()
        .any(|s| s.is_empty() || s.contains(char::is_whitespace))
    {
        return Err(v.err("oauth_scopes: a scope is one word; give several as a list"));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{parse, PasswordSource, Target};
    use crate::error::ExitKind;
    use crate::source::pop3::auth::AuthMethod;

    const BASE: &str =
        "state_dir = \"/s\"\n[accounts.work]\nhost = \"imap.gmail.com\"\nuser = \"me\"\nprotocol = \"imap\"\nmaildir = \"m\"\n";

    fn parse_str(s: &str) -> crate::error::Result<crate::config::Config> {
        parse(s, Path::new("/etc/popfetch/config.toml"))
    }

    #[test]
    fn a_provider_fills_in_endpoints_and_scopes_and_auto_means_xoauth2() {
        let c = parse_str(&format!(
            "{BASE}oauth = \"google\"\noauth_client_id = \"id\"\n"
        ))
        .unwrap();
        let a = &c.accounts[0];
        assert_eq!(a.auth, AuthMethod::XOAuth2);
        let PasswordSource::OAuth(o) = &a.password else {
            panic!("{:?}", a.password)
        };
        assert_eq!(o.token_url, "https://oauth2.googleapis.com/token");
        assert_eq!(o.scopes, ["https://mail.google.com/"]);
        assert_eq!(o.client_id.as_deref(), Some("id"));
        assert_eq!(o.store, Path::new("/s/oauth/account-work.json"));
        assert_eq!(o.login_hint(), "run `popfetch login work`");
        let c = parse_str(&format!(
            "{BASE}oauth = \"microsoft\"\nauth = \"oauthbearer\"\n"
        ))
        .unwrap();
        assert_eq!(c.accounts[0].auth, AuthMethod::OAuthBearer);
        // Without any oauth key, xoauth2 still takes its token from
        // password_command, as before.
        let c = parse_str(&format!(
            "{BASE}auth = \"xoauth2\"\npassword_command = \"x\"\n"
        ))
        .unwrap();
        assert!(matches!(c.accounts[0].password, PasswordSource::Command(_)));
    }

    #[test]
    fn custom_endpoints_and_scopes() {
        let c = parse_str(&format!(
            "{BASE}oauth_token_url = \"http://127.0.0.1:9/token\"\noauth_device_url = \"http://127.0.0.1:9/device\"\noauth_scopes = [\"a\", \"b\"]\noauth_client_id = \"x\"\noauth_client_secret_command = \"pass x\"\n"
        ))
        .unwrap();
        let PasswordSource::OAuth(o) = &c.accounts[0].password else {
            panic!()
        };
        assert_eq!(o.auth_url, None);
        assert_eq!(o.scopes, ["a", "b"]);
        assert!(matches!(
            o.client_secret,
            crate::oauth::ClientSecret::Command(_)
        ));
    }

    #[test]
    fn mistakes_are_named() {
        for (extra, needle) in [
            ("oauth = \"gogle\"", "did you mean \"google\""),
            ("oauth = \"google\"\nauth = \"plain\"", "sends a password, not an OAuth token"),
            ("oauth = \"google\"\npassword_command = \"x\"", "remove `password_command`"),
            ("oauth_client_id = \"x\"", "no token endpoint"),
            (
                "oauth_token_url = \"http://example.com/t\"\noauth_auth_url = \"https://e/a\"",
                "plain http only to 127.0.0.1",
            ),
            ("oauth_token_url = \"https://e/t\"", "no way to sign in"),
            ("oauth = \"google\"\noauth_scopes = 3", "list of strings"),
            (
                "oauth = \"google\"\noauth_client_secret = \"a\"\noauth_client_secret_command = \"b\"",
                "keep one",
            ),
            ("oauth = \"google\"\noauth_clientid = \"a\"", "did you mean `oauth_client_id`"),
        ] {
            let err = parse_str(&format!("{BASE}{extra}\n")).unwrap_err();
            assert_eq!(err.kind(), ExitKind::Config, "{extra}");
            assert!(err.to_string().contains(needle), "{extra}: {err}");
        }
    }

    #[test]
    fn a_client_secret_in_a_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        for text in [
            format!("{BASE}oauth = \"google\"\noauth_client_secret = \"s\"\n"),
            "[targets.t]\nurl = \"imaps://h/\"\nuser = \"me\"\noauth = \"google\"\noauth_client_secret = \"s\"\n"
                .to_string(),
        ] {
            std::fs::write(&path, &text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = crate::config::Config::load(&path).unwrap_err();
            assert!(err.to_string().contains("chmod 600"), "{err}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            crate::config::Config::load(&path).unwrap();
        }
        // A command is no secret in the file.
        std::fs::write(
            &path,
            format!("{BASE}oauth = \"google\"\noauth_client_secret_command = \"s\"\n"),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        crate::config::Config::load(&path).unwrap();
    }

    #[test]
    fn a_target_login_is_renewed_through_the_account() {
        let c = parse_str(
            "state_dir = \"/s\"\n[accounts.pop]\nhost = \"h\"\nuser = \"u\"\nimap_target = \"gmail\"\n[targets.gmail]\nurl = \"imaps://imap.gmail.com/\"\nuser = \"me\"\noauth = \"google\"\n",
        )
        .unwrap();
        let Target::Imap(t) = &c.accounts[0].target else {
            panic!()
        };
        let PasswordSource::OAuth(o) = &t.password else {
            panic!()
        };
        assert_eq!(t.auth, AuthMethod::XOAuth2);
        assert_eq!(o.store, Path::new("/s/oauth/target-gmail.json"));
        assert_eq!(o.login_account, "pop");
    }
}
