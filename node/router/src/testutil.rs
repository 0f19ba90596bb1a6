//! Test frames built with pnet's mutable views and checksum helpers (independently of the
//! router's own builders), and a standard two-interface router.
//!
//! ```text
//!   host A 198.18.0.10 ─┐                      ┌─ host B 198.18.1.20
//!   gw0    198.18.0.254 ─┤ eth0 198.18.0.1/24   │  gw1 198.18.1.254
//!                        └──── router ──── eth1 198.18.1.1/24
//! routes: 198.19.0.0/16 via 198.18.1.254, 198.19.5.0/24 via 198.18.0.254
//! ```

use std::net::Ipv4Addr;
use std::time::Duration;

use pnet_packet::Packet;
use pnet_packet::arp::{ArpHardwareTypes, ArpOperation, MutableArpPacket};
use pnet_packet::ethernet::{EtherType, EtherTypes, MutableEthernetPacket};
use pnet_packet::icmp::{self, IcmpCode, IcmpType, MutableIcmpPacket};
use pnet_packet::ip::IpNextHeaderProtocol;
use pnet_packet::ipv4::{self, MutableIpv4Packet};
use pnet_packet::udp::{self, MutableUdpPacket};

use crate::{Interface, Route, Router, RouterConfig, RouterLimits};

pub(crate) const R0_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub(crate) const R1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub(crate) const A_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 0x0a];
pub(crate) const B_MAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 0x14];
pub(crate) const GW0_MAC: [u8; 6] = [0x02, 0xcc, 0, 0, 0, 0xfe];
pub(crate) const GW1_MAC: [u8; 6] = [0x02, 0xdd, 0, 0, 0, 0xfe];
pub(crate) const BCAST: [u8; 6] = [0xff; 6];

pub(crate) const R0: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub(crate) const R1: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
pub(crate) const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
pub(crate) const B: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 20);
pub(crate) const GW0: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
pub(crate) const GW1: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 254);
/// Behind gw1 (198.19.0.0/16).
pub(crate) const FAR: Ipv4Addr = Ipv4Addr::new(198, 19, 7, 7);
/// Behind gw0 (198.19.5.0/24, more specific than the /16).
pub(crate) const FAR5: Ipv4Addr = Ipv4Addr::new(198, 19, 5, 5);
/// No route.
pub(crate) const NOWHERE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);

pub(crate) fn t(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

pub(crate) fn config() -> RouterConfig {
    RouterConfig {
        interfaces: vec![
            Interface {
                name: "eth0".into(),
                mac: R0_MAC,
                addr: R0,
                prefix_len: 24,
                mtu: 1500,
            },
            Interface {
                name: "eth1".into(),
                mac: R1_MAC,
                addr: R1,
                prefix_len: 24,
                mtu: 1500,
            },
        ],
        routes: vec![
            Route {
                dst: Ipv4Addr::new(198, 19, 0, 0),
                prefix_len: 16,
                via: Some(GW1),
            },
            Route {
                dst: Ipv4Addr::new(198, 19, 5, 0),
                prefix_len: 24,
                via: Some(GW0),
            },
        ],
        capsule_port: 3322,
        limits: RouterLimits::default(),
    }
}

pub(crate) fn router() -> Router {
    Router::new(config()).expect("test config is valid")
}

pub(crate) fn router_with(f: impl FnOnce(&mut RouterConfig)) -> Router {
    let mut c = config();
    f(&mut c);
    Router::new(c).expect("test config is valid")
}

/// Ethernet frame around `payload`.
pub(crate) fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 14 + payload.len()];
    let mut e = MutableEthernetPacket::new(&mut buf).unwrap();
    e.set_destination(dst.into());
    e.set_source(src.into());
    e.set_ethertype(EtherType(ethertype));
    e.set_payload(payload);
    buf
}

/// An ARP frame for IPv4 over Ethernet.
pub(crate) fn arp(
    eth_dst: [u8; 6],
    op: u16,
    sha: [u8; 6],
    spa: Ipv4Addr,
    tha: [u8; 6],
    tpa: Ipv4Addr,
) -> Vec<u8> {
    let mut body = [0u8; 28];
    let mut a = MutableArpPacket::new(&mut body).unwrap();
    a.set_hardware_type(ArpHardwareTypes::Ethernet);
    a.set_protocol_type(EtherTypes::Ipv4);
    a.set_hw_addr_len(6);
    a.set_proto_addr_len(4);
    a.set_operation(ArpOperation(op));
    a.set_sender_hw_addr(sha.into());
    a.set_sender_proto_addr(spa);
    a.set_target_hw_addr(tha.into());
    a.set_target_proto_addr(tpa);
    eth(eth_dst, sha, 0x0806, &body)
}

/// Who-has `tpa`, from `sha`/`spa`, broadcast.
pub(crate) fn arp_request(sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    arp(BCAST, 1, sha, spa, [0; 6], tpa)
}

/// `spa` is-at `sha`, unicast to `to_mac`/`tpa`.
pub(crate) fn arp_reply(to_mac: [u8; 6], sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    arp(to_mac, 2, sha, spa, to_mac, tpa)
}

/// An IPv4 packet description; [`Ipv4Spec::packet`] builds it with pnet.
#[derive(Debug, Clone)]
pub(crate) struct Ipv4Spec {
    pub(crate) src: Ipv4Addr,
    pub(crate) dst: Ipv4Addr,
    pub(crate) ttl: u8,
    pub(crate) proto: u8,
    pub(crate) tos: u8,
    pub(crate) id: u16,
    /// pnet's 3-bit flags (0b010 = DF, 0b001 = MF).
    pub(crate) flags: u8,
    pub(crate) frag_offset: u16,
    /// Raw option bytes (a multiple of 4).
    pub(crate) options: Vec<u8>,
    pub(crate) payload: Vec<u8>,
}

impl Ipv4Spec {
    pub(crate) fn new(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: Vec<u8>) -> Self {
        Ipv4Spec {
            src,
            dst,
            ttl: 64,
            proto,
            tos: 0,
            id: 0x1234,
            flags: 0,
            frag_offset: 0,
            options: Vec::new(),
            payload,
        }
    }

    /// UDP with a correct checksum.
    pub(crate) fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, data: &[u8]) -> Self {
        Self::new(src, dst, 17, udp_segment(src, dst, sport, dport, data))
    }

    /// ICMP echo request.
    pub(crate) fn echo(src: Ipv4Addr, dst: Ipv4Addr, ident: u16, seq: u16, data: &[u8]) -> Self {
        let mut rest = [0u8; 4];
        rest[..2].copy_from_slice(&ident.to_be_bytes());
        rest[2..].copy_from_slice(&seq.to_be_bytes());
        Self::new(src, dst, 1, icmp_message(8, 0, rest, data))
    }

    pub(crate) fn packet(&self) -> Vec<u8> {
        let hlen = 20 + self.options.len();
        let mut buf = vec![0u8; hlen + self.payload.len()];
        buf[20..hlen].copy_from_slice(&self.options);
        buf[hlen..].copy_from_slice(&self.payload);
        let mut ip = MutableIpv4Packet::new(&mut buf).unwrap();
        ip.set_version(4);
        ip.set_header_length((hlen / 4) as u8);
        ip.set_dscp(self.tos >> 2);
        ip.set_ecn(self.tos & 3);
        ip.set_total_length((hlen + self.payload.len()) as u16);
        ip.set_identification(self.id);
        ip.set_flags(self.flags);
        ip.set_fragment_offset(self.frag_offset);
        ip.set_ttl(self.ttl);
        ip.set_next_level_protocol(IpNextHeaderProtocol(self.proto));
        ip.set_source(self.src);
        ip.set_destination(self.dst);
        let c = ipv4::checksum(&ip.to_immutable());
        ip.set_checksum(c);
        buf
    }

    /// Ethernet frame carrying the packet.
    pub(crate) fn frame(&self, dst_mac: [u8; 6], src_mac: [u8; 6]) -> Vec<u8> {
        eth(dst_mac, src_mac, 0x0800, &self.packet())
    }
}

pub(crate) fn udp_segment(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    data: &[u8],
) -> Vec<u8> {
    let mut buf = vec![0u8; 8 + data.len()];
    let mut u = MutableUdpPacket::new(&mut buf).unwrap();
    u.set_source(sport);
    u.set_destination(dport);
    u.set_length((8 + data.len()) as u16);
    u.set_payload(data);
    let c = udp::ipv4_checksum(&u.to_immutable(), &src, &dst);
    u.set_checksum(if c == 0 { 0xffff } else { c });
    buf
}

pub(crate) fn icmp_message(ty: u8, code: u8, rest: [u8; 4], data: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 8 + data.len()];
    buf[4..8].copy_from_slice(&rest);
    buf[8..].copy_from_slice(data);
    let mut m = MutableIcmpPacket::new(&mut buf).unwrap();
    m.set_icmp_type(IcmpType(ty));
    m.set_icmp_code(IcmpCode(code));
    let c = icmp::checksum(&m.to_immutable());
    m.set_checksum(c);
    buf
}

/// Everything the router queued, as `(iface, frame)`.
pub(crate) fn drain(r: &mut Router) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    r.drain_transmits(|i, f| out.push((i, f.to_vec())));
    out
}

/// Teach the router `ip` is at `mac` on `iface`: the neighbour asks for our address (which
/// the router answers; the answer is drained and discarded).
pub(crate) fn learn(r: &mut Router, now: Duration, iface: usize, ip: Ipv4Addr, mac: [u8; 6]) {
    let ours = r.interfaces()[iface].addr;
    let mut f = arp_request(mac, ip, ours);
    assert_eq!(r.handle_frame(now, iface, &mut f), crate::Verdict::Done);
    let out = drain(r);
    assert_eq!(out.len(), 1, "one ARP reply");
}

/// A router with A, B, gw0 and gw1 resolved at time 0.
pub(crate) fn resolved_router() -> Router {
    let mut r = router();
    learn(&mut r, t(0), 0, A, A_MAC);
    learn(&mut r, t(0), 0, GW0, GW0_MAC);
    learn(&mut r, t(0), 1, B, B_MAC);
    learn(&mut r, t(0), 1, GW1, GW1_MAC);
    r
}

/// Parsed view of a generated IPv4 frame, checked on the way: valid Ethernet/IPv4 header,
/// header checksum right.
#[derive(Debug, Clone)]
pub(crate) struct Ip {
    pub(crate) eth_dst: [u8; 6],
    pub(crate) eth_src: [u8; 6],
    pub(crate) src: Ipv4Addr,
    pub(crate) dst: Ipv4Addr,
    pub(crate) ttl: u8,
    pub(crate) proto: u8,
    pub(crate) tos: u8,
    pub(crate) flags: u8,
    pub(crate) payload: Vec<u8>,
}

pub(crate) fn parse_ip(frame: &[u8]) -> Ip {
    use pnet_packet::ethernet::EthernetPacket;
    use pnet_packet::ipv4::Ipv4Packet;
    let e = EthernetPacket::new(frame).expect("ethernet");
    assert_eq!(e.get_ethertype(), EtherTypes::Ipv4);
    let ip = Ipv4Packet::new(e.payload()).expect("ipv4");
    assert_eq!(ip.get_version(), 4);
    assert_eq!(
        ip.get_checksum(),
        ipv4::checksum(&ip),
        "IPv4 header checksum"
    );
    let hlen = usize::from(ip.get_header_length()) * 4;
    let total = usize::from(ip.get_total_length());
    Ip {
        eth_dst: e.get_destination().octets(),
        eth_src: e.get_source().octets(),
        src: ip.get_source(),
        dst: ip.get_destination(),
        ttl: ip.get_ttl(),
        proto: ip.get_next_level_protocol().0,
        tos: (ip.get_dscp() << 2) | ip.get_ecn(),
        flags: ip.get_flags(),
        payload: e.payload()[hlen..total].to_vec(),
    }
}

/// `(type, code, rest, body)` of an ICMP message.
pub(crate) type Icmp = (u8, u8, [u8; 4], Vec<u8>);

/// `(type, code, rest, body)` of an ICMP message, checksum verified.
pub(crate) fn parse_icmp(msg: &[u8]) -> Icmp {
    let p = pnet_packet::icmp::IcmpPacket::new(msg).expect("icmp");
    assert_eq!(p.get_checksum(), icmp::checksum(&p), "ICMP checksum");
    (
        p.get_icmp_type().0,
        p.get_icmp_code().0,
        [msg[4], msg[5], msg[6], msg[7]],
        msg[8..].to_vec(),
    )
}
