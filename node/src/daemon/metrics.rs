//! `[metrics] listen`: the node's counters as Prometheus metrics on `GET /metrics` (the
//! text format 0.0.4, rendered by `prometheus-client` from a [`Stats`] snapshot taken on the
//! node's own loop, so a scrape sees one consistent moment).
//!
//! Names follow Prometheus conventions, all under `ants_`:
//!
//! - `ants_capsules_total{protocol,outcome}`: per capsule type (hex SHA-256), outcome
//!   `runs`, `sent`, `delivered`, `traps`, `deadline_traps`, `errors`, `limit_hits`,
//!   `app_refusals`; `ants_fuel_total{protocol}`.
//! - `ants_node_events_total{event}`: the node core's counters; `ants_loader_events_total`
//!   likewise for the code loader; `ants_executor_events_total` for the executor.
//! - Router mode: `ants_router_forwarded_total`, `ants_router_events_total{event}`,
//!   `ants_router_drops_total{reason}` (every reason, zeros included), per interface
//!   `ants_interface_frames_total{interface,direction,outcome}` and offload counters, and
//!   the XDP fast path's `ants_fast_path_frames_total{outcome}`.
//! - Gauges: `ants_cached_modules`, `ants_code_cache_disk_bytes`, `ants_fast_path_neighbours`.
//!
//! What a stranger can make it cost: the server answers one request per connection, reads
//! at most 8 KiB for at most 2 s, serves at most 8 connections at once (more wait in the
//! kernel's accept queue), and binds loopback unless `public = true` says otherwise.

use std::net::SocketAddr;

use ants_core::node::Log2Hist;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::Stats;
use crate::http::{Request, Response};

type Labels = Vec<(String, String)>;

fn counter_family(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let f = Family::<Labels, Counter>::default();
    registry.register(name, help, f.clone());
    f
}

/// A histogram whose buckets were counted elsewhere (a [`Log2Hist`] of the node core),
/// encoded as a Prometheus histogram with fixed bounds: the tops of the power-of-two
/// buckets times `scale`, then `+Inf`.
#[derive(Debug, Default)]
struct Bucketed(std::sync::Mutex<BucketedValue>);

/// Sum, count, and (top, count) per bucket.
#[derive(Debug, Default)]
struct BucketedValue {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl Bucketed {
    fn set(&self, h: &Log2Hist, scale: f64) {
        let buckets = h
            .buckets
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let top = match Log2Hist::upper_bound(i) {
                    u64::MAX => f64::INFINITY,
                    b => b as f64 * scale,
                };
                (top, *n)
            })
            .collect();
        let mut g = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *g = BucketedValue {
            sum: h.sum as f64 * scale,
            count: h.count(),
            buckets,
        };
    }
}

impl TypedMetric for Bucketed {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Bucketed {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let g = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        encoder.encode_histogram::<NoLabelSet>(g.sum, g.count, &g.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Register a gauge set to `value`.
fn gauge(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let g = Gauge::<i64>::default();
    registry.register(name, help, g.clone());
    g.set(i64::try_from(value).unwrap_or(i64::MAX));
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// Every `u64` field of a serialized counter struct, by name.
fn fields(v: &Value) -> Vec<(String, u64)> {
    match v {
        Value::Object(m) => m
            .iter()
            .filter_map(|(k, v)| v.as_u64().map(|n| (k.clone(), n)))
            .collect(),
        _ => Vec::new(),
    }
}

/// The snapshot as OpenMetrics text.
pub fn render(stats: &Stats) -> String {
    let mut r = Registry::with_prefix("ants");
    let caps = counter_family(
        &mut r,
        "capsules",
        "Capsule executions and their outcomes, by type",
    );
    let fuel = counter_family(
        &mut r,
        "fuel",
        "Fuel consumed by capsule executions, by type",
    );
    for (ty, c) in &stats.protocols {
        let p = ty.to_string();
        for (outcome, n) in [
            ("runs", c.runs),
            ("sent", c.sent),
            ("delivered", c.delivered),
            ("traps", c.traps),
            ("deadline_traps", c.deadline_traps),
            ("errors", c.errors),
            ("limit_hits", c.limit_hits),
            ("app_refusals", c.app_refusals),
            ("quarantined", c.quarantined),
        ] {
            caps.get_or_create(&labels(&[("protocol", &p), ("outcome", outcome)]))
                .inc_by(n);
        }
        fuel.get_or_create(&labels(&[("protocol", &p)]))
            .inc_by(c.fuel);
    }
    let fuel_hist = Family::<Labels, Bucketed>::default();
    r.register(
        "capsule_fuel",
        "Fuel per capsule execution, by type (power-of-two buckets)",
        fuel_hist.clone(),
    );
    let time_hist = Family::<Labels, Bucketed>::default();
    r.register(
        "capsule_exec_seconds",
        "Wall time per capsule execution, by type; one run in 64 is timed (power-of-two \
         nanosecond buckets)",
        time_hist.clone(),
    );
    for (ty, c) in &stats.protocols {
        let l = labels(&[("protocol", &ty.to_string())]);
        fuel_hist.get_or_create(&l).set(&c.fuel_hist, 1.0);
        time_hist.get_or_create(&l).set(&c.time_hist, 1e-9);
    }
    let quarantines = counter_family(
        &mut r,
        "quarantines",
        "Times a peer's capsules of a type were quarantined after repeated traps, by type",
    );
    for (ty, c) in &stats.protocols {
        quarantines
            .get_or_create(&labels(&[("protocol", &ty.to_string())]))
            .inc_by(c.quarantines);
    }
    let json = stats.to_json();
    for (family, key, help) in [
        ("node_events", "node", "Node core counters, by event"),
        ("loader_events", "loader", "Code loader counters, by event"),
        ("executor_events", "executor", "Executor counters, by event"),
    ] {
        let f = counter_family(&mut r, family, help);
        for (event, n) in fields(&json[key]) {
            f.get_or_create(&labels(&[("event", &event)])).inc_by(n);
        }
    }
    let node_drops = counter_family(
        &mut r,
        "node_drops",
        "Datagrams the node dropped, by reason",
    );
    if let Value::Object(m) = &json["node"]["drops"] {
        for (reason, n) in m {
            if let Some(n) = n.as_u64() {
                node_drops
                    .get_or_create(&labels(&[("reason", reason)]))
                    .inc_by(n);
            }
        }
    }
    let udp = counter_family(
        &mut r,
        "udp_dropped",
        "Datagrams the UDP socket layer dropped",
    );
    udp.get_or_create(&Vec::new()).inc_by(stats.udp_dropped);
    gauge(
        &mut r,
        "workers",
        "Forwarding workers ([node] workers)",
        stats.workers.len() as u64,
    );
    let handoffs = counter_family(
        &mut r,
        "worker_handoffs",
        "Datagrams a worker received for another worker's capsule type, by outcome",
    );
    handoffs
        .get_or_create(&labels(&[("outcome", "handed_off")]))
        .inc_by(stats.handed_off);
    handoffs
        .get_or_create(&labels(&[("outcome", "dropped")]))
        .inc_by(stats.handoff_dropped);
    if !stats.watches.is_empty() {
        let watches = counter_family(
            &mut r,
            "watch_violations",
            "Times a [[watch]] property went from holding to violated, by property",
        );
        for w in &stats.watches {
            watches
                .get_or_create(&labels(&[("property", &w.property)]))
                .inc_by(w.violations);
        }
    }
    let traces = counter_family(
        &mut r,
        "trace_reports",
        "Capsule trace reports, by outcome (sent: about this node's handling; forwarded \
         toward their origin; received: kept here as the origin; rate_limited and \
         undeliverable: dropped)",
    );
    let t = &stats.trace;
    for (outcome, n) in [
        ("sent", t.reports_sent),
        ("forwarded", t.reports_forwarded),
        ("received", t.reports_received),
        ("rate_limited", t.reports_rate_limited),
        ("undeliverable", t.reports_undeliverable),
    ] {
        traces
            .get_or_create(&labels(&[("outcome", outcome)]))
            .inc_by(n);
    }
    counter_family(&mut r, "traces_started", "Capsule traces this node started")
        .get_or_create(&labels(&[]))
        .inc_by(t.started);
    let runs = counter_family(&mut r, "worker_runs", "Capsules run, by worker");
    for w in &stats.workers {
        runs.get_or_create(&labels(&[("worker", &w.index.to_string())]))
            .inc_by(w.runs);
    }
    gauge(
        &mut r,
        "cached_modules",
        "Modules in the code cache",
        stats.cached_types.len() as u64,
    );
    gauge(
        &mut r,
        "code_cache_disk_bytes",
        "Bytes the code cache directory holds",
        stats.disk.0,
    );
    if let Some(router) = &stats.router {
        render_router(&mut r, router);
    }
    let mut out = String::new();
    if encode(&mut out, &r).is_err() {
        out.clear();
    }
    to_classic_text(&out)
}

/// OpenMetrics text (what `prometheus-client` writes) to the classic Prometheus text format
/// 0.0.4, which every scraper and `promtool check metrics` read: a counter family's `HELP`
/// and `TYPE` lines name its `_total` series, and there is no `# EOF`.
fn to_classic_text(open: &str) -> String {
    let lines: Vec<&str> = open.lines().filter(|l| *l != "# EOF").collect();
    let mut counters = std::collections::HashSet::new();
    for l in &lines {
        if let Some(rest) = l.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
        {
            counters.insert(name.to_string());
        }
    }
    let mut out = String::with_capacity(open.len() + 64);
    for l in lines {
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = l.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(l));
        out.push('\n');
    }
    out
}

/// One counter of an owned interface, read from its stats.
type InterfaceCounter = fn(&super::router::InterfaceStats) -> u64;

fn render_router(r: &mut Registry, router: &super::RouterStats) {
    let c = &router.router;
    let fwd = counter_family(
        r,
        "router_forwarded",
        "IPv4 packets the userspace router forwarded",
    );
    fwd.get_or_create(&Vec::new()).inc_by(c.forwarded);
    let events = counter_family(r, "router_events", "Router counters, by event");
    for (event, n) in [
        ("forwarded_gso", c.forwarded_gso),
        ("fragmented", c.fragmented),
        ("fragments_sent", c.fragments_sent),
        ("checksums_completed", c.checksums_completed),
        ("capsules", c.capsules),
        ("arp_requests_sent", c.arp_requests_sent),
        ("arp_replies_sent", c.arp_replies_sent),
        ("arp_learned", c.arp_learned),
        ("arp_failed", c.arp_failed),
        ("arp_held", c.arp_held),
        ("icmp_sent", c.icmp_sent),
        ("icmp_rate_limited", c.icmp_rate_limited),
        ("echo_replies", c.echo_replies),
        ("udp_sent", c.udp_sent),
        ("arp_shared", router.arp_shared),
        ("arp_share_dropped", router.arp_share_dropped),
    ] {
        events.get_or_create(&labels(&[("event", event)])).inc_by(n);
    }
    let drops = counter_family(r, "router_drops", "Frames the router dropped, by reason");
    for (reason, n) in c.drops() {
        drops
            .get_or_create(&labels(&[("reason", reason.name())]))
            .inc_by(n);
    }
    let frames = counter_family(
        r,
        "interface_frames",
        "Frames per owned interface, by direction and outcome",
    );
    let offload = counter_family(
        r,
        "interface_offload_frames",
        "Received frames per owned interface with offload state",
    );
    for i in &router.interfaces {
        for (direction, outcome, n) in [
            ("rx", "offered", i.kernel_frames),
            ("rx", "dropped", i.ring_drops),
            ("tx", "sent", i.tx_frames),
            ("tx", "dropped", i.tx_dropped),
            ("tx", "refused", i.tx_refused),
        ] {
            frames
                .get_or_create(&labels(&[
                    ("interface", &i.name),
                    ("direction", direction),
                    ("outcome", outcome),
                ]))
                .inc_by(n);
        }
        for (kind, n) in [
            ("gso", i.gso_frames),
            ("partial_checksum", i.partial_checksums),
            ("checksum_completed", i.checksums_completed),
        ] {
            offload
                .get_or_create(&labels(&[("interface", &i.name), ("kind", kind)]))
                .inc_by(n);
        }
    }
    let per_interface: [(&str, &str, InterfaceCounter); 2] = [
        (
            "interface_busy_polls",
            "Times the router thread ran an AF_XDP queue's receive work itself (busy_poll_us)",
            |i| i.busy_polls,
        ),
        (
            "interface_tx_in_place_frames",
            "AF_XDP: frames sent from the UMEM frame they were received in (no copy)",
            |i| i.tx_in_place,
        ),
    ];
    for (name, help, value) in per_interface {
        let family = counter_family(r, name, help);
        for i in &router.interfaces {
            family
                .get_or_create(&labels(&[("interface", &i.name)]))
                .inc_by(value(i));
        }
    }
    if let Some(f) = &router.fast_path {
        let fp = counter_family(
            r,
            "fast_path_frames",
            "Frames the XDP program saw, by outcome",
        );
        for (outcome, n) in [
            ("forwarded", f.counters.forwarded),
            ("passed", f.counters.passed),
            ("redirect_failed", f.counters.redirect_failed),
        ] {
            fp.get_or_create(&labels(&[("outcome", outcome)])).inc_by(n);
        }
        gauge(
            r,
            "fast_path_neighbours",
            "Neighbours in the XDP program's map",
            f.neighbours as u64,
        );
    }
}

/// Serve `GET /metrics` on `listener` until the task is dropped, asking the node's loop for
/// a snapshot per scrape through `stats` (bounds: [`crate::http`]).
pub(super) async fn serve(listener: TcpListener, stats: mpsc::Sender<oneshot::Sender<Stats>>) {
    crate::http::serve(listener, "metrics", move |r: Request| {
        let stats = stats.clone();
        async move { route(r, &stats).await }
    })
    .await;
}

async fn route(r: Request, stats: &mpsc::Sender<oneshot::Sender<Stats>>) -> Response {
    match (r.method.as_deref(), r.path.as_deref()) {
        (Some("GET"), Some("/metrics")) => {
            let (tx, rx) = oneshot::channel();
            let snapshot = match stats.send(tx).await {
                Ok(()) => rx.await.ok(),
                Err(_) => None,
            };
            match snapshot {
                Some(s) => Response::ok("text/plain; version=0.0.4; charset=utf-8", render(&s)),
                None => Response::error("503 Service Unavailable", "the node is stopping"),
            }
        }
        (Some("GET"), Some(_)) => Response::error("404 Not Found", "only /metrics is served here"),
        _ => Response::error("400 Bad Request", "expected GET /metrics"),
    }
}

/// Bind the metrics listener, refusing a non-loopback address unless `public`.
pub(super) async fn bind(listen: SocketAddr, public: bool) -> anyhow::Result<TcpListener> {
    if !listen.ip().is_loopback() && !public {
        anyhow::bail!(
            "[metrics] listen = \"{listen}\" is not a loopback address; anyone who can reach \
             it would read the node's counters — set public = true to mean it"
        );
    }
    let l = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("[metrics] cannot listen on {listen}: {e}"))?;
    let at = l.local_addr()?;
    if at.ip().is_loopback() {
        info!(%at, "metrics on http://{at}/metrics");
    } else {
        warn!(%at, "metrics on a non-loopback address (public = true)");
    }
    Ok(l)
}
