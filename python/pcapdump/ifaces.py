"""Interfaces: which there are to capture on, and in which network namespace
(docs/commands.md#interfaces).

The list itself is the engine's (route netlink, ``_core.interfaces()``); a capture and the list see the
network namespace of the thread that asks, so the agent's list is the one that matters for ``start``.
"""

from __future__ import annotations

import os

from . import _core


def network_namespace() -> str | None:
    """The calling thread's network namespace as the kernel names it (``net:[4026531840]``): two
    processes capture on the same interfaces exactly when these are equal. ``None`` where there is no
    such thing (not Linux)."""
    for link in ("/proc/thread-self/ns/net", "/proc/self/ns/net"):  # thread-self: Linux 3.17 and later
        try:
            return os.readlink(link)
        except OSError:
            continue
    return None


def up_names() -> list[str]:
    """The names of the interfaces that are up, in index order: what ``start`` without one captures on."""
    return [iface["name"] for iface in _core.interfaces() if iface["up"]]


__all__ = ["network_namespace", "up_names"]
