"""The agent's wire format: one JSON object per line over a Unix stream socket.

A request is ``{"op": ..., "deadline": <unix time>, ...}``: the agent drops a request it reads after its
deadline, so that a command its client gave up on (and reported as failed) never happens later. The agent
answers ``{"progress": n}`` at once when it takes a request, and again every second while it works; then
the reply: ``{"ok": true, ...}`` or ``{"ok": false, "error": <kind>, "message": <one line>, "exit": 1|2,
...}`` where the kind names the exception class (``errors.BY_KIND``) and the class's details (``iface``,
``token``) follow. A live ``start`` is followed by ``{"line": ...}`` messages and one ``{"end": ...}``. The
reply to ``show`` gives each section's ``size``; that many bytes of text follow it, section after section.
See docs/architecture.md#the-agent-protocol.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

from .errors import PcapdumpError, from_kind

# A request is a few hundred bytes; a reply (status of many captures) a few hundred kilobytes.
MAX_REQUEST = 64 << 10
MAX_REPLY = 16 << 20


class BadMessage(ValueError):
    """What came is not a message: not one JSON object, or too long."""


def error_reply(e: PcapdumpError) -> dict[str, Any]:
    """The reply that carries `e` to the console."""
    return {"ok": False, "error": e.kind, "message": e.message, "exit": e.exit_code, **e.details()}


def reply_error(reply: dict[str, Any]) -> PcapdumpError:
    """The exception an ``{"ok": false, ...}`` reply carries."""
    details = {k: v for k, v in reply.items() if k not in ("ok", "error", "message", "exit")}
    return from_kind(str(reply.get("error")), str(reply.get("message", "the agent refused")), **details)


class Connection:
    def __init__(self, sock: socket.socket, max_message: int = MAX_REPLY) -> None:
        self.sock = sock
        self.max_message = max_message
        self._pending = bytearray()
        # Progress messages come from a second thread of the agent.
        self._sending = threading.Lock()
        self._answered = threading.Event()

    def send(self, message: dict[str, Any]) -> None:
        """Send a message; the first that is not progress ends the progress messages, before it goes."""
        data = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        self._answered.set()
        with self._sending:
            self.sock.sendall(data)

    def keep_alive(self, every: float) -> None:
        """Send ``{"progress": n}`` now, and again every ``every`` seconds until the answer is sent: the
        client knows the request was taken in time, and that the agent is still at work on it."""

        def tick() -> None:
            n = 0
            while True:
                with self._sending:
                    if self._answered.is_set():
                        return
                    try:
                        self.sock.sendall(json.dumps({"progress": n}).encode() + b"\n")
                    except OSError:
                        return
                n += 1
                if self._answered.wait(every):
                    return

        threading.Thread(target=tick, daemon=True, name="progress").start()

    def receive(self, within: float | None = None) -> dict[str, Any] | None:
        """The next message, or ``None`` once the other side has closed. A message that is not one JSON
        object, or is longer than ``max_message``, raises ``BadMessage``; one that has not come whole
        ``within`` seconds (if given), ``TimeoutError``, however it trickles in."""
        # Appending to a bytearray and searching only the new bytes keeps a long message (`show` of a
        # big buffer) linear in its size.
        deadline = None if within is None else time.monotonic() + within
        scanned = 0
        while (end := self._pending.find(b"\n", scanned)) < 0:
            scanned = len(self._pending)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the message did not come in time")
                self.sock.settimeout(left)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return None
            self._pending += chunk
            if len(self._pending) > self.max_message:
                raise BadMessage(f"a message of more than {self.max_message} bytes")
        try:
            message = json.loads(self._pending[:end])
        except ValueError as e:
            raise BadMessage(f"not a JSON message: {e}") from None
        finally:
            del self._pending[: end + 1]
        if not isinstance(message, dict):
            raise BadMessage("not a JSON object")
        return message

    def send_bytes(self, data: bytes) -> None:
        self._answered.set()
        with self._sending:
            self.sock.sendall(data)

    def receive_exact(self, size: int) -> bytes:
        """The next `size` bytes that follow a message."""
        while len(self._pending) < size:
            chunk = self.sock.recv(max(1 << 20, size - len(self._pending)))
            if not chunk:
                raise ConnectionError("the agent closed the connection in the middle of an answer")
            self._pending += chunk
        data = bytes(self._pending[:size])
        del self._pending[:size]
        return data

    def close(self) -> None:
        self.sock.close()
