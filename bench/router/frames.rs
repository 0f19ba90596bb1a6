//! The generated traffic: Ethernet/IPv4/UDP frames (plain, or carrying a wire-v1 capsule of
//! the `forward` type) and trafgen configurations that send one frame over and over.
//!
//! `size` is the IPv4 packet length (header included), as an MTU counts; the Ethernet frame
//! is 14 bytes longer. A capsule needs at least 20 + 8 + 92 bytes, so smaller capsule sizes
//! are raised to that minimum (reported as `ip_bytes`).

use super::*;

/// Smallest IPv4 packet the harness generates (a 60-byte Ethernet frame).
pub(crate) const MIN_SIZE: usize = 46;
/// Largest IPv4 packet (the veth MTU).
pub(crate) const MAX_SIZE: usize = 1500;
const IP_HDR: usize = 20;
const UDP_HDR: usize = 8;
const ETH_HDR: usize = 14;

/// Addresses of one generated stream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stream {
    pub(crate) dst_mac: [u8; 6],
    pub(crate) src_mac: [u8; 6],
    pub(crate) src: Ipv4Addr,
    pub(crate) dst: Ipv4Addr,
    pub(crate) sport: u16,
    pub(crate) dport: u16,
}

/// One's-complement sum of 16-bit big-endian words (odd byte padded with zero).
fn sum16(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// An Ethernet frame carrying `payload` in IPv4/UDP, both checksums set, TTL 64, DF.
pub(crate) fn udp_frame(s: &Stream, payload: &[u8]) -> Result<Vec<u8>> {
    let ip_len = IP_HDR + UDP_HDR + payload.len();
    let Ok(ip_len16) = u16::try_from(ip_len) else {
        bail!("IPv4 packet of {ip_len} bytes is too long");
    };
    let udp_len16 = ip_len16 - IP_HDR as u16;
    let mut f = Vec::with_capacity(ETH_HDR + ip_len);
    f.extend_from_slice(&s.dst_mac);
    f.extend_from_slice(&s.src_mac);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let ip_start = f.len();
    f.extend_from_slice(&[0x45, 0x00]);
    f.extend_from_slice(&ip_len16.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0x00, 64, 17, 0, 0]); // id 0, DF, TTL 64, UDP, csum
    f.extend_from_slice(&s.src.octets());
    f.extend_from_slice(&s.dst.octets());
    let csum = fold(sum16(0, &f[ip_start..ip_start + IP_HDR]));
    f[ip_start + 10..ip_start + 12].copy_from_slice(&csum.to_be_bytes());
    let udp_start = f.len();
    f.extend_from_slice(&s.sport.to_be_bytes());
    f.extend_from_slice(&s.dport.to_be_bytes());
    f.extend_from_slice(&udp_len16.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    // Pseudo-header: src, dst, zero, protocol, UDP length.
    let mut acc = sum16(0, &s.src.octets());
    acc = sum16(acc, &s.dst.octets());
    acc += 17 + u32::from(udp_len16);
    let csum = match fold(sum16(acc, &f[udp_start..])) {
        0 => 0xffff,
        c => c,
    };
    f[udp_start + 6..udp_start + 8].copy_from_slice(&csum.to_be_bytes());
    Ok(f)
}

/// A plain UDP frame whose IPv4 packet is `size` bytes.
pub(crate) fn plain_frame(s: &Stream, size: usize) -> Result<Vec<u8>> {
    let payload = vec![0u8; size.saturating_sub(IP_HDR + UDP_HDR)];
    udp_frame(s, &payload)
}

/// Smallest IPv4 packet that carries a capsule with no header and no payload.
pub(crate) fn min_capsule_size() -> usize {
    IP_HDR + UDP_HDR + ants_wire::capsule::FIXED_LEN
}

/// A UDP frame carrying a `ty` capsule from `src` to the active address `dst`, its IPv4
/// packet `size` bytes (at least [`min_capsule_size`]).
pub(crate) fn capsule_frame(
    s: &Stream,
    size: usize,
    ty: CapsuleType,
    dst: Address,
) -> Result<Vec<u8>> {
    let body = vec![0u8; size.max(min_capsule_size()) - min_capsule_size()];
    let src: Address = s
        .src
        .to_string()
        .parse()
        .map_err(|_| anyhow!("bad address {}", s.src))?;
    let repr = ants_bench::capsule_repr(src, ty, dst, &body);
    let mut buf = vec![0u8; repr.buffer_len()];
    let n = repr
        .emit(&mut buf)
        .map_err(|e| anyhow!("cannot encode the capsule: {e}"))?;
    buf.truncate(n);
    udp_frame(s, &buf)
}

/// A trafgen packet configuration that sends `frame` (every byte given literally).
pub(crate) fn trafgen_config(frame: &[u8]) -> String {
    let mut out = String::from("{\n");
    for line in frame.chunks(16) {
        let bytes: Vec<String> = line.iter().map(|b| format!("0x{b:02x}")).collect();
        out.push_str("  ");
        out.push_str(&bytes.join(", "));
        out.push_str(",\n");
    }
    // trafgen accepts a trailing comma before the closing brace.
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> Stream {
        Stream {
            dst_mac: [2, 0, 0, 0, 0, 1],
            src_mac: [2, 0, 0, 0, 0, 2],
            src: Ipv4Addr::new(198, 18, 21, 2),
            dst: Ipv4Addr::new(198, 18, 30, 1),
            sport: 1024,
            dport: 9,
        }
    }

    #[test]
    fn plain_frame_has_the_size_and_valid_checksums() {
        for size in [MIN_SIZE, 64, 65, 1500] {
            let f = plain_frame(&stream(), size).expect("frame");
            assert_eq!(f.len(), size + ETH_HDR);
            let ip = &f[ETH_HDR..];
            assert_eq!(usize::from(u16::from_be_bytes([ip[2], ip[3]])), size);
            assert_eq!(fold(sum16(0, &ip[..IP_HDR])), 0, "IPv4 header checksum");
            let udp = &ip[IP_HDR..];
            let mut acc = sum16(sum16(0, &ip[12..16]), &ip[16..20]);
            acc += 17 + udp.len() as u32;
            assert_eq!(fold(sum16(acc, udp)), 0, "UDP checksum");
        }
    }

    #[test]
    fn capsule_frame_parses_back() {
        let ty = CapsuleType([7; 32]);
        let dst: Address = "198.18.22.2".parse().expect("address");
        let f = capsule_frame(&stream(), 64, ty, dst).expect("frame");
        assert_eq!(
            f.len(),
            min_capsule_size() + ETH_HDR,
            "raised to the minimum"
        );
        let f = capsule_frame(&stream(), 1500, ty, dst).expect("frame");
        assert_eq!(f.len(), 1500 + ETH_HDR);
        let c = ants_wire::CapsuleRepr::parse(&f[ETH_HDR + IP_HDR + UDP_HDR..]).expect("capsule");
        assert_eq!(c.capsule_type, ty);
        assert_eq!(c.dst, dst);
        assert_eq!(c.payload.len(), 1500 - min_capsule_size());
    }

    #[test]
    fn trafgen_config_lists_every_byte() {
        let cfg = trafgen_config(&[1, 2, 255]);
        assert_eq!(cfg, "{\n  0x01, 0x02, 0xff,\n}\n");
    }
}
