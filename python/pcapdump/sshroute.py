"""How ``fwctl`` and the extcap reach a gateway: the bastions on the way and the SSH settings of each hop,
from the inventory and the user's OpenSSH configuration (docs/fwctl.md#gateways-behind-a-bastion).

As OpenSSH would, the configuration's ``Host`` (and ``Match``) entries for a host supply ``HostName``,
``Port``, ``User``, ``IdentityFile``, ``IdentitiesOnly``, ``ProxyJump``, ``UserKnownHostsFile`` and
``HostKeyAlias``; whatever the inventory says itself comes first. A bastion takes its own entry's keys and
known_hosts files, else the gateway's, and its own ``ProxyJump`` carries it in turn. Host keys are
always checked: no setting turns the check off.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import UsageError
from .inventory import JUMP_FORM, Gateway, Hop, parse_hop

DEFAULT_CONFIG = Path("~") / ".ssh" / "config"
SSH_PORT = 22
# Bastions in front of bastions, at most: a ProxyJump that comes back to itself must end.
MAX_HOPS = 8
# What the configuration may supply, by OpenSSH's names (as asyncssh's parser keeps them).
_USED = (
    "Hostname",
    "Port",
    "User",
    "IdentityFile",
    "IdentitiesOnly",
    "ProxyJump",
    "ProxyCommand",
    "UserKnownHostsFile",
    "HostKeyAlias",
)


@dataclass(frozen=True)
class Endpoint:
    """One SSH server on the way, a bastion or the gateway itself, and how to talk to it."""

    bastion: bool
    address: str
    port: int
    user: str
    #: The files its host key is checked against (at least one must exist).
    known_hosts: tuple[Path, ...]
    #: Key files to offer; ``None``: the default keys. The ssh agent's keys are offered too, unless
    #: ``identities_only``.
    client_keys: tuple[str, ...] | None = None
    identities_only: bool = False
    #: The name its host key is looked up under, instead of its address.
    host_key_alias: str | None = None

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.user}@{host}:{self.port}"


@dataclass(frozen=True)
class Route:
    hops: tuple[Endpoint, ...]
    gateway: Endpoint

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
        problem = "not a regular file" if path.exists() else "no such ssh configuration file"
        raise UsageError(f"'{text}': {problem} (or none to read none)", text)
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
    except RecursionError:
        raise UsageError(f"'{config}': Include leads back to itself", str(config)) from None
    except (OSError, ValueError) as e:
        raise UsageError(f"'{config}': not a usable ssh configuration: {e}", str(config)) from None
    said = {name: parsed.get(name) for name in _USED if parsed.get(name) is not None}
    port_said = said.get("Port")
    if port_said is not None and not (isinstance(port_said, int) and 1 <= port_said <= 65535):
        raise UsageError(f"'{config}': Port {port_said} for {host}: expected 1…65535", str(config))
    if said.get("ProxyCommand"):
        raise UsageError(
            f"'{config}': ProxyCommand for {host}: not followed (each hop is an SSH connection of its "
            "own here): write ProxyJump instead, or the inventory's jump",
            str(config),
        )
    return said


def _jumps(config: Path | None, text: str) -> tuple[Hop, ...]:
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


def _paths(value: object) -> tuple[Path, ...]:
    """Files the configuration names; ``none`` names none (then no host key can be trusted)."""
    values = value if isinstance(value, list | tuple) else [value]
    return tuple(Path(str(v)).expanduser() for v in values if str(v).lower() != "none")


def _keys(value: object) -> tuple[str, ...] | None:
    """The key files the configuration names that exist (OpenSSH passes over the missing ones)."""
    found = tuple(str(p) for p in _paths(value) if p.is_file())
    return found or None


def _bastion(
    config: Path | None, hop: Hop, like: Endpoint, inventory: Gateway
) -> tuple[Endpoint, tuple[Hop, ...]]:
    """A bastion, with its own entry's settings, else those of ``like`` (the gateway's); and the
    bastions its own ``ProxyJump`` puts in front of it. The inventory's ``known_hosts`` and
    ``identity`` hold for every hop: no configuration entry (a ``Host *`` among them) replaces them."""
    said = _settings(config, hop.host, hop.user, hop.port)
    own_known = "UserKnownHostsFile" in said and inventory.known_hosts is None
    own_keys = "IdentityFile" in said and inventory.identity is None
    endpoint = Endpoint(
        bastion=True,
        address=str(said.get("Hostname", hop.host)),
        port=hop.port or int(str(said.get("Port", SSH_PORT))),
        user=hop.user or str(said.get("User") or getpass.getuser()),
        known_hosts=_paths(said["UserKnownHostsFile"]) if own_known else like.known_hosts,
        client_keys=_keys(said["IdentityFile"]) if own_keys else like.client_keys,
        identities_only=bool(said.get("IdentitiesOnly", like.identities_only)),
        host_key_alias=str(said["HostKeyAlias"]) if "HostKeyAlias" in said else None,
    )
    return endpoint, _jumps(config, str(said.get("ProxyJump", "none")))


def route(gw: Gateway, config: Path | None) -> Route:
    """The way to ``gw``: the inventory first, then what ``config`` says for its host and bastions."""
    said = _settings(config, gw.host, gw.user, gw.port)
    if gw.known_hosts is not None:
        known: tuple[Path, ...] = (gw.known_hosts,)
    elif "UserKnownHostsFile" in said:
        known = _paths(said["UserKnownHostsFile"])
    else:
        known = (Path.home() / ".ssh" / "known_hosts",)
    if gw.identity is not None:
        keys: tuple[str, ...] | None = (str(gw.identity),)
    else:
        keys = _keys(said["IdentityFile"]) if "IdentityFile" in said else None
    gateway = Endpoint(
        bastion=False,
        address=str(said.get("Hostname", gw.host)),
        port=gw.port or int(str(said.get("Port", SSH_PORT))),
        user=gw.user,
        known_hosts=known,
        client_keys=keys,
        identities_only=bool(said.get("IdentitiesOnly", False)),
        host_key_alias=str(said["HostKeyAlias"]) if "HostKeyAlias" in said else None,
    )
    jump = gw.jump if gw.jump is not None else _jumps(config, str(said.get("ProxyJump", "none")))
    if len(jump) > MAX_HOPS:
        raise UsageError(f"{gw.label}: {len(jump)} bastions: at most {MAX_HOPS}", gw.label)
    hops = _chain(config, jump, replace(gateway, bastion=True), gw, 0)
    seen: set[tuple[str, int]] = set()
    for hop in (*hops, gateway):
        if (hop.address, hop.port) in seen:
            raise UsageError(f"{gw.label}: {hop} comes twice on the way (a loop of bastions)", gw.label)
        seen.add((hop.address, hop.port))
    return Route(tuple(hops), gateway)


def _chain(
    config: Path | None, jump: tuple[Hop, ...], like: Endpoint, gw: Gateway, depth: int
) -> list[Endpoint]:
    """The bastions of ``jump``, as ``ssh -J a,b`` takes them: b through a, and a as its own
    configuration says, whose ``ProxyJump`` may put more bastions in front of it."""
    hops: list[Endpoint] = []
    for at, hop in enumerate(jump):
        endpoint, before = _bastion(config, hop, like, gw)
        if at == 0 and before:
            if depth >= MAX_HOPS or len(before) > MAX_HOPS:
                raise UsageError(
                    f"{gw.label}: more than {MAX_HOPS} bastions (a ProxyJump that leads back to itself?)",
                    gw.label,
                )
            hops += _chain(config, before, like, gw, depth + 1)
        if len(hops) >= MAX_HOPS:
            raise UsageError(f"{gw.label}: more than {MAX_HOPS} bastions on the way", gw.label)
        hops.append(endpoint)
    return hops
