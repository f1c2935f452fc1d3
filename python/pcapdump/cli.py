"""``pcapdump``: the console command. Parses, calls the engine, prints; holds no logic of its own."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

import click

from . import __version__, _core, grammar
from .errors import PcapdumpError, UsageError

EXIT_RUNTIME = 1
EXIT_USAGE = 2

MANUAL = """\
Capture packets on a gateway and write them to pcap files.

\b
Usage: pcapdump [options] [filter words] <command> [arguments]
Options, filter words and the command may come in any order, as
`-s 96` or `-s=96`, `ipsrc 198.18.0.1` or `-ipsrc=198.18.0.1`.

\b
Commands:
  read <file>            print the packets of a pcap/pcapng file that match
                         the filter, or write them with -w <out>

\b
Options:
  -s <snaplen>           keep at most this many bytes of each packet
                         (1…262144; default: whole packet)
  -c <count>             stop after this many matching packets
  -json                  one JSON object per packet instead of brief lines
  -w <out>               read: write matching packets to <out> (pcap)

\b
Filter words (all must match; a repeated word gives alternatives):
  eth|ethsrc|ethdest <mac>       ip|ipsrc|ipdest <addr>[/<prefix>]
  port|srcport|destport <n>[-<m>]  proto <n>|tcp|udp|icmp|icmp6|sctp
  tcp udp icmp icmp6 sctp arp    vlan <id>

\b
Examples:
  pcapdump read capture.cap ipsrc 198.18.0.1 tcp
  pcapdump read capture.cap port 80 port 443 -c 20
  pcapdump -read=big.pcapng -ip=2001:db8::/32 -w=v6.cap

Exit status: 0 success, 1 runtime failure, 2 usage error.
"""


def fail(message: str, code: int) -> None:
    click.echo(f"pcapdump: {message}", err=True)
    sys.exit(code)


def run_read(req: grammar.Request) -> None:
    (path,) = req.args
    opts = req.options
    flt = req.filter if str(req.filter) else None
    if opts.output is not None:
        summary = _core.read_to_pcap(path, opts.output, flt, opts.snaplen, opts.count)
        if opts.json:
            click.echo(json.dumps({"file": opts.output, **summary}))
        else:
            click.echo(
                f"{opts.output}: {summary['matched']} packets, {summary['bytes']} bytes "
                f"(of {summary['read']} read)"
            )
        return
    sys.stdout.flush()
    _core.read_lines(path, flt, opts.snaplen, opts.count, opts.json)


HANDLERS = {"read": run_read}


def dispatch(argv: Sequence[str]) -> None:
    try:
        req = grammar.parse(argv)
        HANDLERS[req.command](req)
    except UsageError as e:
        fail(e.message, EXIT_USAGE)
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as tcpdump does.
        sys.stderr.close()
        sys.exit(0)
    except PcapdumpError as e:
        fail(str(e), EXIT_RUNTIME)
    except KeyboardInterrupt:
        sys.exit(130)


@click.command(
    help=MANUAL,
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    add_help_option=False,
)
@click.argument("words", nargs=-1, type=click.UNPROCESSED)
def main(words: tuple[str, ...]) -> None:
    if not words or words[0] in ("--help", "-h", "help"):
        click.echo(click.get_current_context().get_help())
        return
    if words[0] == "--version":
        click.echo(f"pcapdump {__version__} (engine {_core.__version__})")
        return
    dispatch(words)


if __name__ == "__main__":
    main()
