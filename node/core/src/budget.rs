//! [`PeerBudgets`]: per-peer token buckets for work whose cost is known only afterwards.
//!
//! Used twice by the node: compile time (a stranger's module may take long to compile) and
//! execution fuel (a stranger's capsules may each burn a whole fuel budget). Each peer has a
//! bucket refilled at `rate` units per second up to `burst`; finished work is *charged*,
//! possibly into debt, and a peer in debt is refused new work until the bucket refills. So
//! no peer can take more than its rate of the node's time, however it shapes its traffic.
//! Buckets are kept for at most `max_peers` peers (least recently used evicted; an evicted
//! peer starts again with a full burst, which is bounded by the peers a node accepts at all).

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::time::Duration;

use lru::LruCache;

/// One peer's bucket; negative = in debt.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: i128,
    last: Duration,
}

/// Per-peer buckets of some unit (nanoseconds of compile, units of fuel).
pub struct PeerBudgets<P> {
    buckets: LruCache<P, Bucket>,
    rate: u64,
    burst: u64,
}

impl<P> std::fmt::Debug for PeerBudgets<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The number of peers is `len()` (it needs `P: Hash + Eq`).
        f.debug_struct("PeerBudgets")
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

impl<P: Hash + Eq + Copy> PeerBudgets<P> {
    /// Buckets of `burst` units refilled at `rate` units per second, for at most `max_peers`
    /// peers. A `rate` of 0 disables the budget: everything is allowed and nothing kept.
    pub fn new(rate: u64, burst: u64, max_peers: usize) -> Self {
        PeerBudgets {
            buckets: LruCache::new(NonZeroUsize::new(max_peers).unwrap_or(NonZeroUsize::MIN)),
            rate,
            burst,
        }
    }

    /// Change the rate and burst; buckets keep their balance (capped at the new burst when
    /// they next refill).
    pub fn set_rate(&mut self, rate: u64, burst: u64) {
        self.rate = rate;
        self.burst = burst;
    }

    /// Whether the budget is enforced at all.
    pub fn is_enabled(&self) -> bool {
        self.rate > 0
    }

    fn refill(rate: u64, burst: u64, b: &mut Bucket, now: Duration) {
        let elapsed = now.saturating_sub(b.last);
        // `elapsed × rate / 1e9` without a 128-bit division (a libcall on every capsule):
        // whole seconds, then the nanoseconds, which fit in 64 bits for rates below 2^34
        // per second; the exact 128-bit form otherwise.
        let (secs, nanos) = (
            u128::from(elapsed.as_secs()),
            u64::from(elapsed.subsec_nanos()),
        );
        let part = match nanos.checked_mul(rate) {
            Some(v) => u128::from(v / 1_000_000_000),
            None => u128::from(nanos) * u128::from(rate) / 1_000_000_000,
        };
        let earned = secs * u128::from(rate) + part;
        let earned = i128::try_from(earned).unwrap_or(i128::MAX);
        b.tokens = b.tokens.saturating_add(earned).min(i128::from(burst));
        b.last = b.last.max(now);
    }

    /// Whether `peer` may start new work at `now` (its bucket is not in debt).
    pub fn allows(&self, now: Duration, peer: P) -> bool {
        if !self.is_enabled() {
            return true;
        }
        let Some(b) = self.buckets.peek(&peer) else {
            return true;
        };
        let mut b = *b;
        Self::refill(self.rate, self.burst, &mut b, now);
        b.tokens > 0
    }

    /// Charge `units` of finished work to `peer`. Returns whether another peer's bucket was
    /// evicted to make room.
    pub fn charge(&mut self, now: Duration, peer: P, units: u64) -> bool {
        if !self.is_enabled() {
            return false;
        }
        let (rate, burst) = (self.rate, self.burst);
        if let Some(b) = self.buckets.get_mut(&peer) {
            Self::refill(rate, burst, b, now);
            b.tokens -= i128::from(units);
            return false;
        }
        let fresh = Bucket {
            tokens: i128::from(burst) - i128::from(units),
            last: now,
        };
        self.buckets.push(peer, fresh).is_some()
    }

    /// Peers with a bucket.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// `true` if no peer has a bucket.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn debt_blocks_until_refilled() {
        // 100 units per second, burst 200.
        let mut b = PeerBudgets::new(100, 200, 16);
        assert!(b.allows(MS, 1u8));
        b.charge(MS, 1, 300); // 200 - 300 = 100 in debt
        assert!(!b.allows(MS, 1));
        assert!(b.allows(MS, 2), "another peer has its own budget");
        assert!(
            !b.allows(1000 * MS, 1),
            "999 ms earn 99.9 units: still in debt"
        );
        assert!(b.allows(1012 * MS, 1));
    }

    #[test]
    fn refills_are_exact_across_seconds_and_huge_rates() {
        for (rate, elapsed) in [
            (1_000_000u64, Duration::from_nanos(1_500_000_001)),
            (7, Duration::from_millis(2_999)),
            (u64::MAX, Duration::from_nanos(999_999_999)),
            (
                1 << 40,
                Duration::from_secs(3) + Duration::from_nanos(123_456_789),
            ),
        ] {
            let mut b = Bucket {
                tokens: -(1 << 100),
                last: Duration::ZERO,
            };
            PeerBudgets::<u8>::refill(rate, u64::MAX, &mut b, elapsed);
            let want = elapsed.as_nanos() * u128::from(rate) / 1_000_000_000;
            assert_eq!(
                b.tokens,
                -(1i128 << 100) + want as i128,
                "{rate}/s for {elapsed:?}"
            );
        }
    }

    #[test]
    fn table_is_bounded_and_zero_rate_disables() {
        let mut b = PeerBudgets::new(1, 10, 2);
        assert!(!b.charge(MS, 1u8, 1));
        assert!(!b.charge(MS, 2, 1));
        assert!(b.charge(MS, 3, 1));
        assert_eq!(b.len(), 2);
        let mut off = PeerBudgets::new(0, 0, 2);
        off.charge(MS, 1u8, u64::MAX);
        assert!(off.allows(MS, 1) && off.is_empty());
    }
}
