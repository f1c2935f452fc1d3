"""Live capture for real: AF_PACKET rings on the `int` end of a veth pair in a private namespace, traffic
sent from the other end by bounded senders (see netns.py). Root is needed; CI runs as root, so there
these tests fail rather than skip when they cannot run."""

from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time

import netns
import pcapdump
import pytest
from conftest import need_tool, wait_until
from netns import CAP_V4, CAP_V6, SND_V4, SND_V6, SND_VLAN_V4, VLAN_ID

pytestmark = pytest.mark.live

UDP_PAYLOAD = 14 + 20 + 8  # where a sender's datagram number sits in an untagged IPv4 frame


def start(net: netns.TestNet, iface: str = "int", **options) -> pcapdump.Capture:
    with net.on_capture_side():
        return pcapdump.capture(iface, **options)


def numbers(packets: list[pcapdump.Packet], at: int = UDP_PAYLOAD) -> list[int]:
    return [struct.unpack_from("!I", p.data, at)[0] for p in packets]


def test_the_filter_keeps_exactly_the_matching_packets(testnet):
    with start(testnet, filter="udp dstport 9000") as cap:
        testnet.send_udp(CAP_V4, 9000, 40)
        testnet.send_udp(CAP_V4, 9001, 25)
        cap.stop()
        got = list(cap)
        stats = cap.stats()
    assert len(got) == 40
    assert numbers(got) == list(range(40))
    assert all(p.iface == "int" and p.direction == "in" for p in got)
    assert all(f"{SND_V4}:" in p.brief() and f"> {CAP_V4}:9000" in p.brief() for p in got)
    assert (stats["state"], stats["stop_reason"]) == ("stopped", "stopped")
    assert (stats["packets"], stats["kernel_drops"], stats["buffer_full_drops"]) == (40, 0, 0)


def test_without_a_filter_every_packet_is_kept(testnet):
    with start(testnet) as cap:
        testnet.send_udp(CAP_V4, 9000, 30)
        testnet.send_udp(CAP_V4, 9001, 20)
        cap.stop()
        got = [p for p in cap if p.direction == "in" and p.data[12:14] == b"\x08\x00" and p.data[23] == 17]
    assert len(got) == 50


def test_the_kernel_cuts_to_the_snap_length(testnet):
    with start(testnet, filter="udp", snaplen=60) as cap:
        # The program the kernel runs is ours, and it accepts with the snap length.
        sockets = testnet.packet_sockets()
        programs = re.findall(r"bpf filter \((\d+)\):\s*([^\n]*)", sockets)
        ours = pcapdump.Filter("udp").bpf(60)
        attached = [
            [tuple(int(x, 0) for x in insn.split()) for insn in text.strip(" ,").split(",")]
            for _, text in programs
        ]
        assert ours in attached, sockets
        testnet.send_udp(CAP_V4, 9000, 10, size=500)
        cap.stop()
        got = list(cap)
    assert len(got) == 10
    assert {(p.caplen, p.wirelen) for p in got} == {(60, 14 + 20 + 8 + 500)}


def test_promiscuous_mode_lasts_as_long_as_the_capture(testnet):
    def promiscuity() -> int:
        return int(re.search(r"promiscuity (\d+)", testnet.link_details()).group(1))

    assert promiscuity() == 0
    with start(testnet, promisc=True) as cap:
        # A membership of the socket (PACKET_MR_PROMISC): the kernel counts it in `promiscuity`.
        assert promiscuity() == 1
        cap.stop()
        assert promiscuity() == 0
    with start(testnet) as cap:
        assert promiscuity() == 0


def test_linear_buffer_keeps_the_first_packets(testnet):
    with start(testnet, filter="udp dstport 9000", buffer_kb=16) as cap:
        testnet.send_udp(CAP_V4, 9000, 300, size=200, pause_every=50)
        cap.stop()
        got = list(cap)
        stats = cap.stats()
    # A 242-byte frame takes 24 + 248 bytes: 60 fit in 16 KiB.
    assert len(got) == 16384 // (24 + 248)
    assert numbers(got) == list(range(len(got)))
    assert stats["packets"] == len(got)
    assert stats["buffer_full_drops"] == 300 - len(got)
    assert stats["overwritten"] == 0


def test_ring_buffer_keeps_the_newest_packets(testnet):
    with start(testnet, filter="udp dstport 9000", buffer_kb=16, ring=True) as cap:
        testnet.send_udp(CAP_V4, 9000, 300, size=200, pause_every=50)
        cap.stop()
        got = list(cap)
        stats = cap.stats()
    held = 16384 // (24 + 248)
    assert numbers(got) == list(range(300 - held, 300))
    assert stats["packets"] == 300
    assert stats["overwritten"] == 300 - held
    assert stats["buffer_full_drops"] == 0


def test_count_stops_the_capture_by_itself(testnet):
    with start(testnet, filter="udp dstport 9000", count=10) as cap:
        testnet.send_udp(CAP_V4, 9000, 40)
        got = list(cap)  # ends by itself once ten are stored
        stats = cap.stats()
    assert numbers(got) == list(range(10))
    assert (stats["state"], stats["stop_reason"]) == ("stopped", "count reached")
    assert stats["packets"] == 10


def test_iteration_waits_for_packets_without_holding_the_gil(testnet):
    ticks = 0
    stop_ticking = threading.Event()

    def tick() -> None:
        nonlocal ticks
        while not stop_ticking.is_set():
            ticks += 1
            time.sleep(0.001)

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        with start(testnet, filter="udp dstport 9000", count=20) as cap:
            sender = threading.Thread(target=lambda: (time.sleep(0.3), testnet.send_udp(CAP_V4, 9000, 20)))
            sender.start()
            before = ticks
            got = list(cap)
            during = ticks - before
            sender.join()
    finally:
        stop_ticking.set()
        ticker.join()
    assert numbers(got) == list(range(20))
    # The iterator waited ≥ 0.3 s; another Python thread ran meanwhile.
    assert during > 10


def interrupted_while_waiting(net: netns.TestNet, wait: str) -> None:
    """Run a capture on `int` that waits (`wait`, a statement using `cap`) for packets that never come,
    send it SIGINT, and check that KeyboardInterrupt reached it."""
    script = (
        "import pcapdump, sys\n"
        "cap = pcapdump.capture('int', filter='udp dstport 9999')\n"
        "print('ready', flush=True)\n"
        "try:\n"
        f"    {wait}\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
        "    cap.stop()\n"
        "    sys.exit(3)\n"
    )
    proc = subprocess.Popen(
        ["ip", "netns", "exec", net.cap_ns, sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert "interrupted" in out, err
    assert proc.returncode == 3


def test_ctrl_c_interrupts_a_waiting_iteration(testnet):
    interrupted_while_waiting(testnet, "for p in cap: pass")


def test_vlan_tags_stripped_by_the_kernel_are_put_back(testnet):
    with (
        start(testnet, filter=f"vlan {VLAN_ID}") as by_id,
        start(testnet, filter=f"ipsrc {SND_VLAN_V4}") as by_ip,
        start(testnet, filter="vlan 200") as other,
        start(testnet, filter=f"ipsrc {SND_V4}") as untagged,
    ):
        testnet.send_tagged_udp(9000, 15)
        testnet.send_udp(CAP_V4, 9000, 5)
        for c in (by_id, by_ip, other, untagged):
            c.stop()
        tagged = list(by_id)
        assert [p.data for p in by_ip] == [p.data for p in tagged]
        assert list(other) == []
        assert len(list(untagged)) == 5
    assert len(tagged) == 15
    for p in tagged:
        assert p.data[12:16] == struct.pack("!HH", 0x8100, VLAN_ID)
        assert p.data[16:18] == b"\x08\x00"
        assert p.wirelen == len(p.data)
        assert f"VLAN {VLAN_ID} UDP {SND_VLAN_V4}:40000" in p.brief()
    assert numbers(tagged, UDP_PAYLOAD + 4) == list(range(15))


def test_ipv6(testnet):
    with start(testnet, filter=f"ipsrc {SND_V6} udp dstport 9000") as cap:
        testnet.send_udp(CAP_V6, 9000, 12)
        testnet.send_udp(CAP_V4, 9000, 7)
        cap.stop()
        got = list(cap)
    assert numbers(got, 14 + 40 + 8) == list(range(12))
    assert all(f"{SND_V6}" in p.brief() and p.data[12:14] == b"\x86\xdd" for p in got)


def test_direction_in_and_out(testnet):
    # Each connection to a closed port is a SYN coming in and a RST going out.
    with start(testnet, filter="tcp port 9") as cap:
        testnet.connect_tcp(CAP_V4, 9, 6)
        cap.stop()
        got = list(cap)
    ins = [p for p in got if p.direction == "in"]
    outs = [p for p in got if p.direction == "out"]
    assert len(ins) == 6 and len(outs) == 6
    assert all(f"{SND_V4}:" in p.brief() and "[S]" in p.brief() for p in ins)
    assert all(f"{CAP_V4}:9 >" in p.brief() and "R" in p.brief().split("[")[1] for p in outs)


def test_loopback_without_duplicates(testnet):
    with start(testnet, iface="lo", filter="udp dstport 9000") as cap:
        testnet.send_udp("127.0.0.1", 9000, 10, ns=testnet.cap_ns)
        cap.stop()
        got = list(cap)
    assert numbers(got) == list(range(10))
    assert cap.linktype == 1


def test_no_kernel_drops_at_a_moderate_rate(testnet):
    with start(testnet, filter="udp dstport 9000", buffer_kb=8192) as cap:
        testnet.send_udp(CAP_V4, 9000, 20_000, size=100, pause_every=500)
        cap.stop()
        stats = cap.stats()
        got = list(cap)
    assert stats["kernel_drops"] == 0
    assert stats["packets"] == 20_000
    assert numbers(got) == list(range(20_000))


def test_write_gives_a_valid_pcap(testnet, tmp_path):
    capinfos = need_tool("capinfos")
    with start(testnet, filter="udp", snaplen=96) as cap:
        testnet.send_udp(CAP_V4, 9000, 25, size=300)
        cap.stop()
        assert cap.write(str(tmp_path / "live.cap")) == 25
    info = subprocess.run(
        [capinfos, "-c", "-l", "-E", str(tmp_path / "live.cap")], capture_output=True, text=True
    )
    assert info.returncode == 0
    assert re.search(r"Number of packets:\s+25\b", info.stdout)
    assert "Ethernet" in info.stdout
    again = list(pcapdump.read(tmp_path / "live.cap"))
    assert [(p.caplen, p.wirelen) for p in again] == [(96, 342)] * 25


def test_errors_name_the_interface_or_the_privilege(testnet):
    with pytest.raises(pcapdump.NoSuchInterfaceError) as no_such:
        start(testnet, iface="nosuch0")
    assert no_such.value.iface == "nosuch0" and str(no_such.value) == "no such interface 'nosuch0'"
    assert isinstance(no_such.value, pcapdump.CaptureError)
    with pytest.raises(pcapdump.FilterError):
        start(testnet, filter="port 70000")
    script = (
        "import os, pcapdump\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "try:\n"
        "    pcapdump.capture('lo')\n"
        "except pcapdump.PrivilegeError as e:\n"
        "    print(type(e).__name__, e.iface, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.stdout.startswith("PrivilegeError lo "), out
    assert "needs root or the CAP_NET_RAW capability" in out.stdout, out.stderr
    assert os.geteuid() == 0


TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000


def test_a_filter_on_an_interface_without_link_header(testnet):
    import fcntl  # Unix only; this module is collected on every platform

    # tun0 in the capture namespace, held open by this test (a tun without a reader has no carrier):
    # datagrams routed to 198.19.5.2 leave through it, and what the test writes to it comes in.
    ns = ("ip", "-n", testnet.cap_ns)
    netns.run(*ns, "tuntap", "add", "dev", "tun0", "mode", "tun")
    try:
        with testnet.on_capture_side():
            tun = os.open("/dev/net/tun", os.O_RDWR)
            fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", b"tun0", IFF_TUN | IFF_NO_PI))
        netns.run(*ns, "addr", "add", "198.19.5.1/24", "dev", "tun0")
        netns.run(*ns, "link", "set", "tun0", "up")
        with start(testnet, iface="tun0", filter="udp dstport 9000", snaplen=60) as cap:
            testnet.send_udp("198.19.5.2", 9000, 7, size=100, ns=testnet.cap_ns)
            testnet.send_udp("198.19.5.2", 9001, 4, ns=testnet.cap_ns)
            for i in range(3):
                udp = struct.pack("!HHHH", 40000, 9000, 8 + 4, 0) + i.to_bytes(4, "big")
                ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0,
                                 bytes([198, 19, 5, 2]), bytes([198, 19, 5, 1]))  # fmt: skip
                os.write(tun, ip + udp)
            cap.stop()
            got = list(cap)
        os.close(tun)
    finally:
        netns.run(*ns, "link", "del", "tun0")
    assert cap.linktype == 276  # Linux cooked v2: the packets have no link header of their own
    outs = [p for p in got if p.direction == "out"]
    ins = [p for p in got if p.direction == "in"]
    assert len(outs) == 7 and len(ins) == 3
    assert all(p.caplen == 60 and p.wirelen == 20 + 20 + 8 + 100 for p in outs)
    assert all(p.data[:2] == b"\x08\x00" for p in got)  # the cooked header's protocol
    assert all("UDP 198.19.5.1:" in p.brief() and "> 198.19.5.2:9000" in p.brief() for p in outs)
    assert all("UDP 198.19.5.2:40000 > 198.19.5.1:9000" in p.brief() for p in ins)


def make_veth(net: netns.TestNet, name: str) -> None:
    """A spare veth pair in the capture namespace, `name`0 and `name`1, both up."""
    net.in_ns(net.cap_ns, "ip", "link", "add", f"{name}0", "type", "veth", "peer", "name", f"{name}1")
    for dev in (f"{name}0", f"{name}1"):
        net.in_ns(net.cap_ns, "ip", "link", "set", dev, "up")


def send_frames(net: netns.TestNet, dev: str, count: int) -> None:
    """Broadcast frames from 02:00:00:00:00:aa, of a local experimental ethertype, out of `dev`."""
    import socket

    frame = bytes.fromhex("ffffffffffff0200000000aa88b5") + b"flap" * 12
    with net.on_capture_side(), socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((dev, 0))
        for _ in range(count):
            s.send(frame)


def test_a_link_flap_is_lived_through_and_a_removed_interface_ends_the_capture(testnet):
    """Down and up again: the capture goes on (the kernel attaches the socket again) without spinning on
    the socket's error. Removed: the capture stops by itself and keeps what it has."""
    import resource

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    ns = testnet.cap_ns
    make_veth(testnet, "flap")
    cap = start(testnet, "flap0", filter="ethsrc 02:00:00:00:00:aa")
    try:
        send_frames(testnet, "flap1", 5)
        assert wait_until(lambda: cap.stats()["packets"] == 5), cap.stats()
        testnet.in_ns(ns, "ip", "link", "set", "flap0", "down")
        time.sleep(0.3)
        before = cpu()
        time.sleep(1.0)
        # A capture thread spinning on the socket's error would burn the whole second.
        assert cpu() - before < 0.5
        assert cap.stats()["state"] == "running"
        testnet.in_ns(ns, "ip", "link", "set", "flap0", "up")
        assert wait_until(lambda: "LOWER_UP" in testnet.link_details("flap0"))
        send_frames(testnet, "flap1", 5)
        assert wait_until(lambda: cap.stats()["packets"] == 10), cap.stats()
        testnet.in_ns(ns, "ip", "link", "del", "flap0")
        assert wait_until(lambda: cap.stats()["state"] == "stopped"), cap.stats()
        assert cap.stats()["stop_reason"] == "interface removed"
        assert len(list(cap)) == 10
    finally:
        cap.stop()


def test_an_interface_removed_while_down_ends_the_capture(testnet):
    # Going down raised the socket's one error; the removal that follows raises none.
    make_veth(testnet, "gone")
    cap = start(testnet, "gone0", filter="ethsrc 02:00:00:00:00:aa")
    try:
        send_frames(testnet, "gone1", 3)
        assert wait_until(lambda: cap.stats()["packets"] == 3), cap.stats()
        testnet.in_ns(testnet.cap_ns, "ip", "link", "set", "gone0", "down")
        time.sleep(0.5)
        assert cap.stats()["state"] == "running"
        testnet.in_ns(testnet.cap_ns, "ip", "link", "del", "gone0")
        assert wait_until(lambda: cap.stats()["state"] == "stopped"), cap.stats()
        assert (cap.stats()["stop_reason"], len(list(cap))) == ("interface removed", 3)
    finally:
        cap.stop()


def test_a_capture_writes_pcapng_with_its_name_filter_and_statistics(testnet, tmp_path):
    path = tmp_path / "one.pcapng"
    with start(testnet, filter="udp dstport 9000") as cap:
        testnet.send_udp(CAP_V4, 9000, 7)
        cap.stop()
        assert cap.write(str(path), format="pcapng") == 7
    info = subprocess.run(
        [need_tool("capinfos"), str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert "Name = int" in info and "Number of stat entries = 1" in info
    assert f"BPF filter length = {len(pcapdump.Filter('udp dstport 9000').bpf())}" in info
    rows = subprocess.run(
        [need_tool("tshark"), "-r", str(path), "-T", "fields", "-e", "frame.packet_flags_direction"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert rows == ["0x00000001"] * 7
    with pytest.raises(pcapdump.UsageError):
        cap.write(str(tmp_path / "x"), format="json")


def test_a_capture_with_a_duration_stops_by_itself(testnet):
    began = time.monotonic()
    with start(testnet, filter="udp", duration=1) as cap:
        assert cap.settings()["duration"] == 1.0
        assert wait_until(lambda: cap.stats()["state"] == "stopped", seconds=5)
        took = time.monotonic() - began
        assert cap.stats()["stop_reason"] == "duration"
    assert 1.0 <= took < 2.5, took
    with pytest.raises(pcapdump.UsageError):
        start(testnet, duration=0)


def test_a_trigger_in_the_python_api_stops_the_capture_after_its_post_roll(testnet):
    with start(testnet, filter="udp", trigger="udp dstport 9001", after=3) as cap:
        assert cap.settings()["trigger"] == "udp destport 9001" and cap.settings()["after"] == 3
        testnet.send_udp(CAP_V4, 9000, 10)
        assert cap.stats()["trigger"] is None
        testnet.send_udp(CAP_V4, 9001, 1)
        testnet.send_udp(CAP_V4, 9000, 10)
        assert wait_until(lambda: cap.stats()["state"] == "stopped", seconds=5)
        stats = cap.stats()
        got = list(cap)
    assert stats["stop_reason"] == "triggered"
    assert stats["trigger"]["index"] == 11 and stats["trigger"]["iface"] == "int"
    assert f"> {CAP_V4}:9001" in stats["trigger"]["brief"]
    assert len(got) == 10 + 1 + 3
    assert numbers(got[11:]) == [0, 1, 2]
    with pytest.raises(pcapdump.UsageError):
        start(testnet, trigger="udp", after=10_000_001)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"trigger": "udp", "after": -1}, "after=-1: expected 0…"),
        ({"trigger": ""}, "expected filter words"),
        ({"trigger": []}, "expected filter words"),
        ({"after": 3}, "applies only with a trigger"),
    ],
)
def test_trigger_mistakes_in_the_python_api_are_usage_errors(kwargs, needle):
    # Refused before any socket is opened: no privilege or interface needed.
    with pytest.raises(pcapdump.UsageError) as bad:
        pcapdump.capture("nosuch0", **kwargs)
    assert needle in str(bad.value)


def test_trigger_words_of_the_wrong_type_name_the_trigger():
    with pytest.raises(TypeError, match=r"^trigger=b'udp': expected filter words"):
        pcapdump.capture("nosuch0", trigger=b"udp")
