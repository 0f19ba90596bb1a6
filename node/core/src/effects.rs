//! What one capsule execution asks of the node.
//!
//! `route_for_node` and `deliver_to_app` snapshot the capsule as it is at the time of the call
//! (ANTS semantics: later edits do not change a copy already sent). Snapshots are appended to
//! one byte arena that is cleared, not freed, between executions, so a warmed-up node does not
//! allocate per capsule.
//!
//! # The resource budget
//!
//! The resource a capsule arrives with is a budget that all the copies one run emits *share*
//! (PLAN's resource bound; ANTS's TTL made sound for fan-out): each copy costs one unit for its
//! own transmission plus the resource it carries, so the copies of one run satisfy
//! `Σ (1 + resource_i) ≤ arriving resource`. By induction, a capsule injected with resource
//! `R` causes at most `R` transmissions anywhere in the network, whatever its code does.
//! `route_for_node_with` takes an explicit share; `route_for_node` copies share what is left
//! equally when the run ends ([`Effects::settle_resources`]; the first copies get the
//! remainder of the division). A single `route_for_node` therefore carries `R - 1`, exactly
//! the old TTL behaviour.

use std::ops::Range;

use ants_wire::abi::LogLevel;
use ants_wire::{Address, CapsuleRepr};

use crate::CapsuleState;

/// The mutable part of a capsule at the moment it was sent or delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Destination at the time of the call.
    pub dst: Address,
    header: Range<usize>,
    payload: Range<usize>,
}

/// A copy of the capsule to transmit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    /// The address the capsule asked to route toward.
    pub toward: Address,
    /// The next active hop the node's routing chose.
    pub next_hop: Address,
    /// Resource budget the copy carries (final once the run is settled).
    pub resource: u16,
    /// `true` for `route_for_node` copies, whose resource is set when the run is settled.
    pub shared: bool,
    /// The capsule's fields at the time of the call.
    pub snapshot: Snapshot,
}

/// A copy of the capsule for a local app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The app id.
    pub app: u32,
    /// The capsule's fields at the time of the call.
    pub snapshot: Snapshot,
}

/// One `log` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Level.
    pub level: LogLevel,
    msg: Range<usize>,
}

/// The outputs of one execution, reused across executions.
#[derive(Debug, Default, Clone)]
pub struct Effects {
    /// Copies to send, in call order.
    pub sends: Vec<Send>,
    /// Deliveries to local apps, in call order.
    pub deliveries: Vec<Delivery>,
    /// Log lines, in call order.
    pub logs: Vec<LogLine>,
    /// Host calls refused because a per-execution limit was reached (copies, deliveries, logs).
    pub limit_hits: u32,
    /// `route_for_node` calls refused because the resource budget was used up.
    pub resource_refusals: u32,
    /// `route_for_node` calls with no route toward the address.
    pub no_route: u32,
    /// `deliver_to_app` calls refused by the app's accept list.
    pub app_refusals: u32,
    /// Resource not yet given to a copy.
    budget: u16,
    arena: Vec<u8>,
}

impl Effects {
    /// Forget everything from the previous execution, keeping capacity.
    pub fn clear(&mut self) {
        self.sends.clear();
        self.deliveries.clear();
        self.logs.clear();
        self.limit_hits = 0;
        self.resource_refusals = 0;
        self.no_route = 0;
        self.app_refusals = 0;
        self.budget = 0;
        self.arena.clear();
    }

    /// Start an execution of a capsule that arrived with `resource`.
    pub fn begin(&mut self, resource: u16) {
        self.clear();
        self.budget = resource;
    }

    /// The resource not yet given to a copy.
    pub fn budget(&self) -> u16 {
        self.budget
    }

    /// Record a copy, charging the budget its transmission (and `resource`, when explicit).
    /// The caller checked that the budget covers it.
    pub(crate) fn push_send(
        &mut self,
        toward: Address,
        next_hop: Address,
        resource: Option<u16>,
        snapshot: Snapshot,
    ) {
        let cost = resource.map_or(1, |r| u32::from(r) + 1);
        self.budget = u16::try_from(u32::from(self.budget).saturating_sub(cost)).unwrap_or(0);
        self.sends.push(Send {
            toward,
            next_hop,
            resource: resource.unwrap_or(0),
            shared: resource.is_none(),
            snapshot,
        });
    }

    /// End of a run: divide the budget left among the `route_for_node` copies, equally, the
    /// first ones getting the remainder. Idempotent: the budget is used up afterwards (unless
    /// there were no such copies).
    pub fn settle_resources(&mut self) {
        let n = self.sends.iter().filter(|s| s.shared).count();
        let Ok(n) = u16::try_from(n) else { return };
        if n == 0 {
            return;
        }
        let (each, mut extra) = (self.budget / n, self.budget % n);
        for s in self.sends.iter_mut().filter(|s| s.shared) {
            s.resource = each + u16::from(extra > 0);
            extra = extra.saturating_sub(1);
            s.shared = false;
        }
        self.budget = 0;
    }

    /// Drop sends and deliveries but keep logs and counts: what a trapped execution leaves.
    pub fn discard_outputs(&mut self) {
        self.sends.clear();
        self.deliveries.clear();
        self.budget = 0;
    }

    /// `true` if the execution asked for nothing to be sent or delivered.
    pub fn is_silent(&self) -> bool {
        self.sends.is_empty() && self.deliveries.is_empty()
    }

    pub(crate) fn snapshot(&mut self, c: &CapsuleState) -> Snapshot {
        let h = self.push(&c.header);
        let p = self.push(&c.payload);
        Snapshot {
            dst: c.dst,
            header: h,
            payload: p,
        }
    }

    pub(crate) fn push_log(&mut self, level: LogLevel, msg: &[u8]) {
        let msg = self.push(msg);
        self.logs.push(LogLine { level, msg });
    }

    fn push(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.arena.len();
        self.arena.extend_from_slice(bytes);
        start..self.arena.len()
    }

    fn bytes(&self, r: &Range<usize>) -> &[u8] {
        self.arena.get(r.clone()).unwrap_or(&[])
    }

    /// The protocol header of a snapshot.
    pub fn header(&self, s: &Snapshot) -> &[u8] {
        self.bytes(&s.header)
    }

    /// The payload of a snapshot.
    pub fn payload(&self, s: &Snapshot) -> &[u8] {
        self.bytes(&s.payload)
    }

    /// A log line's text (lossy UTF-8 was already applied by the host; bytes are as logged).
    pub fn log_text(&self, l: &LogLine) -> &str {
        std::str::from_utf8(self.bytes(&l.msg)).unwrap_or("<invalid utf-8>")
    }

    /// The wire form of a send: the executed capsule's immutable fields, the snapshot's
    /// mutable ones, the decremented resource and `prev` = `sender`.
    pub fn send_repr<'a>(
        &'a self,
        send: &Send,
        base: &CapsuleState,
        sender: Address,
    ) -> CapsuleRepr<'a> {
        CapsuleRepr {
            flags: base.flags,
            resource: send.resource,
            capsule_type: base.capsule_type,
            src: base.src,
            dst: send.snapshot.dst,
            prev: sender,
            header: self.header(&send.snapshot),
            payload: self.payload(&send.snapshot),
            trace: base.trace,
        }
    }

    /// The capsule as handed to an app (`prev` is the hop it arrived from).
    pub fn delivery_repr<'a>(&'a self, d: &Delivery, base: &CapsuleState) -> CapsuleRepr<'a> {
        CapsuleRepr {
            flags: base.flags,
            resource: base.resource,
            capsule_type: base.capsule_type,
            src: base.src,
            dst: d.snapshot.dst,
            prev: base.prev,
            header: self.header(&d.snapshot),
            payload: self.payload(&d.snapshot),
            trace: base.trace,
        }
    }
}
