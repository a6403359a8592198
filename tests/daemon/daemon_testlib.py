"""Shared helpers of the daemon tests: a daemon with its API on a real loopback port (uvicorn in
the test's event loop) and a seeding Session to download from."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from bitswarm.daemon import Daemon, HttpLimits, create_app, server_config
from bitswarm.metainfo import Torrent, create_torrent, parse_torrent
from bitswarm.session import Session, SessionConfig, TorrentHandle
from testtools import eventually

TOKEN = "test-token-0123456789"


def session_config(**kw: object) -> SessionConfig:
    cfg = SessionConfig(listen_host="127.0.0.1", listen_port=0, enable_dht=False, **kw)  # type: ignore[arg-type]
    cfg.min_announce_interval = 1.0
    return cfg


@dataclass
class Running:
    daemon: Daemon
    url: str
    token: str

    def client(self, *, auth: bool = True, timeout: float = 30.0) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout)


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def running_daemon(
    data: Path, *, token: str = TOKEN, limits: HttpLimits | None = None, **kw: object
) -> AsyncIterator[Running]:
    """A started daemon on ``data`` with its API served on 127.0.0.1:<free port> (as ``bitswarm
    daemon`` serves it: uvicorn with the daemon's HTTP limits)."""
    d = Daemon(data, session_config(**kw))
    tok = d.data.token(token)
    await d.start()
    server = _QuietServer(server_config(create_app(d, tok), "127.0.0.1", 0, limits))
    task = asyncio.get_running_loop().create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield Running(d, f"http://127.0.0.1:{port}", tok)
    finally:
        d.closing.set()
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        await d.close()


def make_content(
    root: Path, name: str = "album", *, files: int = 3, size: int = 300_000, seed: int = 1
) -> Path:
    """A directory of ``files`` random files (one is an .mp4 for the play link)."""
    rng = random.Random(seed)
    base = root / name
    base.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        fname = "clip.mp4" if i == 0 else f"track{i:02d}.bin"
        (base / fname).write_bytes(rng.randbytes(size + i * 1000))
    return base


def torrent_of(path: Path, piece_length: int = 32768) -> tuple[bytes, Torrent]:
    data = create_torrent(path, version="v1", piece_length=piece_length)
    return data, parse_torrent(data)


@contextlib.asynccontextmanager
async def seeder(
    content: Path, torrent: Torrent, **kw: object
) -> AsyncIterator[tuple[Session, TorrentHandle]]:
    """A Session seeding ``content`` (its parent directory is the save path)."""
    async with Session(session_config(**kw)) as s:
        h = await s.add(torrent, content.parent)
        yield s, h


async def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll an async or sync predicate until it returns a truthy value (bounded: testtools.eventually)."""

    async def check():  # type: ignore[no-untyped-def]
        value = predicate()
        return await value if asyncio.iscoroutine(value) else value

    try:
        return await eventually(check, timeout=timeout, interval=interval)
    except AssertionError as exc:  # callers catch TimeoutError to say what was not reached
        raise TimeoutError(str(exc)) from exc
