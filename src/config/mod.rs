//! Configuration: the TOML file (SPEC §2) turned into validated
//! [`Account`]s. Nothing downstream sees raw TOML.
//!
//! The file is read with spans so every error names the file, the line and
//! the key, and an unknown key gets a "did you mean". `[defaults]` holds
//! any account key and is inherited by every account. Secrets are resolved
//! late ([`Account::secret`]) so a down server never runs a
//! `password_command`; `sync` asks for typed passwords up front, one at a
//! time, so prompts never interleave.

pub mod secret;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, IsTerminal, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::config::secret::Secret;
use crate::error::{Error, Result};
use crate::net::{self, Fingerprint, TlsTrust};
use crate::source::pop3::auth::AuthMethod;
use crate::ui::term;

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
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Pop3 => "pop3",
            Protocol::Pop2 => "pop2",
        }
    }
}

/// Where the password comes from.
#[derive(Clone, Debug)]
pub enum PasswordSource {
    Inline(Secret),
    Command(String),
    Prompt,
}

/// Where messages are delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Maildir(PathBuf),
    Mbox(PathBuf),
    /// A command run by `sh -c` with the message on stdin.
    Mda(String),
}

impl Target {
    pub fn describe(&self) -> String {
        match self {
            Target::Maildir(p) => format!("maildir {}", p.display()),
            Target::Mbox(p) => format!("mbox {}", p.display()),
            Target::Mda(cmd) => format!("mda {cmd}"),
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
}

impl Account {
    /// The mailbox identity the seen state belongs to: `user@host`, host
    /// lower-cased (SPEC §2). Port and section name are not part of it.
    pub fn identity(&self) -> String {
        format!("{}@{}", self.user, self.host.to_ascii_lowercase())
    }

    /// Gets the password or token: inline, from `password_command`, or by
    /// prompting on the terminal.
    pub fn secret(&self) -> Result<Secret> {
        match &self.password {
            PasswordSource::Inline(s) => Ok(s.clone()),
            PasswordSource::Command(cmd) => run_password_command(cmd, self.command_timeout),
            PasswordSource::Prompt => prompt_password(&self.name, &self.identity()),
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
}

impl Config {
    /// The config file to use: `-c`, else `$POPFETCH_CONFIG` (both handled
    /// by the CLI), else `$XDG_CONFIG_HOME/popfetch/config.toml`.
    pub fn default_path() -> Result<PathBuf> {
        let dirs = directories::BaseDirs::new()
            .ok_or_else(|| Error::config("cannot find your home directory (is HOME set?)"))?;
        Ok(dirs.config_dir().join("popfetch").join("config.toml"))
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
        let config = parse(&text, path)?;
        check_permissions(path, &text, &config)?;
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

/// Every account key, with what it takes: the single list the parser,
/// "did you mean" and the documentation use.
pub const ACCOUNT_KEYS: &[(&str, &str)] = &[
    ("host", "server name (required)"),
    ("user", "login name (required)"),
    ("protocol", "pop3 (default) | pop2 (RFC 937; port 109)"),
    ("tls", "implicit | starttls | none"),
    ("port", "server port (995 with implicit TLS, else 110)"),
    (
        "auth",
        "auto | user | apop | plain | login | cram-md5 | xoauth2 | oauthbearer",
    ),
    (
        "password",
        "the password (only in a file readable by you alone)",
    ),
    (
        "password_command",
        "shell command printing the password or token",
    ),
    ("ca_file", "PEM file with extra trust anchors"),
    (
        "tls_fingerprint",
        "pin the server certificate: \"sha256:AB:CD:…\" or a list",
    ),
    ("maildir", "deliver into this Maildir"),
    ("mbox", "deliver into this mbox file (mboxrd)"),
    ("mda", "deliver by piping to this command"),
    ("keep", "leave messages on the server (default true)"),
    (
        "keep_days",
        "with keep: delete N days after the first download",
    ),
    ("max_size", "leave larger messages on the server"),
    ("filter", "command deciding from the headers"),
    (
        "timeout",
        "seconds for the name lookup, connect and each read or write (default 60)",
    ),
    (
        "command_timeout",
        "seconds the mda, filter or password_command may run before it is killed with its children (default 300)",
    ),
    ("folder", "POP2 mailbox"),
];

/// Keys that belong to features not built yet: refused, never ignored.
const NOT_YET: &[&str] = &[];

const TOP_KEYS: &[&str] = &["state_dir", "defaults", "accounts"];

/// Where a value came from, for error messages.
struct Located<'a> {
    value: &'a Spanned<DeValue<'a>>,
    key_span: std::ops::Range<usize>,
}

struct Ctx<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1
    }

    fn err(&self, span: &std::ops::Range<usize>, msg: impl std::fmt::Display) -> Error {
        Error::config(format!(
            "{}:{}: {msg}",
            self.path.display(),
            self.line_of(span.start)
        ))
    }

    fn dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

/// Parses and validates a config file's text. `path` is used for messages
/// and to resolve relative paths.
pub fn parse(text: &str, path: &Path) -> Result<Config> {
    let ctx = Ctx { text, path };
    let root = DeTable::parse(text).map_err(|e| {
        if let Some(dup) = repeated_section(text) {
            return dup.error(&ctx);
        }
        let line = e.span().map(|s| ctx.line_of(s.start)).unwrap_or(0);
        Error::config(format!(
            "{}:{line}: not valid TOML: {}",
            path.display(),
            e.message().trim()
        ))
    })?;
    let root = root.get_ref();

    let mut state_dir = None;
    let mut defaults: BTreeMap<String, Located> = BTreeMap::new();
    let mut sections: Vec<(String, std::ops::Range<usize>, BTreeMap<String, Located>)> = Vec::new();

    for (key, value) in root.iter() {
        let name: &str = key.get_ref();
        match name {
            "state_dir" => {
                let s = expect_str(&ctx, "state_dir", value)?;
                state_dir = Some(resolve_path(&ctx, s));
            }
            "defaults" => {
                let table = expect_table(&ctx, "defaults", value)?;
                defaults = account_keys(&ctx, "[defaults]", table)?;
            }
            "accounts" => {
                let table = expect_table(&ctx, "accounts", value)?;
                for (acct, body) in table.iter() {
                    let acct_name: &str = acct.get_ref();
                    let body = expect_table(&ctx, &format!("accounts.{acct_name}"), body)?;
                    let keys = account_keys(&ctx, &format!("[accounts.{acct_name}]"), body)?;
                    sections.push((acct_name.to_string(), acct.span(), keys));
                }
            }
            other => {
                let hint = did_you_mean(other, TOP_KEYS)
                    .map(|k| format!("; did you mean `{k}`?"))
                    .or_else(|| {
                        ACCOUNT_KEYS.iter().any(|(k, _)| *k == other).then(|| {
                            " (account keys go in an [accounts.NAME] or [defaults] section)"
                                .to_string()
                        })
                    })
                    .unwrap_or_default();
                return Err(ctx.err(&key.span(), format!("unknown key `{other}`{hint}")));
            }
        }
    }

    let state_dir = match state_dir {
        Some(d) => d,
        None => default_state_dir()?,
    };
    let mut accounts: Vec<Account> = Vec::new();
    let mut mailboxes: HashMap<(String, Option<String>), usize> = HashMap::new();
    for (i, (name, span, keys)) in sections.iter().enumerate() {
        let account = build_account(&ctx, name, span, keys, &defaults)?;
        // The seen state belongs to the mailbox, not the section: two
        // sections for one mailbox would share it, and the second would
        // never fetch what the first recorded.
        let mailbox = (account.identity(), account.folder.clone());
        if let Some(&other) = mailboxes.get(&mailbox) {
            // Name them in file order: the later one is the one to remove.
            let (first, second) = if sections[other].1.start < span.start {
                (&sections[other], &sections[i])
            } else {
                (&sections[i], &sections[other])
            };
            return Err(ctx.err(
                &second.1,
                format!(
                    "[accounts.{}] is the same mailbox as [accounts.{}] ({}): they would share one \
                     seen state, so one of them would never fetch anything; keep one section",
                    second.0, first.0, mailbox.0
                ),
            ));
        }
        mailboxes.insert(mailbox, i);
        accounts.push(account);
    }
    Ok(Config {
        path: path.to_path_buf(),
        state_dir,
        accounts,
    })
}

/// A `[accounts.NAME]` header that appears twice, found by a plain scan of
/// the lines: the TOML parser only says "duplicate key".
struct RepeatedSection {
    name: String,
    first_line: usize,
    line: usize,
}

impl RepeatedSection {
    fn error(&self, ctx: &Ctx) -> Error {
        Error::config(format!(
            "{}:{}: the section [accounts.{}] appears twice (first at line {}); give each account \
             its own name, or merge the two",
            ctx.path.display(),
            self.line,
            self.name,
            self.first_line
        ))
    }
}

fn repeated_section(text: &str) -> Option<RepeatedSection> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(inner) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) else {
            continue;
        };
        let Some(name) = inner.trim().strip_prefix("accounts.") else {
            continue;
        };
        let name = name.trim().trim_matches('"').to_string();
        if let Some(&first) = seen.get(&name) {
            return Some(RepeatedSection {
                name,
                first_line: first,
                line: i + 1,
            });
        }
        seen.insert(name, i + 1);
    }
    None
}

fn default_state_dir() -> Result<PathBuf> {
    let dirs = directories::BaseDirs::new()
        .ok_or_else(|| Error::config("cannot find your home directory (is HOME set?)"))?;
    // XDG_STATE_HOME is Linux-only in `directories`; fall back to the data dir.
    let base = dirs
        .state_dir()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dirs.data_local_dir().to_path_buf());
    Ok(base.join("popfetch"))
}

/// Checks the keys of an account-like table and indexes them by name.
fn account_keys<'a>(
    ctx: &Ctx,
    section: &str,
    table: &'a DeTable<'a>,
) -> Result<BTreeMap<String, Located<'a>>> {
    let names: Vec<&str> = ACCOUNT_KEYS.iter().map(|(k, _)| *k).collect();
    let mut out = BTreeMap::new();
    for (key, value) in table.iter() {
        let name: &str = key.get_ref();
        if !names.contains(&name) {
            let hint = did_you_mean(name, &names)
                .map(|k| format!("; did you mean `{k}`?"))
                .unwrap_or_else(|| "; see `popfetch man` for the keys".to_string());
            return Err(ctx.err(
                &key.span(),
                format!("unknown key `{name}` in {section}{hint}"),
            ));
        }
        if NOT_YET.contains(&name) {
            return Err(ctx.err(
                &key.span(),
                format!("`{name}` in {section} is not supported yet by this version of popfetch; remove it"),
            ));
        }
        out.insert(
            name.to_string(),
            Located {
                value,
                key_span: key.span(),
            },
        );
    }
    Ok(out)
}

fn build_account(
    ctx: &Ctx,
    name: &str,
    section_span: &std::ops::Range<usize>,
    own: &BTreeMap<String, Located>,
    defaults: &BTreeMap<String, Located>,
) -> Result<Account> {
    let get = |k: &str| own.get(k).or_else(|| defaults.get(k));
    let section = format!("[accounts.{name}]");
    let str_of = |k: &str| -> Result<Option<(&str, &Located)>> {
        match get(k) {
            Some(l) => Ok(Some((expect_str(ctx, k, l.value)?, l))),
            None => Ok(None),
        }
    };
    let required = |k: &str| -> Result<String> {
        match str_of(k)? {
            Some((s, l)) if !s.trim().is_empty() => {
                if s.bytes().any(|b| b.is_ascii_control()) {
                    return Err(ctx.err(
                        &l.key_span,
                        format!("`{k}` must not contain control characters"),
                    ));
                }
                Ok(s.trim().to_string())
            }
            Some((_, l)) => Err(ctx.err(&l.key_span, format!("`{k}` is empty"))),
            None => Err(ctx.err(section_span, format!("{section} has no `{k}` (required)"))),
        }
    };
    let host = required("host")?;
    let user = required("user")?;

    let protocol = match str_of("protocol")? {
        None => Protocol::Pop3,
        Some(("pop3", _)) => Protocol::Pop3,
        Some(("pop2", _)) => Protocol::Pop2,
        Some((p, l)) => {
            return Err(ctx.err(
                &l.key_span,
                format!("protocol = {p:?}: expected \"pop3\" or \"pop2\""),
            ))
        }
    };
    let folder = match str_of("folder")? {
        Some((_, l)) if protocol != Protocol::Pop2 => {
            return Err(ctx.err(&l.key_span, "`folder` is for protocol = \"pop2\" only"))
        }
        Some((f, l)) => {
            if f.is_empty()
                || f.bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            {
                return Err(ctx.err(&l.key_span, "`folder` must be one word"));
            }
            Some(f.to_string())
        }
        None => None,
    };
    if protocol == Protocol::Pop2 {
        // POP2 has no TLS of its own: the user must say so, or name a
        // TLS-wrapped port.
        match (str_of("tls")?, get("port")) {
            (None, _) => {
                return Err(ctx.err(
                    section_span,
                    format!(
                        "{section}: POP2 has no TLS; set tls = \"none\" (the password is sent in clear), \
                         or tls = \"implicit\" with the port of a TLS-wrapped POP2 service"
                    ),
                ))
            }
            (Some(("starttls", l)), _) => {
                return Err(ctx.err(&l.key_span, "POP2 has no STLS: use tls = \"none\" or \"implicit\""))
            }
            (Some(("implicit", l)), None) => {
                return Err(ctx.err(
                    &l.key_span,
                    "POP2 over TLS has no standard port: set `port` to the TLS-wrapped service's port",
                ))
            }
            _ => {}
        }
        if let Some((a, l)) = str_of("auth")? {
            if !matches!(a, "auto" | "user") {
                return Err(ctx.err(
                    &l.key_span,
                    "POP2 logs in with HELO user password: `auth` must be \"auto\"",
                ));
            }
        }
    }

    let port = match get("port") {
        Some(l) => {
            let n = expect_int(ctx, "port", l.value)?;
            u16::try_from(n).ok().filter(|p| *p > 0).ok_or_else(|| {
                ctx.err(
                    &l.key_span,
                    format!("port = {n} is not a TCP port (1-65535)"),
                )
            })?
        }
        None => 0,
    };
    let tls = match str_of("tls")? {
        Some((s, l)) => {
            match s {
                "implicit" => TlsMode::Implicit,
                "starttls" => TlsMode::StartTls,
                "none" => TlsMode::None,
                other => {
                    let hint = did_you_mean(other, &["implicit", "starttls", "none"])
                        .map(|k| format!("; did you mean \"{k}\"?"))
                        .unwrap_or_default();
                    return Err(ctx.err(
                    &l.key_span,
                    format!("tls = {other:?}: expected \"implicit\", \"starttls\" or \"none\"{hint}"),
                ));
                }
            }
        }
        None if port == 110 => TlsMode::StartTls,
        None => TlsMode::Implicit,
    };
    let port = if port != 0 {
        port
    } else if protocol == Protocol::Pop2 {
        109
    } else if tls == TlsMode::Implicit {
        995
    } else {
        110
    };

    let auth = match str_of("auth")? {
        Some((s, l)) => AuthMethod::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|(_, m)| *m)
            .ok_or_else(|| {
                let names: Vec<&str> = AuthMethod::ALL.iter().map(|(n, _)| *n).collect();
                ctx.err(
                    &l.key_span,
                    format!("auth = {s:?}: expected one of {}", names.join(", ")),
                )
            })?,
        None => AuthMethod::Auto,
    };

    let password = match (str_of("password")?, str_of("password_command")?) {
        (Some(_), Some((_, l))) => {
            return Err(ctx.err(
                &l.key_span,
                format!("{section} has both `password` and `password_command`; keep one"),
            ))
        }
        (Some((p, _)), None) => PasswordSource::Inline(Secret::new(p)),
        (None, Some((c, l))) => {
            if c.trim().is_empty() {
                return Err(ctx.err(&l.key_span, "`password_command` is empty"));
            }
            PasswordSource::Command(c.to_string())
        }
        (None, None) => PasswordSource::Prompt,
    };

    let ca_file = str_of("ca_file")?.map(|(s, _)| resolve_path(ctx, s));
    let mut fingerprints: Vec<Fingerprint> = Vec::new();
    if let Some(l) = get("tls_fingerprint") {
        let items: Vec<&str> = match l.value.get_ref() {
            DeValue::String(s) => vec![s.as_ref()],
            DeValue::Array(a) => a
                .iter()
                .map(|v| {
                    v.get_ref().as_str().ok_or_else(|| {
                        ctx.err(&l.key_span, "tls_fingerprint: every entry must be a string")
                    })
                })
                .collect::<Result<_>>()?,
            other => {
                return Err(ctx.err(
                    &l.key_span,
                    format!(
                        "tls_fingerprint must be a string or a list of strings, not {}",
                        other.type_str()
                    ),
                ))
            }
        };
        for item in items {
            fingerprints.push(net::parse_fingerprint(item).ok_or_else(|| {
                ctx.err(
                    &l.key_span,
                    format!(
                        "tls_fingerprint {item:?} is not a SHA-256 fingerprint (\"sha256:\" and 32 hex bytes, colons optional)"
                    ),
                )
            })?);
        }
    }
    if tls == TlsMode::None && (ca_file.is_some() || !fingerprints.is_empty()) {
        let l = get("ca_file").or_else(|| get("tls_fingerprint")).unwrap();
        return Err(ctx.err(
            &l.key_span,
            "ca_file/tls_fingerprint are set but tls = \"none\": choose TLS or drop them",
        ));
    }

    let destinations: Vec<(&str, &str, &Located)> = ["maildir", "mbox", "mda"]
        .iter()
        .filter_map(|k| str_of(k).transpose().map(|r| r.map(|(v, l)| (*k, v, l))))
        .collect::<Result<_>>()?;
    let target = match destinations.as_slice() {
        [] => {
            return Err(ctx.err(
                section_span,
                format!("{section} has no destination: set `maildir`, `mbox` or `mda`"),
            ))
        }
        [(key, value, l)] => {
            if value.trim().is_empty() {
                return Err(ctx.err(&l.key_span, format!("`{key}` is empty")));
            }
            match *key {
                "maildir" => Target::Maildir(resolve_path(ctx, value)),
                "mbox" => Target::Mbox(resolve_path(ctx, value)),
                _ => Target::Mda(value.to_string()),
            }
        }
        [.., (_, _, l)] => {
            let keys: Vec<&str> = destinations.iter().map(|(k, _, _)| *k).collect();
            return Err(ctx.err(
                &l.key_span,
                format!(
                    "{section} sets {}; choose exactly one of maildir, mbox, mda",
                    keys.join(" and ")
                ),
            ));
        }
    };

    let keep = match get("keep") {
        Some(l) => expect_bool(ctx, "keep", l.value)?,
        None => true,
    };
    let timeout = match get("timeout") {
        Some(l) => {
            let n = expect_int(ctx, "timeout", l.value)?;
            if !(1..=3600).contains(&n) {
                return Err(ctx.err(
                    &l.key_span,
                    format!("timeout = {n}: expected 1 to 3600 seconds"),
                ));
            }
            Duration::from_secs(n as u64)
        }
        None => Duration::from_secs(60),
    };
    // Under the 10 minutes a POP3 server may wait before it drops an idle
    // session (RFC 1939 §3), yet long enough for an MDA on a big message
    // or a passphrase typed at a gpg prompt.
    let command_timeout = match get("command_timeout") {
        Some(l) => {
            let n = expect_int(ctx, "command_timeout", l.value)?;
            if !(1..=3600).contains(&n) {
                return Err(ctx.err(
                    &l.key_span,
                    format!("command_timeout = {n}: expected 1 to 3600 seconds"),
                ));
            }
            Duration::from_secs(n as u64)
        }
        None => Duration::from_secs(300),
    };

    let keep_days = match get("keep_days") {
        Some(l) => {
            let n = expect_int(ctx, "keep_days", l.value)?;
            Some(u32::try_from(n).map_err(|_| {
                ctx.err(
                    &l.key_span,
                    format!("keep_days = {n}: expected 0 or more days"),
                )
            })?)
        }
        None => None,
    };
    if let (Some(_), false) = (keep_days, keep) {
        let l = get("keep_days").unwrap();
        return Err(ctx.err(
            &l.key_span,
            "keep_days needs keep = true (with keep = false messages are deleted at once)",
        ));
    }
    let max_size = match str_of("max_size")? {
        Some((s, l)) => Some(parse_size(s).ok_or_else(|| {
            ctx.err(
                &l.key_span,
                format!("max_size = {s:?}: expected a size like \"25 MB\" (B, KB, MB, GB, KiB, MiB, GiB)"),
            )
        })?),
        None => match get("max_size") {
            Some(l) => {
                let n = expect_int(ctx, "max_size", l.value)?;
                Some(u64::try_from(n).map_err(|_| ctx.err(&l.key_span, "max_size must be positive"))?)
            }
            None => None,
        },
    };
    let filter = match str_of("filter")? {
        Some((f, l)) if f.trim().is_empty() => {
            return Err(ctx.err(&l.key_span, "`filter` is empty"))
        }
        // A filter judges the header block, which POP2 cannot show
        // without sending the whole message: it would never run.
        Some((_, l)) if protocol == Protocol::Pop2 => {
            return Err(ctx.err(
                &l.key_span,
                format!(
                    "{section}: `filter` needs POP3 (it reads the headers with TOP); a POP2 \
                     account cannot run it: take it out of this account (or out of [defaults])"
                ),
            ))
        }
        Some((f, _)) => Some(f.to_string()),
        None => None,
    };

    Ok(Account {
        name: name.to_string(),
        protocol,
        folder,
        host,
        port,
        user,
        tls,
        auth,
        password,
        trust: TlsTrust {
            ca_file,
            fingerprints,
        },
        target,
        keep,
        keep_days,
        max_size,
        filter,
        timeout,
        command_timeout,
    })
}

/// Parses `25 MB`, `1.5MiB`, `300 KB`, `1000` (bytes). KB/MB/GB are
/// decimal, KiB/MiB/GiB binary.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * factor;
    (bytes.is_finite() && bytes >= 1.0).then_some(bytes as u64)
}

fn expect_str<'a>(ctx: &Ctx, key: &str, v: &'a Spanned<DeValue<'a>>) -> Result<&'a str> {
    v.get_ref().as_str().ok_or_else(|| {
        ctx.err(
            &v.span(),
            format!("`{key}` must be a string, not {}", v.get_ref().type_str()),
        )
    })
}

fn expect_bool(ctx: &Ctx, key: &str, v: &Spanned<DeValue>) -> Result<bool> {
    v.get_ref().as_bool().ok_or_else(|| {
        ctx.err(
            &v.span(),
            format!(
                "`{key}` must be true or false, not {}",
                v.get_ref().type_str()
            ),
        )
    })
}

fn expect_int(ctx: &Ctx, key: &str, v: &Spanned<DeValue>) -> Result<i64> {
    let bad = || {
        ctx.err(
            &v.span(),
            format!(
                "`{key}` must be a whole number, not {}",
                v.get_ref().type_str()
            ),
        )
    };
    let i = v.get_ref().as_integer().ok_or_else(bad)?;
    i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).map_err(|_| bad())
}

fn expect_table<'a>(ctx: &Ctx, key: &str, v: &'a Spanned<DeValue<'a>>) -> Result<&'a DeTable<'a>> {
    v.get_ref().as_table().ok_or_else(|| {
        ctx.err(
            &v.span(),
            format!(
                "`{key}` must be a table ([{key}]), not {}",
                v.get_ref().type_str()
            ),
        )
    })
}

/// Expands `~/` and makes a relative path relative to the config's folder.
fn resolve_path(ctx: &Ctx, s: &str) -> PathBuf {
    expand_path(s, &ctx.dir())
}

pub fn expand_path(s: &str, base: &Path) -> PathBuf {
    if s == "~" || s.starts_with("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(s.trim_start_matches('~').trim_start_matches('/'));
        }
    }
    let p = PathBuf::from(s);
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
}

/// The closest candidate within a small edit distance, if any.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// SPEC §5: a file holding a password must be readable by its owner only.
fn check_permissions(path: &Path, _text: &str, config: &Config) -> Result<()> {
    let has_inline = config
        .accounts
        .iter()
        .any(|a| matches!(a.password, PasswordSource::Inline(_)));
    if !has_inline {
        return Ok(());
    }
    let mode = std::fs::metadata(path)
        .map_err(|e| Error::config(format!("cannot stat {}: {e}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(Error::config(format!(
            "{} holds a password but can be read by others (mode {:03o}); fix it with: chmod 600 {}",
            path.display(),
            mode & 0o777,
            shell_quote(&path.display().to_string())
        )));
    }
    Ok(())
}

fn shell_quote(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-~+".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Longest first line read from a password_command (a token is a few KiB).
const MAX_PASSWORD_OUTPUT: u64 = 1024 * 1024;

fn run_password_command(cmd: &str, limit: Duration) -> Result<Secret> {
    // stdin and stderr stay connected, and the command gets the terminal,
    // so pinentry/gpg-agent or a prompt of its own can ask.
    let mut command = crate::external::shell(cmd);
    command
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit())
        .stdout(Stdio::piped());
    let (ended, stdout) = crate::external::run(&mut command, limit, true, |child| {
        // Only the first line is used. It is read on a thread of its own,
        // which then drains the rest so the command never blocks on a full
        // pipe: a daemon the command started outside its process group
        // may hold the pipe open for ever, and must not keep us waiting.
        let Some(out) = child.stdout.take() else {
            return Vec::new();
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = std::io::BufReader::new(out);
            let mut first = Vec::new();
            let _ = (&mut out)
                .take(MAX_PASSWORD_OUTPUT)
                .read_until(b'\n', &mut first);
            let _ = tx.send(first);
            let _ = std::io::copy(&mut out, &mut std::io::sink());
        });
        rx.recv_timeout(limit).unwrap_or_default()
    })
    .map_err(|e| Error::config(format!("cannot run password_command: {e}")))?;
    let status = match ended {
        crate::external::Ended::Exited(status) => status,
        crate::external::Ended::TimedOut => {
            return Err(Error::config(format!(
                "password_command did not finish within {} s and was killed \
                 (raise command_timeout if it needs longer)",
                limit.as_secs()
            )))
        }
    };
    if !status.success() {
        let how = match status.code() {
            Some(c) => format!("exit code {c}"),
            None => "killed by a signal".to_string(),
        };
        return Err(Error::config(format!(
            "password_command failed ({how}); run it by hand to see why"
        )));
    }
    let text = String::from_utf8(stdout)
        .map_err(|_| Error::config("password_command printed invalid UTF-8"))?;
    let first = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if first.is_empty() {
        return Err(Error::config("password_command printed nothing"));
    }
    Ok(Secret::new(first))
}

fn prompt_password(account: &str, identity: &str) -> Result<Secret> {
    let interactive = std::io::stdin().is_terminal();
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty");
    let (true, Ok(tty)) = (interactive, tty) else {
        return Err(Error::config(
            "no password: set `password_command` (or `password` in a file only you can read), \
             or run popfetch from a terminal to be asked",
        ));
    };
    let res = term::read_hidden_line(&tty, &format!("Password for {identity} ({account}): "));
    let pw = res.map_err(|e| Error::config(format!("reading the password: {e}")))?;
    if pw.is_empty() {
        return Err(Error::config("empty password"));
    }
    Ok(Secret::new(pw))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Config> {
        parse(s, Path::new("/etc/popfetch/config.toml"))
    }

    const MINIMAL: &str =
        "[accounts.work]\nhost = \"Pop.Example.com\"\nuser = \"alice\"\nmaildir = \"Mail\"\n";

    #[test]
    fn minimal_account_gets_safe_defaults() {
        let c = parse_str(MINIMAL).unwrap();
        let a = &c.accounts[0];
        assert_eq!(a.tls, TlsMode::Implicit);
        assert_eq!(a.port, 995);
        assert!(a.keep);
        assert_eq!(a.auth, AuthMethod::Auto);
        assert_eq!(a.identity(), "alice@pop.example.com");
        assert_eq!(
            a.target,
            Target::Maildir(PathBuf::from("/etc/popfetch/Mail"))
        );
        assert!(matches!(a.password, PasswordSource::Prompt));
    }

    #[test]
    fn port_110_means_starttls_and_defaults_inherit() {
        let c = parse_str(&format!(
            "[defaults]\nkeep = false\ntimeout = 5\n{MINIMAL}port = 110\n"
        ))
        .unwrap();
        let a = &c.accounts[0];
        assert_eq!(a.tls, TlsMode::StartTls);
        assert!(!a.keep);
        assert_eq!(a.timeout, Duration::from_secs(5));
    }

    #[test]
    fn two_sections_for_one_mailbox_are_refused_naming_both() {
        let text = format!(
            "{MINIMAL}\n[accounts.again]\nhost = \"POP.example.com\"\nuser = \"alice\"\nmbox = \"~/m\"\n"
        );
        let msg = parse_str(&text).unwrap_err().to_string();
        assert!(
            msg.contains("[accounts.again] is the same mailbox as [accounts.work]")
                && msg.contains("alice@pop.example.com"),
            "{msg}"
        );
        // Another user on the same host is another mailbox.
        parse_str(&text.replace("user = \"alice\"\nmbox", "user = \"bob\"\nmbox")).unwrap();
    }

    #[test]
    fn a_repeated_section_name_is_named() {
        let text = format!("{MINIMAL}\n[accounts.work]\nkeep = false\n");
        let msg = parse_str(&text).unwrap_err().to_string();
        assert!(
            msg.contains("the section [accounts.work] appears twice (first at line 1)"),
            "{msg}"
        );
    }

    #[test]
    fn typo_names_line_key_and_suggestion() {
        let err = parse_str(&format!("{MINIMAL}kep = true\n")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("config.toml:5:"), "{msg}");
        assert!(
            msg.contains("`kep`") && msg.contains("did you mean `keep`"),
            "{msg}"
        );
        assert_eq!(err.kind(), crate::error::ExitKind::Config);
    }

    #[test]
    fn invalid_values_are_named() {
        for (extra, needle) in [
            ("tls = \"startls\"", "did you mean \"starttls\""),
            ("port = 70000", "not a TCP port"),
            ("keep = \"yes\"", "true or false"),
            ("auth = \"kerberos\"", "expected one of"),
            ("mbox = \"x\"", "choose exactly one"),
            ("max_size = \"12 parsecs\"", "expected a size"),
            ("keep_days = -1", "0 or more"),
            ("tls_fingerprint = \"sha256:12\"", "not a SHA-256"),
            ("folder = \"x\"", "for protocol = \"pop2\" only"),
            ("protocol = \"pop2\"", "POP2 has no TLS"),
            (
                "protocol = \"pop2\"\ntls = \"none\"\nfilter = \"f\"",
                "`filter` needs POP3",
            ),
        ] {
            let err = parse_str(&format!("{MINIMAL}{extra}\n")).unwrap_err();
            assert!(err.to_string().contains(needle), "{extra}: {err}");
        }
        let err = parse_str("[accounts.x]\nhost = \"h\"\nmaildir = \"m\"\n").unwrap_err();
        assert!(err.to_string().contains("no `user`"), "{err}");
        let err = parse_str("stat_dir = \"x\"\n").unwrap_err();
        assert!(
            err.to_string().contains("did you mean `state_dir`"),
            "{err}"
        );
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("25 MB"), Some(25_000_000));
        assert_eq!(parse_size("1MiB"), Some(1_048_576));
        assert_eq!(parse_size("1.5 kb"), Some(1500));
        assert_eq!(parse_size("300"), Some(300));
        assert_eq!(parse_size("MB"), None);
        assert_eq!(parse_size("0"), None);
    }

    #[test]
    fn did_you_mean_is_conservative() {
        assert_eq!(
            did_you_mean("pasword", &["password", "port"]),
            Some("password")
        );
        assert_eq!(did_you_mean("zzzzzz", &["password", "port"]), None);
    }

    #[test]
    fn paths_expand_home_and_config_dir() {
        let base = Path::new("/cfg");
        assert_eq!(expand_path("/abs", base), PathBuf::from("/abs"));
        assert_eq!(expand_path("rel/x", base), PathBuf::from("/cfg/rel/x"));
        if let Some(home) = std::env::var_os("HOME") {
            assert_eq!(expand_path("~/m", base), PathBuf::from(home).join("m"));
        }
    }
}
