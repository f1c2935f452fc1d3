//! An assembler for classic BPF with forward labels.
//!
//! Conditional jumps only reach 255 instructions ahead; a jump that must go further is rewritten as a short
//! conditional jump over two unconditional `ja`, whose offset is 32 bits wide.

use super::{op, Insn};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

#[derive(Clone, Copy, Debug)]
enum Item {
    Plain(Insn),
    /// `code` is a JMP|cond|K instruction; `far` once relaxation found a target out of reach.
    Cond {
        code: u16,
        k: u32,
        jt: Label,
        jf: Label,
        far: bool,
    },
    Always(Label),
}

impl Item {
    fn len(&self) -> usize {
        match self {
            Item::Cond { far: true, .. } => 3,
            _ => 1,
        }
    }
}

#[derive(Default)]
pub struct Asm {
    items: Vec<Item>,
    /// Label → index of the item it stands before.
    bound: Vec<Option<usize>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AsmError {
    #[error("label used but never placed")]
    Unbound,
    #[error("label jumps backwards")]
    Backward,
    #[error("program of {0} instructions exceeds the kernel's limit of 4096")]
    TooLong(usize),
}

impl Asm {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn label(&mut self) -> Label {
        self.bound.push(None);
        Label(self.bound.len() - 1)
    }

    pub fn place(&mut self, label: Label) {
        self.bound[label.0] = Some(self.items.len());
    }

    pub fn emit(&mut self, insn: Insn) {
        self.items.push(Item::Plain(insn));
    }

    pub fn jump(&mut self, cond: u16, k: u32, jt: Label, jf: Label) {
        self.items.push(Item::Cond {
            code: op::JMP | cond | op::K,
            k,
            jt,
            jf,
            far: false,
        });
    }

    pub fn goto(&mut self, target: Label) {
        self.items.push(Item::Always(target));
    }

    // Shorthands for the instructions the filter compiler uses.
    pub fn ld_abs(&mut self, size: u16, offset: u32) {
        self.emit(Insn::new(op::LD | size | op::ABS, 0, 0, offset));
    }
    pub fn ld_ind(&mut self, size: u16, offset: u32) {
        self.emit(Insn::new(op::LD | size | op::IND, 0, 0, offset));
    }
    pub fn ld_imm(&mut self, k: u32) {
        self.emit(Insn::new(op::LD | op::IMM, 0, 0, k));
    }
    pub fn ld_mem(&mut self, slot: u32) {
        self.emit(Insn::new(op::LD | op::MEM, 0, 0, slot));
    }
    pub fn ldx_imm(&mut self, k: u32) {
        self.emit(Insn::new(op::LDX | op::IMM, 0, 0, k));
    }
    pub fn ldx_mem(&mut self, slot: u32) {
        self.emit(Insn::new(op::LDX | op::MEM, 0, 0, slot));
    }
    pub fn st(&mut self, slot: u32) {
        self.emit(Insn::new(op::ST, 0, 0, slot));
    }
    pub fn stx(&mut self, slot: u32) {
        self.emit(Insn::new(op::STX, 0, 0, slot));
    }
    pub fn alu_k(&mut self, alu: u16, k: u32) {
        self.emit(Insn::new(op::ALU | alu | op::K, 0, 0, k));
    }
    pub fn alu_x(&mut self, alu: u16) {
        self.emit(Insn::new(op::ALU | alu | op::X, 0, 0, 0));
    }
    pub fn tax(&mut self) {
        self.emit(Insn::new(op::MISC | op::TAX, 0, 0, 0));
    }
    pub fn txa(&mut self) {
        self.emit(Insn::new(op::MISC | op::TXA, 0, 0, 0));
    }
    pub fn ret(&mut self, k: u32) {
        self.emit(Insn::new(op::RET | op::K, 0, 0, k));
    }

    /// Resolve labels into relative offsets.
    pub fn finish(mut self) -> Result<Vec<Insn>, AsmError> {
        loop {
            let starts = self.starts();
            let mut widened = false;
            for i in 0..self.items.len() {
                if let Item::Cond {
                    jt, jf, far: false, ..
                } = self.items[i]
                {
                    let from = starts[i] + 1;
                    let reach = |l: Label| -> Result<usize, AsmError> {
                        let to = starts[self.target(l)?];
                        to.checked_sub(from).ok_or(AsmError::Backward)
                    };
                    if reach(jt)? > 255 || reach(jf)? > 255 {
                        if let Item::Cond { far, .. } = &mut self.items[i] {
                            *far = true;
                        }
                        widened = true;
                    }
                }
            }
            if !widened {
                return self.lay_out(&starts);
            }
        }
    }

    fn target(&self, label: Label) -> Result<usize, AsmError> {
        self.bound[label.0].ok_or(AsmError::Unbound)
    }

    /// Position of every item, plus one past the end (where a label may be placed).
    fn starts(&self) -> Vec<usize> {
        let mut starts = Vec::with_capacity(self.items.len() + 1);
        let mut at = 0;
        for item in &self.items {
            starts.push(at);
            at += item.len();
        }
        starts.push(at);
        starts
    }

    fn lay_out(&self, starts: &[usize]) -> Result<Vec<Insn>, AsmError> {
        let total = *starts.last().unwrap_or(&0);
        if total > super::MAX_INSNS {
            return Err(AsmError::TooLong(total));
        }
        let mut out = Vec::with_capacity(total);
        let distance = |from: usize, l: Label| -> Result<usize, AsmError> {
            starts[self.target(l)?]
                .checked_sub(from + 1)
                .ok_or(AsmError::Backward)
        };
        for (i, item) in self.items.iter().enumerate() {
            let at = starts[i];
            match *item {
                Item::Plain(insn) => out.push(insn),
                Item::Always(l) => {
                    out.push(Insn::new(op::JMP | op::JA, 0, 0, distance(at, l)? as u32))
                }
                Item::Cond {
                    code,
                    k,
                    jt,
                    jf,
                    far: false,
                } => out.push(Insn::new(
                    code,
                    distance(at, jt)? as u8,
                    distance(at, jf)? as u8,
                    k,
                )),
                Item::Cond {
                    code,
                    k,
                    jt,
                    jf,
                    far: true,
                } => {
                    out.push(Insn::new(code, 0, 1, k));
                    out.push(Insn::new(
                        op::JMP | op::JA,
                        0,
                        0,
                        distance(at + 1, jt)? as u32,
                    ));
                    out.push(Insn::new(
                        op::JMP | op::JA,
                        0,
                        0,
                        distance(at + 2, jf)? as u32,
                    ));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn far_conditional_jumps_become_trampolines() {
        let mut asm = Asm::new();
        let (yes, no) = (asm.label(), asm.label());
        asm.ld_abs(op::H, 12);
        asm.jump(op::JEQ, 0x800, yes, no);
        for _ in 0..300 {
            asm.ld_imm(0);
        }
        asm.place(yes);
        asm.ret(1);
        asm.place(no);
        asm.ret(0);
        let prog = asm.finish().unwrap();
        assert_eq!(prog.len(), 2 + 2 + 300 + 2);
        assert_eq!((prog[1].jt, prog[1].jf), (0, 1));
        // ja to `yes`: from index 2, lands on 304.
        assert_eq!(prog[2].k as usize + 3, 304);
        assert_eq!(prog[3].k as usize + 4, 305);
    }

    #[test]
    fn unplaced_label_is_an_error() {
        let mut asm = Asm::new();
        let l = asm.label();
        asm.goto(l);
        assert_eq!(asm.finish(), Err(AsmError::Unbound));
    }
}
