"""Conversations and policies from files and packets: counts equal tshark's, states follow the packets,
rulesets load in the kernel as printed, and bad input is one line naming the culprit."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import warnings
from collections import Counter
from pathlib import Path

import pcapdump
import pytest
from conftest import run_pcapdump
from scapy.all import ICMP, IP, TCP, UDP, Dot1Q, Ether, IPv6, Raw  # type: ignore[import-untyped]
from scapy.utils import RawPcapWriter  # type: ignore[import-untyped]
from session import one_line_error

BASE_S = 1_790_000_000
CLIENTS = ["198.18.1.2", "198.18.1.3", "198.18.1.4"]
SERVERS = ["198.18.2.2", "198.18.2.3"]
CLIENTS6 = ["2001:db8:1::2", "2001:db8:1::3"]
SERVERS6 = ["2001:db8:2::2"]


def write_frames(path: Path, frames: list[bytes]) -> Path:
    with RawPcapWriter(str(path), linktype=1, snaplen=262144) as w:
        w.write_header(None)
        for i, f in enumerate(frames):
            w.write_packet(f, sec=BASE_S + i // 1000, usec=(i % 1000) * 1000, caplen=len(f), wirelen=len(f))
    return path


def eth(net: object) -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / net)


def tcp_flow(rng: random.Random, c: str, s: str, cport: int, sport: int, v6: bool = False) -> list[bytes]:
    """A whole TCP connection: handshake, data both ways in random sizes, FIN each way."""
    ip = IPv6 if v6 else IP

    def seg(to_server: bool, flags: str, size: int = 0) -> bytes:
        src, dst, sp, dp = (c, s, cport, sport) if to_server else (s, c, sport, cport)
        return eth(ip(src=src, dst=dst) / TCP(sport=sp, dport=dp, flags=flags) / Raw(b"d" * size))

    out = [seg(True, "S"), seg(False, "SA"), seg(True, "A")]
    for _ in range(rng.randrange(1, 30)):
        out.append(seg(rng.random() < 0.4, "PA", rng.randrange(1, 1400)))
    out += [seg(True, "FA"), seg(False, "FA"), seg(True, "A")]
    return out


def udp_flow(rng: random.Random, c: str, s: str, cport: int, sport: int, answered: bool) -> list[bytes]:
    ip = IPv6 if ":" in c else IP
    out = []
    for _ in range(rng.randrange(1, 12)):
        out.append(eth(ip(src=c, dst=s) / UDP(sport=cport, dport=sport) / Raw(b"q" * rng.randrange(0, 900))))
        if answered:
            out.append(
                eth(ip(src=s, dst=c) / UDP(sport=sport, dport=cport) / Raw(b"a" * rng.randrange(0, 1400)))
            )
    return out


def interleave(rng: random.Random, flows: list[list[bytes]]) -> list[bytes]:
    """The flows' packets mixed at random, each flow's own order kept."""
    queues = [list(f) for f in flows]
    out = []
    while queues:
        q = rng.choice(queues)
        out.append(q.pop(0))
        if not q:
            queues.remove(q)
    return out


@pytest.fixture(scope="module")
def multi_flow_file(tmp_path_factory) -> Path:
    rng = random.Random(17)
    flows = []
    for i in range(40):
        c, s = rng.choice(CLIENTS), rng.choice(SERVERS)
        flows.append(tcp_flow(rng, c, s, 40000 + i, rng.choice([9100, 443, 22])))
    for i in range(6):
        flows.append(tcp_flow(rng, CLIENTS6[i % 2], SERVERS6[0], 41000 + i, 443, v6=True))
    for i in range(30):
        c, s = rng.choice(CLIENTS + CLIENTS6), None
        s = rng.choice(SERVERS6 if ":" in c else SERVERS)
        flows.append(udp_flow(rng, c, s, 50000 + i, rng.choice([53, 161, 123]), answered=rng.random() < 0.7))
    path = tmp_path_factory.mktemp("conv") / "multi.pcap"
    return write_frames(path, interleave(rng, flows))


def tshark_conversations(path: Path, proto: str) -> dict[tuple[str, str], tuple[int, int]]:
    """{(endpoint a, endpoint b): (frames a→b, frames b→a)} from `tshark -q -z conv,<proto>`."""
    done = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-q", "-z", f"conv,{proto}"],
        capture_output=True,
        text=True,
        check=True,
    )
    row = re.compile(r"^(\S+)\s+<->\s+(\S+)\s+(\d+)\s+\S+\s+\S+\s+(\d+)\s+\S+\s+\S+\s+\d+")
    out = {}
    for line in done.stdout.splitlines():
        m = row.match(line)
        if m:
            a, b, b_to_a, a_to_b = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
            out[(a, b)] = (a_to_b, b_to_a)
    return out


def tshark_bytes(path: Path) -> Counter[tuple[str, str]]:
    """Bytes on the wire per direction of each TCP/UDP 5-tuple, as tshark dissects the frames."""
    fields = ["ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport", "udp.srcport", "tcp.dstport"]
    fields += ["udp.dstport", "frame.len"]
    done = subprocess.run(
        [
            "tshark",
            "-n",
            "-r",
            str(path),
            "-T",
            "fields",
            "-E",
            "separator=|",
            *(f"-e{f}" for f in fields),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    out: Counter[tuple[str, str]] = Counter()
    for line in done.stdout.splitlines():
        s4, s6, d4, d6, ts, us, td, ud, length = line.split("|")
        out[(endpoint(s4 or s6, int(ts or us)), endpoint(d4 or d6, int(td or ud)))] += int(length)
    return out


def endpoint(addr: str, port: int | None) -> str:
    if port is None:
        return addr
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def tshark_endpoint(text: str) -> str:
    """tshark writes IPv6 endpoints as `2001:db8::2:443`: the last colon starts the port."""
    addr, _, port = text.rpartition(":")
    return endpoint(addr, int(port))


def test_packet_and_byte_counts_equal_tshark(multi_flow_file):
    convs = pcapdump.conversations(multi_flow_file)
    ours = {}
    for c in convs:
        ours[(endpoint(c.client, c.client_port), endpoint(c.server, c.server_port))] = c
    theirs = {}
    for proto in ("tcp", "udp"):
        for (a, b), counts in tshark_conversations(multi_flow_file, proto).items():
            theirs[(tshark_endpoint(a), tshark_endpoint(b))] = counts
    assert len(ours) == len(theirs) == 76
    wire = tshark_bytes(multi_flow_file)
    for (a, b), (a_to_b, b_to_a) in theirs.items():
        c = ours.get((a, b)) or ours.get((b, a))
        assert c is not None, (a, b)
        to_server, to_client = (
            (a_to_b, b_to_a) if c.client_port == int(a.rpartition(":")[2]) else (b_to_a, a_to_b)
        )
        assert (c.packets_to_server, c.packets_to_client) == (to_server, to_client), c
        ends = (endpoint(c.client, c.client_port), endpoint(c.server, c.server_port))
        assert (c.bytes_to_server, c.bytes_to_client) == (wire[ends], wire[ends[::-1]]), c
    # The command prints the same counts.
    lines = run_pcapdump("read", str(multi_flow_file), "-conv", "-json").stdout.splitlines()
    assert [json.loads(line) for line in lines] == [c.to_dict() for c in convs]


def test_states_and_clients_of_the_multi_flow_file(multi_flow_file):
    convs = pcapdump.conversations(multi_flow_file)
    tcp = [c for c in convs if c.proto == "TCP"]
    assert {c.state for c in tcp} == {"closed"}
    assert all(c.client in CLIENTS + CLIENTS6 and c.server_port in (9100, 443, 22) for c in tcp)
    udp = [c for c in convs if c.proto == "UDP"]
    assert {c.state for c in udp} == {"answered", "unanswered"}
    assert all((c.state == "answered") == (c.packets_to_client > 0) for c in udp)
    # Biggest first.
    sizes = [c.bytes for c in convs]
    assert sizes == sorted(sizes, reverse=True)


def test_filter_words_narrow_the_packets_first(multi_flow_file):
    every = pcapdump.conversations(multi_flow_file)
    only = pcapdump.conversations(multi_flow_file, filter="udp port 161")
    assert only and {c.server_port for c in only} == {161}
    assert only == [c for c in every if c.server_port == 161 and c.proto == "UDP"]
    # One direction only: the servers' answers are filtered out, so nothing is answered.
    one_way = pcapdump.conversations(multi_flow_file, filter="udp destport 161")
    assert {c.state for c in one_way} == {"unanswered"}
    table = run_pcapdump("read", str(multi_flow_file), "-conv", "udp", "port", "161")
    assert table.returncode == 0, table
    assert table.stdout.splitlines()[0].split()[:2] == ["proto", "client"]
    assert table.stdout.rstrip().endswith(f"{len(only)} conversations")


def icmp_error_about(probe: IP, kind: int = 3, sender: str | None = None) -> bytes:
    return eth(IP(src=sender or probe.dst, dst=probe.src) / ICMP(type=kind, code=3) / bytes(probe))


def test_states_from_the_wire(tmp_path):
    c, s = "198.18.1.2", "198.18.2.2"
    probe = IP(src=c, dst=s) / UDP(sport=40001, dport=162) / Raw(b"x")
    frames = [
        eth(IP(src=c, dst=s) / TCP(sport=40000, dport=9100, flags="S")),
        eth(IP(src=s, dst=c) / TCP(sport=9100, dport=40000, flags="SA")),
        eth(IP(src=c, dst=s) / TCP(sport=40002, dport=23, flags="S")),
        eth(IP(src=s, dst=c) / TCP(sport=23, dport=40002, flags="RA")),
        eth(IP(src=c, dst=s) / TCP(sport=40003, dport=25, flags="S")),
        eth(probe),
        icmp_error_about(probe),
        eth(IP(src=c, dst=s) / ICMP(type=8, id=7) / Raw(b"ping")),
        eth(IP(src=s, dst=c) / ICMP(type=0, id=7) / Raw(b"ping")),
        eth(IP(src=c, dst=s) / UDP(sport=40004, dport=514)),
        eth(IP(src=c, dst=s) / ICMP(type=13)),
        eth(IP(src=s, dst=c) / ICMP(type=14)),
    ]
    path = write_frames(tmp_path / "s.pcap", frames)
    convs = pcapdump.conversations(path)
    # The engine's rows are the typed conversations' fields, in order, and what the agent sends of
    # them (JSON) reads back the same.
    assert list(pcapdump.Conversation._fields) == pcapdump._core.CONVERSATION_FIELDS
    rows = pcapdump._core.file_conversations(str(path))["conversations"]
    as_json = [
        json.loads(json.dumps(dict(zip(pcapdump._core.CONVERSATION_FIELDS, r, strict=True)))) for r in rows
    ]
    assert [pcapdump.Conversation.from_dict(d) for d in as_json] == pcapdump.conversations(path)
    got = {(c.proto, c.server_port or c.echo_id): c.state for c in convs}
    assert got == {
        ("TCP", 9100): "established",
        ("TCP", 23): "refused",
        ("TCP", 25): "unanswered",
        ("UDP", 162): "refused",
        ("ICMP", 7): "answered",
        ("UDP", 514): "unanswered",
        ("ICMP", None): "answered",
    }
    stamps = next(c for c in convs if c.kind == "pair")
    assert stamps.icmp_types == (13,)
    refused_udp = next(c for c in convs if c.server_port == 162)
    assert (refused_udp.icmp_errors, refused_udp.packets) == (1, 1)


def unshared(*cmd: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`cmd` in a network namespace of its own: a ruleset checked by the kernel touches no one else's."""
    if os.geteuid() != 0 and os.environ.get("CI") != "true":
        pytest.skip("loading a ruleset needs root")
    return subprocess.run(
        ["unshare", "--net", *cmd], input=stdin, capture_output=True, text=True, check=False
    )


def needs(tool: str) -> None:
    if shutil.which(tool) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is not installed (.ci/run installs it)")
        pytest.skip(f"{tool} is not installed")


@pytest.mark.parametrize("fmt", ["nft", "iptables", "ip6tables"])
def test_rulesets_load_as_printed(multi_flow_file, fmt):
    tool = {"nft": "nft", "iptables": "iptables-restore", "ip6tables": "ip6tables-restore"}[fmt]
    needs(tool)
    done = run_pcapdump("read", str(multi_flow_file), "-policy", "-format", fmt)
    assert done.returncode == 0, done
    text = done.stdout
    args = ["nft", "-f", "-"] if fmt == "nft" else [tool]
    loaded = unshared(*args, stdin=text)
    assert loaded.returncode == 0, (loaded.stderr, text)
    # Each answered conversation makes a rule (merged by server port: client ports are never pinned).
    convs = pcapdump.conversations(multi_flow_file)
    family = {"nft": (4, 6), "iptables": (4,), "ip6tables": (6,)}[fmt]
    wanted = {(c.client, c.server, c.server_port) for c in convs if c.answered and c.family in family}
    accepts = [line for line in text.splitlines() if re.search(r"(accept|ACCEPT)", line) and "dport" in line]
    assert len(accepts) == len(wanted)
    for client, server, port in wanted:
        assert any(client in a and server in a and f"dport {port} " in a for a in accepts), (client, server)
    assert all("conversation" in a and "packets" in a and "first" in a for a in accepts)
    # The unanswered ones are listed, never allowed.
    silent = [c for c in convs if not c.answered and c.family in family]
    assert silent
    for c in silent:
        # Unless a rule lets that port through all the same (another conversation to it was answered).
        same = [
            a for a in convs if (a.client, a.server, a.server_port) == (c.client, c.server, c.server_port)
        ]
        covered = any(a.answered for a in same)
        assert (f"unanswered  {c.proto} {c.endpoints()}" in text) != covered, c
    # The header counts the rules this ruleset holds.
    assert f": {len(wanted)} rule(s) allow" in text.splitlines()[0]
    # Printed again: the same text; the format's word in any case.
    again = run_pcapdump("read", str(multi_flow_file), "-policy", f"-format={fmt.upper()}")
    assert again.stdout == text


def test_nothing_answered_is_a_drop_all_ruleset_and_a_warning(tmp_path):
    needs("nft")
    frames = [eth(IP(src="198.18.1.2", dst="198.18.2.2") / UDP(sport=40000, dport=514))]
    path = write_frames(tmp_path / "silent.pcap", frames)
    done = run_pcapdump("read", str(path), "-policy")
    assert done.returncode == 0
    assert "no answered conversation" in done.stderr and "Traceback" not in done.stderr
    assert "policy drop" in done.stdout and " dport " not in done.stdout
    loaded = unshared("nft", "-f", "-", stdin=done.stdout)
    assert loaded.returncode == 0, loaded.stderr


def test_interface_names_from_a_file_never_break_the_ruleset(tmp_path):
    needs("nft")
    c, s = "198.18.1.2", "198.18.2.2"
    hostile = 'int" accept\n#'
    packets = []
    for iface in ("int", hostile):
        for i, (src, dst, sp, dp, flags) in enumerate([(c, s, 40000, 9100, "S"), (s, c, 9100, 40000, "SA")]):
            frame = eth(IP(src=src, dst=dst) / TCP(sport=sp, dport=dp, flags=flags))
            direction = "in" if src == c else "out"
            packets.append(pcapdump.Packet(BASE_S * 10**9 + i, frame, iface=iface, direction=direction))
    path = tmp_path / "names.pcapng"
    pcapdump.write(path, packets, format="pcapng")
    done = run_pcapdump("read", str(path), "-policy")
    assert done.returncode == 0, done
    rules = sorted(line.strip() for line in done.stdout.splitlines() if "dport 9100" in line)
    assert len(rules) == 2
    assert rules[0].startswith(
        'iifname "int" ip saddr 198.18.1.2 ip daddr 198.18.2.2 tcp dport 9100 counter accept'
    )
    assert rules[1].startswith("ip saddr 198.18.1.2")  # the forged name is in no rule
    assert "1 rule(s) name no input interface" in done.stderr
    assert unshared("nft", "-f", "-", stdin=done.stdout).returncode == 0
    # Nor in the comments of what is not allowed, nor in the table.
    frame = eth(IP(src=c, dst=s) / UDP(sport=1, dport=2))
    silent = [pcapdump.Packet(BASE_S * 10**9, frame, iface=hostile, direction="in")]
    pcapdump.write(tmp_path / "silent.pcapng", silent + packets[:1], format="pcapng")
    with pytest.warns(UserWarning):
        text = pcapdump.policy(tmp_path / "silent.pcapng")
    assert all(line.startswith(("#", "table", "delete", "\t", "}")) for line in text.splitlines()), text
    assert unshared("nft", "-f", "-", stdin=text).returncode == 0
    table = run_pcapdump("read", str(tmp_path / "silent.pcapng"), "-conv").stdout
    assert "\n#" not in table and 'int" accept?#' in table
    # Nor can a file name end the header's comment.
    odd = tmp_path / "a\nflush ruleset"
    odd.write_bytes(path.read_bytes())
    text = run_pcapdump("read", str(odd), "-policy").stdout
    assert "\nflush ruleset" not in text


def test_python_api(multi_flow_file, tmp_path):
    convs = pcapdump.conversations(multi_flow_file)
    assert all(isinstance(c, pcapdump.Conversation) for c in convs)
    assert pcapdump.conversations(os.fspath(multi_flow_file)) == convs
    assert pcapdump.conversations(pcapdump.read(multi_flow_file)) == convs
    pairs = [(p.ts_ns, p.data) for p in pcapdump.read(multi_flow_file)]
    assert pcapdump.conversations(pairs) == convs
    assert pcapdump.conversations(multi_flow_file, count=1)[0].packets == 1
    first = convs[0]
    assert first.packets == first.packets_to_server + first.packets_to_client
    assert pcapdump.Conversation.from_dict(first.to_dict()) == first
    with pytest.warns(UserWarning, match="name no input interface"):
        text = pcapdump.policy(multi_flow_file)
    with pytest.warns(UserWarning):
        again = pcapdump.policy(convs)
    assert text == again.replace("from conversations", f"from {multi_flow_file}")
    with pytest.warns(UserWarning):
        assert "*filter" in pcapdump.policy(convs, format="iptables")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        pcapdump.policy([c for c in convs if not c.answered])
    assert any("no answered conversation" in str(w.message) for w in said)
    with pytest.raises(pcapdump.UsageError, match="format='pf'"):
        pcapdump.policy(convs, format="pf")
    with pytest.raises(TypeError, match="expected Packet"):
        pcapdump.conversations([b"not a packet"])
    with pytest.raises(TypeError, match="apply to a file"):
        pcapdump.conversations(pairs, filter="tcp")
    with pytest.raises(pcapdump.CaptureFileError):
        pcapdump.conversations(tmp_path / "missing.pcap")


@pytest.mark.parametrize(
    ("words", "named"),
    [
        (["-policy", "-format", "pf"], "-format pf"),
        (["-policy", "-format=pf"], "-format=pf"),
        (["-policy", "-w", "out.pcap"], "-w out.pcap"),
        (["-conv", "-policy"], "-policy"),
        (["-format", "nft"], "-format nft"),
        (["-policy", "-json"], "-json"),
        (["-policy", "-utc"], "-utc"),
    ],
)
def test_bad_read_options_are_usage_errors(multi_flow_file, tmp_path, words, named):
    done = run_pcapdump("read", str(multi_flow_file), *words)
    one_line_error(done, 2, f"'{named}'")
    assert not (Path.cwd() / "out.pcap").exists()


@pytest.mark.parametrize(
    ("words", "named"),
    [
        (["conv", "-format", "nft"], "-format nft"),
        (["policy", "-json"], "-json"),
        (["policy", "-format", "ipfw"], "-format ipfw"),
        (["conv", "int/x"], "int/x"),
        (["conv", "port", "70000"], "port 70000"),
    ],
)
def test_bad_conv_and_policy_words_are_usage_errors(words, named):
    one_line_error(run_pcapdump(*words), 2, named)


def test_conv_and_policy_without_an_agent_fail_instead_of_dropping_everything(tmp_path):
    env = {"PCAPDUMP_HOME": str(tmp_path / "home")}
    for words in (["conv"], ["policy"], ["policy", "-format", "iptables"]):
        done = run_pcapdump(*words, env=env)
        one_line_error(done, 1, "no agent")
        assert done.stdout == ""
    assert not (tmp_path / "home" / "agent.sock").exists()


def test_a_gateway_recorded_on_both_sides_makes_one_rule_per_conversation(tmp_path):
    c, s = "198.18.1.2", "198.18.2.2"
    packets = []
    for iface, client_dir in (("int", "in"), ("ext", "out")):
        for i, (src, dst, sp, dp, flags) in enumerate([(c, s, 40000, 443, "S"), (s, c, 443, 40000, "SA")]):
            direction = client_dir if src == c else ("out" if client_dir == "in" else "in")
            frame = eth(IP(src=src, dst=dst) / TCP(sport=sp, dport=dp, flags=flags))
            packets.append(pcapdump.Packet(BASE_S * 10**9 + i, frame, iface=iface, direction=direction))
    convs = pcapdump.conversations(packets)
    assert sorted((x.iface, x.client_dir) for x in convs) == [("ext", "out"), ("int", "in")]
    rules = [line for line in pcapdump.policy(convs).splitlines() if "dport 443" in line]
    assert len(rules) == 1 and 'iifname "int"' in rules[0], rules


def test_vlan_tagged_traffic_names_no_input_interface(tmp_path):
    c, s = "198.18.1.2", "198.18.2.2"
    packets = []
    for i, (src, dst, sp, dp) in enumerate([(c, s, 40000, 53), (s, c, 53, 40000)]):
        frame = bytes(
            Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
            / Dot1Q(vlan=10)
            / IP(src=src, dst=dst)
            / UDP(sport=sp, dport=dp)
        )
        direction = "in" if src == c else "out"
        packets.append(pcapdump.Packet(BASE_S * 10**9 + i, frame, iface="int", direction=direction))
    with pytest.warns(UserWarning, match="VLAN"):
        text = pcapdump.policy(packets)
    (rule,) = [line.strip() for line in text.splitlines() if "dport 53" in line]
    assert rule.startswith("ip saddr 198.18.1.2 ip daddr 198.18.2.2 udp dport 53 counter accept"), rule


def test_neighbour_discovery_and_repeated_attempts_do_not_clutter_the_ruleset():
    from scapy.all import ICMPv6ND_NA, ICMPv6ND_NS  # type: ignore[import-untyped]

    c6, gw6 = "2001:db8:1::2", "2001:db8:1::1"
    frames = [
        (eth(IPv6(src=c6, dst=gw6) / ICMPv6ND_NS(tgt=gw6)), "int", "in"),
        (eth(IPv6(src=gw6, dst=c6) / ICMPv6ND_NA(tgt=gw6)), "int", "out"),
    ]
    # One refused attempt recorded on both sides of a gateway.
    syn = eth(IP(src="198.18.1.2", dst="198.18.2.2") / TCP(sport=40000, dport=23, flags="S"))
    rst = eth(IP(src="198.18.2.2", dst="198.18.1.2") / TCP(sport=23, dport=40000, flags="RA"))
    frames += [(syn, "int", "in"), (syn, "ext", "out"), (rst, "ext", "in"), (rst, "int", "out")]
    packets = [
        pcapdump.Packet(BASE_S * 10**9 + i, f, iface=n, direction=d) for i, (f, n, d) in enumerate(frames)
    ]
    with pytest.warns(UserWarning, match="no answered conversation"):
        text = pcapdump.policy(packets)
    assert "icmpv6 type { nd-router-solicit" in text  # the input chain takes them
    assert "135" not in text and "ICMP6" not in text
    assert text.count("#   refused") == 1


def test_the_warning_says_why_a_rule_names_no_interface(tmp_path):
    c, s = "198.18.1.2", "198.18.2.2"
    frames = [(c, s, 40000, 443, "S", "out"), (s, c, 443, 40000, "SA", "in")]
    packets = [
        pcapdump.Packet(
            BASE_S * 10**9 + i,
            eth(IP(src=src, dst=dst) / TCP(sport=sp, dport=dp, flags=fl)),
            iface="ext",
            direction=d,
        )
        for i, (src, dst, sp, dp, fl, d) in enumerate(frames)
    ]
    with pytest.warns(UserWarning, match="seen leaving the capture interface"):
        pcapdump.policy(packets)
    with pytest.warns(UserWarning, match="does not say which way"):
        pcapdump.policy([(p.ts_ns, p.data) for p in packets])


def test_conversations_handed_in_are_checked_before_any_ruleset_is_made(multi_flow_file):
    (good,) = [c for c in pcapdump.conversations(multi_flow_file) if c.answered][:1]
    forged = {
        "server_port": "9100 accept\n\t\tip saddr 0.0.0.0/0 accept #",
        "state": "refused\nadd rule inet pcapdump input accept\n#",
        "client": "0.0.0.0/0",
        "ip_proto": 300,
        "kind": "any",
        "icmp_types": ("8 accept",),
    }
    for field, value in forged.items():
        with pytest.raises(ValueError, match=f"conversation 0: {field}="):
            pcapdump.policy([good._replace(**{field: value})])
    # A protocol name is free text: it reaches the comments only, on one line.
    silent = good._replace(state="unanswered", proto="TCP\nflush ruleset", server_port=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = pcapdump.policy([silent, good])
    assert "\nflush ruleset" not in text


def test_protocols_a_ruleset_cannot_match_exactly_make_no_rule_or_a_plain_one(tmp_path):
    needs("iptables-restore")
    needs("ip6tables-restore")
    c, s, c6, s6 = "198.18.1.2", "198.18.2.2", "2001:db8:1::2", "2001:db8:2::2"
    frames = [
        eth(IP(src=c, dst=s, proto=0) / Raw(b"x" * 8)),  # iptables reads -p 0 as every protocol
        eth(IP(src=s, dst=c, proto=0) / Raw(b"y" * 8)),
        eth(IPv6(src=c6, dst=s6, nh=1) / ICMP(type=8, id=9)),  # ICMP in IPv6: just protocol 1
        eth(IPv6(src=s6, dst=c6, nh=1) / ICMP(type=0, id=9)),
        eth(IP(src=c, dst=s) / TCP(sport=40000, dport=443, flags="S")),
        eth(IP(src=s, dst=c) / TCP(sport=443, dport=40000, flags="SA")),
        eth(IP(src=c, dst=s) / TCP(sport=40001, dport=443, flags="S")),  # refused, but 443 is allowed
        eth(IP(src=s, dst=c) / TCP(sport=443, dport=40001, flags="RA")),
        eth(IP(src=c, dst=s) / ICMP(type=8, id=77)),  # an unanswered echo, listed with its id
    ]
    path = write_frames(tmp_path / "odd.pcap", frames)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v4, v6 = pcapdump.policy(path, format="iptables"), pcapdump.policy(path, format="ip6tables")
        nft = pcapdump.policy(path)
    assert " -p 0" not in v4 and "l4proto 0" not in nft
    rules6 = [line for line in v6.splitlines() if line.startswith("-A PCAPDUMP-ALLOWED")]
    assert len(rules6) == 1 and " -p 1 " in rules6[0], rules6
    assert unshared("iptables-restore", stdin=v4).returncode == 0, v4
    assert unshared("ip6tables-restore", stdin=v6).returncode == 0, v6
    assert "40001" not in v4 and "unanswered  ICMP 198.18.1.2 > 198.18.2.2 echo id 77" in v4


def test_table_and_comments_show_no_control_characters(tmp_path):
    frames = [eth(IP(src="198.18.1.2", dst="198.18.2.2") / UDP(sport=1, dport=2))]
    packets = [
        pcapdump.Packet(BASE_S * 10**9, frames[0], iface=name, direction="in")
        for name in ("a\x9b2J", "b\u2028c")
    ]
    pcapdump.write(tmp_path / "c1.pcapng", packets, format="pcapng")
    table = run_pcapdump("read", str(tmp_path / "c1.pcapng"), "-conv").stdout
    assert "\x9b" not in table and "\u2028" not in table and "a?2J" in table
    assert pcapdump.conversations(os.fsencode(tmp_path / "c1.pcapng"))[0].iface in ("a\x9b2J", "b\u2028c")


@pytest.mark.parametrize("words", [[], ["-conv"], ["-policy"], ["-conv", "-json"]])
def test_a_closed_standard_output_is_one_line_and_exit_1(multi_flow_file, words):
    done = subprocess.run(
        [
            "sh",
            "-c",
            'exec "$0" "$@" >&-',
            _exe(),
            "read",
            str(multi_flow_file),
            *words,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    one_line_error(done, 1, "standard output is closed")


def _exe() -> str:
    from conftest import pcapdump_exe

    return pcapdump_exe()
