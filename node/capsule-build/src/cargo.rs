//! Driving cargo: `cargo metadata` to learn the package and its target dir, `cargo build` for
//! wasm32 with a fixed size/determinism profile, and reading the `.wasm` path out of cargo's
//! JSON messages.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::process::{self, RunError};
use crate::{BuildError, Toolchain, WASM_TARGET};

/// Environment variable whose value becomes `RUSTFLAGS` for capsule builds. The caller's own
/// `RUSTFLAGS` are *not* passed on: they are meant for native code (`-C target-cpu=native`,
/// a host linker, `-D warnings` in CI) and would break or fail the wasm build unexpectedly.
pub const CAPSULE_RUSTFLAGS_ENV: &str = "ANTS_CAPSULE_RUSTFLAGS";

/// The standard library crates the Debian path builds from source.
pub const BUILD_STD: &str = "core,alloc,panic_abort";

/// Profile settings applied to every capsule build, whatever the crate's manifest says:
/// small, deterministic modules with no debug info or unwinding.
pub const PROFILE_CONFIG: [&str; 7] = [
    r#"profile.release.opt-level="s""#,
    "profile.release.lto=true",
    "profile.release.codegen-units=1",
    r#"profile.release.panic="abort""#,
    "profile.release.strip=true",
    "profile.release.debug=false",
    "profile.release.incremental=false",
];

/// Lines of cargo's stderr quoted in a [`BuildError::Compile`].
const STDERR_TAIL_LINES: usize = 40;

/// The cargo to run: `$CARGO` (set when we run under `cargo test` or a cargo subcommand),
/// else `cargo` from `PATH`.
pub(crate) fn cargo_program() -> OsString {
    process::env_nonempty("CARGO").unwrap_or_else(|| OsString::from("cargo"))
}

/// What `cargo metadata` says about the capsule package.
#[derive(Debug)]
pub(crate) struct PackageInfo {
    pub(crate) name: String,
    /// Crate types of its library target (empty if none).
    pub(crate) lib_crate_types: Vec<String>,
    /// The workspace's target directory.
    pub(crate) target_directory: PathBuf,
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<MetaPackage>,
    target_directory: PathBuf,
}

#[derive(Deserialize)]
struct MetaPackage {
    name: String,
    manifest_path: PathBuf,
    targets: Vec<MetaTarget>,
}

#[derive(Deserialize)]
struct MetaTarget {
    kind: Vec<String>,
    #[serde(default)]
    crate_types: Vec<String>,
}

/// Runs `cargo metadata --no-deps` for `manifest` and picks out its package.
pub(crate) fn metadata(crate_dir: &Path, manifest: &Path) -> Result<PackageInfo, BuildError> {
    let mut cmd = Command::new(cargo_program());
    cmd.current_dir(crate_dir)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(manifest);
    let command = process::describe(&cmd);
    let failed = |detail: String| BuildError::Metadata {
        crate_dir: crate_dir.to_owned(),
        command: command.clone(),
        detail,
    };
    let done = process::run(&mut cmd, None, false).map_err(|e| match e {
        RunError::Spawn(e) if e.kind() == std::io::ErrorKind::NotFound => failed(
            "cargo is not installed: install Rust with rustup (https://rustup.rs) or, on \
             Debian, `apt-get install -y cargo-web`"
                .to_owned(),
        ),
        e => failed(e.to_string()),
    })?;
    if !done.status.success() {
        return Err(failed(format!(
            "{}\n{}",
            done.status,
            process::tail(&done.stderr, STDERR_TAIL_LINES)
        )));
    }
    let meta: Metadata = serde_json::from_slice(&done.stdout)
        .map_err(|e| failed(format!("unreadable output: {e}")))?;
    parse_package(meta, manifest).ok_or_else(|| BuildError::NoPackage {
        crate_dir: crate_dir.to_owned(),
    })
}

fn parse_package(meta: Metadata, manifest: &Path) -> Option<PackageInfo> {
    let package = meta
        .packages
        .into_iter()
        .find(|p| same_file(&p.manifest_path, manifest))?;
    let lib_crate_types = package
        .targets
        .into_iter()
        .find(|t| t.kind.iter().any(|k| is_lib_kind(k)))
        .map(|t| {
            if t.crate_types.is_empty() {
                t.kind
            } else {
                t.crate_types
            }
        })
        .unwrap_or_default();
    Some(PackageInfo {
        name: package.name,
        lib_crate_types,
        target_directory: meta.target_directory,
    })
}

fn is_lib_kind(kind: &str) -> bool {
    matches!(kind, "lib" | "rlib" | "dylib" | "cdylib" | "staticlib")
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The `cargo build` command for `manifest` with `toolchain`, writing into `target_dir`.
pub(crate) fn build_command(
    crate_dir: &Path,
    manifest: &Path,
    target_dir: &Path,
    toolchain: &Toolchain,
    verbose: bool,
) -> Command {
    let mut cmd = Command::new(cargo_program());
    cmd.current_dir(crate_dir)
        .arg("build")
        .arg("--manifest-path")
        .arg(manifest)
        .args(["--lib", "--release", "--target", WASM_TARGET])
        .arg("--message-format=json-render-diagnostics")
        .arg("--target-dir")
        .arg(target_dir);
    for setting in PROFILE_CONFIG {
        cmd.args(["--config", setting]);
    }
    if verbose && std::io::stderr().is_terminal() {
        cmd.arg("--color=always");
    }
    for name in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_INCREMENTAL",
    ] {
        cmd.env_remove(name);
    }
    if let Some(flags) = process::env_nonempty(CAPSULE_RUSTFLAGS_ENV) {
        cmd.env("RUSTFLAGS", flags);
    }
    cmd.env("RUSTC", toolchain.rustc());
    if let Toolchain::Debian { linker, .. } = toolchain {
        cmd.env("RUSTC_BOOTSTRAP", "1")
            .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", linker)
            .arg(format!("-Zbuild-std={BUILD_STD}"));
    }
    cmd
}

/// Runs `cmd` (from [`build_command`]) and returns the `.wasm` it produced for `manifest`.
pub(crate) fn run_build(
    mut cmd: Command,
    crate_dir: &Path,
    manifest: &Path,
    verbose: bool,
) -> Result<PathBuf, BuildError> {
    let command = process::describe(&cmd);
    tracing::info!("running `{command}`");
    let done = process::run(&mut cmd, None, verbose).map_err(|e| match e {
        RunError::Spawn(source) | RunError::Wait(source) => BuildError::Spawn {
            crate_dir: crate_dir.to_owned(),
            command: command.clone(),
            source,
        },
        // `cargo build` runs without a deadline; reported as a failure should it ever happen.
        RunError::TimedOut(after) => BuildError::Compile {
            crate_dir: crate_dir.to_owned(),
            command: command.clone(),
            status: format!("timed out after {} s", after.as_secs()),
            stderr_tail: String::new(),
        },
    })?;
    if !done.status.success() {
        return Err(BuildError::Compile {
            crate_dir: crate_dir.to_owned(),
            command,
            status: done.status.to_string(),
            stderr_tail: process::tail(&done.stderr, STDERR_TAIL_LINES),
        });
    }
    find_artifact(&done.stdout, manifest).ok_or_else(|| BuildError::NoArtifact {
        crate_dir: crate_dir.to_owned(),
        command,
    })
}

#[derive(Deserialize)]
struct Message {
    reason: String,
    #[serde(default)]
    manifest_path: Option<PathBuf>,
    #[serde(default)]
    target: Option<MessageTarget>,
    #[serde(default)]
    filenames: Vec<PathBuf>,
}

#[derive(Deserialize)]
struct MessageTarget {
    kind: Vec<String>,
}

/// The `.wasm` named by the last `compiler-artifact` message for `manifest`'s cdylib target.
pub(crate) fn find_artifact(stdout: &[u8], manifest: &Path) -> Option<PathBuf> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Message>(line).ok())
        .filter(|m| m.reason == "compiler-artifact")
        .filter(|m| {
            m.target
                .as_ref()
                .is_some_and(|t| t.kind.iter().any(|k| k == "cdylib"))
        })
        .filter(|m| {
            m.manifest_path
                .as_deref()
                .is_some_and(|p| same_file(p, manifest))
        })
        .filter_map(|m| {
            m.filenames
                .into_iter()
                .find(|f| f.extension().is_some_and(|e| e == "wasm"))
        })
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_comes_from_the_cdylib_message_of_our_package() {
        let stdout = br#"{"reason":"compiler-artifact","manifest_path":"/x/dep/Cargo.toml","target":{"kind":["cdylib"]},"filenames":["/t/dep.wasm"]}
{"reason":"compiler-artifact","manifest_path":"/x/cap/Cargo.toml","target":{"kind":["lib"]},"filenames":["/t/libcap.rlib"]}
{"reason":"compiler-artifact","manifest_path":"/x/cap/Cargo.toml","target":{"kind":["cdylib","rlib"]},"filenames":["/t/libcap.rlib","/t/cap.wasm"]}
not json
{"reason":"build-finished","success":true}
"#;
        assert_eq!(
            find_artifact(stdout, Path::new("/x/cap/Cargo.toml")),
            Some(PathBuf::from("/t/cap.wasm"))
        );
        assert_eq!(
            find_artifact(stdout, Path::new("/x/other/Cargo.toml")),
            None
        );
    }

    #[test]
    fn package_is_matched_by_manifest_and_lib_types_reported() {
        let meta: Metadata = serde_json::from_str(
            r#"{"target_directory":"/ws/target","packages":[
              {"name":"a","manifest_path":"/ws/a/Cargo.toml","targets":[{"kind":["bin"],"crate_types":["bin"]}]},
              {"name":"cap","manifest_path":"/ws/cap/Cargo.toml","targets":[
                {"kind":["bin"],"crate_types":["bin"]},
                {"kind":["cdylib","rlib"],"crate_types":["cdylib","rlib"]}]}]}"#,
        )
        .unwrap();
        let p = parse_package(meta, Path::new("/ws/cap/Cargo.toml")).unwrap();
        assert_eq!(p.name, "cap");
        assert_eq!(p.lib_crate_types, ["cdylib", "rlib"]);
        assert_eq!(p.target_directory, PathBuf::from("/ws/target"));
    }

    #[test]
    fn debian_build_bootstraps_build_std_and_sets_the_linker() {
        let t = Toolchain::Debian {
            rustc: PathBuf::from("/usr/bin/rustc"),
            linker: PathBuf::from("/l/rust-lld"),
        };
        let cmd = build_command(
            Path::new("/c"),
            Path::new("/c/Cargo.toml"),
            Path::new("/t"),
            &t,
            false,
        );
        let line = process::describe(&cmd);
        assert!(line.contains("RUSTC_BOOTSTRAP=1"), "{line}");
        assert!(
            line.contains("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=/l/rust-lld"),
            "{line}"
        );
        assert!(
            line.contains("-Zbuild-std=core,alloc,panic_abort"),
            "{line}"
        );
        assert!(line.contains("-u RUSTFLAGS "), "{line}");
    }
}
