//! Packets addressed to the router: capsules, echo, unreachables, fragments.

use std::net::SocketAddrV4;

use super::*;

#[test]
fn udp_to_the_capsule_port_is_a_capsule() {
    let mut r = resolved_router();
    let data = b"capsule bytes";
    let mut f = Ipv4Spec::udp(A, R0, 5000, 3322, data).frame(R0_MAC, A_MAC);
    let v = r.handle_frame(t(0), 0, &mut f);
    let Verdict::Capsule {
        from,
        to,
        payload,
        segment,
    } = v
    else {
        panic!("not a capsule: {v:?}");
    };
    assert_eq!(segment, None, "one datagram");
    assert_eq!(from, SocketAddrV4::new(A, 5000));
    assert_eq!(to, SocketAddrV4::new(R0, 3322));
    assert_eq!(&f[payload], data);
    // To the other interface's address, arriving here (weak host model).
    let mut f = Ipv4Spec::udp(A, R1, 5000, 3322, data).frame(R0_MAC, A_MAC);
    let v = r.handle_frame(t(0), 0, &mut f);
    assert!(matches!(v, Verdict::Capsule { to, .. } if to == SocketAddrV4::new(R1, 3322)));
    assert_eq!(r.counters().capsules, 2);
    assert!(drain(&mut r).is_empty());
}

#[test]
fn capsule_checksum_and_length_rules() {
    let mut r = resolved_router();
    // Checksum 0 = not computed: accepted.
    let mut seg = udp_segment(A, R0, 5000, 3322, b"abc");
    seg[6] = 0;
    seg[7] = 0;
    let mut f = Ipv4Spec::new(A, R0, 17, seg.clone()).frame(R0_MAC, A_MAC);
    assert!(matches!(
        r.handle_frame(t(0), 0, &mut f),
        Verdict::Capsule { .. }
    ));

    // Wrong checksum.
    let mut bad = udp_segment(A, R0, 5000, 3322, b"abc");
    bad[8] ^= 0xff;
    assert_drop(
        &mut r,
        0,
        Ipv4Spec::new(A, R0, 17, bad).frame(R0_MAC, A_MAC),
        DropReason::BadUdpChecksum,
    );

    // UDP length beyond the IP payload, and below 8.
    let mut long = udp_segment(A, R0, 5000, 3322, b"abc");
    long[4..6].copy_from_slice(&12u16.to_be_bytes());
    assert_drop(
        &mut r,
        0,
        Ipv4Spec::new(A, R0, 17, long).frame(R0_MAC, A_MAC),
        DropReason::BadUdp,
    );
    let mut short = udp_segment(A, R0, 5000, 3322, b"abc");
    short[4..6].copy_from_slice(&7u16.to_be_bytes());
    assert_drop(
        &mut r,
        0,
        Ipv4Spec::new(A, R0, 17, short).frame(R0_MAC, A_MAC),
        DropReason::BadUdp,
    );
    assert_drop(
        &mut r,
        0,
        Ipv4Spec::new(A, R0, 17, vec![0; 7]).frame(R0_MAC, A_MAC),
        DropReason::BadUdp,
    );

    // IP payload longer than the UDP length: the capsule is the UDP length.
    let mut padded = udp_segment(A, R0, 5000, 3322, b"abc");
    padded.extend_from_slice(b"junk");
    let mut f = Ipv4Spec::new(A, R0, 17, padded).frame(R0_MAC, A_MAC);
    let Verdict::Capsule { payload, .. } = r.handle_frame(t(0), 0, &mut f) else {
        panic!("not a capsule");
    };
    assert_eq!(&f[payload], b"abc");
    assert!(drain(&mut r).is_empty(), "bad capsules are not answered");
}

#[test]
fn fragments_to_us_are_dropped() {
    let mut r = resolved_router();
    for (flags, offset) in [(0b001, 0), (0b000, 3), (0b011, 0)] {
        let mut spec = Ipv4Spec::udp(A, R0, 5000, 3322, b"part");
        spec.flags = flags;
        spec.frag_offset = offset;
        assert_drop(
            &mut r,
            0,
            spec.frame(R0_MAC, A_MAC),
            DropReason::FragmentForUs,
        );
    }
    // DF alone is not a fragment.
    let mut spec = Ipv4Spec::udp(A, R0, 5000, 3322, b"whole");
    spec.flags = 0b010;
    let mut f = spec.frame(R0_MAC, A_MAC);
    assert!(matches!(
        r.handle_frame(t(0), 0, &mut f),
        Verdict::Capsule { .. }
    ));
    assert!(drain(&mut r).is_empty());
}

#[test]
fn echo_request_is_answered_from_the_pinged_address() {
    let mut r = resolved_router();
    for (target, tos) in [(R0, 0), (R1, 0xb8)] {
        let mut spec = Ipv4Spec::echo(A, target, 0x4242, 7, b"ping payload");
        spec.tos = tos;
        let mut f = spec.frame(R0_MAC, A_MAC);
        assert_eq!(r.handle_frame(t(0), 0, &mut f), Verdict::Done);
        let out = drain(&mut r);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, 0, "back out of eth0");
        let ip = parse_ip(&out[0].1);
        assert_eq!((ip.eth_dst, ip.eth_src), (A_MAC, R0_MAC));
        assert_eq!(
            (ip.src, ip.dst, ip.ttl, ip.proto, ip.tos),
            (target, A, 64, 1, tos)
        );
        let (ty, code, rest, body) = parse_icmp(&ip.payload);
        assert_eq!((ty, code, rest), (0, 0, [0x42, 0x42, 0, 7]));
        assert_eq!(body, b"ping payload");
    }
    assert_eq!(r.counters().echo_replies, 2);
    assert_eq!(r.counters().dropped_total(), 0);
}

#[test]
fn echo_replies_are_not_rate_limited_by_the_error_bucket() {
    let mut r = router_with(|c| c.limits.icmp_burst = 0);
    learn(&mut r, t(0), 0, A, A_MAC);
    for seq in 0..10 {
        let mut f = Ipv4Spec::echo(A, R0, 1, seq, b"x").frame(R0_MAC, A_MAC);
        r.handle_frame(t(0), 0, &mut f);
    }
    assert_eq!(drain(&mut r).len(), 10);
}

#[test]
fn other_icmp_to_us_is_counted() {
    let mut r = resolved_router();
    let mut bad = Ipv4Spec::echo(A, R0, 1, 1, b"x").payload;
    bad[2] ^= 1;
    assert_drop(
        &mut r,
        0,
        Ipv4Spec::new(A, R0, 1, bad).frame(R0_MAC, A_MAC),
        DropReason::BadIcmp,
    );
    assert_drop(
        &mut r,
        0,
        Ipv4Spec::new(A, R0, 1, vec![8, 0, 0]).frame(R0_MAC, A_MAC),
        DropReason::BadIcmp,
    );
    let reply = icmp_message(0, 0, [0, 1, 0, 1], b"x");
    assert_drop(
        &mut r,
        0,
        Ipv4Spec::new(A, R0, 1, reply).frame(R0_MAC, A_MAC),
        DropReason::UnhandledIcmp,
    );
    let unreach = icmp_message(3, 3, [0; 4], &[0; 28]);
    assert_drop(
        &mut r,
        0,
        Ipv4Spec::new(A, R0, 1, unreach).frame(R0_MAC, A_MAC),
        DropReason::UnhandledIcmp,
    );
    assert!(drain(&mut r).is_empty(), "never an error about ICMP");
}

#[test]
fn other_udp_gets_port_unreachable_and_other_protocols_protocol_unreachable() {
    let mut r = resolved_router();
    let spec = Ipv4Spec::udp(A, R1, 5000, 53, b"query");
    let orig = spec.packet();
    assert_drop(
        &mut r,
        0,
        spec.frame(R0_MAC, A_MAC),
        DropReason::PortUnreachable,
    );
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    let ip = parse_ip(&out[0].1);
    // From the address the packet was sent to (as Linux does), so traceroute ends there.
    assert_eq!((ip.src, ip.dst, ip.tos), (R1, A, 0xc0));
    let (ty, code, _, body) = parse_icmp(&ip.payload);
    assert_eq!((ty, code), (3, 3));
    assert_eq!(body, orig[..28]);

    let tcp = Ipv4Spec::new(A, R0, 6, vec![0; 20]);
    assert_drop(
        &mut r,
        0,
        tcp.frame(R0_MAC, A_MAC),
        DropReason::ProtocolUnreachable,
    );
    let out = drain(&mut r);
    let ip = parse_ip(&out[0].1);
    let (ty, code, _, _) = parse_icmp(&ip.payload);
    assert_eq!((ip.src, ty, code), (R0, 3, 2));
    assert_eq!(r.counters().icmp_sent, 2);
}
