//! [`NodeConfig`]: what a node is configured with, and who may make it work ([`AcceptFrom`]).

use std::fmt;
use std::sync::Arc;

use ants_soft_store::Config as StoreConfig;
use ants_wire::Address;

use super::{QuarantineConfig, TraceConfig};
use crate::loader::LoaderConfig;
use crate::{HostLimits, Prefix};

/// Everything a node is configured with.
#[derive(Debug, Clone)]
pub struct NodeConfig<P> {
    /// This node's active address.
    pub address: Address,
    /// Neighbours: active address and underlay endpoint.
    pub neighbours: Vec<(Address, P)>,
    /// Static routes: destination prefix → next hop (must be a neighbour's address).
    pub routes: Vec<(Prefix, Address)>,
    /// Seed of the capsule-visible random generator.
    pub seed: u64,
    /// Per-execution host limits.
    pub host: HostLimits,
    /// Soft-store limits.
    pub store: StoreConfig,
    /// Code loading limits and policy.
    pub loader: LoaderConfig,
    /// Bytes of verified module code kept (LRU); this is what the node can serve.
    pub code_cache_bytes: usize,
    /// Largest header + payload accepted from the network or an app.
    pub max_capsule_bytes: usize,
    /// Outgoing datagrams queued between drains.
    pub max_tx_datagrams: usize,
    /// App deliveries queued between polls.
    pub max_deliveries: usize,
    /// Events queued between polls (capsule log lines beyond it are dropped and counted).
    pub max_events: usize,
    /// Protocols with their own counters (the rest share one bucket).
    pub max_protocols: usize,
    /// Whose datagrams the node looks at.
    pub accept_from: AcceptFrom<P>,
    /// Arriving (and injected) resource above this is lowered to it.
    pub max_resource: u16,
    /// Fuel each peer's capsules may burn per second (0: unlimited).
    pub peer_fuel_per_sec: u64,
    /// Burst of the per-peer fuel budget.
    pub peer_fuel_burst: u64,
    /// Peers with a fuel budget (least recently used forgotten).
    pub max_budget_peers: usize,
    /// The failure policy for repeated traps.
    pub quarantine: QuarantineConfig,
    /// Trace sampling and report limits.
    pub trace: TraceConfig,
}

/// Whose datagrams (capsules and code messages) a node accepts.
#[derive(Clone)]
pub enum AcceptFrom<P> {
    /// Only configured neighbours' endpoints (the default).
    Neighbours,
    /// Configured neighbours, and peers the predicate accepts (router mode: on-link hosts).
    NeighboursAnd(Arc<dyn Fn(&P) -> bool + Send + Sync>),
    /// Anyone.
    Any,
}

impl<P> fmt::Debug for AcceptFrom<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AcceptFrom::Neighbours => "Neighbours",
            AcceptFrom::NeighboursAnd(_) => "NeighboursAnd(..)",
            AcceptFrom::Any => "Any",
        })
    }
}

impl<P> NodeConfig<P> {
    /// Defaults for everything but the address.
    pub fn new(address: Address) -> Self {
        NodeConfig {
            address,
            neighbours: Vec::new(),
            routes: Vec::new(),
            seed: u64::from_be_bytes(address.0[8..].try_into().unwrap_or([0; 8])),
            host: HostLimits::default(),
            store: StoreConfig::default(),
            loader: LoaderConfig::default(),
            code_cache_bytes: 64 << 20,
            max_capsule_bytes: 16 << 10,
            max_tx_datagrams: 8192,
            max_deliveries: 4096,
            max_events: 4096,
            max_protocols: 1024,
            accept_from: AcceptFrom::Neighbours,
            max_resource: 64,
            peer_fuel_per_sec: 200_000_000,
            peer_fuel_burst: 20_000_000,
            max_budget_peers: 1024,
            quarantine: QuarantineConfig::default(),
            trace: TraceConfig::default(),
        }
    }
}
