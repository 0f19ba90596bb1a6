//! Sans-IO soft-state key/value store: per-entry TTL, per-namespace quota and LRU under a global
//! byte bound.
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
//! recently used entries when it has to. What it must *not* do is let one protocol read,
//! clobber or push out another's state, so every call names a namespace — the protocol, i.e.
//! the capsule type's SHA-256 ([`ProtocolId`]) — each namespace has its own byte quota, and a
//! `put` that needs room under the global bound evicts only its own namespace's least recently
//! used entries. The only way one protocol affects another is by occupying room: when the
//! others fill the store, a `put` that its own entries cannot make room for is refused
//! ([`PutError::StoreFull`]) rather than taking room from them.
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
