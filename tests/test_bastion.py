"""Gateways behind a bastion, live: three namespaces, the desk (198.18.5.2), a bastion running sshd
(198.18.5.1 towards the desk, 198.18.6.1 towards the gateways, no forwarding) and a gateway namespace
running two sshds (198.18.6.2, two ports: gw1 and gw2) that only the bastion can reach. Keys and host keys
are made here. fwctl downloads a 10 MB file through `jump =` and through `ProxyJump` in an ssh config
file, byte-identical; lists and fans out over both gateways; refuses a wrong bastion host key naming the
bastion; names an unreachable bastion within its timeout; leaves nothing behind."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import sshd
from conftest import IN_CI, need_tool, pcapdump_exe
from pcapdump.inventory import parse_hop

DESK, BASTION_OUT, BASTION_IN, GATEWAY = "198.18.5.2", "198.18.5.1", "198.18.6.1", "198.18.6.2"
NOBODY = "198.18.5.99"  # in the desk's network, owned by no one: nothing answers


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    problem = None if os.geteuid() == 0 else "the bastion test needs root (network namespaces)"
    if problem:
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)
    need_tool(sshd.SSHD)
    need_tool("ssh-keygen")
    tag = uuid.uuid4().hex[:6]
    desk, bastion, gw = (f"pdt-{n}-{tag}" for n in ("desk", "bast", "gw"))
    servers: list[sshd.Server] = []
    try:
        for ns in (desk, bastion, gw):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        for (a, a_if, a_addr), (b, b_if, b_addr) in (
            ((desk, "eth0", DESK), (bastion, "out", BASTION_OUT)),
            ((bastion, "in", BASTION_IN), (gw, "eth0", GATEWAY)),
        ):
            ip("link", "add", a_if, "netns", a, "type", "veth", "peer", "name", b_if, "netns", b)
            ip("-n", a, "addr", "add", f"{a_addr}/24", "dev", a_if)
            ip("-n", b, "addr", "add", f"{b_addr}/24", "dev", b_if)
            ip("-n", a, "link", "set", a_if, "up")
            ip("-n", b, "link", "set", b_if, "up")
        subprocess.run(["ip", "netns", "exec", bastion, "sysctl", "-qw", "net.ipv4.ip_forward=0"], check=True)
        root = tmp_path_factory.mktemp("bastion")
        home = root / "desk"
        (home / ".ssh").mkdir(parents=True)
        client = sshd.keygen(home / ".ssh" / "id_ed25519")
        servers.append(sshd.start(root / "bastion", [client], address=BASTION_OUT, netns=bastion))
        servers.append(sshd.start(root / "gw1", [client], address=GATEWAY, netns=gw))
        servers.append(sshd.start(root / "gw2", [client], address=GATEWAY, netns=gw))
        # The bastion again, on its inner address: a second bastion that only the first one reaches.
        servers.append(sshd.start(root / "bastion-in", [client], address=BASTION_IN, netns=bastion))
        (home / ".ssh" / "known_hosts").write_text("".join(s.host_key_line + "\n" for s in servers))
        store = root / "store"
        store.mkdir()
        (store / "big.cap").write_bytes(os.urandom(10 * 1024 * 1024))
        yield {
            "desk": desk,
            "home": home,
            "store": store,
            "bastion": servers[0],
            "gw1": servers[1],
            "gw2": servers[2],
            "bastion_in": servers[3],
            "env": {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"} | {"HOME": str(home)},
        }
    finally:
        for s in servers:
            s.stop()
        for ns in (desk, bastion, gw):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False, timeout=30)


def inventory(site, text: str) -> None:
    cfg = site["home"] / ".config" / "pcapdump" / "gateways.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(text)


def fwctl(site, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    exe = str(Path(pcapdump_exe()).with_name("fwctl"))
    return subprocess.run(
        ["ip", "netns", "exec", site["desk"], exe, *args],
        capture_output=True,
        text=True,
        env=site["env"],
        timeout=timeout,
        check=False,
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def by_jump(site, jump: str | None = None, known: str = "") -> str:
    bastion = jump or f"root@{BASTION_OUT}:{site['bastion'].port}"
    extra = f'known_hosts = "{known}"\n' if known else ""
    gateways = [
        f'[site.{name}]\nhost = "{GATEWAY}"\nport = {site[name].port}\nuser = "root"\n'
        f'store = "{site["store"]}"\n{extra}'
        for name in ("gw1", "gw2")
    ]
    return f'[site]\njump = "{bastion}"\n' + "".join(gateways)


def test_a_download_through_jump_arrives_whole_and_so_do_listings_and_fan_out(site, tmp_path):
    # Straight from the desk, the gateway cannot be reached at all.
    inventory(site, by_jump(site).split("\n", 2)[2])
    done = fwctl(site, "--timeout", "3", "--filelist", "site:gw1")
    assert done.returncode == 1 and "unreachable" in done.stderr, done.stderr
    inventory(site, by_jump(site))
    want = digest(site["store"] / "big.cap")
    done = fwctl(site, "--filedownload", "big.cap", str(tmp_path / "one.cap"), "site:gw1")
    assert done.returncode == 0, done.stderr
    assert digest(tmp_path / "one.cap") == want
    listed = fwctl(site, "--filelist", "site:*")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split()[:3] for line in listed.stdout.splitlines()]
    assert rows == [
        ["site:gw1", "big.cap", str(10 * 1024 * 1024)],
        ["site:gw2", "big.cap", str(10 * 1024 * 1024)],
    ]
    fan = tmp_path / "fan"
    fan.mkdir()
    done = fwctl(site, "--filedownload", "big.cap", str(fan), "site:*")
    assert done.returncode == 0, done.stderr
    assert digest(fan / "gw1" / "big.cap") == want and digest(fan / "gw2" / "big.cap") == want
    assert not leftovers(tmp_path) and not leftovers(fan / "gw1") and not leftovers(fan / "gw2")


def test_proxyjump_in_an_ssh_config_file_and_in_the_default_one(site, tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host gw1\n  HostName {GATEWAY}\n  Port {site['gw1'].port}\n"
        f"  ProxyJump root@{BASTION_OUT}:{site['bastion'].port}\n"
    )
    inventory(site, f'[cfg.gw1]\nhost = "gw1"\nuser = "root"\nstore = "{site["store"]}"\n')
    want = digest(site["store"] / "big.cap")
    done = fwctl(
        site, "--ssh-config", str(config), "--filedownload", "big.cap", str(tmp_path / "a.cap"), "cfg:gw1"
    )
    assert done.returncode == 0, done.stderr
    assert digest(tmp_path / "a.cap") == want
    default = site["home"] / ".ssh" / "config"
    default.write_text(config.read_text())
    try:
        done = fwctl(site, "--filedownload", "big.cap", str(tmp_path / "b.cap"), "cfg:gw1")
        assert done.returncode == 0, done.stderr
        assert digest(tmp_path / "b.cap") == want
        # Without the configuration, "gw1" is just a name nobody resolves.
        done = fwctl(site, "--ssh-config", "none", "--filelist", "cfg:gw1", timeout=60)
        assert done.returncode == 1 and "cfg:gw1" in done.stderr and "unreachable" in done.stderr
    finally:
        default.unlink()
    missing = fwctl(site, "--ssh-config", str(tmp_path / "nope"), "--filelist", "cfg:gw1")
    assert (
        missing.returncode == 2 and "nope" in missing.stderr and "no such ssh configuration" in missing.stderr
    )


def one_line(done: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    err = done.stderr.strip()
    assert done.returncode == code, done
    assert err.count("\n") == 0 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def test_a_wrong_bastion_host_key_is_refused_naming_the_bastion(site, tmp_path):
    other = tmp_path / "other"
    key_type, key_data = sshd.keygen(other).split()[:2]
    bastion = site["bastion"]
    known = tmp_path / "known_hosts"
    lines = (site["home"] / ".ssh" / "known_hosts").read_text().splitlines()
    right = lines[0]
    lines[0] = f"[{BASTION_OUT}]:{bastion.port} {key_type} {key_data}"
    known.write_text("\n".join(lines) + "\n")
    inventory(site, by_jump(site, known=str(known)))
    done = fwctl(site, "--filedownload", "big.cap", str(tmp_path / "x.cap"), "site:gw1")
    one_line(
        done, 1, f"site:gw1: bastion root@{BASTION_OUT}:{bastion.port}", "host key changed", "ssh-keygen -R"
    )
    assert not (tmp_path / "x.cap").exists() and not leftovers(tmp_path)
    # Not there at all: unknown, with how to fetch it (for a gateway: from its bastion).
    known.write_text("\n".join(lines[1:]) + "\n")
    done = fwctl(site, "--filelist", "site:gw1")
    one_line(
        done, 1, f"site:gw1: bastion root@{BASTION_OUT}:{bastion.port}", "host key unknown", "ssh-keyscan"
    )
    known.write_text(right + "\n")
    done = fwctl(site, "--filelist", "site:gw1")
    one_line(
        done,
        1,
        f"site:gw1 (root@{GATEWAY}:{site['gw1'].port})",
        "host key unknown",
        f"on the bastion {BASTION_OUT}",
    )


def test_known_hosts_files_and_bastions_of_the_configuration_as_openssh_reads_them(site, tmp_path):
    """Several UserKnownHostsFile (the bastions' keys in one, the gateways' in the other); a bastion
    whose own entry has a ProxyJump (the bastion's inner address, reached through its outer one); the
    file named in an error is the one the configuration gave."""
    lines = (site["home"] / ".ssh" / "known_hosts").read_text().splitlines()
    (tmp_path / "kh_bastion").write_text(lines[0] + "\n" + lines[3] + "\n")
    (tmp_path / "kh_gateways").write_text("\n".join(lines[1:3]) + "\n")
    bp, bp_in = site["bastion"].port, site["bastion_in"].port
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host gw1\n  HostName {GATEWAY}\n  Port {site['gw1'].port}\n  ProxyJump b2\n"
        f"  UserKnownHostsFile {tmp_path}/kh_bastion {tmp_path}/kh_gateways\n"
        f"Host b2\n  HostName {BASTION_IN}\n  Port {bp_in}\n  User root\n  ProxyJump b1\n"
        f"Host b1\n  HostName {BASTION_OUT}\n  Port {bp}\n  User root\n"
    )
    inventory(site, f'[cfg.gw1]\nhost = "gw1"\nuser = "root"\nstore = "{site["store"]}"\n')
    done = fwctl(
        site, "--ssh-config", str(config), "--filedownload", "big.cap", str(tmp_path / "a.cap"), "cfg:gw1"
    )
    assert done.returncode == 0, done.stderr
    assert digest(tmp_path / "a.cap") == digest(site["store"] / "big.cap")
    (tmp_path / "kh_gateways").write_text("")
    done = fwctl(site, "--ssh-config", str(config), "--filelist", "cfg:gw1")
    one_line(done, 1, "host key unknown", str(tmp_path / "kh_gateways"))
    config.write_text(f"Host gw1\n  ProxyCommand ssh -W %h:%p root@{BASTION_OUT}\n")
    done = fwctl(site, "--ssh-config", str(config), "--filelist", "cfg:gw1")
    one_line(done, 2, "ProxyCommand", "ProxyJump")


def test_a_gateway_down_behind_a_working_bastion_is_named_so(site, tmp_path):
    inventory(site, by_jump(site).replace(f"port = {site['gw1'].port}", "port = 1", 1))
    done = fwctl(site, "--filelist", "site:gw1")
    one_line(
        done,
        1,
        f"site:gw1: bastion root@{BASTION_OUT}:{site['bastion'].port} could not reach root@{GATEWAY}:1",
    )


def test_an_unreachable_bastion_is_named_within_the_timeout(site, tmp_path):
    inventory(site, by_jump(site, jump=f"root@{NOBODY}:22"))
    started = time.monotonic()
    done = fwctl(site, "--timeout", "2", "--filedownload", "big.cap", str(tmp_path / "x.cap"), "site:gw1")
    assert time.monotonic() - started < 2 + 5
    one_line(done, 1, f"site:gw1: bastion root@{NOBODY}:22")
    assert "unreachable" in done.stderr or "stalled" in done.stderr
    # Refused at once: a bastion address where no sshd listens on that port.
    inventory(site, by_jump(site, jump=f"root@{BASTION_OUT}:1"))
    done = fwctl(site, "--filelist", "site:gw1")
    one_line(done, 1, f"site:gw1: bastion root@{BASTION_OUT}:1", "unreachable: Connection refused")
    assert not leftovers(tmp_path)


def test_a_malformed_jump_names_the_key_and_the_form(site):
    for bad in ('"bad host"', '"root@"', '"root@h:99999"', "5", '["ok@h", 7]'):
        inventory(site, f'[site.gw1]\nhost = "h"\nuser = "u"\nstore = "/s"\njump = {bad}\n')
        done = fwctl(site, "--filelist", "site:gw1")
        one_line(done, 1, "[site.gw1]", "'jump'", "[user@]host[:port]")


def test_jump_values_are_parsed_as_openssh_writes_them():
    assert str(parse_hop("admin@bastion.example.net:2222")) == "admin@bastion.example.net:2222"
    assert parse_hop("bastion") is not None and parse_hop("bastion").user is None
    hop = parse_hop("a@[2001:db8::1]:22")
    assert hop is not None and hop.host == "2001:db8::1" and hop.port == 22
    for bad in ("", "a b", "a@", "@h", "a@h:0", "a@h:65536", "a@-oProxyCommand=x", "a@h:x"):
        assert parse_hop(bad) is None, bad


def test_the_extcap_streams_a_gateway_behind_the_bastion(site, tmp_path):
    """The extcap's gateway capture takes the same way: through the bastion, its own session (which
    reaches the gateway from the bastion) left out unless kept."""
    import threading

    from test_extcap import extcap_exe
    from test_stream import EPB, blocks

    inventory(site, by_jump(site) + f'pcapdump = "{pcapdump_exe()}"\n')
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = bytearray()

    def read() -> None:
        with open(fifo, "rb") as f:
            while chunk := f.read1(1 << 16):
                got.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    done = subprocess.run(
        ["ip", "netns", "exec", site["desk"], extcap_exe(), "--extcap-interface", "site:gw2", "--capture",
         "--fifo", str(fifo), "--remote-interface", "eth0", "--keep-ssh", "--count", "5",
         "--filter-words", "tcp"],
        env=site["env"], capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    reader.join(timeout=10)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert blocks(bytes(got)).count(EPB) == 5
