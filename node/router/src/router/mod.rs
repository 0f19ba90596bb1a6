//! The [`Router`] state machine and its public surface.
//!
//! - this file: construction, the Ethernet demultiplexer, `send_udp`, timers, output queue,
//!   accessors;
//! - `ipv4`: IPv4 validation, local delivery (capsules, echo, unreachables), forwarding;
//! - `icmp`: ICMP errors (rate-limited, RFC 1812 rules) and echo replies;
//! - `neigh`: ARP in, ARP requests out, sending generated packets through resolution, holding
//!   and releasing frames, retry timers.

mod fragment;
mod icmp;
mod ipv4;
mod neigh;

#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::num::NonZeroU16;
use std::ops::Range;
use std::time::Duration;

use crate::addr::{AddrKind, AddrPlan, IfaceInfo};
use crate::config::{self, ConfigError, Interface, RouterConfig, RouterLimits};
use crate::counters::{DropReason, RouterCounters};
use crate::frame::{self, ETH_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, IPV4_LEN, PROTO_UDP, UDP_LEN};
use crate::lpm::RouteTable;
use crate::neighbour::{ArpTable, Held};
use crate::ratelimit::IcmpLimiter;
use crate::tx::{FrameSink, TxQueue};

/// What the driver does with a frame after [`Router::handle_frame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The frame was rewritten in place (destination and source MAC, TTL − 1, header
    /// checksum updated incrementally per RFC 1624) and keeps its length; send it on `iface`.
    Forward {
        /// Egress interface id (may equal the ingress one).
        iface: usize,
    },
    /// A capsule: IPv4/UDP to one of our addresses and the capsule port, unfragmented, with a
    /// valid UDP length and checksum (if non-zero and not left to offload). Hand
    /// `frame[payload]` to the node core.
    Capsule {
        /// The sender's address and port.
        from: SocketAddrV4,
        /// Which of our addresses it was sent to, and the capsule port.
        to: SocketAddrV4,
        /// The UDP payload's byte range within the frame.
        payload: Range<usize>,
        /// `Some(n)` for a UDP GSO super-frame ([`Offload::gso_size`]): the payload is
        /// several datagrams of `n` bytes each (the last may be shorter), as
        /// `frame[payload].chunks(n)`. `None`: one datagram.
        segment: Option<NonZeroU16>,
    },
    /// Consumed: answered (the answer is queued), held for ARP, or dropped and counted.
    Done,
}

/// What the driver knows about a received frame beyond its bytes: its segmentation and
/// checksum-offload state (AF_PACKET's `virtio_net_hdr` and `TP_STATUS_CSUMNOTREADY`).
///
/// A Linux host's TCP stack sends a veth or tap "super-frames" of up to 64 KiB (GSO) and
/// leaves checksums to offload; NIC drivers coalesce received segments the same way (GRO).
/// The router forwards a super-frame whole if its *segments* fit the egress MTU, and the
/// driver hands the offload state back to the kernel on transmit, which segments it — the
/// way kernel forwarding treats them. [`Offload::NONE`] is an ordinary, complete frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offload {
    /// `Some(n)`: a super-frame of TCP segments (or UDP datagrams) carrying `n` payload bytes
    /// each. `Some(0)` is malformed and dropped ([`DropReason::GsoInvalid`]).
    pub gso_size: Option<u16>,
    /// The TCP/UDP checksum field holds only the pseudo-header sum: the frame came from a
    /// local stack that left the rest to offload. Such a frame's checksum is not verified on
    /// local delivery (the kernel trusts it the same way), and is completed in software where
    /// the frame leaves without its offload state (held for ARP, fragmented).
    pub csum_partial: bool,
}

impl Offload {
    /// A complete frame: no segmentation, checksums final.
    pub const NONE: Offload = Offload {
        gso_size: None,
        csum_partial: false,
    };
}

/// State of a neighbour as shown by [`Router::neighbours`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighbourState {
    /// Being resolved; no MAC yet.
    Incomplete,
    /// Confirmed within `arp_reachable`.
    Reachable,
    /// Older than `arp_reachable`: still used, re-resolved when next needed.
    Stale,
}

/// One ARP table entry, for status displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourEntry {
    /// The neighbour's address.
    pub ip: Ipv4Addr,
    /// The interface it is on.
    pub iface: usize,
    /// Its MAC, once resolved.
    pub mac: Option<[u8; 6]>,
    /// Resolution state at the `now` passed to [`Router::neighbours`].
    pub state: NeighbourState,
    /// Frames waiting for it.
    pub held: usize,
}

/// The sans-IO IPv4 router: feed it frames, timer ticks and capsule transmits; drain the
/// frames it generates. See the crate docs for the contract.
#[derive(Debug)]
pub struct Router {
    interfaces: Vec<Interface>,
    ifaces: Vec<IfaceInfo>,
    plan: AddrPlan,
    routes: RouteTable,
    capsule_port: u16,
    limits: RouterLimits,
    arp: ArpTable,
    icmp_limiter: IcmpLimiter,
    tx: TxQueue,
    counters: RouterCounters,
    next_id: u16,
    /// Reused buffer for frames taken from the ARP hold queue.
    scratch: Vec<Held>,
}

impl Router {
    /// Validate `cfg` and build a router with empty ARP table and queues.
    pub fn new(cfg: RouterConfig) -> Result<Router, ConfigError> {
        let prepared = config::prepare(&cfg)?;
        let l = cfg.limits;
        Ok(Router {
            plan: AddrPlan::new(&prepared.ifaces),
            ifaces: prepared.ifaces,
            routes: prepared.routes,
            capsule_port: cfg.capsule_port,
            arp: ArpTable::new(&l),
            icmp_limiter: IcmpLimiter::new(&l),
            tx: TxQueue::new(l.max_tx_frames, l.max_tx_bytes),
            counters: RouterCounters::default(),
            next_id: 0,
            scratch: Vec::new(),
            limits: l,
            interfaces: cfg.interfaces,
        })
    }

    /// Process one complete Ethernet frame received on interface `iface` at `now`: as
    /// [`handle_frame_with`](Self::handle_frame_with) with [`Offload::NONE`].
    pub fn handle_frame(&mut self, now: Duration, iface: usize, frame: &mut [u8]) -> Verdict {
        self.handle_frame_with(now, iface, frame, Offload::NONE)
    }

    /// Process one Ethernet frame received on interface `iface` at `now`, with its offload
    /// state. A [`Verdict::Forward`] keeps that state: send the frame with it (a super-frame
    /// is forwarded whole, its segments checked against the egress MTU).
    ///
    /// Never panics and never allocates on the forwarding path; whatever it generates (ARP,
    /// ICMP, released frames, fragments) is queued for
    /// [`drain_transmits`](Self::drain_transmits).
    pub fn handle_frame_with(
        &mut self,
        now: Duration,
        iface: usize,
        frame: &mut [u8],
        offload: Offload,
    ) -> Verdict {
        let Some(info) = self.ifaces.get(iface) else {
            return self.discard(DropReason::BadInterface);
        };
        let Some(dst_mac) = frame.get(..6) else {
            return self.discard(DropReason::Truncated);
        };
        if frame.len() < ETH_LEN {
            return self.discard(DropReason::Truncated);
        }
        match frame::be16(frame, 12) {
            ETHERTYPE_IPV4 => {
                if dst_mac != info.mac {
                    let reason = if dst_mac[0] & 1 != 0 {
                        DropReason::LinkBroadcast
                    } else {
                        DropReason::NotForUs
                    };
                    return self.discard(reason);
                }
                self.ipv4_in(now, iface, frame, offload)
            }
            ETHERTYPE_ARP => {
                self.arp_in(now, iface, frame);
                Verdict::Done
            }
            _ => self.discard(DropReason::NotIpv4),
        }
    }

    /// An ARP frame received on interface `iface`, handled as
    /// [`handle_frame`](Self::handle_frame) would; `true` if it is worth showing to sibling
    /// routers ([`handle_sibling_arp`](Self::handle_sibling_arp)): it passed every check —
    /// not for another host, not malformed or spoofed, not a probe, from our subnet —
    /// whether or not this router learned from it (a reply to a sibling's request teaches
    /// only the sibling). Anything that is not ARP is handled as a frame and gives `false`.
    pub fn handle_arp(&mut self, now: Duration, iface: usize, frame: &mut [u8]) -> bool {
        if frame.len() < ETH_LEN || frame::be16(frame, 12) != ETHERTYPE_ARP {
            self.handle_frame(now, iface, frame);
            return false;
        }
        self.arp_in(now, iface, frame)
    }

    /// An ARP frame (Ethernet header included) that a sibling router received or sent on
    /// interface `iface`: another worker of the same node, with the same configuration and
    /// interfaces, whose receive queues the frame's answer may reach instead of this one's.
    ///
    /// Received frames are learned from by the rules of [`handle_frame`](Self::handle_frame)
    /// (a request for our address creates the asker's entry; anything else only updates an
    /// entry that exists, and completes a resolution in progress, releasing its held frames)
    /// but never answered, and their drops are not counted: the sibling did both. A broadcast
    /// request the sibling sent for a next hop this router does not know starts the same
    /// resolution here (no request of its own), so a reply that reaches any worker completes
    /// it on all of them. Hand a sibling only the ARP frames it received or sent, not every
    /// frame: nothing else is looked at.
    pub fn handle_sibling_arp(&mut self, now: Duration, iface: usize, frame: &[u8]) {
        if frame.len() >= ETH_LEN && frame::be16(frame, 12) == ETHERTYPE_ARP {
            self.sibling_arp_in(now, iface, frame);
        }
    }

    /// Send a UDP datagram from the router (the node core's capsule transmits): Ethernet +
    /// IPv4 + UDP with source = the egress interface's address, source port = the capsule
    /// port, TTL 64, DF set, checksums; routed by longest prefix and resolved by ARP (held
    /// while unresolved). `false` if it was dropped (counted: `LocalBadDestination`,
    /// `LocalNoRoute`, `LocalTooBig`, `ArpPendingFull`, `ArpIncompleteFull`, `TxQueueFull`).
    pub fn send_udp(&mut self, now: Duration, dst: SocketAddrV4, payload: &[u8]) -> bool {
        self.send_udp_inner(now, dst, payload, None::<&mut TxQueue>)
    }

    /// [`send_udp`](Self::send_udp), with the frame written straight into `sink` (the
    /// driver's transmit batch) when its next hop is resolved, instead of being queued here
    /// for [`drain_transmits`](Self::drain_transmits) and copied again. A frame waiting for
    /// ARP is held here as with `send_udp`, and comes out of `drain_transmits` when
    /// released. `true` if the frame went to the sink or is held.
    pub fn send_udp_to<S: FrameSink>(
        &mut self,
        now: Duration,
        dst: SocketAddrV4,
        payload: &[u8],
        sink: &mut S,
    ) -> bool {
        self.send_udp_inner(now, dst, payload, Some(sink))
    }

    fn send_udp_inner<S: FrameSink>(
        &mut self,
        now: Duration,
        dst: SocketAddrV4,
        payload: &[u8],
        sink: Option<&mut S>,
    ) -> bool {
        let d = u32::from(*dst.ip());
        if self.plan.classify(d) != AddrKind::Unicast {
            self.counters.drop(DropReason::LocalBadDestination);
            return false;
        }
        let (sport, dport) = (self.capsule_port, dst.port());
        let sent = self.send_ip(
            now,
            d,
            None,
            LocalPacket {
                proto: PROTO_UDP,
                tos: 0,
                dont_fragment: true,
                payload_len: UDP_LEN + payload.len(),
            },
            |buf, src| frame::write_udp(buf, src, d, sport, dport, payload),
            sink,
        );
        if sent {
            self.counters.udp_sent += 1;
        }
        sent
    }

    /// Hand every generated frame to `f(iface, frame)`, in order, and empty the queue.
    pub fn drain_transmits(&mut self, f: impl FnMut(usize, &[u8])) {
        self.tx.drain(f);
    }

    /// Run the ARP timers due at `now`: retransmit requests, fail resolutions that ran out
    /// of retries (their held frames are dropped, answered with host unreachable).
    pub fn handle_timeout(&mut self, now: Duration) {
        self.arp_timeout(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work; `None` if no ARP
    /// resolution is in progress.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.arp.next_deadline()
    }

    /// Counters since creation.
    pub fn counters(&self) -> &RouterCounters {
        &self.counters
    }

    /// The interfaces, as configured; ids are indices.
    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    /// `ip` is one of the router's interface addresses.
    pub fn owns(&self, ip: Ipv4Addr) -> bool {
        self.plan.is_own(u32::from(ip))
    }

    /// The capsule UDP port.
    pub fn capsule_port(&self) -> u16 {
        self.capsule_port
    }

    /// The limits in force.
    pub fn limits(&self) -> &RouterLimits {
        &self.limits
    }

    /// Where a packet to `dst` would go: egress interface id and next-hop address.
    pub fn route(&self, dst: Ipv4Addr) -> Option<(usize, Ipv4Addr)> {
        let d = u32::from(dst);
        self.routes
            .lookup(d)
            .map(|nh| (nh.iface, Ipv4Addr::from(nh.neighbour(d))))
    }

    /// Every route of the table, connected subnets included, as `(network, prefix length,
    /// egress interface id, gateway)` (`None`: the destination is on the link) — what a fast
    /// path outside this crate must route by to agree with [`handle_frame`](Self::handle_frame).
    pub fn route_entries(&self) -> Vec<(Ipv4Addr, u8, usize, Option<Ipv4Addr>)> {
        self.routes
            .entries()
            .map(|(n, len, nh)| (Ipv4Addr::from(n), len, nh.iface, nh.via.map(Ipv4Addr::from)))
            .collect()
    }

    /// Prefixes covering exactly the addresses the router does not treat as someone else's
    /// unicast address (martian, multicast, broadcast, directed broadcast, our own): a
    /// packet from or to one of them must take the full path of
    /// [`handle_frame`](Self::handle_frame), never a fast path's shortcut.
    pub fn non_unicast_prefixes(&self) -> Vec<(Ipv4Addr, u8)> {
        self.plan
            .non_unicast_prefixes()
            .into_iter()
            .map(|(a, len)| (Ipv4Addr::from(a), len))
            .collect()
    }

    /// The ARP table at `now`: resolved neighbours most recently used first, then the
    /// resolutions in progress, most recently started first.
    pub fn neighbours(&self, now: Duration) -> impl Iterator<Item = NeighbourEntry> + '_ {
        self.arp.iter().map(move |(ip, n)| NeighbourEntry {
            ip: Ipv4Addr::from(ip),
            iface: n.iface,
            mac: n.mac,
            state: match n.mac {
                None => NeighbourState::Incomplete,
                Some(_) if now < n.reachable_until => NeighbourState::Reachable,
                Some(_) => NeighbourState::Stale,
            },
            held: n.held,
        })
    }

    /// Frames currently held waiting for ARP.
    pub fn held_frames(&self) -> usize {
        self.arp.held_len()
    }

    /// Entries in the ARP table: `(resolved, resolving)`, bounded by `arp_entries` and
    /// `arp_incomplete_entries`.
    pub fn neighbour_counts(&self) -> (usize, usize) {
        (self.arp.resolved_len(), self.arp.incomplete_len())
    }

    /// Addresses with a per-source ICMP rate-limit bucket, bounded by `icmp_source_entries`.
    pub fn icmp_sources(&self) -> usize {
        self.icmp_limiter.sources_len()
    }

    /// Generated frames currently queued, and their bytes.
    pub fn queued_transmits(&self) -> (usize, usize) {
        (self.tx.len(), self.tx.bytes())
    }

    #[inline]
    fn discard(&mut self, reason: DropReason) -> Verdict {
        self.counters.drop(reason);
        Verdict::Done
    }

    fn next_id(&mut self) -> u16 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    /// Route and send an IPv4 packet generated here: header written here, payload by
    /// `write(payload_buf, source_address)`. `src` `None` = the egress interface address.
    fn send_ip<S: FrameSink>(
        &mut self,
        now: Duration,
        dst: u32,
        src: Option<u32>,
        p: LocalPacket,
        write: impl FnOnce(&mut [u8], u32),
        sink: Option<&mut S>,
    ) -> bool {
        let Some(nh) = self.routes.lookup(dst) else {
            self.counters.drop(DropReason::LocalNoRoute);
            return false;
        };
        let Some(egress) = self.ifaces.get(nh.iface) else {
            self.counters.drop(DropReason::LocalNoRoute);
            return false;
        };
        if IPV4_LEN + p.payload_len > usize::from(egress.mtu) {
            self.counters.drop(DropReason::LocalTooBig);
            return false;
        }
        let fields = frame::Ipv4Fields {
            src: src.unwrap_or(egress.addr),
            dst,
            proto: p.proto,
            tos: p.tos,
            id: self.next_id(),
            dont_fragment: p.dont_fragment,
            ttl: 64,
            payload_len: p.payload_len,
        };
        let len = ETH_LEN + IPV4_LEN + p.payload_len;
        let build = |buf: &mut [u8]| {
            if let Some(ip) = buf.get_mut(ETH_LEN..) {
                frame::write_ipv4(ip, &fields);
            }
            if let Some(payload) = buf.get_mut(ETH_LEN + IPV4_LEN..) {
                write(payload, fields.src);
            }
        };
        self.emit(now, nh.iface, nh.neighbour(dst), len, build, sink)
    }
}

/// The shape of a packet for [`Router::send_ip`].
#[derive(Debug, Clone, Copy)]
struct LocalPacket {
    proto: u8,
    tos: u8,
    dont_fragment: bool,
    payload_len: usize,
}
