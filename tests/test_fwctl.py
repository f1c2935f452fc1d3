"""fwctl against a real OpenSSH sshd on loopback (tests/sshd.py): default inventory and known_hosts paths
under a scratch HOME, keys generated per run, every refusal one line and nothing left behind."""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sshd
from conftest import IN_CI, need_tool, wait_until

FWCTL_EXE = shutil.which("fwctl", path=str(Path(sys.executable).parent)) or "fwctl"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    need_tool("ssh-keygen")
    need_tool(sshd.SSHD)
    root = tmp_path_factory.mktemp("fwctl")
    home = root / "home"
    (home / ".ssh").mkdir(parents=True)
    client_pub = sshd.keygen(home / ".ssh" / "id_ed25519")
    server = sshd.start(root / "server", [client_pub])
    (home / ".ssh" / "known_hosts").write_text(server.host_key_line + "\n")
    store = root / "store"
    store.mkdir()
    big = store / "big.cap"
    with open(big, "wb") as f:
        f.write(os.urandom(50 * 1024 * 1024))
    (store / "small.cap").write_bytes(b"pcap" * 1000)
    (store / "notes.txt.bak").write_bytes(b"not a store name")
    g = {"root": root, "home": home, "server": server, "store": store, "big": big}
    yield g
    g["server"].stop()


def inventory(gateway, extra: str = "") -> None:
    cfg = gateway["home"] / ".config" / "pcapdump"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "gateways.toml").write_text(
        f"""[site.gw1]
host = "127.0.0.1"
port = {gateway["server"].port}
user = "{getpass.getuser()}"
store = "{gateway["store"]}"
{extra}"""
    )


def fleet(gateway, *gateways: tuple[str, int, Path | str]) -> None:
    """An inventory of `site` with these gateways: (name, port, store)."""
    cfg = gateway["home"] / ".config" / "pcapdump" / "gateways.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    user = getpass.getuser()
    cfg.write_text(
        "".join(
            f'[site.{name}]\nhost = "127.0.0.1"\nport = {port}\nuser = "{user}"\nstore = "{store}"\n'
            for name, port, store in gateways
        )
    )


def fwctl(
    gateway, *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "PCAPDUMP_GATEWAYS")}
    env["HOME"] = str(gateway["home"])
    return subprocess.run(
        [FWCTL_EXE, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout, check=False
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line(done: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert done.returncode == code, done
    err = done.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def test_a_50_mb_file_arrives_byte_identical(gateway, tmp_path):
    inventory(gateway)
    done = fwctl(gateway, "--filedownload", "big.cap", str(tmp_path / "local.cap"), "site:gw1")
    assert done.returncode == 0, done.stderr
    assert sha256(tmp_path / "local.cap") == sha256(gateway["big"])
    assert os.listdir(tmp_path) == ["local.cap"]
    assert f"site:gw1: {tmp_path / 'local.cap'}: {50 * 1024 * 1024} bytes (" in done.stdout
    assert done.stdout.rstrip().endswith(" MB/s)")


def test_a_small_file_gets_no_rate(gateway, tmp_path):
    # 4000 bytes take no time to send: the time is the SSH handshake's, and a rate would be nonsense.
    inventory(gateway)
    done = fwctl(gateway, "--filedownload", "small.cap", str(tmp_path / "s.cap"), "site:gw1")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"site:gw1: {tmp_path / 's.cap'}: 4000 bytes\n"


def test_filelist_lists_the_store(gateway):
    inventory(gateway)
    done = fwctl(gateway, "--filelist", "site:gw1")
    assert done.returncode == 0, done.stderr
    names = [line.split()[1] for line in done.stdout.splitlines()]
    assert names == ["big.cap", "small.cap"]  # notes.txt.bak is not a store name


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "toolongname.cap", "a b.cap", "x.cappp"])
def test_bad_names_are_refused_before_connecting(gateway, tmp_path, bad):
    # The gateway points at a closed port: a connection attempt would fail with exit 1, not 2.
    cfg = gateway["home"] / ".config" / "pcapdump"
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "gateways.toml").write_text(
        f'[site.gw1]\nhost = "127.0.0.1"\nport = {sshd.free_port()}\nuser = "u"\nstore = "/s"\n'
    )
    one_line(
        fwctl(gateway, "--filedownload", bad, str(tmp_path / "x"), "site:gw1"), 2, f"'{bad}'", "8 characters"
    )
    assert os.listdir(tmp_path) == []


def test_a_changed_host_key_is_refused(gateway, tmp_path):
    other = tmp_path / "other_host_key"
    other_pub = sshd.keygen(other).split()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{gateway['server'].port} {other_pub[0]} {other_pub[1]}\n")
    inventory(gateway, f'known_hosts = "{known}"\n')
    out = tmp_path / "out"
    out.mkdir()
    one_line(fwctl(gateway, "--filedownload", "small.cap", str(out / "s.cap"), "site:gw1"), 1, "host key")
    assert os.listdir(out) == []


def test_a_wrong_key_is_refused(gateway, tmp_path):
    sshd.keygen(tmp_path / "stranger")
    inventory(gateway, f'identity = "{tmp_path / "stranger"}"\n')
    out = tmp_path / "out"
    out.mkdir()
    one_line(
        fwctl(gateway, "--filedownload", "small.cap", str(out / "s.cap"), "site:gw1"),
        1,
        "authentication failed",
    )
    assert os.listdir(out) == []


def test_unknown_data_source_and_gateway_are_named(gateway, tmp_path):
    inventory(gateway)
    one_line(
        fwctl(gateway, "--filedownload", "small.cap", str(tmp_path / "x"), "lab:gw1"), 2, "'lab'", "site"
    )
    one_line(
        fwctl(gateway, "--filedownload", "small.cap", str(tmp_path / "x"), "site:gw9"), 2, "'gw9'", "gw1"
    )
    one_line(fwctl(gateway, "--filelist", "nocolon"), 2, "'nocolon'")
    cfg = gateway["home"] / ".config" / "pcapdump" / "gateways.toml"
    cfg.write_text("[site]\n")
    for words in (["--filelist", "site:*"], ["--filedownload", "small.cap", str(tmp_path), "site:*"]):
        one_line(fwctl(gateway, *words), 2, "'site:*'", "no gateways")


def test_a_bad_inventory_names_file_table_and_key(gateway, tmp_path):
    cfg = gateway["home"] / ".config" / "pcapdump" / "gateways.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text('[site.gw1]\nhost = "127.0.0.1"\nport = "22"\nuser = "u"\nstore = "/s"\n')
    one_line(fwctl(gateway, "--filelist", "site:gw1"), 1, str(cfg), "[site.gw1]", "'port'")
    cfg.write_text('[site.gw1]\nhost = "127.0.0.1"\nuser = "u"\n')
    one_line(fwctl(gateway, "--filelist", "site:gw1"), 1, "[site.gw1]", "missing key 'store'")
    # A gateway's name is its folder in a fan-out: one that would lead out of it is refused.
    cfg.write_text('[site."../up"]\nhost = "127.0.0.1"\nuser = "u"\nstore = "/s"\n')
    one_line(fwctl(gateway, "--filelist", "site:gw1"), 1, "[site.../up]", "'../up' cannot name a gateway")


def test_a_missing_remote_file_is_named_and_leaves_nothing(gateway, tmp_path):
    inventory(gateway)
    one_line(
        fwctl(gateway, "--filedownload", "nothere.cap", str(tmp_path / "x.cap"), "site:gw1"),
        1,
        "site:gw1",
        f"'nothere.cap': no such file in the store {gateway['store']}",
    )
    assert os.listdir(tmp_path) == []


def test_an_existing_destination_needs_force(gateway, tmp_path):
    inventory(gateway)
    dest = tmp_path / "s.cap"
    dest.write_bytes(b"old")
    one_line(
        fwctl(gateway, "--filedownload", "small.cap", str(dest), "site:gw1"), 1, "already exists", "--force"
    )
    assert dest.read_bytes() == b"old"
    done = fwctl(gateway, "--filedownload", "small.cap", str(dest), "site:gw1", "--force")
    assert done.returncode == 0, done.stderr
    assert dest.read_bytes() == b"pcap" * 1000
    assert os.listdir(tmp_path) == ["s.cap"]


def test_fan_out_fetches_the_good_gateways_and_names_the_broken_ones(gateway, tmp_path):
    port, store = gateway["server"].port, gateway["store"]
    (tmp_path / "gw2").mkdir()  # there before: kept, even though gw2 fails below
    fleet(gateway, ("gw1", port, store), ("gw2", port, "/no/store"), ("gw3", sshd.free_port(), store))
    done = fwctl(gateway, "--filedownload", "small.cap", str(tmp_path), "site:*")
    assert done.returncode == 1
    # A failed gateway leaves no folder of its own making.
    assert sorted(os.listdir(tmp_path)) == ["gw1", "gw2"]
    assert (tmp_path / "gw1" / "small.cap").read_bytes() == b"pcap" * 1000
    assert os.listdir(tmp_path / "gw2") == []
    errors = done.stderr.splitlines()
    assert len(errors) == 3 and "Traceback" not in done.stderr, done.stderr
    assert "site:gw2" in errors[0] and "'small.cap': no such file in the store /no/store" in errors[0]
    assert "site:gw3" in errors[1] and "unreachable" in errors[1]
    assert errors[2] == "1 of 3 gateways fetched"


@pytest.mark.parametrize(
    ("dest", "target", "code", "needle"),
    [
        ("nodir/x.cap", "site:gw1", 1, "'{d}/nodir': no such folder"),
        ("newdir/", "site:gw1", 1, "'{d}/newdir/': no such folder"),  # never a file named newdir
        ("plain/", "site:gw1", 1, "'{d}/plain/': not a folder"),
        ("plain/x.cap", "site:gw1", 1, "'{d}/plain': not a folder"),
        ("taken", "site:gw1", 1, "'{d}/taken/small.cap': is a folder"),
        ("nodir", "site:*", 1, "'{d}/nodir': no such folder (with site:* the destination is a folder"),
        ("plain", "site:*", 1, "'{d}/plain': not a folder (with site:* the destination is a folder"),
        ("", "site:gw1", 2, "'': empty destination"),
    ],
)
def test_a_bad_destination_is_one_line_naming_it_before_any_gateway(
    gateway, tmp_path, dest, target, code, needle
):
    # The gateway's port is closed: had fwctl connected before looking at the destination, the line
    # would blame the gateway.
    fleet(gateway, ("gw1", sshd.free_port(), "/s"))
    (tmp_path / "plain").write_bytes(b"keep")
    (tmp_path / "taken" / "small.cap").mkdir(parents=True)
    before = sorted(tmp_path.rglob("*"))
    done = fwctl(gateway, "--filedownload", "small.cap", f"{tmp_path}/{dest}" if dest else "", target)
    one_line(done, code, needle.format(d=tmp_path))
    assert "site:gw1" not in done.stderr and "unreachable" not in done.stderr
    assert sorted(tmp_path.rglob("*")) == before
    assert (tmp_path / "plain").read_bytes() == b"keep"


def test_a_folder_or_a_name_ending_in_slash_means_into_that_folder(gateway, tmp_path):
    inventory(gateway)
    into = tmp_path / "into"
    into.mkdir()
    done = fwctl(gateway, "--filedownload", "small.cap", str(into), "site:gw1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"site:gw1: {into / 'small.cap'}: 4000 bytes")
    one_line(
        fwctl(gateway, "--filedownload", "small.cap", f"{into}/", "site:gw1"),
        1,
        f"'{into / 'small.cap'}': already exists (--force replaces it)",
    )
    done = fwctl(gateway, "--force", "--filedownload", "small.cap", f"{into}/", "site:gw1")
    assert done.returncode == 0, done.stderr
    assert os.listdir(into) == ["small.cap"] and (into / "small.cap").read_bytes() == b"pcap" * 1000
    assert sorted(os.listdir(tmp_path)) == ["into"]


def test_filelist_of_every_gateway_lists_the_good_and_names_each_failure(gateway):
    port, store = gateway["server"].port, gateway["store"]
    fleet(gateway, ("gw1", port, store), ("gw2", sshd.free_port(), store), ("gw3", port, "/no/store"))
    done = fwctl(gateway, "--filelist", "site:*")
    assert done.returncode == 1
    assert [line.split()[:2] for line in done.stdout.splitlines()] == [
        ["site:gw1", "big.cap"],
        ["site:gw1", "small.cap"],
    ]
    errors = done.stderr.splitlines()
    assert len(errors) == 3 and "Traceback" not in done.stderr, done.stderr
    assert "site:gw2" in errors[0] and "unreachable" in errors[0]
    assert "site:gw3" in errors[1] and "no store folder /no/store on the gateway" in errors[1]
    assert errors[2] == "1 of 3 gateways listed"


def test_the_python_api_lists_each_gateway_or_its_error(gateway, monkeypatch):
    import pcapdump

    monkeypatch.setenv("HOME", str(gateway["home"]))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("PCAPDUMP_GATEWAYS", raising=False)
    port, store = gateway["server"].port, gateway["store"]
    fleet(gateway, ("gw1", port, store), ("gw2", sshd.free_port(), store))
    good, bad = pcapdump.fwctl.listings("site:*")
    assert (good.target, [f["name"] for f in good.files], good.error) == (
        "site:gw1",
        ["big.cap", "small.cap"],
        None,
    )
    assert (bad.target, bad.files) == ("site:gw2", []) and isinstance(bad.error, pcapdump.UnreachableError)
    with pytest.raises(pcapdump.UnreachableError, match="site:gw2"):
        pcapdump.fwctl.filelist("site:*")


def test_force_and_timeout_are_named_as_python_in_the_api_and_as_options_by_the_command(
    gateway, tmp_path, monkeypatch
):
    import pcapdump

    monkeypatch.setenv("HOME", str(gateway["home"]))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("PCAPDUMP_GATEWAYS", raising=False)
    inventory(gateway)
    dest = tmp_path / "s.cap"
    dest.write_bytes(b"old")
    with pytest.raises(pcapdump.DestinationExistsError) as exists:
        pcapdump.fwctl.download("small.cap", dest, "site:gw1")
    assert str(exists.value) == f"'{dest}': already exists (force=True replaces it)"
    assert exists.value.path == str(dest)
    done = fwctl(gateway, "--filedownload", "small.cap", str(dest), "site:gw1")
    one_line(done, 1, f"'{dest}': already exists (--force replaces it)")
    assert "force=True" not in done.stderr

    # A gateway that takes the connection and says nothing: stalled while connecting.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        fleet(gateway, ("gw1", silent.getsockname()[1], "/s"))
        with pytest.raises(pcapdump.StalledError) as stalled:
            pcapdump.fwctl.download("small.cap", tmp_path / "t.cap", "site:gw1", timeout=1)
        assert str(stalled.value).endswith(": stalled: nothing came for 1 s (timeout=1)")
        assert stalled.value.seconds == 1
        done = fwctl(gateway, "--timeout", "1", "--filelist", "site:gw1")
        one_line(done, 1, "site:gw1 (", ": stalled: nothing came for 1 s (--timeout)")
        assert "timeout=" not in done.stderr
    assert sorted(os.listdir(tmp_path)) == ["s.cap"] and dest.read_bytes() == b"old"


@pytest.mark.portable
def test_star_makes_a_folder_per_gateway_for_the_local_store_too(tmp_path):
    home = tmp_path / "pdhome"
    (home / "store").mkdir(parents=True)
    (home / "store" / "mine.cap").write_bytes(b"x" * 100)
    env = {**os.environ, "PCAPDUMP_HOME": str(home), "HOME": str(tmp_path)}
    out = tmp_path / "out"
    out.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([FWCTL_EXE, *args], capture_output=True, text=True, env=env, check=False)

    done = run("--filedownload", "mine.cap", str(out), "local:*")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"local: {out / 'local' / 'mine.cap'}: 100 bytes\n"
    assert (out / "local" / "mine.cap").read_bytes() == b"x" * 100
    empty = tmp_path / "empty"
    empty.mkdir()
    done = run("--filedownload", "nothere.cap", str(empty), "local:*")
    one_line(done, 1, f"local: 'nothere.cap': no such file in the store {home / 'store'}")
    assert os.listdir(empty) == []  # the failed copy left no folder


def test_a_per_gateway_folder_planted_as_another_users_link_is_refused(tmp_path):
    """In a shared sticky folder, another user links `<dest>/local` to a folder of root's: nothing is
    written through the link."""
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("CI runs as root: acting as another user must be possible")
        pytest.skip("needs root to act as another user")
    home = tmp_path / "pdhome"
    (home / "store").mkdir(parents=True)
    (home / "store" / "mine.cap").write_bytes(b"x" * 100)
    shared, private = tmp_path / "shared", tmp_path / "rootonly"
    shared.mkdir(mode=0o1777)
    shared.chmod(0o1777)
    private.mkdir(mode=0o700)
    planted = shared / "local"
    planted.symlink_to(private)
    os.lchown(planted, 65534, 65534)
    env = {**os.environ, "PCAPDUMP_HOME": str(home), "HOME": str(tmp_path)}
    done = subprocess.run(
        [FWCTL_EXE, "--filedownload", "mine.cap", f"{shared}/", "local:*"],
        capture_output=True,
        text=True,
        env=env,
    )
    one_line(done, 1, f"'{planted}': a symbolic link of another user (uid 65534)")
    assert os.listdir(private) == []


@pytest.mark.portable
def test_one_dash_options_get_the_spelling_to_type(tmp_path):
    for words in (["-filelist", "site:gw1"], ["-filedownload", "a.cap", "b.cap", "site:gw1"]):
        done = subprocess.run(
            [FWCTL_EXE, *words], capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path
        )
        one_line(done, 2, f"'{words[0]}'", f"did you mean -{words[0]}?")


@pytest.mark.portable
def test_the_local_data_source_needs_no_ssh(tmp_path):
    home = tmp_path / "pdhome"
    (home / "store").mkdir(parents=True)
    (home / "store" / "mine.cap").write_bytes(b"x" * 100)
    env_home = {"PCAPDUMP_HOME": str(home)}
    env = {**os.environ, **env_home, "HOME": str(tmp_path)}
    done = subprocess.run(
        [FWCTL_EXE, "--filedownload", "mine.cap", str(tmp_path / "got.cap"), "local:this"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "got.cap").read_bytes() == b"x" * 100
    listed = subprocess.run([FWCTL_EXE, "--filelist", "local:this"], capture_output=True, text=True, env=env)
    assert listed.stdout.split()[1] == "mine.cap"


@pytest.mark.portable
def test_a_destination_that_is_a_link_or_in_no_folder_is_one_line(tmp_path):
    home = tmp_path / "pdhome"
    (home / "store").mkdir(parents=True)
    (home / "store" / "mine.cap").write_bytes(b"x" * 100)
    env = {**os.environ, "PCAPDUMP_HOME": str(home), "HOME": str(tmp_path)}
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    link = tmp_path / "link.cap"
    link.symlink_to(victim)
    cases = [
        ([str(tmp_path / "no" / "such" / "got.cap")], "no such folder"),
        ([str(link)], "not a regular file"),
    ]
    for dest, needle in cases:
        done = subprocess.run(
            [FWCTL_EXE, "--force", "--filedownload", "mine.cap", *dest, "local:this"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        one_line(done, 1, needle)
    assert link.is_symlink() and victim.read_bytes() == b"keep"
    assert not (tmp_path / "no").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="makes a folder of another user")
def test_a_download_into_a_folder_others_can_change_is_refused(tmp_path):
    home = tmp_path / "pdhome"
    (home / "store").mkdir(parents=True)
    (home / "store" / "mine.cap").write_bytes(b"x" * 100)
    env = {**os.environ, "PCAPDUMP_HOME": str(home), "HOME": str(tmp_path)}
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    done = subprocess.run(
        [FWCTL_EXE, "--filedownload", "mine.cap", str(theirs / "got.cap"), "local:this"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    one_line(done, 1, "others can change this folder")
    assert os.listdir(theirs) == []


def big_download_under_way(
    gateway, into: Path, *options: str, name: str = "big.cap", target: str = "site:gw1"
) -> subprocess.Popen[str]:
    """fwctl fetching `name` into `into` (the folder of `site:*`), returned once its temporary file exists."""
    inventory(gateway)
    env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "PCAPDUMP_GATEWAYS")}
    env["HOME"] = str(gateway["home"])
    dest = into if target.endswith(":*") else into / name
    proc = subprocess.Popen(
        [FWCTL_EXE, *options, "--filedownload", name, str(dest), target],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )

    def receiving() -> bool:
        # Data in the landing folder (made before connecting): the gateway's session is up and sending.
        with contextlib.suppress(OSError):
            for landing in into.rglob(".*.part"):
                if any(f.stat().st_size > 0 for f in landing.iterdir()):
                    return True
        return False

    wait_until(receiving, seconds=30, every=0.002)
    return proc


def test_sshd_killed_mid_transfer_leaves_nothing(gateway, tmp_path):
    proc = big_download_under_way(gateway, tmp_path)
    gateway["server"].kill_all()
    _, err = proc.communicate(timeout=60)
    try:
        if proc.returncode == 0:
            pytest.skip("the transfer finished before sshd could be killed")
        assert proc.returncode == 1 and "Traceback" not in err, err
        assert os.listdir(tmp_path) == []
    finally:
        client_pub = (gateway["home"] / ".ssh" / "id_ed25519.pub").read_text()
        gateway["server"] = sshd.start(gateway["root"] / f"server-{time.monotonic_ns()}", [client_pub])
        (gateway["home"] / ".ssh" / "known_hosts").write_text(gateway["server"].host_key_line + "\n")


def test_a_stalled_gateway_ends_the_download_within_its_timeout(gateway, tmp_path):
    huge = gateway["store"] / "huge.cap"
    with open(huge, "wb") as f:  # sparse: seconds to send, no disk
        f.truncate(4 << 30)
    proc = big_download_under_way(gateway, tmp_path, "--timeout", "3", name="huge.cap")
    sessions = sshd.descendants(gateway["server"].proc.pid)
    for pid in sessions:
        os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - started
    finally:
        for pid in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        huge.unlink()
    one_line(subprocess.CompletedProcess([], proc.returncode, "", err), 1, "stalled", "3 s")
    assert took < 3 + 5
    assert os.listdir(tmp_path) == []


def test_what_a_killed_fwctl_left_is_removed_by_the_next(gateway, tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    leftover = tmp_path / f".s.cap.{gone.pid}.0123abcd.part"
    leftover.mkdir(mode=0o700)
    (leftover / "s.cap").write_bytes(b"half")
    living = tmp_path / f".t.cap.{os.getpid()}.0123abcd.part"  # a running fwctl's: kept
    living.mkdir(mode=0o700)
    inventory(gateway)
    done = fwctl(gateway, "--filedownload", "small.cap", str(tmp_path / "s.cap"), "site:gw1")
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(tmp_path)) == [living.name, "s.cap"]


def test_the_python_api(gateway, tmp_path, monkeypatch):
    import pcapdump

    inventory(gateway)
    monkeypatch.setenv("HOME", str(gateway["home"]))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("PCAPDUMP_GATEWAYS", raising=False)
    assert [f["name"] for f in pcapdump.fwctl.filelist("site:gw1")] == ["big.cap", "small.cap"]
    (got,) = pcapdump.fwctl.download("small.cap", tmp_path / "s.cap", "site:gw1")
    assert (got.target, got.size, got.error) == ("site:gw1", 4000, None)
    assert (tmp_path / "s.cap").read_bytes() == b"pcap" * 1000
    with pytest.raises(pcapdump.fwctl.FetchError, match="already exists"):
        pcapdump.fwctl.download("small.cap", tmp_path / "s.cap", "site:gw1")
    with pytest.raises(pcapdump.UsageError, match="8 characters"):
        pcapdump.fwctl.download("../etc", tmp_path / "x", "site:gw1")


def test_the_python_api_raises_each_failure_by_kind(gateway, tmp_path, monkeypatch):
    import pcapdump

    monkeypatch.setenv("HOME", str(gateway["home"]))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("PCAPDUMP_GATEWAYS", raising=False)
    fetch = pcapdump.fwctl.download
    inventory(gateway)
    for target in ("lab:gw1", "site:gw9"):
        with pytest.raises(pcapdump.UnknownGatewayError) as unknown:
            fetch("small.cap", tmp_path / "x.cap", target)
        assert unknown.value.target == target
    with pytest.raises(pcapdump.RemoteFileNotFoundError):
        fetch("nothere.cap", tmp_path / "x.cap", "site:gw1")

    other_pub = sshd.keygen(tmp_path / "other_host_key").split()
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{gateway['server'].port} {other_pub[0]} {other_pub[1]}\n")
    inventory(gateway, f'known_hosts = "{known}"\n')
    with pytest.raises(pcapdump.HostKeyError):
        fetch("small.cap", tmp_path / "x.cap", "site:gw1")

    sshd.keygen(tmp_path / "stranger")
    inventory(gateway, f'identity = "{tmp_path / "stranger"}"\n')
    with pytest.raises(pcapdump.AuthenticationError):
        fetch("small.cap", tmp_path / "x.cap", "site:gw1")

    cfg = gateway["home"] / ".config" / "pcapdump" / "gateways.toml"
    cfg.write_text(f'[site.gw1]\nhost = "127.0.0.1"\nport = {sshd.free_port()}\nuser = "u"\nstore = "/s"\n')
    with pytest.raises(pcapdump.UnreachableError):
        fetch("small.cap", tmp_path / "x.cap", "site:gw1")
    cfg.write_text('[site.gw1]\nhost = "127.0.0.1"\nuser = "u"\n')
    with pytest.raises(pcapdump.InventoryError):
        fetch("small.cap", tmp_path / "x.cap", "site:gw1")
    assert sorted(os.listdir(tmp_path)) == [
        "known_hosts",
        "other_host_key",
        "other_host_key.pub",
        "stranger",
        "stranger.pub",
    ]


@pytest.mark.parametrize("target", ["site:gw1", "site:*"])
def test_ctrl_c_mid_transfer_leaves_nothing(gateway, tmp_path, target):
    # With site:*, not even the gateway's folder that fwctl made.
    proc = big_download_under_way(gateway, tmp_path, target=target)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the transfer finished before Ctrl-C")
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert os.listdir(tmp_path) == []


def test_loading_fwctl_runs_no_compiler():
    # asyncssh's own search for liboqs would run gcc and ld at import, on every command.
    probe = (
        "import sys; seen = []\n"
        "sys.addaudithook(lambda event, a: seen.append(a[0]) if event == 'subprocess.Popen' else None)\n"
        "import pcapdump.fwctl, ctypes.util\n"
        "print(seen, ctypes.util.find_library.__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    programs, find_library_home = out.rsplit(" ", 1)
    assert "gcc" not in programs and "'ld'" not in programs, programs
    assert find_library_home.strip() == "ctypes.util"  # find_library itself is left as it was


def test_fwctl_help_has_one_usage_line():
    done = subprocess.run([FWCTL_EXE, "--help"], capture_output=True, text=True, check=True)
    assert done.stdout.count("Usage:") == 1 and "--filedownload" in done.stdout.splitlines()[0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_mid_download_ends_it_and_leaves_nothing(gateway, tmp_path, sig):
    """A signal that ends fwctl arrives while the file is coming (here held back: the gateway's session is
    stopped): it ends as Ctrl-C does, at once, and the landing folder goes with it."""
    huge = gateway["store"] / "huge.cap"
    with open(huge, "wb") as f:
        f.truncate(4 << 30)
    proc = big_download_under_way(gateway, tmp_path, name="huge.cap")
    sessions = sshd.descendants(gateway["server"].proc.pid)
    for pid in sessions:
        os.kill(pid, signal.SIGSTOP)
    try:
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
    finally:
        for pid in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        huge.unlink()
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert os.listdir(tmp_path) == []
