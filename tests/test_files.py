"""Capture files: what we write passes capinfos and tshark and round-trips byte-exact through tcpdump;
what we read includes pcap (µs, ns, either byte order) and pcapng from Wireshark's own tools."""

from __future__ import annotations

import filecmp
import os
import subprocess
from pathlib import Path

import corpus
import pcapdump
import pytest
from conftest import need_tool, pcapdump_exe, run_pcapdump


def tshark_count(path: Path) -> int:
    out = subprocess.run([need_tool("tshark"), "-r", str(path)], capture_output=True, text=True, check=True)
    return len(out.stdout.splitlines())


def capinfos_ok(path: Path) -> str:
    out = subprocess.run([need_tool("capinfos"), str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_read_w_output_is_valid_and_round_trips_through_tcpdump(corpus_file, tmp_path):
    out = tmp_path / "tcp.cap"
    done = run_pcapdump("read", str(corpus_file), "tcp", "-w", str(out))
    assert done.returncode == 0, done.stderr
    kept = sum(1 for _ in pcapdump.read(corpus_file, filter="tcp"))
    assert kept > 10
    assert f"{kept} packets" in done.stdout
    assert "Number of packets:   " + str(kept) in capinfos_ok(out).replace("= ", "")
    assert tshark_count(out) == kept
    again = tmp_path / "again.cap"
    subprocess.run([need_tool("tcpdump"), "-r", str(out), "-w", str(again)], check=True, capture_output=True)
    assert filecmp.cmp(out, again, shallow=False)


def record_ends(path: Path) -> list[int]:
    """Where each record of a little-endian classic pcap ends."""
    data, at, ends = path.read_bytes(), 24, []
    while at + 16 <= len(data):
        at += 16 + int.from_bytes(data[at + 8 : at + 12], "little")
        ends.append(at)
    return ends


def test_read_w_of_a_cut_file_keeps_every_complete_packet(corpus_file, tmp_path):
    ends = record_ends(corpus_file)
    n = len(ends) // 2
    cut = tmp_path / "cut.cap"
    cut.write_bytes(corpus_file.read_bytes()[: ends[n - 1] + 7])  # 7 bytes into record n + 1
    for words, kept in (
        ([], n),
        (["udp"], sum(1 for p in pcapdump.read(corpus_file, filter="udp") if p.index <= n)),
    ):
        out = tmp_path / "out.cap"
        done = run_pcapdump(*words, "read", str(cut), "-w", str(out))
        assert done.returncode == 1
        assert done.stderr == (
            f"pcapdump: '{cut}': file ends inside record {n + 1} at byte {ends[n - 1]}; "
            f"the capture was cut short; kept {kept} of the {n} packets before the cut in '{out}'\n"
        )
        assert 0 < kept <= n
        assert "Number of packets:   " + str(kept) in capinfos_ok(out).replace("= ", "")
        assert tshark_count(out) == kept
        # The packets kept are those of the whole file, written the same way.
        whole = tmp_path / "whole.cap"
        assert (
            run_pcapdump(*words, "read", str(corpus_file), "-c", str(kept), "-w", str(whole)).returncode == 0
        )
        assert filecmp.cmp(out, whole, shallow=False)


def test_python_write_is_valid_and_keeps_wire_length(tmp_path, corpus_frames):
    out = tmp_path / "api.cap"
    n = pcapdump.write(out, [(i * 1_000_000, f.data) for i, f in enumerate(corpus_frames)])
    assert n == len(corpus_frames)
    capinfos_ok(out)
    assert tshark_count(out) == n
    back = list(pcapdump.read(out))
    assert [p.data for p in back] == [f.data for f in corpus_frames]
    assert [p.ts_ns for p in back] == [i * 1_000_000 for i in range(n)]
    packets = list(pcapdump.read(out, snaplen=20))
    cut = tmp_path / "cut.cap"
    pcapdump.write(cut, packets, snaplen=20)
    assert all(p.caplen <= 20 for p in pcapdump.read(cut))
    assert [p.wirelen for p in pcapdump.read(cut)] == [len(f.data) for f in corpus_frames]
    again = tmp_path / "again.cap"
    subprocess.run([need_tool("tcpdump"), "-r", str(out), "-w", str(again)], check=True, capture_output=True)
    assert filecmp.cmp(out, again, shallow=False)


@pytest.mark.parametrize(("nano", "endianness"), [(False, "<"), (True, "<"), (False, ">"), (True, ">")])
@pytest.mark.portable
def test_reads_pcap_in_every_resolution_and_byte_order(tmp_path, corpus_frames, nano, endianness):
    path = tmp_path / "x.pcap"
    corpus.write(path, corpus_frames, nano=nano, endianness=endianness)
    got = list(pcapdump.read(path))
    assert [p.data for p in got] == [f.data for f in corpus_frames]
    assert [p.wirelen for p in got] == [f.wirelen for f in corpus_frames]
    frac = 123_456_789 if nano else 123_456_000
    assert got[3].ts_ns == (corpus.BASE + 3) * 1_000_000_000 + frac
    # Writing them back: records already in our layout are copied, others re-encoded; some are cut.
    for snaplen in ("262144", "60"):
        out = tmp_path / f"out-{snaplen}.cap"
        assert run_pcapdump("read", str(path), "-s", snaplen, "-w", str(out)).returncode == 0
        again = list(pcapdump.read(out))
        cut = int(snaplen)
        assert [p.data for p in again] == [f.data[:cut] for f in corpus_frames]
        assert [p.wirelen for p in again] == [f.wirelen for f in corpus_frames]
        assert [p.ts_ns for p in again] == [p.ts_ns // 1000 * 1000 for p in got]


def test_reads_pcapng_written_by_editcap(tmp_path, corpus_file, corpus_frames):
    ng = tmp_path / "x.pcapng"
    subprocess.run([need_tool("editcap"), "-F", "pcapng", str(corpus_file), str(ng)], check=True)
    got = list(pcapdump.read(ng))
    assert [p.data for p in got] == [f.data for f in corpus_frames]
    assert got[5].ts_ns == (corpus.BASE + 5) * 1_000_000_000 + 123_456_000
    lines = run_pcapdump("read", str(ng), "udp", "-c", "3")
    assert lines.returncode == 0 and len(lines.stdout.splitlines()) == 3


def test_reads_pcapng_from_tshark_with_interface_names_and_big_endian_blocks(tmp_path, corpus_file):
    # dumpcap/tshark write interface names; a big-endian section is made by hand below.
    ng = tmp_path / "named.pcapng"
    subprocess.run([need_tool("editcap"), "-F", "pcapng", str(corpus_file), str(ng)], check=True)
    assert sum(1 for _ in pcapdump.read(ng, filter="vlan 5")) == sum(
        1 for _ in pcapdump.read(corpus_file, filter="vlan 5")
    )
    be = tmp_path / "be.pcapng"
    be.write_bytes(big_endian_pcapng(b"\x02" * 6 + b"\x04" * 6 + b"\x08\x06" + b"\x00" * 28, "int"))
    (pkt,) = list(pcapdump.read(be))
    assert pkt.iface == "int" and pkt.direction == "out" and pkt.ts_ns == 1_500_000_000_250_000_000
    assert pkt.brief().split()[2:4] == ["int", "out"]


def big_endian_pcapng(frame: bytes, name: str) -> bytes:
    import struct

    def block(kind: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        n = 12 + len(body)
        return struct.pack(">II", kind, n) + body + struct.pack(">I", n)

    def opt(code: int, value: bytes) -> bytes:
        return struct.pack(">HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)

    shb = block(0x0A0D0D0A, struct.pack(">IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = block(1, struct.pack(">HHI", 1, 0, 0) + opt(2, name.encode()) + opt(9, b"\x03") + opt(0, b""))
    ticks = 1_500_000_000_250  # milliseconds (if_tsresol = 3)
    epb = block(
        6,
        struct.pack(">IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame))
        + frame
        + b"\x00" * (-len(frame) % 4)
        + opt(2, struct.pack(">I", 2))
        + opt(0, b""),
    )
    return shb + idb + epb


def test_reads_standard_input_and_a_pipe(corpus_file, tmp_path):
    expected = run_pcapdump("read", str(corpus_file)).stdout
    data = corpus_file.read_bytes()

    def fed(*args: str) -> subprocess.CompletedProcess[bytes]:
        env = {**os.environ, "TZ": "UTC"}
        return subprocess.run([pcapdump_exe(), *args], input=data, capture_output=True, env=env, check=False)

    from_stdin = fed("read", "-")
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert from_stdin.stdout.decode() == expected
    # /dev/stdin on a pipe cannot be mapped: it is read as a stream, all the same.
    tcp = tmp_path / "tcp.cap"
    from_pipe = fed("tcp", "read", "/dev/stdin", "-w", str(tcp))
    assert from_pipe.returncode == 0, from_pipe.stderr
    assert tshark_count(tcp) == len(run_pcapdump("tcp", "read", str(corpus_file)).stdout.splitlines()) > 0


def test_a_folder_is_named_as_such(tmp_path):
    done = run_pcapdump("read", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr == f"pcapdump: '{tmp_path}': is a folder (expected a pcap or pcapng capture)\n"


@pytest.mark.parametrize("tz", ["UTC", "JST-9", "EST5EDT,M3.2.0,M11.1.0", "Asia/Kolkata", ""])
def test_read_times_are_tcpdumps_in_the_callers_zone(corpus_file, tz):
    """`-date` is tcpdump's `-tttt`; without it, the time of day; both in the caller's TZ (`""`: UTC)."""
    tcpdump = need_tool("tcpdump")
    if tz == "Asia/Kolkata" and not Path("/usr/share/zoneinfo/Asia/Kolkata").is_file():
        pytest.skip("no zone files on this machine")
    env = {**os.environ, "TZ": tz}
    theirs = subprocess.run(
        [tcpdump, "-tttt", "-nr", str(corpus_file)], capture_output=True, text=True, env=env, check=True
    ).stdout.splitlines()
    dated = run_pcapdump("read", str(corpus_file), "-date", env={"TZ": tz}).stdout.splitlines()
    plain = run_pcapdump("read", str(corpus_file), env={"TZ": tz}).stdout.splitlines()
    assert len(dated) == len(theirs) == len(plain) > 100
    for ours, tcpd, short in zip(dated, theirs, plain, strict=True):
        assert ours.split()[1:3] == tcpd.split()[0:2]
        assert short.split()[1] == tcpd.split()[1]


def test_read_utc_ignores_the_zone(corpus_file):
    utc = run_pcapdump("read", str(corpus_file), "-utc", "-c", "3", env={"TZ": "JST-9"}).stdout
    assert utc == run_pcapdump("read", str(corpus_file), "-c", "3", env={"TZ": "UTC"}).stdout
    assert utc != run_pcapdump("read", str(corpus_file), "-c", "3", env={"TZ": "JST-9"}).stdout
