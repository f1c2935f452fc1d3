"""The agent's wire format: one JSON object per line over a Unix stream socket.

A request is ``{"op": ..., ...}``. A reply is ``{"ok": true, ...}`` or ``{"ok": false, "error": <one line>,
"exit": 1|2}``. A live ``start`` is followed by ``{"line": ...}`` messages and one ``{"end": ...}``.
"""

from __future__ import annotations

import json
import socket
from typing import Any

MAX_MESSAGE = 1 << 30


class Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._pending = b""

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    def receive(self) -> dict[str, Any] | None:
        """The next message, or ``None`` once the other side has closed."""
        while b"\n" not in self._pending:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return None
            self._pending += chunk
            if len(self._pending) > MAX_MESSAGE:
                raise ValueError("message too long")
        line, _, self._pending = self._pending.partition(b"\n")
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ValueError("not a JSON object")
        return message

    def close(self) -> None:
        self.sock.close()
