"""BEP 14 LSD: the BT-SEARCH codec, and two LocalDiscovery drivers finding each other over loopback multicast.

Multicast on this host: sending with ``IP_MULTICAST_IF=127.0.0.1`` and joining the group on
127.0.0.1 delivers over ``lo`` without any route change (checked when the suite was written), so the
driver tests use a private group in 239.255.0.0/16 and a free port, joined on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import errno
import json
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitswarm.errors import RemoteProtocolError
from bitswarm.session.lsd import (
    LSD_GROUP_V6,
    MAX_LSD_PACKET,
    LocalDiscovery,
    LsdAnnounce,
    LsdProtocolError,
    decode_lsd_announce,
    encode_lsd_announce,
    encode_lsd_announces,
    format_lsd_host,
)
from testtools import require_tool

H1, H2, H3 = bytes(range(20)), b"\xaa" * 20, b"\x01" * 20
PRINTABLE = st.characters(min_codepoint=0x21, max_codepoint=0x7E)

# --- codec ----------------------------------------------------------------------------------------


def test_bep14_layout() -> None:
    a = LsdAnnounce(6881, (H1,), cookie="c00k1e")
    assert encode_lsd_announce(a) == (
        b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\n"
        b"Infohash: 000102030405060708090a0b0c0d0e0f10111213\r\ncookie: c00k1e\r\n\r\n\r\n"
    )
    assert decode_lsd_announce(encode_lsd_announce(a)) == a
    assert format_lsd_host(LSD_GROUP_V6) == "[ff15::efc0:988f]:6771"


def test_decode_tolerates_case_lf_and_unknown_headers() -> None:
    data = (
        b"BT-SEARCH * HTTP/1.1\nHOST: [ff15::efc0:988f]:6771\nport:  51413\nX-Other: whatever you like\n"
        b"INFOHASH: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\ninfohash: " + H1.hex().encode() + b"\n"
        b"Infohash: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n\n"
    )
    assert decode_lsd_announce(data) == LsdAnnounce(51413, (H2, H1), None, "[ff15::efc0:988f]:6771")


@given(
    port=st.integers(1, 65535),
    hashes=st.lists(st.binary(min_size=20, max_size=20), min_size=1, max_size=20, unique=True),
    cookie=st.none()
    | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=128),
    host=st.none() | st.sampled_from(["239.192.152.143:6771", "[ff15::efc0:988f]:6771"]),
)
def test_round_trip(port: int, hashes: list[bytes], cookie: str | None, host: str | None) -> None:
    a = LsdAnnounce(port, tuple(hashes), cookie, host)
    assert decode_lsd_announce(encode_lsd_announce(a)) == a


def test_split_under_1400_bytes() -> None:
    hashes = [bytes([i]) * 20 for i in range(100)]
    datagrams = encode_lsd_announces(6881, hashes + hashes[:5], cookie="x" * 16)
    assert len(datagrams) > 1
    assert all(len(d) <= MAX_LSD_PACKET for d in datagrams)
    got = [h for d in datagrams for h in decode_lsd_announce(d).info_hashes]
    assert got == hashes


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"M-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: " + b"a" * 40 + b"\r\n\r\n",
        b"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: " + b"a" * 40 + b"\r\n",  # no empty line
        b"BT-SEARCH * HTTP/1.1\r\nInfohash: " + b"a" * 40 + b"\r\n\r\n",  # no port
        b"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\n\r\n",  # no infohash
        b"BT-SEARCH * HTTP/1.1\r\nPort: 0\r\nInfohash: " + b"a" * 40 + b"\r\n\r\n",
        b"BT-SEARCH * HTTP/1.1\r\nPort: 65536\r\nInfohash: " + b"a" * 40 + b"\r\n\r\n",
        b"BT-SEARCH * HTTP/1.1\r\nPort: -1\r\nInfohash: " + b"a" * 40 + b"\r\n\r\n",
        b"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nPort: 2\r\nInfohash: " + b"a" * 40 + b"\r\n\r\n",
        b"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: " + b"a" * 39 + b"\r\n\r\n",
        b"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: " + b"g" * 40 + b"\r\n\r\n",
        b"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash " + b"a" * 40 + b"\r\n\r\n",  # no colon
        b"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: " + b"a" * 40 + b"\r\ncookie: a b\r\n\r\n",
        b"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: " + b"a" * 40 + b"\r\n\r\nbody",
        b"BT-SEARCH * HTTP/1.1\r\nPort: \xff\r\nInfohash: " + b"a" * 40 + b"\r\n\r\n",  # not ASCII
        b"BT-SEARCH * HTTP/1.1\r\n" + b"X: y\r\n" * 65 + b"Port: 1\r\nInfohash: " + b"a" * 40 + b"\r\n\r\n",
        b"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: " + b"a" * 40 + b"\r\nX: " + b"y" * 5000 + b"\r\n\r\n",
    ],
)
def test_garbage_raises_typed_error(data: bytes) -> None:
    with pytest.raises(LsdProtocolError):
        decode_lsd_announce(data)
    assert issubclass(LsdProtocolError, RemoteProtocolError)


@given(st.binary(max_size=300))
def test_fuzz_only_typed_error(data: bytes) -> None:
    try:
        a = decode_lsd_announce(data)
    except LsdProtocolError:
        return
    assert decode_lsd_announce(encode_lsd_announce(a)) == a


@given(st.text(st.sampled_from("BT-SEARCH *HTP/1.\r\nPortInfohash:0123456789abcdef cookie"), max_size=200))
def test_fuzz_near_valid(text: str) -> None:
    data = ("BT-SEARCH * HTTP/1.1\r\n" + text).encode()
    try:
        a = decode_lsd_announce(data)
    except LsdProtocolError:
        return
    assert decode_lsd_announce(encode_lsd_announce(a)) == a


def test_encode_refuses_bad_input() -> None:
    for bad in (
        LsdAnnounce(0, (H1,)),
        LsdAnnounce(1, ()),
        LsdAnnounce(1, (b"short",)),
        LsdAnnounce(1, (H1,), cookie="has space"),
    ):
        with pytest.raises(ValueError):
            encode_lsd_announce(bad)


# --- driver over loopback multicast ------------------------------------------------------------------


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def private_group() -> tuple[str, int]:
    """A group in 239.255/16 (administratively scoped) and a free port, unique to this test."""
    return f"239.255.{random.randrange(1, 255)}.{random.randrange(1, 255)}", free_udp_port()


class Heard:
    """Collects on_peer calls and wakes a waiter when a wanted one arrives."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, tuple[str, int]]] = []
        self.changed = asyncio.Event()

    def __call__(self, info_hash: bytes, peer: tuple[str, int]) -> None:
        self.calls.append((info_hash, peer))
        self.changed.set()

    async def wait_for(self, item: tuple[bytes, tuple[str, int]], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while item not in self.calls:
                self.changed.clear()
                await self.changed.wait()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.timeout(20)
async def test_two_drivers_find_each_other() -> None:
    group = private_group()
    heard_a, heard_b = Heard(), Heard()
    kw = {"interface": "127.0.0.1", "group": group}
    async with LocalDiscovery(6001, heard_a, **kw) as a, LocalDiscovery(6002, heard_b, **kw) as b:  # type: ignore[arg-type]
        assert a.announce([H1]) == [H1]
        await heard_b.wait_for((H1, ("127.0.0.1", 6001)))
        assert b.announce([H2, H3]) == [H2, H3]
        await heard_a.wait_for((H3, ("127.0.0.1", 6002)))
        assert (H2, ("127.0.0.1", 6002)) in heard_a.calls
        # each hears its own announce back (multicast loop) and drops it by cookie
        async with asyncio.timeout(5):
            while a.own < 1 or b.own < 1:
                await asyncio.sleep(0.01)
        assert all(peer == ("127.0.0.1", 6002) for _, peer in heard_a.calls)
        assert all(peer == ("127.0.0.1", 6001) for _, peer in heard_b.calls)
    assert not a.running and not b.running


@pytest.mark.timeout(20)
async def test_rate_limit_per_torrent() -> None:
    group = private_group()
    clock = FakeClock()
    heard = Heard()
    kw = {"interface": "127.0.0.1", "group": group}
    async with (
        LocalDiscovery(7001, lambda h, p: None, clock=clock, min_interval=300.0, **kw) as a,  # type: ignore[arg-type]
        LocalDiscovery(7002, heard, **kw),  # type: ignore[arg-type]
    ):
        assert a.announce([H1]) == [H1]
        clock.now += 299.0
        assert a.announce([H1, H2]) == [H2]  # H1 was announced 299 s ago
        clock.now += 1.0
        assert a.announce([H1, H2]) == [H1]  # 300 s since H1; H2 only 1 s
        await heard.wait_for((H1, ("127.0.0.1", 7001)))
        await heard.wait_for((H2, ("127.0.0.1", 7001)))
        async with asyncio.timeout(5):  # datagrams from one socket over lo arrive in order
            while [h for h, _ in heard.calls] != [H1, H2, H1]:
                await asyncio.sleep(0.01)


@pytest.mark.timeout(20)
async def test_garbage_datagrams_ignored() -> None:
    group = private_group()
    heard = Heard()
    async with LocalDiscovery(8002, heard, interface="127.0.0.1", group=group) as b:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
            raw.sendto(b"\x00garbage", group)
            raw.sendto(b"BT-SEARCH * HTTP/1.1\r\nPort: 0\r\n\r\n", group)
            raw.sendto(encode_lsd_announce(LsdAnnounce(8001, (H3,), cookie="other")), group)
        await heard.wait_for((H3, ("127.0.0.1", 8001)))
        assert b.invalid == 2 and b.received == 1


async def test_announce_before_start_sends_nothing() -> None:
    d = LocalDiscovery(1, lambda h, p: None, interface="127.0.0.1", group=private_group())
    assert d.announce([H1]) == []
    await d.stop()  # idempotent when never started


@pytest.mark.timeout(20)
async def test_ipv6_loopback_multicast() -> None:
    heard = Heard()
    group = ("ff15::efc0:988f", free_udp_port())
    try:
        async with (
            LocalDiscovery(9001, lambda h, p: None, interface="lo", group=group) as a,
            LocalDiscovery(9002, heard, interface="lo", group=group),
        ):
            a.announce([H1])
            await asyncio.sleep(0)
            if isinstance(a.last_error, OSError):
                raise a.last_error
            await heard.wait_for((H1, ("::1", 9001)), timeout=3)
    except OSError as exc:
        if exc.errno in (errno.ENETUNREACH, errno.ENODEV, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
            pytest.skip(f"IPv6 multicast on lo is not available here: {exc} (lo has no MULTICAST flag)")
        raise
    except TimeoutError:
        pytest.skip("IPv6 multicast datagram sent on lo but never looped back on this host")


# --- interop: libtorrent's LSD, inside a private network namespace ---------------------------------

_LT_SCRIPT = r"""
import asyncio, json, sys, time
import libtorrent as lt
from bitswarm.session.lsd import LocalDiscovery

LT_HASH, OUR_HASH = bytes(range(20)), b"\x42" * 20

async def main() -> None:
    heard = []
    ses = lt.session({"listen_interfaces": "127.0.0.1:45111", "enable_lsd": True, "enable_dht": False,
                      "enable_upnp": False, "enable_natpmp": False,
                      "alert_mask": lt.alert_category.peer | lt.alert_category.error})
    for h in (LT_HASH, OUR_HASH):
        p = lt.parse_magnet_uri("magnet:?xt=urn:btih:" + h.hex())
        p.save_path = sys.argv[1]
        ses.add_torrent(p)
    lt_saw_us = False
    async with LocalDiscovery(45222, lambda h, a: heard.append((h.hex(), a)), interface="127.0.0.1",
                              min_interval=1.0) as d:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (lt_saw_us and any(h == LT_HASH.hex() for h, _ in heard)):
            d.announce([OUR_HASH])
            for a in ses.pop_alerts():
                if a.what() == "lsd_peer" and "127.0.0.1:45222" in a.message():
                    lt_saw_us = True
            await asyncio.sleep(0.2)
        print(json.dumps({"lt_saw_us": lt_saw_us, "heard": heard, "invalid": d.invalid}))

asyncio.run(main())
"""


@pytest.mark.interop
@pytest.mark.slow
@pytest.mark.timeout(60)
def test_libtorrent_lsd_both_ways(tmp_path: Path) -> None:
    """libtorrent 2.x hears our announce (lsd_peer alert) and we hear its announce, over lo multicast.

    Runs in a fresh network namespace (``unshare -n``) whose ``lo`` gets the MULTICAST flag, so
    libtorrent (which only uses multicast-capable interfaces) announces on 127.0.0.1; the host's own
    interfaces and routes are not touched.
    """
    pytest.importorskip("libtorrent")
    unshare = require_tool("unshare")
    script = tmp_path / "lt_lsd.py"
    script.write_text(_LT_SCRIPT)
    shell = f"ip link set lo up && ip link set lo multicast on && exec {sys.executable} {script} {tmp_path}"
    try:
        out = subprocess.run(
            [unshare, "-n", "sh", "-c", shell], capture_output=True, timeout=50, check=False, text=True
        )
    except subprocess.TimeoutExpired:
        pytest.fail("libtorrent LSD interop script did not finish in 50 s")
    if out.returncode != 0 and "unshare" in out.stderr and "Operation not permitted" in out.stderr:
        pytest.skip(f"cannot create a network namespace here: {out.stderr.strip()}")
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["lt_saw_us"], result
    assert [bytes(range(20)).hex(), ["127.0.0.1", 45111]] in result["heard"], result
    assert result["invalid"] == 0
