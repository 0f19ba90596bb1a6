//! The node core's cost per capsule hop, as a router's or overlay's forwarding thread pays
//! it (and each simulated hop): `node_hop/forward` feeds one `forward` capsule datagram from
//! a neighbour to a `Node` with the real wasm executor — parse, accept, per-peer fuel
//! budget, quarantine check, the run with its host calls, resource settling, the copy's
//! encoding into the transmit queue, counters — and takes the transmit out. No sockets: the
//! userspace part of a capsule hop, which `router-bench` measures with the kernel's.

use std::hint::black_box;
use std::time::Duration;

use ants_bench::{capsule_bytes, capsule_repr};
use ants_core::routing::Prefix;
use ants_core::{Executor, Node, NodeConfig};
use ants_node::{ExecutorConfig, WasmExecutor};
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

criterion_group!(benches, node_hop);
criterion_main!(benches);
