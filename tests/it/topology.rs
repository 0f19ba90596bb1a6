//! Real nodes on loopback in any topology: give edges, get running `ants` nodes with
//! shortest-path routes (BFS, ties broken by lowest node number), an app socket and a code
//! cache directory each. Node `i` (1-based) has active address 198.18.0.i; its config is
//! also written to `n{i}.toml` in [`Topology::dir`] (a topology directory for `ants map`).

use std::collections::VecDeque;
use std::net::UdpSocket;
use std::path::PathBuf;

use ants_node::config::Config;
use ants_node::daemon::{self, DaemonHandle, Stats};

/// Running nodes of a topology.
pub(crate) struct Topology {
    nodes: Vec<Option<DaemonHandle>>,
    configs: Vec<Config>,
    dir: tempfile::TempDir,
}

/// Free UDP ports on loopback (bound then released; fine for tests).
pub(crate) fn free_ports(n: usize) -> Vec<u16> {
    let socks: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
        .collect();
    socks
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect()
}

/// Active address of node `i`.
pub(crate) fn node_addr(i: usize) -> String {
    format!("198.18.0.{i}")
}

/// Next hop from `from` toward every node, by BFS over `adj` (1-based; index 0 unused).
fn next_hops(adj: &[Vec<usize>], from: usize) -> Vec<Option<usize>> {
    let mut first = vec![None; adj.len()];
    let mut seen = vec![false; adj.len()];
    seen[from] = true;
    let mut q = VecDeque::new();
    for &nb in &adj[from] {
        if !seen[nb] {
            seen[nb] = true;
            first[nb] = Some(nb);
            q.push_back(nb);
        }
    }
    while let Some(u) = q.pop_front() {
        for &v in &adj[u] {
            if !seen[v] {
                seen[v] = true;
                first[v] = first[u];
                q.push_back(v);
            }
        }
    }
    first
}

impl Topology {
    /// A line 1 — 2 — … — n.
    pub(crate) fn line(n: usize, extra: &str) -> Topology {
        let edges: Vec<(usize, usize)> = (1..n).map(|i| (i, i + 1)).collect();
        Topology::start(n, &edges, extra)
    }

    /// Start `n` nodes connected by undirected `edges` (1-based pairs). `extra` TOML is
    /// appended to every node's config (e.g. a `[limits]` section).
    pub(crate) fn start(n: usize, edges: &[(usize, usize)], extra: &str) -> Topology {
        Topology::start_with(n, edges, extra, "")
    }

    /// [`Topology::start`] with `node_keys` added to every node's `[node]` table (e.g.
    /// `workers = 2`).
    pub(crate) fn start_with(
        n: usize,
        edges: &[(usize, usize)],
        extra: &str,
        node_keys: &str,
    ) -> Topology {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(n);
        let mut adj = vec![Vec::new(); n + 1];
        for &(a, b) in edges {
            adj[a].push(b);
            adj[b].push(a);
        }
        for l in &mut adj {
            l.sort_unstable();
        }
        let configs: Vec<Config> = (1..=n)
            .map(|i| {
                let mut t = format!(
                    "[node]\naddress = \"{}\"\nlisten = \"127.0.0.1:{}\"\napp_socket = \"{}\"\ncode_cache_dir = \"{}\"\n",
                    node_addr(i),
                    ports[i - 1],
                    dir.path().join(format!("n{i}.sock")).display(),
                    dir.path().join(format!("n{i}-code")).display(),
                );
                t += node_keys;
                for &j in &adj[i] {
                    t += &format!(
                        "[[neighbour]]\naddress = \"{}\"\nendpoint = \"127.0.0.1:{}\"\n",
                        node_addr(j),
                        ports[j - 1]
                    );
                }
                let hops = next_hops(&adj, i);
                for (j, hop) in hops.iter().enumerate().skip(1) {
                    if let Some(h) = hop.filter(|h| *h != j) {
                        t += &format!(
                            "[[route]]\ndst = \"{}\"\nvia = \"{}\"\n",
                            node_addr(j),
                            node_addr(h)
                        );
                    }
                }
                t += extra;
                let file = dir.path().join(format!("n{i}.toml"));
                std::fs::write(&file, &t).expect("write config");
                Config::load(&file).unwrap_or_else(|e| panic!("{e}\n{t}"))
            })
            .collect();
        let nodes = configs
            .iter()
            .map(|c| Some(daemon::spawn(c.clone()).expect("node starts")))
            .collect();
        Topology {
            nodes,
            configs,
            dir,
        }
    }

    /// The directory of the nodes' configs (`n{i}.toml`), sockets and code caches.
    pub(crate) fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Node `i`'s config file (what a reload reads).
    pub(crate) fn config_file(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{i}.toml"))
    }

    /// Reload node `i`'s config file, as SIGHUP does.
    pub(crate) fn reload(&self, i: usize) -> Result<String, String> {
        self.nodes[i - 1].as_ref().expect("node running").reload()
    }

    /// The app socket of node `i`.
    pub(crate) fn sock(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{i}.sock"))
    }

    /// The UDP endpoint of node `i`.
    pub(crate) fn local_addr(&self, i: usize) -> std::net::SocketAddr {
        self.nodes[i - 1]
            .as_ref()
            .expect("node running")
            .local_addr()
    }

    /// Counters of node `i`.
    pub(crate) fn stats(&self, i: usize) -> Stats {
        self.nodes[i - 1]
            .as_ref()
            .expect("node running")
            .stats()
            .expect("stats")
    }

    /// Stop node `i` (as if it died; neighbours are not told).
    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(h) = self.nodes[i - 1].take() {
            let _ = h.shutdown();
        }
    }

    /// Start node `i` again with its config (and its persisted code).
    pub(crate) fn restart(&mut self, i: usize) {
        self.kill(i);
        self.nodes[i - 1] = Some(daemon::spawn(self.configs[i - 1].clone()).expect("restart"));
    }
}

#[test]
fn bfs_routes_follow_shortest_paths() {
    // 1 - 2 - 3 and 1 - 4 - 5 - 3: from 1, node 3 is via 2 (2 hops), node 5 via 4.
    let mut adj = vec![Vec::new(); 6];
    for (a, b) in [(1, 2), (2, 3), (1, 4), (4, 5), (5, 3)] {
        adj[a].push(b);
        adj[b].push(a);
    }
    let h = next_hops(&adj, 1);
    assert_eq!(h[3], Some(2));
    assert_eq!(h[5], Some(4));
    assert_eq!(h[2], Some(2));
}
