//! AF_XDP sockets on a veth (root only): the transmit side's bounds — a full TX ring or an
//! empty free list refuses and counts, a frame longer than a UMEM frame is refused, nothing
//! waits — and what a flush sends arrives at the peer.

use ants_node::afxdp::{Umem, XskConfig, XskSocket};

use crate::netns::{self, Netns, enter, require_root};

fn rx_packets(ns: &str, ifname: &str) -> u64 {
    netns::run_in(
        ns,
        &format!("cat /sys/class/net/{ifname}/statistics/rx_packets"),
    )
    .trim()
    .parse()
    .expect("rx_packets")
}

#[test]
fn a_full_transmit_ring_refuses_and_counts_and_a_flush_delivers() {
    if !require_root("a_full_transmit_ring_refuses_and_counts_and_a_flush_delivers") {
        return;
    }
    let mut ns = Netns::new();
    let (r, p) = (ns.add("r"), ns.add("p"));
    ns.veth((&r, "x0"), (&p, "p-x0"));
    let ifindex = netns::ifindex(&r, "x0");
    let cfg = XskConfig {
        frames: 256,
        frame_size: 2048,
        ring_size: 64,
    };
    let before = rx_packets(&p, "p-x0");
    let stats = enter(&r, || {
        let mut umem = Umem::new(&cfg, 1).expect("UMEM");
        let mut x =
            XskSocket::open("x0", ifindex, 0, &cfg, &mut umem).unwrap_or_else(|e| panic!("{e}"));
        // The fill ring took its 64 frames; the other 192 are free for sending.
        assert_eq!(umem.free_frames(), 192);
        // An Ethernet broadcast frame the peer counts on receipt.
        let mut frame = vec![0xffu8; 6];
        frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x88, 0xb5]);
        frame.resize(60, 0x5a);
        let mut queued = 0;
        for _ in 0..200 {
            if x.queue(&mut umem, &frame) {
                queued += 1;
            }
        }
        assert_eq!(queued, 64, "the TX ring holds 64");
        assert!(
            !x.queue(&mut umem, &vec![0; 2049]),
            "longer than a UMEM frame"
        );
        assert_eq!(x.stats().tx_refused, 200 - 64 + 1);
        assert_eq!(x.flush(&mut umem).expect("flush"), 64);
        // After the kernel sent them, their frames come back and the ring has room again.
        let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !x.queue(&mut umem, &frame) {
            assert!(std::time::Instant::now() < end, "frames never completed");
            x.flush(&mut umem).expect("flush");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        x.flush(&mut umem).expect("flush");
        x.stats()
    });
    assert_eq!(stats.tx_frames, 65);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while rx_packets(&p, "p-x0") < before + 65 {
        assert!(
            std::time::Instant::now() < end,
            "the peer saw {} of 65 frames",
            rx_packets(&p, "p-x0") - before
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn bad_geometry_and_unknown_interfaces_are_refused_with_their_name() {
    let bad = XskConfig {
        frames: 100,
        ..XskConfig::default()
    };
    let err = Umem::new(&bad, 1).unwrap_err();
    assert!(err.to_string().contains("AF_XDP geometry"), "{err}");
    // A socket whose fill ring the UMEM cannot fill.
    let small = XskConfig {
        frames: 128,
        frame_size: 2048,
        ring_size: 64,
    };
    let mut umem = Umem::new(&small, 1).expect("UMEM");
    let wide = XskConfig {
        ring_size: 256,
        ..small
    };
    let err = XskSocket::open("x9", 1, 0, &wide, &mut umem).unwrap_err();
    assert!(err.to_string().contains("x9"), "{err}");
    if !require_root("bad_geometry_and_unknown_interfaces_are_refused_with_their_name") {
        return;
    }
    let cfg = XskConfig::default();
    let mut umem = Umem::new(&cfg, 1).expect("UMEM");
    let err = XskSocket::open("nope0", 999_999, 0, &cfg, &mut umem).unwrap_err();
    assert!(err.to_string().contains("nope0"), "{err}");
}

#[test]
fn sockets_on_two_interfaces_share_one_umem_and_give_every_frame_back() {
    if !require_root("sockets_on_two_interfaces_share_one_umem_and_give_every_frame_back") {
        return;
    }
    let mut ns = Netns::new();
    let (r, p) = (ns.add("r"), ns.add("p"));
    ns.veth((&r, "x0"), (&p, "p-x0"));
    ns.veth((&r, "x1"), (&p, "p-x1"));
    let (i0, i1) = (netns::ifindex(&r, "x0"), netns::ifindex(&r, "x1"));
    let cfg = XskConfig {
        frames: 256,
        frame_size: 2048,
        ring_size: 64,
    };
    let before = rx_packets(&p, "p-x1");
    let free = enter(&r, || {
        let mut umem = Umem::new(&cfg, 2).expect("UMEM");
        // The first socket registers the UMEM, the second binds to it (XDP_SHARED_UMEM) on
        // another device, with fill and completion rings of its own.
        let _x0 = XskSocket::open("x0", i0, 0, &cfg, &mut umem).unwrap_or_else(|e| panic!("{e}"));
        let mut x1 =
            XskSocket::open("x1", i1, 0, &cfg, &mut umem).unwrap_or_else(|e| panic!("{e}"));
        let idle = umem.free_frames();
        assert_eq!(idle, 512 - 2 * 64, "each fill ring took its 64 frames");
        let mut frame = vec![0xffu8; 6];
        frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x88, 0xb5]);
        frame.resize(60, 0x5a);
        for _ in 0..3 {
            for _ in 0..50 {
                assert!(x1.queue(&mut umem, &frame));
            }
            assert_eq!(x1.flush(&mut umem).expect("flush"), 50);
        }
        // Copy mode always asks for the kick (need_wakeup): one per flush where the kernel
        // takes XDP_MAX_TX_SKB_BUDGET, two before.
        let kicks = x1.stats().tx_kicks;
        eprintln!("3 flushes of 50: {kicks} kicks");
        assert!((3..=6).contains(&kicks), "{kicks} kicks");
        // Every frame sent comes back to the shared free list.
        let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while umem.free_frames() < idle {
            assert!(std::time::Instant::now() < end, "frames never completed");
            x1.flush(&mut umem).expect("flush");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        umem.free_frames() - idle
    });
    assert_eq!(free, 0, "no frame counted twice");
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while rx_packets(&p, "p-x1") < before + 150 {
        assert!(
            std::time::Instant::now() < end,
            "the peer did not see 150 frames"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn queues_and_workers_that_differ_are_refused_with_the_fix() {
    if !require_root("queues_and_workers_that_differ_are_refused_with_the_fix") {
        return;
    }
    let mut ns = Netns::new();
    let (r, p) = (ns.add("r"), ns.add("p"));
    netns::run_in(
        &r,
        &format!("ip link add x0 numrxqueues 2 numtxqueues 2 type veth peer name p-x0 netns {p}"),
    );
    netns::up(&r, "x0");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = netns::ants_router(
        &r,
        dir.path(),
        "198.18.51.1",
        "x0",
        "datapath = \"afxdp\"\n",
    )
    .output()
    .expect("run ants");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("serves one receive queue per worker, and the interface has 2 for 1 worker"),
        "{err}"
    );
    assert!(err.contains("set [node] workers = 2"), "{err}");
    assert!(err.contains("ethtool -L x0 combined 1"), "{err}");
}

/// A router on `x0` in a namespace of its own (peer `p-x0`), the node given `keys` under
/// `[router]`, logging at info to a pipe and writing its stats at exit: the namespaces
/// (router's, peer's), the directory of its config and stats, and the process.
fn busy_polling_router(
    address: &str,
    keys: &str,
) -> (
    Netns,
    String,
    String,
    tempfile::TempDir,
    crate::support::Running,
) {
    let mut ns = Netns::new();
    let (r, p) = (ns.add("r"), ns.add("p"));
    ns.veth((&r, "x0"), (&p, "p-x0"));
    let dir = tempfile::tempdir().expect("tempdir");
    let child = netns::ants_router(&r, dir.path(), address, "x0", keys)
        .arg("--stats-json")
        .arg(dir.path().join("stats.json"))
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run ants");
    (ns, r, p, dir, crate::support::Running::new(child))
}

/// `/sys/class/net/x0/FILE` in namespace `ns`.
fn x0_sysfs(ns: &str, file: &str) -> String {
    netns::run_in(ns, &format!("cat /sys/class/net/x0/{file}"))
        .trim()
        .to_string()
}

/// The stats a router of [`busy_polling_router`] wrote at exit, of its one interface.
fn x0_stats(dir: &tempfile::TempDir) -> serde_json::Value {
    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("stats.json")).unwrap())
            .unwrap();
    stats["router"]["interfaces"][0].clone()
}

#[test]
fn busy_polling_takes_the_queue_and_gives_it_back_on_stop() {
    if !require_root("busy_polling_takes_the_queue_and_gives_it_back_on_stop") {
        return;
    }
    let (_ns, r, p, dir, mut child) = busy_polling_router(
        "198.18.52.1",
        "datapath = \"afxdp\"\nbusy_poll_us = 750\nbusy_poll = \"always\"\n",
    );
    // While it runs: the kernel defers the queue's NAPI to the node for 750 µs.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while x0_sysfs(&r, "gro_flush_timeout") != "750000" {
        assert!(
            std::time::Instant::now() < end && child.running(),
            "busy polling never set up"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(x0_sysfs(&r, "napi_defer_hard_irqs"), "2");
    // Traffic to the router is answered (ARP) while the node polls. The deferral is set
    // before the worker's loop runs, so wait for the router to answer first (a loaded
    // machine starts it slowly).
    netns::addr(&p, "p-x0", "198.18.52.2/24");
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while netns::try_run_in(&p, "ping -c 1 -W 1 198.18.52.1").is_err() {
        assert!(std::time::Instant::now() < end, "the router never answered");
    }
    netns::run_in(&p, "ping -c 3 -i 0.2 -W 2 198.18.52.1");
    let log = child.terminate();
    assert!(!log.contains("busy polling unavailable"), "{log}");
    assert_eq!(x0_sysfs(&r, "gro_flush_timeout"), "0");
    assert_eq!(x0_sysfs(&r, "napi_defer_hard_irqs"), "0");
    // The router thread did poll the queue itself (the ping's frames came that way).
    let i = x0_stats(&dir);
    assert!(i["busy_polls"].as_u64().is_some_and(|n| n > 0), "{i}");
}

#[test]
fn overload_busy_polling_takes_the_queue_only_while_the_router_falls_behind() {
    if !require_root("overload_busy_polling_takes_the_queue_only_while_the_router_falls_behind") {
        return;
    }
    let (_ns, r, p, dir, child) = busy_polling_router(
        "198.18.53.1",
        "datapath = \"afxdp\"\nbusy_poll_us = 750\nbusy_poll = \"overload\"\n",
    );
    let timeout = || x0_sysfs(&r, "gro_flush_timeout");
    // Light traffic is answered with the kernel driving receive: no deferral.
    netns::addr(&p, "p-x0", "198.18.53.2/24");
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while netns::try_run_in(&p, "ping -c 1 -W 1 198.18.53.1").is_err() {
        assert!(std::time::Instant::now() < end, "the router never answered");
    }
    netns::run_in(&p, "ping -c 5 -i 0.1 -W 1 198.18.53.1");
    assert_eq!(timeout(), "0", "light traffic switched busy polling on");
    // A flood the router (a debug build) cannot keep up with: it takes the queue.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let (p, stop) = (p.clone(), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            enter(&p, || {
                use std::os::fd::AsRawFd;
                let s = std::net::UdpSocket::bind("198.18.53.2:0").expect("bind");
                // 64 datagrams of 18 bytes per send (UDP GSO), split by the kernel.
                let seg: libc::c_int = 18;
                // SAFETY: a live socket and a live int of the size passed.
                let rc = unsafe {
                    libc::setsockopt(
                        s.as_raw_fd(),
                        libc::SOL_UDP,
                        libc::UDP_SEGMENT,
                        std::ptr::from_ref(&seg).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
                assert_eq!(rc, 0, "UDP_SEGMENT");
                let to: std::net::SocketAddr = "198.18.53.1:9".parse().expect("address");
                let burst = [0u8; 18 * 64];
                let mut sent = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // The router's port-unreachable answers make some sends fail: go on.
                    if s.send_to(&burst, to).is_ok() {
                        sent += 64;
                    }
                }
                sent
            })
        })
    };
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while timeout() != "750000" {
        assert!(
            std::time::Instant::now() < end,
            "busy polling never switched on under a flood"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = flood.join().expect("flood");
    // Once receive keeps up again (100 ms without falling behind), it lets go.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while timeout() != "0" {
        assert!(
            std::time::Instant::now() < end,
            "busy polling stayed on after the flood ({sent} datagrams)"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let log = child.terminate();
    assert!(log.contains("busy polling on"), "{log}");
    assert!(log.contains("busy polling off"), "{log}");
    let i = x0_stats(&dir);
    assert!(
        i["busy_poll_activations"].as_u64().is_some_and(|n| n >= 1),
        "{i}"
    );
    assert!(i["busy_polls"].as_u64().is_some_and(|n| n > 0), "{i}");
    assert_eq!(timeout(), "0");
}
