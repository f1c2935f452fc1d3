"""fwctl benchmark: a 50 MB download with `fwctl --filedownload` against `scp`, from the same sshd.

  python bench/fwctl.py [--mb 50] [--rounds 5]

Starts an OpenSSH sshd on 127.0.0.1 with fresh keys (tests/sshd.py), then alternates the two whole
commands (fwctl, scp, fwctl, ...) on the same file; prints every run, the medians and their ratio, and
checks that both copies are byte-identical to the source. The same alternation on a 1 KB file splits each
tool's time into a fixed cost (start-up, connection, session) and a transfer rate.
"""

from __future__ import annotations

import argparse
import filecmp
import getpass
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import sshd


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    fwctl = Path(sys.executable).parent / "fwctl"
    if not fwctl.exists() or not shutil.which("scp") or not Path(sshd.SSHD).exists():
        sys.exit("bench: needs fwctl (pip install .), scp and sshd (openssh-client, openssh-server)")
    work = Path(tempfile.mkdtemp(prefix="pcapdump-fwctl-"))
    server = None
    try:
        home = work / "home"
        (home / ".ssh").mkdir(parents=True)
        key = home / ".ssh" / "id_ed25519"
        server = sshd.start(work / "server", [sshd.keygen(key)])
        known = home / ".ssh" / "known_hosts"
        known.write_text(server.host_key_line + "\n")
        store = work / "store"
        store.mkdir()
        source = store / "big.cap"
        source.write_bytes(os.urandom(args.mb * 1024 * 1024))
        (home / ".config" / "pcapdump").mkdir(parents=True)
        (home / ".config" / "pcapdump" / "gateways.toml").write_text(
            f'[bench.gw]\nhost = "127.0.0.1"\nport = {server.port}\n'
            f'user = "{getpass.getuser()}"\nstore = "{store}"\n'
        )
        env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "PCAPDUMP_GATEWAYS")}
        env["HOME"] = str(home)
        ours_dest, scp_dest = work / "ours.cap", work / "scp.cap"
        (store / "tiny.cap").write_bytes(os.urandom(1024))

        def commands(name: str) -> tuple[list[str], list[str]]:
            """fwctl's and scp's command for the store file `name`."""
            return (
                [str(fwctl), "--filedownload", name, str(ours_dest), "bench:gw", "--force"],
                [
                    "scp", "-q", "-B", "-P", str(server.port), "-i", str(key),
                    "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
                    f"{getpass.getuser()}@127.0.0.1:{store / name}", str(scp_dest),
                ],
            )  # fmt: skip

        ours, theirs, ours_tiny, theirs_tiny = [], [], [], []
        for _ in range(args.rounds):
            for (fw, sc), ours_runs, theirs_runs in (
                (commands("tiny.cap"), ours_tiny, theirs_tiny),
                (commands(source.name), ours, theirs),
            ):
                ours_runs.append(timed(fw, env))
                theirs_runs.append(timed(sc, env))
        same = filecmp.cmp(ours_dest, source, shallow=False) and filecmp.cmp(scp_dest, source, shallow=False)
        version = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
        print(f"{args.mb} MB over loopback from one sshd ({version})")
        print(f"whole-command wall time, {args.rounds} alternating rounds")
        for name, runs in (("fwctl", ours), ("scp", theirs)):
            rate = args.mb * 1.048576 / statistics.median(runs)
            print(f"  {name:<6} median {statistics.median(runs):6.3f} s ({rate:6.1f} MB/s)  runs "
                  + ", ".join(f"{t:.3f}" for t in runs))  # fmt: skip
        print(f"split, from the medians of {args.rounds} alternating runs on a 1 KB file:")
        for name, runs, tiny_runs in (("fwctl", ours, ours_tiny), ("scp", theirs, theirs_tiny)):
            fixed = statistics.median(tiny_runs)
            rate = args.mb * 1.048576 / max(statistics.median(runs) - fixed, 1e-9)
            print(f"  {name:<6} fixed cost {fixed:6.3f} s, then {rate:6.1f} MB/s")
        ratio = statistics.median(theirs) / statistics.median(ours)
        print(
            f"  ratio  scp / fwctl = {ratio:.2f}x (target ≥ 1); copies {'identical' if same else 'DIFFERENT'}"
        )
        if not same:
            sys.exit("bench: a copy differs from the source")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
