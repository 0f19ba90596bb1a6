//! The `TPACKET_V3` receive ring: the kernel fills whole blocks of frames, hands a block to
//! us by setting its status word, and takes it back when we set it again.
//!
//! - [`RxRing`]: the mapped ring and the index of the next block to look at.
//! - [`FrameMeta`], [`PacketType`]: what the kernel says about each frame beside its bytes.
//! - [`RxCounters`]: frames delivered and frames left out (truncated, outgoing, malformed).
//! - `walk_block`: the bounds-checked parser of one block, a safe function over a byte
//!   slice so it is unit-tested on synthetic blocks.
//!
//! Looking for work costs one atomic load of the next block's status word and no syscall.

use std::mem;
use std::sync::atomic::{AtomicU32, Ordering};

use super::vnet::VnetHdr;
use crate::sys::Mmap;

/// Offset of `block_status` in a block (`tpacket_block_desc.hdr.bh1.block_status`).
const BLOCK_STATUS: usize = mem::offset_of!(libc::tpacket_block_desc, hdr)
    + mem::offset_of!(libc::tpacket_hdr_v1, block_status);
/// Offset of `num_pkts` in a block.
const BLOCK_NUM_PKTS: usize = mem::offset_of!(libc::tpacket_block_desc, hdr)
    + mem::offset_of!(libc::tpacket_hdr_v1, num_pkts);
/// Offset of `offset_to_first_pkt` in a block.
const BLOCK_FIRST_PKT: usize = mem::offset_of!(libc::tpacket_block_desc, hdr)
    + mem::offset_of!(libc::tpacket_hdr_v1, offset_to_first_pkt);

/// Field offsets of `tpacket3_hdr`, the header before every frame in a block.
const H_NEXT: usize = mem::offset_of!(libc::tpacket3_hdr, tp_next_offset);
const H_SNAPLEN: usize = mem::offset_of!(libc::tpacket3_hdr, tp_snaplen);
const H_LEN: usize = mem::offset_of!(libc::tpacket3_hdr, tp_len);
const H_STATUS: usize = mem::offset_of!(libc::tpacket3_hdr, tp_status);
const H_MAC: usize = mem::offset_of!(libc::tpacket3_hdr, tp_mac);
const H_VLAN_TCI: usize = mem::offset_of!(libc::tpacket3_hdr, hv1)
    + mem::offset_of!(libc::tpacket_hdr_variant1, tp_vlan_tci);
/// The frame header proper; the kernel puts a `sockaddr_ll` right after it (16-aligned).
const H_SIZE: usize = mem::size_of::<libc::tpacket3_hdr>();
/// Offset of `sll_pkttype` of the `sockaddr_ll` that follows the frame header.
const H_PKTTYPE: usize = H_SIZE.next_multiple_of(libc::TPACKET_ALIGNMENT)
    + mem::offset_of!(libc::sockaddr_ll, sll_pkttype);
/// End of the `sockaddr_ll`; a `virtio_net_hdr` may follow, then the frame.
const H_SLL_END: usize =
    H_SIZE.next_multiple_of(libc::TPACKET_ALIGNMENT) + mem::size_of::<libc::sockaddr_ll>();

/// Where a received frame was headed, from the kernel's `sll_pkttype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// Addressed to this interface's MAC address.
    Host,
    /// Ethernet broadcast.
    Broadcast,
    /// Ethernet multicast.
    Multicast,
    /// Unicast to another MAC address (seen in promiscuous mode only).
    OtherHost,
    /// Any other code (loopback, user, kernel); the number is the kernel's.
    Other(u8),
}

impl PacketType {
    fn from_code(code: u8) -> PacketType {
        match code {
            libc::PACKET_HOST => PacketType::Host,
            libc::PACKET_BROADCAST => PacketType::Broadcast,
            libc::PACKET_MULTICAST => PacketType::Multicast,
            libc::PACKET_OTHERHOST => PacketType::OtherHost,
            other => PacketType::Other(other),
        }
    }
}

/// What the kernel reports about one received frame beside its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta {
    /// Where the frame was headed.
    pub pkt_type: PacketType,
    /// `TP_STATUS_CSUMNOTREADY`: the frame came from this host's own stack (e.g. through a
    /// veth) with its TCP/UDP checksum left for offload, so the checksum field holds only the
    /// pseudo-header sum. A forwarder must complete the checksum before sending the frame on
    /// a link that does not offload it, or the receiver drops it.
    pub csum_not_ready: bool,
    /// `TP_STATUS_CSUM_VALID`: the device (or the sending stack) vouched for the checksum.
    pub csum_valid: bool,
    /// The 802.1Q tag the device stripped from the frame, if any (the bytes handed over
    /// carry no tag then).
    pub vlan_tci: Option<u16>,
    /// The frame's segmentation and checksum-offload state (`PACKET_VNET_HDR`; all zero when
    /// the socket does not ask for it): a GSO/GRO super-frame says so here.
    pub vnet: VnetHdr,
}

/// Counters of the receive ring since the socket was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxCounters {
    /// Blocks taken from the kernel and given back.
    pub blocks: u64,
    /// Frames handed to the callback.
    pub frames: u64,
    /// Frames left out because the ring held only part of them (longer than a block).
    pub truncated: u64,
    /// Frames left out because they were this host's own transmissions (only seen where the
    /// kernel lacks `PACKET_IGNORE_OUTGOING`).
    pub outgoing: u64,
    /// Frame headers whose offsets or lengths did not fit their block (never seen from a
    /// correct kernel; the rest of that block is skipped).
    pub malformed: u64,
}

/// A mapped `TPACKET_V3` receive ring.
#[derive(Debug)]
pub struct RxRing {
    map: Mmap,
    block_size: usize,
    block_count: usize,
    next: usize,
    vnet: bool,
    counters: RxCounters,
}

impl RxRing {
    /// Take over a ring of `block_count` blocks of `block_size` bytes mapped at `map`; `vnet`
    /// when the socket has `PACKET_VNET_HDR` (a `virtio_net_hdr` precedes every frame).
    pub(super) fn new(map: Mmap, block_size: usize, block_count: usize, vnet: bool) -> RxRing {
        debug_assert!(block_size * block_count <= map.len());
        RxRing {
            map,
            block_size,
            block_count,
            next: 0,
            vnet,
            counters: RxCounters::default(),
        }
    }

    /// Counters since the socket was opened.
    pub fn counters(&self) -> RxCounters {
        self.counters
    }

    /// `true` when the kernel has handed over the next block (one atomic load, no syscall).
    pub fn is_ready(&self) -> bool {
        self.status(self.next).load(Ordering::Acquire) & libc::TP_STATUS_USER != 0
    }

    /// The status word of block `i`.
    fn status(&self, i: usize) -> &AtomicU32 {
        let i = i % self.block_count;
        // SAFETY: block `i` lies inside the mapping (`i < block_count` and the mapping covers
        // `block_count * block_size` bytes), blocks start page-aligned so the word at offset
        // 8 is 4-aligned, and the mapping lives as long as `self`. The kernel updates this
        // word with plain stores ordered by barriers and we only touch it atomically, which
        // is the protocol every `TPACKET_V3` reader follows.
        unsafe {
            let p = self
                .map
                .base()
                .as_ptr()
                .add(i * self.block_size + BLOCK_STATUS);
            AtomicU32::from_ptr(p.cast::<u32>())
        }
    }

    /// Visit the frames of up to `max_blocks` retired blocks, in arrival order, then give
    /// each block back to the kernel. Returns the frames handed to `f`.
    ///
    /// `f` gets each frame (Ethernet header first) mutable, in ring memory: rewrite it in
    /// place and copy it to a transmit queue before returning. No syscall is made; when no
    /// block is ready this is one atomic load and returns 0.
    pub fn recv_blocks(
        &mut self,
        max_blocks: usize,
        mut f: impl FnMut(&mut [u8], FrameMeta),
    ) -> usize {
        let mut frames = 0;
        for _ in 0..max_blocks {
            if !self.is_ready() {
                break;
            }
            let (i, bs) = (self.next, self.block_size);
            {
                // SAFETY: the status word says the kernel handed block `i` to us (read with
                // Acquire, so its contents are visible); it does not touch the block again
                // until we store TP_STATUS_KERNEL below, after this slice is gone. The slice
                // lies inside the mapping, which `&mut self` keeps alive and unaliased.
                let block = unsafe {
                    std::slice::from_raw_parts_mut(self.map.base().as_ptr().add(i * bs), bs)
                };
                frames += walk_block(block, self.vnet, &mut self.counters, &mut f);
            }
            self.status(i)
                .store(libc::TP_STATUS_KERNEL, Ordering::Release);
            self.counters.blocks += 1;
            self.next = (i + 1) % self.block_count;
        }
        frames
    }
}

fn read_u32(b: &[u8], off: usize) -> Option<u32> {
    let bytes = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_ne_bytes(bytes.try_into().ok()?))
}

fn read_u16(b: &[u8], off: usize) -> Option<u16> {
    let bytes = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_ne_bytes(bytes.try_into().ok()?))
}

/// One frame header, read and checked against its block.
struct FrameHeader {
    next: usize,
    /// Offset of the first byte after the `sockaddr_ll`: the `virtio_net_hdr`, when the
    /// socket asked for one, lies between here and `data.start`.
    after_sll: usize,
    data: std::ops::Range<usize>,
    wire_len: usize,
    status: u32,
    pkt_type: u8,
    vlan_tci: u16,
}

impl FrameHeader {
    /// The header at `off`, or `None` when any of its fields points outside `block`.
    fn parse(block: &[u8], off: usize) -> Option<FrameHeader> {
        let at = |field| off.checked_add(field);
        let next = read_u32(block, at(H_NEXT)?)? as usize;
        let snaplen = read_u32(block, at(H_SNAPLEN)?)? as usize;
        let wire_len = read_u32(block, at(H_LEN)?)? as usize;
        let status = read_u32(block, at(H_STATUS)?)?;
        let mac = usize::from(read_u16(block, at(H_MAC)?)?);
        let vlan_tci = read_u32(block, at(H_VLAN_TCI)?)? as u16;
        let pkt_type = *block.get(at(H_PKTTYPE)?)?;
        let start = off.checked_add(mac).filter(|_| mac > H_PKTTYPE)?;
        let end = start.checked_add(snaplen).filter(|&e| e <= block.len())?;
        Some(FrameHeader {
            next,
            after_sll: off + H_SLL_END,
            data: start..end,
            wire_len,
            status,
            pkt_type,
            vlan_tci,
        })
    }
}

/// Hand every whole, incoming frame of one retired block to `f`; returns how many.
///
/// Every offset and length is checked against the block, so a block the kernel did not
/// write as documented is skipped (counted in `malformed`), never read out of bounds.
pub(super) fn walk_block(
    block: &mut [u8],
    vnet: bool,
    counters: &mut RxCounters,
    f: &mut impl FnMut(&mut [u8], FrameMeta),
) -> usize {
    let (Some(num), Some(first)) = (
        read_u32(block, BLOCK_NUM_PKTS),
        read_u32(block, BLOCK_FIRST_PKT),
    ) else {
        counters.malformed += 1;
        return 0;
    };
    // Each frame takes at least its header, so a block cannot hold more than this.
    let num = (num as usize).min(block.len() / H_SIZE);
    let mut off = first as usize;
    let mut delivered = 0;
    for i in 0..num {
        let Some(h) = FrameHeader::parse(block, off) else {
            counters.malformed += 1;
            break;
        };
        if h.pkt_type == libc::PACKET_OUTGOING {
            counters.outgoing += 1;
        } else if h.data.len() < h.wire_len {
            counters.truncated += 1;
        } else if let Some(vnet) = read_vnet(block, &h, vnet) {
            let Some(frame) = block.get_mut(h.data.clone()) else {
                counters.malformed += 1;
                break;
            };
            let meta = FrameMeta {
                pkt_type: PacketType::from_code(h.pkt_type),
                csum_not_ready: h.status & libc::TP_STATUS_CSUMNOTREADY != 0,
                csum_valid: h.status & libc::TP_STATUS_CSUM_VALID != 0,
                vlan_tci: (h.status & libc::TP_STATUS_VLAN_VALID != 0).then_some(h.vlan_tci),
                vnet,
            };
            f(frame, meta);
            delivered += 1;
        } else {
            counters.malformed += 1;
        }
        if i + 1 == num {
            break;
        }
        if h.next < H_SIZE {
            // Only the last frame of a block may have no successor.
            counters.malformed += 1;
            break;
        }
        off = match off.checked_add(h.next) {
            Some(o) => o,
            None => break,
        };
    }
    counters.frames += delivered as u64;
    delivered
}

/// The `virtio_net_hdr` right before the frame when the socket asked for one (it must lie
/// after the `sockaddr_ll`), [`VnetHdr::NONE`] otherwise; `None` when it does not fit.
fn read_vnet(block: &[u8], h: &FrameHeader, vnet: bool) -> Option<VnetHdr> {
    if !vnet {
        return Some(VnetHdr::NONE);
    }
    let start = h.data.start.checked_sub(VnetHdr::LEN)?;
    if start < h.after_sll {
        return None;
    }
    let bytes: &[u8; VnetHdr::LEN] = block.get(start..h.data.start)?.try_into().ok()?;
    Some(VnetHdr::parse(bytes))
}

/// Make sure the status word can be used as an `AtomicU32` wherever a block starts.
const _: () = assert!(BLOCK_STATUS.is_multiple_of(mem::align_of::<AtomicU32>()));

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout facts the parser relies on, as the kernel headers define them.
    #[test]
    fn offsets_match_the_kernel_abi() {
        assert_eq!((BLOCK_STATUS, BLOCK_NUM_PKTS, BLOCK_FIRST_PKT), (8, 12, 16));
        assert_eq!(
            (H_NEXT, H_SNAPLEN, H_LEN, H_STATUS, H_MAC),
            (0, 12, 16, 20, 24)
        );
        assert_eq!((H_VLAN_TCI, H_SIZE, H_PKTTYPE), (32, 48, 58));
    }

    /// A synthetic block, laid out as the kernel writes one.
    struct BlockBuilder {
        buf: Vec<u8>,
        offsets: Vec<usize>,
        end: usize,
    }

    impl BlockBuilder {
        fn new(size: usize) -> Self {
            let first = 48;
            let mut b = BlockBuilder {
                buf: vec![0; size],
                offsets: Vec::new(),
                end: first,
            };
            b.put(BLOCK_FIRST_PKT, first as u32);
            b
        }

        fn put(&mut self, off: usize, v: u32) {
            self.buf[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        }

        /// Append a frame whose captured bytes are `data` of `wire_len` on the wire.
        fn frame(&mut self, data: &[u8], wire_len: usize, status: u32, pkt_type: u8, tci: u32) {
            let off = self.end;
            let mac = 82; // what the kernel uses for a 14-byte Ethernet header
            self.put(off + H_SNAPLEN, data.len() as u32);
            self.put(off + H_LEN, wire_len as u32);
            self.put(off + H_STATUS, status);
            self.buf[off + H_MAC..off + H_MAC + 2].copy_from_slice(&(mac as u16).to_ne_bytes());
            self.put(off + H_VLAN_TCI, tci);
            self.buf[off + H_PKTTYPE] = pkt_type;
            self.buf[off + mac..off + mac + data.len()].copy_from_slice(data);
            let next = (mac + data.len()).next_multiple_of(16);
            if let Some(&prev) = self.offsets.last() {
                self.put(prev + H_NEXT, (off - prev) as u32);
            }
            self.offsets.push(off);
            self.end = off + next;
            self.put(BLOCK_NUM_PKTS, self.offsets.len() as u32);
        }
    }

    fn collect(block: &mut [u8]) -> (Vec<(Vec<u8>, FrameMeta)>, RxCounters) {
        collect_with(block, false)
    }

    fn collect_with(block: &mut [u8], vnet: bool) -> (Vec<(Vec<u8>, FrameMeta)>, RxCounters) {
        let mut counters = RxCounters::default();
        let mut got = Vec::new();
        let n = walk_block(block, vnet, &mut counters, &mut |f: &mut [u8], m| {
            got.push((f.to_vec(), m))
        });
        assert_eq!(n, got.len());
        (got, counters)
    }

    #[test]
    fn walks_frames_and_reports_their_meta() {
        let mut b = BlockBuilder::new(4096);
        b.frame(
            b"first frame",
            11,
            libc::TP_STATUS_USER,
            libc::PACKET_HOST,
            0,
        );
        b.frame(
            &[7; 100],
            100,
            libc::TP_STATUS_CSUMNOTREADY,
            libc::PACKET_BROADCAST,
            0,
        );
        b.frame(
            b"tagged",
            6,
            libc::TP_STATUS_VLAN_VALID | libc::TP_STATUS_CSUM_VALID,
            2,
            0x2064,
        );
        let (got, c) = collect(&mut b.buf);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, b"first frame");
        assert_eq!(got[0].1.pkt_type, PacketType::Host);
        assert!(!got[0].1.csum_not_ready && got[0].1.vlan_tci.is_none());
        assert_eq!(got[1].0, vec![7; 100]);
        assert!(got[1].1.csum_not_ready);
        assert_eq!(got[1].1.pkt_type, PacketType::Broadcast);
        assert_eq!(got[2].1.vlan_tci, Some(0x2064));
        assert!(got[2].1.csum_valid);
        assert_eq!(got[2].1.pkt_type, PacketType::Multicast);
        assert_eq!(c.frames, 3);
        assert_eq!((c.truncated, c.outgoing, c.malformed), (0, 0, 0));
    }

    #[test]
    fn the_vnet_header_before_each_frame_is_reported() {
        let mut b = BlockBuilder::new(4096);
        let gso = VnetHdr {
            flags: super::super::vnet::F_NEEDS_CSUM,
            gso_type: super::super::vnet::GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        b.frame(b"super-frame", 11, 0, libc::PACKET_HOST, 0);
        let at = b.offsets[0] + 82 - VnetHdr::LEN;
        b.buf[at..at + VnetHdr::LEN].copy_from_slice(&gso.to_bytes());
        b.frame(b"plain", 5, 0, libc::PACKET_HOST, 0);
        let (got, c) = collect_with(&mut b.buf, true);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].0.as_slice(), got[0].1.vnet),
            (&b"super-frame"[..], gso)
        );
        assert_eq!(got[1].1.vnet, VnetHdr::NONE);
        assert_eq!(c.malformed, 0);
        // Without PACKET_VNET_HDR the same bytes are not read as a header.
        let (got, _) = collect(&mut b.buf);
        assert_eq!(got[0].1.vnet, VnetHdr::NONE);
        // A frame whose data starts right after the sockaddr_ll has no room for a header:
        // counted as malformed, never read from the sockaddr_ll.
        let mut tight = BlockBuilder::new(4096);
        tight.frame(b"x", 1, 0, libc::PACKET_HOST, 0);
        let off = tight.offsets[0];
        let mac = (H_SLL_END as u16).to_ne_bytes();
        tight.buf[off + H_MAC..off + H_MAC + 2].copy_from_slice(&mac);
        let (got, c) = collect_with(&mut tight.buf, true);
        assert!(got.is_empty());
        assert_eq!(c.malformed, 1);
    }

    #[test]
    fn frames_are_writable_in_place() {
        let mut b = BlockBuilder::new(4096);
        b.frame(b"abc", 3, 0, 0, 0);
        let mut c = RxCounters::default();
        walk_block(&mut b.buf, false, &mut c, &mut |f: &mut [u8], _| {
            f[0] = b'X'
        });
        let (got, _) = collect(&mut b.buf);
        assert_eq!(got[0].0, b"Xbc");
    }

    #[test]
    fn truncated_and_outgoing_frames_are_counted_and_left_out() {
        let mut b = BlockBuilder::new(4096);
        b.frame(b"partial", 9000, 0, libc::PACKET_HOST, 0);
        b.frame(b"ours", 4, 0, libc::PACKET_OUTGOING, 0);
        b.frame(b"whole", 5, 0, libc::PACKET_HOST, 0);
        let (got, c) = collect(&mut b.buf);
        assert_eq!(
            got.iter().map(|g| g.0.clone()).collect::<Vec<_>>(),
            vec![b"whole".to_vec()]
        );
        assert_eq!((c.truncated, c.outgoing, c.frames), (1, 1, 1));
    }

    #[test]
    fn empty_block_yields_nothing() {
        let mut b = BlockBuilder::new(4096);
        let (got, c) = collect(&mut b.buf);
        assert!(got.is_empty());
        assert_eq!(c, RxCounters::default());
    }

    #[test]
    fn malformed_blocks_never_read_out_of_bounds() {
        let mut good = BlockBuilder::new(1024);
        good.frame(&[1; 40], 40, 0, 0, 0);
        good.frame(&[2; 40], 40, 0, 0, 0);
        let base = good.buf.clone();
        // Corrupt every field, one at a time, with hostile values.
        let fields = [
            BLOCK_NUM_PKTS,
            BLOCK_FIRST_PKT,
            48 + H_NEXT,
            48 + H_SNAPLEN,
            48 + H_MAC,
        ];
        for field in fields {
            for v in [0u32, 1, 47, 1000, 1023, 1024, 0xffff, u32::MAX] {
                let mut buf = base.clone();
                buf[field..field + 4].copy_from_slice(&v.to_ne_bytes());
                let (got, c) = collect(&mut buf);
                assert!(got.len() <= 2, "field {field} = {v}");
                let _ = c;
            }
        }
        // A block too short to hold its own header.
        let (got, c) = collect(&mut [0u8; 10]);
        assert!(got.is_empty());
        assert_eq!(c.malformed, 1);
        // Garbage everywhere.
        let mut junk: Vec<u8> = (0..2048u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let (got, _) = collect(&mut junk);
        assert!(got.len() <= 2048 / H_SIZE);
    }
}
