//! Simulated links: [`LinkParams`] (latency, jitter, loss, bandwidth, queue) and the state
//! of one direction of a link ([`Link`]).
//!
//! A datagram sent at `now` on a link with finite bandwidth waits for the datagrams ahead of
//! it (the link is busy until `busy_until`), is tail-dropped if the bytes queued ahead plus
//! its own exceed `queue_bytes`, takes `len × 8 / bandwidth` to serialise, may be lost on the
//! wire with probability `loss`, and arrives `latency + U[0, jitter]` after it left. Loss
//! and jitter draw from the link's own generator, seeded from the root seed, so a link's
//! fate does not depend on traffic elsewhere. With jitter, datagrams may be reordered.

use ants_core::rng::SplitMix64;
use serde::Serialize;

/// How one link behaves (both directions; each direction has its own queue and generator).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LinkParams {
    /// One-way propagation delay, ns.
    pub latency_ns: u64,
    /// Extra delay drawn uniformly from `[0, jitter_ns]` per datagram.
    pub jitter_ns: u64,
    /// Probability that a datagram is lost on the wire, `0.0..=1.0`.
    pub loss: f64,
    /// Extra loss for code-transfer datagrams only (requests, chunks, nacks), like the
    /// daemon's `[fault] code_loss`: demand loading under loss without losing capsules.
    pub code_loss: f64,
    /// Bits per second; 0 = unlimited (no serialisation delay, no queue).
    pub bandwidth_bps: u64,
    /// Bytes that may wait for the link (tail drop beyond); only with a bandwidth.
    pub queue_bytes: u64,
}

impl Default for LinkParams {
    /// 1 ms latency, no jitter, no loss, unlimited bandwidth, 64 KiB queue.
    fn default() -> Self {
        LinkParams {
            latency_ns: 1_000_000,
            jitter_ns: 0,
            loss: 0.0,
            code_loss: 0.0,
            bandwidth_bps: 0,
            queue_bytes: 64 << 10,
        }
    }
}

/// Why a link did not carry a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkDrop {
    /// Lost on the wire (`loss`).
    Loss,
    /// The link's queue was full.
    Queue,
    /// The link is partitioned (down).
    Partition,
    /// The receiving node is down (crashed).
    NodeDown,
    /// The sender addressed a peer it has no link to.
    NoLink,
}

impl LinkDrop {
    /// All reasons, for reports.
    pub const ALL: [LinkDrop; 5] = [
        LinkDrop::Loss,
        LinkDrop::Queue,
        LinkDrop::Partition,
        LinkDrop::NodeDown,
        LinkDrop::NoLink,
    ];

    /// Kebab-case name, as in the trace.
    pub fn name(self) -> &'static str {
        match self {
            LinkDrop::Loss => "loss",
            LinkDrop::Queue => "queue",
            LinkDrop::Partition => "partition",
            LinkDrop::NodeDown => "node-down",
            LinkDrop::NoLink => "no-link",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// One direction of a link: endpoints, parameter class, state and generator. 32 bytes.
#[derive(Debug, Clone)]
pub struct Link {
    /// Sending node.
    pub from: u32,
    /// Receiving node.
    pub to: u32,
    /// Index into the simulator's parameter classes.
    pub class: u32,
    /// `false` while partitioned.
    pub up: bool,
    /// The time the link finishes serialising what is queued, ns.
    busy_until: u64,
    rng: SplitMix64,
}

impl Link {
    /// A link in its initial state with its own generator seed.
    pub fn new(from: u32, to: u32, class: u32, seed: u64) -> Self {
        Link {
            from,
            to,
            class,
            up: true,
            busy_until: 0,
            rng: SplitMix64::new(seed),
        }
    }

    /// Send `len` bytes (a code-transfer message if `code`) at `now`: the arrival time at
    /// the far end, or why it is dropped.
    pub fn transmit(
        &mut self,
        p: &LinkParams,
        now: u64,
        len: usize,
        code: bool,
    ) -> Result<u64, LinkDrop> {
        if !self.up {
            return Err(LinkDrop::Partition);
        }
        let mut depart = now;
        if p.bandwidth_bps > 0 {
            let start = self.busy_until.max(now);
            let queued = bytes_in(start - now, p.bandwidth_bps);
            if queued.saturating_add(len as u64) > p.queue_bytes {
                return Err(LinkDrop::Queue);
            }
            depart = start.saturating_add(serialise_ns(len as u64, p.bandwidth_bps));
            self.busy_until = depart;
        }
        if p.loss > 0.0 && unit(self.rng.next_u64()) < p.loss {
            return Err(LinkDrop::Loss);
        }
        if code && p.code_loss > 0.0 && unit(self.rng.next_u64()) < p.code_loss {
            return Err(LinkDrop::Loss);
        }
        let jitter = if p.jitter_ns > 0 {
            self.rng.next_u64() % (p.jitter_ns + 1)
        } else {
            0
        };
        Ok(depart.saturating_add(p.latency_ns).saturating_add(jitter))
    }
}

/// Nanoseconds to serialise `bytes` at `bps`.
fn serialise_ns(bytes: u64, bps: u64) -> u64 {
    let ns = u128::from(bytes) * 8 * 1_000_000_000 / u128::from(bps.max(1));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// Bytes serialised in `ns` at `bps` (the backlog a busy link still has to send).
fn bytes_in(ns: u64, bps: u64) -> u64 {
    let b = u128::from(ns) * u128::from(bps) / 8 / 1_000_000_000;
    u64::try_from(b).unwrap_or(u64::MAX)
}

/// A uniform float in `[0, 1)` from 64 random bits.
pub(crate) fn unit(x: u64) -> f64 {
    (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn latency_only_link_delivers_after_latency() {
        let mut l = Link::new(0, 1, 0, 7);
        let p = LinkParams::default();
        assert_eq!(l.transmit(&p, 5, 100, false), Ok(5 + MS));
        assert_eq!(
            l.transmit(&p, 5, 100, false),
            Ok(5 + MS),
            "no queueing without bandwidth"
        );
    }

    #[test]
    fn loss_rate_is_close_to_configured_and_seeded() {
        let p = LinkParams {
            loss: 0.2,
            ..LinkParams::default()
        };
        let run = |seed| {
            let mut l = Link::new(0, 1, 0, seed);
            (0..10_000)
                .map(|_| l.transmit(&p, 0, 10, false).is_err())
                .collect::<Vec<_>>()
        };
        let a = run(1);
        let lost = a.iter().filter(|x| **x).count();
        assert!((1700..2300).contains(&lost), "{lost} of 10000 lost");
        assert_eq!(a, run(1), "same seed, same losses");
        assert_ne!(a, run(2), "another seed, other losses");
    }

    #[test]
    fn code_loss_spares_capsules() {
        let p = LinkParams {
            code_loss: 1.0,
            ..LinkParams::default()
        };
        let mut l = Link::new(0, 1, 0, 7);
        assert!(l.transmit(&p, 0, 10, false).is_ok());
        assert_eq!(l.transmit(&p, 0, 10, true), Err(LinkDrop::Loss));
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let p = LinkParams {
            jitter_ns: 500,
            ..LinkParams::default()
        };
        let mut l = Link::new(0, 1, 0, 3);
        let arrivals: Vec<u64> = (0..1000)
            .map(|_| l.transmit(&p, 0, 10, false).unwrap())
            .collect();
        assert!(arrivals.iter().all(|a| (MS..=MS + 500).contains(a)));
        let distinct: std::collections::BTreeSet<_> = arrivals.iter().collect();
        assert!(distinct.len() > 100);
    }

    #[test]
    fn bandwidth_serialises_back_to_back_and_the_queue_tail_drops() {
        // 8 Mbit/s: 1000 bytes take 1 ms. Queue of 2500 bytes.
        let p = LinkParams {
            latency_ns: 0,
            bandwidth_bps: 8_000_000,
            queue_bytes: 2500,
            ..LinkParams::default()
        };
        let mut l = Link::new(0, 1, 0, 1);
        assert_eq!(l.transmit(&p, 0, 1000, false), Ok(MS));
        assert_eq!(l.transmit(&p, 0, 1000, false), Ok(2 * MS));
        // 2000 bytes are ahead now; 1000 more would make 3000 > 2500.
        assert_eq!(l.transmit(&p, 0, 1000, false), Err(LinkDrop::Queue));
        assert_eq!(l.transmit(&p, 0, 400, false), Ok(2 * MS + 400_000));
        // Later, the backlog has drained.
        assert_eq!(l.transmit(&p, 10 * MS, 1000, false), Ok(11 * MS));
    }

    #[test]
    fn a_partitioned_link_carries_nothing_until_repaired() {
        let p = LinkParams::default();
        let mut l = Link::new(0, 1, 0, 1);
        l.up = false;
        assert_eq!(l.transmit(&p, 0, 10, false), Err(LinkDrop::Partition));
        l.up = true;
        assert!(l.transmit(&p, 0, 10, false).is_ok());
    }
}
