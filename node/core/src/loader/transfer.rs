//! [`Transfer`]: reassembly of one module from one peer, and the requests that ask it for
//! exactly the chunks still missing.
//!
//! A request covers a *window*: at most `window` missing chunks, named by a bitmap starting at
//! the first missing chunk (the first request, before the module's length is known, asks for
//! chunks `0..window`). When every chunk of the window has arrived and the module is still
//! incomplete, the loader asks for the next window at once instead of waiting for the retry
//! timer. A chunk beyond every window asked so far is refused: a peer can only fill in what
//! it was asked for, and a server answers at most one window per request, so one request
//! cannot make a node send a whole module.

use std::time::Duration;

use ants_wire::code::{CHUNK_LEN, MAX_BITMAP_LEN};
use ants_wire::{CodeChunk, CodeRequest};

/// Whether a chunk's offset, length and total describe a real chunk of its module. Parsed
/// chunks always do; the loader checks again because its callers may build chunks by hand.
pub(super) fn geometry_ok(chunk: &CodeChunk<'_>) -> bool {
    let (total, offset) = (chunk.total_len as usize, chunk.offset as usize);
    total > 0
        && offset.is_multiple_of(CHUNK_LEN)
        && offset < total
        && chunk.bytes.len() == CHUNK_LEN.min(total - offset)
}

/// What [`Transfer::accept`] made of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Accepted {
    /// A chunk not seen before. `complete`: the module is whole; `window_done`: every chunk
    /// the last request asked for has arrived.
    New { complete: bool, window_done: bool },
    /// Already received; `conflict` if its bytes differ from the first copy's.
    Duplicate { conflict: bool },
    /// A chunk no request asked for.
    Unasked,
    /// The chunk's total length differs from the transfer's, or exceeds the module cap.
    Abort,
}

/// One module being fetched from one peer.
#[derive(Debug)]
pub(super) struct Transfer<P> {
    /// The peer asked.
    pub(super) peer: P,
    /// Request rounds sent since the last new chunk.
    pub(super) rounds: u32,
    /// Current retry timeout.
    pub(super) rto: Duration,
    /// When to re-request if no new chunk arrives.
    pub(super) deadline: Duration,
    total_len: Option<u32>,
    buf: Vec<u8>,
    have: Vec<bool>,
    missing: u32,
    window_first: u32,
    window_end: u32,
    window_missing: u32,
    /// Chunks the last request asked for.
    window_asked: u32,
    /// One past the highest chunk index any request asked for.
    asked_end: u32,
    /// A chunk arrived twice with different bytes: someone else is sending "from" this peer.
    pub(super) conflicted: bool,
}

impl<P> Transfer<P> {
    pub(super) fn new(peer: P, now: Duration, rto: Duration) -> Self {
        Transfer {
            peer,
            rounds: 0,
            rto,
            deadline: now.saturating_add(rto),
            total_len: None,
            buf: Vec::new(),
            have: Vec::new(),
            missing: 0,
            window_first: 0,
            window_end: 0,
            window_missing: 0,
            window_asked: 0,
            asked_end: 0,
            conflicted: false,
        }
    }

    /// Whether the last request brought at least half of the chunks it asked for: a lossy
    /// but working peer does, a peer dripping one chunk per request does not.
    pub(super) fn round_progressed(&self) -> bool {
        let got = self.window_asked.saturating_sub(self.window_missing);
        self.window_asked > 0 && got * 2 >= self.window_asked
    }

    /// Bytes allocated for reassembly.
    pub(super) fn reassembly_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Record a chunk whose geometry is valid ([`geometry_ok`]). The buffer is allocated once,
    /// from the first chunk's total length, and only if it is at most `max_module_bytes`.
    pub(super) fn accept(&mut self, chunk: &CodeChunk<'_>, max_module_bytes: usize) -> Accepted {
        let total = chunk.total_len;
        if total as usize > max_module_bytes {
            return Accepted::Abort;
        }
        let idx = chunk.index();
        if idx >= self.asked_end {
            return Accepted::Unasked;
        }
        match self.total_len {
            Some(t) if t != total => return Accepted::Abort,
            Some(_) => {}
            None => {
                let n = CodeChunk::chunk_count(total);
                self.total_len = Some(total);
                self.buf = vec![0; total as usize];
                self.have = vec![false; n as usize];
                self.missing = n;
                // The first request asked for chunks 0..window: those that exist.
                self.window_end = self.window_end.min(n);
                self.asked_end = self.asked_end.min(n);
                self.window_missing = self.window_end - self.window_first;
                self.window_asked = self.window_missing;
            }
        }
        let offset = chunk.offset as usize;
        let (Some(seen), Some(dst)) = (
            self.have.get_mut(idx as usize),
            self.buf.get_mut(offset..offset + chunk.bytes.len()),
        ) else {
            return Accepted::Abort;
        };
        if *seen {
            let conflict = *dst != *chunk.bytes;
            self.conflicted |= conflict;
            return Accepted::Duplicate { conflict };
        }
        dst.copy_from_slice(chunk.bytes);
        *seen = true;
        self.missing -= 1;
        if (self.window_first..self.window_end).contains(&idx) {
            self.window_missing = self.window_missing.saturating_sub(1);
        }
        Accepted::New {
            complete: self.missing == 0,
            window_done: self.window_missing == 0,
        }
    }

    /// The next request's `first chunk` and bitmap, naming at most `window` (at least 1)
    /// missing chunks; records the window it covers.
    pub(super) fn plan_request(&mut self, window: u32) -> (u32, Vec<u8>) {
        let window = (window.max(1) as usize).min(MAX_BITMAP_LEN * 8);
        if self.total_len.is_none() {
            // Length unknown: ask for the first `window` chunks (the peer sends those that
            // exist; the first one tells the length).
            let mut bitmap = vec![0xFFu8; window.div_ceil(8)];
            if let Some(last) = bitmap.last_mut()
                && !window.is_multiple_of(8)
            {
                *last = (1u8 << (window % 8)) - 1;
            }
            self.window_first = 0;
            self.window_end = window as u32;
            self.window_missing = window as u32;
            self.window_asked = window as u32;
            self.asked_end = self.asked_end.max(window as u32);
            return (0, bitmap);
        }
        let n = self.have.len();
        let first = self.have.iter().position(|h| !h).unwrap_or(n);
        let span_end = n.min(first + MAX_BITMAP_LEN * 8);
        let mut bitmap = Vec::new();
        let (mut asked, mut end) = (0usize, first);
        for i in (first..span_end).filter(|&i| !self.have[i]).take(window) {
            let bit = i - first;
            if bitmap.len() <= bit / 8 {
                bitmap.resize(bit / 8 + 1, 0);
            }
            bitmap[bit / 8] |= 1 << (bit % 8);
            asked += 1;
            end = i + 1;
        }
        // Chunk counts fit in u32: total_len is a u32.
        self.window_first = first as u32;
        self.window_end = end as u32;
        self.window_missing = asked as u32;
        self.window_asked = asked as u32;
        self.asked_end = self.asked_end.max(end as u32);
        (first as u32, bitmap)
    }

    /// The reassembled module (call once `accept` reported `complete`).
    pub(super) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Build the request a plan describes (kept here so tests can check plans against
/// [`CodeRequest::wanted`]).
pub(super) fn request_for<'a>(
    ty: ants_wire::CapsuleType,
    plan: &'a (u32, Vec<u8>),
) -> CodeRequest<'a> {
    CodeRequest {
        capsule_type: ty,
        first_chunk: plan.0,
        bitmap: &plan.1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ants_wire::CapsuleType;

    const TY: CapsuleType = CapsuleType([5; 32]);
    const W: u32 = 32;

    fn module(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn chunk(m: &[u8], idx: usize) -> CodeChunk<'_> {
        let off = idx * CHUNK_LEN;
        CodeChunk {
            capsule_type: TY,
            total_len: m.len() as u32,
            offset: off as u32,
            bytes: &m[off..m.len().min(off + CHUNK_LEN)],
        }
    }

    fn wanted(t: &mut Transfer<u8>, window: u32, n: u32) -> Vec<u32> {
        let plan = t.plan_request(window);
        request_for(TY, &plan).wanted(n).collect()
    }

    #[test]
    fn first_request_asks_for_one_window() {
        let mut t = Transfer::new(1u8, Duration::ZERO, Duration::from_millis(100));
        assert_eq!(wanted(&mut t, W, 100), (0..32).collect::<Vec<_>>());
        assert_eq!(t.deadline, Duration::from_millis(100));
        let mut t = Transfer::new(1u8, Duration::ZERO, Duration::ZERO);
        assert_eq!(wanted(&mut t, 3, 100), vec![0, 1, 2]);
    }

    #[test]
    fn reassembles_in_any_order_and_flags_duplicates_and_conflicts() {
        let m = module(5000);
        let mut t = Transfer::new(1u8, Duration::ZERO, Duration::ZERO);
        t.plan_request(W);
        for idx in [4, 0, 2] {
            assert!(matches!(
                t.accept(&chunk(&m, idx), 1 << 20),
                Accepted::New {
                    complete: false,
                    ..
                }
            ));
        }
        assert_eq!(
            t.accept(&chunk(&m, 2), 1 << 20),
            Accepted::Duplicate { conflict: false }
        );
        let other = vec![0xEE; CHUNK_LEN];
        let forged = CodeChunk {
            bytes: &other,
            ..chunk(&m, 2)
        };
        assert_eq!(
            t.accept(&forged, 1 << 20),
            Accepted::Duplicate { conflict: true }
        );
        assert_eq!(t.reassembly_bytes(), 5000);
        // Only 1 and 3 are missing now.
        assert_eq!(wanted(&mut t, W, 5), vec![1, 3]);
        t.accept(&chunk(&m, 1), 1 << 20);
        assert_eq!(
            t.accept(&chunk(&m, 3), 1 << 20),
            Accepted::New {
                complete: true,
                window_done: true
            }
        );
        assert_eq!(t.into_bytes(), m);
    }

    #[test]
    fn chunks_beyond_what_was_asked_are_refused() {
        let m = module(100 * CHUNK_LEN);
        let mut t = Transfer::new(1u8, Duration::ZERO, Duration::ZERO);
        t.plan_request(4);
        assert_eq!(t.accept(&chunk(&m, 4), 1 << 20), Accepted::Unasked);
        assert_eq!(
            t.reassembly_bytes(),
            0,
            "nothing allocated for an unasked chunk"
        );
        for idx in 0..3 {
            assert!(matches!(
                t.accept(&chunk(&m, idx), 1 << 20),
                Accepted::New {
                    window_done: false,
                    ..
                }
            ));
        }
        assert_eq!(
            t.accept(&chunk(&m, 3), 1 << 20),
            Accepted::New {
                complete: false,
                window_done: true
            }
        );
        assert_eq!(wanted(&mut t, 4, 100), vec![4, 5, 6, 7]);
        assert_eq!(t.accept(&chunk(&m, 8), 1 << 20), Accepted::Unasked);
    }

    #[test]
    fn a_short_module_ends_the_first_window_early() {
        let m = module(2 * CHUNK_LEN + 5);
        let mut t = Transfer::new(1u8, Duration::ZERO, Duration::ZERO);
        t.plan_request(W);
        t.accept(&chunk(&m, 2), 1 << 20);
        t.accept(&chunk(&m, 0), 1 << 20);
        assert_eq!(
            t.accept(&chunk(&m, 1), 1 << 20),
            Accepted::New {
                complete: true,
                window_done: true
            }
        );
    }

    #[test]
    fn large_gaps_request_one_window_at_a_time() {
        // 3000 chunks; the window names at most 2048 chunks (the bitmap's span).
        let m = module(3000 * CHUNK_LEN);
        let mut t = Transfer::new(1u8, Duration::ZERO, Duration::ZERO);
        t.plan_request(4096);
        t.accept(&chunk(&m, 5), usize::MAX);
        let plan = t.plan_request(4096);
        assert_eq!(plan.0, 0);
        assert_eq!(plan.1.len(), MAX_BITMAP_LEN);
        let w = request_for(TY, &plan).wanted(3000).collect::<Vec<_>>();
        assert_eq!(w.len(), 2047, "chunks 0..2048 but 5");
        let mut last = Accepted::Unasked;
        for idx in (0..2048).filter(|i| *i != 5) {
            last = t.accept(&chunk(&m, idx), usize::MAX);
        }
        assert_eq!(
            last,
            Accepted::New {
                complete: false,
                window_done: true
            }
        );
        assert_eq!(wanted(&mut t, 4096, 3000), (2048..3000).collect::<Vec<_>>());
    }

    #[test]
    fn changed_or_oversized_total_aborts() {
        let m = module(3000);
        let other = module(2500);
        let mut t = Transfer::new(1u8, Duration::ZERO, Duration::ZERO);
        t.plan_request(W);
        t.accept(&chunk(&m, 0), 1 << 20);
        assert_eq!(t.accept(&chunk(&other, 1), 1 << 20), Accepted::Abort);
        let mut small = Transfer::new(1u8, Duration::ZERO, Duration::ZERO);
        small.plan_request(W);
        assert_eq!(small.accept(&chunk(&m, 0), 2999), Accepted::Abort);
        assert_eq!(small.reassembly_bytes(), 0);
    }

    #[test]
    fn geometry_is_checked() {
        let m = module(3000);
        assert!(geometry_ok(&chunk(&m, 2)));
        let short = CodeChunk {
            bytes: &m[..10],
            ..chunk(&m, 0)
        };
        let unaligned = CodeChunk {
            offset: 3,
            ..chunk(&m, 0)
        };
        let past_end = CodeChunk {
            offset: 3072,
            bytes: &[],
            ..chunk(&m, 0)
        };
        let empty = CodeChunk {
            total_len: 0,
            bytes: &[],
            ..chunk(&m, 0)
        };
        for bad in [short, unaligned, past_end, empty] {
            assert!(!geometry_ok(&bad), "{bad:?}");
        }
    }
}
