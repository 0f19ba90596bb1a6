//! The ARP neighbour table: resolved and resolving next hops, their retry timers, and the
//! frames held until they resolve. Pure bookkeeping — the router decides what to send.
//!
//! - entries: an LRU map `IPv4 → Neighbour`, bounded by `arp_entries`; the least recently used
//!   entry is evicted to make room (its held frames are dropped, counted by the router);
//! - timers: a time-ordered index `(deadline, ip)` of resolutions in progress, so
//!   `next_deadline` is O(log n) and nothing runs in the background;
//! - held frames: one list in arrival order, bounded per neighbour and in total, with the
//!   buffers recycled through a free list so a warm router does not allocate to hold.
//!
//! Keyed by address alone: interface subnets never overlap and entries are only made for
//! addresses inside their interface's subnet, so an address has one interface.

use std::collections::BTreeSet;
use std::num::NonZeroUsize;
use std::time::Duration;

use lru::LruCache;

use crate::config::RouterLimits;

/// A resolution in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Probe {
    /// Requests sent so far (the first included).
    pub(crate) sent: u32,
    /// When the next request is due (or the resolution fails).
    pub(crate) next: Duration,
}

/// One neighbour.
#[derive(Debug, Clone)]
pub(crate) struct Neighbour {
    pub(crate) iface: usize,
    /// `None` while incomplete.
    pub(crate) mac: Option<[u8; 6]>,
    /// After this the entry is stale: used, but re-resolved.
    pub(crate) reachable_until: Duration,
    pub(crate) probe: Option<Probe>,
    /// Frames held for it.
    pub(crate) held: usize,
}

/// What the forwarding path should do for a next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Use this MAC.
    Ready([u8; 6]),
    /// Use this MAC, and send a unicast ARP probe to it now (the entry went stale; the probe
    /// timer is already running).
    ReadyProbe([u8; 6]),
    /// Being resolved: hold the frame.
    Incomplete,
    /// Unknown: insert an incomplete entry, send a broadcast request, hold the frame.
    Missing,
}

/// A frame waiting for its next hop.
#[derive(Debug)]
pub(crate) struct Held {
    /// The next hop it waits for.
    pub(crate) ip: u32,
    pub(crate) egress: usize,
    /// Where it came from if forwarded (for host unreachable); `None` if generated here.
    pub(crate) ingress: Option<usize>,
    /// The whole frame, destination MAC still to fill.
    pub(crate) frame: Vec<u8>,
}

/// What a timer expiry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// Send another request for `ip` on `iface` to `dst_mac` (broadcast or the stale MAC).
    Retry {
        ip: u32,
        iface: usize,
        dst_mac: Option<[u8; 6]>,
    },
    /// The resolution of `ip` failed; its entry is gone and `held` frames wait to be taken.
    Failed { ip: u32, held: usize },
}

/// The table.
#[derive(Debug)]
pub(crate) struct ArpTable {
    entries: LruCache<u32, Neighbour>,
    timers: BTreeSet<(Duration, u32)>,
    held: Vec<Held>,
    free: Vec<Vec<u8>>,
    limits: RouterLimits,
}

impl ArpTable {
    pub(crate) fn new(limits: &RouterLimits) -> Self {
        ArpTable {
            entries: LruCache::new(
                NonZeroUsize::new(limits.arp_entries).unwrap_or(NonZeroUsize::MIN),
            ),
            timers: BTreeSet::new(),
            held: Vec::new(),
            free: Vec::new(),
            limits: *limits,
        }
    }

    /// The MAC for `ip`, starting a stale entry's re-resolution if none is running.
    #[inline]
    pub(crate) fn lookup(&mut self, now: Duration, ip: u32) -> Lookup {
        let Some(n) = self.entries.get_mut(&ip) else {
            return Lookup::Missing;
        };
        let Some(mac) = n.mac else {
            return Lookup::Incomplete;
        };
        if now < n.reachable_until || n.probe.is_some() {
            return Lookup::Ready(mac);
        }
        let next = now.saturating_add(self.limits.arp_retry);
        n.probe = Some(Probe { sent: 1, next });
        self.timers.insert((next, ip));
        Lookup::ReadyProbe(mac)
    }

    /// The entry for `ip`, without touching its recency.
    #[cfg(test)]
    pub(crate) fn peek(&self, ip: u32) -> Option<&Neighbour> {
        self.entries.peek(&ip)
    }

    /// Entries in the table.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every entry, most recently used first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &Neighbour)> {
        self.entries.iter().map(|(&ip, n)| (ip, n))
    }

    /// Frames held in total.
    pub(crate) fn held_len(&self) -> usize {
        self.held.len()
    }

    fn unschedule(timers: &mut BTreeSet<(Duration, u32)>, ip: u32, n: &Neighbour) {
        if let Some(p) = n.probe {
            timers.remove(&(p.next, ip));
        }
    }

    /// Insert `n` for `ip` (absent), evicting the least recently used entry if full.
    /// Returns how many held frames the evicted entry took with it, if one was evicted.
    fn insert(&mut self, ip: u32, n: Neighbour) -> Option<usize> {
        if let Some(p) = n.probe {
            self.timers.insert((p.next, ip));
        }
        let (old_ip, old) = self.entries.push(ip, n)?;
        if old_ip == ip {
            // Not an eviction: callers only insert absent keys, but stay consistent anyway.
            Self::unschedule(&mut self.timers, ip, &old);
            return None;
        }
        Self::unschedule(&mut self.timers, old_ip, &old);
        let mut dropped = 0;
        if old.held > 0 {
            let free = &mut self.free;
            self.held.retain_mut(|h| {
                if h.ip != old_ip {
                    return true;
                }
                free.push(std::mem::take(&mut h.frame));
                dropped += 1;
                false
            });
        }
        Some(dropped)
    }

    /// Start resolving `ip` on `iface` (first request about to be sent). Returns the eviction
    /// result of [`insert`](Self::insert).
    pub(crate) fn insert_incomplete(
        &mut self,
        now: Duration,
        ip: u32,
        iface: usize,
    ) -> Option<usize> {
        let next = now.saturating_add(self.limits.arp_retry);
        self.insert(
            ip,
            Neighbour {
                iface,
                mac: None,
                reachable_until: Duration::ZERO,
                probe: Some(Probe { sent: 1, next }),
                held: 0,
            },
        )
    }

    /// ARP told us `ip` is at `mac` on `iface`. Updates an existing entry (completing a
    /// resolution, ending a probe); creates one only if `create`.
    pub(crate) fn learn(
        &mut self,
        now: Duration,
        ip: u32,
        iface: usize,
        mac: [u8; 6],
        create: bool,
    ) -> Learned {
        let until = now.saturating_add(self.limits.arp_reachable);
        if let Some(n) = self.entries.get_mut(&ip) {
            Self::unschedule(&mut self.timers, ip, n);
            let completed = n.mac.is_none();
            n.probe = None;
            n.mac = Some(mac);
            n.iface = iface;
            n.reachable_until = until;
            return if completed {
                Learned::Completed { held: n.held }
            } else {
                Learned::Updated
            };
        }
        if !create {
            return Learned::Unknown;
        }
        let evicted = self.insert(
            ip,
            Neighbour {
                iface,
                mac: Some(mac),
                reachable_until: until,
                probe: None,
                held: 0,
            },
        );
        Learned::Created { evicted }
    }

    /// Hold a `len`-byte frame for `ip` (which must have an entry), written by `build`.
    /// `false` if a bound is hit (nothing held, `build` not called).
    pub(crate) fn hold(
        &mut self,
        ip: u32,
        egress: usize,
        ingress: Option<usize>,
        len: usize,
        build: impl FnOnce(&mut [u8]),
    ) -> bool {
        if self.held.len() >= self.limits.arp_pending_total {
            return false;
        }
        let Some(n) = self.entries.peek_mut(&ip) else {
            return false;
        };
        if n.held >= self.limits.arp_pending_per_neighbour {
            return false;
        }
        n.held += 1;
        let mut frame = self.free.pop().unwrap_or_default();
        frame.clear();
        frame.resize(len, 0);
        build(&mut frame);
        self.held.push(Held {
            ip,
            egress,
            ingress,
            frame,
        });
        true
    }

    /// Move the frames held for `ip` to `out`, in arrival order (also after its entry is
    /// gone, see [`Expired::Failed`]).
    pub(crate) fn take_held(&mut self, ip: u32, out: &mut Vec<Held>) {
        if let Some(n) = self.entries.peek_mut(&ip) {
            n.held = 0;
        }
        self.held.retain_mut(|h| {
            if h.ip != ip {
                return true;
            }
            out.push(Held {
                frame: std::mem::take(&mut h.frame),
                ..*h
            });
            false
        });
    }

    /// Give a held frame's buffer back for reuse.
    pub(crate) fn recycle(&mut self, frame: Vec<u8>) {
        if self.free.len() < self.limits.arp_pending_total {
            self.free.push(frame);
        }
    }

    /// The earliest retry deadline.
    pub(crate) fn next_deadline(&self) -> Option<Duration> {
        self.timers.first().map(|&(t, _)| t)
    }

    /// Process the earliest timer if it is due at `now`; `None` when none is due.
    pub(crate) fn expire_one(&mut self, now: Duration) -> Option<Expired> {
        let (ip, n) = loop {
            let &(t, ip) = self.timers.first()?;
            if t > now {
                return None;
            }
            self.timers.pop_first();
            // Entries unschedule when they leave, so this always finds one; skip if not.
            if let Some(n) = self.entries.peek_mut(&ip) {
                break (ip, n);
            }
        };
        let retries = self.limits.arp_retries;
        match n.probe {
            Some(p) if p.sent < retries => {
                let next = now.saturating_add(self.limits.arp_retry);
                n.probe = Some(Probe {
                    sent: p.sent + 1,
                    next,
                });
                let (iface, dst_mac) = (n.iface, n.mac);
                self.timers.insert((next, ip));
                Some(Expired::Retry { ip, iface, dst_mac })
            }
            _ => {
                let held = n.held;
                n.held = 0;
                // Keep the held frames listed until the router takes them: remove the entry
                // only, so `take_held` below still finds them by address.
                self.entries.pop(&ip);
                Some(Expired::Failed { ip, held })
            }
        }
    }
}

/// The outcome of [`ArpTable::learn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Learned {
    /// A new entry; `evicted` as for an insertion.
    Created { evicted: Option<usize> },
    /// A resolution in progress completed; `held` frames are waiting.
    Completed { held: usize },
    /// A resolved entry was refreshed (MAC possibly changed).
    Updated,
    /// Not known and not created.
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn table(entries: usize) -> ArpTable {
        ArpTable::new(&RouterLimits {
            arp_entries: entries,
            arp_pending_per_neighbour: 2,
            arp_pending_total: 3,
            ..RouterLimits::default()
        })
    }

    #[test]
    fn resolve_hold_complete_release() {
        let mut t = table(4);
        assert_eq!(t.lookup(s(0), 1), Lookup::Missing);
        assert_eq!(t.insert_incomplete(s(0), 1, 0), None);
        assert_eq!(t.lookup(s(0), 1), Lookup::Incomplete);
        assert!(t.hold(1, 0, Some(1), 3, |b| b.fill(1)));
        assert!(t.hold(1, 0, None, 2, |b| b.fill(2)));
        assert!(!t.hold(1, 0, None, 2, |_| panic!()), "per-neighbour bound");
        assert!(!t.hold(99, 0, None, 2, |_| panic!()), "no entry, no hold");
        assert_eq!(t.next_deadline(), Some(s(1)));
        assert_eq!(
            t.learn(s(0), 1, 0, MAC, false),
            Learned::Completed { held: 2 }
        );
        assert_eq!(t.next_deadline(), None, "answered: no retry");
        let mut out = Vec::new();
        t.take_held(1, &mut out);
        assert_eq!(
            out.iter().map(|h| h.frame.clone()).collect::<Vec<_>>(),
            [vec![1; 3], vec![2; 2]]
        );
        assert_eq!(t.held_len(), 0);
        assert_eq!(t.peek(1).map(|n| n.held), Some(0));
        assert_eq!(t.lookup(s(29), 1), Lookup::Ready(MAC));
    }

    #[test]
    fn total_hold_bound() {
        let mut t = table(4);
        for ip in 1..=2 {
            t.insert_incomplete(s(0), ip, 0);
        }
        assert!(t.hold(1, 0, None, 1, |_| {}) && t.hold(1, 0, None, 1, |_| {}));
        assert!(t.hold(2, 0, None, 1, |_| {}));
        assert!(!t.hold(2, 0, None, 1, |_| panic!()), "total bound");
    }

    #[test]
    fn retries_then_failure() {
        let mut t = table(4); // 3 requests, 1 s apart
        t.insert_incomplete(s(10), 7, 1);
        t.hold(7, 1, Some(0), 1, |_| {});
        assert_eq!(t.expire_one(s(10)), None, "not due");
        let retry = Expired::Retry {
            ip: 7,
            iface: 1,
            dst_mac: None,
        };
        assert_eq!(t.expire_one(s(11)), Some(retry));
        assert_eq!(t.expire_one(s(12)), Some(retry));
        assert_eq!(
            t.expire_one(s(13)),
            Some(Expired::Failed { ip: 7, held: 1 })
        );
        assert_eq!(t.len(), 0);
        let mut out = Vec::new();
        t.take_held(7, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn stale_entries_are_used_and_probed_once() {
        let mut t = table(4);
        assert!(matches!(
            t.learn(s(0), 5, 0, MAC, true),
            Learned::Created { evicted: None }
        ));
        assert_eq!(t.lookup(s(29), 5), Lookup::Ready(MAC));
        assert_eq!(t.lookup(s(30), 5), Lookup::ReadyProbe(MAC));
        assert_eq!(
            t.lookup(s(30), 5),
            Lookup::Ready(MAC),
            "probe already running"
        );
        assert_eq!(
            t.expire_one(s(31)),
            Some(Expired::Retry {
                ip: 5,
                iface: 0,
                dst_mac: Some(MAC)
            })
        );
        assert_eq!(t.learn(s(31), 5, 0, MAC, false), Learned::Updated);
        assert_eq!(t.next_deadline(), None);
        assert_eq!(t.lookup(s(60), 5), Lookup::Ready(MAC));
    }

    #[test]
    fn eviction_is_lru_and_drops_held_frames() {
        let mut t = table(2);
        t.insert_incomplete(s(0), 1, 0);
        t.hold(1, 0, None, 4, |_| {});
        t.learn(s(0), 2, 0, MAC, true);
        // 1 is least recently used: inserting 3 evicts it with its held frame and timer.
        assert_eq!(t.insert_incomplete(s(0), 3, 0), Some(1));
        assert!(t.peek(1).is_none());
        assert_eq!(t.held_len(), 0);
        assert_eq!(t.timers.len(), 1, "only 3's timer remains");
        // Using 2 makes 3 the LRU.
        t.lookup(s(0), 2);
        assert_eq!(
            t.learn(s(0), 4, 0, MAC, true),
            Learned::Created { evicted: Some(0) }
        );
        assert!(t.peek(3).is_none() && t.peek(2).is_some());
        assert!(t.timers.is_empty());
        assert_eq!(t.learn(s(0), 8, 0, MAC, false), Learned::Unknown);
    }
}
