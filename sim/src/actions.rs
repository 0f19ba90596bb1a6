//! Scheduled [`Action`]s: app sends, app registration, node crash/restart and link
//! partition/repair.

use std::time::Duration;

use ants_core::Executor;
use ants_core::node::Injection;
use ants_core::rng::SplitMix64;

use crate::apps::{CodeHandover, Dst, SendPlan, random_other};
use crate::event::Event;
use crate::exec::NodeView;
use crate::sim::{Sim, ns};
use crate::trace::Record;
use crate::watch::Violation;

/// Something scheduled with [`Sim::schedule`].
#[derive(Debug, Clone)]
pub enum Action {
    /// An app sends capsules (repeats itself per its plan).
    Send(Box<SendPlan>),
    /// Register an app id on a node (it receives deliveries from then on).
    Register {
        /// Node.
        node: u32,
        /// App id.
        app: u32,
    },
    /// The node stops: its state is lost; datagrams to it are dropped (`node-down`).
    Crash(u32),
    /// The node starts again from its configuration (and, with `keep_code_on_restart`, the
    /// modules it had compiled); its registered apps reconnect. Restarting a running node
    /// crashes it first.
    Restart(u32),
    /// Both directions of the link between the two nodes go down.
    Partition(u32, u32),
    /// Both directions of the link come back.
    Repair(u32, u32),
    /// Check a `store-path` watch ([`Sim::watch_path`]).
    CheckPath(Box<crate::watch::PathWatch>),
    /// Done (a finished send plan).
    Done,
}

impl Action {
    /// Give a send plan its own generator.
    pub(crate) fn seeded(self, seed: u64) -> Action {
        match self {
            Action::Send(mut p) => {
                p.rng = SplitMix64::new(seed);
                Action::Send(p)
            }
            other => other,
        }
    }

    /// The node whose partition runs it: the sender, the node that crashes …; for a link,
    /// its first end (every partition applies a link's change, this one traces it).
    pub(crate) fn node(&self) -> Option<u32> {
        match self {
            Action::Send(p) => Some(p.node),
            Action::Register { node, .. } => Some(*node),
            Action::Crash(i) | Action::Restart(i) | Action::Partition(i, _) => Some(*i),
            Action::Repair(i, _) => Some(*i),
            // Reads every node on its routes: the scheduler's (runs are sequential then).
            Action::CheckPath(_) | Action::Done => None,
        }
    }

    /// Whether every partition of a parallel run applies it (link state is read by both
    /// ends).
    pub(crate) fn everywhere(&self) -> bool {
        matches!(self, Action::Partition(..) | Action::Repair(..))
    }
}

impl<E: Executor> Sim<E> {
    /// Whether this simulator counts event `ev` in `events`: a link action, which every
    /// partition of a parallel run applies, only in the partition of its first end.
    pub(crate) fn counts(&self, ev: Event) -> bool {
        match ev {
            Event::Action { action } => self
                .actions
                .get(action as usize)
                .and_then(Action::node)
                .is_none_or(|n| self.part.owns(n)),
            _ => true,
        }
    }

    pub(crate) fn act(&mut self, idx: u32) {
        let Some(slot) = self.actions.get_mut(idx as usize) else {
            return;
        };
        match std::mem::replace(slot, Action::Done) {
            Action::Send(plan) => self.send(idx, plan),
            Action::Register { node, app } => self.register_app(node, app),
            Action::Crash(i) => self.crash(i),
            Action::Restart(i) => self.restart(i),
            Action::Partition(a, b) => self.set_link_up(a, b, false),
            Action::Repair(a, b) => self.set_link_up(a, b, true),
            Action::CheckPath(w) => self.check_path(&w),
            Action::Done => {}
        }
    }

    fn send(&mut self, idx: u32, mut plan: Box<SendPlan>) {
        let i = plan.node;
        let n = self.topo.len();
        let dst = match &plan.dst {
            Dst::Address(a) => *a,
            Dst::RandomNode => self.topo.address(random_other(&mut plan.rng, i, n)),
        };
        let (mut header, mut payload) = (Vec::new(), Vec::new());
        plan.header.render(plan.sent, &mut header);
        plan.payload.render(plan.sent, &mut payload);
        let epoch = self.slot(i).map(|n| n.epoch);
        let hand_over = plan.handover == CodeHandover::Auto && plan.handed != epoch;
        let inj = Injection {
            ty: plan.ty,
            code: plan.code.as_deref().filter(|_| hand_over),
            dst,
            resource: plan.resource,
            header: &header,
            payload: &payload,
            trace: None,
        };
        if self.inject(i, plan.app, inj).is_ok() && hand_over {
            plan.handed = epoch;
        }
        plan.sent += 1;
        let next = self.now.saturating_add(ns(plan.interval));
        let more = plan.sent < plan.count && plan.until.is_none_or(|u| next < ns(u));
        if more {
            self.actions[idx as usize] = Action::Send(plan);
            let tie = self.next_tie(i);
            self.queue.push(next, tie, Event::Action { action: idx });
        }
    }

    /// Crash node `i` now.
    pub fn crash(&mut self, i: u32) {
        if !self.is_up(i) {
            return;
        }
        let fresh = self.make_node(i);
        let keep = self.config.keep_code_on_restart;
        let Some(sn) = self.slot_mut(i) else { return };
        sn.up = false;
        sn.epoch = sn.epoch.wrapping_add(1);
        sn.timer_at = u64::MAX;
        sn.node = fresh;
        sn.installed.clear();
        if !keep {
            sn.persisted.clear();
        }
        self.trace.record(self.now, &Record::Crash { node: i });
    }

    /// Restart node `i` now (crashing it first if it is running).
    pub fn restart(&mut self, i: u32) {
        if i >= self.topo.len() {
            return;
        }
        self.crash(i);
        let mut node = self.make_node(i);
        let Some(sn) = self.slot(i) else { return };
        let mut installed = crate::exec::TypeSet::default();
        for t in sn.persisted.iter() {
            if let Some(e) = self.shared.entry(t)
                && let Some(code) = &e.code
                && matches!(e.compiled, Some(Ok(())))
            {
                node.add_code(e.ty, code.clone());
                installed.insert(t);
            }
        }
        let kept = installed.iter().count();
        for (node_i, app) in self.apps.keys() {
            if *node_i == i {
                node.register_app(*app);
            }
        }
        let Some(sn) = self.slot_mut(i) else { return };
        sn.node = node;
        sn.installed = installed;
        sn.up = true;
        self.trace
            .record(self.now, &Record::Restart { node: i, kept });
        self.flush(i, self.now);
    }

    /// Check `w` now: walk the route from each of its nodes to its destination, node by
    /// node as `route_for_node` would, and stop the run at the first node that does not keep
    /// the key (or is down, or has no route on).
    fn check_path(&mut self, w: &crate::watch::PathWatch) {
        if self.violation.is_some() {
            return;
        }
        let now = Duration::from_nanos(self.now);
        let toward = self.topo.address(w.to);
        let missing = |at: u32, f: u32| -> Option<String> {
            let Some(sn) = self.slot(at) else {
                return Some(format!("node {at} does not exist"));
            };
            let on = || format!("on the route from node {f} to node {}", w.to);
            if !sn.up {
                return Some(format!("node {at}, {}, is down", on()));
            }
            let holds = sn
                .node
                .store()
                .live_until(&w.ty.0, &w.key)
                .is_some_and(|t| t > now);
            (!holds).then(|| {
                let (on, key) = (on(), w.key_hex());
                format!("node {at}, {on}, keeps no {} key {key}", w.capsule)
            })
        };
        // Nodes whose own route on was already walked to the end and held: a later route
        // that reaches one need not go on (routes are fixed at this instant), so the check
        // walks each node once, not once per route through it (`from = "all"`).
        let mut verified = vec![false; self.topo.len() as usize];
        let mut walked = Vec::new();
        for &f in &w.from {
            let mut at = f;
            // A route visits each node at most once: more hops than nodes is a loop.
            let mut hops = 0;
            walked.clear();
            let failed = loop {
                if verified.get(at as usize).copied().unwrap_or(false) {
                    break None;
                }
                if let Some(detail) = missing(at, f) {
                    break Some((at, detail));
                }
                walked.push(at);
                if at == w.to {
                    break None;
                }
                hops += 1;
                let next = self
                    .slot(at)
                    .and_then(|sn| sn.node.next_hop(&toward))
                    .and_then(|a| self.topo.node_of(&a));
                match next {
                    Some(n) if hops <= self.topo.len() => at = n,
                    Some(_) => break Some((at, format!("the route from node {f} loops"))),
                    None => {
                        let d = format!("node {at} has no route on toward node {}", w.to);
                        break Some((at, d));
                    }
                }
            };
            if let Some((node, detail)) = failed {
                let v = Violation::new(w.describe(), self.now, node, detail, &self.trace);
                self.violation = Some(v);
                return;
            }
            for &n in &walked {
                if let Some(v) = verified.get_mut(n as usize) {
                    *v = true;
                }
            }
        }
    }

    /// Take the link between `a` and `b` down (`up = false`) or bring it back.
    pub fn set_link_up(&mut self, a: u32, b: u32, up: bool) {
        for (x, y) in [(a, b), (b, a)] {
            if let Some(l) = self.topo.edge_index(x, y) {
                self.links[l as usize].up = up;
            }
        }
        if !self.part.owns(a) {
            return; // traced by the partition of `a`
        }
        let rec = if up {
            Record::Repair { a, b }
        } else {
            Record::Partition { a, b }
        };
        self.trace.record(self.now, &rec);
    }

    /// Whether the link between `a` and `b` is up (`None`: no such link).
    pub fn link_up(&self, a: u32, b: u32) -> Option<bool> {
        let l = self.topo.edge_index(a, b)?;
        Some(self.links[l as usize].up)
    }

    /// Types node `i` has installed (compiled and ready).
    pub fn installed_types(&self, i: u32) -> Vec<ants_wire::CapsuleType> {
        let Some(sn) = self.slot(i) else {
            return Vec::new();
        };
        sn.installed
            .iter()
            .filter_map(|t| self.shared.entry(t).map(|e| e.ty))
            .collect()
    }

    /// Run a one-off closure on node `i`'s core with its executor view (for tests: feed a
    /// hand-made datagram, inspect state). Outputs are flushed afterwards.
    pub fn with_node<R>(
        &mut self,
        i: u32,
        f: impl FnOnce(&mut ants_core::Node<u32>, &mut dyn Executor, Duration) -> R,
    ) -> Option<R> {
        let now = Duration::from_nanos(self.now);
        let part = self.part;
        let sn = part.node_mut(&mut self.nodes, i).filter(|n| n.up)?;
        let mut view = NodeView {
            shared: &mut self.shared,
            node: i,
            installed: &sn.installed,
        };
        let r = f(&mut sn.node, &mut view, now);
        self.flush(i, self.now);
        Some(r)
    }
}
