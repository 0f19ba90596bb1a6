//! ICMP error rate limits: a bucket per class (time exceeded, unreachable, fragmentation
//! needed) and per source address, each refusal counted by the bucket that refused.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::*;

fn ttl1(src: Ipv4Addr, dst: Ipv4Addr) -> Ipv4Spec {
    let mut s = Ipv4Spec::udp(src, dst, 1, 2, b"ttl");
    s.ttl = 1;
    s
}

/// A UDP packet of `len` bytes (IP header included) with DF set.
fn big_df(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> Ipv4Spec {
    let mut s = Ipv4Spec::new(src, dst, 17, vec![0; len - 20]);
    s.flags = 0b010;
    s
}

/// `(to, type, code, rest)` of every ICMP message queued, in order; other frames skipped.
fn icmp_out(r: &mut Router) -> Vec<(Ipv4Addr, u8, u8, [u8; 4])> {
    drain(r)
        .into_iter()
        .filter(|(_, f)| f.get(12..14) == Some(&[0x08, 0x00]))
        .map(|(_, f)| parse_ip(&f))
        .filter(|ip| ip.proto == 1)
        .map(|ip| {
            let (ty, code, rest, _) = parse_icmp(&ip.payload);
            (ip.dst, ty, code, rest)
        })
        .collect()
}

/// 198.19.5.`x`, behind gw0 (so errors to it need no ARP beyond gw0's).
fn behind_gw0(x: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 5, x)
}

#[test]
fn the_class_bucket_gives_its_burst_then_its_rate() {
    let mut r = router_with(|c| {
        c.limits.icmp_burst = 2;
        c.limits.icmp_per_sec = 1;
    });
    learn(&mut r, t(0), 0, A, A_MAC);
    let spec = ttl1(A, B);
    for _ in 0..3 {
        let mut f = spec.frame(R0_MAC, A_MAC);
        r.handle_frame(t(0), 0, &mut f);
    }
    assert_eq!(drain(&mut r).len(), 2);
    let c = r.counters();
    assert_eq!(
        (c.icmp_rate_limited, c.icmp_rate_limited_time_exceeded),
        (1, 1)
    );
    assert_eq!(c.icmp_rate_limited_source, 0, "A's own bucket holds 10");
    assert_eq!(r.counters().drop_count(DropReason::TtlExceeded), 3);
    let mut f = spec.frame(R0_MAC, A_MAC);
    r.handle_frame(t(999), 0, &mut f);
    assert!(drain(&mut r).is_empty());
    let mut f = spec.frame(R0_MAC, A_MAC);
    r.handle_frame(t(2000), 0, &mut f);
    assert_eq!(drain(&mut r).len(), 1, "refilled after a second");
    assert_eq!(r.counters().icmp_sent, 3);
}

#[test]
fn a_ttl_flood_from_one_source_does_not_starve_another_sources_errors() {
    // Default limits; eth0's MTU is 1000 so that B's large DF packet to A needs fragmentation.
    let mut r = router_with(|c| c.interfaces[0].mtu = 1000);
    let l = *r.limits();
    learn(&mut r, t(0), 0, A, A_MAC);
    learn(&mut r, t(0), 1, B, B_MAC);
    let flood = 10_000u64; // 10 000 TTL=1 packets/s for a second: 1000 × A's allowance
    let mut out = Vec::new();
    for i in 0..flood {
        let now = Duration::from_micros(i * 100);
        let mut f = ttl1(A, B).frame(R0_MAC, A_MAC);
        assert_eq!(r.handle_frame(now, 0, &mut f), Verdict::Done);
        if i == flood / 2 {
            // B, at the same instant, right behind one of A's packets.
            let mut f = ttl1(B, A).frame(R1_MAC, B_MAC);
            r.handle_frame(now, 1, &mut f);
            let mut f = big_df(B, A, 1200).frame(R1_MAC, B_MAC);
            assert_eq!(r.handle_frame(now, 1, &mut f), Verdict::Done);
        }
        if i % 256 == 0 {
            out.extend(icmp_out(&mut r));
        }
    }
    out.extend(icmp_out(&mut r));
    let to_b: Vec<_> = out.iter().filter(|m| m.0 == B).collect();
    assert_eq!(
        to_b,
        [&(B, 11, 0, [0; 4]), &(B, 3, 4, [0, 0, 0x03, 0xe8])],
        "B gets its time exceeded and its fragmentation needed (MTU 1000)"
    );
    let to_a = out.iter().filter(|m| m.0 == A).count() as u64;
    assert!(
        out.iter()
            .filter(|m| m.0 == A)
            .all(|m| (m.1, m.2) == (11, 0))
    );
    // A got its burst and its rate over the second, no more.
    let (burst, rate) = (
        u64::from(l.icmp_source_burst),
        u64::from(l.icmp_source_per_sec),
    );
    assert!(to_a >= burst + rate - 1 && to_a <= burst + rate, "{to_a}");
    let c = r.counters();
    assert_eq!(c.icmp_sent, to_a + 2);
    assert_eq!(c.icmp_rate_limited_source, flood - to_a);
    assert_eq!(
        (
            c.icmp_rate_limited_time_exceeded,
            c.icmp_rate_limited_unreachable,
            c.icmp_rate_limited_frag_needed
        ),
        (0, 0, 0),
        "refusals blamed on A's bucket cost the class buckets nothing"
    );
    assert_eq!(c.icmp_rate_limited, c.icmp_rate_limited_source);
}

#[test]
fn time_exceeded_from_many_sources_does_not_starve_fragmentation_needed() {
    let mut r = router_with(|c| {
        c.interfaces[1].mtu = 1000;
        c.limits.icmp_burst = 5;
        c.limits.icmp_per_sec = 10;
    });
    learn(&mut r, t(0), 0, GW0, GW0_MAC);
    learn(&mut r, t(0), 1, B, B_MAC);
    for x in 1..=100 {
        let mut f = ttl1(behind_gw0(x), B).frame(R0_MAC, GW0_MAC);
        assert_eq!(r.handle_frame(t(0), 0, &mut f), Verdict::Done);
    }
    let out = icmp_out(&mut r);
    assert_eq!(out.len(), 5, "the time-exceeded burst");
    assert!(out.iter().all(|m| (m.1, m.2) == (11, 0)));
    let c = r.counters();
    assert_eq!(c.icmp_rate_limited_time_exceeded, 95);
    assert_eq!(c.icmp_rate_limited_source, 0, "each source sent one");
    assert_eq!(r.icmp_sources(), 5, "refused newcomers take no table room");
    // The same instant: path-MTU discovery and unreachables still get answers.
    let src = behind_gw0(200);
    let mut f = big_df(src, B, 1200).frame(R0_MAC, GW0_MAC);
    assert_eq!(r.handle_frame(t(0), 0, &mut f), Verdict::Done);
    let mut f = Ipv4Spec::udp(src, NOWHERE, 1, 2, b"x").frame(R0_MAC, GW0_MAC);
    assert_eq!(r.handle_frame(t(0), 0, &mut f), Verdict::Done);
    assert_eq!(
        icmp_out(&mut r),
        [(src, 3, 4, [0, 0, 0x03, 0xe8]), (src, 3, 0, [0; 4])]
    );
    // Unreachables of every code share one bucket: five more, then refused.
    for x in 1..=6 {
        let mut f = Ipv4Spec::udp(behind_gw0(x), NOWHERE, 1, 2, b"x").frame(R0_MAC, GW0_MAC);
        r.handle_frame(t(0), 0, &mut f);
    }
    assert_eq!(icmp_out(&mut r).len(), 4);
    let c = r.counters();
    assert_eq!(
        (
            c.icmp_rate_limited_unreachable,
            c.icmp_rate_limited_frag_needed
        ),
        (2, 0)
    );
}

#[test]
fn per_source_buckets_are_lru_bounded_and_evictions_counted() {
    let mut r = router_with(|c| {
        c.limits.icmp_source_entries = 4;
        c.limits.icmp_source_burst = 1;
        c.limits.icmp_source_per_sec = 0;
    });
    learn(&mut r, t(0), 0, GW0, GW0_MAC);
    for x in 1..=10 {
        let mut f = ttl1(behind_gw0(x), B).frame(R0_MAC, GW0_MAC);
        r.handle_frame(t(0), 0, &mut f);
        assert!(r.icmp_sources() <= 4);
    }
    assert_eq!(icmp_out(&mut r).len(), 10);
    assert_eq!(r.icmp_sources(), 4);
    assert_eq!(r.counters().icmp_sources_evicted, 6);
    // 10 is remembered (and spent), 1 was evicted (and starts afresh).
    for x in [10, 1] {
        let mut f = ttl1(behind_gw0(x), B).frame(R0_MAC, GW0_MAC);
        r.handle_frame(t(0), 0, &mut f);
    }
    assert_eq!(icmp_out(&mut r), [(behind_gw0(1), 11, 0, [0; 4])]);
    let c = r.counters();
    assert_eq!((c.icmp_rate_limited_source, c.icmp_sources_evicted), (1, 7));
}

#[test]
fn echo_replies_take_no_tokens() {
    let mut r = router_with(|c| {
        c.limits.icmp_burst = 1;
        c.limits.icmp_source_burst = 1;
        c.limits.icmp_per_sec = 0;
        c.limits.icmp_source_per_sec = 0;
    });
    learn(&mut r, t(0), 0, A, A_MAC);
    for seq in 0..20 {
        let mut f = Ipv4Spec::echo(A, R0, 1, seq, b"ping").frame(R0_MAC, A_MAC);
        r.handle_frame(t(0), 0, &mut f);
    }
    let mut f = ttl1(A, B).frame(R0_MAC, A_MAC);
    r.handle_frame(t(0), 0, &mut f);
    let out = icmp_out(&mut r);
    assert_eq!(out.iter().filter(|m| m.1 == 0).count(), 20, "echo replies");
    assert_eq!(out.iter().filter(|m| m.1 == 11).count(), 1, "and the error");
    assert_eq!(r.counters().icmp_rate_limited, 0);
}
