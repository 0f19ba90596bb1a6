//! What a [`SoftStore`](crate::SoftStore) did, one counter per outcome, so that every bound
//! that drops or refuses something shows up in the node's statistics.

/// Cumulative counts since the store was created. They only grow (wrapping is not a concern
/// for `u64` at packet rates).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// `get` calls that returned a value.
    pub hits: u64,
    /// `get` calls that found nothing live (absent, or expired and purged on the spot).
    pub misses: u64,
    /// Successful `put`s of a key that was not live in its namespace.
    pub inserts: u64,
    /// Successful `put`s over a live key (value and TTL replaced). Disjoint from `inserts`.
    pub replacements: u64,
    /// Entries removed by a successful `remove`.
    pub removals: u64,
    /// Entries dropped to keep the store under [`Config::max_bytes`](crate::Config::max_bytes),
    /// each by a `put` of its own namespace (a `put` never evicts another namespace's entries).
    pub evictions: u64,
    /// Entries dropped because their TTL ran out (by `expire`, or found due by another call).
    pub expiries: u64,
    /// `put`s refused with [`PutError::QuotaExceeded`](crate::PutError::QuotaExceeded).
    pub quota_refusals: u64,
    /// `put`s refused for size: key or value too long, or the entry larger than the store.
    pub size_refusals: u64,
    /// `put`s refused with [`PutError::StoreFull`](crate::PutError::StoreFull): the other
    /// namespaces left too little room. A count that keeps rising means the store is too small
    /// for the protocols using it, or some protocols are holding on to room.
    pub store_full_refusals: u64,
    /// `put`s and `refresh`es refused because the TTL (after clamping) was zero.
    pub ttl_refusals: u64,
    /// Successful `refresh` calls.
    pub refreshes: u64,
}
