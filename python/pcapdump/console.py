"""``pcapdump.Console``: the agent's client, with the console's verbs. The CLI is this plus printing.

>>> console = pcapdump.Console()                                      # doctest: +SKIP
>>> console.start("int", "ipsrc 198.18.0.1 tcp", size_kb=1024)        # doctest: +SKIP
>>> console.stop(); console.write("int", "capture.cap")                # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from . import _core
from .errors import (
    AgentError,
    AgentGoneError,
    AgentNotRunningError,
    AgentUnresponsiveError,
    CaptureError,
    PrivilegeError,
    UsageError,
)
from .flows import FlowReport
from .home import Home, process_alive
from .ifaces import network_namespace
from .protocol import BadMessage, Connection, reply_error
from .shapes import InterfaceListing, TimeFormat, local_time_format

# The agent must take a request within this long, or the command reports a hung agent (and the agent,
# should it wake up later, drops the request: its deadline has passed).
ANSWER_TIMEOUT_S = 5.0
# Once taken, the agent says it is still at work every second; this long without a word is a hang.
PROGRESS_TIMEOUT_S = 5.0
# How late after the deadline the agent's first word may still arrive (it took the request in time).
GRACE_S = 1.0
AGENT_START_TIMEOUT_S = 10.0
CAP_NET_RAW = 13


def has_capture_privilege() -> bool:
    """CAP_NET_RAW in effect (root may have had it taken away: `setpriv`, a container, a unit file)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_RAW & 1)
    except OSError:
        pass
    return os.geteuid() == 0


PRIVILEGE_MESSAGE = (
    "capturing needs root or the CAP_NET_RAW capability: run it as root (sudo pcapdump ...), "
    "or run the agent under systemd with AmbientCapabilities=CAP_NET_RAW"
)


def _checked(reply: dict[str, Any] | None) -> dict[str, Any]:
    """The reply, if it says ``ok``; else the exception it carries."""
    if reply is None:
        raise AgentError("the agent closed the connection without answering (see agent.log)")
    if not reply.get("ok"):
        raise reply_error(reply)
    return reply


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

    def _connect(self, timeout: float = ANSWER_TIMEOUT_S) -> Connection:
        """A connection to this home's agent, after checking that the home and the agent are ours."""
        self.home.check()
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(max(deadline - time.monotonic(), 0.05))
            try:
                sock.connect(str(self.home.socket))
                break
            except FileNotFoundError:
                sock.close()
                raise AgentNotRunningError("no agent is running (nothing is being captured)") from None
            except PermissionError:
                sock.close()
                raise AgentError(
                    f"cannot reach the agent at {self.home.socket}: permission denied; "
                    "it serves root only, run the command as root (sudo)"
                ) from None
            except ConnectionRefusedError:
                sock.close()
                pid = self.home.agent_pid()
                if not self.home.agent_holds_lock() and not (pid and process_alive(pid)):
                    raise self._gone(pid) from None
                # An agent holds the home, or its process lives, but does not listen: it is starting
                # or stopping.
            except (BlockingIOError, InterruptedError):
                sock.close()  # its queue of connections is full
            except TimeoutError:
                sock.close()
                raise AgentUnresponsiveError(self._hung_agent_message(timeout)) from None
            if time.monotonic() >= deadline:
                raise AgentUnresponsiveError(self._hung_agent_message(timeout))
            time.sleep(0.05)
        uid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
        if uid != os.geteuid():
            sock.close()
            raise AgentError(f"{self.home.socket}: served by uid {uid}, not by you; refusing to use it")
        return Connection(sock)

    def _gone(self, pid: int | None) -> AgentError:
        """A socket nobody listens on, no agent holds the home, and the process of the pid file is
        dead: the agent was killed. Its pid file is cleared, so this is said once; the next start
        replaces the socket."""
        if pid is None:
            return AgentNotRunningError("no agent is running (nothing is being captured)")
        if self.home.agent_pid() == pid:
            self.home.pidfile.unlink(missing_ok=True)
        return AgentGoneError(
            f"the agent (pid {pid}) is gone (killed or crashed): the packets it held are lost; "
            "`pcapdump start` launches a new one"
        )

    def _hung_agent_message(self, timeout: float) -> str:
        pid = self.home.agent_pid()
        return (
            f"the agent{f' (pid {pid})' if pid else ''} did not answer within {timeout:.0f} s; "
            f"`kill {pid or '<pid>'}` and run the command again"
        )

    @contextlib.contextmanager
    def _agent_errors(self) -> Iterator[None]:
        """A silent or lost agent becomes an AgentError."""
        try:
            yield
        except TimeoutError:
            raise AgentUnresponsiveError(self._hung_agent_message(ANSWER_TIMEOUT_S)) from None
        except BadMessage as e:
            raise AgentError(f"the agent sent what is not a message: {e}") from None
        except OSError as e:
            raise AgentError(f"lost the agent while waiting for its answer: {e}") from None

    @contextlib.contextmanager
    def _conversation(self) -> Iterator[Connection]:
        """A connection to the agent, closed after the block."""
        conn = self._connect()
        try:
            with self._agent_errors():
                yield conn
        finally:
            conn.close()

    @staticmethod
    def _ask(conn: Connection, message: dict[str, Any]) -> dict[str, Any]:
        """Send a request with its deadline and wait for the answer: the agent must take it by the
        deadline (else it never will), then says it is at work every second until it answers. The
        request also says which network namespace we are in, so that an error about an interface can
        say that the agent's is another one."""
        conn.send({**message, "deadline": time.time() + ANSWER_TIMEOUT_S, "netns": network_namespace()})
        conn.sock.settimeout(ANSWER_TIMEOUT_S + GRACE_S)
        while True:
            reply = conn.receive()
            if reply is None or "progress" not in reply:
                return _checked(reply)
            conn.sock.settimeout(PROGRESS_TIMEOUT_S)

    def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        with self._conversation() as conn:
            return self._ask(conn, message)

    def _ensure_agent(self) -> list[str]:
        """Launch the agent if none answers; returns notes for the user (e.g. that an agent died).
        Commands that start at once launch one agent: the launch is under the home's start lock."""
        notes: list[str] = []
        try:
            self._request({"op": "ping"})
            return notes
        except AgentNotRunningError:
            pass
        except AgentGoneError as e:
            notes.append(str(e))
        self.home.create()
        with self.home.locked(self.home.start_lock, within=2 * AGENT_START_TIMEOUT_S) as mine:
            if not mine:
                raise AgentUnresponsiveError(
                    f"another command has been launching the agent for {2 * AGENT_START_TIMEOUT_S:.0f} s; "
                    f"see {self.home.log}"
                )
            try:
                self._request({"op": "ping"})  # another command launched it meanwhile
                return notes
            except (AgentNotRunningError, AgentGoneError):
                pass
            self._launch()
        return notes

    def _launch(self) -> None:
        fd = self.home.open_log()
        with os.fdopen(fd, "ab") as logfile:
            # It detaches (see agent.detach): this process exits once the agent listens, or fails.
            launcher = subprocess.Popen(
                [sys.executable, "-m", "pcapdump.agent"],
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.PIPE,
                start_new_session=True,
                env={**os.environ, "PCAPDUMP_HOME": str(self.home.root)},
                cwd="/",
            )
        try:
            _, reason = launcher.communicate(timeout=AGENT_START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            launcher.kill()
            launcher.communicate()
            raise AgentError(
                f"the agent did not start within {AGENT_START_TIMEOUT_S:.0f} s; see {self.home.log}"
            ) from None
        if launcher.returncode != 0:
            lines = reason.decode(errors="replace").strip().splitlines() or [f"see {self.home.log}"]
            raise AgentError(f"the agent did not start: {lines[-1]}")

    # --- verbs -----------------------------------------------------------------------------------

    @staticmethod
    def time_format(utc: bool = False, date: bool = False) -> TimeFormat:
        """This process's time zone (its ``TZ``), or UTC; with the date or not: for ``start(live=...)`` and
        ``show``, whose lines the agent writes."""
        return local_time_format(utc, date)

    def start(
        self,
        iface: str | None = None,
        filter: str = "",
        *,
        size_kb: int | None = None,
        snaplen: int | None = None,
        count: int | None = None,
        duration: int | None = None,
        trigger: str | None = None,
        after: int | None = None,
        promisc: bool = False,
        ring: bool = False,
        live: str | None = None,
        json: bool = False,
        times: TimeFormat | None = None,
        size_token: str = "-size",
    ) -> dict[str, Any] | LiveSession:
        """Start capturing on ``iface`` (every interface that is up if ``None``) in the agent.

        ``live="o"`` or ``"ou"`` returns a ``LiveSession`` whose iteration yields brief lines as packets
        are captured, times as ``times`` says (default: this process's zone, ``time_format()``); otherwise
        the agent's answer (``started``, ``failed``, ``buffer``).
        """
        if live not in (None, "o", "ou"):
            raise UsageError(f"live={live!r}: expected None, 'o' or 'ou'")
        if not has_capture_privilege():
            raise PrivilegeError(PRIVILEGE_MESSAGE)
        _core.Filter(str(filter))  # a FilterError before any agent is launched
        if trigger is not None:
            _core.Filter(str(trigger))
        notes = self._ensure_agent()
        message = {
            "op": "start",
            "iface": iface,
            "filter": str(filter),
            "size_kb": size_kb,
            "size_token": size_token,
            "snaplen": snaplen,
            "count": count,
            "duration": duration,
            "trigger": trigger,
            "after": after,
            "promisc": promisc,
            "ring": ring,
            "live": live,
            "json": json,
            "time": times or self.time_format(),
        }
        if live is None:
            reply = self._request(message)
            reply["notes"] = notes
            return reply
        conn = self._connect()
        try:
            with self._agent_errors():
                first = self._ask(conn, message)
        except BaseException:
            conn.close()
            raise
        first["notes"] = notes
        conn.sock.settimeout(None)
        return LiveSession(conn, first)

    def stop(self, iface: str | None = None) -> list[dict[str, Any]]:
        """Stop ``iface`` (all if ``None``); its packets stay. Returns the final counters."""
        try:
            return list(self._request({"op": "stop", "iface": iface})["stopped"])
        except AgentNotRunningError:
            if iface is None:
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
        """``{"agent": {"pid": ...} | None, "buffer": {...} | None, "captures": [...], "files": [...]}``
        (docs/commands.md#status-output)."""
        try:
            return dict(self._request({"op": "status", "time": self.time_format()})["status"])
        except AgentNotRunningError:
            return {"agent": None, "buffer": None, "captures": [], "files": self.home.store_summary()}

    def interfaces(self) -> InterfaceListing:
        """The interfaces the agent can capture on: those of its network namespace, ``agent`` being its
        pid. Without an agent, those of the caller's namespace (``agent`` is ``None``): none is launched
        to ask."""
        own = network_namespace()
        try:
            reply = self._request({"op": "interfaces"})
        except AgentNotRunningError:
            return {"agent": None, "netns": own, "own_netns": own, "interfaces": _core.interfaces()}
        return {
            "agent": int(reply["pid"]),
            "netns": reply["netns"],
            "own_netns": own,
            "interfaces": reply["interfaces"],
        }

    def show(
        self,
        ifaces: str | Sequence[str] | None = None,
        json: bool = False,
        times: TimeFormat | None = None,
        *,
        merge: bool = False,
    ) -> list[dict[str, Any]]:
        """One section per interface (``None``: every one; ``"int,ext"`` or a list: those), each with
        ``iface``, ``packets`` and ``lines`` (text); with ``merge``, one section of them all as one
        timeline. Times as ``times`` say (default: this process's zone, ``time_format()``)."""
        try:
            with self._conversation() as conn:
                request = {
                    "op": "show",
                    "ifaces": _interface_list(ifaces) if ifaces is not None else None,
                    "merge": merge,
                    "json": json,
                    "time": times or self.time_format(),
                }
                sections = list(self._ask(conn, request)["sections"])
                for sec in sections:
                    sec["lines"] = conn.receive_exact(sec.pop("size")).decode()
        except AgentNotRunningError:
            if ifaces is None:
                return []
            raise
        return sections

    def conversations(
        self, ifaces: str | Sequence[str] | None = None, filter: str | _core.Filter = ""
    ) -> FlowReport:
        """The conversations of the stored packets of ``ifaces`` (``None``: every interface; ``"int,ext"``
        or a list: those) that ``filter`` keeps (docs/conversations.md). Raises
        ``AgentNotRunningError`` when no agent runs: nothing is stored."""
        _core.Filter(str(filter))  # a FilterError before asking
        request = {
            "op": "conv",
            "ifaces": _interface_list(ifaces) if ifaces is not None else None,
            "filter": str(filter),
        }
        # Without an agent nothing is stored: an error, not an empty recording (whose policy would drop
        # everything).
        with self._conversation() as conn:
            reply = self._ask(conn, request)
            lines = conn.receive_exact(int(reply["size"])).decode().splitlines()
        return FlowReport.from_rows({**reply, "conversations": [json.loads(line) for line in lines]})

    def write(self, ifaces: str | Sequence[str], name: str, *, pcapng: bool = False) -> dict[str, Any]:
        """Write the packets of ``ifaces`` to ``name`` in the capture store: one interface (``"int"``),
        several (``["int", "ext"]`` or ``"int,ext"``) merged in time order, or ``"all"``. Several, or
        ``pcapng=True``, make pcapng; one makes classic pcap. Returns ``path``, ``format``, ``packets``,
        ``bytes`` and ``interfaces`` (each one's ``iface``, ``packets``, ``bytes``)."""
        chosen = _interface_list(ifaces)
        return self._request({"op": "write", "ifaces": chosen, "file": name, "pcapng": pcapng})

    def wipe(self) -> int:
        """Drop all stored packets; returns how many."""
        try:
            return int(self._request({"op": "wipe"})["wiped"])
        except AgentNotRunningError:
            return 0

    def cleanup(self) -> dict[str, Any]:
        """Stop everything, free the buffer, stop the agent, delete the files `write` made (only those)."""
        try:
            reply = self._request({"op": "cleanup"})
        except (AgentNotRunningError, AgentGoneError):
            return {"stopped": [], "freed": 0, "deleted": self.home.empty_store(), "agent": False}
        # The agent answers, then exits: wait until it lets go of the home, so that "agent stopped" is
        # true when printed.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.home.agent_holds_lock():
            time.sleep(0.01)
        reply["agent"] = True
        return reply


def _interface_list(ifaces: str | Sequence[str]) -> str | list[str]:
    """``"all"``, or the names: ``"int,ext"`` and ``["int", "ext"]`` alike."""
    if isinstance(ifaces, str):
        return ifaces if ifaces == "all" else ifaces.split(",")
    return list(ifaces)
