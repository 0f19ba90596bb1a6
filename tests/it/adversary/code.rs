//! Peers that try to make a node fetch, compile and store code it should not, or to stop it
//! from loading code it should.

use std::time::{Duration, Instant};

use ants_app::{AppClient, Inject};
use ants_wire::{CapsuleType, CodeChunk, CodeNack, CodeRequest, Message, NackReason};

use super::harness::{Attack, Attacker, Field, Setup, T, capsule, encode, type_of};
pub(super) use crate::support::fresh_forward;
use crate::support::{addr, capsule_bytes};
use crate::topology::Topology;

fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

/// A valid capsule module that is its own type for each `n`, of about `functions` × 10 bytes
/// (each function a few instructions: compile time grows with it).
pub(super) fn module(n: u32, functions: usize) -> Vec<u8> {
    let mut text = format!(
        "(module (memory (export \"memory\") 1) (data (i32.const 0) \"module {n}\")
           (func (export \"ants_abi_version\") (result i32) (i32.const 2))
           (func (export \"ants_on_capsule\") (result i32) (i32.const 0))"
    );
    for f in 0..functions {
        text += &format!(
            "(func (param i32) (result i32) (i32.add (i32.mul (local.get 0) (i32.const {f})) (i32.const {n})))"
        );
    }
    text += ")";
    wat::parse_str(text).unwrap()
}

/// From S's app, send capsules of a (forward-like) type new to T, toward T's app 0; whether
/// one arrives within `within`.
pub(super) fn legit_new_type_arrives(a: &Attack, code: Vec<u8>, within: Duration) -> bool {
    let mut tx = AppClient::connect(&a.s_sock, 56).expect("probe sender");
    let inj = Inject::with_code(code, addr(T), 8, vec![], b"probe".to_vec());
    let ty = inj.capsule_type;
    tx.inject(&inj).expect("probe inject");
    let end = Instant::now() + within;
    let mut k = 0u32;
    while Instant::now() < end {
        // Keep sending (held capsules are bounded; one of them must make it).
        std::thread::sleep(Duration::from_millis(100));
        if a.delivered_of(&ty) > 0 {
            return true;
        }
        k += 1;
        let again = Inject {
            code: None,
            capsule_type: ty,
            dst: addr(T),
            resource: 8,
            header: vec![],
            payload: k.to_be_bytes().to_vec(),
            trace: None,
        };
        let _ = tx.inject(&again);
    }
    false
}

#[test]
fn strangers_cannot_make_a_node_run_fetch_serve_or_compile_anything() {
    let setup = Setup {
        attacker: Attacker::Stranger,
        ..Setup::default()
    };
    let (r, sent) = Field::start(&setup).run(&setup, |a| {
        let forward = type_of(&capsule_bytes("forward"));
        let mut sent = 0u64;
        let mut n = 0u32;
        while !a.stopped() {
            let ty = CapsuleType(type_of(&n.to_be_bytes()).0);
            let msgs = [
                capsule(ty, T, 64, b"run me"),
                capsule(forward, T, 64, b"a known type"),
                encode(&Message::CodeRequest(CodeRequest {
                    capsule_type: forward,
                    first_chunk: 0,
                    bitmap: &[],
                })),
                encode(&Message::CodeChunk(CodeChunk {
                    capsule_type: ty,
                    total_len: 10,
                    offset: 0,
                    bytes: &[0; 10],
                })),
                encode(&Message::CodeNack(CodeNack {
                    capsule_type: forward,
                    reason: NackReason::NotFound,
                })),
                b"not even a message".to_vec(),
            ];
            for m in &msgs {
                a.send(m);
                sent += 1;
            }
            n += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        sent
    });
    r.assert_legit_flow_intact();
    r.assert_stopped_promptly();
    r.assert_rss_growth_below(32);
    assert_eq!(
        r.counter("node/drops/stranger"),
        sent,
        "every datagram dropped unparsed"
    );
    assert_eq!(
        r.counter("loader/fetches_started"),
        1,
        "only the legitimate fetch"
    );
    assert_eq!(r.counter("loader/chunks_served"), 0);
    assert_eq!(r.counter("node/modules_installed"), 1);
}

#[test]
fn a_silent_neighbour_cannot_take_the_fetch_slots() {
    // The attacker sends capsules of 40 new types and never answers for their code. It may
    // start 4 loads; a type S introduces meanwhile still loads at once.
    let setup = Setup::default();
    let (r, probe) = Field::start(&setup).run(&setup, |a| {
        for n in 0..40u32 {
            let ty = type_of(&module(n, 0));
            a.send(&capsule(ty, T, 8, b""));
        }
        std::thread::sleep(Duration::from_millis(200));
        legit_new_type_arrives(a, fresh_forward("slots", 0), Duration::from_secs(2))
    });
    r.assert_legit_flow_intact();
    r.assert_stopped_promptly();
    assert!(probe, "a legitimate new type loaded during the attack");
    assert!(r.counter("loader/peer_busy_refusals") >= 30, "{}", r.stats);
}

#[test]
fn a_dripping_neighbour_is_left_for_an_honest_one_and_poisons_nothing() {
    // The attacker introduces a type and answers for its code one chunk every 150 ms. S sends
    // capsules of the same type: T must leave the dripper (a stalled peer) and load from S.
    let setup = Setup {
        attack_for: Duration::from_secs(5),
        ..Setup::default()
    };
    let code = fresh_forward("drip", 40 * 1024);
    let ty = type_of(&code);
    let (r, probe) = Field::start(&setup).run(&setup, move |a| {
        std::thread::scope(|s| {
            s.spawn(|| {
                a.serve(
                    std::slice::from_ref(&code),
                    Duration::from_millis(150),
                    far(),
                )
            });
            a.send(&capsule(ty, T, 8, b"drip"));
            std::thread::sleep(Duration::from_millis(100));
            legit_new_type_arrives(a, code.clone(), Duration::from_secs(4))
        })
    });
    r.assert_legit_flow_intact();
    r.assert_stopped_promptly();
    assert!(
        probe,
        "the honest peer's capsule of the dripped type arrived"
    );
    assert!(r.counter("loader/stalled_peers") >= 1, "{}", r.stats);
    assert_eq!(r.counter("loader/distrust_refusals"), 0);
}

#[test]
fn a_flood_of_modules_is_bounded_by_compile_budget_queue_and_disk() {
    // The attacker serves 60 distinct modules of ~5,000 functions each (tens of ms to compile
    // in a release build, about 2.5 s in a debug one; hundreds of KiB compiled): compiles are
    // charged to it, the code directory stays within 1 MiB, memory within the bounds. The
    // attack lasts long enough for several compiles even on a loaded machine.
    let setup = Setup {
        attack_for: Duration::from_secs(10),
        t_extra: "[limits]\ncode_cache_disk_bytes = 1048576\nmax_instances = 8\n".into(),
        ..Setup::default()
    };
    let codes: Vec<Vec<u8>> = (0..60).map(|n| module(n, 5000)).collect();
    let types: Vec<CapsuleType> = codes.iter().map(|c| type_of(c)).collect();
    let (r, ()) = Field::start(&setup).run(&setup, move |a| {
        std::thread::scope(|s| {
            s.spawn(|| a.serve(&codes, Duration::ZERO, far()));
            while !a.stopped() {
                // Round after round: each module asked for again once it is pruned.
                for ty in &types {
                    a.send(&capsule(*ty, T, 8, b""));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
    });
    r.assert_legit_flow_intact();
    r.assert_stopped_promptly();
    r.assert_rss_growth_below(160);
    let biggest_entry = 1 << 20; // one module's wasm + compiled form may overshoot
    assert!(
        r.disk_bytes <= (1 << 20) + biggest_entry,
        "code directory holds {} bytes",
        r.disk_bytes
    );
    assert!(r.counter("disk/pruned") >= 1, "{}", r.stats);
    let refused =
        r.counter("loader/compile_budget_refusals") + r.counter("loader/peer_busy_refusals");
    assert!(refused >= 1, "the attacker was held back: {}", r.stats);
    // Compile time stayed within the attacker's budget: 250 ms/s over the run (10 s of
    // attack, up to 4 s of warm-up and drain), the 2 s burst, and the compiles of the loads it
    // had started while its bucket was still positive (at most fetches_per_peer = 4 of them).
    // Each worker keeps its own peer budgets (a type's loads run on one worker).
    let compile_ms = r.stats["compile_ms"].as_f64().unwrap_or(0.0);
    let workers = r.stats["workers"].as_array().map_or(1, Vec::len) as f64;
    let slowest = 2600.0; // debug build
    assert!(
        compile_ms <= workers * (250.0 * 14.0 + 2000.0 + 4.0 * slowest),
        "{compile_ms} ms compiling: {}",
        r.stats
    );
}

#[test]
fn the_allow_list_holds_for_the_network_apps_and_the_code_directory() {
    let forward = type_of(&capsule_bytes("forward"));
    let setup = Setup {
        t_extra: format!("[code]\npolicy = \"allow-list\"\nallow = [\"{forward}\"]\n"),
        attack_for: Duration::from_secs(2),
        ..Setup::default()
    };
    let field = Field::start(&setup);
    // A module the policy does not allow, from a neighbour and from a local app. (Code in the
    // code directory is covered by the core's tests: `add_code` and `set_stored` refuse it.)
    let other = module(7, 0);
    let (r, injected) = field.run(&setup, move |a| {
        a.send(&capsule(type_of(&other), T, 8, b""));
        let mut app = AppClient::connect(&a.t_sock, 77).unwrap();
        let inj = Inject::with_code(other.clone(), addr(T), 8, vec![], vec![]);
        app.inject(&inj).map_err(|e| e.to_string())
    });
    r.assert_legit_flow_intact();
    r.assert_stopped_promptly();
    let e = injected.expect_err("an app cannot inject a type the policy refuses");
    assert!(e.contains("not allowed"), "{e}");
    assert!(r.counter("loader/policy_refusals") >= 1, "{}", r.stats);
    assert_eq!(r.counter("node/modules_installed"), 1);
}

#[test]
fn a_node_that_serves_nothing_sends_no_code() {
    // serve_bytes_per_sec = 0 at node 1: node 2 cannot get the code from it (a nack, no
    // chunk), where before the first burst was still served.
    let line = Topology::line(2, "[limits]\nserve_bytes_per_sec = 0\n");
    let mut tx = AppClient::connect(line.sock(1), 7).unwrap();
    let inj = Inject::with_code(
        capsule_bytes("forward"),
        addr("198.18.0.2"),
        8,
        vec![],
        vec![],
    );
    tx.inject(&inj).unwrap();
    let end = Instant::now() + Duration::from_secs(3);
    while line.stats(1).loader.nacks_sent == 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let s1 = line.stats(1);
    assert_eq!(s1.loader.chunks_served, 0);
    assert!(s1.loader.nacks_sent >= 1);
    assert_eq!(line.stats(2).node.modules_installed, 0);
}

#[test]
fn a_burst_through_a_node_is_forwarded_whole_or_counted() {
    // 20,000 capsules as fast as the app can inject them through node 2: every capsule node 2
    // received, it sent on (its send batch holds 64; nothing may be dropped uncounted).
    let line = Topology::line(3, "");
    let mut rx = AppClient::connect(line.sock(3), 0).unwrap();
    let mut tx = AppClient::connect(line.sock(1), 7).unwrap();
    let first = Inject::with_code(
        capsule_bytes("forward"),
        addr("198.18.0.3"),
        8,
        vec![],
        vec![],
    );
    tx.inject(&first).unwrap();
    assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap().is_some());
    for k in 0..20_000u32 {
        let inj = Inject {
            code: None,
            payload: k.to_be_bytes().to_vec(),
            ..first.clone()
        };
        tx.inject(&inj).unwrap();
    }
    std::thread::sleep(Duration::from_secs(1));
    let s2 = line.stats(2);
    assert_eq!(s2.udp_dropped, 0, "node 2 dropped nothing on the way out");
    let lost_inside = s2.node.drops.values().sum::<u64>();
    assert_eq!(s2.node.sent + lost_inside, s2.node.capsules_in, "{s2:?}");
    assert_eq!(lost_inside, 0);
}
