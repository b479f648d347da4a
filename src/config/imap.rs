//! Validators for the keys only an IMAP account has (SPEC §8): `folders`,
//! `fetch`, `mark_seen`, `move_to`, `idle`. On a POP3 or POP2 account each
//! of them is refused by name, never ignored.

use toml::de::DeValue;

use super::keys::did_you_mean;
use super::section::{Section, Value};
use super::{FetchMode, ImapSettings, Protocol};
use crate::error::Result;

/// The keys of this file, in the order their mistakes are named.
pub(super) const KEYS: &[&str] = &["folders", "fetch", "mark_seen", "move_to", "idle"];

/// The IMAP settings of an IMAP account; `None` for another protocol,
/// which must set none of the keys.
pub(super) fn settings(s: &Section, protocol: Protocol) -> Result<Option<ImapSettings>> {
    if protocol != Protocol::Imap {
        if let Some(v) = KEYS.iter().find_map(|k| s.get(k)) {
            return Err(v.err(format!(
                "{}: `{}` is for protocol = \"imap\" only; take it out of this {} account \
                 (or out of [defaults])",
                s.header,
                v.key,
                protocol.name().to_ascii_uppercase()
            )));
        }
        return Ok(None);
    }
    let folders = folders(s.get("folders"))?;
    let fetch = fetch(s.get("fetch"))?;
    let mark_seen = s.get("mark_seen").map_or(Ok(false), |v| v.bool())?;
    let move_to = move_to(s.get("move_to"), &folders)?;
    let idle = s.get("idle").map_or(Ok(false), |v| v.bool())?;
    Ok(Some(ImapSettings {
        folders,
        fetch,
        mark_seen,
        move_to,
        idle,
    }))
}

/// A folder name that can be sent: not empty, no NUL or line break.
fn folder_name(v: &Value, name: &str) -> Result<String> {
    if name.is_empty() || name.bytes().any(|b| matches!(b, 0 | b'\r' | b'\n')) {
        return Err(v.err(format!(
            "{} = {name:?}: a folder name must not be empty or hold NUL or line breaks",
            v.key
        )));
    }
    Ok(name.to_string())
}

/// `folders`: a non-empty list of distinct names; `["INBOX"]` when unset.
fn folders(v: Option<Value>) -> Result<Vec<String>> {
    let Some(v) = v else {
        return Ok(vec!["INBOX".to_string()]);
    };
    let DeValue::Array(items) = v.toml() else {
        return Err(v.err(format!(
            "folders must be a list of folder names such as [\"INBOX\"], not {}",
            v.toml().type_str()
        )));
    };
    if items.is_empty() {
        return Err(v.err("folders = []: name at least one folder (such as \"INBOX\")"));
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items.iter() {
        let name = item
            .get_ref()
            .as_str()
            .ok_or_else(|| v.err("folders: every entry must be a string"))?;
        let name = folder_name(&v, name)?;
        // INBOX is case-insensitive (RFC 3501 §5.1): inbox and INBOX are
        // one folder.
        let same = |a: &str, b: &str| {
            a == b || (a.eq_ignore_ascii_case("INBOX") && b.eq_ignore_ascii_case("INBOX"))
        };
        if out.iter().any(|f| same(f, &name)) {
            return Err(v.err(format!(
                "folders: {name:?} is listed twice; name each folder once"
            )));
        }
        out.push(name);
    }
    Ok(out)
}

/// `fetch`: "new" (not in the seen state) or "unseen" (no `\Seen` flag).
fn fetch(v: Option<Value>) -> Result<FetchMode> {
    let Some(v) = v else {
        return Ok(FetchMode::New);
    };
    match v.str()? {
        "new" => Ok(FetchMode::New),
        "unseen" => Ok(FetchMode::Unseen),
        other => {
            let hint = did_you_mean(other, &["new", "unseen"])
                .map(|k| format!("; did you mean \"{k}\"?"))
                .unwrap_or_default();
            Err(v.err(format!(
                "fetch = {other:?}: expected \"new\" or \"unseen\"{hint}"
            )))
        }
    }
}

/// `move_to`: a folder other than the ones fetched from.
fn move_to(v: Option<Value>, folders: &[String]) -> Result<Option<String>> {
    let Some(v) = v else {
        return Ok(None);
    };
    let name = folder_name(&v, v.str()?)?;
    if folders.contains(&name) {
        return Err(v.err(format!(
            "move_to = {name:?} is also in `folders`: messages moved there would be fetched \
             from there again; choose another folder"
        )));
    }
    Ok(Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::section::with_first_account;

    fn on(extra: &str) -> Result<Option<ImapSettings>> {
        let text = format!("[accounts.a]\nprotocol = \"imap\"\n{extra}\n");
        with_first_account(&text, |s| settings(s, Protocol::Imap))
    }

    #[test]
    fn defaults_are_inbox_new_and_no_flag_changes() {
        let got = on("").unwrap().unwrap();
        assert_eq!(got.folders, ["INBOX"]);
        assert_eq!(got.fetch, FetchMode::New);
        assert!(!got.mark_seen && !got.idle);
        assert_eq!(got.move_to, None);
    }

    #[test]
    fn every_key_is_checked_and_named_with_its_line() {
        for (extra, needle) in [
            ("folders = []", "name at least one folder"),
            ("folders = \"INBOX\"", "must be a list"),
            ("folders = [\"INBOX\", \"inbox\"]", "listed twice"),
            ("folders = [\"a\", \"a\"]", "listed twice"),
            ("folders = [\"\"]", "must not be empty"),
            ("folders = [1]", "every entry must be a string"),
            ("fetch = \"unsen\"", "did you mean \"unseen\""),
            ("mark_seen = \"yes\"", "true or false"),
            ("idle = 1", "true or false"),
            ("move_to = \"INBOX\"", "also in `folders`"),
        ] {
            let err = on(extra).unwrap_err().to_string();
            assert!(
                err.starts_with("/etc/popfetch/config.toml:3:") && err.contains(needle),
                "{extra}: {err}"
            );
        }
        let got = on("folders = [\"INBOX\", \"Lists/rust\"]\nfetch = \"unseen\"\nmark_seen = true\nmove_to = \"Archive\"\nidle = true")
            .unwrap()
            .unwrap();
        assert_eq!(got.folders, ["INBOX", "Lists/rust"]);
        assert_eq!(got.fetch, FetchMode::Unseen);
        assert!(got.mark_seen && got.idle);
        assert_eq!(got.move_to.as_deref(), Some("Archive"));
    }

    #[test]
    fn other_protocols_refuse_the_keys_even_from_defaults() {
        let text = "[defaults]\nmark_seen = true\n[accounts.a]\nhost = \"h\"\n";
        let err = with_first_account(text, |s| settings(s, Protocol::Pop3))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/etc/popfetch/config.toml:2:")
                && err.contains("`mark_seen` is for protocol = \"imap\" only")
                && err.contains("POP3 account"),
            "{err}"
        );
        let none = with_first_account("[accounts.a]\n", |s| settings(s, Protocol::Pop2)).unwrap();
        assert!(none.is_none());
    }
}
