//! Capsule traces ordered by Lamport clocks (wire version 2, docs/wire-format.md).
//!
//! A node keeps one Lamport clock. A traced capsule carries the clock of the send that made
//! it; on arrival the node moves its clock past it, and every event it records for the
//! capsule (received, held for code, ran, sent, delivered, dropped) takes the next tick, so
//! "a happened before b" implies `clock(a) < clock(b)` across nodes, without synchronised
//! clocks. The events of one handling go out as *one* report toward the capsule's `src` (the
//! trace's origin), hop by hop along the node's routes; reports are rate-limited per node
//! and forwarded only from neighbours. The origin keeps the reports of traces it started
//! (and only those) in a bounded log that `ants trace` reads.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use ants_wire::trace::{EVENT_LEN, MAX_REPORT_EVENTS, REPORT_FIXED_LEN, REPORT_HOPS, emit_report};
use ants_wire::{Address, CapsuleType, TraceEvent, TraceEventKind, TraceReport};

use crate::budget::PeerBudgets;
use crate::rng::SplitMix64;

/// The most a received clock moves this node's Lamport clock ahead at once.
pub(super) const MAX_CLOCK_JUMP: u64 = 1 << 32;

/// Tracing limits and the sampling rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceConfig {
    /// Fraction of the capsules local apps inject that the node traces on its own (0: only
    /// those the app asks for).
    pub sample: f64,
    /// Trace reports this node sends or forwards per second (burst: one second's worth);
    /// 0 turns reports off.
    pub reports_per_sec: u64,
    /// Traces started here whose reports are kept (oldest forgotten).
    pub max_traces: usize,
    /// Events kept per trace (the rest counted as omitted).
    pub max_events_per_trace: usize,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            sample: 0.0,
            reports_per_sec: 1000,
            max_traces: 64,
            max_events_per_trace: 1024,
        }
    }
}

/// One event as the origin keeps it: who reported it, and the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TracedEvent {
    /// The node that recorded it.
    pub node: Address,
    /// The event.
    pub event: TraceEvent,
}

/// The reports of one trace started at this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRecord {
    /// The trace id.
    pub id: u64,
    /// The traced capsule's type.
    pub ty: CapsuleType,
    /// When it started (node time).
    pub started: Duration,
    /// Reports received (this node's own included).
    pub reports: u64,
    /// Events in arrival order (sort by clock for the causal order).
    pub events: Vec<TracedEvent>,
    /// Events not kept (the per-trace limit, or reporters' truncation).
    pub omitted: u64,
}

/// Trace counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, derive_more::AddAssign)]
pub struct TraceCounters {
    /// Traces this node started (asked by an app, or sampled).
    pub started: u64,
    /// Reports this node sent about its own handling of traced capsules.
    pub reports_sent: u64,
    /// Reports forwarded toward their origin.
    pub reports_forwarded: u64,
    /// Reports received for traces started here.
    pub reports_received: u64,
    /// Reports not sent or forwarded: over the report rate.
    pub reports_rate_limited: u64,
    /// Reports dropped: no route to the origin, out of hops, queue full, or (at the origin)
    /// for a trace this node did not start.
    pub reports_undeliverable: u64,
}

/// The traced capsule being handled.
#[derive(Debug)]
struct Open {
    id: u64,
    origin: Address,
    ty: CapsuleType,
    events: Vec<TraceEvent>,
    omitted: u32,
}

/// A node's tracing state. See the module documentation.
#[derive(Debug)]
pub(super) struct Tracer {
    config: TraceConfig,
    clock: u64,
    open: Option<Open>,
    rate: PeerBudgets<()>,
    rng: SplitMix64,
    log: BTreeMap<u64, TraceRecord>,
    order: VecDeque<u64>,
    pub(super) counters: TraceCounters,
}

impl Tracer {
    pub(super) fn new(config: TraceConfig, seed: u64) -> Self {
        Tracer {
            config,
            clock: 0,
            open: None,
            rate: PeerBudgets::new(config.reports_per_sec, config.reports_per_sec, 1),
            rng: SplitMix64::new(seed ^ 0x7472_6163_655f_6964),
            log: BTreeMap::new(),
            order: VecDeque::new(),
            counters: TraceCounters::default(),
        }
    }

    /// Change sampling and limits; the clock and the traces kept stay.
    pub(super) fn set_config(&mut self, config: TraceConfig) {
        if config.reports_per_sec != self.config.reports_per_sec {
            self.rate = PeerBudgets::new(config.reports_per_sec, config.reports_per_sec, 1);
        }
        self.config = config;
    }

    /// Whether a capsule is being traced now.
    pub(super) fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// A trace id for a capsule a local app injects: the app's (`Some`, nonzero), else a
    /// fresh one when the sampling rate picks it, else `None`.
    pub(super) fn id_for_injection(&mut self, asked: Option<u64>) -> Option<u64> {
        let sampled = asked.is_none()
            && self.config.sample > 0.0
            && (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= self.config.sample;
        match asked {
            Some(id) if id != 0 => Some(id),
            Some(_) => Some(self.fresh_id()),
            None if sampled => Some(self.fresh_id()),
            None => None,
        }
    }

    fn fresh_id(&mut self) -> u64 {
        self.rng.next_u64().max(1)
    }

    /// Start a trace here (a local app's capsule): the origin keeps its reports.
    pub(super) fn start(&mut self, id: u64, ty: CapsuleType, now: Duration) {
        self.counters.started += 1;
        if self.log.contains_key(&id) {
            return;
        }
        while self.log.len() >= self.config.max_traces.max(1) {
            match self.order.pop_front() {
                Some(old) => {
                    self.log.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(id);
        self.log.insert(
            id,
            TraceRecord {
                id,
                ty,
                started: now,
                reports: 0,
                events: Vec::new(),
                omitted: 0,
            },
        );
    }

    /// The Lamport clock.
    pub(super) fn clock(&self) -> u64 {
        self.clock
    }

    /// Begin recording the handling of a traced capsule that was sent at Lamport time
    /// `sent_at` (0 for a local app's).
    pub(super) fn open(&mut self, id: u64, origin: Address, ty: CapsuleType, sent_at: u64) {
        // A clock far ahead of ours is a liar's, not causality: follow it at most
        // MAX_CLOCK_JUMP at a time, so one datagram cannot pin every later event (here and
        // downstream) at u64::MAX.
        self.clock = self
            .clock
            .max(sent_at.min(self.clock.saturating_add(MAX_CLOCK_JUMP)));
        self.open = Some(Open {
            id,
            origin,
            ty,
            events: Vec::new(),
            omitted: 0,
        });
    }

    /// Record an event of the open trace (none open: nothing); returns its Lamport time.
    pub(super) fn record(
        &mut self,
        now: Duration,
        kind: TraceEventKind,
        f: impl FnOnce(&mut TraceEvent),
    ) -> Option<u64> {
        let open = self.open.as_mut()?;
        // Saturating: a neighbour may send any clock, u64::MAX included.
        self.clock = self.clock.saturating_add(1);
        if open.events.len() + 1 < MAX_REPORT_EVENTS {
            let ns = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
            let mut e = TraceEvent::new(kind, self.clock, ns);
            f(&mut e);
            open.events.push(e);
        } else {
            open.omitted += 1;
        }
        Some(self.clock)
    }

    /// Finish the open trace: its report, as bytes to send toward the origin with the
    /// origin's address, or `None` when the report stays here (this node is the origin) or
    /// is not sent (counted).
    pub(super) fn close(&mut self, me: Address, now: Duration) -> Option<(Address, Vec<u8>)> {
        let mut open = self.open.take()?;
        if open.omitted > 0 {
            let ns = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
            let mut e = TraceEvent::new(TraceEventKind::Truncated, self.clock, ns);
            e.a = open.omitted;
            open.events.push(e);
        }
        let head = TraceReport {
            hops: REPORT_HOPS,
            capsule_type: open.ty,
            origin: open.origin,
            reporter: me,
            trace_id: open.id,
            events: &[],
        };
        if open.origin == me {
            self.keep(&head, open.events.iter().copied());
            return None;
        }
        if !self.take_token(now) {
            return None;
        }
        let mut buf = vec![0u8; REPORT_FIXED_LEN + EVENT_LEN * open.events.len()];
        match emit_report(&mut buf, &head, &open.events) {
            Ok(n) => {
                buf.truncate(n);
                self.counters.reports_sent += 1;
                Some((open.origin, buf))
            }
            Err(_) => {
                self.counters.reports_undeliverable += 1;
                None
            }
        }
    }

    /// A report arrived from a neighbour: `true` if it should be forwarded toward its origin
    /// (a token was taken), `false` if it was kept here or dropped (counted).
    pub(super) fn arrived(&mut self, r: &TraceReport<'_>, me: Address, now: Duration) -> bool {
        if r.origin == me {
            self.keep(r, r.events());
            return false;
        }
        if r.hops == 0 {
            self.counters.reports_undeliverable += 1;
            return false;
        }
        if !self.take_token(now) {
            return false;
        }
        self.counters.reports_forwarded += 1;
        true
    }

    fn take_token(&mut self, now: Duration) -> bool {
        if self.config.reports_per_sec == 0 || !self.rate.allows(now, ()) {
            self.counters.reports_rate_limited += 1;
            return false;
        }
        self.rate.charge(now, (), 1);
        true
    }

    /// Keep a report of a trace this node started; others are dropped (a stranger cannot
    /// fill the log with traces of its own).
    fn keep(&mut self, r: &TraceReport<'_>, events: impl Iterator<Item = TraceEvent>) {
        let Some(rec) = self.log.get_mut(&r.trace_id) else {
            self.counters.reports_undeliverable += 1;
            return;
        };
        self.counters.reports_received += 1;
        rec.reports += 1;
        for event in events {
            if event.event_kind() == Some(TraceEventKind::Truncated) {
                rec.omitted = rec.omitted.saturating_add(u64::from(event.a));
            }
            if rec.events.len() < self.config.max_events_per_trace {
                rec.events.push(TracedEvent {
                    node: r.reporter,
                    event,
                });
            } else {
                rec.omitted += 1;
            }
        }
    }

    /// A report could not be queued after all (no route, queue full).
    pub(super) fn undeliverable(&mut self) {
        self.counters.reports_undeliverable += 1;
    }

    /// The traces started here, oldest first.
    pub(super) fn traces(&self) -> impl Iterator<Item = &TraceRecord> {
        self.order.iter().filter_map(|id| self.log.get(id))
    }
}
