//! Sans-IO soft-state key/value store: per-entry TTL, global LRU byte bound, per-namespace quota.
//!
//! # Map
//!
//! | file | what |
//! |---|---|
//! | [`config`] | [`Config`] (byte bound, quota, key/value/TTL limits) and [`ENTRY_OVERHEAD`] |
//! | [`store`] | [`SoftStore`]: `get`/`put`/`refresh`/`remove`, `expire`/`next_expiry`, views |
//! | [`error`] | [`PutError`], why a `put` was refused |
//! | [`counters`] | [`Counters`], one per outcome, including every refusal and drop |
//!
//! # Why
//!
//! ANTS nodes give capsule code a *soft* store: `put(key, value, age)` keeps a value for at
//! most `age`, and the node may drop it earlier under memory pressure. Capsule protocols are
//! written to survive that loss (they re-create state as capsules flow), so the store can act
//! as a cache: it never blocks, never grows past [`Config::max_bytes`], and forgets the least
//! recently used entries when it has to. What it must *not* do is let one protocol read or
//! clobber another's state, so every call names a namespace — the protocol, i.e. the capsule
//! type's SHA-256 ([`ProtocolId`]) — and each namespace has its own byte quota. The only way
//! one protocol affects another is indirectly, by pushing the whole store to its global bound
//! so that the globally least recently used entries are evicted.
//!
//! The store is sans-IO: no clock, threads or IO. Every time-dependent call takes `now` as a
//! [`Duration`](core::time::Duration) since an epoch of the caller's choosing, and the driver
//! (node event loop or simulator) calls [`SoftStore::expire`] when
//! [`SoftStore::next_expiry`] says something is due — the mini-redis `db.rs` pattern, minus
//! the background task.
#![forbid(unsafe_code)]

pub mod config;
pub mod counters;
pub mod error;
pub mod store;

pub use config::{Config, ENTRY_OVERHEAD};
pub use counters::Counters;
pub use error::PutError;
pub use store::{EntryView, ProtocolId, PutOutcome, SoftStore};
