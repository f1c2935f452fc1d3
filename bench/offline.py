"""Offline benchmark: `pcapdump read` against `tcpdump -r`, side by side in one run.

  python bench/offline.py [--frames 20000000] [--lines-frames 5000000] [--rounds 3] [--dir /tmp]

1. filter + write: `pcapdump read big ipsrc 198.18.0.1 tcp -w out` against
   `tcpdump -r big -w out '(ip src 198.18.0.1 and tcp) or (vlan and ip src 198.18.0.1 and tcp)'`;
   both outputs are checked to hold the same packets (they are byte-identical files).
2. brief lines: `pcapdump read big5 > /dev/null` against `tcpdump -nn -r big5 > /dev/null`.
Runs alternate (ours, theirs, ours, …) over page-cached input; the median wall time of each is printed
with the ratio. Needs the package installed from the release wheel (`make wheel`).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path


def frame_templates(rng: random.Random) -> list[bytes]:
    """A mix like a gateway's: TCP/UDP over IPv4 and IPv6, some 802.1Q, ICMP, ARP; ~1 in 5 matches."""

    def ether(ethertype: int, tag: int | None) -> bytes:
        head = bytes.fromhex("020000000002020000000001")
        if tag is not None:
            head += struct.pack("!HH", 0x8100, tag)
        return head + struct.pack("!H", ethertype)

    def ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
        s = bytes(int(x) for x in src.split("."))
        d = bytes(int(x) for x in dst.split("."))
        return (
            struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0x4000, 64, proto, 0, s, d) + payload
        )

    def tcp(sport: int, dport: int, size: int) -> bytes:
        return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, 0x18, 64240, 0, 0) + b"x" * size

    def udp(sport: int, dport: int, size: int) -> bytes:
        return struct.pack("!HHHH", sport, dport, 8 + size, 0) + b"u" * size

    out = []
    sources = ["198.18.0.1", "198.18.0.2", "198.18.1.7", "198.19.0.9", "198.18.0.10"]
    for _ in range(2000):
        src = rng.choice(sources)
        dst = rng.choice(sources)
        tag = rng.choice([None, None, None, 100])
        kind = rng.random()
        if kind < 0.55:
            f = ether(0x0800, tag) + ipv4(
                src,
                dst,
                6,
                tcp(rng.randint(1024, 65535), rng.choice([80, 443, 22]), rng.choice([0, 0, 40, 200, 1400])),
            )
        elif kind < 0.8:
            f = ether(0x0800, tag) + ipv4(
                src, dst, 17, udp(rng.randint(1024, 65535), 53, rng.choice([30, 120]))
            )
        elif kind < 0.9:
            ip6 = struct.pack("!IHBB", 0x60000000, 20 + 16, 6, 64) + bytes(15) + b"\x01" + bytes(15) + b"\x02"
            f = ether(0x86DD, tag) + ip6 + tcp(443, 50000, 16)
        elif kind < 0.97:
            f = ether(0x0800, tag) + ipv4(src, dst, 1, struct.pack("!BBHHH", 8, 0, 0, 1, 1) + b"p" * 56)
        else:
            f = ether(0x0806, None) + bytes.fromhex("0001080006040001") + bytes(20)
        out.append(f)
    return out


def make_capture(path: Path, frames: int, rng: random.Random) -> None:
    templates = frame_templates(rng)
    block = bytearray()
    for i, f in enumerate(templates):
        block += struct.pack("<IIII", 1_700_000_000 + i // 1000, (i * 997) % 1_000_000, len(f), len(f)) + f
    reps, rest = divmod(frames, len(templates))
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        chunk = bytes(block) * 50
        for _ in range(reps // 50):
            out.write(chunk)
        for _ in range(reps % 50):
            out.write(block)
        for f in templates[:rest]:
            out.write(struct.pack("<IIII", 1_700_000_000, 0, len(f), len(f)) + f)


def timed(cmd: list[str], output: Path | None = None) -> float:
    # Start each run with no earlier output to delete (freeing and discarding its blocks is the file
    # system's work, not the tool's: tcpdump truncates, we rename over) and no dirty pages being written.
    if output is not None:
        output.unlink(missing_ok=True)
    os.sync()
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def compare(
    name: str, ours: list[str], theirs: list[str], rounds: int, outputs: tuple[Path | None, Path | None]
) -> float:
    t_ours, t_theirs = [], []
    for _ in range(rounds):
        t_ours.append(timed(ours, outputs[0]))
        t_theirs.append(timed(theirs, outputs[1]))
    mo, mt = statistics.median(t_ours), statistics.median(t_theirs)
    print(f"{name}:")
    print(f"  pcapdump  median {mo:7.3f} s  runs {', '.join(f'{t:.3f}' for t in t_ours)}")
    print(f"  tcpdump   median {mt:7.3f} s  runs {', '.join(f'{t:.3f}' for t in t_theirs)}")
    print(f"  ratio     tcpdump / pcapdump = {mt / mo:.2f}x")
    return mt / mo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=20_000_000)
    ap.add_argument("--lines-frames", type=int, default=5_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path("/tmp"), help="page-cached work folder (default /tmp)")
    args = ap.parse_args()
    pcapdump = shutil.which("pcapdump", path=str(Path(sys.executable).parent)) or shutil.which("pcapdump")
    tcpdump = shutil.which("tcpdump")
    if not pcapdump or not tcpdump:
        sys.exit("bench: needs the pcapdump command (pip install .) and tcpdump")
    work = args.dir / f"pcapdump-bench-{os.getpid()}"
    work.mkdir()
    try:
        rng = random.Random(1)
        big, small = work / "big.pcap", work / "big5.pcap"
        print(f"generating {args.frames:,} and {args.lines_frames:,} frames in {work} ...", flush=True)
        make_capture(big, args.frames, rng)
        make_capture(small, args.lines_frames, random.Random(2))
        for p in (big, small):
            warm(p)
            print(f"  {p.name}: {p.stat().st_size / 1e9:.2f} GB (page-cached)")
        version = subprocess.run([tcpdump, "--version"], capture_output=True, text=True).stdout
        print(f"tcpdump: {version.splitlines()[0]}")
        print(
            f"machine: {os.cpu_count()} CPUs; wall time of whole commands, {args.rounds} alternating rounds\n"
        )
        out_ours, out_theirs = work / "ours.cap", work / "theirs.cap"
        expr = "(ip src 198.18.0.1 and tcp) or (vlan and ip src 198.18.0.1 and tcp)"
        r1 = compare(
            f"filter + write ({args.frames:,} frames)",
            [pcapdump, "read", str(big), "ipsrc", "198.18.0.1", "tcp", "-w", str(out_ours)],
            [tcpdump, "-r", str(big), "-w", str(out_theirs), expr],
            args.rounds,
            (out_ours, out_theirs),
        )
        same = filecmp.cmp(out_ours, out_theirs, shallow=False)
        print(
            f"  outputs: {out_ours.stat().st_size:,} and {out_theirs.stat().st_size:,} bytes, "
            f"{'byte-identical' if same else 'DIFFERENT'}\n"
        )
        r2 = compare(
            f"brief lines to /dev/null ({args.lines_frames:,} frames)",
            [pcapdump, "read", str(small)],
            [tcpdump, "-nn", "-r", str(small)],
            args.rounds,
            (None, None),
        )
        print(f"\nsummary: filter+write {r1:.2f}x (target 3x), brief lines {r2:.2f}x (target 5x)")
        if not same:
            sys.exit("bench: the two tools wrote different packets")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
