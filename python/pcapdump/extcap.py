"""The Wireshark extcap program (docs/wireshark.md): Wireshark and tshark list pcapdump's interfaces
and capture from them through it.

Interfaces: ``local:<if>`` for each interface of this machine (captured in this process) and
``<datasource>:<gateway>`` for each gateway of the fwctl inventory (``pcapdump … stream <if>`` run
there over SSH, the host key checked as fwctl checks it). Wireshark calls the program with
``--extcap-interfaces``, ``--extcap-dlts``, ``--extcap-config``, ``--extcap-capture-filter`` (an
empty answer means valid; else the first line says what is wrong) and ``--capture --fifo <pipe>``;
it ends a capture with SIGTERM or by closing the pipe.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import select
import shlex
import signal
import stat
import sys
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from . import __version__, _core, inventory, sshroute, stream
from .errors import EXIT_RUNTIME, EXIT_USAGE, FilterError, InventoryError, PcapdumpError, UsageError
from .grammar import IFACE_NAME, IFACE_NAME_RULE

PROGRAM = "pcapdump-extcap"
# How often a gateway capture looks whether Wireshark left while nothing flows: the engine's wait slice.
WAIT_SLICE_S = _core.WAIT_SLICE_S
# After SIGTERM, how long the gateway's stream has to send what it kept and its statistics: as long as
# a stream waits for its reader once stopped.
STOP_GRACE_S = _core.STREAM_DRAIN_GRACE_S
# A capture that failed early waits this long for Wireshark to open its pipe, to close it.
FIFO_RELEASE_S = 5.0
# The first bytes of any pcapng stream: a section header block.
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
T = TypeVar("T")
# Wireshark ends a capture with SIGTERM; a terminal with SIGINT or SIGHUP.
_STOPPING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
LOCAL = inventory.LOCAL
# The link type Wireshark is told for a gateway before the stream's own interface block says it.
ETHERNET = (1, "EN10MB", "Ethernet")
DEFAULT_REMOTE_IFACE = "int"
# A launcher we wrote says so on its second line: `uninstall` removes nothing else.
MARK = "# pcapdump extcap launcher"


class _Usage(argparse.ArgumentParser):
    """Wireshark's arguments; a mistake is a UsageError (one line), not argparse's exit."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{PROGRAM}: {message}")


def _parser() -> argparse.ArgumentParser:
    # Whole option names only: `--help` must not be taken for `--help-file`.
    p = _Usage(prog=PROGRAM, add_help=False, allow_abbrev=False)
    p.add_argument("-h", "--help", action="store_true")
    for flag in ("--extcap-interfaces", "--extcap-dlts", "--extcap-config", "--capture"):
        p.add_argument(flag, action="store_true")
    p.add_argument("--extcap-interface")
    p.add_argument("--extcap-version")
    p.add_argument("--extcap-capture-filter")
    p.add_argument("--fifo")
    # Wireshark passes these when its extcap debugging is on.
    p.add_argument("--debug", action="store_true")
    p.add_argument("--debug-file")
    # Put there by the launcher `install` writes: the page of the Help button.
    p.add_argument("--help-file")
    p.add_argument("--filter-words", default="")
    p.add_argument("--snaplen", type=int)
    p.add_argument("--promisc", action="store_true")
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--duration", type=int, default=0)
    p.add_argument("--remote-interface", default=DEFAULT_REMOTE_IFACE)
    p.add_argument("--keep-ssh", action="store_true")
    return p


@dataclass(frozen=True)
class Target:
    """What an extcap interface name means: an interface here, or a gateway of the inventory."""

    name: str
    iface: str | None = None
    gateway: inventory.Gateway | None = None


def resolve(name: str) -> Target:
    source, sep, rest = name.partition(":")
    if not sep:
        raise UsageError(
            f"'{name}': not a pcapdump interface (expected {LOCAL}:<if> or <datasource>:<gateway>)", name
        )
    if source == LOCAL:
        if not IFACE_NAME.fullmatch(rest):
            raise UsageError(f"'{name}': {rest!r} is not an interface name ({IFACE_NAME_RULE})", name)
        return Target(name, iface=rest)
    if rest == "*":
        raise UsageError(f"'{name}': one gateway at a time (no *)", name)
    return Target(name, gateway=inventory.resolve(name)[0])


def _field(text: object) -> str:
    """A value inside `{…}`: the braces and line ends would end it early."""
    return "".join(c for c in str(text) if c not in "{}\r\n" and c.isprintable())


def interface_lines(help_file: str | None) -> list[str]:
    """``--extcap-interfaces``: the program (and its help page), then each interface. A broken
    inventory does not hide the local interfaces: it is said on standard error."""
    shown = f"{{help={Path(help_file).as_uri()}}}" if help_file and Path(help_file).is_absolute() else ""
    lines = [f"extcap {{version={__version__}}}{shown}"]
    for i in _core.interfaces():
        if _field(i["name"]) != i["name"]:
            # Wireshark would call it back by another name, maybe another interface's.
            print(f"{PROGRAM}: {i['name']!r}: not listed: braces or controls in its name", file=sys.stderr)
            continue
        addresses = ", ".join(i["addresses"]) or "no address"
        lines.append(
            f"interface {{value={LOCAL}:{_field(i['name'])}}}"
            f"{{display=pcapdump: {_field(i['name'])} ({_field(addresses)})}}"
        )
    try:
        sources = inventory.load() if inventory.inventory_path().exists() else {}
    except InventoryError as e:
        print(f"{PROGRAM}: gateways not listed: {e}", file=sys.stderr)
        sources = {}
    for gateways in sources.values():
        for gw in gateways.values():
            if _field(gw.label) != gw.label or gw.label.count(":") != 1 or gw.label.startswith(("-", ":")):
                # Wireshark would call it back by another name.
                print(f"{PROGRAM}: {gw.label!r}: not listed: its name cannot be given back as an interface "
                      "(braces, colons, controls, or a leading dash)", file=sys.stderr)  # fmt: skip
                continue
            lines.append(
                f"interface {{value={_field(gw.label)}}}"
                f"{{display=pcapdump: gateway {_field(gw.label)} ({_field(gw.user)}@{_field(gw.host)})}}"
            )
    return lines


def dlt_lines(target: Target) -> list[str]:
    number, name, display = ETHERNET
    if target.iface is not None:
        found = next((i for i in _core.interfaces() if i["name"] == target.iface), None)
        if found is None:
            raise PcapdumpError(f"'{target.name}': no such interface here")
        number, name = found["linktype"], found["linktype_name"] or f"LINKTYPE_{found['linktype']}"
        display = f"{name} ({target.iface})"
    return [f"dlt {{number={number}}}{{name={name}}}{{display={display}}}"]


@dataclass(frozen=True)
class _Arg:
    """One option of Wireshark's capture dialog for our interfaces."""

    call: str
    display: str
    kind: str  # extcap's argument type
    tooltip: str
    extra: str = ""  # range, default, required
    gateway_only: bool = False


_CONFIG = (
    _Arg("--filter-words", "Filter words", "string",
         "pcapdump filter words, e.g. udp port 53 not ip 198.18.0.9 (the capture filter field takes them "
         "too; both apply)"),
    _Arg("--snaplen", "Snap length", "integer", "keep at most this many bytes of each packet",
         f"{{range=1,{_core.MAX_SNAPLEN}}}{{default={_core.MAX_SNAPLEN}}}"),
    _Arg("--promisc", "Promiscuous mode", "boolflag", "also see packets not addressed to the interface",
         "{default=false}"),
    _Arg("--count", "Stop after (packets)", "integer", "0: no limit", "{range=0,2147483647}{default=0}"),
    _Arg("--duration", "Stop after (seconds)", "integer", "0: no limit",
         f"{{range=0,{_core.MAX_DURATION_S}}}{{default=0}}"),
    _Arg("--remote-interface", "Gateway interface", "string", "the interface to capture on the gateway",
         f"{{default={DEFAULT_REMOTE_IFACE}}}{{required=true}}", gateway_only=True),
    _Arg("--keep-ssh", "Capture this SSH session too", "boolflag",
         "the SSH connection the capture travels over is left out unless this is set", "{default=false}",
         gateway_only=True),
)  # fmt: skip


def config_lines(target: Target) -> list[str]:
    args = [a for a in _CONFIG if target.gateway is not None or not a.gateway_only]
    return [
        f"arg {{number={n}}}{{call={a.call}}}{{display={a.display}}}{{type={a.kind}}}"
        f"{{tooltip={a.tooltip}}}{a.extra}"
        for n, a in enumerate(args)
    ]


def help_text() -> str:
    """The page Wireshark's Help button opens (written beside the launcher by ``install``)."""
    options = [f"  {a.display}{' (gateways)' if a.gateway_only else ''}: {a.tooltip}" for a in _CONFIG]
    return "\n".join(
        [
            f"pcapdump {__version__}: live capture in Wireshark ({MARK[2:]} help)",
            "",
            f"Interfaces: {LOCAL}:<if> is an interface of this machine; <datasource>:<gateway> is a",
            "gateway of the fwctl inventory, captured over SSH by `pcapdump stream` there.",
            "",
            "Options of the capture dialog:",
            *options,
            "",
            "The capture filter field takes pcapdump's filter words (tcp port 80 not ip 198.18.0.9).",
            "Run `pcapdump help` for every filter word, and `pcapdump help stream`.",
            "",
        ]
    )


def filter_words(opts: argparse.Namespace) -> _core.Filter:
    """The config's filter words and Wireshark's capture filter, both applying (a bad word names it)."""
    tokens = opts.filter_words.split() + (opts.extcap_capture_filter or "").split()
    try:
        return _core.Filter(tokens)
    except FilterError as e:
        raise UsageError(e.message, e.token) from None


def check_filter(text: str) -> str:
    """``--extcap-capture-filter``: nothing for words that parse, else the line that says what is wrong."""
    try:
        _core.Filter(text.split())
    except FilterError as e:
        return e.message
    return ""


def _bounded(opts: argparse.Namespace) -> tuple[int | None, int | None, int | None]:
    """Snap length, count and duration as the config gave them (0: none), checked."""
    for name, value, high in (
        ("--snaplen", opts.snaplen, _core.MAX_SNAPLEN),
        ("--count", opts.count, _core.MAX_COUNT),
        ("--duration", opts.duration, _core.MAX_DURATION_S),
    ):
        low = 1 if name == "--snaplen" else 0
        if value is not None and not low <= value <= high:
            raise UsageError(f"'{name} {value}': expected {low}…{high}", name)
    return opts.snaplen, opts.count or None, opts.duration or None


# Whether this run opened Wireshark's pipe: a failure after that is told by its closing, and the pipe
# must not be opened again.
_fifo_opened = False


def _open_fifo(path: str) -> int:
    """Wireshark's pipe, open for writing (once Wireshark has opened it for reading). It is opened
    before anything can fail: Wireshark waits for it to open, and then takes its closing with an error
    on standard error for the end of the capture."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise PcapdumpError(f"'{path}': cannot open Wireshark's pipe: {e.strerror}") from None
    global _fifo_opened
    _fifo_opened = True
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        os.close(fd)
        raise PcapdumpError(f"'{path}': not a pipe (--fifo names the pipe Wireshark reads)")
    os.set_blocking(fd, False)
    return fd


def capture_local(target: Target, opts: argparse.Namespace, fd: int) -> int:
    assert target.iface is not None
    snaplen, count, duration = _bounded(opts)
    flt = filter_words(opts)
    # Nothing on standard error when all went well: Wireshark shows whatever comes there as an error.
    stream.run(
        target.iface,
        fd,
        stream.Plan(flt if str(flt) else None, None),
        snaplen=snaplen,
        count=count,
        duration=duration,
        promisc=opts.promisc,
        name=opts.fifo,
    )
    return 0


def remote_command(gw: inventory.Gateway, opts: argparse.Namespace) -> str:
    """The command line the gateway runs: its pcapdump, the options, the filter in canonical words."""
    snaplen, count, duration = _bounded(opts)
    iface = opts.remote_interface
    if not IFACE_NAME.fullmatch(iface):
        raise UsageError(f"'--remote-interface {iface}': not an interface name ({IFACE_NAME_RULE})", iface)
    words = [gw.pcapdump]
    words += ["-s", str(snaplen)] if snaplen else []
    words += ["-c", str(count)] if count else []
    words += ["-duration", str(duration)] if duration else []
    words += ["-p"] if opts.promisc else []
    words += ["-keepssh"] if opts.keep_ssh else []
    words += str(filter_words(opts)).split()
    # The shell says its process id, then becomes pcapdump (same id): a stop is then a `kill -TERM`
    # of it over the same connection. sshd passes SSH signal requests on only to sessions of users
    # other than root, and closing the session would cut the stream's last packets and statistics.
    return f"echo $$ >&2; exec {shlex.join([*words, 'stream', iface])}"


async def _write_all(fd: int, data: bytes) -> bool:
    """Write to the (non-blocking) pipe, waiting for room; false once Wireshark closed it."""
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            room = loop.create_future()
            loop.add_writer(fd, room.set_result, None)
            try:
                await room
            finally:
                loop.remove_writer(fd)
        except BrokenPipeError:
            return False
    return True


class _Remote:
    """The gateway's stream: its process id (the first line on its standard error) and what else it
    said there."""

    def __init__(self, process: Any) -> None:
        self.process = process
        self.pid: int | None = None
        self.said: list[str] = []
        # The stream's first bytes, once they came.
        self.first: bytes | None = None

    async def collect(self) -> None:
        async for line in self.process.stderr:
            text = line.decode(errors="replace").rstrip()
            if self.pid is None and not self.said and text.isdigit():
                self.pid = int(text)
            elif text:
                self.said.append(text)

    async def stop(self, conn: Any) -> None:
        """Ask the stream to end: it then writes what it kept and its statistics block."""
        with contextlib.suppress(Exception):
            self.process.send_signal("TERM")
        if self.pid is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.run(f"kill -TERM {self.pid}", check=False), STOP_GRACE_S)


def _reader_left(fd: int) -> bool:
    """Wireshark closed its end of the pipe: poll says so without writing anything."""
    poller = select.poll()
    poller.register(fd, 0)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


async def _reader_gone(fd: int) -> None:
    while not _reader_left(fd):
        await asyncio.sleep(WAIT_SLICE_S)


async def _relay(remote: _Remote, conn: Any, fd: int, stop: asyncio.Event) -> bool:
    """Copy the gateway's stream to the pipe: true once it ended (its end of file), false once Wireshark
    left, or a stop was asked for and the gateway did not end within ``STOP_GRACE_S``. A stop asks the
    gateway's stream to end, which then writes what it kept and its statistics block."""
    loop = asyncio.get_running_loop()
    gone = asyncio.ensure_future(_reader_gone(fd))
    stopping = asyncio.ensure_future(stop.wait())
    reading: asyncio.Future[bytes] | None = None
    deadline: float | None = None
    try:
        while True:
            if reading is None:
                reading = asyncio.ensure_future(remote.process.stdout.read(1 << 16))
            waiting: set[asyncio.Future[Any]] = {reading, gone}
            if deadline is None:
                waiting.add(stopping)
            left = None if deadline is None else max(0.0, deadline - loop.time())
            done, _ = await asyncio.wait(waiting, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            if gone in done:
                return False
            if stopping in done and deadline is None:
                await remote.stop(conn)
                deadline = loop.time() + STOP_GRACE_S
            if reading in done:
                chunk, reading = reading.result(), None
                if not chunk:
                    return True
                if remote.first is None:
                    remote.first = chunk[:16]
                    if not chunk.startswith(PCAPNG_MAGIC[: len(chunk)]):
                        raise PcapdumpError(
                            f"the gateway's stream is not pcapng (it began with {chunk[:16]!r}): does a "
                            "login script write to standard output?"
                        )
                if not await _write_all(fd, chunk):
                    return False
            elif deadline is not None and loop.time() >= deadline:
                return False
    finally:
        for f in (reading, gone, stopping):
            if f is not None:
                f.cancel()


async def _until(stop: asyncio.Event, coro: Coroutine[Any, Any, T]) -> T | None:
    """``coro``'s result, or ``None`` if a stop is asked for first (``coro`` is then cancelled)."""
    work, stopping = asyncio.ensure_future(coro), asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
        return work.result() if work.done() else None
    finally:
        work.cancel()
        stopping.cancel()


async def capture_remote(gw: inventory.Gateway, opts: argparse.Namespace, fd: int) -> int:
    """Run ``pcapdump … stream`` on the gateway and copy its pcapng to Wireshark's pipe until it ends,
    Wireshark closes the pipe, or SIGTERM (the gateway's stream is then asked to end, so that its last
    packets and statistics still come); then close the session, which ends the stream if it has not.
    What the gateway says on standard error is passed on when it fails (Wireshark shows any of it as an
    error)."""
    import asyncssh

    from . import fwctl  # first: it imports asyncssh its own way

    command = remote_command(gw, opts)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in _STOPPING:
        loop.add_signal_handler(sig, stop.set)
    # The user's ~/.ssh/config applies, as for fwctl: a gateway behind a bastion is reached the same way.
    watchdog = fwctl.Watchdog(gw, fwctl.DEFAULT_TIMEOUT_S, sshroute.config_file(None))
    try:
        conn = await _until(stop, watchdog.run(watchdog.connect()))
        if conn is None:
            return 0
        async with conn:
            remote = _Remote(await conn.create_process(command, encoding=None))
            collect = asyncio.ensure_future(remote.collect())
            try:
                if not await _relay(remote, conn, fd, stop) or stop.is_set():
                    return 0
                await remote.process.wait_closed()
                await collect
            finally:
                remote.process.close()
                collect.cancel()
    except (asyncssh.Error, OSError, TimeoutError, ValueError) as e:
        raise watchdog.failure(e) from None
    except PcapdumpError as e:
        raise PcapdumpError(f"{gw.label}: {e}") from None
    process = remote.process
    if process.exit_status == 0 and remote.first is not None:
        return 0
    if process.exit_status == 0:
        print(f"pcapdump: {gw.label}: the gateway's stream ended without sending anything", file=sys.stderr)
    elif process.exit_signal:
        print(f"pcapdump: {gw.label}: the gateway's stream was killed (signal {process.exit_signal[0]})",
              file=sys.stderr)  # fmt: skip
    else:
        # The last thing the gateway's pcapdump said: its error, or its final counters.
        said = (
            remote.said[-1]
            if remote.said
            else f"the gateway's stream ended with status {process.exit_status}"
        )
        print(f"pcapdump: {gw.label}: {said}", file=sys.stderr)
    return EXIT_RUNTIME


def capture(opts: argparse.Namespace) -> int:
    if not opts.fifo:
        raise UsageError(f"{PROGRAM}: --capture needs --fifo <pipe>", "--capture")
    fd = _open_fifo(opts.fifo)
    try:
        target = resolve(opts.extcap_interface)
        if target.gateway is None:
            return capture_local(target, opts, fd)
        return asyncio.run(capture_remote(target.gateway, opts, fd))
    except PcapdumpError as e:
        # Said while the pipe is still open: Wireshark stops the program once the pipe closes, and
        # takes what it said until then for the error.
        return _report(e)
    finally:
        os.close(fd)


# Options whose value may start with a dash (`--filter-words -tcp`, pcapdump's newer spelling).
_VALUED = ("--filter-words", "--extcap-capture-filter", "--remote-interface", "--fifo")


def _joined(argv: Sequence[str]) -> list[str]:
    """``--opt value`` as ``--opt=value`` for the options above, so that a value starting with a dash
    is taken as the value it is."""
    out: list[str] = []
    it = iter(argv)
    for word in it:
        if word in _VALUED:
            value = next(it, None)
            out.append(word if value is None else f"{word}={value}")
        else:
            out.append(word)
    return out


def _release_fifo(argv: Sequence[str]) -> None:
    """A capture that failed before it opened Wireshark's pipe: open and close it, or Wireshark (which
    waits for it to open) would wait for ever. Only a pipe, only without blocking."""
    words = _joined(argv)
    path = next((w.split("=", 1)[1] for w in words if w.startswith("--fifo=")), None)
    if "--capture" not in words or path is None or _fifo_opened:
        return
    with contextlib.suppress(OSError):
        if stat.S_ISFIFO(os.stat(path).st_mode):
            deadline = time.monotonic() + FIFO_RELEASE_S
            while time.monotonic() < deadline:
                try:
                    os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC))
                    return
                except OSError:  # ENXIO: Wireshark has not opened it yet
                    time.sleep(0.05)


def run(argv: Sequence[str]) -> int:
    opts = _parser().parse_args(_joined(argv))
    if opts.help:
        print(
            f"{PROGRAM}: Wireshark's extcap program for pcapdump.\n"
            f"Install it with `pcapdump extcap install`; Wireshark then runs it with --extcap-interfaces,\n"
            "--extcap-interface <name> --extcap-dlts | --extcap-config | --extcap-capture-filter <words>,\n"
            "and --extcap-interface <name> --capture --fifo <pipe> [--filter-words <words>] [--snaplen <n>]\n"
            "[--promisc] [--count <n>] [--duration <s>] [--remote-interface <if>] [--keep-ssh]."
        )
        return 0
    if opts.extcap_interfaces:
        print("\n".join(interface_lines(opts.help_file)))
        return 0
    if not opts.extcap_interface:
        raise UsageError(f"{PROGRAM}: expected --extcap-interfaces, or --extcap-interface <name> and more")
    if opts.extcap_capture_filter is not None and not opts.capture:
        resolve(opts.extcap_interface)
        # Wireshark takes any output at all, a bare line end too, for "invalid".
        if problem := check_filter(opts.extcap_capture_filter):
            print(problem)
        return 0
    target = resolve(opts.extcap_interface)
    if opts.extcap_dlts:
        print("\n".join(dlt_lines(target)))
        return 0
    if opts.extcap_config:
        print("\n".join(config_lines(target)))
        return 0
    if opts.capture:
        return capture(opts)
    raise UsageError(f"{PROGRAM}: expected --extcap-dlts, --extcap-config or --capture")


def _report(e: PcapdumpError) -> int:
    """One line on standard error, flushed at once; the exit status of the error."""
    print(f"pcapdump: {e.message if isinstance(e, UsageError) else e}", file=sys.stderr, flush=True)
    return EXIT_USAGE if isinstance(e, UsageError) else e.exit_code


def main(argv: Sequence[str] | None = None) -> None:
    """The entry point Wireshark runs: errors are one line on standard error and a non-zero exit."""
    words = sys.argv[1:] if argv is None else argv
    try:
        code = run(words)
    except PcapdumpError as e:
        code = _report(e)
    except KeyboardInterrupt:
        code = 0
    if code != 0:
        _release_fifo(words)
    sys.stdout.flush()
    sys.exit(code)


# --- install / uninstall -------------------------------------------------------------------------


def personal_folder() -> tuple[Path, str]:
    """Where this machine's Wireshark looks for personal extcap programs, and how that was found:
    Wireshark itself (``tshark -G folders``) when it is installed, else its documented default."""
    import shutil
    import subprocess

    tshark = shutil.which("tshark")
    if tshark:
        try:
            out = subprocess.run(
                [tshark, "-G", "folders"], capture_output=True, text=True, timeout=30, check=False
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        folders = dict(
            (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in out.splitlines()) if v
        )
        if folders.get("Personal Extcap path"):
            return Path(folders["Personal Extcap path"]), "the personal extcap folder tshark -G folders names"
        if folders.get("Personal configuration"):
            # Wireshark before 4.1 looks in the personal configuration folder's extcap/.
            return (
                Path(folders["Personal configuration"]) / "extcap",
                "Wireshark before 4.1: extcap/ in the personal configuration folder tshark -G folders names",
            )
    if sys.platform == "win32":
        return Path(
            os.environ.get("APPDATA", Path.home())
        ) / "Wireshark" / "extcap", "Wireshark's default folder"
    version = _wireshark_version()
    if version is not None and version < (4, 1):
        # Wireshark before 4.1 looks in extcap/ of its personal configuration folder.
        shown = ".".join(map(str, version))
        return Path.home() / ".config" / "wireshark" / "extcap", f"Wireshark {shown}'s personal folder"
    return (
        Path.home() / ".local" / "lib" / "wireshark" / "extcap",
        "Wireshark's default folder (4.1 and later)",
    )


def _wireshark_version() -> tuple[int, int] | None:
    """The version of this machine's Wireshark, from whichever of its programs is here (dumpcap comes
    with every Wireshark; tshark not always)."""
    import re
    import shutil
    import subprocess

    for program in ("dumpcap", "wireshark", "tshark"):
        path = shutil.which(program)
        if path is None:
            continue
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        if m := re.search(r"\(Wireshark\) (\d+)\.(\d+)", out):
            return int(m[1]), int(m[2])
    return None


def _launcher(folder: Path) -> tuple[str, str, str]:
    """The launcher's file name and text (this Python running this module, whatever PATH says), and
    the help page's name beside it."""
    page = f"{PROGRAM}.txt"
    if sys.platform == "win32":
        call = f'"{sys.executable}" -m pcapdump.extcap --help-file "{folder / page}" %*'
        text = f"@echo off\r\nREM {MARK[2:]}\r\n{call}\r\n"
        return f"{PROGRAM}.bat", text, page
    command = shlex.join([sys.executable, "-m", "pcapdump.extcap", "--help-file", str(folder / page)])
    return PROGRAM, f'#!/bin/sh\n{MARK}\nexec {command} "$@"\n', page


def install() -> str:
    folder, how = personal_folder()
    if not folder.is_absolute():
        raise PcapdumpError(f"'{folder}': not an absolute folder (is HOME set?)")
    name, text, page = _launcher(folder)
    path = folder / name
    _refuse_foreign(path)
    _refuse_foreign(folder / page)
    folder.mkdir(parents=True, exist_ok=True)
    for target, content, mode in ((folder / page, help_text(), 0o644), (path, text, 0o755)):
        temp = folder / f".{target.name}.{os.getpid()}.tmp"
        try:
            temp.write_text(content)
            temp.chmod(mode)
            os.replace(temp, target)
        except OSError as e:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise PcapdumpError(f"'{target}': cannot write it: {e.strerror}") from None
    return f"installed {path} ({how}); Wireshark lists its interfaces after a restart"


def uninstall() -> str:
    folder, how = personal_folder()
    name, _, page = _launcher(folder)
    path = folder / name
    if not path.exists() and not path.is_symlink():
        return f"not installed: no {path} ({how})"
    _refuse_foreign(path)
    path.unlink()
    with contextlib.suppress(OSError, PcapdumpError):
        _refuse_foreign(folder / page)
        (folder / page).unlink()
    return f"removed {path}"


def _refuse_foreign(path: Path) -> None:
    """A file of that name that is not our launcher is someone else's: neither replaced nor removed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    ours = stat.S_ISREG(st.st_mode) and MARK[2:] in path.read_text(errors="replace")[:200]
    if not ours:
        raise PcapdumpError(
            f"'{path}': not pcapdump's (someone else's file, a link or a folder); remove or rename it first"
        )


if __name__ == "__main__":
    main()
