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
    pub port: u16,
    /// `implicit`, `starttls` or `none`.
    pub tls: &'a str,
    pub user: &'a str,
    pub auth: &'a str,
    pub note: Option<&'a str>,
    pub maildir: &'a str,
}

/// Splits `--host` into a host and the port it names, if any:
/// `pop.example.com:995`, `[2001:db8::1]:995`; a bare IPv6 address
/// (`2001:db8::1`) has no port. Something after a colon that is not a port
/// is refused rather than guessed at.
pub fn split_host_port(spec: &str) -> Result<(String, Option<u16>)> {
    let bad = |why: &str| {
        Error::new(
            ExitKind::Usage,
            format!("--host {spec:?}: {why}; write HOST, HOST:PORT or [IPv6]:PORT, or give --port"),
        )
    };
    if let Some(rest) = spec.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| bad("no closing ']'"))?;
        return match after {
            "" => Ok((host.to_string(), None)),
            _ => {
                let port = after
                    .strip_prefix(':')
                    .ok_or_else(|| bad("text after ']'"))?;
                Ok((
                    host.to_string(),
                    Some(parse_port(port).ok_or_else(|| bad("not a port number"))?),
                ))
            }
        };
    }
    match spec.matches(':').count() {
        0 => Ok((spec.to_string(), None)),
        1 => {
            let (host, port) = spec.split_once(':').expect("one colon");
            if host.is_empty() {
                return Err(bad("no host before ':'"));
            }
            let port = parse_port(port).ok_or_else(|| bad("not a port number after ':'"))?;
            Ok((host.to_string(), Some(port)))
        }
        // Several colons: an IPv6 address without brackets, so no port.
        _ => Ok((spec.to_string(), None)),
    }
}

fn parse_port(s: &str) -> Option<u16> {
    s.parse().ok().filter(|p| *p > 0)
}

/// The port and TLS mode to write, from what was given: the same defaults
/// as the config itself (port 110 means STARTTLS; implicit TLS means 995).
pub fn resolve_transport(port: Option<u16>, tls: Option<&str>) -> (u16, &'static str) {
    let tls = match (tls, port) {
        (Some("none"), _) => "none",
        (Some("starttls"), _) | (None, Some(110)) => "starttls",
        _ => "implicit",
    };
    let port = port.unwrap_or(if tls == "implicit" { 995 } else { 110 });
    (port, tls)
}

/// The config text.
pub fn render(req: &InitRequest) -> String {
    let note = req.note.map(|n| format!("# {n}\n")).unwrap_or_default();
    let transport = match req.tls {
        "implicit" => {
            "# implicit TLS (RFC 8314); for a server without it: tls = \"starttls\", port = 110"
        }
        "starttls" => {
            "# plain connection upgraded with STLS; popfetch never falls back to clear text"
        }
        _ => "# no TLS: the password crosses the network in clear text",
    };
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
port = {port}
tls = "{tls}"    {transport}
user = "{user}"
auth = "{auth}"
# The password (or OAuth2 token): as written, popfetch asks for it on the terminal.
# To run from cron or a timer, let a command print it instead (uncomment one):
# password_command = "pass show mail/{account}"                   # pass(1)
# password_command = "secret-tool lookup popfetch {account}"      # the desktop keyring;
#                     store it first: secret-tool store --label=popfetch popfetch {account}
# password_command = "gpg --quiet --decrypt ~/.config/popfetch/{account}.gpg"
# password = "..."   # or in this file, which must then stay chmod 600
maildir = "{maildir}"
# mbox = "~/mail/{account}.mbox"    # or deliver into an mbox file instead
"#,
        account = req.account,
        host = req.host,
        port = req.port,
        tls = req.tls,
        user = req.user,
        auth = req.auth,
        maildir = req.maildir,
    )
}

/// Writes the config at `path` (mode 0600), refusing to overwrite.
pub fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::state::files::create_private_dir(dir, "")?;
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
            port: 995,
            tls: "implicit",
            user: "me@gmail.com",
            auth: "auto",
            note: provider("gmail").map(|p| p.note),
            maildir: "~/Mail/gmail",
        });
        write(&path, &text).unwrap();
        let cfg = crate::config::parse(&text, &path).unwrap();
        assert_eq!(cfg.accounts[0].host, "pop.gmail.com");
        assert_eq!(cfg.accounts[0].port, 995);
        assert!(matches!(
            cfg.accounts[0].password,
            crate::config::PasswordSource::Prompt
        ));
        let err = write(&path, "x").unwrap_err();
        assert!(err.to_string().contains("never overwrites"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn host_port_is_split_or_refused() {
        let ok = |s: &str| split_host_port(s).unwrap();
        assert_eq!(ok("pop.example.com"), ("pop.example.com".into(), None));
        assert_eq!(
            ok("pop.example.com:1995"),
            ("pop.example.com".into(), Some(1995))
        );
        assert_eq!(ok("[::1]:995"), ("::1".into(), Some(995)));
        assert_eq!(ok("[::1]"), ("::1".into(), None));
        assert_eq!(ok("2001:db8::1"), ("2001:db8::1".into(), None));
        for bad in [
            "pop.example.com:pop3",
            "pop.example.com:0",
            ":995",
            "[::1",
            "[::1]x",
        ] {
            let e = split_host_port(bad).unwrap_err();
            assert_eq!(e.kind(), ExitKind::Usage, "{bad}");
            assert!(e.to_string().contains("HOST:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn transport_defaults_follow_the_config_rules() {
        assert_eq!(resolve_transport(None, None), (995, "implicit"));
        assert_eq!(resolve_transport(Some(110), None), (110, "starttls"));
        assert_eq!(resolve_transport(None, Some("starttls")), (110, "starttls"));
        assert_eq!(resolve_transport(None, Some("none")), (110, "none"));
        assert_eq!(resolve_transport(Some(1995), None), (1995, "implicit"));
        assert_eq!(resolve_transport(Some(2110), Some("none")), (2110, "none"));
    }
}
