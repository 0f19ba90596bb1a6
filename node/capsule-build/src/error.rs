//! [`BuildError`]: everything that can stop a capsule build, each with the context a person
//! needs to act on it (which crate, which command, what cargo said, what to install).

use std::path::PathBuf;

use crate::ToolchainChoice;

/// Why a capsule could not be built or a toolchain could not be found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `crate_dir` has no `Cargo.toml`.
    #[error(
        "capsule crate {}: no Cargo.toml there (is the path right?)",
        crate_dir.display()
    )]
    NoManifest {
        /// The directory that was given.
        crate_dir: PathBuf,
    },

    /// The manifest is a virtual workspace manifest, not a package.
    #[error(
        "capsule crate {}: Cargo.toml declares no package (a workspace root?); \
         point at the capsule crate's own directory",
        crate_dir.display()
    )]
    NoPackage {
        /// The directory that was given.
        crate_dir: PathBuf,
    },

    /// The package has no `cdylib` library target, so it cannot become a wasm module.
    #[error(
        "capsule crate {} (package `{package}`) is not a cdylib: its lib target has crate types \
         [{}]; add `[lib] crate-type = [\"cdylib\"]` to its Cargo.toml",
        crate_dir.display(),
        crate_types.join(", ")
    )]
    NotACdylib {
        /// The crate directory.
        crate_dir: PathBuf,
        /// The package name.
        package: String,
        /// The crate types its library target has (empty if it has no library).
        crate_types: Vec<String>,
    },

    /// `cargo metadata` failed or printed something we could not read.
    #[error("capsule crate {}: `{command}` failed: {detail}", crate_dir.display())]
    Metadata {
        /// The crate directory.
        crate_dir: PathBuf,
        /// The command line that was run.
        command: String,
        /// What went wrong, including cargo's stderr tail.
        detail: String,
    },

    /// No toolchain that builds `wasm32-unknown-unknown` is available or could be installed.
    #[error(
        "no toolchain can build wasm32-unknown-unknown (toolchain `{choice}`); tried:\n{}\nto fix: {fix}",
        bullets(attempts)
    )]
    ToolchainUnavailable {
        /// The choice that was resolved.
        choice: ToolchainChoice,
        /// One line per path tried and why it did not work.
        attempts: Vec<String>,
        /// What the user should run or change.
        fix: String,
    },

    /// `ANTS_CAPSULE_TOOLCHAIN` holds something other than auto, rustup or debian.
    #[error(
        "environment variable ANTS_CAPSULE_TOOLCHAIN={value:?}: expected auto, rustup or debian"
    )]
    BadToolchainEnv {
        /// The value found.
        value: String,
    },

    /// A program could not be started or waited for.
    #[error("capsule crate {}: could not run `{command}`: {source}", crate_dir.display())]
    Spawn {
        /// The crate directory.
        crate_dir: PathBuf,
        /// The command line.
        command: String,
        /// The OS error.
        source: std::io::Error,
    },

    /// cargo ran and failed: usually a compile error in the capsule.
    #[error(
        "capsule crate {}: `{command}` failed ({status}); last lines of cargo's output:\n{stderr_tail}",
        crate_dir.display()
    )]
    Compile {
        /// The crate directory.
        crate_dir: PathBuf,
        /// The command line, with the environment it was given.
        command: String,
        /// The exit status, as text.
        status: String,
        /// The last ~40 lines cargo wrote to stderr.
        stderr_tail: String,
    },

    /// cargo succeeded but reported no `.wasm` for the capsule's cdylib target.
    #[error(
        "capsule crate {}: `{command}` succeeded but reported no .wasm file for the cdylib target",
        crate_dir.display()
    )]
    NoArtifact {
        /// The crate directory.
        crate_dir: PathBuf,
        /// The command line.
        command: String,
    },

    /// Taking the build lock failed.
    #[error("could not lock {}: {source}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },

    /// A file operation failed (creating the target dir, copying the artifact, hashing it).
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "copying the capsule to".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

fn bullets(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| format!("  - {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
