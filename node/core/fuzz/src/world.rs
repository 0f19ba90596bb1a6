//! The fixed world a run plays in: peers, the capsule types and the modules peers hold.

use std::sync::{Arc, LazyLock};

use ants_wire::CapsuleType;
use ants_wire::code::CHUNK_LEN;
use sha2::{Digest, Sha256};

/// Peers `0..PEERS`; the first [`NEIGHBOURS`] are configured neighbours, the rest strangers.
pub const PEERS: u8 = 5;
/// Peers `0..NEIGHBOURS` are neighbours (answered without a `note_sent`).
pub const NEIGHBOURS: u8 = 2;
/// Number of capsule types.
pub const TYPES: usize = 4;
/// The type no module hashes to.
pub const GHOST: usize = 3;

/// Module lengths of the real types: three chunks, forty chunks (more than one default
/// window, more than the small preset's `max_module_bytes`), exactly one chunk.
const LENGTHS: [usize; GHOST] = [3000, 40_000, CHUNK_LEN];
/// Length of the ghost type's garbage "module".
const GARBAGE_LEN: usize = 2000;

struct World {
    types: [CapsuleType; TYPES],
    /// What an honest peer sends for each type (garbage for the ghost type).
    modules: [Arc<[u8]>; TYPES],
    /// What a lying peer sends: the module with its first byte flipped.
    lies: [Arc<[u8]>; TYPES],
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let bytes = |len: usize, seed: u8| -> Arc<[u8]> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    };
    let modules = [
        bytes(LENGTHS[0], 1),
        bytes(LENGTHS[1], 2),
        bytes(LENGTHS[2], 3),
        bytes(GARBAGE_LEN, 4),
    ];
    let mut types = modules
        .each_ref()
        .map(|m| CapsuleType(Sha256::digest(m).into()));
    types[GHOST] = CapsuleType([0xEE; 32]);
    let lies = modules.each_ref().map(|m| {
        let mut lie = m.to_vec();
        lie[0] ^= 0xFF;
        Arc::from(lie)
    });
    World {
        types,
        modules,
        lies,
    }
});

/// The capsule types: three with a real module, then the ghost type.
pub fn types() -> &'static [CapsuleType; TYPES] {
    &WORLD.types
}

/// Index of a type named by the input.
pub fn ty_index(ty: u8) -> usize {
    usize::from(ty) % TYPES
}

/// A peer named by the input.
pub fn peer(p: u8) -> u8 {
    p % PEERS
}

/// Index of `ty` in [`types`], if it is one of them.
pub fn index_of(ty: &CapsuleType) -> Option<usize> {
    WORLD.types.iter().position(|t| t == ty)
}

/// What an honest peer holds for type `i` (for the ghost type: bytes of the wrong hash).
pub fn module(i: usize) -> &'static Arc<[u8]> {
    &WORLD.modules[i]
}

/// What a lying peer sends for type `i`.
pub fn lie(i: usize) -> &'static Arc<[u8]> {
    &WORLD.lies[i]
}

/// Whether type `i` has a module whose SHA-256 is the type.
pub fn is_real(i: usize) -> bool {
    i != GHOST
}
