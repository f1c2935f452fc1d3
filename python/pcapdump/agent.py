"""The agent: the process that owns the capture buffer and the captures between two ``pcapdump`` commands.

It holds ``agent.lock`` for as long as it runs (one agent per home), listens on ``$PCAPDUMP_HOME/agent.sock``
(mode 0600, peers of another uid refused), serves one request per connection in its own thread, and logs
to standard error (``agent.log`` when started in the background, the journal under systemd). All the
capture work is the Rust engine's; this is bookkeeping, and care that a request its client gave up on is
never carried out (docs/architecture.md#the-agent-protocol).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from . import _core
from .errors import (
    AgentError,
    AgentGoneError,
    CaptureError,
    NoSuchInterfaceError,
    PcapdumpError,
    PrivilegeError,
    UsageError,
)
from .home import STORE_NAME, Home
from .ifaces import link_states, network_namespace, no_such_interface, up_names
from .protocol import MAX_REQUEST, BadMessage, Connection, error_reply
from .shapes import BufferInterface, TimeFormat

log = logging.getLogger("pcapdump.agent")

# How often a live stream looks whether its reader went away while no packet comes.
LIVE_POLL_S = 0.2
# Longer than any zone name or POSIX TZ rule.
MAX_TZ = 256
# While a request is worked on, a progress message this often tells the client the agent is alive.
PROGRESS_S = 1.0
# Requests served at once; more get a refusal. With MAX_REQUEST this bounds what requests hold in memory.
MAX_CONNECTIONS = 64
# A client has this long to send its request, and each reply this long to be taken by a client.
REQUEST_S = 5.0
# How long an ending agent waits for the replies still being sent.
REPLIES_AT_EXIT_S = 2.0
REPLY_S = 30.0
LISTEN_BACKLOG = 128
# How often the agent looks whether its socket file is still its own (a deleted home ends it).
SOCKET_CHECK_S = 0.5


class Abandoned(Exception):
    """The client of a request has gone (it gave up and reported a failure): do not carry it out."""


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def peer_closed(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class Agent:
    def __init__(self, home: Home) -> None:
        self.home = home
        self.lock = threading.RLock()
        self.buffer: _core.CaptureBuffer | None = None
        self.captures: dict[str, _core.Capture] = {}
        # The largest snap length among the captures whose packets an interface may hold: a file's
        # header must not claim less than its longest record (readers would cut it).
        self.snaplens: dict[str, int] = {}
        self.done = threading.Event()
        # Written to when the agent is to end, so that the accept loop wakes at once, not at its next poll.
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        # One write of a store name at a time; the manifest is read and rewritten by one writer at a time.
        self.writing: dict[str, threading.Lock] = {}
        self.manifest = threading.Lock()
        self.showing = threading.Lock()

    # --- serving ---------------------------------------------------------------------------------

    def serve(self, create_home: bool = True, ready: Callable[[], object] | None = None) -> None:
        """Serve until `cleanup`, a signal, or the socket's removal. An agent launched by a command
        (`create_home=False`) finds its home made for it; if the home is gone by the time it starts (the
        command was interrupted and cleaned up), it has nobody to serve and ends. Another agent already
        serving the home makes this one end at once."""
        if not create_home and not self.home.root.is_dir():
            log.info("%s is gone before the agent started; nothing to do", self.home.root)
            return
        self.home.create()
        # A client that looks whether an agent runs holds the lock for an instant: wait out such looks.
        with self.home.locked(self.home.agent_lock, within=1.0) as mine:
            if not mine:
                raise AgentError(f"an agent already serves {self.home.root}")
            for name in self.home.remove_stray_temporaries():
                log.warning("removed %s, left in the store by a writer that was killed", name)
            listener, inode = self._listen()
            self.home.write_private(self.home.pidfile, f"{os.getpid()}\n")
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, lambda *_: self.finish())
            log.info("agent %d listening on %s", os.getpid(), self.home.socket)
            if ready is not None:
                ready()
            try:
                self._accept(listener, inode)
            finally:
                listener.close()
                self._stop_all()
                self._let_replies_out()
                for path in (self.home.socket, self.home.pidfile):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                log.info("agent %d stopped", os.getpid())

    def _let_replies_out(self) -> None:
        """Wait (briefly) for the requests in flight, such as the `cleanup` that ended us, to send their
        replies: once this thread returns the interpreter exits, and ends the threads still sending."""
        deadline = time.monotonic() + REPLIES_AT_EXIT_S
        for _ in range(MAX_CONNECTIONS):
            if not self.slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
                log.warning("exiting with requests still being answered")
                return

    def finish(self) -> None:
        """End serving (safe from a signal handler): the accept loop wakes now."""
        self.done.set()
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_write, b"x")

    def _accept(self, listener: socket.socket, inode: int) -> None:
        listener.setblocking(False)
        while not self.done.is_set():
            try:
                ready, _, _ = select.select([listener.fileno(), self._wake_read], [], [], SOCKET_CHECK_S)
            except InterruptedError:
                continue
            if not ready:
                # Nobody can reach an agent whose socket was removed (its home deleted): it ends.
                if not self._socket_is_ours(inode):
                    log.warning("%s is gone; stopping", self.home.socket)
                    return
                continue
            if listener.fileno() not in ready:
                continue
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                continue  # another waiter's client gave up between select and accept
            conn.setblocking(True)
            threading.Thread(target=self._serve_one, args=(conn,), daemon=True).start()

    def _socket_is_ours(self, inode: int) -> bool:
        try:
            return os.lstat(self.home.socket).st_ino == inode
        except FileNotFoundError:
            return False

    def _listen(self) -> tuple[socket.socket, int]:
        """A listening socket, put at ``agent.sock`` only once it listens: a client never meets a socket
        that refuses it while an agent starts. What was there (a killed agent's socket) is replaced; only
        the holder of the agent lock does this. Returns the socket and its inode."""
        temp = self.home.root / f".agent.sock.{os.getpid()}"
        temp.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o077)  # the socket is born 0600: no window where others could connect
        try:
            listener.bind(str(temp))
        finally:
            os.umask(old)
        os.chmod(temp, 0o600)
        listener.listen(LISTEN_BACKLOG)
        os.replace(temp, self.home.socket)
        return listener, os.lstat(self.home.socket).st_ino

    def _serve_one(self, sock: socket.socket) -> None:
        conn = Connection(sock, MAX_REQUEST)
        if not self.slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                sock.settimeout(REQUEST_S)
                conn.send(error_reply(AgentError(f"the agent is busy ({MAX_CONNECTIONS} requests at once)")))
            conn.close()
            return
        try:
            self._serve_request(conn)
        except Abandoned as e:
            log.warning("not carried out: %s", e)
        except (OSError, ValueError) as e:
            log.info("connection ended: %s", e)
        except Exception:
            log.exception("request failed")
            with contextlib.suppress(OSError):
                conn.send(error_reply(AgentError("internal error in the agent; see agent.log")))
        finally:
            conn.close()
            self.slots.release()

    def _serve_request(self, conn: Connection) -> None:
        uid = peer_uid(conn.sock)
        if uid not in (0, os.geteuid()):
            log.warning("refused a connection from uid %d", uid)
            conn.send(error_reply(AgentError("the agent serves only its owner (root)")))
            return
        try:
            request = conn.receive(within=REQUEST_S)
        except BadMessage as e:
            conn.send(error_reply(UsageError(f"bad request: {e}")))
            return
        if request is None:
            return
        op = request.get("op")
        deadline = request.get("deadline")
        if isinstance(deadline, int | float) and time.time() > deadline:
            raise Abandoned(f"{op!r} came {time.time() - deadline:.1f} s after its client gave up")
        handler = getattr(self, f"op_{op}", None) if isinstance(op, str) else None
        conn.sock.settimeout(REPLY_S)
        conn.keep_alive(PROGRESS_S)
        try:
            if handler is None:
                raise UsageError(f"unknown request {op!r}", str(op))
            handler(request, conn)
        except PcapdumpError as e:
            conn.send(error_reply(e))

    def _still_wanted(self, conn: Connection, what: str) -> None:
        """Just before an effect: if the client has gone, it reported a failure, so nothing may happen;
        and once a `cleanup` (or a signal) is ending the agent, nothing new happens in it."""
        if peer_closed(conn.sock):
            raise Abandoned(f"{what}: its client has gone")
        if self.done.is_set():
            raise AgentGoneError(f"the agent stopped (cleanup) while this {what} waited; run it again")

    # --- state -----------------------------------------------------------------------------------

    def _running(self) -> list[str]:
        return [n for n, c in self.captures.items() if c.stats()["state"] == "running"]

    def _ensure_buffer(self, size_kb: int | None, ring: bool, size_token: str) -> _core.CaptureBuffer:
        mode = "ring" if ring else "linear"
        current = self.buffer
        if current is not None:
            want = size_kb * 1024 if size_kb is not None else current.size
            if want == current.size and mode == current.mode:
                return current
            if current.held or self._running():
                have = f"{current.size // 1024} KB {current.mode}"
                asked = f"{want // 1024} KB {mode}"
                if size_kb is not None and want != current.size:
                    what, hint = size_token, ""
                elif ring:
                    what, hint = "-ring", ""
                else:  # the word the user left out: the buffer is a ring, the start asks for linear
                    what, hint = "-ring", " (or give -ring again to keep the ring)"
                raise UsageError(
                    f"'{what}': the capture buffer is {have} and holds packets or captures; "
                    f"{asked} needs `pcapdump stop` and `pcapdump wipe` first{hint}",
                    what,
                )
        size_kb = size_kb or (current.size // 1024 if current else _core.DEFAULT_BUFFER_KB)
        # A new buffer: captures of the old one have nothing left to show.
        self.captures.clear()
        self.snaplens.clear()
        self.buffer = None
        self.buffer = _core.CaptureBuffer(size_kb, ring)
        log.info("capture buffer: %d KB %s", size_kb, mode)
        return self.buffer

    def _capture_statuses(
        self, captures: Iterable[tuple[str, _core.Capture]], times: TimeFormat | None = None
    ) -> list[dict[str, Any]]:
        """What captures did and what of them is stored now: `packets`/`bytes` are what the buffer
        holds for the interface (0 after `wipe`, `None` for an `-ou` capture), `captured` what the
        capture took in since it started; the packet its trigger fired on, its brief line in `times`.
        The buffer's interfaces and the links are looked at once for all of them."""
        held = {f["name"]: f for f in self.buffer.interfaces()} if self.buffer else {}
        links = link_states()
        return [self._capture_status(name, cap, held.get(name), links, times) for name, cap in captures]

    def _capture_status(
        self,
        name: str,
        cap: _core.Capture,
        held: BufferInterface | None,
        links: dict[str, str],
        times: TimeFormat | None,
    ) -> dict[str, Any]:
        stats, settings = cap.stats(), cap.settings()
        stored = settings["store"] or (held is not None and held["held"] > 0)
        return {
            "iface": name,
            "state": stats["state"],
            "stop_reason": stats["stop_reason"],
            # A running capture on a link that went down captures nothing until it comes back.
            "link": links.get(name, "gone") if stats["state"] == "running" else None,
            "filter": settings["filter"],
            "snaplen": settings["snaplen"],
            "count": settings["count"],
            "duration": settings["duration"],
            "trigger_words": settings["trigger"],
            "after": settings["after"],
            "trigger": cap.trigger(**(times or {"tz": None, "utc": False, "date": False})),
            "promisc": settings["promisc"],
            "store": settings["store"],
            "captured": stats["packets"],
            "packets": (held["held"] if held else 0) if stored else None,
            "bytes": (held["held_bytes"] if held else 0) if stored else None,
            "kernel_drops": stats["kernel_drops"],
            "buffer_full_drops": stats["buffer_full_drops"],
            "overwritten": stats["overwritten"],
            "live_dropped": stats["live_dropped"],
        }

    def _unknown(self, name: str, request: dict[str, Any]) -> NoSuchInterfaceError:
        """The error for an interface this agent has never heard of: the names it is close to (of this
        namespace, or held in the buffer), and both namespaces when the client is in another one."""
        with self.lock:
            known = [*self.captures, *(f["name"] for f in self._held_interfaces())]
        caller = request.get("netns")
        return no_such_interface(
            name,
            [*(i["name"] for i in _core.interfaces()), *known],
            network_namespace(),
            caller if isinstance(caller, str) else None,
        )

    @staticmethod
    def _exists(name: str) -> bool:
        """Whether an interface of that name is in the agent's network namespace now."""
        return any(i["name"] == name for i in _core.interfaces())

    def _stop_all(self) -> None:
        with self.lock:
            for cap in self.captures.values():
                cap.stop()

    # --- requests --------------------------------------------------------------------------------

    def op_ping(self, request: dict[str, Any], conn: Connection) -> None:
        conn.send({"ok": True, "pid": os.getpid()})

    def op_start(self, request: dict[str, Any], conn: Connection) -> None:
        _text(request, "iface", optional=True)
        live_mode = request.get("live")  # None, "o" or "ou"
        if live_mode not in (None, "o", "ou"):
            raise UsageError(f"live={live_mode!r}: expected None, 'o' or 'ou'", str(live_mode))
        size_kb = _number(request, "size_kb", _core.MIN_BUFFER_KB, _core.MAX_BUFFER_KB, "-size")
        snaplen = _number(request, "snaplen", 1, _core.MAX_SNAPLEN, "-s")
        count = _number(request, "count", 1, _core.MAX_COUNT, "-c")
        _number(request, "duration", _core.MIN_DURATION_S, _core.MAX_DURATION_S, "-duration")
        _number(request, "after", 0, _core.MAX_AFTER, "-after")
        flt = _core.Filter(str(request.get("filter") or ""))
        trigger = _trigger(request)
        # One trigger for every capture of this start: the first match stops them all.
        group = _core.TriggerGroup() if trigger is not None else None
        with self.lock:
            self._still_wanted(conn, "start")
            names = [request["iface"]] if request.get("iface") else up_names()
            if not names:
                raise CaptureError("no interface is up")
            for name in names:
                if name in self._running():
                    raise CaptureError(f"'{name}' is already capturing; `pcapdump stop {name}` first", name)
            had_buffer = self.buffer is not None
            buffer = self._ensure_buffer(
                size_kb, bool(request.get("ring")), request.get("size_token", "-size")
            )
            # Packets an interface's earlier captures left in the buffer stay, counted with the new ones.
            kept = {f["name"]: f["held"] for f in buffer.interfaces()}
            live = (
                _core.LiveLines(json=bool(request.get("json")), **_time_format(request))
                if live_mode
                else None
            )
            opened: list[tuple[str, _core.Capture]] = []
            failed: list[dict[str, Any]] = []
            try:
                # Allocating a big buffer takes seconds: its client may have given up meanwhile.
                self._still_wanted(conn, "start")
                for name in names:
                    try:
                        cap = self._open_capture(
                            name, flt, snaplen, count, request, buffer, live, len(names), (trigger, group)
                        )
                    except PcapdumpError as e:
                        if request.get("iface"):
                            raise
                        failed.append({"iface": name, "error": e.kind, "message": e.message})
                        continue
                    self.captures[name] = cap
                    earlier = self.snaplens.get(name, 0) if kept.get(name) else 0
                    self.snaplens[name] = max(earlier, cap.settings()["snaplen"])
                    opened.append((name, cap))
                    log.info("started %s: filter '%s'", name, flt)
                if not opened:
                    raise CaptureError("; ".join(f["message"] for f in failed) or "nothing started")
                started = [{**s, "kept": kept.get(s["iface"], 0)} for s in self._capture_statuses(opened)]
            except (PcapdumpError, Abandoned):
                if not had_buffer and not self.captures:
                    self.buffer = None  # made for this start alone, which failed: nothing is held in it
                raise
            reply = {
                "ok": True,
                "started": started,
                "failed": failed,
                "buffer": {"size": buffer.size, "mode": buffer.mode},
                "live": live is not None,
            }
        conn.send(reply)
        if live is not None:
            self._stream(live, [s["iface"] for s in started], live_mode == "ou", conn)

    def _open_capture(
        self,
        name: str,
        flt: _core.Filter,
        snaplen: int | None,
        count: int | None,
        request: dict[str, Any],
        buffer: _core.CaptureBuffer,
        live: _core.LiveLines | None,
        together: int,
        trigger: tuple[_core.Filter | None, _core.TriggerGroup | None],
    ) -> _core.Capture:
        try:
            return _core.Capture(
                name,
                flt,
                snaplen or _core.MAX_SNAPLEN,
                count,
                promisc=bool(request.get("promisc")),
                duration=request.get("duration"),
                trigger=trigger[0],
                after=_core.DEFAULT_AFTER if request.get("after") is None else int(request["after"]),
                group=trigger[1],
                buffer=buffer,
                store=request.get("live") != "ou",
                live=live,
                ring_blocks=_core.ring_blocks_each(together),
            )
        except PrivilegeError as e:
            raise PrivilegeError(
                f"the agent (pid {os.getpid()}) cannot capture: it runs without CAP_NET_RAW; "
                "`pcapdump cleanup`, then start again as root",
                name,
            ) from e
        except NoSuchInterfaceError:
            raise self._unknown(name, request) from None

    def _stream(self, live: _core.LiveLines, names: list[str], live_only: bool, conn: Connection) -> None:
        # A reader may pause (a terminal on hold): lines it misses meanwhile are counted, nothing waits.
        conn.sock.settimeout(None)
        try:
            while True:
                line = live.get(LIVE_POLL_S)
                if line is not None:
                    conn.send({"line": line})
                elif live.finished:
                    with self.lock:
                        ended = self._capture_statuses((n, c) for n in names if (c := self.captures.get(n)))
                    conn.send({"end": "stopped", "dropped": live.dropped, "captures": ended})
                    return
                elif peer_closed(conn.sock):
                    break
        except OSError:
            pass
        # The reader is gone (Ctrl-C): an -ou capture keeps nothing, so it ends with its reader.
        if live_only:
            with self.lock:
                for name in names:
                    cap = self.captures.get(name)
                    if cap is not None:
                        cap.stop()
                        log.info("stopped %s: its live reader went away", name)

    def op_stop(self, request: dict[str, Any], conn: Connection) -> None:
        _text(request, "iface", optional=True)
        with self.lock:
            name = request.get("iface")
            if name:
                # A capture that already stopped by itself (count reached) reports its final counters.
                if name not in self.captures:
                    if not self._exists(name):
                        raise self._unknown(name, request)
                    raise CaptureError(f"'{name}' is not capturing", name)
                names = [name]
            else:
                names = self._running()
            self._still_wanted(conn, "stop")
            for n in names:
                self.captures[n].stop()
                log.info("stopped %s", n)
            stopped = self._capture_statuses((n, self.captures[n]) for n in names)
        conn.send({"ok": True, "stopped": stopped})

    def op_interfaces(self, request: dict[str, Any], conn: Connection) -> None:
        conn.send(
            {
                "ok": True,
                "pid": os.getpid(),
                "netns": network_namespace(),
                "interfaces": _core.interfaces(),
            }
        )

    def op_status(self, request: dict[str, Any], conn: Connection) -> None:
        with self.lock:
            b = self.buffer
            status = {
                "agent": {"pid": os.getpid()},
                "buffer": None if b is None else {"size": b.size, "used": b.used, "mode": b.mode},
                "captures": self._capture_statuses(self.captures.items(), _time_format(request)),
            }
        conn.send({"ok": True, "status": {**status, "files": self.home.store_summary()}})

    def _held_interfaces(self) -> list[BufferInterface]:
        return (
            []
            if self.buffer is None
            else [f for f in self.buffer.interfaces() if f["held"] or f["name"] in self.captures]
        )

    def op_show(self, request: dict[str, Any], conn: Connection) -> None:
        names = self._chosen_interfaces(request)
        with self.lock:
            buffer = self.buffer
            held = {f["name"]: f["held"] for f in self._held_interfaces()}
        json, times = bool(request.get("json")), _time_format(request)
        marked = self._trigger_mark()
        mark = marked[0] if marked else None
        # The lines of a buffer take more memory than the buffer: one `show` at a time.
        with self.showing:
            if buffer is None or not names:
                sections: list[tuple[str, int, bytes]] = []
            elif request.get("merge"):
                lines = buffer.merged_lines(names, json, **times, mark=mark)
                sections = [(", ".join(names), sum(held[n] for n in names), lines)]
            else:
                sections = [(n, held[n], buffer.lines(n, json, **times, mark=mark)) for n in names]
            conn.send(
                {
                    "ok": True,
                    "sections": [{"iface": n, "packets": p, "size": len(t)} for n, p, t in sections],
                }
            )
            for _, _, text in sections:
                conn.send_bytes(text)

    def op_conv(self, request: dict[str, Any], conn: Connection) -> None:
        names = self._chosen_interfaces(request)
        flt = _core.Filter(str(request.get("filter") or ""))
        with self.lock:
            buffer = self.buffer
        # Counting walks the whole buffer, as `show` does: one at a time.
        with self.showing:
            if buffer is None or not names:
                report: dict[str, Any] = {"conversations": [], "not_ip": 0, "unattributed": 0}
            else:
                report = buffer.conversations(names, flt if str(flt) else None)
        # A buffer may hold more conversations than one message may carry: they follow as JSON lines,
        # one array of the fields (in the order of `_core.CONVERSATION_FIELDS`) each.
        rows: list[tuple[object, ...]] = report.pop("conversations")
        lines = "".join(json.dumps(row) + "\n" for row in rows).encode()
        conn.send({"ok": True, "ifaces": names, **report, "size": len(lines)})
        conn.send_bytes(lines)

    def _trigger_mark(self) -> tuple[int, str] | None:
        """The buffer sequence number of the packet a trigger fired on, and the comment it carries in a
        pcapng file; `None` when no trigger has fired. Of several starts' triggers, the packet of the one
        that fired last (one packet is marked)."""
        marks = []
        with self.lock:
            for cap in self.captures.values():
                hit = cap.trigger()
                if hit is not None and hit["seq"] is not None:
                    words = cap.settings()["trigger"]
                    marks.append((hit["seq"], f"pcapdump: trigger fired on this packet ({words})"))
        return max(marks, default=None)

    def _chosen_interfaces(self, request: dict[str, Any]) -> list[str]:
        """The interfaces a `write` or `show` names (``ifaces``): a list of names, each once, each with a
        capture or packets; or ``"all"`` (``show``: also none): every interface the buffer holds packets
        of or has a capture on."""
        wanted = request.get("ifaces")
        with self.lock:
            known = [f["name"] for f in self._held_interfaces()]
        if wanted == "all" or (wanted is None and request.get("op") in ("show", "conv")):
            return known
        if not isinstance(wanted, list) or not wanted or not all(isinstance(n, str) and n for n in wanted):
            expected = 'expected "all" or a list of interface names'
            raise UsageError(f"ifaces={wanted!r:.60}: {expected}", "ifaces")
        for at, name in enumerate(wanted):
            if name in wanted[:at]:
                raise UsageError(f"'{name}': named twice (give each interface once)", name)
            if name not in known:
                if not self._exists(name):
                    raise self._unknown(name, request)
                raise CaptureError(f"'{name}': no packets were captured on it", name)
        return list(wanted)

    def op_write(self, request: dict[str, Any], conn: Connection) -> None:
        file = _text(request, "file")
        if not STORE_NAME.fullmatch(file):
            raise UsageError(f"'{file}': not a capture store name", file)
        names = self._chosen_interfaces(request)
        # Several interfaces (or `all`) need pcapng: classic pcap has no interface per packet.
        pcapng = bool(request.get("pcapng")) or request.get("ifaces") == "all" or len(names) > 1
        with self.lock:
            buffer = self.buffer
            snaplens = [self.snaplens.get(n, _core.MAX_SNAPLEN) for n in names]
            captures = [self.captures.get(n) for n in names]
        if buffer is None:
            raise CaptureError("nothing was captured: no capture buffer")
        self.home.create()
        path = self.home.store / file
        with self.lock:
            one_writer = self.writing.setdefault(file, threading.Lock())

        def still_wanted() -> bool:
            return not peer_closed(conn.sock)

        # A second write of the same name waits for the first: each leaves a whole file, the last wins.
        with one_writer:
            if pcapng:
                each = buffer.write_pcapng(
                    names,
                    str(path),
                    snaplens,
                    captures,
                    still_wanted=still_wanted,
                    comment=self._trigger_mark(),
                )
            else:
                one = buffer.write(names[0], str(path), snaplens[0], still_wanted=still_wanted)
                each = None if one is None else [one]
            if each is None:
                raise Abandoned(f"write {file}: its client has gone; the file was not put in place")
            with self.manifest:
                self.home.record_written(file)
        packets, size = sum(p for p, _ in each), sum(b for _, b in each)
        log.info("wrote %s: %d packets of %s", path, packets, ", ".join(names) or "no interface")
        conn.send(
            {
                "ok": True,
                "path": str(path),
                "format": "pcapng" if pcapng else "pcap",
                "packets": packets,
                "bytes": size,
                "interfaces": [
                    {"iface": n, "packets": p, "bytes": b} for n, (p, b) in zip(names, each, strict=True)
                ],
            }
        )

    def op_wipe(self, request: dict[str, Any], conn: Connection) -> None:
        with self.lock:
            self._still_wanted(conn, "wipe")
            held = self.buffer.held if self.buffer else 0
            if self.buffer is not None:
                self.buffer.wipe()
            # Nothing is held now: only the running captures' packets will be.
            self.snaplens = {n: self.captures[n].settings()["snaplen"] for n in self._running()}
        conn.send({"ok": True, "wiped": held})

    def op_cleanup(self, request: dict[str, Any], conn: Connection) -> None:
        with self.lock:
            self._still_wanted(conn, "cleanup")
            stopped = self._running()
            self._stop_all()
            size = self.buffer.size if self.buffer else 0
            self.captures.clear()
            self.buffer = None
            with self.manifest:
                deleted = self.home.empty_store()
            # Under the lock: a request that waited for it finds the agent ending and does nothing.
            self.done.set()
        conn.send({"ok": True, "stopped": stopped, "freed": size, "deleted": deleted})
        self.finish()


def _text(request: dict[str, Any], key: str, optional: bool = False) -> str:
    """A text field of a request; ``""`` for an optional one left out."""
    value = request.get(key)
    if value is None and optional:
        return ""
    if not isinstance(value, str) or not value:
        raise UsageError(f"'{key}': expected a non-empty text, not {value!r:.40}", key)
    return value


def _time_format(request: dict[str, Any]) -> TimeFormat:
    """The caller's time zone and flags: lines are written in the caller's time, not the agent's."""
    given = request.get("time") or {}
    tz, utc, date = given.get("tz"), given.get("utc", False), given.get("date", False)
    if (
        not (tz is None or (isinstance(tz, str) and len(tz) <= MAX_TZ))
        or not isinstance(utc, bool)
        or not isinstance(date, bool)
    ):
        raise UsageError(
            f"time={given!r}: expected a TZ value of at most {MAX_TZ} characters or null, "
            "and utc and date true or false"
        )
    return {"tz": tz, "utc": utc, "date": date}


def _trigger(request: dict[str, Any]) -> _core.Filter | None:
    """The trigger of a start request, as the command line checks it: words that match something, and
    `after` only with them."""
    words = request.get("trigger")
    if words is None:
        if request.get("after") is not None:
            raise UsageError("'-after': -after applies with -trigger <words>", "-after")
        return None
    trigger = _core.Filter(str(words))
    if not str(trigger):
        # No words would fire on the first packet.
        token = f"-trigger {words!r}"
        raise UsageError(f"{token}: expected filter words, such as -trigger 'tcpflags rst'", "-trigger")
    return trigger


def _number(request: dict[str, Any], key: str, low: int, high: int, option: str) -> int | None:
    """A whole number of a request within its bounds (as the command line checks them), or None."""
    value = request.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        token = f"{option} {value}"
        raise UsageError(f"'{token}': expected a whole number {low}…{high}", token)
    return value


def run_foreground(home: Home, create_home: bool = True, ready: Callable[[], object] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s pcapdump-agent %(levelname)s %(message)s")
    Agent(home).serve(create_home, ready)


def detach() -> int:
    """Leave the process that launched us, which ends as soon as the agent listens (exit 0) or fails
    (exit 1, the reason on its standard error): its launcher learns the outcome by waiting for it, and
    the agent lives on as a child of init, never a zombie of a long-lived launcher (a Python program
    using ``Console``). Forking is safe here: this is a fresh interpreter with no thread yet. Returns
    where to report the outcome."""
    read_end, write_end = os.pipe()
    if os.fork() > 0:
        os.close(write_end)
        outcome = b""
        while chunk := os.read(read_end, 4096):
            outcome += chunk
            if outcome == READY:
                os._exit(0)
        reason = outcome[1:].decode(errors="replace") or "the agent ended before it listened"
        os.write(2, reason.encode() + b"\n")
        os._exit(1)
    os.close(read_end)
    os.setsid()
    # The launcher reads its child's standard error: the agent's goes to the log, with its output.
    os.dup2(1, 2)
    return write_end


READY, FAILED = b"1", b"0"


def main() -> None:
    """How a command launches the agent in the background (see Console._launch)."""
    outcome = detach()
    try:
        run_foreground(Home.from_env(), create_home=False, ready=lambda: os.write(outcome, READY))
    except PcapdumpError as e:
        log.error("%s", e)
        os.write(outcome, FAILED + e.message.encode())
        sys.exit(1)


if __name__ == "__main__":
    main()


__all__ = ["Agent", "run_foreground"]
