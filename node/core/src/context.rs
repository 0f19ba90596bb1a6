//! [`NodeContext`]: what a capsule sees of its node — address, clock, seeded generator,
//! neighbours, routes, local apps and the soft-store.
//!
//! One concrete type serves every host: the [`Node`](crate::Node) keeps its context inside
//! its [`Execution`](crate::Execution), `ants capsule test` and the SDK's mock host use one
//! on its own ([`TestNode`] is the same type, built with test-friendly defaults by
//! [`NodeContext::new`]). Because it is owned data (no borrows), an execution can be moved
//! into a wasm store for the duration of a call and back — no raw pointers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ants_soft_store::{Config as StoreConfig, SoftStore};
use ants_wire::{Address, CapsuleType};

use crate::RoutingTable;
use crate::rng::SplitMix64;

/// The node as seen by capsule code.
#[derive(Debug)]
pub struct NodeContext {
    /// This node's active address.
    pub address: Address,
    /// Node time since the Unix epoch (monotonic on a real node; virtual in simulation).
    pub now: Duration,
    /// Neighbours' active addresses: each is its own next hop, and `node_neighbours` lists
    /// them in this (sorted) order.
    pub neighbours: BTreeSet<Address>,
    /// Destination prefix → next active hop.
    pub routes: RoutingTable<Address>,
    /// With no neighbour or route toward an address, treat it as a direct neighbour (test
    /// hosts only; a real node has no such default).
    pub direct_by_default: bool,
    /// Registered local app ids.
    pub apps: BTreeSet<u32>,
    /// Apps that accept deliveries only from some capsule types (apps absent here accept
    /// every type).
    pub app_accept: BTreeMap<u32, BTreeSet<CapsuleType>>,
    /// The soft-store, namespaced by capsule type.
    pub store: SoftStore<[u8; 32]>,
    rng: SplitMix64,
}

/// The in-memory node of `ants capsule test` and the SDK's mock host: a [`NodeContext`]
/// made by [`NodeContext::new`].
pub type TestNode = NodeContext;

impl Default for NodeContext {
    fn default() -> Self {
        NodeContext::bare(
            Address::UNSPECIFIED,
            0,
            SoftStore::new(StoreConfig::default()),
        )
    }
}

impl NodeContext {
    /// A test node at `address`: app 0 registered, every address a direct neighbour unless
    /// routed otherwise, a default store, seed `seed`, the clock at 2023-11-14.
    pub fn new(address: Address, seed: u64) -> NodeContext {
        let mut cx = NodeContext::bare(address, seed, SoftStore::new(StoreConfig::default()));
        cx.now = Duration::from_secs(1_700_000_000);
        cx.direct_by_default = true;
        cx.apps.insert(0);
        cx
    }

    /// A context with nothing registered or routed: what a [`Node`](crate::Node) starts from.
    pub fn bare(address: Address, seed: u64, store: SoftStore<[u8; 32]>) -> NodeContext {
        NodeContext {
            address,
            now: Duration::ZERO,
            neighbours: BTreeSet::new(),
            routes: RoutingTable::new(),
            direct_by_default: false,
            apps: BTreeSet::new(),
            app_accept: BTreeMap::new(),
            store,
            rng: SplitMix64::new(seed),
        }
    }

    /// Route `dst` (one address) via `via`.
    pub fn add_route(&mut self, dst: Address, via: Address) {
        self.routes.insert(crate::Prefix::host(dst), via);
    }

    /// Fill `out` from the seeded generator.
    pub fn fill_random(&mut self, out: &mut [u8]) {
        self.rng.fill(out);
    }

    /// The next active hop toward `toward`: a neighbour is its own next hop, then the
    /// longest matching route, then (test hosts) the address itself. Never this node.
    pub fn next_hop(&self, toward: &Address) -> Option<Address> {
        if *toward == self.address {
            return None;
        }
        if self.neighbours.contains(toward) {
            return Some(*toward);
        }
        self.routes
            .lookup(toward)
            .copied()
            .or(self.direct_by_default.then_some(*toward))
    }

    /// Whether capsules of type `ty` may be delivered to app `app`: it is registered and
    /// either accepts every type or listed `ty`.
    pub fn accepts(&self, app: u32, ty: &CapsuleType) -> bool {
        self.apps.contains(&app) && self.app_accept.get(&app).is_none_or(|set| set.contains(ty))
    }
}
