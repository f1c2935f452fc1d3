//! The link layer: where the network header starts, its ethertype and the 802.1Q tags in front of it.
//!
//! The filter's semantics rest on this function: the compiled BPF program performs exactly these reads, so
//! "cannot be parsed" here is "a load past the end" there.

use super::{be16, ethertype, LinkType};

/// In-band tags looked through (802.1Q, QinQ). A tag the kernel stripped comes on top of these.
pub const MAX_INBAND_TAGS: usize = 2;
pub const MAX_TAGS: usize = MAX_INBAND_TAGS + 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L2 {
    pub ethertype: u16,
    /// Offset of the network header.
    pub l3: usize,
    /// VLAN ids, outermost first.
    pub vlans: [u16; MAX_TAGS],
    pub vlan_count: u8,
    /// Whether the frame has Ethernet addresses at offsets 0 and 6.
    pub has_macs: bool,
}

impl L2 {
    pub fn vlan_ids(&self) -> &[u16] {
        &self.vlans[..self.vlan_count as usize]
    }
}

/// How a frame comes: as the kernel's filter sees it, a tag it took out beside the frame (`tci`), then
/// in-band tags; or as stored (in the buffer, in a file), where that tag is back in the frame, so one
/// more in-band tag is looked through and a stored frame matches what the kernel kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tags {
    Kernel(Option<u16>),
    Stored,
}

/// Parse the link layer; `None` when the frame ends before the ethertype of the network header.
#[inline]
pub fn parse_l2(frame: &[u8], link: LinkType, tags: Tags) -> Option<L2> {
    let mut vlans = [0; MAX_TAGS];
    let mut vlan_count = 0u8;
    let (ethertype, l3) = walk_l2(frame, link, tags, |tci| {
        vlans[vlan_count as usize] = tci & 0x0fff;
        vlan_count += 1;
    })?;
    Some(L2 {
        ethertype,
        l3,
        vlans,
        vlan_count,
        has_macs: link == LinkType::Ethernet,
    })
}

/// The link layer's walk: the ethertype of the network header and its offset, each tag's TCI given to
/// `tag`, outermost first. [`parse_l2`] keeps the tags; a filter without VLAN words ignores them, and
/// then nothing of them is kept.
#[inline(always)]
pub fn walk_l2(
    frame: &[u8],
    link: LinkType,
    tags: Tags,
    mut tag: impl FnMut(u16),
) -> Option<(u16, usize)> {
    let inband = match tags {
        Tags::Kernel(tci) => {
            if let Some(tci) = tci {
                tag(tci);
            }
            MAX_INBAND_TAGS
        }
        Tags::Stored => MAX_TAGS,
    };
    // Most frames are Ethernet: tested first, so that the others' cases stay out of the hot path.
    let (mut et, mut off) = if link == LinkType::Ethernet {
        (be16(frame, 12)?, 14)
    } else {
        other_link(frame, link)?
    };
    for _ in 0..inband {
        if !ethertype::is_vlan_tpid(et) {
            break;
        }
        tag(be16(frame, off)?);
        et = be16(frame, off + 2)?;
        off += 4;
    }
    Some((et, off))
}

/// The network header's ethertype and offset behind a link layer other than Ethernet.
#[cold]
fn other_link(frame: &[u8], link: LinkType) -> Option<(u16, usize)> {
    Some(match link {
        LinkType::Ethernet => (be16(frame, 12)?, 14),
        LinkType::LinuxSll => (be16(frame, 14)?, 16),
        LinkType::LinuxSll2 => {
            let et = be16(frame, 0)?;
            frame.get(19)?;
            (et, 20)
        }
        LinkType::Raw => match frame.first()? >> 4 {
            4 => (ethertype::IPV4, 0),
            6 => (ethertype::IPV6, 0),
            _ => (0, 0),
        },
        LinkType::Ipv4 => (ethertype::IPV4, 0),
        LinkType::Ipv6 => (ethertype::IPV6, 0),
        LinkType::Null | LinkType::Loop => {
            let word: [u8; 4] = frame.get(..4)?.try_into().ok()?;
            let family = match link {
                LinkType::Loop => u32::from_be_bytes(word),
                // The capturing host's byte order is not recorded; a family is small either way.
                _ => match u32::from_le_bytes(word) {
                    small @ 0..=0xffff => small,
                    _ => u32::from_be_bytes(word),
                },
            };
            (bsd_family_ethertype(family), 4)
        }
        LinkType::Other(_) => return None,
    })
}

/// The network protocol of a BSD loopback address family; 0 for families other than IPv4 and IPv6.
fn bsd_family_ethertype(family: u32) -> u16 {
    match family {
        2 => ethertype::IPV4,
        // AF_INET6 differs by system: Linux, NetBSD/OpenBSD, FreeBSD, macOS.
        10 | 24 | 28 | 30 => ethertype::IPV6,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(et: u16, rest: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&et.to_be_bytes());
        f.extend_from_slice(rest);
        f
    }

    #[test]
    fn untagged_ipv4() {
        let l2 = parse_l2(
            &eth(0x0800, &[0; 20]),
            LinkType::Ethernet,
            Tags::Kernel(None),
        )
        .unwrap();
        assert_eq!((l2.ethertype, l2.l3, l2.vlan_count), (0x0800, 14, 0));
    }

    #[test]
    fn qinq_with_stripped_outer_tag() {
        let f = eth(0x8100, &[0x00, 0x07, 0x08, 0x00]);
        let l2 = parse_l2(&f, LinkType::Ethernet, Tags::Kernel(Some(0x2005))).unwrap();
        assert_eq!(l2.vlan_ids(), &[5, 7]);
        assert_eq!((l2.ethertype, l2.l3), (0x0800, 18));
    }

    #[test]
    fn bsd_loopback_family_in_either_byte_order() {
        let v4_le = [2, 0, 0, 0, 0x45];
        let v6_be = [0, 0, 0, 30, 0x60];
        let null =
            |f: &[u8]| parse_l2(f, LinkType::Null, Tags::Kernel(None)).map(|l| (l.ethertype, l.l3));
        assert_eq!(null(&v4_le), Some((ethertype::IPV4, 4)));
        assert_eq!(null(&v6_be), Some((ethertype::IPV6, 4)));
        assert_eq!(
            parse_l2(&[0, 0, 0, 24, 0x60], LinkType::Loop, Tags::Kernel(None)).map(|l| l.ethertype),
            Some(ethertype::IPV6)
        );
        assert_eq!(null(&[7, 0, 0, 0]).map(|l| l.0), Some(0));
        assert_eq!(null(&[2, 0, 0]), None);
    }

    #[test]
    fn tag_cut_short_is_unparseable() {
        assert_eq!(
            parse_l2(
                &eth(0x8100, &[0x00, 0x07, 0x08]),
                LinkType::Ethernet,
                Tags::Kernel(None)
            ),
            None
        );
        assert_eq!(
            parse_l2(&[0u8; 13], LinkType::Ethernet, Tags::Kernel(None)),
            None
        );
    }
}
