//! Guest SDK for writing ANTS capsules in Rust (no_std, wasm32-unknown-unknown), with a native mock host
