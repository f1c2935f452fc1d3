"""Write benchmark: `pcapdump write all` (one pcapng timeline of two interfaces, merged in the agent
straight from its buffer) against the classic route to the same view: `pcapdump write int a.cap`,
`pcapdump write ext b.cap`, then `mergecap -w`, side by side in one run.

  python bench/write.py [--datagrams 500000] [--rounds 5]

Needs root, mergecap and a C compiler. Builds a routed gateway in three network namespaces
(tests/netns.py), starts the agent capturing `int` and `ext`, and pushes datagrams from the inside host
through the gateway to a UDP socket on the outside host that never reads (so no ICMP comes back): each
datagram is stored twice, in on `int` and out on `ext`. Two workloads: dense (small datagrams:
--datagrams of them, 2 x that many stored packets) and sparse (1400-byte datagrams, a tenth as many).
Then, alternating, each way is timed as a whole, from the first command to the last one's exit, with its
outputs in one folder of /dev/shm, deleted between runs outside the timing; TZ is the same for both.
Printed beside them, the physical floor: `dd` writing as many bytes as our file has, and `cat` reading it.
The check: both files hold the same packets (bytes, and timestamps to the microsecond classic pcap keeps),
each in time order.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import live
import netns
import pcapdump

# On the outside host: a UDP socket that never reads, so datagrams end there and no ICMP comes back.
SINK = (
    "import socket, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
    "s.bind(('0.0.0.0', 9000)); time.sleep(3600)"
)


def sender_for(payload: int, work: Path, cc: str) -> Path:
    source = live.SENDER_C.replace(f"PAYLOAD = {live.FRAME_PAYLOAD}", f"PAYLOAD = {payload}")
    (work / f"sender{payload}.c").write_text(source)
    binary = work / f"sender{payload}"
    subprocess.run([cc, "-O2", "-o", str(binary), str(work / f"sender{payload}.c")], check=True)
    return binary


def timed(commands: list[list[str]], env: dict[str, str]) -> float:
    began = time.perf_counter()
    for command in commands:
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - began


def same_packets(ours: Path, theirs: Path) -> bool:
    """The same packets, each file in time order. Classic pcap keeps microseconds: within one
    microsecond mergecap orders by input file, we by nanosecond, so order is compared to the microsecond."""
    a = [(p.ts_ns // 1000, p.data) for p in pcapdump.read(ours)]
    b = [(p.ts_ns // 1000, p.data) for p in pcapdump.read(theirs)]

    def in_order(packets: list[tuple[int, bytes]]) -> bool:
        return all(x[0] <= y[0] for x, y in itertools.pairwise(packets))

    return in_order(a) and in_order(b) and sorted(a) == sorted(b)


def workload(gw: netns.Gateway, name: str, sender: Path, datagrams: int, rounds: int, env, shm: Path) -> None:
    pcap = ["ip", "netns", "exec", gw.gw_ns, shutil.which("pcapdump") or "pcapdump"]
    subprocess.run([*pcap, "wipe"], env=env, check=True, stdout=subprocess.DEVNULL)
    sent = json.loads(
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                gw.inside_ns,
                "taskset",
                "-c",
                "0",
                str(sender),
                gw.OUTSIDE,
                str(datagrams),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    time.sleep(1)
    status = json.loads(
        subprocess.run([*pcap, "status", "-json"], env=env, capture_output=True, text=True).stdout
    )
    stored = {c["iface"]: c["packets"] for c in status["captures"]}
    store = Path(env["PCAPDUMP_HOME"]) / "store"
    ours_cmd = [[*pcap, "write", "all", "gw.cap"]]
    theirs_cmd = [
        [*pcap, "write", "int", "a.cap"],
        [*pcap, "write", "ext", "b.cap"],
        ["mergecap", "-w", str(shm / "m.pcapng"), str(store / "a.cap"), str(store / "b.cap")],
    ]
    times: dict[str, list[float]] = {"ours": [], "theirs": [], "dd": [], "cat": []}
    for _ in range(rounds):
        for f in [*store.iterdir(), *shm.iterdir()]:
            f.unlink()
        times["ours"].append(timed(ours_cmd, env))
        size = (store / "gw.cap").stat().st_size
        times["cat"].append(timed([["cat", str(store / "gw.cap")]], env))
        for f in [*store.iterdir(), *shm.iterdir()]:
            if f.name != "gw.cap":
                f.unlink()
        times["theirs"].append(timed(theirs_cmd, env))
        times["dd"].append(
            timed(
                [["dd", "if=/dev/zero", f"of={shm / 'floor'}", "bs=1M", f"count={max(1, size >> 20)}"]], env
            )
        )
    agree = same_packets(store / "gw.cap", shm / "m.pcapng")
    med = {k: statistics.median(v) for k, v in times.items()}
    each = f"int {stored.get('int', 0):,} + ext {stored.get('ext', 0):,}"
    print(f"{name}: {sent['sent']:,} datagrams sent, stored {each}")
    print(f"  file: {size / 2**20:.1f} MiB; same packets, in time order: {agree}")
    for key, label in (
        ("ours", "pcapdump write all gw.cap"),
        ("theirs", "write int + write ext + mergecap"),
        ("dd", "floor: dd of as many bytes"),
        ("cat", "floor: cat of our file"),
    ):
        runs = ", ".join(f"{t:.3f}" for t in times[key])
        print(f"  {label:<36} median {med[key]:7.3f} s  ({runs})")
    print(f"  speed-up: {med['theirs'] / med['ours']:.2f}x (target ≥ 3)\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datagrams", type=int, default=500_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    cc = shutil.which("cc") or shutil.which("gcc")
    if os.geteuid() != 0 or not cc or not shutil.which("mergecap") or not shutil.which("taskset"):
        sys.exit("bench: needs root, mergecap, taskset and a C compiler")
    work = Path(tempfile.mkdtemp(prefix="pcapdump-write-"))
    shm = Path(tempfile.mkdtemp(prefix="pcapdump-write-", dir="/dev/shm"))
    home = shm / "home"  # the store on the same filesystem as mergecap's output
    env = {**os.environ, "PCAPDUMP_HOME": str(home), "TZ": "UTC"}
    out = shm / "out"
    out.mkdir()
    gw = netns.Gateway().create()
    sink = subprocess.Popen(["ip", "netns", "exec", gw.outside_ns, sys.executable, "-c", SINK])
    try:
        small, large = sender_for(18, work, cc), sender_for(1400, work, cc)
        pcap = ["ip", "netns", "exec", gw.gw_ns, shutil.which("pcapdump") or "pcapdump"]
        for iface in ("int", "ext"):
            subprocess.run([*pcap, "-size", "1048576", "udp", "start", iface], env=env, check=True)
        print(f"{args.rounds} alternating rounds per workload; {os.cpu_count()} CPUs; outputs in /dev/shm\n")
        workload(gw, "dense (60-byte frames)", small, args.datagrams, args.rounds, env, out)
        workload(gw, "sparse (1442-byte frames)", large, args.datagrams // 10, args.rounds, env, out)
    finally:
        subprocess.run([*pcap, "cleanup"], env=env, check=False, capture_output=True)
        sink.kill()
        gw.destroy()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)


if __name__ == "__main__":
    main()
