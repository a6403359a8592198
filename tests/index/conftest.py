"""Index test fixtures: a real PostgreSQL server (Debian's binaries, initdb into a temp dir, run as the
``postgres`` user when we are root) shared by the session, a fresh database per test, and
``index_db``: the storage location every core/API test runs against — SQLite and PostgreSQL.

Every test here also fails when it leaves an exception in a finalizer behind (a transport, socket or
pipe left to the garbage collector: with warnings as errors, its ResourceWarning is raised inside
``__del__``). The project ignores those warnings elsewhere, but they are not harmless: pytest formats
each one when it happens, and on CPython 3.11 formatting a traceback calls ``ast.parse``, so when the
collector runs such a finalizer in the middle of another ``ast.parse`` (pytest rewriting a module
imported lazily, e.g. anyio's file I/O under starlette's ``FileResponse``), the nested call breaks
3.11's AST recursion bookkeeping and the outer one fails with ``SystemError: AST constructor recursion
depth mismatch`` — in whichever later test happens to import something then."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from testtools import eventually, skip_missing

_HERE = Path(__file__).parent
_NO_LEAKS = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """No exception left in a finalizer by any test of this directory (see the module docstring)."""
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(_NO_LEAKS)


def _pg_bin() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(candidate, "postgres")):
            return Path(candidate)
    found = shutil.which("postgres")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One throw-away PostgreSQL cluster on 127.0.0.1 (trust auth, fsync off: test data only)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.base = Path(tempfile.mkdtemp(prefix="bitswarm-pg-"))
        self.data = self.base / "data"
        self.sock = self.base / "sock"
        self.sock.mkdir()
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
            shutil.chown(self.sock, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def start(self) -> None:
        subprocess.run(
            [
                *self.as_user,
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.proc = subprocess.Popen(
            [
                *self.as_user,
                str(self.bindir / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(self.sock),
                "-h",
                "127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.proc.stderr.read().decode(errors='replace')}")
            probe = subprocess.run(
                [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"],
                capture_output=True,
            )
            return probe.returncode == 0

        try:
            eventually(ready, timeout=60, interval=0.1)
        except AssertionError:
            raise RuntimeError("postgres did not become ready in 60 s") from None

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # SIGINT = fast shutdown, sent to the postmaster itself (runuser does not forward it)
            try:
                pid = int((self.data / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGINT)
            except (OSError, ValueError, IndexError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bindir = _pg_bin()
    if bindir is None:
        skip_missing("PostgreSQL", "apt-get install -y postgresql")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        skip_missing("runuser", "running as root, postgres needs it: apt-get install -y util-linux")
    server = PgServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


async def _create_db(server: PgServer) -> str:
    import asyncpg

    name = "t_" + uuid.uuid4().hex[:16]
    conn = await asyncpg.connect(server.dsn())
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def _drop_db(server: PgServer, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(server.dsn())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def pg_dsn(pg_server: PgServer) -> AsyncIterator[str]:
    """A fresh, empty database on the session's PostgreSQL server."""
    name = await _create_db(pg_server)
    try:
        yield pg_server.dsn(name)
    finally:
        with contextlib.suppress(Exception):
            await _drop_db(pg_server, name)


@pytest.fixture(params=["sqlite", "postgresql"])
async def index_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Where the index under test stores its data: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield str(tmp_path / "index.db")
        return
    server: PgServer = request.getfixturevalue("pg_server")
    name = await _create_db(server)
    try:
        yield server.dsn(name)
    finally:
        with contextlib.suppress(Exception):
            await _drop_db(server, name)
