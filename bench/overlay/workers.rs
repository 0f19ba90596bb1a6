//! (d) `[node] workers`: one node relaying two capsule types (the `forward` capsule and a
//! copy of it with another type, on different workers of 2) from the generator to the sink,
//! with 1 worker, 2 workers fed one type per GSO run, and 2 workers fed GSO runs that mix
//! the types (every run steered by its first datagram, half of it handed between workers).

use super::*;

/// The settings measured, in the order they take turns.
const SETTINGS: [(&str, usize, bool); 3] = [
    ("1 worker", 1, false),
    ("2 workers", 2, false),
    ("2 workers, mixed runs", 2, true),
];

/// `wasm` with a custom section named `ants-bench` holding `tag`: the same code under
/// another type.
fn retyped(wasm: &[u8], tag: u8) -> Vec<u8> {
    let name = b"ants-bench";
    let mut code = wasm.to_vec();
    code.extend_from_slice(&[0, (name.len() + 2) as u8, name.len() as u8]);
    code.extend_from_slice(name);
    code.push(tag);
    code
}

/// The worker of 2 that runs `ty`.
fn owner(ty: &CapsuleType) -> usize {
    let mut d = vec![0u8; 40];
    d[8..40].copy_from_slice(ty.as_bytes());
    ants_node::udp::steer(&d, 2)
}

/// One node with `workers` between the generator and a sink, both types loaded. The
/// generator is one peer: its fuel budget is raised so that it measures the workers, not the
/// budget (200 M fuel/s per worker by default, about 0.9 M forward capsules/s).
fn start(label: &str, workers: usize, codes: &[Vec<u8>]) -> Result<Chain> {
    let sink = IoThread::spawn("sink", BatchSocket::bind(loopback0(), &udp_config())?, None)?;
    let dir = tempfile::tempdir()?;
    let port = free_ports(1)?[0];
    let t = format!(
        "[node]\naddress = \"{}\"\nlisten = \"127.0.0.1:{port}\"\napp_socket = \"{}\"\n\
         workers = {workers}\n\
         [[neighbour]]\naddress = \"{SINK_ADDR}\"\nendpoint = \"{}\"\n\
         [code]\naccept_from = \"any\"\n\
         [limits]\npeer_fuel_per_sec = 100000000000\n",
        node_addr(1),
        dir.path().join("n1.sock").display(),
        sink.addr,
    );
    let cfg = Config::parse(&t, "workers.toml").map_err(|e| anyhow::anyhow!("{e}\n{t}"))?;
    let before = thread_ids();
    let node = daemon::spawn(cfg)?;
    let tids: Vec<u32> = thread_ids()
        .difference(&before)
        .copied()
        .filter(|t| {
            let name = thread_name(*t);
            name.starts_with("ants-node") || name.starts_with("ants-worker")
        })
        .collect();
    if tids.len() != workers {
        bail!("found {} forwarding threads, not {workers}", tids.len());
    }
    let mut app = AppClient::connect(dir.path().join("n1.sock"), 7)?;
    for code in codes {
        let load = Inject::with_code(code.clone(), addr(SINK_ADDR), 64, vec![], b"load".into());
        app.inject(&load)?;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while sink.received() < codes.len() as u64 {
        if Instant::now() > deadline {
            bail!("the code did not load in 20 s: {:#?}", node.stats());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(Chain {
        mode: Mode::Capsule,
        label: label.to_owned(),
        entry: node.local_addr(),
        hop_tids: tids,
        hop_ports: vec![port],
        hops: Hops::Capsule {
            nodes: vec![node],
            _dir: dir,
        },
        sink,
    })
}

pub(crate) fn workers(o: &ThroughputOpts) -> Result<()> {
    let forward = ants_bench::capsule_bytes("forward");
    let a = ants_app::capsule_type_of(&forward);
    let other = (0..=255u8)
        .map(|tag| retyped(&forward, tag))
        .find(|c| owner(&ants_app::capsule_type_of(c)) != owner(&a))
        .context("no retyped copy on the other worker")?;
    let b = ants_app::capsule_type_of(&other);
    let codes = [forward, other];
    let (da, db) = (
        capsule_datagrams(a, o.payload, 1024),
        capsule_datagrams(b, o.payload, 1024),
    );
    // One type per generator batch (64 datagrams: one GSO run), or alternating.
    let blocks: Vec<Vec<u8>> = da
        .chunks(64)
        .zip(db.chunks(64))
        .flat_map(|(x, y)| x.iter().chain(y).cloned())
        .collect();
    let mixed: Vec<Vec<u8>> = da
        .iter()
        .zip(&db)
        .flat_map(|(x, y)| [x.clone(), y.clone()])
        .collect();
    let (blocks, mixed) = (Arc::new(blocks), Arc::new(mixed));
    println!(
        "# workers: one node on 127.0.0.1 relaying two types of the forward capsule ({} and {}, \
         workers {} and {} of 2), {} B datagrams, generator {}; {} s of window per setting and \
         run in {} s slices, settings interleaved; {} runs; generator and sink {}, the node's \
         threads unpinned",
        a.short(),
        b.short(),
        owner(&a),
        owner(&b),
        blocks[0].len(),
        o.rate
            .map_or_else(|| "flat out".to_owned(), |r| format!("at {r:.0} pps")),
        o.seconds,
        o.slice,
        o.runs,
        if o.pin { "pinned to CPU 0" } else { "unpinned" },
    );
    println!(
        "\n| run | setting | offered pps | delivered pps | loss % | node CPU ns/pkt | CPU % per \
         worker | CPU % gen / sink | handed between workers | machine % ours / others / steal \
         / idle |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut samples: Vec<Sample> = Vec::new();
    for run in 1..=o.runs {
        let mut chains = Vec::new();
        for (label, n, mix) in SETTINGS {
            let chain = start(label, n, &codes)?;
            let datagrams = if mix { mixed.clone() } else { blocks.clone() };
            let generator = Generator::spawn(chain.entry, datagrams, o.rate, true)?;
            if o.pin {
                pin_thread(generator.tid, 0)?;
                pin_thread(chain.sink.tid, 0)?;
            }
            chains.push((chain, generator));
        }
        for (chain, s) in measure(chains, o) {
            let handed = chain
                .nodes()
                .first()
                .and_then(DaemonHandle::stats)
                .map_or(0, |st| st.handed_off);
            s.print_row(run, &chain, &handed.to_string());
            samples.push(s);
        }
    }
    println!(
        "\n| setting | delivered pps | node CPU ns/pkt | vs 1 worker | (medians of {} runs) |",
        o.runs
    );
    println!("|---|---|---|---|---|");
    let of = |label: &str, f: fn(&Sample) -> f64| -> Vec<f64> {
        samples.iter().filter(|s| s.label == label).map(f).collect()
    };
    let one = median(&of(SETTINGS[0].0, |s| s.delivered_pps));
    for (label, _, _) in SETTINGS {
        let d = median(&of(label, |s| s.delivered_pps));
        println!(
            "| {label} | **{d:.0}** | {:.0} | {:.2}× | delivered: {} |",
            median(&of(label, |s| s.cpu_ns_per_pkt)),
            d / one.max(1.0),
            join_runs(&of(label, |s| s.delivered_pps), 0)
        );
    }
    Ok(())
}
