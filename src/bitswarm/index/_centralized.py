"""The CentralizedP2P REST API (seed 002): ``GET /resource``, ``POST /resource``, ``POST /heartbeat``.

The seed gives only request bodies. Our replies (documented in docs/protocols/index-rest.md):

* ``GET /resource`` with no body or ``{}``: 200, a JSON list of every peer; with
  ``{"resource_name": "test.csv"}`` (a GET body, as the seed sends it) or ``?resource_name=test.csv``:
  the peers hosting a file that any peer calls exactly that name (``[]`` if none), each listing it
  under its own name (names are per peer).
  Each peer is ``{"peer_id", "peer_ip", "peer_port", "online", "resources": [{"resource_name",
  "resource_path", "resource_hash"}]}``. A listed ``peer_id`` is the peer's *public* id (16 hex): the
  id a peer registers with is its credential for ``POST /resource`` and ``/heartbeat``, so it is
  never shown to others.
* ``POST /resource``: 201 ``{"peer_id", "resource_name", "resource_hash", "file_id"}``.
* ``POST /heartbeat``: 200 ``{"peer_id", "status": "alive"}``; 404 for an unknown peer.
* Errors: 4xx ``{"error": "<reason>"}``.

``resource_hash`` is a hex digest classified by length: 32 = MD5 (as in the seed's example), 40 =
SHA-1, 64 = SHA-256.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bitswarm.index import _validate as v
from bitswarm.index._errors import ValidationError
from bitswarm.index._http_common import read_json
from bitswarm.index._model import FileRecord, Peer
from bitswarm.index._service import IndexService

#: Most peers ``GET /resource`` lists (our cap; ``?limit=``/``?offset=`` page further).
RESOURCE_LIST_LIMIT = 1000
_HASH_KIND = {32: "md5", 40: "sha1", 64: "sha256"}


def resource_hash(record: FileRecord) -> str:
    for value in (record.md5, record.sha1, record.sha256, record.btih_v1, record.btih_v2):
        if value is not None:
            return value
    return ""


def _hash_fields(value: object) -> dict[str, str]:
    if not isinstance(value, str) or len(value) not in _HASH_KIND:
        raise ValidationError("resource_hash must be a hex MD5 (32), SHA-1 (40) or SHA-256 (64) digest")
    algo = _HASH_KIND[len(value)]
    return {algo: v.hex_hash(value, algo)}


def centralized_router(service: IndexService) -> APIRouter:
    router = APIRouter(tags=["CentralizedP2P (seed 002)"])

    async def _peer_json(peer: Peer, only_ids: set[int] | None = None) -> dict[str, Any]:
        files = await service.browse(peer.guid)
        paths = await service.host_paths(peer.guid)
        return {
            "peer_id": peer.public_id,  # the guid is the peer's credential: never listed
            "peer_ip": peer.ip,
            "peer_port": peer.port,
            "online": peer.online,
            "resources": [
                {"resource_name": f.name, "resource_path": paths.get(f.id), "resource_hash": resource_hash(f)}
                for f in files
                if only_ids is None or f.id in only_ids
            ],
        }

    @router.get("/resource")
    async def get_resource(request: Request) -> list[dict[str, Any]]:
        body = v.json_object(await read_json(request, optional=True))
        name = body.get("resource_name", request.query_params.get("resource_name"))
        if name is None:
            limit = RESOURCE_LIST_LIMIT
            offset = 0
            try:
                limit = min(int(request.query_params.get("limit", limit)), RESOURCE_LIST_LIMIT)
                offset = int(request.query_params.get("offset", 0))
            except ValueError:
                raise ValidationError("limit and offset must be integers") from None
            if limit < 0 or offset < 0:
                raise ValidationError("limit and offset must not be negative")
            peers = await service.list_peers("all", limit=limit, offset=offset)
            return [await _peer_json(p) for p in peers]
        name = v.name(name, "resource_name")
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        details = await service.files_named(name)  # by any peer's name for the file
        ids = {d.file.id for d in details}
        for detail in details:
            for host in detail.hosts:
                if host.peer.public_id not in seen:
                    seen.add(host.peer.public_id)
                    out.append(await _peer_json(host.peer, only_ids=ids))
        return out

    @router.post("/resource", status_code=201)
    async def post_resource(request: Request) -> JSONResponse:
        body = v.json_object(await read_json(request))
        peer_id = v.guid(body.get("peer_id"), "peer_id")
        ip = v.ip(body.get("peer_ip"))
        port = v.port(body.get("peer_port"))
        name = v.name(body.get("resource_name"), "resource_name")
        path = v.path(body.get("resource_path", ""))
        hashes = _hash_fields(body.get("resource_hash"))
        spec = v.file_spec(file_name=name, **hashes)  # type: ignore[arg-type]
        file_id, _ = await service.add_file(spec, guid=peer_id, ip=ip, port=port, path=path, upsert_peer=True)
        return JSONResponse(
            {
                "peer_id": peer_id,
                "resource_name": name,
                "resource_hash": next(iter(hashes.values())),
                "file_id": file_id,
            },
            status_code=201,
        )

    @router.post("/heartbeat")
    async def heartbeat(request: Request) -> dict[str, Any]:
        body = v.json_object(await read_json(request))
        peer_id = v.guid(body.get("peer_id"), "peer_id")
        peer = await service.keep_alive(peer_id)
        return {"peer_id": peer.guid, "status": "alive"}

    return router
