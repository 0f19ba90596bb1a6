//! The multicast demo's app (capsules/multicast): `send` data capsules to a group from the
//! sender's node, or `receive` them on a receiver's node.
//!
//! ```text
//! multicast-app receive -s /tmp/ants-multicast/n5.sock --app 5 --sender 198.18.0.1 \
//!     --code multicast.wasm --count 1000
//! multicast-app send -s /tmp/ants-multicast/n1.sock --code multicast.wasm --count 1000 --rate 4000
//! ```
//!
//! A receiver subscribes (a `subscribe` capsule toward the sender) and refreshes the
//! subscription every third of its lifetime for as long as it runs; when it exits, the
//! branches it made expire on their own. A data capsule's payload is its sequence number
//! (`u32`, big-endian), so a receiver can count what is missing or duplicated.
//!
//! Build: `cargo build --release -p ants-node --example multicast-app`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use ants_app::{AppClient, ClientError, Inject};
use ants_wire::Address;
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

const SUBSCRIBE: u8 = 1;
const DATA: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "multicast-app",
    about = "Send or receive a multicast group's capsules"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Inject data capsules for the group at this node (the group's sender).
    Send(SendArgs),
    /// Join the group (subscribe toward the sender, refreshing) and count its data capsules.
    Receive(ReceiveArgs),
}

#[derive(Debug, Args)]
struct Common {
    /// The node's app socket.
    #[arg(short, long)]
    socket: PathBuf,
    /// The multicast module (`ants capsule build capsules/multicast -o multicast.wasm`).
    #[arg(long)]
    code: PathBuf,
    /// The group number.
    #[arg(long, default_value_t = 7)]
    group: u32,
    /// Resource budget of each capsule (hops its copies may still take).
    #[arg(long, default_value_t = 16)]
    resource: u16,
}

#[derive(Debug, Args)]
struct SendArgs {
    #[command(flatten)]
    common: Common,
    /// The app id to register as.
    #[arg(long, default_value_t = 1)]
    app: u32,
    /// How many data capsules.
    #[arg(long, default_value_t = 1000)]
    count: u32,
    /// Sequence number of the first capsule.
    #[arg(long, default_value_t = 0)]
    first: u32,
    /// Capsules per second (0 = as fast as the node acknowledges).
    #[arg(long, default_value_t = 4000)]
    rate: u32,
}

#[derive(Debug, Args)]
struct ReceiveArgs {
    #[command(flatten)]
    common: Common,
    /// The app id to register as (data for the group is delivered to it).
    #[arg(long)]
    app: u32,
    /// The sender's active address (subscribes travel toward it).
    #[arg(long)]
    sender: Address,
    /// How long nodes keep this subscription without a refresh, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    lifetime_ms: u32,
    /// Exit after this many data capsules.
    #[arg(long)]
    count: Option<u64>,
    /// Exit after this many seconds without data.
    #[arg(long, default_value_t = 10.0)]
    idle_timeout: f64,
}

fn main() -> ExitCode {
    let result = match Cli::parse().mode {
        Mode::Send(a) => send(&a),
        Mode::Receive(a) => receive(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("multicast-app: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `kind`, three reserved bytes, then big-endian words (see capsules/multicast).
fn header(kind: u8, words: &[u32]) -> Vec<u8> {
    let mut h = vec![kind, 0, 0, 0];
    words
        .iter()
        .for_each(|w| h.extend_from_slice(&w.to_be_bytes()));
    h
}

fn connect(c: &Common, app: u32) -> anyhow::Result<(AppClient, Vec<u8>)> {
    let code = std::fs::read(&c.code).with_context(|| format!("reading {}", c.code.display()))?;
    Ok((AppClient::connect(&c.socket, app)?, code))
}

/// Inject, retrying for up to 5 s while the node refuses — it may still be compiling the
/// module it was just given, and its queue of capsules waiting for the compiler is bounded.
/// Counts the retries in `retries`.
fn inject(client: &mut AppClient, inject: &Inject, retries: &mut u64) -> anyhow::Result<()> {
    let give_up = Instant::now() + Duration::from_secs(5);
    loop {
        match client.inject(inject) {
            Err(ClientError::Refused { .. }) if Instant::now() < give_up => {
                *retries += 1;
                thread::sleep(Duration::from_millis(10));
            }
            other => return other.map(drop).map_err(Into::into),
        }
    }
}

fn send(a: &SendArgs) -> anyhow::Result<()> {
    let (mut client, code) = connect(&a.common, a.app)?;
    let me = client.node();
    let data = header(DATA, &[a.common.group]);
    let mut capsule = Inject::with_code(code, me, a.common.resource, data, vec![]);
    let gap = (a.rate > 0).then(|| Duration::from_secs_f64(1.0 / f64::from(a.rate)));
    let (start, mut retries) = (Instant::now(), 0);
    for (i, seq) in (a.first..a.first.saturating_add(a.count)).enumerate() {
        capsule.payload = seq.to_be_bytes().to_vec();
        inject(&mut client, &capsule, &mut retries)?;
        capsule.code = None;
        if let Some(gap) = gap {
            let due = start + gap.mul_f64(i as f64 + 1.0);
            thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    }
    println!(
        "{me}: sent {} data capsules (seq {}..={}) to group {} in {:.3} s ({retries} retried)",
        a.count,
        a.first,
        a.first.saturating_add(a.count).saturating_sub(1),
        a.common.group,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn receive(a: &ReceiveArgs) -> anyhow::Result<()> {
    if a.lifetime_ms < 3 {
        bail!("--lifetime-ms must be at least 3 (the app refreshes every third of it)");
    }
    let (mut client, code) = connect(&a.common, a.app)?;
    let words = [a.common.group, a.app, a.lifetime_ms];
    let sub = header(SUBSCRIBE, &words);
    let mut subscribe = Inject::with_code(code, a.sender, a.common.resource, sub, vec![]);
    let refresh = Duration::from_millis(u64::from(a.lifetime_ms) / 3);
    let idle = Duration::from_secs_f64(a.idle_timeout.max(0.0));
    let (mut seqs, mut total, mut duplicates) = (BTreeSet::new(), 0u64, 0u64);
    let (mut next_refresh, mut last_data) = (Instant::now(), Instant::now());
    while a.count.is_none_or(|c| total < c) && last_data.elapsed() < idle {
        if Instant::now() >= next_refresh {
            inject(&mut client, &subscribe, &mut 0)?;
            subscribe.code = None;
            next_refresh = Instant::now() + refresh;
        }
        let wait = next_refresh.saturating_duration_since(Instant::now());
        let Some(d) = client.recv_timeout(wait.min(idle))? else {
            continue;
        };
        let Ok(seq) = <[u8; 4]>::try_from(d.payload.as_slice()) else {
            continue;
        };
        total += 1;
        last_data = Instant::now();
        if !seqs.insert(u32::from_be_bytes(seq)) {
            duplicates += 1;
        }
    }
    let range = match (seqs.first(), seqs.last()) {
        (Some(lo), Some(hi)) => format!("seq {lo}..={hi}"),
        _ => "none".to_owned(),
    };
    println!(
        "{} app {}: {total} data capsules of group {}, {} distinct ({range}), {duplicates} duplicates",
        client.node(),
        a.app,
        a.common.group,
        seqs.len()
    );
    Ok(())
}
