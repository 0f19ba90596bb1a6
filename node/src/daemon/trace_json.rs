//! The traces a node started, as the JSON `ants trace` reads (the `Traces` app request).

use std::fmt;
use std::hash::Hash;

use ants_core::node::{DropReason, Node, TraceRecord, TracedEvent};
use ants_wire::{Address, TraceEventKind};
use serde_json::{Value, json};

/// `{"traces": [summary…]}` for the list, `{"trace": {…} | null}` for one id.
pub(crate) fn traces<P: Copy + Eq + Hash + Ord + fmt::Debug>(
    node: &Node<P>,
    id: Option<u64>,
) -> Value {
    match id {
        Some(id) => json!({ "trace": node.traces().find(|t| t.id == id).map(full) }),
        None => json!({ "traces": node.traces().map(summary).collect::<Vec<_>>() }),
    }
}

fn summary(t: &TraceRecord) -> Value {
    let nodes: std::collections::BTreeSet<Address> = t.events.iter().map(|e| e.node).collect();
    json!({
        "id": format!("{:016x}", t.id),
        "type": t.ty.to_string(),
        "started_s": t.started.as_secs_f64(),
        "reports": t.reports,
        "events": t.events.len(),
        "nodes": nodes.len(),
        "omitted": t.omitted,
    })
}

fn full(t: &TraceRecord) -> Value {
    let mut v = summary(t);
    v["events"] = t.events.iter().map(event).collect();
    v
}

fn event(e: &TracedEvent) -> Value {
    let ev = &e.event;
    let kind = ev.event_kind();
    let mut v = json!({
        "node": e.node.to_string(),
        "clock": ev.clock,
        "time_ns": ev.time_ns,
        "kind": kind.map_or_else(|| format!("event-{}", ev.kind), |k| k.name().to_owned()),
        "resource": ev.resource,
    });
    if ev.peer != Address::UNSPECIFIED {
        v["peer"] = json!(ev.peer.to_string());
    }
    match kind {
        Some(TraceEventKind::Injected) => {
            v["app"] = json!(ev.a);
            v["sampled"] = json!(ev.b == 1);
        }
        Some(TraceEventKind::HeldForCode) => {
            v["source"] = json!(if ev.detail == 1 { "local" } else { "fetch" });
        }
        Some(TraceEventKind::CodeReady) => v["waited_us"] = json!(ev.a),
        Some(TraceEventKind::Ran) => {
            v["fuel"] = json!(ev.a);
            if ev.b > 0 {
                v["ns"] = json!(ev.b);
            }
            v["outcome"] = json!(match ev.detail {
                0 => "ok",
                1 => "error",
                2 => "trapped",
                _ => "not-loaded",
            });
        }
        Some(TraceEventKind::Delivered) => v["app"] = json!(ev.a),
        Some(TraceEventKind::Dropped) => {
            v["reason"] = json!(
                DropReason::from_code(ev.detail)
                    .map_or_else(|| format!("code-{}", ev.detail), |r| r.name().to_owned())
            );
            v["count"] = json!(ev.a);
        }
        Some(TraceEventKind::Truncated) => v["omitted"] = json!(ev.a),
        Some(TraceEventKind::Received) => v["sent_at"] = json!(ev.b),
        Some(TraceEventKind::Sent) | None => {}
    }
    v
}
