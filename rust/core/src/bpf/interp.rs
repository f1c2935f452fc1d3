//! A classic BPF interpreter with the kernel's semantics: a load past the end of the packet, or a division
//! by zero, ends the program with 0 (drop).

use super::{ancillary, op, Insn, MEM_WORDS};

/// Socket-buffer metadata that ancillary loads read. Packets from files have none of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ancillary {
    /// The 802.1Q tag the kernel (or the NIC) took out of the frame, if any.
    pub vlan_tci: Option<u16>,
    /// `skb->protocol`, the ethertype in network byte order as a number.
    pub protocol: u16,
}

/// Run `prog` over `packet`; the result is how many bytes to keep (0 = drop).
pub fn run(prog: &[Insn], packet: &[u8], anc: &Ancillary) -> u32 {
    run_checked(prog, packet, anc).unwrap_or(0)
}

fn load(packet: &[u8], size: u16, at: u32) -> Option<u32> {
    let at = at as usize;
    let width = match size {
        op::W => 4,
        op::H => 2,
        _ => 1,
    };
    let bytes = packet.get(at..at.checked_add(width)?)?;
    Some(bytes.iter().fold(0u32, |acc, &b| (acc << 8) | b as u32))
}

fn load_ancillary(k: u32, anc: &Ancillary) -> Option<u32> {
    match k {
        ancillary::VLAN_TAG => Some(anc.vlan_tci.unwrap_or(0) as u32),
        ancillary::VLAN_TAG_PRESENT => Some(anc.vlan_tci.is_some() as u32),
        ancillary::PROTOCOL => Some(anc.protocol as u32),
        _ => None,
    }
}

fn run_checked(prog: &[Insn], packet: &[u8], anc: &Ancillary) -> Option<u32> {
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; MEM_WORDS];
    let mut pc = 0usize;
    loop {
        let insn = *prog.get(pc)?;
        pc += 1;
        let k = insn.k;
        match op::class(insn.code) {
            op::LD => {
                a = match op::mode(insn.code) {
                    op::IMM => k,
                    op::ABS if k >= ancillary::OFF => load_ancillary(k, anc)?,
                    op::ABS => load(packet, op::size(insn.code), k)?,
                    op::IND => load(packet, op::size(insn.code), x.checked_add(k)?)?,
                    op::MEM => *mem.get(k as usize)?,
                    op::LEN => packet.len() as u32,
                    _ => return None,
                }
            }
            op::LDX => {
                x = match op::mode(insn.code) {
                    op::IMM => k,
                    op::MEM => *mem.get(k as usize)?,
                    op::LEN => packet.len() as u32,
                    op::MSH => (load(packet, op::B, k)? & 0x0f) << 2,
                    _ => return None,
                }
            }
            op::ST => *mem.get_mut(k as usize)? = a,
            op::STX => *mem.get_mut(k as usize)? = x,
            op::ALU => {
                let operand = if op::src(insn.code) == op::X { x } else { k };
                a = match op::alu_op(insn.code) {
                    op::ADD => a.wrapping_add(operand),
                    op::SUB => a.wrapping_sub(operand),
                    op::MUL => a.wrapping_mul(operand),
                    op::DIV => a.checked_div(operand)?,
                    op::MOD => a.checked_rem(operand)?,
                    op::OR => a | operand,
                    op::AND => a & operand,
                    op::XOR => a ^ operand,
                    op::LSH => a.checked_shl(operand).unwrap_or(0),
                    op::RSH => a.checked_shr(operand).unwrap_or(0),
                    op::NEG => a.wrapping_neg(),
                    _ => return None,
                }
            }
            op::JMP => {
                let operand = if op::src(insn.code) == op::X { x } else { k };
                let taken = match op::alu_op(insn.code) {
                    op::JA => {
                        pc = pc.checked_add(k as usize)?;
                        continue;
                    }
                    op::JEQ => a == operand,
                    op::JGT => a > operand,
                    op::JGE => a >= operand,
                    op::JSET => a & operand != 0,
                    _ => return None,
                };
                pc += if taken { insn.jt } else { insn.jf } as usize;
            }
            op::RET => return Some(if insn.code & op::RET_A != 0 { a } else { k }),
            op::MISC => {
                if insn.code & op::TXA != 0 {
                    a = x
                } else {
                    x = a
                }
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prog_ipv4_only() -> Vec<Insn> {
        // tcpdump -dd 'ip'
        vec![
            Insn::new(0x28, 0, 0, 0x0000000c),
            Insn::new(0x15, 0, 1, 0x00000800),
            Insn::new(0x6, 0, 0, 0x00040000),
            Insn::new(0x6, 0, 0, 0x00000000),
        ]
    }

    #[test]
    fn runs_a_libpcap_program() {
        let mut frame = [0u8; 60];
        frame[12] = 0x08;
        assert_eq!(
            run(&prog_ipv4_only(), &frame, &Ancillary::default()),
            0x40000
        );
        frame[12] = 0x86;
        frame[13] = 0xdd;
        assert_eq!(run(&prog_ipv4_only(), &frame, &Ancillary::default()), 0);
    }

    #[test]
    fn load_past_the_end_drops() {
        assert_eq!(run(&prog_ipv4_only(), &[0u8; 13], &Ancillary::default()), 0);
    }

    #[test]
    fn ancillary_vlan_loads() {
        let prog = [
            Insn::new(op::LD | op::W | op::ABS, 0, 0, ancillary::VLAN_TAG),
            Insn::new(op::RET | op::RET_A, 0, 0, 0),
        ];
        let anc = Ancillary {
            vlan_tci: Some(0x2005),
            protocol: 0,
        };
        assert_eq!(run(&prog, &[], &anc), 0x2005);
    }
}
