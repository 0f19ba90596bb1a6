//! `router-bench`: IPv4 forwarding throughput of one router under test in a network
//! namespace, three ways in the same run (DESIGN.md §8–§9):
//!
//! - `kernel`: the dut namespace's kernel forwards (addresses, a route, ip_forward=1);
//! - `ants-ip`: `ants run` in router mode forwards the same plain UDP traffic itself
//!   (AF_PACKET; the dut's veths have no kernel addresses, ip_forward=0);
//! - `ants-afxdp`: the same plain traffic through AF_XDP sockets (`datapath = "afxdp"`),
//!   forwarded in userspace;
//! - `ants-xdp`: the same plain traffic with the node's XDP fast path (`fast_path = "xdp"`):
//!   forwarded in the dut's veth NAPI poll, which is made a thread (`threaded = 1`) pinned to
//!   the router's CPU so its work is counted there;
//! - `ants-capsule`: the same router receives UDP to its address, port 3322, carrying a
//!   `forward` capsule for the sink's active address, runs it and sends it on as UDP;
//! - `ants-xdp-capsule`: the same capsules on AF_XDP with the XDP fast path, which hands
//!   them to the router's AF_XDP sockets.
//!
//! trafgen in the `gen` namespace on CPU 0 → router on CPU 1 (RPS of its ingress veth; the
//! `ants` process pinned) → `sink` namespace, which drops IPv4 at nft ingress (its receive work steered to CPU 1 too).
//! Modes take turns within each size and round, so background load hits all alike; medians
//! of the rounds are reported. CPU per packet is the router CPU's busy time from /proc/stat
//! divided by delivered packets, the same measure for every mode.
//!
//! Map: [`topo`] (namespaces, veths, RPS, sink, kernel on/off, cleanup), [`frames`] (the
//! generated frames and trafgen configs), [`dut`] (`ants` binary, config, module, start),
//! [`procs`] (child processes, tools, signals), [`measure`] (one point), [`sweep`](mod@sweep) (rate
//! sweep for the loss-free rate), [`report`] (Markdown, JSON), [`plot`] (SVG).

pub(crate) use std::cell::Cell;
pub(crate) use std::net::Ipv4Addr;
pub(crate) use std::path::{Path, PathBuf};
pub(crate) use std::sync::atomic::{AtomicBool, Ordering};
pub(crate) use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub(crate) use ants_bench::{
    CpuTicks, ants_binary, clock_ticks_per_sec, join_runs, median, pin_thread, process_ticks,
    utc_date, workspace_root,
};
pub(crate) use ants_wire::{Address, CapsuleType};
pub(crate) use anyhow::{Context, Result, anyhow, bail};
pub(crate) use clap::{Parser, ValueEnum};
pub(crate) use serde::Serialize;

mod dut;
mod frames;
mod measure;
mod plot;
mod procs;
mod report;
mod sweep;
mod topo;

use dut::*;
use frames::*;
use measure::*;
use procs::*;
use report::*;
use sweep::*;
use topo::*;

/// Forwarding throughput: kernel vs ants router mode (plain IP and capsules), in network
/// namespaces. Needs root; installs trafgen/nftables with apt-get when missing.
#[derive(Parser, Debug, Clone, Serialize)]
#[command(name = "router-bench")]
pub(crate) struct Cli {
    /// Measurement window per point, seconds.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) duration: f64,
    /// IPv4 packet sizes in bytes (46..=1500; capsules are at least 120).
    #[arg(long, value_delimiter = ',', default_values_t = [64, 1500])]
    pub(crate) sizes: Vec<usize>,
    /// Routers under test, measured in turn within every size and round.
    #[arg(long, value_enum, value_delimiter = ',',
          default_values_t = [Mode::Kernel, Mode::AntsIp, Mode::AntsAfxdp, Mode::AntsXdp, Mode::AntsCapsule, Mode::AntsXdpCapsule])]
    pub(crate) modes: Vec<Mode>,
    /// Rounds of the flat-out measurement; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub(crate) rounds: usize,
    /// Warm-up after the first frames reach the sink, seconds.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) warmup: f64,
    /// Also sweep the offered rate to find each mode's loss-free rate (loss < 0.1 %).
    #[arg(long)]
    pub(crate) sweep: bool,
    /// Window of one sweep point, seconds.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) sweep_duration: f64,
    /// Evenly spaced sweep rates up to the generator's ceiling.
    #[arg(long, default_value_t = 6)]
    pub(crate) sweep_steps: usize,
    /// Bisection steps after the stepped sweep.
    #[arg(long, default_value_t = 3)]
    pub(crate) sweep_refine: usize,
    /// Output directory for `router-<date>.md/.json/.svg` and the ants and trafgen logs.
    #[arg(long, default_value = "bench/router")]
    pub(crate) out: PathBuf,
    /// The `ants` binary (default: target/release/ants, built first).
    #[arg(long)]
    pub(crate) ants: Option<PathBuf>,
    /// Do not run `cargo build --release -p ants-node` first.
    #[arg(long)]
    pub(crate) no_build: bool,
    /// `[router] busy_poll_us` of the AF_XDP modes (default: the node's; 0 turns busy
    /// polling off).
    #[arg(long)]
    pub(crate) busy_poll_us: Option<u32>,
    /// `[router] busy_poll` of the AF_XDP modes: from start to stop, or only while the
    /// router falls behind (default: the node's, `overload`; ignored with `--busy-poll-us 0`).
    #[arg(long, value_enum)]
    pub(crate) busy_poll: Option<BusyPollWhen>,
    /// `[node] workers` of the `ants` router (one per receive queue: the router's veths get
    /// this many queues). Each count is a run of its own, on a topology of its own, with its
    /// own report (`router-<date>-workers-N.*` when more than one is given). With more than
    /// one worker the `ants` process may use every CPU, the generator's included; CPU 1's
    /// time per packet then is not the router's whole cost.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2],
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) workers: Vec<u16>,
    /// Flows (UDP source ports) the generator sends round-robin; a flow's frames reach one
    /// worker, so several workers need several flows (default: 1 for one worker, 64 for
    /// more).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) flows: Option<u16>,
    /// Give up on a point when no frame reaches the sink within this many seconds.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) ready_timeout: f64,
}

/// The router under test.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Mode {
    /// The namespace's kernel forwards.
    Kernel,
    /// `ants` router mode forwards plain IPv4/UDP (AF_PACKET, userspace).
    AntsIp,
    /// `ants` router mode with `datapath = "afxdp"`: plain IPv4/UDP through AF_XDP sockets,
    /// forwarded in userspace (NAPI threaded and pinned to the router's CPU).
    AntsAfxdp,
    /// `ants` router mode with `fast_path = "xdp"`: plain IPv4/UDP forwarded by its XDP
    /// program (native XDP on the veth, NAPI threaded and pinned to the router's CPU).
    AntsXdp,
    /// `ants` router mode runs a `forward` capsule per packet.
    AntsCapsule,
    /// The same capsules on the fastest datapath: the XDP fast path hands them to AF_XDP
    /// sockets (`datapath = "afxdp"`, `fast_path = "xdp"`).
    AntsXdpCapsule,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Kernel => "kernel",
            Mode::AntsIp => "ants-ip",
            Mode::AntsAfxdp => "ants-afxdp",
            Mode::AntsXdp => "ants-xdp",
            Mode::AntsCapsule => "ants-capsule",
            Mode::AntsXdpCapsule => "ants-xdp-capsule",
        }
    }

    /// The modes that run `ants`.
    pub(crate) const ANTS: [Mode; 5] = [
        Mode::AntsIp,
        Mode::AntsAfxdp,
        Mode::AntsXdp,
        Mode::AntsCapsule,
        Mode::AntsXdpCapsule,
    ];

    /// Frames are `forward` capsules to the router.
    pub(crate) fn capsules(self) -> bool {
        matches!(self, Mode::AntsCapsule | Mode::AntsXdpCapsule)
    }

    /// The node's XDP fast path is on.
    pub(crate) fn fast_path(self) -> bool {
        matches!(self, Mode::AntsXdp | Mode::AntsXdpCapsule)
    }

    /// The datapath is AF_XDP.
    pub(crate) fn afxdp(self) -> bool {
        matches!(self, Mode::AntsAfxdp | Mode::AntsXdpCapsule)
    }
}

fn main() -> Result<()> {
    let mut cli = Cli::parse();
    cli.modes.dedup();
    cli.workers.dedup();
    for &s in &cli.sizes {
        if !(MIN_SIZE..=MAX_SIZE).contains(&s) {
            bail!("--sizes: {s} is outside {MIN_SIZE}..={MAX_SIZE} (IPv4 packet bytes)");
        }
    }
    if cli.rounds == 0 || cli.modes.is_empty() || cli.sizes.is_empty() || cli.workers.is_empty() {
        bail!("nothing to measure (--rounds, --modes, --sizes and --workers must not be empty)");
    }
    require_root()?;
    let machine = Machine::read();
    if machine.nproc < 2 {
        bail!("needs at least 2 CPUs (generator on CPU {GEN_CPU}, router on CPU {DUT_CPU})");
    }
    ensure_tools()?;
    std::fs::create_dir_all(&cli.out)
        .with_context(|| format!("cannot create {}", cli.out.display()))?;
    let stamp = machine.date.clone();
    let uses_ants = cli.modes.iter().any(|m| *m != Mode::Kernel);
    // Build before pinning this process to one CPU.
    let binary = if uses_ants {
        Some((
            ants_binary(cli.ants.as_deref(), cli.no_build)?,
            forward_module()?,
        ))
    } else {
        None
    };
    install_signal_handlers();
    // This process and everything it starts (setup commands, trafgen) stay off the router's CPU.
    pin_thread(0, GEN_CPU)?;
    cleanup_stale()?;

    let several = cli.workers.len() > 1;
    for &workers in &cli.workers {
        // The report of this count: its options name the one count it ran with.
        let one = Cli {
            workers: vec![workers],
            flows: Some(cli.flows.unwrap_or(if workers > 1 { 64 } else { 1 })),
            ..cli.clone()
        };
        let stamp = if several {
            format!("{stamp}-workers-{workers}")
        } else {
            stamp.clone()
        };
        run_workers(&one, &machine, binary.clone(), &stamp)?;
    }
    Ok(())
}

/// One count of workers: its topology, every round, its report.
fn run_workers(
    cli: &Cli,
    machine: &Machine,
    binary: Option<(PathBuf, (Vec<u8>, CapsuleType))>,
    stamp: &str,
) -> Result<()> {
    let workers = cli.workers.first().copied().unwrap_or(1);
    let topo = Topology::create(usize::from(workers))?;
    println!(
        "topology up ({workers} worker(s)): {} → {} → {} (temporary files in {})",
        topo.gen_ns,
        topo.dut_ns,
        topo.sink_ns,
        topo.dir.display()
    );
    let ants = match binary {
        Some((bin, forward)) => {
            let log = cli.out.join(format!("router-{stamp}-ants.log"));
            Some(AntsSetup::prepare(
                &topo,
                bin,
                forward,
                log,
                BusyPollKeys {
                    us: cli.busy_poll_us,
                    when: cli.busy_poll,
                },
                workers,
            )?)
        }
        None => None,
    };
    let trafgen_log = cli.out.join(format!("router-{stamp}-trafgen.log"));
    let bench = Bench {
        topo,
        ants,
        warmup: Duration::from_secs_f64(cli.warmup),
        ready_timeout: Duration::from_secs_f64(cli.ready_timeout),
        trafgen_log,
        flows: cli.flows.unwrap_or(1),
    };
    let result = run_all(cli, &bench);
    if let Err(e) = &result
        && format!("{e:#}").contains("trafgen")
    {
        let tail = log_tail(&bench.trafgen_log, 10);
        if !tail.is_empty() {
            eprintln!("last lines of the trafgen log:\n{tail}");
        }
    }
    let (samples, sweeps) = result?;
    drop(bench); // delete the namespaces before writing
    let report = Report {
        machine: machine.clone(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        options: cli.clone(),
        samples,
        sweep: sweeps,
    };
    let (md, json, svg) = write_report(&report, &cli.out, stamp)?;
    println!("{}", markdown(&report));
    println!(
        "wrote {}, {}, {}",
        md.display(),
        json.display(),
        svg.display()
    );
    Ok(())
}

/// The flat-out rounds, then the sweep if asked.
fn run_all(cli: &Cli, bench: &Bench) -> Result<(Vec<Sample>, Vec<SweepResult>)> {
    let window = Duration::from_secs_f64(cli.duration);
    let mut samples = Vec::new();
    for round in 1..=cli.rounds {
        for &size in &cli.sizes {
            // Rotate the order every round so no mode always goes first.
            let n = cli.modes.len();
            for i in 0..n {
                let mode = cli.modes[(i + round - 1) % n];
                let s = bench.point(mode, size, None, window, round)?;
                println!(
                    "round {round} size {size:>4} {:<12} offered {:>9.0} pps, delivered {:>9.0} pps, \
                     loss {:>5.2} %, CPU{DUT_CPU} {:>5.2} µs/pkt (non-idle {:>5.2}; {:>3.0} % busy, \
                     others {:>3.0} %), forwarder {:>5.2} µs/pkt{}",
                    mode.name(),
                    s.offered_pps,
                    s.delivered_pps,
                    s.loss_pct,
                    s.cpu_us_per_pkt,
                    s.nonidle_us_per_pkt,
                    s.cpu1_util_pct,
                    s.cpu1_others_pct,
                    s.forwarder_us_per_pkt,
                    s.ants_us_per_pkt
                        .map(|u| format!(", ants {u:.2} µs/pkt"))
                        .unwrap_or_default()
                );
                samples.push(s);
            }
        }
    }
    let sweeps = if cli.sweep {
        sweep(cli, bench, &mut samples)?
    } else {
        Vec::new()
    };
    Ok((samples, sweeps))
}
