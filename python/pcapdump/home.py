"""Where the agent and the capture store live: everything under ``$PCAPDUMP_HOME``
(docs/commands.md#the-capture-store, docs/architecture.md#the-agent).

A capture tool runs as root next to other people's files, so nothing here is trusted that pcapdump did
not make: the home and its store must be folders of the running user that nobody else can write (they
are never chmodded into shape), and no file in them is opened through a symlink.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pwd
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _core
from .errors import HomeError

# The gateway rule for capture store names: 8.3, letters, digits, '-' and '_'. No name can leave the store.
STORE_NAME = re.compile(r"[A-Za-z0-9_-]{1,8}(\.[A-Za-z0-9_-]{1,3})?")
STORE_NAME_RULE = "at most 8 characters, optionally a dot and at most 3 more, from A-Z a-z 0-9 - _"
# A temporary the engine writes a store file under, before renaming it into place.
STORE_TEMP = re.compile(r"\.[A-Za-z0-9_.-]{1,12}\.[0-9a-f]{16}" + re.escape(_core.TEMP_SUFFIX))
# The manifest of what `write` made, so that `cleanup` deletes that and nothing else.
MANIFEST = "written.json"


def default_home() -> Path:
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/pcapdump")
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "pcapdump"


def _owner(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def process_alive(pid: int) -> bool:
    """Whether a process of that pid exists (of any user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_trusted(path: Path, st: os.stat_result, what: str) -> None:
    """Refuse ``path`` unless it belongs to us and nobody else can write it."""
    if st.st_uid != os.geteuid():
        raise HomeError(
            f"'{path}': {what} is owned by {_owner(st.st_uid)}, not by {_owner(os.geteuid())}; "
            "set PCAPDUMP_HOME to a folder of your own"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise HomeError(
            f"'{path}': {what} can be written by others (mode {stat.S_IMODE(st.st_mode):04o}); "
            "set PCAPDUMP_HOME to a folder only you can write (pcapdump makes it if it does not exist)"
        )


def open_private(path: Path, flags: int, mode: int = 0o600) -> int:
    """Open a file of the home without following a symlink; one that is not ours is refused."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise HomeError(f"'{path}': is a symlink; pcapdump does not open files through links") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise HomeError(f"'{path}': not a regular file")
        check_trusted(path, st, "the file")
    except BaseException:
        os.close(fd)
        raise
    return fd


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def from_env(cls, home: str | os.PathLike[str] | None = None) -> Home:
        chosen = home or os.environ.get("PCAPDUMP_HOME") or default_home()
        return cls(Path(chosen).absolute())

    @property
    def socket(self) -> Path:
        return self.root / "agent.sock"

    @property
    def pidfile(self) -> Path:
        return self.root / "agent.pid"

    @property
    def log(self) -> Path:
        return self.root / "agent.log"

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def agent_lock(self) -> Path:
        """Held (flock) by the agent for as long as it serves this home."""
        return self.root / "agent.lock"

    @property
    def start_lock(self) -> Path:
        """Held by a command while it launches an agent, so that two commands launch one."""
        return self.root / "start.lock"

    # --- making and checking ---------------------------------------------------------------------

    def create(self) -> None:
        """Make the home and its store (0700), or check the ones that exist: ours, not writable by
        others. An existing folder is never chmodded: a shared one (/tmp) is refused instead."""
        self.root.parent.mkdir(parents=True, exist_ok=True)
        for folder, what in ((self.root, "PCAPDUMP_HOME"), (self.store, "the capture store")):
            with contextlib.suppress(FileExistsError):
                os.mkdir(folder, 0o700)
            # The home itself may be reached through a link an administrator made; inside it, nothing is.
            if folder == self.root:
                self._check_link()
            st = os.stat(folder) if folder == self.root else os.lstat(folder)
            if not stat.S_ISDIR(st.st_mode):
                raise HomeError(f"'{folder}': {what} is not a folder")
            check_trusted(folder, st, what)

    def _check_link(self) -> None:
        """A home that is a symlink is followed only if the link is ours or root's: one planted by
        someone else could lead to another user's home."""
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(self.root)
            if stat.S_ISLNK(st.st_mode) and st.st_uid not in (0, os.geteuid()):
                raise HomeError(
                    f"'{self.root}': PCAPDUMP_HOME is a symlink of {_owner(st.st_uid)}; "
                    "set PCAPDUMP_HOME to a folder of your own"
                )

    def check(self) -> None:
        """Check an existing home (see ``create``); a home that does not exist is fine (nothing in it)."""
        try:
            self._check_link()
            st = os.stat(self.root)
        except FileNotFoundError:
            return
        except PermissionError:
            raise HomeError(
                f"'{self.root}': permission denied; PCAPDUMP_HOME belongs to another user "
                "(root's agent serves root only: run the command as root, or set PCAPDUMP_HOME)"
            ) from None
        if not stat.S_ISDIR(st.st_mode):
            raise HomeError(f"'{self.root}': PCAPDUMP_HOME is not a folder")
        check_trusted(self.root, st, "PCAPDUMP_HOME")

    @contextlib.contextmanager
    def locked(self, path: Path, *, within: float) -> Iterator[bool]:
        """Hold an exclusive flock on ``path`` (made if missing) while the block runs; yields whether it
        was taken within ``within`` seconds (someone else may hold it meanwhile)."""
        fd = open_private(path, os.O_RDWR | os.O_CREAT)
        deadline = time.monotonic() + within
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.01)
            yield True
        finally:
            os.close(fd)

    def agent_holds_lock(self) -> bool:
        """Whether an agent serves this home now (it holds the agent lock until it ends)."""
        try:
            fd = open_private(self.agent_lock, os.O_RDONLY)
        except (FileNotFoundError, HomeError):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    # --- small files -----------------------------------------------------------------------------

    def write_private(self, path: Path, text: str) -> None:
        """Replace a small file of the home, never through a link."""
        fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        with os.fdopen(fd, "w") as f:
            f.write(text)

    def read_private(self, path: Path) -> str | None:
        try:
            fd = open_private(path, os.O_RDONLY)
        except (FileNotFoundError, HomeError):
            return None
        with os.fdopen(fd) as f:
            return f.read(1 << 20)

    def open_log(self) -> int:
        """The agent's log, for appending."""
        return open_private(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def agent_pid(self) -> int | None:
        text = self.read_private(self.pidfile)
        try:
            return int(text.strip()) if text else None
        except ValueError:
            return None

    # --- the store -------------------------------------------------------------------------------

    def store_files(self) -> list[dict[str, Any]]:
        """The capture files in the store, by name: ``name``, ``size``, ``mtime`` (seconds)."""
        try:
            entries = sorted(os.scandir(self.store), key=lambda e: e.name)
        except OSError:
            return []
        return [
            {"name": e.name, "size": st.st_size, "mtime": int(st.st_mtime)}
            for e in entries
            if STORE_NAME.fullmatch(e.name) and e.is_file(follow_symlinks=False) and (st := e.stat())
        ]

    def store_summary(self) -> list[dict[str, Any]]:
        """The store's files as `status` lists them: ``name`` and ``size``."""
        return [{"name": f["name"], "size": f["size"]} for f in self.store_files()]

    def written(self) -> dict[str, list[int]]:
        """The files `write` made (the manifest): each name with the file's identity (inode, size and
        modification time), so that a file someone put at the same name since is not taken for ours."""
        text = self.read_private(self.root / MANIFEST)
        try:
            entries = json.loads(text) if text else {}
        except ValueError:
            return {}
        if not isinstance(entries, dict):
            return {}
        return {n: i for n, i in entries.items() if STORE_NAME.fullmatch(n) and isinstance(i, list)}

    def record_written(self, name: str) -> None:
        """Add the file just written at ``name`` to the manifest (the agent serialises its writes)."""
        entries = {**self.written(), name: _identity(os.lstat(self.store / name))}
        self.write_private(self.root / MANIFEST, json.dumps(entries, sort_keys=True))

    def empty_store(self) -> list[str]:
        """Delete the files `write` made, and only those; returns their names."""
        deleted = []
        for name, identity in sorted(self.written().items()):
            path = self.store / name
            with contextlib.suppress(FileNotFoundError):
                st = os.lstat(path)
                if stat.S_ISREG(st.st_mode) and _identity(st) == identity:
                    path.unlink()
                    deleted.append(name)
        with contextlib.suppress(FileNotFoundError):
            (self.root / MANIFEST).unlink()
        return deleted

    def remove_stray_temporaries(self) -> list[str]:
        """Temporaries a killed writer left in the store (ours, by their name): removed; returns them."""
        removed: list[str] = []
        try:
            entries = list(os.scandir(self.store))
        except OSError:
            return removed
        for e in entries:
            ours = STORE_TEMP.fullmatch(e.name) and e.is_file(follow_symlinks=False)
            if ours and e.stat(follow_symlinks=False).st_uid == os.geteuid() and not _being_written(e.path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(e.path)
                    removed.append(e.name)
        return removed


def _identity(st: os.stat_result) -> list[int]:
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def _being_written(path: str) -> bool:
    """A writer holds a flock on its temporary file while it writes (see the engine's AtomicFile)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
