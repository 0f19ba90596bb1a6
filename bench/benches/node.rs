//! The node core's cost per capsule hop, as a router's or overlay's forwarding thread pays
//! it (and each simulated hop): `node_hop/forward` feeds one `forward` capsule datagram from
//! a neighbour to a `Node` with the real wasm executor — parse, accept, per-peer fuel
//! budget, quarantine check, the run with its host calls, resource settling, the copy's
//! encoding into the transmit queue, counters — and takes the transmit out. No sockets: the
//! userspace part of a capsule hop, which `router-bench` measures with the kernel's.
//!
//! `capsule_send/*`: router mode's next step, the node's datagram becoming an Ethernet
//! frame in the driver's batch (route, ARP, IPv4 and UDP headers with checksums, payload)
//! — through the router's queue and a copy (`queue`, as before `Router::send_udp_to`) or
//! built straight into the batch (`sink`, as the daemon does now); 92-byte payloads (the
//! smallest capsule, router-bench's 64-byte capsule mode) and 1,472 bytes.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use ants_bench::{capsule_bytes, capsule_repr};
use ants_core::routing::Prefix;
use ants_core::{Executor, Node, NodeConfig};
use ants_node::{ExecutorConfig, WasmExecutor};
use ants_router::{FrameSink, Interface, Route, Router, RouterConfig};
use ants_wire::Address;
use criterion::{Criterion, criterion_group, criterion_main};

fn addr(s: &str) -> Address {
    s.parse().unwrap()
}

fn node_hop(c: &mut Criterion) {
    let mut cfg = NodeConfig::<u32>::new(addr("198.18.0.2"));
    cfg.neighbours = vec![(addr("198.18.0.1"), 1), (addr("198.18.0.3"), 3)];
    // A small table, as a router has: the far side's /24 and a default route.
    let prefix = |s: &str| s.parse::<Prefix>().unwrap();
    cfg.routes = vec![
        (prefix("198.18.1.0/24"), addr("198.18.0.3")),
        (prefix("10.0.0.0/8"), addr("198.18.0.1")),
        (prefix("0.0.0.0/0"), addr("198.18.0.1")),
    ];
    let mut node = Node::new(cfg);
    let mut exec = WasmExecutor::with_config(ExecutorConfig::default()).unwrap();
    let ty = exec.load(&capsule_bytes("forward")).unwrap();
    let payload = [7u8; 64];
    let repr = capsule_repr(addr("198.18.0.1"), ty, addr("198.18.1.9"), &payload);
    let mut datagram = vec![0u8; repr.buffer_len()];
    let n = repr.emit(&mut datagram).unwrap();
    datagram.truncate(n);
    // 10 µs of node time per hop: 100,000 capsules/s from one peer, within its fuel budget.
    let mut now = Duration::from_secs(1);
    let mut hop = |node: &mut Node<u32>, exec: &mut WasmExecutor| {
        now += Duration::from_micros(10);
        node.handle_datagram(now, 1, &datagram, exec);
        let mut out = 0;
        node.drain_transmits(|to, bytes| {
            black_box((to, bytes));
            out += 1;
        });
        out
    };
    // Check once that the hop does its job (a benchmark filtered out never runs).
    assert_eq!(hop(&mut node, &mut exec), 1, "one copy forwarded");
    c.bench_function("node_hop/forward", |b| b.iter(|| hop(&mut node, &mut exec)));
    assert_eq!(
        node.counters().runs,
        node.counters().sent,
        "every run sent its copy"
    );
}

/// The driver's transmit batch: one reusable frame buffer, as a UMEM frame is.
struct Batch {
    frame: Vec<u8>,
    frames: u64,
}

impl FrameSink for Batch {
    fn frame(&mut self, _iface: usize, len: usize, build: impl FnOnce(&mut [u8])) {
        if let Some(f) = self.frame.get_mut(..len) {
            build(f);
            self.frames += 1;
        }
    }
}

fn capsule_send(c: &mut Criterion) {
    let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    let iface = |name: &str, last: u8, addr: &str| Interface {
        name: name.into(),
        mac: [2, 0, 0, 0, 0, last],
        addr: ip(addr),
        prefix_len: 24,
        mtu: 1500,
    };
    let mut router = Router::new(RouterConfig {
        interfaces: vec![iface("x0", 1, "198.18.20.1"), iface("x1", 2, "198.18.21.1")],
        routes: vec![Route {
            dst: ip("198.18.22.0"),
            prefix_len: 24,
            via: Some(ip("198.18.21.2")),
        }],
        ..RouterConfig::default()
    })
    .unwrap();
    // The next hop asks for our address: the router learns it (ARP request, 42 bytes).
    let mut arp = [0u8; 42];
    let neighbour_mac = [2, 0, 0, 0, 0, 9];
    arp[..6].copy_from_slice(&[0xff; 6]);
    arp[6..12].copy_from_slice(&neighbour_mac);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    arp[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp[22..28].copy_from_slice(&neighbour_mac);
    arp[28..32].copy_from_slice(&ip("198.18.21.2").octets());
    arp[38..42].copy_from_slice(&ip("198.18.21.1").octets());
    let now = Duration::from_secs(1);
    router.handle_frame(now, 1, &mut arp);
    router.drain_transmits(|_, _| {});
    let dst = SocketAddrV4::new(ip("198.18.22.2"), 3322);
    let mut batch = Batch {
        frame: vec![0; 2048],
        frames: 0,
    };
    for len in [92, 1472] {
        let payload = vec![7u8; len];
        c.bench_function(&format!("capsule_send/queue/{len}"), |b| {
            b.iter(|| {
                router.send_udp(now, dst, black_box(&payload));
                router.drain_transmits(|iface, f| {
                    batch.frame(iface, f.len(), |b| b.copy_from_slice(f))
                });
            })
        });
        c.bench_function(&format!("capsule_send/sink/{len}"), |b| {
            b.iter(|| router.send_udp_to(now, dst, black_box(&payload), &mut batch))
        });
    }
    // Every datagram became a frame (a benchmark filtered out never runs: then none did).
    assert_eq!(
        router.counters().udp_sent,
        batch.frames,
        "{:?}",
        router.counters()
    );
}

criterion_group!(benches, node_hop, capsule_send);
criterion_main!(benches);
