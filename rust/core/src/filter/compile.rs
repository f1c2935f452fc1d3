//! Compile a filter to classic BPF, as the kernel runs it on a packet socket: over Ethernet frames, or
//! over packets that start with their network header (tun, WireGuard, PPP, IP tunnels).
//!
//! The program first establishes the link layer (tags the kernel stripped, then up to two in-band tags;
//! or, without a link header, the protocol the kernel noted for the packet) and, when needed, locates the
//! transport header (IPv4 options, IPv6 extension headers); both land in scratch memory. Each group then
//! jumps to `yes` on a match and to `no` otherwise: for a required group `yes` is the next group and `no`
//! the shared `ret #0`; for an excluded one (`not port 22`) the other way round.
//! `eval.rs` states the same semantics directly; property tests hold the two together.

use super::eval::Needs;
use super::expr::{
    mask128, mask32, Expr, Group, IcmpType, IpNet, Mac, PortRange, Proto, Side, TcpEnd, TcpFlag,
};
use crate::bpf::asm::{Asm, AsmError, Label};
use crate::bpf::{ancillary, op, Insn};
use crate::packet::{ethertype, ipproto, MAX_EXT_HEADERS, MAX_INBAND_TAGS};

/// Scratch memory slots.
mod slot {
    pub const ETHERTYPE: u32 = 0;
    pub const L3: u32 = 1;
    /// The stripped tag, then the in-band tags.
    pub const VLAN: [u32; 3] = [2, 3, 4];
    pub const PROTO: u32 = 5;
    pub const L4: u32 = 6;
    pub const FIRST_FRAGMENT: u32 = 7;
    pub const NEXT_HEADER: u32 = 8;
    pub const TEMP: u32 = 9;
}

/// Stored in a VLAN slot when there is no tag; no 12-bit id equals it.
const NO_VLAN: u32 = 0x1_0000;
/// Stored as the protocol of non-IP packets; no 8-bit protocol equals it.
const NOT_IP: u32 = 0x100;

/// What precedes the network header in the packets a program runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkHeader {
    Ethernet,
    /// Nothing: the packet starts with its IPv4 or IPv6 header; the kernel knows its protocol.
    None,
}

pub fn compile(expr: &Expr, snaplen: u32, header: LinkHeader) -> Result<Vec<Insn>, AsmError> {
    let mut c = Compiler { asm: Asm::new() };
    let reject = c.asm.label();
    let needs = Needs::of(expr);
    if needs.link_layer {
        match header {
            LinkHeader::Ethernet => c.link_layer(needs.vlan_ids),
            LinkHeader::None => c.network_layer_only(needs.vlan_ids),
        }
    }
    if needs.transport {
        c.locate_transport();
    }
    for (g, excluded) in expr.terms() {
        // A required group goes on when it matches; an excluded one when it does not.
        let next = c.asm.label();
        let (yes, no) = if excluded {
            (reject, next)
        } else {
            (next, reject)
        };
        match g {
            // Without a link header there are no Ethernet addresses: the group never matches.
            Group::Eth(side, macs) if header == LinkHeader::Ethernet => c.eth(*side, macs, yes),
            Group::Eth(..) => {}
            Group::Vlan(ids) => c.vlan(ids, yes),
            Group::Proto(protos) => c.proto(protos, yes),
            Group::Ip(side, nets) => c.ip(*side, nets, yes, no),
            Group::Port(side, ranges) => c.port(*side, ranges, yes, no),
            Group::TcpFlags(flags) => c.tcp_flags(flags, yes, no),
            Group::IcmpType(types) => c.icmp_type(types, yes, no),
            Group::TcpEnd(end) => c.tcp_end(end, yes, no),
        }
        c.asm.goto(no);
        c.asm.place(next);
    }
    c.asm.ret(snaplen);
    c.asm.place(reject);
    c.asm.ret(0);
    c.asm.finish()
}

struct Compiler {
    asm: Asm,
}

impl Compiler {
    /// A conditional jump that falls through when false.
    fn jump_if(&mut self, cond: u16, k: u32, target: Label) {
        let next = self.asm.label();
        self.asm.jump(cond, k, target, next);
        self.asm.place(next);
    }

    /// Every VLAN slot says "no tag" until a tag is found.
    fn clear_vlan_slots(&mut self) {
        self.asm.ld_imm(NO_VLAN);
        for s in slot::VLAN {
            self.asm.st(s);
        }
    }

    /// ETHERTYPE and L3 (and the VLAN slots) for every frame that reaches the groups.
    fn link_layer(&mut self, vlan_ids: bool) {
        if vlan_ids {
            self.clear_vlan_slots();
        }
        let a = &mut self.asm;
        let (stripped, in_band) = (a.label(), a.label());
        a.ld_abs(op::W, ancillary::VLAN_TAG_PRESENT);
        a.jump(op::JEQ, 0, in_band, stripped);
        a.place(stripped);
        if vlan_ids {
            a.ld_abs(op::W, ancillary::VLAN_TAG);
            a.alu_k(op::AND, 0x0fff);
            a.st(slot::VLAN[0]);
        }
        a.place(in_band);
        a.ld_abs(op::H, 12);
        a.ldx_imm(14);
        let done = a.label();
        for i in 0..MAX_INBAND_TAGS {
            let tag = self.asm.label();
            self.jump_if(op::JEQ, ethertype::VLAN as u32, tag);
            self.jump_if(op::JEQ, ethertype::QINQ as u32, tag);
            self.jump_if(op::JEQ, ethertype::QINQ_OLD as u32, tag);
            let a = &mut self.asm;
            a.goto(done);
            a.place(tag);
            if vlan_ids {
                a.ld_ind(op::H, 0);
                a.alu_k(op::AND, 0x0fff);
                a.st(slot::VLAN[1 + i]);
            }
            a.ld_ind(op::H, 2);
            a.st(slot::ETHERTYPE);
            a.txa();
            a.alu_k(op::ADD, 4);
            a.tax();
            a.ld_mem(slot::ETHERTYPE);
        }
        let a = &mut self.asm;
        a.place(done);
        a.st(slot::ETHERTYPE);
        a.stx(slot::L3);
    }

    /// ETHERTYPE from the kernel's note of the protocol, L3 = 0, and no VLAN tags.
    fn network_layer_only(&mut self, vlan_ids: bool) {
        if vlan_ids {
            self.clear_vlan_slots();
        }
        let a = &mut self.asm;
        // An empty packet matches nothing (its IP version is unknown, as in a file); a load past the end
        // ends the program with "no match", even for a filter of excluded words only.
        a.ld_abs(op::B, 0);
        a.ld_abs(op::H, ancillary::PROTOCOL);
        a.st(slot::ETHERTYPE);
        a.ldx_imm(0);
        a.stx(slot::L3);
    }

    /// PROTO, L4 and FIRST_FRAGMENT, on every path (the kernel's checker wants slots stored before use).
    fn locate_transport(&mut self) {
        let (v4, v6, not_ip, done) = (
            self.asm.label(),
            self.asm.label(),
            self.asm.label(),
            self.asm.label(),
        );
        self.asm.ld_mem(slot::ETHERTYPE);
        self.jump_if(op::JEQ, ethertype::IPV4 as u32, v4);
        self.asm.jump(op::JEQ, ethertype::IPV6 as u32, v6, not_ip);

        let a = &mut self.asm;
        a.place(not_ip);
        a.ld_imm(NOT_IP);
        a.st(slot::PROTO);
        a.ld_imm(0);
        a.st(slot::L4);
        a.st(slot::FIRST_FRAGMENT);
        a.goto(done);

        // IPv4: the header length nibble gives the transport offset; the fragment offset must be 0.
        a.place(v4);
        a.ldx_mem(slot::L3);
        a.ld_ind(op::B, 0);
        a.alu_k(op::AND, 0x0f);
        a.alu_k(op::LSH, 2);
        a.alu_x(op::ADD);
        a.st(slot::L4);
        a.ld_ind(op::H, 6);
        a.alu_k(op::AND, 0x1fff);
        let (first, later, store) = (a.label(), a.label(), a.label());
        a.jump(op::JEQ, 0, first, later);
        a.place(first);
        a.ld_imm(1);
        a.goto(store);
        a.place(later);
        a.ld_imm(0);
        a.place(store);
        a.st(slot::FIRST_FRAGMENT);
        a.ld_ind(op::B, 9);
        a.st(slot::PROTO);
        a.goto(done);

        // IPv6: chase extension headers, X walking from header to header.
        a.place(v6);
        a.ldx_mem(slot::L3);
        a.ld_imm(1);
        a.st(slot::FIRST_FRAGMENT);
        a.ld_ind(op::B, 6);
        a.st(slot::NEXT_HEADER);
        a.txa();
        a.alu_k(op::ADD, 40);
        a.tax();
        let end = self.asm.label();
        for _ in 0..MAX_EXT_HEADERS {
            let (options, fragment, auth, next) = (
                self.asm.label(),
                self.asm.label(),
                self.asm.label(),
                self.asm.label(),
            );
            self.asm.ld_mem(slot::NEXT_HEADER);
            self.jump_if(op::JEQ, ipproto::HOPOPTS as u32, options);
            self.jump_if(op::JEQ, ipproto::ROUTING as u32, options);
            self.jump_if(op::JEQ, ipproto::DSTOPTS as u32, options);
            self.jump_if(op::JEQ, ipproto::FRAGMENT as u32, fragment);
            self.jump_if(op::JEQ, ipproto::AH as u32, auth);
            self.asm.goto(end);
            // Options headers: length in 8-octet units, not counting the first 8.
            self.asm.place(options);
            self.ext_header_step(1, 3);
            self.asm.goto(next);
            // Authentication header: length in 4-octet units, not counting the first 2.
            self.asm.place(auth);
            self.ext_header_step(2, 2);
            self.asm.goto(next);
            let a = &mut self.asm;
            a.place(fragment);
            a.ld_ind(op::H, 2);
            a.alu_k(op::AND, 0xfff8);
            let (keep, later) = (a.label(), a.label());
            a.jump(op::JEQ, 0, keep, later);
            a.place(later);
            a.ld_imm(0);
            a.st(slot::FIRST_FRAGMENT);
            a.place(keep);
            a.ld_ind(op::B, 0);
            a.st(slot::NEXT_HEADER);
            a.txa();
            a.alu_k(op::ADD, 8);
            a.tax();
            a.place(next);
        }
        let a = &mut self.asm;
        a.place(end);
        a.ld_mem(slot::NEXT_HEADER);
        a.st(slot::PROTO);
        a.stx(slot::L4);
        a.place(done);
    }

    /// X += (length byte + `extra`) << `shift`; NEXT_HEADER = first byte.
    fn ext_header_step(&mut self, extra: u32, shift: u32) {
        let a = &mut self.asm;
        a.ld_ind(op::B, 1);
        a.alu_k(op::ADD, extra);
        a.alu_k(op::LSH, shift);
        a.st(slot::TEMP);
        a.ld_ind(op::B, 0);
        a.st(slot::NEXT_HEADER);
        a.ld_mem(slot::TEMP);
        a.alu_x(op::ADD);
        a.tax();
    }

    fn eth(&mut self, side: Side, macs: &[Mac], matched: Label) {
        for (wanted, at) in [(side.checks_dst(), 0), (side.checks_src(), 6)] {
            if !wanted {
                continue;
            }
            for m in macs {
                let m = m.0;
                let (low, next) = (self.asm.label(), self.asm.label());
                self.asm.ld_abs(op::W, at + 2);
                self.asm.jump(
                    op::JEQ,
                    u32::from_be_bytes([m[2], m[3], m[4], m[5]]),
                    low,
                    next,
                );
                self.asm.place(low);
                self.asm.ld_abs(op::H, at);
                self.asm.jump(
                    op::JEQ,
                    u16::from_be_bytes([m[0], m[1]]) as u32,
                    matched,
                    next,
                );
                self.asm.place(next);
            }
        }
    }

    fn vlan(&mut self, ids: &[u16], matched: Label) {
        for s in slot::VLAN {
            self.asm.ld_mem(s);
            for &id in ids {
                self.jump_if(op::JEQ, id as u32, matched);
            }
        }
    }

    fn proto(&mut self, protos: &[Proto], matched: Label) {
        if protos.contains(&Proto::Arp) {
            self.asm.ld_mem(slot::ETHERTYPE);
            self.jump_if(op::JEQ, ethertype::ARP as u32, matched);
        }
        let numbers: Vec<u8> = protos
            .iter()
            .filter_map(|p| if let Proto::Ip(n) = p { Some(*n) } else { None })
            .collect();
        if !numbers.is_empty() {
            self.asm.ld_mem(slot::PROTO);
            for n in numbers {
                self.jump_if(op::JEQ, n as u32, matched);
            }
        }
    }

    fn ip(&mut self, side: Side, nets: &[IpNet], matched: Label, unmatched: Label) {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for net in nets {
            match *net {
                IpNet::V4 { addr, prefix } => v4.push((addr, prefix)),
                IpNet::V6 { addr, prefix } => v6.push((addr, prefix)),
            }
        }
        let (l4, l6) = (self.asm.label(), self.asm.label());
        self.asm.ld_mem(slot::ETHERTYPE);
        if !v4.is_empty() {
            self.jump_if(op::JEQ, ethertype::IPV4 as u32, l4);
        }
        if !v6.is_empty() {
            self.jump_if(op::JEQ, ethertype::IPV6 as u32, l6);
        }
        self.asm.goto(unmatched);
        if !v4.is_empty() {
            self.asm.place(l4);
            self.asm.ldx_mem(slot::L3);
            for (wanted, at) in [(side.checks_src(), 12), (side.checks_dst(), 16)] {
                if !wanted {
                    continue;
                }
                for &(addr, prefix) in &v4 {
                    self.asm.ld_ind(op::W, at);
                    if prefix < 32 {
                        self.asm.alu_k(op::AND, mask32(prefix));
                    }
                    self.jump_if(op::JEQ, addr, matched);
                }
            }
            self.asm.goto(unmatched);
        }
        if !v6.is_empty() {
            self.asm.place(l6);
            self.asm.ldx_mem(slot::L3);
            for (wanted, at) in [(side.checks_src(), 8), (side.checks_dst(), 24)] {
                if !wanted {
                    continue;
                }
                // Touch the last word first: the field is whole or it is cut, whatever the prefix.
                self.asm.ld_ind(op::W, at + 12);
                for &(addr, prefix) in &v6 {
                    self.ipv6_prefix(at, addr, prefix, matched);
                }
            }
            self.asm.goto(unmatched);
        }
    }

    fn ipv6_prefix(&mut self, at: u32, addr: u128, prefix: u8, matched: Label) {
        let mask = mask128(prefix);
        let words = (prefix as usize).div_ceil(32);
        if words == 0 {
            self.asm.goto(matched);
            return;
        }
        let next = self.asm.label();
        for i in 0..words {
            let shift = 96 - 32 * i as u32;
            let (want, m) = ((addr >> shift) as u32, (mask >> shift) as u32);
            self.asm.ld_ind(op::W, at + 4 * i as u32);
            if m != u32::MAX {
                self.asm.alu_k(op::AND, m);
            }
            let target = if i + 1 == words {
                matched
            } else {
                self.asm.label()
            };
            self.asm.jump(op::JEQ, want, target, next);
            if i + 1 != words {
                self.asm.place(target);
            }
        }
        self.asm.place(next);
    }

    /// The transport header of a first fragment of protocol `proto` (X = its offset), or `unmatched`.
    fn first_fragment_of(&mut self, proto: u8, unmatched: Label) {
        let (this, first) = (self.asm.label(), self.asm.label());
        self.asm.ld_mem(slot::PROTO);
        self.asm.jump(op::JEQ, proto as u32, this, unmatched);
        self.asm.place(this);
        self.asm.ld_mem(slot::FIRST_FRAGMENT);
        self.asm.jump(op::JEQ, 0, unmatched, first);
        self.asm.place(first);
        self.asm.ldx_mem(slot::L4);
    }

    fn tcp_flags(&mut self, flags: &[TcpFlag], matched: Label, unmatched: Label) {
        self.first_fragment_of(ipproto::TCP, unmatched);
        let a = &mut self.asm;
        a.ld_ind(op::B, 13);
        a.alu_k(op::AND, Group::tcp_flag_mask(flags) as u32);
        a.jump(op::JEQ, 0, unmatched, matched);
    }

    fn icmp_type(&mut self, types: &[IcmpType], matched: Label, unmatched: Label) {
        let v6 = self.asm.label();
        for (proto, wanted, next) in [
            (
                ipproto::ICMP,
                types.iter().filter_map(|t| t.v4).collect::<Vec<_>>(),
                v6,
            ),
            (
                ipproto::ICMPV6,
                types.iter().filter_map(|t| t.v6).collect(),
                unmatched,
            ),
        ] {
            self.first_fragment_of(proto, next);
            if !wanted.is_empty() {
                self.asm.ld_ind(op::B, 0);
                for t in wanted {
                    self.jump_if(op::JEQ, t as u32, matched);
                }
            }
            self.asm.goto(unmatched);
            if next == v6 {
                self.asm.place(v6);
            }
        }
    }

    /// TCP from or to one end: the source address, then its port; the destination address, then its
    /// port (each tested only when the one before matched, as `eval` reads them).
    fn tcp_end(&mut self, end: &TcpEnd, matched: Label, unmatched: Label) {
        let tcp = self.asm.label();
        self.asm.ld_mem(slot::PROTO);
        self.asm.jump(op::JEQ, ipproto::TCP as u32, tcp, unmatched);
        self.asm.place(tcp);
        let port = [PortRange {
            lo: end.port,
            hi: end.port,
        }];
        let as_destination = self.asm.label();
        for (side, other) in [(Side::Src, as_destination), (Side::Dst, unmatched)] {
            let address_matched = self.asm.label();
            self.ip(side, &[end.addr], address_matched, other);
            self.asm.place(address_matched);
            self.port(side, &port, matched, other);
            self.asm.goto(other);
            if side == Side::Src {
                self.asm.place(as_destination);
            }
        }
    }

    fn port(&mut self, side: Side, ranges: &[PortRange], matched: Label, unmatched: Label) {
        let (has_ports, first) = (self.asm.label(), self.asm.label());
        self.asm.ld_mem(slot::PROTO);
        self.jump_if(op::JEQ, ipproto::TCP as u32, has_ports);
        self.jump_if(op::JEQ, ipproto::UDP as u32, has_ports);
        self.asm
            .jump(op::JEQ, ipproto::SCTP as u32, has_ports, unmatched);
        self.asm.place(has_ports);
        self.asm.ld_mem(slot::FIRST_FRAGMENT);
        self.asm.jump(op::JEQ, 0, unmatched, first);
        self.asm.place(first);
        self.asm.ldx_mem(slot::L4);
        for (wanted, at) in [(side.checks_src(), 0), (side.checks_dst(), 2)] {
            if !wanted {
                continue;
            }
            self.asm.ld_ind(op::H, at);
            for r in ranges {
                if r.lo == r.hi {
                    self.jump_if(op::JEQ, r.lo as u32, matched);
                } else {
                    let (above_lo, next) = (self.asm.label(), self.asm.label());
                    self.asm.jump(op::JGE, r.lo as u32, above_lo, next);
                    self.asm.place(above_lo);
                    self.asm.jump(op::JGT, r.hi as u32, next, matched);
                    self.asm.place(next);
                }
            }
        }
    }
}
