"""The P2PFlix tracker REST API (seed 000), exactly as the seed gives it.

Every reply is ``{"success": true, ...}`` or ``{"success": false, "error": "<reason>"}``. The seed
gives no HTTP status codes; we answer 200 on success and 4xx with the error body (400 bad input, 404
unknown file/guid, 409 stale or replayed sequence number, 413 body too large). See
docs/protocols/index-rest.md for every choice made where the seed is vague or contradicts itself.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bitswarm.index import _validate as v
from bitswarm.index._errors import ValidationError
from bitswarm.index._federation import Federation
from bitswarm.index._http_common import read_json
from bitswarm.index._model import FileDetail, FileRecord
from bitswarm.index._service import IndexService

#: Most entries ``GET /file_list`` returns without ``?limit=`` (our cap; the seed lists "all").
FILE_LIST_DEFAULT_LIMIT = 10_000


def full_hash(record: FileRecord) -> str:
    """The seed's ``full_hash``: the SHA-256 field when known, else the strongest hash we have."""
    for value in (record.sha256, record.sha1, record.btih_v2, record.btih_v1, record.md5):
        if value is not None:
            return value
    return ""


def _ok(**fields: Any) -> dict[str, Any]:
    return {"success": True, **fields}


def _client_ip(request: Request) -> str | None:
    if request.client is None:
        return None
    try:
        return v.ip(request.client.host)
    except ValidationError:
        return None


def _detail(detail: FileDetail, hash_key: str) -> dict[str, Any]:
    return _ok(
        name=detail.file.name,
        **{hash_key: full_hash(detail.file)},
        peers=[{"ip": h.peer.ip or ""} for h in detail.hosts if h.peer.online],
        chunks=[{"id": c.id, "name": c.name, "chunk_hash": c.hash} for c in detail.chunks],
    )


def _query_int(request: Request, key: str, default: int, hi: int) -> int:
    raw = request.query_params.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"{key} must be an integer") from None
    if not 0 <= value <= hi:
        raise ValidationError(f"{key} must be between 0 and {hi}")
    return value


def _file_id(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError("file id must be an integer") from None
    return v.integer(value, "file id")


def p2pflix_router(service: IndexService, federation: Federation, *, tracker_name: str) -> APIRouter:
    router = APIRouter(tags=["P2PFlix (seed 000)"])

    @router.get("/file_list")
    async def file_list(request: Request) -> dict[str, Any]:
        limit = _query_int(request, "limit", FILE_LIST_DEFAULT_LIMIT, 1_000_000)
        offset = _query_int(request, "offset", 0, 2**62)
        files = await service.list_files(limit=limit, offset=offset)
        return _ok(
            files=[
                {"id": f.id, "name": f.name, "full_hash": full_hash(f), "active_peers": f.online_peers}
                for f in files
            ]
        )

    @router.get("/file/{file_id}")
    async def file_by_id(file_id: str) -> dict[str, Any]:
        return _detail(await service.get_file(_file_id(file_id)), "file_hash")

    @router.get("/file_by_hash/{file_full_hash:path}")
    async def file_by_hash(file_full_hash: str) -> dict[str, Any]:
        return _detail(await service.file_by_hash(v.opaque_hash(file_full_hash, "full hash")), "full_hash")

    @router.get("/tracker_list")
    async def tracker_list() -> dict[str, Any]:
        return _ok(trackers=[{"name": t.name, "ip": t.ip} for t in await service.trackers()])

    @router.get("/peer_guid/{guid}")
    async def peer_guid(guid: str) -> dict[str, Any]:
        peer = await service.get_peer(v.guid(guid))
        files = await service.browse(peer.guid)
        return _ok(
            files=[{"id": f.id, "name": f.name, "full_hash": full_hash(f)} for f in files],
            expected_seq_number=peer.seq_expected,
            ka_expected_seq_number=peer.ka_seq_expected,
        )

    @router.post("/add_file")
    async def add_file(request: Request) -> dict[str, Any]:
        body = v.json_object(await read_json(request))
        guid_raw = body.get("guid")
        guid = None if guid_raw is None else v.guid(guid_raw)
        seq = v.integer(body.get("seq_number"), "seq_number")
        chunks = v.chunks(body.get("chunks"))
        spec = v.file_spec(file_name=body.get("name"), sha256=body.get("full_hash"), chunk_list=chunks)
        ip = _client_ip(request)
        file_id, guid = await service.add_file(spec, guid=guid, ip=ip, seq_number=seq)
        await federation.publish(
            "add_file",
            ip or "",
            {
                "name": spec.name,
                "full_hash": spec.sha256,
                "chunks": [{"id": c.id, "name": c.name, "chunk_hash": c.hash} for c in chunks],
                "guid": guid,
                "seq_number": seq,
            },
        )
        return _ok(file_id=file_id, guid=guid)

    @router.put("/keep_alive")
    async def keep_alive(request: Request) -> dict[str, Any]:
        body = v.json_object(await read_json(request))
        guid = v.guid(body.get("guid"))
        ka_seq = v.integer(body.get("ka_seq_number"), "ka_seq_number")
        ip = _client_ip(request)
        await service.keep_alive(guid, ka_seq_number=ka_seq, ip=ip)
        await federation.publish("keep_alive", ip or "", {"guid": guid, "ka_seq_number": ka_seq})
        return _ok()

    async def _deregister(request: Request, *, by_hash: bool) -> dict[str, Any]:
        body = v.json_object(await read_json(request))
        guid = v.guid(body.get("guid"))
        seq = v.integer(body.get("seq_number"), "seq_number")
        if by_hash:
            raw = body.get("file_hash")
            if isinstance(raw, int) and not isinstance(raw, bool):  # the seed's comment says "#integer"
                raw = str(raw)
            file_hash = v.opaque_hash(raw, "file_hash")
            detail = await service.file_by_hash(file_hash)
        else:
            detail = await service.get_file(v.integer(body.get("file_id"), "file_id"))
        await service.remove_host(guid, file_id=detail.file.id, seq_number=seq)
        ip = _client_ip(request)
        await federation.publish(
            "deregister_file_by_hash",
            ip or "",
            {"file_hash": full_hash(detail.file), "guid": guid, "seq_number": seq},
        )
        return _ok()

    @router.delete("/deregister_file")
    async def deregister_file(request: Request) -> dict[str, Any]:
        return await _deregister(request, by_hash=False)

    @router.delete("/deregister_file_by_hash")
    async def deregister_file_by_hash(request: Request) -> dict[str, Any]:
        return await _deregister(request, by_hash=True)

    @router.patch("/tracker_sync")
    async def tracker_sync(request: Request) -> dict[str, Any]:
        federation.check_trusted(request.headers.get("authorization"))
        await federation.receive(await read_json(request))
        return _ok()

    @router.post("/new_tracker")
    async def new_tracker(request: Request) -> JSONResponse:
        federation.check_trusted(request.headers.get("authorization"))  # the dump holds every guid
        body = v.json_object(await read_json(request, optional=True))
        ip = body.get("ip")
        if ip is None:
            client = _client_ip(request)
            if client is None:
                raise ValidationError('cannot tell the new tracker\'s address; send {"ip": "host:port"}')
            ip = client
        if not isinstance(ip, str) or not 0 < len(ip) <= 256:
            raise ValidationError("ip must be a string")
        name = body.get("name", ip)
        if not isinstance(name, str) or not 0 < len(name) <= 256:
            raise ValidationError("name must be a string")
        dump = await service.dump()
        dump["name"] = tracker_name  # so the new tracker lists us by our configured name
        if federation.advertise:
            dump["trackers"].append({"name": tracker_name, "ip": federation.advertise})
        if ip != federation.advertise:
            await service.add_tracker(name, ip)
            await federation.publish("new_tracker", ip, {"name": name, "ip": ip})
        return JSONResponse(_ok(data=json.dumps(dump, separators=(",", ":"))))

    return router
