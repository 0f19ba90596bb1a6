//! `soak-bench`: every attack of the adversary suite at once, for minutes, against one `ants
//! run` process, with a legitimate flow through it — the node's memory, CPU and disk sampled
//! every second.
//!
//! - T: the node under attack, a real `ants run --stats-json` process (release build), with
//!   two configured neighbours: S (legitimate) and A (the attacker), a code cache directory
//!   bounded at `--disk-mib`, default limits otherwise.
//! - S: an in-process node whose app sends `forward` capsules to an app on T at `--rate`.
//! - Attacks, each in its own thread for the whole run (module `attacks`): freeze capsules
//!   (node_random over 4 MiB), slow capsules (cache misses and divisions: the deadline),
//!   storm capsules (16 copies per run, resource 65,535), store floods over 20 protocols,
//!   log floods, capsules delivering to the legitimate app, capsules of types never served
//!   (fetch slots), a flood of heavy modules (compile budget, disk), strangers' datagrams,
//!   and, as root, spoofed code requests and chunks with S's address.
//! - Every second: T's RSS and CPU (from /proc), the code directory's bytes, legitimate
//!   capsules sent and delivered. At the end: SIGTERM and the time T takes to exit, T's final
//!   counters.
//!
//! Results go to `bench/soak/results/soak-<date>.{json,md,svg}`; bench/RESULTS.md quotes them.
//! Nothing is asserted: this is a measurement.

mod attacks;
mod report;

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ants_app::{AppClient, Inject};
use ants_bench::{ants_binary, capsule_bytes, clock_ticks_per_sec, process_ticks, workspace_root};
use ants_node::config::Config;
use ants_node::daemon;
use ants_wire::{Address, CapsuleType};
use anyhow::{Context, Result, bail};
use clap::Parser;
use sha2::{Digest, Sha256};

const T: &str = "198.18.0.2";
const S: &str = "198.18.0.1";
const A: &str = "198.18.0.66";

#[derive(Debug, Parser)]
#[command(
    about = "Every attack at once against one ants node, with a legitimate flow; samples RSS, CPU and disk"
)]
struct Cli {
    /// How long the attacks run, in seconds.
    #[arg(long, default_value_t = 600)]
    duration: u64,
    /// Legitimate capsules per second.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// T's code_cache_disk_bytes, in MiB.
    #[arg(long, default_value_t = 16)]
    disk_mib: u64,
    /// Use this `ants` binary instead of building one.
    #[arg(long)]
    ants: Option<PathBuf>,
    /// Do not run `cargo build --release` first.
    #[arg(long)]
    no_build: bool,
    /// Where results go.
    #[arg(long, default_value = "bench/soak/results")]
    out: PathBuf,
}

/// One sample, taken every second.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct Sample {
    /// Seconds since the attacks started.
    pub(crate) t: f64,
    /// T's resident memory, MiB.
    pub(crate) rss_mib: f64,
    /// T's CPU over the last second, percent of one core.
    pub(crate) cpu_pct: f64,
    /// T's code directory, bytes.
    pub(crate) disk_bytes: u64,
    /// Legitimate capsules sent and delivered so far.
    pub(crate) sent: u64,
    pub(crate) delivered: u64,
}

pub(crate) fn type_of(code: &[u8]) -> CapsuleType {
    CapsuleType(Sha256::digest(code).into())
}

fn addr(s: &str) -> Address {
    s.parse().expect("address literal")
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|es| {
            es.filter_map(|e| e.ok()?.metadata().ok())
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn free_port() -> Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// What the run measured, for the report.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Outcome {
    pub(crate) date: String,
    pub(crate) duration_s: u64,
    pub(crate) rate: u32,
    pub(crate) root: bool,
    pub(crate) attacks: Vec<attacks::Tally>,
    pub(crate) samples: Vec<Sample>,
    pub(crate) sent: u64,
    pub(crate) delivered_distinct: u64,
    pub(crate) duplicates: u64,
    pub(crate) exit_ms: f64,
    pub(crate) stats: serde_json::Value,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let bin = ants_binary(cli.ants.as_deref(), cli.no_build)?;
    let dir = tempfile::tempdir()?;
    let (s_port, t_port) = (free_port()?, free_port()?);
    let attacker = UdpSocket::bind("127.0.0.1:0")?;
    let (s_sock, t_sock) = (dir.path().join("s.sock"), dir.path().join("t.sock"));
    let t_code = dir.path().join("t-code");
    let t_cfg = format!(
        "[node]\naddress = \"{T}\"\nlisten = \"127.0.0.1:{t_port}\"\napp_socket = \"{}\"\n\
         code_cache_dir = \"{}\"\n\
         [[neighbour]]\naddress = \"{S}\"\nendpoint = \"127.0.0.1:{s_port}\"\n\
         [[neighbour]]\naddress = \"{A}\"\nendpoint = \"{}\"\n\
         [limits]\ncode_cache_disk_bytes = {}\n",
        t_sock.display(),
        t_code.display(),
        attacker.local_addr()?,
        cli.disk_mib << 20
    );
    let t_path = dir.path().join("t.toml");
    std::fs::write(&t_path, &t_cfg)?;
    Config::load(&t_path)?;
    let stats_path = dir.path().join("t-stats.json");
    let log = std::fs::File::create(dir.path().join("t.log"))?;
    let mut t: Child = Command::new(&bin)
        .args(["run", "--allow-root", "--config"])
        .arg(&t_path)
        .arg("--stats-json")
        .arg(&stats_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let pid = t.id();
    let s_cfg = format!(
        "[node]\naddress = \"{S}\"\nlisten = \"127.0.0.1:{s_port}\"\napp_socket = \"{}\"\n\
         [[neighbour]]\naddress = \"{T}\"\nendpoint = \"127.0.0.1:{t_port}\"\n",
        s_sock.display()
    );
    let s = daemon::spawn(Config::parse(&s_cfg, "s.toml")?)?;
    let end = Instant::now() + Duration::from_secs(20);
    while AppClient::connect(&t_sock, 9999).is_err() {
        if Instant::now() > end {
            bail!("T did not come up (see its log)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    // The legitimate flow: S's app -> T's app 0, paced; a receiver counts sequence numbers.
    let forward = capsule_bytes("forward");
    let legit = type_of(&forward);
    let mut rx = AppClient::connect(&t_sock, 0)?;
    let received = Arc::new(Mutex::new(Vec::<u32>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let receiver = {
        let (received, done) = (received.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                if let Ok(Some(d)) = rx.recv_timeout(Duration::from_millis(100))
                    && d.capsule_type == legit
                    && let Some(seq) = d.payload.get(..4)
                {
                    let seq = u32::from_be_bytes(seq.try_into().unwrap_or_default());
                    received.lock().unwrap_or_else(|e| e.into_inner()).push(seq);
                }
            }
        })
    };
    let mut tx = AppClient::connect(&s_sock, 7)?;
    tx.inject(&Inject::with_code(
        forward,
        addr(T),
        64,
        vec![],
        0u32.to_be_bytes().to_vec(),
    ))?;
    let end = Instant::now() + Duration::from_secs(20);
    while received
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_empty()
    {
        if Instant::now() > end {
            bail!("warm-up: the legitimate flow never arrived");
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let root = unsafe_is_root();
    let ctx = attacks::Context {
        sock: attacker,
        target: SocketAddr::from(([127, 0, 0, 1], t_port)),
        s_endpoint: s.local_addr(),
        stop: Arc::new(AtomicBool::new(false)),
        root,
    };
    let running = attacks::start(Arc::new(ctx));
    let sent = Arc::new(AtomicU64::new(1));
    let sender = {
        let (sent, done, rate) = (sent.clone(), done.clone(), cli.rate);
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut seq = 1u32;
            while !done.load(Ordering::Acquire) {
                let due = start + Duration::from_secs_f64(f64::from(seq) / f64::from(rate));
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                let inj = Inject {
                    code: None,
                    capsule_type: legit,
                    dst: addr(T),
                    resource: 64,
                    header: vec![],
                    payload: seq.to_be_bytes().to_vec(),
                    trace: None,
                };
                if tx.inject(&inj).is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                seq += 1;
            }
        })
    };

    let hz = clock_ticks_per_sec();
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut last_ticks = process_ticks(Some(pid)).unwrap_or(0);
    let mut last_at = Instant::now();
    while started.elapsed() < Duration::from_secs(cli.duration) {
        std::thread::sleep(Duration::from_secs(1));
        let ticks = process_ticks(Some(pid)).unwrap_or(last_ticks);
        let dt = last_at.elapsed().as_secs_f64();
        let cpu = (ticks - last_ticks) as f64 / hz / dt * 100.0;
        (last_ticks, last_at) = (ticks, Instant::now());
        let sample = Sample {
            t: started.elapsed().as_secs_f64(),
            rss_mib: rss_mib(pid),
            cpu_pct: cpu,
            disk_bytes: dir_bytes(&t_code),
            sent: sent.load(Ordering::Relaxed),
            delivered: received.lock().unwrap_or_else(|e| e.into_inner()).len() as u64,
        };
        if samples.len() % 30 == 0 {
            println!(
                "t={:5.0}s rss={:6.1} MiB cpu={:5.1}% disk={:5.1} MiB legit {}/{}",
                sample.t,
                sample.rss_mib,
                sample.cpu_pct,
                sample.disk_bytes as f64 / (1 << 20) as f64,
                sample.delivered,
                sample.sent
            );
        }
        samples.push(sample);
    }
    // Stop the attacks first, then the flow, then let the last capsules arrive.
    let tallies = attacks::stop(running);
    done.store(true, Ordering::Release);
    let _ = sender.join();
    std::thread::sleep(Duration::from_secs(2));
    let _ = receiver.join();
    let _ = s.shutdown();
    // SAFETY: kill with a valid pid and signal.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let sigterm = Instant::now();
    while t.try_wait()?.is_none() && sigterm.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let exit_ms = sigterm.elapsed().as_secs_f64() * 1e3;
    let _ = t.kill();
    let stats: serde_json::Value = std::fs::read_to_string(&stats_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    let got = received.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let distinct: BTreeSet<u32> = got.iter().copied().collect();
    let unix = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let outcome = Outcome {
        date: ants_bench::utc_date(unix),
        duration_s: cli.duration,
        rate: cli.rate,
        root,
        attacks: tallies,
        samples,
        sent: sent.load(Ordering::Relaxed),
        delivered_distinct: distinct.len() as u64,
        duplicates: (got.len() - distinct.len()) as u64,
        exit_ms,
        stats,
    };
    let out = if cli.out.is_absolute() {
        cli.out.clone()
    } else {
        workspace_root().join(&cli.out)
    };
    report::write(&out, &outcome)?;
    Ok(())
}

fn unsafe_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
