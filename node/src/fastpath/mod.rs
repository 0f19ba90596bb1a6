//! Router mode's XDP fast path (`[router] fast_path = "xdp"`): plain IPv4 that needs nothing
//! but forwarding is forwarded in the kernel's XDP hook by a program the node assembles,
//! loads and attaches itself; every other frame goes on to the node's AF_PACKET ring and the
//! userspace router (the slow path), which decides exactly as without a fast path.
//!
//! The node stays the only source of truth: at start it builds the program with its
//! interfaces' MACs and fills its maps from the router's own tables — the routes and the
//! addresses that are not someone else's unicast (`routes`, one LPM trie, the latter marked
//! special), the egress devices (`tx`, a devmap) — and while it runs it keeps the neighbour
//! map (`neigh`) equal to the
//! router's *reachable* ARP entries ([`FastPath::sync_neighbours`]): a neighbour that turns
//! stale or unknown disappears from the map, so its frames take the slow path, which probes
//! and resolves it as before. Counters live in a per-CPU array (`stats`) and show in the
//! node's stats. The `prog` module says exactly which frames the program forwards.
//!
//! Cleanup: the attachments are BPF links owned by file descriptors, and the maps and the
//! program live only as long as descriptors refer to them — when the node exits, in any way
//! (SIGTERM, a crash, SIGKILL), the kernel detaches and frees everything. Nothing is pinned,
//! so there is nothing to clean up on the next start.
//!
//! On veth (how network namespaces are linked), `XDP_REDIRECT` into a veth delivers to its
//! peer only when the peer has NAPI on: an XDP program of its own, GRO (`ethtool -K <peer>
//! gro on`) or threaded NAPI. Otherwise the kernel drops the frames (`ethtool -S` on the
//! veth: `peer_tq_xdp_xmit_err`). Physical NICs with native XDP have no such condition.

mod prog;

use std::collections::HashMap;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};

use crate::bpf::sys::{self, F_NO_PREALLOC, MapType, ProgType, UPDATE_ANY};

/// What the XDP program does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramOptions {
    /// Forward plain IPv4 itself (`fast_path = "xdp"`).
    pub forward: bool,
    /// Hand every other frame to the AF_XDP socket of its receive queue
    /// (`datapath = "afxdp"`), instead of to the kernel (where the AF_PACKET ring sees it).
    pub xsk: bool,
}

/// `XDP_FLAGS_SKB_MODE`: generic XDP, on any device, after the skb is built.
const XDP_FLAGS_SKB_MODE: u32 = 2;
/// `XDP_FLAGS_DRV_MODE`: native XDP in the driver.
const XDP_FLAGS_DRV_MODE: u32 = 4;

/// Neighbours the map holds at most (beyond, the rest take the slow path).
pub const MAX_NEIGHBOURS: u32 = 4096;
/// Routes the map holds at most.
pub const MAX_ROUTES: u32 = 4096;
/// Receive queues the XSKMAP holds.
pub const MAX_QUEUES: u32 = 64;

/// One interface the fast path serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastPathInterface {
    /// Its index in the node's network namespace.
    pub ifindex: u32,
    /// Its MAC address.
    pub mac: [u8; 6],
    /// The router's MTU for it.
    pub mtu: u16,
}

/// Where the program runs on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver (native XDP), before any socket buffer exists.
    Native,
    /// Generic XDP, after the kernel built the socket buffer (any device; slower).
    Generic,
}

/// The fast path's counters (summed over CPUs) since it was loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FastPathCounters {
    /// Frames forwarded by the program.
    pub forwarded: u64,
    /// Frames handed to the slow path.
    pub passed: u64,
    /// Frames the devmap refused (stays 0: every interface is in it).
    pub redirect_failed: u64,
}

/// `struct bpf_lpm_trie_key` for IPv4: prefix length, then the address in network order.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct LpmKey {
    prefix_len: u32,
    addr: [u8; 4],
}

/// A route: egress ifindex, gateway (0: on the link), MTU, and `special` (non-zero: the
/// prefix is not someone else's unicast — martian, multicast, broadcast, ours — so frames
/// from or to it take the slow path).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct RouteValue {
    ifindex: u32,
    via: [u8; 4],
    mtu: u32,
    special: u32,
}

/// A reachable neighbour: its MAC, the egress interface's MAC, the egress ifindex.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NeighValue {
    dmac: [u8; 6],
    smac: [u8; 6],
    ifindex: u32,
}

/// A loaded fast path: its maps, its program and the interfaces it is attached to.
#[derive(Debug)]
pub struct FastPath {
    ifaces: Vec<FastPathInterface>,
    neigh: OwnedFd,
    stats: OwnedFd,
    /// The loaded program: one for all interfaces, or one per interface (each with its
    /// XSKMAP) with AF_XDP sockets.
    progs: Vec<OwnedFd>,
    /// The BPF links attaching the program; dropping them detaches it.
    links: Vec<(u32, OwnedFd, XdpMode)>,
    /// What `neigh` holds, by neighbour address (network order bytes as `u32`).
    installed: HashMap<u32, NeighValue>,
    /// What it should hold, rebuilt by each sync (kept for its capacity).
    want: HashMap<u32, NeighValue>,
    cpus: usize,
    /// Per interface, the XSKMAP (receive queue → AF_XDP socket), with
    /// `ProgramOptions::xsk`.
    xsks: Vec<OwnedFd>,
    /// The program forwards (`ProgramOptions::forward`); without, the neighbour map is unused.
    forward: bool,
    // Kept open so the program's maps stay the node's to update.
    _maps: [OwnedFd; 2],
}

fn context(what: &'static str) -> impl FnOnce(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("fast path: {what}: {e}"))
}

/// The route trie's contents: every route, then every special prefix (replacing a route of
/// the same prefix). A route inside a special prefix is marked special too, so that the
/// longest match of any address is special exactly when the router would not treat the
/// address as someone else's unicast (`Router::non_unicast_prefixes`): the match is either
/// the special prefix itself, or a longer prefix inside it.
fn trie_entries(
    ifaces: &[FastPathInterface],
    routes: &[(Ipv4Addr, u8, usize, Option<Ipv4Addr>)],
    special: &[(Ipv4Addr, u8)],
) -> Vec<(LpmKey, RouteValue)> {
    let mask = |len: u8| {
        u32::MAX
            .checked_shl(32 - u32::from(len.min(32)))
            .unwrap_or(0)
    };
    let inside_special = |dst: Ipv4Addr, len: u8| {
        special.iter().any(|&(p, plen)| {
            plen <= len && u32::from(dst) & mask(plen) == u32::from(p) & mask(plen)
        })
    };
    let mut out: Vec<(LpmKey, RouteValue)> = Vec::new();
    for &(dst, len, iface, via) in routes {
        let Some(i) = ifaces.get(iface) else {
            continue;
        };
        out.push((
            LpmKey {
                prefix_len: u32::from(len),
                addr: dst.octets(),
            },
            RouteValue {
                ifindex: i.ifindex,
                via: via.map_or([0; 4], |v| v.octets()),
                mtu: u32::from(i.mtu),
                special: u32::from(inside_special(dst, len)),
            },
        ));
    }
    for &(p, len) in special {
        let key = LpmKey {
            prefix_len: u32::from(len),
            addr: p.octets(),
        };
        out.retain(|(k, _)| !(k.prefix_len == key.prefix_len && k.addr == key.addr));
        out.push((
            key,
            RouteValue {
                ifindex: 0,
                via: [0; 4],
                mtu: 0,
                special: 1,
            },
        ));
    }
    out
}

impl FastPath {
    /// Create the maps, fill them from the router's tables, and load the program (not yet
    /// attached). `routes` are `(network, prefix length, egress interface id, gateway)`
    /// (from `Router::route_entries`), `special` the non-unicast prefixes (from
    /// `Router::non_unicast_prefixes`); interface ids index `ifaces`.
    pub fn load(
        ifaces: &[FastPathInterface],
        routes: &[(Ipv4Addr, u8, usize, Option<Ipv4Addr>)],
        special: &[(Ipv4Addr, u8)],
    ) -> io::Result<FastPath> {
        Self::load_with(
            ifaces,
            routes,
            special,
            ProgramOptions {
                forward: true,
                xsk: false,
            },
        )
    }

    /// [`load`](Self::load) with the program's options: forwarding or not, and where the
    /// frames it does not forward go.
    pub fn load_with(
        ifaces: &[FastPathInterface],
        routes: &[(Ipv4Addr, u8, usize, Option<Ipv4Addr>)],
        special: &[(Ipv4Addr, u8)],
        options: ProgramOptions,
    ) -> io::Result<FastPath> {
        let n_if = u32::try_from(ifaces.len().max(1)).unwrap_or(u32::MAX);
        let map = |ty, k: usize, v: usize, max, flags, name| {
            sys::map_create(ty, k as u32, v as u32, max, flags, name).map_err(context("maps"))
        };
        let entries = trie_entries(ifaces, routes, special);
        if entries.len() > MAX_ROUTES as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "fast path: {} routes and special prefixes, the map holds {MAX_ROUTES}",
                    entries.len()
                ),
            ));
        }
        let routes_map = map(
            MapType::LpmTrie,
            std::mem::size_of::<LpmKey>(),
            std::mem::size_of::<RouteValue>(),
            MAX_ROUTES,
            F_NO_PREALLOC,
            "ants_routes",
        )?;
        let neigh = map(
            MapType::Hash,
            4,
            std::mem::size_of::<NeighValue>(),
            MAX_NEIGHBOURS,
            0,
            "ants_neigh",
        )?;
        let tx = map(MapType::DevmapHash, 4, 4, n_if, 0, "ants_tx")?;
        let stats = map(MapType::PercpuArray, 4, 8, prog::STATS, 0, "ants_stats")?;
        for i in ifaces {
            sys::map_update(tx.as_fd(), &i.ifindex, &i.ifindex, UPDATE_ANY)
                .map_err(context("devmap"))?;
        }
        for (key, value) in &entries {
            sys::map_update(routes_map.as_fd(), key, value, UPDATE_ANY)
                .map_err(context("routes"))?;
        }
        // With AF_XDP sockets, one program per interface, each with its own XSKMAP (keyed by
        // receive queue); otherwise one program for all.
        let xsks: Vec<OwnedFd> = if options.xsk {
            ifaces
                .iter()
                .map(|_| map(MapType::Xskmap, 4, 4, MAX_QUEUES, 0, "ants_xsks"))
                .collect::<io::Result<_>>()?
        } else {
            Vec::new()
        };
        let macs: Vec<(u32, [u8; 6])> = ifaces.iter().map(|i| (i.ifindex, i.mac)).collect();
        let local: Vec<Ipv4Addr> = special
            .iter()
            .filter(|&&(_, len)| len == 32)
            .map(|&(a, _)| a)
            .collect();
        let build = |xsk: Option<&OwnedFd>| -> io::Result<OwnedFd> {
            let insns = prog::build(&prog::Maps {
                forward: options.forward,
                xsk: xsk.map(|x| x.as_fd()),
                ifaces: &macs,
                local: &local,
                routes: routes_map.as_fd(),
                neigh: neigh.as_fd(),
                tx: tx.as_fd(),
                stats: stats.as_fd(),
            })
            .map_err(io::Error::other)?;
            sys::prog_load(ProgType::Xdp, &insns, "ants_fast_path", sys::ATTACH_XDP, 0)
        };
        let progs = if options.xsk {
            xsks.iter()
                .map(|x| build(Some(x)))
                .collect::<io::Result<Vec<_>>>()?
        } else {
            vec![build(None)?]
        };
        Ok(FastPath {
            ifaces: ifaces.to_vec(),
            neigh,
            stats,
            progs,
            links: Vec::new(),
            installed: HashMap::new(),
            want: HashMap::new(),
            cpus: sys::possible_cpus().unwrap_or(1),
            xsks,
            forward: options.forward,
            _maps: [routes_map, tx],
        })
    }

    /// Attach the program to every interface: native XDP where the driver has it, generic
    /// otherwise. Returns the mode per interface, in order.
    pub fn attach(&mut self) -> io::Result<Vec<XdpMode>> {
        let mut modes = Vec::new();
        for (k, i) in self.ifaces.clone().into_iter().enumerate() {
            let prog = self.progs.get(k).unwrap_or(&self.progs[0]).as_fd();
            let native = sys::link_create(prog, i.ifindex, sys::ATTACH_XDP, XDP_FLAGS_DRV_MODE);
            let (link, mode) = match native {
                Ok(l) => (l, XdpMode::Native),
                Err(_) => (
                    sys::link_create(prog, i.ifindex, sys::ATTACH_XDP, XDP_FLAGS_SKB_MODE)
                        .map_err(|e| {
                            io::Error::new(
                                e.kind(),
                                format!(
                                    "fast path: attaching XDP to ifindex {}: {e} (needs \
                                     CAP_NET_ADMIN and CAP_BPF, Linux 5.9 or later)",
                                    i.ifindex
                                ),
                            )
                        })?,
                    XdpMode::Generic,
                ),
            };
            self.links.push((i.ifindex, link, mode));
            modes.push(mode);
        }
        Ok(modes)
    }

    /// Make the neighbour map hold exactly `reachable`: `(address, interface id, MAC)` of
    /// every neighbour the router considers reachable now. Entries for unknown interface ids
    /// are ignored; beyond [`MAX_NEIGHBOURS`] the rest stay on the slow path. Returns the
    /// number of map updates and deletions made.
    pub fn sync_neighbours(
        &mut self,
        reachable: impl IntoIterator<Item = (Ipv4Addr, usize, [u8; 6])>,
    ) -> io::Result<usize> {
        if !self.forward {
            return Ok(0);
        }
        // Reused between syncs (every 10 ms while frames flow): no allocation once warm.
        let (want, installed) = (&mut self.want, &mut self.installed);
        let neigh = self.neigh.as_fd();
        want.clear();
        for (ip, iface, mac) in reachable {
            let Some(i) = self.ifaces.get(iface) else {
                continue;
            };
            if want.len() >= MAX_NEIGHBOURS as usize {
                break;
            }
            want.insert(
                u32::from_ne_bytes(ip.octets()),
                NeighValue {
                    dmac: mac,
                    smac: i.mac,
                    ifindex: i.ifindex,
                },
            );
        }
        let mut changes = 0;
        // Allocates only when some neighbour went away.
        let stale: Vec<u32> = installed
            .keys()
            .filter(|k| !want.contains_key(k))
            .copied()
            .collect();
        for k in stale {
            sys::map_delete(neigh, &k).map_err(context("neighbours"))?;
            installed.remove(&k);
            changes += 1;
        }
        for (k, v) in want.iter() {
            if installed.get(k) != Some(v) {
                sys::map_update(neigh, k, v, UPDATE_ANY).map_err(context("neighbours"))?;
                installed.insert(*k, *v);
                changes += 1;
            }
        }
        Ok(changes)
    }

    /// Send the frames of receive queue `queue` of interface `iface` (an index of the
    /// interfaces given to `load_with`) that the program does not forward to the AF_XDP
    /// socket `xsk`.
    pub fn register_xsk(
        &self,
        iface: usize,
        queue: u32,
        xsk: std::os::fd::BorrowedFd<'_>,
    ) -> io::Result<()> {
        let Some(map) = self.xsks.get(iface) else {
            return Err(io::Error::other("fast path loaded without AF_XDP sockets"));
        };
        let fd = u32::try_from(std::os::fd::AsRawFd::as_raw_fd(&xsk)).unwrap_or(u32::MAX);
        sys::map_update(map.as_fd(), &queue, &fd, UPDATE_ANY).map_err(context("XSKMAP"))
    }

    /// Neighbours in the map now.
    pub fn neighbours(&self) -> usize {
        self.installed.len()
    }

    /// The interfaces the program is attached to, with its mode on each.
    pub fn attached(&self) -> impl Iterator<Item = (u32, XdpMode)> + '_ {
        self.links.iter().map(|(i, _, m)| (*i, *m))
    }

    /// The counters, summed over CPUs.
    pub fn counters(&self) -> io::Result<FastPathCounters> {
        let read = |index: u32| -> io::Result<u64> {
            let mut per_cpu = vec![0u64; self.cpus];
            sys::map_lookup(self.stats.as_fd(), &index, &mut per_cpu)?;
            Ok(per_cpu.iter().sum())
        };
        Ok(FastPathCounters {
            forwarded: read(prog::STAT_FORWARDED)?,
            passed: read(prog::STAT_PASSED)?,
            redirect_failed: read(prog::STAT_REDIRECT_FAILED)?,
        })
    }

    /// Run the program once on `frame` as if it had arrived on `ingress_ifindex`
    /// (`BPF_PROG_TEST_RUN`; nothing is sent). Returns `Some(egress ifindex)` when the
    /// program forwards the frame (rewritten in place), `None` when it passes it to the
    /// slow path (unchanged). For tests: the differential test feeds the same frames to
    /// this and to the userspace router.
    pub fn run_once(&self, ingress_ifindex: u32, frame: &mut Vec<u8>) -> io::Result<Option<u32>> {
        let ctx = sys::XdpMd {
            data_end: u32::try_from(frame.len()).unwrap_or(u32::MAX),
            ingress_ifindex,
            ..sys::XdpMd::default()
        };
        let before = frame.clone();
        let ret = sys::prog_test_run(self.progs[0].as_fd(), frame, &ctx)?;
        match ret {
            prog::XDP_REDIRECT => {
                // The egress is the route's; recover it from the rewritten source MAC.
                let smac = frame.get(6..12).unwrap_or_default();
                let egress = self.ifaces.iter().find(|i| i.mac[..] == *smac);
                Ok(egress.map(|i| i.ifindex))
            }
            r if r == prog::XDP_PASS as u32 => {
                if *frame != before {
                    return Err(io::Error::other("the program changed a frame it passed"));
                }
                Ok(None)
            }
            other => Err(io::Error::other(format!("unexpected XDP action {other}"))),
        }
    }
}
