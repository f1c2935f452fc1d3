"""Differential test: the packets ``pcapdump.read`` keeps are the packets libpcap keeps for the equivalent
tcpdump expression, over a scapy-built corpus and 240 random filters.

Translation to libpcap, word by word:
  eth/ethsrc/ethdest M      → ether host/src/dst M
  ip/ipsrc/ipdest A[/n]     → ip|ip6 [src|dst] host A, or ip|ip6 [src|dst] net A/n
  port/srcport/destport P   → [src|dst] port P, or [src|dst] portrange P-Q (tcp, udp and sctp, as ours)
  proto N, tcp, udp, …      → (ip proto N or ip6 proto N); arp → arp
  vlan V                    → the 12 bits of the tag at ether[14:2] (or ether[18:2] for the inner tag)
Repeated words are joined with `or`, different words with `and`; `not W v` becomes `not (atom)`, each
excluded word on its own, joined with `and`. 802.1Q: libpcap matches inner headers
only after a `vlan` keyword, and each `vlan` keyword shifts later offsets by 4 (so `vlan 5 or vlan 7`
would mean QinQ there). The whole filter E therefore becomes
  (E0) or (vlan and E1) or (vlan and vlan and E2)
where Ek is E with the vlan word rewritten for k tags (false for k = 0), each branch run on its own
(a `vlan` keyword shifts offsets for the rest of an expression, across `or` too) and kept only for the
frames that carry k tags (for `not vlan 5`, E0 is true of a tagged frame too).

Where libpcap's meaning differs, frames are left out of the comparison, per filter:
  - IPv6 frames with extension headers, for protocol and port words: libpcap does not chase extension
    headers (we do, to the upper-layer header);
  - truncated frames, for filters with alternatives or an excluded IPv6 address (libpcap evaluates
    alternative by alternative and an address first word first, we field by field and an address last
    word first, so a field cut short ends the two at different points), for IPv6 prefixes shorter than /97
    and IPv4 /0 (libpcap loads only the words the prefix covers; we want the whole address present), and
    for frames cut inside the link layer.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import corpus
import pcapdump
import pytest
from conftest import need_tool
from scapy.utils import RawPcapReader  # type: ignore[import-untyped]

FALSE = "(ether[0] & 0 = 1)"


TCP_FLAGS = {"fin": 1, "syn": 2, "rst": 4, "psh": 8, "ack": 16, "urg": 32, "ece": 64, "cwr": 128}
LETTERS = {"F": "fin", "S": "syn", "R": "rst", "P": "psh", ".": "ack", "U": "urg", "E": "ece", "W": "cwr"}
ICMP_V4 = {"echoreply": 0, "unreach": 3, "redirect": 5, "echo": 8, "timxceed": 11, "paramprob": 12}


def draw_filter(
    rng: random.Random, excluding: bool = False, flags_and_types: bool = False
) -> list[tuple[str, str | None]]:
    """A random filter as (word, value) pairs: 1 to 4 different words, some repeated; with `excluding`,
    about one word in three is excluded (`not port 22`, the word spelled "not port"); with
    `flags_and_types`, `tcpflags` and `icmptype` are among the words drawn."""
    pool_of_kinds = ["eth", "ip", "port", "proto", "vlan"] + (
        ["tcpflags", "icmptype"] if flags_and_types else []
    )
    kinds = rng.sample(pool_of_kinds, rng.randint(1, 4))
    words: list[tuple[str, str | None]] = []
    for kind in kinds:
        repeat = rng.choices([1, 2, 3], weights=[6, 3, 1])[0]
        if kind == "eth":
            word = rng.choice(["eth", "ethsrc", "ethdest"])
            words += [(word, m) for m in rng.sample(corpus.MACS, repeat)]
        elif kind == "ip":
            word = rng.choice(["ip", "ipsrc", "ipdest"])
            pool = [
                *corpus.V4,
                *corpus.V6,
                "198.18.0.0/15",
                "10.0.0.0/8",
                "192.168.0.0/16",
                "0.0.0.0/0",
                "2001:db8::/32",
                "2001:db8:1::/48",
                "2001:db8::/120",
                "fe80::/10",
                "::/0",
            ]
            words += [(word, a) for a in rng.sample(pool, repeat)]
        elif kind == "port":
            word = rng.choice(["port", "srcport", "destport"])
            pool = [str(p) for p in corpus.PORTS] + ["8000-8100", "0-1023", "443-443", "40000-65535"]
            words += [(word, p) for p in rng.sample(pool, repeat)]
        elif kind == "proto":
            pool: list[tuple[str, str | None]] = [
                ("tcp", None),
                ("udp", None),
                ("icmp", None),
                ("icmp6", None),
                ("arp", None),
                ("sctp", None),
                ("proto", "47"),
                ("proto", "103"),
                ("proto", "tcp"),
                ("proto", "0"),
                ("proto", "17"),
            ]
            words += rng.sample(pool, repeat)
        elif kind == "tcpflags":
            words += [("tcpflags", f) for f in rng.sample([*TCP_FLAGS, *LETTERS], repeat)]
        elif kind == "icmptype":
            words += [("icmptype", t) for t in rng.sample([*ICMP_V4, "0", "3", "8", "30"], repeat)]
        else:
            words += [("vlan", str(v)) for v in rng.sample(corpus.VLANS, repeat)]
    if excluding:
        words = [(f"not {w}" if rng.random() < 0.35 else w, v) for w, v in words]
    rng.shuffle(words)
    return words


PROTO_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1, "icmp6": 58, "sctp": 132}


def libpcap_atom(word: str, value: str | None, tags: int) -> str:
    side = {"src": "src ", "dest": "dst "}
    for suffix, q in side.items():
        if word.endswith(suffix) and word != "dest":
            base, qual = word[: -len(suffix)], q
            break
    else:
        base, qual = word, ""
    if base == "eth":
        return f"ether {qual or 'host '}{value}".replace("src ", "src ").replace("dst ", "dst ")
    if base == "ip":
        assert value is not None
        family = "ip6" if ":" in value else "ip"
        kind = "net" if "/" in value else "host"
        return f"({family} {qual}{kind} {value})"
    if base in ("port", "srcport", "destport") or word in ("srcport", "destport"):
        qual = {"port": "", "srcport": "src ", "destport": "dst "}[word]
        assert value is not None
        kind = "portrange" if "-" in value else "port"
        return f"({qual}{kind} {value})"
    if word == "arp":
        return "arp"
    if word == "tcpflags":
        assert value is not None
        return f"(tcp[13] & {TCP_FLAGS[LETTERS.get(value, value)]} != 0)"
    if word == "icmptype":
        assert value is not None
        return f"(icmp[0] = {ICMP_V4.get(value, value)})"
    if word == "vlan":
        offsets = [14, 18][:tags]
        if not offsets:
            return FALSE
        return "(" + " or ".join(f"ether[{o}:2] & 0x0fff = {value}" for o in offsets) + ")"
    number = PROTO_NUMBERS.get(word) or PROTO_NUMBERS.get(str(value)) or int(str(value))
    return f"(ip proto {number} or ip6 proto {number})"


def word_group(word: str) -> str:
    """The group a word's values are alternatives in; excluded words ("not port") keep their own."""
    negation, base = ("not ", word[4:]) if word.startswith("not ") else ("", word)
    return negation + ("proto" if base in ("tcp", "udp", "icmp", "icmp6", "arp", "sctp", "proto") else base)


def to_libpcap(words: list[tuple[str, str | None]], tags: int) -> str:
    groups: dict[str, list[str]] = {}
    excluded: list[str] = []
    for word, value in words:
        if word.startswith("not "):
            excluded.append(f"not {libpcap_atom(word[4:], value, tags)}")
        else:
            groups.setdefault(word_group(word), []).append(libpcap_atom(word, value, tags))
    return " and ".join(["(" + " or ".join(atoms) + ")" for atoms in groups.values()] + excluded)


def comparable(frame: corpus.Frame, words: list[tuple[str, str | None]]) -> bool:
    kinds = {word_group(w) for w, _ in words}
    bases = {k.removeprefix("not ") for k in kinds}
    if frame.ipv6_ext and bases & {"proto", "port", "srcport", "destport"}:
        return False
    # libpcap's tcp[] and icmp[] read IPv4 only; over IPv6 our words are held to the kernel program by the
    # engine's own property tests.
    if bases & {"tcpflags", "icmptype"} and frame.is_ipv6:
        return False
    if frame.truncated:
        assert frame.truncated_at is not None
        has_alternatives = len(kinds) != len(words)
        short_prefix = any(
            v and "/" in v and int(v.split("/")[1]) < (97 if ":" in v else 1) for _, v in words
        )
        # We read an IPv6 address's last word first (the field is whole or the packet does not match);
        # libpcap reads the first first, and may see a mismatch before the cut: under `not`, it keeps.
        excluded_v6 = any(w.startswith("not ") and v and ":" in v for w, v in words)
        if has_alternatives or short_prefix or excluded_v6 or frame.truncated_at < frame.l3:
            return False
    return True


def kept_by_tcpdump(tcpdump: str, src: Path, expr: str, out: Path) -> set[int]:
    done = subprocess.run([tcpdump, "-r", str(src), "-w", str(out), expr], capture_output=True, text=True)
    if done.returncode != 0 and "expression rejects all packets" in done.stderr:
        return set()
    assert done.returncode == 0, f"tcpdump refused {expr!r}: {done.stderr}"
    with RawPcapReader(str(out)) as reader:
        return {corpus.index_of(meta.sec) for _, meta in reader}


def kept_by_pcapdump(src: Path, text: str) -> set[int]:
    return {corpus.index_of(p.ts_ns / 1e9) for p in pcapdump.read(src, filter=text)}


def compare_with_libpcap(words, corpus_file, corpus_frames, tmp_path) -> None:
    tcpdump = need_tool("tcpdump")
    text = " ".join(w if v is None else f"{w} {v}" for w, v in words)
    # One tcpdump run per tag depth: a `vlan` keyword shifts offsets for the rest of the whole expression,
    # even across `or`, so the three branches cannot share one expression.
    exprs = [
        f"{prefix}({to_libpcap(words, tags)})"
        for tags, prefix in [(0, ""), (1, "vlan and "), (2, "vlan and vlan and ")]
    ]
    ours = kept_by_pcapdump(corpus_file, text)
    theirs: set[int] = set()
    for tags, e in enumerate(exprs):
        kept = kept_by_tcpdump(tcpdump, corpus_file, e, tmp_path / "out.pcap")
        theirs |= {i for i in kept if corpus_frames[i].tags == tags}
    expr = " | ".join(exprs)
    compared = {i for i, f in enumerate(corpus_frames) if comparable(f, words)}
    assert ours & compared == theirs & compared, (
        f"filter {text!r} / tcpdump {expr!r}: only ours {sorted((ours - theirs) & compared)}, "
        f"only libpcap {sorted((theirs - ours) & compared)}"
    )


@pytest.mark.parametrize("seed", range(240))
def test_filter_keeps_what_libpcap_keeps(seed, corpus_file, corpus_frames, tmp_path):
    compare_with_libpcap(draw_filter(random.Random(seed)), corpus_file, corpus_frames, tmp_path)


@pytest.mark.parametrize("seed", range(120))
def test_excluded_words_drop_what_libpcap_drops(seed, corpus_file, corpus_frames, tmp_path):
    words = draw_filter(random.Random(1000 + seed), excluding=True)
    compare_with_libpcap(words, corpus_file, corpus_frames, tmp_path)


@pytest.mark.parametrize("seed", range(120))
def test_tcp_flags_and_icmp_types_keep_what_libpcap_keeps(seed, corpus_file, corpus_frames, tmp_path):
    words = draw_filter(random.Random(5000 + seed), excluding=seed % 3 == 0, flags_and_types=True)
    compare_with_libpcap(words, corpus_file, corpus_frames, tmp_path)


def test_every_tcp_flag_and_named_icmp_type_selects_what_libpcap_selects(
    corpus_file, corpus_frames, tmp_path
):
    words = [[("tcpflags", f)] for f in [*TCP_FLAGS, *LETTERS]] + [[("icmptype", t)] for t in ICMP_V4]
    kept_any = 0
    for w in words:
        compare_with_libpcap(w, corpus_file, corpus_frames, tmp_path)
        kept_any += bool(kept_by_pcapdump(corpus_file, f"{w[0][0]} {w[0][1]}"))
    assert kept_any >= 5  # SYN, PSH, ACK, echo, echo reply at least


@pytest.mark.parametrize(
    "text, expr",
    [
        ("not port 22", "not port 22"),
        ("tcp not port 22 not port 80", "tcp and not port 22 and not port 80"),
        ("not arp not icmp6", "not arp and not icmp6"),
        ("not ipsrc 198.18.0.0/15", "not (ip src net 198.18.0.0/15)"),
    ],
)
def test_the_documented_exclusions_keep_what_libpcap_keeps(text, expr, corpus_file, corpus_frames, tmp_path):
    """Whole frames only (a truncated one ends each filter at a different field)."""
    kept = kept_by_tcpdump(need_tool("tcpdump"), corpus_file, expr, tmp_path / "out.pcap")
    whole = {i for i, f in enumerate(corpus_frames) if not f.truncated and not f.tags and not f.ipv6_ext}
    assert kept_by_pcapdump(corpus_file, text) & whole == kept & whole != set()


def test_the_random_filters_select_something(corpus_file):
    """Guards the comparison against filters that never match anything."""
    sizes = [
        len(
            kept_by_pcapdump(
                corpus_file,
                " ".join(w if v is None else f"{w} {v}" for w, v in draw_filter(random.Random(s))),
            )
        )
        for s in range(240)
    ]
    assert sum(1 for n in sizes if n > 0) > 120
    assert sum(1 for n in sizes if 0 < n < 100) > 60


# BSD loopback (macOS `tcpdump -i lo0`, OpenBSD): a 4-byte address family instead of an Ethernet header.
# NULL keeps the capturing host's byte order (little-endian here, with macOS's AF_INET6 = 30); LOOP is
# big-endian (with OpenBSD's 24).
LOOPBACK = {"null": (0, "<", 30), "loop": (108, ">", 24)}


@pytest.mark.parametrize("kind", sorted(LOOPBACK))
def test_bsd_loopback_filters_keep_what_libpcap_keeps(kind, corpus_frames, tmp_path):
    import struct

    tcpdump = need_tool("tcpdump")
    linktype, order, af_inet6 = LOOPBACK[kind]
    families = {b"\x08\x00": 2, b"\x86\xdd": af_inet6}
    src = tmp_path / f"{kind}.pcap"
    reframed = {}
    with src.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
        for i, f in enumerate(corpus_frames):
            if f.tags or len(f.data) < 14 or f.data[12:14] not in families:
                continue
            data = struct.pack(order + "I", families[f.data[12:14]]) + f.data[14:]
            out.write(struct.pack("<IIII", corpus.BASE + i, 0, len(data), f.wirelen - 10) + data)
            reframed[i] = f
    assert len(reframed) > 50
    draws = [draw_filter(random.Random(seed)) for seed in range(80)]
    # Words that need an Ethernet header (addresses, tags, ARP) have no meaning here.
    filters = [[(w, v) for w, v in words if not w.startswith(("eth", "vlan", "arp"))] for words in draws]
    filters = [f for f in filters if f] + [[("tcp", None)], [("udp", None)], [("icmp6", None)]]
    for words in filters:
        text = " ".join(w if v is None else f"{w} {v}" for w, v in words)
        expr = to_libpcap(words, 0)
        ours = kept_by_pcapdump(src, text)
        theirs = kept_by_tcpdump(tcpdump, src, expr, tmp_path / "out.pcap")
        compared = {i for i, f in reframed.items() if comparable(f, words)}
        assert ours & compared == theirs & compared, (
            f"{kind}: filter {text!r} / tcpdump {expr!r}: only ours {sorted((ours - theirs) & compared)}, "
            f"only libpcap {sorted((theirs - ours) & compared)}"
        )
    assert kept_by_pcapdump(src, "udp"), "the comparison must see packets"
