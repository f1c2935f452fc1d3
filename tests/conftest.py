from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

IN_CI = os.environ.get("CI") == "true"


def need_tool(name: str) -> str:
    """The path of an external oracle; in CI a missing one is a failure, not a skip."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is not installed; .ci/run installs it")
        pytest.skip(f"{name} is not installed")
    return path


def wait_until(condition: Callable[[], object], seconds: float = 5, every: float = 0.05) -> bool:
    """Poll `condition` until it holds or `seconds` pass; whether it holds in the end."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(every)
    return bool(condition())


def pcapdump_exe() -> str:
    """The installed console command (tests run it as a user would)."""
    exe = shutil.which("pcapdump", path=str(Path(sys.executable).parent)) or shutil.which("pcapdump")
    assert exe, "the pcapdump command is not installed in this environment"
    return exe


def run_pcapdump(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "TZ": "UTC", **(env or {})}
    return subprocess.run(
        [pcapdump_exe(), *args], capture_output=True, text=True, timeout=timeout, env=full_env, check=False
    )


@pytest.fixture(scope="session")
def corpus_frames():
    import corpus

    return corpus.build()


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory, corpus_frames) -> Path:
    import corpus

    path = tmp_path_factory.mktemp("corpus") / "corpus.pcap"
    corpus.write(path, corpus_frames)
    return path


@pytest.fixture(scope="session")
def testnet():
    """Two network namespaces joined by a veth pair, capture side `int` (see netns.py). Needs root; in CI
    (which runs as root) anything that stops it from being made is a failure, not a skip."""
    import netns

    problem = None
    if os.geteuid() != 0:
        problem = "live capture tests need root (network namespaces, packet sockets)"
    elif shutil.which("ip") is None:
        problem = "live capture tests need iproute2's `ip`"
    if problem:
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)
    net = netns.create()
    try:
        yield net
    finally:
        netns.destroy(net)


@pytest.fixture
def pd(testnet, tmp_path):
    """A console session with its own home; its agent is ended afterwards, whatever the test did."""
    import signal

    from session import Session, alive

    session = Session(testnet, tmp_path / "home")
    yield session
    pid = session.agent_pid()
    if pid and alive(pid):
        os.kill(pid, signal.SIGCONT)  # a test may have stopped it
    session("cleanup", ok=False)
    if pid and alive(pid):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session", autouse=True)
def unrelated_agent(tmp_path_factory):
    """An agent the suite did not make its own: another user's, with another PCAPDUMP_HOME, running
    throughout. No test may touch it; it must be alive and its home intact at the end."""
    home = tmp_path_factory.mktemp("unrelated") / "home"
    env = {**os.environ, "PCAPDUMP_HOME": str(home)}
    agent = subprocess.Popen([pcapdump_exe(), "agent"], env=env, stderr=subprocess.DEVNULL)
    wait_until(lambda: (home / "agent.sock").exists(), seconds=10)
    yield agent
    try:
        assert agent.poll() is None, "a test ended an agent it did not make"
        assert (home / "agent.sock").exists(), "a test removed another agent's socket"
    finally:
        agent.terminate()
        agent.wait(timeout=10)
