"""IP blocklists (session/blocklist.py): the P2P, DAT and CIDR formats, gzip, the merged-range lookup
against a naive reference (Hypothesis), and loading from a file and a loopback HTTP URL."""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitswarm.session.blocklist import Blocklist, BlocklistError, decompress, parse_line
from bitswarm.session.blocklist_source import load_blocklist
from testtools import http_files

V4 = 4


def ip4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


# -- formats -----------------------------------------------------------------------------------


def test_p2p_lines() -> None:
    assert parse_line("Bad Org:1.2.3.0-1.2.3.255") == (V4, ip4("1.2.3.0"), ip4("1.2.3.255"))
    # the name may hold colons, dashes and commas: the range follows the last colon
    assert parse_line("a:b-c, Inc.:10.0.0.1-10.0.0.9") == (V4, ip4("10.0.0.1"), ip4("10.0.0.9"))
    assert parse_line("x:5.5.5.5-5.5.5.5") == (V4, ip4("5.5.5.5"), ip4("5.5.5.5"))


def test_dat_lines_and_access_level() -> None:
    line = "001.002.003.000 - 001.002.003.255 , 000 , Some org"
    assert parse_line(line) == (V4, ip4("1.2.3.0"), ip4("1.2.3.255"))  # leading zeros
    assert parse_line("1.2.3.0 - 1.2.3.255 , 127 , x") == (V4, ip4("1.2.3.0"), ip4("1.2.3.255"))
    # qBittorrent: a level above 127 allows the range (the rule is skipped, not an error)
    assert parse_line("1.2.3.0 - 1.2.3.255 , 128 , allowed") is None
    assert parse_line("1.2.3.0 - 1.2.3.255 , 255 , allowed") is None
    assert parse_line("1.2.3.0 - 1.2.3.255") == (V4, ip4("1.2.3.0"), ip4("1.2.3.255"))
    six = parse_line("2001:db8:: - 2001:db8::ffff , 0 , v6 range")
    assert six == (6, int(ipaddress.IPv6Address("2001:db8::")), int(ipaddress.IPv6Address("2001:db8::ffff")))


def test_cidr_comments_and_garbage() -> None:
    assert parse_line("10.0.0.0/8") == (V4, ip4("10.0.0.0"), ip4("10.255.255.255"))
    assert parse_line("10.1.2.3/8") == (V4, ip4("10.0.0.0"), ip4("10.255.255.255"))
    assert parse_line("2001:db8::/32")[1:] == (  # type: ignore[index]
        int(ipaddress.IPv6Address("2001:db8::")),
        int(ipaddress.IPv6Address("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")),
    )
    assert parse_line("192.0.2.7") == (V4, ip4("192.0.2.7"), ip4("192.0.2.7"))
    for comment in ("", "   ", "# a comment", "// another"):
        assert parse_line(comment) is None
    for junk in ("hello", "1.2.3-1.2.4", "x:1.2.3.4-", "256.1.1.1 - 257.1.1.1 , 0 , x", "1.2.3.0/33",
                 "1.2.3.4 - 2001:db8:: , 0 , mixed families", "1.2.3.4 - 1.2.3.5 , abc , x"):  # fmt: skip
        assert parse_line(junk) is False, junk


def test_parse_merges_counts_and_looks_up() -> None:
    text = "\n".join([
        "# level1-like list",
        "A:1.2.3.0-1.2.3.255",
        "001.002.004.000 - 001.002.004.010 , 000 , adjacent to A",
        "9.9.9.0 - 9.9.9.255 , 200 , allowed",
        "2001:db8:: - 2001:db8::ff , 0 , v6",
        "10.0.0.0/8",
        "10.5.0.0/16",
        "this line is junk",
    ])  # fmt: skip
    bl = Blocklist.parse(text.encode())
    assert (bl.rules, bl.skipped, bl.ranges) == (5, 1, 3)  # A+adjacent merged, 10/16 inside 10/8
    assert bl.blocks("1.2.3.0") and bl.blocks("1.2.3.255") and bl.blocks("1.2.4.10")
    assert not bl.blocks("1.2.4.11") and not bl.blocks("1.2.2.255")
    assert not bl.blocks("9.9.9.9")  # the allowed DAT rule
    assert bl.blocks("2001:db8::5") and not bl.blocks("2001:db8::100")
    assert bl.blocks("::ffff:10.1.1.1")  # IPv4-mapped IPv6 is looked up as IPv4
    assert not bl.blocks("example.org") and not bl.blocks("fe80::1%eth0")
    assert bl.blocked == 0
    assert bl.check("10.0.0.1") and not bl.check("11.0.0.1")
    assert bl.blocked == 1


def test_gzip_and_bad_data() -> None:
    text = b"A:1.2.3.0-1.2.3.255\n"
    bl = Blocklist.parse(gzip.compress(text))
    assert bl.rules == 1 and bl.blocks("1.2.3.4")
    with pytest.raises(BlocklistError, match="corrupt gzip"):
        Blocklist.parse(gzip.compress(text)[:12] + b"\xff" * 20)
    with pytest.raises(BlocklistError, match="larger than"):
        decompress(gzip.compress(b"#" * 10_000), max_size=1000)  # a gzip bomb is cut off
    with pytest.raises(BlocklistError, match="binary"):
        Blocklist.parse(b"\x00\x01\x02PK garbage")
    with pytest.raises(BlocklistError, match="no blocklist rule"):
        Blocklist.parse(b"<html>not a list</html>\n")
    assert Blocklist.parse(b"# only comments\n\n").rules == 0  # an empty list is a list


# -- the lookup against a naive reference --------------------------------------------------------

v4 = st.integers(0, 2**32 - 1)
v6 = st.integers(0, 2**128 - 1)


@st.composite
def ranges(draw: st.DrawFn, bits: int) -> tuple[int, int]:
    top = 2**bits - 1
    lo = draw(st.integers(0, top))
    span = draw(st.one_of(st.integers(0, 16), st.integers(0, 2**20), st.integers(0, top)))
    return lo, min(top, lo + span)


@given(
    st.lists(ranges(32), max_size=40),
    st.lists(ranges(128), max_size=10),
    st.lists(v4, max_size=40),
    st.lists(v6, max_size=10),
)
def test_lookup_matches_naive_reference(
    r4: list[tuple[int, int]], r6: list[tuple[int, int]], probes4: list[int], probes6: list[int]
) -> None:
    bl = Blocklist([(4, a, b) for a, b in r4] + [(6, a, b) for a, b in r6])
    assert bl.rules == len(r4) + len(r6)
    # probe the edges of every range too: off-by-one errors live there
    edges4 = [x for a, b in r4 for x in (a - 1, a, b, b + 1) if 0 <= x < 2**32]
    edges6 = [x for a, b in r6 for x in (a - 1, a, b, b + 1) if 0 <= x < 2**128]
    for x in probes4 + edges4:
        want = any(a <= x <= b for a, b in r4)
        assert bl.blocks(str(ipaddress.IPv4Address(x))) is want
    for x in probes6 + edges6:
        addr = ipaddress.IPv6Address(x)
        if addr.ipv4_mapped is not None:
            continue  # looked up as IPv4
        assert bl.blocks(str(addr)) is (any(a <= x <= b for a, b in r6))
    assert bl.ranges <= len(r4) + len(r6)


@given(st.lists(ranges(32), min_size=1, max_size=30), st.sampled_from(["p2p", "dat", "mixed"]))
def test_text_round_trip(r4: list[tuple[int, int]], form: str) -> None:
    """Ranges written in either format parse back to the same blocked set."""
    lines = []
    for n, (a, b) in enumerate(r4):
        lo, hi = ipaddress.IPv4Address(a), ipaddress.IPv4Address(b)
        if form == "p2p" or (form == "mixed" and n % 2):
            lines.append(f"range {n}: a:b:{lo}-{hi}")
        else:
            lo_z = ".".join(f"{int(o):03d}" for o in str(lo).split("."))
            lines.append(f"{lo_z} - {hi} , {n % 128:03d} , range {n}")
    bl = Blocklist.parse("\n".join(lines).encode())
    assert bl.rules == len(r4) and bl.skipped == 0
    for a, b in r4:
        for x in (a, b, (a + b) // 2):
            assert bl.blocks(str(ipaddress.IPv4Address(x)))


# -- loading (a file, gzip'd; a URL on loopback) ------------------------------------------------


@pytest.fixture
def http_server() -> Iterator[tuple[str, dict[str, bytes]]]:
    files: dict[str, bytes] = {}
    with http_files(files) as base:
        yield base, files


async def test_load_from_file_and_url(tmp_path: Path, http_server: tuple[str, dict[str, bytes]]) -> None:
    base, files = http_server
    dat = b"1.2.3.0 - 1.2.3.255 , 0 , x\n5.6.7.8 - 5.6.7.8 , 0 , y\n"
    path = tmp_path / "ipfilter.dat.gz"
    path.write_bytes(gzip.compress(dat))
    bl = await load_blocklist(path)
    assert bl.rules == 2 and bl.blocks("5.6.7.8")
    files["/level1.gz"] = gzip.compress(b"org:8.8.8.0-8.8.8.255\n")
    bl = await asyncio.wait_for(load_blocklist(f"{base}/level1.gz"), 10)
    assert bl.rules == 1 and bl.blocks("8.8.8.8") and not bl.blocks("8.8.9.0")
    with pytest.raises(BlocklistError, match="HTTP 404"):
        await load_blocklist(f"{base}/missing")
    with pytest.raises(BlocklistError, match="No such file"):
        await load_blocklist(tmp_path / "nope.p2p")
    files["/junk"] = b"<html>\n"
    with pytest.raises(BlocklistError, match="no blocklist rule"):
        await load_blocklist(f"{base}/junk")
