//! One executor for every simulated node: [`SharedExecutor`] and the per-node view
//! [`NodeView`].
//!
//! A node's state is its `ants_core::Node` (routes, soft-store, code cache, loader), the
//! set of types it has "installed", and — in the executor, keyed by the node's index
//! (`Executor::set_owner`) — its own wasm instances, unless the scenario shares one per
//! type (`[nodes] instances = "shared"`). The real executor (any
//! [`Executor`]; `ants sim` passes the wasmtime one) compiles each module once for the
//! whole simulation and runs every node's capsules.
//!
//! The node asks its executor `is_loaded(ty)` to decide whether to run a capsule or demand
//! load its code. A shared executor would answer "yes" everywhere as soon as one node had
//! compiled the type, and demand loading would never happen; so each node sees the shared
//! executor through a [`NodeView`] whose `is_loaded` answers from the node's own installed
//! set, and whose `run` delegates. When a node emits `Event::Compile`, the simulator asks
//! [`SharedExecutor::compile`] (which compiles only the first time a type is seen and
//! caches the result) and installs the type for that node after the simulated compile
//! delay.
//!
//! Types are interned into a small table; a node's installed set is a bitmask over it.

use std::collections::BTreeMap;
use std::sync::Arc;

use ants_core::{Execution, Executor, LoadError, RunReport, RunResult};
use ants_wire::CapsuleType;

/// One known type: its module bytes (shared by every node's code cache) and the outcome of
/// compiling it.
#[derive(Debug)]
pub struct TypeEntry {
    /// The type.
    pub ty: CapsuleType,
    /// The module, once some node had it verified.
    pub code: Option<Arc<[u8]>>,
    /// `None` until compiled.
    pub compiled: Option<Result<(), LoadError>>,
}

/// The simulation's executor and its type table.
#[derive(Debug)]
pub struct SharedExecutor<E> {
    exec: E,
    types: Vec<TypeEntry>,
    index: BTreeMap<CapsuleType, u32>,
    /// Modules compiled (cache misses).
    pub compilations: u64,
    /// Each node runs on its own instance state (`Executor::set_owner` with its index).
    per_node: bool,
}

impl<E: Executor> SharedExecutor<E> {
    /// Wrap `exec`; with `per_node`, each node's runs use its own instance state.
    pub fn new(exec: E, per_node: bool) -> Self {
        SharedExecutor {
            exec,
            types: Vec::new(),
            index: BTreeMap::new(),
            compilations: 0,
            per_node,
        }
    }

    /// The table index of `ty`, adding it if new.
    pub fn intern(&mut self, ty: CapsuleType) -> u32 {
        if let Some(&i) = self.index.get(&ty) {
            return i;
        }
        let i = self.types.len() as u32;
        self.types.push(TypeEntry {
            ty,
            code: None,
            compiled: None,
        });
        self.index.insert(ty, i);
        i
    }

    /// The table index of `ty`, if known.
    pub fn lookup(&self, ty: &CapsuleType) -> Option<u32> {
        // Few types: a linear scan beats the tree for the common case.
        if self.types.len() <= 8 {
            return self
                .types
                .iter()
                .position(|e| e.ty == *ty)
                .map(|i| i as u32);
        }
        self.index.get(ty).copied()
    }

    /// The entry of index `i`.
    pub fn entry(&self, i: u32) -> Option<&TypeEntry> {
        self.types.get(i as usize)
    }

    /// Every known type, in table order.
    pub fn entries(&self) -> &[TypeEntry] {
        &self.types
    }

    /// Compile `code` (verified to be `ty` by the node) unless already done; returns the
    /// type's index, the shared copy of its bytes and the outcome.
    pub fn compile(
        &mut self,
        ty: CapsuleType,
        code: &Arc<[u8]>,
    ) -> (u32, Arc<[u8]>, Result<(), LoadError>) {
        let i = self.intern(ty);
        let e = &mut self.types[i as usize];
        let shared = e.code.get_or_insert_with(|| code.clone()).clone();
        if e.compiled.is_none() {
            self.compilations += 1;
            let r = match self.exec.load(&shared) {
                Ok(t) if t == ty => Ok(()),
                Ok(t) => Err(LoadError::Invalid(format!(
                    "the executor loaded it as type {t}, not {ty}"
                ))),
                Err(e) => Err(e),
            };
            self.types[i as usize].compiled = Some(r);
        }
        let r = self.types[i as usize]
            .compiled
            .clone()
            .unwrap_or(Err(LoadError::Invalid("not compiled".into())));
        (i, shared, r)
    }

    /// Take over `e` from another partition's table: its index here (added if new), with
    /// its bytes and compile outcome where this table has none yet. Nothing is compiled.
    pub(crate) fn adopt(&mut self, e: &TypeEntry) -> u32 {
        let i = self.intern(e.ty);
        let mine = &mut self.types[i as usize];
        if mine.code.is_none() {
            mine.code.clone_from(&e.code);
        }
        if mine.compiled.is_none() {
            mine.compiled.clone_from(&e.compiled);
        }
        i
    }

    /// The executor itself.
    pub fn inner(&self) -> &E {
        &self.exec
    }

    /// The executor itself, to change its limits before a run.
    pub fn inner_mut(&mut self) -> &mut E {
        &mut self.exec
    }

    /// Run on behalf of node `node`, which has `ty` installed, on its own instance state.
    /// If the executor evicted the module (bounded executors do), it is loaded again from
    /// the shared bytes.
    fn run(&mut self, node: u32, e: &mut Box<Execution>) -> RunReport {
        self.exec.set_owner(if self.per_node { node } else { 0 });
        let ty = e.capsule.capsule_type;
        if !self.exec.is_loaded(&ty)
            && let Some(code) = self
                .lookup(&ty)
                .and_then(|i| self.types[i as usize].code.clone())
        {
            let _ = self.exec.load(&code);
        }
        self.exec.run(e)
    }
}

/// Types installed on one node: a bitmask over the first 64 type indices, a sorted list
/// beyond.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeSet {
    low: u64,
    high: Vec<u32>,
}

impl TypeSet {
    /// Whether index `i` is in the set.
    pub fn contains(&self, i: u32) -> bool {
        if i < 64 {
            self.low & (1 << i) != 0
        } else {
            self.high.binary_search(&i).is_ok()
        }
    }

    /// Add index `i`.
    pub fn insert(&mut self, i: u32) {
        if i < 64 {
            self.low |= 1 << i;
        } else if let Err(at) = self.high.binary_search(&i) {
            self.high.insert(at, i);
        }
    }

    /// Remove everything.
    pub fn clear(&mut self) {
        self.low = 0;
        self.high = Vec::new();
    }

    /// Indices in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..64)
            .filter(|i| self.low & (1u64 << i) != 0)
            .chain(self.high.iter().copied())
    }
}

/// What one node sees of the shared executor: its own installed types.
#[derive(Debug)]
pub struct NodeView<'a, E> {
    /// The shared executor.
    pub shared: &'a mut SharedExecutor<E>,
    /// The node's index: its runs use its own instance state (`Executor::set_owner`).
    pub node: u32,
    /// This node's installed types.
    pub installed: &'a TypeSet,
}

impl<E: Executor> Executor for NodeView<'_, E> {
    /// Nodes do not call `load` (they emit `Event::Compile`); compiles into the shared
    /// executor without installing for this node.
    fn load(&mut self, code: &[u8]) -> Result<CapsuleType, LoadError> {
        let ty = CapsuleType(<sha2::Sha256 as sha2::Digest>::digest(code).into());
        let (_, _, r) = self.shared.compile(ty, &Arc::from(code));
        r.map(|()| ty)
    }

    fn is_loaded(&self, ty: &CapsuleType) -> bool {
        self.shared
            .lookup(ty)
            .is_some_and(|i| self.installed.contains(i))
    }

    fn run(&mut self, e: &mut Box<Execution>) -> RunReport {
        if !self.is_loaded(&e.capsule.capsule_type) {
            return RunReport {
                result: RunResult::NotLoaded,
                fuel_used: 0,
                nanos: None,
            };
        }
        self.shared.run(self.node, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_sets_hold_low_and_high_indices() {
        let mut s = TypeSet::default();
        for i in [3, 70, 64, 0, 70] {
            s.insert(i);
        }
        assert!(s.contains(0) && s.contains(3) && s.contains(64) && s.contains(70));
        assert!(!s.contains(1) && !s.contains(65));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 3, 64, 70]);
        s.clear();
        assert_eq!(s.iter().count(), 0);
    }
}
