//! AF_XDP sockets for router mode's `datapath = "afxdp"`: frames come from the XDP hook
//! straight into memory the node owns (the UMEM) through a receive ring, and leave through a
//! transmit ring — no packet socket, no skb on receive.
//!
//! - [`XskSocket`]: one socket bound to one interface queue, with its own UMEM, the four
//!   rings (fill, completion, RX, TX) and a free list of transmit frames.
//!   [`recv`](XskSocket::recv) visits received frames in place and gives their buffers back
//!   to the fill ring; [`queue`](XskSocket::queue) copies a frame into a free UMEM frame and
//!   [`flush`](XskSocket::flush) publishes the batch and kicks the kernel with one `sendto`.
//! - The XDP program that redirects frames to the socket (`bpf_redirect_map` into an XSKMAP
//!   keyed by the receive queue) is the fast path's program (`crate::fastpath`), built with
//!   forwarding or without.
//!
//! Rings are single-producer/single-consumer arrays shared with the kernel: the producer
//! writes descriptors, then publishes its index with a release store; the consumer reads the
//! index with an acquire load, reads the descriptors, then publishes its own index. Every
//! index and descriptor access here goes through that protocol; nothing else touches the
//! mappings.
//!
//! Bounds: a frame longer than a UMEM frame is refused by `queue` (counted by the caller);
//! a full TX ring or an empty free list refuses too (the kernel has not completed earlier
//! sends) — counted, never a wait; when the fill ring runs empty the kernel drops received
//! frames and counts them (`rx_fill_ring_empty_descs`, `rx_dropped` in
//! [`XskStats`]).

mod ring;

use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

use tokio::io::unix::AsyncFd;

use ring::Ring;

use crate::afpacket::kernel::SavedSysctl;
use crate::sys::{Mmap, setsockopt};

/// Bytes the kernel keeps in front of a received frame in its UMEM frame.
const XDP_PACKET_HEADROOM: usize = 256;

/// Geometry of an [`XskSocket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XskConfig {
    /// UMEM frames (half for receiving, half for sending), a power of two.
    pub frames: u32,
    /// Bytes per UMEM frame: 2048 or 4096. A frame must hold the largest frame forwarded.
    pub frame_size: u32,
    /// Entries of each ring, a power of two.
    pub ring_size: u32,
}

impl Default for XskConfig {
    /// 4096 frames of 2048 bytes (8 MiB per interface), rings of 2048.
    fn default() -> Self {
        XskConfig {
            frames: 4096,
            frame_size: 2048,
            ring_size: 2048,
        }
    }
}

/// `struct xdp_statistics`, plus the node's own transmit counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XskStats {
    /// Frames the kernel dropped for lack of room (RX ring full, fill ring empty, …).
    pub rx_dropped: u64,
    /// RX ring was full when a frame arrived.
    pub rx_ring_full: u64,
    /// Fill ring was empty when a frame arrived.
    pub rx_fill_ring_empty: u64,
    /// Invalid descriptors the kernel saw (RX / TX): never from a correct node.
    pub invalid_descs: u64,
    /// Frames received.
    pub rx_frames: u64,
    /// Frames handed to the kernel for sending.
    pub tx_frames: u64,
    /// Frames refused by `queue`: no free frame or TX ring full, or too long.
    pub tx_refused: u64,
    /// [`XskSocket::busy_poll`] calls.
    pub busy_polls: u64,
}

/// An interface's NAPI deferral for preferred busy polling (`napi_defer_hard_irqs`,
/// `gro_flush_timeout` in `/sys/class/net/<if>/`): after a busy poll the kernel leaves the
/// queue to the polling thread for `timeout`, taking it back (and re-arming its interrupts,
/// or on veth its peer's wake-ups) only when the thread has not polled for that long.
/// Restores both settings when dropped.
#[derive(Debug)]
pub struct NapiDeferral {
    _defer: SavedSysctl,
    _timeout: SavedSysctl,
}

impl NapiDeferral {
    /// Defer `ifname`'s NAPI for `timeout` after each busy poll (twice, as the kernel's
    /// documentation suggests, before interrupts come back). `ifindex` and `mac` identify the
    /// interface: `/sys` shows the devices of the network namespace it was mounted in, which
    /// for a thread that entered another namespace is not its own (`ip netns exec` mounts a
    /// matching one), and another namespace's device of the same name must not be touched.
    pub fn set(
        ifname: &str,
        ifindex: u32,
        mac: [u8; 6],
        timeout: std::time::Duration,
    ) -> io::Result<NapiDeferral> {
        let file = |name: &str| format!("/sys/class/net/{ifname}/{name}");
        let read = |name: &str| std::fs::read_to_string(file(name)).unwrap_or_default();
        let want_mac = mac.map(|b| format!("{b:02x}")).join(":");
        if read("ifindex").trim() != ifindex.to_string() || read("address").trim() != want_mac {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "/sys/class/net/{ifname} is not this network namespace's {ifname} (mount \
                     sysfs for the namespace, as `ip netns exec` does)"
                ),
            ));
        }
        let missing = |name: &str| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: missing (kernel too old for busy polling?)", file(name)),
            )
        };
        let defer = SavedSysctl::set(&file("napi_defer_hard_irqs"), "2")?
            .ok_or_else(|| missing("napi_defer_hard_irqs"))?;
        let ns = timeout.as_nanos().to_string();
        let timeout = SavedSysctl::set(&file("gro_flush_timeout"), &ns)?
            .ok_or_else(|| missing("gro_flush_timeout"))?;
        Ok(NapiDeferral {
            _defer: defer,
            _timeout: timeout,
        })
    }
}

fn step(step: &str, ifname: &str) -> impl FnOnce(io::Error) -> io::Error {
    let msg = format!("AF_XDP {step} on {ifname}");
    move |e| {
        let hint = match e.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => " — needs CAP_NET_RAW and CAP_BPF",
            Some(libc::EAFNOSUPPORT) => " — the kernel has no AF_XDP (CONFIG_XDP_SOCKETS)",
            _ => "",
        };
        io::Error::new(e.kind(), format!("{msg}: {e}{hint}"))
    }
}

/// One AF_XDP socket on one interface queue, with its own UMEM.
#[derive(Debug)]
pub struct XskSocket {
    fd: OwnedFd,
    ifname: String,
    umem: Mmap,
    frame_size: u32,
    fill: Ring<u64>,
    comp: Ring<u64>,
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    /// UMEM frames free for sending.
    free: Vec<u64>,
    /// TX descriptors written but not yet published.
    tx_pending: u32,
    /// [`prefer_busy_poll`](Self::prefer_busy_poll) succeeded.
    busy_polling: bool,
    stats: XskStats,
}

impl XskSocket {
    /// Create the UMEM and rings, give half the frames to the fill ring and bind to queue
    /// `queue` of `ifindex` (copy mode where the driver has no zero-copy, e.g. veth).
    pub fn open(ifname: &str, ifindex: u32, queue: u32, cfg: &XskConfig) -> io::Result<XskSocket> {
        if !cfg.frames.is_power_of_two()
            || !cfg.ring_size.is_power_of_two()
            || !matches!(cfg.frame_size, 2048 | 4096)
            || cfg.ring_size * 2 > cfg.frames
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "AF_XDP geometry on {ifname}: frames and ring_size must be powers of two, \
                     frame_size 2048 or 4096, and frames at least twice ring_size"
                ),
            ));
        }
        // SAFETY: plain syscall; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(step("socket", ifname)(io::Error::last_os_error()));
        }
        // SAFETY: we just created this descriptor and own it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let len = cfg.frames as usize * cfg.frame_size as usize;
        let umem = Mmap::anonymous(len).map_err(step("UMEM allocation", ifname))?;
        let reg = libc::xdp_umem_reg {
            addr: umem.base().as_ptr() as u64,
            len: len as u64,
            chunk_size: cfg.frame_size,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(&fd, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg)
            .map_err(step("XDP_UMEM_REG", ifname))?;
        for opt in [
            libc::XDP_UMEM_FILL_RING,
            libc::XDP_UMEM_COMPLETION_RING,
            libc::XDP_RX_RING,
            libc::XDP_TX_RING,
        ] {
            setsockopt(&fd, libc::SOL_XDP, opt, &cfg.ring_size)
                .map_err(step("ring setup", ifname))?;
        }
        // SAFETY: all-zero bytes are a valid `xdp_mmap_offsets` (integers).
        let mut off: libc::xdp_mmap_offsets = unsafe { mem::zeroed() };
        let mut optlen = mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
        // SAFETY: `off` and `optlen` are live and writable; `optlen` bounds what is written.
        let rc = unsafe {
            libc::getsockopt(
                raw,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                ptr::from_mut(&mut off).cast(),
                &raw mut optlen,
            )
        };
        if rc != 0 {
            return Err(step("XDP_MMAP_OFFSETS", ifname)(io::Error::last_os_error()));
        }
        let n = cfg.ring_size;
        let desc = mem::size_of::<libc::xdp_desc>();
        let mut fill: Ring<u64> = Ring::map(&fd, &off.fr, n, 8, libc::XDP_UMEM_PGOFF_FILL_RING)
            .map_err(step("fill ring mmap", ifname))?;
        let comp: Ring<u64> = Ring::map(&fd, &off.cr, n, 8, libc::XDP_UMEM_PGOFF_COMPLETION_RING)
            .map_err(step("completion ring mmap", ifname))?;
        let rx: Ring<libc::xdp_desc> =
            Ring::map(&fd, &off.rx, n, desc, libc::XDP_PGOFF_RX_RING as u64)
                .map_err(step("RX ring mmap", ifname))?;
        let tx: Ring<libc::xdp_desc> =
            Ring::map(&fd, &off.tx, n, desc, libc::XDP_PGOFF_TX_RING as u64)
                .map_err(step("TX ring mmap", ifname))?;
        // Receive half: every fill-ring slot gets a frame; the rest are for sending.
        let fs = u64::from(cfg.frame_size);
        let mut frames = (0..u64::from(cfg.frames)).map(|i| i * fs);
        let given = fill.produce(n, |slot| {
            *slot = frames.next().unwrap_or(0);
        });
        debug_assert_eq!(given, n);
        let free: Vec<u64> = frames.collect();
        let sxdp = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: 0,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: `sxdp` is a live sockaddr_xdp and its exact size is passed with it.
        let rc = unsafe {
            libc::bind(
                raw,
                ptr::from_ref(&sxdp).cast(),
                mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(step("bind", ifname)(io::Error::last_os_error()));
        }
        Ok(XskSocket {
            fd,
            ifname: ifname.to_string(),
            umem,
            frame_size: cfg.frame_size,
            fill,
            comp,
            rx,
            tx,
            free,
            tx_pending: 0,
            busy_polling: false,
            stats: XskStats::default(),
        })
    }

    /// The interface's name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Longest frame [`queue`](Self::queue) takes.
    pub fn max_frame(&self) -> usize {
        self.frame_size as usize
    }

    /// Longest frame the socket receives: a UMEM frame less the headroom the kernel keeps
    /// in front of received data (`XDP_PACKET_HEADROOM`).
    pub fn max_rx_frame(&self) -> usize {
        self.max_frame() - XDP_PACKET_HEADROOM
    }

    /// The UMEM bytes of frame `addr`, `len` long (checked against the UMEM).
    fn frame_mut(umem: &mut Mmap, addr: u64, len: u32) -> Option<&mut [u8]> {
        let start = usize::try_from(addr).ok()?;
        umem.bytes_mut()
            .get_mut(start..start.checked_add(len as usize)?)
    }

    /// Visit up to `max` received frames in place (Ethernet header first), then give their
    /// buffers back to the fill ring. Returns the frames visited.
    pub fn recv(&mut self, max: u32, mut f: impl FnMut(&mut [u8])) -> u32 {
        let umem = &mut self.umem;
        let mut addrs = [0u64; 64];
        let mut total = 0;
        while total < max {
            let mut k = 0;
            let want = (max - total).min(addrs.len() as u32);
            let got = self.rx.consume(want, |d| {
                if let Some(frame) = Self::frame_mut(umem, d.addr, d.len) {
                    f(frame);
                }
                addrs[k] = d.addr;
                k += 1;
            });
            if got == 0 {
                break;
            }
            // Back to the kernel, aligned to the frame start.
            let fs = u64::from(self.frame_size);
            let mut it = addrs[..k].iter();
            self.fill.produce(got, |slot| {
                *slot = it.next().map_or(0, |a| a - a % fs);
            });
            total += got;
        }
        self.stats.rx_frames += u64::from(total);
        total
    }

    /// `true` when received frames are waiting (no syscall).
    pub fn rx_ready(&self) -> bool {
        self.rx.available() > 0
    }

    /// Take completed transmit frames back into the free list.
    fn reclaim(&mut self) {
        let free = &mut self.free;
        let n = self.comp.available();
        self.comp.consume(n, |addr| free.push(*addr));
    }

    /// Copy `frame` into a free UMEM frame and write its TX descriptor (published by
    /// [`flush`](Self::flush)). `false` (counted) when no frame or TX slot is free or the
    /// frame is too long.
    pub fn queue(&mut self, frame: &[u8]) -> bool {
        if self.free.is_empty() {
            self.reclaim();
        }
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        if frame.is_empty() || len > self.frame_size || self.tx.free_slots() <= self.tx_pending {
            self.stats.tx_refused += 1;
            return false;
        }
        let Some(addr) = self.free.pop() else {
            self.stats.tx_refused += 1;
            return false;
        };
        let Some(dst) = Self::frame_mut(&mut self.umem, addr, len) else {
            self.free.push(addr);
            self.stats.tx_refused += 1;
            return false;
        };
        dst.copy_from_slice(frame);
        self.tx.write_at(
            self.tx_pending,
            libc::xdp_desc {
                addr,
                len,
                options: 0,
            },
        );
        self.tx_pending += 1;
        true
    }

    /// Frames queued since the last flush.
    pub fn pending(&self) -> u32 {
        self.tx_pending
    }

    /// Publish the queued descriptors and kick the kernel (`sendto`), which copies them out
    /// (copy mode) or hands them to the driver. Returns the frames published.
    pub fn flush(&mut self) -> io::Result<u32> {
        let n = self.tx_pending;
        if n > 0 {
            self.tx.publish(n);
            self.tx_pending = 0;
            self.stats.tx_frames += u64::from(n);
        }
        if n > 0 || self.tx.available_to_kernel() > 0 {
            // SAFETY: a zero-length send with no buffer, on a descriptor we own.
            let rc = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    ptr::null(),
                    0,
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                // Busy: the kernel keeps the descriptors and sends them on the next kick.
                if !matches!(
                    e.raw_os_error(),
                    Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN)
                ) {
                    return Err(e);
                }
            }
        }
        self.reclaim();
        Ok(n)
    }

    /// Let this socket drive its queue's NAPI instead of the kernel (preferred busy polling,
    /// `SO_PREFER_BUSY_POLL`): with the interface's NAPI deferral on (see
    /// [`NapiDeferral`]), the receive work — the driver's poll, the XDP program, the copy
    /// into the UMEM — then runs when this thread asks for it ([`busy_poll`](Self::busy_poll),
    /// and every [`flush`](Self::flush)), `budget` frames at a time, so it cannot outrun the
    /// thread that consumes the frames: what the thread has no time for waits in the
    /// driver's queue and is dropped there, at the sender's cost, instead of being received,
    /// run and copied only to be dropped at a full RX ring. Needs `CAP_NET_ADMIN`.
    pub fn prefer_busy_poll(&mut self, budget: u16) -> io::Result<()> {
        // Not in `libc` for every architecture; the same on all.
        const SO_PREFER_BUSY_POLL: libc::c_int = 69;
        const SO_BUSY_POLL_BUDGET: libc::c_int = 70;
        let ifname = self.ifname.clone();
        let at = |opt: &'static str| step(opt, &ifname);
        setsockopt(&self.fd, libc::SOL_SOCKET, SO_PREFER_BUSY_POLL, &1i32)
            .map_err(at("SO_PREFER_BUSY_POLL"))?;
        // Non-blocking polls spin once whatever this is; it only has to be non-zero.
        setsockopt(&self.fd, libc::SOL_SOCKET, libc::SO_BUSY_POLL, &20i32)
            .map_err(at("SO_BUSY_POLL"))?;
        setsockopt(
            &self.fd,
            libc::SOL_SOCKET,
            SO_BUSY_POLL_BUDGET,
            &i32::from(budget),
        )
        .map_err(at("SO_BUSY_POLL_BUDGET"))?;
        self.busy_polling = true;
        Ok(())
    }

    /// Run the queue's NAPI once in this thread (a non-blocking `recvfrom`), filling the RX
    /// ring with up to the busy-poll budget of frames; `true` when frames are waiting after
    /// it. Without [`prefer_busy_poll`](Self::prefer_busy_poll): `false`, no syscall.
    pub fn busy_poll(&mut self) -> bool {
        if !self.busy_polling {
            return false;
        }
        // SAFETY: a zero-length, non-blocking receive with no buffer, on a descriptor we own.
        unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        self.stats.busy_polls += 1;
        self.rx_ready()
    }

    /// [`busy_poll`](Self::busy_poll) calls so far (no syscall).
    pub fn busy_polls(&self) -> u64 {
        self.stats.busy_polls
    }

    /// The kernel's counters (`XDP_STATISTICS`) and ours.
    pub fn stats(&self) -> XskStats {
        // SAFETY: all-zero bytes are a valid `xdp_statistics` (integers).
        let mut st: libc::xdp_statistics = unsafe { mem::zeroed() };
        let mut len = mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // SAFETY: `st` and `len` are live and writable; `len` bounds what is written.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                ptr::from_mut(&mut st).cast(),
                &raw mut len,
            )
        };
        let mut s = self.stats;
        if rc == 0 {
            s.rx_dropped = st.rx_dropped;
            s.rx_ring_full = st.rx_ring_full;
            s.rx_fill_ring_empty = st.rx_fill_ring_empty_descs;
            s.invalid_descs = st.rx_invalid_descs + st.tx_invalid_descs;
        }
        s
    }

    /// Register with the current tokio runtime: readable when received frames wait.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as tokio's own registration does.
    pub fn into_async_fd(self) -> io::Result<AsyncFd<XskSocket>> {
        // SAFETY: the socket owns its descriptor (an `OwnedFd`, closed only on drop), so it
        // stays open and the same for as long as the `AsyncFd` owns the socket.
        unsafe { AsyncFd::register(self) }.map_err(|e| e.into_parts().1)
    }
}

impl AsRawFd for XskSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for XskSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

// The RX and TX rings hold `struct xdp_desc` as the kernel lays it out.
const _: () = assert!(mem::size_of::<libc::xdp_desc>() == 16);
