"""pcapdump: gateway-style packet capture with a Rust engine.

>>> import pcapdump
>>> f = pcapdump.Filter("ipsrc 198.18.0.1 tcp")
>>> for pkt in pcapdump.read("in.cap", filter="udp"):   # doctest: +SKIP
...     print(pkt.brief())
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Literal

from . import _core
from ._core import (
    DEFAULT_BUFFER_KB,
    MAX_BUFFER_KB,
    MAX_SNAPLEN,
    MIN_BUFFER_KB,
    Capture,
    Filter,
    Packet,
    Table,
)
from .errors import (
    AgentError,
    AgentGoneError,
    AgentNotRunningError,
    AgentUnresponsiveError,
    AuthenticationError,
    CaptureError,
    CaptureFileError,
    DestinationError,
    DestinationExistsError,
    FetchError,
    FilterError,
    HomeError,
    HostKeyError,
    InventoryError,
    NoSuchInterfaceError,
    PcapdumpError,
    PrivilegeError,
    RemoteFileNotFoundError,
    StalledError,
    UnknownGatewayError,
    UnreachableError,
    UnsupportedError,
    UsageError,
)

if TYPE_CHECKING:
    from .console import Console
    from .flows import Conversation, FlowReport
    from .shapes import CaptureSettings, CaptureStats, Interface

# Names of modules loaded apart, and the modules that define them. `fwctl` is loaded on first use: it loads
# asyncssh, which other commands never need.
_ON_FIRST_USE = {
    "flows": ".flows",
    "ruleset": ".ruleset",
    "fwctl": ".fwctl",
    "Console": ".console",
    "Conversation": ".flows",
    "FlowReport": ".flows",
    "CaptureSettings": ".shapes",
    "CaptureStats": ".shapes",
    "Interface": ".shapes",
}

# A thread still inside pcapdump when the interpreter exits (a daemon thread waiting for packets) parks
# instead of coming back into it, which would end the process with a crash (docs/architecture.md).
atexit.register(_core.mark_exiting)

# The package takes its version from the Cargo workspace (maturin), so the engine's is the package's;
# asking importlib.metadata instead would cost every command a tenth of a second.
__version__ = _core.__version__

__all__ = [
    "DEFAULT_BUFFER_KB",
    "MAX_BUFFER_KB",
    "MAX_SNAPLEN",
    "MIN_BUFFER_KB",
    "AgentError",
    "AgentGoneError",
    "AgentNotRunningError",
    "AgentUnresponsiveError",
    "AuthenticationError",
    "Capture",
    "CaptureError",
    "CaptureFileError",
    "CaptureSettings",
    "CaptureStats",
    "Console",
    "Conversation",
    "DestinationError",
    "DestinationExistsError",
    "FetchError",
    "Filter",
    "FilterError",
    "HomeError",
    "HostKeyError",
    "Interface",
    "InventoryError",
    "NoSuchInterfaceError",
    "Packet",
    "PcapdumpError",
    "PrivilegeError",
    "RemoteFileNotFoundError",
    "StalledError",
    "Table",
    "UnknownGatewayError",
    "UnreachableError",
    "UnsupportedError",
    "UsageError",
    "capture",
    "conversations",
    "interfaces",
    "policy",
    "read",
    "read_table",
    "write",
]


def __getattr__(name: str) -> object:
    if name not in _ON_FIRST_USE:
        raise AttributeError(f"module 'pcapdump' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(_ON_FIRST_USE[name], __name__)
    value = module if name in ("flows", "ruleset", "fwctl") else getattr(module, name)
    globals()[name] = value
    return value


def _is_read_command() -> bool:
    argv = getattr(sys, "argv", None) or [""]
    return os.path.basename(argv[0]) == "pcapdump" and argv[1:2] == ["read"]


# A program that imports pcapdump has every name now: it may drop its privileges before it uses one, and
# lose the right to read the package's files. The `pcapdump read` command loads none of them unless it
# needs them (the read of a small file would take twice as long).
if not _is_read_command():
    for _name in _ON_FIRST_USE:
        if _name != "fwctl":
            __getattr__(_name)


FilterLike = Filter | str | Iterable[str] | None


def as_filter(filter: FilterLike) -> Filter | None:
    """A ``Filter`` from a filter, a string of filter words, or a list of tokens; ``None`` for none."""
    if filter is None or isinstance(filter, Filter):
        return filter
    if isinstance(filter, str):
        return Filter(filter)
    tokens = list(filter) if isinstance(filter, Iterable) else None
    if tokens is None or not all(isinstance(t, str) for t in tokens):
        raise TypeError(f"filter={filter!r}: expected filter words (a string or list of strings) or a Filter")
    return Filter(tokens)


def _check_range(name: str, value: int | None, low: int, high: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"{name}={value!r}: expected an integer {low} … {high}")
    if value is not None and not low <= value <= high:
        raise ValueError(f"{name}={value}: expected {low} … {high}")


def _trigger_of(trigger: FilterLike, after: int | None) -> Filter | None:
    """The trigger's filter, checked as the command line checks ``-trigger`` and ``-after``."""
    try:
        words = as_filter(trigger)
    except TypeError:
        expected = "expected filter words (a string or list of strings) or a Filter"
        raise TypeError(f"trigger={trigger!r}: {expected}") from None
    if words is None and after is not None:
        raise UsageError(f"after={after!r}: applies only with a trigger")
    if words is not None and not str(words):
        raise UsageError(f"trigger={trigger!r}: expected filter words (none would fire on the first packet)")
    if after is not None and (
        isinstance(after, bool) or not isinstance(after, int) or not 0 <= after <= _core.MAX_AFTER
    ):
        raise UsageError(f"after={after!r}: expected 0…{_core.MAX_AFTER} packets")
    return words


def _check_duration(duration: float | None) -> None:
    if isinstance(duration, bool) or not isinstance(duration, int | float | None):
        low, high = _core.MIN_DURATION_S, _core.MAX_DURATION_S
        raise UsageError(f"duration={duration!r}: expected {low}…{high} seconds")


def capture(
    iface: str,
    filter: FilterLike = None,
    snaplen: int | None = None,
    count: int | None = None,
    buffer_kb: int = DEFAULT_BUFFER_KB,
    promisc: bool = False,
    ring: bool = False,
    duration: float | None = None,
    trigger: FilterLike = None,
    after: int | None = None,
) -> Capture:
    """Start capturing on ``iface`` (needs root or CAP_NET_RAW); use it as a context manager.

    Iterating yields each stored packet once, in order, waiting for more while the capture runs; the
    packets stay in the buffer for ``write(path)``. ``snaplen`` is applied by the kernel, ``count`` stops
    the capture by itself, ``buffer_kb`` sizes the capture buffer, ``ring`` makes it overwrite the oldest
    packets when full instead of dropping new ones, ``promisc`` enters promiscuous mode for this capture,
    ``duration`` (seconds) stops it by itself after that long. ``trigger`` (filter words) is tested on
    each kept packet: the first that matches fires it, ``after`` more packets are kept (default
    ``DEFAULT_AFTER``; only with a trigger), then the capture stops (``stop_reason`` ``"triggered"``,
    ``stats()["trigger"]`` names the packet).
    ``stats()`` gives the counters (``CaptureStats``: ``packets``, ``kernel_drops``, ...).
    ``next(timeout)`` gives the next packet or ``None`` (none in time, or ``finished``); ``async for``
    iterates in an asyncio loop. Any thread may call ``stop()``, ``stats()`` or ``write()`` while another
    iterates; its iteration then ends cleanly.
    Raises ``NoSuchInterfaceError``, ``PrivilegeError``, ``UnsupportedError`` (all ``CaptureError``) or
    ``FilterError``; ``snaplen``, ``count`` or ``buffer_kb`` out of range raises ``ValueError``, and a
    wrong ``duration``, ``trigger`` or ``after`` ``UsageError``.
    """
    _check_range("snaplen", snaplen, 1, MAX_SNAPLEN)
    _check_range("count", count, 1, _core.MAX_COUNT)
    _check_range("buffer_kb", buffer_kb, MIN_BUFFER_KB, MAX_BUFFER_KB)
    trigger_filter = _trigger_of(trigger, after)
    _check_duration(duration)
    try:
        return Capture(
            iface,
            as_filter(filter),
            snaplen,
            count,
            buffer_kb,
            promisc,
            ring,
            duration=duration,
            trigger=trigger_filter,
            after=_core.DEFAULT_AFTER if after is None else after,
        )
    except NoSuchInterfaceError:
        from .ifaces import no_such_interface

        raise no_such_interface(iface, (i["name"] for i in _core.interfaces())) from None


def interfaces() -> list[Interface]:
    """The interfaces this thread can capture on (its network namespace), in index order: name, state,
    MTU, MAC, addresses with their prefix lengths, and the link type a capture would store.
    ``Console().interfaces()`` asks the agent instead."""
    return _core.interfaces()


def read(
    path: str | os.PathLike[str],
    filter: FilterLike = None,
    snaplen: int | None = None,
    count: int | None = None,
) -> Iterator[Packet]:
    """Iterate over the packets of a pcap or pcapng file that match ``filter``.

    The file may be gzip-compressed (known by its first bytes, not its name): it is inflated as it is
    read. ``snaplen`` cuts each packet's data (``wirelen`` keeps the true length); ``count`` stops after
    that many matching packets. Raises ``CaptureFileError`` for a missing, foreign or damaged file, and
    for a .gz cut short, after the packets before the cut.
    """
    _check_range("snaplen", snaplen, 1, MAX_SNAPLEN)
    _check_range("count", count, 1, _core.MAX_COUNT)
    return _core.FileReader(os.fspath(path), as_filter(filter), snaplen, count)


def read_table(
    path: str | os.PathLike[str],
    filter: FilterLike = None,
    snaplen: int | None = None,
    count: int | None = None,
    columns: Iterable[str] | None = None,
) -> Table:
    """The packets of a pcap or pcapng file that match ``filter``, as a table: one row per packet, read
    in one pass in Rust. Hand the result to ``pyarrow.table()``, ``polars.DataFrame()`` or query it
    with ``duckdb``; none of them is needed to make it.

    ``columns`` picks columns by name, in that order (an unknown name raises ``UsageError``); by default
    ``index, ts, iface, direction, caplen, wirelen, eth_src, eth_dst, vlan, proto, src, dst, sport,
    dport, ip_proto, tcp_flags, info``. ``snaplen`` and ``count`` are as in ``read``.
    """
    _check_range("snaplen", snaplen, 1, MAX_SNAPLEN)
    _check_range("count", count, 1, _core.MAX_COUNT)
    return _core.read_table(os.fspath(path), as_filter(filter), snaplen, count, columns)


def conversations(
    source: str | bytes | os.PathLike[str] | Iterable[Packet | tuple[int, bytes]],
    filter: FilterLike = None,
    count: int | None = None,
) -> list[Conversation]:
    """The conversations of a capture file (a path: pcap, pcapng or .gz of one) or of packets (any
    iterable of ``Packet``, or ``(ts_ns, bytes)`` pairs of Ethernet frames), biggest first.

    Counted in one pass in Rust, with memory bounded by the number of conversations. For a file,
    ``filter`` keeps the packets counted and ``count`` stops after that many; filter packets of your own
    before handing them over. Each ``Conversation`` has its protocol, client and server (address and
    port), state, packets and bytes each way, first and last time (docs/conversations.md).
    """
    return _report(source, filter, count).conversations


def policy(
    source: str | bytes | os.PathLike[str] | Iterable[Packet | tuple[int, bytes]] | Sequence[Conversation],
    format: str = "nft",
    filter: FilterLike = None,
) -> str:
    """The narrowest firewall ruleset that lets the answered conversations of ``source`` through again
    (a path, packets, or ``Conversation`` objects), as ``nft -f`` (``format="nft"``) or
    ``iptables-restore`` input (``"iptables"`` for IPv4, ``"ip6tables"`` for IPv6). What the engineer
    must know before loading it (nothing answered; rules without an input interface) comes as a
    ``UserWarning``.
    """
    from . import ruleset
    from .flows import Conversation

    format = ruleset.check_format(format, f"format={format!r}")
    if isinstance(source, Sequence) and source and all(isinstance(c, Conversation) for c in source):
        convs = [c for c in source if isinstance(c, Conversation)]
        name = "conversations"
    else:
        convs = _report(source, filter, None).conversations  # type: ignore[arg-type]
        name = os.fsdecode(source) if isinstance(source, str | bytes | os.PathLike) else "packets"
    built = ruleset.build(convs)
    for said in ruleset.warnings(built):
        import warnings

        warnings.warn(said, UserWarning, stacklevel=2)
    return ruleset.render(built, format, name)


def _report(
    source: str | bytes | os.PathLike[str] | Iterable[Packet | tuple[int, bytes]],
    filter: FilterLike,
    count: int | None,
) -> FlowReport:
    from . import flows

    _check_range("count", count, 1, _core.MAX_COUNT)
    if isinstance(source, str | bytes | os.PathLike):
        return flows.of_file(os.fsdecode(source), as_filter(filter), count)
    if filter is not None or count is not None:
        raise TypeError("filter and count apply to a file: filter the packets before handing them over")
    if not isinstance(source, Iterable):
        raise TypeError(f"source={source!r:.60}: expected a file path or an iterable of packets")
    return flows.of_packets(source)


def write(
    path: str | os.PathLike[str],
    packets: Iterable[Packet | tuple[int, bytes]],
    linktype: int = 1,
    snaplen: int = MAX_SNAPLEN,
    format: Literal["pcap", "pcapng"] = "pcap",
) -> int:
    """Write packets to a file, atomically; returns how many were written. ``format="pcap"``: classic
    pcap of one link type. ``"pcapng"``: one interface block per distinct ``pkt.iface`` (and link type),
    in order of first appearance, each packet with its direction; ``(ts_ns, bytes)`` pairs belong to an
    unnamed interface of ``linktype``."""
    _check_range("snaplen", snaplen, 1, MAX_SNAPLEN)
    if format == "pcap":
        return _core.write_pcap(os.fspath(path), packets, linktype, snaplen)
    if format == "pcapng":
        return _core.write_pcapng(os.fspath(path), packets, linktype, snaplen)
    raise UsageError(f"format={format!r}: expected 'pcap' or 'pcapng'", "format")
