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


class Gateway:
    """Three namespaces: a host inside (198.18.1.2), a routed gateway with `int` (198.18.1.1) and `ext`
    (198.18.2.1), and a host outside (198.18.2.2). Neighbours are static (no ARP in the counts), the
    outside host answers every datagram to a closed port with an ICMP error (no rate limit)."""

    INSIDE, GW_INT, GW_EXT, OUTSIDE = "198.18.1.2", "198.18.1.1", "198.18.2.1", "198.18.2.2"

    def __init__(self) -> None:
        import uuid

        tag = uuid.uuid4().hex[:6]
        self.inside_ns, self.gw_ns, self.outside_ns = (f"pdt-{n}-{tag}" for n in ("in", "gw", "out"))

    def create(self) -> Gateway:
        try:
            for ns in (self.inside_ns, self.gw_ns, self.outside_ns):
                run("ip", "netns", "add", ns)
                run("ip", "-n", ns, "link", "set", "lo", "up")
                run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            for gw_end, host_ns, gw_addr, host_addr in (
                ("int", self.inside_ns, self.GW_INT, self.INSIDE),
                ("ext", self.outside_ns, self.GW_EXT, self.OUTSIDE),
            ):
                run("ip", "link", "add", gw_end, "netns", self.gw_ns, "type", "veth", "peer", "name", "eth0",
                    "netns", host_ns)  # fmt: skip
                run("ip", "-n", self.gw_ns, "addr", "add", f"{gw_addr}/24", "dev", gw_end)
                run("ip", "-n", host_ns, "addr", "add", f"{host_addr}/24", "dev", "eth0")
                run("ip", "-n", self.gw_ns, "link", "set", gw_end, "up")
                run("ip", "-n", host_ns, "link", "set", "eth0", "up")
                run("ip", "-n", host_ns, "route", "add", "default", "via", gw_addr)
                gw_mac, host_mac = mac_of(self.gw_ns, gw_end), mac_of(host_ns, "eth0")
                run("ip", "-n", host_ns, "neigh", "replace", gw_addr, "lladdr", gw_mac, "dev", "eth0",
                    "nud", "permanent")  # fmt: skip
                run("ip", "-n", self.gw_ns, "neigh", "replace", host_addr, "lladdr", host_mac, "dev", gw_end,
                    "nud", "permanent")  # fmt: skip
            run("ip", "netns", "exec", self.gw_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            for key in ("net.ipv4.icmp_ratelimit=0", "net.ipv4.icmp_msgs_per_sec=100000",
                        "net.ipv4.icmp_msgs_burst=100000"):  # fmt: skip
                run("ip", "netns", "exec", self.outside_ns, "sysctl", "-qw", key)
        except BaseException:
            self.destroy()
            raise
        return self

    def destroy(self) -> None:
        import subprocess

        for ns in (self.inside_ns, self.gw_ns, self.outside_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False, timeout=30)

    def send_udp_outwards(self, port: int, count: int) -> None:
        """`count` datagrams from the inside host to `port` on the outside host, one at a time."""
        self.send_udp_from_inside(self.OUTSIDE, port, count)

    def send_udp_from_inside(self, dst: str, port: int, count: int) -> None:
        run("ip", "netns", "exec", self.inside_ns, sys.executable, "-c", base.SENDER, "4", dst, str(port),
            str(count), "64", "1")  # fmt: skip
