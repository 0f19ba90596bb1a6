//! The ARP neighbour table: resolved and resolving next hops, their retry timers, and the
//! frames held until they resolve. Pure bookkeeping — the router decides what to send.
//!
//! - resolved: an LRU map `IPv4 → Neighbour` of entries with a MAC (reachable or stale, a
//!   stale one possibly being re-probed), bounded by `arp_entries`; the least recently used
//!   is evicted to make room for another resolved entry;
//! - incomplete: resolutions in progress, bounded by `arp_incomplete_entries`; when full a
//!   new resolution is refused, nothing is evicted. Kept apart so that packets toward
//!   addresses that never answer (which anyone who can reach the router can send) fill only
//!   this table and cannot push live neighbours, and their held frames, out of the other. An
//!   entry moves to the resolved table when answered and leaves after its last retry;
//! - timers: a time-ordered index `(deadline, ip)` of resolutions and probes in progress, in
//!   either table, so `next_deadline` is O(log n) and nothing runs in the background;
//! - held frames: one list in arrival order, bounded per neighbour and in total, with the
//!   buffers recycled through a free list so a warm router does not allocate to hold.
//!
//! An address is in at most one of the two tables. Keyed by address alone: interface subnets
//! never overlap and entries are only made for addresses inside their interface's subnet, so
//! an address has one interface.

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
    /// `None` while incomplete (exactly the entries of the incomplete table).
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
    resolved: LruCache<u32, Neighbour>,
    /// An `LruCache` for its preallocated map and its order in [`iter`](Self::iter); it is
    /// never pushed into when full, so it never evicts.
    incomplete: LruCache<u32, Neighbour>,
    timers: BTreeSet<(Duration, u32)>,
    held: Vec<Held>,
    free: Vec<Vec<u8>>,
    limits: RouterLimits,
}

fn capacity(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

impl ArpTable {
    pub(crate) fn new(limits: &RouterLimits) -> Self {
        ArpTable {
            resolved: LruCache::new(capacity(limits.arp_entries)),
            incomplete: LruCache::new(capacity(limits.arp_incomplete_entries)),
            timers: BTreeSet::new(),
            held: Vec::new(),
            free: Vec::new(),
            limits: *limits,
        }
    }

    /// The MAC for `ip`, starting a stale entry's re-resolution if none is running.
    #[inline]
    pub(crate) fn lookup(&mut self, now: Duration, ip: u32) -> Lookup {
        let Some(n) = self.resolved.get_mut(&ip) else {
            return if self.incomplete.contains(&ip) {
                Lookup::Incomplete
            } else {
                Lookup::Missing
            };
        };
        let Some(mac) = n.mac else {
            // Not in this table (see `Neighbour::mac`); wait for the resolution if it were.
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

    /// Whether either table has `ip`, without touching its recency or timers.
    pub(crate) fn knows(&self, ip: u32) -> bool {
        self.resolved.contains(&ip) || self.incomplete.contains(&ip)
    }

    /// The entry for `ip`, without touching its recency.
    #[cfg(test)]
    pub(crate) fn peek(&self, ip: u32) -> Option<&Neighbour> {
        self.resolved
            .peek(&ip)
            .or_else(|| self.incomplete.peek(&ip))
    }

    /// Entries in both tables.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.resolved.len() + self.incomplete.len()
    }

    /// Entries in the resolved table.
    pub(crate) fn resolved_len(&self) -> usize {
        self.resolved.len()
    }

    /// Entries in the incomplete table.
    pub(crate) fn incomplete_len(&self) -> usize {
        self.incomplete.len()
    }

    /// Every entry: the resolved ones most recently used first, then the incomplete ones
    /// most recently started first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &Neighbour)> {
        self.resolved
            .iter()
            .chain(self.incomplete.iter())
            .map(|(&ip, n)| (ip, n))
    }

    /// Frames held in total.
    pub(crate) fn held_len(&self) -> usize {
        self.held.len()
    }

    /// The entry for `ip` in whichever table has it, without touching its recency.
    fn entry_mut(&mut self, ip: u32) -> Option<&mut Neighbour> {
        match self.incomplete.peek_mut(&ip) {
            Some(n) => Some(n),
            None => self.resolved.peek_mut(&ip),
        }
    }

    fn unschedule(timers: &mut BTreeSet<(Duration, u32)>, ip: u32, n: &Neighbour) {
        if let Some(p) = n.probe {
            timers.remove(&(p.next, ip));
        }
    }

    /// Insert the resolved `n` for `ip` (absent from both tables), evicting the least
    /// recently used resolved entry if full. Returns how many held frames the evicted entry
    /// took with it, if one was evicted.
    fn insert_resolved(&mut self, ip: u32, n: Neighbour) -> Option<usize> {
        if let Some(p) = n.probe {
            self.timers.insert((p.next, ip));
        }
        let (old_ip, old) = self.resolved.push(ip, n)?;
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

    /// Start resolving `ip` (in neither table) on `iface`, the first request about to be
    /// sent. `false` if the incomplete table is full: nothing changed, nothing evicted.
    pub(crate) fn insert_incomplete(&mut self, now: Duration, ip: u32, iface: usize) -> bool {
        if self.incomplete.contains(&ip) {
            return true; // already resolving (callers look up first)
        }
        if self.incomplete.len() >= self.incomplete.cap().get() {
            return false;
        }
        let next = now.saturating_add(self.limits.arp_retry);
        self.timers.insert((next, ip));
        let n = Neighbour {
            iface,
            mac: None,
            reachable_until: Duration::ZERO,
            probe: Some(Probe { sent: 1, next }),
            held: 0,
        };
        if let Some((old_ip, old)) = self.incomplete.push(ip, n) {
            // Cannot happen (not full, `ip` absent); keep the timer index consistent anyway.
            Self::unschedule(&mut self.timers, old_ip, &old);
        }
        true
    }

    /// ARP told us `ip` is at `mac` on `iface`. Updates an existing entry (completing a
    /// resolution, which moves it to the resolved table; ending a probe); creates a resolved
    /// one only if `create`.
    pub(crate) fn learn(
        &mut self,
        now: Duration,
        ip: u32,
        iface: usize,
        mac: [u8; 6],
        create: bool,
    ) -> Learned {
        let until = now.saturating_add(self.limits.arp_reachable);
        if let Some(n) = self.resolved.get_mut(&ip) {
            Self::unschedule(&mut self.timers, ip, n);
            n.probe = None;
            n.mac = Some(mac);
            n.iface = iface;
            n.reachable_until = until;
            return Learned::Updated;
        }
        if let Some(mut n) = self.incomplete.pop(&ip) {
            Self::unschedule(&mut self.timers, ip, &n);
            n.probe = None;
            n.mac = Some(mac);
            n.iface = iface;
            n.reachable_until = until;
            let held = n.held;
            let evicted = self.insert_resolved(ip, n);
            return Learned::Completed { held, evicted };
        }
        if !create {
            return Learned::Unknown;
        }
        let evicted = self.insert_resolved(
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
        let per_neighbour = self.limits.arp_pending_per_neighbour;
        let Some(n) = self.entry_mut(ip) else {
            return false;
        };
        if n.held >= per_neighbour {
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
        if let Some(n) = self.entry_mut(ip) {
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
        let (retries, retry) = (self.limits.arp_retries, self.limits.arp_retry);
        loop {
            let &(t, ip) = self.timers.first()?;
            if t > now {
                return None;
            }
            self.timers.pop_first();
            // Entries unschedule when they leave, so this always finds one; skip if not.
            let Some(n) = self.entry_mut(ip) else {
                continue;
            };
            return match n.probe {
                Some(p) if p.sent < retries => {
                    let next = now.saturating_add(retry);
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
                    // Keep the held frames listed until the router takes them: remove the
                    // entry only, so `take_held` below still finds them by address.
                    if self.incomplete.pop(&ip).is_none() {
                        self.resolved.pop(&ip);
                    }
                    Some(Expired::Failed { ip, held })
                }
            };
        }
    }

    /// Panic unless the tables agree with each other: every timer names an entry with a
    /// running probe due then and every such entry has its timer; no address is in both
    /// tables; incomplete entries have no MAC and resolved ones have one; both tables and
    /// the held frames within their bounds; held counts add up.
    #[cfg(test)]
    pub(crate) fn assert_consistent(&self) {
        for &(at, ip) in &self.timers {
            let n = self.peek(ip).expect("timer without entry");
            assert_eq!(n.probe.map(|p| p.next), Some(at), "{ip}");
        }
        for (ip, n) in self.iter() {
            if let Some(p) = n.probe {
                assert!(self.timers.contains(&(p.next, ip)), "{ip} has no timer");
            }
            assert!(n.held <= self.limits.arp_pending_per_neighbour);
        }
        for (ip, n) in self.incomplete.iter() {
            assert!(n.mac.is_none() && !self.resolved.contains(ip), "{ip}");
        }
        assert!(self.resolved.iter().all(|(_, n)| n.mac.is_some()));
        assert!(self.resolved.len() <= self.limits.arp_entries);
        assert!(self.incomplete.len() <= self.limits.arp_incomplete_entries);
        assert!(self.held.len() <= self.limits.arp_pending_total);
        let held: usize = self.iter().map(|(_, n)| n.held).sum();
        assert_eq!(held, self.held.len(), "held counts");
    }
}

/// The outcome of [`ArpTable::learn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Learned {
    /// A new resolved entry; `evicted`: held frames of the resolved entry it evicted, if any.
    Created { evicted: Option<usize> },
    /// A resolution in progress completed and moved to the resolved table; `held` frames are
    /// waiting; `evicted` as for `Created`.
    Completed { held: usize, evicted: Option<usize> },
    /// A resolved entry was refreshed (MAC possibly changed).
    Updated,
    /// Not known and not created.
    Unknown,
}

#[cfg(test)]
mod tests;
