"""Every compiled program loads into the kernel: the socket filter checker is the judge of jumps,
scratch memory use and lengths. Needs a packet socket, so root (or CAP_NET_RAW); in CI that is a
failure, not a skip."""

from __future__ import annotations

import ctypes
import random
import socket
import struct

import pcapdump
import pytest
from conftest import IN_CI
from test_filter_vs_libpcap import draw_filter

SOL_SOCKET = 1
SO_ATTACH_FILTER = 26


def packet_socket() -> socket.socket:
    try:
        return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except PermissionError:
        if IN_CI:
            pytest.fail("CI runs as root: a packet socket must open")
        pytest.skip("needs root or CAP_NET_RAW")


def attach(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    code = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(code)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(SOL_SOCKET, SO_ATTACH_FILTER, fprog)


FIXED = [
    "",
    "ipsrc 198.18.0.1 tcp",
    "port 80 port 443 ip 2001:db8::/32 vlan 5 vlan 7",
    "eth aa:bb:cc:dd:ee:ff arp",
    "not port 22",
    "tcpflags syn tcpflags rst icmptype echo icmptype unreach vlan 5 not tcpflags ack",
    "tcp not port 22 not ip 2001:db8::/32 not vlan 5 not eth aa:bb:cc:dd:ee:ff not arp",
    " ".join(f"port {p}" for p in range(1, 400)),  # long enough to need far jumps
]


@pytest.mark.parametrize("text", FIXED)
def test_fixed_programs_load(text):
    with packet_socket() as s:
        attach(s, pcapdump.Filter(text).bpf(96))


def test_random_programs_load():
    with packet_socket() as s:
        for seed in range(300):
            words = draw_filter(random.Random(seed), excluding=seed % 2 == 1, flags_and_types=seed % 3 == 0)
            text = " ".join(w if v is None else f"{w} {v}" for w, v in words)
            attach(s, pcapdump.Filter(text).bpf())


def test_the_kernel_refuses_a_broken_program():
    """Guards the test above: a program the checker must reject (reads scratch memory never written)."""
    with packet_socket() as s, pytest.raises(OSError):
        attach(s, [(0x60, 0, 0, 3), (0x16, 0, 0, 0)])
