//! AF_XDP sockets for router mode's `datapath = "afxdp"`: frames come from the XDP hook
//! straight into memory the node owns (the UMEM) through a receive ring, and leave through a
//! transmit ring — no packet socket, no skb on receive.
//!
//! - [`Umem`]: the frames one worker's sockets share (`XDP_SHARED_UMEM`), and the list of
//!   those that are free. Sharing is what lets a router forward by moving a descriptor: a
//!   frame received on one interface is rewritten in place and goes out of another with its
//!   UMEM address, no copy in userspace.
//! - [`XskSocket`]: one socket bound to one interface queue, with its four rings (fill,
//!   completion, RX, TX). [`recv`](XskSocket::recv) visits received frames in place; the
//!   visitor keeps a frame for sending ([`XskFrame`], then [`send`](XskSocket::send) on any
//!   socket of the UMEM) or lets it go back to the free list, and the fill ring is topped up
//!   from there. [`queue`](XskSocket::queue) copies a frame the node made into a free UMEM
//!   frame ([`queue_with`](XskSocket::queue_with) builds it there), and
//!   [`flush`](XskSocket::flush) publishes the batch, kicks the kernel with `sendto` while
//!   the TX ring asks for it and the kicks make progress, then takes completed frames back.
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
//! sends) — counted, never a wait; a received frame that `send` refuses is handed back
//! to the caller (counted), which releases it to the free list or retries after a flush. A socket's fill ring holds at most `ring_size` frames with its RX
//! ring, so receiving cannot take the frames sending needs; when the free list cannot top
//! it up the shortfall is remembered and made good as sends complete, and meanwhile the
//! kernel drops received frames and counts them (`rx_fill_ring_empty_descs`, `rx_dropped`
//! in [`XskStats`]).

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

/// Geometry of an [`XskSocket`] and of its share of a [`Umem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XskConfig {
    /// UMEM frames per socket, a power of two: `ring_size` of them go to its fill ring,
    /// the rest to the worker's free list, which every socket of the UMEM sends from.
    pub frames: u32,
    /// Bytes per UMEM frame: 2048 or 4096. A frame must hold the largest frame forwarded.
    pub frame_size: u32,
    /// Entries of each ring, a power of two.
    pub ring_size: u32,
}

impl Default for XskConfig {
    /// 4096 frames of 2048 bytes (8 MiB per socket), rings of 2048.
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
    /// Frames refused by `queue` or `send`: no free frame or TX ring full, or too long.
    pub tx_refused: u64,
    /// Of `tx_frames`, received frames sent by descriptor (no copy).
    pub tx_forwarded: u64,
    /// [`XskSocket::busy_poll`] calls.
    pub busy_polls: u64,
    /// `sendto` kicks of the kernel's transmit.
    pub tx_kicks: u64,
}

/// An interface's NAPI deferral for preferred busy polling (`napi_defer_hard_irqs`,
/// `gro_flush_timeout` in `/sys/class/net/<if>/`): while it is on, after a busy poll the
/// kernel leaves the queue to the polling thread for `timeout`, taking it back (and re-arming
/// its interrupts, or on veth its peer's wake-ups) only when the thread has not polled for
/// that long. It is on while any worker wants it ([`vote`](Self::vote)); the files are
/// opened once, at the start (as root), and restored when this is dropped.
#[derive(Debug)]
pub struct NapiDeferral {
    timeout_ns: String,
    switch: std::sync::Mutex<DeferralFiles>,
    on: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct DeferralFiles {
    defer: SavedSysctl,
    timeout: SavedSysctl,
    votes: usize,
}

impl NapiDeferral {
    /// Open `ifname`'s deferral settings, changing nothing yet. `ifindex` and `mac` identify
    /// the interface: `/sys` shows the devices of the network namespace it was mounted in,
    /// which for a thread that entered another namespace is not its own (`ip netns exec`
    /// mounts a matching one), and another namespace's device of the same name must not be
    /// touched.
    pub fn open(
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
        let defer = SavedSysctl::open(&file("napi_defer_hard_irqs"))?
            .ok_or_else(|| missing("napi_defer_hard_irqs"))?;
        let timeout_file = SavedSysctl::open(&file("gro_flush_timeout"))?
            .ok_or_else(|| missing("gro_flush_timeout"))?;
        Ok(NapiDeferral {
            timeout_ns: timeout.as_nanos().to_string(),
            switch: std::sync::Mutex::new(DeferralFiles {
                defer,
                timeout: timeout_file,
                votes: 0,
            }),
            on: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// One more (`true`) or one fewer (`false`) worker wants the deferral: it is switched on
    /// when the first asks (twice the timeout's worth of deferral, as the kernel's
    /// documentation suggests, before interrupts come back) and back to the interface's own
    /// settings when the last lets go.
    pub fn vote(&self, want: bool) -> io::Result<()> {
        use std::sync::atomic::Ordering;
        // A worker that panicked holding the lock left the counts as they were: go on.
        let mut f = self
            .switch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The vote counts only once the switch it causes is made: a worker whose vote
        // failed votes again later, and must not be counted twice.
        let votes = if want {
            f.votes + 1
        } else {
            f.votes.saturating_sub(1)
        };
        let on = votes > 0;
        if on != self.on.load(Ordering::Relaxed) {
            let switched = if on {
                f.defer
                    .write("2")
                    .and_then(|()| f.timeout.write(&self.timeout_ns))
            } else {
                f.timeout.restore().and_then(|()| f.defer.restore())
            };
            if let Err(e) = switched {
                if on {
                    // Half on is not on: put back what was written (best effort).
                    let _ = f.defer.restore();
                }
                return Err(e);
            }
            self.on.store(on, Ordering::Release);
        }
        f.votes = votes;
        Ok(())
    }

    /// The deferral is on: the workers drive their queues' receive work.
    pub fn is_on(&self) -> bool {
        self.on.load(std::sync::atomic::Ordering::Acquire)
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

/// The frames that one worker's AF_XDP sockets share: one anonymous mapping registered with
/// the first socket opened on it (`XDP_UMEM_REG`), which the others bind to with
/// `XDP_SHARED_UMEM` (each with its own fill and completion ring, as sockets on other
/// interfaces or queues must have). A frame belongs to exactly one place at a time: the free
/// list here, a fill, RX, TX or completion ring, or the visitor of [`XskSocket::recv`].
#[derive(Debug)]
pub struct Umem {
    map: Mmap,
    frame_size: u32,
    /// Frame addresses (frame starts) nobody holds.
    free: Vec<u64>,
    /// A duplicate of the socket that registered the memory, for the others to bind to.
    owner: Option<OwnedFd>,
}

impl Umem {
    /// Memory for `sockets` sockets of geometry `cfg`: `cfg.frames` frames each, all free.
    pub fn new(cfg: &XskConfig, sockets: u32) -> io::Result<Umem> {
        if !cfg.frames.is_power_of_two()
            || !cfg.ring_size.is_power_of_two()
            || !matches!(cfg.frame_size, 2048 | 4096)
            || cfg.ring_size * 2 > cfg.frames
            || sockets == 0
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "AF_XDP geometry: frames and ring_size must be powers of two, frame_size 2048 \
                 or 4096, frames at least twice ring_size, for at least one socket",
            ));
        }
        let frames = cfg
            .frames
            .checked_mul(sockets)
            .filter(|&n| u64::from(n) * u64::from(cfg.frame_size) <= 1 << 32)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "AF_XDP UMEM larger than 4 GiB")
            })?;
        let len = frames as usize * cfg.frame_size as usize;
        let map = Mmap::anonymous_huge(len)
            .map_err(|e| io::Error::new(e.kind(), format!("AF_XDP UMEM of {len} bytes: {e}")))?;
        let fs = u64::from(cfg.frame_size);
        // Popped from the end: the first frames go out first.
        let free = (0..u64::from(frames)).rev().map(|i| i * fs).collect();
        Ok(Umem {
            map,
            frame_size: cfg.frame_size,
            free,
            owner: None,
        })
    }

    /// Frames on the free list.
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }

    /// Frame `addr`'s bytes from there, `len` long (checked against the mapping and the
    /// frame's end).
    fn frame_mut(&mut self, addr: u64, len: u32) -> Option<&mut [u8]> {
        let start = usize::try_from(addr).ok()?;
        let fs = self.frame_size as usize;
        let end = start.checked_add(len as usize)?;
        if end - start > fs - start % fs {
            return None;
        }
        self.map.bytes_mut().get_mut(start..end)
    }

    /// Start loading the cache line at `addr` (a hint: nothing happens outside the mapping
    /// or off x86-64).
    fn prefetch(&self, addr: u64) {
        #[cfg(target_arch = "x86_64")]
        if let Ok(at) = usize::try_from(addr)
            && at < self.map.len()
        {
            // SAFETY: `at` lies inside the mapping, so the pointer is in bounds; a prefetch
            // reads nothing the program sees and cannot fault.
            unsafe {
                let p = self.map.base().as_ptr().add(at);
                std::arch::x86_64::_mm_prefetch(p.cast::<i8>(), std::arch::x86_64::_MM_HINT_T0);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = addr;
    }

    /// Give a frame back to the free list (any address inside it).
    pub fn release(&mut self, frame: XskFrame) {
        self.release_addr(frame.addr);
    }

    fn release_addr(&mut self, addr: u64) {
        let fs = u64::from(self.frame_size);
        self.free.push(addr - addr % fs);
    }
}

/// A received frame kept for sending: its place in the [`Umem`] and its length. It leaves
/// through [`XskSocket::send`] on any socket of that UMEM, or goes back with
/// [`Umem::release`]; dropping it loses the frame until the node restarts.
/// Neither `Clone` nor `Copy`: a frame is in exactly one place at a time.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a kept frame must be sent or released"]
pub struct XskFrame {
    addr: u64,
    len: u32,
}

/// One AF_XDP socket on one interface queue, sharing a worker's [`Umem`].
#[derive(Debug)]
pub struct XskSocket {
    fd: OwnedFd,
    ifname: String,
    frame_size: u32,
    fill: Ring<u64>,
    comp: Ring<u64>,
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    /// Frames the fill ring is owed: received, and not yet replaced for want of free ones.
    fill_owed: u32,
    /// TX descriptors written but not yet published.
    tx_pending: u32,
    /// [`prefer_busy_poll`](Self::prefer_busy_poll) succeeded.
    busy_polling: bool,
    stats: XskStats,
}

impl XskSocket {
    /// Create the rings, give `cfg.ring_size` frames of `umem` to the fill ring and bind to
    /// queue `queue` of `ifindex` (copy mode where the driver has no zero-copy, e.g. veth).
    /// The first socket on `umem` registers it; later ones share it.
    pub fn open(
        ifname: &str,
        ifindex: u32,
        queue: u32,
        cfg: &XskConfig,
        umem: &mut Umem,
    ) -> io::Result<XskSocket> {
        if !cfg.ring_size.is_power_of_two()
            || cfg.frame_size != umem.frame_size
            || umem.free.len() < cfg.ring_size as usize
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "AF_XDP geometry on {ifname}: ring_size must be a power of two, the frame \
                     size the UMEM's, and the UMEM must have ring_size frames free"
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
        if umem.owner.is_none() {
            let reg = libc::xdp_umem_reg {
                addr: umem.map.base().as_ptr() as u64,
                len: umem.map.len() as u64,
                chunk_size: umem.frame_size,
                headroom: 0,
                flags: 0,
                tx_metadata_len: 0,
            };
            setsockopt(&fd, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg)
                .map_err(step("XDP_UMEM_REG", ifname))?;
        }
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
        let fill: Ring<u64> = Ring::map(&fd, &off.fr, n, 8, libc::XDP_UMEM_PGOFF_FILL_RING)
            .map_err(step("fill ring mmap", ifname))?;
        let comp: Ring<u64> = Ring::map(&fd, &off.cr, n, 8, libc::XDP_UMEM_PGOFF_COMPLETION_RING)
            .map_err(step("completion ring mmap", ifname))?;
        let rx: Ring<libc::xdp_desc> =
            Ring::map(&fd, &off.rx, n, desc, libc::XDP_PGOFF_RX_RING as u64)
                .map_err(step("RX ring mmap", ifname))?;
        let tx: Ring<libc::xdp_desc> =
            Ring::map(&fd, &off.tx, n, desc, libc::XDP_PGOFF_TX_RING as u64)
                .map_err(step("TX ring mmap", ifname))?;
        // The UMEM's first socket asks the kernel to say when it needs a kick
        // (`need_wakeup`); the others share its setting and may name no flag of their own.
        let (flags, shared_fd) = match &umem.owner {
            Some(owner) => (
                libc::XDP_SHARED_UMEM,
                u32::try_from(owner.as_raw_fd()).unwrap_or(u32::MAX),
            ),
            None => (libc::XDP_USE_NEED_WAKEUP, 0),
        };
        let sxdp = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: flags,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: shared_fd,
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
        if umem.owner.is_none() {
            umem.owner = Some(fd.try_clone().map_err(step("dup", ifname))?);
        }
        // Copy mode: let one kick send the whole TX ring (Linux 6.17+; older kernels send
        // 32 per kick, and `flush` kicks again).
        const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;
        let _ = setsockopt(&fd, libc::SOL_XDP, XDP_MAX_TX_SKB_BUDGET, &n);
        let mut sock = XskSocket {
            fd,
            ifname: ifname.to_string(),
            frame_size: umem.frame_size,
            fill,
            comp,
            rx,
            tx,
            // The receive half: one frame per fill-ring slot.
            fill_owed: n,
            tx_pending: 0,
            busy_polling: false,
            stats: XskStats::default(),
        };
        sock.refill(umem);
        debug_assert_eq!(sock.fill_owed, 0);
        Ok(sock)
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

    /// Give the fill ring the frames it is owed, as far as the free list has them.
    fn refill(&mut self, umem: &mut Umem) {
        let n = self
            .fill_owed
            .min(u32::try_from(umem.free.len()).unwrap_or(u32::MAX));
        if n == 0 {
            return;
        }
        let free = &mut umem.free;
        // `n` frames are on the free list, so every slot gets one of its own.
        let given = self.fill.produce(n, |slot| *slot = free.pop().unwrap_or(0));
        self.fill_owed -= given;
    }

    /// Visit up to `max` received frames in place (Ethernet header first). For a frame to
    /// send, `f` returns where to (`Some(port)`), and the frame is pushed onto `keep` with
    /// it, for [`send`](Self::send); every other frame goes back to the free list. The fill
    /// ring is then topped up. Returns the frames visited.
    pub fn recv<T>(
        &mut self,
        umem: &mut Umem,
        max: u32,
        keep: &mut Vec<(T, XskFrame)>,
        mut f: impl FnMut(&mut [u8]) -> Option<T>,
    ) -> u32 {
        let mut total = 0;
        let mut batch = [libc::xdp_desc {
            addr: 0,
            len: 0,
            options: 0,
        }; 64];
        while total < max {
            let mut k = 0;
            let want = (max - total).min(batch.len() as u32);
            let got = self.rx.consume(want, |d| {
                batch[k] = *d;
                k += 1;
            });
            if got == 0 {
                break;
            }
            // The kernel wrote these frames a while ago (up to a ring ago): ask for their
            // first bytes all at once, so the misses overlap instead of stalling one by one.
            for d in &batch[..k] {
                umem.prefetch(d.addr);
            }
            for d in &batch[..k] {
                match umem.frame_mut(d.addr, d.len).and_then(&mut f) {
                    Some(to) => keep.push((
                        to,
                        XskFrame {
                            addr: d.addr,
                            len: d.len,
                        },
                    )),
                    None => umem.release_addr(d.addr),
                }
            }
            // Replace them in the fill ring now, not after the whole visit: under load the
            // kernel would otherwise find it empty mid-turn and drop.
            self.fill_owed += got;
            self.refill(umem);
            total += got;
        }
        // A zero-copy driver that ran out of fill-ring frames waits to be woken (copy mode
        // never asks).
        if self.fill.needs_wakeup() {
            self.wake_rx();
        }
        self.stats.rx_frames += u64::from(total);
        total
    }

    /// A non-blocking, zero-length `recvfrom`: runs the queue's receive work (a busy poll,
    /// or a driver's wake-up).
    fn wake_rx(&mut self) {
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
    }

    /// `true` when received frames are waiting (no syscall).
    pub fn rx_ready(&self) -> bool {
        self.rx.available() > 0
    }

    /// Received frames waiting in the RX ring (no syscall), and the ring's size.
    pub fn rx_waiting(&self) -> (u32, u32) {
        (self.rx.available(), self.rx.size())
    }

    /// Take completed transmit frames back into the free list, and top the fill ring up.
    fn reclaim(&mut self, umem: &mut Umem) {
        let n = self.comp.available();
        self.comp.consume(n, |addr| umem.release_addr(*addr));
        self.refill(umem);
    }

    /// `true` when the TX ring has a slot for one more descriptor (the kernel's index is
    /// read only when the last reading says the ring is full).
    fn tx_room(&mut self) -> bool {
        self.tx.has_free(self.tx_pending + 1)
    }

    fn write_tx(&mut self, addr: u64, len: u32) {
        self.tx.write_at(
            self.tx_pending,
            libc::xdp_desc {
                addr,
                len,
                options: 0,
            },
        );
        self.tx_pending += 1;
    }

    /// Write the TX descriptor of a kept frame (published by [`flush`](Self::flush)): the
    /// frame leaves with its UMEM address, no copy. `Err(frame)` (counted) when the TX ring
    /// is full; the caller releases it or tries again after a flush.
    pub fn send(&mut self, frame: XskFrame) -> Result<(), XskFrame> {
        if !self.tx_room() {
            self.stats.tx_refused += 1;
            return Err(frame);
        }
        self.write_tx(frame.addr, frame.len);
        self.stats.tx_forwarded += 1;
        Ok(())
    }

    /// Copy `frame` into a free UMEM frame and write its TX descriptor (published by
    /// [`flush`](Self::flush)). `false` (counted) when no frame or TX slot is free or the
    /// frame is too long.
    pub fn queue(&mut self, umem: &mut Umem, frame: &[u8]) -> bool {
        self.queue_with(umem, frame.len(), |dst| dst.copy_from_slice(frame))
    }

    /// [`queue`](Self::queue) a `len`-byte frame that `build` writes into the free UMEM frame
    /// (every byte: the frame holds what it last carried), without an intermediate buffer.
    /// `false` (counted), and `build` not called, as for `queue`.
    pub fn queue_with(
        &mut self,
        umem: &mut Umem,
        len: usize,
        build: impl FnOnce(&mut [u8]),
    ) -> bool {
        if umem.free.is_empty() {
            self.reclaim(umem);
        }
        let empty = len == 0;
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        if empty || len > self.frame_size || !self.tx_room() {
            self.stats.tx_refused += 1;
            return false;
        }
        let Some(addr) = umem.free.pop() else {
            self.stats.tx_refused += 1;
            return false;
        };
        let Some(dst) = umem.frame_mut(addr, len) else {
            umem.release_addr(addr);
            self.stats.tx_refused += 1;
            return false;
        };
        build(dst);
        self.write_tx(addr, len);
        true
    }

    /// Frames queued since the last flush.
    pub fn pending(&self) -> u32 {
        self.tx_pending
    }

    /// Publish the queued descriptors and kick the kernel (`sendto`), which copies them out
    /// (copy mode) or hands them to the driver; then take completed frames back. Returns the
    /// frames published.
    pub fn flush(&mut self, umem: &mut Umem) -> io::Result<u32> {
        let n = self.tx_pending;
        if n > 0 {
            self.tx.publish(n);
            self.tx_pending = 0;
            self.stats.tx_frames += u64::from(n);
        }
        // Only when the kernel asks (zero-copy drivers send from their own NAPI poll while
        // it runs; copy mode always asks). In copy mode one kick sends at most the socket's
        // budget (32 unless `XDP_MAX_TX_SKB_BUDGET` raised it) and says EAGAIN when more
        // wait: kick again, as many times as the ring can need.
        // A kick that sent nothing (the device busy, the completion ring full) ends it: the
        // rest goes with the next flush.
        let mut kicks = self.tx.size() / 32 + 1;
        let mut left = self.tx.available_to_kernel();
        while kicks > 0 && left > 0 && self.tx.needs_wakeup() {
            kicks -= 1;
            self.stats.tx_kicks += 1;
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
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => {}
                    // Busy: the kernel keeps the descriptors and sends them on the next kick.
                    Some(libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN) => break,
                    _ => return Err(e),
                }
            }
            // Completions make room for the next kick's.
            self.reclaim(umem);
            let now_left = self.tx.available_to_kernel();
            if now_left >= left {
                break;
            }
            left = now_left;
        }
        self.reclaim(umem);
        Ok(n)
    }

    /// Let this socket drive its queue's NAPI instead of the kernel (preferred busy polling,
    /// `SO_PREFER_BUSY_POLL`): with the interface's NAPI deferral on (see
    /// [`NapiDeferral`]), the receive work — the driver's poll, the XDP program, the copy
    /// into the UMEM — then runs when this thread asks for it ([`busy_poll`](Self::busy_poll),
    /// and the kicks of a [`flush`](Self::flush)), `budget` frames at a time, so it cannot outrun the
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
        self.wake_rx();
        self.stats.busy_polls += 1;
        self.rx_ready()
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
