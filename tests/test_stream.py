"""`pcapdump stream <if>`: a foreground capture written as pcapng to standard output as packets come.
Read by Wireshark's own engine (tshark), ended by -c, -duration, SIGTERM/SIGINT or a reader that goes
away (quietly, exit 0); the SSH connection it runs over is left out. Live, in the test namespaces."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from conftest import need_tool, pcapdump_exe, wait_until
from netns import CAP_V4, SND_V4
from pcapdump import Filter
from pcapdump.stream import plan, ssh_connection
from session import one_line_error

EPB, ISB = 6, 5


def walk(data: bytes) -> Iterator[tuple[int, int]]:
    """Each whole block of a little-endian pcapng byte string: its type and offset (a cut block ends it)."""
    at = 0
    while at + 12 <= len(data):
        kind, length = struct.unpack_from("<II", data, at)
        if length < 12 or at + length > len(data):
            return
        yield kind, at
        at += length


def blocks(data: bytes) -> list[int]:
    """The block types of a little-endian pcapng byte string, in order."""
    return [kind for kind, _ in walk(data)]


def epb_frames(data: bytes) -> list[bytes]:
    """The frames of the enhanced packet blocks of a little-endian pcapng byte string."""
    frames = []
    for kind, at in walk(data):
        if kind == EPB:
            caplen = struct.unpack_from("<I", data, at + 20)[0]
            frames.append(data[at + 28 : at + 28 + caplen])
    return frames


class Stream:
    """`pcapdump [words] stream int` in the capture namespace, its standard output a pipe to us."""

    def __init__(self, net, *words: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", net.cap_ns, pcapdump_exe(), *words],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        assert self.proc.stderr is not None and self.proc.stdout is not None
        # The capture runs once a line says it streams (notes may come before it): only then is traffic
        # sent.
        self.header = ""
        while "streaming" not in self.header:
            line = self.proc.stderr.readline().decode()
            assert line, self.header
            self.header += line

    def read_available(self, seconds: float) -> bytes:
        """What the stream wrote within `seconds` (it keeps running)."""
        assert self.proc.stdout is not None
        got, deadline = b"", time.monotonic() + seconds
        fd = self.proc.stdout.fileno()
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                break
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            got += chunk
        return got

    def hand_over_stdout(self) -> None:
        """Another reader holds the pipe now (or nobody does): ours is closed."""
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.proc.stdout = None

    def finish(self, timeout: float = 10) -> tuple[bytes, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return out or b"", err.decode()


@pytest.mark.live
def test_count_packets_read_by_tshark_with_interface_names(testnet, tmp_path):
    tshark = need_tool("tshark")
    s = Stream(testnet, "-c", "10", "udp", "stream", "int")
    reader = subprocess.Popen(
        [tshark, "-r", "-", "-T", "fields", "-e", "frame.interface_name", "-e", "udp.dstport"],
        stdin=s.proc.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    s.hand_over_stdout()
    testnet.connect_tcp(CAP_V4, 9, 3)  # not UDP: left out by the filter
    testnet.send_udp(CAP_V4, 9000, 15)
    out, err = reader.communicate(timeout=30)
    _, tail = s.finish()
    assert s.proc.returncode == 0, tail
    rows = [line.split("\t") for line in out.splitlines()]
    assert rows == [["int", "9000"]] * 10, (out, err)
    assert "int: count reached: 10 packets streamed, kernel drops 0" in tail, tail


@pytest.mark.live
def test_each_packet_reaches_the_reader_while_the_stream_runs(testnet):
    s = Stream(testnet, "udp", "stream", "int")
    try:
        head = s.read_available(0.5)
        assert blocks(head)[:2] == [0x0A0D0D0A, 1], "section and interface come first, at once"
        testnet.send_udp(CAP_V4, 9000, 1)
        # One datagram, nothing after it: it must come out by itself (generous bound, not a timing check).
        got = s.read_available(3)
        assert blocks(head + got).count(EPB) == 1
        assert s.proc.poll() is None
    finally:
        s.proc.send_signal(signal.SIGINT)
    out, err = s.finish()
    assert s.proc.returncode == 0, err
    assert blocks(head + got + out)[-1] == ISB, "the statistics block ends a stopped stream"
    assert "int: stopped: 1 packet streamed" in err


@pytest.mark.live
def test_sigterm_ends_the_stream_with_what_it_kept_and_its_statistics(testnet, tmp_path):
    tshark = need_tool("tshark")
    s = Stream(testnet, "udp", "destport", "9000", "stream", "int")
    testnet.send_udp(CAP_V4, 9000, 5)
    testnet.send_udp(CAP_V4, 9001, 5)
    assert wait_until(lambda: False, seconds=0.3) is False  # let the ring hand the block over
    s.proc.send_signal(signal.SIGTERM)
    out, err = s.finish()
    assert s.proc.returncode == 0, err
    assert blocks(out).count(EPB) == 5 and blocks(out)[-1] == ISB
    path = tmp_path / "s.pcapng"
    path.write_bytes(out)
    read = subprocess.run([tshark, "-r", str(path)], capture_output=True, text=True, check=False)
    assert read.returncode == 0 and len(read.stdout.splitlines()) == 5, read
    assert err.strip().splitlines()[-1].startswith("int: stopped: 5 packets streamed, kernel drops 0")


@pytest.mark.live
def test_ctrl_c_ends_the_stream_while_packets_keep_coming(testnet):
    import threading

    s = Stream(testnet, "udp", "stream", "int")
    drained = threading.Thread(target=lambda: s.read_available(15), daemon=True)
    drained.start()
    # About four seconds of datagrams (bounded by count), the stream busy writing them all along.
    sender = threading.Thread(target=testnet.send_udp, args=(CAP_V4, 9000, 200_000, 64, 100), daemon=True)
    sender.start()
    time.sleep(1)
    s.proc.send_signal(signal.SIGINT)
    stopped = time.monotonic()
    assert s.proc.wait(timeout=10) == 0
    assert time.monotonic() - stopped < 3
    assert sender.is_alive(), "the traffic was still flowing when the stream ended"
    sender.join(timeout=30)
    drained.join(timeout=20)
    _, err = s.finish()
    assert "int: stopped:" in err, err


@pytest.mark.live
def test_a_reader_that_goes_away_ends_the_stream_quietly_at_once(testnet):
    # While packets flow: the next write finds the pipe closed.
    s = Stream(testnet, "udp", "stream", "int")
    s.read_available(0.3)
    s.hand_over_stdout()
    testnet.send_udp(CAP_V4, 9000, 3)
    _, err = s.finish(timeout=5)
    assert s.proc.returncode == 0, err
    assert "reader gone" in err and "Traceback" not in err and "rror" not in err, err
    # While nothing flows: the stream sees the reader leave without writing anything.
    s = Stream(testnet, "udp", "port", "9", "stream", "int")
    s.hand_over_stdout()
    started = time.monotonic()
    _, err = s.finish(timeout=5)
    assert s.proc.returncode == 0, err
    assert time.monotonic() - started < 3


@pytest.mark.live
def test_duration_ends_the_stream(testnet):
    s = Stream(testnet, "-duration", "1", "stream", "int")
    started = time.monotonic()
    out, err = s.finish(timeout=10)
    assert s.proc.returncode == 0, err
    assert 0.9 < time.monotonic() - started < 4
    assert "int: duration:" in err and blocks(out)[-1] == ISB


@pytest.mark.live
def test_the_ssh_connection_it_runs_over_is_left_out_in_the_kernel(testnet):
    """SSH_CONNECTION names the connection: the stream's kernel program leaves it out both ways, and
    nothing else; -keepssh keeps it. (A real sshd does this in test_extcap_remote.py.)"""
    conn = f"{SND_V4} 40000 {CAP_V4} 22"
    s = Stream(testnet, "tcp", "stream", "int", env={"SSH_CONNECTION": conn})
    assert f"leaving out this SSH connection ({SND_V4}:40000 > {CAP_V4}:22, and every SSH session" in s.header
    s.proc.send_signal(signal.SIGTERM)
    s.finish()
    flt = plan(Filter("tcp"), keep_ssh=False, env={"SSH_CONNECTION": conn}).filter
    assert flt is not None
    assert str(flt) == f"tcp not tcp-end {SND_V4}:40000 not tcp-end {CAP_V4}:22"
    assert plan(Filter("tcp"), keep_ssh=True, env={"SSH_CONNECTION": conn}).filter == Filter("tcp")
    s = Stream(testnet, "-keepssh", "stream", "int", env={"SSH_CONNECTION": conn})
    assert s.header.strip() == "int: streaming everything"
    s.proc.send_signal(signal.SIGTERM)
    s.finish()
    # The server's end too, whoever the client: another session's SSH to this server is not captured
    # (two streams would capture each other's), a connection to another port is.
    s = Stream(testnet, "tcp", "stream", "int", env={"SSH_CONNECTION": conn})
    testnet.connect_tcp(CAP_V4, 22, 2)
    testnet.connect_tcp(CAP_V4, 23, 2)
    time.sleep(0.3)
    s.proc.send_signal(signal.SIGTERM)
    out, err = s.finish()
    assert s.proc.returncode == 0, err
    ports = {struct.unpack_from("!HH", rec, 34) for rec in epb_frames(out)}
    assert ports and all(22 not in p for p in ports) and any(23 in p for p in ports), ports
    s = Stream(testnet, "stream", "int", env={"SSH_CONNECTION": "nonsense"})
    assert "SSH_CONNECTION 'nonsense' not understood: no SSH connection left out" in s.header
    s.proc.send_signal(signal.SIGTERM)
    s.finish()


def test_ssh_connection_is_read_as_sshd_sets_it():
    assert ssh_connection({"SSH_CONNECTION": "198.18.0.1 40000 198.18.0.2 22"}) == (
        ("198.18.0.1", 40000),
        ("198.18.0.2", 22),
    )
    # An IPv4 client of a server listening on IPv6 travels as IPv4; a scope id is not part of an address.
    assert ssh_connection({"SSH_CONNECTION": "::ffff:198.18.0.1 5 ::ffff:198.18.0.2 22"}) == (
        ("198.18.0.1", 5),
        ("198.18.0.2", 22),
    )
    assert ssh_connection({"SSH_CONNECTION": "fe80::1%int 5 fe80::2%int 22"}) == (
        ("fe80::1", 5),
        ("fe80::2", 22),
    )
    for bad in ("", "1.2.3.4 5 6.7.8.9", "x 1 y 2", "1.2.3.4 0 5.6.7.8 22", "1.2.3.4 5 ::1 22"):
        assert ssh_connection({"SSH_CONNECTION": bad}) is None, bad
    assert ssh_connection({}) is None


@pytest.mark.live
def test_bad_input_is_one_line_and_nothing_streams(testnet):
    def run(*words: str, stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", testnet.cap_ns, pcapdump_exe(), *words],
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
            check=False,
        )

    one_line_error(run("stream"), 2, "'stream'", "missing interface")
    one_line_error(run("-ring", "stream", "int"), 2, "'-ring'", "not stream")
    one_line_error(run("-trigger", "udp", "stream", "int"), 2, "-trigger", "not stream")
    one_line_error(run("-o", "stream", "int"), 2, "'-o'", "not stream")
    one_line_error(run("stream", "int", "ext"), 2, "'ext'")
    one_line_error(run("-keepssh", "start", "int"), 2, "'-keepssh'", "not start")
    one_line_error(run("ipdest", "300.1.1.1", "stream", "int"), 2, "300.1.1.1")
    one_line_error(run("stream", "nosuch0"), 1, "nosuch0")
    # A terminal cannot show pcapng: refused before anything is captured.
    leader, follower = pty.openpty()
    try:
        done = run("stream", "int", stdout=follower)
    finally:
        os.close(follower)
        os.close(leader)
    one_line_error(done, 2, "terminal")


@pytest.mark.live
def test_the_python_stream_and_an_iteration_run_at_once(testnet):
    """`Capture.stream` in one thread while another iterates the same capture: neither waits for the
    other (the iteration's lock is taken with the GIL held; the stream takes the GIL for Ctrl-C)."""
    import threading

    import pcapdump

    with testnet.on_capture_side():
        cap = pcapdump.capture("int", filter="udp", ring=True)
    read_end, write_end = os.pipe()
    got: dict[str, object] = {}
    streamer = threading.Thread(target=lambda: got.update(streamed=cap.stream(write_end, "pipe")))
    drained = bytearray()

    def drain() -> None:
        while chunk := os.read(read_end, 1 << 16):
            drained.extend(chunk)

    reader = threading.Thread(target=drain)
    with cap:
        streamer.start()
        reader.start()
        testnet.send_udp(CAP_V4, 9000, 50, pause_every=10)
        iterated = 0
        deadline = time.monotonic() + 10
        while iterated < 50 and time.monotonic() < deadline:
            if cap.next(timeout=0.2) is not None:
                iterated += 1
        cap.stop()
        streamer.join(timeout=10)
    os.close(write_end)
    reader.join(timeout=10)
    os.close(read_end)
    assert not streamer.is_alive() and iterated == 50
    assert got["streamed"] == (50, "stopped")
    assert blocks(bytes(drained)).count(EPB) == 50 and blocks(bytes(drained))[-1] == ISB


@pytest.mark.live
def test_a_reader_that_stops_reading_costs_packets_that_are_counted_and_fail_the_stream(testnet):
    """The reader never reads: the stream writes what the pipe takes, and after SIGTERM gives up on the
    reader; every packet kept and not written is counted, and the exit status says it failed."""
    s = Stream(testnet, "-size", "64", "udp", "stream", "int")
    testnet.send_udp(CAP_V4, 9000, 3000, size=200, pause_every=100)
    time.sleep(0.5)
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(timeout=10) == 1
    out, err = s.finish()
    streamed = int(re.search(r"(\d+) packets? streamed", err).group(1))
    unwritten = int(re.search(r"not written (\d+)", err).group(1))
    assert "reader stopped reading" in err
    assert blocks(out).count(EPB) == streamed, "packets written whole are counted, a cut one is not"
    assert streamed + unwritten == 3000, err


@pytest.mark.live
def test_a_second_stop_gives_up_a_slow_reader(testnet):
    s = Stream(testnet, "udp", "stream", "int")
    testnet.send_udp(CAP_V4, 9000, 3000, size=1000, pause_every=100)
    assert s.proc.stdout is not None
    fd = s.proc.stdout.fileno()

    def trickle() -> None:  # alive, but slow: 64 bytes every 20 ms
        with contextlib.suppress(OSError):
            while os.read(fd, 64):
                time.sleep(0.02)

    reader = threading.Thread(target=trickle, daemon=True)
    reader.start()
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(1.5)
    assert s.proc.poll() is None, "the reader still takes what was kept"
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(timeout=3) == 1
    err = s.proc.stderr.read().decode() if s.proc.stderr else ""
    assert "stopped again before the reader took everything" in err and "not written" in err
    s.proc.stderr.close()
    s.hand_over_stdout()


@pytest.mark.live
def test_packets_bigger_than_the_buffer_are_counted(testnet):
    s = Stream(testnet, "-size", "16", "-duration", "2", "udp", "stream", "lo")
    with testnet.on_capture_side():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        for _ in range(5):
            sock.sendto(b"x" * 60000, ("127.0.0.1", 9))
    _, err = s.finish()
    assert "buffer drops 5" in err, err


@pytest.mark.live
def test_a_killed_stream_leaves_a_shared_pipe_blocking(testnet):
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", testnet.cap_ns, pcapdump_exe(), "udp", "stream", "int"],
            stdout=write_end,
            stderr=subprocess.PIPE,
        )
        assert proc.stderr is not None and "streaming" in proc.stderr.readline().decode()
        proc.kill()
        proc.wait(timeout=10)
        proc.stderr.close()
        assert not fcntl.fcntl(write_end, fcntl.F_GETFL) & os.O_NONBLOCK
    finally:
        os.close(read_end)
        os.close(write_end)


@pytest.mark.live
def test_without_standard_error_the_stream_still_streams(testnet):
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            testnet.cap_ns,
            "sh",
            "-c",
            f"exec {pcapdump_exe()} -c 3 udp stream int 2>&-",
        ],
        stdout=subprocess.PIPE,
    )
    time.sleep(1.5)
    testnet.send_udp(CAP_V4, 9000, 5)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0 and blocks(out).count(EPB) == 3


@pytest.mark.live
def test_an_interface_removed_under_the_stream_fails_it(testnet):
    testnet.in_ns(testnet.cap_ns, "ip", "link", "add", "pdtgone0", "type", "veth", "peer", "name", "pdtgone1")
    testnet.in_ns(testnet.cap_ns, "ip", "link", "set", "pdtgone0", "up")
    s = Stream(testnet, "stream", "pdtgone0")
    testnet.in_ns(testnet.cap_ns, "ip", "link", "del", "pdtgone0")
    assert s.proc.wait(timeout=10) == 1
    _, err = s.finish()
    assert "pdtgone0: interface removed:" in err
