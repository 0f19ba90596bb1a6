//! The argument arrays of `recvmmsg`/`sendmmsg`, shared by every batched socket of the
//! node: the overlay's UDP batches (`crate::udp`) and router mode's AF_PACKET transmit
//! batches (`crate::afpacket`). One header, iovec and socket address per slot; the pointers
//! inside are rewritten before every syscall, so they never outlive or misdirect the
//! buffers they name.

use std::mem;
use std::ptr;

/// Bytes of one message's control buffer: room for a couple of small control messages
/// (`UDP_SEGMENT` on send, `UDP_GRO` on receive).
pub(crate) const CONTROL_LEN: usize = 64;

/// `struct cmsghdr` on 64-bit Linux: `size_t cmsg_len; int cmsg_level; int cmsg_type;`,
/// data after it, every message 8-byte aligned.
const CMSG_HDR: usize = 16;
const _: () = assert!(mem::size_of::<libc::cmsghdr>() == CMSG_HDR);

/// One message's control buffer, aligned as the kernel wants `msg_control`.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub(crate) struct Control([u8; CONTROL_LEN]);

/// The `mmsghdr`/`iovec`/`sockaddr_storage` arrays of one batch, with a control buffer per
/// message.
pub(crate) struct MsgVec {
    pub(crate) names: Vec<libc::sockaddr_storage>,
    pub(crate) iovs: Vec<libc::iovec>,
    pub(crate) hdrs: Vec<libc::mmsghdr>,
    controls: Vec<Control>,
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
            controls: vec![Control([0; CONTROL_LEN]); n],
        }
    }

    /// Give message `i` its whole control buffer (to receive control messages into).
    pub(crate) fn receive_control(&mut self, i: usize) {
        let hdr = &mut self.hdrs[i].msg_hdr;
        hdr.msg_control = self.controls[i].0.as_mut_ptr().cast();
        hdr.msg_controllen = CONTROL_LEN;
    }

    /// Attach one control message (`level`, `ty`, `data`) to message `i` (after
    /// [`set`](Self::set), which clears them). `false` if it does not fit.
    pub(crate) fn push_control(&mut self, i: usize, level: i32, ty: i32, data: &[u8]) -> bool {
        let used = self.hdrs[i].msg_hdr.msg_controllen;
        let len = CMSG_HDR + data.len();
        let end = used + len.next_multiple_of(8);
        let Some(buf) = self.controls[i].0.get_mut(used..end) else {
            return false;
        };
        buf.fill(0);
        buf[..8].copy_from_slice(&len.to_ne_bytes());
        buf[8..12].copy_from_slice(&level.to_ne_bytes());
        buf[12..16].copy_from_slice(&ty.to_ne_bytes());
        buf[16..len].copy_from_slice(data);
        let hdr = &mut self.hdrs[i].msg_hdr;
        hdr.msg_control = self.controls[i].0.as_mut_ptr().cast();
        hdr.msg_controllen = end;
        true
    }

    /// The control messages the kernel returned with message `i`: `(level, type, data)`.
    /// Malformed lengths end the walk.
    pub(crate) fn controls(&self, i: usize) -> impl Iterator<Item = (i32, i32, &[u8])> + '_ {
        let len = self.hdrs[i].msg_hdr.msg_controllen.min(CONTROL_LEN);
        let buf = &self.controls[i].0[..len];
        let mut at = 0;
        std::iter::from_fn(move || {
            let head = buf.get(at..at + CMSG_HDR)?;
            let clen = usize::from_ne_bytes(head[..8].try_into().ok()?);
            let level = i32::from_ne_bytes(head[8..12].try_into().ok()?);
            let ty = i32::from_ne_bytes(head[12..16].try_into().ok()?);
            let data = buf.get(at + CMSG_HDR..at.checked_add(clen)?)?;
            at += clen.max(CMSG_HDR).next_multiple_of(8);
            Some((level, ty, data))
        })
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
