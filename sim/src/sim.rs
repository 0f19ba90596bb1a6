//! [`Sim`]: the discrete-event loop around real `ants_core::Node`s.
//!
//! Virtual time starts at 0 and only moves when the next event is taken from the
//! [`EventQueue`]. Every input to a node (a datagram, a timer, a finished compile, an app's
//! capsule) is followed by `Sim::flush`, which drains the node's outputs exactly as a
//! driver does: datagrams onto links, `Compile` events to the shared executor, deliveries
//! to the apps, and the node's next deadline into the queue. Nothing here reads a clock or
//! an unseeded generator, and every collection whose order reaches an output is ordered, so
//! a run is a function of the scenario and the root seed.
//!
//! Faults and app actions live in `actions.rs`, draining a node's outputs in `drain.rs`;
//! this file holds the state, the public API and the loop.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ants_core::node::{InjectError, Injection};
use ants_core::{Executor, Node, NodeConfig};
use ants_wire::Kind;

use crate::apps::{AppStats, Delivered};
use crate::config::{SimConfig, derive_seed, domain};
use crate::event::{Event, EventQueue, tie};
use crate::exec::{NodeView, SharedExecutor, TypeSet};
use crate::link::{Link, LinkDrop, LinkParams};
use crate::routing::Routing;
use crate::topology::Topology;
use crate::trace::{Record, Trace, Ty};
use crate::watch::{Violation, Watch};

pub use crate::actions::Action;

/// Network-wide counters.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct NetStats {
    /// Events processed.
    pub events: u64,
    /// Capsules handed to a running node (one per capsule per hop).
    pub capsule_hops: u64,
    /// Capsule datagrams put on links.
    pub capsules_sent: u64,
    /// Code-transfer datagrams put on links.
    pub code_messages_sent: u64,
    /// Datagrams the network lost, by [`LinkDrop`] (indexed by `LinkDrop as usize`).
    pub link_drops: [u64; 5],
}

impl NetStats {
    /// Drops for one reason.
    pub fn drops(&self, r: LinkDrop) -> u64 {
        self.link_drops[r.index()]
    }
}

/// Why [`Sim::inject`] did not send a capsule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectFailure {
    /// No node with that number.
    #[error("no node {0}")]
    NoSuchNode(u32),
    /// The node is down (crashed).
    #[error("node {0} is down")]
    NodeDown(u32),
    /// The node refused the capsule.
    #[error(transparent)]
    Refused(#[from] InjectError),
}

/// One simulated node: the real core plus what the simulator tracks about it.
#[derive(Debug)]
pub(crate) struct SimNode {
    pub(crate) node: Node<u32>,
    pub(crate) up: bool,
    /// Bumped on every crash; stale timers and compiles carry an old epoch.
    pub(crate) epoch: u32,
    /// The earliest timer event scheduled for this node (`u64::MAX`: none).
    pub(crate) timer_at: u64,
    pub(crate) installed: TypeSet,
    /// Types this node compiled (kept across a restart with `keep_code_on_restart`).
    pub(crate) persisted: TypeSet,
    /// Events this node caused so far: the count in their tie-breakers ([`tie`]).
    pub(crate) pushes: u64,
}

impl SimNode {
    /// The tie-breaker of the next event node `i` (this one) causes.
    pub(crate) fn next_tie(&mut self, i: u32) -> u64 {
        let t = tie(Some(i), self.pushes);
        self.pushes += 1;
        t
    }
}

/// Which nodes a [`Sim`] holds: each node `i` with `i % count == index` — all of them,
/// except in a partition of a parallel run (`parallel.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Part {
    /// This partition.
    pub(crate) index: u32,
    /// Partitions in the run.
    pub(crate) count: u32,
}

impl Part {
    /// The whole network.
    pub(crate) const ALL: Part = Part { index: 0, count: 1 };

    /// The partition that runs node `i`.
    pub(crate) fn owner(self, i: u32) -> u32 {
        i % self.count
    }

    /// Whether this partition runs node `i`.
    pub(crate) fn owns(self, i: u32) -> bool {
        self.owner(i) == self.index
    }

    /// Where node `i` is in this partition's node table.
    pub(crate) fn local(self, i: u32) -> usize {
        (i / self.count) as usize
    }

    /// Node `i` in this partition's node table `nodes`, if this partition runs it.
    pub(crate) fn node_mut(self, nodes: &mut [Box<SimNode>], i: u32) -> Option<&mut SimNode> {
        if !self.owns(i) {
            return None;
        }
        nodes.get_mut(self.local(i)).map(|n| &mut **n)
    }
}

/// Datagram bytes in flight, reused after delivery: no allocation per hop once warm.
#[derive(Debug, Default)]
pub(crate) struct BufPool {
    bufs: Vec<Vec<u8>>,
    free: Vec<u32>,
}

impl BufPool {
    pub(crate) fn put(&mut self, data: &[u8]) -> u32 {
        match self.free.pop() {
            Some(i) => {
                let b = &mut self.bufs[i as usize];
                b.clear();
                b.extend_from_slice(data);
                i
            }
            None => {
                self.bufs.push(data.to_vec());
                (self.bufs.len() - 1) as u32
            }
        }
    }

    pub(crate) fn get(&self, i: u32) -> &[u8] {
        self.bufs.get(i as usize).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn release(&mut self, i: u32) {
        self.free.push(i);
    }
}

/// A deterministic simulation of `ants_core::Node`s running capsules through one shared
/// executor `E`. See the crate documentation.
#[derive(Debug)]
pub struct Sim<E> {
    pub(crate) now: u64,
    pub(crate) queue: EventQueue,
    pub(crate) topo: Arc<Topology>,
    pub(crate) routing: Arc<Routing>,
    pub(crate) classes: Vec<LinkParams>,
    pub(crate) links: Vec<Link>,
    /// Boxed: a parallel run moves them between partitions, 8 bytes each instead of 3 KB,
    /// which at a million nodes is the difference between fitting in 8 GiB or not.
    #[expect(
        clippy::vec_box,
        reason = "moving 3 KB nodes between vectors doubled peak memory at 1M nodes"
    )]
    pub(crate) nodes: Vec<Box<SimNode>>,
    pub(crate) shared: SharedExecutor<E>,
    pub(crate) pool: BufPool,
    pub(crate) actions: Vec<Action>,
    pub(crate) apps: BTreeMap<(u32, u32), AppStats>,
    pub(crate) log: VecDeque<Delivered>,
    pub(crate) trace: Trace,
    pub(crate) stats: NetStats,
    /// Capsules that arrived over each directed link (by edge index), once
    /// [`Sim::count_link_capsules`] turned counting on; empty otherwise, so large runs pay
    /// nothing for it.
    pub(crate) link_capsules: Vec<u64>,
    pub(crate) config: SimConfig,
    /// Properties checked after every node input ([`Sim::set_watches`]).
    pub(crate) watches: Vec<Watch>,
    /// The first violation of one; the run stops there.
    pub(crate) violation: Option<Violation>,
    /// Whether a `store-path` watch is scheduled ([`Sim::watch_path`]).
    pub(crate) path_watched: bool,
    /// The nodes this simulator holds (all, but in a partition of a parallel run).
    pub(crate) part: Part,
    /// Events scheduled from outside the network so far ([`Sim::schedule`]).
    pub(crate) scheduled: u64,
    /// In a partition of a parallel run: datagrams for the other partitions' nodes.
    pub(crate) outbox: crate::parallel::Outbox,
}

pub(crate) fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl<E: Executor> Sim<E> {
    /// A simulation of `topo` with every node up at time 0, no code anywhere, tracing off.
    pub fn new(topo: Topology, config: SimConfig, exec: E) -> Sim<E> {
        let routing = Arc::new(Routing::new(&topo, config.routing));
        let links = topo
            .directed_edges()
            .enumerate()
            .map(|(k, (a, b))| Link::new(a, b, 0, derive_seed(config.seed, domain::LINK, k as u64)))
            .collect();
        let mut sim = Sim {
            now: 0,
            queue: EventQueue::new(),
            routing,
            classes: vec![config.link],
            links,
            nodes: Vec::with_capacity(topo.len() as usize),
            shared: SharedExecutor::new(exec, config.instance_per_node),
            pool: BufPool::default(),
            actions: Vec::new(),
            apps: BTreeMap::new(),
            log: VecDeque::new(),
            trace: Trace::off(),
            stats: NetStats::default(),
            link_capsules: Vec::new(),
            topo: Arc::new(topo),
            config,
            watches: Vec::new(),
            violation: None,
            path_watched: false,
            part: Part::ALL,
            scheduled: 0,
            outbox: crate::parallel::Outbox::default(),
        };
        for i in 0..sim.topo.len() {
            let node = sim.make_node(i);
            sim.nodes.push(Box::new(SimNode {
                node,
                up: true,
                epoch: 0,
                timer_at: u64::MAX,
                installed: TypeSet::default(),
                persisted: TypeSet::default(),
                pushes: 0,
            }));
        }
        sim
    }

    /// Node `i`'s state, if this simulator holds it.
    pub(crate) fn slot(&self, i: u32) -> Option<&SimNode> {
        if !self.part.owns(i) {
            return None;
        }
        self.nodes.get(self.part.local(i)).map(|n| &**n)
    }

    /// Node `i`'s state, if this simulator holds it.
    pub(crate) fn slot_mut(&mut self, i: u32) -> Option<&mut SimNode> {
        self.part.node_mut(&mut self.nodes, i)
    }

    /// The tie-breaker of the next event that node `origin` causes (the scheduler's when
    /// there is no such node here).
    pub(crate) fn next_tie(&mut self, origin: u32) -> u64 {
        match self.slot_mut(origin) {
            Some(sn) => sn.next_tie(origin),
            None => self.scheduler_tie(),
        }
    }

    fn scheduler_tie(&mut self) -> u64 {
        let t = tie(None, self.scheduled);
        self.scheduled += 1;
        t
    }

    /// The configuration node `i` (re)starts with.
    pub fn node_config(&self, i: u32) -> NodeConfig<u32> {
        let mut c = self.config.node.clone();
        c.address = self.topo.address(i);
        let nbs = self.topo.neighbours(i);
        c.neighbours = nbs.iter().map(|&j| (self.topo.address(j), j)).collect();
        c.routes = self.routing.routes(&self.topo, i);
        c.seed = derive_seed(self.config.seed, domain::NODE, u64::from(i));
        // The serving tables are allocated up front: size them to the neighbourhood. Every
        // peer of a simulated node is a configured neighbour, whose code requests are served
        // without an authorization, so two per peer suffice.
        let peers = nbs.len().max(1);
        c.loader.max_serve_peers = c.loader.max_serve_peers.min(peers);
        c.loader.max_authorizations = c.loader.max_authorizations.min(peers * 2);
        // Likewise the per-peer budgets (fuel, compile time): only neighbours send to a
        // simulated node.
        c.max_budget_peers = c.max_budget_peers.min(peers);
        c.loader.max_budget_peers = c.loader.max_budget_peers.min(peers);
        c
    }

    pub(crate) fn make_node(&self, i: u32) -> Node<u32> {
        Node::new(self.node_config(i))
    }

    /// Trace into `trace` from now on (replaces the current sink).
    pub fn set_trace(&mut self, trace: Trace) {
        self.trace = trace;
        if !self.watches.is_empty() || self.path_watched {
            self.trace.keep_tail();
        }
    }

    /// Check `watches` after every node input from now on; the first violation stops the
    /// run ([`Sim::violation`]). Keeps the last trace lines for its report.
    pub fn set_watches(&mut self, watches: Vec<Watch>) {
        if !watches.is_empty() {
            self.trace.keep_tail();
        }
        self.watches = watches;
    }

    /// Check `w` at its time (`w.at`, not before now): the run stops there if it does not
    /// hold. Keeps the last trace lines for its report.
    pub fn watch_path(&mut self, w: crate::watch::PathWatch) {
        self.trace.keep_tail();
        self.path_watched = true;
        self.schedule(w.at, Action::CheckPath(Box::new(w)));
    }

    /// The first violation of a watch, if any: the run stopped at it.
    pub fn violation(&self) -> Option<&Violation> {
        self.violation.as_ref()
    }

    /// The trace sink (hash, line count).
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Flush the trace file; the first write error, if any.
    pub fn finish_trace(&mut self) -> Result<(), String> {
        self.trace.finish()
    }

    /// Give the link between `a` and `b` (both directions) its own parameters; `false` if
    /// there is no such link.
    pub fn set_link_params(&mut self, a: u32, b: u32, params: LinkParams) -> bool {
        let (Some(ab), Some(ba)) = (self.topo.edge_index(a, b), self.topo.edge_index(b, a)) else {
            return false;
        };
        let class = match self.classes.iter().position(|c| *c == params) {
            Some(c) => c as u32,
            None => {
                self.classes.push(params);
                (self.classes.len() - 1) as u32
            }
        };
        self.links[ab as usize].class = class;
        self.links[ba as usize].class = class;
        true
    }

    /// Current virtual time.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.now)
    }

    /// The topology.
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// Node `i`'s core (counters, code cache, soft-store …).
    pub fn node(&self, i: u32) -> Option<&Node<u32>> {
        self.slot(i).map(|n| &n.node)
    }

    /// Whether node `i` is running.
    pub fn is_up(&self, i: u32) -> bool {
        self.slot(i).is_some_and(|n| n.up)
    }

    /// The shared executor and its type table.
    pub fn shared(&self) -> &SharedExecutor<E> {
        &self.shared
    }

    /// The executor, to change its limits before a run.
    pub fn executor_mut(&mut self) -> &mut E {
        self.shared.inner_mut()
    }

    /// Network counters.
    pub fn stats(&self) -> &NetStats {
        &self.stats
    }

    /// Count the capsules that arrive over each directed link from now on (for a picture of
    /// the run, `ants sim --map`): one `u64` per directed edge.
    pub fn count_link_capsules(&mut self) {
        self.link_capsules = vec![0; self.topo.edge_count() * 2];
    }

    /// Capsules handed to `to` over the link from `from` since
    /// [`Sim::count_link_capsules`]; `None` when counting is off or there is no such link.
    pub fn link_capsules(&self, from: u32, to: u32) -> Option<u64> {
        let k = self.topo.edge_index(from, to)?;
        self.link_capsules.get(k as usize).copied()
    }

    /// Every app that was registered, by (node, app id).
    pub fn apps(&self) -> &BTreeMap<(u32, u32), AppStats> {
        &self.apps
    }

    /// Keep up to `n` deliveries for [`Sim::take_deliveries`] from now on (0: none).
    pub fn set_delivery_log(&mut self, n: usize) {
        self.config.delivery_log = n;
        while self.log.len() > n {
            self.log.pop_front();
        }
    }

    /// The deliveries logged since the last call (at most `config.delivery_log`).
    pub fn take_deliveries(&mut self) -> Vec<Delivered> {
        self.log.drain(..).collect()
    }

    /// Events waiting.
    pub fn pending_events(&self) -> usize {
        self.queue.len()
    }

    /// Register app `app` on node `i` now (it receives deliveries and may inject).
    pub fn register_app(&mut self, i: u32, app: u32) {
        self.apps.entry((i, app)).or_default();
        if let Some(n) = self.slot_mut(i)
            && n.up
        {
            n.node.register_app(app);
        }
    }

    /// App `app` on node `i` injects a capsule now. The app is registered if it was not.
    pub fn inject(&mut self, i: u32, app: u32, inj: Injection<'_>) -> Result<(), InjectFailure> {
        if i >= self.topo.len() {
            return Err(InjectFailure::NoSuchNode(i));
        }
        self.register_app(i, app);
        let now = Duration::from_nanos(self.now);
        let Some(sn) = self.part.node_mut(&mut self.nodes, i).filter(|n| n.up) else {
            if let Some(s) = self.apps.get_mut(&(i, app)) {
                s.inject_errors += 1;
            }
            if self.trace.is_on() {
                let rec = Record::Inject {
                    node: i,
                    app,
                    ty: Ty(inj.ty),
                    error: Some(format!("node {i} is down")),
                };
                self.trace.record(self.now, &rec);
            }
            return Err(InjectFailure::NodeDown(i));
        };
        let mut view = NodeView {
            shared: &mut self.shared,
            node: i,
            installed: &sn.installed,
        };
        let r = sn.node.inject(now, app, inj, &mut view);
        if let Some(s) = self.apps.get_mut(&(i, app)) {
            match r {
                Ok(()) => s.injected += 1,
                Err(_) => s.inject_errors += 1,
            }
        }
        if self.trace.is_on() {
            let error = r.as_ref().err().map(ToString::to_string);
            let rec = Record::Inject {
                node: i,
                app,
                ty: Ty(inj.ty),
                error,
            };
            self.trace.record(self.now, &rec);
        }
        self.flush(i, self.now);
        Ok(r?)
    }

    /// Schedule `action` at virtual time `at` (not before now).
    pub fn schedule(&mut self, at: Duration, action: Action) {
        let idx = self.actions.len() as u32;
        let action = action.seeded(derive_seed(self.config.seed, domain::APP, u64::from(idx)));
        self.actions.push(action);
        let tie = self.scheduler_tie();
        self.queue
            .push(ns(at).max(self.now), tie, Event::Action { action: idx });
    }

    /// Process events up to and including `end`, then set the clock to `end`.
    pub fn run_until(&mut self, end: Duration) {
        self.run_until_with(end, u64::MAX, |_| {});
    }

    /// [`Sim::run_until`], calling `progress` every `every` events (for progress bars).
    pub fn run_until_with(&mut self, end: Duration, every: u64, mut progress: impl FnMut(&Self)) {
        let end = ns(end);
        let mut n = 0u64;
        while self.violation.is_none() && self.queue.peek_time().is_some_and(|t| t <= end) {
            self.step();
            n += 1;
            if n == every {
                n = 0;
                progress(self);
            }
        }
        if self.violation.is_none() {
            self.now = self.now.max(end);
        }
    }

    /// Process the next event; `false` if there was none.
    pub fn step(&mut self) -> bool {
        let Some((at, tie, ev)) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(at);
        self.trace.set_key(at, tie);
        if self.counts(ev) {
            self.stats.events += 1;
        }
        match ev {
            Event::Arrive { link, buf } => self.arrive(link, buf),
            Event::Timer { node, epoch } => self.timer(node, epoch, at),
            Event::Compiled { node, epoch, ty } => self.compiled(node, epoch, ty),
            Event::Action { action } => self.act(action),
        }
        true
    }

    fn arrive(&mut self, l: u32, buf: u32) {
        let Some(link) = self.links.get(l as usize) else {
            return self.pool.release(buf);
        };
        let (from, to) = (link.from, link.to);
        let down = if !link.up {
            Some(LinkDrop::Partition)
        } else if !self.slot(to).is_some_and(|n| n.up) {
            Some(LinkDrop::NodeDown)
        } else {
            None
        };
        if let Some(r) = down {
            self.pool.release(buf);
            return self.link_drop(from, to, r);
        }
        let data = self.pool.get(buf);
        if data.get(3) == Some(&(Kind::Capsule as u8)) {
            self.stats.capsule_hops += 1;
            if let Some(c) = self.link_capsules.get_mut(l as usize) {
                *c += 1;
            }
        }
        if self.trace.is_on() {
            let (kind, _) = crate::drain::describe(data);
            let rec = Record::Recv {
                node: to,
                from,
                kind,
                len: data.len(),
            };
            self.trace.record(self.now, &rec);
        }
        let part = self.part;
        let Some(sn) = part.node_mut(&mut self.nodes, to) else {
            return self.pool.release(buf);
        };
        let mut view = NodeView {
            shared: &mut self.shared,
            node: to,
            installed: &sn.installed,
        };
        sn.node
            .handle_datagram(Duration::from_nanos(self.now), from, data, &mut view);
        self.pool.release(buf);
        self.flush(to, self.now);
    }

    fn timer(&mut self, i: u32, epoch: u32, at: u64) {
        let now = self.now;
        let Some(sn) = self.slot_mut(i) else { return };
        if !sn.up || sn.epoch != epoch || sn.timer_at != at {
            return; // restarted since, or moved
        }
        sn.timer_at = u64::MAX;
        sn.node.handle_timeout(Duration::from_nanos(now));
        // A deadline the node did not move past must not spin at the same instant.
        self.flush(i, self.now + 1_000);
    }

    fn compiled(&mut self, i: u32, epoch: u32, ty_idx: u32) {
        let Some(sn) = self.part.node_mut(&mut self.nodes, i) else {
            return;
        };
        if !sn.up || sn.epoch != epoch {
            return;
        }
        let Some(entry) = self.shared.entry(ty_idx) else {
            return;
        };
        let (ty, result) = (entry.ty, entry.compiled.clone().unwrap_or(Ok(())));
        if result.is_ok() {
            sn.installed.insert(ty_idx);
            sn.persisted.insert(ty_idx);
            self.trace.record(
                self.now,
                &Record::Installed {
                    node: i,
                    ty: Ty(ty),
                },
            );
        }
        let mut view = NodeView {
            shared: &mut self.shared,
            node: i,
            installed: &sn.installed,
        };
        let took = self.config.compile_delay;
        sn.node
            .module_ready(Duration::from_nanos(self.now), ty, result, took, &mut view);
        self.flush(i, self.now);
    }
}
