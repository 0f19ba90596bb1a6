//! The memory an AF_XDP socket shares with the kernel: the UMEM (anonymous, page aligned)
//! and the four single-producer/single-consumer rings mapped from the socket.

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::sys::Mmap;

/// One ring: producer and consumer indices, flags, and `size` entries of `T`.
#[derive(Debug)]
pub(super) struct Ring<T> {
    map: Mmap,
    producer: usize,
    consumer: usize,
    flags: usize,
    desc: usize,
    mask: u32,
    size: u32,
    /// Our copy of the index we own (producer for fill/TX, consumer for RX/completion).
    local: u32,
    /// Producer side: the kernel's consumer index as last read (it only moves forward, so
    /// the free slots it implies are a lower bound).
    cached_cons: u32,
    _entry: PhantomData<T>,
}

impl<T: Copy> Ring<T> {
    /// Map the ring at page offset `pgoff` of the socket, `size` entries of `entry` bytes.
    pub(super) fn map(
        fd: &OwnedFd,
        off: &libc::xdp_ring_offset,
        size: u32,
        entry: usize,
        pgoff: u64,
    ) -> io::Result<Ring<T>> {
        debug_assert_eq!(entry, std::mem::size_of::<T>());
        let desc = usize::try_from(off.desc).map_err(|_| io::Error::other("ring offset"))?;
        let len = desc + size as usize * entry;
        let pgoff =
            libc::off_t::try_from(pgoff).map_err(|_| io::Error::other("ring page offset"))?;
        let map = Mmap::shared(fd.as_fd(), len, pgoff, true)?;
        let at = |o: u64| usize::try_from(o).map_err(|_| io::Error::other("ring offset"));
        let (producer, consumer, flags) = (at(off.producer)?, at(off.consumer)?, at(off.flags)?);
        if [producer, consumer, flags]
            .iter()
            .any(|&o| o + 4 > len || o % 4 != 0)
        {
            return Err(io::Error::other("ring offsets outside the mapping"));
        }
        Ok(Ring {
            map,
            producer,
            consumer,
            flags,
            desc,
            mask: size - 1,
            size,
            // A new socket's rings start at index 0, ours included.
            local: 0,
            cached_cons: 0,
            _entry: PhantomData,
        })
    }

    fn index(&self, at: usize) -> &AtomicU32 {
        // SAFETY: `at` was checked to lie 4-aligned inside the mapping, which lives as long
        // as `self`; the kernel and we access the word only atomically (the ring protocol).
        unsafe { AtomicU32::from_ptr(self.map.base().as_ptr().add(at).cast::<u32>()) }
    }

    fn slot(&self, i: u32) -> *mut T {
        let k = (i & self.mask) as usize;
        // SAFETY: `k < size`, and the mapping covers `desc + size * size_of::<T>()` bytes.
        unsafe {
            self.map
                .base()
                .as_ptr()
                .add(self.desc + k * std::mem::size_of::<T>())
                .cast::<T>()
        }
    }

    /// The kernel asks to be woken (`XDP_RING_NEED_WAKEUP`, with `XDP_USE_NEED_WAKEUP`):
    /// for a TX ring, a `sendto` is needed to send what it holds; for a fill ring, a
    /// `recvfrom` or `poll` for the driver to take up receiving again.
    pub(super) fn needs_wakeup(&self) -> bool {
        self.index(self.flags).load(Ordering::Acquire) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    /// Entries the ring holds.
    pub(super) fn size(&self) -> u32 {
        self.size
    }

    // ----- producer side (fill, TX) -----

    /// Entries we may still write (the kernel's consumer index read fresh).
    pub(super) fn free_slots(&self) -> u32 {
        let cons = self.index(self.consumer).load(Ordering::Acquire);
        self.size - self.local.wrapping_sub(cons)
    }

    /// At least `n` entries may still be written; the kernel's consumer index (a cache line
    /// it keeps writing) is read only when the last reading does not show them.
    pub(super) fn has_free(&mut self, n: u32) -> bool {
        if self.size - self.local.wrapping_sub(self.cached_cons) >= n {
            return true;
        }
        self.cached_cons = self.index(self.consumer).load(Ordering::Acquire);
        self.size - self.local.wrapping_sub(self.cached_cons) >= n
    }

    /// Entries published that the kernel has not consumed yet.
    pub(super) fn available_to_kernel(&self) -> u32 {
        let cons = self.index(self.consumer).load(Ordering::Acquire);
        self.local.wrapping_sub(cons)
    }

    /// Write entry `i` after our producer index (not yet published).
    pub(super) fn write_at(&mut self, i: u32, value: T) {
        let p = self.slot(self.local.wrapping_add(i));
        // SAFETY: the slot lies in the mapping; it is past our producer index and within the
        // free slots the caller checked, so the kernel does not read it until we publish.
        unsafe { p.write_unaligned(value) };
    }

    /// Publish `n` entries written with [`write_at`](Self::write_at).
    pub(super) fn publish(&mut self, n: u32) {
        self.local = self.local.wrapping_add(n);
        self.index(self.producer)
            .store(self.local, Ordering::Release);
    }

    /// Write up to `n` entries with `f` and publish them; returns how many.
    pub(super) fn produce(&mut self, n: u32, mut f: impl FnMut(&mut T)) -> u32 {
        let k = n.min(self.free_slots());
        for i in 0..k {
            let p = self.slot(self.local.wrapping_add(i));
            // SAFETY: as in `write_at`: a free slot past our producer index; read and written
            // whole, then published below.
            unsafe {
                let mut v = p.read_unaligned();
                f(&mut v);
                p.write_unaligned(v);
            }
        }
        if k > 0 {
            self.publish(k);
        }
        k
    }

    // ----- consumer side (RX, completion) -----

    /// Entries the kernel published that we have not consumed.
    pub(super) fn available(&self) -> u32 {
        let prod = self.index(self.producer).load(Ordering::Acquire);
        prod.wrapping_sub(self.local).min(self.size)
    }

    /// Read up to `n` entries with `f`, then hand their slots back; returns how many.
    pub(super) fn consume(&mut self, n: u32, mut f: impl FnMut(&T)) -> u32 {
        let k = n.min(self.available());
        for i in 0..k {
            let p = self.slot(self.local.wrapping_add(i));
            // SAFETY: the kernel published this slot (acquire load in `available`) and does
            // not touch it until we move our consumer index past it below.
            let v = unsafe { p.read_unaligned() };
            f(&v);
        }
        if k > 0 {
            self.local = self.local.wrapping_add(k);
            self.index(self.consumer)
                .store(self.local, Ordering::Release);
        }
        k
    }
}
