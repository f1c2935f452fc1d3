"""A private network for live captures: two network namespaces joined by a veth pair.

    capture namespace  "int"  198.18.0.2/24  2001:db8::2/64      <- pcapdump captures here
    sender namespace   "ext"  198.18.0.1/24  2001:db8::1/64

Used by ``pcapdump demo`` and by the live tests. Neighbours are static, so no ARP or neighbour discovery
adds packets to the counts. Traffic goes only to these addresses (198.18.0.0/15 and 2001:db8::/32, set aside
for tests), and every sender is bounded in count and time. Needs root.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

CLONE_NEWNET = 0x40000000

CAP_V4, SND_V4 = "198.18.0.2", "198.18.0.1"
CAP_V6, SND_V6 = "2001:db8::2", "2001:db8::1"

# Runs in the sender's (or capture) namespace: sends `count` datagrams, then exits. The payload starts with
# the datagram's number so a test can tell which ones were kept.
SENDER = r"""
import socket, sys, time
family, dst = sys.argv[1], sys.argv[2]
port, count, size, pause_every = (int(a) for a in sys.argv[3:7])
fam = socket.AF_INET6 if family == "6" else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
deadline = time.monotonic() + 20
for i in range(count):
    s.sendto(i.to_bytes(4, "big") + b"p" * max(0, size - 4), (dst, port))
    if pause_every and i % pause_every == pause_every - 1:
        time.sleep(0.002)
    if time.monotonic() > deadline:
        sys.exit("sender: out of time")
"""

# TCP connections to a port where nobody listens: each is a SYN in and a RST out on the capture side.
CONNECTOR = r"""
import socket, sys
dst, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(count):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect((dst, port))
    except OSError:
        pass
    s.close()
"""


def run(*cmd: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")
    return done.stdout


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


@dataclass
class NetnsPair:
    cap_ns: str
    snd_ns: str

    @contextmanager
    def on_capture_side(self) -> Iterator[None]:
        """Run the block in the capture namespace (this thread only): sockets opened there stay there."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            _setns(f"/run/netns/{self.cap_ns}")
            yield
        finally:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.setns(home, CLONE_NEWNET)
            os.close(home)

    def in_ns(self, ns: str, *cmd: str) -> str:
        return run("ip", "netns", "exec", ns, *cmd)

    def send_udp(
        self,
        dst: str,
        port: int,
        count: int,
        size: int = 64,
        pause_every: int = 0,
        ns: str | None = None,
    ) -> None:
        family = "6" if ":" in dst else "4"
        self.in_ns(
            ns or self.snd_ns,
            sys.executable,
            "-c",
            SENDER,
            family,
            dst,
            str(port),
            str(count),
            str(size),
            str(pause_every),
        )

    def connect_tcp(self, dst: str, port: int, count: int) -> None:
        self.in_ns(self.snd_ns, sys.executable, "-c", CONNECTOR, dst, str(port), str(count))

    def link_details(self, iface: str = "int") -> str:
        return self.in_ns(self.cap_ns, "ip", "-d", "link", "show", iface)


P = TypeVar("P", bound="NetnsPair")


def mac_of(ns: str, iface: str) -> str:
    out = run("ip", "-n", ns, "-o", "link", "show", iface)
    return out.split("link/ether ")[1].split()[0]


def create(prefix: str = "pcapdump", kind: type[P] = NetnsPair) -> P:  # type: ignore[assignment]
    """A fresh pair, named `<prefix>-cap-<random>` and `<prefix>-snd-<random>`."""
    tag = uuid.uuid4().hex[:6]
    net = kind(cap_ns=f"{prefix}-cap-{tag}", snd_ns=f"{prefix}-snd-{tag}")
    try:
        run("ip", "netns", "add", net.cap_ns)
        run("ip", "netns", "add", net.snd_ns)
        c, s = ("ip", "-n", net.cap_ns), ("ip", "-n", net.snd_ns)
        run(
            "ip",
            "link",
            "add",
            "int",
            "netns",
            net.cap_ns,
            "type",
            "veth",
            "peer",
            "name",
            "ext",
            "netns",
            net.snd_ns,
        )
        for ns in (net.cap_ns, net.snd_ns):
            # Quiet links: no router solicitations or duplicate address probes in the counts.
            for key in ("all", "default"):
                run("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.accept_dad=0")
                run("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.router_solicitations=0")
        run(*c, "addr", "add", f"{CAP_V4}/24", "dev", "int")
        run(*c, "addr", "add", f"{CAP_V6}/64", "dev", "int", "nodad")
        run(*s, "addr", "add", f"{SND_V4}/24", "dev", "ext")
        run(*s, "addr", "add", f"{SND_V6}/64", "dev", "ext", "nodad")
        for cmd in (c, s):
            run(*cmd, "link", "set", "lo", "up")
        run(*c, "link", "set", "int", "up")
        run(*s, "link", "set", "ext", "up")
        cap_mac, snd_mac = mac_of(net.cap_ns, "int"), mac_of(net.snd_ns, "ext")
        run(*s, "neigh", "replace", CAP_V4, "lladdr", cap_mac, "dev", "ext", "nud", "permanent")
        run(*s, "neigh", "replace", CAP_V6, "lladdr", cap_mac, "dev", "ext", "nud", "permanent")
        run(*c, "neigh", "replace", SND_V4, "lladdr", snd_mac, "dev", "int", "nud", "permanent")
        run(*c, "neigh", "replace", SND_V6, "lladdr", snd_mac, "dev", "int", "nud", "permanent")
    except BaseException:
        destroy(net)
        raise
    return net


def destroy(net: NetnsPair) -> None:
    for ns in (net.cap_ns, net.snd_ns):
        subprocess.run(
            ["ip", "netns", "del", ns], capture_output=True, check=False, timeout=30, start_new_session=True
        )
