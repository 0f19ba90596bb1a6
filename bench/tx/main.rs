//! tx-bench: what one frame costs on each way from userspace onto a veth — router mode's
//! transmit options, measured alone (docs/router.md, "Transmit paths"):
//!
//! - `afxdp`: AF_XDP copy mode, as the router sends: 64 distinct frames copied into the UMEM,
//!   one `sendto` kick; the kernel allocates an skb per frame and hands it to the veth.
//! - `live-each`: `BPF_PROG_RUN` in live-frames mode (`BPF_F_TEST_XDP_LIVE_FRAMES`) with a
//!   program that redirects to the veth, one distinct frame per call — what forwarding with
//!   it would do, since a call takes one frame: no skb, but a syscall and a page-pool set-up
//!   per frame.
//! - `live-batch-64`, `live-batch-65536`: the same, one call sending one frame 64 or 65,536
//!   times — the way traffic generators use it: the most the path can give per frame, and
//!   what a call costs whatever it carries.
//!
//! Each sends for `--duration` seconds from this thread, pinned to CPU 1, into `txa`, whose
//! veth peer `txb` drops every frame with an XDP program (so both paths pay the same receive).
//! Reported: frames per second and CPU 1's busy time per frame (/proc/stat: the receive work
//! runs there too), the median of `--rounds` rounds. Needs root; works in a network namespace
//! of its own (`antstx-<pid>`), deleted at the end.

use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

use ants_bench::{CpuTicks, clock_ticks_per_sec, median, pin_thread};
use ants_node::afxdp::{Umem, XskConfig, XskSocket};
use ants_node::bpf::asm::{Asm, Reg};
use ants_node::bpf::sys;
use anyhow::{Context, Result, bail};
use clap::Parser;

/// Command line.
#[derive(Debug, Parser)]
#[command(about = "Per-frame cost of AF_XDP transmit vs BPF_PROG_RUN live frames, on a veth")]
struct Cli {
    /// Sending time per mode and round, seconds.
    #[arg(long, default_value_t = 3)]
    duration: u64,
    /// Rounds (modes take turns within each); medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Bytes per frame (Ethernet header included), 60..=1514.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(60..=1514))]
    size: u16,
}

/// `bpf_redirect` (`enum bpf_func_id`).
const HELPER_REDIRECT: i32 = 23;

/// The namespace, deleted on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let st = Command::new("ip").args(args).status().context("run ip")?;
    if !st.success() {
        bail!("ip {} failed", args.join(" "));
    }
    Ok(())
}

/// Enter a fresh namespace with the veth pair `txa` — `txb`, both up.
fn setup() -> Result<Netns> {
    let name = format!("antstx-{}", std::process::id());
    ip(&["netns", "add", &name])?;
    let ns = Netns(name);
    let path = format!("/var/run/netns/{}", ns.0);
    let f = std::fs::File::open(&path).with_context(|| path.clone())?;
    // SAFETY: setns on a descriptor we hold open; the result is checked.
    if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) } != 0 {
        bail!("setns {path}: {}", std::io::Error::last_os_error());
    }
    ip(&["link", "add", "txa", "type", "veth", "peer", "name", "txb"])?;
    ip(&["link", "set", "txa", "up"])?;
    ip(&["link", "set", "txb", "up"])?;
    Ok(ns)
}

fn ifindex(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name)?;
    // SAFETY: a NUL-terminated name; the call only reads it.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        bail!("no interface {name}");
    }
    Ok(i)
}

/// An XDP program: `return XDP_DROP`, or `return bpf_redirect(to, 0)`.
fn program(redirect_to: Option<u32>) -> Result<std::os::fd::OwnedFd> {
    let mut a = Asm::new();
    match redirect_to {
        None => a.mov_imm(Reg::R0, 1),
        Some(i) => {
            a.mov_imm(Reg::R1, i32::try_from(i)?);
            a.mov_imm(Reg::R2, 0);
            a.call(HELPER_REDIRECT);
        }
    }
    a.exit();
    let insns = a.finish().map_err(anyhow::Error::msg)?;
    let name = if redirect_to.is_some() {
        "tx_redirect"
    } else {
        "tx_drop"
    };
    Ok(sys::prog_load(
        sys::ProgType::Xdp,
        &insns,
        name,
        sys::ATTACH_XDP,
        0,
    )?)
}

/// A UDP/IPv4 frame of `size` bytes; `k` varies its source port (distinct frames).
fn frame(size: usize, k: u16) -> Vec<u8> {
    let mut f = vec![0u8; size];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = u16::try_from(size - 14).unwrap_or(u16::MAX);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[198, 18, 40, 1]);
    f[30..34].copy_from_slice(&[198, 18, 41, 1]);
    f[34..36].copy_from_slice(&(1024 + k % 4096).to_be_bytes());
    f[36..38].copy_from_slice(&9u16.to_be_bytes());
    f[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Afxdp,
    LiveEach,
    /// One frame this many times per call.
    LiveBatch(u32),
}

impl Mode {
    fn name(self) -> String {
        match self {
            Mode::Afxdp => "afxdp".into(),
            Mode::LiveEach => "live-each".into(),
            Mode::LiveBatch(n) => format!("live-batch-{n}"),
        }
    }
}

/// Send for `d` in `mode`: (frames, syscalls, CPU 1 busy seconds).
fn send(mode: Mode, d: Duration, frames: &[Vec<u8>], tx: u32) -> Result<(u64, u64, f64)> {
    // The kernel wants `data_end` to be the frame's length.
    let md = sys::XdpMd {
        data_end: u32::try_from(frames[0].len())?,
        ingress_ifindex: tx,
        ..sys::XdpMd::default()
    };
    let redirect = program(Some(tx))?;
    let mut xsk = match mode {
        Mode::Afxdp => {
            let cfg = XskConfig::default();
            let mut umem = Umem::new(&cfg, 1)?;
            let x = XskSocket::open("txa", tx, 0, &cfg, &mut umem)?;
            Some((x, umem))
        }
        _ => None,
    };
    let before = CpuTicks::read(Some(1));
    let start = Instant::now();
    let (mut sent, mut calls) = (0u64, 0u64);
    let mut k = 0usize;
    while start.elapsed() < d {
        match mode {
            Mode::Afxdp => {
                let Some((x, umem)) = xsk.as_mut() else {
                    bail!("no AF_XDP socket");
                };
                for _ in 0..64 {
                    x.queue(umem, &frames[k % frames.len()]);
                    k += 1;
                }
                sent += u64::from(x.flush(umem)?);
                calls += 1;
            }
            Mode::LiveEach => {
                for _ in 0..64 {
                    let f = &frames[k % frames.len()];
                    sys::prog_test_run_live(redirect.as_fd(), f, &md, 1, 0)?;
                    k += 1;
                }
                sent += 64;
                calls += 64;
            }
            Mode::LiveBatch(repeat) => {
                sys::prog_test_run_live(redirect.as_fd(), &frames[0], &md, repeat, 64)?;
                sent += u64::from(repeat);
                calls += 1;
            }
        }
    }
    let busy = CpuTicks::read(Some(1)).since(&before).busy() as f64 / clock_ticks_per_sec();
    Ok((sent, calls, busy))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("tx-bench needs root (network namespaces, XDP, AF_XDP)");
    }
    pin_thread(0, 1)?;
    let _ns = setup()?;
    let (tx, rx) = (ifindex("txa")?, ifindex("txb")?);
    let drop = program(None)?;
    let _attached = sys::link_create(drop.as_fd(), rx, sys::ATTACH_XDP, 0)
        .context("attach the drop program to txb")?;
    let frames: Vec<Vec<u8>> = (0..256).map(|k| frame(usize::from(cli.size), k)).collect();
    let modes = [
        Mode::Afxdp,
        Mode::LiveEach,
        Mode::LiveBatch(64),
        Mode::LiveBatch(65_536),
    ];
    let mut results: Vec<[Vec<f64>; 3]> = vec![Default::default(); modes.len()];
    let d = Duration::from_secs(cli.duration);
    for round in 1..=cli.rounds {
        for (m, mode) in modes.iter().enumerate() {
            let (sent, calls, busy) = send(*mode, d, &frames, tx)?;
            let pps = sent as f64 / d.as_secs_f64();
            let us = busy * 1e6 / sent.max(1) as f64;
            let call = d.as_secs_f64() * 1e6 / calls.max(1) as f64;
            println!(
                "round {round} {:<16} {pps:>12.0} frames/s  CPU1 {us:>6.3} µs/frame  \
                 {call:>9.1} µs/syscall",
                mode.name()
            );
            results[m][0].push(pps);
            results[m][1].push(us);
            results[m][2].push(call);
        }
    }
    println!("\n| mode | frames/s | CPU 1 µs/frame | wall µs/syscall |\n|---|---:|---:|---:|");
    for (mode, [pps, us, call]) in modes.iter().zip(&results) {
        println!(
            "| {} | {:.0} | {:.3} | {:.1} |",
            mode.name(),
            median(pps),
            median(us),
            median(call)
        );
    }
    Ok(())
}
