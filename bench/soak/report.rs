//! The soak's results: the raw JSON, a Markdown summary, and an SVG plot of T's memory and
//! CPU and the legitimate flow over time.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use super::{Outcome, Sample};

/// The median of the samples' `f` over `from..to` seconds.
fn median_over(s: &[Sample], from: f64, to: f64, f: impl Fn(&Sample) -> f64) -> f64 {
    let v: Vec<f64> = s
        .iter()
        .filter(|x| x.t >= from && x.t < to)
        .map(f)
        .collect();
    ants_bench::median(&v)
}

fn counter(v: &serde_json::Value, path: &str) -> u64 {
    let mut v = v;
    for part in path.split('/') {
        match v.get(part) {
            Some(n) => v = n,
            None => return 0,
        }
    }
    v.as_u64().unwrap_or(0)
}

/// The Markdown summary.
pub(crate) fn markdown(o: &Outcome) -> String {
    let s = &o.samples;
    let end = s.last().map_or(0.0, |x| x.t);
    let warm = 60.0f64.min(end / 4.0);
    let mut m = String::new();
    let _ = writeln!(
        m,
        "# Soak, {}: every attack at once for {} s (root: {})\n",
        o.date, o.duration_s, o.root
    );
    let lost = o.sent.saturating_sub(o.delivered_distinct);
    let _ = writeln!(
        m,
        "Legitimate flow: {} of {} capsules delivered ({:.3} %), {} duplicates; {} lost.\n",
        o.delivered_distinct,
        o.sent,
        o.delivered_distinct as f64 * 100.0 / o.sent.max(1) as f64,
        o.duplicates,
        lost
    );
    let _ = writeln!(m, "T stopped {:.0} ms after SIGTERM.\n", o.exit_ms);
    let _ = writeln!(
        m,
        "| window | RSS median | RSS max | CPU median (% of a core) | code dir median |"
    );
    let _ = writeln!(m, "|---|---:|---:|---:|---:|");
    let windows = [
        ("first minute", 0.0, warm),
        ("after warm-up", warm, end + 1.0),
        ("last minute", (end - 60.0).max(warm), end + 1.0),
    ];
    for (name, a, b) in windows {
        let max = s
            .iter()
            .filter(|x| x.t >= a && x.t < b)
            .map(|x| x.rss_mib)
            .fold(0.0, f64::max);
        let _ = writeln!(
            m,
            "| {name} ({a:.0}–{:.0} s) | {:.1} MiB | {max:.1} MiB | {:.0} | {:.1} MiB |",
            b.min(end),
            median_over(s, a, b, |x| x.rss_mib),
            median_over(s, a, b, |x| x.cpu_pct),
            median_over(s, a, b, |x| x.disk_bytes as f64) / (1u64 << 20) as f64
        );
    }
    let _ = writeln!(m, "\n| attack | what | sent |\n|---|---|---:|");
    for a in &o.attacks {
        let _ = writeln!(m, "| {} | {} | {} |", a.attack, a.what, a.sent);
    }
    let st = &o.stats;
    let _ = writeln!(m, "\nT's counters at the end (`ants run --stats-json`):\n");
    let rows = [
        ("drops: stranger", "node/drops/stranger"),
        ("drops: peer-over-budget", "node/drops/peer-over-budget"),
        ("drops: trapped", "node/drops/trapped"),
        ("drops: pending-refused", "node/drops/pending-refused"),
        ("drops: code-unavailable", "node/drops/code-unavailable"),
        ("resource clamped", "node/resource_clamped"),
        ("deadline traps", "executor/deadline_traps"),
        ("instances evicted", "executor/instances_evicted"),
        ("modules evicted", "executor/modules_evicted"),
        ("loads refused: peer busy", "loader/peer_busy_refusals"),
        (
            "loads refused: compile budget",
            "loader/compile_budget_refusals",
        ),
        ("stalled peers", "loader/stalled_peers"),
        ("conflicting chunks", "loader/conflicting_chunks"),
        ("requests truncated", "loader/requests_truncated"),
        ("chunks served", "loader/chunks_served"),
        ("code dir types pruned", "disk/pruned"),
        ("compiles refused (queue)", "compiles_refused"),
        ("capsule log lines suppressed", "capsule_logs_suppressed"),
        ("udp dropped", "udp_dropped"),
    ];
    let _ = writeln!(m, "| counter | value |\n|---|---:|");
    for (name, path) in rows {
        let _ = writeln!(m, "| {name} | {} |", counter(st, path));
    }
    let compile_ms = st
        .get("compile_ms")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0);
    let _ = writeln!(
        m,
        "| compile time (ms, first 64 compiles) | {compile_ms:.0} |"
    );
    m
}

/// An SVG: RSS (MiB) and CPU (% of a core) over time, and the legitimate delivery ratio.
pub(crate) fn svg(o: &Outcome) -> String {
    let (w, h, l, r, t, b) = (720.0, 360.0, 60.0, 60.0, 30.0, 40.0);
    let s = &o.samples;
    let tmax = s.last().map_or(1.0, |x| x.t).max(1.0);
    let rss_max = s.iter().map(|x| x.rss_mib).fold(1.0, f64::max) * 1.2;
    let cpu_max = 200.0f64;
    let px = |x: f64| l + x / tmax * (w - l - r);
    let py = |v: f64, max: f64| t + (h - t - b) * (1.0 - v / max);
    let path = |f: &dyn Fn(&Sample) -> f64, max: f64| {
        s.iter()
            .enumerate()
            .map(|(i, x)| {
                format!(
                    "{}{:.1},{:.1}",
                    if i == 0 { "M" } else { "L" },
                    px(x.t),
                    py(f(x), max)
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">Soak {}: RSS and CPU of the node under every attack</text>\n\
         <rect x=\"{l}\" y=\"{t}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>\n",
        w / 2.0,
        o.date,
        w - l - r,
        h - t - b
    );
    for k in 0..=4 {
        let v = rss_max * f64::from(k) / 4.0;
        let c = cpu_max * f64::from(k) / 4.0;
        let y = py(v, rss_max);
        let _ = writeln!(
            svg,
            "<line x1=\"{l}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#1f77b4\">{v:.0}</text>\
             <text x=\"{}\" y=\"{:.1}\" fill=\"#d62728\">{c:.0}%</text>",
            w - r,
            l - 6.0,
            y + 4.0,
            w - r + 6.0,
            y + 4.0
        );
    }
    for k in 0..=5 {
        let x = tmax * f64::from(k) / 5.0;
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{x:.0} s</text>",
            px(x),
            h - b + 16.0
        );
    }
    let _ = write!(
        svg,
        "<path d=\"{}\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"1\" opacity=\"0.7\"/>\n\
         <path d=\"{}\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\"/>\n\
         <text x=\"{}\" y=\"{}\" fill=\"#1f77b4\">RSS (MiB, left)</text>\
         <text x=\"{}\" y=\"{}\" fill=\"#d62728\">CPU (% of a core, right)</text>\n</svg>\n",
        path(&|x| x.cpu_pct.min(cpu_max), cpu_max),
        path(&|x| x.rss_mib, rss_max),
        l + 10.0,
        t + 16.0,
        l + 140.0,
        t + 16.0
    );
    svg
}

/// Write `soak-<date>.{json,md,svg}` into `dir`.
pub(crate) fn write(dir: &Path, o: &Outcome) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let base = dir.join(format!("soak-{}", o.date));
    std::fs::write(
        base.with_extension("json"),
        serde_json::to_string_pretty(o)? + "\n",
    )?;
    let md = markdown(o);
    std::fs::write(base.with_extension("md"), &md)?;
    std::fs::write(base.with_extension("svg"), svg(o))?;
    println!("{md}");
    println!("written: {}.{{json,md,svg}}", base.display());
    Ok(())
}
