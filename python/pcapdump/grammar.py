"""The token grammar of the ``pcapdump`` command (docs/commands.md).

Options, filter words and the command come in any order, in the classic spelling (``-size 1024 ipsrc
198.18.0.1 tcp start int``) or the newer one (``-start int -size=1024 -ipsrc=198.18.0.1 -tcp``), mixed at
will. The result is one typed ``Request``; every mistake is a ``UsageError`` naming the token and what was
expected, found before anything is done. The tables here (commands, options with their bounds and
defaults, filter words) are the parser's and also the source of the command's help.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from . import _core
from .errors import FilterError, UsageError

IFACE_NAME = re.compile(r"[^\s/:]{1,15}")
IFACE_NAME_RULE = "1…15 characters, no '/', ':' or spaces"


@dataclass(frozen=True)
class Options:
    size_kb: int | None = None
    snaplen: int | None = None
    count: int | None = None
    duration: int | None = None
    trigger: str | None = None
    after: int | None = None
    live: bool = False  # -o
    live_only: bool = False  # -ou
    promisc: bool = False
    ring: bool = False
    json: bool = False
    utc: bool = False
    date: bool = False
    keep: bool = False
    keep_ssh: bool = False
    pcapng: bool = False
    merge: bool = False
    conv: bool = False
    policy: bool = False
    format: str = "nft"
    output: str | None = None
    filename: str | None = None


@dataclass(frozen=True)
class Request:
    command: str
    args: tuple[str, ...]
    options: Options
    filter: _core.Filter = field(default_factory=_core.Filter)
    # Each option as typed (``"-size 2048"``), for messages that name it.
    typed: dict[str, str] = field(default_factory=dict)

    def arg(self, name: str) -> str | None:
        """A positional argument by name (``None`` when an optional one was not given)."""
        names = COMMANDS[self.command].args + COMMANDS[self.command].optional
        return self.args[names.index(name)] if names.index(name) < len(self.args) else None


@dataclass(frozen=True)
class _Command:
    args: tuple[str, ...]  # required positional arguments
    summary: str
    optional: tuple[str, ...] = ()  # at most one, after the required ones
    filters: bool = False  # takes filter words
    alias_of: str | None = None
    example: str = ""  # a whole command line, for `help <command>`

    def usage(self, name: str) -> str:
        """``write <if> <file>``, ``start [<if>]``."""
        return " ".join([name, *(_SHOWN[a] for a in self.args), *(f"[{_SHOWN[a]}]" for a in self.optional)])

    def takes(self) -> str:
        """What the command's positional arguments are, in words: ``one interface and one file``."""
        if not self.args and not self.optional:
            return "no argument"
        named = [f"one {_SAID[a]}" for a in self.args]
        if self.optional:
            named.append(f"at most one {_SAID[self.optional[0]]}")
        return " and ".join(named)


_SHOWN = {
    "iface": "<if>",
    "ifaces": "<if>[,<if>…]|all",
    "file": "<file>",
    "command": "<command>",
    "action": "install|uninstall",
}
_SAID = {
    "action": "action (install or uninstall)",
    "iface": "interface",
    "ifaces": "interface list (int, int,ext or all)",
    "file": "file",
    "command": "command",
}


COMMANDS: dict[str, _Command] = {
    "start": _Command(
        (),
        "start capturing (every interface that is up if none given)",
        ("iface",),
        True,
        example="pcapdump -size 1024 ipsrc 198.18.0.1 tcp not port 22 start int",
    ),
    "stop": _Command(
        (), "stop capturing; packets stay in the buffer", ("iface",), example="pcapdump stop int"
    ),
    "status": _Command(
        (), "captures, counters, buffer use and stored files", example="pcapdump status -json"
    ),
    "show": _Command(
        (), "brief lines of the stored packets", ("ifaces",), example="pcapdump show int,ext -merge -date"
    ),
    "write": _Command(
        ("ifaces", "file"),
        "write interfaces' packets to the capture store (several or all: one pcapng timeline)",
        example="pcapdump write int,ext gw.cap",
    ),
    "wipe": _Command((), "drop all stored packets", example="pcapdump wipe"),
    "cleanup": _Command(
        (),
        "stop everything, free the buffer, stop the agent, delete what write made",
        example="pcapdump cleanup",
    ),
    "clean": _Command((), "same as cleanup", alias_of="cleanup"),
    "read": _Command(
        ("file",),
        "print or filter the packets of a pcap/pcapng file (or .gz of one)",
        (),
        True,
        example="pcapdump read capture.cap port 80 port 443 -c 20 -w web.pcap",
    ),
    "conv": _Command(
        (),
        "the conversations of the stored packets: who talked to whom, and who answered",
        ("ifaces",),
        True,
        example="pcapdump conv int tcp",
    ),
    "policy": _Command(
        (),
        "the narrowest firewall ruleset that lets the answered conversations through",
        ("ifaces",),
        True,
        example="pcapdump policy int -format iptables",
    ),
    "stream": _Command(
        ("iface",),
        "capture in the foreground and write pcapng to standard output as packets come, until Ctrl-C, "
        "-c, -duration or the reader closes the pipe",
        (),
        True,
        example="pcapdump -c 100 udp port 53 stream int",
    ),
    "extcap": _Command(
        ("action",),
        "install or uninstall the Wireshark extcap program (live capture from Wireshark)",
        example="pcapdump extcap install",
    ),
    "interfaces": _Command(
        (),
        "the interfaces the agent can capture on: state, addresses, link type",
        example="pcapdump interfaces -json",
    ),
    "help": _Command((), "this manual, or one command's usage", ("command",), example="pcapdump help start"),
    "demo": _Command(
        (), "a guided tour in a private network namespace (needs root)", example="pcapdump demo"
    ),
    "agent": _Command((), "run the agent in the foreground (for systemd)", example="pcapdump agent"),
}


@dataclass(frozen=True)
class BoundedInt:
    """A whole number from ``low`` to ``high`` (no upper bound if ``None``)."""

    low: int
    high: int | None
    what: str

    def __call__(self, value: str, token: str) -> int:
        # ASCII only: `isdigit` is also true of "²" (which int() refuses) and "٣" (which it reads as 3).
        if not (value.isascii() and value.isdigit()):
            raise UsageError(f"'{token}': {self.what} must be a whole number {self.range}", token)
        number = int(value)
        if number < self.low or (self.high is not None and number > self.high):
            raise UsageError(f"'{token}': {self.what} must be {self.range}", token)
        return number

    @property
    def range(self) -> str:
        return f"{self.low}…{self.high}" if self.high is not None else f"at least {self.low}"


def _text(value: str, token: str) -> str:
    if not value:
        raise UsageError(f"'{token}': missing value", token)
    return value


def _check_store_name(value: str) -> None:
    from .home import STORE_NAME, STORE_NAME_RULE  # on first use: `read` needs no home

    if not STORE_NAME.fullmatch(value):
        raise UsageError(f"'{value}': not a capture store name ({STORE_NAME_RULE})", value)


def _policy_format(value: str, token: str) -> str:
    from . import ruleset  # on first use: `read` of packets needs none of it

    return ruleset.check_format(value, token)


def _trigger_words(value: str, token: str) -> str:
    """The words of `-trigger`, checked now: the bad one is named inside the option as typed."""
    if not value.split():
        raise UsageError(f"'{token}': expected filter words, such as -trigger 'tcpflags rst'", token)
    try:
        return str(_core.Filter(value))
    except FilterError as e:
        raise UsageError(f"'{token}': {e.message}", token) from None


@dataclass(frozen=True)
class _Option:
    attr: str
    convert: Callable[[str, str], object] | None  # None: a flag
    commands: tuple[str, ...]  # the commands it applies to
    help: str
    metavar: str = ""
    default: str = ""  # as the help shows it; "" for none

    def describe(self) -> str:
        """What the option does, with its bounds and default, as the help shows it."""
        bounds = [self.convert.range] if isinstance(self.convert, BoundedInt) else []
        if self.default:
            bounds.append(f"default {self.default}")
        return self.help + (f" ({'; '.join(bounds)})" if bounds else "")


_OUTPUT = ("start", "stop", "status", "show", "write", "read", "interfaces", "conv")
_BRIEF = ("start", "show", "read", "conv")  # the commands that print times
OPTIONS: dict[str, _Option] = {
    "size": _Option(
        "size_kb",
        BoundedInt(_core.MIN_BUFFER_KB, _core.MAX_BUFFER_KB, "the buffer size in KB"),
        ("start", "stream"),
        "capture buffer size in KB (stream: the room for a reader that falls behind)",
        "<KB>",
        f"{_core.DEFAULT_BUFFER_KB}, stream {_core.DEFAULT_STREAM_BUFFER_KB}",
    ),
    "s": _Option(
        "snaplen",
        BoundedInt(1, _core.MAX_SNAPLEN, "the snap length"),
        ("start", "read", "stream"),
        "keep at most this many bytes of each packet",
        "<snaplen>",
        "whole packet",
    ),
    "c": _Option(
        "count",
        BoundedInt(1, _core.MAX_COUNT, "the packet count"),
        ("start", "read", "stream"),
        "stop after this many stored (read: matching) packets",
        "<count>",
        "no limit",
    ),
    "duration": _Option(
        "duration",
        BoundedInt(_core.MIN_DURATION_S, _core.MAX_DURATION_S, "the duration in seconds"),
        ("start", "stream"),
        "stop by itself after this many seconds",
        "<s>",
        "no limit",
    ),
    "trigger": _Option(
        "trigger",
        _trigger_words,
        ("start",),
        "one argument of filter words: when a kept packet matches, keep -after more, then stop",
        "<words>",
    ),
    "after": _Option(
        "after",
        BoundedInt(0, _core.MAX_AFTER, "the packets after the trigger"),
        ("start",),
        "packets kept after the trigger, per interface",
        "<n>",
        str(_core.DEFAULT_AFTER),
    ),
    "o": _Option("live", None, ("start",), "also print each packet as it is captured"),
    "ou": _Option("live_only", None, ("start",), "print packets as captured, store nothing"),
    "p": _Option("promisc", None, ("start", "stream"), "promiscuous mode for this capture"),
    "keepssh": _Option(
        "keep_ssh",
        None,
        ("stream",),
        "also capture the SSH connection the stream runs over (left out by default)",
    ),
    "ring": _Option("ring", None, ("start",), "when the buffer is full, overwrite the oldest packets"),
    "json": _Option("json", None, _OUTPUT, "JSON output, one object per line"),
    "utc": _Option("utc", None, _BRIEF, "times in UTC (default: your local time)"),
    "date": _Option("date", None, _BRIEF, "times with the date: 2026-11-27 08:22:47.955144"),
    "keep": _Option("keep", None, ("demo",), "leave the demo's network and agent running, to go on by hand"),
    "pcapng": _Option(
        "pcapng",
        None,
        ("write", "read", "stream"),
        "pcapng even for one interface (write of several, stream: always pcapng)",
    ),
    "merge": _Option("merge", None, ("show",), "the interfaces as one timeline, not a section each"),
    "w": _Option("output", _text, ("read",), "write the matching packets to <out> (pcap)", "<out>"),
    "conv": _Option("conv", None, ("read",), "the file's conversations instead of its packets (as conv)"),
    "policy": _Option(
        "policy", None, ("read",), "the file's firewall ruleset instead of its packets (as policy)"
    ),
    "format": _Option(
        "format",
        _policy_format,
        ("policy", "read"),
        "the ruleset's syntax: nft, iptables (IPv4) or ip6tables (IPv6)",
        "<fmt>",
        "nft",
    ),
    "filename": _Option(
        "filename",
        _text,
        ("write", "read"),
        "the file argument as an option: -filename=capture.cap",
        "<file>",
    ),
}

EXTCAP_ACTIONS = ("install", "uninstall")

# Each filter word and the syntax of its value (None: it takes none), from the engine's filter parser.
FILTER_WORD_SYNTAX: dict[str, str | None] = dict(_core.filter_words())
FILTER_WORDS: dict[str, bool] = {word: syntax is not None for word, syntax in FILTER_WORD_SYNTAX.items()}


def _split(token: str) -> tuple[str, str | None, bool]:
    """``-name=value`` → (name, value, dashed); ``name`` → (name, None, False)."""
    dashed = token.startswith("-") and len(token) > 1
    bare = token.lstrip("-") if dashed else token
    name, eq, value = bare.partition("=")
    return name.lower(), (value if eq else None), dashed


def _is_word(token: str) -> bool:
    """Whether a token is an option, a filter word or a command rather than a free argument."""
    name, _, dashed = _split(token)
    return dashed or name in FILTER_WORDS or name in COMMANDS


def parse(argv: Sequence[str]) -> Request:
    """Parse a ``pcapdump`` command line (without the program name)."""
    for token in argv:
        try:
            token.encode()
        except UnicodeEncodeError:
            shown = token.encode(errors="surrogateescape").decode(errors="replace")
            raise UsageError(f"'{shown}': not valid text (UTF-8)", shown) from None
    options: dict[str, object] = {}
    option_tokens: dict[str, str] = {}
    filter_tokens: list[str] = []
    command: str | None = None
    args: list[str] = []
    wanted = 0  # required positional arguments the command still needs
    optional = 0  # optional ones it may still take
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        name, inline, dashed = _split(token)
        # `conv` and `policy` are commands, and options of `read` (`read <file> -conv`).
        as_option = name not in COMMANDS or _option_here(argv, i - 1, command)
        if name in OPTIONS and as_option and (dashed or name not in FILTER_WORDS):
            opt = OPTIONS[name]
            if opt.attr in options:
                raise UsageError(f"'{token}': given twice", token)
            option_tokens[opt.attr] = token
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
                option_tokens[opt.attr] = token
                i += 1
            options[opt.attr] = opt.convert(inline, token)
        elif name in COMMANDS and command is None and (dashed or wanted == 0):
            command = name
            spec = COMMANDS[name]
            wanted, optional = len(spec.args), len(spec.optional)
            if inline is not None:
                args.append(inline)
                if wanted:
                    wanted -= 1
                elif optional:
                    optional -= 1
                else:
                    raise UsageError(f"'{token}': {name} takes no argument", token)
        elif name == _core.FILTER_NEGATION and (wanted == 0 or dashed):
            # `not` binds to the filter word right after it; anything else there is the engine's error.
            filter_tokens.append(token)
            following = _split(argv[i])[0] if i < len(argv) else ""
            if following == _core.FILTER_NEGATION or following not in FILTER_WORDS:
                _filter([token])
        elif (name in FILTER_WORDS and wanted == 0) or (dashed and name in FILTER_WORDS):
            filter_tokens.append(token)
            # No value starts with a dash (`ipdest -w out` lacks the address, it does not mean "-w"), and
            # none is a command (`port read f` lacks the port): the filter parser says what is missing.
            if (
                FILTER_WORDS[name]
                and inline is None
                and i < len(argv)
                and not argv[i].startswith("-")
                and not (command is None and argv[i].lower() in COMMANDS)
            ):
                filter_tokens.append(argv[i])
                i += 1
        elif wanted > 0 and not dashed:
            args.append(token)
            wanted -= 1
        elif optional > 0 and wanted == 0 and not _is_word(token):
            args.append(token)
            optional -= 1
        elif command == "help" and name in COMMANDS and not args:
            args.append(name)  # `help start`: the command to explain
        elif name in COMMANDS:
            raise UsageError(f"'{token}': a second command (after '{command}'); give one command", token)
        elif command is not None and not dashed:
            spec = COMMANDS[command]
            words = "not a filter word, and " if spec.filters else ""
            raise UsageError(
                f"'{token}': {words}{command} takes {spec.takes()} (usage: {spec.usage(command)})", token
            )
        else:
            raise UsageError(
                f"'{token}': unknown word (expected an option, a filter word or a command: "
                f"{', '.join(COMMANDS)})",
                token,
            )
    if command is None:
        raise UsageError(f"missing command (expected one of {', '.join(COMMANDS)})", "")
    spec = COMMANDS[command]
    if wanted == 1 and "file" in spec.args[len(args) :] and "filename" in options:
        args.append(str(options.pop("filename")))
        wanted = 0
    if wanted > 0:
        missing = spec.args[len(args) :]
        raise UsageError(
            f"'{command}': missing {' and '.join(_SAID[m] for m in missing)} (usage: {spec.usage(command)})",
            command,
        )
    for attr, token in option_tokens.items():
        opt = next(o for o in OPTIONS.values() if o.attr == attr)
        if attr in options and command not in opt.commands:
            raise UsageError(f"'{token}': applies to {_listed(opt.commands)}, not {command}", token)
    if filter_tokens and not spec.filters:
        takers = _listed([n for n, c in COMMANDS.items() if c.filters])
        raise UsageError(
            f"'{filter_tokens[0]}': filter words apply to {takers}, not {command}", filter_tokens[0]
        )
    if "after" in options and "trigger" not in options:
        raise UsageError(f"'{option_tokens['after']}': -after applies with -trigger <words>", "-after")
    if command == "read" and options.get("pcapng") and "output" not in options:
        raise UsageError(f"'{option_tokens['pcapng']}': read writes pcapng only with -w <out>", "-pcapng")
    _check_read_outputs(command, options, option_tokens)
    if options.get("live") and options.get("live_only"):
        raise UsageError(f"'{option_tokens['live_only']}': cannot be combined with -o", "-ou")
    _check_args(command, args)
    flt = _filter(filter_tokens)
    command = spec.alias_of or command
    return Request(command, tuple(args), Options(**options), flt, option_tokens)  # type: ignore[arg-type]


def _listed(names: Sequence[str]) -> str:
    """``start``, ``start and read``, ``start, read and conv``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _option_here(argv: Sequence[str], at: int, command: str | None) -> bool:
    """Whether ``argv[at]``, a word that is both a command and an option (``conv``), is the option:
    after ``read``, or dashed before it (``-conv read f``)."""
    if command is not None:
        return command == "read"
    dashed = argv[at].startswith("-")
    return dashed and any(_split(t)[0] == "read" for t in argv[at + 1 :])


def _check_read_outputs(command: str, options: dict[str, object], tokens: dict[str, str]) -> None:
    """``read`` prints packets, writes them (``-w``), or prints conversations or a policy: one of these."""
    if command != "read":
        return
    chosen = [a for a in ("conv", "policy", "output") if a in options]
    if len(chosen) > 1:
        first, second = (tokens[a] for a in chosen[:2])
        raise UsageError(f"'{second}': cannot be combined with {first} (read does one of them)", second)
    if "format" in options and "policy" not in options:
        raise UsageError(f"'{tokens['format']}': -format applies with -policy", tokens["format"])
    for attr in ("json", "utc", "date"):
        if attr in options and "policy" in options:
            token = tokens[attr]
            raise UsageError(f"'{token}': does not apply to -policy (a ruleset; its times are UTC)", token)


def _filter(tokens: list[str]) -> _core.Filter:
    try:
        return _core.Filter(tokens)
    except FilterError as e:
        raise UsageError(e.message, e.token) from None


def _check_iface_list(value: str) -> None:
    """``int`` or ``int,ext``: names of interfaces, each once."""
    names = value.split(",")
    for at, name in enumerate(names):
        if not IFACE_NAME.fullmatch(name):
            shown = name or "(empty)"
            raise UsageError(
                f"'{value}': {shown} is not an interface name ({IFACE_NAME_RULE}; "
                "several are joined with commas, or all)",
                value,
            )
        if name in names[:at]:
            raise UsageError(f"'{value}': {name} is named twice (give each interface once)", value)


def _check_args(command: str, args: list[str]) -> None:
    names = COMMANDS[command].args + COMMANDS[command].optional
    for name, value in zip(names, args, strict=False):
        if name == "iface" and not IFACE_NAME.fullmatch(value):
            raise UsageError(f"'{value}': not an interface name ({IFACE_NAME_RULE})", value)
        if name == "ifaces" and value != "all":
            _check_iface_list(value)
        if name == "action" and value not in EXTCAP_ACTIONS:
            raise UsageError(
                f"'{value}': expected install or uninstall (usage: extcap install|uninstall)", value
            )
        if name == "command" and value not in COMMANDS:
            raise UsageError(f"'{value}': not a command (expected one of {', '.join(COMMANDS)})", value)
        if name == "file" and command == "write":
            _check_store_name(value)
