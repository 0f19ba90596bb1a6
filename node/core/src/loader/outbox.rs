//! The loader's bounded output queues: encoded messages for `poll_transmit` and events for
//! `poll_event`.

use std::collections::VecDeque;

use ants_wire::{CapsuleType, CodeChunk, CodeNack, CodeRequest, NackReason};

use super::config::{LoaderCounters, LoaderEvent};

/// Encoded messages to send, at most `capacity`.
#[derive(Debug)]
pub(super) struct Outbox<P> {
    queue: VecDeque<(P, Vec<u8>)>,
    capacity: usize,
}

impl<P> Outbox<P> {
    pub(super) fn new(capacity: usize) -> Self {
        Outbox {
            queue: VecDeque::new(),
            capacity,
        }
    }

    /// Whether one more message fits.
    pub(super) fn has_room(&self) -> bool {
        self.queue.len() < self.capacity
    }

    /// Queue a message; if full it is dropped and counted, and `false` is returned.
    fn push(&mut self, to: P, msg: Vec<u8>, counters: &mut LoaderCounters) -> bool {
        if !self.has_room() {
            counters.transmit_dropped += 1;
            return false;
        }
        self.queue.push_back((to, msg));
        true
    }

    /// Queue a code request; `false` if it was dropped.
    pub(super) fn request(
        &mut self,
        to: P,
        req: &CodeRequest<'_>,
        counters: &mut LoaderCounters,
    ) -> bool {
        let mut buf = vec![0; req.buffer_len()];
        // The loader builds bitmaps of at most MAX_BITMAP_LEN bytes, so emit cannot fail;
        // if it ever did, sending nothing is the safe answer.
        if req.emit(&mut buf).is_err() {
            return false;
        }
        let sent = self.push(to, buf, counters);
        if sent {
            counters.requests_sent += 1;
        }
        sent
    }

    /// Queue a code chunk; `false` if it was dropped.
    pub(super) fn chunk(
        &mut self,
        to: P,
        chunk: &CodeChunk<'_>,
        counters: &mut LoaderCounters,
    ) -> bool {
        let mut buf = vec![0; chunk.buffer_len()];
        if chunk.emit(&mut buf).is_err() {
            return false;
        }
        self.push(to, buf, counters)
    }

    /// Queue a code nack.
    pub(super) fn nack(
        &mut self,
        to: P,
        ty: CapsuleType,
        reason: NackReason,
        counters: &mut LoaderCounters,
    ) {
        let nack = CodeNack {
            capsule_type: ty,
            reason,
        };
        let mut buf = vec![0; CodeNack::LEN];
        if nack.emit(&mut buf).is_ok() && self.push(to, buf, counters) {
            counters.nacks_sent += 1;
        }
    }

    pub(super) fn pop(&mut self) -> Option<(P, Vec<u8>)> {
        self.queue.pop_front()
    }

    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }
}

/// Events for `poll_event`. `Verified` events are always kept (there is at most one per
/// fetch entry, and entries are bounded); `Failed` events beyond `capacity` are dropped and
/// counted, so a node that never polls cannot grow the queue.
#[derive(Debug)]
pub(super) struct Events {
    queue: VecDeque<LoaderEvent>,
    capacity: usize,
}

impl Events {
    pub(super) fn new(capacity: usize) -> Self {
        Events {
            queue: VecDeque::new(),
            capacity,
        }
    }

    pub(super) fn push(&mut self, event: LoaderEvent, counters: &mut LoaderCounters) {
        let is_failure = matches!(event, LoaderEvent::Failed { .. });
        if is_failure && self.queue.len() >= self.capacity {
            counters.events_dropped += 1;
            return;
        }
        self.queue.push_back(event);
    }

    pub(super) fn pop(&mut self) -> Option<LoaderEvent> {
        self.queue.pop_front()
    }

    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::FailReason;

    #[test]
    fn full_outbox_drops_and_counts() {
        let mut k = LoaderCounters::default();
        let mut o = Outbox::new(1);
        let ty = CapsuleType([1; 32]);
        o.nack(1u8, ty, NackReason::NotFound, &mut k);
        o.nack(1u8, ty, NackReason::NotFound, &mut k);
        assert_eq!((o.len(), k.nacks_sent, k.transmit_dropped), (1, 1, 1));
        let (to, msg) = o.pop().unwrap();
        assert_eq!(to, 1);
        assert_eq!(CodeNack::parse(&msg).unwrap().capsule_type, ty);
    }

    #[test]
    fn failed_events_are_bounded_verified_are_not() {
        let mut k = LoaderCounters::default();
        let mut e = Events::new(1);
        let ty = CapsuleType([1; 32]);
        let failed = LoaderEvent::Failed {
            ty,
            reason: FailReason::Timeout,
            dropped: 0,
        };
        e.push(failed.clone(), &mut k);
        e.push(failed, &mut k);
        e.push(
            LoaderEvent::Verified {
                ty,
                code: vec![1u8].into(),
            },
            &mut k,
        );
        assert_eq!((e.len(), k.events_dropped), (2, 1));
    }
}
