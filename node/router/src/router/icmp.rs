//! ICMP the router originates: errors about packets it could not deliver or forward
//! (RFC 792, RFC 1812 §4.3), and echo replies.
//!
//! Errors are never sent about an ICMP error, a non-initial fragment, or a packet from a
//! non-unicast source (RFC 1812 §4.3.2.7; link-layer broadcasts and broadcast destinations
//! are dropped before they get here). The rest are rate-limited per class and per source
//! address (`crate::ratelimit::IcmpLimiter`: `icmp_per_sec`/`icmp_burst` for each of time
//! exceeded, destination unreachable and fragmentation needed; `icmp_source_per_sec`/
//! `icmp_source_burst` for each address errors go to), each refusal counted by the bucket
//! that refused. They quote the offending IP header plus the first 8 bytes of its payload.
//! Echo replies are not rate-limited; the transmit queue bounds them.

use std::time::Duration;

use super::{LocalPacket, Router, Verdict};
use crate::addr::AddrKind;
use crate::checksum;
use crate::counters::DropReason;
use crate::frame::{
    self, ICMP_DEST_UNREACHABLE, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_LEN, ICMP_TIME_EXCEEDED,
    IP_OFFSET, IPV4_LEN, PROTO_ICMP, be16, be32,
};
use crate::ratelimit::{IcmpClass, Limited};
use crate::tx::TxQueue;

use super::ipv4::Ipv4Meta;

/// DSCP CS6 ("internetwork control"), as Linux marks the ICMP errors it sends.
const TOS_INTERNETWORK_CONTROL: u8 = 0xc0;

/// The ICMP errors the router sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IcmpError {
    /// Type 11 code 0: TTL exceeded in transit.
    TimeExceeded,
    /// Type 3 code 0: no route.
    NetUnreachable,
    /// Type 3 code 1: the next hop did not answer ARP.
    HostUnreachable,
    /// Type 3 code 2: a protocol we do not speak, sent to us.
    ProtocolUnreachable,
    /// Type 3 code 3: UDP to us, not the capsule port.
    PortUnreachable,
    /// Type 3 code 4: too big for the next hop with DF set; carries its MTU (RFC 1191).
    FragNeeded { mtu: u16 },
}

impl IcmpError {
    /// Its rate-limit bucket.
    fn class(self) -> IcmpClass {
        match self {
            IcmpError::TimeExceeded => IcmpClass::TimeExceeded,
            IcmpError::NetUnreachable
            | IcmpError::HostUnreachable
            | IcmpError::ProtocolUnreachable
            | IcmpError::PortUnreachable => IcmpClass::Unreachable,
            IcmpError::FragNeeded { .. } => IcmpClass::FragNeeded,
        }
    }

    fn type_code_rest(self) -> (u8, u8, [u8; 4]) {
        match self {
            IcmpError::TimeExceeded => (ICMP_TIME_EXCEEDED, 0, [0; 4]),
            IcmpError::NetUnreachable => (ICMP_DEST_UNREACHABLE, 0, [0; 4]),
            IcmpError::HostUnreachable => (ICMP_DEST_UNREACHABLE, 1, [0; 4]),
            IcmpError::ProtocolUnreachable => (ICMP_DEST_UNREACHABLE, 2, [0; 4]),
            IcmpError::PortUnreachable => (ICMP_DEST_UNREACHABLE, 3, [0; 4]),
            IcmpError::FragNeeded { mtu } => {
                let [hi, lo] = mtu.to_be_bytes();
                (ICMP_DEST_UNREACHABLE, 4, [0, 0, hi, lo])
            }
        }
    }
}

impl Router {
    /// Send `err` about `orig` (a validated IPv4 packet, trimmed to its total length) that
    /// arrived on `ingress`, back to its source. The error's source address is `src`, or the
    /// ingress interface's address when `None` (transit errors).
    pub(super) fn icmp_error(
        &mut self,
        now: Duration,
        ingress: usize,
        src: Option<u32>,
        orig: &[u8],
        err: IcmpError,
    ) {
        let Some(&vihl) = orig.first() else {
            return;
        };
        let ihl = usize::from(vihl & 0x0f) * 4;
        let is_icmp_error = orig.get(9) == Some(&PROTO_ICMP)
            && orig.get(ihl).is_none_or(|&ty| frame::icmp_is_error(ty));
        let to = be32(orig, 12);
        if is_icmp_error
            || be16(orig, 6) & IP_OFFSET != 0
            || self.plan.classify(to) != AddrKind::Unicast
        {
            self.counters.icmp_suppressed += 1;
            return;
        }
        let Some(src) = src.or_else(|| self.ifaces.get(ingress).map(|i| i.addr)) else {
            return;
        };
        let decision = self.icmp_limiter.allow(now, err.class(), to);
        if decision.evicted_source {
            self.counters.icmp_sources_evicted += 1;
        }
        if let Some(limited) = decision.limited {
            let c = &mut self.counters;
            c.icmp_rate_limited += 1;
            match limited {
                Limited::Source => c.icmp_rate_limited_source += 1,
                Limited::Class(IcmpClass::TimeExceeded) => c.icmp_rate_limited_time_exceeded += 1,
                Limited::Class(IcmpClass::Unreachable) => c.icmp_rate_limited_unreachable += 1,
                Limited::Class(IcmpClass::FragNeeded) => c.icmp_rate_limited_frag_needed += 1,
            }
            return;
        }
        // Header + 8 bytes, cut further if the way back has a tiny MTU (68 ≤ MTU < 96).
        let room = self
            .routes
            .lookup(to)
            .and_then(|nh| self.ifaces.get(nh.iface))
            .map_or(usize::MAX, |i| {
                usize::from(i.mtu).saturating_sub(IPV4_LEN + ICMP_LEN)
            });
        let quote = &orig[..(ihl + 8).min(orig.len()).min(room)];
        let (ty, code, rest) = err.type_code_rest();
        let p = LocalPacket {
            proto: PROTO_ICMP,
            tos: TOS_INTERNETWORK_CONTROL,
            dont_fragment: false,
            payload_len: ICMP_LEN + quote.len(),
        };
        if self.send_ip(
            now,
            to,
            Some(src),
            p,
            |buf, _| {
                frame::write_icmp(buf, ty, code, rest, quote);
            },
            None::<&mut TxQueue>,
        ) {
            self.counters.icmp_sent += 1;
        }
    }

    /// ICMP addressed to us: answer echo requests (from the address that was pinged, so a
    /// ping to any of our addresses works from any side); count everything else.
    pub(super) fn icmp_in(&mut self, now: Duration, ip: &[u8], m: Ipv4Meta) -> Verdict {
        let msg = ip.get(m.ihl..).unwrap_or_default();
        if msg.len() < ICMP_LEN || !checksum::verify(msg) {
            return self.discard(DropReason::BadIcmp);
        }
        if msg[0] != ICMP_ECHO_REQUEST {
            return self.discard(DropReason::UnhandledIcmp);
        }
        let rest = [msg[4], msg[5], msg[6], msg[7]];
        let body = &msg[ICMP_LEN..];
        let p = LocalPacket {
            proto: PROTO_ICMP,
            tos: ip.get(1).copied().unwrap_or(0),
            dont_fragment: false,
            payload_len: msg.len(),
        };
        if self.send_ip(
            now,
            m.src,
            Some(m.dst),
            p,
            |buf, _| {
                frame::write_icmp(buf, ICMP_ECHO_REPLY, 0, rest, body);
            },
            None::<&mut TxQueue>,
        ) {
            self.counters.echo_replies += 1;
        }
        Verdict::Done
    }
}
