"""From conversations to a firewall ruleset (docs/conversations.md): the narrowest allow rules that let
the answered conversations through again, as ``nft -f`` or ``iptables-restore`` input.

One rule per (input interface, client address, server address, protocol, server port or ICMP type);
client ports are never pinned; conversations that make the same rule are merged, and the rule carries
their evidence. Replies and ICMP errors pass as ``ct state established,related``. Refused and
unanswered conversations are listed as comments, never allowed."""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import UsageError
from .flows import STATES, Conversation, printable

FORMATS = ("nft", "iptables", "ip6tables")
TABLE = "pcapdump"
# The regular chain both hooks jump to: each rule is written once, and applies whether the server is
# the gateway itself (input) or behind it (forward).
ALLOWED_CHAIN = "allowed"
IPTABLES_CHAIN = "PCAPDUMP-ALLOWED"
# What Linux accepts as an interface name and no ruleset syntax can mistake for anything else; a name
# from a file that is not one of these is not put in a rule.
SAFE_IFACE = re.compile(r"[A-Za-z0-9_.@-]{1,15}")
# ICMPv6 neighbour discovery (router and neighbour solicitations and advertisements): the input chain
# accepts them, since IPv6 stops working on a link without them; they make no rules of their own.
ND_TYPES = (133, 134, 135, 136)
ND_TYPES_NFT = "nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert"
ND_TYPES_IP6TABLES = (
    "router-solicitation",
    "router-advertisement",
    "neighbour-solicitation",
    "neighbour-advertisement",
)
_LOADING = {
    "nft": "# `nft -f` replaces table inet pcapdump and nothing else (other tables still apply); "
    "`nft delete table inet pcapdump` takes it away.",
    "iptables": "# `iptables-restore` replaces the IPv4 filter table (IPv6 is left as it is): keep yours "
    "first with `iptables-save > saved.rules`, and put it back with `iptables-restore < saved.rules`.",
    "ip6tables": "# `ip6tables-restore` replaces the IPv6 filter table (IPv4 is left as it is): keep yours "
    "first with `ip6tables-save > saved.rules`, and put it back with `ip6tables-restore < saved.rules`.",
}
_L4_WITH_PORTS = {6: "tcp", 17: "udp", 132: "sctp"}
_ECHO_REQUEST = {1: 8, 58: 128}
# ICMP types nft and iptables know by name (the others are written as numbers).
_ICMP_NAMES = {(1, 8): "echo-request", (58, 128): "echo-request"}


def check_format(format: str, token: str = "-format") -> str:
    """The format, in lower case (words are case-insensitive); a usage error naming ``token`` if it is
    none of ``FORMATS``."""
    if not isinstance(format, str) or format.lower() not in FORMATS:
        raise UsageError(f"'{token}': unknown ruleset format (expected {', '.join(FORMATS)})", token)
    return format.lower()


@dataclass(frozen=True)
class Rule:
    iface: str | None
    client: str
    server: str
    ip_proto: int
    server_port: int | None
    icmp_types: tuple[int, ...]  # ICMP: the types allowed (echo: the request's)
    conversations: int
    packets: int
    first_ns: int
    last_ns: int
    only_leaving: bool  # made only of conversations whose client's packets left the capture interface

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.server).version

    def what(self) -> tuple[object, ...]:
        """What the rule lets through, whatever the interface."""
        return (self.client, self.server, self.ip_proto, self.server_port, self.icmp_types)

    def sort_key(self) -> tuple[object, ...]:
        return (
            self.iface or "",
            self.family,
            ipaddress.ip_address(self.client),
            ipaddress.ip_address(self.server),
            self.ip_proto,
            self.server_port or 0,
            self.icmp_types,
        )

    def evidence(self) -> str:
        n = self.conversations
        return (
            f"{n} conversation{'s' if n != 1 else ''}, {self.packets} packets, "
            f"first {_utc(self.first_ns)}, last {_utc(self.last_ns)}"
        )


@dataclass(frozen=True)
class Policy:
    rules: list[Rule]
    refused: list[Conversation]  # refused and unanswered, in the order given, each once
    unbound: Counter[str]  # why rules name no input interface: how many for each reason
    ipv6: bool  # whether the recording has IPv6 conversations (neighbour discovery is then allowed)


def build(convs: Sequence[Conversation]) -> Policy:
    """The rules the answered conversations make, merged and in a fixed order. Each conversation is
    checked first (they may come from a caller, not from the engine): a field that could not have come
    from a packet raises ``ValueError`` naming it."""
    merged: dict[tuple[object, ...], Rule] = {}
    refused: dict[tuple[object, ...], Conversation] = {}
    why_unbound: dict[tuple[object, ...], str] = {}
    for at, c in enumerate(convs):
        _check(at, c)
        what = _what(c)
        if what is None:
            continue  # ICMP errors and neighbour discovery: they pass as related, or on input
        if not c.answered:
            # The same attempt recorded on several interfaces is listed once.
            refused.setdefault(
                (c.state, c.proto, c.client, c.client_port, c.server, c.server_port, c.echo_id), c
            )
            continue
        port, types = what
        iface, why = _input_interface(c)
        key = (iface, c.client, c.server, c.ip_proto, port, types)
        if why:
            why_unbound[key] = why
        seen = merged.get(key)
        merged[key] = Rule(
            iface,
            c.client,
            c.server,
            c.ip_proto,
            port,
            types,
            (seen.conversations if seen else 0) + 1,
            (seen.packets if seen else 0) + c.packets,
            min(seen.first_ns, c.first_ns) if seen else c.first_ns,
            max(seen.last_ns, c.last_ns) if seen else c.last_ns,
            (seen.only_leaving if seen else True) and c.client_dir == "out",
        )
    # The same traffic seen leaving another captured interface (a gateway recorded on both sides) makes
    # a rule without an interface: the rule that names where it came in already covers it.
    bound = {r.what() for r in merged.values() if r.iface}
    kept = [r for r in merged.values() if not (r.only_leaving and r.what() in bound)]
    rules = sorted(kept, key=Rule.sort_key)
    unbound = Counter(why_unbound[(None, *r.what())] for r in rules if r.iface is None)
    ipv6 = any(c.family == 6 for c in convs)
    # A refused attempt that a rule lets through all the same (another conversation to that port was
    # answered) is not listed as not allowed.
    allowed = {r.what() for r in rules}
    listed = [c for c in refused.values() if (c.client, c.server, c.ip_proto, *_what_of(c)) not in allowed]
    return Policy(rules, listed, unbound, ipv6)


def _what_of(c: Conversation) -> tuple[int | None, tuple[int, ...]]:
    what = _what(c)
    assert what is not None, "listed conversations make rules"
    return what


def _check(at: int, c: Conversation) -> None:
    """Every value a ruleset would carry, as a packet could have given it."""

    def bad(field: str, expected: str) -> ValueError:
        return ValueError(f"conversation {at}: {field}={getattr(c, field)!r:.60}: expected {expected}")

    def whole(field: str, low: int, high: int) -> None:
        value = getattr(c, field)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise bad(field, f"a whole number {low}…{high}")

    families = set()
    for field in ("client", "server"):
        try:
            families.add(ipaddress.ip_address(getattr(c, field)).version)
        except (ValueError, TypeError):
            raise bad(field, "an IPv4 or IPv6 address") from None
    if len(families) != 1:
        raise bad("server", "an address of the client's family")
    whole("ip_proto", 0, 255)
    for field in ("client_port", "server_port", "echo_id"):
        if getattr(c, field) is not None:
            whole(field, 0, 65535)
    for field in ("packets_to_server", "packets_to_client", "first_ns", "last_ns"):
        whole(field, 0, 2**64 - 1)
    if c.state not in STATES:
        raise bad("state", f"one of {', '.join(STATES)}")
    if c.kind not in ("ports", "echo", "pair"):
        raise bad("kind", "ports, echo or pair")
    if not isinstance(c.icmp_types, tuple) or not all(
        isinstance(t, int) and not isinstance(t, bool) and 0 <= t <= 255 for t in c.icmp_types
    ):
        raise bad("icmp_types", "a tuple of ICMP types 0…255")
    if not isinstance(c.proto, str) or (c.iface is not None and not isinstance(c.iface, str)):
        raise bad("proto", "text")


# Why a rule names no input interface, as the warning says it.
_NO_DIRECTION = "the recording does not say which way the client's packets went (classic pcap does not)"
_LEFT = "the client's packets were seen leaving the capture interface (record where they come in)"
_TAGGED = "the packets were VLAN-tagged (the firewall sees them on a VLAN interface not named here)"
_BAD_NAME = "the interface name in the recording is not one a rule can carry"


def _input_interface(c: Conversation) -> tuple[str | None, str | None]:
    """The interface the client's packets came in on, as a rule can name it, or why there is none: the
    capture interface when they all came in on it, untagged, and its name is a plain interface name."""
    if not c.iface or c.client_dir is None:
        return None, _NO_DIRECTION
    if c.client_dir != "in":
        return None, _LEFT
    if c.vlan:
        return None, _TAGGED
    if not SAFE_IFACE.fullmatch(c.iface):
        return None, _BAD_NAME
    return c.iface, None


def _what(c: Conversation) -> tuple[int | None, tuple[int, ...]] | None:
    """(server port, ICMP types) a rule for ``c`` allows; ``None`` for none: ICMP errors (related to the
    conversation they are about), neighbour discovery (accepted by the input chain), and IP protocol 0
    (iptables reads `-p 0` as every protocol; no real packet is of protocol 0)."""
    if c.ip_proto == 0:
        return None
    if c.ip_proto in _L4_WITH_PORTS:
        return (c.server_port, ()) if c.kind == "ports" and c.server_port is not None else None
    if _is_icmp(c.ip_proto, c.family):
        if c.kind == "echo":
            return None, (_ECHO_REQUEST[c.ip_proto],)
        types = tuple(t for t in c.icmp_types if not (c.ip_proto == 58 and t in ND_TYPES))
        return (None, types) if types else None
    return None, ()


def _is_icmp(ip_proto: int, family: int) -> bool:
    """ICMP in IPv4, ICMPv6 in IPv6: what `icmp type` and `icmpv6 type` match (the other way round
    is just a protocol number)."""
    return (ip_proto, family) in ((1, 4), (58, 6))


def warnings(policy: Policy) -> list[str]:
    """What the engineer must know before loading the ruleset."""
    said = []
    if not policy.rules:
        said.append("no answered conversation: the ruleset allows nothing new (it drops all but replies)")
    for why, n in sorted(policy.unbound.items()):
        said.append(f"{n} rule(s) name no input interface: {why}")
    return said


def render(policy: Policy, format: str, source: str) -> str:
    """The ruleset as text, complete: ``nft -f`` or ``iptables-restore`` loads it as it is."""
    check_format(format)
    families = {"nft": (4, 6), "iptables": (4,), "ip6tables": (6,)}[format]
    n = sum(1 for r in policy.rules if r.family in families)
    header = [
        f"# pcapdump policy from {printable(source)}: {n} rule(s) allow the answered conversations; "
        "the input and forward chains drop everything else but replies and loopback.",
        _LOADING[format],
    ]
    body = _nft(policy) if format == "nft" else _iptables(policy, families[0])
    return "\n".join(header + body + _not_allowed(policy, format)) + "\n"


def _nft(policy: Policy) -> list[str]:
    lines = [
        f"table inet {TABLE}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        f"\tchain {ALLOWED_CHAIN} {{",
    ]
    for r in policy.rules:
        lines.append(f'\t\t{_nft_rule(r)} counter accept comment "{r.evidence()}"')
    lines.append("\t}")
    for hook in ("input", "forward"):
        lines += [
            f"\tchain {hook} {{",
            f"\t\ttype filter hook {hook} priority filter; policy drop;",
            "\t\tct state established,related accept",
        ]
        if hook == "input":
            lines.append('\t\tiif "lo" accept')
            if policy.ipv6:
                lines.append(f"\t\ticmpv6 type {{ {ND_TYPES_NFT} }} accept")
        lines += [f"\t\tjump {ALLOWED_CHAIN}", "\t}"]
    lines.append("}")
    return lines


def _nft_rule(r: Rule) -> str:
    ip = "ip" if r.family == 4 else "ip6"
    parts = [f'iifname "{r.iface}"'] if r.iface else []
    parts += [f"{ip} saddr {r.client}", f"{ip} daddr {r.server}"]
    if r.ip_proto in _L4_WITH_PORTS:
        parts.append(f"{_L4_WITH_PORTS[r.ip_proto]} dport {r.server_port}")
    elif _is_icmp(r.ip_proto, r.family):
        word = "icmp" if r.ip_proto == 1 else "icmpv6"
        types = ", ".join(_ICMP_NAMES.get((r.ip_proto, t), str(t)) for t in r.icmp_types)
        parts.append(f"{word} type {types if len(r.icmp_types) == 1 else '{ ' + types + ' }'}")
    else:
        parts.append(f"meta l4proto {r.ip_proto}")
    return " ".join(parts)


def _iptables(policy: Policy, family: int) -> list[str]:
    lines = [
        "*filter",
        ":INPUT DROP [0:0]",
        ":FORWARD DROP [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        f":{IPTABLES_CHAIN} - [0:0]",
    ]
    for chain in ("INPUT", "FORWARD"):
        lines.append(f"-A {chain} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
        if chain == "INPUT":
            lines.append("-A INPUT -i lo -j ACCEPT")
            if family == 6:
                for t in ND_TYPES_IP6TABLES:
                    lines.append(f"-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type {t} -j ACCEPT")
        lines.append(f"-A {chain} -j {IPTABLES_CHAIN}")
    for r in policy.rules:
        if r.family == family:
            lines.extend(_iptables_rules(r))
    lines.append("COMMIT")
    return lines


def _iptables_rules(r: Rule) -> list[str]:
    host = "/32" if r.family == 4 else "/128"
    head = f"-A {IPTABLES_CHAIN}" + (f" -i {r.iface}" if r.iface else "")
    head += f" -s {r.client}{host} -d {r.server}{host}"
    tail = f' -m comment --comment "{r.evidence()}" -j ACCEPT'
    if r.ip_proto in _L4_WITH_PORTS:
        name = _L4_WITH_PORTS[r.ip_proto]
        return [f"{head} -p {name} -m {name} --dport {r.server_port}{tail}"]
    if _is_icmp(r.ip_proto, r.family):
        match = "-p icmp -m icmp --icmp-type" if r.ip_proto == 1 else "-p ipv6-icmp -m icmp6 --icmpv6-type"
        return [f"{head} {match} {_ICMP_NAMES.get((r.ip_proto, t), t)}{tail}" for t in r.icmp_types]
    return [f"{head} -p {r.ip_proto}{tail}"]


def _not_allowed(policy: Policy, format: str) -> list[str]:
    lines = []
    if format != "nft":
        family = 4 if format == "iptables" else 6
        other = [r for r in policy.rules if r.family != family]
        if other:
            lines.append(
                f"# {len(other)} IPv{10 - family} rule(s) are not in this ruleset: "
                f"print them with -format {'ip6tables' if family == 4 else 'iptables'}"
            )
    if policy.refused:
        lines.append("# Not allowed: refused (a RST, or an ICMP unreachable) or unanswered")
        for c in policy.refused:
            where = f"{printable(c.iface)}, " if c.iface else ""
            echo = f" echo id {c.echo_id}" if c.echo_id is not None else ""
            lines.append(
                f"#   {c.state:<10}  {printable(c.proto)} {c.endpoints()}{echo}  ({where}{c.packets} "
                f"packets, first {_utc(c.first_ns)})"
            )
    return lines


def _utc(ts_ns: int) -> str:
    t = datetime.datetime.fromtimestamp(ts_ns // 1_000_000_000, datetime.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")
