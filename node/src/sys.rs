//! Small system-call helpers every socket of the node shares: the AF_PACKET ring
//! (`crate::afpacket`), the AF_XDP socket (`crate::afxdp`) and the UDP overlay
//! (`crate::udp`).
//!
//! - [`setsockopt`] / [`setsockopt_int`]: one option from a safe value.
//! - [`Mmap`]: a mapping (a socket's ring, or anonymous memory), unmapped on drop.

use std::ffi::c_void;
use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::ptr::{self, NonNull};

/// `setsockopt(fd, level, opt, &value, sizeof value)` for any plain-old-data `value`.
pub(crate) fn setsockopt<T: Copy>(
    fd: impl AsFd,
    level: libc::c_int,
    opt: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` is a live `T` for the whole call and its exact size is passed with it;
    // the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            level,
            opt,
            ptr::from_ref(value).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `setsockopt` with a C `int` (the form of every boolean and size option).
pub(crate) fn setsockopt_int(
    fd: impl AsFd,
    level: libc::c_int,
    opt: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    setsockopt(fd, level, opt, &value)
}

/// A mapping, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mmap {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping belongs to the process, not to a thread; `Mmap` hands out access only
// through `&mut self` (bytes) or raw pointers that its owner (a ring) uses under the kernel's
// protocol for that ring.
unsafe impl Send for Mmap {}
// SAFETY: `&Mmap` exposes only the base address and the length.
unsafe impl Sync for Mmap {}

impl Mmap {
    fn map(
        len: usize,
        flags: i32,
        fd: Option<BorrowedFd<'_>>,
        offset: libc::off_t,
    ) -> io::Result<Mmap> {
        let fd = fd.map_or(-1, |f| f.as_raw_fd());
        // SAFETY: a fresh mapping chosen by the kernel (null hint), readable and writable,
        // of a socket's ring or of anonymous memory; the result is checked before use.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Mmap { base, len })
    }

    /// `len` bytes of the ring the socket `fd` sized, at page offset `offset`, shared with
    /// the kernel (and populated when `populate`).
    pub(crate) fn shared(
        fd: BorrowedFd<'_>,
        len: usize,
        offset: libc::off_t,
        populate: bool,
    ) -> io::Result<Mmap> {
        let populate = if populate { libc::MAP_POPULATE } else { 0 };
        Self::map(len, libc::MAP_SHARED | populate, Some(fd), offset)
    }

    /// `len` bytes of private anonymous memory, populated, on transparent huge pages where
    /// the kernel has them (`MADV_HUGEPAGE`, asked before the first touch so that the pages
    /// are faulted in huge): memory the kernel and the process both walk frame by frame (an
    /// AF_XDP UMEM) then costs one TLB entry per 2 MiB instead of one per 4 KiB.
    pub(crate) fn anonymous_huge(len: usize) -> io::Result<Mmap> {
        let mut map = Self::map(len, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, None, 0)?;
        // SAFETY: advice about our own fresh mapping, exactly its range; failure (no THP in
        // this kernel, or switched off) leaves ordinary pages, which is fine.
        unsafe {
            libc::madvise(
                map.base.as_ptr().cast::<c_void>(),
                map.len,
                libc::MADV_HUGEPAGE,
            )
        };
        // Fault every page in now, as MAP_POPULATE would have.
        for page in map.bytes_mut().chunks_mut(4096) {
            page[0] = 0;
        }
        Ok(map)
    }

    /// Start of the mapping (page aligned).
    pub(crate) fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The mapping as bytes, for memory the kernel does not touch while the borrow lasts
    /// (the caller's ring protocol says which).
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` bytes, readable and writable, alive as long as `self`;
        // `&mut self` makes this the only Rust view. The owner (the AF_XDP socket) hands out
        // only UMEM frames the kernel has given back or not yet been given.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr(), self.len) }
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping `map` created, unmapped only here; no slice into it
        // outlives its owner.
        unsafe { libc::munmap(self.base.as_ptr().cast::<c_void>(), self.len) };
    }
}
