//! One `watch` per config file: a lock file in the state dir, named after
//! the config's path, held for the life of the process (the kernel lets go
//! of it when the process ends, however it ends). A second `watch` exits
//! 75 naming the first's pid. `sync` run by hand meanwhile is not stopped
//! by this lock: it meets the per-mailbox locks, as any two syncs do.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, ExitKind, Result};

pub struct WatchLock {
    _file: File,
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
        let path = state_dir.join(format!("watch-{name}.lock"));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| {
                Error::with_source(
                    ExitKind::CantCreate,
                    format!("cannot open {}", path.display()),
                    e,
                )
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let holder = match pid.trim() {
                    "" => "another process".to_string(),
                    pid => format!("pid {pid}"),
                };
                return Err(Error::new(
                    ExitKind::TempFail,
                    format!(
                        "popfetch watch is already running for {} ({holder}); stop it first, \
                         or give this one another config with -c",
                        config.display()
                    ),
                ));
            }
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
        Ok(WatchLock { _file: file })
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
