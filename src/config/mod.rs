//! Configuration: the TOML file (SPEC §2) turned into validated
//! [`Account`]s. Nothing downstream sees raw TOML.
//!
//! Two layers. `raw` reads the file with spans, so every error names the
//! file, the line and the key, and an unknown key gets a "did you mean".
//! Then validators, one per key or group of keys (`server`, `targets`,
//! `policy`, `password`), check each value and `account` lists the
//! calls that make an [`Account`]. `[defaults]` holds any account key and
//! is inherited by every account. Secrets are resolved late
//! ([`Account::secret`]) so a down server never runs a `password_command`;
//! `sync` asks for typed passwords up front, one at a time, so prompts
//! never interleave.
//!
//! ```text
//! raw       TOML → sections of located values; unknown keys; file:line
//! keys      the key lists (reader, did-you-mean, `popfetch man`)
//! section   what validators get: own keys over [defaults], typed, located
//! account   a section → Account: the validator calls, in order
//! server    host, user, protocol, folder, port, tls, auth, ca_file, pins
//! imap      folders, fetch, mark_seen, move_to, idle (IMAP accounts only)
//! targets   maildir | mbox | mda | lmtp | smtp | imap_target
//! imap_target  [targets.NAME]: url, and the connection keys
//! policy    keep, keep_days, max_size, filter, timeouts, interval
//! password  password / password_command / prompt
//! oauth     oauth, oauth_*: the token from `popfetch login` instead
//! paths     ~ and relative paths, XDG defaults, owner-only file check
//! secret    a password that never prints itself
//! ```

mod account;
mod imap;
mod imap_target;
mod keys;
mod oauth;
pub(crate) mod password;
mod paths;
mod policy;
mod raw;
pub mod secret;
mod section;
mod server;
mod targets;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::secret::Secret;
use crate::error::{Error, Result};
use crate::net::TlsTrust;
use crate::source::pop3::auth::AuthMethod;

pub use keys::{did_you_mean, ACCOUNT_KEYS, TARGET_KEYS};
pub use password::PasswordSource;
pub use targets::{Endpoint, SmtpAuth, SmtpLogin, Wire};

/// How the connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    Implicit,
    StartTls,
    None,
}

impl TlsMode {
    pub fn name(self) -> &'static str {
        match self {
            TlsMode::Implicit => "implicit",
            TlsMode::StartTls => "starttls",
            TlsMode::None => "none",
        }
    }
}

/// Which protocol the server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Pop3,
    /// RFC 937, for old servers.
    Pop2,
    /// RFC 3501 / RFC 9051.
    Imap,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Pop3 => "pop3",
            Protocol::Pop2 => "pop2",
            Protocol::Imap => "imap",
        }
    }
}

/// Which messages of an IMAP folder a sync offers (`fetch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchMode {
    /// Not in the seen state.
    New,
    /// Without the `\Seen` flag (and not in the seen state either).
    Unseen,
}

/// What only an IMAP account has (SPEC §8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImapSettings {
    /// Each one its own mailbox in the seen state; never empty.
    pub folders: Vec<String>,
    pub fetch: FetchMode,
    /// Set `\Seen` on a message once its record is committed.
    pub mark_seen: bool,
    /// Where the policy deletes, move to this folder instead.
    pub move_to: Option<String>,
    /// `watch` may wait with IDLE.
    pub idle: bool,
}

/// Where messages are delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Maildir(PathBuf),
    Mbox(PathBuf),
    /// A command run by `sh -c` with the message on stdin.
    Mda(String),
    /// An IMAP mailbox, appended to (`imap_target`).
    Imap(Box<ImapTarget>),
    Lmtp(Wire),
    Smtp(Wire),
}

/// A `[targets.NAME]` table: an IMAP folder and how to log in to it.
#[derive(Clone, Debug)]
pub struct ImapTarget {
    pub name: String,
    /// As written, for messages.
    pub url: String,
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub folder: String,
    pub user: String,
    pub auth: AuthMethod,
    pub password: PasswordSource,
    pub trust: TlsTrust,
    pub timeout: Duration,
}

/// One table is one target: its name says which.
impl PartialEq for ImapTarget {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for ImapTarget {}

impl ImapTarget {
    /// The connection as an IMAP account, so the sources' connect and
    /// login (TLS, pins, SASL, `password_command`) serve the target too.
    /// `label` names it in messages; `command_timeout` limits a
    /// `password_command`.
    pub fn connection(&self, label: &str, command_timeout: Duration) -> Account {
        Account {
            name: label.to_string(),
            protocol: Protocol::Imap,
            folder: None,
            imap: None,
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            tls: self.tls,
            auth: self.auth,
            password: self.password.clone(),
            trust: self.trust.clone(),
            target: Target::Imap(Box::new(self.clone())),
            keep: true,
            keep_days: None,
            max_size: None,
            filter: None,
            timeout: self.timeout,
            command_timeout,
            interval: Duration::from_secs(300),
        }
    }
}

impl Target {
    pub fn describe(&self) -> String {
        match self {
            Target::Maildir(p) => format!("maildir {}", p.display()),
            Target::Mbox(p) => format!("mbox {}", p.display()),
            Target::Mda(cmd) => format!("mda {cmd}"),
            Target::Imap(t) => format!("imap_target {} ({})", t.name, t.url),
            Target::Lmtp(w) => format!("lmtp {}", w.url),
            Target::Smtp(w) => format!("smtp {}", w.url),
        }
    }
}

/// One validated account.
#[derive(Clone, Debug)]
pub struct Account {
    pub name: String,
    pub protocol: Protocol,
    /// POP2 only: the mailbox to open with FOLD (default: the inbox).
    pub folder: Option<String>,
    /// IMAP accounts only.
    pub imap: Option<ImapSettings>,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub tls: TlsMode,
    pub auth: AuthMethod,
    pub password: PasswordSource,
    pub trust: TlsTrust,
    pub target: Target,
    pub keep: bool,
    /// With `keep`: delete from the server this many days after the first
    /// download.
    pub keep_days: Option<u32>,
    /// Larger messages stay on the server, never downloaded.
    pub max_size: Option<u64>,
    /// Command deciding from the header block: 0 fetch, 1 delete, 2 leave.
    pub filter: Option<String>,
    pub timeout: Duration,
    /// Time limit for the MDA, `filter` and `password_command`.
    pub command_timeout: Duration,
    /// How often `watch` syncs the account.
    pub interval: Duration,
}

impl Account {
    /// The mailbox identity the seen state belongs to: `user@host`, host
    /// lower-cased (SPEC §2). Port and section name are not part of it.
    /// An IMAP folder is a mailbox of its own: `user@host/FOLDER`, of the
    /// account's first folder ([`Account::per_folder`] gives the others).
    pub fn identity(&self) -> String {
        let base = format!("{}@{}", self.user, self.host.to_ascii_lowercase());
        match self.imap.as_ref().and_then(|i| i.folders.first()) {
            Some(folder) => format!("{base}/{folder}"),
            None => base,
        }
    }

    /// One account per mailbox: for IMAP, one per folder (each with just
    /// that folder, so its identity, lock and session are that folder's);
    /// for the other protocols the account itself.
    pub fn per_folder(&self) -> Vec<Account> {
        match &self.imap {
            Some(imap) if imap.folders.len() > 1 => imap
                .folders
                .iter()
                .map(|f| Account {
                    imap: Some(ImapSettings {
                        folders: vec![f.clone()],
                        ..imap.clone()
                    }),
                    ..self.clone()
                })
                .collect(),
            _ => vec![self.clone()],
        }
    }

    /// Gets the password or token: inline, from `password_command`, or by
    /// prompting on the terminal.
    pub fn secret(&self) -> Result<Secret> {
        self.secret_noting(crate::oauth::Log::SILENT)
    }

    /// [`Account::secret`], saying on `log` (`-v`, `-vv`) when an OAuth
    /// access token is refreshed on the way.
    pub fn secret_noting(&self, log: crate::oauth::Log) -> Result<Secret> {
        match &self.password {
            PasswordSource::Inline(s) => Ok(s.clone()),
            PasswordSource::Command(cmd) => password::run_command(cmd, self.command_timeout),
            PasswordSource::Prompt => password::prompt(&self.name, &self.identity()),
            PasswordSource::OAuth(o) => crate::oauth::access_token(o, None, log),
        }
    }

    /// After the server refused `rejected`: a refreshed OAuth access token
    /// to log in with once more, or `None` when the secret does not come
    /// from an OAuth login (a password is not retried).
    pub fn secret_after_refusal(
        &self,
        rejected: &Secret,
        log: crate::oauth::Log,
    ) -> Result<Option<Secret>> {
        match &self.password {
            PasswordSource::OAuth(o) => {
                crate::oauth::access_token(o, Some(rejected), log).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Whether [`Account::secret`] would ask on the terminal.
    pub fn prompts(&self) -> bool {
        matches!(self.password, PasswordSource::Prompt)
    }

    /// This account with its secret already in hand (asked for before the
    /// accounts run in parallel, so prompts never interleave).
    pub fn with_secret(&self, secret: Secret) -> Account {
        Account {
            password: PasswordSource::Inline(secret),
            ..self.clone()
        }
    }
}

/// The whole configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    pub state_dir: PathBuf,
    pub accounts: Vec<Account>,
    /// The file itself holds a secret, in any section: then it must be
    /// readable by its owner alone.
    holds_secret: bool,
}

impl Config {
    /// The config file to use: `-c`, else `$POPFETCH_CONFIG` (both handled
    /// by the CLI), else `$XDG_CONFIG_HOME/popfetch/config.toml`.
    pub fn default_path() -> Result<PathBuf> {
        paths::default_config_path()
    }

    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::config(format!(
                    "no config file at {}: create one with `popfetch init --host HOST --user USER` (or `--provider gmail` etc.), or pass -c FILE",
                    path.display()
                ))
            } else {
                Error::config(format!("cannot read config file {}: {e}", path.display()))
            }
        })?;
        // Paths in the file are relative to the file's folder: made from
        // an absolute path they stay right whatever the working directory
        // of whoever uses them later (an MDA, `accounts`' report).
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let path = absolute.as_path();
        let config = parse(&text, path)?;
        if config.holds_secret {
            paths::refuse_if_others_can_read(path)?;
        }
        Ok(config)
    }

    /// The accounts named on the command line, in that order, or all.
    pub fn select(&self, names: &[String]) -> Result<Vec<&Account>> {
        if names.is_empty() {
            if self.accounts.is_empty() {
                return Err(Error::config(format!(
                    "{}: no accounts: add an [accounts.NAME] section",
                    self.path.display()
                )));
            }
            return Ok(self.accounts.iter().collect());
        }
        names
            .iter()
            .map(|n| {
                self.accounts.iter().find(|a| &a.name == n).ok_or_else(|| {
                    let known: Vec<&str> = self.accounts.iter().map(|a| a.name.as_str()).collect();
                    let hint = did_you_mean(n, &known)
                        .map(|k| format!("; did you mean `{k}`?"))
                        .unwrap_or_else(|| format!(" (accounts: {})", known.join(", ")));
                    Error::new(
                        crate::error::ExitKind::Usage,
                        format!("no account named `{n}` in {}{hint}", self.path.display()),
                    )
                })
            })
            .collect()
    }
}

/// Parses and validates a config file's text. `path` is used for messages
/// and to resolve relative paths.
pub fn parse(text: &str, path: &Path) -> Result<Config> {
    let src = raw::Source { text, path };
    let raw = raw::read(&src)?;
    let state_dir = match &raw.state_dir {
        Some(dir) => paths::resolve(dir, &src),
        None => paths::default_state_dir()?,
    };
    let accounts = account::accounts(&src, &raw, &state_dir)?;
    Ok(Config {
        path: path.to_path_buf(),
        state_dir,
        accounts,
        holds_secret: raw.holds_secret(),
    })
}
