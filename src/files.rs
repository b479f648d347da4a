//! Folders that only their owner may read: the state directory, Maildirs,
//! an mbox's folder, the config's folder (SPEC §3: owner-only files).

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
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
