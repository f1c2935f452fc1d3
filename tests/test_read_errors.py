"""Bad input: one line naming the culprit and what was expected, exit 2 for usage, 1 for runtime, no
traceback, no output file left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pcapdump
import pytest
from conftest import pcapdump_exe, run_pcapdump

pytestmark = pytest.mark.portable

USAGE = [
    (["ipsrc", "300.1.1.1"], "'ipsrc 300.1.1.1': not an IPv4 or IPv6 address"),
    (["-ipsrc=300.1.1.1"], "'-ipsrc=300.1.1.1': not an IPv4 or IPv6 address"),
    (["ipdest", "198.18.0.0/33"], "'ipdest 198.18.0.0/33': prefix length must be 0…32 for IPv4"),
    (["ip", "2001:db8::/129"], "'ip 2001:db8::/129': prefix length must be 0…128 for IPv6"),
    (
        ["ip", "198.18.0.1/15"],
        "'ip 198.18.0.1/15': host bits set (expected a network address such as 198.18.0.0/15)",
    ),
    (["eth", "aa:bb:cc:dd:ee"], "'eth aa:bb:cc:dd:ee': not a MAC address"),
    (["ethsrc", "zz:bb:cc:dd:ee:ff"], "'ethsrc zz:bb:cc:dd:ee:ff': not a MAC address"),
    (["port", "65536"], "'port 65536': not a port (expected 0…65535 or a range such as 8000-8100)"),
    (["srcport", "http"], "'srcport http': not a port"),
    (
        ["destport", "9000-8000"],
        "'destport 9000-8000': reversed port range (expected low-high, such as 8000-9000)",
    ),
    (["proto", "256"], "'proto 256': not an IP protocol"),
    (["proto", "bogus"], "'proto bogus': not an IP protocol"),
    (["vlan", "4096"], "'vlan 4096': not a VLAN id (expected 0…4095)"),
    (["-tcp=1"], "'-tcp=1': tcp takes no value"),
    (["bogus"], "'bogus': not a filter word, and read takes one file"),
    (["-s", "0"], "'-s 0': the snap length must be 1…262144"),
    (["-s=300000"], "'-s=300000': the snap length must be 1…262144"),
    (["-c", "x"], "'-c x': the packet count must be a whole number 1…9223372036854775807"),
    (
        ["-c", "18446744073709551616"],
        "'-c 18446744073709551616': the packet count must be 1…9223372036854775807",
    ),
]


@pytest.mark.parametrize(("words", "message"), USAGE)
def test_bad_words_are_usage_errors(words, message, corpus_file, tmp_path):
    out = tmp_path / "out.cap"
    done = run_pcapdump("read", str(corpus_file), *words, "-w", str(out))
    assert done.returncode == 2
    assert done.stderr.startswith("pcapdump: " + message), done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_missing_value_at_the_end(corpus_file):
    done = run_pcapdump("read", str(corpus_file), "ipsrc")
    assert done.returncode == 2
    assert done.stderr.startswith("pcapdump: 'ipsrc': missing value, expected an IPv4 or IPv6 address")
    done = run_pcapdump("read", str(corpus_file), "-s")
    assert (done.returncode, done.stderr) == (2, "pcapdump: '-s': missing value\n")


def test_missing_command_and_missing_file_argument():
    assert run_pcapdump("tcp").stderr.startswith("pcapdump: missing command (expected one of start, stop")
    done = run_pcapdump("read")
    assert done.returncode == 2 and done.stderr == "pcapdump: 'read': missing file (usage: read <file>)\n"


def write_bytes(tmp_path, name: str, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def pcap_header() -> bytes:
    import struct

    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)


def record(caplen: int, wirelen: int | None = None, data: bytes | None = None) -> bytes:
    import struct

    body = data if data is not None else b"\x00" * caplen
    return struct.pack("<IIII", 1, 0, caplen, wirelen or caplen) + body


RUNTIME = [
    ("missing.cap", None, "no such file"),
    ("text.cap", b"hello, this is not a capture\n", "not a pcap or pcapng file (starts with 0x68656c6c)"),
    ("empty.cap", b"", "empty file (expected a pcap or pcapng capture)"),
    ("head.cap", pcap_header()[:10], "file ends inside record 0"),
    (
        "huge.cap",
        pcap_header() + record(60) + record(300_000, data=b""),
        "record 2 at byte 100 claims 300000 bytes",
    ),
]


@pytest.mark.parametrize(("name", "data", "message"), RUNTIME)
def test_bad_files_are_runtime_errors(name, data, message, tmp_path):
    src = tmp_path / name if data is None else write_bytes(tmp_path, name, data)
    out = tmp_path / "out.cap"
    for extra in ([], ["-w", str(out)]):
        done = run_pcapdump("read", str(src), *extra)
        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith("pcapdump: "), done.stderr
        assert message in done.stderr.splitlines()[-1]
        assert len(done.stderr.splitlines()) == 1
        assert "Traceback" not in done.stderr
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if data is None else [name])


def test_lines_before_the_damage_are_still_printed(tmp_path):
    src = write_bytes(tmp_path, "cut.cap", pcap_header() + record(60) + record(60)[:40])
    done = run_pcapdump("read", str(src))
    assert done.returncode == 1
    assert len(done.stdout.splitlines()) == 1
    assert (
        done.stderr
        == f"pcapdump: '{src}': file ends inside record 2 at byte 100; the capture was cut short\n"
    )


def test_w_of_a_cut_file_keeps_the_packets_before_the_cut_and_says_where(tmp_path):
    # tcpdump -r cut -w out keeps what it could read: so do we, and say so on one line, exit 1.
    src = write_bytes(tmp_path, "cut.cap", pcap_header() + record(60) + record(61) + record(62)[:40])
    out = tmp_path / "out.cap"
    done = run_pcapdump("read", str(src), "-w", str(out))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        f"pcapdump: '{src}': file ends inside record 3 at byte 177; the capture was cut short; "
        f"kept 2 of the 2 packets before the cut in '{out}'\n"
    )
    assert [len(p.data) for p in pcapdump.read(out)] == [60, 61]
    # The output was put in place whole: no temporary file beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.cap", "out.cap"]
    # Cut before any packet was complete: an empty capture, and the same line.
    src = write_bytes(tmp_path, "cut0.cap", pcap_header() + record(62)[:40])
    done = run_pcapdump("read", str(src), "-w", str(out))
    assert done.returncode == 1 and "record 1 at byte 24" in done.stderr and "kept 0 of the 0" in done.stderr
    assert list(pcapdump.read(out)) == []
    # Other damage still leaves nothing.
    out.unlink()
    huge = write_bytes(tmp_path, "huge.cap", pcap_header() + record(60) + record(300_000, data=b""))
    assert run_pcapdump("read", str(huge), "-w", str(out)).returncode == 1
    assert not out.exists()


def test_python_api_raises_typed_errors(tmp_path):
    with pytest.raises(pcapdump.CaptureFileError, match="no such file"):
        list(pcapdump.read(tmp_path / "nope.cap"))
    with pytest.raises(pcapdump.FilterError) as e:
        pcapdump.Filter("vlan 9999")
    assert e.value.token == "vlan 9999"
    assert str(e.value) == "'vlan 9999': not a VLAN id (expected 0…4095)"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_write_error_is_one_line(corpus_file):
    done = run_pcapdump("read", str(corpus_file), "-w", "/dev/full")
    assert done.returncode == 1
    assert done.stderr == "pcapdump: '/dev/full': cannot write: No space left on device (os error 28)\n"


def test_filter_words_refuse_a_link_type_they_cannot_read(tmp_path):
    import struct

    radiotap = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 127) + record(24)
    src = write_bytes(tmp_path, "wifi.cap", radiotap)
    shown = run_pcapdump("read", str(src))
    assert shown.returncode == 0
    assert shown.stdout.endswith("LINK type=127 len=24 (not decoded)\n")
    out = tmp_path / "out.cap"
    done = run_pcapdump("udp", "read", str(src), "-w", str(out))
    assert done.returncode == 1
    assert done.stderr == (
        f"pcapdump: '{src}': filter words cannot look into link type 127 (record 1); "
        "they read Ethernet, Linux cooked, raw IP and BSD loopback frames\n"
    )
    assert not out.exists()
    with pytest.raises(pcapdump.CaptureFileError, match="link type 127"):
        list(pcapdump.read(src, filter="udp"))


@pytest.mark.skipif(sys.platform != "linux", reason="/proc/self/fd links")
def test_w_through_a_link_writes_where_it_leads_and_keeps_the_link(corpus_file, tmp_path):
    # A link of our own to standard output, as /dev/stdout is: renaming over it would replace the link.
    out_link = tmp_path / "mystdout"
    out_link.symlink_to("/proc/self/fd/1")
    with open(tmp_path / "so.bin", "wb") as so:
        done = subprocess.run(
            [sys.executable, "-m", "pcapdump", "read", str(corpus_file), "-c", "3", "-w", str(out_link)],
            stdout=so,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert out_link.is_symlink()
    assert "3 packets" in done.stderr  # the summary goes aside when the packets go to standard output
    assert len(list(pcapdump.read(tmp_path / "so.bin"))) == 3


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX standard output")
def test_w_dash_is_standard_output(corpus_file, tmp_path):
    with open(tmp_path / "so.bin", "wb") as so:
        done = subprocess.run(
            [sys.executable, "-m", "pcapdump", "read", str(corpus_file), "-c", "2", "-w", "-"],
            stdout=so,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "-").exists()
    assert len(list(pcapdump.read(tmp_path / "so.bin"))) == 2


def test_w_dash_writes_to_standard_output_as_it_is(corpus_file, tmp_path):
    """Appended to (`>>`) and written after what the shell wrote before: never reopened and truncated."""
    target = tmp_path / "out.bin"
    target.write_bytes(b"before\n")
    script = f"echo header; '{sys.executable}' -m pcapdump read '{corpus_file}' -c 2 -w -; echo trailer"
    with open(target, "ab") as so:
        done = subprocess.run(["sh", "-c", script], stdout=so, stderr=subprocess.PIPE, timeout=60)
    assert done.returncode == 0, done.stderr
    data = target.read_bytes()
    assert data.startswith(b"before\nheader\n") and data.endswith(b"trailer\n")
    (tmp_path / "mid.pcap").write_bytes(data[len(b"before\nheader\n") : -len(b"trailer\n")])
    assert len(list(pcapdump.read(tmp_path / "mid.pcap"))) == 2


def test_w_dash_into_a_pipe_closed_early_ends_quietly(tmp_path):
    big = tmp_path / "big.pcap"
    pcapdump.write(big, [(i * 1000, bytes(1500)) for i in range(2000)])  # 3 MB: more than a pipe holds
    reader = f"'{sys.executable}' -m pcapdump read '{big}' -w -"
    script = f'{reader} | head -c 100 >/dev/null; echo "${{PIPESTATUS[0]}}"'
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "0" and done.stderr == "", done.stderr


def test_control_characters_in_an_interface_name_do_not_reach_the_terminal(tmp_path):
    packet = pcapdump.Packet(1, bytes(60), iface="ev\x1b[31m\nFAKE LINE\r\a", direction="in")
    path = tmp_path / "names.pcapng"
    pcapdump.write(path, [packet], format="pcapng")
    done = run_pcapdump("read", str(path))
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 1, done.stdout
    assert not any(c in done.stdout for c in "\x1b\r\a") and "ev?[31m?FAKE LINE??" in done.stdout


def test_a_time_zone_that_is_not_text_is_utc_not_a_traceback(corpus_file):
    env = {**os.environ, "TZ": "UTC"}
    utc = subprocess.run([pcapdump_exe(), "read", str(corpus_file), "-c", "2"], capture_output=True, env=env)
    env = {**os.environ, "TZ": os.fsdecode(b"\xff")}
    done = subprocess.run([pcapdump_exe(), "read", str(corpus_file), "-c", "2"], capture_output=True, env=env)
    assert done.returncode == 0 and done.stderr == b"" and done.stdout == utc.stdout
