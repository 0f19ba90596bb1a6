//! Demand code loading: [`CodeLoader`], the sans-IO state machine that fetches, verifies and
//! serves capsule code for one node (DESIGN.md §6).
//!
//! - [`config`]: [`LoaderConfig`] (every bound and timing), [`Admit`], [`LoaderEvent`],
//!   [`CodeSource`], [`LoaderCounters`], [`Occupancy`].
//! - `transfer`: reassembly of one module from one peer and the requests for what is missing.
//! - `serve`: answering peers' requests (authorization window, per-peer token bucket).
//! - `ttl`: bounded expiring sets (negative cache, distrust).
//! - `outbox`: bounded transmit and event queues.
//!
//! Fetching, in short: a capsule of an unknown type is [held](CodeLoader::hold) and a
//! `code-request` goes to the peer it came from. Chunks are reassembled; after
//! `request_timeout` of silence only the missing chunks are re-requested, with the timeout
//! doubling per round without progress. After `max_attempts` such rounds (if another
//! candidate is left; the last candidate is retried until `load_timeout`), or a `not-found` /
//! `too-large` nack, the next *candidate* (each distinct peer a held capsule came from, in
//! arrival order) is asked. A complete module is accepted only if its SHA-256 is the type;
//! otherwise its sender is distrusted for that type and the next candidate is asked. When no
//! candidate is left, or `load_timeout` passes, the held capsules are dropped and the type
//! is negative-cached, unless a hash mismatch happened during that load (a liar must not be
//! able to get a type refused).
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

pub use config::{
    Admit, CodePolicy, CodeSource, FailReason, LoaderConfig, LoaderCounters, LoaderEvent,
    Occupancy, RefuseReason,
};
use outbox::{Events, Outbox};
use serve::Server;
use transfer::{Accepted, Transfer};
use ttl::TtlSet;

/// Everything known about one type being loaded.
#[derive(Debug)]
struct Fetch<P> {
    started: Duration,
    held: VecDeque<(P, Vec<u8>)>,
    held_bytes: usize,
    /// Distinct peers held capsules came from, in arrival order.
    candidates: Vec<P>,
    next_candidate: usize,
    /// The peer being asked; `None` once verified.
    transfer: Option<Transfer<P>>,
    verified: bool,
    saw_mismatch: bool,
}

/// The demand-loading state machine of one node; `P` identifies a peer.
#[derive(Debug)]
pub struct CodeLoader<P> {
    config: LoaderConfig,
    fetches: BTreeMap<CapsuleType, Fetch<P>>,
    held_total: usize,
    held_bytes: usize,
    negative: TtlSet<CapsuleType>,
    distrust: TtlSet<(P, CapsuleType)>,
    server: Server<P>,
    outbox: Outbox<P>,
    events: Events,
    counters: LoaderCounters,
}

impl<P: Copy + Eq + Hash + Ord + Debug> CodeLoader<P> {
    /// A loader with no state.
    pub fn new(config: LoaderConfig) -> Self {
        CodeLoader {
            fetches: BTreeMap::new(),
            held_total: 0,
            held_bytes: 0,
            negative: TtlSet::new(config.max_negative_entries),
            distrust: TtlSet::new(config.max_distrust_entries),
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

    /// A capsule whose type we lack arrived from `from`: hold its bytes (owned) in arrival
    /// order and make sure a fetch is running; the first request goes to `from`.
    ///
    /// Checked in order: policy, negative cache, then (only when no fetch runs for the type)
    /// distrust of `from` and `max_concurrent_fetches`, then the held-capsule bounds (per
    /// type, total, bytes; the newest capsule is the one refused). A refusal is counted.
    pub fn hold(&mut self, now: Duration, ty: CapsuleType, from: P, capsule: Vec<u8>) -> Admit {
        self.expire(now);
        let k = &mut self.counters;
        if !self.config.policy.allows(&ty) {
            k.policy_refusals += 1;
            return Admit::Refused(RefuseReason::Policy);
        }
        if self.negative.contains(&ty, now) {
            k.negative_cache_refusals += 1;
            return Admit::Refused(RefuseReason::NegativeCache);
        }
        let distrusted = self.distrust.contains(&(from, ty), now);
        let existing = self.fetches.get(&ty);
        if existing.is_none() {
            if distrusted {
                k.distrust_refusals += 1;
                return Admit::Refused(RefuseReason::Distrusted);
            }
            if self.fetches.len() >= self.config.max_concurrent_fetches {
                k.fetches_refused += 1;
                return Admit::Refused(RefuseReason::TooManyFetches);
            }
        }
        let per_type = existing.map_or(0, |f| f.held.len());
        if per_type >= self.config.max_pending_per_type
            || self.held_total >= self.config.max_pending_total
            || self.held_bytes.saturating_add(capsule.len()) > self.config.max_pending_bytes
        {
            k.held_dropped_queue_full += 1;
            return Admit::Refused(RefuseReason::QueueFull);
        }
        k.held += 1;
        self.held_total += 1;
        self.held_bytes += capsule.len();
        let is_new = existing.is_none();
        let fetch = self.fetches.entry(ty).or_insert_with(|| Fetch {
            started: now,
            held: VecDeque::new(),
            held_bytes: 0,
            candidates: Vec::new(),
            next_candidate: 0,
            transfer: None,
            verified: false,
            saw_mismatch: false,
        });
        fetch.held_bytes += capsule.len();
        fetch.held.push_back((from, capsule));
        if !fetch.verified && !distrusted && !fetch.candidates.contains(&from) {
            fetch.candidates.push(from);
        }
        if is_new {
            self.counters.fetches_started += 1;
            self.next_candidate(now, ty);
        }
        Admit::Held
    }

    /// A chunk arrived. Accepted only for a running transfer and from the peer asked.
    pub fn handle_chunk(&mut self, now: Duration, from: P, chunk: &CodeChunk<'_>) {
        self.expire(now);
        if !transfer::geometry_ok(chunk) {
            self.counters.chunks_malformed += 1;
            return;
        }
        let ty = chunk.capsule_type;
        let Some(t) = self
            .fetches
            .get_mut(&ty)
            .and_then(|f| f.transfer.as_mut())
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
            Accepted::Duplicate => self.counters.duplicate_chunks += 1,
            Accepted::New {
                complete,
                window_done,
            } => {
                self.counters.chunks_received += 1;
                self.counters.bytes_received += chunk.bytes.len() as u64;
                t.rounds = 0;
                t.rto = self.config.request_timeout;
                t.deadline = now.saturating_add(t.rto);
                if complete {
                    self.verify(now, ty);
                } else if window_done {
                    send_request(&mut self.outbox, &mut self.counters, ty, t);
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
            .fetches
            .get(&ty)
            .and_then(|f| f.transfer.as_ref())
            .is_some_and(|t| t.peer == from);
        if !asked {
            self.counters.nacks_ignored += 1;
            return;
        }
        match nack.reason {
            NackReason::RateLimited => {}
            NackReason::NotFound | NackReason::TooLarge => self.next_candidate(now, ty),
        }
    }

    /// Time passed: fail loads past `load_timeout`, re-request stalled transfers, move on
    /// from peers that stayed silent for `max_attempts` rounds.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.expire(now);
        let load_timeout = self.config.load_timeout;
        let due: Vec<CapsuleType> = self
            .fetches
            .iter()
            .filter(|(_, f)| !f.verified)
            .filter(|(_, f)| {
                now >= f.started.saturating_add(load_timeout)
                    || f.transfer.as_ref().is_some_and(|t| t.deadline <= now)
            })
            .map(|(ty, _)| *ty)
            .collect();
        for ty in due {
            let Some(f) = self.fetches.get_mut(&ty) else {
                continue;
            };
            if now >= f.started.saturating_add(load_timeout) {
                self.fail(now, ty, FailReason::Timeout);
                continue;
            }
            // A stalled peer is dropped only for another usable candidate; the last one is
            // retried (with capped backoff) until `load_timeout`, so a lossy single path
            // still completes while a dead hop with an alternative is left early.
            let distrust = &self.distrust;
            let other = f.candidates[f.next_candidate.min(f.candidates.len())..]
                .iter()
                .any(|p| !distrust.contains(&(*p, ty), now));
            let Some(t) = f.transfer.as_mut() else {
                continue;
            };
            if t.rounds >= self.config.max_attempts && other {
                self.counters.stalled_peers += 1;
                self.next_candidate(now, ty);
            } else {
                t.rto = t.rto.saturating_mul(2).min(self.config.max_request_timeout);
                t.deadline = now.saturating_add(t.rto);
                self.counters.retries += 1;
                send_request(&mut self.outbox, &mut self.counters, ty, t);
            }
        }
    }

    /// The earliest time [`CodeLoader::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.fetches
            .values()
            .filter(|f| !f.verified)
            .flat_map(|f| {
                let load = f.started.saturating_add(self.config.load_timeout);
                [Some(load), f.transfer.as_ref().map(|t| t.deadline)]
            })
            .flatten()
            .min()
    }

    /// The next encoded message (code-request, code-chunk or code-nack) and its destination.
    pub fn poll_transmit(&mut self) -> Option<(P, Vec<u8>)> {
        self.outbox.pop()
    }

    /// The next event for the node.
    pub fn poll_event(&mut self) -> Option<LoaderEvent> {
        self.events.pop()
    }

    /// The node compiled (and installed) `ty`: the held capsules in arrival order, with the
    /// peer each came from, for the node to run. Also ends a fetch still running (the node
    /// got the code elsewhere, e.g. from a local app).
    pub fn take_held(&mut self, ty: &CapsuleType) -> Vec<(P, Vec<u8>)> {
        let Some(f) = self.remove_fetch(ty) else {
            return Vec::new();
        };
        self.counters.held_released += f.held.len() as u64;
        f.held.into()
    }

    /// The node could not compile `ty`: drop its held capsules (counted) and negative-cache
    /// it.
    pub fn compile_failed(&mut self, now: Duration, ty: &CapsuleType) {
        self.expire(now);
        self.counters.compile_failures += 1;
        if let Some(f) = self.remove_fetch(ty) {
            self.counters.held_dropped_compile += f.held.len() as u64;
        }
        self.negative_cache(now, *ty);
    }

    /// Whether a transfer for `ty` is running (not yet verified).
    pub fn is_fetching(&self, ty: &CapsuleType) -> bool {
        self.fetches.get(ty).is_some_and(|f| !f.verified)
    }

    /// Capsules held for `ty`.
    pub fn held_count(&self, ty: &CapsuleType) -> usize {
        self.fetches.get(ty).map_or(0, |f| f.held.len())
    }

    /// Whether `ty` is in the negative cache at `now`.
    pub fn is_negative(&self, now: Duration, ty: &CapsuleType) -> bool {
        self.negative.contains(ty, now)
    }

    /// Whether `peer` is distrusted for `ty` at `now` (it sent bytes with the wrong hash).
    pub fn is_distrusted(&self, now: Duration, peer: P, ty: &CapsuleType) -> bool {
        self.distrust.contains(&(peer, *ty), now)
    }

    /// What the loader did so far.
    pub fn counters(&self) -> &LoaderCounters {
        &self.counters
    }

    /// How full the loader's tables are.
    pub fn occupancy(&self) -> Occupancy {
        Occupancy {
            fetches: self.fetches.len(),
            held: self.held_total,
            held_bytes: self.held_bytes,
            reassembly_bytes: self
                .fetches
                .values()
                .filter_map(|f| f.transfer.as_ref())
                .map(Transfer::reassembly_bytes)
                .sum(),
            transmit_queue: self.outbox.len(),
            events: self.events.len(),
            negative: self.negative.len(),
            distrusted: self.distrust.len(),
            authorizations: self.server.authorizations(),
            serve_peers: self.server.peers(),
        }
    }

    fn expire(&mut self, now: Duration) {
        self.negative.expire(now);
        self.distrust.expire(now);
    }

    /// Ask the next candidate not distrusted for `ty`; fail the load if none is left.
    fn next_candidate(&mut self, now: Duration, ty: CapsuleType) {
        let Some(f) = self.fetches.get_mut(&ty) else {
            return;
        };
        f.transfer = None;
        while let Some(&peer) = f.candidates.get(f.next_candidate) {
            f.next_candidate += 1;
            if self.distrust.contains(&(peer, ty), now) {
                continue;
            }
            let mut t = Transfer::new(peer, now, self.config.request_timeout);
            send_request(&mut self.outbox, &mut self.counters, ty, &mut t);
            f.transfer = Some(t);
            return;
        }
        let reason = if f.saw_mismatch {
            FailReason::Untrusted
        } else {
            FailReason::Exhausted
        };
        self.fail(now, ty, reason);
    }

    /// Every chunk is in: accept the module if its SHA-256 is `ty`.
    fn verify(&mut self, now: Duration, ty: CapsuleType) {
        let Some(f) = self.fetches.get_mut(&ty) else {
            return;
        };
        let Some(t) = f.transfer.take() else {
            return;
        };
        let peer = t.peer;
        let bytes = t.into_bytes();
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        if digest == ty.0 {
            f.verified = true;
            self.counters.verified += 1;
            let event = LoaderEvent::Verified {
                ty,
                code: bytes.into(),
            };
            self.events.push(event, &mut self.counters);
        } else {
            f.saw_mismatch = true;
            self.counters.hash_mismatches += 1;
            let until = now.saturating_add(self.config.distrust_ttl);
            if self.distrust.insert((peer, ty), until) {
                self.counters.distrust_evictions += 1;
            }
            self.next_candidate(now, ty);
        }
    }

    /// Give up on `ty`: drop its held capsules and tell the node.
    fn fail(&mut self, now: Duration, ty: CapsuleType, reason: FailReason) {
        let Some(f) = self.remove_fetch(&ty) else {
            return;
        };
        let dropped = f.held.len();
        let k = &mut self.counters;
        k.held_dropped_failed += dropped as u64;
        k.fetch_failures += 1;
        if reason == FailReason::Timeout {
            k.load_timeouts += 1;
        }
        if !f.saw_mismatch {
            self.negative_cache(now, ty);
        }
        let event = LoaderEvent::Failed {
            ty,
            reason,
            dropped,
        };
        self.events.push(event, &mut self.counters);
    }

    fn negative_cache(&mut self, now: Duration, ty: CapsuleType) {
        if self
            .negative
            .insert(ty, now.saturating_add(self.config.negative_ttl))
        {
            self.counters.negative_evictions += 1;
        }
    }

    fn remove_fetch(&mut self, ty: &CapsuleType) -> Option<Fetch<P>> {
        let f = self.fetches.remove(ty)?;
        self.held_total -= f.held.len();
        self.held_bytes -= f.held_bytes;
        Some(f)
    }
}

/// Send the request `t` needs next and count the round.
fn send_request<P: Copy>(
    outbox: &mut Outbox<P>,
    counters: &mut LoaderCounters,
    ty: CapsuleType,
    t: &mut Transfer<P>,
) {
    let plan = t.plan_request();
    outbox.request(t.peer, &transfer::request_for(ty, &plan), counters);
    t.rounds += 1;
}
