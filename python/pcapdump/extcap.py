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
import shlex
import signal
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import __version__, _core, inventory, sshroute, stream
from .errors import EXIT_RUNTIME, EXIT_USAGE, FilterError, InventoryError, PcapdumpError, UsageError
from .grammar import IFACE_NAME, IFACE_NAME_RULE

PROGRAM = "pcapdump-extcap"
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
    p = _Usage(prog=PROGRAM, add_help=False)
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
            if _field(gw.label) != gw.label:
                # Wireshark would call it back by another name.
                print(f"{PROGRAM}: {gw.label!r}: not listed: braces, line ends or controls in its name",
                      file=sys.stderr)  # fmt: skip
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
            f"pcapdump {__version__}: live capture in Wireshark",
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


def _open_fifo(path: str) -> int:
    """Wireshark's pipe, open for writing (once Wireshark has opened it for reading). It is opened
    before anything can fail: Wireshark waits for it to open, and then takes its closing with an error
    on standard error for the end of the capture."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise PcapdumpError(f"'{path}': cannot open Wireshark's pipe: {e.strerror}") from None
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
    return shlex.join([*words, "stream", iface])


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


async def _collect_stderr(process: object, lines: list[str]) -> None:
    async for line in process.stderr:  # type: ignore[attr-defined]
        text = line.decode(errors="replace").rstrip()
        if text:
            lines.append(text)


async def capture_remote(gw: inventory.Gateway, opts: argparse.Namespace, fd: int) -> int:
    """Run ``pcapdump … stream`` on the gateway and copy its pcapng to Wireshark's pipe until it ends,
    Wireshark closes the pipe, or SIGTERM; then end the remote stream and the connection. What the
    gateway says on standard error is passed on when it fails (Wireshark shows any of it as an error)."""
    import asyncssh

    from . import fwctl  # first: it imports asyncssh its own way

    command = remote_command(gw, opts)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in _STOPPING:
        loop.add_signal_handler(sig, task.cancel)
    # The user's ~/.ssh/config applies, as for fwctl: a gateway behind a bastion is reached the same way.
    watchdog = fwctl.Watchdog(gw, fwctl.DEFAULT_TIMEOUT_S, sshroute.config_file(None))
    said: list[str] = []
    try:
        async with await watchdog.run(watchdog.connect()) as conn:
            process = await conn.create_process(command, encoding=None)
            collect = asyncio.ensure_future(_collect_stderr(process, said))
            try:
                while chunk := await process.stdout.read(1 << 16):
                    if not await _write_all(fd, chunk):
                        return 0  # Wireshark closed the pipe
                await process.wait_closed()
                await collect
            finally:
                # The gateway's stream ends at once: asked to, and its pipe closes with the channel.
                with contextlib.suppress(Exception):
                    process.send_signal("TERM")
                process.close()
                collect.cancel()
    except asyncio.CancelledError:
        return 0
    except (asyncssh.Error, OSError, TimeoutError) as e:
        raise watchdog.failure(e) from None
    if process.exit_status == 0:
        return 0
    for line in said:
        print(f"{gw.label}: {line}", file=sys.stderr)
    if not said:
        print(f"pcapdump: {gw.label}: the remote stream ended ({command})", file=sys.stderr)
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
    finally:
        os.close(fd)


def run(argv: Sequence[str]) -> int:
    opts = _parser().parse_args(list(argv))
    if opts.extcap_interfaces:
        print("\n".join(interface_lines(opts.help_file)))
        return 0
    if not opts.extcap_interface:
        raise UsageError(f"{PROGRAM}: expected --extcap-interfaces, or --extcap-interface <name> and more")
    if opts.extcap_capture_filter is not None and not opts.capture:
        resolve(opts.extcap_interface)
        print(check_filter(opts.extcap_capture_filter))
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


def main(argv: Sequence[str] | None = None) -> None:
    """The entry point Wireshark runs: errors are one line on standard error and a non-zero exit."""
    try:
        code = run(sys.argv[1:] if argv is None else argv)
    except UsageError as e:
        print(f"pcapdump: {e.message}", file=sys.stderr)
        code = EXIT_USAGE
    except PcapdumpError as e:
        print(f"pcapdump: {e}", file=sys.stderr)
        code = e.exit_code
    except KeyboardInterrupt:
        code = 0
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
            return Path(folders["Personal Extcap path"]), "tshark -G folders"
        if folders.get("Personal configuration"):
            # Wireshark before 4.1 looks in the personal configuration folder's extcap/.
            return Path(folders["Personal configuration"]) / "extcap", "tshark -G folders (Wireshark < 4.1)"
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", Path.home())) / "Wireshark" / "extcap", "Wireshark's default"
    return Path.home() / ".local" / "lib" / "wireshark" / "extcap", "Wireshark's default (4.1 or later)"


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
    name, text, page = _launcher(folder)
    path = folder / name
    _refuse_foreign(path)
    folder.mkdir(parents=True, exist_ok=True)
    for target, content, mode in ((folder / page, help_text(), 0o644), (path, text, 0o755)):
        temp = folder / f".{target.name}.{os.getpid()}.tmp"
        temp.write_text(content)
        temp.chmod(mode)
        os.replace(temp, target)
    return f"installed {path} (the folder from {how}); Wireshark lists its interfaces after a restart"


def uninstall() -> str:
    folder, how = personal_folder()
    name, _, page = _launcher(folder)
    path = folder / name
    if not path.exists() and not path.is_symlink():
        return f"not installed: no {path} (the folder from {how})"
    _refuse_foreign(path)
    path.unlink()
    with contextlib.suppress(FileNotFoundError):
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
        raise PcapdumpError(f"'{path}': not a pcapdump launcher; remove or rename it first")


if __name__ == "__main__":
    main()
