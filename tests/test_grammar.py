"""The console's grammar (docs/commands.md): any order, both spellings, one typed request, and usage
errors that name the token. No agent and no privilege needed."""

from __future__ import annotations

import pytest
from pcapdump import grammar
from pcapdump.errors import UsageError

pytestmark = pytest.mark.portable


@pytest.mark.parametrize(
    "argv",
    [
        "-size 1024 ipsrc 198.18.0.1 tcp start int",
        "-start int -size=1024 -ipsrc=198.18.0.1 -tcp",
        "start int tcp -size 1024 -ipsrc=198.18.0.1",
        "tcp -start=int ipsrc 198.18.0.1 -size=1024",
    ],
)
def test_the_spellings_give_one_request(argv):
    req = grammar.parse(argv.split())
    assert (req.command, req.args, req.options.size_kb) == ("start", ("int",), 1024)
    # Filter words are order-free: the groups may come in any order.
    assert sorted(str(req.filter).split()) == ["198.18.0.1", "ipsrc", "tcp"]


@pytest.mark.parametrize(
    "argv",
    ["write int capture.cap", "-write int -filename=capture.cap", "-filename=capture.cap write int"],
)
def test_write_takes_an_interface_and_a_store_name(argv):
    req = grammar.parse(argv.split())
    assert (req.command, req.args) == ("write", ("int", "capture.cap"))


def test_the_interface_is_optional_and_filter_words_are_not_interfaces():
    assert grammar.parse(["start", "tcp"]).args == ()
    assert grammar.parse(["stop"]).args == ()
    assert grammar.parse(["show", "eth0"]).args == ("eth0",)
    assert grammar.parse(["clean"]).command == "cleanup"
    req = grammar.parse(["-o", "-c", "5", "-ring", "-p", "-s", "96", "start"])
    assert (req.options.live, req.options.count, req.options.ring, req.options.promisc) == (
        True,
        5,
        True,
        True,
    )
    assert req.options.snaplen == 96


@pytest.mark.parametrize(
    ("argv", "token", "expected"),
    [
        ("-size 8 start int", "-size 8", "16…4194304"),
        ("-size=5000000 start", "-size=5000000", "16…4194304"),
        ("-size lots start", "-size lots", "whole number"),
        # Digits other than ASCII: "²" made int() raise, "٣" was read as 3.
        ("-trigger udp -after ² start", "-after ²", "whole number"),
        ("-c ٣ start", "-c ٣", "whole number"),
        ("-o -ou start int", "-ou", "cannot be combined"),
        ("write int ../x.cap", "../x.cap", "8 characters"),
        ("write int toolongname.cap", "toolongname.cap", "8 characters"),
        ("write int x.cappp", "x.cappp", "8 characters"),
        ("write int", "write", "missing file"),
        ("write capture.cap", "write", "missing file (usage: write <if>[,<if>…]|all <file>)"),
        ("show tcp", "tcp", "filter words apply to start, read, conv, policy and stream, not show"),
        ("-size 1024 status", "-size 1024", "applies to start"),
        ("-w out.cap start int", "-w out.cap", "applies to read"),
        ("start a/b", "a/b", "not an interface name"),
        ("start int extra", "extra", "not a filter word, and start takes at most one interface"),
        ("start stop", "stop", "a second command"),
        ("-json", "", "missing command"),
        ("ipsrc 300.1.1.1 start", "ipsrc 300.1.1.1", "not an IPv4 or IPv6 address"),
        ("read f ipdest -w out", "ipdest", "missing value, expected an IPv4 or IPv6 address"),
        ("start int port", "port", "missing value, expected a port"),
    ],
)
def test_usage_errors_name_the_token(argv, token, expected):
    with pytest.raises(UsageError) as e:
        grammar.parse(argv.split())
    assert e.value.token == token or token in e.value.message
    assert expected in e.value.message
    if token:
        assert f"'{token}'" in e.value.message


def test_the_spec_example_values_parse():
    req = grammar.parse(["ipsrc", "192.168.0.1", "ipdest", "10.0.0.1", "proto", "103", "start", "int"])
    assert str(req.filter) == "ipsrc 192.168.0.1 ipdest 10.0.0.1 proto 103"


@pytest.mark.parametrize(
    "argv, shown",
    [
        ("not port 22 start int", "not port 22"),
        ("-start int -not -port=22 -tcp", "tcp not port 22"),
        ("start int tcp not port 22 not -port=80", "tcp not port 22 not port 80"),
        ("read in.pcap not arp not ipsrc 198.18.0.1", "not arp not ipsrc 198.18.0.1"),
    ],
)
def test_not_excludes_the_word_after_it(argv, shown):
    assert str(grammar.parse(argv.split()).filter) == shown


@pytest.mark.parametrize(
    "argv, token",
    [
        ("not -size 10 port 22 start int", "not"),  # `not` binds to the word right after it
        ("start int not", "not"),
        ("start int not not port 22", "not"),
        ("start int not 22", "not"),
        ("start int not port", "not port"),
        ("start int -not=port", "-not=port"),
    ],
)
def test_not_without_a_word_after_it_is_a_usage_error(argv, token):
    with pytest.raises(UsageError) as e:
        grammar.parse(argv.split())
    assert e.value.token == token
    assert str(e.value).startswith(f"'{token}': ")


@pytest.mark.parametrize("argv", ["interfaces -json", "-json interfaces", "-interfaces -json"])
def test_interfaces_takes_json_and_nothing_else(argv):
    req = grammar.parse(argv.split())
    assert (req.command, req.args, req.options.json) == ("interfaces", (), True)
    for wrong, token in (["interfaces", "int"], "'int'"), (["-size", "1024", "interfaces"], "'-size 1024'"):
        with pytest.raises(UsageError) as e:
            grammar.parse(wrong)
        assert e.value.message.startswith(token)


def test_read_writes_pcapng_only_with_an_output():
    assert grammar.parse(["read", "in.cap", "-w", "out", "-pcapng"]).options.pcapng
    with pytest.raises(UsageError) as e:
        grammar.parse(["read", "in.cap", "-pcapng"])
    assert e.value.message == "'-pcapng': read writes pcapng only with -w <out>"


@pytest.mark.parametrize(
    "argv, token",
    [("port read capture.cap", "port"), ("vlan start int", "vlan"), ("-ipdest read f", "-ipdest")],
)
def test_a_filter_word_before_the_command_does_not_take_the_command_as_its_value(argv, token):
    with pytest.raises(UsageError) as e:
        grammar.parse(argv.split())
    assert e.value.token == token and "missing value" in e.value.message


@pytest.mark.parametrize(
    ("argv", "command", "conv", "policy", "args"),
    [
        ("conv", "conv", False, False, ()),
        ("conv int,ext tcp", "conv", False, False, ("int,ext",)),
        ("-conv", "conv", False, False, ()),
        ("-conv=int", "conv", False, False, ("int",)),
        ("policy all -format iptables", "policy", False, False, ("all",)),
        ("read f -conv", "read", True, False, ("f",)),
        ("-conv read f", "read", True, False, ("f",)),
        ("-read=f -policy -format=nft", "read", False, True, ("f",)),
        ("read f policy", "read", False, True, ("f",)),
    ],
)
def test_conv_and_policy_are_commands_and_options_of_read(argv, command, conv, policy, args):
    req = grammar.parse(argv.split())
    assert (req.command, req.options.conv, req.options.policy, req.args) == (command, conv, policy, args)
