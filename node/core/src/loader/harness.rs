//! An in-crate harness (quinn-proto style): several `CodeLoader<u8>`s exchanging their
//! `poll_transmit` output over links with a fixed delay and seeded random loss, in virtual
//! time. Each node has a [`CodeCache`] it serves from; `Verified` modules are cached and the
//! held capsules "run" at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ants_wire::{CapsuleType, CodeRequest, Message};

use super::tests::module;
use super::*;
use crate::CodeCache;

const DELAY: Duration = Duration::from_millis(5);

/// xorshift64*: tiny, seeded, good enough for loss decisions.
struct Rng(u64);

impl Rng {
    fn chance(&mut self, p: f64) -> bool {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((x >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

struct Peer {
    loader: CodeLoader<u8>,
    cache: CodeCache,
    neighbours: BTreeSet<u8>,
    ran: Vec<(u8, Vec<u8>)>,
    failed: Vec<LoaderEvent>,
}

struct Net {
    now: Duration,
    peers: Vec<Peer>,
    /// Datagrams in flight: (arrival, seq) → (from, to, bytes).
    wire: BTreeMap<(Duration, u64), (u8, u8, Vec<u8>)>,
    seq: u64,
    loss: f64,
    rng: Rng,
    /// Bytes sent, by (from, to).
    sent: BTreeMap<(u8, u8), usize>,
}

impl Net {
    fn new(n: usize, config: LoaderConfig, loss: f64, seed: u64) -> Self {
        let peers = (0..n)
            .map(|_| Peer {
                loader: CodeLoader::new(config.clone()),
                cache: CodeCache::new(8 << 20),
                neighbours: BTreeSet::new(),
                ran: Vec::new(),
                failed: Vec::new(),
            })
            .collect();
        Net {
            now: Duration::ZERO,
            peers,
            wire: BTreeMap::new(),
            seq: 0,
            loss,
            rng: Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            sent: BTreeMap::new(),
        }
    }

    /// `at` holds `code` (any bytes, so a liar can hold wrong ones) and has sent a capsule
    /// of `ty` to `to`.
    fn serve(&mut self, at: u8, ty: CapsuleType, code: &[u8], to: u8) {
        let p = &mut self.peers[usize::from(at)];
        p.cache.insert(ty, Arc::from(code)).unwrap();
        p.loader.note_sent(self.now, ty, to);
    }

    fn hold(&mut self, at: u8, ty: CapsuleType, from: u8, capsule: &[u8]) -> Admit {
        let now = self.now;
        let admit = self.peers[usize::from(at)]
            .loader
            .hold(now, ty, from, capsule.to_vec());
        self.pump(at);
        admit
    }

    /// Move a peer's output onto the wire and process its events.
    fn pump(&mut self, i: u8) {
        while let Some((to, bytes)) = self.peers[usize::from(i)].loader.poll_transmit() {
            *self.sent.entry((i, to)).or_default() += bytes.len();
            if !self.rng.chance(self.loss) {
                self.seq += 1;
                self.wire
                    .insert((self.now + DELAY, self.seq), (i, to, bytes));
            }
        }
        let p = &mut self.peers[usize::from(i)];
        while let Some(ev) = p.loader.poll_event() {
            match ev {
                LoaderEvent::Verified { ty, code } => {
                    p.cache.insert(ty, code).unwrap();
                    let held = p.loader.take_held(&ty);
                    p.ran
                        .extend(held.into_iter().filter_map(|(f, c)| Some((f?, c))));
                }
                failed @ LoaderEvent::Failed { .. } => p.failed.push(failed),
            }
        }
    }

    fn deliver(&mut self, from: u8, to: u8, bytes: &[u8]) {
        let now = self.now;
        let p = &mut self.peers[usize::from(to)];
        match Message::parse(bytes) {
            Ok(Message::CodeRequest(r)) => {
                let nb = p.neighbours.contains(&from);
                p.loader.handle_request(now, from, &r, nb, &mut p.cache);
            }
            Ok(Message::CodeChunk(c)) => p.loader.handle_chunk(now, from, &c),
            Ok(Message::CodeNack(n)) => p.loader.handle_nack(now, from, &n),
            other => panic!("unexpected message {other:?}"),
        }
        self.pump(to);
    }

    /// Run until nothing is left to do or `limit` of virtual time passed.
    fn run(&mut self, limit: Duration) {
        let end = self.now + limit;
        loop {
            let next_wire = self.wire.keys().next().map(|k| k.0);
            let next_timer = self
                .peers
                .iter()
                .filter_map(|p| p.loader.poll_timeout())
                .min();
            let Some(next) = next_wire.into_iter().chain(next_timer).min() else {
                return;
            };
            if next > end {
                return;
            }
            self.now = next;
            if next_wire == Some(next) {
                let Some((_, (from, to, bytes))) = self.wire.pop_first() else {
                    return;
                };
                self.deliver(from, to, &bytes);
            } else {
                for i in 0..self.peers.len() as u8 {
                    if self.peers[usize::from(i)].loader.poll_timeout() <= Some(next) {
                        self.peers[usize::from(i)].loader.handle_timeout(next);
                        self.pump(i);
                    }
                }
            }
        }
    }

    fn counters(&self, i: u8) -> &LoaderCounters {
        self.peers[usize::from(i)].loader.counters()
    }
}

fn cfg() -> LoaderConfig {
    LoaderConfig::default()
}

#[test]
fn a_module_transfers_and_verifies() {
    let (ty, m) = module(5000, 1);
    let mut net = Net::new(2, cfg(), 0.0, 1);
    net.serve(0, ty, &m, 1);
    assert_eq!(net.hold(1, ty, 0, b"capsule"), Admit::Held);
    net.run(Duration::from_secs(10));
    let b = &mut net.peers[1];
    assert_eq!(b.ran, vec![(0, b"capsule".to_vec())]);
    assert_eq!(b.cache.get(&ty).map(|c| c.to_vec()), Some(m));
    let k = b.loader.counters();
    assert_eq!((k.requests_sent, k.chunks_received, k.verified), (1, 5, 1));
    assert_eq!(net.counters(0).chunks_served, 5);
    // The load took one round trip.
    assert_eq!(net.now, 2 * DELAY);
}

#[test]
fn twenty_percent_loss_both_ways_completes_by_retries() {
    for seed in 0..20 {
        for len in [5000, 60_000] {
            let (ty, m) = module(len, seed as u8);
            let mut net = Net::new(2, cfg(), 0.2, seed);
            net.serve(0, ty, &m, 1);
            net.hold(1, ty, 0, b"c");
            net.run(Duration::from_secs(10));
            let b = &net.peers[1];
            assert_eq!(b.ran.len(), 1, "seed {seed} len {len}: {:?}", b.failed);
            assert!(b.cache.contains(&ty));
            if len == 60_000 {
                assert!(b.loader.counters().retries >= 1, "seed {seed}");
            }
        }
    }
}

#[test]
fn a_liar_is_caught_and_an_honest_candidate_completes_the_load() {
    // 0 asks; 1 lies (right length, wrong bytes); 2 is honest.
    let (ty, m) = module(5000, 3);
    let lie: Vec<u8> = m.iter().map(|b| b ^ 0x5A).collect();
    let mut net = Net::new(3, cfg(), 0.0, 3);
    net.serve(1, ty, &lie, 0);
    net.serve(2, ty, &m, 0);
    net.hold(0, ty, 1, b"via liar");
    net.hold(0, ty, 2, b"via honest");
    net.run(Duration::from_secs(10));
    let now = net.now;
    let a = &mut net.peers[0];
    let k = a.loader.counters();
    // The liar's transfer is retried once before it is distrusted.
    assert_eq!((k.hash_mismatches, k.verified), (2, 1));
    assert!(a.loader.is_distrusted(now, 1, &ty));
    assert!(!a.loader.is_negative(now, 1, &ty) && !a.loader.is_rejected(now, &ty));
    assert_eq!(a.cache.get(&ty).map(|c| c.to_vec()), Some(m));
    assert!(a.failed.is_empty());
    assert_eq!(a.ran.len(), 2);
    assert_eq!(net.counters(1).chunks_served, 10);
}

#[test]
fn an_unauthorized_requester_gets_zero_bytes() {
    let (ty, m) = module(5000, 4);
    let mut net = Net::new(3, cfg(), 0.0, 4);
    net.serve(0, ty, &m, 1); // 0 sent ty to 1 only
    let req = CodeRequest {
        capsule_type: ty,
        first_chunk: 0,
        bitmap: &[],
    };
    let mut buf = vec![0; req.buffer_len()];
    req.emit(&mut buf).unwrap();
    net.deliver(2, 0, &buf);
    net.run(Duration::from_secs(1));
    assert_eq!(net.sent.get(&(0, 2)), None);
    assert_eq!(net.counters(0).requests_unauthorized, 1);
    // A configured neighbour is served without having received the type.
    net.peers[0].neighbours.insert(2);
    net.deliver(2, 0, &buf);
    assert_eq!(net.counters(0).chunks_served, 5);
}

#[test]
fn rate_limiting_sends_a_nack_and_the_requester_backs_off() {
    // 0 serves two 8000-byte modules to 1 with a 8 KiB burst and 20 KiB/s: the second
    // request finds the bucket empty.
    let config = LoaderConfig {
        max_module_bytes: 8192,
        serve_bytes_per_sec: 20 * 1024,
        serve_burst_bytes: 8192,
        ..cfg()
    };
    let (t1, m1) = module(8000, 5);
    let (t2, m2) = module(8000, 6);
    let mut net = Net::new(2, config, 0.0, 5);
    net.serve(0, t1, &m1, 1);
    net.serve(0, t2, &m2, 1);
    net.hold(1, t1, 0, b"one");
    net.hold(1, t2, 0, b"two");
    net.run(Duration::from_secs(10));
    assert!(net.counters(0).requests_rate_limited >= 1);
    assert!(net.counters(1).nacks_received >= 1);
    assert_eq!(net.peers[1].ran.len(), 2);
    assert!(net.peers[1].failed.is_empty());
}

#[test]
fn queue_bounds_refuse_and_count() {
    let config = LoaderConfig {
        max_pending_per_type: 2,
        max_pending_total: 3,
        ..cfg()
    };
    let (t1, m1) = module(3000, 7);
    let (t2, m2) = module(3000, 8);
    let mut net = Net::new(2, config, 0.0, 7);
    net.serve(0, t1, &m1, 1);
    net.serve(0, t2, &m2, 1);
    let full = Admit::Refused(RefuseReason::QueueFull);
    assert_eq!(net.hold(1, t1, 0, b"a"), Admit::Held);
    assert_eq!(net.hold(1, t1, 0, b"b"), Admit::Held);
    assert_eq!(net.hold(1, t1, 0, b"c"), full);
    assert_eq!(net.hold(1, t2, 0, b"d"), Admit::Held);
    assert_eq!(net.hold(1, t2, 0, b"e"), full);
    net.run(Duration::from_secs(10));
    let ran: Vec<_> = net.peers[1].ran.iter().map(|r| r.1.clone()).collect();
    assert_eq!(ran, vec![b"a".to_vec(), b"b".to_vec(), b"d".to_vec()]);
    assert_eq!(net.counters(1).held_dropped_queue_full, 2);
}

#[test]
fn load_timeout_drops_held_capsules_and_negative_caches() {
    let (ty, m) = module(3000, 9);
    let mut net = Net::new(2, cfg(), 1.0, 9); // nothing gets through
    net.serve(0, ty, &m, 1);
    net.hold(1, ty, 0, b"a");
    net.hold(1, ty, 0, b"b");
    net.run(Duration::from_secs(30));
    assert_eq!(net.now, Duration::from_secs(5));
    let b = &net.peers[1];
    assert_eq!(
        b.failed,
        vec![LoaderEvent::Failed {
            ty,
            reason: FailReason::Timeout,
            dropped: 2
        }]
    );
    assert_eq!(b.loader.counters().held_dropped_failed, 2);
    assert_eq!(
        net.hold(1, ty, 0, b"c"),
        Admit::Refused(RefuseReason::NegativeCache)
    );
    // Once the negative entry expires, with a working link, the load succeeds.
    net.loss = 0.0;
    net.now += cfg().negative_ttl;
    assert_eq!(net.hold(1, ty, 0, b"d"), Admit::Held);
    net.serve(0, ty, &m, 1);
    net.run(Duration::from_secs(10));
    assert_eq!(net.peers[1].ran, vec![(0, b"d".to_vec())]);
}

#[test]
fn same_seed_same_trace() {
    let trace = |seed| {
        let (ty, m) = module(60_000, 1);
        let mut net = Net::new(2, cfg(), 0.2, seed);
        net.serve(0, ty, &m, 1);
        net.hold(1, ty, 0, b"c");
        net.run(Duration::from_secs(10));
        (net.now, net.sent.clone(), net.counters(1).clone())
    };
    assert_eq!(trace(42), trace(42));
}
