"""The gateway inventory of ``fwctl`` (docs/fwctl.md#the-inventory): ``$PCAPDUMP_GATEWAYS``, else
``~/.config/pcapdump/gateways.toml``. Each top-level table is a data source, each of its tables a gateway:

    [site.gw1]
    host = "gw1.example.net"
    user = "root"
    store = "/var/lib/pcapdump/store"
    # port = 22, identity = "~/.ssh/gw_ed25519", known_hosts = "~/.ssh/known_hosts",
    # pcapdump = "/usr/local/bin/pcapdump"   (the command the extcap runs there; default: pcapdump)
    # jump = "admin@bastion.example.net:2222"   (or a list of hops; also for a whole data source)

Host entries of ``~/.ssh/config`` that match a gateway's ``host`` fill in what the inventory leaves out
(``HostName``, ``Port``, ``User`` of a hop, ``IdentityFile``, ``ProxyJump``, ``UserKnownHostsFile``): see
``sshroute``.

The data source ``local`` is this machine's capture store and needs no inventory.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import InventoryError, UnknownGatewayError, UsageError

LOCAL = "local"
_KEYS = {"host", "port", "user", "identity", "store", "known_hosts", "pcapdump", "jump"}
# A data source's own keys, beside its gateways: defaults for each of them.
_SOURCE_KEYS = {"jump"}
JUMP_FORM = "[user@]host[:port] (host a name, an IPv4 address or an [IPv6] address)"
_HOP = re.compile(
    r"(?:(?P<user>[^@\s:/\[\]\x00-\x1f\x7f]+)@)?(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9][A-Za-z0-9._-]*))(?::(?P<port>\d{1,5}))?"
)


@dataclass(frozen=True)
class Hop:
    """A bastion on the way to a gateway: ``user@host:port`` (user and port may be left to the ssh
    configuration, then to the local user and 22)."""

    host: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        return f"{user}{host}" + (f":{self.port}" if self.port else "")


def parse_hop(text: str) -> Hop | None:
    """``"admin@bastion:2222"`` → ``Hop``; ``None`` when it is not of that form."""
    m = _HOP.fullmatch(text)
    if not m:
        return None
    port = int(m["port"]) if m["port"] else None
    if port is not None and not 1 <= port <= 65535:
        return None
    return Hop(m["v6"] or m["host"], m["user"], port)


@dataclass(frozen=True)
class Gateway:
    source: str
    name: str
    host: str
    #: ``None``: not in the inventory (the ssh configuration's ``Port``, else 22).
    port: int | None
    user: str
    store: str
    identity: Path | None = None
    known_hosts: Path | None = None
    #: The pcapdump command on the gateway, for a remote `stream` (the extcap).
    pcapdump: str = "pcapdump"
    #: Bastions to go through, in order; ``None``: not in the inventory (the ssh configuration's
    #: ``ProxyJump``, else straight); ``()``: straight, whatever the configuration says.
    jump: tuple[Hop, ...] | None = None

    @property
    def label(self) -> str:
        return f"{self.source}:{self.name}"


def _jump(where: str, value: object) -> tuple[Hop, ...]:
    """``jump``: one hop, a list of hops, or ``"none"`` (as OpenSSH's ProxyJump none) for straight."""
    if isinstance(value, str) and value.lower() == "none":
        return ()
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise InventoryError(f"{where}: 'jump' must be a string or a list of strings: {JUMP_FORM}")
    hops = []
    for text in texts:
        hop = parse_hop(text)
        if hop is None:
            several = ' (several hops are a list: jump = ["a@bastion1", "b@bastion2"])' if "," in text else ""
            raise InventoryError(f"{where}: 'jump': {text!r} is not {JUMP_FORM}{several}")
        hops.append(hop)
    return tuple(hops)


def inventory_path() -> Path:
    env = os.environ.get("PCAPDUMP_GATEWAYS")
    if env:
        return Path(env).expanduser()
    return Path(os.path.expanduser("~")) / ".config" / "pcapdump" / "gateways.toml"


def split_target(target: str) -> tuple[str, str]:
    """``"site:gw1"`` → ``("site", "gw1")``; a missing part is a usage error naming the token."""
    source, sep, gateway = target.partition(":")
    if not sep or not source or not gateway:
        raise UsageError(
            f"'{target}': expected <datasource:gateway>, e.g. site:gw1 (or site:* for all)", target
        )
    return source, gateway


def _gateway(path: Path, source: str, name: str, table: object, jump: tuple[Hop, ...] | None) -> Gateway:
    where = f"{path}: [{source}.{name}]"
    if name in ("", ".", "..", "*") or "/" in name or "\0" in name:
        # A fan-out writes each gateway's file into a folder of the gateway's name.
        raise InventoryError(
            f"{where}: '{name}' cannot name a gateway: it names its folder in a fan-out "
            "(no '/', not . or ..), and * means every gateway"
        )
    if not isinstance(table, dict):
        raise InventoryError(f"{where}: expected a table with host, user and store")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise InventoryError(f"{where}: unknown key '{unknown[0]}' (expected {', '.join(sorted(_KEYS))})")

    def text(key: str, required: bool = True) -> str | None:
        value = table.get(key)
        if value is None:
            if required:
                raise InventoryError(f"{where}: missing key '{key}'")
            return None
        if not isinstance(value, str) or not value:
            raise InventoryError(f"{where}: '{key}' must be a non-empty string")
        return value

    port = table.get("port")
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535):
        raise InventoryError(f"{where}: 'port' must be a whole number 1…65535")
    if "jump" in table:
        jump = _jump(where, table["jump"])
    store = text("store")
    assert store is not None
    if not store.startswith("/"):
        raise InventoryError(f"{where}: 'store' must be an absolute path on the gateway")
    identity, known_hosts = text("identity", False), text("known_hosts", False)
    command = text("pcapdump", False) or "pcapdump"
    if any(c.isspace() or not c.isprintable() for c in command):
        raise InventoryError(f"{where}: 'pcapdump' must be a command path without spaces")
    return Gateway(
        source=source,
        name=name,
        host=str(text("host")),
        port=port,
        user=str(text("user")),
        store=store,
        identity=Path(identity).expanduser() if identity else None,
        known_hosts=Path(known_hosts).expanduser() if known_hosts else None,
        pcapdump=command,
        jump=jump,
    )


def load(path: Path | None = None) -> dict[str, dict[str, Gateway]]:
    path = path or inventory_path()
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InventoryError(
            f"{path}: no gateway inventory (set PCAPDUMP_GATEWAYS or create it; see `fwctl --help`)"
        ) from None
    except OSError as e:
        raise InventoryError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise InventoryError(f"{path}: not valid TOML: {e}") from None
    sources: dict[str, dict[str, Gateway]] = {}
    for source, gateways in data.items():
        if source == LOCAL:
            raise InventoryError(f"{path}: [{LOCAL}] is reserved for this machine's store")
        if not isinstance(gateways, dict):
            raise InventoryError(f"{path}: '{source}' must be a table of gateways ([{source}.<gateway>])")
        # A data source's own keys are values; a table of that name is a gateway of that name.
        own = {k: v for k, v in gateways.items() if k in _SOURCE_KEYS and not isinstance(v, dict)}
        jump = _jump(f"{path}: [{source}]", own["jump"]) if "jump" in own else None
        sources[source] = {
            name: _gateway(path, source, name, t, jump) for name, t in gateways.items() if name not in own
        }
    return sources


def resolve(target: str) -> list[Gateway]:
    """The gateways of ``source:gateway`` or ``source:*``. ``local`` is not in the inventory: see fwctl."""
    source, name = split_target(target)
    path = inventory_path()
    sources = load(path)
    if source not in sources:
        known = ", ".join(sorted(sources)) or "none"
        raise UnknownGatewayError(
            f"'{source}': unknown data source in {path} (known: {known}, and local)", target
        )
    gateways = sources[source]
    if name == "*":
        if not gateways:
            # Success with nothing done would look like every gateway was fetched.
            raise UnknownGatewayError(f"'{target}': data source '{source}' has no gateways in {path}", target)
        return list(gateways.values())
    if name not in gateways:
        known = ", ".join(sorted(gateways)) or "none"
        raise UnknownGatewayError(
            f"'{target}': unknown gateway '{name}' in data source '{source}' (known: {known})", target
        )
    return [gateways[name]]
