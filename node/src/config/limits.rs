//! [`Limits`]: the `[limits]` section, its defaults and its range checks.

use std::time::Duration;

use toml::Spanned;

use super::raw::RawLimits;
use super::{MAX_CAPSULE_BYTES, Result, Source};

/// `[limits]`: every resource bound of the node. [`Default`] gives the library defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel per capsule execution.
    pub fuel: u64,
    /// Largest linear memory of an instance, in bytes.
    pub max_memory_bytes: usize,
    /// Largest module accepted, in bytes.
    pub max_module_bytes: usize,
    /// Compiled modules kept in memory.
    pub max_modules: usize,
    /// Copies one execution may send.
    pub max_sends: usize,
    /// App deliveries one execution may make.
    pub max_deliveries: usize,
    /// Largest capsule protocol header + payload, in bytes.
    pub max_capsule_bytes: usize,
    /// Soft-store bytes in total.
    pub store_bytes: usize,
    /// Soft-store bytes per protocol.
    pub store_namespace_bytes: usize,
    /// Code cache bytes (verified modules).
    pub code_cache_bytes: usize,
    /// Capsules held per type while its code loads.
    pub pending_per_type: usize,
    /// Capsules held in total while code loads.
    pub pending_total: usize,
    /// Code bytes served per peer per second (0 = never serve code).
    pub serve_bytes_per_sec: u64,
    /// Wall-clock deadline of one capsule execution.
    pub max_exec_time: Duration,
    /// Arriving resource above this is lowered to it.
    pub max_resource: u16,
    /// Live wasm instances kept (each up to `max_memory_bytes` of memory).
    pub max_instances: usize,
    /// Fuel one peer's capsules may burn per second (0 = unlimited).
    pub peer_fuel_per_sec: u64,
    /// Code loads one peer's capsules may start and keep running at once.
    pub fetches_per_peer: usize,
    /// Threads compiling modules.
    pub compile_workers: usize,
    /// Compile jobs waiting at most.
    pub compile_queue: usize,
    /// Compile time one peer's loads may use per second.
    pub compile_time_per_sec: Duration,
    /// Give up on a compile (drop the capsules waiting for it) after this.
    pub compile_timeout: Duration,
    /// Bytes the code cache directory may hold; least recently used types are pruned.
    pub code_cache_disk_bytes: u64,
    /// Traps of one peer's capsules of one type within `quarantine_window` that quarantine
    /// them (dropped unrun) for `quarantine_time`; 0 = never.
    pub quarantine_traps: u32,
    /// The window those traps are counted in.
    pub quarantine_window: Duration,
    /// How long a quarantine lasts.
    pub quarantine_time: Duration,
    /// On SIGTERM, how long the node keeps going to finish capsules held for their code and
    /// flush its transmits before it exits (0: exit at once).
    pub drain_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 1_000_000,
            max_memory_bytes: 4 << 20,
            max_module_bytes: 1 << 20,
            max_modules: 256,
            max_sends: 16,
            max_deliveries: 4,
            max_capsule_bytes: 16 << 10,
            store_bytes: 16 << 20,
            store_namespace_bytes: 1 << 20,
            code_cache_bytes: 64 << 20,
            pending_per_type: 64,
            pending_total: 1024,
            serve_bytes_per_sec: 1 << 20,
            max_exec_time: Duration::from_millis(5),
            max_resource: 64,
            max_instances: 32,
            peer_fuel_per_sec: 200_000_000,
            fetches_per_peer: 4,
            compile_workers: 1,
            compile_queue: 16,
            compile_time_per_sec: Duration::from_millis(250),
            compile_timeout: Duration::from_secs(10),
            code_cache_disk_bytes: 256 << 20,
            quarantine_traps: 8,
            quarantine_window: Duration::from_secs(10),
            quarantine_time: Duration::from_secs(60),
            drain_time: Duration::from_secs(2),
        }
    }
}

/// Parse a duration such as `"1ms"`, `"500us"`, `"2s"` (units `ns`, `us`/`µs`, `ms`, `s`).
pub(super) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (num, unit) = text.split_at(split);
    let n: f64 = num.parse().ok()?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        _ => return None,
    };
    let secs = n * scale;
    (secs.is_finite() && (0.0..1e9).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

impl Source<'_> {
    /// `value` or `default`, checked to lie in `min..=max`.
    pub(super) fn limit(
        &self,
        field: &str,
        value: Option<&Spanned<u64>>,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64> {
        let Some(v) = value else { return Ok(default) };
        let n = *v.get_ref();
        if n < min {
            return Err(self.invalid(
                v.span(),
                "[limits]",
                field,
                n,
                format_args!("must be at least {min}"),
            ));
        }
        if n > max {
            return Err(self.invalid(
                v.span(),
                "[limits]",
                field,
                n,
                format_args!("must be at most {max}"),
            ));
        }
        Ok(n)
    }

    /// A duration `value` (e.g. `"1ms"`) or `default`, checked to lie in `min..=max`.
    pub(super) fn duration(
        &self,
        field: &str,
        value: Option<&Spanned<String>>,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Result<Duration> {
        let Some(v) = value else { return Ok(default) };
        let Some(d) = parse_duration(v.get_ref()) else {
            return Err(self.bad(
                "[limits]",
                field,
                v,
                "expected a duration such as \"1ms\", \"500us\" or \"2s\"",
            ));
        };
        if d < min || d > max {
            return Err(self.bad(
                "[limits]",
                field,
                v,
                format_args!("must be between {min:?} and {max:?}"),
            ));
        }
        Ok(d)
    }

    pub(super) fn limit_usize(
        &self,
        field: &str,
        value: Option<&Spanned<u64>>,
        default: usize,
        min: u64,
        max: u64,
    ) -> Result<usize> {
        let max = max.min(usize::MAX as u64);
        let n = self.limit(field, value, default as u64, min, max)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// `small <= large` for two limits, reported at whichever of them the file sets.
    pub(super) fn not_above(
        &self,
        (small_name, small, small_raw): (&str, usize, Option<&Spanned<u64>>),
        (large_name, large, large_raw): (&str, usize, Option<&Spanned<u64>>),
    ) -> Result<()> {
        if small <= large {
            return Ok(());
        }
        let (field, v) = match (small_raw, large_raw) {
            (Some(v), _) => (small_name, v),
            (None, Some(v)) => (large_name, v),
            // Both defaults: the defaults are consistent, so this cannot happen.
            (None, None) => return Ok(()),
        };
        Err(self.invalid(
            v.span(),
            "[limits]",
            field,
            v.get_ref(),
            format_args!("{small_name} ({small}) must not exceed {large_name} ({large})"),
        ))
    }

    pub(super) fn limits(&self, raw: &RawLimits) -> Result<Limits> {
        let d = Limits::default();
        let max_module = u64::from(ants_wire::code::MAX_MODULE_LEN);
        let limits = Limits {
            fuel: self.limit("fuel", raw.fuel.as_ref(), d.fuel, 1, u64::MAX)?,
            max_memory_bytes: self.limit_usize(
                "max_memory_bytes",
                raw.max_memory_bytes.as_ref(),
                d.max_memory_bytes,
                64 << 10,
                4 << 30,
            )?,
            max_module_bytes: self.limit_usize(
                "max_module_bytes",
                raw.max_module_bytes.as_ref(),
                d.max_module_bytes,
                8,
                max_module,
            )?,
            max_modules: self.limit_usize(
                "max_modules",
                raw.max_modules.as_ref(),
                d.max_modules,
                1,
                u64::MAX,
            )?,
            max_sends: self.limit_usize(
                "max_sends",
                raw.max_sends.as_ref(),
                d.max_sends,
                0,
                u64::MAX,
            )?,
            max_deliveries: self.limit_usize(
                "max_deliveries",
                raw.max_deliveries.as_ref(),
                d.max_deliveries,
                0,
                u64::MAX,
            )?,
            max_capsule_bytes: self.limit_usize(
                "max_capsule_bytes",
                raw.max_capsule_bytes.as_ref(),
                d.max_capsule_bytes,
                1,
                MAX_CAPSULE_BYTES as u64,
            )?,
            store_bytes: self.limit_usize(
                "store_bytes",
                raw.store_bytes.as_ref(),
                d.store_bytes,
                0,
                u64::MAX,
            )?,
            store_namespace_bytes: self.limit_usize(
                "store_namespace_bytes",
                raw.store_namespace_bytes.as_ref(),
                d.store_namespace_bytes,
                0,
                u64::MAX,
            )?,
            code_cache_bytes: self.limit_usize(
                "code_cache_bytes",
                raw.code_cache_bytes.as_ref(),
                d.code_cache_bytes,
                1,
                u64::MAX,
            )?,
            pending_per_type: self.limit_usize(
                "pending_per_type",
                raw.pending_per_type.as_ref(),
                d.pending_per_type,
                0,
                u64::MAX,
            )?,
            pending_total: self.limit_usize(
                "pending_total",
                raw.pending_total.as_ref(),
                d.pending_total,
                0,
                u64::MAX,
            )?,
            serve_bytes_per_sec: self.limit(
                "serve_bytes_per_sec",
                raw.serve_bytes_per_sec.as_ref(),
                d.serve_bytes_per_sec,
                0,
                u64::MAX,
            )?,
            max_exec_time: self.duration(
                "max_exec_time",
                raw.max_exec_time.as_ref(),
                d.max_exec_time,
                Duration::from_micros(200),
                Duration::from_secs(10),
            )?,
            max_resource: u16::try_from(self.limit(
                "max_resource",
                raw.max_resource.as_ref(),
                u64::from(d.max_resource),
                1,
                u64::from(u16::MAX),
            )?)
            .unwrap_or(u16::MAX),
            max_instances: self.limit_usize(
                "max_instances",
                raw.max_instances.as_ref(),
                d.max_instances,
                1,
                u64::MAX,
            )?,
            peer_fuel_per_sec: self.limit(
                "peer_fuel_per_sec",
                raw.peer_fuel_per_sec.as_ref(),
                d.peer_fuel_per_sec,
                0,
                u64::MAX,
            )?,
            fetches_per_peer: self.limit_usize(
                "fetches_per_peer",
                raw.fetches_per_peer.as_ref(),
                d.fetches_per_peer,
                1,
                u64::MAX,
            )?,
            compile_workers: self.limit_usize(
                "compile_workers",
                raw.compile_workers.as_ref(),
                d.compile_workers,
                1,
                64,
            )?,
            compile_queue: self.limit_usize(
                "compile_queue",
                raw.compile_queue.as_ref(),
                d.compile_queue,
                1,
                1 << 16,
            )?,
            compile_time_per_sec: self.duration(
                "compile_time_per_sec",
                raw.compile_time_per_sec.as_ref(),
                d.compile_time_per_sec,
                Duration::from_millis(1),
                Duration::from_secs(1),
            )?,
            compile_timeout: self.duration(
                "compile_timeout",
                raw.compile_timeout.as_ref(),
                d.compile_timeout,
                Duration::from_millis(100),
                Duration::from_secs(3600),
            )?,
            code_cache_disk_bytes: self.limit(
                "code_cache_disk_bytes",
                raw.code_cache_disk_bytes.as_ref(),
                d.code_cache_disk_bytes,
                1 << 20,
                u64::MAX,
            )?,
            quarantine_traps: self.limit(
                "quarantine_traps",
                raw.quarantine_traps.as_ref(),
                u64::from(d.quarantine_traps),
                0,
                u64::from(u16::MAX),
            )? as u32,
            quarantine_window: self.duration(
                "quarantine_window",
                raw.quarantine_window.as_ref(),
                d.quarantine_window,
                Duration::from_millis(1),
                Duration::from_secs(3600),
            )?,
            quarantine_time: self.duration(
                "quarantine_time",
                raw.quarantine_time.as_ref(),
                d.quarantine_time,
                Duration::from_millis(1),
                Duration::from_secs(86_400),
            )?,
            drain_time: self.duration(
                "drain_time",
                raw.drain_time.as_ref(),
                d.drain_time,
                Duration::ZERO,
                Duration::from_secs(60),
            )?,
        };
        self.not_above(
            (
                "store_namespace_bytes",
                limits.store_namespace_bytes,
                raw.store_namespace_bytes.as_ref(),
            ),
            ("store_bytes", limits.store_bytes, raw.store_bytes.as_ref()),
        )?;
        self.not_above(
            (
                "max_module_bytes",
                limits.max_module_bytes,
                raw.max_module_bytes.as_ref(),
            ),
            (
                "code_cache_bytes",
                limits.code_cache_bytes,
                raw.code_cache_bytes.as_ref(),
            ),
        )?;
        self.not_above(
            (
                "pending_per_type",
                limits.pending_per_type,
                raw.pending_per_type.as_ref(),
            ),
            (
                "pending_total",
                limits.pending_total,
                raw.pending_total.as_ref(),
            ),
        )?;
        Ok(limits)
    }
}
