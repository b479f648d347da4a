//! mbox delivery (mboxrd), never leaving a partial message.
//!
//! Messages of a batch are framed and quoted into an unlinked spool file
//! while they stream in from the network. At commit the mbox is locked
//! (fcntl and a `.lock` dotfile, as mail readers expect), the spool is
//! appended, the mbox is fsynced, and the lock is released: the lock is
//! held only for a local copy, never while waiting on the server. If the
//! append fails (disk full), the mbox is truncated back to its old length.
//!
//! The duplicate window: a crash after the mbox fsync and before the seen
//! records are committed delivers that batch again at the next run.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{copy_with_final_newline, read_header_block, return_path, Delivery, MessageInfo};
use crate::error::{Error, ExitKind, Result};
use crate::store::PendingEntry;

/// How long to wait for another program's lock on the mbox.
const LOCK_WAIT: Duration = Duration::from_secs(30);
/// A dotlock older than this is left over from a crash.
const STALE_DOTLOCK: Duration = Duration::from_secs(300);

pub struct Mbox {
    path: PathBuf,
    spool: File,
    /// Messages in the spool.
    pending: usize,
    /// Where the last message in the spool starts, for [`Delivery::discard_last`].
    last_start: Option<u64>,
}

impl Mbox {
    pub fn open(path: &Path) -> Result<Mbox> {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        crate::files::create_private_dir(parent, "the folder")?;
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                Error::with_source(
                    ExitKind::CantCreate,
                    format!("cannot create the mbox {}", path.display()),
                    e,
                )
            })?;
        // Next to the mbox (same file system, so no tmpfs limit).
        let spool = crate::files::spool_file(parent)?;
        Ok(Mbox {
            path: path.to_path_buf(),
            spool,
            pending: 0,
            last_start: None,
        })
    }

    fn append_spool(&mut self) -> io::Result<()> {
        let mut mbox = OpenOptions::new().read(true).write(true).open(&self.path)?;
        let _locks = MboxLock::acquire(&mbox, &self.path)?;
        let old_len = mbox.seek(SeekFrom::End(0))?;
        let result = (|| {
            // Keep the mbox well-formed: the previous message must end with
            // an empty line before our From_ line.
            if old_len > 0 {
                let mut tail = [0u8; 2];
                let n = old_len.min(2) as usize;
                mbox.seek(SeekFrom::Start(old_len - n as u64))?;
                mbox.read_exact(&mut tail[..n])?;
                mbox.seek(SeekFrom::End(0))?;
                if tail[n - 1] != b'\n' {
                    mbox.write_all(b"\n\n")?;
                } else if n == 2 && tail[0] != b'\n' {
                    mbox.write_all(b"\n")?;
                }
            }
            self.spool.seek(SeekFrom::Start(0))?;
            io::copy(&mut self.spool, &mut mbox)?;
            mbox.sync_all()
        })();
        if let Err(e) = result {
            // Leave the mbox exactly as it was.
            let _ = mbox.set_len(old_len);
            let _ = mbox.sync_all();
            return Err(e);
        }
        Ok(())
    }

    fn reset_spool(&mut self) {
        let _ = self.spool.set_len(0);
        let _ = self.spool.seek(SeekFrom::Start(0));
        self.pending = 0;
        self.last_start = None;
    }
}

impl Delivery for Mbox {
    fn deliver(&mut self, _info: &MessageInfo, body: &mut dyn Read) -> Result<u64> {
        let start = self
            .spool
            .stream_position()
            .map_err(|e| Error::local_io("mbox spool", e))?;
        match write_mboxrd(body, &mut self.spool) {
            Ok(n) => {
                self.pending += 1;
                self.last_start = Some(start);
                Ok(n)
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
        _journal: &mut dyn FnMut(&[PendingEntry]) -> Result<()>,
    ) -> Result<Vec<String>> {
        if self.pending == 0 {
            return Ok(Vec::new());
        }
        let res = self.append_spool();
        self.reset_spool();
        res.map_err(|e| {
            let kind = if e.kind() == io::ErrorKind::TimedOut {
                ExitKind::TempFail
            } else {
                ExitKind::Io
            };
            Error::with_source(kind, format!("cannot append to {}", self.path.display()), e)
        })?;
        Ok(Vec::new())
    }

    fn rollback(&mut self) {
        self.reset_spool();
    }

    fn discard_last(&mut self) -> bool {
        // Still only in the spool: cut it off.
        let Some(start) = self.last_start.take() else {
            return false;
        };
        if self.spool.set_len(start).is_err() || self.spool.seek(SeekFrom::Start(start)).is_err() {
            return false;
        }
        self.pending -= 1;
        true
    }

    fn uncommitted(&self) -> usize {
        self.pending
    }
}

/// An anonymous file next to the mbox (same file system, so no tmpfs
/// limit): created and unlinked at once, so it never outlives the process.
/// Writes one message in mboxrd form: the From_ line, the message with
/// `^>*From ` lines quoted, a final LF if missing, and one empty line.
pub fn write_mboxrd(body: &mut dyn Read, out: &mut dyn Write) -> io::Result<u64> {
    // Read the header block first: the From_ line needs Return-Path.
    let head = read_header_block(body)?;
    let sender = return_path(&head).unwrap_or_else(|| "MAILER-DAEMON".to_string());
    let from_line = format!("From {sender} {}\n", asctime(crate::store::now_secs()));
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

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
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

/// Both locks mail programs honour on an mbox: a `.lock` dotfile and an
/// fcntl write lock. Released on drop.
struct MboxLock {
    dotlock: PathBuf,
    fd: i32,
}

impl MboxLock {
    fn acquire(file: &File, path: &Path) -> io::Result<MboxLock> {
        let mut name = path.as_os_str().to_owned();
        name.push(".lock");
        let dotlock = PathBuf::from(name);
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&dotlock)
            {
                Ok(mut f) => {
                    let _ = write!(f, "{}", std::process::id());
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let stale = fs::metadata(&dotlock)
                        .and_then(|m| m.modified())
                        .map(|t| t.elapsed().unwrap_or_default() > STALE_DOTLOCK)
                        .unwrap_or(false);
                    if stale {
                        let _ = fs::remove_file(&dotlock);
                        continue;
                    }
                }
                Err(e) => return Err(e),
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{} is locked by another program", dotlock.display()),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let fd = file.as_raw_fd();
        loop {
            // SAFETY: a zeroed flock is a valid argument; fd is open.
            let mut fl: libc::flock = unsafe { std::mem::zeroed() };
            fl.l_type = libc::F_WRLCK as _;
            fl.l_whence = libc::SEEK_SET as _;
            let rc = unsafe { libc::fcntl(fd, libc::F_SETLK, &fl) };
            if rc == 0 {
                break;
            }
            let err = io::Error::last_os_error();
            if Instant::now() > deadline {
                let _ = fs::remove_file(&dotlock);
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{} is locked by another program ({err})", path.display()),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(MboxLock { dotlock, fd })
    }
}

impl Drop for MboxLock {
    fn drop(&mut self) {
        // SAFETY: unlocking a lock we set on a still-open descriptor.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_UNLCK as _;
        fl.l_whence = libc::SEEK_SET as _;
        unsafe { libc::fcntl(self.fd, libc::F_SETLK, &fl) };
        let _ = fs::remove_file(&self.dotlock);
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
}
