"""``pcapdump``'s entry: a ``read`` starts on what reading needs (the engine and the grammar), so that a
read of a file costs its reading and little else; every other command, and any help, loads the whole
command line (``cli.py``). Also the steps every command shares: the run of a request, and its errors
said as one line."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import FrameType

from . import _core, grammar
from .errors import EXIT_RUNTIME, EXIT_USAGE, PcapdumpError, UsageError
from .shapes import local_time_format

HELP_WORDS = ("--help", "-h")


def main() -> None:
    words = sys.argv[1:]
    if words[:1] == ["read"] and not any(w in HELP_WORDS for w in words):
        dispatch(words, {"read": run_read})
        return
    from .cli import main as command_line

    command_line()


def echo(text: str, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def fail(message: str, code: int) -> None:
    echo(f"pcapdump: {message}", err=True)
    sys.exit(code)


class ClosedOutput:
    """Standard output when the command was started with it closed (`>&-`): writing to it is the
    failure it is, not a crash and not a silent success."""

    @staticmethod
    def error() -> OSError:
        return OSError(errno.EBADF, "standard output is closed")

    def write(self, text: str) -> int:
        raise self.error()

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        raise self.error()


class Terminated(Exception):
    """SIGTERM or SIGHUP during a read: it ends as Ctrl-C does, with 128 + the signal as exit code."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def dispatch(argv: Sequence[str], handlers: Mapping[str, Callable[[grammar.Request], None]]) -> None:
    """Parse `argv` and run its command's handler; any failure is one line and an exit status."""
    if sys.stdout is None:
        # Descriptor 1 held by something that cannot be written (so that no file opened later takes its
        # place and receives the output), and every write to it an error.
        with contextlib.suppress(OSError):
            held = os.open(os.devnull, os.O_RDONLY)
            if held != 1:
                os.close(held)
        sys.stdout = ClosedOutput()
    try:
        req = grammar.parse(argv)
        handlers[req.command](req)
    except UsageError as e:
        fail(e.message, EXIT_USAGE)
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as tcpdump does.
        sys.stderr.close()
        sys.exit(0)
    except PcapdumpError as e:
        fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Terminated as e:
        sys.exit(128 + e.signum)
    except OSError as e:
        # Not foreseen where it happened: still one line that names the file, never a traceback.
        where = f"'{e.filename}': " if e.filename else ""
        fail(f"{where}{e.strerror or e}", EXIT_RUNTIME)


@contextlib.contextmanager
def ended_by_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP stop a read the way Ctrl-C does: the engine sees them where it looks for Ctrl-C,
    and a file being written is dropped, not left behind under its temporary name."""

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise Terminated(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run_read(req: grammar.Request) -> None:
    with ended_by_signals():
        _read(req)


def _read(req: grammar.Request) -> None:
    (path,) = req.args
    opts = req.options
    flt = req.filter if str(req.filter) else None
    if opts.output is not None:
        # `-w -` is standard output as it is (appended to, never truncated), as with tcpdump; the summary
        # then goes to standard error.
        out = opts.output
        summary = _core.read_to_pcap(path, out, flt, opts.snaplen, opts.count, opts.pcapng)
        to_stderr = out == "-" or is_stdout(out) or isinstance(sys.stdout, ClosedOutput)
        if opts.json:
            import json

            echo(json.dumps({"file": opts.output, **summary}), err=to_stderr)
        else:
            echo(
                f"{opts.output}: {packets(summary['matched'])}, {summary['bytes']} bytes "
                f"(of {summary['read']} read)",
                err=to_stderr,
            )
        return
    if opts.conv or opts.policy:
        from . import cli

        cli.print_flows(path, flt, opts)
        return
    sys.stdout.flush()
    if isinstance(sys.stdout, ClosedOutput):
        # The engine writes the lines itself, and Rust's standard output takes a closed one for a sink.
        raise ClosedOutput.error()
    _core.read_lines(
        path, flt, opts.snaplen, opts.count, opts.json, **local_time_format(utc=opts.utc, date=opts.date)
    )


def is_stdout(path: str) -> bool:
    """Whether `path` is the file standard output writes to (`/dev/stdout`, `/proc/self/fd/1`, ...)."""
    try:
        mine, theirs = os.stat(path), os.fstat(sys.stdout.fileno())
    except (OSError, ValueError):
        return False
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def packets(n: int) -> str:
    return f"{n} packet" if n == 1 else f"{n} packets"
