"""Finding interfaces: `pcapdump interfaces` (the agent's, or without one the caller's own), checked
against iproute2; and an unknown interface named with the names it is close to and, when the agent lives
in another network namespace, both namespaces."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import uuid

import pcapdump
import pytest
from conftest import IN_CI, pcapdump_exe, run_pcapdump
from netns import CAP_V4, CAP_V6, mac_of
from pcapdump.ifaces import close_names, no_such_interface
from session import Session, one_line_error

HEADER = ["index", "iface", "state", "link", "type", "mtu", "mac", "addresses"]


def netns_of(ns: str | None) -> str:
    """The identity of a named network namespace (or this process's), as the kernel names it."""
    if ns is None:
        return os.readlink("/proc/self/ns/net")
    done = subprocess.run(
        ["ip", "netns", "exec", ns, "readlink", "/proc/self/ns/net"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout.strip()


def rows(table: str) -> dict[str, list[str]]:
    """The table's rows by interface name; the line of whose interfaces and the header are checked."""
    lines = table.splitlines()
    assert lines[1].split() == HEADER, table
    found = {}
    for line in lines[2:]:
        cells = line.split()
        found[cells[1]] = cells
    return found


def json_lines(out: str) -> dict[str, dict]:
    return {obj["name"]: obj for obj in map(json.loads, out.splitlines())}


# --- close names (no system needed) ----------------------------------------------------------------


@pytest.mark.portable
@pytest.mark.parametrize(
    ("typed", "known", "offered"),
    [
        ("eht0", ["lo", "eth0", "eth1"], ["eth0"]),  # two letters swapped
        ("eth", ["lo", "eth0", "eth1"], ["eth0", "eth1"]),  # a prefix of two: both
        ("ETH0", ["lo", "eth0"], ["eth0"]),  # case
        ("ens3", ["lo", "ens33"], ["ens33"]),
        ("enp0s31f7", ["enp0s31f6", "wlp2s0"], ["enp0s31f6"]),
        ("itn", ["lo", "int"], ["int"]),
        ("ext", ["lo", "int"], []),  # two edits for a short name: not a slip
        ("nosuch0", ["lo", "int", "eth0"], []),
        ("int", ["int", "int0"], ["int0"]),  # the name itself is not offered
        ("e", ["eth0"], []),  # one letter is a prefix of too much to mean anything
    ],
)
def test_close_names_are_slips_of_the_typed_name(typed, known, offered):
    assert close_names(typed, known) == offered


@pytest.mark.portable
def test_the_error_names_the_interface_the_close_names_and_both_namespaces():
    e = no_such_interface("itn", ["lo", "int"], "net:[1]", "net:[2]")
    assert isinstance(e, pcapdump.NoSuchInterfaceError) and e.exit_code == 1
    assert (e.iface, e.suggestions, e.netns) == ("itn", ["int"], "net:[1]")
    assert str(e) == (
        "no such interface 'itn' (did you mean 'int'?) "
        "(the agent runs in another network namespace: net:[1]; yours is net:[2])"
    )
    # One namespace: nothing to say about it.
    assert str(no_such_interface("nosuch0", ["lo"], "net:[1]", "net:[1]")) == "no such interface 'nosuch0'"


# --- pcapdump interfaces -----------------------------------------------------------------------------


@pytest.mark.live
def test_interfaces_without_an_agent_lists_the_callers_own_and_launches_none(pd):
    done = pd("interfaces")
    first = done.stdout.splitlines()[0]
    assert first == f"no agent running: the interfaces of this network namespace, {netns_of(pd.net.cap_ns)}"
    table = rows(done.stdout)
    assert set(table) == {"lo", "int"}
    rest = table["int"][2:]
    assert rest == [
        "up",
        "EN10MB",
        "(1)",
        "1500",
        mac_of(pd.net.cap_ns, "int"),
        f"{CAP_V4}/24",
        f"{CAP_V6}/64",
        *rest[7:],
    ]
    assert all(ipaddress.ip_interface(a).is_link_local for a in rest[7:]), rest
    assert table["lo"][2:5] == ["up,", "loopback", "EN10MB"]
    assert "127.0.0.1/8" in table["lo"] and "::1/128" in table["lo"]
    assert not pd.home.exists(), "an agent was launched to list interfaces"


@pytest.mark.live
def test_interfaces_asks_the_agent_in_its_network_namespace(pd):
    pd("start", "lo")
    pid = pd.agent_pid()
    # Asked from this test's own namespace, where neither `int` nor its addresses are.
    done = run_pcapdump("interfaces", env={"PCAPDUMP_HOME": str(pd.home)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == (
        f"the interfaces of the agent (pid {pid}), network namespace {netns_of(pd.net.cap_ns)}, "
        f"not yours ({netns_of(None)})"
    )
    assert f"{CAP_V4}/24" in rows(done.stdout)["int"]
    listed = json_lines(run_pcapdump("-json", "interfaces", env={"PCAPDUMP_HOME": str(pd.home)}).stdout)
    assert set(listed) == {"lo", "int"}
    assert {(o["agent"], o["netns"]) for o in listed.values()} == {(pid, netns_of(pd.net.cap_ns))}
    # In the agent's own namespace, nothing is said about namespaces.
    assert ", not yours" not in pd("interfaces").stdout.splitlines()[0]
    console = pcapdump.Console(pd.home).interfaces()
    assert console["agent"] == pid and console["netns"] != console["own_netns"]


@pytest.fixture
def busy_ns(tmp_path):
    """A network namespace of this test's own with what makes a listing interesting: a secondary IPv4
    address and several IPv6 ones, a veth whose peer is down (up, no carrier), that peer (down), and a tun
    device (no link header: Linux cooked v2, no MAC)."""
    problem = "needs root and iproute2's `ip`" if os.geteuid() != 0 or not shutil.which("ip") else None
    if problem:
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)
    ns = f"pcapdump-ifs-{uuid.uuid4().hex[:6]}"

    def ip(*args: str) -> None:
        subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True, timeout=30)

    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=30)
    try:
        ip("link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b")
        ip("tuntap", "add", "mode", "tun", "name", "tun7")
        for address in ("198.18.7.1/24", "198.18.7.2/24", "198.19.7.1/16"):
            ip("addr", "add", address, "dev", "veth-a")
        for address in ("2001:db8:7::1/64", "2001:db8:7::2/64", "2001:db8:8::1/48"):
            ip("addr", "add", address, "dev", "veth-a", "nodad")
        ip("addr", "add", "198.18.9.2", "peer", "198.18.9.1/32", "dev", "tun7")
        ip("link", "set", "veth-a", "mtu", "9000")
        for dev in ("lo", "veth-a", "tun7"):
            ip("link", "set", dev, "up")
        yield Session(None, tmp_path / "home"), ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False, timeout=30)


def listed_in(ns: str, session: Session, *words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, pcapdump_exe(), *words],
        capture_output=True,
        text=True,
        env=session.env,
        timeout=60,
        check=False,
    )


@pytest.mark.live
def test_interfaces_json_agrees_with_iproute2(busy_ns):
    session, ns = busy_ns
    done = listed_in(ns, session, "interfaces", "-json")
    assert done.returncode == 0, done.stderr
    ours = json_lines(done.stdout)
    theirs = json.loads(
        subprocess.run(
            ["ip", "-n", ns, "-j", "address", "show"], capture_output=True, text=True, check=True, timeout=30
        ).stdout
    )
    assert set(ours) == {link["ifname"] for link in theirs} == {"lo", "veth-a", "veth-b", "tun7"}
    for link in theirs:
        mine = ours[link["ifname"]]
        flags = set(link["flags"])
        assert mine["index"] == link["ifindex"] and mine["mtu"] == link["mtu"]
        assert mine["operstate"] == link["operstate"].lower()
        assert mine["up"] == ("UP" in flags) and mine["lower_up"] == ("LOWER_UP" in flags)
        assert (mine["up"] and not mine["running"]) == ("NO-CARRIER" in flags)
        assert mine["addresses"] == [f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"]]
        if link["link_type"] in ("ether", "loopback"):
            assert mine["mac"] == link["address"]
    # The secondary IPv4 address and every IPv6 address are there.
    assert set(ours["veth-a"]["addresses"]) >= {
        "198.18.7.1/24",
        "198.18.7.2/24",
        "198.19.7.1/16",
        "2001:db8:7::1/64",
        "2001:db8:7::2/64",
        "2001:db8:8::1/48",
    }
    assert ours["tun7"]["addresses"][0] == "198.18.9.2/32"  # the local end, not the peer
    assert (ours["tun7"]["linktype"], ours["tun7"]["linktype_name"], ours["tun7"]["mac"]) == (
        276,
        "LINUX_SLL2",
        None,
    )
    assert ours["lo"]["state"] == "up, loopback"
    assert (ours["veth-a"]["state"], ours["veth-b"]["state"], ours["tun7"]["state"]) == (
        "up, no carrier",
        "down",
        "up, no carrier",
    )
    assert {o["agent"] for o in ours.values()} == {None}
    table = rows(listed_in(ns, session, "interfaces").stdout)
    assert table["tun7"][2:8] == ["up,", "no", "carrier", "LINUX_SLL2", "(276)", "1500"]
    assert table["veth-a"][7] == "9000"


@pytest.mark.live
def test_interfaces_takes_no_argument(pd):
    one_line_error(pd("interfaces", "int", ok=False), 2, "'int'")


# --- an unknown interface ---------------------------------------------------------------------------


@pytest.mark.live
def test_an_unknown_interface_is_named_with_the_names_it_is_close_to(pd):
    one_line_error(pd("start", "itn", ok=False), 1, "no such interface 'itn' (did you mean 'int'?)")
    pd("udp", "start", "int")
    pd.net.send_udp(CAP_V4, 9000, 3)
    for words in (["stop", "imt"], ["show", "in"], ["write", "Int", "x.cap"]):
        err = one_line_error(
            pd(*words, ok=False), 1, f"no such interface '{words[1]}'", "(did you mean 'int'?)"
        )
        assert "network namespace" not in err
    # Nothing close: the interface alone. An interface that exists but does not capture: as before.
    assert one_line_error(pd("stop", "nosuch0", ok=False), 1) == "pcapdump: no such interface 'nosuch0'"
    one_line_error(pd("stop", "lo", ok=False), 1, "'lo' is not capturing")
    one_line_error(pd("show", "lo", ok=False), 1, "'lo': no packets were captured on it")


@pytest.mark.live
def test_an_unknown_interface_names_both_network_namespaces(pd):
    pd("start", "int")
    agent_ns, sender_ns = netns_of(pd.net.cap_ns), netns_of(pd.net.snd_ns)
    note = f"(the agent runs in another network namespace: {agent_ns}; yours is {sender_ns})"
    # `ext` is the sender namespace's interface: the command run there reaches the agent in the other.
    for words in (["start", "ext"], ["stop", "ext"], ["show", "ext"], ["write", "ext", "x.cap"]):
        done = subprocess.run(
            ["ip", "netns", "exec", pd.net.snd_ns, *pd.argv(*words)[4:]],
            capture_output=True,
            text=True,
            env=pd.env,
            timeout=60,
            check=False,
        )
        err = one_line_error(done, 1, "no such interface 'ext'", note)
        assert "did you mean" not in err


@pytest.mark.live
def test_the_python_api_names_the_interfaces_close_to_an_unknown_one(testnet):
    with testnet.on_capture_side():
        assert [i["name"] for i in pcapdump.interfaces()] == ["lo", "int"]
        with pytest.raises(pcapdump.NoSuchInterfaceError) as no_such:
            pcapdump.capture("itn")
    assert no_such.value.suggestions == ["int"]
    assert str(no_such.value) == "no such interface 'itn' (did you mean 'int'?)"
