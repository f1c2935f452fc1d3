"""Typed errors end to end: each kind of the engine is one Python class, the agent's replies carry the
kind, and the console raises by kind. Messages stay one line naming the culprit."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pcapdump
import pytest
from pcapdump import _core, errors
from pcapdump.protocol import error_reply, reply_error

pytestmark = pytest.mark.portable


def test_every_kind_of_the_engine_has_its_class():
    # output_closed is not an error for the user: it becomes Python's BrokenPipeError, ended quietly.
    missing = set(_core.error_kinds()) - set(errors.BY_KIND) - {"output_closed"}
    assert missing == set()


def test_kinds_are_unique_and_classes_are_pcapdump_errors():
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, Exception)]
    kinds = [c.kind for c in classes]
    assert len(kinds) == len(set(kinds)), kinds
    assert all(issubclass(c, errors.PcapdumpError) for c in classes)
    for name in errors.__all__:
        if name.endswith("Error"):
            assert getattr(pcapdump, name) is getattr(errors, name), name


@pytest.mark.parametrize(
    ("error", "attrs"),
    [
        (errors.NoSuchInterfaceError("no such interface 'nosuch0'", "nosuch0"), {"iface": "nosuch0"}),
        (errors.FilterError("'port 70000': a port 0…65535", "port 70000"), {"token": "port 70000"}),
        (errors.UnknownGatewayError("'x:y': unknown data source", "x:y"), {"target": "x:y"}),
        (errors.AgentGoneError("the agent is gone"), {}),
        (errors.CaptureError("'int' is already capturing", "int"), {"iface": "int"}),
        (errors.DestinationError("'x/': no such folder", "x/"), {"path": "x/"}),
        (errors.DestinationExistsError(path="s.cap"), {"path": "s.cap"}),
        (
            errors.StalledError(gateway="site:gw1 (u@h:22)", seconds=2.5),
            {"gateway": "site:gw1 (u@h:22)", "seconds": 2.5},
        ),
    ],
)
def test_a_reply_carries_the_class_and_its_details(error, attrs):
    reply = json.loads(json.dumps(error_reply(error)))
    assert reply["error"] == error.kind and reply["message"] == str(error)
    assert reply["exit"] == error.exit_code
    back = reply_error(reply)
    assert type(back) is type(error) and str(back) == str(error)
    for name, value in attrs.items():
        assert getattr(back, name) == value


def test_fetch_errors_say_force_and_timeout_as_python_or_as_asked():
    exists = errors.DestinationExistsError(path="s.cap")
    assert str(exists) == "'s.cap': already exists (force=True replaces it)"
    assert exists.worded("--force") == "'s.cap': already exists (--force replaces it)"
    stalled = errors.StalledError(gateway="site:gw1 (u@h:22)", seconds=3.0)
    assert str(stalled) == "site:gw1 (u@h:22): stalled: nothing came for 3 s (timeout=3)"
    assert stalled.worded("--timeout") == "site:gw1 (u@h:22): stalled: nothing came for 3 s (--timeout)"
    assert isinstance(exists, errors.DestinationError) and isinstance(stalled, errors.UnreachableError)


def test_an_unknown_kind_is_still_an_error_with_its_message():
    back = reply_error({"ok": False, "error": "from_a_newer_agent", "message": "something new"})
    assert type(back) is errors.PcapdumpError and str(back) == "something new"


def test_usage_errors_exit_2_and_the_others_1():
    assert errors.UsageError.exit_code == errors.FilterError.exit_code == 2
    assert errors.UnknownGatewayError.exit_code == 2
    assert errors.CaptureError.exit_code == errors.FetchError.exit_code == errors.AgentError.exit_code == 1


def test_filter_errors_name_the_token():
    with pytest.raises(pcapdump.FilterError) as e:
        pcapdump.Filter("ipsrc 300.1.1.1 tcp")
    assert e.value.token == "ipsrc 300.1.1.1"
    assert str(e.value) == "'ipsrc 300.1.1.1': not an IPv4 or IPv6 address"
    assert isinstance(e.value, ValueError) and isinstance(e.value, pcapdump.UsageError)


def test_a_missing_file_is_a_capture_file_error(tmp_path):
    with pytest.raises(pcapdump.CaptureFileError) as e:
        list(pcapdump.read(tmp_path / "nothing.cap"))
    assert str(e.value) == f"'{tmp_path / 'nothing.cap'}': no such file"


def test_an_unwritable_file_is_a_capture_file_error(tmp_path):
    with pytest.raises(pcapdump.CaptureFileError) as e:
        pcapdump.write(tmp_path / "no" / "such" / "out.cap", [(0, b"\0" * 60)])
    assert "cannot write" in str(e.value) and "\n" not in str(e.value)


# --- the console, without an agent or with a broken one ---------------------------------------------


def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir(mode=0o700)
    return h


def test_no_agent_is_its_own_class(tmp_path):
    console = pcapdump.Console(home(tmp_path))
    with pytest.raises(pcapdump.AgentNotRunningError):
        console.write("int", "x.cap")
    # Verbs that mean "nothing to do" without an agent do not raise.
    assert console.status()["captures"] == []
    assert console.stop() == [] and console.wipe() == 0 and console.show() == []


def test_a_socket_nobody_listens_on_is_a_gone_agent(tmp_path):
    h = home(tmp_path)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(h / "agent.sock"))
    dead.close()  # the socket file stays, as a killed agent leaves it, with its pid file
    (h / "agent.pid").write_text("999999999\n")
    console = pcapdump.Console(h)
    with pytest.raises(pcapdump.AgentGoneError) as e:
        console.write("int", "x.cap")
    assert "gone" in str(e.value) and "999999999" in str(e.value)
    # Said once: afterwards there is simply no agent (the next start replaces the socket).
    with pytest.raises(pcapdump.AgentNotRunningError):
        console.write("int", "x.cap")


def test_an_agent_that_does_not_answer_is_unresponsive(tmp_path):
    h = home(tmp_path)
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(str(h / "agent.sock"))
    silent.listen(4)  # accepts connections (the kernel does) but never answers
    try:
        started = time.monotonic()
        with pytest.raises(pcapdump.AgentUnresponsiveError) as e:
            pcapdump.Console(h).stop("int")
        assert time.monotonic() - started < 10
        assert "did not answer" in str(e.value)
    finally:
        silent.close()


def test_starting_without_privilege_is_a_privilege_error(tmp_path):
    # As nobody (dropped inside the interpreter when we are root), before any agent is launched.
    drop = "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n" if os.geteuid() == 0 else ""
    script = (
        f"import os, pcapdump\n{drop}"
        "try:\n"
        f"    pcapdump.Console({str(tmp_path / 'home')!r}).start('lo')\n"
        "except pcapdump.PrivilegeError as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert done.stdout.startswith("PrivilegeError "), done
    assert "CAP_NET_RAW" in done.stdout
    assert not (tmp_path / "home").exists()
