//! [`Map`]: what the picture shows — nodes with their health and traffic, links with the
//! traffic of each direction — computed from counters, never from the picture.
//!
//! From running nodes ([`Map::from_polls`]), two polls `dt` seconds apart:
//! - a node's *capsules/s* is the rise of its `capsules_in + injected` over `dt`, its
//!   *drops/s* the rise of every drop counter (`node.drops`, `udp_dropped`,
//!   `handoff_dropped`);
//! - health: [`Health::Unreachable`] when its app socket does not answer,
//!   [`Health::Degraded`] when drops, traps or quarantines rose between the polls,
//!   [`Health::Up`] otherwise; [`Health::Unknown`] for a node named only as someone's
//!   neighbour (or configured without an app socket), which is never asked;
//! - a link `a — b` exists when either side lists the other as a neighbour. The rate of
//!   `a → b` is measured at `b`: the rise of the datagrams `b` received from `a` (capsules
//!   and code transfer) over `dt`. A link listed by one side only is *one-sided*: the other
//!   side drops what comes over it.
//!
//! From a simulation ([`Map::from_sim`]): totals at the end of the run instead of rates —
//! capsules per directed link, each node's capsules and drops; a node down at the end is
//! unreachable.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use super::dir::NodeSource;

/// How a node is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Answers, and nothing bad rose since the last poll.
    Up,
    /// Answers, but drops, traps or quarantines rose since the last poll.
    Degraded,
    /// Its app socket does not answer (or, simulated: down at the end of the run).
    Unreachable,
    /// Not asked: only named as a neighbour, or configured without an app socket.
    Unknown,
}

impl Health {
    /// Every health, in legend order.
    pub const ALL: [Health; 4] = [
        Health::Up,
        Health::Degraded,
        Health::Unreachable,
        Health::Unknown,
    ];

    /// The word for it.
    pub fn name(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Degraded => "degraded",
            Health::Unreachable => "unreachable",
            Health::Unknown => "unknown",
        }
    }
}

/// Whether numbers are rates (live) or totals (the end of a simulated run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Per second, between two polls.
    PerSecond,
    /// Totals since the start (simulation).
    Total,
}

/// One node on the map.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapNode {
    /// Its active address (or, until it has answered once, its app socket's path).
    pub address: String,
    /// How it is doing.
    pub health: Health,
    /// Why (reasons for degraded or unreachable, a restart, where it came from), one line
    /// each.
    pub detail: Vec<String>,
    /// Seconds since it started, when it answered.
    pub uptime_s: Option<f64>,
    /// Capsules received and injected (per second, or in total).
    pub capsules: Option<f64>,
    /// Datagrams dropped (per second, or in total).
    pub drops: Option<f64>,
}

/// One direction of a link.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Flow {
    /// Whether the sender lists the receiver as a neighbour (`None`: not known — the sender
    /// never answered and no config was given).
    pub listed: Option<bool>,
    /// Datagrams per second (live) or capsules in total (simulation), as counted by the
    /// receiver; `None` when the receiver did not answer both polls or does not list the
    /// sender.
    pub value: Option<f64>,
    /// Seconds since the receiver last heard from the sender, when it answered.
    pub heard_s_ago: Option<f64>,
}

/// A link between two nodes (indices into [`Map::nodes`], `a < b`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapLink {
    /// One end.
    pub a: usize,
    /// The other end.
    pub b: usize,
    /// `a → b`.
    pub a_to_b: Flow,
    /// `b → a`.
    pub b_to_a: Flow,
}

impl MapLink {
    /// Listed by one side and known not to be listed by the other.
    pub fn one_sided(&self) -> bool {
        self.a_to_b.listed == Some(false) || self.b_to_a.listed == Some(false)
    }
}

/// The picture's contents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Map {
    /// A heading.
    pub title: String,
    /// When and how the numbers were taken.
    pub subtitle: String,
    /// Rates or totals.
    pub unit: Unit,
    /// The nodes: those asked, in the order given, then the ones only named as neighbours,
    /// by address.
    pub nodes: Vec<MapNode>,
    /// The links, sorted by `(a, b)`.
    pub links: Vec<MapLink>,
}

/// One round of asking every [`NodeSource`] for its counters (`ants status --json`).
#[derive(Debug, Clone)]
pub struct Poll {
    /// When the round was taken.
    pub at: Instant,
    /// Per source, in order: the counters, or why the node did not answer (`None`: not
    /// asked, it has no app socket).
    pub answers: Vec<Option<Result<Value, String>>>,
}

/// Source `k`'s counters in `poll`, if it answered.
fn answer(poll: Option<&Poll>, k: usize) -> Option<&Value> {
    poll?.answers.get(k)?.as_ref()?.as_ref().ok()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Sum of every number in a JSON object (drop counters by reason).
fn sum_object(v: &Value) -> u64 {
    v.as_object().map_or(0, |m| m.values().map(u).sum())
}

/// Every datagram a node dropped, as one counter.
fn drops_total(s: &Value) -> u64 {
    sum_object(&s["node"]["drops"]) + u(&s["udp_dropped"]) + u(&s["handoff_dropped"])
}

fn traps_total(s: &Value) -> u64 {
    s["protocols"]
        .as_object()
        .map_or(0, |m| m.values().map(|c| u(&c["traps"])).sum())
}

/// The neighbours a node's counters list.
fn listed_neighbours(s: &Value) -> Option<Vec<String>> {
    let list = s["neighbours"].as_array()?;
    Some(
        list.iter()
            .filter_map(|n| n["address"].as_str().map(str::to_owned))
            .collect(),
    )
}

/// The entry for neighbour `address` in a node's counters.
fn neighbour_entry<'a>(s: &'a Value, address: &str) -> Option<&'a Value> {
    s["neighbours"]
        .as_array()?
        .iter()
        .find(|n| n["address"].as_str() == Some(address))
}

/// `n` with its unit: `12/s`, `3.4k/s`, or a total `1.2M`.
pub fn show(n: f64, unit: Unit) -> String {
    let v = if n >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.0}k", n / 1e3)
    } else if n >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else if n >= 10.0 || n == 0.0 || unit == Unit::Total {
        format!("{n:.0}")
    } else {
        format!("{n:.1}")
    };
    match unit {
        Unit::PerSecond => format!("{v}/s"),
        Unit::Total => v,
    }
}

/// Builds a map: node indices by address, and the links' known sides.
struct Builder {
    nodes: Vec<MapNode>,
    index: BTreeMap<String, usize>,
    /// Per node: the neighbours it lists, when known.
    lists: Vec<Option<Vec<String>>>,
}

impl Builder {
    fn node(&mut self, address: &str, health: Health) -> usize {
        if let Some(&i) = self.index.get(address) {
            return i;
        }
        self.nodes.push(MapNode {
            address: address.to_owned(),
            health,
            detail: Vec::new(),
            uptime_s: None,
            capsules: None,
            drops: None,
        });
        self.lists.push(None);
        self.index.insert(address.to_owned(), self.nodes.len() - 1);
        self.nodes.len() - 1
    }

    /// Add the neighbours every node lists (nodes not seen yet become [`Health::Unknown`],
    /// by address), and one link per listed pair with each side's `listed` filled in.
    fn links(&mut self) -> Vec<MapLink> {
        let mut extra: Vec<String> = self
            .lists
            .iter()
            .flatten()
            .flatten()
            .filter(|a| !self.index.contains_key(*a))
            .cloned()
            .collect();
        extra.sort();
        extra.dedup();
        for a in extra {
            let i = self.node(&a, Health::Unknown);
            self.nodes[i]
                .detail
                .push("not asked: only named as a neighbour".to_owned());
        }
        let mut pairs = std::collections::BTreeSet::new();
        for (i, list) in self.lists.iter().enumerate() {
            for nb in list.iter().flatten() {
                if let Some(&j) = self.index.get(nb)
                    && i != j
                {
                    pairs.insert((i.min(j), i.max(j)));
                }
            }
        }
        let lists = |i: usize, j: usize| -> Option<bool> {
            let other = &self.nodes[j].address;
            self.lists[i].as_ref().map(|l| l.contains(other))
        };
        pairs
            .into_iter()
            .map(|(a, b)| MapLink {
                a,
                b,
                a_to_b: Flow {
                    listed: lists(a, b),
                    ..Flow::default()
                },
                b_to_a: Flow {
                    listed: lists(b, a),
                    ..Flow::default()
                },
            })
            .collect()
    }
}

impl Map {
    /// The map of `sources` from the poll `cur`, with rates since `prev` (none on the first
    /// poll). `prev` and `cur` answer for the same sources, in the same order.
    pub fn from_polls(sources: &[NodeSource], prev: Option<&Poll>, cur: &Poll) -> Map {
        let dt = prev.map(|p| {
            cur.at
                .saturating_duration_since(p.at)
                .as_secs_f64()
                .max(1e-3)
        });
        let mut b = Builder {
            nodes: Vec::new(),
            index: BTreeMap::new(),
            lists: Vec::new(),
        };
        // The node of each source (None: two sources turned out to be one node).
        let mut of_source = Vec::with_capacity(sources.len());
        for (k, src) in sources.iter().enumerate() {
            let now = answer(Some(cur), k);
            let known = now.or(answer(prev, k));
            let address = known
                .and_then(|s| s["address"].as_str().map(str::to_owned))
                .unwrap_or_else(|| src.label());
            if b.index.contains_key(&address) {
                of_source.push(None);
                continue;
            }
            let i = b.node(&address, Health::Up);
            of_source.push(Some(i));
            b.lists[i] = known.and_then(listed_neighbours).or(src.neighbours.clone());
            let node = &mut b.nodes[i];
            match cur.answers.get(k) {
                None | Some(None) => {
                    node.health = Health::Unknown;
                    node.detail
                        .push("not asked: no app_socket in its config".to_owned());
                }
                Some(Some(Err(e))) => {
                    node.health = Health::Unreachable;
                    node.detail.push(format!("unreachable: {e}"));
                }
                Some(Some(Ok(s))) => {
                    node.uptime_s = s["uptime_s"].as_f64();
                    if let (Some(p), Some(dt)) = (answer(prev, k), dt) {
                        rates(node, p, s, dt);
                    }
                }
            }
            if let Some(f) = &src.file {
                node.detail.push(format!("config {}", f.display()));
            }
        }
        let mut links = b.links();
        for l in &mut links {
            let (a, bb) = (l.a, l.b);
            let (addr_a, addr_b) = (b.nodes[a].address.clone(), b.nodes[bb].address.clone());
            // Each direction is counted by its receiver.
            for (flow, receiver, sender) in
                [(&mut l.a_to_b, bb, &addr_a), (&mut l.b_to_a, a, &addr_b)]
            {
                let Some(k) = of_source.iter().position(|o| *o == Some(receiver)) else {
                    continue;
                };
                let Some(now) = answer(Some(cur), k).and_then(|s| neighbour_entry(s, sender))
                else {
                    continue;
                };
                flow.heard_s_ago = now["last_heard_s"].as_f64();
                let before = answer(prev, k).and_then(|s| neighbour_entry(s, sender));
                if let (Some(before), Some(dt)) = (before, dt) {
                    let d = u(&now["datagrams"]).saturating_sub(u(&before["datagrams"]));
                    flow.value = Some(d as f64 / dt);
                }
            }
        }
        let asked = of_source.iter().flatten().count();
        let answered = cur.answers.iter().flatten().filter(|a| a.is_ok()).count();
        Map {
            title: "ants map".to_owned(),
            subtitle: format!(
                "{answered} of {asked} nodes answered; rates over {}",
                dt.map_or_else(|| "- (first poll)".to_owned(), |d| format!("{d:.1} s"))
            ),
            unit: Unit::PerSecond,
            nodes: b.nodes,
            links,
        }
    }

    /// The map of a simulated run as it stands: every node of the topology, every link with
    /// the capsules that crossed it in each direction (when [`ants_sim::Sim::count_link_capsules`]
    /// was called before the run; otherwise links without numbers).
    pub fn from_sim<E: ants_core::Executor>(sim: &ants_sim::Sim<E>, title: &str) -> Map {
        let topo = sim.topology();
        let mut nodes = Vec::with_capacity(topo.len() as usize);
        for i in 0..topo.len() {
            let mut node = MapNode {
                address: topo.address(i).to_string(),
                health: Health::Up,
                detail: vec![format!("node {i}")],
                uptime_s: None,
                capsules: None,
                drops: None,
            };
            if !sim.is_up(i) {
                node.health = Health::Unreachable;
                node.detail.push("down at the end of the run".to_owned());
            }
            if let Some(n) = sim.node(i) {
                let c = n.counters();
                node.capsules = Some((c.capsules_in + c.injected) as f64);
                let drops: Vec<(&str, u64)> = ants_core::node::DropReason::ALL
                    .iter()
                    .map(|r| (r.name(), c.drops_of(*r)))
                    .filter(|(_, n)| *n > 0)
                    .collect();
                let total: u64 = drops.iter().map(|(_, n)| n).sum();
                node.drops = Some(total as f64);
                if total > 0 && node.health == Health::Up {
                    node.health = Health::Degraded;
                }
                if total > 0 {
                    let each: Vec<String> = drops.iter().map(|(r, n)| format!("{r} {n}")).collect();
                    node.detail.push(format!("drops: {}", each.join(", ")));
                }
            }
            nodes.push(node);
        }
        let flow = |from: u32, to: u32| Flow {
            listed: Some(true),
            value: sim.link_capsules(from, to).map(|n| n as f64),
            heard_s_ago: None,
        };
        let links = topo
            .directed_edges()
            .filter(|(a, b)| a < b)
            .map(|(a, b)| MapLink {
                a: a as usize,
                b: b as usize,
                a_to_b: flow(a, b),
                b_to_a: flow(b, a),
            })
            .collect();
        Map {
            title: title.to_owned(),
            subtitle: format!(
                "after {:.3} s virtual: capsules per link, node totals",
                sim.now().as_secs_f64()
            ),
            unit: Unit::Total,
            nodes,
            links,
        }
    }

    /// How many nodes have each health.
    pub fn census(&self) -> BTreeMap<Health, usize> {
        let mut c = BTreeMap::new();
        for n in &self.nodes {
            *c.entry(n.health).or_default() += 1;
        }
        c
    }
}

/// Fill in a node's rates between two answers `dt` seconds apart, and degrade it when drops,
/// traps or quarantines rose.
fn rates(node: &mut MapNode, prev: &Value, cur: &Value, dt: f64) {
    let restarted = match (prev["uptime_s"].as_f64(), cur["uptime_s"].as_f64()) {
        (Some(a), Some(b)) => b < a,
        _ => false,
    };
    if restarted {
        node.detail.push("restarted since the last poll".to_owned());
        return;
    }
    let rise = |f: &dyn Fn(&Value) -> u64| f(cur).saturating_sub(f(prev));
    let capsules = rise(&|s| u(&s["node"]["capsules_in"]) + u(&s["node"]["injected"]));
    node.capsules = Some(capsules as f64 / dt);
    let drops = rise(&drops_total);
    node.drops = Some(drops as f64 / dt);
    if drops > 0 {
        let mut by_reason: Vec<(String, u64)> = cur["node"]["drops"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(r, n)| (r.clone(), u(n).saturating_sub(u(&prev["node"]["drops"][r]))))
            .chain(
                ["udp_dropped", "handoff_dropped"]
                    .map(|k| (k.to_owned(), u(&cur[k]).saturating_sub(u(&prev[k])))),
            )
            .filter(|(_, n)| *n > 0)
            .collect();
        by_reason.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let each: Vec<String> = by_reason.iter().map(|(r, n)| format!("{r} {n}")).collect();
        node.detail
            .push(format!("drops rising: {}", each.join(", ")));
    }
    let traps = rise(&traps_total);
    if traps > 0 {
        node.detail.push(format!("traps rising: {traps}"));
    }
    let quarantines = rise(&|s| u(&s["node"]["quarantines"]));
    if quarantines > 0 {
        node.detail
            .push(format!("quarantines rising: {quarantines}"));
    }
    if drops > 0 || traps > 0 || quarantines > 0 {
        node.health = Health::Degraded;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn stats(address: &str, uptime: f64, capsules: u64, nbs: &[(&str, u64)]) -> Value {
        json!({
            "address": address,
            "uptime_s": uptime,
            "node": {"capsules_in": capsules, "injected": 0, "drops": {}},
            "neighbours": nbs.iter().map(|(a, n)| json!({"address": a, "datagrams": n,
                "last_heard_s": 0.5})).collect::<Vec<_>>(),
        })
    }

    fn poll(at: Instant, answers: Vec<Option<Result<Value, String>>>) -> Poll {
        Poll { at, answers }
    }

    #[test]
    fn rates_are_counter_rises_over_the_interval_counted_by_the_receiver() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        let sources: Vec<NodeSource> = ["a.sock", "b.sock", "c.sock"]
            .map(NodeSource::socket)
            .into();
        let p0 = poll(
            t0,
            vec![
                Some(Ok(stats("198.18.0.1", 5.0, 0, &[("198.18.0.2", 10)]))),
                Some(Ok(stats(
                    "198.18.0.2",
                    5.0,
                    100,
                    &[("198.18.0.1", 100), ("198.18.0.3", 0)],
                ))),
                Some(Ok(stats("198.18.0.3", 5.0, 0, &[("198.18.0.2", 0)]))),
            ],
        );
        let mut b1 = stats(
            "198.18.0.2",
            7.0,
            300,
            &[("198.18.0.1", 300), ("198.18.0.3", 0)],
        );
        b1["node"]["drops"] = json!({"no-route": 4});
        let p1 = poll(
            t1,
            vec![
                Some(Ok(stats("198.18.0.1", 7.0, 0, &[("198.18.0.2", 10)]))),
                Some(Ok(b1)),
                Some(Err("connection refused".to_owned())),
            ],
        );
        let m = Map::from_polls(&sources, Some(&p0), &p1);
        let names: Vec<&str> = m.nodes.iter().map(|n| n.address.as_str()).collect();
        assert_eq!(names, ["198.18.0.1", "198.18.0.2", "198.18.0.3"]);
        assert_eq!(m.nodes[0].health, Health::Up);
        assert_eq!(m.nodes[1].health, Health::Degraded);
        assert_eq!(m.nodes[1].capsules, Some(100.0));
        assert_eq!(m.nodes[1].drops, Some(2.0));
        assert!(
            m.nodes[1]
                .detail
                .contains(&"drops rising: no-route 4".to_owned())
        );
        assert_eq!(
            m.nodes[2].health,
            Health::Unreachable,
            "answered before, not now"
        );
        assert!(m.nodes[2].detail[0].contains("connection refused"));
        assert_eq!(m.links.len(), 2);
        let ab = &m.links[0];
        assert_eq!((ab.a, ab.b), (0, 1));
        assert_eq!(
            ab.a_to_b.value,
            Some(100.0),
            "b heard 200 datagrams from a in 2 s"
        );
        assert_eq!(ab.b_to_a.value, Some(0.0));
        assert!(!ab.one_sided());
        let bc = &m.links[1];
        assert_eq!(bc.a_to_b.value, None, "c did not answer");
        assert_eq!(bc.b_to_a.value, Some(0.0));
        assert_eq!(bc.b_to_a.listed, Some(true), "from c's last answer");
        assert!(!bc.one_sided());
        assert_eq!(m.subtitle, "2 of 3 nodes answered; rates over 2.0 s");
    }

    #[test]
    fn neighbours_nobody_asked_are_unknown_and_one_sided_links_are_found() {
        let sources = vec![
            NodeSource {
                socket: None,
                address: Some("198.18.0.1".into()),
                neighbours: Some(vec!["198.18.0.2".into()]),
                file: Some("n1.toml".into()),
            },
            NodeSource {
                socket: None,
                address: Some("198.18.0.2".into()),
                neighbours: Some(vec!["198.18.0.9".into()]),
                file: Some("n2.toml".into()),
            },
        ];
        let p = poll(Instant::now(), vec![None, None]);
        let m = Map::from_polls(&sources, None, &p);
        let names: Vec<&str> = m.nodes.iter().map(|n| n.address.as_str()).collect();
        assert_eq!(names, ["198.18.0.1", "198.18.0.2", "198.18.0.9"]);
        assert!(m.nodes.iter().all(|n| n.health == Health::Unknown));
        assert_eq!(m.links.len(), 2);
        assert!(m.links[0].one_sided(), "n2 does not list n1");
        assert_eq!(m.links[1].b_to_a.listed, None, "n9 is not known");
        assert!(m.nodes[0].detail.contains(&"config n1.toml".to_owned()));
    }

    #[test]
    fn a_restart_is_noted_not_counted_as_negative_traffic() {
        let t0 = Instant::now();
        let sources = vec![NodeSource::socket("a.sock")];
        let p0 = poll(t0, vec![Some(Ok(stats("198.18.0.1", 50.0, 900, &[])))]);
        let p1 = poll(
            t0 + Duration::from_secs(1),
            vec![Some(Ok(stats("198.18.0.1", 0.5, 3, &[])))],
        );
        let m = Map::from_polls(&sources, Some(&p0), &p1);
        assert_eq!(m.nodes[0].capsules, None);
        assert_eq!(m.nodes[0].health, Health::Up);
        assert!(
            m.nodes[0]
                .detail
                .contains(&"restarted since the last poll".to_owned())
        );
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(show(0.0, Unit::PerSecond), "0/s");
        assert_eq!(show(2.46, Unit::PerSecond), "2.5/s");
        assert_eq!(show(1234.0, Unit::PerSecond), "1.2k/s");
        assert_eq!(show(45_600.0, Unit::Total), "46k");
        assert_eq!(show(3.0, Unit::Total), "3");
        assert_eq!(show(2.5e6, Unit::Total), "2.5M");
    }
}
