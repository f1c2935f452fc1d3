//! Conversations: a recording's packets grouped by who talked to whom, in one pass, with memory bounded
//! by the number of conversations, not of packets.
//!
//! TCP, UDP and SCTP are told apart by their 5-tuple, ICMP echo by its identifier, any other IP protocol
//! (ICMP other than echo included) by the address pair; both directions are one conversation, and so are
//! the packets of one interface and VLAN stack. Each conversation ends with a client (the side that sent
//! the first SYN, or the first packet) and a [`State`]. ICMP errors are not conversations of their own
//! when the conversation they quote is known: they count beside it, and an unreachable one refuses it.

mod key;

use std::collections::HashMap;

use key::icmp_reply_of;
pub use key::FlowKind;
use key::{FragmentKey, Key, Says, Sorted, NO_VLAN};

use crate::brief::{Addr, PacketMeta};
use crate::capture::{BufferIface, SharedBuffer};
use crate::filter::Filter;
use crate::packet::{ipproto, Direction};

/// How a conversation ended up, as far as the recording shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// TCP: the server accepted (SYN-ACK, or both sides talked) and neither closed nor reset.
    Established,
    /// TCP: accepted, then a FIN from each side.
    Closed,
    /// TCP: accepted, then reset.
    Reset,
    /// Not TCP: both sides sent packets.
    Answered,
    /// The server (or a router on the way) said no: a RST to the SYN, or an ICMP unreachable.
    Refused,
    /// Only the client spoke.
    Unanswered,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Established => "established",
            State::Closed => "closed",
            State::Reset => "reset",
            State::Answered => "answered",
            State::Refused => "refused",
            State::Unanswered => "unanswered",
        }
    }

    /// Whether the server answered: the conversations a policy lets through.
    pub fn answered(self) -> bool {
        !matches!(self, State::Refused | State::Unanswered)
    }
}

/// Packets and bytes (on the wire) one way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count {
    pub packets: u64,
    pub bytes: u64,
}

/// One conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversation {
    /// The capture interface, when the recording names it.
    pub iface: Option<String>,
    /// VLAN ids, outermost first.
    pub vlans: Vec<u16>,
    pub kind: FlowKind,
    /// The IP protocol (IPv6: the next header behind the extension headers).
    pub ip_proto: u8,
    pub client: Addr,
    pub server: Addr,
    /// Ports, for TCP, UDP and SCTP.
    pub client_port: Option<u16>,
    pub server_port: Option<u16>,
    /// The identifier, for ICMP echo.
    pub echo_id: Option<u16>,
    /// For ICMP other than echo: the types the client sent that the server answered with their reply
    /// type (timestamp, address mask, router and neighbour solicitation, …).
    pub client_icmp_types: Vec<u8>,
    pub to_server: Count,
    pub to_client: Count,
    pub first_ns: u64,
    pub last_ns: u64,
    pub state: State,
    /// Which way the client's packets crossed the capture interface, when all went the same known way.
    pub client_direction: Option<Direction>,
    /// ICMP errors about this conversation (not counted in its packets).
    pub icmp_errors: u64,
}

/// The conversations of a recording, biggest first, and what fell in none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowTable {
    pub conversations: Vec<Conversation>,
    /// Packets that are not IP (ARP, LLC, …), or whose IP header was cut short.
    pub not_ip: u64,
    /// IP packets that tell no conversation: cut before their ports, or later fragments whose first
    /// fragment was not seen.
    pub unattributed: u64,
}

// TCP flags as sent by one side.
const SYN: u8 = 1;
const SYN_ACK: u8 = 2;
const RST: u8 = 4;
const FIN: u8 = 8;
/// A segment without RST: the side is talking, not refusing.
const NOT_RST: u8 = 16;

/// Ports below this are well known: a server's.
const WELL_KNOWN: u16 = 1024;

// Which ways one side's packets crossed the interface.
const WENT_IN: u8 = 1;
const WENT_OUT: u8 = 2;
const WENT_UNKNOWN: u8 = 4;

/// What is counted of one conversation while the packets go by; both arrays are indexed by the end of
/// the key that sent.
struct Tally {
    key: Key,
    first_ns: u64,
    last_ns: u64,
    counts: [Count; 2],
    first_from: u8,
    /// The earliest timestamp each end sent at.
    first_at: [u64; 2],
    ways: [u8; 2],
    tcp: [u8; 2],
    /// A RST came once the connection was accepted (a RST before, then a new handshake, is not one).
    reset: bool,
    /// The end that sent the first SYN without ACK; the first SYN-ACK.
    opened_by: Option<u8>,
    accepted_by: Option<u8>,
    /// The end that sent the first echo request; the first echo reply.
    requested_by: Option<u8>,
    replied_by: Option<u8>,
    icmp_types: [[u64; 4]; 2],
    icmp_errors: u64,
    unreachable: bool,
}

impl Tally {
    fn new(key: Key, from: usize, ts_ns: u64) -> Tally {
        Tally {
            key,
            first_ns: ts_ns,
            last_ns: ts_ns,
            counts: [Count::default(); 2],
            first_from: from as u8,
            first_at: [u64::MAX; 2],
            ways: [0; 2],
            tcp: [0; 2],
            reset: false,
            opened_by: None,
            accepted_by: None,
            requested_by: None,
            replied_by: None,
            icmp_types: [[0; 4]; 2],
            icmp_errors: 0,
            unreachable: false,
        }
    }

    fn count(&mut self, from: usize, meta: &PacketMeta) {
        self.first_ns = self.first_ns.min(meta.ts_ns);
        self.last_ns = self.last_ns.max(meta.ts_ns);
        self.first_at[from] = self.first_at[from].min(meta.ts_ns);
        let c = &mut self.counts[from];
        c.packets += 1;
        c.bytes += meta.wirelen as u64;
        self.ways[from] |= match meta.direction {
            Some(Direction::In) => WENT_IN,
            Some(Direction::Out) => WENT_OUT,
            None => WENT_UNKNOWN,
        };
    }

    fn note(&mut self, from: usize, says: Says) {
        let side = Some(from as u8);
        match says {
            Says::Tcp(Some(flags)) => {
                let (syn, ack, rst, fin) = (
                    flags & 0x02 != 0,
                    flags & 0x10 != 0,
                    flags & 0x04 != 0,
                    flags & 0x01 != 0,
                );
                let talking = |seen: u8| seen & NOT_RST != 0;
                if rst && (self.accepted_by.is_some() || self.tcp.iter().all(|&t| talking(t))) {
                    self.reset = true;
                }
                let seen = &mut self.tcp[from];
                if syn && !ack {
                    *seen |= SYN;
                    self.opened_by = self.opened_by.or(side);
                }
                if syn && ack {
                    *seen |= SYN_ACK;
                    self.accepted_by = self.accepted_by.or(side);
                }
                *seen |= if rst { RST } else { NOT_RST };
                if fin {
                    *seen |= FIN;
                }
            }
            Says::Tcp(None) => self.tcp[from] |= NOT_RST,
            Says::EchoRequest => self.requested_by = self.requested_by.or(side),
            Says::EchoReply => self.replied_by = self.replied_by.or(side),
            Says::Icmp(kind) => self.icmp_types[from][kind as usize / 64] |= 1 << (kind % 64),
            Says::Plain => {}
        }
    }

    /// The client's end of the key: the side that opened (TCP's SYN, echo's request), else the one
    /// the other accepted or answered. When the recording missed the start (a ring buffer overwrote
    /// it, or the capture began late): a well-known port (below 1024) on one side only is the server's;
    /// else for TCP the higher port (an ephemeral one) is the client's; else the first to send.
    fn client(&self) -> usize {
        let other = |side: u8| 1 - side as usize;
        if let Some(side) = self.opened_by.or(self.requested_by) {
            return side as usize;
        }
        if let Some(side) = self.accepted_by.or(self.replied_by) {
            return other(side);
        }
        let [(_, a), (_, b)] = self.key.ends;
        if self.key.kind == FlowKind::Ports {
            if (a < WELL_KNOWN) != (b < WELL_KNOWN) {
                return if a < WELL_KNOWN { 1 } else { 0 };
            }
            if self.key.ip_proto == ipproto::TCP && a != b {
                return if a > b { 0 } else { 1 };
            }
        }
        match self.first_at[0].cmp(&self.first_at[1]) {
            std::cmp::Ordering::Less => 0,
            std::cmp::Ordering::Greater => 1,
            std::cmp::Ordering::Equal => self.first_from as usize,
        }
    }

    /// For an ICMP conversation other than echo: the types the client sent that the server answered
    /// with their reply type.
    fn answered_icmp_types(&self, client: usize) -> Vec<u8> {
        let v6 = self.key.ip_proto == ipproto::ICMPV6;
        let sent =
            |side: usize, t: u8| self.icmp_types[side][t as usize / 64] & (1 << (t % 64)) != 0;
        (0..=255u8)
            .filter(|&t| sent(client, t))
            .filter(|&t| icmp_reply_of(t, v6).is_some_and(|r| sent(1 - client, r)))
            .collect()
    }

    fn state(&self, client: usize) -> State {
        let server = 1 - client;
        let talked = self.counts[client].packets > 0 && self.counts[server].packets > 0;
        if self.key.kind == FlowKind::Ports && self.key.ip_proto == ipproto::TCP {
            let (c, s) = (self.tcp[client], self.tcp[server]);
            // Accepted: a SYN-ACK to the client's SYN, or both sides talking (without RST): the
            // handshake may be missing from the recording, but a RST or a SYN-ACK alone from one side
            // (a scan, a stray segment) is no conversation.
            let accepted = (s & SYN_ACK != 0 && self.opened_by == Some(client as u8))
                || (c & NOT_RST != 0 && s & NOT_RST != 0);
            return if !accepted {
                if s & RST != 0 || self.unreachable {
                    State::Refused
                } else {
                    State::Unanswered
                }
            } else if c & FIN != 0 && s & FIN != 0 {
                State::Closed
            } else if self.reset {
                State::Reset
            } else {
                State::Established
            };
        }
        let answered = match (self.key.kind, self.key.ip_proto) {
            (FlowKind::Pair, ipproto::ICMP | ipproto::ICMPV6) => {
                !self.answered_icmp_types(client).is_empty()
            }
            _ => talked,
        };
        if answered {
            State::Answered
        } else if self.unreachable {
            State::Refused
        } else {
            State::Unanswered
        }
    }

    fn finish(self, ifaces: &[String]) -> Conversation {
        let client = self.client();
        let server = 1 - client;
        let key = self.key;
        let (ports, echo_id) = match key.kind {
            FlowKind::Ports => ((Some(key.ends[client].1), Some(key.ends[server].1)), None),
            FlowKind::Echo => ((None, None), Some(key.ends[0].1)),
            FlowKind::Pair => ((None, None), None),
        };
        let client_icmp_types = self.answered_icmp_types(client);
        let ways = self.ways[client];
        Conversation {
            iface: (key.iface > 0).then(|| ifaces[key.iface as usize - 1].clone()),
            vlans: key
                .vlans
                .iter()
                .copied()
                .take_while(|&v| v != NO_VLAN)
                .collect(),
            kind: key.kind,
            ip_proto: key.ip_proto,
            client: key.ends[client].0,
            server: key.ends[server].0,
            client_port: ports.0,
            server_port: ports.1,
            echo_id,
            client_icmp_types,
            to_server: self.counts[client],
            to_client: self.counts[server],
            first_ns: self.first_ns,
            last_ns: self.last_ns,
            state: self.state(client),
            client_direction: match ways {
                WENT_IN => Some(Direction::In),
                WENT_OUT => Some(Direction::Out),
                _ => None,
            },
            icmp_errors: self.icmp_errors,
        }
    }
}

/// Gathers conversations one packet at a time.
#[derive(Default)]
pub struct Flows {
    index: HashMap<Key, u32>,
    tallies: Vec<Tally>,
    /// Where the later fragments of the latest fragmented datagram of each direction go.
    fragments: HashMap<FragmentKey, u32>,
    ifaces: Vec<String>,
    iface_numbers: HashMap<String, u32>,
    /// The number of the latest packet's interface (0: none yet).
    last_iface: u32,
    not_ip: u64,
    unattributed: u64,
}

impl Flows {
    pub fn new() -> Flows {
        Flows::default()
    }

    /// Count one packet: `data` as captured, `meta` its time, length on the wire, interface and link.
    pub fn add(&mut self, meta: &PacketMeta, data: &[u8]) {
        let iface = self.iface_number(meta.iface);
        match key::sort(data, meta.link, iface) {
            Sorted::NotIp => self.not_ip += 1,
            Sorted::Unknown => self.unattributed += 1,
            Sorted::Packet {
                key,
                from,
                says,
                opens_fragments,
            } => {
                let at = self.tally(key, from, meta.ts_ns);
                let t = &mut self.tallies[at as usize];
                t.count(from, meta);
                t.note(from, says);
                if let Some(f) = opens_fragments {
                    self.fragments.insert(f, at);
                }
            }
            Sorted::LaterFragment(f) => match self.fragments.get(&f) {
                Some(&at) => {
                    let t = &mut self.tallies[at as usize];
                    // The first fragment's sender: the same source address.
                    let from = usize::from(t.key.ends[0].0 != f.2);
                    t.count(from, meta);
                }
                None => self.unattributed += 1,
            },
            Sorted::Error {
                quoted,
                unreachable,
                own,
            } => match self.index.get(&quoted) {
                Some(&at) => {
                    let t = &mut self.tallies[at as usize];
                    t.icmp_errors += 1;
                    t.unreachable |= unreachable;
                }
                None => {
                    let (key, from) = own;
                    let at = self.tally(key, from, meta.ts_ns);
                    self.tallies[at as usize].count(from, meta);
                }
            },
        }
    }

    /// The conversations, biggest (in bytes) first; ties by first packet, then by endpoints.
    pub fn finish(self) -> FlowTable {
        let ifaces = self.ifaces;
        let mut conversations: Vec<_> = self
            .tallies
            .into_iter()
            .map(|t| t.finish(&ifaces))
            .collect();
        conversations.sort_by(|a, b| {
            let bytes = |c: &Conversation| c.to_server.bytes + c.to_client.bytes;
            bytes(b)
                .cmp(&bytes(a))
                .then(a.first_ns.cmp(&b.first_ns))
                .then_with(|| sort_key(a).cmp(&sort_key(b)))
        });
        FlowTable {
            conversations,
            not_ip: self.not_ip,
            unattributed: self.unattributed,
        }
    }

    fn tally(&mut self, key: Key, from: usize, ts_ns: u64) -> u32 {
        let next = self.tallies.len() as u32;
        let at = *self.index.entry(key).or_insert(next);
        if at == next {
            self.tallies.push(Tally::new(key, from, ts_ns));
        }
        at
    }

    fn iface_number(&mut self, name: Option<&str>) -> u32 {
        let Some(name) = name else { return 0 };
        // Packets mostly come in runs of one interface; a file may name very many.
        if self.last_iface > 0 && self.ifaces[self.last_iface as usize - 1] == name {
            return self.last_iface;
        }
        let next = self.ifaces.len() as u32 + 1;
        let number = match self.iface_numbers.get(name) {
            Some(&number) => number,
            None => {
                self.iface_numbers.insert(name.to_owned(), next);
                self.ifaces.push(name.to_owned());
                next
            }
        };
        self.last_iface = number;
        number
    }
}

fn sort_key(c: &Conversation) -> impl Ord + '_ {
    (
        &c.iface,
        &c.vlans,
        c.ip_proto,
        c.client,
        c.client_port,
        c.server,
        c.server_port,
        c.echo_id,
    )
}

/// The conversations of the packets `buffer` holds now of `ifaces` that `filter` keeps, taken in time
/// order.
pub fn from_buffer(
    buffer: &SharedBuffer,
    ifaces: &[BufferIface],
    filter: Option<&Filter>,
) -> FlowTable {
    let ids: Vec<_> = ifaces.iter().map(|i| i.id).collect();
    let mut flows = Flows::new();
    let walked = buffer.walk_merged(
        &ids,
        &mut flows,
        |flows, i, p| {
            if filter.is_none_or(|f| f.matches(p.data, ifaces[i].link)) {
                flows.add(&ifaces[i].meta(p), p.data);
            }
            p.data.len()
        },
        |_| Ok(()),
    );
    walked.expect("counting conversations writes nowhere");
    flows.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::LinkType;

    const C: [u8; 4] = [198, 18, 1, 2];
    const S: [u8; 4] = [198, 18, 2, 2];
    const R: [u8; 4] = [198, 18, 1, 1];

    fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn vlan(id: u16, frame: &[u8]) -> Vec<u8> {
        let mut f = frame[..12].to_vec();
        f.extend_from_slice(&[0x81, 0]);
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(&frame[12..]);
        f
    }

    fn ip4(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&(20 + payload.len() as u16).to_be_bytes());
        p.extend_from_slice(&[0, 1]);
        p.extend_from_slice(&frag.to_be_bytes());
        p.extend_from_slice(&[64, proto, 0, 0]);
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(payload);
        p
    }

    fn ip6(src: u8, dst: u8, proto: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        p.extend_from_slice(&[proto, 64]);
        for last in [src, dst] {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            a[15] = last;
            p.extend_from_slice(&a);
        }
        p.extend_from_slice(payload);
        p
    }

    fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&sport.to_be_bytes());
        t.extend_from_slice(&dport.to_be_bytes());
        t.extend_from_slice(&[0; 8]);
        t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        t
    }

    fn udp(sport: u16, dport: u16) -> Vec<u8> {
        let mut u = Vec::new();
        u.extend_from_slice(&sport.to_be_bytes());
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&[0, 12, 0, 0, 1, 2, 3, 4]);
        u
    }

    fn icmp(kind: u8, rest: [u8; 4], quoted: &[u8]) -> Vec<u8> {
        let mut m = vec![kind, 0, 0, 0];
        m.extend_from_slice(&rest);
        m.extend_from_slice(quoted);
        m
    }

    fn v4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
        eth(0x0800, &ip4(src, dst, proto, 0, payload))
    }

    const SYN: u8 = 0x02;
    const SYNACK: u8 = 0x12;
    const ACK: u8 = 0x10;
    const RSTACK: u8 = 0x14;
    const FINACK: u8 = 0x11;

    /// The conversations of `frames`, each sent at its place in the list (in ms) on `int`, inbound.
    fn flows(frames: &[Vec<u8>]) -> FlowTable {
        let mut flows = Flows::new();
        for (i, f) in frames.iter().enumerate() {
            let meta = PacketMeta {
                index: i as u64 + 1,
                ts_ns: i as u64 * 1_000_000,
                iface: Some("int"),
                direction: Some(Direction::In),
                wirelen: f.len() as u32,
                link: LinkType::Ethernet,
            };
            flows.add(&meta, f);
        }
        flows.finish()
    }

    fn states(frames: &[Vec<u8>]) -> Vec<&'static str> {
        let t = flows(frames);
        t.conversations.iter().map(|c| c.state.as_str()).collect()
    }

    #[test]
    fn tcp_states_follow_the_handshake_and_its_end() {
        let c2s = |flags| v4(C, S, 6, &tcp(40000, 9100, flags));
        let s2c = |flags| v4(S, C, 6, &tcp(9100, 40000, flags));
        assert_eq!(states(&[c2s(SYN), s2c(SYNACK), c2s(ACK)]), ["established"]);
        assert_eq!(states(&[c2s(SYN), s2c(RSTACK)]), ["refused"]);
        assert_eq!(states(&[c2s(SYN), c2s(SYN)]), ["unanswered"]);
        assert_eq!(
            states(&[c2s(SYN), s2c(SYNACK), c2s(ACK), c2s(RSTACK)]),
            ["reset"]
        );
        let closed = [c2s(SYN), s2c(SYNACK), c2s(FINACK), s2c(FINACK), c2s(ACK)];
        assert_eq!(states(&closed), ["closed"]);
        // Recorded mid-stream: both sides talk, so it was accepted.
        assert_eq!(states(&[s2c(ACK), c2s(ACK)]), ["established"]);
    }

    #[test]
    fn one_side_alone_is_no_accepted_connection() {
        let c2s = |flags| v4(C, S, 6, &tcp(50001, 6667, flags));
        let s2c = |flags| v4(S, C, 6, &tcp(6667, 50001, flags));
        // A stray segment from outside, and the RST it draws: not a conversation anyone accepted.
        assert_eq!(states(&[s2c(ACK), c2s(RSTACK)]), ["unanswered"]);
        assert_eq!(states(&[s2c(SYNACK), c2s(RSTACK)]), ["unanswered"]);
        assert_eq!(states(&[s2c(SYNACK)]), ["unanswered"]);
        // The SYN-ACK missing from the recording: both sides talking is acceptance enough.
        let mut talk = vec![c2s(SYN)];
        for _ in 0..5 {
            talk.extend([c2s(ACK), s2c(ACK)]);
        }
        assert_eq!(states(&talk), ["established"]);
        // A port used again after a refusal: the RST belongs to the earlier attempt.
        let again = [c2s(SYN), s2c(RSTACK), c2s(SYN), s2c(SYNACK), c2s(ACK)];
        assert_eq!(states(&again), ["established"]);
    }

    #[test]
    fn without_the_first_packet_a_well_known_port_is_the_server() {
        // A ring buffer kept the reply but not its query.
        let t = flows(&[
            v4(S, C, 17, &udp(161, 45555)),
            v4(C, S, 17, &udp(45555, 161)),
        ]);
        let c = &t.conversations[0];
        assert_eq!((c.client, c.server_port), (Addr::V4(C), Some(161)));
        // Both ports ephemeral: the earliest packet by its time, not by its place in the file.
        let mut flows = Flows::new();
        for (ts, frame) in [
            (2, v4(S, C, 17, &udp(5000, 6000))),
            (1, v4(C, S, 17, &udp(6000, 5000))),
        ] {
            let meta = PacketMeta {
                index: 0,
                ts_ns: ts,
                iface: None,
                direction: None,
                wirelen: frame.len() as u32,
                link: LinkType::Ethernet,
            };
            flows.add(&meta, &frame);
        }
        assert_eq!(flows.finish().conversations[0].client, Addr::V4(C));
    }

    #[test]
    fn icmp_types_count_when_their_reply_came_back() {
        let t = flows(&[
            v4(C, S, 1, &icmp(13, [0; 4], &[0; 12])),
            v4(S, C, 1, &icmp(14, [0; 4], &[0; 12])),
            v4(C, S, 1, &icmp(15, [0; 4], &[])),
        ]);
        let c = &t.conversations[0];
        assert_eq!(
            (c.state, c.client_icmp_types.clone()),
            (State::Answered, vec![13])
        );
        let t = flows(&[
            v4(C, S, 1, &icmp(15, [0; 4], &[])),
            v4(S, C, 1, &icmp(3, [0; 4], &[])),
        ]);
        assert_eq!(t.conversations[0].state, State::Unanswered);
    }

    #[test]
    fn bogus_headers_tell_no_conversation() {
        let mut short_ip = v4(C, S, 6, &tcp(40000, 80, SYN));
        short_ip[14] = 0x40; // IHL 0
        let mut short_tcp = v4(C, S, 6, &tcp(40000, 80, SYN));
        short_tcp[14 + 20 + 12] = 0x00; // data offset 0
        let mut wrong_version = v4(C, S, 17, &udp(1, 2));
        wrong_version[14] = 0x65;
        let t = flows(&[short_ip, short_tcp, wrong_version]);
        assert_eq!((t.conversations.len(), t.unattributed), (0, 3));
    }

    #[test]
    fn the_client_is_who_sent_the_syn_whatever_came_first() {
        let t = flows(&[
            v4(S, C, 6, &tcp(9100, 40000, SYNACK)),
            v4(C, S, 6, &tcp(40000, 9100, ACK)),
        ]);
        let c = &t.conversations[0];
        assert_eq!((c.client, c.client_port), (Addr::V4(C), Some(40000)));
        assert_eq!((c.server, c.server_port), (Addr::V4(S), Some(9100)));
        // No handshake at all: the ephemeral (higher) port is the client's.
        let t = flows(&[v4(S, C, 6, &tcp(22, 50000, ACK))]);
        assert_eq!(t.conversations[0].server_port, Some(22));
        // A SYN decides even after other segments.
        let t = flows(&[
            v4(S, C, 6, &tcp(5000, 6000, RSTACK)),
            v4(S, C, 6, &tcp(5000, 6000, SYN)),
        ]);
        assert_eq!(t.conversations[0].client, Addr::V4(S));
    }

    #[test]
    fn counts_go_each_way_by_wire_length() {
        let t = flows(&[
            v4(C, S, 17, &udp(40000, 161)),
            v4(S, C, 17, &udp(161, 40000)),
            v4(C, S, 17, &udp(40000, 161)),
        ]);
        let c = &t.conversations[0];
        let len = v4(C, S, 17, &udp(1, 2)).len() as u64;
        assert_eq!(
            c.to_server,
            Count {
                packets: 2,
                bytes: 2 * len
            }
        );
        assert_eq!(
            c.to_client,
            Count {
                packets: 1,
                bytes: len
            }
        );
        assert_eq!((c.first_ns, c.last_ns), (0, 2_000_000));
        assert_eq!(c.state, State::Answered);
        assert_eq!(c.client_direction, Some(Direction::In));
    }

    #[test]
    fn an_unreachable_refuses_the_conversation_it_quotes_and_is_no_conversation_itself() {
        let probe = ip4(C, S, 17, 0, &udp(40000, 162));
        let t = flows(&[
            eth(0x0800, &probe),
            v4(S, C, 1, &icmp(3, [0; 4], &probe)),
            v4(C, S, 17, &udp(40001, 9999)),
        ]);
        assert_eq!(t.conversations.len(), 2);
        let refused = t
            .conversations
            .iter()
            .find(|c| c.server_port == Some(162))
            .unwrap();
        assert_eq!((refused.state, refused.icmp_errors), (State::Refused, 1));
        assert_eq!(refused.to_client.packets, 0);
        let other = t
            .conversations
            .iter()
            .find(|c| c.server_port == Some(9999))
            .unwrap();
        assert_eq!(other.state, State::Unanswered);
        // A TCP SYN refused by a router's unreachable.
        let syn = ip4(C, S, 6, 0, &tcp(40000, 25, SYN));
        let t = flows(&[eth(0x0800, &syn), v4(R, C, 1, &icmp(3, [0; 4], &syn))]);
        assert_eq!(states_of(&t), ["refused"]);
    }

    fn states_of(t: &FlowTable) -> Vec<&'static str> {
        t.conversations.iter().map(|c| c.state.as_str()).collect()
    }

    #[test]
    fn an_error_about_an_unknown_conversation_is_an_icmp_conversation() {
        let probe = ip4(C, S, 17, 0, &udp(40000, 162));
        let t = flows(&[v4(R, C, 1, &icmp(11, [0; 4], &probe))]);
        let c = &t.conversations[0];
        assert_eq!(
            (c.kind, c.ip_proto, c.client, c.server),
            (FlowKind::Pair, 1, Addr::V4(R), Addr::V4(C))
        );
        // Errors are no types a policy would allow.
        assert!(c.client_icmp_types.is_empty());
    }

    #[test]
    fn echo_is_told_apart_by_its_identifier() {
        let req = |id: u16| v4(C, S, 1, &icmp(8, [(id >> 8) as u8, id as u8, 0, 1], &[]));
        let rep = |id: u16| v4(S, C, 1, &icmp(0, [(id >> 8) as u8, id as u8, 0, 1], &[]));
        let t = flows(&[req(7), rep(7), req(8)]);
        let mut got: Vec<_> = t
            .conversations
            .iter()
            .map(|c| (c.echo_id, c.state))
            .collect();
        got.sort();
        assert_eq!(
            got,
            [(Some(7), State::Answered), (Some(8), State::Unanswered)]
        );
        assert!(t.conversations.iter().all(|c| c.client == Addr::V4(C)));
    }

    #[test]
    fn later_fragments_join_their_first_fragment() {
        let first = ip4(C, S, 17, 0x2000, &udp(40000, 5353));
        let later = ip4(C, S, 17, 185, &[0; 16]);
        let t = flows(&[eth(0x0800, &first), eth(0x0800, &later)]);
        assert_eq!(t.conversations.len(), 1);
        assert_eq!(t.conversations[0].to_server.packets, 2);
        // One whose first fragment was not recorded tells no conversation.
        let t = flows(&[eth(0x0800, &later)]);
        assert_eq!((t.conversations.len(), t.unattributed), (0, 1));
    }

    #[test]
    fn vlans_and_ipv6_are_their_own_conversations() {
        let plain = v4(C, S, 17, &udp(1000, 53));
        let t = flows(&[plain.clone(), vlan(10, &plain), vlan(0, &plain)]);
        let mut vlans: Vec<_> = t.conversations.iter().map(|c| c.vlans.clone()).collect();
        vlans.sort();
        assert_eq!(vlans, [vec![], vec![0], vec![10]]);
        let t = flows(&[
            eth(0x86dd, &ip6(2, 3, 6, &tcp(40000, 443, SYN))),
            eth(0x86dd, &ip6(3, 2, 6, &tcp(443, 40000, SYNACK))),
        ]);
        let c = &t.conversations[0];
        assert_eq!((c.state, c.server_port), (State::Established, Some(443)));
        assert_eq!(c.server.text().as_deref(), Some("2001:db8::3"));
    }

    #[test]
    fn not_ip_and_cut_headers_are_counted_apart() {
        let arp = eth(0x0806, &[0; 28]);
        let full = v4(C, S, 6, &tcp(40000, 80, SYN));
        // Cut inside the TCP header but after its ports: still that conversation.
        let cut = full[..14 + 20 + 6].to_vec();
        let cut_before_ports = full[..14 + 20 + 1].to_vec();
        let t = flows(&[arp, full, cut, cut_before_ports]);
        assert_eq!((t.not_ip, t.unattributed), (1, 1));
        assert_eq!(t.conversations[0].to_server.packets, 2);
    }

    #[test]
    fn each_interface_has_its_own_conversations() {
        let frame = v4(C, S, 17, &udp(1000, 53));
        let mut flows = Flows::new();
        for (i, iface) in ["a", "b", "a", "a", "b", "c"].iter().enumerate() {
            let meta = PacketMeta {
                index: i as u64,
                ts_ns: i as u64,
                iface: Some(iface),
                direction: None,
                wirelen: frame.len() as u32,
                link: LinkType::Ethernet,
            };
            flows.add(&meta, &frame);
        }
        let mut got: Vec<_> = flows
            .finish()
            .conversations
            .iter()
            .map(|c| (c.iface.clone().unwrap(), c.to_server.packets))
            .collect();
        got.sort();
        let want = [("a", 3), ("b", 2), ("c", 1)].map(|(i, n)| (i.to_string(), n));
        assert_eq!(got, want);
    }

    #[test]
    fn biggest_first_then_first_seen() {
        let small = v4(C, S, 17, &udp(1, 2));
        let big = v4(C, S, 17, &[udp(3, 4), vec![0; 100]].concat());
        let t = flows(&[small.clone(), big, small]);
        let ports: Vec<_> = t.conversations.iter().map(|c| c.server_port).collect();
        assert_eq!(ports, [Some(4), Some(2)]);
    }
}
