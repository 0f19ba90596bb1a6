//! The sans-IO core of an ANTS node.
//!
//! - [`capsule`]: [`CapsuleState`], a capsule's mutable fields while it runs.
//! - [`host`]: the semantics of every host ABI function ([`Execution`]), over plain slices, so
//!   the wasmtime host functions and the SDK's native mock host behave identically.
//! - [`effects`]: what one execution asks the node to do ([`Effects`]: sends, deliveries, logs).
//! - [`node`]: [`Node`], the sans-IO state machine of one active node.
//! - [`rng`]: [`rng::SplitMix64`], the seeded generator capsules draw from.
//! - [`routing`]: [`Prefix`] and the longest-prefix-match [`RoutingTable`].
//! - [`context`]: [`NodeContext`], what a capsule sees of its node (also [`TestNode`], the
//!   in-memory node of tests and `ants capsule test`).
//! - [`code_cache`]: [`CodeCache`], verified modules by type, LRU by bytes.
//! - [`loader`]: [`CodeLoader`], demand code loading: fetch, verify and serve modules.
//! - [`executor`]: the [`Executor`] interface the node runs capsules through, with its
//!   outcome types ([`RunReport`], [`TrapReason`], [`LoadError`]).
//!
//! Nothing here reads a clock, opens a socket or spawns a thread: time and the random seed come
//! in from the driver.
#![forbid(unsafe_code)]

pub mod budget;
pub mod capsule;
pub mod code_cache;
pub mod context;
pub mod effects;
pub mod executor;
pub mod host;
pub mod loader;
pub mod native_forward;
pub mod node;
pub mod rng;
pub mod routing;

pub use ants_soft_store::SoftStore;
pub use budget::PeerBudgets;
pub use capsule::CapsuleState;
pub use code_cache::{CodeCache, CodeCacheCounters, ModuleTooLarge};
pub use context::{NodeContext, TestNode};
pub use effects::{Delivery, Effects, LogLine, Send};
pub use executor::{Executor, LoadError, RunReport, RunResult, TrapReason};
pub use host::{Execution, HostLimits, execute};
pub use loader::{
    Admit, CodeLoader, CodePolicy, CodeSource, FailReason, LoaderConfig, LoaderCounters,
    LoaderEvent, RefuseReason,
};
pub use native_forward::{NativeForward, native_module};
pub use node::{Node, NodeConfig};
pub use routing::{Prefix, RoutingTable};
