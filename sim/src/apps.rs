//! Scripted apps: what they send ([`SendPlan`], with [`Template`]s for header and payload)
//! and what they saw ([`AppStats`], [`Delivered`]).

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::Duration;

use ants_core::rng::SplitMix64;
use ants_wire::{Address, CapsuleType};
use serde::Serialize;

/// One piece of a header or payload template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// Literal bytes.
    Bytes(Vec<u8>),
    /// The send's sequence number (0 for an app's first capsule of this plan), big-endian
    /// in this many bytes (1, 2, 4 or 8).
    Seq(u8),
}

/// Bytes built per send from [`Field`]s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template(pub Vec<Field>);

impl Template {
    /// A template of fixed bytes.
    pub fn bytes(b: impl Into<Vec<u8>>) -> Template {
        Template(vec![Field::Bytes(b.into())])
    }

    /// Write the bytes for sequence number `seq` into `out` (cleared first).
    pub fn render(&self, seq: u64, out: &mut Vec<u8>) {
        out.clear();
        for f in &self.0 {
            match f {
                Field::Bytes(b) => out.extend_from_slice(b),
                Field::Seq(w) => {
                    let be = seq.to_be_bytes();
                    let w = usize::from(*w).min(8);
                    out.extend_from_slice(&be[8 - w..]);
                }
            }
        }
    }
}

/// Where an app's capsules go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dst {
    /// This address.
    Address(Address),
    /// A different node, uniformly at random for each send (seeded).
    RandomNode,
}

/// When the app hands its module to its node along with a capsule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CodeHandover {
    /// With the first capsule the node accepts, and again after every restart of the node
    /// (it may have lost the code) — what a well-behaved app does.
    #[default]
    Auto,
    /// Never: the node must already have the code.
    Never,
}

/// An app that injects capsules: `count` of them, one every `interval`, from a start time
/// given when it is scheduled, stopping at `until`.
#[derive(Debug, Clone)]
pub struct SendPlan {
    /// Node the app runs on.
    pub node: u32,
    /// Its app id.
    pub app: u32,
    /// Protocol.
    pub ty: CapsuleType,
    /// The module (handed over per [`CodeHandover`]).
    pub code: Option<Arc<[u8]>>,
    /// When to hand it over.
    pub handover: CodeHandover,
    /// Destination.
    pub dst: Dst,
    /// Resource budget.
    pub resource: u16,
    /// Protocol header.
    pub header: Template,
    /// Payload.
    pub payload: Template,
    /// How many capsules in all.
    pub count: u64,
    /// Gap between capsules.
    pub interval: Duration,
    /// No sends at or after this time.
    pub until: Option<Duration>,
    pub(crate) sent: u64,
    pub(crate) rng: SplitMix64,
    /// The node's epoch when the module was last handed over.
    pub(crate) handed: Option<u32>,
}

impl SendPlan {
    /// One capsule from `node`'s app `app` to `dst`, with empty header and payload.
    pub fn once(
        node: u32,
        app: u32,
        ty: CapsuleType,
        code: Option<Arc<[u8]>>,
        dst: Address,
    ) -> SendPlan {
        SendPlan {
            node,
            app,
            ty,
            code,
            handover: CodeHandover::Auto,
            dst: Dst::Address(dst),
            resource: 64,
            header: Template::default(),
            payload: Template::default(),
            count: 1,
            interval: Duration::ZERO,
            until: None,
            sent: 0,
            rng: SplitMix64::new(0),
            handed: None,
        }
    }

    /// Capsules sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }
}

/// Payloads whose duplicates are tracked per app; past this the app's `distinct` and
/// `duplicates` stop counting (see [`AppStats::untracked`]).
pub const MAX_TRACKED_PAYLOADS: usize = 1 << 16;

/// What one app (node, app id) did and received.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AppStats {
    /// Capsules the node accepted from it.
    pub injected: u64,
    /// Capsules the node refused (or its node was down).
    pub inject_errors: u64,
    /// Deliveries to it.
    pub delivered: u64,
    /// Deliveries with a payload it had not received before.
    pub distinct: u64,
    /// Deliveries with a payload it had already received.
    pub duplicates: u64,
    /// Deliveries not checked for duplicates (over [`MAX_TRACKED_PAYLOADS`]).
    pub untracked: u64,
    /// First delivery, ns of virtual time.
    pub first_ns: Option<u64>,
    /// Last delivery, ns of virtual time.
    pub last_ns: Option<u64>,
    /// Payload hashes seen (never iterated: order cannot reach an output).
    #[serde(skip)]
    seen: HashSet<u64, BuildHasherDefault<Premixed>>,
}

/// The keys of `AppStats::seen` are already FNV-1a hashes: use them as they are.
#[derive(Debug, Clone, Copy, Default)]
struct Premixed(u64);

impl Hasher for Premixed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

impl AppStats {
    /// Count a delivery of `payload` at `t`; `true` if it is a duplicate.
    pub fn delivered(&mut self, t: u64, payload: &[u8]) -> bool {
        self.delivered += 1;
        self.first_ns.get_or_insert(t);
        self.last_ns = Some(t);
        let h = fnv1a(payload);
        if self.seen.contains(&h) {
            self.duplicates += 1;
            return true;
        } else if self.seen.len() < MAX_TRACKED_PAYLOADS {
            self.seen.insert(h);
            self.distinct += 1;
        } else {
            self.untracked += 1;
        }
        false
    }
}

/// A capsule delivered to an app, as kept in the delivery log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Node.
    pub node: u32,
    /// App id.
    pub app: u32,
    /// Virtual time of the delivery.
    pub at: Duration,
    /// The capsule, wire-encoded (parse with `ants_wire::CapsuleRepr::parse`).
    pub capsule: Vec<u8>,
}

fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Pick a node other than `me` among `n` (`me` itself when it is alone).
pub(crate) fn random_other(rng: &mut SplitMix64, me: u32, n: u32) -> u32 {
    if n <= 1 {
        return me;
    }
    let j = (rng.next_u64() % u64::from(n - 1)) as u32;
    if j >= me { j + 1 } else { j }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_sequence_numbers_big_endian() {
        let t = Template(vec![Field::Bytes(vec![2, 0]), Field::Seq(4), Field::Seq(1)]);
        let mut out = Vec::new();
        t.render(0x0102_0304_0506, &mut out);
        assert_eq!(out, vec![2, 0, 3, 4, 5, 6, 6]);
    }

    #[test]
    fn duplicates_are_counted_per_payload() {
        let mut s = AppStats::default();
        for p in [&b"a"[..], b"b", b"a"] {
            s.delivered(1, p);
        }
        assert_eq!((s.delivered, s.distinct, s.duplicates), (3, 2, 1));
    }

    #[test]
    fn random_destinations_are_never_the_sender() {
        let mut r = SplitMix64::new(1);
        for _ in 0..1000 {
            let j = random_other(&mut r, 3, 5);
            assert!(j < 5 && j != 3);
        }
        assert_eq!(random_other(&mut r, 0, 1), 0);
    }
}
