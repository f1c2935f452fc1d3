"""The agent's wire format: one JSON object per line over a Unix stream socket.

A request is ``{"op": ..., ...}``. A reply is ``{"ok": true, ...}`` or ``{"ok": false, "error": <one line>,
"exit": 1|2}``. A live ``start`` is followed by ``{"line": ...}`` messages and one ``{"end": ...}``. The reply
to ``show`` gives each section's ``size``; that many bytes of text follow it, section after section.
"""

from __future__ import annotations

import json
import socket
from typing import Any

MAX_MESSAGE = 1 << 30


class Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._pending = bytearray()

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    def receive(self) -> dict[str, Any] | None:
        """The next message, or ``None`` once the other side has closed."""
        # Appending to a bytearray and searching only the new bytes keeps a long message (`show` of a
        # big buffer) linear in its size.
        scanned = 0
        while (end := self._pending.find(b"\n", scanned)) < 0:
            scanned = len(self._pending)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return None
            self._pending += chunk
            if len(self._pending) > MAX_MESSAGE:
                raise ValueError("message too long")
        message = json.loads(self._pending[:end])
        del self._pending[: end + 1]
        if not isinstance(message, dict):
            raise ValueError("not a JSON object")
        return message

    def send_bytes(self, data: bytes) -> None:
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
