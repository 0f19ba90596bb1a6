//! Serving code to peers, with the security must-haves of DESIGN.md §4:
//!
//! - a request is answered only if the requester is a configured neighbour or we sent it a
//!   capsule of that type within `serve_window` ([`CodeLoader::note_sent`]); anything else
//!   gets **zero bytes** back (no nack either), so a spoofed request cannot be reflected or
//!   amplified;
//! - one request is answered with at most `request_window` chunks, so a request spoofed with
//!   a neighbour's address makes us send that neighbour at most one window (about 32 KiB by
//!   default), not a whole module;
//! - module bytes served per peer are limited by a token bucket (`serve_bytes_per_sec`,
//!   burst `serve_burst_bytes`); a request the bucket cannot pay a single chunk of gets one
//!   `rate-limited` nack, a partly paid one gets the chunks paid for (the requester asks
//!   again for the rest). With `serve_bytes_per_sec = 0` nothing is ever served: every
//!   authorized request gets a `not-found` nack.
//!
//! Both tables are LRU-bounded (`max_authorizations`, `max_serve_peers`), evictions counted.
//! Buckets are only created for authorized peers.

use std::fmt::Debug;
use std::hash::Hash;
use std::num::NonZeroUsize;
use std::time::Duration;

use ants_wire::code::{CHUNK_LEN, MAX_MODULE_LEN};
use ants_wire::{CapsuleType, CodeChunk, CodeRequest, NackReason};
use lru::LruCache;

use super::{CodeLoader, CodeSource, LoaderConfig};

/// A token bucket of module bytes.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u64,
    last: Duration,
}

impl Bucket {
    /// Add the tokens earned since `last`, keeping the fraction not yet worth a byte.
    fn refill(&mut self, now: Duration, rate: u64, burst: u64) {
        if now <= self.last || rate == 0 {
            return;
        }
        let elapsed = (now - self.last).as_nanos();
        let earned = elapsed.saturating_mul(u128::from(rate)) / 1_000_000_000;
        if earned == 0 {
            return;
        }
        let tokens = u128::from(self.tokens).saturating_add(earned);
        if tokens >= u128::from(burst) {
            self.tokens = burst;
            self.last = now;
        } else {
            // tokens < burst, so it fits in u64; spent ≤ elapsed.
            self.tokens = tokens as u64;
            let spent = earned * 1_000_000_000 / u128::from(rate);
            self.last += Duration::from_nanos(u64::try_from(spent).unwrap_or(u64::MAX));
        }
    }
}

/// Who may fetch what from us, and how fast.
pub(super) struct Server<P> {
    authorized: LruCache<(P, CapsuleType), Duration>,
    buckets: LruCache<P, Bucket>,
}

impl<P> Debug for Server<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Table sizes are in `CodeLoader::occupancy`.
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

fn capacity(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

impl<P: Hash + Eq> Server<P> {
    pub(super) fn new(config: &LoaderConfig) -> Self {
        Server {
            authorized: LruCache::new(capacity(config.max_authorizations)),
            buckets: LruCache::new(capacity(config.max_serve_peers)),
        }
    }

    pub(super) fn authorizations(&self) -> usize {
        self.authorized.len()
    }

    pub(super) fn peers(&self) -> usize {
        self.buckets.len()
    }
}

impl<P: Copy + Eq + Hash + Ord + Debug> CodeLoader<P> {
    /// We sent a capsule of `ty` to `to`: authorizes `to` to fetch `ty` from us for
    /// `serve_window`. At most `max_authorizations` pairs are kept (least recently noted
    /// evicted; counted when the evicted pair was still inside its window).
    pub fn note_sent(&mut self, now: Duration, ty: CapsuleType, to: P) {
        let key = (to, ty);
        if let Some((old, at)) = self.server.authorized.push(key, now)
            && old != key
            && now.saturating_sub(at) <= self.config.serve_window
        {
            self.counters.authorizations_evicted += 1;
        }
    }

    /// A peer asks for chunks of a module. Answered only if `is_neighbour` or we sent it a
    /// capsule of that type within `serve_window`; otherwise nothing at all is sent and
    /// `requests_unauthorized` counts it. An authorized request for code `source` lacks gets
    /// a `not-found` nack; for a module above `max_module_bytes` a `too-large` nack.
    pub fn handle_request(
        &mut self,
        now: Duration,
        from: P,
        req: &CodeRequest<'_>,
        is_neighbour: bool,
        source: &mut dyn CodeSource,
    ) {
        let ty = req.capsule_type;
        let window = self.config.serve_window;
        let authorized = is_neighbour
            || self
                .server
                .authorized
                .get(&(from, ty))
                .is_some_and(|&at| now.saturating_sub(at) <= window);
        let k = &mut self.counters;
        if !authorized {
            k.requests_unauthorized += 1;
            return;
        }
        let code = match source.code(&ty) {
            Some(code) if !code.is_empty() && self.config.serve_bytes_per_sec > 0 => code,
            _ => return self.outbox.nack(from, ty, NackReason::NotFound, k),
        };
        let max = self.config.max_module_bytes.min(MAX_MODULE_LEN as usize);
        if code.len() > max {
            return self.outbox.nack(from, ty, NackReason::TooLarge, k);
        }
        // code.len() ≤ MAX_MODULE_LEN, a u32.
        let total = code.len() as u32;
        let burst = self.config.serve_burst_bytes.max(CHUNK_LEN as u64);
        let rate = self.config.serve_bytes_per_sec;
        if !self.server.buckets.contains(&from) {
            let fresh = Bucket {
                tokens: burst,
                last: now,
            };
            if self.server.buckets.push(from, fresh).is_some() {
                k.serve_peers_evicted += 1;
            }
        }
        let Some(bucket) = self.server.buckets.get_mut(&from) else {
            return;
        };
        bucket.refill(now, rate, burst);
        let mut sent = 0u64;
        let window = self.config.request_window.max(1) as usize;
        let mut wanted = req.wanted(CodeChunk::chunk_count(total));
        for idx in wanted.by_ref().take(window) {
            let offset = idx as usize * CHUNK_LEN;
            let bytes = &code[offset..code.len().min(offset + CHUNK_LEN)];
            let len = bytes.len() as u64;
            if bucket.tokens < len {
                if sent == 0 {
                    k.requests_rate_limited += 1;
                    self.outbox.nack(from, ty, NackReason::RateLimited, k);
                }
                break;
            }
            let chunk = CodeChunk {
                capsule_type: ty,
                total_len: total,
                offset: offset as u32,
                bytes,
            };
            if !self.outbox.chunk(from, &chunk, k) {
                break;
            }
            bucket.tokens -= len;
            k.chunks_served += 1;
            k.bytes_served += len;
            sent += 1;
        }
        if sent as usize == window && wanted.next().is_some() {
            k.requests_truncated += 1;
        }
        if sent > 0 {
            k.requests_served += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use ants_wire::{CodeNack, Message};

    use super::*;

    const TY: CapsuleType = CapsuleType([9; 32]);
    const MS: Duration = Duration::from_millis(1);

    #[derive(Default)]
    struct Source(BTreeMap<CapsuleType, Arc<[u8]>>);

    impl CodeSource for Source {
        fn code(&mut self, ty: &CapsuleType) -> Option<Arc<[u8]>> {
            self.0.get(ty).cloned()
        }
    }

    fn source(len: usize) -> Source {
        let mut s = Source::default();
        s.0.insert(TY, vec![1u8; len].into());
        s
    }

    fn all() -> CodeRequest<'static> {
        CodeRequest {
            capsule_type: TY,
            first_chunk: 0,
            bitmap: &[],
        }
    }

    fn drain(l: &mut CodeLoader<u8>) -> Vec<(u8, Vec<u8>)> {
        std::iter::from_fn(|| l.poll_transmit()).collect()
    }

    fn nack_of(msg: &[u8]) -> Option<NackReason> {
        CodeNack::parse(msg).ok().map(|n| n.reason)
    }

    #[test]
    fn unauthorized_request_gets_zero_bytes() {
        let mut l = CodeLoader::new(LoaderConfig::default());
        let mut src = source(3000);
        l.handle_request(MS, 7, &all(), false, &mut src);
        // Authorized for another type or another peer does not count either.
        l.note_sent(MS, CapsuleType([1; 32]), 7);
        l.note_sent(MS, TY, 8);
        l.handle_request(MS, 7, &all(), false, &mut src);
        assert!(drain(&mut l).is_empty());
        assert_eq!(l.counters().requests_unauthorized, 2);
        assert_eq!(l.counters().nacks_sent, 0);
    }

    #[test]
    fn note_sent_authorizes_within_window_only() {
        let mut l = CodeLoader::new(LoaderConfig::default());
        let mut src = source(3000);
        l.note_sent(MS, TY, 7);
        l.handle_request(2 * MS, 7, &all(), false, &mut src);
        let out = drain(&mut l);
        assert_eq!(out.len(), 3);
        assert!(
            out.iter()
                .all(|(to, m)| *to == 7 && matches!(Message::parse(m), Ok(Message::CodeChunk(_))))
        );
        let late = MS + l.config().serve_window + MS;
        l.handle_request(late, 7, &all(), false, &mut src);
        assert!(drain(&mut l).is_empty());
        assert_eq!(l.counters().requests_unauthorized, 1);
        assert_eq!(
            (l.counters().requests_served, l.counters().chunks_served),
            (1, 3)
        );
    }

    #[test]
    fn neighbour_is_authorized_and_missing_code_is_nacked() {
        let mut l = CodeLoader::new(LoaderConfig::default());
        l.handle_request(MS, 7, &all(), true, &mut Source::default());
        let out = drain(&mut l);
        assert_eq!(out.len(), 1);
        assert_eq!(nack_of(&out[0].1), Some(NackReason::NotFound));
    }

    #[test]
    fn oversized_module_is_nacked_too_large() {
        let config = LoaderConfig {
            max_module_bytes: 2000,
            ..LoaderConfig::default()
        };
        let mut l = CodeLoader::new(config);
        l.handle_request(MS, 7, &all(), true, &mut source(3000));
        let out = drain(&mut l);
        assert_eq!(nack_of(&out[0].1), Some(NackReason::TooLarge));
    }

    #[test]
    fn bitmap_selects_the_chunks_served() {
        let mut l = CodeLoader::new(LoaderConfig::default());
        let req = CodeRequest {
            capsule_type: TY,
            first_chunk: 1,
            bitmap: &[0b101],
        };
        l.handle_request(MS, 7, &req, true, &mut source(5000));
        let offsets: Vec<u32> = drain(&mut l)
            .iter()
            .filter_map(|(_, m)| CodeChunk::parse(m).ok().map(|c| c.offset))
            .collect();
        assert_eq!(offsets, vec![1024, 3072]);
    }

    #[test]
    fn token_bucket_limits_and_nacks_once_per_request() {
        let config = LoaderConfig {
            max_module_bytes: 4096,
            serve_bytes_per_sec: 10_240,
            serve_burst_bytes: 4096,
            ..LoaderConfig::default()
        };
        let mut l = CodeLoader::new(config);
        let mut src = source(4096);
        // Burst pays the whole module once.
        l.handle_request(MS, 7, &all(), true, &mut src);
        assert_eq!(drain(&mut l).len(), 4);
        // Empty bucket: one rate-limited nack, no chunk.
        l.handle_request(MS, 7, &all(), true, &mut src);
        let out = drain(&mut l);
        assert_eq!(out.len(), 1);
        assert_eq!(nack_of(&out[0].1), Some(NackReason::RateLimited));
        assert_eq!(l.counters().requests_rate_limited, 1);
        // 200 ms later 2048 bytes were earned: two chunks, no nack.
        l.handle_request(MS * 201, 7, &all(), true, &mut src);
        assert_eq!(drain(&mut l).len(), 2);
        // Another peer has its own bucket.
        l.handle_request(MS * 201, 8, &all(), true, &mut src);
        assert_eq!(drain(&mut l).len(), 4);
        assert_eq!(l.counters().bytes_served, 4096 * 2 + 2048);
    }

    #[test]
    fn bucket_keeps_fractions() {
        let mut b = Bucket {
            tokens: 0,
            last: Duration::ZERO,
        };
        // 3 bytes/s: ten refills a tenth of a second apart earn 3 bytes in total.
        for i in 1..=10 {
            b.refill(Duration::from_millis(100 * i), 3, 100);
        }
        assert_eq!(b.tokens, 3);
    }

    #[test]
    fn tables_are_bounded_and_evictions_counted() {
        let config = LoaderConfig {
            max_authorizations: 2,
            max_serve_peers: 1,
            ..LoaderConfig::default()
        };
        let mut l = CodeLoader::new(config);
        for peer in 0..4u8 {
            l.note_sent(MS, TY, peer);
        }
        let mut src = source(10);
        for peer in 0..4u8 {
            l.handle_request(MS, peer, &all(), true, &mut src);
        }
        let occ = l.occupancy();
        assert_eq!((occ.authorizations, occ.serve_peers), (2, 1));
        assert_eq!(l.counters().authorizations_evicted, 2);
        assert_eq!(l.counters().serve_peers_evicted, 3);
    }

    #[test]
    fn full_transmit_queue_stops_serving() {
        let config = LoaderConfig {
            max_transmit_queue: 2,
            ..LoaderConfig::default()
        };
        let mut l = CodeLoader::new(config);
        l.handle_request(MS, 7, &all(), true, &mut source(5000));
        assert_eq!(drain(&mut l).len(), 2);
        assert_eq!(l.counters().transmit_dropped, 1);
        assert_eq!(l.counters().bytes_served, 2048);
    }
}
