//! The wasmtime executor: runs capsule modules in fuel-limited, deadline-bounded sandboxes.
//!
//! - [`Compiler`] checks a module against the ABI (with `wasmparser`, before compiling) and
//!   compiles it. It is `Send + Sync` and cheap to clone, so compilation can happen off the
//!   forwarding thread; clones share one engine and one epoch [`deadline::Ticker`].
//! - [`WasmExecutor`] holds compiled modules (LRU, bounded in count and in native code bytes)
//!   and, for the most recently used of them, one live instance reused for every capsule of
//!   that type with its fuel and deadline reset — no instantiation per packet. Live instances
//!   are bounded separately (`max_instances`): each may hold up to `max_memory_bytes` of
//!   linear memory. A trapped instance is dropped and rebuilt from its `InstancePre` on the
//!   next capsule.
//! - `host_fns` links the host functions, each charging fuel for the bytes it touches;
//!   `validate` checks imports, exports and the module's shape.
//!
//! The execution is *moved* into the store for the duration of a call (a pointer swap of the
//! boxed [`Execution`]) and back: host functions reach it as ordinary store data, with no raw
//! pointers and no `unsafe`.
//!
//! One `Engine` per process is the intent: build one [`Compiler`] and clone it.

mod deadline;
mod host_fns;
mod validate;

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::Duration;

use ants_core::{Execution, Executor, HostLimits, LoadError, RunReport, RunResult, TrapReason};
use ants_wire::CapsuleType;
use ants_wire::abi::{ABI_VERSION, ABI_VERSION_EXPORT, ENTRY_EXPORT};
use lru::LruCache;
use sha2::{Digest, Sha256};
use wasmtime::{Engine, Instance, InstancePre, Linker, Memory, Module, Store, Trap, TypedFunc};

pub use deadline::Ticker;
use deadline::Watch;
pub use validate::{MAX_BODY_BYTES, MAX_FUNCTIONS, MAX_LOCALS};

/// Limits of the sandbox. Every one is enforced; every hit is an error or trap, never a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutorConfig {
    /// Fuel per capsule execution (about one unit per wasm instruction; host calls pay for
    /// the bytes they touch, see [`ants_core::host::fuel`]).
    pub fuel: u64,
    /// Wall-clock deadline of one execution; `None` disables it (the simulator, which must
    /// be deterministic, relies on fuel alone).
    pub max_exec_time: Option<Duration>,
    /// Largest linear memory an instance may have, in bytes.
    pub max_memory_bytes: usize,
    /// Largest table an instance may have, in elements.
    pub max_table_elements: usize,
    /// Largest module accepted, in bytes.
    pub max_module_bytes: usize,
    /// Native stack a capsule may use, in bytes (deep recursion traps past it).
    pub max_wasm_stack: usize,
    /// Compiled modules kept; the least recently used is dropped past this.
    pub max_modules: usize,
    /// Native code bytes of the compiled modules kept; the least recently used are dropped
    /// past this (a module larger than this alone is refused).
    pub max_compiled_bytes: usize,
    /// Live instances kept (each with up to `max_memory_bytes` of memory); the least
    /// recently used is dropped past this and rebuilt when its type runs again.
    pub max_instances: usize,
    /// Per-execution limits on host calls.
    pub host: HostLimits,
    /// Reserve address space for a linear memory only as it grows, with a small guard,
    /// instead of wasmtime's 4 GiB reservation per memory (bounds then checked in code,
    /// slower per access): for the simulator, whose nodes each have their own instance.
    pub compact_memories: bool,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            fuel: 1_000_000,
            max_exec_time: Some(Duration::from_millis(5)),
            max_memory_bytes: 4 << 20,
            max_table_elements: 1_000,
            max_module_bytes: 1 << 20,
            max_wasm_stack: 256 << 10,
            max_modules: 256,
            max_compiled_bytes: 256 << 20,
            max_instances: 32,
            host: HostLimits::default(),
            compact_memories: false,
        }
    }
}

/// What running a type without a compiled module reports.
const NOT_LOADED: RunReport = RunReport {
    result: RunResult::NotLoaded,
    fuel_used: 0,
    nanos: None,
};

/// Fuel for the one-off `ants_abi_version` probe at load time.
const PROBE_FUEL: u64 = 10_000;

/// Fuel that one millisecond of plain wasm burns on the development machine
/// (`bench/RESULTS.md`, `fuel_rate/wasm_arith`): an execution stopped by the deadline is
/// reported as having used `max_exec_time` worth of fuel at this rate (at least its budget),
/// so per-peer fuel budgets charge it for the time it took.
pub const FUEL_PER_MS: u64 = 4_000_000;

/// Validates and compiles modules. Cloning shares the engine and its epoch ticker.
#[derive(Clone)]
pub struct Compiler {
    engine: Engine,
    config: ExecutorConfig,
    ticker: Option<Arc<Ticker>>,
}

impl std::fmt::Debug for Compiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiler")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A validated, compiled module ready to be installed in a [`WasmExecutor`].
#[derive(Clone)]
pub struct CompiledModule {
    /// SHA-256 of the module bytes.
    pub capsule_type: CapsuleType,
    /// Size of the module bytes.
    pub size: usize,
    /// Size of its native code.
    pub code_bytes: usize,
    module: Module,
}

impl std::fmt::Debug for CompiledModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledModule")
            .field("capsule_type", &self.capsule_type)
            .field("size", &self.size)
            .field("code_bytes", &self.code_bytes)
            .finish_non_exhaustive()
    }
}

impl Compiler {
    /// An engine configured for capsules: fuel metering on, epoch interruption when a
    /// deadline is set (its ticker thread starts here), no 64-bit or multiple memories
    /// (threads are not compiled in), a bounded native stack, and single-threaded
    /// compilation (a compile must not take every core from forwarding).
    pub fn new(config: ExecutorConfig) -> Result<Compiler, wasmtime::Error> {
        let mut c = wasmtime::Config::new();
        c.consume_fuel(true)
            .epoch_interruption(config.max_exec_time.is_some())
            .max_wasm_stack(config.max_wasm_stack)
            .wasm_memory64(false)
            .wasm_multi_memory(false)
            .parallel_compilation(false);
        if config.compact_memories {
            c.memory_reservation(0)
                .memory_reservation_for_growth(0)
                .memory_guard_size(0);
        }
        let engine = Engine::new(&c)?;
        let ticker = match config.max_exec_time {
            Some(t) => Some(Arc::new(Ticker::start(&engine, t)?)),
            None => None,
        };
        Ok(Compiler {
            engine,
            config,
            ticker,
        })
    }

    /// The limits in force.
    pub fn config(&self) -> &ExecutorConfig {
        &self.config
    }

    fn wrap(&self, code: &[u8], module: Module) -> Result<CompiledModule, LoadError> {
        let image = module.image_range();
        let code_bytes = (image.end as usize).saturating_sub(image.start as usize);
        if code_bytes > self.config.max_compiled_bytes {
            return Err(LoadError::TooLarge {
                size: code_bytes,
                max: self.config.max_compiled_bytes,
            });
        }
        Ok(CompiledModule {
            capsule_type: CapsuleType(Sha256::digest(code).into()),
            size: code.len(),
            code_bytes,
            module,
        })
    }

    /// Size, ABI and shape checks on the bytes alone (no compile).
    pub fn check(&self, code: &[u8]) -> Result<(), LoadError> {
        if code.len() > self.config.max_module_bytes {
            return Err(LoadError::TooLarge {
                size: code.len(),
                max: self.config.max_module_bytes,
            });
        }
        validate::check_module(code, &self.config)
    }

    /// Check size, ABI and shape, then compile. Does not instantiate.
    pub fn compile(&self, code: &[u8]) -> Result<CompiledModule, LoadError> {
        self.check(code)?;
        let module = Module::from_binary(&self.engine, code)
            .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        self.wrap(code, module)
    }

    /// The compiled form of `module`, to persist next to its wasm so a restart does not
    /// recompile (see [`Compiler::deserialize`]).
    pub fn serialize(&self, module: &CompiledModule) -> Result<Vec<u8>, wasmtime::Error> {
        module.module.serialize()
    }

    /// Restore a module compiled earlier by [`Compiler::serialize`] for the wasm bytes
    /// `code`, re-checking the bytes against the ABI and the current limits.
    ///
    /// # Safety
    /// `compiled` is native code that will run in this process. It must come from
    /// [`Compiler::serialize`] of this same binary (wasmtime refuses artifacts of other
    /// versions or engine settings, but cannot tell a forged artifact from a real one): keep
    /// the code cache directory private to the node.
    pub unsafe fn deserialize(
        &self,
        code: &[u8],
        compiled: &[u8],
    ) -> Result<CompiledModule, LoadError> {
        self.check(code)?;
        // SAFETY: the caller guarantees `compiled` was produced by `serialize` of this
        // binary (see above); wasmtime checks the version and engine configuration.
        let module = unsafe { Module::deserialize(&self.engine, compiled) }
            .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        self.wrap(code, module)
    }
}

/// A `memory.grow` or `table.grow` past the node's limit; the trap it causes is classified by
/// this type, not by its message.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("grown past the node's per-instance limit")]
struct GrowDenied;

/// The per-instance memory and table limits; also tracks the memory's size, so host calls
/// can size their fees without asking the store.
struct Limiter {
    memory_bytes: usize,
    table_elements: usize,
    /// The linear memory's current size in bytes.
    size: usize,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            return Err(GrowDenied.into());
        }
        self.size = desired;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            return Err(GrowDenied.into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }
}

/// Data of every capsule store.
struct StoreData {
    limiter: Limiter,
    memory: Option<Memory>,
    /// `true` while [`WasmExecutor::run`] has lent `exec` to the instance.
    active: bool,
    /// Host-call fees charged but not yet taken from the store's fuel (see
    /// `host_fns::charge`).
    fee_due: u64,
    /// The deadline state of the execution in progress.
    watch: Watch,
    /// The execution in progress while a call runs (swapped in by [`WasmExecutor::run`]);
    /// an empty one otherwise.
    exec: Box<Execution>,
    /// Scratch space for copying keys out of guest memory (bounded by the key-length limit).
    scratch: Vec<u8>,
}

struct LiveInstance {
    store: Store<StoreData>,
    entry: TypedFunc<(), i32>,
}

struct LoadedModule {
    pre: InstancePre<StoreData>,
    code_bytes: usize,
}

/// Runs capsules; implements [`Executor`].
pub struct WasmExecutor {
    compiler: Compiler,
    linker: Arc<Linker<StoreData>>,
    modules: LruCache<CapsuleType, LoadedModule, BuildHasherDefault<TypeHasher>>,
    /// Native code bytes of `modules`.
    code_bytes: usize,
    /// Live instances by (owner, type): see [`Executor::set_owner`].
    instances: LruCache<(u32, CapsuleType), LiveInstance, BuildHasherDefault<TypeHasher>>,
    /// The owner of the instances the next runs use.
    owner: u32,
    counters: ExecutorCounters,
    /// Runs so far (for sampling their time).
    runs: u64,
}

/// What the executor did since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, derive_more::AddAssign)]
pub struct ExecutorCounters {
    /// Instances created (the first, after a trap, after eviction).
    pub instantiations: u64,
    /// Live instances dropped to stay within `max_instances`.
    pub instances_evicted: u64,
    /// Compiled modules dropped to stay within `max_modules` / `max_compiled_bytes`.
    pub modules_evicted: u64,
    /// Executions stopped by the wall-clock deadline.
    pub deadline_traps: u64,
}

/// Hashes a [`CapsuleType`] by its first 8 bytes. Keys are inserted only for modules that
/// loaded, and a module's type is the SHA-256 of its bytes, which no sender can steer into
/// collisions; lookups of arbitrary types cost one probe. Saves a SipHash of 32 bytes per
/// capsule on the forwarding path.
#[derive(Default)]
struct TypeHasher(u64);

impl Hasher for TypeHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
    }
}

impl std::fmt::Debug for WasmExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmExecutor")
            .field("modules", &self.modules.len())
            .field("instances", &self.instances.len())
            .field("code_bytes", &self.code_bytes)
            .field("config", &self.compiler.config)
            .finish_non_exhaustive()
    }
}

fn capacity(n: usize) -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::new(n.max(1)).unwrap_or(std::num::NonZeroUsize::MIN)
}

impl WasmExecutor {
    /// An executor sharing `compiler`'s engine.
    pub fn new(compiler: Compiler) -> Result<WasmExecutor, wasmtime::Error> {
        let mut linker = Linker::new(&compiler.engine);
        host_fns::link(&mut linker)?;
        let c = compiler.config;
        Ok(WasmExecutor {
            compiler,
            linker: Arc::new(linker),
            modules: LruCache::with_hasher(capacity(c.max_modules), BuildHasherDefault::default()),
            code_bytes: 0,
            instances: LruCache::with_hasher(
                capacity(c.max_instances),
                BuildHasherDefault::default(),
            ),
            owner: 0,
            counters: ExecutorCounters::default(),
            runs: 0,
        })
    }

    /// Keep at most `n` live instances from now on (the least recently used beyond it are
    /// dropped, counted as evictions are).
    pub fn set_max_instances(&mut self, n: usize) {
        let before = self.instances.len();
        self.instances.resize(capacity(n));
        self.counters.instances_evicted += (before - self.instances.len()) as u64;
    }

    /// An executor with its own engine and the given limits.
    pub fn with_config(config: ExecutorConfig) -> Result<WasmExecutor, wasmtime::Error> {
        WasmExecutor::new(Compiler::new(config)?)
    }

    /// The compiler (clone it to compile on another thread).
    pub fn compiler(&self) -> &Compiler {
        &self.compiler
    }

    /// Number of modules loaded.
    pub fn len(&self) -> usize {
        self.modules.len()
    }

    /// `true` if no module is loaded.
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// Live instances.
    pub fn live_instances(&self) -> usize {
        self.instances.len()
    }

    /// Native code bytes of the loaded modules.
    pub fn code_bytes(&self) -> usize {
        self.code_bytes
    }

    /// What the executor did so far.
    pub fn counters(&self) -> ExecutorCounters {
        self.counters
    }

    /// The types of the modules loaded.
    pub fn loaded_types(&self) -> Vec<CapsuleType> {
        self.modules.iter().map(|(ty, _)| *ty).collect()
    }

    /// Drop a module (and its instance).
    pub fn unload(&mut self, ty: &CapsuleType) -> bool {
        self.drop_instances(ty);
        match self.modules.pop(ty) {
            Some(m) => {
                self.code_bytes -= m.code_bytes;
                true
            }
            None => false,
        }
    }

    /// Install a compiled module: link it, instantiate it once within the limits and check
    /// its ABI version. The instance is kept for the first capsule. Least recently used
    /// modules are dropped to stay within `max_modules` and `max_compiled_bytes`.
    pub fn install(&mut self, compiled: CompiledModule) -> Result<CapsuleType, LoadError> {
        let pre = self
            .linker
            .instantiate_pre(&compiled.module)
            .map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
        let (mut live, instance) = instantiate(&self.compiler, &pre)?;
        self.counters.instantiations += 1;
        let probe = live
            .store
            .set_fuel(PROBE_FUEL)
            .and_then(|()| {
                if self.compiler.ticker.is_some() {
                    live.store.set_epoch_deadline(deadline::TICKS);
                }
                instance
                    .get_typed_func::<(), i32>(&mut live.store, ABI_VERSION_EXPORT)?
                    .call(&mut live.store, ())
            })
            .map_err(|e| LoadError::Instantiate(format!("{ABI_VERSION_EXPORT} failed: {e:#}")))?;
        if probe != ABI_VERSION {
            return Err(LoadError::AbiVersion {
                found: i64::from(probe),
                expected: ABI_VERSION,
            });
        }
        let ty = compiled.capsule_type;
        self.unload(&ty);
        while !self.modules.is_empty()
            && (self.modules.len() >= self.compiler.config.max_modules
                || self.code_bytes + compiled.code_bytes > self.compiler.config.max_compiled_bytes)
        {
            self.evict_module();
        }
        self.code_bytes += compiled.code_bytes;
        self.modules.put(
            ty,
            LoadedModule {
                pre,
                code_bytes: compiled.code_bytes,
            },
        );
        self.keep_instance(ty, live);
        Ok(ty)
    }

    /// Drop the least recently used module, preferring one without a live instance: a
    /// module whose capsules run keeps its instance, and the fast path of `run` touches only
    /// the instance table, so a live instance is what "recently used" looks like.
    fn evict_module(&mut self) {
        let cold = self
            .modules
            .iter()
            .rev()
            .map(|(ty, _)| *ty)
            .find(|ty| !self.instances.iter().any(|((_, t), _)| t == ty));
        let victim = match cold {
            Some(ty) => self.modules.pop_entry(&ty),
            None => self.modules.pop_lru(),
        };
        if let Some((old, m)) = victim {
            self.drop_instances(&old);
            self.code_bytes -= m.code_bytes;
            self.counters.modules_evicted += 1;
        }
    }

    fn keep_instance(&mut self, ty: CapsuleType, live: LiveInstance) {
        let key = (self.owner, ty);
        if let Some((old, _)) = self.instances.push(key, live)
            && old != key
        {
            self.counters.instances_evicted += 1;
        }
    }

    /// Drop every owner's instance of `ty`.
    fn drop_instances(&mut self, ty: &CapsuleType) {
        let keys: Vec<(u32, CapsuleType)> = self
            .instances
            .iter()
            .filter(|((_, t), _)| t == ty)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.instances.pop(&k);
        }
    }
}

fn classify(err: &wasmtime::Error) -> TrapReason {
    if err.downcast_ref::<GrowDenied>().is_some() {
        return TrapReason::ResourceLimit;
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => TrapReason::OutOfFuel,
        Some(Trap::Interrupt) => TrapReason::Deadline,
        Some(Trap::StackOverflow) => TrapReason::StackOverflow,
        Some(Trap::MemoryOutOfBounds) => TrapReason::MemoryOutOfBounds,
        Some(Trap::UnreachableCodeReached) => TrapReason::Unreachable,
        Some(other) => TrapReason::Other(other.to_string()),
        None => TrapReason::Other(format!("{err:#}")),
    }
}

/// Run the entry of `live` on `exec` with `fuel` and the deadline armed: the call's outcome
/// and the fuel it used (unsettled host-call fees included), or why the fuel could not be set.
fn call(
    live: &mut LiveInstance,
    exec: &mut Box<Execution>,
    fuel: u64,
    ticker: Option<&Ticker>,
) -> Result<(wasmtime::Result<i32>, u64), String> {
    live.store.set_fuel(fuel).map_err(|e| format!("{e:#}"))?;
    if let Some(t) = ticker {
        live.store.set_epoch_deadline(deadline::TICKS);
        t.note_run();
    }
    let data = live.store.data_mut();
    std::mem::swap(exec, &mut data.exec);
    data.active = true;
    data.fee_due = 0;
    data.watch = Watch::default();
    let outcome = live.entry.call(&mut live.store, ());
    let data = live.store.data_mut();
    data.active = false;
    let unsettled = std::mem::take(&mut data.fee_due);
    std::mem::swap(exec, &mut data.exec);
    let fuel_used = fuel
        .saturating_sub(live.store.get_fuel().unwrap_or(0))
        .saturating_add(unsettled);
    Ok((outcome, fuel_used))
}

fn instantiate(
    compiler: &Compiler,
    pre: &InstancePre<StoreData>,
) -> Result<(LiveInstance, Instance), LoadError> {
    let cfg = &compiler.config;
    let mut store = Store::new(
        &compiler.engine,
        StoreData {
            limiter: Limiter {
                memory_bytes: cfg.max_memory_bytes,
                table_elements: cfg.max_table_elements,
                size: 0,
            },
            memory: None,
            active: false,
            fee_due: 0,
            watch: Watch::default(),
            exec: Box::default(),
            scratch: Vec::new(),
        },
    );
    store.limiter(|s| &mut s.limiter);
    if let Some(max) = cfg.max_exec_time {
        let interval = max / 2;
        store.epoch_deadline_callback(move |mut cx| {
            Ok(if cx.data_mut().watch.expired(interval) {
                wasmtime::UpdateDeadline::Interrupt
            } else {
                wasmtime::UpdateDeadline::Continue(deadline::TICKS)
            })
        });
    }
    // A start function runs during instantiation: give it the probe budget and a deadline.
    store
        .set_fuel(PROBE_FUEL)
        .map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
    if compiler.ticker.is_some() {
        store.set_epoch_deadline(deadline::TICKS);
    }
    let instance = pre
        .instantiate(&mut store)
        .map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
    let memory = instance.get_memory(&mut store, ants_wire::abi::MEMORY_EXPORT);
    store.data_mut().limiter.size = memory.map_or(0, |m| m.data_size(&store));
    store.data_mut().memory = memory;
    let entry = instance
        .get_typed_func::<(), i32>(&mut store, ENTRY_EXPORT)
        .map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
    Ok((LiveInstance { store, entry }, instance))
}

impl Executor for WasmExecutor {
    fn load(&mut self, code: &[u8]) -> Result<CapsuleType, LoadError> {
        let compiled = self.compiler.compile(code)?;
        self.install(compiled)
    }

    fn is_loaded(&self, ty: &CapsuleType) -> bool {
        self.modules.contains(ty)
    }

    fn set_owner(&mut self, owner: u32) {
        self.owner = owner;
    }

    fn run(&mut self, exec: &mut Box<Execution>) -> RunReport {
        // One run in TIME_SAMPLE is timed: two clock reads cost a tenth of a short run or more.
        // A traced capsule's run is always timed (its trace reports the time).
        self.runs = self.runs.wrapping_add(1);
        if !self.runs.is_multiple_of(TIME_SAMPLE) && exec.capsule.trace.is_none() {
            return self.run_untimed(exec);
        }
        let t0 = std::time::Instant::now();
        let mut report = self.run_untimed(exec);
        report.nanos = Some(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX));
        report
    }
}

/// Every how many runs the executor measures one's wall time (for the execution-time
/// histograms).
pub const TIME_SAMPLE: u64 = 64;

impl WasmExecutor {
    #[inline]
    fn run_untimed(&mut self, exec: &mut Box<Execution>) -> RunReport {
        let fuel = self.compiler.config.fuel;
        let ty = exec.capsule.capsule_type;
        // Fast path: one lookup. A module with a live instance is hot; its recency lives in
        // the instance table (see `evict_module`).
        let key = (self.owner, ty);
        let called = match self.instances.get_mut(&key) {
            Some(live) => call(live, exec, fuel, self.compiler.ticker.as_deref()),
            None => {
                let Some(module) = self.modules.get(&ty) else {
                    return NOT_LOADED;
                };
                let live = match instantiate(&self.compiler, &module.pre) {
                    Ok((live, _)) => live,
                    Err(e) => {
                        return RunReport {
                            result: RunResult::Trapped(TrapReason::Other(e.to_string())),
                            fuel_used: 0,
                            nanos: None,
                        };
                    }
                };
                self.counters.instantiations += 1;
                // An instance pushed out of a full table is rebuilt when its type runs again.
                self.keep_instance(ty, live);
                let Some(live) = self.instances.get_mut(&key) else {
                    return NOT_LOADED;
                };
                call(live, exec, fuel, self.compiler.ticker.as_deref())
            }
        };
        let (outcome, fuel_used) = match called {
            Ok(done) => done,
            Err(e) => {
                return RunReport {
                    result: RunResult::Trapped(TrapReason::Other(e)),
                    fuel_used: 0,
                    nanos: None,
                };
            }
        };
        match outcome {
            Ok(code) => RunReport {
                result: RunResult::Returned(code),
                fuel_used,
                nanos: None,
            },
            Err(e) => {
                self.instances.pop(&key);
                let reason = classify(&e);
                // Time is what a deadline trap used: charge that time's worth of fuel.
                let fuel_used = match (
                    reason == TrapReason::Deadline,
                    self.compiler.config.max_exec_time,
                ) {
                    (true, Some(max)) => {
                        self.counters.deadline_traps += 1;
                        let worth = max.as_micros() as u64 * FUEL_PER_MS / 1000;
                        worth.max(fuel)
                    }
                    _ => fuel_used,
                };
                RunReport {
                    result: RunResult::Trapped(reason),
                    fuel_used,
                    nanos: None,
                }
            }
        }
    }
}
