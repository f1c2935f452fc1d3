"""The printer story, live: a client prints through a gateway with no rules while `int` is recorded;
`conv` tells each conversation's state, and `policy` makes a ruleset that, loaded on the gateway, lets
the recorded answered traffic through again and drops everything else (nft and iptables alike).

Three namespaces (netns.Gateway): the client inside (198.18.1.2), the gateway (`int`, `ext`, forwarding,
no rules, the agent with a home of its own) and the server outside (198.18.2.2). The server answers TCP
9100 (the printer) and UDP 161, listens on TCP 515 that the client never uses while recording, and reads
UDP 162 without ever answering; nothing listens on TCP 9101 (refused: a RST) or UDP 163 (an ICMP port
unreachable). The client listens on TCP 8080, for traffic the other way. Root needed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager, suppress

import pytest
from conftest import IN_CI, need_tool, pcapdump_exe, wait_until
from netns import Gateway
from session import agents_under

pytestmark = pytest.mark.live

PRINT_PORT = 9100  # TCP, answered: the print job
SNMP_PORT = 161  # UDP, answered
NEVER_USED_PORT = 515  # TCP, the server listens and answers, but not a packet of it is recorded
CLOSED_PORT = 9101  # TCP, nothing listens: the SYN is answered by a RST (refused)
SILENT_PORT = 162  # UDP, a listener that reads and never answers (no ICMP error either): unanswered
OTHER_UDP_PORT = 163  # UDP, nothing listens: the server answers with an ICMP port unreachable
CLIENT_PORT = 8080  # TCP on the client: connections from the server to the client
PINGS, SNMP_ASKS, SILENT_SENDS = 3, 2, 2
DROPPED_WAIT = 1.5  # seconds a dropped connection attempt or datagram is waited for

# TCP listeners that read until EOF, log and reply; UDP listeners that log and echo ("echo") or log only
# ("silent"). One log line per connection or datagram, flushed: the test reads what reached the server.
SERVERS = r"""
import socket, sys, threading, time
lock = threading.Lock()
def log(*words):
    # One write per line under a lock: the servers' threads would otherwise interleave their words.
    with lock:
        sys.stdout.write(" ".join(map(str, words)) + "\n")
        sys.stdout.flush()
def tcp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(16)
    def serve():
        while True:
            c, peer = s.accept()
            with c:
                c.settimeout(5)
                data = b""
                try:
                    while chunk := c.recv(65536):
                        data += chunk
                except OSError:
                    pass
                log("tcp", port, peer[0], len(data))
                try:
                    c.sendall(b"tcp %d: %d bytes\n" % (port, len(data)))
                except OSError:
                    pass
    return serve
def udp(port, answer):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    def serve():
        while True:
            data, peer = s.recvfrom(65536)
            log("udp", port, peer[0], len(data))
            if answer:
                s.sendto(b"udp %d: " % port + data, peer)
    return serve
for spec in sys.argv[1:]:
    kind, port = spec.split(":")[:2]
    serve = tcp(int(port)) if kind == "tcp" else udp(int(port), spec.endswith(":echo"))
    threading.Thread(target=serve, daemon=True).start()
log("ready")
while True:
    time.sleep(3600)
"""

# Runs the actions of argv[1] (JSON), one after the other or (argv[2] == "parallel") all at once, and
# prints one JSON list of outcomes: "reply: …", "refused", "timeout" or "error: …"; ping: the replies.
PROBE = r"""
import json, os, socket, struct, sys, threading, time
def tcp(host, port, payload, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        s.sendall(payload.encode())
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return "reply: " + data.decode()
    except ConnectionRefusedError:
        return "refused"
    except (socket.timeout, TimeoutError):
        return "timeout"
    except OSError as e:
        return f"error: {e}"
    finally:
        s.close()
def udp(host, port, payload, count, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    s.connect((host, port))
    replies = []
    try:
        for i in range(count):
            s.send(f"{payload} {i}".encode())
        for i in range(count):
            replies.append(s.recv(65536).decode())
        return "reply: " + " | ".join(replies)
    except ConnectionRefusedError:
        return "refused"
    except (socket.timeout, TimeoutError):
        return "timeout" if not replies else "reply: " + " | ".join(replies) + " | timeout"
    except OSError as e:
        return f"error: {e}"
    finally:
        s.close()
def csum(b):
    b += b"\0" * (len(b) % 2)
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF
def ping(host, count, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident, got = (os.getpid() * 7 + threading.get_ident()) & 0xFFFF, 0
    try:
        for seq in range(count):
            body = struct.pack("!HH", ident, seq) + b"pcapdump-policy-ping"
            s.sendto(struct.pack("!BBH", 8, 0, csum(b"\x08\x00\x00\x00" + body)) + body, (host, 0))
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                s.settimeout(left)
                try:
                    packet, peer = s.recvfrom(65536)
                except (socket.timeout, TimeoutError):
                    break
                icmp = packet[(packet[0] & 15) * 4:]
                if peer[0] == host and icmp[0] == 0 and struct.unpack("!HH", icmp[4:8]) == (ident, seq):
                    got += 1
                    break
        return got
    finally:
        s.close()
ACTIONS = {"tcp": tcp, "udp": udp, "ping": ping}
actions = json.loads(sys.argv[1])
results = [None] * len(actions)
def run(i):
    results[i] = ACTIONS[actions[i][0]](*actions[i][1:])
if sys.argv[2:] == ["parallel"]:
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
else:
    for i in range(len(actions)):
        run(i)
print(json.dumps(results))
"""


def probe(ns: str, actions: list[list[object]], parallel: bool = False) -> list[object]:
    done = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", PROBE, json.dumps(actions)]
        + (["parallel"] if parallel else []),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, f"probe {actions}: {done.stderr}"
    return json.loads(done.stdout)


class Printer:
    """The network, its programs and the agent: what every test of the story uses."""

    def __init__(self, gw: Gateway, home, logs) -> None:
        self.gw, self.home, self.logs = gw, home, logs
        self.env = {**os.environ, "PCAPDUMP_HOME": str(home), "TZ": "UTC"}
        self.programs: list[subprocess.Popen[bytes]] = []

    def pcapdump(self, *words: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["ip", "netns", "exec", self.gw.gw_ns, pcapdump_exe(), *words],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=False,
        )
        if ok and done.returncode != 0:
            log = self.home / "agent.log"
            lines = log.read_text().splitlines() if log.exists() else []
            errors = [i for i, line in enumerate(lines) if " ERROR " in line]
            tail = "\n".join(lines[errors[-1] if errors else -12 :][:40])
            raise AssertionError(f"pcapdump {' '.join(words)}: {done.stderr}\nagent.log:\n{tail}")
        return done

    def in_gw(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.gw.gw_ns, *argv],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def listen(self, ns: str, name: str, *specs: str) -> None:
        log = self.logs / f"{name}.log"
        with open(log, "wb") as out:
            self.programs.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", ns, sys.executable, "-u", "-c", SERVERS, *specs],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        assert wait_until(lambda: "ready" in log.read_text(), seconds=10), log.read_text()

    def server_log(self) -> list[str]:
        return (self.logs / "server.log").read_text().splitlines()

    def client_log(self) -> list[str]:
        return (self.logs / "client.log").read_text().splitlines()

    def stop_programs(self) -> None:
        for p in self.programs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)

    def stop_agent(self) -> None:
        self.pcapdump("cleanup", ok=False)
        for pid in agents_under(self.home):  # cleanup failed to end it
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stored(self) -> int:
        """The packets the agent holds for `int`."""
        status = json.loads(self.pcapdump("status", "-json").stdout)
        return next(c["packets"] for c in status["captures"] if c["iface"] == "int")

    def settle(self) -> None:
        """Waits until the capture thread has stored the last packets (the count holds still)."""
        last, deadline = -1, time.monotonic() + 5
        while (now := self.stored()) != last and time.monotonic() < deadline:
            last = now
            time.sleep(0.2)


def the_story(p: Printer) -> None:
    """What the client does while `int` is recorded: it prints, asks SNMP, pings, tries a closed port
    and sends to a port whose listener never answers."""
    s = Gateway.OUTSIDE
    results = probe(
        p.gw.inside_ns,
        [
            ["tcp", s, PRINT_PORT, "%!PS print job\n" * 64, 5],
            ["udp", s, SNMP_PORT, "get sysDescr", SNMP_ASKS, 5],
            ["ping", s, PINGS, 5],
            ["tcp", s, CLOSED_PORT, "job", 5],
            ["udp", s, SILENT_PORT, "trap", SILENT_SENDS, 0.5],
        ],
    )
    assert results == [
        f"reply: tcp {PRINT_PORT}: {len('%!PS print job') * 64 + 64} bytes\n",
        "reply: " + " | ".join(f"udp {SNMP_PORT}: get sysDescr {i}" for i in range(SNMP_ASKS)),
        PINGS,
        "refused",
        "timeout",
    ], results


def the_facts_without_rules(p: Printer) -> None:
    """Before any ruleset: what the never-used port, the closed ports and the server-to-client direction
    do when nothing drops them (so that a timeout later is the firewall's doing)."""
    s = Gateway.OUTSIDE
    results = probe(
        p.gw.inside_ns,
        [
            ["tcp", s, NEVER_USED_PORT, "hello", 5],
            ["tcp", s, CLOSED_PORT, "hello", 5],
            ["udp", s, OTHER_UDP_PORT, "hello", 1, 5],
        ],
    )
    assert results == [f"reply: tcp {NEVER_USED_PORT}: 5 bytes\n", "refused", "refused"], results
    back = probe(p.gw.outside_ns, [["tcp", Gateway.INSIDE, CLIENT_PORT, "hello", 5]])
    assert back == [f"reply: tcp {CLIENT_PORT}: 5 bytes\n"], back


@pytest.fixture(scope="module")
def printer(tmp_path_factory):
    """The network, the servers, and the story recorded on the gateway's `int` (then stopped)."""
    if os.geteuid() != 0:
        pytest.fail("CI runs as root") if IN_CI else pytest.skip("needs root")
    for tool in ("ip", "nft", "iptables", "iptables-restore"):
        need_tool(tool)
    tmp = tmp_path_factory.mktemp("printer")
    gw = Gateway().create()
    p = Printer(gw, tmp / "home", tmp)
    try:
        p.listen(
            gw.outside_ns,
            "server",
            f"tcp:{PRINT_PORT}",
            f"udp:{SNMP_PORT}:echo",
            f"tcp:{NEVER_USED_PORT}",
            f"udp:{SILENT_PORT}:silent",
        )
        p.listen(gw.inside_ns, "client", f"tcp:{CLIENT_PORT}")
        the_facts_without_rules(p)
        assert "int: capturing" in p.pcapdump("start", "int").stdout
        the_story(p)
        p.settle()
        p.pcapdump("stop")
        yield p
    finally:
        p.stop_agent()
        p.stop_programs()
        for argv in (["nft", "delete", "table", "inet", "pcapdump"], ["iptables", "-F"], ["iptables", "-X"]):
            p.in_gw(*argv)
        gw.destroy()


def conversations(p: Printer) -> list[dict]:
    return [json.loads(line) for line in p.pcapdump("conv", "int", "-json").stdout.splitlines()]


def test_conv_gives_each_conversation_its_state(printer):
    p, s, c = printer, Gateway.OUTSIDE, Gateway.INSIDE
    table = p.pcapdump("conv", "int").stdout
    convs = conversations(p)
    shown = f"conv int:\n{table}\nconv int -json:\n" + "\n".join(map(json.dumps, convs))
    keys = {
        "proto", "client", "client_port", "server", "server_port", "state", "packets_to_server",
        "bytes_to_server", "packets_to_client", "bytes_to_client", "first_ns", "last_ns", "iface",
        "client_dir", "vlan", "icmp_errors",
    }  # fmt: skip
    assert all(keys <= set(conv) for conv in convs), shown
    found = {(conv["proto"], conv["server_port"]): conv for conv in convs}
    assert len(found) == len(convs) == 5, shown
    assert set(found) == {
        ("TCP", PRINT_PORT),
        ("UDP", SNMP_PORT),
        ("ICMP", None),
        ("TCP", CLOSED_PORT),
        ("UDP", SILENT_PORT),
    }, shown
    states = {key: conv["state"] for key, conv in found.items()}
    assert states[("TCP", PRINT_PORT)] in ("established", "closed"), shown
    assert states[("UDP", SNMP_PORT)] == "answered", shown
    assert states[("ICMP", None)] == "answered", shown
    assert states[("TCP", CLOSED_PORT)] == "refused", shown
    assert states[("UDP", SILENT_PORT)] == "unanswered", shown
    for conv in convs:
        assert (conv["client"], conv["server"], conv["iface"], conv["client_dir"], conv["vlan"]) == (
            c, s, "int", "in", []
        ), shown  # fmt: skip
        assert conv["first_ns"] <= conv["last_ns"] and conv["icmp_errors"] == 0, shown
    counts = {key: (conv["packets_to_server"], conv["packets_to_client"]) for key, conv in found.items()}
    assert counts[("UDP", SNMP_PORT)] == (SNMP_ASKS, SNMP_ASKS), shown
    assert counts[("ICMP", None)] == (PINGS, PINGS), shown
    assert counts[("TCP", CLOSED_PORT)] == (1, 1), shown
    assert counts[("UDP", SILENT_PORT)] == (SILENT_SENDS, 0), shown
    # The table: one row per conversation, with its state.
    for (proto, port), state in states.items():
        where = f"{s}:{port}" if port else f"{s} "
        rows = [line for line in table.splitlines() if line.startswith(proto) and where in line + " "]
        assert len(rows) == 1 and f" {state} " in rows[0], shown


def rule_lines(ruleset: str) -> list[str]:
    return [
        line.strip() for line in ruleset.splitlines() if " accept comment " in line or "-j ACCEPT" in line
    ]


def check_the_ruleset_text(ruleset: str, kind: str) -> None:
    s, c = Gateway.OUTSIDE, Gateway.INSIDE
    rules = [r for r in rule_lines(ruleset) if s in r]  # the allow rules (not lo, not replies)
    if kind == "nft":
        assert len(rules) == 3 and all('iifname "int"' in r and ' comment "' in r for r in rules), ruleset
        assert any(f"tcp dport {PRINT_PORT}" in r for r in rules), ruleset
        assert any(f"udp dport {SNMP_PORT}" in r for r in rules), ruleset
        assert any("icmp type echo-request" in r for r in rules), ruleset
    else:
        assert len(rules) == 3 and all(" -i int " in r and "--comment" in r for r in rules), ruleset
        assert any(f"-p tcp -m tcp --dport {PRINT_PORT}" in r for r in rules), ruleset
        assert any(f"-p udp -m udp --dport {SNMP_PORT}" in r for r in rules), ruleset
        assert any("--icmp-type echo-request" in r for r in rules), ruleset
    assert all(c in r for r in rules), ruleset
    assert f"dport {NEVER_USED_PORT}" not in ruleset and f"{s}:{NEVER_USED_PORT}" not in ruleset, ruleset
    # Refused and unanswered: comments only, never a rule.
    for port, state in ((CLOSED_PORT, "refused"), (SILENT_PORT, "unanswered")):
        said = [line for line in ruleset.splitlines() if f"{s}:{port}" in line]
        assert len(said) == 1 and said[0].startswith("#") and state in said[0], ruleset


@contextmanager
def loaded(p: Printer, kind: str, ruleset: str, path):
    """``ruleset`` loaded on the gateway as printed (nft -f, iptables-restore), removed afterwards. It is
    loaded twice: loading it replaces what a previous load left."""
    path.write_text(ruleset)
    tool = ["nft", "-f", str(path)] if kind == "nft" else ["iptables-restore"]
    try:
        for _ in range(2):
            with open(path) as f:
                done = subprocess.run(
                    ["ip", "netns", "exec", p.gw.gw_ns, *tool],
                    stdin=f,
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
            assert done.returncode == 0, f"{' '.join(tool)} refuses the ruleset: {done.stderr}\n{ruleset}"
        yield
    finally:
        if kind == "nft":
            p.in_gw("nft", "delete", "table", "inet", "pcapdump")
        else:
            for chain in ("INPUT", "FORWARD", "OUTPUT"):
                p.in_gw("iptables", "-P", chain, "ACCEPT")
            p.in_gw("iptables", "-F")
            p.in_gw("iptables", "-X")


def check_the_gateway_enforces(p: Printer, ruleset: str) -> None:
    """With the ruleset loaded: the answered conversations work again, everything else is dropped."""
    s = Gateway.OUTSIDE
    server_before, client_before = len(p.server_log()), len(p.client_log())
    results = probe(
        p.gw.inside_ns,
        [
            ["tcp", s, PRINT_PORT, "%!PS again", 5],
            ["udp", s, SNMP_PORT, "get again", 1, 5],
            ["ping", s, 2, 5],
            ["tcp", s, NEVER_USED_PORT, "hello", DROPPED_WAIT],
            ["tcp", s, CLOSED_PORT, "hello", DROPPED_WAIT],
            ["udp", s, OTHER_UDP_PORT, "hello", 1, DROPPED_WAIT],
            ["udp", s, SILENT_PORT, "trap again", 1, DROPPED_WAIT],
        ],
        parallel=True,
    )
    back = probe(p.gw.outside_ns, [["tcp", Gateway.INSIDE, CLIENT_PORT, "hello", DROPPED_WAIT]])
    expected = [
        f"reply: tcp {PRINT_PORT}: {len('%!PS again')} bytes\n",
        f"reply: udp {SNMP_PORT}: get again 0",
        2,
        "timeout",  # listening, but never used while recording: dropped, not refused
        "timeout",  # refused while recording: dropped now
        "timeout",  # no ICMP port unreachable comes back: dropped
        "timeout",
    ]
    shown = f"outcomes {results}, expected {expected}; server to client {back}\n{ruleset}"
    assert results == expected and back == ["timeout"], shown
    # What reached the server: the print job and the SNMP question, nothing of the dropped traffic.
    reached = [line.split()[:2] for line in p.server_log()[server_before:]]
    assert sorted(reached) == [["tcp", str(PRINT_PORT)], ["udp", str(SNMP_PORT)]], (p.server_log(), shown)
    assert p.client_log()[client_before:] == [], shown


@pytest.mark.parametrize("kind", ["nft", "iptables"])
def test_the_policy_loads_and_lets_only_the_answered_traffic_through(printer, kind, tmp_path):
    p = printer
    words = ["policy", "int"] + (["-format", "iptables"] if kind == "iptables" else [])
    done = p.pcapdump(*words)
    ruleset = done.stdout
    check_the_ruleset_text(ruleset, kind)
    with loaded(p, kind, ruleset, tmp_path / f"gw.{kind}"):
        listed = p.in_gw(*(["nft", "list", "ruleset"] if kind == "nft" else ["iptables", "-S"])).stdout
        allows = [line for line in listed.splitlines() if Gateway.OUTSIDE in line]
        assert len(allows) == 3, f"loaded twice, the gateway has:\n{listed}\nprinted:\n{ruleset}"
        check_the_gateway_enforces(p, f"{ruleset}\nloaded:\n{listed}")
    # Removed, it leaves nothing behind: the gateway forwards everything again.
    left = p.in_gw(*(["nft", "list", "ruleset"] if kind == "nft" else ["iptables", "-S"])).stdout
    assert Gateway.OUTSIDE not in left and "pcapdump" not in left.lower(), left
    again = probe(p.gw.inside_ns, [["tcp", Gateway.OUTSIDE, NEVER_USED_PORT, "hello", 5]])
    assert again == [f"reply: tcp {NEVER_USED_PORT}: 5 bytes\n"], again


def test_a_pcapng_of_the_recording_gives_the_same_policy(printer):
    """The pcapng file keeps interface names and directions: `read -policy` makes the same rules."""
    p = printer
    written = p.pcapdump("write", "int", "rec.cap", "-pcapng").stdout
    path = p.home / "store" / "rec.cap"
    assert written.startswith(f"{path}: "), written
    for fmt in ("nft", "iptables"):
        live = p.pcapdump("policy", "int", "-format", fmt)
        from_file = p.pcapdump("read", str(path), "-policy", "-format", fmt)
        assert from_file.stderr == live.stderr, from_file.stderr

        def body(text: str) -> list[str]:
            return [line for line in text.splitlines() if not line.startswith("# pcapdump policy from")]

        assert body(from_file.stdout) == body(live.stdout), (
            f"policy int:\n{live.stdout}\nread {path} -policy:\n{from_file.stdout}"
        )
        assert len(rule_lines(from_file.stdout)) >= 3, from_file.stdout
    convs = [json.loads(line) for line in p.pcapdump("read", str(path), "-conv", "-json").stdout.splitlines()]
    assert convs == conversations(p), (convs, conversations(p))
