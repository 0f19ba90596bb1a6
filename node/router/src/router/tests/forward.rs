//! Forwarding: rewrite, longest prefix, TTL, MTU, and the ICMP errors of the transit path.

use super::*;

/// Forward `spec` from A on eth0, return the verdict and the frame after.
fn send(r: &mut Router, spec: &Ipv4Spec) -> (Verdict, Vec<u8>) {
    let mut f = spec.frame(R0_MAC, A_MAC);
    let v = r.handle_frame(t(0), 0, &mut f);
    (v, f)
}

#[test]
fn forwards_in_place_with_new_macs_ttl_and_checksum() {
    let mut r = resolved_router();
    let spec = Ipv4Spec::udp(A, B, 1000, 2000, b"payload");
    let orig = spec.frame(R0_MAC, A_MAC);
    let (v, f) = send(&mut r, &spec);
    assert_eq!(v, Verdict::Forward { iface: 1 });
    assert_eq!(f.len(), orig.len());
    let ip = parse_ip(&f); // verifies the checksum against pnet's full recomputation
    assert_eq!((ip.eth_dst, ip.eth_src), (B_MAC, R1_MAC));
    assert_eq!(ip.ttl, 63);
    // Only MACs, TTL and checksum changed.
    for (i, (a, b)) in orig.iter().zip(&f).enumerate() {
        if !(i < 12 || i == 22 || i == 24 || i == 25) {
            assert_eq!(a, b, "byte {i}");
        }
    }
    assert_eq!(r.counters().forwarded, 1);
    assert_eq!(r.counters().dropped_total(), 0);
    assert!(drain(&mut r).is_empty());
}

#[test]
fn longest_prefix_selects_gateway_and_egress_may_equal_ingress() {
    let mut r = resolved_router();
    let (v, f) = send(&mut r, &Ipv4Spec::udp(A, FAR, 1, 2, b"x"));
    assert_eq!(v, Verdict::Forward { iface: 1 });
    assert_eq!(parse_ip(&f).eth_dst, GW1_MAC);
    // 198.19.5.0/24 beats 198.19.0.0/16 and leads back out of eth0 (no redirect).
    let (v, f) = send(&mut r, &Ipv4Spec::udp(A, FAR5, 1, 2, b"x"));
    assert_eq!(v, Verdict::Forward { iface: 0 });
    let ip = parse_ip(&f);
    assert_eq!((ip.eth_dst, ip.eth_src), (GW0_MAC, R0_MAC));
    assert_eq!(r.route(FAR5), Some((0, GW0)));
    assert_eq!(r.route(B), Some((1, B)));
    assert_eq!(r.route(NOWHERE), None);
}

#[test]
fn options_and_fragments_are_forwarded_unchanged() {
    let mut r = resolved_router();
    let mut spec = Ipv4Spec::udp(A, B, 1, 2, b"opts");
    spec.options = vec![1, 1, 1, 0]; // NOP NOP NOP EOL
    let (v, f) = send(&mut r, &spec);
    assert_eq!(v, Verdict::Forward { iface: 1 });
    assert_eq!(&f[34..38], &[1, 1, 1, 0]);
    assert_eq!(parse_ip(&f).ttl, 63);

    for (flags, offset) in [(0b001, 0), (0b001, 100), (0b000, 100), (0b011, 0)] {
        let mut spec = Ipv4Spec::new(A, B, 17, vec![7; 64]);
        spec.flags = flags;
        spec.frag_offset = offset;
        let (v, f) = send(&mut r, &spec);
        assert_eq!(
            v,
            Verdict::Forward { iface: 1 },
            "flags {flags:03b} offset {offset}"
        );
        assert_eq!(parse_ip(&f).payload, vec![7; 64]);
    }
}

/// The one ICMP message queued, parsed: (iface, ip, (type, code, rest, body)).
fn one_icmp(r: &mut Router) -> (usize, Ip, Icmp) {
    let mut out = drain(r);
    assert_eq!(out.len(), 1, "exactly one frame queued");
    let (iface, f) = out.remove(0);
    let ip = parse_ip(&f);
    assert_eq!(ip.proto, 1);
    let icmp = parse_icmp(&ip.payload);
    (iface, ip, icmp)
}

#[test]
fn ttl_expiry_sends_time_exceeded_from_the_ingress_address() {
    for ttl in [0, 1] {
        let mut r = resolved_router();
        let mut spec = Ipv4Spec::udp(A, B, 1000, 2000, b"0123456789abcdef");
        spec.ttl = ttl;
        let orig = spec.packet();
        assert_drop(
            &mut r,
            0,
            spec.frame(R0_MAC, A_MAC),
            DropReason::TtlExceeded,
        );
        let (iface, ip, (ty, code, rest, body)) = one_icmp(&mut r);
        assert_eq!(iface, 0);
        assert_eq!((ip.eth_dst, ip.eth_src), (A_MAC, R0_MAC));
        assert_eq!((ip.src, ip.dst, ip.ttl, ip.tos), (R0, A, 64, 0xc0));
        assert_eq!((ty, code, rest), (11, 0, [0; 4]));
        assert_eq!(body, orig[..20 + 8], "IP header + 8 bytes, as received");
        assert_eq!(r.counters().icmp_sent, 1);
    }
    // From eth1's side the source is eth1's address, even for a packet towards eth0's subnet.
    let mut r = resolved_router();
    let mut spec = Ipv4Spec::udp(B, A, 1, 2, b"x");
    spec.ttl = 1;
    let mut f = spec.frame(R1_MAC, B_MAC);
    assert_eq!(r.handle_frame(t(0), 1, &mut f), Verdict::Done);
    let (iface, ip, _) = one_icmp(&mut r);
    assert_eq!((iface, ip.src, ip.dst), (1, R1, B));
}

#[test]
fn options_are_quoted_whole() {
    let mut r = resolved_router();
    let mut spec = Ipv4Spec::udp(A, NOWHERE, 1, 2, b"0123456789");
    spec.options = vec![1; 8];
    let orig = spec.packet();
    assert_drop(&mut r, 0, spec.frame(R0_MAC, A_MAC), DropReason::NoRoute);
    let (_, _, (ty, code, _, body)) = one_icmp(&mut r);
    assert_eq!((ty, code), (3, 0));
    assert_eq!(body, orig[..28 + 8]);
}

#[test]
fn no_route_sends_net_unreachable() {
    let mut r = resolved_router();
    let spec = Ipv4Spec::udp(A, NOWHERE, 1, 2, b"x");
    assert_drop(&mut r, 0, spec.frame(R0_MAC, A_MAC), DropReason::NoRoute);
    let (iface, ip, (ty, code, _, body)) = one_icmp(&mut r);
    assert_eq!((iface, ip.src, ip.dst, ty, code), (0, R0, A, 3, 0));
    assert_eq!(body.len(), 28);
}

#[test]
fn too_big_with_df_sends_frag_needed_without_df_is_fragmented() {
    let mut r = router_with(|c| c.interfaces[1].mtu = 1000);
    for (ip, mac, iface) in [(A, A_MAC, 0), (B, B_MAC, 1)] {
        learn(&mut r, t(0), iface, ip, mac);
    }
    let mut spec = Ipv4Spec::new(A, B, 17, vec![0; 1200 - 20]);
    spec.flags = 0b010;
    assert_drop(
        &mut r,
        0,
        spec.frame(R0_MAC, A_MAC),
        DropReason::FragmentationNeeded,
    );
    let (_, ip, (ty, code, rest, _)) = one_icmp(&mut r);
    assert_eq!((ip.src, ip.dst, ty, code), (R0, A, 3, 4));
    assert_eq!(rest, [0, 0, 0x03, 0xe8], "next-hop MTU 1000");

    // Without DF: fragments (the details are in `tests::offload`).
    spec.flags = 0;
    let mut f = spec.frame(R0_MAC, A_MAC);
    let drops = r.counters().dropped_total();
    assert_eq!(r.handle_frame(t(0), 0, &mut f), Verdict::Done);
    let out = drain(&mut r);
    assert_eq!(out.len(), 2, "1180 bytes of data over an MTU of 1000");
    assert!(out.iter().all(|(i, f)| *i == 1 && f.len() <= 14 + 1000));
    assert_eq!(
        (r.counters().fragmented, r.counters().fragments_sent),
        (1, 2)
    );
    assert_eq!(r.counters().dropped_total(), drops);

    // Exactly the MTU passes.
    let mut spec = Ipv4Spec::new(A, B, 17, vec![0; 1000 - 20]);
    spec.flags = 0b010;
    let mut f = spec.frame(R0_MAC, A_MAC);
    assert_eq!(
        r.handle_frame(t(0), 0, &mut f),
        Verdict::Forward { iface: 1 }
    );
    // Trailing bytes that would overflow the egress link are refused.
    let mut f = Ipv4Spec::new(A, B, 17, vec![0; 100]).frame(R0_MAC, A_MAC);
    f.resize(14 + 1001, 0);
    assert_drop(&mut r, 0, f, DropReason::TooBig);
}

#[test]
fn no_icmp_error_about_icmp_errors_or_non_initial_fragments() {
    let mut r = resolved_router();
    for ty in [3, 4, 5, 11, 12] {
        let mut spec = Ipv4Spec::new(A, B, 1, icmp_message(ty, 0, [0; 4], &[0; 28]));
        spec.ttl = 1;
        assert_drop(
            &mut r,
            0,
            spec.frame(R0_MAC, A_MAC),
            DropReason::TtlExceeded,
        );
    }
    let mut frag = Ipv4Spec::new(A, B, 17, vec![0; 16]);
    frag.ttl = 1;
    frag.frag_offset = 10;
    assert_drop(
        &mut r,
        0,
        frag.frame(R0_MAC, A_MAC),
        DropReason::TtlExceeded,
    );
    // Too short to tell an ICMP message's type: treated as an error, not answered.
    let mut short = Ipv4Spec::new(A, B, 1, vec![]);
    short.ttl = 1;
    assert_drop(
        &mut r,
        0,
        short.frame(R0_MAC, A_MAC),
        DropReason::TtlExceeded,
    );
    assert!(drain(&mut r).is_empty());
    assert_eq!(r.counters().icmp_suppressed, 7);

    // An echo request (informational) and a first fragment do get one.
    let mut echo = Ipv4Spec::echo(A, B, 1, 1, b"hi");
    echo.ttl = 1;
    assert_drop(
        &mut r,
        0,
        echo.frame(R0_MAC, A_MAC),
        DropReason::TtlExceeded,
    );
    frag.frag_offset = 0;
    frag.flags = 0b001;
    assert_drop(
        &mut r,
        0,
        frag.frame(R0_MAC, A_MAC),
        DropReason::TtlExceeded,
    );
    assert_eq!(drain(&mut r).len(), 2);
}

#[test]
fn small_egress_mtu_cuts_the_quote() {
    let mut r = router_with(|c| c.interfaces[0].mtu = 68);
    learn(&mut r, t(0), 0, A, A_MAC);
    let mut spec = Ipv4Spec::new(A, NOWHERE, 17, vec![0; 30]);
    spec.options = vec![1; 40]; // 60-byte header
    assert_drop(&mut r, 0, spec.frame(R0_MAC, A_MAC), DropReason::NoRoute);
    let (_, ip, (_, _, _, body)) = one_icmp(&mut r);
    assert_eq!(body.len(), 68 - 28);
    assert_eq!(ip.payload.len() + 20, 68);
}
