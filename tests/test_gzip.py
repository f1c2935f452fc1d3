"""gzip-compressed captures (docs/commands.md#files-read): known by their first two bytes, not by their
name, and read exactly as the plain capture through `pcapdump.read` and the `read` command. A .gz cut
short gives the packets before the cut and one line that says so; damaged or foreign gzip data is one
clean error; memory stays bounded however much a file inflates to, and Ctrl-C ends the reading."""

from __future__ import annotations

import gzip
import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pcapdump
import pytest
from conftest import need_tool, pcapdump_exe, run_pcapdump
from test_files import record_ends
from test_read_stream import PEAK

pytestmark = pytest.mark.portable

CUT = re.compile(r"the gzip data ends early, after (\d+) bytes of the capture; the \.gz file was cut short")


def pcapng_of(frames) -> bytes:
    """The frames as pcapng with two named interfaces, packets alternating between them, each with a
    direction (in, out, none in turn), microsecond timestamps."""

    def block(kind: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        return struct.pack("<II", kind, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))

    def opt(code: int, value: bytes) -> bytes:
        return struct.pack("<HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)

    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    for name in (b"int", b"ext"):
        out += block(1, struct.pack("<HHI", 1, 0, 0) + opt(2, name) + opt(0, b""))
    for i, f in enumerate(frames):
        ticks = (1_700_000_000 + i) * 1_000_000 + 123_456
        body = struct.pack("<IIIII", i % 2, ticks >> 32, ticks & 0xFFFFFFFF, len(f.data), f.wirelen)
        body += f.data + b"\x00" * (-len(f.data) % 4)
        if i % 3 != 2:
            body += opt(2, struct.pack("<I", 1 + i % 3)) + opt(0, b"")
        out += block(6, body)
    return out


@pytest.fixture(scope="module", params=["pcap", "pcapng"])
def plain(request, corpus_file, corpus_frames, tmp_path_factory) -> Path:
    """The corpus, uncompressed, as classic pcap or as pcapng."""
    if request.param == "pcap":
        return corpus_file
    path = tmp_path_factory.mktemp("plain") / "corpus.pcapng"
    path.write_bytes(pcapng_of(corpus_frames))
    return path


def compressed(path: Path, name: str, data: bytes) -> Path:
    """`data` gzip-compressed into `name` beside `path` (mtime 0, so the same bytes every time)."""
    out = path.parent / name
    out.write_bytes(gzip.compress(data, mtime=0))
    return out


@pytest.fixture(scope="module")
def packed(plain) -> Path:
    return compressed(plain, plain.name + ".gz", plain.read_bytes())


def packets(path, **kwargs) -> list[tuple[object, ...]]:
    return [
        (p.index, p.ts_ns, p.data, p.wirelen, p.iface, p.direction) for p in pcapdump.read(path, **kwargs)
    ]


@pytest.mark.parametrize(
    "selection",
    [{}, {"filter": "udp"}, {"count": 5}, {"filter": "ipsrc 198.18.0.1 tcp", "count": 3}, {"snaplen": 40}],
    ids=["all", "filter", "count", "filter-count", "snaplen"],
)
def test_read_yields_the_plain_files_packets(plain, packed, selection):
    expected = packets(plain, **selection)
    assert expected
    assert packets(packed, **selection) == expected


def test_the_file_name_does_not_matter(plain, packed, tmp_path):
    # gzip data named like a capture, and a plain capture named like gzip.
    hidden = tmp_path / "capture.cap"
    hidden.write_bytes(packed.read_bytes())
    misnamed = tmp_path / "capture.cap.gz"
    misnamed.write_bytes(plain.read_bytes())
    assert packets(hidden) == packets(misnamed) == packets(plain)


@pytest.mark.parametrize("words", [[], ["-json"], ["udp", "-c", "7"], ["-s", "30", "tcp"]])
def test_the_read_command_prints_the_plain_files_lines(plain, packed, words):
    expected = run_pcapdump("read", str(plain), *words)
    got = run_pcapdump("read", str(packed), *words)
    assert expected.returncode == got.returncode == 0, got.stderr
    assert got.stdout == expected.stdout and expected.stdout
    assert got.stderr == ""


@pytest.mark.parametrize("words", [[], ["udp"], ["-pcapng"], ["-pcapng", "tcp", "-c", "9"]])
def test_read_w_writes_the_plain_files_output(plain, packed, words, tmp_path):
    from_plain, from_packed = tmp_path / "from-plain.out", tmp_path / "from-packed.out"
    done_plain = run_pcapdump("read", str(plain), *words, "-w", str(from_plain))
    done_packed = run_pcapdump("read", str(packed), *words, "-w", str(from_packed))
    assert done_plain.returncode == done_packed.returncode == 0, done_packed.stderr
    assert done_packed.stdout == done_plain.stdout.replace(str(from_plain), str(from_packed))
    assert from_packed.read_bytes() == from_plain.read_bytes()
    assert packets(from_packed) == packets(from_plain)


def test_wireshark_reads_the_same_packets_from_the_gz(plain, packed):
    # tshark inflates .gz itself: an oracle for what the file holds.
    tshark = subprocess.run(
        [need_tool("tshark"), "-r", str(packed), "-T", "fields", "-e", "frame.time_epoch", "-e", "frame.len"],
        capture_output=True,
        text=True,
        check=True,
    )
    theirs = [line.split("\t") for line in tshark.stdout.splitlines()]
    ours = [(p.ts_ns, p.wirelen) for p in pcapdump.read(packed)]
    assert [(t.ljust(20, "0"), int(n)) for t, n in theirs] == [
        (f"{ts // 10**9}.{ts % 10**9:09d}", n) for ts, n in ours
    ]


def test_gzip_on_standard_input_reads_as_the_plain_file(plain, packed):
    for words in ([], ["udp", "-json"]):
        done = subprocess.run(
            [pcapdump_exe(), "read", "-", *words],
            input=packed.read_bytes(),
            capture_output=True,
            env={**os.environ, "TZ": "UTC"},
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.decode() == run_pcapdump("read", str(plain), *words).stdout


def test_members_one_after_another_read_as_one_capture(plain, tmp_path):
    data = plain.read_bytes()
    # Split anywhere (inside a record, too), as `cat a.gz b.gz` joins them.
    for at in (len(data) // 3, len(data) // 2 + 5, len(data) - 1):
        joined = tmp_path / "joined.gz"
        joined.write_bytes(gzip.compress(data[:at], mtime=0) + gzip.compress(data[at:], mtime=0))
        assert packets(joined) == packets(plain)
        assert (
            run_pcapdump("read", str(joined), "-json").stdout
            == run_pcapdump("read", str(plain), "-json").stdout
        )


def test_zeros_after_the_last_member_are_padding(plain, packed, tmp_path):
    padded = tmp_path / "padded.gz"
    padded.write_bytes(packed.read_bytes() + bytes(512))
    assert packets(padded) == packets(plain)
    done = run_pcapdump("read", str(padded), "-json")
    assert (done.returncode, done.stdout) == (0, run_pcapdump("read", str(plain), "-json").stdout)


@pytest.mark.parametrize("tail", [b"garbage!", b"\0\0 not zeros", b"x" * 40])
def test_other_bytes_after_the_last_member_are_named_not_called_a_cut(plain, packed, tmp_path, tail):
    trailing = tmp_path / "trailing.gz"
    trailing.write_bytes(packed.read_bytes() + tail)
    out = tmp_path / "out.cap"
    done = run_pcapdump("read", str(trailing), "-w", str(out))
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.endswith("(bytes that are not gzip follow its last member)"), line
    assert "cut short" not in line and not out.exists()
    with pytest.raises(pcapdump.CaptureFileError, match="not gzip follow its last member"):
        list(pcapdump.read(trailing))


def cut_gz(packed: Path, tmp_path: Path) -> Path:
    """`packed` cut in the middle of its compressed bytes."""
    data = packed.read_bytes()
    cut = tmp_path / "cut.cap.gz"
    cut.write_bytes(data[: len(data) // 2])
    return cut


def test_a_cut_gz_prints_the_packets_before_the_cut_then_one_line(plain, packed, tmp_path):
    cut = cut_gz(packed, tmp_path)
    expected = run_pcapdump("read", str(plain)).stdout.splitlines()
    done = run_pcapdump("read", str(cut))
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"pcapdump: '{cut}': ") and CUT.search(line), line
    lines = done.stdout.splitlines()
    assert 0 < len(lines) < len(expected)
    assert lines == expected[: len(lines)]


def test_read_w_of_a_cut_gz_keeps_every_complete_packet(plain, packed, tmp_path):
    cut = cut_gz(packed, tmp_path)
    out = tmp_path / "kept.cap"
    done = run_pcapdump("read", str(cut), "-w", str(out))
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    m = re.fullmatch(
        rf"pcapdump: '{re.escape(str(cut))}': {CUT.pattern}; "
        rf"kept (\d+) of the (\d+) packets before the cut in '{re.escape(str(out))}'",
        line,
    )
    assert m, line
    inflated, kept, read = (int(g) for g in m.groups())
    assert 0 < kept == read
    if plain.suffix == ".pcap":
        # Every record whole in what the data inflated to is kept, and no other.
        assert kept == sum(1 for end in record_ends(plain) if end <= inflated)
    # The file is in place, whole: the plain file's first packets, written the same way.
    whole = tmp_path / "whole.cap"
    assert run_pcapdump("read", str(plain), "-c", str(kept), "-w", str(whole)).returncode == 0
    assert out.read_bytes() == whole.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.cap.gz", "kept.cap", "whole.cap"]


def test_the_api_yields_the_packets_before_the_cut_then_raises(plain, packed, tmp_path):
    cut = cut_gz(packed, tmp_path)
    got = []
    with pytest.raises(pcapdump.CaptureFileError, match=CUT.pattern) as raised:
        for p in pcapdump.read(cut):
            got.append((p.index, p.ts_ns, p.data, p.wirelen, p.iface, p.direction))
    assert raised.value.kind == "capture_file"
    assert got and got == packets(plain)[: len(got)]


def test_a_checksum_that_does_not_match_is_damage(plain, packed, tmp_path):
    data = bytearray(packed.read_bytes())
    data[-8] ^= 0xFF  # the stored CRC-32 of the inflated data
    bad = tmp_path / "bad.gz"
    bad.write_bytes(bytes(data))
    out = tmp_path / "out.cap"
    for extra in ([], ["-w", str(out)]):
        done = run_pcapdump("read", str(bad), *extra)
        assert done.returncode == 1
        (line,) = done.stderr.splitlines()
        assert re.fullmatch(
            rf"pcapdump: '{re.escape(str(bad))}': the gzip data is damaged after \d+ bytes of the capture "
            r"\(corrupt gzip stream does not have a matching checksum\)",
            line,
        ), line
        # Damage is not a cut: nothing is written.
        assert not out.exists()
    with pytest.raises(pcapdump.CaptureFileError, match="the gzip data is damaged"):
        list(pcapdump.read(bad))


@pytest.mark.parametrize("seed", range(6))
def test_bytes_changed_inside_the_gz_are_one_clean_error(packed, tmp_path, seed):
    import random

    rng = random.Random(seed)
    data = bytearray(packed.read_bytes())
    for _ in range(3):
        # Past the header, and short of the end, where the last byte's padding bits are not data.
        data[rng.randrange(20, len(data) * 9 // 10)] ^= rng.randrange(1, 256)
    bad = tmp_path / "flipped.gz"
    bad.write_bytes(bytes(data))
    out = tmp_path / "out.cap"
    for extra in ([], ["-w", str(out)]):
        done = run_pcapdump("read", str(bad), *extra)
        assert done.returncode == 1, done.stderr
        (line,) = done.stderr.splitlines()
        assert line.startswith(f"pcapdump: '{bad}': ") and "Traceback" not in done.stderr
        # Only a cut keeps what came before it; any other damage leaves nothing.
        assert out.exists() == ("-w" in extra and "was cut short" in line), line
    with pytest.raises(pcapdump.CaptureFileError):
        list(pcapdump.read(bad))


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"hello, this is not a capture\n", "it inflates to bytes starting with 0x68656c6c"),
        (b"", "it inflates to nothing"),
    ],
    ids=["text", "nothing"],
)
def test_gzip_of_something_else_is_not_a_capture(content, says, tmp_path):
    src = tmp_path / "text.gz"
    src.write_bytes(gzip.compress(content))
    out = tmp_path / "out.cap"
    message = f"pcapdump: '{src}': gzip data, but not of a pcap or pcapng file ({says})\n"
    for extra in ([], ["-w", str(out)]):
        done = run_pcapdump("read", str(src), *extra)
        assert (done.returncode, done.stderr, done.stdout) == (1, message, "")
        assert not out.exists()
    with pytest.raises(pcapdump.CaptureFileError, match="gzip data, but not of a pcap or pcapng file"):
        pcapdump.read(src)


def inflating_to(path: Path, mebibytes: int, record: bytes) -> int:
    """A small .gz that inflates to a classic pcap of about `mebibytes` MiB of `record`: how many
    records. The file header is one member, then one member of 16 MiB of records, made once, over and
    over (`cat`-ed members are one capture)."""
    per_member = (16 << 20) // len(record)
    member = gzip.compress(record * per_member, compresslevel=9, mtime=0)
    with open(path, "wb") as f:
        f.write(gzip.compress(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1), mtime=0))
        for _ in range(mebibytes // 16):
            f.write(member)
    return per_member * (mebibytes // 16)


def test_a_gz_that_inflates_far_beyond_memory_is_read_in_bounded_memory(tmp_path):
    bomb = tmp_path / "bomb.gz"
    record = struct.pack("<IIII", 1, 0, 1008, 1008) + bytes(1008)
    n = inflating_to(bomb, 384, record)
    assert bomb.stat().st_size < 2 << 20
    done = subprocess.run(
        [sys.executable, "-c", PEAK, pcapdump_exe(), "read", str(bomb), "-w", "/dev/null"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    code, peak_kib = (int(x) for x in done.stderr.split()[-2:])
    assert code == 0, done.stderr
    assert done.stdout.startswith(f"/dev/null: {n} packets")
    # Inflated whole, it would be the 384 MiB.
    assert peak_kib / 1024 < 64, f"peak {peak_kib / 1024:.0f} MiB for a gz of 384 MiB"


def test_ctrl_c_ends_the_reading_of_a_gz_at_once(tmp_path):
    bomb = tmp_path / "long.gz"
    inflating_to(bomb, 4096, bytes(16))  # 4 GiB of empty records: minutes of lines
    proc = subprocess.Popen(
        [pcapdump_exe(), "read", str(bomb)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        time.sleep(1.0)
        assert proc.poll() is None, "the reading ended before Ctrl-C"
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        took = time.monotonic() - started
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == 130 and "Traceback" not in err
    assert took < 1.0
