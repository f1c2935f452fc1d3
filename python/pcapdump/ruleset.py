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
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import UsageError
from .flows import Conversation, printable

FORMATS = ("nft", "iptables", "ip6tables")
TABLE = "pcapdump"
# The regular chain both hooks jump to: each rule is written once, and applies whether the server is
# the gateway itself (input) or behind it (forward).
ALLOWED_CHAIN = "allowed"
IPTABLES_CHAIN = "PCAPDUMP-ALLOWED"
# What Linux accepts as an interface name and no ruleset syntax can mistake for anything else; a name
# from a file that is not one of these is not put in a rule.
SAFE_IFACE = re.compile(r"[A-Za-z0-9_.@-]{1,15}")
ND_TYPES_NFT = "nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert"
ND_TYPES_IP6TABLES = (
    "router-solicitation",
    "router-advertisement",
    "neighbour-solicitation",
    "neighbour-advertisement",
)
_L4_WITH_PORTS = {6: "tcp", 17: "udp", 132: "sctp"}
_ECHO_REQUEST = {1: 8, 58: 128}
# ICMP types nft and iptables know by name (the others are written as numbers).
_ICMP_NAMES = {(1, 8): "echo-request", (58, 128): "echo-request"}


def check_format(format: str, token: str = "-format") -> str:
    if format not in FORMATS:
        raise UsageError(f"'{token}': unknown format (expected {', '.join(FORMATS)})", token)
    return format


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
    refused: list[Conversation]  # refused and unanswered, in the order given
    unbound: int  # rules that name no input interface (the recording did not say)
    ipv6: bool  # whether the recording has IPv6 conversations (neighbour discovery is then allowed)


def build(convs: Sequence[Conversation]) -> Policy:
    """The rules the answered conversations make, merged and in a fixed order."""
    merged: dict[tuple[object, ...], Rule] = {}
    refused: list[Conversation] = []
    for c in convs:
        if not c.answered:
            refused.append(c)
            continue
        what = _what(c)
        if what is None:
            continue  # ICMP errors only: they pass as related
        port, types = what
        iface = _input_interface(c)
        key = (iface, c.client, c.server, c.ip_proto, port, types)
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
    unbound = sum(1 for r in rules if r.iface is None)
    ipv6 = any(c.family == 6 for c in convs)
    return Policy(rules, refused, unbound, ipv6)


def _input_interface(c: Conversation) -> str | None:
    """The interface the client's packets came in on, as a rule can name it: the capture interface
    when they all came in on it, untagged (tagged packets reach the firewall through a VLAN interface
    whose name the recording does not give), and its name is a plain interface name."""
    if c.client_dir != "in" or not c.iface or c.vlan or not SAFE_IFACE.fullmatch(c.iface):
        return None
    return c.iface


def _what(c: Conversation) -> tuple[int | None, tuple[int, ...]] | None:
    """(server port, ICMP types) a rule for ``c`` allows; ``None`` for none (ICMP errors only)."""
    if c.kind == "ports":
        return c.server_port, ()
    if c.kind == "echo":
        return None, (_ECHO_REQUEST[c.ip_proto],)
    if c.ip_proto in _ECHO_REQUEST:
        return (None, c.icmp_types) if c.icmp_types else None
    return None, ()


def warnings(policy: Policy) -> list[str]:
    """What the engineer must know before loading the ruleset."""
    said = []
    if not policy.rules:
        said.append("no answered conversation: the ruleset allows nothing new (it drops all but replies)")
    if policy.unbound:
        said.append(
            f"{policy.unbound} rule(s) name no input interface: the recording does not say which way "
            "their packets crossed it (a pcap file keeps no directions; pcapng from pcapdump does), "
            "or they were VLAN-tagged (the firewall sees them on a VLAN interface)"
        )
    return said


def render(policy: Policy, format: str, source: str) -> str:
    """The ruleset as text, complete: ``nft -f`` or ``iptables-restore`` loads it as it is."""
    check_format(format)
    header = [
        f"# pcapdump policy from {printable(source)}: {len(policy.rules)} rule(s) allow the answered "
        "conversations; everything else is dropped.",
        "# Loading it replaces this host's input and forward filtering: the host keeps only what was "
        "recorded (plus replies and loopback).",
    ]
    body = _nft(policy) if format == "nft" else _iptables(policy, 4 if format == "iptables" else 6)
    return "\n".join(header + body + _not_allowed(policy, format)) + "\n"


def _nft(policy: Policy) -> list[str]:
    lines = [
        f"table inet {TABLE}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        f"\tchain {ALLOWED_CHAIN} {{",
    ]
    for r in policy.rules:
        lines.append(f'\t\t{_nft_rule(r)} accept comment "{r.evidence()}"')
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
    elif r.ip_proto in _ECHO_REQUEST:
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
    if r.ip_proto in _ECHO_REQUEST:
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
        lines.append("# Not allowed: the server did not answer")
        for c in policy.refused:
            where = f"{printable(c.iface)}, " if c.iface else ""
            lines.append(
                f"#   {c.state:<10}  {c.proto} {c.endpoints()}  ({where}{c.packets} packets, "
                f"first {_utc(c.first_ns)})"
            )
    return lines


def _utc(ts_ns: int) -> str:
    t = datetime.datetime.fromtimestamp(ts_ns // 1_000_000_000, datetime.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")
