//! The XDP program of the fast path, assembled with the node's map descriptors.
//!
//! It forwards a frame itself only when the userspace router would forward it unchanged but
//! for the rewrite, and could not have anything else to do: Ethernet II to the ingress
//! interface's MAC, IPv4 without options, a valid header checksum, a total length that fits
//! the frame, TTL > 1, source and destination someone else's unicast address (the route
//! trie marks every other address `special`), a route, a frame that fits the egress MTU,
//! a next hop the node has resolved and still considers reachable, and no TCP/UDP checksum
//! left to offload (its field holding exactly the pseudo-header sum, which a local stack
//! writes there; a complete checksum equal to it by chance, one frame in 65,536, just takes
//! the slow path). It then rewrites the MACs, decrements the TTL, recomputes the header
//! checksum and redirects the frame through the devmap. Everything else — ARP, capsules,
//! ICMP to answer, fragments to make, neighbours to resolve, options, malformed frames — is
//! passed to the kernel, where the node's AF_PACKET ring takes it: the slow path decides
//! exactly as before.
//!
//! Registers: `r6` context, `r7` packet start, `r8` packet end, `r9` the route's map value.
//! Stack: `fp-16..-8` LPM key (prefix length, address), `fp-20` neighbour key, `fp-24`
//! counter key, `fp-28` total length.
//!
//! Cost per forwarded frame: two LPM-trie lookups (source, destination), one hash lookup
//! (neighbour), one per-CPU array lookup (counter); the ingress MAC is compared with
//! immediates, one comparison chain per interface. A frame to one of the host addresses
//! the trie marks special (the router's own addresses, broadcast addresses; up to
//! [`MAX_LOCAL`]) is recognised by comparing its destination with immediates first and
//! passed without any lookup — capsules, which are addressed to the router, among them. The
//! trie would have passed it too: a special /32 is its own longest match.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::bpf::asm::{Alu, Asm, Cond, Insn, Reg, Size};

/// `BPF_FUNC_map_lookup_elem`.
const MAP_LOOKUP_ELEM: i32 = 1;
/// `BPF_FUNC_redirect_map`.
const REDIRECT_MAP: i32 = 51;
/// `XDP_PASS`.
pub(super) const XDP_PASS: i32 = 2;
/// `XDP_REDIRECT`.
pub(super) const XDP_REDIRECT: u32 = 4;

/// Index of the forwarded-frames counter in the `stats` map.
pub(super) const STAT_FORWARDED: u32 = 0;
/// Index of the passed-frames counter.
pub(super) const STAT_PASSED: u32 = 1;
/// Index of the counter of redirects the devmap refused (no entry for the egress: the node
/// fills it with every interface before attaching, so this stays 0).
pub(super) const STAT_REDIRECT_FAILED: u32 = 2;
/// Counters in the `stats` map.
pub(super) const STATS: u32 = 3;
/// Special host addresses the program compares destinations with before its lookups; any
/// beyond are found by the trie lookup as before.
pub(super) const MAX_LOCAL: usize = 16;

/// What the program is built with: the owned interfaces (ifindex, MAC), compared inline,
/// and its maps.
pub(super) struct Maps<'a> {
    /// Forward plain IPv4 itself (the fast path); `false`: only hand frames on.
    pub(super) forward: bool,
    /// Hand frames on to the AF_XDP socket of their receive queue (an XSKMAP), falling back
    /// to the kernel (`XDP_PASS`) where no socket is bound; `None`: to the kernel.
    pub(super) xsk: Option<BorrowedFd<'a>>,
    pub(super) ifaces: &'a [(u32, [u8; 6])],
    /// Host addresses (/32) the route trie marks special: frames to them are passed
    /// before any lookup (at most [`MAX_LOCAL`] are compared; the trie finds the rest).
    pub(super) local: &'a [Ipv4Addr],
    pub(super) routes: BorrowedFd<'a>,
    pub(super) neigh: BorrowedFd<'a>,
    pub(super) tx: BorrowedFd<'a>,
    pub(super) stats: BorrowedFd<'a>,
}

/// Sum the ten 16-bit words of the IPv4 header at `r7 + 14` into `r3` and fold it to 16
/// bits (loaded in host order: one's-complement sums do not care, as long as the result is
/// stored back the same way).
fn header_sum(a: &mut Asm) {
    a.mov_imm(Reg::R3, 0);
    for off in (14..34).step_by(2) {
        a.ldx(Size::H, Reg::R4, Reg::R7, off);
        a.alu(Alu::Add, Reg::R3, Reg::R4);
    }
    fold(a);
}

/// Fold `r3` (< 2^20) to 16 bits, end-around carry included.
fn fold(a: &mut Asm) {
    for _ in 0..2 {
        a.mov(Reg::R4, Reg::R3);
        a.alu_imm(Alu::Rsh, Reg::R4, 16);
        a.alu_imm(Alu::And, Reg::R3, 0xffff);
        a.alu(Alu::Add, Reg::R3, Reg::R4);
    }
}

/// `stats[index] += 1` (per-CPU, no atomics needed); `done` names the label after it.
fn count(a: &mut Asm, stats: i32, index: u32, done: &'static str) {
    a.st_imm(Size::W, Reg::Fp, -24, index as i32);
    lookup(a, stats, -24);
    a.jeq_imm(Reg::R0, 0, done);
    a.ldx(Size::Dw, Reg::R1, Reg::R0, 0);
    a.alu_imm(Alu::Add, Reg::R1, 1);
    a.stx(Size::Dw, Reg::R0, 0, Reg::R1);
    a.label(done);
}

/// `r0 = lookup(map, fp + key)`.
fn lookup(a: &mut Asm, map: i32, key: i16) {
    a.mov(Reg::R2, Reg::Fp);
    a.alu_imm(Alu::Add, Reg::R2, i32::from(key));
    a.ld_map_fd(Reg::R1, map);
    a.call(MAP_LOOKUP_ELEM);
}

/// Assemble the program for `maps`.
pub(super) fn build(maps: &Maps<'_>) -> Result<Vec<Insn>, String> {
    let fd = |m: &BorrowedFd<'_>| m.as_raw_fd();
    let (routes, neigh, tx, stats) = (
        fd(&maps.routes),
        fd(&maps.neigh),
        fd(&maps.tx),
        fd(&maps.stats),
    );
    let mut a = Asm::new();
    a.mov(Reg::R6, Reg::R1);
    if maps.forward {
        forward(&mut a, maps, (routes, neigh, tx, stats))?;
    }
    a.label("pass");
    count(&mut a, stats, STAT_PASSED, "counted_pass");
    match &maps.xsk {
        Some(xsk) => {
            a.ldx(Size::W, Reg::R2, Reg::R6, 16); // xdp_md.rx_queue_index
            a.ld_map_fd(Reg::R1, xsk.as_raw_fd());
            a.mov_imm(Reg::R3, XDP_PASS);
            a.call(REDIRECT_MAP);
        }
        None => a.mov_imm(Reg::R0, XDP_PASS),
    }
    a.exit();
    a.finish()
}

/// The forwarding part: checks, lookups, rewrite, redirect; jumps to `pass` otherwise.
fn forward(
    a: &mut Asm,
    maps: &Maps<'_>,
    (routes, neigh, tx, stats): (i32, i32, i32, i32),
) -> Result<(), String> {
    a.ldx(Size::W, Reg::R7, Reg::R6, 0); // xdp_md.data
    a.ldx(Size::W, Reg::R8, Reg::R6, 4); // xdp_md.data_end
    // Ethernet + a 20-byte IPv4 header present.
    a.mov(Reg::R2, Reg::R7);
    a.alu_imm(Alu::Add, Reg::R2, 34);
    a.jmp(Cond::Gt, Reg::R2, Reg::R8, "pass");
    a.ldx(Size::H, Reg::R3, Reg::R7, 12);
    a.jne_imm(Reg::R3, 0x0008, "pass"); // ethertype 0x0800, read little-endian
    a.ldx(Size::B, Reg::R3, Reg::R7, 14);
    a.jne_imm(Reg::R3, 0x45, "pass"); // version 4, no options
    // To a special host address (ours: capsules, pings; broadcasts): the slow path at once.
    a.ldx(Size::W, Reg::R3, Reg::R7, 30);
    for addr in maps.local.iter().take(MAX_LOCAL) {
        a.jmp32_imm(Cond::Eq, Reg::R3, u32::from_le_bytes(addr.octets()), "pass");
    }
    a.ldx(Size::B, Reg::R3, Reg::R7, 22);
    a.jmp_imm(Cond::Le, Reg::R3, 1, "pass"); // TTL would expire: ICMP from the slow path
    // Total length: at least the header, within the frame.
    a.ldx(Size::H, Reg::R3, Reg::R7, 16);
    a.be16(Reg::R3);
    a.jmp_imm(Cond::Lt, Reg::R3, 20, "pass");
    a.stx(Size::W, Reg::Fp, -28, Reg::R3);
    a.mov(Reg::R4, Reg::R7);
    a.alu(Alu::Add, Reg::R4, Reg::R3);
    a.alu_imm(Alu::Add, Reg::R4, 14);
    a.jmp(Cond::Gt, Reg::R4, Reg::R8, "pass");
    // Header checksum.
    header_sum(a);
    a.jne_imm(Reg::R3, 0xffff, "pass");
    // To the ingress interface's MAC, compared with immediates: one chain per interface.
    a.ldx(Size::W, Reg::R3, Reg::R6, 12); // xdp_md.ingress_ifindex
    a.ldx(Size::W, Reg::R4, Reg::R7, 0);
    a.ldx(Size::H, Reg::R5, Reg::R7, 4);
    const NEXT: [&str; 16] = [
        "if1", "if2", "if3", "if4", "if5", "if6", "if7", "if8", "if9", "if10", "if11", "if12",
        "if13", "if14", "if15", "if16",
    ];
    if maps.ifaces.len() > NEXT.len() {
        return Err(format!(
            "the fast path serves at most {} interfaces",
            NEXT.len()
        ));
    }
    for (k, &(ifindex, mac)) in maps.ifaces.iter().enumerate() {
        let next = NEXT[k];
        a.jmp32_imm(Cond::Ne, Reg::R3, ifindex, next);
        let lo = u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]);
        let hi = u32::from(u16::from_le_bytes([mac[4], mac[5]]));
        a.jmp32_imm(Cond::Ne, Reg::R4, lo, "pass");
        a.jmp32_imm(Cond::Ne, Reg::R5, hi, "pass");
        a.ja("mac_ok");
        a.label(next);
    }
    a.ja("pass"); // an interface the program was not built for
    a.label("mac_ok");
    // The source: someone else's unicast address (no route at all is fine).
    a.st_imm(Size::W, Reg::Fp, -16, 32);
    a.ldx(Size::W, Reg::R3, Reg::R7, 26);
    a.stx(Size::W, Reg::Fp, -12, Reg::R3);
    lookup(a, routes, -16);
    a.jeq_imm(Reg::R0, 0, "source_ok");
    a.ldx(Size::W, Reg::R3, Reg::R0, 12);
    a.jne_imm(Reg::R3, 0, "pass");
    a.label("source_ok");
    // The destination: a route, not special.
    a.ldx(Size::W, Reg::R3, Reg::R7, 30);
    a.stx(Size::W, Reg::Fp, -12, Reg::R3);
    lookup(a, routes, -16);
    a.jeq_imm(Reg::R0, 0, "pass");
    a.ldx(Size::W, Reg::R3, Reg::R0, 12);
    a.jne_imm(Reg::R3, 0, "pass");
    a.mov(Reg::R9, Reg::R0);
    // The whole frame fits the egress MTU: data + 14 + mtu >= data_end.
    a.ldx(Size::W, Reg::R3, Reg::R9, 8);
    a.alu_imm(Alu::And, Reg::R3, 0xffff);
    a.mov(Reg::R4, Reg::R7);
    a.alu(Alu::Add, Reg::R4, Reg::R3);
    a.alu_imm(Alu::Add, Reg::R4, 14);
    a.jmp(Cond::Lt, Reg::R4, Reg::R8, "pass");
    // A TCP/UDP checksum left to offload holds the pseudo-header sum: slow path.
    a.ldx(Size::B, Reg::R3, Reg::R7, 23);
    a.jeq_imm(Reg::R3, 6, "tcp");
    a.jeq_imm(Reg::R3, 17, "udp");
    a.ja("l4_ok");
    // A segment or datagram too short for its header has no checksum to leave to offload.
    a.label("tcp");
    a.mov(Reg::R2, Reg::R7);
    a.alu_imm(Alu::Add, Reg::R2, 52);
    a.jmp(Cond::Gt, Reg::R2, Reg::R8, "l4_ok");
    a.ldx(Size::H, Reg::R5, Reg::R7, 50);
    a.ja("pseudo");
    a.label("udp");
    a.mov(Reg::R2, Reg::R7);
    a.alu_imm(Alu::Add, Reg::R2, 42);
    a.jmp(Cond::Gt, Reg::R2, Reg::R8, "l4_ok");
    a.ldx(Size::H, Reg::R5, Reg::R7, 40);
    a.jeq_imm(Reg::R5, 0, "l4_ok"); // no UDP checksum at all
    a.label("pseudo");
    a.alu_imm(Alu::Lsh, Reg::R3, 8); // [0, proto] read little-endian
    for off in [26, 28, 30, 32] {
        a.ldx(Size::H, Reg::R4, Reg::R7, off);
        a.alu(Alu::Add, Reg::R3, Reg::R4);
    }
    a.ldx(Size::W, Reg::R4, Reg::Fp, -28);
    a.alu_imm(Alu::Sub, Reg::R4, 20);
    a.be16(Reg::R4); // the L4 length as it would be read from the wire
    a.alu(Alu::Add, Reg::R3, Reg::R4);
    fold(a);
    a.jmp(Cond::Eq, Reg::R3, Reg::R5, "pass");
    a.label("l4_ok");
    // The next hop: the gateway, or the destination on the link.
    a.ldx(Size::W, Reg::R3, Reg::R9, 4);
    a.jne_imm(Reg::R3, 0, "have_next_hop");
    a.ldx(Size::W, Reg::R3, Reg::R7, 30);
    a.label("have_next_hop");
    a.stx(Size::W, Reg::Fp, -20, Reg::R3);
    lookup(a, neigh, -20);
    a.jeq_imm(Reg::R0, 0, "pass");
    a.ldx(Size::W, Reg::R3, Reg::R0, 12);
    a.ldx(Size::W, Reg::R4, Reg::R9, 0);
    a.jmp(Cond::Ne, Reg::R3, Reg::R4, "pass");
    // Rewrite: destination and source MAC from the neighbour entry.
    for off in [0, 4, 8] {
        a.ldx(Size::W, Reg::R3, Reg::R0, off);
        a.stx(Size::W, Reg::R7, off, Reg::R3);
    }
    // TTL − 1, header checksum recomputed.
    a.ldx(Size::B, Reg::R3, Reg::R7, 22);
    a.alu_imm(Alu::Sub, Reg::R3, 1);
    a.stx(Size::B, Reg::R7, 22, Reg::R3);
    a.st_imm(Size::H, Reg::R7, 24, 0);
    header_sum(a);
    a.alu_imm(Alu::Xor, Reg::R3, 0xffff);
    a.stx(Size::H, Reg::R7, 24, Reg::R3);
    // Out through the devmap; a missing entry passes the frame instead (counted).
    a.ldx(Size::W, Reg::R2, Reg::R9, 0);
    a.ld_map_fd(Reg::R1, tx);
    a.mov_imm(Reg::R3, XDP_PASS);
    a.call(REDIRECT_MAP);
    a.mov(Reg::R6, Reg::R0);
    a.jne_imm(Reg::R6, XDP_REDIRECT as i32, "redirect_failed");
    count(a, stats, STAT_FORWARDED, "counted_forward");
    a.mov(Reg::R0, Reg::R6);
    a.exit();
    a.label("redirect_failed");
    count(a, stats, STAT_REDIRECT_FAILED, "counted_failed");
    a.mov(Reg::R0, Reg::R6);
    a.exit();
    Ok(())
}
