//! Validators for the keys that say where the mail comes from and how to
//! reach it: `host`, `user`, `protocol`, `folder`, `port`, `tls`, `auth`,
//! `ca_file`, `tls_fingerprint`. IMAP's own keys are in `imap.rs`.

use toml::de::DeValue;

use super::keys::did_you_mean;
use super::paths;
use super::section::{Section, Value};
use super::{Protocol, TlsMode};
use crate::error::Result;
use crate::net::{self, Fingerprint, TlsTrust};
use crate::source::pop3::auth::AuthMethod;

/// A required one-line text such as `host` or `user`, trimmed.
pub(super) fn required(s: &Section, key: &str) -> Result<String> {
    match s.str(key)? {
        Some((text, v)) if !text.trim().is_empty() => {
            if text.bytes().any(|b| b.is_ascii_control()) {
                return Err(v.err(format!("`{key}` must not contain control characters")));
            }
            Ok(text.trim().to_string())
        }
        Some((_, v)) => Err(v.err(format!("`{key}` is empty"))),
        None => Err(s.err(format!("{} has no `{key}` (required)", s.header))),
    }
}

/// `protocol`: pop3 (the default), pop2 or imap.
pub(super) fn protocol(v: Option<Value>) -> Result<Protocol> {
    let Some(v) = v else {
        return Ok(Protocol::Pop3);
    };
    match v.str()? {
        "pop3" => Ok(Protocol::Pop3),
        "pop2" => Ok(Protocol::Pop2),
        "imap" => Ok(Protocol::Imap),
        p => {
            let hint = did_you_mean(&p.to_ascii_lowercase(), &["pop3", "pop2", "imap"])
                .map(|k| format!("; did you mean \"{k}\"?"))
                .unwrap_or_default();
            Err(v.err(format!(
                "protocol = {p:?}: expected \"pop3\", \"pop2\" or \"imap\"{hint}"
            )))
        }
    }
}

/// `folder`: the POP2 mailbox, one word.
pub(super) fn folder(v: Option<Value>, protocol: Protocol) -> Result<Option<String>> {
    let Some(v) = v else {
        return Ok(None);
    };
    let f = v.str()?;
    if protocol == Protocol::Imap {
        return Err(v.err(
            "`folder` is for protocol = \"pop2\" only; an IMAP account names its folders with folders = [\"INBOX\", …]",
        ));
    }
    if protocol != Protocol::Pop2 {
        return Err(v.err("`folder` is for protocol = \"pop2\" only"));
    }
    if f.is_empty()
        || f.bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(v.err("`folder` must be one word"));
    }
    Ok(Some(f.to_string()))
}

/// POP2 has no TLS of its own and one way to log in: the user must say
/// `tls` outright, or name the port of a TLS-wrapped service, and leave
/// `auth` at "auto".
pub(super) fn pop2_rules(s: &Section) -> Result<()> {
    match (s.str("tls")?, s.get("port")) {
        (None, _) => {
            return Err(s.err(format!(
                "{}: POP2 has no TLS; set tls = \"none\" (the password is sent in clear), \
                 or tls = \"implicit\" with the port of a TLS-wrapped POP2 service",
                s.header
            )))
        }
        (Some(("starttls", v)), _) => {
            return Err(v.err("POP2 has no STLS: use tls = \"none\" or \"implicit\""))
        }
        (Some(("implicit", v)), None) => {
            return Err(v.err(
                "POP2 over TLS has no standard port: set `port` to the TLS-wrapped service's port",
            ))
        }
        _ => {}
    }
    if let Some((a, v)) = s.str("auth")? {
        if !matches!(a, "auto" | "user") {
            return Err(v.err("POP2 logs in with HELO user password: `auth` must be \"auto\""));
        }
    }
    Ok(())
}

/// `port`, if set: 1 to 65535.
pub(super) fn port(v: Option<Value>) -> Result<Option<u16>> {
    let Some(v) = v else {
        return Ok(None);
    };
    let n = v.int()?;
    let port = u16::try_from(n).ok().filter(|p| *p > 0);
    port.map(Some)
        .ok_or_else(|| v.err(format!("port = {n} is not a TCP port (1-65535)")))
}

/// `tls`; unset, the plain port (110, or 143 for IMAP) means STARTTLS and
/// anything else implicit TLS.
pub(super) fn tls(v: Option<Value>, port: Option<u16>, protocol: Protocol) -> Result<TlsMode> {
    let Some(v) = v else {
        let plain = if protocol == Protocol::Imap { 143 } else { 110 };
        return Ok(if port == Some(plain) {
            TlsMode::StartTls
        } else {
            TlsMode::Implicit
        });
    };
    match v.str()? {
        "implicit" => Ok(TlsMode::Implicit),
        "starttls" => Ok(TlsMode::StartTls),
        "none" => Ok(TlsMode::None),
        other => {
            let hint = did_you_mean(other, &["implicit", "starttls", "none"])
                .map(|k| format!("; did you mean \"{k}\"?"))
                .unwrap_or_default();
            Err(v.err(format!(
                "tls = {other:?}: expected \"implicit\", \"starttls\" or \"none\"{hint}"
            )))
        }
    }
}

/// The port when `port` is unset: the protocol's, with or without TLS.
pub(super) fn default_port(protocol: Protocol, tls: TlsMode) -> u16 {
    match (protocol, tls) {
        (Protocol::Pop2, _) => 109,
        (Protocol::Pop3, TlsMode::Implicit) => 995,
        (Protocol::Pop3, _) => 110,
        (Protocol::Imap, TlsMode::Implicit) => 993,
        (Protocol::Imap, _) => 143,
    }
}

/// `auth`: one of the methods POP3 knows, any case (IMAP: all but APOP).
pub(super) fn auth(v: Option<Value>, protocol: Protocol) -> Result<AuthMethod> {
    let Some(v) = v else {
        return Ok(AuthMethod::Auto);
    };
    let s = v.str()?;
    if protocol == Protocol::Imap && s.eq_ignore_ascii_case("apop") {
        return Err(v.err(
            "auth = \"apop\" is a POP3 mechanism; an IMAP account logs in with \"user\" (LOGIN) or a SASL method",
        ));
    }
    AuthMethod::ALL
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(s))
        .map(|(_, m)| *m)
        .ok_or_else(|| {
            let names: Vec<&str> = AuthMethod::ALL.iter().map(|(n, _)| *n).collect();
            v.err(format!(
                "auth = {s:?}: expected one of {}",
                names.join(", ")
            ))
        })
}

/// `ca_file` and `tls_fingerprint`, which mean nothing without TLS.
pub(super) fn trust(s: &Section, tls: TlsMode) -> Result<TlsTrust> {
    let ca_file = s
        .str("ca_file")?
        .map(|(path, v)| paths::resolve(path, v.source()));
    let fingerprints = fingerprints(s.get("tls_fingerprint"))?;
    if tls == TlsMode::None && (ca_file.is_some() || !fingerprints.is_empty()) {
        let v = s.get("ca_file").or_else(|| s.get("tls_fingerprint"));
        return Err(v
            .expect("one of them is set")
            .err("ca_file/tls_fingerprint are set but tls = \"none\": choose TLS or drop them"));
    }
    Ok(TlsTrust {
        ca_file,
        fingerprints,
    })
}

/// `tls_fingerprint`: one pin or a list of them.
pub(super) fn fingerprints(v: Option<Value>) -> Result<Vec<Fingerprint>> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    let items: Vec<&str> = match v.toml() {
        DeValue::String(s) => vec![s.as_ref()],
        DeValue::Array(a) => a
            .iter()
            .map(|item| {
                item.get_ref()
                    .as_str()
                    .ok_or_else(|| v.err(format!("{}: every entry must be a string", v.key)))
            })
            .collect::<Result<_>>()?,
        other => {
            return Err(v.err(format!(
                "{} must be a string or a list of strings, not {}",
                v.key,
                other.type_str()
            )))
        }
    };
    items
        .into_iter()
        .map(|item| {
            net::parse_fingerprint(item).ok_or_else(|| {
                v.err(format!(
                    "{} {item:?} is not a SHA-256 fingerprint (\"sha256:\" and 32 hex bytes, colons optional)",
                    v.key
                ))
            })
        })
        .collect()
}
