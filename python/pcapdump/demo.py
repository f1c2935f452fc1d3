"""``pcapdump demo``: a guided tour in a private network, for a first look.

It makes two network namespaces joined by a veth pair (the capture side is `int`, as in the spec's
examples), runs a capture session with the real commands while a little bounded traffic flows, keeps the
file it wrote, and removes everything else it made, Ctrl-C included.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from . import netns
from .errors import CaptureError

# In the capture namespace: a small TCP service that answers `connections` clients, then exits.
SERVER = r"""
import socket, sys
count = int(sys.argv[1])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 80))
srv.listen()
srv.settimeout(10)
print("ready", flush=True)
for _ in range(count):
    conn, _ = srv.accept()
    conn.recv(1024)
    conn.sendall(b"HTTP/1.0 200 OK\r\ncontent-length: 6\r\n\r\nhello\n")
    conn.close()
"""

# In the sender namespace: `count` requests to the service, and some DNS-like UDP the filter leaves out.
CLIENT = r"""
import socket, sys
dst, count = sys.argv[1], int(sys.argv[2])
for _ in range(count):
    c = socket.create_connection((dst, 80), timeout=5)
    c.sendall(b"GET / HTTP/1.0\r\n\r\n")
    while c.recv(1024):
        pass
    c.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(5):
    u.sendto(b"not captured", (dst, 53))
"""

SESSION = [
    ("-size", "1024", "ipsrc", netns.SND_V4, "tcp", "start", "int"),
    ("status",),
    ("stop",),
    ("show",),
    ("write", "int", "capture.cap"),
]


def _say(text: str) -> None:
    click.secho(text, fg="cyan", err=False)


def _pcapdump(net: netns.NetnsPair, home: Path, *words: str) -> None:
    click.secho(f"$ pcapdump {shlex.join(words)}", bold=True)
    env = {**os.environ, "PCAPDUMP_HOME": str(home)}
    done = subprocess.run(
        ["ip", "netns", "exec", net.cap_ns, sys.executable, "-m", "pcapdump", *words],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    click.echo(done.stdout + done.stderr, nl=False)
    if done.returncode != 0:
        raise CaptureError(f"demo: `pcapdump {shlex.join(words)}` failed (exit {done.returncode})")


def _traffic(net: netns.NetnsPair, connections: int) -> None:
    server = subprocess.Popen(
        ["ip", "netns", "exec", net.cap_ns, sys.executable, "-c", SERVER, str(connections)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()
        net.in_ns(net.snd_ns, sys.executable, "-c", CLIENT, netns.CAP_V4, str(connections))
        server.wait(timeout=15)
    finally:
        if server.poll() is None:
            server.kill()


def _keep(src: Path, dest: Path) -> None:
    """Copy `src` to `dest` under a fresh name beside it, then rename: whatever was at `dest` (a link
    someone planted in a shared folder) is replaced, never written through."""
    fd, temp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, src.open("rb") as data:
            shutil.copyfileobj(data, out)
        os.replace(temp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _kept(net: netns.NetnsPair, home: Path) -> None:
    """What to type to go on where the tour stopped, and to remove it all afterwards."""
    command = shutil.which("pcapdump") or f"{sys.executable} -m pcapdump"
    go = f"ip netns exec {net.cap_ns} env PCAPDUMP_HOME={home} {command}"
    send = f"for i in 1 2 3; do echo hello > /dev/udp/{netns.CAP_V4}/53; done"
    _say(
        "\nThe network and the agent are still there (-keep). Go on by hand, for instance:\n"
        f"  {go} wipe\n"
        f"  {go} udp start int\n"
        f"  ip netns exec {net.snd_ns} bash -c '{send}'    # 3 datagrams from {netns.SND_V4}\n"
        f"  {go} stop\n"
        f"  {go} show\n"
        "When done, remove everything:\n"
        f"  {go} cleanup; ip netns del {net.cap_ns}; ip netns del {net.snd_ns}; rm -r {home}"
    )


def run(keep: bool = False) -> None:
    if os.geteuid() != 0:
        raise CaptureError("pcapdump demo needs root: it makes network namespaces (sudo pcapdump demo)")
    if shutil.which("ip") is None:
        raise CaptureError("pcapdump demo needs iproute2's `ip` (apt-get install iproute2)")
    home = Path(tempfile.mkdtemp(prefix="pcapdump-demo-"))
    kept = Path.cwd() / "pcapdump-demo.cap"
    if not os.access(Path.cwd(), os.W_OK):
        kept = Path(tempfile.gettempdir()) / "pcapdump-demo.cap"
    net: netns.NetnsPair | None = None
    handed_over = False  # -keep: the user has the network and the agent now
    try:
        # Made inside the `try`: a Ctrl-C at any moment leaves nothing behind.
        net = netns.create("pcapdump-demo")
        _say(
            f"A private network: namespace {net.cap_ns} has `int` ({netns.CAP_V4}), namespace {net.snd_ns}\n"
            f"has `ext` ({netns.SND_V4}); a web service runs on {netns.CAP_V4}:80.\n"
            f"We capture TCP from {netns.SND_V4} on `int` in a 1 MB buffer:"
        )
        _pcapdump(net, home, *SESSION[0])
        _say(f"\nFrom {netns.SND_V4}: 3 web requests, and 5 UDP datagrams the filter leaves out.")
        _traffic(net, 3)
        time.sleep(0.1)
        for words in SESSION[1:]:
            click.echo()
            _pcapdump(net, home, *words)
        _keep(home / "store" / "capture.cap", kept)
        _say(
            f"\nThe file is kept as {kept}.\n"
            f"Open it with `wireshark {kept}` or `tcpdump -nr {kept}`.\n"
            "From a gateway you would fetch it with `fwctl --filedownload capture.cap local.cap site:gw1`."
        )
        if keep:
            _kept(net, home)
            handed_over = True
    finally:
        # Cleaning up must not be cut short by another Ctrl-C: ignore it here, and run the cleanup
        # commands in their own session, out of reach of the terminal's signals.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if not handed_over:
                _remove(net, home)
        finally:
            signal.signal(signal.SIGINT, previous)


def _remove(net: netns.NetnsPair | None, home: Path) -> None:
    if net is not None:
        subprocess.run(
            ["ip", "netns", "exec", net.cap_ns, sys.executable, "-m", "pcapdump", "cleanup"],
            env={**os.environ, "PCAPDUMP_HOME": str(home)},
            capture_output=True,
            timeout=30,
            check=False,
            start_new_session=True,
        )
        netns.destroy(net)
    shutil.rmtree(home, ignore_errors=True)
    click.secho("Removed the namespaces, the agent and its folder.", fg="cyan")
