//! [`Report`]: what a run did — network, per-protocol, per-app and (optionally) per-node
//! counters, and the trace hash — as JSON (`serde`) or text ([`Report::render`]).
//! Everything in it is a function of the scenario and the seed; wall-clock figures are the
//! caller's to add.

use std::collections::BTreeMap;
use std::fmt::Write;

use ants_core::Executor;
use ants_core::node::DropReason;
use ants_wire::CapsuleType;
use serde::Serialize;

use crate::apps::AppStats;
use crate::link::LinkDrop;
use crate::sim::Sim;

/// Counters of one node, or summed over all.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeSummary {
    /// Node number (absent in totals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<u32>,
    /// Active address (absent in totals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Running at the end (absent in totals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub up: Option<bool>,
    /// Datagrams handed to the node.
    pub datagrams_in: u64,
    /// Capsules received.
    pub capsules_in: u64,
    /// Capsules injected by its apps.
    pub injected: u64,
    /// Capsules held while code loaded.
    pub held: u64,
    /// Capsules run.
    pub runs: u64,
    /// Copies sent.
    pub sent: u64,
    /// Deliveries to apps.
    pub delivered: u64,
    /// Modules installed.
    pub modules_installed: u64,
    /// Modules rejected.
    pub modules_rejected: u64,
    /// Code requests sent (demand loading).
    pub code_requests_sent: u64,
    /// Code chunks received.
    pub code_chunks_received: u64,
    /// Code chunks served to neighbours.
    pub code_chunks_served: u64,
    /// Loads that failed.
    pub load_failures: u64,
    /// Drops inside the node, by reason.
    pub drops: BTreeMap<&'static str, u64>,
}

impl NodeSummary {
    fn of(n: &ants_core::Node<u32>) -> NodeSummary {
        let c = n.counters();
        let l = n.loader_counters();
        NodeSummary {
            node: None,
            address: None,
            up: None,
            datagrams_in: c.datagrams_in,
            capsules_in: c.capsules_in,
            injected: c.injected,
            held: c.held,
            runs: c.runs,
            sent: c.sent,
            delivered: c.delivered,
            modules_installed: c.modules_installed,
            modules_rejected: c.modules_rejected,
            code_requests_sent: l.requests_sent,
            code_chunks_received: l.chunks_received,
            code_chunks_served: l.chunks_served,
            load_failures: l.fetch_failures,
            drops: DropReason::ALL
                .iter()
                .filter(|r| c.drops_of(**r) > 0)
                .map(|r| (r.name(), c.drops_of(*r)))
                .collect(),
        }
    }

    fn add(&mut self, o: &NodeSummary) {
        self.datagrams_in += o.datagrams_in;
        self.capsules_in += o.capsules_in;
        self.injected += o.injected;
        self.held += o.held;
        self.runs += o.runs;
        self.sent += o.sent;
        self.delivered += o.delivered;
        self.modules_installed += o.modules_installed;
        self.modules_rejected += o.modules_rejected;
        self.code_requests_sent += o.code_requests_sent;
        self.code_chunks_received += o.code_chunks_received;
        self.code_chunks_served += o.code_chunks_served;
        self.load_failures += o.load_failures;
        for (k, v) in &o.drops {
            *self.drops.entry(k).or_default() += v;
        }
    }
}

/// One protocol, summed over nodes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProtocolSummary {
    /// Type (SHA-256 hex).
    pub ty: String,
    /// Capsule name from the scenario, if known.
    pub name: Option<String>,
    /// Executions.
    pub runs: u64,
    /// Copies sent.
    pub sent: u64,
    /// Deliveries.
    pub delivered: u64,
    /// Traps.
    pub traps: u64,
    /// Non-zero returns.
    pub errors: u64,
    /// Fuel used.
    pub fuel: u64,
    /// Nodes that ran it at least once.
    pub nodes: u64,
}

/// One app.
#[derive(Debug, Clone, Serialize)]
pub struct AppSummary {
    /// Node.
    pub node: u32,
    /// App id.
    pub app: u32,
    /// Its counters.
    #[serde(flatten)]
    pub stats: AppStats,
}

/// The trace's fingerprint.
#[derive(Debug, Clone, Serialize)]
pub struct TraceSummary {
    /// Lines.
    pub lines: u64,
    /// SHA-256 of all lines, hex.
    pub sha256: String,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub name: Option<String>,
    /// Root seed.
    pub seed: u64,
    /// Virtual time simulated, ns.
    pub virtual_ns: u64,
    /// Node count.
    pub nodes: u32,
    /// Undirected links.
    pub links: usize,
    /// Events processed.
    pub events: u64,
    /// Capsules handed to a running node (one per hop).
    pub capsule_hops: u64,
    /// Capsule datagrams sent.
    pub capsules_sent: u64,
    /// Code-transfer datagrams sent.
    pub code_messages_sent: u64,
    /// Datagrams lost by the network, by reason.
    pub link_drops: BTreeMap<&'static str, u64>,
    /// Modules the shared executor compiled (once per type).
    pub compilations: u64,
    /// Node counters summed over all nodes.
    pub totals: NodeSummary,
    /// Per protocol.
    pub protocols: Vec<ProtocolSummary>,
    /// Per app.
    pub apps: Vec<AppSummary>,
    /// The trace, if it was on.
    pub trace: Option<TraceSummary>,
    /// Per node (when asked for).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_node: Vec<NodeSummary>,
}

impl Report {
    /// The report of `sim` now; `names` labels types; `per_node` adds every node's counters.
    pub fn new<E: Executor>(
        sim: &Sim<E>,
        name: Option<String>,
        names: &BTreeMap<CapsuleType, String>,
        per_node: bool,
    ) -> Report {
        let mut totals = NodeSummary::default();
        let mut nodes = Vec::new();
        let mut protocols: BTreeMap<CapsuleType, ProtocolSummary> = BTreeMap::new();
        for i in 0..sim.topology().len() {
            let Some(n) = sim.node(i) else { continue };
            let s = NodeSummary::of(n);
            totals.add(&s);
            if per_node {
                nodes.push(NodeSummary {
                    node: Some(i),
                    address: Some(sim.topology().address(i).to_string()),
                    up: Some(sim.is_up(i)),
                    ..s
                });
            }
            for (ty, c) in n.protocols().iter() {
                let p = protocols.entry(*ty).or_default();
                p.runs += c.runs;
                p.sent += c.sent;
                p.delivered += c.delivered;
                p.traps += c.traps;
                p.errors += c.errors;
                p.fuel += c.fuel;
                p.nodes += u64::from(c.runs > 0);
            }
        }
        let protocols = protocols
            .into_iter()
            .map(|(ty, p)| ProtocolSummary {
                ty: ty.to_string(),
                name: names.get(&ty).cloned(),
                ..p
            })
            .collect();
        let st = sim.stats();
        Report {
            name,
            seed: sim.config.seed,
            virtual_ns: u64::try_from(sim.now().as_nanos()).unwrap_or(u64::MAX),
            nodes: sim.topology().len(),
            links: sim.topology().edge_count(),
            events: st.events,
            capsule_hops: st.capsule_hops,
            capsules_sent: st.capsules_sent,
            code_messages_sent: st.code_messages_sent,
            link_drops: LinkDrop::ALL
                .iter()
                .map(|r| (r.name(), st.drops(*r)))
                .collect(),
            compilations: sim.shared().compilations,
            totals,
            protocols,
            apps: sim
                .apps()
                .iter()
                .map(|((node, app), s)| AppSummary {
                    node: *node,
                    app: *app,
                    stats: s.clone(),
                })
                .collect(),
            trace: sim.trace().hash_hex().map(|sha256| TraceSummary {
                lines: sim.trace().lines(),
                sha256,
            }),
            per_node: nodes,
        }
    }

    /// Human-readable text.
    pub fn render(&self) -> String {
        let mut o = String::new();
        if let Some(n) = &self.name {
            let _ = writeln!(o, "scenario   {n}");
        }
        let _ = writeln!(
            o,
            "seed       {} (rerun with --seed {} or ANTS_SIM_SEED={} for the same run)",
            self.seed, self.seed, self.seed
        );
        let _ = writeln!(
            o,
            "simulated  {} on {} nodes, {} links: {} events",
            secs(self.virtual_ns),
            self.nodes,
            self.links,
            self.events
        );
        let drops: Vec<String> = self
            .link_drops
            .iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(
            o,
            "network    {} capsule hops; sent {} capsules, {} code messages; lost {}",
            self.capsule_hops,
            self.capsules_sent,
            self.code_messages_sent,
            if drops.is_empty() {
                "none".to_string()
            } else {
                drops.join(", ")
            }
        );
        let _ = writeln!(
            o,
            "compiled   {} module(s), once each for all nodes",
            self.compilations
        );
        let _ = writeln!(o, "protocols  (summed over nodes)");
        for p in &self.protocols {
            let _ = writeln!(
                o,
                "  {:<12} {}  runs {}  sent {}  delivered {}  traps {}  errors {}  on {} nodes",
                p.name.as_deref().unwrap_or("?"),
                &p.ty[..12.min(p.ty.len())],
                p.runs,
                p.sent,
                p.delivered,
                p.traps,
                p.errors,
                p.nodes
            );
        }
        let _ = writeln!(o, "nodes      (totals) {}", node_line(&self.totals));
        for n in &self.per_node {
            let _ = writeln!(
                o,
                "  {:>5} {:<14}{} {}",
                n.node.unwrap_or(0),
                n.address.as_deref().unwrap_or(""),
                if n.up == Some(false) { " DOWN" } else { "" },
                node_line(n)
            );
        }
        if !self.apps.is_empty() {
            let _ = writeln!(o, "apps       (node/app: what it sent and received)");
        }
        for a in self.apps.iter().take(64) {
            let s = &a.stats;
            let mut line = format!("  {:>5}/{:<6}", a.node, a.app);
            if s.injected + s.inject_errors > 0 {
                let _ = write!(
                    line,
                    " injected {} (refused {})",
                    s.injected, s.inject_errors
                );
            }
            let _ = write!(
                line,
                " delivered {} ({} distinct, {} duplicates)",
                s.delivered, s.distinct, s.duplicates
            );
            if let (Some(f), Some(l)) = (s.first_ns, s.last_ns) {
                let _ = write!(line, " from {} to {}", secs(f), secs(l));
            }
            let _ = writeln!(o, "{line}");
        }
        if self.apps.len() > 64 {
            let _ = writeln!(o, "  … {} more apps (see --json)", self.apps.len() - 64);
        }
        match &self.trace {
            Some(t) => {
                let _ = writeln!(o, "trace      sha256 {} ({} lines)", t.sha256, t.lines);
            }
            None => {
                let _ = writeln!(o, "trace      off");
            }
        }
        o
    }
}

fn node_line(n: &NodeSummary) -> String {
    let mut s = format!(
        "in {} runs {} sent {} delivered {} held {} installed {} code-requests {}",
        n.datagrams_in,
        n.runs,
        n.sent,
        n.delivered,
        n.held,
        n.modules_installed,
        n.code_requests_sent
    );
    if !n.drops.is_empty() {
        let d: Vec<String> = n.drops.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = write!(s, " drops: {}", d.join(", "));
    }
    s
}

/// `1.234 s`, `12.5 ms`, `40 us`.
pub fn secs(ns: u64) -> String {
    let ns = ns as f64;
    if ns >= 1e9 {
        format!("{:.3} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else {
        format!("{:.1} us", ns / 1e3)
    }
}
