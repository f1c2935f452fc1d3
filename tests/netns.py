"""The live tests' network (see pcapdump.netns), plus what only tests need: 802.1Q frames and a look
at the capture namespace's packet sockets.

802.1Q traffic (198.18.100.1 -> 198.18.100.2, id 100) is written as whole tagged frames to a packet
socket on "ext": a VLAN sub-interface would need the 8021q module, which containers often lack. The
receiving kernel takes the tag out of the frame all the same (skb_vlan_untag) before any capture sees it.
"""

from __future__ import annotations

import sys

from pcapdump import netns as base
from pcapdump.netns import CAP_V4, CAP_V6, SND_V4, SND_V6, destroy, mac_of, run

__all__ = ["CAP_V4", "CAP_V6", "SND_V4", "SND_V6", "TestNet", "create", "destroy", "mac_of", "run"]

VLAN_ID, CAP_VLAN_V4, SND_VLAN_V4 = 100, "198.18.100.2", "198.18.100.1"

# Writes `count` 802.1Q-tagged IPv4/UDP frames to a packet socket on `ext`, numbered like SENDER's.
TAGGED_SENDER = r"""
import socket, struct, sys
dst_mac, src_mac, vlan, src, dst, port, count = sys.argv[1:8]
def csum(b):
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("ext", 0))
for i in range(int(count)):
    payload = i.to_bytes(4, "big") + b"v" * 28
    udp = struct.pack("!HHHH", 40000, int(port), 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", ""))
    s.send(eth + struct.pack("!HHH", 0x8100, int(vlan), 0x0800) + ip + udp)
"""


class TestNet(base.NetnsPair):
    def send_tagged_udp(self, port: int, count: int) -> None:
        self.in_ns(
            self.snd_ns,
            sys.executable,
            "-c",
            TAGGED_SENDER,
            mac_of(self.cap_ns, "int"),
            mac_of(self.snd_ns, "ext"),
            str(VLAN_ID),
            SND_VLAN_V4,
            CAP_VLAN_V4,
            str(port),
            str(count),
        )

    def packet_sockets(self) -> str:
        """`ss -0 -b`: the capture namespace's packet sockets with their attached BPF programs."""
        return self.in_ns(self.cap_ns, "ss", "-0", "-b", "-p")


def create() -> TestNet:
    return base.create("pdt", TestNet)
