//! `ants trace`: the causal timeline of a traced capsule, from the reports its origin kept.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;

use super::status::{NodeSocket, u};

/// `ants trace`.
#[derive(Debug, Args)]
pub(crate) struct TraceArgs {
    #[command(flatten)]
    node: NodeSocket,
    /// The trace id (16 hex digits, as `ants send --trace` prints it). Without it, list the
    /// traces this node started.
    id: Option<String>,
    /// Print the node's JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Seconds to wait before asking, so reports from far nodes have arrived.
    #[arg(long, default_value_t = 0.0)]
    wait: f64,
}

impl TraceArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let id = match &self.id {
            Some(s) => Some(
                u64::from_str_radix(s.trim_start_matches("0x"), 16)
                    .with_context(|| format!("{s:?} is not a trace id (up to 16 hex digits)"))?,
            ),
            None => None,
        };
        std::thread::sleep(Duration::from_secs_f64(self.wait.clamp(0.0, 3600.0)));
        let text = ants_app::traces(&self.node.socket, id, self.node.timeout())
            .with_context(|| format!("asking the node on {}", self.node.socket.display()))?;
        let v: Value = serde_json::from_str(&text).context("the node's answer is not JSON")?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(ExitCode::SUCCESS);
        }
        match id {
            Some(id) if v["trace"].is_null() => bail!(
                "the node has no trace {id:016x}: it keeps only traces it started (the most \
                 recent 64); `ants trace -s {}` lists them",
                self.node.socket.display()
            ),
            Some(_) => print!("{}", render_timeline(&v["trace"])),
            None => print!("{}", render_list(&v)),
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// The traces a node started, one line each.
pub(crate) fn render_list(v: &Value) -> String {
    let traces = v["traces"].as_array().cloned().unwrap_or_default();
    if traces.is_empty() {
        return "no traces: send one with `ants send --trace`, or set [trace] sample\n".into();
    }
    let mut out = format!(
        "{:<16}  {:<12}  {:>5}  {:>6}  {:>7}\n",
        "trace", "type", "nodes", "events", "reports"
    );
    for t in &traces {
        let ty = t["type"].as_str().unwrap_or("?");
        let _ = writeln!(
            out,
            "{:<16}  {:<12}  {:>5}  {:>6}  {:>7}",
            t["id"].as_str().unwrap_or("?"),
            &ty[..ty.len().min(12)],
            u(&t["nodes"]),
            u(&t["events"]),
            u(&t["reports"]),
        );
    }
    out
}

/// One trace's events in happened-before order: by Lamport clock (ties by node), with the
/// time since the trace began on each event's own node clock.
pub(crate) fn render_timeline(t: &Value) -> String {
    let mut events = t["events"].as_array().cloned().unwrap_or_default();
    events.sort_by(|a, b| {
        (u(&a["clock"]), a["node"].as_str()).cmp(&(u(&b["clock"]), b["node"].as_str()))
    });
    let start = events.iter().map(|e| u(&e["time_ns"])).min().unwrap_or(0);
    let nodes: std::collections::BTreeSet<&str> =
        events.iter().filter_map(|e| e["node"].as_str()).collect();
    let ty = t["type"].as_str().unwrap_or("?");
    let mut out = format!(
        "trace {} type {}: {} events on {} nodes, {} reports\n",
        t["id"].as_str().unwrap_or("?"),
        &ty[..ty.len().min(12)],
        events.len(),
        nodes.len(),
        u(&t["reports"]),
    );
    let _ = writeln!(out, "{:>5}  {:<15}  {:>10}  event", "clock", "node", "ms");
    for e in &events {
        let ms = u(&e["time_ns"]).saturating_sub(start) as f64 / 1e6;
        let _ = writeln!(
            out,
            "{:>5}  {:<15}  {:>10.3}  {}",
            u(&e["clock"]),
            e["node"].as_str().unwrap_or("?"),
            ms,
            describe(e)
        );
    }
    if u(&t["omitted"]) > 0 {
        let _ = writeln!(
            out,
            "({} events not kept or not reported)",
            u(&t["omitted"])
        );
    }
    out
}

fn describe(e: &Value) -> String {
    let peer = e["peer"].as_str().unwrap_or("-");
    let res = u(&e["resource"]);
    match e["kind"].as_str().unwrap_or("?") {
        "injected" if e["sampled"] == true => {
            format!("sampled from app {} (resource {res})", u(&e["app"]))
        }
        "injected" => format!("sent by app {} (resource {res})", u(&e["app"])),
        "received" => format!(
            "received from {peer} (sent at {}, resource {res})",
            u(&e["sent_at"])
        ),
        "held-for-code" if e["source"] == "local" => "held: compiling its code".into(),
        "held-for-code" => format!("held: fetching its code from {peer}"),
        "code-ready" => format!("code ready after {:.3} ms", u(&e["waited_us"]) as f64 / 1e3),
        "ran" => {
            let time = e["ns"]
                .as_u64()
                .map_or_else(String::new, |ns| format!(", {:.1} µs", ns as f64 / 1e3));
            format!(
                "ran: {} fuel{time}, {}",
                u(&e["fuel"]),
                e["outcome"].as_str().unwrap_or("?")
            )
        }
        "sent" => format!("sent to {peer} (resource {res})"),
        "delivered" => format!("delivered to app {}", u(&e["app"])),
        "dropped" => format!(
            "dropped: {} (x{})",
            e["reason"].as_str().unwrap_or("?"),
            u(&e["count"])
        ),
        "truncated" => format!("{} more events not reported", u(&e["omitted"])),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_is_in_clock_order_and_reads_like_a_story() {
        let t = serde_json::json!({
            "id": "00000000000000aa", "type": "ee5d3ee4aabbccdd", "reports": 2, "omitted": 0,
            "events": [
                {"node": "198.18.0.2", "clock": 3, "time_ns": 2_000_000, "kind": "received",
                 "peer": "198.18.0.1", "sent_at": 2, "resource": 63},
                {"node": "198.18.0.1", "clock": 1, "time_ns": 1_000_000, "kind": "injected",
                 "app": 7, "sampled": false, "resource": 64},
                {"node": "198.18.0.1", "clock": 2, "time_ns": 1_500_000, "kind": "sent",
                 "peer": "198.18.0.2", "resource": 63},
                {"node": "198.18.0.2", "clock": 4, "time_ns": 2_100_000, "kind": "dropped",
                 "reason": "no-route", "count": 1, "resource": 63},
            ]
        });
        let s = render_timeline(&t);
        let lines: Vec<&str> = s.lines().collect();
        assert!(
            lines[0].starts_with("trace 00000000000000aa type ee5d3ee4aabb: 4 events on 2 nodes")
        );
        assert!(lines[2].contains("sent by app 7 (resource 64)"), "{s}");
        assert!(lines[3].contains("sent to 198.18.0.2"), "{s}");
        assert!(
            lines[4].contains("received from 198.18.0.1 (sent at 2"),
            "{s}"
        );
        assert!(lines[4].contains("1.000"), "ms since the first event: {s}");
        assert!(lines[5].contains("dropped: no-route (x1)"), "{s}");
    }
}
