//! The config file as TOML sees it: strings and numbers with their spans, unknown keys
//! rejected. [`super::Config::parse`] turns this into typed values, reporting lines.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) node: RawNode,
    #[serde(default, rename = "neighbour")]
    pub(super) neighbours: Vec<RawNeighbour>,
    #[serde(default, rename = "route")]
    pub(super) routes: Vec<RawRoute>,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) code: RawCode,
    #[serde(default)]
    pub(super) fault: RawFault,
    pub(super) router: Option<RawRouter>,
    pub(super) metrics: Option<RawMetrics>,
    #[serde(default)]
    pub(super) trace: RawTrace,
    pub(super) record: Option<RawRecord>,
    #[serde(default, rename = "watch")]
    pub(super) watches: Vec<RawWatch>,
}

/// `[[watch]]`: a property checked after every input of the node core.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWatch {
    pub(super) property: Spanned<String>,
    pub(super) limit: Option<Spanned<u64>>,
}

/// `[record]`: record the node core's inputs for `ants replay`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecord {
    pub(super) dir: Option<Spanned<String>>,
    pub(super) max_bytes: Option<Spanned<u64>>,
}

/// `[trace]`: capsule tracing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrace {
    pub(super) sample: Option<Spanned<f64>>,
    pub(super) reports_per_sec: Option<Spanned<u64>>,
}

/// `[metrics]`: present = serve Prometheus metrics.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) public: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub(super) address: Spanned<String>,
    pub(super) listen: Option<Spanned<String>>,
    pub(super) app_socket: Option<Spanned<String>>,
    pub(super) code_cache_dir: Option<Spanned<String>>,
    pub(super) seed: Option<u64>,
    pub(super) workers: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNeighbour {
    pub(super) address: Spanned<String>,
    pub(super) endpoint: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) dst: Spanned<String>,
    pub(super) via: Spanned<String>,
}

/// Every limit is optional; a missing one takes [`super::Limits::default`]'s value.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) fuel: Option<Spanned<u64>>,
    pub(super) max_memory_bytes: Option<Spanned<u64>>,
    pub(super) max_module_bytes: Option<Spanned<u64>>,
    pub(super) max_modules: Option<Spanned<u64>>,
    pub(super) max_sends: Option<Spanned<u64>>,
    pub(super) max_deliveries: Option<Spanned<u64>>,
    pub(super) max_capsule_bytes: Option<Spanned<u64>>,
    pub(super) store_bytes: Option<Spanned<u64>>,
    pub(super) store_namespace_bytes: Option<Spanned<u64>>,
    pub(super) code_cache_bytes: Option<Spanned<u64>>,
    pub(super) pending_per_type: Option<Spanned<u64>>,
    pub(super) pending_total: Option<Spanned<u64>>,
    pub(super) serve_bytes_per_sec: Option<Spanned<u64>>,
    pub(super) max_exec_time: Option<Spanned<String>>,
    pub(super) max_resource: Option<Spanned<u64>>,
    pub(super) max_instances: Option<Spanned<u64>>,
    pub(super) peer_fuel_per_sec: Option<Spanned<u64>>,
    pub(super) fetches_per_peer: Option<Spanned<u64>>,
    pub(super) compile_workers: Option<Spanned<u64>>,
    pub(super) compile_queue: Option<Spanned<u64>>,
    pub(super) compile_time_per_sec: Option<Spanned<String>>,
    pub(super) compile_timeout: Option<Spanned<String>>,
    pub(super) code_cache_disk_bytes: Option<Spanned<u64>>,
    pub(super) quarantine_traps: Option<Spanned<u64>>,
    pub(super) quarantine_window: Option<Spanned<String>>,
    pub(super) quarantine_time: Option<Spanned<String>>,
    pub(super) drain_time: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCode {
    pub(super) policy: Option<Spanned<String>>,
    pub(super) accept_from: Option<Spanned<String>>,
    pub(super) allow: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFault {
    pub(super) code_loss: Option<Spanned<f64>>,
    pub(super) seed: Option<u64>,
}

/// `[router]`: present = router mode.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouter {
    pub(super) capsule_port: Option<Spanned<u64>>,
    pub(super) import_kernel_routes: Option<bool>,
    pub(super) kernel_ingress_drop: Option<bool>,
    pub(super) fast_path: Option<Spanned<String>>,
    pub(super) datapath: Option<Spanned<String>>,
    pub(super) busy_poll_us: Option<Spanned<u64>>,
    pub(super) busy_poll: Option<Spanned<String>>,
    pub(super) user: Option<Spanned<String>>,
    pub(super) icmp_per_sec: Option<Spanned<u64>>,
    pub(super) icmp_burst: Option<Spanned<u64>>,
    pub(super) icmp_source_per_sec: Option<Spanned<u64>>,
    pub(super) icmp_source_burst: Option<Spanned<u64>>,
    pub(super) icmp_source_entries: Option<Spanned<u64>>,
    pub(super) arp_entries: Option<Spanned<u64>>,
    pub(super) arp_incomplete_entries: Option<Spanned<u64>>,
    pub(super) arp_pending_per_neighbour: Option<Spanned<u64>>,
    pub(super) arp_pending_total: Option<Spanned<u64>>,
    #[serde(default, rename = "interface")]
    pub(super) interfaces: Vec<RawInterface>,
    #[serde(default, rename = "route")]
    pub(super) routes: Vec<RawIpRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInterface {
    pub(super) name: Spanned<String>,
    pub(super) address: Spanned<String>,
    pub(super) mtu: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIpRoute {
    pub(super) dst: Spanned<String>,
    pub(super) via: Spanned<String>,
}
