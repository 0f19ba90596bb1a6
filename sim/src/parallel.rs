//! Parallel runs: one simulation on several threads, with the same result — event for
//! event, trace hash for trace hash — as the sequential run of the same scenario and seed.
//!
//! **Partitions.** Node `i` belongs to partition `i % workers` (round robin: every level of
//! a tree and every stretch of a line is spread evenly, so the load is). Each partition is a
//! [`Sim`] of its own on its own thread, with its nodes, its event queue, its executor (its
//! own wasm instances; modules compiled once per partition), its copy of the link table and
//! of the actions. Topology and routing are shared read-only.
//!
//! **Conservative synchronisation.** A datagram takes at least the smallest link latency `L`
//! (the lookahead) to reach another node; nothing else crosses nodes. So if the earliest
//! pending event anywhere is at `T`, no partition can receive anything before `T + L` that
//! it does not hold already, and each may process its own events in `[T, T + L)` alone. The
//! partitions do so, post the datagrams for other partitions' nodes (`bytes` buffers, one
//! per window and destination, handed over whole; the receiver copies each datagram into
//! its own buffer pool), meet at a barrier, take their mail into their queues, and agree on
//! the next `T`. A scenario whose links include one of zero latency has no lookahead and
//! runs sequentially.
//!
//! **Same order.** Events are ordered by `(time, tie)`, where the tie-breaker names the node
//! that caused the event and how many it had caused before (`event::tie`). A partition
//! computes those without seeing the others, so each processes its events in exactly the
//! sequential order, restricted to its nodes: by induction, every node sees the same inputs
//! at the same times as in the sequential run. Link partitions and repairs change state
//! that both ends read; every partition applies them, at the same key. Trace lines are kept
//! per partition under their event's key and merged by key after each window into the one
//! trace (hash and file) — the same lines in the same order.
//!
//! **Limits.** Watchpoints and the delivery log need the global order as it happens and run
//! sequentially ([`Sim::parallel_obstacle`] says so). Shared instances (`[nodes] instances
//! = "shared"`) are one per type *per partition*: for capsules that keep no state between
//! runs (what the setting is for) that changes nothing. After a parallel run the simulator
//! holds the first partition's executor: the other nodes' wasm instances are gone, as after
//! an instance eviction, so a sequential run that continues from there can differ.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use ants_core::Executor;
use bytes::{Bytes, BytesMut};

use crate::event::{Event, EventQueue};
use crate::exec::{SharedExecutor, TypeSet};
use crate::sim::{NetStats, Part, Sim, ns};
use crate::trace::{Lines, Trace};

/// Datagrams one partition sends to another's nodes during a window, back to back.
#[derive(Debug, Default)]
struct Mail {
    data: BytesMut,
    /// Per datagram: arrival time, tie-breaker, directed link, length.
    items: Vec<(u64, u64, u32, u32)>,
}

/// One window's datagrams for one partition, handed over between threads.
#[derive(Debug)]
pub(crate) struct Parcel {
    data: Bytes,
    items: Vec<(u64, u64, u32, u32)>,
}

/// A partition's datagrams for the others' nodes (empty in a sequential run).
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    mail: Vec<Mail>,
}

impl Outbox {
    /// Post a datagram for partition `to`, arriving over `link` at `at`.
    pub(crate) fn post(&mut self, to: u32, at: u64, tie: u64, link: u32, bytes: &[u8]) {
        let to = to as usize;
        if self.mail.len() <= to {
            self.mail.resize_with(to + 1, Mail::default);
        }
        let m = &mut self.mail[to];
        m.data.extend_from_slice(bytes);
        m.items.push((at, tie, link, bytes.len() as u32));
    }

    /// The parcels to hand over, by destination. The buffers' memory comes back for reuse
    /// once the receiver has dropped them (`BytesMut::reserve` reclaims it).
    fn parcels(&mut self) -> impl Iterator<Item = (usize, Parcel)> + '_ {
        self.mail
            .iter_mut()
            .enumerate()
            .filter(|(_, m)| !m.items.is_empty())
            .map(|(to, m)| {
                let parcel = Parcel {
                    data: m.data.split().freeze(),
                    items: std::mem::take(&mut m.items),
                };
                (to, parcel)
            })
    }
}

/// Why a simulation cannot run on several threads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Obstacle {
    /// A link class has zero latency: no lookahead.
    #[error("a link has zero latency, so no thread can run ahead of another")]
    NoLookahead,
    /// Watchpoints are checked in the global order as it happens.
    #[error("watchpoints are checked in the global event order, sequentially")]
    Watches,
    /// The delivery log keeps deliveries in the global order as they happen.
    #[error("the delivery log keeps deliveries in the global order, sequentially")]
    DeliveryLog,
    /// Fewer than two workers, or more than nodes.
    #[error("{workers} workers for {nodes} nodes: need 2 to {nodes}")]
    Workers {
        /// Workers asked for.
        workers: u32,
        /// Nodes in the topology.
        nodes: u32,
    },
}

/// Where the threads meet twice per window. With a thread per CPU (or fewer) they spin:
/// waking a sleeping thread costs tens of microseconds on a VM, against windows of about a
/// millisecond. With more threads than CPUs a spinning thread would hold a CPU that the one
/// it waits for needs, so they sleep. A thread that panics [`poison`](Self::poison)s the
/// meeting (see [`PoisonOnPanic`]): the others, which could never meet it again, panic too
/// instead of waiting for ever, and the run fails rather than hangs.
struct Meeting {
    threads: usize,
    arrived: AtomicUsize,
    round: AtomicUsize,
    poisoned: AtomicBool,
    /// `Some` when the threads sleep: the last to arrive wakes them.
    sleep: Option<(Mutex<()>, Condvar)>,
}

impl Meeting {
    fn new(threads: usize) -> Meeting {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Meeting {
            threads,
            arrived: AtomicUsize::new(0),
            round: AtomicUsize::new(0),
            poisoned: AtomicBool::new(false),
            sleep: (threads > cpus).then(|| (Mutex::new(()), Condvar::new())),
        }
    }

    /// Wait until every thread has arrived. Everything a thread did before it arrived
    /// happens before what any thread does after it leaves.
    ///
    /// # Panics
    ///
    /// When another thread panicked (it will never arrive).
    fn wait(&self) {
        let this = self.round.load(Ordering::Acquire);
        // AcqRel: the last to arrive acquires every earlier arrival's writes, and publishes
        // them all with the round below.
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.threads {
            self.arrived.store(0, Ordering::Relaxed);
            match &self.sleep {
                Some((m, cv)) => {
                    let _g = lock(m);
                    self.round.fetch_add(1, Ordering::Release);
                    cv.notify_all();
                }
                None => {
                    self.round.fetch_add(1, Ordering::Release);
                }
            }
            return;
        }
        let waiting =
            || self.round.load(Ordering::Acquire) == this && !self.poisoned.load(Ordering::Acquire);
        match &self.sleep {
            Some((m, cv)) => {
                let mut g = lock(m);
                while waiting() {
                    g = cv
                        .wait(g)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            }
            None => {
                let mut spins = 0u32;
                while waiting() {
                    if spins < 1 << 16 {
                        std::hint::spin_loop();
                        spins += 1;
                    } else {
                        // Preempted partners (a noisy machine): let them run.
                        std::thread::yield_now();
                    }
                }
            }
        }
        assert!(
            !self.poisoned.load(Ordering::Acquire),
            "another simulation thread failed"
        );
    }

    /// A thread will not arrive again: wake the others, to fail.
    fn poison(&self) {
        self.poisoned.store(true, Ordering::Release);
        if let Some((m, cv)) = &self.sleep {
            let _g = lock(m);
            cv.notify_all();
        }
    }
}

/// Poisons the meeting if its thread unwinds from a panic.
struct PoisonOnPanic<'a>(&'a Meeting);

impl Drop for PoisonOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.poison();
        }
    }
}

/// What the threads of a parallel run share.
struct Shared {
    barrier: Meeting,
    /// Per partition: its earliest pending event after taking its mail (`u64::MAX`: none).
    next: Vec<AtomicU64>,
    inbox: Vec<Mutex<Vec<Parcel>>>,
    /// Per partition: the trace lines of its last window.
    lines: Vec<Mutex<Lines>>,
    /// Per partition: capsule hops so far (for progress).
    hops: Vec<AtomicU64>,
}

impl<E: Executor> Sim<E> {
    /// The lookahead of a parallel run: the smallest latency of any link class, ns.
    pub fn lookahead(&self) -> u64 {
        self.classes.iter().map(|c| c.latency_ns).min().unwrap_or(0)
    }

    /// Why this simulation cannot run on `workers` threads, if it cannot.
    pub fn parallel_obstacle(&self, workers: u32) -> Option<Obstacle> {
        let nodes = self.topo.len();
        if workers < 2 || workers > nodes {
            Some(Obstacle::Workers { workers, nodes })
        } else if self.lookahead() == 0 {
            Some(Obstacle::NoLookahead)
        } else if !self.watches.is_empty() || self.path_watched {
            Some(Obstacle::Watches)
        } else if self.config.delivery_log > 0 {
            Some(Obstacle::DeliveryLog)
        } else {
            None
        }
    }

    /// Take a parcel of datagrams from another partition into the queue.
    fn receive(&mut self, parcel: Parcel) {
        let mut at_byte = 0;
        for (at, tie, link, len) in parcel.items {
            let end = at_byte + len as usize;
            let buf = self
                .pool
                .put(parcel.data.get(at_byte..end).unwrap_or_default());
            at_byte = end;
            self.queue.push(at, tie, Event::Arrive { link, buf });
        }
    }
}

impl<E: Executor + Send> Sim<E> {
    /// [`Sim::run_until`] on `executors.len() + 1` threads: this simulator's executor and
    /// `executors` (fresh ones, configured like it), one per partition of the nodes. The
    /// result is that of [`Sim::run_until`] (see the module documentation for what differs
    /// afterwards). `progress` is called after every window with the virtual time reached
    /// and the capsule hops so far.
    pub fn run_parallel(
        &mut self,
        end: Duration,
        executors: Vec<E>,
        mut progress: impl FnMut(Duration, u64),
    ) -> Result<(), Obstacle> {
        let workers = executors.len() as u32 + 1;
        if let Some(o) = self.parallel_obstacle(workers) {
            return Err(o);
        }
        let end = ns(end);
        let lookahead = self.lookahead();
        let buffered = if self.trace.is_on() {
            Trace::buffered()
        } else {
            Trace::off()
        };
        let mut main_trace = std::mem::replace(&mut self.trace, buffered);
        let mut others = self.split(executors);
        let shared = Shared {
            barrier: Meeting::new(workers as usize),
            next: (0..workers).map(|_| AtomicU64::new(u64::MAX)).collect(),
            inbox: (0..workers).map(|_| Mutex::new(Vec::new())).collect(),
            lines: (0..workers).map(|_| Mutex::new(Lines::default())).collect(),
            hops: (0..workers).map(|_| AtomicU64::new(0)).collect(),
        };
        std::thread::scope(|s| {
            // A failed spawn (or a panic here) must not leave the spawned threads waiting.
            let _poison = PoisonOnPanic(&shared.barrier);
            for (k, part) in others.iter_mut().enumerate() {
                let shared = &shared;
                std::thread::Builder::new()
                    .name(format!("sim-part-{}", k + 1))
                    .spawn_scoped(s, move || part.work(shared, end, lookahead, None))
                    .expect("spawning a simulation thread");
            }
            let mut merge = |limit: u64| {
                merge_lines(&shared.lines, &mut main_trace);
                let hops = shared.hops.iter().map(|h| h.load(Ordering::Relaxed)).sum();
                progress(Duration::from_nanos(limit), hops);
            };
            self.work(&shared, end, lookahead, Some(&mut merge));
        });
        self.trace = main_trace;
        self.join(others);
        Ok(())
    }

    /// One partition's loop: take mail, agree on the window, run it, post mail and trace.
    /// The first partition also merges the trace (`merge`, after each window).
    fn work(
        &mut self,
        shared: &Shared,
        end: u64,
        lookahead: u64,
        mut merge: Option<&mut dyn FnMut(u64)>,
    ) {
        let p = self.part.index as usize;
        let _poison = PoisonOnPanic(&shared.barrier);
        loop {
            let mail = std::mem::take(&mut *lock(&shared.inbox[p]));
            for parcel in mail {
                self.receive(parcel);
            }
            let next = self.queue.peek_time().unwrap_or(u64::MAX);
            shared.next[p].store(next, Ordering::Relaxed);
            shared.barrier.wait();
            // Every thread reads the same values here: no one writes `next` again before
            // all have passed the second barrier below.
            let t = shared
                .next
                .iter()
                .map(|n| n.load(Ordering::Relaxed))
                .min()
                .unwrap_or(u64::MAX);
            if t > end {
                break;
            }
            let limit = t.saturating_add(lookahead - 1).min(end);
            while self.queue.peek_time().is_some_and(|at| at <= limit) {
                self.step();
            }
            for (to, parcel) in self.outbox.parcels() {
                lock(&shared.inbox[to]).push(parcel);
            }
            if self.trace.is_on() {
                self.trace.swap_lines(&mut lock(&shared.lines[p]));
            }
            shared.hops[p].store(self.stats.capsule_hops, Ordering::Relaxed);
            shared.barrier.wait();
            if let Some(merge) = merge.as_mut() {
                merge(limit);
            }
        }
        self.now = self.now.max(end);
    }

    /// Make this simulator partition 0 of `executors.len() + 1` and return the others.
    fn split(&mut self, executors: Vec<E>) -> Vec<Sim<E>> {
        let count = executors.len() as u32 + 1;
        let per_node = self.config.instance_per_node;
        let tracing = self.trace.is_on();
        let mut others: Vec<Sim<E>> = executors
            .into_iter()
            .enumerate()
            .map(|(k, exec)| {
                let part = Part {
                    index: k as u32 + 1,
                    count,
                };
                Sim {
                    now: self.now,
                    queue: EventQueue::new(),
                    topo: self.topo.clone(),
                    routing: self.routing.clone(),
                    classes: self.classes.clone(),
                    links: self.links.clone(),
                    nodes: Vec::with_capacity(self.nodes.len() / count as usize + 1),
                    shared: SharedExecutor::new(exec, per_node),
                    pool: Default::default(),
                    // Only the actions this partition can run (a scenario may plan one per node
                    // of a million): the rest stand as `Done`, so the indices hold.
                    actions: self
                        .actions
                        .iter()
                        .map(|a| {
                            if a.everywhere() || a.node().is_some_and(|n| part.owns(n)) {
                                a.clone()
                            } else {
                                crate::actions::Action::Done
                            }
                        })
                        .collect(),
                    apps: Default::default(),
                    log: Default::default(),
                    trace: if tracing {
                        Trace::buffered()
                    } else {
                        Trace::off()
                    },
                    stats: NetStats::default(),
                    link_capsules: vec![0; self.link_capsules.len()],
                    config: self.config.clone(),
                    watches: Vec::new(),
                    violation: None,
                    path_watched: false,
                    part,
                    scheduled: self.scheduled,
                    outbox: Outbox::default(),
                }
            })
            .collect();
        // Modules this one compiled already: the others start with them too.
        for o in &mut others {
            copy_types(&self.shared, &mut o.shared);
        }
        let part = Part { index: 0, count };
        let nodes = std::mem::take(&mut self.nodes);
        self.nodes.reserve(nodes.len() / count as usize + 1);
        for (i, n) in nodes.into_iter().enumerate() {
            match part.owner(i as u32) {
                0 => self.nodes.push(n),
                // The other partition's type table is a copy of this one's, in the same
                // order (`copy_types` into a fresh table): the node's type indices hold.
                k => others[k as usize - 1].nodes.push(n),
            }
        }
        self.part = part;
        for ((node, app), stats) in std::mem::take(&mut self.apps) {
            let apps = match part.owner(node) {
                0 => &mut self.apps,
                k => &mut others[k as usize - 1].apps,
            };
            apps.insert((node, app), stats);
        }
        let pending: Vec<_> = self.queue.drain().collect();
        for (at, tie, ev) in pending {
            let owner = match ev {
                Event::Arrive { link, .. } => self.links.get(link as usize).map(|l| l.to),
                Event::Timer { node, .. } | Event::Compiled { node, .. } => Some(node),
                Event::Action { action } => {
                    let a = self.actions.get(action as usize);
                    if a.is_some_and(crate::actions::Action::everywhere) {
                        for o in &mut others {
                            o.queue.push(at, tie, ev);
                        }
                        self.queue.push(at, tie, ev);
                        continue;
                    }
                    a.and_then(crate::actions::Action::node)
                }
            };
            match owner.map(|n| part.owner(n)) {
                Some(k) if k > 0 => {
                    let o = &mut others[k as usize - 1];
                    let ev = match ev {
                        Event::Arrive { link, buf } => {
                            let moved = o.pool.put(self.pool.get(buf));
                            self.pool.release(buf);
                            Event::Arrive { link, buf: moved }
                        }
                        ev => ev,
                    };
                    o.queue.push(at, tie, ev);
                }
                _ => self.queue.push(at, tie, ev),
            }
        }
        others
    }

    /// Take the other partitions back: one simulator of every node again.
    fn join(&mut self, others: Vec<Sim<E>>) {
        let count = self.part.count as usize;
        let mut parts: Vec<std::vec::IntoIter<_>> = Vec::with_capacity(count);
        parts.push(std::mem::take(&mut self.nodes).into_iter());
        let mut rest = Vec::with_capacity(others.len());
        for mut o in others {
            for n in &mut o.nodes {
                n.installed = remap(&n.installed, &o.shared, &mut self.shared);
                n.persisted = remap(&n.persisted, &o.shared, &mut self.shared);
            }
            copy_types(&o.shared, &mut self.shared);
            parts.push(std::mem::take(&mut o.nodes).into_iter());
            rest.push(o);
        }
        let total = self.topo.len() as usize;
        self.nodes.reserve(total);
        for i in 0..total {
            if let Some(n) = parts[i % count].next() {
                self.nodes.push(n);
            }
        }
        self.part = Part::ALL;
        self.shared.compilations = self
            .shared
            .entries()
            .iter()
            .filter(|e| e.compiled.is_some())
            .count() as u64;
        for mut o in rest {
            // A link's generator and queue advance at its sender.
            let k = o.part;
            for (mine, theirs) in self.links.iter_mut().zip(&o.links) {
                if k.owns(theirs.from) {
                    *mine = theirs.clone();
                }
            }
            self.now = self.now.max(o.now);
            let s = &o.stats;
            self.stats.events += s.events;
            self.stats.capsule_hops += s.capsule_hops;
            self.stats.capsules_sent += s.capsules_sent;
            self.stats.code_messages_sent += s.code_messages_sent;
            for (a, b) in self.stats.link_drops.iter_mut().zip(s.link_drops) {
                *a += b;
            }
            for (a, b) in self.link_capsules.iter_mut().zip(&o.link_capsules) {
                *a += b;
            }
            self.apps.append(&mut o.apps);
            let pending: Vec<_> = o.queue.drain().collect();
            for (at, tie, ev) in pending {
                let ev = match ev {
                    // Every partition holds a copy of a pending link action: keep one.
                    Event::Action { action }
                        if o.actions
                            .get(action as usize)
                            .is_some_and(crate::actions::Action::everywhere) =>
                    {
                        continue;
                    }
                    Event::Action { action } => {
                        // The other partition advanced this action (a send plan's count).
                        if let (Some(a), Some(slot)) = (
                            o.actions.get_mut(action as usize),
                            self.actions.get_mut(action as usize),
                        ) {
                            *slot = std::mem::replace(a, crate::actions::Action::Done);
                        }
                        ev
                    }
                    Event::Arrive { link, buf } => Event::Arrive {
                        link,
                        buf: self.pool.put(o.pool.get(buf)),
                    },
                    ev => ev,
                };
                self.queue.push(at, tie, ev);
            }
        }
    }
}

/// Every compiled module of `from` into `to`'s table (so restarts find them).
fn copy_types<E: Executor>(from: &SharedExecutor<E>, to: &mut SharedExecutor<E>) {
    for e in from.entries() {
        to.adopt(e);
    }
}

/// `set`, of `from`'s type indices, in `to`'s.
fn remap<E: Executor>(
    set: &TypeSet,
    from: &SharedExecutor<E>,
    to: &mut SharedExecutor<E>,
) -> TypeSet {
    let mut out = TypeSet::default();
    for i in set.iter() {
        if let Some(e) = from.entry(i) {
            out.insert(to.adopt(e));
        }
    }
    out
}

/// Merge the partitions' trace lines of one window, by event key, into `trace`.
fn merge_lines(lines: &[Mutex<Lines>], trace: &mut Trace) {
    if !trace.is_on() {
        return;
    }
    // The partitions are waiting at the next window's barrier, which this thread reaches
    // only after the merge: holding every buffer's lock meanwhile costs them nothing.
    let mut parts: Vec<_> = lines.iter().map(lock).collect();
    let mut at = vec![0usize; parts.len()];
    loop {
        // The partition whose next line has the smallest key (keys are unique across
        // partitions: a key names its event's node). A scan: P is the thread count, a
        // handful, where a heap costs more than it saves (measured at P = 2).
        let mut best: Option<(usize, (u64, u64))> = None;
        for (p, l) in parts.iter().enumerate() {
            if let Some(&(t, tie, _)) = l.index.get(at[p])
                && best.is_none_or(|(_, k)| (t, tie) < k)
            {
                best = Some((p, (t, tie)));
            }
        }
        let Some((p, key)) = best else { break };
        // That event's lines, all of them (they are consecutive).
        let l = &parts[p];
        while let Some(&(t, tie, stop)) = l.index.get(at[p])
            && (t, tie) == key
        {
            let start = if at[p] == 0 { 0 } else { l.index[at[p] - 1].2 };
            trace.append_line(&l.data[start..stop]);
            at[p] += 1;
        }
    }
    // Emptied, capacity kept: each partition swaps its next window's lines for its buffer.
    for l in &mut parts {
        l.data.clear();
        l.index.clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread that panics between meetings makes the others fail at the next one, spinning
    /// or sleeping, instead of waiting for it for ever.
    #[test]
    fn a_panicking_thread_fails_the_meeting_instead_of_hanging_it() {
        for sleep in [false, true] {
            let mut m = Meeting::new(2);
            if sleep {
                m.sleep = Some((Mutex::new(()), Condvar::new()));
            } else {
                m.sleep = None;
            }
            let outcome = std::thread::scope(|s| {
                let waiter = s.spawn(|| {
                    m.wait();
                    m.wait();
                });
                let failing = s.spawn(|| {
                    let _poison = PoisonOnPanic(&m);
                    m.wait();
                    panic!("a partition's bug");
                });
                (waiter.join().is_err(), failing.join().is_err())
            });
            assert_eq!(outcome, (true, true), "sleep = {sleep}");
        }
    }
}
