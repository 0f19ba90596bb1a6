//! [`Stats`]: a snapshot of a running node's counters, and its JSON form (`ants run
//! --stats-json`).

use std::time::Duration;

use ants_core::loader::LoaderCounters;
use ants_core::node::{LoadTiming, NodeCounters, ProtocolCounters, TraceCounters};
use ants_wire::CapsuleType;
use serde_json::{Value, json};

use super::RouterStats;
use crate::executor::ExecutorCounters;

/// One worker's share of a node's work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSummary {
    /// The worker, `0..workers`.
    pub index: usize,
    /// Datagrams its node core handled (its socket's and those handed to it).
    pub datagrams_in: u64,
    /// Capsules it ran.
    pub runs: u64,
    /// Datagrams it received for another worker's type and handed on.
    pub handed_off: u64,
    /// Router mode: IPv4 packets its router forwarded (its share of the interfaces'
    /// receive queues or fanout).
    pub forwarded: u64,
    /// The types it ran (each type runs on one worker).
    pub protocols: Vec<CapsuleType>,
}

/// A configured neighbour as the node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighbourInfo {
    /// Its active address.
    pub address: ants_wire::Address,
    /// Its endpoint.
    pub endpoint: std::net::SocketAddr,
    /// How long ago a datagram last came from it (`None`: never).
    pub last_heard: Option<Duration>,
    /// Datagrams received from it.
    pub datagrams: u64,
}

/// A snapshot of a running node's counters.
#[derive(Debug, Clone)]
pub struct Stats {
    /// The node's active address.
    pub address: ants_wire::Address,
    /// Time since the node started.
    pub uptime: Duration,
    /// The configured neighbours, with when each was last heard from.
    pub neighbours: Vec<NeighbourInfo>,
    /// The configured routes: destination prefix and next hop, as written.
    pub routes: Vec<(String, String)>,
    /// Node counters.
    pub node: NodeCounters,
    /// Code loader counters.
    pub loader: LoaderCounters,
    /// Per-protocol counters (runs, fuel, traps, errors, sends, deliveries), by type.
    pub protocols: Vec<(CapsuleType, ProtocolCounters)>,
    /// Types in the code cache.
    pub cached_types: Vec<CapsuleType>,
    /// Bytes of each cached module.
    pub module_bytes: Vec<(CapsuleType, usize)>,
    /// Peers quarantined now (repeated traps), by type.
    pub quarantined: Vec<(CapsuleType, usize)>,
    /// Types found in the code cache directory at start-up, and restores from it that reused
    /// the compiled form (no recompilation).
    pub persisted: (usize, usize),
    /// Bytes the code cache directory holds, and types pruned from it to stay within
    /// `code_cache_disk_bytes`.
    pub disk: (u64, u64),
    /// The executor's counters (instances, evictions, deadline traps).
    pub executor: ExecutorCounters,
    /// Compile jobs refused because the compile queue was full.
    pub compiles_refused: u64,
    /// Capsule log lines not written because of the log rate limit.
    pub capsule_logs_suppressed: u64,
    /// Code-transfer messages dropped by fault injection.
    pub fault_dropped: u64,
    /// Datagrams the socket layer dropped (send errors, full queue).
    pub udp_dropped: u64,
    /// Router mode's counters (`None` for the UDP overlay).
    pub router: Option<RouterStats>,
    /// Stage times of recent module loads (node time).
    pub load_timings: Vec<LoadTiming>,
    /// Wall time spent compiling each module this node compiled, in order.
    pub compile_times: Vec<(CapsuleType, Duration)>,
    /// Each worker's share (`[node] workers`), by index.
    pub workers: Vec<WorkerSummary>,
    /// Datagrams a worker received for a type another worker runs, and handed to it.
    pub handed_off: u64,
    /// Such datagrams dropped because the owner's inbox was full.
    pub handoff_dropped: u64,
    /// Capsule trace counters (traces started, reports sent, forwarded, received, dropped).
    pub trace: TraceCounters,
    /// Capsules still held for their code when a drain (SIGTERM) ran out of time.
    pub drain_dropped: u64,
    /// `[record]`: what the workers recorded.
    pub record: RecordStats,
    /// `[[watch]]`: each property's violations (summed over workers) and the first.
    pub watches: Vec<super::WatchReport>,
}

/// What a node's recording (`[record]`) holds so far, summed over workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, derive_more::AddAssign)]
pub struct RecordStats {
    /// Workers recording, and of them those whose recording stopped (bound, slow disk,
    /// write error: see the log).
    pub workers: u64,
    pub stopped: u64,
    /// Inputs and uncompressed bytes recorded.
    pub inputs: u64,
    pub bytes: u64,
}

impl Stats {
    /// Add another worker's counters. Each type runs on one worker, so per-protocol rows
    /// and cached types are disjoint; they are summed and joined all the same.
    pub fn merge(&mut self, o: Stats) {
        // Destructured without `..`: a new field does not compile until it is merged here.
        let Stats {
            address: _,
            uptime,
            neighbours,
            routes: _,
            node,
            loader,
            protocols,
            cached_types,
            module_bytes,
            quarantined,
            persisted,
            disk,
            executor,
            compiles_refused,
            capsule_logs_suppressed,
            fault_dropped,
            udp_dropped,
            router,
            load_timings,
            compile_times,
            workers,
            handed_off,
            handoff_dropped,
            trace,
            drain_dropped,
            record,
            watches,
        } = o;
        self.uptime = self.uptime.max(uptime);
        // Every worker has every neighbour: keep the most recent hearing.
        for n in neighbours {
            match self.neighbours.iter_mut().find(|m| m.address == n.address) {
                Some(m) => {
                    m.datagrams += n.datagrams;
                    m.last_heard = match (m.last_heard, n.last_heard) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    }
                }
                None => self.neighbours.push(n),
            }
        }
        self.node.add(&node);
        self.loader += loader;
        for (ty, c) in protocols {
            match self.protocols.iter_mut().find(|(t, _)| *t == ty) {
                Some((_, mine)) => *mine += c,
                None => self.protocols.push((ty, c)),
            }
        }
        self.protocols.sort_by_key(|(t, _)| *t);
        self.cached_types.extend(cached_types);
        self.module_bytes.extend(module_bytes);
        self.quarantined.extend(quarantined);
        self.persisted.0 += persisted.0;
        self.persisted.1 += persisted.1;
        self.disk.0 += disk.0;
        self.disk.1 += disk.1;
        self.executor += executor;
        self.compiles_refused += compiles_refused;
        self.capsule_logs_suppressed += capsule_logs_suppressed;
        self.fault_dropped += fault_dropped;
        self.udp_dropped += udp_dropped;
        match (&mut self.router, router) {
            (Some(mine), Some(r)) => mine.merge(r),
            (mine @ None, r) => *mine = r,
            (Some(_), None) => {}
        }
        self.load_timings.extend(load_timings);
        self.compile_times.extend(compile_times);
        self.workers.extend(workers);
        self.workers.sort_by_key(|w| w.index);
        self.handed_off += handed_off;
        self.handoff_dropped += handoff_dropped;
        self.trace += trace;
        self.drain_dropped += drain_dropped;
        self.record += record;
        for w in watches {
            match self.watches.iter_mut().find(|m| m.property == w.property) {
                Some(m) => m.merge(w),
                None => self.watches.push(w),
            }
        }
    }

    /// The counters as one JSON object: `node`, `drops` (by reason), `loader`, `protocols`
    /// (by type, hex), `executor`, `disk`, `router` (router mode) and the driver's own.
    pub fn to_json(&self) -> Value {
        let protocols: serde_json::Map<String, Value> = self
            .protocols
            .iter()
            .map(|(ty, c)| {
                let mut v = json!(c);
                let peers = self.quarantined.iter().find(|(t, _)| t == ty);
                v["quarantined_peers"] = json!(peers.map_or(0, |(_, n)| *n));
                (ty.to_string(), v)
            })
            .collect();
        let modules: Vec<Value> = self
            .module_bytes
            .iter()
            .map(|(ty, bytes)| {
                let compile = self.compile_times.iter().rfind(|(t, _)| t == ty);
                json!({
                    "type": ty.to_string(),
                    "bytes": bytes,
                    "compile_ms": compile.map(|(_, d)| d.as_secs_f64() * 1e3),
                })
            })
            .collect();
        let router = self.router.as_ref().map(|r| {
            let c = &r.router;
            let drops: serde_json::Map<String, Value> = c
                .drops()
                .filter(|(_, n)| *n > 0)
                .map(|(reason, n)| (reason.name().to_string(), json!(n)))
                .collect();
            json!({
                "forwarded": c.forwarded,
                "capsules": c.capsules,
                "arp_requests_sent": c.arp_requests_sent,
                "arp_learned": c.arp_learned,
                "arp_evicted": c.arp_evicted,
                "arp_failed": c.arp_failed,
                "arp_held": c.arp_held,
                "icmp_sent": c.icmp_sent,
                "icmp_rate_limited": c.icmp_rate_limited,
                "icmp_rate_limited_source": c.icmp_rate_limited_source,
                "icmp_rate_limited_time_exceeded": c.icmp_rate_limited_time_exceeded,
                "icmp_rate_limited_unreachable": c.icmp_rate_limited_unreachable,
                "icmp_rate_limited_frag_needed": c.icmp_rate_limited_frag_needed,
                "echo_replies": c.echo_replies,
                "forwarded_gso": c.forwarded_gso,
                "fragmented": c.fragmented,
                "fragments_sent": c.fragments_sent,
                "checksums_completed": c.checksums_completed,
                "drops": drops,
                "node_datagrams_dropped": r.node_datagrams_dropped,
                "arp_shared": r.arp_shared,
                "arp_share_dropped": r.arp_share_dropped,
                "interfaces": r.interfaces,
                "fast_path": r.fast_path.as_ref().map(|f| json!({
                    "forwarded": f.counters.forwarded,
                    "passed": f.counters.passed,
                    "redirect_failed": f.counters.redirect_failed,
                    "neighbours": f.neighbours,
                    "neighbour_updates": f.neighbour_updates,
                    "sync_errors": f.sync_errors,
                    "native": f.modes.iter().all(|m| *m == crate::fastpath::XdpMode::Native),
                })),
            })
        });
        json!({
            "address": self.address.to_string(),
            "uptime_s": self.uptime.as_secs_f64(),
            "neighbours": self.neighbours.iter().map(|n| json!({
                "address": n.address.to_string(),
                "endpoint": n.endpoint.to_string(),
                "last_heard_s": n.last_heard.map(|d| d.as_secs_f64()),
                "datagrams": n.datagrams,
            })).collect::<Vec<_>>(),
            "routes": self.routes.iter().map(|(dst, via)| json!({"dst": dst, "via": via})).collect::<Vec<_>>(),
            "node": self.node,
            "loader": self.loader,
            "protocols": protocols,
            "executor": self.executor,
            "cached_types": self.cached_types.len(),
            "modules": modules,
            "persisted": {"indexed": self.persisted.0, "reused": self.persisted.1},
            "disk": {"bytes": self.disk.0, "pruned": self.disk.1},
            "compiles_refused": self.compiles_refused,
            "capsule_logs_suppressed": self.capsule_logs_suppressed,
            "fault_dropped": self.fault_dropped,
            "udp_dropped": self.udp_dropped,
            "workers": self.workers.iter().map(|w| json!({
                "index": w.index,
                "datagrams_in": w.datagrams_in,
                "runs": w.runs,
                "handed_off": w.handed_off,
                "forwarded": w.forwarded,
                "protocols": w.protocols.len(),
            })).collect::<Vec<_>>(),
            "handed_off": self.handed_off,
            "handoff_dropped": self.handoff_dropped,
            "trace": self.trace,
            "drain_dropped": self.drain_dropped,
            "record": self.record,
            "watches": self.watches.iter().map(|w| json!({
                "property": w.property,
                "violations": w.violations,
                "first": w.first.as_ref().map(|f| json!({
                    "uptime_s": f.uptime.as_secs_f64(),
                    "worker": f.worker,
                    "detail": f.detail,
                    "input": f.input,
                })),
            })).collect::<Vec<_>>(),
            // An empty f64 sum is -0.0; `+ 0.0` makes it 0.
            "compile_ms": self.compile_times.iter().map(|(_, d)| d.as_secs_f64() * 1e3).sum::<f64>() + 0.0,
            "router": router,
        })
    }
}
