//! The loader's configuration, its answers and events, and its counters.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ants_wire::CapsuleType;

/// Which capsule types a node is willing to fetch and run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CodePolicy {
    /// Any type (the code is still verified by hash).
    #[default]
    AcceptAny,
    /// Only these types; capsules of any other type are refused and never fetched.
    AllowList(BTreeSet<CapsuleType>),
}

impl CodePolicy {
    /// Whether the policy admits `ty`.
    pub fn allows(&self, ty: &CapsuleType) -> bool {
        match self {
            CodePolicy::AcceptAny => true,
            CodePolicy::AllowList(set) => set.contains(ty),
        }
    }
}

/// Limits and timings of a [`CodeLoader`](super::CodeLoader). Every table fed by the
/// network has a bound here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Capsules held per type while its code loads.
    pub max_pending_per_type: usize,
    /// Capsules held in total.
    pub max_pending_total: usize,
    /// Bytes of held capsules in total.
    pub max_pending_bytes: usize,
    /// Loads (fetching or compiling) at once; this also bounds reassembly memory to
    /// `max_concurrent_fetches × max_module_bytes` and the compile queue.
    pub max_concurrent_fetches: usize,
    /// Loads one peer's capsules may start and keep running at once.
    pub max_fetches_per_peer: usize,
    /// Largest module fetched or served; a transfer announcing more is aborted.
    pub max_module_bytes: usize,
    /// Silence from the asked peer before the first re-request; doubles on each round
    /// without progress, up to `max_request_timeout`, and resets when new chunks arrive.
    pub request_timeout: Duration,
    /// Cap of the re-request backoff.
    pub max_request_timeout: Duration,
    /// Request rounds without progress sent to one peer before moving to the next candidate.
    pub max_attempts: u32,
    /// From the first held capsule: give up fetching, drop the held capsules. Absolute:
    /// chunks trickling in do not extend it.
    pub load_timeout: Duration,
    /// From the moment the code is here: give up waiting for the compile, drop the held
    /// capsules and free the slot (the compile may still finish and install the module).
    pub compile_timeout: Duration,
    /// Chunks asked for in one request, and most chunks answered per request when serving.
    pub request_window: u32,
    /// How long a peer that failed to deliver a type is not asked for it again, and how long
    /// a type whose code did not compile is refused.
    pub negative_ttl: Duration,
    /// How long a peer that sent bytes with the wrong hash is not asked for that type.
    pub distrust_ttl: Duration,
    /// A peer may fetch a type from us for this long after we sent it a capsule of that type.
    pub serve_window: Duration,
    /// Module bytes served per peer per second (token bucket); 0 serves nothing.
    pub serve_bytes_per_sec: u64,
    /// Burst of the serving token bucket, in bytes.
    pub serve_burst_bytes: u64,
    /// Compile time one peer's loads may use per second (token bucket, in nanoseconds of
    /// compile per second); a peer in debt cannot start another load.
    pub compile_nanos_per_sec: u64,
    /// Burst of the compile budget, in nanoseconds.
    pub compile_burst_nanos: u64,
    /// Peers with a compile budget (least recently used evicted, counted).
    pub max_budget_peers: usize,
    /// Peers with a serving token bucket (least recently used evicted, counted).
    pub max_serve_peers: usize,
    /// (peer, type) authorizations recorded by `note_sent` (least recently used evicted).
    pub max_authorizations: usize,
    /// Types in the negative cache (soonest-expiring evicted, counted).
    pub max_negative_entries: usize,
    /// (peer, type) distrust entries (soonest-expiring evicted, counted).
    pub max_distrust_entries: usize,
    /// Encoded messages waiting in `poll_transmit`; more are dropped and counted.
    pub max_transmit_queue: usize,
    /// Which types may be fetched at all.
    pub policy: CodePolicy,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            max_pending_per_type: 64,
            max_pending_total: 1024,
            max_pending_bytes: 4 << 20,
            max_concurrent_fetches: 16,
            max_fetches_per_peer: 4,
            max_module_bytes: 1 << 20,
            request_timeout: Duration::from_millis(100),
            max_request_timeout: Duration::from_millis(1600),
            max_attempts: 4,
            load_timeout: Duration::from_secs(5),
            compile_timeout: Duration::from_secs(10),
            request_window: 32,
            negative_ttl: Duration::from_secs(5),
            distrust_ttl: Duration::from_secs(60),
            serve_window: Duration::from_secs(60),
            serve_bytes_per_sec: 1 << 20,
            serve_burst_bytes: 64 << 10,
            compile_nanos_per_sec: 250_000_000,
            compile_burst_nanos: 2_000_000_000,
            max_budget_peers: 1024,
            max_serve_peers: 1024,
            max_authorizations: 4096,
            max_negative_entries: 1024,
            max_distrust_entries: 1024,
            max_transmit_queue: 4096,
            policy: CodePolicy::AcceptAny,
        }
    }
}

impl LoaderConfig {
    /// Every bound a few units small (3 load slots, windows of 3 chunks, a transmit queue of
    /// 8, …), so that tests, property tests and fuzzers reach each limit within a handful of
    /// operations.
    pub fn tight() -> LoaderConfig {
        LoaderConfig {
            max_pending_per_type: 3,
            max_pending_total: 5,
            max_pending_bytes: 2000,
            max_concurrent_fetches: 3,
            max_fetches_per_peer: 2,
            max_module_bytes: 6000,
            compile_timeout: Duration::from_secs(2),
            request_window: 3,
            compile_nanos_per_sec: 200_000_000,
            compile_burst_nanos: 500_000_000,
            max_budget_peers: 2,
            max_attempts: 2,
            load_timeout: Duration::from_secs(3),
            negative_ttl: Duration::from_secs(1),
            distrust_ttl: Duration::from_secs(2),
            serve_window: Duration::from_secs(2),
            serve_bytes_per_sec: 4096,
            max_serve_peers: 2,
            max_authorizations: 3,
            max_negative_entries: 2,
            max_distrust_entries: 2,
            max_transmit_queue: 8,
            ..LoaderConfig::default()
        }
    }
}

/// The answer to [`CodeLoader::hold`](super::CodeLoader::hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// The capsule is held until its code is verified (or the load fails).
    Held,
    /// The capsule is held and a new load of code the node already has started: the node
    /// must compile it now (see [`CodeLoader::hold_local`](super::CodeLoader::hold_local)).
    Compile,
    /// The capsule was not kept; the caller drops it (already counted by the loader).
    Refused(RefuseReason),
}

/// Why a capsule was not held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefuseReason {
    /// A per-type, total or byte bound on held capsules is reached.
    QueueFull,
    /// `max_concurrent_fetches` types are already loading.
    TooManyFetches,
    /// The sender already started `max_fetches_per_peer` loads that still run.
    PeerBusy,
    /// The sender's loads used up its compile-time budget.
    CompileBudget,
    /// Fetching the type from the sender failed recently (negative cache).
    NegativeCache,
    /// The type's code did not compile recently: refused from everyone for a while.
    Rejected,
    /// The code policy does not allow the type.
    Policy,
    /// No fetch runs for the type and the capsule's sender recently sent wrong code for it.
    Distrusted,
    /// The code is not here and there is no peer to fetch it from (a local app's capsule).
    NoSource,
}

/// Why a load failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailReason {
    /// `load_timeout` passed before the code was verified.
    Timeout,
    /// Every candidate peer nacked, stalled or sent an unusable transfer.
    Exhausted,
    /// Candidates ran out after a hash mismatch. Not negative-cached, so that a liar cannot
    /// get a type refused; a capsule from an honest peer starts a new fetch.
    Untrusted,
    /// The code was here but the compile did not finish within `compile_timeout`.
    CompileTimeout,
}

/// What the loader tells the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoaderEvent {
    /// The module of `ty` arrived and its SHA-256 is `ty`: cache and compile it, then call
    /// `take_held` (or `compile_failed`). Emitted once per fetch.
    Verified {
        /// The type.
        ty: CapsuleType,
        /// The verified module bytes.
        code: Arc<[u8]>,
    },
    /// The load of `ty` failed; `dropped` held capsules were discarded.
    Failed {
        /// The type.
        ty: CapsuleType,
        /// Why.
        reason: FailReason,
        /// Held capsules dropped.
        dropped: usize,
    },
}

/// Where the loader finds code to serve: the node's [`CodeCache`](crate::CodeCache).
pub trait CodeSource {
    /// The verified module of `ty`, if held.
    fn code(&mut self, ty: &CapsuleType) -> Option<Arc<[u8]>>;
}

/// What a [`CodeLoader`](super::CodeLoader) did since it was created.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, derive_more::AddAssign)]
pub struct LoaderCounters {
    // Requesting.
    /// Fetches started (a first request sent for a type).
    pub fetches_started: u64,
    /// Code requests sent (first requests, retries and next windows).
    pub requests_sent: u64,
    /// Requests re-sent by the retry timer.
    pub retries: u64,
    /// New chunks accepted.
    pub chunks_received: u64,
    /// Chunks already received for the current transfer.
    pub duplicate_chunks: u64,
    /// Chunks for no running transfer, from a peer other than the one asked, or for a chunk
    /// not asked for.
    pub chunks_unsolicited: u64,
    /// Duplicate chunks whose bytes differ from the first copy (someone is spoofing).
    pub conflicting_chunks: u64,
    /// Chunks whose geometry is invalid (offset, length, total).
    pub chunks_malformed: u64,
    /// Bytes of new chunks accepted.
    pub bytes_received: u64,
    /// Transfers aborted: total length changed mid-transfer or above `max_module_bytes`.
    pub aborted_transfers: u64,
    /// Peers given up after `max_attempts` rounds without progress.
    pub stalled_peers: u64,
    /// Reassembled modules whose SHA-256 was not their type.
    pub hash_mismatches: u64,
    /// Mismatched transfers retried from the same peer before distrusting it.
    pub mismatch_retries: u64,
    /// Modules verified.
    pub verified: u64,
    /// Loads that failed (any [`FailReason`]).
    pub fetch_failures: u64,
    /// Loads that failed by `load_timeout`.
    pub load_timeouts: u64,
    /// Loads whose compile did not finish within `compile_timeout`.
    pub compile_timeouts: u64,
    /// Loads of code the node already had (compile from its cache or disk).
    pub local_loads: u64,
    /// Compile time reported by the node, in nanoseconds.
    pub compile_nanos: u64,
    /// Nacks received.
    pub nacks_received: u64,
    /// Nacks ignored (no transfer for that type from that peer).
    pub nacks_ignored: u64,
    // Holding.
    /// Capsules held.
    pub held: u64,
    /// Held capsules handed back by `take_held`.
    pub held_released: u64,
    /// Capsules refused by a held-capsule bound.
    pub held_dropped_queue_full: u64,
    /// Held capsules dropped because their load failed.
    pub held_dropped_failed: u64,
    /// Held capsules dropped because their module did not compile.
    pub held_dropped_compile: u64,
    /// Capsules refused because `max_concurrent_fetches` types were loading.
    pub fetches_refused: u64,
    /// Capsules refused because their sender already runs `max_fetches_per_peer` loads.
    pub peer_busy_refusals: u64,
    /// Capsules refused because their sender is over its compile budget.
    pub compile_budget_refusals: u64,
    /// Capsules refused because their type's code did not compile recently.
    pub rejected_refusals: u64,
    /// App capsules refused because their code is not here.
    pub no_source_refusals: u64,
    /// Capsules refused by the negative cache.
    pub negative_cache_refusals: u64,
    /// Capsules refused by the code policy.
    pub policy_refusals: u64,
    /// Capsules refused because their sender is distrusted for the type.
    pub distrust_refusals: u64,
    /// Modules the node could not compile.
    pub compile_failures: u64,
    // Serving.
    /// Requests answered with at least one chunk.
    pub requests_served: u64,
    /// Chunks sent.
    pub chunks_served: u64,
    /// Module bytes sent.
    pub bytes_served: u64,
    /// Requests from peers not authorized for the type (answered with nothing).
    pub requests_unauthorized: u64,
    /// Requests answered with a rate-limited nack.
    pub requests_rate_limited: u64,
    /// Requests that asked for more than `request_window` chunks (answered in part).
    pub requests_truncated: u64,
    /// Nacks sent.
    pub nacks_sent: u64,
    // Bounds.
    /// Messages dropped because the transmit queue was full.
    pub transmit_dropped: u64,
    /// `Failed` events dropped because the event queue was full.
    pub events_dropped: u64,
    /// Negative-cache entries evicted before they expired.
    pub negative_evictions: u64,
    /// Distrust entries evicted before they expired.
    pub distrust_evictions: u64,
    /// Serve authorizations evicted before `serve_window` passed.
    pub authorizations_evicted: u64,
    /// Serving token buckets evicted.
    pub serve_peers_evicted: u64,
    /// Compile budgets evicted.
    pub budget_peers_evicted: u64,
}

/// How full the loader's tables are right now (gauges, for metrics and bound checks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Occupancy {
    /// Types with a fetch entry (loading, or verified and not yet taken).
    pub fetches: usize,
    /// Capsules held.
    pub held: usize,
    /// Bytes of held capsules.
    pub held_bytes: usize,
    /// Bytes allocated for reassembly.
    pub reassembly_bytes: usize,
    /// Messages waiting in the transmit queue.
    pub transmit_queue: usize,
    /// Events waiting.
    pub events: usize,
    /// Negative-cache entries ((peer, type) pairs).
    pub negative: usize,
    /// Types refused because their code did not compile.
    pub rejected: usize,
    /// Distrust entries.
    pub distrusted: usize,
    /// Serve authorizations.
    pub authorizations: usize,
    /// Serving token buckets.
    pub serve_peers: usize,
    /// Compile budgets.
    pub budget_peers: usize,
}
