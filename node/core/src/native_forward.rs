//! [`NativeForward`]: a native stand-in for the `forward` capsule, so multi-node harnesses
//! (the core's own tests, the simulator's) run demand loading without wasm.

use std::collections::BTreeSet;

use ants_wire::CapsuleType;
use sha2::{Digest, Sha256};

use crate::{Execution, Executor, LoadError, RunReport, RunResult};

/// Runs the `forward` protocol natively for every module it has loaded: deliver to app 0 at
/// `dst`, else route toward `dst`. A "module" is any byte string starting with the wasm
/// magic (see [`native_module`]); its type is its SHA-256, as for real modules.
#[derive(Debug, Default)]
pub struct NativeForward {
    loaded: BTreeSet<CapsuleType>,
    /// Calls to [`Executor::load`] so far.
    pub loads: u32,
}

impl Executor for NativeForward {
    fn load(&mut self, code: &[u8]) -> Result<CapsuleType, LoadError> {
        self.loads += 1;
        if !code.starts_with(b"\0asm") {
            return Err(LoadError::Invalid("not wasm".into()));
        }
        let ty = CapsuleType(Sha256::digest(code).into());
        self.loaded.insert(ty);
        Ok(ty)
    }

    fn is_loaded(&self, ty: &CapsuleType) -> bool {
        self.loaded.contains(ty)
    }

    fn run(&mut self, e: &mut Box<Execution>) -> RunReport {
        if !self.loaded.contains(&e.capsule.capsule_type) {
            return RunReport {
                result: RunResult::NotLoaded,
                fuel_used: 0,
                nanos: None,
            };
        }
        let dst = e.capsule.dst;
        let code = if dst == e.node.address {
            e.deliver_to_app(0)
        } else {
            e.route_for_node(dst.0)
        };
        RunReport {
            result: RunResult::Returned(code.min(0)),
            fuel_used: 10,
            nanos: None,
        }
    }
}

/// A "module" of `len` bytes after the wasm header that [`NativeForward`] accepts; `salt`
/// makes different types.
pub fn native_module(len: usize, salt: u8) -> Vec<u8> {
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    m.extend((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt)));
    m
}
