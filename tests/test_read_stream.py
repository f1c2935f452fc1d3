"""`read` from a pipe reads as packets arrive: lines come out before the writer is done, `-c` returns as
soon as it has its packets, memory stays within a record and a read whatever the stream's length, and a
stream that ends inside a record keeps (with `-w`) every packet before it. pcap and pcapng, both byte
orders, across a real pipe."""

from __future__ import annotations

import os
import select
import struct
import subprocess
import sys
import time

import pcapdump
import pytest
from conftest import need_tool, pcapdump_exe, run_pcapdump

ENV = {**os.environ, "TZ": "UTC"}
FORMATS = ["pcap-le", "pcap-be", "pcapng-le", "pcapng-be"]


def capture(kind: str, frames: list[bytes]) -> tuple[bytes, list[bytes]]:
    """`frames` as a capture of `kind`: its head (file header, or section and interface blocks) and one
    piece per packet."""
    fmt, order = kind.split("-")
    end = "<" if order == "le" else ">"
    if fmt == "pcap":
        head = struct.pack(end + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
        records = [
            struct.pack(end + "IIII", 1_700_000_000 + i, 250_000, len(f), len(f)) + f
            for i, f in enumerate(frames)
        ]
        return head, records

    def block(kind: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        return struct.pack(end + "II", kind, 12 + len(body)) + body + struct.pack(end + "I", 12 + len(body))

    def opt(code: int, value: bytes) -> bytes:
        return struct.pack(end + "HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)

    shb = block(0x0A0D0D0A, struct.pack(end + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = block(1, struct.pack(end + "HHI", 1, 0, 0) + opt(2, b"gw0") + opt(0, b""))
    records = []
    for i, f in enumerate(frames):
        ticks = (1_700_000_000 + i) * 1_000_000 + 250_000
        body = struct.pack(end + "IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(f), len(f)) + f
        records.append(block(6, body + b"\x00" * (-len(f) % 4)))
    return shb + idb, records


def udp_frame(i: int) -> bytes:
    """An Ethernet/IPv4/UDP frame from 198.18.0.1 port 4000 + i to 198.18.0.2 port 53."""
    payload = bytes([i % 256]) * (20 + i)
    udp = struct.pack("!HHHH", 4000 + i, 53, 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        i,
        0,
        64,
        17,
        0,
        bytes([198, 18, 0, 1]),
        bytes([198, 18, 0, 2]),
    )
    return bytes.fromhex("020000000002020000000001") + b"\x08\x00" + ip + udp


FRAMES = [udp_frame(i) for i in range(12)]


def read_line(stream, seconds: float) -> str:
    """One line from `stream` within `seconds`, or '' if none came."""
    ready, _, _ = select.select([stream], [], [], seconds)
    return stream.readline().decode() if ready else ""


@pytest.mark.parametrize("kind", FORMATS)
def test_lines_come_out_as_packets_arrive(kind, tmp_path):
    head, records = capture(kind, FRAMES[:3])
    whole = tmp_path / "whole.cap"
    whole.write_bytes(head + b"".join(records))
    expected = run_pcapdump("read", str(whole)).stdout.splitlines()
    assert len(expected) == 3
    reader = subprocess.Popen(
        [pcapdump_exe(), "read", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    try:
        reader.stdin.write(head)
        reader.stdin.flush()
        for record, line in zip(records, expected, strict=True):
            reader.stdin.write(record)
            reader.stdin.flush()
            # The pipe is still open: the line comes now, not when the writer is done.
            assert read_line(reader.stdout, 20) == line + "\n"
        reader.stdin.close()
        assert reader.wait(timeout=20) == 0, reader.stderr.read()
        assert reader.stdout.read() == b""
    finally:
        reader.kill()
        reader.wait()
        reader.stdout.close()
        reader.stderr.close()


@pytest.mark.parametrize("kind", FORMATS)
def test_a_stream_reads_as_the_same_file_does(kind, tmp_path):
    head, records = capture(kind, FRAMES)
    data = head + b"".join(records)
    src = tmp_path / "src.cap"
    src.write_bytes(data)
    for words in ([], ["-json"], ["udp", "srcport", "4003-4007"]):
        from_file = run_pcapdump("read", str(src), *words)
        from_pipe = subprocess.run(
            [pcapdump_exe(), "read", "-", *words], input=data, capture_output=True, env=ENV, timeout=60
        )
        assert from_file.returncode == from_pipe.returncode == 0, from_pipe.stderr
        assert from_pipe.stdout.decode() == from_file.stdout and from_file.stdout
    out_file, out_pipe = tmp_path / "from-file.cap", tmp_path / "from-pipe.cap"
    assert run_pcapdump("read", str(src), "-w", str(out_file)).returncode == 0
    done = subprocess.run(
        [pcapdump_exe(), "read", "-", "-w", str(out_pipe)], input=data, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert out_pipe.read_bytes() == out_file.read_bytes()
    assert [p.data for p in pcapdump.read(out_pipe)] == FRAMES


def holding_writer(data: bytes) -> subprocess.Popen[bytes]:
    """A process that writes `data` to its standard output, then holds the pipe open for a minute."""
    script = (
        "import sys, time\n"
        "sys.stdout.buffer.write(sys.stdin.buffer.read())\n"
        "sys.stdout.flush()\n"
        "time.sleep(60)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    writer.stdin.write(data)
    writer.stdin.close()
    return writer


@pytest.mark.parametrize("kind", ["pcap-le", "pcapng-be"])
def test_c_1_returns_while_the_writer_still_holds_the_pipe(kind, tmp_path):
    head, records = capture(kind, FRAMES)
    out = tmp_path / "one.cap"
    for words in (["-c", "1"], ["-c", "1", "-w", str(out)], ["srcport", "4002", "-c", "1"]):
        # Two packets, then a writer that says nothing more and does not close the pipe.
        writer = holding_writer(head + records[0] + records[2])
        try:
            started = time.monotonic()
            done = subprocess.run(
                [pcapdump_exe(), "read", "-", *words],
                stdin=writer.stdout,
                capture_output=True,
                env=ENV,
                timeout=30,
            )
            took = time.monotonic() - started
            assert writer.poll() is None, "the writer was still holding the pipe"
        finally:
            writer.kill()
            writer.wait()
            writer.stdout.close()
        assert done.returncode == 0, done.stderr
        assert took < 10
        if "-w" in words:
            assert [p.data for p in pcapdump.read(out)] == [FRAMES[0]]
            assert done.stdout.startswith(f"{out}: 1 packet,".encode())
        else:
            (line,) = done.stdout.decode().splitlines()
            assert line.startswith("2 " if "srcport" in words else "1 ")


def big_feeder(megabytes: int) -> list[str]:
    """A command that writes a classic pcap of 1000-byte records, about `megabytes` MiB, to its output."""
    script = (
        "import struct, sys\n"
        "out = sys.stdout.buffer\n"
        "out.write(struct.pack('<IHHiIII', 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))\n"
        "record = struct.pack('<IIII', 1, 0, 1000, 1000) + bytes(range(250)) * 4\n"
        "chunk = record * 1024\n"
        f"for _ in range({megabytes} * 1024 * 1024 // len(chunk)):\n"
        "    out.write(chunk)\n"
    )
    return [sys.executable, "-c", script]


# Runs a command and says its peak memory. The measuring process is small: a child's peak counts the
# memory of whatever it was forked from before its exec (a pytest process is large).
PEAK = (
    "import os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[1:])\n"
    "_, status, usage = os.wait4(child.pid, 0)\n"
    "print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, file=sys.stderr)\n"
)


@pytest.mark.skipif(not hasattr(os, "wait4"), reason="needs wait4 for the peak memory of a process")
@pytest.mark.parametrize("words", [[], ["-w", "/dev/null"]], ids=["lines", "write"])
def test_memory_stays_bounded_whatever_the_stream_length(words, tmp_path):
    megabytes = 384
    packets = megabytes * 1024 * 1024 // (1016 * 1024) * 1024
    feeder = subprocess.Popen(big_feeder(megabytes), stdout=subprocess.PIPE)
    try:
        with open(tmp_path / "stdout", "wb") as stdout:
            done = subprocess.run(
                [sys.executable, "-c", PEAK, pcapdump_exe(), "read", "-", *words],
                stdin=feeder.stdout,
                stdout=stdout,
                stderr=subprocess.PIPE,
                text=True,
                timeout=240,
            )
        assert feeder.wait(timeout=60) == 0
    finally:
        feeder.stdout.close()
        feeder.kill()
        feeder.wait()
    code, peak_kib = (int(x) for x in done.stderr.split()[-2:])
    assert code == 0, done.stderr
    with open(tmp_path / "stdout", "rb") as out:
        if words:
            assert out.read().startswith(f"/dev/null: {packets} packets".encode())
        else:
            assert sum(1 for _ in out) == packets
    # The interpreter and the engine take some tens of MiB; the stream, one record and a read. Read
    # whole, it would be the 384 MiB.
    assert peak_kib / 1024 < 64, f"peak {peak_kib / 1024:.0f} MiB for a {megabytes} MiB stream"


@pytest.mark.parametrize("kind", ["pcapng-le", "pcap-be"])
def test_a_stream_cut_inside_a_record_keeps_the_packets_before_it(kind, tmp_path):
    head, records = capture(kind, FRAMES[:5])
    cut_at = len(head) + sum(len(r) for r in records[:4])
    data = head + b"".join(records)[: cut_at - len(head) + 10]
    out = tmp_path / "kept.cap"
    done = subprocess.run(
        [pcapdump_exe(), "udp", "read", "-", "-w", str(out)], input=data, capture_output=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr.decode() == (
        f"pcapdump: '-': file ends inside record 5 at byte {cut_at}; the capture was cut short; "
        f"kept 4 of the 4 packets before the cut in '{out}'\n"
    )
    assert done.stdout == b""
    assert [p.data for p in pcapdump.read(out)] == FRAMES[:4]
    tshark = subprocess.run([need_tool("tshark"), "-r", str(out)], capture_output=True, text=True, check=True)
    assert len(tshark.stdout.splitlines()) == 4
    # Printing: the lines before the cut, then the same line about the cut.
    shown = subprocess.run(
        [pcapdump_exe(), "read", "-"], input=data, capture_output=True, env=ENV, timeout=60
    )
    assert shown.returncode == 1 and len(shown.stdout.splitlines()) == 4
    assert (
        shown.stderr.decode()
        == f"pcapdump: '-': file ends inside record 5 at byte {cut_at}; the capture was cut short\n"
    )


def test_the_python_reader_yields_a_packet_of_a_held_pipe_at_once(tmp_path):
    head, records = capture("pcap-le", FRAMES)
    writer = holding_writer(head + records[0])
    script = (
        "import pcapdump\n"
        "for p in pcapdump.read('-'):\n"
        "    print(p.index, len(p.data), flush=True)\n"
        "    break\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script], stdin=writer.stdout, capture_output=True, text=True, timeout=30
        )
        assert writer.poll() is None
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"1 {len(FRAMES[0])}\n"


def test_an_ignored_block_longer_than_a_stream_window_is_read_past(tmp_path):
    head, records = capture("pcapng-le", FRAMES[:2])
    # A custom block (type 0x40000BAD) of 4 MiB between the packets: read past, never held.
    filler = (
        struct.pack("<II", 0x40000BAD, 12 + (4 << 20)) + bytes(4 << 20) + struct.pack("<I", 12 + (4 << 20))
    )
    data = head + records[0] + filler + records[1]
    src = tmp_path / "filler.pcapng"
    src.write_bytes(data)
    from_pipe = subprocess.run(
        [pcapdump_exe(), "read", "-"], input=data, capture_output=True, env=ENV, timeout=60
    )
    assert from_pipe.returncode == 0, from_pipe.stderr
    assert from_pipe.stdout.decode() == run_pcapdump("read", str(src)).stdout
    assert len(from_pipe.stdout.splitlines()) == 2


def test_the_generated_captures_are_what_wireshark_reads(tmp_path):
    # The oracle for the builder above: tshark reads each kind, every packet, with its timestamp.
    for kind in FORMATS:
        head, records = capture(kind, FRAMES)
        path = tmp_path / f"{kind}.cap"
        path.write_bytes(head + b"".join(records))
        fields = subprocess.run(
            [
                need_tool("tshark"),
                "-r",
                str(path),
                "-T",
                "fields",
                "-e",
                "frame.time_epoch",
                "-e",
                "udp.srcport",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert fields[:2] == ["1700000000.250000000", "4000"], (kind, fields[:2])
        assert len(fields) == 2 * len(FRAMES)


def test_a_stream_with_no_writer_yet_waits_for_one(tmp_path):
    # A FIFO opened before its writer: the reader waits (interruptibly), then reads as data comes.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(
        [pcapdump_exe(), "read", str(fifo), "-c", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    try:
        time.sleep(0.3)
        head, records = capture("pcap-le", FRAMES)
        with open(fifo, "wb") as w:
            w.write(head + records[0])
            w.flush()
            assert read_line(reader.stdout, 20).startswith("1 ")
            w.write(records[1])
            w.flush()
            assert reader.wait(timeout=20) == 0
        assert reader.stdout.read().decode().startswith("2 ")
    finally:
        reader.kill()
        reader.wait()
        reader.stdout.close()
        reader.stderr.close()


@pytest.mark.skipif(not hasattr(os, "wait4"), reason="needs wait4 for the peak memory of a process")
def test_a_stream_of_many_long_named_interfaces_stays_bounded(tmp_path):
    """3000 interface blocks with 64 KB names, then a packet: the names are kept cut short, so memory
    stays small (kept whole, they would be 190 MiB)."""
    script = (
        "import struct, sys\n"
        "out = sys.stdout.buffer\n"
        "out.write(struct.pack('<IIIHHqI', 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28))\n"
        "name = b'e' * 65532\n"
        "body = struct.pack('<HHI', 1, 0, 65535) + struct.pack('<HH', 2, len(name)) + name + b'\\0' * 4\n"
        "idb = struct.pack('<II', 1, 12 + len(body)) + body + struct.pack('<I', 12 + len(body))\n"
        "for _ in range(3000):\n"
        "    out.write(idb)\n"
        "data = bytes(60)\n"
        "epb = struct.pack('<IIIIIII', 6, 32 + 60, 0, 0, 1, 60, 60) + data + struct.pack('<I', 32 + 60)\n"
        "out.write(epb)\n"
    )
    feeder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        done = subprocess.run(
            [sys.executable, "-c", PEAK, pcapdump_exe(), "read", "-"],
            stdin=feeder.stdout,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        feeder.stdout.close()
        feeder.wait()
    code, peak_kib = (int(x) for x in done.stderr.split()[-2:])
    assert code == 0 and len(done.stdout.splitlines()) == 1, done.stderr
    assert peak_kib / 1024 < 64, f"peak {peak_kib / 1024:.0f} MiB"
