"""A capture corpus built with scapy, an independent packet builder, and written with scapy's own writer.

Every frame gets a unique timestamp (second ``BASE + i``), so a set of timestamps identifies the frames a
tool kept. ``FRAMES[i].note`` says what is special about frame ``i``.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from pathlib import Path

from scapy.all import (  # type: ignore[import-untyped]
    ARP,
    ICMP,
    IP,
    LLC,
    SCTP,
    STP,
    TCP,
    UDP,
    Dot1AD,
    Dot1Q,
    Dot3,
    Ether,
    ICMPv6EchoRequest,
    ICMPv6ND_NS,
    IPOption_NOP,
    IPOption_RR,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    Raw,
    fragment,
)
from scapy.utils import RawPcapWriter  # type: ignore[import-untyped]

BASE = 1_700_000_000
MACS = ["02:00:00:00:00:01", "02:00:00:00:00:02", "ff:ff:ff:ff:ff:ff"]
V4 = ["198.18.0.1", "198.18.0.2", "198.19.1.1", "10.0.0.1", "192.168.0.1"]
V6 = ["2001:db8::1", "2001:db8::2", "2001:db8:1::1", "fe80::1"]
PORTS = [80, 443, 53, 8080, 8050, 40000, 22]
VLANS = [5, 7, 100]


@dataclass
class Frame:
    data: bytes
    wirelen: int
    tags: int = 0  # in-band 802.1Q tags
    ipv6_ext: bool = False  # IPv6 extension headers present
    truncated_at: int | None = None  # caplen when cut
    l3: int = 14  # offset of the network header

    @property
    def truncated(self) -> bool:
        return self.truncated_at is not None

    @property
    def is_ipv6(self) -> bool:
        return self.data[self.l3 - 2 : self.l3] == b"\x86\xdd"


def _l3_payloads(rng: random.Random) -> list[tuple[object, bool]]:
    """(network-layer packet, has IPv6 extension headers)."""
    out: list[tuple[object, bool]] = []
    for src, dst in itertools.permutations(V4[:4], 2):
        sport, dport = rng.sample(PORTS, 2)
        out.append((IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="S"), False))
        out.append((IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(b"x" * 12), False))
    out.append((IP(src=V4[0], dst=V4[4], options=[IPOption_NOP()] * 4) / TCP(sport=40000, dport=80), False))
    out.append((IP(src=V4[4], dst=V4[1], options=[IPOption_RR()]) / UDP(sport=53, dport=8050), False))
    out.append((IP(src=V4[0], dst=V4[1]) / ICMP(type=8) / Raw(b"ping"), False))
    out.append((IP(src=V4[1], dst=V4[0]) / ICMP(type=0) / Raw(b"pong"), False))
    out.append((IP(src=V4[2], dst=V4[3]) / SCTP(sport=80, dport=443), False))
    out.append((IP(src=V4[0], dst=V4[3], proto=47) / Raw(b"\x00" * 8), False))
    out.append((IP(src=V4[0], dst=V4[3], proto=103) / Raw(b"\x00" * 8), False))
    for frag in fragment(
        IP(src=V4[0], dst=V4[1]) / UDP(sport=53, dport=443) / Raw(b"y" * 1200), fragsize=512
    ):
        out.append((frag, False))
    for src, dst in itertools.permutations(V6[:3], 2):
        sport, dport = rng.sample(PORTS, 2)
        out.append((IPv6(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="PA") / Raw(b"hi"), False))
        out.append((IPv6(src=src, dst=dst) / UDP(sport=sport, dport=dport), False))
    out.append((IPv6(src=V6[0], dst=V6[1]) / ICMPv6EchoRequest(), False))
    out.append((IPv6(src=V6[3], dst=V6[0]) / ICMPv6ND_NS(tgt=V6[0]), False))
    out.append((IPv6(src=V6[0], dst=V6[2]) / SCTP(sport=443, dport=22), False))
    out.append((IPv6(src=V6[0], dst=V6[1]) / IPv6ExtHdrHopByHop() / UDP(sport=53, dport=80), True))
    out.append((IPv6(src=V6[1], dst=V6[0]) / IPv6ExtHdrDestOpt() / TCP(sport=80, dport=40000), True))
    out.append((IPv6(src=V6[1], dst=V6[2]) / IPv6ExtHdrRouting(addresses=[V6[0]]) / TCP(sport=443), True))
    out.append(
        (IPv6(src=V6[0], dst=V6[1]) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / UDP(sport=8080), True)
    )
    out.append((IPv6(src=V6[0], dst=V6[1]) / IPv6ExtHdrFragment(offset=0, m=1) / UDP(dport=53), True))
    out.append((IPv6(src=V6[0], dst=V6[1]) / IPv6ExtHdrFragment(offset=100, nh=17) / Raw(b"z" * 16), True))
    out.append((ARP(op=1, psrc=V4[0], pdst=V4[1], hwsrc=MACS[0]), False))
    out.append((ARP(op=2, psrc=V4[1], pdst=V4[0], hwsrc=MACS[1], hwdst=MACS[0]), False))
    return out


def build(seed: int = 7) -> list[Frame]:
    rng = random.Random(seed)
    frames: list[Frame] = []
    for net, ext in _l3_payloads(rng):
        src, dst = rng.sample(MACS[:2], 2)
        dst = MACS[2] if isinstance(net, ARP) and net.op == 1 else dst
        shapes = [(Ether(src=src, dst=dst) / net, 0)]
        vid = rng.choice(VLANS)
        shapes.append((Ether(src=src, dst=dst) / Dot1Q(vlan=vid) / net, 1))
        if rng.random() < 0.35:
            outer = rng.choice(VLANS)
            shapes.append((Ether(src=src, dst=dst) / Dot1AD(vlan=outer) / Dot1Q(vlan=vid) / net, 2))
        for pkt, tags in shapes:
            raw = bytes(pkt)
            frame = Frame(raw, len(raw), tags=tags, ipv6_ext=ext, l3=14 + 4 * tags)
            frames.append(frame)
            if rng.random() < 0.3:
                cut = rng.randrange(1, len(raw))
                frames.append(Frame(raw[:cut], len(raw), tags, ext, truncated_at=cut, l3=frame.l3))
    for src in MACS[:2]:
        raw = bytes(Dot3(src=src, dst="01:80:c2:00:00:00") / LLC() / STP())
        frames.append(Frame(raw, len(raw), l3=14))
    raw = bytes(Ether(src=MACS[0], dst=MACS[1], type=0x88CC) / Raw(b"\x02\x07" + b"\x00" * 40))
    frames.append(Frame(raw, len(raw)))
    return frames


def write(path: Path, frames: list[Frame], nano: bool = False, endianness: str = "") -> None:
    """Write the frames' bytes as they are (no re-dissection) with scapy's raw pcap writer."""
    with RawPcapWriter(str(path), linktype=1, nano=nano, endianness=endianness, snaplen=262144) as w:
        w.write_header(None)
        for i, f in enumerate(frames):
            frac = 123456789 if nano else 123456
            w.write_packet(f.data, sec=BASE + i, usec=frac, caplen=len(f.data), wirelen=f.wirelen)


def index_of(ts_seconds: float) -> int:
    return round(ts_seconds) - BASE
