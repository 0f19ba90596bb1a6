//! ARP: answering, learning, resolving, holding, retries, expiry, bounds, spoofing.

use std::net::Ipv4Addr;

use pnet_packet::Packet;
use pnet_packet::arp::ArpPacket;
use pnet_packet::ethernet::EthernetPacket;

use super::*;
use crate::router::NeighbourState;

/// `(eth dst, op, sha, spa, tha, tpa)` of an ARP frame.
fn parse_arp(f: &[u8]) -> ([u8; 6], u16, [u8; 6], Ipv4Addr, [u8; 6], Ipv4Addr) {
    let e = EthernetPacket::new(f).unwrap();
    assert_eq!(e.get_ethertype().0, 0x0806);
    let a = ArpPacket::new(e.payload()).unwrap();
    assert_eq!((a.get_hw_addr_len(), a.get_proto_addr_len()), (6, 4));
    assert_eq!(e.get_source().octets(), a.get_sender_hw_addr().octets());
    (
        e.get_destination().octets(),
        a.get_operation().0,
        a.get_sender_hw_addr().octets(),
        a.get_sender_proto_addr(),
        a.get_target_hw_addr().octets(),
        a.get_target_proto_addr(),
    )
}

fn forward_a_to(r: &mut Router, now_ms: u64, dst: Ipv4Addr, tag: u8) -> Verdict {
    let mut f = Ipv4Spec::udp(A, dst, 1, 2, &[tag]).frame(R0_MAC, A_MAC);
    r.handle_frame(t(now_ms), 0, &mut f)
}

#[test]
fn answers_requests_for_the_ingress_address_and_learns_the_sender() {
    let mut r = router();
    let mut f = arp_request(A_MAC, A, R0);
    assert_eq!(r.handle_frame(t(0), 0, &mut f), Verdict::Done);
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 0);
    assert_eq!(parse_arp(&out[0].1), (A_MAC, 2, R0_MAC, R0, A_MAC, A));
    assert_eq!(
        (r.counters().arp_replies_sent, r.counters().arp_learned),
        (1, 1)
    );
    // Learned: forwarding to A needs no resolution.
    let mut f = Ipv4Spec::udp(B, A, 1, 2, b"x").frame(R1_MAC, B_MAC);
    assert_eq!(
        r.handle_frame(t(0), 1, &mut f),
        Verdict::Forward { iface: 0 }
    );
    assert_eq!(&f[..6], &A_MAC);
    let n: Vec<_> = r.neighbours(t(0)).collect();
    assert_eq!(n.len(), 1);
    assert_eq!(
        (n[0].ip, n[0].iface, n[0].mac, n[0].state),
        (A, 0, Some(A_MAC), NeighbourState::Reachable)
    );
}

#[test]
fn requests_for_other_addresses_are_not_answered_nor_learned() {
    let mut r = router();
    // eth1's address asked on eth0 (arp_ignore=1), and some other host's address.
    assert_drop(&mut r, 0, arp_request(A_MAC, A, R1), DropReason::ArpIgnored);
    assert_drop(
        &mut r,
        0,
        arp_request(A_MAC, A, "198.18.0.77".parse().unwrap()),
        DropReason::ArpIgnored,
    );
    assert!(drain(&mut r).is_empty());
    assert_eq!(r.neighbours(t(0)).count(), 0);
}

#[test]
fn replies_and_gratuitous_arp_only_update_existing_entries() {
    let mut r = router();
    // Unsolicited reply and gratuitous announcements: nothing created.
    assert_drop(
        &mut r,
        0,
        arp_reply(R0_MAC, A_MAC, A, R0),
        DropReason::ArpIgnored,
    );
    assert_drop(
        &mut r,
        0,
        arp(BCAST, 1, A_MAC, A, [0; 6], A),
        DropReason::ArpIgnored,
    );
    assert_drop(
        &mut r,
        0,
        arp(BCAST, 2, A_MAC, A, BCAST, A),
        DropReason::ArpIgnored,
    );
    assert_eq!(r.neighbours(t(0)).count(), 0);

    learn(&mut r, t(0), 0, A, A_MAC);
    // A moves to a new MAC and announces it: the entry follows.
    let new_mac = [0x02, 0xaa, 0, 0, 0, 0x99];
    let mut f = arp(BCAST, 1, new_mac, A, [0; 6], A);
    assert_eq!(r.handle_frame(t(5), 0, &mut f), Verdict::Done);
    assert_eq!(r.counters().arp_updated, 1);
    assert!(drain(&mut r).is_empty(), "gratuitous ARP is not answered");
    let mut f = Ipv4Spec::udp(B, A, 1, 2, b"x").frame(R1_MAC, B_MAC);
    assert_eq!(
        r.handle_frame(t(5), 1, &mut f),
        Verdict::Forward { iface: 0 }
    );
    assert_eq!(&f[..6], &new_mac);
}

#[test]
fn spoofed_and_malformed_arp_is_dropped_and_never_learned() {
    let mut r = router();
    // Claims one of our addresses (either interface's), or one of our MACs.
    assert_drop(&mut r, 0, arp_request(A_MAC, R0, R0), DropReason::ArpSpoof);
    assert_drop(
        &mut r,
        0,
        arp_reply(R0_MAC, A_MAC, R1, R0),
        DropReason::ArpSpoof,
    );
    assert_drop(&mut r, 0, arp_request(R1_MAC, A, R0), DropReason::ArpSpoof);
    // Malformed.
    let mut f = arp_request(A_MAC, A, R0);
    f[14 + 1] = 6; // hardware type 6
    assert_drop(&mut r, 0, f, DropReason::BadArp);
    let mut f = arp_request(A_MAC, A, R0);
    f[14 + 7] = 3; // operation 3
    assert_drop(&mut r, 0, f, DropReason::BadArp);
    let mut f = arp_request(A_MAC, A, R0);
    f[14 + 4] = 8; // hardware address length 8
    assert_drop(&mut r, 0, f, DropReason::BadArp);
    assert_drop(
        &mut r,
        0,
        arp(BCAST, 1, [0x01, 0, 0x5e, 0, 0, 1], A, [0; 6], R0),
        DropReason::BadArp,
    );
    assert_drop(
        &mut r,
        0,
        arp(BCAST, 1, [0; 6], A, [0; 6], R0),
        DropReason::BadArp,
    );
    assert_drop(
        &mut r,
        0,
        arp_request(A_MAC, A, R0)[..14 + 27].to_vec(),
        DropReason::Truncated,
    );
    // Subnet broadcast or network address as sender.
    assert_drop(
        &mut r,
        0,
        arp_request(A_MAC, "198.18.0.255".parse().unwrap(), R0),
        DropReason::BadArp,
    );
    assert_drop(
        &mut r,
        0,
        arp_request(A_MAC, "198.18.0.0".parse().unwrap(), R0),
        DropReason::BadArp,
    );
    // From outside the interface's subnet (eth1's subnet, asking on eth0).
    assert_drop(
        &mut r,
        0,
        arp_request(B_MAC, B, R0),
        DropReason::ArpOffSubnet,
    );
    assert!(drain(&mut r).is_empty());
    assert_eq!(r.neighbours(t(0)).count(), 0);
}

#[test]
fn address_probes_are_answered_without_learning() {
    let mut r = router();
    let mut f = arp_request(A_MAC, Ipv4Addr::UNSPECIFIED, R0);
    assert_eq!(r.handle_frame(t(0), 0, &mut f), Verdict::Done);
    let out = drain(&mut r);
    assert_eq!(
        parse_arp(&out[0].1),
        (A_MAC, 2, R0_MAC, R0, A_MAC, Ipv4Addr::UNSPECIFIED)
    );
    assert_eq!(r.neighbours(t(0)).count(), 0);
    assert_drop(
        &mut r,
        0,
        arp_request(A_MAC, Ipv4Addr::UNSPECIFIED, A),
        DropReason::ArpIgnored,
    );
}

#[test]
fn unresolved_next_hop_is_resolved_and_held_frames_released_in_order() {
    let mut r = router();
    learn(&mut r, t(0), 0, A, A_MAC);
    assert_eq!(forward_a_to(&mut r, 10, B, 1), Verdict::Done);
    assert_eq!(forward_a_to(&mut r, 11, B, 2), Verdict::Done);
    let out = drain(&mut r);
    assert_eq!(out.len(), 1, "one request per resolution, not per frame");
    assert_eq!(out[0].0, 1);
    assert_eq!(parse_arp(&out[0].1), (BCAST, 1, R1_MAC, R1, [0; 6], B));
    assert_eq!(r.held_frames(), 2);
    assert_eq!(r.poll_timeout(), Some(t(1010)));
    assert_eq!(
        r.neighbours(t(11)).find(|n| n.ip == B).map(|n| n.state),
        Some(NeighbourState::Incomplete)
    );

    let mut f = arp_reply(R1_MAC, B_MAC, B, R1);
    assert_eq!(r.handle_frame(t(20), 1, &mut f), Verdict::Done);
    let out = drain(&mut r);
    assert_eq!(out.len(), 2);
    for (i, (iface, f)) in out.iter().enumerate() {
        assert_eq!(*iface, 1);
        let ip = parse_ip(f);
        assert_eq!(
            (ip.eth_dst, ip.eth_src, ip.dst, ip.ttl),
            (B_MAC, R1_MAC, B, 63)
        );
        assert_eq!(ip.payload[8], i as u8 + 1, "arrival order kept");
    }
    assert_eq!(r.held_frames(), 0);
    assert_eq!(r.poll_timeout(), None);
    let c = r.counters();
    assert_eq!((c.arp_held, c.arp_released, c.forwarded), (2, 2, 0));
    assert_eq!(
        forward_a_to(&mut r, 30, B, 3),
        Verdict::Forward { iface: 1 }
    );
}

#[test]
fn held_frames_are_bounded_per_neighbour_and_in_total() {
    let mut r = router_with(|c| {
        c.limits.arp_pending_per_neighbour = 2;
        c.limits.arp_pending_total = 3;
    });
    learn(&mut r, t(0), 0, A, A_MAC);
    for i in 0..3 {
        forward_a_to(&mut r, 0, B, i);
    }
    assert_eq!(r.counters().drop_count(DropReason::ArpPendingFull), 1);
    forward_a_to(&mut r, 0, "198.18.1.21".parse().unwrap(), 9);
    forward_a_to(&mut r, 0, "198.18.1.22".parse().unwrap(), 9);
    assert_eq!(r.held_frames(), 3);
    assert_eq!(r.counters().drop_count(DropReason::ArpPendingFull), 2);
    // Every resolution was still started.
    assert_eq!(r.counters().arp_requests_sent, 3);
}

#[test]
fn retries_then_failure_drops_held_frames_with_host_unreachable() {
    let mut r = router(); // 3 requests, 1 s apart
    learn(&mut r, t(0), 0, A, A_MAC);
    let spec = Ipv4Spec::udp(A, B, 1, 2, b"lost");
    let mut f = spec.frame(R0_MAC, A_MAC);
    assert_eq!(r.handle_frame(t(0), 0, &mut f), Verdict::Done);
    assert_eq!(drain(&mut r).len(), 1);
    r.handle_timeout(t(999));
    assert!(drain(&mut r).is_empty(), "not due yet");
    for at in [1000, 2000] {
        assert_eq!(r.poll_timeout(), Some(t(at)));
        r.handle_timeout(t(at));
        let out = drain(&mut r);
        assert_eq!(out.len(), 1);
        assert_eq!(parse_arp(&out[0].1).5, B);
    }
    r.handle_timeout(t(3000));
    let out = drain(&mut r);
    assert_eq!(out.len(), 1, "host unreachable only");
    let ip = parse_ip(&out[0].1);
    assert_eq!((ip.src, ip.dst, ip.eth_dst), (R0, A, A_MAC));
    let (ty, code, _, body) = parse_icmp(&ip.payload);
    assert_eq!((ty, code), (3, 1));
    assert_eq!(
        &body[12..20],
        &spec.packet()[12..20],
        "quotes the lost packet's addresses"
    );
    assert_eq!(r.counters().drop_count(DropReason::ArpFailed), 1);
    assert_eq!(
        (r.counters().arp_failed, r.counters().arp_requests_sent),
        (1, 3)
    );
    assert_eq!((r.held_frames(), r.poll_timeout()), (0, None));
    assert_eq!(r.neighbours(t(3000)).filter(|n| n.ip == B).count(), 0);
}

#[test]
fn host_unreachable_is_rate_limited_and_generated_frames_get_none() {
    let mut r = router_with(|c| {
        c.limits.icmp_burst = 1;
        c.limits.icmp_per_sec = 0;
        c.limits.arp_retries = 1;
    });
    learn(&mut r, t(0), 0, A, A_MAC);
    for i in 0..3 {
        forward_a_to(&mut r, 0, B, i);
    }
    assert!(r.send_udp(t(0), std::net::SocketAddrV4::new(B, 9), b"mine"));
    drain(&mut r);
    r.handle_timeout(t(1000));
    assert_eq!(drain(&mut r).len(), 1);
    assert_eq!(r.counters().drop_count(DropReason::ArpFailed), 4);
    assert_eq!(r.counters().icmp_rate_limited, 2);
}

#[test]
fn stale_entries_keep_forwarding_while_re_resolved_by_unicast() {
    let mut r = resolved_router(); // learned at 0, reachable 30 s
    assert_eq!(
        forward_a_to(&mut r, 29_999, B, 0),
        Verdict::Forward { iface: 1 }
    );
    assert!(drain(&mut r).is_empty());
    assert_eq!(
        forward_a_to(&mut r, 30_000, B, 0),
        Verdict::Forward { iface: 1 }
    );
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    assert_eq!(
        parse_arp(&out[0].1),
        (B_MAC, 1, R1_MAC, R1, [0; 6], B),
        "unicast probe"
    );
    assert_eq!(
        r.neighbours(t(30_000)).find(|n| n.ip == B).map(|n| n.state),
        Some(NeighbourState::Stale)
    );
    // One probe at a time.
    assert_eq!(
        forward_a_to(&mut r, 30_100, B, 0),
        Verdict::Forward { iface: 1 }
    );
    assert!(drain(&mut r).is_empty());
    // The reply refreshes it.
    let mut f = arp_reply(R1_MAC, B_MAC, B, R1);
    r.handle_frame(t(30_200), 1, &mut f);
    assert_eq!(r.poll_timeout(), None);
    assert_eq!(
        r.neighbours(t(30_200)).find(|n| n.ip == B).map(|n| n.state),
        Some(NeighbourState::Reachable)
    );
}

#[test]
fn stale_entry_without_answer_is_removed_then_resolved_afresh() {
    let mut r = resolved_router();
    assert_eq!(
        forward_a_to(&mut r, 40_000, B, 0),
        Verdict::Forward { iface: 1 }
    );
    for at in [41_000, 42_000, 43_000] {
        r.handle_timeout(t(at));
    }
    let out = drain(&mut r);
    assert_eq!(out.len(), 3, "probe + 2 retries, no ICMP: nothing was held");
    assert_eq!(r.counters().arp_failed, 1);
    assert_eq!(
        forward_a_to(&mut r, 43_001, B, 0),
        Verdict::Done,
        "held: resolving again"
    );
    let out = drain(&mut r);
    assert_eq!(parse_arp(&out[0].1).0, BCAST);
}

#[test]
fn table_is_bounded_lru_and_evictions_are_counted() {
    let mut r = router_with(|c| c.limits.arp_entries = 3);
    for i in 0..5u8 {
        learn(
            &mut r,
            t(0),
            0,
            Ipv4Addr::new(198, 18, 0, 100 + i),
            [2, 0, 0, 0, 1, i],
        );
    }
    assert_eq!(r.neighbours(t(0)).count(), 3);
    assert_eq!(r.counters().arp_evicted, 2);
    // A completed resolution moves into the full resolved table, evicting its LRU entry
    // (A: looking up B does not touch it).
    let mut r = router_with(|c| c.limits.arp_entries = 2);
    learn(&mut r, t(0), 0, A, A_MAC);
    learn(&mut r, t(0), 0, GW0, GW0_MAC);
    forward_a_to(&mut r, 0, B, 0); // B incomplete, holds 1 frame
    assert_eq!(r.neighbour_counts(), (2, 1));
    drain(&mut r);
    let mut f = arp_reply(R1_MAC, B_MAC, B, R1);
    r.handle_frame(t(5), 1, &mut f);
    assert_eq!(drain(&mut r).len(), 1, "the held frame, released");
    assert_eq!(r.neighbour_counts(), (2, 0));
    let ips: Vec<_> = r.neighbours(t(5)).map(|n| n.ip).collect();
    assert_eq!(ips, [B, GW0]);
    assert_eq!(r.counters().arp_evicted, 1);
    assert_eq!(r.counters().drop_count(DropReason::ArpEvicted), 0);
}

/// Run every timer due up to `until`, in order (as a driver polling on time would).
fn run_timers(r: &mut Router, until: u64) {
    while let Some(d) = r.poll_timeout().filter(|&d| d <= t(until)) {
        r.handle_timeout(d);
    }
}

#[test]
fn a_flood_of_resolutions_is_refused_when_full_and_never_evicts_resolved_neighbours() {
    let mut r = router_with(|c| {
        c.limits.arp_entries = 4;
        c.limits.arp_incomplete_entries = 3;
    });
    learn(&mut r, t(0), 0, A, A_MAC);
    learn(&mut r, t(0), 1, B, B_MAC);
    learn(&mut r, t(0), 1, GW1, GW1_MAC);
    for i in 0..50u8 {
        let silent = Ipv4Addr::new(198, 18, 1, 100 + i);
        assert_eq!(forward_a_to(&mut r, u64::from(i), silent, i), Verdict::Done);
    }
    let c = r.counters();
    assert_eq!(
        c.drop_count(DropReason::ArpIncompleteFull),
        47,
        "refused, counted"
    );
    assert_eq!(c.dropped_total(), 47);
    assert_eq!((c.arp_requests_sent, c.arp_held, c.arp_evicted), (3, 3, 0));
    assert_eq!(r.neighbour_counts(), (3, 3));
    assert_eq!(r.held_frames(), 3);
    assert_eq!(
        drain(&mut r).len(),
        3,
        "one request per accepted resolution"
    );
    // Every resolved neighbour is still there and used: forwarding to B, and via gw1.
    assert_eq!(
        forward_a_to(&mut r, 60, B, 0),
        Verdict::Forward { iface: 1 }
    );
    assert_eq!(
        forward_a_to(&mut r, 60, FAR, 0),
        Verdict::Forward { iface: 1 }
    );
    let mut back = Ipv4Spec::udp(B, A, 1, 2, b"back").frame(R1_MAC, B_MAC);
    assert_eq!(
        r.handle_frame(t(60), 1, &mut back),
        Verdict::Forward { iface: 0 }
    );
    assert_eq!(&back[..6], &A_MAC);
    // The resolutions fail in their time (host unreachable for each held frame), and
    // the table takes new ones again.
    run_timers(&mut r, 5000);
    assert_eq!(r.counters().arp_failed, 3);
    assert_eq!(r.counters().drop_count(DropReason::ArpFailed), 3);
    assert_eq!(r.neighbour_counts(), (3, 0));
    let out = drain(&mut r);
    assert_eq!(
        out.len(),
        6 + 3,
        "two retries each, then host unreachable to A"
    );
    assert_eq!(
        forward_a_to(&mut r, 5000, Ipv4Addr::new(198, 18, 1, 200), 0),
        Verdict::Done
    );
    assert_eq!(r.neighbour_counts(), (3, 1));
    assert_eq!(r.counters().drop_count(DropReason::ArpIncompleteFull), 47);
}

#[test]
fn at_default_limits_thousands_of_silent_next_hops_leave_live_neighbours_alone() {
    // The review's scenario: eth1 on a /16, packets toward 2000 silent on-link addresses.
    let n = Ipv4Addr::new(10, 0, 0, 2);
    let n_mac = [0x02, 0x10, 0, 0, 0, 2];
    let mut r = router_with(|c| {
        c.interfaces[1].addr = Ipv4Addr::new(10, 0, 0, 1);
        c.interfaces[1].prefix_len = 16;
        c.routes.clear();
    });
    let l = *r.limits();
    learn(&mut r, t(0), 0, A, A_MAC);
    learn(&mut r, t(0), 1, n, n_mac);
    for i in 0..500u16 {
        let [hi, lo] = i.to_be_bytes();
        learn(
            &mut r,
            t(0),
            1,
            Ipv4Addr::new(10, 0, 1 + hi, lo),
            [2, 0x11, 0, 0, hi, lo],
        );
    }
    let flood = 2000u16;
    for i in 0..flood {
        let [hi, lo] = i.to_be_bytes();
        let silent = Ipv4Addr::new(10, 0, 8 + hi, lo);
        assert_eq!(forward_a_to(&mut r, 10, silent, 0), Verdict::Done);
        if i % 256 == 0 {
            drain(&mut r);
        }
    }
    let c = r.counters();
    assert_eq!(l.arp_incomplete_entries, 256);
    assert_eq!(r.neighbour_counts(), (502, 256));
    assert_eq!(
        c.drop_count(DropReason::ArpIncompleteFull),
        u64::from(flood) - 256
    );
    assert_eq!(
        (c.arp_evicted, c.drop_count(DropReason::ArpEvicted)),
        (0, 0)
    );
    assert!(r.held_frames() <= l.arp_pending_total);
    let mut f = Ipv4Spec::udp(A, n, 1, 2, b"still here").frame(R0_MAC, A_MAC);
    assert_eq!(
        r.handle_frame(t(20), 0, &mut f),
        Verdict::Forward { iface: 1 }
    );
    assert_eq!(&f[..6], &n_mac);
    assert!(
        r.neighbours(t(20))
            .any(|e| e.ip == n && e.mac == Some(n_mac))
    );
}

/// Two workers' routers on the same interfaces: `w0` forwards toward an unknown next hop
/// and asks; the reply reaches `w1`, which did not ask.
#[test]
fn a_reply_that_reaches_a_sibling_completes_the_resolution_of_the_worker_that_asked() {
    let (mut w0, mut w1) = (router(), router());
    learn(&mut w0, t(0), 0, A, A_MAC);
    assert_eq!(forward_a_to(&mut w0, 10, B, 1), Verdict::Done);
    let request = drain(&mut w0);
    assert_eq!(request.len(), 1);
    // w0's request, shown to w1: w1 resolves too, without asking itself.
    w1.handle_sibling_arp(t(10), 1, &request[0].1);
    assert!(drain(&mut w1).is_empty(), "no request of its own");
    assert_eq!(
        w1.neighbours(t(10)).find(|n| n.ip == B).map(|n| n.state),
        Some(NeighbourState::Incomplete)
    );

    // The reply reaches w1: it completes there, and nothing is held there.
    let mut reply = arp_reply(R1_MAC, B_MAC, B, R1);
    assert_eq!(w1.handle_frame(t(20), 1, &mut reply.clone()), Verdict::Done);
    assert!(drain(&mut w1).is_empty());
    assert_eq!(w1.counters().arp_learned, 1);
    // … and, shown to w0, completes w0's resolution and releases its held frame.
    w0.handle_sibling_arp(t(20), 1, &reply);
    let out = drain(&mut w0);
    assert_eq!(out.len(), 1);
    let ip = parse_ip(&out[0].1);
    assert_eq!((out[0].0, ip.eth_dst, ip.dst), (1, B_MAC, B));
    assert_eq!(w0.held_frames(), 0);
    assert_eq!(w0.poll_timeout(), None, "no retry left running");
    assert_eq!(w1.poll_timeout(), None);
    assert_eq!(
        forward_a_to(&mut w0, 30, B, 2),
        Verdict::Forward { iface: 1 }
    );
    assert_eq!(
        (w0.counters().dropped_total(), w1.counters().dropped_total()),
        (0, 0)
    );
    // A sibling's request for a neighbour already known changes nothing.
    w1.handle_sibling_arp(t(40), 1, &request[0].1);
    assert_eq!(
        w1.neighbours(t(40)).find(|n| n.ip == B).map(|n| n.state),
        Some(NeighbourState::Reachable)
    );
    // Without the sibling, w0 would have ignored the reply (it reached a worker that
    // never asked): the rule against unsolicited replies holds per worker.
    let mut lone = router();
    assert_eq!(lone.handle_frame(t(20), 1, &mut reply), Verdict::Done);
    assert_eq!(lone.counters().drop_count(DropReason::ArpIgnored), 1);
    assert!(lone.neighbours(t(20)).next().is_none());
}

#[test]
fn a_sibling_answers_requests_and_the_others_learn_without_answering_or_counting() {
    let (mut w0, mut w1) = (router(), router());
    let ask = arp_request(A_MAC, A, R0);
    assert_eq!(w0.handle_frame(t(0), 0, &mut ask.clone()), Verdict::Done);
    assert_eq!(drain(&mut w0).len(), 1, "w0 answers");
    w1.handle_sibling_arp(t(0), 0, &ask);
    assert!(drain(&mut w1).is_empty(), "w1 does not answer again");
    assert_eq!(
        w1.neighbours(t(0)).find(|n| n.ip == A).map(|n| n.state),
        Some(NeighbourState::Reachable)
    );
    assert_eq!(w1.counters().arp_replies_sent, 0);
    assert_eq!(forward_to_a_via(&mut w1), Verdict::Forward { iface: 0 });

    // What the receiving worker dropped, a sibling neither learns nor counts again.
    let spoof = arp_request(R1_MAC, A, R0);
    let off_subnet = arp_request(GW1_MAC, GW1, R0);
    let mut not_arp = ask.clone();
    not_arp[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    for (f, iface) in [
        (&spoof, 0),
        (&off_subnet, 0),
        (&ask[..20].to_vec(), 0),
        (&not_arp, 0),
        (&ask, 7),
    ] {
        w1.handle_sibling_arp(t(5), iface, f);
    }
    assert!(drain(&mut w1).is_empty());
    assert_eq!(w1.counters().dropped_total(), 0);
    assert!(w1.neighbours(t(5)).all(|n| n.ip == A));
    // A sibling's request toward an address off the interface's subnet starts nothing.
    let mut odd = arp_request(R1_MAC, R1, GW0);
    odd[0..6].copy_from_slice(&BCAST);
    w1.handle_sibling_arp(t(6), 1, &odd);
    assert!(w1.neighbours(t(6)).all(|n| n.ip == A));
}

/// A frame from B to A, forwarded on interface 0 if A is resolved.
fn forward_to_a_via(r: &mut Router) -> Verdict {
    let mut f = Ipv4Spec::udp(B, A, 1, 2, &[0]).frame(R1_MAC, B_MAC);
    r.handle_frame(t(1), 1, &mut f)
}

#[test]
fn handle_arp_says_which_frames_siblings_should_see() {
    let mut r = router();
    // A request for us, and a reply nobody here asked for (a sibling may have): shown.
    assert!(r.handle_arp(t(0), 0, &mut arp_request(A_MAC, A, R0)));
    assert!(r.handle_arp(t(0), 1, &mut arp_reply(R1_MAC, B_MAC, B, R1)));
    // Spoofed, off the subnet, for another host's MAC, or a probe: not shown.
    assert!(!r.handle_arp(t(0), 0, &mut arp_request(R1_MAC, A, R0)));
    assert!(!r.handle_arp(t(0), 0, &mut arp_request(GW1_MAC, GW1, R0)));
    assert!(!r.handle_arp(t(0), 1, &mut arp_reply(A_MAC, B_MAC, B, R1)));
    assert!(!r.handle_arp(t(0), 0, &mut arp_request(A_MAC, Ipv4Addr::UNSPECIFIED, R0)));
    // Not ARP at all: handled as a frame.
    let mut ip = Ipv4Spec::udp(A, B, 1, 2, &[0]).frame(R0_MAC, A_MAC);
    assert!(!r.handle_arp(t(0), 0, &mut ip));
}
