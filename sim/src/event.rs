//! [`EventQueue`]: the simulator's future, a binary heap ordered by `(time, sequence)`.
//!
//! Two events at the same virtual time run in the order they were scheduled: the sequence
//! number breaks every tie, so the order never depends on heap internals or on anything
//! outside the simulation. Events are small `Copy` values; datagram bytes live in the
//! simulator's buffer pool and are referred to by index.

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

/// An event with its time (ns) and sequence number.
#[derive(Debug, Clone, Copy)]
struct Entry {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest `(at, seq)` first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Pending events, earliest first; ties in scheduling order.
#[derive(Debug, Default)]
pub struct EventQueue {
    heap: BinaryHeap<Entry>,
    next_seq: u64,
}

impl EventQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Schedule `event` at `at` (ns of virtual time).
    pub fn push(&mut self, at: u64, event: Event) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry { at, seq, event });
    }

    /// The time of the earliest event.
    pub fn peek_time(&self) -> Option<u64> {
        self.heap.peek().map(|e| e.at)
    }

    /// The earliest event, without removing it.
    pub fn peek_event(&self) -> Option<Event> {
        self.heap.peek().map(|e| e.event)
    }

    /// Remove and return the earliest event with its time.
    pub fn pop(&mut self) -> Option<(u64, Event)> {
        self.heap.pop().map(|e| (e.at, e.event))
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
    fn earliest_first_and_ties_in_scheduling_order() {
        let mut q = EventQueue::new();
        q.push(30, action(0));
        q.push(10, action(1));
        q.push(20, action(2));
        q.push(10, action(3));
        q.push(10, action(4));
        let order: Vec<(u64, Event)> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(
            order,
            vec![
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
            q.push(u64::from(i % 7), action(i));
        }
        let mut last = (0u64, 0u32);
        while let Some((at, Event::Action { action })) = q.pop() {
            assert!((at, action) >= last, "{at} {action} after {last:?}");
            last = (at, action);
        }
        assert_eq!(q.peek_time(), None);
    }
}
