//! Which conversation a packet belongs to, and what it says there.

use crate::brief::Addr;
use crate::packet::{
    array, be16, byte, decode, ethertype, ipproto, locate_transport, Decoded, LinkType, Located,
    Net, Transport, MAX_TAGS,
};

/// How a conversation's two ends are told apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FlowKind {
    /// TCP, UDP, SCTP: an address and a port at each end.
    Ports,
    /// ICMP or ICMPv6 echo: the two addresses and the echo identifier.
    Echo,
    /// Any other IP protocol, ICMP other than echo included: the address pair and the protocol.
    Pair,
}

/// Marks the unused places of a key's VLAN stack (ids are 12 bits: this is none of them), so that an
/// untagged frame and one tagged with id 0 (priority tagging) differ.
pub(super) const NO_VLAN: u16 = u16::MAX;

/// A conversation's identity: both directions of it have the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Key {
    /// The capture interface, as numbered by the caller (0: none named).
    pub iface: u32,
    pub vlans: [u16; MAX_TAGS],
    pub kind: FlowKind,
    pub ip_proto: u8,
    /// (address, port or echo identifier) of each end, the smaller first.
    pub ends: [(Addr, u16); 2],
}

impl Key {
    /// The key of a packet from `src` to `dst`, and which of its ends sent it.
    fn of(
        iface: u32,
        vlans: [u16; MAX_TAGS],
        kind: FlowKind,
        ip_proto: u8,
        src: (Addr, u16),
        dst: (Addr, u16),
    ) -> (Key, usize) {
        let (ends, from) = if src <= dst {
            ([src, dst], 0)
        } else {
            ([dst, src], 1)
        };
        let key = Key {
            iface,
            vlans,
            kind,
            ip_proto,
            ends,
        };
        (key, from)
    }
}

/// What a packet says about its conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Says {
    /// TCP, with its flags when they were captured.
    Tcp(Option<u16>),
    EchoRequest,
    EchoReply,
    /// An ICMP or ICMPv6 message of this type that is neither echo nor an error.
    Icmp(u8),
    /// Anything else (UDP, SCTP, other protocols).
    Plain,
}

/// Where a packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sorted {
    /// Not IP (ARP, LLC, …), or an IP header cut short.
    NotIp,
    /// IP, but cut before what tells its conversation (a transport header before its ports).
    Unknown,
    /// A packet of conversation `key`, sent by its end `from`; `opens_fragments` when it is the first
    /// fragment of a datagram whose later fragments will come without ports.
    Packet {
        key: Key,
        from: usize,
        says: Says,
        opens_fragments: Option<FragmentKey>,
    },
    /// A fragment after the first: it belongs where the first fragment of its datagram went.
    LaterFragment(FragmentKey),
    /// An ICMP error (unreachable, time exceeded, …) about a packet of conversation `quoted`; `own` is
    /// where the error goes if that conversation is not in the recording.
    Error {
        quoted: Key,
        unreachable: bool,
        own: (Key, usize),
    },
}

/// The datagrams of one direction between two hosts: later fragments carry no ports, so they are
/// counted in the conversation of the latest first fragment with the same key.
pub(super) type FragmentKey = (u32, [u16; MAX_TAGS], Addr, Addr, u8);

/// Whether ICMP (`v6`: ICMPv6) type `kind` is an error that quotes the packet it is about. These never
/// open conversations of their own when the quoted one is known, and a firewall passes them as related.
pub fn is_icmp_error(kind: u8, v6: bool) -> bool {
    if v6 {
        matches!(kind, 1..=4)
    } else {
        matches!(kind, 3 | 4 | 5 | 11 | 12)
    }
}

/// The reply type of an ICMP (`v6`: ICMPv6) request type, for the requests that have one: echo,
/// information, timestamp, address mask, router solicitation; ICMPv6 echo, router and neighbour
/// solicitation, node information, inverse neighbour discovery.
pub fn icmp_reply_of(kind: u8, v6: bool) -> Option<u8> {
    Some(match (v6, kind) {
        (false, 8) => 0,
        (false, 10) => 9,
        (false, 13) => 14,
        (false, 15) => 16,
        (false, 17) => 18,
        (true, 128) => 129,
        (true, 133) => 134,
        (true, 135) => 136,
        (true, 139) => 140,
        (true, 141) => 142,
        _ => return None,
    })
}

fn is_unreachable(kind: u8, v6: bool) -> bool {
    kind == if v6 { 1 } else { 3 }
}

/// Sort `data` (one frame of `link`, captured on interface `iface`).
pub(super) fn sort(data: &[u8], link: LinkType, iface: u32) -> Sorted {
    let d = decode(data, link);
    let (src, dst) = match d.net {
        Net::Ipv4(ip) => (Addr::V4(ip.src), Addr::V4(ip.dst)),
        Net::Ipv6(ip) => (Addr::V6(ip.src), Addr::V6(ip.dst)),
        _ => return Sorted::NotIp,
    };
    let Some(l2) = d.l2 else {
        return Sorted::NotIp;
    };
    if bogus(data, &d, l2.ethertype, l2.l3) {
        return Sorted::Unknown;
    }
    let mut vlans = [NO_VLAN; MAX_TAGS];
    vlans[..l2.vlan_ids().len()].copy_from_slice(l2.vlan_ids());
    // A first fragment: its datagram's later fragments, which carry no ports, are looked up by this.
    let opens = |proto: u8| d.fragment.map(|_| (iface, vlans, src, dst, proto));
    let pair = |proto: u8, says: Says| {
        let (key, from) = Key::of(iface, vlans, FlowKind::Pair, proto, (src, 0), (dst, 0));
        Sorted::Packet {
            key,
            from,
            says,
            opens_fragments: opens(proto),
        }
    };
    let ports = |proto: u8, sport: u16, dport: u16, says: Says| {
        let (key, from) = Key::of(
            iface,
            vlans,
            FlowKind::Ports,
            proto,
            (src, sport),
            (dst, dport),
        );
        Sorted::Packet {
            key,
            from,
            says,
            opens_fragments: opens(proto),
        }
    };
    match d.transport {
        Transport::Tcp(t) => ports(ipproto::TCP, t.sport, t.dport, Says::Tcp(Some(t.flags))),
        Transport::Udp { sport, dport, .. } => ports(ipproto::UDP, sport, dport, Says::Plain),
        Transport::Sctp { sport, dport } => ports(ipproto::SCTP, sport, dport, Says::Plain),
        Transport::Icmp(icmp) | Transport::Icmp6(icmp) => {
            let v6 = matches!(d.transport, Transport::Icmp6(_));
            let proto = if v6 { ipproto::ICMPV6 } else { ipproto::ICMP };
            if let Some((id, _)) = icmp.echo {
                let request = icmp.kind == if v6 { 128 } else { 8 };
                let says = if request {
                    Says::EchoRequest
                } else {
                    Says::EchoReply
                };
                let (key, from) =
                    Key::of(iface, vlans, FlowKind::Echo, proto, (src, id), (dst, id));
                Sorted::Packet {
                    key,
                    from,
                    says,
                    opens_fragments: None,
                }
            } else if is_icmp_error(icmp.kind, v6) {
                let own = match pair(proto, Says::Icmp(icmp.kind)) {
                    Sorted::Packet { key, from, .. } => (key, from),
                    _ => unreachable!("a pair is a packet"),
                };
                match quoted(data, l2.ethertype, l2.l3, iface, vlans) {
                    Some(quoted) => Sorted::Error {
                        quoted,
                        unreachable: is_unreachable(icmp.kind, v6),
                        own,
                    },
                    None => pair(proto, Says::Icmp(icmp.kind)),
                }
            } else {
                pair(proto, Says::Icmp(icmp.kind))
            }
        }
        Transport::Other { proto } => pair(proto, Says::Plain),
        Transport::LaterFragment { proto } => {
            Sorted::LaterFragment((iface, vlans, src, dst, proto))
        }
        // Ports cut short: only whatever stands where they would be, if it was captured.
        Transport::Truncated { .. } => match cut_ports(data, l2.ethertype, l2.l3) {
            Some((proto, sport, dport)) => {
                let says = if proto == ipproto::TCP {
                    Says::Tcp(None)
                } else {
                    Says::Plain
                };
                ports(proto, sport, dport, says)
            }
            None => Sorted::Unknown,
        },
        Transport::None => Sorted::Unknown,
    }
}

/// Whether the headers cannot be what they say (tshark calls them bogus and counts no conversation): an
/// IP version that is not the ethertype's, an IPv4 header shorter than 20 bytes, a TCP header shorter
/// than 20 bytes. Their ports and flags would be read from the wrong bytes.
fn bogus(data: &[u8], d: &Decoded, ether: u16, l3: usize) -> bool {
    let version = byte(data, l3).map_or(0, |b| b >> 4);
    match d.net {
        Net::Ipv4(ip) if version != 4 || ip.header_len < 20 => return true,
        Net::Ipv6(_) if version != 6 => return true,
        _ => {}
    }
    if let Transport::Tcp(_) = d.transport {
        if let Located::At(at) = locate_transport(data, ether, l3) {
            return byte(data, at.l4 + 12).is_some_and(|b| (b >> 4) < 5);
        }
    }
    false
}

/// The ports of a TCP, UDP or SCTP header of which only the start was captured.
fn cut_ports(data: &[u8], ether: u16, l3: usize) -> Option<(u8, u16, u16)> {
    let Located::At(at) = locate_transport(data, ether, l3) else {
        return None;
    };
    match at.proto {
        ipproto::TCP | ipproto::UDP | ipproto::SCTP if at.is_first_fragment() => {
            Some((at.proto, be16(data, at.l4)?, be16(data, at.l4 + 2)?))
        }
        _ => None,
    }
}

/// The key of the packet an ICMP error at `l3` quotes (its IP header and the start of its payload,
/// behind the 8 bytes of the ICMP header), if enough of it was captured.
fn quoted(data: &[u8], ether: u16, l3: usize, iface: u32, vlans: [u16; MAX_TAGS]) -> Option<Key> {
    let Located::At(outer) = locate_transport(data, ether, l3) else {
        return None;
    };
    let inner = data.get(outer.l4 + 8..)?;
    let (ether, src, dst) = match byte(inner, 0)? >> 4 {
        4 => (
            ethertype::IPV4,
            Addr::V4(array(inner, 12)?),
            Addr::V4(array(inner, 16)?),
        ),
        6 => (
            ethertype::IPV6,
            Addr::V6(array(inner, 8)?),
            Addr::V6(array(inner, 24)?),
        ),
        _ => return None,
    };
    let Located::At(at) = locate_transport(inner, ether, 0) else {
        return None;
    };
    let (kind, ends) = match at.proto {
        _ if !at.is_first_fragment() => (FlowKind::Pair, (0, 0)),
        ipproto::TCP | ipproto::UDP | ipproto::SCTP => (
            FlowKind::Ports,
            (be16(inner, at.l4)?, be16(inner, at.l4 + 2)?),
        ),
        ipproto::ICMP | ipproto::ICMPV6 => {
            let kind = byte(inner, at.l4)?;
            let echo = if at.proto == ipproto::ICMP {
                matches!(kind, 0 | 8)
            } else {
                matches!(kind, 128 | 129)
            };
            if echo {
                let id = be16(inner, at.l4 + 4)?;
                (FlowKind::Echo, (id, id))
            } else {
                (FlowKind::Pair, (0, 0))
            }
        }
        _ => (FlowKind::Pair, (0, 0)),
    };
    Some(Key::of(iface, vlans, kind, at.proto, (src, ends.0), (dst, ends.1)).0)
}
