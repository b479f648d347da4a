//! Delivery into an IMAP folder by APPEND (`imap_target`, SPEC §8): the
//! way home for a POP mailbox whose mail is read in Gmail or any IMAP
//! mailbox.
//!
//! `deliver` spools each message into an unlinked owner-only file in the
//! state directory, its LF line ends turned into CRLF on the way, so the
//! literal's size is known before it is sent and a message never sits
//! whole in memory. `commit` connects (once per sync, on the first batch),
//! journals every message of the batch, then appends them (pipelined
//! where the server offers LITERAL+) with no flags (unread) and the
//! message's `Date:` as internal date.
//!
//! Exactly-once over a crash: the journal entry (target, folder,
//! UIDVALIDITY, Message-ID, size, digest) is committed before the APPEND
//! is sent, and the seen record after the server's OK. An entry left
//! without its record is resolved at the next start by [`recover`]: an
//! entry with the UID the server gave (APPENDUID) was appended; for the
//! others, once the folder stopped growing (the server may still be
//! storing what the interrupted run sent), the folder is searched for the message (its `Message-ID`, or its `Date`
//! when it has none, and its exact size); found means delivered (the seen
//! record is written), not found means fetch it again.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{read_header_block, Delivered, Delivery, MessageInfo};
use crate::calendar::civil_from_days;
use crate::config::{Account, ImapTarget, Target};
use crate::error::{Error, ExitKind, Result};
use crate::source::connect::{open_imap, ConnectOptions};
use crate::source::imap::{Appending, Session};
use crate::state::store::{PendingEntry, Store};

/// Journal names of IMAP appends start with this.
const PREFIX: &str = "imap:";

/// What a journal entry records about one append (its name, as JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Journaled {
    /// The `[targets.NAME]` table.
    target: String,
    folder: String,
    uidvalidity: u32,
    /// The seen record's key: two copies of one message stay two entries.
    uidl: String,
    message_id: Option<String>,
    date: Option<String>,
    /// Bytes sent (CRLF line ends).
    size: u64,
    /// SHA-256 of the message as delivered (LF line ends), hex.
    digest: String,
    /// The UID the server gave the message (APPENDUID, RFC 4315): the
    /// entry is written again with it once the APPEND's OK arrived, so
    /// recovery knows it is there without searching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
}

impl Journaled {
    fn name(&self) -> String {
        format!(
            "{PREFIX}{}",
            serde_json::to_string(self).expect("plain fields serialize")
        )
    }

    fn parse(name: &str) -> Option<Journaled> {
        serde_json::from_str(name.strip_prefix(PREFIX)?).ok()
    }
}

/// Whether a journal entry is an IMAP append.
pub(crate) fn is_append(entry: &PendingEntry) -> bool {
    entry.name.starts_with(PREFIX)
}

/// A message spooled, waiting for the commit.
struct Spooled {
    file: File,
    size: u64,
    uidl: String,
    message_id: Option<String>,
    /// The `Date:` field as it was written.
    date_field: Option<String>,
    /// As IMAP `date-time`, when `Date:` parses.
    internal_date: Option<String>,
    digest: String,
}

pub struct ImapAppend {
    target: ImapTarget,
    /// The account whose messages these are, to connect as its target.
    account: Account,
    spool_dir: PathBuf,
    spooled: Vec<Spooled>,
    session: Option<Session>,
    /// Journal name → UID, from APPENDUID, for `-v`.
    uids: Vec<(String, u32)>,
    /// `-v` and the trace (`-vv`) of the target's session.
    opts: ConnectOptions,
}

impl ImapAppend {
    pub fn new(
        target: &ImapTarget,
        account: &Account,
        spool_dir: &Path,
        opts: &ConnectOptions,
    ) -> ImapAppend {
        ImapAppend {
            opts: opts.clone(),
            target: target.clone(),
            account: account.clone(),
            spool_dir: spool_dir.to_path_buf(),
            spooled: Vec::new(),
            session: None,
            uids: Vec::new(),
        }
    }

    /// The session with the target folder selected; connects the first
    /// time. Returns the folder's UIDVALIDITY.
    fn session(&mut self) -> Result<(&mut Session, u32)> {
        if self.session.is_none() {
            let session = connect(&self.target, &self.account, &self.opts)?;
            self.session = Some(session);
        }
        let session = self.session.as_mut().expect("just set");
        let uidvalidity = session.mailbox().map(|m| m.uidvalidity).unwrap_or(0);
        Ok((session, uidvalidity))
    }
}

/// Says goodbye to the target (LOGOUT) once the sync is done with it; a
/// session that failed was dropped already and is just closed.
impl Drop for ImapAppend {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = session.finish();
        }
    }
}

/// Logs in to the target and selects its folder.
fn connect(target: &ImapTarget, account: &Account, opts: &ConnectOptions) -> Result<Session> {
    let label = format!("{} (target {})", account.name, target.name);
    let conn = target.connection(&label, account.command_timeout);
    let opened = open_imap(&conn, opts, &|| {})?;
    let mut session = opened.session;
    session.select(&target.folder, false)?;
    Ok(session)
}

impl Delivery for ImapAppend {
    fn deliver(&mut self, info: &MessageInfo, body: &mut dyn Read) -> Result<Delivered> {
        let head = read_header_block(body)
            .map_err(|e| Error::with_source(ExitKind::TempFail, "reading the message", e))?;
        let message_id = header_field(&head, "message-id");
        let date_field = header_field(&head, "date");
        let internal_date = date_field.as_deref().and_then(imap_date);
        let file = crate::state::files::spool_file(&self.spool_dir)?;
        let mut out = Crlf {
            inner: BufWriter::with_capacity(64 * 1024, file),
            written: 0,
            last: b'\n',
            digest: Sha256::new(),
        };
        let mut whole = (&head[..]).chain(body);
        super::copy_with_final_newline(&mut whole, &mut out)
            .and_then(|_| out.inner.flush())
            .map_err(|e| Error::with_source(ExitKind::TempFail, "receiving the message", e))?;
        let Crlf {
            inner,
            written,
            digest,
            ..
        } = out;
        let mut file = inner.into_inner().map_err(|e| {
            Error::with_source(ExitKind::Io, "spooling the message", e.into_error())
        })?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| Error::with_source(ExitKind::Io, "spooling the message", e))?;
        self.spooled.push(Spooled {
            file,
            size: written,
            uidl: info.uidl.to_string(),
            message_id,
            date_field,
            internal_date,
            digest: hex(&digest.finalize()),
        });
        Ok(Delivered::Stored)
    }

    fn commit(
        &mut self,
        journal: &mut dyn FnMut(&[PendingEntry]) -> Result<()>,
    ) -> Result<Vec<String>> {
        if self.spooled.is_empty() {
            return Ok(Vec::new());
        }
        let (_, uidvalidity) = self.session()?;
        let folder = self.target.folder.clone();
        let entries: Vec<PendingEntry> = self
            .spooled
            .iter()
            .map(|s| PendingEntry {
                uidl: s.uidl.clone(),
                folder: PathBuf::from(&folder),
                name: Journaled {
                    target: self.target.name.clone(),
                    folder: folder.clone(),
                    uidvalidity,
                    uidl: s.uidl.clone(),
                    message_id: s.message_id.clone(),
                    date: s.date_field.clone(),
                    size: s.size,
                    digest: s.digest.clone(),
                    uid: None,
                }
                .name(),
            })
            .collect();
        journal(&entries)?;
        let mut spooled = std::mem::take(&mut self.spooled);
        let (session, _) = self.session()?;
        let mut batch: Vec<Appending> = spooled
            .iter_mut()
            .map(|s| Appending {
                date: s.internal_date.as_deref(),
                size: s.size,
                body: &mut s.file,
            })
            .collect();
        let appended = match session.append_all(&folder, &mut batch) {
            Ok(a) => a,
            Err(e) => {
                // Out of step or gone: no LOGOUT on it (see Drop).
                self.session = None;
                return Err(e);
            }
        };
        // The UIDs go into the journal before the seen records: a crash
        // in between leaves entries that recovery resolves without a
        // search. The first entries are cleared with the records.
        let mut names: Vec<String> = Vec::with_capacity(entries.len());
        let mut with_uid = Vec::new();
        let mut replaced = Vec::new();
        self.uids.clear();
        for (a, e) in appended.iter().zip(&entries) {
            let journaled = Journaled::parse(&e.name).filter(|j| {
                a.is_some_and(|a| a.uidvalidity == j.uidvalidity || j.uidvalidity == 0)
            });
            match (a, journaled) {
                (Some(a), Some(j)) => {
                    let name = Journaled {
                        uid: Some(a.uid),
                        ..j
                    }
                    .name();
                    self.uids.push((name.clone(), a.uid));
                    names.push(name.clone());
                    with_uid.push(PendingEntry { name, ..e.clone() });
                    replaced.push(e.name.clone());
                }
                _ => names.push(e.name.clone()),
            }
        }
        if !with_uid.is_empty() {
            journal(&with_uid)?;
            names.extend(replaced);
        }
        Ok(names)
    }

    fn rollback(&mut self) {
        self.spooled.clear();
    }

    fn discard_last(&mut self) -> bool {
        self.spooled.pop().is_some()
    }

    fn set_last_uidl(&mut self, uidl: &str) {
        if let Some(last) = self.spooled.last_mut() {
            last.uidl = uidl.to_string();
        }
    }

    fn destination(&self, name: Option<&str>) -> String {
        let uid = name.and_then(|n| self.uids.iter().find(|(k, _)| k == n));
        match uid {
            Some((_, uid)) => format!("{} UID {uid}", self.target.url),
            None => self.target.url.clone(),
        }
    }
}

/// Resolves the journal entries of appends an interrupted run left: each
/// one found in the target folder is recorded as seen, the others are
/// dropped (their messages are fetched again). Entries for another target
/// than the account's current one cannot be checked: they are dropped
/// with a warning.
pub(crate) fn recover(
    store: &mut Store,
    mailbox: i64,
    target: &Target,
    entries: Vec<PendingEntry>,
) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let current = match target {
        Target::Imap(t) => Some(t.as_ref()),
        _ => None,
    };
    let mut session: Option<Session> = None;
    // The server gave these a UID (APPENDUID) before the crash: they are
    // there, whatever the account delivers to now. An entry of the same
    // message without one (written before the APPEND) goes with it.
    let appended: std::collections::HashSet<String> = entries
        .iter()
        .filter(|e| Journaled::parse(&e.name).is_some_and(|j| j.uid.is_some()))
        .map(|e| e.uidl.clone())
        .collect();
    for entry in entries {
        let names = [entry.name.as_str()];
        if appended.contains(&entry.uidl) {
            store.commit_delivered_with_headers(mailbox, &[(&entry.uidl, None)], &names)?;
            continue;
        }
        let journaled = Journaled::parse(&entry.name);
        let (Some(j), Some(t)) = (journaled, current) else {
            warnings.push(format!(
                "an interrupted append to an IMAP target that is no longer configured could not be \
                 checked; its message ({}) is fetched again",
                entry.uidl
            ));
            store.drop_pending(mailbox, &names)?;
            continue;
        };
        if j.target != t.name || j.folder != t.folder {
            warnings.push(format!(
                "an interrupted append to [targets.{}] folder {:?} could not be checked (the \
                 account now delivers elsewhere); its message ({}) is fetched again",
                j.target, j.folder, entry.uidl
            ));
            store.drop_pending(mailbox, &names)?;
            continue;
        }
        if session.is_none() {
            let account = t.connection(&format!("target {}", t.name), RECOVERY_COMMAND_TIMEOUT);
            let opened = open_imap(&account, &ConnectOptions::default(), &|| {})?;
            let mut s = opened.session;
            settle(&mut s, &t.folder)?;
            session = Some(s);
        }
        let s = session.as_mut().expect("just set");
        let lookup = match (&j.message_id, &j.date) {
            (Some(id), _) => s.find("Message-ID", id, j.size)?,
            (None, Some(date)) => s.find("Date", date, j.size)?,
            (None, None) => None,
        };
        match lookup {
            Some(uids) if !uids.is_empty() => {
                store.commit_delivered_with_headers(mailbox, &[(&entry.uidl, None)], &names)?;
            }
            Some(_) => store.drop_pending(mailbox, &names)?,
            None => {
                warnings.push(format!(
                    "an interrupted append of a message without Message-ID and Date ({}) cannot \
                     be looked up in {}; it is fetched again and may be there twice",
                    entry.uidl, t.url
                ));
                store.drop_pending(mailbox, &names)?;
            }
        }
    }
    if let Some(s) = session {
        let _ = s.finish();
    }
    Ok(warnings)
}

/// Selects `folder` (read-only) once it has stopped growing. The server
/// may still be storing APPENDs the interrupted run had sent whole (they
/// were pipelined): a search before they land would not find them, and
/// they would be appended again. So the folder is looked at until its
/// size and UIDNEXT stay the same for [`SETTLE_QUIET`] (at most
/// [`SETTLE_MAX`]).
fn settle(session: &mut Session, folder: &str) -> Result<()> {
    let started = std::time::Instant::now();
    let state = |m: &crate::source::imap::Mailbox| (m.exists, m.uidnext);
    let mut last = state(session.select(folder, true)?);
    loop {
        std::thread::sleep(SETTLE_QUIET);
        let now = state(session.select(folder, true)?);
        if now == last || started.elapsed() >= SETTLE_MAX {
            return Ok(());
        }
        last = now;
    }
}

/// See [`settle`]: longer than a server takes between two APPENDs of a
/// batch it is still working through.
const SETTLE_QUIET: std::time::Duration = std::time::Duration::from_secs(1);
const SETTLE_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// The `password_command` time limit while recovering (the account's own
/// is not at hand there): the default of `command_timeout`.
const RECOVERY_COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Writes LF line ends as CRLF, counting the bytes written and taking the
/// digest of the bytes as they came.
struct Crlf<W: Write> {
    inner: W,
    written: u64,
    last: u8,
    digest: Sha256,
}

impl<W: Write> Write for Crlf<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.digest.update(buf);
        let mut start = 0;
        for i in memchr::memchr_iter(b'\n', buf) {
            let prev = if i == 0 { self.last } else { buf[i - 1] };
            self.inner.write_all(&buf[start..i])?;
            if prev == b'\r' {
                self.inner.write_all(b"\n")?;
                self.written += (i - start) as u64 + 1;
            } else {
                self.inner.write_all(b"\r\n")?;
                self.written += (i - start) as u64 + 2;
            }
            start = i + 1;
        }
        self.inner.write_all(&buf[start..])?;
        self.written += (buf.len() - start) as u64;
        if let Some(&b) = buf.last() {
            self.last = b;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The first field `name` (lower case) of a header block, unfolded and
/// trimmed.
fn header_field(head: &[u8], name: &str) -> Option<String> {
    let end = memchr::memmem::find(head, b"\n\n").unwrap_or(head.len());
    let mut lines = head[..end].split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let n = name.len();
        if line.len() > n && line[n] == b':' && line[..n].eq_ignore_ascii_case(name.as_bytes()) {
            let mut value = line[n + 1..].to_vec();
            while let Some(next) = lines.peek() {
                if next.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                    value.extend_from_slice(next);
                    lines.next();
                } else {
                    break;
                }
            }
            let value = String::from_utf8_lossy(&value)
                .trim_end_matches('\r')
                .trim()
                .to_string();
            return (!value.is_empty()).then_some(value);
        }
    }
    None
}

/// A `Date:` field as IMAP `date-time` ("01-Dec-2026 15:04:05 +0000").
fn imap_date(field: &str) -> Option<String> {
    let secs = mailparse::dateparse(field).ok()?;
    // mailparse reads text without a date in it as the epoch: no date.
    if secs <= 0 {
        return None;
    }
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if !(1..=9999).contains(&y) {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    Some(format!(
        "{d:02}-{}-{y:04} {:02}:{:02}:{:02} +0000",
        MONTHS[(m - 1) as usize],
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lf_becomes_crlf_and_the_size_counts_what_is_sent() {
        let mut out = Crlf {
            inner: Vec::new(),
            written: 0,
            last: b'\n',
            digest: Sha256::new(),
        };
        out.write_all(b"a: b\n\nbody\r").unwrap();
        out.write_all(b"\nend\n").unwrap();
        assert_eq!(out.inner, b"a: b\r\n\r\nbody\r\nend\r\n");
        assert_eq!(out.written, out.inner.len() as u64);
    }

    #[test]
    fn date_and_message_id_are_read_from_the_header() {
        let head = b"From: a\nMessage-ID:\n <x@y>\nDate: Tue, 1 Dec 2026 16:04:05 +0100\n\nbody";
        assert_eq!(header_field(head, "message-id").as_deref(), Some("<x@y>"));
        let date = header_field(head, "date").unwrap();
        assert_eq!(
            imap_date(&date).as_deref(),
            Some("01-Dec-2026 15:04:05 +0000")
        );
        assert_eq!(imap_date("not a date at all"), None);
        assert_eq!(
            header_field(b"Subject: x\n\nMessage-ID: <no>\n", "message-id"),
            None
        );
    }

    #[test]
    fn journal_names_round_trip() {
        let j = Journaled {
            target: "gmail".into(),
            folder: "INBOX".into(),
            uidvalidity: 7,
            uidl: "u:1".into(),
            message_id: Some("<a@b>".into()),
            date: None,
            size: 12,
            digest: "ab".into(),
            uid: None,
        };
        let name = j.name();
        assert!(!name.contains("uid\""), "no UID, no field: {name}");
        assert_eq!(Journaled::parse(&name), Some(j.clone()));
        let j = Journaled { uid: Some(9), ..j };
        let name = j.name();
        assert!(name.starts_with(PREFIX));
        assert_eq!(Journaled::parse(&name), Some(j));
    }
}
