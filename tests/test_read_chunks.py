"""`read` of a large classic pcap file walks it in chunks on every core: what it prints and writes is byte for
byte what the one-thread walk gives (a count no file reaches keeps that walk), errors included, and its memory
stays a window of the file whatever the file's size."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import corpus
import pytest
from conftest import pcapdump_exe, run_pcapdump

# Larger than the size below which one thread reads (4 MiB), and several blocks of every kind, so the chunked
# walk runs.
BIG_BYTES = 12 << 20
NEVER = str(10**15)


def big_capture(
    path: Path,
    frames: list[corpus.Frame],
    *,
    nano: bool = False,
    big_endian: bool = False,
    size: int = BIG_BYTES,
) -> int:
    """The corpus's frames over and over until the file is `size` long; returns the number of records."""
    order = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = bytearray(struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 262144, 1))
    n = 0
    while len(out) < size:
        for f in frames:
            frac = (n * 7919) % (1_000_000_000 if nano else 1_000_000)
            out += struct.pack(order + "IIII", corpus.BASE + n // 50, frac, len(f.data), f.wirelen) + f.data
            n += 1
    path.write_bytes(out)
    return n


@pytest.fixture(scope="module")
def big(tmp_path_factory, corpus_frames) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.pcap"
    big_capture(path, corpus_frames)
    return path


def both(
    *args: str, tz: str = "UTC"
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    chunked = run_pcapdump(*args, env={"TZ": tz})
    one_thread = run_pcapdump(*args, "-c", NEVER, env={"TZ": tz})
    return chunked, one_thread


@pytest.mark.parametrize(
    "words", [[], ["udp"], ["ipsrc", "198.18.0.1", "tcp"], ["vlan", "7"], ["-s", "60", "tcp"], ["port", "53"]]
)
def test_written_files_are_those_of_the_one_thread_walk(big, tmp_path, words):
    a, b = tmp_path / "chunked.cap", tmp_path / "one.cap"
    chunked = run_pcapdump("read", str(big), *words, "-w", str(a))
    one = run_pcapdump("read", str(big), *words, "-c", NEVER, "-w", str(b))
    assert chunked.returncode == one.returncode == 0, chunked.stderr + one.stderr
    assert a.read_bytes() == b.read_bytes()
    assert chunked.stdout.replace(str(a), "X") == one.stdout.replace(str(b), "X")


@pytest.mark.parametrize("form", [[], ["-json"], ["-date"]])
def test_brief_lines_are_those_of_the_one_thread_walk(big, form):
    chunked, one = both("read", str(big), *form, tz="Australia/Adelaide")
    assert chunked.returncode == one.returncode == 0, chunked.stderr + one.stderr
    assert chunked.stdout == one.stdout
    lines = chunked.stdout.splitlines()
    assert len(lines) > 100_000 and lines[0].startswith("{" if form == ["-json"] else "1 ")


@pytest.mark.parametrize(("nano", "big_endian"), [(True, False), (False, True), (True, True)])
def test_other_layouts_read_in_chunks_agree(tmp_path, corpus_frames, nano, big_endian):
    path = tmp_path / "layout.pcap"
    big_capture(path, corpus_frames, nano=nano, big_endian=big_endian)
    chunked, one = both("read", str(path), "tcp")
    assert chunked.returncode == one.returncode == 0 and chunked.stdout == one.stdout
    a, b = tmp_path / "a.cap", tmp_path / "b.cap"
    assert run_pcapdump("read", str(path), "udp", "-w", str(a)).returncode == 0
    assert run_pcapdump("read", str(path), "udp", "-c", NEVER, "-w", str(b)).returncode == 0
    assert a.read_bytes() == b.read_bytes()


def damaged(big: Path, tmp_path: Path, how: str) -> Path:
    data = bytearray(big.read_bytes())
    at, n = 24, 0
    while at < len(data) * 2 // 3:  # a record two thirds in
        at += 16 + int.from_bytes(data[at + 8 : at + 12], "little")
        n += 1
    if how == "cut":
        del data[at + 10 :]
    elif how == "oversized":
        data[at + 8 : at + 12] = (1 << 20).to_bytes(4, "little")
    path = tmp_path / f"{how}.pcap"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("how", ["cut", "oversized"])
def test_a_damaged_large_file_gives_the_same_packets_and_the_same_error(big, tmp_path, how):
    path = damaged(big, tmp_path, how)
    chunked, one = both("read", str(path), "udp")
    assert chunked.returncode == one.returncode != 0
    assert chunked.stdout == one.stdout and chunked.stdout
    assert chunked.stderr == one.stderr and "record" in chunked.stderr
    a, b = tmp_path / "a.cap", tmp_path / "b.cap"
    wa = run_pcapdump("read", str(path), "udp", "-w", str(a))
    wb = run_pcapdump("read", str(path), "udp", "-c", NEVER, "-w", str(b))
    assert wa.returncode == wb.returncode != 0
    assert wa.stderr.replace(str(a), "X") == wb.stderr.replace(str(b), "X")
    assert a.exists() == b.exists() == (how == "cut")
    if how == "cut":
        assert a.read_bytes() == b.read_bytes()


def peak_mb(*args: str) -> float:
    """The peak resident memory of `pcapdump <args>` (output thrown away), in MB. A fresh interpreter
    runs it, so that the peak is the command's own: a child carries its parent's high-water mark across
    exec."""
    probe = (
        "import resource, subprocess, sys; "
        "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe, pcapdump_exe(), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": "UTC"},
        check=True,
    )
    return int(done.stdout) / 1024


def test_memory_stays_a_window_of_the_file(tmp_path, corpus_frames):
    """A 400 MB file read whole (lines, a written file, and the one-thread walk that a count forces) costs
    the process far less memory than the file's size."""
    path = tmp_path / "huge.pcap"
    frames = corpus_frames * 8
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        block = b"".join(
            struct.pack("<IIII", corpus.BASE, 0, len(x.data), x.wirelen) + x.data for x in frames
        )
        for _ in range((400 << 20) // len(block) + 1):
            out.write(block)
    out = tmp_path / "out.cap"
    for args in (
        ["read", str(path), "tcp"],
        ["read", str(path), "udp", "-w", str(out)],
        ["read", str(path), "udp", "-c", NEVER, "-w", str(out)],
        # Few packets kept, far apart: written from pages the reader had already let go.
        ["read", str(path), "ipsrc", "198.18.0.1", "tcp", "-c", NEVER, "-w", str(out)],
    ):
        peak = peak_mb(*args)
        assert peak < 150, f"{args}: peak {peak:.0f} MB for a {path.stat().st_size >> 20} MB file"


def test_memory_stays_a_window_of_a_file_of_large_records_read_by_one_thread(tmp_path):
    """A reader of large records outruns the helper that maps pages ahead of it: the helper must not map
    again the pages the reader has let go (it did: up to 500 MB for a 400 MB file)."""
    path = tmp_path / "jumbo.pcap"
    frame = bytes.fromhex("020000000002020000000001080045") + bytes(140_000 - 15)
    record = struct.pack("<IIII", corpus.BASE, 0, len(frame), len(frame)) + frame
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for _ in range((400 << 20) // len(record)):
            out.write(record)
    for _ in range(3):
        peak = peak_mb("read", str(path), "-c", NEVER)
        assert peak < 150, f"peak {peak:.0f} MB for a {path.stat().st_size >> 20} MB file"


def test_memory_of_tiny_records_printed_as_json_stays_bounded(tmp_path):
    """Records of no bytes make the longest output per byte read: a chunk's JSON lines stay a few MB."""
    path = tmp_path / "tiny.pcap"
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    path.write_bytes(header + struct.pack("<IIII", corpus.BASE, 0, 0, 60) * ((64 << 20) // 16))
    peak = peak_mb("read", str(path), "-json")
    assert peak < 100, f"peak {peak:.0f} MB"


def test_a_read_loads_neither_the_rest_of_the_command_line_nor_of_the_library(big):
    """`pcapdump read` starts on the engine and the grammar alone (the rest would double the time a small
    file takes); a program that imports pcapdump has every name at once."""
    modules = ("click", "pcapdump.cli", "pcapdump.console", "pcapdump.flows", "pcapdump.ruleset")
    script = (
        "import sys\n"
        f"sys.argv = ['pcapdump', 'read', {str(big)!r}, 'udp', '-c', '1']\n"
        "from pcapdump.launch import main\n"
        "main()\n"
        f"print(sorted(m for m in {modules!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "[]", done
    library = (
        "import sys, pcapdump\nprint(all(m in sys.modules for m in ('pcapdump.console', 'pcapdump.flows')))"
    )
    done = subprocess.run([sys.executable, "-c", library], capture_output=True, text=True, timeout=60)
    assert done.stdout == "True\n", done


def test_lines_to_a_standard_output_that_cannot_be_written_are_an_error(big):
    with open(os.devnull) as read_only:
        done = subprocess.run(
            [pcapdump_exe(), "read", str(big)],
            stdout=read_only,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TZ": "UTC"},
        )
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and "standard output" in done.stderr, done.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_read_w_leaves_no_file_behind(tmp_path, corpus_file, sig):
    fifo, out = tmp_path / "in.fifo", tmp_path / "out.cap"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [pcapdump_exe(), "read", str(fifo), "-w", str(out)],
        stderr=subprocess.PIPE,
        env={**os.environ, "TZ": "UTC"},
    )
    try:
        with open(fifo, "wb") as writer:
            writer.write(corpus_file.read_bytes())
            writer.flush()
            # The packets are in the file being written; the input is still open, with more to come.
            deadline = time.monotonic() + 10
            while not list(tmp_path.glob(".out.cap.*")) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert list(tmp_path.glob(".out.cap.*")), "the output was never started"
            proc.send_signal(sig)
            assert proc.wait(timeout=10) == 128 + sig
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.fifo"]


def test_more_files_read_at_once_than_guarded_maps_is_no_crash(tmp_path, corpus_file):
    """Past the 64 maps the SIGBUS guard can hold, a file is read as a stream: cutting it while it is read
    is an error or an early end, never a crash of the interpreter."""
    path = tmp_path / "many.pcap"
    data = corpus_file.read_bytes()
    path.write_bytes(data + data[24:] * 20)
    script = f"""
import os, pcapdump
path = {str(path)!r}
held = []
for i in range(70):
    it = iter(pcapdump.read(path))
    next(it)
    held.append(it)
os.truncate(path, 0)
for it in held:
    try:
        for _ in it:
            pass
    except pcapdump.CaptureFileError:
        pass
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "ok\n", (done.returncode, done.stderr[-2000:])


@pytest.mark.parametrize("one_thread", [False, True])
def test_ctrl_c_ends_a_long_read_of_a_file_soon(tmp_path, corpus_frames, one_thread):
    """The lines of a 100 MB file go to a pipe read slowly; after Ctrl-C only a little more comes out."""
    path = tmp_path / "long.pcap"
    big_capture(path, corpus_frames, size=100 << 20)
    count = ["-c", NEVER] if one_thread else []
    proc = subprocess.Popen(
        [pcapdump_exe(), "read", str(path), *count],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TZ": "UTC"},
    )
    assert proc.stdout is not None
    with proc.stdout:
        got = proc.stdout.read(1 << 20)
        proc.send_signal(signal.SIGINT)
        after = sum(len(b) for b in iter(lambda: proc.stdout.read(1 << 20), b""))  # type: ignore[union-attr]
    assert proc.wait(timeout=30) == 130
    assert len(got) == 1 << 20 and after < 30 << 20, f"{after >> 20} MB printed after Ctrl-C"


@pytest.mark.parametrize("one_thread", [False, True])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_a_read_whose_output_takes_nothing(big, one_thread, sig):
    """Lines to a pipe nobody reads block the write: Ctrl-C and SIGTERM still end the read at once."""
    count = ["-c", NEVER] if one_thread else []
    proc = subprocess.Popen(
        [pcapdump_exe(), "read", str(big), "-json", *count],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "TZ": "UTC"},
    )
    try:
        time.sleep(1.5)  # the pipe is full long before
        assert proc.poll() is None
        started = time.monotonic()
        proc.send_signal(sig)
        code = proc.wait(timeout=10)
        assert time.monotonic() - started < 2
        assert code == 128 + sig
        assert proc.stderr is not None and b"Traceback" not in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
