//! Hostile modules are contained: each fails with a clear reason and the executor keeps
//! working for everyone else.

use ants_core::{Executor, LoadError, RunResult, TrapReason};
use ants_node::testbench::TestNode;
use ants_node::{ExecutorConfig, WasmExecutor};
use ants_soft_store::Config as StoreConfig;

use crate::support::*;

/// After a hostile module, an honest capsule still runs on the same executor.
fn assert_executor_still_works(exec: &mut WasmExecutor) {
    let (_, run) = load_and_run(exec, &capsule_bytes("forward"));
    assert!(run.ok(), "forward after a hostile module: {run:?}");
    assert_eq!(run.sends.len(), 1);
}

fn assert_trap(name: &str, want: TrapReason) {
    let mut exec = executor();
    let ty = exec.load(&hostile(name)).expect("hostile module loads");
    let mut node = TestNode::new(addr("198.18.0.2"), 7);
    let c = capsule_to(ty, "198.18.0.9", b"x");
    for round in 0..2 {
        // Twice: the trapped instance is discarded and rebuilt for the next capsule.
        let run = run_on(&mut exec, &mut node, &c);
        assert_eq!(
            run.trap.as_deref(),
            Some(want.to_string().as_str()),
            "{name} round {round}"
        );
        assert!(
            run.sends.is_empty() && run.deliveries.is_empty(),
            "{name}: outputs discarded"
        );
    }
    assert_executor_still_works(&mut exec);
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    assert_trap("infinite_loop", TrapReason::OutOfFuel);
}

#[test]
fn memory_growth_stops_at_the_cap() {
    assert_trap("memory_growth", TrapReason::ResourceLimit);
}

#[test]
fn deep_recursion_overflows_the_stack_safely() {
    assert_trap("deep_recursion", TrapReason::StackOverflow);
}

#[test]
fn a_trap_discards_sends_made_before_it() {
    assert_trap("unreachable", TrapReason::Unreachable);
}

#[test]
fn route_for_node_in_an_endless_loop_runs_out_of_fuel_and_sends_nothing() {
    assert_trap("route_loop_forever", TrapReason::OutOfFuel);
}

fn load_err(name: &str) -> LoadError {
    match executor().load(&hostile(name)) {
        Ok(_) => panic!("{name} must be rejected"),
        Err(e) => e,
    }
}

#[test]
fn imports_outside_ants_are_rejected() {
    let e = load_err("foreign_import");
    assert!(
        matches!(&e, LoadError::ForeignImport { module, .. } if module == "wasi_snapshot_preview1")
    );
    assert!(
        e.to_string()
            .contains("may import only from module \"ants\""),
        "{e}"
    );
}

#[test]
fn unknown_and_mistyped_imports_are_rejected() {
    assert_eq!(
        load_err("unknown_import"),
        LoadError::UnknownImport("spawn_process".into())
    );
    let e = load_err("wrong_signature");
    assert!(
        matches!(&e, LoadError::ImportSignature { name, .. } if name == "log"),
        "{e}"
    );
    assert!(
        e.to_string().contains("func(i32, i32, i32) -> (i32)"),
        "{e}"
    );
}

#[test]
fn a_missing_entry_export_is_rejected() {
    assert_eq!(
        load_err("missing_entry"),
        LoadError::MissingExport("ants_on_capsule")
    );
}

#[test]
fn a_foreign_abi_version_is_rejected() {
    assert_eq!(
        load_err("wrong_abi_version"),
        LoadError::AbiVersion {
            found: 1,
            expected: 2
        }
    );
}

#[test]
fn memory_over_the_cap_at_start_is_rejected() {
    let e = load_err("huge_initial_memory");
    assert!(matches!(e, LoadError::Instantiate(_)), "{e}");
    assert!(e.to_string().contains("over the 4194304-byte limit"), "{e}");
}

#[test]
fn a_start_function_that_never_returns_is_rejected() {
    let e = load_err("start_loops");
    assert!(matches!(e, LoadError::Instantiate(_)), "{e}");
}

#[test]
fn a_module_over_the_size_cap_is_rejected() {
    let code = capsule_bytes("forward");
    let cfg = ExecutorConfig {
        max_module_bytes: code.len() - 1,
        ..ExecutorConfig::default()
    };
    let mut exec = WasmExecutor::with_config(cfg).unwrap();
    assert_eq!(
        exec.load(&code),
        Err(LoadError::TooLarge {
            size: code.len(),
            max: code.len() - 1
        })
    );
    let mut garbage = b"\0asm\x01\0\0\0".to_vec();
    garbage.extend_from_slice(&[0xff; 64]);
    assert!(matches!(
        executor().load(&garbage),
        Err(LoadError::Invalid(_))
    ));
}

#[test]
fn out_of_bounds_pointers_to_every_host_function_get_status_codes() {
    let mut exec = executor();
    let (_, run) = load_and_run(&mut exec, &hostile("oob_pointers"));
    assert_eq!(
        run.return_code,
        Some(0),
        "call number {:?} misbehaved",
        run.return_code
    );
    assert!(run.sends.is_empty() && run.store.is_empty() && run.logs.is_empty());
    assert_executor_still_works(&mut exec);
}

#[test]
fn route_for_node_in_a_loop_is_capped_per_execution() {
    let mut exec = executor();
    let (_, run) = load_and_run(&mut exec, &hostile("route_loop"));
    assert_eq!(run.return_code, Some(0), "refused calls answer LIMIT");
    let max = ants_core::HostLimits::default().max_sends;
    assert_eq!(run.sends.len(), max);
    assert_eq!(run.limit_hits as usize, 1000 - max);
}

#[test]
fn soft_store_flooding_stops_at_the_protocol_quota() {
    let mut exec = executor();
    let flood = exec.load(&hostile("store_flood")).unwrap();
    let honest = exec.load(&capsule_bytes("forward")).unwrap();
    let mut node = TestNode::new(addr("198.18.0.2"), 7);
    // Another protocol holds an entry before the flood.
    node.store
        .put(
            &honest.0,
            b"k",
            b"v",
            std::time::Duration::from_secs(60),
            node.now,
        )
        .unwrap();
    let run = run_on(&mut exec, &mut node, &capsule_to(flood, "198.18.0.9", b""));
    let refused = run.return_code.expect("flood returns");
    let quota = StoreConfig::default().namespace_quota;
    assert!(refused > 0, "some puts must be refused: {run:?}");
    assert!(node.store.namespace_bytes(&flood.0) <= quota);
    assert_eq!(node.store.counters().quota_refusals, refused as u64);
    // The flood did not touch the other protocol's entry (global bound is far away).
    assert_eq!(node.store.get(&honest.0, b"k", node.now), Some(&b"v"[..]));
}

#[test]
fn not_loaded_types_are_reported_not_run() {
    let mut exec = executor();
    let node = TestNode::new(addr("198.18.0.2"), 7);
    let c = capsule_to(ants_wire::CapsuleType([9; 32]), "198.18.0.9", b"");
    let mut e = Box::new(ants_core::Execution::new(
        node,
        ants_core::HostLimits::default(),
    ));
    e.capsule = ants_core::CapsuleState::from_repr(&c);
    let report = ants_core::execute(&mut exec, &mut e);
    assert_eq!(report.result, RunResult::NotLoaded);
}

#[test]
fn nodes_accept_only_binary_modules() {
    // The CLI assembles .wat for authors; code arriving at a node must be binary wasm.
    let text = std::fs::read(root().join("tests/fixtures/hostile/infinite_loop.wat")).unwrap();
    assert!(matches!(executor().load(&text), Err(LoadError::Invalid(_))));
}

/// Host calls pay for the bytes they touch: a loop of cheap calls over huge buffers stops on
/// fuel (at the first call it cannot pay for), like a loop of instructions.
#[test]
fn host_calls_over_huge_buffers_run_out_of_fuel() {
    for name in ["random_flood", "resize_flood", "log_flood"] {
        assert_trap(name, TrapReason::OutOfFuel);
    }
    let mut exec = executor();
    let ty = exec.load(&hostile("random_flood")).unwrap();
    let mut node = TestNode::new(addr("198.18.0.2"), 7);
    let run = run_on(&mut exec, &mut node, &capsule_to(ty, "198.18.0.9", b""));
    assert_eq!(
        run.fuel_used,
        exec.compiler().config().fuel,
        "the whole budget, no more"
    );
    // 4 MiB of random bytes cost more than the whole budget: the first call already traps.
    assert!(ants_core::host::fuel::random(4 << 20) > exec.compiler().config().fuel);
}

/// A bulk memory instruction costs one unit of fuel however many bytes it writes; only the
/// execution deadline stops a loop of them.
#[test]
fn a_bulk_memory_loop_is_stopped_by_the_deadline() {
    let config = ExecutorConfig {
        fuel: u64::MAX / 4,
        max_exec_time: Some(std::time::Duration::from_millis(20)),
        ..ExecutorConfig::default()
    };
    let mut exec = WasmExecutor::with_config(config).unwrap();
    let ty = exec.load(&hostile("bulk_fill")).expect("loads");
    let mut node = TestNode::new(addr("198.18.0.2"), 7);
    let c = capsule_to(ty, "198.18.0.9", b"");
    for round in 0..2 {
        let run = run_on(&mut exec, &mut node, &c);
        assert_eq!(
            run.trap.as_deref(),
            Some(TrapReason::Deadline.to_string().as_str()),
            "round {round}"
        );
    }
    assert_eq!(exec.counters().deadline_traps, 2);
    // The executor keeps working, deadline armed, for an honest capsule.
    let (_, run) = load_and_run(&mut exec, &capsule_bytes("forward"));
    assert!(run.ok(), "{run:?}");
}

/// Modules are checked (imports, exports, memory, shape) on their bytes, before any compile,
/// and the compile refuses exactly what the check refuses.
#[test]
fn modules_are_checked_before_they_are_compiled() {
    let exec = executor();
    let compiler = exec.compiler();
    for name in [
        "foreign_import",
        "unknown_import",
        "wrong_signature",
        "missing_entry",
        "huge_initial_memory",
    ] {
        let code = hostile(name);
        let checked = compiler.check(&code).expect_err(name);
        assert_eq!(compiler.compile(&code).unwrap_err(), checked, "{name}");
    }
    assert!(compiler.check(&capsule_bytes("forward")).is_ok());
    // Shape bounds: a function with more locals than the limit.
    let many_locals = format!(
        "(module (memory (export \"memory\") 1)
           (func (export \"ants_abi_version\") (result i32) (i32.const 2))
           (func (export \"ants_on_capsule\") (result i32) (local {}) (i32.const 0)))",
        "i64 ".repeat(ants_node::executor::MAX_LOCALS as usize + 1)
    );
    let e = compiler
        .check(&wat::parse_str(&many_locals).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("locals"), "{e}");
}

/// Instance state belongs to its owner: a module's global counts one owner's runs only (the
/// simulator gives each node its own owner, as each real node has its own instance).
#[test]
fn each_owner_has_its_own_instance_state() {
    let mut exec = executor();
    let counter = wat::parse_str(
        "(module (memory (export \"memory\") 1)
           (global $n (mut i32) (i32.const 0))
           (func (export \"ants_abi_version\") (result i32) (i32.const 2))
           (func (export \"ants_on_capsule\") (result i32)
             (global.set $n (i32.add (global.get $n) (i32.const 1)))
             (global.get $n)))",
    )
    .unwrap();
    let ty = exec.load(&counter).unwrap();
    let mut node = TestNode::new(addr("198.18.0.2"), 7);
    let c = capsule_to(ty, "198.18.0.9", b"");
    let mut run_as = |exec: &mut WasmExecutor, owner: u32| {
        exec.set_owner(owner);
        run_on(exec, &mut node, &c).return_code
    };
    assert_eq!(run_as(&mut exec, 0), Some(1));
    assert_eq!(run_as(&mut exec, 0), Some(2));
    assert_eq!(run_as(&mut exec, 1), Some(1), "owner 1 starts afresh");
    assert_eq!(run_as(&mut exec, 0), Some(3), "owner 0's state is its own");
    assert_eq!(run_as(&mut exec, 1), Some(2));
    // Unloading the module drops every owner's instance.
    assert!(exec.unload(&ty));
    assert_eq!(exec.live_instances(), 0);
}

/// Live instances (each with up to `max_memory_bytes` of memory) are bounded apart from the
/// compiled modules; an evicted instance is rebuilt when its type runs again.
#[test]
fn live_instances_are_bounded_and_rebuilt_on_demand() {
    let config = ExecutorConfig {
        max_instances: 3,
        max_exec_time: None,
        ..ExecutorConfig::default()
    };
    let mut exec = WasmExecutor::with_config(config).unwrap();
    let mut node = TestNode::new(addr("198.18.0.2"), 7);
    let types: Vec<_> = (0..8)
        .map(|i| {
            let text = format!(
                "(module (memory (export \"memory\") 1)
                   (func (export \"ants_abi_version\") (result i32) (i32.const 2))
                   (func (export \"ants_on_capsule\") (result i32) (i32.const {i})))"
            );
            exec.load(&wat::parse_str(&text).unwrap()).unwrap()
        })
        .collect();
    assert_eq!(exec.len(), 8, "every module stays compiled");
    assert!(exec.live_instances() <= 3);
    for (i, ty) in types.iter().enumerate() {
        let run = run_on(&mut exec, &mut node, &capsule_to(*ty, "198.18.0.9", b""));
        assert_eq!(run.return_code, Some(i as i32), "type {i} still runs");
        assert!(exec.live_instances() <= 3);
    }
    let k = exec.counters();
    assert!(k.instances_evicted >= 5, "{k:?}");
    assert!(
        k.instantiations > 8,
        "evicted instances were rebuilt: {k:?}"
    );
}

/// Compiled code is bounded in bytes: past `max_compiled_bytes` the least recently used
/// modules are dropped (and a module alone over the bound is refused).
#[test]
fn compiled_code_is_bounded_in_bytes() {
    let module = |i: u32| {
        wat::parse_str(format!(
            "(module (memory (export \"memory\") 1)
               (func (export \"ants_abi_version\") (result i32) (i32.const 2))
               (func (export \"ants_on_capsule\") (result i32) (i32.const {i})))"
        ))
        .unwrap()
    };
    let one = executor()
        .compiler()
        .compile(&module(0))
        .unwrap()
        .code_bytes;
    let config = ExecutorConfig {
        max_compiled_bytes: one * 2 + one / 2,
        max_exec_time: None,
        ..ExecutorConfig::default()
    };
    let mut exec = WasmExecutor::with_config(config).unwrap();
    let types: Vec<_> = (0..4).map(|i| exec.load(&module(i)).unwrap()).collect();
    assert_eq!(exec.len(), 2, "two fit");
    assert!(exec.code_bytes() <= one * 2 + one / 2);
    assert_eq!(exec.counters().modules_evicted, 2);
    assert!(
        exec.is_loaded(&types[3]) && exec.is_loaded(&types[2]),
        "the most recent stay"
    );
    let big = capsule_bytes("traceroute");
    let tight = ExecutorConfig {
        max_compiled_bytes: one,
        max_exec_time: None,
        ..ExecutorConfig::default()
    };
    let e = WasmExecutor::with_config(tight)
        .unwrap()
        .load(&big)
        .unwrap_err();
    assert!(matches!(e, LoadError::TooLarge { .. }), "{e}");
}
