//! One `watch` per config file: a lock file in the state dir, named after
//! the config's path, held for the life of the process (the kernel lets go
//! of it when the process ends, however it ends). A second `watch` exits
//! 75 naming the first's pid. `sync` run by hand meanwhile is not stopped
//! by this lock: it meets the per-mailbox locks, as any two syncs do.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, ExitKind, Result};
use crate::state::files::LockFile;

pub struct WatchLock {
    _file: LockFile,
}

impl WatchLock {
    pub fn acquire(state_dir: &Path, config: &Path) -> Result<WatchLock> {
        let config = std::fs::canonicalize(config).unwrap_or_else(|_| config.to_path_buf());
        let digest = Sha256::digest(config.as_os_str().as_encoded_bytes());
        let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        std::fs::create_dir_all(state_dir).map_err(|e| {
            Error::with_source(
                ExitKind::CantCreate,
                format!("cannot create the state dir {}", state_dir.display()),
                e,
            )
        })?;
        match LockFile::try_with_pid(&state_dir.join(format!("watch-{name}.lock")))? {
            Ok(file) => Ok(WatchLock { _file: file }),
            Err(holder) => {
                let holder = match holder {
                    None => "another process".to_string(),
                    Some(pid) => format!("pid {pid}"),
                };
                Err(Error::new(
                    ExitKind::TempFail,
                    format!(
                        "popfetch watch is already running for {} ({holder}); stop it first, \
                         or give this one another config with -c",
                        config.display()
                    ),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_watch_on_one_config_is_refused_with_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(&config, "").unwrap();
        let _first = WatchLock::acquire(dir.path(), &config).unwrap();
        let err = WatchLock::acquire(dir.path(), &config).err().unwrap();
        assert_eq!(err.kind(), ExitKind::TempFail);
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        let other = dir.path().join("other.toml");
        std::fs::write(&other, "").unwrap();
        assert!(WatchLock::acquire(dir.path(), &other).is_ok());
    }
}
