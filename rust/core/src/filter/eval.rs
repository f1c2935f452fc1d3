//! Direct evaluation of a filter over a frame, in user space.
//!
//! The semantics are those of the compiled program, read for read: the link layer and the transport
//! locator are established first (a frame cut inside them matches nothing); within a group, fields are
//! read in a fixed order and a field cut short ends the evaluation with "no match", as a BPF load past
//! the end does.

use super::expr::{Expr, Group, IpNet, Proto};
use crate::packet::{
    ethertype, ipproto, locate_transport, parse_l2, LinkType, Located, Tags, TransportAt, L2,
};

/// What a filter needs established before its groups run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    pub link_layer: bool,
    pub transport: bool,
    pub vlan_ids: bool,
}

impl Needs {
    pub fn of(expr: &Expr) -> Needs {
        let mut n = Needs::default();
        for (g, _) in expr.terms() {
            match g {
                Group::Eth(..) => {}
                Group::Vlan(_) => {
                    n.link_layer = true;
                    n.vlan_ids = true;
                }
                Group::Ip(..) => n.link_layer = true,
                Group::Proto(_) | Group::Port(..) | Group::TcpFlags(_) | Group::IcmpType(_) => {
                    n.link_layer = true;
                    n.transport |= reads_transport(g);
                }
            }
        }
        n
    }
}

/// A field was cut short: the packet does not match.
struct Cut;

struct Frame<'a> {
    bytes: &'a [u8],
    link: LinkType,
    l2: Option<L2>,
    transport: Option<TransportAt>,
}

pub fn matches(expr: &Expr, needs: Needs, bytes: &[u8], link: LinkType, tags: Tags) -> bool {
    let mut frame = Frame {
        bytes,
        link,
        l2: None,
        transport: None,
    };
    if needs.link_layer {
        match parse_l2(bytes, link, tags) {
            Some(l2) => frame.l2 = Some(l2),
            None => return false,
        }
    }
    // Groups that do not look past the network header go first: most packets fail one of them, and then
    // the transport header need not be found. The result is the same, since every group must pass.
    // A field cut short rejects the packet whether its group is required or excluded, as a BPF load past
    // the end does.
    let passes = |frame: &Frame, (g, excluded): (&Group, bool)| match frame.group(g) {
        Ok(matched) => matched != excluded,
        Err(Cut) => false,
    };
    if !expr
        .terms()
        .filter(|(g, _)| !reads_transport(g))
        .all(|t| passes(&frame, t))
    {
        return false;
    }
    if needs.transport {
        let l2 = frame.l2.expect("link layer parsed above");
        match locate_transport(bytes, l2.ethertype, l2.l3) {
            Located::At(at) => frame.transport = Some(at),
            Located::NotIp => {}
            Located::Truncated => return false,
        }
    }
    expr.terms()
        .filter(|(g, _)| reads_transport(g))
        .all(|t| passes(&frame, t))
}

fn reads_transport(g: &Group) -> bool {
    match g {
        Group::Port(..) | Group::TcpFlags(_) | Group::IcmpType(_) => true,
        Group::Proto(ps) => ps.iter().any(|p| matches!(p, Proto::Ip(_))),
        Group::Eth(..) | Group::Vlan(_) | Group::Ip(..) => false,
    }
}

impl Frame<'_> {
    #[inline]
    fn field<const N: usize>(&self, at: usize) -> Result<[u8; N], Cut> {
        crate::packet::array(self.bytes, at).ok_or(Cut)
    }

    #[inline]
    fn l2(&self) -> &L2 {
        self.l2
            .as_ref()
            .expect("groups that read past the link layer parse it first")
    }

    #[inline]
    fn group(&self, g: &Group) -> Result<bool, Cut> {
        match g {
            Group::Eth(side, macs) => {
                if self.link != LinkType::Ethernet {
                    return Ok(false);
                }
                if side.checks_dst() {
                    let dst = self.field::<6>(0)?;
                    if macs.iter().any(|m| m.0 == dst) {
                        return Ok(true);
                    }
                }
                if side.checks_src() {
                    let src = self.field::<6>(6)?;
                    if macs.iter().any(|m| m.0 == src) {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Group::Vlan(ids) => Ok(self.l2().vlan_ids().iter().any(|v| ids.contains(v))),
            Group::Proto(protos) => {
                let et = self.l2().ethertype;
                let proto = self.transport.map(|t| t.proto);
                Ok(protos.iter().any(|p| match p {
                    Proto::Arp => et == ethertype::ARP,
                    Proto::Ip(n) => proto == Some(*n),
                }))
            }
            Group::Ip(side, nets) => self.ip_group(*side, nets),
            Group::TcpFlags(flags) => {
                let Some(t) = self.transport.filter(|t| t.proto == ipproto::TCP) else {
                    return Ok(false);
                };
                if !t.is_first_fragment() {
                    return Ok(false);
                }
                let [bits] = self.field::<1>(t.l4 + 13)?;
                Ok(bits & Group::tcp_flag_mask(flags) != 0)
            }
            Group::IcmpType(types) => {
                let Some(t) = self.transport else {
                    return Ok(false);
                };
                let of = |ty: &super::expr::IcmpType| match t.proto {
                    ipproto::ICMP => ty.v4,
                    ipproto::ICMPV6 => ty.v6,
                    _ => None,
                };
                if !types.iter().any(|ty| of(ty).is_some()) || !t.is_first_fragment() {
                    return Ok(false);
                }
                let [kind] = self.field::<1>(t.l4)?;
                Ok(types.iter().any(|ty| of(ty) == Some(kind)))
            }
            Group::Port(side, ranges) => {
                let Some(t) = self.transport else {
                    return Ok(false);
                };
                if !matches!(t.proto, ipproto::TCP | ipproto::UDP | ipproto::SCTP)
                    || !t.is_first_fragment()
                {
                    return Ok(false);
                }
                if side.checks_src() {
                    let p = u16::from_be_bytes(self.field::<2>(t.l4)?);
                    if ranges.iter().any(|r| r.contains(p)) {
                        return Ok(true);
                    }
                }
                if side.checks_dst() {
                    let p = u16::from_be_bytes(self.field::<2>(t.l4 + 2)?);
                    if ranges.iter().any(|r| r.contains(p)) {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
        }
    }

    #[inline]
    fn ip_group(&self, side: super::expr::Side, nets: &[IpNet]) -> Result<bool, Cut> {
        let l2 = self.l2();
        let l3 = l2.l3;
        let has = |v6: bool| nets.iter().any(|n| matches!(n, IpNet::V6 { .. }) == v6);
        match l2.ethertype {
            ethertype::IPV4 if has(false) => {
                for (wanted, at) in [(side.checks_src(), 12), (side.checks_dst(), 16)] {
                    if wanted {
                        let a = u32::from_be_bytes(self.field::<4>(l3 + at)?);
                        if nets.iter().any(|n| n.contains_v4(a)) {
                            return Ok(true);
                        }
                    }
                }
                Ok(false)
            }
            ethertype::IPV6 if has(true) => {
                for (wanted, at) in [(side.checks_src(), 8), (side.checks_dst(), 24)] {
                    if wanted {
                        let a = u128::from_be_bytes(self.field::<16>(l3 + at)?);
                        if nets.iter().any(|n| n.contains_v6(a)) {
                            return Ok(true);
                        }
                    }
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }
}
