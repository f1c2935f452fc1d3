"""`conv` and `policy` over the capture buffer: as many conversations as the buffer holds (more than
one agent message may carry), filter words, several interfaces, and bad interface names."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import wait_until
from netns import CAP_V4, SND_V4
from session import one_line_error

# One datagram to each of `count` ports, from one socket: `count` conversations.
TO_EVERY_PORT = r"""
import socket, sys
dst, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 45000))
for port in range(first, first + count):
    s.sendto(b"c" * 16, (dst, port))
"""

PORTS = 45_000  # JSON lines of this many conversations are over 16 MiB: more than one message holds


@pytest.mark.timeout(180)
def test_conv_of_a_buffer_with_tens_of_thousands_of_conversations(pd, testnet):
    pd("-size", "65536", "udp", "srcport", "45000", "start", "int")
    testnet.in_ns(testnet.snd_ns, sys.executable, "-c", TO_EVERY_PORT, CAP_V4, "1000", str(PORTS))
    assert wait_until(lambda: pd.capture()["packets"] == PORTS, seconds=20), pd.capture()
    pd("stop", "int")
    lines = pd("conv", "int", "-json").stdout.splitlines()
    assert len(lines) == PORTS
    convs = [json.loads(line) for line in lines]
    assert {c["server_port"] for c in convs} == set(range(1000, 1000 + PORTS))
    assert all(c["client"] == SND_V4 and c["client_port"] == 45000 and c["iface"] == "int" for c in convs)
    assert all(c["state"] == "unanswered" and c["client_dir"] == "in" for c in convs)
    # Filter words narrow the packets first.
    few = pd("conv", "udp", "destport", "1000-1009", "-json").stdout.splitlines()
    assert sorted(json.loads(line)["server_port"] for line in few) == list(range(1000, 1010))
    table = pd("conv", "destport", "1000").stdout.splitlines()
    assert table[0].split()[:2] == ["proto", "client"] and table[-1] == "1 conversation"
    # Nothing answered: a drop-all ruleset, the conversations listed, a warning.
    policy = pd("policy", "int")
    assert "no answered conversation" in policy.stderr
    assert policy.stdout.count("#   unanswered") == PORTS


def test_conv_names_a_bad_interface(pd, testnet):
    pd("udp", "start", "int")
    testnet.send_udp(CAP_V4, 9000, 3)
    pd("stop")
    one_line_error(pd("conv", "nosuch0", ok=False), 1, "nosuch0")
    one_line_error(pd("policy", "int,int", ok=False), 2, "named twice")
    assert json.loads(pd("conv", "all", "-json").stdout.splitlines()[0])["server_port"] == 9000
