//! Multi-node tests of the core with virtual time and a native stand-in executor: demand
//! loading hop by hop, liars, loss, spoofed requests — without sockets or wasm.

use std::collections::VecDeque;
use std::time::Duration;

use ants_wire::{Address, CapsuleType};
use sha2::{Digest, Sha256};

use super::*;
use crate::{NativeForward, Prefix, native_module as module};

fn addr(i: u8) -> Address {
    Address::from_ipv4(std::net::Ipv4Addr::new(198, 18, 0, i + 1))
}

struct Net {
    nodes: Vec<Node<u8>>,
    execs: Vec<NativeForward>,
    /// In flight: (deliver at, from, to, bytes).
    wire: VecDeque<(Duration, u8, u8, Vec<u8>)>,
    now: Duration,
    /// Drop this fraction of code messages (seeded).
    code_loss: f64,
    rng: u64,
    /// A node that answers code requests with garbage of the right length.
    liar: Option<u8>,
    /// Extra links beyond the line: (a, b).
    delivered: Vec<(u8, AppDelivery)>,
}

impl Net {
    /// A line 0 — 1 — … — n-1, each node routing everything else via its neighbours.
    fn line(n: u8) -> Net {
        let mut nodes = Vec::new();
        for i in 0..n {
            let mut cfg = NodeConfig::new(addr(i));
            if i > 0 {
                cfg.neighbours.push((addr(i - 1), i - 1));
            }
            if i + 1 < n {
                cfg.neighbours.push((addr(i + 1), i + 1));
            }
            for j in 0..n {
                if j + 1 < i {
                    cfg.routes.push((Prefix::host(addr(j)), addr(i - 1)));
                } else if j > i + 1 {
                    cfg.routes.push((Prefix::host(addr(j)), addr(i + 1)));
                }
            }
            let mut node = Node::new(cfg);
            node.register_app(0);
            nodes.push(node);
        }
        Net {
            execs: (0..n).map(|_| NativeForward::default()).collect(),
            nodes,
            wire: VecDeque::new(),
            now: Duration::from_secs(1000),
            code_loss: 0.0,
            rng: 42,
            liar: None,
            delivered: Vec::new(),
        }
    }

    fn chance(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % 10_000) as f64 / 10_000.0
    }

    /// Run until nothing is in flight and no timer is due within `horizon`.
    fn settle(&mut self, horizon: Duration) {
        let end = self.now + horizon;
        loop {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                moved |= self.collect(i as u8);
            }
            if moved {
                continue;
            }
            if let Some((at, from, to, bytes)) = self.wire.pop_front() {
                self.now = self.now.max(at);
                let n = &mut self.nodes[to as usize];
                n.handle_datagram(self.now, from, &bytes, &mut self.execs[to as usize]);
                continue;
            }
            let next = self.nodes.iter().filter_map(|n| n.poll_timeout()).min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    for n in &mut self.nodes {
                        n.handle_timeout(self.now);
                    }
                }
                _ => break,
            }
        }
    }

    /// Move node `i`'s outputs onto the wire / into the log; `true` if there were any.
    fn collect(&mut self, i: u8) -> bool {
        let now = self.now;
        let mut moved = false;
        let mut out = Vec::new();
        self.nodes[i as usize].drain_transmits(|to, b| out.push((to, b.to_vec())));
        for (to, mut b) in out {
            moved = true;
            let code_msg = b.get(3).is_some_and(|k| *k != Kind::Capsule as u8);
            if code_msg && self.code_loss > 0.0 && self.chance() < self.code_loss {
                continue;
            }
            if self.liar == Some(i) && b.get(3) == Some(&(Kind::CodeChunk as u8)) {
                // Same length, wrong bytes.
                if let Some(last) = b.last_mut() {
                    *last ^= 0xFF;
                }
            }
            self.wire
                .push_back((now + Duration::from_millis(1), i, to, b));
        }
        while let Some(ev) = self.nodes[i as usize].poll_event() {
            moved = true;
            if let Event::Compile { ty, code } = ev {
                let r = self.execs[i as usize].load(&code).map(|_| ());
                let (node, exec) = (&mut self.nodes[i as usize], &mut self.execs[i as usize]);
                node.module_ready(now, ty, r, Duration::ZERO, exec);
            }
        }
        while let Some(d) = self.nodes[i as usize].poll_delivery() {
            moved = true;
            self.delivered.push((i, d));
        }
        moved
    }

    fn inject(&mut self, at: u8, code: Option<&[u8]>, ty: CapsuleType, dst: u8, payload: &[u8]) {
        self.inject_traced(at, code, ty, dst, payload, None);
    }

    fn inject_traced(
        &mut self,
        at: u8,
        code: Option<&[u8]>,
        ty: CapsuleType,
        dst: u8,
        payload: &[u8],
        trace: Option<u64>,
    ) {
        let inj = Injection {
            ty,
            code,
            dst: addr(dst),
            resource: 64,
            header: &[],
            payload,
            trace,
        };
        let (n, e) = (&mut self.nodes[at as usize], &mut self.execs[at as usize]);
        n.inject(self.now, 0, inj, e).expect("inject");
    }
}

fn ty_of(code: &[u8]) -> CapsuleType {
    CapsuleType(Sha256::digest(code).into())
}

#[test]
fn code_is_demand_loaded_hop_by_hop_and_then_cached() {
    let mut net = Net::line(5);
    let code = module(5000, 1);
    let ty = ty_of(&code);
    net.inject(0, Some(&code), ty, 4, b"first");
    net.settle(Duration::from_secs(10));
    assert_eq!(net.delivered.len(), 1, "first capsule reaches the far end");
    for (i, n) in net.nodes.iter().enumerate() {
        assert!(n.code_cache().contains(&ty), "node {i} caches the module");
    }
    assert!(net.nodes[4].loader_counters().requests_sent >= 1);
    for k in 0..1000u32 {
        net.inject(0, None, ty, 4, &k.to_be_bytes());
    }
    net.settle(Duration::from_secs(10));
    assert_eq!(net.delivered.len(), 1001, "no loss once loaded");
    // Capsules after the first were never held: the code was already there.
    for n in &net.nodes[1..] {
        assert_eq!(n.counters().held, 1);
    }
}

#[test]
fn loading_survives_twenty_percent_code_loss() {
    let mut net = Net::line(5);
    net.code_loss = 0.2;
    let code = module(20_000, 2);
    let ty = ty_of(&code);
    net.inject(0, Some(&code), ty, 4, b"x");
    net.settle(Duration::from_secs(30));
    assert_eq!(net.delivered.len(), 1);
}

#[test]
fn a_liar_is_caught_and_nothing_runs_from_its_bytes() {
    let mut net = Net::line(3);
    net.liar = Some(1);
    let code = module(3000, 3);
    let ty = ty_of(&code);
    net.inject(0, Some(&code), ty, 2, b"x");
    net.settle(Duration::from_secs(30));
    // Node 2's only candidate is the liar: the mismatch is counted and nothing is delivered.
    assert!(net.nodes[2].loader_counters().hash_mismatches >= 1);
    assert!(!net.nodes[2].code_cache().contains(&ty));
    assert!(net.delivered.is_empty());
}

#[test]
fn a_spoofed_code_request_gets_no_reply() {
    let mut net = Net::line(3);
    let code = module(3000, 4);
    let ty = ty_of(&code);
    net.inject(0, Some(&code), ty, 1, b"x"); // node 0 sent ty to node 1 only
    net.settle(Duration::from_secs(5));
    let req = ants_wire::CodeRequest {
        capsule_type: ty,
        first_chunk: 0,
        bitmap: &[],
    };
    let mut buf = vec![0u8; req.buffer_len()];
    req.emit(&mut buf).unwrap();
    // Node 2 is not a neighbour of node 0: its datagrams are not even parsed.
    let before = net.nodes[0].counters().drops_of(DropReason::Stranger);
    net.nodes[0].handle_datagram(net.now, 2, &buf, &mut net.execs[0]);
    let mut replies = 0;
    net.nodes[0].drain_transmits(|_, _| replies += 1);
    assert_eq!(replies, 0);
    assert_eq!(
        net.nodes[0].counters().drops_of(DropReason::Stranger),
        before + 1
    );
}

#[test]
fn malformed_datagrams_are_counted_drops() {
    let mut net = Net::line(2);
    for bad in [
        &b""[..],
        b"\xa7\x5c\x01\x01",
        b"garbage that is long enough to look like something",
    ] {
        net.nodes[0].handle_datagram(net.now, 1, bad, &mut net.execs[0]);
    }
    assert_eq!(net.nodes[0].counters().drops_of(DropReason::Malformed), 3);
}

/// A capsule datagram of type `ty` toward `dst` with `resource`.
fn capsule(ty: CapsuleType, dst: u8, resource: u16, payload: &[u8]) -> Vec<u8> {
    let repr = CapsuleRepr {
        flags: 0,
        resource,
        capsule_type: ty,
        src: addr(9),
        dst: addr(dst),
        prev: addr(9),
        header: &[],
        payload,
        trace: None,
    };
    let mut b = vec![0u8; repr.buffer_len()];
    repr.emit(&mut b).unwrap();
    b
}

/// One node (address 1) with neighbours 0 and 2, a loaded forward module, and `config`
/// tweaks; returns the node, its executor and the type.
fn lone(tweak: impl FnOnce(&mut NodeConfig<u8>)) -> (Node<u8>, NativeForward, CapsuleType) {
    let mut cfg = NodeConfig::new(addr(1));
    cfg.neighbours = vec![(addr(0), 0), (addr(2), 2)];
    tweak(&mut cfg);
    let mut node = Node::new(cfg);
    node.register_app(0);
    let mut exec = NativeForward::default();
    let code = module(100, 9);
    let ty = exec.load(&code).unwrap();
    (node, exec, ty)
}

#[test]
fn strangers_are_dropped_before_anything_else_unless_any_is_accepted() {
    let (mut node, mut exec, ty) = lone(|_| {});
    let now = Duration::from_secs(1);
    // Port 7 is no neighbour's endpoint.
    node.handle_datagram(now, 7, &capsule(ty, 2, 8, b"x"), &mut exec);
    node.handle_datagram(now, 7, b"garbage", &mut exec);
    assert_eq!(node.counters().drops_of(DropReason::Stranger), 2);
    assert_eq!(node.counters().runs, 0);
    assert_eq!(
        node.counters().drops_of(DropReason::Malformed),
        0,
        "not even parsed"
    );
    // A neighbour's capsule runs.
    node.handle_datagram(now, 0, &capsule(ty, 2, 8, b"x"), &mut exec);
    assert_eq!(node.counters().runs, 1);
    // accept_from = any: the stranger's capsule runs too.
    let (mut open, mut exec, ty) = lone(|c| c.accept_from = AcceptFrom::Any);
    open.handle_datagram(now, 7, &capsule(ty, 2, 8, b"x"), &mut exec);
    assert_eq!(open.counters().runs, 1);
    // A predicate admits more peers (router mode: on-link hosts).
    let (mut on_link, mut exec, ty) = lone(|c| {
        c.accept_from = AcceptFrom::NeighboursAnd(Arc::new(|p: &u8| *p < 10));
    });
    on_link.handle_datagram(now, 7, &capsule(ty, 2, 8, b"x"), &mut exec);
    on_link.handle_datagram(now, 11, &capsule(ty, 2, 8, b"x"), &mut exec);
    assert_eq!(on_link.counters().runs, 1);
    assert_eq!(on_link.counters().drops_of(DropReason::Stranger), 1);
}

#[test]
fn trace_reports_come_only_from_neighbours_even_when_anyone_may_send_capsules() {
    let (mut open, mut exec, ty) = lone(|c| c.accept_from = AcceptFrom::Any);
    let now = Duration::from_secs(1);
    let head = TraceReport {
        hops: 5,
        capsule_type: ty,
        origin: addr(9),
        reporter: addr(7),
        trace_id: 1,
        events: &[],
    };
    let mut buf = [0u8; 256];
    let n = ants_wire::trace::emit_report(&mut buf, &head, &[]).unwrap();
    open.handle_datagram(now, 7, &buf[..n], &mut exec);
    assert_eq!(open.counters().drops_of(DropReason::Stranger), 1);
    let t = open.trace_counters();
    assert_eq!(
        t.reports_forwarded + t.reports_received + t.reports_rate_limited,
        0
    );
    // From a neighbour it is handled (forwarded toward the origin, or counted).
    open.handle_datagram(now, 0, &buf[..n], &mut exec);
    assert_eq!(open.counters().drops_of(DropReason::Stranger), 1);
}

#[test]
fn arriving_resource_is_clamped_to_max_resource() {
    let (mut node, mut exec, ty) = lone(|c| c.max_resource = 10);
    node.handle_datagram(
        Duration::from_secs(1),
        0,
        &capsule(ty, 2, 60_000, b""),
        &mut exec,
    );
    let mut sent = Vec::new();
    node.drain_transmits(|_, b| sent.push(b.to_vec()));
    let copy = CapsuleRepr::parse(&sent[0]).unwrap();
    assert_eq!(copy.resource, 9, "clamped to 10, minus the hop");
    assert_eq!(node.counters().resource_clamped, 1);
}

/// An executor that burns a fixed amount of fuel per run and forwards.
#[derive(Debug, Default)]
struct Burner(NativeForward);

impl Executor for Burner {
    fn load(&mut self, code: &[u8]) -> Result<CapsuleType, LoadError> {
        self.0.load(code)
    }
    fn is_loaded(&self, ty: &CapsuleType) -> bool {
        self.0.is_loaded(ty)
    }
    fn run(&mut self, e: &mut Box<Execution>) -> crate::RunReport {
        let mut r = self.0.run(e);
        r.fuel_used = 1_000_000;
        r
    }
}

#[test]
fn a_peer_over_its_fuel_budget_is_dropped_others_are_not() {
    let (mut node, _, ty) = lone(|c| {
        c.peer_fuel_per_sec = 2_000_000; // two heavy runs per second
        c.peer_fuel_burst = 3_000_000;
    });
    let mut exec = Burner::default();
    exec.load(&module(100, 9)).unwrap();
    let mut t = Duration::from_secs(1);
    for _ in 0..10 {
        node.handle_datagram(t, 0, &capsule(ty, 2, 8, b"heavy"), &mut exec);
    }
    // The burst pays for three runs (the third goes into debt); the rest are dropped.
    assert_eq!(node.counters().runs, 3);
    assert_eq!(node.counters().drops_of(DropReason::PeerOverBudget), 7);
    // Another peer is not affected.
    node.handle_datagram(t, 2, &capsule(ty, 0, 8, b"other"), &mut exec);
    assert_eq!(node.counters().runs, 4);
    // The budget refills: a second later peer 0 may run again.
    t += Duration::from_secs(1);
    node.handle_datagram(t, 0, &capsule(ty, 2, 8, b"later"), &mut exec);
    assert_eq!(node.counters().runs, 5);
    assert!(node.budget_peers() <= 2);
}

#[test]
fn apps_can_restrict_which_types_deliver_to_them() {
    let (mut node, mut exec, ty) = lone(|_| {});
    let other = exec.load(&module(100, 10)).unwrap();
    node.unregister_app(0);
    assert!(node.register_app_accepting(0, &[other]));
    let now = Duration::from_secs(1);
    // `ty` delivers to app 0 at its destination: refused by the accept list.
    node.handle_datagram(now, 0, &capsule(ty, 1, 8, b"x"), &mut exec);
    assert!(node.poll_delivery().is_none());
    assert_eq!(node.protocols().get(&ty).unwrap().app_refusals, 1);
    node.handle_datagram(now, 0, &capsule(other, 1, 8, b"y"), &mut exec);
    assert!(node.poll_delivery().is_some(), "an accepted type delivers");
}

#[test]
fn the_allow_list_applies_to_app_injects_and_added_code() {
    let code = module(100, 11);
    let ty = ty_of(&code);
    let (mut node, mut exec, _) = lone(|c| {
        c.loader.policy = crate::CodePolicy::AllowList([CapsuleType([1; 32])].into());
    });
    let inj = Injection {
        ty,
        code: Some(&code),
        dst: addr(2),
        resource: 8,
        header: &[],
        payload: b"",
        trace: None,
    };
    assert_eq!(
        node.inject(Duration::from_secs(1), 0, inj, &mut exec),
        Err(InjectError::NotAllowed(ty))
    );
    assert!(
        !node.add_code(ty, Arc::from(&code[..])),
        "persisted code is refused too"
    );
    assert!(!node.set_stored(ty, true));
    assert!(!node.code_cache().contains(&ty));
}

#[test]
fn stored_code_is_restored_not_fetched() {
    let code = module(100, 12);
    let ty = ty_of(&code);
    let mut cfg = NodeConfig::new(addr(1));
    cfg.neighbours = vec![(addr(0), 0)];
    let mut node = Node::new(cfg);
    let mut exec = NativeForward::default();
    assert!(node.set_stored(ty, true));
    node.handle_datagram(
        Duration::from_secs(1),
        0,
        &capsule(ty, 0, 8, b"x"),
        &mut exec,
    );
    assert_eq!(node.poll_event(), Some(Event::Restore { ty }));
    let mut out = 0;
    node.drain_transmits(|_, _| out += 1);
    assert_eq!(out, 0, "no code request");
    // The driver reads it back and installs it: the held capsule runs.
    assert!(node.add_code(ty, Arc::from(&code[..])));
    exec.load(&code).unwrap();
    node.module_ready(
        Duration::from_secs(1),
        ty,
        Ok(()),
        Duration::from_millis(1),
        &mut exec,
    );
    assert_eq!(node.counters().runs, 1);
    // A failed restore forgets the stored copy: the next capsule fetches from its sender.
    let other = module(100, 13);
    let oty = ty_of(&other);
    node.set_stored(oty, true);
    node.handle_datagram(
        Duration::from_secs(2),
        0,
        &capsule(oty, 0, 8, b"x"),
        &mut exec,
    );
    let err = LoadError::Unavailable("unreadable".into());
    node.module_ready(
        Duration::from_secs(2),
        oty,
        Err(err),
        Duration::ZERO,
        &mut exec,
    );
    assert_eq!(node.counters().drops_of(DropReason::CodeUnavailable), 1);
    node.handle_datagram(
        Duration::from_secs(3),
        0,
        &capsule(oty, 0, 8, b"y"),
        &mut exec,
    );
    let mut requests = 0;
    node.drain_transmits(|_, b| requests += usize::from(b[3] == Kind::CodeRequest as u8));
    assert_eq!(requests, 1, "fetched from the peer instead");
}

/// An executor that traps on capsules whose payload starts with `trap`, else forwards.
#[derive(Debug, Default)]
struct Trapper(NativeForward);

impl Executor for Trapper {
    fn load(&mut self, code: &[u8]) -> Result<CapsuleType, LoadError> {
        self.0.load(code)
    }
    fn is_loaded(&self, ty: &CapsuleType) -> bool {
        self.0.is_loaded(ty)
    }
    fn run(&mut self, e: &mut Box<Execution>) -> crate::RunReport {
        if e.capsule.payload.starts_with(b"trap") {
            return crate::RunReport {
                result: RunResult::Trapped(TrapReason::Unreachable),
                fuel_used: 10,
                nanos: None,
            };
        }
        self.0.run(e)
    }
}

#[test]
fn a_peer_whose_capsules_keep_trapping_is_quarantined_for_that_type_only() {
    let (mut node, _, ty) = lone(|c| {
        c.quarantine.traps = 3;
        c.quarantine.window = Duration::from_secs(10);
        c.quarantine.hold = Duration::from_secs(30);
    });
    let mut exec = Trapper::default();
    exec.load(&module(100, 9)).unwrap();
    let t = Duration::from_secs(1);
    for _ in 0..3 {
        node.handle_datagram(t, 0, &capsule(ty, 2, 8, b"trap"), &mut exec);
    }
    assert_eq!(node.counters().drops_of(DropReason::Trapped), 3);
    assert_eq!(node.counters().quarantines, 1);
    assert_eq!(node.quarantined(t), vec![(ty, 1)]);
    // Peer 0's next capsules of the type are dropped unrun, even good ones.
    node.handle_datagram(t, 0, &capsule(ty, 2, 8, b"good"), &mut exec);
    node.handle_datagram(t, 0, &capsule(ty, 2, 8, b"trap"), &mut exec);
    assert_eq!(node.counters().drops_of(DropReason::Quarantined), 2);
    assert_eq!(node.counters().runs, 3);
    let c = node.protocols().get(&ty).copied().unwrap();
    assert_eq!((c.quarantines, c.quarantined, c.traps), (1, 2, 3));
    // Peer 2 is not affected: the type still runs for everyone else.
    node.handle_datagram(t, 2, &capsule(ty, 0, 8, b"good"), &mut exec);
    assert_eq!(node.counters().runs, 4);
    // Local apps are never quarantined.
    let inj = Injection {
        ty,
        code: None,
        dst: addr(2),
        resource: 8,
        header: &[],
        payload: b"good",
        trace: None,
    };
    node.inject(t, 0, inj, &mut exec).unwrap();
    assert_eq!(node.counters().runs, 5);
    // After 30 s peer 0 runs again.
    let later = t + Duration::from_secs(31);
    node.handle_datagram(later, 0, &capsule(ty, 2, 8, b"good"), &mut exec);
    assert_eq!(node.counters().runs, 6);
    assert!(node.quarantined(later).is_empty());
}

/// The events of trace `id` kept at node `at`, in Lamport order, as (node index, kind, peer).
fn timeline(net: &Net, at: u8, id: u64) -> Vec<(u8, TraceEventKind, Option<u8>, u64)> {
    let rec = net.nodes[at as usize]
        .traces()
        .find(|t| t.id == id)
        .expect("the origin keeps the trace");
    let index = |a: Address| (0..net.nodes.len() as u8).find(|i| addr(*i) == a);
    let mut ev: Vec<_> = rec
        .events
        .iter()
        .map(|e| {
            (
                index(e.node).expect("a node of the net"),
                e.event.event_kind().expect("a known kind"),
                index(e.event.peer),
                e.event.clock,
            )
        })
        .collect();
    ev.sort_by_key(|e| (e.3, e.0));
    ev
}

fn tc(net: &Net, i: usize) -> TraceCounters {
    *net.nodes[i].trace_counters()
}

#[test]
fn a_traced_capsule_reports_every_hop_in_happened_before_order() {
    use TraceEventKind::*;
    let mut net = Net::line(4);
    let code = module(3000, 4);
    let ty = ty_of(&code);
    net.inject_traced(0, Some(&code), ty, 3, b"first", Some(77));
    net.settle(Duration::from_secs(10));
    assert_eq!(net.delivered.len(), 1);
    let got: Vec<_> = timeline(&net, 0, 77)
        .into_iter()
        .map(|(n, k, p, _)| (n, k, p))
        .collect();
    // The origin compiled the app's module, every other node fetched it from its previous
    // hop; then each ran it. A held capsule reports twice (when held, when run).
    let want = [
        (0, Injected, None),
        (0, HeldForCode, None),
        (0, CodeReady, None),
        (0, Ran, None),
        (0, Sent, Some(1)),
        (1, Received, Some(0)),
        (1, HeldForCode, Some(0)),
        (1, CodeReady, None),
        (1, Ran, None),
        (1, Sent, Some(2)),
        (2, Received, Some(1)),
        (2, HeldForCode, Some(1)),
        (2, CodeReady, None),
        (2, Ran, None),
        (2, Sent, Some(3)),
        (3, Received, Some(2)),
        (3, HeldForCode, Some(2)),
        (3, CodeReady, None),
        (3, Ran, None),
        (3, Delivered, None),
    ];
    assert_eq!(got, want);
    // The origin's own report and two from each other hop; hops forward the farther ones.
    assert_eq!(tc(&net, 0).reports_received, 8);
    assert_eq!(
        (tc(&net, 1).reports_sent, tc(&net, 1).reports_forwarded),
        (2, 4)
    );
    assert_eq!(
        (tc(&net, 2).reports_sent, tc(&net, 2).reports_forwarded),
        (2, 2)
    );
    assert_eq!(
        (tc(&net, 3).reports_sent, tc(&net, 3).reports_forwarded),
        (2, 0)
    );
    // The delivered capsule still carries the trace; untraced capsules stay version 1.
    assert_eq!(net.delivered[0].1.capsule[2], ants_wire::VERSION);
    net.inject(0, None, ty, 3, b"untraced");
    net.settle(Duration::from_secs(10));
    assert_eq!(net.delivered[1].1.capsule[2], ants_wire::BASE_VERSION);
    assert_eq!(
        tc(&net, 0).reports_received,
        8,
        "untraced capsules report nothing"
    );

    // With the code in place, one report per hop; a fresh id when the app passes 0.
    net.inject_traced(0, None, ty, 3, b"second", Some(0));
    net.settle(Duration::from_secs(10));
    let id = net.nodes[0].traces().last().unwrap().id;
    assert_ne!(id, 77);
    let second = timeline(&net, 0, id);
    assert_eq!(second.len(), 2 + 3 * 3 + 1);
    assert_eq!(tc(&net, 0).reports_received, 8 + 4);
}

#[test]
fn trace_reports_are_rate_limited_and_only_kept_by_their_origin() {
    let mut net = Net::line(3);
    let code = module(2000, 5);
    let ty = ty_of(&code);
    net.inject(0, Some(&code), ty, 2, b"load");
    net.settle(Duration::from_secs(10));
    // Node 1 may send or forward one report per second.
    net.nodes[1].tracer = Tracer::new(
        TraceConfig {
            reports_per_sec: 1,
            ..TraceConfig::default()
        },
        1,
    );
    for k in 0..5u64 {
        net.inject_traced(0, None, ty, 2, b"t", Some(100 + k));
    }
    net.settle(Duration::from_millis(100));
    let n1 = *net.nodes[1].trace_counters();
    assert_eq!(n1.reports_sent + n1.reports_forwarded, 1);
    assert_eq!(n1.reports_rate_limited, 9);
    assert_eq!(
        net.delivered.len(),
        6,
        "capsules are not held back by tracing"
    );

    // A report for a trace the node did not start, or one out of hops, is dropped.
    let mut buf = vec![0u8; 200];
    let head = TraceReport {
        hops: 0,
        capsule_type: ty,
        origin: addr(0),
        reporter: addr(2),
        trace_id: 999,
        events: &[],
    };
    let n = ants_wire::trace::emit_report(&mut buf, &head, &[]).unwrap();
    let before = *net.nodes[0].trace_counters();
    net.nodes[0].handle_datagram(net.now, 1, &buf[..n], &mut net.execs[0]);
    assert_eq!(
        net.nodes[0].trace_counters().reports_undeliverable,
        before.reports_undeliverable + 1
    );
    assert!(net.nodes[0].traces().all(|t| t.id != 999));
    let before = *net.nodes[1].trace_counters();
    net.nodes[1].handle_datagram(net.now, 2, &buf[..n], &mut net.execs[1]);
    assert_eq!(
        net.nodes[1].trace_counters().reports_undeliverable,
        before.reports_undeliverable + 1
    );
    assert_eq!(net.nodes[1].pending_transmits(), 0);
}

#[test]
fn a_hostile_clock_saturates_instead_of_wrapping() {
    let mut net = Net::line(3);
    let code = module(2000, 6);
    let ty = ty_of(&code);
    net.inject(0, Some(&code), ty, 2, b"load");
    net.settle(Duration::from_secs(10));
    let plain = capsule(ty, 2, 8, b"x");
    let repr = CapsuleRepr::parse(&plain).unwrap();
    let traced = CapsuleRepr {
        src: addr(0),
        prev: addr(0),
        trace: Some(Trace {
            id: 5,
            clock: u64::MAX,
        }),
        ..repr
    };
    let mut c = vec![0u8; traced.buffer_len()];
    traced.emit(&mut c).unwrap();
    net.nodes[1].handle_datagram(net.now, 0, &c, &mut net.execs[1]);
    net.settle(Duration::from_secs(1));
    assert_eq!(net.delivered.len(), 2, "the capsule still goes through");
    assert_eq!(net.nodes[1].trace_counters().reports_sent, 1);
    // The liar moved the clocks by at most one bounded jump, here and downstream, so later
    // events still order.
    for n in 1..3 {
        let clock = net.nodes[n].trace_clock();
        assert!(
            clock < 2 * super::trace::MAX_CLOCK_JUMP,
            "node {n}: clock {clock}"
        );
    }
}

#[test]
fn reconfiguring_routes_takes_effect_and_keeps_the_code() {
    let mut net = Net::line(3);
    let code = module(2000, 7);
    let ty = ty_of(&code);
    net.inject(0, Some(&code), ty, 2, b"one");
    net.settle(Duration::from_secs(10));
    assert_eq!(net.delivered.len(), 1);
    // Node 1 loses its neighbour 2 (and so its way to 2).
    let mut cfg = NodeConfig::new(addr(1));
    cfg.neighbours.push((addr(0), 0));
    net.nodes[1].reconfigure(cfg);
    net.inject(0, None, ty, 2, b"two");
    net.settle(Duration::from_secs(10));
    assert_eq!(net.delivered.len(), 1, "no way on");
    assert_eq!(net.nodes[1].counters().drops[&DropReason::NoRoute], 1);
    // Back as it was: the module was kept, so nothing is fetched again.
    let mut cfg = NodeConfig::new(addr(1));
    cfg.neighbours.push((addr(0), 0));
    cfg.neighbours.push((addr(2), 2));
    net.nodes[1].reconfigure(cfg);
    net.inject(0, None, ty, 2, b"three");
    net.settle(Duration::from_secs(10));
    assert_eq!(net.delivered.len(), 2);
    assert_eq!(
        net.nodes[1].counters().held,
        1,
        "held once, for the first capsule only"
    );
    assert_eq!(net.nodes[1].neighbours().len(), 2);
    assert!(
        net.nodes[1].neighbours()[0].3 > 0,
        "what was heard from node 0 is kept"
    );
}
