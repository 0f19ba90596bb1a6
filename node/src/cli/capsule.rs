//! `ants capsule …`: the capsule author's tools.

use std::path::PathBuf;
use std::process::ExitCode;

use ants_capsule_build::{BuildOptions, ToolchainChoice};
use ants_core::HostLimits;
use ants_node::testbench::{self, TestNode};
use ants_node::{ExecutorConfig, WasmExecutor};
use ants_wire::abi::{ABI_VERSION, HOST_FUNCTIONS};
use ants_wire::{Address, CapsuleRepr, CapsuleType};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::CapsuleData;
use sha2::{Digest, Sha256};

#[derive(Debug, Subcommand)]
pub(crate) enum CapsuleCommand {
    /// Build a capsule crate to wasm and print `<type>  <path>` (like sha256sum).
    ///
    /// Chooses a wasm toolchain by itself: an installed rustup `wasm32-unknown-unknown`
    /// target, else `rustup target add` (bounded wait), else Debian's `rustc-web` +
    /// `rust-web-src` with `-Zbuild-std` (installed with apt-get when missing and root).
    /// Cargo's progress goes to stderr; stdout has only the result line.
    ///
    /// Example: ants capsule build capsules/forward -o forward.wasm
    Build {
        /// Directory of the capsule crate (holds its Cargo.toml; crate-type must be cdylib).
        crate_dir: PathBuf,
        /// Copy the module here (default: leave it in the cargo target directory).
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// Force a toolchain: auto, rustup or debian.
        #[arg(long, default_value = "auto")]
        toolchain: ToolchainChoice,
        /// Never run apt-get or rustup to install a missing toolchain.
        #[arg(long)]
        no_install: bool,
        /// Quiet: do not stream cargo's output.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Create a capsule crate at PATH, anywhere: Cargo.toml (the SDK as a path dependency on
    /// the ants-rs sources this `ants` was built from, or --sdk), src/lib.rs (a hop-counting
    /// capsule with unit tests against the SDK's mock host), README.md and .gitignore.
    ///
    /// Example: ants capsule new ~/hops && cd ~/hops && cargo test && ants capsule build .
    New {
        /// Directory to create (it must not exist, or be empty).
        path: PathBuf,
        /// Crate name (default: the directory's name).
        #[arg(long)]
        name: Option<String>,
        /// The SDK's directory (default: `capsule-sdk` in the sources `ants` was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Print the capsule type of a module: `<type>  <path>`, the same hex as sha256sum.
    Hash {
        /// Module files (.wasm, or .wat text, hashed after assembly).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Validate modules against capsule ABI v2 and the node's limits; exit 1 with the reason
    /// if any is rejected.
    ///
    /// Checks: size cap, valid wasm, imports only from module "ants" and only ABI v2 host
    /// functions with their exact signatures, exports `memory`, `ants_on_capsule` and
    /// `ants_abi_version`, instantiation within the memory/table limits, ABI version.
    Check {
        /// Module files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Print the host ABI: every function a capsule may import, with its contract.
    Abi,
    /// Run one capsule against an in-memory node and print what it did: sends, deliveries,
    /// soft-store changes, log lines, fuel used, trap reason.
    ///
    /// The node has address --node, app 0 (and any --app) registered, an empty soft-store,
    /// and treats every destination as a direct neighbour unless --route says otherwise.
    /// Exit status: 0 if the capsule returned 0, 1 if it was rejected, trapped or returned
    /// an error code.
    ///
    /// Example: ants capsule test forward.wasm --dst 198.18.0.9 --payload hello
    Test(Box<TestArgs>),
}

#[derive(Debug, Args)]
pub(crate) struct LimitArgs {
    /// Fuel per execution (about one unit per wasm instruction).
    #[arg(long, default_value_t = ExecutorConfig::default().fuel)]
    fuel: u64,
    /// Largest linear memory per instance, bytes.
    #[arg(long, default_value_t = ExecutorConfig::default().max_memory_bytes)]
    max_memory: usize,
    /// Largest module accepted, bytes.
    #[arg(long, default_value_t = ExecutorConfig::default().max_module_bytes)]
    max_module: usize,
    /// Copies one execution may send.
    #[arg(long, default_value_t = HostLimits::default().max_sends)]
    max_sends: usize,
}

impl LimitArgs {
    fn config(&self) -> ExecutorConfig {
        ExecutorConfig {
            fuel: self.fuel,
            max_memory_bytes: self.max_memory,
            max_module_bytes: self.max_module,
            host: HostLimits {
                max_sends: self.max_sends,
                ..HostLimits::default()
            },
            ..ExecutorConfig::default()
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    /// The capsule module (.wasm, or .wat text).
    file: PathBuf,
    /// Address of the in-memory node the capsule runs on.
    #[arg(long, default_value = "198.18.0.2")]
    node: Address,
    /// Capsule source address.
    #[arg(long, default_value = "198.18.0.1")]
    src: Address,
    /// Capsule destination address.
    #[arg(long, default_value = "198.18.0.9")]
    dst: Address,
    /// Previous hop (default: the source).
    #[arg(long)]
    prev: Option<Address>,
    /// Resource budget the capsule arrives with.
    #[arg(long, default_value_t = 64)]
    resource: u16,
    #[command(flatten)]
    data: CapsuleData,
    /// A route `DEST=NEXT_HOP` (repeatable).
    #[arg(long, value_parser = parse_route)]
    route: Vec<(Address, Address)>,
    /// Only --route entries are routes (default: every address is a direct neighbour).
    #[arg(long)]
    no_direct: bool,
    /// A neighbour reported to the capsule by `node_neighbours` (repeatable), e.g. to see
    /// what a flooding protocol sends.
    #[arg(long)]
    neighbour: Vec<Address>,
    /// Register app N on the node (app 0 always is).
    #[arg(long)]
    app: Vec<u32>,
    /// Seed of the node's random generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

fn parse_route(s: &str) -> Result<(Address, Address), String> {
    let (d, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected DEST=NEXT_HOP, e.g. 198.18.0.9=198.18.0.3"))?;
    let d = d.parse().map_err(|e| format!("`{d}`: {e}"))?;
    let v = v.parse().map_err(|e| format!("`{v}`: {e}"))?;
    Ok((d, v))
}

/// Read a module; `.wat` files are assembled to binary first (nodes accept only binary wasm,
/// and the capsule type is the SHA-256 of the binary).
fn read_module(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "wat") {
        return wat::parse_bytes(&bytes)
            .map(|b| b.into_owned())
            .with_context(|| format!("{} is not valid WebAssembly text", path.display()));
    }
    Ok(bytes)
}

impl CapsuleCommand {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            CapsuleCommand::Build {
                crate_dir,
                out,
                toolchain,
                no_install,
                quiet,
            } => {
                let opts = BuildOptions {
                    toolchain,
                    out,
                    verbose: !quiet,
                    allow_install: !no_install,
                    ..BuildOptions::default()
                };
                let built = ants_capsule_build::build(&crate_dir, &opts)?;
                eprintln!(
                    "built {} ({} bytes) with {}",
                    crate_dir.display(),
                    built.size,
                    built.toolchain
                );
                println!("{}  {}", CapsuleType(built.sha256), built.path.display());
                Ok(ExitCode::SUCCESS)
            }
            CapsuleCommand::New { path, name, sdk } => {
                let made = super::template::create(&path, name.as_deref(), sdk.as_deref())?;
                println!(
                    "created capsule crate {} in {}\nnext: cd {} && cargo test && ants capsule build .",
                    made.name,
                    path.display(),
                    path.display()
                );
                Ok(ExitCode::SUCCESS)
            }
            CapsuleCommand::Hash { files } => {
                for f in files {
                    let code = read_module(&f)?;
                    println!(
                        "{}  {}",
                        CapsuleType(Sha256::digest(&code).into()),
                        f.display()
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            CapsuleCommand::Check { files, limits } => {
                let mut exec = WasmExecutor::with_config(limits.config())?;
                let mut failed = false;
                for f in files {
                    let code = read_module(&f)?;
                    match ants_core::Executor::load(&mut exec, &code) {
                        Ok(ty) => {
                            println!("ok        {}  {} ({} bytes)", ty, f.display(), code.len())
                        }
                        Err(e) => {
                            failed = true;
                            println!("rejected  {}: {e}", f.display());
                        }
                    }
                }
                Ok(if failed {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                })
            }
            CapsuleCommand::Abi => {
                println!("capsule ABI v{ABI_VERSION}: imports from module \"ants\"");
                for f in HOST_FUNCTIONS {
                    println!("  {}", f.doc);
                }
                println!("exports: memory, ants_on_capsule() -> i32, ants_abi_version() -> i32");
                println!("status codes: >= 0 ok; see `docs/abi.md` for the negative codes");
                Ok(ExitCode::SUCCESS)
            }
            CapsuleCommand::Test(args) => args.run(),
        }
    }
}

impl TestArgs {
    fn run(self) -> anyhow::Result<ExitCode> {
        let code = read_module(&self.file)?;
        let config = self.limits.config();
        let mut exec = WasmExecutor::with_config(config)?;
        let ty = match ants_core::Executor::load(&mut exec, &code) {
            Ok(ty) => ty,
            Err(e) => bail!("{} rejected: {e}", self.file.display()),
        };
        let (header, payload) = self.data.bytes()?;
        let capsule = CapsuleRepr {
            flags: 0,
            resource: self.resource,
            capsule_type: ty,
            src: self.src,
            dst: self.dst,
            prev: self.prev.unwrap_or(self.src),
            header: &header,
            payload: &payload,
            trace: None,
        };
        let mut node = TestNode::new(self.node, self.seed);
        for (dst, via) in &self.route {
            node.add_route(*dst, *via);
        }
        node.direct_by_default = !self.no_direct;
        node.neighbours.extend(self.neighbour.iter().copied());
        node.apps.extend(self.app.iter().copied());
        let run = testbench::run(&mut exec, &mut node, &capsule, &config.host, config.fuel);
        if self.json {
            println!("{}", serde_json::to_string(&run)?);
        } else {
            print!("{}", run.to_text());
        }
        Ok(if run.ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}
