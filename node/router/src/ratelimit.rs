//! Rate limits for the ICMP errors the router sends (RFC 1812 §4.3.2.8), on the caller's clock.
//!
//! - [`Rate`] + [`Tokens`]: a token bucket split into its parameters and its state, so a table
//!   of buckets stores only the state;
//! - [`IcmpLimiter`]: one bucket per error class ([`IcmpClass`]) and one per source address
//!   (the source of the packet that caused the error, i.e. who the error goes to) in an LRU
//!   table. An error is sent only if both its class bucket and its source bucket have a
//!   token, and then both pay one.
//!
//! Why two dimensions (Linux splits it the same way: `icmp_msgs_per_sec` for the host,
//! `icmp_ratelimit` per peer): with one global bucket a single host sending 100 TTL=1 packets a
//! second starved everyone's errors, including the "fragmentation needed" that path-MTU
//! discovery depends on. Per-class buckets keep a time-exceeded flood from touching the
//! fragmentation-needed budget; per-source buckets keep one source from spending what
//! another source's errors need.
//!
//! Integer arithmetic in nano-tokens: `rate` tokens per second add `rate` nano-tokens per
//! nanosecond, so no division and no float. A clock that steps back adds nothing.

use std::num::NonZeroUsize;
use std::time::Duration;

use lru::LruCache;

use crate::config::RouterLimits;

const ONE: u128 = 1_000_000_000;

/// A bucket's parameters: refill per second and depth, in nano-tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rate {
    per_sec: u128,
    cap: u128,
}

impl Rate {
    pub(crate) fn new(per_sec: u32, burst: u32) -> Self {
        Rate {
            per_sec: u128::from(per_sec),
            cap: u128::from(burst) * ONE,
        }
    }
}

/// A bucket's state. Starts full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tokens {
    nano: u128,
    last: Option<Duration>,
}

impl Tokens {
    pub(crate) fn full(rate: Rate) -> Self {
        Tokens {
            nano: rate.cap,
            last: None,
        }
    }

    /// Add what `rate` earned since the last refill, up to the depth.
    pub(crate) fn refill(&mut self, rate: Rate, now: Duration) {
        if let Some(last) = self.last {
            let elapsed = now.saturating_sub(last).as_nanos();
            self.nano = self
                .nano
                .saturating_add(elapsed.saturating_mul(rate.per_sec))
                .min(rate.cap);
        }
        if self.last.is_none_or(|l| now > l) {
            self.last = Some(now);
        }
    }

    /// At least one whole token.
    pub(crate) fn ready(&self) -> bool {
        self.nano >= ONE
    }

    /// Take one token (nothing if there is none: callers check [`ready`](Self::ready)).
    pub(crate) fn spend(&mut self) {
        self.nano = self.nano.saturating_sub(ONE);
    }

    /// Refill, then take one token if there is one.
    #[cfg(test)]
    pub(crate) fn take(&mut self, rate: Rate, now: Duration) -> bool {
        self.refill(rate, now);
        let ok = self.ready();
        if ok {
            self.spend();
        }
        ok
    }
}

/// The rate-limit classes of ICMP errors, each with its own bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IcmpClass {
    /// Time exceeded (TTL ≤ 1 in transit): what traceroute and TTL floods produce.
    TimeExceeded,
    /// Destination unreachable: net, host, protocol, port.
    Unreachable,
    /// Destination unreachable, fragmentation needed: path-MTU discovery needs these, so no
    /// other kind of error may use up their budget.
    FragNeeded,
}

/// Why [`IcmpLimiter::allow`] said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limited {
    /// The source's bucket is empty (checked first: a flooding source is blamed, and its
    /// refused errors cost the class bucket nothing).
    Source,
    /// The class bucket is empty.
    Class(IcmpClass),
}

/// The outcome of [`IcmpLimiter::allow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    /// `None`: send (both buckets paid); otherwise which bucket refused (neither paid).
    pub(crate) limited: Option<Limited>,
    /// A new source's bucket pushed the least recently used one out of the full table.
    pub(crate) evicted_source: bool,
}

/// Per-class and per-source ICMP error buckets. See the module docs.
#[derive(Debug)]
pub(crate) struct IcmpLimiter {
    class_rate: Rate,
    time_exceeded: Tokens,
    unreachable: Tokens,
    frag_needed: Tokens,
    source_rate: Rate,
    /// Source address → its bucket; bounded by `icmp_source_entries`, least recently used
    /// evicted (an evicted source that comes back starts with a full bucket, so churn can
    /// only ever be more generous to sources; the class buckets still bound the total).
    sources: LruCache<u32, Tokens>,
}

impl IcmpLimiter {
    pub(crate) fn new(l: &RouterLimits) -> Self {
        let class_rate = Rate::new(l.icmp_per_sec, l.icmp_burst);
        let source_rate = Rate::new(l.icmp_source_per_sec, l.icmp_source_burst);
        IcmpLimiter {
            class_rate,
            time_exceeded: Tokens::full(class_rate),
            unreachable: Tokens::full(class_rate),
            frag_needed: Tokens::full(class_rate),
            source_rate,
            sources: LruCache::new(
                NonZeroUsize::new(l.icmp_source_entries).unwrap_or(NonZeroUsize::MIN),
            ),
        }
    }

    /// May an error of `class` go to `source` at `now`? If so both buckets pay one token.
    ///
    /// A source seen for the first time gets a bucket only when its error is allowed, so a
    /// flood that an empty class bucket refuses anyway does not churn the source table.
    pub(crate) fn allow(&mut self, now: Duration, class: IcmpClass, source: u32) -> Decision {
        let class_rate = self.class_rate;
        let bucket = match class {
            IcmpClass::TimeExceeded => &mut self.time_exceeded,
            IcmpClass::Unreachable => &mut self.unreachable,
            IcmpClass::FragNeeded => &mut self.frag_needed,
        };
        bucket.refill(class_rate, now);
        let mut decision = Decision {
            limited: None,
            evicted_source: false,
        };
        if let Some(src) = self.sources.get_mut(&source) {
            src.refill(self.source_rate, now);
            if !src.ready() {
                decision.limited = Some(Limited::Source);
            } else if !bucket.ready() {
                decision.limited = Some(Limited::Class(class));
            } else {
                src.spend();
                bucket.spend();
            }
            return decision;
        }
        let mut fresh = Tokens::full(self.source_rate);
        fresh.refill(self.source_rate, now);
        if !fresh.ready() {
            // A zero source burst: nobody is ever sent anything; nothing worth remembering.
            decision.limited = Some(Limited::Source);
        } else if !bucket.ready() {
            decision.limited = Some(Limited::Class(class));
        } else {
            fresh.spend();
            bucket.spend();
            decision.evicted_source = self
                .sources
                .push(source, fresh)
                .is_some_and(|(old, _)| old != source);
        }
        decision
    }

    /// Sources with a bucket.
    pub(crate) fn sources_len(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn burst_then_rate() {
        let r = Rate::new(10, 3);
        let mut b = Tokens::full(r);
        let t = ms(1000);
        assert!(b.take(r, t) && b.take(r, t) && b.take(r, t));
        assert!(!b.take(r, t));
        assert!(!b.take(r, t + ms(99)));
        assert!(b.take(r, t + ms(100))); // 10/s: one every 100 ms
        assert!(!b.take(r, t + ms(100)));
        // A long pause refills to the burst, not beyond.
        let later = t + ms(60_000);
        assert!(b.take(r, later) && b.take(r, later) && b.take(r, later));
        assert!(!b.take(r, later));
    }

    #[test]
    fn zero_burst_never_sends_and_time_going_back_adds_nothing() {
        let r = Rate::new(1000, 0);
        let mut b = Tokens::full(r);
        assert!(!b.take(r, ms(0)));
        assert!(!b.take(r, ms(5000)));
        let r = Rate::new(1, 1);
        let mut b = Tokens::full(r);
        assert!(b.take(r, ms(10_000)));
        assert!(!b.take(r, ms(0)));
        assert!(!b.take(r, ms(10_500)));
        assert!(b.take(r, ms(11_000)));
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let r = Rate::new(u32::MAX, u32::MAX);
        let mut b = Tokens::full(r);
        assert!(b.take(r, Duration::ZERO));
        assert!(b.take(r, Duration::MAX));
        assert!(b.take(r, Duration::MAX));
        let mut empty = Tokens::full(Rate::new(0, 0));
        empty.spend();
        assert!(!empty.ready(), "spending from nothing stays at nothing");
    }

    fn limiter(class: (u32, u32), source: (u32, u32), entries: usize) -> IcmpLimiter {
        IcmpLimiter::new(&RouterLimits {
            icmp_per_sec: class.0,
            icmp_burst: class.1,
            icmp_source_per_sec: source.0,
            icmp_source_burst: source.1,
            icmp_source_entries: entries,
            ..RouterLimits::default()
        })
    }

    const SENT: Decision = Decision {
        limited: None,
        evicted_source: false,
    };

    fn refused(l: Limited) -> Decision {
        Decision {
            limited: Some(l),
            evicted_source: false,
        }
    }

    #[test]
    fn a_flooding_source_is_blamed_and_costs_the_class_bucket_nothing() {
        let mut l = limiter((0, 3), (0, 2), 8);
        let (a, b) = (1, 2);
        let now = ms(0);
        assert_eq!(l.allow(now, IcmpClass::TimeExceeded, a), SENT);
        assert_eq!(l.allow(now, IcmpClass::TimeExceeded, a), SENT);
        for _ in 0..100 {
            assert_eq!(
                l.allow(now, IcmpClass::TimeExceeded, a),
                refused(Limited::Source)
            );
        }
        // The class bucket gave a's two and has one left, for b.
        assert_eq!(l.allow(now, IcmpClass::TimeExceeded, b), SENT);
        assert_eq!(
            l.allow(now, IcmpClass::TimeExceeded, b),
            refused(Limited::Class(IcmpClass::TimeExceeded))
        );
        // b's source bucket was not charged for the refusal: one token left for its PMTU.
        assert_eq!(l.allow(now, IcmpClass::FragNeeded, b), SENT);
        assert_eq!(
            l.allow(now, IcmpClass::FragNeeded, b),
            refused(Limited::Source)
        );
    }

    #[test]
    fn classes_have_separate_buckets() {
        let mut l = limiter((0, 2), (0, 100), 8);
        let now = ms(0);
        for src in 0..2 {
            assert_eq!(l.allow(now, IcmpClass::TimeExceeded, src), SENT);
        }
        assert_eq!(
            l.allow(now, IcmpClass::TimeExceeded, 9),
            refused(Limited::Class(IcmpClass::TimeExceeded))
        );
        assert_eq!(l.sources_len(), 2, "a refused new source gets no bucket");
        for class in [IcmpClass::Unreachable, IcmpClass::FragNeeded] {
            assert_eq!(l.allow(now, class, 9), SENT);
            assert_eq!(l.allow(now, class, 9), SENT);
            assert_eq!(
                l.allow(now, class, 9),
                refused(Limited::Class(class)),
                "{class:?}"
            );
        }
    }

    #[test]
    fn source_table_is_lru_bounded_and_counts_evictions() {
        let mut l = limiter((1000, 1000), (1, 1), 3);
        let now = ms(0);
        for src in 0..3 {
            assert_eq!(l.allow(now, IcmpClass::Unreachable, src), SENT);
        }
        // Touch 0 so 1 is the least recently used.
        assert_eq!(
            l.allow(now, IcmpClass::Unreachable, 0),
            refused(Limited::Source)
        );
        let d = l.allow(now, IcmpClass::Unreachable, 7);
        assert_eq!((d.limited, d.evicted_source), (None, true));
        assert_eq!(l.sources_len(), 3);
        assert_eq!(
            l.allow(now, IcmpClass::Unreachable, 0),
            refused(Limited::Source),
            "0 kept its (empty) bucket"
        );
        // 1 was evicted and starts afresh.
        let d = l.allow(now, IcmpClass::Unreachable, 1);
        assert_eq!((d.limited, d.evicted_source), (None, true));
        // Refills at the source rate.
        assert_eq!(l.allow(ms(1000), IcmpClass::Unreachable, 0), SENT);
    }

    #[test]
    fn zero_source_burst_sends_nothing_and_remembers_nobody() {
        let mut l = limiter((1000, 1000), (1000, 0), 3);
        assert_eq!(
            l.allow(ms(5), IcmpClass::FragNeeded, 1),
            refused(Limited::Source)
        );
        assert_eq!(l.sources_len(), 0);
    }
}
