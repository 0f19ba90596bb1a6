//! AF_PACKET access to the interfaces router mode owns (Linux only): frames in through a
//! memory-mapped `TPACKET_V3` ring, frames out through one `sendmmsg` per batch.
//!
//! - [`RingConfig`]: ring geometry, block timeout, transmit batch, qdisc bypass.
//! - [`PacketSocket`]: one per interface — [`recv_blocks`](PacketSocket::recv_blocks)
//!   (no syscall), [`queue`](PacketSocket::queue) + [`flush`](PacketSocket::flush) (one
//!   syscall per batch), [`stats`](PacketSocket::stats).
//! - [`RxRing`] and [`TxBatch`]: the two halves, reachable together through
//!   [`PacketSocket::split`] so a frame can be answered on the interface it came from.
//! - [`kernel`]: keep the kernel's own IP stack off the owned interfaces ([`kernel::isolate`]),
//!   read its addresses and routes.
//!
//! Router mode's `unsafe` and Linux-specific code lives here (the ring, the syscalls, the
//! `ioctl`s), in `crate::bpf` (the `bpf(2)` calls of the tcx drop and the XDP fast path) and
//! in `crate::mmsg` (the `sendmmsg` argument arrays, shared with the UDP overlay). After
//! [`PacketSocket::open`] no frame allocates.
//!
//! # The loop it is made for
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use ants_node::afpacket::{PacketSocket, RingConfig};
//!
//! let mut sock = PacketSocket::open("r1-h1", &RingConfig::default())?.into_async_fd()?;
//! loop {
//!     let mut ready = sock.readable_mut().await?; // the kernel retired a block
//!     let (rx, tx) = ready.get_inner_mut().split();
//!     // Bounded work per turn: at most 8 blocks, then let the other tasks run.
//!     rx.recv_blocks(8, |frame, _meta| {
//!         // Decide, rewrite `frame` in place, then copy it to the queue of the interface
//!         // it leaves by (here: back out of the same one). A full queue is a counted drop.
//!         if !tx.queue(frame) { /* flush earlier, or count the drop */ }
//!     });
//!     ready.get_inner_mut().flush()?; // one sendmmsg for the whole batch
//!     if !ready.get_inner().rx_ready() {
//!         ready.clear_ready(); // drained: sleep until the next block is retired
//!     }
//! }
//! # }
//! ```
//!
//! With several interfaces, keep the sockets in a `Vec` and flush every socket that has
//! frames queued once per turn (or when `queue` returns `false`).
//!
//! # Latency and the block timeout
//!
//! The kernel hands over whole blocks: a block is retired when full or when
//! `block_timeout_ms` has passed since its first frame, so at low rates a frame waits up to
//! that long (1 ms by default) before the socket turns readable. At high rates blocks fill
//! before the timer fires, and one wakeup carries hundreds of frames.

pub mod kernel;
mod ring;
mod sys;
mod tcx;
mod tx;
pub mod vnet;

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use tokio::io::unix::AsyncFd;

pub use ring::{FrameMeta, PacketType, RxCounters, RxRing};
pub use tx::{MAX_FRAME, MAX_TX_FRAMES, TxBatch};
pub use vnet::VnetHdr;

use sys::step_error;

/// Geometry and behaviour of a [`PacketSocket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// Bytes per receive block: a power of two, at least one page. A frame longer than a
    /// block (minus ~100 bytes of headers) cannot be received whole.
    pub block_size: usize,
    /// Blocks in the receive ring (at least 2); `block_size * block_count` bytes of kernel
    /// memory per interface.
    pub block_count: usize,
    /// Nominal frame size: a multiple of 16 between 128 and `block_size`. It sets the frame
    /// count the kernel checks (`block_size / frame_size` per block) and, with `tx_frames`,
    /// the transmit buffer (`tx_frames × frame_size` bytes, at least room for two 64 KiB
    /// super-frames). Frames themselves may be longer, up to a block (receive) or
    /// [`MAX_FRAME`] (transmit).
    pub frame_size: usize,
    /// Milliseconds after which the kernel retires a block that is not full (`0` lets the
    /// kernel choose from the link speed, typically 8 ms). This bounds the extra latency
    /// frames see at low rates.
    pub block_timeout_ms: u32,
    /// Frames one [`PacketSocket::flush`] sends (1 to [`MAX_TX_FRAMES`]); `queue` refuses
    /// more until the next flush.
    pub tx_frames: usize,
    /// `PACKET_VNET_HDR`: receive each frame's segmentation and checksum-offload state
    /// ([`FrameMeta::vnet`]) and send frames with theirs ([`PacketSocket::queue_vnet`]), so
    /// GSO/GRO super-frames (what a Linux host's TCP stack sends over a veth, and what GRO
    /// makes of a NIC's received segments) are forwarded whole and segmented by the kernel.
    /// On by default; off, such frames arrive as oversized packets with partial checksums.
    pub vnet_hdr: bool,
    /// Hand transmitted frames straight to the driver (`PACKET_QDISC_BYPASS`), skipping the
    /// interface's queueing discipline: cheaper per frame (~0.3 µs measured on a veth), but
    /// no traffic shaping, a full device queue drops the frame instead of queueing it, and
    /// the frames are invisible to packet captures (`tcpdump`) on the interface — turn it
    /// off to debug with one.
    pub qdisc_bypass: bool,
    /// `SO_SNDBUF` asked for, in bytes (clamped to `net.core.wmem_max`): how many bytes of
    /// sent frames may be in flight in the kernel before `flush` hears `EAGAIN`.
    pub send_buffer: usize,
}

impl Default for RingConfig {
    /// 32 blocks of 256 KiB (8 MiB per interface), 2048-byte frames, 1 ms block timeout,
    /// 256 frames per flush, qdisc bypass on, 4 MiB send buffer, `PACKET_VNET_HDR` on.
    ///
    /// Why: with a 1 ms timeout a block is retired at least every millisecond under load,
    /// so the number of blocks, not their size, bounds how long the daemon may stall before
    /// the kernel drops frames (32 blocks ≥ 32 ms). 256 KiB holds ~160 full-size or ~1,600
    /// minimum-size frames — what a ~1 Mpps link delivers in a millisecond — so a block
    /// rarely fills before its timer at the rates a 2-core host forwards, and the memory is a
    /// modest 8 MiB per interface (order-6 allocations, which the kernel can still find).
    /// 2048 bytes per frame fit a 1500-byte-MTU frame with or without a VLAN tag; a block
    /// also holds a 64 KiB super-frame.
    fn default() -> Self {
        RingConfig {
            block_size: 256 << 10,
            block_count: 32,
            frame_size: 2048,
            block_timeout_ms: 1,
            tx_frames: 256,
            qdisc_bypass: true,
            send_buffer: 4 << 20,
            vnet_hdr: true,
        }
    }
}

impl RingConfig {
    /// Check the geometry against what the kernel accepts; the error names the field.
    pub fn validate(&self) -> io::Result<()> {
        let page = sys::page_size();
        let bad = |msg: String| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        if !self.block_size.is_power_of_two() || self.block_size < page {
            return bad(format!(
                "ring block_size {} must be a power of two of at least one page ({page} bytes)",
                self.block_size
            ));
        }
        if self.block_count < 2 {
            return bad(format!(
                "ring block_count {} must be at least 2",
                self.block_count
            ));
        }
        if self.frame_size < 128
            || !self.frame_size.is_multiple_of(16)
            || self.frame_size > self.block_size
        {
            return bad(format!(
                "ring frame_size {} must be a multiple of 16 from 128 to block_size ({})",
                self.frame_size, self.block_size
            ));
        }
        let frames = (self.block_size / self.frame_size).checked_mul(self.block_count);
        let bytes = self.block_size.checked_mul(self.block_count);
        if frames.is_none_or(|f| u32::try_from(f).is_err())
            || bytes.is_none_or(|b| u32::try_from(b).is_err())
        {
            return bad(format!(
                "ring of {} blocks of {} bytes is too large",
                self.block_count, self.block_size
            ));
        }
        if self.tx_frames == 0 || self.tx_frames > MAX_TX_FRAMES {
            return bad(format!(
                "tx_frames {} must be from 1 to {MAX_TX_FRAMES}",
                self.tx_frames
            ));
        }
        Ok(())
    }
}

/// A packet socket bound to one interface, with a mapped receive ring and a transmit batch.
#[derive(Debug)]
pub struct PacketSocket {
    rx: RxRing,
    tx: TxBatch,
    fd: OwnedFd,
    ifname: String,
    ifindex: u32,
    mac: [u8; 6],
    mtu: u16,
    rx_queues: Option<u32>,
    stats: (u64, u64),
}

impl PacketSocket {
    /// Open a socket for every protocol on `ifname` (in the calling thread's network
    /// namespace): `TPACKET_V3` receive ring mapped, own and other outgoing frames ignored
    /// (`PACKET_IGNORE_OUTGOING`), qdisc bypass as configured, nonblocking.
    ///
    /// Errors name the interface and the step, with the fix where it is known, e.g.
    /// `socket(AF_PACKET) on r1-h1: Operation not permitted … — router mode needs root or
    /// CAP_NET_RAW`. Only Ethernet interfaces are accepted.
    pub fn open(ifname: &str, cfg: &RingConfig) -> io::Result<PacketSocket> {
        cfg.validate()
            .map_err(|e| io::Error::new(e.kind(), format!("{ifname}: {e}")))?;
        let fd = sys::packet_socket().map_err(|e| step_error("socket(AF_PACKET)", ifname, e))?;
        let link = sys::link_info(fd.as_raw_fd(), ifname)?;
        if link.hw_type != libc::ARPHRD_ETHER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{ifname} is not an Ethernet interface (hardware type {}); router mode \
                     forwards Ethernet frames only",
                    link.hw_type
                ),
            ));
        }
        let opt = |name: &str, r: io::Result<()>| {
            r.map_err(|e| step_error(&format!("setsockopt {name}"), ifname, e))
        };
        if cfg.vnet_hdr {
            // Before the ring: the kernel refuses to change it once a ring is mapped.
            opt(
                "PACKET_VNET_HDR",
                crate::sys::setsockopt_int(&fd, libc::SOL_PACKET, sys::PACKET_VNET_HDR, 1),
            )?;
        }
        opt(
            "PACKET_VERSION",
            crate::sys::setsockopt_int(
                &fd,
                libc::SOL_PACKET,
                libc::PACKET_VERSION,
                libc::tpacket_versions::TPACKET_V3 as libc::c_int,
            ),
        )?;
        let req = libc::tpacket_req3 {
            tp_block_size: cfg.block_size as u32,
            tp_block_nr: cfg.block_count as u32,
            tp_frame_size: cfg.frame_size as u32,
            tp_frame_nr: ((cfg.block_size / cfg.frame_size) * cfg.block_count) as u32,
            tp_retire_blk_tov: cfg.block_timeout_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        opt(
            "PACKET_RX_RING",
            crate::sys::setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req),
        )?;
        let ring_len = cfg.block_size * cfg.block_count;
        let map = crate::sys::Mmap::shared(fd.as_fd(), ring_len, 0, false)
            .map_err(|e| step_error("mmap of the receive ring", ifname, e))?;
        if cfg.qdisc_bypass {
            opt(
                "PACKET_QDISC_BYPASS",
                crate::sys::setsockopt_int(&fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1),
            )?;
        }
        // Kernels before 4.20 lack the option; the ring then skips outgoing frames itself.
        match crate::sys::setsockopt_int(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1) {
            Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => {}
            r => opt("PACKET_IGNORE_OUTGOING", r)?,
        }
        let sndbuf = libc::c_int::try_from(cfg.send_buffer).unwrap_or(libc::c_int::MAX);
        opt(
            "SO_SNDBUF",
            crate::sys::setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_SNDBUF, sndbuf),
        )?;
        sys::bind_ifindex(&fd, link.ifindex).map_err(|e| step_error("bind", ifname, e))?;
        Ok(PacketSocket {
            rx: RxRing::new(map, cfg.block_size, cfg.block_count, cfg.vnet_hdr),
            tx: TxBatch::new(cfg.tx_frames, cfg.frame_size, cfg.vnet_hdr),
            fd,
            ifname: ifname.to_string(),
            ifindex: link.ifindex,
            mac: link.mac,
            mtu: u16::try_from(link.mtu).unwrap_or(u16::MAX),
            rx_queues: link.rx_queues,
            stats: (0, 0),
        })
    }

    /// Share the interface's received frames with the other sockets of a fanout group, a
    /// flow's frames (by the kernel's flow hash) always to the same socket: `group` to join
    /// the group another socket made, `None` to make one. Returns the group's id.
    pub fn join_fanout(&self, group: Option<u16>) -> io::Result<u16> {
        sys::join_fanout(&self.fd, group)
            .map_err(|e| step_error("setsockopt PACKET_FANOUT", &self.ifname, e))
    }

    /// The receive queues the interface's driver reports in use (when the socket was
    /// opened); `None` if it does not say.
    pub fn rx_queues(&self) -> Option<u32> {
        self.rx_queues
    }

    /// The interface's name, as given to [`open`](Self::open).
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The interface's index in its network namespace.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The interface's MAC address (when the socket was opened).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The interface's MTU (when the socket was opened): the longest IP packet a frame may
    /// carry.
    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    /// Visit the frames of up to `max_blocks` retired blocks (see [`RxRing::recv_blocks`]);
    /// each frame is mutable, in ring memory, and its block goes back to the kernel once all
    /// its frames were visited. Returns the frames seen; no syscall is made, and when no
    /// block is ready this is one atomic load returning 0.
    pub fn recv_blocks(&mut self, max_blocks: usize, mut f: impl FnMut(&mut [u8])) -> usize {
        self.rx.recv_blocks(max_blocks, |frame, _| f(frame))
    }

    /// `true` when a retired block is waiting (one atomic load): after a bounded
    /// `recv_blocks`, clear the tokio readiness only when this is `false`.
    pub fn rx_ready(&self) -> bool {
        self.rx.is_ready()
    }

    /// [`recv_blocks`](Self::recv_blocks) with what the kernel says about each frame
    /// (packet type, checksum state, stripped VLAN tag).
    pub fn recv_blocks_meta(
        &mut self,
        max_blocks: usize,
        f: impl FnMut(&mut [u8], FrameMeta),
    ) -> usize {
        self.rx.recv_blocks(max_blocks, f)
    }

    /// Queue a copy of `frame` (Ethernet header first) for the next [`flush`](Self::flush).
    /// `false` when the batch is full (flush first, or count a drop) or the frame is empty
    /// or longer than [`MAX_FRAME`].
    pub fn queue(&mut self, frame: &[u8]) -> bool {
        self.tx.queue(frame)
    }

    /// [`queue`](Self::queue) with the frame's offload state, e.g. the [`FrameMeta::vnet`]
    /// it arrived with ([`VnetHdr::for_transmit`]): a super-frame is segmented by the kernel,
    /// a partial checksum completed. `false` also when the socket was opened without
    /// [`RingConfig::vnet_hdr`] and `vnet` is not [`VnetHdr::NONE`].
    pub fn queue_vnet(&mut self, frame: &[u8], vnet: &VnetHdr) -> bool {
        self.tx.queue_vnet(frame, vnet)
    }

    /// [`queue_vnet`](Self::queue_vnet) a `len`-byte frame that `fill` writes into the
    /// batch (see [`TxBatch::queue_with`]).
    pub fn queue_with(&mut self, len: usize, vnet: &VnetHdr, fill: impl FnOnce(&mut [u8])) -> bool {
        self.tx.queue_with(len, vnet, fill)
    }

    /// Send every queued frame with one `sendmmsg` (more only after a refused frame); see
    /// [`TxBatch`] for why not a transmit ring. Returns the frames sent. Frames the kernel
    /// refused — too long, malformed, or busy (`ENOBUFS`/`EAGAIN`) after a bounded retry —
    /// are dropped and counted in [`tx_dropped`](Self::tx_dropped). `Err` only when the
    /// socket itself is unusable.
    pub fn flush(&mut self) -> io::Result<usize> {
        self.tx.flush(self.fd.as_raw_fd())
    }

    /// Frames dropped at [`flush`](Self::flush) since the socket opened.
    pub fn tx_dropped(&self) -> u64 {
        self.tx.dropped()
    }

    /// The receive ring and the transmit batch at once, e.g. to answer a frame on the
    /// interface it arrived on while visiting it.
    pub fn split(&mut self) -> (&mut RxRing, &mut TxBatch) {
        (&mut self.rx, &mut self.tx)
    }

    /// The transmit batch (queue length, counters).
    pub fn tx(&self) -> &TxBatch {
        &self.tx
    }

    /// Counters of the receive ring (frames, blocks, frames left out).
    pub fn rx_counters(&self) -> RxCounters {
        self.rx.counters()
    }

    /// `(tp_packets, tp_drops)` of `PACKET_STATISTICS` since the socket opened: frames the
    /// kernel offered to the socket (drops included) and frames it dropped because the ring
    /// was full. The kernel resets its counters on every read; they are accumulated here.
    pub fn stats(&mut self) -> io::Result<(u64, u64)> {
        let st = sys::packet_statistics(self.fd.as_raw_fd())
            .map_err(|e| step_error("getsockopt PACKET_STATISTICS", &self.ifname, e))?;
        self.stats.0 += u64::from(st.tp_packets);
        self.stats.1 += u64::from(st.tp_drops);
        Ok(self.stats)
    }

    /// Register the socket with the current tokio runtime. It turns readable when the
    /// kernel retires a block; `recv_blocks` returning 0 means clear the readiness.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as tokio's own registration does.
    pub fn into_async_fd(self) -> io::Result<AsyncFd<PacketSocket>> {
        // SAFETY: a `PacketSocket` owns its descriptor (an `OwnedFd`, closed only on drop and
        // never replaced), so it stays open and the same for as long as the `AsyncFd` owns
        // the socket, and `as_raw_fd` always returns it.
        unsafe { AsyncFd::register(self) }.map_err(|e| e.into_parts().1)
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        RingConfig::default().validate().unwrap();
    }

    #[test]
    fn invalid_geometry_is_refused_with_the_field_named() {
        let d = RingConfig::default();
        let cases = [
            (
                RingConfig {
                    block_size: 3 << 12,
                    ..d
                },
                "block_size",
            ),
            (
                RingConfig {
                    block_size: 1024,
                    frame_size: 1024,
                    ..d
                },
                "block_size",
            ),
            (
                RingConfig {
                    block_count: 1,
                    ..d
                },
                "block_count",
            ),
            (
                RingConfig {
                    frame_size: 100,
                    ..d
                },
                "frame_size",
            ),
            (
                RingConfig {
                    frame_size: 2050,
                    ..d
                },
                "frame_size",
            ),
            (
                RingConfig {
                    frame_size: 1 << 20,
                    ..d
                },
                "frame_size",
            ),
            (
                RingConfig {
                    block_count: 1 << 20,
                    ..d
                },
                "too large",
            ),
            (RingConfig { tx_frames: 0, ..d }, "tx_frames"),
            (
                RingConfig {
                    tx_frames: MAX_TX_FRAMES + 1,
                    ..d
                },
                "tx_frames",
            ),
        ];
        for (cfg, field) in cases {
            let err = cfg.validate().unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains(field), "{err} should name {field}");
        }
    }

    #[test]
    fn opening_an_unknown_interface_names_it() {
        // Without privileges the socket call fails first; either way the message names the
        // interface.
        let err = PacketSocket::open("ants-no-such0", &RingConfig::default()).unwrap_err();
        assert!(err.to_string().contains("ants-no-such0"), "{err}");
    }
}
