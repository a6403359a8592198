"""The session's port mapping and external address (bitswarm.session.reachability) over fake gateways:
the mapper starts after the sockets are bound and never holds start, maps the TCP and the UDP port,
the mapped port is what torrents announce, the mapping is removed first on close, and reports from the
mapping, trackers (BEP 24), peers (BEP 10 ``yourip``) and the DHT (BEP 42) decide the external
address. Sessions listen on 0.0.0.0 with port 0; nothing leaves the host (the gateways are fakes)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

import bitswarm.portmap.mapper as mapper_module
from bitswarm.dht.bep42 import is_valid_node_id
from bitswarm.portmap import NoMappingService, PortMapConfig
from bitswarm.portmap.mapper import BackendFactory, MappingBackend
from bitswarm.portmap.natpmp import Protocol
from bitswarm.portmap.natpmp_client import Granted
from bitswarm.session import Session, SessionConfig
from bitswarm.session.reachability import Reachability
from bitswarm.tracker.http_codec import decode_announce_response
from testtools import eventually

EXT = "198.51.100.7"


class Gateway:
    """A fake IGD: grants ``external_port`` (or the asked one), records unmaps."""

    method = "upnp"

    def __init__(self, external_port: int | None = None, *, slow: float = 0.0) -> None:
        self.external_port = external_port
        self.slow = slow
        self.maps: list[tuple[str, int]] = []
        self.unmaps: list[tuple[str, int, int]] = []

    async def map(self, protocol: Protocol, internal_port: int, external_port: int, lifetime: int) -> Granted:
        await asyncio.sleep(self.slow)
        self.maps.append((protocol, internal_port))
        return Granted(EXT, self.external_port or external_port, lifetime)

    async def unmap(self, protocol: Protocol, internal_port: int, external_port: int) -> None:
        self.unmaps.append((protocol, internal_port, external_port))

    def close(self) -> None:
        pass


@pytest.fixture
def gateways(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Replace the real gateways (SSDP, the default route's NAT-PMP) with what the test puts here."""
    monkeypatch.delenv("BITSWARM_NO_PORT_MAPPING", raising=False)
    found: dict[str, Any] = {}

    def fake(config: PortMapConfig) -> dict[str, BackendFactory]:
        def factory(name: str) -> BackendFactory:
            async def make() -> MappingBackend:
                gw = found.get(name)
                if gw is None:
                    raise NoMappingService(f"no {name} here")
                return gw  # type: ignore[no-any-return]

            return make

        return {name: factory(name) for name in config.methods}

    monkeypatch.setattr(mapper_module, "default_backends", fake)
    yield found


def when(pred: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    """An async check for :func:`eventually` (a plain function would be polled with time.sleep)."""

    async def check() -> bool:
        return pred()

    return check


def config(**kw: Any) -> SessionConfig:
    return SessionConfig(listen_host="0.0.0.0", listen_port=0, enable_dht=False, port_mapping=True, **kw)


async def test_maps_tcp_and_udp_advertises_the_external_port_and_unmaps_first_on_close(
    gateways: dict[str, Any],
) -> None:
    gw = gateways["upnp"] = Gateway(external_port=40001, slow=0.3)
    session = Session(config())
    events: list[Any] = []

    async def collect() -> None:
        async for ev in session.events():
            events.append(ev)

    pump = asyncio.get_running_loop().create_task(collect())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await session.start()
    assert loop.time() - started < 0.25  # the mapping (0.3 s per request here) runs in the background
    assert session.reachability.mode == "on"
    assert session.reachability.advertised_port == session.port  # nothing mapped yet

    async def mapped() -> dict[str, Any]:
        st = session.reachability.status()
        assert [m["state"] for m in st["mappings"] if m["method"] == "upnp"] == ["mapped"] * 2, st
        assert st["external_address"] is not None, st
        return st

    st = await eventually(mapped, timeout=10)
    assert sorted(gw.maps) == [("tcp", session.port), ("udp", session.port)]
    assert st["advertised_port"] == 40001 == session.reachability.advertised_port
    assert st["external_address"] == EXT == session.reachability.external_address
    assert {
        (m["protocol"], m["state"], m["external_port"]) for m in st["mappings"] if m["method"] == "upnp"
    } == {
        ("tcp", "mapped", 40001),
        ("udp", "mapped", 40001),
    }
    await eventually(when(lambda: any(e.kind == "external_address" for e in events)))
    ev = next(e for e in events if e.kind == "port_mapping" and e.data["summary"].startswith("mapped"))
    assert ev.info_hash == "" and ev.data["external_address"] == EXT
    assert any(e.kind == "external_address" and e.data["addresses"] == [EXT] for e in events)
    await session.close()
    assert sorted(gw.unmaps) == [("tcp", session.port, 40001), ("udp", session.port, 40001)]
    assert session.reachability.status()["port_mapping"] == "stopped"
    pump.cancel()


async def test_no_gateway_gives_up_quietly_and_close_is_quick(gateways: dict[str, Any]) -> None:
    session = Session(config())
    await session.start()
    await eventually(when(lambda: session.reachability.status()["summary"].startswith("no mapping service")))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await session.close()
    assert loop.time() - started < 1.0
    assert session.reachability.advertised_port == session.port


async def test_off_by_default_on_loopback_and_in_test_runs(
    gateways: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    gateways["upnp"] = Gateway()
    for cfg, mode in (
        (SessionConfig(listen_host="0.0.0.0", listen_port=0, enable_dht=False), "off"),
        (
            SessionConfig(listen_host="127.0.0.1", listen_port=0, enable_dht=False, port_mapping=True),
            "loopback",
        ),
    ):
        async with Session(cfg) as session:
            assert session.reachability.mode == mode and session.reachability.mapper is None
            assert session.reachability.status()["summary"].startswith("port mapping off")
    monkeypatch.setenv("BITSWARM_NO_PORT_MAPPING", "1")
    async with Session(config()) as session:
        assert session.reachability.mapper is None


async def test_the_mapped_port_is_announced_at_once_where_it_differs(
    gateways: dict[str, Any], tmp_path: Any
) -> None:
    """A gateway slower than the first announce waits (FIRST_ANNOUNCE_WAIT): the first announce goes
    out with the listen port; once the gateway maps another external port, the tracker hears that
    one right away (not at the next interval), and so do later ones."""
    from urllib.parse import parse_qs, urlsplit

    from bitswarm.metainfo import make_torrent, parse_torrent

    ports: list[int] = []
    body = b"d8:intervali1800e5:peers0:e"

    async def tracker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        target = head.split(b" ")[1].decode()
        ports.append(int(parse_qs(urlsplit(target).query)["port"][0]))
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(tracker, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/announce"
    (tmp_path / "a.bin").write_bytes(b"x" * 40000)
    torrent = parse_torrent(make_torrent(tmp_path / "a.bin", trackers=[[url]]).data)
    gateways["upnp"] = Gateway(external_port=40002, slow=2.0)
    try:
        async with Session(config()) as session:
            handle = await session.add(torrent, tmp_path, resume_dir=tmp_path / "r")
            rt = session.lookup(handle.info_hash)
            assert rt is not None and rt.announce is not None and rt.announce.announcer is not None
            announcer = rt.announce.announcer
            await eventually(when(lambda: 40002 in ports), timeout=10)
            assert ports[0] == session.port != 40002  # before the mapping
            assert announcer.port == 40002
    finally:
        server.close()
        await server.wait_closed()


async def test_reports_from_every_source_decide_and_give_the_dht_a_bep42_id() -> None:
    session = Session(
        SessionConfig(listen_host="127.0.0.1", listen_port=0, enable_dht=True, dht_bootstrap=[])
    )
    async with session:
        reach = session.reachability
        assert session.dht is not None
        node = session.dht.node
        assert not is_valid_node_id(node.node_id, EXT)
        for i in range(2):
            reach.note(EXT, "peer", f"198.51.100.{i + 20}")  # BEP 10 yourip
        assert reach.external_address is None
        assert node.on_ip_report is not None
        node.on_ip_report(EXT, ("198.51.100.30", 6881))  # BEP 42 ip of a DHT response
        assert reach.external_address == EXT
        assert is_valid_node_id(node.node_id, EXT)  # regenerated for the address now known
        assert session.own_ips.get(4) == EXT if hasattr(session, "own_ips") else True


def test_tracker_external_ip_is_read_bep24() -> None:
    body = b"d8:intervali60e5:peers0:11:external ip4:\xc6\x33\x64\x07e"
    reply = decode_announce_response(body)
    assert getattr(reply, "external_ip", None) == EXT
    odd = decode_announce_response(b"d8:intervali60e5:peers0:11:external ip3:abce")
    assert getattr(odd, "external_ip", "x") is None  # a malformed one is ignored


def test_reachability_status_without_a_session_start() -> None:
    reach = Reachability(Session(SessionConfig(listen_port=0)))
    assert reach.status()["port_mapping"] == "off" and reach.external_address is None


async def test_peers_exchange_yourip_and_it_is_counted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """Both sides of a loopback connection send BEP 10 ``yourip`` and count the other's as a vote (the
    vote itself drops 127.0.0.1: nobody outside can dial it)."""
    from bitswarm.metainfo import make_torrent, parse_torrent

    noted: list[tuple[str, str, str]] = []
    real = Reachability.note

    def note(self: Reachability, address: str, source: str, voter: str) -> None:
        noted.append((address, source, voter))
        real(self, address, source, voter)

    monkeypatch.setattr(Reachability, "note", note)
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "y.bin").write_bytes(b"y" * 70000)
    torrent = parse_torrent(make_torrent(tmp_path / "s" / "y.bin").data)
    cfg = {"listen_host": "127.0.0.1", "listen_port": 0, "enable_dht": False, "transports": ("tcp",)}
    async with Session(SessionConfig(**cfg)) as seed, Session(SessionConfig(**cfg)) as leech:  # type: ignore[arg-type]
        await seed.add(torrent, tmp_path / "s", resume_dir=tmp_path / "r1")
        handle = await leech.add(
            torrent, tmp_path / "l", peers=[("127.0.0.1", seed.port)], resume_dir=tmp_path / "r2"
        )
        await asyncio.wait_for(handle.wait_complete(), 30)
        await eventually(when(lambda: len([n for n in noted if n[1] == "peer"]) >= 2))
    assert {n for n in noted if n[1] == "peer"} == {("127.0.0.1", "peer", "127.0.0.1")}
    assert seed.reachability.external_address is None


async def test_a_trackers_external_ip_decides_bep24(tmp_path: Any) -> None:
    """An HTTP tracker whose replies carry ``external ip`` (BEP 24): one tracker decides."""
    from bitswarm.metainfo import make_torrent, parse_torrent

    body = b"d8:intervali1800e5:peers0:11:external ip4:\xc6\x33\x64\x07e"

    async def tracker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        writer.write(head.encode() + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(tracker, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/announce"
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "t.bin").write_bytes(b"t" * 50000)
    torrent = parse_torrent(make_torrent(tmp_path / "s" / "t.bin", trackers=[[url]]).data)
    try:
        cfg = SessionConfig(listen_host="127.0.0.1", listen_port=0, enable_dht=False)
        async with Session(cfg) as session:
            await session.add(torrent, tmp_path / "s", resume_dir=tmp_path / "r")
            await eventually(when(lambda: session.reachability.external_address == EXT), timeout=15)
            assert session.reachability.vote.scores() == {EXT: 3}
            assert session.own_ips.get(4) == EXT if hasattr(session, "own_ips") else True
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("announce_ip", [None, "198.51.100.9"])
async def test_ip_is_announced_only_when_configured(tmp_path: Any, announce_ip: str | None) -> None:
    """BEP 3 ``ip``: the tracker takes the source address (behind a NAT: the router's, which is right);
    ``ip=`` goes out only when ``announce_ip`` says so, whatever the external address learnt."""
    from urllib.parse import parse_qs, urlsplit

    from bitswarm.metainfo import make_torrent, parse_torrent

    queries: list[dict[str, list[str]]] = []
    body = b"d8:intervali1800e5:peers0:11:external ip4:\xc6\x33\x64\x07e"

    async def tracker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        queries.append(parse_qs(urlsplit(head.split(b" ")[1].decode()).query))
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(tracker, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/announce"
    (tmp_path / "i.bin").write_bytes(b"i" * 30000)
    torrent = parse_torrent(make_torrent(tmp_path / "i.bin", trackers=[[url]]).data)
    try:
        cfg = SessionConfig(listen_host="127.0.0.1", listen_port=0, enable_dht=False, announce_ip=announce_ip)
        async with Session(cfg) as session:
            handle = await session.add(torrent, tmp_path, resume_dir=tmp_path / "r")
            await eventually(when(lambda: session.external_address == EXT), timeout=15)
            await handle.force_reannounce()  # the external address is known now: still no ip=
    finally:
        server.close()
        await server.wait_closed()
    assert len(queries) >= 2
    assert all(q.get("ip") == ([announce_ip] if announce_ip else None) for q in queries), queries


async def _announce_recorder() -> tuple[asyncio.Server, str, list[tuple[float, int, str]]]:
    """A tracker recording each announce: (loop time, port, event)."""
    from urllib.parse import parse_qs, urlsplit

    seen: list[tuple[float, int, str]] = []
    body = b"d8:intervali1800e5:peers0:e"

    async def tracker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        query = parse_qs(urlsplit(head.split(b" ")[1].decode()).query)
        seen.append((asyncio.get_running_loop().time(), int(query["port"][0]), query.get("event", [""])[0]))
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(tracker, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/announce", seen


def _natpmp(gateways: dict[str, Any], external_port: int, slow: float) -> Gateway:
    """A NAT-PMP gateway (tried at once; UPnP starts after UPNP_DELAY) answering after ``slow`` s."""
    gw = gateways["natpmp"] = Gateway(external_port=external_port, slow=slow)
    gw.method = "natpmp"  # type: ignore[misc]
    return gw


async def test_the_first_announce_waits_for_a_mapping_in_flight(
    gateways: dict[str, Any], tmp_path: Any
) -> None:
    """A mapping being made when the torrent starts: its first tracker announce waits for it and
    carries the mapped port — one announce (``started``), no reannounce right after it, and the
    ``stopped`` one on close carries the same port (the mapping is removed before it)."""
    from bitswarm.metainfo import make_torrent, parse_torrent

    server, url, seen = await _announce_recorder()
    (tmp_path / "w.bin").write_bytes(b"w" * 40000)
    torrent = parse_torrent(make_torrent(tmp_path / "w.bin", trackers=[[url]]).data)
    _natpmp(gateways, 40003, slow=0.4)
    try:
        async with Session(config(first_announce_wait=1.0)) as session:  # as the daemon
            await session.add(torrent, tmp_path, resume_dir=tmp_path / "r")
            await eventually(when(lambda: bool(seen)), timeout=10)
            await asyncio.sleep(0.5)  # a reannounce for the mapping would come now
            assert session.reachability.advertised_port == 40003
    finally:
        server.close()
        await server.wait_closed()
    # ... and closing (the mapping removed first) changes no port: ``stopped`` names the same entry
    assert [(port, event) for _, port, event in seen] == [(40003, "started"), (40003, "stopped")], seen


async def test_the_first_announce_waits_at_most_a_second(gateways: dict[str, Any], tmp_path: Any) -> None:
    """A gateway slower than FIRST_ANNOUNCE_WAIT: the first announce goes out after ~1 s with the
    listen port, and the mapped port follows in a reannounce once the gateway answers."""
    from bitswarm.metainfo import make_torrent, parse_torrent
    from bitswarm.session.reachability import FIRST_ANNOUNCE_WAIT

    server, url, seen = await _announce_recorder()
    (tmp_path / "s.bin").write_bytes(b"s" * 40000)
    torrent = parse_torrent(make_torrent(tmp_path / "s.bin", trackers=[[url]]).data)
    _natpmp(gateways, 40004, slow=2.0)
    loop = asyncio.get_running_loop()
    try:
        async with Session(config(first_announce_wait=FIRST_ANNOUNCE_WAIT)) as session:
            added = loop.time()
            await session.add(torrent, tmp_path, resume_dir=tmp_path / "r")
            await eventually(when(lambda: any(port == 40004 for _, port, _ in seen)), timeout=10)
            first_at, first_port, first_event = seen[0]
            assert (first_port, first_event) == (session.port, "started")
            assert FIRST_ANNOUNCE_WAIT - 0.1 <= first_at - added < FIRST_ANNOUNCE_WAIT + 0.8, first_at - added
    finally:
        server.close()
        await server.wait_closed()


async def test_the_first_announce_does_not_wait_by_default(gateways: dict[str, Any], tmp_path: Any) -> None:
    """The library and the one-shot commands (first_announce_wait 0): a gateway that is slow or never
    answers costs the first announce nothing; the mapped port follows in a reannounce."""
    from bitswarm.metainfo import make_torrent, parse_torrent

    server, url, seen = await _announce_recorder()
    (tmp_path / "d.bin").write_bytes(b"d" * 40000)
    torrent = parse_torrent(make_torrent(tmp_path / "d.bin", trackers=[[url]]).data)
    _natpmp(gateways, 40006, slow=2.0)
    loop = asyncio.get_running_loop()
    try:
        async with Session(config()) as session:
            assert session.config.first_announce_wait == 0
            added = loop.time()
            await session.add(torrent, tmp_path, resume_dir=tmp_path / "r")
            await eventually(when(lambda: any(port == 40006 for _, port, _ in seen)), timeout=10)
            first_at, first_port, _ = seen[0]
            assert first_port == session.port and first_at - added < 0.5, (first_at - added, seen)
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
async def test_no_wait_when_mapping_is_off_or_on_loopback(
    gateways: dict[str, Any], tmp_path: Any, host: str
) -> None:
    from bitswarm.metainfo import make_torrent, parse_torrent

    server, url, seen = await _announce_recorder()
    (tmp_path / "n.bin").write_bytes(b"n" * 40000)
    torrent = parse_torrent(make_torrent(tmp_path / "n.bin", trackers=[[url]]).data)
    _natpmp(gateways, 40005, slow=3.0)
    loop = asyncio.get_running_loop()
    cfg = SessionConfig(listen_host=host, listen_port=0, enable_dht=False, port_mapping=host != "0.0.0.0")
    try:
        async with Session(cfg) as session:
            assert session.reachability.mode == ("off" if host == "0.0.0.0" else "loopback")
            added = loop.time()
            await session.add(torrent, tmp_path, resume_dir=tmp_path / "r")
            await eventually(when(lambda: bool(seen)), timeout=10)
            assert seen[0][0] - added < 0.5 and seen[0][1] == session.port
            # and the reachability side alone: nothing to wait for
            started = loop.time()
            await session.reachability.before_first_announce(object())
            assert loop.time() - started < 0.05
    finally:
        server.close()
        await server.wait_closed()
