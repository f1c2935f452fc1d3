"""Exceptions raised by pcapdump (docs/python.md#errors).

Every class has a ``kind``: a short stable name. The engine reports its errors by kind (the Rust core's
``ErrorKind``), the agent's replies carry the kind, and ``from_kind`` turns a kind back into the class,
so no code anywhere decides by reading a message. Each message is one line naming the culprit.
"""

from __future__ import annotations

from typing import Any, ClassVar

EXIT_RUNTIME = 1
EXIT_USAGE = 2


class PcapdumpError(Exception):
    """Base class of pcapdump's errors."""

    kind: ClassVar[str] = "error"
    #: The command line's exit status for this error.
    exit_code: ClassVar[int] = EXIT_RUNTIME
    #: The attributes beyond the message that say what failed; the constructor takes them by name.
    detail_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def details(self) -> dict[str, Any]:
        """The attributes named by ``detail_names``, for the agent's replies."""
        return {name: getattr(self, name) for name in self.detail_names}


class UsageError(PcapdumpError):
    """A command line or argument is wrong: ``message`` names the token and what was expected."""

    kind = "usage"
    exit_code = EXIT_USAGE
    detail_names = ("token",)

    def __init__(self, message: str, token: str = "") -> None:
        super().__init__(message)
        self.token = token
        self.args = (message, token)


class UnknownGatewayError(UsageError):
    """``fwctl``: the data source or the gateway is not in the inventory; ``target`` as typed."""

    kind = "unknown_gateway"
    detail_names = ("target",)

    def __init__(self, message: str, target: str = "") -> None:
        super().__init__(message, target)
        self.target = target


class FilterError(UsageError, ValueError):
    """A filter word or value is wrong: ``message`` says what, ``token`` is the culprit as typed."""

    kind = "filter"


class CaptureFileError(PcapdumpError):
    """A capture file cannot be read or written (missing, not pcap, cut short, ...)."""

    kind = "capture_file"


class CaptureError(PcapdumpError):
    """A live capture cannot start or go on; ``iface`` names the interface when one is concerned."""

    kind = "capture"
    detail_names: ClassVar[tuple[str, ...]] = ("iface",)

    def __init__(self, message: str, iface: str | None = None) -> None:
        super().__init__(message)
        self.iface = iface


class NoSuchInterfaceError(CaptureError):
    """The interface does not exist (in the network namespace of whoever captures). ``suggestions``: the
    existing names it is close to; ``netns``: the network namespace it was looked for in
    (``net:[4026531840]``), when known."""

    kind = "no_such_interface"
    detail_names = ("iface", "suggestions", "netns")

    def __init__(
        self,
        message: str,
        iface: str | None = None,
        suggestions: list[str] | None = None,
        netns: str | None = None,
    ) -> None:
        super().__init__(message, iface)
        self.suggestions = list(suggestions or [])
        self.netns = netns


class PrivilegeError(CaptureError):
    """Capturing needs root or the CAP_NET_RAW capability."""

    kind = "privilege"


class UnsupportedError(CaptureError):
    """Live capture does not exist on this system (files, filters and fwctl still work)."""

    kind = "unsupported"


class AgentError(PcapdumpError):
    """The agent cannot be reached, or it failed."""

    kind = "agent"


class AgentNotRunningError(AgentError):
    """No agent runs for this home: nothing is being captured."""

    kind = "agent_not_running"


class AgentGoneError(AgentError):
    """The agent died (killed or crashed) and left its socket behind: the packets it held are lost."""

    kind = "agent_gone"


class AgentUnresponsiveError(AgentError):
    """The agent is there but did not answer in time."""

    kind = "agent_unresponsive"


class HomeError(PcapdumpError):
    """``PCAPDUMP_HOME`` or a file in it is not to be trusted: another owner, writable by others, a link."""

    kind = "home"


class InventoryError(PcapdumpError):
    """``fwctl``: the inventory file is missing or wrong; the message names the file, table and key."""

    kind = "inventory"


class FetchError(PcapdumpError):
    """``fwctl``: a download or listing failed; the message names the gateway and what went wrong."""

    kind = "fetch"


class DestinationError(FetchError):
    """The local destination cannot take the file (no such folder, not a folder, a link or a device, a
    folder others can change); ``path`` names it. Nothing was asked of any gateway because of it."""

    kind = "destination"
    detail_names = ("path",)

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.args = (message, path)


class DestinationExistsError(DestinationError):
    """The destination file exists and replacing it was not asked for. The message says how to ask in
    Python (``force=True``); ``worded("--force")`` says it as the command line does."""

    kind = "destination_exists"

    def __init__(self, message: str = "", path: str = "") -> None:
        self.path = path
        super().__init__(message or self.worded("force=True"), path)

    def worded(self, force: str) -> str:
        """The message, with ``force`` as the way to replace the file."""
        return f"'{self.path}': already exists ({force} replaces it)"


class UnreachableError(FetchError):
    """The gateway did not answer, refused the connection, or the connection was lost."""

    kind = "unreachable"


class StalledError(UnreachableError):
    """The gateway sent nothing for ``seconds`` (connecting, or in the middle of a file); ``gateway``
    names it. The message names the Python argument (``timeout=``); ``worded("--timeout")`` the option."""

    kind = "stalled"
    detail_names = ("gateway", "seconds")

    def __init__(self, message: str = "", gateway: str = "", seconds: float = 0.0) -> None:
        self.gateway, self.seconds = gateway, seconds
        super().__init__(message or self.worded(f"timeout={seconds:g}"))
        self.args = (self.message, gateway, seconds)

    def worded(self, timeout: str) -> str:
        """The message, with ``timeout`` as the way to wait longer."""
        return f"{self.gateway}: stalled: nothing came for {self.seconds:g} s ({timeout})"


class HostKeyError(FetchError):
    """The gateway's host key is not in ``known_hosts`` or does not match it."""

    kind = "host_key"


class AuthenticationError(FetchError):
    """The gateway refused every key offered."""

    kind = "authentication"


class RemoteFileNotFoundError(FetchError):
    """The file is not in the gateway's capture store."""

    kind = "no_such_file"


def _classes(base: type[PcapdumpError]) -> list[type[PcapdumpError]]:
    found = [base]
    for sub in base.__subclasses__():
        found += _classes(sub)
    return found


#: Every error class by its kind.
BY_KIND: dict[str, type[PcapdumpError]] = {cls.kind: cls for cls in _classes(PcapdumpError)}


def from_kind(kind: str, message: str, **details: Any) -> PcapdumpError:
    """The exception of ``kind`` (an unknown kind: the base class) with ``message`` and its details;
    details the class does not take are left out."""
    cls = BY_KIND.get(kind, PcapdumpError)
    return cls(message, **{k: v for k, v in details.items() if k in cls.detail_names})


__all__ = [
    "BY_KIND",
    "AgentError",
    "AgentGoneError",
    "AgentNotRunningError",
    "AgentUnresponsiveError",
    "AuthenticationError",
    "CaptureError",
    "CaptureFileError",
    "DestinationError",
    "DestinationExistsError",
    "FetchError",
    "FilterError",
    "HomeError",
    "HostKeyError",
    "InventoryError",
    "NoSuchInterfaceError",
    "PcapdumpError",
    "PrivilegeError",
    "RemoteFileNotFoundError",
    "StalledError",
    "UnknownGatewayError",
    "UnreachableError",
    "UnsupportedError",
    "UsageError",
    "from_kind",
]
