//! Batched UDP for the overlay daemon: one `recvmmsg`/`sendmmsg` moves a whole batch of
//! datagrams, so the forwarding path does not pay a syscall per datagram.
//!
//! - [`UdpConfig`]: socket buffer sizes, datagrams per syscall, largest datagram.
//! - [`BatchSocket`]: a nonblocking UDP socket (IPv4 or IPv6) with
//!   [`recv_batch`](BatchSocket::recv_batch) and [`send_batch`](BatchSocket::send_batch).
//! - [`RecvBatch`]: preallocated receive slots, filled by one `recvmmsg`.
//! - [`SendBatch`]: a bounded queue of outgoing datagrams in one byte arena, drained by
//!   `sendmmsg`.
//!
//! All buffers, iovecs and socket addresses are allocated when a batch is built; after that
//! no datagram allocates. This module is the only place of the overlay driver with `unsafe`
//! and Linux-only code (the two syscalls and the `sockaddr` conversions around them).
//!
//! # Driving it from tokio
//!
//! [`BatchSocket::into_async_fd`] registers the socket with the tokio reactor as a
//! [`tokio::io::unix::AsyncFd`] (tokio's safe constructor for that is deprecated, so the one
//! `unsafe` registration lives here). Both calls return `Ok(0)` instead of a `WouldBlock`
//! error, so clear the readiness yourself when they do:
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use ants_node::udp::{BatchSocket, RecvBatch, SendBatch, UdpConfig};
//! use tokio::io::unix::AsyncFd;
//!
//! let cfg = UdpConfig::default();
//! let sock: AsyncFd<BatchSocket> =
//!     BatchSocket::bind("127.0.0.1:7001".parse().unwrap(), &cfg)?.into_async_fd()?;
//! let (mut rx, mut tx) = (RecvBatch::new(&cfg), SendBatch::new(&cfg));
//! loop {
//!     let mut ready = sock.readable().await?;
//!     // Bounded work per turn: a few batches, then let the other tasks run.
//!     for _ in 0..4 {
//!         if sock.get_ref().recv_batch(&mut rx)? == 0 {
//!             ready.clear_ready(); // drained: wait for the next datagram
//!             break;
//!         }
//!         for (from, bytes) in rx.iter() {
//!             tx.push(from, bytes); // e.g. feed the core and queue its transmits
//!         }
//!     }
//!     while !tx.is_empty() {
//!         let mut ready = sock.writable().await?;
//!         sock.get_ref().send_batch(&mut tx)?;
//!         if !tx.is_empty() {
//!             ready.clear_ready(); // the kernel buffer is full
//!         }
//!     }
//! }
//! # }
//! ```

use std::fmt;
use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::ptr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

use crate::mmsg::MsgVec;

/// Most datagrams one syscall moves: the kernel caps `vlen` at `UIO_MAXIOV` anyway.
pub const MAX_BATCH: usize = 1024;
/// Largest datagram slot: a UDP payload never exceeds 65,535 bytes.
pub const MAX_DATAGRAM: usize = 65_535;

/// `UDP_SEGMENT` and `UDP_GRO` (`linux/udp.h`), at level `SOL_UDP`.
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;
/// `SO_ATTACH_REUSEPORT_CBPF` (`asm-generic/socket.h`; the `libc` crate has it for Android
/// only).
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;
/// Most datagrams in one GSO send (the kernel's `UDP_MAX_SEGMENTS` is 64 on older kernels).
const GSO_MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO send: the super-datagram's IP packet must stay under 64 KiB.
const GSO_MAX_BYTES: usize = 65_000;
/// A receive slot when GRO is on: the largest buffer the kernel coalesces.
const GRO_SLOT: usize = 65_536;

/// Retries of `recvmmsg` after asynchronous errors (ICMP reports queued on the socket) before
/// a call gives up and reports nothing received.
const RECV_ERROR_RETRIES: u32 = 8;

/// Sizes of a [`BatchSocket`] and its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpConfig {
    /// `SO_RCVBUF` asked for, in bytes (the kernel clamps it to `net.core.rmem_max`).
    pub recv_buffer: usize,
    /// `SO_SNDBUF` asked for, in bytes (clamped to `net.core.wmem_max`).
    pub send_buffer: usize,
    /// Datagrams per syscall, 1 to [`MAX_BATCH`].
    pub batch: usize,
    /// Largest datagram received or queued for sending, 1 to [`MAX_DATAGRAM`]; longer
    /// received datagrams are dropped and counted ([`RecvBatch::truncated`]).
    pub max_datagram: usize,
    /// Send runs of same-size datagrams to one destination as one UDP GSO super-datagram
    /// (`UDP_SEGMENT`): the kernel handles the run as one packet down to the device (or, on
    /// loopback, all the way to the receiving socket). Turned off by itself if the kernel or
    /// the route refuses it.
    pub gso: bool,
    /// Let the kernel hand over several datagrams of one flow as one buffer (`UDP_GRO`); the
    /// batch splits them again. Receive slots then hold 64 KiB each.
    pub gro: bool,
}

impl Default for UdpConfig {
    /// 4 MiB socket buffers, 64 datagrams per syscall, 2048-byte datagrams, GSO and GRO on.
    fn default() -> Self {
        UdpConfig {
            recv_buffer: 4 << 20,
            send_buffer: 4 << 20,
            batch: 64,
            max_datagram: 2048,
            gso: true,
            gro: true,
        }
    }
}

impl UdpConfig {
    fn slots(&self) -> usize {
        self.batch.clamp(1, MAX_BATCH)
    }

    fn slot_len(&self) -> usize {
        self.max_datagram.clamp(1, MAX_DATAGRAM)
    }
}

/// One received datagram: where it came from and where its bytes are (a slot holds several
/// when the kernel coalesced them, GRO).
#[derive(Debug, Clone, Copy)]
struct Received {
    from: SocketAddr,
    start: usize,
    len: usize,
}

/// Preallocated receive buffers for [`BatchSocket::recv_batch`]: `batch` slots of
/// `max_datagram` bytes, with each slot's length and source address.
pub struct RecvBatch {
    slot_len: usize,
    max_datagram: usize,
    buf: Vec<u8>,
    received: Vec<Received>,
    msgs: MsgVec,
    truncated: u64,
    async_errors: u64,
    coalesced: u64,
}

impl fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvBatch")
            .field("slots", &self.msgs.hdrs.len())
            .field("slot_len", &self.slot_len)
            .field("len", &self.received.len())
            .field("truncated", &self.truncated)
            .field("async_errors", &self.async_errors)
            .finish_non_exhaustive()
    }
}

impl RecvBatch {
    /// Buffers for `cfg.batch` receives of up to `cfg.max_datagram` bytes each, or of 64 KiB
    /// each with `cfg.gro` (a coalesced buffer holds up to 64 datagrams).
    pub fn new(cfg: &UdpConfig) -> Self {
        let (slots, max_datagram) = (cfg.slots(), cfg.slot_len());
        let slot_len = if cfg.gro { GRO_SLOT } else { max_datagram };
        RecvBatch {
            slot_len,
            max_datagram,
            buf: vec![0; slots * slot_len],
            received: Vec::with_capacity(slots * if cfg.gro { GSO_MAX_SEGMENTS } else { 1 }),
            msgs: MsgVec::new(slots),
            truncated: 0,
            async_errors: 0,
            coalesced: 0,
        }
    }

    /// Buffers the kernel handed over holding several datagrams (GRO), so far.
    pub fn coalesced(&self) -> u64 {
        self.coalesced
    }

    /// Datagrams held from the last [`BatchSocket::recv_batch`].
    pub fn len(&self) -> usize {
        self.received.len()
    }

    /// `true` when the last receive brought no usable datagram.
    pub fn is_empty(&self) -> bool {
        self.received.is_empty()
    }

    /// The `i`th datagram: its source and its bytes.
    pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        self.received.get(i).map(|r| self.view(r))
    }

    /// The datagrams in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> + '_ {
        self.received.iter().map(|r| self.view(r))
    }

    /// Datagrams longer than `max_datagram` seen so far (dropped, not in the batch).
    pub fn truncated(&self) -> u64 {
        self.truncated
    }

    /// Asynchronous socket errors (ICMP unreachable reports) that receives consumed so far.
    pub fn async_errors(&self) -> u64 {
        self.async_errors
    }

    fn view(&self, r: &Received) -> (SocketAddr, &[u8]) {
        (
            r.from,
            self.buf.get(r.start..r.start + r.len).unwrap_or_default(),
        )
    }

    /// Aim every header at its slot, with room for control messages, ready for `recvmmsg`.
    fn prepare(&mut self) {
        let name_len = socklen_of::<libc::sockaddr_storage>();
        for (i, slot) in self.buf.chunks_exact_mut(self.slot_len).enumerate() {
            self.msgs.set(i, slot.as_mut_ptr(), slot.len(), name_len);
            self.msgs.receive_control(i);
        }
    }

    /// Record what message `i` brought: one datagram, or several of `segment` bytes (the
    /// last may be shorter) when the kernel coalesced them. Datagrams longer than
    /// `max_datagram` are counted as truncated and left out. Returns the datagrams seen.
    fn take(&mut self, i: usize, from: SocketAddr, len: usize) -> usize {
        let segment = self
            .msgs
            .controls(i)
            .find(|&(level, ty, _)| level == libc::SOL_UDP && ty == UDP_GRO)
            .and_then(|(_, _, d)| Some(i32::from_ne_bytes(d.get(..4)?.try_into().ok()?)))
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0 && n < len);
        let len = len.min(self.slot_len);
        let start = i * self.slot_len;
        if segment.is_some() {
            self.coalesced += 1;
        }
        let step = segment.unwrap_or(len).max(1);
        let mut seen = 0;
        let mut at = 0;
        loop {
            let n = step.min(len - at);
            if n > self.max_datagram {
                self.truncated += 1;
            } else {
                self.received.push(Received {
                    from,
                    start: start + at,
                    len: n,
                });
            }
            seen += 1;
            at += n;
            if at >= len {
                return seen;
            }
        }
    }
}

/// A datagram waiting in a [`SendBatch`].
#[derive(Debug, Clone, Copy)]
struct Queued {
    to: SocketAddr,
    start: usize,
    len: usize,
}

/// A bounded, reusable queue of outgoing datagrams whose bytes live in one arena.
///
/// Holds at most `batch` datagrams of at most `max_datagram` bytes each.
/// [`BatchSocket::send_batch`] removes what it sent (or dropped) from the front.
pub struct SendBatch {
    slot_len: usize,
    arena: Vec<u8>,
    arena_cap: usize,
    queue: Vec<Queued>,
    head: usize,
    msgs: MsgVec,
    /// Datagrams in each message the last `prepare` built (more than one: a GSO run).
    runs: Vec<usize>,
    dropped: u64,
    retries: u64,
    gso_sends: u64,
    last_drop: Option<(SocketAddr, i32)>,
}

impl fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendBatch")
            .field("capacity", &self.msgs.hdrs.len())
            .field("len", &self.len())
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl SendBatch {
    /// An empty queue for `cfg.batch` datagrams of up to `cfg.max_datagram` bytes each.
    pub fn new(cfg: &UdpConfig) -> Self {
        let (slots, slot_len) = (cfg.slots(), cfg.slot_len());
        SendBatch {
            slot_len,
            arena: Vec::with_capacity(slots * slot_len),
            arena_cap: slots * slot_len,
            queue: Vec::with_capacity(slots),
            head: 0,
            msgs: MsgVec::new(slots),
            runs: Vec::with_capacity(slots),
            dropped: 0,
            retries: 0,
            gso_sends: 0,
            last_drop: None,
        }
    }

    /// Runs of datagrams sent as one GSO super-datagram, since creation.
    pub fn gso_sends(&self) -> u64 {
        self.gso_sends
    }

    /// Queue `data` for `to`. `false` when the queue is full or `data` is longer than
    /// `max_datagram`; nothing is queued then.
    pub fn push(&mut self, to: SocketAddr, data: &[u8]) -> bool {
        if data.len() > self.slot_len {
            return false;
        }
        if !self.has_room(data.len()) {
            self.compact();
            if !self.has_room(data.len()) {
                return false;
            }
        }
        let start = self.arena.len();
        self.arena.extend_from_slice(data);
        self.queue.push(Queued {
            to,
            start,
            len: data.len(),
        });
        true
    }

    /// Datagrams queued.
    pub fn len(&self) -> usize {
        self.queue.len() - self.head
    }

    /// Datagrams that can still be queued before the batch must be sent (assuming each is at
    /// most `max_datagram` bytes).
    pub fn room(&self) -> usize {
        self.msgs.hdrs.len().saturating_sub(self.len())
    }

    /// `true` when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forget everything queued.
    pub fn clear(&mut self) {
        self.queue.clear();
        self.arena.clear();
        self.head = 0;
    }

    /// Datagrams dropped because the kernel refused them twice in a row (an unreachable or
    /// invalid destination, a datagram too large for the path), since creation.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Sends retried after an error, since creation. The first error on a datagram may be a
    /// stale one (an ICMP report about an earlier datagram), so a datagram is tried twice.
    pub fn retries(&self) -> u64 {
        self.retries
    }

    /// The destination and the error of the last dropped datagram, for logs.
    pub fn last_drop(&self) -> Option<(SocketAddr, io::Error)> {
        self.last_drop
            .map(|(to, errno)| (to, io::Error::from_raw_os_error(errno)))
    }

    fn has_room(&self, len: usize) -> bool {
        self.queue.len() < self.queue.capacity() && self.arena.len() + len <= self.arena_cap
    }

    /// Move the pending datagrams to the front of the arena and of the queue.
    fn compact(&mut self) {
        if self.head == 0 {
            return;
        }
        let first = self
            .queue
            .get(self.head)
            .map_or(self.arena.len(), |q| q.start);
        self.arena.copy_within(first.., 0);
        self.arena.truncate(self.arena.len() - first);
        self.queue.drain(..self.head);
        for q in &mut self.queue {
            q.start -= first;
        }
        self.head = 0;
    }

    /// Drop the `n` datagrams at the front.
    fn advance(&mut self, n: usize) {
        self.head = (self.head + n).min(self.queue.len());
        if self.head == self.queue.len() {
            self.clear();
        }
    }

    /// Fill the headers for the pending datagrams; returns how many messages. With `gso`,
    /// consecutive datagrams to one destination of one size (the last of a run may be
    /// shorter), contiguous in the arena, go as one message with a `UDP_SEGMENT` size.
    fn prepare(&mut self, v6_socket: bool, gso: bool) -> usize {
        self.runs.clear();
        let pending = &self.queue[self.head..];
        let (mut i, mut m) = (0, 0);
        while i < pending.len() && m < self.msgs.hdrs.len() {
            let q = pending[i];
            let mut run = 1;
            let mut bytes = q.len;
            if gso && q.len > 0 {
                while let Some(next) = pending.get(i + run) {
                    let fits = next.to == q.to
                        && next.start == q.start + bytes
                        && next.len <= q.len
                        && next.len > 0
                        && run < GSO_MAX_SEGMENTS
                        && bytes + next.len <= GSO_MAX_BYTES;
                    if !fits {
                        break;
                    }
                    bytes += next.len;
                    run += 1;
                    if next.len < q.len {
                        break; // only the last segment may be short
                    }
                }
            }
            let name_len = encode_sockaddr(q.to, v6_socket, &mut self.msgs.names[m]);
            // The kernel only reads through this pointer (sendmmsg); `cast_mut` is for the
            // shared iovec type.
            let base = self.arena[q.start..q.start + bytes].as_ptr().cast_mut();
            self.msgs.set(m, base, bytes, name_len);
            if run > 1 {
                let size = u16::try_from(q.len).unwrap_or(u16::MAX);
                self.msgs
                    .push_control(m, libc::SOL_UDP, UDP_SEGMENT, &size.to_ne_bytes());
            }
            self.runs.push(run);
            i += run;
            m += 1;
        }
        m
    }
}

/// Offset of the capsule type in every ANTS message (all four kinds).
const TYPE_OFFSET: usize = 8;

/// The socket of a [`BatchSocket::bind_group`] of `count` that receives `datagram`: the
/// big-endian `u32` at bytes 8..12 (the first bytes of the message's capsule type) modulo
/// `count`, or 0 for a datagram too short to have them. The kernel's steering program
/// computes exactly this.
pub fn steer(datagram: &[u8], count: usize) -> usize {
    datagram
        .get(TYPE_OFFSET..)
        .map_or(0, |ty| steer_type(ty, count))
}

/// The socket of a group of `count` that a capsule type (its bytes) is steered to: the
/// rule of [`steer`] applied to the type itself (0 for fewer than 4 bytes).
pub fn steer_type(ty: &[u8], count: usize) -> usize {
    let Some(word) = ty.first_chunk::<4>() else {
        return 0;
    };
    let count = u32::try_from(count.max(1)).unwrap_or(u32::MAX);
    (u32::from_be_bytes(*word) % count) as usize
}

/// Attach the classic BPF program of [`steer`] to a reuseport group
/// (`SO_ATTACH_REUSEPORT_CBPF`). The kernel runs it with the packet's data starting at the
/// UDP payload; a load past the end ends the program with 0 (socket 0), and an index past
/// the group falls back to the kernel's hash.
fn attach_steering(socket: &BatchSocket, count: usize) -> io::Result<()> {
    let count = u32::try_from(count).map_err(|_| io::Error::other("too many sockets"))?;
    let mut prog = [
        // A = ntohl(*(u32 *)(payload + 8))
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: TYPE_OFFSET as u32,
        },
        // A %= count
        libc::sock_filter {
            code: (libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: count,
        },
        // return A
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_A) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // The kernel copies the program during the call; `prog` outlives it.
    crate::sys::setsockopt(socket, libc::SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &fprog)
}

/// A nonblocking UDP socket that moves datagrams in batches.
#[derive(Debug)]
pub struct BatchSocket {
    socket: Socket,
    v6: bool,
    /// Send runs with UDP GSO; cleared for good when the kernel refuses a GSO send.
    gso: std::sync::atomic::AtomicBool,
    gro: bool,
}

impl BatchSocket {
    /// Bind a nonblocking UDP socket to `addr` with the buffer sizes of `cfg`.
    ///
    /// An IPv6 wildcard address (`[::]:port`) is made dual-stack, so it also serves IPv4
    /// peers; their addresses are reported as plain IPv4.
    pub fn bind(addr: SocketAddr, cfg: &UdpConfig) -> io::Result<Self> {
        Self::bind_shared(addr, cfg, false)
    }

    /// Bind `count` sockets to one address with `SO_REUSEPORT`, one per worker, and steer
    /// each datagram to socket [`steer`]`(datagram, count)`: a classic BPF program attached
    /// to the group reads bytes 8..12 of the UDP payload (where every ANTS message carries
    /// its type) and takes them modulo `count`, so all messages of one capsule type reach
    /// one socket. `addr` may have port 0: the later sockets join the port the first got.
    ///
    /// What the program cannot split (a GRO or GSO buffer carrying datagrams of several
    /// types is steered by its first) is the receiver's to hand on; see `ants_node`'s
    /// daemon.
    pub fn bind_group(addr: SocketAddr, cfg: &UdpConfig, count: usize) -> io::Result<Vec<Self>> {
        if count <= 1 {
            return Ok(vec![Self::bind(addr, cfg)?]);
        }
        let first = Self::bind_shared(addr, cfg, true)?;
        let addr = first.local_addr()?;
        let mut group = vec![first];
        for _ in 1..count {
            group.push(Self::bind_shared(addr, cfg, true)?);
        }
        attach_steering(&group[0], count)?;
        Ok(group)
    }

    fn bind_shared(addr: SocketAddr, cfg: &UdpConfig, reuse_port: bool) -> io::Result<Self> {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if let SocketAddr::V6(v6) = addr
            && v6.ip().is_unspecified()
        {
            socket.set_only_v6(false)?;
        }
        if reuse_port {
            socket.set_reuse_port(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.set_recv_buffer_size(cfg.recv_buffer)?;
        socket.set_send_buffer_size(cfg.send_buffer)?;
        socket.bind(&addr.into())?;
        // Kernels before 5.0 have no UDP_GRO: receive datagram by datagram then.
        let gro = cfg.gro && crate::sys::setsockopt_int(&socket, libc::SOL_UDP, UDP_GRO, 1).is_ok();
        Ok(BatchSocket {
            socket,
            v6: addr.is_ipv6(),
            gso: std::sync::atomic::AtomicBool::new(cfg.gso),
            gro,
        })
    }

    /// Whether sends use UDP GSO (asked for, and not refused by the kernel yet) and
    /// receives UDP GRO.
    pub fn offloads(&self) -> (bool, bool) {
        (
            self.gso.load(std::sync::atomic::Ordering::Relaxed),
            self.gro,
        )
    }

    /// The address the socket is bound to (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket address"))
    }

    /// The receive and send buffer sizes the kernel granted (Linux reports twice what it
    /// counts as payload); compare with [`UdpConfig`] to warn about `rmem_max` clamping.
    pub fn buffer_sizes(&self) -> io::Result<(usize, usize)> {
        Ok((
            self.socket.recv_buffer_size()?,
            self.socket.send_buffer_size()?,
        ))
    }

    /// One `recvmmsg(MSG_DONTWAIT)`: fills `batch`, clearing it first.
    ///
    /// Returns how many datagrams the kernel handed over (a GRO buffer counts for the
    /// datagrams in it), `Ok(0)` when none was waiting. Datagrams longer than
    /// `max_datagram` count in that number but are left out of the batch and counted in
    /// [`RecvBatch::truncated`], so `batch.len()` may be smaller.
    /// Asynchronous errors queued on the socket (an ICMP port unreachable for an earlier
    /// send) are consumed, counted and do not stop the receive.
    pub fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.received.clear();
        let mut retries = 0;
        let got = loop {
            batch.prepare();
            let vlen = batch.msgs.hdrs.len() as libc::c_uint;
            // SAFETY: `hdrs` holds `vlen` headers that `prepare` just aimed at live buffers
            // owned by `batch` (one iovec over a `slot_len` slot and one `sockaddr_storage`
            // each, with matching lengths); `batch` is borrowed mutably for the whole call, so
            // nothing else touches them while the kernel writes. The timeout may be null.
            let rc = unsafe {
                libc::recvmmsg(
                    self.socket.as_raw_fd(),
                    batch.msgs.hdrs.as_mut_ptr(),
                    vlen,
                    libc::MSG_DONTWAIT as _,
                    ptr::null_mut(),
                )
            };
            if let Ok(n) = usize::try_from(rc) {
                break n;
            }
            let err = io::Error::last_os_error();
            match classify(&err) {
                ErrorClass::WouldBlock => return Ok(0),
                ErrorClass::Interrupted => {}
                ErrorClass::Fatal => return Err(err),
                ErrorClass::Destination if err.raw_os_error() == Some(libc::EINVAL) => {
                    return Err(err);
                }
                ErrorClass::Destination => {
                    batch.async_errors += 1;
                    retries += 1;
                    if retries > RECV_ERROR_RETRIES {
                        return Ok(0);
                    }
                }
            }
        };
        let got = got.min(batch.msgs.hdrs.len());
        let mut datagrams = 0;
        for slot in 0..got {
            let hdr = &batch.msgs.hdrs[slot];
            if hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                batch.truncated += 1;
                datagrams += 1;
                continue;
            }
            let len = hdr.msg_len as usize;
            // A UDP socket always reports an IPv4 or IPv6 source; anything else is skipped.
            let Some(from) = decode_sockaddr(&batch.msgs.names[slot], hdr.msg_hdr.msg_namelen)
            else {
                datagrams += 1;
                continue;
            };
            datagrams += batch.take(slot, from, len);
        }
        Ok(datagrams)
    }

    /// `sendmmsg` as many queued datagrams as the kernel takes, removing them from the front
    /// of `batch`; returns how many went (`Ok(0)` when the socket would block).
    ///
    /// On return the queue is either empty or the socket's send buffer is full. A datagram
    /// the kernel refuses twice in a row (no route, an invalid or wrong-family destination, a
    /// pending ICMP error that turns out to be its own) is dropped and counted in
    /// [`SendBatch::dropped`], so one bad destination cannot wedge the queue. `Err` only for
    /// errors of the socket itself (e.g. a closed descriptor); the queue is left intact.
    pub fn send_batch(&self, batch: &mut SendBatch) -> io::Result<usize> {
        let mut sent = 0;
        let mut front_failed = false;
        while !batch.is_empty() {
            let gso = self.gso.load(std::sync::atomic::Ordering::Relaxed);
            let n = batch.prepare(self.v6, gso);
            // SAFETY: `hdrs[..n]` were just aimed by `prepare` at `n` live socket addresses and
            // iovecs owned by `batch`, each iovec covering a queued datagram inside the arena;
            // `batch` is borrowed mutably for the whole call and the arena is not resized
            // while the kernel reads from it.
            let rc = unsafe {
                libc::sendmmsg(
                    self.socket.as_raw_fd(),
                    batch.msgs.hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT as _,
                )
            };
            match usize::try_from(rc) {
                Ok(0) => break,
                Ok(k) => {
                    let k = k.min(n);
                    let datagrams: usize = batch.runs[..k].iter().sum();
                    batch.gso_sends += batch.runs[..k].iter().filter(|&&r| r > 1).count() as u64;
                    batch.advance(datagrams);
                    sent += datagrams;
                    front_failed = false;
                    continue;
                }
                Err(_) => {}
            }
            let err = io::Error::last_os_error();
            let front_run = batch.runs.first().copied().unwrap_or(1);
            match classify(&err) {
                ErrorClass::WouldBlock => break,
                ErrorClass::Interrupted => {}
                ErrorClass::Fatal => return Err(err),
                // The kernel or the route cannot segment (no checksum offload, a path MTU
                // smaller than a segment): send datagram by datagram from now on.
                ErrorClass::Destination
                    if front_run > 1
                        && matches!(err.raw_os_error(), Some(libc::EIO | libc::EINVAL)) =>
                {
                    self.gso.store(false, std::sync::atomic::Ordering::Relaxed);
                }
                ErrorClass::Destination if !front_failed => {
                    front_failed = true;
                    batch.retries += 1;
                }
                ErrorClass::Destination => {
                    let to = batch.queue[batch.head].to;
                    batch.last_drop = Some((to, err.raw_os_error().unwrap_or(0)));
                    batch.dropped += front_run as u64;
                    batch.advance(front_run);
                    front_failed = false;
                }
            }
        }
        Ok(sent)
    }

    /// The socket's descriptor (e.g. for `poll`; for tokio use [`Self::into_async_fd`]).
    pub fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Register the socket with the current tokio runtime for readable and writable events.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (with the `rt` feature), as tokio's own registration does.
    pub fn into_async_fd(self) -> io::Result<AsyncFd<BatchSocket>> {
        // SAFETY: a `BatchSocket` owns its descriptor (a `socket2::Socket`, closed only when
        // dropped and never replaced), so the descriptor stays open and the same for as long as
        // the `AsyncFd` owns the socket, and `as_raw_fd` always returns it.
        unsafe { AsyncFd::register(self) }.map_err(|e| e.into_parts().1)
    }
}

impl AsRawFd for BatchSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl AsFd for BatchSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// What an `errno` from `recvmmsg`/`sendmmsg` means for the loop.
enum ErrorClass {
    /// Nothing to receive, or the send buffer is full.
    WouldBlock,
    /// A signal arrived; try again.
    Interrupted,
    /// The socket itself is unusable or we passed bad memory: report it.
    Fatal,
    /// About one destination (or an ICMP report about one): skip or retry.
    Destination,
}

fn classify(err: &io::Error) -> ErrorClass {
    match err.raw_os_error() {
        Some(libc::EINTR) => ErrorClass::Interrupted,
        Some(e) if e == libc::EAGAIN || e == libc::EWOULDBLOCK => ErrorClass::WouldBlock,
        Some(libc::EBADF | libc::ENOTSOCK | libc::EFAULT | libc::EOPNOTSUPP) => ErrorClass::Fatal,
        Some(_) => ErrorClass::Destination,
        None => ErrorClass::Fatal,
    }
}

fn socklen_of<T>() -> libc::socklen_t {
    mem::size_of::<T>() as libc::socklen_t
}

/// Write `addr` into `out` as a `sockaddr_in` or `sockaddr_in6`; returns its length.
///
/// An IPv6 socket gets IPv4 destinations as IPv4-mapped addresses; an IPv4 socket gets
/// IPv4-mapped destinations as plain IPv4 (other IPv6 ones are left for the kernel to refuse).
fn encode_sockaddr(
    addr: SocketAddr,
    v6_socket: bool,
    out: &mut libc::sockaddr_storage,
) -> libc::socklen_t {
    let addr = match addr {
        SocketAddr::V4(v4) if v6_socket => {
            SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
        }
        SocketAddr::V6(v6) if !v6_socket => match v6.ip().to_ipv4_mapped() {
            Some(ip) => SocketAddr::V4(SocketAddrV4::new(ip, v6.port())),
            None => addr,
        },
        _ => addr,
    };
    match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: all-zero bytes are a valid `sockaddr_in` (a C struct of integers).
            let mut sin: libc::sockaddr_in = unsafe { mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(v4.ip().octets()),
            };
            // SAFETY: `sockaddr_storage` is, by definition, large enough and aligned for every
            // socket address type, and `out` is an exclusive reference to one.
            unsafe { ptr::from_mut(out).cast::<libc::sockaddr_in>().write(sin) };
            socklen_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: all-zero bytes are a valid `sockaddr_in6` (a C struct of integers).
            let mut sin6: libc::sockaddr_in6 = unsafe { mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: v6.ip().octets(),
            };
            sin6.sin6_scope_id = v6.scope_id();
            // SAFETY: as above, `sockaddr_storage` fits and aligns a `sockaddr_in6`.
            unsafe { ptr::from_mut(out).cast::<libc::sockaddr_in6>().write(sin6) };
            socklen_of::<libc::sockaddr_in6>()
        }
    }
}

/// Read the source address the kernel wrote into `name` (`len` bytes). IPv4-mapped IPv6
/// sources (IPv4 peers of a dual-stack socket) come back as plain IPv4.
fn decode_sockaddr(name: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match libc::c_int::from(name.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the kernel wrote a `sockaddr_in` here, `len` confirms its
            // size, and `sockaddr_storage` is aligned for it.
            let sin = unsafe { ptr::from_ref(name).cast::<libc::sockaddr_in>().read() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for a `sockaddr_in6`.
            let sin6 = unsafe { ptr::from_ref(name).cast::<libc::sockaddr_in6>().read() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    port,
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )),
            })
        }
        _ => None,
    }
}

/// Send everything queued in `batch` through `sock`, waiting for writability while the
/// kernel buffer is full. After a bounded number of waits (or a socket error) the rest is
/// dropped; returns how many datagrams were dropped, for the caller to count.
pub async fn flush(sock: &AsyncFd<BatchSocket>, batch: &mut SendBatch) -> u64 {
    for _ in 0..64 {
        if batch.is_empty() {
            return 0;
        }
        let Ok(mut ready) = sock.writable().await else {
            break;
        };
        match sock.get_ref().send_batch(batch) {
            Ok(_) if batch.is_empty() => return 0,
            Ok(_) => ready.clear_ready(), // the kernel buffer is full
            Err(e) => {
                tracing::warn!("send error: {e}");
                break;
            }
        }
    }
    let dropped = batch.len() as u64;
    batch.clear();
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn loopback4() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
    }

    fn cfg(batch: usize, max_datagram: usize) -> UdpConfig {
        UdpConfig {
            batch,
            max_datagram,
            ..UdpConfig::default()
        }
    }

    #[test]
    fn a_reuseport_group_steers_by_type_word_exactly_as_steer_says() {
        let c = UdpConfig {
            gro: false,
            ..cfg(64, 2048)
        };
        let group = BatchSocket::bind_group(loopback4(), &c, 3).unwrap();
        let to = group[0].local_addr().unwrap();
        assert!(group.iter().all(|s| s.local_addr().unwrap() == to));
        let sender = std::net::UdpSocket::bind(loopback4()).unwrap();
        // 60 datagrams with varied type words, plus short ones (no type: socket 0).
        let mut sent: Vec<Vec<u8>> = (0u32..60)
            .map(|i| {
                let mut d = vec![0u8; 48];
                d[8..12].copy_from_slice(&i.wrapping_mul(0x9E37_79B9).to_be_bytes());
                d[47] = i as u8;
                d
            })
            .collect();
        sent.push(vec![1; 11]);
        sent.push(vec![]);
        for d in &sent {
            sender.send_to(d, to).unwrap();
        }
        let mut got = vec![Vec::new(); 3];
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.iter().map(Vec::len).sum::<usize>() < sent.len() {
            assert!(Instant::now() < deadline, "not everything arrived");
            for (i, s) in group.iter().enumerate() {
                let mut rx = RecvBatch::new(&c);
                s.recv_batch(&mut rx).unwrap();
                got[i].extend(rx.iter().map(|(_, d)| d.to_vec()));
            }
        }
        for (i, datagrams) in got.iter().enumerate() {
            for d in datagrams {
                assert_eq!(steer(d, 3), i, "datagram {d:?} reached socket {i}");
            }
        }
        assert!(got.iter().all(|g| !g.is_empty()), "every socket got some");
    }

    /// Deterministic contents for datagram `i` of length `len`.
    fn pattern(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|k| (i * 31 + k * 7) as u8).collect()
    }

    /// Send everything in `tx` (retrying while the socket would block, bounded by time).
    fn flush(sock: &BatchSocket, tx: &mut SendBatch) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut sent = 0;
        while !tx.is_empty() {
            sent += sock.send_batch(tx).expect("send_batch");
            assert!(Instant::now() < deadline, "send queue did not drain");
            if !tx.is_empty() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        sent
    }

    /// Receive until `want` datagrams arrived (or 5 s passed); returns (source, bytes) pairs.
    fn collect(sock: &BatchSocket, rx: &mut RecvBatch, want: usize) -> Vec<(SocketAddr, Vec<u8>)> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut out = Vec::new();
        while out.len() < want && Instant::now() < deadline {
            let n = sock.recv_batch(rx).expect("recv_batch");
            assert!(n <= rx.msgs.hdrs.len() * GSO_MAX_SEGMENTS);
            out.extend(rx.iter().map(|(from, b)| (from, b.to_vec())));
            if n == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        out
    }

    /// Sizes 0, 5, …, 1500: distinct, so a datagram is identified by its length even if
    /// loopback were to reorder.
    fn round_trip(a: &BatchSocket, b: &BatchSocket, send_batch: usize, recv_batch: usize) {
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let mut tx = SendBatch::new(&cfg(send_batch, 1500));
        let mut rx = RecvBatch::new(&cfg(recv_batch, 2048));
        let sizes: Vec<usize> = (0..=300).map(|i| i * 5).collect();
        let mut got = Vec::new();
        for chunk in sizes.chunks(send_batch) {
            for &len in chunk {
                assert!(tx.push(b_addr, &pattern(len, len)));
            }
            assert_eq!(tx.len(), chunk.len());
            assert_eq!(flush(a, &mut tx), chunk.len());
            got.extend(collect(b, &mut rx, chunk.len()));
        }
        assert_eq!(got.len(), sizes.len());
        let mut lens: Vec<usize> = got.iter().map(|(_, d)| d.len()).collect();
        lens.sort_unstable();
        assert_eq!(lens, sizes);
        for (from, data) in &got {
            assert_eq!(*from, a_addr);
            assert_eq!(*data, pattern(data.len(), data.len()));
        }
        assert_eq!(rx.truncated(), 0);
        assert_eq!(tx.dropped(), 0);
    }

    #[test]
    fn ipv4_loopback_round_trip_in_batches() {
        let c = UdpConfig::default();
        let a = BatchSocket::bind(loopback4(), &c).unwrap();
        let b = BatchSocket::bind(loopback4(), &c).unwrap();
        round_trip(&a, &b, 32, 16);
    }

    /// A run of equal datagrams to one destination, then a short one, then others.
    fn gso_traffic(to: SocketAddr, other: SocketAddr) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut v: Vec<(SocketAddr, Vec<u8>)> = (0..40).map(|i| (to, pattern(i, 1000))).collect();
        v.push((to, pattern(40, 300)));
        v.extend((41..50).map(|i| (other, pattern(i, 1000))));
        v.extend((50..60).map(|i| (to, pattern(i, 700))));
        v
    }

    #[test]
    fn gso_runs_arrive_whole_in_order_with_or_without_gro() {
        for receiver_gro in [true, false] {
            let send_cfg = cfg(128, 2048);
            let recv_cfg = UdpConfig {
                gro: receiver_gro,
                ..cfg(64, 2048)
            };
            let a = BatchSocket::bind(loopback4(), &send_cfg).unwrap();
            let b = BatchSocket::bind(loopback4(), &recv_cfg).unwrap();
            let c = BatchSocket::bind(loopback4(), &recv_cfg).unwrap();
            assert_eq!(b.offloads().1, receiver_gro, "UDP_GRO on this kernel");
            let (b_addr, c_addr) = (b.local_addr().unwrap(), c.local_addr().unwrap());
            let traffic = gso_traffic(b_addr, c_addr);
            let mut tx = SendBatch::new(&send_cfg);
            for (to, d) in &traffic {
                assert!(tx.push(*to, d));
            }
            assert_eq!(flush(&a, &mut tx), traffic.len());
            assert!(
                tx.gso_sends() >= 2,
                "runs went as GSO sends: {}",
                tx.gso_sends()
            );
            assert!(a.offloads().0, "the kernel took them");
            let mut rx = RecvBatch::new(&recv_cfg);
            let want_b: Vec<Vec<u8>> = traffic
                .iter()
                .filter(|(to, _)| *to == b_addr)
                .map(|(_, d)| d.clone())
                .collect();
            let got_b: Vec<Vec<u8>> = collect(&b, &mut rx, want_b.len())
                .into_iter()
                .map(|(from, d)| {
                    assert_eq!(from, a.local_addr().unwrap());
                    d
                })
                .collect();
            assert_eq!(got_b, want_b, "receiver GRO {receiver_gro}");
            if receiver_gro {
                assert!(
                    rx.coalesced() > 0,
                    "the kernel handed over coalesced buffers"
                );
            } else {
                assert_eq!(rx.coalesced(), 0);
            }
            let mut rx_c = RecvBatch::new(&recv_cfg);
            assert_eq!(collect(&c, &mut rx_c, 9).len(), 9);
        }
    }

    #[test]
    fn without_gso_every_datagram_is_its_own_send() {
        let c = UdpConfig {
            gso: false,
            ..cfg(128, 2048)
        };
        let a = BatchSocket::bind(loopback4(), &c).unwrap();
        let b = BatchSocket::bind(loopback4(), &c).unwrap();
        let b_addr = b.local_addr().unwrap();
        let mut tx = SendBatch::new(&c);
        for i in 0..30 {
            assert!(tx.push(b_addr, &pattern(i, 500)));
        }
        assert_eq!(flush(&a, &mut tx), 30);
        assert_eq!(tx.gso_sends(), 0);
        let mut rx = RecvBatch::new(&c);
        assert_eq!(collect(&b, &mut rx, 30).len(), 30);
    }

    #[test]
    fn coalesced_datagrams_longer_than_the_limit_are_counted_and_left_out() {
        let big = cfg(64, 2048);
        let small = UdpConfig {
            max_datagram: 600,
            ..cfg(64, 2048)
        };
        let a = BatchSocket::bind(loopback4(), &big).unwrap();
        let b = BatchSocket::bind(loopback4(), &small).unwrap();
        let b_addr = b.local_addr().unwrap();
        let mut tx = SendBatch::new(&big);
        for i in 0..10 {
            assert!(tx.push(b_addr, &pattern(i, 1000)));
        }
        for i in 10..20 {
            assert!(tx.push(b_addr, &pattern(i, 500)));
        }
        flush(&a, &mut tx);
        let mut rx = RecvBatch::new(&small);
        let got = collect(&b, &mut rx, 10);
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|(_, d)| d.len() == 500));
        assert_eq!(rx.truncated(), 10);
    }

    #[test]
    fn ipv6_loopback_round_trip() {
        let c = UdpConfig::default();
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, 0));
        let (a, b) = match (BatchSocket::bind(v6, &c), BatchSocket::bind(v6, &c)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                println!("skipping ipv6_loopback_round_trip: cannot bind [::1]: {e}");
                return;
            }
        };
        round_trip(&a, &b, 64, 64);
        assert!(a.local_addr().unwrap().is_ipv6());
    }

    #[test]
    fn dual_stack_wildcard_reports_ipv4_peers_as_ipv4() {
        let c = UdpConfig::default();
        let Ok(v6) = BatchSocket::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)), &c) else {
            println!("skipping dual_stack test: cannot bind [::]");
            return;
        };
        let v4 = BatchSocket::bind(loopback4(), &c).unwrap();
        let v6_port = v6.local_addr().unwrap().port();
        let mut tx = SendBatch::new(&c);
        let mut rx = RecvBatch::new(&c);
        assert!(tx.push(SocketAddr::from((Ipv4Addr::LOCALHOST, v6_port)), b"ping"));
        flush(&v4, &mut tx);
        let got = collect(&v6, &mut rx, 1);
        assert_eq!(got, vec![(v4.local_addr().unwrap(), b"ping".to_vec())]);
        // And back: an IPv4 destination on the IPv6 socket goes out IPv4-mapped.
        assert!(tx.push(v4.local_addr().unwrap(), b"pong"));
        flush(&v6, &mut tx);
        let got = collect(&v4, &mut rx, 1);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.port(), v6_port);
        assert_eq!(got[0].1, b"pong");
    }

    #[test]
    fn empty_socket_returns_zero() {
        let sock = BatchSocket::bind(loopback4(), &UdpConfig::default()).unwrap();
        let mut rx = RecvBatch::new(&UdpConfig::default());
        assert_eq!(sock.recv_batch(&mut rx).unwrap(), 0);
        assert!(rx.is_empty());
        assert_eq!(rx.get(0), None);
        let mut tx = SendBatch::new(&UdpConfig::default());
        assert_eq!(sock.send_batch(&mut tx).unwrap(), 0);
    }

    #[test]
    fn long_datagrams_are_counted_and_left_out() {
        let a = BatchSocket::bind(loopback4(), &UdpConfig::default()).unwrap();
        let b = BatchSocket::bind(loopback4(), &cfg(8, 100)).unwrap();
        let to = b.local_addr().unwrap();
        let mut tx = SendBatch::new(&UdpConfig::default());
        for len in [50, 200, 100, 101] {
            assert!(tx.push(to, &pattern(len, len)));
        }
        flush(&a, &mut tx);
        let mut rx = RecvBatch::new(&cfg(8, 100));
        let mut seen = 0;
        let mut lens = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen < 4 && Instant::now() < deadline {
            seen += b.recv_batch(&mut rx).unwrap();
            lens.extend(rx.iter().map(|(_, d)| d.len()));
        }
        assert_eq!(seen, 4);
        assert_eq!(lens, vec![50, 100]);
        assert_eq!(rx.truncated(), 2);
    }

    #[test]
    fn send_queue_is_bounded_and_reusable() {
        let c = cfg(4, 10);
        let mut tx = SendBatch::new(&c);
        let to = loopback4();
        assert!(!tx.push(to, &[0; 11]), "longer than max_datagram");
        for i in 0..4u8 {
            assert!(tx.push(to, &[i; 10]));
        }
        assert!(!tx.push(to, &[9]), "full");
        assert_eq!(tx.len(), 4);
        // Sending two from the front frees room at the back (after compaction).
        tx.advance(2);
        assert_eq!(tx.len(), 2);
        assert!(tx.push(to, &[7; 10]));
        assert!(tx.push(to, &[8; 10]));
        assert!(!tx.push(to, &[]));
        let fronts: Vec<u8> = tx.queue[tx.head..]
            .iter()
            .map(|q| tx.arena[q.start])
            .collect();
        assert_eq!(fronts, vec![2, 3, 7, 8]);
        tx.clear();
        assert!(tx.is_empty());
        assert!(tx.push(to, &[]));
    }

    /// Let ICMP errors reach the socket even though it is not connected (test-only: the daemon
    /// does not set this, so such errors stay rare there, but the code must survive them).
    fn set_recverr(sock: &BatchSocket, v6: bool) {
        let on: libc::c_int = 1;
        let (level, opt) = if v6 {
            (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
        } else {
            (libc::IPPROTO_IP, libc::IP_RECVERR)
        };
        // SAFETY: `on` is a live c_int and its size is passed with it.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                level,
                opt,
                ptr::from_ref(&on).cast(),
                socklen_of::<libc::c_int>(),
            )
        };
        assert_eq!(rc, 0, "setsockopt: {}", io::Error::last_os_error());
    }

    /// A port with nothing listening on loopback (ICMP port unreachable when sent to).
    fn dead_port() -> SocketAddr {
        let s = BatchSocket::bind(loopback4(), &UdpConfig::default()).unwrap();
        s.local_addr().unwrap()
    }

    fn no_listener_does_not_wedge(recverr: bool) {
        let c = cfg(16, 2048);
        let a = BatchSocket::bind(loopback4(), &c).unwrap();
        let b = BatchSocket::bind(loopback4(), &c).unwrap();
        if recverr {
            set_recverr(&a, false);
            set_recverr(&b, false);
        }
        let (dead, live) = (dead_port(), b.local_addr().unwrap());
        let mut tx = SendBatch::new(&c);
        let mut rx = RecvBatch::new(&c);
        let mut got = Vec::new();
        for round in 0..10 {
            assert!(tx.push(dead, b"nobody home"));
            assert!(tx.push(live, &[round]));
            flush(&a, &mut tx);
            // Give the ICMP error time to land on the socket before the next send.
            std::thread::sleep(Duration::from_millis(2));
            got.extend(collect(&b, &mut rx, 1));
        }
        let payloads: Vec<u8> = got.iter().map(|(_, d)| d[0]).collect();
        assert_eq!(payloads, (0..10).collect::<Vec<u8>>());
        assert_eq!(
            tx.dropped(),
            0,
            "no datagram was at fault: {:?}",
            tx.last_drop()
        );
        // The receiving side survives errors queued on it as well: make `b` send to the dead
        // port, then receive on it.
        assert!(tx.push(dead, b"x"));
        flush(&b, &mut tx);
        std::thread::sleep(Duration::from_millis(2));
        assert!(tx.push(live, b"after"));
        flush(&a, &mut tx);
        let got = collect(&b, &mut rx, 1);
        assert_eq!(
            got.len(),
            1,
            "a queued ICMP error must not hide the datagram"
        );
        if recverr {
            assert!(
                rx.async_errors() + tx.retries() > 0,
                "the ICMP errors surfaced"
            );
        }
    }

    #[test]
    fn destination_without_listener_does_not_wedge_the_queue() {
        no_listener_does_not_wedge(false);
    }

    #[test]
    fn icmp_errors_reported_on_the_socket_do_not_wedge_the_queue() {
        no_listener_does_not_wedge(true);
    }

    #[test]
    fn refused_destination_is_dropped_and_counted() {
        let c = UdpConfig::default();
        let a = BatchSocket::bind(loopback4(), &c).unwrap();
        let b = BatchSocket::bind(loopback4(), &c).unwrap();
        let live = b.local_addr().unwrap();
        // An IPv4 socket cannot send to a (non-mapped) IPv6 address: the kernel refuses it.
        let v6: SocketAddr = "[2001:db8::1]:3322".parse().unwrap();
        let port0 = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let mut tx = SendBatch::new(&c);
        for d in [live, v6, live, port0, live] {
            assert!(tx.push(d, b"x"));
        }
        assert_eq!(flush(&a, &mut tx), 3);
        assert_eq!(tx.dropped(), 2);
        assert_eq!(tx.last_drop().map(|(to, _)| to), Some(port0));
        let mut rx = RecvBatch::new(&c);
        assert_eq!(collect(&b, &mut rx, 3).len(), 3);
    }

    #[test]
    fn sockaddr_conversions_round_trip() {
        // SAFETY: all-zero bytes are a valid `sockaddr_storage`.
        let mut ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
        for (addr, v6_socket, back) in [
            ("198.18.0.1:7001", false, "198.18.0.1:7001"),
            ("198.18.0.1:7001", true, "198.18.0.1:7001"),
            ("[2001:db8::5]:9", true, "[2001:db8::5]:9"),
            ("[::ffff:10.0.0.1]:80", false, "10.0.0.1:80"),
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let len = encode_sockaddr(addr, v6_socket, &mut ss);
            let decoded = decode_sockaddr(&ss, len).unwrap();
            assert_eq!(decoded, back.parse::<SocketAddr>().unwrap());
        }
        assert_eq!(decode_sockaddr(&ss, 0), None, "length too short");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn async_fd_smoke() {
        let c = UdpConfig::default();
        let a = BatchSocket::bind(loopback4(), &c)
            .unwrap()
            .into_async_fd()
            .unwrap();
        let b = BatchSocket::bind(loopback4(), &c)
            .unwrap()
            .into_async_fd()
            .unwrap();
        let to = b.get_ref().local_addr().unwrap();
        let mut tx = SendBatch::new(&c);
        for i in 0..10u8 {
            assert!(tx.push(to, &[i; 3]));
        }
        let work = async {
            while !tx.is_empty() {
                let mut ready = a.writable().await.unwrap();
                a.get_ref().send_batch(&mut tx).unwrap();
                if !tx.is_empty() {
                    ready.clear_ready();
                }
            }
            let mut rx = RecvBatch::new(&c);
            let mut got = Vec::new();
            while got.len() < 10 {
                let mut ready = b.readable().await.unwrap();
                if b.get_ref().recv_batch(&mut rx).unwrap() == 0 {
                    ready.clear_ready();
                    continue;
                }
                got.extend(rx.iter().map(|(_, d)| d[0]));
            }
            got
        };
        let got = tokio::time::timeout(Duration::from_secs(5), work)
            .await
            .expect("datagrams arrive through AsyncFd");
        assert_eq!(got, (0..10).collect::<Vec<u8>>());
    }
}
