//! What the router did, for metrics: event counters and drops by [`DropReason`].
//!
//! Every frame handed to [`Router::handle_frame`](crate::Router::handle_frame) ends in exactly
//! one of: `forwarded`, `fragmented`, `capsules`, an ARP/ICMP answer or learning event,
//! `arp_held`, or one drop reason. Generated packets that cannot be sent are drops too (`Local*`,
//! `TxQueueFull`, `Arp*`).

/// Why a frame (received, held or generated) was not sent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DropReason {
    /// The driver passed an interface id that is not configured.
    BadInterface,
    /// Shorter than its Ethernet, ARP or IPv4 header.
    Truncated,
    /// Unicast to another MAC (the interface is promiscuous or the switch flooded it).
    NotForUs,
    /// IPv4 in an Ethernet broadcast/multicast frame: never forwarded (RFC 1812 §5.3.4) and
    /// not delivered (the router has no broadcast or multicast service).
    LinkBroadcast,
    /// Neither IPv4 nor ARP: IPv6, VLAN-tagged, LLDP, … (IPv6 is passed over, not routed).
    NotIpv4,
    /// IP version field is not 4.
    BadVersion,
    /// IHL below 5.
    BadHeaderLength,
    /// Total length below the header length or beyond the frame.
    BadTotalLength,
    /// IPv4 header checksum wrong.
    BadChecksum,
    /// Source is multicast, broadcast, martian (0/8, 127/8, 169.254/16, 240/4) or ours.
    BadSource,
    /// Destination is limited or directed broadcast, or multicast.
    BroadcastDestination,
    /// Destination can never be a host: 0/8, 127/8, 169.254/16, 240/4.
    MartianDestination,
    /// A fragment addressed to us: there is no reassembly.
    FragmentForUs,
    /// ICMP to us, truncated or with a wrong checksum.
    BadIcmp,
    /// ICMP to us other than an echo request (replies, errors, …): nobody consumes it.
    UnhandledIcmp,
    /// UDP to us with a length field below 8 or beyond the IP payload.
    BadUdp,
    /// UDP to us with a wrong (non-zero) checksum.
    BadUdpChecksum,
    /// UDP to us, not to the capsule port: answered with port unreachable (rate-limited).
    PortUnreachable,
    /// Neither UDP nor ICMP to us: answered with protocol unreachable (rate-limited).
    ProtocolUnreachable,
    /// TTL would reach 0: answered with time exceeded (rate-limited).
    TtlExceeded,
    /// No route: answered with network unreachable (rate-limited).
    NoRoute,
    /// Larger than the egress MTU with DF set: answered with fragmentation needed.
    FragmentationNeeded,
    /// Larger than the egress MTU without DF and cannot be fragmented: a super-frame (GSO)
    /// whose segments exceed the MTU, or a frame padded beyond the MTU.
    TooBig,
    /// Malformed ARP: not Ethernet/IPv4, unknown operation, non-unicast sender.
    BadArp,
    /// ARP claiming one of our addresses or MACs as the sender: never learned.
    ArpSpoof,
    /// ARP from a sender outside the subnet of the interface it arrived on.
    ArpOffSubnet,
    /// ARP neither asking for our address nor about a neighbour we know.
    ArpIgnored,
    /// The per-neighbour or total queue of frames waiting for ARP is full.
    ArpPendingFull,
    /// The next hop is unknown and the table of resolutions in progress
    /// (`arp_incomplete_entries`) is full: no resolution started, nothing held. Resolved
    /// neighbours are never evicted to make room.
    ArpIncompleteFull,
    /// Waited for ARP, no answer after all retries (host unreachable sent if forwarded).
    ArpFailed,
    /// Waited for ARP, but the entry was evicted from the full table. Only resolved entries
    /// are evicted and they hold no frames once their resolution completed, so this stays 0;
    /// kept so the metric names stay stable.
    ArpEvicted,
    /// A generated frame did not fit the transmit queue.
    TxQueueFull,
    /// A generated packet (ICMP, echo reply, `send_udp`) has no route.
    LocalNoRoute,
    /// A generated packet is larger than the egress MTU.
    LocalTooBig,
    /// `send_udp` to a broadcast, multicast, martian or own address.
    LocalBadDestination,
    /// A super-frame (GSO) whose offload state does not fit the packet: segment size 0, or
    /// neither TCP nor UDP.
    GsoInvalid,
    /// A super-frame (GSO) toward a next hop still being resolved: not held (held frames are
    /// bounded in number, and one super-frame weighs as much as 40 ordinary ones). The
    /// flow's first, ordinary packets start the resolution.
    GsoUnresolved,
}

impl DropReason {
    /// Every reason, in declaration order.
    pub const ALL: [DropReason; 37] = [
        DropReason::BadInterface,
        DropReason::Truncated,
        DropReason::NotForUs,
        DropReason::LinkBroadcast,
        DropReason::NotIpv4,
        DropReason::BadVersion,
        DropReason::BadHeaderLength,
        DropReason::BadTotalLength,
        DropReason::BadChecksum,
        DropReason::BadSource,
        DropReason::BroadcastDestination,
        DropReason::MartianDestination,
        DropReason::FragmentForUs,
        DropReason::BadIcmp,
        DropReason::UnhandledIcmp,
        DropReason::BadUdp,
        DropReason::BadUdpChecksum,
        DropReason::PortUnreachable,
        DropReason::ProtocolUnreachable,
        DropReason::TtlExceeded,
        DropReason::NoRoute,
        DropReason::FragmentationNeeded,
        DropReason::TooBig,
        DropReason::BadArp,
        DropReason::ArpSpoof,
        DropReason::ArpOffSubnet,
        DropReason::ArpIgnored,
        DropReason::ArpPendingFull,
        DropReason::ArpIncompleteFull,
        DropReason::ArpFailed,
        DropReason::ArpEvicted,
        DropReason::TxQueueFull,
        DropReason::LocalNoRoute,
        DropReason::LocalTooBig,
        DropReason::LocalBadDestination,
        DropReason::GsoInvalid,
        DropReason::GsoUnresolved,
    ];

    /// Number of reasons.
    pub const COUNT: usize = Self::ALL.len();

    /// Every reason, in declaration order.
    pub fn iter() -> impl Iterator<Item = DropReason> {
        Self::ALL.into_iter()
    }

    /// A stable snake_case name for metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::BadInterface => "bad_interface",
            DropReason::Truncated => "truncated",
            DropReason::NotForUs => "not_for_us",
            DropReason::LinkBroadcast => "link_broadcast",
            DropReason::NotIpv4 => "not_ipv4",
            DropReason::BadVersion => "bad_version",
            DropReason::BadHeaderLength => "bad_header_length",
            DropReason::BadTotalLength => "bad_total_length",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::BadSource => "bad_source",
            DropReason::BroadcastDestination => "broadcast_destination",
            DropReason::MartianDestination => "martian_destination",
            DropReason::FragmentForUs => "fragment_for_us",
            DropReason::BadIcmp => "bad_icmp",
            DropReason::UnhandledIcmp => "unhandled_icmp",
            DropReason::BadUdp => "bad_udp",
            DropReason::BadUdpChecksum => "bad_udp_checksum",
            DropReason::PortUnreachable => "port_unreachable",
            DropReason::ProtocolUnreachable => "protocol_unreachable",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::NoRoute => "no_route",
            DropReason::FragmentationNeeded => "fragmentation_needed",
            DropReason::TooBig => "too_big",
            DropReason::BadArp => "bad_arp",
            DropReason::ArpSpoof => "arp_spoof",
            DropReason::ArpOffSubnet => "arp_off_subnet",
            DropReason::ArpIgnored => "arp_ignored",
            DropReason::ArpPendingFull => "arp_pending_full",
            DropReason::ArpIncompleteFull => "arp_incomplete_full",
            DropReason::ArpFailed => "arp_failed",
            DropReason::ArpEvicted => "arp_evicted",
            DropReason::TxQueueFull => "tx_queue_full",
            DropReason::LocalNoRoute => "local_no_route",
            DropReason::LocalTooBig => "local_too_big",
            DropReason::LocalBadDestination => "local_bad_destination",
            DropReason::GsoInvalid => "gso_invalid",
            DropReason::GsoUnresolved => "gso_unresolved",
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Monotonic counters since [`Router::new`](crate::Router::new).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterCounters {
    /// Frames returned as [`Verdict::Forward`](crate::Verdict::Forward).
    pub forwarded: u64,
    /// … of which super-frames (GSO), forwarded whole.
    pub forwarded_gso: u64,
    /// Packets too big for the egress MTU without DF, sent on as fragments (RFC 791).
    pub fragmented: u64,
    /// Fragments generated from them.
    pub fragments_sent: u64,
    /// Checksums left to offload that the router completed in software (a frame held for
    /// ARP or fragmented leaves without its offload state).
    pub checksums_completed: u64,
    /// Frames returned as [`Verdict::Capsule`](crate::Verdict::Capsule).
    pub capsules: u64,
    /// ARP requests queued (new resolutions, retries, stale re-resolution probes).
    pub arp_requests_sent: u64,
    /// ARP replies queued for requests asking for our address.
    pub arp_replies_sent: u64,
    /// Neighbours learned: a new entry, or a pending resolution answered.
    pub arp_learned: u64,
    /// Known neighbours refreshed or changed by ARP.
    pub arp_updated: u64,
    /// Resolved entries evicted from the full ARP table (least recently used first) to make
    /// room for another resolved one.
    pub arp_evicted: u64,
    /// Resolutions that got no answer after all retries (stale entries are then removed).
    pub arp_failed: u64,
    /// Frames held while their next hop was resolved.
    pub arp_held: u64,
    /// Held frames released to the transmit queue after ARP answered.
    pub arp_released: u64,
    /// ICMP error messages generated (time exceeded, unreachable, fragmentation needed).
    pub icmp_sent: u64,
    /// ICMP errors not generated because a rate limit said no: the sum of the four
    /// `icmp_rate_limited_*` counters below.
    pub icmp_rate_limited: u64,
    /// … because the per-source bucket of the address the error would go to was empty.
    pub icmp_rate_limited_source: u64,
    /// … because the time-exceeded bucket was empty (the source's was not).
    pub icmp_rate_limited_time_exceeded: u64,
    /// … because the destination-unreachable (net/host/protocol/port) bucket was empty.
    pub icmp_rate_limited_unreachable: u64,
    /// … because the fragmentation-needed bucket was empty.
    pub icmp_rate_limited_frag_needed: u64,
    /// Per-source ICMP buckets evicted from the full table (least recently used first).
    pub icmp_sources_evicted: u64,
    /// ICMP errors not generated by rule: about an ICMP error, a non-initial fragment, or to
    /// a non-unicast address.
    pub icmp_suppressed: u64,
    /// Echo replies generated.
    pub echo_replies: u64,
    /// Datagrams accepted by [`Router::send_udp`](crate::Router::send_udp).
    pub udp_sent: u64,
    drops: [u64; DropReason::COUNT],
}

impl Default for RouterCounters {
    fn default() -> Self {
        RouterCounters {
            forwarded: 0,
            forwarded_gso: 0,
            fragmented: 0,
            fragments_sent: 0,
            checksums_completed: 0,
            capsules: 0,
            arp_requests_sent: 0,
            arp_replies_sent: 0,
            arp_learned: 0,
            arp_updated: 0,
            arp_evicted: 0,
            arp_failed: 0,
            arp_held: 0,
            arp_released: 0,
            icmp_sent: 0,
            icmp_rate_limited: 0,
            icmp_rate_limited_source: 0,
            icmp_rate_limited_time_exceeded: 0,
            icmp_rate_limited_unreachable: 0,
            icmp_rate_limited_frag_needed: 0,
            icmp_sources_evicted: 0,
            icmp_suppressed: 0,
            echo_replies: 0,
            udp_sent: 0,
            drops: [0; DropReason::COUNT],
        }
    }
}

impl RouterCounters {
    /// Frames dropped for `reason`.
    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// `(reason, count)` for every reason, zeros included, in declaration order.
    pub fn drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::iter().map(|r| (r, self.drops[r as usize]))
    }

    /// Sum of all drops.
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Add `other`'s counts to these (the routers of several workers, as one).
    pub fn add(&mut self, other: &RouterCounters) {
        // Destructured without `..`: a new counter does not compile until it is added here.
        let RouterCounters {
            forwarded,
            forwarded_gso,
            fragmented,
            fragments_sent,
            checksums_completed,
            capsules,
            arp_requests_sent,
            arp_replies_sent,
            arp_learned,
            arp_updated,
            arp_evicted,
            arp_failed,
            arp_held,
            arp_released,
            icmp_sent,
            icmp_rate_limited,
            icmp_rate_limited_source,
            icmp_rate_limited_time_exceeded,
            icmp_rate_limited_unreachable,
            icmp_rate_limited_frag_needed,
            icmp_sources_evicted,
            icmp_suppressed,
            echo_replies,
            udp_sent,
            drops,
        } = other;
        self.forwarded += forwarded;
        self.forwarded_gso += forwarded_gso;
        self.fragmented += fragmented;
        self.fragments_sent += fragments_sent;
        self.checksums_completed += checksums_completed;
        self.capsules += capsules;
        self.arp_requests_sent += arp_requests_sent;
        self.arp_replies_sent += arp_replies_sent;
        self.arp_learned += arp_learned;
        self.arp_updated += arp_updated;
        self.arp_evicted += arp_evicted;
        self.arp_failed += arp_failed;
        self.arp_held += arp_held;
        self.arp_released += arp_released;
        self.icmp_sent += icmp_sent;
        self.icmp_rate_limited += icmp_rate_limited;
        self.icmp_rate_limited_source += icmp_rate_limited_source;
        self.icmp_rate_limited_time_exceeded += icmp_rate_limited_time_exceeded;
        self.icmp_rate_limited_unreachable += icmp_rate_limited_unreachable;
        self.icmp_rate_limited_frag_needed += icmp_rate_limited_frag_needed;
        self.icmp_sources_evicted += icmp_sources_evicted;
        self.icmp_suppressed += icmp_suppressed;
        self.echo_replies += echo_replies;
        self.udp_sent += udp_sent;
        for (mine, n) in self.drops.iter_mut().zip(drops) {
            *mine += n;
        }
    }

    #[inline]
    pub(crate) fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_complete_ordered_and_named_uniquely() {
        // The last variant's discriminant pins ALL to the whole enum.
        assert_eq!(DropReason::GsoUnresolved as usize + 1, DropReason::COUNT);
        for (i, r) in DropReason::iter().enumerate() {
            assert_eq!(r as usize, i);
        }
        let mut names: Vec<_> = DropReason::iter().map(DropReason::name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        assert!(names.iter().all(|n| {
            n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        }));
    }

    #[test]
    fn add_sums_every_counter_and_reason() {
        let mut a = RouterCounters {
            forwarded: 2,
            ..RouterCounters::default()
        };
        a.drop(DropReason::NoRoute);
        let mut b = RouterCounters {
            forwarded: 3,
            udp_sent: 1,
            ..RouterCounters::default()
        };
        b.drop(DropReason::NoRoute);
        b.drop(DropReason::ArpSpoof);
        a.add(&b);
        assert_eq!((a.forwarded, a.udp_sent), (5, 1));
        assert_eq!(a.drop_count(DropReason::NoRoute), 2);
        assert_eq!(a.dropped_total(), 3);
    }

    #[test]
    fn drops_are_counted_per_reason() {
        let mut c = RouterCounters::default();
        c.drop(DropReason::NoRoute);
        c.drop(DropReason::NoRoute);
        c.drop(DropReason::LocalBadDestination);
        assert_eq!(c.drop_count(DropReason::NoRoute), 2);
        assert_eq!(c.dropped_total(), 3);
        assert_eq!(c.drops().filter(|&(_, n)| n > 0).count(), 2);
        assert_eq!(c.drops().count(), DropReason::COUNT);
    }
}
