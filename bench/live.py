"""Live benchmark: `pcapdump.capture` against `tcpdump -i`, side by side in one run.

  python bench/live.py [--frames 2000000] [--rounds 3]

Needs root. Builds a private pair of network namespaces joined by a veth pair (tests/netns.py), compiles a
bounded sender (C, sendmmsg), and alternates:
  ours:     pcapdump.capture("int", filter="udp", buffer_kb=262144), then write() to /dev/shm
  triggers: the same with a trigger that never fires, tested on every kept packet, in two kinds:
            "tcpflags rst" (a TCP word: this UDP traffic is turned away at its protocol field) and
            "udp port 53" (read through to both UDP ports of every packet)
  theirs:   tcpdump -i int -w /dev/shm/… udp   (libpcap's defaults: 2 MiB ring, not immediate)
The sender (pinned to CPU 0, in the other namespace) pushes --frames 60-byte UDP frames as fast as it can
to 198.18.0.3, an address nobody owns on the capture side, so nothing answers. The capturer runs pinned to
CPU 1. For each run: packets captured, kernel drops, CPU nanoseconds (user+sys of the capturing process,
counted from the moment it is capturing to the moment its file is written) per captured packet, and the
sender's rate.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import netns

TARGET = "198.18.0.3"
# Triggers that never match this traffic: one turned away at the protocol field, one read to the ports.
TRIGGERS = ("tcpflags rst", "udp port 53")
FRAME_PAYLOAD = 60 - 14 - 20 - 8

SENDER_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

enum { BATCH = 256, PAYLOAD = @PAYLOAD@ };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    long total = atol(argv[2]);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(9000)};
    inet_pton(AF_INET, argv[1], &to.sin_addr);
    if (s < 0 || connect(s, (struct sockaddr *)&to, sizeof to) != 0) { perror("sender"); return 1; }
    static char buf[BATCH][PAYLOAD];
    struct iovec iov[BATCH];
    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = buf[i];
        iov[i].iov_len = PAYLOAD;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    long sent = 0;
    double start = now();
    while (sent < total && now() - start < 60) {
        int n = total - sent < BATCH ? (int)(total - sent) : BATCH;
        for (int i = 0; i < n; i++) {
            long k = sent + i;
            memcpy(buf[i], &k, sizeof k);
        }
        int r = sendmmsg(s, msgs, n, 0);
        if (r < 0) {
            if (errno == ENOBUFS || errno == EAGAIN) continue;
            perror("sendmmsg");
            return 1;
        }
        sent += r;
    }
    double took = now() - start;
    printf("{\"sent\": %ld, \"seconds\": %.6f, \"rate\": %.0f}\n", sent, took, sent / took);
    return 0;
}
""".replace("@PAYLOAD@", str(FRAME_PAYLOAD))


# Runs in the capture namespace, pinned to CPU 1.
OURS = r"""
import json, resource, sys, pcapdump
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
trigger = sys.argv[2] or None
cap = pcapdump.capture("int", filter="udp", buffer_kb=262144, trigger=trigger)
start = cpu()
print("ready", flush=True)
sys.stdin.readline()
cap.stop()
written = cap.write(sys.argv[1])
used = cpu() - start
stats = cap.stats()
print(json.dumps({"captured": written, "kernel_drops": stats["kernel_drops"], "cpu_s": used,
                  "buffer_full_drops": stats["buffer_full_drops"]}), flush=True)
"""


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def prepare_sender(net: netns.TestNet, work: Path, cc: str) -> Path:
    """The sender, compiled into `work`; TARGET made a neighbour of the sender's side, so its frames
    reach `int` without ARP and nothing answers them."""
    (work / "sender.c").write_text(SENDER_C)
    sender = work / "sender"
    subprocess.run([cc, "-O2", "-o", str(sender), str(work / "sender.c")], check=True)
    cap_mac = netns.mac_of(net.cap_ns, "int")
    net.in_ns(
        net.snd_ns, "ip", "neigh", "replace", TARGET, "lladdr", cap_mac, "dev", "ext", "nud", "permanent"
    )
    return sender


def send(net: netns.TestNet, sender: Path, frames: int) -> dict:
    out = net.in_ns(net.snd_ns, "taskset", "-c", "0", str(sender), TARGET, str(frames))
    return json.loads(out)


def run_ours(net: netns.TestNet, sender: Path, frames: int, out: Path, trigger: str = "") -> dict:
    """`trigger`: filter words tested on every kept packet (they never match this traffic)."""
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            net.cap_ns,
            "taskset",
            "-c",
            "1",
            sys.executable,
            "-c",
            OURS,
            str(out),
            trigger,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    sent = send(net, sender, frames)
    time.sleep(0.5)
    proc.stdin.write("stop\n")
    proc.stdin.flush()
    result = json.loads(proc.stdout.readline())
    proc.wait(timeout=60)
    return {**result, **sent}


def run_tcpdump(net: netns.TestNet, sender: Path, frames: int, out: Path, tcpdump: str) -> dict:
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            net.cap_ns,
            "taskset",
            "-c",
            "1",
            tcpdump,
            "-i",
            "int",
            "-w",
            str(out),
            "udp",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stderr.readline()
    assert "listening on" in line, line
    # `ip netns exec` execs tcpdump, so the pid is tcpdump's own.
    start = cpu_of(proc.pid)
    sent = send(net, sender, frames)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read()
    captured = int(re.search(r"(\d+) packets? captured", err).group(1))
    dropped = int(re.search(r"(\d+) packets? dropped by kernel", err).group(1))
    used = usage.ru_utime + usage.ru_stime - start
    return {"captured": captured, "kernel_drops": dropped, "cpu_s": used, **sent}


def show(name: str, runs: list[dict]) -> float:
    per_packet = [r["cpu_s"] * 1e9 / max(r["captured"], 1) for r in runs]
    print(f"{name}:")
    for r, ns in zip(runs, per_packet, strict=True):
        print(
            f"  captured {r['captured']:>9,}  kernel drops {r['kernel_drops']:>9,}  "
            f"cpu {r['cpu_s']:6.3f} s = {ns:7.1f} ns/packet  "
            f"sender {r['sent']:,} at {r['rate'] / 1e6:.2f} Mpps"
        )
    med = statistics.median(per_packet)
    print(f"  median CPU per captured packet: {med:.1f} ns")
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=2_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tcpdump, cc = shutil.which("tcpdump"), shutil.which("cc") or shutil.which("gcc")
    if os.geteuid() != 0 or not tcpdump or not cc or not shutil.which("taskset"):
        sys.exit("bench: needs root, tcpdump, a C compiler and taskset")
    work = Path(tempfile.mkdtemp(prefix="pcapdump-live-"))
    shm = Path(tempfile.mkdtemp(prefix="pcapdump-live-", dir="/dev/shm"))
    net = netns.create()
    try:
        sender = prepare_sender(net, work, cc)
        version = subprocess.run([tcpdump, "--version"], capture_output=True, text=True).stdout.splitlines()
        print(
            f"{args.frames:,} frames of 60 bytes per run, {args.rounds} alternating rounds; "
            + " / ".join(version[:2])
        )
        print(f"machine: {os.cpu_count()} CPUs; sender pinned to CPU 0, capturer to CPU 1\n")
        ours: list[dict] = []
        triggered: dict[str, list[dict]] = {t: [] for t in TRIGGERS}
        theirs: list[dict] = []
        runs = [
            ("ours", lambda out: ours.append(run_ours(net, sender, args.frames, out))),
            *[
                (t, lambda out, t=t: triggered[t].append(run_ours(net, sender, args.frames, out, t)))
                for t in TRIGGERS
            ],
            ("theirs", lambda out: theirs.append(run_tcpdump(net, sender, args.frames, out, tcpdump))),
        ]
        for r in range(args.rounds):
            # Each round starts the runs at another place, so that none always follows the same one.
            for _, run in runs[r % len(runs) :] + runs[: r % len(runs)]:
                # Each run starts with no file of an earlier run to delete: freeing its pages is not
                # capturing.
                for f in shm.iterdir():
                    f.unlink()
                run(shm / "capture.cap")
        m_ours = show("pcapdump.capture (default ring: 8 x 1 MiB blocks; buffer_kb=262144)", ours)
        m_trig = {
            t: show(f"the same with trigger={t!r} (tested on every packet, never fires)", triggered[t])
            for t in TRIGGERS
        }
        m_theirs = show("tcpdump -i int -w (libpcap defaults)", theirs)
        drops = sum(r["kernel_drops"] for r in ours + [r for rs in triggered.values() for r in rs])
        added = ", ".join(f"{t!r} {100 * (m / m_ours - 1):+.1f} %" for t, m in m_trig.items())
        print(
            f"\nsummary: pcapdump kernel drops {drops} over {(1 + len(TRIGGERS)) * args.rounds} runs "
            f"(target 0); CPU per packet pcapdump/tcpdump = {m_ours / m_theirs:.2f} (target ≤ 0.5); "
            f"a trigger adds CPU per packet: {added} (target within 10 %)"
        )
    finally:
        netns.destroy(net)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)


if __name__ == "__main__":
    main()
