//! Capsule traces on real overlay nodes: a traced multicast capsule's fan-out, and the code
//! fetches a traced capsule causes, read back from the origin with `ants trace`.

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use ants_app::{AppClient, Inject};
use serde_json::Value;

use crate::support::*;
use crate::topology::{Topology, node_addr};

/// Node `i`'s trace `id` as JSON, once `done` holds for it (polled for up to 10 s).
fn trace_when(topo: &Topology, i: usize, id: u64, done: impl Fn(&[Value]) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = ants_app::traces(topo.sock(i), Some(id), Duration::from_secs(5)).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let events = v["trace"]["events"].as_array().cloned().unwrap_or_default();
        if done(&events) {
            return v["trace"].clone();
        }
        assert!(Instant::now() < deadline, "trace {id:x} incomplete: {v:#}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn kind(e: &Value) -> &str {
    e["kind"].as_str().unwrap()
}

fn node_of(e: &Value) -> &str {
    e["node"].as_str().unwrap()
}

/// Every `received` has the `sent` that caused it — on the peer, toward this node, at the
/// Lamport time the capsule carried — and comes after it: happened-before holds.
fn check_causality(events: &[Value]) {
    for r in events.iter().filter(|e| kind(e) == "received") {
        let cause = events.iter().find(|s| {
            kind(s) == "sent"
                && node_of(s) == r["peer"].as_str().unwrap()
                && s["peer"] == r["node"]
                && s["clock"] == r["sent_at"]
        });
        let cause = cause.unwrap_or_else(|| panic!("no send caused {r}"));
        assert!(
            r["clock"].as_u64() > cause["clock"].as_u64(),
            "{r} after {cause}"
        );
    }
    // On each node, events of one handling have increasing clocks.
    let mut clocks: Vec<(&str, u64)> = events
        .iter()
        .map(|e| (node_of(e), e["clock"].as_u64().unwrap()))
        .collect();
    let n = clocks.len();
    clocks.sort();
    clocks.dedup();
    assert_eq!(
        clocks.len(),
        n,
        "no node records two events at one Lamport time"
    );
}

const EDGES: [(usize, usize); 6] = [(1, 2), (2, 3), (2, 4), (3, 5), (3, 6), (4, 7)];
const GROUP: u32 = 7;

#[test]
fn a_traced_multicast_capsule_reports_its_fan_out_in_happened_before_order() {
    let code = capsule_bytes("multicast");
    let tree = Topology::start(7, &EDGES, "");
    let sender = addr(&node_addr(1));
    let mut app = AppClient::connect(tree.sock(1), 1).unwrap();
    let mut data_header = vec![2, 0, 0, 0];
    data_header.extend_from_slice(&GROUP.to_be_bytes());
    let mut data = Inject::with_code(code.clone(), sender, 16, data_header, b"probe".to_vec());
    app.inject(&data).unwrap();
    data.code = None;

    // Receivers on 5, 6, 7 subscribe once (a 60 s branch lifetime: no refreshes needed).
    let mut receivers: Vec<AppClient> = [(5, 50u32), (6, 60), (7, 70)]
        .into_iter()
        .map(|(node, id)| {
            let mut c = AppClient::connect(tree.sock(node), id).unwrap();
            let mut h = vec![1, 0, 0, 0];
            for w in [GROUP, id, 60_000] {
                h.extend_from_slice(&w.to_be_bytes());
            }
            c.inject(&Inject::with_code(code.clone(), sender, 16, h, vec![]))
                .unwrap();
            c
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut joined = BTreeSet::new();
    while joined.len() < 3 {
        assert!(Instant::now() < deadline, "only {joined:?} joined");
        app.inject(&data).unwrap();
        for (i, r) in receivers.iter_mut().enumerate() {
            while r.recv_timeout(Duration::from_millis(20)).unwrap().is_some() {
                joined.insert(i);
            }
        }
    }

    data.trace = Some(0xfeed);
    data.payload = b"traced".to_vec();
    app.inject(&data).unwrap();
    let t = trace_when(&tree, 1, 0xfeed, |ev| {
        ev.iter().filter(|e| kind(e) == "delivered").count() == 3
            && ev
                .iter()
                .any(|e| node_of(e) == node_addr(4) && kind(e) == "sent")
    });
    let events = t["events"].as_array().unwrap();
    let nodes: BTreeSet<&str> = events.iter().map(node_of).collect();
    assert_eq!(nodes.len(), 7, "every node reported: {t:#}");
    assert_eq!(
        t["reports"], 7,
        "one report per node (every node had the code)"
    );
    let sends: BTreeSet<(String, String)> = events
        .iter()
        .filter(|e| kind(e) == "sent")
        .map(|e| {
            (
                node_of(e).to_owned(),
                e["peer"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = [(1, 2), (2, 3), (2, 4), (3, 5), (3, 6), (4, 7)]
        .into_iter()
        .map(|(a, b)| (node_addr(a), node_addr(b)))
        .collect();
    assert_eq!(sends, want, "the copies of the fan-out");
    let delivered: BTreeSet<(String, u64)> = events
        .iter()
        .filter(|e| kind(e) == "delivered")
        .map(|e| (node_of(e).to_owned(), e["app"].as_u64().unwrap()))
        .collect();
    let want: BTreeSet<(String, u64)> = [(5, 50), (6, 60), (7, 70)]
        .into_iter()
        .map(|(n, a)| (node_addr(n), a))
        .collect();
    assert_eq!(delivered, want);
    check_causality(events);
    // The copies' resource only goes down along each path.
    for r in events.iter().filter(|e| kind(e) == "received") {
        assert!(r["resource"].as_u64() < Some(16), "{r}");
    }

    // The CLI prints the same story in Lamport order.
    let sock = tree.sock(1);
    let (ok, out, err) = run_ants(&["trace", "-s", sock.to_str().unwrap(), "feed"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("trace 000000000000feed"), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in\n{out}"))
    };
    assert!(at("sent by app 1") < at("sent to 198.18.0.2"));
    assert!(at("sent to 198.18.0.2") < at("received from 198.18.0.1"));
    assert!(at("received from 198.18.0.3") < at("delivered to app 50"));
    let (ok, list, _) = run_ants(&["trace", "-s", sock.to_str().unwrap()]);
    assert!(ok && list.contains("000000000000feed"), "{list}");
    assert_eq!(tree.stats(1).trace.started, 1);
    assert_eq!(tree.stats(1).trace.reports_received, 7);
}

#[test]
fn the_first_traced_capsule_shows_each_hop_fetching_the_code() {
    let line = Topology::line(3, "");
    let forward = capsule("forward");
    let sock = line.sock(1);
    let (ok, out, err) = run_ants(&[
        "send",
        "-s",
        sock.to_str().unwrap(),
        "--code",
        forward.path.to_str().unwrap(),
        "--dst",
        "198.18.0.3",
        "--payload",
        "hi",
        "--trace",
    ]);
    assert!(ok, "{err}");
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("trace "))
        .and_then(|l| l.split(':').next())
        .unwrap_or_else(|| panic!("no trace id in {out}"));
    let id = u64::from_str_radix(id, 16).unwrap();
    let t = trace_when(&line, 1, id, |ev| {
        ev.iter()
            .any(|e| node_of(e) == node_addr(3) && kind(e) == "ran")
    });
    let events = t["events"].as_array().unwrap();
    for (node, from) in [(2, 1), (3, 2)] {
        let held = events
            .iter()
            .find(|e| node_of(e) == node_addr(node) && kind(e) == "held-for-code")
            .unwrap_or_else(|| panic!("n{node} held it: {t:#}"));
        assert_eq!(held["source"], "fetch");
        assert_eq!(held["peer"].as_str(), Some(node_addr(from).as_str()));
        let ready = events
            .iter()
            .find(|e| node_of(e) == node_addr(node) && kind(e) == "code-ready")
            .unwrap();
        assert!(ready["clock"].as_u64() > held["clock"].as_u64());
    }
    // Held, then run: two reports from each of nodes 2 and 3, two of the origin's own.
    assert_eq!(t["reports"], 6, "{t:#}");
    check_causality(events);
    let (ok, text, err) = run_ants(&["trace", "-s", sock.to_str().unwrap(), &format!("{id:016x}")]);
    assert!(ok, "{err}");
    assert!(
        text.contains("held: fetching its code from 198.18.0.1"),
        "{text}"
    );
    let (ok, _, err) = run_ants(&["trace", "-s", sock.to_str().unwrap(), "12345"]);
    assert!(!ok && err.contains("no trace 0000000000012345"), "{err}");
}
