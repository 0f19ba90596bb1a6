//! A token bucket for ICMP errors (RFC 1812 §4.3.2.8), on the caller's clock.
//!
//! Integer arithmetic in nano-tokens: `rate` tokens per second add `rate` nano-tokens per
//! nanosecond, so no division and no float. A clock that steps back adds nothing.

use std::time::Duration;

const ONE: u128 = 1_000_000_000;

/// Rate limiter: starts full.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate_per_sec: u128,
    cap: u128,
    tokens: u128,
    last: Option<Duration>,
}

impl TokenBucket {
    pub(crate) fn new(rate_per_sec: u32, burst: u32) -> Self {
        let cap = u128::from(burst) * ONE;
        TokenBucket {
            rate_per_sec: u128::from(rate_per_sec),
            cap,
            tokens: cap,
            last: None,
        }
    }

    /// Take one token at `now`; `false` if the bucket is empty.
    pub(crate) fn take(&mut self, now: Duration) -> bool {
        if let Some(last) = self.last {
            let elapsed = now.saturating_sub(last).as_nanos();
            self.tokens = self
                .tokens
                .saturating_add(elapsed.saturating_mul(self.rate_per_sec))
                .min(self.cap);
        }
        if self.last.is_none_or(|l| now > l) {
            self.last = Some(now);
        }
        if self.tokens >= ONE {
            self.tokens -= ONE;
            true
        } else {
            false
        }
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
        let mut b = TokenBucket::new(10, 3);
        let t = ms(1000);
        assert!(b.take(t) && b.take(t) && b.take(t));
        assert!(!b.take(t));
        assert!(!b.take(t + ms(99)));
        assert!(b.take(t + ms(100))); // 10/s: one every 100 ms
        assert!(!b.take(t + ms(100)));
        // A long pause refills to the burst, not beyond.
        let later = t + ms(60_000);
        assert!(b.take(later) && b.take(later) && b.take(later));
        assert!(!b.take(later));
    }

    #[test]
    fn zero_burst_never_sends_and_time_going_back_adds_nothing() {
        let mut b = TokenBucket::new(1000, 0);
        assert!(!b.take(ms(0)));
        assert!(!b.take(ms(5000)));
        let mut b = TokenBucket::new(1, 1);
        assert!(b.take(ms(10_000)));
        assert!(!b.take(ms(0)));
        assert!(!b.take(ms(10_500)));
        assert!(b.take(ms(11_000)));
    }

    #[test]
    fn huge_values_do_not_overflow() {
        let mut b = TokenBucket::new(u32::MAX, u32::MAX);
        assert!(b.take(Duration::ZERO));
        assert!(b.take(Duration::MAX));
        assert!(b.take(Duration::MAX));
    }
}
