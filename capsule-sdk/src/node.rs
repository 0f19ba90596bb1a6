//! The node the capsule is running on.

use core::time::Duration;

use ants_wire::Address;

use crate::error::{Result, check};
use crate::sys;

/// Handle to the node: its address, clock, random generator and routing table.
#[derive(Debug)]
pub struct Node {
    _private: (),
}

impl Node {
    pub(crate) fn new() -> Node {
        Node { _private: () }
    }

    /// This node's active address.
    pub fn address(&self) -> Address {
        let mut a = [0u8; 16];
        let _ = sys::node_address(&mut a);
        Address(a)
    }

    /// Node time since the Unix epoch (virtual time in simulation).
    pub fn time(&self) -> Duration {
        Duration::from_nanos(u64::try_from(sys::node_time()).unwrap_or(0))
    }

    /// Fill `buf` from the node's seeded generator (deterministic in simulation).
    pub fn fill_random(&self, buf: &mut [u8]) {
        let _ = sys::node_random(buf);
    }

    /// A random `u64` from the node's generator.
    pub fn random_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_random(&mut b);
        u64::from_le_bytes(b)
    }

    /// This node's neighbours: fills `buf` with up to `buf.len()` of them (in a stable order)
    /// and returns how many there are — more than `buf.len()` means `buf` was too small.
    pub fn neighbours(&self, buf: &mut [Address]) -> usize {
        let mut raw = [0u8; 16 * 32];
        let cap = buf.len().min(32);
        let n = check(sys::node_neighbours(&mut raw[..cap * 16])).map_or(0, |n| n as usize);
        for (slot, bytes) in buf.iter_mut().zip(raw.chunks_exact(16)).take(n.min(cap)) {
            let mut a = [0u8; 16];
            a.copy_from_slice(bytes);
            *slot = Address(a);
        }
        n
    }

    /// The next active hop toward `toward`, or [`crate::Error::NoRoute`].
    pub fn next_hop(&self, toward: Address) -> Result<Address> {
        let mut out = [0u8; 16];
        check(sys::next_hop(&toward.0, &mut out))?;
        Ok(Address(out))
    }
}
