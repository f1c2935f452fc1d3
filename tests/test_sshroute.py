"""The way to a gateway (pcapdump.sshroute): the inventory first, then the OpenSSH configuration as
OpenSSH reads it, for the gateway and for each bastion on its own; no gateway is contacted here."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest
from pcapdump.errors import InventoryError, UsageError
from pcapdump.inventory import Gateway, Hop, load
from pcapdump.sshroute import route

pytestmark = pytest.mark.portable


def gateway(**kw) -> Gateway:
    return Gateway(**{"source": "site", "name": "gw1", "host": "gw1", "port": None, "user": "root",
                      "store": "/s", **kw})  # fmt: skip


def test_the_configuration_fills_in_what_the_inventory_leaves_out(tmp_path):
    for name in ("gwkey", "bastkey"):
        (tmp_path / name).write_text("key")
    config = tmp_path / "config"
    config.write_text(
        f"Host gw1\n  HostName 10.20.0.1\n  Port 2200\n  IdentityFile {tmp_path}/gwkey\n"
        f"  ProxyJump ops@bast\n  UserKnownHostsFile {tmp_path}/kh1 {tmp_path}/kh2\n  IdentitiesOnly yes\n"
        f"Host bast\n  HostName 198.18.5.1\n  Port 2222\n  IdentityFile {tmp_path}/bastkey\n"
    )
    r = route(gateway(), config)
    gw = r.gateway
    assert (gw.address, gw.port, gw.user) == ("10.20.0.1", 2200, "root")
    assert gw.client_keys == (str(tmp_path / "gwkey"),) and gw.identities_only
    assert gw.known_hosts == (tmp_path / "kh1", tmp_path / "kh2")
    (bast,) = r.hops
    assert (bast.address, bast.port, bast.user) == ("198.18.5.1", 2222, "ops")
    # A bastion's own entry: its own key; the gateway's known_hosts files, as it names none.
    assert bast.client_keys == (str(tmp_path / "bastkey"),) and bast.known_hosts == gw.known_hosts
    # The inventory comes first: port, keys, known_hosts, and its jump (none: straight).
    mine = route(gateway(port=22, identity=tmp_path / "mine", known_hosts=tmp_path / "kh", jump=()), config)
    assert mine.hops == () and mine.gateway.port == 22
    assert mine.gateway.client_keys == (str(tmp_path / "mine"),)
    assert mine.gateway.known_hosts == (tmp_path / "kh",)
    # Without a configuration: the name as it is, 22, no bastion.
    plain = route(gateway(), None)
    assert (plain.gateway.address, plain.gateway.port, plain.hops) == ("gw1", 22, ())
    assert plain.gateway.known_hosts == (Path.home() / ".ssh" / "known_hosts",)


def test_a_bastions_own_proxyjump_puts_its_bastions_in_front(tmp_path):
    config = tmp_path / "config"
    config.write_text(
        "Host gw1\n  ProxyJump b2,b3\nHost b2\n  ProxyJump b1\n  User two\nHost b1\n  User one\n"
        "Host b3\n  ProxyJump nowhere\n"
    )
    hops = route(gateway(), config).hops
    # As `ssh -J b2,b3`: b2 as its own entry says (through b1); b3 through b2, its own ProxyJump unused.
    assert [(h.address, h.user) for h in hops] == [("b1", "one"), ("b2", "two"), ("b3", getpass.getuser())]
    config.write_text("Host gw1\n  ProxyJump b1\nHost b1\n  ProxyJump b1\n")
    with pytest.raises(UsageError, match="more than 8 bastions"):
        route(gateway(), config)


def test_proxycommand_is_refused_not_silently_passed_over(tmp_path):
    config = tmp_path / "config"
    config.write_text("Host gw1\n  ProxyCommand ssh -W %h:%p bastion\n")
    with pytest.raises(UsageError, match="ProxyCommand for gw1: not followed"):
        route(gateway(), config)
    # The inventory's jump does not need it, but a ProxyCommand is still not what the user asked for.
    with pytest.raises(UsageError, match="ProxyJump"):
        route(gateway(jump=(Hop("b"),)), config)


def test_jump_none_is_straight_and_a_comma_list_says_to_write_a_list(tmp_path):
    inv = tmp_path / "gateways.toml"
    inv.write_text('[site]\njump = "a@b"\n[site.gw1]\nhost = "h"\nuser = "u"\nstore = "/s"\njump = "none"\n')
    assert load(inv)["site"]["gw1"].jump == ()
    inv.write_text('[site.gw1]\nhost = "h"\nuser = "u"\nstore = "/s"\njump = "a@b,c@d"\n')
    with pytest.raises(InventoryError, match=r"several hops are a list"):
        load(inv)


def test_the_inventorys_known_hosts_and_identity_hold_for_every_hop(tmp_path):
    """A `Host *` entry matches the bastions too: it must not replace the files the inventory names."""
    (tmp_path / "key").write_text("key")
    config = tmp_path / "config"
    config.write_text(f"Host *\n  UserKnownHostsFile {tmp_path}/lax\n  IdentityFile {tmp_path}/key\n")
    team = tmp_path / "team_known_hosts"
    r = route(gateway(known_hosts=team, identity=tmp_path / "mine", jump=(Hop("b"),)), config)
    assert [e.known_hosts for e in r.endpoints] == [(team,), (team,)]
    assert [e.client_keys for e in r.endpoints] == [(str(tmp_path / "mine"),)] * 2


def test_hostile_configurations_are_one_usage_error(tmp_path):
    config = tmp_path / "config"
    for text, said in (
        (f"Include {config}\n", "Include leads back to itself"),
        ("Host gw1\n  Port 70000\n", "expected 1…65535"),
        ("Host gw1\n  ProxyJump a,a\n", "comes twice"),
        ("Host gw1\n  ProxyJump " + ",".join(f"h{i}" for i in range(20)) + "\n", "at most"),
    ):
        config.write_text(text)
        with pytest.raises(UsageError, match=said):
            route(gateway(), config)
    inv = tmp_path / "gateways.toml"
    # A gateway may be called `jump`: a table is a gateway, a value the data source's own jump.
    inv.write_text('[site.jump]\nhost = "h"\nuser = "u"\nstore = "/s"\n')
    assert load(inv)["site"]["jump"].host == "h"
