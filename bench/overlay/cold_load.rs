//! (b) first capsule through a 5-node line with cold caches: transfer, verify, compile.

use super::*;

pub(crate) const LINE: usize = 5;

/// TOML for node `i` of a 5-node line (as tests/it/overlay.rs builds it).
pub(crate) fn line_config(i: usize, ports: &[u16], dir: &Path) -> Result<Config> {
    let mut t = format!(
        "[node]\naddress = \"{}\"\nlisten = \"127.0.0.1:{}\"\napp_socket = \"{}\"\ncode_cache_dir = \"{}\"\n",
        node_addr(i),
        ports[i - 1],
        dir.join(format!("n{i}.sock")).display(),
        dir.join(format!("n{i}-code")).display(),
    );
    for j in [i - 1, i + 1] {
        if (1..=LINE).contains(&j) {
            t += &format!(
                "[[neighbour]]\naddress = \"{}\"\nendpoint = \"127.0.0.1:{}\"\n",
                node_addr(j),
                ports[j - 1]
            );
        }
    }
    for j in 1..=LINE {
        if j.abs_diff(i) > 1 {
            let via = if j > i { i + 1 } else { i - 1 };
            t += &format!(
                "[[route]]\ndst = \"{}\"\nvia = \"{}\"\n",
                node_addr(j),
                node_addr(via)
            );
        }
    }
    Config::parse(&t, &format!("line-n{i}.toml")).map_err(|e| anyhow::anyhow!("{e}\n{t}"))
}

/// One node's load stages, in ms since the inject (node time = wall clock).
#[derive(Debug, Clone, Default)]
pub(crate) struct HopTiming {
    pub(crate) held: f64,
    /// held → verified (fetch: request, chunks, hashing); NaN at n1 (code came from the app).
    pub(crate) transfer: f64,
    /// Wall time of the compilation on the blocking pool.
    pub(crate) compile: f64,
    /// verified (n1: held) → ready: compile + blocking-pool hand-off + persisting + install.
    pub(crate) to_ready: f64,
    pub(crate) ready: f64,
}

#[derive(Debug, Clone)]
pub(crate) struct ColdRun {
    pub(crate) hops: Vec<HopTiming>,
    /// inject() call → the node's answer.
    pub(crate) inject_call: f64,
    /// Node time of the delivery at n5, since the inject.
    pub(crate) delivered_node: f64,
    /// inject → the app's recv() returned.
    pub(crate) total: f64,
    pub(crate) code_requests: Vec<u64>,
}

pub(crate) fn cold_load_once(wasm: &[u8]) -> Result<ColdRun> {
    let ty = ants_app::capsule_type_of(wasm);
    let dir = tempfile::tempdir()?;
    let ports = free_ports(LINE)?;
    let nodes = (1..=LINE)
        .map(|i| daemon::spawn(line_config(i, &ports, dir.path())?))
        .collect::<Result<Vec<DaemonHandle>>>()?;
    let mut rx = AppClient::connect(dir.path().join(format!("n{LINE}.sock")), 0)?;
    let mut tx = AppClient::connect(dir.path().join("n1.sock"), 7)?;
    let inject = Inject::with_code(
        wasm.to_vec(),
        node_addr(LINE).parse()?,
        64,
        vec![],
        b"cold".to_vec(),
    );
    let t0_wall = wall();
    let t0 = Instant::now();
    tx.inject(&inject)?;
    let inject_call = ms(t0.elapsed());
    let d = rx
        .recv_timeout(Duration::from_secs(30))?
        .context("no delivery at n5 within 30 s")?;
    let total = ms(t0.elapsed());
    let mut hops = Vec::new();
    let mut code_requests = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let s = n.stats().context("node stopped")?;
        let t = s
            .load_timings
            .iter()
            .find(|t| t.ty == ty)
            .with_context(|| format!("n{}: no load timing", i + 1))?;
        let compile = s
            .compile_times
            .iter()
            .find(|(t, _)| *t == ty)
            .map_or(f64::NAN, |(_, d)| ms(*d));
        let ready = t.ready_at.context("module never ready")?;
        let since = |x: Duration| ms_between(x, t0_wall);
        hops.push(HopTiming {
            held: since(t.held_at),
            transfer: t.verified_at.map_or(f64::NAN, |v| ms_between(v, t.held_at)),
            compile,
            to_ready: ms_between(ready, t.verified_at.unwrap_or(t.held_at)),
            ready: since(ready),
        });
        code_requests.push(s.loader.requests_sent);
    }
    let delivered_node = ms_between(Duration::from_nanos(d.node_time_ns), t0_wall);
    Ok(ColdRun {
        hops,
        inject_call,
        delivered_node,
        total,
        code_requests,
    })
}

/// A stage summed over the hops that have it.
pub(crate) fn hop_sum(r: &ColdRun, f: fn(&HopTiming) -> f64) -> f64 {
    r.hops.iter().map(f).filter(|x| !x.is_nan()).sum()
}

/// Median time of SHA-256 over `bytes`, each of `iters` hashes timed on its own.
pub(crate) fn sha256_median(bytes: &[u8], iters: usize) -> Duration {
    let mut times: Vec<f64> = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        std::hint::black_box(Sha256::digest(std::hint::black_box(bytes)));
        times.push(t.elapsed().as_nanos() as f64);
    }
    Duration::from_nanos(median(&times) as u64)
}

pub(crate) fn cold_load(runs: usize) -> Result<()> {
    let wasm = ants_bench::capsule_bytes("forward");
    let verify: Vec<Duration> = (0..runs.max(1))
        .map(|_| sha256_median(&wasm, 10_000))
        .collect();
    let verify_us: Vec<f64> = verify.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    let mut all = Vec::new();
    for run in 1..=runs {
        let r = cold_load_once(&wasm)?;
        eprintln!(
            "  run {run}: total {:.2} ms, code requests sent per node {:?}",
            r.total, r.code_requests
        );
        all.push(r);
    }
    let med = |f: &dyn Fn(&ColdRun) -> f64| median(&all.iter().map(f).collect::<Vec<_>>());
    println!(
        "# cold-load: 5-node line on 127.0.0.1, empty code caches, one `forward` capsule \
         ({} B module) injected with code at n1 for n5's app 0; medians of {runs} runs (ms)\n",
        wasm.len()
    );
    println!(
        "| node | held at | transfer (held → verified) | compile (blocking pool) | \
         verified → ready | ready at | ready → next node holds it |"
    );
    println!("|---|---|---|---|---|---|---|");
    for i in 0..LINE {
        let next = |r: &ColdRun| {
            if i + 1 < LINE {
                r.hops[i + 1].held - r.hops[i].ready
            } else {
                f64::NAN
            }
        };
        let cell = |x: f64| {
            if x.is_nan() {
                "—".to_owned()
            } else {
                format!("{x:.2}")
            }
        };
        let label = if i == 0 {
            "n1 (code from the app; held → ready)".to_owned()
        } else {
            format!("n{}", i + 1)
        };
        println!(
            "| {label} | {} | {} | {} | {} | {} | {} |",
            cell(med(&|r| r.hops[i].held)),
            cell(med(&|r| r.hops[i].transfer)),
            cell(med(&|r| r.hops[i].compile)),
            cell(med(&|r| r.hops[i].to_ready)),
            cell(med(&|r| r.hops[i].ready)),
            cell(med(&next)),
        );
    }
    let total: Vec<f64> = all.iter().map(|r| r.total).collect();
    println!("\n| total | median (ms) | runs |");
    println!("|---|---|---|");
    let row = |name: &str, f: &dyn Fn(&ColdRun) -> f64| {
        let v: Vec<f64> = all.iter().map(f).collect();
        println!("| {name} | {:.2} | {} |", median(&v), join_runs(&v, 2));
    };
    row("inject → delivery at n5's app (wall)", &|r| r.total);
    row("inject → delivery (n5 node time)", &|r| r.delivered_node);
    row("inject() call (node accepts)", &|r| r.inject_call);
    row("transfer, sum over n2..n5", &|r| hop_sum(r, |h| h.transfer));
    row("compile (blocking pool), sum over n1..n5", &|r| {
        hop_sum(r, |h| h.compile)
    });
    row("verified → ready, sum over n1..n5", &|r| {
        hop_sum(r, |h| h.to_ready)
    });
    row(
        "ready → next holds it, sum over 4 hops (run + send + loopback)",
        &|r| {
            (0..LINE - 1)
                .map(|i| r.hops[i + 1].held - r.hops[i].ready)
                .sum::<f64>()
        },
    );
    println!(
        "\nverify: SHA-256 of the {} B module, median of 10,000 hashes: {:.2} µs (runs {}); \
         × 4 fetched copies = {:.3} ms of the total {:.2} ms",
        wasm.len(),
        median(&verify_us),
        join_runs(&verify_us, 2),
        median(&verify_us) * 4.0 / 1e3,
        median(&total)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// (c) RSS
// ---------------------------------------------------------------------------------------
