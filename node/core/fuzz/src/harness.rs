//! [`Harness`]: one `CodeLoader<u8>` driven through decoded [`Op`]s in virtual time, with a
//! model of what it was told, checked after every operation (an `assert!` that fails is
//! the crash libFuzzer reports).
//!
//! The loader's transmit queue is FIFO and only shrinks through `poll_transmit`, so after
//! each operation the messages it queued are the new tail: each is tagged with its
//! [`Origin`] (the request it answers, or the module lengths known at that time) and
//! checked when it is drained.

mod checks;

use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ants_core::loader::Held;
use ants_core::{Admit, CodeLoader, CodeSource, LoaderConfig, LoaderCounters};
use ants_core::{CodePolicy, RefuseReason};
use ants_wire::code::CHUNK_LEN;
use ants_wire::{CapsuleType, CodeChunk, CodeNack, CodeRequest, NackReason};

use crate::input::Op;
use crate::world::{
    GHOST, NEIGHBOURS, PEERS, TYPES, index_of, is_real, lie, module, peer, ty_index, types,
};

/// Requests remembered for [`Op::Answer`].
const MAX_ASKED: usize = 64;
const PEER_SLOTS: usize = PEERS as usize;

/// The code the node holds and serves from (its code cache).
#[derive(Debug, Default)]
struct Store(BTreeMap<CapsuleType, Arc<[u8]>>);

impl CodeSource for Store {
    fn code(&mut self, ty: &CapsuleType) -> Option<Arc<[u8]>> {
        self.0.get(ty).cloned()
    }
}

/// Module lengths known to the loader, by type index: `(peer, total_len)` of the last
/// chunk it accepted.
type Totals = [Option<(u8, u32)>; TYPES];

/// Why a queued message was sent.
#[derive(Debug)]
enum Origin {
    /// By the fetching side (a hold, chunk, nack or timeout), with the lengths known then.
    Loading(Rc<Totals>),
    /// In answer to a code request.
    Serving(Rc<Served>),
}

/// A code request the node answered, and what it had to answer with.
#[derive(Debug)]
struct Served {
    from: u8,
    ty: CapsuleType,
    code: Option<Arc<[u8]>>,
    first: u32,
    bitmap: Vec<u8>,
}

/// A request the loader sent: `(to, type index, first chunk, bitmap)`.
type Asked = (u8, usize, u32, Vec<u8>);

/// A held capsule as the model keeps it: sender, serial, length.
type HeldModel = (Option<u8>, u32, usize);

/// The loader under test and the model it is checked against.
pub struct Harness {
    config: LoaderConfig,
    loader: CodeLoader<u8>,
    now: Duration,
    store: Store,
    /// Capsules held per type, in arrival order.
    held: [Vec<HeldModel>; TYPES],
    /// `sources[ty][p]`: a capsule of `ty` from `p` was held at some point.
    sources: [[bool; PEER_SLOTS]; TYPES],
    totals: Rc<Totals>,
    /// When we last sent a capsule of a type to a peer (`note_sent`).
    sent_at: BTreeMap<(u8, usize), Duration>,
    /// One per message in the loader's transmit queue, in the same order.
    tags: VecDeque<Origin>,
    asked: VecDeque<Asked>,
    /// Module bytes served to each peer, the time of its first request, its requests.
    served: [u64; PEER_SLOTS],
    first_request: [Option<Duration>; PEER_SLOTS],
    requests: [u64; PEER_SLOTS],
    verified_seen: u64,
    failed_seen: u64,
    serial: u32,
}

/// A held capsule's bytes: its serial number, then zeros, cut to `len`.
fn capsule(serial: u32, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    let s = serial.to_le_bytes();
    let k = len.min(s.len());
    v[..k].copy_from_slice(&s[..k]);
    v
}

/// Chunk `idx` of `code` (which has more than `idx` chunks).
fn chunk_of(ty: CapsuleType, code: &[u8], idx: usize) -> CodeChunk<'_> {
    let off = idx * CHUNK_LEN;
    CodeChunk {
        capsule_type: ty,
        total_len: code.len() as u32,
        offset: off as u32,
        bytes: &code[off..code.len().min(off + CHUNK_LEN)],
    }
}

fn chunk_count(code: &[u8]) -> usize {
    code.len().div_ceil(CHUNK_LEN)
}

impl Harness {
    /// A fresh loader with `config`, at time zero. The node holds (and serves) the modules
    /// of types 0 and 1, and garbage for the ghost type.
    pub fn new(config: LoaderConfig) -> Self {
        let mut store = Store::default();
        for i in [0, 1, GHOST] {
            store.0.insert(types()[i], module(i).clone());
        }
        Harness {
            loader: CodeLoader::new(config.clone()),
            config,
            now: Duration::ZERO,
            store,
            held: Default::default(),
            sources: [[false; PEER_SLOTS]; TYPES],
            totals: Rc::new([None; TYPES]),
            sent_at: BTreeMap::new(),
            tags: VecDeque::new(),
            asked: VecDeque::new(),
            served: [0; PEER_SLOTS],
            first_request: [None; PEER_SLOTS],
            requests: [0; PEER_SLOTS],
            verified_seen: 0,
            failed_seen: 0,
            serial: 0,
        }
    }

    /// What the loader counted so far.
    pub fn counters(&self) -> &LoaderCounters {
        self.loader.counters()
    }

    /// Apply one operation, tag what it queued, check every invariant.
    pub fn step(&mut self, op: Op) {
        let mut serving = None;
        match op {
            Op::Hold { ty, from, len } => {
                self.hold(ty_index(ty), Some(peer(from)), len.into(), false);
            }
            Op::HoldLocal { ty, from, len } => {
                let from = (from % (PEERS + 1) < PEERS).then(|| peer(from));
                self.hold(ty_index(ty), from, len.into(), true);
            }
            Op::RealChunk { ty, from, idx } => {
                let i = ty_index(ty);
                let m = module(i);
                let chunk = chunk_of(types()[i], m, usize::from(idx) % chunk_count(m));
                self.chunk(peer(from), &chunk);
            }
            Op::CorruptChunk {
                ty,
                from,
                idx,
                at,
                xor,
            } => {
                let i = ty_index(ty);
                let m = module(i);
                let real = chunk_of(types()[i], m, usize::from(idx) % chunk_count(m));
                let mut bytes = real.bytes.to_vec();
                let at = usize::from(at) % bytes.len();
                bytes[at] ^= xor.max(1);
                let chunk = CodeChunk {
                    bytes: &bytes,
                    ..real
                };
                self.chunk(peer(from), &chunk);
            }
            Op::Chunk {
                ty,
                from,
                total,
                offset,
                len,
                fill,
                fit,
            } => {
                let (total, offset, len) = if fit {
                    let total = 1 + total % (1 << 16);
                    let idx = offset % CodeChunk::chunk_count(total);
                    let offset = idx * CHUNK_LEN as u32;
                    (total, offset, CHUNK_LEN.min((total - offset) as usize))
                } else {
                    (total, offset, usize::from(len % 2048))
                };
                let bytes = vec![fill; len];
                let chunk = CodeChunk {
                    capsule_type: types()[ty_index(ty)],
                    total_len: total,
                    offset,
                    bytes: &bytes,
                };
                self.chunk(peer(from), &chunk);
            }
            Op::Answer { drop, lie } => self.answer(drop, lie),
            Op::Nack { ty, from, reason } => {
                let reason = match reason % 3 {
                    0 => NackReason::NotFound,
                    1 => NackReason::RateLimited,
                    _ => NackReason::TooLarge,
                };
                self.nack(ty_index(ty), peer(from), reason);
            }
            Op::Request {
                ty,
                from,
                first,
                bitmap,
                bitmap_len,
            } => {
                let bitmap = &bitmap[..usize::from(bitmap_len % 5)];
                serving = Some(self.request(ty_index(ty), peer(from), first.into(), bitmap));
            }
            Op::NoteSent { ty, to } => {
                let (i, to) = (ty_index(ty), peer(to));
                self.loader.note_sent(self.now, types()[i], to);
                self.sent_at.insert((to, i), self.now);
            }
            Op::Advance { ms, fire } => {
                self.now += Duration::from_millis(ms.into());
                if fire {
                    self.fire();
                }
            }
            Op::Timeout => {
                if let Some(t) = self.loader.poll_timeout() {
                    self.now = self.now.max(t);
                }
                self.fire();
            }
            Op::Compiled { ty, ms } => {
                let took = Duration::from_millis(ms.into());
                self.loader.compiled(self.now, &types()[ty_index(ty)], took);
            }
            Op::TakeHeld { ty } => self.take_held(ty_index(ty)),
            Op::CompileFailed { ty, invalid } => self.compile_failed(ty_index(ty), invalid),
            Op::Drain { n } => self.drain(n.into()),
            Op::Events { install } => self.events(install),
        }
        let queued = self.loader.occupancy().transmit_queue;
        assert!(
            queued >= self.tags.len(),
            "the transmit queue shrank by itself: {queued} < {}",
            self.tags.len()
        );
        while self.tags.len() < queued {
            let origin = match &serving {
                Some(s) => Origin::Serving(Rc::clone(s)),
                None => Origin::Loading(Rc::clone(&self.totals)),
            };
            self.tags.push_back(origin);
        }
        self.check();
    }

    /// Drain everything left and check the final state.
    pub fn finish(&mut self) {
        self.drain(usize::MAX);
        self.events(false);
        self.check();
    }

    fn hold(&mut self, i: usize, from: Option<u8>, len: usize, local: bool) {
        let (t, now) = (types()[i], self.now);
        let occ = self.loader.occupancy();
        let loading = self.loader.is_loading(&t);
        let per_type = self.loader.held_count(&t);
        let before = self.loader.counters().clone();
        self.serial += 1;
        let bytes = capsule(self.serial, len);
        let admit = match (local, from) {
            (true, _) => self.loader.hold_local(now, t, from, bytes),
            (false, Some(p)) => self.loader.hold(now, t, p, bytes),
            (false, None) => unreachable!("a remote capsule has a sender"),
        };
        let c = &self.config;
        let l = &self.loader;
        match admit {
            Admit::Held | Admit::Compile => {
                assert_eq!(
                    admit == Admit::Compile,
                    local && !loading,
                    "Compile exactly for a new local load"
                );
                assert!(l.is_loading(&t));
                assert!(c.policy.allows(&t) && !l.is_rejected(now, &t), "admitted");
                if let (false, false, Some(p)) = (loading, local, from) {
                    assert!(!l.is_negative(now, p, &t) && !l.is_distrusted(now, p, &t));
                }
                if !loading && !local {
                    // A new fetch: its first request goes to the capsule's sender at once.
                    assert!(l.is_fetching(&t), "a new fetch is fetching");
                    let k = l.counters();
                    let queued = (k.requests_sent + k.transmit_dropped)
                        - (before.requests_sent + before.transmit_dropped);
                    assert_eq!(queued, 1, "a new fetch sends one request");
                }
                if !loading && local {
                    assert!(!l.is_fetching(&t), "a local load compiles");
                }
                self.held[i].push((from, self.serial, len));
                if let Some(p) = from {
                    self.sources[i][usize::from(p)] = true;
                }
            }
            Admit::Refused(reason) => {
                let new_remote = !loading && !local;
                let why = match reason {
                    RefuseReason::QueueFull => {
                        per_type >= c.max_pending_per_type
                            || occ.held >= c.max_pending_total
                            || occ.held_bytes + len > c.max_pending_bytes
                    }
                    RefuseReason::TooManyFetches => {
                        !loading && occ.fetches >= c.max_concurrent_fetches
                    }
                    RefuseReason::PeerBusy | RefuseReason::CompileBudget => {
                        !loading && from.is_some()
                    }
                    RefuseReason::NegativeCache => {
                        new_remote && from.is_some_and(|p| l.is_negative(now, p, &t))
                    }
                    RefuseReason::Distrusted => {
                        new_remote && from.is_some_and(|p| l.is_distrusted(now, p, &t))
                    }
                    RefuseReason::Rejected => l.is_rejected(now, &t),
                    RefuseReason::Policy => !c.policy.allows(&t),
                    // Only a capsule with neither a sender nor local code, which the public
                    // API cannot express.
                    RefuseReason::NoSource => false,
                };
                assert!(why, "refused {reason:?} without cause: {occ:?}");
                assert_eq!(l.held_count(&t), per_type, "a refused capsule is not held");
                if matches!(c.policy, CodePolicy::AllowList(_)) && !c.policy.allows(&t) {
                    assert_eq!(reason, RefuseReason::Policy, "policy is checked first");
                }
            }
        }
    }

    /// Hand the loader a chunk from `from`; an accepted chunk must be of a running fetch,
    /// from a peer that sent a capsule of its type, and of a module under the size cap.
    fn chunk(&mut self, from: u8, chunk: &CodeChunk<'_>) {
        let t = chunk.capsule_type;
        let i = index_of(&t).expect("chunks are of known types");
        let fetching = self.loader.is_fetching(&t);
        let received = self.loader.counters().chunks_received;
        self.loader.handle_chunk(self.now, from, chunk);
        if self.loader.counters().chunks_received == received {
            return;
        }
        assert!(fetching, "chunk accepted with no fetch running: {chunk}");
        assert!(
            self.sources[i][usize::from(from)],
            "chunk accepted from {from}, which sent no capsule of the type: {chunk}"
        );
        let total = chunk.total_len as usize;
        assert!(
            total <= self.config.max_module_bytes,
            "over the cap: {chunk}"
        );
        assert!(
            total > 0
                && (chunk.offset as usize).is_multiple_of(CHUNK_LEN)
                && chunk.offset < chunk.total_len
                && chunk.bytes.len() == CHUNK_LEN.min(total - chunk.offset as usize),
            "malformed chunk accepted: {chunk}"
        );
        Rc::make_mut(&mut self.totals)[i] = Some((from, chunk.total_len));
    }

    /// Hand the loader a nack; one that is acted upon must come from a source of a running
    /// fetch, and a refusal negative-caches the peer for the type.
    fn nack(&mut self, i: usize, from: u8, reason: NackReason) {
        let t = types()[i];
        let fetching = self.loader.is_fetching(&t);
        let ignored = self.loader.counters().nacks_ignored;
        let nack = CodeNack {
            capsule_type: t,
            reason,
        };
        self.loader.handle_nack(self.now, from, &nack);
        if self.loader.counters().nacks_ignored != ignored {
            return;
        }
        assert!(
            fetching && self.sources[i][usize::from(from)],
            "{nack} obeyed"
        );
        let c = &self.config;
        if reason != NackReason::RateLimited
            && c.max_negative_entries > 0
            && !c.negative_ttl.is_zero()
        {
            assert!(
                self.loader.is_negative(self.now, from, &t),
                "{nack} not cached"
            );
        }
    }

    /// The peer the oldest drained request went to answers it.
    fn answer(&mut self, drop: u8, lying: bool) {
        let Some((to, i, first, bitmap)) = self.asked.pop_front() else {
            return;
        };
        let t = types()[i];
        let code = match (lying, is_real(i)) {
            (true, _) => lie(i),
            (false, true) => module(i),
            (false, false) => return self.nack(i, to, NackReason::NotFound),
        };
        let req = CodeRequest {
            capsule_type: t,
            first_chunk: first,
            bitmap: &bitmap,
        };
        let n = CodeChunk::chunk_count(code.len() as u32);
        for idx in req.wanted(n) {
            if drop & (1 << (idx % 8)) == 0 {
                self.chunk(to, &chunk_of(t, code, idx as usize));
            }
        }
    }

    /// A peer asks us for code: nothing at all goes to an unauthorized one, at most one
    /// window to anyone, and no peer gets more than its token bucket pays for.
    fn request(&mut self, i: usize, from: u8, first: u32, bitmap: &[u8]) -> Rc<Served> {
        let (t, now) = (types()[i], self.now);
        let c = &self.config;
        let neighbour = from < NEIGHBOURS;
        let authorized = neighbour
            || self
                .sent_at
                .get(&(from, i))
                .is_some_and(|&at| now.saturating_sub(at) <= c.serve_window);
        let served = Rc::new(Served {
            from,
            ty: t,
            code: self.store.0.get(&t).cloned(),
            first,
            bitmap: bitmap.to_vec(),
        });
        let req = CodeRequest {
            capsule_type: t,
            first_chunk: first,
            bitmap,
        };
        let before = self.loader.counters().clone();
        self.loader
            .handle_request(now, from, &req, neighbour, &mut self.store);
        let k = self.loader.counters();
        let added = self.loader.occupancy().transmit_queue - self.tags.len();
        if !authorized {
            assert_eq!(added, 0, "answered an unauthorized request: {req}");
            assert_eq!(k.transmit_dropped, before.transmit_dropped);
            assert_eq!(k.requests_unauthorized, before.requests_unauthorized + 1);
        } else if k.authorizations_evicted == 0 {
            assert_eq!(
                k.requests_unauthorized, before.requests_unauthorized,
                "refused an authorized request: {req}"
            );
        }
        let window = c.request_window.max(1) as usize;
        assert!(added <= window, "{added} messages for one request");
        let p = usize::from(from);
        let since = *self.first_request[p].get_or_insert(now);
        self.served[p] += k.bytes_served - before.bytes_served;
        self.requests[p] += 1;
        if k.serve_peers_evicted == 0 {
            let burst = c.serve_burst_bytes.max(CHUNK_LEN as u64);
            let earned =
                (now - since).as_nanos() * u128::from(c.serve_bytes_per_sec) / 1_000_000_000;
            // A refill rounds the time it consumes down to the nanosecond: at these rates
            // at most one byte too many per refill (one per request).
            let slack = u128::from(self.requests[p]);
            assert!(
                u128::from(self.served[p]) <= u128::from(burst) + earned + slack,
                "peer {from} was served {} bytes, more than its bucket pays",
                self.served[p]
            );
        }
        served
    }

    fn fire(&mut self) {
        self.loader.handle_timeout(self.now);
        let c = &self.config;
        if !c.request_timeout.is_zero()
            && !c.max_request_timeout.is_zero()
            && let Some(t) = self.loader.poll_timeout()
        {
            // Otherwise a driver sleeping until `poll_timeout` would spin.
            assert!(
                t > self.now,
                "handle_timeout left work due: {t:?} at {:?}",
                self.now
            );
        }
    }

    /// The node compiled type `i`: the held capsules come back in arrival order.
    fn take_held(&mut self, i: usize) {
        let t = types()[i];
        let got = self.loader.take_held(&t);
        let expected: Vec<Held<u8>> = self.held[i]
            .drain(..)
            .map(|(from, serial, len)| (from, capsule(serial, len)))
            .collect();
        assert!(got == expected, "take_held returned other capsules");
        assert!(!self.loader.is_loading(&t));
    }

    fn compile_failed(&mut self, i: usize, invalid: bool) {
        let t = types()[i];
        let dropped = self.loader.compile_failed(self.now, &t, invalid);
        assert_eq!(dropped, self.held[i].len());
        self.held[i].clear();
        assert!(!self.loader.is_loading(&t));
        let c = &self.config;
        if invalid && c.max_negative_entries > 0 && !c.negative_ttl.is_zero() {
            assert!(self.loader.is_rejected(self.now, &t));
        }
    }
}
