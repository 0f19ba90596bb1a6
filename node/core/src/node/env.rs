//! What a capsule sees of its node: address, clock, seeded generator, routes, apps and the
//! soft-store. Kept apart from the rest of [`super::Node`] so an execution can borrow it
//! mutably while the node's capsule buffers are borrowed too.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ants_soft_store::SoftStore;
use ants_wire::Address;

use crate::rng::SplitMix64;
use crate::{NodeEnv, RoutingTable};

/// The node as seen by capsule code.
#[derive(Debug)]
pub(crate) struct Env<P> {
    pub(crate) address: Address,
    pub(crate) now: Duration,
    rng: SplitMix64,
    /// Neighbour active address → underlay endpoint.
    pub(crate) neighbours: BTreeMap<Address, P>,
    /// Destination prefix → next active hop (a neighbour).
    pub(crate) routes: RoutingTable<Address>,
    pub(crate) apps: BTreeSet<u32>,
    pub(crate) store: SoftStore<[u8; 32]>,
}

impl<P> Env<P> {
    pub(crate) fn new(address: Address, seed: u64, store: SoftStore<[u8; 32]>) -> Self {
        Env {
            address,
            now: Duration::ZERO,
            rng: SplitMix64::new(seed),
            neighbours: BTreeMap::new(),
            routes: RoutingTable::new(),
            apps: BTreeSet::new(),
            store,
        }
    }
}

impl<P> NodeEnv for Env<P> {
    fn address(&self) -> Address {
        self.address
    }

    fn now(&self) -> Duration {
        self.now
    }

    fn fill_random(&mut self, out: &mut [u8]) {
        self.rng.fill(out);
    }

    /// A neighbour is its own next hop; otherwise the longest matching route. Never ourselves.
    fn next_hop(&self, toward: &Address) -> Option<Address> {
        if *toward == self.address {
            return None;
        }
        if self.neighbours.contains_key(toward) {
            return Some(*toward);
        }
        self.routes.lookup(toward).copied()
    }

    fn for_each_neighbour(&self, f: &mut dyn FnMut(Address)) {
        self.neighbours.keys().for_each(|a| f(*a));
    }

    fn has_app(&self, app: u32) -> bool {
        self.apps.contains(&app)
    }

    fn store(&mut self) -> &mut SoftStore<[u8; 32]> {
        &mut self.store
    }
}
