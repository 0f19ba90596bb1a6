//! The protocol's soft-store: ANTS `put(key, value, age)` state that expires by itself.
//!
//! Each protocol (capsule type) has its own namespace: capsules of other types can neither
//! read nor remove these entries. Entries can vanish early under global memory pressure
//! (least recently used first), so treat the store as a cache of soft state.

use core::time::Duration;

use crate::error::{Error, Result, check};
use crate::sys;

/// Handle to this protocol's soft-store namespace.
#[derive(Debug)]
pub struct Store {
    _private: (),
}

impl Store {
    pub(crate) fn new() -> Store {
        Store { _private: () }
    }

    /// Copy the value of `key` into `buf` and return it, `None` if absent or expired,
    /// [`Error::BufferTooSmall`] if it does not fit.
    pub fn get<'b>(&mut self, key: &[u8], buf: &'b mut [u8]) -> Result<Option<&'b [u8]>> {
        match check(sys::store_get(key, buf)) {
            Ok(len) => {
                let len = len as usize;
                match buf.get(..len) {
                    Some(v) => Ok(Some(v)),
                    None => Err(Error::BufferTooSmall { needed: len }),
                }
            }
            Err(Error::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A fixed-size value, `None` if absent; [`Error::Malformed`] if its length is not `N`.
    pub fn get_array<const N: usize>(&mut self, key: &[u8]) -> Result<Option<[u8; N]>> {
        let mut buf = [0u8; N];
        match self.get(key, &mut buf) {
            Ok(Some(v)) if v.len() == N => Ok(Some(buf)),
            Ok(Some(_)) | Err(Error::BufferTooSmall { .. }) => Err(Error::Malformed),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Insert or replace `key` for `ttl` (clamped by the node's maximum; must be > 0).
    pub fn put(&mut self, key: &[u8], value: &[u8], ttl: Duration) -> Result<()> {
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        check(sys::store_put(key, value, ms)).map(drop)
    }

    /// Remove `key`; `Ok(false)` if it was not there.
    pub fn remove(&mut self, key: &[u8]) -> Result<bool> {
        match check(sys::store_remove(key)) {
            Ok(_) => Ok(true),
            Err(Error::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
