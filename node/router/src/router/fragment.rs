//! IPv4 fragmentation of forwarded packets (RFC 791 §3.2, RFC 1812 §5.2.6): a packet without
//! DF that is larger than the egress MTU leaves as fragments, each sent like a generated
//! frame (resolved by ARP, or held while it resolves).
//!
//! Every fragment carries the original header with the TTL decremented, its own total
//! length, fragment offset and MF flag, and a recomputed checksum. The first fragment keeps
//! all options; later ones only those with the "copied" flag (RFC 791: security, source
//! routes), padded to a multiple of 4 bytes. An already fragmented packet is fragmented
//! further, its offset and MF carried on.
//!
//! Cost to a sender: the fragments' bytes are the packet's bytes plus one header per
//! fragment, so a stranger gets no amplification beyond the header overhead (at most
//! ⌈65,535 / 8⌉ fragments at the minimum MTU of 68, bounded by the transmit queue).

use std::time::Duration;

use super::Router;
use super::Verdict;
use super::ipv4::Ipv4Meta;
use crate::checksum;
use crate::counters::DropReason;
use crate::frame::{ETH_LEN, IP_MF, IP_OFFSET, IPV4_LEN, be16};
use crate::lpm::NextHop;
use crate::tx::TxQueue;

/// Most option bytes an IPv4 header has (IHL 15).
const MAX_OPTIONS: usize = 40;

/// The options of `options` that non-first fragments carry (the "copied" flag, bit 7 of the
/// option type), padded with end-of-list to a multiple of 4. `None` for malformed options.
fn copied_options(options: &[u8], out: &mut [u8; MAX_OPTIONS]) -> Option<usize> {
    let (mut i, mut n) = (0, 0);
    while let Some(&ty) = options.get(i) {
        match ty {
            0 => break,
            1 => i += 1,
            _ => {
                let len = usize::from(*options.get(i + 1)?);
                let opt = options.get(i..i.checked_add(len)?).filter(|_| len >= 2)?;
                if ty & 0x80 != 0 {
                    out.get_mut(n..n + len)?.copy_from_slice(opt);
                    n += len;
                }
                i += len;
            }
        }
    }
    let padded = n.next_multiple_of(4);
    out.get_mut(n..padded)?.fill(0);
    Some(padded)
}

impl Router {
    /// Send the IPv4 packet in `frame` (TTL not yet decremented) toward `nh` as fragments that
    /// fit the egress MTU. Returns [`Verdict::Done`]; counts `fragmented` and
    /// `fragments_sent`, or the drop.
    pub(super) fn fragment(
        &mut self,
        now: Duration,
        nh: NextHop,
        frame: &[u8],
        m: Ipv4Meta,
    ) -> Verdict {
        let Some(mtu) = self.ifaces.get(nh.iface).map(|i| usize::from(i.mtu)) else {
            return self.discard(DropReason::NoRoute);
        };
        let Some(ip) = frame.get(ETH_LEN..ETH_LEN + m.total) else {
            return self.discard(DropReason::BadTotalLength);
        };
        let (header, data) = ip.split_at(m.ihl);
        let mut later_options = [0u8; MAX_OPTIONS];
        let Some(later_opt_len) = copied_options(&header[IPV4_LEN..], &mut later_options) else {
            return self.discard(DropReason::BadHeaderLength);
        };
        // Data per fragment: a multiple of 8 bytes (offsets count 8-byte units), the first
        // fragment behind the whole header, later ones behind the reduced one.
        let first_room = mtu.saturating_sub(m.ihl) / 8 * 8;
        let later_room = mtu.saturating_sub(IPV4_LEN + later_opt_len) / 8 * 8;
        if first_room == 0 || later_room == 0 {
            return self.discard(DropReason::TooBig);
        }
        let flags = be16(ip, 6);
        let base_offset = usize::from(flags & IP_OFFSET) * 8;
        let last_has_mf = flags & IP_MF != 0;
        let neighbour = nh.neighbour(m.dst);
        let (mut at, mut sent) = (0, 0u64);
        while at < data.len() {
            let first = at == 0;
            let room = if first { first_room } else { later_room };
            let chunk = room.min(data.len() - at);
            let last = at + chunk == data.len();
            let hlen = if first {
                m.ihl
            } else {
                IPV4_LEN + later_opt_len
            };
            let offset = base_offset + at;
            if offset / 8 > usize::from(IP_OFFSET) {
                // Beyond what the offset field can say: the packet claimed an offset so large
                // that its data would end past 65,535 bytes.
                self.counters.drop(DropReason::BadTotalLength);
                break;
            }
            let mut word = (offset / 8) as u16;
            if !last || last_has_mf {
                word |= IP_MF;
            }
            let payload = &data[at..at + chunk];
            let options: &[u8] = if first {
                &header[IPV4_LEN..]
            } else {
                &later_options[..later_opt_len]
            };
            let build = |buf: &mut [u8]| {
                let Some(h) = buf.get_mut(ETH_LEN..ETH_LEN + hlen) else {
                    return;
                };
                h[..IPV4_LEN].copy_from_slice(&header[..IPV4_LEN]);
                h[IPV4_LEN..].copy_from_slice(options);
                h[0] = 0x40 | (hlen / 4) as u8;
                h[2..4].copy_from_slice(&((hlen + chunk) as u16).to_be_bytes());
                h[6..8].copy_from_slice(&word.to_be_bytes());
                h[8] = h[8].saturating_sub(1);
                h[10..12].fill(0);
                let c = !checksum::fold(checksum::sum(h));
                h[10..12].copy_from_slice(&c.to_be_bytes());
                if let Some(p) = buf.get_mut(ETH_LEN + hlen..) {
                    p.copy_from_slice(payload);
                }
            };
            let len = ETH_LEN + hlen + chunk;
            let built = self.emit(now, nh.iface, neighbour, len, build, None::<&mut TxQueue>);
            if !built {
                // `emit` counted why (queue full, ARP bounds); the rest would fail the same way
                // or arrive useless without this fragment.
                break;
            }
            sent += 1;
            at += chunk;
        }
        if sent > 0 {
            self.counters.fragmented += 1;
            self.counters.fragments_sent += sent;
        }
        Verdict::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_copied_options_are_kept_and_padded() {
        let mut out = [0u8; MAX_OPTIONS];
        // NOP, record route (7, not copied, len 7), loose source route (131, copied, len 7),
        // end of list.
        let opts = [1, 7, 7, 4, 0, 0, 0, 0, 131, 7, 4, 1, 2, 3, 4, 0, 0, 0];
        let n = copied_options(&opts, &mut out).unwrap();
        assert_eq!(n, 8);
        assert_eq!(&out[..8], &[131, 7, 4, 1, 2, 3, 4, 0]);
        assert_eq!(copied_options(&[], &mut out), Some(0));
        assert_eq!(copied_options(&[0, 0, 0, 0], &mut out), Some(0));
        // Malformed: a length running past the end, or below 2.
        assert_eq!(copied_options(&[131, 9, 0, 0], &mut out), None);
        assert_eq!(copied_options(&[131, 1, 0, 0], &mut out), None);
        assert_eq!(copied_options(&[131], &mut out), None);
    }
}
