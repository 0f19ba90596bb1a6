//! Builds capsule crates to wasm32, choosing an installed, downloadable or Debian fallback toolchain by itself
