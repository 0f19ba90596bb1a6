//! Fuzzing the demand code loader (`ants_core::loader::CodeLoader`) through its public,
//! sans-IO API: the input decodes to a configuration and a sequence of operations (capsules
//! arriving, chunks and nacks from peers, requests to serve, time passing, compiles
//! finishing, outputs drained), and [`Harness`] checks the loader's promises after each.
//!
//! - `input`: [`Preset`], [`Op`], [`decode`] and its inverse [`encode`] (for seeds).
//! - `world`: the peers, capsule types and modules a run plays with.
//! - `harness`: [`Harness`], the driver and its model; `harness/checks.rs`, every
//!   invariant checked on outputs and state.
//! - `seeds`: [`seeds::scenarios`], the hand-written runs in `seeds/loader/`.

mod harness;
mod input;
pub mod seeds;
mod world;

pub use harness::Harness;
pub use input::{Knobs, MAX_OPS, Op, Preset, decode, encode};

/// Run `ops` on a fresh loader configured by `preset`; panics on a broken invariant.
pub fn run_ops(preset: &Preset, ops: &[Op]) -> Harness {
    let mut h = Harness::new(preset.config());
    for op in ops {
        h.step(*op);
    }
    h.finish();
    h
}

/// The fuzz target: decode `data` and run it.
pub fn run(data: &[u8]) {
    if let Some((preset, ops)) = decode(data) {
        run_ops(&preset, &ops);
    }
}
