//! The host functions of ABI v1, linked under module `"ants"`.
//!
//! Each function turns guest `(ptr, len)` pairs into slices of linear memory — answering
//! [`status::BAD_POINTER`] when they do not fit, never trapping — and calls the matching
//! method of [`Execution`], where the semantics live (shared with the SDK's mock host).

use ants_core::Execution;
use ants_wire::abi::{IMPORT_MODULE, status};
use wasmtime::{Caller, Linker};

use super::ExecState;

type Cx<'a> = Caller<'a, ExecState>;

/// Guest memory, the execution in progress and the scratch buffer, or `None` when called
/// outside an execution (e.g. from a start function).
fn enter<'c>(
    caller: &'c mut Cx<'_>,
) -> Option<(&'c mut [u8], &'c mut Execution<'static>, &'c mut Vec<u8>)> {
    let memory = caller.data().memory?;
    let (mem, state) = memory.data_and_store_mut(caller);
    let exec = state.exec?;
    // SAFETY: `exec` is set by `WasmExecutor::run` from an exclusive borrow that outlives the
    // wasm call we are inside of, and cleared when the call returns. Host functions run on
    // that same thread, synchronously, and the reference does not escape this call.
    let exec = unsafe { &mut *exec.as_ptr() };
    Some((mem, exec, &mut state.scratch))
}

fn range(ptr: i32, len: i32) -> Option<std::ops::Range<usize>> {
    // Guest pointers and lengths are unsigned 32-bit; a negative i32 is a huge length that
    // fails the bounds check below.
    let start = ptr as u32 as usize;
    Some(start..start.checked_add(len as u32 as usize)?)
}

fn guest(mem: &[u8], ptr: i32, len: i32) -> Option<&[u8]> {
    mem.get(range(ptr, len)?)
}

fn guest_mut(mem: &mut [u8], ptr: i32, len: i32) -> Option<&mut [u8]> {
    mem.get_mut(range(ptr, len)?)
}

fn read_addr(mem: &[u8], ptr: i32) -> Option<[u8; 16]> {
    guest(mem, ptr, 16)?.try_into().ok()
}

/// Status for "called outside an execution".
const NO_EXEC: i32 = status::BAD_ARGUMENT;

pub(super) fn link(l: &mut Linker<ExecState>) -> Result<(), wasmtime::Error> {
    let m = IMPORT_MODULE;
    l.func_wrap(m, "node_address", |mut c: Cx<'_>, out: i32| {
        let Some((mem, exec, _)) = enter(&mut c) else {
            return NO_EXEC;
        };
        let addr = exec.node_address();
        match guest_mut(mem, out, 16) {
            Some(dst) => {
                dst.copy_from_slice(&addr);
                status::OK
            }
            None => status::BAD_POINTER,
        }
    })?;
    l.func_wrap(m, "node_time", |mut c: Cx<'_>| {
        enter(&mut c).map_or(0, |(_, exec, _)| exec.node_time())
    })?;
    l.func_wrap(m, "node_random", |mut c: Cx<'_>, out: i32, len: i32| {
        let Some((mem, exec, _)) = enter(&mut c) else {
            return NO_EXEC;
        };
        match guest_mut(mem, out, len) {
            Some(dst) => exec.node_random(dst),
            None => status::BAD_POINTER,
        }
    })?;
    l.func_wrap(m, "capsule_len", |mut c: Cx<'_>, field: i32| {
        enter(&mut c).map_or(NO_EXEC, |(_, exec, _)| exec.capsule_len(field))
    })?;
    l.func_wrap(
        m,
        "capsule_read",
        |mut c: Cx<'_>, field: i32, offset: i32, out: i32, len: i32| {
            let Some((mem, exec, _)) = enter(&mut c) else {
                return NO_EXEC;
            };
            match guest_mut(mem, out, len) {
                Some(dst) => exec.capsule_read(field, offset as u32, dst),
                None => status::BAD_POINTER,
            }
        },
    )?;
    l.func_wrap(
        m,
        "capsule_write",
        |mut c: Cx<'_>, field: i32, offset: i32, src: i32, len: i32| {
            let Some((mem, exec, _)) = enter(&mut c) else {
                return NO_EXEC;
            };
            match guest(mem, src, len) {
                Some(data) => exec.capsule_write(field, offset as u32, data),
                None => status::BAD_POINTER,
            }
        },
    )?;
    l.func_wrap(
        m,
        "capsule_resize",
        |mut c: Cx<'_>, field: i32, len: i32| {
            enter(&mut c).map_or(NO_EXEC, |(_, exec, _)| exec.capsule_resize(field, len))
        },
    )?;
    l.func_wrap(m, "capsule_resource", |mut c: Cx<'_>| {
        enter(&mut c).map_or(NO_EXEC, |(_, exec, _)| exec.capsule_resource())
    })?;
    l.func_wrap(m, "route_for_node", |mut c: Cx<'_>, addr: i32| {
        let Some((mem, exec, _)) = enter(&mut c) else {
            return NO_EXEC;
        };
        match read_addr(mem, addr) {
            Some(a) => exec.route_for_node(a),
            None => status::BAD_POINTER,
        }
    })?;
    l.func_wrap(m, "node_neighbours", |mut c: Cx<'_>, out: i32, cap: i32| {
        let Some((mem, exec, _)) = enter(&mut c) else {
            return NO_EXEC;
        };
        // `cap` counts 16-byte addresses; a negative or huge one fails the bounds check.
        let Some(bytes) = (cap as u32).checked_mul(16) else {
            return status::BAD_POINTER;
        };
        match guest_mut(mem, out, bytes as i32) {
            Some(dst) => exec.node_neighbours(dst),
            None => status::BAD_POINTER,
        }
    })?;
    l.func_wrap(m, "next_hop", |mut c: Cx<'_>, addr: i32, out: i32| {
        let Some((mem, exec, _)) = enter(&mut c) else {
            return NO_EXEC;
        };
        let Some(a) = read_addr(mem, addr) else {
            return status::BAD_POINTER;
        };
        let Some(dst) = guest_mut(mem, out, 16) else {
            return status::BAD_POINTER;
        };
        match exec.next_hop(a) {
            Ok(hop) => {
                dst.copy_from_slice(&hop);
                status::OK
            }
            Err(code) => code,
        }
    })?;
    l.func_wrap(m, "deliver_to_app", |mut c: Cx<'_>, app: i32| {
        enter(&mut c).map_or(NO_EXEC, |(_, exec, _)| exec.deliver_to_app(app))
    })?;
    l.func_wrap(
        m,
        "store_get",
        |mut c: Cx<'_>, key: i32, key_len: i32, out: i32, cap: i32| {
            let Some((mem, exec, scratch)) = enter(&mut c) else {
                return NO_EXEC;
            };
            // Key and output may overlap in guest memory: copy the key out first. The
            // store's key-length limit bounds the copy.
            let Some(k) = guest(mem, key, key_len) else {
                return status::BAD_POINTER;
            };
            if k.len() > exec.env.store().config().max_key_len {
                return status::TOO_LARGE;
            }
            scratch.clear();
            scratch.extend_from_slice(k);
            match guest_mut(mem, out, cap) {
                Some(dst) => exec.store_get(scratch, dst),
                None => status::BAD_POINTER,
            }
        },
    )?;
    l.func_wrap(
        m,
        "store_put",
        |mut c: Cx<'_>, key: i32, key_len: i32, val: i32, val_len: i32, ttl_ms: i64| {
            let Some((mem, exec, _)) = enter(&mut c) else {
                return NO_EXEC;
            };
            match (guest(mem, key, key_len), guest(mem, val, val_len)) {
                (Some(k), Some(v)) => exec.store_put(k, v, ttl_ms),
                _ => status::BAD_POINTER,
            }
        },
    )?;
    l.func_wrap(
        m,
        "store_remove",
        |mut c: Cx<'_>, key: i32, key_len: i32| {
            let Some((mem, exec, _)) = enter(&mut c) else {
                return NO_EXEC;
            };
            match guest(mem, key, key_len) {
                Some(k) => exec.store_remove(k),
                None => status::BAD_POINTER,
            }
        },
    )?;
    l.func_wrap(m, "log", |mut c: Cx<'_>, level: i32, msg: i32, len: i32| {
        let Some((mem, exec, _)) = enter(&mut c) else {
            return NO_EXEC;
        };
        match guest(mem, msg, len) {
            Some(text) => exec.log(level, text),
            None => status::BAD_POINTER,
        }
    })?;
    Ok(())
}
