//! [`SimConfig`]: the root seed, the simulated compiler, restart semantics, routing, link
//! defaults and the template every node's `NodeConfig` starts from; and seed derivation.

use std::time::Duration;

use ants_core::NodeConfig;
use ants_core::rng::SplitMix64;
use ants_wire::Address;

use crate::link::LinkParams;
use crate::routing::RoutingMode;

/// How a simulation runs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Root seed: every link's loss/jitter generator, every node's capsule-visible `random`
    /// and every randomised app derive from it.
    pub seed: u64,
    /// Time between a node asking for a module to be compiled and the module being ready
    /// on that node (the shared executor really compiles each type once, off the clock).
    pub compile_delay: Duration,
    /// A restarted node gets back the modules it had compiled before it crashed (like
    /// `ants run` with a `code_cache_dir`); otherwise it starts with no code at all.
    pub keep_code_on_restart: bool,
    /// Each node runs capsules on its own wasm instances (their globals and memory kept
    /// between its runs, as on a real node) — or, `false`, every node on one instance per
    /// type (faster; right only for capsules that keep nothing between runs).
    pub instance_per_node: bool,
    /// How routes are computed.
    pub routing: RoutingMode,
    /// Parameters of every link not given its own.
    pub link: LinkParams,
    /// What every node is configured with; address, neighbours, routes and seed are set per
    /// node. [`SimConfig::default`] uses limits small enough for 100,000 nodes.
    pub node: NodeConfig<u32>,
    /// Deliveries kept for [`crate::Sim::take_deliveries`] (the oldest are dropped beyond;
    /// counters are kept regardless).
    pub delivery_log: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            compile_delay: Duration::from_millis(1),
            keep_code_on_restart: true,
            instance_per_node: true,
            routing: RoutingMode::Auto,
            link: LinkParams::default(),
            node: node_template(),
            delivery_log: 1 << 20,
        }
    }
}

/// The node defaults of `ants run`, with the tables that are allocated up front (the code
/// loader's serving LRUs) and the output queues made small: a simulated node talks only to
/// a few neighbours, and the simulator drains its queues after every input.
pub fn node_template() -> NodeConfig<u32> {
    let mut n = NodeConfig::new(Address::UNSPECIFIED);
    n.max_tx_datagrams = 1024;
    n.max_deliveries = 256;
    n.max_events = 256;
    n.max_protocols = 64;
    n.loader.max_serve_peers = 16;
    n.loader.max_authorizations = 256;
    n.loader.max_transmit_queue = 1024;
    // A scenario is trusted input: its capsules may carry any resource (a multicast tree's
    // data capsule needs a budget as large as the tree).
    n.max_resource = u16::MAX;
    n
}

/// Domains of derived seeds.
pub(crate) mod domain {
    /// Link generators.
    pub(crate) const LINK: u64 = 1;
    /// Node `random`.
    pub(crate) const NODE: u64 = 2;
    /// App plans (random destinations).
    pub(crate) const APP: u64 = 3;
    /// Topology generation.
    pub(crate) const TOPOLOGY: u64 = 4;
}

/// The seed of item `i` in `domain`, from the root seed (two SplitMix64 rounds, so nearby
/// roots and indices give unrelated seeds).
pub fn derive_seed(root: u64, domain: u64, i: u64) -> u64 {
    let mut a = SplitMix64::new(root ^ domain.wrapping_mul(0xA076_1D64_78BD_642F));
    let k = a.next_u64();
    SplitMix64::new(k ^ i.wrapping_mul(0xE703_7ED1_A0B4_28DB)).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_seeds_differ_by_domain_index_and_root() {
        let s = derive_seed(1, domain::LINK, 0);
        assert_eq!(s, derive_seed(1, domain::LINK, 0));
        assert_ne!(s, derive_seed(1, domain::LINK, 1));
        assert_ne!(s, derive_seed(1, domain::NODE, 0));
        assert_ne!(s, derive_seed(2, domain::LINK, 0));
    }
}
