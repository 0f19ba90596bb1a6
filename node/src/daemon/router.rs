//! Router mode's underlay: AF_PACKET rings on the owned interfaces
//! ([`crate::afpacket::PacketSocket`]) with the sans-IO IPv4 router
//! ([`ants_router::Router`]) in front of the node core.
//!
//! Per turn, for each interface: visit the frames of its retired ring blocks in place; the
//! router rewrites a frame to forward it (copied into the egress interface's transmit batch),
//! answers or holds it (its own transmit queue), or hands a capsule's UDP payload to the node.
//! Then the node's transmits become IPv4/UDP through [`ants_router::Router::send_udp`], the
//! router's generated frames are queued, and every batch goes out with one `sendmmsg`.
//! No syscall per packet; the only allocation-free copy is ring → transmit batch.

use std::future::poll_fn;
use std::net::{Ipv4Addr, SocketAddr};
use std::task::Poll;
use std::time::Duration;

use ants_router::{
    Interface, Offload, Route, Router, RouterConfig, RouterCounters, Verdict, complete_l4_checksum,
};
use anyhow::{Context, bail};
use tokio::io::unix::AsyncFd;
use tracing::{info, warn};

use super::{Driver, Stats, Underlay};
use crate::afpacket::kernel::{self, IngressDropState, IsolateOptions, Isolation};
use crate::afpacket::{FrameMeta, PacketSocket, RingConfig, VnetHdr};
use crate::config::{Config, FastPathMode, RouterSection};
use crate::fastpath::{FastPath, FastPathCounters, FastPathInterface, XdpMode};

/// Ring blocks read per interface per turn before timers, apps and compilations are served.
const MAX_BLOCKS_PER_TURN: usize = 4;

/// How often, at most, the fast path's neighbour map is brought up to date with the ARP
/// table while frames flow, and at least while idle.
const FAST_PATH_SYNC_BUSY: Duration = Duration::from_millis(10);
const FAST_PATH_SYNC_IDLE: Duration = Duration::from_secs(1);

/// Router mode's counters.
#[derive(Debug, Clone, Default)]
pub struct RouterStats {
    /// The router core's counters (forwarded, ARP, ICMP, drops by reason).
    pub router: RouterCounters,
    /// Per owned interface, in config order.
    pub interfaces: Vec<InterfaceStats>,
    /// Node datagrams the router could not send (no route, ARP queue full, …; the router's
    /// drop counters say why).
    pub node_datagrams_dropped: u64,
    /// Node datagrams to IPv6 endpoints, which router mode cannot send.
    pub ipv6_dropped: u64,
    /// The XDP fast path, when `fast_path = "xdp"`.
    pub fast_path: Option<FastPathStats>,
}

/// What the XDP fast path did.
#[derive(Debug, Clone, Default)]
pub struct FastPathStats {
    /// Frames forwarded in XDP, passed to the userspace router, refused by the devmap.
    pub counters: FastPathCounters,
    /// Neighbours in its map (the router's reachable ARP entries).
    pub neighbours: usize,
    /// Per owned interface, in config order: native or generic XDP.
    pub modes: Vec<XdpMode>,
    /// Updates of the neighbour map, and failed attempts (logged).
    pub neighbour_updates: u64,
    /// Neighbour-map syncs that failed (the map keeps its previous contents).
    pub sync_errors: u64,
}

/// One owned interface's driver counters.
#[derive(Debug, Clone, Default)]
pub struct InterfaceStats {
    /// The interface.
    pub name: String,
    /// Frames the kernel offered to the ring (`PACKET_STATISTICS` tp_packets).
    pub kernel_frames: u64,
    /// Frames the kernel dropped because the ring was full (tp_drops): overload.
    pub ring_drops: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// Frames dropped at transmit (batch full, device busy).
    pub tx_dropped: u64,
    /// GSO/GRO super-frames received (several TCP segments or UDP datagrams in one frame,
    /// as a host's stack sends them over a veth): forwarded whole, segmented by the kernel.
    pub gso_frames: u64,
    /// Frames received with their TCP/UDP checksum left to offload (`CHECKSUM_PARTIAL`):
    /// passed on with that state, or completed by the router where they lose it.
    pub partial_checksums: u64,
    /// Of those, completed in software by the driver (only when the socket has no
    /// `PACKET_VNET_HDR` to pass the state on).
    pub checksums_completed: u64,
    /// Frames the transmit batch refused even after a flush (longer than 64 KiB).
    pub tx_refused: u64,
}

/// The owned interfaces, their kernel isolation, and the router.
pub(super) struct RouterIo {
    ports: Vec<AsyncFd<PacketSocket>>,
    router: Router,
    local: SocketAddr,
    /// Frames forwarded back out of the interface they came in on, staged while that
    /// interface's ring is being read, with their offload state.
    hairpin: Vec<u8>,
    hairpin_lens: Vec<(usize, VnetHdr)>,
    /// Per interface: frames its transmit batch refused (see [`InterfaceStats::tx_refused`]).
    tx_refused: Vec<u64>,
    stats: RouterStats,
    /// The XDP fast path and when its neighbour map was last synced.
    fast: Option<(FastPath, Duration)>,
    // Restored (sysctls, tc ingress) when the node stops; dropped after the sockets.
    _isolation: Vec<Isolation>,
}

impl RouterIo {
    /// Take the interfaces from the kernel, open their rings, build the router.
    pub(super) fn open(cfg: &Config, r: &RouterSection) -> anyhow::Result<RouterIo> {
        let mut isolation = Vec::with_capacity(r.interfaces.len());
        let mut ports = Vec::with_capacity(r.interfaces.len());
        let mut interfaces = Vec::with_capacity(r.interfaces.len());
        let opts = IsolateOptions {
            ingress_drop: r.kernel_ingress_drop,
        };
        for i in &r.interfaces {
            let iso = kernel::isolate_with(&i.name, &opts)
                .with_context(|| format!("router interface {}", i.name))?;
            if let Some((a, len)) = iso.kernel_ipv4_addrs().first() {
                bail!(
                    "router interface {}: the kernel has the address {a}/{len} on it, so it would \
                     answer ARP and ICMP too; remove it (ip addr flush dev {}) — the router owns \
                     {}/{} from its config",
                    i.name,
                    i.name,
                    i.address,
                    i.prefix_len
                );
            }
            if let IngressDropState::Unavailable(why) = iso.ingress_drop() {
                warn!(interface = %i.name, "kernel_ingress_drop unavailable: {why}");
            }
            isolation.push(iso);
            let open = |ring: &RingConfig| {
                PacketSocket::open(&i.name, ring)
                    .with_context(|| format!("router interface {}", i.name))
            };
            // Transmit batches take frames up to 64 KiB (super-frames), so any MTU fits.
            let sock = open(&RingConfig::default())?;
            let mtu = i.mtu.unwrap_or_else(|| sock.mtu());
            interfaces.push(Interface {
                name: i.name.clone(),
                mac: sock.mac(),
                addr: i.address,
                prefix_len: i.prefix_len,
                mtu,
            });
            ports.push(sock.into_async_fd()?);
        }
        let mut routes: Vec<Route> = r
            .routes
            .iter()
            .map(|rt| Route {
                dst: rt.dst,
                prefix_len: rt.prefix_len,
                via: Some(rt.via),
            })
            .collect();
        if r.import_kernel_routes {
            routes.extend(kernel_routes(r, &routes)?);
        }
        let limits = r.router_limits();
        let router = Router::new(RouterConfig {
            interfaces,
            routes,
            capsule_port: r.capsule_port,
            limits,
        })
        .context("router configuration")?;
        for (i, p) in r.interfaces.iter().zip(&ports) {
            let m = p.get_ref().mac();
            let mac = format!(
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            );
            info!(interface = %i.name, %mac, address = %i.address, "interface owned");
        }
        let fast = match r.fast_path {
            FastPathMode::None => None,
            FastPathMode::Xdp => Some(open_fast_path(&router, &ports, r)?),
        };
        let stats = RouterStats {
            fast_path: fast.as_ref().map(|f: &FastPath| FastPathStats {
                modes: f.attached().map(|(_, m)| m).collect(),
                ..FastPathStats::default()
            }),
            interfaces: r
                .interfaces
                .iter()
                .map(|i| InterfaceStats {
                    name: i.name.clone(),
                    ..InterfaceStats::default()
                })
                .collect(),
            ..RouterStats::default()
        };
        Ok(RouterIo {
            ports,
            router,
            local: cfg.node.listen,
            hairpin: Vec::new(),
            hairpin_lens: Vec::new(),
            tx_refused: vec![0; r.interfaces.len()],
            stats,
            fast: fast.map(|f| (f, Duration::ZERO)),
            _isolation: isolation,
        })
    }

    /// Bring the fast path's neighbour map up to date with the ARP table (its reachable
    /// entries), at most every `every`.
    fn sync_fast_path(&mut self, now: Duration, every: Duration) {
        let Some((fast, last)) = &mut self.fast else {
            return;
        };
        if now.saturating_sub(*last) < every && *last != Duration::ZERO {
            return;
        }
        *last = now.max(Duration::from_nanos(1));
        let reachable = self
            .router
            .neighbours(now)
            .filter(|n| n.state == ants_router::NeighbourState::Reachable)
            .filter_map(|n| Some((n.ip, n.iface, n.mac?)));
        let Some(s) = self.stats.fast_path.as_mut() else {
            return;
        };
        match fast.sync_neighbours(reachable) {
            Ok(n) => s.neighbour_updates += n as u64,
            Err(e) => {
                s.sync_errors += 1;
                warn!("fast path: {e}");
            }
        }
    }

    /// Read up to [`MAX_BLOCKS_PER_TURN`] blocks of interface `i`; `true` if more wait.
    fn receive_from(&mut self, i: usize, now: Duration, driver: &mut Driver) -> bool {
        let (before, rest) = self.ports.split_at_mut(i);
        let Some((cur, after)) = rest.split_first_mut() else {
            return false;
        };
        let router = &mut self.router;
        let (hairpin, lens) = (&mut self.hairpin, &mut self.hairpin_lens);
        let refused = &mut self.tx_refused;
        let mut egress = |iface: usize, frame: &[u8], vnet: &VnetHdr| {
            let port = match iface.cmp(&i) {
                std::cmp::Ordering::Less => before.get_mut(iface),
                std::cmp::Ordering::Greater => after.get_mut(iface - i - 1),
                std::cmp::Ordering::Equal => {
                    hairpin.extend_from_slice(frame);
                    lens.push((frame.len(), *vnet));
                    return;
                }
            };
            if let (Some(p), Some(n)) = (port, refused.get_mut(iface)) {
                queue(p.get_mut(), frame, vnet, n);
            }
        };
        let stats = &mut self.stats.interfaces[i];
        cur.get_mut()
            .recv_blocks_meta(MAX_BLOCKS_PER_TURN, |frame, meta| {
                let offload = offload_of(frame, &meta, stats);
                match router.handle_frame_with(now, i, frame, offload) {
                    Verdict::Forward { iface } => egress(iface, frame, &meta.vnet.for_transmit()),
                    Verdict::Capsule {
                        from,
                        payload,
                        segment,
                        ..
                    } => {
                        let from = SocketAddr::V4(from);
                        let data = frame.get(payload).unwrap_or_default();
                        match segment {
                            None => driver.datagram(now, from, data),
                            Some(n) => {
                                for d in data.chunks(usize::from(n.get())) {
                                    driver.datagram(now, from, d);
                                }
                            }
                        }
                    }
                    Verdict::Done => {}
                }
            });
        let more = cur.get_ref().rx_ready();
        let mut at = 0;
        for (len, vnet) in self.hairpin_lens.drain(..) {
            queue(
                cur.get_mut(),
                &self.hairpin[at..at + len],
                &vnet,
                &mut self.tx_refused[i],
            );
            at += len;
        }
        self.hairpin.clear();
        more
    }

    /// The node's datagrams through the router, the router's frames onto the interfaces,
    /// then every batch out.
    fn send_all(&mut self, driver: &mut Driver) {
        let now = driver.now();
        let (router, stats) = (&mut self.router, &mut self.stats);
        driver.drain_transmits(usize::MAX, |to, bytes| match to {
            SocketAddr::V4(to) => {
                if !router.send_udp(now, to, bytes) {
                    stats.node_datagrams_dropped += 1;
                }
            }
            SocketAddr::V6(_) => stats.ipv6_dropped += 1,
        });
        let (ports, refused) = (&mut self.ports, &mut self.tx_refused);
        self.router.drain_transmits(|iface, frame| {
            if let (Some(p), Some(n)) = (ports.get_mut(iface), refused.get_mut(iface)) {
                queue(p.get_mut(), frame, &VnetHdr::NONE, n);
            }
        });
        for p in &mut self.ports {
            if let Err(e) = p.get_mut().flush() {
                warn!(interface = p.get_ref().ifname(), "transmit error: {e}");
            }
        }
    }
}

/// The router's view of a received frame's offload state, counted per interface. Without
/// `PACKET_VNET_HDR` a partial checksum cannot be passed on, so it is completed here.
fn offload_of(frame: &mut [u8], meta: &FrameMeta, stats: &mut InterfaceStats) -> Offload {
    let gso = meta.vnet.is_gso();
    stats.gso_frames += u64::from(gso);
    if meta.vnet.needs_csum() {
        stats.partial_checksums += 1;
    } else if meta.csum_not_ready {
        stats.partial_checksums += 1;
        if complete_l4_checksum(frame) {
            stats.checksums_completed += 1;
        }
    }
    Offload {
        gso_size: gso.then_some(meta.vnet.gso_size),
        csum_partial: meta.vnet.needs_csum(),
    }
}

/// Load the XDP fast path with the router's tables and attach it to every owned interface.
fn open_fast_path(
    router: &Router,
    ports: &[AsyncFd<PacketSocket>],
    r: &RouterSection,
) -> anyhow::Result<FastPath> {
    let ifaces: Vec<FastPathInterface> = ports
        .iter()
        .zip(router.interfaces())
        .map(|(p, i)| FastPathInterface {
            ifindex: p.get_ref().ifindex(),
            mac: i.mac,
            mtu: i.mtu,
        })
        .collect();
    let mut fast = FastPath::load(
        &ifaces,
        &router.route_entries(),
        &router.non_unicast_prefixes(),
    )
    .context("fast_path = \"xdp\"")?;
    let modes = fast.attach().context("fast_path = \"xdp\"")?;
    for (i, mode) in r.interfaces.iter().zip(modes) {
        info!(interface = %i.name, ?mode, "XDP fast path attached");
    }
    Ok(fast)
}

/// Queue `frame` with its offload state on `port`, flushing first when its batch has no room;
/// counts a refusal.
fn queue(port: &mut PacketSocket, frame: &[u8], vnet: &VnetHdr, refused: &mut u64) {
    if port.queue_vnet(frame, vnet) {
        return;
    }
    if !port.tx().is_empty() {
        if let Err(e) = port.flush() {
            warn!(interface = port.ifname(), "transmit error: {e}");
        }
        if port.queue_vnet(frame, vnet) {
            return;
        }
    }
    *refused += 1;
}

/// The kernel's routes whose gateway lies on an owned interface and whose prefix the config
/// does not already route.
fn kernel_routes(r: &RouterSection, configured: &[Route]) -> anyhow::Result<Vec<Route>> {
    let mut out = Vec::new();
    for k in kernel::kernel_routes().context("import_kernel_routes: dumping the kernel routes")? {
        let Some(via) = k.gateway.filter(|g| *g != Ipv4Addr::UNSPECIFIED) else {
            continue; // connected routes: the interfaces' own subnets already are
        };
        let known = configured
            .iter()
            .chain(&out)
            .any(|c| c.dst == k.destination && c.prefix_len == k.prefix_len);
        if known || r.interface_for(via).is_none() {
            continue;
        }
        info!(route = %format_args!("{}/{} via {via}", k.destination, k.prefix_len), "kernel route imported");
        out.push(Route {
            dst: k.destination,
            prefix_len: k.prefix_len,
            via: Some(via),
        });
    }
    Ok(out)
}

impl Underlay for RouterIo {
    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    async fn readable(&mut self) -> std::io::Result<()> {
        let ports = &self.ports;
        poll_fn(|cx| {
            for p in ports {
                match p.poll_read_ready(cx) {
                    Poll::Ready(Ok(mut guard)) => {
                        // Cleared now; `receive` reads until the ring is empty or says there
                        // is more, and the loop then comes back without waiting.
                        guard.clear_ready();
                        return Poll::Ready(Ok(()));
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            }
            Poll::Pending
        })
        .await
    }

    async fn receive(&mut self, driver: &mut Driver) -> bool {
        let now = driver.now();
        self.sync_fast_path(now, FAST_PATH_SYNC_BUSY);
        let mut more = false;
        for i in 0..self.ports.len() {
            more |= self.receive_from(i, now, driver);
            // Capsules may have produced transmits: send them with this interface's batch.
            self.send_all(driver);
        }
        more
    }

    async fn flush(&mut self, driver: &mut Driver) {
        self.send_all(driver);
    }

    fn poll_timeout(&self) -> Option<Duration> {
        let sync = self
            .fast
            .as_ref()
            .map(|(_, last)| *last + FAST_PATH_SYNC_IDLE);
        match (self.router.poll_timeout(), sync) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn handle_timeout(&mut self, now: Duration) {
        self.router.handle_timeout(now);
        self.sync_fast_path(now, FAST_PATH_SYNC_IDLE);
    }

    fn stats(&mut self, stats: &mut Stats) {
        self.stats.router = self.router.counters().clone();
        for (s, p) in self.stats.interfaces.iter_mut().zip(&mut self.ports) {
            let p = p.get_mut();
            if let Ok((frames, drops)) = p.stats() {
                (s.kernel_frames, s.ring_drops) = (frames, drops);
            }
            s.tx_frames = p.tx().sent();
            s.tx_dropped = p.tx_dropped();
        }
        for (s, n) in self.stats.interfaces.iter_mut().zip(&self.tx_refused) {
            s.tx_refused = *n;
        }
        if let (Some((fast, _)), Some(s)) = (&self.fast, self.stats.fast_path.as_mut()) {
            if let Ok(c) = fast.counters() {
                s.counters = c;
            }
            s.neighbours = fast.neighbours();
        }
        stats.router = Some(self.stats.clone());
    }
}
