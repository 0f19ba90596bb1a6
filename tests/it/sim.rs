//! The protocol scenarios of the loopback tests, run again in the simulator (`ants-sim`) with
//! the real wasm capsules and the real wasmtime executor: demand loading under code loss, a
//! crash mid-run, multicast exactly-once, anycast failover, traceroute paths, and `ants sim`
//! giving the same trace hash twice.
//!
//! Node numbers are 0-based here (node `i` is 198.18.0.`i+1`, as in the loopback tests'
//! 1-based numbering).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use ants_core::node::Injection;
use ants_node::WasmExecutor;
use ants_sim::{LinkDrop, LinkParams, Scenario, Sim, SimConfig, Topology};
use ants_wire::{Address, CapsuleRepr, CapsuleType};
use sha2::{Digest, Sha256};

use crate::support::*;

fn ty_of(code: &[u8]) -> CapsuleType {
    CapsuleType(Sha256::digest(code).into())
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn sim(topo: Topology, config: SimConfig) -> Sim<WasmExecutor> {
    Sim::new(topo, config, executor())
}

/// App `app` on `node` injects one capsule of `code` now.
fn send(
    s: &mut Sim<WasmExecutor>,
    node: u32,
    app: u32,
    code: &[u8],
    dst: Address,
    header: &[u8],
    payload: &[u8],
) {
    let inj = Injection {
        ty: ty_of(code),
        code: Some(code),
        dst,
        resource: 64,
        header,
        payload,
        trace: None,
    };
    s.inject(node, app, inj)
        .expect("the node accepts the capsule");
}

/// Sequence numbers (u32 payloads) delivered to (node, app), in delivery order.
fn seqs(deliveries: &[ants_sim::Delivered], node: u32, app: u32) -> Vec<u32> {
    deliveries
        .iter()
        .filter(|d| (d.node, d.app) == (node, app))
        .filter_map(|d| {
            let c = CapsuleRepr::parse(&d.capsule).ok()?;
            Some(u32::from_be_bytes(c.payload.try_into().ok()?))
        })
        .collect()
}

#[test]
fn forward_demand_loads_along_a_line_despite_20_percent_code_loss() {
    let code = capsule_bytes("forward");
    let config = SimConfig {
        seed: 3,
        link: LinkParams {
            code_loss: 0.2,
            ..LinkParams::default()
        },
        ..SimConfig::default()
    };
    let mut s = sim(Topology::line(5).unwrap(), config);
    s.register_app(4, 0);
    let far = s.topology().address(4);
    send(&mut s, 0, 7, &code, far, &[], b"lossy");
    s.run_until(Duration::from_secs(30));
    assert_eq!(s.apps()[&(4, 0)].delivered, 1, "loaded despite loss");
    assert!(
        s.stats().drops(LinkDrop::Loss) > 0,
        "code messages were lost"
    );
    for i in 1..5 {
        let n = s.node(i).unwrap();
        assert!(
            n.code_cache().contains(&ty_of(&code)),
            "n{i} caches the module"
        );
        assert!(
            n.loader_counters().requests_sent >= 1,
            "n{i} fetched the code"
        );
    }
    assert_eq!(s.shared().compilations, 1, "one compilation for five nodes");
    // Then 10,000 more at 5,000/s, code everywhere: no loss, each exactly once.
    for k in 0..10_000u32 {
        send(&mut s, 0, 7, &code, far, &[], &k.to_be_bytes());
        let t = s.now() + Duration::from_micros(200);
        s.run_until(t);
    }
    s.run_until(s.now() + Duration::from_secs(1));
    let rx = &s.apps()[&(4, 0)];
    assert_eq!(
        (rx.delivered, rx.distinct, rx.duplicates),
        (10_001, 10_001, 0)
    );
}

#[test]
fn a_node_crashed_mid_run_loses_traffic_then_restarts_with_its_code() {
    let code = capsule_bytes("forward");
    for keep in [true, false] {
        let config = SimConfig {
            keep_code_on_restart: keep,
            ..SimConfig::default()
        };
        let mut s = sim(Topology::line(5).unwrap(), config);
        s.register_app(4, 0);
        s.set_delivery_log(100_000);
        let far = s.topology().address(4);
        s.schedule(ms(1000), ants_sim::Action::Crash(2));
        s.schedule(ms(2000), ants_sim::Action::Restart(2));
        // One capsule every 10 ms for 3 s, its sequence number as payload.
        for k in 0..300u32 {
            send(&mut s, 0, 7, &code, far, &[], &k.to_be_bytes());
            s.run_until(ms(10 * u64::from(k + 1)));
        }
        s.run_until(ms(4000));
        let got = seqs(&s.take_deliveries(), 4, 0);
        let mut sorted = got.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), got.len(), "none twice");
        // Sent at 10·k ms: before the crash all arrive, while node 2 is down none do.
        assert!(
            (0..99).all(|k| sorted.contains(&k)),
            "keep={keep}: {sorted:?}"
        );
        assert!(
            !sorted.iter().any(|k| (101..199).contains(k)),
            "keep={keep}: {sorted:?}"
        );
        let after: Vec<u32> = sorted.iter().copied().filter(|k| *k >= 210).collect();
        assert_eq!(
            after,
            (210..300).collect::<Vec<_>>(),
            "keep={keep}: all after the restart"
        );
        let n2 = s.node(2).unwrap();
        assert!(s.is_up(2));
        let fetched = n2.loader_counters().requests_sent;
        if keep {
            assert_eq!(fetched, 0, "the restarted node reuses its compiled module");
        } else {
            assert!(
                fetched >= 1,
                "without its code the restarted node fetches it again"
            );
        }
        assert!(s.stats().drops(LinkDrop::NodeDown) > 0);
    }
}

/// The multicast scenario of tests/it/multicast.rs, from examples/sim/multicast-tree.toml.
#[test]
fn multicast_tree_delivers_each_capsule_once_per_receiver_then_prunes() {
    let path = root().join("examples/sim/multicast-tree.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let scenario = Scenario::parse(&text, "multicast-tree.toml").unwrap();
    let caps = BTreeMap::from([("multicast".to_string(), capsule_bytes("multicast"))]);
    let (mut s, _) = scenario.build(1, executor(), &caps).unwrap();
    s.set_delivery_log(100_000);
    // Data runs from 500 ms, 1,000 capsules at 4,000/s; then refreshes stop at 1.5 s.
    s.run_until(ms(450));
    let before: Vec<u64> = (0..7).map(|i| s.node(i).unwrap().counters().sent).collect();
    s.run_until(ms(900));
    let during: Vec<u64> = (0..7)
        .map(|i| s.node(i).unwrap().counters().sent - before[i as usize])
        .collect();
    let d = s.take_deliveries();
    for (node, app) in [(4, 50), (5, 60), (6, 70)] {
        let got = seqs(&d, node, app);
        assert_eq!(
            got,
            (0..1000).collect::<Vec<u32>>(),
            "n{node}: each once, in order"
        );
    }
    assert_eq!(
        during[0], 1000,
        "node 0 sends one copy (to node 1) per capsule"
    );
    for (node, copies) in [(1, 2), (2, 2), (3, 1)] {
        assert!(during[node] >= copies * 1000, "n{node}: {during:?}");
    }
    // Two lifetimes after the last refresh nothing flows: 200 late capsules from 4 s.
    s.run_until(ms(3990));
    let sent: Vec<u64> = (0..7).map(|i| s.node(i).unwrap().counters().sent).collect();
    let runs0 = s.node(0).unwrap().counters().runs;
    s.run_until(ms(5000));
    let after: Vec<u64> = (0..7).map(|i| s.node(i).unwrap().counters().sent).collect();
    assert_eq!(
        after, sent,
        "no node sends copies once the branches expired"
    );
    assert!(
        s.node(0).unwrap().counters().runs >= runs0 + 200,
        "node 0 ran them"
    );
    assert!(s.take_deliveries().is_empty(), "no receiver gets data");
}

/// The anycast scenario of tests/it/anycast.rs, from examples/sim/anycast-failover.toml.
#[test]
fn anycast_reaches_the_nearest_member_and_fails_over_to_the_next() {
    let path = root().join("examples/sim/anycast-failover.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let scenario = Scenario::parse(&text, "anycast-failover.toml").unwrap();
    let caps = BTreeMap::from([("anycast".to_string(), capsule_bytes("anycast"))]);
    let (mut s, _) = scenario.build(1, executor(), &caps).unwrap();
    s.set_delivery_log(100_000);
    s.run_until(scenario.duration());
    let d = s.take_deliveries();
    // The sender (node 2) sends seq k at 1 s + 5·k ms, k < 500; node 0 crashes at 2 s.
    let (m0, m7, m6) = (seqs(&d, 0, 0), seqs(&d, 7, 0), seqs(&d, 6, 0));
    assert_eq!(
        m0,
        (0..200).collect::<Vec<u32>>(),
        "the nearest member gets all while alive"
    );
    assert!(m6.is_empty(), "the farthest member never receives: {m6:?}");
    let first = *m7.first().expect("the next nearest takes over");
    assert_eq!(
        m7,
        (first..500).collect::<Vec<u32>>(),
        "then every capsule, once"
    );
    // Node 0 last advertised at 1.8 s; its entries are held 400 ms.
    let sent_at = ms(1000) + ms(5) * first;
    let silent = sent_at - ms(1800);
    eprintln!("failover: {silent:?} after the last advertisement (virtual time)");
    assert!(silent <= ms(400) + ms(5), "failover took {silent:?}");
    assert!(
        sent_at >= ms(2000),
        "member 7 received while member 0 was alive"
    );
}

#[test]
fn traceroute_records_the_active_hops_in_order_and_comes_back() {
    let code = capsule_bytes("traceroute");
    // n1 — n2 — n3 — n4 — n5 — n6, n3 — n7 — n8 (0-based here).
    let edges = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (2, 6), (6, 7)];
    let mut s = sim(Topology::explicit(8, &edges).unwrap(), SimConfig::default());
    s.set_delivery_log(1000);
    let app = 7u32;
    let mut header = vec![0, 0, 0];
    header.extend_from_slice(&app.to_be_bytes());
    header.extend_from_slice(b"tag");
    let addr = |s: &Sim<WasmExecutor>, i: u32| s.topology().address(i);
    let trace = |s: &mut Sim<WasmExecutor>, dst: Address| {
        send(s, 0, app, &code, dst, &header, &[]);
        s.run_until(s.now() + Duration::from_secs(2));
        let d = s.take_deliveries();
        assert_eq!(d.len(), 1, "the probe comes back to the source");
        let c = CapsuleRepr::parse(&d[0].capsule).unwrap();
        let path: Vec<(Address, u64)> = c
            .payload
            .chunks_exact(24)
            .map(|r| {
                (
                    Address(r[..16].try_into().unwrap()),
                    u64::from_be_bytes(r[16..].try_into().unwrap()),
                )
            })
            .collect();
        (c.header.to_vec(), path)
    };
    let to5 = addr(&s, 5);
    let (h, path) = trace(&mut s, to5);
    assert_eq!(h[0], 0x01, "turned around, nothing truncated");
    assert_eq!(u16::from_be_bytes([h[1], h[2]]), 6, "hops");
    assert_eq!(&h[7..], b"tag");
    let hops: Vec<Address> = path.iter().map(|(a, _)| *a).collect();
    assert_eq!(
        hops,
        (0..6).map(|i| addr(&s, i)).collect::<Vec<_>>(),
        "source first, in order"
    );
    assert!(
        path.windows(2).all(|w| w[0].1 < w[1].1),
        "virtual time advances hop by hop: {path:?}"
    );
    let to7 = addr(&s, 7);
    let (_, path) = trace(&mut s, to7);
    let hops: Vec<Address> = path.iter().map(|(a, _)| *a).collect();
    assert_eq!(
        hops,
        [0, 1, 2, 6, 7].map(|i| addr(&s, i)).to_vec(),
        "the branch at n3"
    );
    let (h, path) = trace(&mut s, "198.18.0.9".parse().unwrap());
    assert_eq!(h[0], 0x01 | 0x04, "returning, unreachable");
    assert_eq!(path.len(), 1);
}

#[test]
fn ants_sim_gives_the_same_trace_hash_twice_and_another_for_another_seed() {
    let scenario = root().join("examples/sim/line-loss-crash.toml");
    let run = |args: &[&str], env_seed: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ants"));
        cmd.arg("sim")
            .arg(&scenario)
            .args(args)
            .env_remove("ANTS_SIM_SEED");
        if let Some(s) = env_seed {
            cmd.env("ANTS_SIM_SEED", s);
        }
        let o = cmd.output().expect("run ants sim");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let a = run(&["--quiet"], None);
    assert!(a.starts_with("trace sha256 "), "{a}");
    assert_eq!(
        a,
        run(&["--quiet"], None),
        "same scenario, same seed, same hash"
    );
    let other = run(&["--quiet", "--seed", "43"], None);
    assert_ne!(a, other, "another seed, another run");
    assert_eq!(
        other,
        run(&["--quiet"], Some("43")),
        "ANTS_SIM_SEED sets the seed too"
    );
    // The full report names the seed and the hash; the trace file hashes to it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trace.jsonl");
    let text = run(&["--trace", file.to_str().unwrap()], None);
    assert!(text.contains("seed       42"), "{text}");
    let bytes = std::fs::read(&file).unwrap();
    let hex: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(a.contains(&hex), "the file's SHA-256 is the printed hash");
    assert!(text.contains(&hex));
    let first: serde_json::Value =
        serde_json::from_slice(bytes.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert!(first["t"].is_u64() && first["ev"].is_string(), "{first}");
}

/// `ants sim --workers N`: the real wasm capsules on 1, 2 and 3 threads give the same run —
/// every counter, every node's, every app's, and the trace byte for byte.
#[test]
fn ants_sim_gives_the_same_run_on_any_number_of_threads() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "multicast-tree.toml",
        "anycast-failover.toml",
        "line-loss-crash.toml",
    ] {
        let scenario = root().join("examples/sim").join(name);
        let run = |workers: &str| {
            let trace = dir.path().join(format!("{name}-{workers}.jsonl"));
            let (ok, out, err) = crate::support::run_ants(&[
                "sim",
                scenario.to_str().unwrap(),
                "--json",
                "--workers",
                workers,
                "--trace",
                trace.to_str().unwrap(),
            ]);
            assert!(ok, "{name} on {workers}: {err}");
            let mut report: serde_json::Value = serde_json::from_str(&out).unwrap();
            report.as_object_mut().unwrap().remove("wall");
            (report, std::fs::read(&trace).unwrap())
        };
        let (one, trace) = run("1");
        assert!(one["capsule_hops"].as_u64().unwrap() > 0, "{name}: {one}");
        assert!(trace.len() > 1000, "{name}: a trace was written");
        for workers in ["2", "3"] {
            let (report, t) = run(workers);
            assert_eq!(report, one, "{name} on {workers} threads");
            assert!(t == trace, "{name}: the trace on {workers} threads differs");
        }
    }
    // What needs the global order as it happens runs on one thread, and says so.
    let path = dir.path().join("watched.toml");
    let base = std::fs::read_to_string(root().join("examples/sim/multicast-tree.toml")).unwrap();
    std::fs::write(
        &path,
        format!("{base}\n[[watch]]\nproperty = \"no-duplicate-delivery\"\n"),
    )
    .unwrap();
    let (ok, _, err) = crate::support::run_ants(&["sim", path.to_str().unwrap(), "--workers", "2"]);
    assert!(ok, "{err}");
    assert!(
        err.contains(
            "running on 1 thread, not 2: watchpoints are checked in the global event order"
        ),
        "{err}"
    );
    let (ok, _, err) = crate::support::run_ants(&["sim", path.to_str().unwrap(), "--workers", "0"]);
    assert!(!ok && err.contains("--workers"), "{err}");
}

/// `ants sim` with watchpoints: the first violation stops the run and says what, when,
/// where, the trace lines before it and how to reproduce it — the same every time.
#[test]
fn a_violated_watch_stops_ants_sim_with_what_where_and_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("watched.toml");
    let base =
        std::fs::read_to_string(crate::support::root().join("examples/sim/multicast-tree.toml"))
            .unwrap();
    std::fs::write(
        &path,
        format!(
            "{base}\n[[watch]]\nproperty = \"no-duplicate-delivery\"\n\n\
             [[watch]]\nproperty = \"max-held\"\nlimit = 2\n"
        ),
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let (ok, _, err) = crate::support::run_ants(&["sim", p, "--quiet"]);
    assert!(!ok, "a violation fails the run");
    assert!(err.contains("watch violated: max-held (limit 2)"), "{err}");
    assert!(err.contains("on node 1: 3 capsules held"), "{err}");
    assert!(
        err.contains("the last trace lines before it:\n    {\"t\":"),
        "{err}"
    );
    assert!(
        err.contains(&format!("reproduce: ants sim {p} --seed 1")),
        "{err}"
    );
    let (_, _, again) = crate::support::run_ants(&["sim", p, "--quiet"]);
    assert_eq!(again, err, "the same seed stops at the same place");
    // Within the limits, the scenario runs to its end and succeeds.
    std::fs::write(
        &path,
        format!("{base}\n[[watch]]\nproperty = \"no-duplicate-delivery\"\n"),
    )
    .unwrap();
    let (ok, _, err) = crate::support::run_ants(&["sim", p, "--quiet"]);
    assert!(ok, "{err}");
    // A property of the soft-store: the multicast branches a node keeps outgrow 40 bytes.
    std::fs::write(
        &path,
        format!("{base}\n[[watch]]\nproperty = \"max-store-bytes\"\nlimit = 40\n"),
    )
    .unwrap();
    let (ok, _, err) = crate::support::run_ants(&["sim", p, "--quiet"]);
    assert!(!ok);
    assert!(
        err.contains("watch violated: max-store-bytes (limit 40)")
            && err.contains("its soft-store holds"),
        "{err}"
    );
    // A property of a route's state, P2-style: every receiver has a branch toward the
    // sender — the multicast key of group 7 on every node from 4, 5 and 6 to 0. It holds
    // while the receivers refresh; their branches lapse after they stop (1.5 s + 2 s).
    let path_watch = |at: &str| {
        format!(
            "{base}\n[[watch]]\nproperty = \"store-path\"\ncapsule = \"multicast\"\n\
             key = \"str:g u32:7\"\nfrom = [4, 5, 6]\nto = 0\nat = \"{at}\"\n"
        )
    };
    std::fs::write(&path, path_watch("1s")).unwrap();
    let (ok, _, err) = crate::support::run_ants(&["sim", p, "--quiet"]);
    assert!(ok, "every route keeps its branch at 1 s: {err}");
    std::fs::write(&path, path_watch("4500ms")).unwrap();
    let (ok, _, err) = crate::support::run_ants(&["sim", p, "--quiet"]);
    assert!(!ok);
    assert!(
        err.contains("watch violated: store-path (multicast key 6700000007 on every route from 3 node(s) to node 0, at 4.5s)")
            && err.contains("at 4.500000 s of virtual time, on node 4: node 4, on the route from node 4 to node 0, keeps no multicast key 6700000007"),
        "{err}"
    );
}

#[test]
fn a_scenario_too_large_for_this_machine_is_refused_before_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("huge.toml");
    // 4,194,304 nodes (the most a topology has) at ~8 KiB each: about 32 GiB, more than a
    // 24 GiB machine has. The capsule need not exist: the check comes first.
    std::fs::write(
        &file,
        "name = \"huge\"\nduration = \"1s\"\n\n[topology]\nkind = \"tree\"\nnodes = 4194304\n\n\
         [[send]]\nnode = 0\ncapsule = \"nowhere\"\ndst = 1\nat = \"0s\"\n",
    )
    .unwrap();
    let available_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib >> 20);
    if available_gib >= 32 {
        eprintln!("skipped: this machine has {available_gib} GiB available");
        return;
    }
    let (ok, _, err) = run_ants(&["sim", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("huge.toml")
            && err.contains("4194304 nodes need about")
            && err.contains("GiB available"),
        "{err}"
    );
}
