//! Router mode under attack, in network namespaces (`h1 — r1 — r2 — h2`, root): a flood of
//! packets toward addresses that never answer ARP must not evict r2's live neighbours, and a
//! flood of TTL-expiring packets from one host must not starve another host's
//! "fragmentation needed" (path MTU discovery).

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::netns::{self, frag_probe, ping, require_root};
use crate::router::{H1, H2, LineOptions, R2_R1, ping_until, start_line_with};

/// Flood from namespace `ns` with UDP datagrams from `socket` setup, `per_sec`, until `stop`.
fn flood(
    ns: String,
    stop: Arc<AtomicBool>,
    per_sec: u32,
    ttl: u32,
    dst: impl Fn(u32) -> SocketAddrV4 + Send + 'static,
) -> std::thread::JoinHandle<u64> {
    netns::spawn_in(&ns, move || {
        let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
        sock.set_ttl(ttl).expect("ttl");
        let gap = Duration::from_secs_f64(1.0 / f64::from(per_sec));
        let mut sent = 0u64;
        let start = Instant::now();
        while !stop.load(Ordering::Acquire) {
            let _ = sock.send_to(b"flood", dst(sent as u32));
            sent += 1;
            let due = start + gap * sent as u32;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        sent
    })
}

#[test]
fn unresolvable_next_hops_do_not_evict_live_neighbours() {
    if !require_root("unresolvable_next_hops_do_not_evict_live_neighbours") {
        return;
    }
    let line = start_line_with(&LineOptions {
        router_keys: "arp_incomplete_entries = 8\n",
        ..LineOptions::default()
    });
    let (h1, h2) = (line.ns[0].clone(), line.ns[3].clone());
    ping_until(&h1, H2, 64);
    let stop = Arc::new(AtomicBool::new(false));
    // 2,000 packets/s toward 200 addresses on h2's subnet that nobody answers ARP for.
    let attacker = flood(h1.clone(), stop.clone(), 2000, 64, |k| {
        SocketAddrV4::new(Ipv4Addr::new(198, 18, 3, 20 + (k % 200) as u8), 9)
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut answered = 0;
    for _ in 0..100 {
        if ping(&h1, H2, 64, Duration::from_millis(500)).is_ok_and(|r| r.kind == (0, 0)) {
            answered += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Release);
    let sent = attacker.join().expect("flood");
    let r2 = line.stats(2).router.expect("router stats");
    assert!(
        answered >= 99,
        "h1 -> h2 pings answered during the flood: {answered}/100"
    );
    assert!(
        r2.router
            .drop_count(ants_router::DropReason::ArpIncompleteFull)
            > 0,
        "{sent} flood packets, none refused by the incomplete table: {:?}",
        r2.router
    );
    assert_eq!(r2.router.arp_evicted, 0, "no live neighbour was evicted");
    let _ = h2;
    let stopped = Instant::now();
    drop(line);
    assert!(
        stopped.elapsed() < Duration::from_secs(2),
        "routers stop promptly"
    );
}

#[test]
fn one_hosts_ttl_flood_does_not_starve_anothers_fragmentation_needed() {
    if !require_root("one_hosts_ttl_flood_does_not_starve_anothers_fragmentation_needed") {
        return;
    }
    // r1 — r2 has a 1400-byte MTU: h2's 1450-byte DF datagrams to h1 get "fragmentation
    // needed" from r2, while h1 floods r2 with packets whose TTL runs out there.
    let line = start_line_with(&LineOptions {
        r1_r2_mtu: Some(1400),
        ..LineOptions::default()
    });
    let (h1, h2) = (line.ns[0].clone(), line.ns[3].clone());
    ping_until(&h1, H2, 64);
    ping_until(&h2, H1, 64);
    let stop = Arc::new(AtomicBool::new(false));
    // 3,000 packets/s with TTL 2: each expires at r2 (3x the test config's icmp_per_sec).
    let attacker = flood(h1.clone(), stop.clone(), 3000, 2, |_| {
        SocketAddrV4::new(H2, 33434)
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut answered = 0;
    for _ in 0..30 {
        if frag_probe(&h2, H1, 9, 1450, Duration::from_millis(500))
            .is_ok_and(|r| r.from == R2_R1 || r.kind == (3, 4))
        {
            answered += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Release);
    let sent = attacker.join().expect("flood");
    let r2 = line.stats(2).router.expect("router stats").router;
    assert!(
        answered >= 29,
        "h2's fragmentation-needed answered during h1's flood of {sent}: {answered}/30"
    );
    assert!(
        r2.icmp_rate_limited_source > sent / 2,
        "h1's flood was limited per source: {r2:?}"
    );
}
