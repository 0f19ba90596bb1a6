//! `ants run`: the node daemon. A thin driver around [`ants_core::Node`]:
//!
//! - an underlay: the batched UDP overlay socket ([`crate::udp::BatchSocket`],
//!   `recvmmsg`/`sendmmsg`, module `overlay`) or router mode's interfaces (module `router`);
//!   each wake-up does a bounded turn of input (batches *and* time) so timers, apps and a stop
//!   request are served under load;
//! - compiles on a bounded queue of worker threads (module `compile`), persisted into the
//!   code cache directory and restored from it lazily (module `persist`);
//! - the local app socket ([`crate::app_server`]);
//! - a monotonic node clock (module `clock`): timers and soft-state TTLs never jump with the
//!   wall clock;
//! - optional fault injection: drop a fraction of code-transfer messages (testing aid).
//!
//! A node runs `[node] workers` forwarding threads (module `workers`): each is a whole node
//! core for the capsule types that hash to it, on its own current-thread runtime, with its
//! own `SO_REUSEPORT` socket that the kernel feeds with those types' datagrams; they share
//! the wasm engine, the compile threads, the app server and the code cache directory. Worker
//! 0 runs on the caller's runtime; [`spawn`] runs a node on its own thread (tests, demos),
//! [`run_until_signal`] until SIGINT/SIGTERM (the CLI).

mod clock;
mod compile;
pub mod metrics;
mod overlay;
mod persist;
mod router;
mod stats;
mod tap;
mod trace_json;
mod watches;
mod workers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ants_app::proto::Delivery;
use ants_core::loader::CodePolicy as LoaderPolicy;
use ants_core::node::Event;
use ants_core::node::{AcceptFrom as NodeAcceptFrom, Injection};
use ants_core::{LoadError, Node, NodeConfig, PeerBudgets};
use ants_wire::CapsuleRepr;
use ants_wire::CapsuleType;
use ants_wire::abi::LogLevel;
use anyhow::Context;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, trace, warn};

use crate::app_server::{AppDeliverer, AppHandle, AppRequest, AppServer};
use crate::config::{AcceptFrom, CodePolicy, Config};
use crate::{Compiler, ExecutorConfig, WasmExecutor};
use clock::Clock;
use compile::{CompilePool, CompileQueue, Done, Job};
use overlay::Overlay;
use persist::CodeStore;
use router::RouterIo;
use workers::{Shard, Steering, WorkerLink};

use crate::record::{EndCounters, ModuleResult, Recorder};
use crate::udp::BatchSocket;

/// Soft-store entries one dump lists (per worker).
pub const STORE_DUMP_ENTRIES: usize = 1000;
/// Key and value bytes a dump shows per entry (the rest is cut; the full lengths are given).
pub const STORE_DUMP_VALUE_BYTES: usize = 64;
/// JSON bytes of one whole dump (all workers): well inside one app frame (1.06 MiB).
pub const STORE_DUMP_BYTES: usize = 512 << 10;

/// Batches read per wake-up before the loop serves timers, apps and compilations.
pub const MAX_BATCHES_PER_TURN: usize = 16;
/// Time one turn of input may take before the loop serves timers, apps and a stop request
/// (checked between batches; one batch is bounded by the per-execution deadline).
pub const MAX_TURN_TIME: Duration = Duration::from_millis(20);
/// Capsule log lines written per second (burst the same); the rest are counted, not written,
/// so a capsule cannot flood the operator's log or spend the node's time formatting it.
pub const CAPSULE_LOG_LINES_PER_SEC: u64 = 100;

pub use router::RouterStats;
pub use stats::{NeighbourInfo, RecordStats, Stats, WorkerSummary};
pub use watches::{FirstViolation, WatchReport};

/// The node configuration the core needs, from the file's.
pub fn node_config(cfg: &Config) -> NodeConfig<SocketAddr> {
    let mut n = NodeConfig::new(cfg.node.address);
    n.neighbours = cfg
        .neighbours
        .iter()
        .map(|nb| (nb.address, nb.endpoint))
        .collect();
    n.routes = cfg.routes.iter().map(|r| (r.dst, r.via)).collect();
    n.seed = cfg.node.seed;
    let l = &cfg.limits;
    n.host.max_sends = l.max_sends;
    n.host.max_deliveries = l.max_deliveries;
    n.host.max_capsule_data = l.max_capsule_bytes;
    n.max_capsule_bytes = l.max_capsule_bytes;
    n.max_resource = l.max_resource;
    n.peer_fuel_per_sec = l.peer_fuel_per_sec;
    n.peer_fuel_burst = l.fuel.saturating_mul(20);
    n.quarantine.traps = l.quarantine_traps;
    n.quarantine.window = l.quarantine_window;
    n.quarantine.hold = l.quarantine_time;
    n.trace.sample = cfg.trace.sample;
    n.trace.reports_per_sec = cfg.trace.reports_per_sec;
    n.store.max_bytes = l.store_bytes;
    n.store.namespace_quota = l.store_namespace_bytes;
    n.code_cache_bytes = l.code_cache_bytes;
    n.loader.max_pending_per_type = l.pending_per_type;
    n.loader.max_pending_total = l.pending_total;
    n.loader.max_fetches_per_peer = l.fetches_per_peer;
    n.loader.serve_bytes_per_sec = l.serve_bytes_per_sec;
    n.loader.max_module_bytes = l.max_module_bytes;
    n.loader.compile_nanos_per_sec =
        u64::try_from(l.compile_time_per_sec.as_nanos()).unwrap_or(u64::MAX);
    n.loader.compile_burst_nanos = n.loader.compile_nanos_per_sec.saturating_mul(8);
    n.loader.compile_timeout = l.compile_timeout;
    n.loader.policy = match &cfg.code.policy {
        CodePolicy::Any => LoaderPolicy::AcceptAny,
        CodePolicy::AllowList(types) => LoaderPolicy::AllowList(types.iter().copied().collect()),
    };
    n.accept_from = match cfg.code.accept_from {
        AcceptFrom::Any => NodeAcceptFrom::Any,
        AcceptFrom::Neighbours => NodeAcceptFrom::Neighbours,
        AcceptFrom::OnLink => match &cfg.router {
            // On-link: a source inside one of the router's interface subnets.
            Some(r) => {
                let nets: Vec<(u32, u32)> = r
                    .interfaces
                    .iter()
                    .map(|i| {
                        let mask = u32::MAX
                            .checked_shl(32 - u32::from(i.prefix_len))
                            .unwrap_or(0);
                        (u32::from(i.address) & mask, mask)
                    })
                    .collect();
                NodeAcceptFrom::NeighboursAnd(Arc::new(move |p: &SocketAddr| match p {
                    SocketAddr::V4(v4) => {
                        let ip = u32::from(*v4.ip());
                        nets.iter().any(|(net, mask)| ip & mask == *net)
                    }
                    SocketAddr::V6(_) => false,
                }))
            }
            None => NodeAcceptFrom::Neighbours,
        },
    };
    n
}

/// The sandbox limits, from the file's.
pub fn executor_config(cfg: &Config) -> ExecutorConfig {
    let l = &cfg.limits;
    let mut e = ExecutorConfig {
        fuel: l.fuel,
        max_exec_time: Some(l.max_exec_time),
        max_memory_bytes: l.max_memory_bytes,
        max_module_bytes: l.max_module_bytes,
        max_modules: l.max_modules,
        max_instances: l.max_instances,
        ..ExecutorConfig::default()
    };
    e.host.max_sends = l.max_sends;
    e.host.max_deliveries = l.max_deliveries;
    e.host.max_capsule_data = l.max_capsule_bytes;
    e
}

/// How a node is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Keep running.
    Run,
    /// Stop taking new work (apps' injections are refused) and exit once no capsule is held
    /// for its code and the transmit queue is empty, or after `[limits] drain_time`; what is
    /// still held then is counted (`drain_dropped`).
    Drain,
    /// Exit between two turns of the loop.
    Now,
}

/// A node running on its own thread.
#[derive(Debug)]
pub struct DaemonHandle {
    local: SocketAddr,
    stop: watch::Sender<Stop>,
    stats: mpsc::Sender<oneshot::Sender<Stats>>,
    control: mpsc::Sender<AppRequest>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<Stats>>>,
}

impl DaemonHandle {
    /// The UDP endpoint the node is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A handle that can ask for the node's counters from any thread (cloneable).
    pub fn stats_probe(&self) -> StatsProbe {
        StatsProbe(self.stats.clone())
    }

    /// A snapshot of the node's counters (`None` if it has stopped).
    pub fn stats(&self) -> Option<Stats> {
        let (tx, rx) = oneshot::channel();
        self.stats.blocking_send(tx).ok()?;
        rx.blocking_recv().ok()
    }

    /// Read the node's config file again and apply what can change in place (as SIGHUP
    /// does): what changed and what needs a restart, or the file's error.
    pub fn reload(&self) -> Result<String, String> {
        let (tx, rx) = oneshot::channel();
        self.control
            .blocking_send(AppRequest::Reload { reply: tx })
            .map_err(|_| "the node has stopped".to_string())?;
        rx.blocking_recv()
            .map_err(|_| "the node has stopped".to_string())?
    }

    /// Stop the node and return its final counters.
    pub fn shutdown(self) -> anyhow::Result<Stats> {
        self.stop_with(Stop::Now)
    }

    /// Drain the node (as on SIGTERM, see [`Stop::Drain`]) and return its final counters.
    pub fn drain(self) -> anyhow::Result<Stats> {
        self.stop_with(Stop::Drain)
    }

    fn stop_with(mut self, how: Stop) -> anyhow::Result<Stats> {
        let _ = self.stop.send(how);
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => anyhow::bail!("node thread panicked"),
            None => anyhow::bail!("node already stopped"),
        }
    }
}

impl Drop for DaemonHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(Stop::Now);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Asks a running node for its counters; see [`DaemonHandle::stats_probe`].
#[derive(Debug, Clone)]
pub struct StatsProbe(mpsc::Sender<oneshot::Sender<Stats>>);

impl StatsProbe {
    /// A snapshot of the node's counters (`None` if it has stopped).
    pub fn get(&self) -> Option<Stats> {
        let (tx, rx) = oneshot::channel();
        self.0.blocking_send(tx).ok()?;
        rx.blocking_recv().ok()
    }
}

/// Start a node on its own thread; returns once it is bound (or failed to start).
pub fn spawn(config: Config) -> anyhow::Result<DaemonHandle> {
    let (stop, stop_rx) = watch::channel(Stop::Run);
    let (stats, stats_rx) = mpsc::channel(4);
    let stats_tx = stats.clone();
    let (control, control_rx) = mpsc::channel(4);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let name = format!("ants-node-{}", config.node.address);
    let thread = std::thread::Builder::new().name(name).spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the tokio runtime")?;
        let ch = Control {
            stop: stop_rx,
            stats: stats_tx,
            stats_rx,
            control: control_rx,
        };
        rt.block_on(serve(config, ch, Some(ready_tx)))
    })?;
    match ready_rx.recv() {
        Ok(Ok(local)) => Ok(DaemonHandle {
            local,
            stop,
            stats,
            control,
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => match thread.join() {
            Ok(Err(e)) => Err(e),
            _ => anyhow::bail!("node thread ended before it was ready"),
        },
    }
}

/// Run a node in the foreground until SIGINT or SIGTERM; logs and returns final counters.
///
/// The first signal drains the node ([`Stop::Drain`], at most `[limits] drain_time`); a
/// second one stops it at once. The node answers a signal between two turns of its loop,
/// and a turn is bounded in time ([`MAX_TURN_TIME`] plus one execution deadline), whatever
/// capsules do; compiles still running are abandoned, not waited for.
pub fn run_until_signal(config: Config) -> anyhow::Result<Stats> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let result = rt.block_on(async move {
        let (stop, stop_rx) = watch::channel(Stop::Run);
        let (stats_tx, stats_rx) = mpsc::channel(4);
        let (control, control_rx) = mpsc::channel(4);
        let drain = config.limits.drain_time;
        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    info!("SIGHUP: reloading the config");
                    let (reply, _) = oneshot::channel();
                    if control.send(AppRequest::Reload { reply }).await.is_err() {
                        break;
                    }
                }
            });
        }
        // Registered here, before the node makes its sockets: a SIGTERM that comes as soon
        // as the app socket exists (a service manager, a test) drains instead of killing.
        use tokio::signal::unix::{Signal, SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        let mut int = signal(SignalKind::interrupt()).ok();
        tokio::spawn(async move {
            async fn next(s: &mut Option<Signal>) {
                match s.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            for how in [Stop::Drain, Stop::Now] {
                let name = tokio::select! {
                    () = next(&mut int) => "SIGINT",
                    () = next(&mut term) => "SIGTERM",
                };
                match how {
                    Stop::Drain => info!(
                        "{name}: draining for at most {drain:?} (finishing held capsules); \
                         send it again to stop at once"
                    ),
                    _ => info!("{name}: stopping now"),
                }
                let _ = stop.send(how);
            }
        });
        let ch = Control {
            stop: stop_rx,
            stats: stats_tx,
            stats_rx,
            control: control_rx,
        };
        let stats = serve(config, ch, None).await?;
        info!(
            uptime = ?stats.uptime,
            runs = stats.node.runs,
            sent = stats.node.sent,
            delivered = stats.node.delivered,
            dropped = stats.node.drops.values().sum::<u64>(),
            drain_dropped = stats.drain_dropped,
            "stopped (run with --stats-json FILE to keep every counter)"
        );
        anyhow::Ok(stats)
    });
    // Do not wait for app connections or anything else still parked on the runtime.
    rt.shutdown_background();
    result
}

type Ready = std::sync::mpsc::Sender<anyhow::Result<SocketAddr>>;

/// Tiny seeded generator for fault injection.
struct Fault {
    loss: f64,
    state: u64,
    dropped: u64,
}

impl Fault {
    /// `true` if this code-transfer message should be dropped.
    fn drop_code(&mut self, datagram: &[u8]) -> bool {
        let is_code = datagram
            .get(3)
            .is_some_and(|k| *k != ants_wire::Kind::Capsule as u8);
        if self.loss <= 0.0 || !is_code {
            return false;
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let hit = (self.state % 1_000_000) as f64 / 1_000_000.0 < self.loss;
        self.dropped += u64::from(hit);
        hit
    }
}

struct Driver {
    node: Node<SocketAddr>,
    exec: WasmExecutor,
    clock: Clock,
    compiles: CompileQueue,
    /// The code cache directory's index, if there is a directory.
    store: Option<CodeStore>,
    fault: Fault,
    persisted: (usize, usize),
    compile_times: Vec<(CapsuleType, Duration)>,
    apps: Option<AppDeliverer>,
    /// Which types this worker runs, and the other workers' inboxes.
    steer: Steering,
    /// `ants capture`.
    tap: Arc<tap::Tap>,
    /// The configured routes, as written (for status).
    routes: Arc<[(String, String)]>,
    /// Capsule log lines written (one "peer": the node).
    log_budget: PeerBudgets<()>,
    logs_suppressed: u64,
    /// Draining ([`Stop::Drain`]): apps' injections are refused.
    draining: bool,
    /// How long a drain may take (`[limits] drain_time`).
    drain_time: Duration,
    /// Capsules still held for their code when a drain ran out of time.
    drain_dropped: u64,
    /// `[record]`: every input of the node core, for `ants replay`.
    rec: Option<Recorder>,
    /// `[[watch]]`: properties checked after every input.
    watching: watches::Watching,
}

impl Driver {
    /// A worker's node core: its own executor (instances) over the shared engine, a queue
    /// into the shared compile pool, the code store of its types.
    fn new(
        common: &Common,
        shard: Shard,
        store: Option<CodeStore>,
    ) -> anyhow::Result<(Driver, mpsc::UnboundedReceiver<Done>)> {
        let cfg = &common.cfg;
        let exec = WasmExecutor::new(common.compiler.clone())
            .map_err(|e| anyhow::anyhow!("cannot create the executor: {e:#}"))?;
        let mut node = Node::new(node_config(cfg));
        let mut rec = match &cfg.record {
            Some(r) => Some(start_recording(cfg, r, shard)?),
            None => None,
        };
        let mut persisted = (0, 0);
        if let Some(store) = &store {
            for ty in store.types() {
                if let Some(rec) = &mut rec {
                    rec.set_stored(common.clock.now(), ty, true);
                }
                persisted.0 += usize::from(node.set_stored(*ty, true));
            }
            info!(
                worker = shard.index,
                modules = persisted.0,
                bytes = store.bytes(),
                "code cache directory indexed"
            );
        }
        let (compiled_tx, compiled_rx) = mpsc::unbounded_channel();
        let seed = cfg.fault.seed.max(1);
        let mut watching = watches::Watching::default();
        watching.set(&cfg.watches);
        let driver = Driver {
            node,
            exec,
            clock: common.clock,
            compiles: common.compiles.queue(compiled_tx),
            store,
            fault: Fault {
                loss: cfg.fault.code_loss,
                state: seed,
                dropped: 0,
            },
            persisted,
            compile_times: Vec::new(),
            apps: common.apps.clone(),
            steer: Steering::new(shard, common.inboxes.clone()),
            tap: Arc::clone(&common.tap),
            routes: cfg
                .routes
                .iter()
                .map(|r| (r.dst.to_string(), r.via.to_string()))
                .collect(),
            log_budget: PeerBudgets::new(CAPSULE_LOG_LINES_PER_SEC, CAPSULE_LOG_LINES_PER_SEC, 1),
            logs_suppressed: 0,
            draining: false,
            drain_time: cfg.limits.drain_time,
            drain_dropped: 0,
            rec,
            watching,
        };
        Ok((driver, compiled_rx))
    }

    /// Run with `cfg`'s live parts (a reload): the node core's neighbours, routes, policies
    /// and limits; soft state, code and held capsules stay.
    fn apply(&mut self, cfg: &Config, text: &str) {
        if let Some(rec) = &mut self.rec {
            // The file as the hub read it for this reload, for the replay to apply the same
            // change.
            rec.reconfigured(self.clock.now(), text);
        }
        self.node.reconfigure(node_config(cfg));
        // A stricter [code] policy also applies to code already here: what it refuses is
        // evicted (module, verified code, code directory files), as `ants modules --evict`.
        let mut known: std::collections::BTreeSet<CapsuleType> =
            self.node.code_cache().types().copied().collect();
        known.extend(self.exec.loaded_types());
        if let Some(store) = &self.store {
            known.extend(store.types().copied());
        }
        known.retain(|ty| !self.node.allows(ty));
        for ty in known {
            self.evict(&ty);
            info!(%ty, "module evicted: the reloaded [code] policy refuses it");
        }
        self.routes = cfg
            .routes
            .iter()
            .map(|r| (r.dst.to_string(), r.via.to_string()))
            .collect();
        self.drain_time = cfg.limits.drain_time;
        self.watching.set(&cfg.watches);
    }

    /// After an input of the node core: the watched properties of its state.
    fn watch(&mut self) {
        if !self.watching.on() {
            return;
        }
        let Driver {
            watching,
            node,
            steer,
            clock,
            rec,
            ..
        } = self;
        watching.check(node, || at(steer.shard.index, clock, rec.as_ref(), 0));
    }

    /// Forget `ty`'s module everywhere: verified code, compiled module and instances, the
    /// code directory's files. Whether there was any.
    fn evict(&mut self, ty: &CapsuleType) -> bool {
        if let Some(rec) = &mut self.rec {
            rec.evict(self.clock.now(), ty);
        }
        let mut removed = self.node.evict(ty);
        removed |= self.exec.unload(ty);
        if let Some(store) = &mut self.store {
            removed |= store.evict(ty);
        }
        removed
    }

    /// While draining: `true` when the worker may exit — nothing is held for its code and
    /// nothing waits to be sent — or `out_of_time` (what is still held is then counted).
    fn drained(&mut self, out_of_time: bool) -> bool {
        let held = self.node.held_capsules();
        let worker = self.steer.shard.index;
        if held == 0 && self.node.pending_transmits() == 0 {
            info!(worker, "drained");
            return true;
        }
        if out_of_time {
            self.drain_dropped += held as u64;
            warn!(
                worker,
                held, "drain time over: capsules still held for their code are dropped"
            );
        }
        out_of_time
    }

    /// Node time now (monotonic).
    fn now(&self) -> Duration {
        self.clock.now()
    }

    /// The node's counters with the underlay's.
    fn snapshot<U: Underlay>(&self, io: &mut U) -> Stats {
        let mut stats = self.stats();
        io.stats(&mut stats);
        stats
    }

    fn stats(&self) -> Stats {
        let now = self.now();
        Stats {
            address: self.node.address(),
            uptime: self.clock.uptime(),
            neighbours: self
                .node
                .neighbours()
                .into_iter()
                .map(|(address, endpoint, heard, datagrams)| NeighbourInfo {
                    address,
                    endpoint,
                    last_heard: heard.map(|t| now.saturating_sub(t)),
                    datagrams,
                })
                .collect(),
            routes: self.routes.to_vec(),
            node: self.node.counters().clone(),
            loader: self.node.loader_counters().clone(),
            protocols: self
                .node
                .protocols()
                .iter()
                .map(|(t, c)| (*t, *c))
                .collect(),
            cached_types: self.node.code_cache().types().copied().collect(),
            module_bytes: self
                .node
                .code_cache()
                .sizes()
                .map(|(t, n)| (*t, n))
                .collect(),
            quarantined: self.node.quarantined(now),
            persisted: self.persisted,
            disk: self
                .store
                .as_ref()
                .map_or((0, 0), |s| (s.bytes(), s.pruned)),
            executor: self.exec.counters(),
            compiles_refused: self.compiles.refused,
            capsule_logs_suppressed: self.logs_suppressed,
            fault_dropped: self.fault.dropped,
            udp_dropped: 0,
            router: None,
            load_timings: self.node.load_timings().copied().collect(),
            compile_times: self.compile_times.clone(),
            workers: vec![WorkerSummary {
                index: self.steer.shard.index,
                datagrams_in: self.node.counters().datagrams_in,
                runs: self.node.counters().runs,
                handed_off: self.steer.handed_off,
                forwarded: 0,
                protocols: self.node.protocols().iter().map(|(t, _)| *t).collect(),
            }],
            handed_off: self.steer.handed_off,
            handoff_dropped: self.steer.handoff_dropped,
            trace: *self.node.trace_counters(),
            drain_dropped: self.drain_dropped,
            record: self
                .rec
                .as_ref()
                .map_or_else(RecordStats::default, |r| RecordStats {
                    workers: 1,
                    stopped: u64::from(!r.on()),
                    inputs: r.inputs(),
                    bytes: r.bytes(),
                }),
            watches: self.watching.report(),
        }
    }

    /// Act on the node's events: start compilations and restores, log capsule lines and
    /// failures.
    fn handle_events(&mut self) {
        while let Some(ev) = self.node.poll_event() {
            match ev {
                Event::Compile { ty, code } => {
                    info!(%ty, bytes = code.len(), "code verified; compiling");
                    let dir = self.store.as_ref().map(|s| s.dir().to_owned());
                    self.submit(Job::Compile { ty, code, dir });
                }
                Event::Restore { ty } => {
                    let Some(dir) = self.store.as_ref().map(|s| s.dir().to_owned()) else {
                        let now = self.now();
                        let why = "no code cache directory";
                        if let Some(rec) = &mut self.rec {
                            let r = ModuleResult::Unavailable(why.into());
                            rec.module_ready(now, &ty, None, Duration::ZERO, &r);
                        }
                        let r = Err(LoadError::Unavailable(why.into()));
                        self.node
                            .module_ready(now, ty, r, Duration::ZERO, &mut self.exec);
                        continue;
                    };
                    debug!(%ty, "restoring from the code cache directory");
                    self.submit(Job::Restore { ty, dir });
                }
                Event::CapsuleLog { ty, level, text } => {
                    let now = self.now();
                    if !self.log_budget.allows(now, ()) {
                        self.logs_suppressed += 1;
                        continue;
                    }
                    self.log_budget.charge(now, (), 1);
                    match level {
                        LogLevel::Error => error!(ty = %ty.short(), "capsule: {text}"),
                        LogLevel::Warn => warn!(ty = %ty.short(), "capsule: {text}"),
                        LogLevel::Info => info!(ty = %ty.short(), "capsule: {text}"),
                        LogLevel::Debug => debug!(ty = %ty.short(), "capsule: {text}"),
                        LogLevel::Trace => trace!(ty = %ty.short(), "capsule: {text}"),
                    }
                }
                Event::Trapped { ty, reason } => {
                    debug!(ty = %ty.short(), "capsule trapped: {reason}")
                }
                Event::Quarantined { ty, peer } => {
                    warn!(%ty, %peer, "capsules of this type from this peer keep trapping: quarantined")
                }
                Event::CodeFailed {
                    ty,
                    reason,
                    dropped,
                } => {
                    warn!(%ty, dropped, "code loading failed: {reason}")
                }
            }
        }
    }

    /// Queue a compile job; a full queue fails the load at once (counted).
    fn submit(&mut self, job: Job) {
        if let Some(done) = self.compiles.submit(job) {
            warn!(ty = %done.ty, "not compiled: the compile queue is full");
            self.compiled(done);
        }
    }

    /// A compile or restore finished: index what it stored, install, release held capsules.
    fn compiled(&mut self, done: Done) {
        let Done {
            ty,
            result,
            took,
            stored_bytes,
            reused,
        } = done;
        self.persisted.1 += usize::from(reused && result.is_ok());
        if self.compile_times.len() < 64 {
            self.compile_times.push((ty, took));
        }
        if let Some(store) = &mut self.store {
            let now = self.clock.now();
            if stored_bytes > 0 {
                store.insert(ty, stored_bytes);
                for gone in store.prune() {
                    if let Some(rec) = &mut self.rec {
                        rec.set_stored(now, &gone, false);
                    }
                    self.node.set_stored(gone, false);
                }
                if store.types().any(|t| *t == ty) {
                    if let Some(rec) = &mut self.rec {
                        rec.set_stored(now, &ty, true);
                    }
                    self.node.set_stored(ty, true);
                }
            } else if result.is_err() {
                store.forget(&ty);
            }
        }
        let mut added = None;
        let r = result.and_then(|(m, code)| {
            self.node.add_code(ty, Arc::clone(&code));
            added = Some(code);
            self.exec.install(m).map(drop)
        });
        match &r {
            Ok(()) => info!(%ty, took_ms = took.as_secs_f64() * 1e3, "module installed"),
            Err(e) => warn!(%ty, "module rejected: {e}"),
        }
        let now = self.now();
        if let Some(rec) = &mut self.rec {
            let result = match &r {
                Ok(()) => ModuleResult::Ok,
                Err(e) if e.is_invalid() => ModuleResult::Refused(e.to_string()),
                Err(e) => ModuleResult::Unavailable(e.to_string()),
            };
            rec.module_ready(now, &ty, added.as_deref(), took, &result);
        }
        self.node.module_ready(now, ty, r, took, &mut self.exec);
        self.watch();
    }

    /// An app's request: registration table semantics live in the node; a stats request
    /// is answered with the underlay's counters too.
    fn app_request<U: Underlay>(&mut self, req: AppRequest, io: &mut U) {
        match req {
            AppRequest::Register {
                app, accept, reply, ..
            } => {
                if let Some(rec) = &mut self.rec {
                    rec.register(self.clock.now(), app, &accept);
                }
                let r = if self.node.register_app_accepting(app, &accept) {
                    info!(app, accepts = accept.len(), "app registered");
                    Ok(())
                } else {
                    Err(format!("app id {app} is already registered"))
                };
                let _ = reply.send(r);
            }
            AppRequest::Disconnected { app } => {
                info!(app, "app disconnected");
                if let Some(rec) = &mut self.rec {
                    rec.unregister(self.clock.now(), app);
                }
                self.node.unregister_app(app);
            }
            AppRequest::Stats { reply } => {
                let _ = reply.send(Ok(self.snapshot(io).to_json().to_string()));
            }
            AppRequest::StoreDump { ty, reply } => {
                let _ = reply.send(Ok(self.store_dump(ty)));
            }
            AppRequest::Traces { id, reply } => {
                let _ = reply.send(Ok(trace_json::traces(&self.node, id)));
            }
            // The hub starts captures; a worker asked directly does the same.
            AppRequest::Capture { out, reply } => {
                let _ = reply.send(self.tap.start(out));
            }
            AppRequest::Evict { ty, reply } => {
                let removed = self.evict(&ty);
                info!(%ty, removed, "module evicted on request");
                let _ = reply.send(Ok(removed));
            }
            AppRequest::Apply {
                config,
                text,
                reply,
            } => {
                self.apply(&config, &text);
                let _ = reply.send(Ok(()));
            }
            AppRequest::Reload { reply } => {
                let _ = reply.send(Err("reloads are the hub's".into()));
            }
            AppRequest::Inject { reply, .. } if self.draining => {
                let _ = reply.send(Err("the node is stopping (draining)".to_owned()));
            }
            AppRequest::Inject { app, inject, reply } => {
                let inj = Injection {
                    ty: inject.capsule_type,
                    code: inject.code.as_deref(),
                    dst: inject.dst,
                    resource: inject.resource,
                    header: &inject.header,
                    payload: &inject.payload,
                    trace: inject.trace,
                };
                let now = self.now();
                if let Some(rec) = &mut self.rec {
                    rec.inject(now, app, &inj);
                }
                let r = self.node.inject(now, app, inj, &mut self.exec);
                self.watch();
                let _ = reply.send(r.map(|()| inject.capsule_type).map_err(|e| e.to_string()));
            }
        }
    }

    /// The soft-store's live entries of `ty` (or of every type this worker runs) as JSON:
    /// at most [`STORE_DUMP_ENTRIES`] entries, keys and values cut to
    /// [`STORE_DUMP_VALUE_BYTES`] (their full lengths given): at most ~300 KiB.
    fn store_dump(&self, ty: Option<CapsuleType>) -> serde_json::Value {
        let store = self.node.store();
        let now = self.now();
        let spaces: Vec<[u8; 32]> = match ty {
            Some(t) => vec![t.0],
            None => store.namespaces().into_iter().copied().collect(),
        };
        let mut left = STORE_DUMP_ENTRIES;
        let mut truncated = false;
        let mut namespaces = Vec::new();
        for ns in spaces {
            let entries = store.entries(&ns);
            if entries.is_empty() {
                continue;
            }
            truncated |= entries.len() > left;
            let shown: Vec<serde_json::Value> = entries
                .iter()
                .take(left)
                .map(|e| {
                    let value = &e.value[..e.value.len().min(STORE_DUMP_VALUE_BYTES)];
                    let key = &e.key[..e.key.len().min(STORE_DUMP_VALUE_BYTES)];
                    serde_json::json!({
                        "key": hex::encode(key),
                        "key_len": e.key.len(),
                        "value": hex::encode(value),
                        "value_len": e.value.len(),
                        "ttl_ms": e.expires_at.saturating_sub(now).as_secs_f64() * 1e3,
                    })
                })
                .collect();
            left -= shown.len();
            namespaces.push(serde_json::json!({
                "type": CapsuleType(ns).to_string(),
                "count": entries.len(),
                "bytes": store.namespace_bytes(&ns),
                "entries": shown,
            }));
        }
        serde_json::json!({"namespaces": namespaces, "truncated": truncated})
    }

    /// Hand the node's deliveries to the app server (never blocks; drops are counted there).
    fn deliver(&mut self) {
        let mut taken = 0;
        while let Some(d) = self.node.poll_delivery() {
            taken += 1;
            if let Some(rec) = &mut self.rec {
                rec.outputs().delivered(d.app, &d.capsule);
            }
            let Ok(repr) = CapsuleRepr::parse(&d.capsule) else {
                continue;
            };
            if self.watching.on() {
                let (steer, clock, rec) = (&self.steer, &self.clock, &self.rec);
                // The deliveries' record is written after this loop: it is the next input.
                let at = || at(steer.shard.index, clock, rec.as_ref(), 1);
                self.watching.delivered(d.app, repr.payload, at);
            }
            let Some(apps) = &self.apps else { continue };
            let ns = u64::try_from(d.at.as_nanos()).unwrap_or(u64::MAX);
            apps.deliver(d.app, Delivery::from_repr(&repr, ns));
        }
        if let Some(rec) = &mut self.rec {
            rec.delivered(self.clock.now(), taken);
        }
    }

    /// Feed one received datagram to the node (fault injection applies here), or stage it
    /// for the worker that runs its type.
    fn datagram(&mut self, now: Duration, from: SocketAddr, data: &[u8]) {
        if self.tap.on() {
            self.tap.offer(now, false, from, data);
        }
        if self.fault.drop_code(data) {
            return;
        }
        // Another worker's, from a peer the node accepts: hand it over. A stranger's is
        // dropped and counted here, never copied to another worker.
        if let Some(owner) = self.steer.foreign_owner(data)
            && self.node.accepts(&from)
        {
            self.steer.stage(owner, from, data);
        } else {
            self.node_datagram(now, from, data);
        }
    }

    /// A datagram for this worker's node core (received, or handed over by another worker).
    fn node_datagram(&mut self, now: Duration, from: SocketAddr, data: &[u8]) {
        if let Some(rec) = &mut self.rec {
            rec.datagram(now, &from, data);
        }
        self.node.handle_datagram(now, from, data, &mut self.exec);
        self.watch();
    }

    /// The node core's timers are due.
    fn timeout(&mut self, now: Duration) {
        if let Some(rec) = &mut self.rec {
            rec.timeout(now);
        }
        self.node.handle_timeout(now);
        self.watch();
    }

    /// The worker stops: the recording gets its last checkpoint and the node's counters.
    fn finish_recording(&mut self) {
        let now = self.now();
        if let Some(rec) = &mut self.rec {
            rec.finish(now, &EndCounters::of(self.node.counters()));
            info!(file = %rec.path().display(), "recording closed");
        }
    }

    /// Hand up to `max` of the node's datagrams to `send` (fault injection applies here);
    /// returns how many the node still holds.
    fn drain_transmits(&mut self, max: usize, mut send: impl FnMut(SocketAddr, &[u8])) -> usize {
        let (fault, tap, clock) = (&mut self.fault, &self.tap, &self.clock);
        let mut rec = self.rec.as_mut();
        let mut taken = 0;
        let left = self.node.drain_transmits_up_to(max, |to, bytes| {
            taken += 1;
            if let Some(rec) = &mut rec {
                rec.outputs().sent(&to, bytes);
            }
            if !fault.drop_code(bytes) {
                if tap.on() {
                    tap.offer(clock.now(), true, to, bytes);
                }
                send(to, bytes);
            }
        });
        if let Some(rec) = &mut rec {
            rec.drained(clock.now(), taken);
        }
        left
    }
}

/// Start the node's parts and run its workers until `stop`. `stats` is the sending side of
/// `stats_rx`: the metrics server, if configured, asks for snapshots through it like a
/// [`DaemonHandle`].
///
/// Worker 0 runs on the calling runtime, workers 1.. each on a thread of their own with a
/// current-thread runtime; the hub (module `workers`) answers stats and app requests for
/// all of them on the calling runtime.
/// How a node is controlled from outside: stop, counters, reloads.
struct Control {
    stop: watch::Receiver<Stop>,
    stats: mpsc::Sender<oneshot::Sender<Stats>>,
    stats_rx: mpsc::Receiver<oneshot::Sender<Stats>>,
    control: mpsc::Receiver<AppRequest>,
}

async fn serve(cfg: Config, ch: Control, ready: Option<Ready>) -> anyhow::Result<Stats> {
    let Control {
        stop,
        stats,
        stats_rx,
        control,
    } = ch;
    let fail = |e: anyhow::Error, ready: Option<Ready>| match ready {
        Some(r) => {
            let _ = r.send(Err(anyhow::anyhow!("{e:#}")));
            Err(anyhow::anyhow!("node did not start"))
        }
        None => Err(e),
    };
    let setup = match Setup::new(&cfg, stats).await {
        Ok(s) => s,
        Err(e) => return fail(e, ready),
    };
    let Setup {
        common,
        mut seeds,
        inboxes,
        apps,
        app_rx,
        local,
    } = setup;
    // Router mode: every worker's sockets open on this thread, which then drops privileges
    // (keeping the capabilities router mode needs); the workers' threads, started after,
    // inherit its capability sets.
    if let Some(r) = &cfg.router {
        let parts = match router::open(r, seeds.len()) {
            Ok(p) => p,
            Err(e) => return fail(e, ready),
        };
        for (seed, p) in seeds.iter_mut().zip(parts) {
            seed.router = Some(p);
        }
        if let Some(user) = &r.user
            && let Err(e) = drop_privileges(user, &cfg)
        {
            return fail(e, ready);
        }
    }
    let compile_pool = common.compiles.clone();
    let mut links = Vec::with_capacity(seeds.len());
    let mut threads = Vec::new();
    let mut first = None;
    let mut up = Vec::new();
    for (seed, inbox) in seeds.into_iter().zip(inboxes) {
        let (stats_tx, stats_rx) = mpsc::channel(4);
        let (app_tx, app_rx) = mpsc::channel(1024);
        links.push(WorkerLink {
            stats: stats_tx,
            apps: app_tx,
        });
        let channels = Channels {
            stop: stop.clone(),
            stats: stats_rx,
            apps: app_rx,
            inbox,
        };
        if seed.shard.index == 0 {
            first = Some((seed, channels));
            continue;
        }
        let (up_tx, up_rx) = oneshot::channel();
        up.push(up_rx);
        let common = common.clone();
        let name = format!("ants-worker-{}", seed.shard.index);
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start a worker's tokio runtime")?;
            rt.block_on(worker(&common, seed, channels, up_tx))
        });
        match thread {
            Ok(t) => threads.push(t),
            Err(e) => return fail(anyhow::anyhow!("cannot start a worker: {e}"), ready),
        }
    }
    let Some((seed, channels)) = first else {
        return fail(anyhow::anyhow!("no worker"), ready);
    };
    let shard = seed.shard;
    let main = match Worker::start(&common, seed, channels) {
        Ok(w) => w,
        Err(e) => return fail(e, ready),
    };
    for rx in up {
        match rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return fail(e, ready),
            Err(_) => return fail(anyhow::anyhow!("a worker ended before it was ready"), ready),
        }
    }
    info!(
        address = %cfg.node.address,
        %local,
        workers = shard.count,
        "node up"
    );
    if let Some(r) = ready {
        let _ = r.send(Ok(local));
    }
    tokio::spawn(workers::hub(
        stats_rx,
        app_rx,
        control,
        links,
        shard,
        Arc::clone(&common.tap),
        Arc::clone(&common.cfg),
    ));
    let mut total = main.run().await?;
    // Keep the app server until every worker has stopped delivering.
    for t in threads {
        match t.join() {
            Ok(Ok(s)) => total.merge(s),
            Ok(Err(e)) => warn!("a worker failed: {e:#}"),
            Err(_) => error!("a worker panicked"),
        }
    }
    // A compile that finished after its worker stopped may have persisted a module no store
    // indexed: let a write in progress end (briefly), then bring the directory within its
    // bound again, as the next start would.
    if cfg.node.code_cache_dir.is_some() {
        compile_pool.wait_persisted(Duration::from_secs(1));
        for index in 0..shard.count {
            let s = Shard {
                index,
                count: shard.count,
            };
            if let Err(e) = open_store(&cfg, s) {
                warn!("{e:#}");
            }
        }
    }
    drop(apps);
    Ok(total)
}

/// Worker `worker`'s node core now, for a watch's report: its uptime and, while it records,
/// the number of the input just recorded, or of the one `ahead` after it.
fn at(worker: usize, clock: &Clock, rec: Option<&Recorder>, ahead: u64) -> watches::At {
    watches::At {
        worker,
        uptime: clock.uptime(),
        input: rec
            .filter(|r| r.on())
            .map(|r| (r.inputs() + ahead).saturating_sub(1)),
    }
}

/// Start worker `shard`'s recording under `[record] dir`, with the config file's text.
fn start_recording(
    cfg: &Config,
    r: &crate::config::RecordSection,
    shard: Shard,
) -> anyhow::Result<Recorder> {
    let Some(path) = &cfg.path else {
        anyhow::bail!("recording needs the node's config file (the recording carries its text)");
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("recording: cannot read {}", path.display()))?;
    let rec = Recorder::create(
        &r.dir,
        &cfg.node.address,
        (shard.index, shard.count),
        &text,
        r.max_bytes,
    )
    .with_context(|| format!("cannot record into {}", r.dir.display()))?;
    info!(file = %rec.path().display(), max_bytes = r.max_bytes, "recording the node core's inputs");
    Ok(rec)
}

/// Shard `shard`'s part of the code directory, if the node has one: indexed and pruned to
/// its share of `code_cache_disk_bytes`.
fn open_store(cfg: &Config, shard: Shard) -> anyhow::Result<Option<CodeStore>> {
    let Some(dir) = &cfg.node.code_cache_dir else {
        return Ok(None);
    };
    let max = cfg.limits.code_cache_disk_bytes / shard.count as u64;
    CodeStore::open(dir, max, &|ty| shard.owns(ty))
        .map(Some)
        .with_context(|| format!("code cache directory {}", dir.display()))
}

/// What every worker shares.
#[derive(Clone)]
struct Common {
    cfg: Arc<Config>,
    compiler: Compiler,
    compiles: CompilePool,
    apps: Option<AppDeliverer>,
    clock: Clock,
    inboxes: Arc<[mpsc::Sender<workers::Handoff>]>,
    tap: Arc<tap::Tap>,
}

/// One worker's own parts, made before any worker runs.
struct Seed {
    shard: Shard,
    store: Option<CodeStore>,
    /// The overlay socket (`None` in router mode).
    socket: Option<BatchSocket>,
    /// Router mode: this worker's sockets and router.
    router: Option<router::RouterParts>,
}

/// The channels a worker serves.
struct Channels {
    stop: watch::Receiver<Stop>,
    stats: mpsc::Receiver<oneshot::Sender<Stats>>,
    apps: mpsc::Receiver<AppRequest>,
    inbox: mpsc::Receiver<workers::Handoff>,
}

/// The node's shared parts and its workers' seeds.
struct Setup {
    common: Common,
    seeds: Vec<Seed>,
    inboxes: Vec<mpsc::Receiver<workers::Handoff>>,
    apps: Option<AppHandle>,
    app_rx: Option<mpsc::Receiver<AppRequest>>,
    local: SocketAddr,
}

impl Setup {
    async fn new(
        cfg: &Config,
        stats: mpsc::Sender<oneshot::Sender<Stats>>,
    ) -> anyhow::Result<Setup> {
        let count = cfg.node.workers.max(1);
        // Root with `[router] user`: an earlier run handed the code directory to that user.
        if let Some(user) = cfg.router.as_ref().and_then(|r| r.user.as_deref())
            // SAFETY: geteuid has no preconditions and cannot fail.
            && unsafe { libc::geteuid() } == 0
        {
            persist::also_trust_owner(crate::privdrop::lookup(user)?.uid);
        }
        let compiler = Compiler::new(executor_config(cfg))
            .map_err(|e| anyhow::anyhow!("cannot create the wasm engine: {e:#}"))?;
        let compiles = CompilePool::start(
            &compiler,
            cfg.limits.compile_workers,
            cfg.limits.compile_queue,
        )
        .context("cannot start the compile workers")?;
        let (sockets, local) = match &cfg.router {
            None => {
                let sockets = Overlay::bind_group(cfg, count)?;
                let local = sockets[0].local_addr()?;
                (sockets.into_iter().map(Some).collect::<Vec<_>>(), local)
            }
            Some(_) => ((0..count).map(|_| None).collect(), cfg.node.listen),
        };
        let mut seeds = Vec::with_capacity(count);
        for (index, socket) in sockets.into_iter().enumerate() {
            let shard = Shard { index, count };
            let store = open_store(cfg, shard)?;
            seeds.push(Seed {
                shard,
                store,
                socket,
                router: None,
            });
        }
        let (senders, inboxes): (Vec<_>, Vec<_>) = (0..count)
            .map(|_| mpsc::channel(workers::INBOX_HANDOFFS))
            .unzip();
        let (apps, app_rx) = match &cfg.node.app_socket {
            Some(path) => {
                let server = AppServer::bind(path)
                    .with_context(|| format!("cannot listen for apps on {}", path.display()))?
                    .with_node_address(cfg.node.address);
                let (tx, rx) = mpsc::channel(1024);
                (Some(server.run(tx)), Some(rx))
            }
            None => (None, None),
        };
        if let Some(m) = &cfg.metrics {
            let listener = metrics::bind(m.listen, m.public).await?;
            tokio::spawn(metrics::serve(listener, stats));
        }
        Ok(Setup {
            common: Common {
                cfg: Arc::new(cfg.clone()),
                compiler,
                compiles,
                apps: apps.as_ref().map(AppHandle::deliverer),
                clock: Clock::start(),
                inboxes: senders.into(),
                tap: Arc::new(tap::Tap::new(local)),
            },
            seeds,
            inboxes,
            apps,
            app_rx,
            local,
        })
    }
}

/// Run worker `seed` on the current runtime: report start-up through `up`, then serve until
/// stopped.
async fn worker(
    common: &Common,
    seed: Seed,
    channels: Channels,
    up: oneshot::Sender<anyhow::Result<()>>,
) -> anyhow::Result<Stats> {
    match Worker::start(common, seed, channels) {
        Ok(w) => {
            let _ = up.send(Ok(()));
            w.run().await
        }
        Err(e) => {
            let _ = up.send(Err(e));
            Err(anyhow::anyhow!("worker did not start"))
        }
    }
}

/// A started worker: its node core, its underlay and its channels.
struct Worker {
    driver: Driver,
    io: WorkerIo,
    lp: Loop,
}

/// A worker's underlay (boxed: they differ in size by kilobytes).
enum WorkerIo {
    Overlay(Box<Overlay>),
    Router(Box<RouterIo>),
}

/// What a worker's event loop waits on besides its underlay.
struct Loop {
    channels: Channels,
    compiled: mpsc::UnboundedReceiver<Done>,
}

impl Worker {
    /// Build the worker's node core and open its underlay (on the current runtime).
    fn start(common: &Common, seed: Seed, channels: Channels) -> anyhow::Result<Worker> {
        let (driver, compiled) = Driver::new(common, seed.shard, seed.store)?;
        let lp = Loop { channels, compiled };
        let cfg = &common.cfg;
        let io = match (seed.socket, seed.router) {
            (Some(socket), _) => WorkerIo::Overlay(Box::new(Overlay::new(socket, cfg)?)),
            (None, Some(parts)) => WorkerIo::Router(Box::new(RouterIo::start(parts)?)),
            (None, None) => anyhow::bail!("a worker without a socket"),
        };
        Ok(Worker { driver, io, lp })
    }

    async fn run(self) -> anyhow::Result<Stats> {
        let Worker { driver, io, lp } = self;
        match io {
            WorkerIo::Overlay(io) => run(driver, *io, lp).await,
            WorkerIo::Router(io) => run(driver, *io, lp).await,
        }
    }
}

/// Router mode with `[router] user`: the interfaces are open; become `user` (keeping the
/// capabilities [`crate::privdrop::KEPT`]) and hand it the code directory. Not root already:
/// nothing to drop (a warning).
fn drop_privileges(user: &str, cfg: &Config) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        warn!(
            user,
            "[router] user is set but the node is not root: nothing to drop"
        );
        return Ok(());
    }
    let to = crate::privdrop::lookup(user)?;
    if let Some(dir) = &cfg.node.code_cache_dir {
        crate::privdrop::give_dir(dir, to)?;
    }
    crate::privdrop::drop_to(to)?;
    let kept: Vec<&str> = crate::privdrop::KEPT.iter().map(|(_, n)| *n).collect();
    info!(user, uid = to.uid, kept = ?kept, "privileges dropped");
    Ok(())
}

/// Where the node's datagrams come from and go to: the UDP overlay socket ([`Overlay`]) or
/// router mode's interfaces ([`RouterIo`]). The event loop in [`run`] is shared.
trait Underlay {
    /// Resolves when input may be waiting.
    async fn readable(&mut self) -> std::io::Result<()>;
    /// Feed a bounded turn of input to the node, sending its output as it goes; `true` if
    /// more input may be waiting.
    async fn receive(&mut self, driver: &mut Driver) -> bool;
    /// Send the node's transmits.
    async fn flush(&mut self, driver: &mut Driver);
    /// The underlay's own next deadline (e.g. ARP retries).
    fn poll_timeout(&self) -> Option<Duration> {
        None
    }
    /// The deadline passed.
    fn handle_timeout(&mut self, _now: Duration) {}
    /// Add the underlay's counters.
    fn stats(&mut self, stats: &mut Stats);
}

/// A worker's event loop: input, handoffs, compilations, timers, apps and stats requests,
/// one at a time. A stop request wins over everything else waiting.
async fn run<U: Underlay>(mut driver: Driver, mut io: U, lp: Loop) -> anyhow::Result<Stats> {
    let Loop {
        channels:
            Channels {
                mut stop,
                stats: mut stats_rx,
                apps: mut app_rx,
                mut inbox,
            },
        compiled: mut compiled_rx,
    } = lp;
    let mut more = false;
    // When draining: the time by which the node exits whatever is still held.
    let mut drain_until: Option<Duration> = None;
    loop {
        let deadline = match (driver.node.poll_timeout(), io.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let deadline = match (deadline, drain_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let now = driver.now();
        if let Some(until) = drain_until
            && driver.drained(now >= until)
        {
            break;
        }
        let sleep = deadline.map_or(Duration::from_secs(3600), |at| at.saturating_sub(now));
        let input = tokio::select! {
            biased;
            r = stop.changed() => {
                let how = if r.is_ok() { *stop.borrow_and_update() } else { Stop::Now };
                match how {
                    Stop::Run => {}
                    Stop::Drain => {
                        drain_until.get_or_insert(now + driver.drain_time);
                        driver.draining = true;
                    }
                    Stop::Now => break,
                }
                false
            }
            Some(reply) = stats_rx.recv() => {
                let _ = reply.send(driver.snapshot(&mut io));
                false
            }
            Some(done) = compiled_rx.recv() => { driver.compiled(done); false }
            () = tokio::time::sleep(sleep) => {
                let now = driver.now();
                driver.timeout(now);
                io.handle_timeout(now);
                false
            }
            Some(req) = app_rx.recv() => { driver.app_request(req, &mut io); false }
            // Another worker received these (and captured them, and applied fault injection):
            // straight to the node.
            Some(handoff) = inbox.recv() => {
                let now = driver.now();
                for (from, data) in handoff.iter() {
                    driver.node_datagram(now, from, data);
                }
                false
            }
            r = io.readable(), if !more => { r?; true }
            () = tokio::task::yield_now(), if more => true,
        };
        if input {
            more = io.receive(&mut driver).await;
            driver.steer.flush();
        }
        driver.handle_events();
        driver.deliver();
        io.flush(&mut driver).await;
    }
    driver.finish_recording();
    Ok(driver.snapshot(&mut io))
}

/// The next message of an optional channel, or never.
async fn recv_opt<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
