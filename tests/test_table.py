"""Typed packet fields and captures as Arrow tables: the fields equal the `-json` lines and tshark's
dissection; pyarrow, polars and duckdb take `read_table` and `Capture.table` as they are."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pcapdump
import polars as pl
import pyarrow as pa
import pytest
from conftest import run_pcapdump
from netns import CAP_V4, SND_V4

TYPED = ("proto", "src", "dst", "sport", "dport", "eth_src", "eth_dst", "ip_proto", "tcp_flags", "truncated")
COLUMNS = [
    "index",
    "ts",
    "iface",
    "direction",
    "caplen",
    "wirelen",
    "eth_src",
    "eth_dst",
    "vlan",
    "proto",
    "src",
    "dst",
    "sport",
    "dport",
    "ip_proto",
    "tcp_flags",
    "info",
]


def typed(p: pcapdump.Packet) -> dict[str, object]:
    return {name: getattr(p, name) for name in TYPED} | {"vlan": list(p.vlan), "caplen": p.caplen}


def test_typed_fields_are_the_json_line(corpus_file):
    packets = list(pcapdump.read(corpus_file))
    assert len(packets) > 100
    kinds = set()
    for p in packets:
        line = json.loads(p.json())
        assert p.fields() == line
        assert typed(p) == {k: line[k] for k in (*TYPED, "vlan", "caplen")}
        kinds.add((p.proto, bool(p.vlan), p.sport is not None, p.truncated))
    # The corpus exercises what the fields distinguish.
    assert {k[0] for k in kinds} >= {"TCP", "UDP", "ICMP", "ICMP6", "ARP", "SCTP"}
    assert any(k[1] for k in kinds) and any(k[3] for k in kinds)


def test_the_read_command_prints_the_same_fields(corpus_file):
    out = run_pcapdump("read", str(corpus_file), "-json")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert lines == [p.fields() for p in pcapdump.read(corpus_file)]


def test_a_packet_made_in_python_is_decoded_too():
    syn = bytes.fromhex(
        "020000000002020000000001810000050800"
        "450000280000400040060000c6120001c6120002"
        "9c4000500000000000000000500200000000000000"
    )[:-1]
    p = pcapdump.Packet(1, syn, wirelen=len(syn) + 6)
    assert (p.proto, p.src, p.dst, p.sport, p.dport, p.vlan) == (
        "TCP",
        "198.18.0.1",
        "198.18.0.2",
        40000,
        80,
        (5,),
    )
    assert (p.eth_src, p.eth_dst, p.ip_proto, p.tcp_flags, p.truncated) == (
        "02:00:00:00:00:01",
        "02:00:00:00:00:02",
        6,
        "S",
        True,
    )
    bare = pcapdump.Packet(1, b"\x01\x02")
    assert (bare.proto, bare.src, bare.sport, bare.vlan, bare.tcp_flags) == ("ETH", None, None, (), None)


def tshark_fields(path: Path) -> list[dict[str, str]]:
    names = ["ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport", "udp.srcport", "tcp.dstport"]
    names += ["udp.dstport", "vlan.id", "ieee8021ad.id", "tcp.flags"]
    cmd = ["tshark", "-r", str(path), "-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"]
    for n in names:
        cmd += ["-e", n]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    return [dict(zip(names, line.split("\t"), strict=True)) for line in out.splitlines()]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
def test_typed_fields_agree_with_tshark(corpus_file):
    flag_bits = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, ".": 0x10, "U": 0x20, "E": 0x40, "W": 0x80}
    packets = list(pcapdump.read(corpus_file))
    theirs = tshark_fields(corpus_file)
    assert len(theirs) == len(packets)
    compared = {"addr": 0, "port": 0, "vlan": 0, "flags": 0}
    for p, t in zip(packets, theirs, strict=True):
        if p.truncated or p.proto in ("ARP", "ETH", "LLC"):
            continue
        src = t["ip.src"] or t["ipv6.src"]
        if src and p.src is not None:
            assert (p.src, p.dst) == (src, t["ip.dst"] or t["ipv6.dst"]), (p.brief(), t)
            compared["addr"] += 1
        sport = t["tcp.srcport"] or t["udp.srcport"]
        if sport and p.sport is not None and p.proto in ("TCP", "UDP"):
            assert (p.sport, p.dport) == (int(sport), int(t["tcp.dstport"] or t["udp.dstport"])), p.brief()
            compared["port"] += 1
        # tshark names an 802.1ad (QinQ) tag apart from 802.1Q ones; either is the outermost here.
        outer = t["ieee8021ad.id"] or t["vlan.id"]
        if outer:
            assert p.vlan and p.vlan[0] == int(outer), p.brief()
            compared["vlan"] += 1
        if t["tcp.flags"] and p.tcp_flags is not None:
            bits = 0 if p.tcp_flags == "none" else sum(flag_bits[c] for c in p.tcp_flags)
            assert bits == int(t["tcp.flags"], 16) & 0xFF, (p.brief(), t["tcp.flags"])
            compared["flags"] += 1
    assert all(n > 5 for n in compared.values()), compared


def test_read_table_rows_are_the_packets(corpus_file):
    packets = list(pcapdump.read(corpus_file))
    t = pa.table(pcapdump.read_table(corpus_file))
    assert t.column_names == COLUMNS
    assert t.num_rows == len(packets)
    assert t.schema.field("ts").type == pa.timestamp("ns", tz="UTC")
    assert t.schema.field("vlan").type == pa.list_(pa.field("item", pa.uint16(), nullable=False))
    rows = t.to_pylist()
    for p, row in zip(packets, rows, strict=True):
        line = p.fields()
        assert row["index"] == p.index and row["direction"] == p.direction and row["iface"] == p.iface
        # Every column named as in the JSON line holds its value (`direction` and `ts` are checked apart).
        for key in set(COLUMNS) & set(line):
            assert row[key] == line[key], key
        assert (row["ip_proto"], row["tcp_flags"], row["info"]) == (p.ip_proto, p.tcp_flags, line["info"])
    ts = t.column("ts").cast(pa.int64()).to_pylist()
    assert ts == [p.ts_ns for p in packets]


def test_polars_and_duckdb_take_the_table_as_it_is(corpus_file):
    udp = [p for p in pcapdump.read(corpus_file, filter="udp")]
    df = pl.DataFrame(pcapdump.read_table(corpus_file, filter="udp"))
    assert df.height == len(udp)
    assert df["dport"].to_list() == [p.dport for p in udp]
    assert df.schema["ts"] == pl.Datetime("ns", "UTC")
    t = pcapdump.read_table(corpus_file, columns=["proto", "sport"])
    counted = duckdb.sql("select proto, count(*) as n from t group by proto order by proto").fetchall()
    assert t.num_rows == sum(n for _, n in counted)
    every = list(pcapdump.read(corpus_file))
    assert dict(counted) == {
        proto: sum(p.proto == proto for p in every) for proto in {p.proto for p in every}
    }


def test_columns_count_and_snaplen_select(corpus_file):
    t = pa.table(pcapdump.read_table(corpus_file, columns=["dport", "ts", "caplen"], count=5, snaplen=40))
    assert t.column_names == ["dport", "ts", "caplen"]
    assert t.num_rows == 5 and max(t.column("caplen").to_pylist()) <= 40
    table = pcapdump.read_table(corpus_file, count=3)
    assert (len(table), table.num_rows, table.column_names) == (3, 3, COLUMNS)
    # The stream can be taken more than once.
    assert pa.table(table).equals(pa.table(table))


def test_bad_arguments_are_named(corpus_file, tmp_path):
    with pytest.raises(pcapdump.UsageError, match=r'no column "port": the columns are index, ts') as e:
        pcapdump.read_table(corpus_file, columns=["index", "port"])
    assert e.value.token == "port"
    with pytest.raises(pcapdump.UsageError):
        pcapdump.read_table(corpus_file, columns="proto")
    with pytest.raises(pcapdump.UsageError, match="no columns asked for") as e:
        pcapdump.read_table(corpus_file, columns=[])
    assert e.value.token == "columns"
    with pytest.raises(pcapdump.UsageError, match="1 is not a column name"):
        pcapdump.read_table(corpus_file, columns=[1])
    with pytest.raises(ValueError, match=r"^count=-1: expected 1"):
        pcapdump.read_table(corpus_file, count=-1)
    with pytest.raises(ValueError, match=r"^count=0: expected 1"):
        list(pcapdump.read(corpus_file, count=0))
    with pytest.raises(TypeError, match=r"^count='5': expected an integer"):
        pcapdump.read_table(corpus_file, count="5")
    with pytest.raises(TypeError, match=r"^filter=5: expected filter words"):
        pcapdump.read_table(corpus_file, filter=5)
    with pytest.raises(pcapdump.FilterError):
        pcapdump.read_table(corpus_file, filter="port 99999")
    with pytest.raises(pcapdump.CaptureFileError):
        pcapdump.read_table(tmp_path / "absent.cap")
    cut = tmp_path / "cut.cap"
    cut.write_bytes(Path(corpus_file).read_bytes()[:-7])
    with pytest.raises(pcapdump.CaptureFileError, match="cut"):
        pcapdump.read_table(cut)


def test_an_empty_selection_is_an_empty_table(corpus_file):
    t = pa.table(pcapdump.read_table(corpus_file, filter="port 1"))
    assert (t.num_rows, t.column_names) == (0, COLUMNS)


@pytest.mark.live
def test_a_capture_as_a_table(testnet):
    with testnet.on_capture_side():
        cap = pcapdump.capture("int", filter="udp dstport 9000")
    with cap:
        testnet.send_udp(CAP_V4, 9000, 30)
        cap.stop()
        got = list(cap)
        t = pa.table(cap.table())
        picked = pa.table(cap.table(columns=["index", "sport"]))
        with pytest.raises(pcapdump.UsageError):
            cap.table(columns=["nope"])
        # The same checks as read_table's: a lone string, a name that is not one; any iterable.
        with pytest.raises(pcapdump.UsageError, match="expected a list of column names"):
            cap.table(columns="ts")
        with pytest.raises(pcapdump.UsageError, match="is not a column name"):
            cap.table(columns=[b"src"])
        assert cap.table(columns=iter(["index"])).column_names == ["index"]
    assert len(got) == 30
    assert t.num_rows == 30 and picked.column_names == ["index", "sport"]
    assert t.column("index").to_pylist() == [p.index for p in got]
    assert t.column("iface").to_pylist() == ["int"] * 30
    assert t.column("direction").to_pylist() == ["in"] * 30
    assert t.column("dport").to_pylist() == [9000] * 30
    assert t.column("src").to_pylist() == [SND_V4] * 30


def test_the_recipes_of_the_tables_page_run(corpus_file, tmp_path):
    page = (Path(__file__).resolve().parent.parent / "docs" / "tables.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, re.S)
    offline = [b for b in blocks if "pcapdump.capture(" not in b]
    assert len(offline) >= 5
    shutil.copy(corpus_file, tmp_path / "capture.cap")
    for block in offline:
        done = subprocess.run(
            [sys.executable, "-c", block],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, block + done.stderr
        assert done.stdout.strip(), block


def test_a_gz_capture_reads_as_the_same_table(corpus_file, tmp_path):
    gz = tmp_path / "corpus.pcap.gz"
    gz.write_bytes(gzip.compress(Path(corpus_file).read_bytes()))
    assert pa.table(pcapdump.read_table(gz)).equals(pa.table(pcapdump.read_table(corpus_file)))


def test_reading_a_large_file_keeps_little_of_it_resident(tmp_path):
    # 1400-byte frames: the file is large, its table small. A file read once, front to back, must not
    # stay mapped in full: the process grows by about the table, not by the file.
    frame = bytes.fromhex("020000000002020000000001") + b"\x08\x00" + bytes(1386)
    big = tmp_path / "big.cap"
    with open(big, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        record = struct.pack("<IIII", 1_700_000_000, 0, len(frame), len(frame)) + frame
        out.write(record * 100_000)
    # VmHWM: this process's peak resident set (ru_maxrss would start from the parent's).
    script = (
        "import json, sys, pcapdump, pyarrow as pa\n"
        "def peak():\n"
        "    line = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
        "    return int(line.split()[1]) * 1024\n"
        "base = peak()\n"
        "t = pa.table(pcapdump.read_table(sys.argv[1]))\n"
        "print(json.dumps([t.num_rows, t.nbytes, peak() - base]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(big)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    rows, table_bytes, grown = json.loads(done.stdout)
    size = big.stat().st_size
    allowed = 2 * table_bytes + 64 * 2**20
    assert rows == 100_000 and allowed < size
    assert grown < allowed, (grown, table_bytes, size)


def test_the_interpreter_exits_cleanly_while_a_daemon_thread_reads_a_silent_fifo(tmp_path):
    fifo = tmp_path / "silent"
    os.mkfifo(fifo)
    script = (
        "import sys, threading, time, pcapdump\n"
        "threading.Thread(target=lambda: pcapdump.read_table(sys.argv[1]), daemon=True).start()\n"
        "time.sleep(0.5)\n"
        "print('main exits', flush=True)\n"
    )
    # The writer end stays open and silent, so the reader waits for bytes.
    keep = os.open(fifo, os.O_RDWR)
    try:
        for _ in range(4):
            command = [sys.executable, "-c", script, str(fifo)]
            done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
            assert (done.returncode, done.stdout.strip()) == (0, "main exits"), done.stderr[-2000:]
    finally:
        os.close(keep)


def test_ctrl_c_ends_the_table_of_a_large_file(tmp_path):
    frame = bytes.fromhex("020000000002020000000001") + b"\x08\x00" + bytes(46)
    big = tmp_path / "many.cap"
    record = struct.pack("<IIII", 1_700_000_000, 0, len(frame), len(frame)) + frame
    with open(big, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for _ in range(10):
            out.write(record * 500_000)
    script = (
        "import sys, time, pcapdump\n"
        "print('reading', flush=True)\n"
        "start = time.monotonic()\n"
        "try:\n"
        "    pcapdump.read_table(sys.argv[1])\n"
        "    print('finished', flush=True)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', time.monotonic() - start, flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(big)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "reading"
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    word, *after = out.split()
    # Five million rows take seconds; the signal ends the reading at the next look, milliseconds later.
    assert word == "interrupted" and float(after[0]) < 2.0, out
