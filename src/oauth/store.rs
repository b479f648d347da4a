//! The tokens on disk: one JSON file per login in `STATE_DIR/oauth/`,
//! owner-only (file 0600, folder 0700), never in the config. Written to a
//! temporary file, fsynced and renamed over the old one, so a crash leaves
//! the old tokens or the new ones, never half of each: a rotated refresh
//! token replaces the old one in one step. A lock file beside it lets
//! parallel sessions that share the login refresh it once.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::secret::Secret;
use crate::error::{Error, ExitKind, Result};
use crate::state::files::LockFile;

/// What is kept of a login.
pub struct Tokens {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    /// Unix seconds; `None` when the provider did not say.
    pub expires_at: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_at: Option<i64>,
}

/// The token file of an account's or a target's login: the name is
/// escaped so any section name makes one plain file name.
pub fn path(state_dir: &Path, kind: &str, name: &str) -> PathBuf {
    let mut file = format!("{kind}-");
    for (i, b) in name.bytes().enumerate() {
        // A leading dot is escaped too: `..` must not be a name part.
        let plain = b.is_ascii_alphanumeric() || b"-_".contains(&b) || (b == b'.' && i > 0);
        if plain {
            file.push(b as char);
        } else {
            file.push_str(&format!("%{b:02X}"));
        }
    }
    file.push_str(".json");
    state_dir.join("oauth").join(file)
}

fn folder(file: &Path) -> &Path {
    file.parent().unwrap_or(Path::new("."))
}

/// Reads the tokens; `None` when there is no login.
pub fn read(file: &Path) -> Result<Option<Tokens>> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::local_io(format!("reading {}", file.display()), e)),
    };
    let disk: OnDisk = serde_json::from_str(&text).map_err(|_| {
        Error::new(
            ExitKind::Io,
            format!(
                "{} is damaged; delete it with `popfetch logout` and sign in again",
                file.display()
            ),
        )
    })?;
    Ok(Some(Tokens {
        access_token: Secret::new(disk.access_token),
        refresh_token: disk.refresh_token.map(Secret::new),
        expires_at: disk.expires_at,
    }))
}

/// Replaces the tokens atomically (temporary file, fsync, rename, fsync of
/// the folder).
pub fn write(file: &Path, tokens: &Tokens) -> Result<()> {
    let dir = folder(file);
    crate::state::files::create_private_dir(dir, "the token folder")?;
    let disk = OnDisk {
        access_token: tokens.access_token.expose().to_string(),
        refresh_token: tokens
            .refresh_token
            .as_ref()
            .map(|s| s.expose().to_string()),
        expires_at: tokens.expires_at,
    };
    let text = serde_json::to_vec(&disk).expect("strings and numbers serialize");
    let tmp = file.with_extension(format!("tmp-{}", std::process::id()));
    let cant = |e: std::io::Error| {
        Error::with_source(
            ExitKind::CantCreate,
            format!("cannot write {}", tmp.display()),
            e,
        )
    };
    let _ = std::fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(cant)?;
    let written = f.write_all(&text).and_then(|()| f.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(cant(e));
    }
    drop(f);
    std::fs::rename(&tmp, file).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::with_source(
            ExitKind::CantCreate,
            format!("cannot replace {}", file.display()),
            e,
        )
    })?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::local_io(format!("syncing {}", dir.display()), e))
}

/// Forgets a login; whether there was one.
pub fn delete(file: &Path) -> Result<bool> {
    let _lock = lock(file)?;
    match std::fs::remove_file(file) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::local_io(format!("deleting {}", file.display()), e)),
    }
}

/// Holds the login's lock (an OS lock on `FILE.lock`, released when
/// dropped, also when the process dies).
pub fn lock(file: &Path) -> Result<LockFile> {
    let dir = folder(file);
    crate::state::files::create_private_dir(dir, "the token folder")?;
    LockFile::wait(&file.with_extension("lock"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn names_are_escaped_into_one_file_name() {
        let p = path(Path::new("/s"), "account", "work/../x y");
        assert_eq!(p, Path::new("/s/oauth/account-work%2F..%2Fx%20y.json"));
        let p = path(Path::new("/s"), "target", ".hidden");
        assert_eq!(p, Path::new("/s/oauth/target-%2Ehidden.json"));
    }

    #[test]
    fn tokens_are_written_owner_only_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path(), "account", "a");
        assert!(read(&file).unwrap().is_none());
        let t = |a: &str, r: Option<&str>| Tokens {
            access_token: Secret::new(a),
            refresh_token: r.map(Secret::new),
            expires_at: Some(5),
        };
        write(&file, &t("a1", Some("r1"))).unwrap();
        write(&file, &t("a2", Some("r2"))).unwrap();
        let got = read(&file).unwrap().unwrap();
        assert_eq!(got.access_token.expose(), "a2");
        assert_eq!(got.refresh_token.unwrap().expose(), "r2");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(file.parent().unwrap()), 0o700);
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(file.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(delete(&file).unwrap());
        assert!(!delete(&file).unwrap());
    }
}
