"""Property-based fuzzing of the native ``/api/v1`` API from its own OpenAPI document (schemathesis):
every generated request — valid and invalid, with a real bearer token — must get a non-5xx answer.
Bounded: 20 examples per operation (about 350 requests in all)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from index_testlib import FAST_HASHER

pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install schemathesis)")
import schemathesis

from bitswarm.index import IndexService
from bitswarm.index.http import create_app

STATE: dict[str, str] = {}


async def _setup(tmp) -> IndexService:
    svc = await IndexService.open(tmp / "fuzz.db", hasher=FAST_HASHER)
    await svc.create_user("fuzzer", "pw")
    STATE["token"] = (await svc.login("fuzzer", "pw")).token
    user = await svc.authenticate("fuzzer", "pw")
    await svc.register_peer(user=user, ip="127.0.0.1", port=6881, online=True)
    return svc


@pytest.mark.timeout(120)
def test_native_api_never_answers_5xx(tmp_path):
    svc = asyncio.run(_setup(tmp_path))
    app = create_app(svc)
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app).include(path_regex="^/api/v1")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 15
        calls: list[int] = []

        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def fuzz(case: schemathesis.Case) -> None:
                # Half the requests carry the real token so the handlers behind authentication run.
                headers = dict(case.headers or {})
                if len(calls) % 2 == 0:
                    headers["Authorization"] = f"Bearer {STATE['token']}"
                case.headers = headers
                response = case.call()
                calls.append(response.status_code)
                assert response.status_code < 500, (
                    f"{case.method} {case.formatted_path}: {response.text[:300]}"
                )

            fuzz()
        assert len(calls) >= 100 and any(c < 300 for c in calls) and any(400 <= c < 500 for c in calls)
    finally:
        asyncio.run(app.state.federation.aclose())
        asyncio.run(svc.close())
