//! The warm forwarding path, the generated-frame path and rate-limited ICMP errors do not
//! allocate.
//!
//! A separate test binary because it needs its own global allocator: a counting wrapper
//! around the system allocator that counts only on the thread that asked it to.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use ants_router::{Interface, Router, RouterConfig, Verdict};
use pnet_packet::ipv4::{self, MutableIpv4Packet};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counting touches only const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

const R0_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const R1_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const A_MAC: [u8; 6] = [2, 0xaa, 0, 0, 0, 1];
const B_MAC: [u8; 6] = [2, 0xbb, 0, 0, 0, 1];
const R0: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const R1: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const B: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 20);

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

fn ipv4_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    payload: &[u8],
) -> Vec<u8> {
    ipv4_frame_ttl(dst_mac, src_mac, src, dst, proto, 64, payload)
}

fn ipv4_frame_ttl(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![0u8; 20 + payload.len()];
    ip[20..].copy_from_slice(payload);
    let mut p = MutableIpv4Packet::new(&mut ip).unwrap();
    p.set_version(4);
    p.set_header_length(5);
    p.set_total_length((20 + payload.len()) as u16);
    p.set_ttl(ttl);
    p.set_next_level_protocol(pnet_packet::ip::IpNextHeaderProtocol(proto));
    p.set_source(src);
    p.set_destination(dst);
    let c = ipv4::checksum(&p.to_immutable());
    p.set_checksum(c);
    f.extend_from_slice(&ip);
    f
}

fn router() -> Router {
    let iface = |name: &str, mac, addr| Interface {
        name: name.into(),
        mac,
        addr,
        prefix_len: 24,
        mtu: 1500,
    };
    let mut r = Router::new(RouterConfig {
        interfaces: vec![iface("eth0", R0_MAC, R0), iface("eth1", R1_MAC, R1)],
        ..RouterConfig::default()
    })
    .unwrap();
    let now = Duration::ZERO;
    assert_eq!(
        r.handle_frame(now, 0, &mut arp_request(A_MAC, A, R0)),
        Verdict::Done
    );
    assert_eq!(
        r.handle_frame(now, 1, &mut arp_request(B_MAC, B, R1)),
        Verdict::Done
    );
    r.drain_transmits(|_, _| {});
    r
}

#[test]
fn forwarding_a_warm_flow_does_not_allocate() {
    let counted = allocations(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(8))));
    assert_eq!(counted, 1, "the counter counts");
    let mut r = router();
    // UDP from A to B, 64-byte payload (no UDP semantics needed to forward).
    let template = ipv4_frame(R0_MAC, A_MAC, A, B, 17, &[0x5a; 64]);
    let mut frame = template.clone();
    let mut forwarded = 0;
    let n = allocations(|| {
        for i in 0..10_000u64 {
            frame.copy_from_slice(&template);
            let now = Duration::from_micros(i);
            if r.handle_frame(now, 0, &mut frame) == (Verdict::Forward { iface: 1 }) {
                forwarded += 1;
            }
        }
    });
    assert_eq!(forwarded, 10_000);
    assert_eq!(n, 0, "allocations on the forwarding path");
}

#[test]
fn generated_frames_do_not_allocate_once_warm() {
    let mut r = router();
    let echo = {
        // ICMP echo request to R0 with a valid checksum.
        let mut m = vec![8, 0, 0, 0, 0, 1, 0, 1];
        m.extend_from_slice(&[0x11; 56]);
        let c = pnet_packet::util::checksum(&m, 1);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        ipv4_frame(R0_MAC, A_MAC, A, R0, 1, &m)
    };
    let mut frame = echo.clone();
    let round = |r: &mut Router, frame: &mut Vec<u8>| {
        let now = Duration::from_millis(1);
        for _ in 0..32 {
            frame.copy_from_slice(&echo);
            r.handle_frame(now, 0, frame);
            assert!(r.send_udp(now, SocketAddrV4::new(B, 3322), &[7; 200]));
        }
        let mut frames = 0;
        r.drain_transmits(|_, _| frames += 1);
        assert_eq!(frames, 64);
    };
    round(&mut r, &mut frame); // grow the arena to its working size
    let n = allocations(|| {
        for _ in 0..100 {
            round(&mut r, &mut frame);
        }
    });
    assert_eq!(
        n, 0,
        "allocations generating echo replies and UDP datagrams"
    );
}

#[test]
fn rate_limited_icmp_errors_do_not_allocate_once_warm() {
    let mut r = router();
    // TTL 1 from A (eth0) and from B (eth1): time exceeded back to each, per-source limited.
    let from_a = ipv4_frame_ttl(R0_MAC, A_MAC, A, B, 17, 1, &[0; 16]);
    let from_b = ipv4_frame_ttl(R1_MAC, B_MAC, B, A, 17, 1, &[0; 16]);
    let mut frame = from_a.clone();
    // 250 ms per round, 101 rounds: within `arp_reachable` (30 s), so no ARP probe is due.
    let mut ms = 0u64;
    let mut round = |r: &mut Router, frame: &mut Vec<u8>| {
        ms += 250;
        let now = Duration::from_millis(ms);
        for (iface, template) in [(0, &from_a), (1, &from_b)] {
            for _ in 0..32 {
                frame.copy_from_slice(template);
                assert_eq!(r.handle_frame(now, iface, frame), Verdict::Done);
            }
        }
        let mut frames = 0;
        r.drain_transmits(|_, _| frames += 1);
        assert!(
            frames > 0 && frames < 64,
            "some sent, some limited: {frames}"
        );
    };
    round(&mut r, &mut frame); // grow the arena, give A and B their buckets
    let n = allocations(|| {
        for _ in 0..100 {
            round(&mut r, &mut frame);
        }
    });
    assert!(r.counters().icmp_rate_limited_source > 0);
    assert_eq!(n, 0, "allocations sending and refusing ICMP errors");
}
