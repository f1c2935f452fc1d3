"""Offline benchmark: `pcapdump read` against `tcpdump -r`, side by side in one run, with the floors.

  python bench/offline.py [--sparse-frames 20000000] [--dense-frames 5000000] [--rounds 3] [--dir /tmp]

Two generated corpora, page-cached before the first run:
  sparse: small frames (60-150 bytes), ~2 % kept by `ipsrc 198.18.0.1 tcp`;
  dense:  frames of 60-1514 bytes, ~60 % kept by `tcp`.
Both mix TCP/UDP/ICMP over IPv4 and IPv6, 802.1Q-tagged frames and ARP, with timestamps that move on
through the file as a real capture's do.

Figures (every one printed):
  filter + write on each corpus: `pcapdump read F <words> -w out` against `tcpdump -r F -w out '<expr>'`
    (the same packets, VLAN-tagged ones included); both outputs are compared byte for byte after the runs;
  brief lines of every packet of the dense corpus: `pcapdump read F` against `tcpdump -nn -r F`, both into
    /dev/null; the line counts are compared once, outside the timing;
  floors: `cat F > /dev/null` (reading the page-cached file) and `dd` of tcpdump's output into a new file
    (writing the same bytes through the page cache).
Fairness: both tools run with TZ=UTC (tcpdump without it asks for the local time zone on every packet);
outputs go to the same folder (one file system), and every output is deleted, and the dirty pages synced,
before a run starts, never inside its timing. Runs alternate (pcapdump, tcpdump, floors, pcapdump, ...).
Wall time and CPU time (user + system, all threads) come from wait4 of each whole process, peak resident
memory from GNU time; the medians are printed with their ratios. Needs the package installed from the
release wheel (`make wheel`), tcpdump, GNU time (/usr/bin/time) and numpy (in the test extras).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

try:
    import numpy as np
except ImportError:  # the test extras have it: pip install '.[test]'
    sys.exit("bench: needs numpy (pip install numpy, or the test extras: pip install '.[test]')")

# One environment for every command timed: the same time zone setting for both tools.
ENV = {**os.environ, "TZ": "UTC"}

TIME = "/usr/bin/time"
SPARSE_WORDS = ["ipsrc", "198.18.0.1", "tcp"]
SPARSE_EXPR = "(ip src 198.18.0.1 and tcp) or (vlan and ip src 198.18.0.1 and tcp)"
DENSE_WORDS = ["tcp"]
DENSE_EXPR = "tcp or (vlan and tcp)"


def ether(ethertype: int, tag: int | None) -> bytes:
    head = bytes.fromhex("020000000002020000000001")
    if tag is not None:
        head += struct.pack("!HH", 0x8100, tag)
    return head + struct.pack("!H", ethertype)


def ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    s = bytes(int(x) for x in src.split("."))
    d = bytes(int(x) for x in dst.split("."))
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0x4000, 64, proto, 0, s, d) + payload


def ipv6(proto: int, payload: bytes) -> bytes:
    src = bytes.fromhex("20010db8000000000000000000000001")
    dst = bytes.fromhex("20010db8000000000000000000000002")
    return struct.pack("!IHBB", 0x60000000, len(payload), proto, 64) + src + dst + payload


def tcp(sport: int, dport: int, size: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, 0x18, 64240, 0, 0) + b"x" * size


def udp(sport: int, dport: int, size: int) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + size, 0) + b"u" * size


def templates(
    rng: np.random.Generator, n: int, source_one: float, tcp_share: float, sizes: str
) -> list[bytes]:
    """`n` frames: a share `tcp_share` TCP, the IPv4 ones from 198.18.0.1 with probability `source_one`;
    payload sizes small (`sizes="small"`) or spread from minimal to full-size frames."""
    others = ["198.18.0.2", "198.18.1.7", "198.19.0.9", "198.18.0.10"]
    out = []
    for _ in range(n):
        src = "198.18.0.1" if rng.random() < source_one else str(rng.choice(others))
        dst = str(rng.choice(others))
        tag = 100 if rng.random() < 0.25 else None
        if sizes == "small":
            size = int(rng.integers(0, 80))
        else:
            size = int(rng.choice([0, 0, 6, 40, 200, 536, 1000, 1400, 1400, 1400, 1440, 1460]))
        kind = rng.random()
        sport, dport = int(rng.integers(1024, 65535)), int(rng.choice([80, 443, 22, 8080]))
        if kind < tcp_share * 0.9:
            f = ether(0x0800, tag) + ipv4(src, dst, 6, tcp(sport, dport, size))
        elif kind < tcp_share:
            f = ether(0x86DD, tag) + ipv6(6, tcp(dport, sport, size))
        elif kind < tcp_share + (1 - tcp_share) * 0.7:
            f = ether(0x0800, tag) + ipv4(src, dst, 17, udp(sport, 53, min(size, 1472)))
        elif kind < tcp_share + (1 - tcp_share) * 0.8:
            f = ether(0x86DD, tag) + ipv6(17, udp(sport, 53, min(size, 1452)))
        elif kind < tcp_share + (1 - tcp_share) * 0.95:
            f = ether(0x0800, tag) + ipv4(src, dst, 1, struct.pack("!BBHHH", 8, 0, 0, 1, 1) + b"p" * 56)
        else:
            f = ether(0x0806, None) + bytes.fromhex("0001080006040001") + bytes(20)
        out.append(f.ljust(60, b"\0")[:1514])
    return out


def make_capture(path: Path, frames: int, tmpl: list[bytes], seconds: int) -> None:
    """A classic pcap (µs, little-endian) of `frames` records cycling through `tmpl`, timestamps evenly
    spread over `seconds` from 2023-11-14 22:13:20 UTC."""
    block = bytearray()
    starts = []
    for f in tmpl:
        starts.append(len(block))
        block += struct.pack("<IIII", 0, 0, len(f), len(f)) + f
    base = np.frombuffer(bytes(block), dtype=np.uint8)
    starts_a = np.array(starts, dtype=np.int64)
    sec_at = starts_a[:, None] + np.arange(4)
    usec_at = sec_at + 4
    gap_us = seconds * 1_000_000 / frames
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        done = 0
        while done < frames:
            take = min(len(tmpl), frames - done)
            at_us = (1_700_000_000 * 1_000_000 + ((done + np.arange(take)) * gap_us)).astype(np.int64)
            chunk = base.copy()
            secs = (at_us // 1_000_000).astype("<u4").view(np.uint8).reshape(-1, 4)
            usecs = (at_us % 1_000_000).astype("<u4").view(np.uint8).reshape(-1, 4)
            chunk[sec_at[:take]] = secs
            chunk[usec_at[:take]] = usecs
            end = starts[take] if take < len(tmpl) else len(block)
            out.write(chunk[:end].tobytes())
            done += take


@dataclass
class Run:
    wall: float
    cpu: float
    rss_mb: float


def timed(cmd: list[str], work: Path, output: Path | None = None) -> Run:
    # No earlier output to delete and no dirty pages being written back when the clock starts.
    if output is not None:
        output.unlink(missing_ok=True)
    os.sync()
    # Peak memory as GNU time reads it for the command it starts: a child started straight from here
    # would carry this interpreter's high-water mark across its exec.
    peak = work / "peak"
    start = time.perf_counter()
    proc = subprocess.Popen(
        [TIME, "-f", "%M", "-o", str(peak), *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed ({proc.returncode}): {err.decode(errors='replace')}")
    rss_kb = int(peak.read_text().split()[-1])
    return Run(wall, usage.ru_utime + usage.ru_stime, rss_kb / 1024)


def warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def summary(name: str, runs: list[Run]) -> Run:
    med = Run(*(statistics.median(getattr(r, k) for r in runs) for k in ("wall", "cpu", "rss_mb")))
    walls = ", ".join(f"{r.wall:.3f}" for r in runs)
    print(
        f"  {name:<9} median wall {med.wall:7.3f} s  cpu {med.cpu:7.3f} s  peak RSS {med.rss_mb:7.1f} MB"
        f"  (runs {walls})"
    )
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sparse-frames", type=int, default=20_000_000)
    ap.add_argument("--dense-frames", type=int, default=5_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path("/tmp"), help="work folder, on the outputs' file system")
    args = ap.parse_args()
    pcapdump = shutil.which("pcapdump", path=str(Path(sys.executable).parent)) or shutil.which("pcapdump")
    tcpdump, cat, dd = shutil.which("tcpdump"), shutil.which("cat"), shutil.which("dd")
    if not (pcapdump and tcpdump and cat and dd and os.access(TIME, os.X_OK)):
        sys.exit(f"bench: needs the pcapdump command (pip install .), tcpdump, cat, dd and {TIME} (GNU time)")
    if not args.dir.is_dir():
        sys.exit(f"bench: --dir {args.dir}: no such folder")
    work = args.dir / f"pcapdump-bench-{os.getpid()}"
    work.mkdir()
    try:
        rng = np.random.default_rng(1)
        sparse, dense = work / "sparse.pcap", work / "dense.pcap"
        print(f"generating {args.sparse_frames:,} and {args.dense_frames:,} frames in {work} ...", flush=True)
        make_capture(sparse, args.sparse_frames, templates(rng, 4000, 0.05, 0.4, "small"), 1000)
        make_capture(dense, args.dense_frames, templates(rng, 4000, 0.3, 0.6, "spread"), 500)
        for p in (sparse, dense):
            warm(p)
            print(f"  {p.name}: {p.stat().st_size / 1e9:.2f} GB (page-cached)")
        version = subprocess.run([tcpdump, "--version"], capture_output=True, text=True).stdout
        print(f"tcpdump: {version.splitlines()[0]}; pcapdump: {pcapdump}")
        print(
            f"machine: {os.cpu_count()} CPUs; TZ=UTC for every command; {args.rounds} alternating rounds;"
            f" outputs in {work}\n"
        )
        ratios = {}
        ours, theirs, copy = work / "ours.cap", work / "theirs.cap", work / "dd.cap"
        for name, path, words, expr in (
            ("sparse", sparse, SPARSE_WORDS, SPARSE_EXPR),
            ("dense", dense, DENSE_WORDS, DENSE_EXPR),
        ):
            cmds = {
                "pcapdump": ([pcapdump, "read", str(path), *words, "-w", str(ours)], ours),
                "tcpdump": ([tcpdump, "-r", str(path), "-w", str(theirs), expr], theirs),
                "cat": ([cat, str(path)], None),
            }
            runs: dict[str, list[Run]] = {k: [] for k in (*cmds, "dd")}
            for _ in range(args.rounds):
                for key, (cmd, out) in cmds.items():
                    runs[key].append(timed(cmd, work, out))
                dd_cmd = [dd, f"if={theirs}", f"of={copy}", "bs=1M", "status=none"]
                runs["dd"].append(timed(dd_cmd, work, copy))
            kept = (theirs.stat().st_size, ours.stat().st_size)
            same = filecmp.cmp(ours, theirs, shallow=False)
            size = path.stat().st_size / 1e9
            print(f"filter + write, {name} corpus ({size:.2f} GB), words {' '.join(words)}:")
            med = {k: summary(k if k != "dd" else "dd (out)", v) for k, v in runs.items()}
            print(
                f"  outputs: {kept[1]:,} and {kept[0]:,} bytes ({kept[0] / path.stat().st_size:.0%} of the"
                f" input), {'byte-identical' if same else 'DIFFERENT'}"
            )
            ratios[f"{name} filter+write vs tcpdump"] = med["tcpdump"].wall / med["pcapdump"].wall
            ratios[f"{name} filter+write / cat"] = med["pcapdump"].wall / med["cat"].wall
            print(
                f"  tcpdump / pcapdump {med['tcpdump'].wall / med['pcapdump'].wall:.2f}x wall,"
                f" {med['tcpdump'].cpu / med['pcapdump'].cpu:.2f}x cpu;"
                f" pcapdump / cat {med['pcapdump'].wall / med['cat'].wall:.2f}x;"
                f" pcapdump / (cat + dd) {med['pcapdump'].wall / (med['cat'].wall + med['dd'].wall):.2f}x\n"
            )
            for f in (ours, theirs, copy):
                f.unlink(missing_ok=True)
            if not same:
                sys.exit(f"bench: the two tools wrote different packets from the {name} corpus")

        lines = {
            "pcapdump": [pcapdump, "read", str(dense)],
            "tcpdump": [tcpdump, "-nn", "-r", str(dense)],
        }
        counts = {}
        for key, cmd in lines.items():
            with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=ENV) as proc:
                assert proc.stdout is not None
                counts[key] = sum(
                    chunk.count(b"\n") for chunk in iter(lambda: proc.stdout.read(1 << 20), b"")
                )
        runs = {k: [] for k in lines}
        for _ in range(args.rounds):
            for key, cmd in lines.items():
                runs[key].append(timed(cmd, work))
        print(f"brief lines of every packet, dense corpus, into /dev/null ({args.dense_frames:,} frames):")
        med = {k: summary(k, v) for k, v in runs.items()}
        print(f"  lines: {counts['pcapdump']:,} and {counts['tcpdump']:,}")
        ratios["brief lines vs tcpdump -nn"] = med["tcpdump"].wall / med["pcapdump"].wall
        print(
            f"  tcpdump / pcapdump {med['tcpdump'].wall / med['pcapdump'].wall:.2f}x wall,"
            f" {med['tcpdump'].cpu / med['pcapdump'].cpu:.2f}x cpu\n"
        )
        # The targets: (at least, at most).
        targets = {
            "sparse filter+write vs tcpdump": (3.0, None),
            "dense filter+write vs tcpdump": (2.0, None),
            "sparse filter+write / cat": (None, 3.0),
            "brief lines vs tcpdump -nn": (5.0, None),
        }
        print("summary (wall-time medians):")
        for key, value in ratios.items():
            low, high = targets.get(key, (None, None))
            if low is None and high is None:
                verdict = ""
            else:
                met = (low is None or value >= low) and (high is None or value <= high)
                bound = f">= {low}" if low is not None else f"<= {high}"
                verdict = f"target {bound}: {'met' if met else 'MISSED'}"
            print(f"  {key:<34} {value:6.2f}x   {verdict}")
        if len(set(counts.values())) != 1 or counts["pcapdump"] != args.dense_frames:
            sys.exit("bench: the two tools printed different numbers of lines")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
