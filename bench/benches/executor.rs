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
//! - `fuel_rate/<work>`: one execution that spends its whole budget of 1,000,000 fuel on one
//!   kind of work — plain wasm instructions, or one host call over and over — so the time per
//!   execution is the time 1,000,000 fuel buys of that work. The host-call fees of
//!   `ants_core::host::fuel` are calibrated from these ratios (docs/security.md).
//!   `fuel_rate/slow_ops` is plain wasm chosen to be slow per unit of fuel
//!   (tests/fixtures/hostile/slow_ops.wat): what the execution deadline is sized against.

use std::hint::black_box;

use ants_bench::{capsule_bytes, capsule_repr, workspace_root};
use ants_core::{CapsuleState, Execution, Executor, HostLimits, TestNode, execute as run};
use ants_node::{Compiler, ExecutorConfig, WasmExecutor};
use ants_wire::Address;
use criterion::{Criterion, criterion_group, criterion_main};

fn addr(s: &str) -> Address {
    s.parse().unwrap()
}

fn setup(name: &str, config: ExecutorConfig) -> (WasmExecutor, CapsuleState) {
    let mut exec = WasmExecutor::with_config(config).unwrap();
    let ty = exec.load(&capsule_bytes(name)).unwrap();
    let payload = [0u8; 64];
    let repr = capsule_repr(addr("198.18.0.1"), ty, addr("198.18.0.9"), &payload);
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
            // Check once that the capsule does its job (a benchmark filtered out never runs).
            run(&mut exec, &mut e);
            assert_eq!(e.effects.sends.len(), 1, "{name} sent one copy");
            g.bench_function(name, |b| {
                b.iter(|| {
                    e.capsule.header.clear(); // ping rewrites its header; start fresh each time
                    black_box(run(&mut exec, &mut e))
                })
            });
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

/// A module whose entry repeats `body` (which must leave the stack empty) until it runs out
/// of fuel, with 64 KiB of zeroed memory at offset 0 and the key "k" at 65536.
fn spender(imports: &str, body: &str) -> Vec<u8> {
    wat::parse_str(format!(
        "(module {imports}
           (memory (export \"memory\") 2)
           (data (i32.const 65536) \"k\")
           (func (export \"ants_abi_version\") (result i32) (i32.const 2))
           (func (export \"ants_on_capsule\") (result i32)
             (local $i i32)
             (loop $again {body} (br $again))
             (i32.const 0)))"
    ))
    .expect("calibration module")
}

fn fuel_rate(c: &mut Criterion) {
    let imp = |name: &str, sig: &str| format!("(import \"ants\" \"{name}\" (func ${name} {sig}))");
    let i2 = "(param i32 i32) (result i32)";
    let i4 = "(param i32 i32 i32 i32) (result i32)";
    let mut cases: Vec<(&str, String, String)> = vec![
        (
            "wasm_arith",
            String::new(),
            "(local.set $i (i32.add (i32.mul (local.get $i) (i32.const 3)) (i32.const 1)))".into(),
        ),
        ("node_time", imp("node_time", "(result i64)"), "(drop (call $node_time))".into()),
        (
            "random_16",
            imp("node_random", i2),
            "(drop (call $node_random (i32.const 0) (i32.const 16)))".into(),
        ),
        (
            "random_64k",
            imp("node_random", i2),
            "(drop (call $node_random (i32.const 0) (i32.const 65536)))".into(),
        ),
        (
            "read_16k",
            imp("capsule_read", i4),
            "(drop (call $capsule_read (i32.const 5) (i32.const 0) (i32.const 0) (i32.const 16384)))"
                .into(),
        ),
        (
            "write_16k",
            imp("capsule_write", i4),
            "(drop (call $capsule_write (i32.const 5) (i32.const 0) (i32.const 0) (i32.const 16384)))"
                .into(),
        ),
        (
            "resize_16k",
            imp("capsule_resize", i2),
            concat!(
                "(drop (call $capsule_resize (i32.const 4) (i32.const 0)))",
                "(drop (call $capsule_resize (i32.const 4) (i32.const 16384)))"
            )
            .into(),
        ),
        (
            "store_put_4k",
            imp("store_put", "(param i32 i32 i32 i32 i64) (result i32)"),
            "(drop (call $store_put (i32.const 65536) (i32.const 1) (i32.const 0) (i32.const 4096) (i64.const 60000)))"
                .into(),
        ),
        (
            "store_get_4k",
            imp("store_get", i4),
            "(drop (call $store_get (i32.const 65536) (i32.const 1) (i32.const 0) (i32.const 4096)))"
                .into(),
        ),
        (
            "log_512",
            imp("log", "(param i32 i32 i32) (result i32)"),
            "(drop (call $log (i32.const 5) (i32.const 0) (i32.const 512)))".into(),
        ),
        (
            "route_16k",
            imp("route_for_node", "(param i32) (result i32)"),
            "(drop (call $route_for_node (i32.const 65536)))".into(),
        ),
    ];
    // Not a host call: the slowest plain wasm we know per unit of fuel (cache misses and
    // divisions on the critical path), the case the deadline exists for.
    cases.push(("slow_ops", String::new(), String::new()));
    let config = ExecutorConfig {
        max_exec_time: None,
        ..ExecutorConfig::default()
    };
    let limits = HostLimits::default();
    let mut g = c.benchmark_group("fuel_rate");
    g.sample_size(20);
    for (name, imports, body) in cases {
        let mut exec = WasmExecutor::with_config(config).unwrap();
        let module = if name == "slow_ops" {
            let path = workspace_root().join("tests/fixtures/hostile/slow_ops.wat");
            wat::parse_file(&path).expect("slow_ops fixture")
        } else {
            spender(&imports, &body)
        };
        let ty = exec.load(&module).unwrap();
        let mut node = TestNode::new(addr("198.18.0.2"), 1);
        // A value for store_get to copy out.
        node.store
            .put(
                &ty.0,
                b"k",
                &[7; 4096],
                std::time::Duration::from_secs(3600),
                node.now,
            )
            .unwrap();
        let payload = vec![0u8; 16 * 1024];
        let repr = capsule_repr(addr("198.18.0.1"), ty, addr("198.18.0.9"), &payload);
        let mut e = Box::new(Execution::new(node, limits));
        g.bench_function(name, |b| {
            b.iter(|| {
                e.capsule.load(&repr);
                black_box(run(&mut exec, &mut e))
            })
        });
        let report = run(&mut exec, &mut e);
        assert!(
            matches!(
                report.result,
                ants_core::RunResult::Trapped(ants_core::TrapReason::OutOfFuel)
            ),
            "{name}: {report:?}"
        );
    }
    g.finish();
}

criterion_group!(benches, execute, compile, fuel_rate);
criterion_main!(benches);
