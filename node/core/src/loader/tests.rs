//! Unit tests of the requesting side of [`CodeLoader`], one rule each (serving is tested in
//! `serve.rs`, whole exchanges in `harness.rs`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ants_wire::code::CHUNK_LEN;
use ants_wire::{CapsuleType, CodeChunk, CodeNack, CodeRequest, NackReason};
use sha2::{Digest, Sha256};

use super::*;

const MS: Duration = Duration::from_millis(1);

pub(super) fn module(len: usize, seed: u8) -> (CapsuleType, Vec<u8>) {
    let m: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    (CapsuleType(Sha256::digest(&m).into()), m)
}

fn chunk<'a>(ty: CapsuleType, m: &'a [u8], idx: usize) -> CodeChunk<'a> {
    let off = idx * CHUNK_LEN;
    CodeChunk {
        capsule_type: ty,
        total_len: m.len() as u32,
        offset: off as u32,
        bytes: &m[off..m.len().min(off + CHUNK_LEN)],
    }
}

/// Every request sent: (to, first chunk, bitmap).
fn requests(l: &mut CodeLoader<u8>) -> Vec<(u8, u32, Vec<u8>)> {
    std::iter::from_fn(|| l.poll_transmit())
        .filter_map(|(to, m)| {
            CodeRequest::parse(&m)
                .ok()
                .map(|r| (to, r.first_chunk, r.bitmap.to_vec()))
        })
        .collect()
}

fn events(l: &mut CodeLoader<u8>) -> Vec<LoaderEvent> {
    std::iter::from_fn(|| l.poll_event()).collect()
}

fn nack(ty: CapsuleType, reason: NackReason) -> CodeNack {
    CodeNack {
        capsule_type: ty,
        reason,
    }
}

fn loader() -> CodeLoader<u8> {
    CodeLoader::new(LoaderConfig::default())
}

/// The bitmap of a first request: the default window of 32 chunks.
fn first_window() -> Vec<u8> {
    vec![0xFF; 4]
}

#[test]
fn first_request_goes_to_the_previous_hop_for_all_chunks() {
    let (ty, _) = module(3000, 1);
    let mut l = loader();
    assert_eq!(l.hold(MS, ty, 4, vec![1]), Admit::Held);
    assert_eq!(requests(&mut l), vec![(4, 0, first_window())]);
    assert!(l.is_fetching(&ty));
    // A second capsule joins the fetch without a second request.
    assert_eq!(l.hold(MS, ty, 5, vec![2]), Admit::Held);
    assert!(requests(&mut l).is_empty());
    assert_eq!(l.counters().fetches_started, 1);
    assert_eq!(l.held_count(&ty), 2);
}

#[test]
fn complete_module_verifies_once_and_held_capsules_come_back_in_order() {
    let (ty, m) = module(3000, 1);
    let mut l = loader();
    l.hold(MS, ty, 4, vec![1]);
    l.hold(MS, ty, 5, vec![2]);
    l.handle_chunk(2 * MS, 4, &chunk(ty, &m, 2));
    l.handle_chunk(2 * MS, 4, &chunk(ty, &m, 2));
    l.handle_chunk(2 * MS, 4, &chunk(ty, &m, 0));
    assert!(events(&mut l).is_empty());
    l.handle_chunk(2 * MS, 4, &chunk(ty, &m, 1));
    let ev = events(&mut l);
    assert_eq!(
        ev,
        vec![LoaderEvent::Verified {
            ty,
            code: Arc::from(m.clone())
        }]
    );
    // Late duplicates change nothing.
    l.handle_chunk(3 * MS, 4, &chunk(ty, &m, 1));
    assert!(events(&mut l).is_empty());
    assert!(!l.is_fetching(&ty));
    assert_eq!(l.held_count(&ty), 2);
    assert_eq!(
        l.take_held(&ty),
        vec![(Some(4), vec![1]), (Some(5), vec![2])]
    );
    assert_eq!(requests(&mut l), vec![(4, 0, first_window())]);
    let k = l.counters();
    assert_eq!(
        (k.verified, k.chunks_received, k.duplicate_chunks),
        (1, 3, 1)
    );
    assert_eq!((k.bytes_received, k.held_released), (3000, 2));
    assert_eq!(l.occupancy(), Occupancy::default());
}

#[test]
fn retries_ask_only_for_missing_chunks_with_backoff() {
    let (ty, m) = module(4 * CHUNK_LEN, 1);
    let mut l = loader();
    l.hold(Duration::ZERO, ty, 4, vec![1]);
    requests(&mut l);
    assert_eq!(l.poll_timeout(), Some(100 * MS));
    l.handle_chunk(10 * MS, 4, &chunk(ty, &m, 0));
    l.handle_chunk(10 * MS, 4, &chunk(ty, &m, 2));
    // The retry timer runs from the request; half the window came: no backoff.
    assert_eq!(l.poll_timeout(), Some(100 * MS));
    l.handle_timeout(100 * MS);
    assert_eq!(requests(&mut l), vec![(4, 1, vec![0b101])]);
    // Backoff doubles per round without progress, capped at 1.6 s.
    let mut at = 100 * MS;
    let mut gaps = Vec::new();
    for _ in 0..6 {
        let next = l.poll_timeout().unwrap();
        gaps.push((next - at).as_millis());
        at = next;
        l.handle_timeout(at);
    }
    assert_eq!(gaps, vec![100, 200, 400, 800, 1600, 1600]);
    assert_eq!(l.counters().retries, 7);
    // A finished window resets the timeout.
    l.handle_chunk(at, 4, &chunk(ty, &m, 1));
    l.handle_chunk(at, 4, &chunk(ty, &m, 3));
    assert_eq!(l.counters().verified, 1);
}

#[test]
fn finished_window_asks_for_the_next_at_once() {
    let (ty, m) = module(5 * CHUNK_LEN, 1);
    let mut l = loader();
    l.hold(Duration::ZERO, ty, 4, vec![1]);
    l.handle_chunk(MS, 4, &chunk(ty, &m, 1));
    l.handle_chunk(MS, 4, &chunk(ty, &m, 3));
    l.handle_timeout(101 * MS);
    requests(&mut l);
    // The retry asked for 0, 2 and 4; once they are in... 4 is still missing.
    l.handle_chunk(102 * MS, 4, &chunk(ty, &m, 0));
    l.handle_chunk(102 * MS, 4, &chunk(ty, &m, 2));
    assert!(requests(&mut l).is_empty());
    l.handle_chunk(102 * MS, 4, &chunk(ty, &m, 4));
    assert_eq!(l.counters().verified, 1);
}

#[test]
fn stalled_peer_is_left_for_the_next_candidate_and_the_last_is_retried_until_timeout() {
    let (ty, _) = module(3000, 1);
    let config = LoaderConfig {
        max_attempts: 2,
        ..LoaderConfig::default()
    };
    let load_timeout = config.load_timeout;
    let mut l = CodeLoader::new(config);
    l.hold(Duration::ZERO, ty, 4, vec![1]);
    l.hold(Duration::ZERO, ty, 4, vec![2]);
    l.hold(Duration::ZERO, ty, 5, vec![3]);
    let mut to: Vec<u8> = requests(&mut l).into_iter().map(|r| r.0).collect();
    let mut last = Duration::ZERO;
    while let Some(at) = l.poll_timeout() {
        last = at;
        l.handle_timeout(at);
        to.extend(requests(&mut l).into_iter().map(|r| r.0));
        if !l.is_fetching(&ty) {
            break;
        }
    }
    // Peer 4: first request and one retry; then peer 5, the last candidate, is retried
    // (beyond max_attempts) until the load times out.
    assert_eq!(&to[..4], &[4, 4, 5, 5]);
    assert!(to.len() > 4 && to[4..].iter().all(|p| *p == 5), "{to:?}");
    assert_eq!(l.counters().stalled_peers, 1);
    assert_eq!(last, load_timeout);
    assert_eq!(
        events(&mut l),
        vec![LoaderEvent::Failed {
            ty,
            reason: FailReason::Timeout,
            dropped: 3
        }]
    );
    assert_eq!(l.counters().held_dropped_failed, 3);
    // Both peers failed to deliver: neither is asked for the type again for a while; a third
    // peer could start a new fetch.
    let after = load_timeout + Duration::from_secs(1);
    assert!(l.is_negative(after, 4, &ty) && l.is_negative(after, 5, &ty));
    assert!(!l.is_negative(after, 6, &ty));
}

#[test]
fn not_found_nack_moves_on_and_stray_nacks_are_ignored() {
    let (ty, _) = module(3000, 1);
    let mut l = loader();
    l.hold(MS, ty, 4, vec![1]);
    l.hold(MS, ty, 5, vec![2]);
    requests(&mut l);
    // From a peer not asked, or for a type not fetched: ignored.
    l.handle_nack(MS, 5, &nack(ty, NackReason::NotFound));
    l.handle_nack(MS, 4, &nack(CapsuleType([0; 32]), NackReason::NotFound));
    // Rate-limited: wait for the retry timer, same peer.
    l.handle_nack(MS, 4, &nack(ty, NackReason::RateLimited));
    assert!(requests(&mut l).is_empty());
    l.handle_timeout(101 * MS);
    assert_eq!(requests(&mut l), vec![(4, 0, first_window())]);
    l.handle_nack(102 * MS, 4, &nack(ty, NackReason::NotFound));
    assert_eq!(requests(&mut l), vec![(5, 0, first_window())]);
    l.handle_nack(103 * MS, 5, &nack(ty, NackReason::TooLarge));
    assert!(matches!(
        events(&mut l)[..],
        [LoaderEvent::Failed {
            reason: FailReason::Exhausted,
            dropped: 2,
            ..
        }]
    ));
    assert_eq!(l.counters().nacks_received, 5);
    assert_eq!(l.counters().nacks_ignored, 2);
    // The peers that refused are not asked again for a while; another peer may start a
    // fetch (one peer's refusal does not get the type refused for everyone).
    assert_eq!(
        l.hold(104 * MS, ty, 4, vec![3]),
        Admit::Refused(RefuseReason::NegativeCache)
    );
    assert_eq!(l.hold(104 * MS, ty, 6, vec![3]), Admit::Held);
}

#[test]
fn changed_total_or_oversized_module_aborts_the_transfer() {
    let (ty, m) = module(3000, 1);
    let (_, other) = module(2500, 1);
    let config = LoaderConfig {
        max_module_bytes: 2800,
        ..LoaderConfig::default()
    };
    let mut l = CodeLoader::new(config);
    l.hold(MS, ty, 4, vec![1]);
    l.hold(MS, ty, 5, vec![2]);
    l.hold(MS, ty, 6, vec![3]);
    requests(&mut l);
    l.handle_chunk(MS, 4, &chunk(ty, &m, 0));
    assert_eq!(requests(&mut l), vec![(5, 0, first_window())]);
    l.handle_chunk(MS, 5, &chunk(ty, &other, 0));
    l.handle_chunk(MS, 5, &chunk(ty, &m, 1));
    assert_eq!(requests(&mut l), vec![(6, 0, first_window())]);
    assert_eq!(l.counters().aborted_transfers, 2);
    assert_eq!(l.occupancy().reassembly_bytes, 0);
}

#[test]
fn chunks_from_others_and_malformed_chunks_are_dropped() {
    let (ty, m) = module(3000, 1);
    let mut l = loader();
    l.hold(MS, ty, 4, vec![1]);
    l.handle_chunk(MS, 5, &chunk(ty, &m, 0));
    let (other, om) = module(100, 2);
    l.handle_chunk(MS, 4, &chunk(other, &om, 0));
    let bad = CodeChunk {
        bytes: &m[..3],
        ..chunk(ty, &m, 0)
    };
    l.handle_chunk(MS, 4, &bad);
    let k = l.counters();
    assert_eq!((k.chunks_unsolicited, k.chunks_malformed), (2, 1));
    assert_eq!(k.chunks_received, 0);
}

#[test]
fn a_second_hash_mismatch_distrusts_the_peer_and_asks_the_next() {
    let (ty, m) = module(3000, 1);
    let lie = vec![0xAA; 3000];
    let mut l = loader();
    l.hold(MS, ty, 4, vec![1]);
    l.hold(MS, ty, 5, vec![2]);
    requests(&mut l);
    for i in 0..3 {
        l.handle_chunk(MS, 4, &chunk(ty, &lie, i));
    }
    // The first mismatch is retried from the same peer, from scratch.
    assert_eq!(requests(&mut l), vec![(4, 0, first_window())]);
    assert!(!l.is_distrusted(MS, 4, &ty));
    for i in 0..3 {
        l.handle_chunk(MS, 4, &chunk(ty, &lie, i));
    }
    assert!(events(&mut l).is_empty());
    let k = l.counters();
    assert_eq!((k.hash_mismatches, k.mismatch_retries), (2, 1));
    assert!(l.is_distrusted(MS, 4, &ty));
    assert!(!l.is_distrusted(MS + l.config().distrust_ttl, 4, &ty));
    assert_eq!(requests(&mut l), vec![(5, 0, first_window())]);
    // The liar's capsules may still join the running fetch, but it is not asked again.
    assert_eq!(l.hold(MS, ty, 4, vec![3]), Admit::Held);
    for i in 0..3 {
        l.handle_chunk(2 * MS, 5, &chunk(ty, &m, i));
    }
    assert!(matches!(events(&mut l)[..], [LoaderEvent::Verified { .. }]));
    assert_eq!(l.take_held(&ty).len(), 3);
}

#[test]
fn a_spoofed_chunk_does_not_get_an_honest_peer_distrusted() {
    let (ty, m) = module(3000, 1);
    let forged = vec![0xEE; CHUNK_LEN];
    let mut l = loader();
    l.hold(MS, ty, 4, vec![1]);
    requests(&mut l);
    // A forged chunk 1 "from" peer 4 arrives before the real one, which is then a
    // conflicting duplicate; the module fails the hash.
    l.handle_chunk(
        MS,
        4,
        &CodeChunk {
            bytes: &forged,
            ..chunk(ty, &m, 1)
        },
    );
    for i in 0..3 {
        l.handle_chunk(MS, 4, &chunk(ty, &m, i));
    }
    assert_eq!(l.counters().conflicting_chunks, 1);
    assert_eq!(l.counters().hash_mismatches, 1);
    assert!(
        !l.is_distrusted(MS, 4, &ty),
        "one bad transfer is not enough"
    );
    assert_eq!(requests(&mut l), vec![(4, 0, first_window())]);
    for i in 0..3 {
        l.handle_chunk(2 * MS, 4, &chunk(ty, &m, i));
    }
    assert!(matches!(events(&mut l)[..], [LoaderEvent::Verified { .. }]));
}

#[test]
fn liar_alone_fails_without_negative_cache_and_an_honest_peer_can_retry() {
    let (ty, m) = module(3000, 1);
    let lie = vec![0xAA; 3000];
    let mut l = loader();
    l.hold(MS, ty, 4, vec![1]);
    for _ in 0..2 {
        for i in 0..3 {
            l.handle_chunk(MS, 4, &chunk(ty, &lie, i));
        }
    }
    assert_eq!(
        events(&mut l),
        vec![LoaderEvent::Failed {
            ty,
            reason: FailReason::Untrusted,
            dropped: 1
        }]
    );
    assert!(!l.is_negative(MS, 4, &ty) && !l.is_rejected(MS, &ty));
    // The liar cannot restart the fetch; an honest peer can.
    assert_eq!(
        l.hold(2 * MS, ty, 4, vec![2]),
        Admit::Refused(RefuseReason::Distrusted)
    );
    assert_eq!(l.hold(2 * MS, ty, 5, vec![3]), Admit::Held);
    requests(&mut l);
    for i in 0..3 {
        l.handle_chunk(3 * MS, 5, &chunk(ty, &m, i));
    }
    assert_eq!(l.counters().verified, 1);
    assert_eq!(l.counters().distrust_refusals, 1);
}

#[test]
fn allow_list_refuses_other_types_and_never_fetches_them() {
    let (ty, _) = module(3000, 1);
    let (other, _) = module(3000, 2);
    let config = LoaderConfig {
        policy: CodePolicy::AllowList(BTreeSet::from([ty])),
        ..LoaderConfig::default()
    };
    let mut l = CodeLoader::new(config);
    assert_eq!(
        l.hold(MS, other, 4, vec![1]),
        Admit::Refused(RefuseReason::Policy)
    );
    assert!(requests(&mut l).is_empty());
    assert_eq!(l.hold(MS, ty, 4, vec![1]), Admit::Held);
    assert_eq!(l.counters().policy_refusals, 1);
}

#[test]
fn a_type_whose_code_is_invalid_is_refused_from_everyone_until_it_expires() {
    let (ty, _) = module(3000, 1);
    let mut l = loader();
    assert_eq!(l.compile_failed(MS, &ty, true), 0);
    for peer in [4, 5] {
        assert_eq!(
            l.hold(2 * MS, ty, peer, vec![1]),
            Admit::Refused(RefuseReason::Rejected)
        );
    }
    assert_eq!(
        l.hold_local(2 * MS, ty, None, vec![1]),
        Admit::Refused(RefuseReason::Rejected)
    );
    let later = MS + l.config().negative_ttl;
    assert_eq!(l.hold(later, ty, 4, vec![1]), Admit::Held);
    assert_eq!(l.counters().rejected_refusals, 3);
}

#[test]
fn compile_failure_drops_held_and_rejects_only_invalid_code() {
    let (ty, m) = module(100, 1);
    let mut l = loader();
    l.hold(MS, ty, 4, vec![1]);
    l.hold(MS, ty, 4, vec![2]);
    l.handle_chunk(MS, 4, &chunk(ty, &m, 0));
    assert_eq!(l.compile_failed(MS, &ty, true), 2);
    let k = l.counters();
    assert_eq!((k.held_dropped_compile, k.compile_failures), (2, 1));
    assert!(l.is_rejected(MS, &ty));
    assert!(l.take_held(&ty).is_empty());
    assert_eq!(l.occupancy().held, 0);
    // Not the module's fault (the compile queue was full): nothing is refused after.
    let (other, _) = module(100, 2);
    assert_eq!(l.hold_local(MS, other, Some(4), vec![1]), Admit::Compile);
    assert_eq!(l.compile_failed(MS, &other, false), 1);
    assert!(!l.is_rejected(MS, &other));
    assert_eq!(l.hold_local(MS, other, Some(4), vec![1]), Admit::Compile);
}

#[test]
fn local_code_goes_straight_to_compiling_and_times_out() {
    let (ty, _) = module(100, 1);
    let mut l = loader();
    assert_eq!(l.hold_local(MS, ty, None, vec![1]), Admit::Compile);
    assert_eq!(l.hold_local(MS, ty, Some(4), vec![2]), Admit::Held);
    assert_eq!(l.hold(MS, ty, 5, vec![3]), Admit::Held);
    assert!(requests(&mut l).is_empty(), "nothing is fetched");
    assert!(l.is_loading(&ty) && !l.is_fetching(&ty));
    let deadline = MS + l.config().compile_timeout;
    assert_eq!(l.poll_timeout(), Some(deadline));
    l.handle_timeout(deadline);
    assert_eq!(
        events(&mut l),
        vec![LoaderEvent::Failed {
            ty,
            reason: FailReason::CompileTimeout,
            dropped: 3
        }]
    );
    assert_eq!(l.counters().compile_timeouts, 1);
    assert_eq!(l.occupancy(), Occupancy::default());
    // An app's capsule needs local code: without it there is no one to fetch from.
    let (other, _) = module(100, 2);
    assert_eq!(
        l.hold_local(MS, other, None, vec![1]),
        Admit::Compile,
        "hold_local is only called when the code is here"
    );
}

#[test]
fn one_peer_cannot_take_every_load_slot() {
    let config = LoaderConfig {
        max_fetches_per_peer: 2,
        ..LoaderConfig::default()
    };
    let mut l = CodeLoader::new(config);
    let types: Vec<_> = (0..4).map(|i| module(10, i).0).collect();
    assert_eq!(l.hold(MS, types[0], 1, vec![]), Admit::Held);
    assert_eq!(l.hold_local(MS, types[1], Some(1), vec![]), Admit::Compile);
    assert_eq!(
        l.hold(MS, types[2], 1, vec![]),
        Admit::Refused(RefuseReason::PeerBusy)
    );
    // It may still join loads others started, and others may start their own.
    assert_eq!(l.hold(MS, types[3], 2, vec![]), Admit::Held);
    assert_eq!(l.hold(MS, types[3], 1, vec![]), Admit::Held);
    assert_eq!(l.counters().peer_busy_refusals, 1);
    // A finished load frees the slot.
    l.take_held(&types[0]);
    assert_eq!(l.hold(MS, types[2], 1, vec![]), Admit::Held);
}

#[test]
fn compile_time_is_charged_to_the_peer_that_started_the_load() {
    let config = LoaderConfig {
        compile_nanos_per_sec: 100_000_000,
        compile_burst_nanos: 200_000_000,
        ..LoaderConfig::default()
    };
    let mut l = CodeLoader::new(config);
    let (a, _) = module(10, 1);
    let (b, _) = module(10, 2);
    assert_eq!(l.hold_local(MS, a, Some(1), vec![]), Admit::Compile);
    l.hold(MS, a, 2, vec![]);
    l.compiled(MS, &a, Duration::from_millis(500));
    assert_eq!(l.take_held(&a).len(), 2);
    assert_eq!(
        l.hold_local(MS, b, Some(1), vec![]),
        Admit::Refused(RefuseReason::CompileBudget)
    );
    assert_eq!(l.hold_local(MS, b, Some(2), vec![]), Admit::Compile);
    assert_eq!(l.counters().compile_budget_refusals, 1);
    assert_eq!(l.counters().compile_nanos, 500_000_000);
    // 300 ms of debt at 100 ms/s: about three seconds later the peer may compile again.
    let (c, _) = module(10, 3);
    assert_eq!(
        l.hold_local(3 * 1000 * MS, c, Some(1), vec![]),
        Admit::Refused(RefuseReason::CompileBudget)
    );
    assert_eq!(l.hold_local(3010 * MS, c, Some(1), vec![]), Admit::Compile);
}

#[test]
fn a_slow_drip_cannot_extend_the_load_past_its_timeout() {
    let (ty, m) = module(200 * CHUNK_LEN, 1);
    let config = LoaderConfig {
        request_window: 1,
        ..LoaderConfig::default()
    };
    let load_timeout = config.load_timeout;
    let mut l = CodeLoader::new(config);
    l.hold(Duration::ZERO, ty, 4, vec![1]);
    // One new chunk every 90 ms, each just before the retry timer would fire.
    let mut at = Duration::ZERO;
    let mut idx = 0;
    while l.is_fetching(&ty) {
        at += 90 * MS;
        if let Some(t) = l.poll_timeout()
            && t <= at
        {
            l.handle_timeout(t);
        }
        if l.is_fetching(&ty) {
            l.handle_chunk(at, 4, &chunk(ty, &m, idx));
            idx += 1;
        }
    }
    assert!(at <= load_timeout + 90 * MS, "{at:?}");
    assert!(matches!(
        events(&mut l)[..],
        [LoaderEvent::Failed {
            reason: FailReason::Timeout,
            ..
        }]
    ));
    // The dripper is not asked for the type again for a while; an honest peer may be.
    assert!(l.is_negative(at, 4, &ty));
    assert_eq!(l.hold(at, ty, 5, vec![2]), Admit::Held);
}

#[test]
fn held_capsules_are_bounded_per_type_in_total_and_in_bytes() {
    let config = LoaderConfig {
        max_pending_per_type: 2,
        max_pending_total: 3,
        max_pending_bytes: 100,
        max_concurrent_fetches: 3,
        ..LoaderConfig::default()
    };
    let mut l = CodeLoader::new(config);
    let (a, _) = module(10, 1);
    let (b, _) = module(10, 2);
    let (c, _) = module(10, 3);
    let full = Admit::Refused(RefuseReason::QueueFull);
    assert_eq!(l.hold(MS, a, 1, vec![0; 10]), Admit::Held);
    assert_eq!(l.hold(MS, a, 1, vec![0; 10]), Admit::Held);
    assert_eq!(l.hold(MS, a, 1, vec![0; 10]), full);
    assert_eq!(l.hold(MS, b, 1, vec![0; 81]), full);
    assert_eq!(l.hold(MS, b, 1, vec![0; 80]), Admit::Held);
    assert_eq!(l.hold(MS, c, 1, vec![0; 1]), full);
    assert_eq!(l.counters().held_dropped_queue_full, 3);
    let occ = l.occupancy();
    assert_eq!((occ.held, occ.held_bytes, occ.fetches), (3, 100, 2));
}

#[test]
fn concurrent_fetches_are_bounded() {
    let config = LoaderConfig {
        max_concurrent_fetches: 1,
        ..LoaderConfig::default()
    };
    let mut l = CodeLoader::new(config);
    let (a, _) = module(10, 1);
    let (b, _) = module(10, 2);
    assert_eq!(l.hold(MS, a, 1, vec![]), Admit::Held);
    assert_eq!(
        l.hold(MS, b, 1, vec![]),
        Admit::Refused(RefuseReason::TooManyFetches)
    );
    assert_eq!(l.hold(MS, a, 2, vec![]), Admit::Held);
    assert_eq!(l.counters().fetches_refused, 1);
}

#[test]
fn load_timeout_drops_held_capsules_and_negative_caches() {
    let (ty, _) = module(3000, 1);
    let mut l = loader();
    l.hold(Duration::ZERO, ty, 4, vec![1]);
    l.hold(Duration::from_secs(1), ty, 4, vec![2]);
    while let Some(at) = l.poll_timeout() {
        assert!(at <= Duration::from_secs(5));
        l.handle_timeout(at);
    }
    assert_eq!(
        events(&mut l),
        vec![LoaderEvent::Failed {
            ty,
            reason: FailReason::Timeout,
            dropped: 2
        }]
    );
    let k = l.counters();
    assert_eq!((k.load_timeouts, k.held_dropped_failed), (1, 2));
    assert!(l.is_negative(Duration::from_secs(5), 4, &ty));
}

#[test]
fn take_held_ends_a_running_fetch() {
    let (ty, _) = module(3000, 1);
    let mut l = loader();
    l.hold(MS, ty, 4, vec![1]);
    assert_eq!(l.take_held(&ty), vec![(Some(4), vec![1])]);
    assert!(!l.is_fetching(&ty));
    assert_eq!(l.poll_timeout(), None);
}

#[test]
fn a_dripping_peer_is_left_for_another_candidate_like_a_silent_one() {
    let (ty, m) = module(40 * CHUNK_LEN, 1);
    let mut l = loader();
    l.hold(Duration::ZERO, ty, 4, vec![1]);
    l.hold(Duration::ZERO, ty, 5, vec![2]);
    requests(&mut l);
    // Peer 4 sends one new chunk just before each retry: progress by chunk, not by window.
    let mut idx = 0;
    while l.is_fetching(&ty) && requests_to(&mut l, 5) == 0 {
        let at = l.poll_timeout().unwrap();
        l.handle_chunk(at - MS, 4, &chunk(ty, &m, idx));
        idx += 1;
        l.handle_timeout(at);
    }
    assert_eq!(l.counters().stalled_peers, 1);
    assert!(
        idx <= 5,
        "left after max_attempts rounds, having sent {idx} chunks"
    );
    assert!(l.is_negative(Duration::from_secs(1), 4, &ty));
}

/// Requests sent to `peer` (drains the transmit queue).
fn requests_to(l: &mut CodeLoader<u8>, peer: u8) -> usize {
    requests(l).iter().filter(|r| r.0 == peer).count()
}
