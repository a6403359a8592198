"""asyncio TCP server for the binary index protocol (seed 001) over :class:`IndexService`.

The server only moves bytes and timers; :class:`~bitswarm.index.binary.IndexConnection` parses. A
bad frame is answered with its ``*_KO`` (or ``ERROR``) reply and the connection goes on; a frame
over the length cap (16 KiB before login, 1 MiB after), a connection that does not LOGIN within
``login_timeout`` seconds, or one idle longer than ``idle_timeout`` gets ``ERROR`` and is closed.
A connection beyond ``max_per_ip`` from one address, or ``max_connections`` in all, gets ``ERROR``
and is closed at once. No input crashes the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from decimal import Decimal

from bitswarm.errors import LocalProtocolError
from bitswarm.index import _validate as v
from bitswarm.index._errors import AuthError, IndexCodecError, IndexServiceError
from bitswarm.index._model import OFFLINE_AFTER, FileRecord, FileSpec, User
from bitswarm.index._service import IndexService
from bitswarm.index.binary import (
    NEED_DATA,
    Browse,
    BrowseOk,
    Error,
    IndexConnection,
    KeepAlive,
    Ko,
    Login,
    Logout,
    MessageType,
    PeerEntry,
    Register,
    RegisterOk,
    RegisterUpdate,
    Reply,
    Request,
    Search,
    SearchHit,
    SearchOk,
    SharedFile,
    ShowPeers,
    ShowPeersOk,
    SimpleOk,
    State,
    request_type,
)

log = logging.getLogger("bitswarm.index.binary")

MIB = Decimal(1 << 20)
#: Most search hits (file × online host pairs) one SEARCH_OK carries.
MAX_SEARCH_HITS = 200
#: Most peers one SHOW_PEERS_OK lists.
MAX_PEERS_SHOWN = 5000


def mb_text(size: int | None) -> str:
    """Bytes → the seed's "dimension in Mb" (mebibytes, decimal text, at most 9 decimals)."""
    if size is None:
        return ""
    value = (Decimal(size) / MIB).quantize(Decimal("0.000000001")).normalize()
    text = format(value, "f")
    return text


def mb_to_bytes(text: str) -> int:
    return int(Decimal(text) * MIB)


def _specs(files: tuple[SharedFile, ...]) -> list[FileSpec]:
    return [v.file_spec(file_name=f.filename, size=mb_to_bytes(f.size_mb), sha1=f.sha1) for f in files]


def _shared(f: FileRecord) -> SharedFile:
    return SharedFile(_clean(f.name), mb_text(f.size), f.sha1 or "")


class BinaryIndexServer:
    """Serve seed 001 on one TCP port. ``start()`` returns the bound ``(host, port)`` (port 0 works)."""

    def __init__(
        self,
        service: IndexService,
        *,
        login_timeout: float = 10.0,
        idle_timeout: float = OFFLINE_AFTER + 60.0,
        max_connections: int = 1024,
        max_per_ip: int = 16,
    ) -> None:
        self.service = service
        self.login_timeout = login_timeout
        self.idle_timeout = idle_timeout
        self.max_per_ip = max_per_ip
        self._per_ip: Counter[str] = Counter()
        self._slots = asyncio.Semaphore(max_connections)
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._accept, host, port)
        sock = self._server.sockets[0]
        bound = sock.getsockname()
        return str(bound[0]), int(bound[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()
        if self._conns:
            await asyncio.wait(set(self._conns), timeout=5)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        peer = writer.get_extra_info("peername")
        ip = str(peer[0]) if peer else ""
        self._per_ip[ip] += 1
        try:
            if self._per_ip[ip] > self.max_per_ip:
                writer.write(IndexConnection("server").send(Error("too many connections from this address")))
                return
            if self._slots.locked():
                writer.write(IndexConnection("server").send(Error("server busy")))
                return
            async with self._slots:
                await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the peer went away, or the server is closing
        finally:
            self._conns.discard(task)
            self._per_ip[ip] -= 1
            if self._per_ip[ip] <= 0:
                del self._per_ip[ip]
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = IndexConnection("server")
        peer = writer.get_extra_info("peername")
        ip = str(peer[0]) if peer else None
        loop = asyncio.get_running_loop()
        login_deadline = loop.time() + self.login_timeout
        session = _Session(ip)
        while True:
            # Answer every whole frame we already have.
            while True:
                try:
                    event = conn.next_event()
                except IndexCodecError as exc:
                    hint = exc.hint
                    bad: Reply = hint if isinstance(hint, Ko | Error) else Error(str(exc))
                    writer.write(conn.send(bad))
                    await writer.drain()
                    if conn.state is State.BROKEN:
                        return
                    continue
                if event is NEED_DATA:
                    break
                assert isinstance(event, Request)
                reply = await self._handle(event, session)
                try:
                    frame = conn.send(reply)
                except LocalProtocolError as exc:
                    frame = conn.send(Ko(request_type(event), f"cannot send the reply: {exc}"))
                writer.write(frame)
                await writer.drain()
            if conn.state is State.NEW:
                timeout = login_deadline - loop.time()
                if timeout <= 0:
                    writer.write(conn.send(Error("login timeout")))
                    await writer.drain()
                    return
            else:
                timeout = self.idle_timeout
            try:
                data = await asyncio.wait_for(reader.read(65536), timeout)
            except TimeoutError:
                writer.write(conn.send(Error("login timeout" if conn.state is State.NEW else "idle timeout")))
                await writer.drain()
                return
            if not data:
                return
            conn.receive_data(data)

    async def _handle(self, event: Request, session: _Session) -> Reply:
        mtype = request_type(event)
        try:
            return await self._dispatch(event, session)
        except IndexServiceError as exc:
            return Ko(mtype, str(exc))
        except (ValueError, ArithmeticError) as exc:  # e.g. a decimal too large for the index
            return Ko(mtype, f"bad value: {exc}")
        except Exception:  # a bug must not take the server down; the client gets a KO
            log.exception("binary index request %s failed", mtype.name)
            return Ko(mtype, "internal error")

    async def _user(self, username: str, password: str, session: _Session) -> User:
        return await self.service.authenticate(username, password, ip=session.ip)

    async def _dispatch(self, event: Request, session: _Session) -> Reply:
        svc = self.service
        if isinstance(event, Register):
            specs = _specs(event.files)
            user = await svc.register_or_authenticate(
                v.username(event.username), v.password(event.password), ip=session.ip
            )
            guid = await svc.register_with_files(user, specs, ip=session.ip)
            return RegisterOk(guid)
        if isinstance(event, RegisterUpdate):
            specs = _specs(event.files)
            user = await self._user(event.username, event.password, session)
            guid = v.guid(event.peer_id, "id")
            await svc.check_owner(guid, user)
            await svc.replace_files(guid, specs)
            return SimpleOk(MessageType.REGISTER_UPDATE_OK, "REGISTER UPDATE SUCCESS")
        if isinstance(event, Login):
            user = await self._user(event.username, event.password, session)
            guid = v.guid(event.peer_id, "id")
            await svc.check_owner(guid, user)
            await svc.login_peer(guid, user=user, ip=session.ip, port=event.port)
            session.guid = guid
            return SimpleOk(MessageType.LOGIN_OK, "LOGIN SUCCESS")
        if isinstance(event, KeepAlive):
            guid = v.guid(event.peer_id, "id")
            if guid != session.guid:
                raise AuthError("KEEP_ALIVE for a peer this connection did not log in")
            await svc.keep_alive(guid, require_login=True)
            return SimpleOk(MessageType.KEEP_ALIVE_OK, "KEEP ALIVE SUCCESS")
        if isinstance(event, Logout):
            user = await self._user(event.username, event.password, session)
            guid = v.guid(event.peer_id, "id")
            await svc.check_owner(guid, user)
            await svc.logout_peer(guid, user=user)
            session.guid = None
            return SimpleOk(MessageType.LOGOUT_OK, "LOGOUT SUCCESS")
        if isinstance(event, Search):
            result = await svc.search(event.query, limit=50)
            hits: list[SearchHit] = []
            for record in result.items:
                detail = await svc.get_file(record.id)
                for host in detail.hosts:
                    if not host.peer.online or len(hits) >= MAX_SEARCH_HITS:
                        continue
                    hits.append(
                        SearchHit(
                            _clean(host.name or record.name),  # as that peer calls it
                            mb_text(record.size),
                            record.sha1 or "",
                            _clean(host.peer.username or ""),
                            host.peer.public_id,
                            host.peer.ip or "",
                            host.peer.port or 0,
                        )
                    )
            return SearchOk(tuple(hits))
        if isinstance(event, Browse):
            peer = await svc.find_peer(event.peer_id)  # a public id from SHOW_PEERS / SEARCH
            files = await svc.browse(peer.guid)
            return BrowseOk(tuple(_shared(f) for f in files))
        assert isinstance(event, ShowPeers)
        peers = await svc.list_peers(event.which, limit=MAX_PEERS_SHOWN)
        return ShowPeersOk(
            tuple(
                PeerEntry(p.public_id, _clean(p.username or ""), p.ip or "", p.port or 0, p.online)
                for p in peers
            )
        )


def _clean(text: str) -> str:
    return text.replace("|", "_").replace("\n", " ")


class _Session:
    def __init__(self, ip: str | None) -> None:
        self.ip = ip
        self.guid: str | None = None


__all__ = ["BinaryIndexServer", "mb_text", "mb_to_bytes"]
