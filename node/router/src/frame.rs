//! Frame layout constants, bounds-checked field readers for the per-packet path, and the
//! builders of every frame the router generates (ARP, ICMP, UDP): Ethernet, ARP and ICMP
//! written with pnet's mutable views, the IPv4 and UDP headers of every capsule sent as
//! bytes (see [`write_ipv4`]).
//!
//! Builders write into a buffer the caller sized exactly; on a short buffer they write nothing
//! rather than panic (the callers compute sizes, so that does not happen).

use std::net::Ipv4Addr;

use pnet_packet::Packet;
use pnet_packet::arp::{ArpHardwareTypes, ArpOperation, MutableArpPacket};
use pnet_packet::ethernet::{EtherType, EtherTypes, MutableEthernetPacket};
use pnet_packet::icmp::{self, IcmpCode, IcmpType, MutableIcmpPacket};

use crate::checksum;

/// Ethernet II header.
pub(crate) const ETH_LEN: usize = 14;
/// ARP for IPv4 over Ethernet.
pub(crate) const ARP_LEN: usize = 28;
/// IPv4 header without options.
pub(crate) const IPV4_LEN: usize = 20;
/// UDP header.
pub(crate) const UDP_LEN: usize = 8;
/// ICMP header (type, code, checksum, 4 bytes of rest-of-header).
pub(crate) const ICMP_LEN: usize = 8;

pub(crate) const ETHERTYPE_IPV4: u16 = 0x0800;
pub(crate) const ETHERTYPE_ARP: u16 = 0x0806;
pub(crate) const BROADCAST_MAC: [u8; 6] = [0xff; 6];

pub(crate) const PROTO_ICMP: u8 = 1;
pub(crate) const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;

/// IPv4 flags/fragment word: Don't Fragment.
pub(crate) const IP_DF: u16 = 0x4000;
/// IPv4 flags/fragment word: More Fragments.
pub(crate) const IP_MF: u16 = 0x2000;
/// IPv4 flags/fragment word: the offset.
pub(crate) const IP_OFFSET: u16 = 0x1fff;

pub(crate) const ICMP_ECHO_REPLY: u8 = 0;
pub(crate) const ICMP_DEST_UNREACHABLE: u8 = 3;
pub(crate) const ICMP_ECHO_REQUEST: u8 = 8;
pub(crate) const ICMP_TIME_EXCEEDED: u8 = 11;

/// ICMP types that are error messages (RFC 1812 §4.3.2.7: never answered with an error).
pub(crate) fn icmp_is_error(ty: u8) -> bool {
    matches!(ty, 3 | 4 | 5 | 11 | 12)
}

/// Big-endian `u16` at `at`; 0 past the end (callers check lengths first).
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..).and_then(|s| s.get(..2)) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

/// Big-endian `u32` at `at`; 0 past the end.
#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..).and_then(|s| s.get(..4)) {
        Some(&[w, x, y, z]) => u32::from_be_bytes([w, x, y, z]),
        _ => 0,
    }
}

/// Write an Ethernet header at the start of `buf`.
pub(crate) fn write_ethernet(buf: &mut [u8], dst: [u8; 6], src: [u8; 6], ethertype: u16) {
    if let Some(mut eth) = MutableEthernetPacket::new(buf) {
        eth.set_destination(dst.into());
        eth.set_source(src.into());
        eth.set_ethertype(EtherType(ethertype));
    }
}

/// The addresses of an ARP message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ArpFields {
    pub(crate) op: u16,
    pub(crate) sha: [u8; 6],
    pub(crate) spa: u32,
    pub(crate) tha: [u8; 6],
    pub(crate) tpa: u32,
}

/// Length of a generated ARP frame (no padding: the NIC pads to 60 bytes).
pub(crate) const ARP_FRAME_LEN: usize = ETH_LEN + ARP_LEN;

/// Write a whole ARP frame (`ARP_FRAME_LEN` bytes) with Ethernet destination `eth_dst`.
pub(crate) fn write_arp(buf: &mut [u8], eth_dst: [u8; 6], a: &ArpFields) {
    write_ethernet(buf, eth_dst, a.sha, ETHERTYPE_ARP);
    let Some(body) = buf.get_mut(ETH_LEN..) else {
        return;
    };
    if let Some(mut arp) = MutableArpPacket::new(body) {
        arp.set_hardware_type(ArpHardwareTypes::Ethernet);
        arp.set_protocol_type(EtherTypes::Ipv4);
        arp.set_hw_addr_len(6);
        arp.set_proto_addr_len(4);
        arp.set_operation(ArpOperation(a.op));
        arp.set_sender_hw_addr(a.sha.into());
        arp.set_sender_proto_addr(Ipv4Addr::from(a.spa));
        arp.set_target_hw_addr(a.tha.into());
        arp.set_target_proto_addr(Ipv4Addr::from(a.tpa));
    }
}

/// The fields of a generated IPv4 header (no options).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ipv4Fields {
    pub(crate) src: u32,
    pub(crate) dst: u32,
    pub(crate) proto: u8,
    pub(crate) tos: u8,
    pub(crate) id: u16,
    pub(crate) dont_fragment: bool,
    pub(crate) ttl: u8,
    /// Bytes after the header.
    pub(crate) payload_len: usize,
}

/// Write a 20-byte IPv4 header with its checksum at the start of `buf`.
///
/// Built as bytes and stored at once, as is the UDP header below: this runs for every
/// capsule sent, and pnet's setters (a bounds-checked read-modify-write per field) and its
/// per-word checksum loop were ~1.5 % of CPU 1 forwarding capsules. The tests parse what
/// is built here with pnet.
pub(crate) fn write_ipv4(buf: &mut [u8], h: &Ipv4Fields) {
    let Some(out) = buf.get_mut(..IPV4_LEN) else {
        return;
    };
    let total = u16::try_from(IPV4_LEN + h.payload_len).unwrap_or(u16::MAX);
    let flags: u16 = if h.dont_fragment { 0x4000 } else { 0 };
    let mut b = [0u8; IPV4_LEN];
    b[0] = 0x45; // version 4, 5 words
    b[1] = h.tos;
    b[2..4].copy_from_slice(&total.to_be_bytes());
    b[4..6].copy_from_slice(&h.id.to_be_bytes());
    b[6..8].copy_from_slice(&flags.to_be_bytes());
    b[8] = h.ttl;
    b[9] = h.proto;
    b[12..16].copy_from_slice(&h.src.to_be_bytes());
    b[16..20].copy_from_slice(&h.dst.to_be_bytes());
    let sum = !checksum::fold(checksum::sum(&b));
    b[10..12].copy_from_slice(&sum.to_be_bytes());
    out.copy_from_slice(&b);
}

/// Write a UDP header and `payload` at the start of `buf`, checksum included (a computed
/// 0 is sent as 0xFFFF, RFC 768).
pub(crate) fn write_udp(
    buf: &mut [u8],
    src: u32,
    dst: u32,
    sport: u16,
    dport: u16,
    payload: &[u8],
) {
    let len = UDP_LEN + payload.len();
    let Some(seg) = buf.get_mut(..len) else {
        return;
    };
    let (head, body) = seg.split_at_mut(UDP_LEN);
    body.copy_from_slice(payload);
    let len16 = u16::try_from(len).unwrap_or(u16::MAX);
    let mut h = [0u8; UDP_LEN];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..6].copy_from_slice(&len16.to_be_bytes());
    // Our own word-at-a-time sum: pnet's `ipv4_checksum` showed up at ~5 % of the router
    // process's samples for 1500-byte capsules (the unit tests compare the two).
    let acc =
        checksum::pseudo_header(src, dst, 17, len16) + checksum::sum(&h) + checksum::sum(body);
    let sum = !checksum::fold(acc);
    h[6..8].copy_from_slice(&(if sum == 0 { 0xffff } else { sum }).to_be_bytes());
    head.copy_from_slice(&h);
}

/// Write an ICMP message at the start of `buf`: header with `rest` (the 4 type-specific
/// bytes), then `body`, checksum over all of it.
pub(crate) fn write_icmp(buf: &mut [u8], ty: u8, code: u8, rest: [u8; 4], body: &[u8]) {
    let len = ICMP_LEN + body.len();
    let Some(msg) = buf.get_mut(..len) else {
        return;
    };
    msg[4..8].copy_from_slice(&rest);
    msg[ICMP_LEN..].copy_from_slice(body);
    let Some(mut p) = MutableIcmpPacket::new(msg) else {
        return;
    };
    p.set_icmp_type(IcmpType(ty));
    p.set_icmp_code(IcmpCode(code));
    p.set_checksum(0);
    let sum = icmp::checksum(&p.to_immutable());
    p.set_checksum(sum);
    debug_assert_eq!(p.packet().len(), len);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum;
    use pnet_packet::arp::ArpPacket;
    use pnet_packet::ipv4::Ipv4Packet;
    use pnet_packet::udp::UdpPacket;

    #[test]
    fn readers_do_not_panic_past_the_end() {
        let b = [1, 2, 3];
        assert_eq!(be16(&b, 0), 0x0102);
        assert_eq!(be16(&b, 2), 0);
        assert_eq!(be16(&b, usize::MAX - 1), 0);
        assert_eq!(be32(&b, 0), 0);
        assert_eq!(be32(&b, usize::MAX), 0);
        assert_eq!(be32(&[1, 2, 3, 4], 0), 0x0102_0304);
    }

    #[test]
    fn built_headers_verify() {
        let mut buf = [0u8; IPV4_LEN + UDP_LEN + 3];
        let (src, dst) = (0xc612_0001, 0xc612_0102);
        write_ipv4(
            &mut buf,
            &Ipv4Fields {
                src,
                dst,
                proto: PROTO_UDP,
                tos: 0xc1,
                id: 7,
                dont_fragment: true,
                ttl: 64,
                payload_len: UDP_LEN + 3,
            },
        );
        write_udp(&mut buf[IPV4_LEN..], src, dst, 3322, 9, b"abc");
        assert!(checksum::verify(&buf[..IPV4_LEN]));
        let ip = Ipv4Packet::new(&buf).unwrap();
        assert_eq!(
            (ip.get_dscp(), ip.get_ecn(), ip.get_flags()),
            (0x30, 1, 0b010)
        );
        assert_eq!(usize::from(ip.get_total_length()), buf.len());
        assert_eq!(
            (
                ip.get_version(),
                ip.get_header_length(),
                ip.get_fragment_offset()
            ),
            (4, 5, 0)
        );
        assert_eq!(
            (
                ip.get_identification(),
                ip.get_ttl(),
                ip.get_next_level_protocol().0
            ),
            (7, 64, PROTO_UDP)
        );
        assert_eq!(
            (u32::from(ip.get_source()), u32::from(ip.get_destination())),
            (src, dst)
        );
        assert_eq!(ip.get_checksum(), pnet_packet::ipv4::checksum(&ip));
        let udp = UdpPacket::new(&buf[IPV4_LEN..]).unwrap();
        assert_eq!(udp.payload(), b"abc");
        assert_eq!(
            (udp.get_source(), udp.get_destination(), udp.get_length()),
            (3322, 9, (UDP_LEN + 3) as u16)
        );
        let pseudo = checksum::pseudo_header(src, dst, PROTO_UDP, (UDP_LEN + 3) as u16);
        assert_eq!(
            checksum::fold(pseudo + checksum::sum(&buf[IPV4_LEN..])),
            0xffff
        );
    }

    #[test]
    fn arp_frame_layout() {
        let mut buf = [0u8; ARP_FRAME_LEN];
        let f = ArpFields {
            op: 2,
            sha: [2, 0, 0, 0, 0, 1],
            spa: 0x0a00_0001,
            tha: [2, 0, 0, 0, 0, 2],
            tpa: 0x0a00_0002,
        };
        write_arp(&mut buf, f.tha, &f);
        assert_eq!(&buf[..6], &f.tha);
        assert_eq!(&buf[6..12], &f.sha);
        assert_eq!(be16(&buf, 12), ETHERTYPE_ARP);
        let a = ArpPacket::new(&buf[ETH_LEN..]).unwrap();
        assert_eq!(a.get_operation(), ArpOperation(2));
        assert_eq!(a.get_sender_proto_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(a.get_target_hw_addr().octets(), f.tha);
    }
}
