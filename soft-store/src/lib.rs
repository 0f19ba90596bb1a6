//! Sans-IO soft-state key/value store: per-entry TTL, global LRU byte bound, per-namespace quota
