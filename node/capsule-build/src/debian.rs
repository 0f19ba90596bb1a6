//! Path 3: Debian's `rustc-web` (rustc 1.96 at `/usr/bin/rustc`) plus `rust-web-src` (the
//! standard library sources under `/usr/lib/rustlib/src/rust/library`), building `core` and
//! `alloc` for wasm32 with `RUSTC_BOOTSTRAP=1 … -Zbuild-std`.
//!
//! - [`find`]: check the packages and a wasm linker, installing what is missing with
//!   `apt-get` when allowed and root (retrying once after `apt-get update`);
//! - [`find_linker`]: `$ANTS_WASM_LINKER`, rustup's `rust-lld`, `rust-lld`/`wasm-ld` on
//!   `PATH`, then Debian `lld`'s `wasm-ld`/`wasm-ld-<N>`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process;
use crate::rustup::{self, RustcInfo};
use crate::{Toolchain, lock};

/// Where `rustc-web` installs rustc.
pub const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
/// The packages that provide the fallback compiler and the library sources.
pub const DEBIAN_PACKAGES: [&str; 2] = ["rustc-web", "rust-web-src"];
/// The package that provides `wasm-ld` when no `rust-lld` is around.
pub const LLD_PACKAGE: &str = "lld";
/// Environment variable naming the wasm linker to use for the Debian path.
pub const LINKER_ENV: &str = "ANTS_WASM_LINKER";

/// Deadline for one `apt-get` run (it has its own network timeouts; this catches a wedge).
const APT_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// Finds (or installs) the Debian toolchain. `Err` carries the "to fix" advice; the reasons
/// are in `attempts`.
pub(crate) fn find(
    default_rustc: Option<&RustcInfo>,
    allow_install: bool,
    attempts: &mut Vec<String>,
) -> Result<Toolchain, String> {
    let mut missing = missing_parts(default_rustc, attempts);
    if missing.is_empty() {
        return complete(default_rustc, attempts);
    }
    let packages = missing.join(" ");
    let manual = format!("sudo apt-get install -y {packages}");
    let rustup_alt = format!(
        "(or, with internet access, `rustup target add {}`)",
        crate::WASM_TARGET
    );
    if !allow_install {
        attempts.push(format!("not installing {packages}: installing is disabled"));
        return Err(format!("run `{manual}` {rustup_alt}"));
    }
    if !process::running_as_root() {
        attempts.push(format!("not installing {packages}: not running as root"));
        return Err(format!("run `{manual}` {rustup_alt}"));
    }
    let Some(apt_get) = process::find_in_path("apt-get") else {
        attempts.push(format!(
            "cannot install {packages}: no apt-get (not Debian?)"
        ));
        return Err(format!(
            "install rustup from https://rustup.rs and run `rustup target add {}`",
            crate::WASM_TARGET
        ));
    };

    let _install = lock::install_lock();
    // Another process may have installed them while we waited for the lock.
    let mut scratch = Vec::new();
    missing = missing_parts(default_rustc, &mut scratch);
    if !missing.is_empty() {
        if let Err(why) = apt_install(&apt_get, &missing) {
            attempts.push(why);
            return Err(format!(
                "check the network and apt sources, then run `apt-get update && \
                 apt-get install -y {}` {rustup_alt}",
                missing.join(" ")
            ));
        }
        let mut after = Vec::new();
        if !missing_parts(default_rustc, &mut after).is_empty() {
            attempts.extend(after);
            attempts.push(format!(
                "`apt-get install {}` did not provide them",
                missing.join(" ")
            ));
            return Err(format!("run `{manual}` and check that it succeeds"));
        }
    }
    complete(default_rustc, attempts)
}

/// The packages still missing for this path, noting each gap in `attempts`.
fn missing_parts(
    default_rustc: Option<&RustcInfo>,
    attempts: &mut Vec<String>,
) -> Vec<&'static str> {
    let mut missing = Vec::new();
    match debian_rustc() {
        Ok(_) => {}
        Err(why) => {
            attempts.push(why);
            missing.extend(DEBIAN_PACKAGES);
        }
    }
    if find_linker(default_rustc).is_none() {
        attempts.push(format!(
            "no wasm linker: no {LINKER_ENV}, no rustup rust-lld, no rust-lld or wasm-ld on PATH"
        ));
        missing.push(LLD_PACKAGE);
    }
    missing
}

fn complete(
    default_rustc: Option<&RustcInfo>,
    attempts: &mut Vec<String>,
) -> Result<Toolchain, String> {
    let rustc = debian_rustc().map_err(|why| {
        attempts.push(why);
        format!(
            "run `sudo apt-get install -y {}`",
            DEBIAN_PACKAGES.join(" ")
        )
    })?;
    let linker = find_linker(default_rustc)
        .ok_or_else(|| format!("run `sudo apt-get install -y {LLD_PACKAGE}`"))?;
    Ok(Toolchain::Debian {
        rustc: PathBuf::from(&rustc.program),
        linker,
    })
}

/// `/usr/bin/rustc`, if it runs and its sysroot has the library sources `-Zbuild-std` needs.
fn debian_rustc() -> Result<RustcInfo, String> {
    if !process::is_executable(Path::new(DEBIAN_RUSTC)) {
        return Err(format!("Debian: no {DEBIAN_RUSTC} (package rustc-web)"));
    }
    let info = rustup::probe(OsString::from(DEBIAN_RUSTC))
        .map_err(|why| format!("Debian: {DEBIAN_RUSTC}: {why}"))?;
    let library = library_src(&info.sysroot);
    if !library.join("Cargo.lock").is_file() {
        return Err(format!(
            "Debian: {DEBIAN_RUSTC} {} has no library sources at {} (package rust-web-src)",
            info.release,
            library.display()
        ));
    }
    Ok(info)
}

/// Where `-Zbuild-std` looks for the standard library sources of a sysroot.
pub(crate) fn library_src(sysroot: &Path) -> PathBuf {
    sysroot.join("lib/rustlib/src/rust/library")
}

/// The wasm linker for the Debian path, best first.
pub(crate) fn find_linker(default_rustc: Option<&RustcInfo>) -> Option<PathBuf> {
    if let Some(named) = process::env_nonempty(LINKER_ENV) {
        let named = PathBuf::from(named);
        let found = if named.components().count() > 1 {
            process::is_executable(&named).then_some(named.clone())
        } else {
            process::find_in_path(&named.to_string_lossy())
        };
        match found {
            Some(path) => return Some(path),
            None => tracing::warn!(
                "{LINKER_ENV}={} is not an executable; ignoring it",
                named.display()
            ),
        }
    }
    let host = default_rustc
        .map(|r| r.host.clone())
        .unwrap_or_else(|| format!("{}-unknown-linux-gnu", std::env::consts::ARCH));
    let lld_in = |sysroot: &Path| {
        let path = sysroot.join("lib/rustlib").join(&host).join("bin/rust-lld");
        process::is_executable(&path).then_some(path)
    };
    if let Some(path) = default_rustc.and_then(|r| lld_in(&r.sysroot)) {
        return Some(path);
    }
    if let Some(path) = rustup_toolchains(default_rustc)
        .iter()
        .find_map(|tc| lld_in(tc))
    {
        return Some(path);
    }
    if let Some(path) =
        process::find_in_path("rust-lld").or_else(|| process::find_in_path("wasm-ld"))
    {
        return Some(path);
    }
    versioned_wasm_ld(Path::new("/usr/bin"))
}

/// Every rustup toolchain dir, sorted by name.
fn rustup_toolchains(default_rustc: Option<&RustcInfo>) -> Vec<PathBuf> {
    let home = process::env_nonempty("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            default_rustc
                .filter(|r| rustup::toolchain_name(&r.sysroot).is_some())
                .and_then(|r| r.sysroot.parent()?.parent().map(Path::to_owned))
        })
        .or_else(|| process::env_nonempty("HOME").map(|h| PathBuf::from(h).join(".rustup")));
    let Some(Ok(entries)) = home.map(|h| std::fs::read_dir(h.join("toolchains"))) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    dirs.sort();
    dirs
}

/// The newest `wasm-ld-<N>` in `dir` (Debian's `lld-<N>` packages install those).
fn versioned_wasm_ld(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let version: u32 = name.strip_prefix("wasm-ld-")?.parse().ok()?;
            Some((version, dir.join(name)))
        })
        .filter(|(_, path)| process::is_executable(path))
        .max_by_key(|(version, _)| *version)
        .map(|(_, path)| path)
}

/// `apt-get install -y <packages>`, retried once after `apt-get update` if it fails.
fn apt_install(apt_get: &Path, packages: &[&str]) -> Result<(), String> {
    let install = || {
        let mut cmd = apt_command(apt_get);
        // Recommends stay on: they bring `cargo-web` (a cargo for machines without rustup)
        // and `rust-web-llvm`, the set this path was verified with.
        cmd.args(["install", "-y"]).args(packages);
        run_apt(cmd)
    };
    let Err(first) = install() else {
        return Ok(());
    };
    tracing::warn!("{first}; running apt-get update and retrying");
    let mut update = apt_command(apt_get);
    update.arg("update");
    if let Err(why) = run_apt(update) {
        return Err(format!("{first}; then {why}"));
    }
    install()
}

fn apt_command(apt_get: &Path) -> Command {
    let mut cmd = Command::new(apt_get);
    cmd.env("DEBIAN_FRONTEND", "noninteractive")
        // Wait for another apt/dpkg instead of failing at once.
        .args(["-o", "DPkg::Lock::Timeout=300"]);
    cmd
}

fn run_apt(mut cmd: Command) -> Result<(), String> {
    let line = process::describe(&cmd);
    tracing::info!("running `{line}`");
    match process::run(&mut cmd, Some(APT_TIMEOUT), false) {
        Ok(done) if done.status.success() => Ok(()),
        Ok(done) => Err(format!(
            "`{line}` failed ({}): {}",
            done.status,
            process::tail(&done.stderr, 3).replace('\n', " | ")
        )),
        Err(e) => Err(format!("`{line}`: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_versioned_wasm_ld_wins() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["wasm-ld-14", "wasm-ld-19", "wasm-ld-x", "ld.lld-19"] {
            let path = dir.path().join(name);
            std::fs::write(&path, b"").unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        assert_eq!(
            versioned_wasm_ld(dir.path()),
            Some(dir.path().join("wasm-ld-19"))
        );
    }

    #[test]
    fn library_sources_live_under_rustlib() {
        assert_eq!(
            library_src(Path::new("/usr")),
            PathBuf::from("/usr/lib/rustlib/src/rust/library")
        );
    }
}
