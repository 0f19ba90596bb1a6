//! The ANTS-rs node: the wasmtime [`executor`], the capsule test bench ([`testbench`]) and
//! the `ants` command-line tool built on them.

pub mod executor;
pub mod testbench;

pub use executor::{CompiledModule, Compiler, ExecutorConfig, WasmExecutor};
