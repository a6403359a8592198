"""The native REST API under ``/api/v1`` (OpenAPI at ``/openapi.json``, docs at ``/docs``).

Reads are public; writes need ``Authorization: Bearer <token>`` from ``POST /api/v1/sessions``.
Public views name a peer by its public ``id``; its ``guid`` (the credential of the P2PFlix and
CentralizedP2P APIs) is shown only to the user who owns the peer, in the replies of the owner's calls.
Lists are paginated with ``limit``/``offset`` and answer ``{"total", "items"}``. Errors are
``{"error": {"code", "message"}}`` with a 4xx status.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from bitswarm.index import _validate as v
from bitswarm.index._errors import AuthError, ValidationError
from bitswarm.index._model import FileDetail, FileRecord, Peer, User
from bitswarm.index._service import IndexService

MAX_PAGE = 1000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Credentials(_Body):
    username: StrictStr = Field(min_length=1, max_length=64)
    password: StrictStr = Field(min_length=1, max_length=1024)


class UserOut(BaseModel):
    username: str


class SessionOut(BaseModel):
    token: str
    username: str
    expires_at: float


class PeerIn(_Body):
    ip: StrictStr | None = Field(None, description="defaults to the address the request came from")
    port: StrictInt | None = Field(None, ge=1, le=65535, description="BitTorrent (BEP 3) listen port")


class PeerOut(BaseModel):
    id: str = Field(description="public id of the peer (a hash of its secret guid)")
    username: str | None
    ip: str | None
    port: int | None
    online: bool
    last_seen: float | None
    expires_at: float


class OwnedPeerOut(PeerOut):
    guid: str = Field(description="the peer's secret: shown only to its owner, never in public views")


class ChunkIn(_Body):
    id: StrictInt = Field(ge=0)
    name: StrictStr = Field(min_length=1, max_length=1024)
    hash: StrictStr = Field(min_length=1, max_length=128)


class FileIn(_Body):
    peer_guid: StrictStr
    name: StrictStr = Field(min_length=1, max_length=1024)
    size: StrictInt | None = Field(None, ge=0)
    sha1: StrictStr | None = None
    sha256: StrictStr | None = None
    md5: StrictStr | None = None
    info_hash_v1: StrictStr | None = Field(None, description="BEP 3 info-hash, 40 hex")
    info_hash_v2: StrictStr | None = Field(None, description="BEP 52 info-hash, 64 hex")
    magnet: StrictStr | None = None
    path: StrictStr | None = None
    chunks: list[ChunkIn] = Field(default_factory=list, max_length=100_000)
    torrent: StrictStr | None = Field(
        None,
        description="base64 of the .torrent (BEP 3 / BEP 52 metainfo); its info-hashes are filled in "
        "(and must match info_hash_v1/v2 when given); `bitswarm get` downloads with it",
    )


class FileOut(BaseModel):
    id: int
    name: str
    size: int | None
    sha1: str | None
    sha256: str | None
    md5: str | None
    info_hash_v1: str | None
    info_hash_v2: str | None
    magnet: str | None
    online_peers: int
    total_peers: int
    has_torrent: bool = False


class ChunkOut(BaseModel):
    id: int
    name: str
    hash: str


class FileDetailOut(FileOut):
    chunks: list[ChunkOut]
    peers: list[PeerOut]


class PeerDetailOut(PeerOut):
    files: list[FileOut]


class FilePage(BaseModel):
    total: int
    items: list[FileOut]


class PeerPage(BaseModel):
    total: int
    items: list[PeerOut]


def _peer_fields(p: Peer) -> dict[str, Any]:
    return {
        "id": p.public_id,
        "username": p.username,
        "ip": p.ip,
        "port": p.port,
        "online": p.online,
        "last_seen": p.last_seen,
        "expires_at": p.expires_at,
    }


def peer_out(p: Peer) -> PeerOut:
    """The public view of a peer (no guid)."""
    return PeerOut(**_peer_fields(p))


def owned_peer_out(p: Peer) -> OwnedPeerOut:
    """The owner's view of their peer, with its guid."""
    return OwnedPeerOut(**_peer_fields(p), guid=p.guid)


def file_out(f: FileRecord) -> dict[str, Any]:
    return {
        "id": f.id,
        "name": f.name,
        "size": f.size,
        "sha1": f.sha1,
        "sha256": f.sha256,
        "md5": f.md5,
        "info_hash_v1": f.btih_v1,
        "info_hash_v2": f.btih_v2,
        "magnet": f.magnet,
        "online_peers": f.online_peers,
        "total_peers": f.total_peers,
        "has_torrent": f.has_torrent,
    }


def detail_out(d: FileDetail) -> FileDetailOut:
    return FileDetailOut(
        **file_out(d.file),
        chunks=[ChunkOut(id=c.id, name=c.name, hash=c.hash) for c in d.chunks],
        peers=[peer_out(h.peer) for h in d.hosts],
    )


Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Offset = Annotated[int, Query(ge=0, le=2**62)]


async def current_user(request: Request, authorization: Annotated[str | None, Header()] = None) -> User:
    """The user of the ``Authorization: Bearer <token>`` header (AuthError otherwise)."""
    if authorization is None or not authorization.startswith("Bearer "):
        raise AuthError("missing bearer token")
    token = authorization[7:].strip()
    if not token or len(token) > 256:
        raise AuthError("bad bearer token")
    service: IndexService = request.app.state.service
    return await service.user_for_token(token)


Auth = Annotated[User, Depends(current_user)]


def native_router(service: IndexService) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["native"])

    @router.post("/users", status_code=201, response_model=UserOut)
    async def create_user(body: Credentials) -> UserOut:
        user = await service.create_user(v.username(body.username), v.password(body.password))
        return UserOut(username=user.username)

    @router.post(
        "/sessions",
        status_code=201,
        response_model=SessionOut,
        responses={429: {"description": "too many failed logins (see Retry-After)"}},
    )
    async def login(body: Credentials, request: Request) -> SessionOut:
        s = await service.login(
            body.username, body.password, ip=request.client.host if request.client else None
        )
        return SessionOut(token=s.token, username=s.username, expires_at=s.expires_at)

    @router.delete("/sessions", status_code=204)
    async def logout(user: Auth, authorization: Annotated[str, Header()]) -> Response:
        await service.logout(authorization[7:].strip())
        return Response(status_code=204)

    @router.post("/peers", status_code=201, response_model=OwnedPeerOut)
    async def register_peer(body: PeerIn, user: Auth, request: Request) -> OwnedPeerOut:
        ip = v.ip(body.ip) if body.ip is not None else (request.client.host if request.client else None)
        peer = await service.register_peer(user=user, ip=ip, port=body.port, online=True)
        return owned_peer_out(peer)

    @router.get("/peers", response_model=PeerPage)
    async def list_peers(
        status: Literal["online", "offline", "all"] = "all", limit: Limit = 100, offset: Offset = 0
    ) -> PeerPage:
        items = await service.list_peers(status, limit=limit, offset=offset)
        return PeerPage(total=await service.count_peers(status), items=[peer_out(p) for p in items])

    @router.get("/peers/{peer_id}", response_model=PeerDetailOut)
    async def get_peer(peer_id: str) -> PeerDetailOut:
        """A peer by its public id (or by its guid, for whoever holds it); the view is public."""
        peer = await service.find_peer(peer_id)
        files = await service.browse(peer.guid)
        return PeerDetailOut(**peer_out(peer).model_dump(), files=[FileOut(**file_out(f)) for f in files])

    async def _owned(guid: str, user: User) -> str:
        guid = v.guid(guid)
        await service.check_owner(guid, user)
        return guid

    @router.post("/peers/{guid}/login", response_model=OwnedPeerOut)
    async def login_peer(guid: str, user: Auth, body: PeerIn | None = None) -> OwnedPeerOut:
        ip = v.ip(body.ip) if body is not None and body.ip is not None else None
        port = body.port if body is not None else None
        return owned_peer_out(await service.login_peer(await _owned(guid, user), user=user, ip=ip, port=port))

    @router.post("/peers/{guid}/keepalive", response_model=OwnedPeerOut)
    async def keepalive(guid: str, user: Auth) -> OwnedPeerOut:
        return owned_peer_out(await service.keep_alive(await _owned(guid, user)))

    @router.post("/peers/{guid}/logout", response_model=OwnedPeerOut)
    async def logout_peer(guid: str, user: Auth) -> OwnedPeerOut:
        return owned_peer_out(await service.logout_peer(await _owned(guid, user), user=user))

    @router.post("/files", status_code=201, response_model=FileDetailOut)
    async def add_file(body: FileIn, user: Auth) -> FileDetailOut:
        guid = await _owned(body.peer_guid, user)
        spec = v.file_spec(
            file_name=body.name,
            size=body.size,
            sha1=body.sha1,
            sha256=body.sha256,
            md5=body.md5,
            btih_v1=body.info_hash_v1,
            btih_v2=body.info_hash_v2,
            magnet_uri=body.magnet,
            chunk_list=v.chunks([c.model_dump() for c in body.chunks], hash_key="hash"),
            torrent=None if body.torrent is None else v.torrent_b64(body.torrent),
        )
        file_id, _ = await service.add_file(
            spec, guid=guid, path=None if body.path is None else v.path(body.path)
        )
        return detail_out(await service.get_file(file_id))

    @router.get("/files", response_model=FilePage)
    async def list_files(limit: Limit = 100, offset: Offset = 0) -> FilePage:
        items = await service.list_files(limit=limit, offset=offset)
        return FilePage(total=await service.count_files(), items=[FileOut(**file_out(f)) for f in items])

    @router.get("/files/{file_id}", response_model=FileDetailOut)
    async def get_file(file_id: Annotated[int, Field(ge=0, le=2**63 - 1)]) -> FileDetailOut:
        return detail_out(await service.get_file(file_id))

    @router.get(
        "/files/{file_id}/torrent",
        response_class=Response,
        responses={200: {"content": {"application/x-bittorrent": {}}}},
    )
    async def get_torrent(file_id: Annotated[int, Field(ge=0, le=2**63 - 1)]) -> Response:
        """The .torrent registered with the file (404 when none was given)."""
        data = await service.torrent(file_id)
        return Response(
            data,
            media_type="application/x-bittorrent",
            headers={"Content-Disposition": f'attachment; filename="{file_id}.torrent"'},
        )

    @router.delete("/files/{file_id}/peers/{guid}", status_code=204)
    async def remove_host(
        file_id: Annotated[int, Field(ge=0, le=2**63 - 1)], guid: str, user: Auth
    ) -> Response:
        await service.remove_host(await _owned(guid, user), file_id=file_id)
        return Response(status_code=204)

    @router.get("/search", response_model=FilePage)
    async def search(
        q: Annotated[str, Query(min_length=1, max_length=256)], limit: Limit = 50, offset: Offset = 0
    ) -> FilePage:
        result = await service.search(q, limit=limit, offset=offset)
        return FilePage(total=result.total, items=[FileOut(**file_out(f)) for f in result.items])

    @router.get("/hashes/{value}", response_model=FileDetailOut)
    async def by_hash(value: str) -> FileDetailOut:
        if not 0 < len(value) <= 128:
            raise ValidationError("hash too long")
        return detail_out(await service.file_by_hash(value))

    return router
