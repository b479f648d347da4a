//! mbox delivery (mboxrd): never a partial message, and exactly once across
//! a crash or a power cut.
//!
//! Messages of a batch are framed and quoted into an unlinked spool file
//! while they stream in from the network, each one's length and SHA-256
//! noted. At commit:
//!
//! 1. The mbox is locked as mail readers expect: the `.lock` dotfile, then
//!    open, then an fcntl write lock, then a check that the open file is
//!    still the one at the path (a reader may have replaced it while we
//!    waited). The lock is held only for a local copy, never while waiting
//!    on the server.
//! 2. A journal entry per message goes into the seen database (durable
//!    when it returns): the mbox's device and inode, its length before the
//!    append, where the message will lie, the digest of its bytes, and the
//!    length and digest of its From_ line.
//! 3. The spool is appended and the mbox fsynced; a failed append (disk
//!    full) is truncated back to the old length.
//! 4. The seen records are committed and the journal entries cleared, in
//!    one transaction (`sync`).
//!
//! A crash or power cut between 2 and 4 leaves journal entries, which
//! [`recover`] resolves at the next run, under the same locks: each message
//! found complete where it was written is recorded as delivered, and an
//! incomplete tail of our own append is truncated. Bytes that are not ours
//! (the file was replaced, shrunk, or another program wrote after us) are
//! never touched; that case is reported. So an mbox has no duplicate
//! window: a message is delivered once, whenever popfetch is killed. An
//! account whose target is the mbox also resolves other accounts'
//! interrupted appends to it before appending after them.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{
    copy_with_final_newline, read_header_block, return_path, Delivered, Delivery, MessageInfo,
};
use crate::calendar::civil_from_days;
use crate::error::{Error, ExitKind, Result};
use crate::state::store::{PendingEntry, Store};

/// How long to wait for another program's lock on the mbox.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// Bytes gathered before a write to the spool.
const SPOOL_BUFFER: usize = 64 * 1024;
/// A dotlock whose holder cannot be checked (no readable pid, or a network
/// file system where the pid may be another host's) is taken as left over
/// from a crash once it is this old.
const STALE_DOTLOCK: Duration = Duration::from_secs(300);

pub struct Mbox {
    path: PathBuf,
    spool: File,
    /// Messages in the spool, in order.
    pending: Vec<Spooled>,
}

/// A message in the spool: what its journal entry needs.
struct Spooled {
    uidl: String,
    /// Where it starts in the spool.
    at: u64,
    /// Bytes in the mbox (From_ line, quoted message, empty line).
    len: u64,
    digest: [u8; 32],
    /// The From_ line: its length (with the LF) and digest.
    line: FirstLine,
}

/// The length and (shortened) digest of a message's From_ line: enough to
/// tell our unfinished message from another program's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct FirstLine {
    len: u64,
    digest: [u8; 16],
}

impl Mbox {
    /// Messages delivered and not yet committed (for the tests).
    #[cfg(test)]
    fn uncommitted(&self) -> usize {
        self.pending.len()
    }

    pub fn open(path: &Path) -> Result<Mbox> {
        let parent = folder_of(path);
        crate::state::files::create_private_dir(parent, "the folder")?;
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                cannot_create_here(
                    parent,
                    format!("cannot create the mbox {}", path.display()),
                    e,
                )
            })?;
        // Next to the mbox (same file system, so no tmpfs limit).
        let spool = crate::state::files::spool_file(parent).map_err(|e| {
            // Say why, and what to use instead, for a folder like /var/mail.
            match std::error::Error::source(&e).and_then(|s| s.downcast_ref::<io::Error>()) {
                Some(cause) => cannot_create_here(
                    parent,
                    format!("cannot spool messages next to {}", path.display()),
                    io::Error::new(cause.kind(), cause.to_string()),
                ),
                None => e,
            }
        })?;
        Ok(Mbox {
            path: path.to_path_buf(),
            spool,
            pending: Vec::new(),
        })
    }

    /// Steps 1 to 3 of the module comment. Returns the journal names.
    fn append_spool(
        &mut self,
        journal: &mut dyn FnMut(&[PendingEntry]) -> Result<()>,
    ) -> Result<Vec<String>> {
        let mut locked = LockedMbox::acquire(&self.path, true)?;
        let append_error = |e: io::Error| {
            Error::with_source(
                ExitKind::of_io(&e),
                format!("cannot append to {}", self.path.display()),
                e,
            )
        };
        let old_len = locked.file.metadata().map_err(append_error)?.len();
        let separator = separator_for(&mut locked.file, old_len).map_err(append_error)?;
        let mut start = old_len + separator.len() as u64;
        let entries: Vec<PendingEntry> = self
            .pending
            .iter()
            .map(|m| {
                let seg = Segment {
                    dev: locked.dev,
                    ino: locked.ino,
                    old: old_len,
                    start,
                    end: start + m.len,
                    digest: m.digest,
                    line: m.line,
                };
                start = seg.end;
                PendingEntry {
                    uidl: m.uidl.clone(),
                    folder: self.path.clone(),
                    name: seg.name(),
                }
            })
            .collect();
        // Durable before the first byte is appended: a crash from here on
        // is resolved by `recover`.
        journal(&entries)?;
        let file = &mut locked.file;
        let result = (|| {
            file.seek(SeekFrom::Start(old_len))?;
            file.write_all(separator)?;
            self.spool.seek(SeekFrom::Start(0))?;
            io::copy(&mut self.spool, file)?;
            file.sync_all()
        })();
        if let Err(e) = result {
            // Leave the mbox exactly as it was.
            let _ = file.set_len(old_len);
            let _ = file.sync_all();
            return Err(append_error(e));
        }
        Ok(entries.into_iter().map(|e| e.name).collect())
    }

    fn reset_spool(&mut self) {
        let _ = self.spool.set_len(0);
        let _ = self.spool.seek(SeekFrom::Start(0));
        self.pending.clear();
    }
}

impl Delivery for Mbox {
    fn deliver(&mut self, info: &MessageInfo, body: &mut dyn Read) -> Result<Delivered> {
        let start = self
            .spool
            .stream_position()
            .map_err(|e| Error::local_io("mbox spool", e))?;
        // The quoting writes line by line: gathered here, the spool sees
        // large writes (a system call per line made mbox delivery several
        // times slower than Maildir's).
        let mut buffered = BufWriter::with_capacity(SPOOL_BUFFER, &mut self.spool);
        let mut tally = Tally::new(&mut buffered);
        let written = write_mboxrd(body, &mut tally).and_then(|n| tally.out.flush().map(|()| n));
        let (len, digest, line) = (tally.len, tally.hasher.finalize(), tally.line);
        let flushed = buffered.into_inner().map_err(|e| e.into_error());
        match written.and(flushed.map(|_| 0)) {
            Ok(_) => {
                self.pending.push(Spooled {
                    uidl: info.uidl.to_string(),
                    at: start,
                    len,
                    digest: digest.into(),
                    line,
                });
                Ok(Delivered::Stored)
            }
            Err(e) => {
                let _ = self.spool.set_len(start);
                let _ = self.spool.seek(SeekFrom::Start(start));
                Err(Error::local_io(
                    format!("writing a message for {}", self.path.display()),
                    e,
                ))
            }
        }
    }

    fn commit(
        &mut self,
        journal: &mut dyn FnMut(&[PendingEntry]) -> Result<()>,
    ) -> Result<Vec<String>> {
        if self.pending.is_empty() {
            return Ok(Vec::new());
        }
        let res = self.append_spool(journal);
        self.reset_spool();
        res
    }

    fn rollback(&mut self) {
        self.reset_spool();
    }

    fn discard_last(&mut self) -> bool {
        // Still only in the spool: cut it off.
        let Some(start) = self.pending.last().map(|m| m.at) else {
            return false;
        };
        if self.spool.set_len(start).is_err() || self.spool.seek(SeekFrom::Start(start)).is_err() {
            return false;
        }
        self.pending.pop();
        true
    }

    fn set_last_uidl(&mut self, uidl: &str) {
        // The key the journal entry must carry, so that recovery records
        // the message under the key its seen record has.
        if let Some(m) = self.pending.last_mut() {
            m.uidl = uidl.to_string();
        }
    }

    fn destination(&self, _name: Option<&str>) -> String {
        // The journal names where in the file; the user wants the file.
        self.path.display().to_string()
    }
}

/// Counts and digests what passes through to the spool.
struct Tally<'a> {
    out: &'a mut dyn Write,
    hasher: Sha256,
    len: u64,
    /// Digests the first line until its LF has passed.
    line_hasher: Option<Sha256>,
    line: FirstLine,
}

impl<'a> Tally<'a> {
    fn new(out: &'a mut dyn Write) -> Self {
        Tally {
            out,
            hasher: Sha256::new(),
            len: 0,
            line_hasher: Some(Sha256::new()),
            line: FirstLine::default(),
        }
    }
}

impl Write for Tally<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        let written = &buf[..n];
        self.hasher.update(written);
        self.len += n as u64;
        if let Some(line) = &mut self.line_hasher {
            let end = memchr::memchr(b'\n', written);
            let upto = end.map_or(n, |i| i + 1);
            line.update(&written[..upto]);
            self.line.len += upto as u64;
            if end.is_some() {
                let done = self.line_hasher.take().expect("present");
                self.line.digest = short_digest(done);
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// What keeps the mbox well-formed before our first From_ line: the
/// previous message must end with an empty line.
fn separator_for(mbox: &mut File, len: u64) -> io::Result<&'static [u8]> {
    if len == 0 {
        return Ok(b"");
    }
    let mut tail = [0u8; 2];
    let n = len.min(2) as usize;
    mbox.seek(SeekFrom::Start(len - n as u64))?;
    mbox.read_exact(&mut tail[..n])?;
    Ok(if tail[n - 1] != b'\n' {
        b"\n\n"
    } else if n == 2 && tail[0] != b'\n' {
        b"\n"
    } else {
        b""
    })
}

fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The error for a file we may not create in the mbox's folder. A system
/// spool such as `/var/mail` (mode 2775 root:mail) lets only group `mail`
/// create files there, and an mbox cannot be locked (nor spooled beside)
/// without creating one: say so, and what to use instead.
fn cannot_create_here(folder: &Path, what: String, e: io::Error) -> Error {
    let denied = matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
    ) || e.raw_os_error() == Some(libc::EPERM);
    if !denied {
        return Error::with_source(ExitKind::CantCreate, what, e);
    }
    Error::with_source(
        ExitKind::CantCreate,
        format!(
            "{what}: you may not create files in {} (a system mail spool like /var/mail lets \
             only group mail do that), and popfetch must, to lock the mbox with a .lock file \
             and to spool messages beside it; deliver to a Maildir (maildir = \"~/Mail\"), to \
             an mbox in your home (mbox = \"~/mail/inbox\"), or through an MDA \
             (mda = \"procmail\") instead",
            folder.display()
        ),
        e,
    )
}

// ---------------------------------------------------------------------------
// The journal and recovery

/// Where one message of an append lies, as written in its journal entry's
/// name: `mbox:DEV:INO:OLD:START:END:SHA256:LINE:LINEDIGEST`. `OLD` is the
/// mbox's length before the whole append (the point to truncate back to),
/// `START..END` the message's bytes, the digest theirs; `LINE` and
/// `LINEDIGEST` the length and digest of its From_ line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    dev: u64,
    ino: u64,
    old: u64,
    start: u64,
    end: u64,
    digest: [u8; 32],
    line: FirstLine,
}

impl Segment {
    const PREFIX: &'static str = "mbox:";

    fn name(&self) -> String {
        format!(
            "{}{}:{}:{}:{}:{}:{}:{}:{}",
            Segment::PREFIX,
            self.dev,
            self.ino,
            self.old,
            self.start,
            self.end,
            hex(&self.digest),
            self.line.len,
            hex(&self.line.digest)
        )
    }

    /// Whether the message was appended to the file now at `path`.
    pub fn is_in(&self, path: &Path) -> bool {
        fs::metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == (self.dev, self.ino))
    }

    /// The segment a journal entry's name describes; `None` for an entry
    /// that is not an mbox append (a Maildir file name).
    pub fn parse(name: &str) -> Option<Segment> {
        let mut f = name.strip_prefix(Segment::PREFIX)?.split(':');
        let mut num = || f.next()?.parse::<u64>().ok();
        let (dev, ino, old, start, end) = (num()?, num()?, num()?, num()?, num()?);
        let digest = unhex(f.next()?)?;
        let line = FirstLine {
            len: f.next()?.parse().ok()?,
            digest: unhex(f.next()?)?,
        };
        if f.next().is_some() || start < old || end < start || line.len > end - start {
            return None;
        }
        Some(Segment {
            dev,
            ino,
            old,
            start,
            end,
            digest,
            line,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn short_digest(hasher: Sha256) -> [u8; 16] {
    let full = hasher.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// Resolves the interrupted appends in the journal: `appends`, this
/// mailbox's, and, when `target` is this account's mbox, other accounts'
/// appends to the same file (two accounts often share one: another's
/// unfinished message must be resolved before we append after it, or it
/// would end up in the middle). Records what was delivered, for the
/// mailbox that appended it, and clears the entries. Returns warnings.
pub fn recover_journal(
    store: &mut Store,
    mailbox: i64,
    appends: Vec<PendingEntry>,
    target: Option<&Path>,
) -> Result<Vec<String>> {
    let mut groups: HashMap<(i64, PathBuf), Vec<PendingEntry>> = HashMap::new();
    for p in appends {
        groups
            .entry((mailbox, p.folder.clone()))
            .or_default()
            .push(p);
    }
    if let Some(path) = target {
        for (other, p) in store.pending_appends_elsewhere(mailbox)? {
            if Segment::parse(&p.name).is_some_and(|s| s.is_in(path)) {
                groups.entry((other, p.folder.clone())).or_default().push(p);
            }
        }
    }
    let mut warnings = Vec::new();
    for ((owner, path), entries) in groups {
        let first = entries[0].name.clone();
        let found = recover(&path, &entries, &mut || store.is_pending(owner, &first))?;
        warnings.extend(found.warning);
        let delivered: Vec<&str> = found.delivered.iter().map(String::as_str).collect();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        store.commit_delivered(owner, &delivered, &names)?;
    }
    Ok(warnings)
}

/// What [`recover`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// UIDLs of the messages found complete in the mbox: delivered.
    pub delivered: Vec<String>,
    /// Set when the mbox was left alone although the append was not
    /// complete; says what the user should look at.
    pub warning: Option<String>,
}

/// Resolves the journal entries of an append to `path` that an interrupted
/// run left (see the module comment). The caller records `delivered` and
/// clears every entry given, whatever the outcome: the messages not
/// delivered are fetched again. `still_pending` is asked once the mbox is
/// locked: another account's sync may have resolved the entries meanwhile.
pub fn recover(
    path: &Path,
    entries: &[PendingEntry],
    still_pending: &mut dyn FnMut() -> Result<bool>,
) -> Result<Recovery> {
    let mut segs: Vec<(Segment, &str)> = entries
        .iter()
        .filter_map(|e| Some((Segment::parse(&e.name)?, e.uidl.as_str())))
        .collect();
    segs.sort_by_key(|(s, _)| s.start);
    let Some((first, _)) = segs.first() else {
        return Ok(Recovery::default());
    };
    let (dev, ino, old) = (first.dev, first.ino, first.old);
    let refetch = |why: String| {
        Ok(Recovery {
            delivered: Vec::new(),
            warning: Some(format!(
                "{}: {why}; an interrupted run was appending {} message(s) to it, which will be \
                 fetched again (the mbox was left as it is: look at its end for a partial message)",
                path.display(),
                segs.len()
            )),
        })
    };
    if !path.exists() {
        return refetch("the mbox is gone".into());
    }
    let mut locked = LockedMbox::acquire(path, false)?;
    if !still_pending()? {
        return Ok(Recovery::default());
    }
    if (locked.dev, locked.ino) != (dev, ino) {
        return refetch("the mbox was replaced by another file".into());
    }
    let io_err =
        |e: io::Error| Error::local_io(format!("checking {} after a crash", path.display()), e);
    let len = locked.file.metadata().map_err(io_err)?.len();
    if len < old {
        return refetch(format!(
            "the mbox is shorter ({len} bytes) than before the interrupted append ({old} bytes)"
        ));
    }
    // Every message whose bytes are where they were written, complete.
    let mut complete = 0;
    for (seg, _) in &segs {
        if len < seg.end
            || scan(&mut locked.file, seg.start, seg.end, seg.line.len)
                .map_err(io_err)?
                .digest
                != seg.digest
        {
            break;
        }
        complete += 1;
    }
    let delivered: Vec<String> = segs[..complete]
        .iter()
        .map(|(_, u)| u.to_string())
        .collect();
    if complete == segs.len() {
        return Ok(Recovery {
            delivered,
            warning: None,
        });
    }
    // The append stopped inside message `complete`. Truncate only if every
    // byte from there to the end is what we were writing.
    let cut = if complete == 0 {
        old
    } else {
        segs[complete].0.start
    };
    let ours = tail_is_ours(&mut locked.file, &segs[complete..], cut, len).map_err(io_err)?;
    if !ours {
        let n = segs.len() - complete;
        return Ok(Recovery {
            delivered,
            warning: Some(format!(
                "{}: an interrupted run was appending to it and another program has written \
                 after it since; the mbox was left as it is (look near byte {cut} for a partial \
                 message), and the {n} message(s) not complete there will be fetched again",
                path.display()
            )),
        });
    }
    locked
        .file
        .set_len(cut)
        .and_then(|()| locked.file.sync_all())
        .map_err(|e| {
            Error::local_io(
                format!("cannot remove a partial append from {}", path.display()),
                e,
            )
        })?;
    Ok(Recovery {
        delivered,
        warning: None,
    })
}

/// Whether the bytes from `cut` to `len` can only be the unfinished rest of
/// our append: inside the append's range, the separator made of LFs, and
/// each message's bytes starting with its own From_ line (or as much of it
/// as was written) with no other From_ line in them (mboxrd quoting leaves
/// none in a message we wrote; a message another program appended would
/// start one). NUL bytes are what a power cut leaves where the length
/// reached the disk but the data did not.
fn tail_is_ours(file: &mut File, rest: &[(Segment, &str)], cut: u64, len: u64) -> io::Result<bool> {
    let append_end = rest.last().map_or(cut, |(s, _)| s.end);
    if len > append_end {
        return Ok(false);
    }
    let first_start = rest.first().map_or(cut, |(s, _)| s.start);
    if cut < first_start {
        // The separator we wrote before the first message.
        let n = (first_start.min(len) - cut) as usize;
        let mut sep = vec![0u8; n];
        file.seek(SeekFrom::Start(cut))?;
        file.read_exact(&mut sep)?;
        if sep.iter().any(|&b| b != b'\n' && b != 0) {
            return Ok(false);
        }
    }
    for (seg, _) in rest {
        if seg.start >= len {
            break;
        }
        let found = scan(file, seg.start, seg.end.min(len), seg.line.len)?;
        let starts_ours = match found.line {
            // The whole From_ line is there: ours, or never written.
            Some(line) => line == seg.line.digest || found.line_unwritten,
            // Part of it: one line, starting like a From_ line.
            None => {
                let from = &b"From "[..found.head.len()];
                !found.has_newline && (found.head == from || found.line_unwritten)
            }
        };
        if !starts_ours || found.stray_from_line {
            return Ok(false);
        }
    }
    Ok(true)
}

struct Scanned {
    digest: [u8; 32],
    /// The digest of the first `line` bytes, if there were that many.
    line: Option<[u8; 16]>,
    /// The first `line` bytes (or all, if fewer) are NUL.
    line_unwritten: bool,
    /// The first bytes (up to 5).
    head: Vec<u8>,
    has_newline: bool,
    /// A line starting with `From ` after the first line.
    stray_from_line: bool,
}

/// Reads `start..end` of `file` once: its digest, that of its first `line`
/// bytes, its first bytes, and whether a From_ line follows its first line.
fn scan(file: &mut File, start: u64, end: u64, line: u64) -> io::Result<Scanned> {
    const NEEDLE: &[u8] = b"\nFrom ";
    file.seek(SeekFrom::Start(start))?;
    let mut reader = file.take(end - start);
    let mut hasher = Sha256::new();
    let mut line_hasher = Sha256::new();
    let mut line_seen = 0u64;
    let mut line_unwritten = true;
    let mut has_newline = false;
    let mut head = Vec::new();
    let mut stray = false;
    // The last bytes of the previous block, so a match across blocks is seen.
    let mut carry: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let block = &buf[..n];
        hasher.update(block);
        has_newline |= memchr::memchr(b'\n', block).is_some();
        if line_seen < line {
            let take = ((line - line_seen) as usize).min(n);
            line_hasher.update(&block[..take]);
            line_unwritten &= block[..take].iter().all(|&b| b == 0);
            line_seen += take as u64;
        }
        if head.len() < 5 {
            let want = (5 - head.len()).min(n);
            head.extend_from_slice(&block[..want]);
        }
        carry.extend_from_slice(block);
        stray |= memchr::memmem::find(&carry, NEEDLE).is_some();
        let keep = carry.len().min(NEEDLE.len() - 1);
        carry.drain(..carry.len() - keep);
    }
    Ok(Scanned {
        digest: hasher.finalize().into(),
        line: (line_seen == line).then(|| short_digest(line_hasher)),
        line_unwritten,
        head,
        has_newline,
        stray_from_line: stray,
    })
}

/// Writes one message in mboxrd form: the From_ line, the message with
/// `^>*From ` lines quoted, a final LF if missing, and one empty line.
pub fn write_mboxrd(body: &mut dyn Read, out: &mut dyn Write) -> io::Result<u64> {
    // Read the header block first: the From_ line needs Return-Path.
    let head = read_header_block(body)?;
    let sender = return_path(&head).unwrap_or_else(|| "MAILER-DAEMON".to_string());
    let from_line = format!(
        "From {sender} {}\n",
        asctime(crate::state::store::now_secs())
    );
    out.write_all(from_line.as_bytes())?;

    let mut quoter = FromQuoter::new(out);
    let mut whole = (&head[..]).chain(body);
    let n = copy_with_final_newline(&mut whole, &mut quoter)?;
    quoter.finish()?;
    let out = quoter.into_inner();
    out.write_all(b"\n")?;
    Ok(n)
}

/// `Thu Nov 24 18:22:48 1986` in UTC, as From_ lines use.
pub fn asctime(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        d,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        y
    )
}

/// Streaming mboxrd quoting: a line matching `^>*From ` gets one more `>`.
///
/// Adding the `>` just before `From ` gives the same bytes as adding it at
/// the start of the line (all the `>` are alike), so the leading `>` run is
/// written through at once and only a partial `From ` (at most five bytes)
/// is ever held back, whatever the line: memory stays bounded even for a
/// hostile line of a million `>`.
struct FromQuoter<'a> {
    out: &'a mut dyn Write,
    /// Bytes of a partial `From ` match, not yet written.
    held: Vec<u8>,
    /// Still in the `>*` run at the start of a line.
    in_prefix: bool,
}

const FROM_: &[u8] = b"From ";

impl<'a> FromQuoter<'a> {
    fn new(out: &'a mut dyn Write) -> Self {
        FromQuoter {
            out,
            held: Vec::with_capacity(FROM_.len()),
            in_prefix: true,
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        let held = std::mem::take(&mut self.held);
        self.out.write_all(&held)
    }

    fn into_inner(self) -> &'a mut dyn Write {
        self.out
    }
}

impl Write for FromQuoter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut i = 0;
        while i < buf.len() {
            if self.in_prefix {
                let b = buf[i];
                i += 1;
                if self.held.is_empty() && b == b'>' {
                    self.out.write_all(b">")?;
                    continue;
                }
                self.held.push(b);
                if self.held == FROM_ {
                    self.out.write_all(b">From ")?;
                    self.held.clear();
                    self.in_prefix = false;
                } else if !FROM_.starts_with(&self.held) {
                    let held = std::mem::take(&mut self.held);
                    self.out.write_all(&held)?;
                    self.held = held;
                    self.held.clear();
                    self.in_prefix = b == b'\n';
                }
            } else {
                match memchr::memchr(b'\n', &buf[i..]) {
                    Some(k) => {
                        self.out.write_all(&buf[i..=i + k])?;
                        i += k + 1;
                        self.in_prefix = true;
                    }
                    None => {
                        self.out.write_all(&buf[i..])?;
                        i = buf.len();
                    }
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

// ---------------------------------------------------------------------------
// Locking

/// The mbox opened and locked the way mail programs expect. Released on
/// drop (fcntl lock, then the dotlock: the reverse of taking them).
struct LockedMbox {
    file: File,
    dev: u64,
    ino: u64,
    _dotlock: Dotlock,
}

impl LockedMbox {
    /// Dotlock, then open, then the fcntl lock, then a check that the open
    /// file is still the one at the path: a mail reader may have replaced
    /// the mbox (written a new file and renamed it over) while we waited
    /// for its lock, and appending to the old inode would lose our
    /// messages. If so, let go and start again.
    fn acquire(path: &Path, create: bool) -> Result<LockedMbox> {
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            let dotlock = Dotlock::acquire(path, deadline)?;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(|e| Error::local_io(format!("cannot open {}", path.display()), e))?;
            fcntl_lock(&file, deadline).map_err(|e| {
                Error::with_source(
                    ExitKind::of_io(&e),
                    format!("{} is locked by another program", path.display()),
                    e,
                )
            })?;
            let open = file
                .metadata()
                .map_err(|e| Error::local_io(format!("cannot open {}", path.display()), e))?;
            let same = fs::metadata(path)
                .is_ok_and(|at_path| (at_path.dev(), at_path.ino()) == (open.dev(), open.ino()));
            if same {
                return Ok(LockedMbox {
                    dev: open.dev(),
                    ino: open.ino(),
                    file,
                    _dotlock: dotlock,
                });
            }
            drop(file);
            drop(dotlock);
            if Instant::now() > deadline {
                return Err(Error::new(
                    ExitKind::TempFail,
                    format!(
                        "{} kept being replaced by another program while popfetch waited to append to it; try again later",
                        path.display()
                    ),
                ));
            }
        }
    }
}

/// Takes the fcntl write lock on the whole file, waiting up to `deadline`.
///
/// On Linux this is an open-file-description lock (`F_OFD_SETLK`): it
/// belongs to this open file, not to the process, so two accounts synced
/// by threads of one `sync -j` exclude each other, and closing any other
/// descriptor of the mbox never drops it (with classic POSIX locks both
/// fail: threads share the process's lock, and any close releases it). It
/// conflicts with the POSIX locks mail readers take, as it must. Released
/// when the file is closed.
fn fcntl_lock(file: &File, deadline: Instant) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    const SET_LOCK: libc::c_int = libc::F_OFD_SETLK;
    // Elsewhere only per-process locks exist: parallel accounts on one
    // mbox are then kept apart by the dotlock alone.
    #[cfg(not(target_os = "linux"))]
    const SET_LOCK: libc::c_int = libc::F_SETLK;
    loop {
        // rustix's fcntl_lock takes only per-process locks (F_SETLK), so
        // this one call stays in libc.
        // SAFETY: a zeroed flock is a valid argument (l_pid must be 0 for
        // OFD locks) that outlives the call; the descriptor is open.
        let rc = unsafe {
            let mut fl: libc::flock = std::mem::zeroed();
            fl.l_type = libc::F_WRLCK as _;
            fl.l_whence = libc::SEEK_SET as _;
            libc::fcntl(file.as_raw_fd(), SET_LOCK, &fl)
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if !matches!(
            err.raw_os_error(),
            Some(libc::EAGAIN) | Some(libc::EACCES) | Some(libc::EINTR)
        ) {
            return Err(err);
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, err));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `.lock` dotfile next to the mbox, with our pid in it (in ASCII with
/// a newline, as liblockfile writes it). Removed on drop.
struct Dotlock {
    path: PathBuf,
}

impl Dotlock {
    fn acquire(mbox: &Path, deadline: Instant) -> Result<Dotlock> {
        let mut name = mbox.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        loop {
            match create_with_pid(&path) {
                Ok(()) => return Ok(Dotlock { path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if let Some(stale) = stale_dotlock(&path) {
                        // Only the lock file we judged: not a fresh one
                        // another program made since.
                        if fs::metadata(&path).is_ok_and(|m| m.ino() == stale) {
                            let _ = fs::remove_file(&path);
                        }
                        continue;
                    }
                }
                Err(e) => {
                    return Err(cannot_create_here(
                        folder_of(mbox),
                        format!("cannot create the lock file {}", path.display()),
                        e,
                    ))
                }
            }
            if Instant::now() > deadline {
                let holder = read_pid(&path).map_or(String::new(), |p| format!(" (pid {p})"));
                return Err(Error::new(
                    ExitKind::TempFail,
                    format!(
                        "{} is locked by another program{holder}: {} exists; try again later",
                        mbox.display(),
                        path.display()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Dotlock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Creates the dotlock `path` (failing if it exists) with our pid already
/// in it. On Linux the pid goes into an anonymous file that is then linked
/// at `path`, so the lock never exists without its pid: a kill between
/// "create" and "write" would otherwise leave an empty lock that only age
/// could clear. Elsewhere (or where O_TMPFILE is not supported) the pid is
/// written just after the create.
fn create_with_pid(path: &Path) -> io::Result<()> {
    let pid = std::process::id();
    #[cfg(target_os = "linux")]
    {
        let anonymous = OpenOptions::new()
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE)
            .open(folder_of(path));
        match anonymous {
            Ok(mut f) => {
                writeln!(f, "{pid}")?;
                use rustix::fs::{linkat, AtFlags, CWD};
                let from = format!("/proc/self/fd/{}", f.as_raw_fd());
                match linkat(CWD, from.as_str(), CWD, path, AtFlags::SYMLINK_FOLLOW) {
                    Ok(()) => return Ok(()),
                    // No /proc: fall back to create-then-write.
                    Err(rustix::io::Errno::NOENT) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL)
                ) => {}
            Err(e) => return Err(e),
        }
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{pid}")
}

/// The pid written in a dotlock, if it holds one.
fn read_pid(path: &Path) -> Option<i32> {
    let mut text = String::new();
    File::open(path)
        .ok()?
        .take(64)
        .read_to_string(&mut text)
        .ok()?;
    text.trim().parse::<i32>().ok().filter(|&p| p > 0)
}

/// The inode of a dotlock left over from a crash, or `None` while it may
/// still be held. A lock is stale when the pid in it is gone from this
/// host: age alone would break the lock of a mail reader that is slowly
/// rewriting a big mbox. A lock older than the last boot is stale too:
/// after a power cut its pid may belong to an unrelated process now. Only
/// when the pid cannot be checked (none readable yet or ever, or a network
/// file system, where the pid may be another host's) does age decide.
fn stale_dotlock(path: &Path) -> Option<u64> {
    let meta = fs::metadata(path).ok()?;
    let written = meta.modified().ok();
    if let (Some(written), Some(boot)) = (written, booted_at()) {
        if written < boot {
            return Some(meta.ino());
        }
    }
    let pid = read_pid(path).filter(|_| !on_network_fs(folder_of(path)));
    let stale = match pid {
        Some(pid) => {
            // Signal 0 only asks whether the process exists.
            rustix::process::Pid::from_raw(pid).is_some_and(|pid| {
                rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH)
            })
        }
        None => written.is_some_and(|t| t.elapsed().unwrap_or_default() > STALE_DOTLOCK),
    };
    stale.then(|| meta.ino())
}

/// When this host last booted (a minute early, to be safe from clock
/// steps), if known.
fn booted_at() -> Option<std::time::SystemTime> {
    #[cfg(target_os = "linux")]
    {
        let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        let up = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32) + Duration::from_secs(60);
        std::time::SystemTime::now().checked_sub(up)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Whether `dir` is on NFS or SMB, where the pid in a lock may belong to
/// another host.
fn on_network_fs(dir: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        const NFS: i64 = 0x6969;
        const SMB: i64 = 0x517B;
        const CIFS: i64 = 0xFF53_4D42;
        const SMB2: i64 = 0xFE53_4D42;
        let Ok(st) = rustix::fs::statfs(dir) else {
            return false;
        };
        // f_type is 32 bits on some targets.
        #[allow(clippy::unnecessary_cast)]
        let kind = st.f_type as i64;
        matches!(kind, NFS | SMB | CIFS | SMB2)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(input: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut q = FromQuoter::new(&mut out);
            for c in input.chunks(chunk) {
                q.write_all(c).unwrap();
            }
            q.finish().unwrap();
        }
        out
    }

    #[test]
    fn from_quoting_at_any_split() {
        let input = b"From x\n>From y\n>>From z\nFromage\n From no\n>Fro\nx From\n>\n";
        let want = b">From x\n>>From y\n>>>From z\nFromage\n From no\n>Fro\nx From\n>\n";
        for chunk in 1..input.len() {
            assert_eq!(quote(input, chunk), want.to_vec(), "chunk {chunk}");
        }
    }

    #[test]
    fn a_long_run_of_gt_is_quoted_without_holding_it() {
        let mut input = vec![b'>'; 100_000];
        input.extend_from_slice(b"From x\n");
        let mut out = Vec::new();
        let mut q = FromQuoter::new(&mut out);
        q.write_all(&input).unwrap();
        assert!(q.held.capacity() <= 8, "only a partial `From ` is held");
        q.finish().unwrap();
        assert_eq!(out.len(), input.len() + 1);
        assert!(out.starts_with(b">>") && out.ends_with(b">From x\n"));
    }

    #[test]
    fn mboxrd_framing_uses_return_path() {
        let mut out = Vec::new();
        write_mboxrd(
            &mut &b"Return-Path: <bob@example.org>\nSubject: hi\n\nFrom me\nend"[..],
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("From bob@example.org "), "{text}");
        assert!(text.ends_with("\n\n>From me\nend\n\n"), "{text:?}");

        let mut out = Vec::new();
        write_mboxrd(&mut &b"Subject: none\n\nbody\n"[..], &mut out).unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .starts_with("From MAILER-DAEMON "));
    }

    #[test]
    fn asctime_formats_known_dates() {
        assert_eq!(asctime(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(asctime(1_000_000_000), "Sun Sep  9 01:46:40 2001");
        assert_eq!(asctime(1_709_164_800), "Thu Feb 29 00:00:00 2024");
    }

    #[test]
    fn commit_appends_and_keeps_file_well_formed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/inbox");
        let mut mbox = Mbox::open(&path).unwrap();
        mbox.deliver(&MessageInfo { uidl: "1" }, &mut &b"A: 1\n\none\n"[..])
            .unwrap();
        mbox.deliver(&MessageInfo { uidl: "2" }, &mut &b"A: 2\n\ntwo"[..])
            .unwrap();
        mbox.commit(&mut |_| Ok(())).unwrap();
        mbox.deliver(&MessageInfo { uidl: "3" }, &mut &b"A: 3\n\nthree\n"[..])
            .unwrap();
        mbox.rollback();
        mbox.commit(&mut |_| Ok(())).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.matches("\nFrom MAILER-DAEMON").count() + 1,
            2,
            "{text}"
        );
        assert!(text.contains("\ntwo\n\n"));
        assert!(!text.contains("three"));
        assert!(!path.with_file_name("inbox.lock").exists());
        // Only the mbox is left in the folder: the spool was anonymous.
        assert_eq!(fs::read_dir(dir.path().join("sub")).unwrap().count(), 1);
    }
    /// Delivers `bodies` to a fresh mbox holding `before`, and returns the
    /// mbox path, the journal entries the commit wrote, and the file's
    /// bytes after the append.
    fn appended(
        dir: &Path,
        before: &[u8],
        bodies: &[&[u8]],
    ) -> (PathBuf, Vec<PendingEntry>, Vec<u8>) {
        let path = dir.join("inbox");
        fs::write(&path, before).unwrap();
        let mut mbox = Mbox::open(&path).unwrap();
        for (i, body) in bodies.iter().enumerate() {
            let uidl = format!("u{i}");
            mbox.deliver(&MessageInfo { uidl: &uidl }, &mut &body[..])
                .unwrap();
        }
        let mut journaled = Vec::new();
        let names = mbox
            .commit(&mut |e| {
                journaled.extend_from_slice(e);
                Ok(())
            })
            .unwrap();
        assert_eq!(
            names,
            journaled.iter().map(|e| e.name.clone()).collect::<Vec<_>>()
        );
        let after = fs::read(&path).unwrap();
        (path, journaled, after)
    }

    const OLD: &[u8] = b"From a@b Thu Jan  1 00:00:00 1970\nSubject: old\n\nold body";
    const BODIES: [&[u8]; 3] = [
        b"Subject: one\n\nFrom here\none\n",
        b"Subject: two\n\ntwo\n",
        b"Subject: three\n\nthree\n",
    ];

    #[test]
    fn journal_entries_name_each_message_where_it_lies() {
        let dir = tempfile::tempdir().unwrap();
        let (_, entries, after) = appended(dir.path(), OLD, &BODIES);
        assert_eq!(entries.len(), 3);
        let segs: Vec<Segment> = entries
            .iter()
            .map(|e| Segment::parse(&e.name).unwrap())
            .collect();
        assert_eq!(segs[0].old, OLD.len() as u64);
        // The old mbox lacked its final newline and empty line.
        assert_eq!(segs[0].start, OLD.len() as u64 + 2);
        assert_eq!(segs[2].end, after.len() as u64);
        for (seg, e) in segs.iter().zip(&entries) {
            let bytes = &after[seg.start as usize..seg.end as usize];
            assert!(bytes.starts_with(b"From "));
            assert_eq!(<[u8; 32]>::from(Sha256::digest(bytes)), seg.digest);
            assert_eq!(Segment::parse(&seg.name()).as_ref(), Some(seg));
            assert_eq!(e.folder, dir.path().join("inbox"));
        }
        for seg in &segs {
            let line = &after[seg.start as usize..][..seg.line.len as usize];
            assert!(line.starts_with(b"From MAILER-DAEMON ") && line.ends_with(b"\n"));
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            assert_eq!(short_digest(Sha256::new_with_prefix(line)), seg.line.digest);
        }
        assert_eq!(Segment::parse("123.x.host,S=5"), None);
        assert_eq!(Segment::parse("mbox:1:2:3:4"), None);
    }

    #[test]
    fn recovery_records_a_complete_append_as_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let (path, entries, after) = appended(dir.path(), OLD, &BODIES);
        let found = recover(&path, &entries, &mut || Ok(true)).unwrap();
        assert_eq!(found.delivered, vec!["u0", "u1", "u2"]);
        assert_eq!(found.warning, None);
        assert_eq!(fs::read(&path).unwrap(), after, "nothing touched");
        // Another program appended after our complete append: still ours.
        let mut more = after.clone();
        more.extend_from_slice(b"From x@y Thu Jan  1 00:00:00 1970\n\nlater\n\n");
        fs::write(&path, &more).unwrap();
        let found = recover(&path, &entries, &mut || Ok(true)).unwrap();
        assert_eq!(found.delivered.len(), 3);
        assert_eq!(fs::read(&path).unwrap(), more);
    }

    #[test]
    fn recovery_truncates_a_partial_append_keeping_complete_messages() {
        let dir = tempfile::tempdir().unwrap();
        let (path, entries, after) = appended(dir.path(), OLD, &BODIES);
        let segs: Vec<Segment> = entries
            .iter()
            .map(|e| Segment::parse(&e.name).unwrap())
            .collect();
        // Cut inside the second message: the first is complete and kept.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(segs[1].start + 7).unwrap();
        let found = recover(&path, &entries, &mut || Ok(true)).unwrap();
        assert_eq!(found.delivered, vec!["u0"]);
        assert_eq!(found.warning, None);
        assert_eq!(fs::read(&path).unwrap(), &after[..segs[1].start as usize]);

        // Cut inside the separator or the first message: back to the old
        // length exactly.
        for cut in [segs[0].old + 1, segs[0].start + 3, segs[0].end - 1] {
            let (path, entries, after) = appended(dir.path(), OLD, &BODIES);
            let file = OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(cut).unwrap();
            let found = recover(&path, &entries, &mut || Ok(true)).unwrap();
            assert!(found.delivered.is_empty(), "cut {cut}");
            assert_eq!(found.warning, None);
            assert_eq!(fs::read(&path).unwrap(), &after[..OLD.len()], "cut {cut}");
        }
    }

    #[test]
    fn recovery_truncates_what_a_power_cut_left_unwritten() {
        // The length reached the disk, the data did not (zeros).
        let dir = tempfile::tempdir().unwrap();
        let (path, entries, after) = appended(dir.path(), OLD, &BODIES);
        let seg = Segment::parse(&entries[2].name).unwrap();
        let mut broken = after.clone();
        broken[seg.start as usize..].fill(0);
        fs::write(&path, &broken).unwrap();
        let found = recover(&path, &entries, &mut || Ok(true)).unwrap();
        assert_eq!(found.delivered, vec!["u0", "u1"]);
        assert_eq!(fs::read(&path).unwrap(), &after[..seg.start as usize]);
    }

    #[test]
    fn recovery_never_truncates_bytes_that_are_not_ours() {
        let dir = tempfile::tempdir().unwrap();
        let (path, entries, after) = appended(dir.path(), OLD, &BODIES);
        let segs: Vec<Segment> = entries
            .iter()
            .map(|e| Segment::parse(&e.name).unwrap())
            .collect();
        // Our append stopped inside the second message, then another
        // program appended a message of its own (short enough to end
        // inside our range).
        let mut mixed = after[..segs[1].start as usize + 10].to_vec();
        mixed.extend_from_slice(b"\n\nFrom x@y Thu Jan  1 00:00:00 1970\n\nx\n\n");
        assert!(mixed.len() < after.len());
        fs::write(&path, &mixed).unwrap();
        let found = recover(&path, &entries, &mut || Ok(true)).unwrap();
        assert_eq!(found.delivered, vec!["u0"]);
        assert!(
            found
                .warning
                .as_deref()
                .unwrap()
                .contains("another program"),
            "{found:?}"
        );
        assert_eq!(fs::read(&path).unwrap(), mixed, "left as it is");

        // Killed after the journal, before the first byte; then another
        // program appended a message, short enough to end inside our range,
        // right where ours would have started.
        for before in [OLD, b"From a@b Thu Jan  1 00:00:00 1970\n\nold\n\n"] {
            let (path, entries, after) = appended(dir.path(), before, &BODIES);
            let theirs = b"From x@y Thu Jan  1 00:00:00 1970\n\nx\n\n";
            let mut mixed = before.to_vec();
            if before == OLD {
                mixed.extend_from_slice(b"\n\n");
            }
            mixed.extend_from_slice(theirs);
            assert!(mixed.len() < after.len());
            fs::write(&path, &mixed).unwrap();
            let found = recover(&path, &entries, &mut || Ok(true)).unwrap();
            assert!(found.delivered.is_empty());
            assert!(found.warning.is_some(), "{found:?}");
            assert_eq!(fs::read(&path).unwrap(), mixed, "their message kept");
        }

        // The mbox was replaced by another file (a reader rewrote it).
        let (path, entries, _) = appended(dir.path(), OLD, &BODIES);
        let partial = &fs::read(&path).unwrap()[..OLD.len() + 20];
        let new = dir.path().join("inbox.new");
        fs::write(&new, partial).unwrap();
        fs::rename(&new, &path).unwrap();
        let found = recover(&path, &entries, &mut || Ok(true)).unwrap();
        assert!(found.delivered.is_empty());
        assert!(found.warning.as_deref().unwrap().contains("replaced"));
        assert_eq!(fs::read(&path).unwrap(), partial);

        // Shrunk below the old length (a reader expunged messages).
        let (path, entries, _) = appended(dir.path(), OLD, &BODIES);
        fs::write(&path, &OLD[..10]).unwrap();
        let found = recover(&path, &entries, &mut || Ok(true)).unwrap();
        assert!(found.warning.as_deref().unwrap().contains("shorter"));
        assert_eq!(fs::read(&path).unwrap(), &OLD[..10]);
    }

    /// A pid that is certainly gone: a child that has exited and been
    /// reaped.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn a_dotlock_whose_pid_is_gone_is_broken_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mbox = dir.path().join("inbox");
        let lock = dir.path().join("inbox.lock");
        fs::write(&lock, format!("{}\n", dead_pid())).unwrap();
        let t = Instant::now();
        let held = Dotlock::acquire(&mbox, Instant::now() + Duration::from_secs(5)).unwrap();
        assert!(t.elapsed() < Duration::from_secs(2), "broken by age?");
        assert_eq!(
            fs::read_to_string(&lock).unwrap(),
            format!("{}\n", std::process::id()),
            "our pid, in ASCII"
        );
        drop(held);
        assert!(!lock.exists());
    }

    #[test]
    fn a_dotlock_from_before_the_last_boot_is_stale_whatever_its_pid() {
        let dir = tempfile::tempdir().unwrap();
        let mbox = dir.path().join("inbox");
        let lock = dir.path().join("inbox.lock");
        // Its pid now names a live process (this one, say).
        fs::write(&lock, format!("{}\n", std::process::id())).unwrap();
        let before_boot = booted_at().unwrap() - Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&lock)
            .unwrap()
            .set_modified(before_boot)
            .unwrap();
        drop(Dotlock::acquire(&mbox, Instant::now() + Duration::from_secs(5)).unwrap());
    }

    #[test]
    fn a_dotlock_whose_pid_lives_is_waited_for_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let mbox = dir.path().join("inbox");
        let lock = dir.path().join("inbox.lock");
        // A live holder (this process), however old its lock (but from
        // this boot).
        fs::write(&lock, std::process::id().to_string()).unwrap();
        let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        let old = hour_ago.max(booted_at().unwrap() + Duration::from_secs(120));
        File::options()
            .write(true)
            .open(&lock)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let err = Dotlock::acquire(&mbox, Instant::now() + Duration::from_millis(300))
            .err()
            .unwrap();
        assert_eq!(err.kind(), ExitKind::TempFail);
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        // No pid in it: only age tells, and an hour is stale.
        fs::write(&lock, "").unwrap();
        File::options()
            .write(true)
            .open(&lock)
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();
        drop(Dotlock::acquire(&mbox, Instant::now() + Duration::from_secs(5)).unwrap());
        // No pid and fresh: may be a writer between create and write.
        fs::write(&lock, "").unwrap();
        assert!(Dotlock::acquire(&mbox, Instant::now() + Duration::from_millis(200)).is_err());
    }

    #[test]
    fn the_fcntl_lock_excludes_threads_of_one_process_and_survives_closes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox");
        fs::write(&path, b"").unwrap();
        let first = File::options().read(true).write(true).open(&path).unwrap();
        fcntl_lock(&first, Instant::now()).unwrap();
        // Another account's sync in this process opens and closes the
        // mbox: with per-process locks that close would drop ours.
        drop(File::open(&path).unwrap());
        let second = File::options().read(true).write(true).open(&path).unwrap();
        let err = std::thread::scope(|s| {
            s.spawn(|| fcntl_lock(&second, Instant::now() + Duration::from_millis(200)))
                .join()
                .unwrap()
        })
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(first);
        // Free once the first is closed. A test running beside this one may
        // fork, and its child holds a copy of every descriptor (and so the
        // lock) until it execs: allow that moment.
        fcntl_lock(&second, Instant::now() + Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn a_mbox_replaced_while_waiting_for_its_lock_is_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox");
        fs::write(&path, b"old").unwrap();
        // A mail reader holds the fcntl lock (no dotlock) and rewrites the
        // mbox by renaming a new file over it.
        let reader = File::options().read(true).write(true).open(&path).unwrap();
        fcntl_lock(&reader, Instant::now()).unwrap();
        let locked = std::thread::scope(|s| {
            let waiting = s.spawn(|| LockedMbox::acquire(&path, true));
            std::thread::sleep(Duration::from_millis(300));
            let new = dir.path().join("inbox.new");
            fs::write(&new, b"rewritten").unwrap();
            fs::rename(&new, &path).unwrap();
            drop(reader);
            waiting.join().unwrap().unwrap()
        });
        let at_path = fs::metadata(&path).unwrap();
        assert_eq!((locked.dev, locked.ino), (at_path.dev(), at_path.ino()));
        assert_eq!(locked.file.metadata().unwrap().len(), 9);
    }

    #[test]
    fn a_folder_without_create_rights_gets_an_error_naming_it_and_the_alternatives() {
        let err = cannot_create_here(
            Path::new("/var/mail"),
            "cannot create the lock file /var/mail/alice.lock".into(),
            io::Error::from_raw_os_error(libc::EACCES),
        );
        assert_eq!(err.kind(), ExitKind::CantCreate);
        let text = err.to_string();
        for word in ["/var/mail", "maildir =", "mbox =", "mda ="] {
            assert!(text.contains(word), "{word}: {text}");
        }
    }
    /// Two accounts deliver to one mbox; one was killed inside its append.
    /// The other, syncing first at the next run, must resolve that append
    /// before appending after it: else the unfinished message would end
    /// up in the middle of the mbox, where no recovery may cut it.
    #[test]
    fn an_accounts_unfinished_append_is_resolved_by_the_next_account_on_that_mbox() {
        use crate::config::Target;
        use crate::state::store::Store;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let mut store = Store::open(&state).unwrap();
        let (a, b) = (store.mailbox("a@h").unwrap(), store.mailbox("b@h").unwrap());
        let (path, entries, after) = appended(dir.path(), OLD, &BODIES);
        store.journal(a, &entries).unwrap();
        // Killed inside its third message.
        let third = Segment::parse(&entries[2].name).unwrap();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(third.start + 9).unwrap();

        let warnings =
            crate::engine::sync::recover(&mut store, b, &Target::Mbox(path.clone())).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(fs::read(&path).unwrap(), &after[..third.start as usize]);
        assert!(store.pending(a).unwrap().is_empty());
        let mut seen: Vec<String> = store.seen(a).unwrap().into_keys().collect();
        seen.sort();
        assert_eq!(
            seen,
            vec!["u0", "u1"],
            "recorded for the account that appended"
        );
        assert!(store.seen(b).unwrap().is_empty());
    }
    #[test]
    fn the_last_message_can_be_renamed_or_taken_back_before_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox");
        let mut mbox = Mbox::open(&path).unwrap();
        mbox.deliver(&MessageInfo { uidl: "" }, &mut &BODIES[0][..])
            .unwrap();
        mbox.set_last_uidl("body:1");
        mbox.deliver(&MessageInfo { uidl: "" }, &mut &BODIES[1][..])
            .unwrap();
        assert!(mbox.discard_last());
        assert_eq!(mbox.uncommitted(), 1);
        let mut journaled = Vec::new();
        mbox.commit(&mut |e| {
            journaled.extend_from_slice(e);
            Ok(())
        })
        .unwrap();
        assert_eq!(journaled.len(), 1);
        assert_eq!(journaled[0].uidl, "body:1", "recovered under its seen key");
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("Subject: one") && !text.contains("Subject: two"));
        assert!(!mbox.discard_last(), "nothing uncommitted");
    }
}
