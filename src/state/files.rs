//! Folders and files that only their owner may read: the state directory, Maildirs,
//! an mbox's folder, the config's folder (SPEC §3: owner-only files).

use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Error, ExitKind, Result};

/// Creates `dir` and any missing parents with mode 0700 (existing ones
/// are left as they are). `what` names it in the error ("the state
/// directory"), which is exit 73 (cannot create).
pub fn create_private_dir(dir: &Path, what: &str) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            let named = if what.is_empty() {
                dir.display().to_string()
            } else {
                format!("{what} {}", dir.display())
            };
            Error::with_source(ExitKind::CantCreate, format!("cannot create {named}"), e)
        })
}

/// Creates an unlinked file in `dir`, readable by its owner only, for
/// spooling: nothing of it is left behind, whatever happens to us.
pub fn spool_file(dir: &Path) -> Result<File> {
    for attempt in 0..100u32 {
        let path = dir.join(format!(".popfetch-spool-{}-{attempt}", std::process::id()));
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => {
                let _ = std::fs::remove_file(&path);
                return Ok(f);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(Error::with_source(
                    ExitKind::CantCreate,
                    format!("cannot create a spool file in {}", dir.display()),
                    e,
                ))
            }
        }
    }
    Err(Error::new(
        ExitKind::CantCreate,
        format!("cannot create a spool file in {}", dir.display()),
    ))
}

/// A lock file (0600) holding an OS lock for as long as this value lives.
/// The kernel lets go of the lock when the process ends, however it ends,
/// so a `kill -9` never leaves a stale one. Three locks are built on it:
/// the per-mailbox lock, one `watch` per config, and an OAuth login's
/// refresh.
pub struct LockFile {
    _file: File,
}

impl LockFile {
    /// Waits for the lock on `path` (created if missing).
    pub fn wait(path: &Path) -> Result<LockFile> {
        let file = open_lock(path)?;
        file.lock().map_err(|e| {
            Error::with_source(ExitKind::Io, format!("cannot lock {}", path.display()), e)
        })?;
        Ok(LockFile { _file: file })
    }

    /// Takes the lock on `path` if it is free, and writes this process's
    /// pid into the file for the message the next one prints. When another
    /// process holds it: `Err` of its pid, if that is known and alive.
    pub fn try_with_pid(path: &Path) -> Result<std::result::Result<LockFile, Option<i32>>> {
        use std::io::{Seek, Write};
        let mut file = open_lock(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(Err(holder_pid(&mut file))),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::with_source(
                    ExitKind::Io,
                    format!("cannot lock {}", path.display()),
                    e,
                ))
            }
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        let _ = file.flush();
        Ok(Ok(LockFile { _file: file }))
    }
}

fn open_lock(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            Error::with_source(
                ExitKind::CantCreate,
                format!("cannot create the lock file {}", path.display()),
                e,
            )
        })
}

/// The pid the lock's holder wrote into the lock file. It writes it just
/// after taking the lock, so a process that comes in between reads nothing,
/// or the pid of an earlier holder that is gone: wait briefly for the pid
/// of a live process.
fn holder_pid(file: &mut File) -> Option<i32> {
    use std::io::{Read, Seek};
    for _ in 0..25 {
        let mut text = String::new();
        if file.rewind().is_ok() && file.read_to_string(&mut text).is_ok() {
            if let Ok(pid) = text.trim().parse::<i32>() {
                // Signal 0 only asks whether the process exists.
                let alive = pid > 0
                    && rustix::process::Pid::from_raw(pid).is_some_and(|pid| {
                        matches!(
                            rustix::process::test_kill_process(pid),
                            Ok(()) | Err(rustix::io::Errno::PERM)
                        )
                    });
                if alive {
                    return Some(pid);
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    None
}
