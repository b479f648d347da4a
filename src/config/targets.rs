//! Validator for where the messages go: exactly one target key per account.
//! A new target (SPEC §8: `lmtp`, `smtp`, `imap_target`) is one more entry
//! in [`TARGETS`].

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
            build(value, v, targets)
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
