"""The console end to end: the installed `pcapdump` command run in the capture namespace (where `int` is),
each test with its own PCAPDUMP_HOME and so its own agent, traffic from the sender namespace."""

from __future__ import annotations

import json
import os
import re
import signal
import struct
import subprocess
import sys
import time

import pcapdump
import pytest
from conftest import need_tool, pcapdump_exe, wait_until
from netns import CAP_V4, SND_V4
from session import agents_under, alive, one_line_error

pytestmark = pytest.mark.live


@pytest.mark.parametrize(
    "session",
    [
        [
            ["-size", "1024", "ipsrc", SND_V4, "tcp", "start", "int"],
            ["stop"],
            ["show"],
            ["write", "int", "capture.cap"],
        ],
        [
            ["-start", "int", "-size=1024", f"-ipsrc={SND_V4}", "-tcp"],
            ["-stop"],
            ["-show"],
            ["-write", "int", "-filename=capture.cap"],
        ],
    ],
    ids=["classic", "newer"],
)
def test_the_spec_session_verbatim(pd, session, tmp_path):
    start, stop, show, write = session
    out = pd(*start).stdout
    assert out.startswith(f"int: capturing ipsrc {SND_V4} tcp") and "1024 KB linear" in out
    pd.net.connect_tcp(CAP_V4, 80, 4)  # 4 SYNs from 198.18.0.1 (the RSTs back are not from it)
    pd.net.send_udp(CAP_V4, 9000, 10)  # not TCP
    assert "int: stopped: 4 captured, 4 stored" in pd(*stop).stdout
    lines = pd(*show).stdout.splitlines()
    assert lines[0] == "== int: 4 packets =="
    assert [line.split()[0] for line in lines[1:]] == ["1", "2", "3", "4"]
    assert all(f"int in  TCP {SND_V4}:" in line and "> 198.18.0.2:80 [S]" in line for line in lines[1:])
    written = pd(*write).stdout
    path = pd.home / "store" / "capture.cap"
    assert written.startswith(f"{path}: 4 packets")
    got = list(pcapdump.read(path))
    assert len(got) == 4 and all(p.brief().split(None, 2)[2].startswith("- -   TCP") for p in got)
    status = pd.status()
    assert status["files"] == [{"name": "capture.cap", "size": path.stat().st_size}]


def test_count_snaplen_and_status_json(pd):
    pd("-c", "5", "-s", "64", "udp", "destport", "9000", "start", "int")
    pd.net.send_udp(CAP_V4, 9000, 20, size=300)
    wait_until(lambda: pd.capture()["state"] != "running", seconds=10)
    status = pd.status()
    assert status["buffer"] == {"size": 512 * 1024, "used": status["buffer"]["used"], "mode": "linear"}
    assert 0 < status["buffer"]["used"] <= 5 * (24 + 64)
    (c,) = status["captures"]
    assert c == {
        "iface": "int",
        "state": "stopped",
        "stop_reason": "count reached",
        "link": None,
        "filter": "udp destport 9000",
        "snaplen": 64,
        "count": 5,
        "duration": None,
        "trigger_words": None,
        "after": None,
        "trigger": None,
        "promisc": False,
        "store": True,
        "captured": 5,
        "packets": 5,
        "bytes": 5 * 64,
        "kernel_drops": 0,
        "buffer_full_drops": 0,
        "overwritten": 0,
        "live_dropped": 0,
    }
    pd("write", "int", "cut.cap")
    got = list(pcapdump.read(pd.home / "store" / "cut.cap"))
    assert [(p.caplen, p.wirelen) for p in got] == [(64, 14 + 20 + 8 + 300)] * 5


def test_not_excludes_in_the_kernel(pd):
    """`not` compiled into the socket's filter: the excluded port never reaches the buffer."""
    pd("udp", "not", "destport", "9001", "-not", "-destport=9002", "start", "int")
    for port, count in [(9000, 30), (9001, 20), (9002, 10), (9003, 5)]:
        pd.net.send_udp(CAP_V4, port, count)
    wait_until(lambda: pd.capture()["packets"] >= 35, seconds=10)
    pd("stop")
    c = pd.capture()
    assert (c["filter"], c["packets"]) == ("udp not destport 9001 not destport 9002", 35)
    ports = [line.split(" > ")[1].split()[0] for line in pd("show").stdout.splitlines()[1:]]
    assert sorted(set(ports)) == [f"{CAP_V4}:9000", f"{CAP_V4}:9003"]


def test_lines_are_in_the_callers_time_zone_not_the_agents(pd):
    """The agent started with TZ=UTC; a caller in JST (UTC+9) sees its own time, in `show` and `-o`."""
    pd("udp", "start", "int")  # the agent inherits TZ=UTC
    pd.net.send_udp(CAP_V4, 9000, 3)
    wait_until(lambda: pd.capture()["packets"] == 3, seconds=10)

    def run(*words: str, tz: str) -> str:
        env = {**pd.env, "TZ": tz}
        done = subprocess.run(pd.argv(*words), capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def hours(lines: str) -> list[int]:
        return [int(line.split()[1][:2]) for line in lines.splitlines() if not line.startswith("==")]

    utc = hours(run("show", "-utc", tz="JST-9"))
    assert hours(run("show", tz="JST-9")) == [(h + 9) % 24 for h in utc]
    assert hours(run("show", tz="UTC")) == utc
    dated = run("show", "-date", tz="JST-9").splitlines()[1:]
    assert all(re.fullmatch(r"\d+ 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} int in .*", d) for d in dated)
    pd("stop")
    env = {**pd.env, "TZ": "JST-9"}
    proc = subprocess.Popen(
        pd.argv("-o", "-utc", "-c", "1", "udp", "start", "int"), stdout=subprocess.PIPE, text=True, env=env
    )
    time.sleep(0.5)
    pd.net.send_udp(CAP_V4, 9000, 1)
    out, _ = proc.communicate(timeout=30)
    (line,) = out.splitlines()
    shown = run("show", "-utc", tz="JST-9").splitlines()[-1]
    assert line.split()[1] == shown.split()[1]  # -o wrote UTC, as asked, though the caller is in JST


def test_a_running_capture_on_a_link_that_went_down_says_so(pd):
    """On a veth pair of its own (`int` keeps its IPv6 addresses only while up: the other tests need it)."""
    in_ns = ["ip", "-n", pd.net.cap_ns, "link"]
    subprocess.run([*in_ns, "add", "ld0", "type", "veth", "peer", "name", "ld1"], check=True)
    try:
        for end in ("ld0", "ld1"):
            subprocess.run([*in_ns, "set", end, "up"], check=True)
        pd("start", "ld0")
        subprocess.run([*in_ns, "set", "ld0", "down"], check=True)
        assert (pd.capture("ld0")["state"], pd.capture("ld0")["link"]) == ("running", "down")
        assert re.search(r"^ld0\s+running \(link down\)\s", pd("status").stdout, re.M)
        subprocess.run([*in_ns, "set", "ld0", "up"], check=True)
        subprocess.run([*in_ns, "set", "ld1", "down"], check=True)  # the other end: no carrier on ld0
        assert pd.capture("ld0")["link"] == "no carrier"
        assert re.search(r"^ld0\s+running \(link no carrier\)\s", pd("status").stdout, re.M)
        subprocess.run([*in_ns, "set", "ld1", "up"], check=True)
        assert wait_until(lambda: pd.capture("ld0")["link"] == "up", seconds=5)
        assert re.search(r"^ld0\s+running\s", pd("status").stdout, re.M)
    finally:
        pd("stop", ok=False)
        subprocess.run([*in_ns, "del", "ld0"], check=False)


def test_a_duration_stops_the_capture_and_status_says_why(pd):
    assert "for 1 s" in pd("-duration", "1", "udp", "start", "int").stdout
    assert wait_until(lambda: pd.capture()["state"] == "stopped", seconds=5)
    assert pd.capture()["stop_reason"] == "duration" and pd.capture()["duration"] == 1.0
    assert re.search(r"^int\s+stopped \(duration\)\s", pd("status").stdout, re.M)
    for bad in ("0", "31536001", "x"):
        one_line_error(pd("-duration", bad, "start", "int", ok=False), 2, "-duration", "1…31536000")


def test_promiscuous_flag_set_then_restored(pd):
    def promiscuity() -> int:
        return int(re.search(r"promiscuity (\d+)", pd.net.link_details()).group(1))

    pd("-p", "start", "int")
    assert promiscuity() == 1
    assert pd.capture()["promisc"] is True
    pd("stop", "int")
    assert promiscuity() == 0


def test_live_lines_with_o_keep_the_packets(pd):
    proc = pd.popen("-o", "-c", "6", "udp", "start", "int")
    time.sleep(0.5)
    pd.net.send_udp(CAP_V4, 9000, 6)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 6 and all(f"int in  UDP {SND_V4}:" in line for line in lines)
    assert [line.split()[0] for line in lines] == ["1", "2", "3", "4", "5", "6"]
    assert "int: capturing udp, count 6" in err
    # It ended by itself: the final counters follow the lines, as `stop` would print them.
    assert "\nint: stopped (count reached): 6 captured, 6 stored (" in err
    assert pd.capture()["packets"] == 6
    assert len(pd("show", "int").stdout.splitlines()) == 7
    # Stopped by its count already: `stop int` still gives its final counters.
    assert pd("stop", "int").stdout.startswith("int: stopped (count reached): 6 captured, 6 stored")


def test_a_restarted_capture_keeps_and_counts_the_packets_stored_before(pd):
    pd("udp", "start", "int")
    pd.net.send_udp(CAP_V4, 9000, 3)
    pd("stop")
    assert "; 3 packets stored before are kept" in pd("udp", "start", "int").stdout
    pd.net.send_udp(CAP_V4, 9000, 2)
    pd("stop")
    c = pd.capture()
    assert (c["captured"], c["packets"]) == (2, 5)
    assert pd("show", "int").stdout.splitlines()[0] == "== int: 5 packets =="


def test_a_file_of_captures_with_two_snap_lengths_keeps_every_byte(pd):
    """Packets kept from a `-s 200` capture, then a `-s 64` one: the header says 200, so readers cut none."""
    pd("-s", "200", "udp", "start", "int")
    pd.net.send_udp(CAP_V4, 9000, 3, size=500)
    wait_until(lambda: pd.capture()["packets"] == 3, seconds=10)
    pd("stop")
    pd("-s", "64", "udp", "start", "int")
    pd.net.send_udp(CAP_V4, 9000, 3, size=500)
    wait_until(lambda: pd.capture()["packets"] == 6, seconds=10)
    pd("stop")
    pd("write", "int", "two.cap")
    path = pd.home / "store" / "two.cap"
    fields = subprocess.run(
        [need_tool("tshark"), "-r", str(path), "-T", "fields", "-e", "frame.cap_len"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert fields.stdout.split() == ["200"] * 3 + ["64"] * 3, fields.stderr
    assert struct.unpack_from("<I", path.read_bytes(), 16)[0] == 200  # the header's snap length
    # libpcap cuts a record longer than the header's snap length: tcpdump must see all 200 bytes.
    dumped = subprocess.run(
        [need_tool("tcpdump"), "-r", str(path), "-c", "1", "-x"], capture_output=True, text=True, check=True
    ).stdout
    assert len(re.findall(r"\b[0-9a-f]{4}\b", dumped.split("\n", 1)[1])) >= 200 // 2 - 8


def test_an_interface_that_changed_link_type_is_refused_until_wipe(pd):
    """Packets of two link types never mix under one name: `lt0` (Ethernet) comes back as a tun device."""
    in_ns = ["ip", "netns", "exec", pd.net.cap_ns]
    setup = (
        "link add lt0 type veth peer name lt1",
        "link set lt1 up",
        "link set lt0 up",
        "addr add 198.19.255.1/30 dev lt0",
        "neigh add 198.19.255.2 lladdr 02:00:00:00:00:99 dev lt0",
    )
    for cmd in setup:
        subprocess.run([*in_ns, "ip", *cmd.split()], check=True)
    try:
        pd("udp", "start", "lt0")
        send = "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        send += "for i in range(3): s.sendto(b'x', ('198.19.255.2', 9000))"
        subprocess.run([*in_ns, sys.executable, "-c", send], check=True, timeout=10)
        wait_until(lambda: pd.capture("lt0")["packets"] == 3, seconds=10)
        pd("stop")
        subprocess.run([*in_ns, "ip", "link", "del", "lt0"], check=True)
        subprocess.run([*in_ns, "ip", "tuntap", "add", "dev", "lt0", "mode", "tun"], check=True)
        subprocess.run([*in_ns, "ip", "link", "set", "lt0", "up"], check=True)
        done = pd("start", "lt0", ok=False)
        assert done.returncode == 1
        assert done.stderr == (
            "pcapdump: 'lt0': the buffer holds 3 packets of it with link type 1, and it now has link type "
            "276; `pcapdump write` them, then `pcapdump wipe`\n"
        )
        assert pd.capture("lt0")["packets"] == 3
        pd("wipe")
        assert pd("start", "lt0").returncode == 0
    finally:
        pd("stop", ok=False)
        subprocess.run([*in_ns, "ip", "link", "del", "lt0"], check=False)


def test_a_foreground_agent_is_an_agent(pd):
    agent = subprocess.Popen(pd.argv("agent"), env=pd.env, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: (pd.home / "agent.sock").exists(), seconds=10)
        status = pd.status()
        assert status["agent"] is not None and status["buffer"] is None
        text = pd("status").stdout
        assert "not running" not in text and text.startswith("agent: pid ")
    finally:
        agent.terminate()
        agent.wait(timeout=10)
    assert pd("status").stdout.startswith("agent: not running\nbuffer: none\n")


def test_a_live_capture_with_a_trigger_ends_by_itself(pd):
    proc = pd.popen("-o", "-trigger", "udp destport 9001", "-after", "2", "udp", "start", "int")
    time.sleep(0.5)
    pd.net.send_udp(CAP_V4, 9000, 3)
    pd.net.send_udp(CAP_V4, 9001, 1)
    pd.net.send_udp(CAP_V4, 9000, 5)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert len(out.splitlines()) == 3 + 1 + 2
    assert "int: stopped (triggered): 6 captured" in err
    assert pd("show", "int").stdout.splitlines()[4].endswith("[trigger]")


def test_a_trigger_whose_interface_keeps_no_more_stops_the_whole_start(pd):
    # `int` fires on its third packet, which is also its -c: it can keep none of its 5 more.
    pd("-c", "3", "-trigger", "udp destport 9001", "-after", "5", "udp", "start")  # int and lo
    pd.net.send_udp(CAP_V4, 9000, 2)
    pd.net.send_udp(CAP_V4, 9001, 1)
    assert wait_until(lambda: pd.capture("lo")["state"] == "stopped"), pd.status()
    reasons = (pd.capture("int")["stop_reason"], pd.capture("lo")["stop_reason"])
    assert reasons == ("count reached", "triggered")
    pd("wipe")
    # A linear buffer that fills during the post-roll ends it.
    pd("-size", "16", "-trigger", "udp destport 9001", "-after", "1000", "udp", "start", "int")
    pd.net.send_udp(CAP_V4, 9001, 1)
    pd.net.send_udp(CAP_V4, 9000, 300)
    assert wait_until(lambda: pd.capture("int")["state"] == "stopped"), pd.capture("int")
    assert pd.capture("int")["stop_reason"] == "triggered"


def test_show_marks_the_newest_starts_trigger_packet(pd):
    pd("-trigger", "udp destport 9001", "-after", "0", "udp", "start", "lo")
    pd.net.send_udp("127.0.0.1", 9001, 1, ns=pd.net.cap_ns)
    assert wait_until(lambda: pd.capture("lo")["state"] == "stopped")
    pd("wipe")
    pd("-trigger", "udp destport 9002", "-after", "0", "udp", "start", "int")
    pd.net.send_udp(CAP_V4, 9000, 2)
    pd.net.send_udp(CAP_V4, 9002, 1)
    assert wait_until(lambda: pd.capture("int")["state"] == "stopped")
    lines = pd("show", "int").stdout.splitlines()[1:]
    assert len(lines) == 3 and lines[2].endswith("[trigger]") and ":9002" in lines[2], lines
    assert not any(line.endswith("[trigger]") for line in lines[:2])


def test_live_only_prints_and_stores_nothing(pd):
    proc = pd.popen("-ou", "-json", "-c", "4", "udp", "start", "int")
    time.sleep(0.5)
    pd.net.send_udp(CAP_V4, 9000, 4)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    objects = [json.loads(line) for line in out.splitlines()]
    assert [o["index"] for o in objects] == [1, 2, 3, 4]
    assert all(o["src"] == SND_V4 and o["dport"] == 9000 and o["iface"] == "int" for o in objects)
    assert pd.status()["buffer"]["used"] == 0
    assert pd("show").stdout.strip() in ("no packets stored", "== int: 0 packets ==")
    c = pd.capture()
    assert (c["captured"], c["packets"], c["bytes"]) == (4, None, None)  # nothing stored
    assert re.search(
        r"^int\s+stopped \(count reached\)\s+udp\s+\d+\s+4\s+4\s+-\s+-\s", pd("status").stdout, re.M
    )


def test_ctrl_c_keeps_an_o_capture_and_ends_an_ou_capture(pd):
    for flag, state in (("-o", "running"), ("-ou", "stopped")):
        proc = pd.popen(flag, "udp", "start", "int")
        time.sleep(0.6)
        pd.net.send_udp(CAP_V4, 9000, 2)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
        wait_until(lambda wanted=state: pd.capture()["state"] == wanted)
        assert pd.capture()["state"] == state, flag
        pd("stop", ok=False)
        pd("wipe")


def test_ring_overwrites_the_oldest(pd):
    pd("-size", "16", "-ring", "udp", "start", "int")
    pd.net.send_udp(CAP_V4, 9000, 300, size=200, pause_every=50)
    pd("stop")
    c = pd.capture()
    held = 16384 // (24 + 248)
    assert (c["captured"], c["overwritten"], c["buffer_full_drops"]) == (300, 300 - held, 0)
    assert (c["packets"], c["bytes"]) == (held, held * 242)  # what is stored now
    assert pd.status()["buffer"]["mode"] == "ring"
    assert pd("show").stdout.splitlines()[0] == f"== int: {held} packets =="


def test_write_replaces_and_refuses_bad_names(pd):
    pd("udp", "start", "int")
    pd.net.send_udp(CAP_V4, 9000, 3)
    pd("stop")
    pd("write", "int", "a.cap")
    pd("start", "int")  # same interface again: everything now
    pd.net.send_udp(CAP_V4, 9000, 2)
    pd("stop")
    pd("write", "int", "a.cap")
    assert len(list(pcapdump.read(pd.home / "store" / "a.cap"))) >= 5
    for bad in ("../x.cap", "toolongname.cap", "a b.cap", "x.cappp", "/etc/passwd", ".cap"):
        one_line_error(pd("write", "int", bad, ok=False), 2, bad)
    assert sorted(os.listdir(pd.home / "store")) == ["a.cap"]
    one_line_error(pd("write", "eth9", "b.cap", ok=False), 1, "'eth9'")


def test_wipe_and_cleanup(pd):
    pd("udp", "start", "int")
    pd.net.send_udp(CAP_V4, 9000, 3)
    pd("write", "int", "keep.cap")
    assert pd("wipe").stdout.strip() == "wiped 3 packets"
    assert pd("show", "int").stdout.splitlines() == ["== int: 0 packets =="]
    pd.net.send_udp(CAP_V4, 9000, 2)  # the capture goes on after a wipe
    pd("stop")
    c = pd.capture()
    assert (c["captured"], c["packets"]) == (5, 2)  # packets: what is stored now
    assert pd("wipe").stdout.strip() == "wiped 2 packets"
    assert (pd.capture()["packets"], pd.capture()["bytes"]) == (0, 0)
    assert re.search(r"^int\s+stopped\s+udp\s+\d+\s+-\s+5\s+0\s+0\s", pd("status").stdout, re.M)
    pid = pd.agent_pid()
    out = pd("clean").stdout
    assert "deleted 1 files" in out and "agent stopped" in out
    assert os.listdir(pd.home / "store") == []
    assert not (pd.home / "agent.sock").exists()
    wait_until(lambda: not alive(pid))
    assert not alive(pid)


def test_refusals(pd):
    pd("start", "int")
    one_line_error(pd("start", "int", ok=False), 1, "'int' is already capturing")
    one_line_error(pd("start", "nosuch0", ok=False), 1, "nosuch0")
    pd.net.send_udp(CAP_V4, 9000, 1)
    pd("stop")
    one_line_error(pd("-size", "2048", "start", "int", ok=False), 2, "'-size 2048'", "wipe")
    pd("wipe")
    pd("-size", "2048", "start", "int")
    assert pd.status()["buffer"]["size"] == 2048 * 1024
    one_line_error(pd("-size", "8", "start", "int", ok=False), 2, "'-size 8'", "16…4194304")
    one_line_error(pd("-o", "-ou", "start", "int", ok=False), 2, "-ou")
    one_line_error(pd("stop", "lo", ok=False), 1, "'lo' is not capturing")
    pd("stop")
    pd("wipe")
    pd("-ring", "start", "int")
    pd.net.send_udp(CAP_V4, 9000, 1)
    pd("stop")
    # A start without -ring asks for a linear buffer: the word named is the one left out.
    one_line_error(pd("start", "int", ok=False), 2, "'-ring'", "2048 KB ring", "give -ring again")


def test_the_console_raises_the_agents_errors_by_kind(pd):
    console = pcapdump.Console(pd.home)
    with pd.net.on_capture_side():
        console.start("int")
        with pytest.raises(pcapdump.NoSuchInterfaceError) as no_such:
            console.start("nosuch0")
        assert no_such.value.iface == "nosuch0"
        with pytest.raises(pcapdump.CaptureError) as busy:
            console.start("int")
        assert type(busy.value) is pcapdump.CaptureError and busy.value.iface == "int"
        with pytest.raises(pcapdump.FilterError) as bad:
            console.start("lo", "port 70000")
        assert bad.value.token == "port 70000"
        with pytest.raises(pcapdump.UsageError):
            console.write("int", "../x")


def test_the_console_refuses_the_trigger_mistakes_the_command_line_refuses(pd):
    console = pcapdump.Console(pd.home)
    with pd.net.on_capture_side():
        for kwargs, needle in (
            ({"trigger": ""}, "expected filter words"),
            ({"trigger": "   "}, "expected filter words"),
            ({"after": 5}, "-after applies with -trigger"),
        ):
            with pytest.raises(pcapdump.UsageError) as bad:
                console.start("int", "udp", **kwargs)
            assert needle in str(bad.value), kwargs
        assert all(c["iface"] != "int" for c in pd.status()["captures"])


def test_a_full_linear_buffer_takes_packets_again_after_wipe(pd):
    pd("-size", "16", "udp", "start", "int")
    pd.net.send_udp(CAP_V4, 9000, 300)
    assert wait_until(lambda: pd.capture()["buffer_full_drops"] > 0)
    pd("wipe")
    full = pd.capture()["buffer_full_drops"]
    pd.net.send_udp(CAP_V4, 9001, 5)
    shown = lambda: pd("show", "int").stdout.splitlines()[1:]  # noqa: E731
    assert wait_until(lambda: len(shown()) == 5), pd.capture()
    assert all(":9001" in line for line in shown())
    assert pd.capture()["buffer_full_drops"] == full


def test_a_bad_filter_is_refused_before_any_agent_starts(pd):
    with pytest.raises(pcapdump.FilterError) as bad:
        pcapdump.Console(pd.home).start("int", "port 70000")
    assert bad.value.token == "port 70000"
    assert not pd.home.exists()


def test_a_stopped_capture_says_stopped_once(pd):
    pd("udp", "start", "int")
    assert pd("stop").stdout.startswith("int: stopped: 0 captured, 0 stored (0 bytes)")
    table = pd("status").stdout
    assert "stopped (stopped)" not in table
    assert re.search(r"^int\s+stopped\s", table, re.M), table


def test_two_interfaces_at_once_and_sections(pd):
    pd("udp", "start", "int")
    pd("udp", "start", "lo")
    pd.net.send_udp(CAP_V4, 9000, 3)
    pd.net.send_udp("127.0.0.1", 9000, 2, ns=pd.net.cap_ns)
    pd("stop")
    counts = {c["iface"]: c["packets"] for c in pd.status()["captures"]}
    assert counts == {"int": 3, "lo": 2}
    out = pd("show").stdout
    assert "== int: 3 packets ==" in out and "== lo: 2 packets ==" in out
    assert [line for line in out.splitlines() if line.startswith("==")] == [
        "== int: 3 packets ==",
        "== lo: 2 packets ==",
    ]


def test_start_without_interface_takes_every_interface_that_is_up(pd):
    out = pd("udp", "start").stdout
    assert {line.split(":")[0] for line in out.splitlines()} == {"lo", "int"}


def test_a_killed_agent_is_reported_and_replaced(pd):
    pd("udp", "start", "int")
    pid = pd.agent_pid()
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid), every=0.02)
    one_line_error(pd("status", ok=False), 1, f"pid {pid}", "gone")
    assert pd.status()["captures"] == []  # recovered: no agent, nothing captured
    pd("udp", "start", "int")
    assert pd.agent_pid() != pid
    pd.net.send_udp(CAP_V4, 9000, 2)
    pd("stop")
    assert pd.capture()["packets"] == 2


def test_a_hung_agent_is_reported_within_seconds(pd):
    pd("start", "int")
    pid = pd.agent_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        one_line_error(pd("status", ok=False, timeout=30), 1, "did not answer", str(pid))
        assert time.monotonic() - started < 10
    finally:
        os.kill(pid, signal.SIGCONT)
    assert pd.capture()["state"] == "running"


def test_a_non_root_user_gets_the_privilege_message(pd):
    pd("start", "int")
    # The interpreter lives under /root, so `runuser` cannot exec it: drop to nobody inside it instead,
    # after the imports, exactly as a non-root login would be.
    script = (
        "import os, sys\n"
        "import pcapdump.cli\n"
        "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        "sys.argv = ['pcapdump', *sys.argv[1:]]\n"
        "pcapdump.cli.main()\n"
    )
    for words, needle in ((["status"], "permission denied"), (["start", "int"], "CAP_NET_RAW")):
        done = subprocess.run(
            ["ip", "netns", "exec", pd.net.cap_ns, sys.executable, "-c", script, *words],
            capture_output=True,
            text=True,
            env=pd.env,
            timeout=30,
        )
        one_line_error(done, 1, needle)
    assert oct(os.stat(pd.home / "agent.sock").st_mode & 0o777) == "0o600"
    assert oct(os.stat(pd.home).st_mode & 0o777) == "0o700"


def test_the_spec_example_values_are_accepted_as_filters(pd):
    pd("ipsrc", "192.168.0.1", "ipdest", "10.0.0.1", "proto", "103", "start", "int")
    assert pd.capture()["filter"] == "ipsrc 192.168.0.1 ipdest 10.0.0.1 proto 103"
    pd("stop")
    assert pd.capture()["packets"] == 0


def test_demo_runs_the_session_and_removes_what_it_made(testnet, tmp_path):
    done = subprocess.run(
        [pcapdump_exe(), "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    commands = [
        line[len("$ pcapdump ") :] for line in done.stdout.splitlines() if line.startswith("$ pcapdump ")
    ]
    assert commands == [
        f"-size 1024 ipsrc {SND_V4} tcp start int",
        "status",
        "stop",
        "show",
        "write int capture.cap",
    ]
    assert "== int: 15 packets ==" in done.stdout  # 3 connections, 5 TCP packets each from the client
    kept = tmp_path / "pcapdump-demo.cap"
    assert len(list(pcapdump.read(kept))) == 15
    made = set(re.findall(r"namespace (pcapdump-demo-\S+)", done.stdout))
    assert len(made) == 2
    after = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not made & {line.split()[0] for line in after.splitlines()}


def test_demo_keep_leaves_the_network_and_the_agent_and_says_how_to_go_on(testnet, tmp_path):
    done = subprocess.run(
        [pcapdump_exe(), "demo", "-keep"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [line.strip() for line in done.stdout.splitlines()]
    first = next(i for i, line in enumerate(lines) if line.endswith("Go on by hand, for instance:")) + 1
    last = lines.index("When done, remove everything:")
    go_on, remove = lines[first:last], lines[last + 1]
    made = set(re.findall(r"namespace (pcapdump-demo-\S+)", done.stdout))
    try:
        # The hints run as printed, one after the other: 3 datagrams captured and shown.
        outputs = []
        for hint in go_on:
            ran = subprocess.run(hint, shell=True, capture_output=True, text=True, timeout=60, check=False)
            assert ran.returncode == 0, (hint, ran.stderr)
            outputs.append(ran.stdout)
        shown = outputs[-1].splitlines()
        assert shown[0] == "== int: 3 packets ==" and all(" UDP 198.18.0.1:" in s for s in shown[1:]), shown
    finally:
        removed = subprocess.run(remove, shell=True, capture_output=True, text=True, timeout=60, check=False)
    assert removed.returncode == 0, removed.stderr
    after = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert len(made) == 2 and not made & {line.split()[0] for line in after.splitlines()}


def test_demo_replaces_a_planted_link_instead_of_writing_through_it(testnet, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("root's own\n")
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o1777)
    shared.chmod(0o1777)
    planted = shared / "pcapdump-demo.cap"
    planted.symlink_to(victim)
    os.lchown(planted, 65534, 65534)
    done = subprocess.run(
        [pcapdump_exe(), "demo"], cwd=shared, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "root's own\n"
    assert not planted.is_symlink() and len(list(pcapdump.read(planted))) == 15


def test_demo_without_root_says_so(tmp_path):
    script = (
        "import os, sys\n"
        "import pcapdump.cli, pcapdump.demo\n"
        "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        "sys.argv = ['pcapdump', 'demo']\n"
        "pcapdump.cli.main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd="/")
    one_line_error(done, 1, "needs root")


def test_demo_interrupted_removes_what_it_made(testnet, tmp_path):
    # The demo's home is made in TMPDIR: here, so that its agents can be told from anyone else's.
    proc = subprocess.Popen(
        [pcapdump_exe(), "demo"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    while not proc.stdout.readline().startswith("$ pcapdump"):
        pass
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)  # a second Ctrl-C does not cut the clean-up short
    out, _ = proc.communicate(timeout=60)
    assert "Removed the namespaces, the agent and its folder." in out
    made = set(re.findall(r"namespace (pcapdump-demo-\S+)", out))
    after = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not made & {line.split()[0] for line in after.splitlines()}
    # An agent still starting when the demo cleaned up finds its home gone and ends.
    agents_gone = wait_until(lambda: agents_under(tmp_path) == [])
    assert agents_gone, "an agent outlived the demo"


def test_interfaces_started_together_share_a_kernel_ring_budget():
    from pcapdump import _core

    blocks = _core.ring_blocks_each
    assert blocks(1) == _core.RING_BLOCKS  # one interface: the full default ring
    assert blocks(_core.SHARED_RING_BLOCKS // _core.RING_BLOCKS) == _core.RING_BLOCKS
    assert blocks(32) * 32 <= _core.SHARED_RING_BLOCKS
    assert blocks(500) == _core.MIN_RING_BLOCKS
