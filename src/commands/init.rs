//! `popfetch init`: a commented starter config for a provider preset or a
//! host given on the command line. Written 0600, never over an existing
//! file, then the user is told the next command.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::config::Protocol;
use crate::error::{Error, ExitKind, Result};

/// One protocol's server at a provider, as the provider documents it.
pub struct Preset {
    pub host: &'static str,
    /// What to do at the provider before it lets popfetch in, and its
    /// quirks with this protocol.
    pub note: &'static str,
}

/// A provider's documented settings: implicit TLS on the standard port
/// (995, 993) everywhere, and only the protocols it offers.
pub struct Provider {
    pub name: &'static str,
    pub auth: &'static str,
    /// The `oauth` preset of the provider, if it has one.
    pub oauth: Option<OAuthPreset>,
    pub pop3: Option<Preset>,
    pub imap: Option<Preset>,
}

/// How `init` writes the OAuth2 keys for a provider.
pub struct OAuthPreset {
    /// `oauth = "…"`.
    pub provider: &'static str,
    /// The provider takes nothing else (the keys are written active);
    /// otherwise they are written commented out, beside the password.
    pub only: bool,
}

/// Only settings the providers document.
pub const PROVIDERS: &[Provider] = &[
    Provider {
        name: "gmail",
        auth: "auto",
        oauth: Some(OAuthPreset {
            provider: "google",
            only: false,
        }),
        pop3: Some(Preset {
            host: "pop.gmail.com",
            note: "Enable POP in Gmail's settings (Forwarding and POP/IMAP). With 2-step verification,\n# use an app password, or sign in with OAuth2 (the oauth lines below).",
        }),
        imap: Some(Preset {
            host: "imap.gmail.com",
            note: "Gmail: with 2-step verification use an app password, or sign in with OAuth2 (the oauth\n# lines below). Deleting in Gmail only archives a message (it stays\n# in \"[Gmail]/All Mail\") unless it is moved to the Trash: with keep = false, also set\n# move_to = \"[Gmail]/Trash\". \"[Gmail]/All Mail\" holds every message, those in INBOX too:\n# fetching it beside INBOX delivers each message twice.",
        }),
    },
    Provider {
        name: "outlook",
        auth: "xoauth2",
        oauth: Some(OAuthPreset {
            provider: "microsoft",
            only: true,
        }),
        pop3: Some(Preset {
            host: "outlook.office365.com",
            note: "Outlook.com and Microsoft 365 accept only OAuth2 for POP3: popfetch signs in itself\n# (popfetch login) once oauth_client_id below is set.",
        }),
        imap: Some(Preset {
            host: "outlook.office365.com",
            note: "Outlook.com and Microsoft 365 accept only OAuth2 for IMAP: popfetch signs in itself\n# (popfetch login) once oauth_client_id below is set.",
        }),
    },
    Provider {
        name: "yahoo",
        auth: "auto",
        oauth: None,
        pop3: Some(Preset {
            host: "pop.mail.yahoo.com",
            note: "Yahoo needs an app password (Account security > Generate app password).",
        }),
        imap: Some(Preset {
            host: "imap.mail.yahoo.com",
            note: "Yahoo needs an app password (Account security > Generate app password).",
        }),
    },
    Provider {
        name: "aol",
        auth: "auto",
        oauth: None,
        pop3: Some(Preset {
            host: "pop.aol.com",
            note: "AOL needs an app password (Account security > Generate app password).",
        }),
        imap: Some(Preset {
            host: "imap.aol.com",
            note: "AOL needs an app password (Account security > Generate app password).",
        }),
    },
    Provider {
        name: "icloud",
        auth: "auto",
        oauth: None,
        pop3: None,
        imap: Some(Preset {
            host: "imap.mail.me.com",
            note: "iCloud Mail needs an app-specific password (account.apple.com > Sign-In and Security).\n# user is usually the name part of your address (alice, not alice@icloud.com); if that is\n# refused, try the whole address.",
        }),
    },
    Provider {
        name: "gmx",
        auth: "auto",
        oauth: None,
        pop3: Some(Preset {
            host: "pop.gmx.net",
            note: "Enable POP3/IMAP access in GMX's settings first.",
        }),
        imap: Some(Preset {
            host: "imap.gmx.net",
            note: "Enable POP3/IMAP access in GMX's settings first.",
        }),
    },
    Provider {
        name: "webde",
        auth: "auto",
        oauth: None,
        pop3: Some(Preset {
            host: "pop3.web.de",
            note: "Enable POP3/IMAP access in WEB.DE's settings first.",
        }),
        imap: Some(Preset {
            host: "imap.web.de",
            note: "Enable POP3/IMAP access in WEB.DE's settings first.",
        }),
    },
    Provider {
        name: "fastmail",
        auth: "auto",
        oauth: None,
        pop3: Some(Preset {
            host: "pop.fastmail.com",
            note: "Fastmail needs an app password with POP access (Settings > Privacy & Security).",
        }),
        imap: Some(Preset {
            host: "imap.fastmail.com",
            note: "Fastmail needs an app password with IMAP access (Settings > Privacy & Security).",
        }),
    },
];

pub fn provider(name: &str) -> Option<&'static Provider> {
    PROVIDERS.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

/// The provider names, for help and errors.
pub fn provider_names() -> String {
    let names: Vec<&str> = PROVIDERS.iter().map(|p| p.name).collect();
    names.join(", ")
}

/// `--protocol`, as the config spells it.
pub fn parse_protocol(name: &str) -> Result<Protocol> {
    match name {
        "pop3" => Ok(Protocol::Pop3),
        "imap" => Ok(Protocol::Imap),
        other => Err(Error::new(
            ExitKind::Usage,
            format!("--protocol {other:?}: expected pop3 or imap"),
        )),
    }
}

impl Provider {
    /// The preset for `protocol`, or the default one: POP3 where the
    /// provider offers it, as for `--host` and in the config (so the same
    /// command writes the same account it always did); IMAP where that is
    /// all there is.
    pub fn preset(&self, protocol: Option<Protocol>) -> Result<(Protocol, &Preset)> {
        match (protocol, &self.pop3, &self.imap) {
            (None | Some(Protocol::Pop3), Some(pop3), _) => Ok((Protocol::Pop3, pop3)),
            (None | Some(Protocol::Imap), _, Some(imap)) => Ok((Protocol::Imap, imap)),
            (Some(p), _, _) => Err(Error::new(
                ExitKind::Usage,
                format!(
                    "{} does not offer {}; leave out --protocol, its default is the protocol it offers",
                    self.name,
                    p.name().to_ascii_uppercase()
                ),
            )),
            (None, None, None) => Err(Error::new(
                ExitKind::Internal,
                format!("provider {} has no server", self.name),
            )),
        }
    }

    /// The line that points at the provider's other protocol, if any.
    fn also(&self, chosen: Protocol) -> Option<String> {
        let other = match chosen {
            Protocol::Imap => self.pop3.as_ref().map(|_| "pop3"),
            _ => self.imap.as_ref().map(|_| "imap"),
        }?;
        Some(format!(
            "{} offers {} too: popfetch init --provider {} --protocol {other} (with -c NEWFILE)",
            self.name,
            other.to_ascii_uppercase(),
            self.name
        ))
    }
}

/// The server `init` writes into the config: from a provider preset or
/// from `--host`.
pub struct Server {
    pub protocol: Protocol,
    pub host: String,
    pub auth: &'static str,
    pub note: Option<&'static str>,
    pub oauth: Option<&'static OAuthPreset>,
    /// The provider's other protocol, and how to ask for it.
    pub also: Option<String>,
    /// The section name when `--name` is not given.
    pub default_name: &'static str,
}

/// What `--provider`, `--host` and `--protocol` ask for.
pub fn server(
    provider_name: Option<&str>,
    host: Option<&str>,
    protocol: Option<&str>,
) -> Result<Server> {
    let protocol = protocol.map(parse_protocol).transpose()?;
    match (provider_name, host) {
        (Some(name), _) => {
            let p = provider(name).ok_or_else(|| {
                Error::new(
                    ExitKind::Usage,
                    format!(
                        "unknown provider {name:?}; known: {} (or use --host)",
                        provider_names()
                    ),
                )
            })?;
            let (protocol, preset) = p.preset(protocol)?;
            Ok(Server {
                protocol,
                host: preset.host.to_string(),
                auth: p.auth,
                note: Some(preset.note),
                oauth: p.oauth.as_ref(),
                also: p.also(protocol),
                default_name: p.name,
            })
        }
        (None, Some(host)) => Ok(Server {
            protocol: protocol.unwrap_or(Protocol::Pop3),
            host: host.to_string(),
            auth: "auto",
            note: None,
            oauth: None,
            also: None,
            default_name: "mail",
        }),
        (None, None) => Err(Error::new(
            ExitKind::Usage,
            format!(
                "say which server: --provider NAME ({}) or --host HOST",
                provider_names()
            ),
        )),
    }
}

/// What `init` was asked for.
pub struct InitRequest<'a> {
    pub account: &'a str,
    pub protocol: Protocol,
    pub host: &'a str,
    pub port: u16,
    /// `implicit`, `starttls` or `none`.
    pub tls: &'a str,
    pub user: &'a str,
    pub auth: &'a str,
    pub note: Option<&'a str>,
    pub oauth: Option<&'a OAuthPreset>,
    /// The provider's other protocol, and how to ask for it.
    pub also: Option<&'a str>,
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
/// as the config itself (the plain port, 110 or IMAP's 143, means
/// STARTTLS; implicit TLS means 995 or IMAP's 993).
pub fn resolve_transport(
    protocol: Protocol,
    port: Option<u16>,
    tls: Option<&str>,
) -> (u16, &'static str) {
    let (tls_port, plain_port) = match protocol {
        Protocol::Imap => (993, 143),
        _ => (995, 110),
    };
    let tls = match (tls, port) {
        (Some("none"), _) => "none",
        (Some("starttls"), _) => "starttls",
        (None, Some(p)) if p == plain_port => "starttls",
        _ => "implicit",
    };
    let port = port.unwrap_or(if tls == "implicit" {
        tls_port
    } else {
        plain_port
    });
    (port, tls)
}

/// The config text.
pub fn render(req: &InitRequest) -> String {
    let note = req.note.map(|n| format!("# {n}\n")).unwrap_or_default();
    let also = req.also.map(|a| format!("# {a}\n")).unwrap_or_default();
    let imap = req.protocol == Protocol::Imap;
    let plain_port = if imap { 143 } else { 110 };
    let upgrade = if imap { "STARTTLS" } else { "STLS" };
    let transport = match req.tls {
        "implicit" => format!(
            "# implicit TLS (RFC 8314); for a server without it: tls = \"starttls\", port = {plain_port}"
        ),
        "starttls" => format!(
            "# plain connection upgraded with {upgrade}; popfetch never falls back to clear text"
        ),
        _ => "# no TLS: the password crosses the network in clear text".to_string(),
    };
    let protocol = if imap {
        "protocol = \"imap\"    # IMAP4rev1/rev2; without this line: POP3\n"
    } else {
        ""
    };
    // Each IMAP key with what it does; all but `folders` as their defaults
    // would have it, commented out.
    let imap_keys = if imap {
        r#"folders = ["INBOX"]   # the folders to fetch from, each with its own seen state
# fetch = "unseen"    # only messages without the \Seen flag (as fetchmail does); the default,
#                       "new", fetches what popfetch has not fetched before, whatever its flags
# mark_seen = true    # set \Seen on each message once it is delivered (default: flags never change)
# move_to = "Archive" # with keep = false: move fetched mail there instead of deleting it
"#
    } else {
        ""
    };
    let password = format!(
        r#"# The password (or OAuth2 token): as written, popfetch asks for it on the terminal.
# To run from cron or a timer, let a command print it instead (uncomment one):
# password_command = "pass show mail/{account}"                   # pass(1)
# password_command = "secret-tool lookup popfetch {account}"      # the desktop keyring;
#                     store it first: secret-tool store --label=popfetch popfetch {account}
# password_command = "gpg --quiet --decrypt ~/.config/popfetch/{account}.gpg"
# password = "..."   # or in this file, which must then stay chmod 600
"#,
        account = req.account
    );
    let secret = match req.oauth {
        None => password,
        Some(o) => {
            let lines = format!(
                r#"oauth = "{provider}"
oauth_client_id = ""   # yours: register popfetch with the provider (README, "OAuth2")
# oauth_client_secret = "..."   # if the provider gave you one (Google does)
"#,
                provider = o.provider
            );
            if o.only {
                format!(
                    "# OAuth2: popfetch signs in itself and keeps the tokens; after setting\n\
                     # oauth_client_id, run `popfetch login {account}` (--device without a browser).\n{lines}",
                    account = req.account
                )
            } else {
                let commented: String = lines.lines().map(|l| format!("# {l}\n")).collect();
                format!(
                    "{password}# Or sign in with OAuth2 instead: uncomment these lines, set your client id\n\
                     # and run `popfetch login {account}` (auth = \"auto\" then means xoauth2):\n{commented}",
                    account = req.account
                )
            }
        }
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
{note}{also}{protocol}host = "{host}"
port = {port}
tls = "{tls}"    {transport}
user = "{user}"
auth = "{auth}"
{secret}{imap_keys}maildir = "{maildir}"
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
            protocol: Protocol::Pop3,
            host: "pop.gmail.com",
            port: 995,
            tls: "implicit",
            user: "me@gmail.com",
            auth: "auto",
            note: provider("gmail")
                .and_then(|p| p.pop3.as_ref())
                .map(|p| p.note),
            oauth: provider("gmail").and_then(|p| p.oauth.as_ref()),
            also: None,
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
        let pop3 = |port, tls| resolve_transport(Protocol::Pop3, port, tls);
        assert_eq!(pop3(None, None), (995, "implicit"));
        assert_eq!(pop3(Some(110), None), (110, "starttls"));
        assert_eq!(pop3(None, Some("starttls")), (110, "starttls"));
        assert_eq!(pop3(None, Some("none")), (110, "none"));
        assert_eq!(pop3(Some(1995), None), (1995, "implicit"));
        assert_eq!(pop3(Some(2110), Some("none")), (2110, "none"));
        let imap = |port, tls| resolve_transport(Protocol::Imap, port, tls);
        assert_eq!(imap(None, None), (993, "implicit"));
        assert_eq!(imap(Some(143), None), (143, "starttls"));
        assert_eq!(imap(None, Some("starttls")), (143, "starttls"));
        assert_eq!(imap(None, Some("none")), (143, "none"));
        // 110 is no plain IMAP port: as in the config, it means implicit TLS.
        assert_eq!(imap(Some(110), None), (110, "implicit"));
    }

    /// The config `init` writes for `server`, parsed as `sync` would.
    fn written(server: &Server) -> (String, crate::config::Account) {
        let (port, tls) = resolve_transport(server.protocol, None, None);
        let text = render(&InitRequest {
            account: server.default_name,
            protocol: server.protocol,
            host: &server.host,
            port,
            tls,
            user: "me@example.com",
            auth: server.auth,
            note: server.note,
            oauth: server.oauth,
            also: server.also.as_deref(),
            maildir: "~/Mail/x",
        });
        let path = Path::new("/etc/popfetch/config.toml");
        let cfg = crate::config::parse(&text, path).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let account = cfg.accounts.into_iter().next().unwrap();
        (text, account)
    }

    #[test]
    fn oauth_providers_get_the_oauth_keys_with_the_client_id_left_to_fill_in() {
        use crate::config::PasswordSource;
        // Outlook takes only OAuth2: the keys are active.
        let (text, account) = written(&server(Some("outlook"), None, None).unwrap());
        let PasswordSource::OAuth(o) = &account.password else {
            panic!("{text}")
        };
        assert_eq!(o.provider, Some(crate::oauth::Provider::Microsoft));
        assert_eq!(o.client_id, None, "left for the user");
        assert_eq!(account.auth, crate::source::pop3::auth::AuthMethod::XOAuth2);
        assert!(text.contains("popfetch login outlook"), "{text}");
        assert!(!text.contains("password_command"), "{text}");
        // Gmail takes app passwords too: the keys are there, commented
        // out, and uncommenting them is all it takes.
        let (text, account) = written(&server(Some("gmail"), None, None).unwrap());
        assert!(matches!(account.password, PasswordSource::Prompt));
        assert!(text.contains("# oauth = \"google\"\n"), "{text}");
        let on = text
            .replace("# oauth = ", "oauth = ")
            .replace("# oauth_client_id = \"\"", "oauth_client_id = \"id\"");
        let cfg = crate::config::parse(&on, Path::new("/etc/popfetch/config.toml")).unwrap();
        assert!(matches!(cfg.accounts[0].password, PasswordSource::OAuth(_)));
    }

    #[test]
    fn every_preset_of_every_provider_writes_a_config_that_loads() {
        for p in PROVIDERS {
            for (protocol, preset) in [(Protocol::Pop3, &p.pop3), (Protocol::Imap, &p.imap)] {
                let Some(preset) = preset else { continue };
                let server = server(Some(p.name), None, Some(protocol.name())).unwrap();
                let (text, account) = written(&server);
                assert_eq!(account.protocol, protocol, "{}\n{text}", p.name);
                assert_eq!(account.host, preset.host, "{}", p.name);
                let port = if protocol == Protocol::Imap { 993 } else { 995 };
                assert_eq!(account.port, port, "{}", p.name);
                assert_eq!(account.tls, crate::config::TlsMode::Implicit, "{}", p.name);
                match &account.imap {
                    Some(imap) => assert_eq!(imap.folders, ["INBOX"], "{}", p.name),
                    None => assert_eq!(protocol, Protocol::Pop3, "{}", p.name),
                }
            }
        }
    }

    #[test]
    fn gmail_offers_imap_with_its_quirks_and_the_keys_explained() {
        // Without --protocol: POP3, as this command has always written,
        // with a line that offers IMAP.
        let pop3 = server(Some("gmail"), None, None).unwrap();
        assert_eq!(
            (pop3.protocol, pop3.host.as_str()),
            (Protocol::Pop3, "pop.gmail.com")
        );
        let (text, _) = written(&pop3);
        assert!(
            text.contains(
                "# gmail offers IMAP too: popfetch init --provider gmail --protocol imap"
            ),
            "{text}"
        );
        let imap = server(Some("gmail"), None, Some("imap")).unwrap();
        let (text, account) = written(&imap);
        assert_eq!(
            (account.host.as_str(), account.port),
            ("imap.gmail.com", 993)
        );
        for needle in [
            "protocol = \"imap\"",
            "folders = [\"INBOX\"]",
            "app password",
            "move_to = \"[Gmail]/Trash\"",
            "[Gmail]/All Mail",
            "# fetch = \"unseen\"",
            "# mark_seen = true",
            "# move_to = \"Archive\"",
            "port = 143",
            "gmail offers POP3 too",
        ] {
            assert!(text.contains(needle), "no {needle:?} in:\n{text}");
        }
        // The commented keys are the defaults or examples: nothing is set
        // that the user did not see.
        let settings = account.imap.unwrap();
        assert_eq!(settings.fetch, crate::config::FetchMode::New);
        assert!(!settings.mark_seen && settings.move_to.is_none());
    }

    #[test]
    fn a_provider_without_pop3_gets_imap_and_refuses_pop3() {
        let icloud = server(Some("icloud"), None, None).unwrap();
        assert_eq!(
            (
                icloud.protocol,
                icloud.host.as_str(),
                icloud.also.as_deref()
            ),
            (Protocol::Imap, "imap.mail.me.com", None)
        );
        let e = server(Some("icloud"), None, Some("pop3")).err().unwrap();
        assert_eq!(e.kind(), ExitKind::Usage);
        assert!(e.to_string().contains("icloud does not offer POP3"), "{e}");
        let e = server(None, None, None).err().unwrap();
        assert!(e.to_string().contains("icloud"), "{e}");
        // --host with --protocol imap: the IMAP ports.
        let host = server(None, Some("mail.example.com"), Some("imap")).unwrap();
        let (_, account) = written(&host);
        assert_eq!((account.protocol, account.port), (Protocol::Imap, 993));
    }
}
