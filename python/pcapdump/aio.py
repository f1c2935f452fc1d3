"""``async for pkt in cap``: a live capture's packets in an asyncio event loop.

The loop waits for the capture's event descriptor (``Capture.watch()``, readable each time the capture
stores packets and when it stops) with ``loop.add_reader``: no thread waits, and nothing polls. Packets
are taken without waiting (``cap.next(timeout=0)``), so cancelling a task that awaits the next packet
loses none: the packet stays for the next ``next()`` or iteration, whichever thread or task asks.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._core import Capture, Packet, Readiness


class AsyncPackets:
    """The packets of ``cap`` as ``async for`` takes them (``Capture.__aiter__`` makes one): each once,
    in order, shared with every other iteration of the same capture; ends once the capture has stopped
    and every packet was given."""

    def __init__(self, cap: Capture) -> None:
        self._cap = cap
        self._ready = cap.watch()

    def __aiter__(self) -> AsyncPackets:
        return self

    async def __anext__(self) -> Packet:
        loop = asyncio.get_running_loop()
        while True:
            # Clear, take, then wait: a packet stored after the take leaves the descriptor readable.
            self._ready.clear()
            pkt = self._cap.next(timeout=0)
            if pkt is not None:
                return pkt
            if self._cap.finished:
                raise StopAsyncIteration
            await _readable(loop, self._ready)


async def _readable(loop: asyncio.AbstractEventLoop, ready: Readiness) -> None:
    """Until ``ready`` is readable. However the wait ends (cancelled too), the loop lets go of it."""
    woken = loop.create_future()
    loop.add_reader(ready, _wake, woken)
    try:
        await woken
    finally:
        loop.remove_reader(ready)


def _wake(woken: asyncio.Future[None]) -> None:
    # The loop calls this while the descriptor stays readable, until the reader is removed.
    if not woken.done():
        woken.set_result(None)
