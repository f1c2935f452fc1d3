//! Lax, zero-copy header decoding. Nothing here allocates or panics, whatever the bytes.

mod decode;
mod l2;
mod l3;

pub use decode::{decode, Arp, Decoded, Icmp, Ipv4, Ipv6, Net, Tcp, Transport};
pub use l2::{parse_l2, walk_l2, Tags, L2, MAX_INBAND_TAGS, MAX_TAGS};
pub use l3::{locate_transport, Located, TransportAt, EXT_HEADERS, MAX_EXT_HEADERS};

/// Link-layer header types (the `LINKTYPE_*` numbers of pcap files) that we decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    Ethernet,
    LinuxSll,
    LinuxSll2,
    /// Raw IP, version taken from the first nibble.
    Raw,
    Ipv4,
    Ipv6,
    /// BSD loopback: a 4-byte address family in the capturing host's byte order, then IP.
    Null,
    /// OpenBSD loopback: the same, the family in network byte order.
    Loop,
    /// Any other type: records are kept and written back, but not decoded.
    Other(u32),
}

impl LinkType {
    pub fn from_number(n: u32) -> LinkType {
        match n {
            1 => LinkType::Ethernet,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            101 | 12 | 14 => LinkType::Raw,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            0 => LinkType::Null,
            108 => LinkType::Loop,
            other => LinkType::Other(other),
        }
    }

    pub fn number(self) -> u32 {
        match self {
            LinkType::Ethernet => 1,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
            LinkType::Raw => 101,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
            LinkType::Null => 0,
            LinkType::Loop => 108,
            LinkType::Other(n) => n,
        }
    }

    /// The name libpcap gives the link type (`DLT_EN10MB` without its `DLT_`, as `tcpdump -L` prints
    /// it); `None` for one we do not decode.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            LinkType::Ethernet => "EN10MB",
            LinkType::LinuxSll => "LINUX_SLL",
            LinkType::LinuxSll2 => "LINUX_SLL2",
            LinkType::Raw => "RAW",
            LinkType::Ipv4 => "IPV4",
            LinkType::Ipv6 => "IPV6",
            LinkType::Null => "NULL",
            LinkType::Loop => "LOOP",
            LinkType::Other(_) => return None,
        })
    }
}

/// Which way a packet crossed the interface, as far as the capture knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const IPV6: u16 = 0x86dd;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
    pub const QINQ_OLD: u16 = 0x9100;
    /// Values below this are 802.3 lengths (LLC frames), not ethertypes.
    pub const MIN_ETHERTYPE: u16 = 0x0600;

    /// `|`, not `||`: for each `||` the compiler kept a branch on the frame's kind, which the filter's
    /// branch-free first look cannot afford.
    #[inline(always)]
    pub fn is_vlan_tpid(t: u16) -> bool {
        (t == VLAN) | (t == QINQ) | (t == QINQ_OLD)
    }
}

pub mod ipproto {
    pub const HOPOPTS: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
    pub const DSTOPTS: u8 = 60;
    pub const SCTP: u8 = 132;
}

#[inline]
pub(crate) fn be16(p: &[u8], at: usize) -> Option<u16> {
    let b = p.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

#[inline]
pub(crate) fn be32(p: &[u8], at: usize) -> Option<u32> {
    let b = p.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[inline]
pub(crate) fn byte(p: &[u8], at: usize) -> Option<u8> {
    p.get(at).copied()
}

#[inline]
pub(crate) fn array<const N: usize>(p: &[u8], at: usize) -> Option<[u8; N]> {
    p.get(at..at.checked_add(N)?)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_decoded_link_type_has_its_libpcap_name_and_number() {
        let named = [
            (1, "EN10MB"),
            (113, "LINUX_SLL"),
            (276, "LINUX_SLL2"),
            (101, "RAW"),
            (228, "IPV4"),
            (229, "IPV6"),
            (0, "NULL"),
            (108, "LOOP"),
        ];
        for (number, name) in named {
            let link = LinkType::from_number(number);
            assert_eq!((link.number(), link.name()), (number, Some(name)));
        }
        assert_eq!(LinkType::from_number(127).name(), None);
    }
}
