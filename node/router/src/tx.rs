//! Frames the router generated, waiting for the driver: one byte arena plus `(iface, range)`
//! entries (the pattern of `ants-core`'s `node/tx.rs`). Bounded in frames and bytes; the
//! caller counts what did not fit. No allocation per frame once the arena has grown to its
//! working size.

use std::ops::Range;

/// Where a driver lets the router write a frame straight into its own transmit batch (an
/// AF_XDP UMEM frame, an AF_PACKET batch slot) instead of the router's queue, saving a copy:
/// see [`Router::send_udp_to`](crate::Router::send_udp_to).
pub trait FrameSink {
    /// Take a `len`-byte frame for interface `iface`, written by `build`, which writes every
    /// byte of the slice it is given (a stale buffer is fine). A frame the sink has no room
    /// for is the sink's to drop and count; `build` is then not called.
    fn frame(&mut self, iface: usize, len: usize, build: impl FnOnce(&mut [u8]));
}

#[derive(Debug)]
pub(crate) struct TxQueue {
    arena: Vec<u8>,
    entries: Vec<(usize, Range<usize>)>,
    max_frames: usize,
    max_bytes: usize,
}

impl TxQueue {
    pub(crate) fn new(max_frames: usize, max_bytes: usize) -> Self {
        TxQueue {
            arena: Vec::new(),
            entries: Vec::new(),
            max_frames,
            max_bytes,
        }
    }

    /// Append a `len`-byte frame for `iface`, written by `emit` into a zeroed buffer.
    /// `false` (and `emit` not called) if it does not fit.
    pub(crate) fn push_with(
        &mut self,
        iface: usize,
        len: usize,
        emit: impl FnOnce(&mut [u8]),
    ) -> bool {
        let start = self.arena.len();
        if self.entries.len() >= self.max_frames || len > self.max_bytes.saturating_sub(start) {
            return false;
        }
        self.arena.resize(start + len, 0);
        emit(&mut self.arena[start..]);
        self.entries.push((iface, start..start + len));
        true
    }

    /// Frames queued.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes queued.
    pub(crate) fn bytes(&self) -> usize {
        self.arena.len()
    }

    /// Hand every queued frame to `f` in order and empty the queue (capacity is kept).
    pub(crate) fn drain(&mut self, mut f: impl FnMut(usize, &[u8])) {
        for (iface, r) in self.entries.drain(..) {
            if let Some(bytes) = self.arena.get(r) {
                f(iface, bytes);
            }
        }
        self.arena.clear();
    }
}

/// The router's own queue as a sink (what [`FrameSink`]-taking paths use when the driver
/// gives none); a frame that does not fit is dropped, as `push_with` says.
impl FrameSink for TxQueue {
    fn frame(&mut self, iface: usize, len: usize, build: impl FnOnce(&mut [u8])) {
        self.push_with(iface, len, build);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_in_frames_and_bytes_and_reusable() {
        let mut q = TxQueue::new(3, 10);
        assert!(q.push_with(0, 4, |b| b.fill(1)));
        assert!(q.push_with(1, 6, |b| b.fill(2)));
        assert!(
            !q.push_with(1, 1, |_| panic!("must not be called")),
            "bytes bound"
        );
        assert_eq!((q.len(), q.bytes()), (2, 10));
        let mut out = Vec::new();
        q.drain(|i, f| out.push((i, f.to_vec())));
        assert_eq!(out, vec![(0, vec![1; 4]), (1, vec![2; 6])]);
        assert_eq!((q.len(), q.bytes()), (0, 0));
        for _ in 0..3 {
            assert!(q.push_with(2, 1, |_| {}));
        }
        assert!(!q.push_with(2, 1, |_| {}), "frame bound");
    }
}
