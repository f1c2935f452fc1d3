"""``pcapdump.fwctl``: fetch capture files from gateways' capture stores over OpenSSH (SFTP).

>>> pcapdump.fwctl.download("capture.cap", "local.cap", "site:gw1")     # doctest: +SKIP
>>> pcapdump.fwctl.filelist("site:gw1")                                  # doctest: +SKIP

Host keys are always checked against ``known_hosts``; keys come from the inventory's ``identity``, the ssh
agent or the default key files. A download lands in a private folder beside its destination and is renamed
into place only once complete and of the right size: an error or Ctrl-C leaves neither behind, and what a
killed fwctl left is removed by the next one (docs/fwctl.md#how-a-download-lands). A gateway that stops
sending for ``timeout`` seconds (30 by default) ends the download with an error; SSH keepalives find a
connection that died silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes.util
import os
import posixpath
import re
import secrets
import shutil
import socket
import stat
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from . import sshroute
from .errors import (
    AuthenticationError,
    DestinationError,
    DestinationExistsError,
    FetchError,
    HostKeyError,
    PcapdumpError,
    RemoteFileNotFoundError,
    StalledError,
    UnreachableError,
    UsageError,
)
from .home import STORE_NAME, STORE_NAME_RULE, Home, process_alive
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

# A gateway that sends nothing for this long (connecting, or in the middle of a file) has failed.
DEFAULT_TIMEOUT_S = 30.0
# SSH keepalives: a peer that answers none of these in a row is gone.
KEEPALIVE_S = 5.0
KEEPALIVE_MISSES = 3
# AES-GCM first: with AES-NI it is the cheapest cipher on both ends.
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes128-ctr")

Progress = Callable[[str, int, int], None]  # (gateway label, bytes so far, total)
T = TypeVar("T")


@dataclass(frozen=True)
class Fetched:
    target: str
    path: Path | None
    size: int
    #: Why this gateway failed (fan-out only; a single target raises instead).
    error: PcapdumpError | None = None


@dataclass(frozen=True)
class Listing:
    target: str
    #: The store's capture files: ``name``, ``size``, ``mtime`` (and ``target``), by name.
    files: list[dict[str, Any]]
    #: Why this gateway could not be listed (fan-out only; a single target raises instead).
    error: PcapdumpError | None = None


def check_store_name(name: str) -> None:
    """The 8.3 rule, before any connection: no path can leave the remote store."""
    if not STORE_NAME.fullmatch(name):
        raise UsageError(f"'{name}': not a capture store name ({STORE_NAME_RULE})", name)


def _destination(destination: str | os.PathLike[str], source_file: str, target: str) -> Path:
    """Where ``source_file`` from ``target`` goes, by scp's and cp's rules, before any connection. A folder
    that exists, or a name ending in '/', means into that folder under the store name; any other name is
    the file to write. With ``<source>:*`` the destination is the folder that gets one folder per
    gateway, and it must exist."""
    text = os.fspath(destination)
    if not text:
        raise UsageError("'': empty destination; name a file or a folder", text)
    path = Path(text)
    fan_out = split_target(target)[1] == "*"
    if not (fan_out or text[-1] in ("/", os.sep) or path.is_dir()):
        return path
    if not path.is_dir():
        problem = "not a folder" if os.path.lexists(path) else "no such folder"
        expected = (
            f"with {target} the destination is a folder, which gets one folder per gateway"
            if fan_out
            else "a destination ending in '/' is a folder to download into"
        )
        raise DestinationError(f"'{text}': {problem} ({expected})", text)
    return path if fan_out else path / source_file


class Landing:
    """A destination written through a private folder beside it (``.<name>.<pid>.<random>.part``, 0700):
    nobody else can put a file or a link where the download is written, whatever the destination folder
    allows. The file is renamed into place once complete."""

    def __init__(self, dest: Path, force: bool) -> None:
        if dest.is_dir():
            raise DestinationError(
                f"'{dest}': is a folder, where the file would go; name another file", str(dest)
            )
        if dest.is_symlink() or (dest.exists() and not dest.is_file()):
            # Renaming over it would replace the link or the device itself, not write where it leads.
            raise DestinationError(
                f"'{dest}': not a regular file (a link, a device or a pipe); name a file", str(dest)
            )
        if dest.exists() and not force:
            raise DestinationExistsError(path=str(dest))
        if not dest.parent.is_dir():
            problem = "not a folder" if os.path.lexists(dest.parent) else "no such folder"
            raise DestinationError(f"'{dest.parent}': {problem} (to write {dest.name} in)", str(dest.parent))
        _check_folder(dest.parent)
        remove_leftovers(dest.parent)
        self.dest = dest
        while True:
            self.folder = dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}{PART}")
            try:
                os.mkdir(self.folder, 0o700)
                self.inode = os.lstat(self.folder).st_ino
                break
            except FileExistsError:
                continue  # taken (or planted): another name
            except OSError as e:
                raise DestinationError(
                    f"'{dest.parent}': cannot write there: {e.strerror}", str(dest.parent)
                ) from None
        self.temp = self.folder / dest.name

    def commit(self, expected: int) -> int:
        size = os.lstat(self.temp).st_size
        if size != expected:
            raise FetchError(f"'{self.dest}': got {size} bytes of {expected}; not kept")
        os.replace(self.temp, self.dest)
        return size

    def discard(self) -> None:
        _remove_folder(self.folder, self.inode)


PART = ".part"
_LEFTOVER = re.compile(r"\..+\.(\d+)\.[0-9a-f]{8}" + re.escape(PART))


def _check_folder(folder: Path) -> None:
    """Where a download lands, nobody else may rename or replace what we make (a landing folder swapped
    for a link would have us write, or delete, elsewhere): a folder of ours or root's that others cannot
    write, or a sticky one (/tmp), where they cannot touch our entries. A symbolic link to it must be
    ours or root's too: another user's link (planted where a per-gateway folder goes) is not followed."""
    link = os.lstat(folder)
    if stat.S_ISLNK(link.st_mode) and link.st_uid not in (0, os.geteuid()):
        raise DestinationError(
            f"'{folder}': a symbolic link of another user (uid {link.st_uid}); "
            "download into a folder of your own",
            str(folder),
        )
    st = os.stat(folder)
    shared = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX
    if st.st_uid not in (0, os.geteuid()) or shared:
        raise DestinationError(
            f"'{folder}': others can change this folder (owner uid {st.st_uid}, mode "
            f"{stat.S_IMODE(st.st_mode):04o}); download into a folder of your own",
            str(folder),
        )


def _remove_folder(folder: Path, inode: int | None = None) -> None:
    """Empty and remove a landing folder, through a descriptor of the folder itself: if someone put a
    link (or another folder) at its name, nothing of theirs is touched."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or (inode is not None and st.st_ino != inode):
            return
        for name in os.listdir(fd):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                os.unlink(name, dir_fd=fd)
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.rmdir(folder)


def remove_leftovers(folder: Path) -> list[str]:
    """Landing folders in ``folder`` of an fwctl that was killed (its pid is gone): removed."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            m = _LEFTOVER.fullmatch(entry.name)
            if not m or not entry.is_dir(follow_symlinks=False):
                continue
            if entry.stat(follow_symlinks=False).st_uid != os.geteuid() or process_alive(int(m.group(1))):
                continue
            _remove_folder(Path(entry.path))
            removed.append(entry.name)
    return removed


class Watchdog:
    """Ends a coroutine that has not made progress for ``timeout`` seconds: a stalled gateway, or a
    bastion on the way to it. Knows which hop of the route it is on, for the messages."""

    def __init__(self, gw: Gateway, timeout: float, ssh_config: Path | None = None) -> None:
        self.gw, self.timeout = gw, timeout
        self.route = sshroute.route(gw, ssh_config)
        # The hop being reached, and the bastion it is reached through (None: straight from here).
        self.at = self.route.gateway
        self.via: sshroute.Endpoint | None = None
        self.last = time.monotonic()
        # Closed at once on a stall: a polite close would wait for the silent gateway too.
        self.conn: asyncssh.SSHClientConnection | None = None

    def touch(self) -> None:
        self.last = time.monotonic()

    def where(self) -> str:
        return _where(self.gw, self.at)

    async def connect(self) -> asyncssh.SSHClientConnection:
        self.conn = await _connect(self)
        self.touch()
        return self.conn

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        task = asyncio.ensure_future(coro)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=min(1.0, self.timeout))
                if done:
                    return task.result()
                if time.monotonic() - self.last > self.timeout:
                    raise StalledError(gateway=self.where(), seconds=self.timeout)
        finally:
            if not task.done() and self.conn is not None:
                # Ended from outside (a stall, Ctrl-C, SIGTERM): a polite close would wait for a peer
                # that may never answer.
                self.conn.abort()
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    def failure(self, e: BaseException, name: str | None = None) -> FetchError:
        return failure(self.gw, e, name, self.at, self.via)


def _where(gw: Gateway, at: sshroute.Endpoint | None = None) -> str:
    if at is not None and at.bastion:
        return f"{gw.label}: bastion {at}"
    port = gw.port or sshroute.SSH_PORT
    return f"{gw.label} ({at or f'{gw.user}@{gw.host}:{port}'})"


def failure(
    gw: Gateway,
    e: BaseException,
    name: str | None = None,
    at: sshroute.Endpoint | None = None,
    via: sshroute.Endpoint | None = None,
) -> FetchError:
    """What an SSH or SFTP failure means, as the error class of its kind, naming the gateway, the hop
    ``at`` when it is a bastion (reached through ``via``), and the file ``name`` asked for (none: the
    store itself was listed)."""
    where = _where(gw, at)
    if isinstance(e, asyncssh.HostKeyNotVerifiable):
        return HostKeyError(f"{where}: {_host_key_problem(at, via)}")
    if isinstance(e, asyncssh.PermissionDenied):
        return AuthenticationError(
            f"{where}: authentication failed (key refused): check identity, the ssh agent or authorized_keys"
        )
    if isinstance(e, asyncssh.ChannelOpenError) and via is not None:
        return UnreachableError(f"{gw.label}: bastion {via} could not reach {at}: {e.reason}")
    if isinstance(e, asyncssh.SFTPNoSuchFile):
        if name is None:
            return FetchError(
                f"{where}: no store folder {gw.store} on the gateway (its 'store' in the inventory)"
            )
        return RemoteFileNotFoundError(f"{where}: '{name}': no such file in the store {gw.store}")
    if isinstance(e, asyncssh.SFTPError):
        return FetchError(f"{where}: {e.reason}")
    if isinstance(e, asyncssh.DisconnectError):
        return UnreachableError(f"{where}: connection lost: {e.reason}")
    if isinstance(e, TimeoutError):
        return UnreachableError(f"{where}: unreachable (no answer in time)")
    if isinstance(e, socket.gaierror):
        return UnreachableError(f"{where}: unreachable: {e.strerror}")
    if isinstance(e, OSError):
        # asyncio words a refused connection "Connect call failed (...)": say what happened instead.
        said = os.strerror(e.errno) if e.errno else (e.strerror or str(e))
        return UnreachableError(f"{where}: unreachable: {said}")
    if isinstance(e, UnicodeError):
        return UnreachableError(f"{where}: unreachable: not a usable host name")
    return FetchError(f"{where}: {e}")


def _host_key_problem(at: sshroute.Endpoint | None, via: sshroute.Endpoint | None) -> str:
    """Why a host key was refused, and what to do: a host not known yet, or a key that changed."""
    if at is None:
        return "host key not trusted"
    shown = ", ".join(str(p) for p in at.known_hosts)
    name = at.host_key_alias or at.address
    entry = name if at.port == sshroute.SSH_PORT else f"[{name}]:{at.port}"
    try:
        files = [str(p) for p in at.known_hosts if p.is_file()]
        found = asyncssh.read_known_hosts(files).match(name, "", at.port)
        changed, revoked = bool(found[0]), bool(found[2])
    except (OSError, ValueError):
        changed = revoked = False
    if revoked:
        return f"host key revoked: {shown} marks the key of {entry} as @revoked; do not trust it"
    if changed:
        return (
            f"host key changed: the key it offered is not the one {shown} holds for {entry}; if the change "
            f"is expected, remove the old one (ssh-keygen -R '{entry}' -f <file>) and add the new one"
        )
    scan = f"ssh-keyscan -p {at.port} {at.address}" + (f", run on the bastion {via.address}" if via else "")
    return f"host key unknown: {entry} is not in {shown}; check its key and add it ({scan})"


async def _connect(watchdog: Watchdog) -> asyncssh.SSHClientConnection:
    """The SSH connection to the gateway, through each bastion of its route in turn, each hop checked
    against its known_hosts files and offered its keys. Closing it closes the hops behind it. How long
    it may take is the watchdog's to say (``Watchdog.run``): a second clock here would race it, and a
    silent hop would get either of two messages."""
    gw = watchdog.gw
    if gw.identity is not None and not gw.identity.is_file():
        raise FetchError(f"{gw.label}: identity {gw.identity}: no such key file")
    behind: asyncssh.SSHClientConnection | None = None
    try:
        for endpoint in watchdog.route.endpoints:
            watchdog.at, watchdog.via = endpoint, watchdog.at if behind is not None else None
            files = [str(p) for p in endpoint.known_hosts if p.is_file()]
            if not files:
                shown = ", ".join(str(p) for p in endpoint.known_hosts)
                raise FetchError(
                    f"{_where(gw, endpoint)}: no known_hosts file at {shown}: add the host key first "
                    f"(ssh-keyscan -p {endpoint.port} {endpoint.address} >> {shown}, then check it)"
                )
            options: dict[str, Any] = {}
            if endpoint.client_keys is not None:
                options["client_keys"] = list(endpoint.client_keys)
            if endpoint.identities_only:
                options["agent_path"] = None
            if endpoint.host_key_alias:
                options["host_key_alias"] = endpoint.host_key_alias
            known = asyncssh.read_known_hosts(files)
            conn = await asyncssh.connect(
                endpoint.address,
                port=endpoint.port,
                username=endpoint.user,
                # By the name only (OpenSSH's CheckHostIP no): with a HostKeyAlias, an entry under
                # the address must not do.
                known_hosts=lambda host, _addr, port, known=known: known.match(host, "", port),
                # Host keys come from known_hosts alone, not from X.509 authorities asyncssh would
                # otherwise load from ~/.ssh.
                x509_trusted_certs=None,
                x509_trusted_cert_paths=None,
                # An encrypted key file is passed over (its key may be in the agent), as OpenSSH does.
                ignore_encrypted=True,
                tunnel=behind or (),
                # The route is resolved already: asyncssh is not to read ~/.ssh/config again.
                config=[],
                encryption_algs=list(CIPHERS),
                keepalive_interval=KEEPALIVE_S,
                keepalive_count_max=KEEPALIVE_MISSES,
                **options,
            )
            if behind is not None:
                conn.set_tunnel(behind)
            behind = conn
            watchdog.touch()
    except BaseException:
        if behind is not None:
            behind.abort()
        raise
    assert behind is not None
    return behind


async def _fetch(
    gw: Gateway,
    name: str,
    dest: Path,
    force: bool,
    progress: Progress | None,
    timeout: float,
    ssh_config: Path | None,
) -> Fetched:
    watchdog = Watchdog(gw, timeout, ssh_config)
    landing = Landing(dest, force)

    async def transfer() -> int:
        async with await watchdog.connect() as conn, conn.start_sftp_client() as sftp:
            remote = posixpath.join(gw.store, name)
            size = (await sftp.stat(remote)).size or 0

            def report(_src: bytes, _dst: bytes, done: int, total: int) -> None:
                watchdog.touch()
                if progress:
                    progress(gw.label, done, total)

            if progress:
                progress(gw.label, 0, size)
            # asyncssh's own read size and parallelism (it asks the server for its limits) measured
            # fastest on loopback against OpenSSH 9: 219 MB/s, against 113-145 MB/s for fixed sizes.
            await sftp.get(remote, str(landing.temp), progress_handler=report)
        return size

    try:
        size = await watchdog.run(transfer())
        return Fetched(gw.label, dest, landing.commit(size))
    except (asyncssh.Error, OSError, TimeoutError, ValueError) as e:
        raise watchdog.failure(e, name) from None
    finally:
        landing.discard()


def _fetch_local(name: str, dest: Path, force: bool) -> Fetched:
    home = Home.from_env()
    home.check()
    source = home.store / name
    if not (source.exists() and stat.S_ISREG(os.lstat(source).st_mode)):
        raise RemoteFileNotFoundError(f"{LOCAL}: '{name}': no such file in the store {home.store}")
    landing = Landing(dest, force)
    try:
        shutil.copyfile(source, landing.temp, follow_symlinks=False)
        return Fetched(LOCAL, dest, landing.commit(source.stat().st_size))
    finally:
        landing.discard()


def _check_timeout(timeout: float) -> None:
    if not timeout > 0:
        raise UsageError(f"timeout={timeout}: expected a number of seconds above 0", str(timeout))


@contextlib.contextmanager
def _gateway_folder(folder: Path, label: str) -> Iterator[Path]:
    """The folder of one gateway in a fan-out, made if missing. If the gateway then fails (or the download
    is interrupted), a folder made here is removed again: a failed gateway leaves no empty folder."""
    try:
        os.mkdir(folder)
        made = True
    except FileExistsError:
        if not folder.is_dir():
            raise DestinationError(
                f"'{folder}': not a folder (what comes from {label} goes in a folder of that name)",
                str(folder),
            ) from None
        made = False
    except OSError as e:
        raise DestinationError(f"'{folder}': cannot make this folder: {e.strerror}", str(folder)) from None
    try:
        yield folder
    except BaseException:
        if made:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def download(
    source_file: str,
    destination: str | os.PathLike[str],
    target: str,
    force: bool = False,
    progress: Progress | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    ssh_config: str | os.PathLike[str] | None = None,
) -> list[Fetched]:
    """Fetch ``source_file`` from the store of ``target`` (``source:gateway``) to ``destination``.

    ``destination`` is the file to write, or a folder to write ``source_file`` into: one that exists, or
    a name ending in '/' (which must then exist). With ``source:*`` every gateway of the data source is
    fetched concurrently into ``destination/<gateway>/<source_file>`` (``local:*``:
    ``destination/local/<source_file>``); ``destination`` must be a folder that exists. A failed gateway
    is reported in its ``Fetched.error``, does not stop the others and leaves no folder it made. A
    single target raises ``FetchError`` on failure; a destination that cannot be written raises
    ``DestinationError`` before any gateway is asked. A gateway that sends nothing for ``timeout``
    seconds fails with ``StalledError``. Gateways are reached as ``~/.ssh/config`` says, through the
    bastions of their ``jump`` or its ``ProxyJump``; ``ssh_config`` names another file, or ``"none"``.
    """
    check_store_name(source_file)
    _check_timeout(timeout)
    config = sshroute.config_file(ssh_config)
    source, gateway = split_target(target)
    gateways = [] if source == LOCAL else resolve(target)
    dest = _destination(destination, source_file, target)
    if gateway != "*":
        if source == LOCAL:
            return [_fetch_local(source_file, dest, force)]
        return [asyncio.run(_fetch(gateways[0], source_file, dest, force, progress, timeout, config))]
    if source == LOCAL:
        try:
            with _gateway_folder(dest / LOCAL, LOCAL) as folder:
                return [_fetch_local(source_file, folder / source_file, force)]
        except PcapdumpError as e:
            return [Fetched(LOCAL, None, 0, e)]

    async def fleet() -> list[Fetched]:
        async def one(gw: Gateway) -> Fetched:
            try:
                with _gateway_folder(dest / gw.name, gw.label) as folder:
                    return await _fetch(
                        gw, source_file, folder / source_file, force, progress, timeout, config
                    )
            except PcapdumpError as e:
                return Fetched(gw.label, None, 0, e)

        return list(await asyncio.gather(*(one(gw) for gw in gateways)))

    return asyncio.run(fleet())


async def _list(gw: Gateway, timeout: float, ssh_config: Path | None) -> list[dict[str, Any]]:
    watchdog = Watchdog(gw, timeout, ssh_config)

    async def listing() -> list[asyncssh.SFTPName]:
        async with await watchdog.connect() as conn, conn.start_sftp_client() as sftp:
            names = list(await sftp.readdir(gw.store))
        return names

    try:
        entries = await watchdog.run(listing())
    except (asyncssh.Error, OSError, TimeoutError, ValueError) as e:
        raise watchdog.failure(e) from None
    return sorted(
        (
            {"target": gw.label, "name": e.filename, "size": e.attrs.size, "mtime": e.attrs.mtime}
            for e in entries
            if isinstance(e.filename, str) and STORE_NAME.fullmatch(e.filename)
        ),
        key=lambda f: f["name"],
    )


def listings(
    target: str, timeout: float = DEFAULT_TIMEOUT_S, ssh_config: str | os.PathLike[str] | None = None
) -> list[Listing]:
    """One ``Listing`` per gateway of ``target``, in the inventory's order. With ``source:*`` every gateway
    is listed concurrently; a failed gateway is reported in its ``Listing.error`` and does not stop the
    others. A single target raises ``FetchError`` on failure. ``ssh_config`` as for ``download``."""
    _check_timeout(timeout)
    config = sshroute.config_file(ssh_config)
    source, gateway = split_target(target)
    if source == LOCAL:
        try:
            return [Listing(LOCAL, [{"target": LOCAL, **f} for f in Home.from_env().store_files()])]
        except PcapdumpError as e:
            if gateway != "*":
                raise
            return [Listing(LOCAL, [], e)]
    gateways = resolve(target)
    if gateway != "*":
        return [Listing(gateways[0].label, asyncio.run(_list(gateways[0], timeout, config)))]

    async def every() -> list[Listing]:
        async def one(gw: Gateway) -> Listing:
            try:
                return Listing(gw.label, await _list(gw, timeout, config))
            except PcapdumpError as e:
                return Listing(gw.label, [], e)

        return list(await asyncio.gather(*(one(gw) for gw in gateways)))

    return asyncio.run(every())


def filelist(
    target: str, timeout: float = DEFAULT_TIMEOUT_S, ssh_config: str | os.PathLike[str] | None = None
) -> list[dict[str, Any]]:
    """The capture files in the store of ``target``: ``name``, ``size``, ``mtime`` (and ``target``). With
    ``source:*``, a failed gateway raises its error once every gateway has answered (the first in the
    inventory's order); ``listings`` gives each gateway's files or error instead."""
    found = listings(target, timeout, ssh_config)
    for listing in found:
        if listing.error is not None:
            raise listing.error
    return [f for listing in found for f in listing.files]


__all__ = ["FetchError", "Fetched", "Listing", "check_store_name", "download", "filelist", "listings"]
