//! Build facts for `ants --version`: the git revision of the source (with `-dirty` when the
//! work tree had changes) and the wasmtime version from Cargo.lock. Neither is required: a
//! source tarball without git says `unknown`.

use std::process::Command;

fn main() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let rev = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let rev = if dirty { format!("{rev}-dirty") } else { rev };
    println!("cargo:rustc-env=ANTS_GIT_REV={rev}");
    // Rebuild when HEAD moves (a commit, a checkout) and when the lock file changes.
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{head}");
        }
    }
    let lock = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock");
    println!("cargo:rerun-if-changed={lock}");
    let wasmtime = std::fs::read_to_string(lock)
        .ok()
        .and_then(|text| {
            let at = text.find("\nname = \"wasmtime\"\nversion = \"")?;
            let rest = &text[at + "\nname = \"wasmtime\"\nversion = \"".len()..];
            Some(rest[..rest.find('"')?].to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=ANTS_WASMTIME_VERSION={wasmtime}");
}
