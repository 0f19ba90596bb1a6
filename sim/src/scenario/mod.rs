//! Scenario files (TOML): topology, links, node settings, apps, faults and duration; see
//! `docs/simulation.md` for the reference and `examples/sim/` for examples.
//!
//! [`Scenario::parse`] checks the text; [`Scenario::capsule_names`] lists the capsules it
//! refers to (shipped names or file paths — the caller resolves them to module bytes, since
//! building needs a toolchain this crate does not know about); [`Scenario::build`] makes a
//! ready [`Sim`] with every app and fault scheduled.

pub mod units;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ants_core::Executor;
use ants_core::rng::SplitMix64;
use ants_wire::{Address, CapsuleType};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::apps::{CodeHandover, Dst, SendPlan};
use crate::config::{SimConfig, derive_seed, domain};
use crate::link::LinkParams;
use crate::routing::RoutingMode;
use crate::sim::{Action, Sim};
use crate::topology::Topology;
use crate::watch::{PROPERTIES, PathWatch, Watch, WatchError};

/// A scenario that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    /// Not valid TOML, or a key the format does not have.
    #[error("{0}")]
    Syntax(String),
    /// A value that does not make sense.
    #[error("{0}")]
    Invalid(String),
    /// A capsule was not resolved by the caller.
    #[error("capsule `{0}` was not provided")]
    MissingCapsule(String),
}

fn invalid(s: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid(s.into())
}

/// A parsed scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A title for reports.
    #[serde(default)]
    pub name: Option<String>,
    /// Root seed (overridden by `--seed` / `ANTS_SIM_SEED`); default 1.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Virtual time to simulate, e.g. `"10s"`.
    pub duration: String,
    /// The network.
    pub topology: TopologySpec,
    /// Defaults of every link.
    #[serde(default)]
    pub links: LinkSpec,
    /// Links with their own parameters.
    #[serde(default)]
    pub link: Vec<LinkOverride>,
    /// Node settings.
    #[serde(default)]
    pub nodes: NodeSpec,
    /// Apps that only receive.
    #[serde(default)]
    pub listen: Vec<ListenSpec>,
    /// Apps that send.
    #[serde(default)]
    pub send: Vec<SendSpec>,
    /// Crashes, restarts, partitions, repairs.
    #[serde(default)]
    pub fault: Vec<FaultSpec>,
    /// Properties checked as the simulation runs (docs/simulation.md, "Watchpoints").
    #[serde(default)]
    pub watch: Vec<WatchSpec>,
    /// Output settings.
    #[serde(default)]
    pub output: OutputSpec,
}

/// `[topology]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologySpec {
    /// `line`, `ring`, `grid`, `tree`, `random` or `explicit`.
    pub kind: String,
    /// Node count (all kinds but `grid`).
    pub nodes: Option<u32>,
    /// Grid columns.
    pub width: Option<u32>,
    /// Grid rows.
    pub height: Option<u32>,
    /// Tree children per node (default 2).
    pub fanout: Option<u32>,
    /// Random graph average degree (default 4).
    pub degree: Option<u32>,
    /// Explicit edges, `[[0, 1], [1, 2]]`.
    #[serde(default)]
    pub edges: Vec<[u32; 2]>,
    /// `auto` (default), `shortest` or `tree`.
    #[serde(default)]
    pub routing: RoutingMode,
}

impl TopologySpec {
    /// The nodes it asks for (`nodes`, or `width × height`), before it is built; `None`
    /// when it does not say.
    pub fn node_count(&self) -> Option<u64> {
        match (self.nodes, self.width, self.height) {
            (Some(n), _, _) => Some(u64::from(n)),
            (None, Some(w), Some(h)) => Some(u64::from(w) * u64::from(h)),
            _ => None,
        }
    }
}

/// `[links]`: every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// One-way delay (default `"1ms"`).
    pub latency: Option<String>,
    /// Extra delay, uniform in `[0, jitter]` (default `"0"`).
    pub jitter: Option<String>,
    /// Loss probability (default 0).
    pub loss: Option<f64>,
    /// Extra loss probability of code-transfer messages only (default 0).
    pub code_loss: Option<f64>,
    /// E.g. `"100Mbit"`; default unlimited.
    pub bandwidth: Option<String>,
    /// Bytes that may wait for a busy link (default `"64KiB"`).
    pub queue: Option<String>,
}

/// `[[link]]`: one link's own parameters (unset fields come from `[links]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkOverride {
    /// The two ends.
    pub between: [u32; 2],
    /// As in `[links]`.
    #[serde(flatten)]
    pub params: LinkSpec,
}

/// `[nodes]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Simulated compile time (default `"1ms"`).
    pub compile_delay: Option<String>,
    /// Restarted nodes keep the modules they had compiled (default true).
    pub keep_code_on_restart: Option<bool>,
    /// Code cache per node (default `"16MiB"`).
    pub code_cache: Option<String>,
    /// Capsules held per type while its code loads (default 64).
    pub pending_per_type: Option<usize>,
    /// Soft-store bytes per node (default `"16MiB"`).
    pub store: Option<String>,
    /// `"per-node"` (default: each node's own wasm instances, as on a real network) or
    /// `"shared"` (one instance per type for every node: faster, for capsules that keep
    /// nothing between runs).
    pub instances: Option<String>,
}

/// `[[watch]]`: a property checked as the simulation runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchSpec {
    /// `"no-duplicate-delivery"`, `"max-held"`, `"max-store-bytes"` or `"store-path"`.
    pub property: String,
    /// `max-held`: the most capsules a node may hold waiting for their code;
    /// `max-store-bytes`: the most bytes a node's soft-store may hold.
    pub limit: Option<u64>,
    /// `store-path`: the capsule whose soft-store entries these are.
    pub capsule: Option<String>,
    /// `store-path`: the key, as header fields (`"str:g u32:7"`).
    pub key: Option<String>,
    /// `store-path`: where the routes start (a selection, as `[[send]] node`).
    pub from: Option<NodeSel>,
    /// `store-path`: where they end.
    pub to: Option<u32>,
    /// `store-path`: when the property must hold.
    pub at: Option<String>,
}

impl WatchSpec {
    fn is_path(&self) -> bool {
        self.property == "store-path"
    }

    /// Whether it gives a key that only `store-path` takes.
    fn has_path_keys(&self) -> bool {
        self.capsule.is_some()
            || self.key.is_some()
            || self.from.is_some()
            || self.to.is_some()
            || self.at.is_some()
    }
}

/// `[[listen]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSpec {
    /// Node(s): a number, a list, `"all"` or `"random:K"`.
    pub node: NodeSel,
    /// App id.
    pub app: u32,
}

/// Which nodes an entry applies to.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NodeSel {
    /// One node.
    One(u32),
    /// Several.
    Many(Vec<u32>),
    /// `"all"` or `"random:K"`.
    Named(String),
}

/// Where an app sends.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DstSpec {
    /// A node.
    Node(u32),
    /// `"self"`, `"random"` or an address.
    Named(String),
}

/// `[[send]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendSpec {
    /// Node(s) the app runs on (one app per node).
    pub node: NodeSel,
    /// App id (default 1).
    #[serde(default = "one")]
    pub app: u32,
    /// A shipped capsule (`"forward"`) or a path to a `.wasm` / `.wat` file.
    pub capsule: String,
    /// Destination (default `"self"`).
    pub dst: Option<DstSpec>,
    /// Resource budget (default 64).
    pub resource: Option<u16>,
    /// Header fields, e.g. `"u8:2 u8:0 u16:0 u32:7"`.
    #[serde(default)]
    pub header: String,
    /// Payload fields, e.g. `"u32:seq"`.
    #[serde(default)]
    pub payload: String,
    /// First send (default `"0"`).
    pub at: Option<String>,
    /// Capsules (default 1, or unlimited when `until` is set).
    pub count: Option<u64>,
    /// Gap between capsules (required when more than one).
    pub every: Option<String>,
    /// No sends from this time on.
    pub until: Option<String>,
    /// `auto` (hand the module over first and after restarts of the node) or `never`.
    pub code: Option<String>,
}

fn one() -> u32 {
    1
}

/// `[[fault]]`: `at` plus exactly one of the rest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// When.
    pub at: String,
    /// Crash this node.
    pub crash: Option<u32>,
    /// Restart this node.
    pub restart: Option<u32>,
    /// Take this link down.
    pub partition: Option<[u32; 2]>,
    /// Bring this link back.
    pub repair: Option<[u32; 2]>,
}

/// `[output]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Hash (and with `--trace`, write) the event trace (default true). Off is faster.
    #[serde(default = "yes")]
    pub trace: bool,
}

impl Default for OutputSpec {
    fn default() -> Self {
        OutputSpec { trace: true }
    }
}

fn yes() -> bool {
    true
}

impl Scenario {
    /// Parse a scenario; `origin` names it in errors (e.g. the file path).
    pub fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario =
            toml::from_str(text).map_err(|e| ScenarioError::Syntax(format!("{origin}: {e}")))?;
        units::duration(&s.duration).map_err(|e| invalid(format!("{origin}: duration: {e}")))?;
        Ok(s)
    }

    /// Virtual time to simulate.
    pub fn duration(&self) -> Duration {
        units::duration(&self.duration).unwrap_or_default()
    }

    /// Capsules referred to by `[[send]]`, each once.
    pub fn capsule_names(&self) -> BTreeSet<String> {
        let watched = self
            .watch
            .iter()
            .filter(|w| w.is_path())
            .filter_map(|w| w.capsule.clone());
        self.send
            .iter()
            .map(|s| s.capsule.clone())
            .chain(watched)
            .collect()
    }

    /// The topology (generated with `seed` for random graphs).
    pub fn topology(&self, seed: u64) -> Result<Topology, ScenarioError> {
        let t = &self.topology;
        let need = |v: Option<u32>, what: &str| {
            v.ok_or_else(|| invalid(format!("[topology] kind = \"{}\" needs `{what}`", t.kind)))
        };
        let topo = match t.kind.as_str() {
            "line" => Topology::line(need(t.nodes, "nodes")?),
            "ring" => Topology::ring(need(t.nodes, "nodes")?),
            "grid" => Topology::grid(need(t.width, "width")?, need(t.height, "height")?),
            "tree" => Topology::tree(need(t.nodes, "nodes")?, t.fanout.unwrap_or(2)),
            "random" => Topology::random(
                need(t.nodes, "nodes")?,
                t.degree.unwrap_or(4),
                derive_seed(seed, domain::TOPOLOGY, 0),
            ),
            "explicit" => {
                let edges: Vec<(u32, u32)> = t.edges.iter().map(|e| (e[0], e[1])).collect();
                Topology::explicit(need(t.nodes, "nodes")?, &edges)
            }
            other => {
                return Err(invalid(format!(
                    "[topology] kind = \"{other}\": use line, ring, grid, tree, random or explicit"
                )));
            }
        };
        topo.map_err(|e| invalid(format!("[topology]: {e}")))
    }

    /// The simulator configuration (no apps, no faults) for `seed`.
    pub fn config(&self, seed: u64) -> Result<SimConfig, ScenarioError> {
        let mut c = SimConfig {
            seed,
            routing: self.topology.routing,
            link: link_params(&self.links, &LinkParams::default(), "[links]")?,
            delivery_log: 0,
            ..SimConfig::default()
        };
        let n = &self.nodes;
        if let Some(d) = &n.compile_delay {
            c.compile_delay =
                units::duration(d).map_err(|e| invalid(format!("[nodes] compile_delay: {e}")))?;
        }
        if let Some(k) = n.keep_code_on_restart {
            c.keep_code_on_restart = k;
        }
        match n.instances.as_deref() {
            None | Some("per-node") => c.instance_per_node = true,
            Some("shared") => c.instance_per_node = false,
            Some(other) => {
                return Err(invalid(format!(
                    "[nodes] instances: {other:?}: expected \"per-node\" or \"shared\""
                )));
            }
        }
        if let Some(s) = &n.code_cache {
            let b = units::size(s).map_err(|e| invalid(format!("[nodes] code_cache: {e}")))?;
            c.node.code_cache_bytes = usize::try_from(b).unwrap_or(usize::MAX);
        }
        if let Some(s) = &n.store {
            let b = units::size(s).map_err(|e| invalid(format!("[nodes] store: {e}")))?;
            c.node.store.max_bytes = usize::try_from(b).unwrap_or(usize::MAX);
        }
        if let Some(p) = n.pending_per_type {
            c.node.loader.max_pending_per_type = p;
        }
        Ok(c)
    }

    /// The `[[watch]]` entries as properties, or what is wrong with one.
    pub fn watches(&self) -> Result<Vec<Watch>, ScenarioError> {
        self.watch
            .iter()
            .enumerate()
            .filter(|(_, w)| !w.is_path())
            .map(|(k, w)| {
                let what = format!("[[watch]] #{} ({})", k + 1, w.property);
                if w.has_path_keys() {
                    return Err(invalid(format!(
                        "{what}: capsule, key, from, to and at are for \"store-path\""
                    )));
                }
                Watch::from_parts(&w.property, w.limit).map_err(|e| match e {
                    WatchError::Unknown(p) => invalid(format!(
                        "{what}: unknown property {p:?} (known: {PROPERTIES}, \"store-path\")"
                    )),
                    e => invalid(format!("{what}: {e}")),
                })
            })
            .collect()
    }

    /// A ready simulation: topology, links, apps and faults, with `capsules` mapping every
    /// name of [`Scenario::capsule_names`] to its module bytes. Returns the simulation and
    /// the capsule name of each type (for reports).
    pub fn build<E: Executor>(
        &self,
        seed: u64,
        exec: E,
        capsules: &BTreeMap<String, Vec<u8>>,
    ) -> Result<(Sim<E>, BTreeMap<CapsuleType, String>), ScenarioError> {
        let watches = self.watches()?;
        let topo = self.topology(seed)?;
        let config = self.config(seed)?;
        let n = topo.len();
        let mut sim = Sim::new(topo, config, exec);
        sim.set_watches(watches);
        for (k, o) in self.link.iter().enumerate() {
            let [a, b] = o.between;
            let what = format!("[[link]] #{} between = [{a}, {b}]", k + 1);
            let p = link_params(&o.params, &sim.config.link, &what)?;
            if !sim.set_link_params(a, b, p) {
                return Err(invalid(format!("{what}: there is no such link")));
            }
        }
        for (k, l) in self.listen.iter().enumerate() {
            let what = format!("[[listen]] #{}", k + 1);
            for i in select(&l.node, n, seed, &what)? {
                sim.register_app(i, l.app);
            }
        }
        let mut names = BTreeMap::new();
        let mut code: BTreeMap<String, (CapsuleType, Arc<[u8]>)> = BTreeMap::new();
        for name in self.capsule_names() {
            let bytes = capsules
                .get(&name)
                .ok_or_else(|| ScenarioError::MissingCapsule(name.clone()))?;
            let ty = CapsuleType(Sha256::digest(bytes).into());
            names.insert(ty, name.clone());
            code.insert(name, (ty, Arc::from(bytes.as_slice())));
        }
        for (k, s) in self.send.iter().enumerate() {
            let what = format!("[[send]] #{} ({})", k + 1, s.capsule);
            let (ty, bytes) = code
                .get(&s.capsule)
                .cloned()
                .ok_or_else(|| ScenarioError::MissingCapsule(s.capsule.clone()))?;
            for i in select(&s.node, n, seed, &what)? {
                let (at, plan) = send_plan(s, i, sim.topology(), ty, bytes.clone(), &what)?;
                sim.register_app(i, s.app);
                sim.schedule(at, Action::Send(Box::new(plan)));
            }
        }
        for (k, f) in self.fault.iter().enumerate() {
            let what = format!("[[fault]] #{}", k + 1);
            let at = units::duration(&f.at).map_err(|e| invalid(format!("{what} at: {e}")))?;
            sim.schedule(at, fault_action(f, &sim, &what)?);
        }
        for (k, w) in self.watch.iter().enumerate().filter(|(_, w)| w.is_path()) {
            let what = format!("[[watch]] #{} (store-path)", k + 1);
            let w = path_watch(w, &sim, seed, &code, &what)?;
            sim.watch_path(w);
        }
        Ok((sim, names))
    }
}

fn link_params(s: &LinkSpec, base: &LinkParams, what: &str) -> Result<LinkParams, ScenarioError> {
    let mut p = *base;
    let dur = |v: &str, key: &str| {
        units::duration(v)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .map_err(|e| invalid(format!("{what} {key}: {e}")))
    };
    if let Some(v) = &s.latency {
        p.latency_ns = dur(v, "latency")?;
    }
    if let Some(v) = &s.jitter {
        p.jitter_ns = dur(v, "jitter")?;
    }
    for (key, v, field) in [
        ("loss", s.loss, &mut p.loss),
        ("code_loss", s.code_loss, &mut p.code_loss),
    ] {
        if let Some(l) = v {
            if !(0.0..=1.0).contains(&l) {
                return Err(invalid(format!(
                    "{what} {key} = {l}: must be between 0 and 1"
                )));
            }
            *field = l;
        }
    }
    if let Some(v) = &s.bandwidth {
        p.bandwidth_bps =
            units::bandwidth(v).map_err(|e| invalid(format!("{what} bandwidth: {e}")))?;
    }
    if let Some(v) = &s.queue {
        p.queue_bytes = units::size(v).map_err(|e| invalid(format!("{what} queue: {e}")))?;
    }
    Ok(p)
}

/// A `store-path` entry, checked against the built topology and capsules.
fn path_watch<E: ants_core::Executor>(
    w: &WatchSpec,
    sim: &Sim<E>,
    seed: u64,
    code: &BTreeMap<String, (CapsuleType, Arc<[u8]>)>,
    what: &str,
) -> Result<PathWatch, ScenarioError> {
    if w.limit.is_some() {
        return Err(invalid(format!("{what}: takes no `limit`")));
    }
    let Some(capsule) = &w.capsule else {
        return Err(invalid(format!(
            "{what}: needs `capsule`, the protocol whose soft-store holds the key"
        )));
    };
    let (ty, _) = code
        .get(capsule)
        .ok_or_else(|| ScenarioError::MissingCapsule(capsule.clone()))?;
    let key = w
        .key
        .as_deref()
        .ok_or_else(|| invalid(format!("{what}: needs `key`, as header fields")))?;
    let key =
        units::template(key, sim.topology()).map_err(|e| invalid(format!("{what} key: {e}")))?;
    let mut bytes = Vec::new();
    key.render(0, &mut bytes);
    if bytes.is_empty() {
        return Err(invalid(format!("{what} key: no bytes")));
    }
    let from = w
        .from
        .as_ref()
        .ok_or_else(|| invalid(format!("{what}: needs `from`, where the routes start")))?;
    let n = sim.topology().len();
    let from = select(from, n, seed, what)?;
    let to =
        w.to.ok_or_else(|| invalid(format!("{what}: needs `to`, where the routes end")))?;
    if to >= n {
        return Err(invalid(format!(
            "{what}: to = {to}: no such node (the topology has {n} nodes, 0..{n})"
        )));
    }
    let at =
        w.at.as_deref()
            .ok_or_else(|| invalid(format!("{what}: needs `at`, when the property must hold")))?;
    let at = units::duration(at).map_err(|e| invalid(format!("{what} at: {e}")))?;
    Ok(PathWatch {
        ty: *ty,
        capsule: capsule.clone(),
        key: bytes,
        from,
        to,
        at,
    })
}

/// The nodes a selection names, in ascending order.
fn select(sel: &NodeSel, n: u32, seed: u64, what: &str) -> Result<Vec<u32>, ScenarioError> {
    let check = |i: u32| {
        if i < n {
            Ok(i)
        } else {
            Err(invalid(format!(
                "{what}: node {i} does not exist (the topology has {n} nodes, 0..{n})"
            )))
        }
    };
    match sel {
        NodeSel::One(i) => Ok(vec![check(*i)?]),
        NodeSel::Many(v) => v.iter().map(|i| check(*i)).collect(),
        NodeSel::Named(s) if s == "all" => Ok((0..n).collect()),
        NodeSel::Named(s) => {
            let k: u32 = s
                .strip_prefix("random:")
                .and_then(|k| k.parse().ok())
                .ok_or_else(|| {
                    invalid(format!(
                        "{what}: node = \"{s}\": use a number, a list, \"all\" or \"random:K\""
                    ))
                })?;
            if k > n {
                return Err(invalid(format!("{what}: random:{k} but only {n} nodes")));
            }
            // A partial Fisher-Yates over 0..n, seeded by the entry.
            let mut rng = SplitMix64::new(derive_seed(seed, domain::APP, u64::from(k) ^ 0xA11));
            let mut all: Vec<u32> = (0..n).collect();
            for j in 0..k as usize {
                let r = j + (rng.next_u64() % (n as u64 - j as u64)) as usize;
                all.swap(j, r);
            }
            let mut chosen = all[..k as usize].to_vec();
            chosen.sort_unstable();
            Ok(chosen)
        }
    }
}

fn send_plan(
    s: &SendSpec,
    node: u32,
    topo: &Topology,
    ty: CapsuleType,
    code: Arc<[u8]>,
    what: &str,
) -> Result<(Duration, SendPlan), ScenarioError> {
    let n = topo.len();
    let dur = |v: &Option<String>, key: &str| {
        v.as_deref()
            .map(units::duration)
            .transpose()
            .map_err(|e| invalid(format!("{what} {key}: {e}")))
    };
    let at = dur(&s.at, "at")?.unwrap_or_default();
    let every = dur(&s.every, "every")?;
    let until = dur(&s.until, "until")?;
    let count = s
        .count
        .unwrap_or(if until.is_some() { u64::MAX } else { 1 });
    if count > 1 && every.is_none_or(|e| e.is_zero()) {
        return Err(invalid(format!(
            "{what}: several capsules need `every` (the gap between them), e.g. every = \"1ms\""
        )));
    }
    let dst = match &s.dst {
        None => Dst::Address(topo.address(node)),
        Some(DstSpec::Node(j)) if *j < n => Dst::Address(topo.address(*j)),
        Some(DstSpec::Node(j)) => {
            return Err(invalid(format!("{what}: dst = {j}: no such node (0..{n})")));
        }
        Some(DstSpec::Named(v)) if v == "self" => Dst::Address(topo.address(node)),
        Some(DstSpec::Named(v)) if v == "random" => Dst::RandomNode,
        Some(DstSpec::Named(v)) => Dst::Address(v.parse::<Address>().map_err(|_| {
            invalid(format!(
                "{what}: dst = \"{v}\": use a node number, \"self\", \"random\" or an address"
            ))
        })?),
    };
    let handover = match s.code.as_deref() {
        None | Some("auto") => CodeHandover::Auto,
        Some("never") => CodeHandover::Never,
        Some(o) => {
            return Err(invalid(format!(
                "{what}: code = \"{o}\": use auto or never"
            )));
        }
    };
    let header =
        units::template(&s.header, topo).map_err(|e| invalid(format!("{what} header: {e}")))?;
    let payload =
        units::template(&s.payload, topo).map_err(|e| invalid(format!("{what} payload: {e}")))?;
    let mut plan = SendPlan::once(node, s.app, ty, Some(code), topo.address(node));
    plan.dst = dst;
    plan.handover = handover;
    plan.resource = s.resource.unwrap_or(64);
    plan.header = header;
    plan.payload = payload;
    plan.count = count;
    plan.interval = every.unwrap_or_default();
    plan.until = until;
    Ok((at, plan))
}

fn fault_action<E: Executor>(
    f: &FaultSpec,
    sim: &Sim<E>,
    what: &str,
) -> Result<Action, ScenarioError> {
    let n = sim.topology().len();
    let node = |i: u32| {
        if i < n {
            Ok(i)
        } else {
            Err(invalid(format!("{what}: node {i} does not exist (0..{n})")))
        }
    };
    let link = |[a, b]: [u32; 2]| {
        if sim.link_up(a, b).is_some() {
            Ok((a, b))
        } else {
            Err(invalid(format!(
                "{what}: there is no link between {a} and {b}"
            )))
        }
    };
    let mut actions = Vec::new();
    if let Some(i) = f.crash {
        actions.push(Action::Crash(node(i)?));
    }
    if let Some(i) = f.restart {
        actions.push(Action::Restart(node(i)?));
    }
    if let Some(l) = f.partition {
        let (a, b) = link(l)?;
        actions.push(Action::Partition(a, b));
    }
    if let Some(l) = f.repair {
        let (a, b) = link(l)?;
        actions.push(Action::Repair(a, b));
    }
    match actions.len() {
        1 => Ok(actions.remove(0)),
        _ => Err(invalid(format!(
            "{what}: give exactly one of crash, restart, partition, repair"
        ))),
    }
}
