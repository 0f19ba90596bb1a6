//! The soft-store itself.
//!
//! # Layout
//!
//! Two structures, each holding exactly one item per stored entry (so both are bounded by the
//! byte bound divided by [`ENTRY_OVERHEAD`](crate::ENTRY_OVERHEAD)):
//!
//! - `spaces: HashMap<N, Space>` — per namespace, its entries in *its own* recency order
//!   (`LruCache<Arc<[u8]>, Slot>`: key → value, expiry and id) plus its charged bytes. The
//!   two-level map is what keeps `get` allocation-free: it hashes `&N`, then `&[u8]` (the key
//!   is an `Arc<[u8]>`, which borrows as `[u8]`); no owned `(N, Vec<u8>)` is built. A
//!   namespace whose last entry goes is dropped from the map, so there are never more
//!   namespaces than entries.
//! - `expirations: BTreeMap<(Duration, EntryId), (N, Arc<[u8]>)>` — the mini-redis expiry
//!   index, ordered by expiry then id, pointing back at the entry's namespace and key (the key
//!   bytes are shared with the namespace's map, not copied). An `EntryId` is a sequence number
//!   handed out by `put`; it makes items unique and ties deterministic. The index is kept
//!   exact: `refresh`, replacement, `remove` and eviction delete the old item eagerly, so it
//!   never holds stale items and `expire`/`next_expiry` just look at its front.
//!
//! # Eviction never crosses namespaces
//!
//! Protocols are code written by strangers, so one protocol must not be able to destroy
//! another's state. [`Config::namespace_quota`](crate::Config::namespace_quota) caps what one
//! namespace holds (a `put` over it is refused; nothing is evicted for it). The store-wide
//! bound, [`Config::max_bytes`](crate::Config::max_bytes), is then kept by a `put` evicting the
//! least recently used entries *of its own namespace*, and of no other. If evicting all of them
//! would still not make room, because the other namespaces hold more than `max_bytes` minus the
//! entry's cost, the `put` is refused with [`PutError::StoreFull`] and changes nothing. Whether
//! that is so is known in O(1) before anything is touched (the store's bytes minus the
//! namespace's), so a refusal costs no work.
//!
//! The recency order is kept per namespace (one `LruCache` each) rather than globally for the
//! cost under attack: finding "the least recently used entry of namespace X" in one global
//! list means walking past every older entry of the other namespaces, and a flooding protocol
//! would make that walk O(n) on every `put` of its victims. With one list per namespace, a
//! `put` costs O(log n) for the expiry index plus O(1) per entry it evicts, and an entry is
//! evicted at most once. The price is an `LruCache` (a hash table and two sentinel nodes) per
//! namespace, bounded like the rest because a namespace exists only while it holds an entry.
//!
//! What one namespace *can* still do to another is occupy room. Once the other namespaces fill
//! the store, a namespace with too little of its own to evict gets `StoreFull` until their
//! entries expire or are removed (a protocol that keeps refreshing keeps its room). Filling the
//! store takes `max_bytes / namespace_quota` namespaces (16 with the defaults). Between
//! protocols it is first come, first served; what a protocol has stored is lost only to time,
//! its own calls, or pressure it creates itself.
//!
//! # Time
//!
//! Expired entries are purged three ways: `put` and `expire` purge everything due (amortized:
//! each entry is purged once), while `get` and `refresh` only check the entry they touch, so
//! the per-packet `get` does bounded work. Purging an expired entry is not eviction: a `put`
//! purges the due entries of every namespace before it checks for room. `remove` takes no
//! `now`, so the store remembers the latest `now` it has been given and judges expiry against
//! that; every call also treats a `now` earlier than that one as that one, so a clock that
//! steps back cannot revive state. `HashMap` iteration never reaches an output: purge order
//! comes from the expiry index, eviction order from the namespace's LRU list, and
//! [`SoftStore::entries`] sorts by key.

use core::fmt;
use core::hash::Hash;
use core::time::Duration;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use lru::LruCache;

use crate::config::{Config, entry_cost};
use crate::counters::Counters;
use crate::error::PutError;

/// The namespace type the node uses: a protocol, named by its capsule type's SHA-256.
pub type ProtocolId = [u8; 32];

/// Identity of one stored entry in the expiry index; a replacement gets a new one.
type EntryId = u64;

/// A successful `put`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOutcome {
    /// A live entry with the same key in the same namespace was replaced.
    pub replaced: bool,
    /// Entries evicted to keep the store under its byte bound. They are always entries of the
    /// `put`'s own namespace, its least recently used first; a `put` never evicts another
    /// namespace's entries. The replaced entry, if any, is reported by `replaced`, not here.
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

/// The expiry index: `(expires_at, id)` → the entry's namespace and key. See the
/// [module docs](self).
type ExpiryIndex<N> = BTreeMap<(Duration, EntryId), (N, Arc<[u8]>)>;

/// One stored entry, filed under its key in its namespace's recency list.
struct Slot {
    /// Its item in the expiry index is `(expires_at, id)`.
    id: EntryId,
    value: Box<[u8]>,
    expires_at: Duration,
}

/// One namespace's entries, least recently used first, and their charged bytes.
struct Space {
    entries: LruCache<Arc<[u8]>, Slot>,
    bytes: usize,
}

/// A bounded, namespaced key/value store with per-entry TTL; see the [module docs](self).
///
/// `N` is the namespace; the node uses [`ProtocolId`]. Only `Hash + Eq + Clone` is needed:
/// namespaces are never iterated in an order that reaches an output.
pub struct SoftStore<N = ProtocolId> {
    config: Config,
    spaces: HashMap<N, Space>,
    expirations: ExpiryIndex<N>,
    /// Charged bytes of all entries.
    bytes: usize,
    /// The latest `now` seen; see "Time" in the module docs.
    latest: Duration,
    next_id: EntryId,
    counters: Counters,
}

impl<N> fmt::Debug for SoftStore<N> {
    /// A summary: entries and values may be large and are capsule-private, and namespaces are
    /// counted, not listed (listing them would leak `HashMap` order).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftStore")
            .field("config", &self.config)
            .field("entries", &self.expirations.len())
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
            spaces: HashMap::new(),
            expirations: BTreeMap::new(),
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
    /// A hit makes the entry the most recently used of its namespace. An entry found expired
    /// is purged on the spot and counted as an expiry and a miss. Does not allocate.
    pub fn get(&mut self, ns: &N, key: &[u8], now: Duration) -> Option<&[u8]> {
        let now = self.advance_clock(now);
        // `get` promotes before the expiry check; a due entry is purged, so that is harmless.
        let due = match self.spaces.get_mut(ns).and_then(|s| s.entries.get(key)) {
            Some(slot) => slot.expires_at <= now,
            None => {
                self.counters.misses += 1;
                return None;
            }
        };
        if due {
            self.purge_expired(ns, key);
            self.counters.misses += 1;
            return None;
        }
        self.counters.hits += 1;
        // A second lookup: returning the first borrow on one path only is not accepted by the
        // borrow checker when the other path purges.
        let slot = self.spaces.get(ns)?.entries.peek(key)?;
        Some(&slot.value)
    }

    /// Stores `value` under `key` in namespace `ns` for `ttl` (clamped to
    /// [`Config::max_ttl`]), replacing any live entry with that key.
    ///
    /// First purges every entry (of any namespace) due at `now`. Then refuses, changing nothing
    /// but a counter, if the key or value is too long, the TTL is zero, the entry is larger than
    /// the whole store, the namespace would go over its quota (a replaced entry's cost counts as
    /// freed), or the other namespaces leave too little room even if all of `ns`'s entries were
    /// evicted ([`PutError::StoreFull`]). Otherwise evicts `ns`'s least recently used entries —
    /// never another namespace's — until the new one fits under [`Config::max_bytes`], and
    /// stores it as `ns`'s most recently used, expiring at `now + ttl` (saturating).
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
        // Everything due is purged, so an entry still under `key` is live.
        let old_cost = self
            .spaces
            .get(ns)
            .and_then(|space| space.entries.peek(key))
            .map_or(0, |slot| entry_cost(key.len(), slot.value.len()));
        let own = self.namespace_bytes(ns);
        let needed = own.saturating_sub(old_cost).saturating_add(cost);
        if needed > config.namespace_quota {
            self.counters.quota_refusals += 1;
            return Err(PutError::QuotaExceeded {
                needed,
                quota: config.namespace_quota,
            });
        }
        // The most `ns` can hold once all of its own entries are gone: whatever the other
        // namespaces leave. Their entries are not ours to evict.
        let available = config
            .max_bytes
            .saturating_sub(self.bytes.saturating_sub(own));
        if cost > available {
            self.counters.store_full_refusals += 1;
            return Err(PutError::StoreFull {
                needed: cost,
                available,
            });
        }

        // From here on the put succeeds.
        let replaced = self.purge(ns, key).is_some();
        let evicted = self.evict_own(ns, cost);
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
            entries: LruCache::unbounded(),
            bytes: 0,
        });
        space.entries.put(
            Arc::clone(&key),
            Slot {
                id,
                value: Box::from(value),
                expires_at,
            },
        );
        space.bytes = space.bytes.saturating_add(cost);
        self.bytes = self.bytes.saturating_add(cost);
        self.expirations.insert((expires_at, id), (ns.clone(), key));
        Ok(PutOutcome { replaced, evicted })
    }

    /// Resets the TTL of a live entry to `ttl` (clamped) from `now`, keeping its value, and
    /// makes it the most recently used of its namespace (a refresh is a use).
    ///
    /// Returns `false`, changing nothing, if the entry is absent, or found expired (it is then
    /// purged and counted as an expiry), or if the TTL is zero (counted as a TTL refusal; use
    /// [`remove`](Self::remove) to drop an entry).
    pub fn refresh(&mut self, ns: &N, key: &[u8], ttl: Duration, now: Duration) -> bool {
        let now = self.advance_clock(now);
        let Some(ttl) = self.clamp_ttl(ttl) else {
            return false;
        };
        let Some(slot) = self
            .spaces
            .get_mut(ns)
            .and_then(|space| space.entries.get_mut(key))
        else {
            return false;
        };
        if slot.expires_at <= now {
            self.purge_expired(ns, key);
            return false;
        }
        let old = (slot.expires_at, slot.id);
        let expires_at = now.saturating_add(ttl);
        slot.expires_at = expires_at;
        if let Some(item) = self.expirations.remove(&old) {
            self.expirations.insert((expires_at, slot.id), item);
        }
        self.counters.refreshes += 1;
        true
    }

    /// Removes the entry under `key` in namespace `ns`; `true` if a live one was removed.
    ///
    /// There is no `now` here (the host call has none), so "live" is judged against the latest
    /// `now` the store has seen: an entry already due then is purged as an expiry and `false`
    /// is returned.
    pub fn remove(&mut self, ns: &N, key: &[u8]) -> bool {
        let Some(slot) = self.purge(ns, key) else {
            return false;
        };
        if slot.expires_at <= self.latest {
            self.counters.expiries += 1;
            return false;
        }
        self.counters.removals += 1;
        true
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
        self.expirations.first_key_value().map(|(&(at, _), _)| at)
    }

    /// What the store has done so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Entries stored, including any due but not yet purged.
    pub fn len(&self) -> usize {
        // The expiry index holds exactly one item per entry.
        self.expirations.len()
    }

    /// Whether no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.expirations.is_empty()
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

    /// The namespaces holding at least one entry, sorted. For display: it allocates.
    pub fn namespaces(&self) -> Vec<&N>
    where
        N: Ord,
    {
        let mut v: Vec<&N> = self.spaces.keys().collect();
        v.sort_unstable();
        v
    }

    /// When the entry under `key` in namespace `ns` expires, if it is live (as of the latest
    /// `now` seen). Does not allocate and does not touch recency or counters.
    pub fn live_until(&self, ns: &N, key: &[u8]) -> Option<Duration> {
        let slot = self.spaces.get(ns)?.entries.peek(key)?;
        (slot.expires_at > self.latest).then_some(slot.expires_at)
    }

    /// Namespace `ns`'s live entries (as of the latest `now` seen), sorted by key. For display
    /// and tests: it allocates and does not touch recency.
    pub fn entries(&self, ns: &N) -> Vec<EntryView<'_>> {
        let Some(space) = self.spaces.get(ns) else {
            return Vec::new();
        };
        let mut views: Vec<EntryView<'_>> = space
            .entries
            .iter()
            .filter(|(_, slot)| slot.expires_at > self.latest)
            .map(|(key, slot)| EntryView {
                key,
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

    /// Evicts namespace `ns`'s least recently used entries until `cost` more bytes fit under
    /// [`Config::max_bytes`]; returns how many. Touches no other namespace: the caller has
    /// checked that `ns`'s own entries are enough.
    fn evict_own(&mut self, ns: &N, cost: usize) -> usize {
        let mut evicted = 0;
        while self.bytes.saturating_add(cost) > self.config.max_bytes {
            let Some(key) = self
                .spaces
                .get(ns)
                .and_then(|space| space.entries.peek_lru())
                .map(|(key, _)| Arc::clone(key))
            else {
                // Unreachable after the caller's `StoreFull` check.
                break;
            };
            self.purge(ns, &key);
            evicted += 1;
        }
        evicted
    }

    /// Purges every entry due at `now`, in (expiry, id) order; returns how many.
    fn purge_due(&mut self, now: Duration) -> usize {
        let mut purged = 0;
        while let Some(item) = self.expirations.first_entry() {
            let &(at, id) = item.key();
            if at > now {
                break;
            }
            // Dropping the index item first means a missing entry cannot stall the loop.
            let (ns, key) = item.remove();
            // The index is exact, so the entry is there under this id; checking is cheap and
            // keeps a bookkeeping bug from purging a newer entry under the same key.
            let current = self
                .spaces
                .get(&ns)
                .and_then(|space| space.entries.peek(&*key))
                .is_some_and(|slot| slot.id == id);
            if current && self.take(&ns, &key).is_some() {
                purged += 1;
            }
        }
        self.counters.expiries += purged as u64;
        purged
    }

    /// Purges one entry found due, counting the expiry.
    fn purge_expired(&mut self, ns: &N, key: &[u8]) {
        if self.purge(ns, key).is_some() {
            self.counters.expiries += 1;
        }
    }

    /// Removes the entry under `key` in `ns` from every structure; returns it if it was there.
    fn purge(&mut self, ns: &N, key: &[u8]) -> Option<Slot> {
        let slot = self.take(ns, key)?;
        self.expirations.remove(&(slot.expires_at, slot.id));
        Some(slot)
    }

    /// Takes the entry under `key` out of namespace `ns` and the byte totals, dropping the
    /// namespace if it was its last entry. The expiry index is left to the caller.
    fn take(&mut self, ns: &N, key: &[u8]) -> Option<Slot> {
        let space = self.spaces.get_mut(ns)?;
        let slot = space.entries.pop(key)?;
        let cost = entry_cost(key.len(), slot.value.len());
        space.bytes = space.bytes.saturating_sub(cost);
        if space.entries.is_empty() {
            self.spaces.remove(ns);
        }
        self.bytes = self.bytes.saturating_sub(cost);
        Some(slot)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
