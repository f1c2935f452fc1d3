"""The agent as a process of its own: how it ends. No capture, no privilege needed."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

import pytest
from pcapdump.console import Console
from pcapdump.home import Home

pytestmark = pytest.mark.portable

AGENT = "import sys; from pcapdump import agent, home; agent.run_foreground(home.Home.from_env(sys.argv[1]))"


def cleanup_seconds(root) -> float:
    """How long `Console.cleanup()` takes: the request, then the wait until the agent lets go of its home."""
    home = Home.from_env(root)
    proc = subprocess.Popen([sys.executable, "-c", AGENT, str(home.root)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not home.socket.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        began = time.monotonic()
        assert Console(home=str(home.root)).cleanup()["agent"] is True
        took = time.monotonic() - began
        assert proc.wait(timeout=10) == 0
        return took
    finally:
        proc.kill()
        proc.wait()


def test_cleanup_ends_the_agent_at_once_not_at_its_next_poll(tmp_path):
    """The agent's accept loop also wakes every half second to look at its socket file; `cleanup` must
    not wait for that wake-up (an agent that did would take 0.25 s more on average). The median of nine
    rounds keeps a loaded machine's odd slow round out of it."""
    rounds = [cleanup_seconds(tmp_path / f"home{i}") for i in range(9)]
    assert statistics.median(rounds) < 0.15, rounds
