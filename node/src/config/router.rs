//! `[router]`: router mode. The node owns the listed interfaces through AF_PACKET, forwards
//! plain IPv4 itself and runs capsules sent to `<interface address>:capsule_port`.
//! See `docs/router.md` and `docs/config.md`.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use ants_router::RouterLimits;
use toml::Spanned;

use super::raw::{RawInterface, RawIpRoute, RawRouter};
use super::{Result, Source};

const S: &str = "[router]";

/// `[router] fast_path`: where plain IPv4 that needs nothing but forwarding is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FastPathMode {
    /// Everything goes through the AF_PACKET ring and the userspace router.
    #[default]
    None,
    /// An XDP program the node loads forwards it in the kernel (`crate::fastpath`); the rest
    /// goes on to the userspace router.
    Xdp,
}

/// `[router] datapath`: the sockets the userspace router reads and writes frames with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Datapath {
    /// AF_PACKET: a `TPACKET_V3` receive ring and `sendmmsg`, with `PACKET_VNET_HDR` (GSO
    /// super-frames and partial checksums passed through).
    #[default]
    AfPacket,
    /// AF_XDP: an XDP program hands frames to a socket per interface (queue 0) whose memory
    /// the node owns; no offload metadata (GSO peers are switched off by the kernel,
    /// partial checksums completed on receive).
    AfXdp,
}

/// `[router] busy_poll`: when the router thread drives its AF_XDP queues' receive work
/// (with `busy_poll_us` above 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BusyPoll {
    /// From start to stop.
    Always,
    /// While the router falls behind its queues (a receive ring half full four turns in a
    /// row), until 100 ms pass with it keeping up; the kernel drives receive otherwise, so
    /// a router that keeps up has the kernel's latency. The default.
    #[default]
    Overload,
}

/// `[router]`: its presence selects router mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterSection {
    /// UDP port of capsules addressed to the router (3322).
    pub capsule_port: u16,
    /// Also install the namespace's kernel IPv4 routes (read once at start-up).
    pub import_kernel_routes: bool,
    /// Drop every frame of the owned interfaces at tcx ingress (a BPF program), after the
    /// node's packet socket has seen it, so the kernel's IP stack spends nothing on them.
    pub kernel_ingress_drop: bool,
    /// Forward plain IPv4 in an XDP program the node loads (`"xdp"`), or everything in
    /// userspace (`"none"`, the default).
    pub fast_path: FastPathMode,
    /// How frames reach the userspace router: AF_PACKET rings (the default) or AF_XDP
    /// sockets.
    pub datapath: Datapath,
    /// `datapath = "afxdp"`: the router thread drives each interface's receive work by
    /// preferred busy polling (when: `busy_poll`), the kernel taking it back after this many
    /// microseconds without a poll; 0 leaves it to the kernel (see `docs/router.md`).
    /// Default 1000 with AF_XDP, 0 otherwise.
    pub busy_poll_us: u32,
    /// With `busy_poll_us`: always, or only while overloaded.
    pub busy_poll: BusyPoll,
    /// ICMP errors sent per second of each class (time exceeded, destination unreachable,
    /// fragmentation needed: one token bucket each).
    pub icmp_per_sec: u32,
    /// ICMP errors of one class sent back to back (each class bucket's depth).
    pub icmp_burst: u32,
    /// ICMP errors sent per second to one address (the source of the offending packets).
    pub icmp_source_per_sec: u32,
    /// ICMP errors sent back to back to one address.
    pub icmp_source_burst: u32,
    /// Addresses with a per-source ICMP bucket (least recently used evicted).
    pub icmp_source_entries: usize,
    /// Resolved neighbours kept in the ARP table (least recently used evicted).
    pub arp_entries: usize,
    /// ARP resolutions in progress; when full, packets needing a new one are dropped, so
    /// silent on-link addresses cannot evict resolved neighbours.
    pub arp_incomplete_entries: usize,
    /// Frames held per unresolved next hop while ARP resolves it.
    pub arp_pending_per_neighbour: usize,
    /// Frames held for all unresolved next hops together.
    pub arp_pending_total: usize,
    /// Started as root, become this user once the interfaces are open, keeping only the
    /// capabilities router mode still uses (`ants_node::privdrop`).
    pub user: Option<String>,
    /// `[[router.interface]]`: the interfaces the node owns, in order.
    pub interfaces: Vec<RouterInterface>,
    /// `[[router.route]]`: static IPv4 routes beyond the interfaces' own subnets.
    pub routes: Vec<IpRoute>,
}

/// `[[router.interface]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterInterface {
    /// The Linux interface name.
    pub name: String,
    /// The router's address on it (owned by the node, not configured in the kernel).
    pub address: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix_len: u8,
    /// MTU override; `None` = the device's MTU.
    pub mtu: Option<u16>,
}

/// `[[router.route]]`: IPv4 packets for `dst/prefix_len` go to the gateway `via`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRoute {
    /// Destination network.
    pub dst: Ipv4Addr,
    /// Prefix length.
    pub prefix_len: u8,
    /// The gateway: an address inside one interface's subnet.
    pub via: Ipv4Addr,
}

impl RouterSection {
    /// The router core's limits: the ones configured here, the core's defaults for the rest.
    pub fn router_limits(&self) -> RouterLimits {
        RouterLimits {
            arp_entries: self.arp_entries,
            arp_incomplete_entries: self.arp_incomplete_entries,
            arp_pending_per_neighbour: self.arp_pending_per_neighbour,
            arp_pending_total: self.arp_pending_total,
            icmp_per_sec: self.icmp_per_sec,
            icmp_burst: self.icmp_burst,
            icmp_source_per_sec: self.icmp_source_per_sec,
            icmp_source_burst: self.icmp_source_burst,
            icmp_source_entries: self.icmp_source_entries,
            ..RouterLimits::default()
        }
    }

    /// The interface whose subnet holds `ip`, if any.
    pub fn interface_for(&self, ip: Ipv4Addr) -> Option<&RouterInterface> {
        self.interfaces
            .iter()
            .find(|i| same_subnet(i.address, ip, i.prefix_len))
    }
}

fn mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, len: u8) -> bool {
    (u32::from(a) ^ u32::from(b)) & mask(len) == 0
}

/// `a.b.c.d/len` (or a bare address = /32).
fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, len) = match s.trim().split_once('/') {
        Some((ip, len)) => (ip, len.parse::<u8>().ok().filter(|l| *l <= 32)?),
        None => (s.trim(), 32),
    };
    Some((ip.parse().ok()?, len))
}

impl Source<'_> {
    fn router_number(
        &self,
        field: &str,
        v: Option<&Spanned<u64>>,
        default: u64,
        (min, max): (u64, u64),
    ) -> Result<u64> {
        let Some(v) = v else { return Ok(default) };
        let n = *v.get_ref();
        if !(min..=max).contains(&n) {
            return Err(self.invalid(
                v.span(),
                S,
                field,
                n,
                format_args!("must be between {min} and {max}"),
            ));
        }
        Ok(n)
    }

    pub(super) fn router(&self, raw: &RawRouter) -> Result<RouterSection> {
        let n = |field, v: &Option<Spanned<u64>>, default, range| {
            self.router_number(field, v.as_ref(), default, range)
        };
        let big = (1, 1 << 20);
        let interfaces = self.interfaces(&raw.interfaces)?;
        let datapath = match raw.datapath.as_ref().map(|v| (v, v.get_ref().as_str())) {
            None | Some((_, "afpacket")) => Datapath::AfPacket,
            Some((_, "afxdp")) => Datapath::AfXdp,
            Some((v, _)) => {
                return Err(self.bad(S, "datapath", v, "expected \"afpacket\" or \"afxdp\""));
            }
        };
        let afxdp = datapath == Datapath::AfXdp;
        let mut section = RouterSection {
            capsule_port: n("capsule_port", &raw.capsule_port, 3322, (1, 65535))? as u16,
            import_kernel_routes: raw.import_kernel_routes.unwrap_or(false),
            kernel_ingress_drop: raw.kernel_ingress_drop.unwrap_or(true),
            fast_path: match raw.fast_path.as_ref().map(|v| (v, v.get_ref().as_str())) {
                None | Some((_, "none")) => FastPathMode::None,
                Some((_, "xdp")) => FastPathMode::Xdp,
                Some((v, _)) => {
                    return Err(self.bad(S, "fast_path", v, "expected \"none\" or \"xdp\""));
                }
            },
            datapath,
            busy_poll_us: n(
                "busy_poll_us",
                &raw.busy_poll_us,
                if afxdp { 1000 } else { 0 },
                (0, 100_000),
            )? as u32,
            busy_poll: match raw.busy_poll.as_ref().map(|v| (v, v.get_ref().as_str())) {
                Some((_, "always")) => BusyPoll::Always,
                None | Some((_, "overload")) => BusyPoll::Overload,
                Some((v, _)) => {
                    return Err(self.bad(S, "busy_poll", v, "expected \"always\" or \"overload\""));
                }
            },
            user: match &raw.user {
                None => None,
                Some(v) if v.get_ref().trim().is_empty() || v.get_ref().contains('\0') => {
                    return Err(self.bad(S, "user", v, "expected a user name, e.g. \"ants\""));
                }
                Some(v) => Some(v.get_ref().trim().to_owned()),
            },
            icmp_per_sec: n("icmp_per_sec", &raw.icmp_per_sec, 100, (0, 1_000_000))? as u32,
            icmp_burst: n("icmp_burst", &raw.icmp_burst, 50, (1, 1_000_000))? as u32,
            icmp_source_per_sec: n(
                "icmp_source_per_sec",
                &raw.icmp_source_per_sec,
                10,
                (0, 1_000_000),
            )? as u32,
            icmp_source_burst: n(
                "icmp_source_burst",
                &raw.icmp_source_burst,
                10,
                (1, 1_000_000),
            )? as u32,
            icmp_source_entries: n("icmp_source_entries", &raw.icmp_source_entries, 1024, big)?
                as usize,
            arp_entries: n("arp_entries", &raw.arp_entries, 1024, big)? as usize,
            arp_incomplete_entries: n(
                "arp_incomplete_entries",
                &raw.arp_incomplete_entries,
                256,
                big,
            )? as usize,
            arp_pending_per_neighbour: n(
                "arp_pending_per_neighbour",
                &raw.arp_pending_per_neighbour,
                64,
                (0, 1 << 16),
            )? as usize,
            arp_pending_total: n("arp_pending_total", &raw.arp_pending_total, 1024, big)? as usize,
            interfaces,
            routes: Vec::new(),
        };
        section.routes = self.ip_routes(&raw.routes, &section)?;
        if let Some(v) = &raw.busy_poll_us
            && section.busy_poll_us > 0
            && section.datapath != Datapath::AfXdp
        {
            return Err(self.invalid(
                v.span(),
                S,
                "busy_poll_us",
                v.get_ref(),
                "busy polling drives AF_XDP sockets: set datapath = \"afxdp\" too, or leave \
                 busy_poll_us out",
            ));
        }
        if let Some(v) = &raw.busy_poll
            && section.busy_poll_us == 0
        {
            return Err(self.bad(
                S,
                "busy_poll",
                v,
                "says when to busy poll, and busy_poll_us is 0 (off): set busy_poll_us (e.g. \
                 1000) too, or leave busy_poll out",
            ));
        }
        Ok(section)
    }

    fn interfaces(&self, raw: &[RawInterface]) -> Result<Vec<RouterInterface>> {
        const I: &str = "[[router.interface]]";
        if raw.is_empty() {
            return Err(self.section_error(
                "[router]",
                "router.interface",
                "[router] needs at least one [[router.interface]] with name and address",
            ));
        }
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut out: Vec<RouterInterface> = Vec::with_capacity(raw.len());
        for r in raw {
            let name = r.name.get_ref().trim();
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
                return Err(self.bad(
                    I,
                    "name",
                    &r.name,
                    "expected a Linux interface name (1 to 15 characters, no '/' or spaces)",
                ));
            }
            if let Some(line) = names.insert(name, self.line_of(r.name.span().start)) {
                return Err(self.bad(
                    I,
                    "name",
                    &r.name,
                    format_args!("already listed on line {line}"),
                ));
            }
            let Some((address, prefix_len)) = parse_cidr(r.address.get_ref()) else {
                return Err(self.bad(
                    I,
                    "address",
                    &r.address,
                    "expected an IPv4 address with its prefix length, e.g. 198.18.1.1/24",
                ));
            };
            if address.is_unspecified() || address.is_multicast() || address.is_broadcast() {
                return Err(self.bad(I, "address", &r.address, "not a unicast address"));
            }
            if !(8..=30).contains(&prefix_len) && prefix_len != 32 {
                return Err(self.bad(
                    I,
                    "address",
                    &r.address,
                    "the prefix length must be 8 to 30 (or 32 for a point-to-point address)",
                ));
            }
            if let Some(other) = out.iter().find(|o| {
                let len = o.prefix_len.min(prefix_len);
                same_subnet(o.address, address, len)
            }) {
                return Err(self.bad(
                    I,
                    "address",
                    &r.address,
                    format_args!(
                        "overlaps the subnet of interface {} ({}/{})",
                        other.name, other.address, other.prefix_len
                    ),
                ));
            }
            let mtu = match &r.mtu {
                None => None,
                // The router core's rule (`ants_router::MIN_MTU`, the IPv4 minimum), so a
                // config that loads is one the router accepts.
                Some(v) => match u16::try_from(*v.get_ref()) {
                    Ok(mtu) if mtu >= ants_router::MIN_MTU => Some(mtu),
                    _ => {
                        return Err(self.invalid(
                            v.span(),
                            I,
                            "mtu",
                            v.get_ref(),
                            format_args!(
                                "must be between {} and {} (the IPv4 minimum and the largest \
                                 IPv4 packet)",
                                ants_router::MIN_MTU,
                                u16::MAX
                            ),
                        ));
                    }
                },
            };
            out.push(RouterInterface {
                name: name.to_owned(),
                address,
                prefix_len,
                mtu,
            });
        }
        Ok(out)
    }

    fn ip_routes(&self, raw: &[RawIpRoute], section: &RouterSection) -> Result<Vec<IpRoute>> {
        const R: &str = "[[router.route]]";
        let mut seen: HashMap<(Ipv4Addr, u8), usize> = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        for r in raw {
            let Some((dst, prefix_len)) = parse_cidr(r.dst.get_ref()) else {
                return Err(self.bad(
                    R,
                    "dst",
                    &r.dst,
                    "expected an IPv4 prefix such as 198.18.4.0/24 (or 0.0.0.0/0, or an address)",
                ));
            };
            let dst = Ipv4Addr::from(u32::from(dst) & mask(prefix_len));
            if let Some(line) = seen.insert((dst, prefix_len), self.line_of(r.dst.span().start)) {
                return Err(self.bad(
                    R,
                    "dst",
                    &r.dst,
                    format_args!(
                        "the [[router.route]] on line {line} already covers {dst}/{prefix_len}"
                    ),
                ));
            }
            let via = r.via.get_ref().trim().parse::<Ipv4Addr>().map_err(|_| {
                self.bad(R, "via", &r.via, "expected the IPv4 address of a gateway")
            })?;
            if section.interface_for(via).is_none() {
                return Err(self.bad(
                    R,
                    "via",
                    &r.via,
                    "is not inside the subnet of any [[router.interface]]",
                ));
            }
            if section.interfaces.iter().any(|i| i.address == via) {
                return Err(self.bad(R, "via", &r.via, "is one of this router's own addresses"));
            }
            out.push(IpRoute {
                dst,
                prefix_len,
                via,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use ants_router::RouterLimits;

    use crate::config::{BusyPoll, Config, ConfigError};

    /// A two-interface router: lines 1-13.
    const ROUTER: &str = "[node]\naddress = \"198.18.1.1\"\n\n[router]\n\n\
        [[router.interface]]\nname = \"r1-h1\"\naddress = \"198.18.1.1/24\"\n\n\
        [[router.interface]]\nname = \"r1-r2\"\naddress = \"198.18.2.1/24\"\n\n";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "r.toml")
    }

    #[track_caller]
    fn error(text: &str, line: usize, needle: &str) {
        let e = parse(text).expect_err("should be rejected");
        assert_eq!(e.line(), Some(line), "{e}");
        assert!(e.to_string().contains(needle), "`{e}` lacks `{needle}`");
    }

    #[test]
    fn a_router_needs_no_listen_and_defaults_to_the_first_interface() {
        let text = format!(
            "{ROUTER}[[router.route]]\ndst = \"198.18.3.0/24\"\nvia = \"198.18.2.2\"\n\n\
             [[neighbour]]\naddress = \"198.18.2.2\"\nendpoint = \"198.18.2.2:3322\"\n"
        );
        let c = parse(&text).unwrap();
        let r = c.router.as_ref().unwrap();
        assert_eq!(c.node.listen, "198.18.1.1:3322".parse().unwrap());
        assert_eq!(r.capsule_port, 3322);
        assert_eq!(r.interfaces.len(), 2);
        assert_eq!(r.interfaces[1].prefix_len, 24);
        assert_eq!(
            r.routes[0].via,
            "198.18.2.2".parse::<std::net::Ipv4Addr>().unwrap()
        );
        assert_eq!(r.interface_for(r.routes[0].via).unwrap().name, "r1-r2");
        assert!(!r.import_kernel_routes);
    }

    #[test]
    fn router_mode_runs_one_worker_unless_told() {
        assert_eq!(parse(ROUTER).unwrap().node.workers, 1);
        let two = ROUTER.replace("\n\n[router]", "\nworkers = 2\n\n[router]");
        assert_eq!(parse(&two).unwrap().node.workers, 2);
        let none = ROUTER.replace("\n\n[router]", "\nworkers = 0\n\n[router]");
        error(&none, 3, "between 1 and");
    }

    #[test]
    fn listen_must_be_a_router_address_with_the_capsule_port() {
        let text = ROUTER.replace(
            "address = \"198.18.1.1\"\n",
            "address = \"198.18.1.1\"\nlisten = \"198.18.2.1:7000\"\n",
        );
        error(&text, 3, "port 3322");
        let ok = text.replace(":7000", ":3322");
        assert_eq!(
            parse(&ok).unwrap().node.listen,
            "198.18.2.1:3322".parse().unwrap()
        );
    }

    #[test]
    fn overlay_mode_still_needs_listen() {
        error(
            "\n[node]\naddress = \"198.18.0.1\"\n",
            2,
            "missing field `listen`",
        );
    }

    #[test]
    fn busy_polling_is_off_unless_asked_and_bounded() {
        assert_eq!(parse(ROUTER).unwrap().router.unwrap().busy_poll_us, 0);
        let on = ROUTER.replace(
            "[router]\n",
            "[router]\nbusy_poll_us = 1000\ndatapath = \"afxdp\"\n",
        );
        assert_eq!(parse(&on).unwrap().router.unwrap().busy_poll_us, 1000);
        let packet = ROUTER.replace("[router]\n", "[router]\nbusy_poll_us = 1000\n");
        error(&packet, 5, "set datapath = \"afxdp\" too");
        let big = ROUTER.replace("[router]\n", "[router]\nbusy_poll_us = 100001\n");
        error(&big, 5, "busy_poll_us");
        let r = parse(&on).unwrap().router.unwrap();
        assert_eq!(r.busy_poll, BusyPoll::Overload);
        let always = on.replace("busy_poll_us", "busy_poll = \"always\"\nbusy_poll_us");
        let r = parse(&always).unwrap().router.unwrap();
        assert_eq!((r.busy_poll, r.busy_poll_us), (BusyPoll::Always, 1000));
        let typo = on.replace("busy_poll_us", "busy_poll = \"sometimes\"\nbusy_poll_us");
        error(&typo, 5, "expected \"always\" or \"overload\"");
        let off = ROUTER.replace(
            "[router]\n",
            "[router]\ndatapath = \"afxdp\"\nbusy_poll_us = 0\nbusy_poll = \"overload\"\n",
        );
        error(&off, 7, "busy_poll_us is 0");
        // AF_XDP busy polls under overload by default, with a 1 ms deferral.
        let afxdp = ROUTER.replace("[router]\n", "[router]\ndatapath = \"afxdp\"\n");
        let r = parse(&afxdp).unwrap().router.unwrap();
        assert_eq!((r.busy_poll, r.busy_poll_us), (BusyPoll::Overload, 1000));
    }

    #[test]
    fn bad_interfaces_are_reported_with_their_line() {
        error(
            "[node]\naddress = \"198.18.1.1\"\n[router]\n",
            3,
            "at least one",
        );
        let bad_cidr = ROUTER.replace("198.18.2.1/24", "198.18.2.1/33");
        error(&bad_cidr, 12, "prefix length");
        let overlap = ROUTER.replace("198.18.2.1/24", "198.18.1.9/16");
        error(&overlap, 12, "overlaps the subnet of interface r1-h1");
        let dup = ROUTER.replace("r1-r2", "r1-h1");
        error(&dup, 11, "already listed on line 7");
        let long = ROUTER.replace("r1-r2", "an-interface-name-too-long");
        error(&long, 11, "1 to 15 characters");
        let mtu = ROUTER.replace(
            "address = \"198.18.2.1/24\"\n",
            "address = \"198.18.2.1/24\"\nmtu = 60\n",
        );
        error(&mtu, 13, "between 68 and 65535");
        let big = ROUTER.replace(
            "address = \"198.18.2.1/24\"\n",
            "address = \"198.18.2.1/24\"\nmtu = 65536\n",
        );
        error(&big, 13, "between 68 and 65535");
        let small_ok = ROUTER.replace(
            "address = \"198.18.2.1/24\"\n",
            "address = \"198.18.2.1/24\"\nmtu = 68\n",
        );
        assert!(Config::parse(&small_ok, "r.toml").is_ok());
    }

    #[test]
    fn limits_default_to_the_router_cores_except_three() {
        let c = parse(ROUTER).unwrap();
        assert_eq!(
            c.router.unwrap().router_limits(),
            RouterLimits {
                icmp_per_sec: 100,
                arp_pending_per_neighbour: 64,
                arp_pending_total: 1024,
                ..RouterLimits::default()
            }
        );
    }

    #[test]
    fn limit_keys_are_read_and_range_checked_with_their_line() {
        let keys = "arp_incomplete_entries = 32\nicmp_source_per_sec = 0\n\
                    icmp_source_burst = 3\nicmp_source_entries = 64\n";
        let text = ROUTER.replace("[router]\n", &format!("[router]\n{keys}"));
        let l = parse(&text).unwrap().router.unwrap().router_limits();
        assert_eq!(
            (
                l.arp_incomplete_entries,
                l.icmp_source_per_sec,
                l.icmp_source_burst,
                l.icmp_source_entries
            ),
            (32, 0, 3, 64)
        );
        // Line 5 is another key, line 6 the bad one.
        for (line, range) in [
            ("arp_incomplete_entries = 0", "between 1 and 1048576"),
            ("icmp_source_entries = 1048577", "between 1 and 1048576"),
            ("icmp_source_per_sec = 1000001", "between 0 and 1000000"),
            ("icmp_source_burst = 0", "between 1 and 1000000"),
        ] {
            let text = ROUTER.replace("[router]\n", &format!("[router]\nicmp_burst = 5\n{line}\n"));
            error(&text, 6, &format!("[router] {line}: must be {range}"));
        }
    }

    #[test]
    fn routes_need_a_gateway_on_an_interface_subnet() {
        let off = format!("{ROUTER}[[router.route]]\ndst = \"10.0.0.0/8\"\nvia = \"198.18.9.1\"\n");
        error(&off, 16, "not inside the subnet");
        let own = format!("{ROUTER}[[router.route]]\ndst = \"0.0.0.0/0\"\nvia = \"198.18.2.1\"\n");
        error(&own, 16, "own addresses");
        let dup = format!(
            "{ROUTER}[[router.route]]\ndst = \"198.18.3.7/24\"\nvia = \"198.18.2.2\"\n\n\
             [[router.route]]\ndst = \"198.18.3.0/24\"\nvia = \"198.18.2.3\"\n"
        );
        error(&dup, 19, "already covers 198.18.3.0/24");
        let port = ROUTER.replace("[router]\n", "[router]\ncapsule_port = 0\n");
        error(&port, 5, "between 1 and 65535");
    }
}
