"""``pcapdump``: the console command. Parses, calls the engine, prints; holds no logic of its own."""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

import click

from . import __version__, _core, flows, grammar, ruleset
from .console import Console, LiveSession
from .errors import EXIT_RUNTIME, UsageError
from .ifaces import link_of
from .launch import ClosedOutput, dispatch, packets, run_read
from .shapes import Interface, InterfaceListing, TimeFormat, local_time_format

HELP_WIDTH = 78
# Where the second column of the help starts.
HELP_INDENT = 25


def _help_rows(rows: list[tuple[str, str]]) -> list[str]:
    """Two columns, the second wrapped under itself."""
    lines = []
    for left, right in rows:
        wrapped = textwrap.wrap(right, HELP_WIDTH - HELP_INDENT) or [""]
        first = f"  {left}".ljust(HELP_INDENT - 1)
        if len(first) >= HELP_INDENT:
            lines.append(first.rstrip())
            first = " " * (HELP_INDENT - 1)
        lines.append(f"{first} {wrapped[0]}".rstrip())
        lines += [" " * HELP_INDENT + more for more in wrapped[1:]]
    return lines


def manual() -> str:
    """The command's help, made from the grammar's own tables so that the two cannot disagree."""
    aliases: dict[str, list[str]] = {}
    for name, spec in grammar.COMMANDS.items():
        if spec.alias_of:
            aliases.setdefault(spec.alias_of, []).append(name)
    commands = [
        (" | ".join([spec.usage(name), *aliases.get(name, [])]), spec.summary)
        for name, spec in grammar.COMMANDS.items()
        if not spec.alias_of
    ]
    options = [(f"-{name} {opt.metavar}".rstrip(), opt.describe()) for name, opt in grammar.OPTIONS.items()]
    # Words that share a value syntax, one line each: `eth ethsrc ethdest ethdst <mac>`.
    groups: list[tuple[list[str], str | None]] = []
    for word, syntax in grammar.FILTER_WORD_SYNTAX.items():
        if groups and groups[-1][1] == syntax:
            groups[-1][0].append(word)
        else:
            groups.append(([word], syntax))
    words = ["  " + " ".join([*names, syntax or ""]).rstrip() for names, syntax in groups]
    return "\n".join(
        [
            "Capture packets on a gateway and write them to pcap files.",
            "",
            "\b",
            "Usage: pcapdump [options] [filter words] <command> [arguments]",
            "       pcapdump --help | --version",
            "Options, filter words and the command may come in any order, as",
            "`-size 1024` or `-size=1024`, `ipsrc 198.18.0.1` or `-ipsrc=198.18.0.1`.",
            "",
            "\b",
            "Commands:",
            *_help_rows(commands),
            "",
            "\b",
            "Options:",
            *_help_rows(options),
            "",
            "\b",
            "Filter words (all must match; a repeated word gives alternatives):",
            *words,
            "",
            "\b",
            "Examples:",
            "  pcapdump -size 1024 ipsrc 198.18.0.1 tcp start int",
            "  pcapdump stop",
            "  pcapdump show",
            "  pcapdump write int capture.cap",
            "  pcapdump -start int -size=1024 -ipsrc=198.18.0.1 -tcp",
            "  pcapdump -write int -filename=capture.cap",
            "  pcapdump read capture.cap port 80 port 443 -c 20",
            "  pcapdump interfaces",
            "",
            "\b",
            "Files go to $PCAPDUMP_HOME/store (root: /var/lib/pcapdump/store); fetch",
            "them with `fwctl --filedownload capture.cap local.cap site:gw1`.",
            "Exit status: 0 success, 1 runtime failure, 2 usage error.",
        ]
    )


def command_help(name: str) -> str:
    """One command's usage, what it does, the options that apply to it and an example."""
    spec = grammar.COMMANDS[name]
    if spec.alias_of:
        name, spec = spec.alias_of, grammar.COMMANDS[spec.alias_of]
    words = " [filter words]" if spec.filters else ""
    options = [
        (f"-{opt_name} {opt.metavar}".rstrip(), opt.describe())
        for opt_name, opt in grammar.OPTIONS.items()
        if name in opt.commands
    ]
    lines = [
        f"Usage: pcapdump{' [options]' if options else ''}{words} {spec.usage(name)}",
        "",
        spec.summary + ".",
    ]
    if options:
        lines += ["", "Options:", *_help_rows(options)]
    if spec.filters:
        lines += ["", "Filter words: see `pcapdump help` (all must match; `not <word> <value>` excludes)."]
    lines += ["", "Example:", f"  {spec.example}"]
    return "\n".join(lines)


def _help_for(words: Sequence[str]) -> str:
    """`--help` anywhere: the help of the command given with it, else the manual."""
    for word in words:
        name = word.lstrip("-").partition("=")[0].lower()
        if name in grammar.COMMANDS and name != "help":
            return command_help(name)
    return "\n".join(line for line in manual().splitlines() if line != "\b")


def run_help(req: grammar.Request) -> None:
    name = req.arg("command")
    click.echo(command_help(name) if name else _help_for([]))


def print_flows(path: str, flt: _core.Filter | None, opts: grammar.Options) -> None:
    """`read -conv` and `read -policy`."""
    report = flows.of_file(path, flt, opts.count)
    if opts.conv:
        _print_conversations(report, opts)
    else:
        _print_policy(report, opts.format, path)


def _print_conversations(report: flows.FlowReport, opts: grammar.Options) -> None:
    if opts.json:
        convs = report.conversations
        for at in range(0, len(convs), 4096):  # one write per few thousand lines
            sys.stdout.write("".join(json.dumps(c.to_dict()) + "\n" for c in convs[at : at + 4096]))
        sys.stdout.flush()
        return
    for line in _table(flows.table_rows(report.conversations, _time_writer(opts))):
        click.echo(line)
    aside = []
    if report.not_ip:
        aside.append(f"{packets(report.not_ip)} not IP")
    if report.unattributed:
        aside.append(f"{packets(report.unattributed)} in no conversation (cut before their ports)")
    n = len(report.conversations)
    summary = f"{n} conversation{'' if n == 1 else 's'}" if n else "no conversations"
    click.echo(summary + (f"; {', '.join(aside)}" if aside else ""))


def _print_policy(report: flows.FlowReport, format: str, source: str) -> None:
    built = ruleset.build(report.conversations)
    sys.stdout.write(ruleset.render(built, format, source))
    sys.stdout.flush()
    for warning in ruleset.warnings(built):
        click.echo(f"pcapdump: warning: {warning}", err=True)


def _time_writer(opts: grammar.Options) -> Callable[[int], str]:
    """Times as brief lines write them: local (or UTC), with microseconds, the date if asked."""
    zone = datetime.UTC if opts.utc else None
    shape = "%Y-%m-%d %H:%M:%S" if opts.date else "%H:%M:%S"

    @functools.lru_cache(maxsize=4096)
    def second(s: int) -> str:
        return datetime.datetime.fromtimestamp(s, zone).strftime(shape)

    def write(ts_ns: int) -> str:
        return f"{second(ts_ns // 1_000_000_000)}.{ts_ns % 1_000_000_000 // 1000:06d}"

    return write


def _times(opts: grammar.Options) -> TimeFormat:
    return local_time_format(utc=opts.utc, date=opts.date)


def _kb(n: int) -> str:
    return f"{n / 1024:.0f} KB" if n < 10 * 1024 * 1024 else f"{n / (1024 * 1024):.0f} MB"


def _counters(c: dict[str, Any]) -> str:
    stored = "none stored" if c["packets"] is None else f"{c['packets']} stored ({c['bytes']} bytes)"
    return (
        f"{c['captured']} captured, {stored}, kernel drops {c['kernel_drops']}, "
        f"buffer full {c['buffer_full_drops']}, overwritten {c['overwritten']}"
    )


def _state(c: dict[str, Any]) -> str:
    """`running`, `stopped`, or `stopped (<why>)` when it stopped by itself."""
    if c["state"] == "running":
        return "running" if c.get("link") in (None, "up") else f"running (link {c['link']})"
    return "stopped" if c["stop_reason"] in (None, "stopped") else f"stopped ({c['stop_reason']})"


def _stopped_line(c: dict[str, Any]) -> str:
    return f"{c['iface']}: {_state(c)}: {_counters(c)}"


def _echo_json(value: object) -> None:
    click.echo(json.dumps(value))


def run_start(req: grammar.Request) -> None:
    opts = req.options
    live = "o" if opts.live else "ou" if opts.live_only else None
    reply = Console().start(
        req.arg("iface"),
        str(req.filter),
        size_kb=opts.size_kb,
        snaplen=opts.snaplen,
        count=opts.count,
        duration=opts.duration,
        trigger=opts.trigger,
        after=opts.after,
        promisc=opts.promisc,
        ring=opts.ring,
        live=live,
        json=opts.json,
        times=_times(opts),
        size_token=req.typed.get("size_kb", "-size"),
    )
    started = reply.started if isinstance(reply, LiveSession) else reply
    for note in started.get("notes", []):
        click.echo(f"pcapdump: {note}", err=True)
    for f in started["failed"]:
        click.echo(f"pcapdump: {f['iface']}: {f['message']}", err=True)
    buffer = started["buffer"]
    if opts.json and not live:
        _echo_json({"started": started["started"], "failed": started["failed"], "buffer": buffer})
    elif not opts.json:
        for c in started["started"]:
            shown = c["filter"] or "everything"
            extra = "".join(
                [
                    f", snaplen {c['snaplen']}" if c["snaplen"] < _core.MAX_SNAPLEN else "",
                    f", count {c['count']}" if c["count"] else "",
                    f", for {c['duration']:g} s" if c.get("duration") else "",
                    f", trigger '{c['trigger_words']}' then {c['after']} more"
                    if c.get("trigger_words")
                    else "",
                    ", promiscuous" if c["promisc"] else "",
                    ", not stored" if not c["store"] else "",
                ]
            )
            kept = (
                f"; {packets(c['kept'])} stored before {'are' if c['kept'] > 1 else 'is'} kept"
                if c["kept"]
                else ""
            )
            where = f"buffer {_kb(buffer['size'])} {buffer['mode']}{kept}"
            click.echo(f"{c['iface']}: capturing {shown}{extra} ({where})", err=bool(live))
    if isinstance(reply, LiveSession):
        _follow(reply, live == "ou", [c["iface"] for c in started["started"]])


def _follow(session: LiveSession, live_only: bool, ifaces: list[str]) -> None:
    """Print live lines until the captures stop by themselves or Ctrl-C."""
    try:
        for line in session:
            click.echo(line)
    except KeyboardInterrupt:
        session.close()
        if live_only:
            for c in Console().stop_many(ifaces):
                click.echo(_stopped_line(c), err=True)
        else:
            click.echo("pcapdump: still capturing in the agent; `pcapdump stop` ends it", err=True)
        sys.exit(0)
    # The captures ended by themselves: count reached, or interface removed.
    end = session.end or {}
    for c in end.get("captures", []):
        click.echo(_stopped_line(c), err=True)
    if end.get("dropped"):
        click.echo(f"pcapdump: {end['dropped']} lines not shown: the terminal fell behind", err=True)


def run_stop(req: grammar.Request) -> None:
    stopped = Console().stop(req.arg("iface"))
    if req.options.json:
        _echo_json({"stopped": stopped})
        return
    if not stopped:
        click.echo("nothing was capturing")
    for c in stopped:
        click.echo(_stopped_line(c))


def _table(rows: list[list[str]]) -> list[str]:
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def run_status(req: grammar.Request) -> None:
    console = Console()
    status = console.status()
    if req.options.json:
        _echo_json(status)
        return
    b = status["buffer"]
    if status["agent"] is None:
        click.echo("agent: not running")
    else:
        click.echo(f"agent: pid {status['agent']['pid']}")
    if b is None:
        click.echo("buffer: none")
    else:
        share = 100 * b["used"] / b["size"] if b["size"] else 0
        click.echo(f"buffer: {_kb(b['size'])} {b['mode']}, {b['used']} bytes used ({share:.0f}%)")
    if status["captures"]:
        rows = [
            [
                "iface",
                "state",
                "filter",
                "snaplen",
                "count",
                "captured",
                "packets",
                "bytes",
                "kernel drops",
                "buffer full",
                "overwritten",
            ]
        ]
        for c in status["captures"]:
            state = _state(c)
            rows.append(
                [
                    c["iface"],
                    state,
                    c["filter"] or "-",
                    str(c["snaplen"]),
                    str(c["count"] or "-"),
                    str(c["captured"]),
                    "-" if c["packets"] is None else str(c["packets"]),
                    "-" if c["bytes"] is None else str(c["bytes"]),
                    str(c["kernel_drops"]),
                    str(c["buffer_full_drops"]),
                    str(c["overwritten"]),
                ]
            )
        for line in _table(rows):
            click.echo(line)
        # One trigger per start: the captures of that start name the same packet.
        fired = {(h["iface"], h["ts_ns"]): h for c in status["captures"] if (h := c.get("trigger"))}
        for hit in fired.values():
            where = f"packet {hit['index']}" if hit["index"] is not None else "no longer in the buffer"
            click.echo(f"trigger: fired on {hit['iface']}, {where}: {hit['brief']}")
    else:
        click.echo("captures: none")
    click.echo(f"store: {console.home.store}")
    for f in status["files"]:
        click.echo(f"  {f['name']:<12} {f['size']} bytes")


def _iface_state(iface: Interface) -> str:
    """`up`, `up, no carrier` (up but not running, as `ip link` says NO-CARRIER), `down`; `, loopback`."""
    link = link_of(iface)
    words = ["up", link] if link == "no carrier" else [link]
    return ", ".join(words + (["loopback"] if iface["loopback"] else []))


def _link_type(iface: Interface) -> str:
    """`EN10MB (1)`; `LINUX_SLL2 (276), no filters` where filter words cannot be used."""
    shown = f"{iface['linktype_name'] or 'link type'} ({iface['linktype']})"
    return shown if iface["filters"] else f"{shown}, no filters"


def _whose(listing: InterfaceListing) -> str:
    """Whose interfaces these are: the agent's (and in which network namespace), or the caller's."""
    netns = listing["netns"] or "unknown"
    if listing["agent"] is None:
        return f"no agent running: the interfaces of this network namespace, {netns}"
    whose = f"the interfaces of the agent (pid {listing['agent']}), network namespace {netns}"
    if listing["own_netns"] and listing["netns"] != listing["own_netns"]:
        whose += f", not yours ({listing['own_netns']})"
    return whose


def run_interfaces(req: grammar.Request) -> None:
    listing = Console().interfaces()
    if req.options.json:
        for iface in listing["interfaces"]:
            _echo_json(
                {**iface, "state": _iface_state(iface), "netns": listing["netns"], "agent": listing["agent"]}
            )
        return
    click.echo(_whose(listing))
    rows = [["index", "iface", "state", "link type", "mtu", "mac", "addresses"]]
    for iface in listing["interfaces"]:
        rows.append(
            [
                str(iface["index"]),
                iface["name"],
                _iface_state(iface),
                _link_type(iface),
                str(iface["mtu"]),
                iface["mac"] or "-",
                " ".join(iface["addresses"]) or "-",
            ]
        )
    for line in _table(rows):
        click.echo(line)


def run_show(req: grammar.Request) -> None:
    sections = Console().show(
        req.arg("ifaces"), req.options.json, _times(req.options), merge=req.options.merge
    )
    if not sections and not req.options.json:
        click.echo("no packets stored")
    for sec in sections:
        if not req.options.json:
            click.echo(f"== {sec['iface']}: {packets(sec['packets'])} ==")
        sys.stdout.write(sec["lines"])
    sys.stdout.flush()


def run_conv(req: grammar.Request) -> None:
    _print_conversations(Console().conversations(req.arg("ifaces"), req.filter), req.options)


def run_policy(req: grammar.Request) -> None:
    ifaces = req.arg("ifaces")
    source = f"the capture buffer ({ifaces or 'all interfaces'})"
    _print_policy(Console().conversations(ifaces, req.filter), req.options.format, source)


def run_write(req: grammar.Request) -> None:
    ifaces, name = req.args
    reply = Console().write(ifaces, name, pcapng=req.options.pcapng)
    if req.options.json:
        _echo_json({k: reply[k] for k in ("path", "format", "packets", "bytes", "interfaces")})
        return
    line = f"{reply['path']}: {packets(reply['packets'])}, {reply['bytes']} bytes"
    if reply["format"] == "pcapng":
        each = ", ".join(f"{i['iface']} {i['packets']}" for i in reply["interfaces"])
        line += f" (pcapng: {each or 'no interface has a capture or packets'})"
    click.echo(line)


def run_wipe(req: grammar.Request) -> None:
    click.echo(f"wiped {packets(Console().wipe())}")


def run_cleanup(req: grammar.Request) -> None:
    r = Console().cleanup()
    parts = [f"stopped {len(r['stopped'])} captures"]
    if r["freed"]:
        parts.append(f"freed the buffer ({_kb(r['freed'])})")
    parts.append(f"deleted {len(r['deleted'])} files")
    parts.append("agent stopped" if r["agent"] else "no agent was running")
    click.echo(", ".join(parts))


def run_agent(req: grammar.Request) -> None:
    from .agent import run_foreground
    from .home import Home

    run_foreground(Home.from_env())


def run_stream(req: grammar.Request) -> None:
    from . import stream

    (iface,) = req.args
    opts = req.options
    try:
        fd = sys.stdout.fileno()
    except ValueError:
        raise ClosedOutput.error() from None
    if os.isatty(fd):
        raise UsageError(
            "stream writes pcapng, which a terminal cannot show: pipe it to a reader "
            "(| wireshark -k -i -, | tshark -r -) or redirect it to a file",
            "stream",
        )
    sys.stdout.flush()
    plan = stream.plan(req.filter if str(req.filter) else None, opts.keep_ssh)
    left_out = (
        f", leaving out this SSH connection ({stream.describe(plan.left_out)})" if plan.left_out else ""
    )

    def say(line: str) -> None:
        # Standard error may be gone (closed, its reader killed): the capture still goes to its reader.
        with contextlib.suppress(OSError):
            click.echo(line, err=True)

    if plan.note:
        say(f"pcapdump: {plan.note}")
    result = stream.run(
        iface,
        fd,
        plan,
        snaplen=opts.snaplen,
        count=opts.count,
        duration=opts.duration,
        promisc=opts.promisc,
        buffer_kb=opts.size_kb or _core.DEFAULT_STREAM_BUFFER_KB,
        started=lambda: say(f"{iface}: streaming {str(req.filter) or 'everything'}{left_out}"),
    )
    say(stream.summary(iface, result))
    if result.end in stream.FAILED_ENDS:
        sys.exit(EXIT_RUNTIME)


def run_extcap(req: grammar.Request) -> None:
    from . import extcap

    click.echo(extcap.install() if req.arg("action") == "install" else extcap.uninstall())


def run_demo(req: grammar.Request) -> None:
    from .demo import run

    run(keep=req.options.keep)


HANDLERS = {
    "read": run_read,
    "start": run_start,
    "stop": run_stop,
    "status": run_status,
    "show": run_show,
    "conv": run_conv,
    "policy": run_policy,
    "interfaces": run_interfaces,
    "write": run_write,
    "wipe": run_wipe,
    "cleanup": run_cleanup,
    "agent": run_agent,
    "demo": run_demo,
    "stream": run_stream,
    "extcap": run_extcap,
    "help": run_help,
}


@click.command(
    help=manual(),
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    add_help_option=False,
)
@click.argument("words", nargs=-1, type=click.UNPROCESSED)
def main(words: tuple[str, ...]) -> None:
    if not words or any(w in ("--help", "-h") for w in words):
        # The manual (or a command's help) alone: it has its own usage line (click would add one too).
        click.echo(_help_for(words))
        return
    if words[0] == "--version":
        click.echo(f"pcapdump {__version__} (engine {_core.__version__})")
        return
    if words[0].lstrip("-").lower() == "extcap" and len(words) > 1 and words[1].startswith("--"):
        # Wireshark's own arguments (`pcapdump extcap --extcap-interfaces`): the extcap program.
        from . import extcap

        extcap.main(words[1:])
    dispatch(words, HANDLERS)


if __name__ == "__main__":
    main()
