//! [`Node`]: the sans-IO state machine of one active node.
//!
//! Inputs, each with `now` passed in: [`Node::handle_datagram`] (from a peer),
//! [`Node::handle_timeout`], app requests ([`Node::register_app`], [`Node::inject`]) and
//! [`Node::module_ready`] (the driver finished compiling a module the node asked for).
//! Outputs: datagrams ([`Node::drain_transmits`]), app deliveries ([`Node::poll_delivery`]),
//! events ([`Node::poll_event`], e.g. "compile this module"), and the next deadline
//! ([`Node::poll_timeout`]).
//!
//! The node holds the neighbour table, the routing table, the soft-store, the code cache,
//! the code loader with its pending capsules, and counters. Capsule code runs through an
//! [`Executor`] passed into each call, so the same core serves the UDP daemon, router mode
//! and the simulator. `P` is the underlay peer identity (a `SocketAddr`, an IPv4 address, a
//! simulated node index).
//!
//! Who can make the node work ([`AcceptFrom`]): by default only configured neighbours'
//! datagrams are looked at; anything else is a counted `stranger` drop before it is parsed.
//! Each accepted peer has an execution budget (fuel per second): capsules from a peer in debt
//! are dropped before they run, so no peer can take the node's time from the others. The
//! resource a capsule arrives with is clamped to `max_resource`.

mod config;
mod counters;
mod io;
mod quarantine;
mod trace;
mod tx;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use ants_soft_store::SoftStore;
use ants_wire::message::Kind;
use ants_wire::{
    Address, CapsulePacket, CapsuleRepr, CapsuleType, CodeChunk, CodeNack, CodeRequest,
    Prefix as WirePrefix, Trace, TraceEventKind, TraceReport,
};
use sha2::{Digest, Sha256};

pub use config::{AcceptFrom, NodeConfig};
pub use counters::{DropReason, Log2Hist, NodeCounters, ProtocolCounters, ProtocolTable};
pub use io::{AppDelivery, Event, InjectError, Injection, LoadTiming};
use quarantine::Quarantine;
pub use quarantine::QuarantineConfig;
use trace::Tracer;
pub use trace::{TraceConfig, TraceCounters, TraceRecord, TracedEvent};

use crate::budget::PeerBudgets;
use crate::code_cache::CodeCache;
use crate::loader::{Admit, CodeLoader, LoaderCounters, LoaderEvent, RefuseReason};
use crate::{Execution, Executor, LoadError, NodeContext, RunResult, TrapReason, execute};
use tx::TxQueue;

/// Load timings kept (most recent); older ones are dropped.
const MAX_LOAD_TIMINGS: usize = 64;

/// What a node heard from one neighbour endpoint.
#[derive(Debug, Clone, Copy, Default)]
struct Heard {
    /// When the last datagram came (node time).
    last: Option<Duration>,
    /// Datagrams received.
    datagrams: u64,
}

/// One active node. See the module documentation.
#[derive(Debug)]
pub struct Node<P> {
    /// The capsule being run, the node as capsules see it, the outputs and limits: lent to the
    /// executor for each run.
    cx: Box<Execution>,
    /// Neighbour active address → underlay endpoint.
    peers: BTreeMap<Address, P>,
    /// Neighbour endpoints, with what was heard from each. Hashed with foldhash: the keys
    /// are the configured neighbours (no sender adds one), looked up per datagram.
    endpoints: HashMap<P, Heard, foldhash::fast::RandomState>,
    accept_from: AcceptFrom<P>,
    loader: CodeLoader<P>,
    code: CodeCache,
    /// Types whose code the driver keeps in its store (disk), not loaded in memory.
    stored: BTreeSet<CapsuleType>,
    /// Fuel each peer's capsules may burn.
    fuel: PeerBudgets<P>,
    /// Peers whose capsules of a type keep trapping.
    quarantine: Quarantine<P>,
    /// The Lamport clock, the traced capsule being handled and the traces started here.
    tracer: Tracer,
    tx: TxQueue<P>,
    deliveries: VecDeque<AppDelivery>,
    events: VecDeque<Event>,
    counters: NodeCounters,
    protocols: ProtocolTable,
    timings: VecDeque<LoadTiming>,
    max_capsule_bytes: usize,
    max_resource: u16,
    max_deliveries: usize,
    max_events: usize,
}

impl<P: Copy + Eq + Hash + Ord + fmt::Debug> Node<P> {
    /// A node from its configuration. Routes whose next hop is not a neighbour are kept;
    /// capsules sent along them are dropped as [`DropReason::NoNeighbour`].
    pub fn new(config: NodeConfig<P>) -> Self {
        let mut node = NodeContext::bare(config.address, config.seed, SoftStore::new(config.store));
        let mut peers = BTreeMap::new();
        let mut endpoints = HashMap::default();
        for (addr, ep) in &config.neighbours {
            node.neighbours.insert(*addr);
            peers.insert(*addr, *ep);
            endpoints.insert(*ep, Heard::default());
        }
        for (prefix, via) in &config.routes {
            node.routes.insert(*prefix, *via);
        }
        Node {
            cx: Box::new(Execution::new(node, config.host)),
            peers,
            endpoints,
            accept_from: config.accept_from,
            loader: CodeLoader::new(config.loader),
            code: CodeCache::new(config.code_cache_bytes),
            stored: BTreeSet::new(),
            fuel: PeerBudgets::new(
                config.peer_fuel_per_sec,
                config.peer_fuel_burst,
                config.max_budget_peers,
            ),
            quarantine: Quarantine::new(config.quarantine),
            tracer: Tracer::new(config.trace, config.seed),
            tx: TxQueue::new(config.max_tx_datagrams, config.max_tx_datagrams * 2048),
            deliveries: VecDeque::new(),
            events: VecDeque::new(),
            counters: NodeCounters::default(),
            protocols: ProtocolTable::new(config.max_protocols),
            timings: VecDeque::new(),
            max_capsule_bytes: config.max_capsule_bytes,
            max_resource: config.max_resource,
            max_deliveries: config.max_deliveries,
            max_events: config.max_events,
        }
    }

    /// Apply a new configuration to a running node, keeping its soft-store, code cache,
    /// held capsules, loads, quarantines and traces: neighbours (what was heard from an
    /// endpoint that stays is kept), routes, who is accepted, per-execution limits, the
    /// largest capsule, the resource cap, peer fuel budgets, the quarantine policy, the code
    /// policy and tracing. The address, seed, soft-store, code cache and queue sizes stay as
    /// they were (the caller reports those as needing a restart).
    pub fn reconfigure(&mut self, config: NodeConfig<P>) {
        let node = &mut self.cx.node;
        node.neighbours.clear();
        node.routes.clear();
        self.peers.clear();
        let mut heard = std::mem::take(&mut self.endpoints);
        for (addr, ep) in &config.neighbours {
            node.neighbours.insert(*addr);
            self.peers.insert(*addr, *ep);
            let h = heard.remove(ep).unwrap_or_default();
            self.endpoints.insert(*ep, h);
        }
        for (prefix, via) in &config.routes {
            node.routes.insert(*prefix, *via);
        }
        self.accept_from = config.accept_from;
        self.cx.limits = config.host;
        self.max_capsule_bytes = config.max_capsule_bytes;
        self.max_resource = config.max_resource;
        self.fuel
            .set_rate(config.peer_fuel_per_sec, config.peer_fuel_burst);
        self.quarantine.set_config(config.quarantine);
        self.loader.set_policy(config.loader.policy);
        self.tracer.set_config(config.trace);
    }

    /// This node's active address.
    pub fn address(&self) -> Address {
        self.cx.node.address
    }

    fn now(&self) -> Duration {
        self.cx.node.now
    }

    fn tick(&mut self, now: Duration) {
        self.cx.node.now = self.cx.node.now.max(now);
    }

    /// Whether datagrams from `from` are looked at (see [`AcceptFrom`]).
    pub fn accepts(&self, from: &P) -> bool {
        matches!(self.accept_from, AcceptFrom::Any)
            || self.endpoints.contains_key(from)
            || self.accepts_stranger(from)
    }

    /// Whether datagrams from `from`, not a neighbour, are looked at.
    fn accepts_stranger(&self, from: &P) -> bool {
        match &self.accept_from {
            AcceptFrom::Any => true,
            AcceptFrom::Neighbours => false,
            AcceptFrom::NeighboursAnd(also) => also(from),
        }
    }

    /// A datagram arrived from `from`.
    pub fn handle_datagram(
        &mut self,
        now: Duration,
        from: P,
        data: &[u8],
        exec: &mut dyn Executor,
    ) {
        self.tick(now);
        self.counters.datagrams_in += 1;
        // A neighbour's datagram: note it (the one lookup also admits it).
        let neighbour = self.endpoints.get_mut(&from).map(|h| {
            h.last = Some(now);
            h.datagrams += 1;
        });
        if neighbour.is_none() && !self.accepts_stranger(&from) {
            return self.counters.drop(DropReason::Stranger, 1);
        }
        let now = self.now();
        let kind = match WirePrefix::parse(data) {
            Ok(p) => p.kind,
            Err(_) => return self.counters.drop(DropReason::Malformed, 1),
        };
        if !matches!(kind, Kind::Capsule | Kind::TraceReport) {
            self.counters.code_messages_in += 1;
        }
        let ok = match kind {
            Kind::Capsule => {
                self.handle_capsule(Some(from), data, exec);
                true
            }
            Kind::CodeRequest => CodeRequest::parse(data).is_ok_and(|req| {
                let trusted = neighbour.is_some();
                self.loader
                    .handle_request(now, from, &req, trusted, &mut self.code);
                true
            }),
            Kind::CodeChunk => CodeChunk::parse(data).is_ok_and(|c| {
                self.loader.handle_chunk(now, from, &c);
                true
            }),
            Kind::CodeNack => CodeNack::parse(data).is_ok_and(|n| {
                self.loader.handle_nack(now, from, &n);
                true
            }),
            // Reports travel between neighbours only: a stranger (admitted by `accept_from`
            // for its capsules) cannot spend the report budget or write into a trace.
            Kind::TraceReport if neighbour.is_none() => {
                self.counters.drop(DropReason::Stranger, 1);
                true
            }
            Kind::TraceReport => TraceReport::parse(data).is_ok_and(|r| {
                self.trace_report(&r, data);
                true
            }),
        };
        if !ok {
            self.counters.drop(DropReason::Malformed, 1);
        }
        self.pump_loader();
    }

    fn handle_capsule(&mut self, from: Option<P>, data: &[u8], exec: &mut dyn Executor) {
        let Ok(pkt) = CapsulePacket::new_checked(data) else {
            return self.counters.drop(DropReason::Malformed, 1);
        };
        if let Some(t) = pkt.trace() {
            self.open_trace(t, pkt.src(), pkt.capsule_type());
            let (prev, resource) = (pkt.prev(), pkt.resource());
            self.tracer
                .record(self.now(), TraceEventKind::Received, |e| {
                    e.peer = prev;
                    e.resource = resource;
                    e.b = u32::try_from(t.clock).unwrap_or(u32::MAX);
                });
        }
        self.handle_checked(from, &pkt, data, exec);
        self.close_trace();
    }

    fn handle_checked(
        &mut self,
        from: Option<P>,
        pkt: &CapsulePacket<&[u8]>,
        data: &[u8],
        exec: &mut dyn Executor,
    ) {
        if pkt.header().len() + pkt.payload().len() > self.max_capsule_bytes {
            return self.dropped(DropReason::TooLarge, 1);
        }
        self.counters.capsules_in += 1;
        let ty = pkt.capsule_type();
        if exec.is_loaded(&ty) {
            return self.run(from, &pkt.repr(), exec);
        }
        self.hold(ty, from, data);
    }

    /// Count a drop, and record it in the open trace.
    fn dropped(&mut self, reason: DropReason, n: u64) {
        self.counters.drop(reason, n);
        trace_drop(&mut self.tracer, self.cx.node.now, reason, n);
    }

    fn open_trace(&mut self, t: Trace, origin: Address, ty: CapsuleType) {
        self.tracer.open(t.id, origin, ty, t.clock);
    }

    /// Send the open trace's report toward its origin (or keep it, at the origin).
    fn close_trace(&mut self) {
        if !self.tracer.is_open() {
            return;
        }
        let me = self.address();
        if let Some((origin, report)) = self.tracer.close(me, self.now()) {
            self.send_toward(origin, &report);
        }
    }

    /// Queue a trace report to the next hop toward `origin`.
    fn send_toward(&mut self, origin: Address, report: &[u8]) {
        let to = self
            .cx
            .node
            .next_hop(&origin)
            .and_then(|hop| self.peers.get(&hop).copied());
        match to {
            Some(to) if self.tx.push(to, report) => {}
            _ => self.tracer.undeliverable(),
        }
    }

    /// A trace report from a neighbour: keep it (a trace started here) or pass it on.
    fn trace_report(&mut self, r: &TraceReport<'_>, data: &[u8]) {
        let me = self.address();
        if self.tracer.arrived(r, me, self.now()) {
            let mut copy = data.to_vec();
            ants_wire::trace::take_report_hop(&mut copy);
            self.send_toward(r.origin, &copy);
        }
    }

    /// Keep a capsule until its code is installed: compile the code if the node has it (in
    /// memory or in the driver's store), else fetch it from the previous hop. `false` if it
    /// was dropped (counted).
    fn hold(&mut self, ty: CapsuleType, from: Option<P>, data: &[u8]) -> bool {
        let now = self.now();
        let local = self.code.contains(&ty) || self.stored.contains(&ty);
        let admit = match from {
            _ if local => self.loader.hold_local(now, ty, from, data.to_vec()),
            Some(p) => self.loader.hold(now, ty, p, data.to_vec()),
            None => Admit::Refused(RefuseReason::NoSource),
        };
        match admit {
            Admit::Held => {}
            Admit::Compile => self.start_compile(ty),
            Admit::Refused(_) => {
                self.dropped(DropReason::PendingRefused, 1);
                return false;
            }
        }
        if self.tracer.is_open() {
            let prev = CapsulePacket::new_checked(data).map_or(Address::UNSPECIFIED, |p| p.prev());
            self.tracer.record(now, TraceEventKind::HeldForCode, |e| {
                e.peer = prev;
                e.detail = u8::from(local);
            });
        }
        self.counters.held += 1;
        self.timing_start(ty);
        true
    }

    /// Ask the driver to compile the code of `ty` the node has: from the code cache, or from
    /// the driver's store.
    fn start_compile(&mut self, ty: CapsuleType) {
        if let Some(code) = self.code.get(&ty).cloned() {
            self.push_event(Event::Compile { ty, code });
        } else if self.stored.contains(&ty) {
            self.push_event(Event::Restore { ty });
        } else {
            let now = self.now();
            let dropped = self.loader.compile_failed(now, &ty, false);
            self.counters
                .drop(DropReason::CodeUnavailable, dropped as u64);
        }
    }

    /// Run one capsule whose type is loaded, and turn its effects into outputs. `from` is
    /// the peer it came from (charged its fuel), `None` for a local app's.
    fn run(&mut self, from: Option<P>, capsule: &CapsuleRepr<'_>, exec: &mut dyn Executor) {
        let now = self.now();
        if let Some(p) = from
            && !self.fuel.allows(now, p)
        {
            return self.dropped(DropReason::PeerOverBudget, 1);
        }
        let ty = capsule.capsule_type;
        if let Some(p) = from
            && self.quarantine.blocks(now, p, &ty)
        {
            self.protocols.entry(ty).quarantined += 1;
            return self.dropped(DropReason::Quarantined, 1);
        }
        self.cx.capsule.load(capsule);
        if self.cx.capsule.resource > self.max_resource {
            self.cx.capsule.resource = self.max_resource;
            self.counters.resource_clamped += 1;
        }
        let report = execute(exec, &mut self.cx);
        if let Some(p) = from {
            self.fuel.charge(now, p, report.fuel_used);
        }
        self.counters.runs += 1;
        if self.tracer.is_open() {
            let outcome = match report.result {
                RunResult::Returned(0) => 0,
                RunResult::Returned(_) => 1,
                RunResult::Trapped(_) => 2,
                RunResult::NotLoaded => 3,
            };
            let resource = self.cx.capsule.resource;
            self.tracer.record(now, TraceEventKind::Ran, |e| {
                e.a = u32::try_from(report.fuel_used).unwrap_or(u32::MAX);
                e.b = report
                    .nanos
                    .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX));
                e.detail = outcome;
                e.resource = resource;
            });
        }
        let (sent, delivered) = self.flush_effects(ty);
        let effects = &self.cx.effects;
        let (limit_hits, app_refusals) = (effects.limit_hits, effects.app_refusals);
        let (no_route, resource_refusals) = (effects.no_route, effects.resource_refusals);
        let stats = self.protocols.entry(ty);
        stats.runs += 1;
        stats.fuel_hist.record(report.fuel_used);
        if let Some(ns) = report.nanos {
            stats.time_hist.record(ns);
        }
        stats.last_run_ns = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        stats.fuel += report.fuel_used;
        stats.limit_hits += u64::from(limit_hits);
        stats.app_refusals += u64::from(app_refusals);
        stats.sent += sent;
        stats.delivered += delivered;
        match report.result {
            RunResult::Returned(0) => {}
            RunResult::Returned(_) => stats.errors += 1,
            RunResult::Trapped(reason) => {
                stats.traps += 1;
                stats.deadline_traps += u64::from(reason == TrapReason::Deadline);
                self.dropped(DropReason::Trapped, 1);
                self.push_event(Event::Trapped { ty, reason });
                if let Some(p) = from
                    && self.quarantine.trapped(now, p, ty)
                {
                    self.counters.quarantines += 1;
                    self.protocols.entry(ty).quarantines += 1;
                    self.push_event(Event::Quarantined {
                        ty,
                        peer: format!("{p:?}"),
                    });
                }
            }
            RunResult::NotLoaded => self.dropped(DropReason::CodeUnavailable, 1),
        }
        self.dropped(DropReason::NoRoute, u64::from(no_route));
        self.dropped(DropReason::ResourceExhausted, u64::from(resource_refusals));
    }

    /// Turn the effects of the last run into transmits, deliveries and log events; returns
    /// `(sent, delivered)`.
    fn flush_effects(&mut self, ty: CapsuleType) -> (u64, u64) {
        let cx = &*self.cx;
        let now = cx.node.now;
        let me = cx.node.address;
        let (mut sent, mut delivered) = (0u64, 0u64);
        for send in &cx.effects.sends {
            let Some(&to) = self.peers.get(&send.next_hop) else {
                self.counters.drop(DropReason::NoNeighbour, 1);
                trace_drop(&mut self.tracer, now, DropReason::NoNeighbour, 1);
                continue;
            };
            let mut repr = cx.effects.send_repr(send, &cx.capsule, me);
            if let Some(t) = repr.trace.as_mut() {
                // Each copy carries the Lamport time of its own send.
                let (hop, resource) = (send.next_hop, send.resource);
                let sent = self.tracer.record(now, TraceEventKind::Sent, |e| {
                    e.peer = hop;
                    e.resource = resource;
                });
                t.clock = sent.unwrap_or(t.clock);
            }
            if self
                .tx
                .push_with(to, repr.buffer_len(), |buf| repr.emit(buf))
            {
                // No `note_sent`: `to` is a configured neighbour, and neighbours may always
                // fetch code from us, so recording the send would only cost an LRU update per
                // capsule (~14 % of the simulator's time on 10,000 nodes).
                sent += 1;
            } else {
                self.counters.drop(DropReason::TxQueueFull, 1);
                trace_drop(&mut self.tracer, now, DropReason::TxQueueFull, 1);
            }
        }
        for d in &cx.effects.deliveries {
            if self.deliveries.len() >= self.max_deliveries {
                self.counters.drop(DropReason::DeliveryQueueFull, 1);
                trace_drop(&mut self.tracer, now, DropReason::DeliveryQueueFull, 1);
                continue;
            }
            let repr = cx.effects.delivery_repr(d, &cx.capsule);
            let mut capsule = vec![0u8; repr.buffer_len()];
            if repr.emit(&mut capsule).is_ok() {
                delivered += 1;
                let app = d.app;
                self.tracer
                    .record(now, TraceEventKind::Delivered, |e| e.a = app);
                self.deliveries.push_back(AppDelivery {
                    app: d.app,
                    capsule,
                    at: now,
                });
            }
        }
        for line in &cx.effects.logs {
            if self.events.len() < self.max_events {
                self.events.push_back(Event::CapsuleLog {
                    ty,
                    level: line.level,
                    text: cx.effects.log_text(line).to_string(),
                });
            } else {
                self.counters.events_dropped += 1;
            }
        }
        self.counters.sent += sent;
        self.counters.delivered += delivered;
        (sent, delivered)
    }

    /// Queue an event. `Compile` and `Restore` are never dropped (held capsules wait for them,
    /// and there is at most one per load, loads being bounded); other events past
    /// `max_events` are counted and dropped.
    fn push_event(&mut self, e: Event) {
        let vital = matches!(e, Event::Compile { .. } | Event::Restore { .. });
        if self.events.len() < self.max_events || vital {
            self.events.push_back(e);
        } else {
            self.counters.events_dropped += 1;
        }
    }

    /// Move the loader's outputs into the node's.
    fn pump_loader(&mut self) {
        while let Some((to, bytes)) = self.loader.poll_transmit() {
            if !self.tx.push(to, &bytes) {
                self.counters.drop(DropReason::TxQueueFull, 1);
            }
        }
        while let Some(ev) = self.loader.poll_event() {
            match ev {
                LoaderEvent::Verified { ty, code } => {
                    self.counters.modules_verified += 1;
                    let now = self.now();
                    if let Some(t) = self.timing_mut(&ty) {
                        t.verified_at.get_or_insert(now);
                    }
                    // A module larger than the whole code cache still runs here; it just
                    // cannot be served downstream (the cache counts the refusal).
                    let _ = self.code.insert(ty, code.clone());
                    self.push_event(Event::Compile { ty, code });
                }
                LoaderEvent::Failed {
                    ty,
                    reason,
                    dropped,
                } => {
                    self.counters
                        .drop(DropReason::CodeUnavailable, dropped as u64);
                    self.push_event(Event::CodeFailed {
                        ty,
                        reason: format!("{reason:?}"),
                        dropped,
                    });
                }
            }
        }
    }

    /// The driver compiled (or failed to compile) a module asked for by [`Event::Compile`]
    /// or [`Event::Restore`], in `took` of wall time (charged to the peer that caused it).
    /// On success the capsules held for it run now, in arrival order.
    pub fn module_ready(
        &mut self,
        now: Duration,
        ty: CapsuleType,
        result: Result<(), LoadError>,
        took: Duration,
        exec: &mut dyn Executor,
    ) {
        self.tick(now);
        let now = self.now();
        if let Some(t) = self.timing_mut(&ty) {
            t.ready_at.get_or_insert(now);
        }
        self.loader.compiled(now, &ty, took);
        match result {
            Ok(()) => {
                self.counters.modules_installed += 1;
                for (from, c) in self.loader.take_held(&ty) {
                    let Ok(repr) = CapsuleRepr::parse(&c) else {
                        self.counters.drop(DropReason::Malformed, 1);
                        continue;
                    };
                    if let Some(t) = repr.trace {
                        self.open_trace(t, repr.src, ty);
                        let waited = self.timings.iter().rev().find(|t| t.ty == ty);
                        let waited =
                            waited.map_or(0, |t| now.saturating_sub(t.held_at).as_micros());
                        self.tracer.record(now, TraceEventKind::CodeReady, |e| {
                            e.a = u32::try_from(waited).unwrap_or(u32::MAX);
                        });
                    }
                    self.run(from, &repr, exec);
                    self.close_trace();
                }
            }
            Err(e) => {
                self.counters.modules_rejected += 1;
                let invalid = e.is_invalid();
                let dropped = self.loader.compile_failed(now, &ty, invalid);
                if invalid {
                    self.code.remove(&ty);
                }
                self.stored.remove(&ty);
                self.counters
                    .drop(DropReason::CodeUnavailable, dropped as u64);
                self.push_event(Event::CodeFailed {
                    ty,
                    reason: e.to_string(),
                    dropped,
                });
            }
        }
        self.pump_loader();
    }

    fn timing_start(&mut self, ty: CapsuleType) {
        if self.timing_mut(&ty).is_some() {
            return;
        }
        if self.timings.len() >= MAX_LOAD_TIMINGS {
            self.timings.pop_front();
        }
        let held_at = self.now();
        self.timings.push_back(LoadTiming {
            ty,
            held_at,
            verified_at: None,
            ready_at: None,
        });
    }

    /// The open (not yet ready) timing record of `ty`.
    fn timing_mut(&mut self, ty: &CapsuleType) -> Option<&mut LoadTiming> {
        self.timings
            .iter_mut()
            .rev()
            .find(|t| t.ty == *ty && t.ready_at.is_none())
    }

    /// Stage times of the most recent module loads (bounded).
    pub fn load_timings(&self) -> impl Iterator<Item = &LoadTiming> {
        self.timings.iter()
    }

    /// Put verified module bytes in the code cache so the node can serve them (and compile
    /// them without a fetch). Refused (`false`) if the hash is not `ty`, the code policy does
    /// not allow `ty`, or the module alone exceeds the cache. The caller installs the compiled
    /// module in the executor, if it compiled one.
    pub fn add_code(&mut self, ty: CapsuleType, code: Arc<[u8]>) -> bool {
        if !self.loader.config().policy.allows(&ty)
            || CapsuleType(Sha256::digest(&code).into()) != ty
        {
            return false;
        }
        self.code.insert(ty, code).is_ok()
    }

    /// Tell the node whether the driver's code store (the code cache directory) holds the
    /// module of `ty`, so a capsule of that type is restored ([`Event::Restore`]) instead of
    /// fetched. Types the code policy does not allow are ignored (`false`).
    pub fn set_stored(&mut self, ty: CapsuleType, stored: bool) -> bool {
        if !stored {
            return self.stored.remove(&ty);
        }
        self.loader.config().policy.allows(&ty) && self.stored.insert(ty)
    }

    /// Whether the code policy allows `ty`.
    pub fn allows(&self, ty: &CapsuleType) -> bool {
        self.loader.config().policy.allows(ty)
    }

    /// Timers: code-request retries and timeouts, soft-store expiry.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.tick(now);
        let now = self.now();
        self.loader.handle_timeout(now);
        self.cx.node.store.expire(now);
        self.pump_loader();
    }

    /// When [`Node::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Duration> {
        match (self.loader.poll_timeout(), self.cx.node.store.next_expiry()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Register a local app id that accepts deliveries from every capsule type; `false` if
    /// the id is already registered.
    pub fn register_app(&mut self, app: u32) -> bool {
        self.register_app_accepting(app, &[])
    }

    /// Register a local app id that accepts deliveries only from the capsule types in
    /// `accept` (empty: every type); `false` if the id is already registered.
    pub fn register_app_accepting(&mut self, app: u32, accept: &[CapsuleType]) -> bool {
        let node = &mut self.cx.node;
        if !node.apps.insert(app) {
            return false;
        }
        if !accept.is_empty() {
            node.app_accept
                .insert(app, accept.iter().copied().collect());
        }
        true
    }

    /// Unregister a local app id.
    pub fn unregister_app(&mut self, app: u32) {
        self.cx.node.apps.remove(&app);
        self.cx.node.app_accept.remove(&app);
    }

    /// An app sends a capsule from this node (`src` = this node, `prev` = `::`). The code
    /// policy applies as to capsules from the network, and the resource is clamped to
    /// `max_resource` when the capsule runs.
    pub fn inject(
        &mut self,
        now: Duration,
        app: u32,
        inj: Injection<'_>,
        exec: &mut dyn Executor,
    ) -> Result<(), InjectError> {
        self.tick(now);
        if !self.cx.node.apps.contains(&app) {
            return Err(InjectError::NotRegistered(app));
        }
        let size = inj.header.len() + inj.payload.len();
        if size > self.max_capsule_bytes {
            return Err(InjectError::TooLarge {
                size,
                max: self.max_capsule_bytes,
            });
        }
        if !self.allows(&inj.ty) {
            return Err(InjectError::NotAllowed(inj.ty));
        }
        if let Some(code) = inj.code {
            let found = CapsuleType(Sha256::digest(code).into());
            if found != inj.ty {
                return Err(InjectError::HashMismatch { ty: inj.ty, found });
            }
            if !self.code.contains(&inj.ty) && !self.add_code(inj.ty, Arc::from(code)) {
                return Err(InjectError::CodeTooLarge);
            }
        }
        let loaded = exec.is_loaded(&inj.ty);
        if !loaded
            && !self.code.contains(&inj.ty)
            && !self.stored.contains(&inj.ty)
            && !self.loader.is_loading(&inj.ty)
        {
            return Err(InjectError::UnknownType(inj.ty));
        }
        self.counters.injected += 1;
        let me = self.cx.node.address;
        let trace = self.tracer.id_for_injection(inj.trace).map(|id| {
            let now = self.now();
            self.tracer.start(id, inj.ty, now);
            self.tracer.open(id, me, inj.ty, 0);
            let clock = self.tracer.record(now, TraceEventKind::Injected, |e| {
                e.a = app;
                e.b = u32::from(inj.trace.is_none());
                e.resource = inj.resource;
            });
            Trace {
                id,
                clock: clock.unwrap_or(0),
            }
        });
        let repr = CapsuleRepr {
            flags: 0,
            resource: inj.resource,
            capsule_type: inj.ty,
            src: me,
            dst: inj.dst,
            prev: Address::UNSPECIFIED,
            header: inj.header,
            payload: inj.payload,
            trace,
        };
        let result = if loaded {
            self.run(None, &repr, exec);
            Ok(())
        } else {
            let mut bytes = vec![0u8; repr.buffer_len()];
            if repr.emit(&mut bytes).is_err() || !self.hold(inj.ty, None, &bytes) {
                Err(InjectError::Busy(inj.ty))
            } else {
                Ok(())
            }
        };
        self.close_trace();
        self.pump_loader();
        result
    }

    /// Traces started at this node (by `inject` with a trace id, or sampled), oldest first,
    /// with the reports received for them.
    pub fn traces(&self) -> impl Iterator<Item = &TraceRecord> {
        self.tracer.traces()
    }

    /// This node's Lamport clock (for traces).
    pub fn trace_clock(&self) -> u64 {
        self.tracer.clock()
    }

    /// Trace counters.
    pub fn trace_counters(&self) -> &TraceCounters {
        &self.tracer.counters
    }

    /// Hand every queued datagram to `f` (`to`, bytes) and empty the queue.
    pub fn drain_transmits(&mut self, f: impl FnMut(P, &[u8])) {
        self.tx.drain(f);
    }

    /// Hand the oldest `max` queued datagrams to `f`, for a driver whose send batch holds
    /// `max`; returns how many are still queued.
    pub fn drain_transmits_up_to(&mut self, max: usize, f: impl FnMut(P, &[u8])) -> usize {
        self.tx.drain_up_to(max, f)
    }

    /// Datagrams queued.
    pub fn pending_transmits(&self) -> usize {
        self.tx.len()
    }

    /// The next capsule for a local app.
    pub fn poll_delivery(&mut self) -> Option<AppDelivery> {
        self.deliveries.pop_front()
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Node counters.
    pub fn counters(&self) -> &NodeCounters {
        &self.counters
    }

    /// Forget `ty`'s module: its verified code (what the node serves) and its place in the
    /// driver's store; the driver drops the compiled module. A load in progress goes on.
    /// Whether the node had either.
    pub fn evict(&mut self, ty: &CapsuleType) -> bool {
        let code = self.code.remove(ty).is_some();
        let stored = self.stored.remove(ty);
        code || stored
    }

    /// The configured neighbours: active address, endpoint, when a datagram last came from
    /// it (node time; `None`: never) and how many have.
    pub fn neighbours(&self) -> Vec<(Address, P, Option<Duration>, u64)> {
        self.peers
            .iter()
            .map(|(a, p)| {
                let heard = self.endpoints.get(p).copied().unwrap_or_default();
                (*a, *p, heard.last, heard.datagrams)
            })
            .collect()
    }

    /// Peers quarantined at `now` (repeated traps), by type.
    pub fn quarantined(&self, now: Duration) -> Vec<(CapsuleType, usize)> {
        self.quarantine.active(now)
    }

    /// Per-protocol counters.
    pub fn protocols(&self) -> &ProtocolTable {
        &self.protocols
    }

    /// Code loader counters.
    pub fn loader_counters(&self) -> &LoaderCounters {
        self.loader.counters()
    }

    /// The code cache (modules this node can serve).
    pub fn code_cache(&self) -> &CodeCache {
        &self.code
    }

    /// The next active hop toward `toward`, as `route_for_node` would take it (`None`: this
    /// node, or no route).
    pub fn next_hop(&self, toward: &Address) -> Option<Address> {
        self.cx.node.next_hop(toward)
    }

    /// The soft-store.
    pub fn store(&self) -> &SoftStore<[u8; 32]> {
        &self.cx.node.store
    }

    /// How full the code loader's tables are.
    pub fn loader_occupancy(&self) -> crate::loader::Occupancy {
        self.loader.occupancy()
    }

    /// Capsules held waiting for their code (cheap: one counter, checked after every input
    /// by a `max-held` watch).
    pub fn held_capsules(&self) -> usize {
        self.loader.held()
    }

    /// Peers with an execution (fuel) budget.
    pub fn budget_peers(&self) -> usize {
        self.fuel.len()
    }
}

/// Record a drop in the open trace (if any): one event per reason, `a` = how many.
fn trace_drop(tracer: &mut Tracer, now: Duration, reason: DropReason, n: u64) {
    if n > 0 && tracer.is_open() {
        tracer.record(now, TraceEventKind::Dropped, |e| {
            e.detail = reason.code();
            e.a = u32::try_from(n).unwrap_or(u32::MAX);
        });
    }
}
