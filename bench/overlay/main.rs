//! `overlay-bench`: end-to-end measurements of the UDP overlay on loopback, the benchmarks
//! issue 3 asks to record in `bench/RESULTS.md`.
//!
//! - `throughput`: a 3-hop chain (n1 → n2 → n3 → sink). Mode `capsule` runs real daemons
//!   ([`ants_node::daemon::spawn`]) forwarding the `forward` capsule; mode `plain` replaces
//!   each hop with a plain UDP relay built on the same I/O code (`BatchSocket`,
//!   `recvmmsg`/`sendmmsg`, tokio `AsyncFd` on a current-thread runtime, at most
//!   [`MAX_BATCHES_PER_TURN`] batches per wake-up, send after every batch with `ants_node::udp::flush` — the daemon's
//!   loop without the node). Both chains run side by side, each with its own paused
//!   generator; the modes take turns in short slices (plain, capsule, plain, …) so that
//!   background load on a shared machine hits both alike.
//! - `cold-load`: a 5-node line with empty code caches; one `forward` capsule with code
//!   injected at n1 for n5's app; wall time to delivery and each hop's load stages.
//! - `rss`: the capsule chain under a paced load of N capsules; the process's VmRSS before,
//!   after and after an idle period (the nodes are threads of this process).
//!
//! Every node and relay lives in this process, on its own thread, bound to 127.0.0.1; no
//! traffic leaves loopback. Timings are only printed, never asserted.

pub(crate) use std::collections::{BTreeMap, HashSet};
pub(crate) use std::io;
pub(crate) use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
pub(crate) use std::path::Path;
pub(crate) use std::sync::Arc;
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
pub(crate) use std::thread::JoinHandle;
pub(crate) use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub(crate) use ants_app::{AppClient, Inject};
pub(crate) use ants_bench::{join_runs, machine_ticks, median, pin_thread, process_ticks};
pub(crate) use ants_node::config::Config;
pub(crate) use ants_node::daemon::{self, DaemonHandle, MAX_BATCHES_PER_TURN, Stats};
pub(crate) use ants_node::udp::{BatchSocket, RecvBatch, SendBatch, UdpConfig, flush};
pub(crate) use ants_wire::{Address, CapsuleRepr, CapsuleType, Message};
pub(crate) use anyhow::{Context, Result, bail};
pub(crate) use clap::{Parser, Subcommand, ValueEnum};
pub(crate) use sha2::{Digest, Sha256};
pub(crate) use tokio::sync::watch;

mod chain;
mod cold_load;
mod relay;
mod rss;
mod sys;
mod throughput;
mod workers;

use chain::*;
use cold_load::*;
use relay::*;
use rss::*;
use sys::*;
use throughput::*;
use workers::*;

/// Overlay benchmarks on loopback: throughput, cold code loading, memory.
#[derive(Parser, Debug)]
#[command(name = "overlay-bench")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// The measurement window and the offered load, shared by `throughput` and `workers`.
#[derive(clap::Args, Debug)]
struct Window {
    /// Window per mode (or setting) and run, in seconds (a sum of slices).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Length of one measurement slice; modes (settings) take turns slice by slice.
    #[arg(long, default_value_t = 0.5)]
    slice: f64,
    /// Runs; each run starts fresh chains (or nodes) for every setting.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Pace the generator at this many datagrams/s (default: as fast as it can).
    #[arg(long)]
    rate: Option<f64>,
    /// Capsule payload bytes (the datagram is 92 bytes longer).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Warm-up before each slice opens (generator running), in seconds.
    #[arg(long, default_value_t = 0.2)]
    warmup: f64,
}

impl Window {
    fn opts(self, pin: bool, modes: Vec<Mode>) -> ThroughputOpts {
        ThroughputOpts {
            seconds: self.seconds,
            slice: self.slice,
            runs: self.runs,
            rate: self.rate,
            payload: self.payload,
            warmup: self.warmup,
            pin,
            modes,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Capsules/s through a 3-node chain versus a plain UDP relay chain on the same I/O code.
    Throughput {
        #[command(flatten)]
        window: Window,
        /// Do not pin threads (by default the generator and the sink run on CPU 0 and the three
        /// hops share CPU 1, as DESIGN.md §9 asks: generator on one core, forwarders on the
        /// other).
        #[arg(long)]
        no_pin: bool,
        /// Plain relays, generator and sink without UDP GSO/GRO (the daemons keep theirs): to
        /// measure what the offloads save.
        #[arg(long)]
        no_udp_offloads: bool,
        /// Modes to measure (both by default, alternating).
        #[arg(long, value_enum, num_args = 1.., default_values_t = [Mode::Plain, Mode::Capsule])]
        modes: Vec<Mode>,
    },
    /// One node relaying two capsule types with `[node] workers` = 1, 2, and 2 fed GSO runs
    /// that mix the types; settings interleaved slice by slice like `throughput`.
    Workers {
        #[command(flatten)]
        window: Window,
        /// Pin the generator and the sink to CPU 0 (the node's workers are never pinned).
        #[arg(long)]
        pin: bool,
    },
    /// Time from the first capsule to delivery 4 hops away with cold code caches.
    ColdLoad {
        /// Runs (a fresh 5-node line with fresh cache directories each).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Process RSS before and after N capsules through the capsule chain.
    Rss {
        /// Capsules to deliver to the sink.
        #[arg(long, default_value_t = 1_000_000)]
        capsules: u64,
        /// Generator pace, datagrams/s (keep it below saturation so loss stays low).
        #[arg(long, default_value_t = 50_000.0)]
        rate: f64,
        /// Idle period after the load before the last reading, in seconds.
        #[arg(long, default_value_t = 5.0)]
        idle: f64,
        /// Capsule payload bytes.
        #[arg(long, default_value_t = 64)]
        payload: usize,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Plain UDP relays (no node).
    Plain,
    /// Real daemons running the `forward` capsule.
    Capsule,
    /// The same daemons recording every input of their node cores (`[record]`).
    CapsuleRecord,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Capsule => "capsule",
            Mode::CapsuleRecord => "capsule-record",
        }
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Throughput {
            window,
            no_pin,
            no_udp_offloads,
            modes,
        } => {
            UDP_OFFLOADS.store(!no_udp_offloads, Ordering::Relaxed);
            throughput(&window.opts(!no_pin, modes))
        }
        Cmd::Workers { window, pin } => workers(&window.opts(pin, vec![Mode::Capsule])),
        Cmd::ColdLoad { runs } => cold_load(runs),
        Cmd::Rss {
            capsules,
            rate,
            idle,
            payload,
        } => rss(capsules, rate, idle, payload),
    }
}

// ---------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------

/// The generator's active address (`src` and `prev` of the generated capsules).
const GEN_ADDR: &str = "198.18.0.100";
/// The sink's active address in the 3-hop chain (n3's neighbour).
const SINK_ADDR: &str = "198.18.0.4";
/// Hops of the throughput chain.
const HOPS: usize = 3;

fn addr(s: &str) -> Address {
    s.parse().expect("address literal")
}

fn node_addr(i: usize) -> String {
    format!("198.18.0.{i}")
}

/// Wall-clock time since the UNIX epoch: the daemons' node time.
fn wall() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Whether the plain relays, the generator and the sink use UDP GSO/GRO (`--no-udp-offloads`
/// turns them off).
static UDP_OFFLOADS: AtomicBool = AtomicBool::new(true);

/// The socket settings the daemon uses with default limits (slots for the largest capsule),
/// so the plain relays, the sink and the generator move datagrams exactly as a node does.
fn udp_config() -> UdpConfig {
    let offloads = UDP_OFFLOADS.load(Ordering::Relaxed);
    UdpConfig {
        max_datagram: (ants_wire::capsule::FIXED_LEN + 16_384).max(2048),
        gso: offloads,
        gro: offloads,
        ..UdpConfig::default()
    }
}

fn loopback0() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// Free UDP ports on loopback (bound, then released for the daemons to bind).
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let socks = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    socks.iter().map(|s| Ok(s.local_addr()?.port())).collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `a - b` in milliseconds (negative if `b` is later).
fn ms_between(a: Duration, b: Duration) -> f64 {
    (a.as_secs_f64() - b.as_secs_f64()) * 1e3
}

// --- threads and CPU time, from /proc ----------------------------------------------------
