//! What is checked on the loader's outputs and state: every message drained against the
//! operation that queued it ([`Origin`]), every event, and after each operation the bounds
//! of `LoaderConfig`, the held-capsule model and the counters' accounting.

use std::time::Duration;

use ants_core::LoaderEvent;
use ants_wire::code::{MAX_BITMAP_LEN, MAX_MODULE_LEN};
use ants_wire::{CodeChunk, CodeRequest, Message, NackReason};
use sha2::{Digest, Sha256};

use super::{Harness, MAX_ASKED, Origin, Totals};
use crate::world::{TYPES, index_of, is_real, types};

impl Harness {
    /// Take up to `n` messages off the transmit queue and check each against its origin.
    pub(super) fn drain(&mut self, n: usize) {
        for _ in 0..n {
            let Some((to, bytes)) = self.loader.poll_transmit() else {
                assert!(self.tags.is_empty(), "fewer messages than were queued");
                return;
            };
            let origin = self.tags.pop_front().expect("a tag per queued message");
            self.check_message(to, &bytes, origin);
        }
    }

    fn check_message(&mut self, to: u8, bytes: &[u8], origin: Origin) {
        let msg = Message::parse(bytes).unwrap_or_else(|e| panic!("unparsable message: {e}"));
        match (msg, origin) {
            (Message::CodeRequest(r), Origin::Loading(totals)) => {
                self.check_request(to, &r, &totals)
            }
            (Message::CodeChunk(ch), Origin::Serving(s)) => {
                assert_eq!((to, ch.capsule_type), (s.from, s.ty), "{ch} misaddressed");
                let code = s.code.as_ref().expect("chunks only of code the node has");
                assert_eq!(ch.total_len as usize, code.len(), "{ch}");
                let off = ch.offset as usize;
                assert!(
                    code.get(off..off + ch.bytes.len()) == Some(ch.bytes),
                    "{ch}: wrong bytes"
                );
                let req = CodeRequest {
                    capsule_type: s.ty,
                    first_chunk: s.first,
                    bitmap: &s.bitmap,
                };
                let n = CodeChunk::chunk_count(ch.total_len);
                assert!(
                    req.wanted(n).any(|x| x == ch.index()),
                    "{ch} not asked for by {req}"
                );
            }
            (Message::CodeNack(nack), Origin::Serving(s)) => {
                assert_eq!(
                    (to, nack.capsule_type),
                    (s.from, s.ty),
                    "{nack} misaddressed"
                );
                let c = &self.config;
                let len = s.code.as_ref().map_or(0, |code| code.len());
                let max = c.max_module_bytes.min(MAX_MODULE_LEN as usize);
                let expected = match nack.reason {
                    NackReason::NotFound => len == 0 || c.serve_bytes_per_sec == 0,
                    NackReason::TooLarge => len > max && c.serve_bytes_per_sec > 0,
                    NackReason::RateLimited => len > 0 && len <= max && c.serve_bytes_per_sec > 0,
                };
                assert!(expected, "{nack} for a module of {len} bytes");
            }
            (msg, origin) => panic!("{msg:?} sent by {origin:?}"),
        }
    }

    /// A request goes to a peer that sent a capsule of its type, names 1..=window chunks,
    /// and, unless it is the first window of a transfer (length unknown), only chunks below
    /// the length the asked peer announced.
    fn check_request(&mut self, to: u8, r: &CodeRequest<'_>, totals: &Totals) {
        let i = index_of(&r.capsule_type).expect("requests are for known types");
        assert!(self.sources[i][usize::from(to)], "{r} to {to}, no source");
        // An empty bitmap would mean "every chunk from first on".
        assert!(!r.bitmap.is_empty(), "{r}: asks for everything");
        let window = self
            .config
            .request_window
            .clamp(1, (MAX_BITMAP_LEN * 8) as u32);
        let wanted: Vec<u32> = r.wanted(u32::MAX).collect();
        assert!(
            !wanted.is_empty() && wanted.len() <= window as usize,
            "{r}: {} chunks",
            wanted.len()
        );
        let first_window = r.first_chunk == 0 && wanted.iter().copied().eq(0..window);
        if !first_window {
            let Some((peer, total)) = totals[i] else {
                panic!("{r} to {to} before any length is known");
            };
            assert_eq!(peer, to, "{r}: the length came from another peer");
            let n = CodeChunk::chunk_count(total);
            assert!(wanted.iter().all(|&x| x < n), "{r}: beyond {n} chunks");
        }
        if self.asked.len() == MAX_ASKED {
            self.asked.pop_front();
        }
        self.asked
            .push_back((to, i, r.first_chunk, r.bitmap.to_vec()));
    }

    /// Drain the events: verified code hashes to its type and goes into the store
    /// (`install`: compiled and its capsules taken at once); every event is accounted for.
    pub(super) fn events(&mut self, install: bool) {
        while let Some(ev) = self.loader.poll_event() {
            match ev {
                LoaderEvent::Verified { ty, code } => {
                    let digest: [u8; 32] = Sha256::digest(&code).into();
                    assert_eq!(digest, ty.0, "verified code does not hash to its type");
                    let i = index_of(&ty).expect("known type");
                    assert!(is_real(i));
                    self.verified_seen += 1;
                    self.store.0.insert(ty, code);
                    if install {
                        self.loader
                            .compiled(self.now, &ty, Duration::from_millis(1));
                        self.take_held(i);
                    }
                }
                LoaderEvent::Failed { .. } => self.failed_seen += 1,
            }
        }
        let k = self.loader.counters();
        assert_eq!(self.verified_seen, k.verified, "a Verified event was lost");
        assert_eq!(self.failed_seen + k.events_dropped, k.fetch_failures);
    }

    /// The bounds of `LoaderConfig`, the held-capsule model and the counters' accounting.
    pub(super) fn check(&mut self) {
        let (c, l) = (&self.config, &self.loader);
        let o = l.occupancy();
        let k = l.counters();
        assert!(o.fetches <= c.max_concurrent_fetches, "{o:?}");
        assert!(o.held <= c.max_pending_total, "{o:?}");
        assert!(o.held_bytes <= c.max_pending_bytes, "{o:?}");
        assert!(
            o.reassembly_bytes <= o.fetches * c.max_module_bytes,
            "{o:?}"
        );
        assert!(o.transmit_queue <= c.max_transmit_queue, "{o:?}");
        assert!(o.negative <= c.max_negative_entries, "{o:?}");
        assert!(o.rejected <= c.max_negative_entries, "{o:?}");
        assert!(o.distrusted <= c.max_distrust_entries, "{o:?}");
        // LRU tables keep at least one entry.
        assert!(o.budget_peers <= c.max_budget_peers.max(1), "{o:?}");
        assert!(o.authorizations <= c.max_authorizations.max(1), "{o:?}");
        assert!(o.serve_peers <= c.max_serve_peers.max(1), "{o:?}");
        let failed_cap = c.max_concurrent_fetches.saturating_mul(4).max(16) as u64;
        assert!(o.events as u64 <= failed_cap + (k.verified - self.verified_seen));

        let mut loading = 0;
        for i in 0..TYPES {
            let t = types()[i];
            if l.is_loading(&t) {
                loading += 1;
            } else {
                // The load ended (failed, timed out): its capsules were dropped.
                self.held[i].clear();
            }
            assert_eq!(l.held_count(&t), self.held[i].len(), "type {i}");
            assert!(self.held[i].len() <= c.max_pending_per_type);
        }
        assert_eq!(o.fetches, loading);
        let held = self.held.iter().flatten();
        assert_eq!(o.held, held.clone().count());
        assert_eq!(o.held_bytes, held.map(|h| h.2).sum::<usize>());
        let gone = k.held_released + k.held_dropped_failed + k.held_dropped_compile;
        assert_eq!(
            k.held,
            gone + o.held as u64,
            "held capsules unaccounted for"
        );

        let timeout = l.poll_timeout();
        assert_eq!(timeout.is_some(), o.fetches > 0);
        if let Some(t) = timeout {
            assert!(t <= self.now + c.load_timeout.max(c.compile_timeout));
        }
    }
}
