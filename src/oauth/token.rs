//! The token endpoint (RFC 6749 §4.1.3, §6; RFC 8628 §3.4): what popfetch
//! sends for each grant and what it makes of the reply. A token is a
//! [`Secret`] from the moment it is parsed.

use serde_json::Value;

use super::http::{self, Reply};
use super::OAuth;
use crate::config::secret::Secret;
use crate::error::{Error, ExitKind, Result};

/// What the endpoint granted.
pub struct Granted {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    /// Seconds from now.
    pub expires_in: Option<i64>,
}

/// An OAuth error reply (RFC 6749 §5.2).
pub struct Refusal {
    pub status: u16,
    /// `invalid_grant`, `authorization_pending`…; empty when the reply
    /// had no JSON error.
    pub error: String,
    pub description: Option<String>,
}

impl Refusal {
    /// "invalid_grant (the refresh token was revoked)", for messages.
    pub fn describe(&self) -> String {
        let what = if self.error.is_empty() {
            format!("HTTP status {}", self.status)
        } else {
            self.error.clone()
        };
        match &self.description {
            // The provider's words, not ours: control characters escaped.
            Some(d) => format!("{what} ({})", crate::ui::term::escape_controls(d)),
            None => what,
        }
    }
}

/// POSTs a grant with the client's id (and secret, if it has one).
pub fn request(
    oauth: &OAuth,
    grant: &[(&str, &str)],
    trace: Option<&dyn Fn(&str)>,
) -> Result<std::result::Result<Granted, Refusal>> {
    let client_id = oauth.client_id()?;
    let secret = super::client_secret(oauth)?;
    let mut form: Vec<(&str, &str)> = grant.to_vec();
    form.push(("client_id", client_id));
    if let Some(s) = &secret {
        form.push(("client_secret", s.expose()));
    }
    Ok(parse(http::post_form(&oauth.token_url, &form, trace)?))
}

fn parse(reply: Reply) -> std::result::Result<Granted, Refusal> {
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let token = str_of(&reply.json, "access_token").filter(|t| !t.is_empty());
    match token {
        Some(access) if (200..300).contains(&reply.status) => Ok(Granted {
            access_token: Secret::new(access),
            refresh_token: str_of(&reply.json, "refresh_token")
                .filter(|t| !t.is_empty())
                .map(Secret::new),
            // Some providers send the number as a string.
            expires_in: reply.json.get("expires_in").and_then(|v| {
                v.as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            }),
        }),
        _ => Err(Refusal {
            status: reply.status,
            error: str_of(&reply.json, "error").unwrap_or_default(),
            description: str_of(&reply.json, "error_description"),
        }),
    }
}

/// Exchanges a refresh token for a new access token (RFC 6749 §6). A
/// refused refresh means signing in again, and says so (exit 77).
pub fn refresh(
    oauth: &OAuth,
    refresh_token: &Secret,
    trace: Option<&dyn Fn(&str)>,
) -> Result<Granted> {
    let grant = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.expose()),
    ];
    request(oauth, &grant, trace)?
        .map_err(|r| refused(oauth, "refreshing the OAuth access token", &r))
}

/// The error for a refusal of the token endpoint: the client's own
/// settings (78) or the grant (77, sign in again); a server error is
/// temporary.
pub fn refused(oauth: &OAuth, doing: &str, r: &Refusal) -> Error {
    let (kind, advice) = match r.error.as_str() {
        "invalid_client" | "unauthorized_client" => (
            ExitKind::Config,
            "check oauth_client_id and the client secret".to_string(),
        ),
        _ if r.status >= 500 => (ExitKind::TempFail, "try again later".to_string()),
        _ => (ExitKind::NoPerm, oauth.login_hint()),
    };
    Error::new(
        kind,
        format!(
            "{}: {doing}: the provider refused: {}; {advice}",
            oauth.login_account,
            r.describe()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn oauth() -> OAuth {
        OAuth {
            provider: None,
            auth_url: None,
            token_url: "https://t".into(),
            device_url: None,
            scopes: Vec::new(),
            client_id: Some("id".into()),
            client_secret: crate::oauth::ClientSecret::None,
            store: "/s/oauth/account-a.json".into(),
            login_account: "a".into(),
            command_timeout: std::time::Duration::from_secs(1),
        }
    }

    #[test]
    fn replies_are_parsed_with_or_without_the_optional_fields() {
        let ok = |json: Value| parse(Reply { status: 200, json });
        let g = ok(json!({"access_token": "A", "expires_in": "3599", "refresh_token": "R"}))
            .ok()
            .unwrap();
        assert_eq!(g.access_token.expose(), "A");
        assert_eq!(g.refresh_token.unwrap().expose(), "R");
        assert_eq!(g.expires_in, Some(3599));
        let g = ok(json!({"access_token": "A"})).ok().unwrap();
        assert!(g.refresh_token.is_none() && g.expires_in.is_none());
        // An empty token is no token.
        assert!(ok(json!({"access_token": ""})).is_err());
        let r = parse(Reply {
            status: 400,
            json: json!({"error": "invalid_grant", "error_description": "revoked\n"}),
        })
        .err()
        .unwrap();
        assert_eq!(r.describe(), "invalid_grant (revoked\\x0a)");
    }

    #[test]
    fn refusals_are_classified_and_name_the_fix() {
        let refusal = |status, error: &str| Refusal {
            status,
            error: error.into(),
            description: None,
        };
        let e = refused(&oauth(), "refreshing", &refusal(400, "invalid_grant"));
        assert_eq!(e.kind(), ExitKind::NoPerm);
        assert!(e.to_string().contains("run `popfetch login a`"), "{e}");
        let e = refused(&oauth(), "refreshing", &refusal(401, "invalid_client"));
        assert_eq!(e.kind(), ExitKind::Config);
        let e = refused(&oauth(), "refreshing", &refusal(503, ""));
        assert_eq!(e.kind(), ExitKind::TempFail);
        assert!(e.to_string().contains("HTTP status 503"), "{e}");
    }
}
