//! `ants status` and `ants drops`: ask a running node for its counters over its app socket
//! (a `Stats` request; no app id is registered) and print them.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::Value;

/// Where the node is and how long to wait for it.
#[derive(Debug, Args)]
pub(crate) struct NodeSocket {
    /// The node's app socket (`app_socket` in the `[node]` section of its config).
    #[arg(short, long)]
    pub(crate) socket: PathBuf,
    /// Seconds to wait for the node's answer.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
}

impl NodeSocket {
    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout.clamp(0.1, 3600.0))
    }

    pub(crate) fn query(&self) -> anyhow::Result<Value> {
        let text = ants_app::query_stats(&self.socket, self.timeout())
            .with_context(|| format!("asking the node on {}", self.socket.display()))?;
        serde_json::from_str(&text).context("the node's answer is not JSON")
    }
}

/// `ants status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    node: NodeSocket,
    /// Print the node's counters as one JSON object (the form of `ants run --stats-json`).
    #[arg(long)]
    json: bool,
}

pub(crate) fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// "p50/p99" of a histogram's JSON (the tops of their power-of-two buckets), or "-".
pub(crate) fn quantiles(hist: &Value, show: impl Fn(u64) -> String) -> String {
    let mut h = ants_core::node::Log2Hist::default();
    let buckets = hist["buckets"].as_array().into_iter().flatten();
    for (slot, v) in h.buckets.iter_mut().zip(buckets) {
        *slot = u(v);
    }
    match (h.quantile(0.5), h.quantile(0.99)) {
        (Some(a), Some(b)) => format!("{}/{}", show(a), show(b)),
        _ => "-".to_owned(),
    }
}

/// The human-readable status of a node from its counters' JSON.
pub(crate) fn render_status(s: &Value) -> String {
    let mut out = String::new();
    let mode = if s["router"].is_null() {
        "UDP overlay"
    } else {
        "router mode"
    };
    let n = &s["node"];
    let _ = writeln!(
        out,
        "node {} ({mode}), up {:.1} s",
        s["address"].as_str().unwrap_or("?"),
        s["uptime_s"].as_f64().unwrap_or(0.0)
    );
    for nb in s["neighbours"].as_array().into_iter().flatten() {
        let heard = nb["last_heard_s"].as_f64().map_or_else(
            || "never heard".to_owned(),
            |t| format!("heard {t:.1} s ago"),
        );
        let _ = writeln!(
            out,
            "neighbour {} at {}  {} datagrams, {heard}",
            nb["address"].as_str().unwrap_or("?"),
            nb["endpoint"].as_str().unwrap_or("?"),
            u(&nb["datagrams"])
        );
    }
    for r in s["routes"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "route     {} via {}",
            r["dst"].as_str().unwrap_or("?"),
            r["via"].as_str().unwrap_or("?")
        );
    }
    let _ = writeln!(
        out,
        "capsules  in {}  injected {}  runs {}  sent {}  delivered {}  waited for code {}",
        u(&n["capsules_in"]),
        u(&n["injected"]),
        u(&n["runs"]),
        u(&n["sent"]),
        u(&n["delivered"]),
        u(&n["held"])
    );
    let dropped: u64 = n["drops"]
        .as_object()
        .map(|m| m.values().map(u).sum())
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "code      cached {}  compile {:.1} ms  dropped datagrams {dropped} (ants drops)",
        u(&s["cached_types"]),
        s["compile_ms"].as_f64().unwrap_or(0.0).max(0.0)
    );
    if let Some(workers) = s["workers"].as_array().filter(|w| !w.is_empty()) {
        let each: Vec<String> = workers
            .iter()
            .map(|w| {
                format!(
                    "#{} {} types {} runs",
                    u(&w["index"]),
                    u(&w["protocols"]),
                    u(&w["runs"])
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "workers   {}  ({})  handed over {}",
            workers.len(),
            each.join(", "),
            u(&s["handed_off"])
        );
    }
    for w in s["watches"].as_array().into_iter().flatten() {
        let property = w["property"].as_str().unwrap_or("?");
        let f = &w["first"];
        if f.is_null() {
            let _ = writeln!(out, "watch     {property}: holds");
            continue;
        }
        let input = f["input"]
            .as_u64()
            .map_or_else(String::new, |i| format!(", recorded input {i}"));
        let _ = writeln!(
            out,
            "watch     {property}: VIOLATED {} time(s); first at {:.3} s on worker {}{input}: {}",
            u(&w["violations"]),
            f["uptime_s"].as_f64().unwrap_or(0.0),
            u(&f["worker"]),
            f["detail"].as_str().unwrap_or("?")
        );
    }
    if let Some(protocols) = s["protocols"].as_object().filter(|m| !m.is_empty()) {
        let _ = writeln!(
            out,
            "\n{:<18} {:>10} {:>10} {:>10} {:>7} {:>7} {:>14} {:>13} {:>15}",
            "PROTOCOL",
            "RUNS",
            "SENT",
            "DELIVERED",
            "TRAPS",
            "ERRORS",
            "FUEL",
            "FUEL p50/p99",
            "µs p50/p99"
        );
        for (ty, c) in protocols {
            let short: String = ty.chars().take(16).collect();
            let fuel = quantiles(&c["fuel_hist"], |v| v.to_string());
            let time = quantiles(&c["time_hist"], |v| format!("{:.1}", v as f64 / 1e3));
            let _ = writeln!(
                out,
                "{:<18} {:>10} {:>10} {:>10} {:>7} {:>7} {:>14} {:>13} {:>15}",
                format!("{short}…"),
                u(&c["runs"]),
                u(&c["sent"]),
                u(&c["delivered"]),
                u(&c["traps"]),
                u(&c["errors"]),
                u(&c["fuel"]),
                fuel,
                time
            );
        }
    }
    let r = &s["router"];
    if !r.is_null() {
        let _ = writeln!(
            out,
            "\nrouter    forwarded {}  capsules {}  fragmented {}  super-frames {}  icmp {}",
            u(&r["forwarded"]),
            u(&r["capsules"]),
            u(&r["fragmented"]),
            u(&r["forwarded_gso"]),
            u(&r["icmp_sent"])
        );
        let f = &r["fast_path"];
        if !f.is_null() {
            let _ = writeln!(
                out,
                "fast path forwarded {}  passed on {}  neighbours {}  ({})",
                u(&f["forwarded"]),
                u(&f["passed"]),
                u(&f["neighbours"]),
                if f["native"] == true {
                    "native XDP"
                } else {
                    "generic XDP"
                }
            );
        }
        for i in r["interfaces"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  {:<15} rx {} (ring drops {})  tx {} (dropped {}, refused {})",
                i["name"].as_str().unwrap_or("?"),
                u(&i["kernel_frames"]),
                u(&i["ring_drops"]),
                u(&i["tx_frames"]),
                u(&i["tx_dropped"]),
                u(&i["tx_refused"])
            );
        }
    }
    out
}

impl StatusArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let s = self.node.query()?;
        if self.json {
            println!("{s}");
        } else {
            print!("{}", render_status(&s));
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// `ants modules`.
#[derive(Debug, Args)]
pub(crate) struct ModulesArgs {
    #[command(flatten)]
    node: NodeSocket,
    /// Print a JSON array, one object per type.
    #[arg(long)]
    json: bool,
    /// Drop this type's module (64 hex digits) from the node's memory and code directory
    /// instead of listing; the next capsule of the type loads it again. Exits 1 if the node
    /// had no module of it.
    #[arg(long, value_name = "TYPE")]
    evict: Option<ants_wire::CapsuleType>,
}

/// One row per capsule type the node has run or caches, from its counters' JSON, sorted by
/// runs (most first). `now_ns`: wall-clock time, to say how long ago a type last ran (node
/// time reads as Unix time).
pub(crate) fn module_rows(s: &Value, now_ns: u64) -> Vec<Value> {
    let mut types: std::collections::BTreeMap<String, Value> = Default::default();
    for m in s["modules"].as_array().into_iter().flatten() {
        if let Some(ty) = m["type"].as_str() {
            types.insert(
                ty.to_owned(),
                serde_json::json!({"type": ty, "cached": true,
                "bytes": m["bytes"], "compile_ms": m["compile_ms"]}),
            );
        }
    }
    for (ty, c) in s["protocols"].as_object().into_iter().flatten() {
        let row = types
            .entry(ty.clone())
            .or_insert_with(|| serde_json::json!({"type": ty, "cached": false}));
        for key in [
            "runs",
            "traps",
            "errors",
            "quarantines",
            "quarantined",
            "quarantined_peers",
        ] {
            row[key] = serde_json::json!(u(&c[key]));
        }
        let last = u(&c["last_run_ns"]);
        row["last_run_s_ago"] = if last == 0 {
            Value::Null
        } else {
            serde_json::json!(now_ns.saturating_sub(last) as f64 / 1e9)
        };
    }
    let mut rows: Vec<Value> = types.into_values().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(u(&r["runs"])));
    rows
}

/// The rows of [`module_rows`] as a table.
pub(crate) fn render_modules(rows: &[Value]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<18} {:>8} {:>10} {:>10} {:>7} {:>10} {:>12}",
        "TYPE", "BYTES", "COMPILE ms", "RUNS", "TRAPS", "LAST RUN", "QUARANTINED"
    );
    for r in rows {
        let short: String = r["type"].as_str().unwrap_or("?").chars().take(16).collect();
        let bytes = if r["cached"] == true {
            u(&r["bytes"]).to_string()
        } else {
            "-".into()
        };
        let compile = r["compile_ms"]
            .as_f64()
            .map_or_else(|| "-".into(), |ms| format!("{ms:.1}"));
        let last = r["last_run_s_ago"]
            .as_f64()
            .map_or_else(|| "never".into(), |s| format!("{s:.1} s ago"));
        let _ = writeln!(
            out,
            "{:<18} {:>8} {:>10} {:>10} {:>7} {:>10} {:>12}",
            format!("{short}…"),
            bytes,
            compile,
            u(&r["runs"]),
            u(&r["traps"]),
            last,
            format!("{} peers", u(&r["quarantined_peers"]))
        );
    }
    out
}

impl ModulesArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        if let Some(ty) = self.evict {
            let removed = ants_app::evict_module(&self.node.socket, ty, self.node.timeout())
                .with_context(|| format!("asking the node on {}", self.node.socket.display()))?;
            if removed {
                println!("evicted {ty}");
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("the node has no module of type {ty}");
            return Ok(ExitCode::FAILURE);
        }
        let s = self.node.query()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let rows = module_rows(&s, now);
        if self.json {
            println!("{}", Value::Array(rows));
        } else if rows.is_empty() {
            println!("no capsule types yet");
        } else {
            print!("{}", render_modules(&rows));
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// `ants store …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum StoreCommand {
    /// List the soft-store's live entries with their remaining TTL, by capsule type (the
    /// store's namespaces), like `bpftool map dump`.
    ///
    /// At most 1,000 entries per worker (and 512 KiB in all) are listed, keys and values cut
    /// to 64 bytes (their full lengths shown).
    ///
    /// Example: ants store dump -s /tmp/ants-demo/n3.sock
    Dump(StoreDumpArgs),
}

/// `ants store dump`.
#[derive(Debug, Args)]
pub(crate) struct StoreDumpArgs {
    #[command(flatten)]
    node: NodeSocket,
    /// Only this capsule type's entries (64 hex digits).
    #[arg(long = "type", value_name = "TYPE")]
    ty: Option<ants_wire::CapsuleType>,
    /// Print the node's answer as one JSON object.
    #[arg(long)]
    json: bool,
}

impl StoreCommand {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            StoreCommand::Dump(a) => a.run(),
        }
    }
}

/// The entries of a store dump as text: a line per namespace, one per entry.
pub(crate) fn render_store(v: &Value) -> String {
    let mut out = String::new();
    for ns in v["namespaces"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "type {}: {} entries, {} bytes",
            ns["type"].as_str().unwrap_or("?"),
            u(&ns["count"]),
            u(&ns["bytes"])
        );
        for e in ns["entries"].as_array().into_iter().flatten() {
            // Hex, with "…" where the node cut it.
            let shown = |field: &str, len: &str| {
                let hex = e[field].as_str().unwrap_or("");
                let cut = hex.len() / 2 < u(&e[len]) as usize;
                format!("{hex}{}", if cut { "…" } else { "" })
            };
            let _ = writeln!(
                out,
                "  key {}  value {} ({} bytes)  ttl {:.1} s",
                shown("key", "key_len"),
                shown("value", "value_len"),
                u(&e["value_len"]),
                e["ttl_ms"].as_f64().unwrap_or(0.0) / 1e3
            );
        }
    }
    if v["truncated"] == true {
        let _ = writeln!(
            out,
            "(more entries than one dump lists; ask for one --type)"
        );
    }
    out
}

impl StoreDumpArgs {
    fn run(self) -> anyhow::Result<ExitCode> {
        let text = ants_app::store_dump(&self.node.socket, self.ty, self.node.timeout())
            .with_context(|| format!("asking the node on {}", self.node.socket.display()))?;
        let v: Value = serde_json::from_str(&text).context("the node's answer is not JSON")?;
        if self.json {
            println!("{v}");
        } else if v["namespaces"].as_array().is_none_or(Vec::is_empty) {
            println!("the soft-store is empty");
        } else {
            print!("{}", render_store(&v));
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// `ants drops`.
#[derive(Debug, Args)]
pub(crate) struct DropsArgs {
    #[command(flatten)]
    node: NodeSocket,
    /// Also list the reasons that counted nothing.
    #[arg(long)]
    all: bool,
    /// Print `{"node.<reason>": n, "router.<reason>": n, …}` as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Every drop counter of a node by `layer.reason`, in a stable order; zeros included when
/// `all` (every reason the node and, in router mode, the router know).
pub(crate) fn drop_rows(s: &Value, all: bool) -> Vec<(String, u64)> {
    let mut rows = Vec::new();
    let node = &s["node"]["drops"];
    for reason in ants_core::node::DropReason::ALL {
        rows.push((format!("node.{}", reason.name()), u(&node[reason.name()])));
    }
    let r = &s["router"];
    if !r.is_null() {
        for reason in ants_router::DropReason::ALL {
            rows.push((
                format!("router.{}", reason.name()),
                u(&r["drops"][reason.name()]),
            ));
        }
        for i in r["interfaces"].as_array().into_iter().flatten() {
            let name = i["name"].as_str().unwrap_or("?");
            for key in ["ring_drops", "tx_dropped", "tx_refused"] {
                rows.push((format!("interface.{name}.{key}"), u(&i[key])));
            }
        }
    }
    for key in [
        "udp_dropped",
        "handoff_dropped",
        "drain_dropped",
        "compiles_refused",
        "capsule_logs_suppressed",
    ] {
        rows.push((key.to_string(), u(&s[key])));
    }
    let t = &s["trace"];
    for key in ["reports_rate_limited", "reports_undeliverable"] {
        rows.push((format!("trace.{key}"), u(&t[key])));
    }
    if !all {
        rows.retain(|(_, n)| *n > 0);
    }
    rows
}

impl DropsArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let s = self.node.query()?;
        let rows = drop_rows(&s, self.all);
        if self.json {
            let map: serde_json::Map<String, Value> =
                rows.into_iter().map(|(k, n)| (k, Value::from(n))).collect();
            println!("{}", Value::Object(map));
        } else if rows.is_empty() {
            println!("no drops (--all lists every reason)");
        } else {
            let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(6).max(6);
            println!("{:<width$}  COUNT", "REASON");
            for (k, n) in rows {
                println!("{k:<width$}  {n}");
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn drops_are_listed_by_layer_and_zeros_hidden_unless_all() {
        let s = json!({
            "address": "198.18.0.1",
            "node": {"drops": {"stranger": 3}},
            "udp_dropped": 2,
            "router": {"drops": {"not_ipv4": 5}, "interfaces": [{"name": "r1-h1", "ring_drops": 1}]},
        });
        let rows = drop_rows(&s, false);
        assert_eq!(
            rows,
            vec![
                ("node.stranger".to_string(), 3),
                ("router.not_ipv4".to_string(), 5),
                ("interface.r1-h1.ring_drops".to_string(), 1),
                ("udp_dropped".to_string(), 2),
            ]
        );
        let all = drop_rows(&s, true);
        assert!(all.len() > 40);
        assert!(all.contains(&("router.ttl_exceeded".to_string(), 0)));
    }

    #[test]
    fn a_store_dump_reads_like_bpftool() {
        let v = json!({"namespaces": [{"type": "ab", "count": 2, "bytes": 90, "entries": [
            {"key": "6b", "key_len": 1, "value": "0102", "value_len": 2, "ttl_ms": 4200.0},
            {"key": "6c", "key_len": 1, "value": "ff", "value_len": 300, "ttl_ms": 10.0},
        ]}], "truncated": true});
        assert_eq!(
            render_store(&v),
            "type ab: 2 entries, 90 bytes\n  key 6b  value 0102 (2 bytes)  ttl 4.2 s\n  \
             key 6c  value ff… (300 bytes)  ttl 0.0 s\n(more entries than one dump lists; ask \
             for one --type)\n"
        );
    }

    #[test]
    fn modules_join_the_cache_and_the_protocol_counters() {
        let a = "aa".repeat(32);
        let b = "bb".repeat(32);
        let s = json!({
            "modules": [{"type": a, "bytes": 687, "compile_ms": 9.5}],
            "protocols": {
                a.clone(): {"runs": 3, "traps": 1, "last_run_ns": 9_000_000_000u64},
                b.clone(): {"runs": 9, "traps": 8, "quarantines": 1, "quarantined_peers": 1},
            },
        });
        let rows = module_rows(&s, 10_000_000_000);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["type"], b, "most runs first");
        assert_eq!(rows[0]["cached"], false);
        assert_eq!(rows[1]["bytes"], 687);
        assert_eq!(rows[1]["last_run_s_ago"], 1.0);
        let text = render_modules(&rows);
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        assert_eq!(
            lines,
            [
                "TYPE                  BYTES COMPILE ms       RUNS   TRAPS   LAST RUN  QUARANTINED",
                "bbbbbbbbbbbbbbbb…         -          -          9       8      never      1 peers",
                "aaaaaaaaaaaaaaaa…       687        9.5          3       1  1.0 s ago      0 peers",
            ]
        );
    }

    #[test]
    fn status_names_the_mode_the_protocols_and_the_router() {
        let s = json!({
            "address": "198.18.0.1",
            "node": {"runs": 7, "drops": {}},
            "workers": [{"index": 0, "protocols": 1, "runs": 7}, {"index": 1}],
            "uptime_s": 12.34,
            "neighbours": [{"address": "198.18.0.2", "endpoint": "127.0.0.1:7102", "last_heard_s": 0.25, "datagrams": 7},
                           {"address": "198.18.0.4", "endpoint": "127.0.0.1:7104", "last_heard_s": null}],
            "routes": [{"dst": "198.18.0.5/32", "via": "198.18.0.4"}],
            "handed_off": 3,
            "protocols": {"ab".repeat(32): {"runs": 7, "sent": 6,
                "fuel_hist": {"buckets": [0, 0, 0, 0, 0, 0, 0, 0, 6, 1]},
                "time_hist": {"buckets": [0, 0, 0, 0, 0, 0, 0, 0, 0, 1]}}},
            "router": {"forwarded": 9, "fast_path": {"forwarded": 4, "native": true},
                       "interfaces": [{"name": "r1-h1", "kernel_frames": 10}]},
        });
        let text = render_status(&s);
        assert!(
            text.starts_with(
                "node 198.18.0.1 (router mode), up 12.3 s\n\
                 neighbour 198.18.0.2 at 127.0.0.1:7102  7 datagrams, heard 0.2 s ago\n\
                 neighbour 198.18.0.4 at 127.0.0.1:7104  0 datagrams, never heard\n\
                 route     198.18.0.5/32 via 198.18.0.4\n"
            ),
            "{text}"
        );
        assert!(text.contains("runs 7"), "{text}");
        assert!(
            text.contains("workers   2  (#0 1 types 7 runs, #1 0 types 0 runs)  handed over 3"),
            "{text}"
        );
        assert!(text.contains("abababababababab…"), "{text}");
        assert!(
            text.contains("255/511         0.5/0.5"),
            "fuel and time quantiles: {text}"
        );
        assert!(text.contains("forwarded 9"), "{text}");
        assert!(text.contains("native XDP"), "{text}");
        assert!(text.contains("r1-h1"), "{text}");
    }
}
