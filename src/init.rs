//! `popfetch init`: a commented starter config for a provider preset or a
//! host given on the command line. Written 0600, never over an existing
//! file, then the user is told the next command.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, ExitKind, Result};

/// A provider's documented POP3 settings.
pub struct Provider {
    pub name: &'static str,
    pub host: &'static str,
    pub auth: &'static str,
    pub note: &'static str,
}

/// Only settings the providers document: implicit TLS on 995 everywhere.
pub const PROVIDERS: &[Provider] = &[
    Provider {
        name: "gmail",
        host: "pop.gmail.com",
        auth: "auto",
        note: "Enable POP in Gmail's settings (Forwarding and POP/IMAP). With 2-step verification,\n# use an app password; or set auth = \"xoauth2\" and make password_command print an access token.",
    },
    Provider {
        name: "outlook",
        host: "outlook.office365.com",
        auth: "xoauth2",
        note: "Outlook.com and Microsoft 365 accept only OAuth2 for POP3: password_command must\n# print a current access token (for example from a token helper such as oama or mutt_oauth2.py).",
    },
    Provider {
        name: "yahoo",
        host: "pop.mail.yahoo.com",
        auth: "auto",
        note: "Yahoo needs an app password (Account security > Generate app password).",
    },
    Provider {
        name: "aol",
        host: "pop.aol.com",
        auth: "auto",
        note: "AOL needs an app password (Account security > Generate app password).",
    },
    Provider {
        name: "gmx",
        host: "pop.gmx.net",
        auth: "auto",
        note: "Enable POP3/IMAP access in GMX's settings first.",
    },
    Provider {
        name: "fastmail",
        host: "pop.fastmail.com",
        auth: "auto",
        note: "Fastmail needs an app password with POP access (Settings > Privacy & Security).",
    },
];

pub fn provider(name: &str) -> Option<&'static Provider> {
    PROVIDERS.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

/// What `init` was asked for.
pub struct InitRequest<'a> {
    pub account: &'a str,
    pub host: &'a str,
    pub user: &'a str,
    pub auth: &'a str,
    pub note: Option<&'a str>,
    pub maildir: &'a str,
}

/// The config text.
pub fn render(req: &InitRequest) -> String {
    let note = req.note.map(|n| format!("# {n}\n")).unwrap_or_default();
    format!(
        r#"# popfetch configuration. Every key: `popfetch man` (CONFIGURATION).
# Check it with `popfetch accounts`; fetch with `popfetch sync`.

# Keys here apply to every account unless the account sets them.
[defaults]
keep = true          # leave mail on the server; `popfetch sync --delete` for one run
# keep_days = 14     # ...but delete it from the server 14 days after downloading
# max_size = "25 MB" # never download larger messages
timeout = 60         # seconds for connect and for each read or write

[accounts.{account}]
{note}host = "{host}"
port = 995           # implicit TLS (RFC 8314); use tls = "starttls" and port = 110 if the server has no 995
tls = "implicit"
user = "{user}"
auth = "{auth}"
# The password (or OAuth2 token) comes from a command, so it never sits in this file:
password_command = "pass show mail/{account}"
# password = "..."   # possible too, but then this file must stay chmod 600
maildir = "{maildir}"
# mbox = "~/mail/{account}.mbox"    # or deliver into an mbox file instead
"#,
        account = req.account,
        host = req.host,
        user = req.user,
        auth = req.auth,
        maildir = req.maildir,
    )
}

/// Writes the config at `path` (mode 0600), refusing to overwrite.
pub fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::files::create_private_dir(dir, "")?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::new(
                    ExitKind::Usage,
                    format!(
                        "{} already exists; popfetch init never overwrites a config (edit it, or pass -c NEWFILE)",
                        path.display()
                    ),
                )
            } else {
                Error::with_source(ExitKind::CantCreate, format!("cannot create {}", path.display()), e)
            }
        })?;
    file.write_all(text.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| Error::local_io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_config_parses_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg/config.toml");
        let text = render(&InitRequest {
            account: "gmail",
            host: "pop.gmail.com",
            user: "me@gmail.com",
            auth: "auto",
            note: provider("gmail").map(|p| p.note),
            maildir: "~/Mail/gmail",
        });
        write(&path, &text).unwrap();
        let cfg = crate::config::parse(&text, &path).unwrap();
        assert_eq!(cfg.accounts[0].host, "pop.gmail.com");
        assert_eq!(cfg.accounts[0].port, 995);
        let err = write(&path, "x").unwrap_err();
        assert!(err.to_string().contains("never overwrites"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
