//! Random call sequences over three namespaces and small bounds, checked after every step
//! against the store's invariants and against a naive model (a `Vec` in recency order).

use proptest::prelude::*;

use super::*;

const NAMESPACES: [u8; 3] = [0, 1, 2];

fn config() -> Config {
    Config {
        max_bytes: 400,
        namespace_quota: 200,
        max_key_len: 2,
        max_value_len: 32,
        max_ttl: Duration::from_secs(12),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Get(u8, Vec<u8>),
    Put(u8, Vec<u8>, Vec<u8>, u64),
    Refresh(u8, Vec<u8>, u64),
    Remove(u8, Vec<u8>),
    Expire,
}

/// An op and how far the caller's clock moves before it, in seconds (may step back).
fn step() -> impl Strategy<Value = (i64, Op)> {
    let ns = 0..3u8;
    // Keys of 0..=3 bytes over a 3-letter alphabet: collisions are frequent, and 3-byte keys
    // are over the limit.
    let key = || prop::collection::vec(0..3u8, 0..=3);
    let ttl = 0..20u64;
    let op = prop_oneof![
        3 => (ns.clone(), key()).prop_map(|(n, k)| Op::Get(n, k)),
        4 => (ns.clone(), key(), prop::collection::vec(any::<u8>(), 0..=40), ttl.clone())
            .prop_map(|(n, k, v, t)| Op::Put(n, k, v, t)),
        1 => (ns.clone(), key(), ttl).prop_map(|(n, k, t)| Op::Refresh(n, k, t)),
        1 => (ns, key()).prop_map(|(n, k)| Op::Remove(n, k)),
        1 => Just(Op::Expire),
    ];
    (-1..4i64, op)
}

#[derive(Debug, Clone)]
struct ModelEntry {
    ns: u8,
    key: Vec<u8>,
    value: Vec<u8>,
    expires_at: Duration,
}

/// The store's contract, written the slow and obvious way. `entries[0]` is the least
/// recently used.
#[derive(Debug)]
struct Model {
    config: Config,
    latest: Duration,
    entries: Vec<ModelEntry>,
}

impl Model {
    fn advance(&mut self, now: Duration) -> Duration {
        self.latest = self.latest.max(now);
        self.latest
    }

    fn find(&self, ns: u8, key: &[u8]) -> Option<usize> {
        self.entries.iter().position(|e| e.ns == ns && e.key == key)
    }

    fn cost(e: &ModelEntry) -> usize {
        e.key.len() + e.value.len() + crate::ENTRY_OVERHEAD
    }

    fn bytes(&self) -> usize {
        self.entries.iter().map(Self::cost).sum()
    }

    fn ns_bytes(&self, ns: u8) -> usize {
        self.entries
            .iter()
            .filter(|e| e.ns == ns)
            .map(Self::cost)
            .sum()
    }

    fn get(&mut self, ns: u8, key: &[u8], now: Duration) -> Option<Vec<u8>> {
        let now = self.advance(now);
        let i = self.find(ns, key)?;
        let e = self.entries.remove(i);
        if e.expires_at <= now {
            return None;
        }
        let value = e.value.clone();
        self.entries.push(e);
        Some(value)
    }

    fn put(
        &mut self,
        ns: u8,
        key: &[u8],
        value: &[u8],
        ttl: Duration,
        now: Duration,
    ) -> Result<PutOutcome, PutError> {
        let now = self.advance(now);
        self.expire(now);
        let c = self.config;
        if key.len() > c.max_key_len {
            return Err(PutError::KeyTooLong {
                len: key.len(),
                max: c.max_key_len,
            });
        }
        if value.len() > c.max_value_len {
            return Err(PutError::ValueTooLong {
                len: value.len(),
                max: c.max_value_len,
            });
        }
        let ttl = ttl.min(c.max_ttl);
        if ttl.is_zero() {
            return Err(PutError::ZeroTtl);
        }
        let new = ModelEntry {
            ns,
            key: key.to_vec(),
            value: value.to_vec(),
            expires_at: now + ttl,
        };
        let cost = Self::cost(&new);
        if cost > c.max_bytes {
            return Err(PutError::TooLarge {
                needed: cost,
                max: c.max_bytes,
            });
        }
        let old = self.find(ns, key);
        let old_cost = old.map_or(0, |i| Self::cost(&self.entries[i]));
        let needed = self.ns_bytes(ns) - old_cost + cost;
        if needed > c.namespace_quota {
            return Err(PutError::QuotaExceeded {
                needed,
                quota: c.namespace_quota,
            });
        }
        if let Some(i) = old {
            self.entries.remove(i);
        }
        let mut evicted = 0;
        while self.bytes() + cost > c.max_bytes {
            self.entries.remove(0);
            evicted += 1;
        }
        self.entries.push(new);
        Ok(PutOutcome {
            replaced: old.is_some(),
            evicted,
        })
    }

    fn refresh(&mut self, ns: u8, key: &[u8], ttl: Duration, now: Duration) -> bool {
        let now = self.advance(now);
        let ttl = ttl.min(self.config.max_ttl);
        if ttl.is_zero() {
            return false;
        }
        let Some(i) = self.find(ns, key) else {
            return false;
        };
        let mut e = self.entries.remove(i);
        if e.expires_at <= now {
            return false;
        }
        e.expires_at = now + ttl;
        self.entries.push(e);
        true
    }

    fn remove(&mut self, ns: u8, key: &[u8]) -> bool {
        let Some(i) = self.find(ns, key) else {
            return false;
        };
        self.entries.remove(i).expires_at > self.latest
    }

    fn expire(&mut self, now: Duration) -> usize {
        let now = self.advance(now);
        let before = self.entries.len();
        self.entries.retain(|e| e.expires_at > now);
        before - self.entries.len()
    }

    fn live(&self, ns: u8) -> Vec<(Vec<u8>, Vec<u8>, Duration)> {
        let mut live: Vec<_> = self
            .entries
            .iter()
            .filter(|e| e.ns == ns && e.expires_at > self.latest)
            .map(|e| (e.key.clone(), e.value.clone(), e.expires_at))
            .collect();
        live.sort();
        live
    }
}

fn check_invariants(s: &SoftStore<u8>, m: &Model) -> Result<(), TestCaseError> {
    let sum: usize = NAMESPACES.iter().map(|ns| s.namespace_bytes(ns)).sum();
    prop_assert_eq!(s.bytes(), sum);
    prop_assert!(s.bytes() <= s.config().max_bytes);
    for ns in NAMESPACES {
        prop_assert!(s.namespace_bytes(&ns) <= s.config().namespace_quota);
        let got: Vec<_> = s
            .entries(&ns)
            .iter()
            .map(|e| (e.key.to_vec(), e.value.to_vec(), e.expires_at))
            .collect();
        prop_assert_eq!(got, m.live(ns));
        prop_assert_eq!(s.namespace_bytes(&ns), m.ns_bytes(ns));
    }
    prop_assert_eq!(s.len(), m.entries.len());
    prop_assert_eq!(s.bytes(), m.bytes());
    prop_assert_eq!(s.expirations.len(), s.len());
    prop_assert_eq!(
        s.next_expiry(),
        m.entries.iter().map(|e| e.expires_at).min()
    );
    Ok(())
}

proptest! {
    #[test]
    fn random_calls_keep_the_invariants_and_match_the_model(
        steps in prop::collection::vec(step(), 1..120),
    ) {
        let mut s = SoftStore::<u8>::new(config());
        let mut m = Model { config: config(), latest: Duration::ZERO, entries: Vec::new() };
        let mut clock: u64 = 0;
        let (mut gets, mut stored) = (0u64, 0u64);
        for (dt, op) in steps {
            clock = clock.saturating_add_signed(dt);
            let now = Duration::from_secs(clock);
            match op {
                Op::Get(ns, key) => {
                    gets += 1;
                    let got = s.get(&ns, &key, now).map(<[u8]>::to_vec);
                    if got.is_some() {
                        let view = s.entries(&ns).into_iter().find(|e| e.key == key);
                        prop_assert!(view.is_some_and(|e| e.expires_at > now));
                    }
                    prop_assert_eq!(got, m.get(ns, &key, now));
                }
                Op::Put(ns, key, value, ttl) => {
                    let ttl = Duration::from_secs(ttl);
                    let put = s.put(&ns, &key, &value, ttl, now);
                    stored += u64::from(put.is_ok());
                    prop_assert_eq!(put, m.put(ns, &key, &value, ttl, now));
                }
                Op::Refresh(ns, key, ttl) => {
                    let ttl = Duration::from_secs(ttl);
                    prop_assert_eq!(s.refresh(&ns, &key, ttl, now), m.refresh(ns, &key, ttl, now));
                }
                Op::Remove(ns, key) => {
                    prop_assert_eq!(s.remove(&ns, &key), m.remove(ns, &key));
                }
                Op::Expire => prop_assert_eq!(s.expire(now), m.expire(now)),
            }
            check_invariants(&s, &m)?;
        }
        let c = s.counters();
        prop_assert_eq!(c.hits + c.misses, gets);
        prop_assert_eq!(c.inserts + c.replacements, stored);
    }
}
