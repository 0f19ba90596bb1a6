//! The field an attack is tried on: a target node T run as a real `ants run` process (so its
//! memory can be measured and it can be sent SIGTERM), a legitimate sender S (an in-process
//! node, T's neighbour) whose app sends `forward` capsules to an app on T at a steady rate,
//! and an attacker socket — a configured neighbour of T or a stranger, as the test says.
//!
//! [`Field::run`] warms the legitimate flow up (T has its code before the attack starts),
//! runs the attack beside it, samples T's RSS, stops the flow, sends T SIGTERM and times its
//! exit, and reads T's final counters (`ants run --stats-json`). [`Report`] holds what every
//! adversary test asserts: the legitimate flow lost nothing (≥ 99 % delivered, each exactly
//! once), T stopped within a second, its memory and disk stayed within the bounds of its
//! configuration.

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ants_app::{AppClient, Inject};
use ants_node::config::Config;
use ants_node::daemon::{self, DaemonHandle};
use ants_wire::code::CHUNK_LEN;
use ants_wire::{CapsuleRepr, CapsuleType, CodeChunk, Message};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::{addr, capsule_bytes};
use crate::topology::free_ports;

/// T's active address.
pub(crate) const T: &str = "198.18.0.2";
/// S's active address.
pub(crate) const S: &str = "198.18.0.1";
/// The attacker's active address, when T is configured with it as a neighbour.
pub(crate) const A: &str = "198.18.0.66";
/// The app on T that receives the legitimate flow.
pub(crate) const LEGIT_APP: u32 = 0;

/// The type of a module.
pub(crate) fn type_of(code: &[u8]) -> CapsuleType {
    CapsuleType(Sha256::digest(code).into())
}

pub(crate) use crate::support::encode;

/// A capsule from the attacker.
pub(crate) fn capsule(ty: CapsuleType, dst: &str, resource: u16, payload: &[u8]) -> Vec<u8> {
    encode(&Message::Capsule(CapsuleRepr {
        flags: 0,
        resource,
        capsule_type: ty,
        src: addr(A),
        dst: addr(dst),
        prev: addr(A),
        header: &[],
        payload,
        trace: None,
    }))
}

/// Who the attacker is to T.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attacker {
    /// A configured neighbour of T (address [`A`]): the worst case, it may make T run code.
    Neighbour,
    /// Anyone else.
    Stranger,
}

/// The attacker's side: its socket, T's endpoint, and a stop flag.
pub(crate) struct Attack {
    pub(crate) sock: UdpSocket,
    pub(crate) target: SocketAddr,
    /// S's endpoint (for spoofing it).
    pub(crate) s_endpoint: SocketAddr,
    /// T's app socket (for attacks through apps).
    pub(crate) t_sock: PathBuf,
    /// S's app socket (for legitimate probes during the attack).
    pub(crate) s_sock: PathBuf,
    /// Deliveries of other types than the legitimate flow's to its app, as they come.
    others: Arc<Mutex<Vec<CapsuleType>>>,
    /// S's counters, on demand.
    pub(crate) s_stats: daemon::StatsProbe,
    stop: Arc<AtomicBool>,
}

impl Attack {
    /// Whether the test asked the attack to stop.
    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Capsules of type `ty` delivered to the legitimate app so far.
    pub(crate) fn delivered_of(&self, ty: &CapsuleType) -> usize {
        self.others
            .lock()
            .unwrap()
            .iter()
            .filter(|t| *t == ty)
            .count()
    }

    /// Send `bytes` to T.
    pub(crate) fn send(&self, bytes: &[u8]) {
        let _ = self.sock.send_to(bytes, self.target);
    }

    /// Answer T's code requests for the modules in `codes` (by type), each chunk after
    /// `delay`, until `until` or the attack stops. Returns the chunks sent.
    pub(crate) fn serve(&self, codes: &[Vec<u8>], delay: Duration, until: Instant) -> u64 {
        let by_type: Vec<(CapsuleType, &[u8])> =
            codes.iter().map(|c| (type_of(c), &c[..])).collect();
        let _ = self.sock.set_read_timeout(Some(Duration::from_millis(20)));
        let mut buf = vec![0u8; 65536];
        let mut sent = 0;
        while Instant::now() < until && !self.stopped() {
            let Ok((n, from)) = self.sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(Message::CodeRequest(req)) = Message::parse(&buf[..n]) else {
                continue;
            };
            let Some((_, code)) = by_type.iter().find(|(t, _)| *t == req.capsule_type) else {
                continue;
            };
            let total = code.len() as u32;
            for idx in req.wanted(CodeChunk::chunk_count(total)) {
                let off = idx as usize * CHUNK_LEN;
                let chunk = Message::CodeChunk(CodeChunk {
                    capsule_type: req.capsule_type,
                    total_len: total,
                    offset: off as u32,
                    bytes: &code[off..code.len().min(off + CHUNK_LEN)],
                });
                if !delay.is_zero() {
                    std::thread::sleep(delay);
                }
                let _ = self.sock.send_to(&encode(&chunk), from);
                sent += 1;
            }
        }
        sent
    }
}

/// How a [`Field`] is set up.
pub(crate) struct Setup {
    pub(crate) attacker: Attacker,
    /// Extra TOML appended to T's config (e.g. a `[limits]` section).
    pub(crate) t_extra: String,
    /// How long the attack runs beside the legitimate flow.
    pub(crate) attack_for: Duration,
    /// Legitimate capsules per second.
    pub(crate) legit_rate: u32,
    /// The legitimate app accepts only the `forward` type (an app accept list).
    pub(crate) legit_accepts_only_forward: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            attacker: Attacker::Neighbour,
            t_extra: String::new(),
            attack_for: Duration::from_secs(3),
            legit_rate: 400,
            legit_accepts_only_forward: false,
        }
    }
}

/// What happened.
#[derive(Debug)]
pub(crate) struct Report {
    /// Legitimate capsules sent during the whole run.
    pub(crate) sent: u32,
    /// Sequence numbers of the legitimate flow delivered to its app, in arrival order.
    pub(crate) delivered: Vec<u32>,
    /// Types of every other capsule delivered to that app.
    pub(crate) others: Vec<CapsuleType>,
    /// T's resident memory after the warm-up and at its peak during the attack, KiB.
    pub(crate) rss_before_kib: u64,
    pub(crate) rss_peak_kib: u64,
    /// Bytes in T's code cache directory at the end.
    pub(crate) disk_bytes: u64,
    /// From SIGTERM to T's exit.
    pub(crate) exit_after: Duration,
    /// T's final counters (`ants run --stats-json`).
    pub(crate) stats: Value,
    /// S's final counters.
    pub(crate) s_stats: daemon::Stats,
}

impl Report {
    /// Nothing but the legitimate flow reached its app.
    pub(crate) fn assert_nothing_else_delivered(&self) {
        assert!(
            self.others.is_empty(),
            "other capsules reached the app: {:?}",
            self.others
        );
    }

    /// The legitimate flow lost less than 1 % and nothing arrived twice.
    pub(crate) fn assert_legit_flow_intact(&self) {
        assert!(
            self.delivered.iter().all(|s| *s < self.sent),
            "unknown sequence numbers in the legitimate flow"
        );
        let distinct: BTreeSet<u32> = self.delivered.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            self.delivered.len(),
            "a legitimate capsule was delivered twice"
        );
        let ratio = distinct.len() as f64 / f64::from(self.sent.max(1));
        assert!(
            ratio >= 0.99,
            "legitimate flow: {} of {} delivered ({:.2} %)",
            distinct.len(),
            self.sent,
            ratio * 100.0
        );
    }

    /// T answered SIGTERM within its drain time (the default 2 s, which capsules held for
    /// code an attacker never sends can use up) and a second; what it still held then is
    /// counted, not lost silently.
    pub(crate) fn assert_stopped_promptly(&self) {
        assert!(
            self.exit_after < Duration::from_secs(3),
            "T took {:?} to stop after SIGTERM",
            self.exit_after
        );
        assert!(
            self.stats["drain_dropped"].is_u64(),
            "T's final counters say what the drain dropped: {}",
            self.stats
        );
    }

    /// T's memory grew by at most `mib` MiB during the attack.
    pub(crate) fn assert_rss_growth_below(&self, mib: u64) {
        let grew = self.rss_peak_kib.saturating_sub(self.rss_before_kib);
        assert!(
            grew <= mib * 1024,
            "T's RSS grew by {} KiB ({} -> {} KiB), over the {mib} MiB bound",
            grew,
            self.rss_before_kib,
            self.rss_peak_kib
        );
    }

    /// A counter of T by JSON path (`"node/drops/stranger"`); 0 when absent.
    pub(crate) fn counter(&self, path: &str) -> u64 {
        let mut v = &self.stats;
        for part in path.split('/') {
            match v.get(part) {
                Some(next) => v = next,
                None => return 0,
            }
        }
        v.as_u64().unwrap_or(0)
    }

    /// A per-protocol counter of T for `ty`.
    pub(crate) fn protocol(&self, ty: &CapsuleType, field: &str) -> u64 {
        self.counter(&format!("protocols/{ty}/{field}"))
    }
}

/// Resident memory of process `pid`, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Bytes of the files in `dir`.
pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The running field.
pub(crate) struct Field {
    /// T, killed when the field drops — before its directory goes (fields drop in order).
    t: crate::support::Running,
    /// Holds T's config, sockets, code directory and log (`t.log`) until the field drops.
    _dir: tempfile::TempDir,
    t_sock: PathBuf,
    t_stats: PathBuf,
    pub(crate) t_code: PathBuf,
    t_endpoint: SocketAddr,
    s: Option<DaemonHandle>,
    s_sock: PathBuf,
    attacker: UdpSocket,
}

impl Field {
    /// Start S (in-process) and T (an `ants run` process) per `setup`.
    pub(crate) fn start(setup: &Setup) -> Field {
        let dir = tempfile::tempdir().expect("tempdir");
        let attacker = UdpSocket::bind("127.0.0.1:0").expect("attacker socket");
        let ports = free_ports(2);
        let (s_port, t_port) = (ports[0], ports[1]);
        let (s_sock, t_sock) = (dir.path().join("s.sock"), dir.path().join("t.sock"));
        let t_code = dir.path().join("t-code");
        let s_cfg = format!(
            "[node]\naddress = \"{S}\"\nlisten = \"127.0.0.1:{s_port}\"\napp_socket = \"{}\"\n\
             [[neighbour]]\naddress = \"{T}\"\nendpoint = \"127.0.0.1:{t_port}\"\n",
            s_sock.display()
        );
        let mut t_cfg = format!(
            "[node]\naddress = \"{T}\"\nlisten = \"127.0.0.1:{t_port}\"\napp_socket = \"{}\"\n\
             code_cache_dir = \"{}\"\n\
             [[neighbour]]\naddress = \"{S}\"\nendpoint = \"127.0.0.1:{s_port}\"\n",
            t_sock.display(),
            t_code.display()
        );
        if setup.attacker == Attacker::Neighbour {
            t_cfg += &format!(
                "[[neighbour]]\naddress = \"{A}\"\nendpoint = \"{}\"\n",
                attacker.local_addr().unwrap()
            );
        }
        t_cfg += &setup.t_extra;
        let t_path = dir.path().join("t.toml");
        std::fs::write(&t_path, &t_cfg).unwrap();
        Config::load(&t_path).unwrap_or_else(|e| panic!("{e}\n{t_cfg}"));
        let t_stats = dir.path().join("t-stats.json");
        let log = std::fs::File::create(dir.path().join("t.log")).unwrap();
        let t = Command::new(env!("CARGO_BIN_EXE_ants"))
            .args(["run", "--allow-root", "--config"])
            .arg(&t_path)
            .arg("--stats-json")
            .arg(&t_stats)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start ants run");
        let s = daemon::spawn(Config::parse(&s_cfg, "s.toml").unwrap()).expect("S starts");
        let end = Instant::now() + Duration::from_secs(20);
        while AppClient::connect(&t_sock, 9999).is_err() {
            assert!(Instant::now() < end, "T did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Field {
            t: crate::support::Running::new(t),
            _dir: dir,
            t_sock,
            t_stats,
            t_code,
            t_endpoint: SocketAddr::from(([127, 0, 0, 1], t_port)),
            s: Some(s),
            s_sock,
            attacker,
        }
    }

    /// Warm up, run `attack` beside the legitimate flow for `setup.attack_for`, stop
    /// everything and report (with what `attack` returned).
    pub(crate) fn run<R: Send + 'static>(
        mut self,
        setup: &Setup,
        attack: impl FnOnce(&Attack) -> R + Send + 'static,
    ) -> (Report, R) {
        let code = capsule_bytes("forward");
        let accept = if setup.legit_accepts_only_forward {
            vec![type_of(&code)]
        } else {
            Vec::new()
        };
        let mut rx =
            AppClient::connect_accepting(&self.t_sock, LEGIT_APP, &accept).expect("legit receiver");
        let mut tx = AppClient::connect(&self.s_sock, 7).expect("legit sender");
        let legit_type = type_of(&code);
        let received = Arc::new(Mutex::new(Vec::new()));
        let others = Arc::new(Mutex::new(Vec::new()));
        let stop_rx = Arc::new(AtomicBool::new(false));
        let receiver = {
            let (received, others, stop) = (received.clone(), others.clone(), stop_rx.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let Ok(Some(d)) = rx.recv_timeout(Duration::from_millis(50)) else {
                        continue;
                    };
                    match d.payload.get(..4) {
                        Some(seq) if d.capsule_type == legit_type => {
                            let seq = u32::from_be_bytes(seq.try_into().unwrap_or_default());
                            received.lock().unwrap().push(seq);
                        }
                        _ => others.lock().unwrap().push(d.capsule_type),
                    }
                }
            })
        };
        // Warm-up: T fetches `forward` from S and the first capsule arrives.
        let first = Inject::with_code(code, addr(T), 64, vec![], 0u32.to_be_bytes().to_vec());
        tx.inject(&first).expect("first legit capsule");
        let end = Instant::now() + Duration::from_secs(20);
        while received.lock().unwrap().is_empty() {
            assert!(
                Instant::now() < end,
                "warm-up: the legitimate flow never arrived"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let pid = self.t.id();
        let rss_before_kib = rss_kib(pid);
        let rss_peak = Arc::new(AtomicU64::new(rss_before_kib));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, stop) = (rss_peak.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let a = Attack {
            sock: self.attacker.try_clone().expect("attacker socket"),
            target: self.t_endpoint,
            s_endpoint: self.s.as_ref().map(|s| s.local_addr()).expect("S running"),
            t_sock: self.t_sock.clone(),
            s_sock: self.s_sock.clone(),
            others: others.clone(),
            s_stats: self.s.as_ref().expect("S running").stats_probe(),
            stop: stop.clone(),
        };
        let attacker = std::thread::spawn(move || attack(&a));
        // The legitimate flow, paced, while the attack runs.
        let started = Instant::now();
        let mut seq = 1u32;
        while started.elapsed() < setup.attack_for {
            let due =
                started + Duration::from_secs_f64(f64::from(seq) / f64::from(setup.legit_rate));
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let inj = Inject {
                code: None,
                capsule_type: first.capsule_type,
                dst: addr(T),
                resource: 64,
                header: Vec::new(),
                payload: seq.to_be_bytes().to_vec(),
                trace: None,
            };
            tx.inject(&inj).expect("legit inject");
            seq += 1;
        }
        stop.store(true, Ordering::Release);
        let outcome = attacker.join().expect("the attack thread panicked");
        // Let the last legitimate capsules arrive.
        let end = Instant::now() + Duration::from_secs(3);
        while received.lock().unwrap().len() < seq as usize && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = sampler.join();
        stop_rx.store(true, Ordering::Release);
        let _ = receiver.join();
        let s_stats = self.s.take().expect("S").shutdown().expect("S stops");
        // SIGTERM, timed.
        // SAFETY: `kill` with a valid pid and signal has no memory-safety preconditions.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        let sent_at = Instant::now();
        let exit_after = loop {
            if !self.t.running() {
                break sent_at.elapsed();
            }
            if sent_at.elapsed() > Duration::from_secs(10) {
                break sent_at.elapsed();
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let stats: Value = std::fs::read_to_string(&self.t_stats)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        let delivered = received.lock().unwrap().clone();
        let report = Report {
            sent: seq,
            delivered,
            others: others.lock().unwrap().clone(),
            rss_before_kib,
            rss_peak_kib: rss_peak.load(Ordering::Relaxed),
            disk_bytes: dir_bytes(&self.t_code),
            exit_after,
            stats,
            s_stats,
        };
        (report, outcome)
    }
}
