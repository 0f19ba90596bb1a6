//! A deterministic discrete-event network simulator for ANTS: the very same
//! `ants_core::Node` that runs on real hosts, thousands of times over, with capsule code
//! run by one shared [`ants_core::Executor`] (the wasmtime one in `ants sim`).
//!
//! - [`sim`]: [`Sim`], the event loop: virtual time from 0, an event heap ordered by
//!   `(time, tie)`, nodes fed and drained like a real driver does.
//! - [`event`]: the [`EventQueue`].
//! - [`link`]: [`LinkParams`] (latency, jitter, loss, bandwidth, queue) and link state.
//! - [`topology`]: [`Topology`] (explicit, line, ring, grid, tree, random graph) and the
//!   node ↔ address mapping.
//! - [`routing`]: small per-node route tables computed from the topology.
//! - [`exec`]: [`SharedExecutor`] (compile once per type) and the per-node view that keeps
//!   demand loading real.
//! - [`apps`]: scripted apps ([`SendPlan`]) and what they received ([`AppStats`]).
//! - `actions`: scheduled [`Action`]s — sends, crashes, restarts, partitions, repairs;
//!   `drain`: a node's outputs after each input, as a real driver takes them.
//! - [`parallel`]: one run on several threads (`Sim::run_parallel`), the same run event
//!   for event: partitions, link latency as lookahead, traces merged by event key.
//! - [`trace`]: the JSON-lines event trace and its SHA-256.
//! - [`scenario`]: TOML scenario files → a ready [`Sim`]; [`report`]: the results.
//! - [`config`]: [`SimConfig`] and seed derivation.
//!
//! Determinism: everything derives from [`SimConfig::seed`] (links, node `random`, random
//! apps, random topologies) through [`config::derive_seed`]; ties in time are broken by who
//! caused the event and in what order ([`event::tie`]); maps whose order reaches an output
//! are `BTreeMap`s. Same scenario and
//! seed ⇒ the same trace, byte for byte (see `docs/simulation.md`).

mod actions;
pub mod apps;
pub mod config;
mod drain;
pub mod event;
pub mod exec;
pub mod link;
pub mod parallel;
pub mod report;
pub mod routing;
pub mod scenario;
pub mod sim;
pub mod topology;
pub mod trace;
pub mod watch;

#[cfg(test)]
mod resource_bound;
#[cfg(test)]
mod tests;

pub use apps::{AppStats, CodeHandover, Delivered, Dst, Field, SendPlan, Template};
pub use config::SimConfig;
pub use event::EventQueue;
pub use exec::SharedExecutor;
pub use link::{LinkDrop, LinkParams};
pub use parallel::Obstacle;
pub use report::Report;
pub use scenario::{Scenario, ScenarioError};
pub use sim::{Action, InjectFailure, NetStats, Sim};
pub use topology::{Topology, node_address, node_of};
pub use trace::Trace;
pub use watch::{Violation, Watch, WatchError};
