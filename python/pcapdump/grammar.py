"""The token grammar of the ``pcapdump`` command (SPEC §1).

Options, filter words and the command come in any order, in the classic spelling (``-s 96 ipsrc 198.18.0.1
tcp read in.cap``) or the newer one (``-read=in.cap -s=96 -ipsrc=198.18.0.1 -tcp``), mixed at will. The
result is one typed ``Request``; every mistake is a ``UsageError`` naming the token and what was expected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from . import _core
from .errors import FilterError, UsageError

MAX_SNAPLEN = _core.MAX_SNAPLEN


@dataclass(frozen=True)
class Options:
    snaplen: int | None = None
    count: int | None = None
    json: bool = False
    output: str | None = None


@dataclass(frozen=True)
class Request:
    command: str
    args: tuple[str, ...]
    options: Options
    filter: _core.Filter = field(default_factory=_core.Filter)


@dataclass(frozen=True)
class _Command:
    args: tuple[str, ...]  # names of the required positional arguments
    summary: str


COMMANDS: dict[str, _Command] = {
    "read": _Command(("file",), "print or filter the packets of a pcap/pcapng file"),
}


def _bounded_int(low: int, high: int | None, what: str) -> Callable[[str, str], int]:
    def convert(value: str, token: str) -> int:
        if not value.isdigit():
            raise UsageError(f"'{token}': {what} must be a whole number {_range(low, high)}", token)
        number = int(value)
        if number < low or (high is not None and number > high):
            raise UsageError(f"'{token}': {what} must be {_range(low, high)}", token)
        return number

    return convert


def _range(low: int, high: int | None) -> str:
    return f"{low}…{high}" if high is not None else f"at least {low}"


@dataclass(frozen=True)
class _Option:
    attr: str
    convert: Callable[[str, str], object] | None  # None: a flag


OPTIONS: dict[str, _Option] = {
    "s": _Option("snaplen", _bounded_int(1, MAX_SNAPLEN, "the snap length")),
    "c": _Option("count", _bounded_int(1, None, "the packet count")),
    "json": _Option("json", None),
    "w": _Option("output", lambda value, token: value),
}

FILTER_WORDS: dict[str, bool] = dict(_core.filter_words())


def _split(token: str) -> tuple[str, str | None, bool]:
    """``-name=value`` → (name, value, dashed); ``name`` → (name, None, False)."""
    dashed = token.startswith("-") and len(token) > 1
    bare = token.lstrip("-") if dashed else token
    name, eq, value = bare.partition("=")
    return name.lower(), (value if eq else None), dashed


def parse(argv: Sequence[str]) -> Request:
    """Parse a ``pcapdump`` command line (without the program name)."""
    options: dict[str, object] = {}
    filter_tokens: list[str] = []
    command: str | None = None
    args: list[str] = []
    wanted = 0  # positional arguments the command still needs
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        name, inline, dashed = _split(token)
        if name in OPTIONS and (dashed or name not in FILTER_WORDS):
            opt = OPTIONS[name]
            if opt.attr in options:
                raise UsageError(f"'{token}': given twice", token)
            if opt.convert is None:
                if inline is not None:
                    raise UsageError(f"'{token}': -{name} takes no value", token)
                options[opt.attr] = True
                continue
            if inline is None:
                if i >= len(argv):
                    raise UsageError(f"'{token}': missing value", token)
                inline = argv[i]
                token = f"{token} {inline}"
                i += 1
            options[opt.attr] = opt.convert(inline, token)
        elif name in COMMANDS and command is None and (dashed or wanted == 0):
            command = name
            wanted = len(COMMANDS[name].args)
            if inline is not None:
                args.append(inline)
                wanted -= 1
        elif (name in FILTER_WORDS and wanted == 0) or (dashed and name in FILTER_WORDS):
            filter_tokens.append(token)
            if FILTER_WORDS[name] and inline is None and i < len(argv):
                filter_tokens.append(argv[i])
                i += 1
        elif wanted > 0 and not dashed:
            args.append(token)
            wanted -= 1
        elif name in COMMANDS:
            raise UsageError(f"'{token}': a second command (after '{command}'); give one command", token)
        else:
            raise UsageError(
                f"'{token}': unknown word (expected an option, a filter word or a command: "
                f"{', '.join(COMMANDS)})",
                token,
            )
    if command is None:
        raise UsageError(f"missing command (expected one of {', '.join(COMMANDS)})", "")
    if wanted > 0:
        missing = COMMANDS[command].args[len(args) :]
        raise UsageError(f"'{command}': missing {' and '.join(missing)}", command)
    try:
        flt = _core.Filter(filter_tokens)
    except FilterError as e:
        raise UsageError(e.message, e.token) from None
    return Request(command, tuple(args), Options(**options), flt)  # type: ignore[arg-type]
