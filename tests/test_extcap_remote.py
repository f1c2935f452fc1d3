"""The extcap's gateway capture against a real sshd: the gateway is the capture namespace (sshd on its
`int` address, keys and host key made here and pinned in known_hosts), the engineer's desk is the sender
namespace, so the SSH session itself crosses `int`. Called as Wireshark calls it (`--extcap-interface
site:gw1 --capture --fifo <pipe>`), the extcap streams the gateway's `int`; its own SSH session is not in
the stream; SIGTERM leaves no pcapdump process in the gateway's namespace. Bad gateways, host keys and
keys are one line each, and leave nothing running."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import sshd
from conftest import need_tool, pcapdump_exe, wait_until
from netns import CAP_V4
from test_extcap import extcap_exe
from test_stream import EPB, ISB, blocks

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def gateway(testnet, tmp_path_factory):
    need_tool("ssh-keygen")
    need_tool(sshd.SSHD)
    root = tmp_path_factory.mktemp("gw")
    home = root / "desk"
    (home / ".ssh").mkdir(parents=True)
    client_pub = sshd.keygen(home / ".ssh" / "id_ed25519")
    server = sshd.start(root / "server", [client_pub], address=CAP_V4, netns=testnet.cap_ns)
    (home / ".ssh" / "known_hosts").write_text(server.host_key_line + "\n")
    env = {**os.environ, "HOME": str(home)}
    env.pop("SSH_AUTH_SOCK", None)
    gw = {"server": server, "home": home, "env": env, "net": testnet}
    write_inventory(gw)
    yield gw
    server.stop()


def write_inventory(gw, extra: str = "", host: str = CAP_V4, port: int | None = None) -> None:
    cfg = gw["home"] / ".config" / "pcapdump" / "gateways.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(
        f'[site.gw1]\nhost = "{host}"\nport = {port or gw["server"].port}\nuser = "root"\n'
        f'store = "/tmp"\npcapdump = "{pcapdump_exe()}"\n{extra}'
    )


def streams_in(ns: str) -> list[str]:
    """The pcapdump stream processes of the gateway's namespace (the test's own namespace)."""
    found = []
    for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"pcapdump" in c for c in cmd) and b"stream" in cmd:
            found.append(pid)
    return found


class Capture:
    """The extcap run in the desk namespace as Wireshark runs it, Wireshark's side of the pipe read here."""

    def __init__(self, gw, tmp_path: Path, *config: str) -> None:
        self.fifo = tmp_path / f"pipe{time.monotonic_ns()}"
        os.mkfifo(self.fifo)
        self.data = b""
        # Set: the reader closes the pipe after its next read, as Wireshark does when it stops.
        self.leave = False
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", gw["net"].snd_ns, extcap_exe(), "--extcap-interface", "site:gw1",
             "--capture", "--fifo", str(self.fifo), *config],
            env=gw["env"], stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        fd = os.open(self.fifo, os.O_RDONLY)
        try:
            while not self.leave:
                if select.select([fd], [], [], 0.1)[0]:
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        break
                    self.data += chunk
        finally:
            os.close(fd)

    def packets(self) -> int:
        return blocks(self.data).count(EPB)

    def end(self, timeout: float = 20) -> str:
        _, err = self.proc.communicate(timeout=timeout)
        self.reader.join(timeout=10)
        return err


def tshark_fields(tmp_path: Path, data: bytes, *fields: str) -> list[list[str]]:
    path = tmp_path / "got.pcapng"
    path.write_bytes(data)
    argv = [need_tool("tshark"), "-r", str(path), "-T", "fields"]
    for f in fields:
        argv += ["-e", f]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return [line.split("\t") for line in done.stdout.splitlines()]


def test_a_gateway_is_streamed_without_its_own_ssh_session(gateway, tmp_path):
    net, port = gateway["net"], gateway["server"].port
    cap = Capture(gateway, tmp_path, "--remote-interface", "int", "--filter-words", "not icmp not icmp6")
    try:
        assert wait_until(lambda: blocks(cap.data)[:2] == [0x0A0D0D0A, 1], seconds=20), cap.proc.poll()
        assert streams_in(net.cap_ns)
        net.send_udp(CAP_V4, 9000, 20)
        assert wait_until(lambda: cap.packets() >= 20, seconds=10), cap.packets()
        time.sleep(0.5)  # the stream's own writes made SSH packets meanwhile
    finally:
        cap.proc.send_signal(signal.SIGTERM)
    err = cap.end()
    assert cap.proc.returncode == 0 and err == "", err
    assert blocks(cap.data)[-1] == ISB, "the gateway's statistics come through after SIGTERM"
    rows = tshark_fields(tmp_path, cap.data, "frame.interface_name", "tcp.port", "udp.dstport")
    assert [r for r in rows if r[2] == "9000"] == [["int", "", "9000"]] * 20
    assert not [r for r in rows if str(port) in r[1].split(",")], "the SSH session is left out"
    assert wait_until(lambda: not streams_in(net.cap_ns), seconds=5), "nothing left on the gateway"


def test_keep_ssh_keeps_it_and_a_count_ends_the_capture_by_itself(gateway, tmp_path):
    net, port = gateway["net"], gateway["server"].port
    cap = Capture(gateway, tmp_path, "--keep-ssh", "--count", "40", "--filter-words", "tcp")
    assert wait_until(lambda: blocks(cap.data)[:2] == [0x0A0D0D0A, 1], seconds=20)
    # The stream's own packets feed it: 40 come without any other traffic.
    err = cap.end()
    assert cap.proc.returncode == 0 and err == "", err
    rows = tshark_fields(tmp_path, cap.data, "tcp.port")
    assert len(rows) == 40 and all(str(port) in r[0].split(",") for r in rows)
    assert wait_until(lambda: not streams_in(net.cap_ns), seconds=5)


def test_wireshark_leaving_while_nothing_flows_ends_the_capture_on_both_sides(gateway, tmp_path):
    net = gateway["net"]
    cap = Capture(gateway, tmp_path, "--filter-words", "udp port 7")
    assert wait_until(lambda: blocks(cap.data)[:2] == [0x0A0D0D0A, 1], seconds=20)
    assert streams_in(net.cap_ns)
    cap.leave = True  # the pipe closes, as Wireshark closes it when it stops
    started = time.monotonic()
    err = cap.end(timeout=10)
    assert cap.proc.returncode == 0 and err == "", err
    assert time.monotonic() - started < 5
    assert wait_until(lambda: not streams_in(net.cap_ns), seconds=5)


def test_a_gateway_that_sends_no_pcapng_is_named(gateway, tmp_path):
    """Its pcapdump is not what it runs (a login script writing to standard output has the same effect):
    what came is not passed on as a capture."""
    try:
        for command, said in (("/bin/echo", "is not pcapng"), ("/bin/true", "without sending anything")):
            write_inventory(gateway, f'pcapdump = "{command}"\n'.replace("pcapdump = ", "pcapdump = ", 1))
            cfg = gateway["home"] / ".config" / "pcapdump" / "gateways.toml"
            cfg.write_text(cfg.read_text().replace(f'pcapdump = "{pcapdump_exe()}"\n', ""))
            cap = Capture(gateway, tmp_path)
            err = cap.end()
            assert cap.proc.returncode == 1
            one_line(err, "site:gw1", said)
    finally:
        write_inventory(gateway)


def one_line(err: str, *needles: str) -> None:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def test_bad_gateways_keys_and_interfaces_are_one_line_and_leave_nothing(gateway, tmp_path):
    net = gateway["net"]

    def failing(*config: str) -> tuple[int, str]:
        cap = Capture(gateway, tmp_path, *config)
        err = cap.end()
        assert cap.data == b"", "nothing reaches Wireshark"
        assert not streams_in(net.cap_ns)
        return cap.proc.returncode, err

    try:
        write_inventory(gateway)
        code, err = failing("--remote-interface", "nosuch0")
        assert code == 1 and "site:gw1" in err and "nosuch0" in err, err
        other = tmp_path / "other_host_key"
        key_type, key_data = sshd.keygen(other).split()[:2]
        known = tmp_path / "known_hosts"
        known.write_text(f"[{CAP_V4}]:{gateway['server'].port} {key_type} {key_data}\n")
        write_inventory(gateway, f'known_hosts = "{known}"\n')
        code, err = failing()
        assert code == 1
        one_line(err, "site:gw1", "host key")
        sshd.keygen(tmp_path / "stranger")
        write_inventory(gateway, f'identity = "{tmp_path / "stranger"}"\n')
        code, err = failing()
        assert code == 1
        one_line(err, "site:gw1", "authentication failed")
        write_inventory(gateway, port=sshd.free_port())
        code, err = failing()
        assert code == 1
        one_line(err, "site:gw1", "unreachable")
        cfg = gateway["home"] / ".config" / "pcapdump" / "gateways.toml"
        cfg.write_text(cfg.read_text().replace("[site.gw1]", "[site.gw2]"))
        code, err = failing()
        assert code == 2
        one_line(err, "'site:gw1'", "unknown gateway")
    finally:
        write_inventory(gateway)
