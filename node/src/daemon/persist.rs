//! The code cache directory: verified modules (`<type>.wasm`) and their compiled form
//! (`<type>.cwasm`), so a restarted node neither re-fetches nor recompiles.
//!
//! Compiled artifacts are native code this process will run, so the directory is treated as
//! part of the node's trusted computing base:
//!
//! - [`secure_dir`]: the node creates it 0700, and refuses to start (with the reason) if it,
//!   or any directory above it, is owned by another user (root excepted) or writable by group
//!   or others without the sticky bit, or if it is a symlink;
//! - files are opened with `O_NOFOLLOW` and must be regular files owned by the node's user;
//!   writes go to a fresh `create_new` 0600 temporary file renamed into place;
//! - [`CodeStore`]: the directory is bounded in bytes (`code_cache_disk_bytes`), least
//!   recently used types pruned first; start-up reads the *index* only (names and sizes), and
//!   a module is read back when a capsule of its type first arrives (an `Event::Restore` the
//!   compile workers serve with [`restore`]).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ants_core::LoadError;
use ants_wire::CapsuleType;
use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use tracing::{debug, warn};

use crate::{CompiledModule, Compiler};

/// Largest compiled artifact read back (a sanity bound; wasmtime checks the rest).
const MAX_CWASM_BYTES: u64 = 256 << 20;

fn paths(dir: &Path, ty: &CapsuleType) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{ty}.wasm")),
        dir.join(format!("{ty}.cwasm")),
    )
}

/// The effective user id (the owner the node's files must have).
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// A second owner the node's files may have: the `[router] user` a root-started router
/// becomes and hands the directory to, so that the next start as root finds it acceptable.
static ALSO_OWNER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);

/// Accept `uid` as the owner of the code directory and its files too (see [`ALSO_OWNER`]).
pub(crate) fn also_trust_owner(uid: u32) {
    ALSO_OWNER.store(uid, std::sync::atomic::Ordering::Relaxed);
}

/// Whether `uid` may own the code directory and its files.
fn ours(uid: u32) -> bool {
    uid == euid() || uid == ALSO_OWNER.load(std::sync::atomic::Ordering::Relaxed)
}

/// Why `meta` (of `path`) may not sit above or be the code directory, if it may not: owned by
/// someone other than us or root, or writable by others without the sticky bit.
fn unsafe_dir(path: &Path, meta: &fs::Metadata) -> Option<String> {
    let (uid, mode) = (meta.uid(), meta.mode());
    if !ours(uid) && uid != 0 {
        return Some(format!(
            "{} is owned by uid {uid}, not by this node's user ({}) or root",
            path.display(),
            euid()
        ));
    }
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Some(format!(
            "{} is writable by group or others (mode {:o}) and not sticky",
            path.display(),
            mode & 0o7777
        ));
    }
    None
}

/// Make sure `dir` is a directory only this node's user controls, creating it (0700) if
/// needed. Refuses symlinks, other owners, and group/world-writable directories on the way.
pub(crate) fn secure_dir(dir: &Path) -> anyhow::Result<()> {
    let dir = if dir.is_absolute() {
        dir.to_owned()
    } else {
        std::env::current_dir()?.join(dir)
    };
    // The deepest ancestor that exists, resolved (ancestors may be symlinks such as
    // /var/run -> /run; the checks apply to where they lead).
    let mut missing = Vec::new();
    let mut base = dir.clone();
    while fs::symlink_metadata(&base).is_err() {
        let Some(parent) = base.parent() else { break };
        missing.push(base.clone());
        base = parent.to_owned();
    }
    let top = if missing.is_empty() {
        dir.parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| dir.clone())
    } else {
        base.clone()
    };
    let top = top
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", top.display()))?;
    for a in top.ancestors() {
        let meta = fs::metadata(a).with_context(|| format!("cannot inspect {}", a.display()))?;
        if let Some(why) = unsafe_dir(a, &meta) {
            bail!(
                "{why}: the code cache holds native code this node runs; choose a directory only its user controls"
            );
        }
    }
    for m in missing.iter().rev() {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(m)
            .with_context(|| format!("cannot create {}", m.display()))?;
    }
    let meta = fs::symlink_metadata(&dir)?;
    if meta.file_type().is_symlink() {
        bail!(
            "{} is a symlink; the code cache directory must be a real directory",
            dir.display()
        );
    }
    if !meta.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    if !ours(meta.uid()) {
        bail!(
            "{} is owned by uid {}, not by this node's user ({})",
            dir.display(),
            meta.uid(),
            euid()
        );
    }
    if meta.mode() & 0o022 != 0 {
        bail!(
            "{} is writable by group or others (mode {:o}): files in it cannot be trusted; \
             fix it with chmod 700 (and check its contents) or choose another directory",
            dir.display(),
            meta.mode() & 0o7777
        );
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Open `path` for reading without following a symlink; it must be a regular file owned by
/// us, of at most `max` bytes.
fn read_private(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() || !ours(meta.uid()) {
        return Err(io::Error::other(
            "not a regular file owned by this node's user",
        ));
    }
    if meta.len() > max {
        return Err(io::Error::other(format!(
            "{} bytes, over the {max}-byte limit",
            meta.len()
        )));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    Read::by_ref(&mut f).take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(io::Error::other("grew while being read"));
    }
    Ok(buf)
}

/// Write `bytes` to `path` atomically: a fresh 0600 temporary file, renamed into place.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let ext = path.extension().and_then(|x| x.to_str()).unwrap_or("");
    let tmp = path.with_extension(format!("{ext}.tmp{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut f: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(bytes)?;
    drop(f);
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// Write a module and its compiled form (best effort; failures are logged, not fatal).
/// Returns the bytes written.
pub(crate) fn store(
    dir: &Path,
    compiler: &Compiler,
    code: &[u8],
    compiled: &CompiledModule,
) -> u64 {
    let (wasm, cwasm) = paths(dir, &compiled.capsule_type);
    if let Err(e) = write_private(&wasm, code) {
        warn!(path = %wasm.display(), "cannot persist module: {e}");
        return 0;
    }
    let mut written = code.len() as u64;
    match compiler.serialize(compiled) {
        Ok(bytes) => match write_private(&cwasm, &bytes) {
            Ok(()) => written += bytes.len() as u64,
            Err(e) => warn!(path = %cwasm.display(), "cannot persist compiled module: {e}"),
        },
        Err(e) => warn!("cannot serialize compiled module: {e:#}"),
    }
    written
}

fn remove(dir: &Path, ty: &CapsuleType) {
    let (wasm, cwasm) = paths(dir, ty);
    let _ = fs::remove_file(wasm);
    let _ = fs::remove_file(cwasm);
}

/// A module read back from the directory.
pub(crate) struct Restored {
    pub(crate) module: CompiledModule,
    pub(crate) code: Arc<[u8]>,
    /// Bytes it occupies on disk.
    pub(crate) stored: u64,
    /// Its compiled form was reused (no compile).
    pub(crate) reused: bool,
}

/// Read the module of `ty` back from `dir`: its SHA-256 must be `ty`; its compiled form is
/// reused when wasmtime accepts it, else it is compiled (and rewritten). A file that fails a
/// check is removed.
pub(crate) fn restore(
    dir: &Path,
    ty: &CapsuleType,
    compiler: &Compiler,
) -> Result<Restored, LoadError> {
    let (wasm, cwasm) = paths(dir, ty);
    let max = compiler.config().max_module_bytes as u64;
    let code = match read_private(&wasm, max) {
        Ok(c) if CapsuleType(Sha256::digest(&c).into()) == *ty => c,
        Ok(_) => {
            warn!(path = %wasm.display(), "persisted module does not match its name; removed");
            remove(dir, ty);
            return Err(LoadError::Unavailable(
                "the persisted module was corrupt".into(),
            ));
        }
        Err(e) => {
            remove(dir, ty);
            return Err(LoadError::Unavailable(format!(
                "cannot read {}: {e}",
                wasm.display()
            )));
        }
    };
    let reused = read_private(&cwasm, MAX_CWASM_BYTES).ok().and_then(|c| {
        // SAFETY: the artifact was written by `store` of this binary into a directory that
        // `secure_dir` checked only this node's user controls, read without following
        // symlinks from a regular file this user owns (see `Compiler::deserialize`).
        let m = unsafe { compiler.deserialize(&code, &c) };
        m.ok().map(|m| (m, c.len()))
    });
    let (module, stored, reused) = match reused {
        Some((m, cwasm_len)) => (m, (code.len() + cwasm_len) as u64, true),
        None => {
            let m = compiler.compile(&code)?;
            let stored = store(dir, compiler, &code, &m);
            (m, stored, false)
        }
    };
    debug!(%ty, reused, "restored persisted module");
    Ok(Restored {
        module,
        code: Arc::from(code),
        stored,
        reused,
    })
}

/// One type in the directory.
#[derive(Debug, Clone, Copy)]
struct Entry {
    bytes: u64,
    /// Recency: larger is more recent.
    used: u64,
}

/// The directory's index: which types it holds, their size and recency. Bounded in bytes.
#[derive(Debug)]
pub(crate) struct CodeStore {
    dir: PathBuf,
    max_bytes: u64,
    index: BTreeMap<CapsuleType, Entry>,
    bytes: u64,
    clock: u64,
    /// Types removed to stay within `max_bytes`.
    pub(crate) pruned: u64,
}

impl CodeStore {
    /// Check and index `dir` (creating it if needed): names and sizes only, oldest files
    /// first in recency. Temporary files are removed; symlinks and files not owned by us are
    /// ignored. Then prune to `max_bytes`; returns the store and the types it holds.
    ///
    /// `owns` picks the types this store indexes: a node's workers share the directory, each
    /// indexing (and pruning) only the types it runs, so no worker removes another's files.
    pub(crate) fn open(
        dir: &Path,
        max_bytes: u64,
        owns: &dyn Fn(&CapsuleType) -> bool,
    ) -> anyhow::Result<CodeStore> {
        secure_dir(dir)?;
        let mut found: Vec<(std::time::SystemTime, CapsuleType, u64)> = Vec::new();
        for e in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let Ok(e) = e else { continue };
            let path = e.path();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            let ext = path.extension().and_then(|x| x.to_str()).unwrap_or("");
            if ext.starts_with("tmp") && meta.is_file() {
                let _ = fs::remove_file(&path);
                continue;
            }
            if ext != "wasm" {
                continue;
            }
            if !meta.is_file() || !ours(meta.uid()) {
                warn!(path = %path.display(), "not a regular file of this node's user; ignored");
                continue;
            }
            let Some(ty) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<CapsuleType>().ok())
            else {
                continue;
            };
            if !owns(&ty) {
                continue;
            }
            let cwasm = fs::symlink_metadata(paths(dir, &ty).1)
                .ok()
                .filter(fs::Metadata::is_file)
                .map_or(0, |m| m.len());
            let mtime = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            found.push((mtime, ty, meta.len() + cwasm));
        }
        found.sort();
        let mut store = CodeStore {
            dir: dir.to_owned(),
            max_bytes,
            index: BTreeMap::new(),
            bytes: 0,
            clock: 0,
            pruned: 0,
        };
        for (_, ty, bytes) in found {
            store.insert(ty, bytes);
        }
        store.prune();
        Ok(store)
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The types held.
    pub(crate) fn types(&self) -> impl Iterator<Item = &CapsuleType> {
        self.index.keys()
    }

    /// Bytes on disk (as indexed).
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// `ty` was written (or read back) and occupies `bytes`: index it as the most recently
    /// used.
    pub(crate) fn insert(&mut self, ty: CapsuleType, bytes: u64) {
        self.clock += 1;
        if let Some(old) = self.index.insert(
            ty,
            Entry {
                bytes,
                used: self.clock,
            },
        ) {
            self.bytes -= old.bytes;
        }
        self.bytes += bytes;
    }

    /// Forget `ty` (its files failed a check and were removed).
    pub(crate) fn forget(&mut self, ty: &CapsuleType) {
        if let Some(old) = self.index.remove(ty) {
            self.bytes -= old.bytes;
        }
    }

    /// Drop `ty` from the index and remove its files; whether it was indexed.
    pub(crate) fn evict(&mut self, ty: &CapsuleType) -> bool {
        let had = self.index.contains_key(ty);
        self.forget(ty);
        remove(&self.dir, ty);
        had
    }

    /// Remove least recently used types until the directory is within `max_bytes`; returns
    /// the types removed.
    pub(crate) fn prune(&mut self) -> Vec<CapsuleType> {
        let mut gone = Vec::new();
        while self.bytes > self.max_bytes {
            let Some((&ty, _)) = self.index.iter().min_by_key(|(_, e)| e.used) else {
                break;
            };
            self.forget(&ty);
            remove(&self.dir, &ty);
            self.pruned += 1;
            gone.push(ty);
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn creates_private_and_refuses_loose_or_linked_directories() {
        let t = dir();
        let d = t.path().join("a/b/cache");
        secure_dir(&d).unwrap();
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        // Group-writable: refused with the reason.
        let loose = t.path().join("loose");
        fs::create_dir(&loose).unwrap();
        fs::set_permissions(&loose, fs::Permissions::from_mode(0o770)).unwrap();
        let e = secure_dir(&loose).unwrap_err().to_string();
        assert!(e.contains("writable by group or others"), "{e}");
        // A child of a world-writable, non-sticky directory: refused.
        let open = t.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let e = secure_dir(&open.join("cache")).unwrap_err().to_string();
        assert!(e.contains("not sticky"), "{e}");
        // Sticky is fine (like /tmp).
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        secure_dir(&open.join("cache")).unwrap();
        // A symlink: refused, not followed.
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        let e = secure_dir(&link).unwrap_err().to_string();
        assert!(e.contains("symlink"), "{e}");
        // Readable by others but ours: tightened.
        let readable = t.path().join("readable");
        fs::create_dir(&readable).unwrap();
        fs::set_permissions(&readable, fs::Permissions::from_mode(0o755)).unwrap();
        secure_dir(&readable).unwrap();
        assert_eq!(fs::metadata(&readable).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn files_are_private_and_symlinks_are_not_followed() {
        let t = dir();
        let p = t.path().join("x.wasm");
        write_private(&p, b"hello").unwrap();
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert_eq!(read_private(&p, 10).unwrap(), b"hello");
        assert!(read_private(&p, 4).is_err(), "over the size bound");
        let target = t.path().join("secret");
        fs::write(&target, b"not yours").unwrap();
        let link = t.path().join("y.wasm");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(
            read_private(&link, 100).is_err(),
            "a symlink is not followed"
        );
    }

    #[test]
    fn index_is_lazy_bounded_and_prunes_least_recently_used() {
        let t = dir();
        let d = t.path().join("cache");
        secure_dir(&d).unwrap();
        let tys: Vec<CapsuleType> = (0..4u8)
            .map(|i| {
                let code = vec![i; 100];
                let ty = CapsuleType(Sha256::digest(&code).into());
                write_private(&paths(&d, &ty).0, &code).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(20));
                ty
            })
            .collect();
        fs::write(d.join("stray.wasm.tmp123"), b"junk").unwrap();
        // 300 bytes allowed: the oldest file goes at start-up.
        let mut s = CodeStore::open(&d, 300, &|_| true).unwrap();
        assert_eq!(s.bytes(), 300);
        assert!(!s.types().any(|t| *t == tys[0]));
        assert!(!paths(&d, &tys[0]).0.exists(), "pruned from disk");
        assert!(
            !d.join("stray.wasm.tmp123").exists(),
            "temporary files are cleaned"
        );
        // Using tys[1] makes tys[2] the least recently used.
        s.insert(tys[1], 100);
        s.insert(CapsuleType([9; 32]), 100);
        assert_eq!(s.prune(), vec![tys[2]]);
        assert_eq!(s.bytes(), 300);
    }
}
