//! Command-line surface. Each subcommand group lives in its own module.

mod capsule;

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
}

impl Cli {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Capsule(c) => c.run(),
        }
    }
}
