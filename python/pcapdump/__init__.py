"""pcapdump: gateway-style packet capture with a Rust engine.

>>> import pcapdump
>>> f = pcapdump.Filter("ipsrc 198.18.0.1 tcp")
>>> for pkt in pcapdump.read("in.cap", filter="udp"):   # doctest: +SKIP
...     print(pkt.brief())
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version

from . import _core
from ._core import MAX_SNAPLEN, Filter, Packet
from .errors import CaptureFileError, FilterError, PcapdumpError, UsageError

try:
    __version__ = _dist_version("pcapdump")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = _core.__version__

__all__ = [
    "MAX_SNAPLEN",
    "CaptureFileError",
    "Filter",
    "FilterError",
    "Packet",
    "PcapdumpError",
    "UsageError",
    "read",
    "write",
]

FilterLike = Filter | str | Iterable[str] | None


def as_filter(filter: FilterLike) -> Filter | None:
    """A ``Filter`` from a filter, a string of filter words, or a list of tokens; ``None`` for none."""
    if filter is None or isinstance(filter, Filter):
        return filter
    return Filter(filter)


def read(
    path: str | os.PathLike[str],
    filter: FilterLike = None,
    snaplen: int | None = None,
    count: int | None = None,
) -> Iterator[Packet]:
    """Iterate over the packets of a pcap or pcapng file that match ``filter``.

    ``snaplen`` cuts each packet's data (``wirelen`` keeps the true length); ``count`` stops after that
    many matching packets. Raises ``CaptureFileError`` for a missing, foreign or damaged file.
    """
    return _core.FileReader(os.fspath(path), as_filter(filter), snaplen, count)


def write(
    path: str | os.PathLike[str],
    packets: Iterable[Packet | tuple[int, bytes]],
    linktype: int = 1,
    snaplen: int = MAX_SNAPLEN,
) -> int:
    """Write packets to a classic pcap file, atomically; returns how many were written."""
    return _core.write_pcap(os.fspath(path), packets, linktype, snaplen)
