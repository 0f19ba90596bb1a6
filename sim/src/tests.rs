//! Whole-simulator tests with a native stand-in executor (no wasm): demand loading through
//! the per-node view, partitions, crashes, link models, and determinism across seeds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ants_core::node::Injection;
use ants_wire::CapsuleType;
use sha2::{Digest, Sha256};

use crate::apps::{Dst, SendPlan, Template};
use crate::link::{LinkDrop, LinkParams};
use crate::{Action, Scenario, Sim, SimConfig, Topology, Trace, node_address};

pub(crate) use ants_core::{NativeForward, native_module as module};

fn ty_of(code: &[u8]) -> CapsuleType {
    CapsuleType(Sha256::digest(code).into())
}

fn line(n: u32, config: SimConfig) -> Sim<NativeForward> {
    let mut sim = Sim::new(Topology::line(n).unwrap(), config, NativeForward::default());
    for i in 0..n {
        sim.register_app(i, 0);
    }
    sim
}

fn send(sim: &mut Sim<NativeForward>, from: u32, to: u32, code: &[u8], payload: &[u8]) {
    let inj = Injection {
        ty: ty_of(code),
        code: Some(code),
        dst: node_address(to),
        resource: 64,
        header: &[],
        payload,
        trace: None,
    };
    sim.inject(from, 7, inj).expect("inject");
}

fn delivered_to(sim: &Sim<NativeForward>, node: u32) -> u64 {
    sim.apps().get(&(node, 0)).map_or(0, |a| a.delivered)
}

#[test]
fn demand_loading_happens_hop_by_hop_with_one_shared_executor() {
    let mut sim = line(5, SimConfig::default());
    let code = module(5000, 1);
    send(&mut sim, 0, 4, &code, b"first");
    sim.run_until(Duration::from_secs(5));
    assert_eq!(
        delivered_to(&sim, 4),
        1,
        "the first capsule reaches the far end"
    );
    for i in 0..5 {
        let n = sim.node(i).unwrap();
        assert!(n.code_cache().contains(&ty_of(&code)), "node {i} caches it");
        assert_eq!(
            sim.installed_types(i),
            vec![ty_of(&code)],
            "node {i} installed it"
        );
        if i > 0 {
            assert!(
                n.loader_counters().requests_sent >= 1,
                "node {i} fetched it"
            );
        }
    }
    assert_eq!(sim.shared().compilations, 1, "compiled once for all nodes");
    assert_eq!(sim.shared().inner().loads, 1);
    for k in 0..100u32 {
        send(&mut sim, 0, 4, &code, &k.to_be_bytes());
    }
    sim.run_until(Duration::from_secs(10));
    assert_eq!(delivered_to(&sim, 4), 101);
    assert_eq!(sim.stats().capsule_hops, 101 * 4);
    // Virtual time: 4 hops of 1 ms, no waiting for code any more.
    let d = sim.take_deliveries();
    let last = d.last().unwrap();
    assert_eq!(last.at, Duration::from_secs(5) + Duration::from_millis(4));
}

#[test]
fn capsules_are_counted_per_directed_link_when_asked() {
    let mut sim = line(3, SimConfig::default());
    let code = module(100, 3);
    send(&mut sim, 0, 2, &code, b"before counting");
    sim.run_until(Duration::from_secs(2));
    assert_eq!(sim.link_capsules(0, 1), None, "off by default");
    sim.count_link_capsules();
    for k in 0..5u32 {
        send(&mut sim, 0, 2, &code, &k.to_be_bytes());
    }
    send(&mut sim, 2, 1, &code, b"back");
    sim.run_until(Duration::from_secs(4));
    assert_eq!(delivered_to(&sim, 2), 6);
    assert_eq!(sim.link_capsules(0, 1), Some(5));
    assert_eq!(sim.link_capsules(1, 2), Some(5));
    assert_eq!(sim.link_capsules(2, 1), Some(1));
    assert_eq!(sim.link_capsules(1, 0), Some(0));
    assert_eq!(sim.link_capsules(0, 2), None, "no such link");
}

#[test]
fn a_partition_drops_traffic_until_repaired() {
    let mut sim = line(3, SimConfig::default());
    let code = module(100, 2);
    send(&mut sim, 0, 2, &code, b"warm");
    sim.run_until(Duration::from_secs(1));
    assert_eq!(delivered_to(&sim, 2), 1);
    sim.schedule(Duration::from_secs(2), Action::Partition(1, 2));
    sim.schedule(Duration::from_secs(4), Action::Repair(1, 2));
    sim.run_until(Duration::from_secs(3));
    assert_eq!(sim.link_up(2, 1), Some(false));
    send(&mut sim, 0, 2, &code, b"cut");
    sim.run_until(Duration::from_millis(3500));
    assert_eq!(delivered_to(&sim, 2), 1, "nothing crosses the partition");
    assert_eq!(sim.stats().drops(LinkDrop::Partition), 1);
    sim.run_until(Duration::from_secs(5));
    send(&mut sim, 0, 2, &code, b"healed");
    sim.run_until(Duration::from_secs(6));
    assert_eq!(delivered_to(&sim, 2), 2);
}

#[test]
fn a_crashed_node_drops_traffic_and_restarts_with_or_without_its_code() {
    for keep in [true, false] {
        let config = SimConfig {
            keep_code_on_restart: keep,
            ..SimConfig::default()
        };
        let mut sim = line(3, config);
        let code = module(3000, 3);
        send(&mut sim, 0, 2, &code, b"a");
        sim.run_until(Duration::from_secs(1));
        sim.crash(1);
        assert!(!sim.is_up(1));
        let inj = Injection {
            ty: ty_of(&code),
            code: None,
            dst: node_address(0),
            resource: 8,
            header: &[],
            payload: &[],
            trace: None,
        };
        assert_eq!(
            sim.inject(1, 3, inj),
            Err(crate::InjectFailure::NodeDown(1))
        );
        assert_eq!(
            sim.inject(9, 3, inj),
            Err(crate::InjectFailure::NoSuchNode(9))
        );
        send(&mut sim, 0, 2, &code, b"b");
        sim.run_until(Duration::from_secs(2));
        assert_eq!(sim.stats().drops(LinkDrop::NodeDown), 1);
        assert_eq!(sim.node(1).unwrap().counters().runs, 0, "state is gone");
        sim.restart(1);
        send(&mut sim, 0, 2, &code, b"c");
        sim.run_until(Duration::from_secs(8));
        assert_eq!(delivered_to(&sim, 2), 2, "keep = {keep}");
        let fetched = sim.node(1).unwrap().loader_counters().requests_sent;
        assert_eq!(fetched > 0, !keep, "keep = {keep}: {fetched} requests");
        assert_eq!(sim.shared().compilations, 1, "still compiled once");
    }
}

#[test]
fn a_slow_link_queues_and_tail_drops_a_burst() {
    let config = SimConfig {
        link: LinkParams {
            bandwidth_bps: 1_000_000,
            queue_bytes: 2000,
            ..LinkParams::default()
        },
        ..SimConfig::default()
    };
    let mut sim = line(2, config);
    let code = module(10, 4);
    send(&mut sim, 0, 1, &code, b"warm");
    sim.run_until(Duration::from_secs(2));
    for _ in 0..50 {
        send(&mut sim, 0, 1, &code, &[0; 200]);
    }
    sim.run_until(Duration::from_secs(3));
    let queued = sim.stats().drops(LinkDrop::Queue);
    assert!(queued > 30, "{queued} tail drops");
    let got: Vec<Duration> = sim.take_deliveries().iter().skip(1).map(|d| d.at).collect();
    assert_eq!(got.len() as u64 + queued, 50);
    // Serialised back to back: ~2.3 ms apart at 1 Mbit/s for ~290-byte datagrams.
    assert!(
        got.windows(2)
            .all(|w| w[1] - w[0] > Duration::from_millis(2))
    );
}

/// A scenario exercising every random element: loss, jitter, random destinations, a crash
/// and a partition.
const SWEEP: &str = r#"
duration = "3s"
[topology]
kind = "random"
nodes = 40
degree = 3
[links]
latency = "2ms"
jitter = "1ms"
loss = 0.05
bandwidth = "10Mbit"
[[send]]
node = "random:6"
capsule = "fwd"
dst = "random"
payload = "u32:seq"
every = "20ms"
until = "2500ms"
[[fault]]
at = "1s"
crash = 7
[[fault]]
at = "2s"
restart = 7
[[fault]]
at = "500ms"
partition = [0, 1]
[[fault]]
at = "1500ms"
repair = [0, 1]
"#;

fn sweep_hash(seed: u64) -> (String, u64) {
    let s = Scenario::parse(SWEEP, "sweep").unwrap();
    let caps = BTreeMap::from([("fwd".to_string(), module(4000, 9))]);
    let (mut sim, _) = s.build(seed, NativeForward::default(), &caps).unwrap();
    sim.set_trace(Trace::hashed());
    sim.run_until(s.duration());
    (sim.trace().hash_hex().unwrap(), sim.stats().capsule_hops)
}

#[test]
fn same_seed_same_trace_hash_and_different_seeds_differ() {
    let mut hashes = BTreeSet::new();
    for seed in [1, 2, 3, 42, 1 << 40, u64::MAX] {
        let (a, hops) = sweep_hash(seed);
        let (b, _) = sweep_hash(seed);
        assert_eq!(a, b, "seed {seed} is reproducible");
        assert!(hops > 500, "seed {seed}: traffic flowed ({hops} hops)");
        hashes.insert(a);
    }
    assert_eq!(hashes.len(), 6, "each seed gives its own run");
}

#[test]
fn repeated_sends_follow_their_plan_and_stop_at_until() {
    let mut sim = line(2, SimConfig::default());
    let code: Arc<[u8]> = Arc::from(module(10, 5));
    let mut plan = SendPlan::once(0, 7, ty_of(&code), Some(code), node_address(1));
    plan.count = 1000;
    plan.interval = Duration::from_millis(10);
    plan.until = Some(Duration::from_millis(95));
    plan.payload = Template(vec![crate::Field::Seq(4)]);
    plan.dst = Dst::Address(node_address(1));
    sim.schedule(Duration::from_millis(5), Action::Send(Box::new(plan)));
    sim.run_until(Duration::from_secs(1));
    let d = sim.take_deliveries();
    // Sends at 5, 15, …, 85 ms: 9 of them.
    assert_eq!(d.len(), 9);
    assert_eq!(sim.apps()[&(0, 7)].injected, 9);
    assert_eq!(sim.apps()[&(1, 0)].distinct, 9);
}

/// The SWEEP scenario's report (every counter, per node too, and the trace hash) after a
/// run to its end: sequential with `workers` 1, else parallel; with `switch`, parallel up
/// to that time and sequential from there.
fn sweep_report(seed: u64, workers: u32, switch: Option<Duration>) -> serde_json::Value {
    let s = Scenario::parse(SWEEP, "sweep").unwrap();
    let caps = BTreeMap::from([("fwd".to_string(), module(4000, 9))]);
    let (mut sim, names) = s.build(seed, NativeForward::default(), &caps).unwrap();
    sim.set_trace(Trace::hashed());
    let executors = || (1..workers).map(|_| NativeForward::default()).collect();
    let mut windows = 0u64;
    if workers == 1 {
        sim.run_until(s.duration());
    } else {
        let end = switch.unwrap_or(s.duration());
        sim.run_parallel(end, executors(), |_, _| windows += 1)
            .unwrap();
        assert!(windows > 100, "{windows} windows");
        sim.run_until(s.duration());
    }
    serde_json::to_value(crate::Report::new(&sim, None, &names, true)).unwrap()
}

#[test]
fn parallel_runs_give_the_sequential_result_event_for_event() {
    for seed in [1, 7, u64::MAX] {
        let sequential = sweep_report(seed, 1, None);
        assert!(sequential["capsule_hops"].as_u64().unwrap() > 500);
        for workers in [2, 3, 8] {
            assert_eq!(
                sweep_report(seed, workers, None),
                sequential,
                "seed {seed}, {workers} workers"
            );
        }
        // Parallel to 1.2 s (crash done, partition up, send plans and datagrams in
        // flight), then on sequentially: the hand-back loses nothing.
        let switched = sweep_report(seed, 2, Some(Duration::from_millis(1200)));
        assert_eq!(switched, sequential, "seed {seed}, switched at 1.2 s");
    }
}

#[test]
fn what_cannot_run_in_parallel_says_why() {
    let s = Scenario::parse(SWEEP, "sweep").unwrap();
    let caps = BTreeMap::from([("fwd".to_string(), module(4000, 9))]);
    let (mut sim, _) = s.build(1, NativeForward::default(), &caps).unwrap();
    assert_eq!(sim.parallel_obstacle(2), None);
    assert_eq!(
        sim.parallel_obstacle(1),
        Some(crate::Obstacle::Workers {
            workers: 1,
            nodes: 40
        })
    );
    assert!(sim.parallel_obstacle(41).is_some());
    sim.set_delivery_log(10);
    assert_eq!(sim.parallel_obstacle(2), Some(crate::Obstacle::DeliveryLog));
    sim.set_delivery_log(0);
    sim.set_watches(vec![crate::Watch::NoDuplicateDelivery]);
    assert_eq!(sim.parallel_obstacle(2), Some(crate::Obstacle::Watches));
    sim.set_watches(Vec::new());
    let instant = LinkParams {
        latency_ns: 0,
        ..LinkParams::default()
    };
    assert!(sim.set_link_params(3, sim.topology().neighbours(3)[0], instant));
    assert_eq!(sim.parallel_obstacle(2), Some(crate::Obstacle::NoLookahead));
    let r = sim.run_parallel(
        Duration::from_secs(1),
        vec![NativeForward::default()],
        |_, _| {},
    );
    assert_eq!(r, Err(crate::Obstacle::NoLookahead));
    assert_eq!(sim.stats().events, 0, "nothing ran");
}
