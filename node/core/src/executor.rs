//! The interface between the node core and whatever runs capsule code.
//!
//! The node's wasmtime executor implements [`Executor`]; so could an interpreter or a test
//! double. Loading is split from running: [`Executor::load`] validates and compiles (slow,
//! off the forwarding path), [`Executor::run`] executes an already-loaded type (fast).

use std::fmt;

use ants_wire::CapsuleType;

use crate::Execution;

/// Why a module was refused at load time. Every variant reads as a sentence for operators.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// Larger than the configured module size cap.
    #[error("module is {size} bytes, over the {max}-byte limit")]
    TooLarge {
        /// Module size.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// Not valid WebAssembly, or uses features the node does not enable.
    #[error("not a valid wasm module: {0}")]
    Invalid(String),
    /// Imports from a module other than `"ants"`.
    #[error("imports `{module}::{name}`: capsules may import only from module \"ants\"")]
    ForeignImport {
        /// Import module.
        module: String,
        /// Import name.
        name: String,
    },
    /// Imports a function the host ABI does not have.
    #[error("imports `ants::{0}`, which is not a host function of ABI v2")]
    UnknownImport(String),
    /// Imports a known name with the wrong kind or signature.
    #[error("imports `ants::{name}` as {found}, but the host provides {expected}")]
    ImportSignature {
        /// Import name.
        name: String,
        /// Signature the host provides.
        expected: String,
        /// Signature the module declares.
        found: String,
    },
    /// A required export is missing.
    #[error("does not export `{0}` (see docs/abi.md for the required exports)")]
    MissingExport(&'static str),
    /// A required export has the wrong kind or signature.
    #[error("exports `{name}` as {found}, expected {expected}")]
    ExportSignature {
        /// Export name.
        name: &'static str,
        /// What is required.
        expected: String,
        /// What the module has.
        found: String,
    },
    /// `ants_abi_version` returned a version this node does not speak.
    #[error("speaks capsule ABI version {found}, this node speaks {expected}")]
    AbiVersion {
        /// Version reported by the module.
        found: i64,
        /// Version of this node.
        expected: i32,
    },
    /// Instantiation failed (e.g. its memory starts larger than the limit) or its start
    /// function/ABI probe trapped.
    #[error("cannot be instantiated within the node's limits: {0}")]
    Instantiate(String),
    /// The node could not compile it now (compile queue full, code unreadable, shutting
    /// down): nothing is known to be wrong with the module.
    #[error("could not be compiled now: {0}")]
    Unavailable(String),
}

impl LoadError {
    /// Whether the module itself was refused (as opposed to [`LoadError::Unavailable`]): a
    /// refused type is refused from everyone for a while.
    pub fn is_invalid(&self) -> bool {
        !matches!(self, LoadError::Unavailable(_))
    }
}

/// Why an execution stopped abnormally. The instance is discarded after any trap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrapReason {
    /// The fuel budget ran out (e.g. an infinite loop).
    OutOfFuel,
    /// Call stack exhausted (e.g. unbounded recursion).
    StackOverflow,
    /// A memory access outside linear memory.
    MemoryOutOfBounds,
    /// `memory.grow` or `table.grow` past the node's per-instance limit.
    ResourceLimit,
    /// `unreachable` executed (a Rust panic in a capsule ends here).
    Unreachable,
    /// Still running at the wall-clock deadline (`max_exec_time`).
    Deadline,
    /// Any other trap, with the engine's description.
    Other(String),
}

impl fmt::Display for TrapReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrapReason::OutOfFuel => f.write_str("out of fuel (budget exhausted)"),
            TrapReason::StackOverflow => f.write_str("call stack exhausted"),
            TrapReason::MemoryOutOfBounds => f.write_str("out-of-bounds memory access"),
            TrapReason::ResourceLimit => f.write_str("memory or table grown past the node's limit"),
            TrapReason::Unreachable => f.write_str("unreachable executed (capsule panicked)"),
            TrapReason::Deadline => f.write_str("still running at the execution deadline"),
            TrapReason::Other(s) => f.write_str(s),
        }
    }
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunResult {
    /// The entry returned this code (0 = handled; other values are the capsule's own errors).
    Returned(i32),
    /// The capsule trapped; its sends and deliveries were discarded.
    Trapped(TrapReason),
    /// The type is not loaded in this executor.
    NotLoaded,
}

/// The outcome of one execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// How it ended.
    pub result: RunResult,
    /// Fuel consumed (roughly, wasm instructions executed).
    pub fuel_used: u64,
    /// Wall time of the execution in nanoseconds, when the executor measured it (a sample of
    /// the runs: reading the clock costs a noticeable share of a short run).
    pub nanos: Option<u64>,
}

/// Runs capsule code.
pub trait Executor {
    /// Validate and compile a module; returns its type (SHA-256 of `code`).
    fn load(&mut self, code: &[u8]) -> Result<CapsuleType, LoadError>;
    /// Whether `ty` is loaded.
    fn is_loaded(&self, ty: &CapsuleType) -> bool;
    /// Run the capsule in `exec` (its type selects the module). Call it through
    /// [`execute`](crate::execute), which prepares the outputs and settles them afterwards.
    ///
    /// The box is lent: an executor may swap it with one of its own for the duration of the
    /// call (the wasmtime executor moves it into its store that way), but must leave `exec`
    /// holding the same execution when it returns.
    fn run(&mut self, exec: &mut Box<Execution>) -> RunReport;
    /// Whose instance state the following runs use. A real node is one owner (0, the
    /// default); the simulator runs many nodes on one executor and gives each node its own
    /// (its index), so that a module's globals and memory are per node, as on a real
    /// network. Executors without state between runs ignore it.
    fn set_owner(&mut self, _owner: u32) {}
}
