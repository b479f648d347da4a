//! `popfetch login --device`: the device authorization grant (RFC 8628)
//! for machines without a browser. The user opens the address on any
//! device and types the code; popfetch polls the token endpoint at the
//! pace the provider sets (`interval`, five seconds more after each
//! `slow_down`) until it answers or the code expires.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{http, token, OAuth};
use crate::error::{Error, ExitKind, Result};

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Signs in on another device and stores the tokens. Returns whether a
/// refresh token came with them.
pub fn login(oauth: &OAuth, say: &dyn Fn(&str), trace: Option<&dyn Fn(&str)>) -> Result<bool> {
    let Some(device_url) = &oauth.device_url else {
        return Err(Error::config(format!(
            "`{}` has no oauth_device_url: set it, or sign in in a browser with `popfetch login` (no --device)",
            oauth.login_account
        )));
    };
    let client_id = oauth.client_id()?;
    let scope = oauth.scopes.join(" ");
    let mut form = vec![("client_id", client_id)];
    if !scope.is_empty() {
        form.push(("scope", scope.as_str()));
    }
    let secret = super::client_secret(oauth)?;
    if let Some(s) = &secret {
        form.push(("client_secret", s.expose()));
    }
    let reply = http::post_form(device_url, &form, trace)?;
    let str_of = |k: &str| reply.json.get(k).and_then(Value::as_str);
    let num_of = |k: &str| reply.json.get(k).and_then(Value::as_u64);
    // Google says verification_url, RFC 8628 verification_uri.
    let (Some(device_code), Some(user_code), Some(uri)) = (
        str_of("device_code"),
        str_of("user_code"),
        str_of("verification_uri").or_else(|| str_of("verification_url")),
    ) else {
        let refusal = token::Refusal {
            status: reply.status,
            error: str_of("error").unwrap_or_default().to_string(),
            description: str_of("error_description").map(str::to_string),
        };
        return Err(token::refused(oauth, "asking for a device code", &refusal));
    };
    let escape = crate::ui::term::escape_controls;
    say(&format!(
        "On any device, open {} and enter the code {}",
        escape(uri),
        escape(user_code)
    ));
    if let Some(complete) = str_of("verification_uri_complete") {
        say(&format!("  (or open {} directly)", escape(complete)));
    }
    say("waiting for the sign-in (Ctrl-C to give up) ...");
    let mut interval = Duration::from_secs(num_of("interval").unwrap_or(5).max(1));
    let expires = Duration::from_secs(num_of("expires_in").unwrap_or(900));
    let deadline = Instant::now() + expires;
    let grant = [("grant_type", GRANT_TYPE), ("device_code", device_code)];
    loop {
        std::thread::sleep(interval);
        let refusal = match token::request(oauth, &grant, trace)? {
            Ok(granted) => return super::keep(oauth, granted),
            Err(r) => r,
        };
        match refusal.error.as_str() {
            "authorization_pending" => {}
            "slow_down" => interval += Duration::from_secs(5),
            "expired_token" => return Err(expired()),
            // Microsoft says authorization_declined.
            "access_denied" | "authorization_declined" => {
                return Err(Error::new(
                    ExitKind::NoPerm,
                    "the sign-in was declined on the other device; nothing was stored",
                ))
            }
            _ => {
                return Err(token::refused(
                    oauth,
                    "waiting for the device sign-in",
                    &refusal,
                ))
            }
        }
        if Instant::now() + interval > deadline {
            return Err(expired());
        }
    }
}

fn expired() -> Error {
    Error::new(
        ExitKind::TempFail,
        "the code expired before the sign-in was finished; run popfetch login --device again",
    )
}
