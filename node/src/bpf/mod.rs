//! eBPF without a toolchain: programs assembled in Rust ([`asm`]) and loaded, attached,
//! fed maps and test-run through `bpf(2)` ([`sys`]). Router mode uses it for the tcx
//! ingress drop (`afpacket::kernel`) and the XDP fast path ([`crate::fastpath`]).
//!
//! Why not a BPF compiler: the programs are small (2 and ~150 instructions), the node knows
//! its map descriptors before it loads them, and assembling at run time needs no clang, no
//! LLVM-based linker and no ELF loader on the build or target machine — `cargo build`
//! offline is enough. The kernel's verifier checks every program at load, and the fast
//! path is tested against the userspace router on generated frames (`tests/it/fastpath.rs`).

pub mod asm;
pub mod sys;
