"""Live benchmark: `pcapdump.capture` against `tcpdump -i`, side by side in one run.

  python bench/live.py [--frames 2000000] [--rounds 3]

Needs root. Builds a private pair of network namespaces joined by a veth pair (tests/netns.py), compiles a
bounded sender (C, sendmmsg), and, for each of two workloads, alternates:
  ours:     pcapdump.capture("int", filter=<the workload's>, buffer_kb=262144), then write() to /dev/shm
  triggers: the same with a trigger that never fires, tested on every kept packet, in two kinds:
            "tcpflags rst" (a TCP word: UDP packets are turned away at their protocol field) and
            "udp port 53" (read through to both UDP ports of every UDP packet)
  theirs:   tcpdump -i int -w /dev/shm/… <the same filter>   (libpcap's defaults: 2 MiB ring)
The workloads: one UDP flow from a socket, captured with `udp`; and raw Ethernet frames in a random
order (half UDP to 64 ports, a quarter TCP ACK or PSH|ACK, a quarter ICMP echo), captured with
`tcp udp icmp`. The sender (pinned to CPU 0, in the other namespace) pushes --frames 60-byte frames as
fast as it can to 198.18.0.3, an address nobody owns on the capture side, so nothing answers. The
capturer runs pinned to CPU 1. For each run: packets captured, kernel drops, CPU nanoseconds (user+sys of
the capturing process, counted from the moment it is capturing to the moment its file is written; and
of ours, its capture thread's alone) per captured packet, and the sender's rate.
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
from typing import NamedTuple

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
#include <linux/if_packet.h>
#include <net/if.h>
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

/* Sends `total` packets, BATCH at a time, from BATCH buffers of `len` bytes at `bufs`, to `to` (NULL:
   the socket's connected peer); `fill` writes packet number `k` into its buffer first. At most 60 s.
   Prints what the bench reads: packets sent, seconds, rate. */
static int send_all(int s, unsigned char *bufs, size_t len, void *to, socklen_t to_len, long total,
                    void (*fill)(unsigned char *buf, long k)) {
    struct iovec iov[BATCH];
    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = bufs + i * len;
        iov[i].iov_len = len;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = to;
        msgs[i].msg_hdr.msg_namelen = to_len;
    }
    long sent = 0;
    double start = now();
    while (sent < total && now() - start < 60) {
        int n = total - sent < BATCH ? (int)(total - sent) : BATCH;
        for (int i = 0; i < n; i++) fill(bufs + i * len, sent + i);
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

/* One flow: the packet's number at the start of its payload. */
static void numbered(unsigned char *buf, long k) { memcpy(buf, &k, sizeof k); }

/* Mixed: Ethernet frames of 60 bytes, IPv4 from 198.18.0.2 to TARGET, in a random order: UDP to 64
   ports, TCP ACK and PSH|ACK segments, ICMP echo requests. */
static unsigned char dst_mac[6];
static struct in_addr mixed_src, mixed_dst;
static unsigned long long seed = 0x9e3779b97f4a7c15ULL;

static void mixed_frame(unsigned char *f, long k) {
    (void)k;
    seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
    memset(f, 0, 60);
    memcpy(f, dst_mac, 6);
    f[6] = 0x02; f[11] = 0x01;
    f[12] = 0x08;
    f[14] = 0x45; f[16] = 0; f[17] = 46; f[22] = 64;
    memcpy(f + 26, &mixed_src, 4);
    memcpy(f + 30, &mixed_dst, 4);
    unsigned sport = 40000 + (unsigned)(seed >> 20) % 20000;
    f[34] = sport >> 8; f[35] = sport & 0xff;
    switch ((seed >> 8) % 4) {
    case 0: case 1:
        f[23] = 17; f[36] = 0x23; f[37] = (unsigned char)(seed >> 32) & 63; f[39] = 26;
        break;
    case 2:
        f[23] = 6; f[37] = 80; f[46] = 0x50; f[47] = (seed >> 40) & 1 ? 0x18 : 0x10;
        break;
    default:
        f[23] = 1; f[34] = 8; f[35] = 0;
    }
}

/* sender TARGET TOTAL: one UDP flow from a socket; sender TARGET TOTAL IFACE DST_MAC: the mixed frames
   on a packet socket bound to IFACE. */
int main(int argc, char **argv) {
    long total = atol(argv[2]);
    if (argc == 5) {
        sscanf(argv[4], "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx",
               &dst_mac[0], &dst_mac[1], &dst_mac[2], &dst_mac[3], &dst_mac[4], &dst_mac[5]);
        inet_pton(AF_INET, "198.18.0.2", &mixed_src);
        inet_pton(AF_INET, argv[1], &mixed_dst);
        int s = socket(AF_PACKET, SOCK_RAW, 0);
        struct sockaddr_ll to = {
            .sll_family = AF_PACKET, .sll_ifindex = (int)if_nametoindex(argv[3]), .sll_halen = 6};
        memcpy(to.sll_addr, dst_mac, 6);
        if (s < 0 || to.sll_ifindex == 0) { perror("sender"); return 1; }
        static unsigned char frames[BATCH][60];
        return send_all(s, &frames[0][0], 60, &to, sizeof to, total, mixed_frame);
    }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(9000)};
    inet_pton(AF_INET, argv[1], &to.sin_addr);
    if (s < 0 || connect(s, (struct sockaddr *)&to, sizeof to) != 0) { perror("sender"); return 1; }
    static unsigned char buf[BATCH][PAYLOAD];
    return send_all(s, &buf[0][0], PAYLOAD, NULL, 0, total, numbered);
}
""".replace("@PAYLOAD@", str(FRAME_PAYLOAD))


# Runs in the capture namespace, pinned to CPU 1.
OURS = r"""
import json, os, resource, sys, pcapdump
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
trigger = sys.argv[2] or None
cap = pcapdump.capture("int", filter=sys.argv[3], buffer_kb=262144, trigger=trigger)
start = cpu()
print("ready", flush=True)
sys.stdin.readline()
# The capture thread's own CPU time (where a trigger is tested), in ns, read while it still runs.
threads = [t for t in os.listdir("/proc/self/task")
           if open(f"/proc/self/task/{t}/comm").read().startswith("capture")]
thread_ns = int(open(f"/proc/self/task/{threads[0]}/schedstat").read().split()[0])
cap.stop()
written = cap.write(sys.argv[1])
used = cpu() - start
stats = cap.stats()
print(json.dumps({"captured": written, "kernel_drops": stats["kernel_drops"], "cpu_s": used,
                  "thread_s": thread_ns / 1e9,
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


class Workload(NamedTuple):
    name: str
    capture_filter: str
    # The same filter in tcpdump's words.
    tcpdump_filter: str
    mixed: bool


WORKLOADS = (
    # One UDP flow from a socket, captured with `udp`: every packet like the one before.
    Workload("one flow (UDP socket)", "udp", "udp", False),
    # Raw frames in a random order: half UDP to 64 ports, a quarter TCP ACK or PSH|ACK, a quarter ICMP
    # echo. A trigger's test turns packets away at different fields.
    Workload("mixed (UDP, TCP, ICMP in random order)", "tcp udp icmp", "tcp or udp or icmp", True),
)


def send(net: netns.TestNet, sender: Path, frames: int, mixed: bool) -> dict:
    how = ["ext", netns.mac_of(net.cap_ns, "int")] if mixed else []
    out = net.in_ns(net.snd_ns, "taskset", "-c", "0", str(sender), TARGET, str(frames), *how)
    return json.loads(out)


def run_ours(
    net: netns.TestNet, sender: Path, frames: int, out: Path, load: Workload, trigger: str = ""
) -> dict:
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
            load.capture_filter,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    sent = send(net, sender, frames, load.mixed)
    time.sleep(0.5)
    proc.stdin.write("stop\n")
    proc.stdin.flush()
    result = json.loads(proc.stdout.readline())
    proc.wait(timeout=60)
    return {**result, **sent}


def run_tcpdump(
    net: netns.TestNet, sender: Path, frames: int, out: Path, load: Workload, tcpdump: str
) -> dict:
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
            load.tcpdump_filter,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stderr.readline()
    assert "listening on" in line, line
    # `ip netns exec` execs tcpdump, so the pid is tcpdump's own.
    start = cpu_of(proc.pid)
    sent = send(net, sender, frames, load.mixed)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read()
    captured = int(re.search(r"(\d+) packets? captured", err).group(1))
    dropped = int(re.search(r"(\d+) packets? dropped by kernel", err).group(1))
    used = usage.ru_utime + usage.ru_stime - start
    return {"captured": captured, "kernel_drops": dropped, "cpu_s": used, **sent}


def per_packet_ns(runs: list[dict], key: str) -> list[float]:
    return [r[key] * 1e9 / max(r["captured"], 1) for r in runs]


def show(name: str, runs: list[dict]) -> tuple[float, float | None]:
    """Prints the runs; the medians of CPU per captured packet, of the process and of its capture
    thread (`None` for tcpdump, which captures in its only thread)."""
    process = per_packet_ns(runs, "cpu_s")
    thread = per_packet_ns(runs, "thread_s") if "thread_s" in runs[0] else None
    print(f"{name}:")
    for i, (r, ns) in enumerate(zip(runs, process, strict=True)):
        of_thread = f" (capture thread {thread[i]:6.1f})" if thread else ""
        print(
            f"  captured {r['captured']:>9,}  kernel drops {r['kernel_drops']:>9,}  "
            f"cpu {r['cpu_s']:6.3f} s = {ns:7.1f} ns/packet{of_thread}  "
            f"sender {r['sent']:,} at {r['rate'] / 1e6:.2f} Mpps"
        )
    med = statistics.median(process)
    med_thread = statistics.median(thread) if thread else None
    of_thread = f" (capture thread {med_thread:.1f} ns)" if med_thread else ""
    print(f"  median CPU per captured packet: {med:.1f} ns{of_thread}")
    return med, med_thread


def bench(net: netns.TestNet, sender: Path, shm: Path, load: Workload, args, tcpdump: str) -> str:
    """Alternating rounds of one workload; its summary line."""
    print(f"== {load.name}, captured with `{load.capture_filter}`")
    ours: list[dict] = []
    triggered: dict[str, list[dict]] = {t: [] for t in TRIGGERS}
    theirs: list[dict] = []
    runs = [
        lambda out: ours.append(run_ours(net, sender, args.frames, out, load)),
        *[
            lambda out, t=t: triggered[t].append(run_ours(net, sender, args.frames, out, load, t))
            for t in TRIGGERS
        ],
        lambda out: theirs.append(run_tcpdump(net, sender, args.frames, out, load, tcpdump)),
    ]
    for r in range(args.rounds):
        # Each round starts the runs at another place, so that none always follows the same one.
        for run in runs[r % len(runs) :] + runs[: r % len(runs)]:
            # Each run starts with no file of an earlier run to delete: freeing its pages is not
            # capturing.
            for f in shm.iterdir():
                f.unlink()
            run(shm / "capture.cap")
    m_ours, t_ours = show("pcapdump.capture (default ring: 8 x 1 MiB blocks; buffer_kb=262144)", ours)
    m_trig = {
        t: show(f"the same with trigger={t!r} (tested on every packet, never fires)", triggered[t])
        for t in TRIGGERS
    }
    m_theirs, _ = show("tcpdump -i int -w (libpcap defaults)", theirs)
    print()
    drops = sum(r["kernel_drops"] for r in ours + [r for rs in triggered.values() for r in rs])
    added = ", ".join(
        f"{t!r} {100 * (m / m_ours - 1):+.1f} % (capture thread {100 * (th / t_ours - 1):+.1f} %)"
        for t, (m, th) in m_trig.items()
    )
    return (
        f"{load.name}: pcapdump kernel drops {drops} over {(1 + len(TRIGGERS)) * args.rounds} runs "
        f"(target 0); CPU per packet pcapdump/tcpdump = {m_ours / m_theirs:.2f} (target ≤ 0.5); "
        f"a trigger adds CPU per packet: {added} (target within 10 %)"
    )


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
        summaries = [bench(net, sender, shm, load, args, tcpdump) for load in WORKLOADS]
        print("summary:")
        for line in summaries:
            print(f"  {line}")
    finally:
        netns.destroy(net)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)


if __name__ == "__main__":
    main()
