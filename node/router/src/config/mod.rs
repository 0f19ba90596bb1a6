//! Router configuration: the owned interfaces, static routes and resource limits, and their
//! validation.
//!
//! - [`RouterConfig`], [`Interface`], [`Route`], [`RouterLimits`]: what the daemon hands to
//!   [`Router::new`](crate::Router::new);
//! - [`ConfigError`]: why a configuration was refused, phrased for the operator;
//! - `Prepared` (crate-private): the validated form the router runs on — per-interface
//!   address facts and the longest-prefix-match table.
//!
//! Interface ids are indices into [`RouterConfig::interfaces`] everywhere in this crate.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::addr::{self, IfaceInfo};
use crate::lpm::{NextHop, RouteTable};

/// The UDP port capsules are addressed to (design §4).
pub const DEFAULT_CAPSULE_PORT: u16 = 3322;

/// Smallest MTU an IPv4 link may have (RFC 791).
pub const MIN_MTU: u16 = 68;

/// Everything [`Router::new`](crate::Router::new) needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterConfig {
    /// The interfaces the router owns; an interface's id is its index here.
    pub interfaces: Vec<Interface>,
    /// Static routes. Each interface's own subnet is an implicit on-link route.
    pub routes: Vec<Route>,
    /// IPv4/UDP datagrams to one of our addresses and this port are capsules (3322).
    pub capsule_port: u16,
    /// Bounds on every table and queue the network can fill.
    pub limits: RouterLimits,
}

impl Default for RouterConfig {
    /// No interfaces (which [`Router::new`](crate::Router::new) refuses: fill them in), no
    /// routes, port 3322, default limits.
    fn default() -> Self {
        RouterConfig {
            interfaces: Vec::new(),
            routes: Vec::new(),
            capsule_port: DEFAULT_CAPSULE_PORT,
            limits: RouterLimits::default(),
        }
    }
}

/// One Ethernet interface owned by the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// The device name (for messages and the driver; not interpreted here).
    pub name: String,
    /// The interface's MAC: source of everything sent on it; unicast frames to other MACs
    /// are not for us.
    pub mac: [u8; 6],
    /// The router's address on this link.
    pub addr: Ipv4Addr,
    /// The link's prefix length (1..=32); `addr/prefix_len` is an implicit on-link route.
    pub prefix_len: u8,
    /// Largest IPv4 packet (header included, Ethernet header excluded) sent on this link.
    pub mtu: u16,
}

impl Interface {
    /// The subnet `network/prefix_len` this interface is attached to.
    pub fn subnet(&self) -> (Ipv4Addr, u8) {
        let len = self.prefix_len.min(32);
        (Ipv4Addr::from(u32::from(self.addr) & addr::mask(len)), len)
    }
}

/// A static route: packets for `dst/prefix_len` go to the gateway `via`, or, when `via` is
/// `None`, straight to their destination on the link whose subnet holds the whole prefix.
///
/// The egress interface is derived: the one whose subnet contains `via` (or, for an on-link
/// route, contains `dst/prefix_len`). Subnets of interfaces never overlap, so it is unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The destination network (host bits must be zero).
    pub dst: Ipv4Addr,
    /// Its prefix length (0..=32; 0 is the default route).
    pub prefix_len: u8,
    /// The gateway, or `None` for an on-link route.
    pub via: Option<Ipv4Addr>,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.dst, self.prefix_len)?;
        match self.via {
            Some(via) => write!(f, " via {via}"),
            None => write!(f, " on-link"),
        }
    }
}

/// Bounds on everything the network can make the router store or send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterLimits {
    /// Resolved neighbours in the ARP table (MAC known, reachable or stale); least recently
    /// used evicted to make room for another resolved one, never for a resolution.
    pub arp_entries: usize,
    /// Resolutions in progress (incomplete entries), kept apart from the resolved ones so
    /// that packets toward unanswering on-link addresses cannot evict live neighbours. When
    /// full, a new resolution is refused and its packet dropped
    /// ([`DropReason::ArpIncompleteFull`](crate::DropReason::ArpIncompleteFull)); an entry
    /// leaves when answered (moving to the resolved table) or after its last retry.
    pub arp_incomplete_entries: usize,
    /// Frames held for one unresolved next hop.
    pub arp_pending_per_neighbour: usize,
    /// Frames held for all unresolved next hops together.
    pub arp_pending_total: usize,
    /// How long an ARP answer is trusted; after that the entry is stale: still used, but
    /// re-resolved (unicast probe to the known MAC) the next time it is needed.
    pub arp_reachable: Duration,
    /// Interval between ARP requests for the same address.
    pub arp_retry: Duration,
    /// ARP requests sent per resolution, the first included; when the last one goes
    /// unanswered for `arp_retry` the resolution fails.
    pub arp_retries: u32,
    /// ICMP errors per second of each class: time exceeded, destination unreachable (net,
    /// host, protocol, port) and fragmentation needed each have a token bucket of their own,
    /// so a flood of one kind cannot starve another (path-MTU discovery above all). Echo
    /// replies are not counted here.
    pub icmp_per_sec: u32,
    /// ICMP errors of one class that may be sent back to back (each class bucket's depth;
    /// 0 = never send any).
    pub icmp_burst: u32,
    /// ICMP errors per second to one address (the source of the packets that caused them),
    /// all classes together, so one source cannot spend the share of the others.
    pub icmp_source_per_sec: u32,
    /// ICMP errors that may be sent back to back to one address (0 = never send any).
    pub icmp_source_burst: u32,
    /// Addresses with a per-source ICMP bucket; least recently used evicted (counted
    /// `icmp_sources_evicted`; an evicted address starts again with a full bucket).
    pub icmp_source_entries: usize,
    /// Generated frames (ARP, ICMP, released held frames, `send_udp`) queued until
    /// [`Router::drain_transmits`](crate::Router::drain_transmits).
    pub max_tx_frames: usize,
    /// Bytes of queued generated frames; must hold at least one frame of the largest MTU.
    pub max_tx_bytes: usize,
}

impl Default for RouterLimits {
    /// Close to Linux's neighbour and ICMP defaults: 30 s reachable, 1 s between 3 requests,
    /// 1024 resolved and 256 resolving neighbours; 1000 ICMP errors/s with a burst of 50 per
    /// class, and 10/s with a burst of 10 per source address, for 1024 addresses.
    fn default() -> Self {
        RouterLimits {
            arp_entries: 1024,
            arp_incomplete_entries: 256,
            arp_pending_per_neighbour: 8,
            arp_pending_total: 512,
            arp_reachable: Duration::from_secs(30),
            arp_retry: Duration::from_secs(1),
            arp_retries: 3,
            icmp_per_sec: 1000,
            icmp_burst: 50,
            icmp_source_per_sec: 10,
            icmp_source_burst: 10,
            icmp_source_entries: 1024,
            max_tx_frames: 4096,
            max_tx_bytes: 4 << 20,
        }
    }
}

/// Why [`Router::new`](crate::Router::new) refused a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No interface to route between.
    #[error("router: no interfaces configured")]
    NoInterfaces,
    /// An interface without a name.
    #[error("interface #{index}: the name is empty")]
    EmptyName {
        /// Its index in `interfaces`.
        index: usize,
    },
    /// Two interfaces with one name.
    #[error("interface `{name}` is listed twice")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },
    /// Prefix length outside 1..=32.
    #[error("interface `{name}`: prefix length /{prefix_len} is out of range (1..=32)")]
    InterfacePrefixLen {
        /// The interface.
        name: String,
        /// The bad prefix length.
        prefix_len: u8,
    },
    /// The interface address cannot be a unicast host address.
    #[error("interface `{name}`: address {addr} cannot be used ({why})")]
    InterfaceAddress {
        /// The interface.
        name: String,
        /// The address.
        addr: Ipv4Addr,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Multicast, broadcast or all-zero MAC.
    #[error("interface `{name}`: MAC {mac} must be unicast and non-zero")]
    InterfaceMac {
        /// The interface.
        name: String,
        /// The MAC, `aa:bb:cc:dd:ee:ff`.
        mac: String,
    },
    /// MTU below the IPv4 minimum.
    #[error("interface `{name}`: MTU {mtu} is below the IPv4 minimum of 68")]
    InterfaceMtu {
        /// The interface.
        name: String,
        /// The bad MTU.
        mtu: u16,
    },
    /// Two interfaces whose subnets overlap: next hops would have no unique interface.
    #[error(
        "interfaces `{a}` ({a_subnet}) and `{b}` ({b_subnet}) have overlapping subnets; \
         every next hop must belong to exactly one interface"
    )]
    OverlappingSubnets {
        /// First interface.
        a: String,
        /// Its subnet, `net/len`.
        a_subnet: String,
        /// Second interface.
        b: String,
        /// Its subnet.
        b_subnet: String,
    },
    /// Prefix length above 32.
    #[error("route {route}: prefix length out of range (0..=32)")]
    RoutePrefixLen {
        /// The route.
        route: Route,
    },
    /// The destination has bits set beyond the prefix.
    #[error("route {route}: host bits are set in the destination (did you mean {network}/{}?)", route.prefix_len)]
    RouteHostBits {
        /// The route.
        route: Route,
        /// The destination with the host bits cleared.
        network: Ipv4Addr,
    },
    /// The gateway lies in no interface's subnet.
    #[error("route {route}: the gateway is in no interface's subnet")]
    RouteViaOffLink {
        /// The route.
        route: Route,
    },
    /// The gateway is not a usable neighbour address.
    #[error("route {route}: the gateway cannot be a next hop ({why})")]
    RouteViaNotNeighbour {
        /// The route.
        route: Route,
        /// What is wrong with it.
        why: &'static str,
    },
    /// An on-link route whose prefix is not inside one interface's subnet.
    #[error(
        "route {route}: an on-link route must lie inside one interface's subnet \
         (the interface is found by subnet); give a gateway with `via` instead"
    )]
    RouteOnLinkOffSubnet {
        /// The route.
        route: Route,
    },
    /// A static route for exactly an interface's subnet, but not on-link through it.
    #[error(
        "route {route}: this is interface `{name}`'s own subnet, which is on-link through \
         `{name}`; a static route may not replace it"
    )]
    RouteShadowsSubnet {
        /// The route.
        route: Route,
        /// The interface whose subnet it is.
        name: String,
    },
    /// Two routes for one prefix with different next hops.
    #[error("routes {first} and {second} are for the same prefix with different next hops")]
    ConflictingRoutes {
        /// The first one listed.
        first: Route,
        /// The later one.
        second: Route,
    },
    /// Port 0 cannot be addressed.
    #[error("capsule_port 0 is not a usable UDP port")]
    CapsulePort,
    /// A limit outside its sane range.
    #[error("limit `{name}` = {value}: {why}")]
    Limit {
        /// The [`RouterLimits`] field.
        name: &'static str,
        /// Its value as configured.
        value: String,
        /// The accepted range or rule.
        why: String,
    },
}

/// The validated configuration the router runs on.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) ifaces: Vec<IfaceInfo>,
    pub(crate) routes: RouteTable,
}

fn mac_string(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

fn subnet_string(i: &Interface) -> String {
    let (net, len) = i.subnet();
    format!("{net}/{len}")
}

/// Large enough for any real deployment, small enough that a typo cannot make the router
/// pre-allocate gigabytes.
const MAX_ENTRIES: usize = 1 << 20;
const MAX_PENDING: usize = 1 << 16;
const MAX_TX_BYTES: usize = 1 << 30;

fn limit_range(
    name: &'static str,
    value: usize,
    min: usize,
    max: usize,
) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::Limit {
            name,
            value: value.to_string(),
            why: format!("must be in {min}..={max}"),
        })
    }
}

fn check_limits(l: &RouterLimits, max_frame: usize) -> Result<(), ConfigError> {
    limit_range("arp_entries", l.arp_entries, 1, MAX_ENTRIES)?;
    limit_range(
        "arp_incomplete_entries",
        l.arp_incomplete_entries,
        1,
        MAX_ENTRIES,
    )?;
    limit_range("icmp_source_entries", l.icmp_source_entries, 1, MAX_ENTRIES)?;
    limit_range(
        "arp_pending_per_neighbour",
        l.arp_pending_per_neighbour,
        0,
        MAX_PENDING,
    )?;
    limit_range("arp_pending_total", l.arp_pending_total, 0, MAX_PENDING)?;
    limit_range("arp_retries", l.arp_retries as usize, 1, 100)?;
    limit_range("max_tx_frames", l.max_tx_frames, 1, MAX_ENTRIES)?;
    limit_range("max_tx_bytes", l.max_tx_bytes, max_frame, MAX_TX_BYTES).map_err(|e| match e {
        ConfigError::Limit { name, value, .. } => ConfigError::Limit {
            name,
            value,
            why: format!(
                "must be in {max_frame}..={MAX_TX_BYTES} (at least one frame of the largest MTU)"
            ),
        },
        other => other,
    })?;
    for (name, d) in [
        ("arp_retry", l.arp_retry),
        ("arp_reachable", l.arp_reachable),
    ] {
        if d < Duration::from_millis(1) || d > Duration::from_secs(86_400) {
            return Err(ConfigError::Limit {
                name,
                value: format!("{d:?}"),
                why: "must be between 1 ms and 1 day".into(),
            });
        }
    }
    Ok(())
}

fn check_interface(index: usize, i: &Interface) -> Result<(), ConfigError> {
    let name = || i.name.clone();
    if i.name.is_empty() {
        return Err(ConfigError::EmptyName { index });
    }
    if !(1..=32).contains(&i.prefix_len) {
        return Err(ConfigError::InterfacePrefixLen {
            name: name(),
            prefix_len: i.prefix_len,
        });
    }
    let a = u32::from(i.addr);
    let why = if let Some(why) = addr::not_unicast_host(a) {
        Some(why)
    } else if i.prefix_len <= 30 && a & !addr::mask(i.prefix_len) == 0 {
        Some("it is the subnet's network address")
    } else if i.prefix_len <= 30 && a | addr::mask(i.prefix_len) == u32::MAX {
        Some("it is the subnet's broadcast address")
    } else {
        None
    };
    if let Some(why) = why {
        return Err(ConfigError::InterfaceAddress {
            name: name(),
            addr: i.addr,
            why,
        });
    }
    if i.mac[0] & 1 != 0 || i.mac == [0; 6] {
        return Err(ConfigError::InterfaceMac {
            name: name(),
            mac: mac_string(i.mac),
        });
    }
    if i.mtu < MIN_MTU {
        return Err(ConfigError::InterfaceMtu {
            name: name(),
            mtu: i.mtu,
        });
    }
    Ok(())
}

/// The egress of a static route, or why it has none.
fn route_next_hop(r: &Route, ifaces: &[IfaceInfo]) -> Result<NextHop, ConfigError> {
    let route = *r;
    match r.via {
        Some(via) => {
            let v = u32::from(via);
            let Some(iface) = ifaces.iter().position(|i| i.contains(v)) else {
                return Err(ConfigError::RouteViaOffLink { route });
            };
            let i = &ifaces[iface];
            let why = if v == i.addr {
                Some("it is the router's own address")
            } else if i.broadcast == Some(v) {
                Some("it is the subnet's broadcast address")
            } else if i.prefix_len <= 30 && v == i.network {
                Some("it is the subnet's network address")
            } else {
                addr::not_unicast_host(v)
            };
            match why {
                Some(why) => Err(ConfigError::RouteViaNotNeighbour { route, why }),
                None => Ok(NextHop {
                    iface,
                    via: Some(v),
                }),
            }
        }
        None => ifaces
            .iter()
            .position(|i| r.prefix_len >= i.prefix_len && i.contains(u32::from(r.dst)))
            .map(|iface| NextHop { iface, via: None })
            .ok_or(ConfigError::RouteOnLinkOffSubnet { route }),
    }
}

/// Validate `cfg` and build the router's tables.
pub(crate) fn prepare(cfg: &RouterConfig) -> Result<Prepared, ConfigError> {
    if cfg.interfaces.is_empty() {
        return Err(ConfigError::NoInterfaces);
    }
    for (index, i) in cfg.interfaces.iter().enumerate() {
        check_interface(index, i)?;
        for j in &cfg.interfaces[..index] {
            if j.name == i.name {
                return Err(ConfigError::DuplicateName {
                    name: i.name.clone(),
                });
            }
            let len = i.prefix_len.min(j.prefix_len);
            let m = addr::mask(len);
            if u32::from(i.addr) & m == u32::from(j.addr) & m {
                return Err(ConfigError::OverlappingSubnets {
                    a: j.name.clone(),
                    a_subnet: subnet_string(j),
                    b: i.name.clone(),
                    b_subnet: subnet_string(i),
                });
            }
        }
    }
    let ifaces: Vec<IfaceInfo> = cfg.interfaces.iter().map(IfaceInfo::new).collect();
    let max_frame =
        crate::frame::ETH_LEN + ifaces.iter().map(|i| usize::from(i.mtu)).max().unwrap_or(0);
    check_limits(&cfg.limits, max_frame)?;
    if cfg.capsule_port == 0 {
        return Err(ConfigError::CapsulePort);
    }

    let mut routes = RouteTable::default();
    for (iface, i) in ifaces.iter().enumerate() {
        // Subnets do not overlap, so connected routes never collide.
        routes.insert(i.network, i.prefix_len, NextHop { iface, via: None });
    }
    let mut listed: Vec<(Route, NextHop)> = Vec::with_capacity(cfg.routes.len());
    for r in &cfg.routes {
        if r.prefix_len > 32 {
            return Err(ConfigError::RoutePrefixLen { route: *r });
        }
        let dst = u32::from(r.dst);
        let network = dst & addr::mask(r.prefix_len);
        if network != dst {
            return Err(ConfigError::RouteHostBits {
                route: *r,
                network: Ipv4Addr::from(network),
            });
        }
        let nh = route_next_hop(r, &ifaces)?;
        // A route equal to a connected subnet (e.g. imported from the kernel's table) is
        // redundant when on-link through that interface; anything else would shadow the
        // subnet's own route, which we refuse rather than guess.
        if let Some(c) = ifaces
            .iter()
            .position(|i| i.network == dst && i.prefix_len == r.prefix_len)
        {
            if nh
                == (NextHop {
                    iface: c,
                    via: None,
                })
            {
                continue;
            }
            return Err(ConfigError::RouteShadowsSubnet {
                route: *r,
                name: cfg.interfaces[c].name.clone(),
            });
        }
        if let Some((first, prev)) = listed
            .iter()
            .find(|(p, _)| p.dst == r.dst && p.prefix_len == r.prefix_len)
        {
            if *prev == nh {
                continue; // the same route twice: harmless
            }
            return Err(ConfigError::ConflictingRoutes {
                first: *first,
                second: *r,
            });
        }
        listed.push((*r, nh));
        routes.insert(dst, r.prefix_len, nh);
    }
    Ok(Prepared { ifaces, routes })
}

#[cfg(test)]
mod tests;
