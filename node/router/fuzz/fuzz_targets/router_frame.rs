//! Any sequence of frames on either interface, clock steps, timer ticks and capsule transmits:
//! the router never panics, its queues and tables (resolved and resolving ARP entries,
//! per-source ICMP buckets) stay within their limits, forwarded frames keep their
//! length and carry a valid IPv4 header checksum and the egress MAC, capsule ranges lie inside
//! the frame and name one of our addresses, generated frames (fragments included) fit
//! their interface's MTU, and timers move forward.
//!
//! Input: a sequence of operations `[op, len_hi, len_lo, bytes[len]…]` (short reads take
//! what is left). `op % 8`:
//! 0, 1: raw frame on interface 0 / 1;
//! 2, 3: frame on interface 0 / 1 with the Ethernet header filled in (to the router's MAC,
//!       IPv4) and, if long enough, the IPv4 header checksum fixed — so the fuzzer spends its
//!       time past validation; `op / 8 % 4` picks its offload state: none, partial checksum,
//!       or a super-frame (GSO) with a segment size from `len_lo` (with or without a
//!       partial checksum);
//! 4: advance the clock by `len` ms and run the timers;
//! 5: `send_udp` of `len` bytes to 198.18.1.<first byte>;
//! 6: drain the transmit queue;
//! 7: an ARP request from 198.18.<iface>.<first byte> for the router's address.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use ants_router::{Interface, Offload, Router, RouterConfig, RouterLimits, Verdict};
use libfuzzer_sys::fuzz_target;

const MACS: [[u8; 6]; 2] = [[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]];
const MTUS: [usize; 2] = [1500, 576];

fn router() -> Router {
    let iface = |i: u8, mtu| Interface {
        name: format!("eth{i}"),
        mac: MACS[usize::from(i)],
        addr: Ipv4Addr::new(198, 18, i, 1),
        prefix_len: 24,
        mtu,
    };
    Router::new(RouterConfig {
        interfaces: vec![iface(0, MTUS[0] as u16), iface(1, MTUS[1] as u16)],
        routes: vec![ants_router::Route {
            dst: Ipv4Addr::new(198, 19, 0, 0),
            prefix_len: 16,
            via: Some(Ipv4Addr::new(198, 18, 1, 254)),
        }],
        capsule_port: 3322,
        limits: limits(),
    })
    .expect("valid config")
}

fn limits() -> RouterLimits {
    RouterLimits {
        arp_entries: 16,
        arp_incomplete_entries: 6,
        arp_pending_per_neighbour: 3,
        arp_pending_total: 8,
        max_tx_frames: 32,
        max_tx_bytes: 32 * 1514,
        icmp_burst: 4,
        icmp_per_sec: 10,
        icmp_source_burst: 2,
        icmp_source_per_sec: 5,
        icmp_source_entries: 8,
        ..RouterLimits::default()
    }
}

fn ip_checksum(hdr: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for (i, w) in hdr.chunks(2).enumerate() {
        if i != 5 {
            sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn arp_request(sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&sha);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa.octets());
    f
}

fn feed(r: &mut Router, now: Duration, iface: usize, frame: &mut [u8], offload: Offload) {
    let len = frame.len();
    match r.handle_frame_with(now, iface, frame, offload) {
        Verdict::Forward { iface } => {
            assert!(iface < 2);
            assert_eq!(frame.len(), len);
            assert!(offload.gso_size.is_some() || len <= 14 + MTUS[iface]);
            assert_eq!(&frame[6..12], &MACS[iface]);
            let hlen = usize::from(frame[14] & 0x0f) * 4;
            let hdr = &frame[14..14 + hlen];
            assert_eq!(u16::from_be_bytes([hdr[10], hdr[11]]), ip_checksum(hdr));
        }
        Verdict::Capsule {
            to,
            payload,
            segment,
            ..
        } => {
            assert!(payload.start <= payload.end && payload.end <= frame.len());
            assert!(r.owns(*to.ip()));
            assert_eq!(segment.is_some(), offload.gso_size.is_some());
        }
        Verdict::Done => {}
    }
}

fn check_bounds(r: &Router) {
    let l = limits();
    let (frames, bytes) = r.queued_transmits();
    assert!(frames <= l.max_tx_frames && bytes <= l.max_tx_bytes);
    assert!(r.held_frames() <= l.arp_pending_total);
    let (resolved, resolving) = r.neighbour_counts();
    assert!(resolved <= l.arp_entries && resolving <= l.arp_incomplete_entries);
    assert_eq!(r.neighbours(Duration::ZERO).count(), resolved + resolving);
    assert!(r.icmp_sources() <= l.icmp_source_entries);
    let c = r.counters();
    assert_eq!(
        c.icmp_rate_limited,
        c.icmp_rate_limited_source
            + c.icmp_rate_limited_time_exceeded
            + c.icmp_rate_limited_unreachable
            + c.icmp_rate_limited_frag_needed
    );
}

fuzz_target!(|data: &[u8]| {
    let mut r = router();
    let mut now = Duration::from_secs(1);
    let mut rest = data;
    while let [op, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        let (bytes, next) = tail.split_at(len.min(tail.len()));
        rest = next;
        let first = bytes.first().copied().unwrap_or(0);
        match op % 8 {
            o @ (0 | 1) => feed(
                &mut r,
                now,
                usize::from(o),
                &mut bytes.to_vec(),
                Offload::NONE,
            ),
            o @ (2 | 3) => {
                let iface = usize::from(o - 2);
                let offload = match op / 8 % 4 {
                    0 => Offload::NONE,
                    1 => Offload {
                        gso_size: None,
                        csum_partial: true,
                    },
                    k => Offload {
                        gso_size: Some(u16::from(*lo) * 8),
                        csum_partial: k == 3,
                    },
                };
                let mut f = MACS[iface].to_vec();
                f.extend_from_slice(&[2, 0xaa, 0, 0, 0, 1, 0x08, 0x00]);
                f.extend_from_slice(bytes);
                if f.len() >= 34 {
                    let hlen = (usize::from(f[14] & 0x0f) * 4).clamp(20, f.len() - 14);
                    let c = ip_checksum(&f[14..14 + hlen]);
                    f[24..26].copy_from_slice(&c.to_be_bytes());
                }
                feed(&mut r, now, iface, &mut f, offload);
            }
            4 => {
                now += Duration::from_millis(len as u64);
                let before = r.poll_timeout();
                r.handle_timeout(now);
                if let (Some(_), Some(after)) = (before, r.poll_timeout()) {
                    assert!(after > now, "a handled timer is not due again");
                }
            }
            5 => {
                let dst = SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, first), 3322);
                r.send_udp(now, dst, bytes);
            }
            6 => r.drain_transmits(|iface, f| {
                assert!(iface < 2 && f.len() >= 42 && f.len() <= 14 + MTUS[iface]);
            }),
            _ => {
                let iface = usize::from(first & 1);
                let octet = first | 2;
                let ours = r.interfaces()[iface].addr;
                let mut f = arp_request(
                    [2, 0xbb, 0, 0, iface as u8, octet],
                    Ipv4Addr::new(198, 18, iface as u8, octet),
                    ours,
                );
                feed(&mut r, now, iface, &mut f, Offload::NONE);
            }
        }
        check_bounds(&r);
    }
});
