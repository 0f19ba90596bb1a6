//! File locks that keep concurrent builders (threads or processes, e.g. cargo-nextest running
//! each test in its own process) from racing.
//!
//! - [`exclusive`]: the per-target-dir build lock, held around toolchain set-up and `cargo
//!   build`, so two builds never share a half-written target dir;
//! - [`install_lock`]: a per-user lock held around `rustup target add` and `apt-get`, which
//!   would otherwise race even across different target dirs;
//! - [`state_dir`]: where that lock and the "rustup could not download" marker live.
//!
//! The locks are `flock`-style: released when the returned [`File`] is dropped, including
//! when the process dies.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::BuildError;

/// Name of the lock file created in every capsule target dir.
pub const LOCK_FILE: &str = ".ants-capsule-build.lock";

/// Blocks until this process holds the exclusive lock on `path` (created if missing).
pub(crate) fn exclusive(path: &Path) -> Result<File, BuildError> {
    let lock_err = |source| BuildError::Lock {
        path: path.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(lock_err)?;
    file.lock().map_err(lock_err)?;
    Ok(file)
}

/// A per-user scratch dir in the system temp dir for cross-process state.
pub(crate) fn state_dir() -> PathBuf {
    let uid = crate::process::effective_uid()
        .map(|u| u.to_string())
        .unwrap_or_else(|| "unknown".to_owned());
    std::env::temp_dir().join(format!("ants-capsule-build-{uid}"))
}

/// The install lock, or `None` (with a warning) if it cannot be taken: installing without it
/// only risks a confusing failure, which is better than refusing to try.
pub(crate) fn install_lock() -> Option<File> {
    let dir = state_dir();
    if let Err(e) = fs::create_dir_all(&dir) {
        tracing::warn!(
            "cannot create {}: {e}; installing without a lock",
            dir.display()
        );
        return None;
    }
    match exclusive(&dir.join("install.lock")) {
        Ok(file) => Some(file),
        Err(e) => {
            tracing::warn!("{e}; installing without a lock");
            None
        }
    }
}
