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
use std::os::fd::{AsFd, OwnedFd};

use crate::bpf::asm::{Asm, Reg};
use crate::bpf::sys::{self, ProgType};

/// `BPF_TCX_INGRESS` (`enum bpf_attach_type`).
const ATTACH_TCX_INGRESS: u32 = 46;
/// `TCX_DROP` (= `TC_ACT_SHOT`).
const TCX_DROP: i32 = 2;

/// A drop-everything program attached to an interface's tcx ingress hook; detached on drop.
#[derive(Debug)]
pub(super) struct IngressDrop {
    _link: OwnedFd,
}

impl IngressDrop {
    /// Load the program and attach it to `ifindex` (in the calling thread's network
    /// namespace). The errors say which step failed.
    pub(super) fn attach(ifindex: u32) -> io::Result<IngressDrop> {
        let mut a = Asm::new();
        a.mov_imm(Reg::R0, TCX_DROP);
        a.exit();
        let insns = a.finish().map_err(io::Error::other)?;
        let prog = sys::prog_load(ProgType::SchedCls, &insns, "ants_drop", 0, 0)?;
        let link = sys::link_create(prog.as_fd(), ifindex, ATTACH_TCX_INGRESS, 0).map_err(|e| {
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
