//! The code cache directory: verified modules (`<type>.wasm`) and their compiled form
//! (`<type>.cwasm`), so a restarted node neither re-fetches nor recompiles.
//!
//! The directory is created private (0700): compiled artifacts are native code.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ants_wire::CapsuleType;
use sha2::{Digest, Sha256};
use tracing::{debug, warn};

use crate::{CompiledModule, Compiler};

/// One persisted module, ready to install.
pub(crate) struct Persisted {
    pub(crate) ty: CapsuleType,
    pub(crate) code: Arc<[u8]>,
    pub(crate) compiled: CompiledModule,
    /// `true` if the compiled artifact was reused (no recompilation).
    pub(crate) reused: bool,
}

/// Create the directory (0700) if needed.
pub(crate) fn prepare(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

fn paths(dir: &Path, ty: &CapsuleType) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{ty}.wasm")),
        dir.join(format!("{ty}.cwasm")),
    )
}

/// Write a module and its compiled form (best effort; failures are logged, not fatal).
pub(crate) fn store(dir: &Path, compiler: &Compiler, code: &[u8], compiled: &CompiledModule) {
    let (wasm, cwasm) = paths(dir, &compiled.capsule_type);
    let write = |p: &Path, bytes: &[u8]| {
        let tmp = p.with_extension("tmp");
        fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, p))
    };
    if let Err(e) = write(&wasm, code) {
        warn!(path = %wasm.display(), "cannot persist module: {e}");
        return;
    }
    match compiler.serialize(compiled) {
        Ok(bytes) => {
            if let Err(e) = write(&cwasm, &bytes) {
                warn!(path = %cwasm.display(), "cannot persist compiled module: {e}");
            }
        }
        Err(e) => warn!("cannot serialize compiled module: {e:#}"),
    }
}

/// Load every valid module in `dir`: the file name must be the SHA-256 of its contents.
/// The compiled form is reused when wasmtime accepts it, else the module is recompiled.
pub(crate) fn load_all(dir: &Path, compiler: &Compiler) -> Vec<Persisted> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort();
    for path in names {
        if path.extension().is_none_or(|e| e != "wasm") {
            continue;
        }
        let Some(ty) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<CapsuleType>().ok())
        else {
            continue;
        };
        let Ok(code) = fs::read(&path) else { continue };
        if CapsuleType(Sha256::digest(&code).into()) != ty {
            warn!(path = %path.display(), "persisted module does not match its name; ignored");
            continue;
        }
        let (_, cwasm) = paths(dir, &ty);
        // SAFETY: the artifact was written by `store` of this binary into a 0700 directory
        // the node owns (see `Compiler::deserialize`).
        let reused = fs::read(&cwasm)
            .ok()
            .and_then(|c| unsafe { compiler.deserialize(&code, &c) }.ok());
        let (compiled, reused) = match reused {
            Some(m) => (m, true),
            None => match compiler.compile(&code) {
                Ok(m) => {
                    store(dir, compiler, &code, &m);
                    (m, false)
                }
                Err(e) => {
                    warn!(path = %path.display(), "persisted module rejected: {e}");
                    continue;
                }
            },
        };
        debug!(%ty, reused, "loaded persisted module");
        out.push(Persisted {
            ty,
            code: Arc::from(code),
            compiled,
            reused,
        });
    }
    out
}
