"""Console benchmark: how long the console's commands take with 100,000 packets stored, and how much memory
the agent holds against its buffer size.

  python bench/console.py [--packets 100000] [--rounds 5]

Needs root. Builds a private pair of network namespaces (tests/netns.py), starts a capture through the
installed `pcapdump` command in the capture namespace, sends --packets UDP datagrams from the other one,
then times each command as a whole process (what a user waits for), median of --rounds runs:
`status`, `show > /dev/null`, `write int bench.cap`, and `stop`. Then, for several `-size` values, the
agent's resident memory (VmRSS) once its capture runs, against the goal: buffer + 30 MB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import netns


def pcapdump_exe() -> str:
    found = shutil.which("pcapdump", path=str(Path(sys.executable).parent)) or shutil.which("pcapdump")
    if not found:
        sys.exit("bench: the pcapdump command is not installed (pip install .)")
    return found


class Console:
    def __init__(self, net: netns.TestNet, home: Path) -> None:
        self.net, self.exe = net, pcapdump_exe()
        self.env = {**os.environ, "PCAPDUMP_HOME": str(home)}
        self.home = home

    def run(self, *words: str) -> float:
        start = time.perf_counter()
        subprocess.run(
            ["ip", "netns", "exec", self.net.cap_ns, self.exe, *words],
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return time.perf_counter() - start

    def rss_mb(self) -> float:
        pid = int((self.home / "agent.pid").read_text())
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")


def timed(console: Console, rounds: int, *words: str) -> float:
    return statistics.median(console.run(*words) for _ in range(rounds))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: needs root (network namespaces, packet sockets)")
    net = netns.create()
    work = Path(tempfile.mkdtemp(prefix="pcapdump-console-"))
    try:
        console = Console(net, work / "home")
        console.run("-size", "65536", "udp", "start", "int")
        net.send_udp(netns.CAP_V4, 9000, args.packets, size=100, pause_every=1000)
        time.sleep(0.3)
        print(f"{args.packets:,} packets stored; whole-command wall time, median of {args.rounds} runs:")
        print(f"  status              {timed(console, args.rounds, 'status') * 1000:7.1f} ms")
        print(f"  status -json        {timed(console, args.rounds, 'status', '-json') * 1000:7.1f} ms")
        print(f"  show > /dev/null    {timed(console, args.rounds, 'show') * 1000:7.1f} ms")
        print(
            f"  write int bench.cap {timed(console, args.rounds, 'write', 'int', 'bench.cap') * 1000:7.1f} ms"
        )
        print(f"  stop                {console.run('stop') * 1000:7.1f} ms (one run: it stops the capture)")
        print(
            f"  pcapdump --version  {timed(console, args.rounds, '--version') * 1000:7.1f} ms "
            "(interpreter start)"
        )
        console.run("cleanup")

        print("\nagent memory (VmRSS) with one running capture on `int`, goal: buffer + 30 MB")
        for size_kb in (512, 65536, 262144, 1048576):
            console.run("-size", str(size_kb), "start", "int")
            rss = console.rss_mb()
            budget = size_kb / 1024 + 30
            verdict = "ok" if rss <= budget else "OVER"
            print(
                f"  -size {size_kb:>8}: RSS {rss:8.1f} MB  "
                f"(buffer {size_kb / 1024:7.1f} MB + 30 = {budget:7.1f})  {verdict}"
            )
            console.run("cleanup")
    finally:
        subprocess.run(
            ["ip", "netns", "exec", net.cap_ns, pcapdump_exe(), "cleanup"],
            env={**os.environ, "PCAPDUMP_HOME": str(work / "home")},
            capture_output=True,
            check=False,
        )
        netns.destroy(net)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
