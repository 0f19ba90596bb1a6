//! Shared setup for the benchmarks: build the shipped capsules to wasm once.

use std::path::Path;

/// Build `capsules/<name>` (release wasm) and return its bytes.
pub fn capsule_bytes(name: &str) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../capsules")
        .join(name);
    let opts = ants_capsule_build::BuildOptions {
        verbose: false,
        ..Default::default()
    };
    let built = ants_capsule_build::build(&dir, &opts)
        .unwrap_or_else(|e| panic!("building {}: {e}", dir.display()));
    std::fs::read(&built.path).unwrap_or_else(|e| panic!("{}: {e}", built.path.display()))
}
