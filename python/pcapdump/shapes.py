"""The dictionaries the engine returns, typed, so that ``mypy --strict`` catches a wrong key.

The Rust extension builds them (``_core.pyi`` names these types); nothing here exists at run time but the
classes themselves, and the time format this process asks for.
"""

from __future__ import annotations

import os
from typing import Literal, TypedDict


class TriggerInfo(TypedDict):
    """The packet a trigger fired on."""

    iface: str
    #: Its number in ``show`` (from 1 per interface), or ``None`` once the buffer no longer holds it.
    index: int | None
    #: Its sequence number in the capture buffer (``None`` for a capture that stores nothing).
    seq: int | None
    ts_ns: int
    brief: str


class CaptureStats(TypedDict):
    """``Capture.stats()``: the counters of one capture and of the buffer it stores into."""

    state: Literal["running", "stopped"]
    #: ``None`` while running; else ``"stopped"``, ``"count reached"`` or ``"interface removed"``.
    stop_reason: str | None
    iface: str
    #: Packets and bytes (after the snap length) this capture kept.
    packets: int
    bytes: int
    #: Packets the filter passed that the kernel's ring had no room for.
    kernel_drops: int
    #: Linear buffer full: packets not stored.
    buffer_full_drops: int
    #: Ring buffer: packets of this capture overwritten by newer ones.
    overwritten: int
    #: Packets a reader (iteration, live lines) missed by falling behind.
    live_dropped: int
    buffer_size: int
    buffer_used: int
    #: The packet the trigger fired on, once it has (``None`` before, or without a trigger).
    trigger: TriggerInfo | None


class CaptureSettings(TypedDict):
    """``Capture.settings()``: what a capture was started with."""

    #: The filter words in canonical form ("" for none).
    filter: str
    snaplen: int
    count: int | None
    #: Seconds after which it stops by itself, or ``None``.
    duration: float | None
    #: The trigger's filter words, and the packets kept after it fires (``None`` without a trigger).
    trigger: str | None
    after: int | None
    promisc: bool
    #: False for a capture that only feeds live lines (``-ou``).
    store: bool


class BufferInterface(TypedDict):
    """``CaptureBuffer.interfaces()``: what the buffer holds and counted for one interface."""

    name: str
    linktype: int
    packets: int
    bytes: int
    held: int
    held_bytes: int
    buffer_full_drops: int
    overwritten: int


class TimeFormat(TypedDict):
    """How brief lines write times: in the zone a ``TZ`` value names (``None``: ``TZ`` unset, the system's
    zone), or in UTC; with the date or not. The console sends its own, so the agent writes the caller's
    time, not its own."""

    tz: str | None
    utc: bool
    date: bool


def local_time_format(utc: bool = False, date: bool = False) -> TimeFormat:
    """This process's time zone (its ``TZ``), or UTC; with the date or not."""
    tz = os.environ.get("TZ")
    if tz is not None and not _is_utf8(tz):
        tz = ""  # not a zone the C library could read either: UTC, as it would use
    return {"tz": tz, "utc": utc, "date": date}


def _is_utf8(text: str) -> bool:
    """Whether an environment value is text (undecodable bytes arrive as surrogates)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class ReadSummary(TypedDict):
    """What ``read`` did: records read, records that matched, bytes of packet data kept."""

    read: int
    matched: int
    bytes: int


class Interface(TypedDict):
    """``_core.interfaces()``: one network interface, as a capture on it would see it."""

    index: int
    name: str
    #: IFF_UP: switched on. ``running`` (IFF_RUNNING) false while up: no carrier.
    up: bool
    running: bool
    #: IFF_LOWER_UP: the driver sees a carrier.
    lower_up: bool
    loopback: bool
    #: ``up``, ``down``, ``unknown`` (loopback, tun), ``lowerlayerdown``, ``dormant``, ...
    operstate: str
    mtu: int
    #: ``aa:bb:cc:dd:ee:ff``, or ``None`` for a link without one (tun, IP tunnels).
    mac: str | None
    #: Every address with its prefix length (``198.18.0.2/24``, ``2001:db8::2/64``): IPv4 first.
    addresses: list[str]
    #: The ARPHRD_* hardware type.
    hatype: int
    #: The link type a capture stores its packets as, by number and libpcap name (``1``, ``EN10MB``).
    linktype: int
    linktype_name: str | None
    #: Whether filter words can be used on it.
    filters: bool


class InterfaceListing(TypedDict):
    """``Console.interfaces()``: the interfaces of the agent's network namespace, or without an agent
    (``agent`` is ``None``) those of the caller's."""

    agent: int | None
    #: The network namespace listed, and the caller's (``net:[4026531840]``).
    netns: str | None
    own_netns: str | None
    interfaces: list[Interface]


__all__ = [
    "BufferInterface",
    "CaptureSettings",
    "CaptureStats",
    "Interface",
    "InterfaceListing",
    "ReadSummary",
    "TimeFormat",
    "TriggerInfo",
]
