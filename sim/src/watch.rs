//! Watchpoints: properties of the simulated network checked as it runs, after every input a
//! node handles. The first violation stops the run ([`crate::Sim::violation`]) with the
//! property, the virtual time, the node and the trace lines that led there.
//!
//! The properties are Rust predicates compiled in, named in a scenario's `[[watch]]`
//! entries (docs/simulation.md): checking them costs one comparison per delivery or per
//! node input, and none when a scenario has no watch.

use std::time::Duration;

/// One property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// `no-duplicate-delivery`: no app receives the same payload twice.
    NoDuplicateDelivery,
    /// `max-held` with `limit`: no node holds more than `limit` capsules waiting for their
    /// code.
    MaxHeld(usize),
    /// `max-store-bytes` with `limit`: no node's soft-store holds more than `limit` bytes
    /// (keys and values, every protocol's).
    MaxStoreBytes(usize),
}

impl Watch {
    /// The property as a scenario writes it.
    pub fn describe(&self) -> String {
        match self {
            Watch::NoDuplicateDelivery => "no-duplicate-delivery".into(),
            Watch::MaxHeld(n) => format!("max-held (limit {n})"),
            Watch::MaxStoreBytes(n) => format!("max-store-bytes (limit {n})"),
        }
    }

    /// What `no-duplicate-delivery` reports when app `app` receives a payload of `len` bytes
    /// it received before.
    pub fn duplicate_detail(app: u32, len: usize) -> String {
        format!("app {app} received a payload it had received before ({len} bytes)")
    }

    /// What node `node` shows that violates this property now, if anything (the properties
    /// of one node's state; `no-duplicate-delivery` is checked where deliveries are made).
    pub fn check_node<P>(&self, node: &ants_core::Node<P>) -> Option<String>
    where
        P: Copy + Eq + std::hash::Hash + Ord + std::fmt::Debug,
    {
        match *self {
            Watch::NoDuplicateDelivery => None,
            Watch::MaxHeld(limit) => {
                let held = node.loader_occupancy().held;
                (held > limit).then(|| format!("{held} capsules held waiting for their code"))
            }
            Watch::MaxStoreBytes(limit) => {
                let bytes = node.store().bytes();
                (bytes > limit).then(|| {
                    format!(
                        "its soft-store holds {bytes} bytes in {} entries",
                        node.store().len()
                    )
                })
            }
        }
    }
}

/// The first violation of a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The property violated.
    pub watch: Watch,
    /// Virtual time.
    pub at: Duration,
    /// The node where it showed.
    pub node: u32,
    /// What was seen.
    pub detail: String,
    /// The last trace lines before it (oldest first).
    pub recent: Vec<String>,
}

impl Violation {
    /// `watch` violated at virtual time `now_ns` on `node`, with the trace's last lines.
    pub(crate) fn new(
        watch: Watch,
        now_ns: u64,
        node: u32,
        detail: String,
        trace: &crate::trace::Trace,
    ) -> Violation {
        Violation {
            watch,
            at: Duration::from_nanos(now_ns),
            node,
            detail,
            recent: trace.tail(),
        }
    }
}
