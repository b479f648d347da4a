//! Where files are: `~` and relative paths in the config, the XDG defaults
//! for the config file and the state, and the owner-only rule for a file
//! that holds a password (SPEC §2, §5).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::raw::Source;
use crate::error::{Error, Result};

/// `$XDG_CONFIG_HOME/popfetch/config.toml`.
pub(super) fn default_config_path() -> Result<PathBuf> {
    Ok(base_dirs()?
        .config_dir()
        .join("popfetch")
        .join("config.toml"))
}

/// `$XDG_STATE_HOME/popfetch`, used when the file sets no `state_dir`.
pub(super) fn default_state_dir() -> Result<PathBuf> {
    let dirs = base_dirs()?;
    // XDG_STATE_HOME is Linux-only in `directories`; fall back to the data dir.
    let base = dirs
        .state_dir()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dirs.data_local_dir().to_path_buf());
    Ok(base.join("popfetch"))
}

fn base_dirs() -> Result<directories::BaseDirs> {
    directories::BaseDirs::new()
        .ok_or_else(|| Error::config("cannot find your home directory (is HOME set?)"))
}

/// A path written in the config file: `~/` expanded, a relative path taken
/// from the config file's folder.
pub(super) fn resolve(s: &str, src: &Source) -> PathBuf {
    expand_path(s, &src.dir())
}

/// Expands `~/` and makes a relative path relative to `base`.
pub fn expand_path(s: &str, base: &Path) -> PathBuf {
    if s == "~" || s.starts_with("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(s.trim_start_matches('~').trim_start_matches('/'));
        }
    }
    let p = PathBuf::from(s);
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
}

/// SPEC §5: a file holding a password must be readable by its owner only.
pub(super) fn refuse_if_others_can_read(path: &Path) -> Result<()> {
    let mode = std::fs::metadata(path)
        .map_err(|e| Error::config(format!("cannot stat {}: {e}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(Error::config(format!(
            "{} holds a password but can be read by others (mode {:03o}); fix it with: chmod 600 {}",
            path.display(),
            mode & 0o777,
            shell_quote(&path.display().to_string())
        )));
    }
    Ok(())
}

fn shell_quote(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-~+".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_expand_home_and_config_dir() {
        let base = Path::new("/cfg");
        assert_eq!(expand_path("/abs", base), PathBuf::from("/abs"));
        assert_eq!(expand_path("rel/x", base), PathBuf::from("/cfg/rel/x"));
        if let Some(home) = std::env::var_os("HOME") {
            assert_eq!(expand_path("~/m", base), PathBuf::from(home).join("m"));
        }
    }
}
