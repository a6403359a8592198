"""asyncio client of the binary index protocol (seed 001): REGISTER, REGISTER_UPDATE, LOGIN,
KEEP_ALIVE, LOGOUT, SEARCH, BROWSE and SHOW_PEERS over one TCP connection.

The client only moves bytes; :class:`~bitswarm.index.binary.IndexConnection` (``role="client"``)
parses the replies. Every call waits at most ``timeout`` seconds for its reply. Errors are typed:

* :class:`BinaryIndexRefused` — the server answered ``*_KO`` (``request`` and ``reason`` as sent)
  or ``ERROR``;
* :class:`BinaryIndexTimeout` — no (whole) reply within ``timeout``;
* :class:`BinaryIndexConnectionError` — cannot connect, or the connection was lost or broken by a
  bad reply (the server's bytes did not follow the protocol).

All three are :class:`BinaryIndexError`, a :class:`~bitswarm.errors.BitswarmError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Literal, TypeVar

from bitswarm.errors import BitswarmError, LocalProtocolError
from bitswarm.index import binary as b
from bitswarm.index._errors import IndexCodecError

log = logging.getLogger("bitswarm.index.binary_client")

#: Seed 001: "Every 5 minutes an active peer must send a keep alive call".
KEEP_ALIVE_EVERY = 300.0

_R = TypeVar("_R", bound=b.Reply)


class BinaryIndexError(BitswarmError):
    """Base class of the binary index client's errors."""


class BinaryIndexRefused(BinaryIndexError):
    """The server answered ``*_KO`` (or ``ERROR``: ``request`` is then None)."""

    def __init__(self, request: b.MessageType | None, reason: str) -> None:
        what = request.name if request is not None else "request"
        super().__init__(f"index refused {what}: {reason or 'no reason given'}")
        self.request = request
        self.reason = reason


class BinaryIndexTimeout(BinaryIndexError):
    """No reply within the client's timeout."""

    exit_code = 1  # the command line's code: the service failed (docs/cli.md)


class BinaryIndexConnectionError(BinaryIndexError):
    """Cannot connect, the connection was lost, or the server's reply broke the protocol."""

    exit_code = 1  # the command line's code: the service is unreachable (docs/cli.md)


class BinaryIndexClient:
    """One connection to a binary index server; use as ``async with await BinaryIndexClient.connect(...)``.

    Calls are serialized (one request in flight): the protocol has no request ids.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, timeout: float = 10.0
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._conn = b.IndexConnection("client")
        self._lock = asyncio.Lock()
        self._broken: str | None = None
        self.timeout = timeout

    @classmethod
    async def connect(cls, host: str, port: int, *, timeout: float = 10.0) -> BinaryIndexClient:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except TimeoutError:
            raise BinaryIndexTimeout(f"cannot connect to {host}:{port} within {timeout:g} s") from None
        except OSError as exc:
            raise BinaryIndexConnectionError(
                f"cannot connect to {host}:{port}: {exc.strerror or exc}"
            ) from None
        return cls(reader, writer, timeout=timeout)

    async def __aenter__(self) -> BinaryIndexClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 2)

    # -- plumbing ------------------------------------------------------------------------------

    async def _read_reply(self) -> b.Reply:
        while True:
            try:
                event = self._conn.next_event()
            except IndexCodecError as exc:
                raise BinaryIndexConnectionError(f"bad reply from the index: {exc}") from None
            if event is not b.NEED_DATA:
                assert isinstance(
                    event,
                    b.RegisterOk | b.SimpleOk | b.SearchOk | b.BrowseOk | b.ShowPeersOk | b.Ko | b.Error,
                )
                return event
            data = await self._reader.read(65536)
            if not data:
                raise BinaryIndexConnectionError("the index closed the connection")
            self._conn.receive_data(data)

    async def request(self, event: b.Request) -> b.Reply:
        """Send ``event`` and return the server's reply (a ``Ko`` or ``Error`` reply is returned too)."""
        try:
            frame = self._conn.send(event)
        except LocalProtocolError as exc:
            raise BinaryIndexError(f"cannot send {type(event).__name__}: {exc}") from None
        async with self._lock:
            if self._broken is not None:
                raise BinaryIndexConnectionError(self._broken)
            try:
                self._writer.write(frame)
                await asyncio.wait_for(self._writer.drain(), self.timeout)
                return await asyncio.wait_for(self._read_reply(), self.timeout)
            except TimeoutError:
                # a late reply would answer the next request: this connection is done
                self._broken = "the connection timed out earlier"
                raise BinaryIndexTimeout(f"no reply from the index within {self.timeout:g} s") from None
            except OSError as exc:
                self._broken = f"connection to the index lost: {exc}"
                raise BinaryIndexConnectionError(self._broken) from None
            except BinaryIndexConnectionError as exc:
                self._broken = str(exc)
                raise

    async def _expect(self, event: b.Request, kind: type[_R]) -> _R:
        reply = await self.request(event)
        if isinstance(reply, b.Ko):
            raise BinaryIndexRefused(reply.request, reply.reason)
        if isinstance(reply, b.Error):
            raise BinaryIndexRefused(None, reply.reason)
        if not isinstance(reply, kind):
            raise BinaryIndexConnectionError(
                f"unexpected reply {type(reply).__name__} to {type(event).__name__}"
            )
        return reply

    # -- the seed's calls ----------------------------------------------------------------------

    async def register(self, username: str, password: str, files: Iterable[b.SharedFile]) -> str:
        """REGISTER: the new peer id the server releases."""
        return (await self._expect(b.Register(username, password, tuple(files)), b.RegisterOk)).peer_id

    async def register_update(
        self, username: str, password: str, peer_id: str, files: Iterable[b.SharedFile]
    ) -> None:
        """REGISTER_UPDATE: replace the file list of ``peer_id``."""
        await self._expect(b.RegisterUpdate(username, password, peer_id, tuple(files)), b.SimpleOk)

    async def login(self, username: str, password: str, peer_id: str, port: int | None = None) -> None:
        """LOGIN; ``port`` (our 4th-line extension) is where this peer serves its files."""
        await self._expect(b.Login(username, password, peer_id, port), b.SimpleOk)

    async def keep_alive(self, peer_id: str) -> None:
        await self._expect(b.KeepAlive(peer_id), b.SimpleOk)

    async def logout(self, username: str, password: str, peer_id: str) -> None:
        await self._expect(b.Logout(username, password, peer_id), b.SimpleOk)

    async def search(self, query: str) -> tuple[b.SearchHit, ...]:
        return (await self._expect(b.Search(query), b.SearchOk)).hits

    async def browse(self, peer_id: str) -> tuple[b.SharedFile, ...]:
        """BROWSE a peer by the public id SEARCH and SHOW_PEERS list."""
        return (await self._expect(b.Browse(peer_id), b.BrowseOk)).files

    async def show_peers(self, which: Literal["online", "offline", "all"] = "all") -> tuple[b.PeerEntry, ...]:
        return (await self._expect(b.ShowPeers(which), b.ShowPeersOk)).peers

    async def keep_alive_loop(
        self,
        peer_id: str,
        *,
        interval: float = KEEP_ALIVE_EVERY,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """KEEP_ALIVE every ``interval`` seconds until cancelled (``sleep`` is injectable for tests).
        A refusal or timeout is logged and retried at the next tick; a lost connection ends the loop
        with :class:`BinaryIndexConnectionError`."""
        while True:
            await sleep(interval)
            try:
                await self.keep_alive(peer_id)
            except (BinaryIndexRefused, BinaryIndexTimeout) as exc:
                log.warning("KEEP_ALIVE failed: %s", exc)


__all__ = [
    "KEEP_ALIVE_EVERY",
    "BinaryIndexClient",
    "BinaryIndexConnectionError",
    "BinaryIndexError",
    "BinaryIndexRefused",
    "BinaryIndexTimeout",
]
