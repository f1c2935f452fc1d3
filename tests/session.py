"""A console session for the live tests: the installed `pcapdump` command run in the capture namespace
(where `int` is), with its own PCAPDUMP_HOME and so its own agent."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from conftest import pcapdump_exe


class Session:
    def __init__(self, net, home: Path) -> None:
        self.net, self.home = net, home
        self.env = {**os.environ, "PCAPDUMP_HOME": str(home), "TZ": "UTC"}

    def argv(self, *words: str) -> list[str]:
        return ["ip", "netns", "exec", self.net.cap_ns, pcapdump_exe(), *words]

    def __call__(self, *words: str, ok: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.argv(*words), capture_output=True, text=True, timeout=timeout, env=self.env, check=False
        )
        if ok:
            assert done.returncode == 0, f"pcapdump {' '.join(words)}: {done.stderr}"
        return done

    def status(self) -> dict:
        return json.loads(self("status", "-json").stdout)

    def capture(self, iface: str = "int") -> dict:
        return next(c for c in self.status()["captures"] if c["iface"] == iface)

    def agent_pid(self) -> int | None:
        try:
            return int((self.home / "agent.pid").read_text())
        except FileNotFoundError:
            return None

    def popen(self, *words: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*words), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env
        )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def one_line_error(done: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert done.returncode == code, done
    err = done.stderr.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def agents_under(folder: Path) -> list[int]:
    """Processes whose PCAPDUMP_HOME lies under `folder`: the agents a test made, and only those."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            variables = environ.read_bytes().split(b"\0")
        except OSError:
            continue
        for v in variables:
            if v.startswith(b"PCAPDUMP_HOME=") and Path(v[14:].decode(errors="replace")).is_relative_to(
                folder
            ):
                found.append(int(environ.parent.name))
    return found
