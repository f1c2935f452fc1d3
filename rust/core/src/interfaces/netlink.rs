//! Route netlink, read as `ip link` and `ip address` read it (rtnetlink(7)): one RTM_GETLINK dump for the
//! links, one RTM_GETADDR dump of every family for the addresses (IPv4 secondaries and IPv6 included),
//! joined by interface index. The socket belongs to the calling thread's network namespace.

use std::collections::HashMap;
use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::{Address, Interface, OperState};

/// `struct nlmsghdr`: length, type, flags, sequence number, port id.
const NLMSG_HDRLEN: usize = 16;
/// `struct ifinfomsg`: family, pad, ARPHRD type, index, IFF flags, change mask.
const IFINFOMSG_LEN: usize = 16;
/// `struct ifaddrmsg`: family, prefix length, flags, scope, index.
const IFADDRMSG_LEN: usize = 8;
/// `struct rtattr`: length, type.
const RTA_HDRLEN: usize = 4;
/// Messages and attributes start on 4-byte boundaries (NLMSG_ALIGNTO, RTA_ALIGNTO).
const ALIGN: usize = 4;
/// An attribute type without its NLA_F_NESTED and NLA_F_NET_BYTEORDER bits.
const NLA_TYPE_MASK: u16 = 0x3fff;

const NLMSG_ERROR: u16 = libc::NLMSG_ERROR as u16;
const NLMSG_DONE: u16 = libc::NLMSG_DONE as u16;
const NLM_F_DUMP_INTR: u16 = libc::NLM_F_DUMP_INTR as u16;

/// A dump the kernel marks as changed while it was read (NLM_F_DUMP_INTR: an interface or address came
/// or went) is read again, this many times at most.
const DUMP_ATTEMPTS: usize = 5;
/// The first receive buffer; a larger datagram grows it (see `RouteSocket::receive`).
const RECEIVE_BUFFER: usize = 32 << 10;

const fn align(len: usize) -> usize {
    (len + ALIGN - 1) & !(ALIGN - 1)
}

/// Every interface of this thread's network namespace, with its addresses, in index order.
pub(super) fn interfaces() -> io::Result<Vec<Interface>> {
    let socket = RouteSocket::open()?;
    for _ in 0..DUMP_ATTEMPTS {
        let mut links = Vec::new();
        let mut addresses = Vec::new();
        let whole = socket.dump(libc::RTM_GETLINK, IFINFOMSG_LEN, |payload| {
            links.extend(parse_link(payload))
        })? && socket.dump(libc::RTM_GETADDR, IFADDRMSG_LEN, |payload| {
            addresses.extend(parse_address(payload))
        })?;
        if whole {
            return Ok(join(links, addresses));
        }
    }
    Err(io::Error::other(
        "the interfaces kept changing while they were read",
    ))
}

/// The addresses go to their interfaces; one whose interface left between the two dumps is dropped.
fn join(mut links: Vec<Interface>, addresses: Vec<(u32, Address)>) -> Vec<Interface> {
    links.sort_by_key(|l| l.index);
    let at: HashMap<u32, usize> = links
        .iter()
        .enumerate()
        .map(|(i, l)| (l.index, i))
        .collect();
    for (index, address) in addresses {
        if let Some(&i) = at.get(&index) {
            links[i].addresses.push(address);
        }
    }
    links
}

/// A NETLINK_ROUTE socket; the kernel gives it a port id of its own when it first sends.
struct RouteSocket {
    fd: OwnedFd,
}

impl RouteSocket {
    fn open() -> io::Result<RouteSocket> {
        // SAFETY: plain socket(2).
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nobody else owns.
        Ok(RouteSocket {
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
        })
    }

    fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Ask for a dump of `kind` (every family) and pass each reply's payload to `each`. Returns whether
    /// the dump is whole: `false` if the kernel says it changed while it was read.
    fn dump(&self, kind: u16, header_len: usize, mut each: impl FnMut(&[u8])) -> io::Result<bool> {
        // The sequence number tells our replies from anything else: the kernel's answers to an earlier,
        // abandoned dump cannot be on this fresh socket, but a number of our own costs nothing.
        let seq = u32::from(kind);
        self.send(&dump_request(kind, header_len, seq))?;
        let mut buf = vec![0u8; RECEIVE_BUFFER];
        let mut whole = true;
        loop {
            let len = self.receive(&mut buf)?;
            for message in Messages::new(&buf[..len]) {
                let message = message?;
                if message.seq != seq {
                    continue;
                }
                if message.flags & NLM_F_DUMP_INTR != 0 {
                    whole = false;
                }
                match message.kind {
                    NLMSG_DONE => return done_status(message.payload).map(|()| whole),
                    NLMSG_ERROR => return Err(error_of(message.payload)),
                    _ => each(message.payload),
                }
            }
        }
    }

    fn send(&self, request: &[u8]) -> io::Result<()> {
        // SAFETY: an all-zero sockaddr_nl is valid; pid 0 is the kernel.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        loop {
            // SAFETY: sending `request` to an address of the size given.
            let sent = unsafe {
                libc::sendto(
                    self.fd(),
                    request.as_ptr().cast(),
                    request.len(),
                    0,
                    (&kernel as *const libc::sockaddr_nl).cast(),
                    size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            match sent {
                n if n >= 0 => return Ok(()),
                _ => retry_on_eintr(io::Error::last_os_error())?,
            }
        }
    }

    /// The next datagram into `buf`, grown first if the datagram is larger: a dump message has no fixed
    /// upper size (a link with many attributes), and a datagram cut to the buffer would lose messages.
    fn receive(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let waiting = self.recv(buf, libc::MSG_PEEK | libc::MSG_TRUNC)?;
        if waiting > buf.len() {
            buf.resize(waiting, 0);
        }
        self.recv(buf, 0)
    }

    fn recv(&self, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
        loop {
            // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
            let n = unsafe { libc::recv(self.fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
            match n {
                n if n >= 0 => return Ok(n as usize),
                _ => retry_on_eintr(io::Error::last_os_error())?,
            }
        }
    }
}

fn retry_on_eintr(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::Interrupted {
        Ok(())
    } else {
        Err(e)
    }
}

/// A dump request: the netlink header, then the family header of `kind` all zero (AF_UNSPEC: every
/// family, no filter).
fn dump_request(kind: u16, header_len: usize, seq: u32) -> Vec<u8> {
    let len = NLMSG_HDRLEN + header_len;
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    let mut request = Vec::with_capacity(len);
    request.extend_from_slice(&(len as u32).to_ne_bytes());
    request.extend_from_slice(&kind.to_ne_bytes());
    request.extend_from_slice(&flags.to_ne_bytes());
    request.extend_from_slice(&seq.to_ne_bytes());
    request.extend_from_slice(&0u32.to_ne_bytes());
    request.resize(len, 0);
    request
}

/// NLMSG_DONE may carry the dump's error (a negative errno) in its first four bytes.
fn done_status(payload: &[u8]) -> io::Result<()> {
    match read_i32(payload, 0) {
        Some(e) if e < 0 => Err(io::Error::from_raw_os_error(-e)),
        _ => Ok(()),
    }
}

/// NLMSG_ERROR: a negative errno (0 would be an acknowledgement, which a dump does not ask for).
fn error_of(payload: &[u8]) -> io::Error {
    match read_i32(payload, 0) {
        Some(e) if e < 0 => io::Error::from_raw_os_error(-e),
        _ => io::Error::other("the kernel answered the dump with an acknowledgement"),
    }
}

/// One netlink message of a datagram.
struct Message<'a> {
    kind: u16,
    flags: u16,
    seq: u32,
    /// What follows the header, up to the message's length.
    payload: &'a [u8],
}

/// The messages of one datagram, one after the other on 4-byte boundaries.
struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Messages<'a> {
    fn new(datagram: &'a [u8]) -> Messages<'a> {
        Messages { rest: datagram }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = io::Result<Message<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let len = read_u32(self.rest, 0).map_or(0, |l| l as usize);
        if len < NLMSG_HDRLEN || len > self.rest.len() {
            self.rest = &[];
            return Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the kernel sent a netlink message cut short",
            )));
        }
        let message = Message {
            kind: read_u16(self.rest, 4)?,
            flags: read_u16(self.rest, 6)?,
            seq: read_u32(self.rest, 8)?,
            payload: &self.rest[NLMSG_HDRLEN..len],
        };
        self.rest = self.rest.get(align(len)..).unwrap_or(&[]);
        Some(Ok(message))
    }
}

/// The attributes after a family header: (type, value). A malformed one ends them.
fn attributes(data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let len = read_u16(rest, 0)? as usize;
        let kind = read_u16(rest, 2)? & NLA_TYPE_MASK;
        let value = rest.get(RTA_HDRLEN..len)?;
        rest = rest.get(align(len)..).unwrap_or(&[]);
        Some((kind, value))
    })
}

/// An RTM_NEWLINK message of the dump; `None` if it is too short to be one or has no name.
fn parse_link(payload: &[u8]) -> Option<Interface> {
    let hatype = read_u16(payload, 2)?;
    let index = read_u32(payload, 4)?;
    let flags = read_u32(payload, 8)?;
    let has = |flag: libc::c_int| flags & flag as u32 != 0;
    let mut link = Interface {
        index,
        name: String::new(),
        hatype,
        up: has(libc::IFF_UP),
        running: has(libc::IFF_RUNNING),
        lower_up: has(libc::IFF_LOWER_UP),
        loopback: has(libc::IFF_LOOPBACK),
        operstate: OperState::Unknown,
        mtu: 0,
        hwaddr: Vec::new(),
        addresses: Vec::new(),
    };
    for (kind, value) in attributes(payload.get(align(IFINFOMSG_LEN)..)?) {
        match kind {
            libc::IFLA_IFNAME => link.name = c_string(value),
            libc::IFLA_MTU => link.mtu = read_u32(value, 0).unwrap_or(0),
            libc::IFLA_ADDRESS => link.hwaddr = value.to_vec(),
            libc::IFLA_OPERSTATE => {
                link.operstate = OperState::from_number(value.first().copied().unwrap_or(0))
            }
            _ => {}
        }
    }
    (!link.name.is_empty()).then_some(link)
}

/// An RTM_NEWADDR message of the dump: the interface index and the address. The local address is
/// IFA_LOCAL when there is one: on a point-to-point link IFA_ADDRESS is the peer's.
fn parse_address(payload: &[u8]) -> Option<(u32, Address)> {
    let family = i32::from(*payload.first()?);
    let prefix_len = *payload.get(1)?;
    let index = read_u32(payload, 4)?;
    let (mut local, mut address) = (None, None);
    for (kind, value) in attributes(payload.get(align(IFADDRMSG_LEN)..)?) {
        match kind {
            libc::IFA_LOCAL => local = ip_of(family, value),
            libc::IFA_ADDRESS => address = ip_of(family, value),
            _ => {}
        }
    }
    let ip = local.or(address)?;
    Some((index, Address { ip, prefix_len }))
}

fn ip_of(family: i32, value: &[u8]) -> Option<IpAddr> {
    match family {
        libc::AF_INET => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(value).ok()?))),
        libc::AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(value).ok()?,
        ))),
        _ => None,
    }
}

/// A NUL-terminated name (IFNAMSIZ at most); bytes that are not UTF-8 are replaced.
fn c_string(value: &[u8]) -> String {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end]).into_owned()
}

fn read_u16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

fn read_i32(data: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An attribute as the kernel lays it out: header, value, padding to 4 bytes.
    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((RTA_HDRLEN + value.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(align(out.len()), 0);
        out
    }

    fn message(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(payload);
        out.resize(align(out.len()), 0);
        out
    }

    fn link_payload(index: u32, hatype: u16, flags: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![libc::AF_UNSPEC as u8, 0];
        out.extend_from_slice(&hatype.to_ne_bytes());
        out.extend_from_slice(&index.to_ne_bytes());
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        for a in attrs {
            out.extend_from_slice(a);
        }
        out
    }

    fn address_payload(family: i32, prefix_len: u8, index: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut out = vec![family as u8, prefix_len, 0, 0];
        out.extend_from_slice(&index.to_ne_bytes());
        for a in attrs {
            out.extend_from_slice(a);
        }
        out
    }

    #[test]
    fn a_link_message_gives_name_state_mtu_and_mac() {
        let up = (libc::IFF_UP | libc::IFF_RUNNING | libc::IFF_LOWER_UP) as u32;
        let payload = link_payload(
            7,
            1,
            up,
            &[
                // A name whose length is not a multiple of 4: the next attribute is found after padding.
                attr(libc::IFLA_IFNAME, b"int\0"),
                attr(libc::IFLA_ADDRESS, &[2, 0, 0, 0, 0, 2]),
                attr(libc::IFLA_MTU, &1500u32.to_ne_bytes()),
                attr(libc::IFLA_OPERSTATE, &[6]),
                // An attribute we do not read, nested flag set: skipped.
                attr(0x8000 | 18, &[1, 2, 3]),
            ],
        );
        let link = parse_link(&payload).unwrap();
        assert_eq!((link.index, link.name.as_str(), link.mtu), (7, "int", 1500));
        assert!(link.up && link.running && link.lower_up && !link.loopback);
        assert_eq!(link.operstate, OperState::Up);
        assert_eq!(link.mac().as_deref(), Some("02:00:00:00:00:02"));
    }

    #[test]
    fn a_link_that_is_up_without_carrier_says_so() {
        let payload = link_payload(
            3,
            0xfffe,
            libc::IFF_UP as u32,
            &[
                attr(libc::IFLA_IFNAME, b"tun0\0"),
                attr(libc::IFLA_OPERSTATE, &[2]),
            ],
        );
        let link = parse_link(&payload).unwrap();
        assert!(link.up && !link.running && !link.lower_up);
        assert_eq!(link.operstate, OperState::Down);
        assert_eq!(link.hwaddr, Vec::<u8>::new());
    }

    #[test]
    fn a_link_message_without_a_name_or_cut_short_is_left_out() {
        assert_eq!(parse_link(&link_payload(3, 1, 0, &[])), None);
        assert_eq!(parse_link(&[0, 0, 1, 0]), None);
    }

    #[test]
    fn an_attribute_that_claims_more_than_is_there_ends_the_attributes() {
        let mut data = attr(libc::IFLA_IFNAME, b"eth0\0");
        data.extend_from_slice(&200u16.to_ne_bytes());
        data.extend_from_slice(&libc::IFLA_MTU.to_ne_bytes());
        data.extend_from_slice(&[0; 4]);
        let found: Vec<_> = attributes(&data).map(|(k, _)| k).collect();
        assert_eq!(found, vec![libc::IFLA_IFNAME]);
    }

    #[test]
    fn an_address_is_the_local_one_with_its_prefix() {
        let v4 = address_payload(
            libc::AF_INET,
            24,
            2,
            &[
                attr(libc::IFA_ADDRESS, &[198, 18, 0, 2]),
                attr(libc::IFA_LOCAL, &[198, 18, 0, 2]),
                attr(libc::IFA_LABEL, b"int\0"),
            ],
        );
        let (index, a) = parse_address(&v4).unwrap();
        assert_eq!((index, a.to_string()), (2, "198.18.0.2/24".to_owned()));
        // Point-to-point: IFA_ADDRESS is the peer, IFA_LOCAL ours.
        let ptp = address_payload(
            libc::AF_INET,
            32,
            5,
            &[
                attr(libc::IFA_ADDRESS, &[198, 18, 9, 1]),
                attr(libc::IFA_LOCAL, &[198, 18, 9, 2]),
            ],
        );
        assert_eq!(parse_address(&ptp).unwrap().1.to_string(), "198.18.9.2/32");
        // IPv6 gives IFA_ADDRESS alone.
        let ip6: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let v6 = address_payload(
            libc::AF_INET6,
            64,
            2,
            &[attr(libc::IFA_ADDRESS, &ip6.octets())],
        );
        assert_eq!(parse_address(&v6).unwrap().1.to_string(), "2001:db8::2/64");
    }

    #[test]
    fn an_address_of_another_family_or_the_wrong_size_is_left_out() {
        let other = address_payload(libc::AF_PACKET, 0, 2, &[attr(libc::IFA_ADDRESS, &[1; 6])]);
        assert_eq!(parse_address(&other), None);
        let short = address_payload(libc::AF_INET, 24, 2, &[attr(libc::IFA_ADDRESS, &[198, 18])]);
        assert_eq!(parse_address(&short), None);
    }

    #[test]
    fn a_datagram_holds_messages_one_after_the_other() {
        let mut datagram = message(libc::RTM_NEWLINK, 0, 9, &[1, 2, 3]);
        datagram.extend(message(NLMSG_DONE, NLM_F_DUMP_INTR, 9, &0i32.to_ne_bytes()));
        let messages: Vec<_> = Messages::new(&datagram).map(Result::unwrap).collect();
        assert_eq!(messages.len(), 2);
        assert_eq!(
            (messages[0].kind, messages[0].payload),
            (libc::RTM_NEWLINK, &[1, 2, 3][..])
        );
        assert_eq!(
            (messages[1].kind, messages[1].flags),
            (NLMSG_DONE, NLM_F_DUMP_INTR)
        );
    }

    #[test]
    fn a_message_cut_short_is_an_error() {
        let mut datagram = message(libc::RTM_NEWLINK, 0, 9, &[0; 16]);
        datagram.truncate(20);
        assert!(Messages::new(&datagram).next().unwrap().is_err());
    }

    #[test]
    fn the_kernels_errors_come_back_as_errno() {
        let e = error_of(&(-libc::EPERM).to_ne_bytes());
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        assert!(done_status(&(-libc::EINTR).to_ne_bytes()).is_err());
        assert!(done_status(&0i32.to_ne_bytes()).is_ok());
        assert!(done_status(&[]).is_ok());
    }

    #[test]
    fn addresses_join_their_interfaces_in_index_order() {
        let link = |index, name: &str| {
            parse_link(&link_payload(
                index,
                1,
                0,
                &[attr(libc::IFLA_IFNAME, name.as_bytes())],
            ))
            .unwrap()
        };
        let a = |s: &str, p| Address {
            ip: s.parse().unwrap(),
            prefix_len: p,
        };
        let joined = join(
            vec![link(3, "b"), link(1, "a")],
            vec![
                (3, a("198.18.0.2", 24)),
                (3, a("198.18.0.3", 24)),
                (9, a("198.18.1.1", 24)),
            ],
        );
        assert_eq!(
            joined.iter().map(|l| l.index).collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert_eq!(
            joined[1].addresses,
            vec![a("198.18.0.2", 24), a("198.18.0.3", 24)]
        );
        assert!(joined[0].addresses.is_empty());
    }

    /// The live kernel: every interface if_nameindex(3) knows is listed, under the same index.
    #[test]
    fn the_list_agrees_with_if_nameindex() {
        let listed = interfaces().unwrap();
        let mut known = Vec::new();
        // SAFETY: if_nameindex returns an array ended by a zero entry, freed below.
        unsafe {
            let first = libc::if_nameindex();
            assert!(!first.is_null());
            let mut at = first;
            while (*at).if_index != 0 {
                let name = std::ffi::CStr::from_ptr((*at).if_name)
                    .to_string_lossy()
                    .into_owned();
                known.push(((*at).if_index, name));
                at = at.add(1);
            }
            libc::if_freenameindex(first);
        }
        known.sort();
        let got: Vec<_> = listed.iter().map(|l| (l.index, l.name.clone())).collect();
        assert_eq!(got, known);
        let lo = listed.iter().find(|l| l.name == "lo").expect("lo");
        assert!(lo.loopback && lo.hatype == crate::capture::link::ARPHRD_LOOPBACK);
    }
}
