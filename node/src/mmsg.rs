//! The argument arrays of `recvmmsg`/`sendmmsg`, shared by every batched socket of the
//! node: the overlay's UDP batches (`crate::udp`) and router mode's AF_PACKET transmit
//! batches (`crate::afpacket`). One header, iovec and socket address per slot; the pointers
//! inside are rewritten before every syscall, so they never outlive or misdirect the
//! buffers they name.

use std::mem;
use std::ptr;

/// The `mmsghdr`/`iovec`/`sockaddr_storage` arrays of one batch.
pub(crate) struct MsgVec {
    pub(crate) names: Vec<libc::sockaddr_storage>,
    pub(crate) iovs: Vec<libc::iovec>,
    pub(crate) hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in `iovs` and `hdrs` only ever point into buffers owned by the
// batch that owns this `MsgVec`; they are rewritten right before each syscall and never
// dereferenced by Rust code, so moving or sharing the batch across threads is sound.
unsafe impl Send for MsgVec {}
// SAFETY: as above; `&MsgVec` gives no access to the pointers' targets.
unsafe impl Sync for MsgVec {}

impl MsgVec {
    /// Room for `n` messages.
    pub(crate) fn new(n: usize) -> Self {
        // SAFETY: these are plain C structs of integers, byte arrays and raw pointers, for which
        // all-zero bytes are a valid value (null pointers, zero lengths, AF_UNSPEC).
        let (name, iov, hdr) = unsafe {
            (
                mem::zeroed::<libc::sockaddr_storage>(),
                mem::zeroed::<libc::iovec>(),
                mem::zeroed::<libc::mmsghdr>(),
            )
        };
        MsgVec {
            names: vec![name; n],
            iovs: vec![iov; n],
            hdrs: vec![hdr; n],
        }
    }

    /// Messages the arrays hold.
    pub(crate) fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Point header `i` at iovec `i` (covering `base..base+len`) and at socket address `i`
    /// of `name_len` bytes — none when `name_len` is 0 (a socket bound or connected to its
    /// destination).
    pub(crate) fn set(&mut self, i: usize, base: *mut u8, len: usize, name_len: libc::socklen_t) {
        self.iovs[i] = libc::iovec {
            iov_base: base.cast(),
            iov_len: len,
        };
        let hdr = &mut self.hdrs[i];
        hdr.msg_len = 0;
        hdr.msg_hdr.msg_name = if name_len == 0 {
            ptr::null_mut()
        } else {
            ptr::from_mut(&mut self.names[i]).cast()
        };
        hdr.msg_hdr.msg_namelen = name_len;
        hdr.msg_hdr.msg_iov = ptr::from_mut(&mut self.iovs[i]);
        hdr.msg_hdr.msg_iovlen = 1;
        hdr.msg_hdr.msg_control = ptr::null_mut();
        hdr.msg_hdr.msg_controllen = 0;
        hdr.msg_hdr.msg_flags = 0;
    }
}
