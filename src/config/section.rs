//! What a validator gets: a section's keys, its own over the inherited
//! ones, each as a [`Value`] that knows its key and its place in the file,
//! so every validator can name file:line and the key in its message.

use std::sync::LazyLock;

use toml::de::DeValue;

use super::raw::{type_error, RawKeys, RawSection, RawValue, Source};
use crate::error::{Error, Result};

/// What a validator gets: one value, the key it was given under, and the
/// means to name its place in the file. Type errors point at the value,
/// errors about its meaning at the key.
#[derive(Clone, Copy)]
pub(super) struct Value<'v> {
    pub key: &'v str,
    raw: &'v RawValue<'v>,
    src: &'v Source<'v>,
}

impl<'v> Value<'v> {
    /// `raw` seen under its key name, ready for a validator.
    pub fn new(key: &'v str, raw: &'v RawValue<'v>, src: &'v Source<'v>) -> Value<'v> {
        Value { key, raw, src }
    }

    /// An error about this key's value, at the key's line.
    pub fn err(&self, msg: impl std::fmt::Display) -> Error {
        self.src.err(&self.raw.key_span, msg)
    }

    pub fn source(&self) -> &'v Source<'v> {
        self.src
    }

    /// The value as TOML has it, for keys that take more than one type.
    pub fn toml(&self) -> &'v DeValue<'v> {
        self.raw.value.get_ref()
    }

    fn type_err(&self, expected: &str) -> Error {
        let value = &self.raw.value;
        type_error(self.src, self.key, &value.span(), value.get_ref(), expected)
    }

    pub fn str(&self) -> Result<&'v str> {
        self.toml()
            .as_str()
            .ok_or_else(|| self.type_err("a string"))
    }

    pub fn bool(&self) -> Result<bool> {
        self.toml()
            .as_bool()
            .ok_or_else(|| self.type_err("true or false"))
    }

    pub fn int(&self) -> Result<i64> {
        let bad = || self.type_err("a whole number");
        let i = self.toml().as_integer().ok_or_else(bad)?;
        i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).map_err(|_| bad())
    }
}

/// Groups of keys of which a section uses one alternative: where to
/// deliver, and where the secret comes from. An account that sets a key of
/// a group inherits from `[defaults]` only the keys that go with it.
static ALTERNATIVES: LazyLock<[Vec<Vec<&'static str>>; 2]> = LazyLock::new(|| {
    [
        vec![
            vec!["maildir"],
            vec!["mbox"],
            vec!["mda"],
            vec!["imap_target"],
            vec!["lmtp", "deliver_to"],
            ["smtp", "deliver_to"]
                .into_iter()
                .chain(super::keys::SMTP_KEYS.iter().map(|(k, _)| *k))
                .collect(),
        ],
        vec![
            vec!["password"],
            vec!["password_command"],
            super::keys::OAUTH_KEYS.iter().map(|(k, _)| *k).collect(),
        ],
    ]
});

/// One section as the validators see it: its own keys over the inherited
/// ones (`[defaults]` for an account).
pub(super) struct Section<'s> {
    /// `[accounts.NAME]`, as messages name it.
    pub header: String,
    raw: &'s RawSection<'s>,
    inherited: &'s RawKeys<'s>,
    src: &'s Source<'s>,
}

impl<'s> Section<'s> {
    /// `table` is the header's first part: `accounts`.
    pub fn new(
        table: &str,
        raw: &'s RawSection<'s>,
        inherited: &'s RawKeys<'s>,
        src: &'s Source<'s>,
    ) -> Section<'s> {
        Section {
            header: format!("[{table}.{}]", raw.name),
            raw,
            inherited,
            src,
        }
    }

    pub fn name(&self) -> &'s str {
        &self.raw.name
    }

    pub fn get(&self, key: &str) -> Option<Value<'s>> {
        let (key, raw) = match self.raw.keys.get_key_value(key) {
            Some(own) => own,
            None if self.overridden(key) => return None,
            None => self.inherited.get_key_value(key)?,
        };
        Some(Value::new(key, raw, self.src))
    }

    /// Whether an inherited `key` gives way to the section's own choice:
    /// the section sets a key of the same group of [`ALTERNATIVES`] that
    /// does not go with it. `[defaults] maildir` and an account's own
    /// `mbox` is the account's choice, not two destinations.
    fn overridden(&self, key: &str) -> bool {
        ALTERNATIVES.iter().any(|group| {
            let in_group = |k: &str| group.iter().any(|alt| alt.contains(&k));
            in_group(key)
                && self.raw.keys.keys().any(|own| {
                    in_group(own)
                        && !group
                            .iter()
                            .any(|alt| alt.contains(&key) && alt.contains(&own.as_str()))
                })
        })
    }

    /// A key that must be a string when it is there.
    pub fn str(&self, key: &str) -> Result<Option<(&'s str, Value<'s>)>> {
        self.get(key).map(|v| Ok((v.str()?, v))).transpose()
    }

    /// An error about the section as a whole, at its header.
    pub fn err(&self, msg: impl std::fmt::Display) -> Error {
        self.src.err(&self.raw.span, msg)
    }
}

/// Runs `check` on the first account of a test's config text (as if at
/// /etc/popfetch/config.toml), so a validator can be tested on its own.
#[cfg(test)]
pub(super) fn with_first_account<R>(text: &str, check: impl FnOnce(&Section) -> R) -> R {
    let src = Source {
        text,
        path: std::path::Path::new("/etc/popfetch/config.toml"),
    };
    let raw = super::raw::read(&src).expect("the test's config has a valid shape");
    check(&Section::new(
        "accounts",
        &raw.accounts[0],
        &raw.defaults,
        &src,
    ))
}
