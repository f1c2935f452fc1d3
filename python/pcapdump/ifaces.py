"""Interfaces: which there are to capture on, in which network namespace, and which name a mistyped
one was close to (docs/commands.md#interfaces).

The list itself is the engine's (route netlink, ``_core.interfaces()``); a capture and the list see the
network namespace of the thread that asks, so the agent's list is the one that matters for ``start``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from . import _core
from .errors import NoSuchInterfaceError
from .shapes import Interface

# How many close names a "did you mean" offers at most.
MAX_SUGGESTIONS = 3


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


def link_of(iface: Interface) -> str:
    """``up``; ``down`` (administratively: `ip link set down`); ``no carrier`` (up, but the cable, the
    peer of a veth or the radio is gone)."""
    return "down" if not iface["up"] else "up" if iface["running"] else "no carrier"


def link_states() -> dict[str, str]:
    """Each interface's link (`link_of`); one that is missing is ``gone``."""
    return {i["name"]: link_of(i) for i in _core.interfaces()}


def _edits(a: str, b: str) -> int:
    """Edits from ``a`` to ``b``: a letter inserted, deleted, changed, or two neighbours swapped."""
    before: list[int] = []
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, before, row = before, row, [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            row[j] = min(before[j] + 1, row[j - 1] + 1, before[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], prev[j - 2] + 1)
    return row[-1]


def close_names(name: str, candidates: Iterable[str]) -> list[str]:
    """The candidates ``name`` is likely a slip of, the closest first (ties all given, at most
    ``MAX_SUGGESTIONS``): the same name in other case, one that starts with it or that it starts with
    (``eth`` → ``eth0``), or one or two edits away (``eht0`` → ``eth0``; one for names of up to 4
    letters)."""
    typed = name.lower()
    limit = 1 if len(typed) <= 4 else 2
    scored: dict[str, int] = {}
    for candidate in candidates:
        known = candidate.lower()
        if candidate == name or candidate in scored:
            continue
        distance = _edits(typed, known)
        prefix = len(typed) >= 2 and (known.startswith(typed) or typed.startswith(known))
        if distance <= limit or prefix:
            scored[candidate] = distance
    if not scored:
        return []
    best = min(scored.values())
    return [c for c, d in scored.items() if d == best][:MAX_SUGGESTIONS]


def no_such_interface(
    name: str, candidates: Iterable[str], netns: str | None = None, caller_netns: str | None = None
) -> NoSuchInterfaceError:
    """The error for an interface that does not exist where ``netns`` (the capturer's namespace) is: it
    names the interface, the close names among ``candidates``, and, when the caller is in another
    network namespace, both namespaces (the interface may well exist in the caller's)."""
    close = close_names(name, candidates)
    message = f"no such interface '{name}'"
    if close:
        quoted = " or ".join(f"'{c}'" for c in close)
        message += f" (did you mean {quoted}?)"
    if netns and caller_netns and netns != caller_netns:
        message += f" (the agent runs in another network namespace: {netns}; yours is {caller_netns})"
    return NoSuchInterfaceError(message, name, close, netns)


__all__ = ["close_names", "network_namespace", "no_such_interface", "up_names"]
