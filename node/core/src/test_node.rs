//! [`TestNode`]: a node that exists only in memory, for `ants capsule test`, the SDK's mock
//! host and tests. Fixed address and clock (moved by the caller), a seeded generator,
//! explicit routes plus, by default, "every other address is a direct neighbour",
//! registered apps and a real soft-store.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ants_soft_store::{Config as StoreConfig, SoftStore};
use ants_wire::Address;

use crate::NodeEnv;
use crate::rng::SplitMix64;

/// A node that exists only in memory.
#[derive(Debug)]
pub struct TestNode {
    /// Its address.
    pub address: Address,
    /// Its clock (since the Unix epoch); fixed unless the caller moves it.
    pub now: Duration,
    /// Explicit routes: destination → next hop.
    pub routes: BTreeMap<Address, Address>,
    /// With no explicit route, treat the destination as a direct neighbour.
    pub direct_by_default: bool,
    /// Neighbours reported by `node_neighbours` (routing does not consult this).
    pub neighbours: BTreeSet<Address>,
    /// Registered app ids.
    pub apps: BTreeSet<u32>,
    /// The soft-store.
    pub store: SoftStore<[u8; 32]>,
    rng: SplitMix64,
}

impl TestNode {
    /// A node at `address` with app 0 registered, a default store and seed `seed`.
    pub fn new(address: Address, seed: u64) -> TestNode {
        TestNode {
            address,
            now: Duration::from_secs(1_700_000_000),
            routes: BTreeMap::new(),
            direct_by_default: true,
            neighbours: BTreeSet::new(),
            apps: BTreeSet::from([0]),
            store: SoftStore::new(StoreConfig::default()),
            rng: SplitMix64::new(seed),
        }
    }
}

impl NodeEnv for TestNode {
    fn address(&self) -> Address {
        self.address
    }
    fn now(&self) -> Duration {
        self.now
    }
    fn fill_random(&mut self, out: &mut [u8]) {
        self.rng.fill(out);
    }
    fn next_hop(&self, toward: &Address) -> Option<Address> {
        if *toward == self.address {
            return None;
        }
        self.routes
            .get(toward)
            .copied()
            .or(self.direct_by_default.then_some(*toward))
    }
    fn for_each_neighbour(&self, f: &mut dyn FnMut(Address)) {
        self.neighbours.iter().for_each(|a| f(*a));
    }

    fn has_app(&self, app: u32) -> bool {
        self.apps.contains(&app)
    }
    fn store(&mut self) -> &mut SoftStore<[u8; 32]> {
        &mut self.store
    }
}
