//! `[[watch]]` on a live node: the simulator's watchpoints (`ants_sim::Watch`), checked by
//! each worker after every input of its node core, as `ants sim` checks them after every
//! simulated input and `ants replay --watch` after every replayed one.
//!
//! A live node does not stop at a violation. It counts violations per property (a
//! violation is an episode: the property held, then did not), keeps the first with its
//! worker, uptime, what was seen and — when the node records — the number of the input in
//! the recording (so `ants replay --watch` of that recording stops at the same input), and
//! logs it. `ants status` and the metrics show them; `ants reload` changes the properties.
//!
//! Bounded: `no-duplicate-delivery` remembers the last [`DELIVERIES_REMEMBERED`]
//! deliveries of each worker (a hash of app and payload each, ~4 MB), so it catches a
//! payload delivered twice within that window; the simulator checks the first
//! `ants_sim::apps::MAX_TRACKED_PAYLOADS` payloads of each app (its runs end).

use std::num::NonZeroUsize;
use std::time::Duration;

use ants_core::Node;
use ants_sim::Watch;
use lru::LruCache;
use tracing::warn;
use xxhash_rust::xxh3::Xxh3;

/// Deliveries `no-duplicate-delivery` remembers per worker.
pub(super) const DELIVERIES_REMEMBERED: NonZeroUsize = NonZeroUsize::new(65_536).unwrap();

/// The first violation of a property on a live node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstViolation {
    /// The node's uptime then.
    pub uptime: Duration,
    /// The worker whose node core showed it.
    pub worker: usize,
    /// What was seen.
    pub detail: String,
    /// The input (0-based) in that worker's recording, when the node was recording.
    pub input: Option<u64>,
}

/// One property's record on a live node (summed over workers in [`super::Stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchReport {
    /// The property, as `ants sim` describes it (`max-held (limit 3)`).
    pub property: String,
    /// Times it went from holding to violated.
    pub violations: u64,
    /// The earliest violation.
    pub first: Option<FirstViolation>,
}

impl WatchReport {
    /// Add another worker's record of the same property.
    pub fn merge(&mut self, o: WatchReport) {
        self.violations += o.violations;
        self.first = match (self.first.take(), o.first) {
            (Some(a), Some(b)) => Some(if b.uptime < a.uptime { b } else { a }),
            (a, b) => a.or(b),
        };
    }
}

/// One worker's watches and their state.
#[derive(Default)]
pub(super) struct Watching {
    watches: Vec<(Watch, State)>,
    /// `no-duplicate-delivery`: hashes of (app, payload) of recent deliveries.
    seen: Option<LruCache<u64, ()>>,
}

#[derive(Default, Clone)]
struct State {
    violated: bool,
    violations: u64,
    first: Option<FirstViolation>,
}

/// Where and when an input happened, for a violation's report.
pub(super) struct At {
    pub(super) worker: usize,
    pub(super) uptime: Duration,
    pub(super) input: Option<u64>,
}

impl Watching {
    /// Watch `watches` from now on; a property watched before keeps its record.
    pub(super) fn set(&mut self, watches: &[Watch]) {
        let old = std::mem::take(&mut self.watches);
        self.watches = watches
            .iter()
            .map(|w| {
                let kept = old.iter().find(|(o, _)| o == w).map(|(_, s)| s.clone());
                (*w, kept.unwrap_or_default())
            })
            .collect();
        let dup = watches.contains(&Watch::NoDuplicateDelivery);
        if !dup {
            self.seen = None;
        } else if self.seen.is_none() {
            self.seen = Some(LruCache::new(DELIVERIES_REMEMBERED));
        }
    }

    /// Whether anything is watched (checks cost nothing otherwise).
    pub(super) fn on(&self) -> bool {
        !self.watches.is_empty()
    }

    /// After an input: the properties of the node core's state. `at` is asked only when
    /// one is violated.
    pub(super) fn check<P>(&mut self, node: &Node<P>, at: impl FnOnce() -> At)
    where
        P: Copy + Eq + std::hash::Hash + Ord + std::fmt::Debug,
    {
        let at = std::cell::LazyCell::new(at);
        // (`exceeded` leaves `no-duplicate-delivery` to `delivered`.) The message is built
        // only when a violation starts, not at every input while it lasts.
        for (w, state) in &mut self.watches {
            if !w.exceeded(node) {
                state.violated = false;
            } else if !state.violated
                && let Some(detail) = w.check_node(node)
            {
                state.violate(*w, detail, &at);
            }
        }
    }

    /// App `app` was handed `payload`: `no-duplicate-delivery`.
    pub(super) fn delivered(&mut self, app: u32, payload: &[u8], at: impl FnOnce() -> At) {
        let Some(seen) = &mut self.seen else { return };
        let mut h = Xxh3::new();
        h.update(&app.to_le_bytes());
        h.update(payload);
        if seen.put(h.digest(), ()).is_none() {
            return;
        }
        let Some((w, state)) = self
            .watches
            .iter_mut()
            .find(|(w, _)| *w == Watch::NoDuplicateDelivery)
        else {
            return;
        };
        let detail = Watch::duplicate_detail(app, payload.len());
        state.violate(*w, detail, &at());
        // Each duplicate is its own violation.
        state.violated = false;
    }

    /// Each property's record.
    pub(super) fn report(&self) -> Vec<WatchReport> {
        self.watches
            .iter()
            .map(|(w, s)| WatchReport {
                property: w.describe(),
                violations: s.violations,
                first: s.first.clone(),
            })
            .collect()
    }
}

impl State {
    fn violate(&mut self, w: Watch, detail: String, at: &At) {
        self.violated = true;
        self.violations += 1;
        if self.first.is_some() {
            return;
        }
        warn!(
            property = %w.describe(),
            worker = at.worker,
            input = at.input,
            "watch violated: {detail}"
        );
        self.first = Some(FirstViolation {
            uptime: at.uptime,
            worker: at.worker,
            detail,
            input: at.input,
        });
    }
}
