//! The first layer: the TOML file as it is written, with spans. Only the
//! shape is checked here (valid TOML, known keys, tables where tables
//! belong); what a value means is for the validators, which get each value
//! with the key it was given under and its place in the file.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::keys::{did_you_mean, ACCOUNT_KEYS, NOT_YET, TARGET_KEYS, TOP_KEYS};
use crate::error::{Error, Result};

/// The config file's text and name: turns a byte offset into the
/// `file:line:` that starts every message.
pub(super) struct Source<'a> {
    pub text: &'a str,
    pub path: &'a Path,
}

impl Source<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1
    }

    pub fn err(&self, span: &Range<usize>, msg: impl std::fmt::Display) -> Error {
        Error::config(format!(
            "{}:{}: {msg}",
            self.path.display(),
            self.line_of(span.start)
        ))
    }

    /// The folder relative paths in the file are taken from.
    pub fn dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

/// A value as written, and where its key is.
#[derive(Debug)]
pub(super) struct RawValue<'a> {
    pub key_span: Range<usize>,
    pub value: Spanned<DeValue<'a>>,
}

/// The keys of one table, by name.
pub(super) type RawKeys<'a> = BTreeMap<String, RawValue<'a>>;

/// A named table such as `[accounts.work]`.
#[derive(Debug)]
pub(super) struct RawSection<'a> {
    pub name: String,
    /// The section's name in its header, for "has no `host`".
    pub span: Range<usize>,
    pub keys: RawKeys<'a>,
}

/// The whole file, nothing validated beyond its shape.
#[derive(Debug)]
pub(super) struct RawConfig<'a> {
    pub state_dir: Option<String>,
    /// `[defaults]`: inherited by every account.
    pub defaults: RawKeys<'a>,
    /// `[accounts.NAME]`, in the order the TOML table lists them.
    pub accounts: Vec<RawSection<'a>>,
    /// `[targets.NAME]`: IMAP mailboxes accounts may append to.
    pub targets: Vec<RawSection<'a>>,
}

impl RawConfig<'_> {
    /// Whether a section (`[defaults]`, an account, a target) writes a
    /// secret into the file itself, whether or not an account uses it.
    pub fn holds_secret(&self) -> bool {
        const SECRETS: [&str; 3] = ["password", "oauth_client_secret", "smtp_password"];
        std::iter::once(&self.defaults)
            .chain(self.accounts.iter().map(|a| &a.keys))
            .chain(self.targets.iter().map(|t| &t.keys))
            .any(|keys| SECRETS.iter().any(|k| keys.contains_key(*k)))
    }
}

/// Reads the file's text into its raw structure; errors name file:line.
pub(super) fn read<'a>(src: &Source<'a>) -> Result<RawConfig<'a>> {
    let root = DeTable::parse(src.text).map_err(|e| {
        if let Some(dup) = repeated_section(src.text) {
            return dup.error(src);
        }
        let line = e.span().map(|s| src.line_of(s.start)).unwrap_or(0);
        Error::config(format!(
            "{}:{line}: not valid TOML: {}",
            src.path.display(),
            e.message().trim()
        ))
    })?;

    let mut raw = RawConfig {
        state_dir: None,
        defaults: RawKeys::new(),
        accounts: Vec::new(),
        targets: Vec::new(),
    };
    for (key, value) in root.into_inner() {
        let name: &str = key.get_ref();
        match name {
            "state_dir" => {
                let dir = value.get_ref().as_str();
                let dir = dir.ok_or_else(|| {
                    type_error(src, "state_dir", &value.span(), value.get_ref(), "a string")
                })?;
                raw.state_dir = Some(dir.to_string());
            }
            "defaults" => {
                let table = into_table(src, "defaults", value)?;
                raw.defaults = read_keys(src, "[defaults]", table, &ACCOUNT_KEYS)?;
            }
            "accounts" => {
                for (acct, body) in into_table(src, "accounts", value)? {
                    let acct_name: &str = acct.get_ref();
                    let body = into_table(src, &format!("accounts.{acct_name}"), body)?;
                    let keys =
                        read_keys(src, &format!("[accounts.{acct_name}]"), body, &ACCOUNT_KEYS)?;
                    raw.accounts.push(RawSection {
                        name: acct_name.to_string(),
                        span: acct.span(),
                        keys,
                    });
                }
            }
            "targets" => {
                for (target, body) in into_table(src, "targets", value)? {
                    let target_name: &str = target.get_ref();
                    let body = into_table(src, &format!("targets.{target_name}"), body)?;
                    let keys =
                        read_keys(src, &format!("[targets.{target_name}]"), body, &TARGET_KEYS)?;
                    raw.targets.push(RawSection {
                        name: target_name.to_string(),
                        span: target.span(),
                        keys,
                    });
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
                return Err(src.err(&key.span(), format!("unknown key `{other}`{hint}")));
            }
        }
    }
    // The parser's tables are sorted by name; accounts run, print and
    // decide the exit code in the order the file gives them (SPEC §6).
    raw.accounts.sort_by_key(|a| a.span.start);
    raw.targets.sort_by_key(|t| t.span.start);
    Ok(raw)
}

/// Checks a table's keys against `known` and indexes them by name.
fn read_keys<'a>(
    src: &Source,
    section: &str,
    table: DeTable<'a>,
    known: &[(&str, &str)],
) -> Result<RawKeys<'a>> {
    let names: Vec<&str> = known.iter().map(|(k, _)| *k).collect();
    let mut out = RawKeys::new();
    for (key, value) in table {
        let name: &str = key.get_ref();
        if !names.contains(&name) {
            let hint = did_you_mean(name, &names)
                .map(|k| format!("; did you mean `{k}`?"))
                .unwrap_or_else(|| "; see `popfetch man` for the keys".to_string());
            return Err(src.err(
                &key.span(),
                format!("unknown key `{name}` in {section}{hint}"),
            ));
        }
        if NOT_YET.contains(&name) {
            return Err(src.err(
                &key.span(),
                format!("`{name}` in {section} is not supported yet by this version of popfetch; remove it"),
            ));
        }
        out.insert(
            name.to_string(),
            RawValue {
                key_span: key.span(),
                value,
            },
        );
    }
    Ok(out)
}

fn into_table<'a>(src: &Source, key: &str, v: Spanned<DeValue<'a>>) -> Result<DeTable<'a>> {
    let span = v.span();
    match v.into_inner() {
        DeValue::Table(t) => Ok(t),
        other => Err(type_error(
            src,
            key,
            &span,
            &other,
            &format!("a table ([{key}])"),
        )),
    }
}

/// "`key` must be EXPECTED, not TYPE", at the value (`span`).
pub(super) fn type_error(
    src: &Source,
    key: &str,
    span: &Range<usize>,
    value: &DeValue,
    expected: &str,
) -> Error {
    src.err(
        span,
        format!("`{key}` must be {expected}, not {}", value.type_str()),
    )
}

/// A `[accounts.NAME]` header that appears twice, found by a plain scan of
/// the lines: the TOML parser only says "duplicate key".
struct RepeatedSection {
    name: String,
    first_line: usize,
    line: usize,
}

impl RepeatedSection {
    fn error(&self, src: &Source) -> Error {
        Error::config(format!(
            "{}:{}: the section [accounts.{}] appears twice (first at line {}); give each account \
             its own name, or merge the two",
            src.path.display(),
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse_str(text: &str) -> Result<RawConfig<'_>> {
        read(&Source {
            text,
            path: Path::new("/etc/popfetch/config.toml"),
        })
    }

    const MINIMAL: &str =
        "[accounts.work]\nhost = \"Pop.Example.com\"\nuser = \"alice\"\nmaildir = \"Mail\"\n";

    #[test]
    fn a_repeated_section_name_is_named() {
        let text = format!("{MINIMAL}\n[accounts.work]\nkeep = false\n");
        let msg = parse_str(&text).unwrap_err().to_string();
        assert!(
            msg.contains("the section [accounts.work] appears twice (first at line 1)"),
            "{msg}"
        );
    }

    /// Accounts and targets keep the file's order (the parser sorts its
    /// tables by name): runs, listings and the exit code follow it.
    #[test]
    fn sections_keep_the_files_order() {
        let text = "[accounts.zz]\nhost = \"z\"\n[targets.b]\nuser = \"b\"\n\
                    [accounts.aa]\nhost = \"a\"\n[targets.a]\nuser = \"a\"\n\
                    [accounts.mm]\nhost = \"m\"\n";
        let raw = parse_str(text).unwrap();
        let names: Vec<&str> = raw.accounts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["zz", "aa", "mm"]);
        let names: Vec<&str> = raw.targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
    }

    /// A secret anywhere in the file counts, even one in [defaults] that
    /// every account replaces with its own password_command.
    #[test]
    fn a_secret_in_any_section_is_held_by_the_file() {
        let held = |text: &str| parse_str(text).unwrap().holds_secret();
        assert!(!held(MINIMAL));
        assert!(held(&format!(
            "[defaults]\npassword = \"p\"\n{MINIMAL}password_command = \"c\"\n"
        )));
        assert!(held(&format!("{MINIMAL}smtp_password = \"p\"\n")));
        assert!(held(&format!(
            "{MINIMAL}[targets.t]\noauth_client_secret = \"s\"\n"
        )));
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
}
