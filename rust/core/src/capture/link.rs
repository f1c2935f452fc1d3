//! Which link type a capture stores an interface's packets as, decided by the interface's ARPHRD_*
//! hardware type (`<linux/if_arp.h>`). Written once: the capture opens its ring with it, and the list of
//! interfaces shows what a capture would store.

use crate::filter::LinkHeader;
use crate::packet::LinkType;

pub const ARPHRD_ETHER: u16 = 1;
pub const ARPHRD_LOOPBACK: u16 = 772;
/// Hardware types whose packets start with their network header: PPP, RAWIP, IPIP, IP6IP6, SIT, GRE,
/// IP6GRE, and NONE (tun, WireGuard).
const NO_LINK_HEADER: [u16; 8] = [512, 519, 768, 769, 776, 778, 823, 0xfffe];

/// The link type packets are stored with, and the link header filters see (`None`: one they do not
/// understand, so a capture on it takes no filter).
pub fn link_of(hatype: u16) -> (LinkType, Option<LinkHeader>) {
    match hatype {
        ARPHRD_ETHER | ARPHRD_LOOPBACK => (LinkType::Ethernet, Some(LinkHeader::Ethernet)),
        h if NO_LINK_HEADER.contains(&h) => (LinkType::LinuxSll2, Some(LinkHeader::None)),
        _ => (LinkType::LinuxSll2, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethernet_and_loopback_are_stored_as_ethernet_the_rest_as_linux_cooked() {
        assert_eq!(
            link_of(ARPHRD_ETHER),
            (LinkType::Ethernet, Some(LinkHeader::Ethernet))
        );
        assert_eq!(link_of(ARPHRD_LOOPBACK).0, LinkType::Ethernet);
        // tun (ARPHRD_NONE): the network header comes first, and filters read it.
        assert_eq!(
            link_of(0xfffe),
            (LinkType::LinuxSll2, Some(LinkHeader::None))
        );
        // IEEE 802.11 with radiotap (803): stored, but no filter understands its header.
        assert_eq!(link_of(803), (LinkType::LinuxSll2, None));
    }
}
