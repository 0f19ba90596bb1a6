//! [`TtlSet`]: a bounded set of keys that expire, with a time-ordered index so expiry is
//! `O(expired)` and needs no background task (the mini-redis `db.rs` pattern). Used for the
//! negative cache (types) and for distrust ((peer, type) pairs).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Keys with an expiry time; at most `capacity` of them.
#[derive(Debug)]
pub(super) struct TtlSet<K> {
    expires: BTreeMap<K, Duration>,
    by_time: BTreeSet<(Duration, K)>,
    capacity: usize,
}

impl<K: Ord + Copy> TtlSet<K> {
    pub(super) fn new(capacity: usize) -> Self {
        TtlSet {
            expires: BTreeMap::new(),
            by_time: BTreeSet::new(),
            capacity,
        }
    }

    /// Insert or extend `key` until `expires`. Returns whether an entry was evicted to make
    /// room (the one expiring soonest; call [`TtlSet::expire`] first so that it is a live
    /// one). With capacity 0 nothing is stored.
    pub(super) fn insert(&mut self, key: K, expires: Duration) -> bool {
        if let Some(old) = self.expires.remove(&key) {
            self.by_time.remove(&(old, key));
        }
        if self.capacity == 0 {
            return false;
        }
        let mut evicted = false;
        if self.expires.len() >= self.capacity
            && let Some((_, victim)) = self.by_time.pop_first()
        {
            self.expires.remove(&victim);
            evicted = true;
        }
        self.expires.insert(key, expires);
        self.by_time.insert((expires, key));
        evicted
    }

    /// Whether `key` is present and not expired at `now`.
    pub(super) fn contains(&self, key: &K, now: Duration) -> bool {
        self.expires.get(key).is_some_and(|&t| t > now)
    }

    /// Drop every entry expired at `now`.
    pub(super) fn expire(&mut self, now: Duration) {
        while let Some(&(t, key)) = self.by_time.first() {
            if t > now {
                break;
            }
            self.by_time.pop_first();
            self.expires.remove(&key);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.expires.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn entries_expire_at_their_time() {
        let mut s = TtlSet::new(4);
        s.insert(1u8, ms(10));
        s.insert(2u8, ms(20));
        assert!(s.contains(&1, ms(9)) && !s.contains(&1, ms(10)));
        s.expire(ms(15));
        assert_eq!(s.len(), 1);
        assert!(s.contains(&2, ms(15)));
    }

    #[test]
    fn reinsert_extends() {
        let mut s = TtlSet::new(4);
        s.insert(1u8, ms(10));
        s.insert(1u8, ms(30));
        s.expire(ms(20));
        assert!(s.contains(&1, ms(20)));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn full_set_evicts_soonest_expiring() {
        let mut s = TtlSet::new(2);
        assert!(!s.insert(1u8, ms(30)));
        assert!(!s.insert(2u8, ms(10)));
        assert!(s.insert(3u8, ms(20)));
        assert!(!s.contains(&2, ms(0)));
        assert!(s.contains(&1, ms(0)) && s.contains(&3, ms(0)));
        let mut zero = TtlSet::new(0);
        assert!(!zero.insert(1u8, ms(5)));
        assert_eq!(zero.len(), 0);
    }
}
