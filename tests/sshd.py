"""A real OpenSSH server on 127.0.0.1 for fwctl: fresh host and client keys per run, its own config, a free
port, `sshd -D` in the foreground. The client side is a scratch HOME with ~/.ssh (known_hosts, id_ed25519)
and ~/.config/pcapdump/gateways.toml, so fwctl's default paths are the ones exercised."""

from __future__ import annotations

import contextlib
import getpass
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return Path(f"{path}.pub").read_text().strip()


@dataclass
class Server:
    root: Path
    port: int
    host_key_line: str
    proc: subprocess.Popen[bytes]
    config: Path
    address: str = "127.0.0.1"
    netns: str | None = None

    def listening(self) -> bool:
        if self.netns is None:
            with socket.socket() as s:
                return s.connect_ex((self.address, self.port)) == 0
        out = subprocess.run(
            ["ip", "netns", "exec", self.netns, "ss", "-Hltn", f"sport = :{self.port}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return bool(out.strip())

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.root / 'sshd.log').read_text()}")
            if self.listening():
                return
            time.sleep(0.05)
        raise RuntimeError("sshd did not start")

    def kill_all(self) -> None:
        """The listener and every session process it forked."""
        for pid in [*descendants(self.proc.pid), self.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill_all()


def start(root: Path, authorized: list[str], address: str = "127.0.0.1", netns: str | None = None) -> Server:
    """An sshd on ``address`` (inside network namespace ``netns`` if given) that lets the keys in
    ``authorized`` log in as the user running the tests."""
    root.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation folder
    host_key = root / "host_key"
    host_pub = keygen(host_key)
    (root / "authorized_keys").write_text("\n".join(authorized) + "\n")
    port = free_port()
    config = root / "sshd_config"
    config.write_text(
        f"""Port {port}
ListenAddress {address}
HostKey {host_key}
PidFile {root}/sshd.pid
AuthorizedKeysFile {root}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers {getpass.getuser()}
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
LogLevel ERROR
"""
    )
    with open(root / "sshd.log", "ab") as log:
        inside = ["ip", "netns", "exec", netns] if netns else []
        proc = subprocess.Popen(
            [*inside, SSHD, "-D", "-e", "-f", str(config)], stderr=log, env={"PATH": os.environ["PATH"]}
        )
    key_type, key_data = host_pub.split()[:2]
    server = Server(root, port, f"[{address}]:{port} {key_type} {key_data}", proc, config, address, netns)
    server.wait_ready()
    return server
