"""The dictionaries the engine returns, typed, so that ``mypy --strict`` catches a wrong key.

The Rust extension builds them (``_core.pyi`` names these types); nothing here exists at run time but the
classes themselves.
"""

from __future__ import annotations

from typing import Literal, TypedDict


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


class CaptureSettings(TypedDict):
    """``Capture.settings()``: what a capture was started with."""

    #: The filter words in canonical form ("" for none).
    filter: str
    snaplen: int
    count: int | None
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


class ReadSummary(TypedDict):
    """What ``read`` did: records read, records that matched, bytes of packet data kept."""

    read: int
    matched: int
    bytes: int


__all__ = ["BufferInterface", "CaptureSettings", "CaptureStats", "ReadSummary", "TimeFormat"]
