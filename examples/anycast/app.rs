//! The anycast demo's app (capsules/anycast): join a group as a `member`, or `send` numbered
//! capsules to whichever member is nearest.
//!
//! ```text
//! anycast-app member -s /tmp/ants-anycast/n1.sock --code anycast.wasm
//! anycast-app send -s /tmp/ants-anycast/n3.sock --code anycast.wasm --count 20
//! ```
//!
//! A member advertises itself every `--refresh-ms` (nodes hold the advertisement for
//! `--hold-ms`, a little longer) and prints one line per capsule delivered to it; when it
//! stops, or its node dies, the next nearest member takes over within one refresh period.
//! A data capsule's payload is its sequence number as text.
//!
//! Build: `cargo build --release -p ants-node --example anycast-app`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ants_app::{AppClient, ClientError, Inject};
use ants_wire::Address;
use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

const ADVERTISE: u8 = 1;
const DATA: u8 = 2;
/// The app id the capsule delivers to on the chosen member's node.
const MEMBER_APP: u32 = 0;
const SENDER_APP: u32 = 1;
/// Resource budget of data capsules: a receiver tells the hops taken from what is left.
const DATA_RESOURCE: u16 = 32;

#[derive(Debug, Parser)]
#[command(name = "anycast-app", about = "Join an anycast group or send to it")]
struct Cli {
    /// The node's app socket.
    #[arg(short, long)]
    socket: PathBuf,
    /// The anycast module (`ants capsule build capsules/anycast -o anycast.wasm`).
    #[arg(long)]
    code: PathBuf,
    /// The group number.
    #[arg(long, default_value_t = 0xA1)]
    group: u32,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Advertise this node as a member and print each capsule delivered here, until the
    /// node goes away or the app is stopped.
    Member {
        /// How often to advertise.
        #[arg(long, default_value_t = 300)]
        refresh_ms: u64,
        /// How long nodes keep an advertisement; a little over the refresh period.
        #[arg(long, default_value_t = 400)]
        hold_ms: u16,
    },
    /// Send numbered capsules to the group.
    Send {
        /// How many.
        #[arg(long, default_value_t = 10)]
        count: u32,
        /// The first sequence number.
        #[arg(long, default_value_t = 0)]
        first: u32,
        /// Pause between capsules.
        #[arg(long, default_value_t = 20)]
        interval_ms: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let code = std::fs::read(&cli.code).with_context(|| format!("{}", cli.code.display()))?;
    let group = cli.group.to_be_bytes();
    match cli.mode {
        Mode::Member {
            refresh_ms,
            hold_ms,
        } => {
            if u64::from(hold_ms) <= refresh_ms {
                bail!("--hold-ms {hold_ms} must exceed --refresh-ms {refresh_ms}");
            }
            let mut app = AppClient::connect(&cli.socket, MEMBER_APP)?;
            let me = app.node();
            let header = [
                &[ADVERTISE][..],
                &group,
                &me.0,
                &[0],
                &hold_ms.to_be_bytes(),
            ]
            .concat();
            let mut adv = Inject::with_code(code, Address::UNSPECIFIED, 16, header, vec![]);
            let refresh = Duration::from_millis(refresh_ms);
            println!("{me} joined group {}", cli.group);
            let mut tick = Instant::now();
            loop {
                if Instant::now() >= tick {
                    match app.inject(&adv) {
                        Err(ClientError::Closed) => break,
                        r => r.context("advertise")?,
                    };
                    adv.code = None;
                    tick += refresh;
                }
                match app.recv_timeout(tick.saturating_duration_since(Instant::now())) {
                    Ok(Some(d)) => println!(
                        "{me} received seq {} from {} ({} hops) at {} ms",
                        String::from_utf8_lossy(&d.payload),
                        d.src,
                        DATA_RESOURCE.saturating_sub(d.resource),
                        d.node_time_ns / 1_000_000,
                    ),
                    Ok(None) => {}
                    Err(ClientError::Closed) => break,
                    Err(e) => return Err(e.into()),
                }
            }
            println!("{me}: the node closed the connection; no longer a member");
        }
        Mode::Send {
            count,
            first,
            interval_ms,
        } => {
            let mut app = AppClient::connect(&cli.socket, SENDER_APP)?;
            let header = [&[DATA][..], &group].concat();
            let mut data =
                Inject::with_code(code, Address::UNSPECIFIED, DATA_RESOURCE, header, vec![]);
            let end = first.saturating_add(count);
            for seq in first..end {
                data.payload = seq.to_string().into_bytes();
                app.inject(&data).context("send")?;
                data.code = None;
                std::thread::sleep(Duration::from_millis(interval_ms));
            }
            println!(
                "{} sent seq {first}..{end} to group {}",
                app.node(),
                cli.group
            );
        }
    }
    Ok(())
}
