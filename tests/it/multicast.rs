//! End-to-end tests of the multicast capsule on real overlay nodes.
//!
//! A 7-node tree, the sender's app on node 1, receivers' apps on 5, 6 and 7 (three branches,
//! overlapping on 1—2 and 2—3):
//!
//! ```text
//!         1 (sender)
//!         |
//!         2
//!        / \
//!       3   4
//!      / \   \
//!     5   6   7   (receivers)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ants_app::{AppClient, Inject};

use crate::support::*;
use crate::topology::{Topology, node_addr};

const EDGES: [(usize, usize); 6] = [(1, 2), (2, 3), (2, 4), (3, 5), (3, 6), (4, 7)];
const SENDER: usize = 1;
/// (node, app id) of each receiver.
const RECEIVERS: [(usize, u32); 3] = [(5, 50), (6, 60), (7, 70)];
const GROUP: u32 = 7;
/// How long nodes keep a branch without a refresh: the protocol's TTL.
const LIFETIME: Duration = Duration::from_millis(2000);
const REFRESH: Duration = Duration::from_millis(250);
const COUNT: u32 = 1000;
/// Gap between data capsules: 4,000 per second.
const PACE: Duration = Duration::from_micros(250);

fn subscribe_header(app: u32) -> Vec<u8> {
    let mut h = vec![1, 0, 0, 0];
    for w in [GROUP, app, LIFETIME.as_millis() as u32] {
        h.extend_from_slice(&w.to_be_bytes());
    }
    h
}

fn data_header() -> Vec<u8> {
    let mut h = vec![2, 0, 0, 0];
    h.extend_from_slice(&GROUP.to_be_bytes());
    h
}

/// A receiver's app: subscribes every [`REFRESH`] while `refreshing`, and reports each
/// delivery's payload as `(node, payload)` until `quit`.
fn receiver(
    tree: &Topology,
    (node, app): (usize, u32),
    code: &[u8],
    refreshing: &Arc<AtomicBool>,
    quit: &Arc<AtomicBool>,
    out: mpsc::Sender<(usize, Vec<u8>)>,
) -> JoinHandle<()> {
    let (refreshing, quit) = (refreshing.clone(), quit.clone());
    let mut client = AppClient::connect(tree.sock(node), app).unwrap();
    let sender = addr(&node_addr(SENDER));
    let mut subscribe = Inject::with_code(code.to_vec(), sender, 16, subscribe_header(app), vec![]);
    thread::spawn(move || {
        let mut next = Instant::now();
        while !quit.load(Ordering::SeqCst) {
            if refreshing.load(Ordering::SeqCst) && Instant::now() >= next {
                client.inject(&subscribe).unwrap();
                subscribe.code = None;
                next += REFRESH;
            }
            if let Some(d) = client.recv_timeout(Duration::from_millis(5)).unwrap() {
                out.send((node, d.payload)).unwrap();
            }
        }
    })
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// `sent` counters of nodes 1..=7.
fn sent(tree: &Topology) -> Vec<u64> {
    (1..=7).map(|i| tree.stats(i).node.sent).collect()
}

#[test]
fn tree_delivers_1000_exactly_once_per_receiver_then_prunes_when_refreshes_stop() {
    let code = capsule_bytes("multicast");
    let tree = Topology::start(7, &EDGES, "");
    // The sender's node gets the code first, so that it is not still compiling it when the
    // first subscribes arrive (a node holds only 64 capsules of a type while it compiles).
    let mut app = AppClient::connect(tree.sock(SENDER), 1).unwrap();
    let sender = addr(&node_addr(SENDER));
    let mut data = Inject::with_code(code.clone(), sender, 16, data_header(), b"probe".to_vec());
    app.inject(&data).unwrap();
    data.code = None;
    wait_until("n1 compiles the module", || {
        tree.stats(SENDER).node.modules_installed > 0
    });

    let (tx, rx) = mpsc::channel();
    let refreshing = Arc::new(AtomicBool::new(true));
    let quit = Arc::new(AtomicBool::new(false));
    let receivers: Vec<_> = RECEIVERS
        .iter()
        .map(|&r| receiver(&tree, r, &code, &refreshing, &quit, tx.clone()))
        .collect();

    // Probe until every receiver is on the tree (nodes 2-4 demand-load the code on the way).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut joined = BTreeSet::new();
    while joined.len() < RECEIVERS.len() {
        assert!(Instant::now() < deadline, "only {joined:?} joined the tree");
        app.inject(&data).unwrap();
        thread::sleep(Duration::from_millis(50));
        joined.extend(rx.try_iter().map(|(node, _)| node));
    }
    thread::sleep(Duration::from_millis(100));
    rx.try_iter().for_each(drop);

    // 1,000 data capsules, paced; receivers read concurrently.
    let before = sent(&tree);
    let start = Instant::now();
    for seq in 0..COUNT {
        data.payload = seq.to_be_bytes().to_vec();
        app.inject(&data).unwrap();
        let due = start + PACE * (seq + 1);
        thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    let mut got: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.values().map(Vec::len).sum::<usize>() < RECEIVERS.len() * COUNT as usize {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((node, payload)) = rx.recv_timeout(left) else {
            break;
        };
        let seq: [u8; 4] = payload.as_slice().try_into().expect("a data payload");
        got.entry(node).or_default().push(u32::from_be_bytes(seq));
    }
    // Late duplicates would arrive now.
    thread::sleep(Duration::from_millis(200));
    for (node, payload) in rx.try_iter() {
        let seq: [u8; 4] = payload.as_slice().try_into().expect("a data payload");
        got.entry(node).or_default().push(u32::from_be_bytes(seq));
    }
    for (node, _) in RECEIVERS {
        let seqs = got.get(&node).cloned().unwrap_or_default();
        let distinct: BTreeSet<u32> = seqs.iter().copied().collect();
        assert_eq!(seqs.len(), COUNT as usize, "n{node}: deliveries");
        assert_eq!(
            distinct,
            (0..COUNT).collect(),
            "n{node}: each sequence number once"
        );
    }
    let during: Vec<u64> = sent(&tree)
        .iter()
        .zip(&before)
        .map(|(a, b)| a - b)
        .collect();
    // n1 forwards no subscribes, so its sends are exactly one copy per data capsule; the
    // others also carried refreshes.
    assert_eq!(
        during[0],
        u64::from(COUNT),
        "n1 sends one copy (to n2) per capsule"
    );
    for (node, copies) in [(2, 2), (3, 2), (4, 1)] {
        assert!(
            during[node - 1] >= copies * u64::from(COUNT),
            "n{node}: {during:?}"
        );
    }

    // Receivers stop refreshing. Keep sending; the branches lapse within one lifetime.
    refreshing.store(false, Ordering::SeqCst);
    let stopped = Instant::now();
    let mut last_delivery = None;
    while stopped.elapsed() < 2 * LIFETIME {
        data.payload = b"tail".to_vec();
        app.inject(&data).unwrap();
        thread::sleep(Duration::from_millis(20));
        if rx.try_iter().count() > 0 {
            last_delivery = Some(stopped.elapsed());
        }
    }
    // Soft state: stopping refreshes tears nothing down at once; the branches just lapse.
    let last = last_delivery.expect("data still flows right after refreshes stop");
    eprintln!("last delivery {last:?} after refreshes stopped (lifetime {LIFETIME:?})");
    // Two lifetimes later: nothing flows, counted at the nodes.
    let before = sent(&tree);
    let runs_before = tree.stats(SENDER).node.runs;
    for _ in 0..200 {
        app.inject(&data).unwrap();
        thread::sleep(PACE);
    }
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        sent(&tree),
        before,
        "no node sends copies once the branches expired"
    );
    assert!(
        tree.stats(SENDER).node.runs >= runs_before + 200,
        "n1 ran the capsules"
    );
    assert_eq!(rx.try_iter().count(), 0, "no receiver gets data");

    quit.store(true, Ordering::SeqCst);
    for r in receivers {
        r.join().unwrap();
    }
}
