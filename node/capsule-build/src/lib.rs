//! Builds capsule crates (`cdylib`s, usually `no_std`) to `wasm32-unknown-unknown` modules,
//! choosing a toolchain by itself so that a fresh machine needs no manual step.
//!
//! Map of the crate:
//! - [`build`] (this file): one capsule crate → one `.wasm`, with its SHA-256 and size;
//! - [`toolchain`](crate::resolve_toolchain): [`ToolchainChoice`], [`Toolchain`] and the
//!   search order — the rustup target if installed, `rustup target add` under a deadline,
//!   then Debian's `rustc-web` + `rust-web-src` with `-Zbuild-std` (installed with `apt-get`
//!   when we are root);
//! - `rustup`, `debian`: the probes and installers of each path;
//! - `cargo`: `cargo metadata` and the `cargo build` invocation;
//! - `lock`: file locks so concurrent test processes do not race;
//! - `process`: running children with deadlines and printable command lines.
//!
//! docs/toolchain.md describes each path with its exact commands, and how to force one.
//!
//! ```no_run
//! use std::path::Path;
//! use ants_capsule_build::{BuildOptions, build};
//!
//! let built = build(Path::new("capsules/forward"), &BuildOptions::default())?;
//! println!("{} ({} bytes) with {}", built.path.display(), built.size, built.toolchain);
//! # Ok::<(), ants_capsule_build::BuildError>(())
//! ```

mod cargo;
mod debian;
mod error;
mod lock;
mod process;
mod rustup;
mod toolchain;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use cargo::{BUILD_STD, CAPSULE_RUSTFLAGS_ENV, PROFILE_CONFIG};
pub use debian::{DEBIAN_PACKAGES, DEBIAN_RUSTC, LINKER_ENV, LLD_PACKAGE};
pub use error::BuildError;
pub use lock::LOCK_FILE;
pub use process::running_as_root;
pub use rustup::{DEFAULT_RUSTUP_TIMEOUT, RUSTUP_TIMEOUT_ENV};
pub use toolchain::{
    ParseToolchainChoiceError, TOOLCHAIN_ENV, Toolchain, ToolchainChoice, WASM_TARGET,
    resolve_toolchain,
};

/// Subdirectory of the workspace target dir that capsule builds use by default.
pub const CAPSULE_TARGET_SUBDIR: &str = "capsules";

/// How to build a capsule.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Which toolchain to use; [`ToolchainChoice::Auto`] finds one.
    pub toolchain: ToolchainChoice,
    /// Copy the module here (parent dirs are created) and report this path.
    pub out: Option<PathBuf>,
    /// Cargo target dir. Default: `<workspace target dir>/capsules`, separate from the
    /// native build so a wasm build never waits on (or deadlocks with) an enclosing
    /// `cargo test`'s build lock.
    pub target_dir: Option<PathBuf>,
    /// Stream cargo's output to our stderr as it runs (it is captured either way).
    pub verbose: bool,
    /// May install a missing toolchain (`rustup target add`, `apt-get install` when root).
    pub allow_install: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            toolchain: ToolchainChoice::Auto,
            out: None,
            target_dir: None,
            verbose: false,
            allow_install: true,
        }
    }
}

/// A built capsule module.
#[derive(Debug, Clone)]
pub struct BuiltCapsule {
    /// Absolute path of the `.wasm` (the `out` path if one was given).
    pub path: PathBuf,
    /// SHA-256 of the file's bytes.
    pub sha256: [u8; 32],
    /// Size in bytes.
    pub size: u64,
    /// The toolchain that built it.
    pub toolchain: Toolchain,
}

/// Builds the capsule crate in `crate_dir` (standalone or a workspace member) to a `.wasm`.
///
/// Steps: `cargo metadata` (the crate must be a `cdylib`), take the exclusive lock
/// `<target dir>/.ants-capsule-build.lock`, [`resolve_toolchain`], `cargo build --release
/// --target wasm32-unknown-unknown` with [`PROFILE_CONFIG`] applied, then copy to `out` and
/// hash. Safe to call from several threads or processes at once, and from inside `cargo
/// test` (it runs `$CARGO` and uses its own target dir).
pub fn build(crate_dir: &Path, opts: &BuildOptions) -> Result<BuiltCapsule, BuildError> {
    let (crate_dir, manifest, package) = inspect(crate_dir)?;
    if !package.lib_crate_types.iter().any(|t| t == "cdylib") {
        return Err(BuildError::NotACdylib {
            crate_dir,
            package: package.name,
            crate_types: package.lib_crate_types,
        });
    }
    let target_dir = match &opts.target_dir {
        Some(dir) => absolute(dir, "resolving the target dir")?,
        None => package.target_directory.join(CAPSULE_TARGET_SUBDIR),
    };
    fs::create_dir_all(&target_dir).map_err(|source| BuildError::Io {
        action: "creating the target dir",
        path: target_dir.clone(),
        source,
    })?;
    let _lock = lock::exclusive(&target_dir.join(LOCK_FILE))?;

    let toolchain = resolve_toolchain(opts.toolchain, opts.allow_install)?;
    let cmd = cargo::build_command(&crate_dir, &manifest, &target_dir, &toolchain, opts.verbose);
    let artifact = cargo::run_build(cmd, &crate_dir, &manifest, opts.verbose)?;

    let path = match &opts.out {
        None => artifact,
        Some(out) => {
            let out = absolute(out, "resolving the output path")?;
            copy(&artifact, &out)?;
            out
        }
    };
    let size = fs::metadata(&path)
        .map_err(|source| BuildError::Io {
            action: "reading the size of",
            path: path.clone(),
            source,
        })?
        .len();
    let sha256 = sha256_file(&path).map_err(|source| BuildError::Io {
        action: "hashing",
        path: path.clone(),
        source,
    })?;
    tracing::info!(
        "built {} ({size} bytes, sha256 {}) with {toolchain}",
        path.display(),
        hex_string(&sha256)
    );
    Ok(BuiltCapsule {
        path,
        sha256,
        size,
        toolchain,
    })
}

/// The target dir [`build`] uses when [`BuildOptions::target_dir`] is `None`:
/// `<cargo metadata target_directory>/capsules`.
pub fn default_target_dir(crate_dir: &Path) -> Result<PathBuf, BuildError> {
    let (_, _, package) = inspect(crate_dir)?;
    Ok(package.target_directory.join(CAPSULE_TARGET_SUBDIR))
}

/// The absolute crate dir, its manifest, and what `cargo metadata` says about the package.
fn inspect(crate_dir: &Path) -> Result<(PathBuf, PathBuf, cargo::PackageInfo), BuildError> {
    let crate_dir = absolute(crate_dir, "resolving the crate dir")?;
    let manifest = crate_dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(BuildError::NoManifest { crate_dir });
    }
    let package = cargo::metadata(&crate_dir, &manifest)?;
    Ok((crate_dir, manifest, package))
}

/// SHA-256 of a file's contents, read in chunks.
pub fn sha256_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(hasher.finalize().into())
}

fn absolute(path: &Path, action: &'static str) -> Result<PathBuf, BuildError> {
    std::path::absolute(path).map_err(|source| BuildError::Io {
        action,
        path: path.to_owned(),
        source,
    })
}

fn copy(from: &Path, to: &Path) -> Result<(), BuildError> {
    // Copying a file onto itself would truncate it.
    if let (Ok(a), Ok(b)) = (from.canonicalize(), to.canonicalize())
        && a == b
    {
        return Ok(());
    }
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).map_err(|source| BuildError::Io {
            action: "creating the output dir",
            path: parent.to_owned(),
            source,
        })?;
    }
    fs::copy(from, to).map_err(|source| BuildError::Io {
        action: "copying the capsule to",
        path: to.to_owned(),
        source,
    })?;
    Ok(())
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_a_known_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        fs::write(&path, b"abc").unwrap();
        assert_eq!(
            hex_string(&sha256_file(&path).unwrap()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn default_options_allow_installing() {
        let opts = BuildOptions::default();
        assert!(opts.allow_install);
        assert_eq!(opts.toolchain, ToolchainChoice::Auto);
    }
}
