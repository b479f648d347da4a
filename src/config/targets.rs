//! Validator for where the messages go: exactly one target key per account.
//! A new target (SPEC §8: `lmtp`, `smtp`, `imap_target`) is one more entry
//! in [`TARGETS`].

use std::path::PathBuf;

use super::imap_target::Targets;
use super::keys::did_you_mean;
use super::paths;
use super::section::{Section, Value};
use super::Target;
use crate::error::Result;

/// Turns a target key's non-empty text into the [`Target`], given the
/// file's `[targets.NAME]` tables.
type Build = fn(&str, &Value, &Targets) -> Result<Target>;

/// The keys that name a target, in the order messages list them.
const TARGETS: &[(&str, Build)] = &[
    ("maildir", |path, v, _| {
        Ok(Target::Maildir(paths::resolve(path, v.source())))
    }),
    ("mbox", |path, v, _| {
        Ok(Target::Mbox(paths::resolve(path, v.source())))
    }),
    ("mda", |command, _, _| Ok(Target::Mda(command.to_string()))),
    ("lmtp", |url, v, _| Ok(Target::Lmtp(wire(url, v, true)?))),
    ("smtp", |url, v, _| Ok(Target::Smtp(wire(url, v, false)?))),
    ("imap_target", imap_target),
];

/// `imap_target = "NAME"`: one of the `[targets.NAME]` tables.
fn imap_target(name: &str, v: &Value, targets: &Targets) -> Result<Target> {
    if let Some(t) = targets.get(name) {
        return Ok(Target::Imap(Box::new(t.clone())));
    }
    let names: Vec<&str> = targets.keys().map(String::as_str).collect();
    let hint = match did_you_mean(name, &names) {
        Some(k) => format!("; did you mean `{k}`?"),
        None if names.is_empty() => {
            "; there is no [targets.NAME] table: add one with `url` and `user`".to_string()
        }
        None => {
            let tables: Vec<String> = names.iter().map(|n| format!("[targets.{n}]")).collect();
            format!("; the file has {}", tables.join(", "))
        }
    };
    Err(v.err(format!(
        "imap_target = {name:?} names no [targets.{name}] table{hint}"
    )))
}

/// Where an LMTP or SMTP target connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket (LMTP only: `unix:/run/dovecot/lmtp`).
    Unix(PathBuf),
    /// `implicit_tls`: `smtps://`, TLS from the first byte.
    Tcp {
        host: String,
        port: u16,
        implicit_tls: bool,
    },
}

/// An LMTP or SMTP server and the envelope recipient it delivers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wire {
    pub url: String,
    pub endpoint: Endpoint,
    /// `deliver_to`; `None`: the local user, looked up when delivering.
    pub deliver_to: Option<String>,
}

fn wire(url: &str, v: &Value, lmtp: bool) -> Result<Wire> {
    let url = url.trim();
    let examples = if lmtp {
        "\"unix:/run/dovecot/lmtp\" or \"lmtp://127.0.0.1:24\""
    } else {
        "\"smtp://localhost:25\" or \"smtps://mail.example.com:465\""
    };
    let bad = |why: &str| {
        v.err(format!(
            "`{}` = {url:?} {why}; write it as {examples}",
            v_key(lmtp)
        ))
    };
    let (scheme, rest) = url.split_once(':').ok_or_else(|| bad("has no scheme"))?;
    let endpoint = match (lmtp, scheme.to_ascii_lowercase().as_str()) {
        (true, "unix") => {
            if rest.is_empty() {
                return Err(bad("names no socket"));
            }
            Endpoint::Unix(super::paths::resolve(rest, v.source()))
        }
        (true, "lmtp") | (false, "smtp") | (false, "smtps") => {
            let hostport = rest
                .strip_prefix("//")
                .ok_or_else(|| bad("needs // after the scheme"))?
                .trim_end_matches('/');
            let default = match scheme.to_ascii_lowercase().as_str() {
                "lmtp" => 24,
                "smtps" => 465,
                _ => 25,
            };
            let (host, port) = split_host_port(hostport, default)
                .ok_or_else(|| bad("has no valid host and port"))?;
            Endpoint::Tcp {
                host,
                port,
                implicit_tls: scheme.eq_ignore_ascii_case("smtps"),
            }
        }
        _ => return Err(bad("has an unknown scheme")),
    };
    Ok(Wire {
        url: url.to_string(),
        endpoint,
        deliver_to: None,
    })
}

fn v_key(lmtp: bool) -> &'static str {
    if lmtp {
        "lmtp"
    } else {
        "smtp"
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(s: &str, default: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return None;
    }
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0)?,
        None => default,
    };
    Some((host.to_string(), port))
}

/// The one target key the section sets, turned into a [`Target`].
pub(super) fn target(s: &Section, targets: &Targets) -> Result<Target> {
    let mut set = Vec::new();
    for (key, build) in TARGETS {
        if let Some((value, v)) = s.str(key)? {
            set.push((*key, value, v, build));
        }
    }
    let names: Vec<&str> = TARGETS.iter().map(|(k, _)| *k).collect();
    match set.as_slice() {
        [] => {
            let keys: Vec<String> = names.iter().map(|k| format!("`{k}`")).collect();
            let (last, first) = keys.split_last().expect("TARGETS is not empty");
            Err(s.err(format!(
                "{} has no destination: set {} or {last}",
                s.header,
                first.join(", ")
            )))
        }
        [(key, value, v, build)] => {
            if value.trim().is_empty() {
                return Err(v.err(format!("`{key}` is empty")));
            }
            let mut target = build(value, v, targets)?;
            if let Some((to, tv)) = s.str("deliver_to")? {
                match &mut target {
                    Target::Lmtp(w) | Target::Smtp(w) if !to.trim().is_empty() => {
                        let to = to.trim();
                        // It goes into RCPT TO as it is: one address, no
                        // room for a line end or a second command.
                        if to
                            .chars()
                            .any(|c| c.is_control() || c.is_whitespace() || "<>".contains(c))
                        {
                            return Err(tv.err(format!(
                                "`deliver_to` = {to:?} is not one address: write a user name or user@domain, \
                                 without spaces, angle brackets or control characters"
                            )));
                        }
                        w.deliver_to = Some(to.to_string())
                    }
                    Target::Lmtp(_) | Target::Smtp(_) => {
                        return Err(tv.err("`deliver_to` is empty"))
                    }
                    _ => {
                        return Err(tv.err(format!(
                            "`deliver_to` is the envelope recipient of `lmtp` or `smtp`; \
                             {} sets `{key}`: remove `deliver_to`",
                            s.header
                        )))
                    }
                }
            }
            Ok(target)
        }
        [.., (_, _, v, _)] => {
            let keys: Vec<&str> = set.iter().map(|(k, _, _, _)| *k).collect();
            Err(v.err(format!(
                "{} sets {}; choose exactly one of {}",
                s.header,
                keys.join(" and "),
                names.join(", ")
            )))
        }
    }
}
