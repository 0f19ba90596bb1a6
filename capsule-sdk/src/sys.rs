//! The host ABI, one function per import: the raw `extern` declaration (wasm32) next to a
//! slice-based wrapper that every other module uses. On native targets the wrappers call the
//! [`mock`](crate::mock) host instead, which runs the node's own implementation of each call.
//!
//! Wrappers return the raw status (`>= 0` success); [`error`](mod@crate::error) turns it into a `Result`.
//! Lengths are passed as `usize`, which is `i32` on wasm32; a slice longer than guest memory
//! cannot exist, so the casts below never truncate there.

#[cfg(target_arch = "wasm32")]
mod raw {
    #[link(wasm_import_module = "ants")]
    unsafe extern "C" {
        pub(super) fn node_address(out: *mut u8) -> i32;
        pub(super) fn node_time() -> i64;
        pub(super) fn node_random(out: *mut u8, len: usize) -> i32;
        pub(super) fn capsule_len(field: i32) -> i32;
        pub(super) fn capsule_read(field: i32, offset: u32, out: *mut u8, len: usize) -> i32;
        pub(super) fn capsule_write(field: i32, offset: u32, src: *const u8, len: usize) -> i32;
        pub(super) fn capsule_resize(field: i32, new_len: usize) -> i32;
        pub(super) fn capsule_resource() -> i32;
        pub(super) fn route_for_node(addr: *const u8) -> i32;
        pub(super) fn route_for_node_with(addr: *const u8, resource: i32) -> i32;
        pub(super) fn node_neighbours(out: *mut u8, cap: usize) -> i32;
        pub(super) fn next_hop(addr: *const u8, out: *mut u8) -> i32;
        pub(super) fn deliver_to_app(app: u32) -> i32;
        pub(super) fn store_get(key: *const u8, key_len: usize, out: *mut u8, cap: usize) -> i32;
        pub(super) fn store_put(
            key: *const u8,
            key_len: usize,
            val: *const u8,
            val_len: usize,
            ttl_ms: i64,
        ) -> i32;
        pub(super) fn store_remove(key: *const u8, key_len: usize) -> i32;
        pub(super) fn log(level: i32, msg: *const u8, len: usize) -> i32;
    }
}

/// Dispatch to the raw import on wasm32, to the mock host elsewhere.
macro_rules! host {
    (wasm: $wasm:expr, mock: |$e:ident| $mock:expr) => {{
        #[cfg(target_arch = "wasm32")]
        {
            // SAFETY: every pointer passed comes from a live Rust reference or slice with the
            // length passed beside it; the host bounds-checks them again and never keeps them.
            unsafe { $wasm }
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::mock::with(|$e| $mock)
        }
    }};
}

#[cfg(not(target_arch = "wasm32"))]
fn to_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// `node_address(out)`.
#[inline]
pub fn node_address(out: &mut [u8; 16]) -> i32 {
    host!(wasm: raw::node_address(out.as_mut_ptr()),
          mock: |e| { *out = e.node_address(); 0 })
}

/// `node_time()`: nanoseconds since the Unix epoch.
#[inline]
pub fn node_time() -> i64 {
    host!(wasm: raw::node_time(), mock: |e| e.node_time())
}

/// `node_random(out, len)`.
#[inline]
pub fn node_random(out: &mut [u8]) -> i32 {
    host!(wasm: raw::node_random(out.as_mut_ptr(), out.len()),
          mock: |e| e.node_random(out))
}

/// `capsule_len(field)`.
#[inline]
pub fn capsule_len(field: i32) -> i32 {
    host!(wasm: raw::capsule_len(field), mock: |e| e.capsule_len(field))
}

/// `capsule_read(field, offset, out, len)`.
#[inline]
pub fn capsule_read(field: i32, offset: u32, out: &mut [u8]) -> i32 {
    host!(wasm: raw::capsule_read(field, offset, out.as_mut_ptr(), out.len()),
          mock: |e| e.capsule_read(field, offset, out))
}

/// `capsule_write(field, offset, src, len)`.
#[inline]
pub fn capsule_write(field: i32, offset: u32, data: &[u8]) -> i32 {
    host!(wasm: raw::capsule_write(field, offset, data.as_ptr(), data.len()),
          mock: |e| e.capsule_write(field, offset, data))
}

/// `capsule_resize(field, new_len)`.
#[inline]
pub fn capsule_resize(field: i32, new_len: usize) -> i32 {
    host!(wasm: raw::capsule_resize(field, new_len),
          mock: |e| e.capsule_resize(field, to_i32(new_len)))
}

/// `capsule_resource()`.
#[inline]
pub fn capsule_resource() -> i32 {
    host!(wasm: raw::capsule_resource(), mock: |e| e.capsule_resource())
}

/// `route_for_node(addr)`.
#[inline]
pub fn route_for_node(addr: &[u8; 16]) -> i32 {
    host!(wasm: raw::route_for_node(addr.as_ptr()), mock: |e| e.route_for_node(*addr))
}

/// `route_for_node_with(addr, resource)`.
#[inline]
pub fn route_for_node_with(addr: &[u8; 16], resource: u16) -> i32 {
    host!(wasm: raw::route_for_node_with(addr.as_ptr(), i32::from(resource)),
          mock: |e| e.route_for_node_with(*addr, i32::from(resource)))
}

/// `node_neighbours(out, cap)`: `out` holds `out.len() / 16` addresses.
#[inline]
pub fn node_neighbours(out: &mut [u8]) -> i32 {
    host!(wasm: raw::node_neighbours(out.as_mut_ptr(), out.len() / 16),
          mock: |e| e.node_neighbours(out))
}

/// `next_hop(addr, out)`.
#[inline]
pub fn next_hop(addr: &[u8; 16], out: &mut [u8; 16]) -> i32 {
    host!(wasm: raw::next_hop(addr.as_ptr(), out.as_mut_ptr()),
    mock: |e| match e.next_hop(*addr) {
        Ok(hop) => { *out = hop; 0 }
        Err(code) => code,
    })
}

/// `deliver_to_app(app)`.
#[inline]
pub fn deliver_to_app(app: u32) -> i32 {
    host!(wasm: raw::deliver_to_app(app),
          mock: |e| e.deliver_to_app(i32::try_from(app).unwrap_or(-1)))
}

/// `store_get(key, key_len, out, cap)`: the value's full length, or an error status.
#[inline]
pub fn store_get(key: &[u8], out: &mut [u8]) -> i32 {
    host!(wasm: raw::store_get(key.as_ptr(), key.len(), out.as_mut_ptr(), out.len()),
          mock: |e| e.store_get(key, out))
}

/// `store_put(key, key_len, val, val_len, ttl_ms)`.
#[inline]
pub fn store_put(key: &[u8], value: &[u8], ttl_ms: i64) -> i32 {
    host!(wasm: raw::store_put(key.as_ptr(), key.len(), value.as_ptr(), value.len(), ttl_ms),
          mock: |e| e.store_put(key, value, ttl_ms))
}

/// `store_remove(key, key_len)`.
#[inline]
pub fn store_remove(key: &[u8]) -> i32 {
    host!(wasm: raw::store_remove(key.as_ptr(), key.len()), mock: |e| e.store_remove(key))
}

/// `log(level, msg, len)`.
#[inline]
pub fn log(level: i32, msg: &[u8]) -> i32 {
    host!(wasm: raw::log(level, msg.as_ptr(), msg.len()), mock: |e| e.log(level, msg))
}
