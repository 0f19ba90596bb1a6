//! IPv4 in: header validation, then local delivery or forwarding.
//!
//! The forwarding path reads fields straight from the bytes (no parsing into a struct),
//! rewrites the frame in place and allocates nothing.

use std::net::SocketAddrV4;
use std::num::NonZeroU16;
use std::time::Duration;

use super::icmp::IcmpError;
use super::{Offload, Router, Verdict};
use crate::addr::AddrKind;
use crate::checksum;
use crate::counters::DropReason;
use crate::frame::{
    ETH_LEN, IP_DF, IP_MF, IP_OFFSET, IPV4_LEN, PROTO_ICMP, PROTO_TCP, PROTO_UDP, UDP_LEN, be16,
    be32,
};
use crate::neighbour::Lookup;

/// Decrement the TTL of the IPv4 header at the start of `ip` (TTL ≥ 1) and patch the header
/// checksum incrementally (RFC 1624 eqn. 3) over the TTL/protocol word.
#[inline]
pub(crate) fn decrement_ttl(ip: &mut [u8]) {
    let (Some(&ttl), Some(&proto), Some(&[c0, c1])) = (ip.get(8), ip.get(9), ip.get(10..12)) else {
        return;
    };
    let new_ttl = ttl.saturating_sub(1);
    let old = u16::from_be_bytes([ttl, proto]);
    let new = u16::from_be_bytes([new_ttl, proto]);
    let hc = checksum::update(u16::from_be_bytes([c0, c1]), old, new);
    ip[8] = new_ttl;
    ip[10..12].copy_from_slice(&hc.to_be_bytes());
}

/// Header facts shared by the local and forwarding paths.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ipv4Meta {
    /// Header length in bytes.
    pub(super) ihl: usize,
    /// Total length in bytes (header included).
    pub(super) total: usize,
    pub(super) src: u32,
    pub(super) dst: u32,
}

impl Router {
    pub(super) fn ipv4_in(
        &mut self,
        now: Duration,
        iface: usize,
        frame: &mut [u8],
        offload: Offload,
    ) -> Verdict {
        let Some(ip) = frame.get(ETH_LEN..) else {
            return self.discard(DropReason::Truncated);
        };
        if ip.len() < IPV4_LEN {
            return self.discard(DropReason::Truncated);
        }
        let vihl = ip[0];
        if vihl >> 4 != 4 {
            return self.discard(DropReason::BadVersion);
        }
        let ihl = usize::from(vihl & 0x0f) * 4;
        if ihl < IPV4_LEN {
            return self.discard(DropReason::BadHeaderLength);
        }
        if ip.len() < ihl {
            return self.discard(DropReason::Truncated);
        }
        let total = usize::from(be16(ip, 2));
        if total < ihl || total > ip.len() {
            return self.discard(DropReason::BadTotalLength);
        }
        if !checksum::verify(&ip[..ihl]) {
            return self.discard(DropReason::BadChecksum);
        }
        let m = Ipv4Meta {
            ihl,
            total,
            src: be32(ip, 12),
            dst: be32(ip, 16),
        };
        if self.plan.classify(m.src) != AddrKind::Unicast {
            return self.discard(DropReason::BadSource);
        }
        match self.plan.classify(m.dst) {
            AddrKind::Unicast => self.forward(now, iface, frame, m, offload),
            AddrKind::Own => self.local(now, iface, frame, m, offload),
            AddrKind::Broadcast => self.discard(DropReason::BroadcastDestination),
            AddrKind::Martian => self.discard(DropReason::MartianDestination),
        }
    }

    /// The packet (without Ethernet header or padding) in `frame`.
    fn packet(frame: &[u8], m: Ipv4Meta) -> &[u8] {
        frame.get(ETH_LEN..ETH_LEN + m.total).unwrap_or_default()
    }

    fn forward(
        &mut self,
        now: Duration,
        ingress: usize,
        frame: &mut [u8],
        m: Ipv4Meta,
        offload: Offload,
    ) -> Verdict {
        let ttl = frame.get(ETH_LEN + 8).copied().unwrap_or(0);
        if ttl <= 1 {
            self.icmp_error(
                now,
                ingress,
                None,
                Self::packet(frame, m),
                IcmpError::TimeExceeded,
            );
            return self.discard(DropReason::TtlExceeded);
        }
        let Some(nh) = self.routes.lookup(m.dst) else {
            self.icmp_error(
                now,
                ingress,
                None,
                Self::packet(frame, m),
                IcmpError::NetUnreachable,
            );
            return self.discard(DropReason::NoRoute);
        };
        let Some(egress) = self.ifaces.get(nh.iface) else {
            return self.discard(DropReason::NoRoute);
        };
        let mtu = egress.mtu;
        // The length each packet will have on the egress link: a super-frame's segments, or
        // the packet itself.
        let on_link = match offload.gso_size {
            Some(size) => match Self::segment_len(frame, m, size) {
                Some(len) => len,
                None => return self.discard(DropReason::GsoInvalid),
            },
            None => m.total,
        };
        if on_link > usize::from(mtu) {
            if be16(frame, ETH_LEN + 6) & IP_DF != 0 {
                self.icmp_error(
                    now,
                    ingress,
                    None,
                    Self::packet(frame, m),
                    IcmpError::FragNeeded { mtu },
                );
                return self.discard(DropReason::FragmentationNeeded);
            }
            if offload.gso_size.is_some() {
                return self.discard(DropReason::TooBig);
            }
            if offload.csum_partial && crate::checksum::complete_l4_checksum(frame) {
                self.counters.checksums_completed += 1;
            }
            return self.fragment(now, nh, frame, m);
        }
        if offload.gso_size.is_none() && frame.len() - ETH_LEN > usize::from(mtu) {
            // Bytes beyond the total length that would not fit the egress link: the verdict
            // keeps the frame's length, so refuse rather than send a frame the link rejects.
            return self.discard(DropReason::TooBig);
        }
        let egress_mac = egress.mac;
        if let Some(ip) = frame.get_mut(ETH_LEN..) {
            decrement_ttl(ip);
        }
        frame[6..12].copy_from_slice(&egress_mac);
        let neighbour = nh.neighbour(m.dst);
        let mac = match self.arp.lookup(now, neighbour) {
            Lookup::Ready(mac) => mac,
            Lookup::ReadyProbe(mac) => {
                self.send_arp_request(nh.iface, neighbour, Some(mac));
                mac
            }
            l @ (Lookup::Incomplete | Lookup::Missing) => {
                if offload.gso_size.is_some() {
                    // Start the resolution, hold nothing (see `DropReason::GsoUnresolved`).
                    self.start_resolution(now, l, neighbour, nh.iface);
                    return self.discard(DropReason::GsoUnresolved);
                }
                // A held frame leaves without its offload state: finish its checksum now.
                if offload.csum_partial && crate::checksum::complete_l4_checksum(frame) {
                    self.counters.checksums_completed += 1;
                }
                let len = frame.len();
                self.hold(now, l, neighbour, nh.iface, Some(ingress), len, |buf| {
                    buf.copy_from_slice(frame);
                });
                return Verdict::Done;
            }
        };
        frame[..6].copy_from_slice(&mac);
        self.counters.forwarded += 1;
        if offload.gso_size.is_some() {
            self.counters.forwarded_gso += 1;
        }
        Verdict::Forward { iface: nh.iface }
    }

    /// The IPv4 length of each segment of a super-frame carrying `size` payload bytes per
    /// segment: header + TCP header (from its data offset) or UDP header + `size`. `None` when
    /// the packet is neither TCP nor UDP, its L4 header does not fit, or `size` is 0.
    fn segment_len(frame: &[u8], m: Ipv4Meta, size: u16) -> Option<usize> {
        if size == 0 {
            return None;
        }
        let l4 = ETH_LEN + m.ihl;
        let l4_header = match frame.get(ETH_LEN + 9).copied()? {
            PROTO_TCP => usize::from(frame.get(l4 + 12)? >> 4) * 4,
            PROTO_UDP => UDP_LEN,
            _ => return None,
        };
        if l4_header < UDP_LEN || m.ihl + l4_header > m.total {
            return None;
        }
        Some(m.ihl + l4_header + usize::from(size))
    }

    fn local(
        &mut self,
        now: Duration,
        ingress: usize,
        frame: &[u8],
        m: Ipv4Meta,
        offload: Offload,
    ) -> Verdict {
        let ip = Self::packet(frame, m);
        if be16(ip, 6) & (IP_MF | IP_OFFSET) != 0 {
            return self.discard(DropReason::FragmentForUs);
        }
        let l4 = ip.get(m.ihl..).unwrap_or_default();
        match ip.get(9).copied() {
            Some(PROTO_ICMP) => self.icmp_in(now, ip, m),
            Some(PROTO_UDP) => {
                if l4.len() < UDP_LEN {
                    return self.discard(DropReason::BadUdp);
                }
                let ulen = usize::from(be16(l4, 4));
                if ulen < UDP_LEN || ulen > l4.len() {
                    return self.discard(DropReason::BadUdp);
                }
                if be16(l4, 6) != 0 && !offload.csum_partial {
                    let pseudo = checksum::pseudo_header(m.src, m.dst, PROTO_UDP, ulen as u16);
                    if checksum::fold(pseudo + checksum::sum(&l4[..ulen])) != 0xffff {
                        return self.discard(DropReason::BadUdpChecksum);
                    }
                }
                let (sport, dport) = (be16(l4, 0), be16(l4, 2));
                if dport == self.capsule_port {
                    let segment = match offload.gso_size {
                        None => None,
                        Some(n) => match NonZeroU16::new(n) {
                            Some(n) if ip.get(9) == Some(&PROTO_UDP) => Some(n),
                            _ => return self.discard(DropReason::GsoInvalid),
                        },
                    };
                    self.counters.capsules += 1;
                    let start = ETH_LEN + m.ihl + UDP_LEN;
                    return Verdict::Capsule {
                        from: SocketAddrV4::new(m.src.into(), sport),
                        to: SocketAddrV4::new(m.dst.into(), dport),
                        payload: start..ETH_LEN + m.ihl + ulen,
                        segment,
                    };
                }
                self.icmp_error(now, ingress, Some(m.dst), ip, IcmpError::PortUnreachable);
                self.discard(DropReason::PortUnreachable)
            }
            _ => {
                self.icmp_error(
                    now,
                    ingress,
                    Some(m.dst),
                    ip,
                    IcmpError::ProtocolUnreachable,
                );
                self.discard(DropReason::ProtocolUnreachable)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The in-place decrement leaves a header whose checksum equals a full recomputation
        /// (pnet's), for any valid header and TTL ≥ 2, including a 0x0000 checksum before
        /// (`edge` 1) or after (`edge` 2) the decrement.
        #[test]
        fn decrement_matches_pnet_recomputation(
            mut hdr in proptest::array::uniform20(any::<u8>()),
            ttl in 2u8..=255,
            edge in 0u8..3,
        ) {
            hdr[0] = 0x45;
            hdr[10] = 0;
            hdr[11] = 0;
            if edge > 0 {
                // Solve the identification field for a header sum of 0xFFFF.
                hdr[8] = if edge == 1 { ttl } else { ttl - 1 };
                hdr[4] = 0;
                hdr[5] = 0;
                let s = checksum::fold(checksum::sum(&hdr));
                hdr[4..6].copy_from_slice(&(0xffff - s).to_be_bytes());
            }
            hdr[8] = ttl;
            let c = pnet_packet::util::checksum(&hdr, 5);
            hdr[10..12].copy_from_slice(&c.to_be_bytes());
            decrement_ttl(&mut hdr);
            prop_assert_eq!(hdr[8], ttl - 1);
            let full = pnet_packet::util::checksum(&hdr, 5);
            if edge == 2 {
                prop_assert_eq!(full, 0);
            }
            prop_assert_eq!(be16(&hdr, 10), full);
            prop_assert!(checksum::verify(&hdr));
        }
    }

    #[test]
    fn decrement_on_short_input_does_nothing() {
        let mut short = [0x45u8, 0, 0, 0, 0, 0, 0, 0, 9, 17, 0];
        decrement_ttl(&mut short);
        assert_eq!(short[8], 9);
    }
}
