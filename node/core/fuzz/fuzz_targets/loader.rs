//! Any bytes, decoded into a loader configuration and a sequence of operations, drive one
//! `CodeLoader` without a panic and without breaking an invariant; see `src/harness.rs` and
//! the README's table for what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ants_core_fuzz::run(data));
