//! The ANTS-rs node: the wasmtime [`executor`], the overlay [`daemon`] (`ants run`) with its
//! [`udp`] socket, [`config`] file and local [`app_server`], the capsule test bench
//! ([`testbench`]), the picture of a deployment ([`map`]), and the `ants` command-line tool
//! built on them.

pub mod afpacket;
pub mod afxdp;
pub mod app_server;
pub mod bpf;
pub mod config;
pub mod daemon;
pub mod executor;
pub mod fastpath;
pub mod http;
pub mod map;
mod mmsg;
pub mod privdrop;
pub mod record;
pub mod replay;
mod sys;
pub mod testbench;
pub mod udp;

pub use executor::{CompiledModule, Compiler, ExecutorConfig, WasmExecutor};

/// The version and revision of this build (recorded with every recording).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " ", env!("ANTS_GIT_REV"));
