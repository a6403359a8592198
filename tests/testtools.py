"""Small helpers shared by the test suites (import as ``from testtools import ...``).

Missing tools: a test that needs an external tool (Redis, PostgreSQL, libtorrent, aria2, Chromium,
miniupnpd, nginx ...) skips when it is missing, **only outside CI**: with ``CI=true`` the same skip
is a failure (the CI machine must have everything). Use :func:`require_tool`, :func:`require_module`
or :func:`skip_missing`; ``tests/conftest.py`` also turns any other skip whose reason says that
something is not installed or missing into a failure under CI (:func:`is_missing_tool_reason`).

Waiting: never a fixed ``sleep`` to order events; :func:`eventually` polls a condition until it
holds or a deadline passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from typing import Any, NoReturn

import pytest

#: The prefix of every skip reason :func:`skip_missing` writes.
MISSING = "missing tool: "

#: Skip reasons that mean "an external tool/package is not there" (and so fail under ``CI=true``).
_MISSING_REASON = re.compile(
    r"missing tool:|not installed|is missing|could not import|no module named|not found on path"
    r"|command not found|needs? .* installed",
    re.IGNORECASE,
)


def in_ci() -> bool:
    """True when running in CI (``CI`` set to ``true``/``1``/``yes``, as CI services do)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def is_missing_tool_reason(reason: str) -> bool:
    """Whether a skip reason says a tool or package is missing (not e.g. "root can read ...")."""
    return bool(_MISSING_REASON.search(reason))


def skip_missing(tool: str, hint: str = "") -> NoReturn:
    """Skip the calling test because ``tool`` is missing; with ``CI=true`` fail it instead."""
    reason = f"{MISSING}{tool}" + (f" ({hint})" if hint else "")
    if in_ci():
        pytest.fail(f"CI=true and a required tool is missing: {reason}", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str, hint: str = "") -> str:
    """Path of a real reference tool (an executable on PATH); see :func:`skip_missing`."""
    path = shutil.which(name)
    if path is None:
        skip_missing(name, hint or "make test installs it as root: apt-get install ...")
    return path


def require_module(name: str, hint: str = "") -> ModuleType:
    """The imported Python module ``name`` (``pytest.importorskip`` that fails under CI)."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        skip_missing(name, hint or "pip install -e '.[dev]'")


def eventually(
    check: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll ``check`` until it returns a truthy value (returned) without raising ``AssertionError``;
    after ``timeout`` seconds the last assertion (or a "never true" one) is raised.

    ``check`` may be a coroutine function: then ``eventually`` returns an awaitable that polls with
    ``asyncio.sleep`` (the event loop keeps running meanwhile)."""
    attempts = _Attempts(timeout, what)
    if inspect.iscoroutinefunction(check):
        return _eventually_async(check, attempts, interval)
    while True:
        try:
            result = check()
        except AssertionError as exc:
            result = attempts.failed(exc)
        if result:
            return result
        attempts.raise_if_late()
        time.sleep(interval)


async def until(
    check: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.01, what: str = ""
) -> Any:
    """:func:`eventually` for a plain (not async) ``check`` in async code: polled between
    ``asyncio.sleep`` calls, so the event loop runs meanwhile (``eventually`` would block it)."""

    async def check_async() -> Any:
        return check()

    return await _eventually_async(check_async, _Attempts(timeout, what), interval)


async def _eventually_async(check: Callable[[], Awaitable[Any]], attempts: _Attempts, interval: float) -> Any:
    while True:
        try:
            result = await check()
        except AssertionError as exc:
            result = attempts.failed(exc)
        if result:
            return result
        attempts.raise_if_late()
        await asyncio.sleep(interval)


class _Attempts:
    """The deadline of :func:`eventually` and the assertion of its last failed attempt."""

    def __init__(self, timeout: float, what: str) -> None:
        self.timeout = timeout
        self.what = what
        self.deadline = time.monotonic() + timeout
        self.last: AssertionError | None = None

    def failed(self, exc: AssertionError) -> None:
        self.last = exc

    def raise_if_late(self) -> None:
        if time.monotonic() < self.deadline:
            self.last = None
            return
        if self.last is not None:
            raise self.last
        raise AssertionError(f"{self.what or 'condition'} not true within {self.timeout} s")


async def read_until_closed(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """Everything a server sends until it closes the connection (AssertionError if it does not within
    ``timeout`` seconds)."""
    try:
        async with asyncio.timeout(timeout):
            return await reader.read()
    except TimeoutError:
        raise AssertionError(f"the connection was not closed within {timeout} s") from None


async def bytes_after_stalling(port: int, request: bytes, stall: float) -> int:
    """Send ``request`` to 127.0.0.1:``port`` from a socket with a 4 KiB receive buffer, read nothing
    for ``stall`` seconds, then read until the server closes (or 10 s pass): how many bytes came. A
    server that cuts off a client that stops reading sends less than the whole response."""
    loop = asyncio.get_running_loop()
    got = 0
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, request)
        await asyncio.sleep(stall)  # the point of the helper: a client that does not read
        with contextlib.suppress(ConnectionResetError):
            async with asyncio.timeout(10):
                while chunk := await loop.sock_recv(sock, 1 << 16):
                    got += len(chunk)
    return got


@contextlib.contextmanager
def http_files(files: dict[str, bytes]) -> Iterator[str]:
    """A loopback HTTP server of ``files`` (path -> body, read at each request, so the caller may
    change the dict while it runs; 404 for any other path); yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
