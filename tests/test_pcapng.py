"""pcapng as we write it (docs/commands.md#pcapng-the-gateway-view), judged by Wireshark's tools: every
field of random packets from several interfaces and directions reads back the same through our reader and
through tshark; editcap and mergecap take the files as they are."""

from __future__ import annotations

import random
import subprocess

import pcapdump
import pytest
from conftest import need_tool
from pcapdump.errors import UsageError

pytestmark = pytest.mark.portable

NAMES = ["int", "ext", "wg0", "eth1.100"]


def random_packets(seed: int) -> list[pcapdump.Packet]:
    rng = random.Random(seed)
    ts = 1_795_767_767_000_000_000 + rng.randrange(10**12)
    packets = []
    for _ in range(rng.randrange(1, 60)):
        ts += rng.randrange(0, 5_000_000)
        data = rng.randbytes(rng.randrange(0, 1600))
        packets.append(
            pcapdump.Packet(
                ts,
                data,
                wirelen=len(data) + rng.choice([0, 0, 4, 1000]),
                iface=rng.choice(NAMES),
                direction=rng.choice(["in", "out", None]),
            )
        )
    return packets


def tshark_rows(path) -> list[tuple[str, ...]]:
    fields = [
        "frame.interface_name",
        "frame.packet_flags_direction",
        "frame.time_epoch",
        "frame.cap_len",
        "frame.len",
    ]
    args = [need_tool("tshark"), "-r", str(path), "-T", "fields", "-E", "occurrence=f"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [tuple(line.split("\t")) for line in out.splitlines()]


@pytest.mark.parametrize("seed", range(12))
def test_random_packets_read_back_the_same_through_us_and_tshark(seed, tmp_path):
    packets = random_packets(seed)
    path = tmp_path / "random.pcapng"
    # Link type 147 (a user type): no dissector reads into the random bytes.
    packets = [
        pcapdump.Packet(
            p.ts_ns, p.data, wirelen=p.wirelen, iface=p.iface, direction=p.direction, linktype=147
        )
        for p in packets
    ]
    assert pcapdump.write(path, packets, format="pcapng") == len(packets)
    ours = list(pcapdump.read(path))
    assert [(p.ts_ns, p.data, p.wirelen, p.iface, p.direction) for p in ours] == [
        (p.ts_ns, p.data, p.wirelen, p.iface, p.direction) for p in packets
    ]
    flags = {"in": "0x00000001", "out": "0x00000002", None: ""}  # no direction: no epb_flags
    theirs = tshark_rows(path)
    assert len(theirs) == len(packets)
    for p, row in zip(packets, theirs, strict=True):
        name, direction, epoch, caplen, wirelen = row
        assert (name, direction) == (p.iface, flags[p.direction])
        secs, _, frac = epoch.partition(".")
        assert int(secs) * 10**9 + int(frac.ljust(9, "0")) == p.ts_ns
        assert (int(caplen), int(wirelen)) == (len(p.data), p.wirelen)


def test_editcap_and_mergecap_take_our_files(tmp_path):
    a, b = tmp_path / "a.pcapng", tmp_path / "b.pcapng"
    pcapdump.write(a, random_packets(1), format="pcapng")
    pcapdump.write(b, random_packets(2), format="pcapng")
    converted, merged = tmp_path / "c.pcapng", tmp_path / "m.pcapng"
    subprocess.run([need_tool("editcap"), "-F", "pcapng", str(a), str(converted)], check=True)
    subprocess.run([need_tool("mergecap"), "-w", str(merged), str(a), str(b)], check=True)
    assert len(list(pcapdump.read(converted))) == len(random_packets(1))
    assert len(list(pcapdump.read(merged))) == len(random_packets(1)) + len(random_packets(2))


def test_pairs_belong_to_one_unnamed_interface_and_a_bad_format_is_named(tmp_path):
    path = tmp_path / "pairs.pcapng"
    assert pcapdump.write(path, [(1, b"\x00" * 60), (2, b"\x01" * 60)], format="pcapng") == 2
    info = subprocess.run(
        [need_tool("capinfos"), str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert "Number of interfaces in file: 1" in info
    with pytest.raises(UsageError) as e:
        pcapdump.write(tmp_path / "x", [], format="pcapnx")  # type: ignore[arg-type]
    assert "format='pcapnx'" in str(e.value)
    assert not (tmp_path / "x").exists()
