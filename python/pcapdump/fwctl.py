"""``pcapdump.fwctl``: fetch capture files from gateways' capture stores over OpenSSH (SFTP).

>>> pcapdump.fwctl.download("capture.cap", "local.cap", "site:gw1")     # doctest: +SKIP
>>> pcapdump.fwctl.filelist("site:gw1")                                  # doctest: +SKIP

Host keys are always checked against ``known_hosts``; keys come from the inventory's ``identity``, the ssh
agent or the default key files. A download lands in a temporary file beside its destination and is renamed
only once complete and of the right size: an error or Ctrl-C leaves neither behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes.util
import os
import posixpath
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import PcapdumpError, UsageError
from .home import STORE_NAME, STORE_NAME_RULE, Home
from .inventory import LOCAL, Gateway, resolve, split_target


@contextlib.contextmanager
def _without_liboqs_probe() -> Iterator[None]:
    """asyncssh looks for the optional liboqs (sntrup761 key exchange) when imported, through
    ctypes.util.find_library, which runs ldconfig, gcc and ld for each of two names: 30 ms of every
    fwctl command on a machine with a compiler, more with a cold cache. We do without sntrup761;
    curve25519 (and ML-KEM where OpenSSL has it) remain."""
    find_library = ctypes.util.find_library
    ctypes.util.find_library = lambda name: None if name in ("oqs", "liboqs") else find_library(name)
    try:
        yield
    finally:
        ctypes.util.find_library = find_library


with _without_liboqs_probe():
    import asyncssh

CONNECT_TIMEOUT_S = 15
# AES-GCM first: with AES-NI it is the cheapest cipher on both ends.
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes128-ctr")

Progress = Callable[[str, int, int], None]  # (gateway label, bytes so far, total)


class FetchError(PcapdumpError):
    """A download or listing failed; the message names the gateway and what went wrong."""


@dataclass(frozen=True)
class Fetched:
    target: str
    path: Path | None
    size: int
    error: str | None = None


def check_store_name(name: str) -> None:
    """The 8.3 rule, before any connection: no path can leave the remote store."""
    if not STORE_NAME.fullmatch(name):
        raise UsageError(f"'{name}': not a capture store name ({STORE_NAME_RULE})", name)


class Landing:
    """A destination written through a temporary file beside it."""

    def __init__(self, dest: Path, force: bool) -> None:
        if dest.exists() and not force:
            raise FetchError(f"'{dest}': already exists (--force replaces it)")
        if dest.is_dir():
            raise FetchError(f"'{dest}': is a folder")
        self.dest = dest
        self.temp = dest.with_name(f".{dest.name}.{os.getpid()}.part")

    def commit(self, expected: int) -> int:
        size = self.temp.stat().st_size
        if size != expected:
            raise FetchError(f"'{self.dest}': got {size} bytes of {expected}; not kept")
        os.replace(self.temp, self.dest)
        return size

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.temp.unlink()


def _describe(gw: Gateway, e: BaseException) -> str:
    where = f"{gw.label} ({gw.user}@{gw.host}:{gw.port})"
    if isinstance(e, asyncssh.HostKeyNotVerifiable):
        known = gw.known_hosts or Path.home() / ".ssh" / "known_hosts"
        return f"{where}: host key not trusted or does not match {known}: {e.reason}"
    if isinstance(e, asyncssh.PermissionDenied):
        return (
            f"{where}: authentication failed (key refused): check identity, the ssh agent or authorized_keys"
        )
    if isinstance(e, asyncssh.SFTPNoSuchFile):
        return f"{where}: no such file in the store ({e.reason})"
    if isinstance(e, asyncssh.SFTPError):
        return f"{where}: {e.reason}"
    if isinstance(e, asyncssh.DisconnectError):
        return f"{where}: connection lost: {e.reason}"
    if isinstance(e, TimeoutError):
        return f"{where}: unreachable (no answer within {CONNECT_TIMEOUT_S} s)"
    if isinstance(e, OSError):
        return f"{where}: unreachable: {e.strerror or e}"
    return f"{where}: {e}"


async def _connect(gw: Gateway) -> asyncssh.SSHClientConnection:
    known = gw.known_hosts or Path.home() / ".ssh" / "known_hosts"
    if not known.is_file():
        raise FetchError(
            f"{gw.label}: no known_hosts file at {known}: add the gateway's host key first "
            f"(ssh-keyscan -p {gw.port} {gw.host} >> {known}, then check it)"
        )
    options: dict[str, Any] = {}
    if gw.identity is not None:
        if not gw.identity.is_file():
            raise FetchError(f"{gw.label}: identity {gw.identity}: no such key file")
        options["client_keys"] = [str(gw.identity)]
    return await asyncio.wait_for(
        asyncssh.connect(
            gw.host,
            port=gw.port,
            username=gw.user,
            known_hosts=str(known),
            encryption_algs=list(CIPHERS),
            **options,
        ),
        CONNECT_TIMEOUT_S,
    )


async def _fetch(gw: Gateway, name: str, dest: Path, force: bool, progress: Progress | None) -> Fetched:
    landing = Landing(dest, force)
    try:
        async with await _connect(gw) as conn, conn.start_sftp_client() as sftp:
            remote = posixpath.join(gw.store, name)
            size = (await sftp.stat(remote)).size or 0

            def report(_src: bytes, _dst: bytes, done: int, total: int) -> None:
                if progress:
                    progress(gw.label, done, total)

            if progress:
                progress(gw.label, 0, size)
            # asyncssh's own read size and parallelism (it asks the server for its limits) measured
            # fastest on loopback against OpenSSH 9: 219 MB/s, against 113-145 MB/s for fixed sizes.
            await sftp.get(remote, str(landing.temp), progress_handler=report)
        return Fetched(gw.label, dest, landing.commit(size))
    except (asyncssh.Error, OSError, TimeoutError) as e:
        raise FetchError(_describe(gw, e)) from None
    finally:
        landing.discard()


def _fetch_local(name: str, dest: Path, force: bool) -> Fetched:
    source = Home.from_env().store / name
    if not source.is_file():
        raise FetchError(f"{LOCAL}: no such file in the store: {source}")
    landing = Landing(dest, force)
    try:
        shutil.copyfile(source, landing.temp)
        return Fetched(LOCAL, dest, landing.commit(source.stat().st_size))
    finally:
        landing.discard()


def download(
    source_file: str,
    destination: str | os.PathLike[str],
    target: str,
    force: bool = False,
    progress: Progress | None = None,
) -> list[Fetched]:
    """Fetch ``source_file`` from the store of ``target`` (``source:gateway``) to ``destination``.

    With ``source:*`` every gateway of the data source is fetched concurrently into
    ``destination/<gateway>/<source_file>``; a failed gateway is reported in its ``Fetched.error`` and
    does not stop the others. A single target raises ``FetchError`` on failure.
    """
    check_store_name(source_file)
    source, gateway = split_target(target)
    dest = Path(destination)
    if source == LOCAL:
        return [_fetch_local(source_file, dest / source_file if dest.is_dir() else dest, force)]
    gateways = resolve(target)
    if gateway != "*":
        if dest.is_dir():
            dest = dest / source_file
        return [asyncio.run(_fetch(gateways[0], source_file, dest, force, progress))]

    async def fleet() -> list[Fetched]:
        async def one(gw: Gateway) -> Fetched:
            folder = dest / gw.name
            folder.mkdir(parents=True, exist_ok=True)
            try:
                return await _fetch(gw, source_file, folder / source_file, force, progress)
            except PcapdumpError as e:
                return Fetched(gw.label, None, 0, str(e))

        return list(await asyncio.gather(*(one(gw) for gw in gateways)))

    return asyncio.run(fleet())


async def _list(gw: Gateway) -> list[dict[str, Any]]:
    try:
        async with await _connect(gw) as conn, conn.start_sftp_client() as sftp:
            entries = await sftp.readdir(gw.store)
    except (asyncssh.Error, OSError, TimeoutError) as e:
        raise FetchError(_describe(gw, e)) from None
    return sorted(
        (
            {"target": gw.label, "name": e.filename, "size": e.attrs.size, "mtime": e.attrs.mtime}
            for e in entries
            if isinstance(e.filename, str) and STORE_NAME.fullmatch(e.filename)
        ),
        key=lambda f: f["name"],
    )


def filelist(target: str) -> list[dict[str, Any]]:
    """The capture files in the store of ``target``: ``name``, ``size``, ``mtime`` (and ``target``)."""
    source, _ = split_target(target)
    if source == LOCAL:
        return [{"target": LOCAL, **f} for f in Home.from_env().store_files()]
    gateways = resolve(target)

    async def every() -> list[dict[str, Any]]:
        lists = await asyncio.gather(*(_list(gw) for gw in gateways))
        return [f for files in lists for f in files]

    return asyncio.run(every())


__all__ = ["FetchError", "Fetched", "check_store_name", "download", "filelist"]
