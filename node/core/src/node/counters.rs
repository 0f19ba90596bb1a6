//! Node and per-protocol counters. Every drop has a reason and a counter.

use std::collections::BTreeMap;

use ants_wire::CapsuleType;

/// Why a datagram or capsule was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DropReason {
    /// Not a valid ANTS message (bad magic, version, kind, lengths…).
    Malformed,
    /// Header + payload larger than the node's `max_capsule_bytes`.
    TooLarge,
    /// The code is loading and the pending queue is full (or the type is refused).
    PendingRefused,
    /// The code could not be loaded in time (timeout, nacks, mismatches, invalid module).
    CodeUnavailable,
    /// The capsule trapped.
    Trapped,
    /// `route_for_node` found no route.
    NoRoute,
    /// The resource budget was used up.
    ResourceExhausted,
    /// The next hop is not a configured neighbour (a route via a non-neighbour).
    NoNeighbour,
    /// The outgoing queue was full.
    TxQueueFull,
    /// The app delivery queue was full.
    DeliveryQueueFull,
    /// From a peer the node does not accept capsules or code messages from (`accept_from`).
    Stranger,
    /// The sending peer used up its execution (fuel) budget.
    PeerOverBudget,
    /// The sending peer's capsules of this type trapped too often and are quarantined.
    Quarantined,
}

impl DropReason {
    /// All reasons, for reports.
    pub const ALL: [DropReason; 13] = [
        DropReason::Malformed,
        DropReason::TooLarge,
        DropReason::PendingRefused,
        DropReason::CodeUnavailable,
        DropReason::Trapped,
        DropReason::NoRoute,
        DropReason::ResourceExhausted,
        DropReason::NoNeighbour,
        DropReason::TxQueueFull,
        DropReason::DeliveryQueueFull,
        DropReason::Stranger,
        DropReason::PeerOverBudget,
        DropReason::Quarantined,
    ];

    /// The reason's code in trace reports (docs/wire-format.md): its place in
    /// [`DropReason::ALL`], from 1.
    pub fn code(self) -> u8 {
        DropReason::ALL
            .iter()
            .position(|r| *r == self)
            .map_or(0, |i| i as u8 + 1)
    }

    /// The reason of a trace report's drop code.
    pub fn from_code(code: u8) -> Option<DropReason> {
        DropReason::ALL
            .get(usize::from(code).checked_sub(1)?)
            .copied()
    }

    /// Kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::TooLarge => "too-large",
            DropReason::PendingRefused => "pending-refused",
            DropReason::CodeUnavailable => "code-unavailable",
            DropReason::Trapped => "trapped",
            DropReason::NoRoute => "no-route",
            DropReason::ResourceExhausted => "resource-exhausted",
            DropReason::NoNeighbour => "no-neighbour",
            DropReason::TxQueueFull => "tx-queue-full",
            DropReason::DeliveryQueueFull => "delivery-queue-full",
            DropReason::Stranger => "stranger",
            DropReason::PeerOverBudget => "peer-over-budget",
            DropReason::Quarantined => "quarantined",
        }
    }
}

/// A histogram with power-of-two buckets: bucket 0 counts zeros, bucket `i` (1 to 30) the
/// values from `2^(i-1)` to `2^i - 1`, bucket 31 everything from `2^30` up. Recording is
/// a leading-zeros count, an increment and an add.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Log2Hist {
    /// Values counted per bucket.
    pub buckets: [u64; 32],
    /// The sum of the values (saturating).
    pub sum: u64,
}

impl Log2Hist {
    /// Count `value`.
    pub fn record(&mut self, value: u64) {
        let i = (64 - value.leading_zeros() as usize).min(31);
        self.buckets[i] += 1;
        self.sum = self.sum.saturating_add(value);
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The largest value bucket `i` holds (`u64::MAX` for the last).
    pub fn upper_bound(i: usize) -> u64 {
        match i {
            0 => 0,
            1..=30 => (1u64 << i) - 1,
            _ => u64::MAX,
        }
    }

    /// An upper bound of the `q` quantile (0 to 1): the top of the bucket it falls in;
    /// `None` if nothing was counted.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Self::upper_bound(i));
            }
        }
        Some(u64::MAX)
    }
}

impl std::ops::AddAssign for Log2Hist {
    fn add_assign(&mut self, other: Log2Hist) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
        self.sum = self.sum.saturating_add(other.sum);
    }
}

/// Counters of one protocol (capsule type) on this node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, derive_more::AddAssign)]
pub struct ProtocolCounters {
    /// Executions.
    pub runs: u64,
    /// Fuel consumed in total.
    pub fuel: u64,
    /// Executions that trapped.
    pub traps: u64,
    /// Executions whose entry returned non-zero.
    pub errors: u64,
    /// Copies sent.
    pub sent: u64,
    /// Deliveries to local apps.
    pub delivered: u64,
    /// Host calls refused by per-execution limits.
    pub limit_hits: u64,
    /// Executions stopped at the wall-clock deadline (also counted in `traps`).
    pub deadline_traps: u64,
    /// Deliveries refused by an app's accept list.
    pub app_refusals: u64,
    /// Times a peer's capsules of this type were quarantined (repeated traps).
    pub quarantines: u64,
    /// Capsules dropped unrun because their peer was quarantined for this type.
    pub quarantined: u64,
    /// Node time of the last run, ns since the Unix epoch (0: never). Each type runs on one
    /// worker, so summing workers' counters keeps it.
    pub last_run_ns: u64,
    /// Fuel per run.
    pub fuel_hist: Log2Hist,
    /// Wall time per run in nanoseconds, of the runs the executor timed (a sample).
    pub time_hist: Log2Hist,
}

/// Counters of the whole node.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct NodeCounters {
    /// Datagrams handed to the node.
    pub datagrams_in: u64,
    /// Capsules received (valid).
    pub capsules_in: u64,
    /// Capsules injected by local apps.
    pub injected: u64,
    /// Capsules held while their code loads.
    pub held: u64,
    /// Capsules run.
    pub runs: u64,
    /// Capsules sent (copies).
    pub sent: u64,
    /// Deliveries queued for apps.
    pub delivered: u64,
    /// Code-transfer messages received.
    pub code_messages_in: u64,
    /// Modules verified and handed to the compiler.
    pub modules_verified: u64,
    /// Modules compiled and installed.
    pub modules_installed: u64,
    /// Modules rejected by the executor.
    pub modules_rejected: u64,
    /// Capsules whose arriving resource was above `max_resource` and was lowered to it.
    pub resource_clamped: u64,
    /// Events (capsule log lines, traps, compile requests) dropped because the driver did
    /// not poll them fast enough.
    pub events_dropped: u64,
    /// Quarantines started (a peer's capsules of a type trapped too often).
    pub quarantines: u64,
    /// Drops by reason.
    pub drops: BTreeMap<DropReason, u64>,
}

impl NodeCounters {
    pub(crate) fn drop(&mut self, reason: DropReason, n: u64) {
        // Called per capsule with n = 0 most of the time: touch the map only for real drops.
        if n > 0 {
            *self.drops.entry(reason).or_default() += n;
        }
    }

    /// Add `other`'s counts (the workers of one node each count their own).
    pub fn add(&mut self, other: &NodeCounters) {
        // Destructured without `..`: a new field does not compile until it is summed here.
        let NodeCounters {
            datagrams_in,
            capsules_in,
            injected,
            held,
            runs,
            sent,
            delivered,
            code_messages_in,
            modules_verified,
            modules_installed,
            modules_rejected,
            resource_clamped,
            events_dropped,
            quarantines,
            drops,
        } = other;
        self.datagrams_in += datagrams_in;
        self.capsules_in += capsules_in;
        self.injected += injected;
        self.held += held;
        self.runs += runs;
        self.sent += sent;
        self.delivered += delivered;
        self.code_messages_in += code_messages_in;
        self.modules_verified += modules_verified;
        self.modules_installed += modules_installed;
        self.modules_rejected += modules_rejected;
        self.resource_clamped += resource_clamped;
        self.events_dropped += events_dropped;
        self.quarantines += quarantines;
        for (reason, n) in drops {
            self.drop(*reason, *n);
        }
    }

    /// Drops for one reason.
    pub fn drops_of(&self, reason: DropReason) -> u64 {
        self.drops.get(&reason).copied().unwrap_or(0)
    }
}

/// Per-protocol counters, bounded: past `max` protocols, new ones are folded into one
/// "other" bucket so a flood of random types cannot grow the map.
#[derive(Debug, Clone)]
pub struct ProtocolTable {
    by_type: BTreeMap<CapsuleType, ProtocolCounters>,
    other: ProtocolCounters,
    max: usize,
}

impl ProtocolTable {
    pub(crate) fn new(max: usize) -> Self {
        ProtocolTable {
            by_type: BTreeMap::new(),
            other: ProtocolCounters::default(),
            max,
        }
    }

    pub(crate) fn entry(&mut self, ty: CapsuleType) -> &mut ProtocolCounters {
        // One walk of the tree per capsule.
        if self.by_type.len() < self.max {
            return self.by_type.entry(ty).or_default();
        }
        match self.by_type.get_mut(&ty) {
            Some(c) => c,
            None => &mut self.other,
        }
    }

    /// Counters of `ty`, if tracked.
    pub fn get(&self, ty: &CapsuleType) -> Option<&ProtocolCounters> {
        self.by_type.get(ty)
    }

    /// Every tracked protocol, in type order.
    pub fn iter(&self) -> impl Iterator<Item = (&CapsuleType, &ProtocolCounters)> {
        self.by_type.iter()
    }

    /// The bucket of protocols past the table's bound.
    pub fn other(&self) -> &ProtocolCounters {
        &self.other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log2_buckets_and_quantiles() {
        let mut h = Log2Hist::default();
        for v in [0, 1, 2, 3, 4, 1000, 1 << 40] {
            h.record(v);
        }
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[1], 1);
        assert_eq!(h.buckets[2], 2, "2 and 3");
        assert_eq!(h.buckets[3], 1);
        assert_eq!(h.buckets[10], 1, "1000 is in 512..=1023");
        assert_eq!(h.buckets[31], 1);
        assert_eq!(h.count(), 7);
        assert_eq!(h.sum, 1010 + (1 << 40));
        assert_eq!(h.quantile(0.5), Some(3));
        assert_eq!(h.quantile(0.85), Some(1023));
        assert_eq!(h.quantile(1.0), Some(u64::MAX));
        assert_eq!(Log2Hist::default().quantile(0.5), None);
        let mut sum = h;
        sum += h;
        assert_eq!(sum.count(), 14);
    }
}
