"""Type stubs of the Rust extension module."""

from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, final

from pcapdump.aio import AsyncPackets
from pcapdump.shapes import (
    BufferInterface,
    CaptureSettings,
    CaptureStats,
    Interface,
    ReadSummary,
    TriggerInfo,
)

__all__ = [
    "CONVERSATION_FIELDS",
    "DEFAULT_AFTER",
    "DEFAULT_BUFFER_KB",
    "DEFAULT_STREAM_BUFFER_KB",
    "FILTER_NEGATION",
    "MAX_AFTER",
    "MAX_BUFFER_KB",
    "MAX_COUNT",
    "MAX_DURATION_S",
    "MAX_SNAPLEN",
    "MIN_BUFFER_KB",
    "MIN_DURATION_S",
    "MIN_RING_BLOCKS",
    "RING_BLOCKS",
    "SHARED_RING_BLOCKS",
    "STREAM_DRAIN_GRACE_S",
    "STREAM_FAILED_ENDS",
    "TEMP_SUFFIX",
    "WAIT_SLICE_S",
    "Capture",
    "CaptureBuffer",
    "FileReader",
    "Filter",
    "LiveLines",
    "Packet",
    "Readiness",
    "Table",
    "TriggerGroup",
    "__version__",
    "error_kinds",
    "file_conversations",
    "filter_words",
    "interfaces",
    "mark_exiting",
    "packet_conversations",
    "read_lines",
    "read_table",
    "read_to_pcap",
    "ring_blocks_each",
    "write_pcap",
    "write_pcapng",
]

__version__: str
MAX_SNAPLEN: int
MAX_COUNT: int
CONVERSATION_FIELDS: list[str]
MIN_DURATION_S: int
MAX_DURATION_S: int
MAX_AFTER: int
DEFAULT_AFTER: int
MIN_BUFFER_KB: int
MAX_BUFFER_KB: int
DEFAULT_BUFFER_KB: int
DEFAULT_STREAM_BUFFER_KB: int
WAIT_SLICE_S: float
STREAM_DRAIN_GRACE_S: float
STREAM_FAILED_ENDS: list[str]
RING_BLOCKS: int
SHARED_RING_BLOCKS: int
MIN_RING_BLOCKS: int
TEMP_SUFFIX: str

def error_kinds() -> list[str]: ...
def ring_blocks_each(interfaces: int) -> int: ...

@final
class Filter:
    """A packet filter in pcapdump's filter words."""

    def __new__(cls, expr: str | Sequence[str] | None = None) -> Filter: ...
    def matches(self, frame: bytes, vlan_tci: int | None = None) -> bool: ...
    def bpf(self, snaplen: int = ...) -> list[tuple[int, int, int, int]]: ...
    def run_bpf(self, frame: bytes, vlan_tci: int | None = None, snaplen: int = ...) -> int: ...
    def without_tcp_end(self, addr: str, port: int) -> Filter: ...
    def __eq__(self, value: object, /) -> bool: ...
    __hash__: None  # type: ignore[assignment]

def filter_words() -> list[tuple[str, str | None]]: ...
def interfaces() -> list[Interface]: ...

FILTER_NEGATION: str

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
    @property
    def proto(self) -> str: ...
    @property
    def src(self) -> str | None: ...
    @property
    def dst(self) -> str | None: ...
    @property
    def sport(self) -> int | None: ...
    @property
    def dport(self) -> int | None: ...
    @property
    def eth_src(self) -> str | None: ...
    @property
    def eth_dst(self) -> str | None: ...
    @property
    def vlan(self) -> tuple[int, ...]: ...
    @property
    def ip_proto(self) -> int | None: ...
    @property
    def tcp_flags(self) -> str | None: ...
    @property
    def truncated(self) -> bool: ...
    def fields(self) -> dict[str, Any]: ...
    def brief(self) -> str: ...
    def json(self) -> str: ...
    def __reduce__(
        self,
    ) -> tuple[type[Packet], tuple[int, bytes, int, str | None, str | None, int, int]]: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Table:
    """Packets as a table: one row per packet, handed over through the Arrow PyCapsule stream
    interface."""

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object: ...
    @property
    def num_rows(self) -> int: ...
    @property
    def column_names(self) -> list[str]: ...
    def __len__(self) -> int: ...

def mark_exiting() -> None: ...
def file_conversations(
    path: str, filter: Filter | None = None, count: int | None = None
) -> dict[str, Any]: ...
def packet_conversations(packets: Iterable[object]) -> dict[str, Any]: ...
def read_table(
    path: str,
    filter: Filter | None = None,
    snaplen: int | None = None,
    count: int | None = None,
    columns: Iterable[str] | None = None,
) -> Table: ...

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
    tz: str | None = None,
    utc: bool = False,
    date: bool = False,
) -> ReadSummary: ...
def read_to_pcap(
    path: str,
    out: str,
    filter: Filter | None = None,
    snaplen: int | None = None,
    count: int | None = None,
    pcapng: bool = False,
) -> ReadSummary: ...
def write_pcap(path: str, packets: Iterable[Any], linktype: int = 1, snaplen: int = ...) -> int: ...
def write_pcapng(path: str, packets: Iterable[Any], linktype: int = 1, snaplen: int = ...) -> int: ...

@final
class Capture:
    """A live capture on one interface into its own capture buffer."""

    def __new__(
        cls,
        iface: str,
        filter: Filter | None = None,
        snaplen: int | None = None,
        count: int | None = None,
        buffer_kb: int = ...,
        promisc: bool = False,
        ring: bool = False,
        *,
        duration: float | None = None,
        trigger: Filter | None = None,
        after: int = ...,
        group: TriggerGroup | None = None,
        buffer: CaptureBuffer | None = None,
        store: bool = True,
        live: LiveLines | None = None,
        ring_block_kb: int | None = None,
        ring_blocks: int | None = None,
        ring_timeout_ms: int | None = None,
    ) -> Capture: ...
    def __enter__(self) -> Capture: ...
    def __exit__(
        self,
        *_exc: type[BaseException] | BaseException | TracebackType | None,
    ) -> bool: ...
    def __iter__(self) -> Capture: ...
    def __next__(self) -> Packet: ...
    def next(self, timeout: float | None = None) -> Packet | None: ...
    @property
    def finished(self) -> bool: ...
    def __aiter__(self) -> AsyncPackets: ...
    def watch(self) -> Readiness: ...
    def stop(self) -> None: ...
    def stats(self) -> CaptureStats: ...
    def settings(self) -> CaptureSettings: ...
    def write(self, path: str, format: str = "pcap") -> int: ...
    def table(self, columns: Iterable[str] | None = None) -> Table: ...
    def stream(self, fd: int, name: str = "standard output") -> tuple[int, str]: ...
    def trigger(self, tz: str | None = None, utc: bool = False, date: bool = False) -> TriggerInfo | None: ...
    @property
    def iface(self) -> str: ...
    @property
    def linktype(self) -> int: ...

@final
class Readiness:
    """Readable each time the capture it watches stores packets, and when it stops."""

    def fileno(self) -> int: ...
    def clear(self) -> None: ...

@final
class CaptureBuffer:
    """A capture buffer that several captures can share (the agent's)."""

    def __new__(cls, size_kb: int, ring: bool = False) -> CaptureBuffer: ...
    @property
    def size(self) -> int: ...
    @property
    def used(self) -> int: ...
    @property
    def mode(self) -> str: ...
    @property
    def held(self) -> int: ...
    def interfaces(self) -> list[BufferInterface]: ...
    def lines(
        self,
        iface: str,
        json: bool = False,
        tz: str | None = None,
        utc: bool = False,
        date: bool = False,
        mark: int | None = None,
    ) -> bytes: ...
    def write(
        self, iface: str, path: str, snaplen: int = ..., still_wanted: Callable[[], object] | None = None
    ) -> tuple[int, int] | None: ...
    def conversations(self, ifaces: list[str], filter: Filter | None = None) -> dict[str, Any]: ...
    def merged_lines(
        self,
        ifaces: list[str],
        json: bool = False,
        tz: str | None = None,
        utc: bool = False,
        date: bool = False,
        mark: int | None = None,
    ) -> bytes: ...
    def write_pcapng(
        self,
        ifaces: list[str],
        path: str,
        snaplens: list[int],
        captures: list[Capture | None],
        still_wanted: Callable[[], object] | None = None,
        comment: tuple[int, str] | None = None,
    ) -> list[tuple[int, int]] | None: ...
    def wipe(self) -> None: ...

@final
class TriggerGroup:
    """Captures that one trigger stops together."""

    def __new__(cls) -> TriggerGroup: ...

@final
class LiveLines:
    """Brief lines of the packets that one or more captures keep, as they are captured."""

    def __new__(
        cls,
        capacity: int = 65536,
        json: bool = False,
        tz: str | None = None,
        utc: bool = False,
        date: bool = False,
    ) -> LiveLines: ...
    def get(self, timeout: float) -> str | None: ...
    @property
    def finished(self) -> bool: ...
    @property
    def dropped(self) -> int: ...
    def __iter__(self) -> LiveLines: ...
    def __next__(self) -> str: ...
