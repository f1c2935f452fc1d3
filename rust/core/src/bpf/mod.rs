//! Classic BPF: the instruction type, named opcodes, an assembler with labels and an interpreter.
//!
//! The kernel's `Documentation/networking/filter.rst` is the reference; names follow `<linux/filter.h>`.

pub mod asm;
pub mod interp;

/// One classic BPF instruction, laid out like the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

impl Insn {
    pub const fn new(code: u16, jt: u8, jf: u8, k: u32) -> Self {
        Insn { code, jt, jf, k }
    }
}

/// The largest program the kernel accepts (`BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;
/// Scratch memory slots (`BPF_MEMWORDS`).
pub const MEM_WORDS: usize = 16;

pub mod op {
    // Instruction classes.
    pub const LD: u16 = 0x00;
    pub const LDX: u16 = 0x01;
    pub const ST: u16 = 0x02;
    pub const STX: u16 = 0x03;
    pub const ALU: u16 = 0x04;
    pub const JMP: u16 = 0x05;
    pub const RET: u16 = 0x06;
    pub const MISC: u16 = 0x07;
    // Load sizes.
    pub const W: u16 = 0x00;
    pub const H: u16 = 0x08;
    pub const B: u16 = 0x10;
    // Load modes.
    pub const IMM: u16 = 0x00;
    pub const ABS: u16 = 0x20;
    pub const IND: u16 = 0x40;
    pub const MEM: u16 = 0x60;
    pub const LEN: u16 = 0x80;
    pub const MSH: u16 = 0xa0;
    // ALU operations.
    pub const ADD: u16 = 0x00;
    pub const SUB: u16 = 0x10;
    pub const MUL: u16 = 0x20;
    pub const DIV: u16 = 0x30;
    pub const OR: u16 = 0x40;
    pub const AND: u16 = 0x50;
    pub const LSH: u16 = 0x60;
    pub const RSH: u16 = 0x70;
    pub const NEG: u16 = 0x80;
    pub const MOD: u16 = 0x90;
    pub const XOR: u16 = 0xa0;
    // Jumps.
    pub const JA: u16 = 0x00;
    pub const JEQ: u16 = 0x10;
    pub const JGT: u16 = 0x20;
    pub const JGE: u16 = 0x30;
    pub const JSET: u16 = 0x40;
    // Operand source.
    pub const K: u16 = 0x00;
    pub const X: u16 = 0x08;
    /// `ret a` rather than `ret #k`.
    pub const RET_A: u16 = 0x10;
    // MISC operations.
    pub const TAX: u16 = 0x00;
    pub const TXA: u16 = 0x80;

    pub const fn class(code: u16) -> u16 {
        code & 0x07
    }
    pub const fn size(code: u16) -> u16 {
        code & 0x18
    }
    pub const fn mode(code: u16) -> u16 {
        code & 0xe0
    }
    pub const fn alu_op(code: u16) -> u16 {
        code & 0xf0
    }
    pub const fn src(code: u16) -> u16 {
        code & 0x08
    }
}

/// Linux ancillary loads: an absolute load at `SKF_AD_OFF + n` reads socket-buffer metadata, not packet bytes.
pub mod ancillary {
    pub const OFF: u32 = (-0x1000i32) as u32;
    pub const PROTOCOL: u32 = OFF;
    pub const VLAN_TAG: u32 = OFF + 44;
    pub const VLAN_TAG_PRESENT: u32 = OFF + 48;
}
