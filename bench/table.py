"""Table benchmark: a capture file into a DataFrame, side by side in one run.

  python bench/table.py [--frames 1000000] [--rounds 3] [--dir /tmp]

Three ways from a pcap file to a table of timestamps, addresses, ports and lengths:
  ours:    pyarrow.table(pcapdump.read_table(f))                  (every column pcapdump has)
  tshark:  tshark -r f -T fields -e frame.time_epoch -e ip.src … > csv, then pandas.read_csv(csv)
  dpkt:    a dpkt.pcap.Reader loop decoding Ethernet/IP/TCP/UDP into lists, then pandas.DataFrame
Each run is its own process; they take turns (ours, tshark, dpkt, ours, …) over a page-cached input, with
the same TZ, outputs in the same folder, deleted outside the timing. Two workloads: a gateway-like mix of
small frames (dense: many packets per megabyte) and full-size 1400-byte TCP segments (sparse). For each:
median wall time, peak memory (the largest resident set of the run's processes), the table's own size
(Arrow bytes), the ratios, and the floor: `cat` of the file to /dev/null. Needs tshark, dpkt, pandas and
pyarrow (the `test` extra) and the package installed from the release wheel (`make wheel`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from offline import frame_templates

# Also says how much its peak resident set (VmHWM: ru_maxrss would start from the parent's) grew past
# what the interpreter and pyarrow take by themselves, and how long read_table itself took.
OURS = r"""
import json, sys, time, pcapdump, pyarrow as pa
def peak():
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
    return int(line.split()[1]) * 1024
base = peak()
start = time.perf_counter()
table = pcapdump.read_table(sys.argv[1])
read = time.perf_counter() - start
t = pa.table(table)
print(json.dumps({"rows": t.num_rows, "table_bytes": t.nbytes, "grown": peak() - base, "read_s": read}))
"""

# pyarrow's first table in a process costs a fixed few tenths of a second, whatever the data.
PYARROW_FIRST_TABLE = r"""
import time, pyarrow as pa
start = time.perf_counter()
pa.table({"a": [1]})
print(time.perf_counter() - start)
"""

TSHARK_FIELDS = [
    "frame.time_epoch",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
    "frame.len",
]

PANDAS_CSV = r"""
import json, sys, pandas as pd
df = pd.read_csv(sys.argv[1], header=None, names=sys.argv[2].split(","), low_memory=False)
print(json.dumps({"rows": len(df)}))
"""

DPKT = r"""
import json, socket, sys, dpkt, pandas as pd
cols = {k: [] for k in ("ts", "src", "dst", "sport", "dport", "len")}
with open(sys.argv[1], "rb") as f:
    for ts, buf in dpkt.pcap.Reader(f):
        src = dst = sport = dport = None
        try:
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            family = {dpkt.ip.IP: socket.AF_INET, dpkt.ip6.IP6: socket.AF_INET6}.get(type(ip))
            if family is not None:
                src, dst = socket.inet_ntop(family, ip.src), socket.inet_ntop(family, ip.dst)
            l4 = getattr(ip, "data", None)
            if isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP)):
                sport, dport = l4.sport, l4.dport
        except dpkt.dpkt.UnpackError:
            pass
        cols["ts"].append(ts)
        cols["src"].append(src)
        cols["dst"].append(dst)
        cols["sport"].append(sport)
        cols["dport"].append(dport)
        cols["len"].append(len(buf))
df = pd.DataFrame(cols)
print(json.dumps({"rows": len(df)}))
"""


def big_tcp_templates(rng: random.Random) -> list[bytes]:
    """Full-size TCP segments over IPv4, between a few hosts and ports."""
    out = []
    for _ in range(200):
        payload = b"d" * 1400
        tcp = struct.pack("!HHIIBBHHH", rng.randint(1024, 65535), 443, 1, 1, 0x50, 0x10, 64240, 0, 0)
        src = bytes([198, 18, 0, rng.randint(1, 20)])
        ip = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(tcp) + len(payload),
            1,
            0x4000,
            64,
            6,
            0,
            src,
            bytes([198, 18, 1, 1]),
        )
        out.append(bytes.fromhex("020000000002020000000001") + b"\x08\x00" + ip + tcp + payload)
    return out


def make_capture(path: Path, frames: int, templates: list[bytes]) -> None:
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for i in range(frames):
            f = templates[i % len(templates)]
            out.write(
                struct.pack("<IIII", 1_700_000_000 + i // 1000, (i * 997) % 1_000_000, len(f), len(f)) + f
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path("/tmp"), help="page-cached work folder (default /tmp)")
    args = ap.parse_args()
    tshark = shutil.which("tshark")
    if not tshark:
        sys.exit("bench: needs tshark")
    os.environ["TZ"] = "UTC"
    work = args.dir / f"pcapdump-table-bench-{os.getpid()}"
    work.mkdir()
    py = sys.executable
    try:
        rng = random.Random(5)
        workloads = [
            ("dense: gateway mix of small frames", frame_templates(rng)),
            ("sparse: 1400-byte TCP", big_tcp_templates(rng)),
        ]
        for name, templates in workloads:
            cap = work / "in.cap"
            make_capture(cap, args.frames, templates)
            size = cap.stat().st_size
            times: dict[str, list[float]] = {"cat": [], "ours": [], "tshark": [], "dpkt": []}
            peaks: dict[str, int] = {"ours": 0, "tshark": 0, "dpkt": 0}
            table_bytes, grown, read_s = 0, 0, []
            csv = work / "fields.csv"
            for _ in range(args.rounds):
                t, _, _ = run_peak(["cat", str(cap)], work / "cat.out")
                (work / "cat.out").unlink()
                times["cat"].append(t)
                t, peak, out = run_peak([py, "-c", OURS, str(cap)])
                result = json.loads(out)
                assert result["rows"] == args.frames, result
                table_bytes, grown = result["table_bytes"], max(grown, result["grown"])
                read_s.append(result["read_s"])
                times["ours"].append(t)
                peaks["ours"] = max(peaks["ours"], peak)
                fields = [arg for f in TSHARK_FIELDS for arg in ("-e", f)]
                t1, p1, _ = run_peak(
                    [
                        tshark,
                        "-r",
                        str(cap),
                        "-T",
                        "fields",
                        "-E",
                        "separator=,",
                        "-E",
                        "occurrence=f",
                        *fields,
                    ],
                    csv,
                )
                t2, p2, out = run_peak([py, "-c", PANDAS_CSV, str(csv), ",".join(TSHARK_FIELDS)])
                assert json.loads(out)["rows"] == args.frames
                csv.unlink()
                times["tshark"].append(t1 + t2)
                peaks["tshark"] = max(peaks["tshark"], p1, p2)
                t, peak, out = run_peak([py, "-c", DPKT, str(cap)])
                assert json.loads(out)["rows"] == args.frames
                times["dpkt"].append(t)
                peaks["dpkt"] = max(peaks["dpkt"], peak)
            med = {k: statistics.median(v) for k, v in times.items()}
            mb = size / 1e6
            print(f"{name}: {args.frames:,} frames, {mb:.0f} MB, {args.rounds} rounds (median wall time)")
            print(f"  floor  cat > file        {med['cat']:8.3f} s")
            for k, label in (
                ("ours", "pcapdump read_table"),
                ("tshark", "tshark + read_csv"),
                ("dpkt", "dpkt + DataFrame"),
            ):
                runs = ", ".join(f"{t:.2f}" for t in times[k])
                print(f"  {label:22} {med[k]:8.3f} s  peak {peaks[k] / 2**20:7.0f} MiB  runs {runs}")
            _, _, first = run_peak([py, "-c", PYARROW_FIRST_TABLE])
            print(
                f"  of pcapdump's run: read_table itself {statistics.median(read_s):.3f} s; pyarrow's first "
                f"table in a process {float(first):.3f} s; the rest is the interpreter and the imports"
            )
            mib = 2**20
            print(
                f"  table (Arrow) {table_bytes / mib:.0f} MiB; pcapdump grew {grown / mib:.0f} MiB past the "
                f"interpreter and pyarrow: {grown / table_bytes:.2f}x the table (target ≤ 2)"
            )
            print(
                f"  ratios: tshark+pandas / pcapdump = {med['tshark'] / med['ours']:.1f}x (target ≥ 20), "
                f"dpkt+pandas / pcapdump = {med['dpkt'] / med['ours']:.1f}x (target ≥ 50); against "
                f"read_table alone: {med['tshark'] / statistics.median(read_s):.0f}x and "
                f"{med['dpkt'] / statistics.median(read_s):.0f}x\n"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_peak(cmd: list[str], stdout: Path | None = None) -> tuple[float, int, str]:
    """Wall time, peak resident set (bytes) and standard output of one process run to its end."""
    with open(stdout or os.devnull, "wb") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=sink if stdout else subprocess.PIPE, stderr=subprocess.PIPE)
        out = proc.stdout.read() if proc.stdout else b""
        err = proc.stderr.read() if proc.stderr else b""
        _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench: {cmd[0]} failed: {err.decode(errors='replace')[-400:]}")
    return elapsed, usage.ru_maxrss * 1024, out.decode()


if __name__ == "__main__":
    main()
