//! A native mock host for unit-testing capsules with plain `cargo test`.
//!
//! Host calls made by the SDK on a native target land here and are answered by the node's own
//! implementation of the ABI ([`ants_core::Execution`]) over an in-memory
//! [`TestNode`] — same limits, same status codes, same soft-store as on a real node.
//!
//! ```
//! use ants_sdk::mock::MockHost;
//! use ants_sdk::{Ctx, Result};
//!
//! fn forward(cx: &mut Ctx) -> Result<()> {
//!     let dst = cx.capsule.dst();
//!     cx.capsule.route_for_node(dst)
//! }
//!
//! let mut host = MockHost::new("198.18.0.2".parse().unwrap());
//! host.capsule.dst = "198.18.0.9".parse().unwrap();
//! let out = host.run(forward);
//! assert_eq!(out.result, Ok(()));
//! assert_eq!(out.sends[0].next_hop, "198.18.0.9".parse().unwrap());
//! ```

use std::cell::RefCell;
use std::string::{String, ToString};
use std::vec::Vec;

pub use ants_core::{CapsuleState, HostLimits, TestNode};
use ants_core::{Effects, Execution};
use ants_wire::abi::LogLevel;
use ants_wire::{Address, CapsuleType};

use crate::{Ctx, Result};

/// An in-memory node plus the capsule to run on it.
#[derive(Debug)]
pub struct MockHost {
    /// The node: address, clock (`node.now`), routes, apps, soft-store.
    pub node: TestNode,
    /// The capsule the next [`MockHost::run`] processes. Defaults: type `[0xA5; 32]`,
    /// resource 64, all addresses `::`, empty header and payload.
    pub capsule: CapsuleState,
    /// Per-execution limits (defaults are the node's).
    pub limits: HostLimits,
    effects: Effects,
}

impl Default for MockHost {
    fn default() -> Self {
        MockHost::new(Address::UNSPECIFIED)
    }
}

/// A copy of the capsule sent by `route_for_node`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The address routed toward.
    pub toward: Address,
    /// The next hop the node chose.
    pub next_hop: Address,
    /// Resource budget of the copy.
    pub resource: u16,
    /// Destination of the copy.
    pub dst: Address,
    /// Protocol header of the copy.
    pub header: Vec<u8>,
    /// Payload of the copy.
    pub payload: Vec<u8>,
}

/// A copy of the capsule delivered to an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The app id.
    pub app: u32,
    /// Destination of the copy.
    pub dst: Address,
    /// Protocol header of the copy.
    pub header: Vec<u8>,
    /// Payload of the copy.
    pub payload: Vec<u8>,
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The handler's result.
    pub result: Result<()>,
    /// The entry's return code as the node would see it.
    pub code: i32,
    /// Copies sent, in order.
    pub sends: Vec<Sent>,
    /// Deliveries, in order.
    pub deliveries: Vec<Delivered>,
    /// Log lines, in order.
    pub logs: Vec<(LogLevel, String)>,
    /// Host calls refused by per-execution limits.
    pub limit_hits: u32,
}

std::thread_local! {
    /// The execution of the current [`MockHost::run`]: the host's node, capsule, limits and
    /// effects, moved in for the run and back after it.
    static CURRENT: RefCell<Option<Execution>> = const { RefCell::new(None) };
}

/// Run `f` against the mock host of the current [`MockHost::run`].
///
/// # Panics
/// If called outside [`MockHost::run`] — a test bug, not a host status.
pub(crate) fn with<R>(f: impl FnOnce(&mut Execution) -> R) -> R {
    CURRENT.with(|cell| {
        let mut guard = cell.borrow_mut();
        let Some(exec) = guard.as_mut() else {
            panic!("ants-sdk: host call outside MockHost::run (call your handler through it)");
        };
        f(exec)
    })
}

impl MockHost {
    /// A node at `address` (seed 1, app 0 registered, every address a direct neighbour).
    pub fn new(address: Address) -> MockHost {
        MockHost {
            node: TestNode::new(address, 1),
            capsule: CapsuleState {
                capsule_type: CapsuleType([0xA5; 32]),
                resource: 64,
                ..CapsuleState::default()
            },
            limits: HostLimits::default(),
            effects: Effects::default(),
        }
    }

    /// Run `handler` once on the current capsule. The capsule keeps the handler's changes
    /// (so the next run sees them); the store persists across runs.
    pub fn run(&mut self, handler: fn(&mut Ctx) -> Result<()>) -> Outcome {
        let mut exec = Execution {
            capsule: core::mem::take(&mut self.capsule),
            node: core::mem::take(&mut self.node),
            effects: core::mem::take(&mut self.effects),
            limits: self.limits,
        };
        exec.effects.begin(exec.capsule.resource);
        CURRENT.with(|c| *c.borrow_mut() = Some(exec));
        let code = crate::__run(handler);
        if let Some(mut back) = CURRENT.with(|c| c.borrow_mut().take()) {
            // What the node does after a run: settle the copies' shares of the budget.
            back.effects.settle_resources();
            self.capsule = back.capsule;
            self.node = back.node;
            self.effects = back.effects;
        }
        let result = match code {
            0 => Ok(()),
            _ => Err(self.error_for(code)),
        };
        self.outcome(result, code)
    }

    fn error_for(&self, code: i32) -> crate::Error {
        match code {
            -100 => crate::Error::BufferTooSmall { needed: 0 },
            -101 => crate::Error::Malformed,
            c if c > 0 => crate::Error::Protocol(u16::try_from(c).unwrap_or(u16::MAX)),
            c => crate::Error::from_status(c),
        }
    }

    fn outcome(&self, result: Result<()>, code: i32) -> Outcome {
        let e = &self.effects;
        Outcome {
            result,
            code,
            sends: e
                .sends
                .iter()
                .map(|s| Sent {
                    toward: s.toward,
                    next_hop: s.next_hop,
                    resource: s.resource,
                    dst: s.snapshot.dst,
                    header: e.header(&s.snapshot).to_vec(),
                    payload: e.payload(&s.snapshot).to_vec(),
                })
                .collect(),
            deliveries: e
                .deliveries
                .iter()
                .map(|d| Delivered {
                    app: d.app,
                    dst: d.snapshot.dst,
                    header: e.header(&d.snapshot).to_vec(),
                    payload: e.payload(&d.snapshot).to_vec(),
                })
                .collect(),
            logs: e
                .logs
                .iter()
                .map(|l| (l.level, e.log_text(l).to_string()))
                .collect(),
            limit_hits: e.limit_hits,
        }
    }

    /// The value stored under `key` in the capsule type's namespace, if live.
    pub fn store_get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let ns = self.capsule.capsule_type.0;
        let now = self.node.now;
        self.node.store.get(&ns, key, now).map(<[u8]>::to_vec)
    }
}

#[cfg(test)]
mod tests {
    use std::vec;
    use std::vec::Vec;

    use super::MockHost;
    use crate::{Address, Ctx, Result};

    fn flood(cx: &mut Ctx) -> Result<()> {
        let mut nbrs = [Address::UNSPECIFIED; 4];
        let n = cx.node.neighbours(&mut nbrs);
        let prev = cx.capsule.prev();
        for a in nbrs.iter().take(n.min(nbrs.len())).filter(|a| **a != prev) {
            cx.capsule.route_for_node(*a)?;
        }
        Ok(())
    }

    #[test]
    fn neighbours_drive_a_flood_except_back_to_prev() {
        let a = |s: &str| s.parse::<Address>().unwrap();
        let mut host = MockHost::new(a("198.18.0.2"));
        host.node
            .neighbours
            .extend([a("198.18.0.1"), a("198.18.0.3"), a("198.18.0.4")]);
        host.capsule.prev = a("198.18.0.1");
        let out = host.run(flood);
        assert_eq!(out.result, Ok(()));
        let to: Vec<_> = out.sends.iter().map(|s| s.next_hop).collect();
        assert_eq!(to, vec![a("198.18.0.3"), a("198.18.0.4")]);
    }
}
