//! The compiled BPF program (run by our interpreter) and the direct evaluation agree, on random filters
//! over random frames: tagged or not, with IPv4 options, IPv6 extension headers, fragments, and cut anywhere.

use pcapdump_core::bpf::interp::{self, Ancillary};
use std::net::IpAddr;

use pcapdump_core::filter::{Filter, LinkHeader, TcpEnd};
use pcapdump_core::limits::MAX_SNAPLEN;
use pcapdump_core::packet::LinkType;
use proptest::prelude::*;

const V4: [[u8; 4]; 3] = [[198, 18, 0, 1], [198, 18, 0, 2], [10, 0, 0, 1]];
const V6: [[u8; 16]; 2] = [
    [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
];
const MACS: [[u8; 6]; 2] = [[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]];
const PORTS: [u16; 4] = [80, 443, 53, 8050];
const VLANS: [u16; 3] = [5, 7, 100];

/// A filter word with its value, excluded (`not …`) one time in four.
fn filter_word() -> impl Strategy<Value = String> {
    (prop::bool::weighted(0.25), plain_filter_word()).prop_map(|(excluded, w)| {
        if excluded {
            format!("not {w}")
        } else {
            w
        }
    })
}

fn plain_filter_word() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            prop::sample::select(vec!["eth", "ethsrc", "ethdest"]),
            0..2usize
        )
            .prop_map(|(w, i)| {
                let m = MACS[i];
                format!(
                    "{w} {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                    m[0], m[1], m[2], m[3], m[4], m[5]
                )
            }),
        (
            prop::sample::select(vec!["ip", "ipsrc", "ipdest"]),
            prop::sample::select(vec![
                "198.18.0.1",
                "198.18.0.2",
                "198.18.0.0/15",
                "10.0.0.0/8",
                "0.0.0.0/0",
                "2001:db8::1",
                "2001:db8::/32",
                "2001:db8:1::/48",
                "2001:db8::2/127",
                "::/0"
            ])
        )
            .prop_map(|(w, v)| format!("{w} {v}")),
        (
            prop::sample::select(vec!["port", "srcport", "destport"]),
            prop::sample::select(vec!["80", "443", "53", "8000-8100", "0-1023"])
        )
            .prop_map(|(w, v)| format!("{w} {v}")),
        prop::sample::select(vec![
            "tcp", "udp", "icmp", "icmp6", "arp", "sctp", "proto 47", "proto 0"
        ])
        .prop_map(String::from),
        prop::sample::select(VLANS.to_vec()).prop_map(|v| format!("vlan {v}")),
        prop::sample::select(vec![
            "syn", "S", "ack", ".", "fin", "rst", "psh", "urg", "ece", "cwr", "W"
        ])
        .prop_map(|f| format!("tcpflags {f}")),
        prop::sample::select(vec![
            "echo",
            "echoreply",
            "unreach",
            "timxceed",
            "0",
            "3",
            "128",
            "200"
        ])
        .prop_map(|t| format!("icmptype {t}")),
    ]
}

/// An end of TCP connections to leave out (as `stream` leaves out its SSH connection's), one time in
/// three: an address and a port among the frames'.
fn left_out() -> impl Strategy<Value = Option<TcpEnd>> {
    prop::option::weighted(
        0.33,
        (
            any::<bool>(),
            0..3usize,
            prop::sample::select(PORTS.to_vec()),
        )
            .prop_map(|(v6, i, port)| {
                let addr = if v6 {
                    IpAddr::from(V6[i % 2])
                } else {
                    IpAddr::from(V4[i])
                };
                TcpEnd::new(addr, port)
            }),
    )
}

/// A frame: Ethernet, 0–2 tags, then one of the network layers below, then the transport header.
fn frame() -> impl Strategy<Value = (Vec<u8>, Option<u16>)> {
    let tags = prop::collection::vec(
        (
            prop::sample::select(vec![0x8100u16, 0x88a8]),
            prop::sample::select(VLANS.to_vec()),
        ),
        0..3,
    );
    let stripped = prop::option::weighted(0.2, prop::sample::select(VLANS.to_vec()));
    (
        (0..2usize, 0..2usize, tags),
        0..6u8,    // network kind
        0..5u8,    // transport kind
        0..3usize, // address choice
        0..3usize,
        prop::sample::select(PORTS.to_vec()),
        prop::sample::select(PORTS.to_vec()),
        0..3u8,       // IPv4 options words / IPv6 extension headers
        0..3u8,       // fragment: none, first, later
        any::<u16>(), // cut point
        stripped,
        // TCP flags byte; ICMP / ICMPv6 type
        (
            any::<u8>(),
            prop::sample::select(vec![0u8, 3, 8, 11, 1, 128, 129, 200]),
        ),
    )
        .prop_map(
            |((sm, dm, tags), net, l4, a, b, sp, dp, opts, frag, cut, stripped, (flags, icmp))| {
                let mut f = Vec::new();
                f.extend_from_slice(&MACS[dm]);
                f.extend_from_slice(&MACS[sm]);
                for (tpid, id) in &tags {
                    f.extend_from_slice(&tpid.to_be_bytes());
                    f.extend_from_slice(&id.to_be_bytes());
                }
                let proto = [6u8, 17, 132, 1, 58][l4 as usize];
                let mut transport = Vec::new();
                transport.extend_from_slice(&sp.to_be_bytes());
                transport.extend_from_slice(&dp.to_be_bytes());
                transport.extend_from_slice(&[0u8; 16]);
                transport[13] = flags;
                if matches!(proto, 1 | 58) {
                    transport[0] = icmp;
                }
                match net {
                    0 | 1 => {
                        f.extend_from_slice(&0x0800u16.to_be_bytes());
                        let ihl = 5 + opts;
                        let mut h = vec![0x40 | ihl, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0];
                        let fo: u16 = match frag {
                            0 => 0,
                            1 => 0x2000,
                            _ => 185,
                        };
                        h[6..8].copy_from_slice(&fo.to_be_bytes());
                        h.extend_from_slice(&V4[a]);
                        h.extend_from_slice(&V4[b]);
                        h.extend(std::iter::repeat_n(1, opts as usize * 4));
                        f.extend_from_slice(&h);
                    }
                    2 | 3 => {
                        f.extend_from_slice(&0x86ddu16.to_be_bytes());
                        let mut exts: Vec<(u8, Vec<u8>)> = Vec::new();
                        for i in 0..opts {
                            let kind = [0u8, 60, 43][i as usize % 3];
                            exts.push((kind, vec![0u8; 8]));
                        }
                        if frag > 0 {
                            let off: u16 = if frag == 1 { 1 } else { 185 << 3 };
                            let mut fh = vec![0u8; 8];
                            fh[2..4].copy_from_slice(&off.to_be_bytes());
                            exts.push((44, fh));
                        }
                        let first = exts.first().map_or(proto, |e| e.0);
                        let mut h = vec![0x60, 0, 0, 0, 0, 0, first, 64];
                        h.extend_from_slice(&V6[a % 2]);
                        h.extend_from_slice(&V6[b % 2]);
                        f.extend_from_slice(&h);
                        for i in 0..exts.len() {
                            let next = exts.get(i + 1).map_or(proto, |e| e.0);
                            let mut body = exts[i].1.clone();
                            body[0] = next;
                            f.extend_from_slice(&body);
                        }
                    }
                    4 => {
                        f.extend_from_slice(&0x0806u16.to_be_bytes());
                        f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
                        f.extend_from_slice(&[0u8; 20]);
                    }
                    _ => f.extend_from_slice(&(46u16 + a as u16).to_be_bytes()), // LLC length
                }
                f.extend_from_slice(&transport);
                let cut = (cut as usize) % (f.len() + 8);
                f.truncate(cut);
                (f, stripped.map(|id| 0x2000 | id))
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

    #[test]
    fn interpreted_program_agrees_with_direct_evaluation(
        words in prop::collection::vec(filter_word(), 0..5),
        (frame, stripped) in frame(),
        snaplen in prop::sample::select(vec![64u32, 1500, MAX_SNAPLEN]),
        end in left_out(),
    ) {
        let mut filter = Filter::parse_str(&words.join(" ")).unwrap();
        if let Some(e) = end {
            filter = filter.excluding(e);
        }
        let text = filter.to_string();
        let prog = filter.compile(snaplen, LinkHeader::Ethernet).unwrap();
        let anc = Ancillary { vlan_tci: stripped, protocol: 0 };
        let by_program = interp::run(&prog, &frame, &anc);
        let by_tree = filter.matches_stripped(&frame, stripped);
        prop_assert_eq!(by_program != 0, by_tree, "filter `{}` frame {:02x?} stripped {:?}", text, frame, stripped);
        if by_tree {
            prop_assert_eq!(by_program, snaplen);
        }
        // Stored, the stripped tag is back in the frame (as the capture thread puts it): `read` and
        // `show` of the stored frame judge it as the kernel did.
        if let (Some(tci), true) = (stripped, frame.len() >= 12) {
            let stored = [&frame[..12], &[0x81, 0x00], &tci.to_be_bytes()[..], &frame[12..]].concat();
            prop_assert_eq!(filter.matches(&stored, LinkType::Ethernet), by_tree, "stored {:02x?}", stored);
            prop_assert_eq!(filter.matches_returning_early(&stored, LinkType::Ethernet), by_tree);
        }
        // The first look that returns early (a trigger's) judges as the branch-free one.
        prop_assert_eq!(
            filter.matches_returning_early(&frame, LinkType::Ethernet),
            filter.matches(&frame, LinkType::Ethernet),
            "returning early, frame {:02x?}", frame
        );
    }

    #[test]
    fn canonical_text_parses_back_to_the_same_filter(words in prop::collection::vec(filter_word(), 0..6)) {
        let filter = Filter::parse_str(&words.join(" ")).unwrap();
        prop_assert_eq!(Filter::parse_str(&filter.to_string()).unwrap(), filter);
    }

    #[test]
    fn parser_never_panics_on_arbitrary_tokens(tokens in prop::collection::vec("[-a-z0-9:./=]{0,12}", 0..6)) {
        let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
        if let Err(e) = Filter::parse(&refs) {
            prop_assert!(!e.token.is_empty() || refs.iter().any(|t| t.is_empty()));
        }
    }
}

proptest! {
    // Untagged IPv4 and IPv6 frames without their Ethernet header, as tun, WireGuard or PPP deliver them.
    #![proptest_config(ProptestConfig {
        cases: 5_000,
        max_global_rejects: 100_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn without_a_link_header_the_program_agrees_too(
        words in prop::collection::vec(filter_word(), 0..5),
        (frame, stripped) in frame(),
        snaplen in prop::sample::select(vec![64u32, MAX_SNAPLEN]),
        end in left_out(),
    ) {
        prop_assume!(stripped.is_none() && frame.len() >= 14);
        let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
        prop_assume!(ethertype == 0x0800 || ethertype == 0x86dd);
        let packet = &frame[14..];
        let mut filter = Filter::parse_str(&words.join(" ")).unwrap();
        if let Some(e) = end {
            filter = filter.excluding(e);
        }
        let text = filter.to_string();
        let prog = filter.compile(snaplen, LinkHeader::None).unwrap();
        // The kernel notes the protocol for the packet (skb->protocol) instead of a header holding it.
        let anc = Ancillary { vlan_tci: None, protocol: ethertype };
        let by_program = interp::run(&prog, packet, &anc);
        let by_tree = filter.matches(packet, LinkType::Raw);
        prop_assert_eq!(by_program != 0, by_tree, "filter `{}` packet {:02x?}", text, packet);
    }
}

/// An Ethernet frame of an IPv4 TCP segment from 198.18.0.1 to 198.18.0.2 whose TCP header starts with
/// `tcp` (zeros after it, up to 20 bytes).
fn ipv4_tcp(tcp: &[u8]) -> Vec<u8> {
    let mut frame = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0];
    frame.extend_from_slice(&[
        0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
    ]);
    frame.extend_from_slice(tcp);
    frame.resize(14 + 20 + tcp.len().max(20), 0);
    frame
}

/// Each filter keeps its frame, or not, alike in the compiled program and in the direct evaluation.
fn assert_kept(cases: &[(&str, &Vec<u8>, bool)]) {
    for &(text, frame, kept) in cases {
        let f = Filter::parse_str(text).unwrap();
        let by_program = interp::run(
            &f.compile(96, LinkHeader::Ethernet).unwrap(),
            frame,
            &Ancillary::default(),
        );
        assert_eq!(f.matches_stripped(frame, None), kept, "{text}");
        assert_eq!(by_program != 0, kept, "{text}");
    }
}

#[test]
fn matching_frames_exist_for_the_generator() {
    // Guards the property above against a generator that never produces a match.
    let f = Filter::parse_str("ipsrc 198.18.0.1 tcp port 80").unwrap();
    let frame = ipv4_tcp(&[0x9c, 0x40, 0, 80]);
    assert!(f.matches_stripped(&frame, None));
    assert_eq!(
        interp::run(
            &f.compile(96, LinkHeader::Ethernet).unwrap(),
            &frame,
            &Ancillary::default()
        ),
        96
    );
}

#[test]
fn an_excluded_word_rejects_what_it_matches_and_keeps_the_rest() {
    let tcp80 = ipv4_tcp(&[0x9c, 0x40, 0, 80]);
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 8, 6]);
    arp.extend_from_slice(&[0; 28]);
    assert_kept(&[
        ("not port 80", &tcp80, false),
        ("not port 22", &tcp80, true),
        ("not port 80", &arp, true),
        ("tcp not port 22 not port 80", &tcp80, false),
        ("not arp", &arp, false),
        ("not ipsrc 198.18.0.1", &tcp80, false),
    ]);
}

#[test]
fn tcp_flags_and_icmp_types_match_over_ipv4_and_ipv6_alike() {
    // An IPv4 TCP SYN-ACK, an IPv6 ICMPv6 echo request behind a hop-by-hop header, a later IPv4 fragment.
    let syn_ack = ipv4_tcp(&[0, 80, 0x9c, 0x40, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x12]);
    let mut later = syn_ack.clone();
    later[20..22].copy_from_slice(&185u16.to_be_bytes());
    let mut echo6 = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
    echo6.extend_from_slice(&[0x60, 0, 0, 0, 0, 16, 0, 64]);
    echo6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    echo6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    echo6.extend_from_slice(&[58, 0, 0, 0, 0, 0, 0, 0]); // hop-by-hop, next header ICMPv6
    echo6.extend_from_slice(&[128, 0, 0, 0, 0, 1, 0, 1]);
    assert_kept(&[
        ("tcpflags syn", &syn_ack, true),
        ("tcpflags ack", &syn_ack, true),
        ("tcpflags rst", &syn_ack, false),
        ("tcpflags rst tcpflags S", &syn_ack, true),
        ("tcpflags syn", &later, false),
        ("icmptype echo", &echo6, true),
        ("icmptype 128", &echo6, true),
        ("icmptype 8", &echo6, false),
        ("icmptype echoreply", &echo6, false),
        ("not icmptype echo", &echo6, false),
        ("icmptype echo", &syn_ack, false),
    ]);
}

#[test]
fn a_left_out_end_is_left_out_both_ways_and_nothing_else() {
    let filter = Filter::default().excluding(TcpEnd::new([198, 18, 0, 1].into(), 40000));
    let ports = |s: u16, d: u16| [s.to_be_bytes(), d.to_be_bytes()].concat();
    let forward = ipv4_tcp(&ports(40000, 22));
    let mut backward = ipv4_tcp(&ports(22, 40000));
    backward[26..30].copy_from_slice(&[198, 18, 0, 2]);
    backward[30..34].copy_from_slice(&[198, 18, 0, 1]);
    // Whatever the other end: a server port translated on the way is still this end's traffic.
    let mut redirected = forward.clone();
    redirected[36..38].copy_from_slice(&2200u16.to_be_bytes());
    // The port on the other address, or another port of this address: not this end.
    let swapped_ports = ipv4_tcp(&ports(22, 40000));
    let other_port = ipv4_tcp(&ports(40001, 22));
    let mut udp = forward.clone();
    udp[23] = 17;
    let mut later_fragment = forward.clone();
    later_fragment[20..22].copy_from_slice(&185u16.to_be_bytes());
    for (frame, kept) in [
        (&forward, false),
        (&backward, false),
        (&redirected, false),
        (&swapped_ports, true),
        (&other_port, true),
        (&udp, true),
        (&later_fragment, true),
    ] {
        let prog = filter.compile(96, LinkHeader::Ethernet).unwrap();
        assert_eq!(filter.matches_stripped(frame, None), kept, "{frame:02x?}");
        assert_eq!(interp::run(&prog, frame, &Ancillary::default()) != 0, kept);
    }
    assert_eq!(filter.to_string(), "not tcp-end 198.18.0.1:40000");
    let v6 = Filter::default().excluding(TcpEnd::new("2001:db8::1".parse().unwrap(), 22));
    assert_eq!(v6.to_string(), "not tcp-end [2001:db8::1]:22");
}
