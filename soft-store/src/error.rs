//! Why a [`SoftStore::put`](crate::SoftStore::put) was refused. A refused `put` changes
//! nothing in the store except its [`Counters`](crate::Counters).

/// A refused `put`. Checks run in this order, so the first failing one is reported: key
/// length, value length, TTL, entry size against the whole store, the namespace quota, then
/// the room the other namespaces leave (the checks that depend only on the arguments come
/// first; of the two that depend on state, the one the protocol controls alone comes first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PutError {
    /// The key is longer than [`Config::max_key_len`](crate::Config::max_key_len).
    #[error("soft-store key is {len} bytes, over the {max}-byte limit")]
    KeyTooLong {
        /// Length of the refused key.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The value is longer than [`Config::max_value_len`](crate::Config::max_value_len).
    #[error("soft-store value is {len} bytes, over the {max}-byte limit")]
    ValueTooLong {
        /// Length of the refused value.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The TTL is zero (or [`Config::max_ttl`](crate::Config::max_ttl) is zero, which clamps
    /// every TTL to zero): the entry would be expired before anyone could read it.
    #[error("soft-store TTL is zero")]
    ZeroTtl,
    /// The namespace would hold more than
    /// [`Config::namespace_quota`](crate::Config::namespace_quota) charged bytes. The
    /// namespace's entries are not evicted to make room: the protocol must remove entries or
    /// let them expire.
    #[error("soft-store namespace would need {needed} bytes, over its {quota}-byte quota")]
    QuotaExceeded {
        /// Charged bytes the namespace would hold after the `put` (a replaced entry's cost
        /// already deducted).
        needed: usize,
        /// The configured quota.
        quota: usize,
    },
    /// The entry alone costs more than [`Config::max_bytes`](crate::Config::max_bytes), so no
    /// amount of eviction could make it fit.
    #[error("soft-store entry costs {needed} bytes, more than the whole store's {max}")]
    TooLarge {
        /// Charged bytes of the entry.
        needed: usize,
        /// The configured store size.
        max: usize,
    },
    /// The other namespaces hold so much of [`Config::max_bytes`](crate::Config::max_bytes)
    /// that the entry would not fit even if every entry of its own namespace were evicted. A
    /// `put` evicts only its own namespace's entries, never another's, so it is refused; room
    /// comes back as other namespaces' entries expire or are removed.
    #[error(
        "soft-store is full: entry costs {needed} bytes, other namespaces leave this one {available}"
    )]
    StoreFull {
        /// Charged bytes of the entry.
        needed: usize,
        /// Charged bytes the namespace could hold at most right now: `max_bytes` minus what
        /// the other namespaces hold.
        available: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_the_figures() {
        let e = PutError::QuotaExceeded {
            needed: 1100,
            quota: 1024,
        };
        assert_eq!(
            e.to_string(),
            "soft-store namespace would need 1100 bytes, over its 1024-byte quota"
        );
        let e = PutError::KeyTooLong { len: 300, max: 256 };
        assert_eq!(
            e.to_string(),
            "soft-store key is 300 bytes, over the 256-byte limit"
        );
        let e = PutError::StoreFull {
            needed: 130,
            available: 100,
        };
        assert_eq!(
            e.to_string(),
            "soft-store is full: entry costs 130 bytes, other namespaces leave this one 100"
        );
    }
}
