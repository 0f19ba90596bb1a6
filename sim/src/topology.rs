//! [`Topology`]: nodes `0..n` and undirected edges, explicit or generated (line, ring, grid,
//! tree, random graph), with the routing the generator implies (see [`crate::routing`]) and
//! the nodes' active addresses.
//!
//! Addresses ([`Topology::address`]):
//! - *flat* (every shape by default): with at most [`MAX_IPV4_NODES`] nodes, node `i` has
//!   `198.18.0.0 + i + 1` (IPv4-mapped; the RFC 2544 range 198.18.0.0/15): node 0 is
//!   198.18.0.1, node 255 is 198.18.1.0. A larger topology (up to [`MAX_NODES`]) numbers
//!   its nodes the same way in `2001:db8:ffff::/96` (node 0 is `2001:db8:ffff::1`), so that
//!   consecutive nodes still aggregate into prefixes;
//! - *hierarchical* (generated trees and random graphs, [`Shape::Tree`], when it fits):
//!   addresses in 2001:db8::/32 built from the path from the root, `m` bits per level (`m`
//!   enough for the largest number of children), so that every subtree is one prefix and a
//!   node's routing table is one prefix per child plus a default route — as addresses are
//!   handed out in real networks. Node 0 is `2001:db8::`.

use std::collections::{BTreeSet, VecDeque};
use std::net::Ipv4Addr;

use ants_core::Prefix;
use ants_core::rng::SplitMix64;
use ants_wire::Address;

/// Nodes addressable in 198.18.0.0/15 (one address per node, `.0.0` unused): up to this
/// many, flat addresses are IPv4.
pub const MAX_IPV4_NODES: u32 = (1 << 17) - 1;

/// Most nodes in a topology (4,194,304).
pub const MAX_NODES: u32 = 1 << 22;

/// First address of the block: 198.18.0.0.
const BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);

/// The flat plan beyond [`MAX_IPV4_NODES`]: `2001:db8:ffff::/96` (within the documentation
/// prefix; hierarchical plans use other bits of it, and one topology has one plan).
const FLAT6_BASE: u128 = 0x2001_0db8_ffff_0000_0000_0000_0000_0000;

/// The flat-plan address of node `i` (198.18.0.0 + i + 1); see [`Topology::address`].
pub fn node_address(i: u32) -> Address {
    Address::from_ipv4(Ipv4Addr::from(BASE + i + 1))
}

/// The node whose flat-plan address is `a`, if it is one of the first `n`.
pub fn node_of(a: &Address, n: u32) -> Option<u32> {
    let v4 = u32::from(a.to_ipv4()?);
    let off = v4.checked_sub(BASE + 1)?;
    (off < n).then_some(off)
}

/// How the nodes are connected and numbered; decides the routing (see [`crate::routing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// `0 — 1 — … — n-1`.
    Line,
    /// A line closed by `n-1 — 0`.
    Ring,
    /// `width` columns, row-major: node `y·width + x`.
    Grid {
        /// Columns.
        width: u32,
    },
    /// A graph with a spanning tree numbered in depth-first preorder (node 0 the root; see
    /// [`Topology::tree_parent`]): a generated tree, or a random graph relabelled so that
    /// its BFS tree from node 0 is.
    Tree,
    /// Edges as given.
    Explicit,
}

/// Why a topology cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// Too many or too few nodes.
    #[error("{0} nodes: a topology has 1 to {MAX_NODES} nodes")]
    Size(u64),
    /// An edge names a node that does not exist.
    #[error("edge [{0}, {1}] names a node outside 0..{2}")]
    NoSuchNode(u32, u32, u32),
    /// An edge from a node to itself.
    #[error("edge [{0}, {0}] is a self-loop")]
    SelfLoop(u32),
    /// A parameter out of range.
    #[error("{0}")]
    Parameter(String),
}

/// Nodes and undirected edges, with a compressed adjacency list.
#[derive(Debug, Clone)]
pub struct Topology {
    n: u32,
    shape: Shape,
    /// Adjacency: neighbours of `i` are `adj[start[i]..start[i+1]]`, sorted.
    start: Vec<u32>,
    adj: Vec<u32>,
    /// For [`Shape::Tree`]: the parent of each node in the routing tree (`parent[0] = 0`,
    /// `parent[v] < v`); empty otherwise.
    parent: Vec<u32>,
    plan: Plan,
}

/// How node numbers map to addresses (see the module docs).
#[derive(Debug, Clone)]
enum Plan {
    /// Node `i` is `base + i + 1`; blocks of up to `2^max_block` addresses aggregate.
    Flat { base: u128, max_block: u32 },
    Hierarchical {
        addrs: Vec<Address>,
        /// Length of the prefix covering each node's subtree.
        prefix_len: Vec<u8>,
        /// `(address, node)` sorted by address.
        by_addr: Vec<(Address, u32)>,
    },
}

/// 2001:db8::/32, the documentation prefix, for hierarchical addresses.
const TREE_PREFIX: [u8; 4] = [0x20, 0x01, 0x0d, 0xb8];

/// The flat plan for `n` nodes: IPv4 (IPv4-mapped) while it fits, else IPv6.
fn flat_plan(n: u32) -> Plan {
    if n <= MAX_IPV4_NODES {
        Plan::Flat {
            base: u128::from_be_bytes(Address::from_ipv4(Ipv4Addr::from(BASE)).0),
            max_block: 17,
        }
    } else {
        Plan::Flat {
            base: FLAT6_BASE,
            max_block: 32,
        }
    }
}

/// Hierarchical addresses for a preorder tree (`parent[v] < v`), or `None` if the paths
/// need more than 96 bits.
fn hierarchical(parent: &[u32]) -> Option<Plan> {
    let n = parent.len();
    let mut slot = vec![0u32; n];
    let mut kids = vec![0u32; n];
    let mut depth = vec![0u32; n];
    for v in 1..n {
        let p = parent[v] as usize;
        kids[p] += 1;
        slot[v] = kids[p];
        depth[v] = depth[p] + 1;
    }
    let max_kids = kids.iter().copied().max().unwrap_or(0);
    let m = 32 - max_kids.leading_zeros(); // bits for slots 1..=max_kids (0 = the node)
    let max_depth = depth.iter().copied().max().unwrap_or(0);
    if m.checked_mul(max_depth)? > 96 {
        return None;
    }
    let mut bits = vec![0u128; n];
    let mut addrs = Vec::with_capacity(n);
    let mut prefix_len = Vec::with_capacity(n);
    for v in 0..n {
        if v > 0 {
            let shift = 96 - m * depth[v];
            bits[v] = bits[parent[v] as usize] | (u128::from(slot[v]) << shift);
        }
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&TREE_PREFIX);
        a[4..].copy_from_slice(&bits[v].to_be_bytes()[4..]);
        addrs.push(Address(a));
        prefix_len.push((32 + m * depth[v]) as u8);
    }
    let mut by_addr: Vec<(Address, u32)> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| (*a, i as u32))
        .collect();
    by_addr.sort_unstable();
    Some(Plan::Hierarchical {
        addrs,
        prefix_len,
        by_addr,
    })
}

impl Topology {
    /// A topology from undirected edges (duplicates are merged).
    pub fn explicit(n: u32, edges: &[(u32, u32)]) -> Result<Topology, TopologyError> {
        check_size(u64::from(n))?;
        for &(a, b) in edges {
            if a >= n || b >= n {
                return Err(TopologyError::NoSuchNode(a, b, n));
            }
            if a == b {
                return Err(TopologyError::SelfLoop(a));
            }
        }
        Ok(Topology::build(n, Shape::Explicit, edges.iter().copied()))
    }

    /// `0 — 1 — … — n-1`.
    pub fn line(n: u32) -> Result<Topology, TopologyError> {
        check_size(u64::from(n))?;
        Ok(Topology::build(n, Shape::Line, (1..n).map(|i| (i - 1, i))))
    }

    /// A ring of `n ≥ 3` nodes.
    pub fn ring(n: u32) -> Result<Topology, TopologyError> {
        check_size(u64::from(n))?;
        if n < 3 {
            return Err(TopologyError::Parameter(format!(
                "a ring needs at least 3 nodes, not {n}"
            )));
        }
        let edges = (1..n).map(|i| (i - 1, i)).chain([(n - 1, 0)]);
        Ok(Topology::build(n, Shape::Ring, edges))
    }

    /// A `width × height` grid, row-major.
    pub fn grid(width: u32, height: u32) -> Result<Topology, TopologyError> {
        let n = u64::from(width) * u64::from(height);
        check_size(n)?;
        let n = n as u32;
        let mut edges = Vec::new();
        for y in 0..height {
            for x in 0..width {
                let i = y * width + x;
                if x + 1 < width {
                    edges.push((i, i + 1));
                }
                if y + 1 < height {
                    edges.push((i, i + width));
                }
            }
        }
        Ok(Topology::build(n, Shape::Grid { width }, edges.into_iter()))
    }

    /// A tree of `n` nodes where every node has up to `fanout` children, filled level by
    /// level, numbered in depth-first preorder (node 0 the root).
    pub fn tree(n: u32, fanout: u32) -> Result<Topology, TopologyError> {
        check_size(u64::from(n))?;
        if fanout == 0 {
            return Err(TopologyError::Parameter("a tree needs fanout ≥ 1".into()));
        }
        // Breadth-first (heap) numbering: children of b are b·k+1 ..= b·k+k. Relabel in DFS
        // preorder so that every subtree is a contiguous range.
        let k = u64::from(fanout);
        let mut pre = vec![0u32; n as usize];
        let mut next = 0u32;
        let mut stack = vec![0u64];
        while let Some(b) = stack.pop() {
            pre[b as usize] = next;
            next += 1;
            for c in (1..=k).rev().map(|j| b * k + j) {
                if c < u64::from(n) {
                    stack.push(c);
                }
            }
        }
        let mut parent = vec![0u32; n as usize];
        for c in 1..u64::from(n) {
            parent[pre[c as usize] as usize] = pre[((c - 1) / k) as usize];
        }
        let edges = (1..n).map(|v| (parent[v as usize], v));
        Ok(Topology::build(n, Shape::Tree, edges).with_tree(parent))
    }

    /// A connected random graph of `n` nodes with average degree about `degree` (a random
    /// spanning tree plus random extra edges), relabelled so that its BFS tree from node 0
    /// is numbered in depth-first preorder (tree routing, see [`crate::routing`]).
    pub fn random(n: u32, degree: u32, seed: u64) -> Result<Topology, TopologyError> {
        check_size(u64::from(n))?;
        if degree < 2 && n > 2 {
            return Err(TopologyError::Parameter(
                "a random graph needs degree ≥ 2".into(),
            ));
        }
        let mut rng = SplitMix64::new(seed);
        let mut set = BTreeSet::new();
        for i in 1..n {
            let j = (rng.next_u64() % u64::from(i)) as u32;
            set.insert((j, i));
        }
        let want = (u64::from(n) * u64::from(degree) / 2).min(u64::from(n) * u64::from(n - 1) / 2);
        let mut tries = 0u64;
        while (set.len() as u64) < want && tries < want * 20 {
            tries += 1;
            let a = (rng.next_u64() % u64::from(n)) as u32;
            let b = (rng.next_u64() % u64::from(n)) as u32;
            if a != b {
                set.insert((a.min(b), a.max(b)));
            }
        }
        let raw = Topology::build(n, Shape::Explicit, set.iter().copied());
        let tree = BfsTree::new(&raw, 0);
        let label = &tree.preorder_label;
        let mut parent = vec![0u32; n as usize];
        for v in 0..n as usize {
            parent[label[v] as usize] = label[tree.parent[v] as usize];
        }
        let edges = set
            .iter()
            .map(|&(a, b)| (label[a as usize], label[b as usize]));
        Ok(Topology::build(n, Shape::Tree, edges).with_tree(parent))
    }

    fn build(n: u32, shape: Shape, edges: impl Iterator<Item = (u32, u32)>) -> Topology {
        let mut pairs: Vec<(u32, u32)> = edges.flat_map(|(a, b)| [(a, b), (b, a)]).collect();
        pairs.sort_unstable();
        pairs.dedup();
        let mut start = vec![0u32; n as usize + 1];
        for &(a, _) in &pairs {
            start[a as usize + 1] += 1;
        }
        for i in 0..n as usize {
            start[i + 1] += start[i];
        }
        Topology {
            n,
            shape,
            start,
            adj: pairs.into_iter().map(|(_, b)| b).collect(),
            parent: Vec::new(),
            plan: flat_plan(n),
        }
    }

    /// Attach the routing tree and, if the paths fit, hierarchical addresses.
    fn with_tree(mut self, parent: Vec<u32>) -> Topology {
        self.plan = hierarchical(&parent).unwrap_or_else(|| flat_plan(self.n));
        self.parent = parent;
        self
    }

    /// The active address of node `i` (see the module docs).
    pub fn address(&self, i: u32) -> Address {
        match &self.plan {
            Plan::Flat { base, .. } => Address((base + u128::from(i) + 1).to_be_bytes()),
            Plan::Hierarchical { addrs, .. } => addrs
                .get(i as usize)
                .copied()
                .unwrap_or(Address::UNSPECIFIED),
        }
    }

    /// The node with address `a`.
    pub fn node_of(&self, a: &Address) -> Option<u32> {
        match &self.plan {
            Plan::Flat { base, .. } => {
                let off = u128::from_be_bytes(a.0).checked_sub(base + 1)?;
                u32::try_from(off).ok().filter(|&i| i < self.n)
            }
            Plan::Hierarchical { by_addr, .. } => by_addr
                .binary_search_by(|(x, _)| x.cmp(a))
                .ok()
                .map(|k| by_addr[k].1),
        }
    }

    /// Under a flat plan: the address of node `i` and the largest aggregable block, as a
    /// power of two (see [`crate::routing`]).
    pub(crate) fn flat_block(&self) -> Option<u32> {
        match &self.plan {
            Plan::Flat { max_block, .. } => Some(*max_block),
            Plan::Hierarchical { .. } => None,
        }
    }

    /// Whether addresses are hierarchical (see the module docs).
    pub fn is_hierarchical(&self) -> bool {
        matches!(self.plan, Plan::Hierarchical { .. })
    }

    /// Under hierarchical addressing, the one prefix covering node `i`'s subtree.
    pub fn subtree_prefix(&self, i: u32) -> Option<Prefix> {
        match &self.plan {
            Plan::Flat { .. } => None,
            Plan::Hierarchical {
                addrs, prefix_len, ..
            } => Some(Prefix::new(
                *addrs.get(i as usize)?,
                *prefix_len.get(i as usize)?,
            )),
        }
    }

    /// For [`Shape::Tree`], the routing tree's parent of each node (node 0 is its own
    /// parent; every other node's parent has a smaller number, and each subtree is a
    /// contiguous range of node numbers). Empty for other shapes.
    pub fn tree_parent(&self) -> &[u32] {
        &self.parent
    }

    /// Number of nodes.
    pub fn len(&self) -> u32 {
        self.n
    }

    /// `true` for a topology without nodes (never built; kept for clippy's sake).
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// How it was generated.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// Neighbours of node `i`, sorted (empty for a node that does not exist).
    pub fn neighbours(&self, i: u32) -> &[u32] {
        let (Some(&a), Some(&b)) = (self.start.get(i as usize), self.start.get(i as usize + 1))
        else {
            return &[];
        };
        self.adj.get(a as usize..b as usize).unwrap_or(&[])
    }

    /// Index of the directed edge `from → to` in edge order (the order of
    /// [`Topology::directed_edges`]).
    pub fn edge_index(&self, from: u32, to: u32) -> Option<u32> {
        let base = *self.start.get(from as usize)?;
        let pos = self.neighbours(from).binary_search(&to).ok()?;
        Some(base + pos as u32)
    }

    /// The directed edges leaving `i`, as a range of edge indices (in the order of
    /// [`Topology::neighbours`]).
    pub fn edge_range(&self, i: u32) -> std::ops::Range<usize> {
        match (self.start.get(i as usize), self.start.get(i as usize + 1)) {
            (Some(&a), Some(&b)) => a as usize..b as usize,
            _ => 0..0,
        }
    }

    /// Every directed edge `(from, to)`, grouped by `from`, sorted.
    pub fn directed_edges(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        (0..self.n).flat_map(move |i| self.neighbours(i).iter().map(move |&j| (i, j)))
    }

    /// Number of undirected edges.
    pub fn edge_count(&self) -> usize {
        self.adj.len() / 2
    }

    /// Whether every node can reach every other.
    pub fn is_connected(&self) -> bool {
        BfsTree::new(self, 0).reached == self.n
    }
}

fn check_size(n: u64) -> Result<(), TopologyError> {
    if n == 0 || n > u64::from(MAX_NODES) {
        return Err(TopologyError::Size(n));
    }
    Ok(())
}

/// A breadth-first spanning tree: parents, children in order, and depth-first preorder.
#[derive(Debug)]
pub(crate) struct BfsTree {
    pub(crate) parent: Vec<u32>,
    /// Children of `i`: `kids[kid_start[i]..kid_start[i+1]]`.
    kid_start: Vec<u32>,
    kids: Vec<u32>,
    /// Preorder position of each node.
    pub(crate) preorder_label: Vec<u32>,
    /// Nodes in preorder.
    pub(crate) order: Vec<u32>,
    /// Subtree sizes.
    pub(crate) size: Vec<u32>,
    pub(crate) reached: u32,
}

impl BfsTree {
    /// The BFS tree of `t` from `root`; neighbours are visited in ascending order.
    pub(crate) fn new(t: &Topology, root: u32) -> BfsTree {
        let n = t.n as usize;
        let none = u32::MAX;
        let mut parent = vec![none; n];
        let mut bfs = Vec::with_capacity(n);
        parent[root as usize] = root;
        let mut q = VecDeque::from([root]);
        while let Some(u) = q.pop_front() {
            bfs.push(u);
            for &v in t.neighbours(u) {
                if parent[v as usize] == none {
                    parent[v as usize] = u;
                    q.push_back(v);
                }
            }
        }
        // Children lists in BFS discovery order (ascending per parent).
        let mut kid_start = vec![0u32; n + 1];
        for &v in &bfs[1..] {
            kid_start[parent[v as usize] as usize + 1] += 1;
        }
        for i in 0..n {
            kid_start[i + 1] += kid_start[i];
        }
        let mut fill = kid_start.clone();
        let mut kids = vec![0u32; bfs.len().saturating_sub(1)];
        for &v in &bfs[1..] {
            let p = parent[v as usize] as usize;
            kids[fill[p] as usize] = v;
            fill[p] += 1;
        }
        let mut tree = BfsTree {
            parent,
            kid_start,
            kids,
            preorder_label: vec![none; n],
            order: Vec::with_capacity(n),
            size: vec![1; n],
            reached: bfs.len() as u32,
        };
        let mut stack = vec![root];
        while let Some(u) = stack.pop() {
            tree.preorder_label[u as usize] = tree.order.len() as u32;
            tree.order.push(u);
            stack.extend(tree.children(u).iter().rev());
        }
        for &v in bfs[1..].iter().rev() {
            let p = tree.parent[v as usize] as usize;
            tree.size[p] += tree.size[v as usize];
        }
        // Unreached nodes keep label MAX; give them the remaining labels in index order.
        let mut next = tree.order.len() as u32;
        for l in &mut tree.preorder_label {
            if *l == none {
                *l = next;
                next += 1;
            }
        }
        tree
    }

    pub(crate) fn children(&self, u: u32) -> &[u32] {
        let a = self.kid_start[u as usize] as usize;
        let b = self.kid_start[u as usize + 1] as usize;
        &self.kids[a..b]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_map_to_nodes_and_back() {
        assert_eq!(node_address(0).to_string(), "198.18.0.1");
        assert_eq!(node_address(255).to_string(), "198.18.1.0");
        assert_eq!(node_of(&node_address(99_999), 100_000), Some(99_999));
        assert_eq!(node_of(&node_address(5), 5), None);
        assert_eq!(
            node_address(MAX_IPV4_NODES - 1).to_string(),
            "198.19.255.255"
        );
    }

    #[test]
    fn generators_make_the_expected_edges() {
        let l = Topology::line(4).unwrap();
        assert_eq!(l.edge_count(), 3);
        assert_eq!(l.neighbours(1), &[0, 2]);
        let r = Topology::ring(5).unwrap();
        assert_eq!(r.neighbours(0), &[1, 4]);
        let g = Topology::grid(3, 2).unwrap();
        assert_eq!(g.len(), 6);
        assert_eq!(g.neighbours(4), &[1, 3, 5]);
        assert_eq!(g.edge_count(), 7);
        for t in [&l, &r, &g] {
            assert!(t.is_connected());
        }
        assert!(!Topology::explicit(3, &[(0, 1)]).unwrap().is_connected());
        assert!(Topology::explicit(3, &[(0, 3)]).is_err());
        assert!(Topology::explicit(3, &[(1, 1)]).is_err());
        assert!(Topology::line(0).is_err());
        assert!(Topology::line(MAX_NODES + 1).is_err());
    }

    #[test]
    fn a_generated_tree_is_numbered_in_preorder() {
        let t = Topology::tree(13, 3).unwrap();
        // Root 0 with children 1, 5, 9; node 1's children 2, 3, 4.
        assert_eq!(t.neighbours(0), &[1, 5, 9]);
        assert_eq!(t.neighbours(1), &[0, 2, 3, 4]);
        assert_eq!(&t.tree_parent()[..6], &[0, 0, 1, 1, 1, 0]);
        // 3 children: 2 bits per level. Node 1 is child 1 of the root, node 2 child 1 of 1.
        assert_eq!(t.address(0).to_string(), "2001:db8::");
        assert_eq!(t.address(1).to_string(), "2001:db8:4000::");
        assert_eq!(t.address(2).to_string(), "2001:db8:5000::");
        assert_eq!(t.address(5).to_string(), "2001:db8:8000::");
        let sub = t.subtree_prefix(1).unwrap();
        assert_eq!(sub.len(), 34);
        assert!((1..5).all(|i| sub.contains(&t.address(i))));
        assert!(!sub.contains(&t.address(5)) && !sub.contains(&t.address(0)));
        assert!(!Topology::line(3).unwrap().is_hierarchical());
    }

    #[test]
    fn random_graphs_are_connected_seeded_and_preorder_labelled() {
        let a = Topology::random(500, 4, 9).unwrap();
        assert!(a.is_connected());
        let degree = 2.0 * a.edge_count() as f64 / 500.0;
        assert!((3.5..=4.0).contains(&degree), "{degree}");
        let b = Topology::random(500, 4, 9).unwrap();
        assert_eq!(a.adj, b.adj);
        assert_ne!(a.adj, Topology::random(500, 4, 10).unwrap().adj);
        let p = a.tree_parent();
        assert!((1..500).all(|v| p[v] < v as u32 && a.neighbours(v as u32).contains(&p[v])));
        assert!(a.is_hierarchical());
        for i in 0..500 {
            assert_eq!(a.node_of(&a.address(i)), Some(i));
        }
    }

    #[test]
    fn edge_indices_follow_directed_edge_order() {
        let g = Topology::grid(3, 3).unwrap();
        for (k, (a, b)) in g.directed_edges().enumerate() {
            assert_eq!(g.edge_index(a, b), Some(k as u32));
        }
        assert_eq!(g.edge_index(0, 8), None);
    }
}
