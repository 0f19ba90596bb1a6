//! The host functions of ABI v2, linked under module `"ants"`.
//!
//! Each function first charges fuel for the work it is about to do ([`ants_core::host::fuel`]:
//! a base cost per call plus the bytes it will touch — a call that cannot pay traps with "out
//! of fuel" before doing anything), then turns guest `(ptr, len)` pairs into slices of linear
//! memory — answering [`status::BAD_POINTER`] when they do not fit, never trapping — and calls
//! the matching method of [`Execution`], where the semantics live (shared with the SDK's mock
//! host).
//!
//! The execution is store data ([`StoreData::exec`]), swapped in for the duration of a call,
//! so these functions borrow it safely alongside guest memory.

use ants_core::Execution;
use ants_core::host::fuel;
use ants_wire::abi::{IMPORT_MODULE, status};
use wasmtime::{Caller, Linker, Trap};

use super::StoreData;

type Cx<'a> = Caller<'a, StoreData>;
type Ret = wasmtime::Result<i32>;

/// Status for "called outside an execution" (from a start function or the ABI probe).
const NO_EXEC: i32 = status::BAD_ARGUMENT;

/// Fees owed are taken from the store's fuel once they reach this much (and when the
/// execution ends). Settling on every call would cost two calls into the store each time; so
/// a call may do at most this much unpaid work before the fees catch up with it.
const SETTLE_FUEL: u64 = 4_096;

/// Charge `amount` of fuel; trap with "out of fuel" if the execution cannot pay it. Small
/// fees accumulate and are settled in bulk (see [`SETTLE_FUEL`]); an amount at or above it
/// is settled before the call does its work.
#[inline(always)]
fn charge(c: &mut Cx<'_>, amount: u64) -> wasmtime::Result<()> {
    let data = c.data_mut();
    let due = data.fee_due.saturating_add(amount);
    if due < SETTLE_FUEL {
        data.fee_due = due;
        return Ok(());
    }
    settle(c, due)
}

/// Take `due` from the store's fuel: the rare, slow half of [`charge`].
#[cold]
#[inline(never)]
fn settle(c: &mut Cx<'_>, due: u64) -> wasmtime::Result<()> {
    c.data_mut().fee_due = 0;
    let left = c.get_fuel()?;
    match left.checked_sub(due) {
        Some(rest) => c.set_fuel(rest),
        None => {
            c.set_fuel(0)?;
            Err(Trap::OutOfFuel.into())
        }
    }
}

/// Guest memory, the execution in progress and the scratch buffer, or `None` when called
/// outside an execution.
#[inline(always)]
fn enter<'c>(c: &'c mut Cx<'_>) -> Option<(&'c mut [u8], &'c mut Execution, &'c mut Vec<u8>)> {
    if !c.data().active {
        return None;
    }
    let memory = c.data().memory?;
    let (mem, data) = memory.data_and_store_mut(c);
    Some((mem, &mut data.exec, &mut data.scratch))
}

/// The execution, read-only (to size a charge), or `None` outside an execution.
fn exec<'c>(c: &'c Cx<'_>) -> Option<&'c Execution> {
    c.data().active.then(|| &*c.data().exec)
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

/// The bytes of guest range `(ptr, len)` a call may touch: `len` if the whole range lies in
/// linear memory, else 0 (the call answers `BAD_POINTER` without touching anything, so it
/// costs only the base fee — a bad pointer never traps, not even on fuel).
fn in_bounds(c: &Cx<'_>, ptr: i32, len: i32) -> usize {
    let size = c.data().limiter.size;
    match range(ptr, len) {
        Some(r) if r.end <= size => r.len(),
        _ => 0,
    }
}

/// Bytes of header + payload: what a snapshot (send, delivery) copies.
fn capsule_bytes(c: &Cx<'_>) -> usize {
    exec(c).map_or(0, |e| e.capsule.header.len() + e.capsule.payload.len())
}

/// Copies this short cost no more than the call itself: their fee is the base fee, without
/// looking up how much they will really copy.
const SHORT: usize = 64;

/// Bytes a `capsule_read` of `field` from `offset` for `len` bytes will copy.
fn read_bytes(c: &Cx<'_>, field: i32, offset: i32, len: i32) -> usize {
    if (len as u32 as usize) <= SHORT {
        return 0;
    }
    let Some(e) = exec(c) else { return 0 };
    let field_len = usize::try_from(e.capsule_len(field)).unwrap_or(0);
    field_len
        .saturating_sub(offset as u32 as usize)
        .min(len as u32 as usize)
}

pub(super) fn link(l: &mut Linker<StoreData>) -> Result<(), wasmtime::Error> {
    let m = IMPORT_MODULE;
    l.func_wrap(m, "node_address", |mut c: Cx<'_>, out: i32| -> Ret {
        charge(&mut c, fuel::CALL)?;
        let Some((mem, exec, _)) = enter(&mut c) else {
            return Ok(NO_EXEC);
        };
        let addr = exec.node_address();
        Ok(match guest_mut(mem, out, 16) {
            Some(dst) => {
                dst.copy_from_slice(&addr);
                status::OK
            }
            None => status::BAD_POINTER,
        })
    })?;
    l.func_wrap(m, "node_time", |mut c: Cx<'_>| -> wasmtime::Result<i64> {
        charge(&mut c, fuel::CALL)?;
        Ok(exec(&c).map_or(0, Execution::node_time))
    })?;
    l.func_wrap(
        m,
        "node_random",
        |mut c: Cx<'_>, out: i32, len: i32| -> Ret {
            let n = in_bounds(&c, out, len);
            charge(&mut c, fuel::random(n))?;
            let Some((mem, exec, _)) = enter(&mut c) else {
                return Ok(NO_EXEC);
            };
            Ok(match guest_mut(mem, out, len) {
                Some(dst) => exec.node_random(dst),
                None => status::BAD_POINTER,
            })
        },
    )?;
    l.func_wrap(m, "capsule_len", |mut c: Cx<'_>, field: i32| -> Ret {
        charge(&mut c, fuel::CALL)?;
        Ok(exec(&c).map_or(NO_EXEC, |e| e.capsule_len(field)))
    })?;
    l.func_wrap(
        m,
        "capsule_read",
        |mut c: Cx<'_>, field: i32, offset: i32, out: i32, len: i32| -> Ret {
            let n = read_bytes(&c, field, offset, len).min(in_bounds(&c, out, len));
            charge(&mut c, fuel::copy(n))?;
            let Some((mem, exec, _)) = enter(&mut c) else {
                return Ok(NO_EXEC);
            };
            Ok(match guest_mut(mem, out, len) {
                Some(dst) => exec.capsule_read(field, offset as u32, dst),
                None => status::BAD_POINTER,
            })
        },
    )?;
    l.func_wrap(
        m,
        "capsule_write",
        |mut c: Cx<'_>, field: i32, offset: i32, src: i32, len: i32| -> Ret {
            let n = in_bounds(&c, src, len);
            charge(&mut c, fuel::copy(n))?;
            let Some((mem, exec, _)) = enter(&mut c) else {
                return Ok(NO_EXEC);
            };
            Ok(match guest(mem, src, len) {
                Some(data) => exec.capsule_write(field, offset as u32, data),
                None => status::BAD_POINTER,
            })
        },
    )?;
    l.func_wrap(
        m,
        "capsule_resize",
        |mut c: Cx<'_>, field: i32, len: i32| -> Ret {
            // Growing zero-fills up to the new length; past `max_capsule_data` (or for a
            // negative length) nothing is done and only the base fee is due.
            let cap = exec(&c).map_or(0, |e| e.limits.max_capsule_data);
            let n = usize::try_from(len).ok().filter(|n| *n <= cap).unwrap_or(0);
            charge(&mut c, fuel::copy(n))?;
            Ok(enter(&mut c).map_or(NO_EXEC, |(_, exec, _)| exec.capsule_resize(field, len)))
        },
    )?;
    l.func_wrap(m, "capsule_resource", |mut c: Cx<'_>| -> Ret {
        charge(&mut c, fuel::CALL)?;
        Ok(exec(&c).map_or(NO_EXEC, Execution::capsule_resource))
    })?;
    l.func_wrap(m, "route_for_node", |mut c: Cx<'_>, addr: i32| -> Ret {
        let n = capsule_bytes(&c);
        charge(&mut c, fuel::copy(n))?;
        let Some((mem, exec, _)) = enter(&mut c) else {
            return Ok(NO_EXEC);
        };
        Ok(match read_addr(mem, addr) {
            Some(a) => exec.route_for_node(a),
            None => status::BAD_POINTER,
        })
    })?;
    l.func_wrap(
        m,
        "route_for_node_with",
        |mut c: Cx<'_>, addr: i32, resource: i32| -> Ret {
            let n = capsule_bytes(&c);
            charge(&mut c, fuel::copy(n))?;
            let Some((mem, exec, _)) = enter(&mut c) else {
                return Ok(NO_EXEC);
            };
            Ok(match read_addr(mem, addr) {
                Some(a) => exec.route_for_node_with(a, resource),
                None => status::BAD_POINTER,
            })
        },
    )?;
    l.func_wrap(
        m,
        "node_neighbours",
        |mut c: Cx<'_>, out: i32, cap: i32| -> Ret {
            let n = exec(&c).map_or(0, |e| e.node.neighbours.len());
            let room = in_bounds(&c, out, (cap as u32).saturating_mul(16) as i32) / 16;
            charge(&mut c, fuel::copy(16 * n.min(room)))?;
            let Some((mem, exec, _)) = enter(&mut c) else {
                return Ok(NO_EXEC);
            };
            // `cap` counts 16-byte addresses; a negative or huge one fails the bounds check.
            let Some(bytes) = (cap as u32).checked_mul(16) else {
                return Ok(status::BAD_POINTER);
            };
            Ok(match guest_mut(mem, out, bytes as i32) {
                Some(dst) => exec.node_neighbours(dst),
                None => status::BAD_POINTER,
            })
        },
    )?;
    l.func_wrap(m, "next_hop", |mut c: Cx<'_>, addr: i32, out: i32| -> Ret {
        charge(&mut c, fuel::CALL)?;
        let Some((mem, exec, _)) = enter(&mut c) else {
            return Ok(NO_EXEC);
        };
        let Some(a) = read_addr(mem, addr) else {
            return Ok(status::BAD_POINTER);
        };
        let Some(dst) = guest_mut(mem, out, 16) else {
            return Ok(status::BAD_POINTER);
        };
        Ok(match exec.next_hop(a) {
            Ok(hop) => {
                dst.copy_from_slice(&hop);
                status::OK
            }
            Err(code) => code,
        })
    })?;
    l.func_wrap(m, "deliver_to_app", |mut c: Cx<'_>, app: i32| -> Ret {
        let n = capsule_bytes(&c);
        charge(&mut c, fuel::copy(n))?;
        Ok(enter(&mut c).map_or(NO_EXEC, |(_, exec, _)| exec.deliver_to_app(app)))
    })?;
    l.func_wrap(
        m,
        "store_get",
        |mut c: Cx<'_>, key: i32, key_len: i32, out: i32, cap: i32| -> Ret {
            let max_value = exec(&c).map_or(0, |e| e.node.store.config().max_value_len);
            let n = in_bounds(&c, key, key_len) + in_bounds(&c, out, cap).min(max_value);
            charge(&mut c, fuel::store(n))?;
            let Some((mem, exec, scratch)) = enter(&mut c) else {
                return Ok(NO_EXEC);
            };
            // Key and output may overlap in guest memory: copy the key out first. The
            // store's key-length limit bounds the copy.
            let Some(k) = guest(mem, key, key_len) else {
                return Ok(status::BAD_POINTER);
            };
            if k.len() > exec.node.store.config().max_key_len {
                return Ok(status::TOO_LARGE);
            }
            scratch.clear();
            scratch.extend_from_slice(k);
            Ok(match guest_mut(mem, out, cap) {
                Some(dst) => exec.store_get(scratch, dst),
                None => status::BAD_POINTER,
            })
        },
    )?;
    l.func_wrap(
        m,
        "store_put",
        |mut c: Cx<'_>, key: i32, key_len: i32, val: i32, val_len: i32, ttl_ms: i64| -> Ret {
            let n = in_bounds(&c, key, key_len) + in_bounds(&c, val, val_len);
            charge(&mut c, fuel::CALL + fuel::store(n))?;
            let Some((mem, exec, _)) = enter(&mut c) else {
                return Ok(NO_EXEC);
            };
            Ok(match (guest(mem, key, key_len), guest(mem, val, val_len)) {
                (Some(k), Some(v)) => exec.store_put(k, v, ttl_ms),
                _ => status::BAD_POINTER,
            })
        },
    )?;
    l.func_wrap(
        m,
        "store_remove",
        |mut c: Cx<'_>, key: i32, key_len: i32| -> Ret {
            let n = in_bounds(&c, key, key_len);
            charge(&mut c, fuel::copy(n))?;
            let Some((mem, exec, _)) = enter(&mut c) else {
                return Ok(NO_EXEC);
            };
            Ok(match guest(mem, key, key_len) {
                Some(k) => exec.store_remove(k),
                None => status::BAD_POINTER,
            })
        },
    )?;
    l.func_wrap(
        m,
        "log",
        |mut c: Cx<'_>, level: i32, msg: i32, len: i32| -> Ret {
            let max = exec(&c).map_or(0, |e| e.limits.max_log_len);
            let n = in_bounds(&c, msg, len).min(max);
            charge(&mut c, fuel::LOG_LINE + fuel::copy(n))?;
            let Some((mem, exec, _)) = enter(&mut c) else {
                return Ok(NO_EXEC);
            };
            Ok(match guest(mem, msg, len) {
                Some(text) => exec.log(level, text),
                None => status::BAD_POINTER,
            })
        },
    )?;
    Ok(())
}
