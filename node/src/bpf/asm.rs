//! An eBPF assembler: instructions as Rust calls, jumps to named labels, map descriptors
//! embedded as 64-bit immediates. Enough for the programs router mode loads (a tcx drop, the
//! XDP fast path) without a compiler, an ELF loader or relocations: the node assembles its
//! programs at start-up with the map descriptors it just created, and the kernel's verifier
//! checks the result.
//!
//! ```
//! use ants_node::bpf::asm::{Asm, Reg, Size};
//! let mut a = Asm::new();
//! a.ldx(Size::W, Reg::R2, Reg::R1, 0); // r2 = *(u32 *)(r1 + 0)
//! a.jeq_imm(Reg::R2, 0, "zero");
//! a.mov_imm(Reg::R0, 1);
//! a.exit();
//! a.label("zero");
//! a.mov_imm(Reg::R0, 2);
//! a.exit();
//! assert_eq!(a.finish().unwrap().len(), 6);
//! ```

use std::collections::HashMap;

/// One instruction (`struct bpf_insn`): opcode, registers (dst low nibble, src high),
/// offset, immediate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode: class | size/op | mode/source.
    pub code: u8,
    /// `dst | src << 4`.
    pub regs: u8,
    /// Memory offset or jump offset.
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

/// The eleven registers: `R0` return value, `R1`–`R5` arguments (clobbered by calls),
/// `R6`–`R9` preserved across calls, `R10` the read-only frame pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Reg {
    R0 = 0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    Fp,
}

/// Width of a memory access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// 1 byte.
    B = 0x10,
    /// 2 bytes.
    H = 0x08,
    /// 4 bytes.
    W = 0x00,
    /// 8 bytes.
    Dw = 0x18,
}

/// 64-bit ALU operations (`BPF_ALU64 | op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Alu {
    Add = 0x00,
    Sub = 0x10,
    Or = 0x40,
    And = 0x50,
    Lsh = 0x60,
    Rsh = 0x70,
    Xor = 0xa0,
    Mov = 0xb0,
}

/// Conditional jumps (`BPF_JMP | op`), unsigned comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Cond {
    Eq = 0x10,
    Gt = 0x20,
    Ge = 0x30,
    Ne = 0x50,
    Lt = 0xa0,
    Le = 0xb0,
}

const CLASS_LDX: u8 = 0x01;
const CLASS_ST: u8 = 0x02;
const CLASS_STX: u8 = 0x03;
const CLASS_ALU: u8 = 0x04;
const CLASS_JMP: u8 = 0x05;
const CLASS_JMP32: u8 = 0x06;
const CLASS_ALU64: u8 = 0x07;
const MODE_MEM: u8 = 0x60;
const SRC_X: u8 = 0x08;
/// `BPF_LD | BPF_DW | BPF_IMM`: a 64-bit immediate over two instructions.
const LD_IMM64: u8 = 0x18;
/// `BPF_PSEUDO_MAP_FD`: the immediate of a `LD_IMM64` is a map descriptor.
const PSEUDO_MAP_FD: u8 = 1;

fn regs(dst: Reg, src: Reg) -> u8 {
    (dst as u8) | ((src as u8) << 4)
}

/// A program being assembled.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: HashMap<&'static str, usize>,
    /// Jumps to patch: (instruction index, label).
    fixups: Vec<(usize, &'static str)>,
}

impl Asm {
    /// An empty program.
    pub fn new() -> Asm {
        Asm::default()
    }

    fn push(&mut self, code: u8, regs: u8, off: i16, imm: i32) {
        self.insns.push(Insn {
            code,
            regs,
            off,
            imm,
        });
    }

    /// Instructions so far.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// `true` before the first instruction.
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// Name the next instruction.
    pub fn label(&mut self, name: &'static str) {
        self.labels.insert(name, self.insns.len());
    }

    /// `dst = imm` (64-bit, sign-extended).
    pub fn mov_imm(&mut self, dst: Reg, imm: i32) {
        self.alu_imm(Alu::Mov, dst, imm);
    }

    /// `dst = src`.
    pub fn mov(&mut self, dst: Reg, src: Reg) {
        self.alu(Alu::Mov, dst, src);
    }

    /// `dst op= imm` (64-bit).
    pub fn alu_imm(&mut self, op: Alu, dst: Reg, imm: i32) {
        self.push(CLASS_ALU64 | op as u8, regs(dst, Reg::R0), 0, imm);
    }

    /// `dst op= src` (64-bit).
    pub fn alu(&mut self, op: Alu, dst: Reg, src: Reg) {
        self.push(CLASS_ALU64 | op as u8 | SRC_X, regs(dst, src), 0, 0);
    }

    /// `dst = bswap16(dst)` on a little-endian host: the 16 low bits read as big-endian
    /// (`BPF_ALU | BPF_END | BPF_TO_BE`, 16), upper bits cleared.
    pub fn be16(&mut self, dst: Reg) {
        self.push(CLASS_ALU | 0xd0 | SRC_X, regs(dst, Reg::R0), 0, 16);
    }

    /// `dst = *(size *)(src + off)`.
    pub fn ldx(&mut self, size: Size, dst: Reg, src: Reg, off: i16) {
        self.push(CLASS_LDX | MODE_MEM | size as u8, regs(dst, src), off, 0);
    }

    /// `*(size *)(dst + off) = src`.
    pub fn stx(&mut self, size: Size, dst: Reg, off: i16, src: Reg) {
        self.push(CLASS_STX | MODE_MEM | size as u8, regs(dst, src), off, 0);
    }

    /// `*(size *)(dst + off) = imm`.
    pub fn st_imm(&mut self, size: Size, dst: Reg, off: i16, imm: i32) {
        self.push(
            CLASS_ST | MODE_MEM | size as u8,
            regs(dst, Reg::R0),
            off,
            imm,
        );
    }

    /// `if dst cond imm goto label` (unsigned).
    pub fn jmp_imm(&mut self, cond: Cond, dst: Reg, imm: i32, label: &'static str) {
        self.fixups.push((self.insns.len(), label));
        self.push(CLASS_JMP | cond as u8, regs(dst, Reg::R0), 0, imm);
    }

    /// `if (u32)dst cond (u32)imm goto label`: a 32-bit comparison, so an immediate with its
    /// top bit set is not sign-extended (Linux 5.1+).
    pub fn jmp32_imm(&mut self, cond: Cond, dst: Reg, imm: u32, label: &'static str) {
        self.fixups.push((self.insns.len(), label));
        self.push(
            CLASS_JMP32 | cond as u8,
            regs(dst, Reg::R0),
            0,
            i32::from_ne_bytes(imm.to_ne_bytes()),
        );
    }

    /// `if dst cond src goto label` (unsigned).
    pub fn jmp(&mut self, cond: Cond, dst: Reg, src: Reg, label: &'static str) {
        self.fixups.push((self.insns.len(), label));
        self.push(CLASS_JMP | cond as u8 | SRC_X, regs(dst, src), 0, 0);
    }

    /// `if dst == imm goto label`.
    pub fn jeq_imm(&mut self, dst: Reg, imm: i32, label: &'static str) {
        self.jmp_imm(Cond::Eq, dst, imm, label);
    }

    /// `if dst != imm goto label`.
    pub fn jne_imm(&mut self, dst: Reg, imm: i32, label: &'static str) {
        self.jmp_imm(Cond::Ne, dst, imm, label);
    }

    /// `goto label`.
    pub fn ja(&mut self, label: &'static str) {
        self.fixups.push((self.insns.len(), label));
        self.push(CLASS_JMP, 0, 0, 0);
    }

    /// `r0 = helper(r1, …, r5)`; clobbers `r1`–`r5`.
    pub fn call(&mut self, helper: i32) {
        self.push(CLASS_JMP | 0x80, 0, 0, helper);
    }

    /// `return r0`.
    pub fn exit(&mut self) {
        self.push(CLASS_JMP | 0x90, 0, 0, 0);
    }

    /// `dst = &map` for the map with descriptor `fd` (two instructions).
    pub fn ld_map_fd(&mut self, dst: Reg, fd: i32) {
        self.push(LD_IMM64, (dst as u8) | (PSEUDO_MAP_FD << 4), 0, fd);
        self.push(0, 0, 0, 0);
    }

    /// The program with every jump resolved; `Err` names a label that was never placed or
    /// a jump too far for its 16-bit offset.
    pub fn finish(mut self) -> Result<Vec<Insn>, String> {
        for &(at, name) in &self.fixups {
            let target = *self
                .labels
                .get(name)
                .ok_or_else(|| format!("jump to unknown label `{name}`"))?;
            let off = i64::try_from(target).unwrap_or(i64::MAX)
                - i64::try_from(at).unwrap_or(i64::MAX)
                - 1;
            self.insns[at].off =
                i16::try_from(off).map_err(|_| format!("jump to `{name}` is too far"))?;
        }
        Ok(self.insns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_the_kernel_macros() {
        let mut a = Asm::new();
        a.mov_imm(Reg::R0, 2); // BPF_MOV64_IMM(BPF_REG_0, 2)
        a.ldx(Size::W, Reg::R2, Reg::R1, 4); // BPF_LDX_MEM(BPF_W, 2, 1, 4)
        a.stx(Size::H, Reg::Fp, -8, Reg::R3); // BPF_STX_MEM(BPF_H, 10, 3, -8)
        a.alu_imm(Alu::Add, Reg::R2, 34); // BPF_ALU64_IMM(BPF_ADD, 2, 34)
        a.be16(Reg::R3); // BPF_ENDIAN(BPF_TO_BE, 3, 16)
        a.jmp(Cond::Gt, Reg::R2, Reg::R3, "out"); // BPF_JMP_REG(BPF_JGT, 2, 3, +3)
        a.jmp32_imm(Cond::Ne, Reg::R4, 0x8000_0001, "out"); // BPF_JMP32_IMM(BPF_JNE, 4, …, +2)
        a.ld_map_fd(Reg::R1, 7); // BPF_LD_MAP_FD(1, 7)
        a.label("out");
        a.call(51);
        a.exit();
        let p = a.finish().unwrap();
        let raw: Vec<(u8, u8, i16, i32)> =
            p.iter().map(|i| (i.code, i.regs, i.off, i.imm)).collect();
        assert_eq!(
            raw,
            vec![
                (0xb7, 0x00, 0, 2),
                (0x61, 0x12, 4, 0),
                (0x6b, 0x3a, -8, 0),
                (0x07, 0x02, 0, 34),
                (0xdc, 0x03, 0, 16),
                (0x2d, 0x32, 3, 0),
                (0x56, 0x04, 2, i32::MIN + 1),
                (0x18, 0x11, 0, 7),
                (0x00, 0x00, 0, 0),
                (0x85, 0x00, 0, 51),
                (0x95, 0x00, 0, 0),
            ]
        );
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }

    #[test]
    fn unknown_labels_and_backward_jumps() {
        let mut a = Asm::new();
        a.ja("nowhere");
        assert!(a.finish().unwrap_err().contains("nowhere"));
        let mut a = Asm::new();
        a.label("top");
        a.mov_imm(Reg::R0, 0);
        a.ja("top");
        assert_eq!(a.finish().unwrap()[1].off, -2);
    }
}
