"""``fwctl``: fetch capture files from gateways. Parses, calls ``pcapdump.fwctl``, prints."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from typing import Any

import click

from . import fwctl
from .errors import DestinationExistsError, PcapdumpError, StalledError, UsageError

# Below this size the time is mostly the SSH handshake, and a rate would say nothing about the link.
RATE_MIN_BYTES = 1_000_000

MANUAL = """\
Fetch capture files from the capture stores of gateways, over SSH.

\b
Forms:
  fwctl --filedownload <source_file> <destination_file> <datasource:gateway>
  fwctl --filedownload <source_file> <destination_dir> <datasource:*>
  fwctl --filelist <datasource:gateway>
  fwctl --filelist <datasource:*>

\b
<source_file> is a store name (8.3: capture.cap). A destination that is a
folder, or ends in '/', means into that folder (which must exist). With
<datasource:*> the file is fetched from every gateway of the data source at
once, into <destination_dir>/<gateway>/<source_file>; <destination_dir> must
exist; a gateway that fails leaves no folder there. The data source `local`
is this machine's own store (`local:*`: <destination_dir>/local/). An
existing destination is kept unless --force.

\b
Gateways come from $PCAPDUMP_GATEWAYS, else ~/.config/pcapdump/gateways.toml:
  [site.gw1]
  host = "gw1.example.net"          # port = 22
  user = "root"
  store = "/var/lib/pcapdump/store"
  # identity = "~/.ssh/gw_ed25519"   known_hosts = "~/.ssh/known_hosts"
  # jump = "admin@bastion.example.net"   (bastions on the way, in order)
Host keys are always checked against known_hosts, bastions' too; keys come
from identity, the ssh agent or ~/.ssh/id_*. Host entries of ~/.ssh/config
(HostName, Port, IdentityFile, ProxyJump, UserKnownHostsFile) fill in what
the inventory leaves out (--ssh-config FILE or none).

\b
Examples:
  fwctl --filedownload capture.cap local.cap site:gw1
  fwctl --filedownload capture.cap ./captures site:*
  fwctl --filelist site:gw1

Exit status: 0 success, 1 runtime failure (any gateway failed), 2 usage error.
"""


class _Bars:
    """One progress line per gateway on a terminal; nothing otherwise."""

    def __init__(self) -> None:
        self.progress: Any = None
        if sys.stderr.isatty():
            # Imported only for a terminal: rich costs a tenth of a second to load.
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
        self.tasks: dict[str, object] = {}

    def __enter__(self) -> _Bars:
        if self.progress:
            self.progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self.progress:
            self.progress.stop()

    def update(self, target: str, done: int, total: int) -> None:
        if not self.progress:
            return
        if target not in self.tasks:
            self.tasks[target] = self.progress.add_task(target, total=total)
        self.progress.update(self.tasks[target], completed=done, total=total)


def fail(message: str, code: int) -> None:
    click.echo(f"fwctl: {message}", err=True)
    sys.exit(code)


def said(e: PcapdumpError) -> str:
    """The error in the command line's words: its options (``--force``), where the exception's own
    message names the Python arguments (``force=True``)."""
    if isinstance(e, DestinationExistsError):
        return e.worded("--force")
    if isinstance(e, StalledError):
        return e.worded("--timeout")
    return str(e)


def run_download(
    source_file: str, destination: str, target: str, force: bool, timeout: float, ssh_config: str | None
) -> None:
    started = time.monotonic()
    with _Bars() as bars:
        results = fwctl.download(source_file, destination, target, force, bars.update, timeout, ssh_config)
    took = time.monotonic() - started
    failed = [r for r in results if r.error]
    for r in results:
        if r.error is None:
            rate = f" ({r.size / took / 1e6:.1f} MB/s)" if r.size >= RATE_MIN_BYTES and took > 0 else ""
            click.echo(f"{r.target}: {r.path}: {r.size} bytes{rate}")
    for r in results:
        if r.error is not None:
            click.echo(f"fwctl: {said(r.error)}", err=True)
    if len(results) > 1:
        click.echo(f"{len(results) - len(failed)} of {len(results)} gateways fetched", err=bool(failed))
    if failed:
        sys.exit(1)


def run_filelist(target: str, timeout: float, ssh_config: str | None) -> None:
    listings = fwctl.listings(target, timeout, ssh_config)
    failed = [g for g in listings if g.error]
    files = [f for g in listings for f in g.files]
    if not files and len(failed) < len(listings):
        click.echo("no capture files")
    for f in files:
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(f["mtime"] or 0))
        click.echo(f"{f['target']:<16} {f['name']:<12} {f['size']:>12}  {stamp}")
    for g in listings:
        if g.error is not None:
            click.echo(f"fwctl: {said(g.error)}", err=True)
    if failed:
        # Only then: standard output is the listing alone, for whoever reads it with a program.
        click.echo(f"{len(listings) - len(failed)} of {len(listings)} gateways listed", err=True)
        sys.exit(1)


class _Command(click.Command):
    """The help's one usage line names the two verbs; the forms follow in the manual."""

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(
            "fwctl", "--filedownload <source> <destination> <target> | --filelist <target> [options]"
        )


@click.command(cls=_Command, help=MANUAL, context_settings={"help_option_names": ["--help", "-h"]})
@click.option("--filedownload", nargs=3, metavar="SOURCE DESTINATION TARGET", help="fetch a file")
@click.option("--filelist", metavar="TARGET", help="list the capture files of a store")
@click.option("--force", is_flag=True, help="replace an existing destination")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=fwctl.DEFAULT_TIMEOUT_S,
    show_default=True,
    metavar="SECONDS",
    help="give up on a gateway that sends nothing for this long",
)
@click.option(
    "--ssh-config",
    metavar="FILE",
    help="the OpenSSH client configuration to follow (default ~/.ssh/config; none: no file)",
)
@click.option("--version", is_flag=True, help="print the version and exit")
def cli(
    filedownload: tuple[str, str, str] | None,
    filelist: str | None,
    force: bool,
    timeout: float,
    ssh_config: str | None,
    version: bool,
) -> None:
    if version:
        from . import __version__, _core

        click.echo(f"fwctl {__version__} (pcapdump engine {_core.__version__})")
        return
    try:
        if bool(filedownload) == bool(filelist):
            raise UsageError(
                "give one of --filedownload <source> <destination> <target> or --filelist <target>"
            )
        if filedownload:
            run_download(*filedownload, force=force, timeout=timeout, ssh_config=ssh_config)
        else:
            assert filelist is not None
            run_filelist(filelist, timeout, ssh_config)
    except UsageError as e:
        fail(e.message, 2)
    except PcapdumpError as e:
        fail(said(e), 1)
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as e:
        # Not foreseen where it happened: still one line that names the file, never a traceback.
        where = f"'{e.filename}': " if e.filename else ""
        fail(f"{where}{e.strerror or e}", 1)


def _one_dash_options(argv: list[str]) -> None:
    """`-filelist` for `--filelist`: the classic gateway spelling has one dash; say what to type."""
    names = {p.opts[0] for p in cli.params if p.opts and p.opts[0].startswith("--")}
    for word in argv:
        if f"-{word.partition('=')[0]}" in names and not word.startswith("--"):
            fail(f"'{word}': unknown option; did you mean -{word}?", 2)


def main() -> None:
    _one_dash_options(sys.argv[1:])
    # SIGTERM and SIGHUP end a download as Ctrl-C does, by becoming one: asyncio then cancels the
    # download where it waits (an exception raised anywhere inside asyncssh could leave it waiting for
    # ever), and the landing folder is removed on the way out.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    try:
        try:
            cli.main(standalone_mode=False)
        except click.ClickException as e:
            fail(e.format_message().replace("\n", " "), 2)
        except click.Abort:
            sys.exit(130)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
    else:
        code = 0
    # Tearing down an interpreter that has loaded asyncssh and cryptography takes 50-150 ms, a tenth
    # of a whole download; by now every file is closed and renamed, so nothing is lost by leaving.
    with contextlib.suppress(OSError):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
