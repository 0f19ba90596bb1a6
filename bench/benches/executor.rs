//! Capsule execution and compilation costs.
//!
//! - `execute/forward`: one capsule through a cached `forward` instance, fuel on, including
//!   its three host calls (`capsule_read` dst, `node_address`, `route_for_node`) and the
//!   snapshot of the copy it sends.
//! - `execute/ping`: the `ping` capsule (header read, clock, header rewrite, send).
//! - `host_calls_only/forward`: the same three host calls made natively, without wasm — the
//!   part of `execute/forward` that is host work.
//! - `compile/<capsule>`: validate + compile a module from bytes (cold, no cache).

use std::hint::black_box;

use ants_bench::capsule_bytes;
use ants_core::{CapsuleState, Effects, Execution, Executor, HostLimits, TestNode};
use ants_node::{Compiler, ExecutorConfig, WasmExecutor};
use ants_wire::{Address, CapsuleRepr};
use criterion::{Criterion, criterion_group, criterion_main};

fn addr(s: &str) -> Address {
    s.parse().unwrap()
}

fn setup(name: &str) -> (WasmExecutor, CapsuleState) {
    let mut exec = WasmExecutor::with_config(ExecutorConfig::default()).unwrap();
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
    let mut g = c.benchmark_group("execute");
    let limits = HostLimits::default();
    for name in ["forward", "ping"] {
        let (mut exec, original) = setup(name);
        let mut node = TestNode::new(addr("198.18.0.2"), 1);
        let mut state = original.clone();
        let mut effects = Effects::default();
        g.bench_function(name, |b| {
            b.iter(|| {
                state.header.clear(); // ping rewrites its header; start fresh each time
                let mut e = Execution {
                    capsule: &mut state,
                    env: &mut node,
                    effects: &mut effects,
                    limits: &limits,
                };
                black_box(exec.run(&mut e))
            })
        });
        assert_eq!(effects.sends.len(), 1, "{name} sent one copy");
    }
    g.finish();

    let (_, mut state) = setup("forward");
    let mut node = TestNode::new(addr("198.18.0.2"), 1);
    let mut effects = Effects::default();
    c.bench_function("host_calls_only/forward", |b| {
        b.iter(|| {
            effects.clear();
            let mut e = Execution {
                capsule: &mut state,
                env: &mut node,
                effects: &mut effects,
                limits: &limits,
            };
            let mut dst = [0u8; 16];
            e.capsule_read(2, 0, &mut dst);
            let me = e.env.address();
            black_box(me);
            black_box(e.route_for_node(dst))
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
