//! The filter as a value: groups of alternatives, all groups required.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Which address or port of a packet a word looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Either,
    Src,
    Dst,
}

impl Side {
    pub fn checks_src(self) -> bool {
        matches!(self, Side::Either | Side::Src)
    }
    pub fn checks_dst(self) -> bool {
        matches!(self, Side::Either | Side::Dst)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

/// An address prefix; host bits are always zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpNet {
    V4 { addr: u32, prefix: u8 },
    V6 { addr: u128, prefix: u8 },
}

impl IpNet {
    pub fn contains_v4(&self, a: u32) -> bool {
        match *self {
            IpNet::V4 { addr, prefix } => a & mask32(prefix) == addr,
            IpNet::V6 { .. } => false,
        }
    }
    pub fn contains_v6(&self, a: u128) -> bool {
        match *self {
            IpNet::V6 { addr, prefix } => a & mask128(prefix) == addr,
            IpNet::V4 { .. } => false,
        }
    }
}

pub fn mask32(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix as u32)
    }
}

pub fn mask128(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix as u32)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub fn contains(&self, p: u16) -> bool {
        self.lo <= p && p <= self.hi
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// IPv4 protocol or IPv6 next header (after extension headers).
    Ip(u8),
    Arp,
}

/// A TCP flag, as its bit in the flags byte (offset 13 of the TCP header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpFlag(pub u8);

/// An ICMP message type: the ICMPv4 and the ICMPv6 type it means (a number means itself in both; a name
/// may mean different numbers, or exist in one only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IcmpType {
    pub v4: Option<u8>,
    pub v6: Option<u8>,
}

/// One end of TCP connections (an address and a port), either way: the packets it sends and those
/// sent to it. Not a filter word: `stream` leaves out the two ends of the SSH connection it runs over,
/// so that what it sends is not captured again (by itself, or by a stream of another session).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpEnd {
    /// A host address (a full prefix).
    pub addr: IpNet,
    pub port: u16,
}

impl TcpEnd {
    pub fn new(addr: IpAddr, port: u16) -> TcpEnd {
        let addr = match addr {
            IpAddr::V4(v4) => IpNet::V4 {
                addr: v4.into(),
                prefix: 32,
            },
            IpAddr::V6(v6) => IpNet::V6 {
                addr: v6.into(),
                prefix: 128,
            },
        };
        TcpEnd { addr, port }
    }
}

/// One filter word, repeated: its values are alternatives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Group {
    Eth(Side, Vec<Mac>),
    Ip(Side, Vec<IpNet>),
    Port(Side, Vec<PortRange>),
    Proto(Vec<Proto>),
    Vlan(Vec<u16>),
    /// Any of these flags set (TCP only, first fragments only).
    TcpFlags(Vec<TcpFlag>),
    /// ICMP or ICMPv6 messages of any of these types (first fragments only).
    IcmpType(Vec<IcmpType>),
    /// The TCP packets from or to one end (first fragments only); only ever excluded.
    TcpEnd(TcpEnd),
}

impl Group {
    /// The flags byte mask of a `TcpFlags` group.
    pub fn tcp_flag_mask(flags: &[TcpFlag]) -> u8 {
        flags.iter().fold(0, |m, f| m | f.0)
    }
}

/// Every group in `groups` must match and no group in `excluded` may (`not port 22`). An empty
/// expression matches every packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expr {
    pub groups: Vec<Group>,
    pub excluded: Vec<Group>,
}

impl Expr {
    /// Each group with whether it is excluded, required ones first.
    pub fn terms(&self) -> impl Iterator<Item = (&Group, bool)> {
        let required = self.groups.iter().map(|g| (g, false));
        required.chain(self.excluded.iter().map(|g| (g, true)))
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.excluded.is_empty()
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IpNet::V4 { addr, prefix: 32 } => write!(f, "{}", Ipv4Addr::from(addr)),
            IpNet::V4 { addr, prefix } => write!(f, "{}/{}", Ipv4Addr::from(addr), prefix),
            IpNet::V6 { addr, prefix: 128 } => write!(f, "{}", Ipv6Addr::from(addr)),
            IpNet::V6 { addr, prefix } => write!(f, "{}/{}", Ipv6Addr::from(addr), prefix),
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

fn side_word(base: &str, side: Side) -> &'static str {
    match (base, side) {
        ("eth", Side::Either) => "eth",
        ("eth", Side::Src) => "ethsrc",
        ("eth", Side::Dst) => "ethdest",
        ("ip", Side::Either) => "ip",
        ("ip", Side::Src) => "ipsrc",
        ("ip", Side::Dst) => "ipdest",
        (_, Side::Either) => "port",
        (_, Side::Src) => "srcport",
        (_, Side::Dst) => "destport",
    }
}

/// Writes `word value` for each value, each preceded by `prefix` (`""` or `"not "`).
struct Words<'a, 'f, 'g> {
    f: &'a mut fmt::Formatter<'f>,
    prefix: &'g str,
    first: bool,
}

impl Words<'_, '_, '_> {
    fn one(&mut self, text: fmt::Arguments<'_>) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.f.write_str(" ")?;
        }
        self.f.write_str(self.prefix)?;
        self.f.write_fmt(text)
    }

    fn each<T: fmt::Display>(&mut self, word: &str, values: &[T]) -> fmt::Result {
        values
            .iter()
            .try_for_each(|v| self.one(format_args!("{word} {v}")))
    }

    fn group(&mut self, g: &Group) -> fmt::Result {
        match g {
            Group::Eth(s, v) => self.each(side_word("eth", *s), v),
            Group::Ip(s, v) => self.each(side_word("ip", *s), v),
            Group::Port(s, v) => self.each(side_word("port", *s), v),
            Group::Vlan(v) => self.each("vlan", v),
            Group::TcpFlags(v) => v.iter().try_for_each(|f| {
                let name = super::words::tcp_flag_name(*f);
                self.one(format_args!("tcpflags {name}"))
            }),
            Group::IcmpType(v) => {
                v.iter()
                    .try_for_each(|t| match super::words::icmp_type_name(*t) {
                        Some(name) => self.one(format_args!("icmptype {name}")),
                        None => self.one(format_args!("icmptype {}", t.v4.or(t.v6).unwrap_or(0))),
                    })
            }
            Group::TcpEnd(e) => match e.addr {
                IpNet::V6 { .. } => self.one(format_args!("tcp-end [{}]:{}", e.addr, e.port)),
                IpNet::V4 { .. } => self.one(format_args!("tcp-end {}:{}", e.addr, e.port)),
            },
            Group::Proto(v) => v.iter().try_for_each(|p| match p {
                Proto::Arp => self.one(format_args!("arp")),
                Proto::Ip(n) => match super::words::proto_alias(*n) {
                    Some(alias) => self.one(format_args!("{alias}")),
                    None => self.one(format_args!("proto {n}")),
                },
            }),
        }
    }
}

/// The canonical classic spelling, e.g. `ipsrc 198.18.0.1 tcp port 80 port 443 not port 22`; a left-out
/// end of TCP connections, which no word makes, reads `not tcp-end 198.18.0.1:40000`.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words = Words {
            f,
            prefix: "",
            first: true,
        };
        for (g, excluded) in self.terms() {
            words.prefix = if excluded { "not " } else { "" };
            words.group(g)?;
        }
        Ok(())
    }
}
