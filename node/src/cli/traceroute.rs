//! `ants traceroute`: trace the active path to a node with the `traceroute` capsule
//! (`capsules/traceroute`) and print it like traceroute(8).
//!
//! Map: [`TracerouteArgs`] (options; register, inject probes, wait), [`Trace`] (one returned
//! probe, decoded from the capsule's header and payload), [`render`] (the text table) and
//! [`to_json`]. The byte layout is the capsule's; its README documents it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ants_app::{AppClient, Delivery, Inject};
use ants_capsule_build::BuildOptions;
use ants_wire::{Address, CapsuleType};
use anyhow::{Context, anyhow, bail};
use clap::Args;

/// The capsule crate built when `--code` is not given, relative to the current directory.
const CRATE_DIR: &str = "capsules/traceroute";
/// Resource budget of a probe: every send out and back costs one, so paths of up to 32
/// active hops come back.
const RESOURCE: u16 = 64;
/// Fixed part of the capsule's header: `flags` u8, `hops` u16, `app` u32.
const HEADER_LEN: usize = 7;
/// Our tag after the fixed header: the probe number (u32), carried untouched by the capsule.
const TAG_LEN: usize = 4;
/// One hop record in the payload: 16-byte address, u64 node time (ns).
const RECORD_LEN: usize = 24;
const TRUNCATED: u8 = 0x02;
const UNREACHABLE: u8 = 0x04;

/// `ants traceroute`.
#[derive(Debug, Args)]
pub(crate) struct TracerouteArgs {
    /// Destination active address.
    dst: Address,
    /// The source node's app socket (`app_socket` in the `[node]` section of its config).
    #[arg(short, long)]
    socket: PathBuf,
    /// The traceroute capsule module (default: build `capsules/traceroute` found in the
    /// current directory).
    #[arg(long)]
    code: Option<PathBuf>,
    /// App id to register as; the returning probes are delivered to it. The default is
    /// traceroute(8)'s first UDP port.
    #[arg(long, default_value_t = 33434)]
    app: u32,
    /// Probes to send, one after another; each hop line shows one time per probe.
    #[arg(short, long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    queries: u32,
    /// Seconds to wait for each probe to come back.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// Print the probes as one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// One probe that came back: the outbound path as the capsule recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Trace {
    /// Round trip measured here, from inject to delivery.
    pub(crate) rtt: Duration,
    /// Active hops that ran the capsule on the way out, source and destination included.
    pub(crate) hops: u16,
    /// Some hops were not recorded (capsule data limit).
    pub(crate) truncated: bool,
    /// The last recorded hop had no route to the destination.
    pub(crate) unreachable: bool,
    /// Records in order, the source first: address, node time (ns since the Unix epoch).
    pub(crate) path: Vec<(Address, u64)>,
}

impl Trace {
    /// Decode a delivered probe; `None` unless it is probe `seq` with a well-formed path.
    fn decode(d: &Delivery, seq: u32, rtt: Duration) -> Option<Trace> {
        let h = d.header.get(..HEADER_LEN + TAG_LEN)?;
        if h[HEADER_LEN..] != seq.to_be_bytes() || !d.payload.len().is_multiple_of(RECORD_LEN) {
            return None;
        }
        let path = d
            .payload
            .chunks_exact(RECORD_LEN)
            .map(|r| {
                let (a, t) = r.split_at(16);
                let mut addr = [0u8; 16];
                addr.copy_from_slice(a);
                let mut ns = [0u8; 8];
                ns.copy_from_slice(t);
                (Address(addr), u64::from_be_bytes(ns))
            })
            .collect();
        Some(Trace {
            rtt,
            hops: u16::from_be_bytes([h[1], h[2]]),
            truncated: h[0] & TRUNCATED != 0,
            unreachable: h[0] & UNREACHABLE != 0,
            path,
        })
    }

    /// Node `i`'s clock minus node `i - 1`'s when the capsule ran there; `None` for the source
    /// and when the clocks disagree (the difference is negative).
    fn one_way(&self, i: usize) -> Option<Duration> {
        let (_, t) = *self.path.get(i)?;
        let (_, before) = *self.path.get(i.checked_sub(1)?)?;
        t.checked_sub(before).map(Duration::from_nanos)
    }
}

impl TracerouteArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let timeout = Duration::try_from_secs_f64(self.timeout)
            .map_err(|_| anyhow!("--timeout {}: expected seconds ≥ 0", self.timeout))?;
        let code = load_module(self.code.as_deref())?;
        let mut client = AppClient::connect(&self.socket, self.app).with_context(|| {
            format!(
                "cannot register as app {} (if another traceroute holds it, pass --app N)",
                self.app
            )
        })?;
        let src = client.node();
        let mut inject = Inject::with_code(code, self.dst, RESOURCE, Vec::new(), Vec::new());
        let mut probes = Vec::new();
        for seq in 0..self.queries {
            inject.header = probe_header(self.app, seq);
            let sent = Instant::now();
            client.inject(&inject)?;
            inject.code = None; // the node keeps the module after the first probe
            probes.push(wait_for(
                &mut client,
                inject.capsule_type,
                seq,
                sent,
                timeout,
            )?);
        }
        if self.json {
            println!("{}", to_json(src, self.dst, &inject.capsule_type, &probes));
        } else {
            print!("{}", render(src, self.dst, &probes));
        }
        let reached = probes.iter().flatten().any(|t| !t.unreachable);
        if probes.iter().all(Option::is_none) {
            eprintln!(
                "no probe came back within {timeout:?}: is {} reachable, and does every node \
                 on the way run `ants run`?",
                self.dst
            );
        }
        Ok(if reached {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}

/// The module bytes: `--code`, or `capsules/traceroute` built from the current directory.
fn load_module(code: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    let path = match code {
        Some(p) => p.to_owned(),
        None => {
            let dir = Path::new(CRATE_DIR);
            if !dir.join("Cargo.toml").is_file() {
                bail!(
                    "no --code given and no {CRATE_DIR} to build in the current directory: run \
                     from the ANTS-rs checkout, or pass --code traceroute.wasm (made with \
                     `ants capsule build {CRATE_DIR} -o traceroute.wasm`)"
                );
            }
            eprintln!("building {CRATE_DIR} (pass --code FILE to skip this)");
            ants_capsule_build::build(dir, &BuildOptions::default())
                .with_context(|| format!("building {CRATE_DIR} failed; pass --code FILE"))?
                .path
        }
    };
    std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
}

/// A fresh probe's header: nothing recorded yet, deliver to `app`, tagged with `seq`.
fn probe_header(app: u32, seq: u32) -> Vec<u8> {
    let mut h = vec![0u8; 3];
    h.extend_from_slice(&app.to_be_bytes());
    h.extend_from_slice(&seq.to_be_bytes());
    h
}

/// Wait for probe `seq` to come back, skipping anything else delivered to this app (late
/// probes of an earlier run, stray capsules); `None` after `timeout`.
fn wait_for(
    client: &mut AppClient,
    ty: CapsuleType,
    seq: u32,
    sent: Instant,
    timeout: Duration,
) -> anyhow::Result<Option<Trace>> {
    let deadline = sent + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(d) = client.recv_timeout(left)? else {
            return Ok(None);
        };
        if d.capsule_type == ty
            && let Some(t) = Trace::decode(&d, seq, sent.elapsed())
        {
            return Ok(Some(t));
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// The traceroute(8)-style table: one line per active hop after the source, with each
/// probe's one-way time to that hop (`*` when a probe did not come back or did not get that
/// far, `?` when the two nodes' clocks disagree); the address is repeated inside a line
/// when a probe took another path. Then the round trips.
pub(crate) fn render(src: Address, dst: Address, probes: &[Option<Trace>]) -> String {
    let mut out = format!(
        "traceroute to {dst} from {src}, {} probe{}\n",
        probes.len(),
        if probes.len() == 1 { "" } else { "s" }
    );
    let longest = probes
        .iter()
        .flatten()
        .map(|t| t.path.len())
        .max()
        .unwrap_or(0);
    for i in 1..longest {
        let _ = write!(out, "{i:2}");
        let mut shown = None;
        for t in probes {
            match t.as_ref().and_then(|t| t.path.get(i).map(|(a, _)| (t, *a))) {
                None => out.push_str(" *"),
                Some((t, addr)) => {
                    if shown != Some(addr) {
                        let _ = write!(out, "  {addr}");
                        shown = Some(addr);
                    }
                    let time = t.one_way(i).map_or_else(|| "? ms".to_owned(), ms);
                    let _ = write!(out, "  {time}");
                    if t.unreachable && i + 1 == t.path.len() {
                        out.push_str(" !N");
                    }
                }
            }
        }
        out.push('\n');
    }
    for (n, t) in probes.iter().enumerate() {
        let Some(t) = t else { continue };
        if t.truncated {
            let missing = usize::from(t.hops).saturating_sub(t.path.len());
            let _ = writeln!(
                out,
                "probe {}: {missing} more hop(s) not recorded: the capsule data limit was reached",
                n + 1
            );
        }
        if let Some((last, _)) = t.path.last().filter(|_| t.unreachable) {
            let _ = writeln!(out, "probe {}: !N: {last} has no route to {dst}", n + 1);
        }
    }
    out.push_str("round trip");
    for t in probes {
        match t {
            Some(t) => {
                let _ = write!(out, "  {}", ms(t.rtt));
            }
            None => out.push_str(" *"),
        }
    }
    out.push('\n');
    out
}

/// One JSON object: `src`, `dst`, `type`, and `probes` (null for a probe that did not come
/// back), each with `rtt_ns`, `hops`, `truncated`, `unreachable` and `path` (the source
/// first; `one_way_ns` is null for the source and when clocks disagree).
pub(crate) fn to_json(
    src: Address,
    dst: Address,
    ty: &CapsuleType,
    probes: &[Option<Trace>],
) -> String {
    let probes: Vec<serde_json::Value> = probes
        .iter()
        .map(|t| match t {
            None => serde_json::Value::Null,
            Some(t) => serde_json::json!({
                "rtt_ns": u64::try_from(t.rtt.as_nanos()).unwrap_or(u64::MAX),
                "hops": t.hops,
                "truncated": t.truncated,
                "unreachable": t.unreachable,
                "path": t.path.iter().enumerate().map(|(i, (a, ns))| serde_json::json!({
                    "address": a.to_string(),
                    "time_ns": ns,
                    "one_way_ns": t.one_way(i).map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
                })).collect::<Vec<_>>(),
            }),
        })
        .collect();
    serde_json::json!({
        "src": src.to_string(),
        "dst": dst.to_string(),
        "type": ty.to_string(),
        "probes": probes,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(i: u8) -> Address {
        format!("198.18.0.{i}").parse().unwrap()
    }

    fn trace(path: &[(u8, u64)]) -> Trace {
        Trace {
            rtt: Duration::from_micros(1500),
            hops: u16::try_from(path.len()).unwrap(),
            truncated: false,
            unreachable: false,
            path: path.iter().map(|&(i, us)| (a(i), us * 1000)).collect(),
        }
    }

    fn delivery(header: Vec<u8>, payload: Vec<u8>) -> Delivery {
        Delivery {
            capsule_type: CapsuleType([1; 32]),
            src: a(1),
            dst: a(3),
            prev: a(2),
            resource: 60,
            header,
            payload,
            node_time_ns: 0,
        }
    }

    #[test]
    fn decodes_the_capsule_layout_and_refuses_the_rest() {
        let mut header = probe_header(9, 2);
        header[0] = 0x01 | TRUNCATED;
        header[2] = 5;
        let mut payload = a(1).0.to_vec();
        payload.extend_from_slice(&7u64.to_be_bytes());
        let t = Trace::decode(
            &delivery(header.clone(), payload.clone()),
            2,
            Duration::ZERO,
        );
        let t = t.expect("well-formed");
        assert_eq!((t.hops, t.truncated, t.unreachable), (5, true, false));
        assert_eq!(t.path, vec![(a(1), 7)]);
        assert!(
            Trace::decode(
                &delivery(header.clone(), payload.clone()),
                3,
                Duration::ZERO
            )
            .is_none(),
            "other probe"
        );
        assert!(
            Trace::decode(
                &delivery(header[..6].to_vec(), payload.clone()),
                2,
                Duration::ZERO
            )
            .is_none()
        );
        assert!(
            Trace::decode(&delivery(header, payload[..23].to_vec()), 2, Duration::ZERO).is_none()
        );
    }

    #[test]
    fn renders_one_line_per_hop_with_one_way_times() {
        let t = trace(&[(1, 1000), (2, 1100), (3, 1350)]);
        let mut slow = t.clone();
        slow.path[2] = (a(4), 900_000); // another path, and a clock behind
        slow.path[1].1 = 1_000_000_000;
        let text = render(a(1), a(3), &[Some(t), None, Some(slow)]);
        assert_eq!(
            text,
            "traceroute to 198.18.0.3 from 198.18.0.1, 3 probes\n \
             1  198.18.0.2  0.100 ms *  999.000 ms\n \
             2  198.18.0.3  0.250 ms *  198.18.0.4  ? ms\n\
             round trip  1.500 ms *  1.500 ms\n"
        );
    }

    #[test]
    fn marks_unreachable_and_truncated_paths() {
        let mut t = trace(&[(1, 0), (2, 10)]);
        t.unreachable = true;
        let mut cut = trace(&[(1, 0), (2, 10)]);
        cut.truncated = true;
        cut.hops = 6;
        let text = render(a(1), a(9), &[Some(t), Some(cut)]);
        assert!(
            text.contains(" 1  198.18.0.2  0.010 ms !N  0.010 ms\n"),
            "{text}"
        );
        assert!(
            text.contains("probe 1: !N: 198.18.0.2 has no route to 198.18.0.9\n"),
            "{text}"
        );
        assert!(
            text.contains("probe 2: 4 more hop(s) not recorded"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&to_json(
            a(1),
            a(9),
            &CapsuleType([0; 32]),
            &[None, Some(trace(&[(1, 0), (2, 10)]))],
        ))
        .unwrap();
        assert!(json["probes"][0].is_null());
        assert_eq!(json["probes"][1]["path"][1]["address"], "198.18.0.2");
        assert_eq!(json["probes"][1]["path"][1]["one_way_ns"], 10_000);
        assert!(json["probes"][1]["path"][0]["one_way_ns"].is_null());
    }
}
