"""The small HTTP/1.1 GET used for plain-http trackers: body framings, limits, malformed replies,
redirects (through :class:`HttpTrackerClient`), against real loopback servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from bitswarm.bencode import encode
from bitswarm.tracker._http11 import HttpError, http_get
from bitswarm.tracker.client import AnnounceParams, HttpTrackerClient, TrackerProtocolError

pytestmark = pytest.mark.timeout(30)

REPLY = encode({b"interval": 900, b"peers": b"\x7f\x00\x00\x01\x1a\xe1"})


class Server:
    """Answers each connection with ``reply(request_head)``; records the request heads."""

    def __init__(self, reply: Callable[[bytes], bytes]) -> None:
        self.reply = reply
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                writer.write(self.reply(head))
                await writer.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Callable[[bytes], bytes]], asyncio.Future[tuple[Server, int]]]]:
    servers: list[Server] = []

    async def start(reply: Callable[[bytes], bytes]) -> tuple[Server, int]:
        s = Server(reply)
        servers.append(s)
        return s, await s.start()

    yield start  # type: ignore[misc]
    for s in servers:
        assert s.server is not None
        s.server.close()
        await s.server.wait_closed()


def fixed(data: bytes) -> Callable[[bytes], bytes]:
    return lambda _head: data


async def get(
    port: int, path: str = "/announce?x=1", max_body: int = 1 << 20
) -> tuple[int, bytes, str | None]:
    return await http_get(f"http://127.0.0.1:{port}{path}", user_agent="t/1", max_body=max_body, timeout=5)


async def test_content_length_body_and_request_form(serve) -> None:  # type: ignore[no-untyped-def]
    server, port = await serve(fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA"))
    assert await get(port) == (200, b"hello", None)
    head = server.requests[0]
    assert head.startswith(b"GET /announce?x=1 HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:%d\r\n" % port in head
    assert b"Connection: close" in head and b"User-Agent: t/1" in head


async def test_chunked_body(serve) -> None:  # type: ignore[no-untyped-def]
    body = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n"
    _, port = await serve(fixed(body))
    assert await get(port) == (200, b"abcdefg", None)


async def test_body_to_end_of_stream(serve) -> None:  # type: ignore[no-untyped-def]
    _, port = await serve(fixed(b"HTTP/1.0 200 OK\r\nX-A: b\r\n\r\n" + b"z" * 100_000))
    assert await get(port) == (200, b"z" * 100_000, None)


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + b"a" * 2000,
        b"HTTP/1.1 200 OK\r\n\r\n" + b"a" * 2000,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n" + b"a" * 2000 + b"\r\n0\r\n\r\n",
    ],
)
async def test_body_over_the_limit_is_refused(serve, reply: bytes) -> None:  # type: ignore[no-untyped-def]
    _, port = await serve(fixed(reply))
    with pytest.raises(HttpError, match="larger than 1000"):
        await get(port, max_body=1000)


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (b"SPDY/9 200 OK\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 abc OK\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "bad header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "cut short"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "cut short"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "before the reply headers ended"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", "too long"),
    ],
)
async def test_malformed_replies_raise_http_error(serve, reply: bytes, match: str) -> None:  # type: ignore[no-untyped-def]
    _, port = await serve(fixed(reply))
    with pytest.raises(HttpError, match=match):
        await get(port)


async def test_not_plain_http() -> None:
    with pytest.raises(HttpError, match="not a plain http"):
        await http_get("https://127.0.0.1:1/", user_agent="t", max_body=10, timeout=1)


PARAMS = AnnounceParams(info_hash=b"\x01" * 20, peer_id=b"-BW0100-" + b"x" * 12, port=6881, left=1)
OK = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(REPLY) + REPLY


async def test_tracker_client_follows_a_relative_redirect(serve) -> None:  # type: ignore[no-untyped-def]
    def reply(head: bytes) -> bytes:
        if head.startswith(b"GET /old"):
            return b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /announce\r\nContent-Length: 0\r\n\r\n"
        return OK

    server, port = await serve(reply)
    client = HttpTrackerClient(f"http://127.0.0.1:{port}/old/announce", timeout=5)
    try:
        result = await client.announce(PARAMS)
    finally:
        await client.aclose()
    assert result.peers == (("127.0.0.1", 6881),)
    assert [h.split(b" ")[1].split(b"?")[0] for h in server.requests] == [b"/old/announce", b"/announce"]


async def test_tracker_client_redirect_loop_and_garbage(serve) -> None:  # type: ignore[no-untyped-def]
    from bitswarm.tracker.client import TrackerUnreachable

    _, loop_port = await serve(fixed(b"HTTP/1.1 302 Found\r\nLocation: /announce\r\n\r\n"))
    client = HttpTrackerClient(f"http://127.0.0.1:{loop_port}/announce", timeout=5)
    with pytest.raises(TrackerUnreachable, match="redirects"):
        await client.announce(PARAMS)
    _, bad_port = await serve(fixed(b"\x00\x01garbage\r\n\r\n"))
    client = HttpTrackerClient(f"http://127.0.0.1:{bad_port}/announce", timeout=5)
    with pytest.raises(TrackerProtocolError, match="bad HTTP reply"):
        await client.announce(PARAMS)


async def test_tracker_client_plain_http_needs_no_httpx(serve) -> None:  # type: ignore[no-untyped-def]
    _, port = await serve(fixed(OK))
    client = HttpTrackerClient(f"http://127.0.0.1:{port}/announce", timeout=5)
    await client.announce(PARAMS)
    assert client._http is None  # no httpx client was made
    await client.aclose()
