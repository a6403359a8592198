"""Admin REST API under ``/admin`` (bearer token): whitelist and passkeys, changed live.

    GET    /admin/whitelist              → {"info_hashes": [hex, ...]}
    PUT    /admin/whitelist/<hex>        → add one info-hash
    POST   /admin/whitelist              body {"info_hashes": [hex, ...]} → add several
    DELETE /admin/whitelist/<hex>        → remove
    GET    /admin/passkeys               → {"passkeys": [{"passkey": k, "user": u}, ...]}
    POST   /admin/passkeys               body {"user": "name"} → {"passkey": k, "user": u}
    DELETE /admin/passkeys/<passkey>     → revoke

Changes are written to SQLite before the reply is sent. Without a configured token the API answers
403 to everything.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from bitswarm.tracker.server.core import TrackerCore
from bitswarm.tracker.server.persist import Persistence


def _reply(status: int, obj: Any) -> bytes:
    from bitswarm.tracker.server.http import http_response

    return http_response(status, json.dumps(obj).encode(), b"application/json")


def _hash(text: str) -> bytes | None:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        return None
    return value if len(value) in (20, 32) and len(text) in (40, 64) else None


class AdminApi:
    """Routes ``/admin/...`` requests; used by :class:`~.http.HttpTrackerProtocol`."""

    def __init__(self, core: TrackerCore, persist: Persistence | None) -> None:
        self.core = core
        self.persist = persist
        token = core.config.admin_token
        self._expected = f"Bearer {token}".encode() if token else None

    async def handle(self, method: str, path: str, headers: dict[bytes, bytes], body: bytes) -> bytes:
        core = self.core
        if self._expected is None:
            core.errors["admin_auth"] += 1
            return _reply(403, {"error": "admin API disabled (no admin token configured)"})
        if not hmac.compare_digest(headers.get(b"authorization", b""), self._expected):
            core.errors["admin_auth"] += 1
            return _reply(401, {"error": "bad or missing bearer token"})
        parts = [p for p in path.split("/") if p][1:]  # drop "admin"
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            return _reply(400, {"error": "body is not JSON"})
        if not isinstance(data, dict):
            return _reply(400, {"error": "body must be a JSON object"})
        if parts[:1] == ["whitelist"]:
            return await self._whitelist(method, parts[1:], data)
        if parts[:1] == ["passkeys"]:
            return await self._passkeys(method, parts[1:], data)
        return _reply(404, {"error": "no such admin resource"})

    async def _whitelist(self, method: str, rest: list[str], data: dict[str, Any]) -> bytes:
        core = self.core
        if method == "GET" and not rest:
            return _reply(200, {"info_hashes": sorted(h.hex() for h in core.whitelist)})
        if method in ("PUT", "POST"):
            texts = rest[:1] if rest else data.get("info_hashes", [])
            if not isinstance(texts, list) or not texts:
                return _reply(400, {"error": "name info-hashes in the path or as info_hashes"})
            hashes = [_hash(t) if isinstance(t, str) else None for t in texts]
            if any(h is None for h in hashes):
                return _reply(400, {"error": "info-hashes are 40 or 64 hex digits"})
            good = [h for h in hashes if h is not None]
            # BEP 52: a v2 info-hash is announced truncated to 20 bytes.
            good = [h[:20] for h in good]
            if self.persist is not None:
                await self.persist.whitelist_add(good)
            core.whitelist.update(good)
            return _reply(200, {"added": [h.hex() for h in good]})
        if method == "DELETE" and len(rest) == 1:
            h = _hash(rest[0])
            if h is None:
                return _reply(400, {"error": "info-hashes are 40 or 64 hex digits"})
            h = h[:20]
            if self.persist is not None:
                await self.persist.whitelist_remove([h])
            found = h in core.whitelist
            core.whitelist.discard(h)
            return _reply(200 if found else 404, {"removed": h.hex() if found else None})
        return _reply(405, {"error": "method not allowed"})

    async def _passkeys(self, method: str, rest: list[str], data: dict[str, Any]) -> bytes:
        core = self.core
        if method == "GET" and not rest:
            items = [{"passkey": k, "user": u} for k, u in sorted(core.passkeys.items())]
            return _reply(200, {"passkeys": items})
        if method == "POST" and not rest:
            user = data.get("user", "")
            if not isinstance(user, str) or len(user) > 200:
                return _reply(400, {"error": "user must be a string"})
            key = core.new_passkey(user)
            if self.persist is not None:
                await self.persist.passkey_add(key, user)
            return _reply(200, {"passkey": key, "user": user})
        if method == "DELETE" and len(rest) == 1:
            key = rest[0]
            found = core.passkeys.pop(key, None) is not None
            if self.persist is not None:
                await self.persist.passkey_remove(key)
            return _reply(200 if found else 404, {"revoked": key if found else None})
        return _reply(405, {"error": "method not allowed"})
