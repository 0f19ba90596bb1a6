//! Watchpoints: properties of the simulated network checked as it runs, after every input a
//! node handles. The first violation stops the run ([`crate::Sim::violation`]) with the
//! property, the virtual time, the node and the trace lines that led there.
//!
//! The properties are Rust predicates compiled in, named in a scenario's `[[watch]]`
//! entries (docs/simulation.md): checking them costs one comparison per delivery or per
//! node input, and none when a scenario has no watch. [`PathWatch`] (`store-path`) is a
//! property of the network's distributed state at one virtual time — what the nodes along
//! a route keep in their soft-stores — checked once, at that time.

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

/// The property names, as scenarios, node configs and command lines write them.
pub const PROPERTIES: &str = "\"no-duplicate-delivery\", \"max-held\", \"max-store-bytes\"";

/// What is wrong with a property as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// Not one of [`PROPERTIES`] (a scenario knows `store-path` too, and says so).
    #[error("unknown property {0:?} (known: {PROPERTIES})")]
    Unknown(String),
    /// A `limit` given to a property without one.
    #[error("takes no `limit`")]
    NoLimit,
    /// No `limit` for a property that needs one: the most of what a node may hold.
    #[error("needs `limit`, the most {0} a node may hold")]
    NeedsLimit(&'static str),
}

impl Watch {
    /// The property named `property` with `limit`, as a `[[watch]]` entry gives it (in a
    /// scenario or a node's config), or what is wrong with it.
    pub fn from_parts(property: &str, limit: Option<u64>) -> Result<Watch, WatchError> {
        let n = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        match (property, limit) {
            ("no-duplicate-delivery", None) => Ok(Watch::NoDuplicateDelivery),
            ("no-duplicate-delivery", Some(_)) => Err(WatchError::NoLimit),
            ("max-held", Some(v)) => Ok(Watch::MaxHeld(n(v))),
            ("max-held", None) => Err(WatchError::NeedsLimit("capsules")),
            ("max-store-bytes", Some(v)) => Ok(Watch::MaxStoreBytes(n(v))),
            ("max-store-bytes", None) => Err(WatchError::NeedsLimit("soft-store bytes")),
            (other, _) => Err(WatchError::Unknown(other.to_owned())),
        }
    }

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
        self.exceeded(node).then(|| self.detail(node))
    }

    /// Whether node `node` violates this property now: [`check_node`](Self::check_node)
    /// without building its message (for a caller that checks after every input).
    pub fn exceeded<P>(&self, node: &ants_core::Node<P>) -> bool
    where
        P: Copy + Eq + std::hash::Hash + Ord + std::fmt::Debug,
    {
        match *self {
            Watch::NoDuplicateDelivery => false,
            Watch::MaxHeld(limit) => node.held_capsules() > limit,
            Watch::MaxStoreBytes(limit) => node.store().bytes() > limit,
        }
    }

    fn detail<P>(&self, node: &ants_core::Node<P>) -> String
    where
        P: Copy + Eq + std::hash::Hash + Ord + std::fmt::Debug,
    {
        match *self {
            Watch::NoDuplicateDelivery => String::new(),
            Watch::MaxHeld(_) => {
                format!(
                    "{} capsules held waiting for their code",
                    node.held_capsules()
                )
            }
            Watch::MaxStoreBytes(_) => format!(
                "its soft-store holds {} bytes in {} entries",
                node.store().bytes(),
                node.store().len()
            ),
        }
    }
}

/// `no-duplicate-delivery`, `max-held=N` or `max-store-bytes=N` (command lines).
impl std::str::FromStr for Watch {
    type Err = String;

    fn from_str(s: &str) -> Result<Watch, String> {
        let (property, limit) = match s.split_once('=') {
            None => (s, None),
            Some((p, v)) => {
                let v = v.trim().parse::<u64>().map_err(|_| {
                    format!("{s}: the limit must be a whole number (capsules, or bytes)")
                })?;
                (p, Some(v))
            }
        };
        Watch::from_parts(property.trim(), limit).map_err(|e| match e {
            WatchError::NeedsLimit(_) => format!("{s}: {e}, as {s}=N"),
            e => format!("{s}: {e}"),
        })
    }
}

/// `store-path`: at virtual time `at`, every node on the route from each of `from` to `to`
/// (both ends included) keeps `key` in the soft-store of capsule type `ty` — e.g. every
/// subscriber of a multicast group has a branch toward the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathWatch {
    /// The namespace: the capsule type whose soft-store entries these are.
    pub ty: ants_wire::CapsuleType,
    /// The capsule's name in the scenario (for reports).
    pub capsule: String,
    /// The key.
    pub key: Vec<u8>,
    /// Where the routes start.
    pub from: Vec<u32>,
    /// Where they end.
    pub to: u32,
    /// When the property must hold.
    pub at: Duration,
}

impl PathWatch {
    /// The key, in hex.
    pub fn key_hex(&self) -> String {
        self.key.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The property as a report names it.
    pub fn describe(&self) -> String {
        let key = self.key_hex();
        format!(
            "store-path ({} key {key} on every route from {} node(s) to node {}, at {:?})",
            self.capsule,
            self.from.len(),
            self.to,
            self.at
        )
    }
}

/// The first violation of a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The property violated, as [`Watch::describe`] or [`PathWatch::describe`] names it.
    pub property: String,
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
    /// `property` violated at virtual time `now_ns` on `node`, with the trace's last lines.
    pub(crate) fn new(
        property: String,
        now_ns: u64,
        node: u32,
        detail: String,
        trace: &crate::trace::Trace,
    ) -> Violation {
        Violation {
            property,
            at: Duration::from_nanos(now_ns),
            node,
            detail,
            recent: trace.tail(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_parse_from_entries_and_command_lines_alike() {
        assert_eq!("max-held=3".parse(), Ok(Watch::MaxHeld(3)));
        assert_eq!(
            Watch::from_parts("max-held", Some(3)),
            Ok(Watch::MaxHeld(3))
        );
        assert_eq!(
            "no-duplicate-delivery".parse(),
            Ok(Watch::NoDuplicateDelivery)
        );
        assert_eq!(
            "max-store-bytes = 4096".parse(),
            Ok(Watch::MaxStoreBytes(4096))
        );
        let e = "max-held".parse::<Watch>().unwrap_err();
        assert!(
            e.contains("needs `limit`") && e.contains("max-held=N"),
            "{e}"
        );
        let e = "max-held=lots".parse::<Watch>().unwrap_err();
        assert!(e.contains("whole number"), "{e}");
        let e = "no-duplicate-delivery=2".parse::<Watch>().unwrap_err();
        assert!(e.contains("takes no `limit`"), "{e}");
        let e = "fast".parse::<Watch>().unwrap_err();
        assert!(
            e.contains("unknown property \"fast\"") && e.contains("max-held"),
            "{e}"
        );
    }
}
