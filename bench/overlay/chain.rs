//! The 3-hop chain under test (real nodes or plain relays) between generator and sink.

use super::*;

pub(crate) enum Hops {
    Plain(Vec<IoThread>),
    Capsule {
        nodes: Vec<DaemonHandle>,
        _dir: tempfile::TempDir,
    },
}

/// n1 → n2 → n3 → sink, with the hops' thread ids for CPU accounting.
pub(crate) struct Chain {
    pub(crate) mode: Mode,
    /// What the chain is, in reports.
    pub(crate) label: String,
    // Field order = drop order: hops stop before the sink.
    pub(crate) hops: Hops,
    pub(crate) sink: IoThread,
    pub(crate) entry: SocketAddr,
    pub(crate) hop_tids: Vec<u32>,
    pub(crate) hop_ports: Vec<u16>,
}

impl Chain {
    pub(crate) fn start(mode: Mode, wasm: &[u8]) -> Result<Chain> {
        match mode {
            Mode::Plain => Chain::plain(),
            Mode::Capsule => Chain::capsule(wasm, false),
            Mode::CapsuleRecord => Chain::capsule(wasm, true),
        }
    }

    pub(crate) fn plain() -> Result<Chain> {
        let cfg = udp_config();
        let sink = IoThread::spawn("sink", BatchSocket::bind(loopback0(), &cfg)?, None)?;
        let socks = (0..HOPS)
            .map(|_| BatchSocket::bind(loopback0(), &cfg))
            .collect::<io::Result<Vec<_>>>()?;
        let addrs = socks
            .iter()
            .map(BatchSocket::local_addr)
            .collect::<io::Result<Vec<_>>>()?;
        let mut relays = Vec::new();
        for (i, sock) in socks.into_iter().enumerate() {
            let next = addrs.get(i + 1).copied().unwrap_or(sink.addr);
            relays.push(IoThread::spawn(
                &format!("relay-{}", i + 1),
                sock,
                Some(next),
            )?);
        }
        Ok(Chain {
            mode: Mode::Plain,
            label: Mode::Plain.name().to_owned(),
            entry: addrs[0],
            hop_tids: relays.iter().map(|r| r.tid).collect(),
            hop_ports: addrs.iter().map(SocketAddr::port).collect(),
            hops: Hops::Plain(relays),
            sink,
        })
    }

    /// Three daemons; the code is loaded by one capsule injected with code at n1, which
    /// the chain demand-loads hop by hop; returns once the sink has seen it.
    pub(crate) fn capsule(wasm: &[u8], record: bool) -> Result<Chain> {
        let sink = IoThread::spawn("sink", BatchSocket::bind(loopback0(), &udp_config())?, None)?;
        let dir = tempfile::tempdir()?;
        let ports = free_ports(HOPS)?;
        let mut nodes = Vec::new();
        let mut hop_tids = Vec::new();
        for i in 1..=HOPS {
            let before = thread_ids();
            nodes.push(daemon::spawn(chain_config(
                i,
                &ports,
                sink.addr,
                dir.path(),
                record,
            )?)?);
            let tid = thread_ids()
                .difference(&before)
                .copied()
                .filter(|t| thread_name(*t).starts_with("ants-node"))
                .min()
                .context("cannot find the node's thread")?;
            hop_tids.push(tid);
        }
        let mut app = AppClient::connect(dir.path().join("n1.sock"), 7)?;
        let load = Inject::with_code(wasm.to_vec(), addr(SINK_ADDR), 64, vec![], b"load".into());
        app.inject(&load)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while sink.received() == 0 {
            if Instant::now() > deadline {
                let stats: Vec<Option<Stats>> = nodes.iter().map(DaemonHandle::stats).collect();
                bail!("the code did not load through the chain in 20 s: {stats:#?}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let mode = if record {
            Mode::CapsuleRecord
        } else {
            Mode::Capsule
        };
        Ok(Chain {
            mode,
            label: mode.name().to_owned(),
            entry: nodes[0].local_addr(),
            hop_tids,
            hop_ports: ports,
            hops: Hops::Capsule { nodes, _dir: dir },
            sink,
        })
    }

    pub(crate) fn nodes(&self) -> &[DaemonHandle] {
        match &self.hops {
            Hops::Capsule { nodes, .. } => nodes,
            Hops::Plain(_) => &[],
        }
    }

    /// One line on what each hop dropped (node counters, or relay counters).
    pub(crate) fn drop_report(&self) -> String {
        let sink = &self.sink.counters;
        let per_batch = sink.received.load(Ordering::Relaxed) as f64
            / sink.batches.load(Ordering::Relaxed).max(1) as f64;
        let hops = match &self.hops {
            Hops::Plain(relays) => relays
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    format!(
                        "relay{}: dropped {}, {:.1} datagrams per recvmmsg",
                        i + 1,
                        r.counters.dropped.load(Ordering::Relaxed),
                        r.received() as f64
                            / r.counters.batches.load(Ordering::Relaxed).max(1) as f64
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
            Hops::Capsule { nodes, .. } => nodes
                .iter()
                .enumerate()
                .map(|(i, n)| match n.stats() {
                    Some(s) => format!("n{}: {}", i + 1, node_summary(&s)),
                    None => format!("n{}: stopped", i + 1),
                })
                .collect::<Vec<_>>()
                .join("; "),
        };
        format!("{hops}; sink {per_batch:.1} datagrams per recvmmsg")
    }
}

pub(crate) fn node_summary(s: &Stats) -> String {
    let drops: Vec<String> = s
        .node
        .drops
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{}={n}", r.name()))
        .collect();
    let record = match s.record {
        r if r.workers == 0 => String::new(),
        r => format!(
            " recorded {} inputs, {} MB{}",
            r.inputs,
            r.bytes / 1_000_000,
            if r.stopped > 0 { " (STOPPED)" } else { "" }
        ),
    };
    format!(
        "in {} runs {} sent {} udp_dropped {} drops [{}]{record}",
        s.node.datagrams_in,
        s.node.runs,
        s.node.sent,
        s.udp_dropped,
        drops.join(" ")
    )
}

/// TOML for chain node `i` of 1..=3; n3's second neighbour is the sink, n1 accepts any sender.
/// With `record`, the node records its inputs under `dir/rec` (up to 4 GiB per node); the
/// config is written to `dir/chain-n{i}.toml` and loaded from there.
pub(crate) fn chain_config(
    i: usize,
    ports: &[u16],
    sink: SocketAddr,
    dir: &Path,
    record: bool,
) -> Result<Config> {
    let mut t = format!(
        "[node]\naddress = \"{}\"\nlisten = \"127.0.0.1:{}\"\ncode_cache_dir = \"{}\"\n\
         workers = 1\n",
        node_addr(i),
        ports[i - 1],
        dir.join(format!("n{i}-code")).display(),
    );
    if i == 1 {
        t += &format!("app_socket = \"{}\"\n", dir.join("n1.sock").display());
    }
    let endpoint = |j: usize| match j {
        j if j <= HOPS => format!("127.0.0.1:{}", ports[j - 1]),
        _ => sink.to_string(),
    };
    for j in [i - 1, i + 1] {
        if j >= 1 {
            t += &format!(
                "[[neighbour]]\naddress = \"{}\"\nendpoint = \"{}\"\n",
                node_addr(j),
                endpoint(j)
            );
        }
    }
    for j in 1..=HOPS + 1 {
        if j.abs_diff(i) > 1 {
            let via = if j > i { i + 1 } else { i - 1 };
            t += &format!(
                "[[route]]\ndst = \"{}\"\nvia = \"{}\"\n",
                node_addr(j),
                node_addr(via)
            );
        }
    }
    if i == 1 {
        // The generator is not a configured neighbour (its socket is bound later): let n1
        // accept capsules from any endpoint, as a node facing unconfigured senders would.
        t += "[code]\naccept_from = \"any\"\n";
    }
    if record {
        t += &format!(
            "[record]\ndir = \"{}\"\nmax_bytes = 4294967296\n",
            dir.join("rec").display()
        );
    }
    let file = dir.join(format!("chain-n{i}.toml"));
    std::fs::write(&file, &t)?;
    Config::load(&file).map_err(|e| anyhow::anyhow!("{e}\n{t}"))
}

// ---------------------------------------------------------------------------------------
// (a) throughput
// ---------------------------------------------------------------------------------------
