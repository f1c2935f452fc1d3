//! Direct evaluation of a filter over a frame, in user space.
//!
//! The semantics are those of the compiled program, read for read: the link layer and the transport
//! locator are established first (a frame cut inside them matches nothing); within a group, fields are
//! read in a fixed order and a field cut short ends the evaluation with "no match", as a BPF load past
//! the end does.
//!
//! A trigger runs this on every packet a capture keeps, so the expression is lowered once into a
//! [`Program`]: its terms sorted into the stage of the frame they read, each with its values in the form
//! its test wants (one mask for TCP flags, bit sets for protocols and ICMP types, address masks made).

use super::expr::{Expr, Group, IpNet, PortRange, Proto, Side, TcpEnd};
use crate::packet::{
    ethertype, ipproto, locate_transport, walk_l2, LinkType, Located, Tags, EXT_HEADERS, MAX_TAGS,
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
                Group::Proto(_)
                | Group::Port(..)
                | Group::TcpFlags(_)
                | Group::IcmpType(_)
                | Group::TcpEnd(_) => {
                    n.link_layer = true;
                    n.transport |= reads_transport(g);
                }
            }
        }
        n
    }
}

fn reads_transport(g: &Group) -> bool {
    match g {
        Group::Port(..) | Group::TcpFlags(_) | Group::IcmpType(_) | Group::TcpEnd(_) => true,
        Group::Proto(ps) => ps.iter().any(|p| matches!(p, Proto::Ip(_))),
        Group::Eth(..) | Group::Vlan(_) | Group::Ip(..) => false,
    }
}

/// A filter lowered for evaluation, its terms sorted by kind: each kind's test is its own code, with
/// no dispatch between kinds per packet. Every term must pass; the network terms run only when the
/// address terms passed, the transport terms only when those did too, so most packets are turned away
/// before the transport header is looked for. The result is the same in any order, since a field cut
/// short rejects the packet wherever it is read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Program {
    /// Ethernet addresses: read before the link layer is walked.
    macs: Box<[Term<MacTest>]>,
    /// Whether the link layer is walked (any term beyond the addresses).
    link_layer: bool,
    /// A first look that turns most Ethernet frames away before the terms run; `None` when no term
    /// gives it anything to look at.
    screen: Option<Screen>,
    vlans: Box<[Term<Box<[u16]>>]>,
    ips: Box<[Term<IpTest>]>,
    /// `arp` alone: it needs no transport header.
    arp: Box<[Term<()>]>,
    /// Whether any term below needs the transport header located.
    transport: bool,
    protocols: Box<[Term<ProtoTest>]>,
    tcp_flags: Box<[Term<u8>]>,
    icmp_types: Box<[Term<IcmpTest>]>,
    ports: Box<[Term<PortTest>]>,
    tcp_ends: Box<[Term<EndTest>]>,
}

/// A test, and whether it is one a packet must fail (`not …`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Term<T> {
    test: T,
    excluded: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct MacTest {
    side: Side,
    macs: Box<[[u8; 6]]>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct IpTest {
    side: Side,
    /// Prefixes as (network, mask).
    v4: Box<[(u32, u32)]>,
    v6: Box<[(u128, u128)]>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ProtoTest {
    arp: bool,
    ip: ByteSet,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct IcmpTest {
    v4: ByteSet,
    v6: ByteSet,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct PortTest {
    side: Side,
    ranges: Box<[PortRange]>,
}

/// A set of byte values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ByteSet([u64; 4]);

impl ByteSet {
    fn from_iter(values: impl IntoIterator<Item = u8>) -> ByteSet {
        let mut s = ByteSet::default();
        for v in values {
            s.insert(v);
        }
        s
    }

    #[inline(always)]
    fn contains(&self, v: u8) -> bool {
        self.0[(v >> 6) as usize] & (1 << (v & 63)) != 0
    }

    fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }

    fn insert(&mut self, v: u8) {
        self.0[(v >> 6) as usize] |= 1 << (v & 63);
    }

    fn intersection(self, other: ByteSet) -> ByteSet {
        ByteSet(std::array::from_fn(|i| self.0[i] & other.0[i]))
    }
}

/// The protocols whose headers start with a source and a destination port.
const PORT_PROTOCOLS: [u8; 3] = [ipproto::TCP, ipproto::UDP, ipproto::SCTP];

const ETHERNET_HEADER: usize = 14;
/// An untagged Ethernet frame this long holds a whole IPv4 header without options.
const UNTAGGED_IPV4_MIN: usize = ETHERNET_HEADER + 20;

/// A field was cut short: the packet does not match.
struct Cut;

/// The link layer as the tests see it: the network header's ethertype and offset, and the VLAN ids
/// when a test asks for them.
struct Network {
    ethertype: u16,
    l3: usize,
    vlans: [u16; MAX_TAGS],
    vlan_count: usize,
}

/// Where the transport header is, once looked for: `proto` is `None` for a packet that is not IP.
#[derive(Clone, Copy)]
struct Transport {
    proto: Option<u8>,
    l4: usize,
    first_fragment: bool,
}

impl Transport {
    #[inline(always)]
    fn first_fragment_of(&self, protocols: &[u8]) -> bool {
        self.first_fragment && self.proto.is_some_and(|p| protocols.contains(&p))
    }
}

#[inline(always)]
fn field<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N], Cut> {
    crate::packet::array(bytes, at).ok_or(Cut)
}

/// Whether the packet gets past every term: each test matches, or does not where the term is
/// excluded; a field cut short stops it either way.
#[inline(always)]
fn all<T>(terms: &[Term<T>], test: impl Fn(&T) -> Result<bool, Cut>) -> bool {
    for t in terms {
        match test(&t.test) {
            Ok(matched) if matched != t.excluded => {}
            _ => return false,
        }
    }
    true
}

/// The source and the destination field, in that order, as `side` asks.
#[inline(always)]
fn sides(side: Side, src: usize, dst: usize) -> [(bool, usize); 2] {
    [(side.checks_src(), src), (side.checks_dst(), dst)]
}

impl Program {
    pub fn of(expr: &Expr) -> Program {
        let mut p = Program::default();
        let (mut vlans, mut ips, mut arp, mut protocols) = (vec![], vec![], vec![], vec![]);
        let (mut macs, mut tcp_flags, mut icmp_types, mut ports) = (vec![], vec![], vec![], vec![]);
        let mut tcp_ends = vec![];
        let mut required_protocols: Option<ByteSet> = None;
        let mut require = |set: ByteSet, excluded: bool| {
            if !excluded {
                required_protocols = Some(required_protocols.map_or(set, |r| r.intersection(set)));
            }
        };
        for (g, excluded) in expr.terms() {
            match g {
                Group::Eth(side, m) => macs.push(Term {
                    test: MacTest {
                        side: *side,
                        macs: m.iter().map(|m| m.0).collect(),
                    },
                    excluded,
                }),
                Group::Vlan(ids) => vlans.push(Term {
                    test: ids.clone().into_boxed_slice(),
                    excluded,
                }),
                Group::Ip(side, nets) => ips.push(Term {
                    test: IpTest::of(*side, nets),
                    excluded,
                }),
                Group::Proto(ps) => {
                    let ip = ByteSet::from_iter(ps.iter().filter_map(|p| match p {
                        Proto::Ip(n) => Some(*n),
                        Proto::Arp => None,
                    }));
                    // ARP is never an IPv4 frame.
                    require(ip, excluded);
                    if reads_transport(g) {
                        let arp = ps.contains(&Proto::Arp);
                        protocols.push(Term {
                            test: ProtoTest { arp, ip },
                            excluded,
                        });
                    } else {
                        arp.push(Term { test: (), excluded });
                    }
                }
                Group::TcpFlags(flags) => {
                    require(ByteSet::from_iter([ipproto::TCP]), excluded);
                    tcp_flags.push(Term {
                        test: Group::tcp_flag_mask(flags),
                        excluded,
                    });
                }
                Group::IcmpType(types) => {
                    let test = IcmpTest {
                        v4: ByteSet::from_iter(types.iter().filter_map(|t| t.v4)),
                        v6: ByteSet::from_iter(types.iter().filter_map(|t| t.v6)),
                    };
                    // The ICMPv6 types apply to protocol 58 over IPv4 too, as the program reads them.
                    let over = [(test.v4, ipproto::ICMP), (test.v6, ipproto::ICMPV6)];
                    let carried = over.iter().filter(|(set, _)| !set.is_empty());
                    require(ByteSet::from_iter(carried.map(|(_, p)| *p)), excluded);
                    icmp_types.push(Term { test, excluded });
                }
                Group::TcpEnd(e) => {
                    require(ByteSet::from_iter([ipproto::TCP]), excluded);
                    tcp_ends.push(Term {
                        test: EndTest::of(e),
                        excluded,
                    });
                }
                Group::Port(side, ranges) => {
                    require(ByteSet::from_iter(PORT_PROTOCOLS), excluded);
                    ports.push(Term {
                        test: PortTest {
                            side: *side,
                            ranges: ranges.clone().into_boxed_slice(),
                        },
                        excluded,
                    });
                }
            }
        }
        p.transport = !protocols.is_empty()
            || !tcp_flags.is_empty()
            || !icmp_types.is_empty()
            || !ports.is_empty()
            || !tcp_ends.is_empty();
        p.link_layer = p.transport || !vlans.is_empty() || !ips.is_empty() || !arp.is_empty();
        p.macs = macs.into();
        p.vlans = vlans.into();
        p.ips = ips.into();
        p.arp = arp.into();
        p.protocols = protocols.into();
        p.tcp_flags = tcp_flags.into();
        p.icmp_types = icmp_types.into();
        p.ports = ports.into();
        p.tcp_ends = tcp_ends.into();
        p.screen = Screen::of(required_protocols, &p);
        p
    }

    /// `RETURN_EARLY`: the screen returns at the first field that turns an untagged IPv4 packet
    /// without options away (see `Screen::looks`).
    #[inline(always)]
    pub fn matches<const RETURN_EARLY: bool>(
        &self,
        bytes: &[u8],
        link: LinkType,
        tags: Tags,
    ) -> bool {
        if let Some(screen) = &self.screen {
            if link == LinkType::Ethernet && !screen.passes::<RETURN_EARLY>(bytes) {
                return false;
            }
        }
        if !all(&self.macs, |t| t.run(bytes, link)) {
            return false;
        }
        match (self.link_layer, self.vlans.is_empty()) {
            (false, _) => true,
            (true, true) => self.past_addresses::<false>(bytes, link, tags),
            (true, false) => self.past_addresses::<true>(bytes, link, tags),
        }
    }

    /// The network and transport stages; the link layer's tags are kept only when `VLANS`, so that a
    /// filter without VLAN words does not pay for them.
    #[inline(always)]
    fn past_addresses<const VLANS: bool>(&self, bytes: &[u8], link: LinkType, tags: Tags) -> bool {
        // Most frames: untagged IPv4 over Ethernet, where the walk would find the network header at 14
        // (a stripped tag is not in the frame). Said here as constants, the stages' offsets are too.
        if !VLANS
            && link == LinkType::Ethernet
            && bytes.len() >= UNTAGGED_IPV4_MIN
            && bytes[12..14] == ethertype::IPV4.to_be_bytes()
        {
            let net = Network {
                ethertype: ethertype::IPV4,
                l3: ETHERNET_HEADER,
                vlans: [0; MAX_TAGS],
                vlan_count: 0,
            };
            return self.stages(bytes, &net);
        }
        let mut net = Network {
            ethertype: 0,
            l3: 0,
            vlans: [0; MAX_TAGS],
            vlan_count: 0,
        };
        let walked = walk_l2(bytes, link, tags, |tci| {
            if VLANS {
                net.vlans[net.vlan_count] = tci & 0x0fff;
                net.vlan_count += 1;
            }
        });
        let Some((ethertype, l3)) = walked else {
            return false;
        };
        (net.ethertype, net.l3) = (ethertype, l3);
        self.stages(bytes, &net)
    }

    #[inline(always)]
    fn stages(&self, bytes: &[u8], net: &Network) -> bool {
        let vlans = &net.vlans[..net.vlan_count];
        if !(all(&self.vlans, |ids| Ok(vlans.iter().any(|v| ids.contains(v))))
            && all(&self.ips, |t| t.run(bytes, net))
            && all(&self.arp, |()| Ok(net.ethertype == ethertype::ARP)))
        {
            return false;
        }
        if !self.transport {
            return true;
        }
        let at = match locate_transport(bytes, net.ethertype, net.l3) {
            Located::At(at) => Transport {
                proto: Some(at.proto),
                l4: at.l4,
                first_fragment: at.is_first_fragment(),
            },
            Located::NotIp => Transport {
                proto: None,
                l4: 0,
                first_fragment: false,
            },
            Located::Truncated => return false,
        };
        self.transport_terms(bytes, net, at)
    }

    #[inline(always)]
    fn transport_terms(&self, bytes: &[u8], net: &Network, at: Transport) -> bool {
        all(&self.protocols, |t| {
            Ok((t.arp && net.ethertype == ethertype::ARP)
                || at.proto.is_some_and(|p| t.ip.contains(p)))
        }) && all(&self.tcp_flags, |mask| {
            if !at.first_fragment_of(&[ipproto::TCP]) {
                return Ok(false);
            }
            let [bits] = field::<1>(bytes, at.l4 + 13)?;
            Ok(bits & mask != 0)
        }) && all(&self.icmp_types, |t| t.run(bytes, at))
            && all(&self.ports, |t| t.run(bytes, at))
            && all(&self.tcp_ends, |e| e.run(bytes, net, at))
    }
}

/// A first look at an Ethernet frame for the required terms' protocols, addresses, ports, TCP flags and
/// ICMP types, with no branch
/// on what the frame holds: on the random mix of a real capture, a branch on the frame's kind (tagged or
/// not, IPv4, IPv6 or else) is mispredicted so often that it costs more than all the reads. The fields
/// are read where an untagged or once-tagged IPv4 or IPv6 packet has them, whatever the frame is, and the
/// result says whether the frame may match: frames of any other kind pass, for the terms to decide.
/// Every required term with a protocol set fails for an IP packet of another protocol, and an address
/// term for a packet whose addresses are none of its own, whatever else the packet holds; the transport
/// terms are looked at in an IPv4 packet without options (the usual one), whose transport header is at a
/// fixed place, and fail for a fragment after the first, as the terms do. Fields past the
/// frame's end are read as zeros: a term that reads them fails as well (a field cut short matches
/// nothing), so a frame turned away for them would not have matched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Screen {
    protocols: Option<ScreenProtocols>,
    /// One required address term, when it has at most one prefix of each family (the usual `ipsrc A`):
    /// its test is then a compare, with no loop.
    address: Option<ScreenAddress>,
    /// One required port term with one range (the usual `port 53`), of an IPv4 packet without options.
    ports: Option<ScreenPorts>,
    /// The mask of one required TCP-flag term, of an IPv4 packet without options.
    tcp_flags: Option<u8>,
    /// One required ICMP-type term (IPv4 types, ICMPv6 types), of an IPv4 packet without options.
    icmp_types: Option<(ByteSet, ByteSet)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ScreenPorts {
    src: bool,
    dst: bool,
    range: PortRange,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ScreenProtocols {
    /// The protocols an IPv4 packet must carry.
    v4: ByteSet,
    /// The same for the next header of an IPv6 packet, and the extension headers, which leave the
    /// protocol to the walk.
    v6: ByteSet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ScreenAddress {
    src: bool,
    dst: bool,
    /// The prefix as (network, mask); `None`: no packet of that family matches.
    v4: Option<(u32, u32)>,
    v6: Option<(u128, u128)>,
}

/// The bytes of an Ethernet frame the screen reads: a tag, then an IPv6 header.
const SCREEN_BYTES: usize = ETHERNET_HEADER + 4 + 40;
/// The same from the frame's start or past its tag.
const SCREEN_NETWORK_BYTES: usize = SCREEN_BYTES - 4;

impl Screen {
    fn of(protocols: Option<ByteSet>, p: &Program) -> Option<Screen> {
        let protocols = protocols.map(|v4| {
            let mut v6 = v4;
            for h in EXT_HEADERS {
                v6.insert(h);
            }
            ScreenProtocols { v4, v6 }
        });
        let address = required(&p.ips)
            .find(|t: &&IpTest| t.v4.len() <= 1 && t.v6.len() <= 1)
            .map(|t| ScreenAddress {
                src: t.side.checks_src(),
                dst: t.side.checks_dst(),
                v4: t.v4.first().copied(),
                v6: t.v6.first().copied(),
            });
        let ports = required(&p.ports)
            .find(|t: &&PortTest| t.ranges.len() == 1)
            .map(|t| ScreenPorts {
                src: t.side.checks_src(),
                dst: t.side.checks_dst(),
                range: t.ranges[0],
            });
        let tcp_flags = required(&p.tcp_flags).next().copied();
        let icmp_types = required(&p.icmp_types)
            .next()
            .map(|t: &IcmpTest| (t.v4, t.v6));
        let screen = Screen {
            protocols,
            address,
            ports,
            tcp_flags,
            icmp_types,
        };
        (screen != Screen::default()).then_some(screen)
    }

    #[inline(always)]
    fn passes<const RETURN_EARLY: bool>(&self, frame: &[u8]) -> bool {
        match frame.first_chunk::<SCREEN_BYTES>() {
            Some(window) => self.looks::<RETURN_EARLY>(window),
            None => {
                let mut window = [0; SCREEN_BYTES];
                window[..frame.len()].copy_from_slice(frame);
                self.looks::<RETURN_EARLY>(&window)
            }
        }
    }

    /// `&` and `|` rather than `&&` and `||`: every part is computed, and no branch is taken on the
    /// frame's bytes. (Those taken on the screen's own fields go the same way for every frame.)
    ///
    /// `RETURN_EARLY`: an untagged IPv4 packet without options is judged part by part instead, and
    /// turned away at the first part that fails. Where one kind of packet comes again and again (a
    /// trigger's tests in a live capture, which nearly all fail the same way) every branch is predicted
    /// and this costs a fraction of the branch-free look; on a random mix it is dearer.
    #[inline(always)]
    fn looks<const RETURN_EARLY: bool>(&self, window: &[u8; SCREEN_BYTES]) -> bool {
        let l3 = ETHERNET_HEADER;
        let outer = be16(window, 12);
        if RETURN_EARLY && outer == ethertype::IPV4 && window[l3] == 0x45 {
            let n = window
                .first_chunk()
                .expect("the window holds an untagged header");
            return self.ipv4_protocol(n) && self.ipv4_address(n) && self.ipv4_transport::<true>(n);
        }
        let tagged = ethertype::is_vlan_tpid(outer);
        let shift = 4 * tagged as usize;
        let n: &[u8; SCREEN_NETWORK_BYTES] = window[shift..]
            .first_chunk()
            .expect("the window holds a tag and more");
        let et = be16(n, 12);
        let (v4, v6) = (et == ethertype::IPV4, et == ethertype::IPV6);
        let mut ipv4 = self.ipv4_protocol(n) & self.ipv4_address(n);
        let mut ipv6 = true;
        if let Some(p) = &self.protocols {
            ipv6 = p.v6.contains(n[l3 + 6]);
        }
        if let Some(a) = &self.address {
            ipv6 &= a.v6.is_some_and(|(net, mask)| {
                let src = u128::from_be_bytes(window_field(n, l3 + 8));
                let dst = u128::from_be_bytes(window_field(n, l3 + 24));
                (a.src & (src & mask == net)) | (a.dst & (dst & mask == net))
            });
        }
        ipv4 &= (n[l3] & 0x0f != 5) | self.ipv4_transport::<false>(n);
        // Past two tags, the ethertype read is the second tag's: neither IPv4 nor IPv6.
        !(v4 | v6) | (v4 & ipv4) | (v6 & ipv6)
    }

    /// Of an IPv4 packet at `n` (from its Ethernet header on): whether its protocol is one required.
    #[inline(always)]
    fn ipv4_protocol(&self, n: &[u8; SCREEN_NETWORK_BYTES]) -> bool {
        self.protocols
            .as_ref()
            .is_none_or(|p| p.v4.contains(n[ETHERNET_HEADER + 9]))
    }

    /// Of an IPv4 packet at `n`: whether its addresses pass the address term.
    #[inline(always)]
    fn ipv4_address(&self, n: &[u8; SCREEN_NETWORK_BYTES]) -> bool {
        let Some(a) = &self.address else {
            return true;
        };
        a.v4.is_some_and(|(net, mask)| {
            let src = u32::from_be_bytes(window_field(n, ETHERNET_HEADER + 12));
            let dst = u32::from_be_bytes(window_field(n, ETHERNET_HEADER + 16));
            (a.src & (src & mask == net)) | (a.dst & (dst & mask == net))
        })
    }

    /// Of an IPv4 packet at `n`, taken to have no options (its transport header at a fixed place):
    /// whether it passes the transport terms. A fragment after the first has no transport header.
    /// `RETURN_EARLY`: returns at the first part that fails.
    #[inline(always)]
    fn ipv4_transport<const RETURN_EARLY: bool>(&self, n: &[u8; SCREEN_NETWORK_BYTES]) -> bool {
        if self.ports.is_none() && self.tcp_flags.is_none() && self.icmp_types.is_none() {
            return true;
        }
        let (l3, l4) = (ETHERNET_HEADER, ETHERNET_HEADER + 20);
        let mut transport = true;
        let mut and = |part: bool| {
            transport &= part;
            !RETURN_EARLY || part
        };
        if !and(be16(n, l3 + 6) & 0x1fff == 0) {
            return false;
        }
        if let Some(p) = &self.ports {
            let within = |port: u16| port.wrapping_sub(p.range.lo) <= p.range.hi - p.range.lo;
            if !and((p.src & within(be16(n, l4))) | (p.dst & within(be16(n, l4 + 2)))) {
                return false;
            }
        }
        if let Some(mask) = self.tcp_flags {
            if !and(n[l4 + 13] & mask != 0) {
                return false;
            }
        }
        if let Some((v4_types, v6_types)) = &self.icmp_types {
            let (proto, kind) = (n[l3 + 9], n[l4]);
            and((proto == ipproto::ICMP) & v4_types.contains(kind)
                | (proto == ipproto::ICMPV6) & v6_types.contains(kind));
        }
        transport
    }
}

/// The tests of the terms a packet must pass (not those it must fail).
fn required<T>(terms: &[Term<T>]) -> impl Iterator<Item = &T> {
    terms.iter().filter(|t| !t.excluded).map(|t| &t.test)
}

/// The big-endian 16 bits at `at` of the screen's window (a place inside it).
#[inline(always)]
fn be16(window: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([window[at], window[at + 1]])
}

/// `N` bytes at `at` of the screen's window (a place inside it).
#[inline(always)]
fn window_field<const N: usize>(window: &[u8; SCREEN_NETWORK_BYTES], at: usize) -> [u8; N] {
    *window[at..]
        .first_chunk::<N>()
        .expect("a field inside the window")
}

/// The tests of one end of TCP connections: as source (address, port), then as destination.
#[derive(Clone, Debug, PartialEq, Eq)]
struct EndTest([(IpTest, PortTest); 2]);

impl EndTest {
    fn of(e: &TcpEnd) -> EndTest {
        let side = |side| {
            let ranges = Box::new([PortRange {
                lo: e.port,
                hi: e.port,
            }]);
            (IpTest::of(side, &[e.addr]), PortTest { side, ranges })
        };
        EndTest([side(Side::Src), side(Side::Dst)])
    }

    /// Whether the packet is a (first) TCP segment from or to the end. Read as the program reads it:
    /// the source address, its port if that matched, then the destination address and its port.
    #[inline(always)]
    fn run(&self, bytes: &[u8], net: &Network, at: Transport) -> Result<bool, Cut> {
        if at.proto != Some(ipproto::TCP) {
            return Ok(false);
        }
        for (ip, port) in &self.0 {
            if ip.run(bytes, net)? && port.run(bytes, at)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl MacTest {
    #[inline(always)]
    fn run(&self, bytes: &[u8], link: LinkType) -> Result<bool, Cut> {
        if link != LinkType::Ethernet {
            return Ok(false);
        }
        for (wanted, offset) in [(self.side.checks_dst(), 0), (self.side.checks_src(), 6)] {
            if wanted && self.macs.contains(&field::<6>(bytes, offset)?) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl IpTest {
    fn of(side: Side, nets: &[IpNet]) -> IpTest {
        IpTest {
            side,
            v4: nets
                .iter()
                .filter_map(|n| match *n {
                    IpNet::V4 { addr, prefix } => Some((addr, super::expr::mask32(prefix))),
                    IpNet::V6 { .. } => None,
                })
                .collect(),
            v6: nets
                .iter()
                .filter_map(|n| match *n {
                    IpNet::V6 { addr, prefix } => Some((addr, super::expr::mask128(prefix))),
                    IpNet::V4 { .. } => None,
                })
                .collect(),
        }
    }

    #[inline(always)]
    fn run(&self, bytes: &[u8], net: &Network) -> Result<bool, Cut> {
        match net.ethertype {
            ethertype::IPV4 if !self.v4.is_empty() => {
                for (wanted, offset) in sides(self.side, 12, 16) {
                    if wanted {
                        let a = u32::from_be_bytes(field(bytes, net.l3 + offset)?);
                        if self.v4.iter().any(|&(net, mask)| a & mask == net) {
                            return Ok(true);
                        }
                    }
                }
                Ok(false)
            }
            ethertype::IPV6 if !self.v6.is_empty() => {
                for (wanted, offset) in sides(self.side, 8, 24) {
                    if wanted {
                        let a = u128::from_be_bytes(field(bytes, net.l3 + offset)?);
                        if self.v6.iter().any(|&(net, mask)| a & mask == net) {
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

impl IcmpTest {
    #[inline(always)]
    fn run(&self, bytes: &[u8], at: Transport) -> Result<bool, Cut> {
        let types = match at.proto {
            Some(ipproto::ICMP) => &self.v4,
            Some(ipproto::ICMPV6) => &self.v6,
            _ => return Ok(false),
        };
        if types.is_empty() || !at.first_fragment {
            return Ok(false);
        }
        let [kind] = field::<1>(bytes, at.l4)?;
        Ok(types.contains(kind))
    }
}

impl PortTest {
    #[inline(always)]
    fn run(&self, bytes: &[u8], at: Transport) -> Result<bool, Cut> {
        if !at.first_fragment_of(&PORT_PROTOCOLS) {
            return Ok(false);
        }
        for (wanted, offset) in sides(self.side, 0, 2) {
            if wanted {
                let p = u16::from_be_bytes(field(bytes, at.l4 + offset)?);
                if self.ranges.iter().any(|r| r.contains(p)) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}
