//! Load-time checks, run on the module's bytes with `wasmparser` *before* Cranelift sees them:
//! a module may import only ABI host functions, with their exact signatures, and must export
//! `memory`, `ants_on_capsule: () -> i32` and `ants_abi_version: () -> i32`; its initial
//! memory must fit the limit, and its shape (functions, locals, body size) must stay within
//! bounds that keep compile time proportionate. Each refusal names the offending item.
//!
//! Checking first means a module that would be refused costs a parse (microseconds), not a
//! compile (milliseconds to seconds): a stranger cannot buy compile time with modules the
//! node will not run.

use ants_core::LoadError;
use ants_wire::abi::{
    ABI_VERSION_EXPORT, ENTRY_EXPORT, IMPORT_MODULE, MEMORY_EXPORT, ValType, host_fn,
};
use wasmparser::{
    CompositeInnerType, Encoding, ExternalKind, FuncType, Parser, Payload, TypeRef,
    ValType as WasmValType,
};

use super::ExecutorConfig;

/// Functions (imported and defined) a module may have.
pub const MAX_FUNCTIONS: usize = 10_000;
/// Locals one function may declare.
pub const MAX_LOCALS: u64 = 10_000;
/// Bytes of one function body.
pub const MAX_BODY_BYTES: usize = 128 << 10;

fn val_name(v: &WasmValType) -> &'static str {
    match v {
        WasmValType::I32 => "i32",
        WasmValType::I64 => "i64",
        WasmValType::F32 => "f32",
        WasmValType::F64 => "f64",
        WasmValType::V128 => "v128",
        WasmValType::Ref(_) => "ref",
    }
}

fn abi_name(v: ValType) -> &'static str {
    match v {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
    }
}

fn describe_func(f: &FuncType) -> String {
    let params: Vec<_> = f.params().iter().map(val_name).collect();
    let results: Vec<_> = f.results().iter().map(val_name).collect();
    format!("func({}) -> ({})", params.join(", "), results.join(", "))
}

fn describe_abi(params: &[ValType], results: &[ValType]) -> String {
    let p: Vec<_> = params.iter().map(|v| abi_name(*v)).collect();
    let r: Vec<_> = results.iter().map(|v| abi_name(*v)).collect();
    format!("func({}) -> ({})", p.join(", "), r.join(", "))
}

fn describe_ref(t: &TypeRef, types: &[Option<FuncType>]) -> String {
    match t {
        TypeRef::Func(i) => match types.get(*i as usize) {
            Some(Some(f)) => describe_func(f),
            _ => "a function of an unknown type".into(),
        },
        TypeRef::Table(_) => "a table".into(),
        TypeRef::Memory(_) => "a memory".into(),
        TypeRef::Global(_) => "a global".into(),
        _ => "a tag".into(),
    }
}

fn matches(f: &FuncType, params: &[ValType], results: &[ValType]) -> bool {
    let eq = |a: &WasmValType, b: &ValType| {
        matches!(
            (a, b),
            (WasmValType::I32, ValType::I32) | (WasmValType::I64, ValType::I64)
        )
    };
    f.params().len() == params.len()
        && f.results().len() == results.len()
        && f.params().iter().zip(params).all(|(a, b)| eq(a, b))
        && f.results().iter().zip(results).all(|(a, b)| eq(a, b))
}

fn invalid(e: impl std::fmt::Display) -> LoadError {
    LoadError::Invalid(e.to_string())
}

/// What the parse collected for the export checks.
#[derive(Default)]
struct Shape<'a> {
    /// Function types by type index (`None`: not a function type).
    types: Vec<Option<FuncType>>,
    /// Type index of every function, imported ones first.
    funcs: Vec<u32>,
    /// Initial size in bytes of every defined memory.
    memories: Vec<u64>,
    exports: Vec<(&'a str, ExternalKind, u32)>,
}

/// Check `code` against the ABI and the limits in `config`, without compiling it.
pub(super) fn check_module(code: &[u8], config: &ExecutorConfig) -> Result<(), LoadError> {
    let mut shape = Shape::default();
    for payload in Parser::new(0).parse_all(code) {
        match payload.map_err(invalid)? {
            Payload::Version { encoding, .. } if encoding != Encoding::Module => {
                return Err(invalid("a component, not a core module"));
            }
            Payload::TypeSection(r) => {
                for group in r {
                    for sub in group.map_err(invalid)?.into_types() {
                        shape.types.push(match sub.composite_type.inner {
                            CompositeInnerType::Func(f) => Some(f),
                            _ => None,
                        });
                    }
                }
            }
            Payload::ImportSection(r) => {
                for import in r.into_imports() {
                    let import = import.map_err(invalid)?;
                    check_import(&import, &shape.types)?;
                    if let TypeRef::Func(t) = import.ty {
                        shape.funcs.push(t);
                    }
                }
            }
            Payload::FunctionSection(r) => {
                for t in r {
                    shape.funcs.push(t.map_err(invalid)?);
                    if shape.funcs.len() > MAX_FUNCTIONS {
                        return Err(invalid(format_args!("more than {MAX_FUNCTIONS} functions")));
                    }
                }
            }
            Payload::MemorySection(r) => {
                for m in r {
                    let m = m.map_err(invalid)?;
                    let page = 1u64 << m.page_size_log2.unwrap_or(16);
                    shape.memories.push(m.initial.saturating_mul(page));
                }
            }
            Payload::ExportSection(r) => {
                for e in r {
                    let e = e.map_err(invalid)?;
                    shape.exports.push((e.name, e.kind, e.index));
                }
            }
            Payload::CodeSectionEntry(body) => check_body(&body)?,
            _ => {}
        }
    }
    check_exports(&shape, config)
}

fn check_import(
    import: &wasmparser::Import<'_>,
    types: &[Option<FuncType>],
) -> Result<(), LoadError> {
    if import.module != IMPORT_MODULE {
        return Err(LoadError::ForeignImport {
            module: import.module.to_string(),
            name: import.name.to_string(),
        });
    }
    let Some(host) = host_fn(import.name) else {
        return Err(LoadError::UnknownImport(import.name.to_string()));
    };
    let ok = matches!(import.ty, TypeRef::Func(t)
        if types.get(t as usize).and_then(Option::as_ref).is_some_and(|f| matches(f, host.params, host.results)));
    if ok {
        return Ok(());
    }
    Err(LoadError::ImportSignature {
        name: import.name.to_string(),
        expected: describe_abi(host.params, host.results),
        found: describe_ref(&import.ty, types),
    })
}

fn check_body(body: &wasmparser::FunctionBody<'_>) -> Result<(), LoadError> {
    let len = body.range().len();
    if len > MAX_BODY_BYTES {
        return Err(invalid(format_args!(
            "a function body of {len} bytes, over the {MAX_BODY_BYTES}-byte limit"
        )));
    }
    let mut locals = 0u64;
    for l in body.get_locals_reader().map_err(invalid)? {
        let (n, _) = l.map_err(invalid)?;
        locals = locals.saturating_add(u64::from(n));
        if locals > MAX_LOCALS {
            return Err(invalid(format_args!(
                "a function with more than {MAX_LOCALS} locals"
            )));
        }
    }
    Ok(())
}

fn check_exports(shape: &Shape<'_>, config: &ExecutorConfig) -> Result<(), LoadError> {
    let export = |name: &str| shape.exports.iter().find(|e| e.0 == name);
    for name in [ENTRY_EXPORT, ABI_VERSION_EXPORT] {
        let Some(&(_, kind, index)) = export(name) else {
            return Err(LoadError::MissingExport(name));
        };
        let ty = (kind == ExternalKind::Func)
            .then(|| shape.funcs.get(index as usize))
            .flatten()
            .and_then(|t| shape.types.get(*t as usize))
            .and_then(Option::as_ref);
        if !ty.is_some_and(|f| matches(f, &[], &[ValType::I32])) {
            return Err(LoadError::ExportSignature {
                name,
                expected: "func() -> (i32)".into(),
                found: match (kind, ty) {
                    (ExternalKind::Func, Some(f)) => describe_func(f),
                    (ExternalKind::Func, None) => "a function of an unknown type".into(),
                    (other, _) => kind_name(other).into(),
                },
            });
        }
    }
    match export(MEMORY_EXPORT) {
        None => Err(LoadError::MissingExport(MEMORY_EXPORT)),
        Some(&(_, ExternalKind::Memory, index)) => {
            // Only a defined memory can be exported here: memory imports are refused above.
            let min_bytes = shape.memories.get(index as usize).copied().unwrap_or(0);
            if min_bytes > config.max_memory_bytes as u64 {
                return Err(LoadError::Instantiate(format!(
                    "its memory starts at {min_bytes} bytes, over the {}-byte limit",
                    config.max_memory_bytes
                )));
            }
            Ok(())
        }
        Some(&(_, kind, _)) => Err(LoadError::ExportSignature {
            name: MEMORY_EXPORT,
            expected: "a memory".into(),
            found: kind_name(kind).into(),
        }),
    }
}

fn kind_name(kind: ExternalKind) -> &'static str {
    match kind {
        ExternalKind::Func | ExternalKind::FuncExact => "a function",
        ExternalKind::Table => "a table",
        ExternalKind::Memory => "a memory",
        ExternalKind::Global => "a global",
        ExternalKind::Tag => "a tag",
    }
}
