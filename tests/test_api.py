"""The Python surface (docs/python.md) and the `read` command's output, as a user meets them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pcapdump
import pytest
from conftest import run_pcapdump
from pcapdump import grammar
from scapy.all import IP, TCP, Ether  # type: ignore[import-untyped]

pytestmark = pytest.mark.portable

SYN = bytes(
    Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    / IP(src="198.18.0.1", dst="198.18.0.2")
    / TCP(sport=40000, dport=80, flags="S", seq=0, window=64240)
)


def test_filter_matches_and_prints_its_canonical_form():
    f = pcapdump.Filter("-ipsrc=198.18.0.1 tcp destport 80")
    assert str(f) == "ipsrc 198.18.0.1 tcp destport 80"
    assert f.matches(SYN)
    assert not pcapdump.Filter("ipsrc 198.18.0.2").matches(SYN)
    assert pcapdump.Filter(["ipsrc", "198.18.0.1"]) == pcapdump.Filter("ipsrc 198.18.0.1")


def test_bpf_has_the_tcpdump_dd_shape_and_cuts_to_the_snap_length():
    prog = pcapdump.Filter("tcp").bpf(96)
    assert all(isinstance(x, int) for insn in prog for x in insn) and all(len(i) == 4 for i in prog)
    assert prog[-2] == (0x06, 0, 0, 96) and prog[-1] == (0x06, 0, 0, 0)
    assert pcapdump.Filter("tcp").run_bpf(SYN, snaplen=96) == 96


def test_kernel_stripped_vlan_tags_are_honoured():
    f = pcapdump.Filter("vlan 5 ipsrc 198.18.0.1")
    assert not f.matches(SYN)
    assert f.matches(SYN, vlan_tci=0x2005)
    assert f.run_bpf(SYN, vlan_tci=5) > 0


def test_packet_fields_and_brief_line():
    p = pcapdump.Packet(1_700_000_000_123_456_000, SYN, iface="int", direction="in", index=12)
    assert (p.caplen, p.wirelen, p.iface, p.direction, p.linktype) == (len(SYN), len(SYN), "int", "in", 1)
    assert p.brief().endswith(" int in  TCP 198.18.0.1:40000 > 198.18.0.2:80 [S] seq=0 win=64240 len=0")
    obj = json.loads(p.json())
    assert set(obj) == {
        "index",
        "ts_ns",
        "iface",
        "dir",
        "caplen",
        "wirelen",
        "eth_src",
        "eth_dst",
        "vlan",
        "proto",
        "src",
        "dst",
        "sport",
        "dport",
        "ip_proto",
        "tcp_flags",
        "truncated",
        "info",
    }
    assert (obj["proto"], obj["sport"], obj["dport"], obj["eth_src"]) == (
        "TCP",
        40000,
        80,
        "02:00:00:00:00:01",
    )


def test_read_with_filter_snaplen_and_count(corpus_file):
    every = list(pcapdump.read(corpus_file, filter="udp"))
    assert every and all(
        "UDP" in p.brief() or "fragment" in p.brief() or "[truncated]" in p.brief() for p in every
    )
    first = list(pcapdump.read(corpus_file, filter=pcapdump.Filter("udp"), snaplen=30, count=3))
    assert [p.index for p in first] == [p.index for p in every[:3]]
    assert all(p.caplen <= 30 for p in first)


def test_read_prints_brief_lines_in_both_spellings(corpus_file):
    classic = run_pcapdump("read", str(corpus_file), "ipsrc", "198.18.0.1", "tcp", "-c", "2")
    newer = run_pcapdump(f"-read={corpus_file}", "-ipsrc=198.18.0.1", "-tcp", "-c=2")
    assert classic.returncode == 0 and classic.stdout == newer.stdout
    lines = classic.stdout.splitlines()
    assert len(lines) == 2 and all(" TCP 198.18.0.1:" in line for line in lines)
    assert lines[0].split()[1].endswith(".123456")


def test_read_json_lines(corpus_file):
    done = run_pcapdump("read", str(corpus_file), "arp", "-json")
    objs = [json.loads(line) for line in done.stdout.splitlines()]
    assert objs and all(o["proto"] == "ARP" for o in objs)


def test_version_and_help():
    done = run_pcapdump("--version")
    assert done.returncode == 0 and done.stdout.startswith(f"pcapdump {pcapdump.__version__} (engine ")
    helped = run_pcapdump("--help")
    assert "Filter words" in helped.stdout and "Examples" in helped.stdout
    assert helped.stdout.count("Usage:") == 1 and "--version" in helped.stdout
    assert "\b" not in helped.stdout


@pytest.mark.parametrize(
    "words",
    [
        ("help", "start"),
        ("start", "--help"),
        ("-h", "start"),
        ("ipsrc", "198.18.0.1", "-start=int", "--help"),
    ],
)
def test_one_commands_help(words):
    done = run_pcapdump(*words)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Usage: pcapdump [options] [filter words] start [<if>]"
    assert done.stdout.count("Usage:") == 1
    assert "  -size <KB>" in done.stdout and "  -w <out>" not in done.stdout  # start's options only
    assert lines[-2:] == ["Example:", "  pcapdump -size 1024 ipsrc 198.18.0.1 tcp not port 22 start int"]


@pytest.mark.parametrize("name", [n for n in grammar.COMMANDS if n != "help"])
def test_every_command_has_help_with_an_example_that_parses(name):
    done = run_pcapdump("help", name)
    assert done.returncode == 0 and done.stdout.startswith("Usage: pcapdump")
    example = done.stdout.splitlines()[-1].split()
    assert example[0] == "pcapdump"
    grammar.parse(example[1:])


@pytest.mark.parametrize(
    "words, message",
    [
        (
            ("start", "int", "ext"),
            "'ext': not a filter word, and start takes at most one interface (usage: start [<if>])",
        ),
        (("status", "extra"), "'extra': status takes no argument (usage: status)"),
        (
            ("write", "int", "a.cap", "b"),
            "'b': write takes one interface list (int, int,ext or all) and one file "
            "(usage: write <if>[,<if>…]|all <file>)",
        ),
        (("help", "bogus"), "'bogus': not a command (expected one of "),
    ],
)
def test_an_extra_argument_says_what_the_command_takes(words, message):
    done = run_pcapdump(*words)
    assert done.returncode == 2 and done.stderr.startswith(f"pcapdump: {message}")
    assert len(done.stderr.splitlines()) == 1


def test_filter_errors_carry_message_and_token_as_the_readme_says():
    with pytest.raises(pcapdump.FilterError) as e:
        pcapdump.Filter("vlan 9999")
    message, token = e.value.args
    assert token == "vlan 9999" and message == str(e.value)


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX shell and head")
def test_output_into_a_closed_pipe_is_quiet(corpus_file):
    proc = subprocess.run(
        f"'{sys.executable}' -m pcapdump.cli read '{corpus_file}' | head -1",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.stderr == ""


def test_the_package_type_checks_strictly():
    source = Path(__file__).resolve().parent.parent / "python" / "pcapdump"
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", str(source)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_stubs_match_the_extension_module():
    done = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "pcapdump._core"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("text", ["192.168.0.1", "10.0.0.1"])
def test_spec_literal_values_are_accepted(text):
    assert str(pcapdump.Filter(f"ipsrc {text} proto 103")) == f"ipsrc {text} proto 103"
