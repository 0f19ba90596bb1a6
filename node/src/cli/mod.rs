//! Command-line surface. Each subcommand group lives in its own module.

mod capsule;
mod node;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// ANTS-rs: an active-network capsule router.
///
/// Packets carry a capsule header naming their forwarding routine by the SHA-256 of a wasm
/// module; nodes run that routine in a fuel-limited sandbox and fetch code they lack from the
/// previous hop. Start with `ants capsule --help`.
#[derive(Debug, Parser)]
#[command(name = "ants", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build, inspect, validate and test capsule modules.
    #[command(subcommand)]
    Capsule(capsule::CapsuleCommand),
    /// Run a node: the UDP overlay daemon, until SIGINT/SIGTERM.
    ///
    /// Example: RUST_LOG=info ants run --config examples/line5/n1.toml
    Run(node::RunArgs),
    /// Send capsules from a local app through a running node.
    ///
    /// Example: ants send -s /tmp/ants-demo/n1.sock --code forward.wasm --dst 198.18.0.5 --payload hi
    Send(Box<node::SendArgs>),
    /// Print capsules delivered to an app id on a running node, one JSON object per line.
    ///
    /// Example: ants listen -s /tmp/ants-demo/n5.sock --app 0 --count 3
    Listen(node::ListenArgs),
}

impl Cli {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Capsule(c) => c.run(),
            Command::Run(a) => a.run(),
            Command::Send(a) => a.run(),
            Command::Listen(a) => a.run(),
        }
    }
}

/// Bytes from a pair of `--x` (text) / `--x-hex` options; empty when neither is given.
fn bytes_arg(
    text: &Option<String>,
    hex_arg: &Option<String>,
    what: &str,
) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    match (text, hex_arg) {
        (Some(t), _) => Ok(t.clone().into_bytes()),
        (None, Some(h)) => {
            hex::decode(h.trim()).with_context(|| format!("--{what}-hex is not hex"))
        }
        (None, None) => Ok(Vec::new()),
    }
}
