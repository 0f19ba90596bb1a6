//! The node's outgoing datagrams: one byte arena plus `(peer, range)` entries, drained by the
//! driver into its batched socket. Bounded in datagrams and bytes; overflow is counted by the
//! caller. No allocation per datagram once warmed up.

use std::ops::Range;

use ants_wire::WireError;

#[derive(Debug)]
pub(crate) struct TxQueue<P> {
    arena: Vec<u8>,
    entries: Vec<(P, Range<usize>)>,
    /// Entries before this were drained already (the arena is reset once all are).
    head: usize,
    max_datagrams: usize,
    max_bytes: usize,
}

impl<P: Copy> TxQueue<P> {
    pub(crate) fn new(max_datagrams: usize, max_bytes: usize) -> Self {
        TxQueue {
            arena: Vec::new(),
            entries: Vec::new(),
            head: 0,
            max_datagrams,
            max_bytes,
        }
    }

    /// Append a datagram written by `emit` (which gets a zeroed buffer of `len` bytes).
    /// `false` if the queue is full.
    pub(crate) fn push_with(
        &mut self,
        to: P,
        len: usize,
        emit: impl FnOnce(&mut [u8]) -> Result<usize, WireError>,
    ) -> bool {
        if self.len() >= self.max_datagrams || self.arena.len() + len > self.max_bytes {
            return false;
        }
        let start = self.arena.len();
        self.arena.resize(start + len, 0);
        match emit(&mut self.arena[start..]) {
            Ok(n) => {
                self.arena.truncate(start + n);
                self.entries.push((to, start..start + n));
                true
            }
            Err(_) => {
                self.arena.truncate(start);
                false
            }
        }
    }

    /// Append a ready-made datagram.
    pub(crate) fn push(&mut self, to: P, data: &[u8]) -> bool {
        self.push_with(to, data.len(), |buf| {
            buf[..data.len()].copy_from_slice(data);
            Ok(data.len())
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len() - self.head
    }

    /// Hand every queued datagram to `f` in order and empty the queue.
    pub(crate) fn drain(&mut self, f: impl FnMut(P, &[u8])) {
        self.drain_up_to(usize::MAX, f);
    }

    /// Hand the oldest `max` queued datagrams (or all) to `f` in order; returns how many are
    /// left. Drained space is reused once the queue is empty.
    pub(crate) fn drain_up_to(&mut self, max: usize, mut f: impl FnMut(P, &[u8])) -> usize {
        let end = self.entries.len().min(self.head.saturating_add(max));
        for (to, r) in &self.entries[self.head..end] {
            if let Some(bytes) = self.arena.get(r.clone()) {
                f(*to, bytes);
            }
        }
        self.head = end;
        if self.head == self.entries.len() {
            self.entries.clear();
            self.arena.clear();
            self.head = 0;
        }
        self.len()
    }
}
