//! The network layer: where the transport header starts, behind IPv4 options and IPv6 extension headers.
//!
//! Like `l2`, this is shared by the decoder and the filter, and the compiled BPF program mirrors its reads.

use super::{be16, byte, ethertype, ipproto};

/// IPv6 extension headers chased before giving up (hop-by-hop, routing, destination options, fragment, AH).
pub const MAX_EXT_HEADERS: usize = 8;
/// The IPv6 next-header values `locate_transport` walks past: any other is the transport protocol.
pub const EXT_HEADERS: [u8; 5] = [
    ipproto::HOPOPTS,
    ipproto::ROUTING,
    ipproto::DSTOPTS,
    ipproto::FRAGMENT,
    ipproto::AH,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransportAt {
    /// IPv4 protocol, or the IPv6 next header after the extension headers.
    pub proto: u8,
    /// Offset of the transport header.
    pub l4: usize,
    /// Fragment offset in bytes (0 for unfragmented packets and first fragments).
    pub frag_offset: u32,
    pub more_fragments: bool,
}

impl TransportAt {
    pub fn is_first_fragment(&self) -> bool {
        self.frag_offset == 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Located {
    NotIp,
    /// The frame ends inside the IP header or an extension header.
    Truncated,
    At(TransportAt),
}

#[inline(always)]
pub fn locate_transport(frame: &[u8], ether: u16, l3: usize) -> Located {
    let found = match ether {
        ethertype::IPV4 => ipv4(frame, l3),
        ethertype::IPV6 => ipv6(frame, l3),
        _ => return Located::NotIp,
    };
    found.map_or(Located::Truncated, Located::At)
}

#[inline(always)]
fn ipv4(frame: &[u8], l3: usize) -> Option<TransportAt> {
    let ihl = (byte(frame, l3)? & 0x0f) as usize * 4;
    let frag = be16(frame, l3 + 6)?;
    let proto = byte(frame, l3 + 9)?;
    Some(TransportAt {
        proto,
        l4: l3 + ihl,
        frag_offset: (frag & 0x1fff) as u32 * 8,
        more_fragments: frag & 0x2000 != 0,
    })
}

fn ipv6(frame: &[u8], l3: usize) -> Option<TransportAt> {
    let mut next = byte(frame, l3 + 6)?;
    let mut at = l3 + 40;
    let (mut frag_offset, mut more_fragments) = (0, false);
    for _ in 0..MAX_EXT_HEADERS {
        match next {
            ipproto::HOPOPTS | ipproto::ROUTING | ipproto::DSTOPTS => {
                let len = byte(frame, at + 1)? as usize;
                next = byte(frame, at)?;
                at += (len + 1) * 8;
            }
            ipproto::FRAGMENT => {
                let field = be16(frame, at + 2)?;
                next = byte(frame, at)?;
                // A later fragment header cannot make the packet a first fragment again.
                if frag_offset == 0 {
                    frag_offset = (field & 0xfff8) as u32;
                }
                more_fragments = field & 1 != 0;
                at += 8;
            }
            ipproto::AH => {
                let len = byte(frame, at + 1)? as usize;
                next = byte(frame, at)?;
                at += (len + 2) * 4;
            }
            _ => break,
        }
    }
    Some(TransportAt {
        proto: next,
        l4: at,
        frag_offset,
        more_fragments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_options_move_the_transport_header() {
        let mut f = [0u8; 40];
        f[0] = 0x46;
        f[9] = 6;
        assert_eq!(
            locate_transport(&f, ethertype::IPV4, 0),
            Located::At(TransportAt {
                proto: 6,
                l4: 24,
                frag_offset: 0,
                more_fragments: false
            })
        );
    }

    #[test]
    fn ipv6_hop_by_hop_then_fragment() {
        let mut f = [0u8; 80];
        f[6] = ipproto::HOPOPTS;
        f[40] = ipproto::FRAGMENT; // hop-by-hop: next = fragment, length 0 → 8 bytes
        f[48] = ipproto::UDP; // fragment header: next = UDP, offset 185*8
        f[50..52].copy_from_slice(&(185u16 << 3 | 1).to_be_bytes());
        let Located::At(t) = locate_transport(&f, ethertype::IPV6, 0) else {
            panic!()
        };
        assert_eq!(
            (t.proto, t.l4, t.frag_offset, t.more_fragments),
            (17, 56, 1480, true)
        );
    }

    #[test]
    fn cut_extension_header_is_truncated() {
        let mut f = [0u8; 41];
        f[6] = ipproto::ROUTING;
        assert_eq!(locate_transport(&f, ethertype::IPV6, 0), Located::Truncated);
    }
}
