//! `ants replay`: run a recording (module `crate::record`) through a fresh node core with the
//! recorded configuration and modules, and check that it makes the same outputs.
//!
//! Every recorded input becomes the same call on the node core at the same node time, the
//! driver's takes from the node's transmit and delivery queues included (both queues are
//! bounded, so when they are emptied matters), and the replay hashes what it takes as the
//! live driver did. Each checkpoint in the recording says how many outputs the live node had
//! produced by then and their hash, which the replay must match exactly; the end record adds
//! the node's counters. The first difference stops the replay of that worker and is reported
//! with the input, its node time and what differed.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ants_core::node::Injection;
use ants_core::{LoadError, Node};
use xxhash_rust::xxh3::Xxh3;

use crate::config::Config;
use crate::daemon::{executor_config, node_config};
use crate::record::{
    Checkpoint, EndCounters, Header, Input, ModuleResult, ReadError, RecordReader, hash_delivery,
    hash_sent, module_file,
};
use crate::{Compiler, WasmExecutor};
use ants_sim::{AppStats, Watch};

/// Why a recording could not be replayed at all.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Unreadable or corrupt file.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Nothing to replay there.
    #[error("{0}: no recordings (worker-*.rec) here or in the directories below")]
    Empty(String),
    /// The recorded configuration does not parse with this build.
    #[error("{file}: the recorded configuration: {error}")]
    Config { file: String, error: String },
    /// Recorded by another version: its node core may behave differently.
    #[error(
        "{file}: recorded by ants {recorded}, this is ants {this}: replay it with the version that recorded it"
    )]
    Version {
        file: String,
        recorded: String,
        this: String,
    },
    /// A module the recording needs is missing or is not what its name says.
    #[error("{file}: {what}")]
    Module { file: String, what: String },
    /// The wasm engine could not start.
    #[error("cannot create the wasm engine: {0}")]
    Engine(String),
}

/// How one worker's replay ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every checkpoint and the end matched.
    Identical,
    /// Outputs or counters differed: at which input (0-based), its node time, and what.
    Diverged {
        input: u64,
        at: Duration,
        what: String,
    },
    /// The recording stopped before the end (its bound, or the node did not stop
    /// cleanly); everything up to there matched.
    Partial(String),
    /// A watched property failed (outputs matched up to there): at which input, its node
    /// time, the property and what was seen.
    Violated {
        input: u64,
        at: Duration,
        watch: String,
        what: String,
    },
}

/// One worker's replay.
#[derive(Debug, Clone)]
pub struct WorkerReplay {
    /// The recording.
    pub file: PathBuf,
    /// The node's address (from its recorded configuration).
    pub address: String,
    pub worker: u16,
    pub workers: u16,
    /// Inputs replayed.
    pub inputs: u64,
    /// Datagrams sent and deliveries made by the replay.
    pub sent: u64,
    pub delivered: u64,
    /// Checkpoints compared (the end included).
    pub checkpoints: u64,
    /// The node time of the first and the last input.
    pub from: Duration,
    pub until: Duration,
    pub outcome: Outcome,
    /// The node's UDP endpoint (`[node] listen`), by which other nodes' recordings name it.
    pub endpoint: SocketAddr,
    /// Hashes of the datagrams the replay sent, by destination, and of those the recording
    /// received, by source: what [`links`] matches between nodes.
    pub sent_to: BTreeMap<SocketAddr, Vec<u64>>,
    pub received_from: BTreeMap<SocketAddr, Vec<u64>>,
}

/// The datagrams one recorded node sent to another, as the two recordings show them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Sender and receiver (node addresses).
    pub from: String,
    pub to: String,
    /// Datagrams the sender's replay sent to the receiver's endpoint.
    pub sent: u64,
    /// Of those, received (in the receiver's recording, from the sender's endpoint).
    pub received: u64,
    /// Received from the sender's endpoint but never sent by it (spoofed or altered).
    pub unexpected: u64,
}

/// The run as one network: for every pair of recorded nodes that exchanged datagrams, how
/// many the sender sent and the receiver received. Datagrams are matched by content, as
/// multisets (a node's workers interleave their sends in no defined order).
pub fn links(replays: &[WorkerReplay]) -> Vec<Link> {
    let mut nodes: BTreeMap<SocketAddr, (String, Vec<&WorkerReplay>)> = BTreeMap::new();
    for r in replays {
        nodes
            .entry(r.endpoint)
            .or_insert_with(|| (r.address.clone(), Vec::new()))
            .1
            .push(r);
    }
    let mut out = Vec::new();
    for (a_ep, (a, a_workers)) in &nodes {
        for (b_ep, (b, b_workers)) in &nodes {
            let mut want: HashMap<u64, u64> = HashMap::new();
            let mut sent = 0;
            for h in a_workers
                .iter()
                .filter_map(|w| w.sent_to.get(b_ep))
                .flatten()
            {
                *want.entry(*h).or_default() += 1;
                sent += 1;
            }
            let mut received = 0;
            let mut unexpected = 0;
            for h in b_workers
                .iter()
                .filter_map(|w| w.received_from.get(a_ep))
                .flatten()
            {
                match want.get_mut(h) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        received += 1;
                    }
                    _ => unexpected += 1,
                }
            }
            if sent + unexpected > 0 {
                out.push(Link {
                    from: a.clone(),
                    to: b.clone(),
                    sent,
                    received,
                    unexpected,
                });
            }
        }
    }
    out.sort_by(|x, y| (&x.from, &x.to).cmp(&(&y.from, &y.to)));
    out
}

/// The recordings under `path`: the file itself, the `worker-*.rec` files of a node's
/// recording directory, or those of every node directory in a shared one; sorted.
pub fn recordings(path: &Path) -> Result<Vec<PathBuf>, ReplayError> {
    if path.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut out = Vec::new();
    let is_rec = |p: &Path| {
        p.is_file()
            && p.extension().is_some_and(|e| e == "rec")
            && p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("worker-"))
    };
    let list = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    for p in list(path) {
        if is_rec(&p) {
            out.push(p);
        } else if p.is_dir() {
            out.extend(list(&p).into_iter().filter(|q| is_rec(q)));
        }
    }
    if out.is_empty() {
        return Err(ReplayError::Empty(path.display().to_string()));
    }
    out.sort();
    Ok(out)
}

/// Replay every recording under `path` (see [`recordings`]), checking `watches`.
pub fn replay_all(path: &Path, watches: &[Watch]) -> Result<Vec<WorkerReplay>, ReplayError> {
    recordings(path)?
        .iter()
        .map(|f| replay(f, watches))
        .collect()
}

/// The watches' state during one replay.
#[derive(Default)]
struct Watching {
    /// What each app received, for `no-duplicate-delivery` (the simulator's bookkeeping).
    apps: HashMap<u32, AppStats>,
    violated: Option<(String, String)>,
}

impl Watching {
    /// App `app` received `capsule` at node time `now`.
    fn delivered(&mut self, watches: &[Watch], now: Duration, app: u32, capsule: &[u8]) {
        if self.violated.is_some() || !watches.contains(&Watch::NoDuplicateDelivery) {
            return;
        }
        let Ok(c) = ants_wire::CapsuleRepr::parse(capsule) else {
            return;
        };
        let ns = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        if self.apps.entry(app).or_default().delivered(ns, c.payload) {
            self.violated = Some((
                Watch::NoDuplicateDelivery.describe(),
                Watch::duplicate_detail(app, c.payload.len()),
            ));
        }
    }

    /// After an input: the node's state.
    fn check(&mut self, watches: &[Watch], node: &Node<SocketAddr>) {
        for w in watches {
            if self.violated.is_none()
                && let Some(what) = w.check_node(node)
            {
                self.violated = Some((w.describe(), what));
            }
        }
    }
}

/// One output stream's hash, compared with the recorded checkpoints. The replay takes the
/// node's outputs exactly when the live driver did (the recording says when), so at every
/// checkpoint both have the same count.
struct Check {
    count: u64,
    hash: Xxh3,
    /// The first difference.
    diverged: Option<String>,
    name: &'static str,
}

impl Check {
    fn new(name: &'static str) -> Check {
        Check {
            count: 0,
            hash: Xxh3::new(),
            diverged: None,
            name,
        }
    }

    /// One more output, fed into the hash by `feed`.
    fn push(&mut self, feed: impl FnOnce(&mut Xxh3)) {
        feed(&mut self.hash);
        self.count += 1;
    }

    /// The recording says the first `count` outputs hash to `want`.
    fn expect(&mut self, count: u64, want: u64) {
        if self.diverged.is_some() {
            return;
        }
        let got = self.hash.digest();
        if count != self.count {
            self.diverged = Some(format!(
                "the recording made {count} {} by here, the replay {}",
                self.name, self.count
            ));
        } else if got != want {
            self.diverged = Some(format!(
                "the first {count} {} differ from the recording's (hash {got:016x}, recorded {want:016x})",
                self.name
            ));
        }
    }
}

/// Replay one worker's recording, checking `watches` after every input.
pub fn replay(file: &Path, watches: &[Watch]) -> Result<WorkerReplay, ReplayError> {
    let (mut reader, header) = RecordReader::open(file)?;
    let name = file.display().to_string();
    let Header {
        worker,
        workers,
        version,
        config,
    } = header;
    if version != crate::VERSION {
        return Err(ReplayError::Version {
            file: name,
            recorded: version,
            this: crate::VERSION.to_owned(),
        });
    }
    let mut cfg = Config::parse(&config, &format!("{name} (recorded config)")).map_err(|e| {
        ReplayError::Config {
            file: name.clone(),
            error: e.to_string(),
        }
    })?;
    let node_dir = file.parent().unwrap_or(Path::new(".")).to_owned();
    let compiler =
        Compiler::new(executor_config(&cfg)).map_err(|e| ReplayError::Engine(format!("{e:#}")))?;
    let mut exec =
        WasmExecutor::new(compiler.clone()).map_err(|e| ReplayError::Engine(format!("{e:#}")))?;
    let mut node: Node<SocketAddr> = Node::new(node_config(&cfg));
    let mut sent = Check::new("datagrams sent");
    let mut delivered = Check::new("deliveries");
    let mut report = WorkerReplay {
        file: file.to_owned(),
        address: cfg.node.address.to_string(),
        worker,
        workers,
        inputs: 0,
        sent: 0,
        delivered: 0,
        checkpoints: 0,
        from: Duration::ZERO,
        until: Duration::ZERO,
        outcome: Outcome::Partial(
            "the recording ends without an end record (the node did not stop cleanly)".into(),
        ),
        endpoint: cfg.node.listen,
        sent_to: BTreeMap::new(),
        received_from: BTreeMap::new(),
    };
    let mut watching = Watching::default();
    let mut index = 0u64;
    loop {
        let (now, input) = match reader.next_record() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) if e.truncated => {
                report.outcome = Outcome::Partial(format!(
                    "the recording ends inside a record at byte {} (the node stopped without \
                     closing it); everything before matched",
                    e.offset
                ));
                break;
            }
            Err(e) => return Err(e.into()),
        };
        let is_input = !matches!(
            input,
            Input::Checkpoint(_) | Input::End(..) | Input::Truncated { .. }
        );
        if index == 0 && is_input {
            report.from = now;
        }
        let mut done = None;
        match input {
            Input::Datagram { from, data } => {
                report
                    .received_from
                    .entry(from)
                    .or_default()
                    .push(xxhash_rust::xxh3::xxh3_64(&data));
                node.handle_datagram(now, from, &data, &mut exec);
            }
            Input::Timeout => node.handle_timeout(now),
            Input::ModuleReady {
                ty,
                added,
                took,
                result,
            } => {
                let mut installed = Ok(());
                if added {
                    let path = module_file(&node_dir, &ty);
                    let code = std::fs::read(&path).map_err(|e| ReplayError::Module {
                        file: path.display().to_string(),
                        what: format!("the recording needs module {ty}: {e}"),
                    })?;
                    let code: Arc<[u8]> = code.into();
                    if !node.add_code(ty, Arc::clone(&code)) {
                        return Err(ReplayError::Module {
                            file: path.display().to_string(),
                            what: format!(
                                "is not module {ty} (its hash differs) or the recorded configuration refuses it"
                            ),
                        });
                    }
                    installed = compiler
                        .compile(&code)
                        .and_then(|m| exec.install(m))
                        .map(drop);
                }
                let r = match result {
                    ModuleResult::Ok => installed,
                    ModuleResult::Refused(m) => Err(LoadError::Invalid(m)),
                    ModuleResult::Unavailable(m) => Err(LoadError::Unavailable(m)),
                };
                node.module_ready(now, ty, r, took, &mut exec);
            }
            Input::SetStored { ty, stored } => {
                node.set_stored(ty, stored);
            }
            Input::Register { app, accept } => {
                node.register_app_accepting(app, &accept);
            }
            Input::Unregister { app } => node.unregister_app(app),
            Input::Inject {
                app,
                ty,
                code,
                dst,
                resource,
                header,
                payload,
                trace,
            } => {
                let inj = Injection {
                    ty,
                    code: code.as_deref(),
                    dst,
                    resource,
                    header: &header,
                    payload: &payload,
                    trace,
                };
                let _ = node.inject(now, app, inj, &mut exec);
            }
            Input::Evict { ty } => {
                node.evict(&ty);
                exec.unload(&ty);
            }
            // A reload: the live parts of the file as it was then, applied as the daemon
            // applies them (the evictions a stricter policy makes follow as inputs).
            Input::Reconfigured { config } => {
                let origin = format!("{name} (config recorded at a reload)");
                let new = Config::parse(&config, &origin).map_err(|e| ReplayError::Config {
                    file: name.clone(),
                    error: e.to_string(),
                })?;
                cfg = cfg.with_live_changes(&new);
                node.reconfigure(node_config(&cfg));
            }
            Input::Checkpoint(cp) => {
                expect(&mut sent, &mut delivered, &cp);
                report.checkpoints += 1;
            }
            Input::End(cp, live) => {
                expect(&mut sent, &mut delivered, &cp);
                report.checkpoints += 1;
                let got = EndCounters::of(node.counters());
                done = Some(if got == live {
                    Outcome::Identical
                } else {
                    Outcome::Diverged {
                        input: index,
                        at: now,
                        what: format!(
                            "the node's counters differ: replay {got:?}, recorded {live:?}"
                        ),
                    }
                });
            }
            Input::Drained(n) => {
                let sent_to = &mut report.sent_to;
                node.drain_transmits_up_to(n as usize, |to, bytes| {
                    sent.push(|h| hash_sent(h, &to, bytes));
                    sent_to
                        .entry(to)
                        .or_default()
                        .push(xxhash_rust::xxh3::xxh3_64(bytes));
                });
            }
            Input::Delivered(n) => {
                for _ in 0..n {
                    let Some(d) = node.poll_delivery() else { break };
                    delivered.push(|h| hash_delivery(h, d.app, &d.capsule));
                    watching.delivered(watches, now, d.app, &d.capsule);
                }
            }
            Input::Truncated { inputs } => {
                done = Some(Outcome::Partial(format!(
                    "the recording stopped at its bound after {inputs} inputs"
                )));
            }
        }
        // Events only inform the driver (logs, compile jobs, whose results are inputs).
        while node.poll_event().is_some() {}
        // This input's number (0-based) for the reports below; `index` counts those done.
        let this = index;
        index += u64::from(is_input);
        if is_input {
            report.until = now;
        }
        if let Some(what) = sent.diverged.take().or_else(|| delivered.diverged.take()) {
            report.outcome = Outcome::Diverged {
                input: this,
                at: now,
                what,
            };
            break;
        }
        watching.check(watches, &node);
        if let Some((watch, what)) = watching.violated.take() {
            report.outcome = Outcome::Violated {
                input: this,
                at: now,
                watch,
                what,
            };
            break;
        }
        if let Some(o) = done {
            report.outcome = o;
            break;
        }
    }
    report.inputs = index;
    report.sent = sent.count;
    report.delivered = delivered.count;
    Ok(report)
}

fn expect(sent: &mut Check, delivered: &mut Check, cp: &Checkpoint) {
    sent.expect(cp.sent, cp.sent_hash);
    delivered.expect(cp.delivered, cp.delivered_hash);
}
