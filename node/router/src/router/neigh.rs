//! ARP: answering for our addresses, learning neighbours, resolving next hops for forwarded
//! and generated frames, holding frames until resolution, and the retry timers.
//!
//! Learning follows Linux with `arp_accept=0`, `arp_ignore=1`: a request for the address of
//! the interface it arrived on is answered and creates (or refreshes) the sender's entry;
//! every other ARP (replies, gratuitous ARP, requests for other hosts) only updates entries
//! that already exist — so an unsolicited reply cannot plant an entry, and a reply to one of
//! our requests completes the entry the request created. Senders claiming one of our
//! addresses or MACs are dropped as spoofing; senders outside the interface's subnet are
//! not learned.

use std::time::Duration;

use pnet_packet::arp::{ArpHardwareTypes, ArpPacket};
use pnet_packet::ethernet::EtherTypes;

use super::Router;
use super::icmp::IcmpError;
use crate::addr::AddrKind;
use crate::counters::DropReason;
use crate::frame::{
    self, ARP_FRAME_LEN, ARP_LEN, ArpFields, BROADCAST_MAC, ETH_LEN, ETHERTYPE_IPV4, be16,
};
use crate::neighbour::{Expired, Learned, Lookup};
use crate::tx::FrameSink;

const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;

impl Router {
    /// An ARP frame received on `iface`; `true` if siblings should see it (see
    /// [`arp_input`](Self::arp_input)).
    pub(super) fn arp_in(&mut self, now: Duration, iface: usize, frame: &[u8]) -> bool {
        self.arp_input(now, iface, frame, false)
    }

    /// An ARP frame a sibling (another worker's router on the same interfaces) received or
    /// sent. What it received is learned from as if it had arrived here, by the same rules,
    /// but never answered and its drops not counted again (the sibling answered and counted).
    /// A broadcast request it sent for a next hop this router does not know starts the same
    /// resolution here (an incomplete entry with its own retry timer, no request now), so
    /// that the reply completes it on whichever worker receives the reply.
    pub(super) fn sibling_arp_in(&mut self, now: Duration, iface: usize, frame: &[u8]) {
        let Some(info) = self.ifaces.get(iface) else {
            return;
        };
        let Some(arp) = frame
            .get(ETH_LEN..ETH_LEN + ARP_LEN)
            .and_then(ArpPacket::new)
        else {
            return;
        };
        let ours = arp.get_sender_hw_addr().octets() == info.mac
            && u32::from(arp.get_sender_proto_addr()) == info.addr;
        if !ours {
            self.arp_input(now, iface, frame, true);
            return;
        }
        let tpa = u32::from(arp.get_target_proto_addr());
        let request =
            arp.get_operation().0 == ARP_REQUEST && frame.get(..6) == Some(&BROADCAST_MAC[..]);
        if request
            && info.contains(tpa)
            && self.plan.classify(tpa) == AddrKind::Unicast
            && !self.arp.knows(tpa)
        {
            // Full table: the sibling's resolution goes on; this worker resolves on demand.
            let _ = self.arp.insert_incomplete(now, tpa, iface);
        }
    }

    /// Drop an ARP frame for `reason`, counted unless a sibling already counted it.
    fn arp_drop(&mut self, sibling: bool, reason: DropReason) {
        if !sibling {
            self.counters.drop(reason);
        }
    }

    /// Answer and learn from one ARP frame (a sibling's copy: learn only, count nothing);
    /// `true` if it passed every check, so that siblings may learn from it too — everything
    /// but frames for other hosts, malformed or spoofed ones, probes and off-subnet senders.
    fn arp_input(&mut self, now: Duration, iface: usize, frame: &[u8], sibling: bool) -> bool {
        let Some(info) = self.ifaces.get(iface) else {
            self.arp_drop(sibling, DropReason::BadInterface);
            return false;
        };
        let (our_mac, our_addr) = (info.mac, info.addr);
        let dst_mac = frame.get(..6).unwrap_or_default();
        if dst_mac != our_mac && dst_mac != BROADCAST_MAC {
            self.arp_drop(sibling, DropReason::NotForUs);
            return false;
        }
        let Some(arp) = frame
            .get(ETH_LEN..ETH_LEN + ARP_LEN)
            .and_then(ArpPacket::new)
        else {
            self.arp_drop(sibling, DropReason::Truncated);
            return false;
        };
        let op = arp.get_operation().0;
        if arp.get_hardware_type() != ArpHardwareTypes::Ethernet
            || arp.get_protocol_type() != EtherTypes::Ipv4
            || arp.get_hw_addr_len() != 6
            || arp.get_proto_addr_len() != 4
            || !(op == ARP_REQUEST || op == ARP_REPLY)
        {
            self.arp_drop(sibling, DropReason::BadArp);
            return false;
        }
        let sha = arp.get_sender_hw_addr().octets();
        let spa = u32::from(arp.get_sender_proto_addr());
        let tpa = u32::from(arp.get_target_proto_addr());
        if self.plan.is_own(spa) || self.ifaces.iter().any(|i| i.mac == sha) {
            self.arp_drop(sibling, DropReason::ArpSpoof);
            return false;
        }
        if sha[0] & 1 != 0 || sha == [0; 6] {
            self.arp_drop(sibling, DropReason::BadArp);
            return false;
        }
        let asks_for_us = op == ARP_REQUEST && tpa == our_addr;
        if spa == 0 {
            // An address probe (RFC 5227): answer if it is for our address, learn nothing.
            if asks_for_us && !sibling {
                self.send_arp_reply(iface, sha, 0);
            } else {
                self.arp_drop(sibling, DropReason::ArpIgnored);
            }
            return false;
        }
        let Some(info) = self.ifaces.get(iface) else {
            return false;
        };
        if !info.contains(spa) {
            self.arp_drop(sibling, DropReason::ArpOffSubnet);
            return false;
        }
        if self.plan.classify(spa) != AddrKind::Unicast
            || (info.broadcast.is_some() && spa == info.network)
        {
            self.arp_drop(sibling, DropReason::BadArp);
            return false;
        }
        let learned = self.arp.learn(now, spa, iface, sha, asks_for_us);
        match learned {
            Learned::Created { evicted } => {
                self.counters.arp_learned += 1;
                self.count_eviction(evicted);
            }
            Learned::Completed { held, evicted } => {
                self.counters.arp_learned += 1;
                self.count_eviction(evicted);
                if held > 0 {
                    self.release_held(spa, sha);
                }
            }
            Learned::Updated => self.counters.arp_updated += 1,
            Learned::Unknown => {}
        }
        if asks_for_us {
            if !sibling {
                self.send_arp_reply(iface, sha, spa);
            }
        } else if learned == Learned::Unknown {
            self.arp_drop(sibling, DropReason::ArpIgnored);
        }
        true
    }

    fn count_eviction(&mut self, evicted: Option<usize>) {
        if let Some(frames) = evicted {
            self.counters.arp_evicted += 1;
            for _ in 0..frames {
                self.counters.drop(DropReason::ArpEvicted);
            }
        }
    }

    fn send_arp_reply(&mut self, iface: usize, to_mac: [u8; 6], to_ip: u32) {
        let Some(info) = self.ifaces.get(iface) else {
            return;
        };
        let f = ArpFields {
            op: ARP_REPLY,
            sha: info.mac,
            spa: info.addr,
            tha: to_mac,
            tpa: to_ip,
        };
        if self
            .tx
            .push_with(iface, ARP_FRAME_LEN, |b| frame::write_arp(b, to_mac, &f))
        {
            self.counters.arp_replies_sent += 1;
        } else {
            self.counters.drop(DropReason::TxQueueFull);
        }
    }

    /// Ask who has `target` on `iface`: broadcast, or unicast to `known_mac` when
    /// re-resolving a stale entry (RFC 1122 §2.3.2.1).
    pub(super) fn send_arp_request(
        &mut self,
        iface: usize,
        target: u32,
        known_mac: Option<[u8; 6]>,
    ) {
        let Some(info) = self.ifaces.get(iface) else {
            return;
        };
        let f = ArpFields {
            op: ARP_REQUEST,
            sha: info.mac,
            spa: info.addr,
            tha: [0; 6],
            tpa: target,
        };
        let dst = known_mac.unwrap_or(BROADCAST_MAC);
        if self
            .tx
            .push_with(iface, ARP_FRAME_LEN, |b| frame::write_arp(b, dst, &f))
        {
            self.counters.arp_requests_sent += 1;
        } else {
            self.counters.drop(DropReason::TxQueueFull);
        }
    }

    /// Queue a generated frame (`build` writes all but the Ethernet header) for `neighbour`
    /// on `egress`, or hold it while ARP resolves. `false` if dropped (counted). With a
    /// `sink`, a frame whose neighbour is resolved is written there instead of the router's
    /// transmit queue (`None::<&mut TxQueue>`: the queue); a held frame is the router's
    /// either way.
    pub(super) fn emit<S: FrameSink>(
        &mut self,
        now: Duration,
        egress: usize,
        neighbour: u32,
        len: usize,
        build: impl FnOnce(&mut [u8]),
        sink: Option<&mut S>,
    ) -> bool {
        let Some(src_mac) = self.ifaces.get(egress).map(|i| i.mac) else {
            return false;
        };
        let mac = match self.arp.lookup(now, neighbour) {
            Lookup::Ready(mac) => mac,
            Lookup::ReadyProbe(mac) => {
                self.send_arp_request(egress, neighbour, Some(mac));
                mac
            }
            l @ (Lookup::Incomplete | Lookup::Missing) => {
                return self.hold(now, l, neighbour, egress, None, len, |buf| {
                    build(buf);
                    frame::write_ethernet(buf, [0; 6], src_mac, ETHERTYPE_IPV4);
                });
            }
        };
        let write = |buf: &mut [u8]| {
            build(buf);
            frame::write_ethernet(buf, mac, src_mac, ETHERTYPE_IPV4);
        };
        if let Some(sink) = sink {
            sink.frame(egress, len, write);
            return true;
        }
        let queued = self.tx.push_with(egress, len, write);
        if !queued {
            self.counters.drop(DropReason::TxQueueFull);
        }
        queued
    }

    /// Hold a frame (its destination MAC filled on release) for `neighbour`, starting the
    /// resolution if `lookup` says it is unknown. `false` if a bound was hit (counted): the
    /// held frames', or the table of resolutions in progress (then no request is sent either,
    /// and no ICMP: a flood toward silent addresses gets nothing back).
    #[expect(
        clippy::too_many_arguments,
        reason = "internal; the arguments are the frame's routing facts"
    )]
    pub(super) fn hold(
        &mut self,
        now: Duration,
        lookup: Lookup,
        neighbour: u32,
        egress: usize,
        ingress: Option<usize>,
        len: usize,
        build: impl FnOnce(&mut [u8]),
    ) -> bool {
        if !self.start_resolution(now, lookup, neighbour, egress) {
            self.counters.drop(DropReason::ArpIncompleteFull);
            return false;
        }
        if self.arp.hold(neighbour, egress, ingress, len, build) {
            self.counters.arp_held += 1;
            true
        } else {
            self.counters.drop(DropReason::ArpPendingFull);
            false
        }
    }

    /// For an unknown next hop (`Lookup::Missing`), start resolving it: an incomplete entry
    /// and a broadcast request. `false` when the table of resolutions in progress is full
    /// (nothing sent; the caller counts the drop); `true` otherwise, also when a resolution
    /// is already running.
    pub(super) fn start_resolution(
        &mut self,
        now: Duration,
        lookup: Lookup,
        neighbour: u32,
        egress: usize,
    ) -> bool {
        if lookup == Lookup::Missing {
            if !self.arp.insert_incomplete(now, neighbour, egress) {
                return false;
            }
            self.send_arp_request(egress, neighbour, None);
        }
        true
    }

    /// `ip` resolved to `mac`: queue its held frames, in arrival order.
    fn release_held(&mut self, ip: u32, mac: [u8; 6]) {
        let mut out = std::mem::take(&mut self.scratch);
        self.arp.take_held(ip, &mut out);
        for h in out.drain(..) {
            let queued = self.tx.push_with(h.egress, h.frame.len(), |b| {
                b.copy_from_slice(&h.frame);
                b[..6].copy_from_slice(&mac);
            });
            if queued {
                self.counters.arp_released += 1;
            } else {
                self.counters.drop(DropReason::TxQueueFull);
            }
            self.arp.recycle(h.frame);
        }
        self.scratch = out;
    }

    pub(super) fn arp_timeout(&mut self, now: Duration) {
        while let Some(e) = self.arp.expire_one(now) {
            match e {
                Expired::Retry { ip, iface, dst_mac } => self.send_arp_request(iface, ip, dst_mac),
                Expired::Failed { ip, held } => {
                    self.counters.arp_failed += 1;
                    if held > 0 {
                        self.fail_held(now, ip);
                    }
                }
            }
        }
    }

    /// Resolution of `ip` failed: drop its held frames, answering forwarded ones with host
    /// unreachable (rate-limited) from the interface they arrived on.
    fn fail_held(&mut self, now: Duration, ip: u32) {
        let mut out = std::mem::take(&mut self.scratch);
        self.arp.take_held(ip, &mut out);
        for h in out.drain(..) {
            self.counters.drop(DropReason::ArpFailed);
            if let Some(ingress) = h.ingress {
                let packet = h.frame.get(ETH_LEN..).unwrap_or_default();
                let total = usize::from(be16(packet, 2)).min(packet.len());
                self.icmp_error(
                    now,
                    ingress,
                    None,
                    &packet[..total],
                    IcmpError::HostUnreachable,
                );
            }
            self.arp.recycle(h.frame);
        }
        self.scratch = out;
    }
}
