"""``pcapdump.Console``: the agent's client, with the console's verbs. The CLI is this plus printing.

>>> console = pcapdump.Console()                                      # doctest: +SKIP
>>> console.start("int", "ipsrc 198.18.0.1 tcp", size_kb=1024)        # doctest: +SKIP
>>> console.stop(); console.write("int", "capture.cap")                # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from .errors import CaptureError, PcapdumpError, UsageError
from .home import Home
from .protocol import Connection

# A command that gets no answer within this long reports a hung agent instead of hanging itself.
ANSWER_TIMEOUT_S = 5.0
# Writing or showing a big buffer takes longer.
BULK_TIMEOUT_S = 300.0
AGENT_START_TIMEOUT_S = 10.0
CAP_NET_RAW = 13


class AgentError(PcapdumpError):
    """The agent cannot be reached, died, or does not answer."""


def has_capture_privilege() -> bool:
    if os.geteuid() == 0:
        return True
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_RAW & 1)
    except OSError:
        pass
    return False


PRIVILEGE_MESSAGE = (
    "capturing needs root or the CAP_NET_RAW capability: run it as root (sudo pcapdump ...), "
    "or run the agent under systemd with AmbientCapabilities=CAP_NET_RAW"
)


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _raise(reply: dict[str, Any]) -> None:
    message = str(reply.get("error", "the agent refused"))
    if reply.get("exit") == 2:
        raise UsageError(message)
    raise CaptureError(message)


class LiveSession:
    """The lines of a ``start`` with ``-o``/``-ou``; ``started`` holds what was started."""

    def __init__(self, conn: Connection, started: dict[str, Any]) -> None:
        self.conn = conn
        self.started = started
        self.end: dict[str, Any] | None = None

    def __iter__(self) -> Iterator[str]:
        try:
            while True:
                message = self.conn.receive()
                if message is None:
                    raise AgentError("the agent closed the live stream (it may have been stopped)")
                if "line" in message:
                    yield str(message["line"])
                else:
                    self.end = message
                    return
        finally:
            self.conn.close()

    def close(self) -> None:
        self.conn.close()


class Console:
    """The console's verbs, carried out by the agent of ``home`` (default ``$PCAPDUMP_HOME``)."""

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        self.home = Home.from_env(home)

    # --- reaching the agent ----------------------------------------------------------------------

    def _connect(self, timeout: float) -> Connection:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(self.home.socket))
        except FileNotFoundError:
            sock.close()
            raise AgentError("no agent is running (nothing is being captured)") from None
        except PermissionError:
            sock.close()
            raise AgentError(
                f"cannot reach the agent at {self.home.socket}: permission denied; "
                "it serves root only, run the command as root (sudo)"
            ) from None
        except ConnectionRefusedError:
            sock.close()
            raise AgentError(self._dead_agent_message()) from None
        except TimeoutError:
            sock.close()
            raise AgentError(self._hung_agent_message(timeout)) from None
        return Connection(sock)

    def _dead_agent_message(self) -> str:
        """A socket nobody listens on: the agent was killed. Clear its leftovers so the next start works."""
        pid = self.home.agent_pid()
        for path in (self.home.socket, self.home.pidfile):
            path.unlink(missing_ok=True)
        who = f"the agent (pid {pid})" if pid else "the agent"
        return (
            f"{who} is gone (killed or crashed): the packets it held are lost; "
            "`pcapdump start` launches a new one"
        )

    def _hung_agent_message(self, timeout: float) -> str:
        pid = self.home.agent_pid()
        return (
            f"the agent{f' (pid {pid})' if pid else ''} did not answer within {timeout:.0f} s; "
            f"`kill {pid or '<pid>'}` and run the command again"
        )

    @contextlib.contextmanager
    def _conversation(self, timeout: float) -> Iterator[Connection]:
        """A connection to the agent; a silent or lost agent becomes an AgentError."""
        conn = self._connect(timeout)
        try:
            yield conn
        except TimeoutError:
            raise AgentError(self._hung_agent_message(timeout)) from None
        except OSError as e:
            raise AgentError(f"lost the agent while waiting for its answer: {e}") from None
        finally:
            conn.close()

    def _request(self, message: dict[str, Any], timeout: float = ANSWER_TIMEOUT_S) -> dict[str, Any]:
        with self._conversation(timeout) as conn:
            conn.send(message)
            reply = conn.receive()
        if reply is None:
            raise AgentError("the agent closed the connection without answering (see agent.log)")
        if not reply.get("ok"):
            _raise(reply)
        return reply

    def _ensure_agent(self) -> list[str]:
        """Launch the agent if none answers; returns notes for the user (e.g. that an agent died)."""
        notes: list[str] = []
        try:
            self._request({"op": "ping"})
            return notes
        except AgentError as e:
            if "no agent is running" not in str(e):
                notes.append(str(e))
            if "did not answer" in str(e):
                raise
        self.home.create()
        # A fresh interpreter, not a fork: the agent starts with no thread and no state of ours.
        fd = os.open(self.home.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "ab") as logfile:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pcapdump.agent"],
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=logfile,
                start_new_session=True,
                env={**os.environ, "PCAPDUMP_HOME": str(self.home.root)},
                cwd="/",
            )
        deadline = time.monotonic() + AGENT_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AgentError(f"the agent did not start (exit {proc.returncode}); see {self.home.log}")
            try:
                self._request({"op": "ping"}, timeout=1.0)
                return notes
            except AgentError:
                time.sleep(0.02)
        proc.kill()
        raise AgentError(f"the agent did not start within {AGENT_START_TIMEOUT_S:.0f} s; see {self.home.log}")

    # --- verbs -----------------------------------------------------------------------------------

    def start(
        self,
        iface: str | None = None,
        filter: str = "",
        *,
        size_kb: int | None = None,
        snaplen: int | None = None,
        count: int | None = None,
        promisc: bool = False,
        ring: bool = False,
        live: str | None = None,
        json: bool = False,
        size_token: str = "-size",
    ) -> dict[str, Any] | LiveSession:
        """Start capturing on ``iface`` (every interface that is up if ``None``) in the agent.

        ``live="o"`` or ``"ou"`` returns a ``LiveSession`` whose iteration yields brief lines as packets
        are captured; otherwise the agent's answer (``started``, ``failed``, ``buffer``).
        """
        if live not in (None, "o", "ou"):
            raise UsageError(f"live={live!r}: expected None, 'o' or 'ou'")
        if not has_capture_privilege():
            raise CaptureError(PRIVILEGE_MESSAGE)
        notes = self._ensure_agent()
        message = {
            "op": "start",
            "iface": iface,
            "filter": str(filter),
            "size_kb": size_kb,
            "size_token": size_token,
            "snaplen": snaplen,
            "count": count,
            "promisc": promisc,
            "ring": ring,
            "live": live,
            "json": json,
        }
        if live is None:
            reply = self._request(message)
            reply["notes"] = notes
            return reply
        conn = self._connect(ANSWER_TIMEOUT_S)
        conn.send(message)
        first = conn.receive()
        if first is None or not first.get("ok"):
            conn.close()
            _raise(first or {"error": "the agent closed the connection without answering"})
        assert first is not None
        first["notes"] = notes
        conn.sock.settimeout(None)
        return LiveSession(conn, first)

    def stop(self, iface: str | None = None) -> list[dict[str, Any]]:
        """Stop ``iface`` (all if ``None``); its packets stay. Returns the final counters."""
        try:
            return list(self._request({"op": "stop", "iface": iface})["stopped"])
        except AgentError as e:
            if iface is None and "no agent is running" in str(e):
                return []
            raise

    def stop_many(self, ifaces: list[str]) -> list[dict[str, Any]]:
        """Stop these interfaces; those already stopped (by count, or by the agent) are reported too."""
        done = []
        for iface in ifaces:
            try:
                done += self.stop(iface)
            except CaptureError:
                done += [c for c in self.status()["captures"] if c["iface"] == iface]
        return done

    def status(self) -> dict[str, Any]:
        """``{"buffer": {...} | None, "captures": [...], "files": [...]}`` (SPEC §1.3)."""
        try:
            return dict(self._request({"op": "status"})["status"])
        except AgentError as e:
            if "no agent is running" not in str(e):
                raise
        return {"buffer": None, "captures": [], "files": self.home.store_summary()}

    def show(self, iface: str | None = None, json: bool = False) -> list[dict[str, Any]]:
        """One section per interface: ``iface``, ``packets`` and ``lines`` (text)."""
        try:
            with self._conversation(BULK_TIMEOUT_S) as conn:
                conn.send({"op": "show", "iface": iface, "json": json})
                reply = conn.receive()
                if reply is None or not reply.get("ok"):
                    _raise(reply or {"error": "the agent closed the connection without answering"})
                assert reply is not None
                sections = list(reply["sections"])
                for sec in sections:
                    sec["lines"] = conn.receive_exact(sec.pop("size")).decode()
        except AgentError as e:
            if iface is None and "no agent is running" in str(e):
                return []
            raise
        return sections

    def write(self, iface: str, name: str) -> dict[str, Any]:
        """Write ``iface``'s packets to ``name`` in the capture store: ``path``, ``packets``, ``bytes``."""
        return self._request({"op": "write", "iface": iface, "file": name}, BULK_TIMEOUT_S)

    def wipe(self) -> int:
        """Drop all stored packets; returns how many."""
        try:
            return int(self._request({"op": "wipe"})["wiped"])
        except AgentError as e:
            if "no agent is running" in str(e):
                return 0
            raise

    def cleanup(self) -> dict[str, Any]:
        """Stop everything, free the buffer, stop the agent, delete the store's files."""
        pid = self.home.agent_pid()
        try:
            reply = self._request({"op": "cleanup"})
        except AgentError as e:
            if "no agent is running" not in str(e) and "is gone" not in str(e):
                raise
            return {"stopped": [], "freed": 0, "deleted": self.home.empty_store(), "agent": False}
        # The agent answers, then exits: wait for it, so that "agent stopped" is true when printed.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (self.home.socket.exists() or _alive(pid)):
            time.sleep(0.02)
        reply["agent"] = True
        return reply
