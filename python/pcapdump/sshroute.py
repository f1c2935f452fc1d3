"""How ``fwctl`` and the extcap reach a gateway: the bastions on the way and the SSH settings of each hop,
from the inventory and the user's OpenSSH configuration (docs/fwctl.md#gateways-behind-a-bastion).

As OpenSSH would, a ``Host`` entry of the configuration that matches a gateway's ``host`` (or a bastion's)
supplies ``HostName``, ``Port``, ``User``, ``IdentityFile``, ``ProxyJump`` and ``UserKnownHostsFile``;
whatever the inventory says itself comes first. Every hop is checked against the same ``known_hosts``
and offered the same keys as the gateway: a bastion's host key is never skipped.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError
from .inventory import JUMP_FORM, Gateway, Hop, parse_hop

DEFAULT_CONFIG = Path("~") / ".ssh" / "config"
SSH_PORT = 22
# What the configuration may supply, by OpenSSH's names (as asyncssh's parser keeps them).
_USED = ("Hostname", "Port", "User", "IdentityFile", "ProxyJump", "UserKnownHostsFile")


@dataclass(frozen=True)
class Endpoint:
    """One SSH server on the way: a bastion, or the gateway itself."""

    bastion: bool
    address: str
    port: int
    user: str

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.user}@{host}:{self.port}"


@dataclass(frozen=True)
class Route:
    hops: tuple[Endpoint, ...]
    gateway: Endpoint
    known_hosts: Path
    #: Key files to offer; ``None``: the ssh agent and the default keys.
    client_keys: tuple[str, ...] | None

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return (*self.hops, self.gateway)


def config_file(choice: str | os.PathLike[str] | None) -> Path | None:
    """The configuration to read: ``None`` for ``~/.ssh/config`` if there is one, ``"none"`` for none,
    else that file, which must exist."""
    if choice is None:
        default = DEFAULT_CONFIG.expanduser()
        return default if default.is_file() else None
    text = os.fspath(choice)
    if text == "none":
        return None
    path = Path(text).expanduser()
    if not path.is_file():
        raise UsageError(f"'{text}': no such ssh configuration file (or none to read none)", text)
    return path


def _settings(config: Path | None, host: str, user: str | None, port: int | None) -> dict[str, object]:
    """What ``config`` says for ``host``: the options of ``_USED`` it sets."""
    if config is None:
        return {}
    from asyncssh.config import SSHClientConfig

    try:
        parsed = SSHClientConfig.load(
            None, [config], False, False, False, getpass.getuser(), user or (), host, port or ()
        )
    except (OSError, ValueError) as e:
        raise UsageError(f"'{config}': not a usable ssh configuration: {e}", str(config)) from None
    return {name: parsed.get(name) for name in _USED if parsed.get(name) is not None}


def _hops(config: Path | None, text: str) -> tuple[Hop, ...]:
    """``ProxyJump`` of the configuration: hops separated by commas, or ``none``."""
    if text.lower() == "none":
        return ()
    hops = []
    for part in text.split(","):
        hop = parse_hop(part.strip().removeprefix("ssh://"))
        if hop is None:
            raise UsageError(f"'{config}': ProxyJump {part!r} is not {JUMP_FORM}", str(config))
        hops.append(hop)
    return tuple(hops)


def route(gw: Gateway, config: Path | None) -> Route:
    """The way to ``gw``: the inventory first, then what ``config`` says for its host and bastions."""
    said = _settings(config, gw.host, gw.user, gw.port)
    jump = gw.jump if gw.jump is not None else _hops(config, str(said.get("ProxyJump", "none")))
    hops = []
    for hop in jump:
        for_hop = _settings(config, hop.host, hop.user, hop.port)
        hops.append(
            Endpoint(
                True,
                str(for_hop.get("Hostname", hop.host)),
                hop.port or int(str(for_hop.get("Port", SSH_PORT))),
                hop.user or str(for_hop.get("User") or getpass.getuser()),
            )
        )
    known = gw.known_hosts
    if known is None and said.get("UserKnownHostsFile"):
        known = Path(str(_first(said["UserKnownHostsFile"]))).expanduser()
    keys: tuple[str, ...] | None = (str(gw.identity),) if gw.identity is not None else None
    if keys is None and said.get("IdentityFile"):
        found = [Path(str(k)).expanduser() for k in _all(said["IdentityFile"])]
        keys = tuple(str(k) for k in found if k.is_file()) or None
    return Route(
        hops=tuple(hops),
        gateway=Endpoint(
            False,
            str(said.get("Hostname", gw.host)),
            gw.port or int(str(said.get("Port", SSH_PORT))),
            gw.user,
        ),
        known_hosts=known or Path.home() / ".ssh" / "known_hosts",
        client_keys=keys,
    )


def _all(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _first(value: object) -> object:
    return _all(value)[0]
