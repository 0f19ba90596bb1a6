//! Sans-IO IPv4 router core of an ANTS node in router mode (design §8; `docs/router.md`).
//!
//! The AF_PACKET driver in `ants-node` owns the interfaces; this crate decides what happens to
//! every Ethernet frame. It has no sockets, threads, clock or `unsafe`: frames go in through
//! [`Router::handle_frame`], the current time is an argument, generated frames come out of
//! [`Router::drain_transmits`], and [`Router::poll_timeout`] / [`Router::handle_timeout`]
//! drive the ARP retry timers.
//!
//! ```
//! use std::net::Ipv4Addr;
//! use std::time::Duration;
//! use ants_router::{Interface, Router, RouterConfig, Verdict};
//!
//! let mut router = Router::new(RouterConfig {
//!     interfaces: vec![Interface {
//!         name: "veth0".into(),
//!         mac: [0x02, 0, 0, 0, 0, 1],
//!         addr: Ipv4Addr::new(198, 18, 0, 1),
//!         prefix_len: 24,
//!         mtu: 1500,
//!     }],
//!     ..RouterConfig::default()
//! })?;
//! let mut frame = vec![0u8; 60]; // whatever the ring delivered
//! match router.handle_frame(Duration::ZERO, 0, &mut frame) {
//!     Verdict::Forward { iface } => { /* send `frame` on `iface` */ }
//!     Verdict::Capsule { from, to, payload, .. } => { /* node core gets `&frame[payload]` */ }
//!     Verdict::Done => {}
//! }
//! router.drain_transmits(|iface, frame| { /* send `frame` on `iface` */ });
//! assert_eq!(router.counters().dropped_total(), 1); // all-zero bytes: not IPv4
//! # Ok::<(), ants_router::ConfigError>(())
//! ```
//!
//! # Module map
//!
//! | module | what |
//! |---|---|
//! | `router` | [`Router`], [`Verdict`]: Ethernet demux, `send_udp`, timers, accessors |
//! | `router::ipv4` | IPv4 validation, local delivery, forwarding with in-place rewrite |
//! | `router::fragment` | fragmentation of non-DF packets larger than the egress MTU |
//! | `router::icmp` | ICMP errors (rate-limited, RFC 1812 rules) and echo replies |
//! | `router::neigh` | ARP in/out, resolving and holding frames, retry timers |
//! | [`config`] | [`RouterConfig`], [`Interface`], [`Route`], [`RouterLimits`], [`ConfigError`] |
//! | [`counters`] | [`RouterCounters`], [`DropReason`] |
//! | `neighbour` | the ARP tables (resolved: LRU; resolving: bounded, refuses when full), timer index, held frames with recycled buffers |
//! | `lpm` | longest-prefix match: a sorted vector per prefix length |
//! | `checksum` | Internet checksum and its RFC 1624 incremental update |
//! | `frame` | field readers and the pnet-based builders of generated frames |
//! | `addr`, `ratelimit`, `tx` | address classification, ICMP rate limits (per class and per source), output queue |
//!
//! # Supported
//!
//! - Ethernet II; frames to the interface's MAC, and broadcast for ARP.
//! - IPv4 forwarding: header validation (version, IHL, total length, checksum, martian and
//!   own source addresses), longest-prefix match over connected subnets and static routes,
//!   TTL decrement with incremental checksum update, in place, no allocation.
//! - ARP for IPv4: answers for our addresses, learning, a bounded LRU table of resolved
//!   neighbours and a separate bounded table of resolutions in progress (so unanswered
//!   resolutions never evict live neighbours), bounded hold queues, retries, stale entries
//!   re-resolved while still used.
//! - ICMP: echo replies; time exceeded, network/host/protocol/port unreachable and
//!   fragmentation needed (with next-hop MTU), rate-limited per class and per source address.
//! - Capsules: IPv4/UDP to one of our addresses and the capsule port → [`Verdict::Capsule`];
//!   capsule transmits through [`Router::send_udp`].
//! - Offloads ([`Offload`], [`Router::handle_frame_with`]): GSO/GRO super-frames (up to 64 KiB,
//!   what a Linux host's TCP stack sends over a veth) are forwarded whole when their segments
//!   fit the egress MTU, and the driver hands their segmentation back to the kernel;
//!   checksums left to offload are passed on, completed in software only where a frame loses
//!   its offload state (held for ARP, fragmented). UDP GSO capsules to us come out as a
//!   [`Verdict::Capsule`] with a `segment` size.
//! - Fragmentation (RFC 791, RFC 1812 §5.2.6): a packet without DF larger than the egress
//!   MTU leaves as fragments (copied options only after the first, offsets and MF carried on
//!   for packets that were fragments already).
//!
//! # Not supported (by design)
//!
//! - **IPv6** is passed over: counted as [`DropReason::NotIpv4`], never forwarded (nor are
//!   VLAN-tagged frames or other ethertypes).
//! - **No reassembly**: fragments addressed to us are dropped (`FragmentForUs`); fragments
//!   in transit are forwarded as they are.
//! - **IP options are forwarded unchanged**: the router does not act on them (no record
//!   route, no source routing — RFC 7126 recommends not honouring source routes anyway); the
//!   TTL and checksum update works whatever the header length.
//! - **No redirects**: a packet leaving through the interface it came in on is forwarded.
//! - **No broadcast or multicast** service: IPv4 in link-layer broadcast frames
//!   (RFC 1812 §5.3.4) and to broadcast/multicast destinations is dropped, never answered.
//! - No reverse-path filtering, no dynamic routing: the table is fixed at construction.
#![forbid(unsafe_code)]

mod addr;
mod checksum;
pub mod config;
pub mod counters;
mod frame;
mod lpm;
mod neighbour;
mod ratelimit;
mod router;
mod tx;

#[cfg(test)]
mod testutil;

pub use checksum::{complete_l4_checksum, l4_checksum_is_pseudo_header};
pub use config::{
    ConfigError, DEFAULT_CAPSULE_PORT, Interface, MIN_MTU, Route, RouterConfig, RouterLimits,
};
pub use counters::{DropReason, RouterCounters};
pub use router::{NeighbourEntry, NeighbourState, Offload, Router, Verdict};
pub use tx::FrameSink;
