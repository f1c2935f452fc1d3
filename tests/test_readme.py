"""The README's Python snippets run as written: the offline one from a copy of the checkout's layout, the
live one in the capture namespace with traffic that fills its count."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest
from netns import CAP_V4

ROOT = Path(__file__).resolve().parent.parent


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def run_in(folder: Path, *codes: str) -> None:
    """Run snippets one after the other in one namespace, as a reader types them into one session."""
    here = Path.cwd()
    os.chdir(folder)
    session: dict[str, object] = {}
    try:
        for code in codes:
            exec(compile(code, "README.md", "exec"), session)
    finally:
        os.chdir(here)


@pytest.mark.portable
def test_the_offline_snippet_runs_as_written(tmp_path, capsys):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    run_in(tmp_path, snippets()[0])
    assert (tmp_path / "out.cap").exists()
    assert "TCP 198.18.0.1" in capsys.readouterr().out


@pytest.mark.live
def test_the_live_snippet_runs_as_written(testnet, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PCAPDUMP_HOME", str(tmp_path / "home"))
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    # 100 SYNs from 198.18.0.1 fill the snippet's count, a little after its capture has started.
    sender = threading.Timer(1.0, testnet.connect_tcp, args=(CAP_V4, 80, 100))
    sender.start()
    try:
        with testnet.on_capture_side():
            run_in(tmp_path, *snippets())
    finally:
        sender.join()
    out = capsys.readouterr().out
    assert out.count(" int in  TCP 198.18.0.1:") == 100
    assert "'packets': 100" in out
    assert (tmp_path / "capture.cap").exists()
