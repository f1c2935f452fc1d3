"""Faults, races and hostile users: the agent stopped mid-command, commands racing each other, a full
connection queue, homes and stores that someone else controls, links planted where we write, inputs that
never end or are cut under us. In each: nothing lost, nothing outside the home touched, the answer within
its bound, and one line for the user."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pcapdump
import pytest
from conftest import need_tool, run_pcapdump, wait_until
from netns import CAP_V4
from session import alive, one_line_error

pytestmark = pytest.mark.live

# A command facing a stopped agent gives up within this long (its answer timeout, and some slack).
GIVE_UP_S = 10


@contextlib.contextmanager
def stopped(pid: int):
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def timed(pd, *words: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = pd(*words, ok=False, timeout=60)
    return done, time.monotonic() - started


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def capture_some(pd, packets: int = 5) -> None:
    pd("udp", "start", "int")
    pd.net.send_udp(CAP_V4, 9000, packets)
    assert wait_until(lambda: pd.capture()["packets"] == packets)


def interrupt_soon(cmd: list[str], after: float = 0.5) -> tuple[int, str, float]:
    """Run `cmd` as from a terminal (SIGINT at its default, whatever this runner was started with: a
    background job ignores it), send SIGINT after `after` seconds: exit code, stderr, seconds to end."""
    proc = subprocess.Popen(
        cmd,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(after)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    return proc.returncode, err, time.monotonic() - started


def big_capture(path: Path, megabytes: int, fill: bytes = b"\xab") -> int:
    """A classic pcap of 1000-byte records, about `megabytes` MiB: how many records."""
    record = struct.pack("<IIII", 1, 0, 1000, 1000) + fill * 1000
    chunk = record * 1024
    chunks = megabytes * 1024 * 1024 // len(chunk)
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for _ in range(chunks):
            f.write(chunk)
    return chunks * 1024


# --- a command reported as failed has not happened --------------------------------------------------


def test_a_wipe_the_agent_never_answered_does_not_happen_later(pd):
    capture_some(pd)
    pid = pd.agent_pid()
    with stopped(pid):
        done, took = timed(pd, "wipe")
    one_line_error(done, 1, "did not answer")
    assert took < GIVE_UP_S
    time.sleep(1)  # the agent, running again, has read the request by now
    assert pd.capture()["packets"] == 5
    assert "== int: 5 packets ==" in pd("show").stdout


def test_a_stop_the_agent_never_answered_does_not_happen_later(pd):
    pd("udp", "start", "int")
    pid = pd.agent_pid()
    with stopped(pid):
        done, took = timed(pd, "stop")
    one_line_error(done, 1, "did not answer")
    assert took < GIVE_UP_S
    time.sleep(1)
    assert pd.capture()["state"] == "running"


def test_write_and_show_on_a_stopped_agent_fail_within_seconds_and_write_nothing(pd):
    capture_some(pd)
    pid = pd.agent_pid()
    with stopped(pid):
        for words in (["write", "int", "late.cap"], ["show"]):
            done, took = timed(pd, *words)
            one_line_error(done, 1, "did not answer")
            assert took < GIVE_UP_S, words
    time.sleep(1)
    assert not (pd.home / "store" / "late.cap").exists()
    assert os.listdir(pd.home / "store") == []


# --- writes cannot collide ---------------------------------------------------------------------------


def test_two_writes_to_one_name_leave_one_whole_file(pd):
    need_tool("capinfos")
    pd("udp", "start", "int")
    pd("udp", "start", "lo")
    pd.net.send_udp(CAP_V4, 9000, 300)
    pd.net.send_udp("127.0.0.1", 9000, 7, ns=pd.net.cap_ns)
    pd("stop")
    path = pd.home / "store" / "same.cap"
    for _ in range(20):
        writers = [pd.popen("write", iface, "same.cap") for iface in ("int", "lo", "int")]
        results = [finish(w) for w in writers]
        assert all(code == 0 for code, _, _ in results), results
        info = subprocess.run(["capinfos", "-c", "-M", str(path)], capture_output=True, text=True)
        assert info.returncode == 0, info.stderr
        assert any(f"Number of packets:   {n}" in info.stdout for n in (300, 7)), info.stdout
        assert os.listdir(pd.home / "store") == ["same.cap"]  # no temporary left


def test_links_fifos_and_devices_in_the_store_are_replaced_not_followed(pd, tmp_path):
    capture_some(pd)
    store = pd.home / "store"
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    (store / "tofile.cap").symlink_to(victim)
    (store / "tonull.cap").symlink_to("/dev/null")
    os.mkfifo(store / "fifo.cap")
    for name in ("tofile.cap", "tonull.cap", "fifo.cap"):
        done = pd("write", "int", name, timeout=30)
        assert "5 packets" in done.stdout
        assert stat.S_ISREG(os.lstat(store / name).st_mode), name
        assert len(list(pcapdump.read(store / name))) == 5
    assert victim.read_bytes() == b"not yours"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_planted_links_at_predictable_temporary_names_are_never_followed(pd, tmp_path):
    capture_some(pd)
    store = pd.home / "store"
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    # The names a writer numbered by its pid would use, for the next 400 pids: with the agent's own,
    # with the reader's (read -w) in a folder anyone can write.
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o1777)
    next_pid = int(Path("/proc/sys/kernel/ns_last_pid").read_text())
    for pid in [pd.agent_pid(), *range(next_pid, next_pid + 400)]:
        for folder in (store, shared):
            for name in (f".x.cap.{pid}.tmp", f".x.cap.{pid}.part"):
                with contextlib.suppress(FileExistsError):
                    (folder / name).symlink_to(victim)
    pd("write", "int", "x.cap")
    pd("write", "int", "-filename=x.cap")
    assert len(list(pcapdump.read(store / "x.cap"))) == 5
    done = run_pcapdump("read", str(store / "x.cap"), "-w", str(shared / "x.cap"))
    assert done.returncode == 0, done.stderr
    assert len(list(pcapdump.read(shared / "x.cap"))) == 5
    assert victim.read_bytes() == b"not yours"


# --- the agent's start is race-free -------------------------------------------------------------------


def test_concurrent_starts_and_statuses_while_the_agent_starts(pd):
    for _ in range(2):
        commands = [pd.popen("udp", "start", "int") for _ in range(30)]
        commands += [pd.popen("status", "-json") for _ in range(30)]
        results = [finish(c) for c in commands]
        starts, statuses = results[:30], results[30:]
        assert sum(code == 0 for code, _, _ in starts) == 1, starts
        for code, _, err in starts:
            assert code == 0 or "already capturing" in err, err
        for code, out, err in statuses:
            assert code == 0, err
            json.loads(out)
        pid = pd.agent_pid()
        assert pid and alive(pid)
        assert pd.capture()["state"] == "running"
        pd("cleanup")


def test_a_full_connection_queue_is_one_line(pd):
    pd("udp", "start", "int")
    pid = pd.agent_pid()
    queued = []
    with stopped(pid):
        try:
            for _ in range(300):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    s.connect(str(pd.home / "agent.sock"))
                queued.append(s)
            done, took = timed(pd, "status")
            one_line_error(done, 1, "did not answer")
            assert took < GIVE_UP_S
        finally:
            for s in queued:
                s.close()
    assert pd.capture()["state"] == "running"


# --- the agent's own bounds --------------------------------------------------------------------------


def ask_raw(pd, payload: bytes) -> dict:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(pd.home / "agent.sock"))
    with contextlib.suppress(OSError):
        s.sendall(payload)
    data = b""
    with contextlib.suppress(ConnectionResetError):  # the agent closed with our excess unread
        while chunk := s.recv(65536):
            data += chunk
    s.close()
    replies = [json.loads(line) for line in data.splitlines()]
    return next(r for r in replies if "progress" not in r)


def test_the_agent_answers_bad_requests_and_keeps_serving(pd):
    pd("udp", "start", "int")
    assert ask_raw(pd, b"not json\n")["error"] == "usage"
    assert ask_raw(pd, b"[1, 2]\n")["error"] == "usage"
    too_long = ask_raw(pd, b"{" + b" " * (1 << 20))
    assert too_long["error"] == "usage" and "65536" in too_long["message"]
    small = ask_raw(pd, json.dumps({"op": "start", "iface": "lo", "size_kb": 8}).encode() + b"\n")
    assert small["error"] == "usage" and "16" in small["message"]
    assert ask_raw(pd, b'{"op": "nothing"}\n')["error"] == "usage"
    late = json.dumps({"op": "wipe", "deadline": time.time() - 1}).encode() + b"\n"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(pd.home / "agent.sock"))
    s.sendall(late)
    s.settimeout(10)
    assert s.recv(100) == b""  # dropped, not carried out
    s.close()
    assert pd.capture()["state"] == "running"


# --- cleanup deletes only what write made; leftovers are found ------------------------------------------


def test_cleanup_deletes_only_what_write_made(pd):
    capture_some(pd)
    store = pd.home / "store"
    (store / "mine.cap").write_bytes(b"someone else's")
    (store / ".x.cap.0123456789abcdef.tmp").write_bytes(b"half")  # a killed writer's
    pd("write", "int", "a.cap")
    out = pd("cleanup").stdout
    assert "deleted 1 files" in out
    assert sorted(os.listdir(store)) == [".x.cap.0123456789abcdef.tmp", "mine.cap"]
    pd("udp", "start", "int")  # a new agent removes what a killed writer left
    assert sorted(os.listdir(store)) == ["mine.cap"]


# --- the home is trusted before use -------------------------------------------------------------------


def test_a_home_of_another_user_is_refused_naming_the_owner(testnet, tmp_path):
    from session import Session

    home = tmp_path / "theirs"
    home.mkdir(mode=0o700)
    os.chown(home, 65534, 65534)
    session = Session(testnet, home)
    for words in (["status"], ["udp", "start", "int"]):
        one_line_error(session(*words, ok=False), 1, str(home), "uid 65534")
    assert os.listdir(home) == []


def test_a_shared_folder_is_refused_and_never_chmodded(testnet, tmp_path):
    from session import Session

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    session = Session(testnet, shared)
    one_line_error(session("udp", "start", "int", ok=False), 1, str(shared), "written by others")
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o1777
    assert os.listdir(shared) == []


def test_files_of_the_home_are_not_opened_through_links(pd, tmp_path):
    pd("udp", "start", "int")
    pd("cleanup")
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    for name in ("agent.log", "agent.pid"):
        with contextlib.suppress(FileNotFoundError):
            (pd.home / name).unlink()
        (pd.home / name).symlink_to(victim)
        one_line_error(pd("udp", "start", "int", ok=False), 1, name, "link")
        (pd.home / name).unlink()
    assert victim.read_bytes() == b"not yours"


def test_root_without_cap_net_raw_is_refused_before_any_agent_starts(pd):
    need_tool("setpriv")
    drop = ["setpriv", "--inh-caps=-net_raw", "--bounding-set=-net_raw", "--"]
    done = subprocess.run(
        ["ip", "netns", "exec", pd.net.cap_ns, *drop, *pd.argv("udp", "start", "int")[4:]],
        capture_output=True,
        text=True,
        env=pd.env,
        timeout=60,
    )
    one_line_error(done, 1, "CAP_NET_RAW")
    assert not (pd.home / "agent.sock").exists()
    pd("udp", "start", "int")  # and root with the capability starts as usual


def test_a_planted_socket_of_another_user_is_not_trusted(pd):
    pd.home.mkdir(mode=0o700)
    script = (
        "import os, socket, sys, time\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        "s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o666)\n"
        "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        "s.listen(4); print('ready', flush=True); time.sleep(30)\n"
    )
    impostor = subprocess.Popen(
        [sys.executable, "-c", script, str(pd.home / "agent.sock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert impostor.stdout.readline().strip() == "ready"
        one_line_error(pd("status", ok=False), 1, "uid 65534", "refusing")
    finally:
        impostor.kill()
        impostor.communicate()


# --- reading never hangs or dies ----------------------------------------------------------------------


def test_ctrl_c_ends_read_of_a_silent_fifo_at_once(tmp_path):
    fifo = tmp_path / "silent"
    os.mkfifo(fifo)
    holder = os.open(fifo, os.O_RDWR)  # a writer that never writes
    try:
        code, err, took = interrupt_soon([sys.executable, "-m", "pcapdump", "read", str(fifo)])
    finally:
        os.close(holder)
    assert took < 1.0 and code == 130 and "Traceback" not in err


def test_endless_devices_are_refused_at_once():
    for device in ("/dev/zero", "/dev/urandom"):
        started = time.monotonic()
        done = run_pcapdump("read", device, timeout=30)
        assert time.monotonic() - started < 2
        assert done.returncode == 1 and "not a pcap or pcapng file" in done.stderr, done.stderr


def test_a_file_truncated_while_it_is_read_is_an_error_not_a_crash(tmp_path):
    big = tmp_path / "big.cap"
    records = big_capture(big, 300)
    script = (
        "import os, sys, pcapdump\n"
        "path = sys.argv[1]\n"
        "packets = pcapdump.read(path)\n"
        "for _ in range(10): next(packets)\n"
        "os.truncate(path, os.path.getsize(path) // 2)\n"
        "n = 10\n"
        "try:\n"
        "    for _ in packets: n += 1\n"
        "except pcapdump.CaptureFileError as e:\n"
        "    print('error', n, e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(big)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done  # not killed by SIGBUS
    assert done.stdout.startswith("error "), done.stdout
    assert "cut short while it was being read" in done.stdout
    # The records before the cut, and at most one that the cut went through.
    assert int(done.stdout.split()[1]) <= records // 2 + 1


def test_read_w_of_a_file_cut_under_it_writes_nothing(tmp_path):
    big = tmp_path / "big.cap"
    big_capture(big, 200, b"\xcd")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pcapdump", "read", str(big), "-w", str(out_dir / "out.cap")],
        stderr=subprocess.PIPE,
        text=True,
    )
    # Cut once the input is mapped and the output being written (its temporary exists). A file cut
    # before it is read is another case: an ordinary cut file, whose complete packets -w keeps.
    assert wait_until(lambda: any(out_dir.iterdir()), seconds=30, every=0.001)
    os.truncate(big, 4096)
    _, err = proc.communicate(timeout=120)
    code = proc.returncode
    assert "Traceback" not in err and code in (0, 1), (code, err)
    if code == 1:  # cut before the read ended: nothing is left behind
        assert "cut short while it was being read" in err, err
        assert os.listdir(out_dir) == []
    else:
        assert os.listdir(out_dir) == ["out.cap"]


# --- what the hostile-user probe found ---------------------------------------------------------------


def test_read_w_refuses_a_link_planted_by_another_user(corpus_file, tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"not yours")
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o1777)
    planted = shared / "out.cap"
    planted.symlink_to(victim)
    os.lchown(planted, 65534, 65534)
    done = run_pcapdump("read", str(corpus_file), "-w", str(planted))
    assert done.returncode == 1 and "not yours" in done.stderr and "\n" not in done.stderr.strip()
    assert victim.read_bytes() == b"not yours"


def test_read_w_into_a_pipe_nobody_reads_is_an_error_not_a_wait(corpus_file, tmp_path):
    fifo = tmp_path / "nobody"
    os.mkfifo(fifo)
    done = run_pcapdump("read", str(corpus_file), "-w", str(fifo), timeout=10)
    assert done.returncode == 1 and "no reader" in done.stderr


def test_ctrl_c_ends_read_of_a_pipe_that_never_pauses(tmp_path):
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    feeder = (
        "import sys, time\n"
        f"sys.stdout.buffer.write({header!r})\n"
        "record = b'\\x01\\0\\0\\0\\0\\0\\0\\0' + (1000).to_bytes(4, 'little') * 2 + bytes(1000)\n"
        "for _ in range(100000):\n"
        "    sys.stdout.buffer.write(record * 64); time.sleep(0.001)\n"
    )
    source = subprocess.Popen([sys.executable, "-c", feeder], stdout=subprocess.PIPE)
    reader = subprocess.Popen(
        [sys.executable, "-m", "pcapdump", "read", "-"],
        stdin=source.stdout,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    source.stdout.close()
    try:
        time.sleep(1.0)
        started = time.monotonic()
        reader.send_signal(signal.SIGINT)
        _, err = reader.communicate(timeout=10)
        assert time.monotonic() - started < 1.0
        assert reader.returncode == 130 and "Traceback" not in err
    finally:
        source.kill()
        source.wait()


def test_a_pipe_larger_than_memory_allows_is_read_through(tmp_path):
    import resource

    # Nothing holds a stream whole: 1.5 GiB through a pipe, in a process allowed 1 GiB of address space.
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    record = struct.pack("<IIII", 1, 0, 1000, 1000) + b"\x5a" * 1000
    (tmp_path / "header").write_bytes(header)
    (tmp_path / "records").write_bytes(record * 1024)
    repeats = 1536
    limit = 1 << 30

    def small_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    script = "import pcapdump\nprint(sum(1 for _ in pcapdump.read('-')))\n"
    records = tmp_path / "records"
    feed = subprocess.Popen(
        ["sh", "-c", f"cat '{tmp_path / 'header'}'; for i in $(seq {repeats}); do cat '{records}'; done"],
        stdout=subprocess.PIPE,
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script],
            stdin=feed.stdout,
            capture_output=True,
            text=True,
            timeout=240,
            preexec_fn=small_memory,
        )
    finally:
        feed.stdout.close()
        feed.kill()
        feed.wait()
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout == f"{repeats * 1024}\n"


def test_a_brief_look_at_the_agent_lock_does_not_stop_an_agent_from_starting(pd):
    pd.home.mkdir(mode=0o700)
    lock = pd.home / "agent.lock"
    lock.touch(mode=0o600)
    looker = subprocess.Popen(["flock", "-s", str(lock), "sleep", "0.5"])
    try:
        pd("udp", "start", "int")
    finally:
        looker.wait()
    assert pd.capture()["state"] == "running"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_a_start_abandoned_while_its_buffer_is_allocated_does_not_happen(pd):
    pd("-size", "16", "udp", "start", "lo")
    pd("stop")
    agent = pd.agent_pid()
    proc = pd.popen("-size", "4194304", "udp", "start", "int")
    # Given up while the agent commits the 4 GB (its memory grows): the start must not happen.
    assert wait_until(lambda: rss_mb(agent) > 300, seconds=30, every=0.005)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    # `status` waits for the agent's lock, which the start holds until it is done with it.
    assert all(c["iface"] != "int" for c in pd.status()["captures"])


def test_a_home_link_planted_by_another_user_is_refused(testnet, tmp_path):
    from session import Session

    theirs = tmp_path / "someone"
    theirs.mkdir(mode=0o700)
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o1777)
    link = shared / "home"
    link.symlink_to(theirs)
    os.lchown(link, 65534, 65534)
    one_line_error(Session(testnet, link)("status", ok=False), 1, "symlink of", "uid 65534")


def test_requests_with_fields_of_the_wrong_type_are_usage_errors(pd):
    capture_some(pd)
    for request in (
        {"op": "write", "ifaces": ["int"]},
        {"op": "write", "ifaces": ["int"], "file": None},
        {"op": "write", "ifaces": 5, "file": "x.cap"},
        {"op": "write", "ifaces": [5], "file": "x.cap"},
        {"op": "write", "ifaces": [], "file": "x.cap"},
        {"op": "write", "ifaces": "int", "file": "x.cap"},
        {"op": "write", "ifaces": ["int", "int"], "file": "x.cap"},
        {"op": "stop", "iface": ["int"]},
    ):
        reply = ask_raw(pd, json.dumps(request).encode() + b"\n")
        assert reply["error"] == "usage", (request, reply)
    assert os.listdir(pd.home / "store") == []


def test_cleanup_keeps_a_file_put_where_write_wrote(pd):
    capture_some(pd)
    pd("write", "int", "a.cap")
    mine = pd.home / "store" / "a.cap"
    mine.unlink()
    mine.write_bytes(b"mine now")
    assert "deleted 0 files" in pd("cleanup").stdout
    assert mine.read_bytes() == b"mine now"


def test_a_temporary_being_written_is_not_taken_for_a_leftover(pd):
    import fcntl

    store = pd.home / "store"
    store.mkdir(parents=True, mode=0o700)
    pd.home.chmod(0o700)
    live = store / ".x.cap.0123456789abcdef.tmp"
    with open(live, "wb") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        pd("udp", "start", "int")
        assert live.exists()
    pd("cleanup")
    pd("udp", "start", "int")
    assert not live.exists()


def test_text_that_is_not_utf8_is_one_line():
    done = subprocess.run(
        [sys.executable, "-m", "pcapdump", "ipsrc", "\udcff", "read", "x.cap"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "not valid text" in done.stderr and "Traceback" not in done.stderr


def test_ctrl_c_ends_read_of_a_fifo_nobody_writes_to(tmp_path):
    fifo = tmp_path / "nobody"
    os.mkfifo(fifo)
    code, err, took = interrupt_soon([sys.executable, "-m", "pcapdump", "read", str(fifo)])
    assert took < 1.0 and code == 130 and "Traceback" not in err


def test_ctrl_c_during_read_w_leaves_no_file(tmp_path):
    big = tmp_path / "big.cap"
    big_capture(big, 400, b"\xee")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pcapdump", "read", str(big), "-w", str(out_dir / "o.cap")],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # Interrupted once the output is being written (its temporary exists).
    assert wait_until(lambda: any(out_dir.iterdir()), seconds=30, every=0.001)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert os.listdir(out_dir) == []


def test_a_start_racing_cleanup_never_reports_a_capture_that_is_not_there(pd):
    """`cleanup` and `start` sent together: the start either fails with one line, or its capture runs
    (in the agent, old or new, that `status` then shows). Never "capturing" with nothing behind it."""
    for _ in range(8):
        pd("udp", "start", "int")
        cleanup = pd.popen("cleanup")
        time.sleep(0.005)
        started = pd("udp", "start", "int", ok=False)
        cleanup.communicate(timeout=30)
        if started.returncode == 0:
            assert pd.status()["captures"] and pd.capture()["state"] == "running", started.stdout
        else:
            one_line_error(started, 1)
        pd("cleanup", ok=False)
