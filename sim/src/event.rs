//! [`EventQueue`]: the simulator's future, a binary heap ordered by `(time, tie)`.
//!
//! Two events at the same virtual time run in the order of their tie-breakers. The
//! simulator makes each tie from who scheduled the event and how many events that one had
//! scheduled before ([`tie`]): a node's own counter, or the scheduler's for actions set up
//! before the run. So the order never depends on heap internals, on anything outside the
//! simulation — nor on how nodes are spread over threads: a partition of the network can
//! compute the keys of its events without seeing the others (see `parallel.rs`). Events
//! are small `Copy` values; datagram bytes live in the simulator's buffer pool and are
//! referred to by index.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Something that happens at a virtual time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A datagram reaches the far end of directed link `link`; its bytes are pool buffer
    /// `buf`.
    Arrive {
        /// Directed link index.
        link: u32,
        /// Buffer pool index.
        buf: u32,
    },
    /// A node's timer (from `Node::poll_timeout`) is due. Ignored if the node restarted
    /// since (`epoch`) or the timer was moved.
    Timer {
        /// Node index.
        node: u32,
        /// The node's epoch when scheduled.
        epoch: u32,
    },
    /// The simulated compiler finished module `ty` (type table index) for `node`.
    Compiled {
        /// Node index.
        node: u32,
        /// The node's epoch when scheduled.
        epoch: u32,
        /// Type table index.
        ty: u32,
    },
    /// Scheduled action number `action` (an app send, a fault …) is due.
    Action {
        /// Index into the simulator's action table.
        action: u32,
    },
}

/// Bits of a tie-breaker that count the scheduler's events (2^40: a trillion per node).
const COUNT_BITS: u32 = 40;

/// The tie-breaker of the `count`-th event scheduled by `origin`: `None` for the scheduler
/// (actions set up before the run), `Some(i)` for node `i` (anything it caused: datagrams it
/// sent, its timers and compiles, its apps' next sends). Unique per event, and ordered by
/// origin first, then by the origin's own count.
pub fn tie(origin: Option<u32>, count: u64) -> u64 {
    let o = origin.map_or(0, |i| u64::from(i) + 1);
    (o << COUNT_BITS) | (count & ((1 << COUNT_BITS) - 1))
}

/// An event with its time (ns) and tie-breaker.
#[derive(Debug, Clone, Copy)]
struct Entry {
    at: u64,
    tie: u64,
    event: Event,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.tie) == (other.at, other.tie)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest `(at, tie)` first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.tie).cmp(&(self.at, self.tie))
    }
}

/// Pending events, earliest first; equal times in the order of their tie-breakers.
#[derive(Debug, Default)]
pub struct EventQueue {
    heap: BinaryHeap<Entry>,
}

impl EventQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Schedule `event` at `at` (ns of virtual time) with tie-breaker `tie` (see [`tie`]).
    pub fn push(&mut self, at: u64, tie: u64, event: Event) {
        self.heap.push(Entry { at, tie, event });
    }

    /// The time of the earliest event.
    pub fn peek_time(&self) -> Option<u64> {
        self.heap.peek().map(|e| e.at)
    }

    /// The earliest event, without removing it.
    pub fn peek_event(&self) -> Option<Event> {
        self.heap.peek().map(|e| e.event)
    }

    /// Remove and return the earliest event with its time and tie-breaker.
    pub fn pop(&mut self) -> Option<(u64, u64, Event)> {
        self.heap.pop().map(|e| (e.at, e.tie, e.event))
    }

    /// Every pending event with its time and tie-breaker, in no particular order.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (u64, u64, Event)> + '_ {
        self.heap.drain().map(|e| (e.at, e.tie, e.event))
    }

    /// Events pending.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// `true` when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(i: u32) -> Event {
        Event::Action { action: i }
    }

    #[test]
    fn earliest_first_and_ties_in_tie_order() {
        let mut q = EventQueue::new();
        q.push(30, tie(None, 0), action(0));
        q.push(10, tie(Some(0), 0), action(1));
        q.push(20, tie(None, 2), action(2));
        q.push(10, tie(Some(0), 1), action(3));
        q.push(10, tie(Some(5), 0), action(4));
        q.push(10, tie(None, 9), action(5));
        let order: Vec<(u64, Event)> =
            std::iter::from_fn(|| q.pop().map(|(at, _, e)| (at, e))).collect();
        assert_eq!(
            order,
            vec![
                (10, action(5)),
                (10, action(1)),
                (10, action(3)),
                (10, action(4)),
                (20, action(2)),
                (30, action(0)),
            ]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn ties_stay_ordered_across_many_interleaved_pushes() {
        let mut q = EventQueue::new();
        for i in 0..1000u32 {
            q.push(u64::from(i % 7), tie(None, u64::from(i)), action(i));
        }
        let mut last = (0u64, 0u32);
        while let Some((at, _, Event::Action { action })) = q.pop() {
            assert!((at, action) >= last, "{at} {action} after {last:?}");
            last = (at, action);
        }
        assert_eq!(q.peek_time(), None);
    }

    #[test]
    fn ties_order_by_origin_then_count() {
        assert!(tie(None, u64::from(u32::MAX)) < tie(Some(0), 0));
        assert!(tie(Some(0), 7) < tie(Some(1), 0));
        assert!(tie(Some(3), 1) < tie(Some(3), 2));
        let most = tie(Some(4_194_303), (1 << 40) - 1);
        assert!(
            most > tie(Some(4_194_302), 0),
            "no overflow at the node cap"
        );
    }
}
