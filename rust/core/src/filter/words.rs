//! The filter words (docs/commands.md#filter-words), in both spellings (`ipsrc 198.18.0.1`, `-ipsrc=198.18.0.1`) → `Expr`.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::expr::{
    mask128, mask32, Expr, Group, IcmpType, IpNet, Mac, PortRange, Proto, Side, TcpFlag,
};

/// A word the user typed that is not a filter: which token, and what was expected instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{token}': {expected}")]
pub struct FilterError {
    pub token: String,
    pub expected: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Word {
    Eth(Side),
    Ip(Side),
    Port(Side),
    Proto,
    Flag(Proto),
    Vlan,
    TcpFlags,
    IcmpType,
}

/// Every word, its meaning; the first spelling of each meaning is the canonical one.
const WORDS: &[(&str, Word)] = &[
    ("eth", Word::Eth(Side::Either)),
    ("ethsrc", Word::Eth(Side::Src)),
    ("ethdest", Word::Eth(Side::Dst)),
    ("ethdst", Word::Eth(Side::Dst)),
    ("ip", Word::Ip(Side::Either)),
    ("ipsrc", Word::Ip(Side::Src)),
    ("ipdest", Word::Ip(Side::Dst)),
    ("ipdst", Word::Ip(Side::Dst)),
    ("port", Word::Port(Side::Either)),
    ("srcport", Word::Port(Side::Src)),
    ("destport", Word::Port(Side::Dst)),
    ("dstport", Word::Port(Side::Dst)),
    ("proto", Word::Proto),
    ("tcp", Word::Flag(Proto::Ip(6))),
    ("udp", Word::Flag(Proto::Ip(17))),
    ("icmp", Word::Flag(Proto::Ip(1))),
    ("icmp6", Word::Flag(Proto::Ip(58))),
    ("sctp", Word::Flag(Proto::Ip(132))),
    ("arp", Word::Flag(Proto::Arp)),
    ("vlan", Word::Vlan),
    ("tcpflags", Word::TcpFlags),
    ("icmptype", Word::IcmpType),
];

/// TCP flags by name and by tcpdump's letter, with their bit; the name is the canonical spelling.
const TCP_FLAGS: &[(&str, char, u8)] = &[
    ("fin", 'F', 0x01),
    ("syn", 'S', 0x02),
    ("rst", 'R', 0x04),
    ("psh", 'P', 0x08),
    ("ack", '.', 0x10),
    ("urg", 'U', 0x20),
    ("ece", 'E', 0x40),
    ("cwr", 'W', 0x80),
];

/// ICMP message types by name: the ICMPv4 type and the ICMPv6 type of that meaning.
const ICMP_TYPES: &[(&str, u8, u8)] = &[
    ("echoreply", 0, 129),
    ("unreach", 3, 1),
    ("redirect", 5, 137),
    ("echo", 8, 128),
    ("timxceed", 11, 3),
    ("paramprob", 12, 4),
];

pub fn tcp_flag_name(f: TcpFlag) -> &'static str {
    TCP_FLAGS
        .iter()
        .find(|(_, _, bit)| *bit == f.0)
        .map_or("?", |(name, _, _)| *name)
}

/// The name of a named ICMP type; `None` for a type given as a number.
pub fn icmp_type_name(t: IcmpType) -> Option<&'static str> {
    ICMP_TYPES
        .iter()
        .find(|(_, v4, v6)| t.v4 == Some(*v4) && t.v6 == Some(*v6))
        .map(|(name, _, _)| *name)
}

/// Names of IP protocols accepted by `proto` and as words of their own.
const PROTO_ALIASES: &[(&str, u8)] = &[
    ("tcp", 6),
    ("udp", 17),
    ("icmp", 1),
    ("icmp6", 58),
    ("sctp", 132),
];

pub fn proto_alias(n: u8) -> Option<&'static str> {
    PROTO_ALIASES
        .iter()
        .find(|(_, v)| *v == n)
        .map(|(name, _)| *name)
}

/// The word that excludes what the filter word after it matches: `not port 22`.
pub const NEGATION: &str = "not";

/// Every filter word and the syntax of its value (`None`: it takes none), in the order of the manual,
/// then `not` (whose "value" is another word): lets a command-line grammar tell filter words apart and
/// print them in its help.
pub fn filter_words() -> impl Iterator<Item = (&'static str, Option<&'static str>)> {
    let words = WORDS.iter().map(|(name, w)| (*name, value_syntax(*w)));
    words.chain([(NEGATION, Some("<word> [<value>]"))])
}

fn value_syntax(word: Word) -> Option<&'static str> {
    match word {
        Word::Eth(_) => Some("<mac>"),
        Word::Ip(_) => Some("<addr>[/<len>]"),
        Word::Port(_) => Some("<n>[-<m>]"),
        Word::Proto => Some("<n>|<name>"),
        Word::Vlan => Some("<id>"),
        Word::TcpFlags => Some("<flag>"),
        Word::IcmpType => Some("<n>|<name>"),
        Word::Flag(_) => None,
    }
}

fn lookup(name: &str) -> Option<Word> {
    WORDS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, w)| *w)
}

fn expected_value(word: Word) -> &'static str {
    match word {
        Word::Eth(_) => "a MAC address (aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff or aabb.ccdd.eeff)",
        Word::Ip(_) => {
            "an IPv4 or IPv6 address or prefix (198.18.0.1, 198.18.0.0/15, 2001:db8::/32)"
        }
        Word::Port(_) => "a port 0…65535 or a range such as 8000-8100",
        Word::Proto => "an IP protocol number 0…255 or tcp, udp, icmp, icmp6, sctp",
        Word::Vlan => "a VLAN id 0…4095",
        Word::TcpFlags => "a TCP flag: syn fin rst psh ack urg ece cwr, or S F R P . U E W",
        Word::IcmpType => {
            "an ICMP type 0…255 or echo, echoreply, unreach, timxceed, redirect, paramprob"
        }
        Word::Flag(_) => "no value",
    }
}

fn word_list() -> String {
    let names: Vec<&str> = WORDS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !n.ends_with("dst"))
        .collect();
    names.join(", ")
}

/// Strip `-`, `--` and a `=value` from a typed word: `-ipsrc=1.2.3.4` → (`ipsrc`, `Some("1.2.3.4")`).
fn split_word(typed: &str) -> (&str, Option<&str>) {
    let bare = typed
        .strip_prefix("--")
        .or_else(|| typed.strip_prefix('-'))
        .unwrap_or(typed);
    match bare.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (bare, None),
    }
}

/// Parse filter tokens as typed on a command line; a single string is split at white space first.
pub fn parse(tokens: &[&str]) -> Result<Expr, FilterError> {
    let mut expr = Expr::default();
    let mut i = 0;
    while i < tokens.len() {
        let mut typed = tokens[i];
        i += 1;
        let (mut name, mut inline) = split_word(typed);
        let negated = name.eq_ignore_ascii_case(NEGATION);
        if negated {
            let (next, next_inline) = tokens.get(i).map(|t| split_word(t)).unwrap_or(("", None));
            if inline.is_some() || lookup(next).is_none() {
                return Err(FilterError {
                    token: typed.to_string(),
                    expected: "expected a filter word after it (such as not port 22)".into(),
                });
            }
            (typed, name, inline) = (tokens[i], next, next_inline);
            i += 1;
        }
        let prefix = if negated { "not " } else { "" };
        let word = lookup(name).ok_or_else(|| FilterError {
            token: typed.to_string(),
            expected: format!("unknown filter word (expected one of {})", word_list()),
        })?;
        let group = if let Word::Flag(proto) = word {
            if inline.is_some() {
                return Err(FilterError {
                    token: format!("{prefix}{typed}"),
                    expected: format!("{name} takes no value"),
                });
            }
            Group::Proto(vec![proto])
        } else {
            let (value, token) = match inline {
                Some(v) => (v, format!("{prefix}{typed}")),
                None => match tokens.get(i) {
                    Some(v) => {
                        i += 1;
                        (*v, format!("{prefix}{typed} {v}"))
                    }
                    None => {
                        return Err(FilterError {
                            token: format!("{prefix}{typed}"),
                            expected: format!("missing value, expected {}", expected_value(word)),
                        })
                    }
                },
            };
            parse_value(word, value).map_err(|expected| FilterError { token, expected })?
        };
        // Excluding each of several values is excluding their alternatives: one group serves both.
        add(
            if negated {
                &mut expr.excluded
            } else {
                &mut expr.groups
            },
            group,
        );
    }
    Ok(expr)
}

/// Merge a one-value group into the group of the same word, or append it.
fn add(groups: &mut Vec<Group>, new: Group) {
    for g in groups.iter_mut() {
        match (g, &new) {
            (Group::Eth(s, v), Group::Eth(t, w)) if s == t => extend_unique(v, w),
            (Group::Ip(s, v), Group::Ip(t, w)) if s == t => extend_unique(v, w),
            (Group::Port(s, v), Group::Port(t, w)) if s == t => extend_unique(v, w),
            (Group::Proto(v), Group::Proto(w)) => extend_unique(v, w),
            (Group::Vlan(v), Group::Vlan(w)) => extend_unique(v, w),
            (Group::TcpFlags(v), Group::TcpFlags(w)) => extend_unique(v, w),
            (Group::IcmpType(v), Group::IcmpType(w)) => extend_unique(v, w),
            _ => continue,
        }
        return;
    }
    groups.push(new);
}

fn extend_unique<T: PartialEq + Clone>(into: &mut Vec<T>, from: &[T]) {
    for x in from {
        if !into.contains(x) {
            into.push(x.clone());
        }
    }
}

fn parse_value(word: Word, v: &str) -> Result<Group, String> {
    Ok(match word {
        Word::Eth(side) => Group::Eth(side, vec![parse_mac(v).ok_or("not a MAC address (expected aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff or aabb.ccdd.eeff)")?]),
        Word::Ip(side) => Group::Ip(side, vec![parse_net(v)?]),
        Word::Port(side) => Group::Port(side, vec![parse_ports(v)?]),
        Word::Proto => Group::Proto(vec![Proto::Ip(parse_proto(v).ok_or(
            "not an IP protocol (expected a number 0…255 or tcp, udp, icmp, icmp6, sctp)",
        )?)]),
        Word::Vlan => {
            let id = parse_decimal(v).filter(|n| *n <= 4095).ok_or("not a VLAN id (expected 0…4095)")?;
            Group::Vlan(vec![id as u16])
        }
        Word::TcpFlags => Group::TcpFlags(vec![parse_tcp_flag(v).ok_or(
            "not a TCP flag (expected syn fin rst psh ack urg ece cwr, or S F R P . U E W)",
        )?]),
        Word::IcmpType => Group::IcmpType(vec![parse_icmp_type(v).ok_or(
            "not an ICMP type (expected 0…255 or echo, echoreply, unreach, timxceed, redirect, paramprob)",
        )?]),
        Word::Flag(p) => Group::Proto(vec![p]),
    })
}

fn parse_tcp_flag(s: &str) -> Option<TcpFlag> {
    let letter =
        |c: char| s.len() == 1 && s.chars().next().is_some_and(|x| x.eq_ignore_ascii_case(&c));
    TCP_FLAGS
        .iter()
        .find(|(name, l, _)| name.eq_ignore_ascii_case(s) || letter(*l))
        .map(|(_, _, bit)| TcpFlag(*bit))
}

fn parse_icmp_type(s: &str) -> Option<IcmpType> {
    if let Some(&(_, v4, v6)) = ICMP_TYPES
        .iter()
        .find(|(name, _, _)| name.eq_ignore_ascii_case(s))
    {
        return Some(IcmpType {
            v4: Some(v4),
            v6: Some(v6),
        });
    }
    let n = parse_decimal(s).filter(|n| *n <= 255)? as u8;
    Some(IcmpType {
        v4: Some(n),
        v6: Some(n),
    })
}

/// A plain decimal number: digits only, no sign, no white space.
fn parse_decimal(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_mac(s: &str) -> Option<Mac> {
    let hex: String = if s.contains(':') || s.contains('-') {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 || parts.iter().any(|p| p.len() != 2) {
            return None;
        }
        parts.concat()
    } else if s.contains('.') {
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() != 3 || parts.iter().any(|p| p.len() != 4) {
            return None;
        }
        parts.concat()
    } else {
        s.to_string()
    };
    if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, byte) in mac.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(Mac(mac))
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let net = if let Ok(v4) = addr.parse::<Ipv4Addr>() {
        let prefix = match prefix {
            None => 32,
            Some(p) => parse_decimal(p)
                .filter(|n| *n <= 32)
                .ok_or("prefix length must be 0…32 for IPv4")? as u8,
        };
        let a = u32::from(v4);
        if a & !mask32(prefix) != 0 {
            let net = Ipv4Addr::from(a & mask32(prefix));
            return Err(format!(
                "host bits set (expected a network address such as {net}/{prefix})"
            ));
        }
        IpNet::V4 { addr: a, prefix }
    } else if let Ok(v6) = addr.parse::<Ipv6Addr>() {
        let prefix = match prefix {
            None => 128,
            Some(p) => parse_decimal(p)
                .filter(|n| *n <= 128)
                .ok_or("prefix length must be 0…128 for IPv6")? as u8,
        };
        let a = u128::from(v6);
        if a & !mask128(prefix) != 0 {
            let net = Ipv6Addr::from(a & mask128(prefix));
            return Err(format!(
                "host bits set (expected a network address such as {net}/{prefix})"
            ));
        }
        IpNet::V6 { addr: a, prefix }
    } else {
        return Err("not an IPv4 or IPv6 address".into());
    };
    Ok(net)
}

fn parse_port(s: &str) -> Option<u16> {
    parse_decimal(s).filter(|n| *n <= 65535).map(|n| n as u16)
}

fn parse_ports(s: &str) -> Result<PortRange, String> {
    const EXPECTED: &str = "not a port (expected 0…65535 or a range such as 8000-8100)";
    match s.split_once('-') {
        None => parse_port(s)
            .map(|p| PortRange { lo: p, hi: p })
            .ok_or_else(|| EXPECTED.into()),
        Some((lo, hi)) => {
            let (lo, hi) = (
                parse_port(lo).ok_or(EXPECTED)?,
                parse_port(hi).ok_or(EXPECTED)?,
            );
            if lo > hi {
                return Err(format!(
                    "reversed port range (expected low-high, such as {hi}-{lo})"
                ));
            }
            Ok(PortRange { lo, hi })
        }
    }
}

fn parse_proto(s: &str) -> Option<u8> {
    PROTO_ALIASES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(s))
        .map(|(_, n)| *n)
        .or_else(|| parse_decimal(s).filter(|n| *n <= 255).map(|n| n as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        let toks: Vec<&str> = s.split_whitespace().collect();
        parse(&toks).unwrap_err().to_string()
    }

    fn canon(s: &str) -> String {
        let toks: Vec<&str> = s.split_whitespace().collect();
        parse(&toks).unwrap().to_string()
    }

    #[test]
    fn both_spellings_mix() {
        assert_eq!(
            canon("-ipsrc=198.18.0.1 -tcp port 80 -port=443"),
            "ipsrc 198.18.0.1 tcp port 80 port 443"
        );
        assert_eq!(
            canon("ip 2001:db8::/32 proto 103 vlan 7 eth aabb.ccdd.eeff"),
            "ip 2001:db8::/32 proto 103 vlan 7 eth aa:bb:cc:dd:ee:ff"
        );
    }

    #[test]
    fn repeated_words_are_alternatives_and_different_words_all_apply() {
        let toks = [
            "port",
            "80",
            "port",
            "443",
            "ipsrc",
            "198.18.0.1",
            "tcp",
            "udp",
        ];
        let e = parse(&toks).unwrap();
        assert_eq!(e.groups.len(), 3);
        assert_eq!(
            e.groups[0],
            Group::Port(
                Side::Either,
                vec![PortRange { lo: 80, hi: 80 }, PortRange { lo: 443, hi: 443 }]
            )
        );
        assert_eq!(e.groups[2], Group::Proto(vec![Proto::Ip(6), Proto::Ip(17)]));
    }

    #[test]
    fn not_excludes_each_word_in_either_spelling() {
        assert_eq!(
            canon("tcp not port 22 -not -port=23 not ipsrc 198.18.0.1 not arp"),
            "tcp not port 22 not port 23 not ipsrc 198.18.0.1 not arp"
        );
        let e = parse(&["not", "port", "22", "port", "80"]).unwrap();
        assert_eq!(
            e.groups,
            vec![Group::Port(
                Side::Either,
                vec![PortRange { lo: 80, hi: 80 }]
            )]
        );
        assert_eq!(
            e.excluded,
            vec![Group::Port(
                Side::Either,
                vec![PortRange { lo: 22, hi: 22 }]
            )]
        );
        assert_eq!(
            err("not"),
            "'not': expected a filter word after it (such as not port 22)"
        );
        assert_eq!(
            err("not not port 22"),
            "'not': expected a filter word after it (such as not port 22)"
        );
        assert_eq!(
            err("not 22"),
            "'not': expected a filter word after it (such as not port 22)"
        );
        assert_eq!(
            err("-not=port"),
            "'-not=port': expected a filter word after it (such as not port 22)"
        );
        assert!(err("not port").starts_with("'not port': missing value, expected a port"));
        assert_eq!(
            err("not port 99999").split(':').next(),
            Some("'not port 99999'")
        );
        assert_eq!(err("not -tcp=1"), "'not -tcp=1': tcp takes no value");
    }

    #[test]
    fn tcp_flags_and_icmp_types_by_name_letter_and_number() {
        assert_eq!(
            canon("tcpflags S -tcpflags=ack tcpflags . tcpflags W icmptype echo icmptype 3"),
            "tcpflags syn tcpflags ack tcpflags cwr icmptype echo icmptype 3"
        );
        let e = parse(&["tcpflags", "fin", "tcpflags", "RST"]).unwrap();
        assert_eq!(
            Group::tcp_flag_mask(match &e.groups[0] {
                Group::TcpFlags(f) => f,
                g => panic!("{g:?}"),
            }),
            0x05
        );
        assert_eq!(
            parse(&["icmptype", "unreach"]).unwrap().groups,
            vec![Group::IcmpType(vec![IcmpType {
                v4: Some(3),
                v6: Some(1)
            }])]
        );
        assert!(err("tcpflags X").starts_with("'tcpflags X': not a TCP flag (expected syn fin"));
        assert!(err("tcpflags").starts_with("'tcpflags': missing value, expected a TCP flag"));
        assert!(err("icmptype 256").starts_with("'icmptype 256': not an ICMP type"));
        assert!(err("icmptype pong").starts_with("'icmptype pong': not an ICMP type"));
        assert_eq!(canon("not tcpflags rst"), "not tcpflags rst");
    }

    #[test]
    fn errors_name_the_token_and_what_was_expected() {
        assert_eq!(
            err("ipsrc 300.1.1.1"),
            "'ipsrc 300.1.1.1': not an IPv4 or IPv6 address"
        );
        assert_eq!(
            err("-ipsrc=300.1.1.1"),
            "'-ipsrc=300.1.1.1': not an IPv4 or IPv6 address"
        );
        assert!(
            err("ip 198.18.0.0/33").starts_with("'ip 198.18.0.0/33': prefix length must be 0…32")
        );
        assert!(err("ip 2001:db8::/129").contains("0…128"));
        assert!(err("ip 198.18.0.1/15").contains("198.18.0.0/15"));
        assert!(err("port 9000-8000").contains("reversed"));
        assert!(err("port 65536").contains("not a port"));
        assert!(err("vlan 4096").contains("VLAN id"));
        assert!(err("proto 256").contains("IP protocol"));
        assert!(err("eth 00:11:22:33:44").contains("MAC"));
        assert!(err("bogus").starts_with("'bogus': unknown filter word"));
        assert_eq!(err("ipsrc"), "'ipsrc': missing value, expected an IPv4 or IPv6 address or prefix (198.18.0.1, 198.18.0.0/15, 2001:db8::/32)");
        assert_eq!(err("-tcp=1"), "'-tcp=1': tcp takes no value");
        assert!(err("port +80").contains("not a port"));
    }
}
