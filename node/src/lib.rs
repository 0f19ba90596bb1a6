//! The ANTS-rs node: wasmtime executor and the ants command-line tool
