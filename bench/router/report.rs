//! The recorded result: machine facts, the options, every sample and the sweep, as JSON;
//! medians and ratios to the kernel as Markdown; the plot as SVG.

use super::*;

/// Facts about the machine and the checkout the numbers come from.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    /// UTC date of the run.
    pub(crate) date: String,
    pub(crate) unix_time: u64,
    pub(crate) nproc: usize,
    pub(crate) cpu_model: String,
    pub(crate) kernel: String,
    pub(crate) git_rev: String,
    pub(crate) trafgen: String,
}

impl Machine {
    /// Read /proc, git and trafgen's version line.
    pub(crate) fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |key: &str| -> Option<String> {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        };
        let root = workspace_root();
        let root_s = root.to_string_lossy();
        let git = |args: &[&str]| {
            let mut argv = vec!["git", "-C", &root_s];
            argv.extend_from_slice(args);
            run(&argv).map(|s| s.trim().to_string()).ok()
        };
        let dirty = git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
        let git_rev = git(&["rev-parse", "--short", "HEAD"])
            .map(|r| {
                if dirty {
                    format!("{r} (uncommitted changes)")
                } else {
                    r
                }
            })
            .unwrap_or_else(|| "unknown".into());
        let unix_time = unix_now();
        Machine {
            date: utc_date(unix_time),
            unix_time,
            nproc: cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count(),
            cpu_model: field("model name").unwrap_or_else(|| "unknown".into()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            git_rev,
            // `trafgen -v` prints its version and exits with status 1.
            trafgen: std::process::Command::new("trafgen")
                .arg("-v")
                .output()
                .ok()
                .and_then(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .next()
                        .map(str::to_string)
                })
                .unwrap_or_else(|| "trafgen version unknown".into()),
        }
    }
}

/// Everything written to `router-<date>.json`.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) machine: Machine,
    pub(crate) command: String,
    pub(crate) options: Cli,
    pub(crate) samples: Vec<Sample>,
    pub(crate) sweep: Vec<SweepResult>,
}

/// Medians over the flat-out rounds of one size and mode.
#[derive(Debug)]
pub(crate) struct Summary {
    pub(crate) ip_bytes: usize,
    pub(crate) offered: f64,
    pub(crate) delivered: f64,
    pub(crate) loss: f64,
    pub(crate) cpu_us: f64,
    pub(crate) nonidle_us: f64,
    pub(crate) ants_us: Option<f64>,
    pub(crate) util: f64,
    pub(crate) fwd_us: f64,
    pub(crate) others: f64,
    pub(crate) delivered_runs: Vec<f64>,
    pub(crate) cpu_runs: Vec<f64>,
}

fn flat_out(r: &Report, size: usize, mode: Mode) -> Vec<&Sample> {
    r.samples
        .iter()
        .filter(|s| s.size == size && s.mode == mode && s.target_pps.is_none())
        .collect()
}

pub(crate) fn summary(r: &Report, size: usize, mode: Mode) -> Option<Summary> {
    let v = flat_out(r, size, mode);
    let first = v.first()?;
    let of = |f: &dyn Fn(&Sample) -> f64| median(&v.iter().map(|s| f(s)).collect::<Vec<_>>());
    let ants: Vec<f64> = v.iter().filter_map(|s| s.ants_us_per_pkt).collect();
    Some(Summary {
        ip_bytes: first.ip_bytes,
        offered: of(&|s| s.offered_pps),
        delivered: of(&|s| s.delivered_pps),
        loss: of(&|s| s.loss_pct),
        cpu_us: of(&|s| s.cpu_us_per_pkt),
        nonidle_us: of(&|s| s.nonidle_us_per_pkt),
        ants_us: (!ants.is_empty()).then(|| median(&ants)),
        util: of(&|s| s.cpu1_util_pct),
        fwd_us: of(&|s| s.forwarder_us_per_pkt),
        others: of(&|s| s.cpu1_others_pct),
        delivered_runs: v.iter().map(|s| s.delivered_pps).collect(),
        cpu_runs: v.iter().map(|s| s.cpu_us_per_pkt).collect(),
    })
}

/// Per-round ratios `mode / kernel` of `f` (rounds where both were measured).
fn ratios(r: &Report, size: usize, mode: Mode, f: fn(&Sample) -> f64) -> Vec<f64> {
    let kernel = flat_out(r, size, Mode::Kernel);
    flat_out(r, size, mode)
        .iter()
        .filter_map(|s| {
            let k = kernel.iter().find(|k| k.round == s.round)?;
            Some(f(s) / f(k))
        })
        .collect()
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "not met" }
}

/// The Markdown report.
pub(crate) fn markdown(r: &Report) -> String {
    let m = &r.machine;
    let o = &r.options;
    let mut s = format!(
        "# Router forwarding throughput — {}\n\n\
         Machine: {} CPUs ({}), Linux {}; checkout {}; {}.\n\n\
         Command: `{}`\n\n\
         Method: trafgen (one worker, sendto per frame) in namespace `gen` on CPU {GEN_CPU} → the \
         router under test in namespace `dut` (RPS of its ingress veth to CPU {DUT_CPU}; `ants` \
         pinned to CPU {DUT_CPU}) → namespace `sink`, which drops IPv4 at nft ingress (RPS to CPU \
         {DUT_CPU} as well: steering it to CPU {GEN_CPU} costs an IPI per packet sent from process \
         context, a VM exit here). Plain traffic is UDP to {PLAIN_DST} (a static route via the sink); capsule \
         traffic is UDP to {DUT_IN_IP}:{CAPSULE_PORT} carrying a `forward` capsule for {SINK_IP}. \
         Modes take turns within each size and round ({} rounds, {} s window after {} s warm-up). \
         CPU µs/pkt = busy time of CPU {DUT_CPU} (user+nice+system+irq+softirq+steal, /proc/stat) \
         in the window / packets delivered in it, the same for every mode; `ants` µs/pkt is the \
         `ants` process's utime+stime alone; forwarder µs/pkt = CPU {DUT_CPU}'s irq+softirq time \
         plus its user+system time up to the `ants` process's, an upper bound that leaves out \
         other programs the scheduler ran on CPU {DUT_CPU} (their share, a lower bound, is the \
         \"others %\" column: on a quiet machine it is ~0). CPU1 non-idle µs/pkt = (window − \
         CPU {DUT_CPU}'s idle time) / delivered: this kernel samples busy time with the tick, \
         which is stopped while a CPU idles, so interrupt work done on an otherwise idle CPU \
         (kernel forwarding, below saturation) is missing from the busy fields; idle time is \
         measured exactly, so the non-idle figure includes that work (and the idle exits it \
         costs). The two agree when CPU {DUT_CPU} is saturated. \
         Loss counts the whole generator run including the drain.\n\n",
        m.date,
        m.nproc,
        m.cpu_model,
        m.kernel,
        m.git_rev,
        m.trafgen,
        r.command,
        o.rounds,
        o.duration,
        o.warmup,
    );
    let workers = o.workers.first().copied().unwrap_or(1);
    if workers > 1 {
        s += &format!(
            "Workers: the `ants` router runs `[node] workers = {w}` (its veths have {w} queues) \
             and may use CPUs 0–{last}, the generator's included, so CPU {DUT_CPU}'s figures \
             miss the work done on CPU {GEN_CPU}: compare the `ants` µs/pkt column.\n\n",
            w = workers,
            last = workers.saturating_sub(1),
        );
    }
    let flows = o.flows.unwrap_or(1);
    if flows > 1 {
        s += &format!("Flows: the generator sends {flows} flows (UDP source ports) in turn.\n\n");
    }
    s += &format!("## Flat out (medians of {} rounds)\n\n", o.rounds);
    s += "| IP bytes | mode | offered pps | delivered pps | loss % | CPU1 busy µs/pkt | CPU1 non-idle µs/pkt | forwarder µs/pkt | ants µs/pkt | CPU1 busy % | others % | delivered pps (rounds) | CPU1 busy µs/pkt (rounds) |\n";
    s += "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for &size in &o.sizes {
        for &mode in &o.modes {
            let Some(x) = summary(r, size, mode) else {
                continue;
            };
            s += &format!(
                "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.0} | {:.0} | {} | {} |\n",
                x.ip_bytes,
                mode.name(),
                x.offered,
                x.delivered,
                x.loss,
                x.cpu_us,
                x.nonidle_us,
                x.fwd_us,
                x.ants_us.map_or("—".into(), |u| format!("{u:.2}")),
                x.util,
                x.others,
                join_runs(&x.delivered_runs, 0),
                join_runs(&x.cpu_runs, 2),
            );
        }
    }
    if o.modes.contains(&Mode::Kernel) && o.modes.len() > 1 {
        s += "\n## Ratios to kernel forwarding (per round, median)\n\n";
        s += "| IP bytes | mode | delivered pps / kernel | CPU1 busy per packet / kernel | CPU1 non-idle per packet / kernel | forwarder per packet / kernel | DESIGN target (CPU: busy / non-idle) |\n";
        s += "|---|---|---|---|---|---|---|\n";
        for &size in &o.sizes {
            for &mode in o.modes.iter().filter(|m| **m != Mode::Kernel) {
                let d = ratios(r, size, mode, |x| x.delivered_pps);
                let c = ratios(r, size, mode, |x| x.cpu_us_per_pkt);
                let n = ratios(r, size, mode, |x| x.nonidle_us_per_pkt);
                let f = ratios(r, size, mode, |x| x.forwarder_us_per_pkt);
                if d.is_empty() {
                    continue;
                }
                let (dm, cm, nm) = (median(&d), median(&c), median(&n));
                let target = match mode {
                    Mode::AntsIp => format!(
                        "CPU ≤ 1.0×: {} / {}; delivered ≥ 0.9×: {}",
                        verdict(cm <= 1.0),
                        verdict(nm <= 1.0),
                        verdict(dm >= 0.9)
                    ),
                    Mode::AntsAfxdp => format!(
                        "CPU ≤ 1.5×: {} / {}",
                        verdict(cm <= 1.5),
                        verdict(nm <= 1.5)
                    ),
                    Mode::AntsXdp => format!(
                        "CPU ≤ 0.7×: {} / {}; delivered ≥ 1.5×: {}",
                        verdict(cm <= 0.7),
                        verdict(nm <= 0.7),
                        verdict(dm >= 1.5)
                    ),
                    Mode::AntsCapsule | Mode::AntsXdpCapsule => format!(
                        "CPU ≤ 2.0×: {} / {}",
                        verdict(cm <= 2.0),
                        verdict(nm <= 2.0)
                    ),
                    Mode::Kernel => String::new(),
                };
                s += &format!(
                    "| {size} | {} | {dm:.2} ({}) | {cm:.2} ({}) | {nm:.2} ({}) | {:.2} ({}) | {target} |\n",
                    mode.name(),
                    join_runs(&d, 2),
                    join_runs(&c, 2),
                    join_runs(&n, 2),
                    median(&f),
                    join_runs(&f, 2)
                );
            }
        }
    }
    if !r.sweep.is_empty() {
        s += &format!(
            "\n## Loss-free rate (loss < {LOSS_FREE_PCT} %; {} paced steps up to the generator's \
             ceiling, then {} bisections; {} s windows)\n\n",
            o.sweep_steps, o.sweep_refine, o.sweep_duration
        );
        s += "| IP bytes | mode | loss-free pps | first lossy paced rate | generator ceiling pps | probes |\n";
        s += "|---|---|---|---|---|---|\n";
        for x in &r.sweep {
            s += &format!(
                "| {} | {} | {} | {} | {:.0} | {} |\n",
                x.size,
                x.mode.name(),
                x.loss_free_pps.map_or("none".into(), |p| format!("{p:.0}")),
                x.first_lossy_target_pps
                    .map_or("— (loss-free at the ceiling)".into(), |p| format!(
                        "{p:.0}"
                    )),
                x.ceiling_pps,
                x.probes
            );
        }
    }
    s
}

/// Write `router-<stamp>.md`, `.json` and `.svg` into `out`.
pub(crate) fn write_report(
    r: &Report,
    out: &Path,
    stamp: &str,
) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let base = out.join(format!("router-{stamp}"));
    let (md, json, svg) = (
        base.with_extension("md"),
        base.with_extension("json"),
        base.with_extension("svg"),
    );
    std::fs::write(&md, markdown(r)).with_context(|| format!("{}", md.display()))?;
    std::fs::write(&json, serde_json::to_string_pretty(r)? + "\n")
        .with_context(|| format!("{}", json.display()))?;
    std::fs::write(&svg, plot::svg(r)).with_context(|| format!("{}", svg.display()))?;
    Ok((md, json, svg))
}
