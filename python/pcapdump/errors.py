"""Exceptions raised by pcapdump. Each carries a one-line message fit for a terminal."""


class PcapdumpError(Exception):
    """Base class of pcapdump's errors."""


class FilterError(PcapdumpError, ValueError):
    """A filter word or value is wrong: ``message`` says what, ``token`` is the culprit as typed."""

    def __init__(self, message: str, token: str) -> None:
        super().__init__(message, token)
        self.message = message
        self.token = token

    def __str__(self) -> str:
        return self.message


class UsageError(PcapdumpError):
    """A command line is wrong: ``message`` names the token and what was expected."""

    def __init__(self, message: str, token: str = "") -> None:
        super().__init__(message, token)
        self.message = message
        self.token = token

    def __str__(self) -> str:
        return self.message


class CaptureFileError(PcapdumpError):
    """A capture file cannot be read or written (missing, not pcap, cut short, ...)."""


class CaptureError(PcapdumpError):
    """A live capture cannot start: no such interface, no privilege, unsupported system."""
