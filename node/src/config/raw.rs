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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub(super) address: Spanned<String>,
    pub(super) listen: Spanned<String>,
    pub(super) app_socket: Option<Spanned<String>>,
    pub(super) code_cache_dir: Option<Spanned<String>>,
    pub(super) seed: Option<u64>,
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCode {
    pub(super) policy: Option<Spanned<String>>,
    pub(super) allow: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFault {
    pub(super) code_loss: Option<Spanned<f64>>,
    pub(super) seed: Option<u64>,
}
