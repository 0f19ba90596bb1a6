//! The rate sweep: each mode's loss-free rate, the highest offered rate with loss under
//! [`LOSS_FREE_PCT`]. Evenly spaced paced rates up to the generator's ceiling (the highest
//! flat-out offered rate of the size), then bisection between the last loss-free and the
//! first lossy rate. Modes take turns at every rate, as in the flat-out rounds.

use super::*;

/// Loss below this (percent of frames sent) counts as loss-free.
pub(crate) const LOSS_FREE_PCT: f64 = 0.1;

/// `true` if `loss_pct` is under the threshold (NaN, nothing sent, is not).
fn loss_free(loss_pct: f64) -> bool {
    loss_pct < LOSS_FREE_PCT
}

/// The outcome for one mode and size.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SweepResult {
    pub(crate) mode: Mode,
    pub(crate) size: usize,
    /// Measured offered rate of the best loss-free point (`None`: even the lowest lost).
    pub(crate) loss_free_pps: Option<f64>,
    /// Paced rate of the lowest lossy point above it (`None`: loss-free up to the ceiling).
    pub(crate) first_lossy_target_pps: Option<f64>,
    /// The generator's ceiling for this size (flat out).
    pub(crate) ceiling_pps: f64,
    pub(crate) probes: usize,
}

/// The probes of one mode and size: (paced target, loss %, measured offered pps).
#[derive(Debug, Clone, Default)]
struct Search {
    probes: Vec<(f64, f64, f64)>,
}

impl Search {
    fn record(&mut self, target: f64, s: &Sample) {
        self.probes.push((target, s.loss_pct, s.offered_pps));
    }

    /// The lowest paced rate that lost frames.
    fn hi(&self) -> Option<f64> {
        self.probes
            .iter()
            .filter(|p| !loss_free(p.1))
            .map(|p| p.0)
            .min_by(f64::total_cmp)
    }

    /// (target, measured offered) of the highest loss-free probe below [`Search::hi`]; a
    /// loss-free probe above a lossy one (noise) does not count.
    fn lo(&self) -> Option<(f64, f64)> {
        let hi = self.hi().unwrap_or(f64::INFINITY);
        self.probes
            .iter()
            .filter(|p| loss_free(p.1) && p.0 < hi)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|p| (p.0, p.2))
    }

    /// The next bisection target, if the bracket is still open.
    fn next(&self) -> Option<f64> {
        let hi = self.hi()?;
        let lo = self.lo().map_or(0.0, |(t, _)| t);
        Some((lo + hi) / 2.0)
    }
}

/// Sweep every size and mode; the probes are appended to `samples` (round 0).
pub(crate) fn sweep(
    cli: &Cli,
    bench: &Bench,
    samples: &mut Vec<Sample>,
) -> Result<Vec<SweepResult>> {
    let window = Duration::from_secs_f64(cli.sweep_duration);
    let steps = cli.sweep_steps.max(1);
    let mut out = Vec::new();
    for &size in &cli.sizes {
        // The generator's ceiling: the best median flat-out offered rate of any mode.
        let ceiling = cli
            .modes
            .iter()
            .map(|&m| {
                let v: Vec<f64> = samples
                    .iter()
                    .filter(|s| s.size == size && s.mode == m && s.target_pps.is_none())
                    .map(|s| s.offered_pps)
                    .collect();
                median(&v)
            })
            .filter(|x| x.is_finite())
            .fold(0.0, f64::max);
        if ceiling <= 0.0 {
            bail!("size {size}: no flat-out measurement to take the generator's ceiling from");
        }
        let mut search = vec![Search::default(); cli.modes.len()];
        let probe = |i: usize,
                     target: f64,
                     search: &mut Vec<Search>,
                     samples: &mut Vec<Sample>|
         -> Result<()> {
            let mode = cli.modes[i];
            let s = bench.point(mode, size, Some(target), window, 0)?;
            println!(
                "sweep size {size:>4} {:<12} paced {:>9.0} pps: offered {:>9.0}, delivered {:>9.0}, loss {:.3} %",
                mode.name(),
                target,
                s.offered_pps,
                s.delivered_pps,
                s.loss_pct
            );
            search[i].record(target, &s);
            samples.push(s);
            Ok(())
        };
        for k in 1..=steps {
            let target = ceiling * k as f64 / steps as f64;
            for i in 0..cli.modes.len() {
                probe(i, target, &mut search, samples)?;
            }
        }
        for _ in 0..cli.sweep_refine {
            for i in 0..cli.modes.len() {
                if let Some(t) = search[i].next() {
                    probe(i, t, &mut search, samples)?;
                }
            }
        }
        for (i, s) in search.iter().enumerate() {
            out.push(SweepResult {
                mode: cli.modes[i],
                size,
                loss_free_pps: s.lo().map(|(_, offered)| offered),
                first_lossy_target_pps: s.hi(),
                ceiling_pps: ceiling,
                probes: s.probes.len(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(offered: f64, loss: f64) -> Sample {
        Sample {
            mode: Mode::Kernel,
            size: 64,
            ip_bytes: 64,
            round: 0,
            target_pps: Some(offered),
            window_s: 1.0,
            offered_pps: offered,
            delivered_pps: offered,
            sent: 0,
            delivered: 0,
            loss_pct: loss,
            ingress_drops: 0,
            egress_drops: 0,
            cpu1_busy_s: 0.0,
            cpu1_user_s: 0.0,
            cpu1_system_s: 0.0,
            cpu1_irq_softirq_s: 0.0,
            cpu1_steal_s: 0.0,
            cpu1_idle_s: 0.0,
            cpu1_nonidle_s: 0.0,
            nonidle_us_per_pkt: 0.0,
            cpu1_util_pct: 0.0,
            cpu0_util_pct: 0.0,
            cpu_us_per_pkt: 0.0,
            forwarder_cpu_s: 0.0,
            forwarder_us_per_pkt: 0.0,
            cpu1_others_pct: 0.0,
            ants_cpu_s: None,
            ants_us_per_pkt: None,
        }
    }

    #[test]
    fn bracket_narrows_to_the_loss_free_edge() {
        let mut s = Search::default();
        s.record(100.0, &sample(99.0, 0.0));
        s.record(200.0, &sample(199.0, 0.05));
        s.record(300.0, &sample(280.0, 2.0));
        s.record(400.0, &sample(290.0, 9.0));
        assert_eq!(s.lo(), Some((200.0, 199.0)));
        assert_eq!(s.hi(), Some(300.0));
        assert_eq!(s.next(), Some(250.0));
        s.record(250.0, &sample(240.0, 1.0));
        assert_eq!(s.next(), Some(225.0));
    }

    #[test]
    fn a_loss_free_fluke_above_a_lossy_rate_is_ignored() {
        let mut s = Search::default();
        s.record(100.0, &sample(99.0, 0.0));
        s.record(150.0, &sample(149.0, 3.0));
        s.record(200.0, &sample(190.0, 0.0));
        assert_eq!(s.hi(), Some(150.0));
        assert_eq!(s.lo(), Some((100.0, 99.0)));
        assert_eq!(s.next(), Some(125.0));
    }

    #[test]
    fn loss_everywhere_bisects_from_zero_and_no_loss_stops() {
        let mut s = Search::default();
        s.record(100.0, &sample(100.0, 5.0));
        assert_eq!(s.next(), Some(50.0));
        let mut s = Search::default();
        s.record(100.0, &sample(100.0, 0.0));
        assert_eq!(s.next(), None);
    }
}
