use super::*;
use crate::ENTRY_OVERHEAD;
use crate::config::entry_cost;

const A: ProtocolId = [0xa; 32];
const B: ProtocolId = [0xb; 32];

/// Cost of an entry with a 1-byte key and a 1-byte value, the unit most tests count in.
const UNIT: usize = 2 + ENTRY_OVERHEAD;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A store holding `global` unit entries in total and `quota` per namespace.
fn store(global: usize, quota: usize) -> SoftStore {
    SoftStore::new(Config {
        max_bytes: global * UNIT,
        namespace_quota: quota * UNIT,
        max_key_len: 8,
        max_value_len: 64,
        max_ttl: secs(100),
    })
}

/// Namespace `ns`'s live entries as owned `(key, value, expires_at)`, to compare over time.
fn live<N: Hash + Eq + Clone>(s: &SoftStore<N>, ns: &N) -> Vec<(Vec<u8>, Vec<u8>, Duration)> {
    s.entries(ns)
        .iter()
        .map(|e| (e.key.to_vec(), e.value.to_vec(), e.expires_at))
        .collect()
}

/// Checks the invariants every public call must keep.
fn check<N: Hash + Eq + Clone>(s: &SoftStore<N>, namespaces: &[N]) {
    let sum: usize = namespaces.iter().map(|ns| s.namespace_bytes(ns)).sum();
    assert_eq!(s.bytes(), sum);
    assert!(s.bytes() <= s.config().max_bytes);
    for ns in namespaces {
        assert!(s.namespace_bytes(ns) <= s.config().namespace_quota);
    }
    let stored: usize = s.spaces.values().map(|space| space.entries.len()).sum();
    assert_eq!(s.expirations.len(), stored, "expiry index is exact");
    for (&(at, id), (ns, key)) in &s.expirations {
        let slot = s.spaces[ns]
            .entries
            .peek(&**key)
            .expect("indexed entry is stored");
        assert_eq!((slot.expires_at, slot.id), (at, id));
    }
    for space in s.spaces.values() {
        assert!(!space.entries.is_empty(), "empty namespaces are dropped");
        let cost: usize = space
            .entries
            .iter()
            .map(|(key, slot)| entry_cost(key.len(), slot.value.len()))
            .sum();
        assert_eq!(space.bytes, cost);
    }
}

#[test]
fn put_then_get_returns_the_value_and_counts_a_hit() {
    let mut s = store(10, 10);
    let out = s.put(&A, b"k", b"v", secs(5), secs(0)).unwrap();
    assert_eq!(
        out,
        PutOutcome {
            replaced: false,
            evicted: 0
        }
    );
    assert_eq!(s.get(&A, b"k", secs(1)), Some(&b"v"[..]));
    assert_eq!(s.counters().hits, 1);
    assert_eq!(s.counters().inserts, 1);
    assert_eq!(s.len(), 1);
    assert_eq!(s.bytes(), UNIT);
    assert_eq!(s.namespace_bytes(&A), UNIT);
    check(&s, &[A, B]);
}

#[test]
fn get_of_an_absent_key_or_namespace_is_a_miss() {
    let mut s = store(10, 10);
    s.put(&A, b"k", b"v", secs(5), secs(0)).unwrap();
    assert_eq!(s.get(&A, b"x", secs(1)), None);
    assert_eq!(s.get(&B, b"k", secs(1)), None);
    assert_eq!(s.counters().misses, 2);
    assert_eq!(s.counters().hits, 0);
}

#[test]
fn entries_cost_key_plus_value_plus_overhead_even_when_empty() {
    let mut s = store(10, 10);
    s.put(&A, b"", b"", secs(5), secs(0)).unwrap();
    assert_eq!(s.bytes(), ENTRY_OVERHEAD);
    s.put(&A, b"key", b"value", secs(5), secs(0)).unwrap();
    assert_eq!(s.bytes(), 2 * ENTRY_OVERHEAD + 8);
    assert_eq!(s.get(&A, b"", secs(1)), Some(&b""[..]));
}

#[test]
fn zero_ttl_is_refused_and_changes_nothing() {
    let mut s = store(10, 10);
    assert_eq!(
        s.put(&A, b"k", b"v", Duration::ZERO, secs(0)),
        Err(PutError::ZeroTtl)
    );
    assert!(s.is_empty());
    assert_eq!(s.counters().ttl_refusals, 1);
    let mut zero_max = SoftStore::<u8>::new(Config {
        max_ttl: Duration::ZERO,
        ..Config::default()
    });
    assert_eq!(
        zero_max.put(&0, b"k", b"v", secs(5), secs(0)),
        Err(PutError::ZeroTtl)
    );
}

#[test]
fn ttl_is_clamped_to_max_ttl_and_expiry_saturates() {
    let mut s = store(10, 10);
    s.put(&A, b"k", b"v", secs(1_000_000), secs(7)).unwrap();
    assert_eq!(s.entries(&A)[0].expires_at, secs(107));
    assert_eq!(s.next_expiry(), Some(secs(107)));

    let end = Duration::MAX - secs(1);
    s.put(&A, b"m", b"v", secs(5), end).unwrap();
    assert_eq!(s.entries(&A)[0].expires_at, Duration::MAX);
    // Entry "k" was purged by that put: it is long due near the end of time.
    assert_eq!(s.len(), 1);
    assert_eq!(s.counters().expiries, 1);
    // An entry expiring at the end of time is due at the end of time, not a panic.
    assert_eq!(s.get(&A, b"m", Duration::MAX), None);
    check(&s, &[A]);
}

#[test]
fn too_long_keys_and_values_are_size_refusals() {
    let mut s = store(10, 10);
    assert_eq!(
        s.put(&A, &[0; 9], b"v", secs(5), secs(0)),
        Err(PutError::KeyTooLong { len: 9, max: 8 })
    );
    assert_eq!(
        s.put(&A, b"k", &[0; 65], secs(5), secs(0)),
        Err(PutError::ValueTooLong { len: 65, max: 64 })
    );
    assert_eq!(s.counters().size_refusals, 2);
    assert!(s.is_empty());
    // The limits themselves are accepted.
    s.put(&A, &[0; 8], &[0; 64], secs(5), secs(0)).unwrap();
}

#[test]
fn an_entry_larger_than_the_whole_store_is_too_large() {
    let mut s = SoftStore::<u8>::new(Config {
        max_bytes: 100,
        namespace_quota: 1000,
        ..Config::default()
    });
    s.put(&0, b"a", b"", secs(5), secs(0)).unwrap();
    let needed = 1 + 40 + ENTRY_OVERHEAD;
    assert_eq!(
        s.put(&0, b"b", &[0; 40], secs(5), secs(0)),
        Err(PutError::TooLarge { needed, max: 100 })
    );
    assert_eq!(s.counters().size_refusals, 1);
    assert_eq!(
        s.len(),
        1,
        "nothing evicted for an entry that can never fit"
    );
}

#[test]
fn zero_limits_refuse_everything_without_panicking() {
    let mut s = SoftStore::<u8>::new(Config {
        max_bytes: 0,
        namespace_quota: 0,
        max_key_len: 0,
        max_value_len: 0,
        max_ttl: secs(1),
    });
    assert!(matches!(
        s.put(&0, b"", b"", secs(1), secs(0)),
        Err(PutError::TooLarge { .. })
    ));
    assert!(s.put(&0, b"k", b"", secs(1), secs(0)).is_err());
    assert_eq!(s.get(&0, b"", secs(0)), None);
    assert!(!s.refresh(&0, b"", secs(1), secs(0)));
    assert!(!s.remove(&0, b""));
    assert_eq!(s.expire(Duration::MAX), 0);
    assert_eq!(s.next_expiry(), None);
}

#[test]
fn quota_refusal_changes_nothing_and_evicts_nothing_of_its_own() {
    let mut s = store(10, 2);
    s.put(&A, b"1", b"v", secs(5), secs(0)).unwrap();
    s.put(&A, b"2", b"v", secs(5), secs(0)).unwrap();
    let before = s.entries(&A).len();
    assert_eq!(
        s.put(&A, b"3", b"v", secs(5), secs(0)),
        Err(PutError::QuotaExceeded {
            needed: 3 * UNIT,
            quota: 2 * UNIT
        })
    );
    assert_eq!(s.counters().quota_refusals, 1);
    assert_eq!(s.counters().evictions, 0);
    assert_eq!(s.entries(&A).len(), before);
    assert_eq!(s.get(&A, b"3", secs(1)), None);
    // Another namespace is not affected by A's full quota.
    s.put(&B, b"1", b"v", secs(5), secs(0)).unwrap();
    check(&s, &[A, B]);
}

#[test]
fn replacing_counts_the_old_cost_as_freed() {
    let mut s = store(10, 2);
    s.put(&A, b"1", b"v", secs(5), secs(0)).unwrap();
    s.put(&A, b"2", b"v", secs(5), secs(0)).unwrap();
    // The quota is full, yet replacing a key with a same-size value fits.
    let out = s.put(&A, b"2", b"w", secs(9), secs(1)).unwrap();
    assert_eq!(
        out,
        PutOutcome {
            replaced: true,
            evicted: 0
        }
    );
    assert_eq!(s.get(&A, b"2", secs(2)), Some(&b"w"[..]));
    assert_eq!(s.bytes(), 2 * UNIT);
    assert_eq!(s.counters().replacements, 1);
    assert_eq!(s.counters().inserts, 2);
    // A larger replacement that goes over the quota is refused and keeps the old value.
    assert!(matches!(
        s.put(&A, b"2", b"longer", secs(9), secs(2)),
        Err(PutError::QuotaExceeded { .. })
    ));
    assert_eq!(s.get(&A, b"2", secs(3)), Some(&b"w"[..]));
    assert_eq!(s.entries(&A)[1].expires_at, secs(10));
    check(&s, &[A]);
}

#[test]
fn global_bound_evicts_the_namespaces_own_least_recently_used_and_reports_it() {
    let mut s = store(3, 10);
    s.put(&A, b"1", b"v", secs(50), secs(0)).unwrap();
    s.put(&B, b"2", b"v", secs(50), secs(0)).unwrap();
    s.put(&A, b"3", b"v", secs(50), secs(0)).unwrap();
    // A hit makes "1" A's most recently used. B's "2" is the least recently used of the whole
    // store, but it is not A's to evict: A's least recently used, "3", goes.
    assert!(s.get(&A, b"1", secs(1)).is_some());
    let out = s.put(&A, b"4", b"v", secs(50), secs(1)).unwrap();
    assert_eq!(out.evicted, 1);
    assert_eq!(s.get(&A, b"3", secs(1)), None);
    assert_eq!(s.get(&B, b"2", secs(1)), Some(&b"v"[..]));
    // A bigger entry (129 bytes, nearly two units) evicts as many as it needs: "1" then "4".
    let out = s.put(&A, b"5", &[0; 64], secs(50), secs(1)).unwrap();
    assert_eq!(out.evicted, 2);
    let keys: Vec<&[u8]> = s.entries(&A).iter().map(|e| e.key).collect();
    assert_eq!(keys, [&b"5"[..]]);
    assert_eq!(s.entries(&B).len(), 1);
    assert_eq!(s.counters().evictions, 3);
    assert_eq!(s.counters().store_full_refusals, 0);
    check(&s, &[A, B]);
}

#[test]
fn a_namespace_filling_the_store_evicts_only_its_own_entries() {
    // The finding this guards against: a protocol allowed the whole store (quota = max_bytes)
    // floods it; the victim's entries are the oldest and least recently used in the store.
    let mut s = store(6, 6);
    s.put(&B, b"1", b"b", secs(90), secs(0)).unwrap();
    s.put(&B, b"2", b"b", secs(90), secs(0)).unwrap();
    let b_before = live(&s, &B);
    let mut evicted = 0;
    for i in 0..20u8 {
        let out = s.put(&A, &[i], b"a", secs(90), secs(1)).unwrap();
        evicted += out.evicted;
        check(&s, &[A, B]);
    }
    // A got the four units B leaves, and churned through them: 16 evictions, all of A.
    assert_eq!(evicted, 16);
    assert_eq!(s.counters().evictions, 16);
    let keys: Vec<&[u8]> = s.entries(&A).iter().map(|e| e.key).collect();
    assert_eq!(keys, [[16], [17], [18], [19]]);
    let b_after = live(&s, &B);
    assert_eq!(b_before, b_after, "every entry of B survives, untouched");
    assert_eq!(s.bytes(), s.config().max_bytes);
}

#[test]
fn a_put_its_own_entries_cannot_make_room_for_is_store_full_and_changes_nothing() {
    let mut s = SoftStore::<u8>::new(Config {
        max_bytes: 1000,
        namespace_quota: 1000,
        max_key_len: 8,
        max_value_len: 1000,
        max_ttl: secs(100),
    });
    s.put(&1, b"b", &[0; 335], secs(50), secs(0)).unwrap(); // 400 bytes
    s.put(&0, b"a", &[0; 235], secs(50), secs(0)).unwrap(); // 300 bytes
    let counters = *s.counters();
    // 700 bytes: even with all of namespace 0's entries evicted, namespace 1 leaves 600.
    assert_eq!(
        s.put(&0, b"big", &[0; 633], secs(50), secs(1)),
        Err(PutError::StoreFull {
            needed: 700,
            available: 600
        })
    );
    assert_eq!(
        *s.counters(),
        Counters {
            store_full_refusals: 1,
            ..counters
        },
        "only the refusal is counted"
    );
    assert_eq!(s.bytes(), 700);
    assert_eq!(s.entries(&0).len(), 1, "nothing evicted for a refused put");
    // Exactly what is available fits, by evicting namespace 0's own entry.
    let out = s.put(&0, b"big", &[0; 533], secs(50), secs(1)).unwrap();
    assert_eq!(out.evicted, 1);
    assert_eq!(s.bytes(), 1000);
    assert_eq!(s.namespace_bytes(&1), 400);
    check(&s, &[0, 1]);
}

#[test]
fn a_new_namespace_in_a_store_full_of_others_waits_for_their_expiry() {
    let mut s = store(4, 4);
    for key in [b"1", b"2", b"3", b"4"] {
        s.put(&A, key, b"a", secs(10), secs(0)).unwrap();
    }
    assert_eq!(
        s.put(&B, b"k", b"b", secs(10), secs(1)),
        Err(PutError::StoreFull {
            needed: UNIT,
            available: 0
        })
    );
    assert_eq!(s.entries(&A).len(), 4);
    assert_eq!(s.namespace_count(), 1, "a refused put creates no namespace");
    // A removal makes room for exactly one; B's next put then has only B's entry to evict.
    assert!(s.remove(&A, b"1"));
    s.put(&B, b"k", b"b", secs(50), secs(2)).unwrap();
    let out = s.put(&B, b"m", b"b", secs(50), secs(2)).unwrap();
    assert_eq!(out.evicted, 1);
    assert_eq!(s.get(&B, b"k", secs(2)), None);
    assert_eq!(s.entries(&A).len(), 3);
    // Expiry is not eviction: once A's entries are due, B's put purges them and fits.
    let out = s.put(&B, b"n", b"b", secs(50), secs(10)).unwrap();
    assert_eq!(out.evicted, 0);
    assert_eq!(s.counters().evictions, 1);
    assert_eq!(s.counters().expiries, 3);
    assert_eq!(s.counters().store_full_refusals, 1);
    assert_eq!(s.entries(&B).len(), 2);
    check(&s, &[A, B]);
}

#[test]
fn refresh_and_replacement_count_as_use_for_lru() {
    let mut s = store(2, 10);
    s.put(&A, b"1", b"v", secs(50), secs(0)).unwrap();
    s.put(&A, b"2", b"v", secs(50), secs(0)).unwrap();
    assert!(s.refresh(&A, b"1", secs(50), secs(1)));
    s.put(&A, b"3", b"v", secs(50), secs(1)).unwrap();
    assert!(
        s.get(&A, b"2", secs(1)).is_none(),
        "2 was least recently used"
    );
    s.put(&A, b"1", b"w", secs(50), secs(1)).unwrap();
    s.put(&A, b"4", b"v", secs(50), secs(1)).unwrap();
    assert!(
        s.get(&A, b"3", secs(1)).is_none(),
        "3 was least recently used"
    );
    assert!(s.get(&A, b"1", secs(1)).is_some());
}

#[test]
fn namespaces_can_neither_see_nor_push_out_each_other() {
    let mut s = store(4, 2);
    // Same key, different namespaces: separate entries.
    s.put(&A, b"k", b"a", secs(50), secs(0)).unwrap();
    s.put(&B, b"k", b"b", secs(50), secs(0)).unwrap();
    assert_eq!(s.get(&A, b"k", secs(1)), Some(&b"a"[..]));
    assert_eq!(s.get(&B, b"k", secs(1)), Some(&b"b"[..]));
    // B can neither see, refresh, remove nor overwrite A's entries.
    s.put(&A, b"x", b"a", secs(50), secs(1)).unwrap();
    assert_eq!(s.get(&B, b"x", secs(1)), None);
    assert!(!s.refresh(&B, b"x", secs(99), secs(1)));
    assert!(!s.remove(&B, b"x"));
    s.put(&B, b"k", b"B", secs(50), secs(1)).unwrap();
    let a_before = live(&s, &A);
    // B at its quota is refused; it does not take room from A (nor from itself).
    s.put(&B, b"y", b"b", secs(50), secs(1)).unwrap();
    assert!(matches!(
        s.put(&B, b"z", b"b", secs(50), secs(1)),
        Err(PutError::QuotaExceeded { .. })
    ));
    let a_after = live(&s, &A);
    assert_eq!(a_before, a_after);
    assert_eq!(s.counters().evictions, 0);
    // The store is now full (4 entries). A third protocol, well within its own quota, is
    // refused rather than pushing out anyone's entries.
    assert_eq!(
        s.put(&C, b"q", b"c", secs(50), secs(2)),
        Err(PutError::StoreFull {
            needed: UNIT,
            available: 0
        })
    );
    assert_eq!(s.entries(&A).len(), 2);
    assert_eq!(s.entries(&B).len(), 2);
    assert_eq!(s.counters().evictions, 0);
    // Once A gives up an entry, C fits.
    assert!(s.remove(&A, b"x"));
    s.put(&C, b"q", b"c", secs(50), secs(2)).unwrap();
    assert_eq!(s.get(&A, b"k", secs(2)), Some(&b"a"[..]));
    check(&s, &[A, B, C]);
}

const C: ProtocolId = [0xc; 32];

#[test]
fn get_of_an_expired_entry_purges_it_as_an_expiry_and_a_miss() {
    let mut s = store(10, 10);
    s.put(&A, b"k", b"v", secs(5), secs(0)).unwrap();
    assert!(s.get(&A, b"k", secs(4)).is_some());
    // Due exactly at expires_at.
    assert_eq!(s.get(&A, b"k", secs(5)), None);
    assert_eq!(s.counters().expiries, 1);
    assert_eq!(s.counters().misses, 1);
    assert!(s.is_empty());
    assert_eq!(s.bytes(), 0);
    check(&s, &[A]);
}

#[test]
fn refresh_resets_the_ttl_and_keeps_the_value() {
    let mut s = store(10, 10);
    s.put(&A, b"k", b"v", secs(5), secs(0)).unwrap();
    assert!(s.refresh(&A, b"k", secs(10), secs(4)));
    assert_eq!(s.next_expiry(), Some(secs(14)));
    assert_eq!(s.get(&A, b"k", secs(13)), Some(&b"v"[..]));
    // Clamped like put.
    assert!(s.refresh(&A, b"k", secs(1000), secs(13)));
    assert_eq!(s.next_expiry(), Some(secs(113)));
    assert_eq!(s.counters().refreshes, 2);
    assert!(!s.refresh(&A, b"absent", secs(10), secs(13)));
    assert!(
        !s.refresh(&A, b"k", Duration::ZERO, secs(13)),
        "a zero TTL is refused"
    );
    assert_eq!(s.counters().ttl_refusals, 1);
    assert_eq!(s.len(), 1);
    check(&s, &[A]);
}

#[test]
fn refresh_of_an_expired_entry_is_false_and_purges_it() {
    let mut s = store(10, 10);
    s.put(&A, b"k", b"v", secs(5), secs(0)).unwrap();
    assert!(!s.refresh(&A, b"k", secs(10), secs(5)));
    assert!(s.is_empty());
    assert_eq!(s.counters().expiries, 1);
    assert_eq!(s.counters().refreshes, 0);
}

#[test]
fn remove_returns_true_once_and_judges_expiry_by_the_latest_now_seen() {
    let mut s = store(10, 10);
    s.put(&A, b"k", b"v", secs(5), secs(0)).unwrap();
    s.put(&A, b"old", b"v", secs(2), secs(0)).unwrap();
    assert!(s.remove(&A, b"k"));
    assert!(!s.remove(&A, b"k"));
    assert_eq!(s.counters().removals, 1);
    // Time moves on through another namespace's call; "old" is now due though not purged.
    assert_eq!(s.get(&B, b"k", secs(3)), None);
    assert_eq!(s.len(), 1);
    assert!(!s.remove(&A, b"old"));
    assert_eq!(s.counters().removals, 1);
    assert_eq!(s.counters().expiries, 1);
    assert!(s.is_empty());
    check(&s, &[A]);
}

#[test]
fn expire_removes_exactly_the_due_entries_and_next_expiry_follows() {
    let mut s = store(10, 10);
    assert_eq!(s.next_expiry(), None);
    s.put(&A, b"1", b"v", secs(3), secs(0)).unwrap();
    s.put(&B, b"2", b"v", secs(1), secs(0)).unwrap();
    s.put(&A, b"3", b"v", secs(2), secs(0)).unwrap();
    assert_eq!(s.next_expiry(), Some(secs(1)));
    assert_eq!(s.expire(secs(0)), 0);
    assert_eq!(s.expire(secs(2)), 2, "expires_at <= now is due");
    assert_eq!(s.next_expiry(), Some(secs(3)));
    assert_eq!(s.namespace_count(), 1);
    assert!(s.remove(&A, b"1"));
    assert_eq!(s.next_expiry(), None);
    assert_eq!(s.counters().expiries, 2);
    check(&s, &[A, B]);
}

#[test]
fn put_purges_due_entries_first_so_they_free_quota() {
    let mut s = store(10, 1);
    s.put(&A, b"1", b"v", secs(5), secs(0)).unwrap();
    assert!(s.put(&A, b"2", b"v", secs(5), secs(4)).is_err());
    let out = s.put(&A, b"2", b"v", secs(5), secs(5)).unwrap();
    assert!(!out.replaced, "an expired entry is not replaced");
    assert_eq!(out.evicted, 0, "nor counted as evicted");
    assert_eq!(s.counters().expiries, 1);
    // Same for a due entry under the same key: a fresh insert, not a replacement.
    let out = s.put(&A, b"2", b"w", secs(5), secs(10)).unwrap();
    assert!(!out.replaced);
    assert_eq!(s.counters().inserts, 3);
    assert_eq!(s.counters().replacements, 0);
}

#[test]
fn a_clock_stepping_back_does_not_revive_state() {
    let mut s = store(10, 10);
    s.put(&A, b"k", b"v", secs(5), secs(0)).unwrap();
    assert_eq!(s.expire(secs(10)), 1);
    s.put(&A, b"m", b"v", secs(5), secs(12)).unwrap();
    // `now` steps back to 1 s: treated as 12 s, so "m" expires at 17 s, not 6 s.
    s.put(&A, b"n", b"v", secs(5), secs(1)).unwrap();
    assert_eq!(s.entries(&A)[1].expires_at, secs(17));
    assert_eq!(s.get(&A, b"m", secs(16)), Some(&b"v"[..]));
    assert_eq!(s.get(&A, b"m", secs(17)), None);
}

#[test]
fn entries_are_sorted_by_key_and_skip_due_ones() {
    let mut s = store(10, 10);
    for key in [b"c", b"a", b"b"] {
        s.put(&A, key, b"v", secs(5), secs(0)).unwrap();
    }
    s.put(&A, b"d", b"v", secs(1), secs(0)).unwrap();
    let keys: Vec<&[u8]> = s.entries(&A).iter().map(|e| e.key).collect();
    assert_eq!(keys, [b"a", b"b", b"c", b"d"]);
    s.get(&B, b"x", secs(1)); // advances the clock only
    let keys: Vec<&[u8]> = s.entries(&A).iter().map(|e| e.key).collect();
    assert_eq!(keys, [b"a", b"b", b"c"]);
    assert!(s.entries(&B).is_empty());
}

#[test]
fn stale_index_items_do_not_accumulate() {
    let mut s = store(4, 4);
    for t in 0..1000 {
        let key = [b'0' + (t % 3) as u8];
        s.put(&A, &key, b"v", secs(50), secs(t)).unwrap();
        assert!(s.refresh(&A, &key, secs(60), secs(t)));
        check(&s, &[A]);
    }
    assert_eq!(s.len(), 3);
    assert_eq!(s.expirations.len(), 3);
}

#[test]
fn the_same_calls_give_the_same_results() {
    /// What the caller can observe: every `get` result, the counters, what is left.
    type Trace = (Vec<Option<Vec<u8>>>, Counters, Vec<(Vec<u8>, Duration)>);
    fn run() -> Trace {
        let mut s = store(5, 3);
        let mut seen = Vec::new();
        for t in 0..200u64 {
            let ns = [A, B, C][(t % 3) as usize];
            let key = [(t * 7 % 11) as u8];
            let _ = s.put(&ns, &key, &[t as u8], secs(t % 13), secs(t / 2));
            seen.push(
                s.get(&ns, &[(t % 5) as u8], secs(t / 2))
                    .map(<[u8]>::to_vec),
            );
            if t % 17 == 0 {
                s.expire(secs(t / 2));
            }
        }
        let left = [A, B, C]
            .iter()
            .flat_map(|ns| {
                s.entries(ns)
                    .into_iter()
                    .map(|e| (e.key.to_vec(), e.expires_at))
                    .collect::<Vec<_>>()
            })
            .collect();
        (seen, *s.counters(), left)
    }
    assert_eq!(run(), run());
}

#[test]
fn debug_shows_a_summary_not_the_values() {
    let mut s = store(10, 10);
    s.put(&A, b"k", b"secret", secs(5), secs(0)).unwrap();
    let text = format!("{s:?}");
    assert!(text.contains("entries: 1"));
    assert!(text.contains("namespaces: 1"));
    assert!(text.contains("store_full_refusals: 0"));
    assert!(!text.contains("secret"));
    let _ = SoftStore::<u8>::default();
}
