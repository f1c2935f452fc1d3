"""Conversations (docs/conversations.md): the engine counts them in one pass; this module gives them a
type, and reads them from a file, from packets, or from the agent's reply."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from . import _core

STATES = ("established", "closed", "reset", "answered", "refused", "unanswered")
ANSWERED = frozenset(("established", "closed", "reset", "answered"))


class Conversation(NamedTuple):
    """One conversation: both directions of a TCP/UDP/SCTP 5-tuple, of an ICMP echo identifier, or of
    any other IP protocol between two addresses, on one interface and VLAN stack. A named tuple, so
    that a million of them are cheap to make.

    The client is the side that sent the first SYN (TCP), the echo request (ICMP echo) or the first
    packet (others). ``state``: TCP ``established``, ``closed`` (a FIN each way), ``reset``, ``refused``
    (the SYN answered by a RST or an ICMP unreachable), ``unanswered``; others ``answered``,
    ``refused`` (an ICMP unreachable came back) or ``unanswered``. Bytes are lengths on the wire."""

    proto: str  # "TCP", "UDP", "SCTP", "ICMP", "ICMP6", "GRE", … or the protocol number
    ip_proto: int
    kind: str  # "ports" (TCP, UDP, SCTP), "echo" (ICMP echo), "pair" (anything else)
    client: str
    client_port: int | None
    server: str
    server_port: int | None
    echo_id: int | None
    icmp_types: tuple[int, ...]  # kind "pair", ICMP: the types the client sent, errors left out
    state: str
    packets_to_server: int
    bytes_to_server: int
    packets_to_client: int
    bytes_to_client: int
    first_ns: int
    last_ns: int
    iface: str | None  # the capture interface, when the recording names it
    client_dir: str | None  # "in"/"out": how the client's packets crossed it, when all went one known way
    vlan: tuple[int, ...]  # VLAN ids, outermost first
    icmp_errors: int  # ICMP errors about this conversation (not in its packets)

    @property
    def packets(self) -> int:
        return self.packets_to_server + self.packets_to_client

    @property
    def bytes(self) -> int:
        return self.bytes_to_server + self.bytes_to_client

    @property
    def answered(self) -> bool:
        """Whether the server answered: the conversations a policy lets through."""
        return self.state in ANSWERED

    @property
    def family(self) -> int:
        """4 or 6."""
        return ipaddress.ip_address(self.server).version

    def endpoints(self) -> str:
        """``198.18.1.2:40000 > 198.18.2.2:9100``, ``[2001:db8::2]:40000 > …``, or addresses alone."""
        return f"{_endpoint(self.client, self.client_port)} > {_endpoint(self.server, self.server_port)}"

    def to_dict(self) -> dict[str, Any]:
        """The conversation as its ``-json`` line has it."""
        d = self._asdict()
        d["vlan"], d["icmp_types"] = list(self.vlan), list(self.icmp_types)
        return d

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Conversation:
        """From the values of the fields in order (the engine's tuples, or JSON arrays of them)."""
        if isinstance(row, tuple):
            return cls(*row)
        values = list(row)
        values[8], values[18] = tuple(values[8]), tuple(values[18])  # icmp_types, vlan
        return cls(*values)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Conversation:
        given = {name: d[name] for name in cls._fields}
        given["vlan"], given["icmp_types"] = tuple(d["vlan"]), tuple(d["icmp_types"])
        return cls(**given)


@dataclass(frozen=True)
class FlowReport:
    """The conversations of a recording, biggest (bytes) first, and the packets that are in none."""

    conversations: list[Conversation]
    not_ip: int  # ARP, LLC, …, and IP headers cut short
    unattributed: int  # IP packets cut before their ports, later fragments of unseen datagrams

    @classmethod
    def from_rows(cls, d: dict[str, Any]) -> FlowReport:
        """From the engine, or the agent's JSON lines of it: the fields in order, per conversation."""
        convs = [Conversation.from_row(row) for row in d["conversations"]]
        return cls(convs, int(d["not_ip"]), int(d["unattributed"]))


def of_file(path: str, filter: _core.Filter | None = None, count: int | None = None) -> FlowReport:
    """The conversations of the packets of a capture file (pcap, pcapng, .gz) that match ``filter``."""
    return FlowReport.from_rows(_core.file_conversations(path, filter, count))


def of_packets(packets: Iterable[_core.Packet | tuple[int, bytes]]) -> FlowReport:
    """The conversations of ``packets``, in the order given; ``(ts_ns, bytes)`` pairs are Ethernet
    frames of no named interface."""
    return FlowReport.from_rows(_core.packet_conversations(_as_packet(p) for p in packets))


def _as_packet(p: object) -> object:
    if isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], int) and isinstance(p[1], bytes):
        return _core.Packet(p[0], p[1])
    return p


def _endpoint(addr: str, port: int | None) -> str:
    if port is None:
        return addr
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def table_rows(convs: Sequence[Conversation], times: Callable[[int], str]) -> list[list[str]]:
    """The rows of the ``conv`` table, heading first (none without conversations); ``times(ts_ns)``
    writes a time."""
    if not convs:
        return []
    rows = [
        ["proto", "client", "", "server", "state", "pkts >", "bytes >", "pkts <", "bytes <", "first", "last"]
    ]
    several_ifaces = len({c.iface for c in convs}) > 1
    if several_ifaces:
        rows[0].insert(0, "iface")
    for c in convs:
        proto = c.proto if not c.vlan else f"{c.proto} vlan {','.join(map(str, c.vlan))}"
        if c.kind == "echo":
            proto += f" echo id {c.echo_id}"
        row = [
            proto,
            _endpoint(c.client, c.client_port),
            ">",
            _endpoint(c.server, c.server_port),
            c.state,
            str(c.packets_to_server),
            str(c.bytes_to_server),
            str(c.packets_to_client),
            str(c.bytes_to_client),
            times(c.first_ns),
            times(c.last_ns),
        ]
        if several_ifaces:
            row.insert(0, printable(c.iface or "-"))
        rows.append(row)
    return rows


def printable(text: str) -> str:
    """``text`` on one line of a table or a ruleset: control characters (a newline would start a line of
    its own, an escape would drive the terminal, C1 controls and line separators alike) as ``?``.
    Interface names come from files."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)
