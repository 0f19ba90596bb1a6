//! The XDP fast path against the userspace router, frame by frame (root: the program is
//! loaded into the kernel and run with `BPF_PROG_TEST_RUN` on veths of a test namespace).
//!
//! One router configuration and ARP state feed both: the `ants_router::Router` (the slow
//! path) and the fast path's maps, filled the way the daemon fills them. Then thousands of
//! generated frames — valid packets and every kind of thing the router rejects or answers
//! (bad headers and checksums, options, TTL 0–2, martian/broadcast/own addresses, no route,
//! too big for the egress MTU, unresolved and stale next hops, fragments, capsules, ARP,
//! partial TCP/UDP checksums, garbage) — go to both. Whenever the fast path forwards a
//! frame, the router must forward it too, out of the same interface, with the same bytes;
//! whenever it passes a frame on, it must leave it untouched (the slow path then decides
//! as it always does). And the fast path must actually take the common case: every plain
//! frame the router forwards to a reachable neighbour.

use std::net::Ipv4Addr;
use std::time::Duration;

use ants_node::fastpath::{FastPath, FastPathInterface};
use ants_router::{
    DropReason, Interface, NeighbourState, Route, Router, RouterConfig, RouterLimits, Verdict,
};

use crate::netns::{self, Netns, enter, require_root};

const IFACES: [(&str, [u8; 4], u8, u16); 3] = [
    ("r0", [198, 18, 40, 1], 24, 1500),
    ("r1", [198, 18, 41, 1], 24, 1500),
    ("r2", [198, 18, 42, 1], 24, 1000),
];
const A: [u8; 4] = [198, 18, 40, 10]; // reachable, on r0
const STALE: [u8; 4] = [198, 18, 40, 11]; // learned long ago: stale
const B: [u8; 4] = [198, 18, 41, 20]; // reachable, on r1
const GW: [u8; 4] = [198, 18, 42, 254]; // reachable gateway on r2 (MTU 1000)
const UNRESOLVED_GW: [u8; 4] = [198, 18, 41, 99];

fn mac_of(i: u8) -> [u8; 6] {
    [0x02, 0xa0, 0, 0, 0, i]
}

fn host_mac(ip: [u8; 4]) -> [u8; 6] {
    [0x02, 0xbb, ip[0], ip[1], ip[2], ip[3]]
}

/// An ARP request from `ip` (at `host_mac(ip)`) for the router's address on `iface`.
fn arp_request(iface: usize, ip: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&host_mac(ip));
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&host_mac(ip));
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&IFACES[iface].1);
    f
}

/// Internet checksum of `data` (big-endian words).
fn csum(data: &[u8]) -> u16 {
    let mut s: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A frame `src → dst` arriving on interface `iface`: protocol, payload size and a
/// mutation chosen by `rng`. Returns the frame and what was done to it (for messages).
fn frame(rng: &mut Rng) -> (usize, Vec<u8>, String) {
    let dsts: [[u8; 4]; 9] = [
        B,
        [198, 19, 7, 7],    // via GW on r2
        [198, 20, 1, 1],    // via an unresolved gateway
        [203, 0, 113, 9],   // no route
        STALE,              // stale neighbour
        A,                  // back out of r0
        [198, 18, 41, 1],   // the router itself (capsules, echo, unreachables)
        [198, 18, 41, 255], // directed broadcast
        [198, 18, 41, 77],  // on r1, never resolved
    ];
    let dst = dsts[rng.below(dsts.len() as u64) as usize];
    let src = if rng.below(8) == 0 {
        [
            [0, 1, 2, 3],
            [127, 0, 0, 1],
            [224, 0, 0, 5],
            [198, 18, 40, 1],
            [169, 254, 1, 1],
        ][rng.below(5) as usize]
    } else {
        A
    };
    let proto = [17u8, 6, 1, 47][rng.below(4) as usize];
    let payload_len = [8usize, 20, 64, 500, 1000, 1400, 1480][rng.below(7) as usize];
    let mut l4 = vec![0u8; payload_len];
    for b in l4.iter_mut() {
        *b = rng.next() as u8;
    }
    let total = 20 + payload_len;
    let mut ip = vec![0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&(rng.next() as u16).to_be_bytes());
    ip[8] = [64u8, 64, 64, 2, 1, 0][rng.below(6) as usize];
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let pseudo = |l4: &[u8]| {
        let mut p = Vec::new();
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&[0, proto]);
        p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        p
    };
    let mut what = format!(
        "proto {proto} len {total} ttl {} dst {dst:?} src {src:?}",
        ip[8]
    );
    // L4 checksum: complete, left to offload (pseudo-header sum), zero (UDP), or wrong.
    let at = match proto {
        17 if payload_len >= 8 => {
            l4[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
            Some(6)
        }
        6 if payload_len >= 20 => {
            l4[12] = 5 << 4;
            Some(16)
        }
        _ => None,
    };
    if let Some(at) = at {
        l4[at..at + 2].fill(0);
        let mut whole = pseudo(&l4);
        whole.extend_from_slice(&l4);
        let complete = csum(&whole);
        let value = match rng.below(4) {
            0 => {
                what += " partial-csum";
                !csum(&pseudo(&l4))
            }
            1 if proto == 17 => {
                what += " no-udp-csum";
                0
            }
            _ => complete,
        };
        l4[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }
    ip.extend_from_slice(&l4);
    let c = csum(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let iface = if rng.below(10) == 0 { 1 } else { 0 };
    let mut f = mac_of(iface as u8).to_vec();
    f.extend_from_slice(&host_mac(src));
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    // Mutations: one in two frames is left valid.
    match rng.below(26) {
        0 => {
            f[12] = 0x86; // IPv6 ethertype
            f[13] = 0xdd;
            what += " ipv6";
        }
        1 => {
            f[0..6].copy_from_slice(&[0xff; 6]);
            what += " broadcast-mac";
        }
        2 => {
            f[5] ^= 0x40;
            what += " other-mac";
        }
        3 => {
            f[24] ^= 0x5a;
            what += " bad-ip-csum";
        }
        4 => {
            // Options: IHL 6 with a NOP word, checksum fixed.
            f.splice(34..34, [1, 1, 1, 0]);
            f[14] = 0x46;
            let t = (total + 4) as u16;
            f[16..18].copy_from_slice(&t.to_be_bytes());
            f[24..26].fill(0);
            let c = csum(&f[14..38]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
            what += " options";
        }
        5 => {
            // Total length beyond the frame.
            let t = (total + 9) as u16;
            f[16..18].copy_from_slice(&t.to_be_bytes());
            f[24..26].fill(0);
            let c = csum(&f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
            what += " long-total";
        }
        6 => {
            // Ethernet padding beyond the total length.
            f.extend_from_slice(&[0; 30]);
            what += " padded";
        }
        7 => {
            // A fragment (MF, or an offset).
            f[20] = if rng.below(2) == 0 { 0x20 } else { 0x01 };
            f[24..26].fill(0);
            let c = csum(&f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
            what += " fragment";
        }
        8 => {
            f.truncate(14 + rng.below(20) as usize);
            what += " truncated";
        }
        9 => {
            f[14] = 0x55; // IHL 5, version 5
            what += " version-5";
        }
        10 => {
            f = arp_request(iface, A);
            what = "arp".into();
        }
        11 => {
            // DF set: too big for r2's MTU of 1000 gets frag-needed, not fragments.
            f[20] |= 0x40;
            f[24..26].fill(0);
            let c = csum(&f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
            what += " df";
        }
        12 => {
            for b in f.iter_mut().skip(14) {
                *b = rng.next() as u8;
            }
            what += " garbage";
        }
        _ => {}
    }
    (iface, f, what)
}

#[test]
fn the_xdp_fast_path_forwards_exactly_like_the_userspace_router() {
    if !require_root("the_xdp_fast_path_forwards_exactly_like_the_userspace_router") {
        return;
    }
    let mut ns = Netns::new();
    let (r, p) = (ns.add("r"), ns.add("p"));
    for (name, ..) in IFACES {
        ns.veth((&r, name), (&p, &format!("p-{name}")));
    }
    let ifindex: Vec<u32> = IFACES
        .iter()
        .map(|(name, ..)| netns::ifindex(&r, name))
        .collect();
    let (forwarded, passed, plain_forwards) = enter(&r, || {
        let mut router = Router::new(RouterConfig {
            interfaces: IFACES
                .iter()
                .enumerate()
                .map(|(i, &(name, addr, prefix_len, mtu))| Interface {
                    name: name.into(),
                    mac: mac_of(i as u8),
                    addr: Ipv4Addr::from(addr),
                    prefix_len,
                    mtu,
                })
                .collect(),
            routes: vec![
                Route {
                    dst: Ipv4Addr::new(198, 19, 0, 0),
                    prefix_len: 16,
                    via: Some(Ipv4Addr::from(GW)),
                },
                Route {
                    dst: Ipv4Addr::new(198, 20, 0, 0),
                    prefix_len: 16,
                    via: Some(Ipv4Addr::from(UNRESOLVED_GW)),
                },
            ],
            capsule_port: 3322,
            limits: RouterLimits {
                icmp_per_sec: 1_000_000,
                icmp_burst: 1_000_000,
                icmp_source_per_sec: 1_000_000,
                icmp_source_burst: 1_000_000,
                ..RouterLimits::default()
            },
        })
        .expect("router");
        // ARP: the stale neighbour long ago, the others just now.
        let t0 = Duration::from_secs(1);
        let now = t0 + Duration::from_secs(100);
        router.handle_frame(t0, 0, &mut arp_request(0, STALE));
        for (iface, ip) in [(0, A), (1, B), (2, GW)] {
            router.handle_frame(now, iface, &mut arp_request(iface, ip));
        }
        router.drain_transmits(|_, _| {});
        let states: Vec<_> = router.neighbours(now).map(|n| (n.ip, n.state)).collect();
        assert!(states.contains(&(Ipv4Addr::from(STALE), NeighbourState::Stale)));

        let fp_ifaces: Vec<FastPathInterface> = IFACES
            .iter()
            .enumerate()
            .map(|(i, &(.., mtu))| FastPathInterface {
                ifindex: ifindex[i],
                mac: mac_of(i as u8),
                mtu,
            })
            .collect();
        let mut fast = FastPath::load(
            &fp_ifaces,
            &router.route_entries(),
            &router.non_unicast_prefixes(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let reachable: Vec<_> = router
            .neighbours(now)
            .filter(|n| n.state == NeighbourState::Reachable)
            .filter_map(|n| Some((n.ip, n.iface, n.mac?)))
            .collect();
        assert_eq!(fast.sync_neighbours(reachable).unwrap(), 3);

        let mut rng = Rng(0x5eed_1234_abcd_9876);
        let (mut forwarded, mut passed, mut plain_forwards) = (0u32, 0u32, 0u32);
        for n in 0..6000 {
            let (iface, f, what) = frame(&mut rng);
            let mut fast_frame = f.clone();
            let fast_says = fast
                .run_once(ifindex[iface], &mut fast_frame)
                .unwrap_or_else(|e| panic!("frame {n} ({what}): {e}"));
            if f.get(12..14) == Some(&[0x08, 0x06]) {
                // ARP would change the router's table under the fast path's feet; the fast
                // path must pass it, and the router is not asked.
                assert_eq!(fast_says, None, "frame {n} ({what})");
                passed += 1;
                continue;
            }
            let mut slow_frame = f.clone();
            let verdict = router.handle_frame(now, iface, &mut slow_frame);
            router.drain_transmits(|_, _| {});
            match fast_says {
                Some(egress) => {
                    forwarded += 1;
                    let Verdict::Forward { iface: out } = verdict else {
                        panic!("frame {n} ({what}): fast path forwarded, router said {verdict:?}");
                    };
                    assert_eq!(egress, ifindex[out], "frame {n} ({what}): egress");
                    assert_eq!(fast_frame, slow_frame, "frame {n} ({what}): bytes");
                }
                None => {
                    passed += 1;
                    assert_eq!(
                        fast_frame, f,
                        "frame {n} ({what}): a passed frame is untouched"
                    );
                    // The common case must not be left to the slow path: a plain, complete
                    // frame the router forwards to a reachable neighbour.
                    let plain = !what.contains("partial-csum")
                        && !what.contains("options")
                        && !what.contains("padded")
                        && !what.contains("fragment")
                        && !what.contains("garbage");
                    if let (Verdict::Forward { .. }, true) = (&verdict, plain) {
                        let to_stale = f.get(30..34) == Some(&STALE[..]);
                        assert!(
                            to_stale,
                            "frame {n} ({what}): the router forwarded it, the fast path passed it"
                        );
                    }
                }
            }
            if matches!(verdict, Verdict::Forward { .. }) {
                plain_forwards += 1;
            }
        }
        // The generated frames reach the router's verdicts broadly: these drop reasons must
        // all have been hit (each one a kind of frame the fast path had to pass on).
        let drops = router.counters();
        for reason in [
            DropReason::NotIpv4,
            DropReason::LinkBroadcast,
            DropReason::NotForUs,
            DropReason::BadChecksum,
            DropReason::BadTotalLength,
            DropReason::Truncated,
            DropReason::BadVersion,
            DropReason::BadSource,
            DropReason::BroadcastDestination,
            DropReason::TtlExceeded,
            DropReason::NoRoute,
            DropReason::FragmentationNeeded,
            DropReason::FragmentForUs,
            DropReason::ProtocolUnreachable,
            DropReason::PortUnreachable,
            DropReason::TooBig,
        ] {
            assert!(
                drops.drop_count(reason) > 0,
                "the generator never produced a {reason} frame: {:?}",
                drops.drops().filter(|&(_, n)| n > 0).collect::<Vec<_>>()
            );
        }
        assert!(drops.fragmented > 0 && drops.arp_held > 0, "{drops:?}");
        let c = fast.counters().expect("counters");
        assert_eq!(c.forwarded, u64::from(forwarded));
        assert_eq!(c.passed, u64::from(passed));
        assert_eq!(c.redirect_failed, 0);
        (forwarded, passed, plain_forwards)
    });
    eprintln!(
        "fast path: {forwarded} frames forwarded identically, {passed} passed to the slow path \
         (router forwarded {plain_forwards})"
    );
    assert!(forwarded > 500, "the generator exercises the fast path");
    assert!(passed > 1000, "and the slow path");
}

/// Whether `ifname` in `ns` has an XDP program attached (`ip -d link` shows `xdp`).
fn has_xdp(ns: &str, ifname: &str) -> bool {
    let out = netns::run_in(ns, &format!("ip -d link show dev {ifname}"));
    out.split_whitespace()
        .any(|w| w == "xdp" || w == "xdpgeneric" || w == "prog/xdp")
}

#[test]
fn a_killed_node_leaves_no_xdp_program_behind() {
    if !require_root("a_killed_node_leaves_no_xdp_program_behind") {
        return;
    }
    let mut ns = Netns::new();
    let (r, p) = (ns.add("r"), ns.add("p"));
    ns.veth((&r, "x0"), (&p, "p-x0"));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child =
        netns::ants_router(&r, dir.path(), "198.18.50.1", "x0", "fast_path = \"xdp\"\n")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start ants");
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while !has_xdp(&r, "x0") {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "ants exited before attaching"
        );
        assert!(std::time::Instant::now() < end, "no XDP program appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGKILL: no chance to clean up. The kernel must detach the program with the process.
    child.kill().expect("kill");
    child.wait().expect("reap");
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while has_xdp(&r, "x0") {
        assert!(
            std::time::Instant::now() < end,
            "the XDP program outlived the node"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
