//! Static routes for simulated nodes, computed from the [`Topology`] so that a node's table
//! stays small even on 100,000 nodes.
//!
//! A node's routes are a few *intervals of node numbers* with a next hop each; since node
//! `i` has address `198.18.0.0 + i + 1`, an interval becomes a handful of prefixes (a range
//! of `m` addresses needs at most `2·log2(m)` aligned blocks). Per shape:
//!
//! - line: `[0, i)` via `i-1`, `(i, n)` via `i+1` (shortest paths);
//! - ring: the nearer way round (ties clockwise);
//! - grid: row first, then column (Manhattan-shortest, "YX" dimension order);
//! - tree (generated trees, random graphs): each child's subtree (a contiguous range, by
//!   the preorder numbering) via that child, everything else (`::/0`) via the parent —
//!   shortest on a tree, along the BFS spanning tree on a random graph, whose extra edges
//!   still carry traffic to direct neighbours;
//! - explicit: shortest paths by BFS (ties to the lowest-numbered neighbour, as the
//!   loopback integration tests do) up to [`SHORTEST_MAX_NODES`] nodes, else tree routing
//!   over the BFS tree from node 0.
//!
//! A neighbour is always its own next hop (the node checks neighbours before routes).
//! Addresses outside the topology match no interval: a capsule toward one has no route,
//! except under tree routing, where it climbs to the root and stops there.

use ants_core::Prefix;
use ants_wire::Address;

use crate::topology::{BfsTree, Shape, Topology};

/// Largest explicit topology routed by all-pairs shortest paths in `auto` mode.
pub const SHORTEST_MAX_NODES: u32 = 1024;

/// Which routing to compute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoutingMode {
    /// The shape's own (see the module docs).
    #[default]
    Auto,
    /// BFS shortest paths for every node (memory grows with `n²` on unstructured graphs).
    Shortest,
    /// Along the BFS spanning tree from node 0.
    Tree,
}

/// Computes each node's routes on demand (at start and on every restart).
#[derive(Debug)]
pub struct Routing {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Line,
    Ring,
    Grid {
        width: u32,
    },
    /// Preorder-numbered tree: parent and subtree size of each node.
    Preorder {
        parent: Vec<u32>,
        size: Vec<u32>,
    },
    Shortest,
    /// Any numbering: subtrees as sets of node numbers.
    Bfs(BfsTree),
}

impl Routing {
    /// The routing of `t` in `mode`.
    pub fn new(t: &Topology, mode: RoutingMode) -> Routing {
        let kind = match (mode, t.shape()) {
            (RoutingMode::Shortest, _) => Kind::Shortest,
            (RoutingMode::Auto | RoutingMode::Tree, Shape::Tree) => {
                let parent = t.tree_parent().to_vec();
                let mut size = vec![1u32; parent.len()];
                for v in (1..parent.len()).rev() {
                    let p = parent[v] as usize;
                    size[p] += size[v];
                }
                Kind::Preorder { parent, size }
            }
            (RoutingMode::Tree, _) => Kind::Bfs(BfsTree::new(t, 0)),
            (RoutingMode::Auto, Shape::Line) => Kind::Line,
            (RoutingMode::Auto, Shape::Ring) => Kind::Ring,
            (RoutingMode::Auto, Shape::Grid { width }) => Kind::Grid { width: *width },
            (RoutingMode::Auto, Shape::Explicit) if t.len() <= SHORTEST_MAX_NODES => Kind::Shortest,
            (RoutingMode::Auto, Shape::Explicit) => Kind::Bfs(BfsTree::new(t, 0)),
        };
        Routing { kind }
    }

    /// Routes of node `i`: `(prefix, next hop address)`.
    pub fn routes(&self, t: &Topology, i: u32) -> Vec<(Prefix, Address)> {
        let n = t.len();
        let mut out = Vec::new();
        let hier = t.is_hierarchical();
        let mut add = |lo: u32, hi: u32, via: u32| {
            if hier {
                // Hierarchical addresses are not consecutive: one host route each.
                let via = t.address(via);
                out.extend((lo..hi).map(|k| (Prefix::host(t.address(k)), via)));
            } else {
                push_interval(t, &mut out, lo, hi, via);
            }
        };
        match &self.kind {
            Kind::Line => {
                if i > 0 {
                    add(0, i, i - 1);
                }
                if i + 1 < n {
                    add(i + 1, n, i + 1);
                }
            }
            Kind::Ring => {
                // Clockwise to i + 1 ..= i + n/2, counter-clockwise for the rest.
                let half = n / 2;
                let cw = (i + 1) % n;
                let ccw = (i + n - 1) % n;
                for d in [1..half + 1, half + 1..n] {
                    let via = if d.start == 1 { cw } else { ccw };
                    let (lo, hi) = ((i + d.start) % n, (i + d.end) % n);
                    if d.is_empty() {
                        continue;
                    }
                    if lo < hi || hi == 0 {
                        add(lo, if hi == 0 { n } else { hi }, via);
                    } else {
                        add(lo, n, via);
                        add(0, hi, via);
                    }
                }
            }
            Kind::Grid { width } => {
                let w = *width;
                let row = i / w * w;
                if row > 0 {
                    add(0, row, i - w);
                }
                if row + w < n {
                    add(row + w, n, i + w);
                }
                if i > row {
                    add(row, i, i - 1);
                }
                if i + 1 < row + w {
                    add(i + 1, row + w, i + 1);
                }
            }
            Kind::Preorder { parent, size } => {
                for &c in t.neighbours(i) {
                    if c > i && parent[c as usize] == i {
                        match t.subtree_prefix(c) {
                            Some(p) => out.push((p, t.address(c))),
                            None => push_interval(t, &mut out, c, c + size[c as usize], c),
                        }
                    }
                }
                if i != 0 {
                    out.push((
                        Prefix::new(Address::UNSPECIFIED, 0),
                        t.address(parent[i as usize]),
                    ));
                }
            }
            Kind::Bfs(tree) => {
                for &c in tree.children(i) {
                    let at = tree.preorder_label[c as usize] as usize;
                    let mut members: Vec<u32> =
                        tree.order[at..at + tree.size[c as usize] as usize].to_vec();
                    members.sort_unstable();
                    for (lo, hi) in runs(&members) {
                        add(lo, hi, c);
                    }
                }
                if i != 0 && tree.parent[i as usize] != u32::MAX {
                    out.push((
                        Prefix::new(Address::UNSPECIFIED, 0),
                        t.address(tree.parent[i as usize]),
                    ));
                }
            }
            Kind::Shortest => {
                let first = first_hops(t, i);
                let mut lo = 0;
                while lo < n {
                    let Some(via) = first[lo as usize] else {
                        lo += 1;
                        continue;
                    };
                    let mut hi = lo + 1;
                    while hi < n && first[hi as usize] == Some(via) {
                        hi += 1;
                    }
                    add(lo, hi, via);
                    lo = hi;
                }
            }
        }
        out
    }
}

/// Maximal runs `[lo, hi)` of consecutive numbers in a sorted list.
fn runs(sorted: &[u32]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &v in sorted {
        match out.last_mut() {
            Some((_, hi)) if *hi == v => *hi = v + 1,
            _ => out.push((v, v + 1)),
        }
    }
    out
}

/// First hop from `from` toward every node by BFS, neighbours in ascending order; `None`
/// for `from` itself and unreachable nodes.
fn first_hops(t: &Topology, from: u32) -> Vec<Option<u32>> {
    let n = t.len() as usize;
    let mut first = vec![None; n];
    let mut seen = vec![false; n];
    seen[from as usize] = true;
    let mut q = std::collections::VecDeque::new();
    for &nb in t.neighbours(from) {
        seen[nb as usize] = true;
        first[nb as usize] = Some(nb);
        q.push_back(nb);
    }
    while let Some(u) = q.pop_front() {
        for &v in t.neighbours(u) {
            if !seen[v as usize] {
                seen[v as usize] = true;
                first[v as usize] = first[u as usize];
                q.push_back(v);
            }
        }
    }
    first
}

/// Node numbers `[lo, hi)` of a flat plan as aligned address blocks (offsets `lo + 1 ..
/// hi + 1` from the plan's base), each routed via node `via`.
fn push_interval(t: &Topology, out: &mut Vec<(Prefix, Address)>, lo: u32, hi: u32, via: u32) {
    let max_block = t.flat_block().unwrap_or(0);
    let via = t.address(via);
    let (mut a, end) = (u64::from(lo) + 1, u64::from(hi) + 1);
    while a < end {
        // The largest aligned block starting at `a` that fits.
        let mut k = a.trailing_zeros().min(max_block);
        while k > 0 && a + (1 << k) > end {
            k -= 1;
        }
        let first = t.address((a - 1) as u32);
        out.push((Prefix::new(first, 128 - k as u8), via));
        a += 1 << k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::node_address;
    use ants_core::RoutingTable;

    fn tables(t: &Topology, r: &Routing) -> Vec<RoutingTable<Address>> {
        (0..t.len())
            .map(|i| {
                let mut rt = RoutingTable::new();
                for (p, via) in r.routes(t, i) {
                    rt.insert(p, via);
                }
                rt
            })
            .collect()
    }

    /// Follow routes from `a` to `b`; the path of nodes, or `None` on a loop / dead end.
    fn walk(t: &Topology, tables: &[RoutingTable<Address>], a: u32, b: u32) -> Option<Vec<u32>> {
        let dst = t.address(b);
        let (mut at, mut path) = (a, vec![a]);
        while at != b {
            let next = if t.neighbours(at).contains(&b) {
                b
            } else {
                t.node_of(tables[at as usize].lookup(&dst)?)?
            };
            if !t.neighbours(at).contains(&next) || path.len() > t.len() as usize {
                return None;
            }
            at = next;
            path.push(at);
        }
        Some(path)
    }

    fn all_pairs_reach(t: &Topology, mode: RoutingMode) -> Vec<Vec<usize>> {
        let r = tables(t, &Routing::new(t, mode));
        (0..t.len())
            .map(|a| {
                (0..t.len())
                    .map(|b| {
                        walk(t, &r, a, b)
                            .unwrap_or_else(|| panic!("{:?} {mode:?} {a}→{b}", t.shape()))
                            .len()
                            - 1
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn intervals_become_aligned_prefixes() {
        let t = Topology::line(100_000).unwrap();
        let mut out = Vec::new();
        push_interval(&t, &mut out, 0, 7, 9);
        // Offsets 1..8: 1/128, 2-3/127, 4-7/126.
        let lens: Vec<u8> = out.iter().map(|(p, _)| p.len()).collect();
        assert_eq!(lens, vec![128, 127, 126]);
        out.clear();
        push_interval(&t, &mut out, 0, 100_000, 1);
        assert!(out.len() <= 34, "{}", out.len());
        let covered: u64 = out.iter().map(|(p, _)| 1u64 << (128 - p.len())).sum();
        assert_eq!(covered, 100_000);
    }

    #[test]
    fn past_the_ipv4_block_flat_addresses_are_ipv6_and_still_aggregate() {
        let n = 300_000;
        let t = Topology::line(n).unwrap();
        assert_eq!(t.address(0).to_string(), "2001:db8:ffff::1");
        assert_eq!(t.node_of(&t.address(n - 1)), Some(n - 1));
        assert_eq!(t.node_of(&"2001:db8:ffff::0".parse().unwrap()), None);
        let r = Routing::new(&t, RoutingMode::Auto);
        let routes = r.routes(&t, 0);
        assert!(routes.len() <= 40, "{}", routes.len());
        let mut rt = RoutingTable::new();
        for (p, via) in routes {
            rt.insert(p, via);
        }
        assert_eq!(rt.lookup(&t.address(n - 1)), Some(&t.address(1)));
        assert_eq!(rt.lookup(&t.address(0)), None);
    }

    #[test]
    fn structured_shapes_route_shortest_paths() {
        for (t, hops) in [
            (
                Topology::line(9).unwrap(),
                Box::new(|a: u32, b: u32| a.abs_diff(b)) as Box<dyn Fn(u32, u32) -> u32>,
            ),
            (
                Topology::ring(9).unwrap(),
                Box::new(|a: u32, b: u32| a.abs_diff(b).min(9 - a.abs_diff(b))),
            ),
            (
                Topology::ring(10).unwrap(),
                Box::new(|a: u32, b: u32| a.abs_diff(b).min(10 - a.abs_diff(b))),
            ),
            (
                Topology::grid(4, 3).unwrap(),
                Box::new(|a: u32, b: u32| (a % 4).abs_diff(b % 4) + (a / 4).abs_diff(b / 4)),
            ),
        ] {
            let d = all_pairs_reach(&t, RoutingMode::Auto);
            for a in 0..t.len() {
                for b in 0..t.len() {
                    assert_eq!(
                        d[a as usize][b as usize] as u32,
                        hops(a, b),
                        "{:?} {a}→{b}",
                        t.shape()
                    );
                }
            }
        }
    }

    #[test]
    fn trees_random_graphs_and_explicit_graphs_reach_everyone() {
        let tree = Topology::tree(40, 3).unwrap();
        all_pairs_reach(&tree, RoutingMode::Auto);
        let random = Topology::random(60, 3, 5).unwrap();
        all_pairs_reach(&random, RoutingMode::Auto);
        all_pairs_reach(&random, RoutingMode::Shortest);
        let explicit =
            Topology::explicit(6, &[(0, 3), (3, 1), (1, 5), (5, 2), (2, 4), (0, 4)]).unwrap();
        all_pairs_reach(&explicit, RoutingMode::Tree);
        let d = all_pairs_reach(&explicit, RoutingMode::Auto);
        assert_eq!(d[0][2], 2, "0-4-2");
    }

    #[test]
    fn explicit_shortest_paths_break_ties_to_the_lowest_neighbour() {
        // 0 - 1 - 3 and 0 - 2 - 3: from 0, node 3 is via 1.
        let t = Topology::explicit(4, &[(0, 1), (1, 3), (0, 2), (2, 3)]).unwrap();
        let r = tables(&t, &Routing::new(&t, RoutingMode::Auto));
        assert_eq!(walk(&t, &r, 0, 3), Some(vec![0, 1, 3]));
    }

    #[test]
    fn unknown_destinations_have_no_route_except_up_a_tree() {
        let t = Topology::line(5).unwrap();
        let r = Routing::new(&t, RoutingMode::Auto);
        let mut rt = RoutingTable::new();
        for (p, via) in r.routes(&t, 2) {
            rt.insert(p, via);
        }
        assert_eq!(rt.lookup(&node_address(5)), None);
        assert_eq!(rt.lookup(&node_address(4)), Some(&node_address(3)));
    }
}
