//! `[targets.NAME]` tables: an IMAP mailbox that accounts append to
//! (`imap_target = "NAME"`, SPEC §8). Each table is validated once, with
//! the account validators for the connection keys, and shared by every
//! account that names it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::raw::{RawConfig, RawKeys, Source};
use super::section::{Section, Value};
use super::{oauth, password, policy, server};
use super::{ImapTarget, Protocol, TlsMode};
use crate::error::Result;

/// The valid `[targets.NAME]` tables, by name.
pub(super) type Targets = BTreeMap<String, ImapTarget>;

/// Every `[targets.NAME]` table of the file, validated.
pub(super) fn targets(src: &Source, raw: &RawConfig, state_dir: &Path) -> Result<Targets> {
    let none = RawKeys::new();
    let mut out = Targets::new();
    for section in &raw.targets {
        let s = Section::new("targets", section, &none, src);
        out.insert(section.name.clone(), target(&s, state_dir)?);
    }
    Ok(out)
}

fn target(s: &Section, state_dir: &Path) -> Result<ImapTarget> {
    let Some((text, v)) = s.str("url")? else {
        return Err(s.err(format!(
            "{} has no `url` (required): url = \"imaps://imap.example.com/INBOX\"",
            s.header
        )));
    };
    let (tls, host, port, folder) = url(text, &v)?;
    let user = server::required(s, "user")?;
    let auth = server::auth(s.get("auth"), Protocol::Imap)?;
    let password = password::source(s)?;
    let trust = server::trust(s, tls)?;
    let timeout = policy::seconds(s.get("timeout"), 60)?;
    let (auth, password) = oauth::apply(
        s,
        Protocol::Imap,
        auth,
        password,
        oauth::Login {
            store: crate::oauth::store::path(state_dir, "target", s.name()),
            // Each account naming the table puts its own name here.
            account: "ACCOUNT".to_string(),
            // A target has no command_timeout of its own: the accounts'
            // default.
            command_timeout: Duration::from_secs(300),
        },
    )?;
    Ok(ImapTarget {
        name: s.name().to_string(),
        url: text.to_string(),
        host,
        port,
        tls,
        folder,
        user,
        auth,
        password,
        trust,
        timeout,
    })
}

/// `imaps://host[:port][/FOLDER]` (implicit TLS, port 993) or
/// `imap://…` (STARTTLS, port 143); the folder percent-decoded, INBOX when
/// absent.
fn url(text: &str, v: &Value) -> Result<(TlsMode, String, u16, String)> {
    let bad = |why: &str| {
        v.err(format!(
            "url = {text:?}: {why}; expected \"imaps://HOST[:PORT]/FOLDER\" (or imap:// for STARTTLS)"
        ))
    };
    let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let (tls, default_port) = match scheme.to_ascii_lowercase().as_str() {
        "imaps" => (TlsMode::Implicit, 993),
        "imap" => (TlsMode::StartTls, 143),
        _ => return Err(bad(&format!("the scheme {scheme:?} is not imaps or imap"))),
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.contains('@') {
        return Err(bad("the login goes in `user`, not in the url"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            let port: u16 = p
                .parse()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| bad(&format!("{p:?} is not a TCP port")))?;
            (h, port)
        }
        _ => (authority, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(bad("no host name"));
    }
    let folder = percent_decode(path.trim_end_matches('/'))
        .ok_or_else(|| bad("the folder is not valid percent-encoded UTF-8"))?;
    let folder = if folder.is_empty() {
        "INBOX".to_string()
    } else {
        folder
    };
    if folder.bytes().any(|b| b.is_ascii_control()) {
        return Err(bad("the folder has control characters"));
    }
    Ok((tls, host.to_ascii_lowercase(), port, folder))
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{parse, Target, TlsMode};

    const ACCOUNT: &str =
        "[accounts.pop]\nhost = \"pop.example.com\"\nuser = \"alice\"\nimap_target = \"gmail\"\n";

    fn first_target(text: &str) -> crate::error::Result<crate::config::ImapTarget> {
        let c = parse(text, Path::new("/etc/popfetch/config.toml"))?;
        match &c.accounts[0].target {
            Target::Imap(t) => Ok((**t).clone()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn url_gives_tls_host_port_and_decoded_folder() {
        let t = first_target(&format!(
            "{ACCOUNT}[targets.gmail]\nurl = \"imaps://IMAP.gmail.com/%5BGmail%5D%2FAll\"\nuser = \"me\"\n"
        ))
        .unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.folder.as_str()),
            (TlsMode::Implicit, "imap.gmail.com", 993, "[Gmail]/All")
        );
        let t = first_target(&format!(
            "{ACCOUNT}[targets.gmail]\nurl = \"imap://127.0.0.1:1143\"\nuser = \"me\"\n"
        ))
        .unwrap();
        assert_eq!(
            (t.tls, t.port, t.folder.as_str()),
            (TlsMode::StartTls, 1143, "INBOX")
        );
    }

    #[test]
    fn mistakes_are_named_with_their_line() {
        for (table, needle) in [
            (
                "url = \"pop3://h/INBOX\"\nuser = \"me\"",
                "config.toml:6: url",
            ),
            ("url = \"imaps://h:0/\"\nuser = \"me\"", "is not a TCP port"),
            ("url = \"imaps://h/\"", "has no `user`"),
            ("user = \"me\"", "has no `url`"),
            (
                "url = \"imaps://h/\"\nuser = \"me\"\npasword = \"x\"",
                "did you mean `password`",
            ),
            (
                "url = \"imaps://h/\"\nuser = \"me\"\nkeep = true",
                "unknown key `keep` in [targets.gmail]",
            ),
        ] {
            let err = first_target(&format!("{ACCOUNT}[targets.gmail]\n{table}\n")).unwrap_err();
            assert_eq!(err.kind(), crate::error::ExitKind::Config);
            assert!(err.to_string().contains(needle), "{table}: {err}");
        }
    }

    #[test]
    fn an_unknown_target_names_the_tables_there_are() {
        let text = format!(
            "{}[targets.gmal]\nurl = \"imaps://h/\"\nuser = \"me\"\n[targets.home]\nurl = \"imaps://h/\"\nuser = \"me\"\n",
            ACCOUNT
        );
        let err = first_target(&text).unwrap_err();
        assert_eq!(err.kind(), crate::error::ExitKind::Config);
        let msg = err.to_string();
        assert!(
            msg.contains("config.toml:4:") && msg.contains("did you mean `gmal`"),
            "{msg}"
        );
        let err = first_target(&text.replace("\"gmail\"", "\"zzz\"")).unwrap_err();
        assert!(
            err.to_string().contains("[targets.gmal], [targets.home]"),
            "{err}"
        );
        let err = first_target(ACCOUNT).unwrap_err();
        assert!(err.to_string().contains("no [targets.NAME] table"), "{err}");
    }

    #[test]
    fn a_target_password_in_a_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let text = "[targets.spare]\nurl = \"imaps://h/\"\nuser = \"me\"\npassword = \"secret\"\n";
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = crate::config::Config::load(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        crate::config::Config::load(&path).unwrap();
    }

    #[test]
    fn two_accounts_share_one_target() {
        let text = format!(
            "{ACCOUNT}[accounts.other]\nhost = \"pop.example.org\"\nuser = \"bob\"\nimap_target = \"gmail\"\n[targets.gmail]\nurl = \"imaps://h/\"\nuser = \"me\"\n"
        );
        let c = parse(&text, Path::new("/etc/popfetch/config.toml")).unwrap();
        assert_eq!(c.accounts[0].target, c.accounts[1].target);
        assert_eq!(
            c.accounts[1].target.describe(),
            "imap_target gmail (imaps://h/)"
        );
    }
}
