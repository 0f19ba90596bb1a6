//! A tcx ingress program that drops every frame, so the kernel's IP stack never processes
//! the frames of an interface router mode owns.
//!
//! Packet sockets (`ETH_P_ALL` taps) get each received frame *before* tc ingress runs, so
//! the router's ring still sees everything; only the kernel's own protocol handlers (IP,
//! ARP) are spared. The program is two instructions (`r0 = TCX_DROP; exit`), loaded with
//! `bpf(BPF_PROG_LOAD)` and attached with `bpf(BPF_LINK_CREATE, BPF_TCX_INGRESS)` — no `tc`
//! binary, no netlink, no classifier or action modules. The attachment is a BPF link owned
//! by a file descriptor: closing it (dropping [`IngressDrop`], or the process dying in any
//! way) detaches the program, so a crashed router never leaves an interface black-holed.
//! Needs Linux 6.6+ (tcx) and `CAP_BPF` + `CAP_NET_ADMIN`.
//!
//! What it saves, measured on a 2-core VM (1 M minimum-size frames blasted over a veth into
//! an isolated interface — no address, forwarding off — whose ring a reader drains; CPU of
//! the sending thread, which also runs the veth peer's receive path, 3 runs): 2.55–2.65 µs
//! per frame without the drop, 2.02–2.16 µs with it (~0.5 µs, ~20 %, of kernel work per
//! received frame), and 350 → 470 kpps at the same offered load.

use std::io;
use std::mem;
use std::os::fd::{FromRawFd, OwnedFd};
use std::ptr;

/// `bpf()` commands (`enum bpf_cmd`).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
/// `BPF_PROG_TYPE_SCHED_CLS` (`enum bpf_prog_type`).
const PROG_TYPE_SCHED_CLS: u32 = 3;
/// `BPF_TCX_INGRESS` (`enum bpf_attach_type`).
const ATTACH_TCX_INGRESS: u32 = 46;
/// `TCX_DROP` (= `TC_ACT_SHOT`).
const TCX_DROP: i32 = 2;

/// One eBPF instruction (`struct bpf_insn`): opcode, registers (dst low nibble, src high),
/// offset, immediate.
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, up to `expected_attach_type`.
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_LINK_CREATE` part of `union bpf_attr` with its `tcx` member.
#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    relative_fd: u32,
    _pad: u32,
    expected_revision: u64,
}

/// A drop-everything program attached to an interface's tcx ingress hook; detached on drop.
#[derive(Debug)]
pub(super) struct IngressDrop {
    _link: OwnedFd,
}

/// `bpf(cmd, attr, sizeof attr)`, returning the new descriptor.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a live, fully initialised `repr(C)` prefix of `union bpf_attr` whose
    // size is passed with it (the kernel treats the missing tail as zeros); every pointer in
    // it refers to memory that outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            ptr::from_mut(attr),
            mem::size_of::<T>() as libc::c_uint,
        )
    };
    let fd = libc::c_int::try_from(rc).map_err(|_| io::Error::other("bpf returned a bad fd"))?;
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just created this descriptor for us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl IngressDrop {
    /// Load the program and attach it to `ifindex` (in the calling thread's network
    /// namespace). The errors say which step failed.
    pub(super) fn attach(ifindex: u32) -> io::Result<IngressDrop> {
        let insns = [
            // r0 = TCX_DROP (BPF_ALU64 | BPF_MOV | BPF_K)
            Insn {
                code: 0xb7,
                regs: 0,
                off: 0,
                imm: TCX_DROP,
            },
            // exit (BPF_JMP | BPF_EXIT)
            Insn {
                code: 0x95,
                regs: 0,
                off: 0,
                imm: 0,
            },
        ];
        let license = b"Apache-2.0 OR MIT\0";
        let mut name = [0u8; 16];
        name[..9].copy_from_slice(b"ants_drop");
        let mut load = ProgLoadAttr {
            prog_type: PROG_TYPE_SCHED_CLS,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 0,
            log_size: 0,
            log_buf: 0,
            kern_version: 0,
            prog_flags: 0,
            prog_name: name,
            prog_ifindex: 0,
            expected_attach_type: 0,
        };
        let prog = bpf(BPF_PROG_LOAD, &mut load)
            .map_err(|e| io::Error::new(e.kind(), format!("bpf(BPF_PROG_LOAD): {e}")))?;
        let mut link = LinkCreateAttr {
            prog_fd: u32::try_from(std::os::fd::AsRawFd::as_raw_fd(&prog)).unwrap_or(0),
            target_ifindex: ifindex,
            attach_type: ATTACH_TCX_INGRESS,
            flags: 0,
            relative_fd: 0,
            _pad: 0,
            expected_revision: 0,
        };
        let link = bpf(BPF_LINK_CREATE, &mut link).map_err(|e| {
            let hint = if e.raw_os_error() == Some(libc::EINVAL) {
                " (tcx needs Linux 6.6 or later)"
            } else {
                ""
            };
            io::Error::new(
                e.kind(),
                format!("bpf(BPF_LINK_CREATE, tcx ingress): {e}{hint}"),
            )
        })?;
        // The link holds the program; our descriptor of it may go.
        drop(prog);
        Ok(IngressDrop { _link: link })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_layouts_match_the_kernel_abi() {
        assert_eq!(mem::size_of::<Insn>(), 8);
        assert_eq!(mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(mem::offset_of!(LinkCreateAttr, relative_fd), 16);
        assert_eq!(mem::offset_of!(LinkCreateAttr, expected_revision), 24);
    }
}
