//! Offloads and fragmentation: GSO super-frames forwarded whole (segments checked against the
//! MTU), partial checksums passed on or completed where a frame loses its offload state, UDP
//! GSO capsules, and RFC 791 fragmentation checked by reassembling the fragments.

use std::net::SocketAddrV4;

use proptest::prelude::*;

use super::*;
use crate::Offload;

/// A TCP segment (20-byte header, data offset 5) with `data`; the checksum field holds
/// `csum` (tests of partial checksums put the pseudo-header sum there).
fn tcp(data: &[u8], csum: u16) -> Vec<u8> {
    let mut seg = vec![0u8; 20 + data.len()];
    seg[0..2].copy_from_slice(&40000u16.to_be_bytes());
    seg[2..4].copy_from_slice(&5201u16.to_be_bytes());
    seg[12] = 5 << 4;
    seg[16..18].copy_from_slice(&csum.to_be_bytes());
    seg[20..].copy_from_slice(data);
    seg
}

fn gso(size: u16) -> Offload {
    Offload {
        gso_size: Some(size),
        csum_partial: true,
    }
}

/// A 20,000-byte TCP super-frame from A to B with DF (what a host's TSO stack sends).
fn super_frame() -> Vec<u8> {
    let mut spec = Ipv4Spec::new(A, B, 6, tcp(&vec![7; 20_000], 0x1234));
    spec.flags = 0b010;
    spec.frame(R0_MAC, A_MAC)
}

#[test]
fn a_super_frame_whose_segments_fit_is_forwarded_whole() {
    let mut r = resolved_router();
    let mut f = super_frame();
    let orig = f.clone();
    let v = r.handle_frame_with(t(0), 0, &mut f, gso(1448));
    assert_eq!(v, Verdict::Forward { iface: 1 });
    assert_eq!(
        f.len(),
        orig.len(),
        "not segmented here: the kernel does it"
    );
    let ip = parse_ip(&f);
    assert_eq!((ip.eth_dst, ip.eth_src, ip.ttl), (B_MAC, R1_MAC, 63));
    assert_eq!(
        &f[34..],
        &orig[34..],
        "the partial checksum is passed on untouched"
    );
    let c = r.counters();
    assert_eq!((c.forwarded, c.forwarded_gso, c.dropped_total()), (1, 1, 0));
    assert_eq!(c.checksums_completed, 0);
}

#[test]
fn a_super_frame_whose_segments_do_not_fit_gets_frag_needed_or_is_dropped() {
    // 20 (IP) + 20 (TCP) + 1448 = 1488 ≤ 1500, but not ≤ 1400.
    let mut r = router_with(|c| c.interfaces[1].mtu = 1400);
    for (ip, mac, iface) in [(A, A_MAC, 0), (B, B_MAC, 1)] {
        learn(&mut r, t(0), iface, ip, mac);
    }
    let mut f = super_frame();
    assert_eq!(
        r.handle_frame_with(t(0), 0, &mut f, gso(1448)),
        Verdict::Done
    );
    assert_eq!(r.counters().drop_count(DropReason::FragmentationNeeded), 1);
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    let ip = parse_ip(&out[0].1);
    let (ty, code, rest, _) = parse_icmp(&ip.payload);
    assert_eq!((ip.dst, ty, code), (A, 3, 4));
    assert_eq!(u16::from_be_bytes([rest[2], rest[3]]), 1400);
    // 1360 bytes per segment fit: forwarded.
    let mut f = super_frame();
    assert_eq!(
        r.handle_frame_with(t(0), 0, &mut f, gso(1360)),
        Verdict::Forward { iface: 1 }
    );
    // Without DF the router cannot fragment a super-frame: counted.
    let mut spec = Ipv4Spec::new(A, B, 6, tcp(&[1; 5000], 0));
    spec.flags = 0;
    let mut f = spec.frame(R0_MAC, A_MAC);
    assert_eq!(
        r.handle_frame_with(t(0), 0, &mut f, gso(1448)),
        Verdict::Done
    );
    assert_eq!(r.counters().drop_count(DropReason::TooBig), 1);
    assert!(drain(&mut r).is_empty());
}

#[test]
fn malformed_offload_state_is_counted() {
    let mut r = resolved_router();
    let mut f = super_frame();
    assert_eq!(r.handle_frame_with(t(0), 0, &mut f, gso(0)), Verdict::Done);
    let echo = Ipv4Spec::echo(A, B, 1, 1, &[0; 3000]).frame(R0_MAC, A_MAC);
    assert_eq!(
        r.handle_frame_with(t(0), 0, &mut echo.clone(), gso(1400)),
        Verdict::Done
    );
    // A TCP data offset pointing past the packet.
    let mut seg = tcp(&[0; 10], 0);
    seg[12] = 15 << 4;
    let mut f = Ipv4Spec::new(A, B, 6, seg).frame(R0_MAC, A_MAC);
    assert_eq!(
        r.handle_frame_with(t(0), 0, &mut f, gso(1400)),
        Verdict::Done
    );
    assert_eq!(r.counters().drop_count(DropReason::GsoInvalid), 3);
    assert_eq!(r.counters().dropped_total(), 3);
}

#[test]
fn a_super_frame_to_an_unresolved_next_hop_starts_arp_and_is_not_held() {
    let mut r = router();
    let mut f = super_frame();
    assert_eq!(
        r.handle_frame_with(t(0), 0, &mut f, gso(1448)),
        Verdict::Done
    );
    assert_eq!(r.counters().drop_count(DropReason::GsoUnresolved), 1);
    assert_eq!(r.held_frames(), 0);
    assert_eq!(r.counters().arp_requests_sent, 1, "resolution started");
    // The next one while resolving: no second request.
    let mut f = super_frame();
    r.handle_frame_with(t(1), 0, &mut f, gso(1448));
    assert_eq!(r.counters().arp_requests_sent, 1);
    assert_eq!(r.counters().drop_count(DropReason::GsoUnresolved), 2);
}

#[test]
fn a_held_frame_with_a_partial_checksum_is_completed_before_it_waits() {
    let mut r = router();
    learn(&mut r, t(0), 0, A, A_MAC);
    let mut seg = udp_segment(A, B, 1000, 2000, b"left to offload");
    let good = u16::from_be_bytes([seg[6], seg[7]]);
    seg[6..8].copy_from_slice(&0x4242u16.to_be_bytes());
    let mut f = Ipv4Spec::new(A, B, 17, seg).frame(R0_MAC, A_MAC);
    let partial = Offload {
        gso_size: None,
        csum_partial: true,
    };
    assert_eq!(r.handle_frame_with(t(0), 0, &mut f, partial), Verdict::Done);
    assert_eq!(r.held_frames(), 1);
    assert_eq!(r.counters().checksums_completed, 1);
    drain(&mut r); // the ARP request
    // B answers the request: the held frame is released.
    let mut reply = arp_reply(R1_MAC, B_MAC, B, R1);
    r.handle_frame(t(1), 1, &mut reply);
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    let ip = parse_ip(&out[0].1);
    assert_eq!(u16::from_be_bytes([ip.payload[6], ip.payload[7]]), good);
}

#[test]
fn capsules_with_partial_checksums_and_udp_gso_capsules_are_accepted() {
    let mut r = resolved_router();
    let mut seg = udp_segment(A, R0, 5000, 3322, &[9; 3000]);
    seg[6..8].copy_from_slice(&0x0badu16.to_be_bytes());
    let frame = Ipv4Spec::new(A, R0, 17, seg).frame(R0_MAC, A_MAC);
    // A complete frame with that checksum is refused…
    assert_drop(&mut r, 0, frame.clone(), DropReason::BadUdpChecksum);
    // …one left to offload by the sending stack is trusted, as the kernel does.
    let partial = Offload {
        gso_size: None,
        csum_partial: true,
    };
    let v = r.handle_frame_with(t(0), 0, &mut frame.clone(), partial);
    assert!(matches!(v, Verdict::Capsule { segment: None, .. }), "{v:?}");
    // UDP GSO: 3000 bytes of 1200-byte datagrams.
    let v = r.handle_frame_with(t(0), 0, &mut frame.clone(), gso(1200));
    let Verdict::Capsule {
        from,
        payload,
        segment,
        ..
    } = v
    else {
        panic!("{v:?}");
    };
    assert_eq!(from, SocketAddrV4::new(A, 5000));
    assert_eq!(payload.len(), 3000);
    assert_eq!(segment.map(|s| s.get()), Some(1200));
    // TCP GSO to us is not a capsule: protocol rules apply (port unreachable is for UDP).
    let mut f = Ipv4Spec::new(A, R0, 6, tcp(&[0; 100], 0)).frame(R0_MAC, A_MAC);
    r.handle_frame_with(t(0), 0, &mut f, gso(1400));
    assert_eq!(r.counters().drop_count(DropReason::ProtocolUnreachable), 1);
}

/// Forward `spec` without DF over eth1 with `mtu` and return the fragments' IPv4 packets.
fn fragments_of(spec: &Ipv4Spec, mtu: u16, offload: Offload) -> (Router, Vec<Vec<u8>>) {
    let mut r = router_with(|c| c.interfaces[1].mtu = mtu);
    for (ip, mac, iface) in [(A, A_MAC, 0), (B, B_MAC, 1)] {
        learn(&mut r, t(0), iface, ip, mac);
    }
    let mut f = spec.frame(R0_MAC, A_MAC);
    assert_eq!(r.handle_frame_with(t(0), 0, &mut f, offload), Verdict::Done);
    let out = drain(&mut r)
        .into_iter()
        .map(|(iface, f)| {
            assert_eq!(iface, 1);
            assert_eq!(&f[..12], &[B_MAC, R1_MAC].concat()[..]);
            f[14..].to_vec()
        })
        .collect();
    (r, out)
}

/// Reassemble fragments (any order) into `(header of the first, data)`; checks every
/// header checksum, the common fields, the MTU, 8-byte alignment and that the pieces tile.
fn reassemble(frags: &[Vec<u8>], mtu: usize, orig: &Ipv4Spec) -> (Vec<u8>, Vec<u8>, bool) {
    let mut pieces: Vec<(usize, Vec<u8>, bool)> = Vec::new();
    let mut first_header = Vec::new();
    for p in frags {
        assert!(p.len() <= mtu, "fragment of {} > MTU {mtu}", p.len());
        let ihl = usize::from(p[0] & 0x0f) * 4;
        assert_eq!(
            crate::checksum::fold(crate::checksum::sum(&p[..ihl])),
            0xffff
        );
        assert_eq!(usize::from(u16::from_be_bytes([p[2], p[3]])), p.len());
        assert_eq!(&p[4..6], &orig.id.to_be_bytes(), "identification kept");
        assert_eq!(p[8], orig.ttl - 1, "TTL decremented");
        assert_eq!(p[9], orig.proto);
        assert_eq!(
            &p[12..20],
            &[orig.src.octets(), orig.dst.octets()].concat()[..]
        );
        let word = u16::from_be_bytes([p[6], p[7]]);
        assert_eq!(word & 0x4000, 0, "no DF");
        let off = usize::from(word & 0x1fff) * 8;
        if off == usize::from(orig.frag_offset) * 8 {
            first_header = p[..ihl].to_vec();
        }
        pieces.push((off, p[ihl..].to_vec(), word & 0x2000 != 0));
    }
    pieces.sort_by_key(|p| p.0);
    let mut data = Vec::new();
    let mut next = usize::from(orig.frag_offset) * 8;
    for (i, (off, d, mf)) in pieces.iter().enumerate() {
        assert_eq!(*off, next, "pieces tile without gaps or overlaps");
        if i + 1 < pieces.len() {
            assert!(*mf, "MF on all but the last");
            assert_eq!(d.len() % 8, 0, "non-last pieces are multiples of 8");
        }
        data.extend_from_slice(d);
        next += d.len();
    }
    let last_mf = pieces.last().is_some_and(|p| p.2);
    (first_header, data, last_mf)
}

#[test]
fn fragments_reassemble_to_the_original_packet() {
    let mut spec = Ipv4Spec::udp(
        A,
        B,
        1000,
        2000,
        &(0..1472).map(|i| i as u8).collect::<Vec<_>>(),
    );
    spec.flags = 0;
    let (r, frags) = fragments_of(&spec, 1400, Offload::NONE);
    assert_eq!(frags.len(), 2);
    let (_, data, last_mf) = reassemble(&frags, 1400, &spec);
    assert_eq!(data, spec.payload);
    assert!(!last_mf);
    let c = r.counters();
    assert_eq!((c.fragmented, c.fragments_sent, c.forwarded), (1, 2, 0));
    assert_eq!(c.dropped_total(), 0);
}

#[test]
fn later_fragments_carry_only_copied_options() {
    let mut spec = Ipv4Spec::udp(A, B, 1, 2, &[5; 600]);
    // Record route (not copied, 7 bytes + NOP), then a copied option (type 0x88 = stream
    // id, 4 bytes).
    spec.options = vec![7, 7, 4, 0, 0, 0, 0, 1, 0x88, 4, 0xab, 0xcd];
    let (_, frags) = fragments_of(&spec, 300, Offload::NONE);
    assert!(frags.len() >= 3);
    let ihls: Vec<usize> = frags.iter().map(|p| usize::from(p[0] & 0x0f) * 4).collect();
    assert_eq!(ihls[0], 32, "the first keeps every option");
    assert!(ihls[1..].iter().all(|&l| l == 24), "{ihls:?}");
    for p in &frags[1..] {
        assert_eq!(&p[20..24], &[0x88, 4, 0xab, 0xcd]);
    }
    let (first, data, _) = reassemble(&frags, 300, &spec);
    assert_eq!(&first[20..], &spec.options[..]);
    assert_eq!(data, spec.payload);
}

#[test]
fn a_partial_checksum_is_completed_before_fragmenting() {
    let mut seg = udp_segment(A, B, 1000, 2000, &[3; 2000]);
    let good = seg[6..8].to_vec();
    seg[6..8].copy_from_slice(&[0x55, 0x55]);
    let mut spec = Ipv4Spec::new(A, B, 17, seg);
    spec.flags = 0;
    let partial = Offload {
        gso_size: None,
        csum_partial: true,
    };
    let (r, frags) = fragments_of(&spec, 1000, partial);
    let (_, data, _) = reassemble(&frags, 1000, &spec);
    assert_eq!(&data[6..8], &good[..]);
    assert_eq!(r.counters().checksums_completed, 1);
}

proptest! {
    /// For any size beyond the MTU, MTU, starting offset and MF flag, the fragments fit the MTU, tile the
    /// data exactly from the original offset, and keep MF on the last one iff the original
    /// had it.
    #[test]
    fn fragmentation_tiles_the_data(
        extra in 1usize..6000,
        mtu in 68u16..1500,
        frag_offset in 0u16..64,
        more in any::<bool>(),
        seed in any::<u8>(),
    ) {
        let len = usize::from(mtu) - 20 + extra;
        let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
        let mut spec = Ipv4Spec::new(A, B, 17, data);
        spec.flags = if more { 0b001 } else { 0 };
        spec.frag_offset = frag_offset;
        let (r, frags) = fragments_of(&spec, mtu, Offload::NONE);
        let (_, got, last_mf) = reassemble(&frags, usize::from(mtu), &spec);
        prop_assert_eq!(got, spec.payload.clone());
        prop_assert_eq!(last_mf, more);
        prop_assert_eq!(r.counters().fragments_sent, frags.len() as u64);
    }
}
