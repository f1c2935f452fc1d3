"""The Wireshark extcap program, through Wireshark's own engine (tshark) with HOME a scratch folder:
`pcapdump extcap install` makes tshark list pcapdump's interfaces, `uninstall` removes them; tshark
captures from `local:int` through it, applies our filter words as its capture filter, and fails naming a
bad word. The extcap contract's queries are checked as Wireshark reads them."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import need_tool, pcapdump_exe, wait_until
from netns import CAP_V4

EXTCAP = "pcapdump-extcap"


def extcap_exe() -> str:
    return str(Path(pcapdump_exe()).with_name(EXTCAP))


@pytest.fixture
def desk(tmp_path):
    """A scratch HOME for Wireshark and the inventory."""
    home = tmp_path / "home"
    home.mkdir()
    return {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}


def run(env, *argv: str, ns: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    inside = ["ip", "netns", "exec", ns] if ns else []
    return subprocess.run(
        [*inside, *argv], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def extcap_pids(ns: str) -> list[int]:
    """Processes of the namespace that run the extcap module (ours: the namespace is the test's)."""
    pids = run(os.environ, "ip", "netns", "pids", ns).stdout.split()
    found = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"pcapdump.extcap" in cmd or b"pcapdump-extcap" in cmd:
            found.append(int(pid))
    return found


def send_until_done(net, proc: subprocess.Popen[str], bursts: list[tuple[int, int]]) -> None:
    """Datagrams in bursts until tshark has its count (the extcap starts its capture a moment after
    Wireshark opens the pipe; a burst sent before then is not seen): at most 20 rounds."""
    for _ in range(20):
        for port, count in bursts:
            net.send_udp(CAP_V4, port, count)
        if wait_until(lambda: proc.poll() is not None, seconds=0.5):
            return


def tshark_interfaces(env, ns: str) -> list[str]:
    done = run(env, need_tool("tshark"), "-D", ns=ns)
    assert done.returncode == 0, done.stderr
    return [line.split(". ", 1)[1].split(" ")[0] for line in done.stdout.splitlines() if ". " in line]


@pytest.mark.live
def test_install_lists_the_interfaces_in_tshark_and_uninstall_removes_them(testnet, desk):
    listed = tshark_interfaces(desk, testnet.cap_ns)
    assert not [i for i in listed if i.startswith("local:")]
    first = run(desk, pcapdump_exe(), "extcap", "install")
    assert first.returncode == 0, first.stderr
    again = run(desk, pcapdump_exe(), "extcap", "install")
    assert again.returncode == 0 and again.stdout == first.stdout, "install is idempotent"
    launcher = Path(first.stdout.split()[1])
    assert launcher.is_file() and os.access(launcher, os.X_OK)
    # Where this Wireshark looks: the folder `tshark -G folders` gives.
    folders = run(desk, need_tool("tshark"), "-G", "folders").stdout
    assert str(launcher.parent.parent) in folders
    listed = tshark_interfaces(desk, testnet.cap_ns)
    assert "local:int" in listed and "local:lo" in listed
    assert run(desk, pcapdump_exe(), "extcap", "uninstall").returncode == 0
    assert not launcher.exists()
    gone = run(desk, pcapdump_exe(), "extcap", "uninstall")
    assert gone.returncode == 0 and "not installed" in gone.stdout
    assert not [i for i in tshark_interfaces(desk, testnet.cap_ns) if i.startswith("local:")]


def test_install_leaves_a_file_that_is_not_its_own(desk, tmp_path):
    done = run(desk, pcapdump_exe(), "extcap", "install")
    launcher = Path(done.stdout.split()[1])
    launcher.write_text("#!/bin/sh\necho someone else's\n")
    for action in ("install", "uninstall"):
        refused = run(desk, pcapdump_exe(), "extcap", action)
        assert refused.returncode == 1 and "not pcapdump's" in refused.stderr
        assert launcher.read_text() == "#!/bin/sh\necho someone else's\n"
    bad = run(desk, pcapdump_exe(), "extcap", "reinstall")
    assert bad.returncode == 2 and "'reinstall'" in bad.stderr


@pytest.mark.live
def test_tshark_captures_twenty_packets_with_the_interface_name(testnet, desk, tmp_path):
    tshark = need_tool("tshark")
    assert run(desk, pcapdump_exe(), "extcap", "install").returncode == 0
    out = tmp_path / "x.pcapng"
    cap = subprocess.Popen(
        ["ip", "netns", "exec", testnet.cap_ns, tshark, "-i", "local:int", "-c", "20", "-w", str(out)],
        env=desk,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_until(lambda: extcap_pids(testnet.cap_ns), seconds=15)
        send_until_done(testnet, cap, [(9000, 30)])
        _, err = cap.communicate(timeout=30)
    finally:
        cap.kill()
    assert cap.returncode == 0, err
    fields = run(desk, tshark, "-r", str(out), "-T", "fields", "-e", "frame.interface_name")
    assert fields.stdout.split() == ["int"] * 20
    assert wait_until(lambda: not extcap_pids(testnet.cap_ns), seconds=5), "the extcap ended with tshark"


@pytest.mark.live
def test_the_capture_filter_is_our_filter_words_and_a_bad_one_is_named(testnet, desk, tmp_path):
    tshark = need_tool("tshark")
    assert run(desk, pcapdump_exe(), "extcap", "install").returncode == 0
    out = tmp_path / "f.pcapng"
    cap = subprocess.Popen(
        ["ip", "netns", "exec", testnet.cap_ns, tshark, "-i", "local:int", "-f", "udp destport 9000",
         "-c", "5", "-w", str(out)],
        env=desk, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert wait_until(lambda: extcap_pids(testnet.cap_ns), seconds=15)
        send_until_done(testnet, cap, [(9001, 10), (9000, 10)])
        _, err = cap.communicate(timeout=30)
    finally:
        cap.kill()
    assert cap.returncode == 0, err
    ports = run(desk, tshark, "-r", str(out), "-T", "fields", "-e", "udp.dstport").stdout.split()
    assert ports == ["9000"] * 5
    bad = run(desk, tshark, "-i", "local:int", "-f", "udp destport 99999", "-c", "1", "-w", str(out),
              ns=testnet.cap_ns, timeout=30)  # fmt: skip
    assert bad.returncode != 0
    assert "'destport 99999'" in bad.stderr and "not a port" in bad.stderr
    assert wait_until(lambda: not extcap_pids(testnet.cap_ns), seconds=5)


@pytest.mark.live
def test_wireshark_stopping_the_capture_ends_the_extcap(testnet, desk, tmp_path):
    """Wireshark ends a capture with SIGTERM to the extcap: it ends at once, exit 0, pipe complete."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        ["ip", "netns", "exec", testnet.cap_ns, extcap_exe(), "--extcap-interface", "local:int", "--capture",
         "--fifo", str(fifo), "--filter-words", "udp"],
        env=desk, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    with open(fifo, "rb") as reader:
        time.sleep(1)
        testnet.send_udp(CAP_V4, 9000, 4)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        data = reader.read()
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and err == "", err
    from test_stream import EPB, ISB, blocks

    assert blocks(data).count(EPB) == 4 and blocks(data)[-1] == ISB


def test_the_queries_answer_as_wireshark_reads_them(desk, tmp_path):
    inventory = Path(desk["HOME"]) / ".config" / "pcapdump" / "gateways.toml"
    inventory.parent.mkdir(parents=True)
    inventory.write_text('[site.gw1]\nhost = "198.18.0.2"\nuser = "root"\nstore = "/s"\n')
    listed = run(desk, extcap_exe(), "--extcap-interfaces", "--extcap-version=4.0")
    assert listed.returncode == 0 and listed.stderr == ""
    lines = listed.stdout.splitlines()
    assert lines[0].startswith("extcap {version=")
    assert "interface {value=local:lo}{display=pcapdump: lo (" in listed.stdout
    assert "interface {value=site:gw1}{display=pcapdump: gateway site:gw1 (root@198.18.0.2)}" in lines
    config = run(desk, extcap_exe(), "--extcap-interface", "site:gw1", "--extcap-config").stdout
    calls = [line.split("{call=")[1].split("}")[0] for line in config.splitlines()]
    assert calls == ["--filter-words", "--snaplen", "--promisc", "--count", "--duration",
                     "--remote-interface", "--keep-ssh"]  # fmt: skip
    local = run(desk, extcap_exe(), "--extcap-interface", "local:lo", "--extcap-config").stdout
    assert "--remote-interface" not in local and "{number=4}{call=--duration}" in local
    dlts = run(desk, extcap_exe(), "--extcap-interface", "local:lo", "--extcap-dlts")
    assert dlts.stdout.strip() == "dlt {number=1}{name=EN10MB}{display=EN10MB (lo)}"
    good = run(desk, extcap_exe(), "--extcap-interface", "local:lo", "--extcap-capture-filter", "udp port 53")
    assert good.returncode == 0 and good.stdout == "", "Wireshark takes even a bare line end for invalid"
    bad = run(desk, extcap_exe(), "--extcap-interface", "site:gw1", "--extcap-capture-filter", "port 99999")
    assert bad.returncode == 0 and bad.stdout.splitlines()[0].startswith("'port 99999': not a port")
    # A broken inventory hides no local interface; it is said on standard error.
    inventory.write_text("[site.gw1]\nhost = 5\n")
    broken = run(desk, extcap_exe(), "--extcap-interfaces")
    assert broken.returncode == 0 and "value=local:lo" in broken.stdout
    assert "gateways not listed" in broken.stderr and "site:gw1" not in broken.stdout
    assert run(desk, extcap_exe(), "--extcap-interface", "site:gw1", "--extcap-dlts").returncode == 1
    inventory.write_text('[site.gw1]\nhost = "198.18.0.2"\nuser = "root"\nstore = "/s"\n')
    unknown = run(desk, extcap_exe(), "--extcap-interface", "site:gw9", "--extcap-dlts")
    assert unknown.returncode == 2 and "'site:gw9'" in unknown.stderr and "gw1" in unknown.stderr
    for name in ("int", "local:a/b", "site:*"):
        odd = run(desk, extcap_exe(), "--extcap-interface", name, "--extcap-config")
        assert odd.returncode == 2 and f"'{name}'" in odd.stderr and odd.stderr.count("\n") == 1


@pytest.mark.live
def test_a_capture_that_fails_early_does_not_leave_tshark_waiting(testnet, desk, tmp_path):
    """Wireshark waits for its pipe to open: a capture that fails before it would (a bad word in the
    dialog's filter words, here in the newer spelling that starts with a dash) still opens and closes
    it, so tshark ends, naming the word."""
    tshark = need_tool("tshark")
    assert run(desk, pcapdump_exe(), "extcap", "install").returncode == 0
    out = tmp_path / "x.pcapng"
    done = run(desk, tshark, "-i", "local:int", "-o", "extcap.local_int.filterwords:-portt=80", "-c", "1",
               "-w", str(out), ns=testnet.cap_ns, timeout=60)  # fmt: skip
    assert done.returncode != 0 and "'-portt=80'" in done.stderr, done.stderr
    # A value that starts with a dash is a value: `-udp` is a word of the newer spelling.
    valid = run(desk, extcap_exe(), "--extcap-interface", "local:lo", "--extcap-capture-filter", "-udp")
    assert valid.returncode == 0 and valid.stdout == ""
    assert wait_until(lambda: not extcap_pids(testnet.cap_ns), seconds=5)


@pytest.mark.live
def test_interfaces_whose_names_cannot_come_back_are_not_listed(desk):
    ns = f"pdt-names-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(
            ["ip", "-n", ns, "link", "add", "pd{x}", "type", "veth", "peer", "name", "pdx"], check=True
        )
        listed = run(desk, extcap_exe(), "--extcap-interfaces", ns=ns)
        assert listed.returncode == 0
        assert "value=local:pdx}" in listed.stdout and listed.stdout.count("value=local:pdx") == 1
        assert "'pd{x}': not listed" in listed.stderr
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_install_finds_wireshark_by_its_dumpcap_without_tshark(desk, tmp_path):
    dumpcap = need_tool("dumpcap")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dumpcap").symlink_to(dumpcap)
    env = {**desk, "PATH": str(bin_dir)}
    done = run(env, pcapdump_exe(), "extcap", "install")
    version = subprocess.run([dumpcap, "--version"], capture_output=True, text=True).stdout
    before_4_1 = any("(Wireshark) 4.0." in line or "(Wireshark) 3." in line for line in version.splitlines())
    assert done.returncode == 0, done.stderr
    wanted = ".config/wireshark/extcap" if before_4_1 else ".local/lib/wireshark/extcap"
    assert wanted in done.stdout, done.stdout


def test_the_help_page_of_someone_else_is_neither_replaced_nor_removed(desk):
    done = run(desk, pcapdump_exe(), "extcap", "install")
    page = Path(done.stdout.split()[1]).with_name("pcapdump-extcap.txt")
    page.write_text("someone else's notes\n")
    refused = run(desk, pcapdump_exe(), "extcap", "install")
    assert refused.returncode == 1 and "not pcapdump's" in refused.stderr and refused.stderr.count("\n") == 1
    assert run(desk, pcapdump_exe(), "extcap", "uninstall").returncode == 0
    assert page.read_text() == "someone else's notes\n"
    page.unlink()
    page.mkdir()
    refused = run(desk, pcapdump_exe(), "extcap", "install")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert not [p for p in page.parent.iterdir() if p.name.endswith(".tmp")]
