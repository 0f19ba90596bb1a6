//! Random call sequences over three namespaces and small bounds, checked after every step
//! against the store's invariants, against a naive model (a `Vec` in recency order), and
//! against the isolation contract: a namespace's entries go only through its own calls or
//! expiry.

use std::collections::BTreeMap;
use std::ops::Range;

use proptest::prelude::*;

use super::*;

const NAMESPACES: [u8; 3] = [0, 1, 2];

/// Three namespaces' quotas (600) add up to more than the store (400), so both bounds bite.
fn config() -> Config {
    Config {
        max_bytes: 400,
        namespace_quota: 200,
        max_key_len: 2,
        max_value_len: 32,
        max_ttl: Duration::from_secs(12),
    }
}

/// One namespace may fill the whole store: the setting of the cross-namespace eviction
/// finding, where only the store-wide bound stands between a flood and the other namespaces.
fn flood_config() -> Config {
    Config {
        namespace_quota: 400,
        ..config()
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

/// An op and how far the caller's clock moves before it, in seconds (`dt`; may step back). A
/// `dt` of `-1..4` lets entries expire often; `-1..2` keeps them long enough to fill the store.
fn step(dt: Range<i64>) -> impl Strategy<Value = (i64, Op)> {
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
    (dt, op)
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
        let own = self.ns_bytes(ns);
        let needed = own - old_cost + cost;
        if needed > c.namespace_quota {
            return Err(PutError::QuotaExceeded {
                needed,
                quota: c.namespace_quota,
            });
        }
        let available = c.max_bytes.saturating_sub(self.bytes() - own);
        if cost > available {
            return Err(PutError::StoreFull {
                needed: cost,
                available,
            });
        }
        if let Some(i) = old {
            self.entries.remove(i);
        }
        // The namespace's own least recently used entry: the first of its entries in the
        // global recency order, since every use moves an entry to the end of both.
        let mut evicted = 0;
        while self.bytes() + cost > c.max_bytes {
            let i = self.entries.iter().position(|e| e.ns == ns);
            prop_assert_ok(
                i.is_some(),
                "the StoreFull check guarantees own entries suffice",
            );
            self.entries.remove(i.unwrap_or(0));
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

/// A model bug, reported as a panic (the model runs inside proptest, which catches it).
fn prop_assert_ok(ok: bool, what: &str) {
    assert!(ok, "model: {what}");
}

/// What the caller can see of every namespace: `(ns, key) -> (value, expires_at)`, live ones
/// only (as of the latest `now` seen).
type Snapshot = BTreeMap<(u8, Vec<u8>), (Vec<u8>, Duration)>;

fn snapshot(s: &SoftStore<u8>) -> Snapshot {
    NAMESPACES
        .iter()
        .flat_map(|&ns| {
            s.entries(&ns)
                .into_iter()
                .map(move |e| ((ns, e.key.to_vec()), (e.value.to_vec(), e.expires_at)))
        })
        .collect()
}

/// The isolation contract, checked on the store alone (not through the model): between two
/// snapshots around `op`, an entry still live at the store's clock may disappear or change
/// only through `op` itself in the entry's own namespace — a removal of that key, a refresh
/// or replacement of that key, or an eviction by a successful `put` of that namespace, as many
/// as the `put` reports. Nothing appears except what a successful `put` stored.
fn check_isolation(
    before: &Snapshot,
    after: &Snapshot,
    op: &Op,
    put: Option<&Result<PutOutcome, PutError>>,
    refreshed: bool,
    clock: Duration,
) -> Result<(), TestCaseError> {
    let (op_ns, op_key) = match op {
        Op::Get(ns, key) | Op::Put(ns, key, ..) | Op::Refresh(ns, key, _) | Op::Remove(ns, key) => {
            (Some(*ns), key.as_slice())
        }
        Op::Expire => (None, &[][..]),
    };
    let stored = matches!(put, Some(Ok(_)));
    let mut own_evicted = 0;
    for (at, (value, expires_at)) in before {
        if *expires_at <= clock {
            continue; // expiry, allowed for any namespace
        }
        let (ns, key) = at;
        let this_key = Some(*ns) == op_ns && key.as_slice() == op_key;
        match after.get(at) {
            Some(now) if now == &(value.clone(), *expires_at) => {}
            Some(_) => prop_assert!(
                this_key && (stored || refreshed),
                "{at:?} changed by {op:?}"
            ),
            None if this_key && matches!(op, Op::Remove(..)) => {}
            None => {
                prop_assert!(
                    Some(*ns) == op_ns && stored && !this_key,
                    "{at:?} lost to {op:?} ({put:?})"
                );
                own_evicted += 1;
            }
        }
    }
    for at in after.keys() {
        if !before.contains_key(at) {
            prop_assert!(
                stored && Some(at.0) == op_ns && at.1.as_slice() == op_key,
                "{at:?} appeared with {op:?}"
            );
        }
    }
    if let Some(Ok(out)) = put {
        prop_assert_eq!(
            out.evicted,
            own_evicted,
            "evicted reports the own entries lost"
        );
    }
    Ok(())
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

/// Runs `steps` against a store and the model, checking everything after every step.
fn run(config: Config, steps: Vec<(i64, Op)>) -> Result<(), TestCaseError> {
    let mut s = SoftStore::<u8>::new(config);
    let mut m = Model {
        config,
        latest: Duration::ZERO,
        entries: Vec::new(),
    };
    let mut clock: u64 = 0;
    let (mut gets, mut stored, mut full) = (0u64, 0u64, 0u64);
    for (dt, op) in steps {
        clock = clock.saturating_add_signed(dt);
        let now = Duration::from_secs(clock);
        let before = snapshot(&s);
        let (mut put, mut refreshed) = (None, false);
        match &op {
            Op::Get(ns, key) => {
                gets += 1;
                let got = s.get(ns, key, now).map(<[u8]>::to_vec);
                if got.is_some() {
                    let view = s.entries(ns).into_iter().find(|e| e.key == key.as_slice());
                    prop_assert!(view.is_some_and(|e| e.expires_at > now));
                }
                prop_assert_eq!(got, m.get(*ns, key, now));
            }
            Op::Put(ns, key, value, ttl) => {
                let ttl = Duration::from_secs(*ttl);
                let got = s.put(ns, key, value, ttl, now);
                stored += u64::from(got.is_ok());
                full += u64::from(matches!(got, Err(PutError::StoreFull { .. })));
                prop_assert_eq!(&got, &m.put(*ns, key, value, ttl, now));
                put = Some(got);
            }
            Op::Refresh(ns, key, ttl) => {
                let ttl = Duration::from_secs(*ttl);
                refreshed = s.refresh(ns, key, ttl, now);
                prop_assert_eq!(refreshed, m.refresh(*ns, key, ttl, now));
            }
            Op::Remove(ns, key) => {
                prop_assert_eq!(s.remove(ns, key), m.remove(*ns, key));
            }
            Op::Expire => prop_assert_eq!(s.expire(now), m.expire(now)),
        }
        check_invariants(&s, &m)?;
        check_isolation(
            &before,
            &snapshot(&s),
            &op,
            put.as_ref(),
            refreshed,
            s.latest,
        )?;
    }
    let c = s.counters();
    prop_assert_eq!(c.hits + c.misses, gets);
    prop_assert_eq!(c.inserts + c.replacements, stored);
    prop_assert_eq!(c.store_full_refusals, full);
    Ok(())
}

proptest! {
    #[test]
    fn random_calls_keep_the_invariants_and_match_the_model(
        steps in prop::collection::vec(step(-1..4), 1..120),
    ) {
        run(config(), steps)?;
    }

    #[test]
    fn a_full_store_never_costs_a_namespace_entries_it_did_not_give_up(
        config in prop_oneof![Just(config()), Just(flood_config())],
        steps in prop::collection::vec(step(-1..2), 1..200),
    ) {
        run(config, steps)?;
    }
}
