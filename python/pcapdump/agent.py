"""The agent: the process that owns the capture buffer and the captures between two ``pcapdump`` commands.

It listens on ``$PCAPDUMP_HOME/agent.sock`` (mode 0600, peers of another uid refused), serves one request
per connection in its own thread, and logs to standard error (``agent.log`` when started in the
background, the journal under systemd). All the capture work is the Rust engine's; this is bookkeeping.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import signal
import socket
import struct
import threading
from typing import Any

from . import _core
from .errors import PcapdumpError
from .grammar import MAX_SNAPLEN
from .home import STORE_NAME, Home
from .protocol import Connection

log = logging.getLogger("pcapdump.agent")

DEFAULT_BUFFER_KB = 512
SIOCGIFFLAGS = 0x8913
IFF_UP = 0x1
# How often a live stream looks whether its reader went away while no packet comes.
LIVE_POLL_S = 0.2
# Each capture has its own kernel ring, of unswappable memory. `start` with no interface on a box with
# dozens of them would pin hundreds of MiB at the default size: the interfaces of one start share this
# many blocks, down to a floor per interface.
SHARED_RING_BLOCKS = 64
MIN_RING_BLOCKS = 2


class Refused(Exception):
    """A request the agent will not carry out: ``message`` for the user, ``exit`` 1 (state) or 2 (usage)."""

    def __init__(self, message: str, exit: int = 1) -> None:
        super().__init__(message)
        self.exit = exit


def up_interfaces() -> list[str]:
    """Interfaces of this network namespace whose IFF_UP flag is set, in index order."""
    names = [name for _, name in socket.if_nameindex()]
    up = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for name in names:
            req = struct.pack("16sH14x", name.encode(), 0)
            try:
                flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
            except OSError:
                continue
            if flags & IFF_UP:
                up.append(name)
    return up


def ring_blocks(interfaces: int) -> int:
    """Kernel ring blocks for each of `interfaces` captures started together."""
    return max(MIN_RING_BLOCKS, min(_core.DEFAULT_RING_BLOCKS, SHARED_RING_BLOCKS // max(interfaces, 1)))


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
        self.done = threading.Event()

    # --- serving ---------------------------------------------------------------------------------

    def serve(self, create_home: bool = True) -> None:
        """Serve until `cleanup`, a signal, or the socket's removal. An agent launched by a command
        (`create_home=False`) finds its home made for it; if the home is gone by the time it starts (the
        command was interrupted and cleaned up), it has nobody to serve and ends."""
        if not create_home and not self.home.root.is_dir():
            log.info("%s is gone before the agent started; nothing to do", self.home.root)
            return
        self.home.create()
        listener = self._listen()
        self.home.pidfile.write_text(f"{os.getpid()}\n")
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: self.done.set())
        log.info("agent %d listening on %s", os.getpid(), self.home.socket)
        try:
            listener.settimeout(0.5)
            while not self.done.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    # Nobody can reach an agent whose socket was removed (its home deleted): it ends.
                    if not self.home.socket.exists():
                        log.warning("%s is gone; stopping", self.home.socket)
                        break
                    continue
                conn.settimeout(None)
                threading.Thread(target=self._serve_one, args=(conn,), daemon=True).start()
        finally:
            listener.close()
            self._stop_all()
            for path in (self.home.socket, self.home.pidfile):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            log.info("agent %d stopped", os.getpid())

    def _listen(self) -> socket.socket:
        path = str(self.home.socket)
        if self.home.socket.exists():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.settimeout(2)
                probe.connect(path)
                raise PcapdumpError(f"an agent is already listening on {path}")
            except (ConnectionRefusedError, FileNotFoundError):
                log.info("removing the stale socket of a dead agent: %s", path)
                self.home.socket.unlink(missing_ok=True)
            finally:
                probe.close()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o077)  # the socket is born 0600: no window where others could connect
        try:
            listener.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        listener.listen(16)
        return listener

    def _serve_one(self, sock: socket.socket) -> None:
        conn = Connection(sock)
        try:
            uid = peer_uid(sock)
            if uid not in (0, os.geteuid()):
                log.warning("refused a connection from uid %d", uid)
                conn.send({"ok": False, "error": "the agent serves only its owner (root)", "exit": 1})
                return
            request = conn.receive()
            if request is None:
                return
            op = request.get("op")
            handler = getattr(self, f"op_{op}", None) if isinstance(op, str) else None
            if handler is None:
                conn.send({"ok": False, "error": f"unknown request {op!r}", "exit": 2})
                return
            try:
                handler(request, conn)
            except Refused as e:
                conn.send({"ok": False, "error": str(e), "exit": e.exit})
            except PcapdumpError as e:
                conn.send({"ok": False, "error": str(e), "exit": 1})
        except (OSError, ValueError) as e:
            log.info("connection ended: %s", e)
        except Exception:
            log.exception("request failed")
            with contextlib.suppress(OSError):
                conn.send({"ok": False, "error": "internal error in the agent; see agent.log", "exit": 1})
        finally:
            conn.close()

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
                what = (
                    size_token
                    if size_kb is not None and want != current.size
                    else ("-ring" if ring else "linear")
                )
                raise Refused(
                    f"'{what}': the capture buffer is {have} and holds packets or captures; "
                    f"{asked} needs `pcapdump stop` and `pcapdump wipe` first",
                    exit=2,
                )
        size = (size_kb or (current.size // 1024 if current else DEFAULT_BUFFER_KB)) * 1024
        # A new buffer: captures of the old one have nothing left to show.
        self.captures.clear()
        self.buffer = None
        self.buffer = _core.CaptureBuffer(size, ring)
        log.info("capture buffer: %d KB %s", size // 1024, mode)
        return self.buffer

    def _capture_status(self, name: str, cap: _core.Capture) -> dict[str, Any]:
        stats, settings = cap.stats(), cap.settings()
        return {
            "iface": name,
            "state": stats["state"],
            "stop_reason": stats["stop_reason"],
            "filter": settings["filter"],
            "snaplen": settings["snaplen"],
            "count": settings["count"],
            "promisc": settings["promisc"],
            "store": settings["store"],
            "packets": stats["packets"],
            "bytes": stats["bytes"],
            "kernel_drops": stats["kernel_drops"],
            "buffer_full_drops": stats["buffer_full_drops"],
            "overwritten": stats["overwritten"],
            "live_dropped": stats["live_dropped"],
        }

    def _stop_all(self) -> None:
        with self.lock:
            for cap in self.captures.values():
                cap.stop()

    # --- requests --------------------------------------------------------------------------------

    def op_ping(self, request: dict[str, Any], conn: Connection) -> None:
        conn.send({"ok": True, "pid": os.getpid()})

    def op_start(self, request: dict[str, Any], conn: Connection) -> None:
        live_mode = request.get("live")  # None, "o" or "ou"
        with self.lock:
            names = [request["iface"]] if request.get("iface") else up_interfaces()
            if not names:
                raise Refused("no interface is up")
            for name in names:
                if name in self._running():
                    raise Refused(f"'{name}' is already capturing; `pcapdump stop {name}` first")
            buffer = self._ensure_buffer(
                request.get("size_kb"), bool(request.get("ring")), request.get("size_token", "-size")
            )
            flt = _core.Filter(request.get("filter") or "")
            live = _core.LiveLines(json=bool(request.get("json"))) if live_mode else None
            started, failed = [], []
            for name in names:
                try:
                    cap = _core.Capture(
                        name,
                        flt,
                        request.get("snaplen") or MAX_SNAPLEN,
                        request.get("count"),
                        promisc=bool(request.get("promisc")),
                        buffer=buffer,
                        store=live_mode != "ou",
                        live=live,
                        ring_blocks=ring_blocks(len(names)),
                    )
                except PcapdumpError as e:
                    if request.get("iface"):
                        raise
                    failed.append({"iface": name, "error": str(e)})
                    continue
                self.captures[name] = cap
                started.append(self._capture_status(name, cap))
                log.info("started %s: filter '%s'", name, flt)
            if not started:
                raise Refused("; ".join(f["error"] for f in failed) or "nothing started")
            conn.send(
                {
                    "ok": True,
                    "started": started,
                    "failed": failed,
                    "buffer": {"size": buffer.size, "mode": buffer.mode},
                    "live": live is not None,
                }
            )
        if live is not None:
            self._stream(live, [s["iface"] for s in started], live_mode == "ou", conn)

    def _stream(self, live: _core.LiveLines, names: list[str], live_only: bool, conn: Connection) -> None:
        try:
            while True:
                line = live.get(LIVE_POLL_S)
                if line is not None:
                    conn.send({"line": line})
                elif live.finished:
                    with self.lock:
                        ended = [self._capture_status(n, c) for n in names if (c := self.captures.get(n))]
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
        with self.lock:
            name = request.get("iface")
            if name:
                # A capture that already stopped by itself (count reached) reports its final counters.
                if name not in self.captures:
                    raise Refused(f"'{name}' is not capturing")
                names = [name]
            else:
                names = self._running()
            for n in names:
                self.captures[n].stop()
                log.info("stopped %s", n)
            conn.send({"ok": True, "stopped": [self._capture_status(n, self.captures[n]) for n in names]})

    def op_status(self, request: dict[str, Any], conn: Connection) -> None:
        with self.lock:
            b = self.buffer
            conn.send(
                {
                    "ok": True,
                    "status": {
                        "buffer": None if b is None else {"size": b.size, "used": b.used, "mode": b.mode},
                        "captures": [self._capture_status(n, c) for n, c in self.captures.items()],
                        "files": self.home.store_summary(),
                    },
                }
            )

    def _held_interfaces(self) -> list[dict[str, Any]]:
        return (
            []
            if self.buffer is None
            else [f for f in self.buffer.interfaces() if f["held"] or f["name"] in self.captures]
        )

    def op_show(self, request: dict[str, Any], conn: Connection) -> None:
        name = request.get("iface")
        with self.lock:
            buffer = self.buffer
            known = {f["name"]: f for f in self._held_interfaces()}
        if name and name not in known:
            raise Refused(f"'{name}': no packets were captured on it")
        texts = [
            (f, buffer.lines(f["name"], bool(request.get("json"))) if buffer else b"")
            for f in ([known[name]] if name else known.values())
        ]
        conn.send(
            {
                "ok": True,
                "sections": [{"iface": f["name"], "packets": f["held"], "size": len(t)} for f, t in texts],
            }
        )
        for _, text in texts:
            conn.send_bytes(text)

    def op_write(self, request: dict[str, Any], conn: Connection) -> None:
        name, file = request["iface"], request["file"]
        if not STORE_NAME.fullmatch(file):
            raise Refused(f"'{file}': not a capture store name", exit=2)
        with self.lock:
            buffer = self.buffer
            known = {f["name"] for f in self._held_interfaces()}
            cap = self.captures.get(name)
        if buffer is None or name not in known:
            raise Refused(f"'{name}': no packets were captured on it")
        snaplen = cap.settings()["snaplen"] if cap is not None else MAX_SNAPLEN
        self.home.create()
        path = self.home.store / file
        packets, size = buffer.write(name, str(path), snaplen)
        log.info("wrote %s: %d packets", path, packets)
        conn.send({"ok": True, "path": str(path), "packets": packets, "bytes": size})

    def op_wipe(self, request: dict[str, Any], conn: Connection) -> None:
        with self.lock:
            held = self.buffer.held if self.buffer else 0
            if self.buffer is not None:
                self.buffer.wipe()
        conn.send({"ok": True, "wiped": held})

    def op_cleanup(self, request: dict[str, Any], conn: Connection) -> None:
        with self.lock:
            stopped = self._running()
            self._stop_all()
            size = self.buffer.size if self.buffer else 0
            self.captures.clear()
            self.buffer = None
            deleted = self.home.empty_store()
        conn.send({"ok": True, "stopped": stopped, "freed": size, "deleted": deleted})
        self.done.set()


def run_foreground(home: Home, create_home: bool = True) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s pcapdump-agent %(levelname)s %(message)s")
    Agent(home).serve(create_home)


if __name__ == "__main__":
    # How a command launches the agent in the background (see Console._ensure_agent).
    run_foreground(Home.from_env(), create_home=False)


__all__ = ["Agent", "Refused", "run_foreground", "up_interfaces"]
