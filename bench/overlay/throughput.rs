//! (a) capsules/s through the chain, capsule nodes versus plain relays, interleaved.

use super::*;

#[derive(Debug)]
pub(crate) struct ThroughputOpts {
    pub(crate) seconds: f64,
    pub(crate) slice: f64,
    pub(crate) runs: usize,
    pub(crate) rate: Option<f64>,
    pub(crate) payload: usize,
    pub(crate) warmup: f64,
    pub(crate) pin: bool,
    pub(crate) modes: Vec<Mode>,
}

/// Counters read at one instant.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) at: Instant,
    pub(crate) offered: u64,
    pub(crate) delivered: u64,
    pub(crate) hop_cpu: Vec<Duration>,
    pub(crate) gen_cpu: Duration,
    pub(crate) sink_cpu: Duration,
    pub(crate) kernel_drops: Vec<u64>,
    pub(crate) machine: [u64; 4],
    pub(crate) process: u64,
}

impl Snapshot {
    pub(crate) fn take(chain: &Chain, generator: &Generator) -> Snapshot {
        let drops = udp_drops();
        let sink_port = chain.sink.addr.port();
        let ports = chain.hop_ports.iter().chain([&sink_port]);
        Snapshot {
            at: Instant::now(),
            offered: generator.sent(),
            delivered: chain.sink.received(),
            hop_cpu: chain.hop_tids.iter().map(|t| thread_cpu(*t)).collect(),
            gen_cpu: thread_cpu(generator.tid),
            sink_cpu: thread_cpu(chain.sink.tid),
            kernel_drops: ports.map(|p| drops.get(p).copied().unwrap_or(0)).collect(),
            machine: machine_ticks(),
            process: process_ticks(None).unwrap_or(0),
        }
    }
}

/// Counter increments summed over the measurement slices of one mode.
#[derive(Debug, Clone, Default)]
pub(crate) struct Totals {
    pub(crate) secs: f64,
    pub(crate) offered: u64,
    pub(crate) delivered: u64,
    pub(crate) hop_cpu: Vec<Duration>,
    pub(crate) gen_cpu: Duration,
    pub(crate) sink_cpu: Duration,
    pub(crate) kernel_drops: Vec<u64>,
    pub(crate) machine: [u64; 4],
    pub(crate) process: u64,
    /// Sent and delivered over whole slices (warm-up and drain included), for loss.
    pub(crate) slice_offered: u64,
    pub(crate) slice_delivered: u64,
}

impl Totals {
    pub(crate) fn add(&mut self, a: &Snapshot, b: &Snapshot) {
        fn acc<T: Copy + std::ops::AddAssign>(sum: &mut Vec<T>, d: impl Iterator<Item = T>) {
            for (i, x) in d.enumerate() {
                match sum.get_mut(i) {
                    Some(s) => *s += x,
                    None => sum.push(x),
                }
            }
        }
        self.secs += (b.at - a.at).as_secs_f64();
        self.offered += b.offered - a.offered;
        self.delivered += b.delivered - a.delivered;
        acc(
            &mut self.hop_cpu,
            a.hop_cpu
                .iter()
                .zip(&b.hop_cpu)
                .map(|(x, y)| y.saturating_sub(*x)),
        );
        self.gen_cpu += b.gen_cpu.saturating_sub(a.gen_cpu);
        self.sink_cpu += b.sink_cpu.saturating_sub(a.sink_cpu);
        acc(
            &mut self.kernel_drops,
            a.kernel_drops
                .iter()
                .zip(&b.kernel_drops)
                .map(|(x, y)| y.saturating_sub(*x)),
        );
        for i in 0..4 {
            self.machine[i] += b.machine[i].saturating_sub(a.machine[i]);
        }
        self.process += b.process.saturating_sub(a.process);
    }
}

/// What one mode measured in one run.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) mode: Mode,
    /// What was measured (the mode's name, or the workers benchmark's setting).
    pub(crate) label: String,
    pub(crate) offered_pps: f64,
    pub(crate) delivered_pps: f64,
    pub(crate) loss_pct: f64,
    /// Forwarding CPU (all hops) per delivered datagram, ns.
    pub(crate) cpu_ns_per_pkt: f64,
    /// Each hop's share of one core during the window, %.
    pub(crate) hop_util: Vec<f64>,
    pub(crate) gen_util: f64,
    pub(crate) sink_util: f64,
    pub(crate) kernel_drops: Vec<u64>,
    /// Shares of the machine (all cores = 100 %): this process (including the softirq work
    /// charged to it), everything else, steal, idle.
    pub(crate) machine: [f64; 4],
}

impl Sample {
    /// One row of a run table: run, label, rates, loss, CPU, `extra`, machine shares (and
    /// the chain's drop report on stderr).
    pub(crate) fn print_row(&self, run: usize, chain: &Chain, extra: &str) {
        println!(
            "| {run} | {} | {:.0} | {:.0} | {:.1} | {:.0} | {} | {:.0} / {:.0} | {extra} | {} |",
            self.label,
            self.offered_pps,
            self.delivered_pps,
            self.loss_pct,
            self.cpu_ns_per_pkt,
            join_runs(&self.hop_util, 0),
            self.gen_util,
            self.sink_util,
            join_runs(&self.machine, 0),
        );
        eprintln!("  run {run} {}: {}", self.label, chain.drop_report());
    }

    pub(crate) fn new(mode: Mode, label: &str, t: &Totals) -> Sample {
        let secs = t.secs.max(1e-9);
        let (offered, delivered) = (t.offered as f64, t.delivered as f64);
        let util = |d: Duration| d.as_secs_f64() / secs * 100.0;
        let m: Vec<f64> = t.machine.iter().map(|x| *x as f64).collect();
        let total = m.iter().sum::<f64>().max(1.0);
        let ours = t.process as f64;
        Sample {
            mode,
            label: label.to_owned(),
            offered_pps: offered / secs,
            delivered_pps: delivered / secs,
            loss_pct: if t.slice_offered > 0 {
                (1.0 - t.slice_delivered as f64 / t.slice_offered as f64) * 100.0
            } else {
                0.0
            },
            cpu_ns_per_pkt: t.hop_cpu.iter().sum::<Duration>().as_nanos() as f64
                / delivered.max(1.0),
            hop_util: t.hop_cpu.iter().map(|d| util(*d)).collect(),
            gen_util: util(t.gen_cpu),
            sink_util: util(t.sink_cpu),
            kernel_drops: t.kernel_drops.clone(),
            machine: [
                ours / total * 100.0,
                (m[0] + m[1] - ours).max(0.0) / total * 100.0,
                m[2] / total * 100.0,
                m[3] / total * 100.0,
            ],
        }
    }
}

/// One run: every mode's chain up at once, each with a paused generator; then slices of
/// `slice` seconds (after `warmup`) taken in turn per mode, so background noise hits all
/// modes alike, until each mode has `seconds` of window.
pub(crate) fn run_once(
    wasm: &[u8],
    datagrams: &Arc<Vec<Vec<u8>>>,
    o: &ThroughputOpts,
) -> Result<Vec<(Chain, Sample)>> {
    let mut chains = Vec::new();
    for &mode in &o.modes {
        let chain = Chain::start(mode, wasm)?;
        let generator = Generator::spawn(chain.entry, datagrams.clone(), o.rate, true)?;
        if o.pin {
            pin_thread(generator.tid, 0)?;
            pin_thread(chain.sink.tid, 0)?;
            for t in &chain.hop_tids {
                pin_thread(*t, 1)?;
            }
        }
        chains.push((chain, generator));
    }
    Ok(measure(chains, o))
}

/// Open each chain's generator in turn for slices of `o.slice` seconds (after `o.warmup`),
/// until each has `o.seconds` of window; then stop the generators.
pub(crate) fn measure(chains: Vec<(Chain, Generator)>, o: &ThroughputOpts) -> Vec<(Chain, Sample)> {
    let mut chains: Vec<(Chain, Generator, Totals)> = chains
        .into_iter()
        .map(|(c, g)| (c, g, Totals::default()))
        .collect();
    let slices = (o.seconds / o.slice).ceil().max(1.0) as usize;
    for _ in 0..slices {
        for (chain, generator, totals) in &mut chains {
            let (offered0, delivered0) = (generator.sent(), chain.sink.received());
            generator.set_paused(false);
            std::thread::sleep(Duration::from_secs_f64(o.warmup));
            let a = Snapshot::take(chain, generator);
            std::thread::sleep(Duration::from_secs_f64(o.slice));
            let b = Snapshot::take(chain, generator);
            generator.set_paused(true);
            totals.add(&a, &b);
            // Let the chain drain (the sink sees nothing new for 50 ms, at most 2 s), so
            // loss is counted over the whole slice: all that was sent vs all that arrived.
            let deadline = Instant::now() + Duration::from_secs(2);
            let mut last = chain.sink.received();
            loop {
                std::thread::sleep(Duration::from_millis(50));
                let now = chain.sink.received();
                if now == last || Instant::now() > deadline {
                    break;
                }
                last = now;
            }
            totals.slice_offered += generator.sent() - offered0;
            totals.slice_delivered += chain.sink.received() - delivered0;
        }
    }
    let mut out = Vec::new();
    for (chain, generator, totals) in chains {
        if let Err(e) = generator.stop() {
            eprintln!("generator: {e:#}");
        }
        let s = Sample::new(chain.mode, &chain.label, &totals);
        out.push((chain, s));
    }
    out
}

pub(crate) fn throughput(o: &ThroughputOpts) -> Result<()> {
    let wasm = ants_bench::capsule_bytes("forward");
    let ty = ants_app::capsule_type_of(&wasm);
    let datagrams = Arc::new(capsule_datagrams(ty, o.payload, 1024));
    let rate = o
        .rate
        .map_or_else(|| "flat out".to_owned(), |r| format!("{r:.0} pps"));
    println!(
        "# throughput: 3-hop chain on 127.0.0.1, {} B datagrams (forward capsule, type {}), \
         generator {rate}; per run and mode {} s of window in {} s slices (each after {} s \
         warm-up), modes interleaved slice by slice; loss counted over whole slices incl. drain; \
         {} runs",
        datagrams[0].len(),
        ty.short(),
        o.seconds,
        o.slice,
        o.warmup,
        o.runs
    );
    println!(
        "# plain = relay loop on BatchSocket + AsyncFd (current-thread tokio, \
         {MAX_BATCHES_PER_TURN} recvmmsg batches of 64 per wake-up, sendmmsg after each batch)"
    );
    println!(
        "# {}\n",
        if o.pin {
            "threads pinned: generator + sink on CPU 0, the three hops share CPU 1"
        } else {
            "threads not pinned"
        }
    );
    println!(
        "| run | mode | offered pps | delivered pps | loss % | hop CPU ns/pkt (3 hops) | \
         CPU % n1 / n2 / n3 | CPU % gen / sink | kernel rcvbuf drops n1 / n2 / n3 / sink | \
         machine % ours / others / steal / idle |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut samples: Vec<Sample> = Vec::new();
    for run in 1..=o.runs {
        for (chain, s) in run_once(&wasm, &datagrams, o)? {
            let drops: Vec<String> = s.kernel_drops.iter().map(u64::to_string).collect();
            s.print_row(run, &chain, &drops.join(" / "));
            samples.push(s);
        }
    }
    println!(
        "\n| mode | offered pps | delivered pps | loss % | hop CPU ns/pkt | (medians of {} runs) |",
        o.runs
    );
    println!("|---|---|---|---|---|---|");
    let of = |m: Mode, f: fn(&Sample) -> f64| -> Vec<f64> {
        samples.iter().filter(|s| s.mode == m).map(f).collect()
    };
    for &m in &o.modes {
        let d = of(m, |s| s.delivered_pps);
        println!(
            "| {} | {:.0} | **{:.0}** | {:.1} | {:.0} | delivered: {} |",
            m.name(),
            median(&of(m, |s| s.offered_pps)),
            median(&d),
            median(&of(m, |s| s.loss_pct)),
            median(&of(m, |s| s.cpu_ns_per_pkt)),
            join_runs(&d, 0)
        );
    }
    if o.modes.contains(&Mode::Plain) && o.modes.contains(&Mode::Capsule) {
        let (p, c) = (
            of(Mode::Plain, |s| s.delivered_pps),
            of(Mode::Capsule, |s| s.delivered_pps),
        );
        let per_run: Vec<f64> = c.iter().zip(&p).map(|(c, p)| c / p).collect();
        let (pc, cc) = (
            of(Mode::Plain, |s| s.cpu_ns_per_pkt),
            of(Mode::Capsule, |s| s.cpu_ns_per_pkt),
        );
        let cpu_ratio: Vec<f64> = pc.iter().zip(&cc).map(|(p, c)| p / c).collect();
        println!(
            "\nratio capsule/plain, delivered pps: median of runs {:.2} (runs {}), of medians \
             {:.2}; target >= 0.8",
            median(&per_run),
            join_runs(&per_run, 2),
            median(&c) / median(&p)
        );
        println!(
            "ratio plain/capsule, hop CPU per delivered packet (capsule efficiency): median {:.2} \
             (runs {})",
            median(&cpu_ratio),
            join_runs(&cpu_ratio, 2)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// (b) cold load
// ---------------------------------------------------------------------------------------
