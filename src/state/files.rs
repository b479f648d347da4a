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
