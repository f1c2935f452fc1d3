"""Streaming benchmark: `pcapdump stream` against `tcpdump -U -w -`, side by side in one run.

  python bench/stream.py [--sparse 200] [--dense 2000000] [--rounds 3]

Needs root. A private pair of network namespaces joined by a veth pair (tests/netns.py); the tool runs in
the capture namespace pinned to CPU 1 and writes to a pipe this script reads; the sender is pinned to CPU 0
in the other namespace. Runs alternate between the tools, under the same conditions (TZ=UTC, same pipe
reader, same filter `udp`):

  sparse: --sparse datagrams, 20 a second. For each packet, the time from its kernel timestamp to the
          moment its record came out of the pipe here ("wire to pipe"): median, 99th percentile, worst.
          Floor: a UDP socket in the capture namespace, the same packets, from the kernel's receive
          timestamp (SO_TIMESTAMPNS) to recvmsg returning.
  dense:  --dense 60-byte frames as fast as the sender goes (bench/live.py's C sender). Packets written
          to the pipe, kernel drops, packets captured but not written, CPU per written packet.
          Floor: `dd` pushing the same number of bytes through a pipe to this reader.

Peers: tcpdump -U (packet-buffered; libpcap's default 1 s ring timeout) and tcpdump -U --immediate-mode
(delivered as it comes), both with nanosecond timestamps.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))
import netns  # noqa: E402
from live import prepare_sender, send  # noqa: E402

ENV = {**os.environ, "TZ": "UTC"}
RATE = 20  # sparse datagrams a second
# Linux's SO_TIMESTAMPNS (Python's socket module does not name it).
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


class Records:
    """Parses pcapng (ns timestamps) or nanosecond pcap as it arrives; each record's timestamp with the
    time its last byte was read. With `parse` false it only counts bytes, as fast as a pipe is read."""

    def __init__(self, parse: bool) -> None:
        self.parse = parse
        self.buf = b""
        self.pcap: bool | None = None
        self.latencies_ns: list[int] = []
        self.records = 0
        self.bytes = 0

    def feed(self, chunk: bytes, now_ns: int) -> None:
        self.bytes += len(chunk)
        if not self.parse:
            return
        self.buf += chunk
        at = 0
        if self.pcap is None and len(self.buf) >= 24:
            self.pcap = self.buf[:4] in (b"\x4d\x3c\xb2\xa1", b"\xd4\xc3\xb2\xa1")
            at = 24 if self.pcap else 0
        if self.pcap is None:
            return
        while True:
            if self.pcap:
                if len(self.buf) - at < 16:
                    break
                sec, frac, caplen, _ = struct.unpack_from("<IIII", self.buf, at)
                if len(self.buf) - at < 16 + caplen:
                    break
                ts = sec * 1_000_000_000 + frac
                at += 16 + caplen
            else:
                if len(self.buf) - at < 12:
                    break
                kind, length = struct.unpack_from("<II", self.buf, at)
                if len(self.buf) - at < length:
                    break
                ts = None
                if kind == 6:
                    hi, lo = struct.unpack_from("<II", self.buf, at + 12)
                    ts = (hi << 32) | lo
                at += length
            if ts is not None:
                self.records += 1
                self.latencies_ns.append(now_ns - ts)
        self.buf = self.buf[at:]


def read_all(fd: int, records: Records, stop: threading.Event) -> None:
    while not stop.is_set():
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return
        records.feed(chunk, time.time_ns())


def tool_argv(tool: str, tcpdump: str, pcapdump: str) -> list[str]:
    if tool == "pcapdump stream":
        return [pcapdump, "udp", "stream", "int"]
    immediate = ["--immediate-mode"] if "immediate" in tool else []
    return [tcpdump, "-i", "int", "-U", *immediate, "--time-stamp-precision=nano", "-w", "-", "udp"]


def run(net, tool: str, tcpdump: str, pcapdump: str, traffic, parse: bool) -> dict:
    argv = ["ip", "netns", "exec", net.cap_ns, "taskset", "-c", "1", *tool_argv(tool, tcpdump, pcapdump)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    assert proc.stderr is not None and proc.stdout is not None
    first = proc.stderr.readline().decode()
    assert "streaming" in first or "listening on" in first, first
    records, stop = Records(parse), threading.Event()
    reader = threading.Thread(target=read_all, args=(proc.stdout.fileno(), records, stop))
    reader.start()
    traffic()
    time.sleep(1.5)  # tcpdump without immediate mode hands its last ring block over after 1 s
    proc.send_signal(signal.SIGINT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join(timeout=30)
    stop.set()
    err = proc.stderr.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    if "pcapdump" in tool:
        m = re.search(
            r"(\d+) packets? streamed, kernel drops (\d+), buffer drops \d+, not written (\d+)", err
        )
        assert m, err
        written, drops, lost = (int(g) for g in m.groups())
    else:
        written = int(re.search(r"(\d+) packets? captured", err).group(1))
        drops, lost = int(re.search(r"(\d+) packets? dropped by kernel", err).group(1)), 0
    return {
        "records": written,
        "latencies_ns": records.latencies_ns,
        "bytes": records.bytes,
        "kernel_drops": drops,
        "lost": lost,
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }


def sparse_traffic(net, count: int):
    def go() -> None:
        script = (
            "import socket, time, sys\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"for i in range({count}):\n"
            f"    s.sendto(b'x' * 32, ('{netns.CAP_V4}', 9000)); time.sleep({1 / RATE})\n"
        )
        net.in_ns(net.snd_ns, "taskset", "-c", "0", sys.executable, "-c", script)

    return go


def socket_floor(net, count: int) -> list[int]:
    """Kernel receive timestamp to recvmsg returning, on a plain UDP socket in the capture namespace."""
    got: list[int] = []
    with net.on_capture_side():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.bind((netns.CAP_V4, 9001))
    s.settimeout(5)
    script = (
        "import socket, time\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"for i in range({count}):\n"
        f"    s.sendto(b'x' * 32, ('{netns.CAP_V4}', 9001)); time.sleep({1 / RATE})\n"
    )
    sender = threading.Thread(target=net.in_ns, args=(net.snd_ns, sys.executable, "-c", script))
    sender.start()
    try:
        for _ in range(count):
            _, anc, _, _ = s.recvmsg(64, 64)
            now = time.time_ns()
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", data[:16])
                    got.append(now - (sec * 1_000_000_000 + nsec))
    finally:
        sender.join()
        s.close()
    return got


def dd_floor(nbytes: int) -> float:
    """Seconds for `dd` to push `nbytes` through a pipe to a reader in this process."""
    blocks = max(1, nbytes // 65536)
    started = time.monotonic()
    proc = subprocess.Popen(
        ["dd", "if=/dev/zero", "bs=65536", f"count={blocks}", "status=none"], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    while proc.stdout.read1(1 << 20):
        pass
    proc.wait()
    return time.monotonic() - started


def ms(ns: float) -> str:
    return f"{ns / 1e6:8.2f} ms"


def latency_line(name: str, values: list[int]) -> str:
    if not values:
        return f"  {name:<38} no packets"
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return (
        f"  {name:<38} median {ms(statistics.median(values))}  p99 {ms(p99)}  worst {ms(values[-1])}"
        f"  ({len(values)} packets)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sparse", type=int, default=200)
    ap.add_argument("--dense", type=int, default=2_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tcpdump, cc = shutil.which("tcpdump"), shutil.which("cc") or shutil.which("gcc")
    pcapdump = shutil.which("pcapdump", path=str(Path(sys.executable).parent)) or shutil.which("pcapdump")
    if os.geteuid() != 0 or not (tcpdump and cc and pcapdump and shutil.which("taskset")):
        sys.exit("bench: needs root, tcpdump, pcapdump, a C compiler and taskset")
    tools = ("pcapdump stream", "tcpdump -U", "tcpdump -U --immediate-mode")
    work = Path(tempfile.mkdtemp(prefix="pcapdump-stream-"))
    net = netns.create()
    try:
        sender = prepare_sender(net, work, cc)
        print(f"sparse: {args.sparse} datagrams at {RATE}/s, wire to pipe (kernel timestamp to read here)")
        sparse: dict[str, list[int]] = {t: [] for t in tools}
        for _ in range(args.rounds):
            for tool in tools:
                got = run(net, tool, tcpdump, pcapdump, sparse_traffic(net, args.sparse), parse=True)
                sparse[tool] += got["latencies_ns"]
        for tool in tools:
            print(latency_line(tool, sparse[tool]))
        print(latency_line("floor: UDP socket (SO_TIMESTAMPNS)", socket_floor(net, args.sparse)))
        print(f"\ndense: {args.dense:,} frames of 60 bytes, as fast as the sender goes")
        dense: dict[str, list[dict]] = {t: [] for t in tools}
        for _ in range(args.rounds):
            for tool in tools:
                traffic = lambda: send(net, sender, args.dense)  # noqa: E731
                dense[tool].append(run(net, tool, tcpdump, pcapdump, traffic, parse=False))
        for tool in tools:
            for r in dense[tool]:
                per = r["cpu_s"] * 1e9 / max(r["records"], 1)
                print(
                    f"  {tool:<28} written {r['records']:>9,}  kernel drops {r['kernel_drops']:>9,}  "
                    f"not written {r['lost']:>7,}  cpu {r['cpu_s']:6.3f} s = {per:6.1f} ns/packet  "
                    f"{r['bytes'] / 1e6:7.1f} MB"
                )
        nbytes = max(r["bytes"] for runs in dense.values() for r in runs)
        print(f"  floor: dd of {nbytes / 1e6:.1f} MB through a pipe: {dd_floor(nbytes):.3f} s")
    finally:
        netns.destroy(net)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
