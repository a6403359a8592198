"""Run a whole index server: the HTTP front ends (uvicorn) and the binary protocol on their ports,
plus a periodic sweep of expired registrations. Used by ``bitswarm index`` and by tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from bitswarm.httpguard import HttpLimits, raise_nofile_limit, server_config
from bitswarm.index._config import IndexConfig
from bitswarm.index._errors import Forbidden
from bitswarm.index._federation import Federation, tracker_url
from bitswarm.index._service import IndexService
from bitswarm.index.binary_server import BinaryIndexServer
from bitswarm.index.http import create_app

log = logging.getLogger("bitswarm.index")

#: The HTTP port's cap on a request's line plus headers, in bytes (no config key).
HTTP_MAX_HEAD_BYTES = 64 * 1024

#: Seconds between sweeps that delete registrations whose 30-day TTL ran out.
PURGE_INTERVAL = 60.0


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal capture (we own SIGTERM/SIGINT and exit cleanly, code 0)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass(frozen=True, slots=True)
class Bound:
    host: str
    http_port: int
    binary_port: int | None

    def as_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "http_port": self.http_port,
            "binary_port": self.binary_port,
            "url": f"http://{_url_host(self.host)}:{self.http_port}",
        }


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class IndexServer:
    """Everything ``bitswarm index`` runs, startable and stoppable from a test."""

    def __init__(self, config: IndexConfig, service: IndexService) -> None:
        self.config = config
        self.service = service
        self.federation = Federation(
            service, name=config.name, advertise=config.advertise, key=config.federation_key
        )
        self.app = create_app(service, config, federation=self.federation)
        self._uvicorn: _Uvicorn | None = None
        self._binary: BinaryIndexServer | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.bound: Bound | None = None

    async def start(self) -> Bound:
        cfg = self.config
        for tracker in cfg.trackers:
            await self.service.add_tracker(tracker.name, tracker.ip)
        sock = _bind(cfg.host, cfg.port)
        http_port = int(sock.getsockname()[1])
        if self.federation.advertise is None and cfg.host not in ("0.0.0.0", "::", ""):
            # port 0 (tests, ad-hoc federations): other trackers must learn the port we really got
            self.federation.advertise = f"{_url_host(cfg.host)}:{http_port}"
        limits = HttpLimits(
            header_timeout=cfg.http_header_timeout,
            body_timeout=cfg.http_body_timeout,
            idle_timeout=cfg.http_idle_timeout,
            max_per_ip=cfg.http_max_per_ip,
            max_connections=cfg.http_max_connections,
            max_head_bytes=HTTP_MAX_HEAD_BYTES,
        )
        self._uvicorn = _Uvicorn(server_config(self.app, limits=limits))
        self._tasks.append(asyncio.create_task(self._uvicorn.serve(sockets=[sock])))
        binary_port = None
        if cfg.binary_port is not None:
            self._binary = BinaryIndexServer(
                self.service, login_timeout=cfg.login_timeout, max_per_ip=cfg.binary_max_per_ip
            )
            _, binary_port = await self._binary.start(cfg.host, cfg.binary_port)
        self._tasks.append(asyncio.create_task(self._purge_loop()))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not self._uvicorn.started and loop.time() < deadline:
            if self._tasks[0].done():
                self._tasks[0].result()
            await asyncio.sleep(0.01)
        self.bound = Bound(cfg.host, http_port, binary_port)
        return self.bound

    async def join(self, url: str) -> int:
        """Seed 000 ``new_tracker``: register with the tracker at ``url`` and load its database dump."""
        if self.federation.key is None:
            raise Forbidden(
                f"cannot join {url}: federation needs a federation_key (config.toml or "
                "BITSWARM_INDEX_FEDERATION_KEY) shared with that index"
            )
        body: dict[str, Any] = {"name": self.config.name}
        if self.federation.advertise:
            body["ip"] = self.federation.advertise
        async with httpx.AsyncClient(timeout=10) as client:
            reply = (
                await client.post(
                    tracker_url(url) + "/new_tracker", json=body, headers=self.federation.auth_headers()
                )
            ).json()
        if not reply.get("success"):
            raise Forbidden(f"new_tracker refused by {url}: {reply.get('error')}")
        dump = json.loads(reply["data"])
        address = tracker_url(url).split("://", 1)[1]
        name = dump.get("name")
        await self.service.add_tracker(name if isinstance(name, str) and name else address, address)
        return await self.service.load_dump(dump)

    async def _purge_loop(self) -> None:
        while True:
            await asyncio.sleep(PURGE_INTERVAL)
            try:
                await self.service.purge_expired()
            except Exception:
                log.exception("purge of expired registrations failed")

    async def stop(self) -> None:
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._binary is not None:
            await self._binary.close()
        for task in self._tasks[1:]:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        await self.federation.aclose()


@contextlib.contextmanager
def _signals(stop: asyncio.Event) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def run_index(
    config: IndexConfig, *, on_ready: Callable[[Bound], None], join: Sequence[str] | str | None = None
) -> None:
    """Serve until SIGTERM/SIGINT; ``on_ready`` gets the bound ports once both listeners are up and
    every ``join`` tracker (``--peer-index``, seed 000 ``new_tracker``) has sent its database."""
    raise_nofile_limit()  # every connection is a descriptor: the caps, not the soft limit, refuse a flood
    service = await IndexService.open(config.db)
    server = IndexServer(config, service)
    stop = asyncio.Event()
    try:
        with _signals(stop):
            bound = await server.start()
            for url in [join] if isinstance(join, str) else join or ():
                await server.join(url)
            on_ready(bound)
            await stop.wait()
    finally:
        await server.stop()
        await service.close()


__all__ = ["Bound", "IndexServer", "run_index"]
