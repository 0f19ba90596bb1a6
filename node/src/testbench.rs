//! An in-memory node to run one capsule against: the engine behind `ants capsule test`
//! (the analogue of `BPF_PROG_TEST_RUN`) and the integration tests of hostile modules.
//!
//! [`run`] executes one capsule on a [`TestNode`] (from `ants-core`) and returns a
//! [`TestRun`] with everything it did, printable as text or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

pub use ants_core::TestNode;
use ants_core::{CapsuleState, Effects, Execution, Executor, HostLimits, RunReport, RunResult};
use ants_wire::{Address, CapsuleRepr};
use serde::Serialize;

/// A soft-store entry as shown in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreEntry {
    /// Key, hex.
    pub key: String,
    /// Value, hex.
    pub value: String,
    /// Milliseconds left to live at the time of the report.
    pub ttl_ms: u64,
}

/// A capsule copy (sent or delivered) as shown in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapsuleCopy {
    /// For sends: the address routed toward; for deliveries: absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub toward: Option<String>,
    /// For sends: the next hop chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<String>,
    /// For deliveries: the app id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<u32>,
    /// Resource budget the copy carries.
    pub resource: u16,
    /// Destination.
    pub dst: String,
    /// Protocol header, hex.
    pub header: String,
    /// Payload, hex.
    pub payload: String,
}

/// Everything one test run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestRun {
    /// The capsule type, hex.
    pub capsule_type: String,
    /// The node's address.
    pub node: String,
    /// The input capsule, one line.
    pub input: String,
    /// `"returned"` or `"trapped"`.
    pub outcome: String,
    /// The entry's return code, when it returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_code: Option<i32>,
    /// The trap reason, when it trapped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trap: Option<String>,
    /// Fuel consumed; for an execution stopped at the deadline, the fuel its time is charged
    /// as (`FUEL_PER_MS` per millisecond of `max_exec_time`), which may exceed the budget.
    pub fuel_used: u64,
    /// Fuel budget.
    pub fuel_budget: u64,
    /// Copies sent.
    pub sends: Vec<CapsuleCopy>,
    /// Deliveries to apps.
    pub deliveries: Vec<CapsuleCopy>,
    /// Log lines: `[level, text]`.
    pub logs: Vec<(String, String)>,
    /// The protocol's soft-store namespace after the run.
    pub store: Vec<StoreEntry>,
    /// Store keys written or changed by this run (hex).
    pub store_changed: Vec<String>,
    /// Store keys removed or expired during this run (hex).
    pub store_removed: Vec<String>,
    /// Host calls refused by per-execution limits.
    pub limit_hits: u32,
    /// Sends refused because the resource budget was used up.
    pub resource_refusals: u32,
    /// Sends refused for lack of a route.
    pub no_route: u32,
}

fn store_snapshot(node: &TestNode, ns: &[u8; 32]) -> Vec<StoreEntry> {
    node.store
        .entries(ns)
        .into_iter()
        .map(|e| StoreEntry {
            key: hex::encode(e.key),
            value: hex::encode(e.value),
            ttl_ms: u64::try_from(e.expires_at.saturating_sub(node.now).as_millis())
                .unwrap_or(u64::MAX),
        })
        .collect()
}

/// Run `capsule` once on `node` through `executor`, reporting everything it did.
pub fn run(
    executor: &mut dyn Executor,
    node: &mut TestNode,
    capsule: &CapsuleRepr<'_>,
    limits: &HostLimits,
    fuel_budget: u64,
) -> TestRun {
    let ns = capsule.capsule_type.0;
    let before = store_snapshot(node, &ns);
    // The node is lent to the execution (owned data, see `ants_core::Execution`) and given
    // back after the run.
    let mut exec = Box::new(Execution {
        capsule: CapsuleState::from_repr(capsule),
        node: std::mem::take(node),
        effects: Effects::default(),
        limits: *limits,
    });
    let report: RunReport = ants_core::execute(executor, &mut exec);
    *node = std::mem::take(&mut exec.node);
    let effects = &exec.effects;
    let after = store_snapshot(node, &ns);
    let copy = |toward: Option<Address>,
                next_hop: Option<Address>,
                app: Option<u32>,
                resource: u16,
                snap: &ants_core::effects::Snapshot| CapsuleCopy {
        toward: toward.map(|a| a.to_string()),
        next_hop: next_hop.map(|a| a.to_string()),
        app,
        resource,
        dst: snap.dst.to_string(),
        header: hex::encode(effects.header(snap)),
        payload: hex::encode(effects.payload(snap)),
    };
    let sends = effects
        .sends
        .iter()
        .map(|s| {
            copy(
                Some(s.toward),
                Some(s.next_hop),
                None,
                s.resource,
                &s.snapshot,
            )
        })
        .collect();
    let deliveries = effects
        .deliveries
        .iter()
        .map(|d| copy(None, None, Some(d.app), exec.capsule.resource, &d.snapshot))
        .collect();
    let logs = effects
        .logs
        .iter()
        .map(|l| (l.level.name().to_string(), effects.log_text(l).to_string()))
        .collect();
    let (outcome, return_code, trap) = match &report.result {
        RunResult::Returned(c) => ("returned", Some(*c), None),
        RunResult::Trapped(t) => ("trapped", None, Some(t.to_string())),
        RunResult::NotLoaded => ("not-loaded", None, None),
    };
    let old: BTreeMap<_, _> = before.iter().map(|e| (&e.key, &e.value)).collect();
    let new: BTreeMap<_, _> = after.iter().map(|e| (&e.key, &e.value)).collect();
    let store_changed = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(k, _)| (*k).clone())
        .collect();
    let store_removed = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .map(|k| (*k).clone())
        .collect();
    TestRun {
        capsule_type: capsule.capsule_type.to_string(),
        node: node.address.to_string(),
        input: capsule.to_string(),
        outcome: outcome.to_string(),
        return_code,
        trap,
        fuel_used: report.fuel_used,
        fuel_budget,
        sends,
        deliveries,
        logs,
        store: after,
        store_changed,
        store_removed,
        limit_hits: effects.limit_hits,
        resource_refusals: effects.resource_refusals,
        no_route: effects.no_route,
    }
}

fn shown(hex: &str) -> String {
    let Ok(bytes) = hex::decode(hex) else {
        return hex.to_string();
    };
    if bytes.is_empty() {
        return "(empty)".into();
    }
    match std::str::from_utf8(&bytes) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => format!("{s:?}"),
        _ => format!("0x{hex}"),
    }
}

impl TestRun {
    /// `true` if the capsule returned 0.
    pub fn ok(&self) -> bool {
        self.return_code == Some(0)
    }

    /// A human-readable report.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "type      {}", self.capsule_type);
        let _ = writeln!(s, "node      {}", self.node);
        let _ = writeln!(s, "input     {}", self.input);
        match (&self.return_code, &self.trap) {
            (Some(code), _) => {
                let meaning = if *code == 0 {
                    "ok"
                } else {
                    "capsule reported an error"
                };
                let _ = writeln!(s, "result    returned {code} ({meaning})");
            }
            (_, Some(trap)) => {
                let _ = writeln!(
                    s,
                    "result    TRAPPED: {trap} — sends and deliveries discarded, instance dropped"
                );
            }
            _ => {
                let _ = writeln!(s, "result    {}", self.outcome);
            }
        }
        if self.fuel_used > self.fuel_budget {
            // A deadline trap is charged its time's worth of fuel, which can exceed the budget.
            let _ = writeln!(
                s,
                "fuel      {} charged, budget {} (stopped at the deadline: charged for its time)",
                self.fuel_used, self.fuel_budget
            );
        } else {
            let _ = writeln!(s, "fuel      {} of {}", self.fuel_used, self.fuel_budget);
        }
        let _ = writeln!(s, "sends     {}", self.sends.len());
        for c in &self.sends {
            let _ = writeln!(
                s,
                "  -> toward {} via {}  rl={} dst={} header={} payload={}",
                c.toward.as_deref().unwrap_or("?"),
                c.next_hop.as_deref().unwrap_or("?"),
                c.resource,
                c.dst,
                shown(&c.header),
                shown(&c.payload)
            );
        }
        let _ = writeln!(s, "delivered {}", self.deliveries.len());
        for c in &self.deliveries {
            let _ = writeln!(
                s,
                "  -> app {}  dst={} header={} payload={}",
                c.app.unwrap_or(0),
                c.dst,
                shown(&c.header),
                shown(&c.payload)
            );
        }
        let _ = writeln!(
            s,
            "store     {} entries ({} written, {} removed)",
            self.store.len(),
            self.store_changed.len(),
            self.store_removed.len()
        );
        for e in &self.store {
            let mark = if self.store_changed.contains(&e.key) {
                "*"
            } else {
                " "
            };
            let _ = writeln!(
                s,
                " {mark} {} = {}  (ttl {} ms)",
                shown(&e.key),
                shown(&e.value),
                e.ttl_ms
            );
        }
        for k in &self.store_removed {
            let _ = writeln!(s, " - {}", shown(k));
        }
        let _ = writeln!(s, "log       {} lines", self.logs.len());
        for (level, text) in &self.logs {
            let _ = writeln!(s, "  [{level}] {text}");
        }
        if self.limit_hits + self.resource_refusals + self.no_route > 0 {
            let _ = writeln!(
                s,
                "refused   {} limit, {} resource, {} no-route",
                self.limit_hits, self.resource_refusals, self.no_route
            );
        }
        s
    }
}
