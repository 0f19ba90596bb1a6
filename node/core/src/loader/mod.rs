//! Demand code loading: [`CodeLoader`], the sans-IO state machine that fetches, verifies and
//! serves capsule code for one node (DESIGN.md §6), and holds the capsules waiting for it.
//!
//! - [`config`]: [`LoaderConfig`] (every bound and timing), [`Admit`], [`LoaderEvent`],
//!   [`CodeSource`], [`LoaderCounters`], [`Occupancy`].
//! - `transfer`: reassembly of one module from one peer and the requests for what is missing.
//! - `serve`: answering peers' requests (authorization window, per-peer token bucket).
//! - `ttl`: bounded expiring sets (negative cache, rejected types, distrust).
//! - `outbox`: bounded transmit and event queues.
//!
//! A *load* is everything the node does for a type it cannot run yet: fetch the code (from a
//! peer), then compile it (or compile code it already has, from its cache or disk), then run
//! the capsules held meanwhile. Every load holds one of `max_concurrent_fetches` slots, and a
//! peer can start at most `max_fetches_per_peer` of them, so a stranger cannot take the slots
//! of everyone else; held capsules are bounded per type, in total and in bytes, whatever the
//! stage.
//!
//! Fetching, in short: a capsule of an unknown type is [held](CodeLoader::hold) and a
//! `code-request` for the first `request_window` chunks goes to the peer it came from. Chunks
//! are accepted only from that peer and only for chunks it was asked for; when a window is
//! complete the next one is asked at once; `request_timeout` after a request whose window is
//! not complete, only its missing chunks are re-requested. A round that brought less than
//! half of its window is a round without progress: the timeout doubles, and after
//! `max_attempts` such rounds the peer counts as stalled (a peer dripping one chunk per round
//! is as stalled as a silent one; a lossy one is not).
//! After `max_attempts` such rounds (if another candidate is left; the last candidate is
//! retried), or a `not-found` / `too-large` nack, the next *candidate* (each distinct peer a
//! held capsule came from, in arrival order) is asked. A complete module is accepted only if
//! its SHA-256 is the type. A mismatch is retried once from the same peer (a single spoofed
//! chunk must not get an honest neighbour distrusted), and a peer whose second complete
//! transfer also mismatches is distrusted for that type. `load_timeout` after the first held
//! capsule the load fails, however chunks trickle in; peers that stalled or refused are
//! negative-cached *for that type* (so one bad peer cannot get a type refused for everyone).
//!
//! Compiling: once verified (or when the code is local), the load waits for the node to
//! report the compile ([`CodeLoader::compiled`], then [`CodeLoader::take_held`] or
//! [`CodeLoader::compile_failed`]); after `compile_timeout` the held capsules are dropped and
//! the slot freed. Compile time is charged to the peer whose capsule started the load, and a
//! peer over its compile budget cannot start another load.
//!
//! Outputs go through [`CodeLoader::poll_transmit`], [`CodeLoader::poll_event`] and
//! [`CodeLoader::poll_timeout`]; time comes in as `now`. Maps whose order reaches an output
//! are `BTreeMap`s, so a run is deterministic.

pub mod config;
mod outbox;
mod serve;
mod transfer;
mod ttl;

#[cfg(test)]
mod harness;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;
use std::time::Duration;

use ants_wire::{CapsuleType, CodeChunk, CodeNack, NackReason};
use sha2::{Digest, Sha256};

use crate::budget::PeerBudgets;
pub use config::{
    Admit, CodePolicy, CodeSource, FailReason, LoaderConfig, LoaderCounters, LoaderEvent,
    Occupancy, RefuseReason,
};
use outbox::{Events, Outbox};
use serve::Server;
use transfer::{Accepted, Transfer};
use ttl::TtlSet;

/// A capsule held for its code: the peer it came from (`None` for a local app) and its bytes.
pub type Held<P> = (Option<P>, Vec<u8>);

/// Where a load is.
#[derive(Debug)]
enum Stage<P> {
    /// Asking a peer for the code.
    Fetching(Transfer<P>),
    /// The code is here (verified, or local); the node is compiling it since this time.
    Compiling(Duration),
}

/// Everything known about one type being loaded.
#[derive(Debug)]
struct Load<P> {
    started: Duration,
    /// The peer whose capsule started the load (charged its compile time); `None` = an app.
    initiator: Option<P>,
    held: VecDeque<Held<P>>,
    held_bytes: usize,
    /// Distinct peers held capsules came from, in arrival order.
    candidates: Vec<P>,
    next_candidate: usize,
    stage: Stage<P>,
    saw_mismatch: bool,
    /// Complete transfers from the peer being asked that failed the hash.
    mismatches_from_current: u8,
}

impl<P: PartialEq> Load<P> {
    fn transfer(&self) -> Option<&Transfer<P>> {
        match &self.stage {
            Stage::Fetching(t) => Some(t),
            Stage::Compiling(_) => None,
        }
    }

    fn transfer_mut(&mut self) -> Option<&mut Transfer<P>> {
        match &mut self.stage {
            Stage::Fetching(t) => Some(t),
            Stage::Compiling(_) => None,
        }
    }

    fn is_fetching(&self) -> bool {
        matches!(self.stage, Stage::Fetching(_))
    }

    /// The next deadline: the load timeout while fetching, the retry, the compile timeout.
    fn deadline(&self, config: &LoaderConfig) -> Duration {
        match &self.stage {
            Stage::Fetching(t) => t
                .deadline
                .min(self.started.saturating_add(config.load_timeout)),
            Stage::Compiling(since) => since.saturating_add(config.compile_timeout),
        }
    }
}

/// The demand-loading state machine of one node; `P` identifies a peer.
#[derive(Debug)]
pub struct CodeLoader<P> {
    config: LoaderConfig,
    loads: BTreeMap<CapsuleType, Load<P>>,
    held_total: usize,
    held_bytes: usize,
    /// (peer, type) pairs whose last fetch from that peer failed (stalled, refused, timed out).
    negative: TtlSet<(P, CapsuleType)>,
    /// Types whose verified code does not compile or validate: refused whoever sends them.
    rejected: TtlSet<CapsuleType>,
    distrust: TtlSet<(P, CapsuleType)>,
    /// Compile time (ns) each peer's loads may use.
    budgets: PeerBudgets<P>,
    server: Server<P>,
    outbox: Outbox<P>,
    events: Events,
    counters: LoaderCounters,
}

impl<P: Copy + Eq + Hash + Ord + Debug> CodeLoader<P> {
    /// A loader with no state.
    pub fn new(config: LoaderConfig) -> Self {
        CodeLoader {
            loads: BTreeMap::new(),
            held_total: 0,
            held_bytes: 0,
            negative: TtlSet::new(config.max_negative_entries),
            rejected: TtlSet::new(config.max_negative_entries),
            distrust: TtlSet::new(config.max_distrust_entries),
            budgets: PeerBudgets::new(
                config.compile_nanos_per_sec,
                config.compile_burst_nanos,
                config.max_budget_peers,
            ),
            server: Server::new(&config),
            outbox: Outbox::new(config.max_transmit_queue),
            events: Events::new(config.max_concurrent_fetches.saturating_mul(4).max(16)),
            counters: LoaderCounters::default(),
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// Change which types the node accepts (loads in progress of a type no longer allowed
    /// finish; new capsules of it are refused).
    pub fn set_policy(&mut self, policy: crate::loader::CodePolicy) {
        self.config.policy = policy;
    }

    /// A capsule whose type we lack arrived from `from`: hold its bytes (owned) in arrival
    /// order and make sure a load is running; the first request goes to `from`.
    ///
    /// Checked in order: policy and rejected types, then (only when no load runs for the
    /// type) the negative cache and distrust of `from`, the global and per-peer load slots and
    /// `from`'s compile budget, then the held-capsule bounds (per type, total, bytes; the
    /// newest capsule is the one refused). A refusal is counted.
    pub fn hold(&mut self, now: Duration, ty: CapsuleType, from: P, capsule: Vec<u8>) -> Admit {
        self.admit(now, ty, Some(from), capsule, false)
    }

    /// A capsule whose type we lack but whose code the node has (in its code cache or on
    /// disk) arrived from `from` (`None`: a local app). Like [`CodeLoader::hold`], but a new
    /// load goes straight to compiling: [`Admit::Compile`] tells the node to start the
    /// compile; [`Admit::Held`] means one is already running.
    pub fn hold_local(
        &mut self,
        now: Duration,
        ty: CapsuleType,
        from: Option<P>,
        capsule: Vec<u8>,
    ) -> Admit {
        self.admit(now, ty, from, capsule, true)
    }

    fn admit(
        &mut self,
        now: Duration,
        ty: CapsuleType,
        from: Option<P>,
        capsule: Vec<u8>,
        local: bool,
    ) -> Admit {
        self.expire(now);
        let refused = self.refusal(now, ty, from, local, capsule.len());
        let k = &mut self.counters;
        if let Some(reason) = refused {
            match reason {
                RefuseReason::Policy => k.policy_refusals += 1,
                RefuseReason::Rejected => k.rejected_refusals += 1,
                RefuseReason::NegativeCache => k.negative_cache_refusals += 1,
                RefuseReason::Distrusted => k.distrust_refusals += 1,
                RefuseReason::TooManyFetches => k.fetches_refused += 1,
                RefuseReason::PeerBusy => k.peer_busy_refusals += 1,
                RefuseReason::CompileBudget => k.compile_budget_refusals += 1,
                RefuseReason::QueueFull => k.held_dropped_queue_full += 1,
                RefuseReason::NoSource => k.no_source_refusals += 1,
            }
            return Admit::Refused(reason);
        }
        k.held += 1;
        self.held_total += 1;
        self.held_bytes += capsule.len();
        let is_new = !self.loads.contains_key(&ty);
        let distrusted = from.is_some_and(|p| self.distrust.contains(&(p, ty), now));
        let load = self.loads.entry(ty).or_insert_with(|| Load {
            started: now,
            initiator: from,
            held: VecDeque::new(),
            held_bytes: 0,
            candidates: Vec::new(),
            next_candidate: 0,
            stage: Stage::Compiling(now),
            saw_mismatch: false,
            mismatches_from_current: 0,
        });
        load.held_bytes += capsule.len();
        load.held.push_back((from, capsule));
        if let Some(p) = from
            && (is_new || load.is_fetching())
            && !distrusted
            && !load.candidates.contains(&p)
        {
            load.candidates.push(p);
        }
        if !is_new {
            return Admit::Held;
        }
        if local {
            self.counters.local_loads += 1;
            return Admit::Compile;
        }
        self.counters.fetches_started += 1;
        self.next_candidate(now, ty);
        Admit::Held
    }

    /// Why a capsule of `ty` from `from` cannot be held, if it cannot.
    fn refusal(
        &self,
        now: Duration,
        ty: CapsuleType,
        from: Option<P>,
        local: bool,
        len: usize,
    ) -> Option<RefuseReason> {
        if !self.config.policy.allows(&ty) {
            return Some(RefuseReason::Policy);
        }
        if self.rejected.contains(&ty, now) {
            return Some(RefuseReason::Rejected);
        }
        let existing = self.loads.get(&ty);
        if existing.is_none() {
            match from {
                None if !local => return Some(RefuseReason::NoSource),
                Some(p) if !local && self.negative.contains(&(p, ty), now) => {
                    return Some(RefuseReason::NegativeCache);
                }
                Some(p) if !local && self.distrust.contains(&(p, ty), now) => {
                    return Some(RefuseReason::Distrusted);
                }
                _ => {}
            }
            if self.loads.len() >= self.config.max_concurrent_fetches {
                return Some(RefuseReason::TooManyFetches);
            }
            if let Some(p) = from {
                let started_by_p = self
                    .loads
                    .values()
                    .filter(|l| l.initiator == Some(p))
                    .count();
                if started_by_p >= self.config.max_fetches_per_peer {
                    return Some(RefuseReason::PeerBusy);
                }
                if !self.budgets.allows(now, p) {
                    return Some(RefuseReason::CompileBudget);
                }
            }
        }
        let per_type = existing.map_or(0, |l| l.held.len());
        if per_type >= self.config.max_pending_per_type
            || self.held_total >= self.config.max_pending_total
            || self.held_bytes.saturating_add(len) > self.config.max_pending_bytes
        {
            return Some(RefuseReason::QueueFull);
        }
        None
    }

    /// A chunk arrived. Accepted only for a running transfer, from the peer asked, and for a
    /// chunk it was asked for.
    pub fn handle_chunk(&mut self, now: Duration, from: P, chunk: &CodeChunk<'_>) {
        self.expire(now);
        if !transfer::geometry_ok(chunk) {
            self.counters.chunks_malformed += 1;
            return;
        }
        let ty = chunk.capsule_type;
        let Some(t) = self
            .loads
            .get_mut(&ty)
            .and_then(Load::transfer_mut)
            .filter(|t| t.peer == from)
        else {
            self.counters.chunks_unsolicited += 1;
            return;
        };
        match t.accept(chunk, self.config.max_module_bytes) {
            Accepted::Abort => {
                self.counters.aborted_transfers += 1;
                self.next_candidate(now, ty);
            }
            Accepted::Unasked => self.counters.chunks_unsolicited += 1,
            Accepted::Duplicate { conflict } => {
                self.counters.duplicate_chunks += 1;
                self.counters.conflicting_chunks += u64::from(conflict);
            }
            Accepted::New {
                complete,
                window_done,
            } => {
                self.counters.chunks_received += 1;
                self.counters.bytes_received += chunk.bytes.len() as u64;
                // The retry timer runs from the request; a finished window is progress
                // (a round that brings at least half of its window counts too, see
                // `handle_timeout`), a chunk alone is not: a peer dripping one chunk per
                // retry period is as stalled as a silent one.
                if complete || window_done {
                    t.rounds = 0;
                    t.rto = self.config.request_timeout;
                    t.deadline = now.saturating_add(t.rto);
                }
                if complete {
                    self.verify(now, ty);
                } else if window_done {
                    send_request(&mut self.outbox, &mut self.counters, ty, t, &self.config);
                }
            }
        }
    }

    /// A peer will not send a module. `not-found` and `too-large` from the peer being asked
    /// move on to the next candidate; `rate-limited` only means "later": the retry timer
    /// (with its backoff) asks again.
    pub fn handle_nack(&mut self, now: Duration, from: P, nack: &CodeNack) {
        self.expire(now);
        self.counters.nacks_received += 1;
        let ty = nack.capsule_type;
        let asked = self
            .loads
            .get(&ty)
            .and_then(Load::transfer)
            .is_some_and(|t| t.peer == from);
        if !asked {
            self.counters.nacks_ignored += 1;
            return;
        }
        match nack.reason {
            NackReason::RateLimited => {}
            NackReason::NotFound | NackReason::TooLarge => {
                self.negative_cache(now, from, ty);
                self.next_candidate(now, ty);
            }
        }
    }

    /// Time passed: fail loads past `load_timeout` or `compile_timeout`, re-request stalled
    /// transfers, move on from peers that stayed silent for `max_attempts` rounds.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.expire(now);
        let due: Vec<CapsuleType> = self
            .loads
            .iter()
            .filter(|(_, l)| l.deadline(&self.config) <= now)
            .map(|(ty, _)| *ty)
            .collect();
        for ty in due {
            let Some(l) = self.loads.get_mut(&ty) else {
                continue;
            };
            if let Stage::Compiling(_) = l.stage {
                self.fail(now, ty, FailReason::CompileTimeout);
                continue;
            }
            if now >= l.started.saturating_add(self.config.load_timeout) {
                self.fail(now, ty, FailReason::Timeout);
                continue;
            }
            // A stalled peer is dropped only for another usable candidate; the last one is
            // retried (with capped backoff) until `load_timeout`, so a lossy single path
            // still completes while a dead hop with an alternative is left early.
            let distrust = &self.distrust;
            let other = l.candidates[l.next_candidate.min(l.candidates.len())..]
                .iter()
                .any(|p| !distrust.contains(&(*p, ty), now));
            let Some(t) = l.transfer_mut() else {
                continue;
            };
            let progressed = t.round_progressed();
            if progressed {
                t.rounds = 0;
                t.rto = self.config.request_timeout;
            }
            if t.rounds >= self.config.max_attempts && other {
                self.counters.stalled_peers += 1;
                let peer = t.peer;
                self.negative_cache(now, peer, ty);
                self.next_candidate(now, ty);
            } else {
                if !progressed {
                    t.rto = t.rto.saturating_mul(2).min(self.config.max_request_timeout);
                }
                t.deadline = now.saturating_add(t.rto);
                self.counters.retries += 1;
                send_request(&mut self.outbox, &mut self.counters, ty, t, &self.config);
            }
        }
    }

    /// The earliest time [`CodeLoader::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.loads.values().map(|l| l.deadline(&self.config)).min()
    }

    /// The next encoded message (code-request, code-chunk or code-nack) and its destination.
    pub fn poll_transmit(&mut self) -> Option<(P, Vec<u8>)> {
        self.outbox.pop()
    }

    /// The next event for the node.
    pub fn poll_event(&mut self) -> Option<LoaderEvent> {
        self.events.pop()
    }

    /// The node finished compiling `ty` after `took` (successfully or not): charge the
    /// compile time to the peer that started the load. Call before
    /// [`CodeLoader::take_held`] or [`CodeLoader::compile_failed`].
    pub fn compiled(&mut self, now: Duration, ty: &CapsuleType, took: Duration) {
        self.counters.compile_nanos = self
            .counters
            .compile_nanos
            .saturating_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
        if let Some(p) = self.loads.get(ty).and_then(|l| l.initiator)
            && self
                .budgets
                .charge(now, p, u64::try_from(took.as_nanos()).unwrap_or(u64::MAX))
        {
            self.counters.budget_peers_evicted += 1;
        }
    }

    /// The node compiled (and installed) `ty`: the held capsules in arrival order, with the
    /// peer each came from, for the node to run. Also ends a fetch still running (the node
    /// got the code elsewhere, e.g. from a local app).
    pub fn take_held(&mut self, ty: &CapsuleType) -> Vec<Held<P>> {
        let Some(l) = self.remove_load(ty) else {
            return Vec::new();
        };
        self.counters.held_released += l.held.len() as u64;
        l.held.into()
    }

    /// The node could not compile `ty`. `invalid`: the code itself was refused (it does not
    /// validate or compile), so the type is refused from everyone for `negative_ttl`;
    /// otherwise (the compile queue was full, the code could not be read back) only this load
    /// ends. Held capsules are dropped either way (counted); returns how many.
    pub fn compile_failed(&mut self, now: Duration, ty: &CapsuleType, invalid: bool) -> usize {
        self.expire(now);
        self.counters.compile_failures += 1;
        let dropped = self.remove_load(ty).map_or(0, |l| l.held.len());
        self.counters.held_dropped_compile += dropped as u64;
        if invalid
            && self
                .rejected
                .insert(*ty, now.saturating_add(self.config.negative_ttl))
        {
            self.counters.negative_evictions += 1;
        }
        dropped
    }

    /// Whether a transfer for `ty` is running (not yet verified).
    pub fn is_fetching(&self, ty: &CapsuleType) -> bool {
        self.loads.get(ty).is_some_and(Load::is_fetching)
    }

    /// Whether a load (fetch or compile) is running for `ty`.
    pub fn is_loading(&self, ty: &CapsuleType) -> bool {
        self.loads.contains_key(ty)
    }

    /// Capsules held for `ty`.
    pub fn held_count(&self, ty: &CapsuleType) -> usize {
        self.loads.get(ty).map_or(0, |l| l.held.len())
    }

    /// Whether fetching `ty` from `peer` is in the negative cache at `now`.
    pub fn is_negative(&self, now: Duration, peer: P, ty: &CapsuleType) -> bool {
        self.negative.contains(&(peer, *ty), now)
    }

    /// Whether `ty` is refused from everyone at `now` (its code did not compile).
    pub fn is_rejected(&self, now: Duration, ty: &CapsuleType) -> bool {
        self.rejected.contains(ty, now)
    }

    /// Whether `peer` is distrusted for `ty` at `now` (it sent bytes with the wrong hash).
    pub fn is_distrusted(&self, now: Duration, peer: P, ty: &CapsuleType) -> bool {
        self.distrust.contains(&(peer, *ty), now)
    }

    /// What the loader did so far.
    pub fn counters(&self) -> &LoaderCounters {
        &self.counters
    }

    /// Capsules held waiting for their code (what [`occupancy`](Self::occupancy) reports as
    /// `held`, without summing the rest).
    pub fn held(&self) -> usize {
        self.held_total
    }

    /// How full the loader's tables are.
    pub fn occupancy(&self) -> Occupancy {
        Occupancy {
            fetches: self.loads.len(),
            held: self.held_total,
            held_bytes: self.held_bytes,
            reassembly_bytes: self
                .loads
                .values()
                .filter_map(Load::transfer)
                .map(Transfer::reassembly_bytes)
                .sum(),
            transmit_queue: self.outbox.len(),
            events: self.events.len(),
            negative: self.negative.len(),
            rejected: self.rejected.len(),
            distrusted: self.distrust.len(),
            authorizations: self.server.authorizations(),
            serve_peers: self.server.peers(),
            budget_peers: self.budgets.len(),
        }
    }

    fn expire(&mut self, now: Duration) {
        self.negative.expire(now);
        self.rejected.expire(now);
        self.distrust.expire(now);
    }

    /// Ask the next candidate not distrusted for `ty`; fail the load if none is left.
    fn next_candidate(&mut self, now: Duration, ty: CapsuleType) {
        let Some(l) = self.loads.get_mut(&ty) else {
            return;
        };
        l.mismatches_from_current = 0;
        while let Some(&peer) = l.candidates.get(l.next_candidate) {
            l.next_candidate += 1;
            if self.distrust.contains(&(peer, ty), now) {
                continue;
            }
            let mut t = Transfer::new(peer, now, self.config.request_timeout);
            send_request(
                &mut self.outbox,
                &mut self.counters,
                ty,
                &mut t,
                &self.config,
            );
            l.stage = Stage::Fetching(t);
            return;
        }
        let reason = if l.saw_mismatch {
            FailReason::Untrusted
        } else {
            FailReason::Exhausted
        };
        self.fail(now, ty, reason);
    }

    /// Every chunk is in: accept the module if its SHA-256 is `ty`. A mismatch from a peer is
    /// retried once from scratch (one spoofed chunk that beat the real one must not get an
    /// honest peer distrusted), and a mismatch in a transfer that saw conflicting copies of a
    /// chunk (a spoofer at work) is not counted against the peer at all; a second counted
    /// mismatch distrusts the peer for `ty`. `load_timeout` bounds the retries.
    fn verify(&mut self, now: Duration, ty: CapsuleType) {
        let Some(l) = self.loads.get_mut(&ty) else {
            return;
        };
        let Stage::Fetching(t) = std::mem::replace(&mut l.stage, Stage::Compiling(now)) else {
            return;
        };
        let (peer, conflicted) = (t.peer, t.conflicted);
        let bytes = t.into_bytes();
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        if digest == ty.0 {
            self.counters.verified += 1;
            let event = LoaderEvent::Verified {
                ty,
                code: bytes.into(),
            };
            self.events.push(event, &mut self.counters);
            return;
        }
        l.saw_mismatch = true;
        self.counters.hash_mismatches += 1;
        // Conflicting copies of a chunk mean someone spoofed this peer: not its fault.
        if !conflicted {
            l.mismatches_from_current += 1;
        }
        if l.mismatches_from_current < 2 {
            self.counters.mismatch_retries += 1;
            let mut t = Transfer::new(peer, now, self.config.request_timeout);
            send_request(
                &mut self.outbox,
                &mut self.counters,
                ty,
                &mut t,
                &self.config,
            );
            l.stage = Stage::Fetching(t);
            return;
        }
        let until = now.saturating_add(self.config.distrust_ttl);
        if self.distrust.insert((peer, ty), until) {
            self.counters.distrust_evictions += 1;
        }
        self.next_candidate(now, ty);
    }

    /// Give up on `ty`: drop its held capsules and tell the node.
    fn fail(&mut self, now: Duration, ty: CapsuleType, reason: FailReason) {
        let Some(l) = self.remove_load(&ty) else {
            return;
        };
        let dropped = l.held.len();
        let k = &mut self.counters;
        k.held_dropped_failed += dropped as u64;
        k.fetch_failures += 1;
        match reason {
            FailReason::Timeout => {
                k.load_timeouts += 1;
                // Every peer asked and not distrusted: do not ask it again for a while.
                for p in l.candidates.iter().take(l.next_candidate) {
                    if !self.distrust.contains(&(*p, ty), now) {
                        self.negative_cache(now, *p, ty);
                    }
                }
            }
            FailReason::CompileTimeout => k.compile_timeouts += 1,
            FailReason::Exhausted | FailReason::Untrusted => {}
        }
        let event = LoaderEvent::Failed {
            ty,
            reason,
            dropped,
        };
        self.events.push(event, &mut self.counters);
    }

    fn negative_cache(&mut self, now: Duration, peer: P, ty: CapsuleType) {
        if self
            .negative
            .insert((peer, ty), now.saturating_add(self.config.negative_ttl))
        {
            self.counters.negative_evictions += 1;
        }
    }

    fn remove_load(&mut self, ty: &CapsuleType) -> Option<Load<P>> {
        let l = self.loads.remove(ty)?;
        self.held_total -= l.held.len();
        self.held_bytes -= l.held_bytes;
        Some(l)
    }
}

/// Send the request `t` needs next and count the round.
fn send_request<P: Copy>(
    outbox: &mut Outbox<P>,
    counters: &mut LoaderCounters,
    ty: CapsuleType,
    t: &mut Transfer<P>,
    config: &LoaderConfig,
) {
    let plan = t.plan_request(config.request_window);
    outbox.request(t.peer, &transfer::request_for(ty, &plan), counters);
    t.rounds += 1;
}
