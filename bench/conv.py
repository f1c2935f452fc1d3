"""Conversations benchmark: `pcapdump read f -conv` against `tshark -q -z conv,tcp -z conv,udp`.

  python bench/conv.py [--frames 20000000] [--flows 10000,1000000] [--rounds 1] [--dir /tmp]

Server ports are ones no tshark dissector claims, so tshark dissects no payload: its fastest case, which
keeps the ratio honest. Workloads of the same number of frames (TCP and UDP both ways, 60…1514 bytes,
IPv4, a tenth with a VLAN tag), by default with few conversations (10 000) and with many (1 000 000). The
tools take turns over the same page-cached file, with the same TZ, their output thrown away. For each:
median wall time, peak resident set, the ratio, and the floor: `cat` of the file to /dev/null. The two
workloads' peak memory shows what ours grows with: conversations, not packets; a child's peak starts from
what this process holds when it forks, printed as `true`'s. Needs tshark, and the package installed from
the release wheel (`make wheel`).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from table import run_peak

ENV = {**os.environ, "TZ": "UTC"}


def flow_headers(rng: random.Random, flows: int) -> list[tuple[bytes, bytes]]:
    """For each conversation, the Ethernet+IP+transport header each way (lengths patched per frame)."""
    out = []
    for i in range(flows):
        tagged = i % 10 == 0
        proto = 6 if i % 3 else 17
        client = bytes([198, 18, (i >> 8) & 0xFF, i & 0xFF])
        server = bytes([198, 19, (i >> 16) & 0xFF, rng.randrange(1, 255)])
        # Server ports no tshark dissector claims: it dissects no payload, its fastest case.
        cport, sport = 30000 + (i * 7919) % 30000, rng.choice([20001, 20002, 20003, 20004])
        pair = []
        for src, dst, sp, dp in ((client, server, cport, sport), (server, client, sport, cport)):
            eth = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02"
            eth += struct.pack("!HHH", 0x8100, 1 + i % 4000, 0x0800) if tagged else b"\x08\x00"
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 0, 0, 64, proto, 0, src, dst)
            if proto == 6:
                l4 = struct.pack("!HHIIBBHHH", sp, dp, 1, 1, 0x50, 0x18, 65535, 0, 0)
            else:
                l4 = struct.pack("!HHHH", sp, dp, 0, 0)
            pair.append(eth + ip + l4)
        out.append((pair[0], pair[1]))
    return out


def make_capture(path: Path, frames: int, flows: int, seed: int = 5) -> None:
    rng = random.Random(seed)
    headers = flow_headers(rng, flows)
    sizes = [60] * 6 + [120, 300, 576, 1514]
    # Each TCP direction's sequence number moves on by what it sent, and acknowledges the other's: a
    # stream tshark's TCP analysis takes as an ordinary one (not a storm of retransmissions).
    seqs = [[rng.randrange(1 << 32), rng.randrange(1 << 32)] for _ in range(flows)]
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        chunk = []
        for n in range(frames):
            flow, way = rng.randrange(flows), n & 1
            head = headers[flow][way]
            size = max(rng.choice(sizes), len(head))
            frame = bytearray(head) + bytes(size - len(head))
            ip_at = 18 if frame[12:14] == b"\x81\x00" else 14
            frame[ip_at + 2 : ip_at + 4] = struct.pack("!H", size - ip_at)
            if frame[ip_at + 9] == 17:
                frame[ip_at + 24 : ip_at + 26] = struct.pack("!H", size - ip_at - 20)
            else:
                seq, ack = seqs[flow][way], seqs[flow][1 - way]
                frame[ip_at + 24 : ip_at + 32] = struct.pack("!II", seq, ack)
                seqs[flow][way] = (seq + size - len(head)) & 0xFFFFFFFF
            sec, usec = divmod(n, 1_000_000)
            chunk.append(struct.pack("<IIII", 1_790_000_000 + sec, usec, size, size) + frame)
            if len(chunk) >= 65536:
                f.write(b"".join(chunk))
                chunk.clear()
        f.write(b"".join(chunk))


def warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=20_000_000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--flows", default="10000,1000000", help="conversations per workload, comma-separated")
    args = ap.parse_args()
    pcapdump = shutil.which("pcapdump", path=str(Path(sys.executable).parent)) or "pcapdump"
    tshark = shutil.which("tshark")
    if not tshark:
        sys.exit("bench: tshark is not installed")
    work = Path(tempfile.mkdtemp(prefix="pcapdump-conv-", dir=args.dir))
    try:
        for flows in (int(n) for n in args.flows.split(",")):
            path = work / f"conv-{flows}.pcap"
            # Made by another process: this one stays small, so that the peak memory a run reports (a
            # child's starts from its parent's at the fork) is the tool's.
            made = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import conv; "
            made += f"conv.make_capture(__import__('pathlib').Path({str(path)!r}), {args.frames}, {flows})"
            subprocess.run([sys.executable, "-c", made], check=True)
            size_mb = path.stat().st_size / 1e6
            print(f"\n{args.frames} frames, {flows} conversations, {size_mb:.0f} MB", flush=True)
            runs: dict[str, list[tuple[float, int]]] = {"pcapdump": [], "tshark": [], "cat": [], "true": []}
            commands = {
                "pcapdump": [pcapdump, "read", str(path), "-conv", "-json"],
                "tshark": [tshark, "-n", "-r", str(path), "-q", "-z", "conv,tcp", "-z", "conv,udp"],
                "cat": ["cat", str(path)],
                "true": ["true"],
            }
            counted = {}
            for _ in range(args.rounds):
                for name, cmd in commands.items():
                    warm(path)
                    elapsed, peak, out = run_peak(cmd, Path(os.devnull) if name == "cat" else None)
                    runs[name].append((elapsed, peak))
                    if name == "pcapdump":
                        counted["pcapdump"] = out.count("\n")
                    elif name == "tshark":
                        counted["tshark"] = sum(1 for line in out.splitlines() if "<->" in line)
            med = {name: statistics.median(t for t, _ in r) for name, r in runs.items()}
            for name, r in runs.items():
                peak_mb = max(p for _, p in r) / 1e6
                each = ", ".join(f"{t:.2f}" for t, _ in r)
                print(f"  {name:<9} median {med[name]:8.2f} s  peak {peak_mb:8.1f} MB  runs {each}")
            print(f"  conversations: pcapdump {counted['pcapdump']}, tshark {counted['tshark']}")
            print(f"  ratio     tshark / pcapdump = {med['tshark'] / med['pcapdump']:.1f}x")
            print(f"  floor     pcapdump / cat = {med['pcapdump'] / med['cat']:.1f}x")
            path.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
