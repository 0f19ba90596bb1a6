//! Choosing the toolchain that turns a capsule crate into `wasm32-unknown-unknown` code.
//!
//! - [`ToolchainChoice`]: what the user asked for (`auto`, `rustup`, `debian`);
//! - [`Toolchain`]: what was found, and how cargo must be run with it;
//! - [`resolve_toolchain`]: the search, memoized per process.
//!
//! `auto` tries, in order: the rustc cargo would use already has the wasm32 target
//! ([`crate::rustup`]); `rustup target add` under a deadline; Debian's `rustc-web` +
//! `rust-web-src` building `core` from source ([`crate::debian`]), installing them if we are
//! root. docs/toolchain.md describes the paths and their exact commands.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};

use crate::{BuildError, debian, process, rustup};

/// The target every capsule is built for.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Environment variable that, when set, replaces [`ToolchainChoice::Auto`] by the named choice
/// (handy to force the Debian fallback in a test run without changing code).
pub const TOOLCHAIN_ENV: &str = "ANTS_CAPSULE_TOOLCHAIN";

/// Which toolchain to build capsules with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ToolchainChoice {
    /// Find one: the rustup target, then `rustup target add`, then the Debian fallback.
    #[default]
    Auto,
    /// Only the rustup toolchain's prebuilt `wasm32-unknown-unknown` target (adding it if
    /// allowed).
    Rustup,
    /// Only Debian's `rustc-web` + `rust-web-src` with `-Zbuild-std` (installing them if
    /// allowed and root).
    Debian,
}

impl ToolchainChoice {
    /// The lowercase name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ToolchainChoice::Auto => "auto",
            ToolchainChoice::Rustup => "rustup",
            ToolchainChoice::Debian => "debian",
        }
    }
}

impl fmt::Display for ToolchainChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A toolchain name other than `auto`, `rustup` or `debian`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown toolchain `{0}`: expected auto, rustup or debian")]
pub struct ParseToolchainChoiceError(pub String);

impl FromStr for ToolchainChoice {
    type Err = ParseToolchainChoiceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(ToolchainChoice::Auto),
            "rustup" => Ok(ToolchainChoice::Rustup),
            "debian" => Ok(ToolchainChoice::Debian),
            _ => Err(ParseToolchainChoiceError(s.to_owned())),
        }
    }
}

/// A toolchain able to build `wasm32-unknown-unknown`, and how to drive cargo with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Toolchain {
    /// A rustc whose sysroot ships the prebuilt target (normally a rustup toolchain). Cargo
    /// runs with `RUSTC=<sysroot>/bin/rustc`.
    Rustup {
        /// The rustc sysroot, e.g. `~/.rustup/toolchains/stable-x86_64-unknown-linux-gnu`.
        sysroot: PathBuf,
    },
    /// Debian's `rustc-web`, building `core`/`alloc` from `rust-web-src` with
    /// `RUSTC_BOOTSTRAP=1 … -Zbuild-std`, linked by an external wasm linker.
    Debian {
        /// The rustc binary, normally `/usr/bin/rustc`.
        rustc: PathBuf,
        /// `rust-lld` or `wasm-ld`.
        linker: PathBuf,
    },
}

impl Toolchain {
    /// The rustc cargo is told to use (`RUSTC`).
    pub fn rustc(&self) -> PathBuf {
        match self {
            Toolchain::Rustup { sysroot } => sysroot
                .join("bin")
                .join(format!("rustc{}", std::env::consts::EXE_SUFFIX)),
            Toolchain::Debian { rustc, .. } => rustc.clone(),
        }
    }
}

impl fmt::Display for Toolchain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Toolchain::Rustup { sysroot } => write!(
                f,
                "rustc with the installed {WASM_TARGET} target (sysroot {})",
                sysroot.display()
            ),
            Toolchain::Debian { rustc, linker } => write!(
                f,
                "Debian {} building core from source (-Zbuild-std), linked with {}",
                rustc.display(),
                linker.display()
            ),
        }
    }
}

/// Successful resolutions so far in this process, by (effective) choice.
static RESOLVED: Mutex<Vec<(ToolchainChoice, Toolchain)>> = Mutex::new(Vec::new());

/// Finds a toolchain for `choice`, installing what is missing when `allow_install` is true
/// (`rustup target add` with a deadline; `apt-get install` only when running as root).
///
/// A success is remembered for the rest of the process, so later builds skip the probes;
/// failures are not, so a later call may retry. [`ToolchainChoice::Auto`] is replaced by the
/// value of `ANTS_CAPSULE_TOOLCHAIN` when that is set. Concurrent callers in one process are
/// serialized; across processes, installs take a per-user file lock.
pub fn resolve_toolchain(
    choice: ToolchainChoice,
    allow_install: bool,
) -> Result<Toolchain, BuildError> {
    let choice = effective_choice(choice)?;
    let mut resolved = RESOLVED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, toolchain)) = resolved.iter().find(|(c, _)| *c == choice) {
        return Ok(toolchain.clone());
    }
    let toolchain = resolve_uncached(choice, allow_install)?;
    tracing::info!("capsule toolchain ({choice}): {toolchain}");
    resolved.push((choice, toolchain.clone()));
    Ok(toolchain)
}

fn effective_choice(choice: ToolchainChoice) -> Result<ToolchainChoice, BuildError> {
    if choice != ToolchainChoice::Auto {
        return Ok(choice);
    }
    match process::env_nonempty(TOOLCHAIN_ENV) {
        None => Ok(choice),
        Some(value) => {
            let value = value.to_string_lossy().into_owned();
            value
                .parse()
                .map_err(|_| BuildError::BadToolchainEnv { value })
        }
    }
}

fn resolve_uncached(choice: ToolchainChoice, allow_install: bool) -> Result<Toolchain, BuildError> {
    let mut attempts = Vec::new();
    let default_rustc = rustup::probe_default_rustc(&mut attempts);
    if choice != ToolchainChoice::Debian {
        let explicit = choice == ToolchainChoice::Rustup;
        if let Some(found) = rustup::find(
            default_rustc.as_ref(),
            allow_install,
            explicit,
            &mut attempts,
        ) {
            return Ok(found);
        }
        if choice == ToolchainChoice::Rustup {
            return Err(BuildError::ToolchainUnavailable {
                choice,
                attempts,
                fix: rustup::fix_hint(default_rustc.as_ref()),
            });
        }
    }
    debian::find(default_rustc.as_ref(), allow_install, &mut attempts).map_err(|fix| {
        BuildError::ToolchainUnavailable {
            choice,
            attempts,
            fix,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_round_trips_through_text() {
        for choice in [
            ToolchainChoice::Auto,
            ToolchainChoice::Rustup,
            ToolchainChoice::Debian,
        ] {
            assert_eq!(choice.to_string().parse::<ToolchainChoice>(), Ok(choice));
        }
        assert_eq!("Debian".parse(), Ok(ToolchainChoice::Debian));
        let err = "nightly".parse::<ToolchainChoice>().unwrap_err();
        assert!(err.to_string().contains("expected auto, rustup or debian"));
    }

    #[test]
    fn rustup_toolchain_runs_the_sysroot_rustc() {
        let t = Toolchain::Rustup {
            sysroot: PathBuf::from("/r/toolchains/stable"),
        };
        assert!(t.rustc().starts_with("/r/toolchains/stable/bin"));
        assert!(t.to_string().contains("wasm32-unknown-unknown"));
    }
}
