//! Load-time checks: a module may import only ABI v1 host functions, with their exact
//! signatures, and must export `memory`, `ants_on_capsule: () -> i32` and
//! `ants_abi_version: () -> i32`. Each refusal names the offending import or export.

use ants_core::LoadError;
use ants_wire::abi::{
    ABI_VERSION_EXPORT, ENTRY_EXPORT, IMPORT_MODULE, MEMORY_EXPORT, ValType, host_fn,
};
use wasmtime::{ExternType, FuncType, Module};

use super::ExecutorConfig;

fn val_name(v: &wasmtime::ValType) -> &'static str {
    match v {
        wasmtime::ValType::I32 => "i32",
        wasmtime::ValType::I64 => "i64",
        wasmtime::ValType::F32 => "f32",
        wasmtime::ValType::F64 => "f64",
        wasmtime::ValType::V128 => "v128",
        wasmtime::ValType::Ref(_) => "ref",
    }
}

fn abi_name(v: ValType) -> &'static str {
    match v {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
    }
}

fn describe_func(f: &FuncType) -> String {
    let params: Vec<_> = f.params().map(|p| val_name(&p)).collect();
    let results: Vec<_> = f.results().map(|r| val_name(&r)).collect();
    format!("func({}) -> ({})", params.join(", "), results.join(", "))
}

fn describe_abi(params: &[ValType], results: &[ValType]) -> String {
    let p: Vec<_> = params.iter().map(|v| abi_name(*v)).collect();
    let r: Vec<_> = results.iter().map(|v| abi_name(*v)).collect();
    format!("func({}) -> ({})", p.join(", "), r.join(", "))
}

fn describe_extern(t: &ExternType) -> String {
    match t {
        ExternType::Func(f) => describe_func(f),
        ExternType::Global(_) => "a global".into(),
        ExternType::Table(_) => "a table".into(),
        ExternType::Memory(_) => "a memory".into(),
        ExternType::Tag(_) => "a tag".into(),
    }
}

fn matches(f: &FuncType, params: &[ValType], results: &[ValType]) -> bool {
    let eq = |a: wasmtime::ValType, b: &ValType| {
        matches!(
            (a, b),
            (wasmtime::ValType::I32, ValType::I32) | (wasmtime::ValType::I64, ValType::I64)
        )
    };
    f.params().len() == params.len()
        && f.results().len() == results.len()
        && f.params().zip(params).all(|(a, b)| eq(a, b))
        && f.results().zip(results).all(|(a, b)| eq(a, b))
}

pub(super) fn check_module(module: &Module, config: &ExecutorConfig) -> Result<(), LoadError> {
    for import in module.imports() {
        if import.module() != IMPORT_MODULE {
            return Err(LoadError::ForeignImport {
                module: import.module().to_string(),
                name: import.name().to_string(),
            });
        }
        let Some(host) = host_fn(import.name()) else {
            return Err(LoadError::UnknownImport(import.name().to_string()));
        };
        let ty = import.ty();
        let ok = matches!(&ty, ExternType::Func(f) if matches(f, host.params, host.results));
        if !ok {
            return Err(LoadError::ImportSignature {
                name: import.name().to_string(),
                expected: describe_abi(host.params, host.results),
                found: describe_extern(&ty),
            });
        }
    }
    for name in [ENTRY_EXPORT, ABI_VERSION_EXPORT] {
        let Some(ty) = module.get_export(name) else {
            return Err(LoadError::MissingExport(name));
        };
        let ok = matches!(&ty, ExternType::Func(f) if matches(f, &[], &[ValType::I32]));
        if !ok {
            return Err(LoadError::ExportSignature {
                name,
                expected: "func() -> (i32)".into(),
                found: describe_extern(&ty),
            });
        }
    }
    match module.get_export(MEMORY_EXPORT) {
        None => return Err(LoadError::MissingExport(MEMORY_EXPORT)),
        Some(ExternType::Memory(m)) => {
            let min_bytes = m.minimum().saturating_mul(m.page_size());
            if min_bytes > config.max_memory_bytes as u64 {
                return Err(LoadError::Instantiate(format!(
                    "its memory starts at {min_bytes} bytes, over the {}-byte limit",
                    config.max_memory_bytes
                )));
            }
        }
        Some(other) => {
            return Err(LoadError::ExportSignature {
                name: MEMORY_EXPORT,
                expected: "a memory".into(),
                found: describe_extern(&other),
            });
        }
    }
    Ok(())
}
