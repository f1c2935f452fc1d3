"""Where the agent and the capture store live: everything under ``$PCAPDUMP_HOME`` (SPEC §1.4, §1.5)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The gateway rule for capture store names: 8.3, letters, digits, '-' and '_'. No name can leave the store.
STORE_NAME = re.compile(r"[A-Za-z0-9_-]{1,8}(\.[A-Za-z0-9_-]{1,3})?")
STORE_NAME_RULE = "at most 8 characters, optionally a dot and at most 3 more, from A-Z a-z 0-9 - _"


def default_home() -> Path:
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/pcapdump")
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "pcapdump"


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

    def create(self) -> None:
        """The folders, readable by their owner only."""
        for d in (self.root, self.store):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(d, 0o700)

    def store_files(self) -> list[dict[str, Any]]:
        """The capture files in the store, by name: ``name``, ``size``, ``mtime`` (seconds)."""
        try:
            entries = sorted(os.scandir(self.store), key=lambda e: e.name)
        except OSError:
            return []
        return [
            {"name": e.name, "size": st.st_size, "mtime": int(st.st_mtime)}
            for e in entries
            if e.is_file() and STORE_NAME.fullmatch(e.name) and (st := e.stat())
        ]

    def store_summary(self) -> list[dict[str, Any]]:
        """The store's files as `status` lists them: ``name`` and ``size``."""
        return [{"name": f["name"], "size": f["size"]} for f in self.store_files()]

    def empty_store(self) -> list[str]:
        """Delete the capture files of the store (what `write` made); returns their names."""
        names = [f["name"] for f in self.store_files()]
        for name in names:
            (self.store / name).unlink(missing_ok=True)
        return names

    def agent_pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
