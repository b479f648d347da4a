//! Validator for where the messages go: exactly one target key per account.
//! A new target (SPEC §8: `lmtp`, `smtp`, `imap_target`) is one more entry
//! in [`TARGETS`].

use std::path::PathBuf;
use std::time::Duration;

use super::imap_target::Targets;
use super::keys::{did_you_mean, SMTP_KEYS};
use super::password::{self, PasswordSource};
use super::secret::Secret;
use super::section::{Section, Value};
use super::{paths, server, Target};
use crate::error::{Error, Result};
use crate::net::TlsTrust;

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
#[derive(Clone, Debug)]
pub struct Wire {
    pub url: String,
    pub endpoint: Endpoint,
    /// `deliver_to`; `None`: the local user, looked up when delivering.
    pub deliver_to: Option<String>,
    /// `smtp_user` and its secret: AUTH at the relay (SMTP only).
    pub login: Option<SmtpLogin>,
    /// `smtp_ca_file`, `smtp_tls_fingerprint`: how the relay's certificate
    /// is checked.
    pub trust: TlsTrust,
}

/// One server is one target: the login's secret is not compared.
impl PartialEq for Wire {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url
            && self.endpoint == other.endpoint
            && self.deliver_to == other.deliver_to
            && self.login.as_ref().map(|l| (&l.user, l.auth))
                == other.login.as_ref().map(|l| (&l.user, l.auth))
            && self.trust.ca_file == other.trust.ca_file
            && self.trust.fingerprints == other.trust.fingerprints
    }
}
impl Eq for Wire {}

/// The SASL mechanisms an SMTP relay is logged in with (`smtp_auth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpAuth {
    /// PLAIN, else LOGIN, else CRAM-MD5: whichever the relay offers first
    /// in that order (always over TLS, so PLAIN is as good as any).
    Auto,
    Plain,
    Login,
    CramMd5,
}

impl SmtpAuth {
    pub const ALL: &'static [(&'static str, SmtpAuth)] = &[
        ("auto", SmtpAuth::Auto),
        ("plain", SmtpAuth::Plain),
        ("login", SmtpAuth::Login),
        ("cram-md5", SmtpAuth::CramMd5),
    ];

    pub fn name(self) -> &'static str {
        SmtpAuth::ALL
            .iter()
            .find(|(_, m)| *m == self)
            .map(|(n, _)| *n)
            .expect("every method is listed")
    }
}

/// `smtp_user` with `smtp_password` or `smtp_password_command`.
#[derive(Clone, Debug)]
pub struct SmtpLogin {
    pub user: String,
    pub auth: SmtpAuth,
    pub password: PasswordSource,
}

impl SmtpLogin {
    /// The relay's password, got when the first message goes to it (a
    /// sync with nothing to deliver never runs the command).
    pub fn secret(&self, command_timeout: Duration) -> Result<Secret> {
        match &self.password {
            PasswordSource::Inline(s) => Ok(s.clone()),
            PasswordSource::Command(cmd) => {
                password::run_command(cmd, command_timeout).map_err(|e| {
                    Error::config(
                        e.to_string()
                            .replace("password_command", "smtp_password_command"),
                    )
                })
            }
            // Never built for a relay (its keys allow neither), but the
            // type has them.
            PasswordSource::Prompt | PasswordSource::OAuth(_) => Err(Error::config(
                "smtp_user needs smtp_password or smtp_password_command",
            )),
        }
    }
}

/// `smtp_user`, `smtp_auth`, the password keys and the trust keys of an
/// `smtp` target (refused with any other target).
fn smtp_settings(s: &Section, target: &mut Target, key: &str) -> Result<()> {
    let Target::Smtp(wire) = target else {
        if let Some(v) = SMTP_KEYS.iter().find_map(|(k, _)| s.get(k)) {
            return Err(v.err(format!(
                "`{}` is for the `smtp` target; {} sets `{key}`: remove `{}`",
                v.key, s.header, v.key
            )));
        }
        return Ok(());
    };
    let user = s.str("smtp_user")?;
    let auth = match s.get("smtp_auth") {
        None => SmtpAuth::Auto,
        Some(v) => {
            let text = v.str()?;
            let names: Vec<&str> = SmtpAuth::ALL.iter().map(|(n, _)| *n).collect();
            SmtpAuth::ALL
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(text))
                .map(|(_, m)| *m)
                .ok_or_else(|| {
                    let hint = did_you_mean(&text.to_ascii_lowercase(), &names)
                        .map(|k| format!("; did you mean \"{k}\"?"))
                        .unwrap_or_default();
                    v.err(format!(
                        "smtp_auth = {text:?}: expected one of {}{hint}",
                        names.join(", ")
                    ))
                })?
        }
    };
    let password = password::inline_or_command(s, "smtp_password")?;
    wire.login = match (user, password) {
        (Some((u, v)), _) if u.trim().is_empty() || u.chars().any(char::is_control) => {
            return Err(v.err("`smtp_user` is empty or has control characters"))
        }
        (Some((u, _)), Some(password)) => Some(SmtpLogin {
            user: u.to_string(),
            auth,
            password,
        }),
        (Some((_, v)), None) => {
            // A prompt would come from a delivery thread, in the middle of
            // the progress display: the secret comes from the file.
            return Err(v.err(
                "`smtp_user` needs `smtp_password_command` (or `smtp_password` in a file only you can read)",
            ));
        }
        (None, _) => {
            if let Some(v) = ["smtp_auth", "smtp_password", "smtp_password_command"]
                .iter()
                .find_map(|k| s.get(k))
            {
                return Err(v.err(format!(
                    "`{}` without `smtp_user`: set smtp_user = \"LOGIN\" for the relay, or remove `{}`",
                    v.key, v.key
                )));
            }
            None
        }
    };
    wire.trust = TlsTrust {
        ca_file: s
            .str("smtp_ca_file")?
            .map(|(path, v)| paths::resolve(path, v.source())),
        fingerprints: server::fingerprints(s.get("smtp_tls_fingerprint"))?,
    };
    Ok(())
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
        login: None,
        trust: TlsTrust::default(),
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
            smtp_settings(s, &mut target, key)?;
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::SmtpAuth;
    use crate::config::{Config, Target};

    #[test]
    fn an_smtp_password_in_a_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let text = "[accounts.a]\nhost = \"h\"\nuser = \"u\"\npassword_command = \"echo x\"\n\
                    smtp = \"smtps://relay.example.com\"\nsmtp_user = \"me\"\nsmtp_password = \"secret\"\n";
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Config::load(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = Config::load(&path).unwrap();
        let Target::Smtp(wire) = &config.accounts[0].target else {
            panic!("{:?}", config.accounts[0].target)
        };
        let login = wire.login.as_ref().unwrap();
        assert_eq!((login.user.as_str(), login.auth), ("me", SmtpAuth::Auto));
        assert!(!format!("{:?}", config.accounts[0]).contains("secret"));
    }
}
