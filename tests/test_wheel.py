"""The release wheel (built once by `make wheel`, named by $PCAPDUMP_WHEEL) installs into a fresh venv whose
PATH has no cargo or rustc, carries its stubs and entry points, and works: `pcapdump --version`,
`fwctl --version`, `pcapdump read` on a capture made there. `twine check` passes on it and on the sdist."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pcapdump
import pytest
from conftest import IN_CI

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel() -> Path:
    named = os.environ.get("PCAPDUMP_WHEEL")
    found = [Path(named)] if named else sorted((ROOT / "target" / "wheels").glob("pcapdump-*.whl"))
    if not found or not found[-1].is_file():
        if IN_CI:
            pytest.fail("no wheel: `make test` builds one (make wheel) and names it in PCAPDUMP_WHEEL")
        pytest.skip("no wheel built (make wheel)")
    return found[-1]


def run(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=600, check=False)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_wheel_carries_everything(wheel):
    assert wheel.name.startswith(f"pcapdump-{pcapdump.__version__}-cp311-abi3-")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    for part in ("__init__.py", "py.typed", "_core.pyi", "cli.py", "fwctl.py", "agent.py"):
        assert f"pcapdump/{part}" in names, part
    assert any(n.startswith("pcapdump/_core.") and n.endswith(".so") for n in names)
    entry = entry.replace(" ", "")
    assert "pcapdump=pcapdump.launch:main" in entry and "fwctl=pcapdump.fwctl_cli:main" in entry
    for field in ("Summary: ", "License: MIT", "Classifier: ", "Project-URL: ", "Requires-Python: >=3.11"):
        assert field in meta, field
    assert "Description-Content-Type: text/markdown" in meta and "# pcapdump" in meta


def test_the_wheel_installs_on_glibc_2_17_and_later(wheel):
    # manylinux2014 (= manylinux_2_17): RHEL 7/8/9, Ubuntu 18.04/20.04 and later. The tag in the name is
    # maturin's claim; auditwheel reads the symbol versions the library really needs.
    tag = f"manylinux_2_17_{platform.machine()}"
    assert tag in wheel.name, wheel.name
    shown = run([sys.executable, "-m", "auditwheel", "show", str(wheel)], {**os.environ})
    assert f'"{tag}"' in " ".join(shown.split()), shown


def test_installs_and_runs_without_a_rust_toolchain(wheel, tmp_path):
    base = getattr(sys, "_base_executable", sys.executable)
    venv = tmp_path / "venv"
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=120)
    path = os.pathsep.join([str(venv / "bin"), "/usr/bin", "/bin"])
    assert shutil.which("cargo", path=path) is None and shutil.which("rustc", path=path) is None
    env = {"PATH": path, "HOME": str(tmp_path), "LANG": "C.UTF-8", "TZ": "UTC"}
    # Binary wheels only, for its dependencies too: nothing may need a compiler.
    run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--quiet",
            "--no-cache-dir",
            "--only-binary=:all:",
            str(wheel),
        ],
        env,
    )
    version = run([str(venv / "bin" / "pcapdump"), "--version"], env)
    assert version.strip() == f"pcapdump {pcapdump.__version__} (engine {pcapdump.__version__})"
    assert pcapdump.__version__ in run([str(venv / "bin" / "fwctl"), "--version"], env)
    make = (
        "import pcapdump, struct\n"
        "eth = bytes.fromhex('020000000002020000000001') + b'\\x08\\x00'\n"
        "src, dst = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])\n"
        "ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 28, 1, 0, 64, 17, 0, src, dst)\n"
        "udp = struct.pack('!HHHH', 40000, 53, 8, 0)\n"
        "pcapdump.write('made.cap', [(1_700_000_000_000_000_000 + i, eth + ip + udp) for i in range(3)])\n"
    )
    run([str(venv / "bin" / "python"), "-c", make], env, cwd=tmp_path)
    lines = run(
        [str(venv / "bin" / "pcapdump"), "read", "made.cap", "udp", "dstport", "53"], env, cwd=tmp_path
    )
    assert lines.splitlines() == [
        f"{i} 22:13:20.000000 - -   UDP 198.18.0.1:40000 > 198.18.0.2:53 len=0" for i in (1, 2, 3)
    ]


def test_twine_check_passes_on_the_wheel_and_the_sdist(wheel, tmp_path):
    maturin = shutil.which("maturin", path=str(Path(sys.executable).parent))
    if maturin is None:
        pytest.skip("maturin is not installed here")
    run([maturin, "sdist", "--out", str(tmp_path)], {**os.environ}, cwd=ROOT)
    (sdist,) = tmp_path.glob("pcapdump-*.tar.gz")
    out = run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)], {**os.environ})
    assert out.count("PASSED") == 2
