//! [`Quarantine`]: the failure policy for repeated traps. When one peer's capsules of one type
//! trap `traps` times within `window`, that peer's capsules of that type are dropped before
//! they run (drop reason `quarantined`) for `hold`.
//!
//! Keyed by (peer, type), not by type: a trap can come from a capsule's contents as much as
//! from its code, and a stranger who could quarantine a *type* by sending it trapping capsules
//! would switch a protocol off for everyone. A trap costs the node more than its fuel — the
//! instance is thrown away and built again for the next capsule — so a peer that keeps
//! trapping is cut off from that type for a while instead of paying that cost each time.
//! Local apps (no peer) are never quarantined: they get the error at once.

use std::hash::Hash;
use std::time::Duration;

use ants_wire::CapsuleType;
use lru::LruCache;

/// When a (peer, type) is quarantined, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuarantineConfig {
    /// Traps within `window` that quarantine; 0 turns the policy off.
    pub traps: u32,
    /// The window traps are counted in (from the first of them).
    pub window: Duration,
    /// How long a quarantine lasts.
    pub hold: Duration,
    /// (peer, type) pairs tracked; the least recently trapping are forgotten.
    pub max_entries: usize,
}

impl Default for QuarantineConfig {
    /// 8 traps in 10 s quarantine for 60 s; 1,024 pairs tracked.
    fn default() -> Self {
        QuarantineConfig {
            traps: 8,
            window: Duration::from_secs(10),
            hold: Duration::from_secs(60),
            max_entries: 1024,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: Duration,
    traps: u32,
    until: Option<Duration>,
}

/// Trap counts and quarantines by (peer, type), at most `max_entries` (least recently
/// trapped evicted first). The table grows as pairs trap: a node whose capsules never trap
/// (every simulated node, most real ones) holds an empty table, not `max_entries` slots.
pub(crate) struct Quarantine<P> {
    cfg: QuarantineConfig,
    entries: LruCache<(P, CapsuleType), Entry>,
}

impl<P> std::fmt::Debug for Quarantine<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quarantine")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl<P: Hash + Eq + Copy> Quarantine<P> {
    pub(crate) fn new(cfg: QuarantineConfig) -> Self {
        Quarantine {
            cfg,
            entries: LruCache::unbounded(),
        }
    }

    /// Change the policy; quarantines in force stay until their end.
    pub(crate) fn set_config(&mut self, cfg: QuarantineConfig) {
        self.cfg = cfg;
    }

    /// Whether `peer`'s capsules of `ty` are quarantined at `now` (one hash lookup; nothing
    /// when no pair has trapped).
    pub(crate) fn blocks(&self, now: Duration, peer: P, ty: &CapsuleType) -> bool {
        if self.entries.is_empty() {
            return false;
        }
        self.entries
            .peek(&(peer, *ty))
            .and_then(|e| e.until)
            .is_some_and(|until| now < until)
    }

    /// Count a trap; `true` if it starts a quarantine.
    pub(crate) fn trapped(&mut self, now: Duration, peer: P, ty: CapsuleType) -> bool {
        if self.cfg.traps == 0 {
            return false;
        }
        let key = (peer, ty);
        if !self.entries.contains(&key) && self.entries.len() >= self.cfg.max_entries.max(1) {
            self.entries.pop_lru();
        }
        let e = self.entries.get_or_insert_mut(key, || Entry {
            window_start: now,
            traps: 0,
            until: None,
        });
        if e.until.is_some_and(|until| now < until) {
            return false;
        }
        if e.until.is_some() || now.saturating_sub(e.window_start) > self.cfg.window {
            *e = Entry {
                window_start: now,
                traps: 0,
                until: None,
            };
        }
        e.traps += 1;
        if e.traps >= self.cfg.traps {
            e.until = Some(now + self.cfg.hold);
            return true;
        }
        false
    }

    /// Peers quarantined at `now`, by type.
    pub(crate) fn active(&self, now: Duration) -> Vec<(CapsuleType, usize)> {
        let mut by_type: std::collections::BTreeMap<CapsuleType, usize> = Default::default();
        for ((_, ty), e) in &self.entries {
            if e.until.is_some_and(|until| now < until) {
                *by_type.entry(*ty).or_default() += 1;
            }
        }
        by_type.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: CapsuleType = CapsuleType([7; 32]);
    const U: CapsuleType = CapsuleType([8; 32]);

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn traps_in_a_window_quarantine_one_peer_for_one_type_for_a_while() {
        let mut q = Quarantine::new(QuarantineConfig::default());
        for i in 0..7 {
            assert!(!q.trapped(s(f64::from(i)), 1u32, T));
        }
        assert!(!q.blocks(s(7.0), 1, &T));
        assert!(q.trapped(s(7.5), 1, T), "the 8th trap within 10 s");
        assert!(q.blocks(s(8.0), 1, &T));
        assert!(!q.blocks(s(8.0), 2, &T), "other peers are not affected");
        assert!(!q.blocks(s(8.0), 1, &U), "nor the peer's other types");
        assert_eq!(q.active(s(8.0)), vec![(T, 1)]);
        assert!(q.blocks(s(67.4), 1, &T));
        assert!(!q.blocks(s(67.6), 1, &T), "60 s later it ends");
        assert!(q.active(s(67.6)).is_empty());
        // Counting starts again from zero.
        assert!(!q.trapped(s(68.0), 1, T));
    }

    #[test]
    fn traps_spread_wider_than_the_window_never_quarantine() {
        let mut q = Quarantine::new(QuarantineConfig::default());
        for i in 0..100 {
            assert!(!q.trapped(s(f64::from(i) * 1.5), 1u32, T), "trap {i}");
        }
    }

    #[test]
    fn the_table_is_bounded_and_off_means_off() {
        let cfg = QuarantineConfig {
            traps: 1,
            max_entries: 4,
            ..QuarantineConfig::default()
        };
        let mut q = Quarantine::new(cfg);
        for peer in 0..100u32 {
            assert!(q.trapped(s(1.0), peer, T));
        }
        assert_eq!(q.active(s(1.0)), vec![(T, 4)], "only the last 4 pairs kept");
        let mut off = Quarantine::new(QuarantineConfig { traps: 0, ..cfg });
        assert!(!off.trapped(s(1.0), 1u32, T));
        assert!(!off.blocks(s(1.0), 1, &T));
    }
}
