//! `send_udp`: capsule transmits from the router.

use std::net::SocketAddrV4;

use pnet_packet::udp::{self, UdpPacket};

use super::*;
use crate::FrameSink;

#[test]
fn builds_routes_and_checksums_a_udp_datagram() {
    let mut r = resolved_router();
    assert!(r.send_udp(t(0), SocketAddrV4::new(B, 4000), b"capsule"));
    assert!(r.send_udp(t(0), SocketAddrV4::new(FAR, 3322), b"far"));
    let out = drain(&mut r);
    assert_eq!(out.len(), 2);
    let mut ids = Vec::new();
    for ((iface, f), (dst, mac, dport, data)) in out.iter().zip([
        (B, B_MAC, 4000, &b"capsule"[..]),
        (FAR, GW1_MAC, 3322, &b"far"[..]),
    ]) {
        assert_eq!(*iface, 1);
        let ip = parse_ip(f);
        assert_eq!((ip.eth_dst, ip.eth_src), (mac, R1_MAC));
        assert_eq!(
            (ip.src, ip.dst, ip.ttl, ip.proto, ip.flags),
            (R1, dst, 64, 17, 0b010)
        );
        let u = UdpPacket::new(&ip.payload).unwrap();
        assert_eq!((u.get_source(), u.get_destination()), (3322, dport));
        assert_eq!(usize::from(u.get_length()), 8 + data.len());
        assert_eq!(u.get_checksum(), udp::ipv4_checksum(&u, &ip.src, &ip.dst));
        assert_eq!(&ip.payload[8..], data);
        ids.push(u16::from_be_bytes([f[18], f[19]]));
    }
    assert_ne!(ids[0], ids[1], "IP identification advances");
    assert_eq!(r.counters().udp_sent, 2);
}

/// A driver's batch: frames built into stale buffers (every byte 0xAA first).
#[derive(Default)]
struct StaleSink(Vec<(usize, Vec<u8>)>);

impl FrameSink for StaleSink {
    fn frame(&mut self, iface: usize, len: usize, build: impl FnOnce(&mut [u8])) {
        let mut buf = vec![0xaa; len];
        build(&mut buf);
        self.0.push((iface, buf));
    }
}

#[test]
fn a_sink_gets_the_same_frames_built_over_stale_bytes_and_held_ones_stay_queued() {
    let mut queued = resolved_router();
    let mut direct = resolved_router();
    let mut sink = StaleSink::default();
    for (dst, data) in [(B, &b"capsule"[..]), (FAR, &b"far, odd length"[..])] {
        assert!(queued.send_udp(t(0), SocketAddrV4::new(dst, 4000), data));
        assert!(direct.send_udp_to(t(0), SocketAddrV4::new(dst, 4000), data, &mut sink));
    }
    assert_eq!(
        sink.0,
        drain(&mut queued),
        "byte for byte, stale buffer or not"
    );
    assert!(
        drain(&mut direct).is_empty(),
        "nothing copied through the router's queue"
    );
    assert_eq!(direct.counters().udp_sent, 2);
    // Unresolved: held by the router (the sink gets nothing), out of drain on the reply.
    let mut r = router();
    let mut sink = StaleSink::default();
    assert!(r.send_udp_to(t(0), SocketAddrV4::new(A, 4000), b"x", &mut sink));
    assert!(sink.0.is_empty());
    assert_eq!(drain(&mut r).len(), 1, "the ARP request");
    let mut f = arp_reply(R0_MAC, A_MAC, A, R0);
    r.handle_frame(t(1), 0, &mut f);
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    assert_eq!(parse_ip(&out[0].1).dst, A);
    // Refused as by send_udp, before the sink.
    assert!(!r.send_udp_to(t(1), SocketAddrV4::new(NOWHERE, 1), b"x", &mut sink));
    assert!(sink.0.is_empty());
}

#[test]
fn unresolved_destination_is_held_until_arp_answers() {
    let mut r = router();
    assert!(r.send_udp(t(0), SocketAddrV4::new(A, 4000), b"x"));
    let out = drain(&mut r);
    assert_eq!(out.len(), 1, "the ARP request");
    let mut f = arp_reply(R0_MAC, A_MAC, A, R0);
    r.handle_frame(t(1), 0, &mut f);
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    let ip = parse_ip(&out[0].1);
    assert_eq!(
        (ip.eth_dst, ip.eth_src, ip.src, ip.dst),
        (A_MAC, R0_MAC, R0, A)
    );
}

#[test]
fn refused_datagrams_return_false_and_are_counted() {
    let mut r = resolved_router();
    for bad in [
        "255.255.255.255",
        "198.18.0.255",
        "224.0.0.1",
        "127.0.0.1",
        "198.18.0.1",
        "0.0.0.0",
    ] {
        assert!(
            !r.send_udp(t(0), SocketAddrV4::new(bad.parse().unwrap(), 1), b"x"),
            "{bad}"
        );
    }
    assert_eq!(r.counters().drop_count(DropReason::LocalBadDestination), 6);
    assert!(!r.send_udp(t(0), SocketAddrV4::new(NOWHERE, 1), b"x"));
    assert_eq!(r.counters().drop_count(DropReason::LocalNoRoute), 1);
    assert!(!r.send_udp(t(0), SocketAddrV4::new(B, 1), &[0; 1500 - 28 + 1]));
    assert!(r.send_udp(t(0), SocketAddrV4::new(B, 1), &[0; 1500 - 28]));
    assert!(!r.send_udp(t(0), SocketAddrV4::new(B, 1), &vec![0; 70_000]));
    assert_eq!(r.counters().drop_count(DropReason::LocalTooBig), 2);
    assert_eq!(r.counters().udp_sent, 1);
}

#[test]
fn the_transmit_queue_is_bounded() {
    let mut r = router_with(|c| {
        c.limits.max_tx_frames = 2;
    });
    learn(&mut r, t(0), 1, B, B_MAC);
    assert!(r.send_udp(t(0), SocketAddrV4::new(B, 1), b"1"));
    assert!(r.send_udp(t(0), SocketAddrV4::new(B, 1), b"2"));
    assert!(!r.send_udp(t(0), SocketAddrV4::new(B, 1), b"3"));
    assert_eq!(r.counters().drop_count(DropReason::TxQueueFull), 1);
    assert_eq!(r.queued_transmits().0, 2);
    assert_eq!(drain(&mut r).len(), 2);
    assert!(
        r.send_udp(t(0), SocketAddrV4::new(B, 1), b"4"),
        "room again after draining"
    );
}
