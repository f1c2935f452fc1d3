"""Soak: random console commands from several clients at once against a capturing agent, with traffic.

  python bench/soak.py [--minutes 10] [--clients 4] [--size-kb 4096]

Needs root. Builds a private pair of network namespaces joined by a veth pair (tests/netns.py), starts a
ring-buffer capture on `int`, and sends bounded bursts of UDP to the capture side for the whole run
(1,000 datagrams every half second, never more). Meanwhile each client runs, one after the other,
commands drawn at random: status, status -json, show, write to one of five names, wipe, stop, start
again. It is not a test (nothing here asserts timing); it prints what it saw and checks afterwards:

  - every command either succeeded or said why on one line (no traceback, no silent hang);
  - the agent still answers, and its memory (VmRSS) stays within the buffer + 40 MB;
  - the store holds only capture files (no temporary left), each the output of a `write` that reported
    success and readable by `capinfos` with one of the packet counts those writes reported.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import netns

NAMES = ["a.cap", "b.cap", "c.cap", "d.cap", "e.cap"]
WROTE = re.compile(r": (\d+) packets, \d+ bytes$")


class Agent:
    def __init__(self, net: netns.TestNet, home: Path) -> None:
        self.net, self.home = net, home
        exe = shutil.which("pcapdump", path=str(Path(sys.executable).parent))
        if exe is None:
            sys.exit("bench: the pcapdump command is not installed here (make wheel)")
        self.exe = exe
        self.env = {**os.environ, "PCAPDUMP_HOME": str(home), "TZ": "UTC"}

    def run(self, *words: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.net.cap_ns, self.exe, *words],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def rss_mb(self) -> float:
        pid = int((self.home / "agent.pid").read_text())
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")


def client(agent: Agent, until: float, seed: int, log: list[tuple[str, int, str, str]]) -> None:
    rng = random.Random(seed)
    while time.monotonic() < until:
        words = rng.choice(
            [
                ["status"],
                ["status", "-json"],
                ["show"],
                ["show", "-json"],
                ["write", "int", rng.choice(NAMES)],
                ["write", "int", rng.choice(NAMES)],
                ["wipe"],
                ["stop", "int"],
                ["-ring", "-size", "4096", "udp", "start", "int"],
            ]
        )
        try:
            done = agent.run(*words)
            log.append((" ".join(words), done.returncode, done.stdout[-200:], done.stderr))
        except subprocess.TimeoutExpired:
            log.append((" ".join(words), -1, "", "hung: no end within 60 s"))


def traffic(net: netns.TestNet, until: float) -> None:
    while time.monotonic() < until:
        net.send_udp(netns.CAP_V4, 9000, 1000, size=100)
        time.sleep(0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--size-kb", type=int, default=4096)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: needs root (network namespaces, packet sockets)")
    net = netns.create()
    work = Path(tempfile.mkdtemp(prefix="pcapdump-soak-"))
    agent = Agent(net, work / "home")
    try:
        started = agent.run("-ring", "-size", str(args.size_kb), "udp", "start", "int")
        if started.returncode != 0:
            sys.exit(f"bench: cannot start: {started.stderr.strip()}")
        rss_start = agent.rss_mb()
        until = time.monotonic() + args.minutes * 60
        log: list[tuple[str, int, str, str]] = []
        threads = [threading.Thread(target=traffic, args=(net, until))]
        threads += [
            threading.Thread(target=client, args=(agent, until, seed, log)) for seed in range(args.clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        report(agent, log, args, rss_start)
    finally:
        agent.run("cleanup")
        netns.destroy(net)
        shutil.rmtree(work, ignore_errors=True)


def report(
    agent: Agent, log: list[tuple[str, int, str, str]], args: argparse.Namespace, rss_start: float
) -> None:
    by_verb: collections.Counter[str] = collections.Counter()
    failures: collections.Counter[str] = collections.Counter()
    bad: list[str] = []
    written: dict[str, set[int]] = collections.defaultdict(set)
    for words, code, out, err in log:
        verb = words.split()[0] if not words.startswith("-") else "start"
        by_verb[verb] += 1
        if code != 0:
            failures[f"{verb}: {err.strip()[:90]}"] += 1
            if code not in (1, 2) or "Traceback" in err or err.strip().count("\n"):
                bad.append(f"{words}: exit {code}: {err.strip()[:300]}")
        elif verb == "write" and (m := WROTE.search(out.strip())):
            written[words.split()[-1]].add(int(m.group(1)))
    print(f"{len(log):,} commands in {args.minutes:g} min from {args.clients} clients: {dict(by_verb)}")
    print("refusals (expected ones: already capturing, not capturing, nothing captured yet):")
    for what, n in failures.most_common():
        print(f"  {n:6} {what}")
    status = agent.run("status")
    rss_end = agent.rss_mb()
    budget = args.size_kb / 1024 + 40
    print(f"agent answers afterwards: {'yes' if status.returncode == 0 else 'NO: ' + status.stderr.strip()}")
    verdict = "ok" if rss_end <= budget else "OVER"
    print(f"agent VmRSS: {rss_start:.1f} MB at start, {rss_end:.1f} MB at the end", end="")
    print(f" (budget: buffer + 40 = {budget:.1f} MB): {verdict}")
    store = agent.home / "store"
    files = sorted(os.listdir(store)) if store.exists() else []
    stray = [f for f in files if f not in NAMES]
    print(f"store: {files}; not a capture file: {stray or 'none'}")
    unreadable = []
    for name in files:
        info = subprocess.run(["capinfos", "-c", "-M", str(store / name)], capture_output=True, text=True)
        counts = re.findall(r"Number of packets:\s+(\d+)", info.stdout)
        if info.returncode != 0 or not counts or int(counts[0]) not in written.get(name, set()):
            unreadable.append(f"{name}: {info.stderr.strip() or counts}")
    print(f"store files not readable or not what a successful write reported: {unreadable or 'none'}")
    print(f"commands that failed without one clear line: {len(bad)}")
    for line in bad[:20]:
        print(f"  {line}")


if __name__ == "__main__":
    main()
