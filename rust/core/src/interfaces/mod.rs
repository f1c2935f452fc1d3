//! The interfaces a capture can be opened on: those of the calling thread's network namespace, each with
//! its index, state, MTU, hardware address, every address (IPv4 secondaries and IPv6 included) and the
//! link type a capture on it would store. Linux reads them from route netlink (`netlink.rs`), as
//! `ip address` does; other systems have no live capture.

#[cfg(target_os = "linux")]
mod netlink;

use std::fmt;
use std::net::IpAddr;

use crate::capture::{link_of, CaptureError};
use crate::packet::LinkType;
use crate::textfmt::push_mac;

/// One network interface, as the kernel describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub index: u32,
    pub name: String,
    /// The ARPHRD_* hardware type: it decides the link type (`capture::link_of`).
    pub hatype: u16,
    /// IFF_UP: switched on by its administrator.
    pub up: bool,
    /// IFF_RUNNING: operationally up; an interface that is up but not running has no carrier.
    pub running: bool,
    /// IFF_LOWER_UP: the driver sees a carrier.
    pub lower_up: bool,
    pub loopback: bool,
    pub operstate: OperState,
    pub mtu: u32,
    /// The link-layer address as the kernel gives it: 6 bytes for Ethernet, none for tun.
    pub hwaddr: Vec<u8>,
    /// In the kernel's order: IPv4 (primary before secondary), then IPv6.
    pub addresses: Vec<Address>,
}

impl Interface {
    /// The link type a capture on this interface stores its packets as.
    pub fn link(&self) -> LinkType {
        link_of(self.hatype).0
    }

    /// Whether filter words can be used on it: they read Ethernet frames and bare network headers.
    pub fn takes_filters(&self) -> bool {
        link_of(self.hatype).1.is_some()
    }

    /// The MAC address (`aa:bb:cc:dd:ee:ff`), for interfaces whose hardware address is one.
    pub fn mac(&self) -> Option<String> {
        let mac: [u8; 6] = self.hwaddr.as_slice().try_into().ok()?;
        let mut out = Vec::with_capacity(17);
        push_mac(&mut out, mac);
        String::from_utf8(out).ok()
    }
}

/// An address of an interface and its prefix length; shown as `198.18.0.2/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Address {
    pub ip: IpAddr,
    pub prefix_len: u8,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix_len)
    }
}

/// RFC 2863 operational state (IFLA_OPERSTATE), as `ip link` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperState {
    Unknown,
    NotPresent,
    Down,
    LowerLayerDown,
    Testing,
    Dormant,
    Up,
}

impl OperState {
    /// From the IF_OPER_* number of `<linux/if.h>`; a number from a newer kernel is `Unknown`.
    pub fn from_number(n: u8) -> OperState {
        match n {
            1 => OperState::NotPresent,
            2 => OperState::Down,
            3 => OperState::LowerLayerDown,
            4 => OperState::Testing,
            5 => OperState::Dormant,
            6 => OperState::Up,
            _ => OperState::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OperState::Unknown => "unknown",
            OperState::NotPresent => "notpresent",
            OperState::Down => "down",
            OperState::LowerLayerDown => "lowerlayerdown",
            OperState::Testing => "testing",
            OperState::Dormant => "dormant",
            OperState::Up => "up",
        }
    }
}

/// Every interface of the calling thread's network namespace, in index order.
pub fn list() -> Result<Vec<Interface>, CaptureError> {
    #[cfg(target_os = "linux")]
    return netlink::interfaces().map_err(CaptureError::ListInterfaces);
    #[cfg(not(target_os = "linux"))]
    return Err(CaptureError::Unsupported(std::env::consts::OS));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interface(hatype: u16, hwaddr: &[u8]) -> Interface {
        Interface {
            index: 2,
            name: "int".into(),
            hatype,
            up: true,
            running: true,
            lower_up: true,
            loopback: false,
            operstate: OperState::Up,
            mtu: 1500,
            hwaddr: hwaddr.to_vec(),
            addresses: vec![],
        }
    }

    #[test]
    fn an_ethernet_interface_has_a_mac_and_takes_filters() {
        let eth = interface(1, &[0x02, 0, 0, 0, 0, 0xab]);
        assert_eq!(eth.mac().as_deref(), Some("02:00:00:00:00:ab"));
        assert_eq!(eth.link(), LinkType::Ethernet);
        assert!(eth.takes_filters());
    }

    #[test]
    fn a_tun_interface_has_no_mac_and_is_stored_as_linux_cooked() {
        let tun = interface(0xfffe, &[]);
        assert_eq!(tun.mac(), None);
        assert_eq!(tun.link(), LinkType::LinuxSll2);
        assert!(tun.takes_filters());
        // An IPIP tunnel's hardware address is an IPv4 address, not a MAC.
        assert_eq!(interface(768, &[198, 18, 0, 1]).mac(), None);
    }

    #[test]
    fn addresses_show_with_their_prefix_length() {
        let v6 = Address {
            ip: "2001:db8::2".parse().unwrap(),
            prefix_len: 64,
        };
        assert_eq!(v6.to_string(), "2001:db8::2/64");
    }

    #[test]
    fn operational_states_are_named_as_ip_link_names_them() {
        assert_eq!(OperState::from_number(6).as_str(), "up");
        assert_eq!(OperState::from_number(2).as_str(), "down");
        assert_eq!(OperState::from_number(3).as_str(), "lowerlayerdown");
        assert_eq!(OperState::from_number(0).as_str(), "unknown");
        assert_eq!(OperState::from_number(200), OperState::Unknown);
    }
}
