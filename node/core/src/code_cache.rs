//! [`CodeCache`]: verified wasm modules by [`CapsuleType`], least-recently-used evicted first,
//! bounded by the total bytes of the modules it holds.
//!
//! The cache stores *verified* bytes only: the caller (the node, after the
//! [`CodeLoader`](crate::loader::CodeLoader) reports `Verified`, or an app handing over its
//! module) has checked that SHA-256 of the bytes is the type. It is also the node's
//! [`CodeSource`] when it serves code requests downstream.

use std::sync::Arc;

use ants_wire::CapsuleType;
use lru::LruCache;

use crate::loader::CodeSource;

/// What the cache did since it was created; plain counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CodeCacheCounters {
    /// `get` found the module.
    pub hits: u64,
    /// `get` did not find the module.
    pub misses: u64,
    /// Modules inserted (a re-insert of a present type counts too).
    pub inserts: u64,
    /// Modules evicted to make room.
    pub evictions: u64,
    /// Modules refused because they alone exceed the byte budget.
    pub refused: u64,
}

/// A module was refused because it alone is larger than the cache's byte budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("module of {len} bytes exceeds the code cache budget of {max_bytes} bytes")]
pub struct ModuleTooLarge {
    /// Length of the refused module.
    pub len: usize,
    /// The cache's budget.
    pub max_bytes: usize,
}

/// Verified modules by type, LRU by bytes.
///
/// Invariant: [`CodeCache::bytes`] ≤ the budget given to [`CodeCache::new`].
#[derive(Debug)]
pub struct CodeCache {
    entries: LruCache<CapsuleType, Arc<[u8]>>,
    bytes: usize,
    max_bytes: usize,
    counters: CodeCacheCounters,
}

impl CodeCache {
    /// An empty cache holding at most `max_bytes` bytes of modules (0 refuses everything).
    pub fn new(max_bytes: usize) -> Self {
        CodeCache {
            entries: LruCache::unbounded(),
            bytes: 0,
            max_bytes,
            counters: CodeCacheCounters::default(),
        }
    }

    /// Insert (or refresh) a verified module; it becomes the most recently used.
    ///
    /// Returns the types evicted, least recently used first, to make room. A module longer
    /// than the whole budget is refused with [`ModuleTooLarge`] and nothing is evicted
    /// (a type already present stays as it was).
    pub fn insert(
        &mut self,
        ty: CapsuleType,
        code: Arc<[u8]>,
    ) -> Result<Vec<CapsuleType>, ModuleTooLarge> {
        if code.len() > self.max_bytes {
            self.counters.refused += 1;
            return Err(ModuleTooLarge {
                len: code.len(),
                max_bytes: self.max_bytes,
            });
        }
        if let Some(old) = self.entries.pop(&ty) {
            self.bytes -= old.len();
        }
        let mut evicted = Vec::new();
        while self.bytes + code.len() > self.max_bytes {
            let Some((victim, old)) = self.entries.pop_lru() else {
                break;
            };
            self.bytes -= old.len();
            self.counters.evictions += 1;
            evicted.push(victim);
        }
        self.bytes += code.len();
        self.entries.put(ty, code);
        self.counters.inserts += 1;
        Ok(evicted)
    }

    /// The module of `ty`, marking it most recently used (counted as a hit or a miss).
    pub fn get(&mut self, ty: &CapsuleType) -> Option<&Arc<[u8]>> {
        let found = self.entries.get(ty);
        if found.is_some() {
            self.counters.hits += 1;
        } else {
            self.counters.misses += 1;
        }
        found
    }

    /// Whether `ty` is cached; does not change recency or counters.
    pub fn contains(&self, ty: &CapsuleType) -> bool {
        self.entries.contains(ty)
    }

    /// Remove `ty`, returning its module.
    pub fn remove(&mut self, ty: &CapsuleType) -> Option<Arc<[u8]>> {
        let code = self.entries.pop(ty)?;
        self.bytes -= code.len();
        Some(code)
    }

    /// Total bytes of the cached modules.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The byte budget.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Number of cached modules.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The cached types, most recently used first (deterministic: recency order).
    pub fn types(&self) -> impl Iterator<Item = &CapsuleType> {
        self.entries.iter().map(|(ty, _)| ty)
    }

    /// The cached types and their module sizes in bytes, most recently used first.
    pub fn sizes(&self) -> impl Iterator<Item = (&CapsuleType, usize)> {
        self.entries.iter().map(|(ty, code)| (ty, code.len()))
    }

    /// What the cache did so far.
    pub fn counters(&self) -> &CodeCacheCounters {
        &self.counters
    }
}

impl CodeSource for CodeCache {
    fn code(&mut self, ty: &CapsuleType) -> Option<Arc<[u8]>> {
        self.get(ty).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(n: u8) -> CapsuleType {
        CapsuleType([n; 32])
    }

    fn code(len: usize) -> Arc<[u8]> {
        vec![7u8; len].into()
    }

    #[test]
    fn insert_get_and_count() {
        let mut c = CodeCache::new(100);
        assert_eq!(c.insert(ty(1), code(40)), Ok(vec![]));
        assert_eq!(c.get(&ty(1)).map(|m| m.len()), Some(40));
        assert!(c.get(&ty(2)).is_none());
        assert!(c.contains(&ty(1)) && !c.contains(&ty(2)));
        assert_eq!((c.len(), c.bytes()), (1, 40));
        let k = c.counters();
        assert_eq!((k.hits, k.misses, k.inserts), (1, 1, 1));
    }

    #[test]
    fn evicts_least_recently_used_by_bytes() {
        let mut c = CodeCache::new(100);
        c.insert(ty(1), code(40)).unwrap();
        c.insert(ty(2), code(40)).unwrap();
        // Touch 1 so that 2 is the least recently used.
        c.get(&ty(1));
        assert_eq!(c.insert(ty(3), code(30)), Ok(vec![ty(2)]));
        assert_eq!(c.bytes(), 70);
        // 3 and then 1 must go to fit 90 bytes.
        assert_eq!(c.insert(ty(4), code(90)), Ok(vec![ty(1), ty(3)]));
        assert_eq!((c.len(), c.bytes()), (1, 90));
        assert_eq!(c.counters().evictions, 3);
        assert_eq!(c.types().copied().collect::<Vec<_>>(), vec![ty(4)]);
    }

    #[test]
    fn contains_does_not_bump_recency() {
        let mut c = CodeCache::new(80);
        c.insert(ty(1), code(40)).unwrap();
        c.insert(ty(2), code(40)).unwrap();
        assert!(c.contains(&ty(1)));
        assert_eq!(c.insert(ty(3), code(40)), Ok(vec![ty(1)]));
    }

    #[test]
    fn oversized_module_is_refused_without_evicting() {
        let mut c = CodeCache::new(100);
        c.insert(ty(1), code(60)).unwrap();
        assert_eq!(
            c.insert(ty(2), code(101)),
            Err(ModuleTooLarge {
                len: 101,
                max_bytes: 100
            })
        );
        assert!(c.contains(&ty(1)));
        assert_eq!(c.counters().refused, 1);
        // A zero budget refuses everything but the empty module.
        let mut z = CodeCache::new(0);
        assert!(z.insert(ty(1), code(1)).is_err());
    }

    #[test]
    fn reinsert_replaces_without_double_counting() {
        let mut c = CodeCache::new(100);
        c.insert(ty(1), code(60)).unwrap();
        assert_eq!(c.insert(ty(1), code(60)), Ok(vec![]));
        assert_eq!((c.len(), c.bytes()), (1, 60));
        assert_eq!(c.remove(&ty(1)).map(|m| m.len()), Some(60));
        assert_eq!((c.len(), c.bytes()), (0, 0));
        assert!(c.remove(&ty(1)).is_none());
    }

    #[test]
    fn serves_as_code_source() {
        let mut c = CodeCache::new(100);
        c.insert(ty(1), code(10)).unwrap();
        let src: &mut dyn CodeSource = &mut c;
        assert!(src.code(&ty(1)).is_some());
        assert!(src.code(&ty(2)).is_none());
    }
}
