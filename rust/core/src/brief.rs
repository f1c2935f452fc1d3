//! Brief lines: one line per packet, as `show`, `-o`, `-ou` and `read` print them, and their JSON form.
//!
//! `12 03:12:45.123456 int in  TCP 198.18.0.1:40000 > 198.18.0.2:80 [S] seq=0 win=64240 len=0`
//!
//! Both forms, the typed fields of a Python `Packet` and the columns of a table are read from one
//! [`Fields`] of the packet, made by [`fields_of`].

use crate::clock::Clock;
use crate::packet::{
    decode, ethertype, ipproto, Decoded, Direction, Icmp, LinkType, Net, Transport, MAX_TAGS,
};
use crate::pcap::Record;
use crate::textfmt::{push_hex, push_ipv4, push_ipv6, push_json_str, push_mac, push_u64};

/// What a brief line says about a packet besides its bytes.
#[derive(Clone, Copy, Debug)]
pub struct PacketMeta<'a> {
    pub index: u64,
    pub ts_ns: u64,
    pub iface: Option<&'a str>,
    pub direction: Option<Direction>,
    pub wirelen: u32,
    pub link: LinkType,
}

impl<'a> From<&Record<'a>> for PacketMeta<'a> {
    /// A record of a file: its frame number is the index.
    fn from(r: &Record<'a>) -> Self {
        PacketMeta {
            index: r.number,
            ts_ns: r.ts_ns,
            iface: r.iface,
            direction: r.direction,
            wirelen: r.wirelen,
            link: r.link,
        }
    }
}

/// An endpoint's address: IP, or Ethernet for frames without an IP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Addr {
    None,
    V4([u8; 4]),
    V6([u8; 16]),
    Mac([u8; 6]),
}

impl Addr {
    /// Append the address as text (nothing for `None`).
    pub fn push(self, out: &mut Vec<u8>) {
        match self {
            Addr::None => {}
            Addr::V4(a) => push_ipv4(out, a),
            Addr::V6(a) => push_ipv6(out, a),
            Addr::Mac(m) => push_mac(out, m),
        }
    }

    /// The address as text; `None` for `Addr::None`.
    pub fn text(self) -> Option<String> {
        (self != Addr::None).then(|| {
            let mut out = Vec::with_capacity(40);
            self.push(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        })
    }
}

/// What the decoder says about a packet, field by field; its `info` text is written beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fields {
    /// The innermost protocol understood: `TCP`, `UDP`, `ICMP`, `ICMP6`, `ARP`, `IPv4`, `ETH`, …
    pub proto: &'static str,
    pub src: Addr,
    pub dst: Addr,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub eth_src: Option<[u8; 6]>,
    pub eth_dst: Option<[u8; 6]>,
    vlans: [u16; MAX_TAGS],
    vlan_count: u8,
    /// The IPv4 protocol or IPv6 next header behind the extension headers, for IP packets.
    pub ip_proto: Option<u8>,
    /// The TCP flag bits, for TCP segments whose header was captured.
    pub tcp_flags: Option<u16>,
    /// Whether the capture kept less than the packet had.
    pub truncated: bool,
    /// Whether the text form shows `src > dst` (ARP says it in its own words).
    endpoints_in_text: bool,
}

impl Fields {
    /// VLAN ids, outermost first.
    pub fn vlans(&self) -> &[u16] {
        &self.vlans[..self.vlan_count as usize]
    }
}

/// Decode `data` (`caplen` bytes of a `wirelen`-byte packet on `link`) into its summary, and append
/// the free text of its brief line (flags and sequence numbers, ICMP types, …) to `info`.
pub fn fields_of(data: &[u8], link: LinkType, wirelen: u32, info: &mut Vec<u8>) -> Fields {
    let d = decode(data, link);
    let mut sum = describe(&d, data.len(), wirelen, info);
    if let Some(l2) = d.l2 {
        let ids = l2.vlan_ids();
        sum.vlans[..ids.len()].copy_from_slice(ids);
        sum.vlan_count = ids.len() as u8;
    }
    sum.eth_src = d.macs.map(|m| m.0);
    sum.eth_dst = d.macs.map(|m| m.1);
    sum.ip_proto = d.ip_proto;
    sum.truncated = (data.len() as u64) < wirelen as u64;
    sum
}

/// The TCP flags as a brief line shows them (`S`, `S.`, `FP.`, `none`).
pub fn tcp_flags_text(flags: u16) -> String {
    let mut out = Vec::with_capacity(9);
    push_tcp_flags(&mut out, flags);
    String::from_utf8_lossy(&out).into_owned()
}

/// Formats brief lines into a caller's buffer; keeps a clock cache and a scratch buffer between lines.
#[derive(Default)]
pub struct BriefFormatter {
    clock: Clock,
    info: Vec<u8>,
}

impl BriefFormatter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Times written by `clock` (a zone, with or without the date) instead of this process's zone.
    pub fn with_clock(clock: Clock) -> Self {
        BriefFormatter {
            clock,
            info: Vec::new(),
        }
    }

    /// Append the text line, newline included.
    pub fn text(&mut self, out: &mut Vec<u8>, meta: &PacketMeta, data: &[u8]) {
        self.info.clear();
        let sum = fields_of(data, meta.link, meta.wirelen, &mut self.info);
        push_u64(out, meta.index);
        out.push(b' ');
        self.clock.push_time(out, meta.ts_ns);
        out.push(b' ');
        // A name comes from the file: control characters (a forged line, a terminal escape) become `?`.
        out.extend(meta.iface.unwrap_or("-").bytes().map(|b| {
            if b < 0x20 || b == 0x7f {
                b'?'
            } else {
                b
            }
        }));
        out.extend_from_slice(match meta.direction {
            Some(Direction::In) => b" in  ",
            Some(Direction::Out) => b" out ",
            None => b" -   ",
        });
        if !sum.vlans().is_empty() {
            out.extend_from_slice(b"VLAN ");
            push_u64_list(out, sum.vlans());
            out.push(b' ');
        }
        out.extend_from_slice(sum.proto.as_bytes());
        if sum.endpoints_in_text && sum.src != Addr::None {
            out.push(b' ');
            push_endpoint(out, sum.src, sum.sport);
            out.extend_from_slice(b" > ");
            push_endpoint(out, sum.dst, sum.dport);
        }
        if !self.info.is_empty() {
            out.push(b' ');
            out.extend_from_slice(&self.info);
        }
        out.push(b'\n');
    }

    /// Append the JSON object, newline included.
    pub fn json(&mut self, out: &mut Vec<u8>, meta: &PacketMeta, data: &[u8]) {
        self.info.clear();
        let sum = fields_of(data, meta.link, meta.wirelen, &mut self.info);
        out.extend_from_slice(b"{\"index\":");
        push_u64(out, meta.index);
        out.extend_from_slice(b",\"ts_ns\":");
        push_u64(out, meta.ts_ns);
        out.extend_from_slice(b",\"iface\":");
        match meta.iface {
            Some(name) => push_json_str(out, name.as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"dir\":");
        match meta.direction {
            Some(dir) => push_json_str(out, dir.as_str().as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"caplen\":");
        push_u64(out, data.len() as u64);
        out.extend_from_slice(b",\"wirelen\":");
        push_u64(out, meta.wirelen as u64);
        for (key, mac) in [
            (&b",\"eth_src\":"[..], sum.eth_src),
            (b",\"eth_dst\":", sum.eth_dst),
        ] {
            out.extend_from_slice(key);
            push_json_addr(out, mac.map_or(Addr::None, Addr::Mac));
        }
        out.extend_from_slice(b",\"vlan\":[");
        push_u64_list(out, sum.vlans());
        out.push(b']');
        out.extend_from_slice(b",\"proto\":");
        push_json_str(out, sum.proto.as_bytes());
        out.extend_from_slice(b",\"src\":");
        push_json_addr(out, sum.src);
        out.extend_from_slice(b",\"dst\":");
        push_json_addr(out, sum.dst);
        for (key, port) in [
            (&b",\"sport\":"[..], sum.sport),
            (b",\"dport\":", sum.dport),
        ] {
            out.extend_from_slice(key);
            push_json_number(out, port.map(u64::from));
        }
        out.extend_from_slice(b",\"ip_proto\":");
        push_json_number(out, sum.ip_proto.map(u64::from));
        out.extend_from_slice(b",\"tcp_flags\":");
        match sum.tcp_flags {
            Some(flags) => {
                out.push(b'"');
                push_tcp_flags(out, flags);
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(if sum.truncated {
            b",\"truncated\":true"
        } else {
            b",\"truncated\":false"
        });
        out.extend_from_slice(b",\"info\":");
        push_json_str(out, &self.info);
        out.extend_from_slice(b"}\n");
    }
}

impl BriefFormatter {
    /// Append the line, newline included: the text form, or its JSON object.
    pub fn push(&mut self, out: &mut Vec<u8>, meta: &PacketMeta, data: &[u8], json: bool) {
        if json {
            self.json(out, meta, data);
        } else {
            self.text(out, meta, data);
        }
    }

    /// One line as a `String`, without the newline: the text form, or its JSON object.
    pub fn line(&mut self, meta: &PacketMeta, data: &[u8], json: bool) -> String {
        let mut out = Vec::with_capacity(160);
        self.push(&mut out, meta, data, json);
        out.pop();
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn push_json_addr(out: &mut Vec<u8>, a: Addr) {
    if a == Addr::None {
        out.extend_from_slice(b"null");
    } else {
        out.push(b'"');
        a.push(out);
        out.push(b'"');
    }
}

fn push_json_number(out: &mut Vec<u8>, n: Option<u64>) {
    match n {
        Some(n) => push_u64(out, n),
        None => out.extend_from_slice(b"null"),
    }
}

/// `5,7`: numbers separated by commas.
fn push_u64_list(out: &mut Vec<u8>, ns: &[u16]) {
    for (i, n) in ns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_u64(out, *n as u64);
    }
}

fn push_endpoint(out: &mut Vec<u8>, a: Addr, port: Option<u16>) {
    match (a, port) {
        (Addr::V6(_), Some(p)) => {
            out.push(b'[');
            a.push(out);
            out.extend_from_slice(b"]:");
            push_u64(out, p as u64);
        }
        (_, Some(p)) => {
            a.push(out);
            out.push(b':');
            push_u64(out, p as u64);
        }
        (_, None) => a.push(out),
    }
}

/// The name brief lines give an IP protocol, for the common ones.
pub fn proto_name(proto: u8) -> Option<&'static str> {
    Some(match proto {
        ipproto::TCP => "TCP",
        ipproto::UDP => "UDP",
        ipproto::ICMP => "ICMP",
        ipproto::ICMPV6 => "ICMP6",
        ipproto::SCTP => "SCTP",
        2 => "IGMP",
        4 => "IPIP",
        41 => "IPv6",
        47 => "GRE",
        50 => "ESP",
        ipproto::AH => "AH",
        89 => "OSPF",
        103 => "PIM",
        112 => "VRRP",
        _ => return None,
    })
}

fn push_proto(out: &mut Vec<u8>, proto: u8) {
    match proto_name(proto) {
        Some(name) => out.extend_from_slice(name.as_bytes()),
        None => push_u64(out, proto as u64),
    }
}

fn describe(d: &Decoded, caplen: usize, wirelen: u32, info: &mut Vec<u8>) -> Fields {
    let macs = d.macs.map_or((Addr::None, Addr::None), |(s, t)| {
        (Addr::Mac(s), Addr::Mac(t))
    });
    let mut sum = Fields {
        proto: "ETH",
        src: macs.0,
        dst: macs.1,
        sport: None,
        dport: None,
        eth_src: None,
        eth_dst: None,
        vlans: [0; MAX_TAGS],
        vlan_count: 0,
        ip_proto: None,
        tcp_flags: None,
        truncated: false,
        endpoints_in_text: true,
    };
    let (src, dst, ip_len, family) = match d.net {
        Net::Short => {
            sum.src = Addr::None;
            info.extend_from_slice(if caplen == 0 {
                b"[empty]"
            } else {
                b"[truncated]"
            });
            return sum;
        }
        Net::Undecoded { link } => {
            sum.proto = "LINK";
            info.extend_from_slice(b"type=");
            push_u64(info, link as u64);
            info.extend_from_slice(b" len=");
            push_u64(info, wirelen as u64);
            info.extend_from_slice(b" (not decoded)");
            return sum;
        }
        Net::Llc { length } => {
            sum.proto = "LLC";
            info.extend_from_slice(b"len=");
            push_u64(info, length as u64);
            return sum;
        }
        Net::Other { ethertype } => {
            info.extend_from_slice(b"type=0x");
            push_hex(info, ethertype as u32, 4);
            info.extend_from_slice(b" len=");
            push_u64(info, wirelen as u64);
            return sum;
        }
        Net::Truncated { ethertype: et } => {
            sum.proto = match et {
                ethertype::ARP => "ARP",
                ethertype::IPV4 => "IPv4",
                _ => "IPv6",
            };
            sum.src = Addr::None;
            info.extend_from_slice(if et == ethertype::ARP {
                b"[unsupported or truncated]"
            } else {
                b"[truncated]"
            });
            return sum;
        }
        Net::Arp(arp) => {
            sum.proto = "ARP";
            sum.src = Addr::V4(arp.sender_ip);
            sum.dst = Addr::V4(arp.target_ip);
            sum.endpoints_in_text = false;
            match arp.op {
                1 => {
                    info.extend_from_slice(b"who-has ");
                    push_ipv4(info, arp.target_ip);
                    info.extend_from_slice(b" tell ");
                    push_ipv4(info, arp.sender_ip);
                }
                2 => {
                    info.extend_from_slice(b"reply ");
                    push_ipv4(info, arp.sender_ip);
                    info.extend_from_slice(b" is-at ");
                    push_mac(info, arp.sender_mac);
                }
                op => {
                    info.extend_from_slice(b"op=");
                    push_u64(info, op as u64);
                    info.push(b' ');
                    push_ipv4(info, arp.sender_ip);
                    info.extend_from_slice(b" > ");
                    push_ipv4(info, arp.target_ip);
                }
            }
            return sum;
        }
        Net::Ipv4(ip) => (
            Addr::V4(ip.src),
            Addr::V4(ip.dst),
            ip.total_len as u32,
            "IPv4",
        ),
        Net::Ipv6(ip) => (
            Addr::V6(ip.src),
            Addr::V6(ip.dst),
            ip.payload_len as u32 + 40,
            "IPv6",
        ),
    };
    sum.src = src;
    sum.dst = dst;
    sum.proto = family;
    match d.transport {
        Transport::Tcp(t) => {
            sum.proto = "TCP";
            sum.sport = Some(t.sport);
            sum.dport = Some(t.dport);
            sum.tcp_flags = Some(t.flags);
            info.push(b'[');
            push_tcp_flags(info, t.flags);
            info.extend_from_slice(b"] seq=");
            push_u64(info, t.seq as u64);
            if t.flags & 0x10 != 0 {
                info.extend_from_slice(b" ack=");
                push_u64(info, t.ack as u64);
            }
            info.extend_from_slice(b" win=");
            push_u64(info, t.window as u64);
            if let Some(n) = t.payload_len {
                info.extend_from_slice(b" len=");
                push_u64(info, n as u64);
            }
        }
        Transport::Udp {
            sport,
            dport,
            length,
        } => {
            sum.proto = "UDP";
            sum.sport = Some(sport);
            sum.dport = Some(dport);
            info.extend_from_slice(b"len=");
            push_u64(info, length.saturating_sub(8) as u64);
        }
        Transport::Sctp { sport, dport } => {
            sum.proto = "SCTP";
            sum.sport = Some(sport);
            sum.dport = Some(dport);
        }
        Transport::Icmp(icmp) => {
            sum.proto = "ICMP";
            push_icmp(info, icmp, false);
        }
        Transport::Icmp6(icmp) => {
            sum.proto = "ICMP6";
            push_icmp(info, icmp, true);
        }
        Transport::LaterFragment { proto } => {
            info.extend_from_slice(b"fragment off=");
            push_u64(info, d.fragment.map_or(0, |f| f.frag_offset) as u64);
            info.extend_from_slice(b" proto=");
            push_proto(info, proto);
        }
        Transport::Other { proto } => {
            info.extend_from_slice(b"proto=");
            push_proto(info, proto);
            info.extend_from_slice(b" len=");
            push_u64(info, ip_len as u64);
        }
        Transport::Truncated { proto } => {
            if proto != 0 {
                sum.proto = proto_name(proto).unwrap_or(family);
            }
            info.extend_from_slice(b"[truncated]");
        }
        Transport::None => {}
    }
    if let Some(f) = d.fragment {
        if f.is_first_fragment() {
            if !info.is_empty() {
                info.push(b' ');
            }
            info.extend_from_slice(b"[first fragment]");
        }
    }
    sum
}

/// Append the TCP flags as a brief line shows them, in tcpdump's order.
pub fn push_tcp_flags(out: &mut Vec<u8>, flags: u16) {
    // tcpdump's order, so the lines read the same to people used to it.
    const NAMES: [(u16, u8); 8] = [
        (0x01, b'F'),
        (0x02, b'S'),
        (0x04, b'R'),
        (0x08, b'P'),
        (0x10, b'.'),
        (0x20, b'U'),
        (0x40, b'E'),
        (0x80, b'W'),
    ];
    let before = out.len();
    for (bit, c) in NAMES {
        if flags & bit != 0 {
            out.push(c);
        }
    }
    if out.len() == before {
        out.extend_from_slice(b"none");
    }
}

fn push_icmp(out: &mut Vec<u8>, icmp: Icmp, v6: bool) {
    let name: Option<&str> = match (v6, icmp.kind) {
        (false, 0) | (true, 129) => Some("echo reply"),
        (false, 8) | (true, 128) => Some("echo request"),
        (false, 3) | (true, 1) => Some("unreachable"),
        (false, 11) | (true, 3) => Some("time exceeded"),
        (false, 5) => Some("redirect"),
        (false, 12) | (true, 4) => Some("parameter problem"),
        (true, 2) => Some("packet too big"),
        (true, 133) => Some("router solicitation"),
        (true, 134) => Some("router advertisement"),
        (true, 135) => Some("neighbor solicitation"),
        (true, 136) => Some("neighbor advertisement"),
        (true, 143) => Some("multicast listener report v2"),
        _ => None,
    };
    match name {
        Some(n) => out.extend_from_slice(n.as_bytes()),
        None => {
            out.extend_from_slice(b"type=");
            push_u64(out, icmp.kind as u64);
        }
    }
    if let Some((id, seq)) = icmp.echo {
        out.extend_from_slice(b" id=");
        push_u64(out, id as u64);
        out.extend_from_slice(b" seq=");
        push_u64(out, seq as u64);
    } else if icmp.code != 0 || name.is_none() {
        out.extend_from_slice(b" code=");
        push_u64(out, icmp.code as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_syn() -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0];
        f.extend_from_slice(&[
            0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
        ]);
        f.extend_from_slice(&[
            0x9c, 0x40, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0, 0, 0, 0, 0,
        ]);
        f
    }

    fn meta(wirelen: u32) -> PacketMeta<'static> {
        PacketMeta {
            index: 12,
            ts_ns: 0,
            iface: Some("int"),
            direction: Some(Direction::In),
            wirelen,
            link: LinkType::Ethernet,
        }
    }

    #[test]
    fn the_documented_example_line() {
        let f = tcp_syn();
        let line = BriefFormatter::new().line(&meta(f.len() as u32), &f, false);
        // The time depends on TZ; the rest is fixed.
        assert!(line.starts_with("12 "));
        assert!(
            line.ends_with(
                " int in  TCP 198.18.0.1:40000 > 198.18.0.2:80 [S] seq=0 win=64240 len=0"
            ),
            "{line}"
        );
    }

    #[test]
    fn every_prefix_gets_a_line() {
        let f = tcp_syn();
        let mut fmt = BriefFormatter::new();
        for n in 0..=f.len() {
            let mut out = Vec::new();
            fmt.text(&mut out, &meta(f.len() as u32), &f[..n]);
            fmt.json(&mut out, &meta(f.len() as u32), &f[..n]);
            assert_eq!(out.iter().filter(|&&c| c == b'\n').count(), 2);
        }
        let mut out = Vec::new();
        fmt.text(&mut out, &meta(54), &f[..40]);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("TCP 198.18.0.1 > 198.18.0.2 [truncated]"));
    }
}
