//! One HTTP request: a form POST to a token or device endpoint, with the
//! JSON reply back whatever its status (OAuth errors come as 400 with a
//! JSON body). ureq over the rustls popfetch already uses (ring provider):
//! one TLS stack, and the webpki roots for the providers' certificates.

use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, ExitKind, Result};

/// Limit for one request, from connect to the end of the reply.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The largest reply read: token replies are a few KiB.
const MAX_REPLY: u64 = 1024 * 1024;

/// An endpoint's answer: the HTTP status and its JSON body (`Null` when
/// the body is not JSON).
pub struct Reply {
    pub status: u16,
    pub json: Value,
}

/// Form fields and reply fields shown as they are in a trace; every other
/// value is `***` (tokens, codes, the verifier, the client secret).
const SHOWN: &[&str] = &[
    "grant_type",
    "client_id",
    "scope",
    "redirect_uri",
    "token_type",
    "expires_in",
    "interval",
    "user_code",
    "verification_uri",
    "verification_url",
    "error",
    "error_description",
];

fn shown(key: &str, value: &str) -> String {
    if SHOWN.contains(&key) {
        format!("{key}={}", crate::ui::term::escape_controls(value))
    } else {
        format!("{key}=***")
    }
}

/// POSTs `form` (application/x-www-form-urlencoded) to `url`. `trace`
/// (`-vv`) gets the request and the reply, secrets as `***`.
pub fn post_form(url: &str, form: &[(&str, &str)], trace: Option<&dyn Fn(&str)>) -> Result<Reply> {
    if let Some(trace) = trace {
        let fields: Vec<String> = form.iter().map(|(k, v)| shown(k, v)).collect();
        trace(&format!("> POST {url} {}", fields.join(" ")));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .user_agent(concat!("popfetch/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut response = agent
        .post(url)
        .header("Accept", "application/json")
        .send_form(form.iter().copied())
        .map_err(|e| failed(url, e))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_REPLY)
        .read_to_string()
        .map_err(|e| failed(url, e))?;
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    if let Some(trace) = trace {
        let fields: Vec<String> = match &json {
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => shown(k, s),
                    other => shown(k, &other.to_string()),
                })
                .collect(),
            _ => vec![format!("({} bytes, not JSON)", text.len())],
        };
        trace(&format!("< HTTP {status} {}", fields.join(" ")));
    }
    Ok(Reply { status, json })
}

fn failed(url: &str, e: ureq::Error) -> Error {
    let kind = match &e {
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => ExitKind::Unavailable,
        ureq::Error::BadUri(_) => ExitKind::Config,
        _ => ExitKind::TempFail,
    };
    // The URL has no secret in it: every secret goes in the body.
    Error::new(kind, format!("cannot reach {url}: {e}"))
        .with_origin(crate::error::Origin::Transport)
}
