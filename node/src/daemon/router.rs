//! Router mode's underlay: AF_PACKET rings or AF_XDP sockets on the owned interfaces
//! ([`crate::afpacket::PacketSocket`], [`crate::afxdp::XskSocket`]) with the sans-IO IPv4
//! router ([`ants_router::Router`]) in front of the node core.
//!
//! Per turn, for each interface: visit its received frames in place; the router rewrites a
//! frame to forward it (AF_XDP: sent from the UMEM frame it arrived in; AF_PACKET: copied
//! into the egress interface's transmit batch), answers or holds it (its own transmit queue),
//! or hands a capsule's UDP payload to the node. Then the router's queued frames go out, the
//! node's transmits become IPv4/UDP frames built by [`ants_router::Router::send_udp_to`]
//! straight into the egress port's batch (a free UMEM frame, an AF_PACKET batch slot), and
//! every batch goes out with one `sendmmsg` or `sendto` kick. No syscall per packet.

use std::future::poll_fn;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use ants_router::{
    FrameSink, Interface, Offload, Route, Router, RouterConfig, RouterCounters, Verdict,
    complete_l4_checksum, l4_checksum_is_pseudo_header,
};
use anyhow::{Context, bail};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{Driver, Stats, Underlay};
use crate::afpacket::kernel::{self, IngressDropState, IsolateOptions, Isolation};
use crate::afpacket::{FrameMeta, PacketSocket, PacketType, RingConfig, VnetHdr};
use crate::afxdp::{NapiDeferral, Umem, XskConfig, XskFrame, XskSocket};
use crate::config::{BusyPoll, Datapath, FastPathMode, RouterSection};
use crate::fastpath::{FastPath, FastPathCounters, FastPathInterface, ProgramOptions, XdpMode};

/// Ring blocks read per interface per turn before timers, apps and compilations are served.
const MAX_BLOCKS_PER_TURN: usize = 4;
/// Frames read per AF_XDP socket per turn (about what 4 AF_PACKET blocks hold at 64 B).
const MAX_XSK_FRAMES_PER_TURN: u32 = 1024;
/// Frames one busy poll of an AF_XDP socket's queue receives at most (NAPI's usual weight).
const XSK_BUSY_POLL_BUDGET: u16 = 64;
/// `busy_poll = "overload"`: turns in a row that find a receive ring at least half full
/// before a worker asks for busy polling, and how long its polls must keep bringing less
/// than a full budget before it lets go.
const OVERLOAD_TURNS: u32 = 4;
const OVERLOAD_CALM: Duration = Duration::from_millis(100);

/// One owned interface's socket: an AF_PACKET ring, or an AF_XDP socket.
enum Port {
    Packet(AsyncFd<PacketSocket>),
    Xsk(AsyncFd<XskSocket>),
}

impl Port {
    fn ifname(&self) -> &str {
        match self {
            Port::Packet(p) => p.get_ref().ifname(),
            Port::Xsk(x) => x.get_ref().ifname(),
        }
    }

    /// `true` when a received frame can leave another port of this worker by its
    /// descriptor (AF_XDP, one UMEM), rather than by a copy.
    fn sends_in_place(&self) -> bool {
        matches!(self, Port::Xsk(_))
    }

    /// Visit this turn's received frames with what is known about each. `f` may answer with
    /// the interface to send a frame out of in place: an AF_XDP port then keeps it in `keep`
    /// for [`send_kept`]; a packet port never does, so there `f` copies what it forwards.
    fn recv(
        &mut self,
        umem: Option<&mut Umem>,
        keep: &mut Vec<(usize, XskFrame)>,
        mut f: impl FnMut(&mut [u8], FrameMeta) -> Option<usize>,
    ) {
        match (self, umem) {
            (Port::Packet(p), _) => {
                p.get_mut()
                    .recv_blocks_meta(MAX_BLOCKS_PER_TURN, |frame, meta| {
                        f(frame, meta);
                    });
            }
            // Not made: every AF_XDP worker has its UMEM (`RouterIo::start`).
            (Port::Xsk(_), None) => {}
            (Port::Xsk(x), Some(umem)) => {
                x.get_mut()
                    .recv(umem, MAX_XSK_FRAMES_PER_TURN, keep, |frame| {
                        // AF_XDP carries no offload state: a checksum left to offload by a local
                        // stack is recognised by its value (see `offload_of`).
                        let meta = FrameMeta {
                            pkt_type: PacketType::Host,
                            csum_not_ready: l4_checksum_is_pseudo_header(frame),
                            csum_valid: false,
                            vlan_tci: None,
                            vnet: VnetHdr::NONE,
                        };
                        f(frame, meta)
                    });
            }
        }
    }

    /// With busy polling: run the interface's receive work once in this thread; `true` if
    /// frames are then waiting.
    fn busy_poll(&mut self) -> bool {
        match self {
            Port::Packet(_) => false,
            Port::Xsk(x) => x.get_mut().busy_poll(),
        }
    }

    fn rx_ready(&self) -> bool {
        match self {
            Port::Packet(p) => p.get_ref().rx_ready(),
            Port::Xsk(x) => x.get_ref().rx_ready(),
        }
    }

    /// Queue a `len`-byte frame with its offload state, written by `build` into the
    /// transmit batch (every byte: the slot may hold an older frame); `false`, and `build`
    /// not called, when there is no room.
    fn queue_with(
        &mut self,
        umem: Option<&mut Umem>,
        len: usize,
        vnet: &VnetHdr,
        build: impl FnOnce(&mut [u8]),
    ) -> bool {
        match (self, umem) {
            (Port::Packet(p), _) => p.get_mut().queue_with(len, vnet, build),
            // Frames from an AF_XDP socket carry no offload state (completed on receive).
            (Port::Xsk(x), Some(umem)) => {
                *vnet == VnetHdr::NONE && x.get_mut().queue_with(umem, len, build)
            }
            (Port::Xsk(_), None) => false,
        }
    }

    fn has_queued(&self) -> bool {
        match self {
            Port::Packet(p) => !p.get_ref().tx().is_empty(),
            Port::Xsk(x) => x.get_ref().pending() > 0,
        }
    }

    fn flush(&mut self, umem: Option<&mut Umem>) -> std::io::Result<()> {
        match (self, umem) {
            (Port::Packet(p), _) => p.get_mut().flush().map(drop),
            (Port::Xsk(x), Some(umem)) => x.get_mut().flush(umem).map(drop),
            (Port::Xsk(_), None) => Ok(()),
        }
    }

    fn poll_read_ready(&self, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
        match self {
            Port::Packet(p) => p.poll_read_ready(cx).map_ok(|mut g| g.clear_ready()),
            Port::Xsk(x) => x.poll_read_ready(cx).map_ok(|mut g| g.clear_ready()),
        }
    }

    /// Bring `s`'s kernel-side (frames offered, dropped for overload), transmit (sent, in
    /// place, dropped) and busy-poll counters up to date.
    fn counters(&mut self, s: &mut InterfaceStats) {
        match self {
            Port::Packet(p) => {
                let p = p.get_mut();
                (s.kernel_frames, s.ring_drops) = p.stats().unwrap_or((0, 0));
                (s.tx_frames, s.tx_dropped) = (p.tx().sent(), p.tx_dropped());
            }
            Port::Xsk(x) => {
                let x = x.get_ref().stats();
                (s.kernel_frames, s.ring_drops) = (x.rx_frames + x.rx_dropped, x.rx_dropped);
                (s.tx_frames, s.tx_in_place, s.tx_dropped) =
                    (x.tx_frames, x.tx_forwarded, x.tx_refused);
                s.busy_polls = x.busy_polls;
            }
        }
    }
}

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
    /// With several workers: ARP frames copied to sibling workers' routers, and copies
    /// dropped because a sibling's queue was full.
    pub arp_shared: u64,
    pub arp_share_dropped: u64,
}

impl RouterStats {
    /// Add another worker's counters (interfaces by position; the fast path is worker 0's).
    pub fn merge(&mut self, o: RouterStats) {
        let RouterStats {
            router,
            interfaces,
            node_datagrams_dropped,
            ipv6_dropped,
            fast_path,
            arp_shared,
            arp_share_dropped,
        } = o;
        self.router.add(&router);
        for (mine, i) in self.interfaces.iter_mut().zip(interfaces) {
            mine.add(&i);
        }
        self.node_datagrams_dropped += node_datagrams_dropped;
        self.ipv6_dropped += ipv6_dropped;
        if self.fast_path.is_none() {
            self.fast_path = fast_path;
        }
        self.arp_shared += arp_shared;
        self.arp_share_dropped += arp_share_dropped;
    }
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

/// One owned interface's driver counters (in the stats JSON under their field names).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct InterfaceStats {
    /// The interface.
    pub name: String,
    /// Frames the kernel offered to the ring (`PACKET_STATISTICS` tp_packets).
    pub kernel_frames: u64,
    /// Frames the kernel dropped because the ring was full (tp_drops): overload.
    pub ring_drops: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// AF_XDP: of `tx_frames`, frames that left from the UMEM frame they were received in
    /// (forwarded by descriptor, no copy).
    pub tx_in_place: u64,
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
    /// AF_XDP with `busy_poll_us`: times the router thread ran the queue's receive work
    /// itself (0: the kernel drives it).
    pub busy_polls: u64,
    /// With `busy_poll = "overload"`: times a worker found the interface's receive ring
    /// filling up and started busy polling it.
    pub busy_poll_activations: u64,
}

impl InterfaceStats {
    /// Add another worker's counters for the same interface.
    fn add(&mut self, o: &InterfaceStats) {
        let InterfaceStats {
            name: _,
            kernel_frames,
            ring_drops,
            tx_frames,
            tx_in_place,
            tx_dropped,
            gso_frames,
            partial_checksums,
            checksums_completed,
            tx_refused,
            busy_polls,
            busy_poll_activations,
        } = o;
        self.kernel_frames += kernel_frames;
        self.ring_drops += ring_drops;
        self.tx_frames += tx_frames;
        self.tx_in_place += tx_in_place;
        self.tx_dropped += tx_dropped;
        self.gso_frames += gso_frames;
        self.partial_checksums += partial_checksums;
        self.checksums_completed += checksums_completed;
        self.tx_refused += tx_refused;
        self.busy_polls += busy_polls;
        self.busy_poll_activations += busy_poll_activations;
    }
}

/// An owned interface's socket before a worker's runtime takes it.
enum RawPort {
    Packet(PacketSocket),
    Xsk(XskSocket),
}

impl RawPort {
    fn into_port(self) -> std::io::Result<Port> {
        Ok(match self {
            RawPort::Packet(p) => Port::Packet(p.into_async_fd()?),
            RawPort::Xsk(x) => Port::Xsk(x.into_async_fd()?),
        })
    }
}

/// What a node's workers share of its interfaces: the kernel isolation and NAPI settings,
/// restored when the last worker lets go (after its sockets).
struct Held {
    _isolation: Vec<Isolation>,
    _napi: Vec<Option<Arc<NapiDeferral>>>,
}

/// A worker's busy polling of one AF_XDP interface: the interface's deferral (shared by the
/// workers), and with `busy_poll = "overload"` whether this worker wants it now.
struct BusyPolling {
    napi: Arc<NapiDeferral>,
    mode: BusyPoll,
    /// This worker's vote is in (`Overload`; `Always` votes once, at the start).
    voted: bool,
    /// Turns in a row that found the receive ring filling up, and when one last did.
    behind_turns: u32,
    last_behind: Duration,
}

impl BusyPolling {
    /// `busy_poll = "overload"`: ask for the deferral after [`OVERLOAD_TURNS`] turns behind,
    /// let go after [`OVERLOAD_CALM`] without one.
    fn decide(&mut self, now: Duration, s: &mut InterfaceStats) {
        let want = if self.voted {
            now.saturating_sub(self.last_behind) < OVERLOAD_CALM
        } else {
            self.behind_turns >= OVERLOAD_TURNS
        };
        if want == self.voted {
            return;
        }
        match self.napi.vote(want) {
            Ok(()) => {
                self.voted = want;
                self.behind_turns = 0;
                if want {
                    s.busy_poll_activations += 1;
                }
                info!(
                    interface = s.name,
                    "busy polling {}",
                    if want {
                        "on: the receive ring is filling up"
                    } else {
                        "off: receive keeps up"
                    }
                );
            }
            Err(e) => {
                // Try again after another while (the timer must not fire at once again).
                (self.behind_turns, self.last_behind) = (0, now);
                warn!(interface = s.name, "busy polling switch failed: {e}");
            }
        }
    }

    /// When [`decide`](Self::decide) may let go.
    fn calm_at(&self) -> Option<Duration> {
        (self.mode == BusyPoll::Overload && self.voted).then_some(self.last_behind + OVERLOAD_CALM)
    }
}

/// ARP frames one worker's router shares with the others' (`Router::handle_sibling_arp`):
/// what it received and kept, and the broadcast requests it sent. With several workers a
/// reply may reach a worker that did not ask; this is how it reaches the one that did.
struct Siblings {
    to: Vec<mpsc::Sender<ArpCopy>>,
    from: mpsc::Receiver<ArpCopy>,
    /// Received by `readable`, not yet given to the router.
    pending: Vec<ArpCopy>,
    /// Frames shared, and frames not shared because a sibling's queue was full.
    shared: u64,
    dropped: u64,
}

/// An ARP frame (Ethernet and ARP headers, no padding) and the interface it concerns.
#[derive(Clone, Copy)]
struct ArpCopy {
    iface: usize,
    frame: [u8; ARP_FRAME_LEN],
}

/// Ethernet + ARP for IPv4 over Ethernet.
const ARP_FRAME_LEN: usize = 42;
/// ARP frames one worker's queue from its siblings holds; more are dropped and counted.
const SIBLING_QUEUE: usize = 256;
/// Sibling frames a worker handles per turn.
const SIBLING_FRAMES_PER_TURN: usize = 256;

impl Siblings {
    /// One set per worker, each sending to every other.
    fn mesh(workers: usize) -> Vec<Siblings> {
        let (txs, rxs): (Vec<_>, Vec<_>) =
            (0..workers).map(|_| mpsc::channel(SIBLING_QUEUE)).unzip();
        rxs.into_iter()
            .enumerate()
            .map(|(me, from)| Siblings {
                to: txs
                    .iter()
                    .enumerate()
                    .filter(|&(w, _)| w != me)
                    .map(|(_, t)| t.clone())
                    .collect(),
                from,
                pending: Vec::new(),
                shared: 0,
                dropped: 0,
            })
            .collect()
    }

    /// Share `frame` (if it is ARP) from interface `iface` with every sibling.
    fn share(&mut self, iface: usize, frame: &[u8]) {
        if self.to.is_empty() || !is_arp(frame) {
            return;
        }
        let Some(bytes) = frame.get(..ARP_FRAME_LEN) else {
            return;
        };
        let mut copy = ArpCopy {
            iface,
            frame: [0; ARP_FRAME_LEN],
        };
        copy.frame.copy_from_slice(bytes);
        for t in &self.to {
            match t.try_send(copy) {
                Ok(()) => self.shared += 1,
                Err(_) => self.dropped += 1,
            }
        }
    }
}

/// An Ethernet frame carrying ARP.
fn is_arp(frame: &[u8]) -> bool {
    frame.get(12..14) == Some(&[0x08, 0x06][..])
}

/// One worker's share of router mode, made before any worker runs (on the thread that may
/// then drop privileges): its sockets — an AF_PACKET socket per interface in a fanout group
/// with the other workers', or the AF_XDP socket of its receive queue — and its router.
pub(super) struct RouterParts {
    ports: Vec<RawPort>,
    /// AF_XDP: the frames the worker's sockets share.
    umem: Option<Umem>,
    /// Per interface, with `busy_poll_us`: its NAPI deferral (shared by the workers).
    napi: Vec<Option<Arc<NapiDeferral>>>,
    busy_poll: BusyPoll,
    router: Router,
    stats: RouterStats,
    fast: Option<FastPath>,
    siblings: Siblings,
    held: Arc<Held>,
}

/// The owned interfaces, their kernel isolation, and the router.
pub(super) struct RouterIo {
    ports: Vec<Port>,
    /// AF_XDP: the frames `ports` share (dropped after them).
    umem: Option<Umem>,
    /// AF_XDP: frames received this turn that leave in place, with their egress interface.
    kept: Vec<(usize, XskFrame)>,
    /// Per interface, with `busy_poll_us`: when this worker drives its receive work.
    busy: Vec<Option<BusyPolling>>,
    router: Router,
    /// Frames forwarded back out of the interface they came in on, staged while that
    /// interface's ring is being read, with their offload state.
    hairpin: Vec<u8>,
    hairpin_lens: Vec<(usize, VnetHdr)>,
    /// Per interface: frames its transmit batch refused (see [`InterfaceStats::tx_refused`]).
    tx_refused: Vec<u64>,
    stats: RouterStats,
    /// The XDP fast path (worker 0's) and when its neighbour map was last synced.
    fast: Option<(FastPath, Duration)>,
    siblings: Siblings,
    // Restored (sysctls, tc ingress, NAPI deferral) when the last worker stops; dropped
    // after the sockets.
    _held: Arc<Held>,
}

/// Take the interfaces from the kernel and open them for `workers` workers: the first
/// worker's parts first. AF_PACKET: one socket per worker and interface, in a hash fanout
/// group (a flow's frames reach one worker). AF_XDP: worker `w` serves receive queue `w`,
/// so every interface must have exactly `workers` receive queues.
pub(super) fn open(r: &RouterSection, workers: usize) -> anyhow::Result<Vec<RouterParts>> {
    let workers = workers.max(1);
    let mut isolation = Vec::with_capacity(r.interfaces.len());
    let mut ports: Vec<Vec<RawPort>> = (0..workers).map(|_| Vec::new()).collect();
    let xsk_config = XskConfig::default();
    let mut umems = match r.datapath {
        Datapath::AfPacket => Vec::new(),
        Datapath::AfXdp => {
            let sockets = u32::try_from(r.interfaces.len()).unwrap_or(u32::MAX);
            (0..workers)
                .map(|_| Umem::new(&xsk_config, sockets).context("router datapath = \"afxdp\""))
                .collect::<anyhow::Result<Vec<_>>>()?
        }
    };
    let mut interfaces = Vec::with_capacity(r.interfaces.len());
    let mut ifindexes = Vec::with_capacity(r.interfaces.len());
    let mut napi = Vec::new();
    let opts = IsolateOptions {
        ingress_drop: r.kernel_ingress_drop,
    };
    for i in &r.interfaces {
        let iso = kernel::isolate_with(&i.name, &opts)
            .map_err(needs_privilege)
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
        // Transmit batches take frames up to 64 KiB (super-frames), so any MTU fits.
        let open_packet = || {
            PacketSocket::open(&i.name, &RingConfig::default())
                .map_err(needs_privilege)
                .with_context(|| format!("router interface {}", i.name))
        };
        let sock = open_packet()?;
        let (mtu, ifindex) = (i.mtu.unwrap_or_else(|| sock.mtu()), sock.ifindex());
        let mac = sock.mac();
        // From the driver, through the socket (so about its namespace); `/sys` otherwise.
        let queues = sock
            .rx_queues()
            .map_or_else(|| rx_queues(&i.name), |n| n as usize);
        interfaces.push(Interface {
            name: i.name.clone(),
            mac,
            addr: i.address,
            prefix_len: i.prefix_len,
            mtu,
        });
        ifindexes.push(ifindex);
        match r.datapath {
            Datapath::AfPacket => {
                let mut socks = vec![sock];
                if workers > 1 {
                    let group = socks[0].join_fanout(None)?;
                    for _ in 1..workers {
                        let s = open_packet()?;
                        s.join_fanout(Some(group))?;
                        socks.push(s);
                    }
                }
                for (w, s) in socks.into_iter().enumerate() {
                    ports[w].push(RawPort::Packet(s));
                }
            }
            Datapath::AfXdp => {
                // The packet socket only told us the link's facts.
                drop(sock);
                // One socket per worker, worker w on queue w: frames another queue received
                // would reach neither a socket nor the kernel (isolated), so refuse rather
                // than lose them.
                if queues != workers {
                    bail!(
                        "router interface {}: datapath = \"afxdp\" serves one receive queue \
                         per worker, and the interface has {queues} for {workers} worker(s); \
                         set [node] workers = {queues}, or give it {workers} queue(s) (ethtool \
                         -L {} combined {workers}; a veth: numrxqueues {workers} numtxqueues \
                         {workers} when created), or use datapath = \"afpacket\"",
                        i.name,
                        i.name
                    );
                }
                let us = Duration::from_micros(u64::from(r.busy_poll_us));
                let mut deferral = if r.busy_poll_us > 0 {
                    match NapiDeferral::open(&i.name, ifindex, mac, us) {
                        Ok(d) => Some(d),
                        Err(e) => {
                            busy_poll_unavailable(&i.name, &e);
                            None
                        }
                    }
                } else {
                    None
                };
                for ((w, worker_ports), umem) in ports.iter_mut().enumerate().zip(&mut umems) {
                    let queue = u32::try_from(w).unwrap_or(u32::MAX);
                    let mut xsk = XskSocket::open(&i.name, ifindex, queue, &xsk_config, umem)
                        .with_context(|| format!("router interface {} queue {queue}", i.name))?;
                    if deferral.is_some()
                        && let Err(e) = xsk.prefer_busy_poll(XSK_BUSY_POLL_BUDGET)
                    {
                        busy_poll_unavailable(&i.name, &e);
                        deferral = None;
                    }
                    // The largest frame: MTU + Ethernet header + a VLAN tag.
                    if usize::from(mtu) + 18 > xsk.max_rx_frame() {
                        bail!(
                            "router interface {}: MTU {mtu} does not fit an AF_XDP frame; use \
                             datapath = \"afpacket\"",
                            i.name
                        );
                    }
                    worker_ports.push(RawPort::Xsk(xsk));
                }
                // `always`: on from now until the node stops.
                if r.busy_poll == BusyPoll::Always
                    && let Some(d) = &deferral
                    && let Err(e) = d.vote(true)
                {
                    busy_poll_unavailable(&i.name, &e);
                    deferral = None;
                }
                napi.push(deferral.map(Arc::new));
            }
        }
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
    let config = RouterConfig {
        interfaces,
        routes,
        capsule_port: r.capsule_port,
        limits: r.router_limits(),
    };
    let router = Router::new(config.clone()).context("router configuration")?;
    for (i, info) in r.interfaces.iter().zip(router.interfaces()) {
        let m = info.mac;
        let mac = format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        );
        info!(interface = %i.name, %mac, address = %i.address, "interface owned");
    }
    let options = ProgramOptions {
        forward: r.fast_path == FastPathMode::Xdp,
        xsk: r.datapath == Datapath::AfXdp,
    };
    let mut fast = if options.forward || options.xsk {
        Some(open_xdp(&router, &ifindexes, &ports, r, options)?)
    } else {
        None
    };
    info!(
        datapath = match r.datapath {
            Datapath::AfPacket => "afpacket",
            Datapath::AfXdp => "afxdp",
        },
        fast_path = if options.forward { "xdp" } else { "none" },
        workers,
        "router datapath"
    );
    napi.resize_with(r.interfaces.len(), || None);
    let held = Arc::new(Held {
        _isolation: isolation,
        _napi: napi.clone(),
    });
    let mut routers = vec![router];
    for _ in 1..workers {
        routers.push(Router::new(config.clone()).context("router configuration")?);
    }
    let mut umems = umems.into_iter();
    let parts = ports
        .into_iter()
        .zip(routers)
        .zip(Siblings::mesh(workers))
        .map(|((ports, router), siblings)| {
            // Worker 0 keeps the XDP program, its maps and their counters.
            let fast = fast.take();
            RouterParts {
                stats: RouterStats {
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
                },
                ports,
                umem: umems.next(),
                napi: napi.clone(),
                busy_poll: r.busy_poll,
                router,
                fast,
                siblings,
                held: Arc::clone(&held),
            }
        })
        .collect();
    Ok(parts)
}

impl RouterIo {
    /// A worker's router mode on the current runtime.
    pub(super) fn start(parts: RouterParts) -> anyhow::Result<RouterIo> {
        let RouterParts {
            ports,
            umem,
            napi,
            busy_poll,
            router,
            stats,
            fast,
            siblings,
            held,
        } = parts;
        let ports = ports
            .into_iter()
            .map(RawPort::into_port)
            .collect::<std::io::Result<Vec<_>>>()?;
        if umem.is_none() && ports.iter().any(Port::sends_in_place) {
            bail!("router datapath = \"afxdp\": a worker without its UMEM");
        }
        Ok(RouterIo {
            tx_refused: vec![0; ports.len()],
            ports,
            umem,
            kept: Vec::with_capacity(MAX_XSK_FRAMES_PER_TURN as usize),
            busy: napi
                .into_iter()
                .map(|n| {
                    n.map(|napi| BusyPolling {
                        voted: busy_poll == BusyPoll::Always,
                        napi,
                        mode: busy_poll,
                        behind_turns: 0,
                        last_behind: Duration::ZERO,
                    })
                })
                .collect(),
            router,
            hairpin: Vec::new(),
            hairpin_lens: Vec::new(),
            stats,
            fast: fast.map(|f| (f, Duration::ZERO)),
            siblings,
            _held: held,
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

    /// With `busy_poll_us`: run interface `i`'s receive work in this thread while its
    /// deferral is on (`true` if frames are then waiting), and with `busy_poll =
    /// "overload"` ask for it or let go by how far behind the receive ring is.
    fn busy_poll(&mut self, i: usize, now: Duration) -> bool {
        let (Some(Some(b)), Some(port), Some(s)) = (
            self.busy.get_mut(i),
            self.ports.get_mut(i),
            self.stats.interfaces.get_mut(i),
        ) else {
            return false;
        };
        let on = b.napi.is_on();
        let polled = on && port.busy_poll();
        if b.mode != BusyPoll::Overload {
            return polled;
        }
        let Port::Xsk(x) = port else {
            return polled;
        };
        // Behind: polls that bring a full budget, or without them a ring half full.
        let (waiting, size) = x.get_ref().rx_waiting();
        let behind = if on {
            waiting >= u32::from(XSK_BUSY_POLL_BUDGET)
        } else {
            waiting >= size / 2
        };
        if behind {
            b.behind_turns = b.behind_turns.saturating_add(1);
            b.last_behind = now;
        } else {
            b.behind_turns = 0;
        }
        b.decide(now, s);
        polled
    }

    /// Let go of busy polling where receive has kept up for [`OVERLOAD_CALM`] (also while
    /// no frame comes to make a turn).
    fn busy_poll_calm(&mut self, now: Duration) {
        for (b, s) in self.busy.iter_mut().zip(&mut self.stats.interfaces) {
            if let Some(b) = b
                && b.mode == BusyPoll::Overload
            {
                b.decide(now, s);
            }
        }
    }

    /// Give the router the ARP frames its siblings shared (a bounded number per turn);
    /// `true` if more wait.
    fn sibling_frames(&mut self, now: Duration) -> bool {
        let s = &mut self.siblings;
        while s.pending.len() < SIBLING_FRAMES_PER_TURN
            && let Ok(copy) = s.from.try_recv()
        {
            s.pending.push(copy);
        }
        let more = s.pending.len() >= SIBLING_FRAMES_PER_TURN;
        for c in s.pending.drain(..) {
            self.router.handle_sibling_arp(now, c.iface, &c.frame);
        }
        more
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
            // Only packet ports copy here (AF_XDP ports keep the frame; see below).
            if let (Some(p), Some(n)) = (port, refused.get_mut(iface)) {
                queue(p, None, frame, vnet, n);
            }
        };
        let stats = &mut self.stats.interfaces[i];
        let siblings = &mut self.siblings;
        let in_place = cur.sends_in_place();
        cur.recv(self.umem.as_mut(), &mut self.kept, |frame, meta| {
            let offload = offload_of(frame, &meta, stats);
            if !siblings.to.is_empty() && is_arp(frame) {
                // A reply may answer a sibling's request: what passed the checks goes to it.
                if router.handle_arp(now, i, frame) {
                    siblings.share(i, frame);
                }
                return None;
            }
            match router.handle_frame_with(now, i, frame, offload) {
                Verdict::Forward { iface } if in_place => return Some(iface),
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
            None
        });
        let more = cur.rx_ready();
        let mut at = 0;
        for (len, vnet) in self.hairpin_lens.drain(..) {
            queue(
                cur,
                None,
                &self.hairpin[at..at + len],
                &vnet,
                &mut self.tx_refused[i],
            );
            at += len;
        }
        self.hairpin.clear();
        if let Some(umem) = &mut self.umem {
            for (iface, frame) in self.kept.drain(..) {
                match (self.ports.get_mut(iface), self.tx_refused.get_mut(iface)) {
                    (Some(Port::Xsk(x)), Some(n)) => send_kept(x.get_mut(), umem, frame, n),
                    _ => umem.release(frame),
                }
            }
        }
        more
    }

    /// The node's datagrams through the router, the router's frames onto the interfaces,
    /// then every batch out.
    fn send_all(&mut self, driver: &mut Driver) {
        let now = driver.now();
        // The router's frames first: held frames an ARP reply released must leave before
        // the same flow's newer datagrams, which go straight to the ports.
        self.send_router_frames();
        let (router, stats) = (&mut self.router, &mut self.stats);
        let mut sink = PortSink {
            ports: &mut self.ports,
            umem: self.umem.as_mut(),
            refused: &mut self.tx_refused,
        };
        driver.drain_transmits(usize::MAX, |to, bytes| match to {
            SocketAddr::V4(to) => {
                if !router.send_udp_to(now, to, bytes, &mut sink) {
                    stats.node_datagrams_dropped += 1;
                }
            }
            SocketAddr::V6(_) => stats.ipv6_dropped += 1,
        });
        // ARP requests for the datagrams' new neighbours.
        self.send_router_frames();
        for p in &mut self.ports {
            if let Err(e) = p.flush(self.umem.as_mut()) {
                warn!(interface = p.ifname(), "transmit error: {e}");
            }
        }
    }

    /// The router's queued frames (ARP, ICMP, released held frames) onto the ports.
    fn send_router_frames(&mut self) {
        let (ports, refused) = (&mut self.ports, &mut self.tx_refused);
        let (siblings, umem) = (&mut self.siblings, &mut self.umem);
        self.router.drain_transmits(|iface, frame| {
            // A new resolution (a broadcast request): the siblings expect the reply too.
            if frame.first() == Some(&0xff) {
                siblings.share(iface, frame);
            }
            if let (Some(p), Some(n)) = (ports.get_mut(iface), refused.get_mut(iface)) {
                queue(p, umem.as_mut(), frame, &VnetHdr::NONE, n);
            }
        });
    }
}

/// The router's view of a received frame's offload state, counted per interface. Without
/// `PACKET_VNET_HDR` (AF_XDP, or a packet socket without it) a partial checksum cannot be
/// passed on, so it is completed here.
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

/// Busy polling cannot be set up on `ifname`: say why, and that the kernel drives receive.
fn busy_poll_unavailable(ifname: &str, e: &dyn std::fmt::Display) {
    warn!(
        interface = %ifname,
        "busy polling unavailable, the kernel drives receive: {e} (busy_poll_us = 0 turns it \
         off without this warning)"
    );
}

/// A permission error from taking an interface over, with what router mode needs and how
/// to give it.
fn needs_privilege(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(libc::EPERM) {
        anyhow::anyhow!(
            "{e} — router mode needs CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF and CAP_PERFMON: \
             start it as root (with [router] user to become that user once the interfaces \
             are open) or from the ants-router@ unit, which grants exactly these"
        )
    } else {
        e.into()
    }
}

/// Receive queues of `ifname` in the calling thread's namespace (`/sys/class/net/*/queues`;
/// 1 when it cannot be read).
fn rx_queues(ifname: &str) -> usize {
    std::fs::read_dir(format!("/sys/class/net/{ifname}/queues"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count()
        })
        .unwrap_or(1)
        .max(1)
}

/// Load the XDP program (forwarding, and/or handing frames to the AF_XDP sockets) with the
/// router's tables and attach it to every owned interface.
fn open_xdp(
    router: &Router,
    ifindexes: &[u32],
    ports: &[Vec<RawPort>],
    r: &RouterSection,
    options: ProgramOptions,
) -> anyhow::Result<FastPath> {
    let ifaces: Vec<FastPathInterface> = ifindexes
        .iter()
        .zip(router.interfaces())
        .map(|(&ifindex, i)| FastPathInterface {
            ifindex,
            mac: i.mac,
            mtu: i.mtu,
        })
        .collect();
    let what = if options.xsk {
        "datapath = \"afxdp\""
    } else {
        "fast_path = \"xdp\""
    };
    let mut fast = FastPath::load_with(
        &ifaces,
        &router.route_entries(),
        &router.non_unicast_prefixes(),
        options,
    )
    .context(what)?;
    // Worker w's sockets serve receive queue w.
    for (queue, worker_ports) in (0u32..).zip(ports) {
        for (k, p) in worker_ports.iter().enumerate() {
            if let RawPort::Xsk(x) = p {
                fast.register_xsk(k, queue, x.as_fd()).context(what)?;
            }
        }
    }
    let modes = fast.attach().context(what)?;
    for (i, mode) in r.interfaces.iter().zip(modes) {
        info!(interface = %i.name, ?mode, forward = options.forward, afxdp = options.xsk, "XDP program attached");
    }
    Ok(fast)
}

/// Queue `frame` with its offload state on `port`, flushing first when its batch has no room;
/// counts a refusal.
fn queue(port: &mut Port, umem: Option<&mut Umem>, frame: &[u8], vnet: &VnetHdr, n: &mut u64) {
    queue_with(
        port,
        umem,
        frame.len(),
        vnet,
        |b| b.copy_from_slice(frame),
        n,
    );
}

/// [`queue`] a `len`-byte frame that `build` writes into the batch.
fn queue_with(
    port: &mut Port,
    mut umem: Option<&mut Umem>,
    len: usize,
    vnet: &VnetHdr,
    build: impl FnOnce(&mut [u8]),
    refused: &mut u64,
) {
    // Called at most once: a port that refuses does not call it.
    let mut build = Some(build);
    let mut write = |b: &mut [u8]| {
        if let Some(f) = build.take() {
            f(b);
        }
    };
    if port.queue_with(umem.as_deref_mut(), len, vnet, &mut write) {
        return;
    }
    if port.has_queued() {
        if let Err(e) = port.flush(umem.as_deref_mut()) {
            warn!(interface = port.ifname(), "transmit error: {e}");
        }
        if port.queue_with(umem, len, vnet, &mut write) {
            return;
        }
    }
    *refused += 1;
}

/// A worker's ports as the router's [`FrameSink`]: the node's datagrams are built straight
/// into the egress port's batch (a free UMEM frame, an AF_PACKET batch slot).
struct PortSink<'a> {
    ports: &'a mut [Port],
    umem: Option<&'a mut Umem>,
    refused: &'a mut [u64],
}

impl FrameSink for PortSink<'_> {
    fn frame(&mut self, iface: usize, len: usize, build: impl FnOnce(&mut [u8])) {
        if let (Some(p), Some(n)) = (self.ports.get_mut(iface), self.refused.get_mut(iface)) {
            queue_with(p, self.umem.as_deref_mut(), len, &VnetHdr::NONE, build, n);
        }
    }
}

/// Send a received frame out of AF_XDP socket `x` in place, flushing first when its TX ring
/// is full; a frame that still finds no room goes back to the free list, counted.
fn send_kept(x: &mut XskSocket, umem: &mut Umem, frame: XskFrame, refused: &mut u64) {
    let Err(mut frame) = x.send(frame) else {
        return;
    };
    if x.pending() > 0 {
        if let Err(e) = x.flush(umem) {
            warn!(interface = x.ifname(), "transmit error: {e}");
        }
        match x.send(frame) {
            Ok(()) => return,
            Err(f) => frame = f,
        }
    }
    umem.release(frame);
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
    async fn readable(&mut self) -> std::io::Result<()> {
        let (ports, siblings) = (&self.ports, &mut self.siblings);
        poll_fn(|cx| {
            if let Poll::Ready(Some(copy)) = siblings.from.poll_recv(cx) {
                siblings.pending.push(copy);
                return Poll::Ready(Ok(()));
            }
            for p in ports {
                match p.poll_read_ready(cx) {
                    // Cleared already; `receive` reads until the ring is empty or says there
                    // is more, and the loop then comes back without waiting.
                    Poll::Ready(Ok(())) => return Poll::Ready(Ok(())),
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
        let mut more = self.sibling_frames(now);
        self.sync_fast_path(now, FAST_PATH_SYNC_BUSY);
        for i in 0..self.ports.len() {
            // Busy polling: frames came in this poll, so poll again before waiting.
            let polled = self.busy_poll(i, now);
            more |= self.receive_from(i, now, driver) || polled;
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
        let calm = self.busy.iter().flatten().filter_map(BusyPolling::calm_at);
        [self.router.poll_timeout(), sync]
            .into_iter()
            .flatten()
            .chain(calm)
            .min()
    }

    fn handle_timeout(&mut self, now: Duration) {
        self.router.handle_timeout(now);
        self.sync_fast_path(now, FAST_PATH_SYNC_IDLE);
        self.busy_poll_calm(now);
    }

    fn stats(&mut self, stats: &mut Stats) {
        self.stats.router = self.router.counters().clone();
        for (s, p) in self.stats.interfaces.iter_mut().zip(&mut self.ports) {
            p.counters(s);
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
        if let Some(w) = stats.workers.first_mut() {
            w.forwarded = self.router.counters().forwarded;
        }
        self.stats.arp_shared = self.siblings.shared;
        self.stats.arp_share_dropped = self.siblings.dropped;
        stats.router = Some(self.stats.clone());
    }
}
