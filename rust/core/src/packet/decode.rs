//! Decode a frame into the few fields a brief line shows.

use super::{
    array, be16, be32, byte, ethertype, ipproto, locate_transport, parse_l2, LinkType, Located,
    Tags, TransportAt, L2,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// (source, destination) Ethernet addresses, when the link type has them and they were captured.
    pub macs: Option<([u8; 6], [u8; 6])>,
    pub l2: Option<L2>,
    pub net: Net,
    pub transport: Transport,
    pub fragment: Option<TransportAt>,
    /// The IPv4 protocol or IPv6 next header behind the extension headers, once found.
    pub ip_proto: Option<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Net {
    /// The frame ends before its ethertype.
    Short,
    /// IEEE 802.3 frame with a length field instead of an ethertype.
    Llc {
        length: u16,
    },
    Arp(Arp),
    Ipv4(Ipv4),
    Ipv6(Ipv6),
    Other {
        ethertype: u16,
    },
    /// A known network protocol whose header is cut short.
    Truncated {
        ethertype: u16,
    },
    /// A link type whose frames we do not decode (802.11, USB, ...).
    Undecoded {
        link: u32,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arp {
    pub op: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: [u8; 4],
    pub target_mac: [u8; 6],
    pub target_ip: [u8; 4],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4 {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub total_len: u16,
    pub header_len: u8,
    pub ttl: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub payload_len: u16,
    pub hop_limit: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    None,
    Tcp(Tcp),
    Udp {
        sport: u16,
        dport: u16,
        length: u16,
    },
    Sctp {
        sport: u16,
        dport: u16,
    },
    Icmp(Icmp),
    Icmp6(Icmp),
    /// A fragment other than the first: no transport header in it.
    LaterFragment {
        proto: u8,
    },
    Other {
        proto: u8,
    },
    /// The transport header of `proto` is cut short.
    Truncated {
        proto: u8,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tcp {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    /// The nine flag bits, FIN in bit 0.
    pub flags: u16,
    pub window: u16,
    /// Payload length from the IP lengths, when they are consistent.
    pub payload_len: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Icmp {
    pub kind: u8,
    pub code: u8,
    /// (identifier, sequence) of echo requests and replies.
    pub echo: Option<(u16, u16)>,
}

pub fn decode(frame: &[u8], link: LinkType) -> Decoded {
    let macs = match link {
        LinkType::Ethernet => array::<6>(frame, 6).zip(array::<6>(frame, 0)),
        _ => None,
    };
    let mut out = Decoded {
        macs,
        l2: None,
        net: Net::Short,
        transport: Transport::None,
        fragment: None,
        ip_proto: None,
    };
    if let LinkType::Other(n) = link {
        out.net = Net::Undecoded { link: n };
        return out;
    }
    let Some(l2) = parse_l2(frame, link, Tags::Stored) else {
        return out;
    };
    out.l2 = Some(l2);
    let (et, l3) = (l2.ethertype, l2.l3);
    out.net = match et {
        _ if l2.has_macs && et < ethertype::MIN_ETHERTYPE => Net::Llc { length: et },
        ethertype::ARP => arp(frame, l3).map_or(Net::Truncated { ethertype: et }, Net::Arp),
        ethertype::IPV4 => ipv4(frame, l3).map_or(Net::Truncated { ethertype: et }, Net::Ipv4),
        ethertype::IPV6 => ipv6(frame, l3).map_or(Net::Truncated { ethertype: et }, Net::Ipv6),
        _ => Net::Other { ethertype: et },
    };
    if !matches!(out.net, Net::Ipv4(_) | Net::Ipv6(_)) {
        return out;
    }
    let at = match locate_transport(frame, et, l3) {
        Located::At(at) => at,
        Located::Truncated => {
            out.transport = Transport::Truncated { proto: 0 };
            return out;
        }
        Located::NotIp => return out,
    };
    out.ip_proto = Some(at.proto);
    if at.frag_offset != 0 || at.more_fragments {
        out.fragment = Some(at);
    }
    if !at.is_first_fragment() {
        out.transport = Transport::LaterFragment { proto: at.proto };
        return out;
    }
    let l4_len = match out.net {
        Net::Ipv4(ip) => (ip.total_len as usize).checked_sub(at.l4 - l3),
        Net::Ipv6(ip) => (ip.payload_len as usize + 40).checked_sub(at.l4 - l3),
        _ => None,
    };
    out.transport =
        transport(frame, at, l4_len).unwrap_or(Transport::Truncated { proto: at.proto });
    out
}

fn arp(p: &[u8], at: usize) -> Option<Arp> {
    // Ethernet/IPv4 ARP only: hardware type 1, protocol 0x0800, lengths 6 and 4.
    if be16(p, at)? != 1
        || be16(p, at + 2)? != ethertype::IPV4
        || byte(p, at + 4)? != 6
        || byte(p, at + 5)? != 4
    {
        return None;
    }
    Some(Arp {
        op: be16(p, at + 6)?,
        sender_mac: array(p, at + 8)?,
        sender_ip: array(p, at + 14)?,
        target_mac: array(p, at + 18)?,
        target_ip: array(p, at + 24)?,
    })
}

fn ipv4(p: &[u8], at: usize) -> Option<Ipv4> {
    Some(Ipv4 {
        header_len: (byte(p, at)? & 0x0f) * 4,
        total_len: be16(p, at + 2)?,
        ttl: byte(p, at + 8)?,
        src: array(p, at + 12)?,
        dst: array(p, at + 16)?,
    })
}

fn ipv6(p: &[u8], at: usize) -> Option<Ipv6> {
    Some(Ipv6 {
        payload_len: be16(p, at + 4)?,
        hop_limit: byte(p, at + 7)?,
        src: array(p, at + 8)?,
        dst: array(p, at + 24)?,
    })
}

fn transport(p: &[u8], at: TransportAt, l4_len: Option<usize>) -> Option<Transport> {
    let l4 = at.l4;
    Some(match at.proto {
        ipproto::TCP => {
            let data_offset = (byte(p, l4 + 12)? >> 4) as usize * 4;
            Transport::Tcp(Tcp {
                sport: be16(p, l4)?,
                dport: be16(p, l4 + 2)?,
                seq: be32(p, l4 + 4)?,
                ack: be32(p, l4 + 8)?,
                flags: be16(p, l4 + 12)? & 0x01ff,
                window: be16(p, l4 + 14)?,
                payload_len: l4_len
                    .and_then(|n| n.checked_sub(data_offset))
                    .map(|n| n as u32),
            })
        }
        ipproto::UDP => Transport::Udp {
            sport: be16(p, l4)?,
            dport: be16(p, l4 + 2)?,
            length: be16(p, l4 + 4)?,
        },
        ipproto::SCTP => Transport::Sctp {
            sport: be16(p, l4)?,
            dport: be16(p, l4 + 2)?,
        },
        ipproto::ICMP | ipproto::ICMPV6 => {
            let (kind, code) = (byte(p, l4)?, byte(p, l4 + 1)?);
            let is_echo = match at.proto {
                ipproto::ICMP => kind == 0 || kind == 8,
                _ => kind == 128 || kind == 129,
            };
            let echo = if is_echo {
                Some((be16(p, l4 + 4)?, be16(p, l4 + 6)?))
            } else {
                None
            };
            let icmp = Icmp { kind, code, echo };
            if at.proto == ipproto::ICMP {
                Transport::Icmp(icmp)
            } else {
                Transport::Icmp6(icmp)
            }
        }
        proto => Transport::Other { proto },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prefix_of_a_frame_decodes_without_panic() {
        let mut f = vec![0u8; 14];
        f[12] = 0x81;
        f.extend_from_slice(&[0, 5, 0x86, 0xdd]);
        let mut ip6 = [0u8; 40];
        ip6[0] = 0x60;
        ip6[6] = 0;
        f.extend_from_slice(&ip6);
        f.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0]);
        f.extend_from_slice(&[0; 20]);
        for n in 0..=f.len() {
            let _ = decode(&f[..n], LinkType::Ethernet);
        }
        let d = decode(&f, LinkType::Ethernet);
        assert!(matches!(d.transport, Transport::Tcp(_)));
        assert_eq!(d.l2.unwrap().vlan_ids(), &[5]);
    }
}
