//! The wasmtime executor: runs capsule modules in fuel-limited sandboxes.
//!
//! - [`Compiler`] validates a module against ABI v1 and compiles it. It is `Send + Sync`
//!   and cheap to clone, so compilation can happen off the forwarding thread.
//! - [`WasmExecutor`] holds compiled modules (LRU, bounded count) and, per module, one live
//!   instance reused for every capsule of that type with its fuel reset — no instantiation
//!   per packet. A trapped instance is dropped and rebuilt from its `InstancePre` on the next
//!   capsule.
//! - `host_fns` links the host functions of ABI v1; `validate` checks imports and exports.
//!
//! One `Engine` per process is the intent: build one [`Compiler`] and clone it.

mod host_fns;
mod validate;

use std::hash::{BuildHasherDefault, Hasher};
use std::ptr::NonNull;
use std::sync::Arc;

use ants_core::{Execution, Executor, HostLimits, LoadError, RunReport, RunResult, TrapReason};
use ants_wire::CapsuleType;
use ants_wire::abi::{ABI_VERSION, ABI_VERSION_EXPORT, ENTRY_EXPORT};
use lru::LruCache;
use sha2::{Digest, Sha256};
use wasmtime::{
    Engine, Instance, InstancePre, Linker, Memory, Module, Store, StoreLimits, StoreLimitsBuilder,
    Trap, TypedFunc,
};

/// Limits of the sandbox. Every one is enforced; every hit is an error or trap, never a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutorConfig {
    /// Fuel per capsule execution (about one unit per wasm instruction).
    pub fuel: u64,
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
    /// Per-execution limits on host calls.
    pub host: HostLimits,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            fuel: 1_000_000,
            max_memory_bytes: 4 << 20,
            max_table_elements: 1_000,
            max_module_bytes: 1 << 20,
            max_wasm_stack: 256 << 10,
            max_modules: 256,
            host: HostLimits::default(),
        }
    }
}

/// Fuel for the one-off `ants_abi_version` probe at load time.
const PROBE_FUEL: u64 = 10_000;

/// Validates and compiles modules. Cloning shares the engine.
#[derive(Clone)]
pub struct Compiler {
    engine: Engine,
    config: ExecutorConfig,
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
    module: Module,
}

impl std::fmt::Debug for CompiledModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledModule")
            .field("capsule_type", &self.capsule_type)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Compiler {
    /// An engine configured for capsules: fuel metering on, no 64-bit or multiple memories (threads
    /// are not compiled in), a bounded native stack.
    pub fn new(config: ExecutorConfig) -> Result<Compiler, wasmtime::Error> {
        let mut c = wasmtime::Config::new();
        c.consume_fuel(true)
            .max_wasm_stack(config.max_wasm_stack)
            .wasm_memory64(false)
            .wasm_multi_memory(false);
        Ok(Compiler {
            engine: Engine::new(&c)?,
            config,
        })
    }

    /// The limits in force.
    pub fn config(&self) -> &ExecutorConfig {
        &self.config
    }

    /// Validate `module` (compiled from `code`) against ABI v1 and wrap it.
    fn checked(&self, code: &[u8], module: Module) -> Result<CompiledModule, LoadError> {
        validate::check_module(&module, &self.config)?;
        Ok(CompiledModule {
            capsule_type: CapsuleType(Sha256::digest(code).into()),
            size: code.len(),
            module,
        })
    }

    fn check_size(&self, code: &[u8]) -> Result<(), LoadError> {
        if code.len() > self.config.max_module_bytes {
            return Err(LoadError::TooLarge {
                size: code.len(),
                max: self.config.max_module_bytes,
            });
        }
        Ok(())
    }

    /// Check size, hash, validate and compile. Does not instantiate.
    pub fn compile(&self, code: &[u8]) -> Result<CompiledModule, LoadError> {
        self.check_size(code)?;
        let module = Module::from_binary(&self.engine, code)
            .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        self.checked(code, module)
    }
}

impl Compiler {
    /// The compiled form of `module`, to persist next to its wasm so a restart does not
    /// recompile (see [`Compiler::deserialize`]).
    pub fn serialize(&self, module: &CompiledModule) -> Result<Vec<u8>, wasmtime::Error> {
        module.module.serialize()
    }

    /// Restore a module compiled earlier by [`Compiler::serialize`] for the wasm bytes
    /// `code`, re-checking it against ABI v1 and the current limits.
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
        self.check_size(code)?;
        // SAFETY: the caller guarantees `compiled` was produced by `serialize` of this
        // binary (see above); wasmtime checks the version and engine configuration.
        let module = unsafe { Module::deserialize(&self.engine, compiled) }
            .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        self.checked(code, module)
    }
}

/// Data of every capsule store.
struct ExecState {
    limits: StoreLimits,
    memory: Option<Memory>,
    /// The execution in progress; `Some` only for the duration of [`WasmExecutor::run`].
    exec: Option<NonNull<Execution<'static>>>,
    /// Scratch space for copying keys out of guest memory (bounded by the key-length limit).
    scratch: Vec<u8>,
}

// SAFETY: `exec` is only `Some` while `WasmExecutor::run` is on the stack of the thread that
// owns the store, and is reset to `None` before `run` returns; the rest of the state is
// plain owned data. Moving a store between threads between executions is therefore sound.
unsafe impl Send for ExecState {}

struct LiveInstance {
    store: Store<ExecState>,
    instance: Instance,
    entry: TypedFunc<(), i32>,
}

struct LoadedModule {
    pre: InstancePre<ExecState>,
    live: Option<LiveInstance>,
}

/// Runs capsules; implements [`Executor`].
pub struct WasmExecutor {
    compiler: Compiler,
    linker: Arc<Linker<ExecState>>,
    modules: LruCache<CapsuleType, LoadedModule, BuildHasherDefault<TypeHasher>>,
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
            .field("config", &self.compiler.config)
            .finish_non_exhaustive()
    }
}

impl WasmExecutor {
    /// An executor sharing `compiler`'s engine.
    pub fn new(compiler: Compiler) -> Result<WasmExecutor, wasmtime::Error> {
        let mut linker = Linker::new(&compiler.engine);
        host_fns::link(&mut linker)?;
        let cap = std::num::NonZeroUsize::new(compiler.config.max_modules.max(1))
            .unwrap_or(std::num::NonZeroUsize::MIN);
        Ok(WasmExecutor {
            compiler,
            linker: Arc::new(linker),
            modules: LruCache::with_hasher(cap, BuildHasherDefault::default()),
        })
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

    /// Drop a module.
    pub fn unload(&mut self, ty: &CapsuleType) -> bool {
        self.modules.pop(ty).is_some()
    }

    /// Install a compiled module: link it, instantiate it once within the limits and check
    /// its ABI version. The instance is kept for the first capsule.
    pub fn install(&mut self, compiled: CompiledModule) -> Result<CapsuleType, LoadError> {
        let pre = self
            .linker
            .instantiate_pre(&compiled.module)
            .map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
        let mut live = instantiate(&self.compiler, &pre)?;
        let probe = live
            .store
            .set_fuel(PROBE_FUEL)
            .and_then(|()| {
                live.instance
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
        self.modules.put(
            ty,
            LoadedModule {
                pre,
                live: Some(live),
            },
        );
        Ok(ty)
    }
}

fn classify(err: &wasmtime::Error) -> TrapReason {
    match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => TrapReason::OutOfFuel,
        Some(Trap::StackOverflow) => TrapReason::StackOverflow,
        Some(Trap::MemoryOutOfBounds) => TrapReason::MemoryOutOfBounds,
        Some(Trap::UnreachableCodeReached) => TrapReason::Unreachable,
        Some(other) => TrapReason::Other(other.to_string()),
        None => {
            let msg = format!("{err:#}");
            if msg.contains("forcing trap when growing") {
                TrapReason::ResourceLimit
            } else {
                TrapReason::Other(msg)
            }
        }
    }
}

fn instantiate(
    compiler: &Compiler,
    pre: &InstancePre<ExecState>,
) -> Result<LiveInstance, LoadError> {
    let cfg = &compiler.config;
    let limits = StoreLimitsBuilder::new()
        .memory_size(cfg.max_memory_bytes)
        .table_elements(cfg.max_table_elements)
        .instances(1)
        .tables(1)
        .memories(1)
        .trap_on_grow_failure(true)
        .build();
    let mut store = Store::new(
        &compiler.engine,
        ExecState {
            limits,
            memory: None,
            exec: None,
            scratch: Vec::new(),
        },
    );
    store.limiter(|s| &mut s.limits);
    // A start function runs during instantiation: give it the probe budget.
    store
        .set_fuel(PROBE_FUEL)
        .map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
    let instance = pre
        .instantiate(&mut store)
        .map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
    let memory = instance.get_memory(&mut store, ants_wire::abi::MEMORY_EXPORT);
    store.data_mut().memory = memory;
    let entry = instance
        .get_typed_func::<(), i32>(&mut store, ENTRY_EXPORT)
        .map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
    Ok(LiveInstance {
        store,
        instance,
        entry,
    })
}

impl Executor for WasmExecutor {
    fn load(&mut self, code: &[u8]) -> Result<CapsuleType, LoadError> {
        let compiled = self.compiler.compile(code)?;
        self.install(compiled)
    }

    fn is_loaded(&self, ty: &CapsuleType) -> bool {
        self.modules.contains(ty)
    }

    fn run(&mut self, exec: &mut Execution<'_>) -> RunReport {
        exec.effects.clear();
        let fuel = self.compiler.config.fuel;
        let Some(module) = self.modules.get_mut(&exec.capsule.capsule_type) else {
            return RunReport {
                result: RunResult::NotLoaded,
                fuel_used: 0,
            };
        };
        if module.live.is_none() {
            match instantiate(&self.compiler, &module.pre) {
                Ok(live) => module.live = Some(live),
                Err(e) => {
                    return RunReport {
                        result: RunResult::Trapped(TrapReason::Other(e.to_string())),
                        fuel_used: 0,
                    };
                }
            }
        }
        let Some(live) = module.live.as_mut() else {
            return RunReport {
                result: RunResult::NotLoaded,
                fuel_used: 0,
            };
        };
        if let Err(e) = live.store.set_fuel(fuel) {
            return RunReport {
                result: RunResult::Trapped(TrapReason::Other(format!("{e:#}"))),
                fuel_used: 0,
            };
        }
        live.store.data_mut().exec = Some(NonNull::from(&mut *exec).cast());
        let outcome = live.entry.call(&mut live.store, ());
        live.store.data_mut().exec = None;
        let fuel_used = fuel.saturating_sub(live.store.get_fuel().unwrap_or(0));
        let result = match outcome {
            Ok(code) => RunResult::Returned(code),
            Err(e) => {
                module.live = None;
                exec.effects.discard_outputs();
                RunResult::Trapped(classify(&e))
            }
        };
        RunReport { result, fuel_used }
    }
}
