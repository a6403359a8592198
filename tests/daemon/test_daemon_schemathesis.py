"""Property-based fuzzing of the daemon's ``/api/v1`` from its own OpenAPI document (schemathesis):
every generated request — valid and invalid, half with the real bearer token — gets a non-5xx answer.
The daemon runs on a real loopback port in a thread of its own. Bounded: 25 examples per operation."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from daemon_testlib import TOKEN, make_content, running_daemon, torrent_of
from hypothesis import HealthCheck, given, settings

pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install schemathesis)")
import schemathesis

from bitswarm.daemon import Daemon, DaemonError


class DaemonThread(threading.Thread):
    def __init__(self, data: Path, seed_torrent: bytes) -> None:
        super().__init__(daemon=True)
        self.data = data
        self.seed_torrent = seed_torrent
        self.ready = threading.Event()
        self.url = ""
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._halt: asyncio.Event | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by the test
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._halt = asyncio.Event()
        async with running_daemon(self.data) as r:
            await r.daemon.add_torrent(self.seed_torrent, paused=True)
            self.url = r.url
            self.ready.set()
            await self._halt.wait()

    def stop(self) -> None:
        if self._loop is not None and self._halt is not None:
            self._loop.call_soon_threadsafe(self._halt.set)
        self.join(20)


@pytest.mark.timeout(120)
def test_daemon_api_never_answers_5xx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_network(self: Daemon, index_url: str, name: str, **kw: object) -> dict:
        raise DaemonError("index lookups are disabled in this test (loopback only)", 400, "index_error")

    # generated index URLs must not make the daemon reach out beyond loopback
    monkeypatch.setattr(Daemon, "add_from_index", no_network)
    raw, _ = torrent_of(make_content(tmp_path / "seed", files=2, size=20_000))
    server = DaemonThread(tmp_path / "d", raw)
    server.start()
    assert server.ready.wait(20) and server.error is None, server.error
    try:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json").include(path_regex="^/api/v1")
        schema = schema.exclude(path="/api/v1/events")  # an endless stream: covered in the API tests
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 12
        calls: list[int] = []
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def fuzz(case: schemathesis.Case) -> None:
                headers = dict(case.headers or {})
                if len(calls) % 2 == 0:
                    headers["Authorization"] = f"Bearer {TOKEN}"
                case.headers = headers
                response = case.call(base_url=server.url, timeout=30)
                calls.append(response.status_code)
                assert response.status_code < 500, (
                    f"{case.method} {case.formatted_path}: {response.text[:300]}"
                )

            fuzz()
        assert len(calls) >= 250 and any(c < 300 for c in calls) and any(400 <= c < 500 for c in calls)
    finally:
        server.stop()
    assert server.error is None, server.error
