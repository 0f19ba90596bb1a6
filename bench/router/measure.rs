//! One measured point: a mode, a packet size and an optional paced rate. The router under
//! test is set up, the generator started, a window measured after a warm-up, the generator
//! stopped and the pipeline drained, and the router stopped again.
//!
//! Rates and CPU come from the window; loss from the whole generator run including the
//! drain, so frames in flight at the window's edges are not counted as lost.

use super::*;

/// Everything a point needs, shared by all points of a run.
#[derive(Debug)]
pub(crate) struct Bench {
    pub(crate) topo: Topology,
    pub(crate) ants: Option<AntsSetup>,
    pub(crate) warmup: Duration,
    pub(crate) ready_timeout: Duration,
    /// Where trafgen writes its output.
    pub(crate) trafgen_log: PathBuf,
    /// Flows the generator sends (distinct UDP source ports).
    pub(crate) flows: u16,
}

/// The numbers of one point (one element of the JSON output).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Sample {
    pub(crate) mode: Mode,
    /// Requested IPv4 packet size.
    pub(crate) size: usize,
    /// IPv4 packet size actually sent (capsules have a minimum).
    pub(crate) ip_bytes: usize,
    pub(crate) round: usize,
    /// Generator pacing (`None` = as fast as trafgen goes).
    pub(crate) target_pps: Option<f64>,
    pub(crate) window_s: f64,
    pub(crate) offered_pps: f64,
    pub(crate) delivered_pps: f64,
    /// Frames the generator sent and the sink received over the whole run (drain included).
    pub(crate) sent: u64,
    pub(crate) delivered: u64,
    pub(crate) loss_pct: f64,
    /// Kernel drops handing frames to the router's ingress / to the sink (whole run).
    pub(crate) ingress_drops: u64,
    pub(crate) egress_drops: u64,
    /// Busy time of the router's CPU in the window (user+nice+system+irq+softirq+steal).
    pub(crate) cpu1_busy_s: f64,
    pub(crate) cpu1_user_s: f64,
    pub(crate) cpu1_system_s: f64,
    pub(crate) cpu1_irq_softirq_s: f64,
    pub(crate) cpu1_steal_s: f64,
    /// Idle + iowait time of CPU 1 (measured in ns by the tickless idle code, unlike the
    /// busy fields, which are tick samples).
    pub(crate) cpu1_idle_s: f64,
    /// Window minus idle: also counts interrupt work done while the CPU was otherwise idle,
    /// which tick sampling misses on a tickless kernel.
    pub(crate) cpu1_nonidle_s: f64,
    pub(crate) nonidle_us_per_pkt: f64,
    pub(crate) cpu1_util_pct: f64,
    /// Busy share of the generator's CPU (trafgen + the sink's receive work).
    pub(crate) cpu0_util_pct: f64,
    /// `cpu1_busy_s` per delivered packet, microseconds.
    pub(crate) cpu_us_per_pkt: f64,
    /// The forwarder's share of CPU 1, an upper bound that leaves out other programs the
    /// scheduler ran there (a shared machine's noise): irq + softirq time, plus in the ants
    /// modes the user+system time of CPU 1 up to the `ants` process's utime+stime. (With
    /// tick accounting a softirq that interrupts `ants` is charged to both its stime and the
    /// CPU's softirq, so the two cannot simply be added.)
    pub(crate) forwarder_cpu_s: f64,
    pub(crate) forwarder_us_per_pkt: f64,
    /// CPU 1 user+system time beyond the forwarder's (other programs; a lower bound),
    /// percent of the window.
    pub(crate) cpu1_others_pct: f64,
    /// The `ants` process's utime+stime in the window (modes ants-ip, ants-capsule).
    pub(crate) ants_cpu_s: Option<f64>,
    pub(crate) ants_us_per_pkt: Option<f64>,
}

/// Frames handed to the router's ingress veth (sent, or dropped for a full backlog).
fn sent(c: &Counters) -> u64 {
    c.gen_tx + c.gen_tx_drop
}

impl Bench {
    /// The trafgen configuration file for `mode` and `size`, written on first use.
    fn trafgen_config(&self, mode: Mode, size: usize) -> Result<(PathBuf, usize)> {
        let path = self
            .topo
            .dir
            .join(format!("{}-{size}.trafgen", mode.name()));
        let stream = |dst, sport, dport| Stream {
            dst_mac: DUT_IN_MAC,
            src_mac: GEN_MAC,
            src: GEN_IP,
            dst,
            sport,
            dport,
        };
        // One frame per flow, differing in the UDP source port (trafgen sends them in turn).
        let mut frames = Vec::new();
        for flow in 0..self.flows {
            let frame = match mode {
                m if !m.capsules() => plain_frame(&stream(PLAIN_DST, 1024 + flow, 9), size)?,
                _ => {
                    let ty = self
                        .ants
                        .as_ref()
                        .map(|a| a.forward_type)
                        .context("capsule mode without the ants setup")?;
                    let dst: Address = SINK_IP
                        .to_string()
                        .parse()
                        .map_err(|_| anyhow!("bad address"))?;
                    // The capsule port, then the ports above it for more flows.
                    let s = stream(DUT_IN_IP, CAPSULE_PORT + flow, CAPSULE_PORT);
                    capsule_frame(&s, size, ty, dst)?
                }
            };
            frames.push(frame);
        }
        let len = frames.first().map_or(0, Vec::len);
        if !path.is_file() {
            let config: String = frames.iter().map(|f| trafgen_config(f)).collect();
            std::fs::write(&path, config)?;
        }
        Ok((path, len))
    }

    fn start_trafgen(&self, config: &Path) -> Result<Proc> {
        let argv: Vec<String> = [
            "ip",
            "netns",
            "exec",
            &self.topo.gen_ns,
            "taskset",
            "-c",
            &GEN_CPU.to_string(),
            "trafgen",
            "--dev",
            GEN_IF,
            "--conf",
            &config.to_string_lossy(),
            // One worker; do not touch IRQ affinity or the (global) socket memory sysctls;
            // through the qdisc (pacing); `--gap 0ns` = sendto per frame, which blocks on a
            // full socket buffer where the TX_RING path aborts with EAGAIN on veth.
            "--cpus",
            "1",
            "--notouch-irq",
            "--no-sock-mem",
            "--qdisc-path",
            "--gap",
            "0ns",
        ]
        .map(String::from)
        .to_vec();
        Proc::spawn("trafgen", &argv, &[], &self.trafgen_log)
    }

    /// Measure one point.
    pub(crate) fn point(
        &self,
        mode: Mode,
        size: usize,
        rate: Option<f64>,
        window: Duration,
        round: usize,
    ) -> Result<Sample> {
        check_interrupted()?;
        let (config, frame_len) = self.trafgen_config(mode, size)?;
        self.topo.set_kernel_forwarding(mode == Mode::Kernel)?;
        let xdp_attached = mode.fast_path() || mode.afxdp();
        self.topo.set_xdp_placement(xdp_attached)?;
        let label = format!("{} size {size} round {round}", mode.name());
        let mut router = match mode {
            Mode::Kernel => None,
            _ => {
                let ants = self
                    .ants
                    .as_ref()
                    .context("ants modes need the ants setup")?;
                let p = ants.start(&self.topo, &label, mode)?;
                if xdp_attached {
                    // The program is attached now: pin the NAPI threads that run it.
                    self.topo.pin_napi_threads()?;
                }
                Some(p)
            }
        };
        let ants_pid = router.as_ref().and_then(Proc::pid);
        let check = |router: &mut Option<Proc>, generator: &mut Proc| -> Result<()> {
            check_interrupted()?;
            if let Some(r) = router.as_mut() {
                r.check_running()?;
            }
            generator.check_running()
        };
        self.topo.set_rate(rate.map(|r| (r, frame_len)))?;
        let c0 = self.topo.counters()?;
        let mut generator = self.start_trafgen(&config)?;

        // Wait until frames reach the sink (ARP, the router's start-up), then warm up.
        let deadline = Instant::now() + self.ready_timeout;
        while self.topo.counters()?.sink_rx.saturating_sub(c0.sink_rx) < 10 {
            check(&mut router, &mut generator)?;
            if Instant::now() > deadline {
                let c = self.topo.counters()?;
                bail!(
                    "{label}: nothing reached the sink within {:?} (sent {}, router ingress \
                     received {}, router egress sent {}); see {}{}",
                    self.ready_timeout,
                    sent(&c) - sent(&c0),
                    c.dut_in_rx - c0.dut_in_rx,
                    c.dut_out_tx - c0.dut_out_tx,
                    self.trafgen_log.display(),
                    self.ants
                        .as_ref()
                        .map(|a| format!(" and {}", a.log.display()))
                        .unwrap_or_default(),
                );
            }
            sleep_checked(Duration::from_millis(50))?;
        }
        sleep_checked(self.warmup)?;
        check(&mut router, &mut generator)?;

        let w0 = self.topo.counters()?;
        let (cpu1_a, cpu0_a) = (CpuTicks::read(Some(DUT_CPU)), CpuTicks::read(Some(GEN_CPU)));
        let ants_a = ants_pid.and_then(|p| process_ticks(Some(p)));
        let t0 = Instant::now();
        sleep_checked(window)?;
        let (cpu1_b, cpu0_b) = (CpuTicks::read(Some(DUT_CPU)), CpuTicks::read(Some(GEN_CPU)));
        let ants_b = ants_pid.and_then(|p| process_ticks(Some(p)));
        let secs = t0.elapsed().as_secs_f64();
        let w1 = self.topo.counters()?;
        check(&mut router, &mut generator)?;

        generator.stop(libc::SIGINT, Duration::from_secs(3));
        sleep_checked(Duration::from_millis(300))?; // drain
        let c1 = self.topo.counters()?;
        if let Some(mut r) = router.take() {
            r.check_running()?;
            r.stop(libc::SIGTERM, Duration::from_secs(3));
        }
        self.topo.set_rate(None)?;

        let hz = clock_ticks_per_sec();
        let cpu1 = cpu1_b.since(&cpu1_a);
        let cpu0 = cpu0_b.since(&cpu0_a);
        let delivered_w = w1.sink_rx - w0.sink_rx;
        let per_pkt = |s: f64| {
            if delivered_w > 0 {
                s / delivered_w as f64 * 1e6
            } else {
                f64::NAN
            }
        };
        let ants_cpu_s = match (ants_a, ants_b) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / hz),
            _ => None,
        };
        let (sent_all, delivered_all) = (sent(&c1) - sent(&c0), c1.sink_rx - c0.sink_rx);
        let busy_s = cpu1.busy() as f64 / hz;
        let tasks_s = (cpu1.user + cpu1.system) as f64 / hz;
        let ants_on_cpu1 = tasks_s.min(ants_cpu_s.unwrap_or(0.0));
        let forwarder_s = (cpu1.irq + cpu1.softirq) as f64 / hz + ants_on_cpu1;
        Ok(Sample {
            mode,
            size,
            ip_bytes: frame_len - 14,
            round,
            target_pps: rate,
            window_s: secs,
            offered_pps: (sent(&w1) - sent(&w0)) as f64 / secs,
            delivered_pps: delivered_w as f64 / secs,
            sent: sent_all,
            delivered: delivered_all,
            loss_pct: if sent_all > 0 {
                sent_all.saturating_sub(delivered_all) as f64 * 100.0 / sent_all as f64
            } else {
                f64::NAN
            },
            ingress_drops: (c1.gen_tx_drop + c1.dut_in_rx_drop)
                - (c0.gen_tx_drop + c0.dut_in_rx_drop),
            egress_drops: (c1.dut_out_tx_drop + c1.sink_rx_drop)
                - (c0.dut_out_tx_drop + c0.sink_rx_drop),
            cpu1_busy_s: busy_s,
            cpu1_user_s: cpu1.user as f64 / hz,
            cpu1_system_s: cpu1.system as f64 / hz,
            cpu1_irq_softirq_s: (cpu1.irq + cpu1.softirq) as f64 / hz,
            cpu1_steal_s: cpu1.steal as f64 / hz,
            cpu1_idle_s: cpu1.idle as f64 / hz,
            cpu1_nonidle_s: (secs - cpu1.idle as f64 / hz).max(0.0),
            nonidle_us_per_pkt: per_pkt((secs - cpu1.idle as f64 / hz).max(0.0)),
            cpu1_util_pct: busy_s / secs * 100.0,
            cpu0_util_pct: cpu0.busy() as f64 / hz / secs * 100.0,
            cpu_us_per_pkt: per_pkt(busy_s),
            forwarder_cpu_s: forwarder_s,
            forwarder_us_per_pkt: per_pkt(forwarder_s),
            cpu1_others_pct: (tasks_s - ants_on_cpu1) / secs * 100.0,
            ants_cpu_s,
            ants_us_per_pkt: ants_cpu_s.map(per_pkt),
        })
    }
}
