//! The soft-store itself.
//!
//! # Layout
//!
//! Three structures, all holding exactly one item per stored entry (so all are bounded by the
//! byte bound divided by [`ENTRY_OVERHEAD`](crate::ENTRY_OVERHEAD)):
//!
//! - `slots: LruCache<EntryId, Slot<N>>` — the entries themselves, in global recency order.
//!   An `EntryId` is a sequence number handed out by `put`; eviction pops the least recently
//!   used slot of *any* namespace.
//! - `spaces: HashMap<N, Space>` — per namespace, `key -> EntryId` plus the namespace's charged
//!   bytes. The two-level map is what keeps `get` allocation-free: it hashes `&N`, then `&[u8]`
//!   (the key is an `Arc<[u8]>`, which borrows as `[u8]`), then the `u64` id; no owned
//!   `(N, Vec<u8>)` is built. The key bytes are shared between `spaces` and the slot, not
//!   copied. A namespace whose last entry goes is dropped from the map.
//! - `expirations: BTreeSet<(Duration, EntryId)>` — the mini-redis expiry index, ordered by
//!   expiry then id (the id makes items unique and ties deterministic). It is kept exact:
//!   `refresh`, replacement, `remove` and eviction delete the old item eagerly, so the index
//!   never holds stale items and `expire`/`next_expiry` just look at its front.
//!
//! # Time
//!
//! Expired entries are purged three ways: `put` and `expire` purge everything due (amortized:
//! each entry is purged once), while `get` and `refresh` only check the entry they touch, so
//! the per-packet `get` does bounded work. `remove` takes no `now`, so the store remembers the
//! latest `now` it has been given and judges expiry against that; every call also treats a
//! `now` earlier than that one as that one, so a clock that steps back cannot revive state.
//! `HashMap` iteration never reaches an output: purge order comes from the expiry index,
//! eviction order from the LRU list, and [`SoftStore::entries`] sorts by key.

use core::fmt;
use core::hash::Hash;
use core::time::Duration;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use lru::LruCache;

use crate::config::{Config, entry_cost};
use crate::counters::Counters;
use crate::error::PutError;

/// The namespace type the node uses: a protocol, named by its capsule type's SHA-256.
pub type ProtocolId = [u8; 32];

/// Identity of one stored entry; a replacement gets a new one.
type EntryId = u64;

/// A successful `put`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOutcome {
    /// A live entry with the same key in the same namespace was replaced.
    pub replaced: bool,
    /// Entries (of any namespace) evicted to keep the store under its byte bound.
    pub evicted: usize,
}

/// A read-only view of one entry, for display and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryView<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The value.
    pub value: &'a [u8],
    /// When the entry expires, on the caller's clock.
    pub expires_at: Duration,
}

/// One stored entry. The namespace and key are kept so that eviction and expiry, which find
/// the entry by id, can unlink it from its namespace.
struct Slot<N> {
    ns: N,
    key: Arc<[u8]>,
    value: Box<[u8]>,
    expires_at: Duration,
}

impl<N> Slot<N> {
    fn cost(&self) -> usize {
        entry_cost(self.key.len(), self.value.len())
    }
}

/// One namespace's index and charged bytes.
struct Space {
    ids: HashMap<Arc<[u8]>, EntryId>,
    bytes: usize,
}

/// A bounded, namespaced key/value store with per-entry TTL; see the [module docs](self).
///
/// `N` is the namespace; the node uses [`ProtocolId`]. Only `Hash + Eq + Clone` is needed:
/// namespaces are never iterated in an order that reaches an output.
pub struct SoftStore<N = ProtocolId> {
    config: Config,
    slots: LruCache<EntryId, Slot<N>>,
    spaces: HashMap<N, Space>,
    expirations: BTreeSet<(Duration, EntryId)>,
    /// Charged bytes of all slots.
    bytes: usize,
    /// The latest `now` seen; see "Time" in the module docs.
    latest: Duration,
    next_id: EntryId,
    counters: Counters,
}

impl<N> fmt::Debug for SoftStore<N> {
    /// A summary: entries and values may be large and are capsule-private.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftStore")
            .field("config", &self.config)
            .field("entries", &self.slots.len())
            .field("namespaces", &self.spaces.len())
            .field("bytes", &self.bytes)
            .field("latest", &self.latest)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl<N: Hash + Eq + Clone> Default for SoftStore<N> {
    fn default() -> Self {
        Self::new(Config::default())
    }
}

impl<N: Hash + Eq + Clone> SoftStore<N> {
    /// An empty store with these bounds. Any config is accepted: limits of zero simply refuse
    /// every `put`.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            slots: LruCache::unbounded(),
            spaces: HashMap::new(),
            expirations: BTreeSet::new(),
            bytes: 0,
            latest: Duration::ZERO,
            next_id: 0,
            counters: Counters::default(),
        }
    }

    /// The bounds this store was created with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The value under `key` in namespace `ns`, if live at `now`.
    ///
    /// A hit makes the entry the most recently used. An entry found expired is purged on the
    /// spot and counted as an expiry and a miss. Does not allocate.
    pub fn get(&mut self, ns: &N, key: &[u8], now: Duration) -> Option<&[u8]> {
        let now = self.advance_clock(now);
        let Some(id) = self.id_of(ns, key) else {
            self.counters.misses += 1;
            return None;
        };
        if self.is_due(id, now) {
            self.purge_expired(id);
            self.counters.misses += 1;
            return None;
        }
        self.counters.hits += 1;
        self.slots.get(&id).map(|slot| &*slot.value)
    }

    /// Stores `value` under `key` in namespace `ns` for `ttl` (clamped to
    /// [`Config::max_ttl`]), replacing any live entry with that key.
    ///
    /// First purges every entry due at `now`. Then refuses, changing nothing but a counter, if
    /// the key or value is too long, the TTL is zero, the entry is larger than the whole store,
    /// or the namespace would go over its quota (a replaced entry's cost counts as freed).
    /// Otherwise evicts the globally least recently used entries until the new one fits, and
    /// stores it as the most recently used, expiring at `now + ttl` (saturating).
    pub fn put(
        &mut self,
        ns: &N,
        key: &[u8],
        value: &[u8],
        ttl: Duration,
        now: Duration,
    ) -> Result<PutOutcome, PutError> {
        let now = self.advance_clock(now);
        self.purge_due(now);

        let config = self.config;
        if key.len() > config.max_key_len {
            self.counters.size_refusals += 1;
            return Err(PutError::KeyTooLong {
                len: key.len(),
                max: config.max_key_len,
            });
        }
        if value.len() > config.max_value_len {
            self.counters.size_refusals += 1;
            return Err(PutError::ValueTooLong {
                len: value.len(),
                max: config.max_value_len,
            });
        }
        let Some(ttl) = self.clamp_ttl(ttl) else {
            return Err(PutError::ZeroTtl);
        };
        let cost = entry_cost(key.len(), value.len());
        if cost > config.max_bytes {
            self.counters.size_refusals += 1;
            return Err(PutError::TooLarge {
                needed: cost,
                max: config.max_bytes,
            });
        }
        let old = self.id_of(ns, key);
        let old_cost = old
            .and_then(|id| self.slots.peek(&id))
            .map_or(0, Slot::cost);
        let needed = self
            .namespace_bytes(ns)
            .saturating_sub(old_cost)
            .saturating_add(cost);
        if needed > config.namespace_quota {
            self.counters.quota_refusals += 1;
            return Err(PutError::QuotaExceeded {
                needed,
                quota: config.namespace_quota,
            });
        }

        // From here on the put succeeds.
        let replaced = old.is_some_and(|id| self.purge(id).is_some());
        let mut evicted = 0;
        while self.bytes.saturating_add(cost) > config.max_bytes {
            let Some((id, slot)) = self.slots.pop_lru() else {
                // Unreachable: an empty store holds 0 bytes and `cost <= max_bytes`.
                break;
            };
            self.unlink(id, &slot);
            evicted += 1;
        }
        self.counters.evictions += evicted as u64;
        if replaced {
            self.counters.replacements += 1;
        } else {
            self.counters.inserts += 1;
        }

        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let key: Arc<[u8]> = Arc::from(key);
        let expires_at = now.saturating_add(ttl);
        let space = self.spaces.entry(ns.clone()).or_insert_with(|| Space {
            ids: HashMap::new(),
            bytes: 0,
        });
        space.ids.insert(Arc::clone(&key), id);
        space.bytes = space.bytes.saturating_add(cost);
        self.bytes = self.bytes.saturating_add(cost);
        self.expirations.insert((expires_at, id));
        self.slots.put(
            id,
            Slot {
                ns: ns.clone(),
                key,
                value: Box::from(value),
                expires_at,
            },
        );
        Ok(PutOutcome { replaced, evicted })
    }

    /// Resets the TTL of a live entry to `ttl` (clamped) from `now`, keeping its value, and
    /// makes it the most recently used (a refresh is a use).
    ///
    /// Returns `false`, changing nothing, if the entry is absent, or found expired (it is then
    /// purged and counted as an expiry), or if the TTL is zero (counted as a TTL refusal; use
    /// [`remove`](Self::remove) to drop an entry).
    pub fn refresh(&mut self, ns: &N, key: &[u8], ttl: Duration, now: Duration) -> bool {
        let now = self.advance_clock(now);
        let Some(ttl) = self.clamp_ttl(ttl) else {
            return false;
        };
        let Some(id) = self.id_of(ns, key) else {
            return false;
        };
        if self.is_due(id, now) {
            self.purge_expired(id);
            return false;
        }
        let Some(slot) = self.slots.get_mut(&id) else {
            return false;
        };
        let expires_at = now.saturating_add(ttl);
        self.expirations.remove(&(slot.expires_at, id));
        self.expirations.insert((expires_at, id));
        slot.expires_at = expires_at;
        self.counters.refreshes += 1;
        true
    }

    /// Removes the entry under `key` in namespace `ns`; `true` if a live one was removed.
    ///
    /// There is no `now` here (the host call has none), so "live" is judged against the latest
    /// `now` the store has seen: an entry already due then is purged as an expiry and `false`
    /// is returned.
    pub fn remove(&mut self, ns: &N, key: &[u8]) -> bool {
        let Some(id) = self.id_of(ns, key) else {
            return false;
        };
        if self.is_due(id, self.latest) {
            self.purge_expired(id);
            return false;
        }
        let removed = self.purge(id).is_some();
        if removed {
            self.counters.removals += 1;
        }
        removed
    }

    /// Purges every entry that expires at or before `now`; returns how many.
    ///
    /// The driver calls this when [`next_expiry`](Self::next_expiry) is reached; the cost is
    /// proportional to the number purged.
    pub fn expire(&mut self, now: Duration) -> usize {
        let now = self.advance_clock(now);
        self.purge_due(now)
    }

    /// When the earliest stored entry expires; `None` if the store is empty. May be in the
    /// past if [`expire`](Self::expire) has not been called since.
    pub fn next_expiry(&self) -> Option<Duration> {
        self.expirations.first().map(|&(at, _)| at)
    }

    /// What the store has done so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Entries stored, including any due but not yet purged.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Charged bytes of all stored entries; never more than [`Config::max_bytes`].
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Charged bytes of namespace `ns`; never more than [`Config::namespace_quota`].
    pub fn namespace_bytes(&self, ns: &N) -> usize {
        self.spaces.get(ns).map_or(0, |space| space.bytes)
    }

    /// Namespaces holding at least one entry.
    pub fn namespace_count(&self) -> usize {
        self.spaces.len()
    }

    /// Namespace `ns`'s live entries (as of the latest `now` seen), sorted by key. For display
    /// and tests: it allocates and does not touch recency.
    pub fn entries(&self, ns: &N) -> Vec<EntryView<'_>> {
        let Some(space) = self.spaces.get(ns) else {
            return Vec::new();
        };
        let mut views: Vec<EntryView<'_>> = space
            .ids
            .values()
            .filter_map(|id| self.slots.peek(id))
            .filter(|slot| slot.expires_at > self.latest)
            .map(|slot| EntryView {
                key: &slot.key,
                value: &slot.value,
                expires_at: slot.expires_at,
            })
            .collect();
        views.sort_unstable_by(|a, b| a.key.cmp(b.key));
        views
    }

    /// Makes the store's clock monotonic: returns `max(now, latest)` and remembers it.
    fn advance_clock(&mut self, now: Duration) -> Duration {
        self.latest = self.latest.max(now);
        self.latest
    }

    /// `ttl` clamped to the configured maximum, or `None` (counted) if that is zero.
    fn clamp_ttl(&mut self, ttl: Duration) -> Option<Duration> {
        let ttl = ttl.min(self.config.max_ttl);
        if ttl.is_zero() {
            self.counters.ttl_refusals += 1;
            None
        } else {
            Some(ttl)
        }
    }

    fn id_of(&self, ns: &N, key: &[u8]) -> Option<EntryId> {
        self.spaces.get(ns)?.ids.get(key).copied()
    }

    /// Whether entry `id` is due at `now` (a missing slot counts as due, so it gets cleaned).
    fn is_due(&self, id: EntryId, now: Duration) -> bool {
        self.slots
            .peek(&id)
            .is_none_or(|slot| slot.expires_at <= now)
    }

    /// Purges every entry due at `now`, in (expiry, id) order; returns how many.
    fn purge_due(&mut self, now: Duration) -> usize {
        let mut purged = 0;
        while let Some(&(at, id)) = self.expirations.first() {
            if at > now {
                break;
            }
            // Drop the index item first so that a missing slot cannot stall the loop.
            self.expirations.pop_first();
            if self.purge(id).is_some() {
                purged += 1;
            }
        }
        self.counters.expiries += purged as u64;
        purged
    }

    /// Purges one entry found due, counting the expiry.
    fn purge_expired(&mut self, id: EntryId) {
        if self.purge(id).is_some() {
            self.counters.expiries += 1;
        }
    }

    /// Removes entry `id` from every structure; returns it if it was there.
    fn purge(&mut self, id: EntryId) -> Option<Slot<N>> {
        let slot = self.slots.pop(&id)?;
        self.unlink(id, &slot);
        Some(slot)
    }

    /// Removes a slot already taken out of `slots` from the other structures and the byte
    /// totals.
    fn unlink(&mut self, id: EntryId, slot: &Slot<N>) {
        let cost = slot.cost();
        self.expirations.remove(&(slot.expires_at, id));
        self.bytes = self.bytes.saturating_sub(cost);
        if let Some(space) = self.spaces.get_mut(&slot.ns) {
            if space.ids.get(&*slot.key) == Some(&id) {
                space.ids.remove(&*slot.key);
            }
            space.bytes = space.bytes.saturating_sub(cost);
            if space.ids.is_empty() {
                self.spaces.remove(&slot.ns);
            }
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
