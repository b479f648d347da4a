//! `popfetch seen import`: take over another fetcher's record of what was
//! already downloaded, so switching tools downloads nothing twice.
//!
//! Each reader is strict: a line it does not understand is an error naming
//! the line, and nothing is imported. Only the records of this account's
//! user and host are taken from files that hold several accounts.

use std::path::Path;

use crate::error::{Error, ExitKind, Result};
use crate::source::pop3::codec::valid_uidl;

/// The fetchers whose state popfetch reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// fetchmail's `.fetchids`: `user@host uid` lines
    Fetchmail,
    /// mpop's uidls file: `<count> <host> <user>` headers, then one UID (and
    /// in older files a time) per line
    Mpop,
    /// getmail's `oldmail-*` file: `uid NUL timestamp` lines
    Getmail,
    /// fdm's cache: `<length> <uid>` lines
    Fdm,
}

/// One imported record: the UIDL and, when the file has it, the Unix time
/// of the download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imported {
    pub uidl: String,
    pub time: Option<i64>,
}

/// getmail keeps one file per mailbox, named `oldmail-HOST-PORT-USER`:
/// a file so named for another user or server is refused, since its
/// records would mark as delivered messages this account never got (the
/// next sync would skip them). A file renamed to anything else is taken
/// as the user says.
fn check_getmail_name(path: &Path, user: &str, host: &str) -> Result<()> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(());
    };
    let Some(rest) = name.strip_prefix("oldmail-") else {
        return Ok(());
    };
    let ours = rest
        .get(..host.len())
        .filter(|h| h.eq_ignore_ascii_case(host))
        .and_then(|_| rest[host.len()..].strip_prefix('-'))
        .and_then(|rest| {
            let digits = rest.find(|c: char| !c.is_ascii_digit())?;
            (digits > 0).then(|| &rest[digits..])
        })
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|u| u == user);
    if ours {
        return Ok(());
    }
    Err(Error::new(
        ExitKind::Usage,
        format!(
            "{}: getmail names this file for another mailbox than {user}@{host} (its files are \
             oldmail-HOST-PORT-USER); import the one named for this account, or, if this is the \
             same mailbox under another name of the server, copy it to a name that does not start \
             with oldmail- and import that",
            path.display()
        ),
    ))
}

/// Reads `path` in the `source` format, keeping the records of `user` at
/// `host`.
pub fn read(source: Source, path: &Path, user: &str, host: &str) -> Result<Vec<Imported>> {
    let data = std::fs::read(path).map_err(|e| {
        Error::with_source(
            ExitKind::Usage,
            format!("cannot read {}", path.display()),
            e,
        )
    })?;
    let bad = |line: usize, what: &str| {
        Error::new(
            ExitKind::Usage,
            format!(
                "{}:{line}: not a line of a {} state file: {what}; nothing was imported",
                path.display(),
                match source {
                    Source::Fetchmail => "fetchmail",
                    Source::Mpop => "mpop",
                    Source::Getmail => "getmail",
                    Source::Fdm => "fdm",
                }
            ),
        )
    };
    let text = String::from_utf8_lossy(&data);
    let mut out = Vec::new();
    let uidl = |line: usize, s: &str| -> Result<String> {
        if valid_uidl(s) {
            Ok(s.to_string())
        } else {
            Err(bad(line, &format!("{s:?} is not a valid UIDL")))
        }
    };
    match source {
        Source::Fetchmail => {
            for (i, line) in text.lines().enumerate() {
                let n = i + 1;
                let line = line.trim_end();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let mut words = line.split_ascii_whitespace();
                let (Some(account), Some(uid)) = (words.next(), words.next()) else {
                    return Err(bad(n, "expected `user@host uid`"));
                };
                // User names may contain '@': the host follows the last one.
                let Some(at) = account.rfind('@') else {
                    return Err(bad(n, "expected `user@host uid`"));
                };
                let (u, h) = (&account[..at], &account[at + 1..]);
                let uid = uidl(n, uid)?;
                if u == user && h.eq_ignore_ascii_case(host) {
                    out.push(Imported {
                        uidl: uid,
                        time: None,
                    });
                }
            }
        }
        Source::Mpop => {
            // Two layouts. mpop 1.4 (Debian 12) writes `#` comments, list
            // headers that begin with a space (` <count> <host> <user>`),
            // then one UID per line. Other versions write a first line
            // `MPOP_UIDLS_FILE 1`, headers without the space, and
            // `<uid> <unix-time>` lines. Both are read; a UID line is one
            // word or a word and a time.
            let lines: Vec<&str> = text.lines().collect();
            let mut i = 0;
            while i < lines.len() {
                let n = i + 1;
                let line = lines[i];
                i += 1;
                if line.trim().is_empty()
                    || line.starts_with('#')
                    || (n == 1 && line.starts_with("MPOP_UIDLS_FILE"))
                {
                    continue;
                }
                // The user name is the rest of the line: it may hold spaces.
                let mut words = line.trim().splitn(3, ' ');
                let (Some(count), Some(h), Some(u)) = (words.next(), words.next(), words.next())
                else {
                    return Err(bad(n, "expected a `<count> <host> <user>` header"));
                };
                let count: usize = count
                    .parse()
                    .map_err(|_| bad(n, "the count in `<count> <host> <user>` is not a number"))?;
                let ours = u.trim() == user && h.eq_ignore_ascii_case(host);
                for _ in 0..count {
                    let n = i + 1;
                    let Some(entry) = lines.get(i) else {
                        return Err(bad(n, "the file ends before the header's count of UIDs"));
                    };
                    i += 1;
                    let mut words = entry.split_ascii_whitespace();
                    let (uid, time) = match (words.next(), words.next(), words.next()) {
                        (Some(uid), None, None) => (uid, None),
                        (Some(uid), Some(time), None) => {
                            let time: i64 = time
                                .parse()
                                .map_err(|_| bad(n, "the time after the UID is not a number"))?;
                            (uid, Some(time))
                        }
                        _ => return Err(bad(n, "expected `<uid>` or `<uid> <unix-time>`")),
                    };
                    let uid = uidl(n, uid)?;
                    if ours {
                        out.push(Imported { uidl: uid, time });
                    }
                }
            }
        }
        Source::Getmail => {
            check_getmail_name(path, user, host)?;
            for (i, line) in text.lines().enumerate() {
                let n = i + 1;
                if line.is_empty() {
                    continue;
                }
                let Some((uid, time)) = line.split_once('\0') else {
                    return Err(bad(n, "expected `uid NUL timestamp`"));
                };
                let time: f64 = time
                    .trim()
                    .parse()
                    .map_err(|_| bad(n, "the timestamp is not a number"))?;
                out.push(Imported {
                    uidl: uidl(n, uid)?,
                    time: Some(time as i64),
                });
            }
        }
        Source::Fdm => {
            for (i, line) in text.lines().enumerate() {
                let n = i + 1;
                if line.trim().is_empty() {
                    continue;
                }
                let Some((len, uid)) = line.split_once(' ') else {
                    return Err(bad(n, "expected `<length> <uid>`"));
                };
                let len: usize = len
                    .parse()
                    .map_err(|_| bad(n, "the length is not a number"))?;
                if uid.len() != len {
                    return Err(bad(
                        n,
                        &format!("the UID is {} bytes, not {len}", uid.len()),
                    ));
                }
                out.push(Imported {
                    uidl: uidl(n, uid)?,
                    time: None,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_str(source: Source, text: &[u8]) -> Result<Vec<Imported>> {
        read_as(source, text, "al@ice")
    }

    fn read_as(source: Source, text: &[u8], user: &str) -> Result<Vec<Imported>> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state");
        std::fs::write(&p, text).unwrap();
        read(source, &p, user, "Pop.Example.com")
    }

    fn uidls(v: Vec<Imported>) -> Vec<String> {
        v.into_iter().map(|r| r.uidl).collect()
    }

    /// A getmail file named for another mailbox is refused; one named for
    /// this one, or renamed, is read.
    #[test]
    fn getmail_files_named_for_another_mailbox_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let read_named = |name: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, b"UID0\x001700000000.0\n").unwrap();
            read(Source::Getmail, &p, "al-ice", "pop.example.com")
        };
        for ours in [
            "oldmail-pop.example.com-995-al-ice",
            "oldmail-POP.Example.com-110-al-ice",
            "my-getmail-state",
        ] {
            assert_eq!(uidls(read_named(ours).unwrap()), ["UID0"], "{ours}");
        }
        for theirs in [
            "oldmail-pop.example.com-995-bob",
            "oldmail-pop.other.org-995-al-ice",
            "oldmail-pop.example.com-x-al-ice",
            "oldmail-pop.example.com-995-al-ice2",
        ] {
            let err = read_named(theirs).unwrap_err();
            assert_eq!(err.kind(), ExitKind::Usage, "{theirs}");
            assert!(err.to_string().contains("another mailbox"), "{err}");
        }
    }

    #[test]
    fn fetchmail_selects_user_and_host() {
        let got = read_str(
            Source::Fetchmail,
            b"al@ice@pop.example.com UID@1\nbob@pop.example.com UID2\nal@ice@other.host UID3\n",
        )
        .unwrap();
        assert_eq!(uidls(got), vec!["UID@1"]);
        let err = read_str(Source::Fetchmail, b"al@ice@pop.example.com\n").unwrap_err();
        assert!(err.to_string().contains(":1:"), "{err}");
    }

    #[test]
    fn mpop_counts_and_times() {
        let text = b"MPOP_UIDLS_FILE 1\n\n2 pop.example.com al@ice\nA 1700000000\nB 1700000001\n1 pop.example.com bob\nC 1\n";
        let got = read_str(Source::Mpop, text).unwrap();
        assert_eq!(
            got,
            vec![
                Imported {
                    uidl: "A".into(),
                    time: Some(1_700_000_000)
                },
                Imported {
                    uidl: "B".into(),
                    time: Some(1_700_000_001)
                },
            ]
        );
        let err = read_str(Source::Mpop, b"3 pop.example.com al@ice\nA 1\n").unwrap_err();
        assert!(err.to_string().contains("ends before"), "{err}");
    }

    /// mpop 1.4 (Debian 12): comments, headers with a leading space, one
    /// UID per line without a time; a user name with a space stays whole.
    #[test]
    fn mpop_1_4_layout_without_times() {
        let text = b"# This file was generated by mpop version 1.4.18.\n#\n \
            2 pop.example.com al@ice\nA\nB\n 1 pop.example.com bob smith\nC\n";
        let got = read_str(Source::Mpop, text).unwrap();
        assert_eq!(uidls(got), vec!["A", "B"]);
        let got = read_as(Source::Mpop, text, "bob smith").unwrap();
        assert_eq!(uidls(got), vec!["C"]);
        let err = read_str(Source::Mpop, b" 2 pop.example.com al@ice\nA\n").unwrap_err();
        assert!(err.to_string().contains("ends before"), "{err}");
    }

    #[test]
    fn getmail_and_fdm() {
        let got = read_str(Source::Getmail, b"X1\x001700000000.5\nX2\x001700000001\n").unwrap();
        assert_eq!(
            got[0],
            Imported {
                uidl: "X1".into(),
                time: Some(1_700_000_000)
            }
        );
        assert_eq!(got.len(), 2);
        let got = read_str(Source::Fdm, b"3 abc\n5 hello\n").unwrap();
        assert_eq!(uidls(got), vec!["abc", "hello"]);
        let err = read_str(Source::Fdm, b"3 abc\n4 hello\n").unwrap_err();
        assert!(err.to_string().contains(":2:"), "{err}");
    }
}
