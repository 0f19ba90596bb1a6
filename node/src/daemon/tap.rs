//! [`Tap`]: `ants capture`'s view of the datagrams a node sends and receives.
//!
//! One capture at a time, shared by every worker. When no capture runs, a worker pays one
//! relaxed atomic load per datagram. While one runs, each datagram is copied into a frame
//! and offered to the capturing connection's bounded queue without waiting: what does not
//! fit is counted and reported to the client with the next frame (`lost`), never queued
//! without bound. The capture ends when the client closes its connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use ants_app::{Captured, NodeFrame};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// The node's capture point.
#[derive(Debug)]
pub(super) struct Tap {
    active: AtomicBool,
    out: Mutex<Option<mpsc::Sender<NodeFrame>>>,
    /// Datagrams not handed to the client since its last frame.
    lost: AtomicU32,
    /// The node's endpoint (the `local` of every frame).
    local: SocketAddr,
}

impl Tap {
    pub(super) fn new(local: SocketAddr) -> Tap {
        Tap {
            active: AtomicBool::new(false),
            out: Mutex::new(None),
            lost: AtomicU32::new(0),
            local,
        }
    }

    /// Start a capture into `out` (a connection's queue): `CaptureStarted` first, then the
    /// datagrams. Refused while another capture's connection is open.
    pub(super) fn start(&self, out: mpsc::Sender<NodeFrame>) -> Result<(), String> {
        let mut slot = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|s| !s.is_closed()) {
            return Err("a capture is already running on this node".into());
        }
        out.try_send(NodeFrame::CaptureStarted)
            .map_err(|_| "the connection's queue is full".to_string())?;
        *slot = Some(out);
        self.lost.store(0, Ordering::Relaxed);
        self.active.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether a capture runs (one relaxed load: the cost of the tap when idle).
    pub(super) fn on(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Offer one datagram to the capture.
    pub(super) fn offer(&self, now: Duration, outbound: bool, peer: SocketAddr, data: &[u8]) {
        let mut slot = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(out) = slot.as_ref() else {
            return;
        };
        let frame = NodeFrame::Captured(Captured {
            ts_ns: u64::try_from(now.as_nanos()).unwrap_or(u64::MAX),
            outbound,
            peer,
            local: self.local,
            lost: self.lost.load(Ordering::Relaxed),
            data: data.to_vec(),
        });
        match out.try_send(frame) {
            Ok(()) => self.lost.store(0, Ordering::Relaxed),
            Err(TrySendError::Full(_)) => {
                self.lost.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Closed(_)) => {
                *slot = None;
                self.active.store(false, Ordering::Release);
                tracing::info!("capture ended (the client closed its connection)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    #[test]
    fn one_capture_at_a_time_bounded_and_ended_by_the_client() {
        let tap = Tap::new("127.0.0.1:7001".parse().unwrap());
        assert!(!tap.on());
        tap.offer(Duration::ZERO, false, peer(), b"nobody listens");
        let (tx, mut rx) = mpsc::channel(3);
        tap.start(tx.clone()).unwrap();
        assert!(tap.on());
        let (other, _rx2) = mpsc::channel(3);
        assert!(tap.start(other).is_err(), "a second capture is refused");
        assert_eq!(rx.try_recv().unwrap(), NodeFrame::CaptureStarted);
        for i in 0..5u8 {
            tap.offer(Duration::from_secs(1), i % 2 == 0, peer(), &[i]);
        }
        // The queue held 3: two were lost, and the next frame says so.
        let got: Vec<NodeFrame> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(got.len(), 3);
        tap.offer(Duration::from_secs(2), true, peer(), b"after");
        match rx.try_recv().unwrap() {
            NodeFrame::Captured(c) => {
                assert_eq!(
                    (c.lost, c.data.as_slice(), c.outbound),
                    (2, &b"after"[..], true)
                );
                assert_eq!(c.local, "127.0.0.1:7001".parse().unwrap());
            }
            other => panic!("{other:?}"),
        }
        drop(rx);
        drop(tx);
        tap.offer(Duration::from_secs(3), true, peer(), b"x");
        assert!(!tap.on(), "the capture ends when its client goes");
        let (again, mut rx) = mpsc::channel(3);
        tap.start(again).unwrap();
        assert_eq!(rx.try_recv().unwrap(), NodeFrame::CaptureStarted);
    }
}
