//! Command-line surface. Each subcommand group lives in its own module.

mod capsule;
mod capture;
mod map;
mod node;
mod replay;
mod sim;
mod status;
mod template;
mod top;
mod trace;
mod traceroute;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// What `ants --version` prints: exactly what runs.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nrevision: ",
    env!("ANTS_GIT_REV"),
    "\nwire format: versions 1 and 2 (traces)\ncapsule ABI: 2\nwasmtime: ",
    env!("ANTS_WASMTIME_VERSION"),
);

#[cfg(test)]
mod tests {
    #[test]
    fn the_long_version_names_the_wire_and_abi_this_build_speaks() {
        assert!(super::LONG_VERSION.contains(&format!(
            "wire format: versions {} and {}",
            ants_wire::BASE_VERSION,
            ants_wire::VERSION
        )));
        let abi = format!("capsule ABI: {}", ants_wire::abi::ABI_VERSION);
        assert!(super::LONG_VERSION.contains(&abi));
    }
}

/// ANTS-rs: an active-network capsule router.
///
/// Packets carry a capsule header naming their forwarding routine by the SHA-256 of a wasm
/// module; nodes run that routine in a fuel-limited sandbox and fetch code they lack from the
/// previous hop. Start with `ants capsule --help`.
#[derive(Debug, Parser)]
#[command(name = "ants", version, long_version = LONG_VERSION, propagate_version = true)]
pub(crate) struct Cli {
    /// How log lines are written to stderr (their level: RUST_LOG, e.g. RUST_LOG=info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines (coloured only on a terminal).
    Text,
    /// One JSON object per line (journald, log shippers).
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build, inspect, validate and test capsule modules.
    #[command(subcommand)]
    Capsule(capsule::CapsuleCommand),
    /// Run a node until SIGINT/SIGTERM: the UDP overlay daemon, or with a `[router]` section a
    /// userspace IPv4 router on AF_PACKET (root).
    ///
    /// Example: RUST_LOG=info ants run --config examples/line5/n1.toml
    Run(node::RunArgs),
    /// Check configuration files without starting a node: print a summary of each, or its
    /// first error with file and line; the exit status is 1 if any is bad.
    ///
    /// Example: ants check-config examples/line5/*.toml
    CheckConfig(node::CheckConfigArgs),
    /// Make a running node read its config file again (as SIGHUP does) and apply in place
    /// what can change without a restart — neighbours, routes, `[code]`, `[trace]`, and the
    /// `[limits]` keys max_resource, peer_fuel_per_sec, quarantine_* and drain_time — keeping
    /// its soft state, code and held capsules. Prints what changed and what needs a restart;
    /// a bad file is refused with its first error and the running config stays.
    ///
    /// Example: ants reload -s /tmp/ants-demo/n1.sock
    Reload(node::ReloadArgs),
    /// Send capsules from a local app through a running node.
    ///
    /// Example: ants send -s /tmp/ants-demo/n1.sock --code forward.wasm --dst 198.18.0.5 --payload hi
    Send(Box<node::SendArgs>),
    /// Print capsules delivered to an app id on a running node, one JSON object per line.
    ///
    /// Example: ants listen -s /tmp/ants-demo/n5.sock --app 0 --count 3
    Listen(node::ListenArgs),
    /// Show a running node's state: its counters, per-protocol table, router and datapath.
    ///
    /// Asks the node over its app socket (no app id is taken). --json prints the counters as
    /// one JSON object (the form of `ants run --stats-json`).
    ///
    /// Example: ants status -s /tmp/ants-demo/n3.sock
    Status(status::StatusArgs),
    /// List a running node's drop counters by reason (node, router, interfaces), zero rows
    /// hidden unless --all.
    ///
    /// Example: ants drops -s /tmp/ants-demo/n3.sock --all
    Drops(status::DropsArgs),
    /// List a running node's capsule types: module size, compile time, runs, traps, when
    /// last run, and peers quarantined for repeated traps.
    ///
    /// A type appears once it has run or its module is in the code cache. --json prints
    /// one object per type. --evict TYPE drops a module from the node's memory and code
    /// directory instead (the next capsule of the type loads it again).
    ///
    /// Example: ants modules -s /tmp/ants-demo/n3.sock
    Modules(status::ModulesArgs),
    /// Write the datagrams a running node sends and receives (capsules and code transfer) to
    /// a pcapng file, as UDP between the node's endpoint and its peers.
    ///
    /// Decode it with the dissector in tools/wireshark/ants.lua:
    /// tshark -X lua_script:tools/wireshark/ants.lua -r FILE -Y ants. One capture per node
    /// at a time; datagrams this client is too slow for are counted, not queued.
    ///
    /// Example: ants capture -s /tmp/ants-demo/n3.sock -w n3.pcapng --count 100
    Capture(capture::CaptureArgs),
    /// Watch a running node's rates: capsules in, runs, sends, deliveries and drops per
    /// second, per protocol (with fuel p50/p99) and per worker, and when each neighbour was
    /// last heard.
    ///
    /// Draws in place (q quits); prints plain frames when stdout is not a terminal or with
    /// --plain.
    ///
    /// Example: ants top -s /tmp/ants-demo/n3.sock
    Top(top::TopArgs),
    /// Draw a deployment: nodes coloured by health, links labelled with the traffic of each
    /// direction — a live web page, an SVG or an HTML file.
    ///
    /// Example: ants map --dir examples/line5   (then open http://127.0.0.1:9330/)
    #[command(long_about = map::LONG_HELP)]
    Map(Box<map::MapArgs>),
    /// Look into a running node's soft-store.
    ///
    /// Example: ants store dump -s /tmp/ants-demo/n3.sock --type ee5d3ee4…
    #[command(subcommand)]
    Store(status::StoreCommand),
    /// Show a traced capsule's causal timeline, from the node that sent it.
    ///
    /// `ants send --trace` marks capsules for tracing (and `[trace] sample` in a node's config
    /// traces a fraction of what its apps send). Every node that handles a traced capsule or
    /// one of its copies reports what it did to the sending node: received, held while its
    /// code was fetched, ran (fuel and time), sent to whom, delivered, dropped and why. Events
    /// are stamped with Lamport clocks carried in the capsules, so the order printed is the
    /// happened-before order across nodes whatever their clocks say; `ms` is each event's own
    /// node clock since the trace began (comparable across nodes only if their clocks agree).
    ///
    /// Without an id, lists the traces the node started (the most recent 64 per worker).
    ///
    /// Example: ants trace -s /tmp/ants-demo/n1.sock 5f0c7a3e9b214d88 --wait 0.5
    Trace(trace::TraceArgs),
    /// Trace the active path to a node, like traceroute(8).
    ///
    /// Registers as an app on the source node (--socket), injects `traceroute` capsules
    /// (capsules/traceroute) toward DST one after another, and prints the path each brought
    /// back. Every active node that runs the capsule on the way out appends its address and
    /// its clock; the destination turns it around and the source delivers it to this command.
    /// The first probe carries the code; nodes on the way fetch it from their previous hop.
    ///
    /// One line per active hop after the source. A time is that node's clock minus the
    /// previous node's when the capsule ran there: the one-way time of the hop, including
    /// the time the capsule waited for its code (node clocks are wall clocks: on one host
    /// they agree, across hosts they may not, shown as `? ms`). `*` is a probe that did not
    /// come back in time, `!N` a hop with no route onward. The round trip is measured here.
    ///
    /// Example: ants traceroute 198.18.0.6 -s /tmp/ants-traceroute/n1.sock --code traceroute.wasm
    ///
    ///   traceroute to 198.18.0.6 from 198.18.0.1, 3 probes
    ///    1  198.18.0.2  4.649 ms  0.021 ms  0.030 ms
    ///    …
    ///    5  198.18.0.6  4.682 ms  0.022 ms  0.021 ms
    ///   round trip  27.767 ms  0.307 ms  0.249 ms
    ///
    /// (The first probe's hops waited for their code. Demo: bash examples/traceroute/demo.sh)
    #[command(verbatim_doc_comment)]
    Traceroute(Box<traceroute::TracerouteArgs>),
    /// Write shell completions to stdout (bash, zsh, fish, elvish, powershell).
    ///
    /// Example: ants completions bash > /etc/bash_completion.d/ants
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages (ants.1 and one per subcommand, ants-run.1, …) into a directory.
    ///
    /// Example: ants manual /usr/share/man/man1
    Manual {
        /// Where to write them.
        dir: std::path::PathBuf,
    },
    /// Run a simulation scenario: the real node core and wasm capsules on a virtual,
    /// deterministic network of up to 4,194,304 nodes (a million in under 8 GiB).
    ///
    /// Example: ants sim examples/sim/line-loss-crash.toml   (see `ants sim --help`)
    #[command(long_about = sim::LONG_HELP)]
    Sim(Box<sim::SimArgs>),
    /// Replay what `ants run --record DIR` recorded through the node core, and check that it
    /// makes the same outputs.
    ///
    /// Example: ants replay rec/            (every node and worker recorded under rec/)
    #[command(long_about = replay::LONG_HELP)]
    Replay(replay::ReplayArgs),
}

impl Cli {
    pub(crate) fn log_format(&self) -> LogFormat {
        self.log_format
    }

    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Capsule(c) => c.run(),
            Command::Run(a) => a.run(),
            Command::CheckConfig(a) => a.run(),
            Command::Reload(a) => a.run(),
            Command::Send(a) => a.run(),
            Command::Listen(a) => a.run(),
            Command::Status(a) => a.run(),
            Command::Drops(a) => a.run(),
            Command::Modules(a) => a.run(),
            Command::Store(c) => c.run(),
            Command::Top(a) => a.run(),
            Command::Map(a) => a.run(),
            Command::Capture(a) => a.run(),
            Command::Trace(a) => a.run(),
            Command::Traceroute(a) => a.run(),
            Command::Sim(a) => a.run(),
            Command::Replay(a) => a.run(),
            Command::Completions { shell } => {
                use clap::CommandFactory;
                let mut cmd = Cli::command();
                clap_complete::generate(shell, &mut cmd, "ants", &mut std::io::stdout());
                Ok(ExitCode::SUCCESS)
            }
            Command::Manual { dir } => {
                use anyhow::Context;
                use clap::CommandFactory;
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                clap_mangen::generate_to(Cli::command(), &dir)
                    .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
                println!("man pages written to {}", dir.display());
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

/// The protocol header and payload of a capsule, each as text or hex.
#[derive(Debug, clap::Args)]
pub(crate) struct CapsuleData {
    /// Protocol header as text.
    #[arg(long, conflicts_with = "header_hex")]
    header: Option<String>,
    /// Protocol header as hex.
    #[arg(long)]
    header_hex: Option<String>,
    /// Payload as text.
    #[arg(long, conflicts_with = "payload_hex")]
    payload: Option<String>,
    /// Payload as hex.
    #[arg(long)]
    payload_hex: Option<String>,
}

impl CapsuleData {
    /// `(header, payload)` bytes; empty when not given.
    pub(crate) fn bytes(&self) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
        Ok((
            text_or_hex(&self.header, &self.header_hex, "header")?,
            text_or_hex(&self.payload, &self.payload_hex, "payload")?,
        ))
    }
}

fn text_or_hex(
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
