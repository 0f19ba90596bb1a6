//! `ants capture`: the datagrams a running node sends and receives, as pcapng.
//!
//! The node streams copies over its app socket (a `Capture` request, no app id taken); each
//! is written as an IPv4 (or IPv6) packet with a UDP header between the node's endpoint and
//! the peer's, so Wireshark, tshark and tcpdump read the file like a capture of the wire, and
//! `tools/wireshark/ants.lua` decodes the ANTS messages in it.

use std::borrow::Cow;
use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use pcap_file::DataLink;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};

/// `ants capture`.
#[derive(Debug, Args)]
pub(crate) struct CaptureArgs {
    /// The node's app socket (`app_socket` in the `[node]` section of its config).
    #[arg(short, long)]
    socket: PathBuf,
    /// The pcapng file to write (replaced if it exists).
    #[arg(short, long)]
    write: PathBuf,
    /// Stop after this many datagrams.
    #[arg(short, long)]
    count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
}

/// Interface 0 carries IPv4 packets, interface 1 IPv6 ones.
const IFACE_V4: u32 = 0;
const IFACE_V6: u32 = 1;

/// An IPv4 or IPv6 packet with a UDP header from `src` to `dst` around `data`, and the
/// interface it belongs to (IPv6 when either end is). The UDP checksum is left 0 (IPv4:
/// "none"; Wireshark does not check it by default).
pub(crate) fn udp_packet(src: SocketAddr, dst: SocketAddr, data: &[u8]) -> (u32, Vec<u8>) {
    use pnet_packet::ip::IpNextHeaderProtocols::Udp;
    use pnet_packet::ipv4::{self, MutableIpv4Packet};
    use pnet_packet::ipv6::MutableIpv6Packet;
    use pnet_packet::udp::MutableUdpPacket;

    let udp_len = 8 + data.len();
    let mut udp = vec![0u8; udp_len];
    if let Some(mut u) = MutableUdpPacket::new(&mut udp) {
        u.set_source(src.port());
        u.set_destination(dst.port());
        u.set_length(u16::try_from(udp_len).unwrap_or(u16::MAX));
        u.set_payload(data);
    }
    let v6 = |a: IpAddr| match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut p = vec![0u8; 20 + udp_len];
            if let Some(mut ip) = MutableIpv4Packet::new(&mut p) {
                ip.set_version(4);
                ip.set_header_length(5);
                ip.set_total_length(u16::try_from(20 + udp_len).unwrap_or(u16::MAX));
                ip.set_flags(ipv4::Ipv4Flags::DontFragment);
                ip.set_ttl(64);
                ip.set_next_level_protocol(Udp);
                ip.set_source(s);
                ip.set_destination(d);
                ip.set_payload(&udp);
                let sum = ipv4::checksum(&ip.to_immutable());
                ip.set_checksum(sum);
            }
            (IFACE_V4, p)
        }
        (s, d) => {
            let mut p = vec![0u8; 40 + udp_len];
            if let Some(mut ip) = MutableIpv6Packet::new(&mut p) {
                ip.set_version(6);
                ip.set_payload_length(u16::try_from(udp_len).unwrap_or(u16::MAX));
                ip.set_next_header(Udp);
                ip.set_hop_limit(64);
                ip.set_source(v6(s));
                ip.set_destination(v6(d));
                ip.set_payload(&udp);
            }
            (IFACE_V6, p)
        }
    }
}

impl CaptureArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let file = File::create(&self.write)
            .with_context(|| format!("cannot create {}", self.write.display()))?;
        let mut w = PcapNgWriter::new(file).context("cannot write the pcapng header")?;
        for (linktype, name) in [(DataLink::IPV4, "ants-ipv4"), (DataLink::IPV6, "ants-ipv6")] {
            w.write_pcapng_block(InterfaceDescriptionBlock {
                linktype,
                snaplen: 0,
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Borrowed(name)),
                    // Timestamps in nanoseconds, as the node reports them.
                    InterfaceDescriptionOption::IfTsResol(9),
                ],
            })
            .context("cannot write the pcapng interfaces")?;
        }
        let mut capture = ants_app::capture(&self.socket, Duration::from_secs(5))
            .with_context(|| format!("asking the node on {}", self.socket.display()))?;
        eprintln!(
            "capturing the node on {} into {}{}",
            self.socket.display(),
            self.write.display(),
            match (self.count, self.duration) {
                (Some(n), _) => format!(" (stops after {n} datagrams)"),
                (None, Some(s)) => format!(" (stops after {s} s)"),
                (None, None) => " (Ctrl-C stops)".to_owned(),
            }
        );
        let end = self
            .duration
            .map(|s| Instant::now() + Duration::from_secs_f64(s.clamp(0.0, 1e9)));
        let (mut written, mut lost) = (0u64, 0u64);
        while self.count.is_none_or(|n| written < n) {
            let wait = end.map(|e| e.saturating_duration_since(Instant::now()));
            if wait.is_some_and(|w| w.is_zero()) {
                break;
            }
            let Some(c) = capture.next(wait).context("reading the capture")? else {
                break;
            };
            lost += u64::from(c.lost);
            let (src, dst) = if c.outbound {
                (c.local, c.peer)
            } else {
                (c.peer, c.local)
            };
            let (interface_id, packet) = udp_packet(src, dst, &c.data);
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id,
                timestamp: Duration::from_nanos(c.ts_ns),
                original_len: u32::try_from(packet.len()).unwrap_or(u32::MAX),
                data: Cow::Borrowed(&packet),
                options: vec![],
            })
            .with_context(|| format!("writing {}", self.write.display()))?;
            written += 1;
        }
        eprintln!(
            "captured {written} datagrams to {}{}",
            self.write.display(),
            if lost > 0 {
                format!("; {lost} more were not captured (this client read too slowly)")
            } else {
                String::new()
            }
        );
        Ok(ExitCode::SUCCESS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_have_valid_ip_and_udp_headers() {
        let (iface, p) = udp_packet(
            "127.0.0.1:7001".parse().unwrap(),
            "127.0.0.2:7002".parse().unwrap(),
            b"abc",
        );
        assert_eq!(iface, IFACE_V4);
        assert_eq!(p.len(), 20 + 8 + 3);
        let ip = pnet_packet::ipv4::Ipv4Packet::new(&p).unwrap();
        assert_eq!(ip.get_checksum(), pnet_packet::ipv4::checksum(&ip));
        assert_eq!(ip.get_total_length(), 31);
        let udp = pnet_packet::udp::UdpPacket::new(&p[20..]).unwrap();
        assert_eq!((udp.get_source(), udp.get_destination()), (7001, 7002));
        assert_eq!(udp.get_length(), 11);
        let (iface, p) = udp_packet(
            "[::1]:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
            b"",
        );
        assert_eq!(iface, IFACE_V6);
        assert_eq!(p.len(), 48);
        assert_eq!(
            &p[24..40],
            &std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped().octets()
        );
    }
}
