//! The router under test when it is `ants`: the binary, its router-mode configuration, the
//! preloaded `forward` module, and one running instance pinned to the router's CPU.

use super::*;

/// What an `ants` run needs; prepared once per benchmark.
#[derive(Debug)]
pub(crate) struct AntsSetup {
    pub(crate) binary: PathBuf,
    /// The configuration of each `ants` mode (datapath and fast path differ).
    pub(crate) configs: Vec<(Mode, PathBuf)>,
    pub(crate) code_dir: PathBuf,
    pub(crate) forward_type: CapsuleType,
    pub(crate) forward_wasm: Vec<u8>,
    /// Where the router's output goes (appended, one header line per start).
    pub(crate) log: PathBuf,
    /// `[node] workers`.
    pub(crate) workers: u16,
}

/// Build `capsules/forward` and return its module and type (the SHA-256 of the module).
pub(crate) fn forward_module() -> Result<(Vec<u8>, CapsuleType)> {
    let dir = workspace_root().join("capsules/forward");
    let opts = ants_capsule_build::BuildOptions {
        verbose: false,
        ..Default::default()
    };
    let built = ants_capsule_build::build(&dir, &opts)
        .map_err(|e| anyhow!("building {}: {e}", dir.display()))?;
    let wasm = std::fs::read(&built.path).with_context(|| format!("{}", built.path.display()))?;
    Ok((wasm, CapsuleType(built.sha256)))
}

/// `[router] busy_poll`: when the router busy polls.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum BusyPollWhen {
    /// From start to stop.
    Always,
    /// While the router falls behind its receive rings.
    Overload,
}

/// `[router] busy_poll_us` and `busy_poll` of the AF_XDP modes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BusyPollKeys {
    /// `busy_poll_us` (`None`: the node's default).
    pub(crate) us: Option<u32>,
    /// `busy_poll` (`None`: the node's default, `"overload"`).
    pub(crate) when: Option<BusyPollWhen>,
}

/// The router-mode configuration of the dut (`ants run --config`).
pub(crate) fn config_toml(
    code_dir: &Path,
    mode: Mode,
    busy_poll: BusyPollKeys,
    workers: u16,
) -> String {
    // Busy polling drives AF_XDP sockets; the node refuses it on AF_PACKET, and `busy_poll`
    // with it off.
    let mut busy = String::new();
    if mode.afxdp() {
        if let Some(us) = busy_poll.us {
            busy += &format!("busy_poll_us = {us}\n");
        }
        if let Some(when) = busy_poll.when.filter(|_| busy_poll.us != Some(0)) {
            let when = match when {
                BusyPollWhen::Always => "always",
                BusyPollWhen::Overload => "overload",
            };
            busy += &format!("busy_poll = \"{when}\"\n");
        }
    }
    format!(
        r#"# router-bench: the router under test (generated)
[node]
address = "{DUT_IN_IP}"
code_cache_dir = "{code}"
workers = {workers}

[router]
capsule_port = {CAPSULE_PORT}
fast_path = "{fast_path}"
datapath = "{datapath}"
{busy}
[[router.interface]]
name = "{DUT_IN}"
address = "{DUT_IN_IP}/24"

[[router.interface]]
name = "{DUT_OUT}"
address = "{DUT_OUT_IP}/24"

[[router.route]]
dst = "{ROUTED_NET}"
via = "{SINK_IP}"

[[neighbour]]
address = "{SINK_IP}"
endpoint = "{SINK_IP}:{CAPSULE_PORT}"

[limits]
fuel = 1000000
"#,
        code = code_dir.display(),
        fast_path = if mode.fast_path() { "xdp" } else { "none" },
        datapath = if mode.afxdp() { "afxdp" } else { "afpacket" },
    )
}

impl AntsSetup {
    /// Write the configuration into the topology's directory.
    pub(crate) fn prepare(
        topo: &Topology,
        binary: PathBuf,
        (forward_wasm, forward_type): (Vec<u8>, CapsuleType),
        log: PathBuf,
        busy_poll: BusyPollKeys,
        workers: u16,
    ) -> Result<AntsSetup> {
        let code_dir = topo.dir.join("dut-code");
        let mut configs = Vec::new();
        for mode in Mode::ANTS {
            let path = topo.dir.join(format!("dut-{}.toml", mode.name()));
            std::fs::write(&path, config_toml(&code_dir, mode, busy_poll, workers))?;
            configs.push((mode, path));
        }
        Ok(AntsSetup {
            binary,
            configs,
            code_dir,
            forward_type,
            forward_wasm,
            log,
            workers,
        })
    }

    /// Start `ants run` in the dut namespace on the router's CPU, the `forward` module
    /// preloaded into its code cache directory; fail with the log's tail if it exits at once.
    pub(crate) fn start(&self, topo: &Topology, label: &str, mode: Mode) -> Result<Proc> {
        std::fs::create_dir_all(&self.code_dir)?;
        let wasm = self.code_dir.join(format!("{}.wasm", self.forward_type));
        if !wasm.is_file() {
            std::fs::write(&wasm, &self.forward_wasm)?;
        }
        // One worker: the router's CPU; more: every CPU up to the workers' count.
        let cpus = match self.workers {
            1 => DUT_CPU.to_string(),
            n => format!("0-{}", n - 1),
        };
        let argv: Vec<String> = vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            topo.dut_ns.clone(),
            "taskset".into(),
            "-c".into(),
            cpus,
            self.binary.to_string_lossy().into_owned(),
            "run".into(),
            "--config".into(),
            self.configs
                .iter()
                .find(|(m, _)| *m == mode)
                .map(|(_, p)| p.to_string_lossy().into_owned())
                .context("no configuration for this mode")?,
        ];
        let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
        let mut p = Proc::spawn(
            &format!("ants ({label})"),
            &argv,
            &[("RUST_LOG", &level)],
            &self.log,
        )?;
        sleep_checked(Duration::from_millis(300))?;
        p.check_running()?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_both_interfaces_and_the_sink() {
        let keys = BusyPollKeys {
            us: Some(7),
            when: None,
        };
        let ip = config_toml(Path::new("/tmp/x/dut-code"), Mode::AntsIp, keys, 2);
        assert!(
            !ip.contains("busy_poll_us"),
            "AF_PACKET takes no busy polling"
        );
        let t = config_toml(Path::new("/tmp/x/dut-code"), Mode::AntsAfxdp, keys, 2);
        assert!(t.contains("name = \"dut-in\"\naddress = \"198.18.21.1/24\""));
        assert!(t.contains("name = \"dut-out\"\naddress = \"198.18.22.1/24\""));
        assert!(t.contains("endpoint = \"198.18.22.2:3322\""));
        assert!(t.contains("code_cache_dir = \"/tmp/x/dut-code\""));
        assert!(t.contains("busy_poll_us = 7\n"));
        assert!(t.contains("workers = 2\n"));
        assert!(!t.contains("busy_poll ="));
        let always = BusyPollKeys {
            when: Some(BusyPollWhen::Always),
            ..keys
        };
        let t = config_toml(Path::new("/tmp/x/dut-code"), Mode::AntsAfxdp, always, 2);
        assert!(t.contains("busy_poll_us = 7\nbusy_poll = \"always\"\n"));
        let off = BusyPollKeys {
            us: Some(0),
            ..always
        };
        let t = config_toml(Path::new("/tmp/x/dut-code"), Mode::AntsAfxdp, off, 2);
        assert!(t.contains("busy_poll_us = 0\n") && !t.contains("busy_poll ="));
    }
}
