//! Ethernet demultiplexing: what is for us, what is not IPv4.

use super::*;

#[test]
fn bad_interface_and_truncated_frames() {
    let mut r = router();
    let f = Ipv4Spec::udp(A, B, 1, 2, b"x").frame(R0_MAC, A_MAC);
    assert_drop(&mut r, 2, f.clone(), DropReason::BadInterface);
    assert_drop(&mut r, usize::MAX, f, DropReason::BadInterface);
    assert_drop(&mut r, 0, vec![], DropReason::Truncated);
    assert_drop(&mut r, 0, R0_MAC.to_vec(), DropReason::Truncated);
    assert_drop(&mut r, 0, vec![0xff; 13], DropReason::Truncated);
    assert!(drain(&mut r).is_empty());
}

#[test]
fn unicast_to_another_mac_is_not_for_us() {
    let mut r = resolved_router();
    let f = Ipv4Spec::udp(A, B, 1, 2, b"x").frame(R1_MAC, A_MAC); // eth1's MAC, arriving on eth0
    assert_drop(&mut r, 0, f, DropReason::NotForUs);
    let f = Ipv4Spec::udp(A, B, 1, 2, b"x").frame(B_MAC, A_MAC);
    assert_drop(&mut r, 0, f, DropReason::NotForUs);
    let f = arp(B_MAC, 1, A_MAC, A, [0; 6], R0);
    assert_drop(&mut r, 0, f, DropReason::NotForUs);
    assert!(drain(&mut r).is_empty());
}

#[test]
fn ipv4_in_link_broadcast_or_multicast_frames_is_dropped() {
    let mut r = resolved_router();
    // Even unicast IP to us: RFC 1812 §5.3.4, and never answered.
    let f = Ipv4Spec::echo(A, R0, 1, 1, b"ping").frame(BCAST, A_MAC);
    assert_drop(&mut r, 0, f, DropReason::LinkBroadcast);
    let f = Ipv4Spec::udp(A, B, 1, 2, b"x").frame([0x01, 0, 0x5e, 0, 0, 1], A_MAC);
    assert_drop(&mut r, 0, f, DropReason::LinkBroadcast);
    assert!(drain(&mut r).is_empty());
    assert_eq!(r.counters().forwarded, 0);
}

#[test]
fn ipv6_vlan_and_other_ethertypes_are_passed_over() {
    let mut r = resolved_router();
    let body = Ipv4Spec::udp(A, B, 1, 2, b"x").packet();
    for ethertype in [0x86dd, 0x8100, 0x88a8, 0x88cc, 0x8035, 0x0000, 0xffff] {
        assert_drop(
            &mut r,
            0,
            eth(R0_MAC, A_MAC, ethertype, &body),
            DropReason::NotIpv4,
        );
    }
    // IPv6 to an IPv6 multicast MAC (neighbour discovery) too.
    assert_drop(
        &mut r,
        0,
        eth([0x33, 0x33, 0, 0, 0, 1], A_MAC, 0x86dd, &[0x60; 40]),
        DropReason::NotIpv4,
    );
    assert!(drain(&mut r).is_empty());
}
