//! Capsule execution and compilation costs.
//!
//! - `execute/forward`: one capsule through a cached `forward` instance as a node runs it:
//!   fuel on, host calls charged fuel for their bytes, the epoch deadline armed, the resource
//!   budget settled; including its three host calls (`capsule_read` dst, `node_address`,
//!   `route_for_node`) and the snapshot of the copy it sends.
//! - `execute/ping`: the `ping` capsule (header read, clock, header rewrite, send).
//! - `execute_no_deadline/<capsule>`: the same without the epoch deadline (fuel only), to
//!   isolate what the deadline costs.
//! - `host_calls_only/forward`: the same three host calls made natively, without wasm — the
//!   part of `execute/forward` that is host work.
//! - `compile/<capsule>`: validate + compile a module from bytes (cold, no cache).

use std::hint::black_box;

use ants_bench::capsule_bytes;
use ants_core::{CapsuleState, Execution, Executor, HostLimits, TestNode, execute as run};
use ants_node::{Compiler, ExecutorConfig, WasmExecutor};
use ants_wire::{Address, CapsuleRepr};
use criterion::{Criterion, criterion_group, criterion_main};

fn addr(s: &str) -> Address {
    s.parse().unwrap()
}

fn setup(name: &str, config: ExecutorConfig) -> (WasmExecutor, CapsuleState) {
    let mut exec = WasmExecutor::with_config(config).unwrap();
    let ty = exec.load(&capsule_bytes(name)).unwrap();
    let payload = [0u8; 64];
    let repr = CapsuleRepr {
        flags: 0,
        resource: 64,
        capsule_type: ty,
        src: addr("198.18.0.1"),
        dst: addr("198.18.0.9"),
        prev: addr("198.18.0.1"),
        header: &[],
        payload: &payload,
    };
    (exec, CapsuleState::from_repr(&repr))
}

fn execute(c: &mut Criterion) {
    let limits = HostLimits::default();
    let no_deadline = ExecutorConfig {
        max_exec_time: None,
        ..ExecutorConfig::default()
    };
    for (group, config) in [
        ("execute", ExecutorConfig::default()),
        ("execute_no_deadline", no_deadline),
    ] {
        let mut g = c.benchmark_group(group);
        for name in ["forward", "ping"] {
            let (mut exec, original) = setup(name, config);
            let mut e = Box::new(Execution::new(TestNode::new(addr("198.18.0.2"), 1), limits));
            e.capsule = original.clone();
            g.bench_function(name, |b| {
                b.iter(|| {
                    e.capsule.header.clear(); // ping rewrites its header; start fresh each time
                    black_box(run(&mut exec, &mut e))
                })
            });
            assert_eq!(e.effects.sends.len(), 1, "{name} sent one copy");
        }
        g.finish();
    }

    let (_, state) = setup("forward", ExecutorConfig::default());
    let mut e = Execution::new(TestNode::new(addr("198.18.0.2"), 1), limits);
    e.capsule = state;
    c.bench_function("host_calls_only/forward", |b| {
        b.iter(|| {
            e.effects.begin(e.capsule.resource);
            let mut dst = [0u8; 16];
            e.capsule_read(2, 0, &mut dst);
            black_box(e.node_address());
            black_box(e.route_for_node(dst));
            e.effects.settle_resources();
        })
    });
}

fn compile(c: &mut Criterion) {
    let compiler = Compiler::new(ExecutorConfig::default()).unwrap();
    let mut g = c.benchmark_group("compile");
    g.sample_size(20);
    for name in ["forward", "ping"] {
        let code = capsule_bytes(name);
        g.bench_function(name, |b| {
            b.iter(|| black_box(compiler.compile(&code).unwrap()))
        });
    }
    g.finish();
}

criterion_group!(benches, execute, compile);
criterion_main!(benches);
