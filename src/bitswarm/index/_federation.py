"""Tracker federation of seed 000 (``PATCH /tracker_sync``, ``POST /new_tracker``).

An event is ``{"event": "add_file|keep_alive|deregister_file_by_hash|new_tracker", "event_ip": ...,
"data": {...}}`` plus an optional ``event_id`` (our addition; without it the id is the SHA-256 of the
canonical JSON of the three seed fields, so identical events still count once). A tracker applies an
event it has not seen, records its id, then re-broadcasts it to every tracker it knows; a seen id is
ignored, so floods stop and servers converge.

Trust: events carry peer guids (each peer's secret), so federation runs only between indexes that
share the ``federation_key`` of their config.toml. Every ``PATCH /tracker_sync`` and ``POST
/new_tracker`` must carry ``Authorization: Bearer <federation_key>``; without it (or on an index with
no key) both answer 403 and nothing is applied, dumped or registered. Outgoing events and joins send
the key; an index with no key sends nothing.

Sending is injected (``send(tracker, event)``) so tests run several trackers in one process.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bitswarm.index import _validate as v
from bitswarm.index._errors import Forbidden, IndexServiceError, NotFound, ValidationError
from bitswarm.index._model import Tracker
from bitswarm.index._service import IndexService

log = logging.getLogger("bitswarm.index.federation")

EVENT_TYPES = ("add_file", "keep_alive", "deregister_file_by_hash", "new_tracker")
SendFn = Callable[[Tracker, dict[str, Any]], Awaitable[None]]
#: Most re-broadcasts in flight at once (older sends still run; new ones wait their turn).
MAX_INFLIGHT = 64


def tracker_url(ip: str) -> str:
    """``host`` or ``host:port`` (seed 000 tracker ``ip``) → base URL; the port defaults to 42070."""
    if ip.startswith(("http://", "https://")):
        return ip.rstrip("/")
    host = ip
    if ip.count(":") == 1 or (ip.startswith("[") and "]:" in ip):
        return f"http://{ip}"
    if ":" in host:  # bare IPv6
        host = f"[{host}]"
    return f"http://{host}:42070"


def event_id(event: dict[str, Any]) -> str:
    given = event.get("event_id")
    if isinstance(given, str) and 0 < len(given) <= 128:
        return given
    canon = json.dumps(
        {"event": event.get("event"), "event_ip": event.get("event_ip"), "data": event.get("data")},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canon.encode()).hexdigest()


class Federation:
    """Applies and floods seed 000 events for one tracker (``advertise``: how others reach us)."""

    def __init__(
        self,
        service: IndexService,
        *,
        name: str,
        advertise: str | None,
        send: SendFn | None = None,
        timeout: float = 5.0,
        key: str | None = None,
    ) -> None:
        self.service = service
        self.name = name
        self.advertise = advertise
        self.key = key or None
        self.timeout = timeout
        self._send = send or self._http_send
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_INFLIGHT)
        self._client: httpx.AsyncClient | None = None

    def auth_headers(self) -> dict[str, str]:
        """What an outgoing federation request carries to be trusted."""
        return {} if self.key is None else {"Authorization": f"Bearer {self.key}"}

    def check_trusted(self, authorization: str | None) -> None:
        """Forbidden unless ``authorization`` is ``Bearer <our federation key>``."""
        if self.key is None:
            raise Forbidden("federation is off on this tracker (no federation_key configured)")
        given = (authorization or "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, f"Bearer {self.key}".encode()):
            raise Forbidden("federation needs this tracker's federation key (Authorization: Bearer ...)")

    async def _http_send(self, tracker: Tracker, event: dict[str, Any]) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        await self._client.patch(
            tracker_url(tracker.ip) + "/tracker_sync", json=event, headers=self.auth_headers()
        )

    async def aclose(self) -> None:
        await self.drain()
        if self._client is not None:
            await self._client.aclose()

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait (bounded) for every broadcast in flight, including ones they trigger."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._tasks and loop.time() < deadline:
            await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - loop.time()))

    # -- outgoing ------------------------------------------------------------------------------

    async def publish(self, event: str, event_ip: str, data: dict[str, Any]) -> dict[str, Any]:
        """Record a local change as an event and broadcast it."""
        eid = str(uuid.uuid4())
        message: dict[str, Any] = {"event": event, "event_ip": event_ip, "data": data, "event_id": eid}
        await self.service.mark_event(eid)
        await self.broadcast(message)
        return message

    async def broadcast(self, message: dict[str, Any]) -> None:
        if self.key is None:  # no trusted tracker: peer guids go nowhere
            return
        for tracker in await self.service.trackers():
            if tracker.ip == self.advertise:
                continue
            task = asyncio.create_task(self._send_one(tracker, message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send_one(self, tracker: Tracker, message: dict[str, Any]) -> None:
        async with self._slots:
            try:
                await asyncio.wait_for(self._send(tracker, message), self.timeout)
            except Exception as exc:  # a peer tracker being down must not hurt us
                log.warning("tracker_sync to %s failed: %s", tracker.ip, exc)

    # -- incoming ------------------------------------------------------------------------------

    async def receive(self, message: Any) -> bool:
        """Apply an event once (True) or ignore a repeat (False); malformed → ValidationError."""
        message = v.json_object(message)
        kind = message.get("event")
        if kind not in EVENT_TYPES:
            raise ValidationError(f"event must be one of {', '.join(EVENT_TYPES)}")
        if not isinstance(message.get("event_ip"), str):
            raise ValidationError("event_ip must be a string")
        data = v.json_object(message.get("data"))
        eid = event_id(message)
        if not await self.service.mark_event(eid):
            return False
        try:
            await self._apply(kind, message["event_ip"], data)
        except ValidationError:
            await self.service.forget_event(eid)
            raise
        except IndexServiceError as exc:  # e.g. deregistering what we never had: still flood it
            log.info("tracker_sync %s not applied here: %s", kind, exc)
        await self.broadcast({**message, "event_id": eid})
        return True

    async def _apply(self, kind: str, event_ip: str, data: dict[str, Any]) -> None:
        svc = self.service
        if kind == "new_tracker":
            ip = data.get("ip", event_ip)
            if not isinstance(ip, str) or not ip:
                raise ValidationError("new_tracker needs an ip")
            name = data.get("name", ip)
            if not isinstance(name, str):
                raise ValidationError("name must be a string")
            if ip != self.advertise:
                await svc.add_tracker(name, ip)
            return
        guid = v.guid(data.get("guid"))
        if kind == "add_file":
            spec = v.file_spec(
                file_name=data.get("name"),
                sha256=data.get("full_hash"),
                chunk_list=v.chunks(data.get("chunks", [])),
            )
            ip = _maybe_ip(event_ip)
            try:
                await svc.get_peer(guid)
            except NotFound:
                await svc.add_file(spec, guid=None, create_guid=guid, ip=ip)
            else:
                await svc.add_file(spec, guid=guid, ip=ip)
        elif kind == "keep_alive":
            await svc.keep_alive(guid)
        elif kind == "deregister_file_by_hash":
            file_hash = v.opaque_hash(data.get("file_hash"), "file_hash")
            await svc.remove_host(guid, file_hash=file_hash)


def _maybe_ip(value: str) -> str | None:
    try:
        return v.ip(value)
    except ValidationError:
        return None
