"""The gateway view: one pcapng file of a routed gateway's interfaces, each packet with its interface and
direction, as Wireshark shows them (tshark is the judge). Live: three network namespaces, root needed."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import IN_CI, need_tool, pcapdump_exe, wait_until
from netns import Gateway

pytestmark = pytest.mark.live

DATAGRAMS = 40
CLOSED_PORT = 9


@pytest.fixture
def gateway(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("CI runs as root") if IN_CI else pytest.skip("needs root")
    gw = Gateway().create()
    env = {**os.environ, "PCAPDUMP_HOME": str(tmp_path / "home"), "TZ": "UTC"}

    def pcapdump(*words: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["ip", "netns", "exec", gw.gw_ns, pcapdump_exe(), *words],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert not ok or done.returncode == 0, f"pcapdump {' '.join(words)}: {done.stderr}"
        return done

    gw.pcapdump = pcapdump  # type: ignore[attr-defined]
    gw.store = tmp_path / "home" / "store"  # type: ignore[attr-defined]
    try:
        yield gw
    finally:
        pcapdump("cleanup", ok=False)
        gw.destroy()


def tshark_fields(path, display_filter: str, *fields: str) -> list[list[str]]:
    args = [need_tool("tshark"), "-r", str(path), "-Y", display_filter, "-T", "fields"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def status_of(gw) -> dict:
    import json

    return {c["iface"]: c for c in json.loads(gw.pcapdump("status", "-json").stdout)["captures"]}


def test_a_datagram_crosses_the_gateway_and_its_icmp_error_comes_back(gateway):
    gw = gateway
    started = gw.pcapdump("start").stdout
    assert "int: capturing" in started and "ext: capturing" in started
    gw.send_udp_outwards(CLOSED_PORT, DATAGRAMS)
    # Each datagram twice (in on int, out on ext), each ICMP error twice (in on ext, out on int).
    assert wait_until(
        lambda: (
            status_of(gw)["int"]["packets"] >= 2 * DATAGRAMS
            and status_of(gw)["ext"]["packets"] >= 2 * DATAGRAMS
        ),
        seconds=15,
    )
    gw.pcapdump("stop")
    written = gw.pcapdump("write", "all", "gw.cap").stdout
    path = gw.store / "gw.cap"
    assert written.startswith(f"{path}: ") and "(pcapng: " in written

    fields = ("frame.interface_name", "frame.packet_flags_direction", "frame.time_epoch")
    datagrams = tshark_fields(path, f"udp.dstport == {CLOSED_PORT} && !icmp", *fields)
    errors = tshark_fields(path, "icmp.type == 3 && icmp.code == 3", *fields)
    inbound, outbound = "0x00000001", "0x00000002"
    assert sorted(tuple(d[:2]) for d in datagrams) == sorted(
        [("int", inbound)] * DATAGRAMS + [("ext", outbound)] * DATAGRAMS
    )
    assert sorted(tuple(e[:2]) for e in errors) == sorted(
        [("ext", inbound)] * DATAGRAMS + [("int", outbound)] * DATAGRAMS
    )
    # One timeline: every packet of the file in time order, each datagram in before it goes out.
    times = [float(t) for (t,) in tshark_fields(path, "frame", "frame.time_epoch")]
    assert times == sorted(times)
    assert [d[0] for d in datagrams[:2]] == ["int", "ext"]

    info = subprocess.run(
        [need_tool("capinfos"), str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert "pcapng" in info and "Number of interfaces in file: 3" in info
    total = len(tshark_fields(path, "frame", "frame.number"))
    tcpdump = subprocess.run([need_tool("tcpdump"), "-nr", str(path)], capture_output=True, text=True)
    assert tcpdump.returncode == 0 and len(tcpdump.stdout.splitlines()) == total, tcpdump.stderr
    # `read -w -pcapng` keeps packets, interfaces and directions (lo had none: it gets no block there).
    again = gw.store.parent / "again.pcapng"
    done = subprocess.run(
        [pcapdump_exe(), "read", str(path), "-w", str(again), "-pcapng"], capture_output=True
    )
    assert done.returncode == 0, done.stderr
    for flt in (f"udp.dstport == {CLOSED_PORT} && !icmp", "icmp.type == 3"):
        assert tshark_fields(again, flt, *fields) == tshark_fields(path, flt, *fields)


def test_write_names_each_interface_once_and_only_known_ones(gateway):
    gw = gateway
    gw.pcapdump("start", "int")
    twice = gw.pcapdump("write", "int,int", "x.cap", ok=False)
    assert twice.returncode == 2 and "int is named twice" in twice.stderr
    unknown = gw.pcapdump("write", "int,eht0", "x.cap", ok=False)
    assert unknown.returncode == 1 and "'eht0'" in unknown.stderr and len(unknown.stderr.splitlines()) == 1
    assert not (gw.store / "x.cap").exists()


def test_all_with_nothing_stored_is_a_valid_file_of_interface_blocks(gateway):
    gw = gateway
    gw.pcapdump("udp", "port", "7", "start")
    gw.pcapdump("stop")
    out = gw.pcapdump("write", "all", "empty.cap").stdout
    assert ": 0 packets, 0 bytes (pcapng: " in out and "int 0" in out and "ext 0" in out
    info = subprocess.run(
        [need_tool("capinfos"), str(gw.store / "empty.cap")], capture_output=True, text=True, check=True
    ).stdout
    assert "Number of packets:   0" in info and "Number of interfaces in file: 3" in info


def statistics_blocks(path) -> list[dict[str, int]]:
    """The interface statistics blocks of a little-endian pcapng file: interface id and counters (no
    tool prints these; the layout is the pcapng specification's)."""
    import struct

    data, at, found = path.read_bytes(), 0, []
    names = {4: "ifrecv", 5: "ifdrop", 7: "osdrop", 8: "usrdeliv"}
    while at < len(data):
        kind, length = struct.unpack_from("<II", data, at)
        if kind == 5:
            block = {"iface": struct.unpack_from("<I", data, at + 8)[0]}
            opt = at + 20
            while opt < at + length - 4:
                code, size = struct.unpack_from("<HH", data, opt)
                if code == 0:
                    break
                if code in names:
                    block[names[code]] = struct.unpack_from("<Q", data, opt + 4)[0]
                opt += 4 + (size + 3) // 4 * 4
            found.append(block)
        at += length
    return found


def test_the_statistics_blocks_carry_the_drops_status_shows(gateway):
    """A 16 KB linear buffer fills: the drops `status` counts are the file's `isb_osdrop`."""
    gw = gateway
    gw.pcapdump("-size", "16", "udp", "start", "int")
    gw.send_udp_outwards(CLOSED_PORT, 300)  # 300 frames of 106 bytes: 16 KB holds about 120
    assert wait_until(lambda: status_of(gw)["int"]["buffer_full_drops"] > 0, seconds=10)
    gw.pcapdump("stop")
    status = status_of(gw)["int"]
    gw.pcapdump("write", "int", "-pcapng", "one.cap")
    (isb,) = statistics_blocks(gw.store / "one.cap")
    assert isb["iface"] == 0
    assert isb["ifdrop"] == status["kernel_drops"]
    assert isb["osdrop"] == status["buffer_full_drops"]
    assert isb["usrdeliv"] == status["packets"]
    assert isb["ifrecv"] == status["captured"] + status["kernel_drops"] + status["buffer_full_drops"]
    assert status["buffer_full_drops"] > 0


def test_show_merge_is_one_timeline_of_the_chosen_interfaces(gateway):
    gw = gateway
    gw.pcapdump("udp", "start", "int")
    gw.pcapdump("udp", "start", "ext")
    gw.send_udp_outwards(CLOSED_PORT, 5)
    assert wait_until(lambda: status_of(gw)["ext"]["packets"] == 5, seconds=10)
    gw.pcapdump("stop")
    lines = gw.pcapdump("show", "int,ext", "-merge").stdout.splitlines()
    assert lines[0] == "== int, ext: 10 packets =="
    assert [line.split()[0] for line in lines[1:]] == [str(n) for n in range(1, 11)]
    # Each datagram in on int, then out on ext, in time order.
    assert [tuple(line.split()[2:4]) for line in lines[1:]] == [("int", "in"), ("ext", "out")] * 5
    sections = gw.pcapdump("show", "int,ext").stdout.splitlines()
    assert sections[0] == "== int: 5 packets ==" and sections[6] == "== ext: 5 packets =="
    assert gw.pcapdump("show", "-merge").stdout.splitlines()[0] == "== int, ext: 10 packets =="


def test_a_trigger_freezes_the_flight_recorder_just_after_the_fault(gateway):
    """A small ring, traffic that overwrites it, one datagram to the gateway itself (seen on `int` only)
    fires the trigger: `int` keeps exactly 5 more, then both captures of the start stop."""
    gw = gateway
    started = gw.pcapdump(
        "-ring", "-size", "16", "-trigger", "udp destport 7777", "-after", "5", "udp", "start"
    )
    assert "trigger 'udp destport 7777' then 5 more" in started.stdout
    gw.send_udp_outwards(9000, 300)  # about twice what 16 KB holds, on each interface
    gw.send_udp_from_inside(gw.GW_INT, 7777, 1)
    gw.send_udp_outwards(9000, 50)
    assert wait_until(lambda: all(c["state"] == "stopped" for c in status_of(gw).values()), seconds=10)
    captures = status_of(gw)
    assert {n: c["stop_reason"] for n, c in captures.items() if n in ("int", "ext")} == {
        "int": "triggered",
        "ext": "triggered",
    }
    hit = captures["int"]["trigger"]
    assert hit["iface"] == "int" and ":7777" in hit["brief"] and hit["index"] is not None
    assert captures["int"]["overwritten"] > 0  # the ring kept the newest, not the first
    lines = gw.pcapdump("show", "int").stdout.splitlines()[1:]
    marked = [i for i, line in enumerate(lines) if line.endswith("[trigger]")]
    assert len(marked) == 1 and ":7777" in lines[marked[0]]
    assert int(lines[marked[0]].split()[0]) == hit["index"]
    assert len(lines) - marked[0] - 1 == 5  # exactly -after packets follow it
    assert "trigger: fired on int, packet" in gw.pcapdump("status").stdout
    gw.pcapdump("write", "all", "fault.cap")
    comments = tshark_fields(gw.store / "fault.cap", "frame.comment", "frame.comment", "udp.dstport")
    assert len(comments) == 1 and comments[0][1] == "7777" and "trigger fired" in comments[0][0]


def test_trigger_mistakes_are_usage_errors_and_start_nothing(gateway):
    gw = gateway
    for words, needle in (
        (["-after", "5", "start", "int"], "-after applies with -trigger"),
        (["-trigger", "", "start", "int"], "expected filter words"),
        (["-trigger", "udp bogus", "start", "int"], "'bogus': unknown filter word"),
        (["-trigger", "udp", "-after", "-1", "start", "int"], "-after"),
    ):
        done = gw.pcapdump(*words, ok=False)
        assert done.returncode == 2 and needle in done.stderr and len(done.stderr.splitlines()) == 1, (
            done.stderr
        )
    assert gw.pcapdump("status", "-json").stdout.count('"iface"') == 0
