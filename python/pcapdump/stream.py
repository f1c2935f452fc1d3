"""``stream``: a capture in the foreground whose packets go out as pcapng on a descriptor as they come
(standard output for ``pcapdump stream``, Wireshark's pipe for the extcap's local interfaces).

Run over SSH (``ssh gw pcapdump stream int | wireshark -k -i -``), the stream leaves out the SSH
connection it runs over, as ``SSH_CONNECTION`` names it: otherwise each packet it sends would be captured
and sent again, without end. Ctrl-C, SIGTERM and SIGHUP stop the capture; what it kept still goes out,
then its statistics block.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from . import _core, capture
from ._core import Filter

Endpoint = tuple[str, int]

# Signals that end a stream the way Ctrl-C does: the terminal closing, a service manager, Wireshark.
_STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def ssh_connection(env: Mapping[str, str]) -> tuple[Endpoint, Endpoint] | None:
    """The (client, server) ends of the SSH connection this process runs over, from ``SSH_CONNECTION``
    (``client_ip client_port server_ip server_port``); ``None`` when there is none, or it makes no sense.
    An IPv4 client of a server listening on IPv6 shows as ``::ffff:a.b.c.d``: on the wire it is IPv4."""
    fields = env.get("SSH_CONNECTION", "").split()
    if len(fields) != 4:
        return None
    ends = []
    for addr, port in ((fields[0], fields[1]), (fields[2], fields[3])):
        try:
            ip = ipaddress.ip_address(addr.partition("%")[0])
            number = int(port)
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if not 0 < number < 65536:
            return None
        ends.append((str(ip), number))
    if ipaddress.ip_address(ends[0][0]).version != ipaddress.ip_address(ends[1][0]).version:
        return None
    return ends[0], ends[1]


def describe(conn: tuple[Endpoint, Endpoint]) -> str:
    def end(e: Endpoint) -> str:
        return f"[{e[0]}]:{e[1]}" if ":" in e[0] else f"{e[0]}:{e[1]}"

    return f"{end(conn[0])} > {end(conn[1])}, and every SSH session to {end(conn[1])}"


@dataclass(frozen=True)
class Streamed:
    packets: int
    #: Why it ended: the capture's stop reason (``stopped``, ``count reached``, ``duration``, ``interface
    #: removed``), ``reader gone`` or ``reader stopped reading``.
    end: str
    #: The capture's counters (``CaptureStats``) at the end.
    stats: dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """What a stream will capture: the filter with the SSH connection left out (``left_out``), and
    what to tell the user about it (``note``: an ``SSH_CONNECTION`` that could not be read)."""

    filter: Filter | None
    left_out: tuple[Endpoint, Endpoint] | None
    note: str | None = None


def plan(flt: Filter | None, keep_ssh: bool, env: Mapping[str, str] = os.environ) -> Plan:
    """Both ends of the SSH connection are left out, each whatever the other end: the client's (so a
    port translated on the way to the server changes nothing) and the server's (so that two streams of
    two sessions do not capture each other's, each feeding the other)."""
    if keep_ssh:
        return Plan(flt, None)
    conn = ssh_connection(env)
    if conn is None:
        said = env.get("SSH_CONNECTION")
        note = f"SSH_CONNECTION {said[:80]!r} not understood: no SSH connection left out" if said else None
        return Plan(flt, None, note)
    (client, server) = conn
    left = (flt or Filter()).without_tcp_end(*client).without_tcp_end(*server)
    return Plan(left, conn)


@contextlib.contextmanager
def _stopping_on_signals(cap: _core.Capture) -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP stop the capture (the stream then writes what it kept and ends)
    instead of ending the process. Only the main thread can take signals; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {sig: signal.signal(sig, lambda *_: cap.stop()) for sig in _STOPPING}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def run(
    iface: str,
    fd: int,
    plan: Plan,
    snaplen: int | None = None,
    count: int | None = None,
    duration: float | None = None,
    promisc: bool = False,
    buffer_kb: int = _core.DEFAULT_STREAM_BUFFER_KB,
    name: str = "standard output",
    started: Callable[[], None] | None = None,
) -> Streamed:
    """Capture on ``iface`` and write its packets to ``fd`` as pcapng until the capture stops (``count``,
    ``duration``, a stopping signal) or the reader goes away; ``started`` is called once the capture
    runs. The buffer is a ring: a reader that falls ``buffer_kb`` behind loses the oldest packets not yet
    written (``stats["live_dropped"]``)."""
    cap = capture(
        iface,
        plan.filter,
        snaplen=snaplen,
        count=count,
        buffer_kb=buffer_kb,
        promisc=promisc,
        ring=True,
        duration=duration,
    )
    with cap, _stopping_on_signals(cap):
        if started is not None:
            started()
        packets, end = cap.stream(fd, name)
    return Streamed(packets, end, dict(cap.stats()))


# Ends that leave captured packets unwritten, or the capture without its interface: a failure (the
# engine's list; absent where live capture is not built).
FAILED_ENDS: tuple[str, ...] = tuple(getattr(_core, "STREAM_FAILED_ENDS", ()))


def not_written(result: Streamed) -> int:
    """Packets the capture kept that never reached the reader: it fell behind (the ring overwrote
    them), left, stopped reading, or the stream was given up."""
    kept: int = result.stats["packets"]
    return max(0, kept - result.packets)


def summary(iface: str, result: Streamed) -> str:
    """The final counters, one line: ``int: count reached: 10 packets streamed, kernel drops 0, ...``."""
    s = result.stats
    return (
        f"{iface}: {result.end}: {result.packets} packet{'s' if result.packets != 1 else ''} streamed, "
        f"kernel drops {s['kernel_drops']}, buffer drops {s['buffer_full_drops']}, "
        f"not written {not_written(result)}"
    )
