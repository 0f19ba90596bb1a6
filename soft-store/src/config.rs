//! Limits of a [`SoftStore`](crate::SoftStore): what it may hold in total, per namespace and
//! per entry.

use core::time::Duration;

/// Bytes charged per entry on top of its key and value.
///
/// The charge stands for the bookkeeping every entry needs (map slots, LRU links, expiry index
/// item), so that a capsule cannot fill a node with millions of empty entries that cost
/// "nothing". It is an accounting figure, not a measurement: the real per-entry footprint is a
/// small constant factor of it.
pub const ENTRY_OVERHEAD: usize = 64;

/// Bounds of a soft-store. All byte figures are *charged* bytes:
/// `key.len() + value.len() + ENTRY_OVERHEAD` per entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Charged bytes the whole store may hold. A `put` that would go past it evicts the least
    /// recently used entries of its *own* namespace; if those are not enough, it is refused
    /// ([`PutError::StoreFull`](crate::PutError::StoreFull)). One namespace never evicts
    /// another's entries.
    pub max_bytes: usize,
    /// Charged bytes one namespace (protocol) may hold. Reaching it refuses the `put`
    /// ([`PutError::QuotaExceeded`](crate::PutError::QuotaExceeded)); nothing is evicted for
    /// it, so a protocol cannot push out its own state by accident.
    pub namespace_quota: usize,
    /// Longest key accepted, in bytes.
    pub max_key_len: usize,
    /// Longest value accepted, in bytes.
    pub max_value_len: usize,
    /// Longest time-to-live; longer ones are clamped to it, so soft state always goes away.
    pub max_ttl: Duration,
}

impl Default for Config {
    /// 16 MiB in total, 1 MiB per protocol, 256-byte keys, 4 KiB values, one hour at most.
    fn default() -> Self {
        Self {
            max_bytes: 16 << 20,
            namespace_quota: 1 << 20,
            max_key_len: 256,
            max_value_len: 4096,
            max_ttl: Duration::from_secs(3600),
        }
    }
}

/// Charged bytes of an entry; saturates so that absurd limits in a config cannot overflow.
pub(crate) fn entry_cost(key_len: usize, value_len: usize) -> usize {
    key_len
        .saturating_add(value_len)
        .saturating_add(ENTRY_OVERHEAD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_matches_the_documented_limits() {
        let c = Config::default();
        assert_eq!(c.max_bytes, 16 * 1024 * 1024);
        assert_eq!(c.namespace_quota, 1024 * 1024);
        assert_eq!(c.max_key_len, 256);
        assert_eq!(c.max_value_len, 4096);
        assert_eq!(c.max_ttl, Duration::from_secs(60 * 60));
    }

    #[test]
    fn entry_cost_charges_overhead_even_when_empty_and_saturates() {
        assert_eq!(entry_cost(0, 0), ENTRY_OVERHEAD);
        assert_eq!(entry_cost(3, 5), 8 + ENTRY_OVERHEAD);
        assert_eq!(entry_cost(usize::MAX, 1), usize::MAX);
    }
}
