//! Echo capsule: travels to dst and back to src, counting hops
