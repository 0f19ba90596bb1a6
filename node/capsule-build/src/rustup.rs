//! Paths 1 and 2: the rustc cargo would use already has the prebuilt wasm32 target, or
//! `rustup target add` can fetch it.
//!
//! - [`probe_default_rustc`]: `$RUSTC` (else `rustc`) `-vV` and `--print sysroot`;
//! - [`find`]: check `<sysroot>/lib/rustlib/wasm32-unknown-unknown/lib`, else run `rustup
//!   target add` with a hard deadline (offline it can hang) and check again;
//! - a marker file remembers a failed `rustup target add` for a while, so an offline machine
//!   running many test processes pays the deadline once, not once per process.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::process::{self, RunError};
use crate::{Toolchain, WASM_TARGET, lock};

/// Default deadline for `rustup target add` and for probing rustc (a rustup proxy may try to
/// install a toolchain named by `rust-toolchain.toml`).
pub const DEFAULT_RUSTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// Environment variable overriding [`DEFAULT_RUSTUP_TIMEOUT`], in whole seconds.
pub const RUSTUP_TIMEOUT_ENV: &str = "ANTS_RUSTUP_TIMEOUT_SECS";

/// How long a failed `rustup target add` is not retried by other processes.
const RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

/// What we learned about one rustc.
#[derive(Debug, Clone)]
pub(crate) struct RustcInfo {
    /// How it was invoked (`rustc`, `$RUSTC`, `/usr/bin/rustc`).
    pub(crate) program: OsString,
    pub(crate) sysroot: PathBuf,
    /// Host triple, from `rustc -vV`.
    pub(crate) host: String,
    /// Version, from `rustc -vV`.
    pub(crate) release: String,
}

pub(crate) fn rustup_timeout() -> Duration {
    process::env_nonempty(RUSTUP_TIMEOUT_ENV)
        .and_then(|v| v.to_string_lossy().trim().parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_RUSTUP_TIMEOUT)
}

/// The rustc cargo would use: `$RUSTC`, else `rustc` from `PATH`.
pub(crate) fn default_rustc() -> OsString {
    process::env_nonempty("RUSTC").unwrap_or_else(|| OsString::from("rustc"))
}

/// Probes [`default_rustc`]; on failure records why in `attempts`.
pub(crate) fn probe_default_rustc(attempts: &mut Vec<String>) -> Option<RustcInfo> {
    let program = default_rustc();
    match probe(program.clone()) {
        Ok(info) => Some(info),
        Err(why) => {
            attempts.push(format!("rustc `{}`: {why}", program.to_string_lossy()));
            None
        }
    }
}

/// Runs `program -vV` and `program --print sysroot`.
pub(crate) fn probe(program: OsString) -> Result<RustcInfo, String> {
    let verbose = capture(Command::new(&program).arg("-vV"))?;
    let field = |name: &str| {
        verbose
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    let host = field("host:").ok_or("`rustc -vV` printed no `host:` line")?;
    let release = field("release:").unwrap_or_default();
    let sysroot = capture(Command::new(&program).args(["--print", "sysroot"]))?;
    Ok(RustcInfo {
        program,
        sysroot: PathBuf::from(sysroot.trim()),
        host,
        release,
    })
}

fn capture(cmd: &mut Command) -> Result<String, String> {
    let line = process::describe(cmd);
    match process::run(cmd, Some(rustup_timeout()), false) {
        Ok(done) if done.status.success() => Ok(String::from_utf8_lossy(&done.stdout).into()),
        Ok(done) => Err(format!(
            "`{line}` failed ({}): {}",
            done.status,
            process::first_line(&done.stderr)
        )),
        Err(e) => Err(format!("`{line}`: {e}")),
    }
}

/// Where a sysroot keeps the prebuilt wasm32 standard library.
pub(crate) fn wasm_lib_dir(sysroot: &Path) -> PathBuf {
    sysroot
        .join("lib")
        .join("rustlib")
        .join(WASM_TARGET)
        .join("lib")
}

/// The rustup toolchain name of a sysroot under `<rustup home>/toolchains/<name>`.
pub(crate) fn toolchain_name(sysroot: &Path) -> Option<String> {
    let parent = sysroot.parent()?;
    (parent.file_name()? == "toolchains")
        .then(|| {
            sysroot
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .flatten()
}

/// The rustup binary: on `PATH`, else in `$CARGO_HOME/bin` or `~/.cargo/bin`.
pub(crate) fn find_rustup() -> Option<PathBuf> {
    let name = format!("rustup{}", std::env::consts::EXE_SUFFIX);
    process::find_in_path(&name).or_else(|| {
        let cargo_home = process::env_nonempty("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| process::env_nonempty("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
        let candidate = cargo_home.join("bin").join(&name);
        process::is_executable(&candidate).then_some(candidate)
    })
}

/// Path 1, then path 2. `None` means "not this way"; the reasons are in `attempts`.
///
/// With `retry_recent_failure` false, a `rustup target add` that failed in the last
/// [`RETRY_AFTER`] (in any process) is not run again — right for `auto`, which has a fallback;
/// an explicit `rustup` choice always tries.
pub(crate) fn find(
    rustc: Option<&RustcInfo>,
    allow_install: bool,
    retry_recent_failure: bool,
    attempts: &mut Vec<String>,
) -> Option<Toolchain> {
    let rustc = rustc?;
    let found = || Toolchain::Rustup {
        sysroot: rustc.sysroot.clone(),
    };
    let lib_dir = wasm_lib_dir(&rustc.sysroot);
    if lib_dir.is_dir() {
        return Some(found());
    }
    attempts.push(format!(
        "rustc `{}` {} (sysroot {}): target {WASM_TARGET} not installed (no {})",
        rustc.program.to_string_lossy(),
        rustc.release,
        rustc.sysroot.display(),
        lib_dir.display()
    ));
    if !allow_install {
        attempts.push("`rustup target add` not tried: installing is disabled".to_owned());
        return None;
    }
    let Some(rustup) = find_rustup() else {
        attempts.push("`rustup target add` not tried: no rustup on PATH".to_owned());
        return None;
    };
    let toolchain = toolchain_name(&rustc.sysroot);
    let mut cmd = Command::new(&rustup);
    cmd.args(["target", "add", WASM_TARGET]);
    if let Some(name) = &toolchain {
        cmd.args(["--toolchain", name]);
    }
    let line = process::describe(&cmd);
    let marker = lock::state_dir().join(format!(
        "rustup-target-add-failed-{}",
        toolchain.as_deref().unwrap_or("default")
    ));

    let _install = lock::install_lock();
    // Another process may have added it while we waited for the lock.
    if lib_dir.is_dir() {
        return Some(found());
    }
    if let Some(age) = recent(&marker).filter(|_| !retry_recent_failure) {
        attempts.push(format!(
            "`{line}` not retried: it failed {} s ago (delete {} to retry now)",
            age.as_secs(),
            marker.display()
        ));
        return None;
    }
    let timeout = rustup_timeout();
    tracing::info!("running `{line}` (deadline {} s)", timeout.as_secs());
    let outcome = process::run(&mut cmd, Some(timeout), false);
    if lib_dir.is_dir() {
        let _ = std::fs::remove_file(&marker);
        return Some(found());
    }
    attempts.push(match outcome {
        Ok(done) => format!(
            "`{line}` failed ({}): {}",
            done.status,
            process::tail(&done.stderr, 3).replace('\n', " | ")
        ),
        Err(RunError::TimedOut(after)) => format!(
            "`{line}` timed out after {} s (offline?); set {RUSTUP_TIMEOUT_ENV} to wait longer",
            after.as_secs()
        ),
        Err(e) => format!("`{line}`: {e}"),
    });
    // Best effort: without the marker the next process just tries again.
    let _ = std::fs::create_dir_all(lock::state_dir())
        .and_then(|()| std::fs::write(&marker, line.as_bytes()));
    None
}

/// How long ago `marker` was written, if within [`RETRY_AFTER`].
fn recent(marker: &Path) -> Option<Duration> {
    let modified = std::fs::metadata(marker).ok()?.modified().ok()?;
    let age = SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default();
    (age < RETRY_AFTER).then_some(age)
}

/// What to tell a user who asked for the rustup toolchain and has none.
pub(crate) fn fix_hint(rustc: Option<&RustcInfo>) -> String {
    let toolchain = rustc
        .and_then(|r| toolchain_name(&r.sysroot))
        .map(|n| format!(" --toolchain {n}"))
        .unwrap_or_default();
    format!(
        "run `rustup target add {WASM_TARGET}{toolchain}` with internet access \
         (install rustup from https://rustup.rs first if needed), or use `--toolchain debian`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toolchain_name_comes_from_the_rustup_layout() {
        assert_eq!(
            toolchain_name(Path::new(
                "/root/.rustup/toolchains/stable-x86_64-unknown-linux-gnu"
            )),
            Some("stable-x86_64-unknown-linux-gnu".to_owned())
        );
        assert_eq!(toolchain_name(Path::new("/usr")), None);
    }
}
