//! The Internet checksum (RFC 1071) for validating what arrives, and its incremental update
//! (RFC 1624) for the TTL decrement on the forwarding path.
//!
//! Frames the router *builds* use these too for IPv4 headers and UDP (see `frame`; ICMP,
//! which is rate-limited, uses pnet's helper); written for speed and checked against pnet in
//! the tests.

/// One's-complement sum of `data` as big-endian 16-bit words (an odd last byte is padded
/// with zero), not yet folded. A `u64` cannot overflow for any packet size.
#[inline]
pub(crate) fn sum(data: &[u8]) -> u64 {
    // 16 bytes at a time into four independent accumulators (no carry chain between
    // them), each word read in native order: a one's-complement sum is the same whichever
    // byte order its 16-bit words are added in, once swapped back (RFC 1071 §2(B)); folded
    // to 32 bits and swapped to big-endian words below. A u64 holds 2^32 words' sum.
    let mut lanes = [0u64; 4];
    let mut blocks = data.chunks_exact(16);
    for b in &mut blocks {
        for (k, lane) in lanes.iter_mut().enumerate() {
            let w = &b[4 * k..4 * k + 4];
            *lane += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
        }
    }
    let wide = lanes.iter().fold(0u64, |a, &l| {
        let (s, carry) = a.overflowing_add(l);
        s + u64::from(carry)
    });
    let folded = (wide >> 32) + (wide & 0xffff_ffff);
    let folded = (folded >> 32) + (folded & 0xffff_ffff); // < 2^32
    let mut acc = u64::from(swap_words(folded as u32));
    let mut words = blocks.remainder().chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        acc += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// A 32-bit sum of native-order words as the same sum of big-endian 16-bit words (each
/// 16-bit half byte-swapped on little-endian machines; unchanged on big-endian ones).
#[inline]
fn swap_words(x: u32) -> u32 {
    if cfg!(target_endian = "little") {
        ((x & 0x00ff_00ff) << 8) | ((x >> 8) & 0x00ff_00ff)
    } else {
        x
    }
}

/// Fold a sum to 16 bits with end-around carry.
#[inline]
pub(crate) fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// `data` (checksum field included) carries a valid Internet checksum.
#[inline]
pub(crate) fn verify(data: &[u8]) -> bool {
    fold(sum(data)) == 0xffff
}

/// The UDP/TCP pseudo-header sum for IPv4 (RFC 768).
#[inline]
pub(crate) fn pseudo_header(src: u32, dst: u32, proto: u8, len: u16) -> u64 {
    u64::from(src >> 16)
        + u64::from(src & 0xffff)
        + u64::from(dst >> 16)
        + u64::from(dst & 0xffff)
        + u64::from(proto)
        + u64::from(len)
}

/// RFC 1624 eqn. 3: the checksum `hc` after one 16-bit word of the covered data changed from
/// `old` to `new`: `HC' = ~(~HC + ~m + m')`. Unlike eqn. 2 it never produces `0xFFFF` for a
/// header whose full recomputation gives `0x0000`.
#[inline]
pub(crate) fn update(hc: u16, old: u16, new: u16) -> u16 {
    let acc = u64::from(!hc) + u64::from(!old) + u64::from(new);
    !fold(acc)
}

/// Where the TCP/UDP checksum of an Ethernet + IPv4 frame lives, for the two functions
/// below: only for an unfragmented TCP or UDP packet whose header and checksum field fit the
/// frame.
struct L4Checksum {
    /// The L4 segment's range in the frame.
    l4: std::ops::Range<usize>,
    /// The checksum field's offset in the segment.
    at: usize,
    /// The pseudo-header sum (not folded) of the segment.
    pseudo: u64,
    proto: u8,
}

impl L4Checksum {
    fn find(frame: &[u8]) -> Option<L4Checksum> {
        const ETH: usize = 14;
        let ip = frame.get(ETH..)?;
        if frame.get(12..14) != Some(&[0x08, 0x00]) || ip.len() < 20 || ip[0] >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let fragmented = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
        if ihl < 20 || total < ihl || total > ip.len() || fragmented {
            return None;
        }
        let (proto, at) = match ip[9] {
            6 => (6u8, 16usize),
            17 => (17u8, 6usize),
            _ => return None,
        };
        let len = total - ihl;
        if len < at + 2 {
            return None;
        }
        let src = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
        let dst = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
        Some(L4Checksum {
            l4: ETH + ihl..ETH + total,
            at,
            pseudo: pseudo_header(src, dst, proto, len as u16),
            proto,
        })
    }
}

/// Write the full TCP or UDP checksum of an Ethernet + IPv4 frame whose sender left it to
/// offload (the kernel's `CHECKSUM_PARTIAL`, reported by AF_PACKET as "checksum not ready":
/// the field holds only the pseudo-header sum). Frames from a local stack over a veth or tap
/// arrive like this; a forwarder outside the kernel must finish them or the receiver drops
/// them. Returns `false` (frame untouched) for anything that is not an unfragmented IPv4
/// TCP/UDP packet that fits the frame.
pub fn complete_l4_checksum(frame: &mut [u8]) -> bool {
    let Some(c) = L4Checksum::find(frame) else {
        return false;
    };
    let l4 = &mut frame[c.l4];
    l4[c.at..c.at + 2].fill(0);
    let mut value = !fold(c.pseudo + sum(l4));
    if c.proto == 17 && value == 0 {
        value = 0xffff; // 0 means "no checksum" in UDP
    }
    l4[c.at..c.at + 2].copy_from_slice(&value.to_be_bytes());
    true
}

/// `true` when the TCP/UDP checksum of the unfragmented IPv4 packet in Ethernet `frame`
/// holds exactly the pseudo-header sum — what a local stack leaving the checksum to offload
/// writes there. Drivers that receive no offload metadata (AF_XDP) use this to find such
/// frames and [`complete_l4_checksum`] them; a complete checksum that happens to equal the
/// sum (one in 65,536) is recomputed to the same value, so the test is safe either way.
pub fn l4_checksum_is_pseudo_header(frame: &[u8]) -> bool {
    let Some(c) = L4Checksum::find(frame) else {
        return false;
    };
    let at = c.l4.start + c.at;
    let field = u16::from_be_bytes([frame[at], frame[at + 1]]);
    field != 0 && field == fold(c.pseudo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Full recomputation over a header whose checksum field is at `at` (word index).
    fn full(words: &[u16], at: usize) -> u16 {
        let bytes: Vec<u8> = words
            .iter()
            .enumerate()
            .flat_map(|(i, w)| if i == at { [0, 0] } else { w.to_be_bytes() })
            .collect();
        !fold(sum(&bytes))
    }

    fn bytes(words: &[u16]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_be_bytes()).collect()
    }

    /// Ethernet + IPv4 + `proto` segment of `len` bytes with a garbage L4 checksum.
    fn frame(proto: u8, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + len];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let total = (20 + len) as u16;
        f[14] = 0x45;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f[22] = 64;
        f[23] = proto;
        f[26..30].copy_from_slice(&[198, 18, 1, 10]);
        f[30..34].copy_from_slice(&[198, 18, 3, 10]);
        for (i, b) in f[34..].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(13);
        }
        if proto == 17 {
            f[38..40].copy_from_slice(&(len as u16).to_be_bytes());
        }
        f
    }

    #[test]
    fn completes_udp_and_tcp_checksums_like_pnet() {
        use pnet_packet::{tcp::TcpPacket, udp::UdpPacket};
        let (src, dst) = ([198, 18, 1, 10].into(), [198, 18, 3, 10].into());
        for len in [8usize, 9, 100, 1001] {
            let mut f = frame(17, len);
            assert!(complete_l4_checksum(&mut f));
            let udp = UdpPacket::new(&f[34..]).unwrap();
            assert_eq!(
                udp.get_checksum(),
                pnet_packet::udp::ipv4_checksum(&udp, &src, &dst)
            );
            let mut f = frame(6, len + 20);
            f[46] = 0x50; // data offset 5
            assert!(complete_l4_checksum(&mut f));
            let tcp = TcpPacket::new(&f[34..]).unwrap();
            assert_eq!(
                tcp.get_checksum(),
                pnet_packet::tcp::ipv4_checksum(&tcp, &src, &dst)
            );
        }
        // Not TCP/UDP, fragments, lies about lengths: untouched.
        let mut icmp = frame(1, 16);
        let before = icmp.clone();
        assert!(!complete_l4_checksum(&mut icmp));
        assert_eq!(icmp, before);
        let mut frag = frame(17, 16);
        frag[20] = 0x20; // more fragments
        assert!(!complete_l4_checksum(&mut frag));
        let mut long = frame(17, 16);
        long[16..18].copy_from_slice(&9000u16.to_be_bytes());
        assert!(!complete_l4_checksum(&mut long));
        assert!(!complete_l4_checksum(&mut [0u8; 20]));
    }

    #[test]
    fn agrees_with_pnet() {
        let data: Vec<u8> = (0u8..=40).map(|b| b.wrapping_mul(37)).collect();
        for len in 0..data.len() {
            let d = &data[..len];
            // pnet skips the word at `skipword`; use one beyond the data.
            let theirs = pnet_packet::util::checksum(d, 1000);
            let ours = if len == 0 { 0 } else { !fold(sum(d)) };
            assert_eq!(ours, theirs, "len {len}");
        }
    }

    #[test]
    fn pseudo_header_sums_are_recognised() {
        // A UDP datagram whose checksum field holds the pseudo-header sum, then completed.
        let mut f = vec![0u8; 14 + 20 + 8 + 4];
        f[12] = 0x08;
        f[14] = 0x45;
        f[16..18].copy_from_slice(&32u16.to_be_bytes());
        f[23] = 17;
        f[26..30].copy_from_slice(&[198, 18, 0, 1]);
        f[30..34].copy_from_slice(&[198, 18, 0, 2]);
        f[38..40].copy_from_slice(&12u16.to_be_bytes());
        f[42..46].copy_from_slice(b"data");
        let p = fold(pseudo_header(0xc612_0001, 0xc612_0002, 17, 12));
        f[40..42].copy_from_slice(&p.to_be_bytes());
        assert!(l4_checksum_is_pseudo_header(&f));
        assert!(complete_l4_checksum(&mut f));
        assert!(
            !l4_checksum_is_pseudo_header(&f),
            "a complete checksum is not"
        );
        // Completing a complete checksum changes nothing.
        let before = f.clone();
        assert!(complete_l4_checksum(&mut f));
        assert_eq!(f, before);
        assert!(!l4_checksum_is_pseudo_header(&f[..20]));
    }

    #[test]
    fn rfc1624_examples() {
        // RFC 1624 §4: HC = 0xDD2F, m = 0x5555 -> m' = 0x3285 gives HC' = 0x0000
        // (eqn. 2 would give 0xFFFF).
        assert_eq!(update(0xdd2f, 0x5555, 0x3285), 0x0000);
        // No change is no change, even at the edges.
        for hc in [0x0000, 0xffff, 0x1234] {
            assert_eq!(
                update(hc, 0xabcd, 0xabcd),
                if hc == 0xffff { 0x0000 } else { hc }
            );
        }
    }

    /// Make the 10-word header (checksum at word 5, ignored) sum to exactly `0xFFFF` by
    /// solving for word `free`, so its checksum is `0x0000` — the edge case where RFC 1624
    /// eqn. 2 answers `0xFFFF` instead.
    fn solve_zero_checksum(words: &mut [u16; 10], free: usize) {
        words[5] = 0;
        words[free] = 0;
        let s = fold(sum(&bytes(words)));
        // s ∈ [1, 0xFFFF] (word 0 is never zero); s + x = 0xFFFF.
        words[free] = 0xffff - s;
    }

    proptest! {
        /// The 8-bytes-at-a-time sum agrees with pnet's word loop for any data, all-0xFF
        /// runs (every carry) and odd lengths included, and is 0 exactly for zero data.
        #[test]
        fn wide_sum_agrees_with_pnet(
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            ones in any::<bool>(),
        ) {
            let data = if ones { vec![0xff; data.len()] } else { data };
            let theirs = pnet_packet::util::checksum(&data, data.len() + 1);
            let ours = !fold(sum(&data));
            prop_assert_eq!(ours, theirs, "len {}", data.len());
            prop_assert_eq!(sum(&data) == 0, data.iter().all(|&b| b == 0));
        }

        /// TTL decrement via eqn. 3 equals full recomputation, for any header, including those
        /// whose checksum is 0x0000 before (`edge` 1) or after (`edge` 2) the update.
        #[test]
        fn ttl_decrement_matches_recomputation(
            mut words in proptest::array::uniform10(any::<u16>()),
            edge in 0u8..3,
        ) {
            words[0] = 0x4500 | (words[0] & 0x00ff);
            let old = words[4];
            let ttl = (old >> 8) as u8;
            prop_assume!(ttl > 0);
            let new = (u16::from(ttl - 1) << 8) | (old & 0xff);
            match edge {
                1 => solve_zero_checksum(&mut words, 2),
                2 => {
                    words[4] = new;
                    solve_zero_checksum(&mut words, 2);
                    words[4] = old;
                }
                _ => {}
            }
            words[5] = full(&words, 5);
            prop_assert!(verify(&bytes(&words)));
            let incremental = update(words[5], old, new);
            words[4] = new;
            let recomputed = full(&words, 5);
            if edge == 2 {
                prop_assert_eq!(recomputed, 0x0000);
            }
            prop_assert_eq!(incremental, recomputed);
            words[5] = incremental;
            prop_assert!(verify(&bytes(&words)));
        }

        /// Any single-word change: eqn. 3 equals recomputation, also when the result is
        /// 0x0000; and a header carrying the alternative zero (0xFFFF instead of 0x0000)
        /// still verifies after an update.
        #[test]
        fn any_word_change(
            mut words in proptest::array::uniform10(any::<u16>()),
            at in 0usize..10,
            new in any::<u16>(),
            zero_after in any::<bool>(),
        ) {
            prop_assume!(at != 5);
            words[0] |= 0x4000; // never an all-zero header
            let free = if at == 2 { 3 } else { 2 };
            if zero_after && at != 0 {
                let old = words[at];
                words[at] = new;
                solve_zero_checksum(&mut words, free);
                words[at] = old;
            }
            words[5] = full(&words, 5);
            let incremental = update(words[5], words[at], new);
            words[at] = new;
            prop_assert_eq!(incremental, full(&words, 5));

            let mut neg = words;
            solve_zero_checksum(&mut neg, free);
            neg[5] = 0xffff; // -0: also valid
            prop_assert!(verify(&bytes(&neg)));
            let next = new.wrapping_add(1);
            let hc = update(neg[5], neg[at], next);
            neg[at] = next;
            neg[5] = hc;
            prop_assert!(verify(&bytes(&neg)));
        }
    }
}
