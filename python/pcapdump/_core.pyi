"""Type stubs of the Rust extension module."""

from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, final

__all__ = [
    "MAX_SNAPLEN",
    "Capture",
    "FileReader",
    "Filter",
    "Packet",
    "__version__",
    "filter_words",
    "read_lines",
    "read_to_pcap",
    "write_pcap",
]

__version__: str
MAX_SNAPLEN: int

@final
class Filter:
    """A packet filter in pcapdump's filter words."""

    def __new__(cls, expr: str | Sequence[str] | None = None) -> Filter: ...
    def matches(self, frame: bytes, vlan_tci: int | None = None) -> bool: ...
    def bpf(self, snaplen: int = ...) -> list[tuple[int, int, int, int]]: ...
    def run_bpf(self, frame: bytes, vlan_tci: int | None = None, snaplen: int = ...) -> int: ...
    def __eq__(self, value: object, /) -> bool: ...
    __hash__: None  # type: ignore[assignment]

def filter_words() -> list[tuple[str, bool]]: ...

@final
class Packet:
    """One captured packet."""

    def __new__(
        cls,
        ts_ns: int,
        data: bytes,
        wirelen: int | None = None,
        iface: str | None = None,
        direction: str | None = None,
        linktype: int = 1,
        index: int = 0,
    ) -> Packet: ...
    @property
    def ts_ns(self) -> int: ...
    @property
    def data(self) -> bytes: ...
    @property
    def wirelen(self) -> int: ...
    @property
    def caplen(self) -> int: ...
    @property
    def iface(self) -> str | None: ...
    @property
    def direction(self) -> str | None: ...
    @property
    def linktype(self) -> int: ...
    @property
    def index(self) -> int: ...
    def brief(self) -> str: ...
    def json(self) -> str: ...

@final
class FileReader:
    """Iterates over the matching packets of a capture file."""

    def __new__(
        cls, path: str, filter: Filter | None = None, snaplen: int | None = None, count: int | None = None
    ) -> FileReader: ...
    def __iter__(self) -> FileReader: ...
    def __next__(self) -> Packet: ...

def read_lines(
    path: str,
    filter: Filter | None = None,
    snaplen: int | None = None,
    count: int | None = None,
    json: bool = False,
) -> dict[str, int]: ...
def read_to_pcap(
    path: str, out: str, filter: Filter | None = None, snaplen: int | None = None, count: int | None = None
) -> dict[str, int]: ...
def write_pcap(path: str, packets: Iterable[Any], linktype: int = 1, snaplen: int = ...) -> int: ...

@final
class Capture:
    """A live capture on one interface into its own capture buffer."""

    def __new__(
        cls,
        iface: str,
        filter: Filter | None = None,
        snaplen: int | None = None,
        count: int | None = None,
        buffer_kb: int = 512,
        promisc: bool = False,
        ring: bool = False,
        ring_block_kb: int = 1024,
        ring_blocks: int = 64,
        ring_timeout_ms: int = 20,
    ) -> Capture: ...
    def __enter__(self) -> Capture: ...
    def __exit__(
        self,
        *_exc: type[BaseException] | BaseException | TracebackType | None,
    ) -> bool: ...
    def __iter__(self) -> Capture: ...
    def __next__(self) -> Packet: ...
    def stop(self) -> None: ...
    def stats(self) -> dict[str, int | str]: ...
    def write(self, path: str) -> int: ...
    @property
    def iface(self) -> str: ...
    @property
    def linktype(self) -> int: ...
