"""Redis-backed swarm state: two tracker instances on one real redis-server share a swarm."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tracker_server_testlib import UdpClient, base_url, http_announce, http_scrape, req, running

from bitswarm.tracker import udp_codec as udp
from bitswarm.tracker._common import Event
from bitswarm.tracker.http_codec import Peer, ScrapeResponse, ScrapeStats
from testtools import eventually, require_tool

pytestmark = pytest.mark.timeout(30)
IH = os.urandom(20)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    exe = require_tool("redis-server")
    port = _free_port()
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def pong() -> bool:
            if proc.poll() is not None:
                pytest.fail("redis-server exited")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        try:
            eventually(pong, timeout=10, interval=0.05)
        except AssertionError:
            pytest.fail("redis-server did not answer")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(5)


async def test_two_instances_share_one_swarm(redis_url: str) -> None:
    async with (
        running(redis=redis_url, udp=(("127.0.0.1", 0),), http=(("127.0.0.1", 0),)) as one,
        running(redis=redis_url, udp=(("127.0.0.1", 0),), http=(("127.0.0.1", 0),)) as two,
        httpx.AsyncClient() as client,
    ):
        await http_announce(client, base_url(one) + "/announce", req(IH, 1, left=0, event=Event.COMPLETED))
        seen = await http_announce(client, base_url(two) + "/announce", req(IH, 2))
        assert seen.peers == (Peer("127.0.0.1", 10001),) and (seen.complete, seen.incomplete) == (1, 1)
        full = await http_announce(client, base_url(two) + "/announce", req(IH, 3, compact=False))
        assert set(full.peers) == {
            Peer("127.0.0.1", 10001, b"-BS0001-" + (1).to_bytes(12, "big")),
            Peer("127.0.0.1", 10002, b"-BS0001-" + (2).to_bytes(12, "big")),
        }
        # UDP on instance one sees the HTTP peers of instance two
        client_udp = await UdpClient.open(one.udp_addresses[0])
        try:
            cid = await client_udp.connect()
            client_udp.send(
                udp.encode_request(
                    udp.AnnounceRequest(cid, 5, IH, b"u" * 20, 0, 0, 0, Event.STARTED, 1, 30000)
                )
            )
            resp = udp.decode_response(await client_udp.recv())
            assert isinstance(resp, udp.AnnounceResponse)
            assert {p for _, p in resp.peers} == {10002, 10003}  # a seeder gets no seeders
        finally:
            client_udp.close()
        await http_announce(client, base_url(one) + "/announce", req(IH, 3, event=Event.STOPPED))
        scraped = await http_scrape(client, base_url(one) + "/scrape", [IH])
        assert scraped == ScrapeResponse({IH: ScrapeStats(2, 1, 1)})
        stats = (await client.get(base_url(two) + "/stats")).json()
        assert (stats["torrents"], stats["seeders"], stats["leechers"]) == (1, 2, 1)
