//! `ants sim`: run a scenario file in the deterministic simulator (`ants-sim`) with the real
//! wasm executor, and print what happened.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ants_capsule_build::BuildOptions;
use ants_sim::{Report, Scenario, Trace};
use anyhow::{Context, bail};

use ants_node::{Compiler, ExecutorConfig, WasmExecutor};

/// Live wasm instances a simulation keeps (one per node and type that ran).
const SIM_MAX_INSTANCES: usize = 1 << 20;

/// The long help of `ants sim` (clap shows it for `--help`).
pub(crate) const LONG_HELP: &str = "\
Run a simulation scenario: the real node core and wasm capsules on a virtual network.

The scenario (TOML) gives the topology (explicit, or a generated line, ring, grid, tree or
random graph), link latency/jitter/loss/bandwidth/queue, the apps (who sends which
capsule when, who listens), faults (crash, restart, partition, repair at given times) and
the duration. Every node runs the same `ants-core` state machine as `ants run`; capsule
code runs in one wasmtime executor per thread, compiled once per module, and is still demand
loaded hop by hop. Reference: docs/simulation.md.

Example (from the checkout; shipped capsules are built on first use):

  ants sim examples/sim/line-loss-crash.toml
  ants sim examples/sim/multicast-tree.toml --seed 7 --trace /tmp/mc.jsonl

Output: the seed (the same seed gives the same run, event for event), simulated time and
events; the network's capsule hops (a capsule handed to a running node) and datagrams it
lost by reason (loss, queue, partition, node-down); per-protocol counters summed over
nodes (runs, copies sent, deliveries, traps); node counters (totals, and each node when
there are at most 32 — or with --json); each app's injections and deliveries, with
distinct payloads and duplicates (same payload delivered twice to one app); then
`trace sha256 …`: the SHA-256 of the JSON-lines event trace — the run's fingerprint
(identical for identical runs). Wall time, capsule-hops per second and peak RSS come
last; they are the only numbers that vary between runs.

The seed is, in order: --seed, $ANTS_SIM_SEED, the scenario's `seed`, 1.

Threads (--workers): nodes are spread over the threads, each running its share up to the
smallest link latency ahead of the others (no datagram arrives sooner), so the run — every
counter and the trace hash — is the same on any number of threads. Watchpoints and
zero-latency links need one thread.";

/// `ants sim` arguments; see [`LONG_HELP`].
#[derive(Debug, clap::Args)]
pub(crate) struct SimArgs {
    /// The scenario file (see examples/sim/).
    scenario: PathBuf,
    /// Root seed (overrides $ANTS_SIM_SEED and the scenario's `seed`).
    #[arg(long)]
    seed: Option<u64>,
    /// Also write the event trace (JSON lines) to this file.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Print the report as JSON (every node's counters included).
    #[arg(long)]
    json: bool,
    /// Print only the trace hash line (no progress, no build messages).
    #[arg(long, short)]
    quiet: bool,
    /// Draw the topology at the end of the run, as `ants map` draws a live one: SVG, or an
    /// HTML page when FILE ends in .html. Links are labelled with the capsules that crossed
    /// them in each direction, nodes with their capsules and drops (amber: some dropped, red:
    /// down at the end). At most 1,000 nodes.
    #[arg(long, value_name = "FILE")]
    map: Option<PathBuf>,
    /// Threads to simulate on; the run is the same, event for event, on any number. Default:
    /// every CPU for topologies of at least 1,000 nodes, else 1. Runs with watchpoints or
    /// zero-latency links are sequential (said on stderr when asked for more).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    workers: Option<u32>,
}

/// Topologies from this size up use every CPU by default (smaller ones are faster on one:
/// their windows hold too few events to pay for the threads' meetings).
const PARALLEL_MIN_NODES: u64 = 1000;

/// Most nodes `ants sim --map` draws (the layout is quadratic in nodes).
const MAX_MAP_NODES: u32 = 1000;

/// Memory a simulated node takes, measured (multicast trees of 20,000–80,000 nodes, RSS
/// slope ~6.7 KiB per node; bench/RESULTS.md), with room for soft state and instances.
const SIM_BYTES_PER_NODE: u64 = 8 << 10;
/// What a run takes besides its nodes (engine, instance table, queues).
const SIM_BASE_BYTES: u64 = 256 << 20;

/// Live wasm instances the run may keep: [`SIM_MAX_INSTANCES`], or fewer where the kernel's
/// limit on memory mappings (`vm.max_map_count`, 65,530 by default) would be hit first —
/// each instance's linear memory is about two mappings, and the allocator needs some too.
/// Past it the least recently used instance is dropped and rebuilt when its node next runs
/// (that node's wasm globals start afresh; counted), instead of an allocation failing.
fn max_instances() -> usize {
    let maps = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(65_530);
    SIM_MAX_INSTANCES
        .min(maps.saturating_sub(16_384) / 2)
        .max(1024)
}

/// Refuse a scenario whose nodes would not fit in the memory this machine has available
/// (`MemAvailable` in /proc/meminfo; no check where it cannot be read).
fn check_memory(spec: &ants_sim::scenario::TopologySpec) -> anyhow::Result<()> {
    let Some(nodes) = spec.node_count() else {
        return Ok(());
    };
    let need = nodes * SIM_BYTES_PER_NODE + SIM_BASE_BYTES;
    let Some(available) = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib << 10)
    }) else {
        return Ok(());
    };
    if need > available {
        bail!(
            "{nodes} nodes need about {:.1} GiB ({} KiB per node, measured), and this machine \
             has {:.1} GiB available: use fewer nodes or a machine with more memory",
            need as f64 / f64::from(1u32 << 30),
            SIM_BYTES_PER_NODE >> 10,
            available as f64 / f64::from(1u32 << 30)
        );
    }
    Ok(())
}

impl SimArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let text = std::fs::read_to_string(&self.scenario)
            .with_context(|| format!("cannot read {}", self.scenario.display()))?;
        let origin = self.scenario.display().to_string();
        let scenario = Scenario::parse(&text, &origin)?;
        check_memory(&scenario.topology).with_context(|| origin.clone())?;
        let seed = match (self.seed, std::env::var("ANTS_SIM_SEED").ok()) {
            (Some(s), _) => s,
            (None, Some(v)) => v
                .trim()
                .parse()
                .with_context(|| format!("ANTS_SIM_SEED={v} is not a number"))?,
            (None, None) => scenario.seed.unwrap_or(1),
        };
        let base = self.scenario.parent().unwrap_or(Path::new("."));
        let mut capsules = BTreeMap::new();
        for name in scenario.capsule_names() {
            let bytes = resolve_capsule(&name, base, self.quiet)?;
            capsules.insert(name, bytes);
        }
        let nodes = scenario.topology.node_count().unwrap_or(0);
        let asked = self.workers;
        let mut workers = asked.unwrap_or_else(|| {
            if nodes >= PARALLEL_MIN_NODES {
                std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
            } else {
                1
            }
        });
        // No wall-clock deadline: a simulation must give the same result every time, so
        // capsules are bounded by fuel alone (host calls are charged fuel too). Each node
        // runs on its own instances (globals and memory per node, as on a real network):
        // memories reserve only what they use, and up to SIM_MAX_INSTANCES stay live (the
        // least recently used is dropped and rebuilt, losing that node's state, counted).
        // One engine for every thread; each thread of a parallel run keeps its own
        // instances, and they share the cap (set below, once the thread count is known).
        let max_instances = max_instances();
        let config = ExecutorConfig {
            max_exec_time: None,
            compact_memories: true,
            max_instances,
            ..ExecutorConfig::default()
        };
        let compiler = Compiler::new(config)
            .map_err(|e| anyhow::anyhow!("cannot create the wasm engine: {e:#}"))?;
        let engine = || {
            WasmExecutor::new(compiler.clone())
                .map_err(|e| anyhow::anyhow!("cannot create the wasm engine: {e:#}"))
        };
        let (mut sim, names) = scenario
            .build(seed, engine()?, &capsules)
            .with_context(|| origin.clone())?;
        let trace = match &self.trace {
            Some(path) => {
                let f = std::fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                Trace::to_writer(Box::new(std::io::BufWriter::with_capacity(1 << 20, f)))
            }
            None if scenario.output.trace => Trace::hashed(),
            None => Trace::off(),
        };
        sim.set_trace(trace);
        if self.map.is_some() {
            let n = sim.topology().len();
            if n > MAX_MAP_NODES {
                bail!("--map draws at most {MAX_MAP_NODES} nodes; this topology has {n}");
            }
            sim.count_link_capsules();
        }
        if workers > 1
            && let Some(why) = sim.parallel_obstacle(workers)
        {
            if asked.is_some() && !self.quiet {
                eprintln!("running on 1 thread, not {workers}: {why}");
            }
            workers = 1;
        }
        if !self.quiet && !self.json {
            eprintln!(
                "simulating {} for {:?} virtual, seed {seed}, {workers} thread{}",
                self.scenario.display(),
                scenario.duration(),
                if workers == 1 { "" } else { "s" }
            );
        }

        let duration = scenario.duration();
        let bar = Progress::new(duration, !self.quiet && std::io::stderr().is_terminal());
        let start = Instant::now();
        if workers > 1 {
            let cap = (max_instances / workers as usize).max(1024);
            sim.executor_mut().set_max_instances(cap);
            let executors = (1..workers)
                .map(|_| {
                    let mut e = engine()?;
                    e.set_max_instances(cap);
                    Ok(e)
                })
                .collect::<anyhow::Result<_>>()?;
            sim.run_parallel(duration, executors, |now, hops| bar.update(now, hops))
                .map_err(|e| anyhow::anyhow!("cannot run on {workers} threads: {e}"))?;
        } else {
            sim.run_until_with(duration, 1 << 14, |s| {
                bar.update(s.now(), s.stats().capsule_hops)
            });
        }
        let wall = start.elapsed();
        bar.finish();
        if let Err(e) = sim.finish_trace() {
            bail!("writing the trace failed: {e}");
        }

        if let Some(path) = &self.map {
            write_map(
                &sim,
                path,
                scenario.name.as_deref().unwrap_or(&origin),
                seed,
            )?;
        }
        let nodes = sim.topology().len();
        let report = Report::new(
            &sim,
            scenario.name.clone(),
            &names,
            self.json || nodes <= 32,
        );
        let hops = report.capsule_hops;
        let rate = hops as f64 / wall.as_secs_f64().max(1e-9);
        let rss = peak_rss_bytes();
        let mut out = std::io::stdout().lock();
        if self.json {
            let out_json = JsonOut {
                report: &report,
                wall: Wall {
                    seconds: wall.as_secs_f64(),
                    capsule_hops_per_sec: rate,
                    peak_rss_bytes: rss,
                },
            };
            serde_json::to_writer_pretty(&mut out, &out_json)?;
            writeln!(out)?;
        } else if self.quiet {
            match &report.trace {
                Some(t) => writeln!(out, "trace sha256 {} ({} lines)", t.sha256, t.lines)?,
                None => writeln!(out, "trace off")?,
            }
        } else {
            write!(out, "{}", report.render())?;
            writeln!(
                out,
                "wall       {:.3} s: {} capsule-hops/s, peak RSS {} MiB",
                wall.as_secs_f64(),
                si(rate),
                rss >> 20
            )?;
        }
        if let Some(v) = sim.violation() {
            let mut err = std::io::stderr().lock();
            writeln!(err, "watch violated: {}", v.property)?;
            writeln!(
                err,
                "  at {:.6} s of virtual time, on node {}: {}",
                v.at.as_secs_f64(),
                v.node,
                v.detail
            )?;
            writeln!(err, "  the last trace lines before it:")?;
            for line in &v.recent {
                writeln!(err, "    {line}")?;
            }
            writeln!(
                err,
                "  reproduce: ants sim {} --seed {seed}",
                self.scenario.display()
            )?;
            return Ok(ExitCode::FAILURE);
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// The picture of the run (`--map`): SVG, or a page when `path` ends in `.html`.
fn write_map<E: ants_core::Executor>(
    sim: &ants_sim::Sim<E>,
    path: &Path,
    name: &str,
    seed: u64,
) -> anyhow::Result<()> {
    use ants_node::map::Map;
    use ants_node::map::svg::{Refresh, render_page, render_svg};
    let map = Map::from_sim(sim, &format!("ants sim {name}, seed {seed}"));
    let svg = render_svg(&map);
    let text = if path.extension().is_some_and(|e| e == "html") {
        render_page(&map, &svg, Refresh::Never)
    } else {
        svg
    };
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// `--json` output: the report, then what varies between runs.
#[derive(serde::Serialize)]
struct JsonOut<'a> {
    #[serde(flatten)]
    report: &'a Report,
    wall: Wall,
}

/// Wall-clock figures (not deterministic).
#[derive(serde::Serialize)]
struct Wall {
    seconds: f64,
    capsule_hops_per_sec: f64,
    peak_rss_bytes: u64,
}

/// Module bytes for a scenario's `capsule`: a `.wasm` / `.wat` path (relative to the
/// scenario file, then to the current directory), or a shipped capsule name built from
/// `capsules/<name>` in the checkout that contains the scenario or the current directory.
fn resolve_capsule(name: &str, base: &Path, quiet: bool) -> anyhow::Result<Vec<u8>> {
    let as_path = Path::new(name);
    let is_file = matches!(
        as_path.extension().and_then(|e| e.to_str()),
        Some("wasm" | "wat")
    );
    if is_file {
        let path = [base.join(as_path), as_path.to_path_buf()]
            .into_iter()
            .find(|p| p.is_file())
            .with_context(|| {
                format!("capsule file {name} not found (relative to the scenario or here)")
            })?;
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        if path.extension().is_some_and(|e| e == "wat") {
            return wat::parse_bytes(&bytes)
                .map(|b| b.into_owned())
                .with_context(|| format!("{} is not valid WebAssembly text", path.display()));
        }
        return Ok(bytes);
    }
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!(
            "capsule = \"{name}\": give a shipped capsule name (forward, multicast …) or a .wasm/.wat path"
        );
    }
    let here = std::env::current_dir().unwrap_or_default();
    let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
    let dir = base
        .ancestors()
        .chain(here.ancestors())
        .map(|d| d.join("capsules").join(name))
        .find(|d| d.join("Cargo.toml").is_file())
        .with_context(|| {
            format!(
                "capsule = \"{name}\": no capsules/{name} in the checkout around the scenario or \
                 the current directory; build it with `ants capsule build` and give the .wasm path"
            )
        })?;
    if !quiet {
        eprintln!("building {}", dir.display());
    }
    let built = ants_capsule_build::build(&dir, &BuildOptions::default())
        .with_context(|| format!("building {} failed", dir.display()))?;
    std::fs::read(&built.path).with_context(|| format!("cannot read {}", built.path.display()))
}

/// A progress bar on stderr for long runs (shown after a second, only on a terminal).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    start: Instant,
}

impl Progress {
    fn new(duration: Duration, enabled: bool) -> Progress {
        let bar = enabled.then(|| {
            let total = u64::try_from(duration.as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
            let bar = indicatif::ProgressBar::hidden();
            bar.set_length(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {pos}/{len} ms virtual  {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        Progress {
            bar,
            start: Instant::now(),
        }
    }

    fn update(&self, now: Duration, hops: u64) {
        let Some(bar) = &self.bar else { return };
        if bar.is_hidden() && self.start.elapsed() > Duration::from_secs(1) {
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
        bar.set_position(u64::try_from(now.as_millis()).unwrap_or(u64::MAX));
        bar.set_message(format!("{hops} capsule hops"));
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `1.23 M`, `456 k`.
fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Peak resident set size of this process in bytes (`VmHWM` of /proc/self/status; 0 where
/// that is not available).
fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kb * 1024)
        })
        .unwrap_or(0)
}
