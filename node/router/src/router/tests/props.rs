//! Property tests: arbitrary and mutated frames never panic, queues and tables stay bounded,
//! the ARP tables stay consistent, and what is forwarded is well-formed.

use std::net::SocketAddrV4;

use proptest::prelude::*;

use super::*;
use crate::RouterLimits;

fn limits() -> RouterLimits {
    RouterLimits {
        arp_entries: 8,
        arp_incomplete_entries: 3,
        arp_pending_per_neighbour: 2,
        arp_pending_total: 5,
        icmp_burst: 3,
        icmp_per_sec: 4,
        icmp_source_burst: 2,
        icmp_source_per_sec: 5,
        icmp_source_entries: 4,
        max_tx_frames: 16,
        max_tx_bytes: 16 * 1514,
        ..RouterLimits::default()
    }
}

/// Valid frames of every kind the router handles, to mutate.
fn seeds() -> Vec<Vec<u8>> {
    let mut opts = Ipv4Spec::udp(A, B, 1, 2, b"options");
    opts.options = vec![1; 8];
    let mut ttl1 = Ipv4Spec::echo(A, FAR, 1, 1, b"ttl");
    ttl1.ttl = 1;
    vec![
        Ipv4Spec::udp(A, B, 1, 2, b"forward me").frame(R0_MAC, A_MAC),
        Ipv4Spec::udp(A, FAR, 1, 2, b"via gw").frame(R0_MAC, A_MAC),
        Ipv4Spec::udp(A, "198.18.1.77".parse().unwrap(), 1, 2, b"unresolved").frame(R0_MAC, A_MAC),
        Ipv4Spec::udp(A, R0, 5000, 3322, b"capsule").frame(R0_MAC, A_MAC),
        Ipv4Spec::udp(A, R0, 5000, 53, b"closed").frame(R0_MAC, A_MAC),
        Ipv4Spec::echo(A, R1, 1, 1, b"ping").frame(R0_MAC, A_MAC),
        Ipv4Spec::udp(A, NOWHERE, 1, 2, b"x").frame(R0_MAC, A_MAC),
        opts.frame(R0_MAC, A_MAC),
        ttl1.frame(R0_MAC, A_MAC),
        arp_request(A_MAC, A, R0),
        arp_reply(R1_MAC, B_MAC, B, R1),
        arp_request(B_MAC, "198.18.1.77".parse().unwrap(), R1),
    ]
}

fn check_invariants(r: &Router) {
    let l = limits();
    let (frames, bytes) = r.queued_transmits();
    assert!(frames <= l.max_tx_frames && bytes <= l.max_tx_bytes);
    assert!(r.held_frames() <= l.arp_pending_total);
    let (resolved, resolving) = r.neighbour_counts();
    assert!(resolved <= l.arp_entries && resolving <= l.arp_incomplete_entries);
    let incomplete = r
        .neighbours(t(0))
        .filter(|n| n.state == crate::NeighbourState::Incomplete)
        .count();
    assert_eq!(incomplete, resolving);
    assert_eq!(r.neighbours(t(0)).count(), resolved + resolving);
    for n in r.neighbours(t(0)) {
        assert!(n.held <= l.arp_pending_per_neighbour);
    }
    r.arp.assert_consistent();
    assert!(r.icmp_sources() <= l.icmp_source_entries);
    let c = r.counters();
    assert_eq!(
        c.icmp_rate_limited,
        c.icmp_rate_limited_source
            + c.icmp_rate_limited_time_exceeded
            + c.icmp_rate_limited_unreachable
            + c.icmp_rate_limited_frag_needed
    );
}

/// A valid frame that makes the router resolve or answer something for an address picked by
/// `octet`: `kind % 4` = 0: forward from A toward 198.18.1.`octet` (a resolution on eth1);
/// 1: TTL 1 from 198.18.0.`octet` (time exceeded, back through a resolution on eth0);
/// 2: 1501 bytes with DF from 198.19.5.`octet` (fragmentation needed, back via gw0);
/// 3: UDP to a closed port of ours from 198.18.0.`octet` (port unreachable).
fn varied(kind: u8, octet: u8) -> (usize, Vec<u8>) {
    let near = std::net::Ipv4Addr::new(198, 18, 0, octet);
    let mac = [0x02, 0xee, 0, 0, 0, octet];
    match kind % 4 {
        0 => {
            let dst = std::net::Ipv4Addr::new(198, 18, 1, octet);
            (
                0,
                Ipv4Spec::udp(A, dst, 1, 2, b"resolve").frame(R0_MAC, A_MAC),
            )
        }
        1 => {
            let mut s = Ipv4Spec::udp(near, B, 1, 2, b"ttl");
            s.ttl = 1;
            (0, s.frame(R0_MAC, mac))
        }
        2 => {
            let far = std::net::Ipv4Addr::new(198, 19, 5, octet);
            let mut s = Ipv4Spec::new(far, B, 17, vec![0; 1501 - 20]);
            s.flags = 0b010;
            (0, s.frame(R0_MAC, GW0_MAC))
        }
        _ => (
            0,
            Ipv4Spec::udp(near, R0, 1, 53, b"closed").frame(R0_MAC, mac),
        ),
    }
}

#[derive(Debug, Clone)]
enum Step {
    Frame {
        iface: usize,
        bytes: Vec<u8>,
    },
    Mutated {
        seed: usize,
        iface: usize,
        flips: Vec<(usize, u8)>,
        cut: Option<usize>,
    },
    Timeout,
    Drain,
    Send {
        last_octet: u8,
        len: usize,
    },
    Varied {
        kind: u8,
        octet: u8,
        times: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (0usize..3, proptest::collection::vec(any::<u8>(), 0..120))
            .prop_map(|(iface, bytes)| Step::Frame { iface, bytes }),
        4 => (
            0usize..12,
            0usize..3,
            proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            proptest::option::of(any::<usize>()),
        )
            .prop_map(|(seed, iface, flips, cut)| Step::Mutated { seed, iface, flips, cut }),
        1 => Just(Step::Timeout),
        1 => Just(Step::Drain),
        1 => (any::<u8>(), 0usize..1600).prop_map(|(last_octet, len)| Step::Send { last_octet, len }),
        // Twelve addresses (more than the tables hold), in bursts (to reach the rate limits).
        3 => (any::<u8>(), 20u8..32, 1usize..8)
            .prop_map(|(kind, octet, times)| Step::Varied { kind, octet, times }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_input_never_panics_and_stays_bounded(
        steps in proptest::collection::vec((step(), 0u64..500), 1..60),
    ) {
        let mut r = router_with(|c| c.limits = limits());
        learn(&mut r, t(0), 0, A, A_MAC);
        let seeds = seeds();
        let mut now = t(0);
        for (s, dt) in steps {
            now += t(dt);
            match s {
                Step::Frame { iface, mut bytes } => {
                    check_verdict(&mut r, now, iface, &mut bytes);
                }
                Step::Mutated { seed, iface, flips, cut } => {
                    let mut f = seeds[seed % seeds.len()].clone();
                    for (at, x) in flips {
                        let i = at % f.len();
                        f[i] ^= x;
                    }
                    if let Some(c) = cut {
                        f.truncate(c % (f.len() + 1));
                    }
                    // The same bytes as a sibling worker's ARP copy, then as received.
                    r.handle_sibling_arp(now, iface, &f);
                    check_verdict(&mut r, now, iface, &mut f);
                }
                Step::Timeout => r.handle_timeout(now),
                Step::Drain => {
                    drain(&mut r);
                }
                Step::Send { last_octet, len } => {
                    let dst = std::net::Ipv4Addr::new(198, 18, 1, last_octet);
                    r.send_udp(now, SocketAddrV4::new(dst, 9), &vec![0; len]);
                }
                Step::Varied { kind, octet, times } => {
                    let (iface, f) = varied(kind, octet);
                    for _ in 0..times {
                        check_verdict(&mut r, now, iface, &mut f.clone());
                    }
                }
            }
            check_invariants(&r);
        }
        // Timers always move forward: a deadline in the past is handled by one call.
        if let Some(d) = r.poll_timeout() {
            r.handle_timeout(d);
            prop_assert!(r.poll_timeout().is_none_or(|n| n > d));
        }
    }
}

/// Whatever the verdict, it must be consistent with the frame.
fn check_verdict(r: &mut Router, now: std::time::Duration, iface: usize, f: &mut [u8]) {
    let len = f.len();
    match r.handle_frame(now, iface, f) {
        Verdict::Forward { iface } => {
            assert!(iface < 2);
            assert_eq!(f.len(), len);
            let hlen = usize::from(f[14] & 0x0f) * 4;
            assert!(
                crate::checksum::verify(&f[14..14 + hlen]),
                "forwarded header verifies"
            );
            assert_eq!(&f[6..12], &r.interfaces()[iface].mac);
        }
        Verdict::Capsule { payload, to, .. } => {
            assert!(payload.start <= payload.end && payload.end <= f.len());
            assert!(r.owns(*to.ip()));
        }
        Verdict::Done => {}
    }
}
