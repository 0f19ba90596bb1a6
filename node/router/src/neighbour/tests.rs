//! The ARP tables on their own: resolving, holding, retries, both bounds, timer index.

use super::*;

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];

fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn table(entries: usize) -> ArpTable {
    table2(entries, 4)
}

fn table2(entries: usize, incomplete: usize) -> ArpTable {
    ArpTable::new(&RouterLimits {
        arp_entries: entries,
        arp_incomplete_entries: incomplete,
        arp_pending_per_neighbour: 2,
        arp_pending_total: 3,
        ..RouterLimits::default()
    })
}

fn check(t: &ArpTable) {
    t.assert_consistent();
}

#[test]
fn resolve_hold_complete_release() {
    let mut t = table(4);
    assert_eq!(t.lookup(s(0), 1), Lookup::Missing);
    assert!(t.insert_incomplete(s(0), 1, 0));
    assert_eq!(t.lookup(s(0), 1), Lookup::Incomplete);
    assert_eq!((t.incomplete_len(), t.resolved_len()), (1, 0));
    assert!(t.hold(1, 0, Some(1), 3, |b| b.fill(1)));
    assert!(t.hold(1, 0, None, 2, |b| b.fill(2)));
    assert!(!t.hold(1, 0, None, 2, |_| panic!()), "per-neighbour bound");
    assert!(!t.hold(99, 0, None, 2, |_| panic!()), "no entry, no hold");
    assert_eq!(t.next_deadline(), Some(s(1)));
    check(&t);
    assert_eq!(
        t.learn(s(0), 1, 0, MAC, false),
        Learned::Completed {
            held: 2,
            evicted: None
        }
    );
    assert_eq!((t.incomplete_len(), t.resolved_len()), (0, 1), "moved");
    assert_eq!(t.next_deadline(), None, "answered: no retry");
    check(&t);
    let mut out = Vec::new();
    t.take_held(1, &mut out);
    assert_eq!(
        out.iter().map(|h| h.frame.clone()).collect::<Vec<_>>(),
        [vec![1; 3], vec![2; 2]]
    );
    assert_eq!(t.held_len(), 0);
    assert_eq!(t.peek(1).map(|n| n.held), Some(0));
    assert_eq!(t.lookup(s(29), 1), Lookup::Ready(MAC));
    check(&t);
}

#[test]
fn total_hold_bound() {
    let mut t = table(4);
    for ip in 1..=2 {
        assert!(t.insert_incomplete(s(0), ip, 0));
    }
    assert!(t.hold(1, 0, None, 1, |_| {}) && t.hold(1, 0, None, 1, |_| {}));
    assert!(t.hold(2, 0, None, 1, |_| {}));
    assert!(!t.hold(2, 0, None, 1, |_| panic!()), "total bound");
    check(&t);
}

#[test]
fn retries_then_failure() {
    let mut t = table(4); // 3 requests, 1 s apart
    t.insert_incomplete(s(10), 7, 1);
    t.hold(7, 1, Some(0), 1, |_| {});
    assert_eq!(t.expire_one(s(10)), None, "not due");
    let retry = Expired::Retry {
        ip: 7,
        iface: 1,
        dst_mac: None,
    };
    assert_eq!(t.expire_one(s(11)), Some(retry));
    assert_eq!(t.expire_one(s(12)), Some(retry));
    check(&t);
    assert_eq!(
        t.expire_one(s(13)),
        Some(Expired::Failed { ip: 7, held: 1 })
    );
    assert_eq!(t.len(), 0);
    let mut out = Vec::new();
    t.take_held(7, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(t.next_deadline(), None);
    check(&t);
}

#[test]
fn stale_entries_are_used_and_probed_once_in_the_resolved_table() {
    let mut t = table2(4, 1);
    assert!(matches!(
        t.learn(s(0), 5, 0, MAC, true),
        Learned::Created { evicted: None }
    ));
    assert_eq!(t.lookup(s(29), 5), Lookup::Ready(MAC));
    assert_eq!(t.lookup(s(30), 5), Lookup::ReadyProbe(MAC));
    assert_eq!(
        t.lookup(s(30), 5),
        Lookup::Ready(MAC),
        "probe already running"
    );
    assert_eq!((t.resolved_len(), t.incomplete_len()), (1, 0));
    // The probe takes no room from resolutions.
    assert!(t.insert_incomplete(s(30), 6, 0));
    check(&t);
    assert_eq!(
        t.expire_one(s(31)),
        Some(Expired::Retry {
            ip: 5,
            iface: 0,
            dst_mac: Some(MAC)
        })
    );
    assert_eq!(t.learn(s(31), 5, 0, MAC, false), Learned::Updated);
    assert_eq!(t.next_deadline(), Some(s(31)), "6's timer only");
    assert_eq!(t.lookup(s(60), 5), Lookup::Ready(MAC));
    check(&t);
    // A probe that goes unanswered removes the resolved entry.
    assert_eq!(t.lookup(s(70), 5), Lookup::ReadyProbe(MAC));
    let mut failed = Vec::new();
    for at in 70..80 {
        while let Some(e) = t.expire_one(s(at)) {
            if let Expired::Failed { ip, .. } = e {
                failed.push(ip);
            }
        }
    }
    failed.sort_unstable();
    assert_eq!(failed, [5, 6]);
    assert_eq!(t.len(), 0);
    check(&t);
}

#[test]
fn resolved_table_is_lru_and_evicts_only_resolved_entries() {
    let mut t = table2(2, 4);
    assert!(t.insert_incomplete(s(0), 1, 0));
    t.hold(1, 0, None, 4, |_| {});
    t.learn(s(0), 2, 0, MAC, true);
    t.learn(s(0), 3, 0, MAC, true);
    // Resolutions never push resolved entries out, however many there are.
    for ip in 10..13 {
        assert!(t.insert_incomplete(s(0), ip, 0));
    }
    assert_eq!((t.resolved_len(), t.incomplete_len()), (2, 4));
    assert!(t.peek(2).is_some() && t.peek(3).is_some());
    check(&t);
    // Using 2 makes 3 the LRU; a new resolved entry evicts it, not a resolution.
    t.lookup(s(0), 2);
    assert_eq!(
        t.learn(s(0), 4, 0, MAC, true),
        Learned::Created { evicted: Some(0) }
    );
    assert!(t.peek(3).is_none() && t.peek(2).is_some());
    // A completed resolution moves over and may evict the LRU resolved entry (2 now).
    assert_eq!(
        t.learn(s(0), 1, 0, MAC, false),
        Learned::Completed {
            held: 1,
            evicted: Some(0)
        }
    );
    assert!(t.peek(2).is_none());
    assert_eq!((t.resolved_len(), t.incomplete_len()), (2, 3));
    assert_eq!(t.held_len(), 1, "1's frame waits for the router to take it");
    check(&t);
    assert_eq!(t.learn(s(0), 8, 0, MAC, false), Learned::Unknown);
}

#[test]
fn full_incomplete_table_refuses_until_a_resolution_ends() {
    let mut t = table2(2, 2);
    t.learn(s(0), 100, 0, MAC, true);
    assert!(t.insert_incomplete(s(0), 1, 0));
    assert!(t.insert_incomplete(s(0), 2, 0));
    assert!(!t.insert_incomplete(s(0), 3, 0), "full: refused");
    assert!(t.insert_incomplete(s(0), 2, 0), "already resolving");
    assert_eq!(t.lookup(s(0), 3), Lookup::Missing);
    assert_eq!(t.timers.len(), 2, "no timer for the refused one");
    assert_eq!(t.lookup(s(0), 100), Lookup::Ready(MAC));
    check(&t);
    // An answer frees a slot.
    t.learn(s(0), 1, 0, MAC, false);
    assert!(t.insert_incomplete(s(0), 3, 0));
    assert!(!t.insert_incomplete(s(0), 4, 0));
    // So does a failure.
    for at in 1..10 {
        while t.expire_one(s(at)).is_some() {}
    }
    assert_eq!(t.incomplete_len(), 0);
    assert!(t.insert_incomplete(s(10), 4, 0));
    assert_eq!(t.resolved_len(), 2);
    check(&t);
}
