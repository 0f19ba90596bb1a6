//! The `virtio_net_hdr` that a packet socket with `PACKET_VNET_HDR` puts before every frame
//! it receives and expects before every frame it sends: the frame's segmentation (GSO) and
//! checksum-offload state.
//!
//! Why it matters: a Linux host's own TCP/UDP stack hands a veth or tap large "super-frames"
//! (up to 64 KiB, one TCP header for many segments) and leaves checksums to offload; NICs
//! coalesce received segments the same way (GRO). Without this header a packet socket
//! delivers such a frame as one oversized packet with an incomplete checksum, and a forwarder
//! that treats it as an ordinary packet drops it (too big) — TCP through the router
//! collapses. With it, the router forwards the super-frame as one unit and hands the header
//! back on transmit, so the kernel (or the next device) segments it and finishes the
//! checksums, as kernel forwarding does.

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the L4 checksum is partial (pseudo-header only); it must be
/// completed over `csum_start..` and stored at `csum_start + csum_offset`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was verified (receive only).
pub const F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`: TCP over IPv4, segmented by `gso_size` payload bytes.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP_L4`: UDP datagrams of `gso_size` payload bytes each (`UDP_SEGMENT`).
pub const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN`: the TCP segments carry ECN (a flag on `gso_type`).
pub const GSO_ECN: u8 = 0x80;

/// One `struct virtio_net_hdr` (10 bytes, little-endian fields on every host this runs on:
/// packet sockets use the host's byte order, and this crate builds for little-endian Linux).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// [`F_NEEDS_CSUM`], [`F_DATA_VALID`].
    pub flags: u8,
    /// [`GSO_NONE`], [`GSO_TCPV4`], [`GSO_UDP_L4`], … possibly with [`GSO_ECN`].
    pub gso_type: u8,
    /// Bytes of headers (Ethernet + IP + L4) before the segmented payload (a hint).
    pub hdr_len: u16,
    /// Payload bytes per segment when `gso_type` is not [`GSO_NONE`].
    pub gso_size: u16,
    /// Where checksumming starts, from the start of the Ethernet header.
    pub csum_start: u16,
    /// Where the checksum goes, from `csum_start`.
    pub csum_offset: u16,
}

#[cfg(not(target_endian = "little"))]
compile_error!("the virtio_net_hdr handling assumes a little-endian host");

impl VnetHdr {
    /// Its size on the wire of the socket.
    pub const LEN: usize = 10;

    /// A header that asks for nothing: a complete frame, no segmentation.
    pub const NONE: VnetHdr = VnetHdr {
        flags: 0,
        gso_type: GSO_NONE,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Read a header from its 10 bytes.
    pub fn parse(b: &[u8; Self::LEN]) -> VnetHdr {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        }
    }

    /// The header's 10 bytes.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }

    /// `true` for a super-frame the kernel segments on transmit.
    pub fn is_gso(&self) -> bool {
        self.gso_type != GSO_NONE
    }

    /// `true` when the L4 checksum is left to offload.
    pub fn needs_csum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }

    /// The header to send a received frame on with: its segmentation and partial checksum
    /// carried over, the receive-only "data valid" flag dropped.
    pub fn for_transmit(&self) -> VnetHdr {
        VnetHdr {
            flags: self.flags & F_NEEDS_CSUM,
            ..*self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_the_kernel_layout() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_ECN,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let b = h.to_bytes();
        assert_eq!(b, [1, 0x81, 66, 0, 0xa8, 0x05, 34, 0, 16, 0]);
        assert_eq!(VnetHdr::parse(&b), h);
        assert!(h.is_gso() && h.needs_csum());
        assert!(!VnetHdr::NONE.is_gso() && !VnetHdr::NONE.needs_csum());
        let valid = VnetHdr {
            flags: F_DATA_VALID,
            ..VnetHdr::NONE
        };
        assert_eq!(valid.for_transmit(), VnetHdr::NONE);
        assert_eq!(h.for_transmit(), h);
    }
}
