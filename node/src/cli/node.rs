//! `ants run`, `ants send`, `ants listen`: run a node, and talk to it as a local app.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ants_app::{AppClient, Inject, format_delivery_json};
use ants_node::config::Config;
use ants_wire::{Address, CapsuleType};
use anyhow::{Context, bail};
use clap::Args;

use super::CapsuleData;

/// `ants run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The node's configuration file (see docs/config.md).
    #[arg(short, long)]
    config: PathBuf,
    /// When the node stops, write its final counters to this file as one JSON object (node
    /// and per-protocol counters, drops by reason, loader, executor, disk, router).
    #[arg(long, value_name = "FILE")]
    stats_json: Option<PathBuf>,
    /// Run the UDP overlay as root anyway. It never needs root, so by default it refuses:
    /// capsules from the network should not run in a process that owns the machine.
    /// (Router mode needs root, or CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF and CAP_PERFMON, and
    /// is not refused.)
    /// ANTS_ALLOW_ROOT takes 1/0, true/false, yes/no, on/off.
    #[arg(long, env = "ANTS_ALLOW_ROOT", value_parser = clap::builder::BoolishValueParser::new())]
    allow_root: bool,
    /// Record every input of the node core (datagrams with their sources, timer firings,
    /// compile completions, app requests) under DIR/ADDRESS/ for `ants replay`; as
    /// `[record] dir` (its `max_bytes` bound applies, default 1 GiB per worker).
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,
}

impl RunArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let mut config = Config::load(&self.config)?;
        if let Some(dir) = self.record {
            let max_bytes = config
                .record
                .as_ref()
                .map_or(ants_node::config::RecordSection::DEFAULT_MAX_BYTES, |r| {
                    r.max_bytes
                });
            config.record = Some(ants_node::config::RecordSection { dir, max_bytes });
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        if root && config.router.is_none() && !self.allow_root {
            bail!(
                "refusing to run the UDP overlay as root: it needs no privilege, and capsules from \
                 the network should not run in a process that owns the machine. Run it as an \
                 unprivileged user (see dist/systemd/ants@.service), or pass --allow-root \
                 (ANTS_ALLOW_ROOT=1) if you mean it"
            );
        }
        if root && config.router.is_none() {
            tracing::warn!("running the UDP overlay as root (--allow-root)");
        }
        // Before the node's first thread, so that every thread has it.
        ants_node::privdrop::no_new_privileges().context("prctl(PR_SET_NO_NEW_PRIVS)")?;
        let stats = ants_node::daemon::run_until_signal(config)?;
        if let Some(path) = &self.stats_json {
            let text = serde_json::to_string_pretty(&stats.to_json())?;
            std::fs::write(path, text + "\n")
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// `ants check-config`.
#[derive(Debug, Args)]
pub(crate) struct CheckConfigArgs {
    /// The configuration files to check (see docs/config.md).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

impl CheckConfigArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let mut bad = 0;
        for path in &self.files {
            match Config::load(path) {
                Ok(c) => println!(
                    "{}: ok — node {} ({}), {} neighbours, {} routes, {} workers{}",
                    path.display(),
                    c.node.address,
                    if c.router.is_some() {
                        "router mode".to_owned()
                    } else {
                        format!("UDP overlay on {}", c.node.listen)
                    },
                    c.neighbours.len(),
                    c.routes.len(),
                    c.node.workers,
                    c.metrics
                        .as_ref()
                        .map_or_else(String::new, |m| format!(", metrics on {}", m.listen)),
                ),
                Err(e) => {
                    eprintln!("{e}");
                    bad += 1;
                }
            }
        }
        Ok(if bad == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}

/// `ants reload`.
#[derive(Debug, Args)]
pub(crate) struct ReloadArgs {
    #[command(flatten)]
    node: super::status::NodeSocket,
}

impl ReloadArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        match ants_app::reload(&self.node.socket, self.node.timeout()) {
            Ok(text) => {
                println!("{text}");
                Ok(ExitCode::SUCCESS)
            }
            Err(ants_app::ClientError::Refused { message }) => {
                eprintln!("reload refused, the node keeps its running config: {message}");
                Ok(ExitCode::FAILURE)
            }
            Err(e) => {
                Err(e).with_context(|| format!("asking the node on {}", self.node.socket.display()))
            }
        }
    }
}

/// `ants send`.
#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// The node's app socket (`app_socket` in the `[node]` section of its config).
    #[arg(short, long)]
    socket: PathBuf,
    /// The capsule module; handed to the node with the first capsule so it can run and serve it.
    #[arg(long, required_unless_present = "type_")]
    code: Option<PathBuf>,
    /// The capsule type (64 hex digits) when the node already has the code.
    #[arg(long = "type", id = "type_", conflicts_with = "code")]
    type_: Option<CapsuleType>,
    /// Destination active address.
    #[arg(long)]
    dst: Address,
    #[command(flatten)]
    data: CapsuleData,
    /// Resource budget (sends the capsule and its copies may make).
    #[arg(long, default_value_t = 64)]
    resource: u16,
    /// The app id to register as while sending.
    #[arg(long, default_value_t = 1000)]
    app: u32,
    /// Send this many capsules.
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Capsules per second when --count > 1 (0 = as fast as the node acknowledges).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Trace each capsule: every node that handles it (or a copy) reports what it did to
    /// this node; `ants trace` prints the timeline. Prints each trace id.
    #[arg(long)]
    trace: bool,
}

impl SendArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let (header, payload) = self.data.bytes()?;
        let mut inject = match (&self.code, self.type_) {
            (Some(path), _) => {
                let code = std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                Inject::with_code(code, self.dst, self.resource, header, payload)
            }
            (None, Some(ty)) => Inject {
                capsule_type: ty,
                code: None,
                dst: self.dst,
                resource: self.resource,
                header,
                payload,
                trace: None,
            },
            (None, None) => bail!("give --code FILE or --type HEX"),
        };
        let mut client = AppClient::connect(&self.socket, self.app)?;
        let gap = (self.rate > 0).then(|| Duration::from_secs_f64(1.0 / self.rate as f64));
        let start = Instant::now();
        let first_id = fresh_trace_id();
        for i in 0..self.count {
            let id = first_id.wrapping_add(i).max(1);
            inject.trace = self.trace.then_some(id);
            let ty = client.inject(&inject)?;
            if i == 0 {
                println!("sent {ty} from {} to {}", client.node(), self.dst);
                inject.code = None; // the node has it now
            }
            if self.trace && (i < 10 || i + 1 == self.count) {
                println!(
                    "trace {id:016x}: ants trace -s {} {id:016x}",
                    self.socket.display()
                );
            }
            if let Some(gap) = gap {
                let due = start + gap.mul_f64((i + 1) as f64);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
        }
        if self.count > 1 {
            println!(
                "sent {} capsules in {:.3} s",
                self.count,
                start.elapsed().as_secs_f64()
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// A trace id unlikely to repeat: the process's random hasher over the time and pid.
fn fresh_trace_id() -> u64 {
    use std::hash::BuildHasher;
    let seed = (std::time::SystemTime::now(), std::process::id());
    std::collections::hash_map::RandomState::new().hash_one(seed)
}

/// `ants listen`.
#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    /// The node's app socket (`app_socket` in the `[node]` section of its config).
    #[arg(short, long)]
    socket: PathBuf,
    /// The app id to receive deliveries for (`deliver_to_app(id)` in capsule code).
    #[arg(long, default_value_t = 0)]
    app: u32,
    /// Exit after this many deliveries.
    #[arg(long)]
    count: Option<u64>,
    /// Exit after this many seconds without a delivery.
    #[arg(long)]
    idle_timeout: Option<f64>,
}

impl ListenArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let mut client = AppClient::connect(&self.socket, self.app)?;
        eprintln!("listening as app {} on node {}", self.app, client.node());
        let mut n = 0u64;
        while self.count.is_none_or(|c| n < c) {
            let d = match self.idle_timeout {
                Some(secs) => match client.recv_timeout(Duration::from_secs_f64(secs))? {
                    Some(d) => d,
                    None => break,
                },
                None => client.recv()?,
            };
            println!("{}", format_delivery_json(&d));
            n += 1;
        }
        Ok(ExitCode::SUCCESS)
    }
}
